/* test_commit.c -- pcow_commit: into raw and pcow backing files, through a
 * chain with a base, keeping the image, progress, locking, refusals. */
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "pending.h"
#include "persist.h"
#include "capture.h"
#include "test.h"

#define SIZE (4ull << 20)

static uint8_t *read_all(pcow_image *img)
{
	uint8_t *b = malloc(SIZE);

	CHECK(b);
	OK(pcow_read(img, b, SIZE, 0));
	return b;
}

/* The SIZE bytes expr returns (freed here) equal want. */
#define EXPECT_SAME(want, expr)                                               \
	do {                                                                  \
		uint8_t *got_ = (expr);                                       \
		CHECK(memcmp((want), got_, SIZE) == 0);                       \
		free(got_);                                                   \
	} while (0)

/* Content of an image as a fresh opener sees it. */
static uint8_t *read_image(const char *path)
{
	pcow_image *img;
	uint8_t *b;

	OK(pcow_open(&img, path, PCOW_OPEN_RDONLY));
	b = read_all(img);
	OK(pcow_close(&img));
	return b;
}

static void create(const char *path, const char *backing, enum pcow_format fmt,
		   uint32_t bs, uint64_t size)
{
	struct pcow_create_opts o = {.struct_size = sizeof(o), .size = size, .block_size = bs,
				     .backing_file = backing, .backing_format = fmt};

	OK(pcow_create(path, &o));
}

static void write_pattern(pcow_image *img, uint64_t seed, uint64_t off,
			  uint64_t len)
{
	uint8_t *b = malloc(len);

	CHECK(b);
	test_fill(b, len, seed, off);
	OK(pcow_write(img, b, len, off));
	free(b);
}

static int check_clean(const char *path)
{
	struct pcow_check_result r;
	pcow_image *img;

	OK(pcow_open(&img, path, 0));
	OK(pcow_check(img, 0, &r));
	OK(pcow_close(&img));
	return r.corruptions == 0 && r.leaks == 0 && r.check_errors == 0;
}

/* pcow_open's result for path in another process. */
static int open_elsewhere(const char *path, unsigned flags)
{
	int status;
	pid_t pid = fork();

	CHECK(pid >= 0);
	if (pid == 0) {
		pcow_image *img;
		int ret;

		test_in_child();
		ret = pcow_open(&img, path, flags);
		if (ret == 0)
			pcow_close(&img);
		_exit(-ret);
	}
	CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status));
	return -WEXITSTATUS(status);
}

/* Another process holding path open read-only until release_holder. */
static pid_t hold(const char *path, int *release)
{
	int go[2], done[2];
	char c;
	pid_t pid;

	CHECK(pipe(go) == 0 && pipe(done) == 0);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		pcow_image *img;

		test_in_child();
		close(go[0]);
		close(done[1]);
		if (pcow_open(&img, path, PCOW_OPEN_RDONLY) < 0)
			_exit(1);
		CHECK(write(go[1], "x", 1) == 1);
		if (read(done[0], &c, 1) < 0)
			_exit(1);
		pcow_close(&img);
		_exit(0);
	}
	close(go[1]);
	close(done[0]);
	CHECK(read(go[0], &c, 1) == 1);
	close(go[0]);
	*release = done[1];
	return pid;
}

static void release_holder(pid_t pid, int release)
{
	int status;

	close(release);
	CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
	      WEXITSTATUS(status) == 0);
}

struct progress {
	uint64_t calls, last, total;
	int bad;
};

static void on_progress(uint64_t done, uint64_t total, void *opaque)
{
	struct progress *p = opaque;

	if (done > total || done < p->last || (p->calls && total != p->total))
		p->bad = 1;
	p->calls++;
	p->last = done;
	p->total = total;
}

/* Into a raw backing file: the overlay's own blocks (written, discarded,
 * partially over raw data) go in; the overlay is emptied and reads the
 * same; with KEEP it keeps its blocks. */
