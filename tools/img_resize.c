/* img_resize -- grow or shrink an image, as qemu-img resize does. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "img.h"
#include "util.h"

/* Parses "[+|-]SIZE": *sign is +1, -1 or 0 (absolute). */
static bool parse_resize_arg(const char *arg, int *sign, uint64_t *n)
{
	*sign = 0;
	if (*arg == '+' || *arg == '-')
		*sign = *arg++ == '+' ? 1 : -1;
	return parse_size(arg, n);
}

int cmd_resize(int argc, char **argv)
{
	const char *file, *size_arg, *fmt = NULL;
	bool quiet = false, shrink = false;
	struct pcow_info info = {.struct_size = sizeof(info)};
	uint64_t n, size, lost;
	pcow_image *img;
	char human[32];
	int c, rc, sign;
	static const struct option longopts[] = {
		{"shrink", no_argument, 0, 'S'},
		{"help", no_argument, 0, 'h'},
		{0}};

	/* The size comes last and may start with '-': take it away before
	 * getopt would read it as an option. */
	if (argc < 3)
		FAIL(NULL, "resize: expecting an image file name and a size");
	size_arg = argv[--argc];
	while ((c = getopt_long(argc, argv, ":f:qh", longopts, NULL)) != -1) {
		switch (c) {
		case 'f': fmt = optarg; break;
		case 'q': quiet = true; break;
		case 'S': shrink = true; break;
		case 'h': usage(stdout); return 0;
		default: return bad_option(c, argv);
		}
	}
	if (optind != argc - 1)
		FAIL(NULL, "resize: expecting an image file name and a size");
	file = argv[optind];
	if (fmt && strcmp(fmt, "pcow"))
		FAIL(file, "%s: unsupported format '%s' (only pcow)", file, fmt);
	if (!parse_resize_arg(size_arg, &sign, &n))
		FAIL(file, "%s: invalid size '%s'", file, size_arg);
	if (file_not_pcow(file))
		FAIL(file, "%s: not a pcow image (bad magic)", file);
	if (pcow_open(&img, file, 0) < 0)
		return lib_fail(file);
	pcow_get_info(img, &info);
	if (sign > 0 && n > UINT64_MAX - info.virtual_size) {
		pcow_close(&img);
		FAIL(file, "%s: invalid size '%s'", file, size_arg);
	}
	size = sign > 0 ? info.virtual_size + n
	       : sign < 0 ? (n < info.virtual_size ? info.virtual_size - n : 0)
			  : n;
	if (size == 0) {
		pcow_close(&img);
		FAIL(file, "%s: New image size must be positive", file);
	}
	if (size < info.virtual_size && !shrink) {
		if (pcow_resize_lost_bytes(img, size, &lost) < 0)
			return finish(&img, file, -1);
		pcow_close(&img);
		if (!lost)
			FAIL(file, "%s: Use the --shrink option to perform a shrink operation.",
			     file);
		human_size(lost, human, sizeof(human));
		FAIL(file, "%s: Use the --shrink option to perform a shrink operation (it discards %s of data past the new end).",
		     file, human);
	}
	rc = finish(&img, file, pcow_resize(img, size, shrink ? PCOW_RESIZE_SHRINK : 0));
	if (rc == 0 && !quiet)
		printf("Image resized.\n");
	return rc;
}
