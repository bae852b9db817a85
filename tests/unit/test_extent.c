/*
 * test_extent.c -- the mapping built from the image's runs (lib/extent.c)
 * must show exactly what pcow_read reads, for random images: raw or pcow
 * backing files with other block sizes, snapshots applied and deleted,
 * discards, copy bits, data that ends inside a page of a raw file.  Then
 * stores through the mapping (copy-ups of partly zero blocks included)
 * must land as pcow_write would have put them.
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "extent.h"
#include "test.h"

#define SIZE (8u << 20)

static uint64_t rng = 88172645463325252ull;

static uint64_t rnd(uint64_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng % n;
}

static char stage[128];  /* printed when a check fails */

static const uint32_t sizes[] = {4096, 16384, 65536};

/* Random writes and discards of random lengths (sub-block ones too). */
static void scribble(pcow_image *img, uint64_t size, int ops, uint64_t seed)
{
	static uint8_t buf[256 << 10];
	int i;

	for (i = 0; i < ops; i++) {
		uint64_t len = 1 + rnd(rnd(4) ? 8192 : sizeof(buf));
		uint64_t off = rnd(size - len);

		if (rnd(6) == 0) {
			OK(pcow_discard(img, off / 4096 * 4096, (len + 4095) / 4096 * 4096 >
					 size - off / 4096 * 4096 ? 4096 : (len + 4095) / 4096 * 4096));
		} else {
			test_fill(buf, len, seed + (uint64_t)i, off);
			OK(pcow_write(img, buf, len, off));
		}
	}
}

static void check_map(pcow_image *img, uint64_t size, unsigned flags)
{
	uint8_t *want = malloc(size);
	pcow_map *map;

	CHECK(want);
	OK(pcow_read(img, want, size, 0));
	OK(pcow_map_new(&map, img, flags));
	if (memcmp(pcow_map_addr(map), want, size)) {
		const uint8_t *m = pcow_map_addr(map);
		uint64_t i = 0;

		while (m[i] == want[i])
			i++;
		fprintf(stderr, "%s: first difference at %llu: map %02x, read %02x\n",
			stage, (unsigned long long)i, m[i], want[i]);
	}
	CHECK(memcmp(pcow_map_addr(map), want, size) == 0);
	OK(pcow_map_delete(&map));
	free(want);
}

/* Stores through the mapping, mirrored into a copy read before. */
static void store_through_map(pcow_image *img, uint64_t size)
{
	uint8_t *want = malloc(size), *got = malloc(size), *base;
	pcow_map *map;
	int i;

	CHECK(want && got);
	OK(pcow_read(img, want, size, 0));
	OK(pcow_map_new(&map, img, 0));
	base = pcow_map_addr(map);
	for (i = 0; i < 200; i++) {
		uint64_t off = rnd(size - 8);

		base[off] = (uint8_t)(i + 1);
		want[off] = (uint8_t)(i + 1);
	}
	CHECK(memcmp(base, want, size) == 0);
	OK(pcow_map_flush(map));
	OK(pcow_map_delete(&map));
	OK(pcow_read(img, got, size, 0));
	CHECK(memcmp(got, want, size) == 0);
	free(want);
	free(got);
}

static void one_case(int n)
{
	char raw[32], base[32], top[32];
	struct pcow_create_opts o = {.struct_size = sizeof(o)};
	pcow_image *b, *img;
	uint64_t raw_size = SIZE - rnd(3) * 1000;   /* not always page-sized */
	uint8_t buf[65536];
	int fd, i;

	snprintf(raw, sizeof(raw), "r%d.raw", n);
	snprintf(base, sizeof(base), "b%d.pcow", n);
	snprintf(top, sizeof(top), "t%d.pcow", n);
	fd = open(test_path(raw), O_CREAT | O_WRONLY | O_TRUNC, 0644);
	CHECK(fd >= 0 && ftruncate(fd, (off_t)raw_size) == 0);
	for (i = 0; i < 40; i++) {
		uint64_t len = 1 + rnd(sizeof(buf)), off = rnd(raw_size - len);

		test_fill(buf, len, 1000 + (uint64_t)n, off);
		CHECK(pwrite(fd, buf, len, (off_t)off) == (ssize_t)len);
	}
	/* Data up to the very end, which is not always on a page boundary. */
	CHECK(pwrite(fd, buf, 100, (off_t)raw_size - 100) == 100);
	close(fd);

	/* A pcow base over the raw file, or the raw file directly; the base
	 * may end inside a page, before the image on top does. */
	o.size = SIZE - rnd(3) * 1536;
	o.block_size = sizes[rnd(3)];
	o.backing_file = raw;
	o.backing_format = PCOW_FORMAT_RAW;
	OK(pcow_create(test_path(base), &o));
	OK(pcow_open(&b, test_path(base), 0));
	scribble(b, o.size, 20, 2000 + (uint64_t)n);
	if (rnd(2)) {
		OK(pcow_snapshot_create(b, "s"));
		scribble(b, o.size, 20, 3000 + (uint64_t)n);
	}
	OK(pcow_close(&b));

	o.size = SIZE;
	o.block_size = sizes[rnd(3)];
	o.backing_file = rnd(3) ? base : raw;
	o.backing_format = o.backing_file == raw ? PCOW_FORMAT_RAW : PCOW_FORMAT_PCOW;
	OK(pcow_create(test_path(top), &o));
	OK(pcow_open(&img, test_path(top), 0));
	snprintf(stage, sizeof(stage), "case %d (raw size %llu, top blocks %u over %s)", n,
		 (unsigned long long)raw_size, o.block_size, o.backing_file);
	check_map(img, SIZE, 0);
	for (i = 0; i < 3; i++) {
		char name[8];

		scribble(img, SIZE, 30, 4000 + (uint64_t)(n * 10 + i));
		snprintf(name, sizeof(name), "s%d", i);
		OK(pcow_snapshot_create(img, name));
		check_map(img, SIZE, rnd(2) ? PCOW_MAP_RDONLY : 0);
	}
	scribble(img, SIZE, 30, 5000 + (uint64_t)n);
	check_map(img, SIZE, 0);
	OK(pcow_snapshot_apply(img, rnd(2) ? "s1" : "s0"));
	check_map(img, SIZE, 0);
	OK(pcow_snapshot_delete(img, "s1"));
	check_map(img, SIZE, 0);
	/* A safe rebase onto the other file keeps what the image shows. */
	{
		bool on_raw = o.backing_file == raw;
		uint8_t *before = malloc(SIZE), *after = malloc(SIZE);

		CHECK(before && after);
		OK(pcow_read(img, before, SIZE, 0));
		OK(pcow_rebase(img, on_raw ? base : raw,
			       on_raw ? PCOW_FORMAT_PCOW : PCOW_FORMAT_RAW, 0));
		OK(pcow_read(img, after, SIZE, 0));
		CHECK(memcmp(before, after, SIZE) == 0);
		free(before);
		free(after);
	}
	check_map(img, SIZE, 0);
	store_through_map(img, SIZE);
	OK(pcow_close(&img));
	OK(pcow_open(&img, test_path(top), 0));
	check_map(img, SIZE, 0);
	OK(pcow_close(&img));
	unlink(test_path(raw));
	unlink(test_path(base));
	unlink(test_path(top));
}

