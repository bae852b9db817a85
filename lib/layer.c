/* layer.c -- block ownership, reads through the stack, and copy-up. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "error.h"
#include "extent.h"
#include "layer.h"
#include "map.h"
#include "pending.h"
#include "persist.h"

/* Copy-ups move data in pieces of this size, whatever the block size. */
#define COPY_CHUNK (1u << 20)

int pcow_file_has_data(int fd, uint64_t offset, uint64_t len)
{
	uint64_t d;

	return pcow_extent_next(fd, offset, offset + len, &d, NULL);
}

/*
 * Bitmap words are read with pread, a page at a time into a one-page cache,
 * not through a mapping: a read fault on a hole of a tmpfs file allocates
 * a page, so on a full tmpfs a mapped lookup would kill the process with
 * SIGBUS, where pread returns zeros.  Every change to the file goes
 * through persist.c, which counts them: a change empties the cache.
 */
int pcow_bitmap_word(pcow_image *img, uint32_t region, uint64_t word,
		     uint64_t *out)
{
	struct pcow_bitmap_cache *c = &img->bitmap_cache;
	uint64_t page = word / PCOW_BITMAP_CACHE_WORDS, len, off;
	int ret;

	if (!c->valid || c->region != region || c->page != page ||
	    c->epoch != pcow_io_epoch()) {
		c->valid = false;
		off = page * sizeof(c->words);
		len = img->bitmap_span - off < sizeof(c->words) ?
		      img->bitmap_span - off : sizeof(c->words);
		c->epoch = pcow_io_epoch();
		ret = pcow_io_pread(img->fd, c->words, len,
				    pcow_image_region(img, region) + img->span + off);
		if (ret < 0)
			return ret;
		c->region = region;
		c->page = page;
		c->valid = true;
	}
	*out = pcow_le64((const uint8_t *)&c->words[word % PCOW_BITMAP_CACHE_WORDS]);
	return 0;
}

/* The bit as the image file has it, pending bits left out. */
static int disk_bit(pcow_image *img, uint32_t layer, uint64_t block)
{
	uint64_t w;
	int ret = pcow_bitmap_word(img, img->m.layers[layer].region, block / 64, &w);

	return ret < 0 ? ret : (int)((w >> (block % 64)) & 1);
}

int pcow_bit_test(pcow_image *img, uint32_t layer, uint64_t block)
{
	int ret = disk_bit(img, layer, block);

	if (ret)
		return ret;
	return pcow_pending_test(img, img->m.layers[layer].region, block);
}

int pcow_word_update(int fd, uint64_t off, uint64_t set, uint64_t clear,
		     uint64_t *old)
{
	uint8_t buf[8];
	uint64_t v;
	int ret;

	/* Callers hold the image lock, so read-modify-write is safe. */
	ret = pcow_io_pread(fd, buf, 8, off);
	if (ret < 0)
		return ret;
	v = pcow_le64(buf);
	if (old)
		*old = v;
	if (((v | set) & ~clear) == v)
		return 0;
	pcow_put_le64(buf, (v | set) & ~clear);
	return pcow_io_pwrite(fd, buf, 8, off);
}

int pcow_file_nonzero(int fd, uint64_t off, uint64_t len)
{
	uint8_t buf[4096];
	uint64_t d, h, n, end = off + len;
	int ret = 0;

	while (off < end && (ret = pcow_extent_next(fd, off, end, &d, &h)) > 0) {
		for (off = d; off < h; off += n) {
			n = h - off < sizeof(buf) ? h - off : sizeof(buf);
			ret = pcow_io_pread(fd, buf, n, off);
			if (ret < 0)
				return ret;
			if (buf[0] || memcmp(buf, buf + 1, n - 1))
				return 1;
		}
	}
	return ret < 0 ? ret : 0;
}

