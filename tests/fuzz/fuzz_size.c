/*
 * fuzz_size -- libFuzzer target: the tools' parse_size(), parse_format()
 * and human_size() (tools/util.c), checked against a reference reading of
 * their documentation (tools/util.h):
 *
 *   parse_size: a decimal number with an optional binary suffix (k/K, M,
 *   G, T, P, E; b or B for bytes), which may have a fraction with a
 *   suffix ("1.5G", rounded down to a byte), or hexadecimal ("0x1000")
 *   without suffix.  Returns false on junk, overflow or a negative.
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

/* floor(0.DIGITS * 2^bits), exactly: the fraction doubled bit by bit in
 * decimal, each carry out of its first digit the next bit. */
static unsigned __int128 ref_fraction(const char *digits, size_t n, unsigned bits)
{
	unsigned __int128 r = 0;
	char *d = malloc(n ? n : 1);
	unsigned b;
	size_t i;

	if (!d)
		abort();
	for (i = 0; i < n; i++)
		d[i] = (char)(digits[i] - '0');
	for (b = 0; b < bits; b++) {
		int carry = 0;

		for (i = n; i-- > 0;) {
			int v = d[i] * 2 + carry;

			d[i] = (char)(v % 10);
			carry = v / 10;
		}
		r = r * 2 + (unsigned)carry;
	}
	free(d);
	return r;
}

static int ref_shift(char c)
{
	switch (c) {
	case 'k': case 'K': return 10;
	case 'm': case 'M': return 20;
	case 'g': case 'G': return 30;
	case 't': case 'T': return 40;
	case 'p': case 'P': return 50;
	case 'e': case 'E': return 60;
	default: return -1;
	}
}

/* The reference: exact arithmetic, every uint64_t value representable. */
static bool ref_parse_size(const char *s, uint64_t *out)
{
	unsigned __int128 v = 0;
	const char *p = s, *frac = NULL;
	size_t nfrac = 0;
	int shift = -1;

	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		for (p = s + 2; *p; p++) {
			int d = *p >= '0' && *p <= '9' ? *p - '0'
			      : *p >= 'a' && *p <= 'f' ? *p - 'a' + 10
			      : *p >= 'A' && *p <= 'F' ? *p - 'A' + 10 : -1;

			if (d < 0)
				return false;
			v = v * 16 + (unsigned)d;
			if (v > UINT64_MAX)
				return false;
		}
		if (p == s + 2)
			return false;
		*out = (uint64_t)v;
		return true;
	}
	for (; *p >= '0' && *p <= '9'; p++) {
		v = v * 10 + (unsigned)(*p - '0');
		if (v > UINT64_MAX)
			return false;
	}
	if (p == s)
		return false;
	if (*p == '.') {
		frac = ++p;
		while (*p >= '0' && *p <= '9')
			p++;
		nfrac = (size_t)(p - frac);
		if (!nfrac)
			return false;
	}
	if (*p) {
		if (p[1])
			return false;
		shift = ref_shift(*p);
		if (shift < 0 && *p != 'b' && *p != 'B')
			return false;
	}
	/* A fraction of a byte means nothing. */
	if (frac && shift < 0)
		return false;
	if (shift > 0)
		v <<= shift;
	if (frac)
		v += ref_fraction(frac, nfrac, (unsigned)shift);
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
