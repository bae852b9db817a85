/* image.c -- creating, opening, locking and committing images. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "image.h"
#include "layer.h"
#include "map.h"
#include "pending.h"
#include "persist.h"
#include "stripe.h"

/* An open flag of this file only (never one of pcow.h's): the image is the
 * backing chain of a read-write image, where -U does not apply. */
#define PCOW_OPEN_FOR_WRITER 0x80000000u

char *pcow_resolve_path(const char *dir, const char *name)
{
	char *out;

	if (name[0] == '/' || !dir || !dir[0])
		return strdup(name);
	if (asprintf(&out, "%s/%s", dir, name) < 0)
		return NULL;
	return out;
}

static char *dir_of(const char *path)
{
	char *copy = strdup(path), *d;

	if (!copy)
		return NULL;
	d = strdup(dirname(copy));
	free(copy);
	return d;
}

/*
 * OFD locks follow the open file, so two opens in one process conflict too.
 * -U is suggested only to a reader: a writer cannot use it (for_writer: the
 * file is opened for, or as the backing chain of, a read-write image).
 */
int pcow_lock_file(int fd, bool exclusive, bool for_writer, const char *path)
{
	struct flock fl = {
		.l_type = exclusive ? F_WRLCK : F_RDLCK,
		.l_whence = SEEK_SET,
		.l_start = 0,
		.l_len = 1,
	};

	if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
		return 0;
	if ((errno == EAGAIN || errno == EACCES) && for_writer)
		return pcow_err(-EBUSY, "%s: image is in use (locked by another process)", path);
	if (errno == EAGAIN || errno == EACCES)
		return pcow_err(-EBUSY, "%s: image is in use (locked by another process; -U to read it anyway)",
				path);
	return pcow_err_sys(-errno, "%s: cannot lock", path);
}

int pcow_image_lock(pcow_image *img)
{
	int ret = pcow_lock_file(img->fd, true, true, img->path);

	if (ret == 0)
		ret = pcow_stripes_lock(img, true);
	return ret;
}

int pcow_image_unlock(pcow_image *img)
{
	struct flock fl = {.l_type = F_UNLCK, .l_whence = SEEK_SET, .l_len = 1};

	if (fcntl(img->fd, F_OFD_SETLK, &fl) < 0)
		return pcow_err_sys(-errno, "%s: cannot unlock", img->path);
	return pcow_stripes_lock(img, false);
}

uint64_t pcow_image_required_size(const pcow_image *img,
				  const struct pcow_meta *m)
{
	uint32_t i, max = 0;

	(void)img;
	for (i = 0; i < m->layer_count; i++)
		if (m->layers[i].region > max)
			max = m->layers[i].region;
	return pcow_region_offset(m->region_base,
				  pcow_region_stride(m->data_capacity, m->block_bits),
				  max + 1);
}

void pcow_image_set_layout(pcow_image *img)
{
	img->block_size = 1ull << img->m.block_bits;
	img->nblocks = (img->m.virtual_size + img->block_size - 1) / img->block_size;
	img->span = img->m.data_capacity;
	img->stride = pcow_region_stride(img->m.data_capacity, img->m.block_bits);
	img->bitmap_span = pcow_bitmap_span(img->m.data_capacity, img->m.block_bits);
}

int pcow_image_datasync(pcow_image *img)
{
	const struct pcow_stripes *s = img->stripes;
	uint32_t i;

	for (i = 0; s && i < s->n; i++)
		if (fdatasync(s->fds[i]) < 0)
			return pcow_err_sys(-errno, "%s: flush of an extent file failed",
					    img->path);
	if (fdatasync(img->fd) < 0)
		return pcow_err_sys(-errno, "%s: flush failed", img->path);
	return 0;
}

int pcow_require_writable(pcow_image *img)
{
	if (img->rdonly)
		return pcow_err(-EACCES, "%s: image is opened read-only", img->path);
	if (img->poisoned)
		return pcow_err(-EIO, "%s: an earlier metadata update failed; reopen the image",
				img->path);
	return 0;
}

void pcow_meta_synced(pcow_image *img, int ret)
{
	if (!img->commit_unsynced)
		return;
	img->commit_unsynced = false;
	/* Neither the slot before it nor the one written is known to be the
	 * image's now: nothing more is written through this handle. */
	if (ret < 0)
		img->poisoned = true;
}

