/*
 * test_powerfail.c -- power-fail crash states and I/O error injection.
 *
 * Every change libpcow makes to an image file goes through lib/persist.c,
 * whose hook lets this test see each store, hole punch, size change and
 * flush before it happens.  For each scenario the test records the
 * operation once, then rebuilds the image file in every state a power
 * failure could have left it in (see tests/crash/README.md) and checks that
 * each such image opens, checks without corruption, repairs its leaks, and
 * shows the guest-visible content from before or from after the operation.
 * A second pass fails each recorded operation in turn with EIO and with
 * ENOSPC.
 *
 * Environment: PCOW_CRASH_LONG=1 samples many more states; PCOW_CRASH_SEED
 * picks the random sample; PCOW_CRASH_ONLY=word runs only the scenarios
 * whose name contains word; PCOW_CRASH_VERBOSE=1 prints each scenario's
 * recorded operations; PCOW_TEST_KEEP=1 keeps the images of failing states
 * (their paths are printed); PCOW_TEST_DIR chooses where images live
 * (default: /dev/shm when it is a tmpfs, else /tmp).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "capture.h"
#include "test.h"

#include "image.h"
#include "layer.h"
#include "pending.h"
#include "persist.h"
#include "snapshot.h"

#define KiB 1024ull
#define MiB (1024ull * 1024)
#define SECTOR 512u
#define MAX_SNAPS 8
#define SMALL_INTERVAL 8 /* up to this many unsynced ops: every subset */
#define MIN_DEFAULT_STATES 10000

/* ---- Parameters ------------------------------------------------------ */

static struct {
	bool long_run;
	uint64_t seed;
	unsigned subset_cap;     /* states per interval of more than 8 ops */
	unsigned torn_per_write; /* torn variants per write, small intervals */
	unsigned torn_cap;       /* torn variants per interval of more than 8 ops */
	unsigned ro_every;       /* compare with a read-only open every n states */
	unsigned apply_every;    /* data scenarios: apply snapshots every n */
	const char *only;
	bool verbose;            /* print each scenario's operations */
} P;

static uint64_t rng;

static uint64_t rnd(void)
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t rnd_below(uint64_t n)
{
	return n ? rnd() % n : 0;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- Recording, failing and checking operations on the image file ---- */

struct op {
	enum pcow_io_op type;
	uint64_t off, len;
	uint8_t *data; /* writes only */
};

enum hook_mode { HOOK_RECORD, HOOK_INJECT, HOOK_FAIL_RELEASE };

static struct {
	enum hook_mode mode;
	char path[PATH_MAX + 32]; /* the image file; no other file may change */
	struct op *ops;
	size_t n, cap;
	unsigned foreign;
	char foreign_path[PATH_MAX];
	uint64_t count, fail_at; /* HOOK_INJECT: fail the fail_at-th op */
	int err;
	bool failed;
	bool failed_log;         /* the failed op was a pending-log write */
	bool seen_meta;          /* HOOK_FAIL_RELEASE */
	uint64_t stride;
} H;

static int hook(enum pcow_io_op type, int fd, uint64_t off, uint64_t len,
		const void *buf, void *opaque)
{
	char link[64], target[PATH_MAX];
	ssize_t n;

	(void)opaque;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, target, sizeof(target) - 1);
	target[n > 0 ? n : 0] = '\0';
	/* (A sync of a directory, for a new name, changes nothing.) */
	if (strcmp(target, H.path) != 0 && type != PCOW_IO_SYNC && !H.foreign++)
		snprintf(H.foreign_path, sizeof(H.foreign_path), "%s", target);
	switch (H.mode) {
	case HOOK_RECORD:
		if (H.n == H.cap) {
			H.cap = H.cap ? 2 * H.cap : 64;
			H.ops = realloc(H.ops, H.cap * sizeof(*H.ops));
			CHECK(H.ops);
		}
		H.ops[H.n] = (struct op){.type = type, .off = off, .len = len};
		if (type == PCOW_IO_WRITE) {
			H.ops[H.n].data = malloc(len ? len : 1);
			CHECK(H.ops[H.n].data);
			memcpy(H.ops[H.n].data, buf, len);
		}
		H.n++;
		return 0;
	case HOOK_INJECT:
		if (++H.count == H.fail_at) {
			H.failed = true;
			H.failed_log = type == PCOW_IO_WRITE && off >= PCOW_RESERVED_OFFSET &&
				       off < PCOW_DATA_OFFSET;
			return -H.err;
		}
		return 0;
	case HOOK_FAIL_RELEASE:
		/* Fails freeing a region after the metadata stopped using it:
		 * what a crash between the two steps leaves behind. */
		if (type == PCOW_IO_WRITE && off < PCOW_RESERVED_OFFSET)
			H.seen_meta = true;
		if (type == PCOW_IO_PUNCH && H.seen_meta && len == H.stride)
			return -EIO;
		return 0;
	}
	return 0;
}

static void hook_on(enum hook_mode mode)
{
	H.mode = mode;
	pcow_io_set_hook(hook, NULL);
}

static void hook_off(void)
{
	pcow_io_set_hook(NULL, NULL);
}

/* ---- What the guest sees ------------------------------------------------ */

struct view {
	bool valid;             /* the image opened */
	uint64_t size;
	char backing[4096];
	uint8_t *active;
	int nsnap;
	char *names[MAX_SNAPS];
	uint8_t *snap[MAX_SNAPS];
};

static void view_free(struct view *v)
{
	int i;

	free(v->active);
	for (i = 0; i < v->nsnap; i++) {
		free(v->names[i]);
		free(v->snap[i]);
	}
	memset(v, 0, sizeof(*v));
}

static uint8_t *dup_mem(const uint8_t *p, uint64_t n)
{
	uint8_t *q = malloc(n ? n : 1);

	CHECK(q);
	memcpy(q, p, n);
	return q;
}

static void view_copy(struct view *dst, const struct view *src)
{
	int i;

	*dst = *src;
	if (src->active)
		dst->active = dup_mem(src->active, src->size);
	for (i = 0; i < src->nsnap; i++) {
		dst->names[i] = strdup(src->names[i]);
		dst->snap[i] = dup_mem(src->snap[i], src->size);
		CHECK(dst->names[i]);
	}
}

static void view_add_snap(struct view *v, const char *name, const uint8_t *data)
{
	int i, j;

	CHECK(v->nsnap < MAX_SNAPS);
	for (i = 0; i < v->nsnap && strcmp(v->names[i], name) < 0; i++)
		;
	for (j = v->nsnap; j > i; j--) {
		v->names[j] = v->names[j - 1];
		v->snap[j] = v->snap[j - 1];
	}
	v->names[i] = strdup(name);
	CHECK(v->names[i]);
	v->snap[i] = dup_mem(data, v->size);
	v->nsnap++;
}

static int view_find(const struct view *v, const char *name)
{
	int i;

	for (i = 0; i < v->nsnap; i++)
		if (!strcmp(v->names[i], name))
			return i;
	return -1;
}

static void view_del_snap(struct view *v, const char *name)
{
	int i = view_find(v, name);

	CHECK(i >= 0);
	free(v->names[i]);
	free(v->snap[i]);
	memmove(&v->names[i], &v->names[i + 1], (size_t)(v->nsnap - i - 1) * sizeof(char *));
	memmove(&v->snap[i], &v->snap[i + 1], (size_t)(v->nsnap - i - 1) * sizeof(uint8_t *));
	v->nsnap--;
}

/* Reads the active layer and every snapshot (as seen from its layer). */
static int view_read(pcow_image *img, struct view *v)
{
	struct pcow_info info = {.struct_size = sizeof(info)};
	uint8_t *buf;
	uint32_t i;
	int ret;

	memset(v, 0, sizeof(*v));
	ret = pcow_get_info(img, &info);
	if (ret < 0)
		return ret;
	v->valid = true;
	v->size = info.virtual_size;
	snprintf(v->backing, sizeof(v->backing), "%s", info.backing_file);
	v->active = malloc(v->size);
	CHECK(v->active);
	ret = pcow_read(img, v->active, v->size, 0);
	if (ret < 0)
		return ret;
	buf = malloc(v->size);
	CHECK(buf);
	for (i = 0; i < img->m.snapshot_count; i++) {
		ret = pcow_chain_read(img, img->m.snapshots[i].layer, buf, v->size, 0);
		if (ret < 0)
			break;
		view_add_snap(v, img->m.snapshots[i].name, buf);
	}
	free(buf);
	return ret;
}

static uint64_t first_diff(const uint8_t *a, const uint8_t *b, uint64_t n)
{
	uint64_t i;

	for (i = 0; i < n; i++)
		if (a[i] != b[i])
			return i;
	return n;
}

