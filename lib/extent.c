/* extent.c -- the view of an image as runs (see extent.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "extent.h"
#include "layer.h"
#include "pending.h"
#include "stripe.h"

#define NONE UINT64_MAX

/* Per layer of the chain: what is known from the last lookups. */
struct layer_state {
	uint32_t layer;
	uint64_t next_bit;      /* first set copy bit >= when it was looked up */
	uint64_t bit_from;      /* ... the block it was looked up from */
	uint64_t until;         /* has_data holds for blocks below this */
	uint64_t from;          /* ... and from this block on */
	int has_data;
};

struct walk {
	pcow_image *img;
	uint32_t n;
	struct layer_state *ls;
};

static int view_runs(pcow_image *img, uint32_t layer, uint64_t from,
		     uint64_t to, pcow_run_fn fn, void *opaque);

/* Passes a backing file's runs on, deeper by the layers above it. */
struct deeper {
	pcow_run_fn fn;
	void *opaque;
	int add;
};

static int deeper_run(const struct pcow_run *r, void *opaque)
{
	struct deeper *d = opaque;
	struct pcow_run copy = *r;

	copy.depth += d->add;
	return d->fn(&copy, d->opaque);
}

/*
 * What the last lookups of each file found, for the length of one walk:
 * [lo, data) is a hole and [data, hole) data (hole NONE: not known yet).
 * A walk asks about the same extent again and again (once per run of the
 * layers above it), and on tmpfs SEEK_HOLE costs time linear in the data
 * it skips, so answering from here keeps a walk linear.  Files do not
 * change during a walk: callers hold the image lock and only read.
 */
#define SEEK_CACHE 8

static __thread struct seek_entry {
	int fd;
	uint64_t lo, data, hole;
} seek_cache[SEEK_CACHE];
static __thread unsigned seek_next;
static __thread int walk_depth;

static struct seek_entry *seek_find(int fd, uint64_t off)
{
	unsigned i;

	for (i = 0; walk_depth && i < SEEK_CACHE; i++) {
		struct seek_entry *e = &seek_cache[i];

		if (e->fd == fd && off >= e->lo && (e->data == NONE || off < e->data ||
						     (e->hole != NONE && off < e->hole)))
			return e;
	}
	return NULL;
}

static int seek_sys(int fd, uint64_t off, int whence, uint64_t *out)
{
	off_t r = pcow_stripe_lseek(fd, off, whence);

	if (r < 0 && errno == ENXIO) {
		*out = NONE;
		return 0;
	}
	if (r < 0)
		return pcow_err_sys(-errno, "cannot query allocation");
	*out = (uint64_t)r;
	return 0;
}

static int seek(int fd, uint64_t off, int whence, uint64_t *out)
{
	struct seek_entry *e = seek_find(fd, off);
	unsigned i;
	int ret;

	if (e) {
		bool in_hole = e->data == NONE || off < e->data;

		if (whence == SEEK_DATA) {
			*out = in_hole ? e->data : off;
			return 0;
		}
		if (!in_hole || e->data != NONE) {
			*out = in_hole ? off : e->hole;
			return 0;
		}
		/* Past the last data: the system knows where the file ends. */
	}
	ret = seek_sys(fd, off, whence, out);
	if (ret < 0 || !walk_depth)
		return ret;
	if (whence == SEEK_HOLE)
		for (i = 0; i < SEEK_CACHE; i++)
			if (seek_cache[i].fd == fd && seek_cache[i].data == off &&
			    seek_cache[i].hole == NONE) {
				seek_cache[i].hole = *out;
				return 0;
			}
	e = &seek_cache[seek_next++ % SEEK_CACHE];
	*e = (struct seek_entry){.fd = fd, .lo = off, .data = off, .hole = *out};
	if (whence == SEEK_DATA) {
		e->data = *out;
		e->hole = NONE;
	}
	return 0;
}

/*
 * The extent functions of extent.h, through the cache when cached.  The
 * public ones are not: their callers may run inside a walk (a run's
 * callback) and ask about files the walk does not, whose entries would
 * push out the walk's own.  Inline, because a map build calls them for
 * every run of every layer (a call each cost 4% more instructions on a
 * map of 100,000 runs).
 */
