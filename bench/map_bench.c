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
 *              (ftruncate) mapped MAP_SHARED, with the same block order;
 *              block sizes 4 KiB to 2 MiB.
 *  3. cow      one 8-byte store per block of an image whose every block is
 *              inherited from a fully written raw backing file (each store
 *              copies one whole block up; in sequential order, with the
 *              default fault-ahead, a fault copies up to 256 KiB, so
 *              4 KiB blocks take fewer faults) vs memcpy of the same blocks, in
 *              the same order, from a mapping of the backing file into a
 *              new sparse raw file mapped MAP_SHARED (and, for reference,
 *              between two buffers in memory).  Both copy-on-write modes:
 *              fault (the default) and kernel (PCOW_MAP_KERNEL_COW, the
 *              kernel copies the page at the store, with no signal); each
 *              pass ends with a pcow_map_flush timed apart, which in kernel
 *              mode writes the copies back (and the time each block stays
 *              write-protected meanwhile, see mprotect() in bench_util.c).
 *              The time the library spends in fdatasync is measured
 *              separately (see fdatasync() in bench_util.c).  Also the
 *              VMAs of the range and a check that no block lost the
 *              backing file's data.
 *  4. open     pcow_open + pcow_map_new of an image whose active layer owns
 *              N blocks of 4 KiB (N up to 1,000,000), and again after a
 *              snapshot, when the active layer inherits them all, vs
 *              open + mmap of the same file as a raw file.
 *  5. snap     pcow_snapshot_create on an image with 1 GiB of allocated
 *              blocks vs one with 16 GiB (64 KiB blocks, 4 KiB of data
 *              written in each: the same number of allocated blocks, a
 *              sixteenth of the bytes), and an empty image.
 *  6. vmas     VMAs of the mapped range after N stores to distinct blocks
 *              in random order: allocate-on-write (no backing file) and
 *              copy-on-write over a fully written raw backing file.
 *  7. durable  a 64 B store followed by pcow_map_flush() vs a 64 B store to
 *              a raw MAP_SHARED mapping followed by fdatasync().
 *  8. cowmodes 4 KiB page writes over a base image with each copy-on-write
 *              granularity (page, page + fault-ahead, whole block) and
 *              with kernel copy-on-write vs the same writes into a sparse
 *              raw file (cow_modes.c).
 *
 * 1 and 2 are CPU-bound and timed by the thread's CPU time, so that time
 * other processes hold the CPU is not counted (-W: wall clock); the others
 * wait for the disk and are timed by the wall clock (3 also reports thread
 * CPU time).  The output is a set of Markdown tables; -o PREFIX also writes
 * the data of the plots (bench/plot.sh) to PREFIX-first.dat, PREFIX-open.dat
 * and PREFIX-vmas.dat.
 */
#include "bench.h"

enum {
	T_STEADY = 1 << 0,
	T_FIRST = 1 << 1,
	T_COW = 1 << 2,
	T_OPEN = 1 << 3,
	T_SNAP = 1 << 4,
	T_VMAS = 1 << 5,
	T_DURABLE = 1 << 6,
	T_COW_MODES = 1 << 7,
	T_ALL = (1 << 8) - 1,
};

static const char *const test_names[] = {
	"steady", "first", "cow", "open", "snap", "vmas", "durable", "cowmodes",
};
#define N_TESTS (sizeof(test_names) / sizeof(test_names[0]))

struct bench_opts opt = {
	.dir = ".",
	.size = 1 * GiB,
	.first_size = 256 * MiB,
	.cow_size = 256 * MiB,
	.cow_blocks = 4096,
	.open_max = 1000000,
	.snap_small = 1 * GiB,
	.snap_large = 16 * GiB,
	.vma_blocks = 65536,
	.ops = 16 * MiB,
	.durable_size = 64 * MiB,
	.durable_ops = 2000,
	.open_cap = 20,
	.repeats = 5,
	.tests = T_ALL,
};

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

	double load = loadavg();

	pimg_create(&p, "steady.pcow", opt.size, 0, NULL, 0);
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
	       "ratio = pcow / raw throughput (median of the per-repeat ratios). Load average at the start: %.1f.\n\n",
	       SZ(opt.size), opt.ops, CHUNKS, st.vmas, opt.wall ? " (-W: wall clock)" : "", load);
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

	pimg_create(&p, "first.pcow", size, bs, NULL, 0);
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

#define FIRST_SIZES 10  /* 4 KiB, 8 KiB, ... 2 MiB */

struct first_row {
	uint32_t bs;
	double pcow, raw, ratio, lo, hi;  /* seconds per pass; ratio of times */
	uint64_t vmas;
};

static void bench_first(void)
{
	uint64_t size = opt.first_size, pages = size / PAGE;
	struct first_row rows[2][FIRST_SIZES];
	unsigned b, o, rep;
	double load = loadavg();
	FILE *dat;

	printf("### 2. First write to unallocated blocks\n\n");
	printf("%s image, one 8-byte store per 4 KiB page (%" PRIu64 " pages), new image / new sparse file each pass\n"
	       "(one untimed raw pass before each row); blocks in sequential or shuffled order, pages in order\n"
	       "inside a block. Thread CPU time of the whole pass%s; ratio = pcow time / raw time (median of\n"
	       "the per-repeat ratios; lower is better). Load average at the start: %.1f.\n\n",
	       SZ(size), pages, opt.wall ? " (-W: wall clock)" : "", load);
	printf("| block size | order | pcow µs/block | raw mmap µs/block | pcow µs/page | raw µs/page | ratio | per-repeat ratios | goal | met | pcow VMAs after |\n");
	printf("|---:|---|---:|---:|---:|---:|---:|---|---:|:---:|---:|\n");
	for (b = 0; b < FIRST_SIZES; b++)
		for (o = 0; o < 2; o++) {
			uint32_t bs = 4096u << b;
			uint64_t nblocks = (size + bs - 1) / bs, vmas = 0;
			uint32_t *order = block_order(nblocks, o == 1);
			double tp[MAX_REPEATS], tr[MAX_REPEATS];
			struct first_row *row = &rows[o][b];

			/* Untimed: the first pass after a change of pattern is often
			 * slower for whichever side runs it. */
			first_raw(size, bs, order, nblocks);
			for (rep = 0; rep < opt.repeats; rep++) {
				if (rep % 2 == 0) {
					tp[rep] = first_pcow(size, bs, order, nblocks, &vmas);
					tr[rep] = first_raw(size, bs, order, nblocks);
				} else {
					tr[rep] = first_raw(size, bs, order, nblocks);
					tp[rep] = first_pcow(size, bs, order, nblocks, &vmas);
				}
			}
			free(order);
			row->bs = bs;
			row->pcow = median(tp, opt.repeats);
			row->raw = median(tr, opt.repeats);
			row->ratio = median_ratio(tp, tr, opt.repeats);
			row->vmas = vmas;
			range_ratio(tp, tr, opt.repeats, &row->lo, &row->hi);
			if (opt.verbose) {
				fprintf(stderr, "first %u %s pcow/raw ms:", bs, o ? "shuf" : "seq");
				for (rep = 0; rep < opt.repeats; rep++)
					fprintf(stderr, " %.1f/%.1f", tp[rep] * 1e3, tr[rep] * 1e3);
				fprintf(stderr, "\n");
			}
			printf("| %s%s | %s | %.2f | %.2f | %.2f | %.2f | %.3f | %.3f – %.3f | ≤ 1.5 | %s | %" PRIu64 " |\n",
			       SZ(bs), bs == PCOW_BLOCK_SIZE_DEFAULT ? " (default)" : "",
			       o ? "shuffled" : "sequential",
			       row->pcow * 1e6 / (double)nblocks, row->raw * 1e6 / (double)nblocks,
			       row->pcow * 1e6 / (double)pages, row->raw * 1e6 / (double)pages,
			       row->ratio, row->lo, row->hi, met(row->ratio <= 1.5), vmas);
			fflush(stdout);
		}
	printf("\n");
	dat = data_file("first");
	if (dat) {
		fprintf(dat, "# first write, %s image; index 0 sequential, index 1 shuffled\n"
			     "# block_bytes pcow_us_per_block raw_us_per_block pcow_us_per_page raw_us_per_page ratio ratio_lo ratio_hi\n",
			SZ(size));
		for (o = 0; o < 2; o++) {
			for (b = 0; b < FIRST_SIZES; b++) {
				struct first_row *row = &rows[o][b];
				double nblocks = (double)((size + row->bs - 1) / row->bs);

				fprintf(dat, "%u %.4f %.4f %.4f %.4f %.4f %.4f %.4f\n", row->bs,
					row->pcow * 1e6 / nblocks, row->raw * 1e6 / nblocks,
					row->pcow * 1e6 / (double)pages, row->raw * 1e6 / (double)pages,
					row->ratio, row->lo, row->hi);
			}
			fprintf(dat, "\n\n");
		}
		fclose(dat);
	}
}

