/*
 * numa.h -- binding the maps of an extent file to a host NUMA node
 * (docs/design.md, "NUMA placement"), by raw system calls: the library
 * needs two of them, not libnuma.
 */
#ifndef PCOW_NUMA_H
#define PCOW_NUMA_H

#include <stdbool.h>
#include <stddef.h>

/* Whether this process may place memory on node (the host has it and the
 * cpuset allows it); false on a kernel without NUMA. */
bool pcow_numa_has_node(unsigned node);

/* mbind(MPOL_BIND, {node}) of [addr, addr+len): pages faulted there from
 * now on come from node.  Returns 0, or -1 with errno.  Async-signal-safe
 * (the write-fault handler maps through it). */
int pcow_numa_bind(void *addr, size_t len, unsigned node);

#endif
