/* test_image.c -- create/open, byte I/O against an oracle, discard, thin
 * provisioning and locking, for 4 KiB, 64 KiB and 2 MiB blocks. */
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "test.h"

#define SIZE (48ull << 20)

static uint8_t *oracle;

static void check_all(pcow_image *img)
{
	uint8_t *got = malloc(SIZE);

	CHECK(got);
	OK(pcow_read(img, got, SIZE, 0));
	CHECK(memcmp(got, oracle, SIZE) == 0);
	free(got);
}

static void io_matrix(uint32_t bs)
{
	struct pcow_create_opts o = {.struct_size = sizeof(o), .size = SIZE, .block_size = bs};
	const char *path = test_path(bs == 4096 ? "m4k" : bs == 65536 ? "m64k" : "m2m");
	struct pcow_info info = {.struct_size = sizeof(info)};
	pcow_image *img;
	uint8_t *buf = malloc(4 << 20);
	int i;

	CHECK(buf);
	memset(oracle, 0, SIZE);
	OK(pcow_create(path, &o));
	OK(pcow_open(&img, path, 0));
	OK(pcow_get_info(img, &info));
	CHECK(info.block_size == bs && info.virtual_size == SIZE && info.allocated_blocks == 0);
	srand(bs);
	for (i = 0; i < 300; i++) {
		uint64_t len = 1 + (uint64_t)rand() % (i % 10 == 0 ? (3u << 20) : 9000);
		uint64_t off = ((uint64_t)rand() * 4096 + (uint64_t)rand()) % (SIZE - len);

		test_fill(buf, len, (uint64_t)i, off);
		OK(pcow_write(img, buf, len, off));
		memcpy(oracle + off, buf, len);
		if (i % 50 == 0) {
			/* a discard of whole blocks reads back as zeros */
			uint64_t doff = (uint64_t)(rand() % 40) << 20, dlen = 1u << 20;
			uint64_t first = (doff + bs - 1) / bs * bs, end = (doff + dlen) / bs * bs;

			OK(pcow_discard(img, doff, dlen));
			if (end > first)
				memset(oracle + first, 0, end - first);
		}
	}
	check_all(img);
	/* out-of-range I/O is refused */
	CHECK(pcow_read(img, buf, 2, SIZE - 1) == -EINVAL);
	CHECK(pcow_write(img, buf, 1, SIZE) == -EINVAL);
	CHECK(pcow_write(img, buf, 1, UINT64_MAX) == -EINVAL);
	OK(pcow_flush(img));
	OK(pcow_close(&img));
	CHECK(img == NULL);
	/* what was written survives a reopen */
	OK(pcow_open(&img, path, PCOW_OPEN_RDONLY));
	check_all(img);
	CHECK(pcow_write(img, buf, 1, 0) == -EACCES);
	OK(pcow_close(&img));
	free(buf);
}

static void thin_provisioning(void)
{
	struct pcow_create_opts o = {.struct_size = sizeof(o), .size = 1ull << 40};
	const char *path = test_path("tb");
	struct pcow_info info = {.struct_size = sizeof(info)};
	pcow_image *img;
	struct stat st;
	uint8_t b[512], z[512] = {0};

	/* a new 1 TiB image takes a few MiB at most */
	OK(pcow_create(path, &o));
	CHECK(stat(path, &st) == 0 && st.st_blocks * 512 <= (4 << 20));
	OK(pcow_open(&img, path, 0));
	/* unwritten blocks read as zeros and allocate nothing */
	OK(pcow_read(img, b, sizeof(b), 700ull << 30));
	CHECK(memcmp(b, z, sizeof(b)) == 0);
	memset(b, 0x5a, sizeof(b));
	OK(pcow_write(img, b, sizeof(b), 0));
	OK(pcow_write(img, b, sizeof(b), 1ull << 39));
	OK(pcow_write(img, b, sizeof(b), (1ull << 40) - 512));
	OK(pcow_get_info(img, &info));
	CHECK(info.allocated_blocks == 3);
	OK(pcow_close(&img));
	CHECK(stat(path, &st) == 0 && st.st_blocks * 512 <= (5 << 20));
}

