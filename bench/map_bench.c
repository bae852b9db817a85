/*
 * map_bench.c -- host benchmarks of the libpcow mapping engine.
 *
 * Every measurement is set against a baseline measured side by side in the
 * same run, on files in the same directory (so on the same file system).
 * Each measurement is repeated (-r, default 5); a figure is the median of
 * the repeats and a ratio is the median of the per-repeat ratios.  Within a
 * repeat, pcow and baseline alternate (chunk by chunk where a pass can be
 * split), and which goes first alternates from one repeat to the next.
 *
 *  1. steady   64 B loads and stores (random and sequential) on a fully
 *              allocated, mapped pcow image vs a MAP_SHARED mapping of a
 *              fully allocated raw file of the same size.  Before each
 *              timed store pass every page is stored to once (untimed), so
 *              the pass starts with all pages dirty and writable.
 *  2. first    one 8-byte store per 4 KiB page of the whole image, blocks in
 *              sequential or shuffled order (pages in order inside a block),
 *              on a new, empty pcow image vs a new sparse raw file
 *              (ftruncate) mapped MAP_SHARED, with the same block order.
 *  3. cow      one 8-byte store per block of an image whose every block is
 *              inherited from a fully written raw backing file (each store
 *              should copy one whole block up) vs the same stores to the same
 *              image once it owns every block (flushed, unmapped and mapped
 *              again, so each store is a first touch of a clean, cached
 *              page).  Also the VMAs of the range halfway and after, and a
 *              check that no block lost the backing file's data.
 *  4. snap     pcow_open, pcow_close, pcow_snapshot_create and pcow_map_new
 *              times against the amount of data written to the image.
 *  5. durable  a 64 B store followed by pcow_map_flush() vs a 64 B store to
 *              a raw MAP_SHARED mapping followed by fdatasync().
 *
 * 1 and 2 are CPU-bound and timed by the thread's CPU time, so that time
 * other processes hold the CPU is not counted (-W: wall clock); 3, 4 and 5
 * wait for the disk and are timed by the wall clock.  The output is a set
 * of Markdown tables.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "pcow.h"

#define PAGE 4096u
#define LINE 64u
#define MAX_REPEATS 15
#define KiB ((uint64_t)1 << 10)
#define MiB ((uint64_t)1 << 20)
#define GiB ((uint64_t)1 << 30)

enum {
	T_STEADY = 1 << 0,
	T_FIRST = 1 << 1,
	T_COW = 1 << 2,
	T_SNAP = 1 << 3,
	T_DURABLE = 1 << 4,
	T_ALL = (1 << 5) - 1,
};

static struct {
	const char *dir;
	uint64_t size;          /* steady-state image, snapshot test image */
	uint64_t first_size;    /* first-write image */
	uint64_t cow_size;      /* largest copy-on-write image */
	uint64_t cow_blocks;    /* at most this many blocks copied per pass */
	uint64_t ops;           /* steady-state operations per pass */
	uint64_t durable_size;  /* image of the durable-write test */
	uint64_t durable_ops;   /* durable writes per pass */
	unsigned repeats;
	unsigned tests;
	bool verbose;
	bool wall;
} opt = {
	.dir = ".",
	.size = 1 * GiB,
	.first_size = 256 * MiB,
	.cow_size = 256 * MiB,
	.cow_blocks = 4096,
	.ops = 16 * MiB,
	.durable_size = 64 * MiB,
	.durable_ops = 2000,
	.repeats = 5,
	.tests = T_ALL,
};

/* Results of loads land here, so that they are not optimised away. */
static volatile uint64_t sink;

/* ---- helpers ------------------------------------------------------------ */

static void die(const char *what, int err)
{
	fprintf(stderr, "map_bench: %s: %s%s%s\n", what, strerror(err < 0 ? -err : err),
		err < 0 ? " -- " : "", err < 0 ? pcow_errormsg() : "");
	exit(1);
}

#define PCOW_OK(call)                                                      \
	do {                                                               \
		int ret_ = (call);                                         \
		if (ret_ < 0)                                              \
			die(#call, ret_);                                  \
	} while (0)

#define SYS_OK(cond, what)                                                 \
	do {                                                               \
		if (!(cond))                                               \
			die(what, errno);                                  \
	} while (0)

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/*
 * The CPU time of this thread: what the CPU-bound measurements (1, 2) use,
 * so that time other processes take the CPU away is not counted (-W: wall
 * clock everywhere).
 */
static double cpu_now(void)
{
	struct timespec t;

	if (opt.wall)
		return now();
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static long minflt(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_minflt + ru.ru_majflt;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(const double *v, unsigned n)
{
	double s[MAX_REPEATS];

	memcpy(s, v, n * sizeof(*v));
	qsort(s, n, sizeof(*s), cmp_double);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* Median of the per-repeat ratios a[i] / b[i]. */
static double median_ratio(const double *a, const double *b, unsigned n)
{
	double r[MAX_REPEATS];
	unsigned i;

	for (i = 0; i < n; i++)
		r[i] = a[i] / b[i];
	return median(r, n);
}

/* Smallest and largest of the per-repeat ratios a[i] / b[i]. */
static void range_ratio(const double *a, const double *b, unsigned n,
			double *lo, double *hi)
{
	unsigned i;

	*lo = *hi = a[0] / b[0];
	for (i = 1; i < n; i++) {
		double r = a[i] / b[i];

		if (r < *lo)
			*lo = r;
		if (r > *hi)
			*hi = r;
	}
}

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x * 0x2545f4914f6cdd1dull;
}

/* Uniform in [0, n) without a division. */
static uint64_t below(uint64_t x, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)x * n) >> 64);
}

