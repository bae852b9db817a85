/*
 * commit.c -- merging an image's own data into its backing file.
 *
 * The image (and every image between it and the target) keeps showing the
 * same content at every instant: first each block it owns only because
 * nothing lay below gets its copy bit, so the target gaining data cannot
 * take the block over; then the owned blocks are copied into the target
 * and the target is persisted; only then is the image emptied, in one
 * metadata commit.  docs/format.md, section 5, "commit", has the order.
 *
 * The target and the images in between are part of the image's chain and
 * are held there read-only with a shared lock.  OFD locks of two open file
 * descriptions conflict even inside one process, so each is reopened for
 * writing with a shared lock first, the chain's lock is dropped, and the
 * new lock is upgraded in place: no other process can get in between, and
 * one that holds the file makes the upgrade fail.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "extent.h"
#include "image.h"
#include "layer.h"
#include "pending.h"
#include "persist.h"
#include "snapshot.h"
#include "stripe.h"

/* Data moves between the images in pieces of this size. */
#define COMMIT_CHUNK (1u << 20)

/* A range of the virtual disk, [start, end). */
struct range {
	uint64_t start, end;
};

struct ranges {
	struct range *v;
	size_t n, cap;
};

/* The images involved: chain[0] is the image, chain[1..ntarget-1] lie in
 * between, and the target is chain[ntarget] or, when raw, the raw file
 * below chain[ntarget - 1]. */
struct commit {
	pcow_image *chain[PCOW_MAX_CHAIN_DEPTH + 2];
	int ntarget;
	bool raw;
	pcow_image *target;     /* NULL for a raw target */
	const char *target_path;
	/* Read-write descriptions of chain[1..ntarget] (or of the raw file at
	 * index ntarget), with the read-only ones the chain held before. */
	int rw_fd[PCOW_MAX_CHAIN_DEPTH + 2];
	int ro_fd[PCOW_MAX_CHAIN_DEPTH + 2];
	/* For a striped chain[i]: its extent files' read-only and read-write
	 * descriptors, in pairs (stripe.h). */
	int *ext_fd[PCOW_MAX_CHAIN_DEPTH + 2];
	struct ranges own;      /* what the image sees from itself or between */
};

static int ranges_add(struct ranges *r, uint64_t start, uint64_t end)
{
	struct range *last = r->n ? &r->v[r->n - 1] : NULL;

	if (last && start >= last->start && start <= last->end) {
		if (end > last->end)
			last->end = end;
		return 0;
	}
	if (r->n == r->cap) {
		size_t cap = r->cap ? 2 * r->cap : 64;
		struct range *v = realloc(r->v, cap * sizeof(*v));

		if (!v)
			return pcow_err(-ENOMEM, "out of memory");
		r->v = v;
		r->cap = cap;
	}
	r->v[r->n].start = start;
	r->v[r->n].end = end;
	r->n++;
	return 0;
}

