/* The node daemon (`svcproxy run`): one epoll loop that watches the sources
 * (JSON files and directories, or the Kubernetes API server), coalesces
 * changes, programs them through a backend, and serves kube-proxy's health,
 * metrics and per-Service health-check endpoints. */
#ifndef SVCPROXY_DAEMON_H
#define SVCPROXY_DAEMON_H

#include <stdbool.h>
#include <stddef.h>

#include "svcproxy/backend.h"
#include "svcproxy/config.h"
#include "svcproxy/diag.h"

enum sp_log_level {
	SP_LOG_ERROR = 3, /* syslog priorities, as journald reads them */
	SP_LOG_WARNING = 4,
	SP_LOG_NOTICE = 5, /* the default: start, ready, stop, reload */
	SP_LOG_INFO = 6,   /* one line per sync and per source event */
	SP_LOG_DEBUG = 7,
};

/* Rebuild the configuration exactly as at startup (defaults, then --config
 * FILE, then the command-line flags) into a zeroed cfg. Called on SIGHUP.
 * Returns 0, or -1 with the reason in diag; the running configuration then
 * stays in force. */
typedef int (*sp_daemon_reload_fn)(struct sp_config *cfg, void *arg, struct sp_diag *diag);

struct sp_daemon_opts {
	/* Owned by the caller and left valid: on a successful SIGHUP reload
	 * the daemon swaps its contents with the new configuration (and frees
	 * the old one). The proxy mode cannot change on reload. */
	struct sp_config *cfg;
	/* JSON files or directories. With none, the daemon lists and watches
	 * the API server. */
	const char *const *sources;
	size_t n_sources;
	/* API server access (only without sources): kubeconfig path, or the
	 * in-cluster service account when in_cluster (or when kubeconfig is
	 * NULL and KUBERNETES_SERVICE_HOST is set). */
	const char *kubeconfig;
	bool in_cluster;
	/* sp_backend_for_mode(cfg->mode). */
	const struct sp_backend_ops *ops;
	enum sp_log_level log_level; /* 0 means SP_LOG_NOTICE */
	/* NULL: SIGHUP re-reads the sources but keeps the configuration. */
	sp_daemon_reload_fn reload;
	void *reload_arg;
	/* Where the conntrack flusher keeps the summary of the last programmed
	 * plan; NULL: SP_CT_DEFAULT_STATE_DIR (/run/svcproxy). */
	const char *state_dir;
	/* Do not flush stale conntrack entries (tests with a fake backend,
	 * which must not touch the host's conntrack table). */
	bool no_conntrack_flush;
};

/* Run until SIGTERM or SIGINT. The kernel state stays programmed on exit
 * (only `svcproxy cleanup` removes it). SIGTERM and SIGINT are left blocked
 * on return: the caller is expected to exit. Returns the process exit status: 0
 * after a signal, 1 when the daemon could not start (diag says why: a bind
 * address in use, the backend could not open, an unreadable kubeconfig). */
int sp_daemon_run(const struct sp_daemon_opts *opts, struct sp_diag *diag);

#endif
