/* stripe.c -- striped images: routing offsets to extent files (stripe.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "error.h"
#include "numa.h"
#include "persist.h"
#include "stripe.h"

/*
 * The open striped images.  Readers (any I/O, the fault handler) scan it
 * without a lock; an entry is published after it is complete and removed
 * before it is freed, and its image file is not closed before then, so a
 * descriptor is never matched to another file's striping.
 */
#define STRIPED_MAX 256

static _Atomic(struct pcow_stripes *) striped[STRIPED_MAX];
static atomic_int striped_count;
static atomic_int striped_end;          /* past the highest slot ever used */
static pthread_mutex_t striped_lock = PTHREAD_MUTEX_INITIALIZER;

const struct pcow_stripes *pcow_stripes_of(int fd)
{
	int i;

	/* Unstriped images only: one load. */
	if (fd < 0 || atomic_load_explicit(&striped_count, memory_order_acquire) == 0)
		return NULL;
	for (i = 0; i < atomic_load_explicit(&striped_end, memory_order_acquire); i++) {
		struct pcow_stripes *s = atomic_load_explicit(&striped[i], memory_order_acquire);

		if (s && s->fd == fd)
			return s;
	}
	return NULL;
}

int pcow_stripe_route(const struct pcow_stripes *s, uint64_t off, uint64_t *end)
{
	const pcow_image *img = s->img;
	uint64_t base = img->m.region_base, stride = img->stride, span = img->span;
	uint64_t r, x, start, stripe;

	/* While a resize moves the regions, the new layout's place (past the
	 * old one's end) is routed by the new layout. */
	if (s->next_base && off >= s->next_base) {
		base = s->next_base;
		stride = s->next_stride;
		span = s->next_span;
	}
	if (off < base) {
		*end = base;
		return s->fd;
	}
	r = (off - base) / stride;
	if (r >= PCOW_MAX_REGIONS) {
		*end = UINT64_MAX;
		return s->fd;
	}
	start = base + r * stride;
	x = off - start;
	if (x >= span) {                /* the region's copy bitmap */
		*end = start + stride;
		return s->fd;
	}
	stripe = x >> s->bits;
	*end = start + ((stripe + 1) << s->bits);
	if (*end > start + span)
		*end = start + span;
	return s->fds[stripe % s->n];
}

void pcow_stripes_set_next(pcow_image *img, uint64_t base, uint64_t stride,
			   uint64_t span)
{
	struct pcow_stripes *s = img->stripes;

	if (!s)
		return;
	s->next_stride = stride;
	s->next_span = span;
	s->next_base = base;
}

/*
 * The first data of file at or after off that lies where the layout puts
 * that file's bytes: data elsewhere in it (which nothing reads) is passed
 * over, a piece at a time.
 */
static off_t own_data(const struct pcow_stripes *s, int file, uint64_t off)
{
	for (;;) {
		off_t d = lseek(file, (off_t)off, SEEK_DATA);
		uint64_t end;

		if (d < 0)
			return d;
		if (pcow_stripe_route(s, (uint64_t)d, &end) == file)
			return d;
		off = end;
	}
}

static off_t seek_data(const struct pcow_stripes *s, uint64_t off)
{
	off_t best = -1, d;
	uint32_t i;

	for (i = 0; i <= s->n; i++) {
		d = own_data(s, i < s->n ? s->fds[i] : s->fd, off);
		if (d < 0 && errno != ENXIO)
			return -1;
		if (d >= 0 && (best < 0 || d < best))
			best = d;
	}
	if (best < 0)
		errno = ENXIO;
	return best;
}

static off_t seek_hole(const struct pcow_stripes *s, uint64_t off)
{
	for (;;) {
		uint64_t end;
		int file = pcow_stripe_route(s, off, &end);
		off_t h = lseek(file, (off_t)off, SEEK_HOLE);

		/* Past an extent file's end: a hole (the image file's end is
		 * the image's). */
		if (h < 0 && errno == ENXIO && file != s->fd)
			return (off_t)off;
		if (h < 0 || (uint64_t)h < end)
			return h;
		off = end;
	}
}