/* ---- 3. copy-on-write --------------------------------------------------- */

/* The two copy-on-write modes of tests 3 and 8 (pcow_map_new's flags). */
static const struct {
	const char *name;
	unsigned flags;
} cow_mode[] = {
	{"fault", 0},
	{"kernel", PCOW_MAP_KERNEL_COW},
};
#define N_COW_MODES (sizeof(cow_mode) / sizeof(cow_mode[0]))

struct cow_result {
	double wall, cpu, flush;        /* the store pass: seconds, in fdatasync */
	uint64_t flushes;               /* fdatasync calls in the pass */
	struct flush_cost sync;         /* the pcow_map_flush after it */
	uint64_t vmas_before, vmas_mid, vmas_pass, vmas_after, faults, copied;
	uint64_t early;                 /* blocks copied into the image in the pass */
	uint64_t wrong;                 /* blocks whose inherited content was lost */
};

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

/*
 * The store pass, then pcow_map_flush (in kernel copy-on-write mode, the
 * write-back of the pass's copies), timed apart.
 */
static void cow_pass(uint64_t size, uint32_t bs, const uint32_t *order,
		     uint64_t nblocks, unsigned flags, struct cow_result *res)
{
	struct pimg p;
	struct pcow_map_stats st;
	uint64_t i, half = nblocks / 2, calls;
	double t, c, f, t_mid, c_mid;

	pimg_create(&p, "cow.pcow", size, bs, "cow-backing.raw", flags);
	res->vmas_before = vmas_in(p.base, size);
	/* Copy-up: the first store to each inherited block. */
	f = flushes.time;
	calls = flushes.calls;
	c = thread_cpu();
	t = now();
	for (i = 0; i < nblocks; i++) {
		if (i == half) {
			/* Not counted: the count of VMAs halfway. */
			t_mid = now();
			c_mid = thread_cpu();
			res->vmas_mid = vmas_in(p.base, size);
			t += now() - t_mid;
			c += thread_cpu() - c_mid;
		}
		*(volatile uint64_t *)(p.base + (uint64_t)order[i] * bs) = i | 1;
	}
	res->wall = now() - t;
	res->cpu = thread_cpu() - c;
	res->flush = flushes.time - f;
	res->flushes = flushes.calls - calls;
	res->vmas_pass = pimg_vmas(&p, &st);
	res->faults = st.faults;
	res->early = st.blocks_copied;
	pimg_flush(&p, &res->sync);
	res->vmas_after = pimg_vmas(&p, &st);
	res->copied = st.blocks_copied;
	res->wrong = cow_verify(p.base, bs, nblocks);
	if (opt.verbose && (st.blocks_copied != nblocks || res->wrong))
		fprintf(stderr, "cow %u %s: %" PRIu64 " stores, %" PRIu64 " blocks copied, %" PRIu64 " allocated, %" PRIu64 " blocks lost their data\n",
			bs, flags ? "kernel" : "fault", nblocks, st.blocks_copied,
			st.blocks_allocated, res->wrong);
	pimg_destroy(&p);
}

/*
 * The baseline: memcpy of the same blocks, in the same order, from a
 * mapping of the backing file (already in memory and mapped, as the
 * library's reads of it are) into a new sparse raw file mapped MAP_SHARED
 * in the same directory.
 */
static void cow_memcpy_file(const uint8_t *src, uint64_t size, uint32_t bs,
			    const uint32_t *order, uint64_t nblocks,
			    double *wall, double *cpu)
{
	struct rimg r;
	uint64_t i;
	double t, c;

	rimg_create(&r, "cow-copy.raw", size);
	c = thread_cpu();
	t = now();
	for (i = 0; i < nblocks; i++) {
		uint64_t off = (uint64_t)order[i] * bs;

		memcpy(r.base + off, src + off, bs);
	}
	*wall = now() - t;
	*cpu = thread_cpu() - c;
	sink = r.base[(uint64_t)order[0] * bs];
	rimg_destroy(&r);
}

/* memcpy of the same blocks between two buffers in memory (all pages mapped). */
static double cow_memcpy_ram(uint8_t *dst, const uint8_t *src, uint32_t bs,
			     const uint32_t *order, uint64_t nblocks)
{
	uint64_t i;
	double t = now();

	for (i = 0; i < nblocks; i++) {
		uint64_t off = (uint64_t)order[i] * bs;

		memcpy(dst + off, src + off, bs);
	}
	t = now() - t;
	sink = dst[(uint64_t)order[0] * bs];
	return t;
}

/*
 * Test 3's 4 KiB rows against the kernel mechanism alone (cow_modes.c),
 * with no library: what any copy-on-write by a user-space fault handler
 * costs here.
 */
static void cow_floor(const char *backing, const uint8_t *src)
{
	uint64_t n = opt.cow_size / PAGE < opt.cow_blocks ? opt.cow_size / PAGE : opt.cow_blocks;
	unsigned o, rep;

	printf("The same 4 KiB copy-ups done by the kernel mechanism alone, with no library: a SIGSEGV\n"
	       "handler that pwrites the faulting page into a new sparse file and maps that file over the\n"
	       "read-only page (bench/cow_modes.c), against the same memcpy, side by side:\n\n");
	printf("| order | mechanism alone µs per copy-up | memcpy file → file µs | ratio |\n");
	printf("|---|---:|---:|---:|\n");
	for (o = 0; o < 2; o++) {
		uint32_t *order = block_order(n, o == 1);
		double fw[MAX_REPEATS], mw[MAX_REPEATS], mc;

		for (rep = 0; rep < opt.repeats; rep++) {
			if (rep % 2)
				cow_memcpy_file(src, n * PAGE, PAGE, order, n, &mw[rep], &mc);
			fw[rep] = kernel_floor_pass(backing, n * PAGE, order, n, src);
			if (rep % 2 == 0)
				cow_memcpy_file(src, n * PAGE, PAGE, order, n, &mw[rep], &mc);
		}
		printf("| %s | %.1f | %.2f | %.1f |\n", o ? "shuffled" : "sequential",
		       median(fw, opt.repeats) * 1e6 / (double)n,
		       median(mw, opt.repeats) * 1e6 / (double)n,
		       median_ratio(fw, mw, opt.repeats));
		free(order);
	}
	printf("\n");
}

