/*
 * pending.c -- copy bits waiting for the next flush (see pending.h).
 *
 * The bits live in memory for lookups and in the image file's pending log
 * (format.md 5, "The pending log"), written through the page cache with
 * no sync.  A process that dies (kill -9, a crash) leaves its stores in
 * the page cache, and the log is there with them, so the next open
 * applies it.  A power failure or a reboot loses page-cache data the log
 * may vouch for: the log names the boot it was written in, and a log from
 * another boot is discarded, which leaves those blocks inherited, as they
 * were at the last flush.  Nothing lives outside the image file, so
 * nothing can be planted, go stale or be lost apart from it.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "layer.h"
#include "map.h"
#include "pending.h"
#include "persist.h"

#define LOG_OFFSET ((uint64_t)PCOW_RESERVED_OFFSET)
#define LOG_HEADER 4096u
#define LOG_END ((uint64_t)PCOW_DATA_OFFSET)
/* Entries the log holds; a full log is persisted at once. */
#define LOG_CAPACITY ((LOG_END - LOG_OFFSET - LOG_HEADER) / 8)
#define LOG_MAGIC "PCOWLOG\n"
#define BOOT_ID_LEN 36u

enum {
	LOGH_MAGIC = 0,
	LOGH_GENERATION = 8,
	LOGH_BOOT_ID = 16,
	LOGH_SIZE = LOGH_BOOT_ID + BOOT_ID_LEN,
};

#define ENTRY_VALID (1ull << 63)
#define ENTRY_REGION_SHIFT 40
#define ENTRY_BLOCK_MASK ((1ull << ENTRY_REGION_SHIFT) - 1)

struct pending_word {
	uint32_t region;
	uint64_t word;
};

/* mmap, not malloc: the state is used inside the write-fault handler. */
struct pcow_pending {
	uint64_t *shadow[PCOW_MAX_REGIONS];  /* region r's, shadow_len bytes */
	uint64_t shadow_len;
	bool reader;            /* a read-only view of another writer's log */
	uint64_t logged;        /* entries in the image's log */
	uint32_t count;         /* words in list */
	struct pending_word list[LOG_CAPACITY];
};

static char boot_id[BOOT_ID_LEN + 1];
static pthread_once_t boot_once = PTHREAD_ONCE_INIT;

static void read_boot_id(void)
{
	int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);

	/* Without it no log can be proven to be from this boot: each open
	 * then discards what it finds, as after a power failure. */
	if (fd >= 0) {
		if (read(fd, boot_id, BOOT_ID_LEN) != BOOT_ID_LEN)
			memset(boot_id, 0, sizeof(boot_id));
		close(fd);
	}
}

void pcow_pending_set_boot_id(const char *id)
{
	pthread_once(&boot_once, read_boot_id);
	memset(boot_id, 0, sizeof(boot_id));
	strncpy(boot_id, id, BOOT_ID_LEN);
}

static void drop_state(pcow_image *img)
{
	struct pcow_pending *ps = img->pending;
	uint32_t r;

	if (!ps)
		return;
	for (r = 0; r < PCOW_MAX_REGIONS; r++)
		if (ps->shadow[r])
			munmap(ps->shadow[r], ps->shadow_len);
	munmap(ps, sizeof(*ps));
	img->pending = NULL;
}

/* The state for the image's current layout (a resize changes it, after
 * persisting everything). */
