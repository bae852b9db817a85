/*
 * pending.c -- copy bits waiting for the next flush (see pending.h).
 *
 * The bits wait in a file on tmpfs, not in the process: a process that
 * dies (kill -9, a crash) leaves its stores in the page cache, and its
 * copy bits must stay with them, or blocks it copied up would fall back to
 * their inherited content.  A reboot empties tmpfs, and with it the bits
 * whose data the page cache may not have written: the same rule as a
 * power failure before a flush.  The next open of the image finds the
 * file and applies its bits (pcow_pending_recover).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "error.h"
#include "layer.h"
#include "pending.h"
#include "persist.h"

/*
 * Words of bitmap that may wait at once.  Each covers 64 blocks, so a full
 * list means thousands of copy-ups share one fdatasync.
 */
#define PENDING_MAX 4096u

#define PENDING_MAGIC "PCOWPEND"
#define PENDING_HEADER 4096u

/* The pending file's header; its body holds one shadow bitmap per region. */
struct pending_header {
	char magic[8];
	uint64_t dev, ino;      /* the image file it belongs to ... */
	int64_t btime_sec;      /* ... and that file's birth, against reuse */
	uint64_t btime_nsec;
	uint64_t shadow_len;    /* bytes per region: the bitmap span */
	char image[3968];       /* the image's absolute path when written,
				 * for removing files whose image is gone */
};

struct pending_word {
	uint32_t region;
	uint64_t word;
};

/* The state hangs off the image; mmap, not malloc: it grows inside the
 * write-fault handler. */
struct pcow_pending {
	int fd;
	uint64_t *body;         /* shadow of region r at r * shadow_len bytes */
	uint64_t shadow_len;
	bool writable;          /* ours; otherwise a dead writer's, read-only */
	char path[96];
	char scratch[PATH_MAX];
	struct pending_word list[PENDING_MAX];
	uint32_t count;
};

static uint64_t body_len(uint64_t shadow_len)
{
	return (uint64_t)PCOW_MAX_REGIONS * shadow_len;
}

/* The header this image's pending file must have. */
static int identity(pcow_image *img, struct pending_header *h)
{
	struct statx sx;

	memset(h, 0, sizeof(*h));
	if (statx(img->fd, "", AT_EMPTY_PATH, STATX_INO | STATX_BTIME, &sx) < 0)
		return -errno;
	memcpy(h->magic, PENDING_MAGIC, 8);
	h->dev = (uint64_t)sx.stx_dev_major << 32 | sx.stx_dev_minor;
	h->ino = sx.stx_ino;
	if (sx.stx_mask & STATX_BTIME) {
		h->btime_sec = sx.stx_btime.tv_sec;
		h->btime_nsec = sx.stx_btime.tv_nsec;
	}
	h->shadow_len = img->bitmap_span;
	return 0;
}

/* The header with the image's absolute path, as a new file gets it;
 * scratch is PATH_MAX bytes (not malloc: this runs in the fault handler). */
static void name_image(pcow_image *img, struct pending_header *h, char *scratch)
{
	if (realpath(img->path, scratch) && strlen(scratch) < sizeof(h->image))
		strcpy(h->image, scratch);
}

/* True when the header's image no longer exists as that file. */
static bool orphan(const struct pending_header *h)
{
	struct statx sx;

	if (!h->image[0] || memchr(h->image, 0, sizeof(h->image)) == NULL)
		return false;
	if (statx(AT_FDCWD, h->image, 0, STATX_INO | STATX_BTIME, &sx) < 0)
		return errno == ENOENT;
	return ((uint64_t)sx.stx_dev_major << 32 | sx.stx_dev_minor) != h->dev ||
	       sx.stx_ino != h->ino ||
	       ((sx.stx_mask & STATX_BTIME) &&
		(sx.stx_btime.tv_sec != h->btime_sec ||
		 (uint64_t)sx.stx_btime.tv_nsec != h->btime_nsec));
}

/*
 * Removes pending files whose image is gone (deleted after its writer
 * died): nothing else would.  Runs at each read-write open.
 */
