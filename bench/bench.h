/*
 * bench.h -- what the benchmarks of map_bench share: options, clocks,
 * statistics, image helpers and table formatting (bench_util.c).
 */
#ifndef PCOW_BENCH_H
#define PCOW_BENCH_H

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
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "pcow.h"

#define PAGE 4096u
#define LINE 64u
#define MAX_REPEATS 15
#define MAX_SAMPLES 64  /* repeats, or rounds of a cheap measurement */
#define KiB ((uint64_t)1 << 10)
#define MiB ((uint64_t)1 << 20)
#define GiB ((uint64_t)1 << 30)

struct bench_opts {
	const char *dir;
	const char *out;        /* prefix of the plot data files, or NULL */
	uint64_t size;          /* steady-state image */
	uint64_t first_size;    /* first-write image */
	uint64_t cow_size;      /* largest copy-on-write image */
	uint64_t cow_blocks;    /* at most this many blocks copied per pass */
	uint64_t open_max;      /* most allocated blocks in the open test */
	uint64_t snap_small;    /* allocated span of the smaller snapshot image */
	uint64_t snap_large;    /* ... and of the larger one */
	uint64_t vma_blocks;    /* blocks of the VMA test image */
	uint64_t vma_budget;    /* PCOW_VMA_BUDGET for it; 0 = the library's */
	uint64_t ops;           /* steady-state operations per pass */
	uint64_t durable_size;  /* image of the durable-write test */
	uint64_t durable_ops;   /* durable writes per pass */
	double open_cap;        /* seconds after which inherited maps stop repeating */
	unsigned repeats;
	unsigned tests;
	bool verbose;
	bool wall;
	bool raw_sync;          /* -y: raw baselines mapped MAP_SYNC */
};
extern struct bench_opts opt;

/* Results of loads land here, so that they are not optimised away. */
extern volatile uint64_t sink;

/* Time the process spent in fdatasync, libpcow's calls included. */
struct flush_count {
	double time;
	uint64_t calls;
};
extern struct flush_count flushes;

/*
 * The windows in which a kernel copy-on-write map keeps a block
 * write-protected while writing it back: from its mprotect(PROT_READ) to
 * the mmap that maps the active region there again.  The benchmark defines
 * mprotect and mmap64 (the same system calls), which take the place of
 * the C library's for libpcow's calls, and times a window while armed.
 */
struct wprot_count {
	bool armed;
	void *addr;             /* start of the open window, or NULL */
	double start, sum, max; /* seconds */
	double in_mprotect, in_mmap;    /* of sum: in those two calls */
	uint64_t n;             /* windows closed */
	double p50, p99;        /* of the windows, set by pimg_flush */
};
extern struct wprot_count wprot;

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

/* A new pcow image, opened read-write and mapped (pcow_map_new's flags). */
struct pimg {
	pcow_image *img;
	pcow_map *map;
	uint8_t *base;
	uint64_t size;
	char path[4096];
};


/* A raw file of the given size, sparse, mapped MAP_SHARED. */
struct rimg {
	int fd;
	uint8_t *base;
	uint64_t size;
	char path[4096];
};


void die(const char *what, int err);
double now(void);
/* The CPU time this thread has used (in the kernel too). */
double thread_cpu(void);
/* The clock of the CPU-bound measurements: thread CPU time, or -W's wall clock. */
double cpu_now(void);
long minflt(void);
double median(const double *v, unsigned n);
int cmp_double(const void *a, const void *b);
/* Median of the per-repeat ratios a[i] / b[i]. */
double median_ratio(const double *a, const double *b, unsigned n);
/* Smallest and largest of the per-repeat ratios a[i] / b[i]. */
void range_ratio(const double *a, const double *b, unsigned n, double *lo,
		 double *hi);
uint64_t xorshift(uint64_t *s);
/* Uniform in [0, n) without a division. */
uint64_t below(uint64_t x, uint64_t n);
/* 0..n-1, in order or shuffled (the same shuffle every run). */
uint32_t *block_order(uint64_t n, bool shuffled);
const char *size_str(uint64_t v, char *buf, size_t len);
const char *count_str(uint64_t v, char *buf, size_t len);
const char *ms_str(double s, char *buf, size_t len);
uint64_t parse_size(const char *s);
const char *fs_name(const char *dir);
/* The 1-minute load average, for the notes under each table. */
double loadavg(void);
void path_of(char *buf, size_t len, const char *name);
/* A plot data file PREFIX-name.dat, or NULL without -o. */
FILE *data_file(const char *name);
/* Bytes a file occupies (allocated blocks). */
uint64_t file_allocated(const char *path);
/* The mappings (VMAs) that overlap [base, base + len). */
uint64_t vmas_in(const void *base, uint64_t len);
void pimg_create(struct pimg *p, const char *name, uint64_t size,
		 uint32_t block_size, const char *backing, unsigned flags);

/* What one pcow_map_flush took: wall clock, of which fdatasync, and the
 * write-protect windows of the blocks it wrote back. */
struct flush_cost {
	double wall, cpu, sync; /* seconds: wall clock, thread CPU, in fdatasync */
	uint64_t syncs;         /* fdatasync calls */
	struct wprot_count wp;
};
void pimg_flush(struct pimg *p, struct flush_cost *c);
/* Empties a file, so that closing it writes back nothing. */
void empty_file(const char *path);
void pimg_destroy(struct pimg *p);
uint64_t pimg_vmas(struct pimg *p, struct pcow_map_stats *st);
void rimg_create(struct rimg *r, const char *name, uint64_t size);
void rimg_destroy(struct rimg *r);
/* The backing file's content: every 8-byte word holds its offset | 1. */
uint64_t backing_word(uint64_t off);
/* Creates a raw file of size bytes, every word written (not zero). */
void write_backing(const char *path, uint64_t size);
const char *met(bool ok);

#define SZ(v) size_str((v), (char[32]){0}, 32)

#define CNT(v) count_str((v), (char[40]){0}, 40)

#define MS(s) ms_str((s), (char[32]){0}, 32)

/* A byte count in MiB with one decimal. */
#define MIB(v) ((double)(v) / (double)MiB)

/* The copy-on-write granularity test (cow_modes.c). */
void bench_cow_modes(void);
/*
 * Seconds to write the 4 KiB pages in order (memcpy from data) over a
 * read-only mapping of base_path, each first store copied by the kernel
 * mechanism alone: SIGSEGV, pwrite of the page, mmap of the file over it.
 */
double kernel_floor_pass(const char *base_path, uint64_t size,
			 const uint32_t *pages, uint64_t n, const uint8_t *data);

#endif