static inline int ask(int fd, uint64_t off, int whence, bool cached,
		      uint64_t *out)
{
	return cached ? seek(fd, off, whence, out) : seek_sys(fd, off, whence, out);
}

static inline int extent_stop(int fd, uint64_t pos, uint64_t end,
			      bool cached, uint64_t *stop)
{
	uint64_t h = NONE;
	int ret;

	*stop = pos;
	if (pos >= end)
		return 0;
	ret = ask(fd, pos, SEEK_HOLE, cached, &h);
	if (ret < 0 || h == NONE)       /* NONE: pos is past the file's end */
		return ret;
	*stop = h < end ? h : end;
	return *stop > pos;
}

static inline int extent_next(int fd, uint64_t pos, uint64_t end,
			      bool cached, uint64_t *start, uint64_t *stop)
{
	uint64_t d = NONE;
	int ret;

	if (pos >= end)
		return 0;
	ret = ask(fd, pos, SEEK_DATA, cached, &d);
	if (ret < 0 || d == NONE || d >= end)
		return ret < 0 ? ret : 0;
	*start = d;
	if (stop) {
		ret = extent_stop(fd, d, end, cached, stop);
		if (ret < 0)
			return ret;
	}
	return 1;
}

int pcow_extent_next(int fd, uint64_t pos, uint64_t end, uint64_t *start,
		     uint64_t *stop)
{
	return extent_next(fd, pos, end, false, start, stop);
}

int pcow_extent_stop(int fd, uint64_t pos, uint64_t end, uint64_t *stop)
{
	return extent_stop(fd, pos, end, false, stop);
}

int pcow_extent_units(int fd, uint64_t base, uint64_t unit, uint64_t from,
		      uint64_t end, uint64_t *first, uint64_t *last)
{
	uint64_t d = NONE, h = NONE;
	int ret = extent_next(fd, base + from * unit, end, false, &d, &h);

	if (ret > 0) {
		*first = (d - base) / unit;
		*last = (h - base + unit - 1) / unit;
	}
	return ret;
}

/*
 * First block >= from with the layer's copy bit set, or NONE.  Holes of the
 * bitmap are skipped a page at a time with SEEK_DATA.
 */
static int next_bit(pcow_image *img, uint32_t layer, uint64_t from,
		    uint64_t *out)
{
	uint64_t words = (img->nblocks + 63) / 64, w = from / 64, base, x, d = NONE;
	const uint64_t per_page = 4096 / 8;
	uint32_t region;
	bool skip_holes;
	int ret;

	*out = NONE;
	if (w >= words)
		return 0;
	base = region_start(img, layer) + img->span;
	region = img->m.layers[layer].region;
	/* Pending bits (a dead writer's, read-only) live outside the file's
	 * bitmap: then no word may be skipped. */
	skip_holes = !pcow_pending_any(img);
	ret = pcow_bitmap_word(img, region, w, &x);
	if (ret < 0)
		return ret;
	x = (x | pcow_pending_word(img, region, w)) & (~0ull << (from % 64));
	for (;;) {
		if (x) {
			*out = w * 64 + (uint64_t)__builtin_ctzll(x);
			return *out < img->nblocks ? 0 : (*out = NONE, 0);
		}
		if (++w >= words)
			return 0;
		if (skip_holes && w % per_page == 0) {
			ret = extent_next(img->fd, base + w * 8, base + words * 8,
					  true, &d, NULL);
			if (ret <= 0)
				return ret;
			w = (d - base) / 8;
		}
		ret = pcow_bitmap_word(img, region, w, &x);
		if (ret < 0)
			return ret;
		x |= pcow_pending_word(img, region, w);
	}
}

/*
 * Whether the layer's region has data in block b, and the first block
 * after b where that changes (block granularity: data anywhere in a block
 * counts for the whole block).
 */
