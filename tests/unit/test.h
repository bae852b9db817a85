/* test.h -- minimal helpers for the unit tests (exit 0 pass, 1 fail, 77 skip). */
#ifndef PCOW_TEST_H
#define PCOW_TEST_H

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pcow.h"

#define CHECK(cond)                                                           \
	do {                                                                  \
		if (!(cond)) {                                                \
			fprintf(stderr, "%s:%d: CHECK(%s) failed (%s)\n",     \
				__FILE__, __LINE__, #cond, pcow_errormsg());  \
			exit(1);                                              \
		}                                                             \
	} while (0)

/* A call that must succeed. */
#define OK(call) CHECK((call) >= 0)

#define SKIP(...)                                                             \
	do {                                                                  \
		printf("SKIP: " __VA_ARGS__);                                 \
		printf("\n");                                                 \
		exit(77);                                                     \
	} while (0)

/* A fresh temporary directory for this test, removed at exit. */
const char *test_dir(void);
/* Call in a forked child: its exit must not remove the directory. */
void test_in_child(void);

/* test_dir()/name, in a static rotating buffer. */
const char *test_path(const char *name);

/*
 * Makes test_path(raw) a sparse raw file of size bytes holding len bytes of
 * data at off, creates test_path(image) over it (same size, block_size)
 * and opens it read-write.
 */
pcow_image *test_overlay_on_raw(const char *raw, uint64_t size, const void *data,
				uint64_t off, uint64_t len, const char *image,
				uint32_t block_size);

/*
 * True when test_dir() is on a DAX file system: its files map with
 * MAP_SYNC, as the library maps images there (stores durable without a
 * flush, copy-ups persisted at the fault, no kernel copy-on-write).
 */
bool test_dax(void);

/* Fills buf with a pattern derived from seed and offset. */
void test_fill(void *buf, size_t len, uint64_t seed, uint64_t offset);
/* True when buf holds what test_fill would have written. */
int test_verify(const void *buf, size_t len, uint64_t seed, uint64_t offset);

/*
 * With PCOW_TEST_STRIPES=N (2 to 64) in the environment, every image a
 * test creates without stripes of its own is striped over N extent files
 * (in subdirectories "xI" of the image's directory, relative names), with
 * the smallest stripe size the image allows from 64 KiB on: the core tests
 * then run on striped images unchanged.  test.c calls the real one.
 */
int test_create(const char *path, const struct pcow_create_opts *opts);
/* The first len bytes of img read as want. */
void test_expect(pcow_image *img, const void *want, uint64_t len);

/* VMAs a map of img may have beyond an unstriped one's: a writable piece
 * per stripe, and as many read-only pieces split at stripe boundaries. */
uint64_t test_vma_slack(pcow_image *img);

#ifndef TEST_NO_CREATE_WRAP
#define pcow_create(path, opts) test_create(path, opts)
#endif

#endif
