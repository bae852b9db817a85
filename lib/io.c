/* io.c -- byte-granular reads and writes, discard, flush, block status. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "extent.h"
#include "image.h"
#include "layer.h"
#include "map.h"
#include "pending.h"
#include "persist.h"

static int check_range(pcow_image *img, uint64_t len, uint64_t offset)
{
	if (offset > img->m.virtual_size || len > img->m.virtual_size - offset)
		return pcow_err(-EINVAL, "offset %llu + length %llu is outside the image (size %llu)",
				(unsigned long long)offset, (unsigned long long)len,
				(unsigned long long)img->m.virtual_size);
	return 0;
}

int pcow_read(pcow_image *img, void *buf, uint64_t len, uint64_t offset)
{
	int ret;

	pthread_mutex_lock(&img->lock);
	ret = check_range(img, len, offset);
	/* Stores the kernel copied in a live map are the image's content. */
	if (ret == 0)
		ret = pcow_map_writeback(img->map, offset, len);
	if (ret == 0)
		ret = pcow_chain_read(img, img->m.active, buf, len, offset);
	pthread_mutex_unlock(&img->lock);
	return ret;
}

/* Writes a piece that lies inside one block, past the mapping. */
static int store_in_block(pcow_image *img, const uint8_t *p, uint64_t n,
			  uint64_t offset)
{
	uint32_t active = img->m.active;
	uint64_t block = offset / img->block_size;
	uint64_t dst = region_start(img, active) + offset;
	int ret;

	ret = pcow_layer_owns(img, active, block);
	if (ret != 0)
		return ret < 0 ? ret : pcow_io_pwrite(img->fd, p, n, dst);
	ret = pcow_below_has_data(img, active, block * img->block_size,
				  img->block_size);
	if (ret < 0)
		return ret;
	if (ret == 0)
		/* Nothing below: a torn write shows new data and zeros only. */
		return pcow_io_pwrite(img->fd, p, n, dst);
	if (n == img->block_size) {
		/* A whole-block overwrite needs no copy; it becomes the
		 * layer's only once it is complete and durable. */
		ret = pcow_io_pwrite(img->fd, p, n, dst);
		if (ret == 0)
			ret = pcow_claim_block(img, active, block);
	} else {
		ret = pcow_copy_up(img, active, block);
		if (ret == 0)
			ret = pcow_io_pwrite(img->fd, p, n, dst);
	}
	return ret;
}

/* A live mapping must show what the API changed, whatever it showed. */
static int show_in_map(pcow_image *img, uint64_t block, int ret)
{
	return ret == 0 && img->map ? pcow_map_block_owned(img->map, block) : ret;
}

/* A change through the API starts from what a live map shows: the stores
 * the kernel copied there go into the image first. */
static int writeback_block(pcow_image *img, uint64_t block)
{
	return pcow_map_writeback(img->map, block * img->block_size,
				  img->block_size);
}

static int write_in_block(pcow_image *img, const uint8_t *p, uint64_t n,
			  uint64_t offset)
{
	int ret = writeback_block(img, offset / img->block_size);

	return ret ? ret : show_in_map(img, offset / img->block_size,
				       store_in_block(img, p, n, offset));
}

int pcow_write(pcow_image *img, const void *buf, uint64_t len, uint64_t offset)
{
	const uint8_t *p = buf;
	int ret = pcow_require_writable(img);

	if (ret < 0)
		return ret;
	pthread_mutex_lock(&img->lock);
	/* The size may change under a resize until the lock is held. */
	ret = check_range(img, len, offset);
	if (ret == 0 && len)
		ret = pcow_image_mark_dirty(img);
	while (len && ret == 0) {
		uint64_t n = img->block_size - offset % img->block_size;

		if (n > len)
			n = len;
		ret = write_in_block(img, p, n, offset);
		p += n;
		len -= n;
		offset += n;
	}
	pthread_mutex_unlock(&img->lock);
	return ret;
}

static int punch_block(pcow_image *img, uint64_t block)
{
	uint32_t active = img->m.active;
	uint64_t start = region_start(img, active) + block * img->block_size;
	int below, ret, bit;

	below = pcow_below_has_data(img, active, block * img->block_size,
				    img->block_size);
	if (below < 0)
		return below;
	ret = pcow_io_punch(img->fd, start, img->block_size);
	if (ret < 0)
		return ret;
	/* Nothing below: zeros either way, and the block is free again. */
	if (!below)
		return pcow_bit_clear(img, active, block);
	/* The copy bit on an empty block makes it ours and all zeros, so
	 * that older data does not show through. */
	bit = pcow_bit_test(img, active, block);
	if (bit == 0)
		ret = pcow_claim_block(img, active, block);
	return bit < 0 ? bit : ret;
}

static int discard_block(pcow_image *img, uint64_t block)
{
	int ret = writeback_block(img, block);

	return ret ? ret : show_in_map(img, block, punch_block(img, block));
}