static int data_state(pcow_image *img, struct layer_state *s, uint64_t b)
{
	uint64_t rs = region_start(img, s->layer), bs = img->block_size;
	uint64_t limit = rs + img->nblocks * bs, d = NONE, h = NONE, end;
	int ret;

	s->from = b;
	ret = extent_next(img->fd, rs + b * bs, limit, true, &d, NULL);
	if (ret < 0)
		return ret;
	if (ret == 0 || d >= rs + (b + 1) * bs) {
		s->has_data = 0;
		s->until = ret == 0 ? NONE : (d - rs) / bs;
		return 0;
	}
	s->has_data = 1;
	/* A later extent's end is asked for only when it continues the run:
	 * the walk may stop before a far extent, and on tmpfs SEEK_HOLE over
	 * it would cost its length. */
	for (;;) {
		ret = extent_stop(img->fd, d, limit, true, &h);
		if (ret < 0)
			return ret;
		end = (h - rs + bs - 1) / bs;   /* block h-1 holds data */
		if (end >= img->nblocks)
			break;
		ret = extent_next(img->fd, h, limit, true, &d, NULL);
		if (ret < 0)
			return ret;
		/* Data again inside block end keeps the run going. */
		if (ret == 0 || d >= rs + (end + 1) * bs)
			break;
	}
	s->until = end;
	return 0;
}

static int emit_layer(pcow_image *img, uint32_t layer, int depth,
		      uint64_t from, uint64_t to, pcow_run_fn fn, void *opaque)
{
	struct pcow_run r = {
		.off = from, .len = to - from, .fd = img->fd,
		.file = region_start(img, layer) + from, .img = img, .layer = layer,
		.depth = depth,
	};

	return from < to ? fn(&r, opaque) : 0;
}

/* The backing file's runs in [from, to), below depth layers; nothing past
 * its end. */
static int backing_runs(pcow_image *img, int depth, uint64_t from, uint64_t to,
			pcow_run_fn fn, void *opaque)
{
	struct deeper dp = {fn, opaque, depth};
	uint64_t d = NONE, h = NONE;
	int ret;

	if (img->backing) {
		pcow_image *b = img->backing;

		if (to > b->m.virtual_size)
			to = b->m.virtual_size;
		return from < to ? view_runs(b, b->m.active, from, to, deeper_run, &dp) : 0;
	}
	if (img->raw_fd < 0)
		return 0;
	if (to > img->raw_size)
		to = img->raw_size;
	while (from < to) {
		struct pcow_run r = {.fd = img->raw_fd, .layer = PCOW_NO_PARENT,
				     .depth = depth};

		ret = extent_next(img->raw_fd, from, to, true, &d, &h);
		if (ret <= 0)
			return ret;
		r.off = r.file = d;
		r.len = h - d;
		ret = fn(&r, opaque);
		if (ret)
			return ret;
		from = h;
	}
	return 0;
}

/*
 * A stretch where the lowest layer with data would own every block, except
 * those where the backing file has data: those show the backing file.
 */
struct split {
	pcow_image *img;
	uint32_t lowest;
	int depth;              /* of lowest */
	uint64_t cursor, to;
	pcow_run_fn fn;
	void *opaque;
};

static int split_run(const struct pcow_run *r, void *opaque)
{
	struct split *s = opaque;
	uint64_t bs = s->img->block_size;
	uint64_t first = r->off / bs * bs, past = (r->off + r->len + bs - 1) / bs * bs;
	int ret = 0;

	if (first > s->cursor)
		ret = emit_layer(s->img, s->lowest, s->depth, s->cursor, first,
				 s->fn, s->opaque);
	if (ret == 0)
		ret = s->fn(r, s->opaque);
	if (past > s->to)
		past = s->to;
	if (past > s->cursor)
		s->cursor = past;
	return ret;
}

static int split_by_backing(struct walk *w, uint32_t lowest, int depth,
			    uint64_t from, uint64_t to, pcow_run_fn fn, void *opaque)
{
	struct split s = {w->img, lowest, depth, from, to, fn, opaque};
	int ret = backing_runs(w->img, (int)w->n, from, to, split_run, &s);

	if (ret == 0)
		ret = emit_layer(w->img, lowest, depth, s.cursor, to, fn, opaque);
	return ret;
}

