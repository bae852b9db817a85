/*
 * error.c -- per-thread error messages (the library never prints).
 *
 * Messages are also recorded inside the fault handler (fault.c), in signal
 * context, where vsnprintf and strerror are not async-signal-safe (locale,
 * allocation): they are formatted here by hand instead, for the few
 * conversions the library uses.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>
#include <sys/types.h>

#include "pcow.h"
#include "error.h"

static __thread char last_msg[512];

struct msg {
	char *buf;
	size_t size, len;
};

static void put(struct msg *m, const char *s, size_t n)
{
	for (; n && *s && m->len + 1 < m->size; n--)
		m->buf[m->len++] = *s++;
	m->buf[m->len] = '\0';
}

static void put_number(struct msg *m, unsigned long long v, bool negative,
		       unsigned base, size_t width, char pad)
{
	char digits[24];
	size_t n = 0;

	do {
		digits[sizeof(digits) - ++n] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	if (negative)
		put(m, "-", 1);
	for (; width > n + negative; width--)
		put(m, &pad, 1);
	put(m, digits + sizeof(digits) - n, n);
}

/* Conversions: %s %c %% and d i u x with 0, a width, and h l ll z. */
static void format(struct msg *m, const char *fmt, va_list ap)
{
	while (*fmt) {
		const char *pct = strchr(fmt, '%');
		size_t width = 0;
		char pad = ' ';
		int longs = 0;

		put(m, fmt, pct ? (size_t)(pct - fmt) : strlen(fmt));
		if (!pct)
			return;
		fmt = pct + 1;
		if (*fmt == '0')
			pad = *fmt++;
		for (; *fmt >= '0' && *fmt <= '9'; fmt++)
			width = width * 10 + (size_t)(*fmt - '0');
		for (; *fmt == 'l' || *fmt == 'z' || *fmt == 'h'; fmt++)
			longs += *fmt != 'h';   /* size_t is a long */
		if (*fmt == 'd' || *fmt == 'i') {
			long long v = longs >= 2 ? va_arg(ap, long long)
				      : longs ? va_arg(ap, long) : va_arg(ap, int);

			put_number(m, v < 0 ? 0ull - (unsigned long long)v
					    : (unsigned long long)v,
				   v < 0, 10, width, pad);
		} else if (*fmt == 'u' || *fmt == 'x') {
			unsigned long long v = longs >= 2 ? va_arg(ap, unsigned long long)
					       : longs ? va_arg(ap, unsigned long)
						       : va_arg(ap, unsigned);

			put_number(m, v, false, *fmt == 'u' ? 10 : 16, width, pad);
		} else if (*fmt == 's') {
			const char *s = va_arg(ap, const char *);

			put(m, s ? s : "(null)", (size_t)-1);
		} else if (*fmt == 'c') {
			char c = (char)va_arg(ap, int);

			put(m, &c, 1);
		} else if (*fmt == '%') {
			put(m, "%", 1);
		} else {
			/* Unknown: the rest as it is, rather than misread arguments. */
			put(m, pct, (size_t)-1);
			return;
		}
		fmt++;
	}
}

static void describe(struct msg *m, int err)
{
	const char *s = NULL;

#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 32)
	/* A lookup in a static table: no locale, unlike strerror. */
	s = strerrordesc_np(-err);
#endif
	put(m, ": ", 2);
	if (s) {
		put(m, s, (size_t)-1);
	} else {
		put(m, "errno ", (size_t)-1);
		put_number(m, (unsigned long long)-err, false, 10, 0, ' ');
	}
}

int pcow_err(int err, const char *fmt, ...)
{
	struct msg m = {last_msg, sizeof(last_msg), 0};
	va_list ap;

	va_start(ap, fmt);
	format(&m, fmt, ap);
	va_end(ap);
	return err;
}

int pcow_err_sys(int err, const char *fmt, ...)
{
	struct msg m = {last_msg, sizeof(last_msg), 0};
	va_list ap;

	va_start(ap, fmt);
	format(&m, fmt, ap);
	va_end(ap);
	describe(&m, err);
	return err;
}

const char *pcow_errormsg(void)
{
	return last_msg;
}