off_t pcow_stripe_lseek(int fd, uint64_t off, int whence)
{
	const struct pcow_stripes *s = pcow_stripes_of(fd);

	if (!s)
		return lseek(fd, (off_t)off, whence);
	return whence == SEEK_DATA ? seek_data(s, off) : seek_hole(s, off);
}

int pcow_stripe_mmap(void *addr, uint64_t len, int prot, int flags, int fd,
		     uint64_t off)
{
	const struct pcow_stripes *s = pcow_stripes_of(fd);
	uint8_t *p = addr;

	if (!s)
		return mmap(addr, len, prot, flags, fd, (off_t)off) == MAP_FAILED ? -1 : 0;
	while (len) {
		uint64_t end, n;
		int file = pcow_stripe_route(s, off, &end);

		n = end - off < len ? end - off : len;
		if (mmap(p, n, prot, flags | MAP_FIXED, file, (off_t)off) == MAP_FAILED)
			return -1;
		for (uint32_t i = 0; i < s->n; i++)
			if (s->fds[i] == file && s->nodes[i] >= 0 &&
			    pcow_numa_bind(p, n, (unsigned)s->nodes[i]) < 0)
				return -1;
		p += n;
		off += n;
		len -= n;
	}
	return 0;
}

int pcow_stripes_strays(const pcow_image *img, uint32_t file, pcow_stray_fn fn,
			void *opaque)
{
	const struct pcow_stripes *s = img->stripes;
	int fd = file < s->n ? s->fds[file] : s->fd, ret;
	off_t d = (off_t)img->m.region_base, h;
	uint64_t pos, end;

	for (;;) {
		d = lseek(fd, d, SEEK_DATA);
		if (d < 0 && errno == ENXIO)
			return 0;
		h = d < 0 ? d : lseek(fd, d, SEEK_HOLE);
		if (h < 0)
			return pcow_err_sys(-errno, "%s: cannot query allocation", img->path);
		for (pos = (uint64_t)d; pos < (uint64_t)h; pos = end) {
			bool own = pcow_stripe_route(s, pos, &end) == fd;

			if (end > (uint64_t)h)
				end = (uint64_t)h;
			if (!own && (ret = fn(fd, pos, end - pos, opaque)) < 0)
				return ret;
		}
		d = h;
	}
}

char *pcow_stripe_path(const pcow_image *img, uint32_t i)
{
	return pcow_resolve_path(img->dir, img->m.extents[i]);
}

static void header_encode(const struct pcow_meta *m, uint32_t i, uint8_t *h)
{
	memset(h, 0, PCOW_EXTENT_HEADER_SIZE);
	memcpy(h, PCOW_EXTENT_MAGIC, 8);
	pcow_put_le32(h + 8, 1);
	pcow_put_le32(h + 12, i);
	pcow_put_le32(h + 16, m->extent_count);
	pcow_put_le32(h + 20, m->stripe_bits);
	memcpy(h + 24, m->uuid, PCOW_UUID_SIZE);
	pcow_put_le32(h + 40, (uint32_t)crc32(0, h, 40));
}

/*
 * Whether the header read from extent file i belongs to m, as its i-th
 * file: one message per way it can be wrong.
 */