static void test_raw(uint32_t bs, unsigned flags)
{
	uint8_t data[8192], *before, *raw;
	struct pcow_info info = {.struct_size = sizeof(info)};
	struct progress pr = {0};
	pcow_image *img;

	unlink(test_path("r.raw"));
	unlink(test_path("r.pcow"));
	test_fill(data, sizeof(data), 1, 0);
	img = test_overlay_on_raw("r.raw", SIZE, data, 64 << 10, sizeof(data), "r.pcow", bs);
	write_pattern(img, 2, 100, 5000);              /* over raw hole, partial */
	write_pattern(img, 3, (64 << 10) + 10, 300);   /* partial over raw data */
	write_pattern(img, 4, 1 << 20, 12288);          /* nothing below */
	write_pattern(img, 5, SIZE - 700, 700);         /* the end */
	OK(pcow_discard(img, 64 << 10, bs));           /* hides raw data */
	/* Not flushed on purpose: commit must persist pending bits itself. */
	before = read_all(img);
	OK(pcow_get_info(img, &info));
	CHECK(info.allocated_blocks > 0);
	pcow_set_progress(img, on_progress, &pr);
	OK(pcow_commit(img, NULL, flags));
	CHECK(!pr.bad && pr.calls >= 1 && pr.last == pr.total && pr.total > 0);
	EXPECT_SAME(before, read_all(img));
	raw = test_read_file(test_path("r.raw"), SIZE);
	CHECK(memcmp(before, raw, SIZE) == 0);
	free(raw);
	{
		uint64_t owned = info.allocated_blocks;

		OK(pcow_get_info(img, &info));
		CHECK(info.allocated_blocks == (flags & PCOW_COMMIT_KEEP ? owned : 0));
	}
	/* The chain's shared lock on the raw file is back: another reader of
	 * it works, a writer does not. */
	create(test_path("r2.pcow"), "r.raw", PCOW_FORMAT_RAW, bs, 0);
	CHECK(open_elsewhere(test_path("r2.pcow"), PCOW_OPEN_RDONLY) == 0);
	unlink(test_path("r2.pcow"));
	OK(pcow_close(&img));
	EXPECT_SAME(before, read_image(test_path("r.pcow")));
	CHECK(check_clean(test_path("r.pcow")));
	free(before);
}

/* A pcow backing file with its own snapshot and raw backing file: commit
 * writes its active layer; its snapshot keeps its content. */
static void test_pcow(void)
{
	uint8_t *before, *snap;
	pcow_image *img, *mid;
	uint64_t raw_sum;

	{
		uint8_t d[4096];
		int fd = open(test_path("p.raw"), O_CREAT | O_WRONLY, 0644);

		CHECK(fd >= 0 && ftruncate(fd, SIZE) == 0);
		test_fill(d, sizeof(d), 10, 0);
		CHECK(pwrite(fd, d, sizeof(d), 1 << 20) == sizeof(d));
		close(fd);
	}
	raw_sum = test_file_sum(test_path("p.raw"));
	create(test_path("p-mid.pcow"), "p.raw", PCOW_FORMAT_RAW, 65536, 0);
	OK(pcow_open(&mid, test_path("p-mid.pcow"), 0));
	write_pattern(mid, 11, 2 << 20, 65536);
	OK(pcow_snapshot_create(mid, "s"));
	snap = read_all(mid);
	OK(pcow_close(&mid));
	create(test_path("p-top.pcow"), "p-mid.pcow", PCOW_FORMAT_PCOW, 4096, 0);
	OK(pcow_open(&img, test_path("p-top.pcow"), 0));
	write_pattern(img, 12, (1 << 20) + 100, 200);  /* over raw data */
	write_pattern(img, 13, (2 << 20) + 4096, 4096); /* over mid's data */
	write_pattern(img, 14, 3 << 20, 8192);          /* nothing below */
	before = read_all(img);
	OK(pcow_commit(img, NULL, 0));
	EXPECT_SAME(before, read_all(img));
	OK(pcow_close(&img));
	EXPECT_SAME(before, read_image(test_path("p-mid.pcow")));
	CHECK(test_file_sum(test_path("p.raw")) == raw_sum);
	CHECK(check_clean(test_path("p-mid.pcow")));
	CHECK(check_clean(test_path("p-top.pcow")));
	OK(pcow_open(&mid, test_path("p-mid.pcow"), 0));
	OK(pcow_snapshot_apply(mid, "s"));
	EXPECT_SAME(snap, read_all(mid));
	OK(pcow_close(&mid));
	free(before);
	free(snap);
}

