/*
 * layout_bench.c - compare pcow block layouts by their first-write cost and
 * the number of VMAs they leave in the mapped range.
 *
 * Build: gcc -O2 -std=gnu11 -Wall -Wextra -Werror -o layout_bench \
 *            layout_bench.c -lpthread
 *
 * Cases (all on files in the directory given with -d):
 *   A  raw baseline: sparse file (ftruncate), one MAP_SHARED mapping of the
 *      whole image; first pass ("A-first") and a second, steady-state pass
 *      ("A-second") over the same pattern.
 *   B  address-congruent sparse region: like A, but the file starts with a
 *      2 MiB header and the image is mapped from file offset 2 MiB.
 *   C  compact allocation + block table: an anonymous PROT_NONE reservation;
 *      the SIGSEGV handler fallocates the next block at the end of the file
 *      and maps it MAP_FIXED|MAP_SHARED over the faulting block.
 *   D  copy-on-write: a fully written lower file mapped PROT_READ over the
 *      range, an address-congruent sparse upper region (file offset 2 MiB +
 *      guest offset).  The SIGSEGV handler copies either the whole block
 *      ("D-block") or only the 4 KiB page ("D-page") with pwrite from the
 *      read-only mapping into the upper region, then maps that block/page of
 *      the upper region MAP_FIXED read-write.
 *
 * Access patterns: "pages" = one 8-byte store per 4 KiB page of every block,
 * "1/blk" = one 8-byte store (at the block start) per block; blocks are
 * visited in sequential or shuffled order (pages within a block in order).
 *
 * Image sizes: A and B use -n, C uses -c, D uses -w (256 MiB each by
 * default, see main()); A also runs at every other size used, so each ratio
 * compares passes over images of the same size.
 *
 * Every (block size, order) group runs all cases back to back; the whole
 * matrix is repeated (-r, default 3) and medians are printed.  Before each
 * timed first pass the filesystem is synced (syncfs) and a warm memory
 * ballast is released (see ballast_hold()); neither is timed.
 *
 * Columns: wall_s / cpu_s = wall-clock and thread CPU seconds of the pass;
 * ratio / cpu_r = those divided by A-first with the same block size, order,
 * pattern and image size; cpu_us/f = CPU microseconds per user-space fault;
 * midVMAs / VMAs = /proc/self/maps entries intersecting the image range
 * after half of the blocks / after the pass; faults = SIGSEGVs handled in
 * user space; kfaults = kernel page faults (minor + major) in the pass.
 * A mapping that fails (e.g. ENOMEM at vm.max_map_count) aborts the pass and
 * is reported as FAIL with the number of faults handled before it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/types.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#define HEADER (2UL << 20)
#define ALIGN (2UL << 20)
#define MAX_BS 16
#define MAX_REPS 15

enum pattern { PAT_PAGES, PAT_BLOCK };
enum order { ORD_SEQ, ORD_SHUF };
enum fmode { FM_NONE, FM_ALLOC, FM_COW_BLOCK, FM_COW_PAGE };
enum kase {
	K_A_FIRST, K_A_SECOND, K_B, K_C, K_D_BLOCK, K_D_PAGE, K_COUNT
};

static const char *const case_name[K_COUNT] = {
	"A-first", "A-second", "B-region", "C-alloc", "D-block", "D-page",
};
static const char *const pat_name[] = { "pages", "1/blk" };
static const char *const ord_name[] = { "seq", "shuf" };

/* State shared with the SIGSEGV handler. */
static struct {
	volatile sig_atomic_t mode;
	char *base;
	size_t len;
	size_t bs;
	int fd;
	off_t next_off;   /* C: next free offset at the end of the file */
	off_t upper_off;  /* D: file offset of the upper region */
	unsigned long faults;
	int err;
	const char *what;
	sigjmp_buf env;
} g;

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void reset_handler(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, NULL);
}

static void fail_in_handler(const char *what, int err)
{
	g.err = err;
	g.what = what;
	g.mode = FM_NONE;
	siglongjmp(g.env, 1);
}

/*
 * -a: give every file mapping MADV_RANDOM and MADV_NOHUGEPAGE, so that a
 * fault brings in one page instead of a read-ahead window of (large) folios.
 * Without it the kernel's defaults apply.
 */
