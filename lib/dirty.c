/*
 * dirty.c -- the dirty bit: set before a session may leave blocks owned by
 * their data alone, cleared at close once each has its bit (format.md 4.1,
 * "Recorded ownership").
 *
 * A session that, in the end, left no such block (a mapping that was only
 * read, a command refused after the image was mapped) puts back the slot
 * the dirty commit wrote, so that the file is byte for byte what it was:
 * opening an image read-write and changing nothing changes nothing.
 */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "error.h"
#include "image.h"
#include "layer.h"
#include "pending.h"
#include "persist.h"

#define PAGE 4096u
#define SLOT_PAGES (PCOW_META_SLOT_SIZE / PAGE)

_Static_assert(SLOT_PAGES <= 64, "one bit per page of a slot");

/* Saves the slot the dirty commit is about to write, page holes included. */
static void save_other_slot(pcow_image *img)
{
	uint64_t slot = PCOW_META_SLOT_OFFSET(1 - img->cur_slot), holes = 0;
	uint32_t p;

	img->clean_slot = malloc(PCOW_META_SLOT_SIZE);
	if (!img->clean_slot)
		return;  /* then the session ends with a clean commit instead */
	for (p = 0; p < SLOT_PAGES; p++)
		if (pcow_file_has_data(img->fd, slot + p * PAGE, PAGE) == 0)
			holes |= 1ull << p;
	if (pcow_io_pread(img->fd, img->clean_slot, PCOW_META_SLOT_SIZE, slot) < 0) {
		free(img->clean_slot);
		img->clean_slot = NULL;
		return;
	}
	img->clean_slot_holes = holes;
	img->clean_generation = img->m.generation;
}

int pcow_image_mark_dirty(pcow_image *img)
{
	struct pcow_meta next;
	bool was_clean = img->m.version == PCOW_VERSION && !pcow_meta_unrecorded(&img->m);
	int ret = pcow_require_writable(img);

	if (ret < 0 || (img->m.version == PCOW_VERSION &&
			(img->m.layers[img->m.active].flags & PCOW_LAYER_UNRECORDED)))
		return ret;
	ret = pcow_meta_copy(&next, &img->m);
	if (ret < 0)
		return ret;
	if (was_clean && !img->clean_slot)
		save_other_slot(img);
	next.layers[next.active].flags |= PCOW_LAYER_UNRECORDED;
	ret = pcow_meta_commit(img, &next);
	pcow_meta_free(&next);
	return ret;
}

/*
 * Writes back the slot the dirty commit wrote; the clean slot before it
 * is in force again.  A crash while writing leaves that slot torn, with
 * the same result.
 */
static int undo_dirty(pcow_image *img)
{
	uint64_t slot = PCOW_META_SLOT_OFFSET(img->cur_slot);
	uint32_t p, pages = (img->last_commit_len + PAGE - 1) / PAGE;
	/* What the session did (punches, cleared bits) is durable before the
	 * clean metadata is in force again. */
	int ret = pcow_io_sync(img->fd);

	for (p = 0; p < pages && ret == 0; p++)
		ret = img->clean_slot_holes >> p & 1 ?
		      pcow_io_punch(img->fd, slot + p * PAGE, PAGE) :
		      pcow_io_pwrite(img->fd, img->clean_slot + p * PAGE, PAGE,
				     slot + p * PAGE);
	if (ret == 0)
		ret = pcow_io_sync(img->fd);
	if (ret < 0)
		return ret;
	img->cur_slot = 1 - img->cur_slot;
	img->m.generation = img->clean_generation;
	for (p = 0; p < img->m.layer_count; p++)
		img->m.layers[p].flags &= ~PCOW_LAYER_UNRECORDED;
	img->m.incompat = pcow_meta_incompat(&img->m);
	return 0;
}

int pcow_image_record(pcow_image *img)
{
	struct pcow_meta next;
	uint64_t recorded = 0;
	uint32_t l;
	int ret = pcow_pending_persist(img);

	if (ret < 0 || !pcow_meta_unrecorded(&img->m))
		return ret;
	/* Whether data alone makes a block a layer's depends on what the
	 * backing file holds there: without it, the image stays dirty. */
	if (img->m.backing && !img->backing && img->raw_fd < 0)
		return 0;
	ret = pcow_layers_record(img, &recorded);
	if (ret < 0)
		return ret;
	/* Nothing new since the clean metadata, which only the dirty commit
	 * followed: that metadata is the image's again. */
	if (!recorded && img->clean_slot && img->m.generation == img->clean_generation + 1 &&
	    !pcow_pending_any(img))
		return undo_dirty(img);
	ret = pcow_meta_copy(&next, &img->m);
	if (ret < 0)
		return ret;
	for (l = 0; l < next.layer_count; l++)
		next.layers[l].flags &= ~PCOW_LAYER_UNRECORDED;
	/* The commit persists the bits before the metadata that says every
	 * block has one. */
	ret = pcow_meta_commit(img, &next);
	pcow_meta_free(&next);
	return ret;
}