static int header_check(const pcow_image *img, uint32_t i, const char *path,
			const uint8_t *h)
{
	const struct pcow_meta *m = &img->m;

	if (memcmp(h, PCOW_EXTENT_MAGIC, 8) || pcow_le32(h + 8) != 1 ||
	    pcow_le32(h + 40) != (uint32_t)crc32(0, h, 40))
		return pcow_err(-EUCLEAN, "%s: extent file %u of the image, '%s', is not a pcow extent file",
				img->path, i, path);
	if (memcmp(h + 24, m->uuid, PCOW_UUID_SIZE))
		return pcow_err(-EUCLEAN, "%s: extent file %u, '%s', belongs to another image",
				img->path, i, path);
	if (pcow_le32(h + 12) != i || pcow_le32(h + 16) != m->extent_count ||
	    pcow_le32(h + 20) != m->stripe_bits)
		return pcow_err(-EUCLEAN, "%s: extent file %u, '%s', is extent file %u of %u (stripe size 2^%u): extent files swapped or changed",
				img->path, i, path, pcow_le32(h + 12), pcow_le32(h + 16),
				pcow_le32(h + 20));
	return 0;
}

static int open_one(pcow_image *img, uint32_t i, bool write, bool lock,
		    bool for_writer, int *out)
{
	uint8_t h[PCOW_EXTENT_HEADER_SIZE];
	char *path = pcow_stripe_path(img, i);
	uint64_t need = pcow_image_required_size(img, &img->m);
	struct stat st;
	int fd, ret;

	if (!path)
		return pcow_err(-ENOMEM, "out of memory");
	fd = open(path, (write ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		ret = pcow_err_sys(-errno, "%s: cannot open extent file %u, '%s'",
				   img->path, i, path);
		goto out;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		ret = pcow_err(-ENODEV, "%s: extent file %u, '%s', is not a regular file",
			       img->path, i, path);
		goto out;
	}
	ret = lock ? pcow_lock_file(fd, write, for_writer, path) : 0;
	if (ret == 0)
		ret = pcow_io_pread(fd, h, sizeof(h), 0);
	if (ret == 0)
		ret = header_check(img, i, path, h);
	if (ret == 0 && (uint64_t)st.st_size < need)
		ret = pcow_err(-EINVAL, "%s: extent file %u, '%s', is truncated (%lld bytes, needs %llu)",
			       img->path, i, path, (long long)st.st_size,
			       (unsigned long long)need);
out:
	free(path);
	if (ret < 0 && fd >= 0)
		close(fd);
	if (ret == 0)
		*out = fd;
	return ret;
}

/* Makes s findable by its descriptor; -EMFILE when every slot is taken. */
static int publish(struct pcow_stripes *s)
{
	int i, ret = -EMFILE;

	pthread_mutex_lock(&striped_lock);
	for (i = 0; i < STRIPED_MAX && ret < 0; i++)
		if (!atomic_load(&striped[i])) {
			atomic_store(&striped[i], s);
			if (atomic_load(&striped_end) <= i)
				atomic_store(&striped_end, i + 1);
			atomic_fetch_add(&striped_count, 1);
			ret = 0;
		}
	pthread_mutex_unlock(&striped_lock);
	return ret;
}

int pcow_stripes_open(pcow_image *img, bool write, bool lock, bool for_writer)
{
	struct pcow_stripes *s;
	uint32_t i;
	int ret = 0;

	if (!img->m.extent_count)
		return 0;
	s = calloc(1, sizeof(*s) + img->m.extent_count * sizeof(int));
	if (!s)
		return pcow_err(-ENOMEM, "out of memory");
	s->fd = img->fd;
	s->img = img;
	s->bits = img->m.stripe_bits;
	for (i = 0; i < img->m.extent_count; i++) {
		uint32_t node = pcow_meta_stripe_node(&img->m, i);

		s->fds[i] = -1;
		/* A hint: a node this host lacks (the image was made for
		 * another) leaves the maps unbound; info shows it. */
		s->nodes[i] = node != PCOW_NODE_NONE && pcow_numa_has_node(node) ? (int)node : -1;
	}
	for (i = 0; i < img->m.extent_count && ret == 0; i++, s->n = i)
		ret = open_one(img, i, write, lock, for_writer, &s->fds[i]);
	if (ret == 0 && publish(s) < 0)
		ret = pcow_err(-EMFILE, "%s: too many striped images open (%d)", img->path,
			       STRIPED_MAX);
	if (ret < 0) {
		for (i = 0; i < img->m.extent_count; i++)
			if (s->fds[i] >= 0)
				close(s->fds[i]);
		free(s);
		return ret;
	}
	img->stripes = s;
	return 0;
}

void pcow_stripes_close(pcow_image *img)
{
	struct pcow_stripes *s = img->stripes;
	uint32_t i;
	int j;

	if (!s)
		return;
	pthread_mutex_lock(&striped_lock);
	for (j = 0; j < STRIPED_MAX; j++)
		if (atomic_load(&striped[j]) == s) {
			atomic_store(&striped[j], NULL);
			atomic_fetch_sub(&striped_count, 1);
		}
	pthread_mutex_unlock(&striped_lock);
	for (i = 0; i < s->n; i++)
		close(s->fds[i]);
	free(s);
	img->stripes = NULL;
}

int pcow_stripes_lock(pcow_image *img, bool lock)
{
	const struct pcow_stripes *s = img->stripes;
	struct flock fl = {.l_type = F_UNLCK, .l_whence = SEEK_SET, .l_len = 1};
	uint32_t i;
	int ret;

	for (i = 0; s && i < s->n; i++) {
		if (!lock) {
			if (fcntl(s->fds[i], F_OFD_SETLK, &fl) < 0)
				return pcow_err_sys(-errno, "%s: cannot unlock an extent file",
						    img->path);
			continue;
		}
		ret = pcow_lock_file(s->fds[i], true, true, img->m.extents[i]);
		if (ret < 0)
			return ret;
	}
	return 0;
}

void pcow_stripes_unlink(const char *path, const struct pcow_meta *m)
{
	char *copy = strdup(path), *dir = copy ? strrchr(copy, '/') : NULL, *full;
	uint32_t i;

	if (!copy)
		return;
	if (dir)
		*dir = '\0';
	for (i = 0; i < m->extent_count; i++) {
		full = pcow_resolve_path(dir ? copy : ".", m->extents[i]);
		if (full)
			unlink(full);
		free(full);
	}
	free(copy);
}

int pcow_stripes_create(const char *path, const struct pcow_meta *m,
			uint64_t size)
{
	char *copy = strdup(path), *slash, *full = NULL;
	uint8_t h[PCOW_EXTENT_HEADER_SIZE];
	uint32_t i, made = 0;
	int fd = -1, ret = 0;

	if (!copy)
		return pcow_err(-ENOMEM, "out of memory");
	slash = strrchr(copy, '/');
	if (slash)
		*slash = '\0';
	for (i = 0; i < m->extent_count && ret == 0; i++) {
		full = pcow_resolve_path(slash ? copy : ".", m->extents[i]);
		if (!full) {
			ret = pcow_err(-ENOMEM, "out of memory");
			break;
		}
		fd = open(full, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0) {
			ret = pcow_err_sys(-errno, "%s: cannot create extent file '%s'",
					   path, full);
			free(full);
			break;
		}
		made++;
		header_encode(m, i, h);
		ret = pcow_io_truncate(fd, size);
		if (ret == 0)
			ret = pcow_io_pwrite(fd, h, sizeof(h), 0);
		if (ret == 0)
			ret = pcow_io_sync(fd);
		if (ret == 0)
			ret = pcow_io_sync_dir(full);
		if (ret < 0) {
			char why[256];

			snprintf(why, sizeof(why), "%s", pcow_errormsg());
			ret = pcow_err(ret, "%s: extent file '%s': %s", path, full, why);
		}
		close(fd);
		free(full);
	}
	if (ret < 0) {
		struct pcow_meta some = *m;

		some.extent_count = made;
		pcow_stripes_unlink(path, &some);
	}
	free(copy);
	return ret;
}
