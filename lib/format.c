/*
 * format.c -- decoding, validation and encoding of the metadata blob.
 *
 * Every length and offset read from an image is checked against the blob
 * before it is used; nothing here allocates more than the blob's own size
 * allows.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "error.h"
#include "format.h"

uint64_t pcow_region_align(uint32_t block_bits)
{
	uint64_t align = (uint64_t)1 << block_bits;

	return align < PCOW_REGION_ALIGN ? PCOW_REGION_ALIGN : align;
}

static uint64_t round_up(uint64_t v, uint64_t align)
{
	return (v + align - 1) & ~(align - 1);
}

uint64_t pcow_data_span(uint64_t virtual_size, uint32_t block_bits)
{
	return round_up(virtual_size, pcow_region_align(block_bits));
}

uint64_t pcow_bitmap_span(uint64_t data_capacity, uint32_t block_bits)
{
	uint64_t blocks = (data_capacity + ((uint64_t)1 << block_bits) - 1) >> block_bits;

	return round_up((blocks + 63) / 64 * 8, pcow_region_align(block_bits));
}

uint64_t pcow_region_stride(uint64_t data_capacity, uint32_t block_bits)
{
	return data_capacity + pcow_bitmap_span(data_capacity, block_bits);
}

uint64_t pcow_region_offset(uint64_t region_base, uint64_t stride,
			    uint32_t region)
{
	return region_base + stride * region;
}

/*
 * Where the regions lie: every region and block stays aligned, and the end
 * of the last possible region stays addressable, so no offset computed
 * from the layout can overflow.
 */
static int validate_layout(const struct pcow_meta *m)
{
	uint64_t align = pcow_region_align(m->block_bits), stride;

	if (m->data_capacity < pcow_data_span(m->virtual_size, m->block_bits) ||
	    m->data_capacity > PCOW_MAX_VIRTUAL_SIZE || m->data_capacity % align)
		return pcow_err(-EINVAL, "invalid data capacity %llu (virtual size %llu)",
				(unsigned long long)m->data_capacity,
				(unsigned long long)m->virtual_size);
	stride = pcow_region_stride(m->data_capacity, m->block_bits);
	if (m->region_base < PCOW_DATA_OFFSET || m->region_base % PCOW_REGION_ALIGN ||
	    m->region_base > PCOW_MAX_FILE_END - PCOW_MAX_REGIONS * stride)
		return pcow_err(-EINVAL, "invalid region base %llu",
				(unsigned long long)m->region_base);
	return 0;
}

static bool in_blob(uint64_t off, uint64_t len, uint64_t total);

/*
 * The stripe table's rules (format.md 3.6): a stripe holds whole blocks,
 * and a data span holds few enough stripes for a map's VMA budget.
 */
static int validate_stripes(const struct pcow_meta *m)
{
	uint32_t i;

	if (!m->extent_count)
		return 0;
	if (m->extent_count < PCOW_EXTENTS_MIN || m->extent_count > PCOW_EXTENTS_MAX)
		return pcow_err(-EINVAL, "invalid extent file count %u (%u to %u)",
				m->extent_count, PCOW_EXTENTS_MIN, PCOW_EXTENTS_MAX);
	if (m->stripe_bits < PCOW_STRIPE_BITS_MIN || m->stripe_bits > PCOW_STRIPE_BITS_MAX ||
	    m->stripe_bits < m->block_bits)
		return pcow_err(-EINVAL, "invalid stripe size 2^%u (64 KiB to 2^%u, at least the block size)",
				m->stripe_bits, PCOW_STRIPE_BITS_MAX);
	if (((m->data_capacity - 1) >> m->stripe_bits) + 1 > PCOW_STRIPES_PER_SPAN_MAX)
		return pcow_err(-EINVAL, "stripe size 2^%u is too small for a capacity of %llu (at most %u stripes)",
				m->stripe_bits, (unsigned long long)m->data_capacity,
				PCOW_STRIPES_PER_SPAN_MAX);
	for (i = 0; i < m->extent_count; i++)
		if (!m->extents[i] || !m->extents[i][0] ||
		    strlen(m->extents[i]) > PCOW_BACKING_NAME_MAX)
			return pcow_err(-EINVAL, "invalid name of extent file %u", i);
	return 0;
}

