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
#include <libgen.h>
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
#include "replace.h"
#include "util.h"

void usage(FILE *f)
{
	fprintf(f,
		"usage: pcow-img COMMAND [OPTIONS] ...\n"
		"\n"
		"Commands:\n"
		"  create [-f pcow] [-q] [-u] [-b BACKING -F FMT] [-o block_size=SIZE,capacity=SIZE,stripes=DIR1:DIR2[:...],stripe_nodes=N1:N2[:...],stripe_size=SIZE] FILE [SIZE]\n"
		"  info [-f pcow|raw|qcow2] [--output=human|json] [--backing-chain | --no-backing] [-U] FILE\n"
		"  snapshot [-f pcow] [-q] [-U] [-l | -c NAME | -a NAME | -d NAME] FILE\n"
		"  rebase [-f pcow] [-u] [-p] [-q] -b BACKING [-F FMT] FILE\n"
		"  check [-f pcow] [-r leaks|all] [-p] [-q] [-U] [--no-backing] [--output=human|json] FILE\n"
		"  convert [-f raw|pcow|qcow2] -O raw|pcow|qcow2 [-o block_size=SIZE,capacity=SIZE] [-n] [-p] [-q] [-U] [--no-backing] IN OUT\n"
		"  map [-f pcow] [--output=human|json] [--start-offset=OFFSET] [--max-length=LEN] [-U] FILE\n"
		"  commit [-f pcow] [-t CACHE] [-b BASE] [-d] [-p] [-q] FILE\n"
		"  resize [--shrink] [-f pcow] [-q] FILE [+|-]SIZE\n"
		"  compare [-f FMT] [-F FMT] [-s] [-p] [-q] [-U] A B\n"
		"  measure [-f FMT] [-O pcow|raw|qcow2] [-o block_size=SIZE,capacity=SIZE] [-U] [--output=human|json] (--size SIZE | IN)\n"
		"  amend [-f pcow] [-p] [-q] -o OPTIONS FILE   (-o help lists the options)\n"
		"\n"
		"SIZE is bytes, with an optional suffix k, M, G, T, P, E (powers of 1024)\n"
		"and then a fraction (1.5G), or 0x hex; -o help lists a verb's options.\n");
}

/* Parses an image size for create (qemu-img rounds it up to a sector). */
static bool parse_image_size(const char *file, const char *arg, uint64_t *size)
{
	if (!parse_size(arg, size) || *size > UINT64_MAX - 511) {
		die_msg("%s: invalid image size '%s' " SIZE_HINT, file, arg);
		return false;
	}
	*size = (*size + 511) / 512 * 512;
	return true;
}

/* Parses "-o key=value,key=value" (block_size, capacity, size,
 * backing_file, backing_fmt, stripes, stripe_nodes, stripe_size). */
