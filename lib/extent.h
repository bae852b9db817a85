/*
 * extent.h -- an image's content as runs of bytes that come from one place.
 *
 * Resolving block by block costs a few system calls per block; mapping an
 * image that inherits a million blocks must not.  Between two changes of
 * any layer's allocation (SEEK_DATA / SEEK_HOLE) or of any copy bit, every
 * block has the same owner (docs/format.md 4.1), so the content is one run
 * per such stretch, whatever its length.
 */
#ifndef PCOW_EXTENT_H
#define PCOW_EXTENT_H

#include <stdint.h>

#include "image.h"

/* Bytes [off, off+len) of the view are bytes [file, file+len) of fd. */
struct pcow_run {
	uint64_t off, len;
	int fd;
	uint64_t file;
	pcow_image *img;        /* image whose layer holds them; NULL: raw file */
	uint32_t layer;         /* that layer, or PCOW_NO_PARENT */
	int depth;              /* layers looked through above it, backing
				 * files' layers included (0: the layer asked) */
};

typedef int (*pcow_run_fn)(const struct pcow_run *run, void *opaque);

/*
 * Calls fn, in increasing order, for the runs of [from, to) as seen from
 * layer of img (PCOW_NO_PARENT: from its backing file only) that some file
 * holds; what is left out reads as zeros.  A run from a layer covers whole
 * blocks of that image (holes inside read as zeros).  Copy bits still
 * pending (pending.h) are seen too.  fn
 * returns 0 to go on, 1 to stop the walk early, or a negative errno.
 */
int pcow_view_runs(pcow_image *img, uint32_t layer, uint64_t from, uint64_t to,
		   pcow_run_fn fn, void *opaque);

#endif