static int meta_commit(pcow_image *img, struct pcow_meta *next, bool sync)
{
	int slot = 1 - img->cur_slot, ret;
	uint64_t need = pcow_image_required_size(img, next);
	struct stat st;
	uint8_t *buf;

	if (img->poisoned)
		return pcow_require_writable(img);
	/* What is written: version 2, the dirty bit as the flags say. */
	next->version = PCOW_VERSION;
	next->incompat = pcow_meta_incompat(next);
	ret = pcow_meta_validate(next);
	if (ret == 0)
		ret = pcow_pending_persist(img);
	if (ret < 0)
		return ret;
	if (fstat(img->fd, &st) < 0)
		return pcow_err_sys(-errno, "%s: stat failed", img->path);
	/* The file must cover every region before metadata points into it. */
	if ((uint64_t)st.st_size < need) {
		ret = pcow_io_truncate(img->fd, need);
		if (ret < 0)
			return ret;
	}
	/* Everything the new metadata relies on -- the file's new size, data
	 * and copy bits written before (some persisted lazily) -- must be
	 * durable before the metadata can be.  So is a slot written unsynced
	 * before: the slot this commit overwrites is the one before that. */
	ret = pcow_io_sync(img->fd);
	pcow_meta_synced(img, ret);
	if (ret < 0)
		return ret;
	buf = malloc(PCOW_META_SLOT_SIZE);
	if (!buf)
		return pcow_err(-ENOMEM, "out of memory");
	next->generation = img->m.generation + 1;
	ret = pcow_meta_encode(next, buf, PCOW_META_SLOT_SIZE);
	if (ret >= 0) {
		img->last_commit_len = (uint32_t)ret;
		ret = pcow_io_pwrite(img->fd, buf, (uint64_t)ret,
				     PCOW_META_SLOT_OFFSET(slot));
		/* A failed write leaves at worst a torn slot, which does not
		 * count.  A failed sync after it may still have made the slot
		 * durable: neither the old metadata nor the new one is known to
		 * be the image's now, so nothing more is written through this
		 * handle. */
		if (ret == 0 && !sync)
			img->commit_unsynced = true;
		else if (ret == 0 && (ret = pcow_io_sync(img->fd)) < 0)
			img->poisoned = true;
	}
	free(buf);
	if (ret < 0)
		return ret;
	pcow_meta_free(&img->m);
	img->m = *next;
	memset(next, 0, sizeof(*next));
	img->cur_slot = slot;
	return 0;
}

int pcow_meta_commit(pcow_image *img, struct pcow_meta *next)
{
	return meta_commit(img, next, true);
}

int pcow_meta_commit_unsynced(pcow_image *img, struct pcow_meta *next)
{
	return meta_commit(img, next, false);
}

static int check_block_size(uint32_t bs)
{
	if (bs < PCOW_BLOCK_SIZE_MIN || bs > PCOW_BLOCK_SIZE_MAX || (bs & (bs - 1)))
		return pcow_err(-EINVAL, "block size %u must be a power of two from 4 KiB to 1 GiB",
				bs);
	return 0;
}

/*
 * Opens an image or a backing file.  O_NONBLOCK, because opening a FIFO (or
 * a character device) can wait forever for a peer, and a file named by an
 * untrusted image may be one; only regular files and block devices hold
 * images.  Returns the descriptor, or a negative errno.
 */
static int open_image_file(const char *path, int oflags, bool backing,
			   struct stat *st)
{
	int fd = open(path, oflags | O_CLOEXEC | O_NONBLOCK), fl, ret;

	/* A directory fails to open for writing only: the same message for
	 * readers and writers. */
	if (fd < 0 && errno == EISDIR)
		return pcow_err(-ENODEV, "%s: not a regular file or a block device", path);
	if (fd < 0)
		return pcow_err_sys(-errno, backing ? "could not open backing file '%s'"
						    : "could not open '%s'", path);
	if (fstat(fd, st) < 0) {
		ret = pcow_err_sys(-errno, "%s: stat failed", path);
	} else if (!S_ISREG(st->st_mode) && !S_ISBLK(st->st_mode)) {
		ret = pcow_err(-ENODEV, "%s: not a regular file or a block device", path);
	} else {
		fl = fcntl(fd, F_GETFL);
		if (fl >= 0 && fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) == 0)
			return fd;
		ret = pcow_err_sys(-errno, "%s: fcntl failed", path);
	}
	close(fd);
	return ret;
}

