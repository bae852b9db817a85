/*
 * test_map_runs.c -- mapping an image whose content is in many separate
 * runs (inherited blocks alternating with the active layer's own, with
 * holes, with large runs of each) stays within the VMA budget and within
 * vm.max_map_count, shows exactly what the read API reads, and takes
 * stores everywhere.
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "test.h"

#define BS 4096u

/* The mappings (VMAs) that make up the range, as the library counts them. */
static uint64_t vmas_of(pcow_map *map)
{
	struct pcow_map_stats st;

	OK(pcow_map_get_stats(map, &st));
	return st.vmas;
}

/* The mapping shows what pcow_read reads. */
static void same_as_api(pcow_image *img, pcow_map *map, uint64_t size)
{
	uint8_t *got = malloc(size);

	CHECK(got);
	OK(pcow_read(img, got, size, 0));
	CHECK(memcmp(pcow_map_addr(map), got, size) == 0);
	free(got);
}

/*
 * A raw base of `blocks` blocks with data in all but the holes, an overlay
 * that owns the blocks for which `owned` says so (written or discarded),
 * mapped with the given VMA budget.
 */
typedef int (*layout_fn)(uint64_t b);

static pcow_image *build(const char *name, uint64_t blocks, uint64_t raw_size,
			 layout_fn kind)
{
	char raw[64], ovl[64];
	uint8_t buf[BS];
	pcow_image *img;
	uint64_t b;
	int fd;

	snprintf(raw, sizeof(raw), "%s.raw", name);
	snprintf(ovl, sizeof(ovl), "%s.pcow", name);
	unlink(test_path(raw));
	unlink(test_path(ovl));
	fd = open(test_path(raw), O_CREAT | O_WRONLY | O_TRUNC, 0644);
	CHECK(fd >= 0 && ftruncate(fd, (off_t)raw_size) == 0);
	for (b = 0; b < blocks && b * BS < raw_size; b++) {
		uint64_t n = raw_size - b * BS < BS ? raw_size - b * BS : BS;

		if (kind(b) == 'h')
			continue;       /* nothing anywhere */
		test_fill(buf, n, 3, b * BS);
		CHECK(pwrite(fd, buf, n, (off_t)(b * BS)) == (ssize_t)n);
	}
	close(fd);
	{
		struct pcow_create_opts o = {.struct_size = sizeof(o), .size = blocks * BS, .block_size = BS,
					     .backing_file = raw,
					     .backing_format = PCOW_FORMAT_RAW};

		OK(pcow_create(test_path(ovl), &o));
	}
	OK(pcow_open(&img, test_path(ovl), 0));
	for (b = 0; b < blocks; b++) {
		if (kind(b) == 'w') {
			test_fill(buf, BS, 4, b * BS);
			OK(pcow_write(img, buf, BS, b * BS));
		} else if (kind(b) == 'd') {
			OK(pcow_discard(img, b * BS, BS));
		}
	}
	OK(pcow_close(&img));
	OK(pcow_open(&img, test_path(ovl), 0));
	return img;
}

/*
 * 'i' inherited, 'w' written by the overlay, 'd' discarded by it, 'h' a
 * hole everywhere.  Small runs alternate; between them, large runs of each
 * kind (a budget of 64 VMAs over 1024 blocks makes 64 blocks large).
 */
static int mixed(uint64_t b)
{
	if (b < 256)
		return b % 2 ? 'w' : 'i';
	if (b < 512)
		return 'i';
	if (b < 600)
		return b % 3 == 0 ? 'd' : b % 3 == 1 ? 'i' : 'h';
	if (b < 760)
		return 'w';
	if (b < 900)
		return 'h';
	return b % 2 ? 'i' : 'w';
}

static void mixed_layout(void)
{
	const uint64_t blocks = 1024, size = blocks * BS;
	uint8_t *want = malloc(size), *base;
	pcow_image *img = build("mixed", blocks, size - 1000, mixed);
	pcow_map *map;
	uint64_t i, v, s = 12345;

	CHECK(want);
	setenv("PCOW_VMA_BUDGET", "64", 1);
	OK(pcow_map_new(&map, img, 0));
	unsetenv("PCOW_VMA_BUDGET");
	base = pcow_map_addr(map);
	v = vmas_of(map);
	printf("mixed layout: %llu VMAs with a budget of 64\n", (unsigned long long)v);
	CHECK(v <= 64);
	same_as_api(img, map, size);
	/* Stores everywhere, in a random order, one word in each block and a
	 * few random words. */
	OK(pcow_read(img, want, size, 0));
	for (i = 0; i < 3000; i++) {
		uint64_t off;

		s = s * 6364136223846793005ull + 1442695040888963407ull;
		off = i < blocks ? ((s >> 33) % blocks) * BS + 8 * (i % 512)
				 : ((s >> 20) % (size / 8)) * 8;
		*(volatile uint64_t *)(base + off) = s;
		memcpy(want + off, &s, 8);
	}
	CHECK(memcmp(base, want, size) == 0);
	same_as_api(img, map, size);
	OK(pcow_map_flush(map));
	OK(pcow_map_delete(&map));
	OK(pcow_close(&img));
	OK(pcow_open(&img, test_path("mixed.pcow"), PCOW_OPEN_RDONLY));
	OK(pcow_map_new(&map, img, PCOW_MAP_RDONLY));
	CHECK(memcmp(pcow_map_addr(map), want, size) == 0);
	OK(pcow_map_delete(&map));
	OK(pcow_close(&img));
	free(want);
}

static int alternate(uint64_t b)
{
	return b % 2 ? 'd' : 'i';
}

/*
 * 76,800 inherited blocks, each between two the overlay discarded: one
 * mapping per run would need more than vm.max_map_count (65,530) allows,
 * with the library's default budget.
 */
static void too_many_runs(void)
{
	const uint64_t blocks = 153600, size = blocks * BS;
	pcow_image *img = build("many", blocks, size, alternate);
	pcow_map *map;
	uint64_t v, b;
	uint8_t *base;

	OK(pcow_map_new(&map, img, 0));
	base = pcow_map_addr(map);
	v = vmas_of(map);
	printf("alternating blocks: %llu VMAs for %llu inherited runs\n",
	       (unsigned long long)v, (unsigned long long)blocks / 2);
	CHECK(v <= 24576);
	same_as_api(img, map, size);
	for (b = 0; b < blocks; b += 997)
		*(volatile uint64_t *)(base + b * BS + 16) = b;
	for (b = 0; b < blocks; b += 997) {
		uint64_t got;

		OK(pcow_read(img, &got, 8, b * BS + 16));
		CHECK(got == b);
	}
	OK(pcow_map_delete(&map));
	OK(pcow_close(&img));
	unlink(test_path("many.raw"));
	unlink(test_path("many.pcow"));
}

int main(void)
{
	mixed_layout();
	too_many_runs();
	printf("map_runs: ok\n");
	return 0;
}
