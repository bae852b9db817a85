/*
 * snapshot.c -- internal snapshots.
 *
 * A snapshot freezes the active layer; a new, empty active layer inherits
 * from it.  Snapshots form a tree of layers: applying a snapshot starts a
 * new active layer on top of the snapshot's layer and leaves every other
 * snapshot alone.  Deleting a snapshot copies the blocks its children still
 * inherit from it into them, then frees its region.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "image.h"
#include "layer.h"
#include "map.h"
#include "persist.h"
#include "snapshot.h"

int pcow_snapshot_find(const struct pcow_meta *m, const char *name)
{
	uint32_t i;
	char *end;
	unsigned long id;

	for (i = 0; i < m->snapshot_count; i++)
		if (!strcmp(m->snapshots[i].name, name))
			return (int)i;
	id = strtoul(name, &end, 10);
	if (*name && !*end)
		for (i = 0; i < m->snapshot_count; i++)
			if (m->snapshots[i].id == id)
				return (int)i;
	return -1;
}

int pcow_take_region(pcow_image *img, const struct pcow_meta *m,
		     uint32_t *region)
{
	uint32_t r = 0;
	int ret;

	while (pcow_meta_region_used(m, r))
		r++;
	if (r >= PCOW_MAX_REGIONS)
		return pcow_err(-ENOSPC, "%s: too many layers", img->path);
	/* Nothing stores into a region no layer uses: one made ready while
	 * the metadata was what it still is, is ready still.  It is ready
	 * once: a layer that takes it may store into it, and may fail to
	 * punch it when it is freed again. */
	if (img->region_ready && img->ready_region == r &&
	    img->ready_generation == img->m.generation) {
		img->region_ready = false;
		*region = r;
		return 0;
	}
	ret = pcow_io_punch(img->fd, pcow_image_region(img, r),
			    img->stride);
	if (ret == -EFBIG)
		return pcow_err(ret, "%s: no room for another layer (the file system's largest file is reached)%s",
				img->path, m->snapshot_count ? "; delete a snapshot first" : "");
	if (ret == 0)
		ret = pcow_io_sync(img->fd);
	*region = r;
	return ret;
}

/* next := the current metadata plus a new, empty active layer on parent. */
static int with_new_active(pcow_image *img, struct pcow_meta *next,
			   uint32_t parent)
{
	uint32_t region = 0;
	int ret = pcow_meta_copy(next, &img->m);

	if (ret < 0)
		return ret;
	ret = pcow_take_region(img, next, &region);
	if (ret < 0) {
		pcow_meta_free(next);
		return ret;
	}
	next->layers[next->layer_count].region = region;
	next->layers[next->layer_count].parent = parent;
	/* A live map stores into the new layer behind the library's back,
	 * as into the one before (docs/format.md, "Recorded ownership"). */
	next->layers[next->layer_count].flags =
		img->map && !img->map->rdonly ? PCOW_LAYER_UNRECORDED : 0;
	next->active = next->layer_count++;
	return 0;
}

void pcow_meta_remove_layer(struct pcow_meta *m, uint32_t idx)
{
	uint32_t i;

	memmove(&m->layers[idx], &m->layers[idx + 1],
		(m->layer_count - idx - 1) * sizeof(*m->layers));
	m->layer_count--;
	for (i = 0; i < m->layer_count; i++)
		if (m->layers[i].parent != PCOW_NO_PARENT && m->layers[i].parent > idx)
			m->layers[i].parent--;
	for (i = 0; i < m->snapshot_count; i++)
		if (m->snapshots[i].layer > idx)
			m->snapshots[i].layer--;
	if (m->active > idx)
		m->active--;
}

static void remove_snapshot(struct pcow_meta *m, uint32_t idx)
{
	free(m->snapshots[idx].name);
	memmove(&m->snapshots[idx], &m->snapshots[idx + 1],
		(m->snapshot_count - idx - 1) * sizeof(*m->snapshots));
	m->snapshot_count--;
}

/*
 * A live map's stores are the active layer's content: the kernel's copies
 * go into the image before the layers change (img->lock held).
 */