static uint32_t *block_order(uint64_t n, bool shuffled)
{
	uint32_t *a = malloc(n * sizeof(*a));
	uint64_t i, s = 0x9e3779b97f4a7c15ull;

	SYS_OK(a, "malloc");
	for (i = 0; i < n; i++)
		a[i] = (uint32_t)i;
	if (shuffled)
		for (i = n - 1; i > 0; i--) {
			uint64_t j = below(xorshift(&s), i + 1);
			uint32_t t = a[i];

			a[i] = a[j];
			a[j] = t;
		}
	return a;
}

static const char *size_str(uint64_t v, char *buf, size_t len)
{
	if (v == 0)
		snprintf(buf, len, "0");
	else if (v % GiB == 0)
		snprintf(buf, len, "%" PRIu64 " GiB", v / GiB);
	else if (v % MiB == 0)
		snprintf(buf, len, "%" PRIu64 " MiB", v / MiB);
	else if (v % KiB == 0)
		snprintf(buf, len, "%" PRIu64 " KiB", v / KiB);
	else
		snprintf(buf, len, "%" PRIu64 " B", v);
	return buf;
}

#define SZ(v) size_str((v), (char[32]){0}, 32)

static uint64_t parse_size(const char *s)
{
	char *end;
	uint64_t v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s)
		goto bad;
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	default: break;
	}
	if (*end == 'i' && end[1] == 'B')
		end += 2;
	else if (*end == 'B')
		end++;
	if (*end == '\0')
		return v;
bad:
	fprintf(stderr, "map_bench: bad number '%s'\n", s);
	exit(2);
}

static const char *fs_name(const char *dir)
{
	struct statfs sf;

	if (statfs(dir, &sf) < 0)
		return "?";
	switch ((unsigned long)sf.f_type) {
	case 0xef53: return "ext4";
	case 0x01021994: return "tmpfs";
	case 0x58465342: return "xfs";
	case 0x9123683e: return "btrfs";
	default: return "other";
	}
}

static void path_of(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", opt.dir, name);
}

/* A new pcow image, opened read-write and mapped. */
struct pimg {
	pcow_image *img;
	pcow_map *map;
	uint8_t *base;
	uint64_t size;
	char path[4096];
};

static void pimg_create(struct pimg *p, const char *name, uint64_t size,
			uint32_t block_size, const char *backing)
{
	struct pcow_create_opts o = {
		.size = size,
		.block_size = block_size,
		.backing_file = backing,
		.backing_format = backing ? PCOW_FORMAT_RAW : PCOW_FORMAT_NONE,
	};

	path_of(p->path, sizeof(p->path), name);
	p->size = size;
	unlink(p->path);
	PCOW_OK(pcow_create(p->path, &o));
	PCOW_OK(pcow_open(&p->img, p->path, 0));
	PCOW_OK(pcow_map_new(&p->map, p->img, 0));
	p->base = pcow_map_addr(p->map);
}

/*
 * Unmaps, empties the file (so that closing does not write back data the
 * benchmark does not need), closes and removes it.
 */
static void pimg_destroy(struct pimg *p)
{
	int fd;

	if (p->map)
		PCOW_OK(pcow_map_delete(&p->map));
	fd = open(p->path, O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		if (ftruncate(fd, 0) < 0)
			die("ftruncate", errno);
		close(fd);
	}
	pcow_close(&p->img);
	unlink(p->path);
}

static uint64_t pimg_vmas(struct pimg *p, struct pcow_map_stats *st)
{
	PCOW_OK(pcow_map_get_stats(p->map, st));
	return st->vmas;
}

/* A raw file of the given size, sparse, mapped MAP_SHARED. */
struct rimg {
	int fd;
	uint8_t *base;
	uint64_t size;
	char path[4096];
};

static void rimg_create(struct rimg *r, const char *name, uint64_t size)
{
	void *p;

	path_of(r->path, sizeof(r->path), name);
	r->size = size;
	unlink(r->path);
	r->fd = open(r->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	SYS_OK(r->fd >= 0, "open raw file");
	SYS_OK(ftruncate(r->fd, (off_t)size) == 0, "ftruncate");
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd, 0);
	SYS_OK(p != MAP_FAILED, "mmap raw file");
	r->base = p;
}

static void rimg_destroy(struct rimg *r)
{
	munmap(r->base, r->size);
	if (ftruncate(r->fd, 0) < 0)
		die("ftruncate", errno);
	close(r->fd);
	unlink(r->path);
}

/* ---- access kernels ----------------------------------------------------- */

/* One 8-byte store per 4 KiB page, blocks in the given order. */
static void touch_pages(uint8_t *base, uint64_t size, uint64_t bs,
			const uint32_t *order, uint64_t nblocks)
{
	uint64_t i, off;

	for (i = 0; i < nblocks; i++) {
		uint64_t start = (uint64_t)order[i] * bs;
		uint64_t end = start + bs < size ? start + bs : size;

		for (off = start; off < end; off += PAGE)
			*(volatile uint64_t *)(base + off) = off | 1;
	}
}

static void touch_all_pages(uint8_t *base, uint64_t size)
{
	uint64_t off;

	for (off = 0; off < size; off += PAGE)
		*(volatile uint64_t *)(base + off) = off | 1;
}

