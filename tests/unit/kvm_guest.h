/* kvm_guest.h -- a minimal VMM for the KVM tests: one VM, one vCPU, guest
 * RAM registered as plain memslots (as QEMU registers a pcow mapping), and
 * a run loop that emulates MMIO stores into that RAM from user space the
 * way QEMU does for RAM that is read-only in the host.
 *
 * Only opening /dev/kvm, creating the VM and creating the vCPU skip the
 * test (exit 77); every later error is a failure (exit 1), since a guest
 * that cannot run proves nothing about the mapping. */
#ifndef PCOW_KVM_GUEST_H
#define PCOW_KVM_GUEST_H

#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>

#include "pcow.h"

/* The kernel headers of the build machine may predate these (6.8). */
#ifndef KVM_EXIT_MEMORY_FAULT
#define KVM_EXIT_MEMORY_FAULT 39
#endif
#ifndef KVM_CAP_MEMORY_FAULT_INFO
#define KVM_CAP_MEMORY_FAULT_INFO 232
#endif

/* What a KVM_EXIT_MEMORY_FAULT leaves at the start of kvm_run's exit union. */
struct kvm_guest_memory_fault {
	uint64_t flags, gpa, size;
};

/* The long-mode setup keeps GPA 0 to KVM_GUEST_FREE for its page tables,
 * GDT and TSS, and identity-maps [0, KVM_GUEST_MAPPED) with 2 MiB pages. */
#define KVM_GUEST_FREE 0x10000u
#define KVM_GUEST_MAPPED (1ull << 30)

#define KVM_GUEST_RAM_MAX 4

/* kvm_guest_run(): the VMM's store of an MMIO exit into guest RAM failed
 * (store_err); it stays pending, and the next kvm_guest_run() makes it
 * again before it enters the guest, as QEMU would on `cont`. */
#define KVM_GUEST_STORE_FAILED 1000

struct kvm_guest {
	int kvm, vm, vcpu;
	struct kvm_run *run;
	long run_size;
	unsigned nram;
	struct {
		uint64_t gpa, size;
		uint8_t *host;
	} ram[KVM_GUEST_RAM_MAX];
	struct kvm_cpuid2 *cpuid; /* KVM_GET_SUPPORTED_CPUID, given to the vCPU */
	uint64_t xcr0;            /* set by kvm_guest_long_mode() */
	unsigned mmio_stores;     /* made by kvm_guest_run() since kvm_guest_start() */
	uint64_t last_mmio;       /* GPA of the last one */
	/* The MMIO store not yet made into guest RAM, if pending_len. */
	uint64_t pending_gpa;
	uint32_t pending_len;
	uint8_t pending_data[8];
	int store_err;
};

/* Opens /dev/kvm and creates the VM. */
void kvm_guest_open(struct kvm_guest *g);
/* Registers [host, host+size) as guest RAM at gpa (memslot nram). */
void kvm_guest_add_ram(struct kvm_guest *g, uint64_t gpa, void *host,
		       uint64_t size);
/* Creates vCPU 0 and maps its kvm_run. */
void kvm_guest_add_vcpu(struct kvm_guest *g);
/* Real mode, CS base 0; the caller sets the registers. */
void kvm_guest_real_mode(struct kvm_guest *g);
/*
 * 64-bit mode at CPL 0 with the host's supported CPUID, SSE enabled
 * (CR4.OSFXSR, OSXMMEXCPT) and XCR0 = x87|SSE|AVX, plus the AVX-512 state
 * when KVM offers it.  low is the host address of guest RAM at GPA 0, at
 * least KVM_GUEST_FREE bytes.  The caller sets the registers.
 */
void kvm_guest_long_mode(struct kvm_guest *g, uint8_t *low);
/* Points the vCPU at new code: sets its registers, abandons a store left
 * pending (KVM_GUEST_STORE_FAILED) and zeroes mmio_stores. */
void kvm_guest_start(struct kvm_guest *g, const struct kvm_regs *regs);
/* Register reg (0 eax .. 3 edx) of CPUID leaf fn.idx as given to the guest,
 * 0 when KVM does not report the leaf. */
uint32_t kvm_guest_cpuid(const struct kvm_guest *g, uint32_t fn, uint32_t idx,
			 int reg);
/*
 * Runs the vCPU until an exit other than an MMIO store into registered RAM
 * (which it writes into the RAM, counting it, and goes on).  Returns the
 * exit reason, -errno when KVM_RUN fails (run->exit_reason may then still
 * say why, e.g. KVM_EXIT_MEMORY_FAULT), or KVM_GUEST_STORE_FAILED.
 */
int kvm_guest_run(struct kvm_guest *g);
/* A pcow_map error handler (any opaque) for maps registered as guest RAM:
 * makes a failing VMM store return KVM_GUEST_STORE_FAILED; any other
 * fault the library cannot serve ends the test. */
void kvm_guest_map_error(pcow_map *map, void *addr, int err, void *opaque);
const char *kvm_guest_exit_name(uint32_t reason);
void kvm_guest_close(struct kvm_guest *g);

#endif