static int before_layers_change(pcow_image *img)
{
	return img->map ? pcow_map_writeback(img->map, 0, img->map->len) : 0;
}

/* ...and the map shows the layers as they are now, whether the change
 * was made or not. */
static int after_layers_change(pcow_image *img, int ret)
{
	int r = img->map ? pcow_map_rebuild(img->map) : 0;

	return ret < 0 ? ret : r;
}

int pcow_snapshot_list(pcow_image *img, struct pcow_snapshot_info **list,
		       size_t *count)
{
	struct pcow_snapshot_info *out;
	uint32_t i;
	int ret = 0;

	pthread_mutex_lock(&img->lock);
	out = calloc(img->m.snapshot_count + 1, sizeof(*out));
	if (!out) {
		pthread_mutex_unlock(&img->lock);
		return pcow_err(-ENOMEM, "out of memory");
	}
	for (i = 0; i < img->m.snapshot_count && ret == 0; i++) {
		const struct pcow_snapshot *s = &img->m.snapshots[i];
		uint64_t blocks = 0;

		out[i].id = s->id;
		snprintf(out[i].name, sizeof(out[i].name), "%s", s->name);
		out[i].date_sec = s->date_sec;
		out[i].date_nsec = s->date_nsec;
		ret = pcow_layer_count_blocks(img, s->layer, &blocks);
		out[i].allocated_size = blocks * img->block_size;
	}
	pthread_mutex_unlock(&img->lock);
	if (ret < 0) {
		free(out);
		return ret;
	}
	*list = out;
	*count = img->m.snapshot_count;
	return 0;
}

int pcow_snapshot_prepare(pcow_image *img)
{
	uint32_t region;
	int ret = pcow_require_writable(img);

	if (ret < 0)
		return ret;
	pthread_mutex_lock(&img->lock);
	ret = pcow_take_region(img, &img->m, &region);
	if (ret == 0) {
		img->region_ready = true;
		img->ready_region = region;
		img->ready_generation = img->m.generation;
	}
	pthread_mutex_unlock(&img->lock);
	return ret;
}

int pcow_snapshot_create(pcow_image *img, const char *name)
{
	return pcow_snapshot_create_flags(img, name, 0);
}

int pcow_snapshot_create_flags(pcow_image *img, const char *name,
			       unsigned flags)
{
	struct pcow_meta next;
	struct timespec now;
	struct pcow_snapshot *s;
	size_t len = strlen(name);
	int ret = pcow_require_writable(img);

	if (ret < 0)
		return ret;
	if (flags & ~PCOW_SNAPSHOT_SYNC_LATER)
		return pcow_err(-EINVAL, "unknown snapshot flags 0x%x", flags);
	if (len == 0 || len > PCOW_SNAPSHOT_NAME_MAX)
		return pcow_err(-EINVAL, "snapshot name must be 1 to %d bytes",
				PCOW_SNAPSHOT_NAME_MAX);
	pthread_mutex_lock(&img->lock);
	if (pcow_snapshot_find(&img->m, name) >= 0) {
		ret = pcow_err(-EEXIST, "%s: snapshot '%s' already exists", img->path,
			       name);
		goto out;
	}
	if (img->m.snapshot_count >= PCOW_MAX_SNAPSHOTS) {
		ret = pcow_err(-ENOSPC, "%s: too many snapshots", img->path);
		goto out;
	}
	ret = before_layers_change(img);
	if (ret == 0)
		ret = with_new_active(img, &next, img->m.active);
	if (ret < 0)
		goto out;
	clock_gettime(CLOCK_REALTIME, &now);
	s = &next.snapshots[next.snapshot_count];
	s->name = strdup(name);
	if (!s->name) {
		pcow_meta_free(&next);
		ret = pcow_err(-ENOMEM, "out of memory");
		goto out;
	}
	next.snapshot_count++;
	s->id = next.next_snapshot_id++;
	s->layer = img->m.active;
	s->date_sec = now.tv_sec;
	s->date_nsec = (uint32_t)now.tv_nsec;
	ret = after_layers_change(img, flags & PCOW_SNAPSHOT_SYNC_LATER ?
				  pcow_meta_commit_unsynced(img, &next) :
				  pcow_meta_commit(img, &next));
	pcow_meta_free(&next);
out:
	pthread_mutex_unlock(&img->lock);
	return ret;
}