int parse_create_options(const char *file, const char *opts,
				struct pcow_create_opts *o, char **backing,
				char **backing_fmt)
{
	char *copy = strdup(opts), *save = NULL, *tok;
	int ret = 0, nodes = 0;

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
		} else if (!strcmp(tok, "size")) {
			if (!parse_image_size(file, eq, &o->size))
				ret = -1;
		} else if (!strcmp(tok, "stripes")) {
			if (stripe_names(file, eq, o) < 0)
				ret = -1;
		} else if (!strcmp(tok, "stripe_nodes")) {
			nodes = stripe_nodes(file, eq, o);
			if (nodes < 0)
				ret = -1;
		} else if (!strcmp(tok, "stripe_size")) {
			if (!parse_size(eq, &o->stripe_size) || !o->stripe_size ||
			    (o->stripe_size & (o->stripe_size - 1))) {
				die_msg("%s: invalid stripe size '%s' (a power of two from 64 KiB)",
					file, eq);
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
	if (!ret && nodes && !o->extent_count) {
		die_msg("%s: stripe_nodes needs stripes=DIR1:DIR2[:...]", file);
		ret = -1;
	} else if (!ret && nodes && (uint32_t)nodes != o->extent_count) {
		die_msg("%s: stripe_nodes needs one node per stripe directory (%d for %u)",
			file, nodes, o->extent_count);
		ret = -1;
	}
	free(copy);
	return ret;
}

/* Whether name, resolved as the image file's backing file, is file. */
static bool backing_is_itself(const char *file, const char *name)
{
	char *copy = strdup(file), *full = NULL;
	struct stat a, b;
	bool same;

	if (!copy)
		return false;
	if (name[0] == '/' || asprintf(&full, "%s/%s", dirname(copy), name) < 0)
		full = NULL;
	same = stat(file, &a) == 0 && stat(full ? full : name, &b) == 0 &&
	       a.st_dev == b.st_dev && a.st_ino == b.st_ino;
	free(full);
	free(copy);
	return same;
}

static int cmd_create(int argc, char **argv)
{
	struct pcow_create_opts o = {.struct_size = sizeof(o)};
	struct replace r = {.lock_fd = -1};
	char *backing = NULL, *bfmt = NULL, *fmt = NULL, *options = NULL;
	const char *file;
	bool quiet = false, help = false;
	int c, rc = 1;
	static const struct option longopts[] = {{"help", no_argument, 0, 'h'}, {0}};

	while ((c = getopt_long(argc, argv, "+:f:b:F:o:hqu", longopts, NULL)) != -1) {
		switch (c) {
		case 'f': fmt = optarg; break;
		case 'b': free(backing); backing = strdup(optarg); break;
		case 'F': free(bfmt); bfmt = strdup(optarg); break;
		case 'o':
			if (is_help_option(optarg))
				help = true;
			else
				options = optarg;
			break;
		case 'q': quiet = true; break;
		case 'u': o.flags |= PCOW_CREATE_NO_BACKING_OPEN; break;
		case 'h': usage(stdout); return 0;
		default: return bad_option(c, argv);
		}
	}
	if (help) {
		print_options_help("Supported pcow options:", OPTS_CREATE);
		goto done;
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
	if (optind + 1 < argc && !parse_image_size(file, argv[optind + 1], &o.size))
		goto out;
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
		if ((o.flags & PCOW_CREATE_NO_BACKING_OPEN) && optind + 1 >= argc && !o.size) {
			die_msg("%s: image size must be given with -u (the backing file is not opened)",
				file);
			goto out;
		}
		if (backing_is_itself(file, backing)) {
			die_msg("%s: the backing file is the image itself", file);
			goto out;
		}
		o.backing_file = backing;
	} else if (optind + 1 >= argc && !o.size) {
		die_msg("%s: image size must be given", file);
		goto out;
	}
	if (replace_begin(&r, file) < 0)
		goto out;
	if (pcow_create(r.build, &o) < 0) {
		replace_lib_fail(&r);
		replace_abort(&r);
		goto out;
	}
	r.built = true;
	if (replace_commit(&r) < 0)
		goto out;
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
done:
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
	/* qemu-img's columns, so that what parses its table parses this one.
	 * A pcow snapshot holds no VM state, so no clock and no icount. */
	printf("Snapshot list:\n");
	printf("%-10s%-17s%8s%20s%13s%11s\n", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK",
	       "ICOUNT");
	for (i = 0; i < n; i++) {
		date_str(list[i].date_sec, date, sizeof(date));
		human_size(0, size, sizeof(size));
		printf("%-9" PRIu32 " %-16s %8s%20s%13s%11d\n", list[i].id, list[i].name, size,
		       date, "00:00:00.000", 0);
	}
	free(list);
}

/* "extent-nodes" (a node or null per extent file) and
 * "extent-nodes-bound" (whether this host binds to it), when any is set. */
static void extent_nodes_json(pcow_image *img, uint32_t n, json_object *data)
{
	json_object *nodes = json_object_new_array(), *bound = json_object_new_array();
	bool any = false;

	for (uint32_t k = 0; k < n; k++) {
		int applied, node = pcow_extent_node(img, k, &applied);

		any |= node >= 0;
		json_object_array_add(nodes, node >= 0 ? json_object_new_int(node) : NULL);
		json_object_array_add(bound, json_object_new_boolean(node >= 0 && applied));
	}
	if (!any) {
		json_object_put(nodes);
		json_object_put(bound);
		return;
	}
	json_object_object_add(data, "extent-nodes", nodes);
	json_object_object_add(data, "extent-nodes-bound", bound);
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
				json_object_object_add(s, "icount", json_object_new_int(0));
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
	if (info.extent_count) {
		json_object *arr = json_object_new_array();
		uint32_t k;

		json_object_object_add(data, "stripe-size", json_object_new_int64((int64_t)info.stripe_size));
		for (k = 0; k < info.extent_count; k++)
			json_object_array_add(arr, json_object_new_string(pcow_extent_file(img, k)));
		json_object_object_add(data, "extent-files", arr);
		extent_nodes_json(img, info.extent_count, data);
	}
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
	if (info.extent_count) {
		uint32_t k;

		human_size(info.stripe_size, a, sizeof(a));
		printf("    stripe size: %s (%" PRIu64 " bytes)\n    extent files:\n",
		       a, info.stripe_size);
		for (k = 0; k < info.extent_count; k++) {
			int applied, node = pcow_extent_node(img, k, &applied);

			printf("        [%u]: %s", k, pcow_extent_file(img, k));
			if (node >= 0)
				printf(" (node %d%s)", node, applied ? "" : ", not on this host: not bound");
			printf("\n");
		}
	}
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
	const char *output = "human", *fmt = NULL;
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
			if (strcmp(optarg, "pcow") && strcmp(optarg, "raw") && strcmp(optarg, "qcow2"))
				FAIL(optarg, "unsupported format '%s' (pcow; raw and qcow2 through qemu-img)",
				     optarg);
			fmt = optarg;
			break;
		default: return bad_option(c, argv);
		}
	}
	if (strcmp(output, "human") && strcmp(output, "json"))
		FAIL(output, "--output must be human or json");
	if (optind != argc - 1)
		FAIL(NULL, "expecting one image file name");
	file = argv[optind];
	/* Another format is qemu-img's to describe, with the same options. */
	if (fmt && strcmp(fmt, "pcow")) {
		if (no_backing)
			FAIL(file, "%s: --no-backing is for pcow images (qemu-img info has none)", file);
		return qemu_img_answers(file, argv);
	}
	if (chain && no_backing)
		FAIL(file, "%s: --backing-chain and --no-backing exclude each other", file);
	if (file_not_pcow(file))
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
	struct pcow_info info = {.struct_size = sizeof(info)};
	uint64_t total;
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
	/* After a repair, as qemu-img: what the image is now. */
	pcow_get_info(img, &info);
	pcow_close(&img);
	total = (info.virtual_size + info.block_size - 1) / info.block_size;
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
		/* The bytes of the leaks found, unless a repair freed them. */
		if (!r.leaks_fixed || r.leaks_fixed < r.leaks)
			json_object_object_add(o, "leaked-bytes",
					       json_object_new_int64((int64_t)r.leaked_bytes));
		/* qemu-img's allocation figures, in blocks: pcow keeps every
		 * block at its place in its region, so none is fragmented. */
		json_object_object_add(o, "image-end-offset",
				       json_object_new_int64((int64_t)info.end_offset));
		json_object_object_add(o, "total-clusters", json_object_new_int64((int64_t)total));
		json_object_object_add(o, "allocated-clusters",
				       json_object_new_int64((int64_t)info.allocated_blocks));
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
		/* As qemu-img: the allocation line only when something is. */
		if (!quiet && info.allocated_blocks)
			printf("%" PRIu64 "/%" PRIu64 " = %0.2f%% allocated, %0.2f%% fragmented, %0.2f%% compressed clusters\n",
			       info.allocated_blocks, total,
			       (double)info.allocated_blocks * 100.0 / (double)total, 0.0, 0.0);
		if (!quiet)
			printf("Image end offset: %" PRIu64 "\n", info.end_offset);
	}
	if (r.check_errors)
		return 1;
	if (r.corruptions > r.corruptions_fixed)
		return 2;
	if (r.leaks > r.leaks_fixed)
		return 3;
	return 0;
}

