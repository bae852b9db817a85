/* test_kcow.c -- kernel copy-on-write maps (PCOW_MAP_KERNEL_COW): stores
 * into inherited blocks never fault, locked instructions included; the
 * copies reach the image at flush, at the persist interval, when the byte
 * API touches their block and at unmap; no store racing with a write-back
 * is lost; compacted maps and bridged gaps keep their stores; the VMA
 * count stays within budget. */
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"

#define BS 4096u

static uint8_t pattern_of(uint64_t off)
{
	return (uint8_t)(0x40 + off / BS % 61);
}

/* An overlay of size bytes over a raw base holding pattern_of everywhere,
 * mapped with kernel copy-on-write. */
static pcow_image *overlay_bs(const char *name, uint64_t size, uint32_t bs,
			     pcow_map **map)
{
	uint8_t *data = malloc(size);
	pcow_image *img;
	uint64_t i;
	char raw[64];

	CHECK(data);
	for (i = 0; i < size; i++)
		data[i] = pattern_of(i);
	snprintf(raw, sizeof(raw), "%s.raw", name);
	img = test_overlay_on_raw(raw, size, data, 0, size, name, bs);
	free(data);
	OK(pcow_map_new(map, img, PCOW_MAP_KERNEL_COW));
	return img;
}

static pcow_image *overlay(const char *name, uint64_t size, pcow_map **map)
{
	return overlay_bs(name, size, BS, map);
}

static void check_clean(pcow_image *img)
{
	struct pcow_check_result r = {0};

	OK(pcow_check(img, 0, &r));
	CHECK(r.corruptions == 0 && r.leaks == 0);
}

/* Reopens name and returns its content (size bytes). */
static uint8_t *reread(const char *name, uint64_t size)
{
	uint8_t *buf = malloc(size);
	pcow_image *img;

	CHECK(buf);
	OK(pcow_open(&img, test_path(name), 0));
	OK(pcow_read(img, buf, size, 0));
	check_clean(img);
	OK(pcow_close(&img));
	return buf;
}

#ifdef __x86_64__
/* lock cmpxchg16b, which the compiler emits only with -mcx16. */
static bool cas16(void *p, const void *old, const void *nv)
{
	uint64_t o[2], n[2];
	bool ok;

	memcpy(o, old, 16);
	memcpy(n, nv, 16);
	__asm__ volatile("lock cmpxchg16b %1\n\tsete %0"
			 : "=q"(ok), "+m"(*(unsigned __int128 *)p), "+a"(o[0]), "+d"(o[1])
			 : "b"(n[0]), "c"(n[1])
			 : "memory", "cc");
	return ok;
}
#endif

/* Every store kind into inherited blocks: no fault, and the image holds
 * each one after unmap; unwritten bytes keep the base's content.  On a
 * DAX file system the map is MAP_SYNC and kernel copy-on-write is not
 * used (a private copy is not persistent memory): every store kind then
 * copies its block up at a fault instead, and the rest holds. */
static void stores_need_no_fault(void)
{
	const uint64_t size = 64 * BS;
	struct pcow_map_stats st;
	pcow_map *map;
	pcow_image *img = overlay("stores", size, &map);
	uint8_t *m = pcow_map_addr(map), *want = malloc(size), *got, buf[16];
	uint64_t *w;
	uint64_t i;

	CHECK(want);
	for (i = 0; i < size; i++)
		want[i] = pattern_of(i);
	m[1 * BS + 5] = 0x99;
	want[1 * BS + 5] = 0x99;
	memset(m + 2 * BS + 100, 0x77, 300);
	memset(want + 2 * BS + 100, 0x77, 300);
	w = (uint64_t *)(m + 3 * BS + 64);
	__atomic_fetch_add(w, 5, __ATOMIC_SEQ_CST);                 /* lock add */
	memcpy(&i, want + 3 * BS + 64, 8);
	i += 5;
	memcpy(want + 3 * BS + 64, &i, 8);
	w = (uint64_t *)(m + 4 * BS + 8);
	memcpy(&i, want + 4 * BS + 8, 8);
	CHECK(__sync_bool_compare_and_swap(w, i, 0x1122334455667788ull)); /* lock cmpxchg */
	i = 0x1122334455667788ull;
	memcpy(want + 4 * BS + 8, &i, 8);
	w = (uint64_t *)(m + 5 * BS);
	__atomic_exchange_n(w, 0xabcdefull, __ATOMIC_SEQ_CST);       /* xchg */
	i = 0xabcdefull;
	memcpy(want + 5 * BS, &i, 8);
#ifdef __x86_64__
	{
		uint64_t nv[2] = {9, 7};

		CHECK(cas16(m + 6 * BS + 32, want + 6 * BS + 32, nv));
		memcpy(want + 6 * BS + 32, nv, 16);
	}
#endif
	OK(pcow_map_get_stats(map, &st));
	CHECK(test_dax() ? st.faults > 0 : st.faults == 0);
	/* The byte API reads what the map holds. */
	OK(pcow_read(img, buf, sizeof(buf), 2 * BS + 100));
	CHECK(memcmp(buf, want + 2 * BS + 100, sizeof(buf)) == 0);
	OK(pcow_map_flush(map));
	OK(pcow_map_get_stats(map, &st));
	CHECK((test_dax() ? st.faults > 0 : st.faults == 0) && st.blocks_copied >= 5);
	CHECK(memcmp(m, want, size) == 0);
	/* Written back: stores now go to the image's own pages. */
	m[1 * BS + 6] = 0x98;
	want[1 * BS + 6] = 0x98;
	OK(pcow_map_delete(&map));
	OK(pcow_close(&img));
	got = reread("stores", size);
	CHECK(memcmp(got, want, size) == 0);
	printf("stores_need_no_fault: ok (%llu blocks copied)\n",
	       (unsigned long long)st.blocks_copied);
	free(got);
	free(want);
}

