/*
 * pcow.h -- the public API of libpcow, the pcow virtual-machine image
 * format for persistent memory.
 *
 * Everything not declared here is private to the library.
 *
 * Conventions:
 *  - Functions return 0 (or a non-negative count) on success and a negative
 *    errno value on failure; pcow_errormsg() then describes the failure in
 *    one line.  The library never prints and never exits.
 *  - Handles are opaque.  Constructors take a pointer to the handle pointer;
 *    destructors take the same and set it to NULL.
 *  - Thread safety: every call on one pcow_image is serialised by a lock
 *    inside the image, so one image may be used from many threads.  Distinct
 *    images are independent.  pcow_errormsg() is per thread.
 */
#ifndef PCOW_H
#define PCOW_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PCOW_VERSION_MAJOR 0
#define PCOW_VERSION_MINOR 1
#define PCOW_VERSION_MICRO 0

/* Smallest and largest block size, and the default (see docs/design.md). */
#define PCOW_BLOCK_SIZE_MIN (4096u)
#define PCOW_BLOCK_SIZE_MAX (1u << 30)
#define PCOW_BLOCK_SIZE_DEFAULT (64u * 1024)

/* Longest snapshot name, in bytes (no terminating NUL). */
#define PCOW_SNAPSHOT_NAME_MAX 255

typedef struct pcow_image pcow_image;
typedef struct pcow_map pcow_map;

/* Format of a backing file, always stored in the image (never probed). */
enum pcow_format {
	PCOW_FORMAT_NONE = 0,
	PCOW_FORMAT_RAW = 1,
	PCOW_FORMAT_PCOW = 2,
};

/*
 * The structures passed to the library start with struct_size, which the
 * caller sets to sizeof the structure it was compiled with, so that a later
 * library can add fields at the end and still serve older callers.  A size
 * the library does not know fails with -EINVAL.
 */

/* Options for pcow_create().  Zero-initialise, set struct_size, then what
 * you need: struct pcow_create_opts o = {.struct_size = sizeof(o), ...}. */
struct pcow_create_opts {
	size_t struct_size;       /* sizeof(struct pcow_create_opts) */
	uint64_t size;            /* virtual size in bytes; 0 = backing's size */
	uint32_t block_size;      /* 0 = PCOW_BLOCK_SIZE_DEFAULT */
	const char *backing_file; /* NULL = none; relative to the image's dir */
	enum pcow_format backing_format; /* required when backing_file is set */
	/*
	 * Largest virtual size the image can later grow to without moving its
	 * data (pcow_resize); 0 = the virtual size.  Costs no disk space, but
	 * makes the file's apparent size larger (docs/format.md).
	 */
	uint64_t capacity;
	/* PCOW_CREATE_* (added after 0.1.0: a caller built before sets a
	 * struct_size that ends before it, and gets 0). */
	unsigned flags;
	/*
	 * Striping (added after 0.1.0, as flags): extent_count (0, or 2 to 64)
	 * extent files hold the data, stripe i of the guest address range in
	 * extent file i % extent_count.  The names are stored as given and
	 * resolved against the image's directory; the files must not exist.
	 * stripe_size: a power of two from 64 KiB (and the block size) such
	 * that the capacity holds at most 4096 stripes; 0 =
	 * PCOW_STRIPE_SIZE_DEFAULT, or the smallest power of two that such a
	 * capacity allows (docs/format.md 3.6, docs/design.md).
	 */
	const char *const *extent_files;
	uint32_t extent_count;
	uint64_t stripe_size;
	/*
	 * Added later: NULL, or the host NUMA node (0 to 1023, or
	 * PCOW_NODE_NONE) of each of the extent_count extent files.  A hint
	 * kept in the image: every map of extent file i is bound to node i
	 * (mbind MPOL_BIND) where the host has that node, and not bound where
	 * it does not (docs/design.md, "NUMA placement").
	 */
	const uint32_t *extent_nodes;
};

#define PCOW_NODE_NONE 0xffffu

#define PCOW_STRIPE_SIZE_DEFAULT (2u << 20)

/*
 * The backing file is not opened, so it need not exist yet (qemu-img
 * create -u); the size must then be given.
 */
#define PCOW_CREATE_NO_BACKING_OPEN 0x1u

/* Creates a new, empty image at path (which must not exist). */
int pcow_create(const char *path, const struct pcow_create_opts *opts);