/*
 * Where an access stream is: the random generator's state and the next
 * line of a sequential sweep.  pcow and raw each have their own, started
 * alike, so both see the same addresses in the same order.
 */
struct stream {
	uint64_t seed;
	uint64_t line;
};

#define STREAM_INIT {88172645463325252ull, 0}

/*
 * Allocates every page of two mappings of the same size, 2 MiB at a time
 * in turn.  The memory a mapping gets decides part of its later speed (in
 * an A/A test of two raw files filled one after the other, the second was
 * 3-4% faster to read), so neither side is filled wholly before the other.
 */
static void touch_both(uint8_t *a, uint8_t *b, uint64_t size)
{
	uint64_t chunk, off;

	for (chunk = 0; chunk < size; chunk += 2 * MiB) {
		uint64_t end = chunk + 2 * MiB < size ? chunk + 2 * MiB : size;
		uint8_t *first = (chunk / (2 * MiB)) % 2 ? b : a;
		uint8_t *second = first == a ? b : a;

		for (off = chunk; off < end; off += PAGE)
			*(volatile uint64_t *)(first + off) = off | 1;
		for (off = chunk; off < end; off += PAGE)
			*(volatile uint64_t *)(second + off) = off | 1;
	}
}

static __attribute__((noinline)) uint64_t loads_rand(const uint8_t *base,
						      uint64_t lines, uint64_t ops,
						      struct stream *st)
{
	uint64_t s = st->seed, sum = 0, i;

	for (i = 0; i < ops; i++) {
		const uint64_t *p =
			(const uint64_t *)(base + below(xorshift(&s), lines) * LINE);

		sum += p[0] ^ p[1] ^ p[2] ^ p[3] ^ p[4] ^ p[5] ^ p[6] ^ p[7];
	}
	st->seed = s;
	return sum;
}

static __attribute__((noinline)) void stores_rand(uint8_t *base, uint64_t lines,
						  uint64_t ops, struct stream *st)
{
	uint64_t s = st->seed, i;

	for (i = 0; i < ops; i++) {
		uint64_t x = xorshift(&s);
		uint64_t *p = (uint64_t *)(base + below(x, lines) * LINE);

		p[0] = x; p[1] = i; p[2] = x; p[3] = i;
		p[4] = x; p[5] = i; p[6] = x; p[7] = i;
	}
	st->seed = s;
}

static __attribute__((noinline)) uint64_t loads_seq(const uint8_t *base,
						     uint64_t lines, uint64_t ops,
						     struct stream *st)
{
	uint64_t sum = 0, i, l = st->line;

	for (i = 0; i < ops; i++) {
		const uint64_t *p = (const uint64_t *)(base + l * LINE);

		sum += p[0] ^ p[1] ^ p[2] ^ p[3] ^ p[4] ^ p[5] ^ p[6] ^ p[7];
		if (++l == lines)
			l = 0;
	}
	st->line = l;
	return sum;
}

static __attribute__((noinline)) void stores_seq(uint8_t *base, uint64_t lines,
						 uint64_t ops, struct stream *st)
{
	uint64_t i, l = st->line;

	for (i = 0; i < ops; i++) {
		uint64_t *p = (uint64_t *)(base + l * LINE);

		p[0] = i; p[1] = i; p[2] = i; p[3] = i;
		p[4] = i; p[5] = i; p[6] = i; p[7] = i;
		if (++l == lines)
			l = 0;
	}
	st->line = l;
}

/* ---- table output ------------------------------------------------------- */

static const char *met(bool ok)
{
	return ok ? "yes" : "**no**";
}

/* ---- 1. steady state ---------------------------------------------------- */

enum kernel { K_LOAD_RAND, K_STORE_RAND, K_LOAD_SEQ, K_STORE_SEQ, K_COUNT };

static const char *const kernel_name[K_COUNT] = {
	"random 64 B loads", "random 64 B stores",
	"sequential 64 B loads", "sequential 64 B stores",
};

/*
 * A pass is split into this many chunks, pcow and raw alternating chunk by
 * chunk, so that a burst of outside load lands on both alike.
 */
#define CHUNKS 8

/* One timed chunk; returns seconds, adds the page faults taken to *faults. */
static double steady_chunk(uint8_t *base, uint64_t size, enum kernel k,
			   uint64_t ops, struct stream *st, long *faults)
{
	uint64_t lines = size / LINE;
	long f0 = minflt();
	double t = cpu_now();

	switch (k) {
	case K_LOAD_RAND: sink = loads_rand(base, lines, ops, st); break;
	case K_STORE_RAND: stores_rand(base, lines, ops, st); break;
	case K_LOAD_SEQ: sink = loads_seq(base, lines, ops, st); break;
	case K_STORE_SEQ: stores_seq(base, lines, ops, st); break;
	default: break;
	}
	t = cpu_now() - t;
	*faults += minflt() - f0;
	return t;
}

