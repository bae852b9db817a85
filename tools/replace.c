/* replace.c -- writing a new file over an existing one (see replace.h). */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "replace.h"
#include "util.h"

/* QEMU's file driver marks what it uses of an open file with locks on
 * bytes from 100 (permissions held) to 299 (permissions not shared). */
#define QEMU_LOCK_FIRST 100
#define QEMU_LOCK_LEN 200

int lock_existing(const char *path, const char *name)
{
	struct flock pcow_lock = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_len = 1};
	struct flock qemu = {.l_type = F_WRLCK, .l_whence = SEEK_SET,
			     .l_start = QEMU_LOCK_FIRST, .l_len = QEMU_LOCK_LEN};
	int fd = open(path, O_RDWR | O_CLOEXEC | O_NONBLOCK);

	if (fd < 0) {
		die_msg("%s: could not open: %s", name, strerror(errno));
		return -1;
	}
	/* pcow's own lock, held until the new file is in place: whoever
	 * opens the old one meanwhile finds it in use. */
	if (fcntl(fd, F_OFD_SETLK, &pcow_lock) < 0) {
		if (errno == EAGAIN || errno == EACCES)
			die_msg("%s: image is in use (locked by another process)", name);
		else
			die_msg("%s: cannot lock: %s", name, strerror(errno));
		close(fd);
		return -1;
	}
	if (fcntl(fd, F_OFD_GETLK, &qemu) == 0 && qemu.l_type != F_UNLCK) {
		die_msg("%s: image is in use (locked by another process, QEMU)", name);
		close(fd);
		return -1;
	}
	return fd;
}

/* Lets the old file go (its lock with it). */
static void release(struct replace *r)
{
	if (r->lock_fd >= 0)
		close(r->lock_fd);
	r->lock_fd = -1;
	free(r->build);
	free(r->target);
	r->build = r->target = NULL;
}

int replace_begin(struct replace *r, const char *name)
{
	char *copy = NULL;
	int fd;

	memset(r, 0, sizeof(*r));
	r->name = name;
	r->lock_fd = -1;
	if (stat(name, &r->old) < 0) {
		/* A dangling link or a missing directory: building under the
		 * name reports what is wrong. */
		r->build = strdup(name);
		return r->build ? 0 : (die_msg("out of memory"), -1);
	}
	if (S_ISDIR(r->old.st_mode)) {
		die_msg("%s: could not create: %s", name, strerror(EISDIR));
		return -1;
	}
	if (!S_ISREG(r->old.st_mode)) {
		die_msg("%s: not a regular file (an image can only replace a regular file)", name);
		return -1;
	}
	r->target = realpath(name, NULL);
	if (!r->target) {
		die_msg("%s: %s", name, strerror(errno));
		return -1;
	}
	r->lock_fd = lock_existing(r->target, name);
	if (r->lock_fd < 0)
		goto fail;
	copy = strdup(r->target);
	if (!copy || asprintf(&r->build, "%s/.%s.XXXXXX", dirname(copy),
			      basename(r->target)) < 0) {
		r->build = NULL;
		die_msg("out of memory");
		goto fail;
	}
	/* A fresh name; the image is then created under it exclusively. */
	fd = mkstemp(r->build);
	if (fd < 0) {
		die_msg("%s: cannot create a temporary file next to it: %s", name,
			strerror(errno));
		goto fail;
	}
	close(fd);
	unlink(r->build);
	free(copy);
	return 0;
fail:
	free(copy);
	replace_abort(r);
	return -1;
}

int replace_commit(struct replace *r)
{
	int ret = 0;

	if (r->target) {
		/* As if the old file had been rewritten in place.  A chown
		 * only root may do fails quietly: the file is then the
		 * caller's, as any new file. */
		if (chmod(r->build, r->old.st_mode & 07777) < 0 ||
		    (chown(r->build, r->old.st_uid, r->old.st_gid) < 0 && errno != EPERM) ||
		    rename(r->build, r->target) < 0) {
			die_msg("%s: cannot replace: %s", r->name, strerror(errno));
			replace_abort(r);
			return -1;
		}
		free(r->build);
		r->build = NULL;
		ret = sync_dir_of(r->target);
		if (ret < 0)
			die_msg("%s: flush failed: %s", r->name, strerror(errno));
	}
	release(r);
	return ret;
}

void replace_abort(struct replace *r)
{
	if (r->build && r->built)
		unlink(r->build);
	release(r);
}

int replace_lib_fail(const struct replace *r)
{
	const char *m = pcow_errormsg(), *at;
	size_t n = r->build ? strlen(r->build) : 0;
	char msg[1024];
	size_t len = 0;

	/* The library names the file it was given: the temporary name means
	 * the file the user named. */
	while (n && (at = strstr(m, r->build)) && len < sizeof(msg)) {
		len += (size_t)snprintf(msg + len, sizeof(msg) - len, "%.*s%s", (int)(at - m), m,
					r->name);
		m = at + n;
	}
	if (len < sizeof(msg))
		snprintf(msg + len, sizeof(msg) - len, "%s", m);
	return fail_msg(r->name, msg);
}
