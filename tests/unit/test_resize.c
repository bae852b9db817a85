/* test_resize.c -- pcow_resize: growing within the capacity and past it
 * (relocation), shrinking, the backing file past the old size, the block a
 * resize cuts, interrupted resizes, and refusals. */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "stripe.h"
#include "test.h"

#include "image.h"
#include "persist.h"

#define MiB (1ull << 20)
#define KiB 1024ull
#define BS (64 * KiB)

/* A model of the guest-visible content, as large as any size used. */
#define MODEL_MAX (64 * MiB)
static uint8_t *model;

static void put(pcow_image *img, uint64_t off, uint64_t len, uint64_t seed)
{
	uint8_t *buf = malloc(len);

	CHECK(buf);
	test_fill(buf, len, seed, off);
	OK(pcow_write(img, buf, len, off));
	memcpy(model + off, buf, len);
	free(buf);
}

/* The whole image must read as the model says, and nothing past it. */
static void same_as_model(pcow_image *img)
{
	struct pcow_info info = {.struct_size = sizeof(info)};
	uint8_t *buf;

	OK(pcow_get_info(img, &info));
	buf = malloc(info.virtual_size);
	CHECK(buf);
	OK(pcow_read(img, buf, info.virtual_size, 0));
	CHECK(memcmp(buf, model, info.virtual_size) == 0);
	free(buf);
}

static void check_clean(pcow_image *img)
{
	struct pcow_check_result r;

	OK(pcow_check(img, 0, &r));
	if (r.corruptions || r.leaks)
		fprintf(stderr, "check: %s\n", r.first_problem);
	CHECK(r.corruptions == 0 && r.leaks == 0 && r.check_errors == 0);
}

static uint64_t vsize(pcow_image *img)
{
	struct pcow_info info = {.struct_size = sizeof(info)};

	OK(pcow_get_info(img, &info));
	return info.virtual_size;
}

/* Bytes of data the file holds in [start, end). */
static uint64_t file_data(const char *path, uint64_t start, uint64_t end)
{
	int fd = open(path, O_RDONLY);
	uint64_t n = 0, pos = start;

	CHECK(fd >= 0);
	while (pos < end) {
		off_t d = lseek(fd, (off_t)pos, SEEK_DATA), h;

		if (d < 0 || (uint64_t)d >= end)
			break;
		h = lseek(fd, d, SEEK_HOLE);
		CHECK(h >= 0);
		if ((uint64_t)h > end)
			h = (off_t)end;
		n += (uint64_t)(h - d);
		pos = (uint64_t)h;
	}
	close(fd);
	return n;
}

static pcow_image *create_open(const char *name, uint64_t size, uint64_t capacity,
			       const char *backing, enum pcow_format fmt)
{
	struct pcow_create_opts o = {.struct_size = sizeof(o), .size = size, .block_size = BS,
				     .capacity = capacity, .backing_file = backing,
				     .backing_format = fmt};
	pcow_image *img;

	OK(pcow_create(test_path(name), &o));
	OK(pcow_open(&img, test_path(name), 0));
	return img;
}

/* A sparse raw file; its pieces go into the model too. */
static void make_raw(const char *name, uint64_t size, const uint64_t (*pieces)[2],
		     int n)
{
	int fd = open(test_path(name), O_CREAT | O_TRUNC | O_WRONLY, 0644);
	uint8_t *buf;
	int i;

	CHECK(fd >= 0 && ftruncate(fd, (off_t)size) == 0);
	memset(model, 0, MODEL_MAX);
	for (i = 0; i < n; i++) {
		buf = malloc(pieces[i][1]);
		CHECK(buf);
		test_fill(buf, pieces[i][1], 7, pieces[i][0]);
		CHECK(pwrite(fd, buf, pieces[i][1], (off_t)pieces[i][0]) ==
		      (ssize_t)pieces[i][1]);
		memcpy(model + pieces[i][0], buf, pieces[i][1]);
		free(buf);
	}
	close(fd);
}

static uint64_t progress_done, progress_total, progress_calls;

