/*
 * test_integrity.c -- an image gives back what was written, whatever
 * happens to the file (docs/format.md 4.1, 3.1, 3.5):
 *  - a byte-identical copy that fills holes (cp --sparse=never) of an image
 *    with snapshots, of an overlay over a raw or a pcow base, and of the
 *    backing files, reads the same through every path;
 *  - a version 1 image is upgraded, and its copies read the same too;
 *  - a newest slot this version cannot read refuses the open and changes
 *    nothing;
 *  - a failed metadata commit poisons the handle;
 *  - rebase -u without the old backing file keeps the image's own blocks,
 *    or refuses when it cannot know them;
 *  - check -r leaks reclaims the data of an interrupted copy-up;
 *  - check finds a recorded layer's block without its bit, -r all sets it
 *    [R-047];
 *  - an active layer with children is refused.
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <zlib.h>

#include "test.h"

#include "format.h"
#include "image.h"
#include "layer.h"
#include "pending.h"
#include "persist.h"

#define SIZE (4u << 20)
#define BS 65536u

/* cp --sparse=never: every byte written, holes included. */
static void copy_filled(const char *from, const char *to)
{
	static uint8_t buf[1 << 20];
	int in = open(test_path(from), O_RDONLY);
	int out = open(test_path(to), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ssize_t n;

	CHECK(in >= 0 && out >= 0);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		CHECK(write(out, buf, (size_t)n) == n);
	CHECK(n == 0);
	close(in);
	close(out);
	{
		/* The copy has no hole left. */
		int fd = open(test_path(to), O_RDONLY);
		struct stat st;

		CHECK(fd >= 0 && fstat(fd, &st) == 0);
		CHECK(lseek(fd, 0, SEEK_HOLE) == st.st_size);
		close(fd);
	}
}

/* What an image shows: its active view, then every snapshot's. */
struct content {
	uint8_t *active;
	int nsnap;
	char names[8][PCOW_SNAPSHOT_NAME_MAX + 1];
	uint8_t *snap[8];
};

static void read_content(const char *image, struct content *c)
{
	struct pcow_snapshot_info *list;
	pcow_image *img;
	size_t count;
	int i, n;

	memset(c, 0, sizeof(*c));
	OK(pcow_open(&img, test_path(image), PCOW_OPEN_RDONLY));
	c->active = malloc(SIZE);
	CHECK(c->active);
	OK(pcow_read(img, c->active, SIZE, 0));
	{
		/* through the mapping too */
		pcow_map *map;

		OK(pcow_map_new(&map, img, PCOW_MAP_RDONLY));
		CHECK(memcmp(pcow_map_addr(map), c->active, SIZE) == 0);
		OK(pcow_map_delete(&map));
	}
	OK(pcow_snapshot_list(img, &list, &count));
	n = (int)count;
	CHECK(n <= 8);
	for (i = 0; i < n; i++)
		snprintf(c->names[i], sizeof(c->names[i]), "%s", list[i].name);
	free(list);
	OK(pcow_close(&img));
	c->nsnap = n;
	/* A snapshot's content: apply it on a scratch copy. */
	for (i = 0; i < n; i++) {
		copy_filled(image, "scratch.pcow");
		OK(pcow_open(&img, test_path("scratch.pcow"), 0));
		OK(pcow_snapshot_apply(img, c->names[i]));
		c->snap[i] = malloc(SIZE);
		CHECK(c->snap[i]);
		OK(pcow_read(img, c->snap[i], SIZE, 0));
		OK(pcow_close(&img));
	}
}

static void same_content(const struct content *a, const struct content *b)
{
	int i;

	CHECK(memcmp(a->active, b->active, SIZE) == 0);
	CHECK(a->nsnap == b->nsnap);
	for (i = 0; i < a->nsnap; i++)
		CHECK(memcmp(a->snap[i], b->snap[i], SIZE) == 0);
}

static void free_content(struct content *c)
{
	int i;

	free(c->active);
	for (i = 0; i < c->nsnap; i++)
		free(c->snap[i]);
}

static void put(pcow_image *img, uint64_t off, uint64_t len, uint8_t byte)
{
	uint8_t *p = malloc(len);

	CHECK(p);
	memset(p, byte, len);
	OK(pcow_write(img, p, len, off));
	free(p);
}

static void create(const char *image, const char *backing, enum pcow_format fmt)
{
	struct pcow_create_opts o = {.struct_size = sizeof(o), .size = SIZE, .block_size = BS,
				     .backing_file = backing, .backing_format = fmt};

	unlink(test_path(image));
	OK(pcow_create(test_path(image), &o));
}

/* Blocks written where nothing lay below, before and after a snapshot,
 * and a copy-up over a snapshot's block; through the API and a mapping. */
static void fill_with_history(const char *image)
{
	pcow_image *img;
	pcow_map *map;

	OK(pcow_open(&img, test_path(image), 0));
	put(img, 0, BS, 0x11);
	put(img, 3 * BS + 100, 200, 0x12);
	OK(pcow_snapshot_create(img, "one"));
	put(img, 5 * BS, BS, 0x21);             /* nothing below */
	put(img, 100, 50, 0x22);                /* copy-up of block 0 */
	OK(pcow_map_new(&map, img, 0));
	memset((uint8_t *)pcow_map_addr(map) + 9 * BS, 0x23, 4096);
	memset((uint8_t *)pcow_map_addr(map) + 3 * BS, 0x24, 10);
	OK(pcow_map_delete(&map));
	OK(pcow_snapshot_create(img, "two"));
	put(img, 7 * BS, 4096, 0x31);
	OK(pcow_close(&img));
}

static void copies_of_snapshots(void)
{
	struct content a, b;

	create("s.pcow", NULL, PCOW_FORMAT_NONE);
	fill_with_history("s.pcow");
	read_content("s.pcow", &a);
	CHECK(a.nsnap == 2 && a.active[5 * BS] == 0x21 && a.active[9 * BS] == 0x23);
	copy_filled("s.pcow", "s-copy.pcow");
	read_content("s-copy.pcow", &b);
	same_content(&a, &b);
	free_content(&a);
	free_content(&b);
}

/* An overlay over a raw base with data in some blocks: the overlay writes
 * into the base's holes; then base, overlay or both become filled copies. */
static void copies_over_raw(void)
{
	struct content a, b;
	uint8_t data[2 * BS];
	pcow_image *img;

	memset(data, 0x5a, sizeof(data));
	img = test_overlay_on_raw("r-base.raw", SIZE, data, 2 * BS, sizeof(data),
				  "r.pcow", BS);
	put(img, 6 * BS, BS, 0x61);             /* over a hole of the base */
	put(img, 2 * BS + 10, 10, 0x62);        /* copy-up from the base */
	OK(pcow_close(&img));
	read_content("r.pcow", &a);
	CHECK(a.active[6 * BS] == 0x61 && a.active[3 * BS] == 0x5a);
	copy_filled("r-base.raw", "r-base.tmp");
	CHECK(rename(test_path("r-base.tmp"), test_path("r-base.raw")) == 0);
	read_content("r.pcow", &b);
	same_content(&a, &b);
	free_content(&b);
	copy_filled("r.pcow", "r.tmp");
	CHECK(rename(test_path("r.tmp"), test_path("r.pcow")) == 0);
	read_content("r.pcow", &b);
	same_content(&a, &b);
	free_content(&a);
	free_content(&b);
}

static void copies_over_pcow(void)
{
	struct content a, b;
	pcow_image *img;

	create("p-base.pcow", NULL, PCOW_FORMAT_NONE);
	fill_with_history("p-base.pcow");
	create("p.pcow", "p-base.pcow", PCOW_FORMAT_PCOW);
	OK(pcow_open(&img, test_path("p.pcow"), 0));
	put(img, 11 * BS, BS, 0x71);            /* nothing below */
	put(img, 5 * BS + 1, 1, 0x72);          /* copy-up from the base */
	OK(pcow_snapshot_create(img, "p1"));
	put(img, 12 * BS, 100, 0x73);
	OK(pcow_close(&img));
	read_content("p.pcow", &a);
	copy_filled("p-base.pcow", "p-base.tmp");
	CHECK(rename(test_path("p-base.tmp"), test_path("p-base.pcow")) == 0);
	copy_filled("p.pcow", "p.tmp");
	CHECK(rename(test_path("p.tmp"), test_path("p.pcow")) == 0);
	read_content("p.pcow", &b);
	same_content(&a, &b);
	free_content(&a);
	free_content(&b);
}

/* ---- Slots ---------------------------------------------------------- */

static void read_file(const char *image, uint8_t **buf, size_t *len)
{
	int fd = open(test_path(image), O_RDONLY);
	struct stat st;

	CHECK(fd >= 0 && fstat(fd, &st) == 0);
	*len = (size_t)st.st_size;
	*buf = malloc(*len);
	CHECK(*buf && pread(fd, *buf, *len, 0) == (ssize_t)*len);
	close(fd);
}

/* The slot holding the newest valid blob. */
static int newest_slot(const char *image)
{
	pcow_image *img;
	int slot;

	OK(pcow_open(&img, test_path(image), PCOW_OPEN_RDONLY | PCOW_OPEN_NO_BACKING));
	slot = img->cur_slot;
	OK(pcow_close(&img));
	return slot;
}

/* Rewrites a 32- or 64-bit header field of a slot and its checksum. */
static void patch_slot(const char *image, int slot, unsigned field, uint64_t value,
		       bool wide)
{
	uint8_t hdr[PCOW_META_SLOT_SIZE];
	int fd = open(test_path(image), O_RDWR);
	uint32_t len;
	uLong crc;

	CHECK(fd >= 0);
	CHECK(pread(fd, hdr, sizeof(hdr), PCOW_META_SLOT_OFFSET(slot)) == (ssize_t)sizeof(hdr));
	if (wide)
		pcow_put_le64(hdr + field, value);
	else
		pcow_put_le32(hdr + field, (uint32_t)value);
	len = pcow_le32(hdr + HDR_META_LENGTH);
	pcow_put_le32(hdr + HDR_CHECKSUM, 0);
	crc = crc32(crc32(0L, Z_NULL, 0), hdr, len);
	pcow_put_le32(hdr + HDR_CHECKSUM, (uint32_t)crc);
	CHECK(pwrite(fd, hdr, len, PCOW_META_SLOT_OFFSET(slot)) == (ssize_t)len);
	close(fd);
}

static void newer_slot_refused(void)
{
	static const struct {
		unsigned field;
		uint64_t value;
		bool wide;
	} patches[] = {
		{HDR_VERSION, PCOW_VERSION + 1, false},
		{HDR_INCOMPAT, 1ull << 17, true},
	};
	uint8_t *before, *after;
	size_t i, n1, n2;
	pcow_image *img;

	for (i = 0; i < sizeof(patches) / sizeof(patches[0]); i++) {
		create("n.pcow", NULL, PCOW_FORMAT_NONE);
		OK(pcow_open(&img, test_path("n.pcow"), 0));
		put(img, 0, BS, 0x41);
		OK(pcow_snapshot_create(img, "a"));
		OK(pcow_close(&img));
		patch_slot("n.pcow", newest_slot("n.pcow"), patches[i].field,
			   patches[i].value, patches[i].wide);
		read_file("n.pcow", &before, &n1);
		CHECK(pcow_open(&img, test_path("n.pcow"), 0) == -ENOTSUP);
		CHECK(strstr(pcow_errormsg(), "newer pcow"));
		CHECK(pcow_open(&img, test_path("n.pcow"), PCOW_OPEN_RDONLY) == -ENOTSUP);
		read_file("n.pcow", &after, &n2);
		CHECK(n1 == n2 && memcmp(before, after, n1) == 0);
		free(before);
		free(after);
	}
}

/* ---- Version 1 -------------------------------------------------------- */

/*
 * A version 1 image as an earlier pcow left it: blocks owned by their data
 * alone in both layers.  Made by a writer that dies with the image dirty,
 * then written back as version 1 (no flags, no dirty bit).
 */
static void make_v1(const char *image)
{
	uint8_t hdr[PCOW_META_SLOT_SIZE];
	pid_t pid;
	int status, slot, fd;
	uint32_t i, n, off;

	create(image, NULL, PCOW_FORMAT_NONE);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		pcow_image *img;

		test_in_child();
		if (pcow_open(&img, test_path(image), 0) < 0)
			_exit(1);
		put(img, 2 * BS, BS, 0x51);
		if (pcow_snapshot_create(img, "v1snap") < 0 || pcow_flush(img) < 0)
			_exit(1);
		put(img, 4 * BS, BS, 0x52);
		put(img, 2 * BS + 5, 5, 0x53);
		if (pcow_flush(img) < 0)
			_exit(1);
		_exit(0);
	}
	CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
	      WEXITSTATUS(status) == 0);
	slot = newest_slot(image);
	fd = open(test_path(image), O_RDWR);
	CHECK(fd >= 0);
	CHECK(pread(fd, hdr, sizeof(hdr), PCOW_META_SLOT_OFFSET(slot)) == (ssize_t)sizeof(hdr));
	close(fd);
	n = pcow_le32(hdr + HDR_LAYER_COUNT);
	off = pcow_le32(hdr + HDR_LAYER_OFFSET);
	for (i = 0; i < n; i++)
		pcow_put_le32(hdr + off + i * PCOW_LAYER_ENTRY_SIZE + 8, 0);
	fd = open(test_path(image), O_RDWR);
	CHECK(pwrite(fd, hdr, sizeof(hdr), PCOW_META_SLOT_OFFSET(slot)) == (ssize_t)sizeof(hdr));
	close(fd);
	patch_slot(image, slot, HDR_INCOMPAT, 0, true);
	patch_slot(image, slot, HDR_VERSION, 1, false);
}