int pcow_bitmap_clear_from(int fd, uint64_t bitmap, uint64_t span,
			   uint64_t first, bool clear, bool *found)
{
	uint64_t word = first / 64, keep = (1ull << (first % 64)) - 1, v;
	uint8_t w[8];
	int ret;

	*found = false;
	if (first % 64) {
		ret = clear ? pcow_word_update(fd, bitmap + word * 8, 0, ~keep, &v)
			    : pcow_io_pread(fd, w, 8, bitmap + word * 8);
		if (ret < 0)
			return ret;
		if (!clear)
			v = pcow_le64(w);
		*found = v & ~keep;
		word++;
	}
	if (word * 8 >= span)
		return 0;
	ret = pcow_file_nonzero(fd, bitmap + word * 8, span - word * 8);
	if (ret < 0)
		return ret;
	*found = *found || ret;
	return ret && clear ? pcow_io_punch(fd, bitmap + word * 8, span - word * 8) : 0;
}

int pcow_bits_or(pcow_image *img, uint32_t region, uint64_t word, uint64_t bits)
{
	return pcow_word_update(img->fd, pcow_image_region(img, region) + img->span + word * 8,
				bits, 0, NULL);
}

int pcow_bit_clear(pcow_image *img, uint32_t layer, uint64_t block)
{
	return pcow_word_update(img->fd, region_start(img, layer) + img->span + block / 64 * 8,
				0, 1ull << (block % 64), NULL);
}

int pcow_bit_set(pcow_image *img, uint32_t layer, uint64_t block)
{
	return pcow_bits_or(img, img->m.layers[layer].region, block / 64,
			    1ull << (block % 64));
}

static int layer_has_data(pcow_image *img, uint32_t layer, uint64_t block)
{
	return pcow_file_has_data(img->fd,
				  region_start(img, layer) + block * img->block_size,
				  img->block_size);
}

int pcow_backing_has_data(pcow_image *img, uint64_t offset, uint64_t len)
{
	if (img->backing) {
		pcow_image *b = img->backing;

		if (offset >= b->m.virtual_size)
			return 0;
		if (len > b->m.virtual_size - offset)
			len = b->m.virtual_size - offset;
		return pcow_view_has_data(b, b->m.active, offset, len);
	}
	if (img->raw_fd >= 0 && offset < img->raw_size)
		return pcow_file_has_data(img->raw_fd, offset, len);
	return 0;
}

int pcow_block_owner(pcow_image *img, uint32_t layer, uint64_t block,
		     uint32_t *owner)
{
	uint32_t l, lowest = PCOW_NO_PARENT;
	uint64_t bs = img->block_size, len = bs;
	int ret;

	/* The topmost copy bit wins: a bit is only set on complete data. */
	for (l = layer; l != PCOW_NO_PARENT; l = img->m.layers[l].parent) {
		ret = pcow_bit_test(img, l, block);
		if (ret) {
			*owner = l;
			return ret;
		}
	}
	/* Without bits, data was written where nothing lay below: the lowest
	 * layer with data wrote it; data above it is zero fill. */
	for (l = layer; l != PCOW_NO_PARENT; l = img->m.layers[l].parent) {
		ret = layer_has_data(img, l, block);
		if (ret < 0)
			return ret;
		if (ret)
			lowest = l;
	}
	if (lowest == PCOW_NO_PARENT)
		return 0;
	if (block * bs + len > img->m.virtual_size)
		len = img->m.virtual_size - block * bs;
	ret = pcow_backing_has_data(img, block * bs, len);
	if (ret)
		return ret < 0 ? ret : 0;
	*owner = lowest;
	return 1;
}

int pcow_layer_owns(pcow_image *img, uint32_t layer, uint64_t block)
{
	uint32_t owner;
	int ret = pcow_block_owner(img, layer, block, &owner);

	return ret <= 0 ? ret : owner == layer;
}

int pcow_resolve(pcow_image *img, uint32_t layer, uint64_t offset,
		 struct pcow_source *src)
{
	uint64_t block = offset / img->block_size;
	uint32_t owner = PCOW_NO_PARENT, l;
	int depth = 0, ret;

