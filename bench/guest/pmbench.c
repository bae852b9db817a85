/*
 * pmbench.c -- durable small writes inside the test guest.
 *
 * Built static (gcc -O2 -static) and put into the guest's initrd by
 * bench/guest/run.sh, so that the same program measures every device:
 *
 *   -m mmap  a file on a DAX file system (ext4 -o dax on an NVDIMM), mapped
 *            MAP_SHARED_VALIDATE|MAP_SYNC (MAP_SHARED when the kernel
 *            refuses MAP_SYNC); each write is plain stores followed by clwb
 *            (clflushopt, clflush when the CPU lacks them) of every cache
 *            line written and one sfence.
 *   -m dio   a file (or block device) opened O_RDWR|O_DIRECT|O_DSYNC; each
 *            write is one pwrite.  A 64 B write is a read-modify-write of the
 *            aligned sector around it (-s, 512 B by default): pread of the
 *            sector, 64 B changed, pwrite of the sector.
 *
 * Tests, run in the order given with -T:
 *   first4k  4 KiB sequential writes to pages never written before (run it
 *            on a file just created with -c, before fill); ends at the end
 *            of the file
 *   fill     writes the whole file once and makes it durable (no time
 *            limit; its rate is reported too)
 *   rand64   64 B writes at random 64 B-aligned offsets
 *   rand4k   4 KiB writes at random 4 KiB-aligned offsets
 *   seq4k    4 KiB writes in address order, wrapping at the end of the file
 *
 * Each timed test runs for -t seconds per file (or -n writes per file),
 * in ten slices of a tenth of that time.  With several files, the slices
 * alternate between the files (in an order that rotates from slice to
 * slice), so that every file sees the same share of whatever else the host
 * is doing; each file replays the same sequence of offsets.  Per file and
 * test one line is printed:
 *   RESULT test=rand64 mode=mmap file=F ops=N secs=S ops_per_s=R best_slice_ops_per_s=B
 * where R is over all slices of the file and B is its best whole slice
 * (first4k's last slice is usually cut short); -v adds one SLICE line per
 * slice.
 */
#define _GNU_SOURCE
#include <cpuid.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef MAP_SHARED_VALIDATE
#define MAP_SHARED_VALIDATE 0x03
#endif
#ifndef MAP_SYNC
#define MAP_SYNC 0x80000
#endif
#ifndef STATX_ATTR_DAX
#define STATX_ATTR_DAX 0x00200000
#endif

#define MAX_FILES 8
#define SLICES 10
#define SEED 0x9e3779b97f4a7c15ull

enum flush_kind { FLUSH_CLWB, FLUSH_CLFLUSHOPT, FLUSH_CLFLUSH };
static const char *const flush_names[] = {"clwb", "clflushopt", "clflush"};

struct target {
	const char *path;
	int fd;
	uint8_t *map;
	uint64_t pos, rng;	/* sequential cursor, random state */
	uint64_t ops;		/* writes of the current test */
	double secs, best;	/* time of the current test, best slice rate */
	int done;		/* first4k reached the end of the file */
};

static enum flush_kind flush_kind;
static int use_dio;
static const char *mode_name = "mmap";
static uint64_t size = 64ull << 20;
static uint64_t sector = 512;
static uint8_t *iobuf; /* dio: aligned buffer of 1 MiB */
static struct target targets[MAX_FILES];
static int ntargets;
static int verbose;

static void die(const char *what)
{
	fprintf(stderr, "pmbench: %s: %s\n", what, strerror(errno));
	exit(1);
}

static uint64_t next_rand(uint64_t *s)
{
	/* xorshift64* */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dull;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static enum flush_kind detect_flush(void)
{
	unsigned a, b, c, d;

	if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
		if (b & (1u << 24))
			return FLUSH_CLWB;
		if (b & (1u << 23))
			return FLUSH_CLFLUSHOPT;
	}
	return FLUSH_CLFLUSH;
}

/* Writes back every cache line of [p, p+len), then orders with sfence. */
static inline void persist(const void *p, size_t len)
{
	uintptr_t line = (uintptr_t)p & ~(uintptr_t)63;
	uintptr_t end = (uintptr_t)p + len;

	switch (flush_kind) {
	case FLUSH_CLWB:
		for (; line < end; line += 64)
			__asm__ volatile("clwb (%0)" : : "r"(line) : "memory");
		break;
	case FLUSH_CLFLUSHOPT:
		for (; line < end; line += 64)
			__asm__ volatile("clflushopt (%0)" : : "r"(line) : "memory");
		break;
	case FLUSH_CLFLUSH:
		for (; line < end; line += 64)
			__asm__ volatile("clflush (%0)" : : "r"(line) : "memory");
		break;
	}
	__asm__ volatile("sfence" : : : "memory");
}

static void stamp(uint64_t *w, size_t len, uint64_t seq)
{
	size_t i;

	for (i = 0; i < len / 8; i++)
		w[i] = seq ^ (i * 0x0101010101010101ull);
}