/* Per-repeat samples of one copy-on-write mode in one row of test 3. */
struct cow_samples {
	double pass[MAX_REPEATS], cpu[MAX_REPEATS];     /* the store pass */
	double flush[MAX_REPEATS], fcpu[MAX_REPEATS];   /* pcow_map_flush, without fdatasync */
	double sync[MAX_REPEATS];                       /* fdatasync, pass and flush */
	double total[MAX_REPEATS];                      /* pass + flush, without fdatasync */
	double wp_p50[MAX_REPEATS], wp_p99[MAX_REPEATS], wp_max[MAX_REPEATS];
	double wp_mean[MAX_REPEATS], wp_mprotect[MAX_REPEATS], wp_mmap[MAX_REPEATS];
	double syncs;                                   /* fdatasync calls, all repeats */
	uint64_t copied, wrong, early, faults, wp_blocks;
	struct cow_result last;
};

static void cow_sample(struct cow_samples *s, unsigned rep, const struct cow_result *r)
{
	double sync = r->flush + r->sync.sync;

	s->pass[rep] = r->wall;
	s->cpu[rep] = r->cpu;
	s->flush[rep] = r->sync.wall - r->sync.sync;
	s->fcpu[rep] = r->sync.cpu;
	s->sync[rep] = sync;
	s->total[rep] = r->wall + r->sync.wall - sync;
	if (r->sync.wp.n) {
		s->wp_mean[rep] = r->sync.wp.sum / (double)r->sync.wp.n;
		s->wp_mprotect[rep] = r->sync.wp.in_mprotect / (double)r->sync.wp.n;
		s->wp_mmap[rep] = r->sync.wp.in_mmap / (double)r->sync.wp.n;
	}
	s->wp_p50[rep] = r->sync.wp.p50;
	s->wp_p99[rep] = r->sync.wp.p99;
	s->wp_max[rep] = r->sync.wp.max;
	s->syncs += (double)(r->flushes + r->sync.syncs);
	if (rep == 0 || r->copied < s->copied)
		s->copied = r->copied;
	if (r->wrong > s->wrong)
		s->wrong = r->wrong;
	if (r->early > s->early)
		s->early = r->early;
	if (r->faults > s->faults)
		s->faults = r->faults;
	if (r->sync.wp.n > s->wp_blocks)
		s->wp_blocks = r->sync.wp.n;
	s->last = *r;
}

/* The largest of n samples. */
static double most(const double *v, unsigned n)
{
	double m = v[0];
	unsigned i;

	for (i = 1; i < n; i++)
		if (v[i] > m)
			m = v[i];
	return m;
}

#define COW_SIZES 3
#define COW_ROWS (COW_SIZES * 2)

