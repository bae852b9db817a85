/*
 * mkseed -- turns a real image file into compact fuzz seeds.
 *
 *   mkseed IMAGE IMAGE_SEED [META_SEED]
 *
 * IMAGE_SEED gets a fuzz_image input (fuzz_image.c): the metadata blob of
 * slot 0, of slot 1, the first 4 KiB of the reserved area (trailing zeros
 * dropped), then up to MAX_EXTENTS pieces of region data: each data
 * extent's first PIECE bytes (block data, copy bitmap words).  META_SEED
 * gets the current slot's blob, as fuzz_meta takes it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_common.h"

#define MAX_EXTENTS 32
#define PIECE 512

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static void put(FILE *f, const void *p, size_t n)
{
	if (n && fwrite(p, 1, n, f) != n) {
		perror("mkseed: write");
		exit(1);
	}
}

static size_t blob_len(const uint8_t *slot)
{
	uint32_t n;

	if (memcmp(slot, "PCOW\r\n\x1a\n", 8))
		return 0;
	n = le32(slot + 60);
	return n > FUZZ_SLOT_SIZE ? FUZZ_SLOT_SIZE : n;
}

int main(int argc, char **argv)
{
	static uint8_t slot[2][FUZZ_SLOT_SIZE], reserved[4096], piece[PIECE];
	uint64_t gen[2] = {0, 0};
	size_t jl, n;
	struct stat st;
	off_t pos;
	FILE *f;
	int fd, i, extents = 0, cur;

	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: mkseed IMAGE IMAGE_SEED [META_SEED]\n");
		return 1;
	}
	fd = open(argv[1], O_RDONLY);
	if (fd < 0 || fstat(fd, &st) < 0) {
		perror(argv[1]);
		return 1;
	}
	for (i = 0; i < 2; i++)
		if (pread(fd, slot[i], FUZZ_SLOT_SIZE, (uint64_t)i * FUZZ_SLOT_SIZE) < 0 ||
		    pread(fd, reserved, sizeof(reserved), FUZZ_AREA_OFFSET) < 0) {
			perror(argv[1]);
			return 1;
		}
	f = fopen(argv[2], "wb");
	if (!f) {
		perror(argv[2]);
		return 1;
	}
	put(f, slot[0], blob_len(slot[0]));
	put(f, FUZZ_SEP, FUZZ_SEP_LEN);
	put(f, slot[1], blob_len(slot[1]));
	for (jl = sizeof(reserved); jl && !reserved[jl - 1]; jl--)
		;
	if (jl || st.st_size > (off_t)FUZZ_DATA_OFFSET) {
		put(f, FUZZ_SEP, FUZZ_SEP_LEN);
		put(f, reserved, jl);
	}
	for (pos = FUZZ_DATA_OFFSET; extents < MAX_EXTENTS; extents++) {
		off_t d = lseek(fd, pos, SEEK_DATA), h;
		uint8_t off[8];
		ssize_t got;

		if (d < 0)
			break;
		h = lseek(fd, d, SEEK_HOLE);
		if (h < 0)
			break;
		n = (size_t)(h - d) < PIECE ? (size_t)(h - d) : PIECE;
		got = pread(fd, piece, n, d);
		if (got <= 0)
			break;
		for (i = 0; i < 8; i++)
			off[i] = (uint8_t)((uint64_t)(d - FUZZ_DATA_OFFSET) >> (8 * i));
		put(f, FUZZ_SEP, FUZZ_SEP_LEN);
		put(f, off, 8);
		put(f, piece, (size_t)got);
		pos = h;
	}
	if (fclose(f) != 0) {
		perror(argv[2]);
		return 1;
	}
	if (argc == 4) {
		for (i = 0; i < 2; i++)
			if (blob_len(slot[i]) >= 128)
				memcpy(&gen[i], slot[i] + 40, 8);
		cur = gen[1] > gen[0] ? 1 : 0;
		f = fopen(argv[3], "wb");
		if (!f) {
			perror(argv[3]);
			return 1;
		}
		put(f, slot[cur], blob_len(slot[cur]));
		if (fclose(f) != 0) {
			perror(argv[3]);
			return 1;
		}
	}
	close(fd);
	return 0;
}
