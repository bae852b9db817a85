/*
 * map.c -- the image as one directly mapped host address range.
 *
 * The active layer's region is mapped MAP_SHARED over the whole range, so
 * loads and stores hit the image file's pages, and the first store to a
 * hole is allocated by the host file system's own fault path, at the cost
 * of a raw mapping.  Blocks the active layer inherits (from a snapshot
 * layer or the backing chain) are then mapped read-only over it, straight
 * from the file that holds them (map_build.c); the first store to one
 * faults, and the fault handler copies the block up and maps the active
 * region back (map_fault.c).  The number of mappings therefore follows the
 * number of inherited runs, never the number of blocks written.  This file
 * holds the map's life: creation, flush, settings, deletion.
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
#include "stripe.h"


/* Default share of vm.max_map_count (65530) one map may use. */
#define DEFAULT_VMA_BUDGET 24576u

static void init_vma_budget(struct pcow_map *map)
{
	const char *env = getenv("PCOW_VMA_BUDGET");
	uint64_t groups, g = map->img->block_size;

	map->vma_budget = DEFAULT_VMA_BUDGET;
	if (env && atoll(env) >= 16)
		map->vma_budget = (uint64_t)atoll(env);
	/* A third of the budget in groups: at most budget + 2/3 budget VMAs. */
	groups = map->vma_budget / 3;
	while (g < map->len && map->len / g > groups)
		g *= 2;
	map->group_size = g;
	/* Unbridged gaps between inherited runs stay below budget/4. */
	map->bridge_max = map->len / (map->vma_budget / 4);
	map->grouped = false;
	map->copy_size = map->img->block_size;
	map->ahead_max = map->copy_size < PCOW_MAP_AHEAD_DEFAULT ? PCOW_MAP_AHEAD_DEFAULT : 0;
	map->ahead_next = UINT64_MAX;
}

int pcow_map_new(pcow_map **out, pcow_image *img, unsigned flags)
{
	struct pcow_map *map;
	long page = sysconf(_SC_PAGESIZE);
	int prot, ret;
	void *p;

	*out = NULL;
	if (!(flags & PCOW_MAP_RDONLY) && img->rdonly && !img->inactive)
		return pcow_err(-EACCES, "%s: image is opened read-only", img->path);
	map = calloc(1, sizeof(*map));
	if (!map)
		return pcow_err(-ENOMEM, "out of memory");
	map->img = img;
	map->rdonly = (flags & PCOW_MAP_RDONLY) || img->rdonly;
	map->wanted_flags = flags;
	map->persist_interval = PCOW_MAP_PERSIST_INTERVAL_DEFAULT;
	map->len = (img->m.virtual_size + (uint64_t)page - 1) & ~((uint64_t)page - 1);
	map->registry_slot = -1;
	map->statfs_fd = -1;
	map->memfd = map->pagemap_fd = -1;
	map->base = pcow_map_reserve(map->len);
	if (!map->base) {
		free(map);
		return pcow_err(-ENOMEM, "cannot reserve %llu bytes of address space",
				(unsigned long long)img->m.virtual_size);
	}
	pthread_mutex_lock(&img->lock);
	/* The walk over the image's runs reads copy bits from the file. */
	if (img->map)
		ret = pcow_err(-EBUSY, "%s: image is already mapped", img->path);
	else
		ret = img->rdonly ? 0 : pcow_pending_persist(img);
	/* Stores to the writable mapping allocate blocks the library never
	 * sees until the image is recorded at close. */
	if (ret == 0 && !map->rdonly)
		ret = pcow_image_mark_dirty(img);
	if (ret == 0 && !map->rdonly)
		ret = pcow_pending_prepare(img);
	if (ret < 0) {
		pthread_mutex_unlock(&img->lock);
		munmap(map->base, map->len);
		free(map);
		return ret;
	}
	prot = map->rdonly ? PROT_READ : PROT_READ | PROT_WRITE;
	/* MAP_SYNC keeps DAX metadata durable with the data; fall back quietly
	 * where the file system cannot (page cache: flushes use fdatasync). */
	ret = pcow_map_index_new(map);
	p = ret < 0 || pcow_stripe_mmap(map->base, map->len, prot,
					 MAP_SHARED_VALIDATE | MAP_SYNC | MAP_FIXED, img->fd,
					 region_start(img, img->m.active)) < 0
		    ? MAP_FAILED : map->base;
	if (p != MAP_FAILED)
		map->extra_flags = MAP_SHARED_VALIDATE | MAP_SYNC;
	else if (ret == 0)
		ret = pcow_map_at(map, 0, map->len, prot, img->fd,
			     region_start(img, img->m.active));
	init_vma_budget(map);
	/* Private copies are not persistent memory: MAP_SYNC keeps the copy-up. */
	if (ret == 0 && (flags & PCOW_MAP_KERNEL_COW) && !map->rdonly &&
	    !pcow_map_is_sync(map))
		ret = pcow_map_kcow_init(map);
	if (ret == 0)
		ret = pcow_map_inherited(map);
	if (ret == 0)
		ret = pcow_fault_register(map);
	if (ret < 0) {
		pthread_mutex_unlock(&img->lock);
		if (map->inherited)
			munmap(map->inherited, map->inherited_bytes);
		munmap(map->base, map->len);
		pcow_map_kcow_fini(map);
		free(map);
		return ret;
	}
	map->vma_estimate = pcow_map_count_vmas(map);
	img->map = map;
	pthread_mutex_unlock(&img->lock);
	*out = map;
	if (!map->rdonly && !pcow_map_is_sync(map))
		(void)pcow_map_set_persist_interval(map, PCOW_MAP_PERSIST_INTERVAL_DEFAULT);
	return 0;
}