/* A block device's st_size is 0: its size is where it ends. */
static int raw_file_size(int fd, const struct stat *st, const char *path,
			 uint64_t *size)
{
	off_t end = S_ISBLK(st->st_mode) ? lseek(fd, 0, SEEK_END) : st->st_size;

	if (end < 0)
		return pcow_err_sys(-errno, "%s: cannot get the size", path);
	*size = (uint64_t)end;
	return 0;
}

static int backing_size(const char *path, const char *name, enum pcow_format fmt,
			uint64_t *size)
{
	char *dir = dir_of(path), *full;
	struct stat st;
	int ret = 0;

	if (!dir)
		return pcow_err(-ENOMEM, "out of memory");
	full = pcow_resolve_path(dir, name);
	free(dir);
	if (!full)
		return pcow_err(-ENOMEM, "out of memory");
	if (fmt == PCOW_FORMAT_PCOW) {
		pcow_image *b;

		ret = pcow_open(&b, full, PCOW_OPEN_RDONLY);
		if (ret == 0) {
			*size = b->m.virtual_size;
			pcow_close(&b);
		}
	} else {
		int fd = open_image_file(full, O_RDONLY, true, &st);

		ret = fd < 0 ? fd : raw_file_size(fd, &st, full, size);
		if (fd >= 0)
			close(fd);
	}
	free(full);
	return ret;
}

/*
 * The stripe table of a new image from the caller's options (none: not
 * striped).  The names are the caller's (m does not own them).
 */
static int stripes_of_opts(const struct pcow_create_opts *opts, struct pcow_meta *m)
{
	uint64_t s = opts->stripe_size;
	uint32_t bits = 0;
	int ret;

	if (!opts->extent_count)
		return opts->extent_nodes ?
		       pcow_err(-EINVAL, "extent file nodes given for an image without extent files") : 0;
	/* By default 2 MiB (a DAX PMD), or the smallest size that keeps the
	 * stripes of the capacity within the map's VMA budget. */
	if (!s)
		for (s = PCOW_STRIPE_SIZE_DEFAULT;
		     (m->data_capacity + s - 1) / s > PCOW_STRIPES_PER_SPAN_MAX ||
		     s < (1ull << m->block_bits); s *= 2)
			;
	if (!opts->extent_files)
		return pcow_err(-EINVAL, "extent file names missing");
	if (s & (s - 1))
		return pcow_err(-EINVAL, "stripe size %llu is not a power of two",
				(unsigned long long)s);
	while ((1ull << bits) < s)
		bits++;
	m->extent_count = opts->extent_count;
	m->extents = (char **)opts->extent_files;
	m->stripe_bits = bits;
	ret = pcow_meta_set_stripe_nodes(m, opts->extent_nodes);
	if (ret < 0)
		return ret;
	if (getrandom(m->uuid, sizeof(m->uuid), 0) != (ssize_t)sizeof(m->uuid))
		return pcow_err_sys(-errno, "cannot get random bytes for the image's UUID");
	return 0;
}

