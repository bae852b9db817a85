/* util.c -- helpers shared by pcow-img and pcow-io. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
	const char *m = pcow_errormsg();
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

bool parse_size(const char *s, uint64_t *out)
{
	uint64_t v = 0, mult = 1;
	const char *p = s;

	if (!*p)
		return false;
	for (; *p >= '0' && *p <= '9'; p++) {
		uint64_t digit = (uint64_t)(*p - '0');

		if (v > (UINT64_MAX - digit) / 10)
			return false;
		v = v * 10 + digit;
	}
	if (p == s)
		return false;
	switch (*p) {
	case '\0': case 'b': case 'B': break;
	case 'k': case 'K': mult = 1ull << 10; break;
	case 'm': case 'M': mult = 1ull << 20; break;
	case 'g': case 'G': mult = 1ull << 30; break;
	case 't': case 'T': mult = 1ull << 40; break;
	case 'p': case 'P': mult = 1ull << 50; break;
	case 'e': case 'E': mult = 1ull << 60; break;
	default: return false;
	}
	if (*p && p[1])
		return false;
	if (v > UINT64_MAX / mult)
		return false;
	*out = v * mult;
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