static int get_state(pcow_image *img, struct pcow_pending **out)
{
	struct pcow_pending *ps = img->pending;

	if (ps && ps->shadow_len == img->bitmap_span) {
		*out = ps;
		return 0;
	}
	if (ps && (ps->count || ps->logged))
		return pcow_err(-EIO, "%s: pending copy bits of another layout", img->path);
	drop_state(img);
	ps = mmap(NULL, sizeof(*ps), PROT_READ | PROT_WRITE,
		  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (ps == MAP_FAILED)
		return pcow_err(-ENOMEM, "out of memory");
	ps->shadow_len = img->bitmap_span;
	img->pending = ps;
	*out = ps;
	return 0;
}

/* Region's shadow, mapped on first use (sparse: only words with pending
 * bits take memory). */
static uint64_t *shadow_of(struct pcow_pending *ps, uint32_t region)
{
	void *p;

	if (!ps->shadow[region]) {
		p = mmap(NULL, ps->shadow_len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p == MAP_FAILED)
			return NULL;
		ps->shadow[region] = p;
	}
	return ps->shadow[region];
}

/* A word of region's shadow, 0 when it has none. */
static uint64_t shadow_word(const struct pcow_pending *ps, uint32_t region, uint64_t word)
{
	return ps->shadow[region] ? ps->shadow[region][word] : 0;
}

/* Notes block of region in the shadow (not in the log). */
static int shadow_set(pcow_image *img, struct pcow_pending *ps, uint32_t region,
		      uint64_t block)
{
	uint64_t *s = shadow_of(ps, region);

	if (!s)
		return pcow_err(-ENOMEM, "%s: no memory for pending copy bits", img->path);
	if (!s[block / 64])
		ps->list[ps->count++] = (struct pending_word){region, block / 64};
	s[block / 64] |= 1ull << (block % 64);
	return 0;
}

int pcow_pending_prepare(pcow_image *img)
{
	struct pcow_pending *ps;
	int ret = get_state(img, &ps);

	if (ret == 0 && !shadow_of(ps, img->m.layers[img->m.active].region))
		ret = pcow_err(-ENOMEM, "%s: no memory for pending copy bits", img->path);
	return ret;
}

static void encode_header(const pcow_image *img, uint8_t *h)
{
	memset(h, 0, LOGH_SIZE);
	memcpy(h + LOGH_MAGIC, LOG_MAGIC, 8);
	pcow_put_le64(h + LOGH_GENERATION, img->m.generation);
	memcpy(h + LOGH_BOOT_ID, boot_id, BOOT_ID_LEN);
}

int pcow_pending_set_run(pcow_image *img, uint32_t layer, uint64_t first,
			 uint64_t n)
{
	uint32_t region = img->m.layers[layer].region;
	struct pcow_pending *ps;
	uint64_t entries[64];
	uint8_t h[LOGH_SIZE];
	int ret = get_state(img, &ps);

	if (ret < 0)
		return ret;
	if (ps->reader)
		return pcow_err(-EACCES, "%s: image is opened read-only", img->path);
	while (n) {
		uint64_t k = n < 64 ? n : 64, i;

		if (ps->logged + k > LOG_CAPACITY) {
			ret = pcow_pending_persist(img);
			if (ret < 0)
				return ret;
		}
		if (!ps->logged) {
			encode_header(img, h);
			ret = pcow_io_pwrite(img->fd, h, LOGH_SIZE, LOG_OFFSET);
			if (ret < 0)
				return ret;
		}
		for (i = 0; i < k; i++)
			pcow_put_le64((uint8_t *)&entries[i], ENTRY_VALID |
				      (uint64_t)region << ENTRY_REGION_SHIFT | (first + i));
		/* In the log before the shadow: a bit readers see must
		 * survive this process. */
		ret = pcow_io_pwrite(img->fd, entries, k * 8,
				     LOG_OFFSET + LOG_HEADER + ps->logged * 8);
		if (ret < 0)
			return ret;
		ps->logged += k;
		for (i = 0; i < k && ret == 0; i++)
			ret = shadow_set(img, ps, region, first + i);
		if (ret < 0)
			return ret;
		first += k;
		n -= k;
	}
	return 0;
}

bool pcow_pending_test(const pcow_image *img, uint32_t region, uint64_t block)
{
	struct pcow_pending *ps = img->pending;

	if (!ps || !ps->count || block / 8 >= ps->shadow_len)
		return false;
	return shadow_word(ps, region, block / 64) >> (block % 64) & 1;
}

uint64_t pcow_pending_word(const pcow_image *img, uint32_t region, uint64_t word)
{
	struct pcow_pending *ps = img->pending;

	if (!ps || !ps->count || word >= ps->shadow_len / 8)
		return 0;
	return shadow_word(ps, region, word);
}

uint64_t pcow_pending_blocks(const pcow_image *img)
{
	const struct pcow_pending *ps = img->pending;
	uint64_t n = 0;
	uint32_t i;

	for (i = 0; ps && i < ps->count; i++)
		n += (uint64_t)__builtin_popcountll(
			shadow_word(ps, ps->list[i].region, ps->list[i].word));
	return n;
}

bool pcow_pending_any(const pcow_image *img)
{
	return img->pending && img->pending->count;
}

/* Forgets the log: punched, so that a later open finds no magic. */
static int clear_log(pcow_image *img, uint64_t entries)
{
	uint64_t len = LOG_HEADER + (entries * 8 + 4095) / 4096 * 4096;

	return pcow_io_punch(img->fd, LOG_OFFSET, len > LOG_END - LOG_OFFSET ?
				     LOG_END - LOG_OFFSET : len);
}

int pcow_pending_persist(pcow_image *img)
{
	struct pcow_pending *ps = img->pending;
	uint32_t i;
	int ret;

	if (!ps || ps->reader || (!ps->count && !ps->logged))
		return 0;
	/* The data the bits vouch for is durable before any of them. */
	ret = pcow_io_sync(img->fd);
	for (i = 0; i < ps->count && ret == 0; i++) {
		struct pending_word *w = &ps->list[i];
		uint64_t *bits = &ps->shadow[w->region][w->word];

		ret = pcow_bits_or(img, w->region, w->word, *bits);
		if (ret < 0)
			break;
		/* The image's bitmap holds it now: the shadow may forget it. */
		*bits = 0;
	}
	if (ret < 0) {
		/* What was not written waits for the next try; the log still
		 * holds all of it. */
		memmove(ps->list, ps->list + i, (ps->count - i) * sizeof(ps->list[0]));
		ps->count -= i;
		return ret;
	}
	ps->count = 0;
	/* The bits are written, not yet durable: a power failure before the
	 * caller's sync discards the log anyway (another boot). */
	ret = clear_log(img, ps->logged);
	if (ret == 0)
		ps->logged = 0;
	return ret;
}

int pcow_pending_log_found(pcow_image *img)
{
	uint8_t magic[8];
	int ret = pcow_io_pread(img->fd, magic, sizeof(magic), LOG_OFFSET);

	return ret < 0 ? ret : !memcmp(magic, LOG_MAGIC, sizeof(magic));
}

int pcow_pending_each(pcow_image *img, uint32_t region,
		      int (*fn)(pcow_image *img, uint64_t block, void *opaque),
		      void *opaque)
{
	struct pcow_pending *ps = img->pending;
	uint32_t i;
	int ret;

	for (i = 0; ps && i < ps->count; i++) {
		uint64_t bits = shadow_word(ps, ps->list[i].region, ps->list[i].word);

		if (ps->list[i].region != region)
			continue;
		for (; bits; bits &= bits - 1) {
			ret = fn(img, ps->list[i].word * 64 +
					      (uint64_t)__builtin_ctzll(bits),
				 opaque);
			if (ret < 0)
				return ret;
		}
	}
	return 0;
}

/*
 * Reads the log's entries into the shadow; *valid says whether the log
 * may be applied (this boot, this metadata).  Entries that name no layer
 * or lie past the image are never applied.
 */
static int load_log(pcow_image *img, struct pcow_pending *ps, bool *found,
		    bool *valid)
{
	uint64_t cap = LOG_CAPACITY, i;
	uint8_t h[LOGH_SIZE], want[LOGH_SIZE];
	uint64_t *entries;
	int ret = pcow_io_pread(img->fd, h, LOGH_SIZE, LOG_OFFSET);

	*found = *valid = false;
	if (ret < 0)
		return ret;
	if (memcmp(h + LOGH_MAGIC, LOG_MAGIC, 8))
		return 0;
	*found = true;
	encode_header(img, want);
	if (!boot_id[0] || memcmp(h, want, LOGH_SIZE))
		return 0;
	*valid = true;
	entries = malloc(cap * 8);
	if (!entries)
		return pcow_err(-ENOMEM, "out of memory");
	ret = pcow_io_pread(img->fd, entries, cap * 8, LOG_OFFSET + LOG_HEADER);
	for (i = 0; i < cap && ret == 0; i++) {
		uint64_t e = pcow_le64((const uint8_t *)&entries[i]);
		uint32_t region = (uint32_t)((e & ~ENTRY_VALID) >> ENTRY_REGION_SHIFT);
		uint64_t block = e & ENTRY_BLOCK_MASK;

		if (!(e & ENTRY_VALID))
			break;  /* entries are appended: the first gap ends them */
		ps->logged = i + 1;
		if (region < PCOW_MAX_REGIONS && pcow_meta_region_used(&img->m, region) &&
		    block < img->nblocks && !pcow_pending_test(img, region, block))
			ret = shadow_set(img, ps, region, block);
	}
	free(entries);
	return ret;
}

int pcow_pending_recover(pcow_image *img)
{
	struct pcow_pending *ps;
	bool found = false, valid = false;
	int ret;

	pthread_once(&boot_once, read_boot_id);
	ret = get_state(img, &ps);
	if (ret == 0)
		ret = load_log(img, ps, &found, &valid);
	if (ret < 0 || (!found && img->rdonly)) {
		drop_state(img);
		return ret;
	}
	/* A writer keeps the state: its first copy-up may come in the
	 * fault handler, which should not have to map memory. */
	if (!found)
		return 0;
	if (img->rdonly) {
		/* Read through another writer's bits (or a dead one's); a
		 * stale log is not read at all. */
		if (valid)
			ps->reader = true;
		else
			drop_state(img);
		return 0;
	}
	if (!valid) {
		/* Written in another boot, so its data may be lost; or for
		 * other metadata.  The blocks stay inherited. */
		drop_state(img);
		return clear_log(img, LOG_CAPACITY);
	}
	/* Same boot: the data the bits vouch for is in the page cache.
	 * Persist it, then the bits, then forget the log. */
	ret = pcow_pending_persist(img);
	if (ret == 0)
		ret = pcow_io_sync(img->fd);
	return ret;
}

void pcow_pending_release(pcow_image *img)
{
	drop_state(img);
}

/* ---- Bounded loss: a thread that persists pending bits ---------------- */

struct pcow_flusher {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	uint64_t interval_ms;
	bool stop;
};

static void *flusher_main(void *opaque)
{
	pcow_image *img = opaque;
	struct pcow_flusher *f = img->flusher;
	struct timespec t;

	pthread_mutex_lock(&f->mu);
	while (!f->stop) {
		clock_gettime(CLOCK_MONOTONIC, &t);
		t.tv_sec += (time_t)(f->interval_ms / 1000);
		t.tv_nsec += (long)(f->interval_ms % 1000) * 1000000L;
		if (t.tv_nsec >= 1000000000L) {
			t.tv_sec++;
			t.tv_nsec -= 1000000000L;
		}
		if (pthread_cond_timedwait(&f->cond, &f->mu, &t) != ETIMEDOUT || f->stop)
			continue;
		pthread_mutex_unlock(&f->mu);
		pthread_mutex_lock(&img->lock);
		/* A kernel copy-on-write map's stores reach the file here. */
		if (img->map && !img->poisoned)
			(void)pcow_map_writeback(img->map, 0, img->map->len);
		if (img->pending && img->pending->logged && !img->poisoned &&
		    pcow_pending_persist(img) == 0)
			(void)pcow_io_sync(img->fd);
		pthread_mutex_unlock(&img->lock);
		pthread_mutex_lock(&f->mu);
	}
	pthread_mutex_unlock(&f->mu);
	return NULL;
}

int pcow_pending_set_interval(pcow_image *img, uint64_t interval_ms)
{
	struct pcow_flusher *f = img->flusher;
	pthread_condattr_t attr;
	int ret;

	if (f && interval_ms) {
		pthread_mutex_lock(&f->mu);
		f->interval_ms = interval_ms;
		pthread_cond_signal(&f->cond);
		pthread_mutex_unlock(&f->mu);
		return 0;
	}
	if (f) {
		pthread_mutex_lock(&f->mu);
		f->stop = true;
		pthread_cond_signal(&f->cond);
		pthread_mutex_unlock(&f->mu);
		pthread_join(f->thread, NULL);
		pthread_cond_destroy(&f->cond);
		pthread_mutex_destroy(&f->mu);
		free(f);
		img->flusher = NULL;
	}
	if (!interval_ms || img->rdonly)
		return 0;
	f = calloc(1, sizeof(*f));
	if (!f)
		return pcow_err(-ENOMEM, "out of memory");
	f->interval_ms = interval_ms;
	pthread_mutex_init(&f->mu, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&f->cond, &attr);
	pthread_condattr_destroy(&attr);
	img->flusher = f;
	{
		/* The thread takes no signal meant for the application's own
		 * threads (a hypervisor kicks its vCPU threads with them). */
		sigset_t all, old;

		sigfillset(&all);
		sigdelset(&all, SIGSEGV);
		sigdelset(&all, SIGBUS);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		ret = pthread_create(&f->thread, NULL, flusher_main, img);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
	}
	if (ret) {
		pthread_cond_destroy(&f->cond);
		pthread_mutex_destroy(&f->mu);
		free(f);
		img->flusher = NULL;
		return pcow_err(-ret, "%s: cannot start the flusher thread", img->path);
	}
	return 0;
}
