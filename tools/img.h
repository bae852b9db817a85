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

/* Prints the library's message for file; returns 1. */
int lib_fail(const char *file);

/* Ends a verb that changed an image: report a failure, else close (which
 * flushes) and report that failing. */
int finish(pcow_image **img, const char *file, int ret);

void usage(FILE *f);

/* A pcow_progress_fn printing qemu-img's "    (12.34/100%)" line. */
void print_progress(uint64_t done, uint64_t total, void *opaque);

int cmd_commit(int argc, char **argv);
int cmd_resize(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_measure(int argc, char **argv);
int cmd_amend(int argc, char **argv);

#endif