static int by_start(const void *a, const void *b)
{
	const struct range *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

/* Sorts and merges overlapping or touching ranges. */
static void ranges_normalize(struct ranges *r)
{
	size_t i, out = 0;

	if (!r->n)
		return;
	qsort(r->v, r->n, sizeof(*r->v), by_start);
	for (i = 1; i < r->n; i++) {
		if (r->v[i].start <= r->v[out].end) {
			if (r->v[i].end > r->v[out].end)
				r->v[out].end = r->v[i].end;
		} else {
			r->v[++out] = r->v[i];
		}
	}
	r->n = out + 1;
}

/* ---- Which blocks the image and the images in between own ------------- */

/*
 * Visits block of img (a candidate: some layer has data or a bit there).
 * If a layer of img's active view owns it, records the block and, with pin,
 * makes sure the owner holds it by its copy bit.
 */
static int visit_block(pcow_image *img, uint64_t block, bool pin,
		       struct ranges *out)
{
	uint64_t bs = img->block_size, end = (block + 1) * bs;
	uint32_t owner;
	int ret = pcow_block_owner(img, img->m.active, block, &owner);

	if (ret <= 0)
		return ret;
	if (pin) {
		ret = pcow_bit_test(img, owner, block);
		if (ret == 0)
			ret = pcow_bit_set(img, owner, block);
		return ret < 0 ? ret : 0;
	}
	if (end > img->m.virtual_size)
		end = img->m.virtual_size;
	return ranges_add(out, block * bs, end);
}

/*
 * Calls visit_block on every block of img's active view where a layer has
 * data or a copy bit: only those can be owned.
 */
static int scan_owned(pcow_image *img, bool pin, struct ranges *out)
{
	uint64_t bs = img->block_size, vsize = img->m.virtual_size, b, end;
	uint32_t l;
	int ret;

	for (l = img->m.active; l != PCOW_NO_PARENT; l = img->m.layers[l].parent) {
		uint64_t base = region_start(img, l);

		b = 0;
		while ((ret = pcow_extent_units(img->fd, base, bs, b, base + vsize,
						&b, &end)) > 0)
			for (; b < end; b++) {
				ret = visit_block(img, b, pin, out);
				if (ret < 0)
					return ret;
			}
		if (ret < 0)
			return ret;
		/* Bits without data: blocks discarded over data below. */
		for (b = 0; b < img->nblocks; b++) {
			ret = pcow_bit_test(img, l, b);
			if (ret > 0)
				ret = visit_block(img, b, pin, out);
			if (ret < 0)
				return ret;
		}
	}
	return 0;
}

/* ---- Finding the target ------------------------------------------------ */

static bool same_file(int fd, const struct stat *st)
{
	struct stat f;

	return fd >= 0 && fstat(fd, &f) == 0 && f.st_dev == st->st_dev &&
	       f.st_ino == st->st_ino;
}

/* Index of base in the chain (by file, or by a backing name stored in the
 * chain); ntarget of the raw file is the number of pcow images. */
static int find_target(struct commit *c, int n, const char *base)
{
	struct stat st;
	bool have_st = stat(base, &st) == 0;
	int i;

	for (i = 1; i <= n; i++) {
		pcow_image *above = c->chain[i - 1];
		int fd = i < n ? c->chain[i]->fd : above->raw_fd;

		if (i == n && fd < 0)
			break;
		if ((have_st && same_file(fd, &st)) || !strcmp(above->m.backing, base))
			return i;
	}
	return pcow_err(-ENOENT, "%s: Did not find '%s' in the backing chain",
			c->chain[0]->path, base);
}

static int refuse_snapshots(const pcow_image *img, bool top)
{
	if (!img->m.snapshot_count)
		return 0;
	return pcow_err(-ENOTSUP, "%s: %s has internal snapshots, which would see the data commit writes into the backing file; delete them first",
			img->path, top ? "the image" : "this image in the backing chain");
}

static int prepare(struct commit *c, pcow_image *img, const char *base,
		   unsigned flags)
{
	int n = 0, i, ret;

	memset(c, 0, sizeof(*c));
	for (i = 0; i < PCOW_MAX_CHAIN_DEPTH + 2; i++)
		c->rw_fd[i] = c->ro_fd[i] = -1;
	ret = pcow_require_writable(img);
	if (ret < 0)
		return ret;
	if (!img->m.backing)
		return pcow_err(-EINVAL, "%s: Image does not have a backing file", img->path);
	if (!img->backing && img->raw_fd < 0)
		return pcow_err(-EINVAL, "%s: the backing file is not open", img->path);
	for (pcow_image *p = img; p; p = p->backing)
		c->chain[n++] = p;
	c->ntarget = base ? find_target(c, n, base) : 1;
	if (c->ntarget < 0)
		return c->ntarget;
	c->raw = c->ntarget == n;
	c->target = c->raw ? NULL : c->chain[c->ntarget];
	c->target_path = c->raw ? c->chain[n - 1]->backing_path : c->target->path;
	if (c->ntarget > 1 && !(flags & PCOW_COMMIT_KEEP))
		return pcow_err(-EINVAL, "%s: committing into '%s' leaves the images in between invalid; the image must be kept (PCOW_COMMIT_KEEP)",
				img->path, base);
	for (i = 0; i <= c->ntarget && i < n; i++) {
		if (c->chain[i]->map)
			return pcow_err(-EBUSY, "%s: image is mapped; unmap it first",
					c->chain[i]->path);
		if (i < c->ntarget && (ret = refuse_snapshots(c->chain[i], i == 0)) < 0)
			return ret;
	}
	return 0;
}

/* ---- Taking the target and the images in between for writing ---------- */

static int ofd_lock(int fd, short type)
{
	struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = 0,
			   .l_len = 1};

	return fcntl(fd, F_OFD_SETLK, &fl) == 0 ? 0 : -errno;
}

