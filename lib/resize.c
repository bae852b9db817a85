/*
 * resize.c -- growing and shrinking an image.
 *
 * Every region reserves data_capacity bytes for its data, so growing up to
 * the capacity changes nothing but the virtual size in the metadata.
 * Growing past it moves every region to a new place past the end of the
 * file, with room for the new size, and commits the new layout; the old
 * place is freed after.  Shrinking commits the smaller size first and frees
 * what lies past it after.  docs/format.md ("resize") has the orderings.
 *
 * A grown area must read as zeros whatever the backing file holds there,
 * as it does with qemu-img: the active layer gets the copy bit (and no
 * data) of every block there that the backing file has data in.
 */
#include <errno.h>
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
#include "stripe.h"

/* Relocation moves data in pieces of this size. */
#define COPY_CHUNK (1u << 20)

static uint64_t round_up(uint64_t v, uint64_t align)
{
	return (v + align - 1) / align * align;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/*
 * Walks the data extents of [start, end): with buf, copies each to the
 * same place relative to dst; without, only counts.  *done grows by the
 * bytes seen; progress is reported against total.
 */
static int copy_extents(pcow_image *img, uint64_t start, uint64_t end,
			uint64_t dst, uint8_t *buf, uint64_t *done,
			uint64_t total)
{
	uint64_t pos = start, p, n, d, h;
	int ret = 0;

	while ((ret = pcow_extent_next(img->fd, pos, end, &d, &h)) > 0) {
		for (p = d; p < h; p += n) {
			n = min_u64(COPY_CHUNK, h - p);
			if (buf) {
				ret = pcow_io_pread(img->fd, buf, n, p);
				if (ret == 0)
					ret = pcow_io_pwrite(img->fd, buf, n,
							     dst + (p - start));
				if (ret < 0)
					return ret;
			}
			*done += n;
			if (buf)
				pcow_progress(img, *done, total);
		}
		pos = h;
	}
	return ret < 0 ? ret : 0;
}

/* ORs bits into a word of the bitmap at file offset bitmap. */
static int or_word(pcow_image *img, uint64_t bitmap, uint64_t word,
		   uint64_t bits)
{
	return bits ? pcow_word_update(img->fd, bitmap + word * 8, bits, 0, NULL) : 0;
}

/*
 * Frees what the region at start holds past size: its data, and the copy
 * bits of the blocks that start at or past size (the block size cuts is
 * still in use).  *changed tells whether anything was there.
 */
static int trim_region(pcow_image *img, uint64_t start, uint64_t size,
		       bool *changed)
{
	uint64_t first = (size + img->block_size - 1) / img->block_size;
	uint64_t bitmap = start + img->span;
	bool bits;
	int ret;

	ret = pcow_file_has_data(img->fd, start + size, img->span - size);
	if (ret > 0) {
		*changed = true;
		ret = pcow_io_punch(img->fd, start + size, img->span - size);
	}
	if (ret < 0)
		return ret;
	ret = pcow_bitmap_clear_from(img->fd, bitmap, img->bitmap_span, first, true,
				     &bits);
	*changed = *changed || bits;
	return ret;
}

/* Trims every layer's region to size; persists when anything changed. */
static int trim_all(pcow_image *img, uint64_t size)
{
	bool changed = false;
	uint32_t l;
	int ret = 0;

	for (l = 0; l < img->m.layer_count && ret == 0; l++)
		ret = trim_region(img, region_start(img, l), size, &changed);
	if (ret == 0 && changed)
		ret = pcow_io_sync(img->fd);
	return ret;
}

/*
 * The block that a resize boundary `cut` falls inside keeps its content
 * below cut, but whether the backing file "has data in the block" is
 * judged up to the virtual size (4.1), so it changes with the resize when
 * the backing file has data in [cut, other_end) of the block.  The active
 * layer then takes the block over (copy bit, plus a copy when it did not
 * own it), so that the ownership no longer depends on the backing file.
 */
static int settle_cut_block(pcow_image *img, uint64_t cut, uint64_t other_end)
{
	uint64_t bs = img->block_size, b = cut / bs;
	uint32_t owner;
	int ret;

	if (cut % bs == 0)
		return 0;
	ret = pcow_backing_has_data(img, cut, min_u64((b + 1) * bs, other_end) - cut);
	if (ret <= 0)
		return ret;
	ret = pcow_block_owner(img, img->m.active, b, &owner);
	if (ret < 0)
		return ret;
	if (ret == 0)
		return pcow_copy_up(img, img->m.active, b);
	/* Owned for having data with nothing below (rule 3): make it a bit. */
	ret = pcow_bit_test(img, owner, b);
	if (ret == 0)
		ret = pcow_claim_block(img, owner, b);
	return ret < 0 ? ret : 0;
}

/*
 * Sets, in the bitmap at file offset bitmap, the bit of every block in
 * [first, end) that the backing file has data in (up to new_size), so that
 * the grown area reads as zeros.  One write per 64 blocks.
 */
static int mark_backing_blocks(pcow_image *img, uint64_t bitmap, uint64_t first,
			       uint64_t end, uint64_t new_size)
{
	uint64_t bs = img->block_size, b = first, word = 0, bits = 0, next;
	int ret;

	while (b < end) {
		ret = pcow_backing_next_data(img, b * bs, &next);
		if (ret < 0)
			return ret;
		if (next >= end * bs)
			break;
		b = next / bs;
		ret = pcow_backing_has_data(img, b * bs, min_u64(bs, new_size - b * bs));
		if (ret < 0)
			return ret;
		if (ret) {
			if (b / 64 != word) {
				ret = or_word(img, bitmap, word, bits);
				if (ret < 0)
					return ret;
				word = b / 64;
				bits = 0;
			}
			bits |= 1ull << (b % 64);
		}
		b++;
	}
	return or_word(img, bitmap, word, bits);
}

static int commit_layout(pcow_image *img, uint64_t size, uint64_t base,
			 uint64_t capacity)
{
	struct pcow_meta next;
	int ret = pcow_meta_copy(&next, &img->m);

	if (ret < 0)
		return ret;
	next.virtual_size = size;
	next.region_base = base;
	next.data_capacity = capacity;
	ret = pcow_meta_commit(img, &next);
	pcow_meta_free(&next);
	if (ret < 0)
		return ret;
	/* The bitmaps' mappings have the old size and place. */
	img->bitmap_cache.valid = false;  /* the layout moved */
	pcow_image_set_layout(img);
	return 0;
}

static int grow_in_place(pcow_image *img, uint64_t new_size)
{
	uint64_t old_size = img->m.virtual_size, old_blocks = img->nblocks;
	uint64_t bs = img->block_size;
	int ret;

	/* A shrink cut short may have left data and bits past the size. */
	ret = trim_all(img, old_size);
	if (ret == 0)
		ret = settle_cut_block(img, old_size, new_size);
	if (ret == 0)
		ret = mark_backing_blocks(img, region_start(img, img->m.active) + img->span,
					  old_blocks, (new_size + bs - 1) / bs, new_size);
	/* The commit persists the bits before the metadata. */
	if (ret == 0)
		ret = commit_layout(img, new_size, img->m.region_base,
				    img->m.data_capacity);
	return ret;
}

static int move_regions(pcow_image *img, uint64_t new_size)
{
	uint64_t old_size = img->m.virtual_size, old_blocks = img->nblocks;
	uint64_t bs = img->block_size, old_base = img->m.region_base;
	uint64_t capacity = pcow_data_span(new_size, img->m.block_bits);
	uint64_t stride = pcow_region_stride(capacity, img->m.block_bits);
	uint64_t base, end, total = 0, done = 0, full_words = old_blocks / 64;
	uint32_t l, max = 0;
	uint8_t *buf = NULL;
	struct stat st;
	int ret;

	if (fstat(img->fd, &st) < 0)
		return pcow_err_sys(-errno, "%s: stat failed", img->path);
	/* Past everything in the file: nothing there can be in use, even by
	 * metadata of an earlier attempt whose commit reported failure. */
	base = round_up(pcow_image_required_size(img, &img->m), PCOW_REGION_ALIGN);
	if ((uint64_t)st.st_size > base)
		base = round_up((uint64_t)st.st_size, PCOW_REGION_ALIGN);
	if (base > PCOW_MAX_FILE_END - PCOW_MAX_REGIONS * stride)
		return pcow_err(-EFBIG, "%s: the image would be too large", img->path);
	for (l = 0; l < img->m.layer_count; l++)
		if (img->m.layers[l].region > max)
			max = img->m.layers[l].region;
	end = pcow_region_offset(base, stride, max + 1);

	ret = settle_cut_block(img, old_size, new_size);
	/* Bits waiting in memory belong in the bitmaps about to be copied. */
	if (ret == 0)
		ret = pcow_pending_persist(img);
	if (ret < 0)
		return ret;
	/* A striped image's new regions are routed by their own layout
	 * from base on (all past the old layout's end), so that each stripe's
	 * data lands in its extent file at its new place. */
	pcow_stripes_set_next(img, base, stride, capacity);
	ret = pcow_io_truncate(img->fd, end);
	if (ret == -EFBIG)
		return pcow_err(ret, "%s: the image would be larger than the file system's largest file",
				img->path);
	if (ret < 0)
		return ret;
	for (l = 0; l < img->m.layer_count && ret == 0; l++) {
		uint64_t src = region_start(img, l);

		ret = copy_extents(img, src, src + old_size, 0, NULL, &total, 0);
		if (ret == 0)
			ret = copy_extents(img, src + img->span,
					   src + img->span + full_words * 8, 0, NULL,
					   &total, 0);
	}
	buf = malloc(COPY_CHUNK);
	if (ret == 0 && !buf)
		ret = pcow_err(-ENOMEM, "out of memory");
	/* Data past the old size and bits of blocks past it are not copied:
	 * whatever a shrink cut short left there is not carried over. */
	for (l = 0; l < img->m.layer_count && ret == 0; l++) {
		uint64_t src = region_start(img, l);
		uint64_t dst = pcow_region_offset(base, stride, img->m.layers[l].region);

		ret = copy_extents(img, src, src + old_size, dst, buf, &done, total);
		if (ret == 0)
			ret = copy_extents(img, src + img->span,
					   src + img->span + full_words * 8,
					   dst + capacity, buf, &done, total);
		if (ret == 0 && old_blocks % 64) {
			uint8_t w[8];

			ret = pcow_io_pread(img->fd, w, 8, src + img->span + full_words * 8);
			if (ret == 0)
				ret = or_word(img, dst + capacity, full_words,
					      pcow_le64(w) & ((1ull << (old_blocks % 64)) - 1));
		}
	}
	free(buf);
	if (ret == 0)
		ret = mark_backing_blocks(img,
					  pcow_region_offset(base, stride,
							     img->m.layers[img->m.active].region) +
						  capacity,
					  old_blocks, (new_size + bs - 1) / bs, new_size);
	if (ret == 0)
		ret = commit_layout(img, new_size, base, capacity);
	if (ret < 0)
		return ret;
	/* The old place is unused now; a crash before this leaves a leak. */
	ret = pcow_io_punch(img->fd, old_base, base - old_base);
	if (ret == 0)
		ret = pcow_io_sync(img->fd);
	pcow_progress(img, total, total);
	return ret;
}

/* Moves the regions (above); the routing of a striped image's new place
 * by the new layout ends with it, whatever happened. */
static int relocate(pcow_image *img, uint64_t new_size)
{
	int ret = move_regions(img, new_size);

	pcow_stripes_set_next(img, 0, 0, 0);
	return ret;
}

static int shrink(pcow_image *img, uint64_t new_size)
{
	int ret = settle_cut_block(img, new_size, img->m.virtual_size);

	if (ret == 0)
		ret = commit_layout(img, new_size, img->m.region_base,
				    img->m.data_capacity);
	/* Freed only once no metadata reaches it; a crash before leaves a leak. */
	if (ret == 0)
		ret = trim_all(img, new_size);
	return ret;
}

static int check_resizable(pcow_image *img)
{
	if (img->map)
		return pcow_err(-EBUSY, "%s: image is mapped; unmap it first", img->path);
	if (img->m.snapshot_count)
		return pcow_err(-ENOTSUP, "%s: Can't resize an image which has snapshots",
				img->path);
	if (img->m.backing && !img->backing && img->raw_fd < 0)
		return pcow_err(-EINVAL, "%s: resize needs the backing file open",
				img->path);
	return 0;
}

int pcow_resize(pcow_image *img, uint64_t new_size, unsigned flags)
{
	uint64_t old_size;
	int ret = pcow_require_writable(img);

	if (ret < 0)
		return ret;
	if (flags & ~PCOW_RESIZE_SHRINK)
		return pcow_err(-EINVAL, "unknown resize flags 0x%x", flags);
	if (new_size == 0)
		return pcow_err(-EINVAL, "New image size must be positive");
	if (new_size % 512)
		return pcow_err(-EINVAL, "The new size must be a multiple of 512");
	if (new_size > PCOW_MAX_VIRTUAL_SIZE)
		return pcow_err(-EFBIG, "image size %llu is too large (at most %llu)",
				(unsigned long long)new_size,
				(unsigned long long)PCOW_MAX_VIRTUAL_SIZE);
	pthread_mutex_lock(&img->lock);
	old_size = img->m.virtual_size;
	ret = check_resizable(img);
	if (ret == 0 && new_size < old_size && !(flags & PCOW_RESIZE_SHRINK))
		ret = pcow_err(-EINVAL, "%s: shrinking the image needs PCOW_RESIZE_SHRINK",
			       img->path);
	if (ret < 0)
		goto out;
	if (new_size > img->m.data_capacity) {
		ret = relocate(img, new_size); /* reports its own progress */
		goto out;
	}
	if (new_size < old_size)
		ret = shrink(img, new_size);
	else if (new_size > old_size)
		ret = grow_in_place(img, new_size);
	if (ret == 0)
		pcow_progress(img, 1, 1);
out:
	pthread_mutex_unlock(&img->lock);
	return ret;
}

int pcow_resize_lost_bytes(pcow_image *img, uint64_t new_size, uint64_t *bytes)
{
	uint64_t bs, old_size, pos, next, n = 0;
	uint32_t owner;
	int ret = 0;

	pthread_mutex_lock(&img->lock);
	bs = img->block_size;
	old_size = img->m.virtual_size;
	/* Walks only where something has data; counts the bytes the owning
	 * layer of this image stores, not what the backing file holds. */
	for (pos = new_size; pos < old_size; pos = (pos / bs + 1) * bs) {
		uint64_t b, from, to, start;

		ret = pcow_next_data(img, img->m.active, pos, &next);
		if (ret < 0 || next >= old_size)
			break;
		pos = next;
		b = pos / bs;
		ret = pcow_block_owner(img, img->m.active, b, &owner);
		if (ret < 0)
			break;
		if (ret == 0)
			continue;
		from = b * bs > new_size ? b * bs : new_size;
		to = min_u64((b + 1) * bs, old_size);
		start = region_start(img, owner);
		ret = copy_extents(img, start + from, start + to, 0, NULL, &n, 0);
		if (ret < 0)
			break;
	}
	pthread_mutex_unlock(&img->lock);
	*bytes = n;
	return ret < 0 ? ret : 0;
}