/*
 * The extent iterator itself on a file with data in [2, 4) and [8, 10) MiB
 * of 16 MiB (pieces of 2 MiB: a file system with huge pages still
 * reports these): clipping, the end of the file, units, errors.
 */
static void iterator(void)
{
	const uint64_t M = 1 << 20;
	static uint8_t buf[2 << 20];
	uint64_t s, e;
	int fd = open(test_path("iter"), O_CREAT | O_RDWR | O_TRUNC, 0644);

	snprintf(stage, sizeof(stage), "iterator");
	memset(buf, 'x', sizeof(buf));
	CHECK(fd >= 0 && ftruncate(fd, (off_t)(16 * M)) == 0);
	CHECK(pwrite(fd, buf, sizeof(buf), (off_t)(2 * M)) == (ssize_t)sizeof(buf));
	CHECK(pwrite(fd, buf, sizeof(buf), (off_t)(8 * M)) == (ssize_t)sizeof(buf));
	CHECK(pcow_extent_next(fd, 0, 16 * M, &s, &e) == 1 && s == 2 * M && e == 4 * M);
	CHECK(pcow_extent_next(fd, 3 * M, 16 * M, &s, &e) == 1 && s == 3 * M && e == 4 * M);
	CHECK(pcow_extent_next(fd, 0, 3 * M, &s, &e) == 1 && s == 2 * M && e == 3 * M);
	CHECK(pcow_extent_next(fd, 0, 2 * M, &s, &e) == 0);
	s = 0;
	CHECK(pcow_extent_next(fd, 4 * M, 16 * M, &s, NULL) == 1 && s == 8 * M);
	CHECK(pcow_extent_next(fd, 10 * M, 16 * M, &s, &e) == 0);  /* hole to EOF */
	CHECK(pcow_extent_next(fd, 20 * M, 30 * M, &s, &e) == 0);  /* past EOF */
	CHECK(pcow_extent_next(fd, 9 * M, 9 * M, &s, &e) == 0);    /* empty range */
	CHECK(pcow_extent_stop(fd, 9 * M, 16 * M, &e) == 1 && e == 10 * M);
	CHECK(pcow_extent_stop(fd, 9 * M, 9 * M + 5, &e) == 1 && e == 9 * M + 5);
	CHECK(pcow_extent_stop(fd, 5 * M, 16 * M, &e) == 0 && e == 5 * M);
	CHECK(pcow_extent_stop(fd, 20 * M, 30 * M, &e) == 0 && e == 20 * M);
	/* Units of 3 MiB counted from 1 MiB: data in unit 0 ([1, 4) MiB),
	 * then in unit 2 ([7, 10) MiB), none from unit 3 on. */
	CHECK(pcow_extent_units(fd, M, 3 * M, 0, 16 * M, &s, &e) == 1 && s == 0 && e == 1);
	CHECK(pcow_extent_units(fd, M, 3 * M, 1, 16 * M, &s, &e) == 1 && s == 2 && e == 3);
	CHECK(pcow_extent_units(fd, M, 3 * M, 3, 16 * M, &s, &e) == 0);
	close(fd);
	CHECK(pcow_extent_next(fd, 0, 16 * M, &s, &e) == -EBADF);
	CHECK(strstr(pcow_errormsg(), "cannot query allocation"));
	unlink(test_path("iter"));
}

int main(void)
{
	int n, cases = getenv("PCOW_EXTENT_CASES") ? atoi(getenv("PCOW_EXTENT_CASES")) : 24;

	iterator();
	for (n = 0; n < cases; n++)
		one_case(n);
	printf("extent: %d random images mapped as read\n", cases);
	return 0;
}