/* base <- mid <- top: into base, by path and by the stored name. */
static void test_chain(void)
{
	uint8_t *before;
	pcow_image *img;
	uint64_t mid_blocks;
	struct pcow_info info = {.struct_size = sizeof(info)};

	create(test_path("c-base.pcow"), NULL, PCOW_FORMAT_NONE, 4096, SIZE);
	OK(pcow_open(&img, test_path("c-base.pcow"), 0));
	write_pattern(img, 20, 0, 1 << 20);
	OK(pcow_close(&img));
	create(test_path("c-mid.pcow"), "c-base.pcow", PCOW_FORMAT_PCOW, 65536, 0);
	OK(pcow_open(&img, test_path("c-mid.pcow"), 0));
	write_pattern(img, 21, 512 << 10, 1 << 20);
	write_pattern(img, 22, 3 << 20, 1000);  /* nothing below: rule 3 */
	OK(pcow_discard(img, 0, 65536));
	OK(pcow_get_info(img, &info));
	mid_blocks = info.allocated_blocks;
	OK(pcow_close(&img));
	create(test_path("c-top.pcow"), "c-mid.pcow", PCOW_FORMAT_PCOW, 4096, 0);
	OK(pcow_open(&img, test_path("c-top.pcow"), 0));
	write_pattern(img, 23, 700 << 10, 5000);
	before = read_all(img);
	/* The images in between become invalid: the image must be kept. */
	CHECK(pcow_commit(img, test_path("c-base.pcow"), 0) == -EINVAL);
	OK(pcow_commit(img, test_path("c-base.pcow"), PCOW_COMMIT_KEEP));
	EXPECT_SAME(before, read_all(img));
	OK(pcow_get_info(img, &info));
	CHECK(info.allocated_blocks > 0);
	OK(pcow_close(&img));
	EXPECT_SAME(before, read_image(test_path("c-base.pcow")));
	EXPECT_SAME(before, read_image(test_path("c-top.pcow")));
	/* mid keeps its own blocks. */
	OK(pcow_open(&img, test_path("c-mid.pcow"), PCOW_OPEN_RDONLY));
	OK(pcow_get_info(img, &info));
	CHECK(info.allocated_blocks == mid_blocks);
	OK(pcow_close(&img));
	CHECK(check_clean(test_path("c-base.pcow")));
	CHECK(check_clean(test_path("c-mid.pcow")));
	CHECK(check_clean(test_path("c-top.pcow")));

	/* By the name stored in mid; then into mid (immediate). */
	OK(pcow_open(&img, test_path("c-top.pcow"), 0));
	write_pattern(img, 24, 2 << 20, 4096);
	free(before);
	before = read_all(img);
	OK(pcow_commit(img, "c-base.pcow", PCOW_COMMIT_KEEP));
	OK(pcow_commit(img, "c-mid.pcow", 0));
	OK(pcow_get_info(img, &info));
	CHECK(info.allocated_blocks == 0);
	EXPECT_SAME(before, read_all(img));
	OK(pcow_close(&img));
	EXPECT_SAME(before, read_image(test_path("c-base.pcow")));
	free(before);
}

