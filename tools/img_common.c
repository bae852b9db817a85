/* img_common.c -- error reporting and progress shared by pcow-img's verbs. */
#include <stdio.h>
#include <string.h>

#include "img.h"
#include "util.h"

int lib_fail(const char *file)
{
	const char *m = pcow_errormsg();
	size_t n = strlen(file);

	/* Library messages often start with the file name already. */
	if (!strncmp(m, file, n) && m[n] == ':')
		die_msg("%s", m);
	else
		die_msg("%s: %s", file, m);
	return 1;
}

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

void print_progress(uint64_t done, uint64_t total, void *opaque)
{
	double pct = total ? 100.0 * (double)done / (double)total : 100.0;

	(void)opaque;
	printf("    (%.2f/100%%)\r", pct);
	if (done >= total)
		printf("\n");
	fflush(stdout);
}
