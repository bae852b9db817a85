/* util.c -- helpers shared by pcow-img and pcow-io. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

const char *progname = "pcow";

void die_msg(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int lib_fail(const char *file)
{
	return fail_msg(file, pcow_errormsg());
}

int fail_msg(const char *file, const char *m)
{
	size_t n = strlen(file);

	/* Library messages often start with the file name already. */
	if (!strncmp(m, file, n) && m[n] == ':')
		die_msg("%s", m);
	else
		die_msg("%s: %s", file, m);
	return 1;
}

int bad_option(int c, char **argv)
{
	const char *arg = argv[optind - 1], *cur = argv[optind];
	int len = (int)strcspn(arg, "=");
	/* A bad letter inside "-qZ" leaves optind on that word, so the word
	 * before it (maybe a long option) is not the culprit. */
	bool in_word = cur && cur[0] == '-' && cur[1] != '-' && optopt &&
		       strchr(cur + 1, optopt);

	/* Plain getopt takes "--bogus" for letters, the first being '-'. */
	if (optopt == '-' && c == '?' && cur && !strncmp(cur, "--", 2)) {
		die_msg("unrecognized option '%.*s'", (int)strcspn(cur, "="), cur);
	} else if (!strncmp(arg, "--", 2) && !in_word) {
		if (c == ':')
			die_msg("option '%.*s' requires an argument", len, arg);
		else if (optopt)
			die_msg("option '%.*s' doesn't allow an argument", len, arg);
		else
			die_msg("unrecognized option '%.*s'", len, arg);
	} else if (c == ':') {
		die_msg("option requires an argument -- '%c'", optopt);
	} else {
		die_msg("invalid option -- '%c'", optopt);
	}
	return 1;
}

/* The multiplier of a size suffix, or 0 when c is none. */
static uint64_t suffix_multiplier(char c)
{
	static const char suffixes[] = "kmgtpe";
	const char *p = c ? strchr(suffixes, c | 0x20) : NULL;

	return p ? 1ull << (10 * (p - suffixes + 1)) : 0;
}

/* Accumulates digits of base into *v; returns where they end (s when there
 * are none), or NULL on overflow. */
static const char *parse_digits(const char *s, unsigned base, uint64_t *v)
{
	for (*v = 0;; s++) {
		unsigned d;

		if (*s >= '0' && *s <= '9')
			d = (unsigned)(*s - '0');
		else if (base == 16 && (*s | 0x20) >= 'a' && (*s | 0x20) <= 'f')
			d = (unsigned)((*s | 0x20) - 'a' + 10);
		else
			return s;
		if (*v > (UINT64_MAX - d) / base)
			return NULL;
		*v = *v * base + d;
	}
}

/*
 * floor(0.DIGITS * 2^shift) without floating point, so that "1.1T" is the
 * same number of bytes on every machine, and exactly, however many digits:
 * from the last digit to the first, f = floor((digit * 2^shift + f) / 10),
 * which is exact because the floor of (an integer + y) / 10 depends only
 * on the floor of y.  With shift <= 60, nothing exceeds 10 * 2^60 < 2^64.
 */
static uint64_t fraction_bits(const char *digits, size_t n, unsigned shift)
{
	uint64_t f = 0;

	while (n--)
		f = ((uint64_t)(digits[n] - '0') * (1ull << shift) + f) / 10;
	return f;
}

bool parse_size(const char *s, uint64_t *out)
{
	const char *p, *frac = NULL;
	uint64_t v, mult;
	size_t nfrac = 0;

	/* Hexadecimal takes no suffix: 'b' is one of its digits. */
	if (s[0] == '0' && (s[1] | 0x20) == 'x') {
		p = parse_digits(s + 2, 16, &v);
		if (!p || p == s + 2 || *p)
			return false;
		*out = v;
		return true;
	}
	p = parse_digits(s, 10, &v);
	if (!p || p == s)
		return false;
	if (*p == '.') {
		frac = ++p;
		while (*p >= '0' && *p <= '9')
			p++;
		nfrac = (size_t)(p - frac);
		if (!nfrac)
			return false;
	}
	mult = suffix_multiplier(*p);
	if (mult)
		p++;
	else if (*p == 'b' || *p == 'B')
		p++;
	/* A fraction of a byte means nothing. */
	if (*p || (frac && !mult))
		return false;
	if (!mult)
		mult = 1;
	if (v > UINT64_MAX / mult)
		return false;
	v *= mult;
	if (frac) {
		uint64_t f = fraction_bits(frac, nfrac, (unsigned)__builtin_ctzll(mult));

		if (f > UINT64_MAX - v)
			return false;
		v += f;
	}
	*out = v;
	return true;
}

void human_size(uint64_t v, char *buf, size_t len)
{
	static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
	double d = (double)v;
	int u = 0;

	while (d >= 1024 && u < 6) {
		d /= 1024;
		u++;
	}
	snprintf(buf, len, "%0.3g %s", d, units[u]);
}

bool parse_format(const char *s, enum pcow_format *fmt)
{
	if (!strcmp(s, "raw"))
		*fmt = PCOW_FORMAT_RAW;
	else if (!strcmp(s, "pcow"))
		*fmt = PCOW_FORMAT_PCOW;
	else
		return false;
	return true;
}

const char *format_name(enum pcow_format fmt)
{
	return fmt == PCOW_FORMAT_PCOW ? "pcow" : fmt == PCOW_FORMAT_RAW ? "raw" : "";
}

static bool file_has_magic(const char *path, off_t off, const char *magic,
			   size_t len)
{
	char buf[8];
	/* O_NONBLOCK: opening a FIFO for reading would wait for a writer. */
	int fd = len <= sizeof(buf) ? open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK) : -1;
	bool yes;

	if (fd < 0)
		return false;
	yes = pread(fd, buf, len, off) == (ssize_t)len && !memcmp(buf, magic, len);
	close(fd);
	return yes;
}

#define PCOW_MAGIC "PCOW\r\n\x1a\n"

bool file_is_pcow(const char *path)
{
	/* Either metadata slot may be the one in force (docs/format.md 3.1). */
	return file_starts_as_pcow(path) ||
	       file_has_magic(path, 256 * 1024, PCOW_MAGIC, 8);
}

bool file_not_pcow(const char *path)
{
	struct stat st;

	/* A file too short for a header is the library's to describe. */
	return stat(path, &st) == 0 &&
	       ((S_ISREG(st.st_mode) && st.st_size >= 128) || S_ISBLK(st.st_mode)) &&
	       access(path, R_OK) == 0 && !file_is_pcow(path);
}

bool file_starts_as_pcow(const char *path)
{
	return file_has_magic(path, 0, PCOW_MAGIC, 8);
}

bool file_is_qcow2(const char *path)
{
	return file_has_magic(path, 0, "QFI\xfb", 4);
}

int sync_dir_of(const char *path)
{
	char *copy = strdup(path);
	int fd, ret;

	if (!copy)
		return -1;
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(copy);
	if (fd < 0)
		return -1;
	ret = fsync(fd);
	close(fd);
	return ret;
}
