/*
 * cow_modes.c -- test 8 of map_bench: what a write fault should copy up.
 *
 * A guest writes 4 KiB pages over an image whose every block is inherited
 * from a raw base image: every page of it in order (a file written out),
 * or one page in 64 at random (scattered updates).  The same writes run
 * with page-sized copies (4 KiB blocks, the prototype's fine-grained
 * copy-on-write), with page copies plus fault-ahead, with 64 KiB copies on
 * 4 KiB blocks, and with whole 64 KiB and 2 MiB blocks; then with kernel
 * copy-on-write (PCOW_MAP_KERNEL_COW: the kernel copies the page at the
 * store, the library writes whole blocks back at the flush).  Every pcow
 * pass ends with a pcow_map_flush, timed apart.  Each is set
 * against the same writes into a new sparse raw file (memory
 * virtualization with no base image), run side by side.  A last row times
 * the kernel mechanism alone (SIGSEGV, pwrite of the page, mmap of the
 * file over it), with no library: the floor of any copy-on-write done by
 * a user-space fault handler.
 */
#include <signal.h>

#include "bench.h"

struct mode {
	const char *name;
	uint32_t block_size;
	uint64_t copy_size;     /* 0: the block size */
	uint64_t ahead;         /* fault-ahead limit */
	unsigned flags;         /* pcow_map_new's */
};

static const struct mode modes[] = {
	{"page copies (4 KiB blocks, fault-ahead off)", 4096, 0, 0, 0},
	{"page copies + fault-ahead (4 KiB blocks, default)", 4096, 0,
	 PCOW_MAP_AHEAD_DEFAULT, 0},
	{"64 KiB copies on 4 KiB blocks", 4096, 64 * KiB, PCOW_MAP_AHEAD_DEFAULT, 0},
	{"whole blocks of 64 KiB (default block size)", 65536, 0,
	 PCOW_MAP_AHEAD_DEFAULT, 0},
	{"whole blocks of 2 MiB", 2u << 20, 0, PCOW_MAP_AHEAD_DEFAULT, 0},
	{"kernel copy-on-write, 4 KiB blocks", 4096, 0, PCOW_MAP_AHEAD_DEFAULT,
	 PCOW_MAP_KERNEL_COW},
	{"kernel copy-on-write, 64 KiB blocks (default block size)", 65536, 0,
	 PCOW_MAP_AHEAD_DEFAULT, PCOW_MAP_KERNEL_COW},
	{"kernel copy-on-write, 2 MiB blocks", 2u << 20, 0, PCOW_MAP_AHEAD_DEFAULT,
	 PCOW_MAP_KERNEL_COW},
};
#define N_MODES (sizeof(modes) / sizeof(modes[0]))
#define FLOOR N_MODES   /* the row of the bare kernel mechanism */

struct pass {
	double wall;
	double flush;           /* the pcow_map_flush after it, without fdatasync */
	double wp_p99, wp_max;  /* write-protect windows of the flush */
	uint64_t faults, copied_bytes, held_bytes, vmas, wrong;
};

/* The word the guest writes at off. */
static uint64_t new_word(uint64_t off)
{
	return off ^ 0x5a5a5a5a00000000ull;
}

static void fill_page(uint8_t *page, uint64_t off)
{
	uint64_t i;

	for (i = 0; i < PAGE; i += 8)
		*(uint64_t *)(page + i) = new_word(off + i);
}

/* Pages written hold the new words, the others the base image's. */
static uint64_t verify(const uint8_t *base, uint64_t size, const bool *written)
{
	uint64_t off, bad = 0;

	for (off = 0; off < size; off += PAGE) {
		uint64_t probe = off + PAGE / 2, word = *(const uint64_t *)(base + probe);

		if (word != (written[off / PAGE] ? new_word(probe) : backing_word(probe)))
			bad++;
	}
	return bad;
}

static void write_pages(uint8_t *base, const uint32_t *pages, uint64_t n,
			const uint8_t *data)
{
	uint64_t i;

	for (i = 0; i < n; i++)
		memcpy(base + (uint64_t)pages[i] * PAGE, data + (uint64_t)pages[i] * PAGE,
		       PAGE);
}

static void pcow_pass(const struct mode *m, uint64_t size, const uint32_t *pages,
		      uint64_t n, const uint8_t *data, const bool *written,
		      struct pass *res)
{
	struct pcow_map_stats st;
	struct flush_cost fc;
	struct pimg p;
	double t;

