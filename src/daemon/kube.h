/* The API server source: list, then watch Services, EndpointSlices and this
 * node's Node over HTTPS (libcurl's multi interface, driven by the daemon's
 * epoll loop), as kube-proxy's informers do: resourceVersion, bookmarks,
 * relist on 410 Gone, reconnect with backoff, and kube-proxy's label
 * selectors (no service-proxy-name, not headless). */
#ifndef SP_DAEMON_KUBE_H
#define SP_DAEMON_KUBE_H

#include <stdbool.h>

#include "state.h"
#include "store.h"
#include "svcproxy/diag.h"
#include "svcproxy/model.h"
#include "svcproxy/source.h"

struct sp_kube;

struct sp_kube_opts {
	const char *kubeconfig; /* NULL: in-cluster */
	const char *node_name;
	int epfd;
	struct sp_dshared *sh; /* counters: reconnects, relists, source errors */
	const struct sp_source_limits *lim;
	/* Called from the loop when the objects in force changed. trigger_ns
	 * (CLOCK_REALTIME, 0 unknown) is the change's origin time for the
	 * network programming latency. */
	void (*changed)(void *arg, const struct sp_dchanges *ch, int64_t trigger_ns);
	void *arg;
};

struct sp_kube *sp_kube_open(const struct sp_kube_opts *opts, struct sp_diag *diag);
void sp_kube_close(struct sp_kube *k);
/* Every resource has been listed once (kube-proxy's "caches synced"). */
bool sp_kube_synced(const struct sp_kube *k);
/* Start over: relist every resource (SIGHUP). */
void sp_kube_relist(struct sp_kube *k);
int sp_kube_fill(const struct sp_kube *k, struct sp_cluster *c, struct sp_diag *diag);
/* False when this node's Node object is being deleted (kube-proxy's
 * nodeEligible). */
bool sp_kube_node_eligible(const struct sp_kube *k);

#endif
