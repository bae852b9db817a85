/* img.h -- what the verbs of pcow-img share. */
#ifndef PCOW_TOOLS_IMG_H
#define PCOW_TOOLS_IMG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "pcow.h"

/* Fails with one line naming the file, as every verb does. */
#define FAIL(file, ...)                                                       \
	do {                                                                  \
		die_msg(__VA_ARGS__);                                         \
		(void)(file);                                                 \
		return 1;                                                     \
	} while (0)

/* Ends a verb that changed an image: report a failure, else close (which
 * flushes) and report that failing. */
int finish(pcow_image **img, const char *file, int ret);

void usage(FILE *f);

/* A verb made of several operations that each report progress from 0 to
 * all: operation step (from 0) of count. */
struct progress_steps {
	unsigned step, count;
};

/* A pcow_progress_fn printing qemu-img's "    (12.34/100%)" line; opaque
 * is NULL or a struct progress_steps. */
void print_progress(uint64_t done, uint64_t total, void *opaque);

/* Whether a -o list asks for help ("help" or "?" among its items). */
bool is_help_option(const char *opts);

/* Which verb's -o options print_options_help lists (convert's are also
 * measure's). */
#define OPTS_CREATE 0x1u
#define OPTS_CONVERT 0x2u
#define OPTS_AMEND 0x4u

/* Lists the -o options of verb under title, as qemu-img's -o help. */
void print_options_help(const char *title, unsigned verb);

/*
 * Parses create's -o list into o (block_size, capacity, size; backing_file
 * and backing_fmt into *backing and *backing_fmt, to be freed); prints one
 * line naming file and returns -1 when it is wrong.
 */
int parse_create_options(const char *file, const char *opts,
			 struct pcow_create_opts *o, char **backing,
			 char **backing_fmt);

/* At most this many stripe directories (the format's limit). */
#define PCOW_EXTENTS_ALLOWED 64u

/* Sets o's extent files from "-o stripes=DIR1:DIR2[:...]" for the image
 * file; prints one line and returns -1 when they are wrong. */
int stripe_names(const char *file, const char *dirs, struct pcow_create_opts *o);

/* The largest NUMA node the format keeps. */
#define PCOW_NODE_MAX_ALLOWED 1023u

/* Sets o's extent file nodes from "-o stripe_nodes=N1:N2[:...]"; returns
 * how many, or prints one line and returns -1 when they are wrong. */
int stripe_nodes(const char *file, const char *list, struct pcow_create_opts *o);

int cmd_convert(int argc, char **argv);
int cmd_commit(int argc, char **argv);
int cmd_resize(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_measure(int argc, char **argv);
int cmd_amend(int argc, char **argv);

#endif
