/*
 * img_qcow2.c -- convert to and from qcow2 by streaming through qemu-img
 * and a temporary raw file.  Both steps keep zero blocks unallocated: our
 * raw output and qemu-img's skip them, so the temporary file is as sparse
 * as the data, and so are the outputs.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "img.h"
#include "img_qcow2.h"
#include "replace.h"
#include "util.h"

#define QEMU_IMG "qemu-img"

bool convert_involves_qcow2(const char *in, const char *in_fmt, const char *out_fmt)
{
	if (out_fmt && !strcmp(out_fmt, "qcow2"))
		return true;
	if (in_fmt)
		return !strcmp(in_fmt, "qcow2");
	return file_is_qcow2(in);
}

static bool on_path(const char *prog)
{
	const char *path = getenv("PATH");
	char *copy, *dir, *save = NULL, full[PATH_MAX];
	bool found = false;

	if (!path || !(copy = strdup(path)))
		return false;
	for (dir = strtok_r(copy, ":", &save); dir && !found; dir = strtok_r(NULL, ":", &save)) {
		snprintf(full, sizeof(full), "%s/%s", dir[0] ? dir : ".", prog);
		found = access(full, X_OK) == 0;
	}
	free(copy);
	return found;
}

/* Runs qemu-img with args (its output kept when keep_stdout); on failure
 * prints its first error line, naming file, and returns -1. */