/* Parses a byte offset or length of map; false after one line. */
static bool map_range_arg(const char *arg, const char *what, uint64_t *v)
{
	if (parse_size(arg, v))
		return true;
	die_msg("invalid %s '%s' " SIZE_HINT, what, arg);
	return false;
}

static int cmd_map(int argc, char **argv)
{
	const char *output = "human", *file;
	unsigned flags = PCOW_OPEN_RDONLY;
	struct pcow_info info = {.struct_size = sizeof(info)};
	uint64_t pos, start = 0, max_len = UINT64_MAX, end;
	pcow_image *img;
	bool json;
	int c, unallocated_depth;
	static const struct option longopts[] = {
		{"output", required_argument, 0, 'O'},
		{"start-offset", required_argument, 0, 's'},
		{"max-length", required_argument, 0, 'l'},
		{"force-share", no_argument, 0, 'U'},
		{0}};

	while ((c = getopt_long(argc, argv, "+:f:U", longopts, NULL)) != -1) {
		switch (c) {
		case 'O': output = optarg; break;
		case 's':
			if (!map_range_arg(optarg, "start offset", &start))
				return 1;
			break;
		case 'l':
			if (!map_range_arg(optarg, "max length", &max_len))
				return 1;
			break;
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
	/* What nothing holds was looked for down to the last layer: qemu-img
	 * reports that layer's depth. */
	unallocated_depth = info.view_layers ? (int)info.view_layers - 1 : 0;
	end = start < info.virtual_size && max_len < info.virtual_size - start ?
	      start + max_len : info.virtual_size;
	json = !strcmp(output, "json");
	if (json)
		printf("[");
	else
		printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
	for (pos = start; pos < end;) {
		struct pcow_block_status st;
		bool data;

		if (pcow_block_status(img, pos, end - pos, &st) < 0) {
			if (json)
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
			       pos > start ? ",\n" : "", st.offset, st.length,
			       st.depth < 0 ? unallocated_depth : st.depth,
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
		printf("]\n");
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