/* Flags for pcow_open(). */
#define PCOW_OPEN_RDONLY 0x1u       /* read-only, takes a shared lock */
#define PCOW_OPEN_FORCE_SHARE 0x2u  /* read-only, takes no lock (-U) */
#define PCOW_OPEN_NO_BACKING 0x4u   /* do not open the backing chain */
/*
 * Inactive: the image is another process's until pcow_activate() (the
 * destination of a live migration over shared storage).  Opened for
 * writing later, read-only until then, without a lock; a map made
 * meanwhile is read-only and becomes writable at activation.
 */
#define PCOW_OPEN_INACTIVE 0x8u

/*
 * Opens an image and its backing chain.  A read-write open takes an
 * exclusive lock; if another process holds the image, fails with -EBUSY
 * ("image is in use").
 */
int pcow_open(pcow_image **img, const char *path, unsigned flags);

/*
 * Closes an image (flushing it first) and sets *img to NULL.  Fails with
 * -EBUSY, changing nothing, while the image is mapped: pcow_map_delete()
 * first.
 */
int pcow_close(pcow_image **img);

/*
 * Handing an image over between processes (live migration over shared
 * storage; docs/migration.md).  pcow_inactivate(): the kernel's copies of
 * a map are written back, the image is flushed and recorded (clean on
 * disk), its map made read-only and its write lock released; it then
 * reads as before but takes no change.  pcow_activate(): takes the write
 * lock (-EBUSY while another process holds it), reads the metadata again
 * (another process may have changed it), and makes a map writable again,
 * showing the image as it is now.  Neither may run while other threads
 * store into the map.  Both return 0 when the image is in that state
 * already.
 */
int pcow_inactivate(pcow_image *img);
int pcow_activate(pcow_image *img);

/* The message describing the last failure of this thread. */
const char *pcow_errormsg(void);

/* What pcow_get_info() reports; the caller sets struct_size (which the
 * call keeps): struct pcow_info info = {.struct_size = sizeof(info)}. */
struct pcow_info {
	size_t struct_size;         /* sizeof(struct pcow_info) */
	uint64_t virtual_size;
	uint64_t capacity;          /* growable in place up to this size */
	uint32_t block_size;
	uint32_t format_version;
	uint64_t actual_size;       /* bytes the image file occupies on disk */
	uint64_t allocated_blocks;  /* blocks owned by the active layer */
	uint32_t snapshot_count;
	uint32_t layer_count;
	enum pcow_format backing_format;
	uint64_t incompatible_features;
	uint64_t compatible_features;
	uint64_t autoclear_features;
	/* The backing file name as stored, or "" (NUL-terminated). */
	char backing_file[4096];
	/* The backing file name resolved against the image's directory. */
	char backing_file_full[4096];
	/* Added after 0.1.0 (a caller built before gets the fields above). */
	/*
	 * The size the image file needs: where its last region ends.  A file
	 * cut to it still opens (qemu-img check's "image end offset").
	 */
	uint64_t end_offset;
	/*
	 * How many layers a read looks through: the active layer, the older
	 * layers below it, then the backing chain's (a raw backing file is
	 * one).  pcow_block_status() depths run from 0 to view_layers - 1.
	 */
	uint32_t view_layers;
	/* 1 between pcow_inactivate() (or a PCOW_OPEN_INACTIVE open) and
	 * pcow_activate(): another process may own the image. */
	uint32_t inactive;
	/* Added later: extent files (0: not striped) and the stripe size. */
	uint32_t extent_count;
	uint64_t stripe_size;
};

int pcow_get_info(pcow_image *img, struct pcow_info *info);

/* The backing image (pcow backing only; NULL for raw or no backing). */
pcow_image *pcow_backing_image(pcow_image *img);

/* The name of extent file i of a striped image, as stored (relative names
 * resolve against the image's directory); NULL past the last. */
const char *pcow_extent_file(pcow_image *img, uint32_t i);

/* The NUMA node stored for extent file i (-1: none; -ENOENT past the
 * last); *applied (when not NULL) is 1 when this host has the node, so
 * that maps of the file are bound to it. */
int pcow_extent_node(pcow_image *img, uint32_t i, int *applied);

/* Byte-granular I/O through the layers and the backing chain. */
int pcow_read(pcow_image *img, void *buf, uint64_t len, uint64_t offset);
int pcow_write(pcow_image *img, const void *buf, uint64_t len,
	       uint64_t offset);

/*
 * Deallocates the whole blocks inside [offset, offset+len).  They read as
 * zeros afterwards (also when a snapshot or the backing file has data
 * there).  Parts of blocks at either end are left unchanged.
 */
int pcow_discard(pcow_image *img, uint64_t offset, uint64_t len);

/* Makes every completed write durable. */
int pcow_flush(pcow_image *img);