static void bench_steady(void)
{
	struct pimg p;
	struct rimg r;
	struct pcow_map_stats st;
	double tp[K_COUNT][MAX_REPEATS], tr[K_COUNT][MAX_REPEATS];
	long fp[K_COUNT] = {0}, fr[K_COUNT] = {0};
	unsigned rep, c;
	int k;

	pimg_create(&p, "steady.pcow", opt.size, 0, NULL);
	rimg_create(&r, "steady.raw", opt.size);
	/* Allocate every page of both, then write them back once. */
	touch_both(p.base, r.base, opt.size);
	PCOW_OK(pcow_map_flush(p.map));
	SYS_OK(fdatasync(r.fd) == 0, "fdatasync");
	if (opt.verbose)
		fprintf(stderr, "steady: pcow at %p (%s aligned), raw at %p (%s aligned), vmas %" PRIu64 "\n",
			(void *)p.base, ((uintptr_t)p.base & (2 * MiB - 1)) ? "not 2 MiB" : "2 MiB",
			(void *)r.base, ((uintptr_t)r.base & (2 * MiB - 1)) ? "not 2 MiB" : "2 MiB",
			pimg_vmas(&p, &st));
	for (rep = 0; rep < opt.repeats; rep++)
		for (k = 0; k < K_COUNT; k++) {
			struct stream sp = STREAM_INIT, sr = STREAM_INIT;

			/* Stores start with every page dirty and writable. */
			if (k == K_STORE_RAND || k == K_STORE_SEQ) {
				touch_all_pages(p.base, p.size);
				touch_all_pages(r.base, r.size);
			}
			tp[k][rep] = tr[k][rep] = 0;
			for (c = 0; c < CHUNKS; c++) {
				uint64_t n = opt.ops / CHUNKS + (c < opt.ops % CHUNKS);

				if ((rep + c) % 2 == 0) {
					tp[k][rep] += steady_chunk(p.base, p.size, k, n, &sp, &fp[k]);
					tr[k][rep] += steady_chunk(r.base, r.size, k, n, &sr, &fr[k]);
				} else {
					tr[k][rep] += steady_chunk(r.base, r.size, k, n, &sr, &fr[k]);
					tp[k][rep] += steady_chunk(p.base, p.size, k, n, &sp, &fp[k]);
				}
			}
		}
	pimg_vmas(&p, &st);
	if (opt.verbose)
		for (k = 0; k < K_COUNT; k++) {
			fprintf(stderr, "steady %-24s pcow/raw ms:", kernel_name[k]);
			for (rep = 0; rep < opt.repeats; rep++)
				fprintf(stderr, " %.1f/%.1f", tp[k][rep] * 1e3, tr[k][rep] * 1e3);
			fprintf(stderr, "\n");
		}

	printf("### 1. Steady-state loads and stores\n\n");
	printf("%s image, fully allocated, %" PRIu64 " operations per pass (in %d chunks, pcow and raw alternating),\n"
	       "pcow VMAs: %" PRIu64 ". Throughput in millions of 64 B operations per second of thread CPU time%s;\n"
	       "ratio = pcow / raw throughput (median of the per-repeat ratios).\n\n",
	       SZ(opt.size), opt.ops, CHUNKS, st.vmas, opt.wall ? " (-W: wall clock)" : "");
	printf("| access | pcow Mops/s | raw mmap Mops/s | ratio | per-repeat ratios | goal | met | page faults per pass (pcow / raw) |\n");
	printf("|---|---:|---:|---:|---|---:|:---:|---:|\n");
	for (k = 0; k < K_COUNT; k++) {
		double mp = median(tp[k], opt.repeats), mr = median(tr[k], opt.repeats);
		double ratio = median_ratio(tr[k], tp[k], opt.repeats), lo, hi;

		range_ratio(tr[k], tp[k], opt.repeats, &lo, &hi);
		printf("| %s | %.1f | %.1f | %.3f | %.3f – %.3f | ≥ 0.98 | %s | %.0f / %.0f |\n",
		       kernel_name[k], (double)opt.ops / mp / 1e6,
		       (double)opt.ops / mr / 1e6, ratio, lo, hi, met(ratio >= 0.98),
		       (double)fp[k] / opt.repeats, (double)fr[k] / opt.repeats);
	}
	printf("\n");
	fflush(stdout);
	pimg_destroy(&p);
	rimg_destroy(&r);
}

/* ---- 2. first write ----------------------------------------------------- */

static double first_pcow(uint64_t size, uint32_t bs, const uint32_t *order,
			 uint64_t nblocks, uint64_t *vmas)
{
	struct pimg p;
	struct pcow_map_stats st;
	double t;

	pimg_create(&p, "first.pcow", size, bs, NULL);
	t = cpu_now();
	touch_pages(p.base, size, bs, order, nblocks);
	t = cpu_now() - t;
	*vmas = pimg_vmas(&p, &st);
	pimg_destroy(&p);
	return t;
}

static double first_raw(uint64_t size, uint32_t bs, const uint32_t *order,
			uint64_t nblocks)
{
	struct rimg r;
	double t;

	rimg_create(&r, "first.raw", size);
	t = cpu_now();
	touch_pages(r.base, size, bs, order, nblocks);
	t = cpu_now() - t;
	rimg_destroy(&r);
	return t;
}

