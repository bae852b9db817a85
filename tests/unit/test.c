/* test.c -- shared helpers of the unit tests. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "test.h"

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
