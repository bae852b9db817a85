/*
 * check.c -- finding and repairing leaks and damage (docs/format.md 5,
 * "What check finds", lists every kind).
 *
 * Metadata that breaks the format's rules never gets here: the open
 * refuses it (format.c, image.c), and a refused image is what check
 * reports as corruption it cannot repair.  What an open image can still
 * hold is damage to ownership (a block a recorded layer owns by its data
 * alone) and leaks: layers nothing refers to, data no view reads (an
 * interrupted copy-up), data in regions no layer uses, past the virtual
 * size or between the reserved area and the regions, bytes in the
 * reserved area that are no pending log in use, and copy bits past the
 * virtual size.  Every repair is one of the library's own crash-safe
 * steps: a metadata commit, a punch of what nothing reads, or a copy bit
 * set after its data is durable.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "extent.h"
#include "image.h"
#include "layer.h"
#include "pending.h"
#include "persist.h"
#include "snapshot.h"
#include "stripe.h"

static void note(struct pcow_check_result *res, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void note(struct pcow_check_result *res, const char *fmt, ...)
{
	va_list ap;

	if (res->first_problem[0])
		return;
	va_start(ap, fmt);
	vsnprintf(res->first_problem, sizeof(res->first_problem), fmt, ap);
	va_end(ap);
}

/* Bytes of data the file holds in [start, end): none when all of it is zeros. */
static int data_bytes(int fd, uint64_t start, uint64_t end, uint64_t *bytes)
{
	uint64_t pos = start, n = 0, d, h;
	int ret = 0;

	while ((ret = pcow_extent_next(fd, pos, end, &d, &h)) > 0) {
		n += h - d;
		pos = h;
	}
	if (ret < 0)
		return ret;
	/* Zeros read as a hole does: a copy that filled the holes (cp
	 * --sparse=never, a copy to another machine) leaks nothing. */
	if (n && (ret = pcow_file_nonzero(fd, start, end - start)) <= 0) {
		if (ret < 0)
			return ret;
		n = 0;
	}
	*bytes = n;
	return 0;
}

/* A layer nothing reaches: not active, no snapshot, no child. */
static int orphan_layer(const struct pcow_meta *m)
{
	uint32_t i, j;

	for (i = 0; i < m->layer_count; i++) {
		int used = i == m->active;

		for (j = 0; j < m->snapshot_count && !used; j++)
			used = m->snapshots[j].layer == i;
		for (j = 0; j < m->layer_count && !used; j++)
			used = m->layers[j].parent == i;
		if (!used)
			return (int)i;
	}
	return -1;
}

static int leak(pcow_image *img, struct pcow_check_result *res, bool fix,
		uint64_t start, uint64_t len, uint64_t bytes, const char *what)
{
	res->leaks++;
	res->leaked_bytes += bytes;
	note(res, "%s: %llu bytes leaked", what, (unsigned long long)bytes);
	if (!fix)
		return 0;
	if (pcow_io_punch(img->fd, start, len) < 0) {
		res->check_errors++;
		return -1;
	}
	res->leaks_fixed++;
	return 0;
}

/*
 * Copy bits of blocks past the virtual size, left by a shrink cut short
 * (docs/format.md, resize).  Nothing reads them, but a later grow must not
 * find them, so they count as a leak; the repair clears them.
 */
static int check_stray_bits(pcow_image *img, struct pcow_check_result *res,
			    bool fix, uint64_t bitmap)
{
	bool stray;
	int ret = pcow_bitmap_clear_from(img->fd, bitmap, img->bitmap_span, img->nblocks,
					 false, &stray);

	if (ret < 0 || !stray)
		return ret;
	res->leaks++;
	note(res, "copy bits set past the virtual size");
	if (!fix)
		return 0;
	ret = pcow_bitmap_clear_from(img->fd, bitmap, img->bitmap_span, img->nblocks,
				     true, &stray);
	if (ret < 0)
		res->check_errors++;
	else
		res->leaks_fixed++;
	return 0;
}

/*
 * A block a layer without the unrecorded flag owns by its data alone
 * (format.md 4.1): every such block must have its bit before the flag is
 * cleared, or the image's content depends on which of its bytes are
 * allocated (a copy that fills holes would lose the block).  Repaired by
 * setting the bit, which keeps what the image shows.  Zero data reads the
 * same either way.
 */
static int check_unrecorded(pcow_image *img, struct pcow_check_result *res,
			    bool fix, uint32_t layer, uint64_t b)
{
	int ret = pcow_file_nonzero(img->fd, region_start(img, layer) + b * img->block_size,
			  img->block_size);

	if (ret <= 0)
		return ret;
	/* The first corruption is the problem to name, before any leak. */
	if (!res->corruptions++)
		res->first_problem[0] = '\0';
	note(res, "layer %u, block %llu: owned by its data alone in a recorded layer",
	     layer, (unsigned long long)b);
	if (!fix)
		return 0;
	/* The data is durable before the bit that claims it. */
	ret = pcow_io_sync(img->fd);
	if (ret == 0)
		ret = pcow_bit_set(img, layer, b);
	if (ret < 0) {
		res->check_errors++;
		return ret;
	}
	res->corruptions_fixed++;
	return 0;
}

