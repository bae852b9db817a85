/* test_sigbus.c -- what the fault handler does with each kind of SIGBUS
 * (and SIGSEGV) in a map: the decision table, signals sent by a process,
 * a file truncated under the map (-EIO, not -ENOSPC), and a machine check;
 * sent signals and machine checks go to the handler installed before the
 * library's. */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "test.h"
#include "map.h"

static void decisions(void)
{
	static const struct {
		int sig, code;
		bool rdonly;
		enum pcow_fault_action want;
	} cases[] = {
		{SIGSEGV, SEGV_ACCERR, false, PCOW_FAULT_COPY_UP},
		{SIGSEGV, SEGV_ACCERR, true, PCOW_FAULT_EFAULT},
		{SIGSEGV, SEGV_MAPERR, false, PCOW_FAULT_EFAULT},
		{SIGSEGV, SI_USER, false, PCOW_FAULT_CHAIN},
		{SIGSEGV, SI_TKILL, false, PCOW_FAULT_CHAIN},
		{SIGBUS, BUS_ADRERR, false, PCOW_FAULT_NO_PAGE},
		{SIGBUS, BUS_ADRERR, true, PCOW_FAULT_NO_PAGE},
		{SIGBUS, BUS_OBJERR, false, PCOW_FAULT_EIO},
		{SIGBUS, BUS_MCEERR_AR, false, PCOW_FAULT_CHAIN},
		{SIGBUS, BUS_MCEERR_AO, false, PCOW_FAULT_CHAIN},
		{SIGBUS, BUS_ADRALN, false, PCOW_FAULT_CHAIN},
		{SIGBUS, SI_USER, false, PCOW_FAULT_CHAIN},
		{SIGBUS, SI_QUEUE, false, PCOW_FAULT_CHAIN},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		CHECK(pcow_fault_decide(cases[i].sig, cases[i].code, cases[i].rdonly) ==
		      cases[i].want);
}

static sigjmp_buf jb;
static volatile int got_err;

static void on_error(pcow_map *m, void *addr, int err, void *opaque)
{
	(void)m;
	(void)addr;
	(void)opaque;
	got_err = err;
	siglongjmp(jb, 1);
}

/* The error a load (or a store) at off of the map hands the error handler. */
static int access_error(pcow_map *map, uint64_t off, bool store)
{
	volatile uint8_t *p = (uint8_t *)pcow_map_addr(map) + off;

	got_err = 0;
	pcow_map_set_error_handler(map, on_error, NULL);
	if (sigsetjmp(jb, 1) == 0) {
		if (store)
			*p = 1;
		else
			(void)*p;
	}
	return got_err;
}

/* The raw backing file shrinks under a map: its pages are gone, -EIO. */
static void truncated_backing(void)
{
	uint8_t data[65536];
	pcow_image *img;
	pcow_map *map;

	memset(data, 0x5a, sizeof(data));
	img = test_overlay_on_raw("tb.raw", 1 << 20, data, 0, sizeof(data), "tb.pcow", 65536);
	OK(pcow_map_new(&map, img, 0));
	CHECK(((uint8_t *)pcow_map_addr(map))[100] == 0x5a);
	CHECK(truncate(test_path("tb.raw"), 0) == 0);
	CHECK(access_error(map, 100, false) == -EIO);
	OK(pcow_map_delete(&map));
	OK(pcow_close(&img));
}

/* The image file itself shrinks under a map: -EIO, not out of space. */
static void truncated_image(void)
{
	struct pcow_create_opts o = {.struct_size = sizeof(o), .size = 4 << 20, .block_size = 65536};
	pcow_image *img;
	pcow_map *map;

	OK(pcow_create(test_path("ti.pcow"), &o));
	OK(pcow_open(&img, test_path("ti.pcow"), 0));
	OK(pcow_map_new(&map, img, 0));
	((uint8_t *)pcow_map_addr(map))[0] = 1;
	CHECK(truncate(test_path("ti.pcow"),
		       (off_t)(region_start(img, img->m.active) + 65536)) == 0);
	CHECK(access_error(map, 2 << 20, true) == -EIO);
	OK(pcow_map_delete(&map));
	pcow_close(&img);
}

static volatile int earlier_sent;

/* The handler installed before the library's, for both signals. */
static void on_earlier(int sig, siginfo_t *si, void *ctx)
{
	(void)sig;
	(void)ctx;
	if (si->si_code == SI_QUEUE) {
		earlier_sent++;
		return;
	}
	_exit(si->si_code == BUS_MCEERR_AR || si->si_code == BUS_MCEERR_AO ? 10 : 12);
}

/*
 * A signal another process sends (sigqueue) is not a fault, whatever its
 * si_addr says: here the address of an inherited block of a map with an
 * error handler.  It goes to the earlier handler; nothing is copied.
 */
static void sent_signals(void)
{
	uint8_t data[65536];
	struct pcow_map_stats st;
	pcow_image *img;
	pcow_map *map;
	int i, sigs[] = {SIGSEGV, SIGBUS};

	memset(data, 0x5a, sizeof(data));
	img = test_overlay_on_raw("ss.raw", 1 << 20, data, 0, sizeof(data), "ss.pcow", 65536);
	OK(pcow_map_new(&map, img, 0));
	pcow_map_set_error_handler(map, on_error, NULL);
	for (i = 0; i < 2; i++) {
		siginfo_t si;

		memset(&si, 0, sizeof(si));
		si.si_signo = sigs[i];
		si.si_code = SI_QUEUE;
		si.si_addr = (uint8_t *)pcow_map_addr(map) + 100;
		got_err = 0;
		if (sigsetjmp(jb, 1) == 0)
			CHECK(syscall(SYS_rt_tgsigqueueinfo, getpid(), gettid(), sigs[i], &si) == 0);
		CHECK(got_err == 0 && earlier_sent == i + 1);
	}
	OK(pcow_map_get_stats(map, &st));
	CHECK(st.faults == 0 && st.blocks_copied == 0);
	OK(pcow_map_delete(&map));
	OK(pcow_close(&img));
}

static void poison_error(pcow_map *m, void *addr, int err, void *opaque)
{
	(void)m;
	(void)addr;
	(void)err;
	(void)opaque;
	_exit(11);
}

/* A machine check in a mapped page reaches the earlier handler, even with
 * an error handler set: QEMU's passes it to the guest. */
static void machine_check(void)
{
	struct pcow_create_opts o = {.struct_size = sizeof(o), .size = 4 << 20, .block_size = 65536};
	volatile uint8_t *p;
	pcow_image *img;
	pcow_map *map;
	int status;
	pid_t pid;

	OK(pcow_create(test_path("mc.pcow"), &o));
	fflush(stdout);
	pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		test_in_child();
		OK(pcow_open(&img, test_path("mc.pcow"), 0));
		OK(pcow_map_new(&map, img, 0));
		pcow_map_set_error_handler(map, poison_error, NULL);
		p = pcow_map_addr(map);
		p[0] = 1;
		if (madvise((void *)p, 4096, MADV_HWPOISON) < 0) {
			printf("machine check: skipped (MADV_HWPOISON: %s; it needs "
			       "CAP_SYS_ADMIN and CONFIG_MEMORY_FAILURE)\n", strerror(errno));
			fflush(stdout);
			_exit(77);
		}
		(void)p[0];
		_exit(13);
	}
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status));
	if (WEXITSTATUS(status) == 77)
		return;
	printf("machine check: child exit %d\n", WEXITSTATUS(status));
	CHECK(WEXITSTATUS(status) == 10);
}

int main(void)
{
	struct sigaction sa = {0};

	/* Installed before the library's, which must pass machine checks and
	 * sent signals on. */
	sa.sa_sigaction = on_earlier;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	CHECK(sigaction(SIGBUS, &sa, NULL) == 0 && sigaction(SIGSEGV, &sa, NULL) == 0);
	decisions();
	sent_signals();
	truncated_backing();
	truncated_image();
	machine_check();
	printf("sigbus: ok\n");
	return 0;
}
