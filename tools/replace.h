/*
 * replace.h -- writing a new image or file where one exists, as qemu-img
 * create and convert do, but never over a file in use and never leaving
 * it half-changed.
 *
 * When the name is free, the new file is built under it directly (and
 * removed if that fails).  When a file is there, it is first locked as a
 * writer would lock it, so that an image in use is refused and none can
 * start using it meanwhile; the new file is built under a temporary name
 * in the same directory and renamed over the old one once complete (with
 * the old one's mode, and owner where allowed).  A crash at any point
 * leaves either the old file or the new one, never a mix; at worst a
 * temporary ".NAME.XXXXXX" is left behind.  A symbolic link is followed:
 * the file it points to is replaced, the link stays.
 */
#ifndef PCOW_TOOLS_REPLACE_H
#define PCOW_TOOLS_REPLACE_H

#include <stdbool.h>
#include <sys/stat.h>

struct replace {
	const char *name;  /* the name the caller gave */
	char *target;      /* the file replaced (links resolved); NULL: none */
	char *build;       /* where to build the new file (no file there yet) */
	bool built;        /* set by the caller once a file is at build */
	int lock_fd;       /* the old file, holding its lock; -1: none */
	struct stat old;   /* the old file's */
};

/*
 * Prepares to write name: returns 0 with r->build set, or -1 after
 * printing one line (the file is in use, is a directory, ...).
 */
int replace_begin(struct replace *r, const char *name);

/* Puts the new file in place (a rename, made durable); -1 after one line,
 * with the build removed and the old file kept. */
int replace_commit(struct replace *r);

/* Removes what was built (if built) and keeps the old file. */
void replace_abort(struct replace *r);

/* lib_fail() for a failure while building: the library's message names
 * the temporary file, the user's message names the file they gave. */
int replace_lib_fail(const struct replace *r);

/*
 * Locks the existing file path as a writer would (format.md 6, and the
 * lock bytes QEMU takes on the files it has open): the open descriptor
 * holding the lock, or -1 after printing one line about name.  For writing
 * into an existing file without creating it (convert -n).
 */
int lock_existing(const char *path, const char *name);

#endif
