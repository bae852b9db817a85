/* img_source.h -- reading a raw file or a pcow image alike, with where its
 * data lies, for the verbs that look at content (compare, measure). */
#ifndef PCOW_TOOLS_IMG_SOURCE_H
#define PCOW_TOOLS_IMG_SOURCE_H

#include <stdbool.h>
#include <stdint.h>

#include "pcow.h"

struct img_source {
	const char *path;
	pcow_image *img; /* a pcow image, or NULL */
	int fd;          /* a raw file, or -1 */
	uint64_t size;   /* bytes the guest sees */
};

/*
 * Opens path as fmt ("raw" or "pcow"; NULL probes for the pcow magic at
 * offset 0, and warns on stderr when it guesses raw).
 * pcow_flags are pcow_open() flags (PCOW_OPEN_RDONLY is always added).
 * The functions below print one line and return -1 on failure.
 */
int img_source_open(struct img_source *s, const char *path, const char *fmt,
		    unsigned pcow_flags);
void img_source_close(struct img_source *s);

int img_source_read(struct img_source *s, void *buf, uint64_t len,
		    uint64_t off);

/*
 * The run starting at off, at most len bytes, over which the source either
 * stores data (*data true) or reads as zeros without storing anything.
 */
int img_source_status(struct img_source *s, uint64_t off, uint64_t len,
		      uint64_t *run, bool *data);

/* Offset of the first non-zero byte of p[0..n), or n. */
uint64_t first_nonzero(const uint8_t *p, uint64_t n);

#endif
