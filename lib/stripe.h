/*
 * stripe.h -- an image whose data spans are striped over extent files
 * (docs/format.md 3.6).
 *
 * The image file's descriptor keeps naming the whole image: every offset
 * of the layout (metadata, pending log, regions, bitmaps) stays where an
 * unstriped image has it.  Only where it is read, written, punched, sought
 * or mapped is an offset inside a region's data span sent to the extent
 * file of its stripe, at the same offset; everything else stays in the
 * image file.  So the layers, the ownership rules, check and the mapping
 * engine work on striped images unchanged, and a stripe of guest address
 * space is always one extent file's.
 *
 * The routing is looked up by descriptor (persist.c, extent.c, the map):
 * lock-free, since the write-fault handler (a signal handler) writes and
 * maps through it.
 */
#ifndef PCOW_STRIPE_H
#define PCOW_STRIPE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "image.h"

/* The extent file header, at offset 0 of every extent file. */
#define PCOW_EXTENT_MAGIC "PCOWXTNT"
#define PCOW_EXTENT_HEADER_SIZE 44u

struct pcow_stripes {
	int fd;                 /* the image file's descriptor */
	const pcow_image *img;  /* its layout (region_base, stride, span) */
	uint32_t bits;          /* stripe size = 2^bits */
	uint32_t n;             /* extent files */
	/* The layout a resize moves the regions to (resize.c), routing the
	 * offsets from next_base on until it is the image's; 0: none. */
	uint64_t next_base, next_stride, next_span;
	/* The node each extent file's maps are bound to: the stored one where
	 * this host has it, else -1 (docs/design.md, "NUMA placement"). */
	int nodes[PCOW_EXTENTS_MAX];
	int fds[];              /* their descriptors */
};

/* The striping behind fd, or NULL for a plain file. */
const struct pcow_stripes *pcow_stripes_of(int fd);

/*
 * Where the byte at offset off of the striped image s lives: returns the
 * descriptor of the file holding it (at the same offset), and in *end the
 * offset where that piece of the layout ends.
 */
int pcow_stripe_route(const struct pcow_stripes *s, uint64_t off, uint64_t *end);

/* Routes offsets from base on by a layout a resize is moving the regions
 * to (stride, span); base 0 ends it. */
void pcow_stripes_set_next(pcow_image *img, uint64_t base, uint64_t stride,
			   uint64_t span);

/* lseek(SEEK_DATA / SEEK_HOLE) over the image as one file. */
off_t pcow_stripe_lseek(int fd, uint64_t off, int whence);

/* mmap(MAP_FIXED) of [off, off+len) of fd at addr, piece by piece for a
 * striped image.  Returns 0, or -1 with errno (nothing left half-mapped
 * is undone: the caller maps the range again or fails). */
int pcow_stripe_mmap(void *addr, uint64_t len, int prot, int flags, int fd,
		     uint64_t off);

/*
 * Opens, checks and locks the extent files the metadata names (an image
 * without stripes: nothing), then routes img->fd through them.  A missing,
 * swapped or foreign extent file fails the open before anything is
 * written, naming the file.
 */
int pcow_stripes_open(pcow_image *img, bool write, bool lock, bool for_writer);

/* Stops routing img->fd and closes the extent files. */
void pcow_stripes_close(pcow_image *img);

/* Takes or releases the write lock of every extent file (handover.c). */
int pcow_stripes_lock(pcow_image *img, bool lock);

/*
 * Creates the extent files m names for a new image at path (size bytes
 * each, sparse, a header): all or none.  On failure, the ones made are
 * removed.
 */
int pcow_stripes_create(const char *path, const struct pcow_meta *m,
			uint64_t size);

/* Removes the extent files of a new image whose creation failed. */
void pcow_stripes_unlink(const char *path, const struct pcow_meta *m);

/*
 * Calls fn for every piece of data that file (0 to n - 1: an extent file,
 * n: the image file) holds from the first region on where the layout puts
 * none of its bytes: what no read sees (check, format.md 3.6).
 */
typedef int (*pcow_stray_fn)(int fd, uint64_t off, uint64_t len, void *opaque);
int pcow_stripes_strays(const pcow_image *img, uint32_t file, pcow_stray_fn fn,
			void *opaque);

/* The resolved name of extent file i of img (newly allocated). */
char *pcow_stripe_path(const pcow_image *img, uint32_t i);

#endif
