#include "svcproxy/diag.h"

#include <stdlib.h>
#include <string.h>

void sp_diag_init(struct sp_diag *d)
{
	memset(d, 0, sizeof(*d));
}

void sp_diag_free(struct sp_diag *d)
{
	for (size_t i = 0; i < d->n_msgs; i++)
		free(d->msgs[i].text);
	free(d->msgs);
	sp_diag_init(d);
}

void sp_diag_vadd(struct sp_diag *d, enum sp_severity sev, const char *fmt, va_list ap)
{
	struct sp_buf b;
	struct sp_diag_msg *m;

	sp_buf_init(&b);
	sp_buf_vaddf(&b, fmt, ap);
	m = sp_array_push(&d->msgs, &d->n_msgs, &d->cap_msgs, sizeof(*m));
	m->severity = sev;
	m->text = sp_buf_steal(&b);
	if (sev == SP_SEV_ERROR)
		d->n_errors++;
	else if (sev == SP_SEV_WARNING)
		d->n_warnings++;
}

void sp_diag_add(struct sp_diag *d, enum sp_severity sev, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	sp_diag_vadd(d, sev, fmt, ap);
	va_end(ap);
}

void sp_diag_merge(struct sp_diag *dst, struct sp_diag *src)
{
	for (size_t i = 0; i < src->n_msgs; i++) {
		struct sp_diag_msg *m =
			sp_array_push(&dst->msgs, &dst->n_msgs, &dst->cap_msgs, sizeof(*m));

		*m = src->msgs[i];
	}
	dst->n_errors += src->n_errors;
	dst->n_warnings += src->n_warnings;
	free(src->msgs);
	sp_diag_init(src);
}

int sp_diag_has(const struct sp_diag *d, enum sp_severity min, const char *needle)
{
	for (size_t i = 0; i < d->n_msgs; i++)
		if (d->msgs[i].severity >= min && strstr(d->msgs[i].text, needle))
			return 1;
	return 0;
}