static void version1_upgraded(void)
{
	struct content a, b;
	struct pcow_info info = {.struct_size = sizeof(info)};
	pcow_image *img;

	make_v1("v1.pcow");
	OK(pcow_open(&img, test_path("v1.pcow"), PCOW_OPEN_RDONLY));
	OK(pcow_get_info(img, &info));
	CHECK(info.format_version == 1);
	OK(pcow_close(&img));
	read_content("v1.pcow", &a);
	CHECK(a.active[4 * BS] == 0x52 && a.active[2 * BS] == 0x51 &&
	      a.active[2 * BS + 5] == 0x53);
	/* A read-write open and close records every block and writes
	 * version 2. */
	OK(pcow_open(&img, test_path("v1.pcow"), 0));
	OK(pcow_close(&img));
	OK(pcow_open(&img, test_path("v1.pcow"), PCOW_OPEN_RDONLY));
	OK(pcow_get_info(img, &info));
	CHECK(info.format_version == PCOW_VERSION);
	CHECK(!(img->m.incompat & PCOW_INCOMPAT_DIRTY));
	OK(pcow_close(&img));
	copy_filled("v1.pcow", "v1-copy.pcow");
	read_content("v1-copy.pcow", &b);
	same_content(&a, &b);
	free_content(&a);
	free_content(&b);
}