uint32_t pcow_meta_stripe_node(const struct pcow_meta *m, uint32_t i)
{
	if (m->extra_header_len < PCOW_STRIPE_NODES_SIZE || i >= PCOW_EXTENTS_MAX)
		return PCOW_NODE_NONE;
	return pcow_le16(m->extra_header + 2 * i);
}

int pcow_meta_set_stripe_nodes(struct pcow_meta *m, const uint32_t *nodes)
{
	uint32_t i;

	if (!nodes && m->extra_header_len < PCOW_STRIPE_NODES_SIZE)
		return 0;
	for (i = 0; nodes && i < m->extent_count; i++)
		if (nodes[i] > PCOW_NODE_MAX && nodes[i] != PCOW_NODE_NONE)
			return pcow_err(-EINVAL, "invalid node %u of extent file %u (0 to %u)",
					nodes[i], i, PCOW_NODE_MAX);
	if (m->extra_header_len < PCOW_STRIPE_NODES_SIZE) {
		uint8_t *h = realloc(m->extra_header, PCOW_STRIPE_NODES_SIZE);

		if (!h)
			return pcow_err(-ENOMEM, "out of memory");
		m->extra_header = h;
		m->extra_header_len = PCOW_STRIPE_NODES_SIZE;
	}
	for (i = 0; i < PCOW_EXTENTS_MAX; i++)
		pcow_put_le16(m->extra_header + 2 * i,
			      nodes && i < m->extent_count ? nodes[i] : PCOW_NODE_NONE);
	return 0;
}

/*
 * The stripe nodes (format.md 3.6) are a hint, but bounded like every
 * field: a node the kernel cannot have, or one for an extent file that
 * does not exist, is a corrupt header.
 */
static int validate_stripe_nodes(const struct pcow_meta *m)
{
	for (uint32_t i = 0; m->extra_header_len >= PCOW_STRIPE_NODES_SIZE &&
	     i < PCOW_EXTENTS_MAX; i++) {
		uint32_t node = pcow_meta_stripe_node(m, i);

		if (node != PCOW_NODE_NONE && (i >= m->extent_count || node > PCOW_NODE_MAX))
			return pcow_err(-EINVAL, "invalid node %u of extent file %u", node, i);
	}
	return 0;
}

/* Reads the stripe table of a blob with the striped bit (format.md 3.6). */
static int decode_stripes(const uint8_t *buf, uint32_t meta_len,
			  struct pcow_meta *m)
{
	uint32_t off = pcow_le32(buf + HDR_STRIPE_OFFSET);
	uint32_t len = pcow_le32(buf + HDR_STRIPE_LENGTH), n, i;
	const uint8_t *t = buf + off;

	if (len < PCOW_STRIPE_TABLE_FIXED || !in_blob(off, len, meta_len))
		return pcow_err(-EINVAL, "invalid stripe table");
	n = pcow_le32(t + 20);
	if (n < PCOW_EXTENTS_MIN || n > PCOW_EXTENTS_MAX ||
	    len != PCOW_STRIPE_TABLE_FIXED + n * PCOW_STRIPE_ENTRY_SIZE)
		return pcow_err(-EINVAL, "invalid stripe table (%u extent files)", n);
	memcpy(m->uuid, t, PCOW_UUID_SIZE);
	m->stripe_bits = pcow_le32(t + 16);
	m->extents = calloc(n, sizeof(*m->extents));
	if (!m->extents)
		return pcow_err(-ENOMEM, "out of memory");
	m->extent_count = n;
	for (i = 0; i < n; i++) {
		const uint8_t *e = t + PCOW_STRIPE_TABLE_FIXED + i * PCOW_STRIPE_ENTRY_SIZE;
		uint32_t no = pcow_le32(e), nl = pcow_le32(e + 4);

		if (nl == 0 || nl > PCOW_BACKING_NAME_MAX || !in_blob(no, nl, meta_len) ||
		    memchr(buf + no, '\0', nl))
			return pcow_err(-EINVAL, "invalid name of extent file %u", i);
		m->extents[i] = strndup((const char *)buf + no, nl);
		if (!m->extents[i])
			return pcow_err(-ENOMEM, "out of memory");
	}
	return 0;
}

static uint32_t blob_crc(const uint8_t *buf, size_t len)
{
	static const uint8_t zero[4];
	uLong crc = crc32(0L, Z_NULL, 0);

	crc = crc32(crc, buf, HDR_CHECKSUM);
	crc = crc32(crc, zero, 4);
	crc = crc32(crc, buf + HDR_CHECKSUM + 4, (uInt)(len - HDR_CHECKSUM - 4));
	return (uint32_t)crc;
}

