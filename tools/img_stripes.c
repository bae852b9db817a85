/*
 * img_stripes.c -- create's "-o stripes=DIR1:DIR2[:...]": the names of a
 * striped image's extent files, one per directory; and its
 * "-o stripe_nodes=N1:N2[:...]": their host NUMA nodes.
 */
#include <errno.h>
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

/* One host NUMA node per extent file, "none" for none. */
int stripe_nodes(const char *file, const char *list, struct pcow_create_opts *o)
{
	uint32_t *nodes = calloc(PCOW_EXTENTS_ALLOWED, sizeof(*nodes));
	const char *p = list;
	int n = 0;

	if (!nodes) {
		die_msg("%s: out of memory", file);
		return -1;
	}
	for (;;) {
		char *end;
		unsigned long v;

		errno = 0;
		v = strtoul(p, &end, 10);
		if (!strncmp(p, "none", 4) && (p[4] == ':' || !p[4])) {
			v = PCOW_NODE_NONE;
			end = (char *)p + 4;
		} else if (end == p || errno || *p == '-' || *p == '+' || v > PCOW_NODE_MAX_ALLOWED ||
			   (*end && *end != ':')) {
			die_msg("%s: invalid stripe node '%s' (0 to %u or none, one per stripe directory)",
				file, list, PCOW_NODE_MAX_ALLOWED);
			break;
		}
		if (n == (int)PCOW_EXTENTS_ALLOWED) {
			die_msg("%s: too many stripe nodes (at most %u)", file, PCOW_EXTENTS_ALLOWED);
			break;
		}
		nodes[n++] = (uint32_t)v;
		if (!*end) {
			free((void *)o->extent_nodes);
			o->extent_nodes = nodes;
			return n;
		}
		p = end + 1;
	}
	free(nodes);
	return -1;
}