/* Where the data of a range comes from, as reported by pcow_block_status. */
#define PCOW_STATUS_DATA 0x1u  /* some layer or the backing file has data */
#define PCOW_STATUS_ZERO 0x2u  /* reads as zeros without stored data */

struct pcow_block_status {
	uint64_t offset;      /* start of the run (== the offset asked for) */
	uint64_t length;      /* length of the run with the same status */
	unsigned flags;       /* PCOW_STATUS_* */
	/*
	 * Which layer provides the data: 0 = active layer, 1..n = the n-th
	 * older layer (snapshot) below it, then layers of the backing chain.
	 * -1 when nothing has data.  With PCOW_STATUS_ZERO, a depth >= 0 names
	 * the layer that owns the range without data (a discarded block over
	 * older data): present, and zeros.
	 */
	int depth;
	int64_t file_offset;  /* offset in the providing file, or -1 */
	const char *filename; /* the providing file, or NULL */
};

/* Describes the run starting at offset, at most len bytes long. */
int pcow_block_status(pcow_image *img, uint64_t offset, uint64_t len,
		      struct pcow_block_status *status);

/* Snapshots inside the image. */
struct pcow_snapshot_info {
	uint32_t id;
	char name[PCOW_SNAPSHOT_NAME_MAX + 1];
	int64_t date_sec;
	uint32_t date_nsec;
	uint64_t allocated_size; /* bytes of data this snapshot alone holds */
};

/*
 * Snapshots can be created, applied and deleted while the image is mapped:
 * the map shows the active layer as it is after the change.  The caller
 * keeps other threads from storing into the map during the call (QEMU
 * stops its vCPUs): a store made meanwhile may land on either side of it.
 */

/* Lists the snapshots; free *list with free(). */
int pcow_snapshot_list(pcow_image *img, struct pcow_snapshot_info **list,
		       size_t *count);
int pcow_snapshot_create(pcow_image *img, const char *name);

/*
 * For a caller that holds stores off while a snapshot is taken (the vCPUs
 * of a running VM), so that they are held off only for the switch itself:
 * pcow_snapshot_prepare() does beforehand what does not depend on the
 * moment of the snapshot (a clean area of the file for the next layer,
 * made durable), and the next snapshot taken with the metadata unchanged
 * meanwhile uses it.  With PCOW_SNAPSHOT_SYNC_LATER,
 * pcow_snapshot_create_flags() returns once the snapshot is taken, before
 * its last flush: the snapshot, and whatever is stored after it, becomes
 * durable at the next pcow_flush() or pcow_map_flush() (or any later
 * change of the metadata, or pcow_close()); a power failure before that
 * leaves the image as it was just before the snapshot.
 */
#define PCOW_SNAPSHOT_SYNC_LATER 0x1u
int pcow_snapshot_prepare(pcow_image *img);
int pcow_snapshot_create_flags(pcow_image *img, const char *name,
			       unsigned flags);
/* name may also be a snapshot's numeric id, as with qemu-img. */
int pcow_snapshot_apply(pcow_image *img, const char *name);
int pcow_snapshot_delete(pcow_image *img, const char *name);

/* Rebase flags. */
#define PCOW_REBASE_UNSAFE 0x1u  /* only rewrite the backing file name */

/*
 * Changes the backing file.  Unless PCOW_REBASE_UNSAFE, blocks whose
 * content differs between the old and the new backing file are copied
 * into the image first, so the guest-visible content stays the same.
 * backing_file NULL (or "") removes the backing file.
 */
int pcow_rebase(pcow_image *img, const char *backing_file,
		enum pcow_format backing_format, unsigned flags);

/* pcow_commit() flags. */
#define PCOW_COMMIT_KEEP 0x1u  /* keep the image's data (qemu-img commit -d) */

/*
 * Merges into a backing file what the image shows that does not come from
 * that file's own view: into the immediate backing file (base NULL), or
 * into base, an image (pcow or raw) further down the chain, named by its
 * path or by the backing name stored in the chain.  The images in between
 * go into base too, and are no longer valid afterwards, so committing
 * past them needs PCOW_COMMIT_KEEP.  Without it, the image is emptied
 * afterwards: it shows its backing file again, with the same content.
 * The target (and the images in between) must not be open in another
 * process (-EBUSY).  Refused for images with internal snapshots (their
 * content would change) and for mapped images.  Reports progress over the
 * bytes copied.
 */
int pcow_commit(pcow_image *img, const char *base, unsigned flags);

/* pcow_resize() flags. */
#define PCOW_RESIZE_SHRINK 0x1u  /* allow a smaller size (data past it is lost) */

