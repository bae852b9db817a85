/*
 * format.h -- the pcow on-disk layout, version 2 (docs/format.md is the spec).
 *
 * All integers are little-endian.  The metadata is one self-checking blob,
 * stored twice (slots A and B); the valid copy with the higher generation is
 * current.  Layer data lives in address-congruent sparse regions.
 */
#ifndef PCOW_FORMAT_H
#define PCOW_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pcow.h"

#define PCOW_MAGIC "PCOW\r\n\x1a\n"
#define PCOW_MAGIC_LEN 8
#define PCOW_VERSION 2u
/* Version 1 images are read, and upgraded on the first read-write open. */
#define PCOW_VERSION_OLDEST 1u

#define PCOW_META_SLOT_SIZE (256u * 1024)
#define PCOW_META_SLOT_OFFSET(i) ((uint64_t)(i) * PCOW_META_SLOT_SIZE)
#define PCOW_RESERVED_OFFSET (512u * 1024)
#define PCOW_DATA_OFFSET (2u * 1024 * 1024)
#define PCOW_REGION_ALIGN (2u * 1024 * 1024)

#define PCOW_HEADER_SIZE 128u
#define PCOW_LAYER_ENTRY_SIZE 16u
#define PCOW_SNAPSHOT_ENTRY_SIZE 32u

#define PCOW_MAX_LAYERS 1024u
#define PCOW_MAX_SNAPSHOTS (PCOW_MAX_LAYERS - 1)
#define PCOW_MAX_REGIONS 4096u
#define PCOW_BACKING_NAME_MAX 4095u
#define PCOW_NO_PARENT 0xffffffffu

/* Largest virtual size: regions must stay addressable with off_t. */
#define PCOW_MAX_VIRTUAL_SIZE (1ull << 50)

/*
 * Incompatible bit 0: some layer may own blocks by its data alone, not yet
 * by its bit (PCOW_LAYER_UNRECORDED).  Set exactly when a layer has that
 * flag; a reader that does not know the rule must not open the image.
 */
#define PCOW_INCOMPAT_DIRTY (1ull << 0)
/*
 * Incompatible bit 1: the layers' data spans are striped over extent files
 * named by the stripe table (format.md 3.6); a reader that does not know
 * them would read holes where the data is.
 */
#define PCOW_INCOMPAT_STRIPED (1ull << 1)
#define PCOW_INCOMPAT_KNOWN (PCOW_INCOMPAT_DIRTY | PCOW_INCOMPAT_STRIPED)
#define PCOW_COMPAT_KNOWN 0ull
#define PCOW_AUTOCLEAR_KNOWN 0ull

/* Byte offsets of the fixed header fields. */
enum {
	HDR_MAGIC = 0,
	HDR_VERSION = 8,
	HDR_HEADER_LENGTH = 12,
	HDR_INCOMPAT = 16,
	HDR_COMPAT = 24,
	HDR_AUTOCLEAR = 32,
	HDR_GENERATION = 40,
	HDR_VIRTUAL_SIZE = 48,
	HDR_BLOCK_BITS = 56,
	HDR_META_LENGTH = 60,
	HDR_CHECKSUM = 64,
	HDR_BACKING_FORMAT = 68,
	HDR_BACKING_OFFSET = 72,
	HDR_BACKING_LENGTH = 76,
	HDR_LAYER_COUNT = 80,
	HDR_LAYER_OFFSET = 84,
	HDR_SNAPSHOT_COUNT = 88,
	HDR_SNAPSHOT_OFFSET = 92,
	HDR_ACTIVE_LAYER = 96,
	HDR_NEXT_SNAPSHOT_ID = 100,
	HDR_REGION_BASE = 104,
	HDR_DATA_CAPACITY = 112,
	HDR_STRIPE_OFFSET = 120,
	HDR_STRIPE_LENGTH = 124,
};

/* The stripe table (format.md 3.6): a fixed part, then one entry per
 * extent file naming it inside the blob. */
#define PCOW_STRIPE_TABLE_FIXED 24u
#define PCOW_STRIPE_ENTRY_SIZE 8u
#define PCOW_UUID_SIZE 16u
#define PCOW_EXTENTS_MIN 2u
#define PCOW_EXTENTS_MAX 64u
/* Stripe sizes: 64 KiB (and at least a block) to 2^40 bytes. */
#define PCOW_STRIPE_BITS_MIN 16u
#define PCOW_STRIPE_BITS_MAX 40u
/*
 * A region's data span holds at most this many stripes: a map of the image
 * then needs at most this many VMAs more for its writable base, and as
 * many again for read-only runs split at stripe boundaries (docs/design.md,
 * "Striping").
 */
#define PCOW_STRIPES_PER_SPAN_MAX 4096u

/*
 * The host NUMA node of each extent file (format.md 3.6), a hint: header
 * bytes 128-255, present when header_length >= 256, one 16-bit node per
 * extent file (PCOW_NODE_NONE: none, and in every entry past the last
 * extent file).  In the header, not the stripe table, so that a reader that
 * knows only 128 header bytes keeps them through a rewrite and reads the
 * image as before.
 */
#define PCOW_NODE_MAX 1023u
#define PCOW_STRIPE_NODES_SIZE (2u * PCOW_EXTENTS_MAX)

