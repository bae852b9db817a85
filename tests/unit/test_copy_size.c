/*
 * test_copy_size.c -- what a write fault copies up: single pages, larger
 * copies on small blocks, fault-ahead for sequential stores, and the copy
 * bits each leaves.
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include "layer.h"
#include "test.h"

#define BS 4096u
#define SIZE (4u << 20)
/* The backing file holds data below this (not a multiple of 64 KiB). */
#define DATA ((3u << 20) - (32u << 10))

static uint8_t want[SIZE];

/* A 4 KiB-block overlay of a raw file holding data in [0, DATA), mapped. */
static pcow_image *overlay(pcow_map **map)
{
	pcow_image *img;

	unlink(test_path("cs.raw"));
	unlink(test_path("cs.pcow"));
	memset(want, 0, sizeof(want));
	test_fill(want, DATA, 11, 0);
	img = test_overlay_on_raw("cs.raw", SIZE, want, 0, DATA, "cs.pcow", BS);
	OK(pcow_map_new(map, img, 0));
	return img;
}

static struct pcow_map_stats stats(pcow_map *map)
{
	struct pcow_map_stats st;

	OK(pcow_map_get_stats(map, &st));
	return st;
}

static void store(pcow_map *map, uint64_t off, uint64_t v)
{
	*(volatile uint64_t *)((uint8_t *)pcow_map_addr(map) + off) = v;
	memcpy(want + off, &v, sizeof(v));
}

/* The mapping, the read API, and the read API after a reopen agree. */
static void verify(pcow_image **img, pcow_map **map)
{
	static uint8_t got[SIZE];

	CHECK(memcmp(pcow_map_addr(*map), want, SIZE) == 0);
	OK(pcow_read(*img, got, SIZE, 0));
	CHECK(memcmp(got, want, SIZE) == 0);
	OK(pcow_map_flush(*map));
	OK(pcow_map_delete(map));
	OK(pcow_close(img));
	OK(pcow_open(img, test_path("cs.pcow"), 0));
	OK(pcow_read(*img, got, SIZE, 0));
	CHECK(memcmp(got, want, SIZE) == 0);
}

/* Copy bits of the active layer in [first, end): all set, or all clear. */
static void bits_are(pcow_image *img, uint64_t first, uint64_t end, int set)
{
	uint64_t b;

	for (b = first; b < end; b++)
		CHECK(pcow_bit_test(img, img->m.active, b) == set);
}

/* Fault-ahead off, page copies: one fault and one page per page stored. */
static void page_copies(void)
{
	pcow_map *map;
	pcow_image *img = overlay(&map);
	uint64_t off;

	OK(pcow_map_set_copy_size(map, BS, 0));
	for (off = 0; off < (1u << 20); off += BS)
		store(map, off + 8, off);
	CHECK(stats(map).faults == 256);
	CHECK(stats(map).blocks_copied == 256);
	CHECK(stats(map).blocks_allocated == 256);
	bits_are(img, 0, 256, 1);
	bits_are(img, 256, 512, 0);
	verify(&img, &map);
	bits_are(img, 0, 256, 1);
	OK(pcow_close(&img));
}

/*
 * The default: sequential stores fault with growing copies (4, 8, ... 256
 * KiB), so 1 MiB takes a handful of faults, copying at most 256 KiB past
 * the last store; scattered stores still copy one page each.
 */
static void fault_ahead(void)
{
	pcow_map *map;
	pcow_image *img = overlay(&map);
	struct pcow_map_stats st;
	uint64_t off;

	for (off = 0; off < (1u << 20); off += BS)
		store(map, off + 16, ~off);
	st = stats(map);
	printf("fault-ahead: 256 pages stored, %llu faults, %llu blocks copied\n",
	       (unsigned long long)st.faults, (unsigned long long)st.blocks_copied);
	CHECK(st.faults >= 3 && st.faults <= 12);
	CHECK(st.blocks_copied >= 256 && st.blocks_copied <= 256 + 64);
	/* Not in sequence: one page each. */
	store(map, (2u << 20) + 5 * BS, 1);
	store(map, (2u << 20) + 9 * BS, 2);
	CHECK(stats(map).blocks_copied == st.blocks_copied + 2);
	verify(&img, &map);
	bits_are(img, 0, 256, 1);
	OK(pcow_close(&img));
}