/*
 * Changes the virtual size (a multiple of 512, > 0).  A grown area reads as
 * zeros, whatever the backing file holds there.  Growing past the capacity
 * moves every layer's data to a new place in the file (progress is
 * reported).  Shrinking needs PCOW_RESIZE_SHRINK and discards the data past
 * the new size.  Fails with -ENOTSUP when the image has snapshots and with
 * -EBUSY while it is mapped.
 */
int pcow_resize(pcow_image *img, uint64_t new_size, unsigned flags);

/* Bytes of data the image itself holds that a shrink to new_size drops. */
int pcow_resize_lost_bytes(pcow_image *img, uint64_t new_size,
			   uint64_t *bytes);

/*
 * Progress of long operations (rebase, check with repair, commit, resize):
 * fn is called from the calling thread with done <= total, at least once
 * with done == total when the operation completes.  NULL turns it off.
 */
typedef void (*pcow_progress_fn)(uint64_t done, uint64_t total, void *opaque);
void pcow_set_progress(pcow_image *img, pcow_progress_fn fn, void *opaque);

/* pcow_check() repair flags. */
#define PCOW_CHECK_FIX_LEAKS 0x1u
#define PCOW_CHECK_FIX_ERRORS 0x2u

struct pcow_check_result {
	uint64_t corruptions;
	uint64_t leaks;
	uint64_t corruptions_fixed;
	uint64_t leaks_fixed;
	uint64_t check_errors;
	uint64_t leaked_bytes;
	char first_problem[256]; /* the first corruption found, else the first problem */
};

/* Checks (and with fix flags, repairs) an image opened read-write. */
int pcow_check(pcow_image *img, unsigned fix, struct pcow_check_result *res);

/* ---- The mapping engine ---------------------------------------------- */

/*
 * Signals.  The first pcow_map_new() installs one handler for SIGSEGV and
 * for SIGBUS (SA_SIGINFO | SA_NODEFER | SA_RESTART), remembering the
 * handlers installed before; it stays installed.  The contract:
 *  - Threads that touch a mapping, and threads that call the library with
 *    buffers inside one, must not block SIGSEGV or SIGBUS: the kernel
 *    kills a thread that faults with them blocked.
 *  - A handler installed later must call the one sigaction() reports as
 *    previous (with the same arguments) for every fault it does not
 *    handle itself, at least for addresses inside a mapping; without it,
 *    stores to inherited blocks crash.  The library's handler must not be
 *    replaced while an image is mapped.
 *  - Faults that are not the library's (outside every mapping; signals
 *    sent with kill() or sigqueue(); machine checks, BUS_MCEERR_AR and
 *    BUS_MCEERR_AO, which QEMU injects into the guest; misaligned
 *    accesses) go to the handler installed before it, called directly
 *    from its own, in the same signal context (that handler's sa_mask and
 *    flags are not applied again).  If that was SIG_DFL, the default
 *    action is restored, so the fault kills as it would have; SIG_IGN
 *    ignores what can be ignored.  Faults in a mapping that the library
 *    cannot serve go to the map's error handler, if it has one (below).
 *  - The handler is async-signal-safe but for the image's lock, which it
 *    takes to copy a block up; the library never waits for another thread
 *    while holding it, and a thread faulting on its own buffer while it
 *    holds it takes it again (it is recursive).  Callbacks the library
 *    calls (progress) must not wait for a thread that may store into a
 *    mapping, and a buffer passed to calls on one image must not lie in
 *    another image's mapping (two threads doing that crosswise deadlock).
 */

#define PCOW_MAP_RDONLY 0x1u
/*
 * Kernel copy-on-write: blocks the image inherits (from a snapshot or the
 * backing file) are mapped private and writable, so the first store to one
 * is copied by the kernel's own fault path.  No store ever reaches the
 * library's signal handler, so none needs emulating under KVM (locked
 * instructions included).  The copies are written back into the image,
 * and the block mapped from the image again, at every flush, at the
 * persist interval, when the byte API touches the block and when the map
 * is deleted; until then they live in memory only.  A block being written
 * back is write-protected for the time of its copy (microseconds): a
 * store then waits in the signal handler, and under KVM takes the
 * emulated path as in the default mode.  Ignored where the mapping is
 * MAP_SYNC (DAX): a private copy is not persistent memory, so there a
 * store copies up at once, as in the default mode.
 */
#define PCOW_MAP_KERNEL_COW 0x2u

/*
 * Maps the image as one host address range of its virtual size, aligned to
 * 2 MiB.  Loads and stores go straight to the image file's pages; the first
 * store to a block inherited from a snapshot or the backing file copies it
 * up (handled inside a SIGSEGV handler the library installs and chains).
 * The image must stay open while it is mapped (pcow_close() refuses with
 * -EBUSY); at most one mapping per image.
 */
