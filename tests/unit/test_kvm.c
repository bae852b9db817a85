/* test_kvm.c -- a guest on KVM writes through a pcow mapping: a store to a
 * hole is served by the host file system without an exit; a store to a
 * block inherited from the backing file reaches user space as an MMIO exit,
 * and the VMM's own store into the mapping takes the library's copy-up
 * fault path, as QEMU's would.
 *
 * Skips only while KVM itself is missing or unusable (no /dev/kvm, no VM,
 * no vCPU).  Once a vCPU exists, every error and every exit other than the
 * expected ones is a failure: a guest that cannot run here proves nothing
 * about the mapping.  The instructions a 64-bit guest stores with (SSE,
 * AVX, atomics, cache-line flushes) are test_kvm_insn.c's. */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "kvm_guest.h"
#include "test.h"

#define IMG_SIZE (256u << 10)
#define IMG_GPA 0x10000u
#define BS 4096u

/* Real-mode code at GPA 0: DS points at the image. */
static const uint8_t code[] = {
	0xb8, 0x00, 0x10,                   /* mov ax, 0x1000           */
	0x8e, 0xd8,                         /* mov ds, ax               */
	0xc7, 0x06, 0x10, 0x00, 0xef, 0xbe, /* mov word [0x0010], 0xbeef (hole)    */
	0xc7, 0x06, 0x10, 0x40, 0xfe, 0xca, /* mov word [0x4010], 0xcafe (backing) */
	0xa1, 0x20, 0x40,                   /* mov ax, [0x4020]         */
	0xf4,                               /* hlt                      */
};

int main(void)
{
	struct kvm_guest g;
	struct kvm_regs regs;
	struct pcow_map_stats st;
	int fd, exit_reason;
	uint8_t *code_mem, *pm, backing[IMG_SIZE];
	pcow_image *img;
	pcow_map *map;
	uint16_t v;

	kvm_guest_open(&g);

	memset(backing, 0, sizeof(backing));
	memset(backing + 0x4000, 0x5a, BS);
	/* sparse: only block 4 holds data, so block 0 is a hole everywhere */
	img = test_overlay_on_raw("kvm-base.raw", IMG_SIZE, backing + 0x4000, 0x4000,
				  BS, "kvm.pcow", BS);
	OK(pcow_map_new(&map, img, 0));
	pm = pcow_map_addr(map);

	code_mem = mmap(NULL, 0x10000, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(code_mem != MAP_FAILED);
	memcpy(code_mem, code, sizeof(code));
	kvm_guest_add_ram(&g, 0, code_mem, 0x10000);
	kvm_guest_add_ram(&g, IMG_GPA, pm, IMG_SIZE);

	kvm_guest_add_vcpu(&g);
	kvm_guest_real_mode(&g);
	memset(&regs, 0, sizeof(regs));
	regs.rip = 0;
	regs.rflags = 2;
	kvm_guest_start(&g, &regs);

	exit_reason = kvm_guest_run(&g);
	if (exit_reason != KVM_EXIT_HLT) {
		if (exit_reason < 0)
			fprintf(stderr, "KVM_RUN failed (%s)\n", strerror(-exit_reason));
		else if (exit_reason == KVM_EXIT_INTERNAL_ERROR)
			fprintf(stderr, "internal error exit, suberror %u\n",
				g.run->internal.suberror);
		else
			fprintf(stderr, "unexpected exit %d\n", exit_reason);
		return 1;
	}
	CHECK(ioctl(g.vcpu, KVM_GET_REGS, &regs) == 0);
	printf("kvm: %u store(s) came back as MMIO exits\n", g.mmio_stores);
	CHECK((regs.rax & 0xffff) == 0x5a5a);
	/* the backing-block store exits (its page is read-only in the host
	 * mapping until copied up); the hole store never does */
	CHECK(g.mmio_stores == 1);
	CHECK(g.last_mmio == IMG_GPA + 0x4010);
	OK(pcow_map_get_stats(map, &st));
	printf("kvm: %llu fault(s), %llu block(s) allocated, %llu copied\n",
	       (unsigned long long)st.faults,
	       (unsigned long long)st.blocks_allocated,
	       (unsigned long long)st.blocks_copied);
	/* one library fault (the VMM's store), the hole and the copied block */
	CHECK(st.faults == 1);
	CHECK(st.blocks_allocated == 2);
	CHECK(st.blocks_copied == 1);
	OK(pcow_map_flush(map));
	OK(pcow_map_delete(&map));
	OK(pcow_read(img, &v, 2, 0x10));
	CHECK(v == 0xbeef);
	OK(pcow_read(img, &v, 2, 0x4010));
	CHECK(v == 0xcafe);
	OK(pcow_read(img, &v, 2, 0x4020));
	CHECK(v == 0x5a5a);
	OK(pcow_close(&img));
	kvm_guest_close(&g);
	fd = open(test_path("kvm-base.raw"), O_RDONLY);
	CHECK(fd >= 0 && pread(fd, backing, 2, 0x4010) == 2 && backing[0] == 0x5a);
	close(fd);
	printf("kvm: ok\n");
	return 0;
}
