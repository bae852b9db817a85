/* test_map.c -- the mapping engine: loads and stores on the mapped image,
 * allocate-on-write, copy-on-write from backing and snapshot blocks, many
 * threads, the VMA count under shuffled writes, signal chaining, remapping
 * after snapshot changes, and the out-of-space handler. */
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <linux/magic.h>
#include <stdbool.h>

#include "test.h"

static bool on_tmpfs(const char *path)
{
	struct statfs sfs;

	return statfs(path, &sfs) == 0 && sfs.f_type == TMPFS_MAGIC;
}


/* The VMAs that make up [addr, addr+len), from /proc/self/maps. */
static unsigned vmas_in(const void *addr, size_t len)
{
	uintptr_t lo = (uintptr_t)addr, hi = lo + len, a, b;
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	unsigned n = 0;

	CHECK(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%lx-%lx", &a, &b) == 2 && a < hi && b > lo)
			n++;
	fclose(f);
	return n;
}

/* The name of the file shown at addr ("" for anonymous memory). */
static void shown_from(const void *addr, char *name, size_t size)
{
	uintptr_t a, b;
	FILE *f = fopen("/proc/self/maps", "r");
	char line[1024];
	int pos;

	CHECK(f);
	name[0] = '\0';
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %n", &a, &b, &pos) == 2 &&
		    a <= (uintptr_t)addr && (uintptr_t)addr < b) {
			const char *slash = strrchr(line + pos, '/');

			line[strcspn(line, "\n")] = '\0';
			snprintf(name, size, "%s", slash ? slash + 1 : "");
		}
	fclose(f);
}

/*
 * True when the file system under dir lets a page of a file, remapped
 * read-only and then writable again in place, merge back with its
 * neighbours into one VMA: what keeps copy-ups from fragmenting a map.
 * Overlayfs does not (docs/design.md).
 */
static bool remaps_merge(const char *dir)
{
	char path[512];
	long pg = sysconf(_SC_PAGESIZE);
	int fd, prot = PROT_READ | PROT_WRITE;
	uint8_t *p;
	unsigned n;

	snprintf(path, sizeof(path), "%s/merge-probe", dir);
	fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0644);
	CHECK(fd >= 0 && ftruncate(fd, 3 * pg) == 0);
	p = mmap(NULL, (size_t)(3 * pg), prot, MAP_SHARED, fd, 0);
	CHECK(p != MAP_FAILED);
	CHECK(mmap(p + pg, (size_t)pg, PROT_READ, MAP_SHARED | MAP_FIXED, fd, pg) != MAP_FAILED);
	CHECK(mmap(p + pg, (size_t)pg, prot, MAP_SHARED | MAP_FIXED, fd, pg) != MAP_FAILED);
	n = vmas_in(p, (size_t)(3 * pg));
	munmap(p, (size_t)(3 * pg));
	close(fd);
	unlink(path);
	return n == 1;
}

static void shuffle(uint32_t *a, uint32_t n, unsigned seed)
{
	uint32_t i;

	srand(seed);
	for (i = 0; i < n; i++)
		a[i] = i;
	for (i = n - 1; i > 0; i--) {
		uint32_t j = (uint32_t)(((uint64_t)rand() * RAND_MAX + (uint64_t)rand()) % (i + 1));
		uint32_t t = a[i];

		a[i] = a[j];
		a[j] = t;
	}
}

/* 65,536 blocks of 16 KiB written in shuffled order through the
 * mapping stay a handful of VMAs and read back through the byte API. */
