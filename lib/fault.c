/*
 * fault.c -- SIGSEGV/SIGBUS handling for mapped images.
 *
 * A store to a read-only (inherited) block raises SIGSEGV with SEGV_ACCERR:
 * the block is copied up and mapped writable, and the store is retried when
 * the handler returns.  A page the host file system cannot back raises
 * SIGBUS with BUS_ADRERR: out of space (-ENOSPC), or past the end of a
 * truncated file or in a file below (-EIO); the map's error handler
 * decides (stop the VM, print and exit...).  Machine checks
 * (BUS_MCEERR_*), faults outside every map and signals sent by other
 * processes go to the handler that was installed before ours, or get the
 * default action.
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
 * serving.  The range each slot's map covers (which may be stale) lets a
 * handler find its slot without touching every slot's counter.
 */
static atomic_int users[MAX_MAPS];
static _Atomic uintptr_t range_lo[MAX_MAPS], range_hi[MAX_MAPS];
static struct sigaction old_segv, old_bus;
static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;
static bool installed;

/* The slot of the map holding addr, counted in (release_slot), or -1. */
static int find_map(void *addr)
{
	uintptr_t a = (uintptr_t)addr;
	int i;

	for (i = 0; i < MAX_MAPS; i++) {
		struct pcow_map *m;

		if (a < atomic_load(&range_lo[i]) || a >= atomic_load(&range_hi[i]))
			continue;
		/* Counted in first: only then may the map be looked at. */
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

/*
 * True for a fault the kernel raises on the faulting instruction, which
 * runs again when the handler returns; not for a signal sent by kill() or
 * sigqueue() (si_code <= 0), nor for a machine check the kernel reports
 * ahead of any access (BUS_MCEERR_AO).
 */
static bool refaults(int sig, int code)
{
	return code > 0 && !(sig == SIGBUS && code == BUS_MCEERR_AO);
}

static void chain(int sig, siginfo_t *info, void *ctx)
{
	const struct sigaction *old = sig == SIGSEGV ? &old_segv : &old_bus;

	if (old->sa_flags & SA_SIGINFO) {
		old->sa_sigaction(sig, info, ctx);
	} else if (old->sa_handler == SIG_IGN && !refaults(sig, info->si_code)) {
		/* ignored before us: still ignored */
	} else if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
		old->sa_handler(sig);
	} else {
		/* The default action: on return a fault happens again and now
		 * kills as usual; anything else is raised again. */
		signal(sig, SIG_DFL);
		if (!refaults(sig, info->si_code))
			raise(sig);
	}
}

enum pcow_fault_action pcow_fault_decide(int sig, int code, bool rdonly)
{
	if (code <= 0)
		return PCOW_FAULT_CHAIN;       /* sent, not a fault */
	if (sig == SIGSEGV)
		return code == SEGV_ACCERR && !rdonly ? PCOW_FAULT_COPY_UP
						      : PCOW_FAULT_EFAULT;
	switch (code) {
	case BUS_ADRERR:
		return PCOW_FAULT_NO_PAGE;
	case BUS_OBJERR:
		return PCOW_FAULT_EIO;
	default:
		/* A machine check (memory failed under the page: QEMU passes
		 * it on to the guest), a misaligned access: not ours. */
		return PCOW_FAULT_CHAIN;
	}
}

/* The signal context of the error handler running in this thread. */
static __thread void *error_ctx;

void *pcow_map_fault_context(void)
{
	return error_ctx;
}

/*
 * Runs in signal context.  Async-signal-safe but for the image lock, which
 * pcow_map_handle_write and pcow_map_bus_error take: a thread that holds it
 * is inside the library, and the only faults it can raise there are on the
 * caller's buffers, which may lie in the map; the lock is recursive, so its
 * own fault takes it again; and the library never waits for another thread
 * while holding it (pcow_map_delete waits for faults in other threads
 * without it).  What is left to the caller (pcow.h): progress callbacks
 * that wait for a thread storing into a map, and buffers for one image's
 * calls inside another image's map, which two threads can use crosswise.
 * Error messages are formatted without locale or allocation (error.c).
 */
static void on_fault(int sig, siginfo_t *info, void *ctx)
{
	int saved_errno = errno, slot = -1, ret = 0;
	struct pcow_map *map = NULL;
	pcow_map_error_fn err_fn = NULL;
	void *err_opaque = NULL;

	if (info->si_code > 0)
		slot = find_map(info->si_addr);
	if (slot >= 0) {
		map = atomic_load(&maps[slot]);
		switch (pcow_fault_decide(sig, info->si_code, map->rdonly)) {
		case PCOW_FAULT_CHAIN:
			ret = 1;
			break;
		case PCOW_FAULT_COPY_UP:
			ret = pcow_map_handle_write(map, info->si_addr);
			break;
		case PCOW_FAULT_EFAULT:
			ret = -EFAULT;
			break;
		case PCOW_FAULT_NO_PAGE:
			ret = pcow_map_bus_error(map, info->si_addr);
			break;
		case PCOW_FAULT_EIO:
			ret = -EIO;
			break;
		}
		err_fn = map->err_fn;
		err_opaque = map->err_opaque;
		/* The error handler and the chained one may not return
		 * (siglongjmp): the map is no longer ours to hold from here. */
		release_slot(slot);
	}
	if (ret < 0 && err_fn) {
		/* Left set if the handler does not return: the next one
		 * sets its own. */
		error_ctx = ctx;
		err_fn(map, info->si_addr, ret, err_opaque);
		error_ctx = NULL;
	} else if (ret != 0 || slot < 0)
		chain(sig, info, ctx);
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
			atomic_store(&range_lo[i], (uintptr_t)map->base);
			atomic_store(&range_hi[i], (uintptr_t)map->base + map->len);
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
	atomic_store(&range_hi[i], 0);
	/* A handler that found the map before it left the slot finishes its
	 * copy-up first (it may wait for the image lock: never hold it here). */
	while (atomic_load(&users[i]) > 0)
		sched_yield();
	map->registry_slot = -1;
}