/* True when [off, off+len) lies inside a blob of size total. */
static bool in_blob(uint64_t off, uint64_t len, uint64_t total)
{
	return off <= total && len <= total - off;
}

static bool name_ok(const char *s, size_t len)
{
	if (len == 0 || len > PCOW_SNAPSHOT_NAME_MAX)
		return false;
	return memchr(s, '\0', len) == NULL;
}

int pcow_meta_validate(const struct pcow_meta *m)
{
	uint8_t regions_used[PCOW_MAX_REGIONS] = {0};
	uint32_t i, j;
	int ret;

	if (m->incompat & ~PCOW_INCOMPAT_KNOWN)
		return pcow_err(-ENOTSUP, "unsupported incompatible features 0x%llx",
				(unsigned long long)(m->incompat & ~PCOW_INCOMPAT_KNOWN));
	if (m->version >= 2 && !(m->incompat & PCOW_INCOMPAT_DIRTY) != !pcow_meta_unrecorded(m))
		return pcow_err(-EINVAL, "the dirty bit disagrees with the layers' flags");
	if (m->block_bits < 12 || m->block_bits > 30)
		return pcow_err(-EINVAL, "block size 2^%u out of range (4 KiB to 1 GiB)",
				m->block_bits);
	if (m->virtual_size == 0 || m->virtual_size % 512 ||
	    m->virtual_size > PCOW_MAX_VIRTUAL_SIZE)
		return pcow_err(-EINVAL, "invalid virtual size %llu",
				(unsigned long long)m->virtual_size);
	if (m->backing && m->backing_format != PCOW_FORMAT_RAW &&
	    m->backing_format != PCOW_FORMAT_PCOW)
		return pcow_err(-EINVAL, "invalid backing file format %d",
				(int)m->backing_format);
	if (!m->backing && m->backing_format != PCOW_FORMAT_NONE)
		return pcow_err(-EINVAL, "backing format set without a backing file");
	ret = validate_layout(m);
	if (ret == 0)
		ret = validate_stripes(m);
	if (ret == 0)
		ret = validate_stripe_nodes(m);
	if (ret < 0)
		return ret;
	if (m->layer_count == 0 || m->layer_count > PCOW_MAX_LAYERS)
		return pcow_err(-EINVAL, "invalid layer count %u", m->layer_count);
	if (m->active >= m->layer_count)
		return pcow_err(-EINVAL, "active layer %u out of range", m->active);
	if (m->snapshot_count > PCOW_MAX_SNAPSHOTS)
		return pcow_err(-EINVAL, "too many snapshots (%u)", m->snapshot_count);
	for (i = 0; i < m->layer_count; i++) {
		const struct pcow_layer *l = &m->layers[i];

		if (l->region >= PCOW_MAX_REGIONS)
			return pcow_err(-EINVAL, "layer %u: region %u out of range",
					i, l->region);
		if (regions_used[l->region]++)
			return pcow_err(-EINVAL, "layer %u: region %u used twice",
					i, l->region);
		if (l->parent != PCOW_NO_PARENT && l->parent >= m->layer_count)
			return pcow_err(-EINVAL, "layer %u: parent %u out of range",
					i, l->parent);
		if (l->flags & ~PCOW_LAYER_FLAGS_KNOWN)
			return pcow_err(-EINVAL, "layer %u: unknown flags 0x%x", i, l->flags);
	}
	/* Only once every parent is in range may the chains be walked; a loop
	 * would make reads spin forever. */
	for (i = 0; i < m->layer_count; i++) {
		uint32_t steps = 0, p;

		for (p = m->layers[i].parent; p != PCOW_NO_PARENT; p = m->layers[p].parent)
			if (++steps > m->layer_count)
				return pcow_err(-EINVAL, "layer %u: parent loop", i);
	}
	/* Writes go to the active layer only: a layer inheriting from it
	 * would change under them (format.md 3.5). */
	for (i = 0; i < m->layer_count; i++)
		if (m->layers[i].parent == m->active)
			return pcow_err(-EINVAL, "layer %u: its parent is the active layer", i);
	for (i = 0; i < m->snapshot_count; i++) {
		const struct pcow_snapshot *s = &m->snapshots[i];

		if (s->layer >= m->layer_count || s->layer == m->active)
			return pcow_err(-EINVAL, "snapshot %u: invalid layer %u",
					s->id, s->layer);
		if (s->id == 0 || s->id >= m->next_snapshot_id)
			return pcow_err(-EINVAL, "snapshot id %u out of range", s->id);
		for (j = 0; j < i; j++) {
			if (m->snapshots[j].id == s->id)
				return pcow_err(-EINVAL, "snapshot id %u used twice", s->id);
			if (!strcmp(m->snapshots[j].name, s->name))
				return pcow_err(-EINVAL, "snapshot name '%s' used twice",
						s->name);
			if (m->snapshots[j].layer == s->layer)
				return pcow_err(-EINVAL, "layer %u has two snapshots",
						s->layer);
		}
	}
	return 0;
}

