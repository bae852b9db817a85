/*
 * rebase.c -- changing the backing file.
 *
 * Safe rebase first copies into the image every block whose content differs
 * between the old and the new backing file (only into root layers, the ones
 * that inherit from the backing file), then commits the new name.  A crash
 * in between leaves extra copies of old data, which read the same.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "image.h"
#include "layer.h"
#include "persist.h"

/* Reads what a candidate backing file holds at [offset, offset+len). */
static int candidate_read(pcow_image *b, int raw_fd, uint64_t raw_size,
			  uint8_t *buf, uint64_t len, uint64_t offset)
{
	memset(buf, 0, len);
	if (b) {
		if (offset >= b->m.virtual_size)
			return 0;
		if (len > b->m.virtual_size - offset)
			len = b->m.virtual_size - offset;
		return pcow_chain_read(b, b->m.active, buf, len, offset);
	}
	if (raw_fd >= 0 && offset < raw_size)
		return pcow_io_pread(raw_fd, buf, len, offset);
	return 0;
}

static int copy_differing(pcow_image *img, pcow_image *nb, int nraw,
			  uint64_t nraw_size)
{
	uint64_t bs = img->block_size, b;
	uint8_t *old = malloc(bs), *new = malloc(bs);
	uint32_t l;
	int ret = 0;

	if (!old || !new) {
		ret = pcow_err(-ENOMEM, "out of memory");
		goto out;
	}
	for (l = 0; l < img->m.layer_count && ret == 0; l++) {
		if (img->m.layers[l].parent != PCOW_NO_PARENT)
			continue;
		for (b = 0; b < img->nblocks && ret == 0; b++) {
			uint64_t off = b * bs, n = bs;

			if (n > img->m.virtual_size - off)
				n = img->m.virtual_size - off;
			ret = pcow_layer_owns(img, l, b);
			if (ret != 0) {
				ret = ret > 0 ? 0 : ret;
				continue;
			}
			ret = pcow_chain_read(img, PCOW_NO_PARENT, old, n, off);
			if (ret == 0)
				ret = candidate_read(nb, nraw, nraw_size, new, n, off);
			if (ret == 0 && memcmp(old, new, n))
				ret = pcow_copy_up(img, l, b);
		}
	}
out:
	free(old);
	free(new);
	return ret;
}

int pcow_rebase(pcow_image *img, const char *backing_file,
		enum pcow_format backing_format, unsigned flags)
{
	pcow_image *nb = NULL;
	int nraw = -1, ret;
	uint64_t nraw_size = 0;
	char *resolved = NULL;
	struct pcow_meta next;
	bool has_new = backing_file && backing_file[0];

	ret = pcow_require_writable(img);
	if (ret < 0)
		return ret;
	if (img->map)
		return pcow_err(-EBUSY, "%s: image is mapped; unmap it first", img->path);
	if (has_new && backing_format != PCOW_FORMAT_RAW &&
	    backing_format != PCOW_FORMAT_PCOW)
		return pcow_err(-EINVAL, "backing file format must be given (raw or pcow)");
	if (has_new && strlen(backing_file) > PCOW_BACKING_NAME_MAX)
		return pcow_err(-ENAMETOOLONG, "backing file name too long");
	pthread_mutex_lock(&img->lock);
	if (!(flags & PCOW_REBASE_UNSAFE)) {
		if (img->m.backing && !img->backing && img->raw_fd < 0) {
			ret = pcow_err(-EINVAL, "%s: safe rebase needs the old backing file open",
				       img->path);
			goto out;
		}
		if (has_new) {
			ret = pcow_backing_open(img, backing_file, backing_format, &nb,
						&nraw, &nraw_size, &resolved);
			if (ret < 0)
				goto out;
		}
		ret = copy_differing(img, nb, nraw, nraw_size);
		if (ret < 0)
			goto out;
	}
	ret = pcow_meta_copy(&next, &img->m);
	if (ret < 0)
		goto out;
	free(next.backing);
	next.backing = has_new ? strdup(backing_file) : NULL;
	next.backing_format = has_new ? backing_format : PCOW_FORMAT_NONE;
	if (has_new && !next.backing) {
		pcow_meta_free(&next);
		ret = pcow_err(-ENOMEM, "out of memory");
		goto out;
	}
	ret = pcow_image_commit(img, &next);
	pcow_meta_free(&next);
	if (ret == 0 && !(flags & PCOW_REBASE_UNSAFE)) {
		/* Swap in the new chain; the old one is no longer needed. */
		pcow_backing_close(&img->backing, &img->raw_fd, &img->backing_path);
		img->backing = nb;
		img->raw_fd = nraw;
		img->raw_size = nraw_size;
		img->backing_path = resolved;
		nb = NULL;
		nraw = -1;
		resolved = NULL;
	} else if (ret == 0) {
		pcow_backing_close(&img->backing, &img->raw_fd, &img->backing_path);
	}
out:
	pcow_backing_close(&nb, &nraw, &resolved);
	pthread_mutex_unlock(&img->lock);
	return ret;
}
