/*
 * map_snap.c -- pcow_snapshot_create on a mapped image after its map was
 * stored to, against the kernel's own cost of taking write access away
 * from the same number of pages (docs/benchmarks.md, "Live snapshots").
 *
 * Usage: map_snap DIR SIZE_GIB WRITTEN_GIB MODE [ROUNDS [halves]]
 *   MODE is fault or kernel (PCOW_MAP_KERNEL_COW).
 *   halves: each snapshot as QEMU takes one of a running VM, prepared
 *   before the timed part (pcow_snapshot_prepare) and flushed after it
 *   (PCOW_SNAPSHOT_SYNC_LATER); the flush after is printed as "sync".
 *
 * Creates DIR/map_snap.pcow of SIZE_GIB GiB (64 KiB blocks), maps it,
 * stores to every page of its first WRITTEN_GIB GiB (as a guest writing
 * that much does), flushes, then times:
 *   first     the first pcow_snapshot_create (it freezes the layer that
 *             holds the data, whose pages the map has in its page tables);
 *   later     ROUNDS more (default 10), with one 4 KiB store before each;
 *   baseline  on a plain file of WRITTEN_GIB GiB mapped shared and stored
 *             to the same way: mprotect(PROT_READ) of the range (what a
 *             write-protect costs in the kernel) and mmap(MAP_FIXED) over
 *             it (what a remap costs: the page tables torn down).
 * One line per measure, in milliseconds, on standard output.
 */

#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "pcow.h"

#define GIB (1ull << 30)

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void die(const char *what)
{
	fprintf(stderr, "map_snap: %s: %s\n", what, pcow_errormsg());
	exit(1);
}

/* One store per page, as a guest's dd writes every page. */
static void touch(uint8_t *p, uint64_t len)
{
	for (uint64_t o = 0; o < len; o += 4096)
		p[o] = (uint8_t)(o >> 12 | 1);
}

/* One snapshot; returns the milliseconds a running VM's vCPUs would be
 * stopped for. */
static double snapshot(pcow_image *img, const char *name, bool halves)
{
	double t0, t;

	if (halves && pcow_snapshot_prepare(img) < 0)
		die("prepare");
	t0 = now_ms();
	if (pcow_snapshot_create_flags(img, name,
				       halves ? PCOW_SNAPSHOT_SYNC_LATER : 0) < 0)
		die("snapshot");
	t = now_ms() - t0;
	if (halves) {
		t0 = now_ms();
		if (pcow_flush(img) < 0)
			die("flush");
		printf("sync %.3f\n", now_ms() - t0);
	}
	return t;
}

static void baseline(const char *dir, uint64_t written)
{
	char path[4096];
	double t0, t1;
	uint8_t *p;
	int fd;

	snprintf(path, sizeof(path), "%s/map_snap.raw", dir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)written) < 0) {
		perror("map_snap: raw file");
		exit(1);
	}
	p = mmap(NULL, written, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		perror("map_snap: mmap");
		exit(1);
	}
	touch(p, written);
	fdatasync(fd);
	t0 = now_ms();
	mprotect(p, written, PROT_READ);
	t1 = now_ms();
	printf("baseline mprotect %.3f\n", t1 - t0);
	mprotect(p, written, PROT_READ | PROT_WRITE);
	touch(p, written);
	fdatasync(fd);
	t0 = now_ms();
	mmap(p, written, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
	t1 = now_ms();
	printf("baseline remap %.3f\n", t1 - t0);
	munmap(p, written);
	close(fd);
	unlink(path);
}

int main(int argc, char **argv)
{
	struct pcow_create_opts o = {.struct_size = sizeof(o), .block_size = 65536};
	char path[4096], name[32];
	pcow_image *img;
	pcow_map *map;
	uint64_t size, written;
	unsigned rounds = 10, flags = 0;
	bool halves;
	uint8_t *p;

	if (argc < 5) {
		fprintf(stderr, "usage: map_snap DIR SIZE_GIB WRITTEN_GIB fault|kernel [ROUNDS [halves]]\n");
		return 2;
	}
	size = strtoull(argv[2], NULL, 10) * GIB;
	written = strtoull(argv[3], NULL, 10) * GIB;
	if (!strcmp(argv[4], "kernel"))
		flags = PCOW_MAP_KERNEL_COW;
	if (argc > 5)
		rounds = (unsigned)atoi(argv[5]);
	halves = argc > 6 && !strcmp(argv[6], "halves");
	snprintf(path, sizeof(path), "%s/map_snap.pcow", argv[1]);
	unlink(path);
	o.size = size;
	if (pcow_create(path, &o) < 0)
		die("create");
	if (pcow_open(&img, path, 0) < 0)
		die("open");
	if (pcow_map_new(&map, img, flags) < 0)
		die("map");
	p = pcow_map_addr(map);
	touch(p, written);
	if (pcow_map_flush(map) < 0)
		die("flush");
	printf("first %.3f\n", snapshot(img, "first", halves));
	for (unsigned i = 0; i < rounds; i++) {
		p[(uint64_t)i * 4096 * 17 % written] ^= 1;
		if (pcow_map_flush(map) < 0)
			die("flush");
		snprintf(name, sizeof(name), "s%u", i);
		printf("later %.3f\n", snapshot(img, name, halves));
	}
	if (pcow_map_delete(&map) < 0 || pcow_close(&img) < 0)
		die("close");
	unlink(path);
	baseline(argv[1], written);
	return 0;
}