/* Refusals change nothing. */
static void test_refusals(void)
{
	uint64_t sums[3];
	pcow_image *img, *ro;
	pcow_map *map;
	int release;
	pid_t pid;

	create(test_path("e-base.pcow"), NULL, PCOW_FORMAT_NONE, 4096, SIZE);
	create(test_path("e-top.pcow"), "e-base.pcow", PCOW_FORMAT_PCOW, 4096, 0);
	create(test_path("e-other.pcow"), NULL, PCOW_FORMAT_NONE, 4096, SIZE);
	OK(pcow_open(&img, test_path("e-top.pcow"), 0));
	write_pattern(img, 30, 0, 8192);
	OK(pcow_flush(img));
	sums[0] = test_file_sum(test_path("e-base.pcow"));
	sums[1] = test_file_sum(test_path("e-top.pcow"));

	CHECK(pcow_commit(img, test_path("e-other.pcow"), PCOW_COMMIT_KEEP) == -ENOENT);
	CHECK(strstr(pcow_errormsg(), "Did not find"));
	CHECK(pcow_commit(img, test_path("e-top.pcow"), PCOW_COMMIT_KEEP) == -ENOENT);
	OK(pcow_map_new(&map, img, 0));
	CHECK(pcow_commit(img, NULL, 0) == -EBUSY);
	OK(pcow_map_delete(&map));
	/* Another process holds the backing file. */
	pid = hold(test_path("e-base.pcow"), &release);
	CHECK(pcow_commit(img, NULL, 0) == -EBUSY);
	CHECK(strstr(pcow_errormsg(), "in use"));
	release_holder(pid, release);
	OK(pcow_snapshot_create(img, "s"));
	sums[2] = test_file_sum(test_path("e-top.pcow"));
	CHECK(pcow_commit(img, NULL, 0) == -ENOTSUP);
	CHECK(strstr(pcow_errormsg(), "snapshot"));
	CHECK(test_file_sum(test_path("e-top.pcow")) == sums[2] && sums[2] != sums[1]);
	OK(pcow_close(&img));
	CHECK(test_file_sum(test_path("e-base.pcow")) == sums[0]);

	OK(pcow_open(&img, test_path("e-other.pcow"), 0));
	CHECK(pcow_commit(img, NULL, 0) == -EINVAL);
	CHECK(strstr(pcow_errormsg(), "does not have a backing file"));
	OK(pcow_close(&img));
	OK(pcow_open(&ro, test_path("e-top.pcow"), PCOW_OPEN_RDONLY));
	CHECK(pcow_commit(ro, NULL, 0) == -EACCES);
	OK(pcow_close(&ro));
	OK(pcow_open(&img, test_path("e-top.pcow"), PCOW_OPEN_NO_BACKING));
	CHECK(pcow_commit(img, NULL, 0) == -EINVAL);
	OK(pcow_close(&img));
	CHECK(test_file_sum(test_path("e-base.pcow")) == sums[0]);

	/* After a refused lock the chain still holds the backing file shared:
	 * a writer elsewhere is refused, a reader is not. */
	create(test_path("e-top2.pcow"), "e-base.pcow", PCOW_FORMAT_PCOW, 4096, 0);
	OK(pcow_open(&img, test_path("e-top2.pcow"), 0));
	write_pattern(img, 31, 0, 4096);
	pid = hold(test_path("e-base.pcow"), &release);
	CHECK(pcow_commit(img, NULL, 0) == -EBUSY);
	release_holder(pid, release);
	CHECK(open_elsewhere(test_path("e-base.pcow"), 0) == -EBUSY);
	CHECK(open_elsewhere(test_path("e-base.pcow"), PCOW_OPEN_RDONLY) == 0);
	/* ... and after a commit too. */
	OK(pcow_commit(img, NULL, PCOW_COMMIT_KEEP));
	CHECK(open_elsewhere(test_path("e-base.pcow"), 0) == -EBUSY);
	CHECK(open_elsewhere(test_path("e-base.pcow"), PCOW_OPEN_RDONLY) == 0);
	OK(pcow_close(&img));
	CHECK(open_elsewhere(test_path("e-base.pcow"), 0) == 0);
}

