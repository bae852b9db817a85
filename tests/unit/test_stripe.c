/* test_stripe.c -- striped images (docs/format.md 3.6): where the data
 * lands, I/O, maps, snapshots and check over 2 and 3 extent files, and
 * the extent files an open refuses (missing, swapped, foreign). */
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "capture.h"
#include "test.h"

#define SIZE (4ull << 20)
#define STRIPE (64u << 10)
#define BS 4096u
#define REGION_BASE (2ull << 20)

static char names[4][64];
static const char *ptrs[4];

/* Creates test_path(name) striped over n files "dI/name.I" (relative),
 * extent file i bound to nodes[i] (nodes NULL: none). */
static void create_on(const char *name, uint32_t n, const uint32_t *nodes)
{
	struct pcow_create_opts o = {.struct_size = sizeof(o), .size = SIZE, .block_size = BS,
				     .extent_count = n, .stripe_size = STRIPE,
				     .extent_nodes = nodes};
	uint32_t i;

	for (i = 0; i < n; i++) {
		char d[600];

		snprintf(d, sizeof(d), "%s/d%u", test_dir(), i);
		(void)mkdir(d, 0755);
		snprintf(names[i], sizeof(names[i]), "d%u/%s.%u", i, name, i);
		ptrs[i] = names[i];
	}
	o.extent_files = ptrs;
	OK(pcow_create(test_path(name), &o));
}

static void create(const char *name, uint32_t n)
{
	create_on(name, n, NULL);
}

static const char *extent_path(const char *name, uint32_t i)
{
	static char buf[4][700];
	static unsigned next;
	char *b = buf[next++ % 4];

	snprintf(b, 700, "%s/d%u/%s.%u", test_dir(), i, name, i);
	return b;
}

/* 1 when [off, off+len) of the file at path holds data. */
static int has_data(const char *path, uint64_t off, uint64_t len)
{
	int fd = open(path, O_RDONLY);
	off_t d;

	CHECK(fd >= 0);
	d = lseek(fd, (off_t)off, SEEK_DATA);
	close(fd);
	return d >= 0 && (uint64_t)d < off + len;
}

/* Every stripe's data is in extent file stripe % n, and only
 * there; the image file holds none of it. */
static void check_placement(const char *name, uint32_t n)
{
	uint64_t k;
	uint32_t i;

	for (k = 0; k < SIZE / STRIPE; k++) {
		uint64_t off = REGION_BASE + k * STRIPE;

		for (i = 0; i < n; i++)
			CHECK(has_data(extent_path(name, i), off, STRIPE) == (k % n == i));
		CHECK(!has_data(test_path(name), off, STRIPE));
	}
}

static void expect(pcow_image *img, const uint8_t *want)
{
	test_expect(img, want, SIZE);
}

static void check_clean(pcow_image *img)
{
	struct pcow_check_result r;

	OK(pcow_check(img, 0, &r));
	if (r.corruptions || r.leaks)
		fprintf(stderr, "check: %s\n", r.first_problem);
	CHECK(r.corruptions == 0 && r.leaks == 0);
}

