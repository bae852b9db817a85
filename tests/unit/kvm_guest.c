/* kvm_guest.c -- the minimal VMM shared by the KVM tests (kvm_guest.h). */
#include <fcntl.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "kvm_guest.h"
#include "test.h"

/* Long-mode tables in low guest memory. */
#define PML4_GPA 0x1000u
#define PDPT_GPA 0x2000u
#define PD_GPA 0x3000u
#define GDT_GPA 0x4000u
#define TSS_GPA 0x5000u
#define TSS_LIMIT 0x67u

#define SEL_CODE 0x08u
#define SEL_DATA 0x10u
#define SEL_TSS 0x18u

#define PTE_P 0x1ull
#define PTE_RW 0x2ull
#define PTE_PS 0x80ull

#define CR0_PE 0x1ull
#define CR0_MP 0x2ull
#define CR0_ET 0x10ull
#define CR0_NE 0x20ull
#define CR0_WP 0x10000ull
#define CR0_PG 0x80000000ull
#define CR4_PAE 0x20ull
#define CR4_OSFXSR 0x200ull
#define CR4_OSXMMEXCPT 0x400ull
#define CR4_OSXSAVE 0x40000ull
#define EFER_LME 0x100ull
#define EFER_LMA 0x400ull

#define XSTATE_X87 0x1ull
#define XSTATE_SSE 0x2ull
#define XSTATE_AVX 0x4ull
#define XSTATE_AVX512 0xe0ull /* opmask, ZMM_Hi256, Hi16_ZMM: all or none */

void kvm_guest_open(struct kvm_guest *g)
{
	memset(g, 0, sizeof(*g));
	g->vcpu = -1;
	g->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (g->kvm < 0)
		SKIP("/dev/kvm cannot be opened (%s)", strerror(errno));
	g->vm = ioctl(g->kvm, KVM_CREATE_VM, 0);
	if (g->vm < 0)
		SKIP("KVM_CREATE_VM failed (%s)", strerror(errno));
}

void kvm_guest_add_ram(struct kvm_guest *g, uint64_t gpa, void *host,
		       uint64_t size)
{
	struct kvm_userspace_memory_region slot = {
		.slot = g->nram, .guest_phys_addr = gpa, .memory_size = size,
		.userspace_addr = (uintptr_t)host};

	CHECK(g->nram < KVM_GUEST_RAM_MAX);
	CHECK(ioctl(g->vm, KVM_SET_USER_MEMORY_REGION, &slot) == 0);
	g->ram[g->nram].gpa = gpa;
	g->ram[g->nram].size = size;
	g->ram[g->nram].host = host;
	g->nram++;
}

void kvm_guest_add_vcpu(struct kvm_guest *g)
{
	g->vcpu = ioctl(g->vm, KVM_CREATE_VCPU, 0);
	if (g->vcpu < 0)
		SKIP("KVM_CREATE_VCPU failed (%s)", strerror(errno));
	g->run_size = ioctl(g->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	CHECK(g->run_size > 0);
	g->run = mmap(NULL, (size_t)g->run_size, PROT_READ | PROT_WRITE,
		      MAP_SHARED, g->vcpu, 0);
	CHECK(g->run != MAP_FAILED);
}

void kvm_guest_real_mode(struct kvm_guest *g)
{
	struct kvm_sregs sregs;

	CHECK(ioctl(g->vcpu, KVM_GET_SREGS, &sregs) == 0);
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	CHECK(ioctl(g->vcpu, KVM_SET_SREGS, &sregs) == 0);
}

static struct kvm_cpuid2 *supported_cpuid(int kvm)
{
	struct kvm_cpuid2 *c;
	unsigned n;

	/* KVM says E2BIG until the array is large enough. */
	for (n = 64;; n *= 2) {
		c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
		CHECK(c);
		c->nent = n;
		if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, c) == 0)
			return c;
		CHECK(errno == E2BIG && n < 4096);
		free(c);
	}
}

uint32_t kvm_guest_cpuid(const struct kvm_guest *g, uint32_t fn, uint32_t idx,
			 int reg)
{
	uint32_t i;

	for (i = 0; g->cpuid && i < g->cpuid->nent; i++) {
		const struct kvm_cpuid_entry2 *e = &g->cpuid->entries[i];

		if (e->function != fn ||
		    ((e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) && e->index != idx))
			continue;
		return reg == 0 ? e->eax : reg == 1 ? e->ebx : reg == 2 ? e->ecx : e->edx;
	}
	return 0;
}

