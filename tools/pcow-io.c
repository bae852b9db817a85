/*
 * pcow-io -- run reads, writes and discards on a pcow image, in the manner
 * of qemu-io.  With --mmap every read and write is a load or store on the
 * mapped image, exactly as a guest's would be.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pcow.h"
#include "util.h"

struct ctx {
	pcow_image *img;
	pcow_map *map;
	const char *file;
	uint64_t size;
	bool readonly;
};

static const char *file_for_signal;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void report(const char *verb, uint64_t len, uint64_t off, double secs)
{
	char h[32];

	human_size(len, h, sizeof(h));
	printf("%s %" PRIu64 "/%" PRIu64 " bytes at offset %" PRIu64 "\n", verb, len, len, off);
	printf("%s, 1 ops; %.4f sec (%.3f MiB/sec and %.2f ops/sec)\n", h, secs,
	       secs > 0 ? (double)len / 1048576.0 / secs : 0.0, secs > 0 ? 1.0 / secs : 0.0);
}

static int cmd_fail(struct ctx *c)
{
	return lib_fail(c->file);
}

/* Parses "[-P PATTERN] OFF LEN" into its parts. */
static int parse_rw(struct ctx *c, int argc, char **argv, int *pattern,
		    uint64_t *off, uint64_t *len, const char *verb)
{
	int i = 1;

	*pattern = -1;
	if (i < argc && !strcmp(argv[i], "-P")) {
		char *end;
		long v;

		if (i + 1 >= argc) {
			die_msg("%s: -P needs a pattern", verb);
			return -1;
		}
		v = strtol(argv[i + 1], &end, 0);
		if (*end || v < 0 || v > 255) {
			die_msg("%s: invalid pattern '%s'", verb, argv[i + 1]);
			return -1;
		}
		*pattern = (int)v;
		i += 2;
	}
	if (argc - i != 2) {
		die_msg("%s: expecting OFFSET and LENGTH", verb);
		return -1;
	}
	if (!parse_size(argv[i], off) || !parse_size(argv[i + 1], len)) {
		die_msg("%s: invalid offset or length", verb);
		return -1;
	}
	if (*off > c->size || *len > c->size - *off) {
		die_msg("%s: offset %" PRIu64 " + length %" PRIu64 " is outside the image (size %" PRIu64 ")",
			c->file, *off, *len, c->size);
		return -1;
	}
	return 0;
}

static int do_write(struct ctx *c, int argc, char **argv)
{
	uint64_t off, len;
	int pattern;
	double t;
	uint8_t *buf;

	if (parse_rw(c, argc, argv, &pattern, &off, &len, "write") < 0)
		return 1;
	if (c->readonly) {
		die_msg("%s: image is opened read-only", c->file);
		return 1;
	}
	if (pattern < 0)
		pattern = 0xcd;
	t = now();
	if (c->map) {
		memset((uint8_t *)pcow_map_addr(c->map) + off, pattern, len);
	} else {
		buf = malloc(len ? len : 1);
		if (!buf) {
			die_msg("out of memory");
			return 1;
		}
		memset(buf, pattern, len);
		if (pcow_write(c->img, buf, len, off) < 0) {
			free(buf);
			return cmd_fail(c);
		}
		free(buf);
	}
	report("wrote", len, off, now() - t);
	return 0;
}

static int do_read(struct ctx *c, int argc, char **argv)
{
	uint64_t off, len, i;
	int pattern;
	double t;
	const uint8_t *data;
	uint8_t *buf = NULL;

	if (parse_rw(c, argc, argv, &pattern, &off, &len, "read") < 0)
		return 1;
	t = now();
	if (c->map) {
		data = (const uint8_t *)pcow_map_addr(c->map) + off;
	} else {
		buf = malloc(len ? len : 1);
		if (!buf) {
			die_msg("out of memory");
			return 1;
		}
		if (pcow_read(c->img, buf, len, off) < 0) {
			free(buf);
			return cmd_fail(c);
		}
		data = buf;
	}
	if (pattern >= 0)
		for (i = 0; i < len; i++)
			if (data[i] != pattern) {
				printf("Pattern verification failed at offset %" PRIu64 ", %" PRIu64 " bytes\n",
				       off + i, len);
				free(buf);
				return 1;
			}
	free(buf);
	report("read", len, off, now() - t);
	return 0;
}