/*
 * The rebuild proper: the active region over the whole range (but over
 * the kept ranges, when keeping), then what it inherits.
 */
static int rebuild(struct pcow_map *map, bool keeping)
{
	pcow_image *img = map->img;
	int prot = map->rdonly ? PROT_READ : PROT_READ | PROT_WRITE;
	uint64_t start = region_start(img, img->m.active);
	int ret;

	memset(map->inherited, 0, map->inherited_bytes);
	map->grouped = false;
	map->ahead_next = UINT64_MAX;
	map->ahead_len = 0;
	ret = keeping ? pcow_map_keep_gaps(map, prot, img->fd, start)
		      : pcow_map_at(map, 0, map->len, prot, img->fd, start);
	/* Whatever the memfd held was shown by mappings just replaced. */
	if (ret == 0 && map->kcow)
		(void)fallocate(map->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				0, (off_t)map->len);
	if (ret == 0 && !map->rdonly)
		ret = pcow_pending_prepare(img);
	if (ret == 0)
		ret = pcow_map_inherited(map);
	return ret;
}

int pcow_map_rebuild(struct pcow_map *map)
{
	const char *no_keep = getenv("PCOW_NO_KEEP");
	int ret = 0;

	/*
	 * What the map shows already from where the view now takes it (the
	 * layer a snapshot froze, older layers' blocks) is write-protected
	 * or left alone rather than mapped again (map_keep.c).  Not for
	 * kernel copy-on-write, whose inherited blocks are private mappings,
	 * nor for striped images, whose pages come from several files.
	 */
	if (!map->kcow && !map->rdonly && !(no_keep && *no_keep) &&
	    !pcow_stripes_of(map->img->fd))
		ret = pcow_map_keep_collect(map);
	if (ret == 0 && map->keep_n) {
		ret = rebuild(map, true);
		/* Something kept was not mapped as the view wants: again, the
		 * usual way (a kept range still shows the old region). */
		if (ret == 0 && map->keep_n) {
			map->keep_n = 0;
			ret = rebuild(map, false);
		}
	} else if (ret == 0) {
		ret = rebuild(map, false);
	}
	map->keep_n = 0;
	map->vma_estimate = pcow_map_count_vmas(map);
	return ret;
}

int pcow_map_set_persist_interval(pcow_map *map, uint64_t interval_ms)
{
	map->persist_interval = interval_ms;
	if (map->rdonly || pcow_map_is_sync(map))
		return 0;
	return pcow_pending_set_interval(map->img, interval_ms);
}