/* Opens path read-write with the exclusive lock, in place of ro_fd's
 * shared one (see the top of the file). */
static int lock_for_writing(const char *path, int ro_fd, int *rw_fd)
{
	struct stat st;
	int fd, ret;

	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return pcow_err_sys(-errno, "%s: cannot open for writing", path);
	if (fstat(fd, &st) < 0 || !same_file(ro_fd, &st)) {
		close(fd);
		return pcow_err(-ESTALE, "%s: the file was replaced while open", path);
	}
	ret = ofd_lock(fd, F_RDLCK);
	if (ret == 0) {
		ret = ofd_lock(ro_fd, F_UNLCK);
		if (ret == 0) {
			ret = ofd_lock(fd, F_WRLCK);
			if (ret < 0)
				ofd_lock(ro_fd, F_RDLCK);
		}
	}
	if (ret < 0) {
		close(fd);
		if (ret == -EAGAIN || ret == -EACCES)
			return pcow_err(-EBUSY, "%s: image is in use (opened by another process); commit needs it exclusively",
					path);
		return pcow_err_sys(ret, "%s: cannot lock", path);
	}
	*rw_fd = fd;
	return 0;
}

/* Gives the chain back its read-only description and shared lock (the
 * write lock is downgraded first: two descriptions' locks conflict).  The
 * lock is dropped explicitly: a bitmap mapped through rw_fd keeps its
 * description, and so its lock, alive after the close. */
static void unlock_writing(int ro_fd, int rw_fd)
{
	ofd_lock(rw_fd, F_RDLCK);
	ofd_lock(ro_fd, F_RDLCK);
	ofd_lock(rw_fd, F_UNLCK);
	close(rw_fd);
}

/* Gives chain[i]'s first n extent files back their read-only
 * descriptors, and the routing the image's. */
static void give_back_extents(struct commit *c, int i, uint32_t n)
{
	struct pcow_stripes *s = c->chain[i]->stripes;
	uint32_t k;

	if (!c->ext_fd[i])
		return;
	for (k = 0; k < n; k++) {
		unlock_writing(c->ext_fd[i][2 * k], c->ext_fd[i][2 * k + 1]);
		s->fds[k] = c->ext_fd[i][2 * k];
	}
	s->fd = c->ro_fd[i];
	free(c->ext_fd[i]);
	c->ext_fd[i] = NULL;
}

/*
 * A striped image written through its new descriptor writes its extent
 * files too: each is taken for writing as the image file was, and the
 * routing follows the image's new descriptor.
 */
static int take_extents(struct commit *c, int i, pcow_image *p)
{
	struct pcow_stripes *s = p->stripes;
	uint32_t k;
	int ret = 0;

	if (!s)
		return 0;
	c->ext_fd[i] = calloc(2 * s->n, sizeof(int));
	if (!c->ext_fd[i])
		return pcow_err(-ENOMEM, "out of memory");
	for (k = 0; k < s->n && ret == 0; k++) {
		char *path = pcow_stripe_path(p, k);

		c->ext_fd[i][2 * k] = s->fds[k];
		ret = path ? lock_for_writing(path, s->fds[k], &c->ext_fd[i][2 * k + 1])
			   : pcow_err(-ENOMEM, "out of memory");
		free(path);
	}
	if (ret < 0) {
		give_back_extents(c, i, k - 1);
		return ret;
	}
	for (k = 0; k < s->n; k++)
		s->fds[k] = c->ext_fd[i][2 * k + 1];
	s->fd = p->fd;
	return 0;
}