/* Writes, reads, maps, snapshots and checks an image over n files. */
static void run(uint32_t n)
{
	char name[16];
	uint8_t *a = malloc(SIZE), *b = malloc(SIZE), *m;
	struct pcow_info info = {.struct_size = sizeof(info)};
	struct pcow_map_stats st;
	pcow_image *img;
	pcow_map *map;
	uint32_t i;

	CHECK(a && b);
	snprintf(name, sizeof(name), "s%u.pcow", n);
	create(name, n);
	OK(pcow_open(&img, test_path(name), 0));
	OK(pcow_get_info(img, &info));
	CHECK(info.extent_count == n && info.stripe_size == STRIPE);
	CHECK(info.incompatible_features & 2);
	for (i = 0; i < n; i++)
		CHECK(!strcmp(pcow_extent_file(img, i), names[i]));
	CHECK(pcow_extent_file(img, n) == NULL);

	/* A write across every stripe boundary, read back whole. */
	test_fill(a, SIZE, n, 0);
	OK(pcow_write(img, a + 100, SIZE - 200, 100));
	memset(a, 0, 100);
	memset(a + SIZE - 100, 0, 100);
	expect(img, a);
	OK(pcow_flush(img));
	check_placement(name, n);
	check_clean(img);

	/* The map: loads see the data, stores land in the right files. */
	OK(pcow_map_new(&map, img, 0));
	m = pcow_map_addr(map);
	CHECK(memcmp(m, a, SIZE) == 0);
	OK(pcow_map_get_stats(map, &st));
	CHECK(st.vmas >= SIZE / STRIPE && st.vmas <= 2 + test_vma_slack(img));
	test_fill(b, SIZE, n + 10, 0);
	memcpy(m, b, SIZE);
	OK(pcow_map_flush(map));
	OK(pcow_map_delete(&map));
	expect(img, b);
	check_placement(name, n);

	/* A snapshot, new data over it, a revert: the old data again. */
	OK(pcow_snapshot_create(img, "one"));
	OK(pcow_write(img, a, SIZE / 2, STRIPE / 2));
	OK(pcow_map_new(&map, img, 0));
	m = pcow_map_addr(map);
	memset(m + STRIPE - 10, 0x5a, 20);      /* copy-up across a boundary */
	OK(pcow_map_flush(map));
	OK(pcow_map_delete(&map));
	check_clean(img);
	OK(pcow_snapshot_apply(img, "one"));
	expect(img, b);
	check_clean(img);
	OK(pcow_snapshot_delete(img, "one"));
	expect(img, b);
	check_clean(img);
	OK(pcow_close(&img));

	/* Read-only, and again read-write: the same. */
	OK(pcow_open(&img, test_path(name), PCOW_OPEN_RDONLY));
	expect(img, b);
	OK(pcow_close(&img));
	free(a);
	free(b);
}

/* The open fails with err, naming what, and leaves the image file
 * as it was (nothing is written before the extent files are known good). */
static void refused(const char *name, int err, const char *what)
{
	uint8_t *before = test_read_file(test_path(name), 1 << 20), *after;
	pcow_image *img;
	int ret = pcow_open(&img, test_path(name), 0);

	printf("refused: %s\n", pcow_errormsg());
	CHECK(ret == err);
	CHECK(strstr(pcow_errormsg(), what));
	after = test_read_file(test_path(name), 1 << 20);
	CHECK(memcmp(before, after, 1 << 20) == 0);
	free(before);
	free(after);
}

static void refusals(void)
{
	uint8_t buf[4096];
	pcow_image *img;
	int fd;

	create("r.pcow", 3);
	OK(pcow_open(&img, test_path("r.pcow"), 0));
	test_fill(buf, sizeof(buf), 1, 0);
	OK(pcow_write(img, buf, sizeof(buf), 0));
	OK(pcow_close(&img));

	/* Missing. */
	CHECK(rename(extent_path("r.pcow", 1), test_path("saved")) == 0);
	refused("r.pcow", -ENOENT, "extent file 1");
	CHECK(rename(test_path("saved"), extent_path("r.pcow", 1)) == 0);

	/* Swapped. */
	CHECK(rename(extent_path("r.pcow", 0), test_path("saved")) == 0);
	CHECK(rename(extent_path("r.pcow", 2), extent_path("r.pcow", 0)) == 0);
	CHECK(rename(test_path("saved"), extent_path("r.pcow", 2)) == 0);
	refused("r.pcow", -EUCLEAN, "swapped");
	CHECK(rename(extent_path("r.pcow", 0), test_path("saved")) == 0);
	CHECK(rename(extent_path("r.pcow", 2), extent_path("r.pcow", 0)) == 0);
	CHECK(rename(test_path("saved"), extent_path("r.pcow", 2)) == 0);

	/* Foreign: another image's extent file 1 in its place. */
	create("f.pcow", 3);
	CHECK(rename(extent_path("r.pcow", 1), test_path("saved")) == 0);
	CHECK(rename(extent_path("f.pcow", 1), extent_path("r.pcow", 1)) == 0);
	refused("r.pcow", -EUCLEAN, "belongs to another image");
	CHECK(rename(test_path("saved"), extent_path("r.pcow", 1)) == 0);

	/* Not an extent file at all. */
	CHECK(rename(extent_path("r.pcow", 2), test_path("saved")) == 0);
	fd = open(extent_path("r.pcow", 2), O_CREAT | O_WRONLY, 0644);
	CHECK(fd >= 0 && ftruncate(fd, 64 << 20) == 0);
	close(fd);
	refused("r.pcow", -EUCLEAN, "not a pcow extent file");
	CHECK(rename(test_path("saved"), extent_path("r.pcow", 2)) == 0);

	/* Truncated. */
	fd = open(extent_path("r.pcow", 2), O_WRONLY);
	CHECK(fd >= 0 && ftruncate(fd, 1 << 20) == 0);
	close(fd);
	refused("r.pcow", -EINVAL, "truncated");
	fd = open(extent_path("r.pcow", 2), O_WRONLY);
	CHECK(fd >= 0 && ftruncate(fd, 64 << 20) == 0);
	close(fd);

	/* All back in place: the image opens and reads as written. */
	OK(pcow_open(&img, test_path("r.pcow"), 0));
	{
		uint8_t got[4096];

		OK(pcow_read(img, got, sizeof(got), 0));
		CHECK(memcmp(got, buf, sizeof(got)) == 0);
	}
	OK(pcow_close(&img));
}