	src->depth = -1;
	src->image = NULL;
	src->fd = -1;
	src->file_offset = 0;
	src->layer = PCOW_NO_PARENT;
	if (offset >= img->m.virtual_size)
		return 0;
	if (layer != PCOW_NO_PARENT) {
		ret = pcow_block_owner(img, layer, block, &owner);
		if (ret < 0)
			return ret;
	}
	for (l = layer; l != PCOW_NO_PARENT; l = img->m.layers[l].parent, depth++) {
		if (l == owner) {
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
		uint64_t n = img->block_size - offset % img->block_size;
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
		if (src.depth >= 0 && src.image == img) {
			ret = pcow_io_pread(src.fd, p, n, src.file_offset);
		} else if (img->backing) {
			/* The backing file shows through; it decides per its
			 * own blocks, which may be smaller than ours. */
			pcow_image *b = img->backing;
			uint64_t in = offset < b->m.virtual_size ? b->m.virtual_size - offset : 0;

			if (in > n)
				in = n;
			memset(p + in, 0, n - in);
			if (in)
				ret = pcow_chain_read(b, b->m.active, p, in, offset);
		} else if (img->raw_fd >= 0) {
			/* Holes and the end of the raw file read as zeros. */
			uint64_t in = offset < img->raw_size ? img->raw_size - offset : 0;

			if (in > n)
				in = n;
			memset(p + in, 0, n - in);
			if (in)
				ret = pcow_io_pread(img->raw_fd, p, in, offset);
		} else {
			memset(p, 0, n);
		}
		if (ret < 0)
			return ret;
		p += n;
		len -= n;
		offset += n;
	}
	return 0;
}

int pcow_view_has_data(pcow_image *img, uint32_t layer, uint64_t offset,
		       uint64_t len)
{
	uint64_t b, first = offset / img->block_size;
	uint64_t last = (offset + len - 1) / img->block_size;
	uint32_t owner;
	int ret;

	if (len == 0)
		return 0;
	if (layer != PCOW_NO_PARENT)
		for (b = first; b <= last; b++) {
			ret = pcow_block_owner(img, layer, b, &owner);
			if (ret)
				return ret;
		}
	return pcow_backing_has_data(img, offset, len);
}

int pcow_below_has_data(pcow_image *img, uint32_t layer, uint64_t offset,
			uint64_t len)
{
	return pcow_view_has_data(img, layer == PCOW_NO_PARENT
					       ? PCOW_NO_PARENT
					       : img->m.layers[layer].parent,
				  offset, len);
}

/* The smaller of best and found, where found is never taken below from. */
static uint64_t earliest(uint64_t best, uint64_t found, uint64_t from)
{
	if (found < from)
		found = from;
	return found < best ? found : best;
}

/* First offset >= from where the view from from_layer may hold anything
 * (to the granularity of each image's blocks).  Copy bits need no search:
 * a bit is only ever set where something below has data. */
int pcow_next_data(pcow_image *img, uint32_t from_layer, uint64_t from,
		   uint64_t *next)
{
	uint64_t best = UINT64_MAX, d;
	uint32_t l;
	int ret;

	for (l = from_layer; l != PCOW_NO_PARENT; l = img->m.layers[l].parent) {
		uint64_t start = region_start(img, l);

		ret = pcow_extent_next(img->fd, start + from, start + img->span, &d,
				       NULL);
		if (ret < 0)
			return ret;
		/* Data anywhere in a block makes the whole block this image's. */
		if (ret)
			best = earliest(best, (d - start) / img->block_size *
						      img->block_size, from);
	}
	ret = pcow_backing_next_data(img, from, &d);
	if (ret == 0 && d < best)
		best = d;
	*next = best;
	return ret;
}

int pcow_backing_next_data(pcow_image *img, uint64_t from, uint64_t *next)
{
	uint64_t d;
	int ret = 0;

	*next = UINT64_MAX;
	if (img->backing) {
		pcow_image *b = img->backing;

		if (from < b->m.virtual_size)
			ret = pcow_next_data(b, b->m.active, from, next);
	} else if (img->raw_fd >= 0) {
		ret = pcow_extent_next(img->raw_fd, from, img->raw_size, &d, NULL);
		if (ret > 0)
			*next = earliest(UINT64_MAX, d / img->block_size *
							     img->block_size, from);
	}
	return ret < 0 ? ret : 0;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

int pcow_claim_blocks(pcow_image *img, uint32_t layer, uint64_t first,
		      uint64_t n)
{
	uint64_t b;
	int ret = 0;

	/*
	 * Through the page cache, the bit waits for the next flush, which
	 * persists the data first (pending.h).  On a MAP_SYNC (DAX) mapping
	 * the guest makes stores durable by itself, so the bit must be
	 * durable, after the copied data, before the guest can store.  When
	 * the pending log cannot take it (no space for the log's page), the
	 * bit is made durable at once instead.
	 */
	if ((!img->map || !pcow_map_is_sync(img->map)) &&
	    pcow_pending_set_run(img, layer, first, n) == 0)
		return 0;
	ret = pcow_io_sync(img->fd);
	for (b = first; ret == 0 && b < first + n; b++)
		ret = pcow_bit_set(img, layer, b);
	if (ret == 0)
		ret = pcow_io_sync(img->fd);
	return ret;
}

int pcow_claim_block(pcow_image *img, uint32_t layer, uint64_t block)
{
	return pcow_claim_blocks(img, layer, block, 1);
}

/*
 * Writes [off, off+len) of src into the region at dst, in pieces of at
 * most COPY_CHUNK: each piece of piece_size bytes that is all zeros
 * becomes a hole (an owned block's holes read as zeros; stale zero fill or
 * a copy cut short may be there), neighbours of a kind in one system call.
 */
static int copy_pieces(pcow_image *img, uint64_t dst, const uint8_t *src,
		       uint64_t off, uint64_t len, uint64_t piece_size)
{
	uint64_t pos = 0, run = 0;
	bool run_zero = false;
	int ret = 0;

	while (ret == 0 && pos + run < len) {
		uint64_t n = len - pos - run < piece_size ? len - pos - run : piece_size;
		bool zero = all_zero(src + pos + run, n);

		if (run && (zero != run_zero || run + n > COPY_CHUNK)) {
			ret = run_zero ? pcow_io_punch(img->fd, dst + off + pos, run)
				       : pcow_io_pwrite(img->fd, src + pos, run, dst + off + pos);
			pos += run;
			run = 0;
		}
		run_zero = zero;
		run += n;
	}
	if (ret == 0 && run)
		ret = run_zero ? pcow_io_punch(img->fd, dst + off + pos, run)
			       : pcow_io_pwrite(img->fd, src + pos, run, dst + off + pos);
	return ret;
}

/* Copies [start, end) as seen from below dst_layer, through a buffer. */
static int copy_from_below(pcow_image *img, uint32_t dst_layer, uint64_t start,
			   uint64_t end, uint64_t chunk)
{
	uint64_t dst = region_start(img, dst_layer), done;
	/* mmap, not malloc: copy-ups also run in the write-fault handler. */
	uint8_t *buf = mmap(NULL, chunk, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int ret = 0;

	if (buf == MAP_FAILED)
		return pcow_err(-ENOMEM, "out of memory");
	for (done = start; ret == 0 && done < end; done += chunk) {
		uint64_t len = end - done < chunk ? end - done : chunk;

		ret = pcow_chain_read(img, img->m.layers[dst_layer].parent, buf, len, done);
		if (ret == 0)
			ret = copy_pieces(img, dst, buf, done, len, chunk);
	}
	munmap(buf, chunk);
	return ret;
}

int pcow_copy_up_run(pcow_image *img, uint32_t dst_layer, uint64_t first,
		     uint64_t n, const uint8_t *src)
{
	uint64_t start = first * img->block_size, end = (first + n) * img->block_size;
	uint64_t chunk = img->block_size < COPY_CHUNK ? img->block_size : COPY_CHUNK;
	int ret;

	if (end > img->m.virtual_size)
		end = img->m.virtual_size;
	ret = src ? copy_pieces(img, region_start(img, dst_layer), src, start,
				end - start, chunk)
		  : copy_from_below(img, dst_layer, start, end, chunk);
	/* The blocks are not the layer's yet: what a failed copy (no room)
	 * wrote of them is nobody's data, and would only leak. */
	if (ret < 0)
		(void)pcow_io_punch(img->fd, region_start(img, dst_layer) + start,
				    end - start);
	return ret ? ret : pcow_claim_blocks(img, dst_layer, first, n);
}

int pcow_copy_up(pcow_image *img, uint32_t dst_layer, uint64_t block)
{
	return pcow_copy_up_run(img, dst_layer, block, 1, NULL);
}

/* Calls fn for each run [first, end) of blocks whose bytes in
 * [base, base + span) hold data, scaled by bytes_per_block. */
static int for_data_runs(pcow_image *img, uint64_t base, uint64_t span,
			 uint64_t bytes_per_block,
			 int (*fn)(pcow_image *img, uint32_t layer, uint64_t first,
				   uint64_t end, uint64_t *n),
			 uint32_t layer, uint64_t *n)
{
	uint64_t first = 0, last;
	int ret;

	while ((ret = pcow_extent_units(img->fd, base, bytes_per_block, first,
					base + span, &first, &last)) > 0) {
		ret = fn(img, layer, first, last, n);
		if (ret < 0)
			return ret;
		first = last;
	}
	return ret;
}

static int count_owned(pcow_image *img, uint32_t layer, uint64_t first,
		       uint64_t end, uint64_t *n)
{
	uint64_t b;
	int ret;

	for (b = first; b < end && b < img->nblocks; b++) {
		ret = pcow_layer_owns(img, layer, b);
		if (ret < 0)
			return ret;
		*n += (uint64_t)ret;
	}
	return 0;
}

/* Blocks with a copy bit but no data: discarded or all-zero copies. */
static int count_bit_only(pcow_image *img, uint32_t layer, uint64_t first,
			  uint64_t end, uint64_t *n)
{
	uint64_t b;
	int ret;

	for (b = first * 64; b < end * 64 && b < img->nblocks; b++) {
		ret = disk_bit(img, layer, b);
		if (ret > 0)
			ret = layer_has_data(img, layer, b);
		else if (ret == 0)
			continue;
		if (ret < 0)
			return ret;
		if (ret == 0)
			*n += 1;
	}
	return 0;
}

struct pending_count {
	uint32_t layer;
	uint64_t n;
};

/* A pending bit without data: on disk it will be a bit-only block. */
static int count_pending_bit_only(pcow_image *img, uint64_t block, void *opaque)
{
	struct pending_count *pc = opaque;
	int ret = disk_bit(img, pc->layer, block);

	if (ret)
		return ret < 0 ? ret : 0;  /* counted with the on-disk bits */
	ret = layer_has_data(img, pc->layer, block);
	if (ret == 0)
		pc->n++;
	return ret < 0 ? ret : 0;
}

int pcow_layer_count_blocks(pcow_image *img, uint32_t layer, uint64_t *count)
{
	uint64_t start = region_start(img, layer), n = 0;
	int ret;

	/* Only allocated parts of the data span and of the bitmap are
	 * visited, so the cost follows the data, not the virtual size. */
	ret = for_data_runs(img, start, img->m.virtual_size, img->block_size,
			    count_owned, layer, &n);
	if (ret == 0)
		ret = for_data_runs(img, start + img->span, img->bitmap_span, 8,
				    count_bit_only, layer, &n);
	if (ret == 0) {
		struct pending_count pc = {.layer = layer};

		ret = pcow_pending_each(img, img->m.layers[layer].region,
					count_pending_bit_only, &pc);
		n += pc.n;
	}
	*count = n;
	return ret;
}
