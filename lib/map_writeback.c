/*
 * map_writeback.c -- kernel copy-on-write: finding the pages the kernel
 * copied for stores into private mappings, and writing them back.
 *
 * In a kernel copy-on-write map every block the active layer does not show
 * from its own region is mapped MAP_PRIVATE and writable: from the lower
 * file that holds it, or from the map's memfd for what would otherwise be
 * anonymous memory.  An unwritten page of such a mapping is a file page; a
 * written one is an anonymous page the kernel made at the store.  So the
 * anonymous pages of the range are exactly the stores not yet in the
 * image, and asking the kernel for them (PAGEMAP_SCAN since Linux 6.7, one
 * call per batch of runs; /proc/self/pagemap before) costs nothing per
 * unwritten page.  (PCOW_NO_PAGEMAP_SCAN in the environment takes the
 * older way, so that tests cover it on new kernels.)
 *
 * A block with copies is written back by pcow_map_own_at: write-protected,
 * copied into the active layer from the mapping (which shows the copies),
 * recorded, and mapped from the active region again.  A store racing with
 * that faults on the write-protected page and waits in the signal handler
 * for the image lock; when it gets it, the block is the active region's
 * and the store goes there.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include <linux/fs.h>

#include "error.h"
#include "layer.h"
#include "map.h"
#include "persist.h"

/* The PAGEMAP_SCAN interface (Linux 6.7), for older kernel headers. */
#ifndef PAGEMAP_SCAN
struct page_region {
	uint64_t start, end, categories;
};

struct pm_scan_arg {
	uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
	uint64_t category_inverted, category_mask, category_anyof_mask;
	uint64_t return_mask;
};

#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#define PAGE_IS_FILE (1 << 2)
#define PAGE_IS_PRESENT (1 << 3)
#define PAGE_IS_SWAPPED (1 << 4)
#define PAGE_IS_PFNZERO (1 << 5)
#endif

/* /proc/self/pagemap entry bits (Documentation/admin-guide/mm/pagemap). */
#define PM_PRESENT (1ull << 63)
#define PM_SWAPPED (1ull << 62)
#define PM_FILE (1ull << 61)

#define SCAN_BATCH 64
#define WRITEBACK_RUN_MAX (256ull << 10)
#define SCAN_BRIDGE (2ull << 20)

int pcow_map_kcow_init(struct pcow_map *map)
{
	struct pm_scan_arg arg = {.size = sizeof(arg)};
	uint64_t probe;

	map->memfd = memfd_create("pcow-map", MFD_CLOEXEC);
	if (map->memfd < 0)
		return pcow_err_sys(-errno, "memfd_create failed");
	if (ftruncate(map->memfd, (off_t)map->len) < 0)
		return pcow_err_sys(-errno, "cannot size the map's memfd");
	map->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (map->pagemap_fd < 0)
		return pcow_err_sys(-errno, "cannot open /proc/self/pagemap");
	/* An empty scan tells whether the ioctl exists. */
	arg.start = arg.end = (uintptr_t)map->base;
	map->pagemap_scan = ioctl(map->pagemap_fd, PAGEMAP_SCAN, &arg) >= 0 &&
			    !getenv("PCOW_NO_PAGEMAP_SCAN");
	if (!map->pagemap_scan &&
	    pread(map->pagemap_fd, &probe, sizeof(probe),
		  (off_t)((uintptr_t)map->base / (uint64_t)sysconf(_SC_PAGESIZE) * 8)) !=
		    sizeof(probe))
		return pcow_err_sys(-errno, "cannot read /proc/self/pagemap");
	map->kcow = true;
	return 0;
}

void pcow_map_kcow_fini(struct pcow_map *map)
{
	if (map->memfd >= 0)
		close(map->memfd);
	if (map->pagemap_fd >= 0)
		close(map->pagemap_fd);
	map->memfd = map->pagemap_fd = -1;
}

/* Writes back the blocks [off, off+len) of the map touches that still
 * show something other than the active region, run by run. */
static int settle(struct pcow_map *map, uint64_t off, uint64_t len)
{
	uint64_t bs = map->img->block_size, b, e, end = (off + len + bs - 1) / bs;
	int ret;

	if (end > map->img->nblocks)
		end = map->img->nblocks;
	for (b = off / bs; b < end; b = e) {
		for (; b < end && !pcow_map_bit_test(map->detached, b); b++)
			;
		for (e = b; e < end && pcow_map_bit_test(map->detached, e); e++)
			;
		if (e == b)
			break;
		/* A run is write-protected while it is copied: keep it short. */
		if ((e - b) * bs > WRITEBACK_RUN_MAX)
			e = b + (WRITEBACK_RUN_MAX > bs ? WRITEBACK_RUN_MAX / bs : 1);
		ret = pcow_map_own_range(map, b * bs, (e - b) * bs);
		if (ret < 0)
			return ret;
	}
	return 0;
}

/*
 * What a scan does with the anonymous pages of [off, off+len) it found:
 * write them back, or (count non-NULL) only count them.
 */
static int found(struct pcow_map *map, uint64_t off, uint64_t len,
		 uint64_t *count)
{
	if (!count)
		return settle(map, off, len);
	*count += len / (uint64_t)sysconf(_SC_PAGESIZE);
	return 0;
}