static void bench_cow(void)
{
	static const uint32_t sizes[COW_SIZES] = {4096, 65536, 2u << 20};
	uint64_t backing_size = 0, off, nb[COW_ROWS];
	unsigned b, m, rep, row;
	char backing[4096];
	uint8_t *src, *ram_src, *ram_dst;
	double load = loadavg();
	static struct cow_samples s[COW_ROWS][N_COW_MODES];
	double mw[COW_ROWS][MAX_REPEATS], mc[COW_ROWS][MAX_REPEATS];
	double mr[COW_ROWS][MAX_REPEATS];
	int fd;

	memset(s, 0, sizeof(s));
	for (b = 0; b < COW_SIZES; b++) {
		uint64_t n = opt.cow_size / sizes[b];

		if (n > opt.cow_blocks)
			n = opt.cow_blocks;
		if (n * sizes[b] > backing_size)
			backing_size = n * sizes[b];
	}
	path_of(backing, sizeof(backing), "cow-backing.raw");
	write_backing(backing, backing_size);
	/* The baseline's source: the backing file, mapped and every page
	 * mapped in (the library reads it from the page cache with pread). */
	fd = open(backing, O_RDONLY | O_CLOEXEC);
	SYS_OK(fd >= 0, "open backing file");
	src = mmap(NULL, backing_size, PROT_READ, MAP_SHARED, fd, 0);
	SYS_OK(src != MAP_FAILED, "mmap backing file");
	close(fd);
	for (off = 0; off < backing_size; off += PAGE)
		sink += src[off];
	ram_src = mmap(NULL, backing_size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ram_dst = mmap(NULL, backing_size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	SYS_OK(ram_src != MAP_FAILED && ram_dst != MAP_FAILED, "mmap");
	memcpy(ram_src, src, backing_size);
	memset(ram_dst, 0, backing_size);

	/* Each repeat runs the memcpy and both modes, in an order that
	 * alternates from one repeat to the next. */
	for (row = 0; row < COW_ROWS; row++) {
		uint32_t bs = sizes[row / 2], *order;
		uint64_t n = opt.cow_size / bs;

		if (n > opt.cow_blocks)
			n = opt.cow_blocks;
		nb[row] = n;
		order = block_order(n, row % 2 == 1);
		for (rep = 0; rep < opt.repeats; rep++) {
			if (rep % 2)
				cow_memcpy_file(src, n * bs, bs, order, n, &mw[row][rep],
						&mc[row][rep]);
			for (m = 0; m < N_COW_MODES; m++) {
				unsigned k = rep % 2 ? N_COW_MODES - 1 - m : m;
				struct cow_result r = {0};

				cow_pass(n * bs, bs, order, n, cow_mode[k].flags, &r);
				cow_sample(&s[row][k], rep, &r);
			}
			if (rep % 2 == 0)
				cow_memcpy_file(src, n * bs, bs, order, n, &mw[row][rep],
						&mc[row][rep]);
			mr[row][rep] = cow_memcpy_ram(ram_dst, ram_src, bs, order, n);
		}
		free(order);
		if (opt.verbose)
			for (m = 0; m < N_COW_MODES; m++) {
				fprintf(stderr, "cow %u %s %s pass+flush(sync)/memcpy ms:", bs,
					row % 2 ? "shuf" : "seq", cow_mode[m].name);
				for (rep = 0; rep < opt.repeats; rep++)
					fprintf(stderr, " %.2f+%.2f(%.2f)/%.2f",
						s[row][m].pass[rep] * 1e3,
						s[row][m].flush[rep] * 1e3,
						s[row][m].sync[rep] * 1e3, mw[row][rep] * 1e3);
				fprintf(stderr, "\n");
			}
	}

	printf("### 3. Copy-on-write from a raw backing file\n\n");
	printf("Raw backing file of %s, fully written and in the page cache. One 8-byte store per block, in\n"
	       "sequential or shuffled block order; every block is inherited, so every store copies one whole\n"
	       "block up. Two modes, run side by side: \"fault\" (pcow_map_new's default: inherited blocks\n"
	       "mapped read-only, the first store faults and the library's handler copies the block up; the\n"
	       "map's default copy settings: in sequential order a fault copies up to 256 KiB ahead, see test 8\n"
	       "for each setting on its own) and \"kernel\" (PCOW_MAP_KERNEL_COW: inherited blocks mapped\n"
	       "private and writable, the kernel copies the page at the store, with no signal; the library\n"
	       "writes the copies back into the image at pcow_map_flush). Pass: wall-clock time of the stores\n"
	       "/ blocks. Then one pcow_map_flush, timed apart (fault: it persists the copy bits; kernel: it\n"
	       "writes every copied block back, then persists their bits). fdatasync: wall-clock time of the\n"
	       "fdatasync calls (the library's, counted by the benchmark) in the pass and the flush, per\n"
	       "block, and how many calls; total = pass + flush without fdatasync. Baseline: memcpy of the\n"
	       "same blocks in the same order from a mapping of the backing file (every page mapped) into a\n"
	       "new sparse raw file in the same directory, mapped MAP_SHARED (file → file); for reference,\n"
	       "memcpy between two buffers in memory (RAM → RAM). ratio = pcow / file → file memcpy (median\n"
	       "of the per-repeat ratios), of the pass and of the total; goal: total ≤ 2. Blocks copied: the\n"
	       "fewest of any repeat, after the flush; lost data: blocks not holding the backing file's data\n"
	       "after the flush, the most of any repeat. VMAs: mappings making up the range before, halfway\n"
	       "through and after the pass, and after the flush. Load average at the start: %.1f.\n\n",
	       SZ(backing_size), load);
	printf("| block size | order | mode | blocks / blocks copied / lost data | pass µs | flush µs without fdatasync | fdatasync µs (calls) | total µs | memcpy file → file µs | memcpy RAM → RAM µs | ratio of the pass | ratio of the total | goal | met | VMAs before / halfway / after the pass / after the flush |\n");
	printf("|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|---|\n");
	for (row = 0; row < COW_ROWS; row++)
		for (m = 0; m < N_COW_MODES; m++) {
			const struct cow_samples *c = &s[row][m];
			double n = (double)nb[row], ratio = median_ratio(c->total, mw[row], opt.repeats);

			printf("| %s | %s | %s | %" PRIu64 " / %" PRIu64 "%s / %" PRIu64 "%s | %.1f | %.1f | %.1f (%.2f) | %.1f | %.2f | %.2f | %.1f | %.1f | ≤ 2 | %s | %" PRIu64 " / %" PRIu64 " / %" PRIu64 " / %" PRIu64 " |\n",
			       SZ(sizes[row / 2]), row % 2 ? "shuffled" : "sequential",
			       cow_mode[m].name, nb[row], c->copied,
			       c->copied < nb[row] ? " **(!)**" : "", c->wrong,
			       c->wrong ? " **(!)**" : "",
			       median(c->pass, opt.repeats) * 1e6 / n,
			       median(c->flush, opt.repeats) * 1e6 / n,
			       median(c->sync, opt.repeats) * 1e6 / n,
			       c->syncs / opt.repeats / n,
			       median(c->total, opt.repeats) * 1e6 / n,
			       median(mw[row], opt.repeats) * 1e6 / n,
			       median(mr[row], opt.repeats) * 1e6 / n,
			       median_ratio(c->pass, mw[row], opt.repeats), ratio,
			       met(ratio <= 2), c->last.vmas_before, c->last.vmas_mid,
			       c->last.vmas_pass, c->last.vmas_after);
		}
	printf("\n");
	printf("Kernel mode's write-back (the flush above). Write-back: the flush's wall-clock time without\n"
	       "fdatasync, per block written back. Write-protected: how long each block stays read-only\n"
	       "while it is written back, from the library's mprotect to the mmap that maps it from the\n"
	       "image again (the benchmark defines both functions, the same system calls, and times each\n"
	       "window): the mean, of it the time in those two calls, the median and the 99th percentile\n"
	       "of the blocks of a repeat, the longest of a repeat (each the median of the repeats) and the\n"
	       "longest of any repeat; wall clock, so a window the thread spends preempted counts in full.\n"
	       "A store into such a block waits in the fault handler for that long at most. Faults in the\n"
	       "pass: signals the library handled (none expected); written back in the pass: blocks the\n"
	       "persist thread wrote back before the flush (it runs every %u ms).\n\n",
	       PCOW_MAP_PERSIST_INTERVAL_DEFAULT);
	printf("| block size | order | blocks written back | faults in the pass | written back in the pass | write-back µs per block | flush CPU µs per block | write-protected µs: mean | of it in mprotect / mmap | median | 99th percentile | longest | longest of any repeat |\n");
	printf("|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|\n");
	for (row = 0; row < COW_ROWS; row++)
		for (m = 0; m < N_COW_MODES; m++) {
			const struct cow_samples *c = &s[row][m];
			double n = (double)nb[row];

			if (!cow_mode[m].flags)
				continue;
			printf("| %s | %s | %" PRIu64 " | %" PRIu64 " | %" PRIu64 " | %.1f | %.1f | %.1f | %.1f / %.1f | %.1f | %.1f | %.1f | %.1f |\n",
			       SZ(sizes[row / 2]), row % 2 ? "shuffled" : "sequential",
			       c->wp_blocks, c->faults, c->early,
			       median(c->flush, opt.repeats) * 1e6 / n,
			       median(c->fcpu, opt.repeats) * 1e6 / n,
			       median(c->wp_mean, opt.repeats) * 1e6,
			       median(c->wp_mprotect, opt.repeats) * 1e6,
			       median(c->wp_mmap, opt.repeats) * 1e6,
			       median(c->wp_p50, opt.repeats) * 1e6,
			       median(c->wp_p99, opt.repeats) * 1e6,
			       median(c->wp_max, opt.repeats) * 1e6,
			       most(c->wp_max, opt.repeats) * 1e6);
		}
	printf("\n");
	printf("The same passes by the thread's CPU time (time in the kernel included, time waiting for the\n"
	       "disk or for a CPU not), and the spread of the wall-clock ratios of the total above:\n\n");
	printf("| block size | order | mode | pass CPU µs | flush CPU µs | memcpy file → file CPU µs | ratio of the pass (CPU time) | ratio of pass + flush (CPU time) | per-repeat ratios of the total (wall clock) |\n");
	printf("|---:|---|---|---:|---:|---:|---:|---:|---|\n");
	for (row = 0; row < COW_ROWS; row++)
		for (m = 0; m < N_COW_MODES; m++) {
			const struct cow_samples *c = &s[row][m];
			double n = (double)nb[row], both[MAX_REPEATS], lo, hi;

			for (rep = 0; rep < opt.repeats; rep++)
				both[rep] = c->cpu[rep] + c->fcpu[rep];
			range_ratio(c->total, mw[row], opt.repeats, &lo, &hi);
			printf("| %s | %s | %s | %.1f | %.1f | %.2f | %.1f | %.1f | %.1f – %.1f |\n",
			       SZ(sizes[row / 2]), row % 2 ? "shuffled" : "sequential",
			       cow_mode[m].name, median(c->cpu, opt.repeats) * 1e6 / n,
			       median(c->fcpu, opt.repeats) * 1e6 / n,
			       median(mc[row], opt.repeats) * 1e6 / n,
			       median_ratio(c->cpu, mc[row], opt.repeats),
			       median_ratio(both, mc[row], opt.repeats), lo, hi);
		}
	printf("\n");
	cow_floor(backing, src);
	fflush(stdout);
	munmap(src, backing_size);
	munmap(ram_src, backing_size);
	munmap(ram_dst, backing_size);
	unlink(backing);
}

/* ---- 4. open and map time against the allocated blocks ------------------ */

#define OPEN_BS 4096u
#define OPEN_MAX_ROWS 12

struct open_row {
	uint64_t n, blocks, bytes;      /* asked, counted by pcow_get_info, in the file */
	bool spread;                    /* every k-th block, not the first n */
	double info;                    /* pcow_get_info, once */
	double open, map, both, raw, ratio, lo, hi;     /* owned */
	double i_open, i_map, i_both, snap;             /* inherited */
	unsigned i_reps;
	int i_err;                      /* pcow_map_new failed when inherited */
	uint64_t vmas, i_vmas;
};

/*
 * A new image of opt.open_max blocks of 4 KiB whose active layer owns n of
 * them: the first n blocks, or every (open_max/n)-th block when spread;
 * data written with pcow_write and flushed.
 */
static void open_fill(const char *path, uint64_t n, bool spread)
{
	struct pcow_create_opts o = {.struct_size = sizeof(o), .size = opt.open_max * OPEN_BS, .block_size = OPEN_BS};
	uint64_t stride = n && spread ? opt.open_max / n : 1, i;
	pcow_image *img;
	uint8_t *buf;

	unlink(path);
	PCOW_OK(pcow_create(path, &o));
	PCOW_OK(pcow_open(&img, path, 0));
	buf = malloc(MiB);
	SYS_OK(buf, "malloc");
	for (i = 0; i < MiB; i += 8)
		*(uint64_t *)(buf + i) = i | 1;
	if (stride == 1) {
		uint64_t len = n * OPEN_BS, off;

		for (off = 0; off < len; off += MiB)
			PCOW_OK(pcow_write(img, buf, len - off < MiB ? len - off : MiB, off));
	} else {
		for (i = 0; i < n; i++)
			PCOW_OK(pcow_write(img, buf, OPEN_BS, i * stride * OPEN_BS));
	}
	free(buf);
	PCOW_OK(pcow_flush(img));
	PCOW_OK(pcow_close(&img));
}

/*
 * pcow_open + pcow_map_new; returns the two times and the VMAs, or the
 * error of pcow_map_new.
 */
static int open_pcow(const char *path, double *t_open, double *t_map,
		     uint64_t *vmas)
{
	pcow_image *img;
	pcow_map *map;
	double t = now();
	int ret;

	PCOW_OK(pcow_open(&img, path, 0));
	*t_open = now() - t;
	t = now();
	ret = pcow_map_new(&map, img, 0);
	*t_map = now() - t;
	if (ret == 0) {
		*vmas = vmas_in(pcow_map_addr(map), pcow_map_length(map));
		PCOW_OK(pcow_map_delete(&map));
	} else if (opt.verbose) {
		fprintf(stderr, "map_bench: pcow_map_new: %s\n", pcow_errormsg());
	}
	PCOW_OK(pcow_close(&img));
	return ret;
}

/* The baseline: open + mmap of the same file as a raw file. */
static double open_raw(const char *path, uint64_t len, uint64_t file_off)
{
	double t = now();
	int fd = open(path, O_RDWR | O_CLOEXEC);
	void *p;

	SYS_OK(fd >= 0, "open");
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)file_off);
	SYS_OK(p != MAP_FAILED, "mmap");
	t = now() - t;
	munmap(p, len);
	close(fd);
	return t;
}