/* An overlay larger than its backing file. */
static void test_sizes(void)
{
	uint8_t *before;
	pcow_image *img;
	struct stat st;
	int fd;

	create(test_path("s-base.pcow"), NULL, PCOW_FORMAT_NONE, 4096, SIZE / 2);
	create(test_path("s-top.pcow"), "s-base.pcow", PCOW_FORMAT_PCOW, 4096, SIZE);
	OK(pcow_open(&img, test_path("s-top.pcow"), 0));
	write_pattern(img, 40, 0, 4096);
	OK(pcow_commit(img, NULL, PCOW_COMMIT_KEEP));  /* fits */
	write_pattern(img, 41, SIZE - 4096, 4096);
	CHECK(pcow_commit(img, NULL, 0) == -EFBIG);
	OK(pcow_close(&img));

	fd = open(test_path("s.raw"), O_CREAT | O_WRONLY, 0644);
	CHECK(fd >= 0 && ftruncate(fd, SIZE / 2) == 0);
	close(fd);
	create(test_path("s-rtop.pcow"), "s.raw", PCOW_FORMAT_RAW, 4096, SIZE);
	OK(pcow_open(&img, test_path("s-rtop.pcow"), 0));
	write_pattern(img, 42, SIZE - 5000, 5000);
	before = read_all(img);
	OK(pcow_commit(img, NULL, 0));
	EXPECT_SAME(before, read_all(img));
	OK(pcow_close(&img));
	CHECK(stat(test_path("s.raw"), &st) == 0 && (uint64_t)st.st_size == SIZE);
	EXPECT_SAME(before, test_read_file(test_path("s.raw"), SIZE));
	free(before);
}


/* ---- Crash states ---------------------------------------------------------
 *
 * Every change commit makes to any of the files goes through the persist
 * hook and is recorded.  A power failure after the p-th change keeps every
 * change that a later sync of the same file (before p) made durable, and
 * any subset of the others, a write possibly torn at a sector boundary.
 * In every such state each file must open and check without corruption,
 * and the image must show exactly what it showed before the commit.  The
 * same holds when any one change fails with an I/O error.
 */

/* Three images, and their extent files when striped (PCOW_TEST_STRIPES). */
#define MAX_FILES 16
#define CRASH_SIZE (1ull << 20)

struct rec_op {
	int file;
	enum pcow_io_op type;
	uint64_t off, len;
	uint8_t *data;
};

static struct {
	int nfiles;
	char real[MAX_FILES][PATH_MAX];
	struct rec_op *ops;
	size_t n;
	unsigned foreign;
	size_t fail_at, count;  /* error injection: fail the fail_at-th change */
} R;

static uint64_t rng = 88172645463325252ull;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static int record(enum pcow_io_op type, int fd, uint64_t off, uint64_t len,
		  const void *buf, void *opaque)
{
	char link[64], target[PATH_MAX];
	ssize_t n;
	int i;

	(void)opaque;
	if (R.fail_at)
		return ++R.count == R.fail_at ? -EIO : 0;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, target, sizeof(target) - 1);
	target[n > 0 ? n : 0] = '\0';
	for (i = 0; i < R.nfiles && strcmp(target, R.real[i]); i++)
		;
	if (i == R.nfiles) {
		/* (A sync of a directory, for a new name, changes nothing.) */
		R.foreign += type != PCOW_IO_SYNC;
		return 0;
	}
	R.ops = realloc(R.ops, (R.n + 1) * sizeof(*R.ops));
	CHECK(R.ops);
	R.ops[R.n] = (struct rec_op){.file = i, .type = type, .off = off, .len = len};
	if (type == PCOW_IO_WRITE) {
		R.ops[R.n].data = malloc(len ? len : 1);
		CHECK(R.ops[R.n].data);
		memcpy(R.ops[R.n].data, buf, len);
	}
	R.n++;
	return 0;
}

struct crash {
	const char *files[MAX_FILES];  /* [0] the image; the others may change */
	bool pcow[MAX_FILES];
	int nfiles;
	int last;                       /* the target: the last file given */
	const char *base;
	unsigned flags;
	struct test_capture init[MAX_FILES];
	uint8_t *before;
	uint64_t states;
};

/* Builds the files: initial content, then ops[i] where mask[i] (2: only
 * torn bytes of it). */