/*
 * Data in a block of a layer that no view reads: the layer has no bit
 * there and is not the block's owner by its data either (format.md 4.1),
 * because something below holds the block.  A copy-up cut short by a
 * crash before its bit was durable leaves this.  Zero fill (a page cache
 * writing back a large folio around a written page allocates its zeroed
 * neighbours) is left alone: the copy-up punches zero pieces, so it is
 * never one, and the file system would allocate it again.  Blocks owned by
 * data alone go to check_unrecorded.  Judging needs the backing file
 * (rule 2).
 */
static int check_unread_data(pcow_image *img, struct pcow_check_result *res,
			     bool fix, bool fix_errors, uint32_t layer)
{
	uint64_t base = region_start(img, layer), bs = img->block_size;
	uint64_t end = base + img->nblocks * bs, b = 0, last;
	uint32_t owner;
	int ret;

	if (img->m.backing && !img->backing && img->raw_fd < 0)
		return 0;
	while ((ret = pcow_extent_units(img->fd, base, bs, b, end, &b, &last)) > 0) {
		for (; b < last; b++) {
			uint64_t bytes;

			ret = pcow_bit_test(img, layer, b);
			if (ret == 0)
				ret = pcow_block_owner(img, layer, b, &owner);
			else if (ret > 0)
				continue;
			if (ret < 0)
				return ret;
			if (ret == 1 && owner == layer) {
				if (img->m.layers[layer].flags & PCOW_LAYER_UNRECORDED)
					continue;
				ret = check_unrecorded(img, res, fix_errors, layer, b);
				if (ret < 0)
					return ret;
				continue;
			}
			ret = pcow_file_nonzero(img->fd, base + b * bs, bs);
			if (ret <= 0) {
				if (ret < 0)
					return ret;
				continue;
			}
			ret = data_bytes(img->fd, base + b * bs, base + (b + 1) * bs, &bytes);
			if (ret < 0)
				return ret;
			leak(img, res, fix, base + b * bs, bs, bytes,
			     "data no view reads (an interrupted copy-up)");
		}
	}
	return ret;
}

static int check_orphans(pcow_image *img, struct pcow_check_result *res,
			 bool fix)
{
	int idx;

	while ((idx = orphan_layer(&img->m)) >= 0) {
		struct pcow_meta next;
		int ret;

		res->leaks++;
		note(res, "layer %d is referenced by nothing", idx);
		if (!fix)
			return 0;
		ret = pcow_meta_copy(&next, &img->m);
		if (ret < 0)
			return ret;
		pcow_meta_remove_layer(&next, (uint32_t)idx);
		ret = pcow_meta_commit(img, &next);
		pcow_meta_free(&next);
		if (ret < 0)
			return ret;
		/* The region is now unused; the region scan frees its data. */
		res->leaks_fixed++;
	}
	return 0;
}

/* Every region the file reaches, in use or not. */
static int check_regions(pcow_image *img, struct pcow_check_result *res,
			 bool fix_leaks, bool fix_errors, uint64_t nregions)
{
	uint64_t r, bytes;
	int ret;

	for (r = 0; r < nregions; r++) {
		uint64_t start = img->m.region_base + r * img->stride;
		bool used = r < PCOW_MAX_REGIONS && pcow_meta_region_used(&img->m, (uint32_t)r);
		/* Whole blocks past the virtual size belong to the last block;
		 * the bitmap after the data span is checked apart. */
		uint64_t from = used ? start + img->nblocks * img->block_size : start;
		uint64_t end = used ? start + img->span : start + img->stride;

		/* Progress counts regions, then the areas before them. */
		pcow_progress(img, r, nregions + 1);
		if (used && (ret = check_stray_bits(img, res, fix_leaks, start + img->span)) < 0)
			return ret;
		for (uint32_t l = 0; used && l < img->m.layer_count; l++)
			if (img->m.layers[l].region == r &&
			    (ret = check_unread_data(img, res, fix_leaks, fix_errors, l)) < 0)
				return ret;
		if (from >= end)
			continue;
		ret = data_bytes(img->fd, from, end, &bytes);
		if (ret < 0)
			return ret;
		if (bytes)
			leak(img, res, fix_leaks, from, end - from, bytes,
			     used ? "data past the virtual size" : "unused region");
	}
	return 0;
}

struct strays {
	pcow_image *img;
	struct pcow_check_result *res;
	bool fix;
	uint32_t file;
};

/* 1 when [off, off+len) of fd itself (never routed) holds a byte that is
 * not zero, 0 when only zeros. */
static int raw_nonzero(int fd, uint64_t off, uint64_t len)
{
	uint64_t buf[8192], i;

	while (len) {
		size_t n = len < sizeof(buf) ? (size_t)len : sizeof(buf);
		ssize_t got = pread(fd, buf, n, (off_t)off);

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			return pcow_err_sys(-errno, "read failed");
		if (got == 0)
			return 0;
		memset((uint8_t *)buf + got, 0, n - (size_t)got);
		for (i = 0; i < (n + 7) / 8; i++)
			if (buf[i])
				return 1;
		off += n;
		len -= n;
	}
	return 0;
}

