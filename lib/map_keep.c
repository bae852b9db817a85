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
 * The same holds for every block a layer below shows read-only: a later
 * snapshot, an apply or a delete changes the active layer, not where the
 * older blocks come from, and mapping them anew would again tear down
 * what the guest read of them.
 *
 * So before the rebuild, the ranges the map already shows from the image
 * file through a shared mapping (/proc/self/maps: writable where the
 * old active region was, read-only elsewhere), and that the new view
 * inherits from the same file offsets, are "kept" (map->keep): the
 * rebuild maps the new active region over everything else only, and
 * pcow_map_at turns a read-only mapping of a kept range into mprotect (a
 * no-op where it is read-only already).  Whatever else maps over a kept
 * range drops it from the list; a range still kept when the rebuild ends
 * was not mapped as the view wants, and the rebuild starts over the
 * usual way (pcow_map_rebuild).
 *
 * Not for kernel copy-on-write maps: they show inherited blocks from a
 * private mapping, which no change of protection turns a shared one into.
 * (PCOW_NO_KEEP set in the environment maps anew, so that tests and
 * benchmarks can compare both ways.)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "error.h"
#include "extent.h"
#include "layer.h"
#include "map.h"

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

static int keep_push(struct pcow_map *map, uint64_t off, uint64_t end,
		     uint64_t file)
{
	struct pcow_keep *last = map->keep_n ? &map->keep[map->keep_n - 1] : NULL;
	int ret;

	if (last && last->end == off && last->file + (off - last->off) == file) {
		last->end = end;
		return 0;
	}
	ret = keep_room(map);
	if (ret == 0)
		map->keep[map->keep_n++] = (struct pcow_keep){.off = off, .end = end,
							      .file = file};
	return ret;
}

/* A VMA of the map that shows the image file shared: [off, end) of the
 * map from file offset file on. */
struct shown {
	uint64_t off, end, file;
};

struct collect {
	struct pcow_map *map;
	struct shown *shown;
	size_t n_shown;
	uint64_t page;
};

/*
 * The VMAs of the map that show the image file through a shared mapping
 * (readable, writable or not), from /proc/self/maps: what a view's run
 * from the same file offsets need not map again.
 */
static int read_shown(struct collect *c)
{
	struct pcow_map *map = c->map;
	uintptr_t lo_map = (uintptr_t)map->base, hi_map = lo_map + map->len;
	unsigned long lo, hi, ino;
	unsigned long long pgoff;
	unsigned maj, mnr;
	size_t cap = 0;
	char perms[8], *line = NULL;
	size_t line_cap = 0;
	struct stat st;
	FILE *f;
	int ret = 0;

	if (fstat(map->img->fd, &st) < 0)
		return pcow_err_sys(-errno, "%s: fstat failed", map->img->path);
	f = fopen("/proc/self/maps", "re");
	if (!f)
		return pcow_err_sys(-errno, "cannot read /proc/self/maps");
	while (getline(&line, &line_cap, f) > 0) {
		struct shown *n;

		if (sscanf(line, "%lx-%lx %7s %llx %x:%x %lu", &lo, &hi, perms, &pgoff,
			   &maj, &mnr, &ino) != 7 ||
		    hi <= lo_map || lo >= hi_map || perms[0] != 'r' ||
		    perms[3] != 's' || ino != st.st_ino ||
		    makedev(maj, mnr) != st.st_dev)
			continue;
		if (c->n_shown == cap) {
			cap = cap ? 2 * cap : 64;
			n = realloc(c->shown, cap * sizeof(*n));
			if (!n) {
				ret = pcow_err(-ENOMEM, "out of memory");
				break;
			}
			c->shown = n;
		}
		if (lo < lo_map) {
			pgoff += lo_map - lo;
			lo = lo_map;
		}
		c->shown[c->n_shown++] = (struct shown){
			.off = lo - lo_map,
			.end = (hi < hi_map ? hi : hi_map) - lo_map,
			.file = pgoff,
		};
	}
	free(line);
	fclose(f);
	return ret;
}

/* The pages of a run of this image's file that a VMA already shows from
 * the same file offsets. */
static int collect_run(const struct pcow_run *r, void *opaque)
{
	struct collect *c = opaque;
	struct pcow_map *map = c->map;
	pcow_image *img = map->img;
	uint64_t start, end, from, to;
	size_t i;
	int ret;

	if (r->img != img || r->fd != img->fd || r->layer == img->m.active)
		return 0;
	start = (r->off + c->page - 1) / c->page * c->page;
	end = (r->off + r->len) / c->page * c->page;
	for (i = 0; i < c->n_shown && start < end; i++) {
		const struct shown *v = &c->shown[i];

		if (v->end <= start || v->off >= end ||
		    v->file - v->off != r->file - r->off)
			continue;
		from = v->off > start ? v->off : start;
		to = v->end < end ? v->end : end;
		ret = keep_push(map, from, to, r->file + (from - r->off));
		if (ret < 0)
			return ret;
	}
	return 0;
}

int pcow_map_keep_collect(struct pcow_map *map)
{
	pcow_image *img = map->img;
	struct collect c = {
		.map = map,
		.page = (uint64_t)sysconf(_SC_PAGESIZE),
	};
	int ret;

	map->keep_n = 0;
	ret = read_shown(&c);
	if (ret == 0 && c.n_shown)
		ret = pcow_view_runs(img, img->m.active, 0, img->m.virtual_size,
				     collect_run, &c);
	free(c.shown);
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
			k[1] = (struct pcow_keep){.off = end, .end = tail,
						  .file = k->file + (end - k->off)};
			return 0;
		}
		if (k->off < off) {
			k->end = off;
			i++;
		} else if (k->end > end) {
			k->file += end - k->off;
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
			const struct pcow_keep *k = &map->keep[i];

			/* Kept, and from the file offsets wanted. */
			kept = k->file - k->off == file_off - off;
			if (k->end < to)
				to = k->end;
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
