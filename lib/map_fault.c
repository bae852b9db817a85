/*
 * map_fault.c -- what a store into a read-only block of a map does: the
 * block is copied up into the active layer and the active region mapped
 * there, in runs or groups sized to keep the VMA count within budget; and
 * what a change through the byte API does to a live map.  Runs in the
 * fault handler (fault.c): no allocation, only the image lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "error.h"
#include "extent.h"
#include "layer.h"
#include "pending.h"
#include "map.h"
#include "persist.h"

int pcow_map_block_owned(struct pcow_map *map, uint64_t block)
{
	pcow_image *img = map->img;
	uint64_t start = block * img->block_size, n = img->block_size;

	pcow_map_inherit_set(map, block, block + 1, false);
	if (!pcow_map_bit_test(map->detached, block))
		return 0;
	if (n > map->len - start)
		n = map->len - start;
	map->vma_estimate += 2;
	return pcow_map_at(map, start, n,
		      map->rdonly ? PROT_READ : PROT_READ | PROT_WRITE, img->fd,
		      region_start(img, img->m.active) + start);
}

/*
 * Counts the VMAs inside the map by reading /proc/self/maps with plain
 * system calls: this also runs inside the fault handler.
 */
uint64_t pcow_map_count_vmas(const struct pcow_map *map)
{
	uintptr_t lo_map = (uintptr_t)map->base, hi_map = lo_map + map->len;
	char buf[4096];
	uint64_t n = 0;
	uintptr_t v[2] = {0, 0};
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC), field = 0;
	bool at_line_start = true;
	ssize_t got, i;

	if (fd < 0)
		return 0;
	/* Each line starts "lo-hi "; parse just those two hex numbers. */
	while ((got = read(fd, buf, sizeof(buf))) > 0) {
		for (i = 0; i < got; i++) {
			char c = buf[i];

			if (c == '\n') {
				at_line_start = true;
				field = 0;
				v[0] = v[1] = 0;
				continue;
			}
			if (!at_line_start)
				continue;
			if (c == '-') {
				field = 1;
			} else if (c == ' ') {
				if (v[0] < hi_map && v[1] > lo_map)
					n++;
				at_line_start = false;
			} else {
				int d = c <= '9' ? c - '0' : c - 'a' + 10;

				v[field] = v[field] * 16 + (uintptr_t)d;
			}
		}
	}
	close(fd);
	return n;
}

/*
 * Kernel copy-on-write: the pages of blocks in [first, end) that are not
 * inherited but shown from elsewhere (bridged gaps, compacted stretches)
 * and were stored to: written into the active region, page by page where
 * they differ from it, so that unwritten ones stay holes.
 */
static int keep_stores(struct pcow_map *map, uint64_t first, uint64_t end)
{
	pcow_image *img = map->img;
	uint64_t bs = img->block_size, page = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t region = region_start(img, img->m.active), b, off, stop;
	int ret;

	for (b = first; b < end; b++) {
		if (pcow_map_bit_test(map->inherited, b) ||
		    !pcow_map_bit_test(map->detached, b))
			continue;
		stop = (b + 1) * bs < map->len ? (b + 1) * bs : map->len;
		for (off = b * bs; off < stop; off += page) {
			ret = pcow_map_differs(map, off, page);
			if (ret > 0)
				ret = pcow_io_pwrite(img->fd, map->base + off, page,
						     region + off);
			if (ret < 0)
				return ret;
		}
	}
	return 0;
}

/*
 * Copies up every inherited block of [first, first+n), from the read-only
 * mapping that shows it, and maps the range writable.  Blocks not in the
 * index are the active layer's already, or nothing below holds them: they
 * need no copy and no bit, their zeros are the active layer's.  In a
 * kernel copy-on-write map the range is write-protected first: the copy
 * must hold every store made before the remap, and stores made while it
 * runs wait for the image lock in the fault handler.
 */
