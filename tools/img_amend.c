/*
 * img_amend -- change options of an image in place, as qemu-img amend does.
 *
 * What can change in place: the backing file (backing_file, backing_fmt:
 * the same as rebase -u, nothing is copied) and the virtual size (size: as
 * resize; a shrink that would drop data is refused, resize --shrink does
 * that).  What is fixed when the image is created (block_size, capacity) is
 * refused.  Every option is checked before anything changes, so a refused
 * amend leaves the image as it was.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "img.h"
#include "util.h"

struct amend {
	char *backing;        /* new backing file name, "" to remove; NULL: keep */
	char *backing_fmt;    /* NULL: keep */
	uint64_t size;        /* new virtual size; 0: keep */
};

/* Parses "key=value,..." into a; prints one line and returns -1 when wrong. */
static int parse_amend_options(const char *file, char *opts, struct amend *a)
{
	char *save = NULL, *tok;

	for (tok = strtok_r(opts, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');

		if (!eq) {
			die_msg("%s: Invalid parameter '%s' (expected key=value)", file, tok);
			return -1;
		}
		*eq++ = '\0';
		if (!strcmp(tok, "backing_file")) {
			free(a->backing);
			a->backing = strdup(eq);
		} else if (!strcmp(tok, "backing_fmt")) {
			free(a->backing_fmt);
			a->backing_fmt = strdup(eq);
		} else if (!strcmp(tok, "size")) {
			if (!parse_size(eq, &a->size) || !a->size || a->size % 512) {
				die_msg("%s: Parameter 'size' expects a size in whole sectors (512 bytes), not '%s'",
					file, eq);
				return -1;
			}
		} else if (!strcmp(tok, "block_size") || !strcmp(tok, "cluster_size")) {
			die_msg("%s: Changing the block size is not supported", file);
			return -1;
		} else if (!strcmp(tok, "capacity")) {
			die_msg("%s: Changing the capacity is not supported", file);
			return -1;
		} else {
			die_msg("%s: Invalid parameter '%s'", file, tok);
			return -1;
		}
	}
	return 0;
}

/* Works out the backing file and format to set; 0 when nothing changes. */
static int backing_change(const char *file, const struct amend *a,
			  const struct pcow_info *info, const char **name,
			  enum pcow_format *fmt)
{
	if (!a->backing && !a->backing_fmt)
		return 0;
	*name = a->backing ? a->backing : info->backing_file;
	*fmt = PCOW_FORMAT_NONE;
	if (!(*name)[0]) {
		if (a->backing_fmt) {
			die_msg("%s: backing_fmt needs a backing file", file);
			return -1;
		}
		return 1;
	}
	if (!a->backing_fmt) {
		die_msg("%s: the backing file format must be given with backing_fmt (raw or pcow)",
			file);
		return -1;
	}
	if (!parse_format(a->backing_fmt, fmt)) {
		die_msg("%s: unknown backing file format '%s' (raw or pcow)", file, a->backing_fmt);
		return -1;
	}
	return 1;
}

/* A smaller size must not drop data the image holds. */
static int check_shrink(const char *file, pcow_image *img,
			const struct pcow_info *info, uint64_t size)
{
	uint64_t lost = 0;

	if (size >= info->virtual_size)
		return 0;
	if (pcow_resize_lost_bytes(img, size, &lost) < 0)
		return lib_fail(file), -1;
	if (lost) {
		die_msg("%s: shrinking to %" PRIu64 " bytes would discard %" PRIu64
			" bytes of data (pcow-img resize --shrink does that)", file, size, lost);
		return -1;
	}
	return 0;
}

int cmd_amend(int argc, char **argv)
{
	const char *fmt = NULL, *file, *name = NULL;
	char *options = NULL;
	struct amend a = {0};
	struct pcow_info info = {.struct_size = sizeof(info)};
	enum pcow_format bfmt = PCOW_FORMAT_NONE;
	pcow_image *img = NULL;
	bool progress = false, quiet = false, help = false, resizes;
	struct progress_steps steps = {0};
	int c, rc = 1, change, ret;

	while ((c = getopt(argc, argv, "+:f:o:pqU")) != -1) {
		switch (c) {
		case 'f': fmt = optarg; break;
		case 'o': {
			/* Several -o accumulate, as with qemu-img. */
			char *more;

			if (is_help_option(optarg)) {
				help = true;
				break;
			}
			if (asprintf(&more, "%s%s%s", options ? options : "", options ? "," : "",
				     optarg) < 0) {
				free(options);
				FAIL(NULL, "out of memory");
			}
			free(options);
			options = more;
			break;
		}
		case 'p': progress = true; break;
		case 'q': quiet = true; break;
		case 'U':
			free(options);
			FAIL(NULL, "force-share (-U) can only be used with read-only images; amend writes");
		default: free(options); return bad_option(c, argv);
		}
	}
	if (help) {
		free(options);
		print_options_help("Amend options for 'pcow':", OPTS_AMEND);
		return 0;
	}
	if (!options)
		FAIL(NULL, "Must specify options (-o)");
	if (optind != argc - 1) {
		free(options);
		FAIL(NULL, "Expecting one image file name");
	}
	file = argv[optind];
	if (fmt && strcmp(fmt, "pcow")) {
		die_msg("%s: Format driver '%s' does not support option amendment", file, fmt);
		goto out;
	}
	if (parse_amend_options(file, options, &a) < 0)
		goto out;
	if (file_is_qcow2(file)) {
		die_msg("%s: a qcow2 image: use qemu-img amend", file);
		goto out;
	}
	/* The backing file is opened when it is there (to keep the image's own
	 * blocks its own, as rebase -u does), but need not be. */
	if (pcow_open(&img, file, 0) < 0 &&
	    pcow_open(&img, file, PCOW_OPEN_NO_BACKING) < 0) {
		lib_fail(file);
		goto out;
	}
	pcow_get_info(img, &info);
	change = backing_change(file, &a, &info, &name, &bfmt);
	if (change < 0 || (a.size && check_shrink(file, img, &info, a.size) < 0)) {
		pcow_close(&img);
		goto out;
	}
	resizes = a.size && a.size != info.virtual_size;
	/* One progress line from 0 to 100% over both operations. */
	steps.count = (unsigned)resizes + (change ? 1u : 0u);
	if (progress && !quiet)
		pcow_set_progress(img, print_progress, &steps);
	ret = resizes ? pcow_resize(img, a.size, PCOW_RESIZE_SHRINK) : 0;
	steps.step = (unsigned)resizes;
	if (ret == 0 && change)
		ret = pcow_rebase(img, name, bfmt, PCOW_REBASE_UNSAFE);
	rc = finish(&img, file, ret);
out:
	free(options);
	free(a.backing);
	free(a.backing_fmt);
	return rc;
}