static void shuffled_allocate(void)
{
	struct pcow_create_opts o = {.struct_size = sizeof(o), .size = 1ull << 30, .block_size = 16384};
	const uint32_t n = 65536;
	uint32_t *order = malloc(n * sizeof(*order)), i;
	struct pcow_map_stats st;
	pcow_image *img;
	pcow_map *map;
	uint8_t *base;

	CHECK(order);
	OK(pcow_create(test_path("shuf"), &o));
	OK(pcow_open(&img, test_path("shuf"), 0));
	OK(pcow_map_new(&map, img, 0));
	base = pcow_map_addr(map);
	CHECK(((uintptr_t)base & ((2u << 20) - 1)) == 0);
	CHECK(pcow_map_length(map) == 1ull << 30);
	shuffle(order, n, 7);
	for (i = 0; i < n; i++)
		*(uint64_t *)(base + (uint64_t)order[i] * 16384 + 8) = order[i] * 2654435761u;
	OK(pcow_map_get_stats(map, &st));
	printf("shuffled: %u blocks, %llu vmas, %llu faults\n", n,
	       (unsigned long long)st.vmas, (unsigned long long)st.faults);
	CHECK(st.vmas <= 4 + test_vma_slack(img) && st.blocks_allocated == n);
	OK(pcow_map_flush(map));
	OK(pcow_map_delete(&map));
	for (i = 0; i < n; i += 97) {
		uint64_t v;

		OK(pcow_read(img, &v, 8, (uint64_t)i * 16384 + 8));
		CHECK(v == (uint64_t)(i * 2654435761u));
	}
	OK(pcow_close(&img));
	free(order);
}

/* Images with inherited data: a raw backing file and a snapshot layer. */
#define CSIZE (8ull << 20)
#define CBS 65536u
#define NTHREADS 8

static pcow_map *cmap;

static void *writer(void *arg)
{
	uintptr_t t = (uintptr_t)arg;
	uint8_t *base = pcow_map_addr(cmap);
	uint64_t b;

	/* every thread stores into every block, at its own offset */
	for (b = 0; b < CSIZE / CBS; b++) {
		uint64_t blk = (b * 7 + t * 13) % (CSIZE / CBS);

		*(volatile uint64_t *)(base + blk * CBS + 64 * t) = blk ^ (t << 56);
	}
	return NULL;
}

static void cow_threads(void)
{
	struct pcow_map_stats st;
	pthread_t th[NTHREADS];
	uint8_t *want = malloc(CSIZE), *got = malloc(CSIZE);
	pcow_image *img;
	uint64_t b, t;

	CHECK(want && got);
	test_fill(want, CSIZE, 9, 0);
	img = test_overlay_on_raw("cbase.raw", CSIZE, want, 0, CSIZE, "cow", CBS);
	OK(pcow_map_new(&cmap, img, 0));
	/* inherited blocks read through the mapping without copying */
	CHECK(memcmp(pcow_map_addr(cmap), want, CSIZE) == 0);
	OK(pcow_map_get_stats(cmap, &st));
	CHECK(st.faults == 0 && st.blocks_copied == 0 && st.blocks_allocated == 0);
	/* 8 threads fault on the same and on different blocks */
	for (t = 0; t < NTHREADS; t++)
		CHECK(pthread_create(&th[t], NULL, writer, (void *)(uintptr_t)t) == 0);
	for (t = 0; t < NTHREADS; t++)
		pthread_join(th[t], NULL);
	for (b = 0; b < CSIZE / CBS; b++)
		for (t = 0; t < NTHREADS; t++)
			*(uint64_t *)(want + b * CBS + 64 * t) = b ^ (t << 56);
	CHECK(memcmp(pcow_map_addr(cmap), want, CSIZE) == 0);
	OK(pcow_map_get_stats(cmap, &st));
	printf("cow: %llu faults, %llu copied, %llu vmas\n", (unsigned long long)st.faults,
	       (unsigned long long)st.blocks_copied, (unsigned long long)st.vmas);
	/* no block copied twice, none missed */
	CHECK(st.blocks_copied == CSIZE / CBS && st.blocks_allocated == CSIZE / CBS);
	/* Each copy-up remaps its block in place: a file system whose remaps
	 * merge keeps the whole map in one or two VMAs. */
	if (remaps_merge(test_dir())) {
		CHECK(st.vmas <= 2 + test_vma_slack(img));
	} else {
		printf("cow: remaps do not merge on this file system\n");
		CHECK(st.vmas <= CSIZE / CBS + 2 + test_vma_slack(img));
	}
	/* the API sees what the stores did, and the mapping sees API writes */
	OK(pcow_read(img, got, CSIZE, 0));
	CHECK(memcmp(got, want, CSIZE) == 0);
	OK(pcow_map_delete(&cmap));

	/* a snapshot taken while mapped (tests/unit/test_kcow.c
	 * also deletes and applies them), right content after */
	OK(pcow_map_new(&cmap, img, 0));
	OK(pcow_snapshot_create(img, "s"));
	CHECK(memcmp(pcow_map_addr(cmap), want, CSIZE) == 0);
	memset((uint8_t *)pcow_map_addr(cmap) + 3 * CBS + 100, 0x77, 5000);
	{
		uint8_t api[6000];

		memset(api, 0x99, sizeof(api));
		OK(pcow_write(img, api, sizeof(api), 9 * CBS + 10)); /* inherited block */
		CHECK(memcmp((uint8_t *)pcow_map_addr(cmap) + 9 * CBS + 10, api, sizeof(api)) == 0);
		OK(pcow_discard(img, 11 * CBS, CBS));
		CHECK(((uint8_t *)pcow_map_addr(cmap))[11 * CBS + 5] == 0);
	}
	OK(pcow_map_get_stats(cmap, &st));
	CHECK(st.blocks_copied == 1);
	OK(pcow_map_delete(&cmap));
	OK(pcow_snapshot_apply(img, "s"));
	OK(pcow_map_new(&cmap, img, PCOW_MAP_RDONLY));
	CHECK(memcmp(pcow_map_addr(cmap), want, CSIZE) == 0);
	OK(pcow_map_delete(&cmap));
	OK(pcow_close(&img));
	free(want);
	free(got);
}

