/* test_fault_error.c -- a copy-up failing inside the fault handler records
 * its message without what is unsafe in signal context (vsnprintf,
 * strerror), and tells the error handler where the store was; messages
 * read as printf would have made them. */
#include <dlfcn.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <ucontext.h>

#include "test.h"
#include "error.h"
#include "persist.h"

/* Counted while a store faults: neither may run in the handler. */
static atomic_int counting, unsafe_calls;

int vsnprintf(char *s, size_t n, const char *fmt, va_list ap)
{
	int (*real)(char *, size_t, const char *, va_list) =
		(int (*)(char *, size_t, const char *, va_list))dlsym(RTLD_NEXT, "vsnprintf");

	if (atomic_load(&counting))
		atomic_fetch_add(&unsafe_calls, 1);
	return real(s, n, fmt, ap);
}

char *strerror(int err)
{
	const char *s = strerrordesc_np(err);

	if (atomic_load(&counting))
		atomic_fetch_add(&unsafe_calls, 1);
	return (char *)(s ? s : "Unknown error");
}

static int fail_writes(enum pcow_io_op op, int fd, uint64_t offset, uint64_t len,
		       const void *buf, void *opaque)
{
	(void)fd;
	(void)offset;
	(void)len;
	(void)buf;
	(void)opaque;
	return op == PCOW_IO_WRITE ? -EIO : 0;
}

static sigjmp_buf jb;
static char handler_msg[512];
static volatile int handler_err;
static volatile uintptr_t handler_pc;

/* The instruction pointer of a signal context, 0 where unknown. */
static uintptr_t context_pc(const void *ctx)
{
	const ucontext_t *uc = ctx;

	if (!uc)
		return 0;
#if defined(__x86_64__)
	return (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
	return (uintptr_t)uc->uc_mcontext.pc;
#else
	return 1;
#endif
}

static void on_error(pcow_map *m, void *addr, int err, void *opaque)
{
	(void)m;
	(void)addr;
	(void)opaque;
	handler_err = err;
	handler_pc = context_pc(pcow_map_fault_context());
	strncpy(handler_msg, pcow_errormsg(), sizeof(handler_msg) - 1);
	siglongjmp(jb, 1);
}

/* The store that faults, at an address the test knows. */
__attribute__((noinline)) static void store_one(volatile uint8_t *p)
{
	p[10] = 1;
}

static void copy_up_fails(void)
{
	uint8_t data[65536];
	volatile uint8_t *p;
	pcow_image *img;
	pcow_map *map;

	memset(data, 0x3c, sizeof(data));
	img = test_overlay_on_raw("fe.raw", 1 << 20, data, 0, sizeof(data), "fe.pcow", 65536);
	OK(pcow_map_new(&map, img, 0));
	pcow_map_set_error_handler(map, on_error, NULL);
	p = pcow_map_addr(map);
	pcow_io_set_hook(fail_writes, NULL);
	CHECK(pcow_map_fault_context() == NULL);
	atomic_store(&counting, 1);
	if (sigsetjmp(jb, 1) == 0)
		store_one(p);
	atomic_store(&counting, 0);
	pcow_io_set_hook(NULL, NULL);
	printf("copy-up error in the handler: %d, \"%s\", %d unsafe calls\n", handler_err,
	       handler_msg, atomic_load(&unsafe_calls));
	CHECK(handler_err == -EIO && strcmp(handler_msg, "write failed: Input/output error") == 0);
	CHECK(atomic_load(&unsafe_calls) == 0);
	/* The handler was told where the store is, to restart it later. */
	printf("faulting instruction at store_one+%ld\n",
	       (long)(handler_pc - (uintptr_t)store_one));
#if defined(__x86_64__) || defined(__aarch64__)
	CHECK(handler_pc >= (uintptr_t)store_one &&
	      handler_pc < (uintptr_t)store_one + 512);
#else
	CHECK(handler_pc != 0);
#endif
	OK(pcow_map_delete(&map));
	OK(pcow_close(&img));
}

/* error.c formats by hand: the conversions the library uses, as printf. */
static void formats(void)
{
	char want[512];

	snprintf(want, sizeof(want), "%s|%u|%d|%i|%llu|%llx|%lld|%x|%lu|%zu|%05u|%c|%%|%s",
		 "path", 4000000000u, -17, 42, 18446744073709551615ull, 0xdeadbeefcafeull,
		 -9000000000ll, 255u, 7ul, (size_t)12, 42u, 'q', "end");
	pcow_err(-1, "%s|%u|%d|%i|%llu|%llx|%lld|%x|%lu|%zu|%05u|%c|%%|%s",
		 "path", 4000000000u, -17, 42, 18446744073709551615ull, 0xdeadbeefcafeull,
		 -9000000000ll, 255u, 7ul, (size_t)12, 42u, 'q', "end");
	CHECK(strcmp(pcow_errormsg(), want) == 0);
	pcow_err_sys(-ENOSPC, "%s: full at %llu", "img", 12ull);
	CHECK(strcmp(pcow_errormsg(), "img: full at 12: No space left on device") == 0);
}

int main(void)
{
	formats();
	copy_up_fails();
	printf("fault error: ok\n");
	return 0;
}
