/* test_handover.c -- an image handed over between two owners, as a live
 * migration over shared storage does (pcow_inactivate, pcow_activate,
 * PCOW_OPEN_INACTIVE): at no moment can both write, each sees what the
 * other stored before the handover, and a failed migration hands the
 * image back.  Both owners live in this process: OFD locks conflict
 * between two opens of one file as between two processes.  In both
 * copy-on-write modes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"

#define BS 4096u
#define SIZE (16 * BS)

static uint32_t inactive(pcow_image *img)
{
	struct pcow_info info = {.struct_size = sizeof(info)};

	OK(pcow_get_info(img, &info));
	return info.inactive;
}

static void handover(unsigned flags)
{
	const char *name = flags ? "kernel.pcow" : "fault.pcow";
	uint8_t data[SIZE / 2], c = 'x', buf[4];
	struct pcow_check_result r = {0};
	pcow_image *src, *dst;
	pcow_map *ms, *md;
	uint8_t *s, *d;

	memset(data, 0x5a, sizeof(data));
	src = test_overlay_on_raw(flags ? "kernel.raw" : "fault.raw", SIZE, data, 0,
				  sizeof(data), name, BS);
	OK(pcow_map_new(&ms, src, flags));
	s = pcow_map_addr(ms);
	s[1 * BS] = 'A';                /* inherited block */
	s[12 * BS] = 'a';               /* hole */

	/* The destination opens and maps while the source runs: read-only. */
	CHECK(pcow_open(&dst, test_path(name), 0) == -EBUSY);
	OK(pcow_open(&dst, test_path(name), PCOW_OPEN_INACTIVE));
	CHECK(inactive(dst) == 1 && inactive(src) == 0);
	OK(pcow_map_new(&md, dst, flags));
	d = pcow_map_addr(md);
	CHECK(pcow_write(dst, &c, 1, 0) < 0);
	CHECK(pcow_snapshot_create(dst, "no") < 0);
	CHECK(pcow_activate(dst) == -EBUSY);

	/* Switchover. */
	OK(pcow_inactivate(src));
	CHECK(inactive(src) == 1);
	CHECK(pcow_write(src, &c, 1, 0) < 0);
	CHECK(s[1 * BS] == 'A');        /* still readable at the source */
	OK(pcow_activate(dst));
	CHECK(inactive(dst) == 0);
	CHECK(d[1 * BS] == 'A' && d[12 * BS] == 'a' && d[2 * BS] == 0x5a);
	d[1 * BS + 1] = 'B';
	d[3 * BS] = 'C';
	d[13 * BS] = 'c';
	OK(pcow_read(dst, buf, 2, 1 * BS));
	CHECK(buf[0] == 'A' && buf[1] == 'B');
	CHECK(pcow_activate(src) == -EBUSY);

	/* The migration fails after all: the source takes the image back and
	 * sees what the destination did. */
	OK(pcow_inactivate(dst));
	OK(pcow_activate(src));
	CHECK(s[1 * BS + 1] == 'B' && s[3 * BS] == 'C' && s[13 * BS] == 'c');
	s[4 * BS] = 'D';
	OK(pcow_map_delete(&md));
	OK(pcow_close(&dst));
	OK(pcow_map_delete(&ms));
	OK(pcow_close(&src));

	OK(pcow_open(&src, test_path(name), 0));
	OK(pcow_check(src, 0, &r));
	CHECK(r.corruptions == 0 && r.leaks == 0);
	OK(pcow_read(src, buf, 2, 1 * BS));
	CHECK(buf[0] == 'A' && buf[1] == 'B');
	OK(pcow_read(src, buf, 1, 4 * BS));
	CHECK(buf[0] == 'D');
	OK(pcow_read(src, buf, 1, 2 * BS));
	CHECK(buf[0] == 0x5a);
	OK(pcow_close(&src));
	printf("handover (%s mode): ok\n", flags ? "kernel" : "fault");
}

int main(void)
{
	handover(0);
	handover(PCOW_MAP_KERNEL_COW);
	return 0;
}
