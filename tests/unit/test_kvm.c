/* test_kvm.c -- a guest on KVM writes through a pcow mapping: a store to a
 * hole is served by the host file system without an exit; a store to a
 * block inherited from the backing file reaches user space as an MMIO exit,
 * and the VMM's own store into the mapping takes the library's copy-up
 * fault path, as QEMU's would.
 *
 * Skips only while KVM itself is missing or unusable (no /dev/kvm, no VM,
 * no vCPU).  Once a vCPU exists, every error and every exit other than the
 * expected ones is a failure: a guest that cannot run here proves nothing
 * about the mapping.  Locked read-modify-write instructions on an inherited
 * block (lock add, lock cmpxchg) are not run: they end in
 * KVM_EXIT_INTERNAL_ERROR today (issue 14). */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

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
	struct kvm_userspace_memory_region slot;
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct kvm_run *run;
	struct pcow_map_stats st;
	int kvm, vm, vcpu, fd, mmio_writes = 0;
	uint64_t mmio_addr = 0;
	long run_size;
	uint8_t *code_mem, *pm, backing[IMG_SIZE];
	pcow_image *img;
	pcow_map *map;
	uint16_t v;

	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		SKIP("/dev/kvm cannot be opened (%s)", strerror(errno));
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		SKIP("KVM_CREATE_VM failed (%s)", strerror(errno));

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
	slot = (struct kvm_userspace_memory_region){
		.slot = 0, .guest_phys_addr = 0, .memory_size = 0x10000,
		.userspace_addr = (uintptr_t)code_mem};
	CHECK(ioctl(vm, KVM_SET_USER_MEMORY_REGION, &slot) == 0);
	slot = (struct kvm_userspace_memory_region){
		.slot = 1, .guest_phys_addr = IMG_GPA, .memory_size = IMG_SIZE,
		.userspace_addr = (uintptr_t)pm};
	CHECK(ioctl(vm, KVM_SET_USER_MEMORY_REGION, &slot) == 0);

	vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0)
		SKIP("KVM_CREATE_VCPU failed (%s)", strerror(errno));
	run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	CHECK(run_size > 0);
	run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	CHECK(run != MAP_FAILED);
	CHECK(ioctl(vcpu, KVM_GET_SREGS, &sregs) == 0);
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	CHECK(ioctl(vcpu, KVM_SET_SREGS, &sregs) == 0);
	memset(&regs, 0, sizeof(regs));
	regs.rip = 0;
	regs.rflags = 2;
	CHECK(ioctl(vcpu, KVM_SET_REGS, &regs) == 0);

	for (;;) {
		if (ioctl(vcpu, KVM_RUN, 0) < 0) {
			fprintf(stderr, "KVM_RUN failed (%s)\n", strerror(errno));
			return 1;
		}
		if (run->exit_reason == KVM_EXIT_HLT)
			break;
		if (run->exit_reason == KVM_EXIT_MMIO && run->mmio.is_write &&
		    run->mmio.phys_addr >= IMG_GPA &&
		    run->mmio.phys_addr + run->mmio.len <= IMG_GPA + IMG_SIZE) {
			/* What QEMU does for a store it has to emulate: write into
			 * the RAM block, which raises the library's write fault. */
			memcpy(pm + (run->mmio.phys_addr - IMG_GPA), run->mmio.data,
			       run->mmio.len);
			mmio_writes++;
			mmio_addr = run->mmio.phys_addr;
			continue;
		}
		if (run->exit_reason == KVM_EXIT_INTERNAL_ERROR)
			fprintf(stderr, "internal error exit, suberror %u\n",
				run->internal.suberror);
		fprintf(stderr, "unexpected exit %u\n", run->exit_reason);
		return 1;
	}
	CHECK(ioctl(vcpu, KVM_GET_REGS, &regs) == 0);
	printf("kvm: %d store(s) came back as MMIO exits\n", mmio_writes);
	CHECK((regs.rax & 0xffff) == 0x5a5a);
	/* the backing-block store exits (its page is read-only in the host
	 * mapping until copied up); the hole store never does */
	CHECK(mmio_writes == 1);
	CHECK(mmio_addr == IMG_GPA + 0x4010);
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
	fd = open(test_path("kvm-base.raw"), O_RDONLY);
	CHECK(fd >= 0 && pread(fd, backing, 2, 0x4010) == 2 && backing[0] == 0x5a);
	close(fd);
	printf("kvm: ok\n");
	return 0;
}
