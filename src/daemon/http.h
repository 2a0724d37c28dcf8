/* The daemon's HTTP servers (libmicrohttpd): health (/healthz, /livez) and
 * metrics (/metrics, /proxyMode, /rules) each on its own thread, and one
 * health-check server per Local Service's healthCheckNodePort, all of those
 * served by one more thread. Threads rather than the loop's epoll on
 * purpose: a sync stuck in the kernel (an xtables lock, a slow commit) must
 * show up as a 503 on /healthz, not as a probe timeout, and this needs an
 * answer while the loop is blocked. They only read struct sp_dshared, under
 * its lock. */
#ifndef SP_DAEMON_HTTP_H
#define SP_DAEMON_HTTP_H

#include <stdint.h>
#include <sys/socket.h>

#include "state.h"
#include "svcproxy/diag.h"

struct sp_dhttp;

/* Start the health and metrics servers ("host:port"; an empty address or
 * port 0 disables one). NULL and diag when a bind fails. */
struct sp_dhttp *sp_dhttp_start(struct sp_dshared *sh, const char *healthz_addr,
				const char *metrics_addr, struct sp_diag *diag);
void sp_dhttp_stop(struct sp_dhttp *h);
/* Make the running health-check servers match sh->hc (caller does not hold
 * the lock). Failures to bind are reported and retried on the next call. */
void sp_dhttp_sync_hc(struct sp_dhttp *h, struct sp_diag *diag);
/* Parse "host:port", "[v6]:port", ":port". */
int sp_dhttp_parse_addr(const char *text, struct sockaddr_storage *ss, struct sp_diag *diag);

#endif