static int create_image(const char *path, const struct pcow_create_opts *opts)
{
	struct pcow_meta m = {0};
	struct pcow_layer layer = {.region = 0, .parent = PCOW_NO_PARENT};
	uint32_t bs = opts->block_size ? opts->block_size : PCOW_BLOCK_SIZE_DEFAULT;
	uint64_t size = opts->size, capacity, stride;
	uint8_t *buf = NULL;
	struct stat st;
	int fd, ret, bits = 0;

	ret = check_block_size(bs);
	if (ret < 0)
		return ret;
	while ((1u << bits) < bs)
		bits++;
	if (opts->backing_file && opts->backing_file[0]) {
		if (opts->backing_format != PCOW_FORMAT_RAW &&
		    opts->backing_format != PCOW_FORMAT_PCOW)
			return pcow_err(-EINVAL, "backing file format must be given (raw or pcow)");
		if (strlen(opts->backing_file) > PCOW_BACKING_NAME_MAX)
			return pcow_err(-ENAMETOOLONG, "backing file name too long");
		if (!(opts->flags & PCOW_CREATE_NO_BACKING_OPEN))
			ret = backing_size(path, opts->backing_file, opts->backing_format,
					   size ? &(uint64_t){0} : &size);
		else if (!size)
			ret = pcow_err(-EINVAL, "the image size must be given when the backing file is not opened");
		if (ret < 0)
			return ret;
		m.backing = (char *)opts->backing_file;
		m.backing_format = opts->backing_format;
	}
	if (size == 0)
		return pcow_err(-EINVAL, "image size must be greater than 0");
	if (size % 512)
		return pcow_err(-EINVAL, "image size %llu is not a multiple of 512",
				(unsigned long long)size);
	if (size > PCOW_MAX_VIRTUAL_SIZE)
		return pcow_err(-EFBIG, "image size %llu is too large (at most %llu)",
				(unsigned long long)size,
				(unsigned long long)PCOW_MAX_VIRTUAL_SIZE);

	capacity = pcow_data_span(size, (uint32_t)bits);
	if (opts->capacity) {
		if (opts->capacity < size)
			return pcow_err(-EINVAL, "capacity %llu is smaller than the image size %llu",
					(unsigned long long)opts->capacity,
					(unsigned long long)size);
		if (opts->capacity > PCOW_MAX_VIRTUAL_SIZE)
			return pcow_err(-EFBIG, "capacity %llu is too large (at most %llu)",
					(unsigned long long)opts->capacity,
					(unsigned long long)PCOW_MAX_VIRTUAL_SIZE);
		capacity = pcow_data_span(opts->capacity, (uint32_t)bits);
	}

	m.virtual_size = size;
	m.data_capacity = capacity;
	m.block_bits = (uint32_t)bits;
	ret = stripes_of_opts(opts, &m);
	if (ret < 0) {
		free(m.extra_header);
		return ret;
	}
	m.region_base = PCOW_DATA_OFFSET;
	m.block_bits = (uint32_t)bits;
	m.layer_count = 1;
	m.layers = &layer;
	m.active = 0;
	m.next_snapshot_id = 1;
	m.generation = 1;
	stride = pcow_region_stride(capacity, m.block_bits);

	ret = pcow_meta_validate(&m);
	fd = ret < 0 ? -1 : open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		if (ret == 0)
			ret = pcow_err_sys(-errno, "%s: cannot create", path);
		free(m.extra_header);
		return ret;
	}
	/* The extent files are complete and durable before the image file
	 * names them; a failure removes them with it. */
	ret = pcow_stripes_create(path, &m, pcow_region_offset(m.region_base, stride, 1));
	if (ret < 0) {
		close(fd);
		unlink(path);
		free(m.extra_header);
		return ret;
	}
	buf = malloc(PCOW_META_SLOT_SIZE);
	if (!buf) {
		ret = pcow_err(-ENOMEM, "out of memory");
		goto fail;
	}
	if (fstat(fd, &st) == 0 && (uint64_t)st.st_blksize > bs) {
		ret = pcow_err(-EINVAL, "block size %u is smaller than the file system's block size %lu",
			       bs, (unsigned long)st.st_blksize);
		goto fail;
	}
	ret = pcow_io_truncate(fd, pcow_region_offset(m.region_base, stride, 1));
	if (ret == -EFBIG)
		ret = pcow_err(ret, "%s: the capacity is larger than the file system's largest file",
			       path);
	if (ret == 0 && pcow_file_has_data(fd, m.region_base, stride) != 0) {
		/* Ownership is read from holes: a file system that reports none
		 * would make every block of every layer look written. */
		ret = pcow_err(-ENOTSUP, "%s: the file system does not report holes (SEEK_HOLE); pcow needs ext4, xfs, btrfs or tmpfs",
			       path);
		goto fail;
	}
	if (ret == 0)
		ret = pcow_meta_encode(&m, buf, PCOW_META_SLOT_SIZE);
	if (ret >= 0)
		ret = pcow_io_pwrite(fd, buf, (uint64_t)ret, 0);
	if (ret >= 0)
		ret = pcow_io_sync(fd);
	/* The image is durable; its name must be too. */
	if (ret >= 0)
		ret = pcow_io_sync_dir(path);
	if (ret < 0)
		goto fail;
	free(buf);
	free(m.extra_header);
	close(fd);
	return 0;
fail:
	free(buf);
	close(fd);
	unlink(path);
	pcow_stripes_unlink(path, &m);
	free(m.extra_header);
	return ret;
}

/* The sizes of struct pcow_create_opts and struct pcow_info that callers
 * built before their last fields were added pass. */
#define CREATE_OPTS_SIZE_0_1 offsetof(struct pcow_create_opts, flags)
#define CREATE_OPTS_SIZE_0_2 offsetof(struct pcow_create_opts, extent_files)
#define CREATE_OPTS_SIZE_0_3 offsetof(struct pcow_create_opts, extent_nodes)
#define INFO_SIZE_0_1 offsetof(struct pcow_info, end_offset)
#define INFO_SIZE_0_2 offsetof(struct pcow_info, extent_count)