static void locking(void)
{
	struct pcow_create_opts o = {.struct_size = sizeof(o), .size = 1 << 20};
	const char *path = test_path("lock");
	pcow_image *a, *b, *c;

	OK(pcow_create(path, &o));
	OK(pcow_open(&a, path, 0));
	/* a second writer or reader is refused; -U still reads */
	CHECK(pcow_open(&b, path, 0) == -EBUSY);
	CHECK(strstr(pcow_errormsg(), "in use"));
	CHECK(pcow_open(&b, path, PCOW_OPEN_RDONLY) == -EBUSY);
	OK(pcow_open(&b, path, PCOW_OPEN_FORCE_SHARE));
	OK(pcow_close(&b));
	OK(pcow_close(&a));
	/* readers share */
	OK(pcow_open(&a, path, PCOW_OPEN_RDONLY));
	OK(pcow_open(&b, path, PCOW_OPEN_RDONLY));
	CHECK(pcow_open(&c, path, 0) == -EBUSY && c == NULL);
	OK(pcow_close(&a));
	OK(pcow_close(&b));
}

static void bad_create(void)
{
	struct pcow_create_opts o = {.struct_size = sizeof(o), .size = 1 << 20};

	o.block_size = 3000;
	CHECK(pcow_create(test_path("bad1"), &o) == -EINVAL);
	o.block_size = 2048;
	CHECK(pcow_create(test_path("bad1"), &o) == -EINVAL);
	o.block_size = 1u << 31;
	CHECK(pcow_create(test_path("bad1"), &o) == -EINVAL);
	o.block_size = 0;
	o.size = 1000;
	CHECK(pcow_create(test_path("bad1"), &o) == -EINVAL);
	o.size = 0;
	CHECK(pcow_create(test_path("bad1"), &o) == -EINVAL);
	o.size = UINT64_MAX - 511;
	CHECK(pcow_create(test_path("bad1"), &o) == -EFBIG);
	CHECK(access(test_path("bad1"), F_OK) != 0);
	o.size = 1 << 20;
	OK(pcow_create(test_path("exists"), &o));
	CHECK(pcow_create(test_path("exists"), &o) == -EEXIST);
}

static void bad_open(void)
{
	pcow_image *img;
	int fd;

	fd = open(test_path("empty"), O_CREAT | O_WRONLY, 0644);
	CHECK(fd >= 0);
	close(fd);
	CHECK(pcow_open(&img, test_path("empty"), 0) == -EINVAL);
	CHECK(pcow_open(&img, test_path("nonexistent"), 0) == -ENOENT);
	/* an image cut short of its regions is refused, not read past its end */
	{
		struct pcow_create_opts o = {.struct_size = sizeof(o), .size = 64 << 20};

		OK(pcow_create(test_path("short"), &o));
		CHECK(truncate(test_path("short"), 3 << 20) == 0);
		CHECK(pcow_open(&img, test_path("short"), 0) == -EINVAL);
		CHECK(strstr(pcow_errormsg(), "truncated"));
	}
}

/* The structures passed in carry their size: a caller built with another
 * layout is refused, not misread. */
static void struct_sizes(void)
{
	struct pcow_create_opts o = {.struct_size = sizeof(o), .size = 1 << 20};
	struct pcow_info info = {.struct_size = sizeof(info) - 8};
	const char *path = test_path("sizes");
	pcow_image *img;
	size_t old_create = offsetof(struct pcow_create_opts, flags);
	size_t bad[] = {0, old_create - 8, old_create + 4, sizeof(o) + 8, 8};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		o.struct_size = bad[i];
		CHECK(pcow_create(path, &o) == -EINVAL);
		CHECK(strstr(pcow_errormsg(), "struct_size"));
		CHECK(access(path, F_OK) < 0 && errno == ENOENT);
	}
	CHECK(pcow_create(path, NULL) == -EINVAL);
	o.struct_size = sizeof(o);
	OK(pcow_create(path, &o));
	OK(pcow_open(&img, path, 0));
	CHECK(pcow_get_info(img, &info) == -EINVAL);
	CHECK(strstr(pcow_errormsg(), "struct_size") && info.virtual_size == 0);
	info.struct_size = sizeof(info) + 8;
	CHECK(pcow_get_info(img, &info) == -EINVAL);
	info.struct_size = sizeof(info);
	OK(pcow_get_info(img, &info));
	CHECK(info.virtual_size == 1 << 20 && info.struct_size == sizeof(info));
	/* the size stays set: the same structure serves the next call */
	OK(pcow_get_info(img, &info));
	OK(pcow_close(&img));
}