static int do_discard(struct ctx *c, int argc, char **argv)
{
	uint64_t off, len;
	int pattern;
	double t;

	if (parse_rw(c, argc, argv, &pattern, &off, &len, "discard") < 0)
		return 1;
	t = now();
	if (pcow_discard(c->img, off, len) < 0)
		return cmd_fail(c);
	report("discard", len, off, now() - t);
	return 0;
}

static int do_map(struct ctx *c, int argc, char **argv)
{
	uint64_t pos = 0;

	(void)argc;
	(void)argv;
	while (pos < c->size) {
		struct pcow_block_status st;
		char a[32], b[32];

		if (pcow_block_status(c->img, pos, c->size - pos, &st) < 0)
			return cmd_fail(c);
		human_size(st.length, a, sizeof(a));
		human_size(st.offset, b, sizeof(b));
		printf("%s (0x%" PRIx64 ") bytes %s at offset %s (0x%" PRIx64 ")\n", a, st.length,
		       st.depth == 0 ? "    allocated" : "not allocated", b, st.offset);
		pos += st.length;
	}
	return 0;
}

static int do_flush(struct ctx *c, int argc, char **argv)
{
	(void)argc;
	(void)argv;
	if ((c->map ? pcow_map_flush(c->map) : pcow_flush(c->img)) < 0)
		return cmd_fail(c);
	return 0;
}

static int do_stats(struct ctx *c, int argc, char **argv)
{
	struct pcow_map_stats st;

	(void)argc;
	(void)argv;
	if (!c->map) {
		die_msg("stats: only with --mmap");
		return 1;
	}
	if (pcow_map_get_stats(c->map, &st) < 0)
		return cmd_fail(c);
	printf("vmas %" PRIu64 "\nfaults %" PRIu64 "\nblocks-allocated %" PRIu64
	       "\nblocks-copied %" PRIu64 "\n",
	       st.vmas, st.faults, st.blocks_allocated, st.blocks_copied);
	return 0;
}

static const struct {
	const char *name;
	int (*fn)(struct ctx *c, int argc, char **argv);
} commands[] = {
	{"write", do_write}, {"read", do_read}, {"discard", do_discard},
	{"map", do_map},     {"flush", do_flush}, {"stats", do_stats},
};

static int run_line(struct ctx *c, char *line)
{
	char *argv[16], *save = NULL, *tok;
	int argc = 0;
	size_t i;

	for (tok = strtok_r(line, " \t\n", &save); tok && argc < 16;
	     tok = strtok_r(NULL, " \t\n", &save))
		argv[argc++] = tok;
	if (argc == 0 || argv[0][0] == '#')
		return 0;
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[0], commands[i].name))
			return commands[i].fn(c, argc, argv);
	die_msg("command not found: %s", argv[0]);
	return 1;
}

/* In --mmap mode a store the host cannot back ends here, not in a crash. */
static void on_map_error(pcow_map *map, void *addr, int err, void *opaque)
{
	char msg[256];
	int n;

	(void)opaque;
	n = snprintf(msg, sizeof(msg), "pcow-io: %s: %s while writing at offset %lu\n",
		     file_for_signal, strerror(-err),
		     (unsigned long)((uint8_t *)addr - (uint8_t *)pcow_map_addr(map)));
	if (write(2, msg, (size_t)n) < 0)
		_exit(1);
	_exit(1);
}