static void build(struct crash *c, const uint8_t *mask, uint64_t torn)
{
	int fds[MAX_FILES], i;
	size_t k;

	for (i = 0; i < c->nfiles; i++)
		fds[i] = test_restore(c->files[i], &c->init[i]);
	for (k = 0; k < R.n; k++) {
		const struct rec_op *o = &R.ops[k];
		int fd = fds[o->file];

		if (!mask[k])
			continue;
		switch (o->type) {
		case PCOW_IO_WRITE:
			CHECK(pwrite(fd, o->data, mask[k] == 2 ? torn : o->len, (off_t)o->off) ==
			      (ssize_t)(mask[k] == 2 ? torn : o->len));
			break;
		case PCOW_IO_PUNCH:
			CHECK(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					(off_t)o->off, (off_t)o->len) == 0);
			break;
		case PCOW_IO_TRUNCATE:
			CHECK(ftruncate(fd, (off_t)o->off) == 0);
			break;
		case PCOW_IO_SYNC:
			break;
		}
	}
	for (i = 0; i < c->nfiles; i++)
		close(fds[i]);
}

/* complete: the commit finished (the target holds the content; without
 * leaks unless an earlier attempt failed). */
static void verify_state(struct crash *c, bool complete, bool leaks_ok, size_t cut)
{
	struct pcow_check_result r;
	pcow_image *img;
	uint8_t *now;
	int i;

	/* A power failure is a new boot: the page cache, and with it what
	 * the pending log vouches for, may be gone. */
	pcow_pending_set_boot_id("power-failed-boot");
	if (pcow_open(&img, c->files[0], 0) < 0) {
		fprintf(stderr, "crash after op %zu of %zu: %s\n", cut, R.n, pcow_errormsg());
		exit(1);
	}
	now = malloc(CRASH_SIZE);
	CHECK(now);
	OK(pcow_read(img, now, CRASH_SIZE, 0));
	if (memcmp(now, c->before, CRASH_SIZE)) {
		fprintf(stderr, "crash after op %zu of %zu: the image's content changed\n",
			cut, R.n);
		exit(1);
	}
	OK(pcow_close(&img));
	for (i = 0; i < c->nfiles; i++) {
		if (!c->pcow[i])
			continue;
		/* With its backing chain: without it, check cannot judge
		 * ownership (format.md 4.1, rule 2), the damage a commit cut
		 * short could leave. */
		OK(pcow_open(&img, c->files[i], PCOW_OPEN_RDONLY));
		OK(pcow_check(img, 0, &r));
		if (r.corruptions || r.check_errors || (complete && !leaks_ok && r.leaks)) {
			fprintf(stderr, "crash after op %zu of %zu: %s: check: %s\n", cut, R.n,
				c->files[i], r.first_problem);
			exit(1);
		}
		OK(pcow_close(&img));
	}
	if (complete) {
		/* The target holds what the image showed. */
		const char *t = c->files[c->last];

		if (c->pcow[c->last]) {
			OK(pcow_open(&img, t, PCOW_OPEN_RDONLY));
			OK(pcow_read(img, now, CRASH_SIZE, 0));
			OK(pcow_close(&img));
		} else {
			free(now);
			now = test_read_file(t, CRASH_SIZE);
		}
		CHECK(memcmp(now, c->before, CRASH_SIZE) == 0);
	}
	free(now);
	c->states++;
	pcow_pending_set_boot_id("recording-boot");
}

/* A striped image's extent files change with it: the crash states are
 * built over them too. */
static void add_extent_files(struct crash *c)
{
	int i, n = c->nfiles;
	uint32_t k;

	c->last = n - 1;
	for (i = 0; i < n; i++) {
		pcow_image *img;
		const char *name;

		if (!c->pcow[i])
			continue;
		OK(pcow_open(&img, c->files[i], PCOW_OPEN_RDONLY | PCOW_OPEN_NO_BACKING));
		for (k = 0; (name = pcow_extent_file(img, k)); k++) {
			char *copy = strdup(c->files[i]), *full;

			CHECK(copy && c->nfiles < MAX_FILES);
			CHECK(asprintf(&full, "%s/%s", dirname(copy), name) > 0);
			c->files[c->nfiles] = full;
			c->pcow[c->nfiles++] = false;
			free(copy);
		}
		OK(pcow_close(&img));
	}
}

