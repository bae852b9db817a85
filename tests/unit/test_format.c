/* test_format.c -- the metadata blob: round trip and rejection of bad input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "format.h"
#include "test.h"

static uint8_t buf[PCOW_META_SLOT_SIZE];

static void sample(struct pcow_meta *m, struct pcow_layer *layers,
		   struct pcow_snapshot *snaps)
{
	memset(m, 0, sizeof(*m));
	m->virtual_size = 1ull << 30;
	m->block_bits = 16;
	m->generation = 7;
	m->backing = "../base image.raw";
	m->backing_format = PCOW_FORMAT_RAW;
	layers[0] = (struct pcow_layer){.region = 0, .parent = PCOW_NO_PARENT};
	layers[1] = (struct pcow_layer){.region = 3, .parent = 0};
	layers[2] = (struct pcow_layer){.region = 1, .parent = 1};
	m->layers = layers;
	m->layer_count = 3;
	m->active = 2;
	snaps[0] = (struct pcow_snapshot){.id = 1, .layer = 0, .date_sec = 1700000000,
					  .date_nsec = 5, .name = "first"};
	snaps[1] = (struct pcow_snapshot){.id = 4, .layer = 1, .date_sec = 1700000100,
					  .name = "second"};
	m->snapshots = snaps;
	m->snapshot_count = 2;
	m->next_snapshot_id = 5;
	m->region_base = 6ull << 20;
	m->data_capacity = 4ull << 30;
}

/* Re-encodes after a field change so only validation, not the crc, can fail. */
static int decode_modified(void (*change)(struct pcow_meta *m))
{
	struct pcow_layer layers[3];
	struct pcow_snapshot snaps[2];
	struct pcow_meta m, out;
	int ret;

	sample(&m, layers, snaps);
	change(&m);
	OK(pcow_meta_encode(&m, buf, sizeof(buf)));
	ret = pcow_meta_decode(buf, sizeof(buf), &out, NULL);
	if (ret == 0)
		pcow_meta_free(&out);
	return ret;
}

static void loop(struct pcow_meta *m) { m->layers[0].parent = 2; }
static void bad_bits(struct pcow_meta *m) { m->block_bits = 31; }
static void small_bits(struct pcow_meta *m) { m->block_bits = 11; }
static void odd_size(struct pcow_meta *m) { m->virtual_size = 1000; }
static void zero_size(struct pcow_meta *m) { m->virtual_size = 0; }
static void dup_region(struct pcow_meta *m) { m->layers[1].region = 0; }
static void bad_active(struct pcow_meta *m) { m->active = 3; }
static void snap_on_active(struct pcow_meta *m) { m->snapshots[1].layer = 2; }
static void dup_name(struct pcow_meta *m) { m->snapshots[1].name = "first"; }
static void unknown_incompat(struct pcow_meta *m) { m->incompat = 1ull << 40; }
static void no_fmt(struct pcow_meta *m) { m->backing_format = PCOW_FORMAT_NONE; }
static void bad_region(struct pcow_meta *m) { m->layers[2].region = PCOW_MAX_REGIONS; }
static void unknown_compat(struct pcow_meta *m) { m->compat = 1ull << 5; }
/* the region layout */
static void base_low(struct pcow_meta *m) { m->region_base = 1ull << 20; }
static void base_odd(struct pcow_meta *m) { m->region_base += 4096; }
static void base_huge(struct pcow_meta *m) { m->region_base = (1ull << 63) - (2ull << 20); }
static void base_wrap(struct pcow_meta *m) { m->region_base = UINT64_MAX - (1ull << 21) + 1; }
static void cap_small(struct pcow_meta *m) { m->data_capacity = (1ull << 30) - (2ull << 20); }
static void cap_odd(struct pcow_meta *m) { m->data_capacity += 65536; }
static void cap_huge(struct pcow_meta *m) { m->data_capacity = 1ull << 51; }
static void cap_zero(struct pcow_meta *m) { m->data_capacity = 0; }
/* The largest layout allowed: 4096 regions of 2^50 bytes must end in off_t. */
static void cap_max(struct pcow_meta *m) { m->data_capacity = 1ull << 50; }
static void cap_max_base(struct pcow_meta *m)
{
	m->data_capacity = 1ull << 50;
	m->region_base = 1ull << 62;
}
/* the active layer is a leaf */
static void not_leaf(struct pcow_meta *m)
{
	m->active = 0;
	m->snapshots[0].layer = 2;
}
/* the dirty bit is set exactly when a layer is flagged unrecorded
 * (the encoder sets it so; the decoder refuses a blob that disagrees) */
