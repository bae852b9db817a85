/*
 * rebase.c -- changing the backing file.
 *
 * Safe rebase first makes every layer's view independent of the change
 * (keep_views), then commits the new name; unsafe rebase keeps only the
 * image's own blocks its own.  A crash in between leaves
 * extra copies and bits that read the same under the old backing file.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

/* Gives every block a flagged layer owns by data alone its bit (format.md
 * 4.1): a layer without the flag has its bits already. */
static int record_flagged(pcow_image *img)
{
	uint64_t recorded = 0;
	int ret = pcow_io_sync(img->fd);

	return ret < 0 ? ret : pcow_layers_record(img, &recorded);
}

/* The same for an unsafe rebase, which may lack the old backing file. */
static int record_layers(pcow_image *img)
{
	int ret = 0;

	if (pcow_meta_unrecorded(&img->m) && img->m.backing && !img->backing &&
	    img->raw_fd < 0)
		return pcow_err(-EINVAL, "%s: some blocks are owned only where the old backing file has no data, and it is not open: open the image read-write with its backing file once (e.g. pcow-img check -r all), then rebase",
				img->path);
	if (pcow_meta_unrecorded(&img->m))
		ret = record_flagged(img);
	if (ret == 0)
		pcow_progress(img, 1, 1);
	return ret;
}

/*
 * Keeps every layer's view when the backing file changes: blocks a layer
 * owns only because nothing lay below get their copy bit (the new backing
 * file may have data there; in a clean image they have it already), and
 * blocks root layers inherit from the old backing file are copied in where
 * the new one differs.
 */
static int keep_views(pcow_image *img, pcow_image *nb, int nraw,
		      uint64_t nraw_size)
{
	uint64_t bs = img->block_size, b, done = 0, reported = 0, total;
	uint8_t *old = malloc(bs), *new = malloc(bs);
	uint32_t l, owner, roots = 0;
	int ret = 0, has;

	if (!old || !new) {
		ret = pcow_err(-ENOMEM, "out of memory");
		goto out;
	}
	for (l = 0; l < img->m.layer_count; l++)
		roots += img->m.layers[l].parent == PCOW_NO_PARENT;
	/* Progress counts the roots' blocks visited. */
	total = roots * img->nblocks;
	/* First every ownership that rests on "nothing below" becomes a bit;
	 * only then may root layers gain bits (which would change the rest). */
	ret = record_flagged(img);
	for (l = 0; l < img->m.layer_count && ret == 0; l++) {
		if (img->m.layers[l].parent != PCOW_NO_PARENT)
			continue;
		for (b = 0; b < img->nblocks && ret == 0; b++) {
			uint64_t off = b * bs, n = bs;

			if (n > img->m.virtual_size - off)
				n = img->m.virtual_size - off;
			has = pcow_block_owner(img, l, b, &owner);
			if (has < 0) {
				ret = has;
			} else if (!has) {
				ret = pcow_chain_read(img, PCOW_NO_PARENT, old, n, off);
				if (ret == 0)
					ret = candidate_read(nb, nraw, nraw_size, new, n, off);
				if (ret == 0 && memcmp(old, new, n))
					ret = pcow_copy_up(img, l, b);
			}
			/* At most one report per percent. */
			if (++done * 100 / total != reported * 100 / total) {
				reported = done;
				pcow_progress(img, done, total);
			}
		}
	}
	if (ret >= 0)
		ret = pcow_io_sync(img->fd);
	if (ret >= 0 && reported != total)
		pcow_progress(img, total, total);
out:
	free(old);
	free(new);
	return ret < 0 ? ret : 0;
}

/*
 * The new backing file must neither be the image nor have a chain that
 * comes back to it or to itself (every later open would fail on the loop).
 * The chain is followed one image at a time, without opening backing files
 * or taking locks (only the names matter).  An unsafe rebase opens nothing
 * else, so this is its only check: a new backing file that does not exist
 * (yet) is allowed, as is a chain that cannot be followed past some point
 * (a loop cannot run through a file that is not there) or is deeper than
 * can be opened (that open fails on its own, clearly).
 */
static int refuse_loop(pcow_image *img, const char *name, enum pcow_format fmt)
{
	dev_t dev[PCOW_MAX_CHAIN_DEPTH + 2];
	ino_t ino[PCOW_MAX_CHAIN_DEPTH + 2];
	char *full = pcow_resolve_path(img->dir, name), *next;
	pcow_image *b = NULL;
	struct stat st;
	int n = 1, i, ret = 0;

	if (!full)
		return pcow_err(-ENOMEM, "out of memory");
	if (fstat(img->fd, &st) < 0) {
		ret = pcow_err_sys(-errno, "%s: stat failed", img->path);
		goto out;
	}
	dev[0] = st.st_dev;
	ino[0] = st.st_ino;
	while (n < PCOW_MAX_CHAIN_DEPTH + 2 && stat(full, &st) == 0) {
		for (i = 0; i < n; i++)
			if (dev[i] == st.st_dev && ino[i] == st.st_ino)
				break;
		if (i < n) {
			ret = i == 0 && n == 1
			      ? pcow_err(-ELOOP, "%s: backing file loop: '%s' is the image itself",
					 img->path, full)
			      : pcow_err(-ELOOP, "%s: backing file loop: the backing chain of '%s' comes back to '%s'",
					 img->path, name, full);
			goto out;
		}
		dev[n] = st.st_dev;
		ino[n++] = st.st_ino;
		if (fmt != PCOW_FORMAT_PCOW ||
		    pcow_open(&b, full, PCOW_OPEN_FORCE_SHARE | PCOW_OPEN_NO_BACKING) < 0 ||
		    !b->m.backing)
			break;
		next = pcow_resolve_path(b->dir, b->m.backing);
		fmt = b->m.backing_format;
		pcow_close(&b);
		if (!next) {
			ret = pcow_err(-ENOMEM, "out of memory");
			goto out;
		}
		free(full);
		full = next;
	}
out:
	pcow_close(&b);
	free(full);
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
	/* Before anything changes (an unsafe rebase changes copy bits). */
	ret = has_new ? refuse_loop(img, backing_file, backing_format) : 0;
	if (ret < 0)
		goto out;
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
		ret = keep_views(img, nb, nraw, nraw_size);
	} else {
		/* Unsafe: nothing is copied, but the image's own data stays its
		 * own whatever the new backing file holds.  Blocks recorded by
		 * their bit are that already; a block owned by its data alone
		 * is owned only where the old backing file has nothing, which
		 * cannot be told without it. */
		ret = record_layers(img);
	}
	if (ret < 0)
		goto out;
	ret = pcow_meta_copy(&next, &img->m);
	if (ret < 0)
		goto out;
	for (uint32_t l = 0; l < next.layer_count; l++)
		next.layers[l].flags &= ~PCOW_LAYER_UNRECORDED;
	free(next.backing);
	next.backing = has_new ? strdup(backing_file) : NULL;
	next.backing_format = has_new ? backing_format : PCOW_FORMAT_NONE;
	if (has_new && !next.backing) {
		pcow_meta_free(&next);
		ret = pcow_err(-ENOMEM, "out of memory");
		goto out;
	}
	ret = pcow_meta_commit(img, &next);
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
