/* test_lifetime.c -- a map and its image: closing a mapped image, and
 * deleting a map while another thread's fault in it is being served. */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <time.h>

#include "test.h"

static void pause_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000};

	nanosleep(&ts, NULL);
}

/* Closing a mapped image is refused: the map handle stays valid, and
 * deleting it afterwards touches nothing freed (run under ASan). */
static void close_then_delete(void)
{
	uint8_t data[4096];
	pcow_image *img;
	pcow_map *map;
	int ret;

	memset(data, 0x42, sizeof(data));
	img = test_overlay_on_raw("c.raw", 1 << 20, data, 0, sizeof(data), "c.pcow", 4096);
	OK(pcow_map_new(&map, img, 0));
	ret = pcow_close(&img);
	CHECK(((uint8_t *)pcow_map_addr(map))[10] == 0x42);
	OK(pcow_map_delete(&map));
	CHECK(ret == -EBUSY && img);
	OK(pcow_close(&img));
}

/*
 * Deleting a map while a fault in it is served.  The main thread holds the
 * image lock inside pcow_read, stopped in a fault on its own buffer (a
 * page no map holds, so our handler passes it to the one installed before,
 * on_other_fault).  There it lets the writer store into an inherited
 * block, whose fault waits for the image lock, and then the deleter delete
 * the map: the delete must wait until the writer's fault is done.
 */
static pcow_map *dmap;
static uint8_t *stall_page;
static pthread_t writer_thread;
static sigjmp_buf writer_jb;
static atomic_int go_write, go_delete, deleted, wrote;
static int deleted_early;

static void on_other_fault(int sig, siginfo_t *si, void *ctx)
{
	(void)sig;
	(void)ctx;
	if (pthread_equal(pthread_self(), writer_thread))
		/* its store retried after the delete unmapped the range */
		siglongjmp(writer_jb, 1);
	CHECK(si->si_addr == stall_page);
	atomic_store(&go_write, 1);
	pause_ms(200);
	atomic_store(&go_delete, 1);
	pause_ms(300);
	deleted_early = atomic_load(&deleted);
	CHECK(mprotect(stall_page, 4096, PROT_READ | PROT_WRITE) == 0);
}

static void *writer(void *arg)
{
	volatile uint8_t *p = arg;

	while (!atomic_load(&go_write))
		pause_ms(1);
	if (sigsetjmp(writer_jb, 1) == 0)
		p[100] = 0x77;
	atomic_store(&wrote, 1);
	return NULL;
}

static void *deleter(void *arg)
{
	(void)arg;
	while (!atomic_load(&go_delete))
		pause_ms(1);
	OK(pcow_map_delete(&dmap));
	atomic_store(&deleted, 1);
	return NULL;
}

static void delete_during_fault(void)
{
	uint8_t data[65536];
	pthread_t del;
	pcow_image *img;

	memset(data, 0x3c, sizeof(data));
	img = test_overlay_on_raw("d.raw", 4 << 20, data, 0, sizeof(data), "d.pcow", 65536);
	OK(pcow_map_new(&dmap, img, 0));
	stall_page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(stall_page != MAP_FAILED);
	CHECK(pthread_create(&writer_thread, NULL, writer, pcow_map_addr(dmap)) == 0);
	CHECK(pthread_create(&del, NULL, deleter, NULL) == 0);
	/* offset 1 MiB is a hole everywhere: pcow_read memsets the buffer */
	OK(pcow_read(img, stall_page, 4096, 1 << 20));
	pthread_join(writer_thread, NULL);
	pthread_join(del, NULL);
	printf("delete during fault: deleted %s the fault was served\n",
	       deleted_early ? "before" : "after");
	CHECK(!deleted_early && wrote && !dmap);
	OK(pcow_close(&img));
	munmap(stall_page, 4096);
}

int main(void)
{
	struct sigaction sa = {0};

	/* Installed before the library's, which passes it faults not its own. */
	sa.sa_sigaction = on_other_fault;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	CHECK(sigaction(SIGSEGV, &sa, NULL) == 0);
	close_then_delete();
	delete_during_fault();
	printf("lifetime: ok\n");
	return 0;
}
