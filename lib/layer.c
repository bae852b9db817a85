/* layer.c -- block ownership, reads through the stack, and copy-up. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "error.h"
#include "layer.h"
#include "map.h"
#include "persist.h"

/* Copy-ups move data in pieces of this size, whatever the block size. */
#define COPY_CHUNK (1u << 20)

int pcow_file_has_data(int fd, uint64_t offset, uint64_t len)
{
	off_t d = lseek(fd, (off_t)offset, SEEK_DATA);

	if (d < 0) {
		if (errno == ENXIO)
			return 0;
		return pcow_err_sys(-errno, "cannot query allocation");
	}
	return (uint64_t)d < offset + len;
}

static bool is_stale(const pcow_image *img, uint32_t region, uint64_t block)
{
	uint64_t e = pcow_journal_pack(region, block);
	uint32_t i;

	for (i = 0; i < img->stale_count; i++)
		if (img->stale[i] == e)
			return true;
	return false;
}

int pcow_layer_owns(pcow_image *img, uint32_t layer, uint64_t block)
{
	uint64_t start = region_start(img, layer) + block * img->block_size;
	int ret;

	ret = pcow_file_has_data(img->fd, start, img->block_size);
	if (ret > 0 && img->stale_count &&
	    is_stale(img, img->m.layers[layer].region, block))
		return 0;
	return ret;
}

int pcow_resolve(pcow_image *img, uint32_t layer, uint64_t offset,
		 struct pcow_source *src)
{
	uint64_t block = offset / img->block_size;
	uint32_t l;
	int depth = 0, ret;

	src->depth = -1;
	src->image = NULL;
	src->fd = -1;
	src->file_offset = 0;
	src->layer = PCOW_NO_PARENT;
	if (offset >= img->m.virtual_size)
		return 0;
	for (l = layer; l != PCOW_NO_PARENT; l = img->m.layers[l].parent, depth++) {
		ret = pcow_layer_owns(img, l, block);
		if (ret < 0)
			return ret;
		if (ret) {
			src->depth = depth;
			src->image = img;
			src->fd = img->fd;
			src->layer = l;
			src->file_offset = region_start(img, l) + offset;
			return 0;
		}
	}
	if (img->backing) {
		pcow_image *b = img->backing;

		ret = pcow_resolve(b, b->m.active, offset, src);
		if (ret == 0 && src->depth >= 0)
			src->depth += depth;
		return ret;
	}
	if (img->raw_fd >= 0 && offset < img->raw_size) {
		uint64_t bs = img->block_size, start = offset / bs * bs;

		ret = pcow_file_has_data(img->raw_fd, start, bs);
		if (ret <= 0)
			return ret;
		src->depth = depth;
		src->fd = img->raw_fd;
		src->file_offset = offset;
	}
	return 0;
}

int pcow_chain_read(pcow_image *img, uint32_t layer, void *buf, uint64_t len,
		    uint64_t offset)
{
	uint8_t *p = buf;

	while (len) {
		uint64_t in_block = offset % img->block_size;
		uint64_t n = img->block_size - in_block;
		struct pcow_source src;
		int ret;

		if (n > len)
			n = len;
		if (offset >= img->m.virtual_size) {
			memset(p, 0, len);
			return 0;
		}
		if (n > img->m.virtual_size - offset)
			n = img->m.virtual_size - offset;
		ret = pcow_resolve(img, layer, offset, &src);
		if (ret < 0)
			return ret;
		if (src.depth < 0)
			memset(p, 0, n);
		else if (src.image == img || src.image == NULL)
			ret = pcow_io_pread(src.fd, p, n, src.file_offset);
		else
			/* The backing image decides per its own block size. */
			ret = pcow_chain_read(img->backing, img->backing->m.active,
					      p, n, offset);
		if (ret < 0)
			return ret;
		p += n;
		len -= n;
		offset += n;
	}
	return 0;
}

int pcow_below_has_data(pcow_image *img, uint32_t layer, uint64_t offset,
			uint64_t len)
{
	uint32_t l = layer == PCOW_NO_PARENT ? PCOW_NO_PARENT
					     : img->m.layers[layer].parent;
	int ret;

	for (; l != PCOW_NO_PARENT; l = img->m.layers[l].parent) {
		ret = pcow_layer_owns_range(img, l, offset, len);
		if (ret)
			return ret;
	}
	if (img->backing) {
		pcow_image *b = img->backing;

		if (offset >= b->m.virtual_size)
			return 0;
		if (len > b->m.virtual_size - offset)
			len = b->m.virtual_size - offset;
		/* The backing's active layer itself counts as "below". */
		ret = pcow_layer_owns_range(b, b->m.active, offset, len);
		if (ret)
			return ret;
		return pcow_below_has_data(b, b->m.active, offset, len);
	}
	if (img->raw_fd >= 0 && offset < img->raw_size)
		return pcow_file_has_data(img->raw_fd, offset, len);
	return 0;
}

int pcow_layer_owns_range(pcow_image *img, uint32_t layer, uint64_t offset,
			  uint64_t len)
{
	uint64_t b, first = offset / img->block_size;
	uint64_t last = (offset + len - 1) / img->block_size;
	int ret;

	for (b = first; b <= last; b++) {
		ret = pcow_layer_owns(img, layer, b);
		if (ret)
			return ret;
	}
	return 0;
}

static int journal_set(pcow_image *img, uint64_t entry)
{
	uint8_t e[8];
	int ret;

	pcow_put_le64(e, entry);
	ret = pcow_io_pwrite(img->fd, e, 8, PCOW_JOURNAL_OFFSET);
	if (ret == 0)
		ret = pcow_io_sync(img->fd);
	return ret;
}

