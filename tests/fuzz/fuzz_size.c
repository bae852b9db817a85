/*
 * fuzz_size -- libFuzzer target: the tools' parse_size(), parse_format()
 * and human_size() (tools/util.c), checked against a reference reading of
 * their documentation (tools/util.h):
 *
 *   parse_size: digits with an optional binary suffix (k/K, M, G, T, P, E;
 *   b or B for bytes).  Returns false on junk, overflow or a negative.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define FAIL(...)                                                             \
	do {                                                                  \
		fprintf(stderr, "fuzz_size: " __VA_ARGS__);                   \
		fputc('\n', stderr);                                          \
		abort();                                                      \
	} while (0)

/* The reference: exact arithmetic, every uint64_t value representable. */
static bool ref_parse_size(const char *s, uint64_t *out)
{
	unsigned __int128 v = 0;
	uint64_t mult = 1;
	const char *p = s;

	for (; *p >= '0' && *p <= '9'; p++) {
		v = v * 10 + (unsigned)(*p - '0');
		if (v > UINT64_MAX)
			return false;
	}
	if (p == s)
		return false;
	if (*p) {
		if (p[1])
			return false;
		switch (*p) {
		case 'b': case 'B': mult = 1; break;
		case 'k': case 'K': mult = 1ull << 10; break;
		case 'm': case 'M': mult = 1ull << 20; break;
		case 'g': case 'G': mult = 1ull << 30; break;
		case 't': case 'T': mult = 1ull << 40; break;
		case 'p': case 'P': mult = 1ull << 50; break;
		case 'e': case 'E': mult = 1ull << 60; break;
		default: return false;
		}
	}
	v *= mult;
	if (v > UINT64_MAX)
		return false;
	*out = (uint64_t)v;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1), h[32];
	uint64_t got = 0xdeadbeef, want = 0;
	bool ok, ref;
	enum pcow_format fmt = PCOW_FORMAT_NONE;

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	ok = parse_size(s, &got);
	ref = ref_parse_size(s, &want);
	if (ok != ref)
		FAIL("parse_size(\"%s\") returned %s, expected %s", s, ok ? "true" : "false",
		     ref ? "true" : "false");
	if (ok && got != want)
		FAIL("parse_size(\"%s\") gave %llu, expected %llu", s,
		     (unsigned long long)got, (unsigned long long)want);
	if (!ok && got != 0xdeadbeef)
		FAIL("parse_size(\"%s\") failed but changed its output", s);

	ok = parse_format(s, &fmt);
	if (ok != (!strcmp(s, "raw") || !strcmp(s, "pcow")))
		FAIL("parse_format(\"%s\") returned %d", s, ok);
	if (ok && strcmp(format_name(fmt), s))
		FAIL("format_name(parse_format(\"%s\")) is \"%s\"", s, format_name(fmt));

	if (size >= 8) {
		uint64_t v;

		memcpy(&v, data, 8);
		memset(h, 0x7f, sizeof(h));
		human_size(v, h, sizeof(h));
		if (!memchr(h, '\0', sizeof(h)))
			FAIL("human_size(%llu) is not terminated", (unsigned long long)v);
		human_size(v, h, 4);
	}
	free(s);
	return 0;
}