static int walk(struct walk *w, uint64_t from, uint64_t to, pcow_run_fn fn,
		void *opaque)
{
	pcow_image *img = w->img;
	uint64_t bs = img->block_size, pos = from;
	uint32_t i;
	int ret;

	while (pos < to) {
		uint64_t b = pos / bs, end = (b + 1) * bs, bound = NONE;
		uint32_t top = PCOW_NO_PARENT, lowest = PCOW_NO_PARENT;
		int top_depth = 0, low_depth = 0;

		for (i = 0; i < w->n; i++) {
			struct layer_state *s = &w->ls[i];

			if (s->bit_from > b || s->next_bit < b) {
				s->bit_from = b;
				ret = next_bit(img, s->layer, b, &s->next_bit);
				if (ret < 0)
					return ret;
			}
			if (s->next_bit == b && top == PCOW_NO_PARENT) {
				top = s->layer;
				top_depth = (int)i;
			}
			if (s->next_bit > b && s->next_bit < bound)
				bound = s->next_bit;
		}
		if (end > to)
			end = to;
		if (top != PCOW_NO_PARENT) {
			/* The topmost copy bit wins, data or not. */
			ret = emit_layer(img, top, top_depth, pos, end, fn, opaque);
			if (ret)
				return ret;
			pos = end;
			continue;
		}
		for (i = 0; i < w->n; i++) {
			struct layer_state *s = &w->ls[i];

			if (s->from > b || s->until <= b) {
				ret = data_state(img, s, b);
				if (ret < 0)
					return ret;
			}
			if (s->has_data) {
				lowest = s->layer;
				low_depth = (int)i;
			}
			if (s->until < bound)
				bound = s->until;
		}
		end = bound != NONE && bound * bs < to ? bound * bs : to;
		if (lowest == PCOW_NO_PARENT)
			ret = backing_runs(img, (int)w->n, pos, end, fn, opaque);
		else
			ret = split_by_backing(w, lowest, low_depth, pos, end, fn, opaque);
		if (ret)
			return ret;
		pos = end;
	}
	return 0;
}

/* Passes on only the part of each run inside [from, to). */
struct clip {
	pcow_run_fn fn;
	void *opaque;
	uint64_t from, to;
};

static int clip_run(const struct pcow_run *r, void *opaque)
{
	struct clip *c = opaque;
	struct pcow_run x = *r;

	if (x.off + x.len <= c->from || x.off >= c->to)
		return 0;
	if (x.off < c->from) {
		x.file += c->from - x.off;
		x.len -= c->from - x.off;
		x.off = c->from;
	}
	if (x.off + x.len > c->to)
		x.len = c->to - x.off;
	return c->fn(&x, c->opaque);
}

static int view_runs(pcow_image *img, uint32_t layer, uint64_t from,
		     uint64_t to, pcow_run_fn fn, void *opaque)
{
	struct walk w = {.img = img};
	uint64_t bs = img->block_size, wfrom, wto;
	uint32_t l, i = 0;
	int ret;

	if (to > img->m.virtual_size)
		to = img->m.virtual_size;
	if (from >= to)
		return 0;
	/* Ownership is decided per whole block (whether the backing file has
	 * data anywhere in it): walk whole blocks, pass on the part asked. */
	wfrom = from / bs * bs;
	wto = to % bs ? to / bs * bs + bs : to;
	if (wto > img->m.virtual_size)
		wto = img->m.virtual_size;
	if (wfrom != from || wto != to) {
		struct clip c = {fn, opaque, from, to};

		return view_runs(img, layer, wfrom, wto, clip_run, &c);
	}
	if (layer == PCOW_NO_PARENT)
		return backing_runs(img, 0, from, to, fn, opaque);
	for (l = layer; l != PCOW_NO_PARENT; l = img->m.layers[l].parent)
		w.n++;
	w.ls = calloc(w.n, sizeof(*w.ls));
	if (!w.ls)
		return pcow_err(-ENOMEM, "out of memory");
	for (l = layer; l != PCOW_NO_PARENT; l = img->m.layers[l].parent)
		w.ls[i++] = (struct layer_state){.layer = l, .bit_from = NONE,
						 .from = NONE};
	ret = walk(&w, from, to, fn, opaque);
	free(w.ls);
	return ret;
}

int pcow_view_runs(pcow_image *img, uint32_t layer, uint64_t from, uint64_t to,
		   pcow_run_fn fn, void *opaque)
{
	int ret;

	if (walk_depth++ == 0)
		memset(seek_cache, 0xff, sizeof(seek_cache));
	ret = view_runs(img, layer, from, to, fn, opaque);
	walk_depth--;
	return ret > 0 ? 0 : ret;
}
