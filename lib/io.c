/* io.c -- byte-granular reads and writes, discard, flush, block status. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "image.h"
#include "layer.h"
#include "map.h"
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
	int ret = check_range(img, len, offset);

	if (ret < 0)
		return ret;
	pthread_mutex_lock(&img->lock);
	ret = pcow_chain_read(img, img->m.active, buf, len, offset);
	pthread_mutex_unlock(&img->lock);
	return ret;
}

/* Writes a piece that lies inside one block. */
static int write_in_block(pcow_image *img, const uint8_t *p, uint64_t n,
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
	if (ret == 0 && img->map)
		ret = pcow_map_block_owned(img->map, block);
	return ret;
}

int pcow_write(pcow_image *img, const void *buf, uint64_t len, uint64_t offset)
{
	const uint8_t *p = buf;
	int ret = check_range(img, len, offset);

	if (ret == 0)
		ret = pcow_require_writable(img);
	if (ret < 0)
		return ret;
	pthread_mutex_lock(&img->lock);
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

static int discard_block(pcow_image *img, uint64_t block)
{
	uint32_t active = img->m.active;
	uint64_t start = region_start(img, active) + block * img->block_size;
	int below, ret, bit;

	below = pcow_below_has_data(img, active, block * img->block_size,
				    img->block_size);
	if (below < 0)
		return below;
	ret = pcow_io_punch(img->fd, start, img->block_size);
	if (ret < 0 || !below)
		return ret;
	/* The copy bit on an empty block makes it ours and all zeros, so
	 * that older data does not show through. */
	bit = pcow_bit_test(img, active, block);
	if (bit == 0)
		ret = pcow_claim_block(img, active, block);
	if (ret == 0 && img->map)
		ret = pcow_map_block_owned(img->map, block);
	return bit < 0 ? bit : ret;
}

int pcow_discard(pcow_image *img, uint64_t offset, uint64_t len)
{
	uint64_t first, end;
	int ret = check_range(img, len, offset);

	if (ret == 0)
		ret = pcow_require_writable(img);
	if (ret < 0)
		return ret;
	first = (offset + img->block_size - 1) / img->block_size;
	end = (offset + len) / img->block_size;
	/* A final partial block at the end of the image counts as whole. */
	if (offset + len == img->m.virtual_size)
		end = img->nblocks;
	pthread_mutex_lock(&img->lock);
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
		ret = pcow_io_sync(img->fd);
		pthread_mutex_unlock(&img->lock);
	}
	return ret;
}

static void source_status(const struct pcow_source *src, unsigned *flags)
{
	*flags = src->depth < 0 ? PCOW_STATUS_ZERO : PCOW_STATUS_DATA;
}

int pcow_block_status(pcow_image *img, uint64_t offset, uint64_t len,
		      struct pcow_block_status *st)
{
	struct pcow_source first, next;
	uint64_t pos, end;
	int ret = check_range(img, len, offset);

	if (ret < 0)
		return ret;
	if (len == 0)
		return pcow_err(-EINVAL, "empty range");
	pthread_mutex_lock(&img->lock);
	ret = pcow_resolve(img, img->m.active, offset, &first);
	if (ret < 0)
		goto out;
	end = offset + len;
	pos = (offset / img->block_size + 1) * img->block_size;
	/* Extend the run while blocks come from the same place, contiguously. */
	if (first.depth < 0) {
		/* A run of nothing ends where some layer next holds data. */
		uint64_t nd;

		ret = pcow_next_data(img, img->m.active, pos, &nd);
		if (ret < 0)
			goto out;
		if (nd > pos)
			pos = nd / img->block_size * img->block_size > pos
				      ? nd / img->block_size * img->block_size
				      : pos;
	}
	while (pos < end) {
		ret = pcow_resolve(img, img->m.active, pos, &next);
		if (ret < 0)
			goto out;
		if (next.depth != first.depth || next.fd != first.fd ||
		    (first.depth >= 0 &&
		     next.file_offset != first.file_offset + (pos - offset)))
			break;
		pos += img->block_size;
	}
	if (pos > end)
		pos = end;
	st->offset = offset;
	st->length = pos - offset;
	source_status(&first, &st->flags);
	st->depth = first.depth;
	st->file_offset = first.depth >= 0 ? (int64_t)first.file_offset : -1;
	st->filename = first.depth < 0 ? NULL
		       : first.image ? first.image->path
				     : img->backing_path;
	if (first.depth >= 0 && !first.image) {
		/* A raw backing file: find its name at the bottom of the chain. */
		pcow_image *b = img;

		while (b->backing)
			b = b->backing;
		st->filename = b->backing_path;
	}
out:
	pthread_mutex_unlock(&img->lock);
	return ret;
}
