/*
 * fault.c -- SIGSEGV/SIGBUS handling for mapped images.
 *
 * A store to a read-only (inherited) block raises SIGSEGV with SEGV_ACCERR:
 * the block is copied up and mapped writable, and the store is retried when
 * the handler returns.  A store the host file system cannot back (disk
 * full) raises SIGBUS: the map's error handler decides (stop the VM, print
 * and exit...).  Faults outside every map go to the handler that was
 * installed before ours, or get the default action.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>

#include "error.h"
#include "map.h"

#define MAX_MAPS 64

static _Atomic(struct pcow_map *) maps[MAX_MAPS];
/*
 * How many handlers may be looking at maps[i]: a handler counts itself in
 * before it reads the slot and out when it is done with the map, and
 * unregistering empties the slot and then waits for the count to drop to
 * zero, so that a map is never freed under a fault another thread is
 * serving.
 */
static atomic_int users[MAX_MAPS];
static struct sigaction old_segv, old_bus;
static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;
static bool installed;

/* The slot of the map holding addr, counted in (release_slot), or -1. */
static int find_map(void *addr)
{
	int i;

	for (i = 0; i < MAX_MAPS; i++) {
		struct pcow_map *m;

		atomic_fetch_add(&users[i], 1);
		m = atomic_load(&maps[i]);
		if (m && (uint8_t *)addr >= m->base && (uint8_t *)addr < m->base + m->len)
			return i;
		atomic_fetch_sub(&users[i], 1);
	}
	return -1;
}

static void release_slot(int i)
{
	atomic_fetch_sub(&users[i], 1);
}

static void chain(int sig, siginfo_t *info, void *ctx)
{
	const struct sigaction *old = sig == SIGSEGV ? &old_segv : &old_bus;

	if (old->sa_flags & SA_SIGINFO) {
		old->sa_sigaction(sig, info, ctx);
	} else if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
		old->sa_handler(sig);
	} else {
		/* Returning re-executes the access, which now kills as usual. */
		signal(sig, SIG_DFL);
	}
}

static void on_fault(int sig, siginfo_t *info, void *ctx)
{
	int saved_errno = errno, slot = find_map(info->si_addr);
	struct pcow_map *map;
	pcow_map_error_fn err_fn;
	void *err_opaque;
	int ret = -EFAULT;

	if (slot < 0) {
		chain(sig, info, ctx);
		goto out;
	}
	map = atomic_load(&maps[slot]);
	if (sig == SIGSEGV && info->si_code == SEGV_ACCERR && !map->rdonly)
		ret = pcow_map_handle_write(map, info->si_addr);
	else if (sig == SIGBUS)
		/* The file system could not back a page: out of space, usually. */
		ret = -ENOSPC;
	err_fn = map->err_fn;
	err_opaque = map->err_opaque;
	/* The error handler and the chained one may not return (siglongjmp):
	 * the map is no longer ours to hold from here. */
	release_slot(slot);
	if (ret == 0)
		goto out;
	if (err_fn)
		err_fn(map, info->si_addr, ret, err_opaque);
	else
		chain(sig, info, ctx);
out:
	errno = saved_errno;
}

static int install(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_fault;
	/* SA_NODEFER: copy-up code may itself fault on another mapped block. */
	sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSEGV, &sa, &old_segv) < 0 ||
	    sigaction(SIGBUS, &sa, &old_bus) < 0)
		return pcow_err_sys(-errno, "cannot install the fault handler");
	return 0;
}

int pcow_fault_register(struct pcow_map *map)
{
	int i, ret = 0;

	pthread_mutex_lock(&install_lock);
	if (!installed) {
		ret = install();
		installed = ret == 0;
	}
	for (i = 0; ret == 0 && i < MAX_MAPS; i++) {
		struct pcow_map *expected = NULL;

		if (atomic_compare_exchange_strong(&maps[i], &expected, map)) {
			map->registry_slot = i;
			break;
		}
	}
	if (ret == 0 && i == MAX_MAPS)
		ret = pcow_err(-ENOSPC, "too many mapped images (at most %d)", MAX_MAPS);
	pthread_mutex_unlock(&install_lock);
	return ret;
}

void pcow_fault_unregister(struct pcow_map *map)
{
	int i = map->registry_slot;

	if (i < 0)
		return;
	atomic_store(&maps[i], NULL);
	/* A handler that found the map before it left the slot finishes its
	 * copy-up first (it may wait for the image lock: never hold it here). */
	while (atomic_load(&users[i]) > 0)
		sched_yield();
	map->registry_slot = -1;
}