int pcow_copy_up_begin(pcow_image *img, uint32_t dst_layer, uint64_t block)
{
	return journal_set(img, pcow_journal_pack(img->m.layers[dst_layer].region,
						  block));
}

int pcow_copy_up_end(pcow_image *img)
{
	uint8_t zero[8] = {0};
	int ret = pcow_io_sync(img->fd);

	if (ret == 0)
		ret = pcow_io_pwrite(img->fd, zero, 8, PCOW_JOURNAL_OFFSET);
	/*
	 * Through the page cache, later stores into the block become durable
	 * only with a later fdatasync, which persists this clear first; a crash
	 * before it may undo the copy, but no acknowledged store.  On a MAP_SYNC
	 * (DAX) mapping the guest makes stores durable by itself, so the clear
	 * must be durable before any of them.
	 */
	if (ret == 0 && img->map && pcow_map_is_sync(img->map))
		ret = pcow_io_sync(img->fd);
	return ret;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

int pcow_copy_up(pcow_image *img, uint32_t dst_layer, uint64_t block)
{
	uint64_t start = block * img->block_size, done;
	uint64_t end = start + img->block_size;
	uint64_t chunk = img->block_size < COPY_CHUNK ? img->block_size : COPY_CHUNK;
	uint64_t dst = region_start(img, dst_layer);
	uint8_t *buf;
	bool wrote = false;
	int ret;

	if (end > img->m.virtual_size)
		end = img->m.virtual_size;
	/* mmap, not malloc: this runs inside the write-fault handler too. */
	buf = mmap(NULL, chunk, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED)
		return pcow_err(-ENOMEM, "out of memory");
	ret = pcow_copy_up_begin(img, dst_layer, block);
	for (done = start; ret == 0 && done < end; done += chunk) {
		uint64_t n = end - done < chunk ? end - done : chunk;

		ret = pcow_chain_read(img, img->m.layers[dst_layer].parent, buf, n,
				      done);
		/* Zero pieces stay holes: inside an owned block they read as 0. */
		if (ret == 0 && !all_zero(buf, n)) {
			ret = pcow_io_pwrite(img->fd, buf, n, dst + done);
			wrote = true;
		}
	}
	/* An all-zero block still needs one stored page to be owned; a hole
	 * would let older data show through. */
	if (ret == 0 && !wrote) {
		memset(buf, 0, 4096);
		ret = pcow_io_pwrite(img->fd, buf, 4096, dst + start);
	}
	munmap(buf, chunk);
	if (ret == 0)
		ret = pcow_copy_up_end(img);
	else
		/* Leave no half-copied block behind; the entry stays for open. */
		pcow_io_punch(img->fd, dst + start, img->block_size);
	return ret;
}

int pcow_journal_recover(pcow_image *img)
{
	uint8_t *buf;
	uint32_t i;
	int ret = 0;
	bool dirty = false;

	buf = malloc(PCOW_JOURNAL_ENTRIES * 8);
	if (!buf)
		return pcow_err(-ENOMEM, "out of memory");
	ret = pcow_io_pread(img->fd, buf, PCOW_JOURNAL_ENTRIES * 8,
			    PCOW_JOURNAL_OFFSET);
	for (i = 0; ret == 0 && i < PCOW_JOURNAL_ENTRIES; i++) {
		uint64_t e = pcow_le64(buf + i * 8), block;
		uint32_t region;

		if (!e)
			continue;
		if (!pcow_journal_unpack(e, &region, &block) ||
		    region >= PCOW_MAX_REGIONS || block >= img->nblocks)
			continue; /* garbage: ignored, reported by check */
		if (img->rdonly) {
			uint64_t *n = realloc(img->stale, (img->stale_count + 1) *
							  sizeof(*n));
			if (!n) {
				ret = pcow_err(-ENOMEM, "out of memory");
				break;
			}
			img->stale = n;
			img->stale[img->stale_count++] = e;
			continue;
		}
		ret = pcow_io_punch(img->fd,
				    pcow_region_offset(img->stride, region) +
					    block * img->block_size,
				    img->block_size);
		dirty = true;
	}
	if (ret == 0 && dirty) {
		ret = pcow_io_sync(img->fd);
		if (ret == 0) {
			memset(buf, 0, PCOW_JOURNAL_ENTRIES * 8);
			ret = pcow_io_pwrite(img->fd, buf, PCOW_JOURNAL_ENTRIES * 8,
					     PCOW_JOURNAL_OFFSET);
		}
		if (ret == 0)
			ret = pcow_io_sync(img->fd);
	}
	free(buf);
	return ret;
}

int pcow_layer_count_blocks(pcow_image *img, uint32_t layer, uint64_t *count)
{
	uint64_t start = region_start(img, layer);
	uint64_t end = start + img->m.virtual_size;
	uint64_t pos = start, n = 0;

	/* Walk extents, so the cost follows the data's layout, not its size. */
	while (pos < end) {
		off_t d = lseek(img->fd, (off_t)pos, SEEK_DATA), h;
		uint64_t b0, b1;

		if (d < 0) {
			if (errno == ENXIO)
				break;
			return pcow_err_sys(-errno, "cannot query allocation");
		}
		if ((uint64_t)d >= end)
			break;
		h = lseek(img->fd, d, SEEK_HOLE);
		if (h < 0)
			return pcow_err_sys(-errno, "cannot query allocation");
		if ((uint64_t)h > end)
			h = (off_t)end;
		b0 = ((uint64_t)d - start) / img->block_size;
		b1 = ((uint64_t)h - start + img->block_size - 1) / img->block_size;
		n += b1 - b0;
		pos = start + b1 * img->block_size;
	}
	*count = n;
	return 0;
}