static void crash_run(struct crash *c)
{
	uint8_t *mask;
	size_t p, k, j, *pend, np;
	pcow_image *img;
	int i, v;

	memset(&R, 0, sizeof(R));
	add_extent_files(c);
	R.nfiles = c->nfiles;
	for (i = 0; i < c->nfiles; i++) {
		CHECK(realpath(c->files[i], R.real[i]));
		test_capture(c->files[i], &c->init[i]);
	}
	OK(pcow_open(&img, c->files[0], 0));
	c->before = malloc(CRASH_SIZE);
	CHECK(c->before);
	OK(pcow_read(img, c->before, CRASH_SIZE, 0));
	pcow_io_set_hook(record, NULL);
	OK(pcow_commit(img, c->base, c->flags));
	pcow_io_set_hook(NULL, NULL);
	OK(pcow_close(&img));
	CHECK(R.foreign == 0 && R.n > 0);
	mask = calloc(R.n, 1);
	pend = calloc(R.n, sizeof(*pend));
	CHECK(mask && pend);
	for (p = 0; p <= R.n; p++) {
		/* ops[0..p) were issued; which of them are durable? */
		for (np = 0, k = 0; k < p; k++) {
			mask[k] = 0;
			if (R.ops[k].type == PCOW_IO_SYNC)
				continue;
			for (j = k + 1; j < p; j++)
				if (R.ops[j].type == PCOW_IO_SYNC && R.ops[j].file == R.ops[k].file)
					break;
			if (j < p)
				mask[k] = 1;
			else
				pend[np++] = k;
		}
		for (k = p; k < R.n; k++)
			mask[k] = 0;
		/* none, all, every one alone missing (a sample), random, torn */
		for (v = 0; v < 12; v++) {
			uint64_t torn = 0;

			if (v > 0 && np == 0)
				break;
			for (j = 0; j < np; j++)
				mask[pend[j]] = v == 0 ? 0 : v == 1 ? 1 : v < 6 ? 1 : (uint8_t)(rnd() & 1);
			if (v >= 2 && v < 6)
				mask[pend[rnd() % np]] = 0;
			if (v >= 9) {
				const struct rec_op *o = &R.ops[pend[rnd() % np]];

				if (o->type == PCOW_IO_WRITE && o->len > 512) {
					torn = (rnd() % (o->len / 512)) * 512;
					mask[o - R.ops] = 2;
				}
			}
			build(c, mask, torn);
			verify_state(c, false, false, p);
		}
	}
	for (k = 0; k < R.n; k++)
		mask[k] = 1;
	build(c, mask, 0);
	verify_state(c, true, false, R.n);
	/* An I/O error at each change: the commit fails, the state is valid
	 * with the content unchanged, and a retry completes it. */
	for (k = 1; k <= R.n; k++) {
		memset(mask, 0, R.n);
		build(c, mask, 0);
		OK(pcow_open(&img, c->files[0], 0));
		R.fail_at = k;
		R.count = 0;
		pcow_io_set_hook(record, NULL);
		/* A copy bit the pending log cannot take is persisted at once
		 * instead: that error costs nothing but time. */
		if (pcow_commit(img, c->base, c->flags) == 0) {
			const struct rec_op *o = &R.ops[k - 1];

			CHECK(o->type == PCOW_IO_WRITE && o->off >= 512 * 1024 &&
			      o->off < 2 * 1024 * 1024);
		}
		pcow_io_set_hook(NULL, NULL);
		R.fail_at = 0;
		pcow_close(&img);
		verify_state(c, false, false, k);
		OK(pcow_open(&img, c->files[0], 0));
		OK(pcow_commit(img, c->base, c->flags));
		OK(pcow_close(&img));
		verify_state(c, true, true, k);
	}
	for (k = 0; k < R.n; k++)
		free(R.ops[k].data);
	free(R.ops);
	for (i = 0; i < c->nfiles; i++)
		test_capture_free(&c->init[i]);
	/* The extent files' names add_extent_files made. */
	for (i = c->last + 1; i < c->nfiles; i++)
		free((char *)c->files[i]);
	c->nfiles = c->last + 1;
	free(c->before);
	free(mask);
	free(pend);
}

