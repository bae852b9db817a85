/*
 * fuzz_image -- libFuzzer target: the input is (the beginning of) an image
 * file, opened and used through the public API.
 *
 * Input layout: parts separated by FUZZ_SEP (tests/fuzz/fuzz_common.h).
 *   part 0   bytes at offset 0 (metadata slot 0), at most 256 KiB
 *   part 1   bytes at offset 256 KiB (metadata slot 1), at most 256 KiB
 *   part 2   bytes at offset 512 KiB (the reserved area before the first
 *            region, which must hold no data), at most 1.5 MiB
 *   part 3.. region data (block data and copy bitmaps): an 8-byte
 *            little-endian offset, relative to the start of the first region
 *            (2 MiB), then the bytes to put there
 * An input without a separator is just the first bytes of an image.
 *
 * The file is then extended sparsely (ftruncate) to the size the metadata
 * asks for, capped at FUZZ_FILE_CAP, so nothing grows with claimed sizes.
 * Each input is run twice when a slot that has the magic fails its
 * checksum: as it is, and with the checksums recomputed, so that mutations
 * reach past the CRC.
 *
 * What runs on the image: a read-only open, then a read-write open with reads of the first and last
 * 4 MiB, a block_status walk, check, check with every repair, a second
 * check (nothing may be left), the snapshot list, then writes, a snapshot
 * create/apply/delete cycle whose data is verified, safe rebases (which must
 * not change what the disk reads), a mapping (read and copy-on-write
 * store), and a resize up and back down.  Every finding is an abort().
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "format.h"
#include "pcow.h"

/* The image file never grows past this (sparse) size. */
#define FUZZ_FILE_CAP (8ull << 30)
/* Bytes read at each end of the virtual disk. */
#define READ_WINDOW (4ull << 20)
#define READ_CHUNK (1ull << 20)
/* block_status calls per walk, and the length each may cover. */
#define STATUS_CALLS 128
#define STATUS_SPAN (8ull << 20)
/* Larger blocks make every copy-up slow: no write phase beyond this. */
#define WRITE_MAX_BLOCK (16u << 20)
/* Safe rebase compares every block: only on images up to this size. */
#define REBASE_MAX_SIZE (64ull << 20)
/* Bytes compared at each end of the disk around a safe rebase. */
#define REBASE_CHECK (64u << 10)
/* No mapping of images larger than this. */
#define MAP_MAX_SIZE (256ull << 20)

static char work_dir[PATH_MAX];
static bool verbose; /* PCOW_FUZZ_VERBOSE=1: say how far each input got */
static char img_path[PATH_MAX];
static uint8_t *slot_buf[2];
static uint8_t *read_buf;
static uint8_t *keep_buf;

#define FAIL(...)                                                             \
	do {                                                                  \
		fprintf(stderr, "fuzz_image: " __VA_ARGS__);                  \
		fprintf(stderr, " (last library message: %s)\n",              \
			pcow_errormsg());                                     \
		abort();                                                      \
	} while (0)

static void write_file(const char *path, const void *buf, size_t len,
		       uint64_t off)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);

	if (fd < 0 || pwrite(fd, buf, len, (off_t)off) != (ssize_t)len) {
		perror(path);
		exit(2);
	}
	close(fd);
}

/* Backing files a fuzzed image may name: base.raw and base.pcow -> base.raw. */
static void make_backing_files(void)
{
	static uint8_t buf[65536];
	char path[PATH_MAX + 32];
	struct pcow_create_opts o = {.struct_size = sizeof(o)};
	pcow_image *b;

	snprintf(path, sizeof(path), "%s/base.raw", work_dir);
	memset(buf, 0x11, sizeof(buf));
	write_file(path, buf, sizeof(buf), 0);
	memset(buf, 0x22, 4096);
	write_file(path, buf, 4096, 1u << 20);
	if (truncate(path, 4u << 20) < 0)
		exit(2);
	snprintf(path, sizeof(path), "%s/base.pcow", work_dir);
	o.size = 4u << 20;
	o.block_size = 65536;
	o.backing_file = "base.raw";
	o.backing_format = PCOW_FORMAT_RAW;
	if (pcow_create(path, &o) < 0 || pcow_open(&b, path, 0) < 0) {
		fprintf(stderr, "fuzz_image: %s\n", pcow_errormsg());
		exit(2);
	}
	memset(buf, 0x33, sizeof(buf));
	if (pcow_write(b, buf, sizeof(buf), 65536) < 0 ||
	    pcow_write(b, buf, 512, 3u << 20) < 0 || pcow_close(&b) < 0) {
		fprintf(stderr, "fuzz_image: %s\n", pcow_errormsg());
		exit(2);
	}
}