/* ---- A failed metadata commit ----------------------------------------- */

static int syncs_to_fail;

static int fail_sync_after_slot(enum pcow_io_op op, int fd, uint64_t off,
				uint64_t len, const void *buf, void *opaque)
{
	static bool slot_written;

	(void)fd;
	(void)len;
	(void)buf;
	(void)opaque;
	if (op == PCOW_IO_WRITE && off < PCOW_RESERVED_OFFSET)
		slot_written = true;
	if (op == PCOW_IO_SYNC && slot_written && syncs_to_fail) {
		syncs_to_fail--;
		slot_written = false;
		return -EIO;
	}
	return 0;
}

static void failed_commit_poisons(void)
{
	uint8_t got[16];
	pcow_image *img;
	pcow_map *map;

	create("f.pcow", NULL, PCOW_FORMAT_NONE);
	OK(pcow_open(&img, test_path("f.pcow"), 0));
	put(img, 0, BS, 0x61);
	syncs_to_fail = 1;
	pcow_io_set_hook(fail_sync_after_slot, NULL);
	CHECK(pcow_snapshot_create(img, "s") == -EIO);
	pcow_io_set_hook(NULL, NULL);
	/* The slot may be durable: nothing more goes through this handle. */
	CHECK(pcow_write(img, "x", 1, 0) == -EIO);
	CHECK(strstr(pcow_errormsg(), "reopen"));
	CHECK(pcow_discard(img, 0, BS) == -EIO);
	CHECK(pcow_snapshot_create(img, "t") == -EIO);
	CHECK(pcow_map_new(&map, img, 0) == -EIO);
	OK(pcow_read(img, got, sizeof(got), 0));
	CHECK(got[0] == 0x61);
	pcow_close(&img);
	/* Reopened, it is whichever state the slot left, and works. */
	OK(pcow_open(&img, test_path("f.pcow"), 0));
	OK(pcow_read(img, got, sizeof(got), 0));
	CHECK(got[0] == 0x61);
	put(img, 0, 1, 0x62);
	OK(pcow_close(&img));
}