static void sweep(void)
{
	const char *dir = getenv("PCOW_PENDING_DIR");
	struct pending_header h;
	struct dirent *e;
	DIR *d;

	d = opendir(dir && dir[0] ? dir : "/dev/shm");
	if (!d)
		return;
	while ((e = readdir(d))) {
		int fd;

		if (strncmp(e->d_name, "pcow-pending-", 13))
			continue;
		fd = openat(dirfd(d), e->d_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		if (fd < 0)
			continue;
		if (pread(fd, &h, sizeof(h), 0) == (ssize_t)sizeof(h) &&
		    !memcmp(h.magic, PENDING_MAGIC, 8) && orphan(&h))
			unlinkat(dirfd(d), e->d_name, 0);
		close(fd);
	}
	closedir(d);
}

static void path_of(const struct pending_header *h, char *buf, size_t len)
{
	const char *dir = getenv("PCOW_PENDING_DIR");

	snprintf(buf, len, "%s/pcow-pending-%llx-%llx", dir && dir[0] ? dir : "/dev/shm",
		 (unsigned long long)h->dev, (unsigned long long)h->ino);
}

static struct pcow_pending *new_state(void)
{
	struct pcow_pending *ps = mmap(NULL, sizeof(*ps), PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (ps == MAP_FAILED)
		return NULL;
	ps->fd = -1;
	return ps;
}

static void drop_state(pcow_image *img, bool unlink_file)
{
	struct pcow_pending *ps = img->pending;

	if (!ps)
		return;
	if (ps->body)
		munmap(ps->body, body_len(ps->shadow_len));
	if (ps->fd >= 0)
		close(ps->fd);
	if (unlink_file && ps->writable)
		unlink(ps->path);
	munmap(ps, sizeof(*ps));
	img->pending = NULL;
}

/* Creates this image's pending file and maps it: -ENOTSUP when it cannot
 * (no tmpfs), and the caller persists its bit at once instead. */
static int create_file(pcow_image *img)
{
	struct pending_header h;
	struct pcow_pending *ps;
	struct statfs sfs;
	void *p;

	if (identity(img, &h) < 0 || !(ps = new_state()))
		return -ENOTSUP;
	name_image(img, &h, ps->scratch);
	img->pending = ps;
	path_of(&h, ps->path, sizeof(ps->path));
	ps->shadow_len = h.shadow_len;
	ps->writable = true;
	ps->fd = open(ps->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	/* Only memory that a reboot empties may hold bits without their
	 * data being durable. */
	if (ps->fd < 0 || fstatfs(ps->fd, &sfs) < 0 ||
	    (sfs.f_type != TMPFS_MAGIC && sfs.f_type != RAMFS_MAGIC) ||
	    ftruncate(ps->fd, (off_t)(PENDING_HEADER + body_len(h.shadow_len))) < 0 ||
	    pwrite(ps->fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h))
		goto fail;
	p = mmap(NULL, body_len(h.shadow_len), PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_NORESERVE, ps->fd, PENDING_HEADER);
	if (p == MAP_FAILED)
		goto fail;
	ps->body = p;
	return 0;
fail:
	drop_state(img, true);
	return -ENOTSUP;
}

int pcow_pending_set(pcow_image *img, uint32_t layer, uint64_t block)
{
	uint32_t region = img->m.layers[layer].region;
	struct pcow_pending *ps = img->pending;
	uint64_t *shadow, word = block / 64;
	int ret;

	if (ps && !ps->writable)
		return -ENOTSUP;
	if (!ps) {
		ret = create_file(img);
		if (ret < 0)
			return ret;
		ps = img->pending;
	}
	if (ps->count == PENDING_MAX) {
		ret = pcow_pending_persist(img);
		if (ret < 0)
			return ret;
		return pcow_pending_set(img, layer, block);
	}
	shadow = ps->body + region * (ps->shadow_len / 8);
	if (!shadow[word])
		ps->list[ps->count++] = (struct pending_word){region, word};
	/* A store to the shared file: it outlives this process. */
	__atomic_or_fetch(&shadow[word], 1ull << (block % 64), __ATOMIC_RELAXED);
	return 0;
}

bool pcow_pending_test(const pcow_image *img, uint32_t region, uint64_t block)
{
	const struct pcow_pending *ps = img->pending;
	const uint64_t *shadow;

	if (!ps || !ps->body || block / 8 >= ps->shadow_len)
		return false;
	shadow = ps->body + region * (ps->shadow_len / 8);
	return shadow[block / 64] >> (block % 64) & 1;
}

uint64_t pcow_pending_word(const pcow_image *img, uint32_t region, uint64_t word)
{
	const struct pcow_pending *ps = img->pending;

	if (!ps || !ps->body || word >= ps->shadow_len / 8)
		return 0;
	return ps->body[region * (ps->shadow_len / 8) + word];
}

bool pcow_pending_any(const pcow_image *img)
{
	return img->pending && img->pending->body;
}

int pcow_pending_persist(pcow_image *img)
{
	struct pcow_pending *ps = img->pending;
	uint32_t i;
	int ret;

	if (!ps || !ps->writable || !ps->count)
		return 0;
	ret = pcow_io_sync(img->fd);
	for (i = 0; i < ps->count && ret == 0; i++) {
		struct pending_word *w = &ps->list[i];
		uint64_t *shadow = ps->body + w->region * (ps->shadow_len / 8);

		ret = pcow_bits_or(img, w->region, w->word, shadow[w->word]);
		if (ret < 0)
			break;
		/* The image's bitmap holds it now: the shadow may forget it. */
		shadow[w->word] = 0;
	}
	if (ret < 0) {
		/* What was not written waits for the next try. */
		memmove(ps->list, ps->list + i, (ps->count - i) * sizeof(ps->list[0]));
		ps->count -= i;
		return ret;
	}
	ps->count = 0;
	/* A new file next time: the bitmap size may change (resize). */
	drop_state(img, true);
	return 0;
}

int pcow_pending_each(pcow_image *img, uint32_t region,
		      int (*fn)(pcow_image *img, uint64_t block, void *opaque),
		      void *opaque)
{
	struct pcow_pending *ps = img->pending;
	uint32_t i;
	int ret;

	for (i = 0; ps && i < ps->count; i++) {
		const uint64_t *shadow = ps->body + ps->list[i].region * (ps->shadow_len / 8);
		uint64_t bits = shadow[ps->list[i].word];

		if (ps->list[i].region != region)
			continue;
		for (; bits; bits &= bits - 1) {
			ret = fn(img, ps->list[i].word * 64 +
					      (uint64_t)__builtin_ctzll(bits),
				 opaque);
			if (ret < 0)
				return ret;
		}
	}
	return 0;
}

/* ORs every word a dead writer left in its shadow of region r into the
 * image's bitmap; the caller persisted the data first. */
static int apply_region(pcow_image *img, const uint64_t *shadow, uint32_t r,
			uint64_t shadow_off)
{
	uint64_t words = (img->nblocks + 63) / 64, w;
	const uint64_t page_words = 4096 / 8;
	int ret;

	for (w = 0; w < words; w++) {
		if (w % page_words == 0) {
			/* Skip the holes of the shadow a page at a time. */
			off_t d = lseek(img->pending->fd, (off_t)(shadow_off + w * 8), SEEK_DATA);

			if (d < 0 || (uint64_t)d >= shadow_off + words * 8)
				return 0;
			w = ((uint64_t)d - shadow_off) / 8;
		}
		if (shadow[w]) {
			ret = pcow_bits_or(img, r, w, shadow[w]);
			if (ret < 0)
				return ret;
		}
	}
	return 0;
}

int pcow_pending_recover(pcow_image *img)
{
	struct pending_header want, got;
	struct pcow_pending *ps;
	uint32_t i;
	int ret = 0;
	void *p;

	if (identity(img, &want) < 0 || !(ps = new_state()))
		return 0;
	img->pending = ps;
	path_of(&want, ps->path, sizeof(ps->path));
	ps->fd = open(ps->path, (img->rdonly ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOFOLLOW);
	if (!img->rdonly)
		sweep();
	if (ps->fd < 0 || pread(ps->fd, &got, sizeof(got), 0) != (ssize_t)sizeof(got) ||
	    memcmp(&got, &want, offsetof(struct pending_header, image))) {
		/* None, or left by a deleted file that had this inode. */
		ps->writable = !img->rdonly && ps->fd >= 0;
		drop_state(img, true);
		return 0;
	}
	ps->shadow_len = want.shadow_len;
	p = mmap(NULL, body_len(ps->shadow_len), PROT_READ, MAP_SHARED | MAP_NORESERVE,
		 ps->fd, PENDING_HEADER);
	if (p == MAP_FAILED) {
		drop_state(img, false);
		return pcow_err(-ENOMEM, "%s: cannot map pending copy bits", img->path);
	}
	ps->body = p;
	if (img->rdonly)
		return 0;  /* read through the shadow; a writer applies it */
	/* The data the bits vouch for is in the page cache (same boot, or
	 * the file would be gone): persist it, then the bits. */
	ret = pcow_io_sync(img->fd);
	for (i = 0; i < img->m.layer_count && ret == 0; i++) {
		uint32_t r = img->m.layers[i].region;

		ret = apply_region(img, ps->body + r * (ps->shadow_len / 8), r,
				   PENDING_HEADER + r * ps->shadow_len);
	}
	if (ret == 0)
		ret = pcow_io_sync(img->fd);
	ps->writable = ret == 0;
	drop_state(img, ret == 0);
	return ret;
}

void pcow_pending_release(pcow_image *img)
{
	struct pcow_pending *ps = img->pending;

	/* A file still holding bits stays for the next open to apply. */
	drop_state(img, ps && ps->count == 0);
}
