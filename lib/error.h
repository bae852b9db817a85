/* error.h -- the per-thread error message behind pcow_errormsg(). */
#ifndef PCOW_ERROR_H
#define PCOW_ERROR_H

/*
 * Records a message for this thread and returns err (a negative errno), so
 * that failure paths read "return pcow_err(-EINVAL, "...")".
 */
int pcow_err(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Like pcow_err(), appending ": strerror(-err)". */
int pcow_err_sys(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