static int stray(int fd, uint64_t off, uint64_t len, void *opaque)
{
	struct strays *st = opaque;
	int ret = raw_nonzero(fd, off, len);

	/* Zero fill (a page cache writes large folios back whole, also where
	 * a neighbouring stripe of the same file begins) reads as the zeros
	 * nothing reads there: neither a corruption nor a leak, as in a
	 * region (format.md 5, "What check finds"). */
	if (ret <= 0)
		return ret;

	st->res->leaks++;
	st->res->leaked_bytes += len;
	if (st->file < st->img->m.extent_count)
		note(st->res, "extent file %u: data where the layout puts none of its bytes: %llu bytes leaked",
		     st->file, (unsigned long long)len);
	else
		note(st->res, "data of an extent file in the image file: %llu bytes leaked",
		     (unsigned long long)len);
	if (!st->fix)
		return 0;
	if (pcow_io_punch_file(fd, off, len) < 0) {
		st->res->check_errors++;
		return -1;
	}
	st->res->leaks_fixed++;
	return 0;
}

/*
 * A striped image's files hold, from the first region on, only the
 * pieces the layout gives them (format.md 3.6): data other than zeros
 * anywhere else in them is read by nothing, a leak (a file copied over an extent file, a
 * writer that did not know the layout).
 */
static int check_stripes(pcow_image *img, struct pcow_check_result *res, bool fix)
{
	struct strays st = {img, res, fix, 0};
	int ret = 0;

	for (st.file = 0; img->stripes && st.file <= img->m.extent_count && ret == 0; st.file++)
		ret = pcow_stripes_strays(img, st.file, stray, &st);
	return ret < 0 && !res->check_errors ? ret : 0;
}

/* The areas between the metadata slots and the first region. */
static int check_before_regions(pcow_image *img, struct pcow_check_result *res,
				bool fix)
{
	uint64_t bytes, more;
	int ret = data_bytes(img->fd, PCOW_DATA_OFFSET, img->m.region_base, &bytes);

	/* Where the regions lay before a resize moved them: in a striped
	 * image's extent files too (the punch below reaches them). */
	for (uint32_t i = 0; ret == 0 && img->stripes && i < img->stripes->n; i++) {
		ret = data_bytes(img->stripes->fds[i], PCOW_DATA_OFFSET, img->m.region_base,
				 &more);
		bytes += more;
	}
	if (ret < 0)
		return ret;
	if (bytes)
		leak(img, res, fix, PCOW_DATA_OFFSET, img->m.region_base - PCOW_DATA_OFFSET,
		     bytes, "data before the first region");
	/* The reserved area holds the pending log; a log in use (this
	 * handle's, or a live or dead writer's read through) is no leak.
	 * One this open does not use (another boot's, or for other
	 * metadata) is never applied, and a read-write open discards it. */
	if (pcow_pending_any(img))
		return 0;
	ret = data_bytes(img->fd, PCOW_RESERVED_OFFSET, PCOW_DATA_OFFSET, &bytes);
	if (ret == 0 && bytes)
		ret = pcow_pending_log_found(img);
	if (ret < 0 || !bytes)
		return ret;
	leak(img, res, fix, PCOW_RESERVED_OFFSET, PCOW_DATA_OFFSET - PCOW_RESERVED_OFFSET,
	     bytes, ret ? "a pending log not in use" : "data in the reserved area");
	return 0;
}

int pcow_check(pcow_image *img, unsigned fix, struct pcow_check_result *res)
{
	bool fix_leaks = fix & (PCOW_CHECK_FIX_LEAKS | PCOW_CHECK_FIX_ERRORS);
	struct stat st;
	uint64_t nregions;
	int ret = 0;

	memset(res, 0, sizeof(*res));
	if (fix && (ret = pcow_require_writable(img)) < 0)
		return ret;
	pthread_mutex_lock(&img->lock);
	ret = check_orphans(img, res, fix_leaks);
	if (ret < 0)
		goto out;
	if (fstat(img->fd, &st) < 0) {
		ret = pcow_err_sys(-errno, "%s: stat failed", img->path);
		goto out;
	}
	nregions = ((uint64_t)st.st_size > img->m.region_base)
			   ? ((uint64_t)st.st_size - img->m.region_base + img->stride - 1) /
				     img->stride
			   : 0;
	ret = check_regions(img, res, fix_leaks, fix & PCOW_CHECK_FIX_ERRORS, nregions);
	if (ret == 0)
		ret = check_before_regions(img, res, fix_leaks);
	if (ret == 0)
		ret = check_stripes(img, res, fix_leaks);
	if (ret < 0)
		goto out;
	if ((fix_leaks && res->leaks_fixed) || res->corruptions_fixed)
		ret = pcow_io_sync(img->fd);
	if (ret >= 0)
		pcow_progress(img, nregions + 1, nregions + 1);
out:
	pthread_mutex_unlock(&img->lock);
	return ret;
}