static void release_all(struct commit *c)
{
	int i;

	for (i = c->ntarget; i >= 1; i--) {
		if (c->rw_fd[i] < 0)
			continue;
		if (i < c->ntarget || !c->raw) {
			/* After a failure, copy bits still pending would be
			 * lost once the image is read-only again; their data
			 * is written, so persist them (best effort). */
			(void)pcow_pending_persist(c->chain[i]);
			c->chain[i]->fd = c->ro_fd[i];
			c->chain[i]->rdonly = true;
			give_back_extents(c, i, c->chain[i]->stripes ? c->chain[i]->stripes->n : 0);
		}
		unlock_writing(c->ro_fd[i], c->rw_fd[i]);
		c->rw_fd[i] = -1;
	}
}

static int take_all(struct commit *c)
{
	int i, ret;


	for (i = c->ntarget; i >= 1; i--) {
		bool raw = c->raw && i == c->ntarget;
		pcow_image *p = raw ? c->chain[i - 1] : c->chain[i];
		int ro = raw ? p->raw_fd : p->fd;

		ret = lock_for_writing(raw ? p->backing_path : p->path, ro,
				       &c->rw_fd[i]);
		if (ret < 0) {
			release_all(c);
			return ret;
		}
		c->ro_fd[i] = ro;
		if (!raw) {
			/* The library's own write path then serves the target. */
			p->fd = c->rw_fd[i];
			p->rdonly = false;
			ret = take_extents(c, i, p);
			if (ret < 0) {
				release_all(c);
				return ret;
			}
		}
	}
	return 0;
}

/* ---- Copying ------------------------------------------------------------- */

static int target_read(struct commit *c, uint8_t *buf, uint64_t n, uint64_t off)
{
	if (c->raw)
		return pcow_io_pread(c->rw_fd[c->ntarget], buf, n, off);
	return pcow_read(c->target, buf, n, off);
}

static int target_write(struct commit *c, const uint8_t *buf, uint64_t n,
			uint64_t off)
{
	if (c->raw)
		return pcow_io_pwrite(c->rw_fd[c->ntarget], buf, n, off);
	return pcow_write(c->target, buf, n, off);
}

static int target_flush(struct commit *c)
{
	if (c->raw)
		return pcow_io_sync(c->rw_fd[c->ntarget]);
	return pcow_flush(c->target);
}

/* A pcow target cannot grow here: the data must fit. */
static int check_target_size(struct commit *c, pcow_image *img)
{
	uint64_t need = c->own.n ? c->own.v[c->own.n - 1].end : 0;

	if (c->raw || need <= c->target->m.virtual_size)
		return 0;
	return pcow_err(-EFBIG, "%s: the image has data past the end of '%s' (%llu bytes); resize it first",
			img->path, c->target_path,
			(unsigned long long)c->target->m.virtual_size);
}

/* A raw target shorter than the data grows to the image's size, as with
 * qemu-img; the new part is a hole, which reads as the zeros the image saw
 * past the old end. */
static int extend_raw_target(struct commit *c, pcow_image *img)
{
	uint64_t need = c->own.n ? c->own.v[c->own.n - 1].end : 0;
	pcow_image *holder = c->chain[c->ntarget - 1];
	int ret;

	if (!c->raw || need <= holder->raw_size)
		return 0;
	ret = pcow_io_truncate(c->rw_fd[c->ntarget], img->m.virtual_size);
	if (ret == 0)
		holder->raw_size = img->m.virtual_size;
	return ret;
}

/* Copies what the image sees in its own ranges into the target, skipping
 * pieces the target already holds. */