int pcow_map_delete(pcow_map **pmap)
{
	struct pcow_map *map = *pmap;
	int ret;

	if (!map)
		return 0;
	(void)pcow_pending_set_interval(map->img, 0);
	/* The kernel's copies are the image's data: into the file with them
	 * while a store that races with the write-back can still be served. */
	pthread_mutex_lock(&map->img->lock);
	ret = pcow_map_writeback(map, 0, map->len);
	pthread_mutex_unlock(&map->img->lock);
	if (ret < 0)
		return ret;
	pcow_fault_unregister(map);
	/* No API write may remap a block into the range once it is unmapped. */
	pthread_mutex_lock(&map->img->lock);
	map->img->map = NULL;
	pthread_mutex_unlock(&map->img->lock);
	munmap(map->base, map->len);
	munmap(map->inherited, map->inherited_bytes);
	pcow_map_kcow_fini(map);
	pcow_map_keep_free(map);
	free(map);
	*pmap = NULL;
	return 0;
}

void *pcow_map_addr(const pcow_map *map)
{
	return map->base;
}

uint64_t pcow_map_length(const pcow_map *map)
{
	return map->len;
}

int pcow_map_flush(pcow_map *map)
{
	if (map->rdonly)
		return 0;
	/* fdatasync covers every dirty page of the file and the allocations
	 * behind them; on MAP_SYNC it only has metadata left to do. */
	return pcow_flush(map->img);
}

void pcow_map_set_error_handler(pcow_map *map, pcow_map_error_fn fn,
				void *opaque)
{
	map->err_opaque = opaque;
	map->err_fn = fn;
}
int pcow_map_set_copy_size(pcow_map *map, uint64_t copy_size,
			   uint64_t ahead_max)
{
	uint64_t bs = map->img->block_size;

	if (!copy_size)
		copy_size = bs;
	if (copy_size < bs || copy_size > PCOW_MAP_COPY_MAX ||
	    (copy_size & (copy_size - 1)))
		return pcow_err(-EINVAL,
				"copy size must be a power of two from the block size (%llu) to 1 GiB",
				(unsigned long long)bs);
	if (ahead_max > PCOW_MAP_COPY_MAX || (ahead_max & (ahead_max - 1)))
		return pcow_err(-EINVAL,
				"fault-ahead size must be 0 or a power of two up to 1 GiB");
	pthread_mutex_lock(&map->img->lock);
	map->copy_size = copy_size;
	map->ahead_max = ahead_max;
	map->ahead_next = UINT64_MAX;
	map->ahead_len = 0;
	pthread_mutex_unlock(&map->img->lock);
	return 0;
}

int pcow_map_get_stats(pcow_map *map, struct pcow_map_stats *st)
{
	int ret;

	memset(st, 0, sizeof(*st));
	st->vmas = pcow_map_count_vmas(map);
	st->faults = atomic_load(&map->faults);
	st->blocks_copied = atomic_load(&map->copied);
	pthread_mutex_lock(&map->img->lock);
	ret = pcow_layer_count_blocks(map->img, map->img->m.active,
				      &st->blocks_allocated);
	pthread_mutex_unlock(&map->img->lock);
	return ret;
}

int pcow_map_get_pending(pcow_map *map, struct pcow_map_pending *pending)
{
	struct pcow_map_pending p = {.struct_size = sizeof(p)};
	size_t n = pending->struct_size < sizeof(p) ? pending->struct_size : sizeof(p);
	int ret;

	if (n < sizeof(size_t))
		return pcow_err(-EINVAL, "struct pcow_map_pending: struct_size not set");
	pthread_mutex_lock(&map->img->lock);
	p.blocks = pcow_pending_blocks(map->img);
	ret = pcow_map_count_copies(map, &p.kernel_copies);
	pthread_mutex_unlock(&map->img->lock);
	if (ret == 0)
		memcpy(pending, &p, n);
	pending->struct_size = n;
	return ret;
}
