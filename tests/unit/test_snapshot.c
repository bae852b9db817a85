/* test_snapshot.c -- snapshots as a tree: create, apply without loss of
 * other snapshots, delete with reuse of space, checked against oracles. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "image.h"
#include "persist.h"
#include "test.h"

#define SIZE (16ull << 20)
#define NSNAP 6

static uint8_t *state[NSNAP + 1]; /* state[i] = content of snapshot "s<i>" */
static uint8_t *cur;

static void expect(pcow_image *img, const uint8_t *want)
{
	uint8_t *got = malloc(SIZE);

	CHECK(got);
	OK(pcow_read(img, got, SIZE, 0));
	CHECK(memcmp(got, want, SIZE) == 0);
	free(got);
}

static void scribble(pcow_image *img, uint64_t seed, int n)
{
	uint8_t buf[70000];
	int i;

	for (i = 0; i < n; i++) {
		uint64_t len = 1 + (uint64_t)rand() % sizeof(buf);
		uint64_t off = (uint64_t)rand() % (SIZE - len);

		test_fill(buf, len, seed * 1000 + (uint64_t)i, off);
		OK(pcow_write(img, buf, len, off));
		memcpy(cur + off, buf, len);
	}
}

static uint64_t disk_bytes(const char *p)
{
	struct stat st;

	CHECK(stat(p, &st) == 0);
	return (uint64_t)st.st_blocks * 512;
}

static void run(uint32_t bs)
{
	struct pcow_create_opts o = {.struct_size = sizeof(o), .size = SIZE, .block_size = bs};
	const char *path = test_path(bs == 4096 ? "s4k" : bs == 65536 ? "s64k" : "s2m");
	struct pcow_snapshot_info *list;
	struct pcow_check_result r;
	pcow_image *img;
	char name[16];
	size_t n;
	uint64_t before;
	int i;

	memset(cur, 0, SIZE);
	OK(pcow_create(path, &o));
	OK(pcow_open(&img, path, 0));
	for (i = 0; i < 3; i++) {
		scribble(img, (uint64_t)i, 40);
		snprintf(name, sizeof(name), "s%d", i);
		/* creating a snapshot copies no data */
		before = disk_bytes(path);
		OK(pcow_snapshot_create(img, name));
		CHECK(disk_bytes(path) <= before + 8192);
		memcpy(state[i], cur, SIZE);
	}
	scribble(img, 10, 40);
	/* A clean close records every layer, the snapshots' too: check then
	 * judges ownership by data alone in all of them (format.md 4.1). */
	OK(pcow_close(&img));
	OK(pcow_open(&img, path, 0));
	OK(pcow_check(img, 0, &r));
	CHECK(r.leaks == 0 && r.corruptions == 0);
	/* names are unique; unknown names are refused */
	CHECK(pcow_snapshot_create(img, "s1") == -EEXIST);
	CHECK(pcow_snapshot_apply(img, "nope") == -ENOENT);
	CHECK(pcow_snapshot_delete(img, "nope") == -ENOENT);
	CHECK(pcow_snapshot_create(img, "") == -EINVAL);

	/* apply an old snapshot, branch from it, then go back to a newer
	 * one: every other snapshot survives */
	OK(pcow_snapshot_apply(img, "s0"));
	memcpy(cur, state[0], SIZE);
	expect(img, cur);
	scribble(img, 11, 30);
	OK(pcow_snapshot_create(img, "s3"));
	memcpy(state[3], cur, SIZE);
	OK(pcow_snapshot_apply(img, "s2"));
	memcpy(cur, state[2], SIZE);
	expect(img, cur);
	OK(pcow_snapshot_apply(img, "2")); /* by id: s1 has id 2 */
	expect(img, state[1]);
	memcpy(cur, state[1], SIZE);
	scribble(img, 12, 20);

	/* delete in an order that exercises interior, branch and leaf
	 * layers; the rest keep their content and space is given back */
	before = disk_bytes(path);
	OK(pcow_snapshot_delete(img, "s0"));
	OK(pcow_snapshot_delete(img, "s2"));
	for (i = 1; i <= 3; i += 2) {
		uint8_t *save = malloc(SIZE);

		CHECK(save);
		memcpy(save, cur, SIZE);
		snprintf(name, sizeof(name), "s%d", i);
		OK(pcow_snapshot_create(img, "tmp"));
		OK(pcow_snapshot_apply(img, name));
		expect(img, state[i]);
		OK(pcow_snapshot_apply(img, "tmp"));
		expect(img, save);
		OK(pcow_snapshot_delete(img, "tmp"));
		free(save);
	}
	OK(pcow_snapshot_list(img, &list, &n));
	CHECK(n == 2 && !strcmp(list[0].name, "s1") && !strcmp(list[1].name, "s3"));
	CHECK(list[0].id == 2 && list[0].date_sec > 1600000000);
	free(list);
	OK(pcow_snapshot_delete(img, "s1"));
	OK(pcow_snapshot_delete(img, "s3"));
	CHECK(disk_bytes(path) < before);
	expect(img, cur);
	OK(pcow_check(img, 0, &r));
	CHECK(r.leaks == 0 && r.corruptions == 0);
	/* regions are reused: many create/delete cycles do not grow the file */
	{
		struct stat st;
		off_t size;

		OK(pcow_snapshot_create(img, "cycle"));
		OK(pcow_snapshot_delete(img, "cycle"));
		CHECK(stat(path, &st) == 0);
		size = st.st_size;
		for (i = 0; i < 20; i++) {
			OK(pcow_snapshot_create(img, "cycle"));
			OK(pcow_snapshot_delete(img, "cycle"));
		}
		CHECK(stat(path, &st) == 0 && st.st_size == size);
	}
	OK(pcow_close(&img));
	OK(pcow_open(&img, path, PCOW_OPEN_RDONLY));
	expect(img, cur);
	CHECK(pcow_snapshot_create(img, "ro") == -EACCES);
	OK(pcow_close(&img));
}