bool pcow_meta_region_used(const struct pcow_meta *m, uint32_t r)
{
	uint32_t i;

	for (i = 0; i < m->layer_count; i++)
		if (m->layers[i].region == r)
			return true;
	return false;
}

bool pcow_meta_unrecorded(const struct pcow_meta *m)
{
	uint32_t i;

	for (i = 0; i < m->layer_count; i++)
		if (m->layers[i].flags & PCOW_LAYER_UNRECORDED)
			return true;
	return false;
}

uint64_t pcow_meta_incompat(const struct pcow_meta *m)
{
	/* The dirty bit says what the layers' flags say (format.md 3.2). */
	return (m->incompat & ~(PCOW_INCOMPAT_DIRTY | PCOW_INCOMPAT_STRIPED)) |
	       (pcow_meta_unrecorded(m) ? PCOW_INCOMPAT_DIRTY : 0) |
	       (m->extent_count ? PCOW_INCOMPAT_STRIPED : 0);
}

int pcow_meta_decode(const uint8_t *buf, size_t len, struct pcow_meta *m,
		     uint64_t *generation)
{
	uint32_t meta_len, hdr_len, off, n, i, bo, bl, version;
	int ret;

	memset(m, 0, sizeof(*m));
	if (len < PCOW_HEADER_SIZE || memcmp(buf, PCOW_MAGIC, PCOW_MAGIC_LEN))
		return pcow_err(-EINVAL, "not a pcow image (bad magic)");
	/* Bytes 0-71 mean the same in every version (format.md 3.2), so a
	 * newer version's blob is recognised as intact before it is refused.
	 * Only the magic, meta_length and the checksum decide whether a blob
	 * is intact; any other field that is wrong in an intact blob is
	 * damage, never a torn slot to pass over (format.md 3.1). */
	meta_len = pcow_le32(buf + HDR_META_LENGTH);
	if (meta_len < PCOW_HEADER_SIZE || meta_len > len)
		return pcow_err(-EINVAL, "invalid header length");
	if (blob_crc(buf, meta_len) != pcow_le32(buf + HDR_CHECKSUM))
		return pcow_err(-EINVAL, "header checksum mismatch");
	if (generation)
		*generation = pcow_le64(buf + HDR_GENERATION);
	version = pcow_le32(buf + HDR_VERSION);
	if (version < PCOW_VERSION_OLDEST || version > PCOW_VERSION)
		return pcow_err(-EPROTO, "image format version %u needs a newer pcow (this one reads versions %u to %u)",
				version, PCOW_VERSION_OLDEST, PCOW_VERSION);
	m->version = version;
	if (pcow_le64(buf + HDR_INCOMPAT) & ~(version == 1 ? 0 : PCOW_INCOMPAT_KNOWN))
		return pcow_err(-EPROTO, "unsupported incompatible features 0x%llx: the image needs a newer pcow",
				(unsigned long long)(pcow_le64(buf + HDR_INCOMPAT) &
						     ~PCOW_INCOMPAT_KNOWN));
	hdr_len = pcow_le32(buf + HDR_HEADER_LENGTH);
	if (hdr_len < PCOW_HEADER_SIZE || hdr_len > meta_len) {
		ret = pcow_err(-EINVAL, "invalid header length %u (metadata length %u)",
			       hdr_len, meta_len);
		goto fail;
	}
	if (hdr_len > PCOW_HEADER_SIZE) {
		m->extra_header_len = hdr_len - PCOW_HEADER_SIZE;
		m->extra_header = malloc(m->extra_header_len);
		if (!m->extra_header)
			return pcow_err(-ENOMEM, "out of memory");
		memcpy(m->extra_header, buf + PCOW_HEADER_SIZE, m->extra_header_len);
	}

	m->incompat = pcow_le64(buf + HDR_INCOMPAT);
	m->compat = pcow_le64(buf + HDR_COMPAT);
	m->autoclear = pcow_le64(buf + HDR_AUTOCLEAR);
	m->generation = pcow_le64(buf + HDR_GENERATION);
	m->virtual_size = pcow_le64(buf + HDR_VIRTUAL_SIZE);
	m->block_bits = pcow_le32(buf + HDR_BLOCK_BITS);
	m->backing_format = (enum pcow_format)pcow_le32(buf + HDR_BACKING_FORMAT);
	m->active = pcow_le32(buf + HDR_ACTIVE_LAYER);
	m->next_snapshot_id = pcow_le32(buf + HDR_NEXT_SNAPSHOT_ID);
	m->region_base = pcow_le64(buf + HDR_REGION_BASE);
	m->data_capacity = pcow_le64(buf + HDR_DATA_CAPACITY);

	bo = pcow_le32(buf + HDR_BACKING_OFFSET);
	bl = pcow_le32(buf + HDR_BACKING_LENGTH);
	if (bl) {
		if (bl > PCOW_BACKING_NAME_MAX || !in_blob(bo, bl, meta_len) ||
		    memchr(buf + bo, '\0', bl)) {
			ret = pcow_err(-EINVAL, "invalid backing file name");
			goto fail;
		}
		m->backing = strndup((const char *)buf + bo, bl);
		if (!m->backing)
			goto nomem;
	}

	n = pcow_le32(buf + HDR_LAYER_COUNT);
	off = pcow_le32(buf + HDR_LAYER_OFFSET);
	ret = -EINVAL;
	if (n == 0 || n > PCOW_MAX_LAYERS ||
	    !in_blob(off, (uint64_t)n * PCOW_LAYER_ENTRY_SIZE, meta_len)) {
		pcow_err(-EINVAL, "invalid layer table");
		goto fail;
	}
	m->layers = calloc(n, sizeof(*m->layers));
	if (!m->layers)
		goto nomem;
	m->layer_count = n;
	for (i = 0; i < n; i++) {
		const uint8_t *e = buf + off + i * PCOW_LAYER_ENTRY_SIZE;

		m->layers[i].region = pcow_le32(e);
		m->layers[i].parent = pcow_le32(e + 4);
		/* Version 1 knew no bits: any layer may own blocks by data. */
		m->layers[i].flags = version == 1 ? PCOW_LAYER_UNRECORDED : pcow_le32(e + 8);
	}

	n = pcow_le32(buf + HDR_SNAPSHOT_COUNT);
	off = pcow_le32(buf + HDR_SNAPSHOT_OFFSET);
	if (n > PCOW_MAX_SNAPSHOTS ||
	    !in_blob(off, (uint64_t)n * PCOW_SNAPSHOT_ENTRY_SIZE, meta_len)) {
		pcow_err(-EINVAL, "invalid snapshot table");
		goto fail;
	}
	if (n) {
		m->snapshots = calloc(n, sizeof(*m->snapshots));
		if (!m->snapshots)
			goto nomem;
	}
	for (i = 0; i < n; i++) {
		const uint8_t *e = buf + off + i * PCOW_SNAPSHOT_ENTRY_SIZE;
		struct pcow_snapshot *s = &m->snapshots[i];
		uint32_t no = pcow_le32(e + 20), nl = pcow_le32(e + 24);

		s->id = pcow_le32(e);
		s->layer = pcow_le32(e + 4);
		s->date_sec = (int64_t)pcow_le64(e + 8);
		s->date_nsec = pcow_le32(e + 16);
		if (!in_blob(no, nl, meta_len) ||
		    !name_ok((const char *)buf + no, nl) || s->date_nsec >= 1000000000u) {
			m->snapshot_count = i;
			pcow_err(-EINVAL, "invalid snapshot entry %u", i);
			goto fail;
		}
		s->name = strndup((const char *)buf + no, nl);
		if (!s->name) {
			m->snapshot_count = i;
			goto nomem;
		}
	}
	m->snapshot_count = n;
	if (m->incompat & PCOW_INCOMPAT_STRIPED) {
		ret = decode_stripes(buf, meta_len, m);
		if (ret < 0)
			goto fail;
	}
	ret = pcow_meta_validate(m);
	if (ret < 0)
		goto fail;
	return 0;
nomem:
	ret = pcow_err(-ENOMEM, "out of memory");
fail:
	pcow_meta_free(m);
	/* The checksum was right: a writer wrote this, it was not torn. */
	return ret == -EINVAL || ret == -ENOTSUP ? -EUCLEAN : ret;
}

