/* img_source.c -- reading a raw file or a pcow image alike. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "img.h"
#include "img_source.h"
#include "util.h"

int img_source_open(struct img_source *s, const char *path, const char *fmt,
		    unsigned pcow_flags)
{
	bool probed = !fmt;
	struct stat st;

	*s = (struct img_source){.path = path, .fd = -1};
	if (!fmt) {
		if (file_is_qcow2(path)) {
			die_msg("%s: qcow2 images are read by qemu-img; convert the image first (pcow-img convert -f qcow2)",
				path);
			return -1;
		}
		fmt = file_starts_as_pcow(path) ? "pcow" : "raw";
	}
	if (!strcmp(fmt, "pcow")) {
		struct pcow_info info = {.struct_size = sizeof(info)};

		if (pcow_open(&s->img, path, pcow_flags | PCOW_OPEN_RDONLY) < 0 ||
		    pcow_get_info(s->img, &info) < 0) {
			lib_fail(path);
			pcow_close(&s->img);
			return -1;
		}
		s->size = info.virtual_size;
		return 0;
	}
	if (strcmp(fmt, "raw")) {
		die_msg("%s: unknown format '%s' (raw or pcow)", path, fmt);
		return -1;
	}
	s->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (s->fd < 0 || fstat(s->fd, &st) < 0) {
		die_msg("%s: could not open: %s", path, strerror(errno));
		img_source_close(s);
		return -1;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		/* As the library says it of an image. */
		die_msg("%s: not a regular file or a block device", path);
		img_source_close(s);
		return -1;
	}
	if (S_ISBLK(st.st_mode)) {
		off_t end = lseek(s->fd, 0, SEEK_END);

		if (end < 0) {
			die_msg("%s: cannot get the size: %s", path, strerror(errno));
			img_source_close(s);
			return -1;
		}
		s->size = (uint64_t)end;
	} else {
		s->size = (uint64_t)st.st_size;
	}
	/* As qemu-img words it: a raw guess is worth a warning, since the
	 * content of a raw file is whatever a guest wrote. */
	if (probed)
		fprintf(stderr,
			"WARNING: Image format was not specified for '%s' and probing guessed raw.\n"
			"         Specify the 'raw' format explicitly (-f raw) to remove this warning.\n",
			path);
	return 0;
}

void img_source_close(struct img_source *s)
{
	if (s->img)
		pcow_close(&s->img);
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
}

int img_source_read(struct img_source *s, void *buf, uint64_t len, uint64_t off)
{
	uint8_t *p = buf;

	if (s->img) {
		if (pcow_read(s->img, buf, len, off) < 0) {
			lib_fail(s->path);
			return -1;
		}
		return 0;
	}
	while (len) {
		ssize_t n = pread(s->fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			die_msg("%s: error while reading offset %llu: %s", s->path,
				(unsigned long long)off, strerror(errno));
			return -1;
		}
		if (n == 0) {
			/* The file shrank under us: what is gone reads as zeros. */
			memset(p, 0, len);
			break;
		}
		p += n;
		len -= (uint64_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int raw_status(struct img_source *s, uint64_t off, uint64_t len,
		      uint64_t *run, bool *data)
{
	off_t d = lseek(s->fd, (off_t)off, SEEK_DATA), h;

	*run = len;
	*data = true;
	if (d < 0) {
		if (errno == ENXIO) {
			*data = false; /* a hole up to the end of the file */
			return 0;
		}
		if (errno == EINVAL || errno == ENOTSUP)
			return 0; /* no hole reporting: everything is data */
		die_msg("%s: cannot find data at offset %llu: %s", s->path,
			(unsigned long long)off, strerror(errno));
		return -1;
	}
	if ((uint64_t)d > off) {
		*data = false;
		if ((uint64_t)d - off < len)
			*run = (uint64_t)d - off;
		return 0;
	}
	h = lseek(s->fd, (off_t)off, SEEK_HOLE);
	if (h > (off_t)off && (uint64_t)h - off < len)
		*run = (uint64_t)h - off;
	return 0;
}

int img_source_status(struct img_source *s, uint64_t off, uint64_t len,
		      uint64_t *run, bool *data)
{
	struct pcow_block_status st;

	if (!s->img)
		return raw_status(s, off, len, run, data);
	if (pcow_block_status(s->img, off, len, &st) < 0) {
		lib_fail(s->path);
		return -1;
	}
	*run = st.length;
	*data = st.flags & PCOW_STATUS_DATA;
	return 0;
}

uint64_t first_nonzero(const uint8_t *p, uint64_t n)
{
	uint64_t i = 0;

	/* Whole words first: this runs over every byte a compare reads. */
	for (; i + 8 <= n; i += 8) {
		uint64_t w;

		memcpy(&w, p + i, 8);
		if (w)
			break;
	}
	for (; i < n; i++)
		if (p[i])
			return i;
	return n;
}