/* Every file is locked: a writer holds each extent file's lock
 * too. */
static void locking(void)
{
	struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_len = 1};
	pcow_image *img, *other;
	uint32_t i;
	int fd;

	create("l.pcow", 2);
	OK(pcow_open(&img, test_path("l.pcow"), 0));
	CHECK(pcow_open(&other, test_path("l.pcow"), PCOW_OPEN_RDONLY) == -EBUSY);
	for (i = 0; i < 2; i++) {
		fd = open(extent_path("l.pcow", i), O_RDONLY);
		CHECK(fd >= 0);
		CHECK(fcntl(fd, F_OFD_SETLK, &fl) < 0);
		close(fd);
	}
	OK(pcow_close(&img));
	/* Readers share. */
	OK(pcow_open(&img, test_path("l.pcow"), PCOW_OPEN_RDONLY));
	OK(pcow_open(&other, test_path("l.pcow"), PCOW_OPEN_RDONLY));
	OK(pcow_close(&other));
	OK(pcow_close(&img));
}

/* Data in an extent file where the layout puts none of its bytes
 * is read by nothing: check finds it as a leak, -r leaks punches it, and the image
 * reads the same. */
static void strays(void)
{
	struct pcow_check_result r;
	uint8_t buf[4096], *want = malloc(SIZE);
	pcow_image *img;
	int fd;

	CHECK(want);
	create("x.pcow", 2);
	OK(pcow_open(&img, test_path("x.pcow"), 0));
	test_fill(want, SIZE, 3, 0);
	OK(pcow_write(img, want, SIZE, 0));
	OK(pcow_close(&img));
	/* Stripe 1 belongs to extent file 1: zeros in extent file 0 there
	 * (the zero fill of a large folio) are no leak... */
	memset(buf, 0, sizeof(buf));
	fd = open(extent_path("x.pcow", 0), O_WRONLY);
	CHECK(fd >= 0 && pwrite(fd, buf, sizeof(buf), REGION_BASE + STRIPE + 8192) == sizeof(buf));
	close(fd);
	CHECK(has_data(extent_path("x.pcow", 0), REGION_BASE + STRIPE, STRIPE));
	OK(pcow_open(&img, test_path("x.pcow"), 0));
	check_clean(img);
	OK(pcow_close(&img));
	/* ...other data is. */
	memset(buf, 0xee, sizeof(buf));
	fd = open(extent_path("x.pcow", 0), O_WRONLY);
	CHECK(fd >= 0 && pwrite(fd, buf, sizeof(buf), REGION_BASE + STRIPE) == sizeof(buf));
	close(fd);
	OK(pcow_open(&img, test_path("x.pcow"), 0));
	expect(img, want);
	OK(pcow_check(img, 0, &r));
	printf("stray: %s\n", r.first_problem);
	CHECK(r.leaks == 1 && r.corruptions == 0 && strstr(r.first_problem, "extent file 0"));
	OK(pcow_check(img, PCOW_CHECK_FIX_LEAKS, &r));
	CHECK(r.leaks_fixed == 1);
	check_clean(img);
	expect(img, want);
	OK(pcow_close(&img));
	/* The stray bytes are gone (punched; the zero fill may stay). */
	fd = open(extent_path("x.pcow", 0), O_RDONLY);
	CHECK(fd >= 0 && pread(fd, buf, sizeof(buf), REGION_BASE + STRIPE) == sizeof(buf));
	close(fd);
	CHECK(buf[0] == 0 && !memcmp(buf, buf + 1, sizeof(buf) - 1));
	free(want);
}

/* Sizes the format refuses: too many stripes for the capacity, a stripe
 * smaller than a block, one extent file. */
