/*
 * test_pending.c -- copy bits that wait for a flush live in the image's
 * own pending log (lib/pending.c, format.md 5): a writer that dies without
 * closing keeps its copy-ups (the next open applies them); a power failure
 * (a new boot) returns unflushed copy-ups to their inherited content; a
 * mapping makes them durable within its persist interval; state outside
 * the image file is never read.
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "test.h"

#include "pending.h"
#include "persist.h"

#define SIZE (4u << 20)
#define BS 65536u
#define LOG_START (512u << 10)
#define LOG_END (2u << 20)

/* A child copies up block 1 (a partial write into an inherited block,
 * not flushed) and dies without closing; through a mapping with the
 * given persist interval (ms) when mapped, after waiting wait_ms. */
static void die_after_copy_up(const char *image, bool mapped, uint64_t interval,
			      unsigned wait_ms)
{
	pid_t pid = fork();
	int status;

	CHECK(pid >= 0);
	if (pid == 0) {
		struct timespec t = {wait_ms / 1000, (long)(wait_ms % 1000) * 1000000L};
		pcow_image *img;
		pcow_map *map;

		test_in_child();
		if (pcow_open(&img, test_path(image), 0) < 0)
			_exit(1);
		if (!mapped) {
			if (pcow_write(img, "new!", 4, BS + 100) < 0)
				_exit(1);
		} else {
			if (pcow_map_new(&map, img, 0) < 0 ||
			    pcow_map_set_persist_interval(map, interval) < 0)
				_exit(1);
			memcpy((uint8_t *)pcow_map_addr(map) + BS + 100, "new!", 4);
		}
		nanosleep(&t, NULL);
		_exit(0);  /* no close, no flush: as kill -9 */
	}
	CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
	      WEXITSTATUS(status) == 0);
}

static void expect_block1(pcow_image *img, bool copied)
{
	uint8_t got[BS], want[BS];

	memset(want, 0x3c, BS);
	if (copied)
		memcpy(want + 100, "new!", 4);
	OK(pcow_read(img, got, BS, BS));
	CHECK(memcmp(got, want, BS) == 0);
}

static void expect(const char *image, unsigned flags, bool copied)
{
	struct pcow_check_result res;
	pcow_image *img;

	OK(pcow_open(&img, test_path(image), flags));
	expect_block1(img, copied);
	OK(pcow_check(img, 0, &res));
	/* A copy-up that survived is the layer's, its log in use or gone: no
	 * leak either.  One that did not leaves its data as a leak. */
	CHECK(res.corruptions == 0 && (!copied || res.leaks == 0));
	OK(pcow_close(&img));
}

static void fresh(const char *raw, const char *image)
{
	static uint8_t data[2 * BS];
	pcow_image *img;

	memset(data, 0x3c, sizeof(data));
	img = test_overlay_on_raw(raw, SIZE, data, 0, sizeof(data), image, BS);
	OK(pcow_close(&img));
}

/* True when the image's pending log holds anything. */
static bool log_present(const char *image)
{
	int fd = open(test_path(image), O_RDONLY);
	off_t d;

	CHECK(fd >= 0);
	d = lseek(fd, LOG_START, SEEK_DATA);
	close(fd);
	return d >= 0 && d < LOG_END;
}

static void reboot(void)
{
	static int boots;
	char id[40];

	snprintf(id, sizeof(id), "simulated-boot-%d", ++boots);
	pcow_pending_set_boot_id(id);
}

static int fail_log_writes(enum pcow_io_op op, int fd, uint64_t off, uint64_t len,
			   const void *buf, void *opaque)
{
	(void)fd;
	(void)len;
	(void)buf;
	(void)opaque;
	return op == PCOW_IO_WRITE && off >= LOG_START && off < LOG_END ? -ENOSPC : 0;
}

/*
 * The files the library used to keep its pending bits in, planted by
 * another user with a forged header naming the image and one bit set for
 * block 1: they must change nothing.
 */