/* The anonymous pages of [off, off+len), asked with PAGEMAP_SCAN. */
static int scan_ioctl(struct pcow_map *map, uint64_t off, uint64_t len,
		      uint64_t *count)
{
	struct page_region vec[SCAN_BATCH];
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t pos = (uintptr_t)map->base + off / page * page;
	uint64_t end = (uintptr_t)map->base + off + len;
	int n, i, ret;

	while (pos < end) {
		struct pm_scan_arg arg = {
			.size = sizeof(arg),
			.start = pos,
			.end = end,
			.vec = (uintptr_t)vec,
			.vec_len = SCAN_BATCH,
			.category_inverted = PAGE_IS_FILE | PAGE_IS_PFNZERO,
			.category_mask = PAGE_IS_FILE | PAGE_IS_PFNZERO,
			.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
			.return_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
		};

		n = ioctl(map->pagemap_fd, PAGEMAP_SCAN, &arg);
		if (n < 0)
			return pcow_err_sys(-errno, "PAGEMAP_SCAN failed");
		/* Settling remaps what follows in a batch, never what the
		 * kernel has yet to walk: walk_end holds. */
		for (i = 0; i < n; i++) {
			ret = found(map, vec[i].start - (uintptr_t)map->base,
				    vec[i].end - vec[i].start, count);
			if (ret < 0)
				return ret;
		}
		if (arg.walk_end <= pos)
			break;
		pos = arg.walk_end;
	}
	return 0;
}

/* The same from /proc/self/pagemap, a batch of entries at a time. */
static int scan_pagemap(struct pcow_map *map, uint64_t off, uint64_t len,
			uint64_t *count)
{
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE), entries[512];
	uint64_t first = off / page, end = (off + len + page - 1) / page, p, i;
	uint64_t vpage = (uintptr_t)map->base / page;
	ssize_t got;
	int ret;

	for (p = first; p < end; p += sizeof(entries) / 8) {
		uint64_t n = end - p < 512 ? end - p : 512;

		got = pread(map->pagemap_fd, entries, n * 8, (off_t)((vpage + p) * 8));
		if (got != (ssize_t)(n * 8))
			return pcow_err_sys(got < 0 ? -errno : -EIO,
					    "cannot read /proc/self/pagemap");
		for (i = 0; i < n; i++) {
			if (!(entries[i] & (PM_PRESENT | PM_SWAPPED)) ||
			    (entries[i] & PM_FILE))
				continue;
			ret = found(map, (p + i) * page, page, count);
			if (ret < 0)
				return ret;
		}
	}
	return 0;
}

static int scan(struct pcow_map *map, uint64_t off, uint64_t len,
		uint64_t *count)
{
	return map->pagemap_scan ? scan_ioctl(map, off, len, count)
				 : scan_pagemap(map, off, len, count);
}

/*
 * Kernel copies exist only in private mappings, and every block a private
 * mapping shows is detached (map.h): only detached runs are scanned, so
 * the pages the map shows from the active region, however many the
 * page tables hold, cost nothing.  Runs less than SCAN_BRIDGE apart are
 * scanned as one (fewer calls, at most that many attached pages more).
 */
static int scan_detached(struct pcow_map *map, uint64_t off, uint64_t len,
			 uint64_t *count)
{
	uint64_t bs, b, e, last, from, to;
	int ret;

	if (!map || !map->kcow || len == 0 || off >= map->len)
		return 0;
	if (len > map->len - off)
		len = map->len - off;
	bs = map->img->block_size;
	last = (off + len + bs - 1) / bs;
	if (last > map->img->nblocks)
		last = map->img->nblocks;
	for (b = off / bs; b < last; b = e) {
		b = pcow_map_bit_next(map->detached, b, last, true);
		e = pcow_map_bit_next(map->detached, b, last, false);
		while (e < last) {
			uint64_t n = pcow_map_bit_next(map->detached, e, last, true);

			if (n >= last || (n - e) * bs >= SCAN_BRIDGE)
				break;
			e = pcow_map_bit_next(map->detached, n, last, false);
		}
		if (e == b)
			break;
		from = b * bs > off ? b * bs : off;
		to = e * bs < off + len ? e * bs : off + len;
		/* The last block of the image ends at the end of the map. */
		if (e == map->img->nblocks)
			to = off + len;
		ret = scan(map, from, to - from, count);
		if (ret < 0)
			return ret;
	}
	return 0;
}

int pcow_map_writeback(struct pcow_map *map, uint64_t off, uint64_t len)
{
	return scan_detached(map, off, len, NULL);
}

int pcow_map_count_copies(struct pcow_map *map, uint64_t *pages)
{
	*pages = 0;
	return scan_detached(map, 0, map->len, pages);
}

int pcow_map_differs(struct pcow_map *map, uint64_t off, uint64_t n)
{
	pcow_image *img = map->img;
	uint8_t buf[4096];
	uint64_t start = region_start(img, img->m.active), k;
	int ret;

	for (; n; off += k, n -= k) {
		k = n < sizeof(buf) ? n : sizeof(buf);
		/* Past the end of the file: zeros.  Through persist.c, which
		 * reads a striped image's pieces from their extent files. */
		ret = pcow_io_pread(img->fd, buf, k, start + off);
		if (ret < 0)
			return ret;
		if (memcmp(buf, map->base + off, k))
			return 1;
	}
	return 0;
}