static void cleanup(void)
{
	char path[PATH_MAX + 32];

	unlink(img_path);
	snprintf(path, sizeof(path), "%s/base.raw", work_dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/base.pcow", work_dir);
	unlink(path);
	rmdir(work_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *base = getenv("PCOW_FUZZ_DIR");

	(void)argc;
	(void)argv;
	snprintf(work_dir, sizeof(work_dir), "%s/fuzz_image.%d",
		 base && *base ? base : "/dev/shm", (int)getpid());
	if (mkdir(work_dir, 0700) < 0 && errno != EEXIST) {
		perror(work_dir);
		exit(2);
	}
	snprintf(img_path, sizeof(img_path), "%s/img.pcow", work_dir);
	verbose = getenv("PCOW_FUZZ_VERBOSE") && atoi(getenv("PCOW_FUZZ_VERBOSE"));
	slot_buf[0] = malloc(FUZZ_SLOT_SIZE);
	slot_buf[1] = malloc(FUZZ_SLOT_SIZE);
	read_buf = malloc(READ_CHUNK);
	keep_buf = malloc(2 * REBASE_CHECK);
	if (!slot_buf[0] || !slot_buf[1] || !read_buf || !keep_buf)
		exit(2);
	make_backing_files();
	atexit(cleanup);
	return 0;
}

/* Bytes of file the metadata in a slot asks for, or 0 when it is invalid. */
static uint64_t slot_needs(const uint8_t *slot)
{
	struct pcow_meta m;
	uint64_t stride, need;
	uint32_t i, max = 0;

	if (pcow_meta_decode(slot, FUZZ_SLOT_SIZE, &m, NULL) < 0)
		return 0;
	for (i = 0; i < m.layer_count; i++)
		if (m.layers[i].region > max)
			max = m.layers[i].region;
	stride = pcow_region_stride(m.data_capacity, m.block_bits);
	need = pcow_region_offset(m.region_base, stride, max + 1);
	pcow_meta_free(&m);
	return need;
}

/* Lays the parts out in the image file; returns false when fix_crc changed nothing. */
static bool build_image(const struct fuzz_parts *p, bool fix_crc)
{
	uint64_t size = FUZZ_DATA_OFFSET, need;
	bool changed = false;
	int fd, i;

	for (i = 0; i < 2; i++) {
		size_t n = p->len[i] < FUZZ_SLOT_SIZE ? p->len[i] : FUZZ_SLOT_SIZE;

		memset(slot_buf[i], 0, FUZZ_SLOT_SIZE);
		if (n)
			memcpy(slot_buf[i], p->data[i], n);
		if (fix_crc)
			changed |= fuzz_fix_crc(slot_buf[i], FUZZ_SLOT_SIZE);
	}
	if (fix_crc && !changed)
		return false;
	fd = open(img_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		perror(img_path);
		exit(2);
	}
	for (i = 0; i < 2; i++)
		if (pwrite(fd, slot_buf[i], FUZZ_SLOT_SIZE,
			   (uint64_t)i * FUZZ_SLOT_SIZE) != FUZZ_SLOT_SIZE)
			exit(2);
	if (p->len[2]) {
		size_t n = p->len[2];

		if (n > FUZZ_DATA_OFFSET - FUZZ_AREA_OFFSET)
			n = FUZZ_DATA_OFFSET - FUZZ_AREA_OFFSET;
		if (pwrite(fd, p->data[2], n, FUZZ_AREA_OFFSET) != (ssize_t)n)
			exit(2);
	}
	for (i = 0; i < 2; i++) {
		need = slot_needs(slot_buf[i]);
		if (need > size)
			size = need;
	}
	if (size > FUZZ_FILE_CAP)
		size = FUZZ_FILE_CAP;
	for (i = 3; i < p->count; i++) {
		uint64_t off, room = FUZZ_FILE_CAP - FUZZ_DATA_OFFSET;
		size_t n;

		if (p->len[i] < 8)
			continue;
		off = fuzz_le64(p->data[i]);
		n = p->len[i] - 8;
		if (n > (1u << 20))
			n = 1u << 20;
		if (n == 0)
			continue;
		off %= room - n;
		if (pwrite(fd, p->data[i] + 8, n, (off_t)(FUZZ_DATA_OFFSET + off)) !=
		    (ssize_t)n)
			exit(2);
	}
	/* Data placed past what the metadata needs stays: check must find it. */
	if (ftruncate(fd, (off_t)size) < 0 && errno != EFBIG)
		exit(2);
	close(fd);
	return true;
}

static bool all_zero(const uint8_t *p, uint64_t n)
{
	return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

/* Reads [off, off+len) in chunks; ranges nothing holds must read as zeros. */
static void read_range(pcow_image *img, uint64_t off, uint64_t len)
{
	while (len) {
		uint64_t n = len < READ_CHUNK ? len : READ_CHUNK;
		struct pcow_block_status st;

		if (pcow_read(img, read_buf, n, off) < 0)
			return; /* an I/O error on a damaged image is allowed */
		if (pcow_block_status(img, off, n, &st) == 0) {
			if (st.offset != off || st.length == 0 || st.length > n)
				FAIL("block_status(%llu, %llu) gave offset %llu length %llu",
				     (unsigned long long)off, (unsigned long long)n,
				     (unsigned long long)st.offset,
				     (unsigned long long)st.length);
			if (st.depth < 0 && !all_zero(read_buf, st.length))
				FAIL("range at %llu (%llu bytes) has no data but does not read as zeros",
				     (unsigned long long)off, (unsigned long long)st.length);
		}
		off += n;
		len -= n;
	}
}

static void read_ends(pcow_image *img, uint64_t vsize)
{
	uint64_t first = vsize < READ_WINDOW ? vsize : READ_WINDOW;

	read_range(img, 0, first);
	if (vsize > first) {
		uint64_t start = vsize - READ_WINDOW;

		if (start < first)
			start = first;
		read_range(img, start, vsize - start);
	}
}

static void status_walk(pcow_image *img, uint64_t from, uint64_t vsize, int calls)
{
	uint64_t pos = from;

	while (pos < vsize && calls-- > 0) {
		struct pcow_block_status st;
		uint64_t len = vsize - pos < STATUS_SPAN ? vsize - pos : STATUS_SPAN;

		if (pcow_block_status(img, pos, len, &st) < 0)
			return;
		if (st.offset != pos || st.length == 0 || st.length > len)
			FAIL("block_status(%llu, %llu) gave offset %llu length %llu",
			     (unsigned long long)pos, (unsigned long long)len,
			     (unsigned long long)st.offset, (unsigned long long)st.length);
		/* Data always comes from somewhere; zeros may too (a block
		 * a layer owns without data), or from nowhere. */
		if (!(st.flags & PCOW_STATUS_DATA) == !(st.flags & PCOW_STATUS_ZERO) ||
		    ((st.flags & PCOW_STATUS_DATA) && st.depth < 0))
			FAIL("block_status at %llu: depth %d but flags %#x",
			     (unsigned long long)pos, st.depth, st.flags);
		pos += st.length;
	}
}

static void check_image(pcow_image *img, const char *when)
{
	struct pcow_check_result r, fixed;

	if (pcow_check(img, 0, &r) < 0)
		return;
	if (pcow_check(img, PCOW_CHECK_FIX_LEAKS | PCOW_CHECK_FIX_ERRORS, &fixed) < 0)
		return;
	if (fixed.check_errors)
		return;
	if (fixed.leaks != fixed.leaks_fixed || fixed.corruptions != fixed.corruptions_fixed)
		FAIL("%s: check -r all left %llu of %llu leaks, %llu of %llu corruptions",
		     when, (unsigned long long)(fixed.leaks - fixed.leaks_fixed),
		     (unsigned long long)fixed.leaks,
		     (unsigned long long)(fixed.corruptions - fixed.corruptions_fixed),
		     (unsigned long long)fixed.corruptions);
	if (pcow_check(img, 0, &r) < 0)
		FAIL("%s: check failed after a successful repair", when);
	if (r.leaks || r.corruptions || r.check_errors)
		FAIL("%s: after check -r all, check still finds %llu leaks, %llu corruptions (%s)",
		     when, (unsigned long long)r.leaks, (unsigned long long)r.corruptions,
		     r.first_problem);
}

static void list_snapshots(pcow_image *img)
{
	struct pcow_snapshot_info *list;
	size_t n, i;

	if (pcow_snapshot_list(img, &list, &n) < 0)
		return;
	for (i = 0; i < n; i++)
		if (strlen(list[i].name) == 0 || strlen(list[i].name) > PCOW_SNAPSHOT_NAME_MAX)
			FAIL("snapshot %zu has a bad name", i);
	free(list);
}

static void expect_pattern(pcow_image *img, uint64_t off, uint64_t len, int pat,
			   const char *when)
{
	uint64_t i;

	if (pcow_read(img, read_buf, len, off) < 0)
		FAIL("%s: read of %llu at %llu failed", when, (unsigned long long)len,
		     (unsigned long long)off);
	for (i = 0; i < len; i++)
		if (read_buf[i] != pat)
			FAIL("%s: byte %llu is %#x, expected %#x", when,
			     (unsigned long long)(off + i), read_buf[i], pat);
}

#define NOTE(...)                                                             \
	do {                                                                  \
		if (verbose)                                                  \
			fprintf(stderr, "fuzz_image: " __VA_ARGS__);          \
	} while (0)

/* A step that may fail on a damaged image: then the phase ends. */
#define STEP(call, what)                                                      \
	do {                                                                  \
		if ((call) < 0) {                                             \
			NOTE("%s: %s\n", what, pcow_errormsg());              \
			return;                                               \
		}                                                             \
	} while (0)

/* Writes, a discard, then a snapshot cycle whose data is known. */
static void write_phase(pcow_image *img, const struct pcow_info *info)
{
	uint64_t vs = info->virtual_size, len = vs < 4096 ? vs : 4096;
	uint64_t last = vs - len;
	static uint8_t buf[4096];

	if (info->block_size > WRITE_MAX_BLOCK)
		return;
	memset(buf, 0xa1, len);
	STEP(pcow_write(img, buf, len, 0), "write at 0");
	expect_pattern(img, 0, len, 0xa1, "after write at 0");
	memset(buf, 0xa2, len);
	STEP(pcow_write(img, buf, len, last), "write at the end");
	expect_pattern(img, last, len, 0xa2, "after write at the end");
	if (last >= len)
		expect_pattern(img, 0, len, 0xa1, "first block after write at the end");
	STEP(pcow_discard(img, 0, vs), "discard");
	expect_pattern(img, 0, len, 0, "after discarding everything");
	read_range(img, 0, vs < READ_CHUNK ? vs : READ_CHUNK);
	memset(buf, 0xb1, len);
	STEP(pcow_write(img, buf, len, 0), "write after discard");
	STEP(pcow_snapshot_create(img, "fuzz-snap"), "snapshot create");
	expect_pattern(img, 0, len, 0xb1, "after snapshot create");
	memset(buf, 0xb2, len);
	STEP(pcow_write(img, buf, len, 0), "write over a snapshot");
	expect_pattern(img, 0, len, 0xb2, "after write over a snapshot");
	STEP(pcow_snapshot_apply(img, "fuzz-snap"), "snapshot apply");
	expect_pattern(img, 0, len, 0xb1, "after snapshot apply");
	memset(buf, 0xb3, len);
	STEP(pcow_write(img, buf, len, 0), "write after apply");
	STEP(pcow_snapshot_delete(img, "fuzz-snap"), "snapshot delete");
	expect_pattern(img, 0, len, 0xb3, "after snapshot delete");
	check_image(img, "after the snapshot cycle");
	NOTE("write phase done\n");
}

/* Reads both ends of the disk (REBASE_CHECK bytes each) into buf. */
static int read_both_ends(pcow_image *img, uint64_t vs, uint8_t *buf)
{
	uint64_t n = vs < REBASE_CHECK ? vs : REBASE_CHECK;

	if (pcow_read(img, buf, n, 0) < 0 ||
	    pcow_read(img, buf + REBASE_CHECK, n, vs - n) < 0)
		return -1;
	return 0;
}

/* Safe rebases keep what the disk reads. */
static void rebase_phase(pcow_image *img, const struct pcow_info *info)
{
	static const struct {
		const char *name;
		enum pcow_format fmt;
	} to[] = {
		{"base.pcow", PCOW_FORMAT_PCOW},
		{"base.raw", PCOW_FORMAT_RAW},
		{NULL, PCOW_FORMAT_NONE},
	};
	uint64_t n = info->virtual_size < REBASE_CHECK ? info->virtual_size : REBASE_CHECK;
	size_t i;

	if (info->virtual_size > REBASE_MAX_SIZE || info->block_size > WRITE_MAX_BLOCK)
		return;
	STEP(read_both_ends(img, info->virtual_size, keep_buf), "read before rebase");
	for (i = 0; i < sizeof(to) / sizeof(to[0]); i++) {
		STEP(pcow_rebase(img, to[i].name, to[i].fmt, 0), "rebase");
		if (read_both_ends(img, info->virtual_size, read_buf) < 0)
			FAIL("read failed after rebase to %s", to[i].name ? to[i].name : "none");
		if (memcmp(read_buf, keep_buf, n) ||
		    memcmp(read_buf + REBASE_CHECK, keep_buf + REBASE_CHECK, n))
			FAIL("safe rebase to %s changed what the disk reads",
			     to[i].name ? to[i].name : "no backing file");
	}
	check_image(img, "after rebase");
	NOTE("rebase phase done\n");
}

static void map_phase(pcow_image *img, const struct pcow_info *info)
{
	pcow_map *map;
	uint8_t *p;
	uint64_t n, end;

	if (info->virtual_size > MAP_MAX_SIZE)
		return;
	STEP(pcow_map_new(&map, img, 0), "map");
	p = pcow_map_addr(map);
	n = info->virtual_size < 4096 ? info->virtual_size : 4096;
	if (pcow_read(img, read_buf, n, 0) < 0)
		FAIL("mapped: read failed");
	if (memcmp(p, read_buf, n))
		FAIL("mapped: the mapping and pcow_read disagree at offset 0");
	end = info->virtual_size - n;
	if (pcow_read(img, read_buf, n, end) < 0)
		FAIL("mapped: read failed");
	if (memcmp(p + end, read_buf, n))
		FAIL("mapped: the mapping and pcow_read disagree at offset %llu",
		     (unsigned long long)end);
	p[0] = 0x5a;
	pcow_map_flush(map);
	pcow_map_delete(&map);
	if (pcow_read(img, read_buf, 1, 0) == 0 && read_buf[0] != 0x5a)
		FAIL("a store through the mapping was lost");
	NOTE("map phase done\n");
}

/* Growing keeps the end of the disk and reads zeros past it; shrinking
 * back keeps it too.  Refused (snapshots) or failing on a damaged image:
 * the phase ends. */
static void resize_phase(pcow_image *img, const struct pcow_info *info)
{
	uint64_t vs = info->virtual_size, n = vs < 4096 ? vs : 4096;
	uint64_t grown = vs + info->block_size + 512;
	static uint8_t end[4096];

	if (vs > REBASE_MAX_SIZE || info->block_size > WRITE_MAX_BLOCK)
		return;
	STEP(pcow_read(img, end, n, vs - n), "read before resize");
	STEP(pcow_resize(img, grown, 0), "resize");
	expect_pattern(img, vs, grown - vs < 4096 ? grown - vs : 4096, 0,
		       "the grown area");
	if (pcow_read(img, read_buf, n, vs - n) < 0 || memcmp(read_buf, end, n))
		FAIL("growing changed the end of the disk");
	check_image(img, "after growing");
	STEP(pcow_resize(img, vs, PCOW_RESIZE_SHRINK), "shrink");
	if (pcow_read(img, read_buf, n, vs - n) < 0 || memcmp(read_buf, end, n))
		FAIL("growing and shrinking back changed the end of the disk");
	check_image(img, "after shrinking");
	NOTE("resize phase done\n");
}

static void run_image(void)
{
	pcow_image *img;
	struct pcow_info info = {.struct_size = sizeof(info)};

	if (pcow_open(&img, img_path, PCOW_OPEN_RDONLY) == 0) {
		if (pcow_get_info(img, &info) == 0) {
			read_range(img, 0, info.virtual_size < 65536 ? info.virtual_size : 65536);
			status_walk(img, 0, info.virtual_size, 16);
			list_snapshots(img);
		}
		pcow_close(&img);
	}
	if (pcow_open(&img, img_path, 0) < 0) {
		NOTE("open: %s\n", pcow_errormsg());
		return;
	}
	if (pcow_get_info(img, &info) < 0) {
		NOTE("info: %s\n", pcow_errormsg());
		pcow_close(&img);
		return;
	}
	NOTE("opened: size %llu, block %u, %u layers, %u snapshots, backing '%s'\n",
	     (unsigned long long)info.virtual_size, info.block_size, info.layer_count,
	     info.snapshot_count, info.backing_file);
	if (info.virtual_size == 0 || info.virtual_size % 512)
		FAIL("opened an image of virtual size %llu",
		     (unsigned long long)info.virtual_size);
	read_ends(img, info.virtual_size);
	status_walk(img, 0, info.virtual_size, STATUS_CALLS);
	if (info.virtual_size > READ_WINDOW)
		status_walk(img, info.virtual_size - READ_WINDOW, info.virtual_size, 64);
	check_image(img, "after open");
	list_snapshots(img);
	write_phase(img, &info);
	rebase_phase(img, &info);
	map_phase(img, &info);
	resize_phase(img, &info);
	pcow_close(&img);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_parts p;

	fuzz_split(data, size, &p);
	build_image(&p, false);
	run_image();
	if (build_image(&p, true))
		run_image();
	return 0;
}