int pcow_create(const char *path, const struct pcow_create_opts *opts)
{
	struct pcow_create_opts o = {0};

	/* An older caller's structure is copied into the current one, with
	 * the fields it does not know zero. */
	if (!opts || (opts->struct_size != sizeof(*opts) &&
		      opts->struct_size != CREATE_OPTS_SIZE_0_1 &&
		      opts->struct_size != CREATE_OPTS_SIZE_0_2 &&
		      opts->struct_size != CREATE_OPTS_SIZE_0_3))
		return pcow_err(-EINVAL, "struct pcow_create_opts: struct_size %zu is not %zu (set it to sizeof)",
				opts ? opts->struct_size : 0, sizeof(*opts));
	memcpy(&o, opts, opts->struct_size);
	return create_image(path, &o);
}

/* Reads one metadata slot; returns 0 and fills m when it is valid. */
static int read_slot(int fd, int slot, uint8_t *buf, struct pcow_meta *m,
		     bool *has_magic, uint64_t *generation)
{
	uint32_t len;
	int ret = pcow_io_pread(fd, buf, PCOW_HEADER_SIZE,
				PCOW_META_SLOT_OFFSET(slot));

	if (ret < 0)
		return ret;
	*has_magic = memcmp(buf, PCOW_MAGIC, PCOW_MAGIC_LEN) == 0;
	/* Read only the blob, not the whole slot; decode checks the length. */
	len = pcow_le32(buf + HDR_META_LENGTH);
	if (len > PCOW_HEADER_SIZE && len <= PCOW_META_SLOT_SIZE) {
		ret = pcow_io_pread(fd, buf + PCOW_HEADER_SIZE, len - PCOW_HEADER_SIZE,
				    PCOW_META_SLOT_OFFSET(slot) + PCOW_HEADER_SIZE);
		if (ret < 0)
			return ret;
	}
	return pcow_meta_decode(buf, len <= PCOW_META_SLOT_SIZE ? len : PCOW_META_SLOT_SIZE, m,
				generation);
}

/*
 * Uses the valid slot with the higher generation.  An intact slot that
 * cannot be used (a newer version, an unknown incompatible feature, broken
 * rules) is never passed over for an older one: the image would open at an
 * older state, and the next commit would overwrite the newer one.
 */
static int load_meta(pcow_image *img)
{
	struct pcow_meta m[2];
	int ret[2], i, best = -1, newer = -1;
	uint64_t gen[2] = {0, 0};
	bool magic[2];
	uint8_t *buf = malloc(PCOW_META_SLOT_SIZE);
	char msg[2][512];

	if (!buf)
		return pcow_err(-ENOMEM, "out of memory");
	for (i = 0; i < 2; i++) {
		ret[i] = read_slot(img->fd, i, buf, &m[i], &magic[i], &gen[i]);
		snprintf(msg[i], sizeof(msg[i]), "%s", pcow_errormsg());
		if (ret[i] == 0 && (best < 0 || m[i].generation > m[best].generation))
			best = i;
		if ((ret[i] == -EPROTO || ret[i] == -EUCLEAN) &&
		    (newer < 0 || gen[i] > gen[newer]))
			newer = i;
	}
	free(buf);
	/* Every commit raises the generation: two intact slots that claim
	 * the same one cannot both be what a commit wrote, and neither can
	 * be trusted over the other. */
	if (ret[0] == 0 && ret[1] == 0 && m[0].generation == m[1].generation) {
		pcow_meta_free(&m[0]);
		pcow_meta_free(&m[1]);
		return pcow_err(-EUCLEAN,
				"%s: image is corrupt: both metadata slots claim generation %llu",
				img->path, (unsigned long long)gen[0]);
	}
	if (newer >= 0 && (best < 0 || gen[newer] > m[best].generation)) {
		if (best >= 0)
			pcow_meta_free(&m[best]);
		if (ret[newer] == -EUCLEAN)
			return pcow_err(-EUCLEAN, "%s: image is corrupt: %s", img->path, msg[newer]);
		return pcow_err(-ENOTSUP, "%s: %s", img->path, msg[newer]);
	}
	if (best < 0) {
		i = (!magic[0] && magic[1]) ? 1 : 0;
		return pcow_err(ret[i], "%s: %s", img->path, msg[i]);
	}
	pcow_meta_free(&m[1 - best]);
	img->m = m[best];
	img->cur_slot = best;
	return 0;
}

static int open_backing_of(pcow_image *img, int depth, const uint64_t *ids,
			   int nids);