static uint64_t gdt_entry(uint32_t base, uint32_t limit, uint8_t access,
			  uint8_t flags)
{
	return (limit & 0xffffull) | (uint64_t)(base & 0xffffff) << 16 |
	       (uint64_t)access << 40 | (uint64_t)((limit >> 16) & 0xf) << 48 |
	       (uint64_t)(flags & 0xf) << 52 | (uint64_t)(base >> 24) << 56;
}

static void tables(uint8_t *low)
{
	uint64_t *pml4 = (uint64_t *)(low + PML4_GPA);
	uint64_t *pdpt = (uint64_t *)(low + PDPT_GPA);
	uint64_t *pd = (uint64_t *)(low + PD_GPA);
	uint64_t *gdt = (uint64_t *)(low + GDT_GPA);
	uint64_t i;

	memset(low + PML4_GPA, 0, KVM_GUEST_FREE - PML4_GPA);
	pml4[0] = PDPT_GPA | PTE_P | PTE_RW;
	pdpt[0] = PD_GPA | PTE_P | PTE_RW;
	for (i = 0; i < 512; i++)
		pd[i] = (i << 21) | PTE_P | PTE_RW | PTE_PS;
	/* Never loaded by the guest, but an exception or a far jump must find
	 * what the segment registers claim. */
	gdt[SEL_CODE / 8] = gdt_entry(0, 0xfffff, 0x9b, 0xa);  /* G, L */
	gdt[SEL_DATA / 8] = gdt_entry(0, 0xfffff, 0x93, 0xc);  /* G, D/B */
	gdt[SEL_TSS / 8] = gdt_entry(TSS_GPA, TSS_LIMIT, 0x8b, 0);
	gdt[SEL_TSS / 8 + 1] = 0; /* upper half of the TSS base */
}

static struct kvm_segment segment(uint16_t sel, uint8_t type)
{
	struct kvm_segment s = {
		.base = 0, .limit = 0xffffffff, .selector = sel, .type = type,
		.present = 1, .s = 1, .g = 1};

	if (sel == SEL_CODE)
		s.l = 1;
	else
		s.db = 1;
	return s;
}

void kvm_guest_long_mode(struct kvm_guest *g, uint8_t *low)
{
	struct kvm_sregs sregs;
	struct kvm_xcrs xcrs;
	uint64_t supported;

	tables(low);
	/* CPUID first: KVM refuses CR4.OSXSAVE and XCR0 bits the guest's
	 * CPUID does not have. */
	g->cpuid = supported_cpuid(g->kvm);
	CHECK(ioctl(g->vcpu, KVM_SET_CPUID2, g->cpuid) == 0);

	CHECK(ioctl(g->vcpu, KVM_GET_SREGS, &sregs) == 0);
	sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
	sregs.cr3 = PML4_GPA;
	sregs.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
	if (kvm_guest_cpuid(g, 1, 0, 2) & (1u << 26)) /* XSAVE */
		sregs.cr4 |= CR4_OSXSAVE;
	sregs.efer = EFER_LME | EFER_LMA;
	sregs.cs = segment(SEL_CODE, 0xb);
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = segment(SEL_DATA, 0x3);
	sregs.tr = (struct kvm_segment){
		.base = TSS_GPA, .limit = TSS_LIMIT, .selector = SEL_TSS,
		.type = 0xb, .present = 1};
	sregs.ldt = (struct kvm_segment){.unusable = 1};
	sregs.gdt.base = GDT_GPA;
	sregs.gdt.limit = 5 * 8 - 1;
	sregs.idt.base = 0;
	sregs.idt.limit = 0; /* an exception shuts the guest down: an exit */
	CHECK(ioctl(g->vcpu, KVM_SET_SREGS, &sregs) == 0);

	g->xcr0 = XSTATE_X87;
	if (!(sregs.cr4 & CR4_OSXSAVE))
		return;
	supported = kvm_guest_cpuid(g, 0xd, 0, 0) |
		    (uint64_t)kvm_guest_cpuid(g, 0xd, 0, 3) << 32;
	g->xcr0 |= supported & (XSTATE_SSE | XSTATE_AVX);
	if ((g->xcr0 & XSTATE_AVX) && (supported & XSTATE_AVX512) == XSTATE_AVX512)
		g->xcr0 |= XSTATE_AVX512;
	memset(&xcrs, 0, sizeof(xcrs));
	xcrs.nr_xcrs = 1;
	xcrs.xcrs[0].xcr = 0;
	xcrs.xcrs[0].value = g->xcr0;
	CHECK(ioctl(g->vcpu, KVM_SET_XCRS, &xcrs) == 0);
}

