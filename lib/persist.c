/* persist.c -- ordered, interceptable changes to image files. */
#include <errno.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#include "error.h"
#include "persist.h"
#include "stripe.h"

static pcow_io_hook_fn io_hook;
static void *io_hook_opaque;

void pcow_io_set_hook(pcow_io_hook_fn fn, void *opaque)
{
	io_hook = fn;
	io_hook_opaque = opaque;
}

static uint64_t io_epoch;

uint64_t pcow_io_epoch(void)
{
	return __atomic_load_n(&io_epoch, __ATOMIC_ACQUIRE);
}

static int hook(enum pcow_io_op op, int fd, uint64_t off, uint64_t len,
		const void *buf)
{
	/* Counted before the change: a read racing with it reads again. */
	if (op != PCOW_IO_SYNC)
		__atomic_add_fetch(&io_epoch, 1, __ATOMIC_ACQ_REL);
	return io_hook ? io_hook(op, fd, off, len, buf, io_hook_opaque) : 0;
}

static int pwrite_one(int fd, const void *buf, uint64_t len, uint64_t offset)
{
	const char *p = buf;
	int ret = hook(PCOW_IO_WRITE, fd, offset, len, buf);

	if (ret < 0)
		return pcow_err_sys(ret, "write failed");
	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)offset);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return pcow_err_sys(-errno, "write failed");
		if (n == 0)
			return pcow_err(-EIO, "write failed: no progress");
		p += n;
		len -= (uint64_t)n;
		offset += (uint64_t)n;
	}
	return 0;
}

/*
 * The caller's buffer may lie in a read-only part of a pcow mapping (a
 * block inherited from a backing file), where the kernel fails the read
 * with EFAULT instead of faulting.  Through a bounce buffer, the store is
 * the caller's own and the write-fault handler copies the block up.
 */
static ssize_t pread_bounced(int fd, char *p, uint64_t len, uint64_t offset)
{
	char bounce[4096];
	ssize_t n = pread(fd, bounce, len < sizeof(bounce) ? len : sizeof(bounce),
			  (off_t)offset);

	if (n > 0)
		memcpy(p, bounce, (size_t)n);
	return n;
}

static int pread_one(int fd, void *buf, uint64_t len, uint64_t offset)
{
	char *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)offset);

		if (n < 0 && errno == EFAULT)
			n = pread_bounced(fd, p, len, offset);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return pcow_err_sys(-errno, "read failed");
		if (n == 0) {
			/* Past the end of a file reads as zeros. */
			for (; len; len--)
				*p++ = 0;
			break;
		}
		p += n;
		len -= (uint64_t)n;
		offset += (uint64_t)n;
	}
	return 0;
}

/*
 * A striped image's descriptor stands for the whole image: each piece of
 * [offset, offset+len) goes to the file the layout puts it in (stripe.h).
 */
static int rw_pieces(int fd, char *p, uint64_t len, uint64_t offset, bool write)
{
	const struct pcow_stripes *s = pcow_stripes_of(fd);
	uint64_t end = UINT64_MAX, n;
	int ret, f;

	/* At least one call: an empty write still reaches the test hook. */
	do {
		f = s ? pcow_stripe_route(s, offset, &end) : fd;
		n = end - offset < len ? end - offset : len;
		ret = write ? pwrite_one(f, p, n, offset) : pread_one(f, p, n, offset);
		if (ret < 0)
			return ret;
		p += n;
		offset += n;
		len -= n;
	} while (len);
	return 0;
}

/* The caller's buffer is only read (rw_pieces writes through it only for
 * a read). */
int pcow_io_pwrite(int fd, const void *buf, uint64_t len, uint64_t offset)
{
	return rw_pieces(fd, (char *)(uintptr_t)buf, len, offset, true);
}

int pcow_io_pread(int fd, void *buf, uint64_t len, uint64_t offset)
{
	return rw_pieces(fd, buf, len, offset, false);
}