static void flag_layer(struct pcow_meta *m) { m->layers[1].flags = PCOW_LAYER_UNRECORDED; }
static void unknown_flag(struct pcow_meta *m) { m->layers[1].flags = 1u << 7; }

/* A striped sample with stripe nodes (format.md 3.2, 3.6). */
static uint8_t nodes_hdr[PCOW_STRIPE_NODES_SIZE];
static char *two_extents[2] = {"e0", "e1"};

static void striped(struct pcow_meta *m)
{
	m->extent_count = 2;
	m->extents = two_extents;
	m->stripe_bits = 21;
	m->extra_header = nodes_hdr;
	m->extra_header_len = sizeof(nodes_hdr);
}

static void set_nodes(uint32_t e0, uint32_t e1, uint32_t e2)
{
	memset(nodes_hdr, 0xff, sizeof(nodes_hdr));
	pcow_put_le16(nodes_hdr, e0);
	pcow_put_le16(nodes_hdr + 2, e1);
	pcow_put_le16(nodes_hdr + 4, e2);
}

/* Stripe nodes are read back, kept through a rewrite, and
 * bounded: at most 1023, none past the last extent file. */
static void stripe_nodes(void)
{
	struct pcow_layer layers[3];
	struct pcow_snapshot snaps[2];
	struct pcow_meta m, out;

	sample(&m, layers, snaps);
	set_nodes(3, 1023, PCOW_NODE_NONE);
	striped(&m);
	OK(pcow_meta_encode(&m, buf, sizeof(buf)));
	CHECK(pcow_le32(buf + HDR_HEADER_LENGTH) == 256);
	OK(pcow_meta_decode(buf, sizeof(buf), &out, NULL));
	CHECK(pcow_meta_stripe_node(&out, 0) == 3 && pcow_meta_stripe_node(&out, 1) == 1023);
	CHECK(pcow_meta_stripe_node(&out, 2) == PCOW_NODE_NONE);
	pcow_meta_free(&out);
	set_nodes(3, 1024, PCOW_NODE_NONE);
	CHECK(decode_modified(striped) == -EUCLEAN && strstr(pcow_errormsg(), "node 1024"));
	set_nodes(3, 1, 0);
	CHECK(decode_modified(striped) == -EUCLEAN && strstr(pcow_errormsg(), "extent file 2"));
	set_nodes(PCOW_NODE_NONE, PCOW_NODE_NONE, PCOW_NODE_NONE);
	CHECK(decode_modified(striped) == 0);
}

static void fix_crc(int len)
{
	uLong crc;

	pcow_put_le32(buf + HDR_CHECKSUM, 0);
	crc = crc32(crc32(0L, Z_NULL, 0), buf, (uInt)len);
	pcow_put_le32(buf + HDR_CHECKSUM, (uint32_t)crc);
}

/* Sets the version field of an encoded blob and fixes its checksum. */
static void set_version(uint32_t version, int len)
{
	uLong crc;

	pcow_put_le32(buf + HDR_VERSION, version);
	pcow_put_le32(buf + HDR_CHECKSUM, 0);
	crc = crc32(crc32(0L, Z_NULL, 0), buf, (uInt)len);
	pcow_put_le32(buf + HDR_CHECKSUM, (uint32_t)crc);
}

/* found by fuzzing: a chain walked before a later parent was range-checked */
static void late_bad_parent(struct pcow_meta *m)
{
	m->layers[0].parent = 2;
	m->layers[2].parent = 0x7fffffff;
}