static void open_one(struct open_row *row)
{
	double to[MAX_REPEATS], tm[MAX_REPEATS], tb[MAX_REPEATS], tr[MAX_REPEATS];
	double io[MAX_REPEATS], im[MAX_REPEATS], ib[MAX_REPEATS], t, start;
	struct pcow_block_status bst;
	struct pcow_info info = {.struct_size = sizeof(info)};
	uint64_t file_off = 0, len = opt.open_max * OPEN_BS;
	pcow_image *img;
	char path[4096];
	unsigned rep;

	path_of(path, sizeof(path), "open.pcow");
	open_fill(path, row->n, row->spread);
	row->bytes = file_allocated(path);
	PCOW_OK(pcow_open(&img, path, 0));
	t = now();
	PCOW_OK(pcow_get_info(img, &info));
	row->info = now() - t;
	row->blocks = info.allocated_blocks;
	/* The raw baseline maps the active layer's data, where block 0 lies. */
	PCOW_OK(pcow_block_status(img, 0, OPEN_BS, &bst));
	if (bst.file_offset > 0)
		file_off = (uint64_t)bst.file_offset;
	PCOW_OK(pcow_close(&img));

	for (rep = 0; rep < opt.repeats; rep++) {
		if (rep % 2)
			tr[rep] = open_raw(path, len, file_off);
		PCOW_OK(open_pcow(path, &to[rep], &tm[rep], &row->vmas));
		tb[rep] = to[rep] + tm[rep];
		if (rep % 2 == 0)
			tr[rep] = open_raw(path, len, file_off);
	}
	row->open = median(to, opt.repeats);
	row->map = median(tm, opt.repeats);
	row->both = median(tb, opt.repeats);
	row->raw = median(tr, opt.repeats);
	row->ratio = median_ratio(tb, tr, opt.repeats);
	range_ratio(tb, tr, opt.repeats, &row->lo, &row->hi);

	/* A snapshot: the active layer now inherits every block. */
	PCOW_OK(pcow_open(&img, path, 0));
	t = now();
	PCOW_OK(pcow_snapshot_create(img, "base"));
	row->snap = now() - t;
	PCOW_OK(pcow_close(&img));
	start = now();
	row->i_err = 0;
	for (rep = 0; rep < opt.repeats; rep++) {
		row->i_err = open_pcow(path, &io[rep], &im[rep], &row->i_vmas);
		ib[rep] = io[rep] + im[rep];
		/* Slow maps are repeated fewer times (at least 3 or until -C);
		 * a map that fails is not repeated. */
		if (row->i_err || (rep + 1 >= 3 && now() - start > opt.open_cap)) {
			rep++;
			break;
		}
	}
	row->i_reps = rep;
	row->i_open = median(io, rep);
	row->i_map = median(im, rep);
	row->i_both = median(ib, rep);
	if (opt.verbose) {
		fprintf(stderr, "open %" PRIu64 " blocks%s: pcow open+map / raw ms:", row->n,
			row->spread ? " spread" : "");
		for (rep = 0; rep < opt.repeats; rep++)
			fprintf(stderr, " %.3f/%.3f", tb[rep] * 1e3, tr[rep] * 1e3);
		fprintf(stderr, "; inherited:");
		for (rep = 0; rep < row->i_reps; rep++)
			fprintf(stderr, " %.1f", ib[rep] * 1e3);
		fprintf(stderr, "\n");
	}
	empty_file(path);
	unlink(path);
}

