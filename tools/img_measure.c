/*
 * img_measure -- the size a new image needs, as qemu-img measure reports
 * it: "required size" for the content of IN (or none, with --size) and
 * "fully allocated size" once every block has been written.
 *
 * A pcow file's apparent size says little (its regions are sparse), so the
 * sizes are the bytes the file occupies on disk (st_blocks * 512) when
 * `pcow-img convert -O pcow IN OUT` (or `create`) writes it: the metadata
 * blob, one file-system block, plus every block that holds a non-zero
 * byte, stored whole (the last block of the image only up to the virtual
 * size, rounded up to a file-system block).  Zero blocks stay holes, as
 * convert leaves them.  File-system blocks are taken to be 4 KiB, the
 * smallest pcow block size; the file system's own bookkeeping (extent
 * blocks of a fragmented file) is not counted, as qemu-img does not.
 */
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include "img.h"
#include "img_qcow2.h"
#include "img_source.h"
#include "util.h"

#define FS_BLOCK 4096u
#define SCAN_BUF (1u << 20)
/* A fresh image's metadata blob (header and one layer) fills one block;
 * once written, an image has used both slots. */
#define META_ALLOCATED FS_BLOCK
#define META_WRITTEN (2 * FS_BLOCK)
/* Blocks whose copy bits one page of the bitmap holds: every written block
 * gets its bit at close (format.md 4.1, "Recorded ownership"). */
#define BITS_PER_PAGE (8ull * FS_BLOCK)

static uint64_t round_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

/* Bytes a block holding n bytes of the image occupies. */
static uint64_t block_allocation(uint64_t n)
{
	return round_up(n, FS_BLOCK);
}

/* Whether [off, end) of s holds a non-zero byte (in its data only). */
static int has_nonzero(struct img_source *s, uint8_t *buf, uint64_t off,
		       uint64_t end, bool *found)
{
	*found = false;
	while (off < end && !*found) {
		uint64_t n = end - off < SCAN_BUF ? end - off : SCAN_BUF;

		if (img_source_read(s, buf, n, off) < 0)
			return -1;
		*found = first_nonzero(buf, n) < n;
		off += n;
	}
	return 0;
}

/* Bytes the blocks of block_size that hold data other than zeros occupy,
 * with the pages of the copy bitmap that record them. */
static int measure_data(struct img_source *s, uint64_t block_size,
			uint64_t *bytes)
{
	uint8_t *buf = malloc(SCAN_BUF);
	uint64_t off = 0, last_page = UINT64_MAX;

	*bytes = 0;
	if (!buf) {
		die_msg("out of memory");
		return -1;
	}
	while (off < s->size) {
		uint64_t run, block_start = off / block_size * block_size;
		uint64_t block_end = block_start + block_size, end;
		bool data, found;

		if (block_end > s->size)
			block_end = s->size;
		if (img_source_status(s, off, s->size - off, &run, &data) < 0)
			goto fail;
		if (!data) {
			off += run;
			continue;
		}
		end = off + run < block_end ? off + run : block_end;
		if (has_nonzero(s, buf, off, end, &found) < 0)
			goto fail;
		if (found) {
			*bytes += block_allocation(block_end - block_start);
			if (block_start / block_size / BITS_PER_PAGE != last_page) {
				last_page = block_start / block_size / BITS_PER_PAGE;
				*bytes += FS_BLOCK;
			}
			end = block_end;
		}
		off = end;
	}
	free(buf);
	return 0;
fail:
	free(buf);
	return -1;
}

/*
 * Parses -o for the output format (pcow only): block_size, and capacity,
 * which moves no byte of allocation (it only reserves address space) but is
 * checked as create checks it.
 */
static int parse_measure_options(const char *opts, const char *fmt,
				 uint64_t *block_size, uint64_t *capacity)
{
	char *copy = strdup(opts), *save = NULL, *tok;
	int ret = 0;

	for (tok = strtok_r(copy, ",", &save); tok && !ret;
	     tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');

		if (eq)
			*eq++ = '\0';
		if (!strcmp(fmt, "pcow") && eq &&
		    (!strcmp(tok, "block_size") || !strcmp(tok, "cluster_size"))) {
			if (!parse_size(eq, block_size) || *block_size < PCOW_BLOCK_SIZE_MIN ||
			    *block_size > PCOW_BLOCK_SIZE_MAX ||
			    (*block_size & (*block_size - 1))) {
				die_msg("Block size must be a power of two between 4 KiB and 1 GiB: '%s'",
					eq);
				ret = -1;
			}
		} else if (!strcmp(fmt, "pcow") && eq && !strcmp(tok, "capacity")) {
			if (!parse_size(eq, capacity) || !*capacity || *capacity > (1ull << 50)) {
				die_msg("Invalid capacity '%s' (from the image size to 1 PiB)", eq);
				ret = -1;
			}
		} else {
			die_msg("Invalid parameter '%s' for format '%s'", tok, fmt);
			ret = -1;
		}
	}
	free(copy);
	return ret;
}