/* faults outside our ranges reach the handler installed before. */
static sigjmp_buf jb;
static volatile int foreign_faults;

static void foreign(int sig, siginfo_t *si, void *ctx)
{
	(void)sig;
	(void)si;
	(void)ctx;
	foreign_faults++;
	siglongjmp(jb, 1);
}

static void chaining(void)
{
	struct pcow_create_opts o = {.struct_size = sizeof(o), .size = 4 << 20};
	struct sigaction sa = {0};
	pcow_image *img;
	pcow_map *map;
	char *guard;

	sa.sa_sigaction = foreign;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	/* Installed after the first map already put ours in place, so reinstall
	 * order is: foreign first in a child, then ours. */
	CHECK(sigaction(SIGSEGV, &sa, NULL) == 0);
	OK(pcow_create(test_path("chain"), &o));
	OK(pcow_open(&img, test_path("chain"), 0));
	OK(pcow_map_new(&map, img, PCOW_MAP_RDONLY));
	guard = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(guard != MAP_FAILED);
	if (sigsetjmp(jb, 1) == 0)
		*(volatile char *)guard = 1;
	CHECK(foreign_faults == 1);
	/* a store to a read-only map is not ours to fix: it reaches them too */
	if (sigsetjmp(jb, 1) == 0)
		*(volatile char *)pcow_map_addr(map) = 1;
	CHECK(foreign_faults == 2);
	OK(pcow_map_delete(&map));
	OK(pcow_close(&img));
	munmap(guard, 4096);
}

/* a store the file system cannot back calls the error handler. */
static volatile int nospace_calls;
static sigjmp_buf nospace_jb;

static void on_error(pcow_map *m, void *addr, int err, void *opaque)
{
	(void)m;
	(void)addr;
	(void)opaque;
	if (err == -ENOSPC)
		nospace_calls++;
	siglongjmp(nospace_jb, 1);
}