static void on_progress(uint64_t done, uint64_t total, void *opaque)
{
	(void)opaque;
	CHECK(done <= total);
	progress_done = done;
	progress_total = total;
	progress_calls++;
}

static void grow_within_capacity(void)
{
	const char *path = test_path("cap.pcow");
	pcow_image *img = create_open("cap.pcow", 8 * MiB, 40 * MiB + 1, NULL, 0);
	struct pcow_info info = {.struct_size = sizeof(info)};
	uint64_t base = img->m.region_base;

	memset(model, 0, MODEL_MAX);
	OK(pcow_get_info(img, &info));
	/* rounded up to the region alignment */
	CHECK(info.capacity == 42 * MiB);
	put(img, 0, 100 * KiB, 1);
	put(img, 8 * MiB - 3000, 3000, 2);
	OK(pcow_resize(img, 40 * MiB, 0));
	CHECK(vsize(img) == 40 * MiB);
	/* in place: nothing moved */
	CHECK(img->m.region_base == base && img->m.data_capacity == 42 * MiB);
	same_as_model(img);
	put(img, 39 * MiB, 1 * MiB, 3);
	check_clean(img);
	OK(pcow_close(&img));
	OK(pcow_open(&img, path, 0));
	CHECK(vsize(img) == 40 * MiB);
	same_as_model(img);
	/* growing to exactly the capacity stays in place */
	OK(pcow_resize(img, 42 * MiB, 0));
	CHECK(img->m.region_base == base);
	same_as_model(img);
	check_clean(img);
	OK(pcow_close(&img));
}

static void grow_past_capacity(void)
{
	const char *path = test_path("reloc.pcow");
	pcow_image *img = create_open("reloc.pcow", 8 * MiB, 0, NULL, 0);
	uint64_t old_base = img->m.region_base, new_size = 20 * MiB + 512;

	memset(model, 0, MODEL_MAX);
	put(img, 0, 3 * BS, 4);
	put(img, 5 * MiB + 100, 70000, 5);
	put(img, 8 * MiB - 512, 512, 6);
	pcow_set_progress(img, on_progress, NULL);
	progress_calls = 0;
	OK(pcow_resize(img, new_size, 0));
	CHECK(progress_calls > 0 && progress_done == progress_total && progress_total > 0);
	CHECK(vsize(img) == new_size);
	CHECK(img->m.region_base > old_base && img->m.region_base % (2 * MiB) == 0);
	CHECK(img->m.data_capacity == 22 * MiB);
	same_as_model(img);
	/* the old place is freed */
	CHECK(file_data(path, 2 * MiB, img->m.region_base) == 0);
	check_clean(img);
	put(img, new_size - 4096, 4096, 7);
	OK(pcow_close(&img));
	OK(pcow_open(&img, path, 0));
	same_as_model(img);
	check_clean(img);
	OK(pcow_close(&img));
}

/* The grown area reads as zeros whatever the backing file holds there. */
static void grow_over_backing(bool relocate, enum pcow_format fmt)
{
	/* The old size cuts block 100 (in the middle of a bitmap word) at
	 * 16 KiB; the backing file has data in it before and after the cut,
	 * and all over the new area. */
	static const uint64_t pieces[][2] = {
		{0, 200 * KiB}, {100 * BS, 4 * KiB}, {100 * BS + 32 * KiB, 8 * KiB},
		{9 * MiB, 3 * MiB}, {15 * MiB, 1 * MiB},
	};
	uint64_t old_size = 100 * BS + 16 * KiB, new_size = 16 * MiB;
	const char *base = fmt == PCOW_FORMAT_RAW ? "base.raw" : "base.pcow";
	pcow_image *img;

	make_raw("base.raw", 16 * MiB, pieces, 5);
	if (fmt == PCOW_FORMAT_PCOW) {
		pcow_image *b = create_open("base.pcow", 16 * MiB, 0, "base.raw",
					    PCOW_FORMAT_RAW);

		put(b, 10 * MiB, 4096, 8);
		OK(pcow_close(&b));
	}
	img = create_open("over.pcow", old_size, relocate ? 0 : 16 * MiB, base, fmt);
	put(img, 100 * KiB, 8 * KiB, 9);
	OK(pcow_resize(img, new_size, 0));
	CHECK(vsize(img) == new_size);
	CHECK(relocate == (img->m.region_base != 2 * MiB));
	memset(model + old_size, 0, new_size - old_size);
	same_as_model(img);
	check_clean(img);
	OK(pcow_close(&img));
	OK(pcow_open(&img, test_path("over.pcow"), 0));
	same_as_model(img);
	OK(pcow_close(&img));
	unlink(test_path("over.pcow"));
	unlink(test_path("base.pcow"));
}

