/*
 * pcow-img -- create, inspect, snapshot, check, rebase and convert pcow
 * images, with qemu-img's syntax, output and exit codes wherever qemu-img
 * has the same verb.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pcow.h"
#include "img.h"
#include "img_source.h"
#include "img_qcow2.h"
#include "util.h"

void usage(FILE *f)
{
	fprintf(f,
		"usage: pcow-img COMMAND [OPTIONS] ...\n"
		"\n"
		"Commands:\n"
		"  create [-f pcow] [-q] [-u] [-b BACKING -F FMT] [-o block_size=SIZE,capacity=SIZE] FILE [SIZE]\n"
		"  info [-f pcow] [--output=human|json] [--backing-chain | --no-backing] [-U] FILE\n"
		"  snapshot [-f pcow] [-q] [-U] [-l | -c NAME | -a NAME | -d NAME] FILE\n"
		"  rebase [-f pcow] [-u] [-p] [-q] -b BACKING [-F FMT] FILE\n"
		"  check [-f pcow] [-r leaks|all] [-p] [-q] [-U] [--no-backing] [--output=human|json] FILE\n"
		"  convert [-f raw|pcow|qcow2] -O raw|pcow|qcow2 [-o block_size=SIZE,capacity=SIZE] [-p] [-q] [-U] [--no-backing] IN OUT\n"
		"  map [-f pcow] [--output=human|json] [-U] FILE\n"
		"  commit [-f pcow] [-t CACHE] [-b BASE] [-d] [-p] [-q] FILE\n"
		"  resize [--shrink] [-f pcow] [-q] FILE [+|-]SIZE\n"
		"  compare [-f FMT] [-F FMT] [-s] [-p] [-q] [-U] A B\n"
		"  measure [-f FMT] [-O pcow|raw] [-o block_size=SIZE,capacity=SIZE] [-U] [--output=human|json] (--size SIZE | IN)\n"
		"  amend [-f pcow] [-p] [-q] -o OPTIONS FILE   (-o help lists the options)\n"
		"\n"
		"SIZE takes the suffixes K, M, G, T (powers of 1024).\n");
}

/* Parses "-o key=value,key=value" (block_size, capacity, backing_file,
 * backing_fmt). */
static int parse_create_options(const char *file, const char *opts,
				struct pcow_create_opts *o, char **backing,
				char **backing_fmt)
{
	char *copy = strdup(opts), *save = NULL, *tok;
	int ret = 0;

	for (tok = strtok_r(copy, ",", &save); tok && !ret;
	     tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		uint64_t v;

		if (!eq) {
			die_msg("%s: invalid option '%s' (expected key=value)", file, tok);
			ret = -1;
			break;
		}
		*eq++ = '\0';
		if (!strcmp(tok, "block_size") || !strcmp(tok, "cluster_size")) {
			/* 0 is refused, not taken as the default. */
			if (!parse_size(eq, &v) || v < PCOW_BLOCK_SIZE_MIN ||
			    v > PCOW_BLOCK_SIZE_MAX || (v & (v - 1))) {
				die_msg("%s: invalid block size '%s' (a power of two from 4 KiB to 1 GiB)",
					file, eq);
				ret = -1;
			} else {
				o->block_size = (uint32_t)v;
			}
		} else if (!strcmp(tok, "capacity")) {
			if (!parse_size(eq, &o->capacity) || !o->capacity) {
				die_msg("%s: invalid capacity '%s' (at least the image size)", file, eq);
				ret = -1;
			}
		} else if (!strcmp(tok, "backing_file")) {
			*backing = strdup(eq);
		} else if (!strcmp(tok, "backing_fmt")) {
			*backing_fmt = strdup(eq);
		} else {
			die_msg("%s: invalid option '%s' for format 'pcow'", file, tok);
			ret = -1;
		}
	}
	free(copy);
	return ret;
}