static void bad_options(void)
{
	struct pcow_create_opts o = {.struct_size = sizeof(o), .size = 1ull << 30,
				     .block_size = BS, .extent_count = 2,
				     .stripe_size = 64u << 10};
	const char *two[2] = {"b0", "b1"};

	o.extent_files = two;
	CHECK(pcow_create(test_path("b.pcow"), &o) == -EINVAL);
	CHECK(strstr(pcow_errormsg(), "too small"));
	CHECK(access(test_path("b0"), F_OK) != 0);
	o.stripe_size = 256u << 10;             /* 4096 stripes: allowed */
	OK(pcow_create(test_path("b.pcow"), &o));
	CHECK(access(test_path("b0"), F_OK) == 0);
	o.stripe_size = 64u << 10;
	o.block_size = 128u << 10;
	o.size = 64 << 20;
	CHECK(pcow_create(test_path("c.pcow"), &o) == -EINVAL);
	o.block_size = BS;
	o.extent_count = 1;
	CHECK(pcow_create(test_path("c.pcow"), &o) == -EINVAL);
	CHECK(access(test_path("c.pcow"), F_OK) != 0);
	/* An extent file that exists is never overwritten. */
	o.extent_count = 2;
	CHECK(pcow_create(test_path("c.pcow"), &o) == -EEXIST);
	CHECK(access(test_path("c.pcow"), F_OK) != 0);
}

/* Backing files striped or not, on either side: copy-up through the
 * overlay, then commit into the base. */
static void mixed_chain(bool base_striped, bool top_striped)
{
	struct pcow_create_opts o = {.struct_size = sizeof(o), .size = SIZE, .block_size = BS};
	char base[16], top[16];
	uint8_t *want = malloc(SIZE), buf[10000];
	pcow_image *img;

	CHECK(want);
	snprintf(base, sizeof(base), "mb%d%d.pcow", base_striped, top_striped);
	snprintf(top, sizeof(top), "mt%d%d.pcow", base_striped, top_striped);
	if (base_striped)
		create(base, 2);
	else
		OK(pcow_create(test_path(base), &o));
	OK(pcow_open(&img, test_path(base), 0));
	test_fill(want, SIZE, 21, 0);
	OK(pcow_write(img, want, SIZE, 0));
	OK(pcow_close(&img));
	o.backing_file = base;
	o.backing_format = PCOW_FORMAT_PCOW;
	if (top_striped) {
		const char *two[2] = {names[0], names[1]};

		snprintf(names[0], sizeof(names[0]), "d0/%s.0", top);
		snprintf(names[1], sizeof(names[1]), "d1/%s.1", top);
		o.extent_files = two;
		o.extent_count = 2;
		o.stripe_size = STRIPE;
		OK(pcow_create(test_path(top), &o));
	} else {
		OK(pcow_create(test_path(top), &o));
	}
	OK(pcow_open(&img, test_path(top), 0));
	test_fill(buf, sizeof(buf), 22, STRIPE - 5000);
	OK(pcow_write(img, buf, sizeof(buf), STRIPE - 5000));   /* copy-ups */
	memcpy(want + STRIPE - 5000, buf, sizeof(buf));
	expect(img, want);
	check_clean(img);
	OK(pcow_commit(img, NULL, 0));
	expect(img, want);
	OK(pcow_close(&img));
	OK(pcow_open(&img, test_path(base), 0));
	expect(img, want);
	check_clean(img);
	OK(pcow_close(&img));
	free(want);
}

/*
 * The memory policy /proc/self/numa_maps shows for the VMA that starts at
 * addr ("bind:0", "default", ...), and in *file whether it maps a file
 * whose name ends in suffix; NULL when no VMA starts there.
 */
static const char *policy_at(const void *addr, const char *suffix, bool *file)
{
	static char policy[64];
	char line[4096];
	FILE *f = fopen("/proc/self/numa_maps", "r");
	const char *found = NULL;

	CHECK(f);
	while (!found && fgets(line, sizeof(line), f)) {
		char *fn = strstr(line, " file=");

		if (strtoull(line, NULL, 16) != (uintptr_t)addr ||
		    sscanf(line, "%*x %63s", policy) != 1)
			continue;
		if (fn)
			fn[1 + strcspn(fn + 1, " \n")] = '\0';
		*file = fn && strlen(fn) >= strlen(suffix) &&
			!strcmp(fn + strlen(fn) - strlen(suffix), suffix);
		found = policy;
	}
	fclose(f);
	return found;
}

/* Every stripe of the map m of the n-extent image name has the policy
 * want[i % n] of its extent file i, and maps that file. */
