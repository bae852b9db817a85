/*
 * img_compare -- compare the guest-visible content of two images (pcow or
 * raw, in any mix), as qemu-img compare does: exit 0 when identical, 1 when
 * they differ, 2 when an image cannot be opened, 3 when where the data lies
 * cannot be found, 4 when reading fails.  Ranges that both images leave
 * unwritten are not read, so sparse images compare in time proportional to
 * their data.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "img.h"
#include "img_source.h"
#include "util.h"

#define COMPARE_BUF (1u << 20)

enum {
	COMPARE_SAME = 0,
	COMPARE_DIFFERENT = 1,
	COMPARE_OPEN_ERROR = 2,
	COMPARE_STATUS_ERROR = 3,
	COMPARE_READ_ERROR = 4,
};

struct compare {
	struct img_source a, b;
	uint8_t *buf_a, *buf_b;
	bool strict, quiet, progress;
	uint64_t done, total;
};

static void say(const struct compare *c, const char *fmt, uint64_t off)
{
	if (!c->quiet)
		printf(fmt, off);
}

static void advance(struct compare *c, uint64_t n)
{
	c->done += n;
	if (c->progress)
		print_progress(c->done, c->total, NULL);
}

/* qemu-img reports the 512-byte sector where the content first differs. */
static uint64_t sector_of(uint64_t off)
{
	return off / 512 * 512;
}

/* [off, off+len) of s must read as zeros. */
static int check_zero(struct compare *c, struct img_source *s, uint64_t off,
		      uint64_t len)
{
	uint64_t i;

	if (img_source_read(s, c->buf_a, len, off) < 0)
		return COMPARE_READ_ERROR;
	i = first_nonzero(c->buf_a, len);
	if (i < len) {
		say(c, "Content mismatch at offset %" PRIu64 "!\n", sector_of(off + i));
		return COMPARE_DIFFERENT;
	}
	return COMPARE_SAME;
}

/* Compares [0, min size) of both images. */
static int compare_common(struct compare *c, uint64_t size)
{
	uint64_t off = 0;

	while (off < size) {
		uint64_t run_a, run_b, n, i;
		bool data_a, data_b;

		if (img_source_status(&c->a, off, size - off, &run_a, &data_a) < 0 ||
		    img_source_status(&c->b, off, size - off, &run_b, &data_b) < 0)
			return COMPARE_STATUS_ERROR;
		n = run_a < run_b ? run_a : run_b;
		if (c->strict && data_a != data_b) {
			say(c, "Strict mode: Offset %" PRIu64 " block status mismatch!\n", off);
			return COMPARE_DIFFERENT;
		}
		if (data_a || data_b) {
			int ret;

			if (n > COMPARE_BUF)
				n = COMPARE_BUF;
			if (!data_a || !data_b) {
				ret = check_zero(c, data_a ? &c->a : &c->b, off, n);
				if (ret)
					return ret;
			} else {
				if (img_source_read(&c->a, c->buf_a, n, off) < 0 ||
				    img_source_read(&c->b, c->buf_b, n, off) < 0)
					return COMPARE_READ_ERROR;
				if (memcmp(c->buf_a, c->buf_b, n)) {
					for (i = 0; c->buf_a[i] == c->buf_b[i]; i++)
						;
					say(c, "Content mismatch at offset %" PRIu64 "!\n",
					    sector_of(off + i));
					return COMPARE_DIFFERENT;
				}
			}
		}
		off += n;
		advance(c, n);
	}
	return COMPARE_SAME;
}

/* What the larger image has past the smaller one's end must be zeros. */
static int compare_tail(struct compare *c, struct img_source *s, uint64_t off)
{
	while (off < s->size) {
		uint64_t run;
		bool data;

		if (img_source_status(s, off, s->size - off, &run, &data) < 0)
			return COMPARE_STATUS_ERROR;
		if (data) {
			int ret;

			if (run > COMPARE_BUF)
				run = COMPARE_BUF;
			ret = check_zero(c, s, off, run);
			if (ret)
				return ret;
		}
		off += run;
		advance(c, run);
	}
	return COMPARE_SAME;
}

int cmd_compare(int argc, char **argv)
{
	const char *fmt_a = NULL, *fmt_b = NULL;
	struct compare c = {0};
	unsigned flags = 0;
	uint64_t common;
	int opt, ret;
	static const struct option longopts[] = {
		{"a-format", required_argument, 0, 'f'},
		{"b-format", required_argument, 0, 'F'},
		{"strict", no_argument, 0, 's'},
		{"force-share", no_argument, 0, 'U'},
		{"progress", no_argument, 0, 'p'},
		{"quiet", no_argument, 0, 'q'},
		{0}};

	while ((opt = getopt_long(argc, argv, "+:f:F:sUpq", longopts, NULL)) != -1) {
		switch (opt) {
		case 'f': fmt_a = optarg; break;
		case 'F': fmt_b = optarg; break;
		case 's': c.strict = true; break;
		case 'U': flags |= PCOW_OPEN_FORCE_SHARE; break;
		case 'p': c.progress = true; break;
		case 'q': c.quiet = true; break;
		default: return bad_option(opt, argv);
		}
	}
	if (c.quiet)
		c.progress = false;
	if (optind != argc - 2)
		FAIL(NULL, "Expecting two image file names");
	if (img_source_open(&c.a, argv[optind], fmt_a, flags) < 0)
		return COMPARE_OPEN_ERROR;
	if (img_source_open(&c.b, argv[optind + 1], fmt_b, flags) < 0) {
		img_source_close(&c.a);
		return COMPARE_OPEN_ERROR;
	}
	c.buf_a = malloc(COMPARE_BUF);
	c.buf_b = malloc(COMPARE_BUF);
	if (!c.buf_a || !c.buf_b) {
		die_msg("out of memory");
		ret = COMPARE_READ_ERROR;
		goto out;
	}
	common = c.a.size < c.b.size ? c.a.size : c.b.size;
	c.total = c.a.size > c.b.size ? c.a.size : c.b.size;
	if (c.progress)
		print_progress(0, c.total ? c.total : 1, NULL);
	if (c.strict && c.a.size != c.b.size) {
		say(&c, "Strict mode: Image size mismatch!\n", 0);
		ret = COMPARE_DIFFERENT;
		goto out;
	}
	ret = compare_common(&c, common);
	if (ret == COMPARE_SAME && c.a.size != c.b.size) {
		say(&c, "Warning: Image size mismatch!\n", 0);
		ret = compare_tail(&c, c.a.size > c.b.size ? &c.a : &c.b, common);
	}
	if (ret == COMPARE_SAME) {
		if (c.progress && !c.total)
			print_progress(1, 1, NULL);
		say(&c, "Images are identical.\n", 0);
	}
out:
	free(c.buf_a);
	free(c.buf_b);
	img_source_close(&c.a);
	img_source_close(&c.b);
	return ret;
}