static int cmd_create(int argc, char **argv)
{
	struct pcow_create_opts o = {.struct_size = sizeof(o)};
	char *backing = NULL, *bfmt = NULL, *fmt = NULL, *options = NULL;
	const char *file;
	bool quiet = false;
	int c, rc = 1;
	static const struct option longopts[] = {{"help", no_argument, 0, 'h'}, {0}};

	while ((c = getopt_long(argc, argv, "+:f:b:F:o:hqu", longopts, NULL)) != -1) {
		switch (c) {
		case 'f': fmt = optarg; break;
		case 'b': free(backing); backing = strdup(optarg); break;
		case 'F': free(bfmt); bfmt = strdup(optarg); break;
		case 'o': options = optarg; break;
		case 'q': quiet = true; break;
		case 'u': break;
		case 'h': usage(stdout); return 0;
		default: return bad_option(c, argv);
		}
	}
	if (optind >= argc) {
		die_msg("expecting image file name");
		goto out;
	}
	file = argv[optind];
	if (fmt && strcmp(fmt, "pcow")) {
		die_msg("%s: unsupported format '%s' (only pcow)", file, fmt);
		goto out;
	}
	if (options && parse_create_options(file, options, &o, &backing, &bfmt) < 0)
		goto out;
	if (optind + 1 < argc && !parse_size(argv[optind + 1], &o.size)) {
		die_msg("%s: invalid image size '%s'", file, argv[optind + 1]);
		goto out;
	}
	if (optind + 2 < argc) {
		die_msg("unexpected argument '%s'", argv[optind + 2]);
		goto out;
	}
	if (backing) {
		if (!bfmt) {
			die_msg("%s: backing file format must be given with -F (raw or pcow)", file);
			goto out;
		}
		if (!parse_format(bfmt, &o.backing_format)) {
			die_msg("%s: unknown backing file format '%s'", file, bfmt);
			goto out;
		}
		o.backing_file = backing;
	} else if (optind + 1 >= argc) {
		die_msg("%s: image size must be given", file);
		goto out;
	}
	if (pcow_create(file, &o) < 0) {
		lib_fail(file);
		goto out;
	}
	if (!quiet) {
		pcow_image *img;
		struct pcow_info info = {.struct_size = sizeof(info)};

		if (pcow_open(&img, file, PCOW_OPEN_RDONLY | PCOW_OPEN_NO_BACKING) == 0) {
			pcow_get_info(img, &info);
			printf("Formatting '%s', fmt=pcow size=%" PRIu64, file, info.virtual_size);
			if (backing)
				printf(" backing_file=%s backing_fmt=%s", backing, bfmt);
			printf(" block_size=%u\n", info.block_size);
			pcow_close(&img);
		}
	}
	rc = 0;
out:
	free(backing);
	free(bfmt);
	return rc;
}

/*
 * Opens an image for a verb that shows only its own metadata: a missing or
 * unusable backing file must not hide it (qemu-img opens such verbs without
 * the chain).  The chain is still opened when it can be, for its locks.
 */
static int open_without_chain(pcow_image **img, const char *file, unsigned flags)
{
	if (pcow_open(img, file, flags) == 0)
		return 0;
	return pcow_open(img, file, flags | PCOW_OPEN_NO_BACKING);
}

static void date_str(int64_t sec, char *buf, size_t len)
{
	time_t t = (time_t)sec;
	struct tm tm;

	localtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
}

static void print_snapshots(pcow_image *img)
{
	struct pcow_snapshot_info *list;
	size_t n, i;
	char date[32], size[32];

	if (pcow_snapshot_list(img, &list, &n) < 0)
		return;
	/* Like qemu-img: no table at all when there are no snapshots. */
	if (n == 0) {
		free(list);
		return;
	}
	printf("Snapshot list:\n");
	printf("%-10s%-17s%10s%20s\n", "ID", "TAG", "DISK SIZE", "DATE");
	for (i = 0; i < n; i++) {
		date_str(list[i].date_sec, date, sizeof(date));
		human_size(list[i].allocated_size, size, sizeof(size));
		printf("%-9" PRIu32 " %-17s%10s%20s\n", list[i].id, list[i].name, size,
		       date);
	}
	free(list);
}