/* A caller built before the last fields were added passes the older
 * size: it is served, and nothing past its structure is read or written. */
static void older_struct_sizes(void)
{
	struct pcow_create_opts o = {.size = 1 << 20};
	struct pcow_info info;
	const char *path = test_path("older"), *lone = test_path("older-lone");
	size_t old_info = offsetof(struct pcow_info, end_offset);
	pcow_image *img;

	o.struct_size = offsetof(struct pcow_create_opts, flags);
	OK(pcow_create(path, &o));
	/* flags lies past the older structure: not read */
	o.backing_file = "missing.raw";
	o.backing_format = PCOW_FORMAT_RAW;
	o.flags = PCOW_CREATE_NO_BACKING_OPEN;
	CHECK(pcow_create(lone, &o) == -ENOENT);
	o.struct_size = sizeof(o);
	OK(pcow_create(lone, &o));
	OK(pcow_open(&img, lone, PCOW_OPEN_NO_BACKING));
	memset(&info, 0, sizeof(info));
	info.struct_size = sizeof(info);
	OK(pcow_get_info(img, &info));
	CHECK(!strcmp(info.backing_file, "missing.raw") && info.virtual_size == 1 << 20);
	OK(pcow_close(&img));
	/* without the backing file the size must be given */
	o.size = 0;
	CHECK(pcow_create(test_path("older-nosize"), &o) == -EINVAL);

	OK(pcow_open(&img, path, 0));
	memset(&info, 0xaa, sizeof(info));
	info.struct_size = old_info;
	OK(pcow_get_info(img, &info));
	CHECK(info.struct_size == old_info && info.virtual_size == 1 << 20);
	CHECK(info.end_offset == 0xaaaaaaaaaaaaaaaaull && info.view_layers == 0xaaaaaaaau);
	OK(pcow_close(&img));
}

/* end_offset is the file size the image needs; view_layers counts the
 * layers a read goes through. */
static void end_and_layers(void)
{
	struct pcow_create_opts o = {.struct_size = sizeof(o), .size = 4 << 20};
	struct pcow_info info = {.struct_size = sizeof(info)};
	const char *path = test_path("layers"), *top = test_path("layers-top");
	pcow_image *img;
	struct stat st;

	OK(pcow_create(path, &o));
	OK(pcow_open(&img, path, 0));
	OK(pcow_get_info(img, &info));
	CHECK(stat(path, &st) == 0 && info.end_offset == (uint64_t)st.st_size);
	CHECK(info.view_layers == 1);
	OK(pcow_snapshot_create(img, "one"));
	OK(pcow_snapshot_create(img, "two"));
	OK(pcow_get_info(img, &info));
	CHECK(stat(path, &st) == 0 && info.end_offset == (uint64_t)st.st_size);
	CHECK(info.end_offset > PCOW_BLOCK_SIZE_DEFAULT && info.view_layers == 3);
	OK(pcow_close(&img));
	o.backing_file = "layers";
	o.backing_format = PCOW_FORMAT_PCOW;
	OK(pcow_create(top, &o));
	OK(pcow_open(&img, top, PCOW_OPEN_RDONLY));
	OK(pcow_get_info(img, &info));
	CHECK(info.view_layers == 4);
	OK(pcow_close(&img));
	OK(pcow_open(&img, top, PCOW_OPEN_RDONLY | PCOW_OPEN_NO_BACKING));
	OK(pcow_get_info(img, &info));
	CHECK(info.view_layers == 1);
	OK(pcow_close(&img));
}

int main(void)
{
	oracle = malloc(SIZE);
	CHECK(oracle);
	io_matrix(4096);
	io_matrix(65536);
	io_matrix(2u << 20);
	thin_provisioning();
	locking();
	bad_create();
	bad_open();
	struct_sizes();
	older_struct_sizes();
	end_and_layers();
	free(oracle);
	printf("image: ok\n");
	return 0;
}
