/*
 * fuzz_meta -- libFuzzer target: pcow_meta_decode() on the raw bytes of a
 * metadata blob.  Each input is decoded as it is and, when it has the magic,
 * once more with its checksum recomputed (so mutations get past the CRC).
 * Whatever decodes must survive encode -> decode with every field equal,
 * encode the same bytes twice, and copy equal with pcow_meta_copy().
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "format.h"

#define FAIL(...)                                                             \
	do {                                                                  \
		fprintf(stderr, "fuzz_meta: " __VA_ARGS__);                   \
		fputc('\n', stderr);                                          \
		abort();                                                      \
	} while (0)

static uint8_t *enc1, *enc2;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	enc1 = malloc(PCOW_META_SLOT_SIZE);
	enc2 = malloc(PCOW_META_SLOT_SIZE);
	if (!enc1 || !enc2)
		exit(2);
	return 0;
}

static void same_meta(const struct pcow_meta *a, const struct pcow_meta *b,
		      bool same_generation, const char *what)
{
	uint32_t i;

	if (same_generation && a->generation != b->generation)
		FAIL("%s: generation differs", what);
	/* The dirty bit is written as the layers' flags say (a version 1
	 * blob has none, but its layers are all flagged). */
	if ((a->incompat & ~PCOW_INCOMPAT_DIRTY) != (b->incompat & ~PCOW_INCOMPAT_DIRTY) ||
	    a->compat != b->compat)
		FAIL("%s: feature bits differ", what);
	if (!(b->incompat & PCOW_INCOMPAT_DIRTY) != !pcow_meta_unrecorded(b))
		FAIL("%s: the dirty bit disagrees with the layers' flags", what);
	if (a->extra_header_len != b->extra_header_len ||
	    (a->extra_header_len && memcmp(a->extra_header, b->extra_header, a->extra_header_len)))
		FAIL("%s: header bytes past 128 differ", what);
	if ((a->autoclear & PCOW_AUTOCLEAR_KNOWN) != b->autoclear)
		FAIL("%s: autoclear bits differ", what);
	if (a->virtual_size != b->virtual_size || a->block_bits != b->block_bits)
		FAIL("%s: size or block bits differ", what);
	if (a->region_base != b->region_base || a->data_capacity != b->data_capacity)
		FAIL("%s: region base or capacity differs", what);
	if (a->backing_format != b->backing_format)
		FAIL("%s: backing format differs", what);
	if (!a->backing != !b->backing || (a->backing && strcmp(a->backing, b->backing)))
		FAIL("%s: backing name differs", what);
	if (a->layer_count != b->layer_count || a->active != b->active)
		FAIL("%s: layer count or active layer differs", what);
	for (i = 0; i < a->layer_count; i++)
		if (a->layers[i].region != b->layers[i].region ||
		    a->layers[i].parent != b->layers[i].parent ||
		    a->layers[i].flags != b->layers[i].flags)
			FAIL("%s: layer %u differs", what, i);
	if (a->snapshot_count != b->snapshot_count ||
	    a->next_snapshot_id != b->next_snapshot_id)
		FAIL("%s: snapshot count or next id differs", what);
	for (i = 0; i < a->snapshot_count; i++) {
		const struct pcow_snapshot *x = &a->snapshots[i], *y = &b->snapshots[i];

		if (x->id != y->id || x->layer != y->layer || x->date_sec != y->date_sec ||
		    x->date_nsec != y->date_nsec || strcmp(x->name, y->name))
			FAIL("%s: snapshot %u differs", what, i);
	}
	/* The stripe table (format.md 3.6). */
	if (a->extent_count != b->extent_count ||
	    (a->extent_count && (a->stripe_bits != b->stripe_bits ||
				 memcmp(a->uuid, b->uuid, sizeof(a->uuid)))))
		FAIL("%s: stripe table differs", what);
	for (i = 0; i < a->extent_count; i++)
		if (strcmp(a->extents[i], b->extents[i]))
			FAIL("%s: extent file %u differs", what, i);
}

/* Length of the canonical encoding of m. */
static size_t encoded_size(const struct pcow_meta *m)
{
	size_t n = PCOW_HEADER_SIZE + m->extra_header_len +
		   (size_t)m->layer_count * PCOW_LAYER_ENTRY_SIZE +
		   (size_t)m->snapshot_count * PCOW_SNAPSHOT_ENTRY_SIZE;
	uint32_t i;

	for (i = 0; i < m->snapshot_count; i++)
		n += strlen(m->snapshots[i].name);
	if (m->backing)
		n += strlen(m->backing);
	if (m->extent_count)
		n += PCOW_STRIPE_TABLE_FIXED + (size_t)m->extent_count * PCOW_STRIPE_ENTRY_SIZE;
	for (i = 0; i < m->extent_count; i++)
		n += strlen(m->extents[i]);
	return n;
}

static void round_trip(const struct pcow_meta *m)
{
	struct pcow_meta m2, m3;
	int n1, n2;

	if (pcow_meta_validate(m) < 0)
		FAIL("decoded metadata does not validate: %s", pcow_errormsg());
	n1 = pcow_meta_encode(m, enc1, PCOW_META_SLOT_SIZE);
	if (n1 < 0) {
		/* Names may overlap in a blob, so some valid blobs cannot be
		 * written back canonically into one slot. */
		if (n1 != -ENOSPC || encoded_size(m) <= PCOW_META_SLOT_SIZE)
			FAIL("encode failed (%d: %s) for %zu bytes", n1, pcow_errormsg(),
			     encoded_size(m));
		return;
	}
	if ((size_t)n1 != encoded_size(m))
		FAIL("encode gave %d bytes, expected %zu", n1, encoded_size(m));
	if (pcow_meta_decode(enc1, (size_t)n1, &m2, NULL) < 0)
		FAIL("re-decode failed: %s", pcow_errormsg());
	same_meta(m, &m2, true, "encode/decode");
	n2 = pcow_meta_encode(&m2, enc2, PCOW_META_SLOT_SIZE);
	if (n2 != n1 || memcmp(enc1, enc2, (size_t)n1))
		FAIL("encoding is not stable (%d vs %d bytes)", n1, n2);
	if (pcow_meta_copy(&m3, &m2) < 0)
		FAIL("copy failed: %s", pcow_errormsg());
	same_meta(&m2, &m3, true, "copy");
	pcow_meta_free(&m3);
	pcow_meta_free(&m2);
}

static void one(const uint8_t *buf, size_t len)
{
	struct pcow_meta m;

	if (pcow_meta_decode(buf, len, &m, NULL) < 0) {
		/* A failed decode leaves nothing allocated and m zeroed. */
		if (m.layers || m.snapshots || m.backing || m.snapshot_count || m.extra_header ||
		    m.extents || m.extent_count)
			FAIL("failed decode left state behind");
		return;
	}
	round_trip(&m);
	pcow_meta_free(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy;

	one(data, size);
	if (size < PCOW_HEADER_SIZE)
		return 0;
	copy = malloc(size);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	if (fuzz_fix_crc(copy, size))
		one(copy, size);
	free(copy);
	return 0;
}
