/* map.h -- the mapping engine's private interface. */
#ifndef PCOW_MAP_H
#define PCOW_MAP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "image.h"

/* A range [off, end) of a map kept through a rebuild (map_keep.c): it
 * shows the image file from offset file on. */
struct pcow_keep {
	uint64_t off, end, file;
};

struct pcow_map {
	pcow_image *img;
	uint8_t *base;
	uint64_t len;           /* virtual size rounded up to pages */
	bool rdonly;
	unsigned wanted_flags;  /* pcow_map_new's flags, for pcow_activate */
	uint64_t persist_interval;      /* ms, for pcow_activate */
	int extra_flags;        /* MAP_SYNC | MAP_SHARED_VALIDATE when in use */
	pcow_map_error_fn err_fn;
	void *err_opaque;
	atomic_uint_fast64_t faults;
	atomic_uint_fast64_t copied;
	/*
	 * Bounding the number of VMAs: each single-block copy-up may split a
	 * read-only run (at most two more VMAs).  Past vma_budget the map
	 * switches to copying whole groups of group_size bytes, which merge
	 * with their neighbours, so the count stays below budget plus two per
	 * group whatever the order of writes.
	 */
	uint64_t vma_estimate;
	uint64_t vma_budget;
	uint64_t group_size;
	uint64_t bridge_max;    /* widest gap bridged between inherited runs */
	bool grouped;
	/*
	 * What a write fault copies up: the copy_size-aligned unit around the
	 * faulting block, or, when faults run sequentially (each one at
	 * ahead_next, just past the last copy), twice the last copy, up to
	 * ahead_max: fewer faults for a guest writing a file out, at the cost
	 * of copying ahead of it.
	 */
	uint64_t copy_size;
	uint64_t ahead_max;
	uint64_t ahead_next;
	uint64_t ahead_len;
	/*
	 * One bit per block the active layer inherits from something below,
	 * set from the runs when the map is built and cleared as blocks are
	 * copied up or written through the API: a fault knows what to copy
	 * without asking the file system (SEEK_DATA/SEEK_HOLE are linear in
	 * pages on tmpfs).  Anonymous and untouched where nothing is
	 * inherited.
	 */
	uint64_t *inherited;
	/*
	 * One bit per block the mapping does not show from the active
	 * region's pages at the map's protection: read-only runs, bridged
	 * gaps, anonymous copies.  A change through the byte API remaps such
	 * a block, or the mapping would go on showing what was there.  Set
	 * for every block a mapping touches, cleared only for blocks a
	 * mapping of the active region covers whole.
	 */
	uint64_t *detached;
	uint64_t inherited_bytes;       /* both bitmaps */
	uint64_t mmaps;         /* mmap calls since map_inherited began */
	/*
	 * Kernel copy-on-write (PCOW_MAP_KERNEL_COW): inherited blocks are
	 * mapped private and writable, so a store to one never faults and
	 * never needs emulating under KVM; the kernel copies the page.  The
	 * copies are found (PAGEMAP_SCAN, or /proc/self/pagemap) and written
	 * back into the active layer at every flush, persist interval and API
	 * access (map_writeback.c).  What the map would hold in anonymous
	 * memory (compacted stretches, partial pages) lives in memfd instead,
	 * mapped private as well, so a copy is always an anonymous page and
	 * everything else a file page.
	 */
	bool kcow;
	bool memfd_used;        /* something was ever shown from the memfd */
	int memfd;
	int pagemap_fd;
	bool pagemap_scan;      /* the kernel has the PAGEMAP_SCAN ioctl */
	/* The ranges a rebuild leaves mapped, or only write-protects,
	 * instead of mapping them anew (map_keep.c). */
	struct pcow_keep *keep;
	size_t keep_n, keep_cap;
	int registry_slot;
	int statfs_fd;          /* the last file asked about by reads_allocate */
	bool statfs_tmpfs;
};

/* True when the mapping is MAP_SYNC (stores durable without fdatasync). */
static inline bool pcow_map_is_sync(const struct pcow_map *map)
{
	return map->extra_flags != 0;
}


/*
 * Maps the whole range again after the layers changed under it (a
 * snapshot created, applied or deleted): the new active region, then what
 * it inherits.  Caller holds img->lock and keeps other threads from
 * storing into the range meanwhile (a kernel copy-on-write map is written
 * back first).  On failure the map must be deleted.
 */
int pcow_map_rebuild(struct pcow_map *map);

/* ---- Building the range (map_build.c) ---- */

/* Reserves len bytes of address space aligned to 2 MiB (for DAX PMDs). */
uint8_t *pcow_map_reserve(uint64_t len);

/* Allocates the inherited and detached bitmaps. */
int pcow_map_index_new(struct pcow_map *map);

/* Sets or clears the bits of blocks [first, end) in bits. */
void pcow_map_bits_set(struct pcow_map *map, uint64_t *bits, uint64_t first,
		       uint64_t end, bool on);
bool pcow_map_bit_test(const uint64_t *bits, uint64_t b);

/* The first block in [b, end) whose bit is on (or off); end if none, a
 * word at a time where all 64 bits agree. */