static json_object *info_json(pcow_image *img, const char *file)
{
	struct pcow_info info = {.struct_size = sizeof(info)};
	struct pcow_snapshot_info *list;
	json_object *o = json_object_new_object(), *spec, *data;
	size_t n, i;

	pcow_get_info(img, &info);
	json_object_object_add(o, "virtual-size", json_object_new_int64((int64_t)info.virtual_size));
	json_object_object_add(o, "filename", json_object_new_string(file));
	json_object_object_add(o, "cluster-size", json_object_new_int64(info.block_size));
	json_object_object_add(o, "format", json_object_new_string("pcow"));
	json_object_object_add(o, "actual-size", json_object_new_int64((int64_t)info.actual_size));
	json_object_object_add(o, "dirty-flag", json_object_new_boolean(0));
	json_object_object_add(o, "block-size", json_object_new_int64(info.block_size));
	json_object_object_add(o, "allocated-blocks",
			       json_object_new_int64((int64_t)info.allocated_blocks));
	if (info.backing_file[0]) {
		json_object_object_add(o, "backing-filename", json_object_new_string(info.backing_file));
		json_object_object_add(o, "full-backing-filename",
				       json_object_new_string(info.backing_file_full));
		json_object_object_add(o, "backing-filename-format",
				       json_object_new_string(format_name(info.backing_format)));
	}
	if (pcow_snapshot_list(img, &list, &n) == 0) {
		if (n) {
			json_object *arr = json_object_new_array();

			for (i = 0; i < n; i++) {
				json_object *s = json_object_new_object();
				char id[16];

				snprintf(id, sizeof(id), "%" PRIu32, list[i].id);
				json_object_object_add(s, "id", json_object_new_string(id));
				json_object_object_add(s, "name", json_object_new_string(list[i].name));
				json_object_object_add(s, "vm-state-size", json_object_new_int(0));
				json_object_object_add(s, "date-sec", json_object_new_int64(list[i].date_sec));
				json_object_object_add(s, "date-nsec", json_object_new_int64(list[i].date_nsec));
				json_object_object_add(s, "vm-clock-sec", json_object_new_int(0));
				json_object_object_add(s, "vm-clock-nsec", json_object_new_int(0));
				json_object_object_add(s, "allocated-size",
						       json_object_new_int64((int64_t)list[i].allocated_size));
				json_object_array_add(arr, s);
			}
			json_object_object_add(o, "snapshots", arr);
		}
		free(list);
	}
	spec = json_object_new_object();
	data = json_object_new_object();
	json_object_object_add(data, "version", json_object_new_int((int)info.format_version));
	json_object_object_add(data, "block-size", json_object_new_int64(info.block_size));
	json_object_object_add(data, "allocated-blocks", json_object_new_int64((int64_t)info.allocated_blocks));
	json_object_object_add(data, "layers", json_object_new_int((int)info.layer_count));
	json_object_object_add(data, "capacity", json_object_new_int64((int64_t)info.capacity));
	json_object_object_add(data, "incompatible-features",
			       json_object_new_int64((int64_t)info.incompatible_features));
	json_object_object_add(data, "compatible-features",
			       json_object_new_int64((int64_t)info.compatible_features));
	json_object_object_add(spec, "type", json_object_new_string("pcow"));
	json_object_object_add(spec, "data", data);
	json_object_object_add(o, "format-specific", spec);
	return o;
}

static void info_human(pcow_image *img, const char *file)
{
	struct pcow_info info = {.struct_size = sizeof(info)};
	char a[32], b[32];

	pcow_get_info(img, &info);
	human_size(info.virtual_size, a, sizeof(a));
	human_size(info.actual_size, b, sizeof(b));
	printf("image: %s\nfile format: pcow\n", file);
	printf("virtual size: %s (%" PRIu64 " bytes)\n", a, info.virtual_size);
	printf("disk size: %s\n", b);
	printf("block size: %u\n", info.block_size);
	printf("allocated blocks: %" PRIu64 "\n", info.allocated_blocks);
	if (info.backing_file[0]) {
		printf("backing file: %s", info.backing_file);
		if (strcmp(info.backing_file, info.backing_file_full))
			printf(" (actual path: %s)", info.backing_file_full);
		printf("\nbacking file format: %s\n", format_name(info.backing_format));
	}
	if (info.snapshot_count)
		print_snapshots(img);
	human_size(info.capacity, a, sizeof(a));
	printf("Format specific information:\n    version: %u\n    layers: %u\n"
	       "    capacity: %s (%" PRIu64 " bytes)\n",
	       info.format_version, info.layer_count, a, info.capacity);
}

/* Describes a raw file in a --backing-chain listing. */
static json_object *raw_info_json(const char *file)
{
	json_object *o = json_object_new_object();
	struct stat st;

	if (stat(file, &st) == 0) {
		json_object_object_add(o, "virtual-size", json_object_new_int64(st.st_size));
		json_object_object_add(o, "actual-size", json_object_new_int64(st.st_blocks * 512));
	}
	json_object_object_add(o, "filename", json_object_new_string(file));
	json_object_object_add(o, "format", json_object_new_string("raw"));
	json_object_object_add(o, "dirty-flag", json_object_new_boolean(0));
	return o;
}

