/* test_snapshot.c -- snapshots as a tree: create, apply without loss of
 * other snapshots, delete with reuse of space, checked against oracles. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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
	printf("snapshot: ok\n");
	return 0;
}