int main(int argc, char **argv)
{
	struct ctx c = {0};
	struct pcow_info info = {.struct_size = sizeof(info)};
	char **cmds = NULL;
	int ncmds = 0, opt, rc = 0, i;
	unsigned flags = 0, map_flags = 0;
	bool use_map = false, set_copy = false, set_interval = false, set_cow = false;
	uint64_t copy_size = 0, ahead_max = PCOW_MAP_AHEAD_DEFAULT;
	uint64_t interval_ms = PCOW_MAP_PERSIST_INTERVAL_DEFAULT;
	char *end;
	static const struct option longopts[] = {
		{"copy-size", required_argument, 0, 'C'},
		{"fault-ahead", required_argument, 0, 'A'},
		{"persist-interval", required_argument, 0, 'P'},
		{"cow", required_argument, 0, 'K'},
		{"cmd", required_argument, 0, 'c'},
		{"read-only", no_argument, 0, 'r'},
		{"force-share", no_argument, 0, 'U'},
		{"mmap", no_argument, 0, 'm'},
		{"help", no_argument, 0, 'h'},
		{0}};

	progname = "pcow-io";
	/* Option errors are reported by bad_option, on one line. */
	opterr = 0;
	cmds = calloc((size_t)argc, sizeof(*cmds));
	while ((opt = getopt_long(argc, argv, ":c:rUmf:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c': cmds[ncmds++] = optarg; break;
		case 'r': flags |= PCOW_OPEN_RDONLY; break;
		case 'U': flags |= PCOW_OPEN_FORCE_SHARE; break;
		case 'm': use_map = true; break;
		case 'f': break;
		case 'C':
		case 'A':
			if (!parse_size(optarg, opt == 'C' ? &copy_size : &ahead_max)) {
				die_msg("invalid size for --%s: '%s'",
					opt == 'C' ? "copy-size" : "fault-ahead", optarg);
				free(cmds);
				return 1;
			}
			set_copy = true;
			break;
		case 'K':
			if (strcmp(optarg, "kernel") && strcmp(optarg, "fault")) {
				die_msg("invalid value for --cow: '%s' (kernel or fault)",
					optarg);
				free(cmds);
				return 1;
			}
			map_flags = optarg[0] == 'k' ? PCOW_MAP_KERNEL_COW : 0;
			set_cow = true;
			break;
		case 'P':
			errno = 0;
			interval_ms = strtoull(optarg, &end, 10);
			if (errno || end == optarg || *end || optarg[0] == '-') {
				die_msg("invalid interval for --persist-interval: '%s' (milliseconds)",
					optarg);
				free(cmds);
				return 1;
			}
			set_interval = true;
			break;
		case 'h':
			printf("usage: pcow-io [-c CMD]... [-r] [-U] [--mmap [--copy-size SIZE] [--fault-ahead SIZE] [--persist-interval MS] [--cow kernel|fault]] FILE\n"
			       "commands: write [-P PAT] OFF LEN | read [-P PAT] OFF LEN |\n"
			       "          discard OFF LEN | map | flush | stats\n");
			free(cmds);
			return 0;
		default: free(cmds); return bad_option(opt, argv);
		}
	}
	if ((set_copy || set_interval || set_cow) && !use_map) {
		die_msg("--copy-size, --fault-ahead, --persist-interval and --cow need --mmap");
		free(cmds);
		return 1;
	}
	if (optind != argc - 1) {
		die_msg("expecting one image file name");
		free(cmds);
		return 1;
	}
	c.file = file_for_signal = argv[optind];
	if (pcow_open(&c.img, c.file, flags) < 0) {
		lib_fail(c.file);
		free(cmds);
		return 1;
	}
	c.readonly = flags & (PCOW_OPEN_RDONLY | PCOW_OPEN_FORCE_SHARE);
	pcow_get_info(c.img, &info);
	c.size = info.virtual_size;
	if (use_map) {
		if (pcow_map_new(&c.map, c.img,
				 c.readonly ? PCOW_MAP_RDONLY : map_flags) < 0) {
			lib_fail(c.file);
			pcow_close(&c.img);
			free(cmds);
			return 1;
		}
		pcow_map_set_error_handler(c.map, on_map_error, NULL);
		if ((set_copy && pcow_map_set_copy_size(c.map, copy_size, ahead_max) < 0) ||
		    (set_interval && pcow_map_set_persist_interval(c.map, interval_ms) < 0)) {
			lib_fail(c.file);
			pcow_map_delete(&c.map);
			pcow_close(&c.img);
			free(cmds);
			return 1;
		}
	}
	for (i = 0; i < ncmds; i++) {
		char *line = strdup(cmds[i]);

		rc |= run_line(&c, line);
		free(line);
	}
	if (ncmds == 0) {
		char *line = NULL;
		size_t cap = 0;

		while (getline(&line, &cap, stdin) > 0) {
			rc |= run_line(&c, line);
			fflush(stdout);
		}
		free(line);
	}
	if (c.map) {
		if (!c.readonly && pcow_map_flush(c.map) < 0)
			rc |= cmd_fail(&c);
		pcow_map_delete(&c.map);
	}
	if (pcow_close(&c.img) < 0)
		rc |= cmd_fail(&c);
	free(cmds);
	return rc ? 1 : 0;
}