/* Empty string when equal, else where a and b first differ. */
static void view_diff(const struct view *a, const struct view *b, char *why,
		      size_t wlen)
{
	int i;

	why[0] = '\0';
	if (a->valid != b->valid) {
		snprintf(why, wlen, a->valid ? "an image" : "no image");
		return;
	}
	if (!a->valid)
		return;
	if (a->size != b->size) {
		snprintf(why, wlen, "virtual size %" PRIu64 " vs %" PRIu64, a->size, b->size);
		return;
	}
	if (strcmp(a->backing, b->backing)) {
		snprintf(why, wlen, "backing file '%.200s' vs '%.200s'", a->backing,
			 b->backing);
		return;
	}
	if (a->nsnap != b->nsnap) {
		snprintf(why, wlen, "%d snapshots vs %d", a->nsnap, b->nsnap);
		return;
	}
	for (i = 0; i < a->nsnap; i++)
		if (strcmp(a->names[i], b->names[i])) {
			snprintf(why, wlen, "snapshot '%.40s' vs '%.40s'", a->names[i],
				 b->names[i]);
			return;
		}
	if (memcmp(a->active, b->active, a->size)) {
		snprintf(why, wlen, "active content differs at offset 0x%" PRIx64,
			 first_diff(a->active, b->active, a->size));
		return;
	}
	for (i = 0; i < a->nsnap; i++)
		if (memcmp(a->snap[i], b->snap[i], a->size)) {
			snprintf(why, wlen, "snapshot '%.40s' differs at offset 0x%" PRIx64,
				 a->names[i], first_diff(a->snap[i], b->snap[i], a->size));
			return;
		}
}

static bool view_eq(const struct view *a, const struct view *b)
{
	char why[256];

	view_diff(a, b, why, sizeof(why));
	return why[0] == '\0';
}

/* ---- Scenarios ------------------------------------------------------------ */

enum mode {
	WHOLE, /* the whole view is the one before or the one after */
	UNITS, /* each block (or sector) of the active content is old or new */
};

struct run;

/* A data operation, in half blocks plus bytes so that one list fits every
 * block size: off = h * bs/2 + o (h < 0: from the end of the image),
 * len = lh * bs/2 + l. */
struct wr {
	int64_t h, o, lh, l;
};

struct scen {
	const char *name;
	uint32_t bs;
	uint64_t size;
	enum mode mode;
	uint32_t unit;          /* UNITS granularity; 0 = the block size */
	bool creates;           /* the operation creates the image */
	void (*setup)(struct run *r);
	int (*op)(struct run *r, pcow_image *img, bool retry);
	void (*model)(struct run *r, struct view *v); /* before -> after */
	const struct wr *wr;    /* writes or discards for op_data */
	size_t nwr;
	bool discard;
	int variant;
};

struct run {
	const struct scen *s;
	char dir[PATH_MAX];
	char img[PATH_MAX + 32];
	char scratch[PATH_MAX + 32];
	uint32_t bs;
	uint64_t size, stride, span, nblocks;
	struct test_capture init;
	struct view before, after;
	struct op *ops;
	size_t nops;
	uint64_t states, torn, noimage, inj, nverify, poisoned;
	unsigned failures;
	bool ops_printed;
};

static unsigned total_failures;

/* Where a crash state or error run came from, for messages. */
struct sdesc {
	bool crash;
	size_t seg, nseg, base_end, pend_end;
	const uint8_t *mask;   /* per op: 0 lost, 1 applied, 2 torn */
	size_t torn_op;
	uint64_t torn_len;
	int err;
	uint64_t fail_at;
	bool retry;
};

/* A torn data write, as a range of the virtual disk. */
struct tear {
	bool on;
	uint64_t voff, vlen;
};

static const char *where(const struct run *r, uint64_t off, char *buf, size_t n)
{
	if (off < PCOW_META_SLOT_OFFSET(1))
		snprintf(buf, n, "metadata slot 0");
	else if (off < PCOW_RESERVED_OFFSET)
		snprintf(buf, n, "metadata slot 1");
	else if (off < PCOW_DATA_OFFSET)
		snprintf(buf, n, "reserved area");
	else {
		uint64_t x = off - PCOW_DATA_OFFSET, in = x % r->stride;

		if (in < r->span)
			snprintf(buf, n, "region %" PRIu64 " block %" PRIu64 " +%" PRIu64,
				 x / r->stride, in / r->bs, in % r->bs);
		else
			snprintf(buf, n, "region %" PRIu64 " copy bitmap word %" PRIu64,
				 x / r->stride, (in - r->span) / 8);
	}
	return buf;
}

static void print_op(const struct run *r, size_t i)
{
	const struct op *o = &r->ops[i];
	char w[96];

	switch (o->type) {
	case PCOW_IO_WRITE:
		fprintf(stderr, "    #%zu write  0x%" PRIx64 " +%" PRIu64 " (%s)", i,
			o->off, o->len, where(r, o->off, w, sizeof(w)));
		if (o->len == 8)
			fprintf(stderr, " = 0x%016" PRIx64, pcow_le64(o->data));
		fprintf(stderr, "\n");
		break;
	case PCOW_IO_PUNCH:
		fprintf(stderr, "    #%zu punch  0x%" PRIx64 " +%" PRIu64 " (%s)\n", i,
			o->off, o->len, where(r, o->off, w, sizeof(w)));
		break;
	case PCOW_IO_TRUNCATE:
		fprintf(stderr, "    #%zu resize to %" PRIu64 "\n", i, o->off);
		break;
	case PCOW_IO_SYNC:
		fprintf(stderr, "    #%zu sync\n", i);
		break;
	}
}

static void describe(const struct run *r, const struct sdesc *d)
{
	size_t i, shown = 0;

	if (!d->crash) {
		fprintf(stderr, "  state: op #%" PRIu64 " failed with %s%s\n",
			d->fail_at - 1, strerror(d->err),
			d->retry ? "; the operation was then retried and flushed" : "");
		return;
	}
	fprintf(stderr, "  state: ops #0..#%zd durable (sync point %zu of %zu)",
		(ssize_t)d->base_end - 1, d->seg, d->nseg - 1);
	if (d->base_end == d->pend_end) {
		fprintf(stderr, ", nothing pending\n");
		return;
	}
	fprintf(stderr, "; of #%zu..#%zu:", d->base_end, d->pend_end - 1);
	for (i = d->base_end; i < d->pend_end; i++) {
		if (shown++ == 40) {
			fprintf(stderr, " ...");
			break;
		}
		if (d->mask[i] == 2)
			fprintf(stderr, " #%zu torn(%" PRIu64 " of %" PRIu64 " bytes)", i,
				d->torn_len, r->ops[i].len);
		else
			fprintf(stderr, " #%zu %s", i, d->mask[i] ? "applied" : "lost");
	}
	fprintf(stderr, "\n");
}

static void build_state(const struct run *r, const char *path,
			const uint8_t *mask, uint64_t torn_len);

