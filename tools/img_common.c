/* img_common.c -- error reporting and progress shared by pcow-img's verbs. */
#include <stdio.h>

#include "img.h"
#include "util.h"

/* Ends a verb that changed an image: report a failure, else close (which
 * flushes) and report that failing. */
int finish(pcow_image **img, const char *file, int ret)
{
	if (ret < 0) {
		lib_fail(file);
		pcow_close(img);
		return 1;
	}
	return pcow_close(img) < 0 ? lib_fail(file) : 0;
}

/*
 * Prints when the whole percentage changes (at most ~100 lines however many
 * steps an operation reports) and 100% once, ending the line, even when a
 * verb's operations each report their end.
 */
void print_progress(uint64_t done, uint64_t total, void *opaque)
{
	const struct progress_steps *steps = opaque;
	static int shown = -1;
	static bool ended;
	double part = total ? (double)done / (double)total : 1.0;
	int pct;

	if (part > 1.0)
		part = 1.0;
	if (steps && steps->count > 1)
		part = ((double)steps->step + part) / (double)steps->count;
	pct = (int)(part * 100.0);
	if (ended || pct == shown)
		return;
	shown = pct;
	ended = pct >= 100;
	printf("    (%.2f/100%%)\r%s", part * 100.0, ended ? "\n" : "");
	fflush(stdout);
}