void kvm_guest_start(struct kvm_guest *g, const struct kvm_regs *regs)
{
	CHECK(ioctl(g->vcpu, KVM_SET_REGS, regs) == 0);
	g->pending_len = 0;
	g->mmio_stores = 0;
}

/* The registered RAM holding [gpa, gpa+len), or NULL. */
static uint8_t *ram_at(struct kvm_guest *g, uint64_t gpa, uint32_t len)
{
	unsigned i;

	for (i = 0; i < g->nram; i++)
		if (gpa >= g->ram[i].gpa && gpa + len <= g->ram[i].gpa + g->ram[i].size)
			return g->ram[i].host + (gpa - g->ram[i].gpa);
	return NULL;
}

/* Armed while the VMM stores into guest RAM (single-threaded VMM);
 * volatile, or the compiler drops the arming around a memcpy that it
 * knows cannot read it. */
static sigjmp_buf *volatile store_jmp;
static volatile int store_jmp_err;

void kvm_guest_map_error(pcow_map *map, void *addr, int err, void *opaque)
{
	static const char msg[] = "kvm_guest: a fault in guest RAM the library "
				  "cannot serve, outside a VMM store\n";

	(void)map;
	(void)addr;
	(void)opaque;
	if (!store_jmp) {
		if (write(2, msg, sizeof(msg) - 1) < 0)
			_exit(1);
		_exit(1);
	}
	store_jmp_err = err;
	siglongjmp(*store_jmp, 1);
}

/* Makes the pending store; what QEMU does with a store KVM could not make
 * to RAM that is read-only in the host: it writes it into the RAM block,
 * which takes the library's copy-up fault. */
static int store_pending(struct kvm_guest *g)
{
	uint8_t *p = ram_at(g, g->pending_gpa, g->pending_len);
	sigjmp_buf jb;

	if (sigsetjmp(jb, 1)) {
		store_jmp = NULL;
		g->store_err = store_jmp_err;
		return -1;
	}
	store_jmp = &jb;
	memcpy(p, g->pending_data, g->pending_len);
	store_jmp = NULL;
	g->pending_len = 0;
	return 0;
}

int kvm_guest_run(struct kvm_guest *g)
{
	struct kvm_run *run = g->run;

	for (;;) {
		if (g->pending_len && store_pending(g) < 0)
			return KVM_GUEST_STORE_FAILED;
		if (ioctl(g->vcpu, KVM_RUN, 0) < 0)
			return -errno;
		if (run->exit_reason != KVM_EXIT_MMIO || !run->mmio.is_write ||
		    run->mmio.len > sizeof(g->pending_data) ||
		    !ram_at(g, run->mmio.phys_addr, run->mmio.len))
			return (int)run->exit_reason;
		g->pending_gpa = run->mmio.phys_addr;
		g->pending_len = run->mmio.len;
		memcpy(g->pending_data, run->mmio.data, run->mmio.len);
		g->mmio_stores++;
		g->last_mmio = run->mmio.phys_addr;
	}
}

const char *kvm_guest_exit_name(uint32_t reason)
{
	switch (reason) {
	case KVM_EXIT_IO: return "I/O";
	case KVM_EXIT_HLT: return "hlt";
	case KVM_EXIT_MMIO: return "MMIO";
	case KVM_EXIT_SHUTDOWN: return "shutdown (triple fault)";
	case KVM_EXIT_FAIL_ENTRY: return "entry failure";
	case KVM_EXIT_INTERNAL_ERROR: return "internal error";
	case KVM_EXIT_MEMORY_FAULT: return "memory fault";
	default: return "other";
	}
}

void kvm_guest_close(struct kvm_guest *g)
{
	if (g->run)
		munmap(g->run, (size_t)g->run_size);
	if (g->vcpu >= 0)
		close(g->vcpu);
	close(g->vm);
	close(g->kvm);
	free(g->cpuid);
	memset(g, 0, sizeof(*g));
}
