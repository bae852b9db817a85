/*
 * img_convert -- copy the content of an image into another, as qemu-img
 * convert does: into a new file (which replaces an existing one, unless
 * that is in use), or with -n into an existing image or file, which must
 * be large enough and is overwritten over the input's size.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "img.h"
#include "img_qcow2.h"
#include "img_source.h"
#include "replace.h"
#include "util.h"

/* Where convert writes: a pcow image or a raw file. */
struct output {
	const char *name;       /* for messages */
	pcow_image *img;
	int fd;
	uint64_t size;          /* of an existing output (-n) */
	bool existing;          /* -n: ranges without data are zeroed */
	uint8_t *zeros;         /* a chunk of zeros, for -n */
};

/* The output the caller named already exists (-n): open it for writing,
 * with the lock a writer takes. */
static int output_open_existing(struct output *o, const char *fmt)
{
	struct stat st;

	o->existing = true;
	if (!strcmp(fmt, "pcow")) {
		struct pcow_info info = {.struct_size = sizeof(info)};

		if (pcow_open(&o->img, o->name, 0) < 0 || pcow_get_info(o->img, &info) < 0)
			return lib_fail(o->name), -1;
		o->size = info.virtual_size;
		return 0;
	}
	o->fd = lock_existing(o->name, o->name);
	if (o->fd < 0)
		return -1;
	if (fstat(o->fd, &st) < 0) {
		die_msg("%s: %s", o->name, strerror(errno));
		return -1;
	}
	if (S_ISBLK(st.st_mode)) {
		off_t end = lseek(o->fd, 0, SEEK_END);

		o->size = end < 0 ? 0 : (uint64_t)end;
	} else if (S_ISREG(st.st_mode)) {
		o->size = (uint64_t)st.st_size;
	} else {
		die_msg("%s: not a regular file or a block device", o->name);
		return -1;
	}
	return 0;
}

/* Creates the output under r->build: an empty pcow image of opts, or a
 * sparse raw file of size bytes. */