static void plant(const char *image)
{
	struct {
		char magic[8];
		uint64_t dev, ino;
		int64_t btime_sec;
		uint64_t btime_nsec;
		uint64_t shadow_len;
		char path[3968];
	} h = {.magic = "PCOWPEND"};
	struct statx sx;
	char name[128];
	uint8_t bit = 2;
	int fd;

	CHECK(statx(AT_FDCWD, test_path(image), 0, STATX_INO | STATX_BTIME, &sx) == 0);
	h.dev = (uint64_t)sx.stx_dev_major << 32 | sx.stx_dev_minor;
	h.ino = sx.stx_ino;
	h.btime_sec = sx.stx_btime.tv_sec;
	h.btime_nsec = sx.stx_btime.tv_nsec;
	h.shadow_len = 2u << 20;
	snprintf(name, sizeof(name), "/dev/shm/pcow-pending-%llx-%llx",
		 (unsigned long long)h.dev, (unsigned long long)h.ino);
	fd = open(name, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return;  /* no /dev/shm: nothing can be planted there either */
	CHECK(pwrite(fd, &h, sizeof(h), 0) == (ssize_t)sizeof(h));
	/* region 0's shadow, word 0: block 1 */
	CHECK(pwrite(fd, &bit, 1, 4096) == 1);
	CHECK(fchown(fd, 65534, 65534) == 0 || getuid() != 0);
	close(fd);
	setenv("PCOW_PENDING_DIR", "/dev/shm", 1);
	expect(image, PCOW_OPEN_RDONLY, false);
	expect(image, 0, false);
	unlink(name);
	unsetenv("PCOW_PENDING_DIR");
}

int main(void)
{
	reboot();

	/* The writer dies: its copy-up and the write after it survive. */
	fresh("k.raw", "k.pcow");
	die_after_copy_up("k.pcow", false, 0, 0);
	CHECK(log_present("k.pcow"));
	{
		/* A read-only open reads through the dead writer's log, and
		 * block status (which convert, map and compare trust) sees
		 * the block as the overlay's, not the raw file's. */
		struct pcow_block_status st;
		pcow_image *img;

		OK(pcow_open(&img, test_path("k.pcow"), PCOW_OPEN_RDONLY));
		expect_block1(img, true);
		OK(pcow_block_status(img, BS, BS, &st));
		CHECK(st.depth == 0 && (st.flags & PCOW_STATUS_DATA) && st.length == BS);
		OK(pcow_close(&img));
		/* A log in use is no leak, and its block is the layer's. */
		expect("k.pcow", PCOW_OPEN_RDONLY, true);
	}
	CHECK(log_present("k.pcow"));
	expect("k.pcow", 0, true);      /* applied to the bitmap, log gone */
	CHECK(!log_present("k.pcow"));
	reboot();
	expect("k.pcow", PCOW_OPEN_RDONLY, true);

	/* A power failure: the log names another boot, so the unflushed
	 * copy-up is gone, the block is inherited again, and the image
	 * checks clean.  A read-only open ignores the log too. */
	fresh("r.raw", "r.pcow");
	die_after_copy_up("r.pcow", false, 0, 0);
	reboot();
	expect("r.pcow", PCOW_OPEN_RDONLY, false);
	expect("r.pcow", 0, false);
	CHECK(!log_present("r.pcow"));

	/* A log for other metadata (stale) is never applied. */
	fresh("g.raw", "g.pcow");
	die_after_copy_up("g.pcow", false, 0, 0);
	{
		int fd = open(test_path("g.pcow"), O_RDWR);
		uint8_t gen = 0x77;

		CHECK(fd >= 0 && pwrite(fd, &gen, 1, LOG_START + 8) == 1);
		close(fd);
	}
	expect("g.pcow", 0, false);

	/* A flush writes the bits into the image: nothing waits any more. */
	fresh("f.raw", "f.pcow");
	{
		pcow_image *img;

		OK(pcow_open(&img, test_path("f.pcow"), 0));
		OK(pcow_write(img, "new!", 4, BS + 100));
		CHECK(log_present("f.pcow"));
		OK(pcow_flush(img));
		CHECK(!log_present("f.pcow"));
		OK(pcow_close(&img));
	}
	reboot();
	expect("f.pcow", 0, true);

	/* No room for the log's page: the bit is persisted at once, and the
	 * write succeeds. */
	fresh("n.raw", "n.pcow");
	{
		pcow_image *img;

		OK(pcow_open(&img, test_path("n.pcow"), 0));
		pcow_io_set_hook(fail_log_writes, NULL);
		OK(pcow_write(img, "new!", 4, BS + 100));
		pcow_io_set_hook(NULL, NULL);
		CHECK(!log_present("n.pcow"));
		reboot();
		expect("n.pcow", PCOW_OPEN_RDONLY | PCOW_OPEN_FORCE_SHARE, true);
		OK(pcow_close(&img));
	}

	/* Bounded loss: a mapping persists its copy-ups within its interval
	 * although nothing flushes; the writer is killed and then the power
	 * fails, and the copy-up is there.  Without the interval it is not,
	 * except on a MAP_SYNC (DAX) mapping, where the copy-up's bit is
	 * durable before the store is retried: no log, nothing to lose. */
	fresh("b.raw", "b.pcow");
	die_after_copy_up("b.pcow", true, 100, 600);
	reboot();
	expect("b.pcow", 0, true);
	fresh("c.raw", "c.pcow");
	die_after_copy_up("c.pcow", true, 0, test_dax() ? 0 : 600);
	CHECK(log_present("c.pcow") == !test_dax());
	reboot();
	expect("c.pcow", 0, test_dax());
	if (test_dax())
		printf("pending: MAP_SYNC: a mapped copy-up is durable at once\n");

	/* Files planted where earlier versions kept pending bits are never
	 * read. */
	fresh("p.raw", "p.pcow");
	plant("p.pcow");

	printf("pending: ok\n");
	return 0;
}