/*
 * The block the old size cuts was owned by the active layer for holding
 * data with nothing below it; the backing file's data past the cut must
 * not take it over once the size grows.
 */
static void grow_keeps_cut_block(bool relocate)
{
	static const uint64_t pieces[][2] = {{100 * BS + 32 * KiB, 8 * KiB}};
	uint64_t old_size = 100 * BS + 16 * KiB;
	pcow_image *img;

	make_raw("base.raw", 16 * MiB, pieces, 1);
	memset(model + old_size, 0, 16 * MiB - old_size);
	img = create_open("cut.pcow", old_size, relocate ? 0 : 16 * MiB, "base.raw",
			  PCOW_FORMAT_RAW);
	put(img, 100 * BS, 4 * KiB, 10);
	OK(pcow_resize(img, 16 * MiB, 0));
	same_as_model(img);
	check_clean(img);
	OK(pcow_close(&img));
	unlink(test_path("cut.pcow"));
}

static void shrink_then_grow(void)
{
	const char *path = test_path("shrink.pcow");
	pcow_image *img = create_open("shrink.pcow", 16 * MiB, 0, NULL, 0);
	uint64_t lost, region;

	memset(model, 0, MODEL_MAX);
	put(img, 0, 1 * MiB, 11);
	put(img, 6 * MiB, 1 * MiB, 12);
	put(img, 10 * MiB + 512, 1000, 13);
	OK(pcow_resize_lost_bytes(img, 6 * MiB + 512 * KiB, &lost));
	/* 512 KiB of the first write, and the page the second one took */
	CHECK(lost >= 512 * KiB + 1000 && lost <= 512 * KiB + BS);
	OK(pcow_resize_lost_bytes(img, 12 * MiB, &lost));
	CHECK(lost == 0);
	/* without the flag nothing changes */
	CHECK(pcow_resize(img, 4 * MiB, 0) == -EINVAL);
	CHECK(vsize(img) == 16 * MiB);
	same_as_model(img);
	OK(pcow_resize(img, 6 * MiB + 512 * KiB, PCOW_RESIZE_SHRINK));
	CHECK(vsize(img) == 6 * MiB + 512 * KiB);
	same_as_model(img);
	region = region_start(img, img->m.active);
	/* the data past the new size is gone from the file */
	CHECK(file_data(path, region + 6 * MiB + 512 * KiB, region + img->span) == 0);
	check_clean(img);
	/* and does not come back when the image grows again */
	memset(model + 6 * MiB + 512 * KiB, 0, 10 * MiB);
	OK(pcow_resize(img, 16 * MiB, 0));
	same_as_model(img);
	check_clean(img);
	/* an unaligned shrink */
	OK(pcow_resize(img, 1 * MiB - 1536, PCOW_RESIZE_SHRINK));
	memset(model + 1 * MiB - 1536, 0, 1536);
	OK(pcow_resize(img, 2 * MiB, 0));
	same_as_model(img);
	check_clean(img);
	OK(pcow_close(&img));
}

/*
 * A block the backing file has data in only past the new size: untrusted
 * data of the active layer in it (zero fill next to a written page, or a
 * copy cut short) must not become visible when the shrink stops the
 * backing file's data from counting.
 */