static void check_policies(const uint8_t *m, const char *name, uint32_t n,
			   const char *const *want)
{
	for (uint32_t k = 0; k < SIZE / STRIPE; k++) {
		char suffix[64];
		const char *p;
		bool file;

		snprintf(suffix, sizeof(suffix), "/d%u/%s.%u", k % n, name, k % n);
		p = policy_at(m + (size_t)k * STRIPE, suffix, &file);
		if (!p || !file || strcmp(p, want[k % n])) {
			fprintf(stderr, "stripe %u: policy %s (want %s), file %s\n", k,
				p ? p : "(no VMA)", want[k % n], p && file ? "right" : "wrong");
			CHECK(0);
		}
	}
}

/*
 * NUMA placement (docs/design.md): every map of extent file i is bound to
 * its node, also one a copy-up maps anew; a node this host lacks is kept
 * and shown but binds nothing; no nodes: no binding.
 */
static void numa_nodes(void)
{
	static const char *const bound[] = {"bind:0", "bind:0"};
	static const char *const half[] = {"bind:0", "default"};
	static const char *const none[] = {"default", "default"};
	const uint32_t zero[2] = {0, 0}, far[2] = {0, 1000}, bad[2] = {0, 1024};
	struct pcow_create_opts o = {.struct_size = sizeof(o), .size = SIZE, .block_size = BS,
				     .extent_count = 2, .stripe_size = STRIPE,
				     .extent_files = ptrs, .extent_nodes = bad};
	pcow_image *img;
	pcow_map *map;
	uint8_t *m;
	int applied;

	create_on("n0.pcow", 2, zero);
	OK(pcow_open(&img, test_path("n0.pcow"), 0));
	CHECK(pcow_extent_node(img, 0, &applied) == 0 && applied == 1);
	CHECK(pcow_extent_node(img, 1, &applied) == 0 && applied == 1);
	CHECK(pcow_extent_node(img, 2, &applied) == -ENOENT);
	OK(pcow_map_new(&map, img, 0));
	m = pcow_map_addr(map);
	memset(m, 1, BS);                       /* extent 0 */
	memset(m + STRIPE, 2, BS);              /* extent 1 */
	check_policies(m, "n0.pcow", 2, bound);
	OK(pcow_map_delete(&map));
	/* A copy-up maps the copied block anew: bound again. */
	OK(pcow_snapshot_create(img, "s"));
	OK(pcow_map_new(&map, img, 0));
	m = pcow_map_addr(map);
	memset(m + STRIPE, 3, BS);
	CHECK(m[STRIPE] == 3 && m[0] == 1);
	check_policies(m, "n0.pcow", 2, bound);
	OK(pcow_map_delete(&map));
	OK(pcow_close(&img));

	create("n1.pcow", 2);
	OK(pcow_open(&img, test_path("n1.pcow"), 0));
	CHECK(pcow_extent_node(img, 0, &applied) == -1 && applied == 0);
	OK(pcow_map_new(&map, img, 0));
	m = pcow_map_addr(map);
	memset(m, 1, STRIPE * 2);
	check_policies(m, "n1.pcow", 2, none);
	OK(pcow_map_delete(&map));
	OK(pcow_close(&img));

	create_on("n2.pcow", 2, far);
	OK(pcow_open(&img, test_path("n2.pcow"), 0));
	CHECK(pcow_extent_node(img, 0, &applied) == 0 && applied == 1);
	CHECK(pcow_extent_node(img, 1, &applied) == 1000 && applied == 0);
	OK(pcow_map_new(&map, img, 0));
	m = pcow_map_addr(map);
	CHECK(m[0] == 0 && m[STRIPE] == 0);
	check_policies(m, "n2.pcow", 2, half);
	OK(pcow_map_delete(&map));
	OK(pcow_close(&img));

	/* Past the format's largest node, or nodes without extent files. */
	CHECK(pcow_create(test_path("n3.pcow"), &o) == -EINVAL);
	CHECK(strstr(pcow_errormsg(), "invalid node 1024"));
	o.extent_count = 0;
	o.extent_nodes = zero;
	CHECK(pcow_create(test_path("n3.pcow"), &o) == -EINVAL);
	CHECK(access(test_path("n3.pcow"), F_OK) != 0);
}

int main(void)
{
	run(2);
	run(3);
	refusals();
	locking();
	strays();
	bad_options();
	mixed_chain(false, true);
	mixed_chain(true, false);
	mixed_chain(true, true);
	numa_nodes();
	printf("ok\n");
	return 0;
}