static void bench_open(void)
{
	static const uint64_t counts[] = {0, 1000, 10000, 100000, 1000000};
	struct open_row rows[OPEN_MAX_ROWS] = {{0}};
	unsigned i, n = 0;
	double load = loadavg();
	FILE *dat;

	for (i = 0; i < sizeof(counts) / sizeof(counts[0]); i++)
		if (counts[i] <= opt.open_max)
			rows[n++].n = counts[i];
	if (rows[n - 1].n < opt.open_max)
		rows[n++].n = opt.open_max;
	/* Spread: the same counts, every k-th block (k >= 2). */
	for (i = 1; i < sizeof(counts) / sizeof(counts[0]); i++)
		if (counts[i] <= opt.open_max / 2) {
			rows[n].n = counts[i];
			rows[n++].spread = true;
		}
	for (i = 0; i < n; i++)
		open_one(&rows[i]);

	printf("### 4. Opening and mapping against the number of allocated blocks\n\n");
	printf("Image of %s blocks of 4 KiB (%.2f GiB); the active layer owns N of them: the first N blocks\n"
	       "(\"first N\") or every (%s / N)-th block (\"spread\"), written with pcow_write and flushed;\n"
	       "the file is in the page cache. pcow: pcow_open + pcow_map_new (wall clock, medians of %u).\n"
	       "Baseline: open + mmap (MAP_SHARED) of the same file over the same length. ratio = pcow /\n"
	       "baseline. Then one snapshot is taken (its time is given) and the image is opened and mapped\n"
	       "again: the active layer inherits all N blocks, which pcow_map_new maps read-only (medians of\n"
	       "the number of repeats given; slow maps are repeated fewer times). Allocated blocks as counted\n"
	       "by pcow_get_info (and the time that took). Load average at the start: %.1f.\n\n",
	       CNT(opt.open_max), (double)(opt.open_max * OPEN_BS) / (double)GiB, CNT(opt.open_max), opt.repeats, load);
	printf("| layout | allocated blocks | bytes allocated in the file | pcow_open ms | pcow_map_new ms | pcow open + map ms | raw open + mmap ms | ratio | goal | met | snapshot ms | inherited: pcow_open ms | inherited: pcow_map_new ms | inherited: open + map ms (repeats) | met | VMAs owned / inherited | pcow_get_info ms |\n");
	printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|:---:|---:|---:|---:|---:|:---:|---|---:|\n");
	for (i = 0; i < n; i++) {
		struct open_row *r = &rows[i];
		char inh[96], vmas[32];

		if (r->i_err) {
			snprintf(inh, sizeof(inh), "**fails: %s**", strerror(-r->i_err));
			snprintf(vmas, sizeof(vmas), "–");
		} else {
			snprintf(inh, sizeof(inh), "%s", MS(r->i_map));
			snprintf(vmas, sizeof(vmas), "%s", CNT(r->i_vmas));
		}
		printf("| %s | %s | %.1f MiB | %s | %s | %s | %s | %.1f | < 100 ms | %s | %s | %s | %s | %s (%u) | %s | %" PRIu64 " / %s | %s |\n",
		       r->spread ? "spread" : "first N", CNT(r->blocks), MIB(r->bytes),
		       MS(r->open), MS(r->map), MS(r->both), MS(r->raw), r->ratio,
		       met(r->both < 0.1), MS(r->snap), MS(r->i_open), inh,
		       r->i_err ? "–" : MS(r->i_both), r->i_reps,
		       r->i_err ? "–" : met(r->i_both < 0.1), r->vmas, vmas, MS(r->info));
	}
	printf("\n");
	fflush(stdout);
	dat = data_file("open");
	if (dat) {
		fprintf(dat, "# open and map, %s blocks of 4 KiB; index 0 first N blocks, index 1 spread\n"
			     "# blocks open_ms map_ms open_map_ms raw_ms inh_open_ms inh_map_ms inh_open_map_ms inh_vmas get_info_ms\n",
			CNT(opt.open_max));
		for (i = 0; i < n; i++) {
			struct open_row *r = &rows[i];

			if (i && r->spread && !rows[i - 1].spread)
				fprintf(dat, "\n\n");
			if (r->blocks == 0)
				continue;       /* not on a log scale */
			if (r->i_err)
				fprintf(dat, "%" PRIu64 " %.4f %.4f %.4f %.4f NaN NaN NaN NaN %.4f\n",
					r->blocks, r->open * 1e3, r->map * 1e3, r->both * 1e3,
					r->raw * 1e3, r->info * 1e3);
			else
				fprintf(dat, "%" PRIu64 " %.4f %.4f %.4f %.4f %.4f %.4f %.4f %" PRIu64 " %.4f\n",
					r->blocks, r->open * 1e3, r->map * 1e3, r->both * 1e3,
					r->raw * 1e3, r->i_open * 1e3, r->i_map * 1e3,
					r->i_both * 1e3, r->i_vmas, r->info * 1e3);
		}
		fclose(dat);
	}
}

/* ---- 5. snapshot creation against the allocated data -------------------- */

enum { SNAP_EMPTY, SNAP_SMALL, SNAP_LARGE, SNAP_KINDS };

/*
 * A new image of span bytes with 64 KiB blocks; unless empty, 4 KiB of data
 * written (pcow_write) at the start of every block, then flushed.
 */
static pcow_image *snap_image(const char *path, uint64_t span, bool empty)
{
	struct pcow_create_opts o = {.struct_size = sizeof(o), .size = span};
	uint64_t bs = PCOW_BLOCK_SIZE_DEFAULT, off, i;
	pcow_image *img;
	uint8_t buf[PAGE];

	for (i = 0; i < PAGE; i += 8)
		*(uint64_t *)(buf + i) = i | 1;
	unlink(path);
	PCOW_OK(pcow_create(path, &o));
	PCOW_OK(pcow_open(&img, path, 0));
	if (!empty)
		for (off = 0; off < span; off += bs)
			PCOW_OK(pcow_write(img, buf, PAGE, off));
	PCOW_OK(pcow_flush(img));
	return img;
}

static void bench_snap(void)
{
	static const char *const kind_name[SNAP_KINDS] = {"empty", "small", "large"};
	uint64_t span[SNAP_KINDS] = {opt.snap_large, opt.snap_small, opt.snap_large};
	double ts[SNAP_KINDS][MAX_SAMPLES], tf[SNAP_KINDS][MAX_SAMPLES];
	double first[SNAP_KINDS], first_f[SNAP_KINDS], calls[SNAP_KINDS] = {0};
	uint64_t blocks[SNAP_KINDS] = {0}, bytes[SNAP_KINDS] = {0};
	unsigned reps = opt.repeats * 5 > MAX_SAMPLES ? MAX_SAMPLES : opt.repeats * 5;
	char path[SNAP_KINDS][4096];
	pcow_image *img[SNAP_KINDS];
	double load = loadavg(), lo, hi;
	unsigned rep, j, k;

	for (k = 0; k < SNAP_KINDS; k++) {
		struct pcow_info info = {.struct_size = sizeof(info)};

		snprintf(path[k], sizeof(path[k]), "%s/snap-%s.pcow", opt.dir, kind_name[k]);
		img[k] = snap_image(path[k], span[k], k == SNAP_EMPTY);
		PCOW_OK(pcow_get_info(img[k], &info));
		blocks[k] = info.allocated_blocks;
		bytes[k] = file_allocated(path[k]);
	}
	/*
	 * The first round snapshots active layers that hold the data; the
	 * later ones snapshot the (empty) active layers above it, on the same
	 * files.  The order of the three images rotates from round to round.
	 */
	for (rep = 0; rep <= reps; rep++)
		for (j = 0; j < SNAP_KINDS; j++) {
			char name[32];
			double t, f;
			uint64_t c;

			k = (j + rep) % SNAP_KINDS;
			snprintf(name, sizeof(name), "s%u", rep);
			f = flushes.time;
			c = flushes.calls;
			t = now();
			PCOW_OK(pcow_snapshot_create(img[k], name));
			t = now() - t;
			f = flushes.time - f;
			if (rep == 0) {
				first[k] = t;
				first_f[k] = f;
				continue;
			}
			ts[k][rep - 1] = t;
			tf[k][rep - 1] = f;
			calls[k] += (double)(flushes.calls - c);
		}
	for (k = 0; k < SNAP_KINDS; k++) {
		empty_file(path[k]);
		pcow_close(&img[k]);
		unlink(path[k]);
	}

	printf("### 5. Snapshot creation against the allocated data\n\n");
	printf("Images with 64 KiB blocks (the default). \"%s\" and \"%s\": every block of a %s and of a\n"
	       "%s image allocated, with 4 KiB of data written at its start (pcow_write), then flushed:\n"
	       "the block counts of fully written images of those sizes, a sixteenth of the bytes. \"empty\":\n"
	       "a %s image with no data. First snapshot: one pcow_snapshot_create while the active layer\n"
	       "holds the data (one sample). Then %u rounds of pcow_snapshot_create on each image, the order\n"
	       "of the three rotating: medians, of which the time in fdatasync calls; wall clock.\n"
	       "ratio = time / time on the %s image (median of the per-round ratios); goal ≤ 1.2 for the\n"
	       "%s image. Load average at the start: %.1f.\n\n",
	       SZ(opt.snap_small), SZ(opt.snap_large), SZ(opt.snap_small), SZ(opt.snap_large),
	       SZ(opt.snap_large), reps, SZ(opt.snap_small), SZ(opt.snap_large), load);
	printf("| image | allocated blocks | bytes allocated in the file | first snapshot ms (in fdatasync) | pcow_snapshot_create ms | in fdatasync ms (calls) | without fdatasync ms | ratio | per-round ratios | goal | met |\n");
	printf("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|:---:|\n");
	for (k = 0; k < SNAP_KINDS; k++) {
		double tn[MAX_SAMPLES], ratio = median_ratio(ts[k], ts[SNAP_SMALL], reps);

		for (rep = 0; rep < reps; rep++)
			tn[rep] = ts[k][rep] - tf[k][rep];
		range_ratio(ts[k], ts[SNAP_SMALL], reps, &lo, &hi);
		printf("| %s%s | %s | %.1f MiB | %s (%s) | %s | %s (%.1f) | %s | %.2f | %.2f – %.2f | %s | %s |\n",
		       k == SNAP_EMPTY ? "empty " : "", SZ(span[k]), CNT(blocks[k]),
		       MIB(bytes[k]), MS(first[k]), MS(first_f[k]), MS(median(ts[k], reps)),
		       MS(median(tf[k], reps)), calls[k] / reps, MS(median(tn, reps)),
		       ratio, lo, hi, k == SNAP_LARGE ? "≤ 1.2" : "",
		       k == SNAP_LARGE ? met(ratio <= 1.2) : "");
	}
	printf("\n");
	fflush(stdout);
}