/* Prints o as qemu-img prints JSON, and frees it. */
static void print_json(json_object *o)
{
	printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
							   JSON_C_TO_STRING_SPACED |
							   JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
}

static int cmd_info(int argc, char **argv)
{
	const char *output = "human";
	bool chain = false, no_backing = false;
	unsigned flags = PCOW_OPEN_RDONLY;
	pcow_image *img, *cur;
	const char *file;
	int c, ret;
	static const struct option longopts[] = {
		{"output", required_argument, 0, 'O'},
		{"backing-chain", no_argument, 0, 'B'},
		{"no-backing", no_argument, 0, 'N'},
		{"force-share", no_argument, 0, 'U'},
		{0}};

	while ((c = getopt_long(argc, argv, "+:f:U", longopts, NULL)) != -1) {
		switch (c) {
		case 'O': output = optarg; break;
		case 'B': chain = true; break;
		case 'N': no_backing = true; break;
		case 'U': flags |= PCOW_OPEN_FORCE_SHARE; break;
		case 'f':
			if (strcmp(optarg, "pcow"))
				FAIL(optarg, "unsupported format '%s' (only pcow)", optarg);
			break;
		default: return bad_option(c, argv);
		}
	}
	if (strcmp(output, "human") && strcmp(output, "json"))
		FAIL(output, "--output must be human or json");
	if (optind != argc - 1)
		FAIL(NULL, "expecting one image file name");
	file = argv[optind];
	if (chain && no_backing)
		FAIL(file, "%s: --backing-chain and --no-backing exclude each other", file);
	if (!file_is_pcow(file) && access(file, R_OK) == 0)
		FAIL(file, "%s: not a pcow image (bad magic)", file);
	if (no_backing)
		ret = pcow_open(&img, file, flags | PCOW_OPEN_NO_BACKING);
	else
		ret = chain ? pcow_open(&img, file, flags) : open_without_chain(&img, file, flags);
	if (ret < 0)
		return lib_fail(file);
	if (!strcmp(output, "json")) {
		json_object *top = chain ? json_object_new_array() : NULL, *o;
		char name[4096];

		for (cur = img; cur; cur = chain ? pcow_backing_image(cur) : NULL) {
			struct pcow_info info = {.struct_size = sizeof(info)};

			pcow_get_info(cur, &info);
			o = info_json(cur, cur == img ? file : name);
			snprintf(name, sizeof(name), "%s", info.backing_file_full);
			if (!chain) {
				top = o;
				break;
			}
			json_object_array_add(top, o);
			if (!pcow_backing_image(cur) && info.backing_file[0])
				json_object_array_add(top, raw_info_json(info.backing_file_full));
		}
		print_json(top);
	} else {
		char name[4096];

		snprintf(name, sizeof(name), "%s", file);
		for (cur = img; cur; cur = chain ? pcow_backing_image(cur) : NULL) {
			struct pcow_info info = {.struct_size = sizeof(info)};

			pcow_get_info(cur, &info);
			if (cur != img)
				printf("\n");
			info_human(cur, name);
			snprintf(name, sizeof(name), "%s", info.backing_file_full);
			if (chain && !pcow_backing_image(cur) && info.backing_file[0]) {
				struct stat st;
				char a[32];

				printf("\nimage: %s\nfile format: raw\n", name);
				if (stat(name, &st) == 0) {
					human_size((uint64_t)st.st_size, a, sizeof(a));
					printf("virtual size: %s (%lld bytes)\n", a, (long long)st.st_size);
				}
			}
			if (!chain)
				break;
		}
	}
	pcow_close(&img);
	return 0;
}

