/* Diagnostics: every module reports problems here, with their context
 * (file, object, field, value) already formatted into the message; the
 * command line or the daemon decides where and how they are shown. */
#ifndef SVCPROXY_DIAG_H
#define SVCPROXY_DIAG_H

#include <stdarg.h>
#include <stddef.h>

#include "svcproxy/util.h"

enum sp_severity {
	SP_SEV_INFO,
	SP_SEV_WARNING,
	SP_SEV_ERROR, /* something was skipped or refused; the rest went on */
};

struct sp_diag_msg {
	enum sp_severity severity;
	char *text;
};

struct sp_diag {
	struct sp_diag_msg *msgs;
	size_t n_msgs;
	size_t cap_msgs;
	size_t n_errors;
	size_t n_warnings;
};

void sp_diag_init(struct sp_diag *d);
void sp_diag_free(struct sp_diag *d);
void sp_diag_add(struct sp_diag *d, enum sp_severity sev, const char *fmt, ...) SP_PRINTF(3, 4);
void sp_diag_vadd(struct sp_diag *d, enum sp_severity sev, const char *fmt, va_list ap);
#define sp_diag_error(d, ...) sp_diag_add((d), SP_SEV_ERROR, __VA_ARGS__)
#define sp_diag_warn(d, ...) sp_diag_add((d), SP_SEV_WARNING, __VA_ARGS__)
#define sp_diag_info(d, ...) sp_diag_add((d), SP_SEV_INFO, __VA_ARGS__)
/* Move every message of src to the end of dst. */
void sp_diag_merge(struct sp_diag *dst, struct sp_diag *src);
/* True if any message of this severity or worse contains needle. For tests. */
int sp_diag_has(const struct sp_diag *d, enum sp_severity min, const char *needle);

#endif
