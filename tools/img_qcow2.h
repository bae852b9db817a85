/* img_qcow2.h -- convert to and from qcow2 through qemu-img. */
#ifndef PCOW_TOOLS_IMG_QCOW2_H
#define PCOW_TOOLS_IMG_QCOW2_H

#include <stdbool.h>

/* What `pcow-img convert` was asked for. */
struct qcow2_convert {
	int (*convert)(int argc, char **argv); /* the raw/pcow convert verb */
	const char *in, *out;
	const char *in_fmt;  /* as given with -f, or NULL */
	const char *out_fmt; /* as given with -O */
	const char *options; /* -o, or NULL */
	bool progress, quiet, force_share;
	bool no_backing; /* --no-backing: for a pcow input only */
	bool no_create;  /* -n: write into the existing output */
};

/* True when the conversion reads or writes qcow2 (-f/-O qcow2, or an input
 * with the qcow2 magic and no -f). */
bool convert_involves_qcow2(const char *in, const char *in_fmt, const char *out_fmt);

/*
 * Converts through a sparse temporary raw file that qemu-img reads or
 * writes; the pcow side is the ordinary convert.  Returns the exit code;
 * on failure prints one line and leaves neither the output nor the
 * temporary file behind.
 */
int convert_qcow2(const struct qcow2_convert *c);

/*
 * Lets qemu-img answer a verb for a format pcow-img does not read itself
 * (info -f qcow2, measure -O qcow2): runs "qemu-img ARGV..." with its
 * output shown, its error turned into one line naming file.  Returns the
 * exit code.
 */
int qemu_img_answers(const char *file, char **argv);

/* measure -O qcow2 of a pcow image: qemu-img measures its content, read
 * from a sparse temporary raw copy.  Returns the exit code. */
int measure_qcow2_of_pcow(const char *in, const char *options, const char *output,
			  bool force_share);

#endif
