/* snapshot.h -- helpers shared by snapshot, check and rebase code. */
#ifndef PCOW_SNAPSHOT_H
#define PCOW_SNAPSHOT_H

#include "format.h"
#include "image.h"

/* Index of the snapshot called name (or with that numeric id), or -1. */
int pcow_snapshot_find(const struct pcow_meta *m, const char *name);

/*
 * Takes the lowest region no layer of m uses, for a new layer.  A crash may
 * have left data in a region that no layer uses any more (a leak); that
 * data must not become the new layer's, so the region is emptied durably
 * before metadata points at it.
 */
int pcow_take_region(pcow_image *img, const struct pcow_meta *m,
		     uint32_t *region);

/* Removes layer idx from m, renumbering references to later layers. */
void pcow_meta_remove_layer(struct pcow_meta *m, uint32_t idx);

#endif