static void shrink_keeps_cut_block(void)
{
	static const uint64_t pieces[][2] = {{100 * BS + 32 * KiB, 8 * KiB}};
	pcow_image *img;
	int fd;

	make_raw("base.raw", 16 * MiB, pieces, 1);
	img = create_open("scut.pcow", 16 * MiB, 0, "base.raw", PCOW_FORMAT_RAW);
	fd = open(test_path("scut.pcow"), O_WRONLY);
	CHECK(fd >= 0);
	{
		/* Into the file that holds the byte (an extent file of a
		 * striped image: PCOW_TEST_STRIPES). */
		uint64_t off = region_start(img, 0) + 100 * BS, end;
		const struct pcow_stripes *s = pcow_stripes_of(img->fd);

		CHECK(pwrite(s ? pcow_stripe_route(s, off, &end) : fd, "garbage", 7,
			     (off_t)off) == 7);
	}
	close(fd);
	same_as_model(img);
	OK(pcow_resize(img, 100 * BS + 16 * KiB, PCOW_RESIZE_SHRINK));
	same_as_model(img);
	check_clean(img);
	OK(pcow_close(&img));
}

/* Fails every hole punch once the metadata has been written. */
static bool seen_meta;

static int fail_release(enum pcow_io_op op, int fd, uint64_t off, uint64_t len,
			const void *buf, void *opaque)
{
	(void)fd;
	(void)len;
	(void)buf;
	(void)opaque;
	if (op == PCOW_IO_WRITE && off < 512 * KiB)
		seen_meta = true;
	return op == PCOW_IO_PUNCH && seen_meta ? -EIO : 0;
}

static uint64_t leaks_of(pcow_image *img, char *what, size_t len)
{
	struct pcow_check_result r;

	OK(pcow_check(img, 0, &r));
	CHECK(r.corruptions == 0 && r.check_errors == 0);
	snprintf(what, len, "%s", r.first_problem);
	return r.leaks;
}

static void repair(pcow_image *img)
{
	struct pcow_check_result r;

	OK(pcow_check(img, PCOW_CHECK_FIX_LEAKS, &r));
	CHECK(r.leaks == r.leaks_fixed && r.check_errors == 0);
	check_clean(img);
}

/* A crash (here: a failure) after the commit leaves only leaks. */
static void interrupted(void)
{
	static const uint64_t pieces[][2] = {{0, 8 * MiB}};
	pcow_image *img;
	char what[256];

	/* shrink: data and copy bits past the new size stay behind */
	make_raw("base.raw", 8 * MiB, pieces, 1);
	img = create_open("int.pcow", 8 * MiB, 0, "base.raw", PCOW_FORMAT_RAW);
	put(img, 7 * MiB + 100, 100, 14);
	OK(pcow_flush(img));
	seen_meta = false;
	pcow_io_set_hook(fail_release, NULL);
	CHECK(pcow_resize(img, 4 * MiB, PCOW_RESIZE_SHRINK) == -EIO);
	pcow_io_set_hook(NULL, NULL);
	OK(pcow_close(&img));
	OK(pcow_open(&img, test_path("int.pcow"), 0));
	CHECK(vsize(img) == 4 * MiB);
	same_as_model(img);
	CHECK(leaks_of(img, what, sizeof(what)) == 2);
	CHECK(strstr(what, "copy bits") || strstr(what, "past the virtual size"));
	/* a grow clears them itself */
	memset(model + 4 * MiB, 0, 4 * MiB);
	OK(pcow_resize(img, 8 * MiB, 0));
	same_as_model(img);
	check_clean(img);

	/* relocation: the old place stays behind */
	put(img, 3 * MiB, 4096, 15);
	seen_meta = false;
	pcow_io_set_hook(fail_release, NULL);
	CHECK(pcow_resize(img, 24 * MiB, 0) == -EIO);
	pcow_io_set_hook(NULL, NULL);
	OK(pcow_close(&img));
	OK(pcow_open(&img, test_path("int.pcow"), 0));
	CHECK(vsize(img) == 24 * MiB);
	same_as_model(img);
	CHECK(leaks_of(img, what, sizeof(what)) == 1);
	CHECK(strstr(what, "before the first region"));
	repair(img);
	same_as_model(img);
	OK(pcow_close(&img));
}