	pimg_create(&p, "modes.pcow", size, m->block_size, "modes-base.raw", m->flags);
	PCOW_OK(pcow_map_set_copy_size(p.map, m->copy_size, m->ahead));
	t = now();
	write_pages(p.base, pages, n, data);
	res->wall = now() - t;
	PCOW_OK(pcow_map_get_stats(p.map, &st));
	res->faults = st.faults;
	pimg_flush(&p, &fc);
	res->flush = fc.wall - fc.sync;
	res->wp_p99 = fc.wp.p99;
	res->wp_max = fc.wp.max;
	res->vmas = pimg_vmas(&p, &st);
	res->copied_bytes = st.blocks_copied * m->block_size;
	res->held_bytes = st.blocks_allocated * m->block_size;
	res->wrong = verify(p.base, size, written);
	pimg_destroy(&p);
}

static void raw_pass(uint64_t size, const uint32_t *pages, uint64_t n,
		     const uint8_t *data, double *wall)
{
	struct rimg r;
	double t;

	rimg_create(&r, "modes-copy.raw", size);
	t = now();
	write_pages(r.base, pages, n, data);
	*wall = now() - t;
	rimg_destroy(&r);
}

/* ---- the kernel mechanism alone ----------------------------------------- */

static struct {
	uint8_t *base;
	int fd;
	bool failed;
} floor_state;

