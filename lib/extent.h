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

/*
 * A file's data extents, as the file system reports them (SEEK_DATA and
 * SEEK_HOLE): every walk over a file's allocation asks through these, so
 * that the end of the file (ENXIO), the bounds and the errors are handled
 * in one place.  Each returns 1 when it found data, 0 when there is none,
 * or a negative errno with a message.
 */

/*
 * The first data at or after pos that starts below end: *start, and unless
 * stop is NULL *stop, where that data ends (clipped to end).  Without stop
 * only SEEK_DATA is asked: on tmpfs SEEK_HOLE costs time linear in the
 * data it passes over, which a caller that only needs the start (or needs
 * the end only when the start is near) must not pay.
 */
int pcow_extent_next(int fd, uint64_t pos, uint64_t end, uint64_t *start,
		     uint64_t *stop);

/* Where the data at pos (found by pcow_extent_next) ends, clipped to end. */
int pcow_extent_stop(int fd, uint64_t pos, uint64_t end, uint64_t *stop);

/*
 * pcow_extent_next counted in units of unit bytes from base: [*first,
 * *last) are the units from unit from on that hold some of the next data
 * of [base + from * unit, end).  A caller goes on from unit *last, so a
 * unit is never reported twice.
 */
int pcow_extent_units(int fd, uint64_t base, uint64_t unit, uint64_t from,
		      uint64_t end, uint64_t *first, uint64_t *last);

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