static void print_sizes(const char *output, uint64_t required, uint64_t full)
{
	if (!strcmp(output, "json")) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "required", json_object_new_int64((int64_t)required));
		json_object_object_add(o, "fully-allocated", json_object_new_int64((int64_t)full));
		printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
								   JSON_C_TO_STRING_SPACED));
		json_object_put(o);
	} else {
		printf("required size: %" PRIu64 "\nfully allocated size: %" PRIu64 "\n",
		       required, full);
	}
}

int cmd_measure(int argc, char **argv)
{
	const char *output = "human", *ofmt = "pcow", *ifmt = NULL, *options = NULL;
	const char *size_arg = NULL;
	uint64_t block_size = PCOW_BLOCK_SIZE_DEFAULT, capacity = 0, size, required, full;
	struct img_source src = {.fd = -1};
	unsigned flags = 0;
	bool help = false;
	int c;
	static const struct option longopts[] = {
		{"output", required_argument, 0, 'J'},
		{"size", required_argument, 0, 'S'},
		{"force-share", no_argument, 0, 'U'},
		{0}};

	while ((c = getopt_long(argc, argv, "+:f:O:o:U", longopts, NULL)) != -1) {
		switch (c) {
		case 'f': ifmt = optarg; break;
		case 'O': ofmt = optarg; break;
		case 'o':
			if (is_help_option(optarg))
				help = true;
			options = optarg;
			break;
		case 'U': flags |= PCOW_OPEN_FORCE_SHARE; break;
		case 'J': output = optarg; break;
		case 'S': size_arg = optarg; break;
		default: return bad_option(c, argv);
		}
	}
	if (strcmp(output, "human") && strcmp(output, "json"))
		FAIL(NULL, "--output must be used with human or json as argument.");
	if (strcmp(ofmt, "pcow") && strcmp(ofmt, "raw") && strcmp(ofmt, "qcow2"))
		FAIL(NULL, "Unknown file format '%s' (pcow, raw or qcow2)", ofmt);
	/* A qcow2 output is qemu-img's to measure (convert writes qcow2
	 * through it); what it cannot read, a pcow image, it reads as raw. */
	if (!strcmp(ofmt, "qcow2")) {
		const char *in = optind < argc ? argv[optind] : NULL;
		char *list[] = {"convert", "-O", "qcow2", "-o", "help", NULL};

		if (help)
			return qemu_img_answers(NULL, list);
		if (in && !size_arg && optind == argc - 1 && !help &&
		    (ifmt ? !strcmp(ifmt, "pcow") : file_starts_as_pcow(in)))
			return measure_qcow2_of_pcow(in, options, output,
						     flags & PCOW_OPEN_FORCE_SHARE);
		return qemu_img_answers(in, argv);
	}
	if (help) {
		if (!strcmp(ofmt, "pcow"))
			print_options_help("Supported pcow options:", OPTS_CONVERT);
		else
			printf("Supported raw options:\n");
		return 0;
	}
	if (size_arg && optind < argc)
		FAIL(NULL, "--size N cannot be used together with a filename.");
	if (!size_arg && optind != argc - 1)
		FAIL(NULL, "Either --size N or one filename must be specified.");
	if (options && parse_measure_options(options, ofmt, &block_size, &capacity) < 0)
		return 1;
	if (size_arg) {
		if (!parse_size(size_arg, &size))
			FAIL(NULL, "Invalid image size specified: '%s'", size_arg);
		/* As create: an image has at least one sector. */
		if (!size)
			FAIL(NULL, "Invalid image size specified: '%s' (must be greater than 0)",
			     size_arg);
	} else {
		if (img_source_open(&src, argv[optind], ifmt, flags) < 0)
			return 1;
		size = src.size;
	}
	/* Image sizes are whole sectors, as convert and create make them. */
	if (round_up(size, 512) > (1ull << 50) || size > UINT64_MAX - 512) {
		img_source_close(&src);
		FAIL(NULL, "Image size %" PRIu64 " is too large (at most 1 PiB)", size);
	}
	if (capacity && capacity < size) {
		img_source_close(&src);
		FAIL(NULL, "capacity %" PRIu64 " is smaller than the image size %" PRIu64,
		     capacity, size);
	}
	if (!strcmp(ofmt, "raw")) {
		/* qemu-img measures a raw file as its whole virtual size. */
		required = full = round_up(size, 512);
	} else {
		uint64_t blocks = (size + block_size - 1) / block_size;

		full = size ? META_WRITTEN + block_allocation(size) +
			      (blocks + BITS_PER_PAGE - 1) / BITS_PER_PAGE * FS_BLOCK :
			      META_ALLOCATED;
		required = META_ALLOCATED;
		if (src.fd >= 0 || src.img) {
			uint64_t data;

			if (measure_data(&src, block_size, &data) < 0) {
				img_source_close(&src);
				return 1;
			}
			if (data)
				required = META_WRITTEN + data;
		}
	}
	img_source_close(&src);
	print_sizes(output, required, full);
	return 0;
}