static int advise;

static int advise_range(void *p, size_t len)
{
	if (!advise)
		return 0;
	if (madvise(p, len, MADV_RANDOM) != 0 ||
	    madvise(p, len, MADV_NOHUGEPAGE) != 0)
		return -1;
	return 0;
}

/* Copy len bytes from the (read-only mapped) source into the file. */
static int pwrite_all(int fd, const char *src, size_t len, off_t off)
{
	while (len > 0) {
		ssize_t n = pwrite(fd, src, len, off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		src += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

static void on_segv(int sig, siginfo_t *si, void *uctx)
{
	char *a = si->si_addr;
	char *start;
	size_t len;
	off_t off;

	(void)sig;
	(void)uctx;
	if (g.mode == FM_NONE || a < g.base || a >= g.base + g.len) {
		/* Not ours: let the retried access kill the process. */
		reset_handler();
		return;
	}
	switch (g.mode) {
	case FM_ALLOC:
		start = g.base + (size_t)(a - g.base) / g.bs * g.bs;
		if (fallocate(g.fd, 0, g.next_off, (off_t)g.bs) != 0)
			fail_in_handler("fallocate", errno);
		if (mmap(start, g.bs, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_FIXED, g.fd, g.next_off) == MAP_FAILED)
			fail_in_handler("mmap", errno);
		if (advise_range(start, g.bs) != 0)
			fail_in_handler("madvise", errno);
		g.next_off += (off_t)g.bs;
		break;
	case FM_COW_BLOCK:
	case FM_COW_PAGE:
		len = g.mode == FM_COW_BLOCK ? g.bs : PAGE;
		start = g.base + (size_t)(a - g.base) / len * len;
		off = g.upper_off + (start - g.base);
		if (pwrite_all(g.fd, start, len, off) != 0)
			fail_in_handler("pwrite", errno);
		if (mmap(start, len, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_FIXED, g.fd, off) == MAP_FAILED)
			fail_in_handler("mmap", errno);
		if (advise_range(start, len) != 0)
			fail_in_handler("madvise", errno);
		break;
	default:
		break;
	}
	g.faults++;
}

static void install_handler(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSEGV, &sa, NULL) != 0)
		die("sigaction");
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* CPU time of this thread (user + system, including fault handling). */
static double cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Kernel page faults of this process so far (minor + major). */
static long kernel_faults(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_minflt + ru.ru_majflt;
}

/*
 * Let the filesystem finish work left over from earlier cases (journal
 * commits, freeing and discarding blocks of deleted files) before a pass
 * is timed.  A no-op on tmpfs.
 */
static void settle(int fd)
{
	if (syncfs(fd) != 0)
		die("syncfs");
}

/*
 * Warm memory ballast.  On a VM whose balloon reports free pages to the host,
 * memory that has been free for a couple of seconds must be faulted in again
 * by the host; without care, whichever case first needed more memory than
 * the case before it freed ran up to ten times slower.  So between cases the
 * benchmark holds touched anonymous memory somewhat larger than any pass
 * allocates, releases a bit more than the pass needs just before it (the
 * pass then reuses those pages), and takes it back right after the case
 * (reusing what the case freed).  Huge pages, so that the 2 MiB blocks
 * that large folios come from are warm too.  None of this is timed.
 */
#define BALLAST_CHUNK (64UL << 20)
#define BALLAST_MAX 1024

static char *ballast[BALLAST_MAX];
static size_t ballast_chunks;

/* Make the ballast hold n chunks again (n = 0: as many as before). */
static void ballast_hold(size_t n)
{
	size_t i, off;

	if (n > BALLAST_MAX)
		n = BALLAST_MAX;
	if (n)
		ballast_chunks = n;
	for (i = 0; i < ballast_chunks; i++) {
		char *p;

		if (ballast[i])
			continue;
		p = mmap(NULL, BALLAST_CHUNK, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p == MAP_FAILED)
			return;
		madvise(p, BALLAST_CHUNK, MADV_HUGEPAGE);
		for (off = 0; off < BALLAST_CHUNK; off += PAGE)
			p[off] = 1;
		ballast[i] = p;
	}
}

/* Free enough of the ballast for a pass that allocates about len bytes. */
static void ballast_release(size_t len)
{
	size_t i, n = (len + len / 4) / BALLAST_CHUNK + 1;

	for (i = 0; i < ballast_chunks && n > 0; i++) {
		if (!ballast[i])
			continue;
		munmap(ballast[i], BALLAST_CHUNK);
		ballast[i] = NULL;
		n--;
	}
}

/* Just before every timed first pass. */
static void prepare(int fd, size_t len)
{
	settle(fd);
	ballast_release(len);
}

/* Reserve an ALIGN-aligned PROT_NONE range of len bytes. */
static char *reserve(size_t len)
{
	size_t span = len + ALIGN;
	char *p = mmap(NULL, span, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	char *a;

	if (p == MAP_FAILED)
		die("mmap reserve");
	a = (char *)(((uintptr_t)p + ALIGN - 1) & ~(uintptr_t)(ALIGN - 1));
	if (a > p)
		munmap(p, (size_t)(a - p));
	if (a + len < p + span)
		munmap(a + len, (size_t)(p + span - (a + len)));
	return a;
}

/* Entries of /proc/self/maps intersecting [base, base+len); *total = all. */
static long count_vmas(const char *base, size_t len, long *total)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	long n = 0, all = 0;
	uintptr_t lo = (uintptr_t)base, hi = lo + len;

	if (!f)
		die("/proc/self/maps");
	while (fgets(line, sizeof(line), f)) {
		unsigned long s, e;

		if (!strchr(line, '\n')) {
			int c;

			while ((c = fgetc(f)) != EOF && c != '\n')
				;
		}
		if (sscanf(line, "%lx-%lx", &s, &e) != 2)
			continue;
		all++;
		if (s < hi && e > lo)
			n++;
	}
	fclose(f);
	if (total)
		*total = all;
	return n;
}

static int open_tmp(const char *dir, const char *tag)
{
	char path[4096];
	int fd;

	snprintf(path, sizeof(path), "%s/layout-bench-%s-XXXXXX", dir, tag);
	fd = mkstemp(path);
	if (fd < 0)
		die(path);
	if (unlink(path) != 0)
		die("unlink");
	return fd;
}

static uint64_t rng_state;

static uint64_t rng(void)
{
	uint64_t x = rng_state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

static void make_order(uint32_t *ord, size_t n, enum order o, uint64_t seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		ord[i] = (uint32_t)i;
	if (o == ORD_SEQ)
		return;
	rng_state = seed * 0x9e3779b97f4a7c15ULL + 1;
	for (i = n - 1; i > 0; i--) {
		size_t j = (size_t)(rng() % (i + 1));
		uint32_t t = ord[i];

		ord[i] = ord[j];
		ord[j] = t;
	}
}

static void touch(char *base, const uint32_t *ord, size_t nblocks, size_t bs,
		  enum pattern pat, uint64_t val)
{
	size_t i, off;

	for (i = 0; i < nblocks; i++) {
		char *b = base + (size_t)ord[i] * bs;

		if (pat == PAT_BLOCK) {
			*(volatile uint64_t *)b = val;
			continue;
		}
		for (off = 0; off < bs; off += PAGE)
			*(volatile uint64_t *)(b + off) = val;
	}
}

struct result {
	double sec;
	double cpu;
	long mid_vmas;
	long vmas;
	long total_vmas;
	unsigned long faults;
	long kfaults;
	int failed;
	int err;
	const char *what;
};

struct job {
	const char *dir;
	size_t len;
	size_t bs;
	enum pattern pat;
	const uint32_t *ord;
	uint64_t val;
	int lower_fd;  /* D: fully written lower file of len bytes */
};

/*
 * Run one timed pass of the given fault mode over base.  Returns 0, or -1
 * if the handler gave up (r->failed is set).
 */
static int timed_pass(const struct job *j, char *base, enum fmode mode,
		      struct result *r)
{
	size_t nblocks = j->len / j->bs;
	volatile long mf0;
	volatile double t0, c0;

	g.base = base;
	g.len = j->len;
	g.bs = j->bs;
	g.faults = 0;
	g.err = 0;
	g.what = NULL;
	r->mid_vmas = -1;
	mf0 = kernel_faults();
	c0 = cpu_now();
	t0 = now();
	if (sigsetjmp(g.env, 1)) {
		r->sec = now() - t0;
		r->cpu = cpu_now() - c0;
		r->kfaults = kernel_faults() - mf0;
		r->faults = g.faults;
		r->failed = 1;
		r->err = g.err;
		r->what = g.what;
		return -1;
	}
	g.mode = mode;
	touch(base, j->ord, nblocks / 2, j->bs, j->pat, j->val);
	/* Count VMAs half way through; not part of the timed work. */
	{
		double tp = now(), cp = cpu_now();
		long mp = kernel_faults();

		r->mid_vmas = count_vmas(base, j->len, NULL);
		mf0 += kernel_faults() - mp;
		c0 += cpu_now() - cp;
		t0 += now() - tp;
	}
	touch(base, j->ord + nblocks / 2, nblocks - nblocks / 2, j->bs,
	      j->pat, j->val);
	g.mode = FM_NONE;
	r->sec = now() - t0;
	r->cpu = cpu_now() - c0;
	r->kfaults = kernel_faults() - mf0;
	r->faults = g.faults;
	return 0;
}

/* A and B: sparse file, one mapping; hdr = bytes in front of the image. */
static void run_sparse(const struct job *j, size_t hdr, struct result *first,
		       struct result *second)
{
	int fd = open_tmp(j->dir, hdr ? "region" : "raw");
	char *base = reserve(j->len);

	if (ftruncate(fd, (off_t)(hdr + j->len)) != 0)
		die("ftruncate");
	if (hdr && pwrite_all(fd, "pcow-header", 11, 0) != 0)
		die("pwrite header");
	if (mmap(base, j->len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
		 fd, (off_t)hdr) == MAP_FAILED)
		die("mmap sparse");
	if (advise_range(base, j->len) != 0)
		die("madvise");
	memset(first, 0, sizeof(*first));
	prepare(fd, j->len);
	timed_pass(j, base, FM_NONE, first);
	first->vmas = count_vmas(base, j->len, &first->total_vmas);
	if (second) {
		struct job j2 = *j;

		j2.val = j->val + 1;
		memset(second, 0, sizeof(*second));
		timed_pass(&j2, base, FM_NONE, second);
		second->vmas = count_vmas(base, j->len, &second->total_vmas);
	}
	munmap(base, j->len);
	close(fd);
	ballast_hold(0);
}

/* C: compact allocation at the end of the file, one mmap per block. */
static void run_alloc(const struct job *j, struct result *r)
{
	int fd = open_tmp(j->dir, "alloc");
	char *base = reserve(j->len);
	struct stat st;

	g.fd = fd;
	g.next_off = 0;
	memset(r, 0, sizeof(*r));
	install_handler();
	prepare(fd, j->len);
	timed_pass(j, base, FM_ALLOC, r);
	r->vmas = count_vmas(base, j->len, &r->total_vmas);
	if (!r->failed) {
		if (fstat(fd, &st) != 0)
			die("fstat");
		if ((size_t)st.st_size != r->faults * j->bs ||
		    *(volatile uint64_t *)(base + (size_t)j->ord[0] * j->bs) !=
			    j->val) {
			fprintf(stderr, "C-alloc: verification failed\n");
			exit(1);
		}
	}
	munmap(base, j->len);
	close(fd);
	ballast_hold(0);
}

/* D: copy-on-write from the lower file into the congruent upper region. */
static void run_cow(const struct job *j, enum fmode mode, struct result *r)
{
	int fd = open_tmp(j->dir, mode == FM_COW_BLOCK ? "cowblk" : "cowpg");
	char *base = reserve(j->len);
	size_t b0 = (size_t)j->ord[0] * j->bs;
	uint64_t w[2];

	if (ftruncate(fd, (off_t)(HEADER + j->len)) != 0)
		die("ftruncate");
	if (mmap(base, j->len, PROT_READ, MAP_SHARED | MAP_FIXED, j->lower_fd,
		 0) == MAP_FAILED)
		die("mmap lower");
	if (advise_range(base, j->len) != 0)
		die("madvise");
	g.fd = fd;
	g.upper_off = (off_t)HEADER;
	memset(r, 0, sizeof(*r));
	install_handler();
	prepare(fd, j->len);
	timed_pass(j, base, mode, r);
	r->vmas = count_vmas(base, j->len, &r->total_vmas);
	if (!r->failed) {
		/* The store landed in the upper region next to copied data. */
		if (pread(fd, w, sizeof(w), (off_t)(HEADER + b0)) != sizeof(w) ||
		    w[0] != j->val || w[1] != 0xa5a5a5a5a5a5a5a5ULL) {
			fprintf(stderr, "%s: verification failed\n",
				mode == FM_COW_BLOCK ? "D-block" : "D-page");
			exit(1);
		}
	}
	munmap(base, j->len);
	close(fd);
	ballast_hold(0);
}

static int make_lower(const char *dir, size_t len)
{
	int fd = open_tmp(dir, "lower");
	size_t chunk = 1UL << 20, off;
	char *buf = malloc(chunk);

	if (!buf)
		die("malloc");
	memset(buf, 0xa5, chunk);
	for (off = 0; off < len; off += chunk)
		if (pwrite_all(fd, buf, len - off < chunk ? len - off : chunk,
			       (off_t)off) != 0)
			die("pwrite lower");
	if (fsync(fd) != 0)
		die("fsync lower");
	free(buf);
	return fd;
}

/* ---- result bookkeeping ---- */

struct row {
	enum kase k;
	size_t bs;
	enum order o;
	enum pattern p;
	size_t len;
	int nrep;
	struct result rep[MAX_REPS];
};

static struct row *rows;
static size_t nrows, cap_rows;

static struct row *find_row(enum kase k, size_t bs, enum order o,
			    enum pattern p, size_t len, int create)
{
	size_t i;

	for (i = 0; i < nrows; i++)
		if (rows[i].k == k && rows[i].bs == bs && rows[i].o == o &&
		    rows[i].p == p && rows[i].len == len)
			return &rows[i];
	if (!create)
		return NULL;
	if (nrows == cap_rows) {
		cap_rows = cap_rows ? 2 * cap_rows : 64;
		rows = realloc(rows, cap_rows * sizeof(*rows));
		if (!rows)
			die("realloc");
	}
	memset(&rows[nrows], 0, sizeof(rows[nrows]));
	rows[nrows].k = k;
	rows[nrows].bs = bs;
	rows[nrows].o = o;
	rows[nrows].p = p;
	rows[nrows].len = len;
	return &rows[nrows++];
}

static void record(enum kase k, const struct job *j, enum order o,
		   const struct result *r)
{
	struct row *w = find_row(k, j->bs, o, j->pat, j->len, 1);

	if (w->nrep < MAX_REPS)
		w->rep[w->nrep++] = *r;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static int cmp_long(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;

	return x < y ? -1 : x > y;
}

static double median_sec(const struct row *w, int cpu)
{
	double v[MAX_REPS];
	int i;

	for (i = 0; i < w->nrep; i++)
		v[i] = cpu ? w->rep[i].cpu : w->rep[i].sec;
	qsort(v, (size_t)w->nrep, sizeof(v[0]), cmp_double);
	return w->nrep ? v[w->nrep / 2] : 0;
}

enum field { F_VMAS, F_MID, F_FAULTS, F_KFAULTS, F_TOTAL };

static long median_long(const struct row *w, enum field f)
{
	long v[MAX_REPS];
	int i;

	for (i = 0; i < w->nrep; i++) {
		const struct result *r = &w->rep[i];

		v[i] = f == F_VMAS ? r->vmas :
		       f == F_MID ? r->mid_vmas :
		       f == F_FAULTS ? (long)r->faults :
		       f == F_KFAULTS ? r->kfaults : r->total_vmas;
	}
	qsort(v, (size_t)w->nrep, sizeof(v[0]), cmp_long);
	return w->nrep ? v[w->nrep / 2] : 0;
}

static void fmt_size(char *buf, size_t n, size_t v)
{
	if (v >= (1UL << 30) && v % (1UL << 30) == 0)
		snprintf(buf, n, "%zuG", v >> 30);
	else if (v >= (1UL << 20) && v % (1UL << 20) == 0)
		snprintf(buf, n, "%zuM", v >> 20);
	else
		snprintf(buf, n, "%zuK", v >> 10);
}

static void print_table(void)
{
	size_t i;

	printf("%-9s %5s %-5s %-5s %5s %8s %5s %8s %5s %8s %7s %6s %7s %7s"
	       "  %s\n",
	       "case", "bs", "order", "patt", "image", "wall_s", "ratio",
	       "cpu_s", "cpu_r", "cpu_us/f", "midVMAs", "VMAs", "faults",
	       "kfaults", "note");
	for (i = 0; i < nrows; i++) {
		const struct row *w = &rows[i];
		const struct row *a = find_row(K_A_FIRST, w->bs, w->o, w->p,
					       w->len, 0);
		double s = median_sec(w, 0), as = a ? median_sec(a, 0) : 0;
		double c = median_sec(w, 1), ac = a ? median_sec(a, 1) : 0;
		long faults = median_long(w, F_FAULTS);
		char bs[32], img[32], sec[32], ratio[32], cpu[32], cratio[32];
		char upf[32], mid[32], note[160];
		long midv = median_long(w, F_MID);
		int nfail = 0, k;

		for (k = 0; k < w->nrep; k++)
			nfail += w->rep[k].failed;
		fmt_size(bs, sizeof(bs), w->bs);
		fmt_size(img, sizeof(img), w->len);
		note[0] = 0;
		snprintf(sec, sizeof(sec), "%.4f", s);
		snprintf(cpu, sizeof(cpu), "%.4f", c);
		snprintf(ratio, sizeof(ratio), "-");
		snprintf(cratio, sizeof(cratio), "-");
		snprintf(upf, sizeof(upf), "-");
		if (nfail) {
			const struct result *r = NULL;

			for (k = 0; k < w->nrep; k++)
				if (w->rep[k].failed)
					r = &w->rep[k];
			snprintf(sec, sizeof(sec), "FAIL");
			snprintf(cpu, sizeof(cpu), "FAIL");
			snprintf(note, sizeof(note),
				 "%s: %s after %lu faults (%d/%d runs), "
				 "%ld maps in process",
				 r->what, strerror(r->err), r->faults, nfail,
				 w->nrep, r->total_vmas);
		} else {
			if (a && as > 0 && ac > 0) {
				snprintf(ratio, sizeof(ratio), "%.2f", s / as);
				snprintf(cratio, sizeof(cratio), "%.2f",
					 c / ac);
			}
			if (faults)
				snprintf(upf, sizeof(upf), "%.2f",
					 c * 1e6 / (double)faults);
		}
		if (midv < 0)
			snprintf(mid, sizeof(mid), "-");
		else
			snprintf(mid, sizeof(mid), "%ld", midv);
		printf("%-9s %5s %-5s %-5s %5s %8s %5s %8s %5s %8s %7s %6ld %7ld"
		       " %7ld  %s\n",
		       case_name[w->k], bs, ord_name[w->o], pat_name[w->p], img,
		       sec, ratio, cpu, cratio, upf, mid,
		       median_long(w, F_VMAS), faults,
		       median_long(w, F_KFAULTS), note);
	}
}

/* ---- command line ---- */

static size_t parse_size(const char *s)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 0);

	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	case 't': case 'T': v <<= 40; end++; break;
	default: break;
	}
	if (*end == 'i' && end[1] == 'B')
		end += 2;
	else if (*end == 'B')
		end++;
	if (*end || v == 0) {
		fprintf(stderr, "bad size: %s\n", s);
		exit(2);
	}
	return (size_t)v;
}

static void usage(const char *argv0)
{
	fprintf(stderr,
		"usage: %s [-a] [-d DIR] [-n SIZE] [-c SIZE] [-w SIZE] [-r REPS]\n"
		"          [-b BS[,BS...]] [-o seq|shuf|both] [-k CASES]\n"
		"  -d DIR   directory for the image files (default /tmp)\n"
		"  -n SIZE  image size for A and B (default 256M)\n"
		"  -c SIZE  image size for C (default 256M)\n"
		"  -w SIZE  image size for D (default 256M)\n"
		"  -r REPS  repetitions, median reported (default 3)\n"
		"  -b LIST  block sizes (default 4K,16K,64K,256K,2M)\n"
		"  -o ORDER block orders (default both)\n"
		"  -k CASES subset of BCD to run besides A (default BCD)\n"
		"  -a       MADV_RANDOM + MADV_NOHUGEPAGE on every file mapping\n"
		"A runs at every image size used by another case, so every\n"
		"ratio compares equal sizes.\n",
		argv0);
	exit(2);
}

static const char *fs_name(const char *dir)
{
	struct statfs sf;

	if (statfs(dir, &sf) != 0)
		die(dir);
	switch ((unsigned long)sf.f_type) {
	case 0xEF53: return "ext4/ext2/ext3";
	case 0x01021994: return "tmpfs";
	case 0x58465342: return "xfs";
	case 0x9123683E: return "btrfs";
	default: return "other";
	}
}

static void read_sysctl(const char *path, char *buf, size_t n)
{
	FILE *f = fopen(path, "r");

	snprintf(buf, n, "?");
	if (f) {
		if (fgets(buf, (int)n, f))
			buf[strcspn(buf, "\n")] = 0;
		fclose(f);
	}
}

int main(int argc, char **argv)
{
	const char *dir = "/tmp";
	/*
	 * 256 MiB by default: on the 2-core VM this was written for, the whole
	 * matrix (3 repetitions, ~270 passes plus keeping memory warm between
	 * them) at 1 GiB took over five minutes.  Each size can be raised with
	 * -n/-c/-w; the map-count limit needs -c/-w 1G to show (see run.sh).
	 */
	size_t len_ab = 256UL << 20, len_c = 256UL << 20, len_d = 256UL << 20;
	size_t bss[MAX_BS] = { 4UL << 10, 16UL << 10, 64UL << 10, 256UL << 10,
			       2UL << 20 };
	int nbs = 5, reps = 3, do_seq = 1, do_shuf = 1;
	int do_b = 1, do_c = 1, do_d = 1;
	int opt, rep, bi, oi, pi, lower_fd = -1;
	size_t sizes[3], maxlen;
	int nsizes = 0, si;
	char maxmap[64], kname[160];
	struct utsname un;
	double t_start;
	uint32_t *ord;

	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((opt = getopt(argc, argv, "ad:n:c:w:r:b:o:k:h")) != -1) {
		switch (opt) {
		case 'a': advise = 1; break;
		case 'd': dir = optarg; break;
		case 'n': len_ab = parse_size(optarg); break;
		case 'c': len_c = parse_size(optarg); break;
		case 'w': len_d = parse_size(optarg); break;
		case 'r':
			reps = atoi(optarg);
			if (reps < 1 || reps > MAX_REPS)
				usage(argv[0]);
			break;
		case 'b': {
			char *s = strdup(optarg), *tok, *save = NULL;

			nbs = 0;
			for (tok = strtok_r(s, ",", &save); tok && nbs < MAX_BS;
			     tok = strtok_r(NULL, ",", &save))
				bss[nbs++] = parse_size(tok);
			free(s);
			break;
		}
		case 'o':
			do_seq = !strcmp(optarg, "seq") || !strcmp(optarg, "both");
			do_shuf = !strcmp(optarg, "shuf") || !strcmp(optarg, "both");
			if (!do_seq && !do_shuf)
				usage(argv[0]);
			break;
		case 'k':
			do_b = !!strchr(optarg, 'B');
			do_c = !!strchr(optarg, 'C');
			do_d = !!strchr(optarg, 'D');
			break;
		default:
			usage(argv[0]);
		}
	}
	for (bi = 0; bi < nbs; bi++) {
		if (bss[bi] % PAGE || len_ab % bss[bi] || len_c % bss[bi] ||
		    len_d % bss[bi]) {
			fprintf(stderr, "block size must be a multiple of 4K "
					"dividing every image size\n");
			return 2;
		}
	}

	read_sysctl("/proc/sys/vm/max_map_count", maxmap, sizeof(maxmap));
	uname(&un);
	snprintf(kname, sizeof(kname), "%s %s", un.sysname, un.release);
	printf("# layout_bench: dir=%s (%s), %s, vm.max_map_count=%s\n", dir,
	       fs_name(dir), kname, maxmap);
	printf("# image: A/B %zu MiB, C %zu MiB, D %zu MiB; repetitions %d "
	       "(median); file mappings: %s\n", len_ab >> 20, len_c >> 20,
	       len_d >> 20, reps,
	       advise ? "MADV_RANDOM + MADV_NOHUGEPAGE" : "kernel defaults");
	fflush(stdout);

	sizes[nsizes++] = len_ab;
	if (do_c && len_c != len_ab)
		sizes[nsizes++] = len_c;
	if (do_d && len_d != len_ab && len_d != len_c)
		sizes[nsizes++] = len_d;

	maxlen = len_ab > len_c ? len_ab : len_c;
	if (len_d > maxlen)
		maxlen = len_d;
	ord = malloc(maxlen / PAGE * sizeof(*ord));
	if (!ord)
		die("malloc");
	if (do_d) {
		double t = now();

		lower_fd = make_lower(dir, len_d);
		printf("# lower file for D: %zu MiB written and fsynced in "
		       "%.2f s\n", len_d >> 20, now() - t);
		fflush(stdout);
	}

	ballast_hold((maxlen + maxlen / 4) / BALLAST_CHUNK + 1);

	t_start = now();
	for (rep = 0; rep < reps; rep++) {
		for (bi = 0; bi < nbs; bi++) {
			for (oi = 0; oi < 2; oi++) {
				enum order o = (enum order)oi;

				if ((o == ORD_SEQ && !do_seq) ||
				    (o == ORD_SHUF && !do_shuf))
					continue;
				for (si = 0; si < nsizes; si++) {
					size_t len = sizes[si];
					struct job j = {
						.dir = dir, .len = len,
						.bs = bss[bi], .ord = ord,
						.lower_fd = lower_fd,
						.val = 0x0123456789abcdefULL +
						       (uint64_t)rep,
					};
					struct result r1, r2;

					make_order(ord, len / bss[bi], o,
						   (uint64_t)rep * 131 +
							   (uint64_t)bi);
					for (pi = 0; pi < 2; pi++) {
						j.pat = (enum pattern)pi;
						/* 1/blk only matters for D */
						if (j.pat == PAT_BLOCK &&
						    !(do_d && len == len_d))
							continue;
						run_sparse(&j, 0, &r1,
							   j.pat == PAT_PAGES &&
									   si == 0
								   ? &r2
								   : NULL);
						record(K_A_FIRST, &j, o, &r1);
						if (j.pat == PAT_PAGES && si == 0)
							record(K_A_SECOND, &j, o,
							       &r2);
						if (do_b && si == 0 &&
						    j.pat == PAT_PAGES) {
							run_sparse(&j, HEADER,
								   &r1, NULL);
							record(K_B, &j, o, &r1);
						}
						if (do_c && len == len_c &&
						    j.pat == PAT_PAGES) {
							run_alloc(&j, &r1);
							record(K_C, &j, o, &r1);
						}
						if (do_d && len == len_d) {
							run_cow(&j, FM_COW_BLOCK,
								&r1);
							record(K_D_BLOCK, &j, o,
							       &r1);
							run_cow(&j, FM_COW_PAGE,
								&r1);
							record(K_D_PAGE, &j, o,
							       &r1);
						}
					}
				}
			}
		}
		fprintf(stderr, "# repetition %d/%d done, %.1f s\n", rep + 1,
			reps, now() - t_start);
	}
	reset_handler();
	ballast_release(SIZE_MAX / 2);
	if (lower_fd >= 0)
		close(lower_fd);
	print_table();
	{
		struct rusage ru;

		getrusage(RUSAGE_SELF, &ru);
		printf("# total %.1f s wall; process CPU %.1f s (user %.1f, "
		       "system %.1f) including setup\n", now() - t_start,
		       (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
			       (double)(ru.ru_utime.tv_usec +
					ru.ru_stime.tv_usec) * 1e-6,
		       (double)ru.ru_utime.tv_sec +
			       (double)ru.ru_utime.tv_usec * 1e-6,
		       (double)ru.ru_stime.tv_sec +
			       (double)ru.ru_stime.tv_usec * 1e-6);
	}
	free(ord);
	free(rows);
	return 0;
}