/* One durable write of len bytes (64 or 4096) at off, stamped with seq. */
static void write_one(struct target *tg, uint64_t off, size_t len, uint64_t seq)
{
	if (!use_dio) {
		stamp((uint64_t *)(tg->map + off), len, seq);
		persist(tg->map + off, len);
	} else if (len < sector) {
		/* Read-modify-write of the aligned sector around the 64 B. */
		uint64_t base = off & ~(sector - 1);

		if (pread(tg->fd, iobuf, sector, (off_t)base) != (ssize_t)sector)
			die("pread");
		stamp((uint64_t *)(iobuf + (off - base)), len, seq);
		if (pwrite(tg->fd, iobuf, sector, (off_t)base) != (ssize_t)sector)
			die("pwrite");
	} else {
		stamp((uint64_t *)iobuf, len, seq);
		if (pwrite(tg->fd, iobuf, len, (off_t)off) != (ssize_t)len)
			die("pwrite");
	}
}

/*
 * One slice of a test on one file: writes for `slice` seconds or until
 * max_ops writes of the test are done.
 * kind: 0 rand64, 1 rand4k, 2 seq4k, 3 first4k (sequential, no wrap).
 */
static void run_slice(struct target *tg, int kind, double slice, uint64_t max_ops)
{
	size_t len = kind == 0 ? 64 : 4096;
	uint64_t units = size / len, ops = 0;
	/* mmap writes are short: read the clock every 64 writes only. */
	uint64_t check = use_dio ? 1 : 64;
	double t0 = now(), t = t0;

	if (tg->done)
		return;
	if (kind == 3 && max_ops > units)
		max_ops = units;
	while (tg->ops + ops < max_ops) {
		uint64_t off;

		if (kind <= 1) {
			off = (next_rand(&tg->rng) % units) * len;
		} else {
			off = tg->pos * len;
			tg->pos = tg->pos + 1 == units ? 0 : tg->pos + 1;
		}
		write_one(tg, off, len, tg->ops + ops + 1);
		ops++;
		if (ops % check == 0 && now() - t0 >= slice)
			break;
	}
	t = now();
	tg->ops += ops;
	tg->secs += t - t0;
	/* Only whole slices count for the best rate: the short last slice
	 * of first4k would be timed on a handful of writes. */
	if (t - t0 >= slice && (double)ops / (t - t0) > tg->best)
		tg->best = (double)ops / (t - t0);
	if (verbose)
		printf("SLICE kind=%d file=%s ops=%llu secs=%.3f ops_per_s=%.1f\n",
		       kind, tg->path, (unsigned long long)ops, t - t0,
		       t > t0 ? (double)ops / (t - t0) : 0.0);
	if (tg->ops >= max_ops)
		tg->done = 1;
}

static void report(const char *test, const struct target *tg)
{
	printf("RESULT test=%s mode=%s file=%s ops=%llu secs=%.3f ops_per_s=%.1f"
	       " best_slice_ops_per_s=%.1f\n", test, mode_name, tg->path,
	       (unsigned long long)tg->ops, tg->secs,
	       tg->secs > 0 ? (double)tg->ops / tg->secs : 0.0, tg->best);
	fflush(stdout);
}

static void run_test(const char *name, int kind, double limit, uint64_t max_ops)
{
	int s, i;

	for (i = 0; i < ntargets; i++) {
		struct target *tg = &targets[i];

		tg->pos = 0;
		tg->rng = SEED;
		tg->ops = 0;
		tg->secs = tg->best = 0;
		tg->done = 0;
	}
	for (s = 0; s < SLICES; s++)
		for (i = 0; i < ntargets; i++)
			run_slice(&targets[(i + s) % ntargets], kind, limit / SLICES,
				  max_ops);
	for (i = 0; i < ntargets; i++) {
		struct target *tg = &targets[i];

		/* Shorter than one slice: the whole run is the best slice. */
		if (tg->best == 0 && tg->secs > 0)
			tg->best = (double)tg->ops / tg->secs;
		report(name, tg);
	}
}

/* Writes the whole file once and makes it durable. */
static void fill(struct target *tg)
{
	double t0 = now();
	uint64_t off;

	if (!use_dio) {
		for (off = 0; off < size; off += 2ull << 20) {
			uint64_t n = size - off < (2ull << 20) ? size - off : 2ull << 20;

			memset(tg->map + off, 0x5a, n);
			persist(tg->map + off, n);
		}
		if (msync(tg->map, size, MS_SYNC) < 0)
			die("msync");
	} else {
		memset(iobuf, 0x5a, 1 << 20);
		for (off = 0; off < size; off += 1 << 20) {
			uint64_t n = size - off < (1ull << 20) ? size - off : 1ull << 20;

			if (pwrite(tg->fd, iobuf, n, (off_t)off) != (ssize_t)n)
				die("pwrite (fill)");
		}
	}
	if (fsync(tg->fd) < 0)
		die("fsync");
	tg->ops = size >> 12;
	tg->secs = now() - t0;
	tg->best = 0;
	report("fill", tg);
}