uint64_t pcow_map_bit_next(const uint64_t *bits, uint64_t b, uint64_t end,
			   bool on);

/* Marks blocks [first, end) inherited (on) or the active layer's. */
void pcow_map_inherit_set(struct pcow_map *map, uint64_t first, uint64_t end,
			  bool on);

/* Maps [off, off+len) of the map from fd at file_off, keeping the
 * detached bits true. */
int pcow_map_at(struct pcow_map *map, uint64_t off, uint64_t len, int prot,
		int fd, uint64_t file_off);

/* Maps read-only every block the active layer inherits. */
int pcow_map_inherited(struct pcow_map *map);

/* The VMAs inside the map, from /proc/self/maps (async-signal-safe). */
uint64_t pcow_map_count_vmas(const struct pcow_map *map);

/* Opens what a map of range [off, off+len) shows from anonymous memory:
 * writable, to be filled in, then sealed by pcow_map_anon_seal. */
int pcow_map_anon_open(struct pcow_map *map, uint64_t off, uint64_t len);
int pcow_map_anon_seal(struct pcow_map *map, uint64_t off, uint64_t len);

/* ---- Keeping pages through a snapshot (map_keep.c) ---- */

/*
 * Lists the ranges the map shows from the image file through a shared
 * mapping that the view of the active layer inherits from the same file
 * offsets: they need at most be write-protected.
 */
int pcow_map_keep_collect(struct pcow_map *map);

/* Maps fd from file_start at prot over everything but the kept ranges. */
int pcow_map_keep_gaps(struct pcow_map *map, int prot, int fd,
		       uint64_t file_start);

/* [off, off+len) is mapped anew by other means: no longer kept. */
int pcow_map_keep_replace(struct pcow_map *map, uint64_t off, uint64_t len);

/* Maps [off, off+len) as mmap(prot, flags, fd, file_off) would, changing
 * only the protection of what is kept there. */
int pcow_map_keep_reuse(struct pcow_map *map, uint64_t off, uint64_t len,
			int prot, int flags, int fd, uint64_t file_off);

void pcow_map_keep_free(struct pcow_map *map);

/* ---- Faults and API changes (map_fault.c) ---- */

/*
 * Makes the copy unit around off the active layer's, with what the map
 * shows there, and maps the active region there (img->lock held).
 */
int pcow_map_own_at(struct pcow_map *map, uint64_t off, bool ahead);

/* The same for every copy unit [off, off+len) touches, in as few runs as
 * the VMA budget allows (img->lock held). */
int pcow_map_own_range(struct pcow_map *map, uint64_t off, uint64_t len);

/* ---- Kernel copy-on-write (map_writeback.c) ---- */

/* Sets up a map for kernel copy-on-write (at pcow_map_new). */
int pcow_map_kcow_init(struct pcow_map *map);
void pcow_map_kcow_fini(struct pcow_map *map);

/*
 * Writes every page the kernel copied in [off, off+len) back into the
 * active layer, recording ownership, and maps the active region there
 * again.  Caller holds img->lock.  Nothing to do for a fault-mode map.
 */
int pcow_map_writeback(struct pcow_map *map, uint64_t off, uint64_t len);

/* Counts the pages the kernel copied and nobody wrote back yet (0 for a
 * fault-mode map).  Caller holds img->lock. */
int pcow_map_count_copies(struct pcow_map *map, uint64_t *pages);

/* True when bytes [off, off+n) of the map differ from the active region's. */
int pcow_map_differs(struct pcow_map *map, uint64_t off, uint64_t n);

/*
 * Installs the fault handlers (once) and registers/unregisters a map.
 * Unregistering waits for the faults other threads are serving in the map,
 * so the caller must not hold the image lock.
 */
int pcow_fault_register(struct pcow_map *map);
void pcow_fault_unregister(struct pcow_map *map);

/*
 * Block was written or discarded through the API: the active layer owns
 * it now, or nothing below has data there.  Shows the active region there
 * where the mapping showed something else (map.h, detached).
 */
int pcow_map_block_owned(struct pcow_map *map, uint64_t block);

/* Handles a write fault at addr inside map: copy-up and remap. */
int pcow_map_handle_write(struct pcow_map *map, void *addr);

/*
 * Why the page at addr could not be had (a SIGBUS with BUS_ADRERR): -EIO
 * when it lies past the end of its file (truncated under the map) or in
 * a file below the active layer, -ENOSPC otherwise (the file system could
 * not allocate it).
 */
int pcow_map_bus_error(struct pcow_map *map, void *addr);

/* What the fault handler does with a fault inside a map. */
enum pcow_fault_action {
	PCOW_FAULT_CHAIN,       /* not ours: the handler installed before */
	PCOW_FAULT_COPY_UP,     /* a store to a read-only block: copy it up */
	PCOW_FAULT_EFAULT,      /* an access the map never allows */
	PCOW_FAULT_NO_PAGE,     /* no page behind it: pcow_map_bus_error */
	PCOW_FAULT_EIO,         /* the file system failed to read it */
};

/* The action for signal sig with si_code code in a map (read-only or not). */
enum pcow_fault_action pcow_fault_decide(int sig, int code, bool rdonly);

#endif