static int own_range(struct pcow_map *map, uint64_t first, uint64_t n)
{
	pcow_image *img = map->img;
	uint32_t active = img->m.active;
	uint64_t bs = img->block_size, start = first * bs, len = n * bs;
	uint64_t end = first + n < img->nblocks ? first + n : img->nblocks, b, e;
	int ret = 0;

	if (len > map->len - start)
		len = map->len - start;
	if (map->kcow) {
		if (mprotect(map->base + start, len, PROT_READ) < 0)
			return pcow_err_sys(-errno, "%s: mprotect failed", img->path);
		ret = keep_stores(map, first, end);
	}
	for (b = first; b < end && ret == 0; b = e) {
		for (; b < end && !pcow_map_bit_test(map->inherited, b); b++)
			;
		for (e = b; e < end && pcow_map_bit_test(map->inherited, e); e++)
			;
		if (e == b)
			break;
		ret = pcow_copy_up_run(img, active, b, e - b, map->base + b * bs);
		if (ret < 0)
			break;
		pcow_map_inherit_set(map, b, e, false);
		atomic_fetch_add(&map->copied, e - b);
	}
	/* A write-back that failed (out of space): the copies stay where
	 * they are, writable, for the next one to try again. */
	if (ret < 0) {
		if (map->kcow)
			(void)mprotect(map->base + start, len, PROT_READ | PROT_WRITE);
		return ret;
	}
	ret = pcow_map_at(map, start, len, PROT_READ | PROT_WRITE, img->fd,
			  region_start(img, active) + start);
	/* The memfd pages the range showed are nobody's now. */
	if (ret == 0 && map->memfd_used)
		(void)fallocate(map->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				(off_t)start, (off_t)len);
	return ret;
}

/* The range [*start, *start + *len) a fault at off copies up. */
static void copy_window(struct pcow_map *map, uint64_t off, uint64_t *start,
			uint64_t *len)
{
	uint64_t unit = map->copy_size, at = off / unit * unit, n = unit;

	if (map->ahead_max > unit && at == map->ahead_next) {
		n = map->ahead_len * 2;
		if (n > map->ahead_max)
			n = map->ahead_max;
	}
	map->ahead_next = at + n;
	map->ahead_len = n;
	*start = at;
	*len = n;
}

int pcow_map_own_at(struct pcow_map *map, uint64_t off, bool ahead)
{
	uint64_t bs = map->img->block_size, start, len;

	if (!map->grouped && map->vma_estimate + 2 > map->vma_budget) {
		/* The estimate only grows; recount before deciding. */
		map->vma_estimate = pcow_map_count_vmas(map);
		map->grouped = map->vma_estimate + 2 > map->vma_budget;
	}
	if (map->grouped) {
		start = off / map->group_size * map->group_size;
		len = map->group_size;
	} else {
		if (ahead) {
			copy_window(map, off, &start, &len);
		} else {
			start = off / map->copy_size * map->copy_size;
			len = map->copy_size;
		}
		map->vma_estimate += 2;
	}
	return own_range(map, start / bs, len / bs);
}

int pcow_map_own_range(struct pcow_map *map, uint64_t off, uint64_t len)
{
	uint64_t bs = map->img->block_size, unit = map->copy_size, start, end;

	if (map->grouped || map->vma_estimate + 2 > map->vma_budget) {
		/* Group by group, as faults do past the budget. */
		for (start = off; start < off + len; start = end) {
			int ret = pcow_map_own_at(map, start, false);

			if (ret < 0)
				return ret;
			end = (start / map->group_size + 1) * map->group_size;
			if (!map->grouped)
				end = (start / unit + 1) * unit;
		}
		return 0;
	}
	/* One run: one write-protect, one copy, one remap for all of it. */
	start = off / unit * unit;
	end = (off + len + unit - 1) / unit * unit;
	if (end > map->len)
		end = (map->len + bs - 1) / bs * bs;
	map->vma_estimate += 2;
	return own_range(map, start / bs, (end - start) / bs);
}

int pcow_map_handle_write(struct pcow_map *map, void *addr)
{
	pcow_image *img = map->img;
	uint64_t off = (uint64_t)((uint8_t *)addr - map->base);
	int ret = 0;

	pthread_mutex_lock(&img->lock);
	/* Kernel copy-on-write: the store hit a block being written back,
	 * which is the active region's now; it goes there when retried. */
	if (!map->kcow || pcow_map_bit_test(map->detached, off / img->block_size))
		ret = pcow_map_own_at(map, off, !map->kcow);
	pthread_mutex_unlock(&img->lock);
	atomic_fetch_add(&map->faults, 1);
	return ret;
}

int pcow_map_bus_error(struct pcow_map *map, void *addr)
{
	pcow_image *img = map->img;
	uint64_t off = (uint64_t)((uint8_t *)addr - map->base);
	struct stat st;
	int ret = -EIO;

	pthread_mutex_lock(&img->lock);
	if (!pcow_map_bit_test(map->detached, off / img->block_size) &&
	    fstat(img->fd, &st) == 0 &&
	    (uint64_t)st.st_size > region_start(img, img->m.active) + off)
		ret = -ENOSPC;
	pthread_mutex_unlock(&img->lock);
	return ret;
}