static int cmd_snapshot(int argc, char **argv)
{
	char action = 0;
	const char *name = NULL, *file;
	unsigned flags = 0;
	pcow_image *img;
	int c, ret = 0;

	while ((c = getopt(argc, argv, "+:lc:a:d:Uqf:")) != -1) {
		switch (c) {
		case 'l': case 'c': case 'a': case 'd':
			if (action)
				FAIL(NULL, "Cannot mix '-l', '-a', '-c', '-d'");
			action = (char)c;
			name = optarg;
			break;
		case 'U': flags |= PCOW_OPEN_FORCE_SHARE; break;
		case 'q': case 'f': break;
		default: return bad_option(c, argv);
		}
	}
	if (optind != argc - 1)
		FAIL(NULL, "expecting one image file name");
	file = argv[optind];
	/* Without an action, qemu-img lists the snapshots. */
	if (!action)
		action = 'l';
	if (action == 'l')
		flags |= PCOW_OPEN_RDONLY;
	else if (flags & PCOW_OPEN_FORCE_SHARE)
		FAIL(file, "%s: force-share=on (-U) can only be used with read-only images (-l)",
		     file);
	if ((action == 'l' ? open_without_chain(&img, file, flags) : pcow_open(&img, file, flags)) < 0)
		return lib_fail(file);
	switch (action) {
	case 'l': print_snapshots(img); break;
	case 'c': ret = pcow_snapshot_create(img, name); break;
	case 'a': ret = pcow_snapshot_apply(img, name); break;
	case 'd': ret = pcow_snapshot_delete(img, name); break;
	}
	return finish(&img, file, ret);
}

static int cmd_rebase(int argc, char **argv)
{
	const char *backing = NULL, *bfmt = NULL, *file;
	enum pcow_format fmt = PCOW_FORMAT_NONE;
	unsigned flags = 0;
	bool progress = false, quiet = false;
	pcow_image *img;
	int c;

	while ((c = getopt(argc, argv, "+:ub:F:f:pq")) != -1) {
		switch (c) {
		case 'u': flags |= PCOW_REBASE_UNSAFE; break;
		case 'b': backing = optarg; break;
		case 'F': bfmt = optarg; break;
		case 'p': progress = true; break;
		case 'q': quiet = true; break;
		case 'f': break;
		default: return bad_option(c, argv);
		}
	}
	if (optind != argc - 1)
		FAIL(NULL, "expecting one image file name");
	file = argv[optind];
	if (!backing)
		FAIL(file, "%s: rebase needs -b BACKING (use -b \"\" to remove it)", file);
	if (backing[0]) {
		if (!bfmt)
			FAIL(file, "%s: backing file format must be given with -F (raw or pcow)", file);
		if (!parse_format(bfmt, &fmt))
			FAIL(file, "%s: unknown backing file format '%s'", file, bfmt);
	}
	/* -u works without the old backing file, but uses it when it is there
	 * to tell the image's own blocks from what showed through. */
	if (pcow_open(&img, file, 0) < 0 &&
	    (!(flags & PCOW_REBASE_UNSAFE) || pcow_open(&img, file, PCOW_OPEN_NO_BACKING) < 0))
		return lib_fail(file);
	/* As qemu-img: no progress in quiet mode. */
	if (progress && !quiet)
		pcow_set_progress(img, print_progress, NULL);
	return finish(&img, file, pcow_rebase(img, backing, fmt, flags));
}

/*
 * check --output=json when check could not run (qemu-img prints nothing
 * then): a script reading stdout still gets an object, with the reason.
 * Unreadable metadata counts as a corruption, as the exit code 2 says.
 */
static int check_fail_json(const char *file, const char *output, int rc)
{
	json_object *o;

	lib_fail(file);
	if (strcmp(output, "json"))
		return rc;
	o = json_object_new_object();
	json_object_object_add(o, "filename", json_object_new_string(file));
	json_object_object_add(o, "format", json_object_new_string("pcow"));
	json_object_object_add(o, "check-errors", json_object_new_int(rc != 2));
	json_object_object_add(o, "corruptions", json_object_new_int(rc == 2));
	json_object_object_add(o, "error", json_object_new_string(pcow_errormsg()));
	print_json(o);
	return rc;
}