static void open_target(struct target *tg, const char *path, int create)
{
	int flags = O_RDWR | (create ? O_CREAT | O_TRUNC : 0);
	struct stat st;

	if (use_dio)
		flags |= O_DIRECT | O_DSYNC;
	tg->path = path;
	tg->fd = open(path, flags, 0644);
	if (tg->fd < 0)
		die(path);
	if (create) {
		if (fstat(tg->fd, &st) < 0)
			die("fstat");
		if (S_ISREG(st.st_mode) && ftruncate(tg->fd, (off_t)size) < 0)
			die("ftruncate");
	}
	if (use_dio) {
		printf("pmbench: file=%s mode=dio flags=O_DIRECT|O_DSYNC"
		       " rmw_sector=%llu size=%llu\n", path,
		       (unsigned long long)sector, (unsigned long long)size);
	} else {
		const char *how = "MAP_SHARED_VALIDATE|MAP_SYNC";
		struct statx stx;
		int dax = -1;

		tg->map = mmap(NULL, size, PROT_READ | PROT_WRITE,
			       MAP_SHARED_VALIDATE | MAP_SYNC, tg->fd, 0);
		if (tg->map == MAP_FAILED) {
			how = "MAP_SHARED";
			tg->map = mmap(NULL, size, PROT_READ | PROT_WRITE,
				       MAP_SHARED, tg->fd, 0);
			if (tg->map == MAP_FAILED)
				die("mmap");
		}
		if (statx(tg->fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS, &stx) == 0)
			dax = !!(stx.stx_attributes & STATX_ATTR_DAX);
		printf("pmbench: file=%s mode=mmap map=%s flush=%s+sfence dax=%d"
		       " size=%llu\n", path, how, flush_names[flush_kind], dax,
		       (unsigned long long)size);
	}
	fflush(stdout);
}

static uint64_t parse_size(const char *s)
{
	char *end;
	uint64_t v = strtoull(s, &end, 0);

	switch (*end) {
	case 'G': case 'g': v <<= 10; /* fall through */
	case 'M': case 'm': v <<= 10; /* fall through */
	case 'K': case 'k': v <<= 10; break;
	case 0: break;
	default:
		fprintf(stderr, "pmbench: bad size '%s'\n", s);
		exit(2);
	}
	return v;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: pmbench [-m mmap|dio] [-c] [-S SIZE] [-t SECONDS] [-n OPS]\n"
		"               [-s SECTOR] [-T TEST,...] [-v] FILE...\n"
		"tests: first4k fill rand64 rand4k seq4k (default rand64,rand4k,seq4k)\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *tests = "rand64,rand4k,seq4k";
	double limit = 3.0;
	uint64_t max_ops = UINT64_MAX;
	int create = 0, opt, i;
	char *list, *tok, *save;

	while ((opt = getopt(argc, argv, "m:cS:t:n:s:T:v")) != -1) {
		switch (opt) {
		case 'm':
			if (strcmp(optarg, "dio") == 0)
				use_dio = 1;
			else if (strcmp(optarg, "mmap") != 0)
				usage();
			mode_name = use_dio ? "dio" : "mmap";
			break;
		case 'c': create = 1; break;
		case 'S': size = parse_size(optarg); break;
		case 't': limit = atof(optarg); break;
		case 'n': max_ops = strtoull(optarg, NULL, 0); break;
		case 's': sector = parse_size(optarg); break;
		case 'T': tests = optarg; break;
		case 'v': verbose = 1; break;
		default: usage();
		}
	}
	if (optind >= argc || argc - optind > MAX_FILES)
		usage();
	if (size < (2u << 20) || size % 4096 || (sector != 512 && sector != 4096))
		usage();

	if (use_dio) {
		if (posix_memalign((void **)&iobuf, 4096, 1 << 20))
			die("posix_memalign");
		memset(iobuf, 0, 1 << 20);
	} else {
		flush_kind = detect_flush();
	}
	for (i = optind; i < argc; i++)
		open_target(&targets[ntargets++], argv[i], create);

	list = strdup(tests);
	for (tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (strcmp(tok, "fill") == 0)
			for (i = 0; i < ntargets; i++)
				fill(&targets[i]);
		else if (strcmp(tok, "rand64") == 0)
			run_test(tok, 0, limit, max_ops);
		else if (strcmp(tok, "rand4k") == 0)
			run_test(tok, 1, limit, max_ops);
		else if (strcmp(tok, "seq4k") == 0)
			run_test(tok, 2, limit, max_ops);
		else if (strcmp(tok, "first4k") == 0)
			run_test(tok, 3, limit, max_ops);
		else
			usage();
	}
	free(list);
	for (i = 0; i < ntargets; i++) {
		if (!use_dio && munmap(targets[i].map, size) < 0)
			die("munmap");
		if (fsync(targets[i].fd) < 0)
			die("fsync");
		close(targets[i].fd);
	}
	return 0;
}