/* ---- rebase -u without the old backing file ---------------------------- */

static void unsafe_rebase_missing_backing(void)
{
	uint8_t data[BS], got[BS];
	pcow_image *img;
	pid_t pid;
	int status;

	/* Clean: every block of the image is recorded, so its content is
	 * kept with the old backing file gone. */
	memset(data, 0x7a, sizeof(data));
	img = test_overlay_on_raw("u-base.raw", SIZE, data, 0, BS, "u.pcow", BS);
	put(img, 3 * BS, BS, 0x7b);
	OK(pcow_close(&img));
	CHECK(unlink(test_path("u-base.raw")) == 0);
	OK(pcow_open(&img, test_path("u.pcow"), PCOW_OPEN_NO_BACKING));
	OK(pcow_rebase(img, NULL, PCOW_FORMAT_NONE, PCOW_REBASE_UNSAFE));
	OK(pcow_close(&img));
	OK(pcow_open(&img, test_path("u.pcow"), 0));
	OK(pcow_read(img, got, BS, 3 * BS));
	memset(data, 0x7b, sizeof(data));
	CHECK(memcmp(got, data, BS) == 0);
	OK(pcow_read(img, got, BS, 0));
	memset(data, 0, sizeof(data));
	CHECK(memcmp(got, data, BS) == 0);
	OK(pcow_close(&img));

	/* Dirty (its writer died): which blocks are its own depends on the
	 * missing file, so the rebase is refused and nothing changes. */
	memset(data, 0x7a, sizeof(data));
	img = test_overlay_on_raw("d-base.raw", SIZE, data, 0, BS, "d.pcow", BS);
	OK(pcow_close(&img));
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		test_in_child();
		if (pcow_open(&img, test_path("d.pcow"), 0) < 0)
			_exit(1);
		put(img, 3 * BS, BS, 0x7b);
		_exit(pcow_flush(img) < 0);
	}
	CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
	      WEXITSTATUS(status) == 0);
	CHECK(rename(test_path("d-base.raw"), test_path("d-base.away")) == 0);
	OK(pcow_open(&img, test_path("d.pcow"), PCOW_OPEN_NO_BACKING));
	CHECK(pcow_rebase(img, NULL, PCOW_FORMAT_NONE, PCOW_REBASE_UNSAFE) == -EINVAL);
	CHECK(strstr(pcow_errormsg(), "backing file"));
	OK(pcow_close(&img));
	CHECK(rename(test_path("d-base.away"), test_path("d-base.raw")) == 0);
	OK(pcow_open(&img, test_path("d.pcow"), 0));
	OK(pcow_read(img, got, BS, 0));
	memset(data, 0x7a, sizeof(data));
	CHECK(memcmp(got, data, BS) == 0);
	OK(pcow_close(&img));
}

