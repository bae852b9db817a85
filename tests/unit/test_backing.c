/* test_backing.c -- backing chains: raw and pcow, depth, relative names,
 * loops, copy-on-write into the overlay, safe and unsafe rebase. */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "capture.h"
#include "test.h"

#define SIZE (8ull << 20)

static uint8_t *read_all(pcow_image *img, uint64_t size)
{
	uint8_t *b = malloc(size);

	CHECK(b);
	OK(pcow_read(img, b, size, 0));
	return b;
}

static void make_raw(const char *path, uint64_t size)
{
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	uint8_t buf[4096];
	uint64_t off;

	CHECK(fd >= 0);
	CHECK(ftruncate(fd, (off_t)size) == 0);
	/* sparse, with data every 320 KiB so holes and data alternate */
	for (off = 0; off < size; off += 320 << 10) {
		test_fill(buf, sizeof(buf), 1, off);
		CHECK(pwrite(fd, buf, sizeof(buf), (off_t)off) == sizeof(buf));
	}
	close(fd);
}

int main(void)
{
	struct pcow_create_opts o = {.struct_size = sizeof(o)};
	pcow_image *img, *mid;
	uint8_t *want, *got, buf[9000];
	uint64_t base_sum, mid_sum;
	struct pcow_info info = {.struct_size = sizeof(info)};
	int ret;

	CHECK(chdir(test_dir()) == 0);
	CHECK(mkdir("sub", 0755) == 0);
	make_raw("base.raw", SIZE);
	base_sum = test_file_sum("base.raw");

	/* a raw backing file; size defaults to the backing's; the name is
	 * stored as given and resolved against the overlay's directory */
	o.backing_file = "../base.raw";
	o.backing_format = PCOW_FORMAT_RAW;
	o.block_size = 4096;
	OK(pcow_create("sub/mid.pcow", &o));
	OK(pcow_open(&mid, "sub/mid.pcow", 0));
	OK(pcow_get_info(mid, &info));
	CHECK(info.virtual_size == SIZE && !strcmp(info.backing_file, "../base.raw"));
	CHECK(info.backing_format == PCOW_FORMAT_RAW);
	want = malloc(SIZE);
	CHECK(want);
	{
		int fd = open("base.raw", O_RDONLY);

		CHECK(pread(fd, want, SIZE, 0) == (ssize_t)SIZE);
		close(fd);
	}
	got = read_all(mid, SIZE);
	CHECK(memcmp(got, want, SIZE) == 0);
	free(got);
	/* writes land in the overlay, partial writes keep the rest of the block */
	test_fill(buf, sizeof(buf), 2, 100);
	OK(pcow_write(mid, buf, sizeof(buf), 100));
	memcpy(want + 100, buf, sizeof(buf));
	test_fill(buf, 4096, 3, 640 << 10);
	OK(pcow_write(mid, buf, 4096, 640 << 10)); /* whole-block overwrite */
	memcpy(want + (640 << 10), buf, 4096);
	OK(pcow_discard(mid, 320 << 10, 4096)); /* backing data must not show */
	memset(want + (320 << 10), 0, 4096);
	got = read_all(mid, SIZE);
	CHECK(memcmp(got, want, SIZE) == 0);
	free(got);
	OK(pcow_close(&mid));
	CHECK(test_file_sum("base.raw") == base_sum);

	/* a three-deep chain with a different block size on top */
	memset(&o, 0, sizeof(o));
	o.struct_size = sizeof(o);
	o.backing_file = "sub/mid.pcow";
	o.backing_format = PCOW_FORMAT_PCOW;
	o.block_size = 65536;
	OK(pcow_create("top.pcow", &o));
	mid_sum = test_file_sum("sub/mid.pcow");
	OK(pcow_open(&img, "top.pcow", 0));
	got = read_all(img, SIZE);
	CHECK(memcmp(got, want, SIZE) == 0);
	free(got);
	test_fill(buf, 5000, 4, 300 << 10);
	OK(pcow_write(img, buf, 5000, 300 << 10));
	memcpy(want + (300 << 10), buf, 5000);
	got = read_all(img, SIZE);
	CHECK(memcmp(got, want, SIZE) == 0);
	free(got);
	{
		struct pcow_block_status st;

		OK(pcow_block_status(img, 0, SIZE, &st));
		/* from mid.pcow, whose 4 KiB blocks show inside the top's */
		CHECK(st.depth == 1 && st.length > 0 && st.length <= 65536 &&
		      st.length % 4096 == 0 && st.file_offset >= 0);
		OK(pcow_block_status(img, 300 << 10, 4096, &st));
		CHECK(st.depth == 0);
		OK(pcow_block_status(img, (320 << 10) * 3, 4096, &st));
		CHECK(st.depth == 2 && (st.flags & PCOW_STATUS_DATA)); /* base.raw */
		OK(pcow_block_status(img, (320 << 10) * 3 + 8192, 4096, &st));
		CHECK(st.depth == -1 && (st.flags & PCOW_STATUS_ZERO));
	}
	/* a backing file in use by a writer cannot be opened for writing */
	CHECK(pcow_open(&mid, "sub/mid.pcow", 0) == -EBUSY);
	OK(pcow_close(&img));
	CHECK(test_file_sum("sub/mid.pcow") == mid_sum && test_file_sum("base.raw") == base_sum);

	/* safe rebase onto raw base keeps the content identical */
	OK(pcow_open(&img, "top.pcow", 0));
	OK(pcow_rebase(img, "base.raw", PCOW_FORMAT_RAW, 0));
	got = read_all(img, SIZE);
	CHECK(memcmp(got, want, SIZE) == 0);
	free(got);
	OK(pcow_get_info(img, &info));
	CHECK(!strcmp(info.backing_file, "base.raw"));
	/* ...and removing the backing file altogether too */
	OK(pcow_rebase(img, NULL, PCOW_FORMAT_NONE, 0));
	got = read_all(img, SIZE);
	CHECK(memcmp(got, want, SIZE) == 0);
	free(got);
	OK(pcow_close(&img));

	/* unsafe rebase only rewrites the name; a loop is refused */
	OK(pcow_open(&mid, "sub/mid.pcow", 0));
	OK(pcow_rebase(mid, "../top.pcow", PCOW_FORMAT_PCOW, PCOW_REBASE_UNSAFE));
	OK(pcow_close(&mid));
	OK(pcow_open(&img, "top.pcow", 0));
	CHECK(pcow_rebase(img, "sub/mid.pcow", PCOW_FORMAT_PCOW, PCOW_REBASE_UNSAFE) == -ELOOP);
	CHECK(strstr(pcow_errormsg(), "loop"));
	CHECK(pcow_rebase(img, "top.pcow", PCOW_FORMAT_RAW, PCOW_REBASE_UNSAFE) == -ELOOP);
	OK(pcow_get_info(img, &info));
	CHECK(info.backing_file[0] == '\0');
	/* a missing new backing file is allowed; renamed into place, it makes
	 * a loop that every open refuses */
	OK(pcow_rebase(img, "sub/later.pcow", PCOW_FORMAT_PCOW, PCOW_REBASE_UNSAFE));
	OK(pcow_close(&img));
	CHECK(rename("sub/mid.pcow", "sub/later.pcow") == 0);
	ret = pcow_open(&img, "top.pcow", 0);
	CHECK(ret == -ELOOP && strstr(pcow_errormsg(), "loop"));
	OK(pcow_open(&img, "top.pcow", PCOW_OPEN_NO_BACKING));
	OK(pcow_close(&img));

	/* a missing backing file is a clear error */
	memset(&o, 0, sizeof(o));
	o.struct_size = sizeof(o);
	o.size = SIZE;
	OK(pcow_create("lonely.pcow", &o));
	OK(pcow_open(&img, "lonely.pcow", 0));
	OK(pcow_rebase(img, "gone.raw", PCOW_FORMAT_RAW, PCOW_REBASE_UNSAFE));
	OK(pcow_close(&img));
	CHECK(pcow_open(&img, "lonely.pcow", 0) == -ENOENT);
	CHECK(strstr(pcow_errormsg(), "gone.raw"));
	o.backing_file = "gone.raw";
	o.backing_format = PCOW_FORMAT_RAW;
	CHECK(pcow_create("x.pcow", &o) == -ENOENT);
	o.backing_format = PCOW_FORMAT_NONE;
	o.backing_file = "base.raw";
	CHECK(pcow_create("x.pcow", &o) == -EINVAL);

	/* a chain deeper than the limit is refused, not followed */
	{
		char name[32], prev[32];
		int i;

		memset(&o, 0, sizeof(o));
		o.struct_size = sizeof(o);
		o.size = 1 << 20;
		OK(pcow_create("c0", &o));
		for (i = 1; i <= 70; i++) {
			snprintf(prev, sizeof(prev), "c%d", i - 1);
			snprintf(name, sizeof(name), "c%d", i);
			OK(pcow_create(name, &o));
			OK(pcow_open(&img, name, PCOW_OPEN_NO_BACKING));
			OK(pcow_rebase(img, prev, PCOW_FORMAT_PCOW, PCOW_REBASE_UNSAFE));
			OK(pcow_close(&img));
		}
		OK(pcow_open(&img, "c60", PCOW_OPEN_RDONLY));
		OK(pcow_close(&img));
		CHECK(pcow_open(&img, "c70", PCOW_OPEN_RDONLY) == -ELOOP);
	}
	free(want);
	printf("backing: ok\n");
	return 0;
}