/* A write or discard through the API into a block the map stored into
 * keeps those stores (write) or drops the block (discard), in the map and
 * in the image. */
static void api_changes_keep_stores(void)
{
	const uint64_t size = 16 * BS;
	pcow_map *map;
	pcow_image *img = overlay("api", size, &map);
	uint8_t *m = pcow_map_addr(map), *got, c = 0x31, z[BS] = {0}, buf[BS];

	m[3 * BS] = 0x55;
	OK(pcow_write(img, &c, 1, 3 * BS + 100));
	CHECK(m[3 * BS] == 0x55 && m[3 * BS + 100] == 0x31);
	m[5 * BS + 7] = 0x66;
	OK(pcow_discard(img, 5 * BS, BS));
	CHECK(memcmp(m + 5 * BS, z, BS) == 0);
	OK(pcow_read(img, buf, BS, 3 * BS));
	CHECK(buf[0] == 0x55 && buf[100] == 0x31 && buf[1] == pattern_of(3 * BS));
	OK(pcow_map_delete(&map));
	OK(pcow_close(&img));
	got = reread("api", size);
	CHECK(got[3 * BS] == 0x55 && got[3 * BS + 100] == 0x31);
	CHECK(memcmp(got + 5 * BS, z, BS) == 0);
	CHECK(got[4 * BS] == pattern_of(4 * BS));
	printf("api_changes_keep_stores: ok\n");
	free(got);
}

/* Threads keep adding (lock add) to counters in inherited blocks, all of
 * them in the same block at a time, while the main thread writes back the
 * very block they are at (byte API reads), and everything now and then
 * (flushes, a 1 ms persist interval): a store lost in a write-back shows
 * as a counter short of its count. */
#define THREADS 3
#define BLOCKS 16
#define HBS (1u << 20)  /* a copy long enough for the stores to run into it */
#define REPS 200000

struct hammer {
	uint8_t *m;
	int t;
	atomic_int *done;
	atomic_uint_fast64_t *at;
};

static void *hammer_main(void *opaque)
{
	struct hammer *h = opaque;
	uint64_t r, b;

	for (b = 0; b < BLOCKS; b++) {
		if (h->t == 0)
			atomic_store(h->at, b);
		for (r = 0; r < REPS; r++)
			__atomic_fetch_add((uint64_t *)(h->m + b * HBS + (uint64_t)h->t * 64),
					   1, __ATOMIC_RELAXED);
	}
	atomic_fetch_add(h->done, 1);
	return NULL;
}

static void expect_counts(const uint8_t *p)
{
	uint64_t b, v, base;
	int t;

	for (b = 0; b < BLOCKS; b++)
		for (t = 0; t < THREADS; t++) {
			memset(&base, pattern_of(b * HBS), 8);
			memcpy(&v, p + b * HBS + (uint64_t)t * 64, 8);
			if (v != base + REPS)
				fprintf(stderr, "block %llu thread %d: %llu stores of %u\n",
					(unsigned long long)b, t,
					(unsigned long long)(v - base), REPS);
			CHECK(v == base + REPS);
		}
}