static int punch_one(int fd, uint64_t offset, uint64_t len)
{
	int ret = hook(PCOW_IO_PUNCH, fd, offset, len, NULL);

	if (ret < 0)
		return pcow_err_sys(ret, "punching a hole failed");
	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)offset, (off_t)len) < 0)
		return pcow_err_sys(-errno, "punching a hole failed");
	return 0;
}

int pcow_io_punch_file(int fd, uint64_t offset, uint64_t len)
{
	return punch_one(fd, offset, len);
}

/*
 * From 2 MiB on, an extent file holds nothing but the pieces the layout
 * gives it (below the first region: none, or what a move of the regions
 * left): punching the whole range in every file zeroes the image's range
 * in n + 1 calls, however many stripes it crosses, and drops data a file
 * holds where nothing reads it.  Below 2 MiB (metadata, pending log, the
 * extent files' headers), the image file alone.
 */
int pcow_io_punch(int fd, uint64_t offset, uint64_t len)
{
	const struct pcow_stripes *s = pcow_stripes_of(fd);
	uint64_t base = PCOW_DATA_OFFSET, head;
	uint32_t i;
	int ret;

	if (!s)
		return punch_one(fd, offset, len);
	head = offset < base ? (base - offset < len ? base - offset : len) : 0;
	if (head && (ret = punch_one(fd, offset, head)) < 0)
		return ret;
	offset += head;
	len -= head;
	if (!len)
		return 0;
	for (i = 0; i < s->n; i++)
		if ((ret = punch_one(s->fds[i], offset, len)) < 0)
			return ret;
	return punch_one(fd, offset, len);
}

static int truncate_one(int fd, uint64_t size)
{
	int ret = hook(PCOW_IO_TRUNCATE, fd, size, 0, NULL);

	if (ret < 0)
		return pcow_err_sys(ret, "resizing the image file failed");
	if (ftruncate(fd, (off_t)size) < 0)
		return pcow_err_sys(-errno, "resizing the image file failed");
	return 0;
}

/* The extent files keep the image file's size (format.md 3.6). */
int pcow_io_truncate(int fd, uint64_t size)
{
	const struct pcow_stripes *s = pcow_stripes_of(fd);
	uint32_t i;
	int ret;

	for (i = 0; s && i < s->n; i++)
		if ((ret = truncate_one(s->fds[i], size)) < 0)
			return ret;
	return truncate_one(fd, size);
}

static int sync_one(int fd)
{
	int ret = hook(PCOW_IO_SYNC, fd, 0, 0, NULL);

	if (ret < 0)
		return pcow_err_sys(ret, "flush failed");
	if (fdatasync(fd) < 0)
		return pcow_err_sys(-errno, "flush failed");
	return 0;
}

/* A sync of a striped image is one of every file: what was written to
 * any of them before is durable after it. */
int pcow_io_sync(int fd)
{
	const struct pcow_stripes *s = pcow_stripes_of(fd);
	uint32_t i;
	int ret;

	for (i = 0; s && i < s->n; i++)
		if ((ret = sync_one(s->fds[i])) < 0)
			return ret;
	return sync_one(fd);
}

int pcow_io_sync_dir(const char *path)
{
	char *copy = strdup(path);
	int fd, ret;

	if (!copy)
		return pcow_err(-ENOMEM, "out of memory");
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(copy);
	if (fd < 0)
		return pcow_err_sys(-errno, "%s: cannot open its directory", path);
	ret = hook(PCOW_IO_SYNC, fd, 0, 0, NULL);
	if (ret == 0 && fsync(fd) < 0)
		ret = -errno;
	close(fd);
	return ret < 0 ? pcow_err_sys(ret, "%s: flushing its directory failed", path) : 0;
}

void pcow_persist_cachelines(const void *addr, size_t len)
{
#if defined(__x86_64__) || defined(__i386__)
	uintptr_t p = (uintptr_t)addr & ~(uintptr_t)63;

	for (; p < (uintptr_t)addr + len; p += 64)
		__builtin_ia32_clflush((const void *)p);
	__builtin_ia32_sfence();
#else
	(void)addr;
	(void)len;
	__sync_synchronize();
#endif
}
