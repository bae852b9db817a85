/*
 * img_stripes.c -- create's "-o stripes=DIR1:DIR2[:...]": the names of a
 * striped image's extent files, one per directory.
 */
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "img.h"
#include "util.h"

/*
 * Extent file i is "DIRi/BASENAME.i".  The library resolves a relative
 * name against the image's directory, the user meant one relative to the
 * working directory: the same when the image is named without a
 * directory, else the directory is made absolute.
 */
int stripe_names(const char *file, const char *dirs, struct pcow_create_opts *o)
{
	char *copy = strdup(dirs), *fcopy = strdup(file), *save = NULL, *tok;
	const char **names = calloc(PCOW_EXTENTS_ALLOWED + 1, sizeof(*names));
	bool same_dir = !strchr(file, '/');
	uint32_t n = 0;
	int ret = 0;

	if (!copy || !fcopy || !names) {
		die_msg("%s: out of memory", file);
		ret = -1;
		goto out;
	}
	for (tok = strtok_r(copy, ":", &save); tok && ret == 0;
	     tok = strtok_r(NULL, ":", &save)) {
		char real[PATH_MAX], *name;

		if (n == PCOW_EXTENTS_ALLOWED) {
			die_msg("%s: too many stripes (at most %u)", file, PCOW_EXTENTS_ALLOWED);
			ret = -1;
			break;
		}
		if (tok[0] != '/' && !same_dir && !realpath(tok, real)) {
			die_msg("%s: stripe directory '%s' not found", file, tok);
			ret = -1;
			break;
		}
		if (asprintf(&name, "%s/%s.%u", tok[0] == '/' || same_dir ? tok : real,
			     basename(fcopy), n) < 0) {
			die_msg("%s: out of memory", file);
			ret = -1;
			break;
		}
		names[n++] = name;
	}
	if (ret == 0 && n < 2) {
		die_msg("%s: stripes needs at least two directories (DIR1:DIR2[:...])", file);
		ret = -1;
	}
	if (ret == 0) {
		o->extent_files = names;
		o->extent_count = n;
		names = NULL;
	}
out:
	if (names)
		for (n = 0; names[n]; n++)
			free((char *)names[n]);
	free(names);
	free(copy);
	free(fcopy);
	return ret;
}
