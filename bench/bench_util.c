/*
 * bench_util.c -- clocks, statistics, image helpers and formatting shared
 * by the benchmarks of map_bench.
 */
#include "bench.h"

volatile uint64_t sink;

void die(const char *what, int err)
{
	fprintf(stderr, "map_bench: %s: %s%s%s\n", what, strerror(err < 0 ? -err : err),
		err < 0 ? " -- " : "", err < 0 ? pcow_errormsg() : "");
	exit(1);
}



double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* The CPU time this thread has used (in the kernel too). */
double thread_cpu(void)
{
	struct timespec t;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/*
 * The clock of the CPU-bound measurements (1, 2): the thread's CPU time, so
 * that time other processes take the CPU away is not counted (-W: wall
 * clock everywhere).
 */
double cpu_now(void)
{
	return opt.wall ? now() : thread_cpu();
}

/*
 * Time spent in fdatasync.  This definition takes the place of the C
 * library's for the whole process, libpcow's calls included (the
 * executable's symbol comes first in the dynamic linker's search), so a
 * copy-up or a snapshot can be split into its flushes and the rest.  It
 * makes the same system call as the C library does.
 */

struct flush_count flushes;

int fdatasync(int fd)
{
	double t = now();
	long ret = syscall(SYS_fdatasync, fd);

	flushes.time += now() - t;
	flushes.calls++;
	return (int)ret;
}

/*
 * Write-protect windows of a kernel copy-on-write write-back (bench.h,
 * struct wprot_count).  The library writes a block back between an
 * mprotect(PROT_READ) of it and the mmap that maps the active region over
 * it (map_fault.c, own_range); these two definitions take the place of the
 * C library's as fdatasync's does (libpcow calls mmap64), make the same
 * system calls, and time that window while pimg_flush has them armed.
 * Outside it they only test a flag, in the fault handler too.
 */
struct wprot_count wprot;
/* The windows of one flush, for their percentiles (the first WPROT_MAX). */
#define WPROT_MAX 65536
static double wprot_window[WPROT_MAX];

int mprotect(void *addr, size_t len, int prot)
{
	bool watch = wprot.armed && prot == PROT_READ;
	double t = watch ? now() : 0;
	int ret = (int)syscall(SYS_mprotect, addr, len, prot);

	if (watch) {
		wprot.addr = addr;
		wprot.start = t;
		wprot.in_mprotect += now() - t;
	}
	return ret;
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	bool watch = wprot.addr && addr == wprot.addr && (flags & MAP_FIXED);
	double t = watch ? now() : 0;
	void *p = (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);

	if (watch) {
		double end = now(), d = end - wprot.start;

		wprot.in_mmap += end - t;
		if (wprot.n < WPROT_MAX)
			wprot_window[wprot.n] = d;
		wprot.sum += d;
		if (d > wprot.max)
			wprot.max = d;
		wprot.n++;
		wprot.addr = NULL;
	}
	return p;
}

long minflt(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_minflt + ru.ru_majflt;
}

int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

double median(const double *v, unsigned n)
{
	double s[MAX_SAMPLES];

	memcpy(s, v, n * sizeof(*v));
	qsort(s, n, sizeof(*s), cmp_double);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* Median of the per-repeat ratios a[i] / b[i]. */
double median_ratio(const double *a, const double *b, unsigned n)
{
	double r[MAX_SAMPLES];
	unsigned i;

	for (i = 0; i < n; i++)
		r[i] = a[i] / b[i];
	return median(r, n);
}

/* Smallest and largest of the per-repeat ratios a[i] / b[i]. */
void range_ratio(const double *a, const double *b, unsigned n,
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

uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x * 0x2545f4914f6cdd1dull;
}

/* Uniform in [0, n) without a division. */
uint64_t below(uint64_t x, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)x * n) >> 64);
}

uint32_t *block_order(uint64_t n, bool shuffled)
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

const char *size_str(uint64_t v, char *buf, size_t len)
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


/* A count with thousands separators: 1,000,000. */
const char *count_str(uint64_t v, char *buf, size_t len)
{
	char tmp[32];
	size_t n, i, o = 0;

	snprintf(tmp, sizeof(tmp), "%" PRIu64, v);
	n = strlen(tmp);
	for (i = 0; i < n && o + 2 < len; i++) {
		if (i && (n - i) % 3 == 0)
			buf[o++] = ',';
		buf[o++] = tmp[i];
	}
	buf[o] = '\0';
	return buf;
}


/* Milliseconds from seconds, with about three significant digits. */
const char *ms_str(double s, char *buf, size_t len)
{
	double v = s * 1e3;

	snprintf(buf, len, v < 1 ? "%.3f" : v < 10 ? "%.2f" : v < 100 ? "%.1f" : "%.0f", v);
	return buf;
}



uint64_t parse_size(const char *s)
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

const char *fs_name(const char *dir)
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

/* The 1-minute load average, for the notes under each table. */
double loadavg(void)
{
	double l = -1;
	FILE *f = fopen("/proc/loadavg", "r");

	if (f) {
		if (fscanf(f, "%lf", &l) != 1)
			l = -1;
		fclose(f);
	}
	return l;
}

void path_of(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", opt.dir, name);
}