/* The slot in force, checked against the file as an open checks it. */
static int load_and_check(pcow_image *img)
{
	struct stat st;
	int ret = load_meta(img);

	if (ret < 0)
		return ret;
	pcow_image_set_layout(img);
	if (fstat(img->fd, &st) < 0)
		return pcow_err_sys(-errno, "%s: stat failed", img->path);
	if ((uint64_t)st.st_size < pcow_image_required_size(img, &img->m))
		return pcow_err(-EINVAL, "%s: image file is truncated (%lld bytes, needs %llu)",
				img->path, (long long)st.st_size,
				(unsigned long long)pcow_image_required_size(img, &img->m));
	return 0;
}

int pcow_image_reload(pcow_image *img)
{
	struct pcow_meta old = img->m;
	int old_slot = img->cur_slot, ret;

	memset(&img->m, 0, sizeof(img->m));
	ret = load_and_check(img);
	if (ret == 0 && (old.virtual_size != img->m.virtual_size ||
			 old.block_bits != img->m.block_bits ||
			 !old.backing != !img->m.backing ||
			 (old.backing && strcmp(old.backing, img->m.backing))))
		ret = pcow_err(-EBUSY, "%s: size, block size or backing file changed while it was inactive",
			       img->path);
	if (ret < 0) {
		pcow_meta_free(&img->m);
		img->m = old;
		img->cur_slot = old_slot;
		pcow_image_set_layout(img);
		return ret;
	}
	pcow_meta_free(&old);
	return 0;
}

int pcow_open_internal(pcow_image **out, const char *path, unsigned flags,
		       int depth, const uint64_t *chain_ids, int chain_len)
{
	pcow_image *img;
	struct stat st;
	uint64_t ids[2 * (PCOW_MAX_CHAIN_DEPTH + 1)];
	int ret, i;

	*out = NULL;
	if (flags & PCOW_OPEN_FORCE_SHARE)
		flags |= PCOW_OPEN_RDONLY;
	img = calloc(1, sizeof(*img));
	if (!img)
		return pcow_err(-ENOMEM, "out of memory");
	img->fd = -1;
	img->raw_fd = -1;
	img->open_flags = flags;
	img->inactive = flags & PCOW_OPEN_INACTIVE;
	img->rdonly = (flags & PCOW_OPEN_RDONLY) || img->inactive;
	img->depth_in_chain = depth;
	{
		/* Recursive: a write fault on the mapping may be raised by library
		 * code that already holds the lock (e.g. reading into a buffer that
		 * lies in the mapping), and the fault handler takes it again. */
		pthread_mutexattr_t attr;

		pthread_mutexattr_init(&attr);
		pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
		pthread_mutex_init(&img->lock, &attr);
		pthread_mutexattr_destroy(&attr);
	}
	img->path = strdup(path);
	img->dir = dir_of(path);
	if (!img->path || !img->dir) {
		ret = pcow_err(-ENOMEM, "out of memory");
		goto fail;
	}
	ret = open_image_file(path, img->rdonly && !img->inactive ? O_RDONLY : O_RDWR,
			      depth, &st);
	if (ret < 0)
		goto fail;
	img->fd = ret;
	for (i = 0; i < chain_len; i++)
		if (chain_ids[2 * i] == st.st_dev && chain_ids[2 * i + 1] == st.st_ino) {
			ret = pcow_err(-ELOOP, "%s: backing file loop", path);
			goto fail;
		}
	if (!(flags & (PCOW_OPEN_FORCE_SHARE | PCOW_OPEN_INACTIVE))) {
		ret = pcow_lock_file(img->fd, !img->rdonly,
				!img->rdonly || (flags & PCOW_OPEN_FOR_WRITER), path);
		if (ret < 0)
			goto fail;
	}
	if (st.st_size < (off_t)PCOW_HEADER_SIZE) {
		ret = pcow_err(-EINVAL, "%s: not a pcow image (file is only %lld bytes)",
			       path, (long long)st.st_size);
		goto fail;
	}
	ret = load_and_check(img);
	if (ret == 0)
		ret = pcow_stripes_open(img, !img->rdonly || img->inactive,
					!(flags & (PCOW_OPEN_FORCE_SHARE | PCOW_OPEN_INACTIVE)),
					!img->rdonly || (flags & PCOW_OPEN_FOR_WRITER));
	if (ret < 0)
		goto fail;
	ret = pcow_pending_recover(img);
	if (ret < 0)
		goto fail;
	if (chain_len)
		memcpy(ids, chain_ids, sizeof(uint64_t) * 2 * (size_t)chain_len);
	ids[2 * chain_len] = st.st_dev;
	ids[2 * chain_len + 1] = st.st_ino;
	if (img->m.backing && !(flags & PCOW_OPEN_NO_BACKING)) {
		ret = open_backing_of(img, depth, ids, chain_len + 1);
		if (ret < 0)
			goto fail;
	}
	*out = img;
	return 0;
fail:
	pcow_close(&img);
	return ret;
}

