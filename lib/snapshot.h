/* snapshot.h -- helpers shared by snapshot, check and rebase code. */
#ifndef PCOW_SNAPSHOT_H
#define PCOW_SNAPSHOT_H

#include "format.h"

/* Index of the snapshot called name (or with that numeric id), or -1. */
int pcow_snapshot_find(const struct pcow_meta *m, const char *name);

/* Removes layer idx from m, renumbering references to later layers. */
void pcow_meta_remove_layer(struct pcow_meta *m, uint32_t idx);

#endif