/* One run; returns how many stores waited for a write-back. */
static uint64_t hammer_once(const char *name)
{
	const uint64_t size = (uint64_t)BLOCKS * HBS;
	struct hammer h[THREADS];
	pthread_t th[THREADS];
	atomic_int done = 0;
	atomic_uint_fast64_t at = 0;
	struct pcow_map_stats st;
	pcow_map *map;
	pcow_image *img = overlay_bs(name, size, HBS, &map);
	uint8_t *m = pcow_map_addr(map), *got, buf[64];
	uint64_t writebacks = 0;
	int t;

	OK(pcow_map_set_persist_interval(map, 1));
	for (t = 0; t < THREADS; t++) {
		h[t] = (struct hammer){.m = m, .t = t, .done = &done, .at = &at};
		CHECK(pthread_create(&th[t], NULL, hammer_main, &h[t]) == 0);
	}
	while (atomic_load(&done) < THREADS) {
		if (++writebacks % 64 == 0)
			OK(pcow_map_flush(map));
		else
			OK(pcow_read(img, buf, sizeof(buf), atomic_load(&at) * HBS));
	}
	for (t = 0; t < THREADS; t++)
		CHECK(pthread_join(th[t], NULL) == 0);
	OK(pcow_map_get_stats(map, &st));
	expect_counts(m);
	OK(pcow_map_delete(&map));
	OK(pcow_close(&img));
	got = reread(name, size);
	expect_counts(got);
	printf("hammer_during_writeback: ok (%llu write-backs, %llu stores waited in the handler, %llu blocks copied)\n",
	       (unsigned long long)writebacks, (unsigned long long)st.faults,
	       (unsigned long long)st.blocks_copied);
	free(got);
	return st.faults;
}

static void hammer_during_writeback(void)
{
	char name[32];
	int i;

	/* A run in which no store happened to meet a write-back proves
	 * little: go on until one did. */
	for (i = 0; i < 8; i++) {
		snprintf(name, sizeof(name), "hammer%d", i);
		if (hammer_once(name) > 0)
			return;
	}
	CHECK(!"no store ever ran into a write-back");
}

/* A base whose data alternates with holes, block by block, under a tiny
 * VMA budget: the map compacts (memfd stretches) and bridges.  Stores into
 * every kind of block land, and the VMA count stays bounded. */
static void compacted(void)
{
	const uint64_t size = 2048 * BS;
	uint8_t *data = calloc(1, size), *m, *want, *got;
	struct pcow_map_stats st;
	pcow_image *img;
	pcow_map *map;
	uint64_t b;

	CHECK(data);
	for (b = 0; b < size / BS; b += 2)
		memset(data + b * BS, pattern_of(b * BS), BS);
	want = malloc(size);
	CHECK(want);
	memcpy(want, data, size);
	setenv("PCOW_VMA_BUDGET", "64", 1);
	img = test_overlay_on_raw("alt.raw", size, data, 0, size, "alt", BS);
	OK(pcow_map_new(&map, img, PCOW_MAP_KERNEL_COW));
	unsetenv("PCOW_VMA_BUDGET");
	m = pcow_map_addr(map);
	CHECK(memcmp(m, want, size) == 0);
	for (b = 0; b < size / BS; b += 3) {
		m[b * BS + b % 100] = (uint8_t)b;
		want[b * BS + b % 100] = (uint8_t)b;
	}
	OK(pcow_map_get_stats(map, &st));
	CHECK(test_dax() ? st.faults > 0 : st.faults == 0);
	OK(pcow_map_flush(map));
	CHECK(memcmp(m, want, size) == 0);
	OK(pcow_map_get_stats(map, &st));
	printf("compacted: %llu VMAs after write-back\n", (unsigned long long)st.vmas);
	CHECK(st.vmas <= 64 + 64 * 2 / 3 + 2);
	OK(pcow_map_delete(&map));
	OK(pcow_close(&img));
	got = reread("alt", size);
	CHECK(memcmp(got, want, size) == 0);
	free(got);
	free(want);
	free(data);
}

/*
 * Snapshots created, deleted and applied while the image is mapped (the
 * caller keeps other threads from storing meanwhile, as QEMU stops its
 * vCPUs): the snapshot holds the stores made before it, the map goes on
 * showing and taking stores, and an applied snapshot shows at once.  In
 * both copy-on-write modes.
 */
