#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static enum sp_log_level sp_dlog_current = SP_LOG_NOTICE;

void sp_dlog_set_level(enum sp_log_level level)
{
	sp_dlog_current = level ? level : SP_LOG_NOTICE;
}

enum sp_log_level sp_dlog_level(void)
{
	return sp_dlog_current;
}

static const char *level_name(enum sp_log_level level)
{
	switch (level) {
	case SP_LOG_ERROR:
		return "error";
	case SP_LOG_WARNING:
		return "warning";
	case SP_LOG_NOTICE:
		return "notice";
	case SP_LOG_INFO:
		return "info";
	case SP_LOG_DEBUG:
		return "debug";
	}
	return "log";
}

void sp_dlog(enum sp_log_level level, const char *fmt, ...)
{
	struct sp_buf line;
	va_list ap;

	if (level > sp_dlog_current)
		return;
	sp_buf_init(&line);
	if (getenv("JOURNAL_STREAM")) {
		sp_buf_addf(&line, "<%d>", (int)level);
	} else {
		struct timespec ts;
		struct tm tm;
		char stamp[32];

		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
		sp_buf_addf(&line, "%s.%03ldZ svcproxy %s: ", stamp, ts.tv_nsec / 1000000,
			    level_name(level));
	}
	va_start(ap, fmt);
	sp_buf_vaddf(&line, fmt, ap);
	va_end(ap);
	/* One event, one line: embedded newlines would split a journal entry. */
	for (char *p = line.data; *p; p++)
		if (*p == '\n')
			*p = ' ';
	sp_buf_add(&line, "\n");
	fputs(line.data, stderr);
	fflush(stderr);
	sp_buf_free(&line);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool seen_before(const struct sp_dlog_dedup *dd, const char *text)
{
	return dd->n_seen && bsearch(&text, dd->seen, dd->n_seen, sizeof(char *), cmp_str);
}

void sp_dlog_diag(struct sp_dlog_dedup *dd, const struct sp_diag *diag, const char *context)
{
	char **now = sp_xcalloc(diag->n_msgs + 1, sizeof(char *));
	size_t n_now = 0;

	for (size_t i = 0; i < diag->n_msgs; i++) {
		const struct sp_diag_msg *m = &diag->msgs[i];
		enum sp_log_level level = m->severity == SP_SEV_ERROR	  ? SP_LOG_ERROR
					  : m->severity == SP_SEV_WARNING ? SP_LOG_WARNING
									  : SP_LOG_INFO;

		if (!seen_before(dd, m->text))
			sp_dlog(level, "%s%s%s", context ? context : "", context ? ": " : "",
				m->text);
		now[n_now++] = sp_xstrdup(m->text);
	}
	qsort(now, n_now, sizeof(char *), cmp_str);
	sp_dlog_dedup_free(dd);
	dd->seen = now;
	dd->n_seen = n_now;
}

void sp_dlog_dedup_free(struct sp_dlog_dedup *dd)
{
	for (size_t i = 0; i < dd->n_seen; i++)
		free(dd->seen[i]);
	free(dd->seen);
	dd->seen = NULL;
	dd->n_seen = 0;
}