int pcow_open(pcow_image **out, const char *path, unsigned flags)
{
	return pcow_open_internal(out, path, flags & ~PCOW_OPEN_FOR_WRITER, 0, NULL, 0);
}

static int open_raw(const char *full, unsigned flags, int *fd_out,
		    uint64_t *size)
{
	struct stat st;
	int fd = open_image_file(full, O_RDONLY, true, &st), ret = 0;

	if (fd < 0)
		return fd;
	if (!(flags & PCOW_OPEN_FORCE_SHARE))
		ret = pcow_lock_file(fd, false, flags & PCOW_OPEN_FOR_WRITER, full);
	if (ret == 0)
		ret = raw_file_size(fd, &st, full, size);
	if (ret < 0) {
		close(fd);
		return ret;
	}
	*fd_out = fd;
	return 0;
}

static int open_backing_chain(pcow_image *img, const char *name,
			      enum pcow_format fmt, int depth, const uint64_t *ids,
			      int nids, pcow_image **pcow_out, int *raw_fd,
			      uint64_t *raw_size, char **resolved)
{
	unsigned flags = PCOW_OPEN_RDONLY |
			 (img->open_flags & (PCOW_OPEN_FORCE_SHARE | PCOW_OPEN_FOR_WRITER)) |
			 (img->rdonly ? 0 : PCOW_OPEN_FOR_WRITER);
	char *full;
	int ret, i;

	*pcow_out = NULL;
	*raw_fd = -1;
	*resolved = NULL;
	if (depth + 1 > PCOW_MAX_CHAIN_DEPTH)
		return pcow_err(-ELOOP, "%s: backing chain deeper than %d", img->path,
				PCOW_MAX_CHAIN_DEPTH);
	full = pcow_resolve_path(img->dir, name);
	if (!full)
		return pcow_err(-ENOMEM, "out of memory");
	if (fmt == PCOW_FORMAT_PCOW) {
		ret = pcow_open_internal(pcow_out, full, flags, depth + 1, ids, nids);
	} else {
		struct stat st;

		ret = 0;
		if (stat(full, &st) == 0)
			for (i = 0; i < nids; i++)
				if (ids[2 * i] == st.st_dev && ids[2 * i + 1] == st.st_ino)
					ret = pcow_err(-ELOOP, "%s: backing file loop", full);
		if (ret == 0)
			ret = open_raw(full, flags, raw_fd, raw_size);
	}
	if (ret < 0) {
		free(full);
		return ret;
	}
	*resolved = full;
	return 0;
}

static int open_backing_of(pcow_image *img, int depth, const uint64_t *ids,
			   int nids)
{
	return open_backing_chain(img, img->m.backing, img->m.backing_format, depth,
				  ids, nids, &img->backing, &img->raw_fd,
				  &img->raw_size, &img->backing_path);
}

int pcow_backing_open(pcow_image *img, const char *name, enum pcow_format fmt,
		      pcow_image **pcow_out, int *raw_fd, uint64_t *raw_size,
		      char **resolved)
{
	struct stat st;
	uint64_t ids[2];

	if (fstat(img->fd, &st) < 0)
		return pcow_err_sys(-errno, "%s: stat failed", img->path);
	ids[0] = st.st_dev;
	ids[1] = st.st_ino;
	return open_backing_chain(img, name, fmt, img->depth_in_chain, ids, 1,
				  pcow_out, raw_fd, raw_size, resolved);
}

void pcow_backing_close(pcow_image **pcow, int *raw_fd, char **resolved)
{
	if (*pcow)
		pcow_close(pcow);
	if (*raw_fd >= 0)
		close(*raw_fd);
	*raw_fd = -1;
	free(*resolved);
	*resolved = NULL;
}