/* Layer flag: blocks written where nothing lay below may not have their
 * bit yet (format.md 4.1); pcow_layer_record gives them one. */
#define PCOW_LAYER_UNRECORDED (1u << 0)
#define PCOW_LAYER_FLAGS_KNOWN PCOW_LAYER_UNRECORDED

/* One layer: a region of the file plus the layer it inherits from. */
struct pcow_layer {
	uint32_t region;
	uint32_t parent;  /* index into the layer table, or PCOW_NO_PARENT */
	uint32_t flags;   /* PCOW_LAYER_* */
};

struct pcow_snapshot {
	uint32_t id;
	uint32_t layer;
	int64_t date_sec;
	uint32_t date_nsec;
	char *name;
};

/* The decoded metadata blob. */
struct pcow_meta {
	uint32_t version;       /* as read; always written as PCOW_VERSION */
	uint64_t generation;
	uint64_t incompat, compat, autoclear;
	uint64_t virtual_size;
	uint32_t block_bits;
	enum pcow_format backing_format;
	char *backing;          /* NULL when there is no backing file */
	uint32_t layer_count;
	struct pcow_layer *layers;
	uint32_t active;
	uint32_t snapshot_count;
	struct pcow_snapshot *snapshots;
	uint32_t next_snapshot_id;
	uint64_t region_base;   /* file offset of region 0 */
	uint64_t data_capacity; /* data span of every region */
	/* Striping (incompat bit PCOW_INCOMPAT_STRIPED; extent_count 0 when
	 * not striped): stripe i of every data span lives in extent file
	 * i % extent_count, named relative to the image's directory. */
	uint8_t uuid[PCOW_UUID_SIZE];
	uint32_t stripe_bits;
	uint32_t extent_count;
	char **extents;
	/* Header bytes past the 128 this version knows (a newer writer's
	 * compatible fields), kept so that a rewrite does not drop them. */
	uint8_t *extra_header;
	uint32_t extra_header_len;
};

/*
 * Decodes and validates one slot's bytes.  Returns -EINVAL with a message
 * for a slot that is not an intact blob (a torn or never written slot);
 * for an intact blob (magic and checksum right), -EPROTO when this version
 * cannot read it (a newer version, an unknown incompatible feature) and
 * -EUCLEAN when it breaks the format's rules.  For an intact blob,
 * *generation (when not NULL) is set, so that the caller can tell whether
 * it is the newest slot.
 */
int pcow_meta_decode(const uint8_t *buf, size_t len, struct pcow_meta *m,
		     uint64_t *generation);

/* True when a layer of m uses region r. */
bool pcow_meta_region_used(const struct pcow_meta *m, uint32_t r);

/* True when any layer of m may own blocks by data alone. */
bool pcow_meta_unrecorded(const struct pcow_meta *m);

/* m's incompatible features, with the dirty bit derived from the flags. */
uint64_t pcow_meta_incompat(const struct pcow_meta *m);

/* Encodes m into buf (PCOW_META_SLOT_SIZE bytes); returns the blob length. */
int pcow_meta_encode(const struct pcow_meta *m, uint8_t *buf, size_t len);

/* Checks the structure of decoded metadata (layer graph, names, ranges). */
int pcow_meta_validate(const struct pcow_meta *m);

int pcow_meta_copy(struct pcow_meta *dst, const struct pcow_meta *src);
void pcow_meta_free(struct pcow_meta *m);

/* The node stored for extent file i of m (PCOW_NODE_NONE: none). */
uint32_t pcow_meta_stripe_node(const struct pcow_meta *m, uint32_t i);

/* Stores nodes[0 .. extent_count - 1] (PCOW_NODE_NONE: none) in m's
 * header, growing it to 256 bytes; NULL: no node for any extent file. */
int pcow_meta_set_stripe_nodes(struct pcow_meta *m, const uint32_t *nodes);

/*
 * A region is its data span of data_capacity bytes (at least the virtual
 * size rounded up to the alignment, max(block size, 2 MiB)) followed by the
 * layer's copy bitmap (one bit per block of the capacity, rounded up to the
 * same alignment).  Region r starts at region_base + r * stride.
 */
uint64_t pcow_region_align(uint32_t block_bits);
/* The smallest data capacity that holds virtual_size. */
uint64_t pcow_data_span(uint64_t virtual_size, uint32_t block_bits);
uint64_t pcow_bitmap_span(uint64_t data_capacity, uint32_t block_bits);
uint64_t pcow_region_stride(uint64_t data_capacity, uint32_t block_bits);
uint64_t pcow_region_offset(uint64_t region_base, uint64_t stride,
			    uint32_t region);
/* The file offset just past the last of PCOW_MAX_REGIONS regions must fit
 * in off_t; pcow_meta_validate refuses layouts beyond this. */
#define PCOW_MAX_FILE_END ((uint64_t)INT64_MAX)

static inline uint32_t pcow_le16(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static inline void pcow_put_le16(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline uint32_t pcow_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static inline uint64_t pcow_le64(const uint8_t *p)
{
	return (uint64_t)pcow_le32(p) | (uint64_t)pcow_le32(p + 4) << 32;
}

static inline void pcow_put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static inline void pcow_put_le64(uint8_t *p, uint64_t v)
{
	pcow_put_le32(p, (uint32_t)v);
	pcow_put_le32(p + 4, (uint32_t)(v >> 32));
}

#endif