int main(void)
{
	struct pcow_layer layers[3];
	struct pcow_snapshot snaps[2];
	struct pcow_meta m, out;
	int len, i;

	/* round trip */
	sample(&m, layers, snaps);
	len = pcow_meta_encode(&m, buf, sizeof(buf));
	CHECK(len > (int)PCOW_HEADER_SIZE);
	CHECK(memcmp(buf, PCOW_MAGIC, 8) == 0);
	OK(pcow_meta_decode(buf, sizeof(buf), &out, NULL));
	CHECK(out.virtual_size == m.virtual_size && out.block_bits == 16);
	CHECK(out.generation == 7 && out.active == 2 && out.layer_count == 3);
	CHECK(out.layers[1].region == 3 && out.layers[2].parent == 1);
	CHECK(!strcmp(out.backing, "../base image.raw"));
	CHECK(out.backing_format == PCOW_FORMAT_RAW);
	CHECK(out.snapshot_count == 2 && out.snapshots[1].id == 4);
	CHECK(!strcmp(out.snapshots[0].name, "first") && out.snapshots[0].date_nsec == 5);
	CHECK(out.region_base == 6ull << 20 && out.data_capacity == 4ull << 30);
	CHECK(pcow_le64(buf + HDR_REGION_BASE) == 6ull << 20);
	CHECK(pcow_le64(buf + HDR_DATA_CAPACITY) == 4ull << 30);
	pcow_meta_free(&out);

	/* a checksum mismatch anywhere in the blob is rejected */
	for (i = 0; i < len; i += 7) {
		if (i >= HDR_CHECKSUM && i < HDR_CHECKSUM + 4)
			continue;
		buf[i] ^= 0x40;
		CHECK(pcow_meta_decode(buf, sizeof(buf), &out, NULL) < 0);
		buf[i] ^= 0x40;
	}
	buf[0] = 'X';
	CHECK(pcow_meta_decode(buf, sizeof(buf), &out, NULL) == -EINVAL);
	CHECK(strstr(pcow_errormsg(), "magic"));

	/* structural rules, each checked after a valid checksum */
	CHECK(decode_modified(loop) == -EUCLEAN && strstr(pcow_errormsg(), "loop"));
	CHECK(decode_modified(bad_bits) == -EUCLEAN);
	CHECK(decode_modified(small_bits) == -EUCLEAN);
	CHECK(decode_modified(odd_size) == -EUCLEAN);
	CHECK(decode_modified(zero_size) == -EUCLEAN);
	CHECK(decode_modified(dup_region) == -EUCLEAN);
	CHECK(decode_modified(bad_active) == -EUCLEAN);
	CHECK(decode_modified(snap_on_active) == -EUCLEAN);
	CHECK(decode_modified(dup_name) == -EUCLEAN);
	CHECK(decode_modified(no_fmt) == -EUCLEAN);
	CHECK(decode_modified(bad_region) == -EUCLEAN);
	CHECK(decode_modified(late_bad_parent) == -EUCLEAN);
	/* [R-004] region base and data capacity: bounds, alignment, overflow */
	CHECK(decode_modified(base_low) == -EUCLEAN && strstr(pcow_errormsg(), "region base"));
	CHECK(decode_modified(base_odd) == -EUCLEAN);
	CHECK(decode_modified(base_huge) == -EUCLEAN);
	CHECK(decode_modified(base_wrap) == -EUCLEAN);
	CHECK(decode_modified(cap_small) == -EUCLEAN && strstr(pcow_errormsg(), "capacity"));
	CHECK(decode_modified(cap_odd) == -EUCLEAN);
	CHECK(decode_modified(cap_huge) == -EUCLEAN);
	CHECK(decode_modified(cap_zero) == -EUCLEAN);
	CHECK(decode_modified(cap_max) == 0);
	CHECK(decode_modified(cap_max_base) == -EUCLEAN);
	/* unknown incompatible bits refuse; unknown compatible bits do not */
	CHECK(decode_modified(unknown_incompat) == -EPROTO);
	CHECK(strstr(pcow_errormsg(), "newer pcow"));
	CHECK(decode_modified(unknown_compat) == 0);
	CHECK(decode_modified(not_leaf) == -EUCLEAN && strstr(pcow_errormsg(), "active layer"));
	CHECK(decode_modified(flag_layer) == 0);
	sample(&m, layers, snaps);
	len = pcow_meta_encode(&m, buf, sizeof(buf));
	CHECK(pcow_le64(buf + HDR_INCOMPAT) == 0);
	pcow_put_le64(buf + HDR_INCOMPAT, PCOW_INCOMPAT_DIRTY);    /* no flag */
	fix_crc(len);
	CHECK(pcow_meta_decode(buf, sizeof(buf), &out, NULL) == -EUCLEAN);
	flag_layer(&m);
	len = pcow_meta_encode(&m, buf, sizeof(buf));
	CHECK(pcow_le64(buf + HDR_INCOMPAT) == PCOW_INCOMPAT_DIRTY);
	pcow_put_le64(buf + HDR_INCOMPAT, 0);                      /* flag, no bit */
	fix_crc(len);
	CHECK(pcow_meta_decode(buf, sizeof(buf), &out, NULL) == -EUCLEAN);
	CHECK(decode_modified(unknown_flag) == -EUCLEAN);

	/* a newer version is intact but unreadable: the caller learns
	 * its generation, so that it is not passed over for an older slot */
	{
		uint64_t gen = 0;

		sample(&m, layers, snaps);
		len = pcow_meta_encode(&m, buf, sizeof(buf));
		set_version(PCOW_VERSION + 1, len);
		CHECK(pcow_meta_decode(buf, sizeof(buf), &out, &gen) == -EPROTO);
		CHECK(gen == 7 && strstr(pcow_errormsg(), "newer pcow"));
		/* version 1: read, every layer may own blocks by data alone */
		set_version(1, len);
		OK(pcow_meta_decode(buf, sizeof(buf), &out, &gen));
		CHECK(out.version == 1);
		for (i = 0; i < (int)out.layer_count; i++)
			CHECK(out.layers[i].flags == PCOW_LAYER_UNRECORDED);
		pcow_meta_free(&out);
	}
	/* unknown compatible bits and header fields survive a
	 * rewrite; unknown autoclear bits are cleared */
	{
		uint8_t extra[24];

		for (i = 0; i < (int)sizeof(extra); i++)
			extra[i] = (uint8_t)(0xa0 + i);
		sample(&m, layers, snaps);
		m.compat = 1ull << 9;
		m.autoclear = 1ull << 4;
		m.extra_header = extra;
		m.extra_header_len = sizeof(extra);
		len = pcow_meta_encode(&m, buf, sizeof(buf));
		CHECK(pcow_le32(buf + HDR_HEADER_LENGTH) == PCOW_HEADER_SIZE + sizeof(extra));
		OK(pcow_meta_decode(buf, sizeof(buf), &out, NULL));
		CHECK(out.compat == 1ull << 9 && out.autoclear == 0);
		CHECK(out.extra_header_len == sizeof(extra) &&
		      !memcmp(out.extra_header, extra, sizeof(extra)));
		CHECK(out.layers[2].parent == 1 && !strcmp(out.snapshots[1].name, "second"));
		pcow_meta_free(&out);
	}

	/* lengths and offsets pointing outside the blob */
	sample(&m, layers, snaps);
	len = pcow_meta_encode(&m, buf, sizeof(buf));
	{
		static const int fields[] = {HDR_LAYER_OFFSET, HDR_SNAPSHOT_OFFSET,
					     HDR_BACKING_OFFSET, HDR_BACKING_LENGTH,
					     HDR_LAYER_COUNT, HDR_SNAPSHOT_COUNT, HDR_META_LENGTH};
		uint8_t saved[4];
		size_t f;

		for (f = 0; f < sizeof(fields) / sizeof(fields[0]); f++) {
			memcpy(saved, buf + fields[f], 4);
			pcow_put_le32(buf + fields[f], 0xfffffff0u);
			CHECK(pcow_meta_decode(buf, sizeof(buf), &out, NULL) < 0);
			memcpy(buf + fields[f], saved, 4);
		}
	}

	/* random damage never crashes the decoder */
	srand(1);
	for (i = 0; i < 20000; i++) {
		int j, n = 1 + rand() % 8;

		sample(&m, layers, snaps);
		len = pcow_meta_encode(&m, buf, sizeof(buf));
		for (j = 0; j < n; j++)
			buf[rand() % (len + 64)] = (uint8_t)rand();
		if (pcow_meta_decode(buf, sizeof(buf), &out, NULL) == 0)
			pcow_meta_free(&out);
	}

	/* [R-002] regions: data span then copy bitmap, both aligned */
	CHECK(pcow_data_span(1, 12) == PCOW_REGION_ALIGN);
	CHECK(pcow_bitmap_span(1, 12) == PCOW_REGION_ALIGN);
	CHECK(pcow_region_stride(PCOW_REGION_ALIGN, 12) == 2 * PCOW_REGION_ALIGN);
	CHECK(pcow_region_offset(6ull << 20, 3ull << 30, 2) == (6ull << 20) + (6ull << 30));
	/* a 2^50 capacity of 4 KiB blocks: 2^38 bits = 32 GiB of bitmap */
	CHECK(pcow_region_stride(1ull << 50, 12) == (1ull << 50) + (32ull << 30));
	CHECK(pcow_data_span(3ull << 30, 30) == 3ull << 30);
	CHECK(pcow_bitmap_span(3ull << 30, 30) == 1ull << 30);
	CHECK(pcow_data_span((1ull << 30) + 512, 30) == 2ull << 30);
	/* 1 TiB of 4 KiB blocks: 2^28 bits = 32 MiB of bitmap */
	CHECK(pcow_bitmap_span(1ull << 40, 12) == 32ull << 20);
	stripe_nodes();
	printf("format: ok\n");
	return 0;
}