int pcow_close(pcow_image **pimg)
{
	pcow_image *img = *pimg;
	int ret = 0;

	if (!img)
		return 0;
	/* The caller's map handle would outlive the image: refuse instead. */
	pthread_mutex_lock(&img->lock);
	ret = img->map ? pcow_err(-EBUSY, "%s: image is mapped; delete the map first",
				  img->path) : 0;
	pthread_mutex_unlock(&img->lock);
	if (ret < 0)
		return ret;
	(void)pcow_pending_set_interval(img, 0);
	if (img->fd >= 0 && !img->rdonly && !img->poisoned)
		ret = pcow_image_record(img);
	if (img->fd >= 0 && !img->rdonly && ret == 0)
		ret = pcow_image_datasync(img);
	pcow_pending_release(img);
	free(img->clean_slot);
	pcow_backing_close(&img->backing, &img->raw_fd, &img->backing_path);
	pcow_stripes_close(img);
	if (img->fd >= 0)
		close(img->fd);
	pcow_meta_free(&img->m);
	pthread_mutex_destroy(&img->lock);
	free(img->path);
	free(img->dir);
	free(img);
	*pimg = NULL;
	return ret;
}

pcow_image *pcow_backing_image(pcow_image *img)
{
	return img->backing;
}

const char *pcow_extent_file(pcow_image *img, uint32_t i)
{
	return i < img->m.extent_count ? img->m.extents[i] : NULL;
}

int pcow_extent_node(pcow_image *img, uint32_t i, int *applied)
{
	uint32_t node = pcow_meta_stripe_node(&img->m, i);

	if (i >= img->m.extent_count)
		return -ENOENT;
	if (applied)
		*applied = img->stripes && img->stripes->nodes[i] >= 0;
	return node == PCOW_NODE_NONE ? -1 : (int)node;
}

/* Layers a read of img looks through (struct pcow_info.view_layers). */
static uint32_t view_layers(const pcow_image *img)
{
	uint32_t n = 0, l;

	for (l = img->m.active; l != PCOW_NO_PARENT; l = img->m.layers[l].parent)
		n++;
	if (img->backing)
		n += view_layers(img->backing);
	else if (img->raw_fd >= 0)
		n++;
	return n;
}

int pcow_get_info(pcow_image *img, struct pcow_info *out)
{
	size_t size = out->struct_size;
	struct pcow_info full, *info = &full;
	struct stat st;
	int ret;

	/* An older caller gets the fields its structure has. */
	if (size != sizeof(*info) && size != INFO_SIZE_0_1 && size != INFO_SIZE_0_2)
		return pcow_err(-EINVAL, "struct pcow_info: struct_size %zu is not %zu (set it to sizeof)",
				size, sizeof(*info));
	memset(info, 0, sizeof(*info));
	pthread_mutex_lock(&img->lock);
	info->virtual_size = img->m.virtual_size;
	info->capacity = img->m.data_capacity;
	info->block_size = (uint32_t)img->block_size;
	info->format_version = img->m.version;
	info->snapshot_count = img->m.snapshot_count;
	info->layer_count = img->m.layer_count;
	info->backing_format = img->m.backing_format;
	info->incompatible_features = img->m.incompat;
	info->compatible_features = img->m.compat;
	info->autoclear_features = img->m.autoclear;
	if (img->m.backing) {
		char *full = pcow_resolve_path(img->dir, img->m.backing);

		snprintf(info->backing_file, sizeof(info->backing_file), "%s",
			 img->m.backing);
		snprintf(info->backing_file_full, sizeof(info->backing_file_full),
			 "%s", full ? full : img->m.backing);
		free(full);
	}
	if (fstat(img->fd, &st) == 0)
		info->actual_size = (uint64_t)st.st_blocks * 512;
	/* A striped image's data is in its extent files. */
	for (uint32_t i = 0; img->stripes && i < img->m.extent_count; i++)
		if (fstat(img->stripes->fds[i], &st) == 0)
			info->actual_size += (uint64_t)st.st_blocks * 512;
	ret = pcow_layer_count_blocks(img, img->m.active, &info->allocated_blocks);
	info->end_offset = pcow_image_required_size(img, &img->m);
	info->view_layers = view_layers(img);
	info->inactive = img->inactive;
	info->extent_count = img->m.extent_count;
	info->stripe_size = img->m.extent_count ? 1ull << img->m.stripe_bits : 0;
	pthread_mutex_unlock(&img->lock);
	memcpy(out, info, size);
	out->struct_size = size;
	return ret;
}

void pcow_set_progress(pcow_image *img, pcow_progress_fn fn, void *opaque)
{
	img->progress_fn = fn;
	img->progress_opaque = opaque;
}