int pcow_meta_encode(const struct pcow_meta *m, uint8_t *buf, size_t len)
{
	size_t pos = PCOW_HEADER_SIZE, str, stripes;
	uint32_t i;

	memset(buf, 0, len);
	memcpy(buf + HDR_MAGIC, PCOW_MAGIC, PCOW_MAGIC_LEN);
	if (PCOW_HEADER_SIZE + (size_t)m->extra_header_len > len)
		return pcow_err(-ENOSPC, "metadata does not fit in its slot");
	pos += m->extra_header_len;
	pcow_put_le32(buf + HDR_VERSION, PCOW_VERSION);
	pcow_put_le32(buf + HDR_HEADER_LENGTH, (uint32_t)pos);
	if (m->extra_header_len)
		memcpy(buf + PCOW_HEADER_SIZE, m->extra_header, m->extra_header_len);
	pcow_put_le64(buf + HDR_INCOMPAT, pcow_meta_incompat(m));
	pcow_put_le64(buf + HDR_COMPAT, m->compat);
	/* Bits this version does not know are cleared when it writes. */
	pcow_put_le64(buf + HDR_AUTOCLEAR, m->autoclear & PCOW_AUTOCLEAR_KNOWN);
	pcow_put_le64(buf + HDR_GENERATION, m->generation);
	pcow_put_le64(buf + HDR_VIRTUAL_SIZE, m->virtual_size);
	pcow_put_le32(buf + HDR_BLOCK_BITS, m->block_bits);
	pcow_put_le32(buf + HDR_BACKING_FORMAT, (uint32_t)m->backing_format);
	pcow_put_le32(buf + HDR_ACTIVE_LAYER, m->active);
	pcow_put_le32(buf + HDR_NEXT_SNAPSHOT_ID, m->next_snapshot_id);
	pcow_put_le64(buf + HDR_REGION_BASE, m->region_base);
	pcow_put_le64(buf + HDR_DATA_CAPACITY, m->data_capacity);

	pcow_put_le32(buf + HDR_LAYER_COUNT, m->layer_count);
	pcow_put_le32(buf + HDR_LAYER_OFFSET, (uint32_t)pos);
	if (pos + (size_t)m->layer_count * PCOW_LAYER_ENTRY_SIZE > len)
		return pcow_err(-ENOSPC, "metadata does not fit in its slot");
	for (i = 0; i < m->layer_count; i++, pos += PCOW_LAYER_ENTRY_SIZE) {
		pcow_put_le32(buf + pos, m->layers[i].region);
		pcow_put_le32(buf + pos + 4, m->layers[i].parent);
		pcow_put_le32(buf + pos + 8, m->layers[i].flags);
	}

	pcow_put_le32(buf + HDR_SNAPSHOT_COUNT, m->snapshot_count);
	pcow_put_le32(buf + HDR_SNAPSHOT_OFFSET, (uint32_t)pos);
	stripes = pos + (size_t)m->snapshot_count * PCOW_SNAPSHOT_ENTRY_SIZE;
	str = stripes + (m->extent_count ? PCOW_STRIPE_TABLE_FIXED +
			 (size_t)m->extent_count * PCOW_STRIPE_ENTRY_SIZE : 0);
	if (str > len)
		return pcow_err(-ENOSPC, "metadata does not fit in its slot");
	if (m->extent_count) {
		pcow_put_le32(buf + HDR_STRIPE_OFFSET, (uint32_t)stripes);
		pcow_put_le32(buf + HDR_STRIPE_LENGTH, (uint32_t)(str - stripes));
		memcpy(buf + stripes, m->uuid, PCOW_UUID_SIZE);
		pcow_put_le32(buf + stripes + 16, m->stripe_bits);
		pcow_put_le32(buf + stripes + 20, m->extent_count);
		for (i = 0; i < m->extent_count; i++) {
			uint8_t *e = buf + stripes + PCOW_STRIPE_TABLE_FIXED +
				     i * PCOW_STRIPE_ENTRY_SIZE;
			size_t nl = strlen(m->extents[i]);

			if (str + nl > len)
				return pcow_err(-ENOSPC, "metadata does not fit in its slot");
			pcow_put_le32(e, (uint32_t)str);
			pcow_put_le32(e + 4, (uint32_t)nl);
			memcpy(buf + str, m->extents[i], nl);
			str += nl;
		}
	}
	for (i = 0; i < m->snapshot_count; i++, pos += PCOW_SNAPSHOT_ENTRY_SIZE) {
		const struct pcow_snapshot *s = &m->snapshots[i];
		size_t nl = strlen(s->name);

		if (str + nl > len)
			return pcow_err(-ENOSPC, "metadata does not fit in its slot");
		pcow_put_le32(buf + pos, s->id);
		pcow_put_le32(buf + pos + 4, s->layer);
		pcow_put_le64(buf + pos + 8, (uint64_t)s->date_sec);
		pcow_put_le32(buf + pos + 16, s->date_nsec);
		pcow_put_le32(buf + pos + 20, (uint32_t)str);
		pcow_put_le32(buf + pos + 24, (uint32_t)nl);
		memcpy(buf + str, s->name, nl);
		str += nl;
	}
	if (m->backing) {
		size_t bl = strlen(m->backing);

		if (str + bl > len)
			return pcow_err(-ENOSPC, "metadata does not fit in its slot");
		pcow_put_le32(buf + HDR_BACKING_OFFSET, (uint32_t)str);
		pcow_put_le32(buf + HDR_BACKING_LENGTH, (uint32_t)bl);
		memcpy(buf + str, m->backing, bl);
		str += bl;
	}
	pcow_put_le32(buf + HDR_META_LENGTH, (uint32_t)str);
	pcow_put_le32(buf + HDR_CHECKSUM, blob_crc(buf, str));
	return (int)str;
}