static void bench_first(void)
{
	static const uint32_t sizes[] = {4096, 16384, 65536, 2u << 20};
	uint64_t size = opt.first_size, pages = size / PAGE;
	unsigned b, o, rep;

	printf("### 2. First write to unallocated blocks\n\n");
	printf("%s image, one 8-byte store per 4 KiB page (%" PRIu64 " pages), new image / new sparse file each pass\n"
	       "(one untimed raw pass before each row).\n"
	       "Thread CPU time of the whole pass%s; ratio = pcow time / raw time (median of the per-repeat ratios;\n"
	       "lower is better).\n\n",
	       SZ(size), pages, opt.wall ? " (-W: wall clock)" : "");
	printf("| block size | order | pcow ms | raw mmap ms | pcow µs/page | raw µs/page | ratio | per-repeat ratios | goal | met | pcow VMAs after |\n");
	printf("|---:|---|---:|---:|---:|---:|---:|---|---:|:---:|---:|\n");
	for (b = 0; b < sizeof(sizes) / sizeof(sizes[0]); b++)
		for (o = 0; o < 2; o++) {
			uint64_t nblocks = (size + sizes[b] - 1) / sizes[b], vmas = 0;
			uint32_t *order = block_order(nblocks, o == 1);
			double tp[MAX_REPEATS], tr[MAX_REPEATS], mp, mr, ratio, lo, hi;

			/* Untimed: the first pass after a change of pattern is often
			 * slower for whichever side runs it. */
			first_raw(size, sizes[b], order, nblocks);
			for (rep = 0; rep < opt.repeats; rep++) {
				if (rep % 2 == 0) {
					tp[rep] = first_pcow(size, sizes[b], order, nblocks, &vmas);
					tr[rep] = first_raw(size, sizes[b], order, nblocks);
				} else {
					tr[rep] = first_raw(size, sizes[b], order, nblocks);
					tp[rep] = first_pcow(size, sizes[b], order, nblocks, &vmas);
				}
			}
			free(order);
			mp = median(tp, opt.repeats);
			mr = median(tr, opt.repeats);
			ratio = median_ratio(tp, tr, opt.repeats);
			range_ratio(tp, tr, opt.repeats, &lo, &hi);
			if (opt.verbose) {
				fprintf(stderr, "first %u %s pcow/raw ms:", sizes[b], o ? "shuf" : "seq");
				for (rep = 0; rep < opt.repeats; rep++)
					fprintf(stderr, " %.1f/%.1f", tp[rep] * 1e3, tr[rep] * 1e3);
				fprintf(stderr, "\n");
			}
			printf("| %s%s | %s | %.1f | %.1f | %.2f | %.2f | %.3f | %.3f – %.3f | ≤ 1.5 | %s | %" PRIu64 " |\n",
			       SZ(sizes[b]), sizes[b] == PCOW_BLOCK_SIZE_DEFAULT ? " (default)" : "",
			       o ? "shuffled" : "sequential", mp * 1e3, mr * 1e3,
			       mp * 1e6 / (double)pages, mr * 1e6 / (double)pages,
			       ratio, lo, hi, met(ratio <= 1.5), vmas);
			fflush(stdout);
		}
	printf("\n");
}

/* ---- 3. copy-on-write --------------------------------------------------- */

struct cow_result {
	double cow, owned, map_new;
	uint64_t vmas_before, vmas_mid, vmas_after, faults, copied;
	uint64_t wrong;         /* blocks whose inherited content was lost */
};

/* The backing file's content: every 8-byte word holds its offset | 1. */
static uint64_t backing_word(uint64_t off)
{
	return off | 1;
}

/*
 * Checks, after the pass, that every block still holds the backing file's
 * data away from the one word stored to (three probes per block).
 */
static uint64_t cow_verify(const uint8_t *base, uint32_t bs, uint64_t nblocks)
{
	uint64_t b, bad = 0;

	for (b = 0; b < nblocks; b++) {
		uint64_t start = b * bs, probe[3] = {start + 8, start + bs / 2,
						     start + bs - 8};
		int i;

		for (i = 0; i < 3; i++)
			if (*(const uint64_t *)(base + probe[i]) != backing_word(probe[i])) {
				bad++;
				break;
			}
	}
	return bad;
}

static void cow_pass(uint64_t size, uint32_t bs, const uint32_t *order,
		     uint64_t nblocks, struct cow_result *res)
{
	struct pimg p;
	struct pcow_map_stats st;
	uint64_t i, half = nblocks / 2;
	double t, t_mid;

	pimg_create(&p, "cow.pcow", size, bs, "cow-backing.raw");
	res->vmas_before = pimg_vmas(&p, &st);
	/* Copy-up: the first store to each inherited block. */
	t = now();
	for (i = 0; i < nblocks; i++) {
		if (i == half) {
			t_mid = now();
			res->vmas_mid = pimg_vmas(&p, &st);
			t += now() - t_mid;
		}
		*(volatile uint64_t *)(p.base + (uint64_t)order[i] * bs) = i | 1;
	}
	res->cow = now() - t;
	res->vmas_after = pimg_vmas(&p, &st);
	res->faults = st.faults;
	res->copied = st.blocks_copied;
	res->wrong = cow_verify(p.base, bs, nblocks);
	if (opt.verbose && (st.blocks_copied != nblocks || res->wrong))
		fprintf(stderr, "cow %u: %" PRIu64 " stores, %" PRIu64 " blocks copied, %" PRIu64 " allocated, %" PRIu64 " blocks lost their data\n",
			bs, nblocks, st.blocks_copied, st.blocks_allocated, res->wrong);
	/* Baseline: the same stores once every block is owned. */
	PCOW_OK(pcow_map_flush(p.map));
	PCOW_OK(pcow_map_delete(&p.map));
	t = now();
	PCOW_OK(pcow_map_new(&p.map, p.img, 0));
	res->map_new = now() - t;
	p.base = pcow_map_addr(p.map);
	t = now();
	for (i = 0; i < nblocks; i++)
		*(volatile uint64_t *)(p.base + (uint64_t)order[i] * bs) = i | 2;
	res->owned = now() - t;
	pimg_destroy(&p);
}