/* ---- 6. VMAs after random writes ---------------------------------------- */

#define VMA_MAX_POINTS 256

struct vma_point {
	uint64_t written, vmas;
	double elapsed;         /* wall-clock seconds of stores up to here */
};

/*
 * Stores one word into each of n 4 KiB blocks in the given order, on a new
 * image (over a fully written raw backing file when cow), and records the
 * VMAs of the range at each checkpoint.
 */
static unsigned vma_series(bool cow, const uint32_t *order, uint64_t n,
			   const uint64_t *checks, unsigned nchecks,
			   struct vma_point *pts, struct pcow_map_stats *st)
{
	struct pimg p;
	uint64_t i = 0;
	unsigned c;
	double t = 0, t0;
	char budget[32];

	if (opt.vma_budget) {
		snprintf(budget, sizeof(budget), "%" PRIu64, opt.vma_budget);
		setenv("PCOW_VMA_BUDGET", budget, 1);
	}
	pimg_create(&p, "vmas.pcow", n * PAGE, PAGE, cow ? "vmas-backing.raw" : NULL, 0);
	unsetenv("PCOW_VMA_BUDGET");
	for (c = 0; c < nchecks; c++) {
		t0 = now();
		for (; i < checks[c]; i++)
			*(volatile uint64_t *)(p.base + (uint64_t)order[i] * PAGE) = i | 1;
		t += now() - t0;
		pts[c].written = i;
		pts[c].vmas = vmas_in(p.base, p.size);
		pts[c].elapsed = t;
	}
	PCOW_OK(pcow_map_get_stats(p.map, st));
	pimg_destroy(&p);
	return c;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

static void bench_vmas(void)
{
	uint64_t n = opt.vma_blocks, checks[VMA_MAX_POINTS], v;
	struct vma_point alloc[VMA_MAX_POINTS], cow[VMA_MAX_POINTS];
	struct pcow_map_stats st_alloc, st_cow;
	unsigned nchecks = 0, c, last, max_at = 0;
	double load = loadavg();
	char backing[4096];
	uint32_t *order;
	FILE *dat;

	/* Checkpoints: powers of two and every 64th of the blocks. */
	for (v = 1; v < n; v *= 2)
		checks[nchecks++] = v;
	for (v = 1; v <= 64; v++)
		checks[nchecks++] = n * v / 64;
	qsort(checks, nchecks, sizeof(*checks), cmp_u64);
	for (c = 1, last = 0; c < nchecks; c++)
		if (checks[c] != checks[last] && checks[c] > 0)
			checks[++last] = checks[c];
	nchecks = last + 1;

	order = block_order(n, true);
	path_of(backing, sizeof(backing), "vmas-backing.raw");
	write_backing(backing, n * PAGE);
	vma_series(false, order, n, checks, nchecks, alloc, &st_alloc);
	vma_series(true, order, n, checks, nchecks, cow, &st_cow);
	unlink(backing);
	free(order);
	for (c = 0; c < nchecks; c++)
		if (cow[c].vmas > cow[max_at].vmas)
			max_at = c;

	printf("### 6. VMAs after writes in random order\n\n");
	printf("Image of %s blocks of 4 KiB (%s); one 8-byte store into each block, in one shuffled order,\n"
	       "through the mapping. Allocate-on-write: a new image without a backing file. Copy-on-write:\n"
	       "a new image over a fully written raw backing file (every store copies its block up). VMA\n"
	       "budget: %s. VMAs: mappings making up the range, counted in /proc/self/maps after the given\n"
	       "number of stores; µs per store: wall-clock time of the stores since the previous row.\n"
	       "Load average at the start: %.1f.\n\n",
	       CNT(n), SZ(n * PAGE),
	       opt.vma_budget ? CNT(opt.vma_budget) : "the library's default (24,576)", load);
	printf("| blocks written | allocate-on-write VMAs | copy-on-write VMAs | copy-on-write µs per store |\n");
	printf("|---:|---:|---:|---:|\n");
	for (c = 0, last = 0; c < nchecks; c++) {
		uint64_t w = cow[c].written;
		double dt = cow[c].elapsed - (c ? cow[last].elapsed : 0);
		uint64_t dw = w - (c ? cow[last].written : 0);

		/* Rows at powers of two and at the end; the data file has all. */
		if ((w & (w - 1)) && w != n)
			continue;
		printf("| %s | %" PRIu64 " | %" PRIu64 " | %.1f |\n", CNT(w), alloc[c].vmas,
		       cow[c].vmas, dt * 1e6 / (double)dw);
		last = c;
	}
	printf("\nCopy-on-write: most VMAs at a checkpoint %s (after %s stores); %s faults handled, %s blocks\n"
	       "copied, %.2f s of stores in all. Allocate-on-write: %s faults handled, VMAs at most: %s.\n\n",
	       CNT(cow[max_at].vmas), CNT(cow[max_at].written), CNT(st_cow.faults),
	       CNT(st_cow.blocks_copied), cow[nchecks - 1].elapsed, CNT(st_alloc.faults),
	       CNT(alloc[nchecks - 1].vmas));
	fflush(stdout);
	dat = data_file("vmas");
	if (dat) {
		fprintf(dat, "# VMAs after random writes, %s blocks of 4 KiB, budget %" PRIu64 "\n"
			     "# blocks_written alloc_vmas cow_vmas cow_seconds\n",
			CNT(n), opt.vma_budget ? opt.vma_budget : 24576);
		for (c = 0; c < nchecks; c++)
			fprintf(dat, "%" PRIu64 " %" PRIu64 " %" PRIu64 " %.6f\n", cow[c].written,
				alloc[c].vmas, cow[c].vmas, cow[c].elapsed);
		fclose(dat);
	}
}

/* ---- 7. durable writes -------------------------------------------------- */

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
	unsigned rep, k, c, off;
	double load = loadavg();