/* Frees a region after the metadata that used it has been committed away. */
static int release_region(pcow_image *img, uint32_t region)
{
	int ret = pcow_io_punch(img->fd, pcow_image_region(img, region),
				img->stride);

	return ret == 0 ? pcow_io_sync(img->fd) : ret;
}

int pcow_snapshot_apply(pcow_image *img, const char *name)
{
	struct pcow_meta next;
	uint32_t old_region, old_active;
	int idx, ret = pcow_require_writable(img);

	if (ret < 0)
		return ret;
	pthread_mutex_lock(&img->lock);
	idx = pcow_snapshot_find(&img->m, name);
	if (idx < 0) {
		ret = pcow_err(-ENOENT, "%s: snapshot '%s' not found", img->path, name);
		goto out;
	}
	old_active = img->m.active;
	old_region = img->m.layers[old_active].region;
	ret = with_new_active(img, &next, img->m.snapshots[idx].layer);
	if (ret < 0)
		goto out;
	/* The old active layer is a leaf nobody else refers to. */
	pcow_meta_remove_layer(&next, old_active);
	ret = after_layers_change(img, pcow_meta_commit(img, &next));
	pcow_meta_free(&next);
	if (ret == 0)
		ret = release_region(img, old_region);
out:
	pthread_mutex_unlock(&img->lock);
	return ret;
}

/* Copies into child every block it still inherits from layer. */
static int push_down_blocks(pcow_image *img, uint32_t layer, uint32_t child)
{
	uint64_t b, group = 64 * img->block_size;
	uint32_t owner;
	int ret;

	for (b = 0; b < img->nblocks; b++) {
		if (b % 64 == 0) {
			/* Skip 64 blocks at a time where layer has neither data
			 * nor copy bits (bit-only blocks are discarded ones). */
			uint64_t word;

			ret = pcow_bitmap_word(img, img->m.layers[layer].region, b / 64, &word);
			if (ret < 0)
				return ret;
			ret = pcow_file_has_data(img->fd, region_start(img, layer) +
								  b * img->block_size, group);
			if (ret < 0)
				return ret;
			if (!ret && !word) {
				b += 63;
				continue;
			}
		}
		ret = pcow_block_owner(img, child, b, &owner);
		if (ret < 0)
			return ret;
		if (ret && owner == layer) {
			ret = pcow_copy_up(img, child, b);
			if (ret < 0)
				return ret;
		}
	}
	return 0;
}

int pcow_snapshot_delete(pcow_image *img, const char *name)
{
	struct pcow_meta next;
	uint32_t layer, region, i;
	int idx, ret = pcow_require_writable(img);

	if (ret < 0)
		return ret;
	pthread_mutex_lock(&img->lock);
	idx = pcow_snapshot_find(&img->m, name);
	if (idx < 0) {
		ret = pcow_err(-ENOENT, "%s: snapshot '%s' not found", img->path, name);
		goto out;
	}
	layer = img->m.snapshots[idx].layer;
	region = img->m.layers[layer].region;
	ret = before_layers_change(img);
	for (i = 0; i < img->m.layer_count && ret == 0; i++)
		if (img->m.layers[i].parent == layer)
			ret = push_down_blocks(img, layer, i);
	if (ret < 0)
		goto out;
	ret = pcow_meta_copy(&next, &img->m);
	if (ret < 0)
		goto out;
	remove_snapshot(&next, (uint32_t)idx);
	for (i = 0; i < next.layer_count; i++)
		if (next.layers[i].parent == layer)
			next.layers[i].parent = next.layers[layer].parent;
	pcow_meta_remove_layer(&next, layer);
	ret = after_layers_change(img, pcow_meta_commit(img, &next));
	pcow_meta_free(&next);
	if (ret == 0)
		ret = release_region(img, region);
out:
	pthread_mutex_unlock(&img->lock);
	return ret;
}