static int copy_into_target(struct commit *c, pcow_image *img)
{
	uint64_t total = 0, done = 0, reported = 0, off, n;
	uint8_t *src = malloc(COMMIT_CHUNK), *dst = malloc(COMMIT_CHUNK);
	size_t i;
	int ret = 0;

	if (!src || !dst) {
		ret = pcow_err(-ENOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < c->own.n; i++)
		total += c->own.v[i].end - c->own.v[i].start;
	if (total)
		pcow_progress(img, 0, total);
	for (i = 0; i < c->own.n && ret == 0; i++) {
		for (off = c->own.v[i].start; off < c->own.v[i].end && ret == 0; off += n) {
			n = c->own.v[i].end - off;
			if (n > COMMIT_CHUNK - off % COMMIT_CHUNK)
				n = COMMIT_CHUNK - off % COMMIT_CHUNK;
			ret = pcow_chain_read(img, img->m.active, src, n, off);
			if (ret == 0)
				ret = target_read(c, dst, n, off);
			if (ret == 0 && memcmp(src, dst, n))
				ret = target_write(c, src, n, off);
			done += n;
			/* At most one report per percent. */
			if (ret == 0 && done < total &&
			    done * 100 / total != reported * 100 / total) {
				reported = done;
				pcow_progress(img, done, total);
			}
		}
	}
	if (ret == 0)
		ret = target_flush(c);
	if (ret == 0)
		pcow_progress(img, total, total);
out:
	free(src);
	free(dst);
	return ret;
}

/* ---- Emptying the image ------------------------------------------------- */

/*
 * Replaces every layer with one fresh, empty layer in a single metadata
 * commit, then frees the old regions.  The fresh region is emptied durably
 * first: a crash may have left data in it.
 */
static int empty_image(pcow_image *img)
{
	struct pcow_meta next;
	uint64_t *old;
	uint32_t r = 0, i, nold = img->m.layer_count;
	int ret;

	old = calloc(nold, sizeof(*old));
	if (!old)
		return pcow_err(-ENOMEM, "out of memory");
	for (i = 0; i < nold; i++)
		old[i] = region_start(img, i);
	ret = pcow_take_region(img, &img->m, &r);
	if (ret == 0)
		ret = pcow_meta_copy(&next, &img->m);
	if (ret < 0)
		goto out;
	next.layer_count = 1;
	next.layers[0].region = r;
	next.layers[0].parent = PCOW_NO_PARENT;
	next.layers[0].flags = 0;
	next.active = 0;
	ret = pcow_meta_commit(img, &next);
	pcow_meta_free(&next);
	for (i = 0; i < nold && ret == 0; i++)
		ret = pcow_io_punch(img->fd, old[i], img->stride);
	if (ret == 0)
		ret = pcow_io_sync(img->fd);
out:
	free(old);
	return ret;
}

/* ---- The operation --------------------------------------------------------- */

static int commit_locked(struct commit *c, pcow_image *img, unsigned flags)
{
	size_t n;
	int i, ret;

	/* Pending copy bits become durable, so the scan sees the disk's. */
	ret = pcow_flush(img);
	for (i = 0; i < c->ntarget && ret == 0; i++)
		ret = scan_owned(c->chain[i], false, &c->own);
	if (ret < 0)
		return ret;
	/* Only the image's own view is committed (an image in between may
	 * be larger). */
	for (n = 0, i = 0; (size_t)i < c->own.n; i++) {
		if (c->own.v[i].start >= img->m.virtual_size)
			continue;
		c->own.v[n] = c->own.v[i];
		if (c->own.v[n].end > img->m.virtual_size)
			c->own.v[n].end = img->m.virtual_size;
		n++;
	}
	c->own.n = n;
	ranges_normalize(&c->own);
	ret = check_target_size(c, img);
	if (ret == 0)
		ret = take_all(c);
	if (ret < 0)
		return ret;
	/* From here on the target changes; every view above stays. */
	for (i = 0; i < c->ntarget && ret == 0; i++) {
		pcow_image *p = c->chain[i];

		ret = pcow_io_sync(p->fd);
		if (ret == 0)
			ret = scan_owned(p, true, NULL);
		if (ret == 0)
			ret = pcow_io_sync(p->fd);
	}
	if (ret == 0)
		ret = extend_raw_target(c, img);
	if (ret == 0)
		ret = copy_into_target(c, img);
	if (ret == 0 && !(flags & PCOW_COMMIT_KEEP))
		ret = empty_image(img);
	release_all(c);
	return ret;
}

int pcow_commit(pcow_image *img, const char *base, unsigned flags)
{
	struct commit *c = calloc(1, sizeof(*c));
	int ret;

	if (!c)
		return pcow_err(-ENOMEM, "out of memory");
	pthread_mutex_lock(&img->lock);
	ret = prepare(c, img, base, flags);
	if (ret == 0)
		ret = commit_locked(c, img, flags);
	pthread_mutex_unlock(&img->lock);
	free(c->own.v);
	free(c);
	return ret;
}
