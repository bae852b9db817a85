/*
 * fuzz_common.h -- helpers shared by the fuzz targets and the seed maker.
 */
#ifndef PCOW_FUZZ_COMMON_H
#define PCOW_FUZZ_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <zlib.h>

/* The fixed file layout (docs/format.md, section 2). */
#define FUZZ_SLOT_SIZE (256u * 1024)
#define FUZZ_AREA_OFFSET (512u * 1024)   /* after the slots: reserved, no data */
#define FUZZ_DATA_OFFSET (2u * 1024 * 1024) /* the first region */

/* Separates the parts of a fuzz_image input (see fuzz_image.c). */
#define FUZZ_SEP "\n~PCOW-PART~\n"
#define FUZZ_SEP_LEN (sizeof(FUZZ_SEP) - 1)
#define FUZZ_MAX_PARTS 64

struct fuzz_parts {
	int count;
	const uint8_t *data[FUZZ_MAX_PARTS];
	size_t len[FUZZ_MAX_PARTS];
};

static inline uint64_t fuzz_le64(const uint8_t *p)
{
	uint64_t v = 0;
	int i;

	for (i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static inline const uint8_t *fuzz_find(const uint8_t *p, size_t n)
{
	size_t i;

	if (n < FUZZ_SEP_LEN)
		return NULL;
	for (i = 0; i + FUZZ_SEP_LEN <= n; i++)
		if (p[i] == FUZZ_SEP[0] && !memcmp(p + i, FUZZ_SEP, FUZZ_SEP_LEN))
			return p + i;
	return NULL;
}

/* Splits an input at FUZZ_SEP; parts past FUZZ_MAX_PARTS are ignored. */
static inline void fuzz_split(const uint8_t *data, size_t size,
			      struct fuzz_parts *out)
{
	const uint8_t *p = data, *end = data + size, *sep;
	int i;

	for (i = 0; i < FUZZ_MAX_PARTS; i++) {
		out->data[i] = NULL;
		out->len[i] = 0;
	}
	out->count = 0;
	while (out->count < FUZZ_MAX_PARTS) {
		sep = fuzz_find(p, (size_t)(end - p));
		out->data[out->count] = p;
		out->len[out->count] = sep ? (size_t)(sep - p) : (size_t)(end - p);
		out->count++;
		if (!sep)
			break;
		p = sep + FUZZ_SEP_LEN;
	}
}

/* The metadata checksum: CRC-32 of [0, meta_length) with bytes 64..67 as 0. */
static inline uint32_t fuzz_blob_crc(const uint8_t *buf, size_t len)
{
	static const uint8_t zero[4];
	uLong crc = crc32(0L, Z_NULL, 0);

	crc = crc32(crc, buf, 64);
	crc = crc32(crc, zero, 4);
	crc = crc32(crc, buf + 68, (uInt)(len - 68));
	return (uint32_t)crc;
}

/*
 * When buf (a slot of len bytes) starts with the magic and its meta_length
 * fits, stores the right checksum.  Returns true when that changed it.
 */
static inline bool fuzz_fix_crc(uint8_t *buf, size_t len)
{
	uint32_t meta_len, crc, old;

	if (len < 128 || memcmp(buf, "PCOW\r\n\x1a\n", 8))
		return false;
	meta_len = (uint32_t)buf[60] | (uint32_t)buf[61] << 8 |
		   (uint32_t)buf[62] << 16 | (uint32_t)buf[63] << 24;
	if (meta_len < 68 || meta_len > len)
		return false;
	crc = fuzz_blob_crc(buf, meta_len);
	old = (uint32_t)buf[64] | (uint32_t)buf[65] << 8 | (uint32_t)buf[66] << 16 |
	      (uint32_t)buf[67] << 24;
	if (crc == old)
		return false;
	buf[64] = (uint8_t)crc;
	buf[65] = (uint8_t)(crc >> 8);
	buf[66] = (uint8_t)(crc >> 16);
	buf[67] = (uint8_t)(crc >> 24);
	return true;
}

#endif
