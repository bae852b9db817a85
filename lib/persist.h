/*
 * persist.h -- the one path by which libpcow changes an image file.
 *
 * Every store, hole punch, size change and flush of image metadata or data
 * goes through these functions, so that tests can record, reorder, drop or
 * fail them (crash-state enumeration, I/O error injection).
 */
#ifndef PCOW_PERSIST_H
#define PCOW_PERSIST_H

#include <stddef.h>
#include <stdint.h>

enum pcow_io_op {
	PCOW_IO_WRITE,
	PCOW_IO_PUNCH,
	PCOW_IO_TRUNCATE,
	PCOW_IO_SYNC,
};

/*
 * A test hook, called before each operation.  Returning a negative errno
 * fails the operation with that error instead of performing it.
 */
typedef int (*pcow_io_hook_fn)(enum pcow_io_op op, int fd, uint64_t offset,
			       uint64_t len, const void *buf, void *opaque);
void pcow_io_set_hook(pcow_io_hook_fn fn, void *opaque);

/* Each returns 0 or a negative errno (and sets the error message). */
int pcow_io_pwrite(int fd, const void *buf, uint64_t len, uint64_t offset);
int pcow_io_pread(int fd, void *buf, uint64_t len, uint64_t offset);
int pcow_io_punch(int fd, uint64_t offset, uint64_t len);
int pcow_io_truncate(int fd, uint64_t size);
/* A punch of fd itself, even when it is a striped image's (stripe.h). */
int pcow_io_punch_file(int fd, uint64_t offset, uint64_t len);
int pcow_io_sync(int fd);

/* Makes a new name in path's directory durable (fsync of the directory). */
int pcow_io_sync_dir(const char *path);

/* A count of the changes made through these functions (any file): what
 * was read before it moved may be stale. */
uint64_t pcow_io_epoch(void);

/* Makes stores to a MAP_SYNC (DAX) mapping durable: flush + fence. */
void pcow_persist_cachelines(const void *addr, size_t len);

#endif
