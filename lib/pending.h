/*
 * pending.h -- copy bits kept in memory and in the image's pending log,
 * written to the bitmaps at the next flush.
 *
 * A copy bit must never be durable before the data it vouches for (docs/
 * format.md 5).  Writing it at once would cost an fdatasync per copy-up;
 * instead the bit waits in a shadow bitmap and the pending log until the
 * next flush, metadata commit or persist interval, which persists the data
 * first and then writes every pending bit.
 * Until then the data is not durable either, so a crash loses the copy-up
 * together with the writes that followed it, exactly as with any unflushed
 * write: the block shows its inherited content again.
 */
#ifndef PCOW_PENDING_H
#define PCOW_PENDING_H

#include <stdbool.h>
#include <stdint.h>

#include "image.h"

/* True when the bit of block in region is pending. */
bool pcow_pending_test(const pcow_image *img, uint32_t region, uint64_t block);

/* The pending bits of one bitmap word of region (0 when none). */
uint64_t pcow_pending_word(const pcow_image *img, uint32_t region, uint64_t word);

/* The blocks whose bits are pending (in memory: ours). */
uint64_t pcow_pending_blocks(const pcow_image *img);

/* True when some bits may be pending (ours, or a dead writer's). */
bool pcow_pending_any(const pcow_image *img);

/*
 * Persists the data written so far, then writes every pending bit (not yet
 * synced: the caller's next sync makes them durable).
 */
int pcow_pending_persist(pcow_image *img);

/* 1 when the reserved area starts with a pending log's header, whether or
 * not this open uses the log (check tells a stale log from other bytes). */
int pcow_pending_log_found(pcow_image *img);

/* Calls fn for each pending bit of region. */
int pcow_pending_each(pcow_image *img, uint32_t region,
		      int (*fn)(pcow_image *img, uint64_t block, void *opaque),
		      void *opaque);

/*
 * At open: applies the bits a process that died left for this image (a
 * read-write open persists them; a read-only one reads through them).
 */
int pcow_pending_recover(pcow_image *img);

/* Makes ready what the first copy-up into the active layer needs, so that
 * the write-fault handler does not map memory. */
int pcow_pending_prepare(pcow_image *img);

/* Marks the n blocks from first of layer as owned, in the pending log
 * (one write) and in memory.  Callers hold img->lock. */
int pcow_pending_set_run(pcow_image *img, uint32_t layer, uint64_t first,
			 uint64_t n);

/*
 * Starts, retunes or (interval_ms 0) stops the thread that persists
 * pending bits at least every interval_ms.  Not with img->lock held.
 */
int pcow_pending_set_interval(pcow_image *img, uint64_t interval_ms);

/* Tests only: the boot a log must name to be applied (a power failure is
 * a reboot: what the page cache held may be lost). */
void pcow_pending_set_boot_id(const char *id);

/* Frees the state (at close, after pcow_pending_persist); the file goes
 * too unless bits are still in it. */
void pcow_pending_release(pcow_image *img);

#endif