static unsigned syncs;

static int count_syncs(enum pcow_io_op op, int fd, uint64_t off, uint64_t len,
		       const void *buf, void *opaque)
{
	(void)fd, (void)off, (void)len, (void)buf, (void)opaque;
	if (op == PCOW_IO_SYNC)
		syncs++;
	return 0;
}

/* The flushes of one snapshot creation right after a flush (0: plain;
 * else with flags, after pcow_snapshot_prepare()). */
static unsigned create_syncs(pcow_image *img, const char *name, int flags)
{
	OK(pcow_flush(img));
	if (flags)
		OK(pcow_snapshot_prepare(img));
	syncs = 0;
	pcow_io_set_hook(count_syncs, NULL);
	OK(flags ? pcow_snapshot_create_flags(img, name, (unsigned)flags) :
	   pcow_snapshot_create(img, name));
	pcow_io_set_hook(NULL, NULL);
	return syncs;
}

/*
 * A snapshot taken in two halves, as QEMU takes one of a running VM: the
 * clean region prepared before, the last flush after.  The switch between
 * them flushes once (the data the snapshot freezes) instead of three
 * times; the snapshot is whole once flushed; a region prepared for other
 * metadata than the image has at the snapshot is not used.
 */
static void two_halves(void)
{
	struct pcow_create_opts o = {.struct_size = sizeof(o), .size = SIZE, .block_size = 65536};
	const char *path = test_path("halves");
	uint8_t *want = malloc(SIZE);
	unsigned plain, halves;
	pcow_image *img;

	CHECK(want);
	memset(want, 0, SIZE);
	OK(pcow_create(path, &o));
	OK(pcow_open(&img, path, 0));
	test_fill(want, SIZE / 2, 1, 0);
	OK(pcow_write(img, want, SIZE / 2, 0));
	plain = create_syncs(img, "plain", 0);
	test_fill(want + 4096, 8192, 2, 4096);
	OK(pcow_write(img, want + 4096, 8192, 4096));
	halves = create_syncs(img, "halves", PCOW_SNAPSHOT_SYNC_LATER);
	CHECK(plain == 3 && halves == 1);
	OK(pcow_flush(img));
	CHECK(!img->commit_unsynced);

	/* Prepared, then another snapshot changes the metadata: the region
	 * prepared is not taken for granted. */
	OK(pcow_snapshot_prepare(img));
	OK(pcow_snapshot_create(img, "between"));
	syncs = 0;
	pcow_io_set_hook(count_syncs, NULL);
	OK(pcow_snapshot_create_flags(img, "stale", PCOW_SNAPSHOT_SYNC_LATER));
	pcow_io_set_hook(NULL, NULL);
	CHECK(syncs == 2);
	CHECK(pcow_snapshot_create_flags(img, "bad", 0x80) == -EINVAL);
	test_fill(want, 4096, 3, 0);
	OK(pcow_write(img, want, 4096, 0));
	/* Closing without a flush makes the last snapshot durable too. */
	OK(pcow_close(&img));

	OK(pcow_open(&img, path, 0));
	expect(img, want);
	OK(pcow_snapshot_apply(img, "halves"));
	test_fill(want, SIZE / 2, 1, 0);
	test_fill(want + 4096, 8192, 2, 4096);
	expect(img, want);
	OK(pcow_snapshot_apply(img, "stale"));
	expect(img, want);
	OK(pcow_close(&img));
	OK(pcow_open(&img, path, PCOW_OPEN_RDONLY));
	CHECK(pcow_snapshot_prepare(img) == -EACCES);
	OK(pcow_close(&img));
	free(want);
}

int main(void)
{
	int i;

	for (i = 0; i <= NSNAP; i++)
		CHECK((state[i] = malloc(SIZE)));
	CHECK((cur = malloc(SIZE)));
	srand(42);
	run(4096);
	run(65536);
	run(2u << 20);
	two_halves();
	printf("snapshot: ok\n");
	return 0;
}