static void snapshots_while_mapped(unsigned flags)
{
	const uint64_t size = 32 * BS;
	uint8_t *data = malloc(size), *m, buf[BS];
	struct pcow_snapshot_info *list;
	size_t n;
	pcow_image *img;
	pcow_map *map;
	uint64_t i;
	const char *name = flags ? "live-kernel" : "live-fault";

	CHECK(data);
	for (i = 0; i < size / 2; i++)
		data[i] = pattern_of(i);
	img = test_overlay_on_raw(flags ? "live-kernel.raw" : "live-fault.raw",
				  size, data, 0, size / 2, name, BS);
	OK(pcow_map_new(&map, img, flags));
	m = pcow_map_addr(map);
	m[1 * BS] = 'A';                /* inherited from the base */
	m[20 * BS] = 'h';               /* a hole */
	OK(pcow_snapshot_create(img, "s1"));
	CHECK(m[1 * BS] == 'A' && m[20 * BS] == 'h' && m[2 * BS] == pattern_of(2 * BS));
	m[1 * BS] = 'B';                /* inherited from s1 now */
	m[20 * BS + 1] = 'i';
	m[21 * BS] = 'j';
	OK(pcow_read(img, buf, 2, 20 * BS));
	CHECK(buf[0] == 'h' && buf[1] == 'i');
	OK(pcow_snapshot_create(img, "s2"));
	OK(pcow_snapshot_delete(img, "s1"));
	CHECK(m[1 * BS] == 'B' && m[20 * BS] == 'h' && m[20 * BS + 1] == 'i' &&
	      m[21 * BS] == 'j' && m[3 * BS] == pattern_of(3 * BS));
	m[1 * BS] = 'C';
	m[22 * BS] = 'k';
	OK(pcow_snapshot_apply(img, "s2"));
	CHECK(m[1 * BS] == 'B' && m[22 * BS] == 0 && m[21 * BS] == 'j');
	m[1 * BS + 1] = 'D';
	OK(pcow_map_delete(&map));
	OK(pcow_close(&img));
	OK(pcow_open(&img, test_path(name), 0));
	check_clean(img);
	OK(pcow_read(img, buf, BS, 1 * BS));
	CHECK(buf[0] == 'B' && buf[1] == 'D' && buf[2] == pattern_of(1 * BS));
	OK(pcow_snapshot_list(img, &list, &n));
	CHECK(n == 1 && strcmp(list[0].name, "s2") == 0);
	free(list);
	OK(pcow_snapshot_apply(img, "s2"));
	OK(pcow_read(img, buf, BS, 1 * BS));
	CHECK(buf[0] == 'B' && buf[1] == pattern_of(1 * BS));
	OK(pcow_close(&img));
	printf("snapshots_while_mapped (%s mode): ok\n", flags ? "kernel" : "fault");
	free(data);
}

/* pcow_map_get_pending counts the kernel's copies until they are written
 * back, then the copied blocks until a flush records their ownership. */
static void pending_counted(unsigned flags)
{
	struct pcow_map_pending p = {0};
	pcow_map *map;
	pcow_image *img = overlay(flags ? "pend-kernel" : "pend-fault", 16 * BS, &map);
	uint8_t *m = pcow_map_addr(map), buf[4];

	if (!flags) {
		OK(pcow_map_delete(&map));
		OK(pcow_map_new(&map, img, 0));
		m = pcow_map_addr(map);
	}
	OK(pcow_map_set_persist_interval(map, 0));
	CHECK(pcow_map_get_pending(map, &p) == -EINVAL);
	p.struct_size = sizeof(p);
	OK(pcow_map_get_pending(map, &p));
	CHECK(p.struct_size == sizeof(p) && p.blocks == 0 && p.kernel_copies == 0);
	m[2 * BS] = 1;
	m[3 * BS] = 2;
	m[4 * BS + 100] = 3;
	OK(pcow_map_get_pending(map, &p));
	if (flags)
		CHECK(p.kernel_copies == 3 && p.blocks == 0);
	else
		CHECK(p.kernel_copies == 0 && p.blocks == 3);
	/* The byte API writes back the block it reads. */
	OK(pcow_read(img, buf, sizeof(buf), 3 * BS));
	OK(pcow_map_get_pending(map, &p));
	if (flags)
		CHECK(p.kernel_copies == 2 && p.blocks == 1);
	OK(pcow_map_flush(map));
	OK(pcow_map_get_pending(map, &p));
	CHECK(p.blocks == 0 && p.kernel_copies == 0);
	OK(pcow_map_delete(&map));
	OK(pcow_close(&img));
	printf("pending_counted (%s mode): ok\n", flags ? "kernel" : "fault");
}