	pimg_create(&p, "durable.pcow", size, 0, NULL, 0);
	rimg_create(&r, "durable.raw", size);
	touch_both(p.base, r.base, size);
	PCOW_OK(pcow_map_flush(p.map));
	SYS_OK(fdatasync(r.fd) == 0, "fdatasync");

	printf("### 7. Durable 64 B writes\n\n");
	printf("%s allocated image; each operation is one 64 B store followed by pcow_map_flush (pcow)\n"
	       "or fdatasync (raw mmap); %" PRIu64 " operations per pass. Wall-clock time;\n"
	       "ratio = pcow / raw throughput (median of the per-repeat ratios). Both run in one process:\n"
	       "with the map's default persist interval (%u ms), and with it off (0: no thread of the\n"
	       "library in the process). Load average at the start: %.1f.\n\n",
	       SZ(size), opt.durable_ops, PCOW_MAP_PERSIST_INTERVAL_DEFAULT, load);
	printf("| pattern | persist interval | pcow µs/op | raw mmap µs/op | pcow ops/s | raw ops/s | ratio | per-repeat ratios |\n");
	printf("|---|---|---:|---:|---:|---:|---:|---|\n");
	for (off = 0; off < 2; off++)
	for (k = 0; k < 2; k++) {
		PCOW_OK(pcow_map_set_persist_interval(p.map, off ? 0 : PCOW_MAP_PERSIST_INTERVAL_DEFAULT));
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
		printf("| %s | %s | %.2f | %.2f | %.0f | %.0f | %.3f | %.3f – %.3f |\n",
		       k ? "random" : "sequential", off ? "off" : "default", mp * 1e6, mr * 1e6, 1 / mp,
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
		"  -o PREFIX  also write plot data to PREFIX-first.dat, PREFIX-open.dat,\n"
		"             PREFIX-vmas.dat (see bench/plot.sh)\n"
		"  -s SIZE    steady-state image size (default 1G)\n"
		"  -f SIZE    first-write image size (default 256M)\n"
		"  -c SIZE    largest copy-on-write image (default 256M)\n"
		"  -b N       at most N blocks copied per copy-on-write pass (default 4096)\n"
		"  -N N       most allocated 4 KiB blocks in the open test (default 1000000)\n"
		"  -C SECS    repeat inherited maps of the open test only until SECS have\n"
		"             passed, at least 3 times (default 20)\n"
		"  -S SIZE    larger image of the snapshot test (default 16G; the smaller is 1G)\n"
		"  -V N       4 KiB blocks of the VMA test image (default 65536)\n"
		"  -B N       VMA budget (PCOW_VMA_BUDGET) in the VMA test (default: the library's)\n"
		"  -n N       steady-state operations per pass (default 16M)\n"
		"  -D N       durable writes per pass (default 2000)\n"
		"  -r N       repeats per measurement, median reported (default 5, max %d)\n"
		"  -t LIST    tests to run, comma separated:\n"
		"             steady,first,cow,open,snap,vmas,durable,cowmodes (default all)\n"
		"  -v         print every repeat on stderr\n"
		"  -W         time the CPU-bound tests (steady, first) by the wall clock\n"
		"             instead of the thread's CPU time\n"
		"  -y         map the raw baseline files MAP_SHARED_VALIDATE | MAP_SYNC, as\n"
		"             pcow maps images on a DAX file system (fails elsewhere)\n",
		MAX_REPEATS);
}

static unsigned parse_tests(char *s)
{
	unsigned t = 0, i;
	char *tok;

	for (tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
		for (i = 0; i < N_TESTS; i++)
			if (!strcmp(tok, test_names[i]))
				break;
		if (i == N_TESTS) {
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
	double start = now();
	int c;

	while ((c = getopt(argc, argv, "d:o:s:f:c:b:N:C:S:V:B:n:D:r:t:vWyh")) != -1) {
		switch (c) {
		case 'd': opt.dir = optarg; break;
		case 'o': opt.out = optarg; break;
		case 's': opt.size = parse_size(optarg); break;
		case 'f': opt.first_size = parse_size(optarg); break;
		case 'c': opt.cow_size = parse_size(optarg); break;
		case 'b': opt.cow_blocks = parse_size(optarg); break;
		case 'N': opt.open_max = parse_size(optarg); break;
		case 'C': opt.open_cap = atof(optarg); break;
		case 'S': opt.snap_large = parse_size(optarg); break;
		case 'V': opt.vma_blocks = parse_size(optarg); break;
		case 'B': opt.vma_budget = parse_size(optarg); break;
		case 'n': opt.ops = parse_size(optarg); break;
		case 'D': opt.durable_ops = parse_size(optarg); break;
		case 'r': opt.repeats = (unsigned)parse_size(optarg); break;
		case 't': opt.tests = parse_tests(optarg); break;
		case 'v': opt.verbose = true; break;
		case 'W': opt.wall = true; break;
		case 'y': opt.raw_sync = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc || opt.repeats < 1 || opt.repeats > MAX_REPEATS ||
	    opt.size < 16 * MiB || opt.size % (2 * MiB) || opt.first_size < 2 * MiB ||
	    opt.first_size % (2 * MiB) || opt.cow_size < 2 * MiB ||
	    opt.cow_size % (2 * MiB) || opt.cow_blocks < 2 || opt.ops < 1 ||
	    opt.durable_ops < 1 || opt.open_max < 1 || opt.open_max > UINT32_MAX ||
	    opt.snap_large < opt.snap_small || opt.snap_large % (2 * MiB) ||
	    opt.vma_blocks < 64 || opt.vma_blocks > UINT32_MAX ||
	    (opt.vma_budget && opt.vma_budget < 16)) {
		fprintf(stderr, "map_bench: sizes must be multiples of 2 MiB (steady image at least 16 MiB,\n"
				"larger snapshot image at least 1 GiB), counts at least 1 (copy-on-write blocks at\n"
				"least 2, VMA test blocks at least 64, budget at least 16), repeats 1 to %d\n",
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
	if (opt.raw_sync)
		printf("Raw baselines mapped MAP_SHARED_VALIDATE | MAP_SYNC (-y).\n\n");
	fflush(stdout);
	if (opt.tests & T_STEADY)
		bench_steady();
	if (opt.tests & T_FIRST)
		bench_first();
	if (opt.tests & T_COW)
		bench_cow();
	if (opt.tests & T_OPEN)
		bench_open();
	if (opt.tests & T_SNAP)
		bench_snap();
	if (opt.tests & T_VMAS)
		bench_vmas();
	if (opt.tests & T_DURABLE)
		bench_durable();
	if (opt.tests & T_COW_MODES)
		bench_cow_modes();
	printf("(%s: %.0f s)\n\n", fs_name(opt.dir), now() - start);
	return 0;
}