static int output_create(struct output *o, struct replace *r, const char *fmt,
			 const struct pcow_create_opts *opts, uint64_t size)
{
	if (!strcmp(fmt, "pcow")) {
		if (pcow_create(r->build, opts) < 0)
			return replace_lib_fail(r), -1;
		r->built = true;
		if (pcow_open(&o->img, r->build, 0) < 0)
			return replace_lib_fail(r), -1;
		return 0;
	}
	o->fd = open(r->build, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (o->fd < 0) {
		die_msg("%s: could not create: %s", o->name, strerror(errno));
		return -1;
	}
	r->built = true;
	if (ftruncate(o->fd, (off_t)size) < 0) {
		die_msg("%s: %s", o->name, strerror(errno));
		return -1;
	}
	return 0;
}

static int output_write(struct output *o, const void *buf, uint64_t n, uint64_t pos)
{
	if (o->img) {
		if (pcow_write(o->img, buf, n, pos) < 0)
			return lib_fail(o->name), -1;
	} else if (pwrite(o->fd, buf, n, (off_t)pos) != (ssize_t)n) {
		die_msg("%s: write failed: %s", o->name, strerror(errno ? errno : EIO));
		return -1;
	}
	return 0;
}

/*
 * Makes [pos, pos + n) read as zeros in an output that held data before
 * (-n): a new output already does.  Whole blocks of a pcow image are
 * discarded (which hides what a snapshot or backing file has there),
 * holes are punched in a raw file; what cannot be, is written.
 */
static int output_zero(struct output *o, uint64_t pos, uint64_t n, uint64_t block)
{
	if (!o->existing)
		return 0;
	if (o->img && pos % block == 0 && n == block)
		return pcow_discard(o->img, pos, n) < 0 ? (lib_fail(o->name), -1) : 0;
	if (!o->img && fallocate(o->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				 (off_t)pos, (off_t)n) == 0)
		return 0;
	return output_write(o, o->zeros, n, pos);
}

static int output_flush(struct output *o)
{
	if (o->img)
		return pcow_flush(o->img) < 0 ? (lib_fail(o->name), -1) : 0;
	if (fdatasync(o->fd) < 0) {
		die_msg("%s: flush failed: %s", o->name, strerror(errno));
		return -1;
	}
	return 0;
}

static void output_close(struct output *o)
{
	if (o->img)
		pcow_close(&o->img);
	if (o->fd >= 0)
		close(o->fd);
	o->fd = -1;
	free(o->zeros);
	o->zeros = NULL;
}

/* Copies src into o, chunk bytes at a time. */
static int copy_content(struct img_source *src, struct output *o, uint64_t chunk,
			bool progress)
{
	uint8_t *buf = malloc(chunk);
	uint64_t pos;
	int ret = -1;

	o->zeros = o->existing ? calloc(1, chunk) : NULL;
	if (!buf || (o->existing && !o->zeros)) {
		die_msg("out of memory");
		goto out;
	}
	for (pos = 0; pos < src->size; pos += chunk) {
		uint64_t n = src->size - pos < chunk ? src->size - pos : chunk, run;
		bool data;

		/* What stores nothing is not even read; zero blocks read are
		 * left unallocated in the output too. */
		if (img_source_status(src, pos, n, &run, &data) < 0)
			goto out;
		if (data || run < n) {
			if (img_source_read(src, buf, n, pos) < 0)
				goto out;
			data = first_nonzero(buf, n) < n;
		}
		if (data ? output_write(o, buf, n, pos) < 0 : output_zero(o, pos, n, chunk) < 0)
			goto out;
		if (progress)
			print_progress(pos + n, src->size, NULL);
	}
	ret = 0;
out:
	free(buf);
	return ret;
}

/* Whether two names are one file. */
static bool same_file(const char *a, const char *b)
{
	struct stat sa, sb;

	return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
	       sa.st_ino == sb.st_ino;
}

/* -o help for the output format. */
static int convert_options_help(const char *ofmt)
{
	if (!strcmp(ofmt, "qcow2")) {
		char *args[] = {"convert", "-O", "qcow2", "-o", "help", NULL};

		return qemu_img_answers(NULL, args);
	}
	if (!strcmp(ofmt, "pcow"))
		print_options_help("Supported pcow options:", OPTS_CONVERT);
	else if (!strcmp(ofmt, "raw"))
		printf("Supported raw options:\n");
	else
		FAIL(NULL, "unsupported output format '%s' (raw, pcow or qcow2)", ofmt);
	return 0;
}

int cmd_convert(int argc, char **argv)
{
	const char *ifmt = NULL, *ofmt = NULL, *options = NULL, *in, *out;
	struct pcow_create_opts opts = {.struct_size = sizeof(opts)};
	struct img_source src = {.fd = -1};
	struct output o = {.fd = -1};
	struct replace r = {.lock_fd = -1};
	int c, rc = 1;
	bool progress = false, quiet = false, no_create = false, help = false, ofmt_given;
	unsigned share = 0, no_backing = 0;
	char *ob = NULL, *obf = NULL;
	static const struct option longopts[] = {
		{"no-backing", no_argument, 0, 'N'},
		{0}};

	while ((c = getopt_long(argc, argv, "+:f:O:o:npqU", longopts, NULL)) != -1) {
		switch (c) {
		case 'N': no_backing = PCOW_OPEN_NO_BACKING; break;
		case 'f': ifmt = optarg; break;
		case 'O': ofmt = optarg; break;
		case 'o':
			if (is_help_option(optarg))
				help = true;
			options = optarg;
			break;
		case 'n': no_create = true; break;
		case 'p': progress = true; break;
		case 'U': share = PCOW_OPEN_FORCE_SHARE; break;
		case 'q': quiet = true; break;
		default: return bad_option(c, argv);
		}
	}
	ofmt_given = ofmt != NULL;
	if (!ofmt)
		ofmt = "raw";
	if (help)
		return convert_options_help(ofmt);
	/* As qemu-img: no progress in quiet mode. */
	if (quiet)
		progress = false;
	if (optind != argc - 2)
		FAIL(NULL, "convert: expecting an input and an output file name");
	in = argv[optind];
	out = argv[optind + 1];
	if (no_create && options)
		FAIL(out, "%s: -o has no effect when skipping image creation (-n)", out);
	/* Raw bytes written over an image because -O was left out (it means
	 * raw) would destroy it. */
	if (no_create && !ofmt_given && (file_is_pcow(out) || file_is_qcow2(out)))
		FAIL(out, "%s: is a %s image: give its format with -O (-n writes raw without -O)",
		     out, file_is_qcow2(out) ? "qcow2" : "pcow");
	if (same_file(in, out))
		FAIL(out, "%s: is the input too: convert writes into another file", out);
	if (convert_involves_qcow2(in, ifmt, ofmt)) {
		struct qcow2_convert q = {
			.convert = cmd_convert, .in = in, .out = out, .in_fmt = ifmt,
			.out_fmt = ofmt, .options = options, .progress = progress,
			.quiet = quiet, .force_share = share != 0,
			.no_backing = no_backing != 0, .no_create = no_create,
		};

		return convert_qcow2(&q);
	}
	if (strcmp(ofmt, "raw") && strcmp(ofmt, "pcow"))
		FAIL(out, "%s: unsupported output format '%s' (raw, pcow or qcow2)", out, ofmt);
	if (ifmt && strcmp(ifmt, "raw") && strcmp(ifmt, "pcow"))
		FAIL(in, "%s: unsupported input format '%s' (raw, pcow or qcow2)", in, ifmt);
	if (options && parse_create_options(out, options, &opts, &ob, &obf) < 0)
		return 1;
	if (ob || obf || opts.size) {
		free(ob);
		free(obf);
		FAIL(out, "%s: convert takes neither a backing file nor a size", out);
	}
	if (img_source_open(&src, in, ifmt, share | no_backing) < 0)
		goto out;
	o.name = out;
	if (no_create) {
		if (output_open_existing(&o, ofmt) < 0)
			goto out;
		if (o.size < src.size) {
			die_msg("%s: output file is smaller than input file", out);
			goto out;
		}
	} else {
		opts.size = (src.size + 511) / 512 * 512;
		if (replace_begin(&r, out) < 0)
			goto out;
		if (output_create(&o, &r, ofmt, &opts, src.size) < 0)
			goto out;
	}
	if (o.img) {
		struct pcow_info info = {.struct_size = sizeof(info)};

		pcow_get_info(o.img, &info);
		opts.block_size = info.block_size;
	}
	if (copy_content(&src, &o, opts.block_size ? opts.block_size : PCOW_BLOCK_SIZE_DEFAULT,
			 progress) < 0 ||
	    output_flush(&o) < 0)
		goto out;
	output_close(&o);
	/* A new name is made durable with its directory. */
	if (!no_create && !r.target && sync_dir_of(out) < 0) {
		die_msg("%s: flush failed: %s", out, strerror(errno));
		goto out;
	}
	if (!no_create && replace_commit(&r) < 0)
		goto out;
	rc = 0;
out:
	img_source_close(&src);
	output_close(&o);
	/* Never leave a half-written new output behind. */
	if (rc && !no_create)
		replace_abort(&r);
	return rc;
}
