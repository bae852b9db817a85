/* error.c -- per-thread error messages (the library never prints). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "pcow.h"
#include "error.h"

static __thread char last_msg[512];

int pcow_err(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(last_msg, sizeof(last_msg), fmt, ap);
	va_end(ap);
	return err;
}

int pcow_err_sys(int err, const char *fmt, ...)
{
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	vsnprintf(last_msg, sizeof(last_msg), fmt, ap);
	va_end(ap);
	n = strlen(last_msg);
	snprintf(last_msg + n, sizeof(last_msg) - n, ": %s", strerror(-err));
	return err;
}

const char *pcow_errormsg(void)
{
	return last_msg;
}