static void fail(struct run *r, const struct sdesc *d, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void fail(struct run *r, const struct sdesc *d, const char *fmt, ...)
{
	va_list ap;
	size_t i;

	total_failures++;
	if (++r->failures > 5) {
		if (r->failures == 6)
			fprintf(stderr, "FAIL %s (%u KiB blocks): more failures not shown\n",
				r->s->name, r->bs / 1024);
		return;
	}
	fprintf(stderr, "FAIL %s (%u KiB blocks): ", r->s->name, r->bs / 1024);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	if (d)
		describe(r, d);
	if (!r->ops_printed && r->nops) {
		r->ops_printed = true;
		fprintf(stderr, "  the operation's changes to the image file:\n");
		for (i = 0; i < r->nops && i < 120; i++)
			print_op(r, i);
		if (r->nops > 120)
			fprintf(stderr, "    ... (%zu in all)\n", r->nops);
	}
	if (d && d->crash && d->mask && getenv("PCOW_TEST_KEEP")) {
		char path[PATH_MAX + 64];

		snprintf(path, sizeof(path), "%s/fail-%u.pcow", r->dir, r->failures);
		build_state(r, path, d->mask, d->torn_len);
		fprintf(stderr, "  the crash image, as the power failure left it, is kept as %s\n", path);
	}
}

/* ---- Building crash states ------------------------------------------------ */

static void replay(int fd, const struct op *o, uint64_t len)
{
	switch (o->type) {
	case PCOW_IO_WRITE:
		test_write_all(fd, o->data, len, o->off);
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

/* The initial file, then every op whose mask is set (2: torn_len bytes). */
static void build_state(const struct run *r, const char *path,
			const uint8_t *mask, uint64_t torn_len)
{
	int fd = test_restore(path, &r->init);
	size_t i;

	for (i = 0; i < r->nops; i++)
		if (mask[i])
			replay(fd, &r->ops[i], mask[i] == 2 ? torn_len : r->ops[i].len);
	close(fd);
}

/* ---- Checking one state ------------------------------------------------- */

static bool units_ok(const struct run *r, const struct view *v,
		     const struct tear *t, char *why, size_t wlen)
{
	const struct view *b = &r->before, *a = &r->after;
	uint64_t bs = r->bs, unit = r->s->unit ? r->s->unit : bs, blk;
	int i;

	if (v->size != b->size || strcmp(v->backing, b->backing) ||
	    v->nsnap != b->nsnap) {
		view_diff(v, b, why, wlen);
		return false;
	}
	for (i = 0; i < v->nsnap; i++)
		if (strcmp(v->names[i], b->names[i]) ||
		    memcmp(v->snap[i], b->snap[i], v->size)) {
			snprintf(why, wlen, "snapshot '%s' changed by a data operation",
				 v->names[i]);
			return false;
		}
	for (blk = 0; blk * bs < v->size; blk++) {
		uint64_t start = blk * bs, end = start + bs, u, step;

		if (end > v->size)
			end = v->size;
		step = unit;
		/* A torn write is atomic only per sector. */
		if (t && t->on && start < t->voff + t->vlen && t->voff < end)
			step = SECTOR;
		for (u = start; u < end; u += step) {
			uint64_t n = end - u < step ? end - u : step, k;
			const uint8_t *p = v->active + u;
			bool zero = true;

			if (!memcmp(p, b->active + u, n) || !memcmp(p, a->active + u, n))
				continue;
			for (k = 0; k < n && zero; k++)
				zero = p[k] == 0;
			k = u;
			while (k < u + n && (v->active[k] == b->active[k] ||
					     v->active[k] == a->active[k]))
				k++;
			snprintf(why, wlen,
				 "block %" PRIu64 " bytes 0x%" PRIx64 "+%" PRIu64
				 " are neither the old nor the new content%s (at 0x%" PRIx64
				 ": seen %02x, old %02x, new %02x)",
				 blk, u, n, zero ? " (they read as zeros)" : "", k,
				 v->active[k], b->active[k], a->active[k]);
			return false;
		}
	}
	return true;
}

static bool content_ok(const struct run *r, const struct view *v, bool must_after,
		       const struct tear *t, char *why, size_t wlen)
{
	char w1[256], w2[256];

	if (must_after) {
		view_diff(v, &r->after, w1, sizeof(w1));
		if (w1[0])
			snprintf(why, wlen, "the operation completed and was flushed, but the image is not in the state after it: %s",
				 w1);
		return !w1[0];
	}
	if (r->s->mode == UNITS && v->valid)
		return units_ok(r, v, t, why, wlen);
	view_diff(v, &r->before, w1, sizeof(w1));
	view_diff(v, &r->after, w2, sizeof(w2));
	if (!w1[0] || !w2[0])
		return true;
	snprintf(why, wlen, "neither before nor after the operation: vs before, %s; vs after, %s",
		 w1, w2);
	return false;
}

/* Applies each snapshot on a scratch copy and compares with what the view
 * read through the snapshot's layer. */
static void check_by_apply(struct run *r, const struct sdesc *d,
			   const struct view *v)
{
	struct test_capture fi;
	int i;

	test_capture(r->img, &fi);
	close(test_restore(r->scratch, &fi));
	for (i = 0; i < v->nsnap; i++) {
		pcow_image *img;
		uint8_t *buf = malloc(v->size);

		CHECK(buf);
		if (pcow_open(&img, r->scratch, 0) < 0) {
			fail(r, d, "scratch copy does not open: %s", pcow_errormsg());
			free(buf);
			break;
		}
		if (pcow_snapshot_apply(img, v->names[i]) < 0 ||
		    pcow_read(img, buf, v->size, 0) < 0)
			fail(r, d, "applying snapshot '%s' on a copy failed: %s",
			     v->names[i], pcow_errormsg());
		else if (memcmp(buf, v->snap[i], v->size))
			fail(r, d, "snapshot '%s' applied on a copy differs from its layer at 0x%" PRIx64,
			     v->names[i], first_diff(buf, v->snap[i], v->size));
		pcow_close(&img);
		free(buf);
	}
	unlink(r->scratch);
	test_capture_free(&fi);
}

/*
 * Opens the image file as it is now (read-write, as after a reboot), checks
 * it, compares what it shows with before/after, and repairs its leaks.
 * must_after: only the state after the operation is acceptable.
 */
static void verify(struct run *r, const struct sdesc *d, bool must_after,
		   bool allow_leaks, const struct tear *t)
{
	pcow_image *img = NULL, *ro = NULL;
	struct pcow_check_result cr, cr2;
	struct view v = {0}, vro = {0}, v2 = {0};
	char why[768];
	int ret;

	/* A power failure is a new boot: what the pending log vouches for
	 * may have been lost with the page cache. */
	if (d->crash)
		pcow_pending_set_boot_id("power-failed-boot");
	r->nverify++;
	if (P.ro_every && r->nverify % P.ro_every == 0 &&
	    pcow_open(&ro, r->img, PCOW_OPEN_RDONLY) == 0) {
		if (view_read(ro, &vro) < 0)
			fail(r, d, "reading through a read-only open failed: %s",
			     pcow_errormsg());
		pcow_close(&ro);
	}
	ret = pcow_open(&img, r->img, 0);
	if (ret < 0) {
		if (!pcow_errormsg()[0])
			fail(r, d, "open failed (%d) without a message", ret);
		else if (r->s->creates && !must_after && !vro.valid)
			r->noimage += d->crash; /* the create did not happen */
		else
			fail(r, d, "image does not open: %s", pcow_errormsg());
		goto out;
	}
	ret = pcow_check(img, 0, &cr);
	if (ret < 0) {
		fail(r, d, "check failed: %s", pcow_errormsg());
		goto out;
	}
	if (cr.corruptions || cr.check_errors) {
		fail(r, d, "check finds %" PRIu64 " corruptions, %" PRIu64 " check errors: %s",
		     cr.corruptions, cr.check_errors, cr.first_problem);
		goto out;
	}
	if (view_read(img, &v) < 0) {
		fail(r, d, "reading the image failed: %s", pcow_errormsg());
		goto out;
	}
	if (vro.valid && !view_eq(&vro, &v)) {
		view_diff(&vro, &v, why, sizeof(why));
		fail(r, d, "a read-only open shows other content than a read-write open: %s",
		     why);
	}
	if (!content_ok(r, &v, must_after, t, why, sizeof(why)))
		fail(r, d, "%s", why);
	if (must_after && !allow_leaks && cr.leaks)
		fail(r, d, "the operation completed, but check finds %" PRIu64 " leaks: %s",
		     cr.leaks, cr.first_problem);
	if (cr.leaks) {
		ret = pcow_check(img, PCOW_CHECK_FIX_LEAKS, &cr2);
		if (ret < 0 || cr2.corruptions || cr2.check_errors) {
			fail(r, d, "repairing leaks failed: %s / %s", pcow_errormsg(),
			     cr2.first_problem);
			goto out;
		}
		ret = pcow_check(img, 0, &cr2);
		if (ret < 0 || cr2.corruptions || cr2.leaks)
			fail(r, d, "after repairing leaks, check finds %" PRIu64 " corruptions, %" PRIu64 " leaks: %s",
			     cr2.corruptions, cr2.leaks, cr2.first_problem);
		if (view_read(img, &v2) < 0)
			fail(r, d, "reading the repaired image failed: %s", pcow_errormsg());
		else if (!view_eq(&v, &v2)) {
			view_diff(&v, &v2, why, sizeof(why));
			fail(r, d, "repairing leaks changed the content: %s", why);
		}
	}
	if (pcow_close(&img) < 0)
		fail(r, d, "close failed: %s", pcow_errormsg());
	if (v.nsnap && (r->s->mode == WHOLE ||
			(P.apply_every && r->nverify % P.apply_every == 0)))
		check_by_apply(r, d, &v);
out:
	if (img)
		pcow_close(&img);
	view_free(&v);
	view_free(&vro);
	view_free(&v2);
	pcow_pending_set_boot_id("recording-boot");
}

/* ---- Enumerating crash states ------------------------------------------- */

static void check_state(struct run *r, struct sdesc *d, uint8_t *mask,
			size_t torn_op, uint64_t torn_len)
{
	struct tear t = {0};
	bool must_after = d->base_end == r->nops;

	d->mask = mask;
	d->torn_len = torn_len;
	d->torn_op = torn_op;
	if (torn_op != SIZE_MAX) {
		const struct op *o = &r->ops[torn_op];

		r->torn++;
		/* A torn write into a data span is atomic per sector only. */
		if (o->off >= PCOW_DATA_OFFSET &&
		    (o->off - PCOW_DATA_OFFSET) % r->stride < r->span) {
			t.on = true;
			t.voff = (o->off - PCOW_DATA_OFFSET) % r->stride;
			t.vlen = o->len;
		}
	}
	build_state(r, r->img, mask, torn_len);
	r->states++;
	verify(r, d, must_after, false, &t);
}

/* Sectors a write touches, counted on 512-byte boundaries of the file. */
static uint64_t sectors(const struct op *o)
{
	return (o->off + o->len - 1) / SECTOR - o->off / SECTOR + 1;
}

/* Bytes of a write that a power failure after k of its sectors keeps. */
static uint64_t torn_bytes(const struct op *o, uint64_t k)
{
	return (o->off / SECTOR + k) * SECTOR - o->off;
}

static bool tearable(const struct op *o)
{
	return o->type == PCOW_IO_WRITE && o->len > SECTOR && sectors(o) >= 2;
}

static void set_pending(uint8_t *mask, const size_t *pend, size_t p, uint64_t bits)
{
	size_t i;

	for (i = 0; i < p; i++)
		mask[pend[i]] = (bits >> i) & 1;
}

static void random_pending(uint8_t *mask, const size_t *pend, size_t p,
			   unsigned permille)
{
	size_t i;

	for (i = 0; i < p; i++)
		mask[pend[i]] = rnd_below(1000) < permille;
}

static void enumerate(struct run *r)
{
	size_t nsync = 0, i, j, seg, *syncs, *pend;
	uint8_t *mask = calloc(r->nops + 1, 1);
	struct sdesc d = {.crash = true};

	syncs = calloc(r->nops + 1, sizeof(*syncs));
	pend = calloc(r->nops + 1, sizeof(*pend));
	CHECK(mask && syncs && pend);
	for (i = 0; i < r->nops; i++)
		if (r->ops[i].type == PCOW_IO_SYNC)
			syncs[nsync++] = i;
	d.nseg = nsync + 1;
	for (seg = 0; seg <= nsync; seg++) {
		size_t base_end = seg ? syncs[seg - 1] + 1 : 0;
		size_t pend_end = seg < nsync ? syncs[seg] : r->nops;
		bool next_sync = seg < nsync;
		size_t p = pend_end - base_end, ntear = 0;
		uint64_t full, bits;

		d.seg = seg;
		d.base_end = base_end;
		d.pend_end = pend_end;
		for (i = 0; i < r->nops; i++)
			mask[i] = i < base_end;
		for (i = 0; i < p; i++) {
			pend[i] = base_end + i;
			ntear += tearable(&r->ops[pend[i]]);
		}
		if (p <= SMALL_INTERVAL) {
			/* Every subset; with all applied, the state is the next
			 * sync point's, which the next interval checks. */
			full = (1ull << p) - 1;
			for (bits = 0; bits <= full; bits++) {
				if (bits == full && next_sync)
					continue;
				set_pending(mask, pend, p, bits);
				check_state(r, &d, mask, SIZE_MAX, 0);
			}
			for (i = 0; i < p; i++) {
				const struct op *o = &r->ops[pend[i]];
				uint64_t ns, k, n;

				if (!tearable(o))
					continue;
				ns = sectors(o);
				n = ns - 1 < P.torn_per_write ? ns - 1 : P.torn_per_write;
				for (k = 0; k < n; k++) {
					uint64_t keep = ns - 1 <= P.torn_per_write
								? k + 1
								: 1 + rnd_below(ns - 1);

					set_pending(mask, pend, p, rnd_below(full + 1));
					mask[pend[i]] = 2;
					check_state(r, &d, mask, pend[i], torn_bytes(o, keep));
				}
			}
			continue;
		}
		/* Too many for every subset: the ends, in-order prefixes,
		 * single losses, then random subsets of varying density. */
		{
			size_t budget = P.subset_cap, step;

			set_pending(mask, pend, p, 0);
			check_state(r, &d, mask, SIZE_MAX, 0);
			if (!next_sync) {
				for (i = 0; i < p; i++)
					mask[pend[i]] = 1;
				check_state(r, &d, mask, SIZE_MAX, 0);
			}
			step = p / (budget / 4) + 1;
			for (j = 1; j < p; j += step) {
				for (i = 0; i < p; i++)
					mask[pend[i]] = i < j;
				check_state(r, &d, mask, SIZE_MAX, 0);
			}
			for (j = 0; j < budget / 8; j++) {
				for (i = 0; i < p; i++)
					mask[pend[i]] = 1;
				mask[pend[rnd_below(p)]] = 0;
				check_state(r, &d, mask, SIZE_MAX, 0);
			}
			for (j = 0; j < budget / 2; j++) {
				static const unsigned density[] = {500, 100, 900, 500};

				random_pending(mask, pend, p, density[j % 4]);
				check_state(r, &d, mask, SIZE_MAX, 0);
			}
			for (j = 0; ntear && j < P.torn_cap; j++) {
				const struct op *o;
				size_t w;

				do
					w = pend[rnd_below(p)];
				while (!tearable(&r->ops[w]));
				o = &r->ops[w];
				random_pending(mask, pend, p, 500);
				mask[w] = 2;
				check_state(r, &d, mask, w,
					    torn_bytes(o, 1 + rnd_below(sectors(o) - 1)));
			}
		}
	}
	free(mask);
	free(syncs);
	free(pend);
}

/* ---- I/O error injection ------------------------------------------------ */

static void inject(struct run *r, int err, uint64_t n, bool retry)
{
	struct sdesc d = {.crash = false, .err = err, .fail_at = n, .retry = retry};
	pcow_image *img = NULL;
	int ret;

	close(test_restore(r->img, &r->init));
	if (r->s->creates)
		unlink(r->img);
	else
		OK(pcow_open(&img, r->img, 0));
	H.count = 0;
	H.fail_at = n;
	H.err = err;
	H.failed = false;
	H.failed_log = false;
	H.foreign = 0;
	hook_on(HOOK_INJECT);
	ret = r->s->op(r, img, false);
	if (ret >= 0 && img)
		ret = pcow_flush(img);
	hook_off();
	r->inj++;
	if (H.foreign)
		fail(r, &d, "the library changed another file: %s", H.foreign_path);
	if (!H.failed) {
		fail(r, &d, "operation #%" PRIu64 " was not reached", n - 1);
	} else if (ret >= 0 && !H.failed_log) {
		/* (A copy bit the pending log cannot take is persisted at
		 * once instead: that failure costs nothing but time.) */
		fail(r, &d, "the operation reported success although a change to the image failed");
	} else if (retry && ret < 0) {
		/* A failed metadata commit poisons the handle (its slot may
		 * be durable all the same): further changes are refused until
		 * the image is reopened. */
		if (img && img->poisoned) {
			CHECK(pcow_write(img, "x", 1, 0) == -EIO);
			r->poisoned++;
			pcow_close(&img);
			OK(pcow_open(&img, r->img, 0));
		}
		ret = r->s->op(r, img, true);
		if (ret >= 0 && img)
			ret = pcow_flush(img);
		if (ret < 0)
			fail(r, &d, "retrying the operation failed: %s", pcow_errormsg());
	}
	if (img && pcow_close(&img) < 0)
		fail(r, &d, "close failed: %s", pcow_errormsg());
	verify(r, &d, retry, true, NULL);
}

/* ---- Scenario helpers ----------------------------------------------------- */

static uint64_t wr_off(const struct run *r, const struct wr *w)
{
	int64_t base = w->h < 0 ? (int64_t)r->size : 0;

	return (uint64_t)(base + w->h * (int64_t)(r->bs / 2) + w->o);
}

static uint64_t wr_len(const struct run *r, const struct wr *w)
{
	return (uint64_t)(w->lh * (int64_t)(r->bs / 2) + w->l);
}

static void fill(uint8_t *buf, uint64_t len, uint64_t seed, uint64_t off)
{
	test_fill(buf, len, seed, off);
}

static void write_pattern(pcow_image *img, uint64_t off, uint64_t len,
			  uint64_t seed)
{
	uint8_t *buf = malloc(len);

	CHECK(buf);
	fill(buf, len, seed, off);
	OK(pcow_write(img, buf, len, off));
	free(buf);
}

static void write_blocks(struct run *r, pcow_image *img, const int *blocks,
			 size_t n, uint64_t seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		write_pattern(img, (uint64_t)blocks[i] * r->bs, r->bs, seed);
}

static pcow_image *new_image(struct run *r, const char *backing,
			     enum pcow_format fmt, uint64_t size)
{
	struct pcow_create_opts o = {.struct_size = sizeof(o), .size = size, .block_size = r->bs,
				     .backing_file = backing, .backing_format = fmt};
	pcow_image *img;

	OK(pcow_create(r->img, &o));
	OK(pcow_open(&img, r->img, 0));
	return img;
}

static const char *in_dir(const struct run *r, const char *name)
{
	static char buf[4][PATH_MAX + 64];
	static int i;
	char *b = buf[i++ % 4];

	snprintf(b, PATH_MAX + 64, "%s/%s", r->dir, name);
	return b;
}

/*
 * A raw backing file of the image's block size.  variant 0: data (seed 1)
 * in every block but every 4th (holes) and block 5 (stored zeros).
 * variant 1: the same, except for some blocks that differ in content or
 * only in allocation.
 */
static int raw_kind(int variant, uint64_t b, uint64_t *seed)
{
	*seed = 1;
	if (variant == 1) {
		switch (b) {
		case 2: case 5: case 7: case 13:
			*seed = 2;
			return 2;
		case 9:
			return 0;
		case 11:
			return 1;
		}
	}
	if (b % 4 == 3)
		return 0;
	if (b == 5)
		return 1;
	return 2;
}

static void make_raw(struct run *r, const char *name, uint64_t size, int variant)
{
	int fd = open(in_dir(r, name), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	uint8_t *buf = malloc(r->bs);
	uint64_t b, seed;

	CHECK(fd >= 0 && buf);
	CHECK(ftruncate(fd, (off_t)size) == 0);
	for (b = 0; b * r->bs < size; b++) {
		int kind = raw_kind(variant, b, &seed);

		if (kind == 0)
			continue;
		if (kind == 1)
			memset(buf, 0, r->bs);
		else
			fill(buf, r->bs, seed, b * r->bs);
		test_write_all(fd, buf, r->bs, b * r->bs);
	}
	CHECK(fsync(fd) == 0);
	close(fd);
	free(buf);
}

static void apply_release_failing(struct run *r, pcow_image *img,
				  const char *name, bool delete)
{
	H.seen_meta = false;
	H.stride = r->stride;
	hook_on(HOOK_FAIL_RELEASE);
	CHECK((delete ? pcow_snapshot_delete(img, name)
		      : pcow_snapshot_apply(img, name)) < 0);
	hook_off();
}

/* Snapshot names long enough that the metadata blob spans sectors, so that
 * commits can be torn. */
static const char *long_name(int n)
{
	static char names[4][220];
	char *s = names[n % 4];

	memset(s, 'a' + n, 200);
	snprintf(s + 200, 20, "-snapshot-%d", n);
	return s;
}

/* ---- The scenarios ------------------------------------------------------ */

static void model_none(struct run *r, struct view *v)
{
	(void)r;
	(void)v;
}

/* create: an image with nothing (or with a raw backing file) below. */
static void setup_create(struct run *r)
{
	if (r->s->variant)
		make_raw(r, "base.raw", r->size, 0);
}

static int op_create(struct run *r, pcow_image *img, bool retry)
{
	struct pcow_create_opts o = {.struct_size = sizeof(o), .size = r->s->variant ? 0 : r->size,
				     .block_size = r->bs};

	(void)img;
	(void)retry;
	if (r->s->variant) {
		o.backing_file = "base.raw";
		o.backing_format = PCOW_FORMAT_RAW;
	}
	return pcow_create(r->img, &o);
}

static void model_create(struct run *r, struct view *v)
{
	view_free(v);
	v->valid = true;
	v->size = r->size;
	v->active = calloc(1, r->size);
	CHECK(v->active);
	if (r->s->variant) {
		int fd = open(in_dir(r, "base.raw"), O_RDONLY | O_CLOEXEC);

		CHECK(fd >= 0);
		test_read_all(fd, v->active, r->size, 0);
		close(fd);
		snprintf(v->backing, sizeof(v->backing), "base.raw");
	}
}

/* Writes and discards from a list (op_data); model_data applies them. */
static int op_data(struct run *r, pcow_image *img, bool retry)
{
	size_t i;
	int ret = 0;

	(void)retry;
	for (i = 0; i < r->s->nwr && ret >= 0; i++) {
		uint64_t off = wr_off(r, &r->s->wr[i]), len = wr_len(r, &r->s->wr[i]);
		uint8_t *buf;

		if (r->s->discard) {
			ret = pcow_discard(img, off, len);
			continue;
		}
		buf = malloc(len);
		CHECK(buf);
		fill(buf, len, 100 + i, off);
		ret = pcow_write(img, buf, len, off);
		free(buf);
	}
	return ret;
}

static void model_data(struct run *r, struct view *v)
{
	size_t i;

	for (i = 0; i < r->s->nwr; i++) {
		uint64_t off = wr_off(r, &r->s->wr[i]), len = wr_len(r, &r->s->wr[i]);

		if (r->s->discard) {
			uint64_t first = (off + r->bs - 1) / r->bs, end = (off + len) / r->bs;

			if (off + len == r->size)
				end = r->nblocks;
			for (; first < end; first++)
				memset(v->active + first * r->bs, 0,
				       first * r->bs + r->bs > r->size ? r->size - first * r->bs
								       : r->bs);
		} else {
			fill(v->active + off, len, 100 + i, off);
		}
	}
}

static void setup_hole(struct run *r)
{
	static const int owned[] = {0, 10, 11, 12};
	pcow_image *img = new_image(r, NULL, PCOW_FORMAT_NONE, r->size);

	write_blocks(r, img, owned, 4, 11);
	OK(pcow_close(&img));
}

/* A raw backing file below; block 4 already copied up. */
static void setup_raw(struct run *r)
{
	pcow_image *img;

	make_raw(r, "base.raw", r->size, 0);
	img = new_image(r, "base.raw", PCOW_FORMAT_RAW, 0);
	write_pattern(img, 4 * r->bs + 10, 100, 12);
	OK(pcow_close(&img));
}

/* A snapshot over a raw backing file; the snapshot's layer owns blocks 1,
 * 2, 4, 6, 8 (partly written) and 12 (stored zeros); the active layer owns
 * block 2. */
static void setup_snap(struct run *r)
{
	static const int a[] = {1, 2, 4, 6};
	pcow_image *img;
	uint8_t *zero = calloc(1, r->bs);

	CHECK(zero);
	make_raw(r, "base.raw", r->size, 0);
	img = new_image(r, "base.raw", PCOW_FORMAT_RAW, 0);
	write_blocks(r, img, a, 4, 20);
	write_pattern(img, 8 * r->bs + 50, 100, 20);
	OK(pcow_write(img, zero, r->bs, 12 * r->bs));
	OK(pcow_snapshot_create(img, "s1"));
	write_pattern(img, 2 * r->bs, r->bs, 21);
	OK(pcow_close(&img));
	free(zero);
}

/* Discard targets: the snapshot's layer owns 2, 3, 4; the active layer
 * owns 1, 2, 5, 6, 7, 13, 14, 18; the raw file has data except in every
 * 4th block. */
static void setup_discard(struct run *r)
{
	static const int a[] = {2, 3, 4}, b[] = {1, 2, 5, 6, 7, 13, 14, 18};
	pcow_image *img;

	make_raw(r, "base.raw", r->size, 0);
	img = new_image(r, "base.raw", PCOW_FORMAT_RAW, 0);
	write_blocks(r, img, a, 3, 30);
	OK(pcow_snapshot_create(img, "s1"));
	write_blocks(r, img, b, 8, 31);
	OK(pcow_close(&img));
}

static void write_spread(struct run *r, pcow_image *img, int first, int n,
			 uint64_t seed)
{
	int b;

	for (b = first; b < first + n; b++)
		write_pattern(img, (uint64_t)b * r->bs + (uint64_t)b * 100, r->bs / 2,
			      seed);
}

static void setup_snapcreate(struct run *r)
{
	pcow_image *img = new_image(r, NULL, PCOW_FORMAT_NONE, r->size);

	write_spread(r, img, 0, 6, 40);
	OK(pcow_snapshot_create(img, long_name(1)));
	write_spread(r, img, 3, 6, 41);
	OK(pcow_close(&img));
}

/* Variant 2 takes the snapshot as QEMU does on a running VM: prepared
 * beforehand, flushed after the switch (PCOW_SNAPSHOT_SYNC_LATER). */
static int op_snapcreate(struct run *r, pcow_image *img, bool retry)
{
	const char *name = r->s->variant ? "s3" : long_name(2);
	int ret;

	if (r->s->variant == 2) {
		if (retry && pcow_snapshot_find(&img->m, name) >= 0)
			return pcow_flush(img);
		ret = pcow_snapshot_prepare(img);
		if (ret == 0)
			ret = pcow_snapshot_create_flags(img, name,
							 PCOW_SNAPSHOT_SYNC_LATER);
		return ret < 0 ? ret : pcow_flush(img);
	}
	if (retry && pcow_snapshot_find(&img->m, name) >= 0)
		return 0;
	return pcow_snapshot_create(img, name);
}

static void model_snapcreate(struct run *r, struct view *v)
{
	view_add_snap(v, r->s->variant ? "s3" : long_name(2), v->active);
}

/* The region the new snapshot takes holds data leaked by an apply that
 * was interrupted before it freed the old active layer's region. */
static void setup_snapcreate_leak(struct run *r)
{
	pcow_image *img = new_image(r, NULL, PCOW_FORMAT_NONE, r->size);

	write_spread(r, img, 0, 4, 42);
	OK(pcow_snapshot_create(img, "s1"));
	write_spread(r, img, 2, 4, 43);
	OK(pcow_snapshot_create(img, "s2"));
	write_spread(r, img, 4, 4, 44);
	apply_release_failing(r, img, "s1", false);
	write_spread(r, img, 6, 2, 45);
	OK(pcow_close(&img));
}

static void setup_apply(struct run *r)
{
	pcow_image *img;

	make_raw(r, "base.raw", r->size, 0);
	img = new_image(r, "base.raw", PCOW_FORMAT_RAW, 0);
	write_spread(r, img, 0, 4, 50);
	OK(pcow_snapshot_create(img, "s1"));
	write_spread(r, img, 2, 4, 51);
	OK(pcow_snapshot_create(img, long_name(3)));
	write_spread(r, img, 4, 4, 52);
	OK(pcow_close(&img));
}

static int op_apply(struct run *r, pcow_image *img, bool retry)
{
	(void)r;
	(void)retry;
	return pcow_snapshot_apply(img, "s1");
}

static void model_apply(struct run *r, struct view *v)
{
	int i = view_find(v, "s1");

	CHECK(i >= 0);
	memcpy(v->active, v->snap[i], r->size);
}

/* s1 has two children: s2's layer and (after applying s1) the active
 * layer; each inherits blocks from s1 that the delete pushes down. */
static void setup_delete(struct run *r)
{
	static const int a[] = {0, 1, 2, 4}, b[] = {1, 9}, c[] = {2, 10},
			 d[] = {4, 11};
	uint8_t *zero = calloc(1, r->bs);
	pcow_image *img;

	CHECK(zero);
	make_raw(r, "base.raw", r->size, 0);
	img = new_image(r, "base.raw", PCOW_FORMAT_RAW, 0);
	write_blocks(r, img, a, 4, 60);
	write_pattern(img, 6 * r->bs + 300, 700, 60);
	OK(pcow_write(img, zero, r->bs, 8 * r->bs));
	OK(pcow_snapshot_create(img, "s1"));
	write_blocks(r, img, b, 2, 61);
	OK(pcow_snapshot_create(img, long_name(0)));
	write_blocks(r, img, c, 2, 62);
	OK(pcow_snapshot_apply(img, "s1"));
	write_blocks(r, img, d, 2, 63);
	OK(pcow_close(&img));
	free(zero);
}

static int op_delete(struct run *r, pcow_image *img, bool retry)
{
	(void)r;
	if (retry && pcow_snapshot_find(&img->m, "s1") < 0)
		return 0;
	return pcow_snapshot_delete(img, "s1");
}

static void model_delete(struct run *r, struct view *v)
{
	(void)r;
	view_del_snap(v, "s1");
}

/* rebase: variant 0 old.raw -> new.raw, 1 old.raw -> none, 2 a pcow
 * backing file with 4 KiB blocks -> new.raw. */
static void setup_rebase(struct run *r)
{
	pcow_image *img;

	make_raw(r, "new.raw", r->size, 1);
	if (r->s->variant == 2) {
		struct pcow_create_opts o = {.struct_size = sizeof(o), .size = r->size, .block_size = 4096};
		pcow_image *b;

		OK(pcow_create(in_dir(r, "old.pcow"), &o));
		OK(pcow_open(&b, in_dir(r, "old.pcow"), 0));
		write_pattern(b, 0, 3 * r->bs, 1);
		write_pattern(b, 5 * r->bs + 8192, 4096, 1);
		write_pattern(b, 9 * r->bs, 2 * r->bs + 100, 1);
		OK(pcow_close(&b));
		img = new_image(r, "old.pcow", PCOW_FORMAT_PCOW, 0);
	} else {
		make_raw(r, "old.raw", r->size, 0);
		img = new_image(r, "old.raw", PCOW_FORMAT_RAW, 0);
	}
	write_pattern(img, 2 * r->bs + 100, 200, 70);
	OK(pcow_snapshot_create(img, "s1"));
	write_pattern(img, 5 * r->bs, r->bs, 71);
	OK(pcow_close(&img));
}

static int op_rebase(struct run *r, pcow_image *img, bool retry)
{
	(void)retry;
	if (r->s->variant == 1)
		return pcow_rebase(img, NULL, PCOW_FORMAT_NONE, 0);
	return pcow_rebase(img, "new.raw", PCOW_FORMAT_RAW, 0);
}

static void model_rebase(struct run *r, struct view *v)
{
	snprintf(v->backing, sizeof(v->backing), "%s",
		 r->s->variant == 1 ? "" : "new.raw");
}

/* Every kind of leak check repairs: a region left by an interrupted
 * delete, a layer nothing refers to, data past the virtual size, data
 * in the reserved area before the regions. */
static void setup_check(struct run *r)
{
	pcow_image *img = new_image(r, NULL, PCOW_FORMAT_NONE, r->size);
	struct pcow_meta next;
	uint64_t active_start;
	int idx, fd;

	write_spread(r, img, 0, 4, 80);
	OK(pcow_snapshot_create(img, "s1"));
	write_spread(r, img, 2, 4, 81);
	OK(pcow_snapshot_create(img, "s2"));
	write_spread(r, img, 4, 4, 82);
	OK(pcow_snapshot_create(img, "s3"));
	write_spread(r, img, 6, 4, 83);
	apply_release_failing(r, img, "s2", true);
	OK(pcow_snapshot_apply(img, "s1"));
	write_spread(r, img, 8, 2, 84);
	/* Drop s3's entry but keep its layer, which has no child left. */
	OK(pcow_meta_copy(&next, &img->m));
	idx = pcow_snapshot_find(&next, "s3");
	CHECK(idx >= 0);
	free(next.snapshots[idx].name);
	memmove(&next.snapshots[idx], &next.snapshots[idx + 1],
		(next.snapshot_count - (uint32_t)idx - 1) * sizeof(*next.snapshots));
	next.snapshot_count--;
	OK(pcow_meta_commit(img, &next));
	pcow_meta_free(&next);
	active_start = region_start(img, img->m.active);
	OK(pcow_close(&img));
	fd = open(r->img, O_RDWR | O_CLOEXEC);
	CHECK(fd >= 0);
	test_write_all(fd, "leaked data", 11, 1 * MiB);
	test_write_all(fd, "past the end", 12, active_start + r->size + 4096);
	close(fd);
}

static int op_check(struct run *r, pcow_image *img, bool retry)
{
	struct pcow_check_result res;
	int ret = pcow_check(img, PCOW_CHECK_FIX_LEAKS, &res);

	(void)r;
	(void)retry;
	if (ret < 0)
		return ret;
	/* A repair that did not complete is reported in the result. */
	if (res.check_errors || res.leaks_fixed < res.leaks)
		return -EIO;
	return 0;
}

/* convert: an empty image filled chunk by chunk, zero chunks skipped. */
static void setup_empty(struct run *r)
{
	pcow_image *img = new_image(r, NULL, PCOW_FORMAT_NONE, r->size);

	OK(pcow_close(&img));
}

static uint64_t convert_chunk(const struct run *r)
{
	return r->bs < 16 * KiB ? 16 * KiB : r->bs;
}

static int op_convert(struct run *r, pcow_image *img, bool retry)
{
	uint64_t c = convert_chunk(r), off;
	uint8_t *buf = malloc(c);
	int ret = 0;

	(void)retry;
	CHECK(buf);
	for (off = 0; off < r->size && ret >= 0; off += c) {
		if ((off / c) % 5 == 2)
			continue; /* all zeros: convert leaves it unallocated */
		fill(buf, c, 90, off);
		ret = pcow_write(img, buf, c, off);
	}
	free(buf);
	return ret;
}

static void model_convert(struct run *r, struct view *v)
{
	uint64_t c = convert_chunk(r), off;

	for (off = 0; off < r->size; off += c)
		if ((off / c) % 5 != 2)
			fill(v->active + off, c, 90, off);
}

/*
 * resize: variant 0 grows within the capacity, 1 past it (the regions
 * move), 2 shrinks.  A raw backing file has data past the old size, which
 * the grown area must not show; the old size (and the shrink's new size)
 * cuts a block the raw file has data in.
 */
#define RESIZE_CAP (4 * MiB)

static uint64_t resize_target(const struct run *r)
{
	switch (r->s->variant) {
	case 0: return RESIZE_CAP - SECTOR;
	case 1: return 3 * MiB + SECTOR;
	default: return MiB + r->bs + 3 * SECTOR; /* cuts a block no layer owns */
	}
}

static void setup_resize(struct run *r)
{
	struct pcow_create_opts o = {.struct_size = sizeof(o), .size = r->size, .block_size = r->bs,
				     .backing_file = "base.raw",
				     .backing_format = PCOW_FORMAT_RAW,
				     .capacity = r->s->variant == 0 ? RESIZE_CAP : 0};
	pcow_image *img;

	make_raw(r, "base.raw", RESIZE_CAP, 0);
	if (o.capacity) {
		/* For the messages (where()): the layout before the resize. */
		r->span = RESIZE_CAP;
		r->stride = pcow_region_stride(r->span, (uint32_t)__builtin_ctz(r->bs));
	}
	OK(pcow_create(r->img, &o));
	OK(pcow_open(&img, r->img, 0));
	write_spread(r, img, 0, 4, 95);
	/* Copied-up blocks (and bits) on both sides of the shrink's size. */
	write_pattern(img, MiB - 100, 300, 96);
	write_pattern(img, MiB + 2 * r->bs, 1000, 97);
	OK(pcow_close(&img));
}

static int op_resize(struct run *r, pcow_image *img, bool retry)
{
	(void)retry;
	return pcow_resize(img, resize_target(r), PCOW_RESIZE_SHRINK);
}

static void model_resize(struct run *r, struct view *v)
{
	uint64_t size = resize_target(r);

	v->active = realloc(v->active, size);
	CHECK(v->active);
	if (size > v->size)
		memset(v->active + v->size, 0, size - v->size);
	v->size = size;
}

static uint64_t total_states, total_inj, total_poisoned;

static void run_scenario(const struct scen *s)
{
	struct run r = {0};
	pcow_image *img = NULL;
	struct pcow_check_result cr;
	char dir[PATH_MAX], real[PATH_MAX];
	double t0 = now();
	uint64_t n;
	int ret, e;
	size_t i;

	memset(&H, 0, sizeof(H));
	r.s = s;
	r.bs = s->bs;
	r.size = s->size;
	/* The layout pcow_create gives (before any resize). */
	r.span = pcow_data_span(r.size, (uint32_t)__builtin_ctz(r.bs));
	r.stride = pcow_region_stride(r.span, (uint32_t)__builtin_ctz(r.bs));
	r.nblocks = (r.size + r.bs - 1) / r.bs;
	rng = P.seed ^ (uint64_t)s->bs * 0x100000001b3ull;
	for (i = 0; s->name[i]; i++)
		rng = (rng ^ (uint8_t)s->name[i]) * 0x100000001b3ull;
	snprintf(dir, sizeof(dir), "%s/%s-%uk", test_dir(), s->name, s->bs / 1024);
	CHECK(mkdir(dir, 0755) == 0);
	CHECK(realpath(dir, real));
	snprintf(r.dir, sizeof(r.dir), "%s", real);
	snprintf(r.img, sizeof(r.img), "%s/image.pcow", real);
	snprintf(r.scratch, sizeof(r.scratch), "%s/scratch.pcow", real);
	snprintf(H.path, sizeof(H.path), "%s", r.img);

	/* The initial state. */
	s->setup(&r);
	if (s->creates) {
		memset(&r.init, 0, sizeof(r.init));
	} else {
		test_capture(r.img, &r.init);
		OK(pcow_open(&img, r.img, 0));
		OK(pcow_check(img, 0, &cr));
		CHECK(cr.corruptions == 0);
		OK(view_read(img, &r.before));
		OK(pcow_close(&img));
	}
	view_copy(&r.after, &r.before);
	s->model(&r, &r.after);

	/* The operation, recorded. */
	close(test_restore(r.img, &r.init));
	if (s->creates)
		unlink(r.img);
	else
		OK(pcow_open(&img, r.img, 0));
	H.n = 0;
	H.foreign = 0;
	hook_on(HOOK_RECORD);
	ret = s->op(&r, img, false);
	if (ret >= 0 && img)
		ret = pcow_flush(img);
	hook_off();
	if (img)
		OK(pcow_close(&img));
	r.ops = H.ops;
	r.nops = H.n;
	H.ops = NULL;
	H.n = H.cap = 0;
	if (P.verbose) {
		printf("%s (%u KiB blocks):\n", s->name, s->bs / 1024);
		fflush(stdout);
		for (i = 0; i < r.nops; i++)
			print_op(&r, i);
	}
	if (ret < 0)
		fail(&r, NULL, "the operation failed: %s", pcow_errormsg());
	else if (H.foreign)
		fail(&r, NULL, "the library changed another file: %s", H.foreign_path);
	else {
		struct sdesc d = {.crash = true, .base_end = r.nops, .pend_end = r.nops};

		verify(&r, &d, true, false, NULL);
	}

	if (!r.failures) {
		/* Every state a power failure can leave. */
		if (s->creates) {
			struct sdesc d = {.crash = true};

			unlink(r.img);
			r.states++;
			verify(&r, &d, false, false, NULL); /* not even created */
		}
		enumerate(&r);
		/* Every change to the image failing in turn. */
		for (e = 0; e < 2; e++)
			for (n = 1; n <= r.nops; n++) {
				inject(&r, e ? ENOSPC : EIO, n, false);
				inject(&r, e ? ENOSPC : EIO, n, true);
			}
	}
	printf("  %-22s %2u KiB blocks: %3zu ops, %6" PRIu64 " crash states (%5" PRIu64
	       " torn, %4" PRIu64 " without an image), %5" PRIu64
	       " error runs, %6.2f s%s\n",
	       s->name, s->bs / 1024, r.nops, r.states, r.torn, r.noimage, r.inj,
	       now() - t0, r.failures ? "  FAILED" : "");
	fflush(stdout);
	total_states += r.states;
	total_inj += r.inj;
	total_poisoned += r.poisoned;
	for (i = 0; i < r.nops; i++)
		free(r.ops[i].data);
	free(r.ops);
	test_capture_free(&r.init);
	view_free(&r.before);
	view_free(&r.after);
}

/* ---- The scenario table -------------------------------------------------- */

/* First writes into holes with nothing below (blocks 0, 10-12 are owned). */
static const struct wr w_hole[] = {
	{3, 0, 4, 0},       /* blocks 1 (second half), 2, 3 (first half) */
	{12, 100, 0, 300},  /* inside block 6, inside one sector */
	{16, 0, 2, 0},      /* block 8, whole */
	{18, 511, 0, 1025}, /* block 9, unaligned across three sectors */
	{26, 0, 8, 0},      /* blocks 13-16, whole */
	{-2, 24, 0, 1000},  /* the last block */
};

/* Partial writes into blocks inherited from the raw file (4 is owned). */
static const struct wr w_raw_partial[] = {
	{2, 100, 0, 1000},  /* block 1 */
	{18, -700, 0, 1400}, /* the end of block 8 and the start of block 9 */
	{10, 2000, 0, 100}, /* block 5: stored zeros in the raw file */
	{26, 512, 1, 0},    /* block 13 */
	{8, 1000, 0, 50},   /* block 4: already owned */
	{14, 0, 1, 100},    /* block 7: a hole in the raw file */
};

/* Whole-block overwrites of blocks inherited from the raw file. */
static const struct wr w_raw_whole[] = {
	{2, 0, 4, 0},       /* blocks 1-2 */
	{10, 0, 2, 0},      /* block 5: stored zeros in the raw file */
	{12, 0, 3, 0},      /* block 6, then half of block 7 (a hole) */
	{20, 0, 6, 0},      /* blocks 10-12 (11 is a hole) */
};

/* Writes into blocks inherited from a snapshot (see setup_snap). */
static const struct wr w_snap[] = {
	{2, 300, 0, 700},   /* block 1, partial */
	{8, 0, 2, 0},       /* block 4, whole */
	{13, 0, 2, 0},      /* second half of block 6, first half of block 7 */
	{18, 10, 0, 20},    /* block 9: from the raw file, through s1 */
	{4, 5, 0, 50},      /* block 2: owned by the active layer */
	{24, 1000, 0, 100}, /* block 12: stored zeros in s1 over raw data */
	{16, 3000, 0, 200}, /* block 8: partly written in s1 */
	{20, 0, 2, 0},      /* block 10: raw data, whole */
};

/* Discards (see setup_discard). */
static const struct wr w_discard[] = {
	{2, 0, 2, 0},       /* block 1: owned, raw data below */
	{4, 0, 2, 0},       /* block 2: owned, snapshot data below */
	{6, 0, 2, 0},       /* block 3: not owned, snapshot data */
	{14, 0, 2, 0},      /* block 7: owned, nothing below */
	{22, 0, 2, 0},      /* block 11: nothing anywhere */
	{10, 0, 2, 0},      /* block 5: owned, stored zeros below */
	{18, 0, 2, 0},      /* block 9: not owned, raw data */
	{26, 0, 6, 0},      /* blocks 13-15 */
	{34, 100, 4, 0},    /* only block 18 lies wholly inside */
};

#define SZ (2 * MiB)
#define DATA(n, b, w, sf)                                                     \
	{.name = n, .bs = b, .size = SZ, .mode = UNITS, .setup = sf,          \
	 .op = op_data, .model = model_data, .wr = w,                         \
	 .nwr = sizeof(w) / sizeof((w)[0])}
#define META(n, b, sf, o, m, v)                                               \
	{.name = n, .bs = b, .size = SZ, .mode = WHOLE, .setup = sf, .op = o, \
	 .model = m, .variant = v}

static const struct scen table[] = {
	{.name = "create", .bs = 4096, .size = SZ, .mode = WHOLE, .creates = true,
	 .setup = setup_create, .op = op_create, .model = model_create},
	{.name = "create", .bs = 65536, .size = SZ, .mode = WHOLE, .creates = true,
	 .setup = setup_create, .op = op_create, .model = model_create},
	{.name = "create-over-raw", .bs = 65536, .size = SZ, .mode = WHOLE,
	 .creates = true, .setup = setup_create, .op = op_create,
	 .model = model_create, .variant = 1},
	DATA("write-hole", 4096, w_hole, setup_hole),
	DATA("write-hole", 65536, w_hole, setup_hole),
	DATA("copyup-raw-partial", 4096, w_raw_partial, setup_raw),
	DATA("copyup-raw-partial", 65536, w_raw_partial, setup_raw),
	DATA("copyup-raw-whole", 4096, w_raw_whole, setup_raw),
	DATA("copyup-raw-whole", 65536, w_raw_whole, setup_raw),
	DATA("copyup-snapshot", 4096, w_snap, setup_snap),
	DATA("copyup-snapshot", 65536, w_snap, setup_snap),
	/* Discard is atomic per sector only, as on any disk; what must never
	 * show is older data from below. */
	{.name = "discard", .bs = 4096, .size = SZ, .mode = UNITS, .unit = SECTOR,
	 .setup = setup_discard, .op = op_data, .model = model_data,
	 .wr = w_discard, .nwr = sizeof(w_discard) / sizeof(w_discard[0]),
	 .discard = true},
	{.name = "discard", .bs = 65536, .size = SZ, .mode = UNITS, .unit = SECTOR,
	 .setup = setup_discard, .op = op_data, .model = model_data,
	 .wr = w_discard, .nwr = sizeof(w_discard) / sizeof(w_discard[0]),
	 .discard = true},
	META("snapshot-create", 4096, setup_snapcreate, op_snapcreate, model_snapcreate, 0),
	META("snapshot-create", 65536, setup_snapcreate, op_snapcreate, model_snapcreate, 0),
	META("snapshot-create-leak", 65536, setup_snapcreate_leak, op_snapcreate,
	     model_snapcreate, 1),
	META("snapshot-create-live", 4096, setup_snapcreate, op_snapcreate,
	     model_snapcreate, 2),
	META("snapshot-create-live", 65536, setup_snapcreate_leak, op_snapcreate,
	     model_snapcreate, 2),
	META("snapshot-apply", 4096, setup_apply, op_apply, model_apply, 0),
	META("snapshot-apply", 65536, setup_apply, op_apply, model_apply, 0),
	META("snapshot-delete", 4096, setup_delete, op_delete, model_delete, 0),
	META("snapshot-delete", 65536, setup_delete, op_delete, model_delete, 0),
	META("rebase", 4096, setup_rebase, op_rebase, model_rebase, 0),
	META("rebase", 65536, setup_rebase, op_rebase, model_rebase, 0),
	META("rebase-remove", 65536, setup_rebase, op_rebase, model_rebase, 1),
	META("rebase-from-pcow", 65536, setup_rebase, op_rebase, model_rebase, 2),
	{.name = "check-repair", .bs = 4096, .size = 3 * MiB, .mode = WHOLE,
	 .setup = setup_check, .op = op_check, .model = model_none},
	{.name = "check-repair", .bs = 65536, .size = 3 * MiB, .mode = WHOLE,
	 .setup = setup_check, .op = op_check, .model = model_none},
	/* The old sizes cut a block the raw file has data in (raw_kind). */
	{.name = "resize-grow", .bs = 4096, .size = SZ - 2 * 4096 + 3 * SECTOR,
	 .mode = WHOLE, .setup = setup_resize, .op = op_resize, .model = model_resize},
	{.name = "resize-grow", .bs = 65536, .size = 30 * 65536 + 16 * KiB,
	 .mode = WHOLE, .setup = setup_resize, .op = op_resize, .model = model_resize},
	{.name = "resize-move", .bs = 4096, .size = SZ - 2 * 4096 + 3 * SECTOR,
	 .mode = WHOLE, .setup = setup_resize, .op = op_resize, .model = model_resize,
	 .variant = 1},
	{.name = "resize-move", .bs = 65536, .size = 30 * 65536 + 16 * KiB,
	 .mode = WHOLE, .setup = setup_resize, .op = op_resize, .model = model_resize,
	 .variant = 1},
	{.name = "resize-shrink", .bs = 4096, .size = SZ, .mode = WHOLE,
	 .setup = setup_resize, .op = op_resize, .model = model_resize, .variant = 2},
	{.name = "resize-shrink", .bs = 65536, .size = SZ, .mode = WHOLE,
	 .setup = setup_resize, .op = op_resize, .model = model_resize, .variant = 2},
	{.name = "convert", .bs = 4096, .size = SZ, .mode = UNITS,
	 .setup = setup_empty, .op = op_convert, .model = model_convert},
	{.name = "convert", .bs = 65536, .size = SZ, .mode = UNITS,
	 .setup = setup_empty, .op = op_convert, .model = model_convert},
};

int main(void)
{
	struct statfs fs;
	const char *e;
	double t0 = now();
	size_t i;

	setvbuf(stdout, NULL, _IOLBF, 0);
	pcow_pending_set_boot_id("recording-boot");
	/* Views of whole images are allocated for every state: keep them in
	 * the heap rather than in fresh mappings that fault in each time. */
	mallopt(M_MMAP_THRESHOLD, 64 << 20);
	mallopt(M_TRIM_THRESHOLD, 512 << 20);
	/* Tens of thousands of image files are rebuilt and freed: on a disk
	 * file system mounted with discard that takes minutes, in memory
	 * seconds.  PCOW_TEST_DIR still chooses. */
	if (statfs("/dev/shm", &fs) == 0 && fs.f_type == TMPFS_MAGIC &&
	    access("/dev/shm", W_OK) == 0)
		setenv("PCOW_TEST_DIR", "/dev/shm", 0);
	e = getenv("PCOW_CRASH_LONG");
	P.long_run = e && *e && strcmp(e, "0");
	e = getenv("PCOW_CRASH_SEED");
	P.seed = e ? strtoull(e, NULL, 0) : 1;
	P.only = getenv("PCOW_CRASH_ONLY");
	P.verbose = getenv("PCOW_CRASH_VERBOSE") != NULL;
	if (P.long_run) {
		P.subset_cap = 16384;
		P.torn_per_write = 64;
		P.torn_cap = 8192;
		P.ro_every = 1;
		P.apply_every = 4;
	} else {
		P.subset_cap = 2048;
		P.torn_per_write = 16;
		P.torn_cap = 1024;
		P.ro_every = 3;
		P.apply_every = 50;
	}
	printf("power-fail crash states and I/O errors (%s run, seed %" PRIu64 ")\n",
	       P.long_run ? "long" : "default", P.seed);
	for (i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		if (!P.only || strstr(table[i].name, P.only))
			run_scenario(&table[i]);
	printf("total: %" PRIu64 " crash states, %" PRIu64 " error runs (%" PRIu64
	       " after a failed metadata sync, retried on a new handle), %u failures, %.1f s\n",
	       total_states, total_inj, total_poisoned, total_failures, now() - t0);
	if (!P.only && total_poisoned == 0) {
		printf("FAIL: no failed metadata commit was followed by writes\n");
		return 1;
	}
	if (!P.only && !P.long_run && total_states < MIN_DEFAULT_STATES) {
		printf("FAIL: fewer than %d crash states checked\n", MIN_DEFAULT_STATES);
		return 1;
	}
	return total_failures ? 1 : 0;
}
