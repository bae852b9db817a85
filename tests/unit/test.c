/* test.c -- shared helpers of the unit tests. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#define TEST_NO_CREATE_WRAP
#include "test.h"

#include <libgen.h>
#include <sys/stat.h>

static char dir[256];
static pid_t owner;

static void cleanup(void)
{
	char cmd[300];

	if (dir[0] && owner == getpid() && !getenv("PCOW_TEST_KEEP")) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", dir);
	}
}

const char *test_dir(void)
{
	if (!dir[0]) {
		const char *base = getenv("PCOW_TEST_DIR");

		snprintf(dir, sizeof(dir), "%s/pcow-test-XXXXXX", base ? base : "/tmp");
		if (!mkdtemp(dir)) {
			perror("mkdtemp");
			exit(1);
		}
		owner = getpid();
		atexit(cleanup);
	}
	return dir;
}

void test_in_child(void)
{
	owner = 0;
}

const char *test_path(const char *name)
{
	static char bufs[8][512];
	static int n;
	char *b = bufs[n++ % 8];

	snprintf(b, 512, "%s/%s", test_dir(), name);
	return b;
}

static uint8_t byte_at(uint64_t seed, uint64_t off)
{
	uint64_t x = (off / 8) * 0x9e3779b97f4a7c15ull ^ seed * 0xbf58476d1ce4e5b9ull;

	x ^= x >> 31;
	return (uint8_t)(x >> ((off % 8) * 8));
}

void test_fill(void *buf, size_t len, uint64_t seed, uint64_t offset)
{
	uint8_t *p = buf;
	size_t i;

	for (i = 0; i < len; i++)
		p[i] = byte_at(seed, offset + i);
}

int test_verify(const void *buf, size_t len, uint64_t seed, uint64_t offset)
{
	const uint8_t *p = buf;
	size_t i;

	for (i = 0; i < len; i++)
		if (p[i] != byte_at(seed, offset + i))
			return 0;
	return 1;
}

pcow_image *test_overlay_on_raw(const char *raw, uint64_t size, const void *data,
				uint64_t off, uint64_t len, const char *image,
				uint32_t block_size)
{
	struct pcow_create_opts o = {.struct_size = sizeof(o), .size = size, .block_size = block_size,
				     .backing_file = raw,
				     .backing_format = PCOW_FORMAT_RAW};
	pcow_image *img;
	int fd = open(test_path(raw), O_CREAT | O_TRUNC | O_WRONLY, 0644);

	CHECK(fd >= 0 && ftruncate(fd, (off_t)size) == 0);
	CHECK(pwrite(fd, data, len, (off_t)off) == (ssize_t)len);
	close(fd);
	OK(pcow_create(test_path(image), &o));
	OK(pcow_open(&img, test_path(image), 0));
	return img;
}

bool test_dax(void)
{
	static int dax = -1;

	if (dax < 0) {
		const char *path = test_path("dax-probe");
		int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0644);
		void *p;

		CHECK(fd >= 0 && ftruncate(fd, 4096) == 0);
		p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED_VALIDATE | MAP_SYNC,
			 fd, 0);
		dax = p != MAP_FAILED;
		if (dax)
			munmap(p, 4096);
		close(fd);
		unlink(path);
	}
	return dax;
}

/* The extent file names test_create gives the image at path. */
static void stripe_names(const char *path, uint32_t n, char names[][512])
{
	char copy[512], parent[512];
	uint32_t i;

	snprintf(copy, sizeof(copy), "%s", path);
	snprintf(parent, sizeof(parent), "%s", path);
	for (i = 0; i < n; i++) {
		char dirpath[600];

		snprintf(names[i], 512, "x%u/%s.%u", i, basename(copy), i);
		snprintf(dirpath, sizeof(dirpath), "%s/x%u", dirname(parent), i);
		snprintf(parent, sizeof(parent), "%s", path);
		(void)mkdir(dirpath, 0755);
	}
}

int test_create(const char *path, const struct pcow_create_opts *opts)
{
	const char *env = getenv("PCOW_TEST_STRIPES");
	struct pcow_create_opts o;
	static char names[64][512];
	const char *ptrs[64];
	uint32_t n = env ? (uint32_t)atoi(env) : 0, i;
	uint64_t s;
	int ret;

	if (n < 2 || n > 64 || !opts || opts->struct_size != sizeof(o) || opts->extent_count)
		return pcow_create(path, opts);
	o = *opts;
	stripe_names(path, n, names);
	for (i = 0; i < n; i++) {
		char full[1100], copy[512];

		snprintf(copy, sizeof(copy), "%s", path);
		snprintf(full, sizeof(full), "%s/%s", dirname(copy), names[i]);
		/* A name test_create gave before, to an image since removed. */
		if (access(path, F_OK) != 0)
			unlink(full);
		ptrs[i] = names[i];
	}
	o.extent_files = ptrs;
	o.extent_count = n;
	s = o.block_size > (64u << 10) ? o.block_size : (64u << 10);
	/* The smallest stripe size the capacity allows (at most 4096). */
	for (;; s *= 2) {
		o.stripe_size = s;
		ret = pcow_create(path, &o);
		if (ret != -EINVAL || !strstr(pcow_errormsg(), "too small"))
			return ret;
	}
}

uint64_t test_vma_slack(pcow_image *img)
{
	struct pcow_info info = {.struct_size = sizeof(info)};

	OK(pcow_get_info(img, &info));
	if (!info.extent_count)
		return 0;
	return 2 * ((info.virtual_size + info.stripe_size - 1) / info.stripe_size);
}

void test_expect(pcow_image *img, const void *want, uint64_t len)
{
	uint8_t *got = malloc(len);

	CHECK(got);
	OK(pcow_read(img, got, len, 0));
	CHECK(memcmp(got, want, len) == 0);
	free(got);
}