/* Fills the file system under path up to the last few KiB. */
static void fill(const char *path)
{
	static char chunk[65536];
	int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);

	CHECK(fd >= 0);
	memset(chunk, 1, sizeof(chunk));
	while (write(fd, chunk, sizeof(chunk)) > 0)
		;
	while (write(fd, chunk, 4096) > 0)
		;
	close(fd);
}

/* The image on a full tmpfs: stores into inherited blocks still succeed
 * (the copies are memory), the write-back fails with ENOSPC and leaves
 * them in place, and once there is room the next one writes them all. */
static void out_of_space_in_child(void)
{
	const uint64_t size = 256 * BS;
	char dir[512], filler[600], name[600], raw[600];
	struct pcow_create_opts o = {.struct_size = sizeof(o), .size = size, .block_size = BS,
				     .backing_format = PCOW_FORMAT_RAW};
	uint8_t *data = malloc(size), *m, *got;
	pcow_image *img;
	pcow_map *map;
	uint64_t b;
	int fd, ret;

	test_in_child();
	snprintf(dir, sizeof(dir), "%s/small", test_dir());
	if (mkdir(dir, 0755) < 0 || unshare(CLONE_NEWNS) < 0 ||
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
	    mount("tmpfs", dir, "tmpfs", 0, "size=4m") < 0)
		_exit(77);
	CHECK(data);
	for (b = 0; b < size; b++)
		data[b] = pattern_of(b);
	/* The base lives outside the small file system. */
	snprintf(raw, sizeof(raw), "%s", test_path("nospace.raw"));
	fd = open(raw, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	CHECK(fd >= 0 && write(fd, data, size) == (ssize_t)size);
	close(fd);
	snprintf(name, sizeof(name), "%s/img", dir);
	o.backing_file = raw;
	OK(pcow_create(name, &o));
	OK(pcow_open(&img, name, 0));
	OK(pcow_map_new(&map, img, PCOW_MAP_KERNEL_COW));
	OK(pcow_map_set_persist_interval(map, 0));
	snprintf(filler, sizeof(filler), "%s/filler", dir);
	fill(filler);
	m = pcow_map_addr(map);
	for (b = 0; b < size / BS; b++)
		m[b * BS + 1] = 0xee;
	ret = pcow_map_flush(map);
	printf("out_of_space: write-back on a full file system: %s\n", strerror(-ret));
	fflush(stdout);
	CHECK(ret == -ENOSPC);
	for (b = 0; b < size / BS; b++)
		m[b * BS + 2] = 0xdd;   /* still writable, still there */
	CHECK(unlink(filler) == 0);
	OK(pcow_map_flush(map));
	OK(pcow_map_delete(&map));
	OK(pcow_close(&img));
	OK(pcow_open(&img, name, 0));
	got = malloc(size);
	CHECK(got);
	OK(pcow_read(img, got, size, 0));
	check_clean(img);
	for (b = 0; b < size; b++) {
		uint8_t want = b % BS == 1 ? 0xee : b % BS == 2 ? 0xdd : pattern_of(b);

		CHECK(got[b] == want);
	}
	OK(pcow_close(&img));
	_exit(0);
}

static void out_of_space(void)
{
	int status;
	pid_t pid = fork();

	CHECK(pid >= 0);
	if (pid == 0)
		out_of_space_in_child();
	CHECK(waitpid(pid, &status, 0) == pid);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
		printf("out_of_space: skipped (cannot mount a tmpfs here)\n");
		return;
	}
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	printf("out_of_space: ok\n");
}

int main(void)
{
	stores_need_no_fault();
	api_changes_keep_stores();
	/* MAP_SYNC maps (DAX) write nothing back: their copies are made at
	 * the store. */
	if (test_dax())
		printf("hammer_during_writeback: skipped (MAP_SYNC: no write-back)\n");
	else
		hammer_during_writeback();
	fflush(stdout);  /* not again from out_of_space's child */
	compacted();
	snapshots_while_mapped(0);
	snapshots_while_mapped(PCOW_MAP_KERNEL_COW);
	/* On DAX copies are made at the store and their ownership is
	 * durable before it completes: nothing is ever pending. */
	if (!test_dax()) {
		pending_counted(0);
		pending_counted(PCOW_MAP_KERNEL_COW);
	}
	out_of_space();
	return 0;
}
