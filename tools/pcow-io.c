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
	uint64_t block_size;
	bool readonly;
	bool quiet;     /* -q: no statistics from any command */
	bool quit;      /* the quit command ran */
};

static const char *file_for_signal;

/*
 * qemu-io's way of writing an amount, which qemu-iotests' output filters
 * expect: "0 bytes", "1000 bytes", "3.906 KiB", "3.812 MiB", "1 MiB" (a
 * fraction of ".000" is dropped).
 */
static void cvtstr(double v, char *buf, size_t len)
{
	static const char *const units[] = {" KiB", " MiB", " GiB", " TiB", " PiB", " EiB"};
	char num[64], *zeros;
	int u = -1;

	while (u < 5 && v >= 1024.0) {
		v /= 1024.0;
		u++;
	}
	snprintf(num, sizeof(num), u < 0 ? "%f" : "%.3f", v);
	zeros = strstr(num, ".000");
	if (zeros)
		*zeros = '\0';
	snprintf(buf, len, "%.40s%s", num, u < 0 ? " bytes" : units[u]);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* qemu-io's two lines after a read, write or discard. */
static void report(const struct ctx *c, bool quiet, const char *verb, uint64_t len,
		   uint64_t off, double secs)
{
	char amount[64], rate[64], t[32];
	unsigned whole = (unsigned)secs;

	if (quiet || c->quiet)
		return;
	cvtstr((double)len, amount, sizeof(amount));
	cvtstr(secs > 0 ? (double)len / secs : 0.0, rate, sizeof(rate));
	if (whole)
		snprintf(t, sizeof(t), "%u:%02u:%05.2f", whole / 3600, whole / 60 % 60,
			 secs - (double)(whole / 60 * 60));
	else
		snprintf(t, sizeof(t), "%05.2f sec", secs);
	printf("%s %" PRIu64 "/%" PRIu64 " bytes at offset %" PRIu64 "\n", verb, len, len, off);
	printf("%s, 1 ops; %s (%s/sec and %.4f ops/sec)\n", amount, t, rate,
	       secs > 0 ? 1.0 / secs : 0.0);
}

static int cmd_fail(struct ctx *c)
{
	return lib_fail(c->file);
}

/* What a command's options set. */
struct cmd_opts {
	int pattern;   /* -P, or -1 */
	bool quiet;    /* -q */
	bool verbose;  /* -v: dump what was read */
	bool zero;     /* -z: write zeros */
	int args;      /* index of the first operand in argv */
};

/*
 * Parses a command's options (letters from allowed) as qemu-io does; an
 * unknown one is "invalid option", as getopt words it.
 */
static int parse_cmd_opts(int argc, char **argv, const char *allowed, struct cmd_opts *o)
{
	int i;

	*o = (struct cmd_opts){.pattern = -1};
	for (i = 1; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
		const char *p;

		if (!strcmp(argv[i], "--")) {
			i++;
			break;
		}
		for (p = argv[i] + 1; *p; p++) {
			if (!strchr(allowed, *p)) {
				die_msg("%s: invalid option -- '%c'", argv[0], *p);
				return -1;
			}
			if (*p == 'P') {
				const char *v = p[1] ? p + 1 : i + 1 < argc ? argv[++i] : NULL;
				char *end;
				long pat;

				if (!v) {
					die_msg("%s: option requires an argument -- 'P'", argv[0]);
					return -1;
				}
				pat = strtol(v, &end, 0);
				if (*end || !*v || pat < 0 || pat > 255) {
					die_msg("%s: invalid pattern '%s' (a byte value, 0 to 255)",
						argv[0], v);
					return -1;
				}
				o->pattern = (int)pat;
				break;
			}
			o->quiet |= *p == 'q';
			o->verbose |= *p == 'v';
			o->zero |= *p == 'z';
		}
	}
	o->args = i;
	return 0;
}

/* The operands OFF LEN of a command; the range must lie inside the image. */
static int parse_range(struct ctx *c, int argc, char **argv, int first, uint64_t *off,
		       uint64_t *len)
{
	if (argc - first != 2) {
		die_msg("%s: bad argument count %d, expecting OFFSET and LENGTH", argv[0],
			argc - first);
		return -1;
	}
	if (!parse_size(argv[first], off) || !parse_size(argv[first + 1], len)) {
		die_msg("%s: invalid offset or length " SIZE_HINT, argv[0]);
		return -1;
	}
	if (*off > c->size || *len > c->size - *off) {
		die_msg("%s: offset %" PRIu64 " + length %" PRIu64 " is outside the image (size %" PRIu64 ")",
			c->file, *off, *len, c->size);
		return -1;
	}
	return 0;
}

/* Stores len bytes of value at off, through the mapping or the file. */
static int store(struct ctx *c, int value, uint64_t len, uint64_t off)
{
	uint8_t *buf;
	int ret;

	if (!len)
		return 0;
	if (c->map) {
		memset((uint8_t *)pcow_map_addr(c->map) + off, value, len);
		return 0;
	}
	buf = malloc(len);
	if (!buf) {
		die_msg("out of memory");
		return 1;
	}
	memset(buf, value, len);
	ret = pcow_write(c->img, buf, len, off);
	free(buf);
	return ret < 0 ? cmd_fail(c) : 0;
}

/*
 * write -z: the whole blocks inside the range are discarded, so that they
 * read as zeros whatever lies below and take no space (qemu's zero
 * clusters); the parts of blocks at either end are written.
 */
static int store_zeros(struct ctx *c, uint64_t len, uint64_t off)
{
	uint64_t bs = c->block_size, first = (off + bs - 1) / bs * bs;
	uint64_t last = (off + len) / bs * bs;

	if (last <= first)
		return store(c, 0, len, off);
	if (pcow_discard(c->img, first, last - first) < 0)
		return cmd_fail(c);
	return store(c, 0, first - off, off) || store(c, 0, off + len - last, last);
}

static int do_write(struct ctx *c, int argc, char **argv)
{
	struct cmd_opts o;
	uint64_t off, len;
	double t;
	int ret;

	if (parse_cmd_opts(argc, argv, "Pqz", &o) < 0 ||
	    parse_range(c, argc, argv, o.args, &off, &len) < 0)
		return 1;
	if (o.zero && o.pattern >= 0) {
		die_msg("write: -z and -P exclude each other");
		return 1;
	}
	if (c->readonly) {
		die_msg("%s: image is opened read-only", c->file);
		return 1;
	}
	t = now();
	ret = o.zero ? store_zeros(c, len, off) : store(c, o.pattern < 0 ? 0xcd : o.pattern, len, off);
	if (ret)
		return ret;
	report(c, o.quiet, "wrote", len, off, now() - t);
	return 0;
}

/* read -v: qemu-io's dump, 16 bytes a line, offsets in the image. */
static void dump(const uint8_t *p, uint64_t len, uint64_t off)
{
	uint64_t i, j;

	for (i = 0; i < len; i += 16) {
		uint64_t n = len - i < 16 ? len - i : 16;

		printf("%08" PRIx64 ":  ", off + i);
		for (j = 0; j < n; j++)
			printf("%02x ", p[i + j]);
		putchar(' ');
		for (j = 0; j < n; j++)
			putchar(p[i + j] >= ' ' && p[i + j] <= '~' ? p[i + j] : '.');
		putchar('\n');
	}
}

static int do_read(struct ctx *c, int argc, char **argv)
{
	struct cmd_opts o;
	uint64_t off, len, i;
	double t;
	const uint8_t *data;
	uint8_t *buf = NULL;

	if (parse_cmd_opts(argc, argv, "Pqv", &o) < 0 ||
	    parse_range(c, argc, argv, o.args, &off, &len) < 0)
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
	t = now() - t;
	if (o.pattern >= 0)
		for (i = 0; i < len; i++)
			if (data[i] != o.pattern) {
				printf("Pattern verification failed at offset %" PRIu64 ", %" PRIu64 " bytes\n",
				       off + i, len);
				free(buf);
				return 1;
			}
	if (o.verbose)
		dump(data, len, off);
	free(buf);
	report(c, o.quiet, "read", len, off, t);
	return 0;
}

static int do_discard(struct ctx *c, int argc, char **argv)
{
	struct cmd_opts o;
	uint64_t off, len;
	double t;

	if (parse_cmd_opts(argc, argv, "q", &o) < 0 ||
	    parse_range(c, argc, argv, o.args, &off, &len) < 0)
		return 1;
	t = now();
	if (pcow_discard(c->img, off, len) < 0)
		return cmd_fail(c);
	report(c, o.quiet, "discard", len, off, now() - t);
	return 0;
}

/* Bytes of [off, off + len) the active layer holds (qemu's "allocated in
 * this layer"), in *held; stops early at *run_end when the allocation
 * changes, if run_end is given. */
static int held_bytes(struct ctx *c, uint64_t off, uint64_t len, uint64_t *held,
		      uint64_t *run_end)
{
	uint64_t pos = off;
	int first = -1;

	*held = 0;
	while (pos < off + len) {
		struct pcow_block_status st;
		int mine;

		if (pcow_block_status(c->img, pos, off + len - pos, &st) < 0)
			return -1;
		mine = st.depth == 0;
		if (run_end && first >= 0 && mine != first)
			break;
		first = mine;
		if (mine)
			*held += st.length;
		pos += st.length;
	}
	if (run_end)
		*run_end = pos;
	return first;
}

static int do_map(struct ctx *c, int argc, char **argv)
{
	uint64_t pos = 0, end, held;
	int mine;

	(void)argv;
	if (argc != 1) {
		die_msg("map: takes no arguments");
		return 1;
	}
	/* As qemu-io: runs the active layer holds or not, merged. */
	while (pos < c->size) {
		char a[64], b[64];

		mine = held_bytes(c, pos, c->size - pos, &held, &end);
		if (mine < 0)
			return cmd_fail(c);
		cvtstr((double)(end - pos), a, sizeof(a));
		cvtstr((double)pos, b, sizeof(b));
		printf("%s (0x%" PRIx64 ") bytes %s at offset %s (0x%" PRIx64 ")\n", a, end - pos,
		       mine ? "    allocated" : "not allocated", b, pos);
		pos = end;
	}
	return 0;
}

static int do_alloc(struct ctx *c, int argc, char **argv)
{
	uint64_t off, len = 512, held;
	char where[64];

	if (argc < 2 || argc > 3) {
		die_msg("alloc: bad argument count %d, expecting OFFSET [COUNT]", argc - 1);
		return 1;
	}
	if (!parse_size(argv[1], &off) || (argc == 3 && !parse_size(argv[2], &len))) {
		die_msg("alloc: invalid offset or count " SIZE_HINT);
		return 1;
	}
	if (off > c->size || len > c->size - off) {
		die_msg("%s: offset %" PRIu64 " + count %" PRIu64 " is outside the image (size %" PRIu64 ")",
			c->file, off, len, c->size);
		return 1;
	}
	if (held_bytes(c, off, len, &held, NULL) < 0)
		return cmd_fail(c);
	cvtstr((double)off, where, sizeof(where));
	printf("%" PRIu64 "/%" PRIu64 " bytes allocated at offset %s\n", held, len, where);
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

static int do_length(struct ctx *c, int argc, char **argv)
{
	char size[64];

	(void)argc;
	(void)argv;
	cvtstr((double)c->size, size, sizeof(size));
	printf("%s\n", size);
	return 0;
}

static int do_info(struct ctx *c, int argc, char **argv)
{
	char bs[64];

	(void)argc;
	(void)argv;
	cvtstr((double)c->block_size, bs, sizeof(bs));
	printf("format name: pcow\ncluster size: %s\n", bs);
	return 0;
}

static int do_quit(struct ctx *c, int argc, char **argv)
{
	(void)argc;
	(void)argv;
	c->quit = true;
	return 0;
}

static int do_help(struct ctx *c, int argc, char **argv);

static const struct {
	const char *name;
	int (*fn)(struct ctx *c, int argc, char **argv);
	const char *args, *help;
} commands[] = {
	{"write", do_write, "[-qz] [-P PATTERN] OFF LEN",
	 "writes LEN bytes of PATTERN (0xcd), or of zeros (-z), at OFF"},
	{"read", do_read, "[-qv] [-P PATTERN] OFF LEN",
	 "reads LEN bytes at OFF; checks them against PATTERN, dumps them (-v)"},
	{"discard", do_discard, "[-q] OFF LEN", "deallocates the whole blocks inside the range"},
	{"alloc", do_alloc, "OFF [COUNT]", "how many of COUNT (512) bytes at OFF the active layer holds"},
	{"map", do_map, "", "lists the ranges the active layer holds or not"},
	{"flush", do_flush, "", "makes every completed write durable"},
	{"stats", do_stats, "", "the mapping's VMAs, faults and blocks (--mmap only)"},
	{"length", do_length, "", "the virtual size of the image"},
	{"info", do_info, "", "the format and block size of the image"},
	{"help", do_help, "[COMMAND]", "lists the commands, or tells about one"},
	{"quit", do_quit, "", "ends the commands (also q)"},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static int do_help(struct ctx *c, int argc, char **argv)
{
	size_t i;
	bool found = false;

	(void)c;
	for (i = 0; i < NCOMMANDS; i++) {
		if (argc > 1 && strcmp(argv[1], commands[i].name))
			continue;
		printf("%s%s%s -- %s\n", commands[i].name, commands[i].args[0] ? " " : "",
		       commands[i].args, commands[i].help);
		found = true;
	}
	if (!found) {
		die_msg("help: command not found: %s", argv[1]);
		return 1;
	}
	return 0;
}

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
	if (!strcmp(argv[0], "q"))
		argv[0] = "quit";
	for (i = 0; i < NCOMMANDS; i++)
		if (!strcmp(argv[0], commands[i].name))
			return commands[i].fn(c, argc, argv);
	die_msg("command not found: %s", argv[0]);
	return 1;
}

static void usage(void)
{
	size_t i;

	printf("usage: pcow-io [-c CMD]... [-q] [-r [-U]] [--mmap [--copy-size SIZE] [--fault-ahead SIZE] [--persist-interval MS] [--cow kernel|fault]] FILE\n"
	       "usage: pcow-io --version\n");
	for (i = 0; i < NCOMMANDS; i++)
		printf("%s%s%s%s%s\n", i ? "          " : "commands: ", commands[i].name,
		       commands[i].args[0] ? " " : "", commands[i].args,
		       i + 1 < NCOMMANDS ? " |" : "");
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
	bool share = false;
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
		{"version", no_argument, 0, 'V'},
		{0}};

	progname = "pcow-io";
	/* Option errors are reported by bad_option, on one line. */
	opterr = 0;
	cmds = calloc((size_t)argc, sizeof(*cmds));
	while ((opt = getopt_long(argc, argv, ":c:qrUmf:hV", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c': cmds[ncmds++] = optarg; break;
		case 'q': c.quiet = true; break;
		case 'r': flags |= PCOW_OPEN_RDONLY; break;
		case 'U': share = true; break;
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
			usage();
			free(cmds);
			return 0;
		case 'V':
			printf("pcow-io version %d.%d.%d\n", PCOW_VERSION_MAJOR, PCOW_VERSION_MINOR,
			       PCOW_VERSION_MICRO);
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
	/* As qemu-io: reading without a lock is for read-only opens only,
	 * not a writer whose every write would then fail. */
	if (share && !(flags & PCOW_OPEN_RDONLY)) {
		die_msg("%s: force-share=on (-U) can only be used with read-only images (-r)",
			c.file);
		free(cmds);
		return 1;
	}
	if (share)
		flags |= PCOW_OPEN_FORCE_SHARE;
	if (pcow_open(&c.img, c.file, flags) < 0) {
		lib_fail(c.file);
		free(cmds);
		return 1;
	}
	c.readonly = flags & (PCOW_OPEN_RDONLY | PCOW_OPEN_FORCE_SHARE);
	pcow_get_info(c.img, &info);
	c.size = info.virtual_size;
	c.block_size = info.block_size;
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
	for (i = 0; i < ncmds && !c.quit; i++) {
		char *line = strdup(cmds[i]);

		rc |= run_line(&c, line);
		free(line);
	}
	if (ncmds == 0) {
		bool prompt = isatty(STDIN_FILENO);
		char *line = NULL;
		size_t cap = 0;

		for (;;) {
			if (prompt) {
				printf("pcow-io> ");
				fflush(stdout);
			}
			if (getline(&line, &cap, stdin) <= 0)
				break;
			rc |= run_line(&c, line);
			fflush(stdout);
			if (c.quit)
				break;
		}
		if (prompt && !c.quit)
			putchar('\n');
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