/* A plot data file PREFIX-name.dat, or NULL without -o. */
FILE *data_file(const char *name)
{
	char path[4096];
	FILE *f;

	if (!opt.out)
		return NULL;
	snprintf(path, sizeof(path), "%s-%s.dat", opt.out, name);
	f = fopen(path, "w");
	SYS_OK(f, "create plot data file");
	fprintf(f, "# fs: %s\n", fs_name(opt.dir));
	return f;
}

/* Bytes a file occupies (allocated blocks). */
uint64_t file_allocated(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (uint64_t)st.st_blocks * 512 : 0;
}

/*
 * Counts the mappings (VMAs) that overlap [base, base + len) in
 * /proc/self/maps.
 */
uint64_t vmas_in(const void *base, uint64_t len)
{
	uintptr_t lo = (uintptr_t)base, hi = lo + len;
	char line[512];
	uint64_t n = 0;
	FILE *f = fopen("/proc/self/maps", "r");

	SYS_OK(f, "open /proc/self/maps");
	while (fgets(line, sizeof(line), f)) {
		unsigned long a, b;

		if (sscanf(line, "%lx-%lx", &a, &b) == 2 && a < hi && b > lo)
			n++;
		/* A line longer than the buffer: skip the rest of it. */
		while (!strchr(line, '\n') && fgets(line, sizeof(line), f))
			;
	}
	fclose(f);
	return n;
}


void pimg_create(struct pimg *p, const char *name, uint64_t size,
		 uint32_t block_size, const char *backing, unsigned flags)
{
	struct pcow_create_opts o = {
		.struct_size = sizeof(o),
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
	PCOW_OK(pcow_map_new(&p->map, p->img, flags));
	p->base = pcow_map_addr(p->map);
}

void pimg_flush(struct pimg *p, struct flush_cost *c)
{
	struct flush_count f = flushes;
	double t, u;

	memset(&wprot, 0, sizeof(wprot));
	wprot.armed = true;
	u = thread_cpu();
	t = now();
	PCOW_OK(pcow_map_flush(p->map));
	c->wall = now() - t;
	c->cpu = thread_cpu() - u;
	wprot.armed = false;
	if (wprot.n) {
		uint64_t k = wprot.n < WPROT_MAX ? wprot.n : WPROT_MAX;

		qsort(wprot_window, k, sizeof(double), cmp_double);
		wprot.p50 = wprot_window[k / 2];
		wprot.p99 = wprot_window[(k - 1) * 99 / 100];
	}
	c->wp = wprot;
	c->sync = flushes.time - f.time;
	c->syncs = flushes.calls - f.calls;
}

/* Empties a file, so that closing it writes back nothing. */
void empty_file(const char *path)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);

	if (fd >= 0) {
		if (ftruncate(fd, 0) < 0)
			die("ftruncate", errno);
		close(fd);
	}
}

/*
 * Unmaps, empties the file (so that closing does not write back data the
 * benchmark does not need), closes and removes it.
 */
void pimg_destroy(struct pimg *p)
{
	if (p->map)
		PCOW_OK(pcow_map_delete(&p->map));
	empty_file(p->path);
	pcow_close(&p->img);
	unlink(p->path);
}

uint64_t pimg_vmas(struct pimg *p, struct pcow_map_stats *st)
{
	PCOW_OK(pcow_map_get_stats(p->map, st));
	return st->vmas;
}


void rimg_create(struct rimg *r, const char *name, uint64_t size)
{
	void *p;

	path_of(r->path, sizeof(r->path), name);
	r->size = size;
	unlink(r->path);
	r->fd = open(r->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	SYS_OK(r->fd >= 0, "open raw file");
	SYS_OK(ftruncate(r->fd, (off_t)size) == 0, "ftruncate");
	/* -y: as pcow maps an image on a DAX file system. */
	p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		 opt.raw_sync ? MAP_SHARED_VALIDATE | MAP_SYNC : MAP_SHARED, r->fd, 0);
	SYS_OK(p != MAP_FAILED, opt.raw_sync ? "mmap raw file MAP_SYNC (-y needs DAX)"
					     : "mmap raw file");
	r->base = p;
}

void rimg_destroy(struct rimg *r)
{
	munmap(r->base, r->size);
	if (ftruncate(r->fd, 0) < 0)
		die("ftruncate", errno);
	close(r->fd);
	unlink(r->path);
}

/* The backing file's content: every 8-byte word holds its offset | 1. */
uint64_t backing_word(uint64_t off)
{
	return off | 1;
}

/* Creates a raw file of size bytes, every word written (not zero). */
void write_backing(const char *path, uint64_t size)
{
	uint64_t off;
	uint8_t *buf;
	int fd;

	unlink(path);
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	SYS_OK(fd >= 0, "create backing file");
	buf = malloc(MiB);
	SYS_OK(buf, "malloc");
	for (off = 0; off < size; off += MiB) {
		uint64_t n = size - off < MiB ? size - off : MiB, i;

		for (i = 0; i < n; i += 8)
			*(uint64_t *)(buf + i) = backing_word(off + i);
		SYS_OK(pwrite(fd, buf, n, (off_t)off) == (ssize_t)n, "write backing file");
	}
	SYS_OK(fdatasync(fd) == 0, "fdatasync");
	close(fd);
	free(buf);
}


const char *met(bool ok)
{
	return ok ? "yes" : "**no**";
}