/* A relocation whose commit fails leaves the image as it was. */
static int fail_meta(enum pcow_io_op op, int fd, uint64_t off, uint64_t len,
		     const void *buf, void *opaque)
{
	(void)fd;
	(void)len;
	(void)buf;
	(void)opaque;
	return op == PCOW_IO_WRITE && off < 512 * KiB ? -ENOSPC : 0;
}

static void failed_commit(void)
{
	pcow_image *img = create_open("fc.pcow", 4 * MiB, 0, NULL, 0);
	char what[256];

	memset(model, 0, MODEL_MAX);
	put(img, 1 * MiB, 8192, 16);
	pcow_io_set_hook(fail_meta, NULL);
	CHECK(pcow_resize(img, 12 * MiB, 0) == -ENOSPC);
	pcow_io_set_hook(NULL, NULL);
	CHECK(vsize(img) == 4 * MiB);
	same_as_model(img);
	/* the copies (data, bitmap) past the old layout's last region */
	CHECK(leaks_of(img, what, sizeof(what)) >= 1);
	CHECK(strstr(what, "unused region"));
	/* trying again goes past what the failed attempt left */
	OK(pcow_resize(img, 12 * MiB, 0));
	same_as_model(img);
	repair(img);
	OK(pcow_close(&img));
	OK(pcow_open(&img, test_path("fc.pcow"), 0));
	same_as_model(img);
	check_clean(img);
	OK(pcow_close(&img));
}

static void refusals(void)
{
	struct pcow_create_opts o = {.struct_size = sizeof(o), .size = 4 * MiB, .capacity = 2 * MiB};
	pcow_image *img = create_open("ref.pcow", 4 * MiB, 0, NULL, 0), *ro;
	pcow_map *map;

	CHECK(pcow_create(test_path("small-cap.pcow"), &o) == -EINVAL);
	CHECK(strstr(pcow_errormsg(), "capacity"));
	o.capacity = 1ull << 51;
	CHECK(pcow_create(test_path("big-cap.pcow"), &o) == -EFBIG);
	CHECK(pcow_resize(img, 0, 0) == -EINVAL);
	CHECK(pcow_resize(img, 4 * MiB + 100, 0) == -EINVAL);
	CHECK(strstr(pcow_errormsg(), "multiple of 512"));
	CHECK(pcow_resize(img, (1ull << 50) + 512, 0) == -EFBIG);
	CHECK(pcow_resize(img, 8 * MiB, 0x80) == -EINVAL);
	OK(pcow_resize(img, 4 * MiB, 0)); /* the same size: nothing to do */
	OK(pcow_map_new(&map, img, 0));
	CHECK(pcow_resize(img, 8 * MiB, 0) == -EBUSY);
	OK(pcow_map_delete(&map));
	OK(pcow_snapshot_create(img, "s1"));
	CHECK(pcow_resize(img, 8 * MiB, 0) == -ENOTSUP);
	CHECK(strstr(pcow_errormsg(), "snapshots"));
	OK(pcow_snapshot_delete(img, "s1"));
	CHECK(vsize(img) == 4 * MiB);
	OK(pcow_close(&img));
	OK(pcow_open(&ro, test_path("ref.pcow"), PCOW_OPEN_RDONLY));
	CHECK(pcow_resize(ro, 8 * MiB, 0) == -EACCES);
	OK(pcow_close(&ro));
}

int main(void)
{
	model = calloc(1, MODEL_MAX);
	CHECK(model);
	grow_within_capacity();
	grow_past_capacity();
	grow_over_backing(false, PCOW_FORMAT_RAW);
	grow_over_backing(true, PCOW_FORMAT_RAW);
	grow_over_backing(false, PCOW_FORMAT_PCOW);
	grow_over_backing(true, PCOW_FORMAT_PCOW);
	grow_keeps_cut_block(false);
	grow_keeps_cut_block(true);
	shrink_then_grow();
	shrink_keeps_cut_block();
	interrupted();
	failed_commit();
	refusals();
	free(model);
	printf("resize: ok\n");
	return 0;
}