int pcow_map_new(pcow_map **map, pcow_image *img, unsigned flags);
/*
 * Unmaps and frees the mapping.  A fault in it that the library is serving
 * for another thread is finished first; the caller keeps other threads
 * from touching the range afterwards.  Not to be called from a library
 * callback (progress, error handler of another map), which may hold an
 * image lock such a fault waits for.
 */
int pcow_map_delete(pcow_map **map);
void *pcow_map_addr(const pcow_map *map);
uint64_t pcow_map_length(const pcow_map *map);

/* Makes every store to the mapping durable (a virtio-pmem flush). */
int pcow_map_flush(pcow_map *map);

/*
 * Called, in the faulting thread and in signal context, when an access
 * cannot be served: err = -ENOSPC when the host file system could not
 * allocate a page of the image, -EIO when a page lies past the end of a
 * file truncated under the map or the file system could not read it,
 * -EFAULT for a store to a read-only map, or the error of a failed
 * copy-up (pcow_errormsg() describes it, and may be called there).  When
 * the handler returns, the access is retried.  With no handler, the fault
 * is passed to the previously installed handler or kills the process as an
 * unhandled SIGBUS would.
 */
typedef void (*pcow_map_error_fn)(pcow_map *map, void *addr, int err,
				  void *opaque);
void pcow_map_set_error_handler(pcow_map *map, pcow_map_error_fn fn,
				void *opaque);
/*
 * Inside the error handler: the context of the signal (a ucontext_t *,
 * with the registers of the faulting thread), so that the handler can
 * tell which instruction made the access, and leave the signal handler
 * with siglongjmp() to restart it later instead of waiting inside it.
 * Only meaningful inside the handler (NULL in a thread that never ran one).
 */
void *pcow_map_fault_context(void);

/*
 * What the first store to an inherited block copies up: the copy_size
 * bytes around it (a power of two from the block size to 1 GiB; 0 = the
 * block size, the default), and, while stores fault in sequence, up to
 * ahead_max bytes from the faulting block on (a power of two up to 1 GiB;
 * at most copy_size, e.g. 0: no fault-ahead; default
 * PCOW_MAP_AHEAD_DEFAULT).  A copy size of 4 KiB on an
 * image of 4 KiB blocks copies only the page written; larger copies mean
 * fewer faults and more data held by the active layer.
 */
/*
 * Copy-ups through a page-cache mapping become durable within interval_ms
 * even when nothing flushes: a thread of the library persists the copied
 * data and then the blocks' ownership at that interval (0: only at flushes
 * and close).  Until then a power failure shows those blocks as they were
 * inherited; a killed process loses nothing.  Default
 * PCOW_MAP_PERSIST_INTERVAL_DEFAULT ms.  No effect on MAP_SYNC (DAX)
 * mappings, where ownership is durable before the store completes.
 */
#define PCOW_MAP_PERSIST_INTERVAL_DEFAULT 5000u
int pcow_map_set_persist_interval(pcow_map *map, uint64_t interval_ms);

#define PCOW_MAP_AHEAD_DEFAULT (256u << 10)
#define PCOW_MAP_COPY_MAX (1ull << 30)
int pcow_map_set_copy_size(pcow_map *map, uint64_t copy_size,
			   uint64_t ahead_max);

struct pcow_map_stats {
	uint64_t vmas;          /* mappings (VMAs) that make up the range */
	uint64_t faults;        /* faults the library handled */
	uint64_t blocks_allocated; /* blocks the active layer holds */
	uint64_t blocks_copied; /* blocks copied up from older layers */
};

int pcow_map_get_stats(pcow_map *map, struct pcow_map_stats *stats);

/*
 * What a map holds that is not durable yet, beside the stores a flush
 * makes durable in any file mapping.  Zero-initialise and set struct_size:
 * struct pcow_map_pending p = {.struct_size = sizeof(p)}.
 */
struct pcow_map_pending {
	size_t struct_size;     /* sizeof(struct pcow_map_pending) */
	/* Blocks copied up whose ownership is in the pending log only: the
	 * next flush or persist interval records it in the image. */
	uint64_t blocks;
	/* Pages the kernel copied (PCOW_MAP_KERNEL_COW) and the library has
	 * not yet written back into the image: a killed process loses them. */
	uint64_t kernel_copies;
};

int pcow_map_get_pending(pcow_map *map, struct pcow_map_pending *pending);

#ifdef __cplusplus
}
#endif

#endif /* PCOW_H */