/*
 * 64 KiB copies on 4 KiB blocks: a store copies its 16 blocks, skipping
 * one the active layer already owns (written through the API), and a
 * window over blocks nothing below holds copies nothing and sets no bit
 * there (a bit is only ever set over data below).
 */
static void larger_copies(void)
{
	pcow_map *map;
	pcow_image *img = overlay(&map);
	uint8_t api[BS];

	OK(pcow_map_set_copy_size(map, 64 << 10, 0));
	memset(api, 0xa5, sizeof(api));
	OK(pcow_write(img, api, BS, 200 << 10));
	memcpy(want + (200 << 10), api, BS);
	CHECK(stats(map).blocks_copied == 0);
	store(map, (192 << 10) + 100, 7);
	CHECK(stats(map).faults == 1);
	CHECK(stats(map).blocks_copied == 15);
	/* Straddling the end of the backing data: [DATA - 32K, DATA + 32K). */
	store(map, DATA - (32 << 10) + 8, 9);
	CHECK(stats(map).faults == 2);
	CHECK(stats(map).blocks_copied == 15 + 8);
	/* (Before the close: a clean close records blocks written where
	 * nothing lies below, and on tmpfs reading the mapping allocates.) */
	bits_are(img, 192 / 4, 200 / 4, 1);
	bits_are(img, 204 / 4, 256 / 4, 1);
	bits_are(img, DATA / BS - 8, DATA / BS, 1);
	bits_are(img, DATA / BS, DATA / BS + 8, 0);
	verify(&img, &map);
	bits_are(img, DATA / BS - 8, DATA / BS, 1);
	OK(pcow_close(&img));
}

static void bad_sizes(void)
{
	pcow_map *map;
	pcow_image *img = overlay(&map);

	CHECK(pcow_map_set_copy_size(map, 2048, 0) == -EINVAL);
	CHECK(pcow_map_set_copy_size(map, 3 * BS, 0) == -EINVAL);
	CHECK(pcow_map_set_copy_size(map, 2ull << 30, 0) == -EINVAL);
	CHECK(pcow_map_set_copy_size(map, BS, 3000) == -EINVAL);
	CHECK(strstr(pcow_errormsg(), "power of two"));
	/* The settings in force are kept: page copies, fault-ahead default. */
	store(map, 8, 1);
	store(map, BS + 8, 2);
	store(map, 2 * BS + 8, 3);  /* inside the second copy (4-12 KiB) */
	CHECK(stats(map).faults == 2);
	OK(pcow_map_delete(&map));
	OK(pcow_close(&img));

	/* Below the block size of a 64 KiB-block image. */
	{
		struct pcow_create_opts o = {.struct_size = sizeof(o), .size = SIZE, .block_size = 65536};

		unlink(test_path("cs64.pcow"));
		OK(pcow_create(test_path("cs64.pcow"), &o));
		OK(pcow_open(&img, test_path("cs64.pcow"), 0));
		OK(pcow_map_new(&map, img, 0));
		CHECK(pcow_map_set_copy_size(map, BS, 0) == -EINVAL);
		OK(pcow_map_set_copy_size(map, 0, 0));
		OK(pcow_map_set_copy_size(map, 128 << 10, 1 << 20));
		OK(pcow_map_delete(&map));
		OK(pcow_close(&img));
	}
}

int main(void)
{
	page_copies();
	fault_ahead();
	larger_copies();
	bad_sizes();
	printf("copy_size: ok\n");
	return 0;
}