static void bench_cow(void)
{
	static const uint32_t sizes[] = {4096, 65536, 2u << 20};
	uint64_t backing_size = 0, off;
	unsigned b, o, rep;
	char backing[4096];
	uint8_t *buf;
	int fd;

	for (b = 0; b < sizeof(sizes) / sizeof(sizes[0]); b++) {
		uint64_t n = opt.cow_size / sizes[b];

		if (n > opt.cow_blocks)
			n = opt.cow_blocks;
		if (n * sizes[b] > backing_size)
			backing_size = n * sizes[b];
	}
	/* The backing file: every byte written, not zero. */
	path_of(backing, sizeof(backing), "cow-backing.raw");
	unlink(backing);
	fd = open(backing, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	SYS_OK(fd >= 0, "create backing file");
	buf = malloc(MiB);
	SYS_OK(buf, "malloc");
	for (off = 0; off < backing_size; off += MiB) {
		uint64_t n = backing_size - off < MiB ? backing_size - off : MiB, i;

		for (i = 0; i < n; i += 8)
			*(uint64_t *)(buf + i) = backing_word(off + i);
		SYS_OK(pwrite(fd, buf, n, (off_t)off) == (ssize_t)n, "write backing file");
	}
	SYS_OK(fdatasync(fd) == 0, "fdatasync");
	close(fd);
	free(buf);

	printf("### 3. Copy-on-write from a raw backing file\n\n");
	printf("Raw backing file of %s, fully written. One 8-byte store per block; every block is inherited,\n"
	       "so every store copies one whole block up. Baseline: the same stores after the image owns every block\n"
	       "(flushed, unmapped and mapped again: each store is a first touch of a clean, cached page).\n"
	       "ratio = copy-on-write time / owned time. VMAs: mappings making up the range before, halfway and after.\n"
	       "Blocks copied: the fewest of any repeat; blocks that lost their data: the most of any repeat\n"
	       "(checked after the pass: a block not stored to must still read as the backing file).\n\n",
	       SZ(backing_size));
	printf("| block size | order | stores (one per block) | faults handled | blocks copied | blocks that lost their data | copy-on-write µs/fault | owned µs/store | ratio | VMAs before / halfway / after | pcow_map_new after, ms |\n");
	printf("|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|\n");
	for (b = 0; b < sizeof(sizes) / sizeof(sizes[0]); b++)
		for (o = 0; o < 2; o++) {
			uint64_t nblocks = opt.cow_size / sizes[b];
			uint64_t copied = UINT64_MAX, wrong = 0;
			double tc[MAX_REPEATS], to[MAX_REPEATS], tm[MAX_REPEATS], mc, mo;
			struct cow_result res = {0};
			uint32_t *order;

			if (nblocks > opt.cow_blocks)
				nblocks = opt.cow_blocks;
			order = block_order(nblocks, o == 1);
			for (rep = 0; rep < opt.repeats; rep++) {
				cow_pass(nblocks * sizes[b], sizes[b], order, nblocks, &res);
				tc[rep] = res.cow;
				to[rep] = res.owned;
				tm[rep] = res.map_new;
				if (res.copied < copied)
					copied = res.copied;
				if (res.wrong > wrong)
					wrong = res.wrong;
			}
			free(order);
			mc = median(tc, opt.repeats) / (double)nblocks;
			mo = median(to, opt.repeats) / (double)nblocks;
			printf("| %s | %s | %" PRIu64 " | %" PRIu64 " | %" PRIu64 "%s | %" PRIu64 "%s | %.1f | %.2f | %.0f | %" PRIu64 " / %" PRIu64 " / %" PRIu64 " | %.2f |\n",
			       SZ(sizes[b]), o ? "shuffled" : "sequential", nblocks,
			       res.faults, copied, copied < nblocks ? " **(!)**" : "",
			       wrong, wrong ? " **(!)**" : "", mc * 1e6, mo * 1e6,
			       mc / mo, res.vmas_before, res.vmas_mid, res.vmas_after,
			       median(tm, opt.repeats) * 1e3);
			fflush(stdout);
		}
	printf("\n");
	unlink(backing);
}

/* ---- 4. snapshot creation and open time --------------------------------- */

struct snap_result {
	double open, close, map_owned, snap, map_inherited;
	uint64_t vmas_inherited;
};

static void snap_one(uint64_t data, struct snap_result *res)
{
	char path[4096];
	struct pcow_create_opts o = {.size = opt.size};
	double to[MAX_REPEATS], tc[MAX_REPEATS], tm[MAX_REPEATS];
	double ts[MAX_REPEATS], ti[MAX_REPEATS], t;
	struct pcow_map_stats st;
	pcow_image *img;
	pcow_map *map;
	uint64_t off;
	uint8_t *buf;
	unsigned rep;

	path_of(path, sizeof(path), "snap.pcow");
	unlink(path);
	PCOW_OK(pcow_create(path, &o));
	PCOW_OK(pcow_open(&img, path, 0));
	buf = malloc(MiB);
	SYS_OK(buf, "malloc");
	for (off = 0; off < data; off += MiB) {
		uint64_t i;

		for (i = 0; i < MiB; i += 8)
			*(uint64_t *)(buf + i) = (off + i) | 1;
		PCOW_OK(pcow_write(img, buf, MiB, off));
	}
	free(buf);
	PCOW_OK(pcow_close(&img));

	for (rep = 0; rep < opt.repeats; rep++) {
		t = now();
		PCOW_OK(pcow_open(&img, path, 0));
		to[rep] = now() - t;
		t = now();
		PCOW_OK(pcow_map_new(&map, img, 0));
		tm[rep] = now() - t;
		PCOW_OK(pcow_map_delete(&map));
		t = now();
		PCOW_OK(pcow_close(&img));
		tc[rep] = now() - t;
	}
	PCOW_OK(pcow_open(&img, path, 0));
	for (rep = 0; rep < opt.repeats; rep++) {
		char name[32];

		snprintf(name, sizeof(name), "s%u", rep);
		t = now();
		PCOW_OK(pcow_snapshot_create(img, name));
		ts[rep] = now() - t;
	}
	/* The active layer now inherits all the data. */
	for (rep = 0; rep < opt.repeats; rep++) {
		t = now();
		PCOW_OK(pcow_map_new(&map, img, 0));
		ti[rep] = now() - t;
		PCOW_OK(pcow_map_get_stats(map, &st));
		res->vmas_inherited = st.vmas;
		PCOW_OK(pcow_map_delete(&map));
	}
	PCOW_OK(pcow_close(&img));
	unlink(path);
	res->open = median(to, opt.repeats);
	res->close = median(tc, opt.repeats);
	res->map_owned = median(tm, opt.repeats);
	res->snap = median(ts, opt.repeats);
	res->map_inherited = median(ti, opt.repeats);
}

static void bench_snap(void)
{
	uint64_t data[3] = {0, opt.size / 16 / MiB * MiB, opt.size / 2 / MiB * MiB};
	struct snap_result res[3];
	unsigned i;

	for (i = 0; i < 3; i++)
		snap_one(data[i], &res[i]);
	printf("### 4. Snapshot creation and open time against the data in the image\n\n");
	printf("%s image, %s blocks; data written with pcow_write and flushed. Medians of %u in ms;\n"
	       "snapshot: %u successive pcow_snapshot_create calls; pcow_map_new after the snapshots maps the\n"
	       "inherited data read-only. pcow_close and pcow_snapshot_create end with fdatasync, which on a disk\n"
	       "is most of their time. In parentheses: the time relative to the empty image.\n\n",
	       SZ(opt.size), SZ(PCOW_BLOCK_SIZE_DEFAULT), opt.repeats, opt.repeats);
	printf("| data written | pcow_open | pcow_close | pcow_snapshot_create | pcow_map_new (data owned) | pcow_map_new (data inherited) | VMAs (inherited) |\n");
	printf("|---:|---:|---:|---:|---:|---:|---:|\n");
	for (i = 0; i < 3; i++)
		printf("| %s | %.3f (%.2f) | %.3f (%.2f) | %.3f (%.2f) | %.3f (%.2f) | %.3f (%.2f) | %" PRIu64 " |\n",
		       SZ(data[i]), res[i].open * 1e3, res[i].open / res[0].open,
		       res[i].close * 1e3, res[i].close / res[0].close,
		       res[i].snap * 1e3, res[i].snap / res[0].snap,
		       res[i].map_owned * 1e3, res[i].map_owned / res[0].map_owned,
		       res[i].map_inherited * 1e3,
		       res[i].map_inherited / res[0].map_inherited,
		       res[i].vmas_inherited);
	printf("\n");
	fflush(stdout);
}

/* ---- 5. durable writes -------------------------------------------------- */

/* n durable writes; returns seconds. */
static double durable_chunk(uint8_t *base, uint64_t size, bool rnd,
			    uint64_t n, struct stream *st, pcow_map *map, int fd)
{
	uint64_t lines = size / LINE, i;
	double t = now();

	for (i = 0; i < n; i++) {
		uint64_t l = rnd ? below(xorshift(&st->seed), lines) : st->line;
		uint64_t *p = (uint64_t *)(base + l * LINE);

		if (++st->line == lines)
			st->line = 0;
		p[0] = i; p[1] = i; p[2] = i; p[3] = i;
		p[4] = i; p[5] = i; p[6] = i; p[7] = i;
		if (map)
			PCOW_OK(pcow_map_flush(map));
		else
			SYS_OK(fdatasync(fd) == 0, "fdatasync");
	}
	return now() - t;
}

static void bench_durable(void)
{
	uint64_t size = opt.durable_size;
	struct pimg p;
	struct rimg r;
	unsigned rep, k, c;

	pimg_create(&p, "durable.pcow", size, 0, NULL);
	rimg_create(&r, "durable.raw", size);
	touch_both(p.base, r.base, size);
	PCOW_OK(pcow_map_flush(p.map));
	SYS_OK(fdatasync(r.fd) == 0, "fdatasync");

	printf("### 5. Durable 64 B writes\n\n");
	printf("%s allocated image; each operation is one 64 B store followed by pcow_map_flush (pcow)\n"
	       "or fdatasync (raw mmap); %" PRIu64 " operations per pass. Wall-clock time;\n"
	       "ratio = pcow / raw throughput (median of the per-repeat ratios).\n\n",
	       SZ(size), opt.durable_ops);
	printf("| pattern | pcow µs/op | raw mmap µs/op | pcow ops/s | raw ops/s | ratio | per-repeat ratios |\n");
	printf("|---|---:|---:|---:|---:|---:|---|\n");
	for (k = 0; k < 2; k++) {
		double tp[MAX_REPEATS], tr[MAX_REPEATS], mp, mr, lo, hi;

		for (rep = 0; rep < opt.repeats; rep++) {
			struct stream sp = STREAM_INIT, sr = STREAM_INIT;

			tp[rep] = tr[rep] = 0;
			for (c = 0; c < CHUNKS; c++) {
				uint64_t n = opt.durable_ops / CHUNKS +
					     (c < opt.durable_ops % CHUNKS);

				if ((rep + c) % 2 == 0) {
					tp[rep] += durable_chunk(p.base, size, k, n, &sp, p.map, -1);
					tr[rep] += durable_chunk(r.base, size, k, n, &sr, NULL, r.fd);
				} else {
					tr[rep] += durable_chunk(r.base, size, k, n, &sr, NULL, r.fd);
					tp[rep] += durable_chunk(p.base, size, k, n, &sp, p.map, -1);
				}
			}
		}
		if (opt.verbose) {
			fprintf(stderr, "durable %s pcow/raw ms:", k ? "random" : "sequential");
			for (rep = 0; rep < opt.repeats; rep++)
				fprintf(stderr, " %.1f/%.1f", tp[rep] * 1e3, tr[rep] * 1e3);
			fprintf(stderr, "\n");
		}
		mp = median(tp, opt.repeats) / (double)opt.durable_ops;
		mr = median(tr, opt.repeats) / (double)opt.durable_ops;
		range_ratio(tr, tp, opt.repeats, &lo, &hi);
		printf("| %s | %.2f | %.2f | %.0f | %.0f | %.3f | %.3f – %.3f |\n",
		       k ? "random" : "sequential", mp * 1e6, mr * 1e6, 1 / mp,
		       1 / mr, median_ratio(tr, tp, opt.repeats), lo, hi);
	}
	printf("\n");
	fflush(stdout);
	pimg_destroy(&p);
	rimg_destroy(&r);
}

/* ---- main --------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: map_bench [options]\n"
		"  -d DIR     directory for the image files (default .)\n"
		"  -s SIZE    steady-state and snapshot image size (default 1G)\n"
		"  -f SIZE    first-write image size (default 256M)\n"
		"  -c SIZE    largest copy-on-write image (default 256M)\n"
		"  -b N       at most N blocks copied per copy-on-write pass (default 4096)\n"
		"  -n N       steady-state operations per pass (default 16M)\n"
		"  -D N       durable writes per pass (default 2000)\n"
		"  -r N       repeats per measurement, median reported (default 5, max %d)\n"
		"  -t LIST    tests to run, comma separated: steady,first,cow,snap,durable\n"
		"             (default all)\n"
		"  -v         print every repeat on stderr\n"
		"  -W         time the CPU-bound tests (steady, first) by the wall clock\n"
		"             instead of the thread's CPU time\n",
		MAX_REPEATS);
}

static unsigned parse_tests(char *s)
{
	static const char *const names[] = {"steady", "first", "cow", "snap", "durable"};
	unsigned t = 0, i;
	char *tok;

	for (tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
		for (i = 0; i < 5; i++)
			if (!strcmp(tok, names[i]))
				break;
		if (i == 5) {
			fprintf(stderr, "map_bench: unknown test '%s'\n", tok);
			exit(2);
		}
		t |= 1u << i;
	}
	return t;
}

int main(int argc, char **argv)
{
	struct utsname u;
	int c;

	while ((c = getopt(argc, argv, "d:s:f:c:b:n:D:r:t:vWh")) != -1) {
		switch (c) {
		case 'd': opt.dir = optarg; break;
		case 's': opt.size = parse_size(optarg); break;
		case 'f': opt.first_size = parse_size(optarg); break;
		case 'c': opt.cow_size = parse_size(optarg); break;
		case 'b': opt.cow_blocks = parse_size(optarg); break;
		case 'n': opt.ops = parse_size(optarg); break;
		case 'D': opt.durable_ops = parse_size(optarg); break;
		case 'r': opt.repeats = (unsigned)parse_size(optarg); break;
		case 't': opt.tests = parse_tests(optarg); break;
		case 'v': opt.verbose = true; break;
		case 'W': opt.wall = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc || opt.repeats < 1 || opt.repeats > MAX_REPEATS ||
	    opt.size < 16 * MiB || opt.size % (2 * MiB) || opt.first_size < 2 * MiB ||
	    opt.first_size % (2 * MiB) || opt.cow_size < 2 * MiB ||
	    opt.cow_size % (2 * MiB) || opt.cow_blocks < 2 || opt.ops < 1 ||
	    opt.durable_ops < 1) {
		fprintf(stderr, "map_bench: sizes must be multiples of 2 MiB (steady image at least 16 MiB),\n"
				"counts at least 1 (copy-on-write blocks at least 2), repeats 1 to %d\n",
			MAX_REPEATS);
		usage(stderr);
		return 2;
	}
	if (opt.durable_size > opt.size)
		opt.durable_size = opt.size;
	uname(&u);
	printf("## %s (%s) -- %s\n\n", fs_name(opt.dir), opt.dir, u.release);
	printf("libpcow %d.%d.%d, %ld CPUs, medians of %u repeats.\n\n",
	       PCOW_VERSION_MAJOR, PCOW_VERSION_MINOR, PCOW_VERSION_MICRO,
	       sysconf(_SC_NPROCESSORS_ONLN), opt.repeats);
	fflush(stdout);
	if (opt.tests & T_STEADY)
		bench_steady();
	if (opt.tests & T_FIRST)
		bench_first();
	if (opt.tests & T_COW)
		bench_cow();
	if (opt.tests & T_SNAP)
		bench_snap();
	if (opt.tests & T_DURABLE)
		bench_durable();
	return 0;
}
