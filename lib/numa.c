/* numa.c -- NUMA node binding of mappings (numa.h). */
#include <linux/mempolicy.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "format.h"
#include "numa.h"

#define LONG_BITS (8 * sizeof(unsigned long))
/* Room for every node the format allows (0 to PCOW_NODE_MAX) plus one bit:
 * the kernel reads maxnode - 1 bits of an mbind mask. */
#define MASK_LONGS ((PCOW_NODE_MAX + 1) / LONG_BITS + 1)

bool pcow_numa_has_node(unsigned node)
{
	unsigned long mask[MASK_LONGS] = {0};

	/* The nodes this task may allocate on: a node the host lacks, or one
	 * outside the cpuset, would make mbind fail with EINVAL. */
	if (node > PCOW_NODE_MAX ||
	    syscall(SYS_get_mempolicy, NULL, mask, (unsigned long)(PCOW_NODE_MAX + 1),
		    NULL, (unsigned long)MPOL_F_MEMS_ALLOWED) != 0)
		return false;
	return mask[node / LONG_BITS] >> (node % LONG_BITS) & 1;
}

int pcow_numa_bind(void *addr, size_t len, unsigned node)
{
	unsigned long mask[MASK_LONGS] = {0};

	mask[node / LONG_BITS] = 1ul << (node % LONG_BITS);
	return syscall(SYS_mbind, addr, len, (unsigned long)MPOL_BIND, mask,
		       (unsigned long)(node + 2), 0ul) == 0 ? 0 : -1;
}
