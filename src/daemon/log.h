/* Daemon logging: one line per event on stderr, leveled. Under journald
 * (JOURNAL_STREAM set) each line carries the <N> priority prefix that
 * journald turns into the entry's priority; elsewhere a time stamp and the
 * level name. */
#ifndef SP_DAEMON_LOG_H
#define SP_DAEMON_LOG_H

#include "svcproxy/daemon.h"
#include "svcproxy/diag.h"
#include "svcproxy/util.h"

void sp_dlog_set_level(enum sp_log_level level);
enum sp_log_level sp_dlog_level(void);
void sp_dlog(enum sp_log_level level, const char *fmt, ...) SP_PRINTF(2, 3);

/* Logs each diag message once while it keeps recurring: the model is rebuilt
 * at every sync, so the same bad object would otherwise be reported every
 * second. A message that disappears and comes back is logged again. */
struct sp_dlog_dedup {
	char **seen;
	size_t n_seen;
};

void sp_dlog_diag(struct sp_dlog_dedup *dd, const struct sp_diag *diag, const char *context);
void sp_dlog_dedup_free(struct sp_dlog_dedup *dd);

#endif
