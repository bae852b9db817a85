/*
 * handover.c -- handing an image over from one process to another, as a
 * live migration over shared storage does: the source makes the image
 * clean and durable and lets go of its write lock; the destination, which
 * opened it inactive (no lock, no changes), takes the lock and reads the
 * metadata again.  At no moment can both write: the lock is the token,
 * and an inactive image refuses every change.  A migration that fails
 * hands the image back the same way.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "image.h"
#include "map.h"
#include "pending.h"

int pcow_inactivate(pcow_image *img)
{
	struct pcow_map *map;
	int ret;

	if (img->inactive)
		return 0;
	ret = pcow_require_writable(img);
	if (ret < 0)
		return ret;
	/* No persist thread may write once the lock is gone. */
	(void)pcow_pending_set_interval(img, 0);
	pthread_mutex_lock(&img->lock);
	map = img->map;
	ret = pcow_map_writeback(map, 0, map ? map->len : 0);
	/* Clean on disk: the next owner finds every block recorded. */
	if (ret == 0)
		ret = pcow_image_record(img);
	if (ret == 0)
		ret = pcow_image_datasync(img);
	/* The slot saved when the session went dirty is no use to the next. */
	free(img->clean_slot);
	img->clean_slot = NULL;
	if (ret == 0 && map && !map->rdonly) {
		map->rdonly = true;
		map->kcow = false;
		ret = pcow_map_rebuild(map);
	}
	if (ret == 0)
		ret = pcow_image_unlock(img);
	if (ret == 0) {
		img->rdonly = true;
		img->inactive = true;
	}
	pthread_mutex_unlock(&img->lock);
	return ret;
}

/* A map made writable again, as pcow_map_new makes one (map.c). */
static int map_activate(struct pcow_map *map)
{
	pcow_image *img = map->img;
	int ret;

	if (map->wanted_flags & PCOW_MAP_RDONLY)
		return pcow_map_rebuild(map);
	map->rdonly = false;
	ret = pcow_pending_persist(img);
	if (ret == 0)
		ret = pcow_image_mark_dirty(img);
	if (ret == 0 && (map->wanted_flags & PCOW_MAP_KERNEL_COW) &&
	    !pcow_map_is_sync(map)) {
		if (map->memfd >= 0)
			map->kcow = true;
		else
			ret = pcow_map_kcow_init(map);
	}
	if (ret == 0)
		ret = pcow_map_rebuild(map);
	return ret;
}

int pcow_activate(pcow_image *img)
{
	int ret;

	if (!img->inactive)
		return 0;
	pthread_mutex_lock(&img->lock);
	ret = pcow_image_lock(img);
	if (ret < 0) {
		pthread_mutex_unlock(&img->lock);
		return ret;
	}
	/* The previous owner may have changed anything but the geometry. */
	free(img->clean_slot);
	img->clean_slot = NULL;
	ret = pcow_image_reload(img);
	if (ret == 0) {
		pcow_pending_release(img);
		img->rdonly = false;
		img->inactive = false;
		/* Bits a dead previous owner left are applied, as at open. */
		ret = pcow_pending_recover(img);
	}
	if (ret == 0 && img->map)
		ret = map_activate(img->map);
	if (ret < 0) {
		img->rdonly = true;
		img->inactive = true;
		(void)pcow_image_unlock(img);
	}
	pthread_mutex_unlock(&img->lock);
	if (ret == 0 && img->map && !img->map->rdonly && !pcow_map_is_sync(img->map))
		ret = pcow_map_set_persist_interval(img->map, img->map->persist_interval);
	return ret;
}
