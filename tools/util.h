/* util.h -- helpers shared by pcow-img and pcow-io. */
#ifndef PCOW_TOOLS_UTIL_H
#define PCOW_TOOLS_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pcow.h"

extern const char *progname;

/* Prints "progname: msg" on stderr. */
void die_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints the library's message as "progname: FILE: msg" (naming the file
 * once, though the message may start with it already); returns 1. */
int lib_fail(const char *file);

/* The same for a message m of one's own. */
int fail_msg(const char *file, const char *m);

/*
 * Reports the option getopt_long stopped at (c: its '?' or ':' return; the
 * option string must start with ':', after any '+', so that a missing
 * argument is told apart) in one line, as getopt would word it; returns 1.
 * opterr must be 0, so that getopt prints nothing itself.
 */
int bad_option(int c, char **argv);

/*
 * Parses a size as qemu-img does: a decimal number with an optional binary
 * suffix (k, M, G, T, P, E in either case, powers of 1024; b or B for
 * bytes), which may have a fraction ("1.5G"), or a hexadecimal number
 * ("0x1000") without suffix.  The result is rounded down to a byte.
 * Returns false on junk, a fraction of a byte, overflow or a negative.
 */
bool parse_size(const char *s, uint64_t *out);

/* What a bad size is told, after its quoted text. */
#define SIZE_HINT "(a number of bytes, in decimal or 0x hex, with an optional suffix k, M, G, T, P or E; e.g. 1.5G)"

/* fsync of path's directory, so that a new name there is durable; -1 with
 * errno set on failure. */
int sync_dir_of(const char *path);

/* Formats like qemu: "1 GiB", "196 KiB", "512 B". */
void human_size(uint64_t v, char *buf, size_t len);

/* "raw" / "pcow" -> enum; false when unknown. */
bool parse_format(const char *s, enum pcow_format *fmt);
const char *format_name(enum pcow_format fmt);

/*
 * True when either metadata slot starts with the pcow magic: for telling a
 * damaged pcow image from another file, once the format is known.
 */
bool file_is_pcow(const char *path);

/*
 * True for a readable file (of at least a header's 128 bytes) or block
 * device that has no pcow magic: what every verb reports as "not a pcow
 * image (bad magic)".  Anything else (missing, short, a directory,
 * unreadable) is left to the open to report, as every verb does.
 */
bool file_not_pcow(const char *path);

/*
 * True when the file starts with the pcow magic: the only test to probe
 * the format with.  A torn slot 0 keeps its magic; slot 1's alone may be
 * data a guest wrote into a raw disk.
 */
bool file_starts_as_pcow(const char *path);

/* True when the file starts with the qcow2 magic ("QFI\xfb"). */
bool file_is_qcow2(const char *path);

#endif