static void crash_fill_overlay(const char *path, uint32_t bs)
{
	pcow_image *img;

	OK(pcow_open(&img, path, 0));
	write_pattern(img, 50, 100, 300);                 /* partial over data */
	write_pattern(img, 51, 256 << 10, 3 * 4096);      /* nothing below */
	write_pattern(img, 52, (512 << 10) + 4096, bs);   /* across blocks */
	OK(pcow_discard(img, 64 << 10, 2 * bs));          /* hides data below */
	write_pattern(img, 53, CRASH_SIZE - 512, 512);
	OK(pcow_close(&img));
}

static void raw_with_data(const char *path, uint64_t seed)
{
	uint8_t d[4096];
	uint64_t off;
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);

	CHECK(fd >= 0 && ftruncate(fd, CRASH_SIZE) == 0);
	for (off = 0; off < CRASH_SIZE; off += 64 << 10) {
		test_fill(d, sizeof(d), seed, off);
		CHECK(pwrite(fd, d, sizeof(d), (off_t)off) == sizeof(d));
	}
	close(fd);
}

static void test_crash(void)
{
	struct crash c;
	pcow_image *img;
	uint64_t total = 0;

	/* Into a raw file. */
	raw_with_data(test_path("x.raw"), 60);
	create(test_path("x.pcow"), "x.raw", PCOW_FORMAT_RAW, 4096, 0);
	crash_fill_overlay(test_path("x.pcow"), 4096);
	c = (struct crash){.files = {test_path("x.pcow"), test_path("x.raw")},
			   .pcow = {true, false}, .nfiles = 2};
	crash_run(&c);
	total += c.states;

	/* Into a pcow file (64 KiB blocks, a snapshot, a raw file below). */
	raw_with_data(test_path("y.raw"), 61);
	create(test_path("y-mid.pcow"), "y.raw", PCOW_FORMAT_RAW, 65536, 0);
	OK(pcow_open(&img, test_path("y-mid.pcow"), 0));
	write_pattern(img, 62, 300 << 10, 70000);
	OK(pcow_snapshot_create(img, "s"));
	OK(pcow_close(&img));
	create(test_path("y.pcow"), "y-mid.pcow", PCOW_FORMAT_PCOW, 4096, 0);
	crash_fill_overlay(test_path("y.pcow"), 4096);
	c = (struct crash){.files = {test_path("y.pcow"), test_path("y-mid.pcow")},
			   .pcow = {true, true}, .nfiles = 2};
	crash_run(&c);
	total += c.states;

	/* Through an image in between, into its pcow backing file, kept. */
	create(test_path("z-base.pcow"), NULL, PCOW_FORMAT_NONE, 4096, CRASH_SIZE);
	OK(pcow_open(&img, test_path("z-base.pcow"), 0));
	write_pattern(img, 63, 0, 128 << 10);
	OK(pcow_close(&img));
	create(test_path("z-mid.pcow"), "z-base.pcow", PCOW_FORMAT_PCOW, 65536, 0);
	crash_fill_overlay(test_path("z-mid.pcow"), 65536);
	create(test_path("z.pcow"), "z-mid.pcow", PCOW_FORMAT_PCOW, 4096, 0);
	OK(pcow_open(&img, test_path("z.pcow"), 0));
	write_pattern(img, 64, 600 << 10, 5000);
	OK(pcow_close(&img));
	c = (struct crash){.files = {test_path("z.pcow"), test_path("z-mid.pcow"),
				     test_path("z-base.pcow")},
			   .pcow = {true, true, true}, .nfiles = 3,
			   .base = "z-base.pcow", .flags = PCOW_COMMIT_KEEP};
	crash_run(&c);
	total += c.states;
	printf("commit: %llu crash states\n", (unsigned long long)total);
}

int main(void)
{
	CHECK(chdir(test_dir()) == 0);
	test_raw(4096, 0);
	test_raw(65536, 0);
	test_raw(65536, PCOW_COMMIT_KEEP);
	test_raw(2u << 20, 0);
	test_pcow();
	test_chain();
	test_refusals();
	test_sizes();
	test_crash();
	printf("commit: ok\n");
	return 0;
}
