/*
 * test_pending.c -- copy bits that wait for a flush live in a file on
 * tmpfs (lib/pending.c): a writer that dies without closing keeps its
 * copy-ups (the next open applies them), while a reboot, which empties
 * tmpfs, returns unflushed copy-ups to their inherited content.
 */
#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/vfs.h>
#include <sys/wait.h>

#include "test.h"

#define SIZE (4u << 20)
#define BS 65536u

static char pdir[64];

static const char *ppath(const char *name)
{
	static char buf[2][384];
	static int i;

	i ^= 1;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", pdir, name);
	return buf[i];
}

static int pending_files(void)
{
	DIR *d = opendir(pdir);
	struct dirent *e;
	int n = 0;

	CHECK(d);
	while ((e = readdir(d)))
		n += !strncmp(e->d_name, "pcow-pending-", 13);
	closedir(d);
	return n;
}

static void remove_pending_files(void)
{
	DIR *d = opendir(pdir);
	struct dirent *e;

	CHECK(d);
	while ((e = readdir(d)))
		if (!strncmp(e->d_name, "pcow-pending-", 13))
			CHECK(unlink(ppath(e->d_name)) == 0);
	closedir(d);
}

static void cleanup(void)
{
	remove_pending_files();
	rmdir(pdir);
}

/* A child copies up block 1 (a partial write into an inherited block,
 * not flushed) and dies without closing. */
static void die_after_copy_up(const char *image)
{
	pid_t pid = fork();
	int status;

	CHECK(pid >= 0);
	if (pid == 0) {
		pcow_image *img;

		test_in_child();
		if (pcow_open(&img, test_path(image), 0) < 0 ||
		    pcow_write(img, "new!", 4, BS + 100) < 0)
			_exit(1);
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

static pcow_image *fresh(const char *raw, const char *image)
{
	static uint8_t data[2 * BS];

	memset(data, 0x3c, sizeof(data));
	return test_overlay_on_raw(raw, SIZE, data, 0, sizeof(data), image, BS);
}

int main(void)
{
	struct pcow_check_result res;
	pcow_image *img;

	struct statfs sfs;

	/* The files must be on tmpfs (the library refuses anything else). */
	if (statfs("/dev/shm", &sfs) < 0 || sfs.f_type != TMPFS_MAGIC)
		SKIP("/dev/shm is not tmpfs");
	snprintf(pdir, sizeof(pdir), "/dev/shm/pcow-pending-test.XXXXXX");
	CHECK(mkdtemp(pdir));
	atexit(cleanup);
	setenv("PCOW_PENDING_DIR", pdir, 1);

	/* The writer dies: its copy-up and the write after it survive. */
	img = fresh("k.raw", "k.pcow");
	OK(pcow_close(&img));
	die_after_copy_up("k.pcow");
	CHECK(pending_files() == 1);
	OK(pcow_open(&img, test_path("k.pcow"), PCOW_OPEN_RDONLY));
	expect_block1(img, true);       /* read through the dead writer's bits */
	{
		/* Block status (which convert, map and compare trust) sees
		 * them too: the block is the overlay's, not the raw file's. */
		struct pcow_block_status st;

		OK(pcow_block_status(img, BS, BS, &st));
		CHECK(st.depth == 0 && (st.flags & PCOW_STATUS_DATA) && st.length == BS);
	}
	OK(pcow_close(&img));
	CHECK(pending_files() == 1);
	OK(pcow_open(&img, test_path("k.pcow"), 0));
	CHECK(pending_files() == 0);    /* applied to the image, file gone */
	expect_block1(img, true);
	OK(pcow_check(img, 0, &res));
	CHECK(res.corruptions == 0);
	OK(pcow_close(&img));
	OK(pcow_open(&img, test_path("k.pcow"), PCOW_OPEN_RDONLY));
	expect_block1(img, true);       /* from the image's own bitmap now */
	OK(pcow_close(&img));

	/* A reboot empties tmpfs: the unflushed copy-up is gone, the block
	 * is inherited again, and the image checks clean. */
	img = fresh("r.raw", "r.pcow");
	OK(pcow_close(&img));
	die_after_copy_up("r.pcow");
	remove_pending_files();
	OK(pcow_open(&img, test_path("r.pcow"), 0));
	expect_block1(img, false);
	OK(pcow_check(img, 0, &res));
	CHECK(res.corruptions == 0);
	OK(pcow_close(&img));

	/* A flush writes the bits into the image: nothing waits any more. */
	img = fresh("f.raw", "f.pcow");
	OK(pcow_write(img, "new!", 4, BS + 100));
	CHECK(pending_files() == 1);
	OK(pcow_flush(img));
	CHECK(pending_files() == 0);
	OK(pcow_close(&img));
	remove_pending_files();
	OK(pcow_open(&img, test_path("f.pcow"), PCOW_OPEN_RDONLY));
	expect_block1(img, true);
	OK(pcow_close(&img));

	/* Outside tmpfs (which a reboot would not empty) bits never wait. */
	setenv("PCOW_PENDING_DIR", test_dir(), 1);
	img = fresh("t.raw", "t.pcow");
	OK(pcow_write(img, "new!", 4, BS + 100));
	OK(pcow_close(&img));
	setenv("PCOW_PENDING_DIR", pdir, 1);
	CHECK(pending_files() == 0);
	if (statfs(test_dir(), &sfs) == 0 && sfs.f_type != TMPFS_MAGIC) {
		DIR *d = opendir(test_dir());
		struct dirent *e;

		CHECK(d);
		while ((e = readdir(d)))
			CHECK(strncmp(e->d_name, "pcow-pending-", 13) != 0);
		closedir(d);
	}
	OK(pcow_open(&img, test_path("t.pcow"), PCOW_OPEN_RDONLY));
	expect_block1(img, true);
	OK(pcow_close(&img));

	/* A file left for an image that was deleted is removed by the next
	 * read-write open of any image. */
	img = fresh("d.raw", "d.pcow");
	OK(pcow_close(&img));
	die_after_copy_up("d.pcow");
	CHECK(pending_files() == 1);
	CHECK(unlink(test_path("d.pcow")) == 0);
	OK(pcow_open(&img, test_path("k.pcow"), 0));
	CHECK(pending_files() == 0);
	OK(pcow_close(&img));

	printf("pending: ok\n");
	return 0;
}