static int cmd_check(int argc, char **argv)
{
	const char *output = "human", *file;
	unsigned fix = 0, share = 0, no_backing = 0;
	bool progress = false, quiet = false;
	struct pcow_check_result r;
	pcow_image *img;
	int c, ret;
	static const struct option longopts[] = {
		{"output", required_argument, 0, 'O'},
		{"no-backing", no_argument, 0, 'N'},
		{0}};

	while ((c = getopt_long(argc, argv, "+:r:f:qUp", longopts, NULL)) != -1) {
		switch (c) {
		case 'r':
			if (!strcmp(optarg, "leaks"))
				fix = PCOW_CHECK_FIX_LEAKS;
			else if (!strcmp(optarg, "all"))
				fix = PCOW_CHECK_FIX_LEAKS | PCOW_CHECK_FIX_ERRORS;
			else
				FAIL(NULL, "unknown option value for -r (expecting 'leaks' or 'all'): %s", optarg);
			break;
		case 'O': output = optarg; break;
		case 'U': share = PCOW_OPEN_FORCE_SHARE; break;
		case 'N': no_backing = PCOW_OPEN_NO_BACKING; break;
		case 'p': progress = true; break;
		case 'q': quiet = true; break;
		case 'f': break;
		default: return bad_option(c, argv);
		}
	}
	if (strcmp(output, "human") && strcmp(output, "json"))
		FAIL(output, "--output must be human or json");
	if (optind != argc - 1)
		FAIL(NULL, "expecting one image file name");
	file = argv[optind];
	if (fix && share)
		FAIL(file, "%s: -U cannot be used with -r", file);
	/* check never reads the backing chain: --no-backing only spares
	 * opening it. */
	ret = pcow_open(&img, file, (fix ? 0 : PCOW_OPEN_RDONLY | share) | no_backing);
	if (ret < 0) {
		/* Damaged metadata is corruption (2); an unknown feature is
		 * unsupported (63); anything else kept check from running (1). */
		if (ret == -ENOTSUP)
			return check_fail_json(file, output, 63);
		return check_fail_json(file, output,
				       ret == -EUCLEAN ||
				       (ret == -EINVAL && file_is_pcow(file)) ? 2 : 1);
	}
	/* Progress lines would break JSON output; quiet mode has none. */
	if (progress && !quiet && !strcmp(output, "human"))
		pcow_set_progress(img, print_progress, NULL);
	ret = pcow_check(img, fix, &r);
	if (ret < 0) {
		check_fail_json(file, output, 1);
		pcow_close(&img);
		return 1;
	}
	pcow_close(&img);
	if (!strcmp(output, "json")) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "filename", json_object_new_string(file));
		json_object_object_add(o, "format", json_object_new_string("pcow"));
		json_object_object_add(o, "check-errors", json_object_new_int64((int64_t)r.check_errors));
		json_object_object_add(o, "leaks", json_object_new_int64((int64_t)(r.leaks - r.leaks_fixed)));
		json_object_object_add(o, "corruptions",
				       json_object_new_int64((int64_t)(r.corruptions - r.corruptions_fixed)));
		if (fix) {
			json_object_object_add(o, "leaks-fixed", json_object_new_int64((int64_t)r.leaks_fixed));
			json_object_object_add(o, "corruptions-fixed",
					       json_object_new_int64((int64_t)r.corruptions_fixed));
		}
		json_object_object_add(o, "leaked-bytes", json_object_new_int64((int64_t)r.leaked_bytes));
		print_json(o);
	} else {
		if (r.leaks_fixed || r.corruptions_fixed)
			printf("The following inconsistencies were found and repaired:\n\n"
			       "    %" PRIu64 " leaked clusters\n    %" PRIu64 " corruptions\n\n",
			       r.leaks_fixed, r.corruptions_fixed);
		if (r.corruptions > r.corruptions_fixed)
			printf("ERROR %s\n\n%" PRIu64 " errors were found on the image.\n"
			       "Data may be corrupted, or further writes to the image may corrupt it.\n",
			       r.first_problem, r.corruptions - r.corruptions_fixed);
		if (r.leaks > r.leaks_fixed)
			printf("%" PRIu64 " leaked clusters were found on the image.\n"
			       "This means waste of disk space, but no harm to data.\n"
			       "(%s)\n",
			       r.leaks - r.leaks_fixed, r.first_problem);
		if (r.check_errors)
			printf("%" PRIu64 " internal errors have occurred during the check.\n",
			       r.check_errors);
		/* Quiet mode keeps only the problems. */
		if (r.corruptions == r.corruptions_fixed && r.leaks == r.leaks_fixed &&
		    !r.check_errors && !quiet)
			printf("No errors were found on the image.\n");
	}
	if (r.check_errors)
		return 1;
	if (r.corruptions > r.corruptions_fixed)
		return 2;
	if (r.leaks > r.leaks_fixed)
		return 3;
	return 0;
}

static bool all_zero(const uint8_t *p, uint64_t n)
{
	return n == 0 || (p[0] == 0 && !memcmp(p, p + 1, n - 1));
}

