/*
 * stripe_bench.c -- the overhead of striping an image over extent files
 * (docs/format.md 3.6), against the same image unstriped, side by side in
 * one run, on files in one directory (so one device: this measures what
 * striping costs, not the bandwidth it would add; docs/benchmarks.md).
 *
 * Configurations: unstriped, 2 and 4 extent files.  Each measurement is
 * repeated (-r, default 5); within a repeat the configurations run one
 * after the other, in an order that rotates from one repeat to the next; a
 * figure is the median of the repeats and a ratio the median of the
 * per-repeat ratios to the unstriped image.
 *
 *  steady  random 64 B loads, then stores, on a fully written, mapped
 *          image (thread CPU time).
 *  first   one 8-byte store per 4 KiB page of a new, empty mapped image,
 *          in order, then pcow_map_flush (wall clock).
 *  cow     one 8-byte store per 64 KiB block of an image whose blocks all
 *          belong to a snapshot (each store copies the block up), then
 *          pcow_map_flush (wall clock).
 *  open    pcow_open + pcow_map_new + pcow_map_delete + pcow_close of a
 *          large sparse image at the smallest stripe size the format
 *          allows for it (the most VMAs), wall clock; and the VMA count of
 *          its map.
 *
 * Usage: stripe_bench [-d DIR] [-r REPEATS] [-s SIZE_MIB] [-O OPEN_GIB]
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pcow.h"

#define MiB ((uint64_t)1 << 20)
#define NCONF 3
#define MAX_REPEATS 15

static const uint32_t extents[NCONF] = {0, 2, 4};
static const char *dir = "/tmp";
static unsigned repeats = 5;
static uint64_t size = 256 * MiB, open_size = (uint64_t)16 << 30;
static volatile uint64_t sink;

static void die(const char *what, int err)
{
	fprintf(stderr, "stripe_bench: %s: %s (%s)\n", what, strerror(err < 0 ? -err : err),
		pcow_errormsg());
	exit(1);
}

#define OK(call)                                                           \
	do {                                                               \
		int ret_ = (call);                                         \
		if (ret_ < 0)                                              \
			die(#call, ret_);                                  \
	} while (0)

static double wall(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double cpu(void)
{
	struct timespec t;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static uint64_t rng = 88172645463325252ull;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Removes an image and its extent files (names as create() gives them). */
static void remove_image(const char *name)
{
	char p[4096];
	unsigned i;

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	unlink(p);
	for (i = 0; i < 4; i++) {
		snprintf(p, sizeof(p), "%s/x%u/%s.%u", dir, i, name, i);
		unlink(p);
	}
}

/* A new image dir/name of bytes, over n extent files (0: unstriped),
 * stripe_size 0: the library's choice. */
static void create(const char *name, uint64_t bytes, uint32_t n, uint64_t stripe)
{
	struct pcow_create_opts o = {.struct_size = sizeof(o), .size = bytes,
				     .block_size = 64 * 1024, .extent_count = n,
				     .stripe_size = stripe};
	static char names[4][300];
	const char *ptrs[4];
	char p[4096];
	uint32_t i;

	remove_image(name);
	for (i = 0; i < n; i++) {
		snprintf(p, sizeof(p), "%s/x%u", dir, i);
		(void)mkdir(p, 0755);
		snprintf(names[i], sizeof(names[i]), "x%u/%s.%u", i, name, i);
		ptrs[i] = names[i];
	}
	o.extent_files = ptrs;
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	OK(pcow_create(p, &o));
}

struct img {
	pcow_image *img;
	pcow_map *map;
	uint8_t *base;
};

static void open_map(struct img *m, const char *name)
{
	char p[4096];

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	OK(pcow_open(&m->img, p, 0));
	OK(pcow_map_new(&m->map, m->img, 0));
	m->base = pcow_map_addr(m->map);
}

static void close_map(struct img *m)
{
	OK(pcow_map_delete(&m->map));
	OK(pcow_close(&m->img));
}

