/* capture.c -- sparse copies of a file (see capture.h). */
#include "capture.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"

void test_write_all(int fd, const void *buf, uint64_t len, uint64_t off)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);

		CHECK(n > 0);
		p += n;
		len -= (uint64_t)n;
		off += (uint64_t)n;
	}
}

void test_read_all(int fd, void *buf, uint64_t len, uint64_t off)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		CHECK(n >= 0);
		if (n == 0) {
			memset(p, 0, len);
			return;
		}
		p += n;
		len -= (uint64_t)n;
		off += (uint64_t)n;
	}
}

void test_capture(const char *path, struct test_capture *c)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	off_t pos = 0;

	CHECK(fd >= 0);
	CHECK(fstat(fd, &st) == 0);
	memset(c, 0, sizeof(*c));
	c->size = (uint64_t)st.st_size;
	for (;;) {
		off_t d = lseek(fd, pos, SEEK_DATA), h;
		struct test_extent *e;

		if (d < 0) {
			CHECK(errno == ENXIO);
			break;
		}
		h = lseek(fd, d, SEEK_HOLE);
		CHECK(h > d);
		c->ext = realloc(c->ext, (c->n + 1) * sizeof(*c->ext));
		CHECK(c->ext);
		e = &c->ext[c->n++];
		e->off = (uint64_t)d;
		e->len = (uint64_t)(h - d);
		e->data = malloc(e->len);
		CHECK(e->data);
		test_read_all(fd, e->data, e->len, e->off);
		pos = h;
	}
	close(fd);
}

void test_capture_free(struct test_capture *c)
{
	size_t i;

	for (i = 0; i < c->n; i++)
		free(c->ext[i].data);
	free(c->ext);
	memset(c, 0, sizeof(*c));
}

int test_restore(const char *path, const struct test_capture *c)
{
	int fd;
	size_t i;

	if (unlink(path) < 0)
		CHECK(errno == ENOENT);
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	CHECK(fd >= 0);
	CHECK(ftruncate(fd, (off_t)c->size) == 0);
	for (i = 0; i < c->n; i++)
		test_write_all(fd, c->ext[i].data, c->ext[i].len, c->ext[i].off);
	return fd;
}

uint64_t test_file_sum(const char *path)
{
	uint8_t buf[65536];
	uint64_t s = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n, i;

	CHECK(fd >= 0);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		for (i = 0; i < n; i++)
			s = s * 31 + buf[i];
	CHECK(n == 0);
	close(fd);
	return s;
}

uint8_t *test_read_file(const char *path, uint64_t len)
{
	uint8_t *b = calloc(1, len ? len : 1);
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	CHECK(b && fd >= 0);
	test_read_all(fd, b, len, 0);
	close(fd);
	return b;
}