static void out_of_space(void)
{
	char dir[512];
	struct pcow_create_opts o = {.struct_size = sizeof(o), .size = 64 << 20, .block_size = 65536};
	pcow_image *img;
	pcow_map *map;
	uint8_t *base;
	volatile uint64_t off;
	pid_t pid;
	int status;

	/* a private mount namespace keeps the small tmpfs to this child */
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		test_in_child();
		snprintf(dir, sizeof(dir), "%s/small", test_dir());
		if (mkdir(dir, 0755) < 0 || unshare(CLONE_NEWNS) < 0 ||
		    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
		    mount("tmpfs", dir, "tmpfs", 0, "size=3m") < 0)
			_exit(77);
		snprintf(dir + strlen(dir), sizeof(dir) - strlen(dir), "/img");
		OK(pcow_create(dir, &o));
		OK(pcow_open(&img, dir, 0));
		OK(pcow_map_new(&map, img, 0));
		pcow_map_set_error_handler(map, on_error, NULL);
		base = pcow_map_addr(map);
		off = 0;
		if (sigsetjmp(nospace_jb, 1) == 0)
			for (off = 0; off < (64u << 20); off += 4096)
				base[off] = 1;
		CHECK(nospace_calls == 1);
		printf("out_of_space: error handler called at offset %llu\n", (unsigned long long)off);
		CHECK(off > (1u << 20) && off < (3u << 20));
		_exit(0);
	}
	CHECK(waitpid(pid, &status, 0) == pid);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
		printf("out_of_space: skipped (cannot mount a tmpfs here)\n");
		return;
	}
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* a fault raised inside the library (here: pcow_read filling a
 * buffer that is an inherited block of the same mapped image, with the
 * image's lock held) is served, not deadlocked. */
static void fault_inside_library(void)
{
	uint8_t data[65536];
	pcow_image *img;
	pcow_map *map;
	uint8_t *base;
	int i;

	memset(data, 0x3c, sizeof(data));
	img = test_overlay_on_raw("lf.raw", 4 << 20, data, 0, sizeof(data), "lf.pcow",
				  65536);
	OK(pcow_map_new(&map, img, 0));
	base = pcow_map_addr(map);
	/* offset 1 MiB is a hole everywhere: the library memsets the buffer */
	OK(pcow_read(img, base + 100, 4096, 1 << 20));
	for (i = 0; i < 65536; i++)
		CHECK(base[i] == ((i >= 100 && i < 4196) ? 0 : 0x3c));
	OK(pcow_map_delete(&map));
	OK(pcow_close(&img));
}

/* copy-on-write in any order keeps the VMA count bounded: past the
 * budget, whole groups are copied, and they merge with their neighbours. */
static uint64_t alternate_writes(const char *budget)
{
	const uint32_t n = (64 << 20) / 4096;
	uint32_t *order = malloc(n / 2 * sizeof(*order)), i;
	struct pcow_map_stats st;
	uint8_t *data = malloc(64 << 20), *base;
	pcow_image *img;
	pcow_map *map;

	CHECK(order && data);
	test_fill(data, 64 << 20, 5, 0);
	unlink(test_path("alt.raw"));
	unlink(test_path("alt.pcow"));
	img = test_overlay_on_raw("alt.raw", 64 << 20, data, 0, 64 << 20, "alt.pcow",
				  4096);
	if (budget)
		setenv("PCOW_VMA_BUDGET", budget, 1);
	OK(pcow_map_new(&map, img, 0));
	unsetenv("PCOW_VMA_BUDGET");
	base = pcow_map_addr(map);
	shuffle(order, n / 2, 3);
	for (i = 0; i < n / 2; i++) {
		uint64_t b = (uint64_t)order[i] * 2;

		*(uint64_t *)(base + b * 4096) = b;
		*(uint64_t *)(data + b * 4096) = b;
	}
	OK(pcow_map_get_stats(map, &st));
	printf("alternate writes (budget %s): %llu vmas, %llu copied\n",
	       budget ? budget : "default", (unsigned long long)st.vmas,
	       (unsigned long long)st.blocks_copied);
	CHECK(memcmp(base, data, 64 << 20) == 0);
	OK(pcow_map_delete(&map));
	{
		uint8_t *got = malloc(64 << 20);

		CHECK(got);
		OK(pcow_read(img, got, 64 << 20, 0));
		CHECK(memcmp(got, data, 64 << 20) == 0);
		free(got);
	}
	OK(pcow_close(&img));
	free(order);
	free(data);
	return st.vmas;
}

/* a backing file with data in every other block: mapping it does
 * not take one VMA per inherited run (gaps with nothing below are bridged),
 * and stores into bridged gaps and into inherited blocks both land. */
static void sparse_backing(void)
{
	struct pcow_create_opts o = {.struct_size = sizeof(o), .size = 64 << 20, .block_size = 4096};
	const uint64_t n = (64 << 20) / 4096;
	struct pcow_map_stats st;
	uint8_t *want = calloc(1, 64 << 20), *got = malloc(64 << 20), *base;
	pcow_image *img;
	pcow_map *map;
	uint64_t b;
	int fd;

	CHECK(want && got);
	fd = open(test_path("sb.raw"), O_CREAT | O_WRONLY, 0644);
	CHECK(fd >= 0 && ftruncate(fd, 64 << 20) == 0);
	for (b = 0; b < n; b += 2) {
		test_fill(want + b * 4096, 4096, 11, b * 4096);
		CHECK(pwrite(fd, want + b * 4096, 4096, (off_t)(b * 4096)) == 4096);
	}
	close(fd);
	o.backing_file = "sb.raw";
	o.backing_format = PCOW_FORMAT_RAW;
	OK(pcow_create(test_path("sb.pcow"), &o));
	OK(pcow_open(&img, test_path("sb.pcow"), 0));
	OK(pcow_map_new(&map, img, 0));
	OK(pcow_map_get_stats(map, &st));
	printf("sparse backing: %llu inherited runs mapped in %llu vmas\n",
	       (unsigned long long)(n / 2), (unsigned long long)st.vmas);
	/* Gaps are bridged, except on tmpfs, where reading a bridged hole
	 * would allocate it in the shared base (shared_base_stays_sparse). */
	CHECK(st.vmas <= (on_tmpfs(test_dir()) ? n + 2 : 4) + test_vma_slack(img));
	base = pcow_map_addr(map);
	CHECK(memcmp(base, want, 64 << 20) == 0);
	for (b = 1; b < n; b += 97) {
		*(uint64_t *)(base + b * 4096 + 8) = b;
		*(uint64_t *)(want + b * 4096 + 8) = b;
	}
	CHECK(memcmp(base, want, 64 << 20) == 0);
	OK(pcow_map_delete(&map));
	OK(pcow_read(img, got, 64 << 20, 0));
	CHECK(memcmp(got, want, 64 << 20) == 0);
	OK(pcow_close(&img));
	free(want);
	free(got);
}

/*
 * Copy bits wait in memory for the next flush (lib/pending.h).  Copy-ups
 * into more distinct bitmap words than may wait at once force a write-out
 * midway; after the flush every block must still be the overlay's.
 */
static void pending_bits(void)
{
	const uint64_t spread = 64, n = 5000, bs = 4096, size = n * spread * bs;
	struct pcow_create_opts o = {.struct_size = sizeof(o), .size = size, .block_size = bs};
	struct pcow_map_stats st;
	uint8_t block[4096], got[4096], *base;
	pcow_image *img;
	pcow_map *map;
	uint64_t i;
	int fd;

	fd = open(test_path("pb.raw"), O_CREAT | O_WRONLY, 0644);
	CHECK(fd >= 0 && ftruncate(fd, (off_t)size) == 0);
	for (i = 0; i < n; i++) {
		test_fill(block, bs, 5, i * spread * bs);
		CHECK(pwrite(fd, block, bs, (off_t)(i * spread * bs)) == (ssize_t)bs);
	}
	close(fd);
	o.backing_file = "pb.raw";
	o.backing_format = PCOW_FORMAT_RAW;
	OK(pcow_create(test_path("pb.pcow"), &o));
	OK(pcow_open(&img, test_path("pb.pcow"), 0));
	OK(pcow_map_new(&map, img, 0));
	base = pcow_map_addr(map);
	/* One block per bitmap word, so each copy-up adds a pending word. */
	for (i = 0; i < n; i++)
		*(uint64_t *)(base + i * spread * bs) = i + 1;
	OK(pcow_map_get_stats(map, &st));
	CHECK(st.blocks_copied == n);
	CHECK(st.blocks_allocated == n);
	OK(pcow_map_flush(map));
	OK(pcow_map_delete(&map));
	OK(pcow_close(&img));
	OK(pcow_open(&img, test_path("pb.pcow"), 0));
	for (i = 0; i < n; i++) {
		uint64_t off = i * spread * bs;

		test_fill(block, bs, 5, off);
		*(uint64_t *)block = i + 1;
		OK(pcow_read(img, got, bs, off));
		CHECK(memcmp(got, block, bs) == 0);
	}
	/* The backing file changing under the overlay must not show: every
	 * copied block is the overlay's, by its bit on disk. */
	fd = open(test_path("pb.raw"), O_WRONLY);
	CHECK(fd >= 0);
	memset(block, 0xee, bs);
	for (i = 0; i < n; i += 7)
		CHECK(pwrite(fd, block, bs, (off_t)(i * spread * bs)) == (ssize_t)bs);
	close(fd);
	for (i = 0; i < n; i += 7) {
		OK(pcow_read(img, got, 8, i * spread * bs));
		CHECK(*(uint64_t *)got == i + 1);
	}
	OK(pcow_close(&img));
}

/* Writes len bytes of c at off of a file, creating it of size bytes. */
static void raw_fill(const char *name, uint64_t size, uint64_t off, uint64_t len, int c)
{
	uint8_t buf[4096];
	int fd = open(test_path(name), O_CREAT | O_RDWR, 0644);
	uint64_t done;

	CHECK(fd >= 0 && ftruncate(fd, (off_t)size) == 0);
	memset(buf, c, sizeof(buf));
	for (done = 0; done < len; done += sizeof(buf))
		CHECK(pwrite(fd, buf, sizeof(buf), (off_t)(off + done)) == (ssize_t)sizeof(buf));
	close(fd);
}

/*
 * A block the overlay discarded lies between two inherited runs of the
 * same file: the gap must not be bridged from that file, which still has
 * data there.
 */
static void no_bridge_over_discard(void)
{
	struct pcow_create_opts o = {.struct_size = sizeof(o), .size = 64 << 20, .block_size = 4096,
				     .backing_file = "nb.raw",
				     .backing_format = PCOW_FORMAT_RAW};
	pcow_image *img;
	pcow_map *map;
	uint8_t *base;
	int i;

	raw_fill("nb.raw", 64 << 20, 0, 3 * 4096, 0xaa);
	OK(pcow_create(test_path("nb.pcow"), &o));
	OK(pcow_open(&img, test_path("nb.pcow"), 0));
	OK(pcow_discard(img, 4096, 4096));
	OK(pcow_close(&img));
	OK(pcow_open(&img, test_path("nb.pcow"), 0));
	OK(pcow_map_new(&map, img, 0));
	base = pcow_map_addr(map);
	for (i = 0; i < 4096; i++)
		CHECK(base[i] == 0xaa && base[4096 + i] == 0 && base[8192 + i] == 0xaa);
	base[4096 + 10] = 0x55;
	CHECK(base[4096] == 0 && base[4096 + 10] == 0x55);
	OK(pcow_map_delete(&map));
	OK(pcow_close(&img));
}

/*
 * On tmpfs a read fault on a hole allocates the page.  Reading through one
 * overlay's mapping must not give the shared base file data where it had
 * none: another overlay wrote there (no copy bit: nothing was below) and
 * would lose its data to the base's.
 */
static void shared_base_stays_sparse(void)
{
	struct pcow_create_opts o = {.struct_size = sizeof(o), .size = 64 << 20, .block_size = 4096,
				     .backing_file = "sb2.raw",
				     .backing_format = PCOW_FORMAT_RAW};
	volatile uint8_t *base;
	pcow_image *o1, *o2;
	pcow_map *map;
	uint8_t buf[4];

	raw_fill("sb2.raw", 64 << 20, 0, 4096, 0xaa);
	raw_fill("sb2.raw", 64 << 20, 8192, 4096, 0xaa);
	OK(pcow_create(test_path("sb2-1.pcow"), &o));
	OK(pcow_create(test_path("sb2-2.pcow"), &o));
	OK(pcow_open(&o2, test_path("sb2-2.pcow"), 0));
	OK(pcow_write(o2, "\x55\x55\x55\x55", 4, 4096));
	OK(pcow_close(&o2));
	OK(pcow_open(&o1, test_path("sb2-1.pcow"), 0));
	OK(pcow_map_new(&map, o1, 0));
	base = pcow_map_addr(map);
	CHECK(base[4096] == 0 && base[0] == 0xaa && base[8192] == 0xaa);
	OK(pcow_open(&o2, test_path("sb2-2.pcow"), PCOW_OPEN_RDONLY));
	OK(pcow_read(o2, buf, 4, 4096));
	CHECK(memcmp(buf, "\x55\x55\x55\x55", 4) == 0);
	OK(pcow_close(&o2));
	OK(pcow_map_delete(&map));
	OK(pcow_close(&o1));
}

/* The block as pcow_read sees it is what the mapping shows. */
static void expect_same(pcow_image *img, const uint8_t *base, uint64_t block)
{
	uint8_t got[4096];

	OK(pcow_read(img, got, sizeof(got), block * sizeof(got)));
	CHECK(memcmp(got, base + block * sizeof(got), sizeof(got)) == 0);
}

/*
 * Writes and discards through the byte API show in the mapping, and stores
 * into the mapping show to pcow_read, on every kind of block a map holds:
 * inherited, the overlay's own, bridged gaps between inherited runs (on
 * file systems that bridge), blocks nobody holds, and the same blocks
 * inside anonymous stretches once the map is compacted (budget "16").
 */
static void api_changes_show(const char *budget)
{
	/* 32 MiB: gaps of one block are narrow enough to bridge by default. */
	const uint64_t bs = 4096, size = 32 << 20;
	/* inherited, own, gap between inherited runs, nobody's */
	const uint64_t blocks[] = {10, 200, 11, 33, 101, 301, 700, 5000};
	uint8_t buf[4096];
	struct pcow_map_stats st;
	volatile uint8_t *base;
	pcow_image *img;
	pcow_map *map;
	uint64_t b, i;
	int fd, round;

	unlink(test_path("api.pcow"));
	img = test_overlay_on_raw("api.raw", size, buf, 0, 0, "api.pcow", bs);
	fd = open(test_path("api.raw"), O_WRONLY);
	CHECK(fd >= 0);
	for (b = 0; b < 512; b += 2) {
		test_fill(buf, bs, 21, b * bs);
		CHECK(pwrite(fd, buf, bs, (off_t)(b * bs)) == (ssize_t)bs);
	}
	close(fd);
	/* The overlay's own blocks split the inherited runs below 64. */
	for (b = 1; b < 64; b += 2) {
		test_fill(buf, bs, 22, b * bs);
		OK(pcow_write(img, buf, bs, b * bs));
	}
	if (budget)
		setenv("PCOW_VMA_BUDGET", budget, 1);
	OK(pcow_map_new(&map, img, 0));
	unsetenv("PCOW_VMA_BUDGET");
	base = pcow_map_addr(map);
	OK(pcow_map_get_stats(map, &st));
	{
		char gap[256], own[256];

		/* The cases this is about, where the file system allows them. */
		shown_from((const uint8_t *)base + 101 * bs, gap, sizeof(gap));
		shown_from((const uint8_t *)base + 33 * bs, own, sizeof(own));
		printf("api changes (budget %s): %llu vmas; a gap block shows %s, an own block %s\n",
		       budget ? budget : "default", (unsigned long long)st.vmas,
		       gap[0] ? gap : "anonymous memory", own[0] ? own : "anonymous memory");
		if (!on_tmpfs(test_dir()) && !budget)
			CHECK(strcmp(gap, "api.raw") == 0);
		if (budget)
			CHECK(own[0] == '\0');
	}
	for (i = 0; i < sizeof(blocks) / sizeof(blocks[0]); i++) {
		b = blocks[i];
		expect_same(img, (const uint8_t *)base, b);
		/* the first round writes first, the second discards first */
		for (round = 0; round < 2; round++) {
			if (round == 0) {
				memset(buf, 'Y', 100);
				OK(pcow_write(img, buf, 100, b * bs + 50));
				CHECK(base[b * bs + 50] == 'Y' && base[b * bs + 149] == 'Y');
			} else {
				OK(pcow_discard(img, b * bs, bs));
				CHECK(base[b * bs + 50] == 0 && base[b * bs + 4000] == 0);
			}
			expect_same(img, (const uint8_t *)base, b);
			base[b * bs + 300 + round] = 'Z';
			expect_same(img, (const uint8_t *)base, b);
		}
		OK(pcow_discard(img, b * bs, bs));
		CHECK(base[b * bs + 300] == 0);
		expect_same(img, (const uint8_t *)base, b);
	}
	for (b = 0; b < size / bs; b++)
		expect_same(img, (const uint8_t *)base, b);
	OK(pcow_map_delete(&map));
	OK(pcow_close(&img));
}

/* Runs the case when no case is named on the command line, or this one is. */
static bool run_case(int argc, char **argv, const char *name)
{
	int i;

	for (i = 1; i < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return true;
	return argc < 2;
}

/* test_map [CASE...]: all cases, or those named (e.g. the short ones in a
 * slow guest, tests/vm/pmhost.sh). */
/* True when the page at addr is in the process's page tables. */
static bool page_present(const void *addr)
{
	long pg = sysconf(_SC_PAGESIZE);
	uint64_t e = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY);

	CHECK(fd >= 0);
	CHECK(pread(fd, &e, 8, (off_t)((uintptr_t)addr / (uintptr_t)pg * 8)) == 8);
	close(fd);
	return e >> 63;
}

/*
 * A snapshot of a fault-mode map write-protects the pages of the layer it
 * freezes where they are (map_keep.c): they stay in the page tables, the
 * map ends up as it would after mapping everything anew (same VMAs, same
 * content), and stores after the snapshot stay out of it.  keep = false
 * maps anew (PCOW_NO_KEEP), for comparison.
 */
static unsigned snapshot_of_stores(bool keep)
{
	const uint64_t bs = 4096, n = 64;
	struct pcow_create_opts o = {.struct_size = sizeof(o), .size = n * bs,
				     .block_size = (uint32_t)bs};
	const char *path = test_path(keep ? "keep.pcow" : "nokeep.pcow");
	pcow_image *img;
	pcow_map *map;
	uint8_t *m;
	uint64_t b;
	unsigned vmas;

	if (keep)
		unsetenv("PCOW_NO_KEEP");
	else
		setenv("PCOW_NO_KEEP", "1", 1);
	unlink(path);
	OK(pcow_create(path, &o));
	OK(pcow_open(&img, path, 0));
	OK(pcow_map_new(&map, img, 0));
	m = pcow_map_addr(map);
	/* Two runs of data with holes around them. */
	for (b = 4; b < 20; b++)
		m[b * bs] = (uint8_t)b;
	for (b = 40; b < 44; b++)
		m[b * bs + 7] = (uint8_t)b;
	OK(pcow_snapshot_create(img, "s1"));
	/* (A striped image's pages come from several files: mapped anew.) */
	if (test_vma_slack(img) == 0)
		CHECK(page_present(m + 4 * bs) == keep &&
		      page_present(m + 41 * bs) == keep);
	vmas = vmas_in(m, n * bs);
	for (b = 0; b < n; b++)
		CHECK(m[b * bs] == (b >= 4 && b < 20 ? b : 0) &&
		      m[b * bs + 7] == (b >= 40 && b < 44 ? b : 0));
	/* A later snapshot leaves the older layer's read-only pages alone. */
	OK(pcow_snapshot_create(img, "s2"));
	if (test_vma_slack(img) == 0)
		CHECK(page_present(m + 6 * bs) == keep &&
		      page_present(m + 42 * bs) == keep);
	CHECK(vmas_in(m, n * bs) == vmas);
	/* After the snapshot: a store into a frozen block is copied up, one
	 * into a hole allocates; neither reaches s1. */
	m[5 * bs] = 0xee;
	m[30 * bs] = 0xdd;
	OK(pcow_snapshot_apply(img, "s1"));
	CHECK(m[5 * bs] == 5 && m[30 * bs] == 0 && m[41 * bs + 7] == 41);
	OK(pcow_map_delete(&map));
	OK(pcow_close(&img));
	unsetenv("PCOW_NO_KEEP");
	return vmas;
}

int main(int argc, char **argv)
{
	if (run_case(argc, argv, "snapshot_keeps_pages") && !test_dax()) {
		unsigned kept = snapshot_of_stores(true);

		CHECK(kept == snapshot_of_stores(false));
		printf("snapshot_keeps_pages: ok (%u VMAs)\n", kept);
	}
	if (run_case(argc, argv, "api_changes_show")) {
		api_changes_show(NULL);
		api_changes_show("16");
	}
	if (run_case(argc, argv, "no_bridge_over_discard"))
		no_bridge_over_discard();
	if (run_case(argc, argv, "shared_base_stays_sparse"))
		shared_base_stays_sparse();
	if (run_case(argc, argv, "pending_bits"))
		pending_bits();
	if (run_case(argc, argv, "sparse_backing"))
		sparse_backing();
	if (run_case(argc, argv, "alternate_writes")) {
		CHECK(alternate_writes("1000") <= 1000 + 2 * (1000 / 3));
		CHECK(alternate_writes(NULL) > 1700); /* what the budget prevents */
	}
	if (run_case(argc, argv, "fault_inside_library"))
		fault_inside_library();
	if (run_case(argc, argv, "out_of_space"))
		out_of_space();
	if (run_case(argc, argv, "shuffled_allocate"))
		shuffled_allocate();
	if (run_case(argc, argv, "cow_threads"))
		cow_threads();
	if (run_case(argc, argv, "chaining"))
		chaining();
	printf("map: ok\n");
	return 0;
}