static int run_qemu_img_out(const char *file, char *const args[], bool keep_stdout)
{
	int pipefd[2], status;
	char msg[1024] = "", *nl;
	size_t got = 0;
	ssize_t n;
	pid_t pid;

	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		die_msg("%s: cannot run " QEMU_IMG ": %s", file, strerror(errno));
		return -1;
	}
	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		die_msg("%s: cannot run " QEMU_IMG ": %s", file, strerror(errno));
		close(pipefd[0]);
		close(pipefd[1]);
		return -1;
	}
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		dup2(pipefd[1], STDERR_FILENO);
		if (null >= 0 && !keep_stdout)
			dup2(null, STDOUT_FILENO);
		execvp(QEMU_IMG, args);
		fprintf(stderr, "cannot run " QEMU_IMG ": %s\n", strerror(errno));
		_exit(127);
	}
	close(pipefd[1]);
	while ((n = read(pipefd[0], msg + got, sizeof(msg) - 1 - got)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			break;
		got += (size_t)n;
		if (got == sizeof(msg) - 1) {
			char sink[4096];

			/* Keep the first line only; drain the rest. */
			while (read(pipefd[0], sink, sizeof(sink)) > 0)
				;
			break;
		}
	}
	msg[got] = '\0';
	close(pipefd[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	nl = strchr(msg, '\n');
	if (nl)
		*nl = '\0';
	if (!msg[0])
		snprintf(msg, sizeof(msg), QEMU_IMG " failed (status %d)", status);
	/* Its own prefix goes: the line is ours now. */
	nl = strncmp(msg, QEMU_IMG ": ", strlen(QEMU_IMG ": ")) ? msg
								 : msg + strlen(QEMU_IMG ": ");
	if (file)
		die_msg("%s: %s", file, nl);
	else
		die_msg("%s", nl);
	return -1;
}

static int run_qemu_img(const char *file, char *const args[])
{
	return run_qemu_img_out(file, args, false);
}

int qemu_img_answers(const char *file, char **argv)
{
	char *args[64];
	int n = 0;

	if (!on_path(QEMU_IMG)) {
		die_msg("%s%s" QEMU_IMG " is needed for that format (install qemu-utils)",
			file ? file : "", file ? ": " : "");
		return 1;
	}
	args[n++] = QEMU_IMG;
	for (; *argv && n < 63; argv++)
		args[n++] = *argv;
	args[n] = NULL;
	return run_qemu_img_out(file, args, true) < 0 ? 1 : 0;
}

/* Creates an empty temporary file next to out (same file system, as sparse
 * as the output), else in $TMPDIR. */
static char *make_temp(const char *out)
{
	char *copy = strdup(out), *name = NULL;
	const char *dirs[2], *tmpdir = getenv("TMPDIR");
	int i, fd = -1;

	if (!copy)
		return NULL;
	dirs[0] = dirname(copy);
	dirs[1] = tmpdir && tmpdir[0] ? tmpdir : "/tmp";
	for (i = 0; i < 2 && fd < 0; i++) {
		free(name);
		if (asprintf(&name, "%s/.pcow-img-convert-XXXXXX", dirs[i]) < 0) {
			name = NULL;
			break;
		}
		fd = mkstemp(name);
	}
	free(copy);
	if (fd < 0) {
		free(name);
		return NULL;
	}
	close(fd);
	return name;
}

/* Runs the raw/pcow convert verb on argv (NULL-terminated). */
static int run_convert(const struct qcow2_convert *c, char **argv)
{
	int argc = 0;

	while (argv[argc])
		argc++;
	optind = 1;
	return c->convert(argc, argv);
}

/*
 * Runs "qemu-img convert ARGS... SRC OUT" (args ends with NULL, room for
 * four more), writing OUT as convert does: a new file replacing an
 * existing one unless that is in use, or with -n into the existing one,
 * locked meanwhile as pcow locks it.  qemu-img checks QEMU's own locks.
 */
static int qemu_img_into(const struct qcow2_convert *c, char **args, const char *src,
			 const char *err_file)
{
	struct replace r = {.lock_fd = -1};
	int n = 0, fd = -1, ret;

	while (args[n])
		n++;
	if (c->no_create) {
		fd = lock_existing(c->out, c->out);
		if (fd < 0)
			return -1;
		args[n++] = "-n";
	} else if (replace_begin(&r, c->out) < 0) {
		return -1;
	}
	args[n++] = (char *)src;
	args[n++] = c->no_create ? (char *)c->out : r.build;
	args[n] = NULL;
	/* qemu-img removes what it created when it fails. */
	r.built = true;
	ret = run_qemu_img(err_file, args);
	if (fd >= 0)
		close(fd);
	if (c->no_create)
		return ret;
	if (ret < 0) {
		replace_abort(&r);
		return -1;
	}
	return replace_commit(&r);
}

int convert_qcow2(const struct qcow2_convert *c)
{
	bool from = !(c->in_fmt ? strcmp(c->in_fmt, "qcow2") : !file_is_qcow2(c->in));
	bool to = !strcmp(c->out_fmt, "qcow2");
	char *args[20], *tmp;
	int n = 0, rc = 1;

	if (from && c->no_backing)
		FAIL(c->in, "%s: --no-backing applies to pcow inputs, not to qcow2", c->in);
	if (!on_path(QEMU_IMG))
		FAIL(c->in, "%s: " QEMU_IMG " is needed to convert to or from qcow2 (install qemu-utils)",
		     from ? c->in : c->out);
	if (from && to) {
		args[n++] = QEMU_IMG;
		args[n++] = "convert";
		if (c->force_share)
			args[n++] = "-U";
		if (c->options) {
			args[n++] = "-o";
			args[n++] = (char *)c->options;
		}
		args[n++] = "-f";
		args[n++] = "qcow2";
		args[n++] = "-O";
		args[n++] = "qcow2";
		args[n] = NULL;
		return qemu_img_into(c, args, c->in, c->in) < 0 ? 1 : 0;
	}
	tmp = make_temp(c->out);
	if (!tmp)
		FAIL(c->out, "%s: cannot create a temporary file: %s", c->out, strerror(errno));
	args[n++] = "convert";
	if (from) {
		char *q[10];
		int k = 0;

		q[k++] = QEMU_IMG;
		q[k++] = "convert";
		if (c->force_share)
			q[k++] = "-U";
		q[k++] = "-f";
		q[k++] = "qcow2";
		q[k++] = "-O";
		q[k++] = "raw";
		q[k++] = (char *)c->in;
		q[k++] = tmp;
		q[k] = NULL;
		if (run_qemu_img(c->in, q) < 0)
			goto out;
		args[n++] = "-f";
		args[n++] = "raw";
		args[n++] = "-O";
		args[n++] = (char *)c->out_fmt;
		if (c->options) {
			args[n++] = "-o";
			args[n++] = (char *)c->options;
		}
		if (c->no_create)
			args[n++] = "-n";
		if (c->progress)
			args[n++] = "-p";
		args[n++] = tmp;
		args[n++] = (char *)c->out;
		args[n] = NULL;
		rc = run_convert(c, args);
	} else {
		if (c->in_fmt) {
			args[n++] = "-f";
			args[n++] = (char *)c->in_fmt;
		}
		args[n++] = "-O";
		args[n++] = "raw";
		if (c->force_share)
			args[n++] = "-U";
		if (c->no_backing)
			args[n++] = "--no-backing";
		if (c->progress)
			args[n++] = "-p";
		args[n++] = (char *)c->in;
		args[n++] = tmp;
		args[n] = NULL;
		/* The raw output is created anew. */
		unlink(tmp);
		if (run_convert(c, args))
			goto out;
		n = 0;
		args[n++] = QEMU_IMG;
		args[n++] = "convert";
		args[n++] = "-f";
		args[n++] = "raw";
		args[n++] = "-O";
		args[n++] = "qcow2";
		if (c->options) {
			args[n++] = "-o";
			args[n++] = (char *)c->options;
		}
		args[n] = NULL;
		if (qemu_img_into(c, args, tmp, c->out) < 0)
			goto out;
		rc = 0;
	}
out:
	unlink(tmp);
	free(tmp);
	return rc;
}

int measure_qcow2_of_pcow(const char *in, const char *options, const char *output,
			  bool force_share)
{
	char *conv[8], *args[12], *tmp, out_opt[64];
	int n = 0, rc = 1;

	if (!on_path(QEMU_IMG))
		FAIL(in, "%s: " QEMU_IMG " is needed to measure for qcow2 (install qemu-utils)", in);
	/* qemu-img cannot read pcow: it measures the content, as raw. */
	tmp = make_temp(in);
	if (!tmp)
		FAIL(in, "%s: cannot create a temporary file: %s", in, strerror(errno));
	unlink(tmp);
	conv[n++] = "convert";
	conv[n++] = "-f";
	conv[n++] = "pcow";
	if (force_share)
		conv[n++] = "-U";
	conv[n++] = (char *)in;
	conv[n++] = tmp;
	conv[n] = NULL;
	optind = 1;
	if (cmd_convert(n, conv) == 0) {
		n = 0;
		snprintf(out_opt, sizeof(out_opt), "--output=%s", output);
		args[n++] = QEMU_IMG;
		args[n++] = "measure";
		args[n++] = out_opt;
		args[n++] = "-O";
		args[n++] = "qcow2";
		if (options) {
			args[n++] = "-o";
			args[n++] = (char *)options;
		}
		args[n++] = "-f";
		args[n++] = "raw";
		args[n++] = tmp;
		args[n] = NULL;
		rc = run_qemu_img_out(in, args, true) < 0 ? 1 : 0;
	}
	unlink(tmp);
	free(tmp);
	return rc;
}
