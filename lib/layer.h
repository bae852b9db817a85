/*
 * layer.h -- which layer holds a block, reading through the layer stack,
 * and copying a block up into the active layer.
 *
 * A layer owns a block when its region holds any file data inside the
 * block (the host file system tells, through SEEK_DATA).  Holes inside an
 * owned block read as zeros; a block the layer does not own is inherited
 * from the parent layer, then from the backing file.
 */
#ifndef PCOW_LAYER_H
#define PCOW_LAYER_H

#include <stdbool.h>
#include <stdint.h>

#include "image.h"

/* 1 when the file has data in [offset, offset+len), 0 when only holes. */
int pcow_file_has_data(int fd, uint64_t offset, uint64_t len);

/* 1 when layer owns block, 0 when not, negative errno on error. */
int pcow_layer_owns(pcow_image *img, uint32_t layer, uint64_t block);

/* 1 when layer owns any block touching [offset, offset+len). */
int pcow_layer_owns_range(pcow_image *img, uint32_t layer, uint64_t offset,
			  uint64_t len);

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
 * backing file, when layer is PCOW_NO_PARENT).  Ownership is decided per
 * block of each image on the way down.
 */
int pcow_resolve(pcow_image *img, uint32_t layer, uint64_t offset,
		 struct pcow_source *src);

/* Reads [offset, offset+len) as seen from layer (PCOW_NO_PARENT: backing). */
int pcow_chain_read(pcow_image *img, uint32_t layer, void *buf, uint64_t len,
		    uint64_t offset);

/* 1 when anything below layer (exclusive) has data in the range. */
int pcow_below_has_data(pcow_image *img, uint32_t layer, uint64_t offset,
			uint64_t len);

/*
 * Copies block from the layers below dst_layer into dst_layer, crash-safely
 * (journal entry, copy, persist, clear).  With copy_data false, only the
 * journal protects a write the caller makes itself (a full-block overwrite);
 * the caller then calls pcow_copy_up_end().
 */
int pcow_copy_up(pcow_image *img, uint32_t dst_layer, uint64_t block);
int pcow_copy_up_begin(pcow_image *img, uint32_t dst_layer, uint64_t block);
int pcow_copy_up_end(pcow_image *img);

/* Rolls back interrupted copy-ups (read-write open) or records them. */
int pcow_journal_recover(pcow_image *img);

/* Counts the blocks a layer owns (walks the region's data extents). */
int pcow_layer_count_blocks(pcow_image *img, uint32_t layer, uint64_t *count);

#endif
