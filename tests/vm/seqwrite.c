/*
 * seqwrite.c -- a guest program for the live snapshot tests (e2e.sh live).
 *
 *   seqwrite DEV BLOCKS SECONDS
 *
 * Writes 4 KiB blocks to DEV (O_DIRECT | O_SYNC: each write is in the
 * device's memory when pwrite returns) in sequence: the write number s
 * (1, 2, ...) goes to block (s - 1) % BLOCKS, every 8-byte word of it
 * holding s (little-endian).  Stops after SECONDS and prints
 * "SEQWRITE last=N" with the number of the last write.
 *
 * Whatever point of the sequence a snapshot freezes, it holds a prefix of
 * it: block b holds the largest s <= K with (s - 1) % BLOCKS == b (or
 * zeros), for one K, and the block of write K + 1 may be torn between
 * K + 1 and its old content (seqcheck.py checks this).
 *
 * Built static by e2e.sh and put into the guest's initrd.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define BLOCK 4096

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	uint64_t *buf, seq, blocks;
	double end;
	int fd;
	size_t i;

	if (argc != 4) {
		fprintf(stderr, "usage: seqwrite DEV BLOCKS SECONDS\n");
		return 2;
	}
	blocks = strtoull(argv[2], NULL, 0);
	end = now() + atof(argv[3]);
	fd = open(argv[1], O_RDWR | O_DIRECT | O_SYNC);
	if (fd < 0 || !blocks) {
		perror(argv[1]);
		return 1;
	}
	if (posix_memalign((void **)&buf, BLOCK, BLOCK))
		return 1;
	for (seq = 1;; seq++) {
		for (i = 0; i < BLOCK / sizeof(*buf); i++)
			buf[i] = seq;
		if (pwrite(fd, buf, BLOCK, (off_t)((seq - 1) % blocks) * BLOCK) != BLOCK) {
			perror("pwrite");
			return 1;
		}
		if (seq % 256 == 0 && now() >= end)
			break;
	}
	printf("SEQWRITE last=%llu\n", (unsigned long long)seq);
	return 0;
}
