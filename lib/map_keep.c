/*
 * map_keep.c -- a snapshot write-protects the map's pages where it can,
 * instead of mapping them anew.
 *
 * When a snapshot is created on a mapped image, the layer the map showed
 * writable becomes the snapshot's, and the new active layer inherits its
 * blocks: the rebuilt map shows them read-only (fault mode) from the very
 * file offsets the map showed them writable from.  Mapping them again
 * would tear down the page tables of every page the guest ever touched (a
 * cost that grows with the data written, and that the guest pays again in
 * faults afterwards); mprotect(PROT_READ) of the same pages keeps them,
 * and costs less per page (docs/benchmarks.md, "Live snapshots").
 *
 * So before the rebuild, the ranges the map shows from the old active
 * region at the map's protection and that the new view takes from that
 * region at the same offsets are "kept" (map->keep): the rebuild maps the
 * new active region over everything else only, and pcow_map_at turns a
 * read-only mapping of a kept range into mprotect.  Whatever else maps
 * over a kept range drops it from the list; a range still kept when the
 * rebuild ends was not mapped as the view wants, and the rebuild starts
 * over the usual way (pcow_map_rebuild).
 *
 * Not for kernel copy-on-write maps: they show inherited blocks from a
 * private mapping, which no change of protection turns a shared one into.
 * (PCOW_NO_KEEP set in the environment maps anew, so that tests and
 * benchmarks can compare both ways.)
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "error.h"
#include "extent.h"
#include "layer.h"
#include "map.h"

struct collect {
	struct pcow_map *map;
	uint64_t old_start;     /* file offset of the region the map showed */
	uint64_t page;
};

/* Room for one more kept range. */
static int keep_room(struct pcow_map *map)
{
	size_t cap = map->keep_cap ? 2 * map->keep_cap : 16;
	struct pcow_keep *k;

	if (map->keep_n < map->keep_cap)
		return 0;
	k = realloc(map->keep, cap * sizeof(*k));
	if (!k)
		return pcow_err(-ENOMEM, "out of memory");
	map->keep = k;
	map->keep_cap = cap;
	return 0;
}

static int keep_push(struct pcow_map *map, uint64_t off, uint64_t end)
{
	int ret;

	if (map->keep_n && map->keep[map->keep_n - 1].end == off) {
		map->keep[map->keep_n - 1].end = end;
		return 0;
	}
	ret = keep_room(map);
	if (ret == 0)
		map->keep[map->keep_n++] = (struct pcow_keep){.off = off, .end = end};
	return ret;
}

/* The pages of a run from the old region, at its own offsets, in blocks
 * the map showed from that region (attached). */
static int collect_run(const struct pcow_run *r, void *opaque)
{
	struct collect *c = opaque;
	struct pcow_map *map = c->map;
	pcow_image *img = map->img;
	uint64_t bs = img->block_size, start, end, b, e, last;
	int ret;

	if (r->img != img || r->fd != img->fd || r->layer == img->m.active ||
	    r->file != c->old_start + r->off)
		return 0;
	start = (r->off + c->page - 1) / c->page * c->page;
	end = (r->off + r->len) / c->page * c->page;
	if (start >= end)
		return 0;
	last = (end + bs - 1) / bs;
	for (b = start / bs; b < last; b = e) {
		b = pcow_map_bit_next(map->detached, b, last, false);
		e = pcow_map_bit_next(map->detached, b, last, true);
		if (e == b)
			break;
		ret = keep_push(map, b * bs > start ? b * bs : start,
				e * bs < end ? e * bs : end);
		if (ret < 0)
			return ret;
	}
	return 0;
}

int pcow_map_keep_collect(struct pcow_map *map, uint64_t old_start)
{
	pcow_image *img = map->img;
	struct collect c = {
		.map = map,
		.old_start = old_start,
		.page = (uint64_t)sysconf(_SC_PAGESIZE),
	};
	int ret;

	map->keep_n = 0;
	ret = pcow_view_runs(img, img->m.active, 0, img->m.virtual_size,
			     collect_run, &c);
	if (ret < 0)
		map->keep_n = 0;
	return ret;
}

int pcow_map_keep_gaps(struct pcow_map *map, int prot, int fd,
		       uint64_t file_start)
{
	uint64_t pos = 0;
	size_t i;
	int ret;

	for (i = 0; i <= map->keep_n; i++) {
		uint64_t end = i < map->keep_n ? map->keep[i].off : map->len;

		if (end > pos) {
			ret = pcow_map_at(map, pos, end - pos, prot, fd, file_start + pos);
			if (ret < 0)
				return ret;
		}
		if (i < map->keep_n)
			pos = map->keep[i].end;
	}
	return 0;
}

/* Removes [off, end) from the kept ranges. */
static int keep_drop(struct pcow_map *map, uint64_t off, uint64_t end)
{
	size_t i = 0;

	while (i < map->keep_n) {
		struct pcow_keep *k = &map->keep[i];

		if (k->end <= off || k->off >= end) {
			i++;
			continue;
		}
		if (k->off < off && k->end > end) {
			/* A hole in the middle: split it in two. */
			uint64_t tail = k->end;
			int ret = keep_room(map);

			if (ret < 0)
				return ret;
			k = &map->keep[i];
			memmove(k + 2, k + 1, (map->keep_n - i - 1) * sizeof(*k));
			map->keep_n++;
			k->end = off;
			k[1] = (struct pcow_keep){.off = end, .end = tail};
			return 0;
		}
		if (k->off < off) {
			k->end = off;
			i++;
		} else if (k->end > end) {
			k->off = end;
			i++;
		} else {
			memmove(k, k + 1, (map->keep_n - i - 1) * sizeof(*k));
			map->keep_n--;
		}
	}
	return 0;
}

int pcow_map_keep_replace(struct pcow_map *map, uint64_t off, uint64_t len)
{
	return map->keep_n ? keep_drop(map, off, off + len) : 0;
}

int pcow_map_keep_reuse(struct pcow_map *map, uint64_t off, uint64_t len,
			int prot, int flags, int fd, uint64_t file_off)
{
	uint64_t pos = off, end = off + len;
	size_t i = 0;
	void *p;

	while (pos < end) {
		uint64_t to = end;
		bool kept = false;

		for (; i < map->keep_n && map->keep[i].end <= pos; i++)
			;
		if (i < map->keep_n && map->keep[i].off <= pos) {
			kept = true;
			if (map->keep[i].end < to)
				to = map->keep[i].end;
		} else if (i < map->keep_n && map->keep[i].off < to) {
			to = map->keep[i].off;
		}
		if (kept) {
			if (mprotect(map->base + pos, to - pos, prot) < 0)
				return pcow_err_sys(-errno, "%s: mprotect failed",
						    map->img->path);
		} else {
			p = mmap(map->base + pos, to - pos, prot, flags, fd,
				 (off_t)(file_off + (pos - off)));
			if (p == MAP_FAILED)
				return pcow_err_sys(-errno, "%s: mmap failed",
						    map->img->path);
		}
		pos = to;
	}
	return keep_drop(map, off, end);
}

void pcow_map_keep_free(struct pcow_map *map)
{
	free(map->keep);
	map->keep = NULL;
	map->keep_n = map->keep_cap = 0;
}
