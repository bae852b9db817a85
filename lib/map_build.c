/*
 * map_build.c -- building a map's address range: the active region mapped
 * writable over all of it, then every block the active layer inherits
 * mapped read-only from the file that holds it, run by run, within the
 * map's VMA budget (map.h).
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

#define HUGE_ALIGN (2ull << 20)


/* Reserves len bytes of address space aligned to 2 MiB (for DAX PMDs). */
uint8_t *pcow_map_reserve(uint64_t len)
{
	uint64_t total = len + HUGE_ALIGN;
	uint8_t *p = mmap(NULL, total, PROT_NONE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uint8_t *aligned;

	if (p == MAP_FAILED)
		return NULL;
	aligned = (uint8_t *)(((uintptr_t)p + HUGE_ALIGN - 1) & ~(HUGE_ALIGN - 1));
	if (aligned > p)
		munmap(p, (size_t)(aligned - p));
	if (aligned + len < p + total)
		munmap(aligned + len, (size_t)(p + total - (aligned + len)));
	return aligned;
}

/* The inherited-block index and the detached bits (map.h), one mapping. */
int pcow_map_index_new(struct pcow_map *map)
{
	uint64_t words = (map->img->nblocks + 63) / 64, bytes = 2 * words * 8;
	void *p = mmap(NULL, bytes ? bytes : 8, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED)
		return pcow_err(-ENOMEM, "out of memory");
	map->inherited = p;
	map->detached = map->inherited + words;
	map->inherited_bytes = bytes ? bytes : 8;
	return 0;
}

static void index_bit(uint64_t *bits, uint64_t b, bool on)
{
	uint64_t bit = 1ull << (b % 64);

	bits[b / 64] = on ? bits[b / 64] | bit : bits[b / 64] & ~bit;
}

void pcow_map_bits_set(struct pcow_map *map, uint64_t *bits, uint64_t first,
			 uint64_t end, bool on)
{
	uint64_t b = first;

	if (end > map->img->nblocks)
		end = map->img->nblocks;
	for (; b < end && b % 64; b++)
		index_bit(bits, b, on);
	if (b + 64 <= end) {
		memset(&bits[b / 64], on ? 0xff : 0, (end - b) / 64 * 8);
		b += (end - b) / 64 * 64;
	}
	for (; b < end; b++)
		index_bit(bits, b, on);
}

void pcow_map_inherit_set(struct pcow_map *map, uint64_t first, uint64_t end,
		      bool on)
{
	pcow_map_bits_set(map, map->inherited, first, end, on);
}

bool pcow_map_bit_test(const uint64_t *bits, uint64_t b)
{
	return bits[b / 64] >> (b % 64) & 1;
}

uint64_t pcow_map_bit_next(const uint64_t *bits, uint64_t b, uint64_t end,
			   bool on)
{
	while (b < end) {
		uint64_t w = (on ? bits[b / 64] : ~bits[b / 64]) & ~0ull << (b % 64);

		if (w) {
			b = b / 64 * 64 + (uint64_t)__builtin_ctzll(w);
			return b < end ? b : end;
		}
		b = (b / 64 + 1) * 64;
	}
	return end;
}

/* [off, off+len) of the map now shows something other than the active
 * region's pages: every block it touches is detached. */
static void detach(struct pcow_map *map, uint64_t off, uint64_t len)
{
	uint64_t bs = map->img->block_size;

	pcow_map_bits_set(map, map->detached, off / bs, (off + len + bs - 1) / bs, true);
}

int pcow_map_at(struct pcow_map *map, uint64_t off, uint64_t len, int prot,
		  int fd, uint64_t file_off)
{
	pcow_image *img = map->img;
	uint64_t bs = img->block_size, end = off + len;
	int flags = MAP_SHARED | MAP_FIXED;
	bool private = map->kcow && prot == PROT_READ;

	if (fd == img->fd)
		flags |= map->extra_flags;
	/* What the map would show read-only, to be copied up at the first
	 * store, the kernel copies instead (map_writeback.c). */
	if (private) {
		flags = MAP_PRIVATE | MAP_FIXED;
		prot = PROT_READ | PROT_WRITE;
	}
	map->mmaps++;
	if (map->keep_n && !private && prot == PROT_READ && fd == img->fd) {
		int ret = pcow_map_keep_reuse(map, off, len, prot, flags, fd, file_off);

		if (ret < 0)
			return ret;
	} else {
		/* A striped image's range: one mapping per stripe piece. */
		if (pcow_stripe_mmap(map->base + off, len, prot, flags, fd, file_off) < 0)
			return pcow_err_sys(-errno, "%s: mmap failed", img->path);
		if (pcow_map_keep_replace(map, off, len) < 0)
			return -ENOMEM;
	}
	if (private || fd != img->fd ||
	    file_off != region_start(img, img->m.active) + off ||
	    prot != (map->rdonly ? PROT_READ : PROT_READ | PROT_WRITE)) {
		detach(map, off, len);
		return 0;
	}
	/* Attached again: the blocks it covers whole (the last block of the
	 * image ends at the end of the map). */
	if (end >= map->len)
		end = map->img->nblocks * bs;
	if (end / bs > (off + bs - 1) / bs)
		pcow_map_bits_set(map, map->detached, (off + bs - 1) / bs, end / bs, false);
	return 0;
}

/*
 * Anonymous memory for what no file shows as the map must (zeros over data
 * the active layer does not own, partial pages, compacted stretches):
 * writable until sealed, then read-only, so that a store faults and copies
 * up.  In a kernel copy-on-write map, the map's memfd instead, mapped
 * shared to be filled and private once sealed: unwritten pages are then
 * file pages, and a store makes an anonymous copy like anywhere else.
 */
int pcow_map_anon_open(struct pcow_map *map, uint64_t off, uint64_t len)
{
	void *p;

	map->mmaps++;
	map->memfd_used = map->memfd_used || map->kcow;
	p = map->kcow ? mmap(map->base + off, len, PROT_READ | PROT_WRITE,
			     MAP_SHARED | MAP_FIXED, map->memfd, (off_t)off)
		      : mmap(map->base + off, len, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE,
			     -1, 0);
	if (p == MAP_FAILED)
		return pcow_err_sys(-errno, "%s: mmap failed", map->img->path);
	detach(map, off, len);
	return pcow_map_keep_replace(map, off, len);
}

int pcow_map_anon_seal(struct pcow_map *map, uint64_t off, uint64_t len)
{
	if (!len)
		return 0;
	if (map->kcow ? mmap(map->base + off, len, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_FIXED, map->memfd, (off_t)off) == MAP_FAILED
		      : mprotect(map->base + off, len, PROT_READ) < 0)
		return pcow_err_sys(-errno, "%s: cannot seal anonymous memory",
				    map->img->path);
	return 0;
}

/* Extends the current read-only run, or maps it and starts another. */
struct ro_run {
	uint64_t off, len, file;
	int fd;
};

/*
 * True when a read fault on a hole of fd allocates a page in the file
 * (tmpfs does; disk file systems fill the page cache only).  Mapping holes
 * of a lower file there would give it data, which by the ownership rule
 * takes blocks over from every other image built on it.
 */
static bool reads_allocate(struct pcow_map *map, int fd)
{
	struct statfs sfs;

	if (fd != map->statfs_fd) {
		const struct pcow_stripes *s = pcow_stripes_of(fd);

		map->statfs_fd = fd;
		map->statfs_tmpfs = fstatfs(fd, &sfs) != 0 ||
				    sfs.f_type == TMPFS_MAGIC;
		/* A striped image's holes are its extent files' holes. */
		for (uint32_t i = 0; s && i < s->n; i++)
			map->statfs_tmpfs |= fstatfs(s->fds[i], &sfs) != 0 ||
					     sfs.f_type == TMPFS_MAGIC;
	}
	return map->statfs_tmpfs;
}

/*
 * True when the gap [from, to) between two read-only runs of fd may be
 * mapped from fd as well, making one VMA of both: fd must hold only holes
 * there (a block the active layer took over by a discard has no run, but
 * may still have data in fd), and so must the active layer, so that the
 * gap reads the zeros it shows.  A store into a bridged block then faults
 * once, and the fault finds nothing to copy.  Only gaps up to bridge_max
 * are bridged: wider gaps are fewer than budget/4.
 */
static bool can_bridge(struct pcow_map *map, const struct ro_run *r, int fd,
		       uint64_t off, uint64_t file)
{
	pcow_image *img = map->img;
	uint64_t gap = off - (r->off + r->len);

	if (!r->len || fd != r->fd || off <= r->off + r->len ||
	    file - r->file != off - r->off || gap > map->bridge_max ||
	    reads_allocate(map, fd))
		return false;
	return pcow_file_has_data(fd, r->file + r->len, gap) == 0 &&
	       pcow_file_has_data(img->fd,
				  region_start(img, img->m.active) + r->off + r->len,
				  gap) == 0;
}

static int ro_add(struct pcow_map *map, struct ro_run *r, uint64_t off,
		  uint64_t len, int fd, uint64_t file)
{
	int ret = 0;

	if ((r->len && fd == r->fd && off == r->off + r->len &&
	     file == r->file + r->len) ||
	    can_bridge(map, r, fd, off, file)) {
		r->len = off + len - r->off;
		return 0;
	}
	if (r->len)
		ret = pcow_map_at(map, r->off, r->len, PROT_READ, r->fd, r->file);
	*r = (struct ro_run){.off = off, .len = len, .fd = fd, .file = file};
	return ret;
}

/* Maps [off, off+len) read-only as zeros, in a block the active layer
 * inherits: from the active region's holes when it has none there. */
static int ro_zeros(struct pcow_map *map, struct ro_run *run, uint64_t off,
		    uint64_t len)
{
	pcow_image *img = map->img;
	uint64_t active_start = region_start(img, img->m.active);
	int ret = pcow_file_has_data(img->fd, active_start + off, len);

	if (ret == 0)
		return ro_add(map, run, off, len, img->fd, active_start + off);
	if (ret < 0)
		return ret;
	/* Data the active layer does not own (a copy cut short by a crash):
	 * anonymous zeros instead, which the fault handler copies up too. */
	ret = run->len ? pcow_map_at(map, run->off, run->len, PROT_READ, run->fd, run->file) : 0;
	*run = (struct ro_run){0};
	if (ret == 0)
		ret = pcow_map_anon_open(map, off, len);
	return ret ? ret : pcow_map_anon_seal(map, off, len);
}

struct inherited {
	struct pcow_map *map;
	struct ro_run run;
	uint64_t covered;       /* end of the last inherited piece mapped */
	uint64_t page;
	/*
	 * Past a quarter of the VMA budget, small runs (up to bridge_max) and
	 * small gaps are copied into anonymous memory instead, one mapping
	 * for a whole stretch of them: [seg_start, seg_end) is the stretch
	 * being built.
	 */
	bool compact;
	uint64_t seg_start, seg_end;
};

static uint64_t page_up(const struct inherited *in, uint64_t x)
{
	return (x + in->page - 1) / in->page * in->page;
}

/* Finishes the block the last inherited piece ended in with zeros. */
static int close_block(struct inherited *in, uint64_t limit)
{
	uint64_t bs = in->map->img->block_size, start = in->covered;
	uint64_t end = (start + bs - 1) / bs * bs;

	if (end > limit)
		end = limit;
	end = page_up(in, end);
	if (start >= end)
		return 0;
	in->covered = end;
	return ro_zeros(in->map, &in->run, start, end - start);
}

/*
 * Maps the page at off read-only as a private copy of what the image shows
 * there: for a page a run covers only in part (a raw file ending inside
 * it, a backing file whose size is not a page multiple), whose file may
 * hold other bytes in the rest of the page.
 */
static int ro_page_copy(struct inherited *in, uint64_t off)
{
	struct pcow_map *map = in->map;
	pcow_image *img = map->img;
	uint64_t n = in->page;
	int ret = 0;

	if (in->run.len)
		ret = pcow_map_at(map, in->run.off, in->run.len, PROT_READ, in->run.fd,
			     in->run.file);
	in->run = (struct ro_run){0};
	if (ret < 0)
		return ret;
	ret = pcow_map_anon_open(map, off, n);
	if (ret < 0)
		return ret;
	if (n > img->m.virtual_size - off)
		n = img->m.virtual_size - off;
	ret = pcow_chain_read(img, img->m.active, map->base + off, n, off);
	if (ret == 0)
		ret = pcow_map_anon_seal(map, off, in->page);
	in->covered = off + in->page;
	return ret;
}

/* Maps the pending read-only run, so that nothing later bridges to it. */
static int flush_run(struct inherited *in)
{
	int ret = 0;

	if (in->run.len)
		ret = pcow_map_at(in->map, in->run.off, in->run.len, PROT_READ, in->run.fd,
			     in->run.file);
	in->run = (struct ro_run){0};
	return ret;
}

/* Makes the anonymous stretch read-only: stores fault, as on inherited
 * blocks, and the fault handler maps the active region there. */
static int seg_close(struct inherited *in)
{
	struct pcow_map *map = in->map;
	int ret = 0;

	if (in->seg_end > in->seg_start)
		ret = pcow_map_anon_seal(map, in->seg_start, in->seg_end - in->seg_start);
	in->seg_start = in->seg_end = 0;
	return ret;
}

/* Extends the anonymous stretch to end, starting one at from if none is open. */
static int seg_extend(struct inherited *in, uint64_t from, uint64_t end)
{
	struct pcow_map *map = in->map;
	int ret;

	if (in->seg_end == in->seg_start)
		in->seg_start = in->seg_end = from;
	if (end <= in->seg_end)
		return 0;
	ret = pcow_map_anon_open(map, in->seg_end, end - in->seg_end);
	if (ret == 0)
		in->seg_end = end;
	return ret;
}

/*
 * A run once the map is compacting: small ones are copied into the
 * anonymous stretch (owned runs too: the stretch replaces the active
 * region's mapping there), large ones end it.  Returns 1 when the run is
 * to be mapped as usual (large inherited runs: at most budget/4 of them).
 */
static int compact_run(struct inherited *in, const struct pcow_run *r, bool own)
{
	struct pcow_map *map = in->map;
	pcow_image *img = map->img;
	uint64_t bs = img->block_size, first = r->off / bs * bs;
	uint64_t end = (r->off + r->len + bs - 1) / bs * bs, len = r->len;
	int ret;

	if (end > map->len)
		end = map->len;
	if (in->covered % bs) {
		/* The block a run mapped as usual ended in: same way. */
		if (r->off < (in->covered + bs - 1) / bs * bs)
			return 1;
		ret = close_block(in, first);
		if (ret < 0)
			return ret;
	}
	if (r->len > map->bridge_max && r->off >= in->seg_end) {
		ret = seg_close(in);
		if (ret == 0 && own && end > in->covered)
			in->covered = end;
		return ret < 0 ? ret : !own;
	}
	if (in->seg_end > in->seg_start &&
	    (first > in->seg_end ? first - in->seg_end : 0) > map->bridge_max) {
		ret = seg_close(in);
		if (ret < 0)
			return ret;
	}
	ret = flush_run(in);
	if (ret == 0)
		ret = seg_extend(in, first, end);
	if (len > img->m.virtual_size - r->off)
		len = img->m.virtual_size - r->off;
	if (ret == 0)
		ret = pcow_io_pread(r->fd, map->base + r->off, len, r->file);
	if (ret == 0 && end > in->covered)
		in->covered = end;
	return ret;
}

static int on_run(const struct pcow_run *r, void *opaque)
{
	struct inherited *in = opaque;
	struct pcow_map *map = in->map;
	pcow_image *img = map->img;
	uint64_t bs = img->block_size, first = r->off / bs * bs;
	uint64_t start = r->off, end = r->off + r->len, file = r->file, whole;
	bool own = r->img == img && r->layer == img->m.active;
	int ret;

	if (!own)
		pcow_map_inherit_set(map, r->off / bs, (r->off + r->len + bs - 1) / bs, true);
	/* Runs so many that their mappings would outgrow the budget. */
	if (!in->compact && map->mmaps > map->vma_budget / 4)
		in->compact = true;
	if (in->compact) {
		ret = compact_run(in, r, own);
		if (ret != 1)
			return ret;
	}
	/* The active layer's own blocks are mapped writable already. */
	if (own)
		return 0;
	if (in->covered < first && in->covered % bs) {
		ret = close_block(in, first);
		if (ret < 0)
			return ret;
	}
	if (in->covered < first)
		in->covered = first;
	if (start < in->covered) {
		file += in->covered - start;
		start = in->covered;
	}
	if (start >= end)
		return 0;
	/* A store anywhere in an inherited block copies all of it up, so the
	 * block's zero pieces are read-only too. */
	if (in->covered < start / in->page * in->page) {
		ret = ro_zeros(map, &in->run, in->covered,
			       start / in->page * in->page - in->covered);
		if (ret < 0)
			return ret;
	}
	if (start % in->page) {
		ret = ro_page_copy(in, start / in->page * in->page);
		if (ret < 0 || in->covered >= end)
			return ret;
		file += in->covered - start;
		start = in->covered;
	}
	whole = end / in->page * in->page;
	if (whole > start) {
		ret = ro_add(map, &in->run, start, whole - start, r->fd, file);
		if (ret < 0)
			return ret;
		in->covered = whole;
	}
	if (end > whole)
		return ro_page_copy(in, whole);
	return 0;
}

/*
 * Maps read-only every block the active layer inherits, run by run from
 * the file that holds it (extent.h): the cost follows the number of runs,
 * not of blocks.
 */
int pcow_map_inherited(struct pcow_map *map)
{
	pcow_image *img = map->img;
	struct inherited in = {.map = map, .page = (uint64_t)sysconf(_SC_PAGESIZE)};
	int ret;

	/* Nothing below the active layer: nothing to inherit, and no need to
	 * walk its own extents (SEEK_HOLE is linear in pages on tmpfs). */
	if (img->m.layers[img->m.active].parent == PCOW_NO_PARENT && !img->backing &&
	    img->raw_fd < 0)
		return 0;

	map->mmaps = 0;
	ret = pcow_view_runs(img, img->m.active, 0, img->m.virtual_size, on_run, &in);
	if (ret == 0)
		ret = seg_close(&in);
	if (ret == 0 && in.covered % img->block_size)
		ret = close_block(&in, img->m.virtual_size);
	if (ret == 0 && in.run.len)
		ret = pcow_map_at(map, in.run.off, in.run.len, PROT_READ, in.run.fd,
			     in.run.file);
	return ret;
}
