/* capture.h -- sparse copies of a file, for tests that rebuild crash states. */
#ifndef PCOW_TEST_CAPTURE_H
#define PCOW_TEST_CAPTURE_H

#include <stddef.h>
#include <stdint.h>

struct test_extent {
	uint64_t off, len;
	uint8_t *data;
};

/*
 * A file's size and data extents (SEEK_DATA): holes stay holes and data
 * that happens to be zero stays allocated, since block ownership in an
 * image depends on which is which.
 */
struct test_capture {
	uint64_t size;
	struct test_extent *ext;
	size_t n;
};

void test_capture(const char *path, struct test_capture *c);
void test_capture_free(struct test_capture *c);
/* Recreates path (a new inode) from a capture; returns an open descriptor. */
int test_restore(const char *path, const struct test_capture *c);

/* pread/pwrite until done; reading past the end gives zeros. */
void test_read_all(int fd, void *buf, uint64_t len, uint64_t off);
void test_write_all(int fd, const void *buf, uint64_t len, uint64_t off);

/* A checksum of a file's whole content, to tell whether it changed. */
uint64_t test_file_sum(const char *path);

/* The first len bytes of a file (zeros past its end), malloc'd. */
uint8_t *test_read_file(const char *path, uint64_t len);

#endif
