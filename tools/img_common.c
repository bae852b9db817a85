/* img_common.c -- error reporting and progress shared by pcow-img's verbs. */
#include <stdio.h>
#include <string.h>

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

bool is_help_option(const char *opts)
{
	size_t n;

	/* As qemu-img: "help" or "?" anywhere in the list. */
	for (; *opts; opts += n + (opts[n] == ',')) {
		n = strcspn(opts, ",");
		if ((n == 4 && !strncmp(opts, "help", 4)) || (n == 1 && opts[0] == '?'))
			return true;
	}
	return false;
}

void print_options_help(const char *title, unsigned verb)
{
	static const struct {
		const char *key, *desc;
		unsigned verbs;
	} opts[] = {
		{"backing_file=<str>", "File name of a base image (\"\" removes it)",
		 OPTS_AMEND},
		{"backing_file=<str>", "File name of a base image", OPTS_CREATE},
		{"backing_fmt=<str>", "Image format of the base image (raw or pcow)",
		 OPTS_CREATE | OPTS_AMEND},
		{"block_size=<size>", "Block size (a power of two from 4 KiB to 1 GiB; 64 KiB)",
		 OPTS_CREATE | OPTS_CONVERT},
		{"capacity=<size>", "Size the image can grow to without moving its data",
		 OPTS_CREATE | OPTS_CONVERT},
		{"cluster_size=<size>", "The same as block_size", OPTS_CREATE | OPTS_CONVERT},
		{"size=<size>", "Virtual disk size", OPTS_CREATE | OPTS_AMEND},
		{"stripe_nodes=<nodes>", "Host NUMA node of each extent file (N1:N2[:...]; a node or none)",
		 OPTS_CREATE | OPTS_CONVERT},
		{"stripe_size=<size>", "Stripe size of a striped image (a power of two; 2 MiB)",
		 OPTS_CREATE | OPTS_CONVERT},
		{"stripes=<dirs>", "Stripe the data over one extent file per directory (DIR1:DIR2[:...])",
		 OPTS_CREATE | OPTS_CONVERT},
	};
	size_t i;

	printf("%s\n", title);
	for (i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
		if (opts[i].verbs & verb)
			printf("  %-22s - %s\n", opts[i].key, opts[i].desc);
}
