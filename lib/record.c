/*
 * record.c -- turning ownership by data alone into ownership by bit.
 *
 * A write where nothing lies below needs no copy bit to be read back
 * (format.md 4.1, rule 3): the layer's data is all there is.  That is
 * what lets the kernel allocate a fresh block on the guest's first store
 * with no fault in user space.  But which bytes of a file are allocated is
 * not part of its content: a copy that fills holes (cp --sparse=never,
 * rsync without -S, a download) would make every layer "have data"
 * everywhere.  So before an image is closed clean, every such block gets
 * its bit, and a clean image's content depends on its bytes alone.
 */
#include <errno.h>

#include "error.h"
#include "extent.h"
#include "layer.h"

int pcow_layer_record(pcow_image *img, uint32_t layer, uint64_t *recorded)
{
	uint64_t base = region_start(img, layer), bs = img->block_size;
	uint64_t end = base + img->nblocks * bs, b = 0, last;
	uint32_t owner;
	int ret;

	while ((ret = pcow_extent_units(img->fd, base, bs, b, end, &b, &last)) > 0) {
		for (; b < last; b++) {
			ret = pcow_bit_test(img, layer, b);
			if (ret < 0)
				return ret;
			if (ret)
				continue;  /* recorded already */
			ret = pcow_block_owner(img, layer, b, &owner);
			if (ret == 1 && owner == layer) {
				ret = pcow_bit_set(img, layer, b);
				++*recorded;
			}
			if (ret < 0)
				return ret;
		}
	}
	return ret;
}

int pcow_layers_record(pcow_image *img, uint64_t *recorded)
{
	uint32_t l;
	int ret = 0;

	for (l = 0; l < img->m.layer_count && ret == 0; l++)
		if (img->m.layers[l].flags & PCOW_LAYER_UNRECORDED)
			ret = pcow_layer_record(img, l, recorded);
	return ret;
}