/* ---- check -r leaks reclaims interrupted copy-ups [R-046] -------------- */

static void interrupted_copy_up_reclaimed(void)
{
	struct pcow_check_result res;
	uint8_t data[2 * BS], got[BS], junk[BS];
	pcow_image *img;
	int fd;

	memset(data, 0x3c, sizeof(data));
	img = test_overlay_on_raw("i-base.raw", SIZE, data, 0, sizeof(data), "i.pcow", BS);
	put(img, 5 * BS, 10, 0x3d);             /* nothing below: owned by data */
	OK(pcow_close(&img));
	/* Half a copy of block 1, its bit never written (the crash came
	 * first): the block is still the backing file's. */
	memset(junk, 0x3c, sizeof(junk) / 2);
	memset(junk + sizeof(junk) / 2, 0, sizeof(junk) / 2);
	fd = open(test_path("i.pcow"), O_RDWR);
	CHECK(fd >= 0 && pwrite(fd, junk, sizeof(junk), 2 * 1024 * 1024 + BS) == (ssize_t)sizeof(junk));
	close(fd);
	OK(pcow_open(&img, test_path("i.pcow"), 0));
	OK(pcow_check(img, 0, &res));
	CHECK(res.leaks == 1 && res.corruptions == 0);
	CHECK(strstr(res.first_problem, "interrupted copy-up"));
	OK(pcow_check(img, PCOW_CHECK_FIX_LEAKS, &res));
	CHECK(res.leaks_fixed == 1);
	OK(pcow_check(img, 0, &res));
	CHECK(res.leaks == 0 && res.corruptions == 0);
	OK(pcow_read(img, got, BS, BS));
	CHECK(memcmp(got, data, BS) == 0);
	OK(pcow_read(img, got, 10, 5 * BS));
	CHECK(got[0] == 0x3d && got[9] == 0x3d);
	OK(pcow_close(&img));
	fd = open(test_path("i.pcow"), O_RDONLY);
	CHECK(fd >= 0);
	CHECK(lseek(fd, 2 * 1024 * 1024 + BS, SEEK_DATA) >= 2 * 1024 * 1024 + 2 * BS);
	close(fd);
}

