/*
 * img_commit -- merge an overlay into its backing file:
 *   commit [-f pcow] [-t CACHE] [-b BASE] [-d] [-p] [-q] FILE
 * as qemu-img commit: -b BASE commits into an image further down the chain
 * (and implies -d, since the images in between become invalid); -d keeps
 * FILE's data instead of emptying it.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "img.h"
#include "util.h"

static bool valid_cache_mode(const char *mode)
{
	static const char *const modes[] = {"none", "writeback", "writethrough",
					    "directsync", "unsafe"};
	size_t i;

	for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
		if (!strcmp(mode, modes[i]))
			return true;
	return false;
}

int cmd_commit(int argc, char **argv)
{
	const char *base = NULL, *fmt = NULL, *file;
	unsigned flags = 0;
	bool progress = false, quiet = false;
	pcow_image *img;
	int c, ret;
	static const struct option longopts[] = {{"help", no_argument, 0, 'h'}, {0}};

	while ((c = getopt_long(argc, argv, "+:f:t:b:dpqh", longopts, NULL)) != -1) {
		switch (c) {
		case 'f': fmt = optarg; break;
		case 't':
			/* qemu-img's cache modes, checked as it checks them;
			 * the library has one way to write. */
			if (!valid_cache_mode(optarg))
				FAIL(NULL, "Invalid cache option: %s", optarg);
			break;
		case 'b':
			base = optarg;
			flags |= PCOW_COMMIT_KEEP;
			break;
		case 'd': flags |= PCOW_COMMIT_KEEP; break;
		case 'p': progress = true; break;
		case 'q': quiet = true; break;
		case 'h': usage(stdout); return 0;
		default: return bad_option(c, argv);
		}
	}
	if (optind != argc - 1)
		FAIL(NULL, "commit: expecting one image file name");
	file = argv[optind];
	if (fmt && strcmp(fmt, "pcow"))
		FAIL(file, "%s: unsupported format '%s' (only pcow)", file, fmt);
	if (pcow_open(&img, file, 0) < 0)
		return lib_fail(file);
	/* As qemu-img: no progress in quiet mode. */
	if (progress && !quiet)
		pcow_set_progress(img, print_progress, NULL);
	ret = finish(&img, file, pcow_commit(img, base, flags));
	if (ret == 0 && !quiet)
		printf("Image committed.\n");
	return ret;
}
