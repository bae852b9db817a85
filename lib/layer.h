/*
 * layer.h -- which layer holds a block, reading through the layer stack,
 * and copying a block up into a layer.
 *
 * Ownership (docs/format.md, 4.1): looking down a chain of layers from some
 * layer, the block belongs to the topmost layer whose copy bit is set; if
 * no layer has the bit, to the lowest layer whose region holds data in the
 * block, unless the backing file has data there.  Data without the bit on
 * top of an owned block is never trusted: the host file system may have
 * allocated it as zeros next to a page that was written (large folios), or
 * a copy may have been cut short by a crash.
 */
#ifndef PCOW_LAYER_H
#define PCOW_LAYER_H

#include <stdbool.h>
#include <stdint.h>

#include "image.h"

/* 1 when the file has data in [offset, offset+len), 0 when only holes. */
int pcow_file_has_data(int fd, uint64_t offset, uint64_t len);

/* Word of region's on-disk copy bitmap (pending bits left out). */
int pcow_bitmap_word(pcow_image *img, uint32_t region, uint64_t word,
		     uint64_t *out);

/* The copy bit of block in layer: 1 set, 0 clear, negative on error. */
int pcow_bit_test(pcow_image *img, uint32_t layer, uint64_t block);

/*
 * Read-modify-write of the little-endian bitmap word at file offset off:
 * sets the bits of set, clears those of clear (nothing is written when
 * the word does not change); *old (when not NULL) gets the word before.
 */
int pcow_word_update(int fd, uint64_t off, uint64_t set, uint64_t clear,
		     uint64_t *old);

/* True when [off, off+len) of fd holds a byte that is not zero (holes are
 * skipped, data read). */
int pcow_file_nonzero(int fd, uint64_t off, uint64_t len);

/*
 * The bits of blocks from first on in the bitmap at file offset bitmap
 * (span bytes): *found tells whether any is set; with clear, they are
 * cleared (the shared word masked, the words after it punched).
 */
int pcow_bitmap_clear_from(int fd, uint64_t bitmap, uint64_t span,
			   uint64_t first, bool clear, bool *found);

/* Clears the copy bit (not yet persisted). */
int pcow_bit_clear(pcow_image *img, uint32_t layer, uint64_t block);

/* ORs bits into word of region's on-disk bitmap (one aligned 8-byte write,
 * not yet persisted). */
int pcow_bits_or(pcow_image *img, uint32_t region, uint64_t word, uint64_t bits);

/* Sets the copy bit (one aligned 8-byte write, not yet persisted). */
int pcow_bit_set(pcow_image *img, uint32_t layer, uint64_t block);

/*
 * Finds which layer of img, looking down from layer, owns block: 1 with
 * *owner set, 0 when none does (the backing file or zeros show through).
 */
int pcow_block_owner(pcow_image *img, uint32_t layer, uint64_t block,
		     uint32_t *owner);

/* 1 when layer itself owns block, 0 when not, negative errno on error. */
int pcow_layer_owns(pcow_image *img, uint32_t layer, uint64_t block);

/* Where the content of a byte of the image comes from. */
struct pcow_source {
	int depth;              /* 0 = the layer asked for; -1 = nowhere */
	pcow_image *image;      /* image holding it, NULL for a raw file */
	int fd;                 /* file holding it, -1 for nowhere */
	uint64_t file_offset;   /* offset of the byte asked for in fd */
	uint32_t layer;         /* layer of image holding it */
};

/*
 * Finds which file holds the byte at offset as seen from layer (or from the
 * backing file, when layer is PCOW_NO_PARENT).
 */
int pcow_resolve(pcow_image *img, uint32_t layer, uint64_t offset,
		 struct pcow_source *src);

/* Reads [offset, offset+len) as seen from layer (PCOW_NO_PARENT: backing). */
int pcow_chain_read(pcow_image *img, uint32_t layer, void *buf, uint64_t len,
		    uint64_t offset);

/* 1 when anything seen from layer (inclusive) has data in the range. */
int pcow_view_has_data(pcow_image *img, uint32_t layer, uint64_t offset,
		       uint64_t len);

/* 1 when anything below layer (exclusive) has data in the range. */
int pcow_below_has_data(pcow_image *img, uint32_t layer, uint64_t offset,
			uint64_t len);

/* First offset >= from where anything seen from from_layer has data, or
 * UINT64_MAX. */
int pcow_next_data(pcow_image *img, uint32_t from_layer, uint64_t from,
		   uint64_t *next);

/* The same for what the backing file (pcow or raw) alone may hold. */
int pcow_backing_next_data(pcow_image *img, uint64_t from, uint64_t *next);

/* The backing file (pcow or raw) has data in the range. */
int pcow_backing_has_data(pcow_image *img, uint64_t offset, uint64_t len);

/*
 * Copies block, as seen from below dst_layer, into dst_layer and makes it
 * dst_layer's: data first, persisted, then the copy bit.  A crash before
 * the bit is durable leaves the block inherited as it was.
 */
int pcow_copy_up(pcow_image *img, uint32_t dst_layer, uint64_t block);

/*
 * The same for the n blocks from first, all inherited, copied from src (the
 * mapping's view of them, starting at block first; NULL: read through the
 * layers below): data in as few writes as the zero pieces allow, then each
 * block's bit.
 */
int pcow_copy_up_run(pcow_image *img, uint32_t dst_layer, uint64_t first,
		     uint64_t n, const uint8_t *src);
/* Marks block owned after its new data was written: the bit waits for the
 * next flush (pending.h), or on a MAP_SYNC map is persisted after the data. */
int pcow_claim_block(pcow_image *img, uint32_t layer, uint64_t block);
/* The same for n blocks from first (one pair of syncs on MAP_SYNC). */
int pcow_claim_blocks(pcow_image *img, uint32_t layer, uint64_t first,
		      uint64_t n);

/*
 * Sets the bit of every block layer owns by its data alone (record.c);
 * not persisted: the caller's next sync or commit does that.
 */
int pcow_layer_record(pcow_image *img, uint32_t layer, uint64_t *recorded);

/* The same for every layer with the unrecorded flag. */
int pcow_layers_record(pcow_image *img, uint64_t *recorded);

/* Counts the blocks a layer owns that hold data. */
int pcow_layer_count_blocks(pcow_image *img, uint32_t layer, uint64_t *count);

#endif