/* ---- check: a recorded layer's block without its bit [R-047] ----------- */

static void unrecorded_block_is_corruption(void)
{
	struct pcow_check_result res;
	uint8_t got[16], zero[8] = {0};
	pcow_image *img;
	int fd;

	create("c.pcow", NULL, PCOW_FORMAT_NONE);
	OK(pcow_open(&img, test_path("c.pcow"), 0));
	put(img, 3 * BS, BS, 0x5a);
	OK(pcow_close(&img));
	/* The bit the clean close gave block 3, cleared: region 0's bitmap
	 * follows its 4 MiB data span, from 2 MiB on. */
	fd = open(test_path("c.pcow"), O_RDWR);
	CHECK(fd >= 0 && pwrite(fd, zero, 8, 6 << 20) == 8);
	close(fd);
	OK(pcow_open(&img, test_path("c.pcow"), 0));
	OK(pcow_check(img, 0, &res));
	CHECK(res.corruptions == 1 && res.leaks == 0);
	CHECK(strstr(res.first_problem, "owned by its data alone"));
	OK(pcow_check(img, PCOW_CHECK_FIX_LEAKS, &res));
	CHECK(res.corruptions == 1 && res.corruptions_fixed == 0);
	OK(pcow_check(img, PCOW_CHECK_FIX_LEAKS | PCOW_CHECK_FIX_ERRORS, &res));
	CHECK(res.corruptions == 1 && res.corruptions_fixed == 1);
	OK(pcow_check(img, 0, &res));
	CHECK(res.corruptions == 0 && res.leaks == 0);
	CHECK(pcow_bit_test(img, 0, 3) == 1);
	OK(pcow_read(img, got, sizeof(got), 3 * BS));
	CHECK(got[0] == 0x5a && got[15] == 0x5a);
	OK(pcow_close(&img));
}

/* ---- The active layer is a leaf ---------------------------------------- */

static void active_not_leaf(void)
{
	uint8_t hdr[PCOW_META_SLOT_SIZE];
	pcow_image *img;
	int slot, fd;
	uint32_t off;

	create("l.pcow", NULL, PCOW_FORMAT_NONE);
	OK(pcow_open(&img, test_path("l.pcow"), 0));
	OK(pcow_snapshot_create(img, "a"));
	OK(pcow_close(&img));
	/* layer 0 (snapshot a) made a child of layer 1 (active): the state
	 * a re-parenting apply once left */
	slot = newest_slot("l.pcow");
	fd = open(test_path("l.pcow"), O_RDWR);
	CHECK(fd >= 0);
	CHECK(pread(fd, hdr, sizeof(hdr), PCOW_META_SLOT_OFFSET(slot)) == (ssize_t)sizeof(hdr));
	off = pcow_le32(hdr + HDR_LAYER_OFFSET);
	CHECK(pcow_le32(hdr + HDR_ACTIVE_LAYER) == 1);
	pcow_put_le32(hdr + off + 4, 1);
	pcow_put_le32(hdr + off + PCOW_LAYER_ENTRY_SIZE + 4, PCOW_NO_PARENT);
	CHECK(pwrite(fd, hdr, sizeof(hdr), PCOW_META_SLOT_OFFSET(slot)) == (ssize_t)sizeof(hdr));
	close(fd);
	patch_slot("l.pcow", slot, HDR_GENERATION, 99, true);
	CHECK(pcow_open(&img, test_path("l.pcow"), 0) < 0);
	CHECK(strstr(pcow_errormsg(), "active layer"));
}

int main(void)
{
	pcow_pending_set_boot_id("integrity-test-boot");
	copies_of_snapshots();
	copies_over_raw();
	copies_over_pcow();
	newer_slot_refused();
	version1_upgraded();
	failed_commit_poisons();
	unsafe_rebase_missing_backing();
	interrupted_copy_up_reclaimed();
	unrecorded_block_is_corruption();
	active_not_leaf();
	printf("integrity: ok\n");
	return 0;
}