int pcow_meta_copy(struct pcow_meta *dst, const struct pcow_meta *src)
{
	uint32_t i;

	*dst = *src;
	dst->backing = NULL;
	dst->layers = NULL;
	dst->snapshots = NULL;
	dst->snapshot_count = 0;
	dst->extra_header = NULL;
	dst->extents = NULL;
	dst->extent_count = 0;
	if (src->extent_count) {
		dst->extents = calloc(src->extent_count, sizeof(*dst->extents));
		if (!dst->extents)
			goto nomem;
		dst->extent_count = src->extent_count;
		for (i = 0; i < src->extent_count; i++)
			if (!(dst->extents[i] = strdup(src->extents[i])))
				goto nomem;
	}
	if (src->backing && !(dst->backing = strdup(src->backing)))
		goto nomem;
	if (src->extra_header_len &&
	    !(dst->extra_header = malloc(src->extra_header_len)))
		goto nomem;
	if (src->extra_header_len)
		memcpy(dst->extra_header, src->extra_header, src->extra_header_len);
	/* Room for one more of each, so callers can append without realloc. */
	dst->layers = calloc(src->layer_count + 1, sizeof(*dst->layers));
	dst->snapshots = calloc(src->snapshot_count + 1, sizeof(*dst->snapshots));
	if (!dst->layers || !dst->snapshots)
		goto nomem;
	memcpy(dst->layers, src->layers, src->layer_count * sizeof(*src->layers));
	for (i = 0; i < src->snapshot_count; i++) {
		dst->snapshots[i] = src->snapshots[i];
		dst->snapshots[i].name = strdup(src->snapshots[i].name);
		if (!dst->snapshots[i].name)
			goto nomem;
		dst->snapshot_count = i + 1;
	}
	return 0;
nomem:
	pcow_meta_free(dst);
	return pcow_err(-ENOMEM, "out of memory");
}

void pcow_meta_free(struct pcow_meta *m)
{
	uint32_t i;

	for (i = 0; i < m->snapshot_count; i++)
		free(m->snapshots[i].name);
	for (i = 0; i < m->extent_count; i++)
		free(m->extents[i]);
	free(m->extents);
	free(m->snapshots);
	free(m->layers);
	free(m->backing);
	free(m->extra_header);
	memset(m, 0, sizeof(*m));
}