static uint64_t vmas(struct img *m)
{
	struct pcow_map_stats st;

	OK(pcow_map_get_stats(m->map, &st));
	return st.vmas;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, unsigned n)
{
	double s[MAX_REPEATS];

	memcpy(s, v, n * sizeof(*v));
	qsort(s, n, sizeof(*s), cmp);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* One row: the medians per configuration and the ratios to unstriped. */
static void row(const char *what, const char *unit, double scale,
		double t[NCONF][MAX_REPEATS])
{
	double r[NCONF][MAX_REPEATS];
	unsigned c, k;

	printf("| %s |", what);
	for (c = 0; c < NCONF; c++)
		printf(" %.3g %s |", median(t[c], repeats) * scale, unit);
	for (c = 1; c < NCONF; c++) {
		for (k = 0; k < repeats; k++)
			r[c][k] = t[c][k] / t[0][k];
		printf(" %.2fx |", median(r[c], repeats));
	}
	printf("\n");
	fflush(stdout);
}

static const char *conf_name(unsigned c)
{
	static const char *const n[NCONF] = {"s0.pcow", "s2.pcow", "s4.pcow"};

	return n[c];
}

/*
 * One timed pass over a mapped image: an 8-byte store every step bytes,
 * then pcow_map_flush; per store, the time of the stores and of all.
 */
static void store_pass(struct img *m, uint64_t step, double *stores, double *total)
{
	double n = (double)(size / step), t0 = wall();
	uint64_t j;

	for (j = 0; j < size; j += step)
		*(uint64_t *)(m->base + j) = j;
	*stores = (wall() - t0) / n;
	OK(pcow_map_flush(m->map));
	*total = (wall() - t0) / n;
}

/* A new image of configuration c, mapped. */
static void fresh(struct img *m, unsigned c)
{
	create(conf_name(c), size, extents[c], 2 * MiB);
	open_map(m, conf_name(c));
}

static void steady(void)
{
	double load[NCONF][MAX_REPEATS], store[NCONF][MAX_REPEATS];
	uint64_t ops = 4000000, v[NCONF] = {0};
	unsigned c, k, i;

	for (c = 0; c < NCONF; c++) {
		struct img m;

		fresh(&m, c);
		memset(m.base, 0x5a, size);
		OK(pcow_map_flush(m.map));
		close_map(&m);
	}
	for (k = 0; k < repeats; k++)
		for (i = 0; i < NCONF; i++) {
			struct img m;
			uint64_t j, s = 0;
			double t;

			c = (i + k) % NCONF;
			open_map(&m, conf_name(c));
			for (j = 0; j < size; j += 4096)        /* fault every page in */
				m.base[j] = 0x5a;
			t = cpu();
			for (j = 0; j < ops; j++)
				s += *(volatile uint64_t *)(m.base + (rnd() % (size / 64)) * 64);
			load[c][k] = (cpu() - t) / (double)ops;
			t = cpu();
			for (j = 0; j < ops; j++)
				*(volatile uint64_t *)(m.base + (rnd() % (size / 64)) * 64) = j;
			store[c][k] = (cpu() - t) / (double)ops;
			sink += s;
			v[c] = vmas(&m);
			close_map(&m);
		}
	row("steady: random 64 B load", "ns", 1e9, load);
	row("steady: random 64 B store", "ns", 1e9, store);
	printf("| steady: VMAs of the map | %" PRIu64 " | %" PRIu64 " | %" PRIu64 " | | |\n",
	       v[0], v[1], v[2]);
}

static void first(void)
{
	double t[NCONF][MAX_REPEATS], st[NCONF][MAX_REPEATS], fl[NCONF][MAX_REPEATS];
	unsigned c, k, i;

	for (k = 0; k < repeats; k++)
		for (i = 0; i < NCONF; i++) {
			struct img m;

			c = (i + k) % NCONF;
			fresh(&m, c);
			store_pass(&m, 4096, &st[c][k], &t[c][k]);
			fl[c][k] = t[c][k] - st[c][k];
			close_map(&m);
		}
	row("first write: 4 KiB page, stores", "us", 1e6, st);
	row("first write: the flush after them, per page", "us", 1e6, fl);
	row("first write: 4 KiB page + flush", "us", 1e6, t);
}

static void cow(void)
{
	double t[NCONF][MAX_REPEATS], st;
	unsigned c, k, i;

	for (k = 0; k < repeats; k++)
		for (i = 0; i < NCONF; i++) {
			struct img m;

			c = (i + k) % NCONF;
			fresh(&m, c);
			memset(m.base, 0x33, size);
			OK(pcow_map_flush(m.map));
			OK(pcow_map_delete(&m.map));
			OK(pcow_snapshot_create(m.img, "base"));
			OK(pcow_map_new(&m.map, m.img, 0));
			m.base = pcow_map_addr(m.map);
			store_pass(&m, 64 * 1024, &st, &t[c][k]);
			close_map(&m);
		}
	row("copy-on-write: 64 KiB block + flush", "us", 1e6, t);
}

static void open_time(void)
{
	double t[NCONF][MAX_REPEATS];
	uint64_t v[NCONF] = {0}, stripe[NCONF] = {0};
	unsigned c, k, i;

	for (c = 0; c < NCONF; c++) {
		struct img m;
		struct pcow_info info = {.struct_size = sizeof(info)};

		create(conf_name(c), open_size, extents[c], 0);
		open_map(&m, conf_name(c));
		memset(m.base, 1, 4 * MiB);
		OK(pcow_get_info(m.img, &info));
		stripe[c] = info.stripe_size;
		close_map(&m);
	}
	for (k = 0; k < repeats; k++)
		for (i = 0; i < NCONF; i++) {
			struct img m;
			double t0;

			c = (i + k) % NCONF;
			t0 = wall();
			open_map(&m, conf_name(c));
			t[c][k] = wall() - t0;
			v[c] = vmas(&m);
			close_map(&m);
		}
	row("open + map of a sparse image", "ms", 1e3, t);
	printf("| open: VMAs of the map (%" PRIu64 " GiB, stripe %" PRIu64 " MiB) | %" PRIu64
	       " | %" PRIu64 " | %" PRIu64 " | | |\n",
	       open_size >> 30, stripe[1] / MiB, v[0], v[1], v[2]);
}

int main(int argc, char **argv)
{
	int c;

	while ((c = getopt(argc, argv, "d:r:s:O:")) != -1) {
		switch (c) {
		case 'd': dir = optarg; break;
		case 'r': repeats = (unsigned)atoi(optarg); break;
		case 's': size = (uint64_t)atoll(optarg) * MiB; break;
		case 'O': open_size = (uint64_t)atoll(optarg) << 30; break;
		default:
			fprintf(stderr, "usage: stripe_bench [-d DIR] [-r REPEATS] [-s SIZE_MIB] [-O OPEN_GIB]\n");
			return 2;
		}
	}
	if (repeats < 1 || repeats > MAX_REPEATS || size < 4 * MiB) {
		fprintf(stderr, "stripe_bench: repeats 1 to %d, size at least 4 MiB\n", MAX_REPEATS);
		return 2;
	}
	printf("Striping overhead, %s, %" PRIu64 " MiB images, 64 KiB blocks, 2 MiB stripes, median of %u\n\n",
	       dir, size / MiB, repeats);
	printf("| measurement | unstriped | 2 extent files | 4 extent files | 2 / unstriped | 4 / unstriped |\n");
	printf("|---|---|---|---|---|---|\n");
	steady();
	first();
	cow();
	open_time();
	for (c = 0; c < NCONF; c++)
		remove_image(conf_name((unsigned)c));
	return 0;
}