static int cmd_convert(int argc, char **argv)
{
	const char *ifmt = NULL, *ofmt = NULL, *options = NULL, *in, *out;
	struct pcow_create_opts o = {.struct_size = sizeof(o)};
	struct img_source src = {.fd = -1};
	pcow_image *dst = NULL;
	int dfd = -1, c, rc = 1;
	bool progress = false, quiet = false, created = false;
	unsigned share = 0, no_backing = 0;
	uint64_t pos, chunk;
	uint8_t *buf = NULL;
	char *ob = NULL, *obf = NULL;
	static const struct option longopts[] = {
		{"no-backing", no_argument, 0, 'N'},
		{0}};

	while ((c = getopt_long(argc, argv, "+:f:O:o:pqU", longopts, NULL)) != -1) {
		switch (c) {
		case 'N': no_backing = PCOW_OPEN_NO_BACKING; break;
		case 'f': ifmt = optarg; break;
		case 'O': ofmt = optarg; break;
		case 'o': options = optarg; break;
		case 'p': progress = true; break;
		case 'U': share = PCOW_OPEN_FORCE_SHARE; break;
		case 'q': quiet = true; break;
		default: return bad_option(c, argv);
		}
	}
	/* As qemu-img: no progress in quiet mode. */
	if (quiet)
		progress = false;
	if (optind != argc - 2)
		FAIL(NULL, "convert: expecting an input and an output file name");
	in = argv[optind];
	out = argv[optind + 1];
	if (!ofmt)
		ofmt = "raw";
	if (convert_involves_qcow2(in, ifmt, ofmt)) {
		struct qcow2_convert q = {
			.convert = cmd_convert, .in = in, .out = out, .in_fmt = ifmt,
			.out_fmt = ofmt, .options = options, .progress = progress,
			.quiet = quiet, .force_share = share != 0,
			.no_backing = no_backing != 0,
		};

		return convert_qcow2(&q);
	}
	if (strcmp(ofmt, "raw") && strcmp(ofmt, "pcow"))
		FAIL(out, "%s: unsupported output format '%s' (raw or pcow)", out, ofmt);
	if (ifmt && strcmp(ifmt, "raw") && strcmp(ifmt, "pcow"))
		FAIL(in, "%s: unsupported input format '%s' (raw or pcow)", in, ifmt);
	if (options && parse_create_options(out, options, &o, &ob, &obf) < 0)
		return 1;
	if (ob || obf) {
		free(ob);
		free(obf);
		FAIL(out, "%s: convert does not take a backing file", out);
	}
	if (img_source_open(&src, in, ifmt, share | no_backing) < 0)
		goto out;
	if (!strcmp(ofmt, "pcow")) {
		o.size = (src.size + 511) / 512 * 512;
		if (pcow_create(out, &o) < 0) {
			lib_fail(out);
			goto out;
		}
		created = true;
		if (pcow_open(&dst, out, 0) < 0) {
			lib_fail(out);
			goto out;
		}
	} else {
		/* Never overwrite: the file may be an image in use, or the
		 * input itself (a pcow output refuses the same way). */
		dfd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (dfd < 0) {
			die_msg("%s: could not create: %s", out, strerror(errno));
			goto out;
		}
		created = true;
		if (ftruncate(dfd, (off_t)src.size) < 0) {
			die_msg("%s: %s", out, strerror(errno));
			goto out;
		}
	}
	chunk = o.block_size ? o.block_size : PCOW_BLOCK_SIZE_DEFAULT;
	buf = malloc(chunk);
	if (!buf) {
		die_msg("out of memory");
		goto out;
	}
	for (pos = 0; pos < src.size; pos += chunk) {
		uint64_t n = src.size - pos < chunk ? src.size - pos : chunk, run;
		bool data;
		int ret = 0;

		/* What stores nothing is not even read; zero blocks read are
		 * left unallocated in the output too. */
		if (img_source_status(&src, pos, n, &run, &data) < 0)
			goto out;
		if (!data && run == n) {
			if (progress)
				print_progress(pos + n, src.size, NULL);
			continue;
		}
		if (img_source_read(&src, buf, n, pos) < 0)
			goto out;
		if (!all_zero(buf, n)) {
			if (dst)
				ret = pcow_write(dst, buf, n, pos);
			else if (pwrite(dfd, buf, n, (off_t)pos) != (ssize_t)n)
				ret = -(errno ? errno : EIO);
			if (ret < 0) {
				if (dst)
					lib_fail(out);
				else
					die_msg("%s: write failed: %s", out, strerror(-ret));
				goto out;
			}
		}
		if (progress)
			print_progress(pos + n, src.size, NULL);
	}
	if (dst && pcow_flush(dst) < 0) {
		lib_fail(out);
		goto out;
	}
	if (dfd >= 0 && (fdatasync(dfd) < 0 || sync_dir_of(out) < 0)) {
		die_msg("%s: flush failed: %s", out, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	free(buf);
	img_source_close(&src);
	if (dst)
		pcow_close(&dst);
	if (dfd >= 0)
		close(dfd);
	/* Never leave a half-written output behind. */
	if (rc && created)
		unlink(out);
	return rc;
}

static int cmd_map(int argc, char **argv)
{
	const char *output = "human", *file;
	unsigned flags = PCOW_OPEN_RDONLY;
	struct pcow_info info = {.struct_size = sizeof(info)};
	pcow_image *img;
	uint64_t pos;
	bool json;
	int c;
	static const struct option longopts[] = {{"output", required_argument, 0, 'O'}, {0}};

	while ((c = getopt_long(argc, argv, "+:f:U", longopts, NULL)) != -1) {
		switch (c) {
		case 'O': output = optarg; break;
		case 'U': flags |= PCOW_OPEN_FORCE_SHARE; break;
		case 'f': break;
		default: return bad_option(c, argv);
		}
	}
	if (strcmp(output, "human") && strcmp(output, "json"))
		FAIL(output, "--output must be human or json");
	if (optind != argc - 1)
		FAIL(NULL, "expecting one image file name");
	file = argv[optind];
	if (pcow_open(&img, file, flags) < 0)
		return lib_fail(file);
	pcow_get_info(img, &info);
	json = !strcmp(output, "json");
	if (!json)
		printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
	for (pos = 0; pos < info.virtual_size;) {
		struct pcow_block_status st;
		bool data;

		if (pcow_block_status(img, pos, info.virtual_size - pos, &st) < 0) {
			if (json && pos)
				printf("]\n");
			lib_fail(file);
			pcow_close(&img);
			return 1;
		}
		/* A run a layer owns without data (a discarded block over a
		 * snapshot) is present and reads as zeros, as qemu-img shows a
		 * zero cluster. */
		data = st.flags & PCOW_STATUS_DATA;
		if (json) {
			/* qemu-img's layout: one run per line. */
			printf("%s{ \"start\": %" PRIu64 ", \"length\": %" PRIu64
			       ", \"depth\": %d, \"present\": %s, \"zero\": %s, \"data\": %s",
			       pos ? ",\n" : "[", st.offset, st.length, st.depth < 0 ? 0 : st.depth,
			       st.depth >= 0 ? "true" : "false", data ? "false" : "true",
			       data ? "true" : "false");
			if (data && st.file_offset >= 0)
				printf(", \"offset\": %" PRId64, st.file_offset);
			printf("}");
		} else if (data) {
			printf("%#-16" PRIx64 "%#-16" PRIx64 "%#-16" PRIx64 "%s\n", st.offset,
			       st.length, (uint64_t)st.file_offset, st.filename ? st.filename : "");
		}
		pos += st.length;
	}
	if (json)
		printf("%s]\n", pos ? "" : "[");
	pcow_close(&img);
	return 0;
}

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *help;
} commands[] = {
	{"create", cmd_create, "create a new image"},
	{"info", cmd_info, "show an image's properties"},
	{"snapshot", cmd_snapshot, "list, create, apply or delete snapshots"},
	{"rebase", cmd_rebase, "change the backing file"},
	{"check", cmd_check, "check an image for leaks and damage"},
	{"convert", cmd_convert, "convert between raw and pcow"},
	{"map", cmd_map, "show where the data of an image lives"},
	{"commit", cmd_commit, "merge an overlay into its backing file"},
	{"resize", cmd_resize, "grow or shrink an image"},
	{"compare", cmd_compare, "compare the content of two images"},
	{"measure", cmd_measure, "compute the size a new image needs"},
	{"amend", cmd_amend, "change options of an image in place"},
};

int main(int argc, char **argv)
{
	size_t i;

	progname = "pcow-img";
	/* Option errors are reported by bad_option, on one line. */
	opterr = 0;
	if (argc < 2) {
		usage(stderr);
		return 1;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
		printf("pcow-img version %d.%d.%d\n", PCOW_VERSION_MAJOR, PCOW_VERSION_MINOR,
		       PCOW_VERSION_MICRO);
		return 0;
	}
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name)) {
			optind = 1;
			return commands[i].fn(argc - 1, argv + 1);
		}
	die_msg("Command not found: %s", argv[1]);
	return 1;
}
