/* pending.c -- copy bits waiting for the next flush (see pending.h). */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "error.h"
#include "layer.h"
#include "pending.h"
#include "persist.h"

/*
 * Words of bitmap that may wait at once.  Each covers 64 blocks, so a full
 * list means thousands of copy-ups share one fdatasync.
 */
#define PENDING_MAX 4096u

struct pending_word {
	uint32_t region;
	uint64_t word;
};

/* The state hangs off the image; mmap, not malloc: it grows inside the
 * write-fault handler. */
struct pcow_pending {
	uint64_t *shadow[PCOW_MAX_REGIONS];
	uint64_t shadow_len;    /* bytes of each shadow: the bitmap span */
	struct pending_word list[PENDING_MAX];
	uint32_t count;
};

static struct pcow_pending *state(pcow_image *img)
{
	void *p;

	if (!img->pending) {
		p = mmap(NULL, sizeof(struct pcow_pending), PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			return NULL;
		img->pending = p;
	}
	return img->pending;
}

static uint64_t *shadow_of(pcow_image *img, struct pcow_pending *ps,
			   uint32_t region)
{
	void *p;

	if (!ps->shadow[region]) {
		/* Sparse: only the pages holding pending bits are ever backed. */
		p = mmap(NULL, img->bitmap_span, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p == MAP_FAILED)
			return NULL;
		ps->shadow[region] = p;
		ps->shadow_len = img->bitmap_span;
	}
	return ps->shadow[region];
}

int pcow_pending_set(pcow_image *img, uint32_t layer, uint64_t block)
{
	uint32_t region = img->m.layers[layer].region;
	struct pcow_pending *ps = state(img);
	uint64_t *shadow, word = block / 64;
	int ret;

	if (!ps)
		return pcow_err(-ENOMEM, "out of memory");
	if (ps->count == PENDING_MAX) {
		/* Writing out releases the shadows: look ours up after. */
		ret = pcow_pending_persist(img);
		if (ret < 0)
			return ret;
	}
	shadow = shadow_of(img, ps, region);
	if (!shadow)
		return pcow_err(-ENOMEM, "out of memory");
	if (!shadow[word])
		ps->list[ps->count++] = (struct pending_word){region, word};
	shadow[word] |= 1ull << (block % 64);
	return 0;
}

bool pcow_pending_test(const pcow_image *img, uint32_t region, uint64_t block)
{
	const struct pcow_pending *ps = img->pending;

	return ps && ps->shadow[region] &&
	       (ps->shadow[region][block / 64] >> (block % 64) & 1);
}

static void release_shadows(struct pcow_pending *ps)
{
	uint32_t r;

	for (r = 0; r < PCOW_MAX_REGIONS; r++)
		if (ps->shadow[r]) {
			munmap(ps->shadow[r], ps->shadow_len);
			ps->shadow[r] = NULL;
		}
}

int pcow_pending_persist(pcow_image *img)
{
	struct pcow_pending *ps = img->pending;
	uint32_t i;
	int ret;

	if (!ps || !ps->count)
		return 0;
	ret = pcow_io_sync(img->fd);
	for (i = 0; i < ps->count && ret == 0; i++) {
		struct pending_word *w = &ps->list[i];

		ret = pcow_bits_or(img, w->region, w->word,
				   ps->shadow[w->region][w->word]);
		if (ret < 0)
			break;
		/* The bitmap's mapping shows the write: the shadow may go. */
		ps->shadow[w->region][w->word] = 0;
	}
	if (ret < 0) {
		/* What was not written waits for the next try. */
		memmove(ps->list, ps->list + i, (ps->count - i) * sizeof(ps->list[0]));
		ps->count -= i;
		return ret;
	}
	ps->count = 0;
	/* Fresh shadows next time: the bitmap size may change (resize). */
	release_shadows(ps);
	return 0;
}

int pcow_pending_each(pcow_image *img, uint32_t region,
		      int (*fn)(pcow_image *img, uint64_t block, void *opaque),
		      void *opaque)
{
	struct pcow_pending *ps = img->pending;
	uint32_t i;
	int ret;

	for (i = 0; ps && i < ps->count; i++) {
		uint64_t bits = ps->shadow[ps->list[i].region][ps->list[i].word];

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

void pcow_pending_release(pcow_image *img)
{
	struct pcow_pending *ps = img->pending;

	if (!ps)
		return;
	release_shadows(ps);
	munmap(ps, sizeof(*ps));
	img->pending = NULL;
}
