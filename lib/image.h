/*
 * image.h -- the in-memory image: open file, current metadata, backing.
 */
#ifndef PCOW_IMAGE_H
#define PCOW_IMAGE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "format.h"
#include "pcow.h"

#define PCOW_BITMAP_CACHE_WORDS 512u

/* The deepest backing chain we follow; a crafted chain cannot go further. */
#define PCOW_MAX_CHAIN_DEPTH 64

struct pcow_image {
	int fd;
	char *path;
	char *dir;              /* directory relative backing names resolve in */
	bool rdonly;
	bool inactive;          /* handed over (handover.c): rdonly until activated */
	bool poisoned;          /* a metadata commit failed: no more changes */
	/* The last commit's slot is written but not yet flushed
	 * (PCOW_SNAPSHOT_SYNC_LATER): the next sync makes it durable. */
	bool commit_unsynced;
	/* A free region punched and made durable ahead of a snapshot
	 * (pcow_snapshot_prepare): the next one taken while the metadata is
	 * still of ready_generation uses it without punching it again. */
	bool region_ready;
	uint32_t ready_region;
	uint64_t ready_generation;
	uint32_t last_commit_len;       /* bytes the last commit wrote */
	/* What the slot that went dirty held before (dirty.c): written back
	 * when the session changed nothing the clean metadata does not say. */
	uint8_t *clean_slot;
	uint64_t clean_slot_holes;      /* one bit per 4 KiB page: a hole */
	uint64_t clean_generation;
	unsigned open_flags;
	pthread_mutex_t lock;

	struct pcow_meta m;
	int cur_slot;           /* metadata slot holding m */
	uint64_t block_size;
	uint64_t nblocks;
	uint64_t stride;        /* bytes between two regions */
	uint64_t span;          /* data part of a region (m.data_capacity);
				 * its bitmap follows */
	uint64_t bitmap_span;

	/* Backing file: a pcow image, or a raw file read through raw_fd. */
	pcow_image *backing;
	int raw_fd;
	uint64_t raw_size;
	char *backing_path;     /* resolved name of the backing file */
	int depth_in_chain;

	/* The bitmap page read last (layer.c, pcow_bitmap_word). */
	struct pcow_bitmap_cache {
		bool valid;
		uint32_t region;
		uint64_t page;
		uint64_t epoch;         /* pcow_io_epoch() when read */
		uint64_t words[PCOW_BITMAP_CACHE_WORDS];
	} bitmap_cache;
	struct pcow_pending *pending;   /* copy bits waiting for a flush */
	struct pcow_flusher *flusher;   /* persists them at an interval */

	struct pcow_map *map;
	struct pcow_stripes *stripes;   /* extent files (stripe.h); NULL: none */

	pcow_progress_fn progress_fn;
	void *progress_opaque;
};

/* Reports progress of a long operation to the caller's callback, if any. */
static inline void pcow_progress(pcow_image *img, uint64_t done, uint64_t total)
{
	if (img->progress_fn)
		img->progress_fn(done > total ? total : done, total,
				 img->progress_opaque);
}

/* File offset of a region in the current layout. */
static inline uint64_t pcow_image_region(const pcow_image *img, uint32_t region)
{
	return pcow_region_offset(img->m.region_base, img->stride, region);
}

static inline uint64_t region_start(const pcow_image *img, uint32_t layer)
{
	return pcow_image_region(img, img->m.layers[layer].region);
}

/* Sets block_size, nblocks, stride, span and bitmap_span from img->m. */
void pcow_image_set_layout(pcow_image *img);

/* The image's write lock, taken (-EBUSY when another process holds it)
 * and released (handover.c). */
int pcow_image_lock(pcow_image *img);
/* Takes an OFD lock on byte 0 of fd (format.md 6); -EBUSY when held. */
int pcow_lock_file(int fd, bool exclusive, bool for_writer, const char *path);
int pcow_image_unlock(pcow_image *img);

/*
 * Reads the metadata in force again, as an open does; fails, keeping the
 * old, when it cannot be used or when size, block size or backing file
 * changed (the structures built on them would be wrong).
 */
int pcow_image_reload(pcow_image *img);

/* Bytes of file the layers of m need (in m's layout). */
uint64_t pcow_image_required_size(const pcow_image *img,
				  const struct pcow_meta *m);

/*
 * The metadata transaction (not to be confused with pcow_commit, which
 * merges an image into its backing file): makes next the image's metadata:
 * writes it to the other slot, persists it, then adopts it (the commit
 * point is the slot's persisted checksum).
 * On failure the image keeps its old metadata.  Takes ownership of next
 * only on success.
 */
int pcow_meta_commit(pcow_image *img, struct pcow_meta *next);
/* The same, leaving the flush of the slot to the next sync, which must
 * then go through pcow_meta_synced(). */
int pcow_meta_commit_unsynced(pcow_image *img, struct pcow_meta *next);
/* After a sync of the image file that returned ret: a slot written
 * unsynced is durable now, or, if the sync failed, of unknown state. */
void pcow_meta_synced(pcow_image *img, int ret);

/*
 * Before the first change that may leave a block owned by its data alone
 * (a write where nothing lies below, through the byte API or a writable
 * mapping): flags the active layer unrecorded, which sets the image's dirty
 * bit (and upgrades a version 1 image).  Callers hold img->lock.
 */
int pcow_image_mark_dirty(pcow_image *img);

/*
 * Gives every block that a flagged layer owns by data alone its bit, then
 * commits metadata without the flags (clean): from then on the image's
 * content does not depend on which of its bytes are allocated.
 */
int pcow_image_record(pcow_image *img);

/* Resolves name relative to dir into a newly allocated path. */
char *pcow_resolve_path(const char *dir, const char *name);

int pcow_open_internal(pcow_image **out, const char *path, unsigned flags,
		       int depth, const uint64_t *chain_ids, int chain_len);

/* Opens the backing file named in m (for rebase: a new candidate). */
int pcow_backing_open(pcow_image *img, const char *name, enum pcow_format fmt,
		      pcow_image **pcow_out, int *raw_fd, uint64_t *raw_size,
		      char **resolved);

/* Releases what pcow_backing_open gave. */
void pcow_backing_close(pcow_image **pcow, int *raw_fd, char **resolved);

/* fdatasync of the image file and its extent files (no test hook). */
int pcow_image_datasync(pcow_image *img);

/* Guards against a caller error: most calls need a read-write image. */
int pcow_require_writable(pcow_image *img);

#endif