int pcow_discard(pcow_image *img, uint64_t offset, uint64_t len)
{
	uint64_t first, end;
	int ret = pcow_require_writable(img);

	if (ret < 0)
		return ret;
	pthread_mutex_lock(&img->lock);
	ret = check_range(img, len, offset);
	first = (offset + img->block_size - 1) / img->block_size;
	end = (offset + len) / img->block_size;
	/* A final partial block at the end of the image counts as whole. */
	if (offset + len == img->m.virtual_size)
		end = img->nblocks;
	/* A discard clears the bit of a block nothing lies below: until the
	 * punch is durable, data alone may own it again. */
	if (ret == 0 && first < end)
		ret = pcow_image_mark_dirty(img);
	for (; first < end && ret == 0; first++)
		ret = discard_block(img, first);
	pthread_mutex_unlock(&img->lock);
	return ret;
}

int pcow_flush(pcow_image *img)
{
	int ret = 0;

	if (!img->rdonly) {
		pthread_mutex_lock(&img->lock);
		ret = img->map ? pcow_map_writeback(img->map, 0, img->map->len) : 0;
		if (ret == 0)
			ret = pcow_pending_persist(img);
		if (ret == 0) {
			ret = pcow_io_sync(img->fd);
			pcow_meta_synced(img, ret);
		}
		pthread_mutex_unlock(&img->lock);
	}
	return ret;
}

/* The first run at or after the start of a block_status query. */
struct first_run {
	uint64_t from;
	bool found;
	struct pcow_run run;
};

static int take_first(const struct pcow_run *r, void *opaque)
{
	struct first_run *f = opaque;

	if (r->off + r->len <= f->from)
		return 0;
	if (f->found) {
		/* Glue runs that go on in the same file, contiguously. */
		if (r->off == f->run.off + f->run.len && r->fd == f->run.fd &&
		    r->depth == f->run.depth &&
		    r->file == f->run.file + f->run.len) {
			f->run.len += r->len;
			return 0;
		}
		return 1;
	}
	f->found = true;
	f->run = *r;
	return 0;
}

/* The name of the file holding a run (a raw file: at the chain's end). */
static const char *run_file(pcow_image *img, const struct pcow_run *r)
{
	if (r->img)
		return r->img->path;
	while (img->backing)
		img = img->backing;
	return img->backing_path;
}

/*
 * Cuts st, a run of a layer at file in fd, to its first stretch of blocks
 * that hold data or of blocks that hold none (then zeros).  The end of the
 * data is asked for only when the first block has some: on tmpfs
 * SEEK_HOLE costs the length of the data it passes.
 */
static int layer_run_status(uint64_t bs, int fd, uint64_t file,
			    struct pcow_block_status *st)
{
	uint64_t offset = st->offset, in_block = offset % bs, d, h, n;
	uint64_t blocks_end = file - in_block + (in_block + st->length + bs - 1) / bs * bs;
	int ret = pcow_extent_next(fd, file, blocks_end, &d, NULL);

	if (ret < 0)
		return ret;
	if (ret == 0 || d >= file - in_block + bs) {
		/* Zeros up to the block that holds d. */
		n = ret == 0 ? st->length : (d - file + in_block) / bs * bs - in_block;
		st->flags = PCOW_STATUS_ZERO;
	} else {
		ret = pcow_extent_stop(fd, d, blocks_end, &h);
		if (ret < 0)
			return ret;
		n = (h - file + in_block + bs - 1) / bs * bs - in_block;
	}
	if (n < st->length)
		st->length = n;
	return 0;
}

int pcow_block_status(pcow_image *img, uint64_t offset, uint64_t len,
		      struct pcow_block_status *st)
{
	struct first_run f = {.from = offset};
	uint64_t end = offset + len;
	int ret;

	if (len == 0)
		return pcow_err(-EINVAL, "empty range");
	pthread_mutex_lock(&img->lock);
	ret = check_range(img, len, offset);
	if (ret == 0)
		ret = pcow_map_writeback(img->map, offset, len);
	if (ret < 0)
		goto out;
	/* Runs come from the files' extents, not block by block, so this
	 * also sees data a smaller-block backing file has inside a block. */
	ret = pcow_view_runs(img, img->m.active, offset / img->block_size *
							 img->block_size,
				     end, take_first, &f);
	if (ret < 0)
		goto out;
	st->offset = offset;
	if (!f.found || f.run.off >= end) {
		st->length = len;
		st->flags = PCOW_STATUS_ZERO;
		st->depth = -1;
		st->file_offset = -1;
		st->filename = NULL;
	} else if (f.run.off > offset) {
		st->length = f.run.off - offset;
		st->flags = PCOW_STATUS_ZERO;
		st->depth = -1;
		st->file_offset = -1;
		st->filename = NULL;
	} else {
		uint64_t run_end = f.run.off + f.run.len, file;

		st->length = (run_end < end ? run_end : end) - offset;
		st->flags = PCOW_STATUS_DATA;
		st->depth = f.run.depth;
		file = f.run.file + (offset - f.run.off);
		st->file_offset = (int64_t)file;
		st->filename = run_file(img, &f.run);
		/* A layer's run covers whole blocks; a block of it with no
		 * data at all (discarded over older data) reads zeros. */
		if (f.run.img)
			ret = layer_run_status(f.run.img->block_size, f.run.fd, file, st);
	}
out:
	pthread_mutex_unlock(&img->lock);
	return ret;
}