static void floor_fault(int sig, siginfo_t *info, void *ctx)
{
	uint8_t *page = (uint8_t *)((uintptr_t)info->si_addr & ~(uintptr_t)(PAGE - 1));
	off_t off = page - floor_state.base;

	(void)sig;
	(void)ctx;
	if (pwrite(floor_state.fd, page, PAGE, off) != PAGE ||
	    mmap(page, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
		 floor_state.fd, off) == MAP_FAILED) {
		/* Give the page something writable, so the store can finish. */
		floor_state.failed = true;
		mmap(page, PAGE, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	}
}

/*
 * The base image mapped read-only; each first store to a page faults, and
 * the handler copies that page into a sparse file and maps it there.
 */
static void floor_pass(const char *base_path, uint64_t size, const uint32_t *pages,
		       uint64_t n, const uint8_t *data, struct pass *res)
{
	struct sigaction sa, old;
	char path[4096];
	int bfd;
	double t;
	uint64_t off;

	path_of(path, sizeof(path), "modes-floor.raw");
	unlink(path);
	floor_state.fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	SYS_OK(floor_state.fd >= 0 && ftruncate(floor_state.fd, (off_t)size) == 0,
	       "create floor file");
	bfd = open(base_path, O_RDONLY | O_CLOEXEC);
	SYS_OK(bfd >= 0, "open base image");
	floor_state.base = mmap(NULL, size, PROT_READ, MAP_SHARED, bfd, 0);
	SYS_OK(floor_state.base != MAP_FAILED, "mmap base image");
	close(bfd);
	/* As the library's read-only maps are: every page mapped in. */
	for (off = 0; off < size; off += PAGE)
		sink += floor_state.base[off];
	floor_state.failed = false;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = floor_fault;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	SYS_OK(sigaction(SIGSEGV, &sa, &old) == 0, "sigaction");
	t = now();
	write_pages(floor_state.base, pages, n, data);
	res->wall = now() - t;
	SYS_OK(sigaction(SIGSEGV, &old, NULL) == 0, "sigaction");
	res->faults = n;
	res->copied_bytes = res->held_bytes = n * PAGE;
	res->vmas = vmas_in(floor_state.base, size);
	res->wrong = floor_state.failed;
	munmap(floor_state.base, size);
	if (ftruncate(floor_state.fd, 0) < 0)
		die("ftruncate", errno);
	close(floor_state.fd);
	unlink(path);
}

double kernel_floor_pass(const char *base_path, uint64_t size,
			 const uint32_t *pages, uint64_t n, const uint8_t *data)
{
	struct pass r = {0};

	floor_pass(base_path, size, pages, n, data, &r);
	if (r.wrong)
		die("the kernel mechanism's pass", EIO);
	return r.wall;
}

/* ---- the table ---------------------------------------------------------- */

/* The pages a pattern writes: all in order, or one in 64 at random. */
static uint32_t *pattern_pages(uint64_t npages, bool scattered, uint64_t *n,
			       bool *written)
{
	uint32_t *all = block_order(npages, scattered);
	uint64_t i;

	*n = scattered ? npages / 64 : npages;
	memset(written, 0, npages * sizeof(*written));
	for (i = 0; i < *n; i++)
		written[all[i]] = true;
	return all;
}

void bench_cow_modes(void)
{
	uint64_t size = opt.cow_size < 64 * MiB ? opt.cow_size : 64 * MiB;
	uint64_t npages = size / PAGE, off, n;
	bool *written = malloc(npages * sizeof(*written));
	uint8_t *data = malloc(size);
	char base_path[4096];
	unsigned p, k, rep;
	double load = loadavg();

	SYS_OK(written && data, "malloc");
	for (off = 0; off < size; off += PAGE)
		fill_page(data + off, off);
	path_of(base_path, sizeof(base_path), "modes-base.raw");
	write_backing(base_path, size);

	printf("### 8. What a write fault copies: page, page with fault-ahead, whole block, kernel copy\n\n");
	printf("A base image of %s (raw, fully written, in the page cache) under a new pcow image; the\n"
	       "guest writes 4 KiB pages (memcpy) through the mapping: every page in order, or one page in 64\n"
	       "in random order. Baseline: the same writes into a new sparse raw file mapped MAP_SHARED, run\n"
	       "side by side. Pass: the writes; then one pcow_map_flush, timed apart without its fdatasync\n"
	       "(fault rows: it persists the copy bits; kernel rows, PCOW_MAP_KERNEL_COW: the kernel copied\n"
	       "each page at its store, and the flush writes every block with a copy back into the image,\n"
	       "whole); total = pass + flush. ratio = pcow / baseline (median of the per-repeat ratios).\n"
	       "Faults: signals the library handled; copied: bytes copied up from the base image into the\n"
	       "image; held: bytes the new image's active layer holds after the flush (its blocks);\n"
	       "write-protect: how long a block stayed read-only while written back (kernel rows; see test\n"
	       "3): the 99th percentile of the blocks (median of the repeats) and the longest of any repeat;\n"
	       "wrong: pages not holding what was written or inherited after the flush. The last row\n"
	       "of each pattern is the kernel mechanism alone, without libpcow: a SIGSEGV handler that pwrites\n"
	       "the faulting page into a sparse file and maps it over the read-only page. Load average: %.1f.\n\n",
	       SZ(size), load);
	printf("| pattern | copy-on-write | pass µs per page written | flush µs per page | total µs per page | baseline µs | ratio of the pass | ratio of the total | faults | copied MiB | held MiB | VMAs after | write-protect µs: 99th percentile / longest | wrong |\n");
	printf("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
	for (p = 0; p < 2; p++) {
		uint32_t *pages = pattern_pages(npages, p == 1, &n, written);

		for (k = 0; k <= FLOOR; k++) {
			double tp[MAX_REPEATS], tr[MAX_REPEATS], tf[MAX_REPEATS];
			double tt[MAX_REPEATS], w99[MAX_REPEATS], wp = 0;
			struct pass res = {0}, r;
			uint64_t wrong = 0;

			for (rep = 0; rep < opt.repeats; rep++) {
				if (rep % 2)
					raw_pass(size, pages, n, data, &tr[rep]);
				r = (struct pass){0};
				if (k == FLOOR)
					floor_pass(base_path, size, pages, n, data, &r);
				else
					pcow_pass(&modes[k], size, pages, n, data, written, &r);
				if (rep % 2 == 0)
					raw_pass(size, pages, n, data, &tr[rep]);
				tp[rep] = r.wall;
				tf[rep] = r.flush;
				tt[rep] = r.wall + r.flush;
				w99[rep] = r.wp_p99;
				if (r.wp_max > wp)
					wp = r.wp_max;
				if (r.wrong > wrong)
					wrong = r.wrong;
				res = r;
			}
			printf("| %s | %s | %.1f | ",
			       p ? "1 page in 64, random" : "every page, in order",
			       k == FLOOR ? "*kernel mechanism alone (no library)*" : modes[k].name,
			       median(tp, opt.repeats) * 1e6 / (double)n);
			if (k == FLOOR)
				printf("— | — | %.2f | %.1f | — ", median(tr, opt.repeats) * 1e6 / (double)n,
				       median_ratio(tp, tr, opt.repeats));
			else
				printf("%.1f | %.1f | %.2f | %.1f | %.1f ",
				       median(tf, opt.repeats) * 1e6 / (double)n,
				       median(tt, opt.repeats) * 1e6 / (double)n,
				       median(tr, opt.repeats) * 1e6 / (double)n,
				       median_ratio(tp, tr, opt.repeats),
				       median_ratio(tt, tr, opt.repeats));
			printf("| %" PRIu64 " | %.1f | %.1f | %" PRIu64 " | ", res.faults,
			       MIB(res.copied_bytes), MIB(res.held_bytes), res.vmas);
			if (k < FLOOR && modes[k].flags)
				printf("%.0f / %.0f ", median(w99, opt.repeats) * 1e6, wp * 1e6);
			else
				printf("— ");
			printf("| %" PRIu64 "%s |\n", wrong, wrong ? " **(!)**" : "");
			fflush(stdout);
		}
		free(pages);
	}
	printf("\n");
	unlink(base_path);
	free(written);
	free(data);
}
