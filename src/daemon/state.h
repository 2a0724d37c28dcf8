/* What the loop publishes for the HTTP servers: health timestamps, metrics,
 * the last programmed plan, the local-endpoint counts of Local Services.
 * The loop writes it after each event; the HTTP threads read it; one mutex.
 * The formatting and the health rule are pure functions, tested alone. */
#ifndef SP_DAEMON_STATE_H
#define SP_DAEMON_STATE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "svcproxy/plan.h"
#include "svcproxy/util.h"

struct sp_dhist {
	const double *bounds;
	size_t n_bounds;
	uint64_t *buckets; /* cumulative counts are computed when printed */
	double sum;
	uint64_t count;
};

struct sp_dmetrics {
	struct sp_dhist sync_duration; /* every sync */
	struct sp_dhist sync_full;     /* full resyncs */
	struct sp_dhist sync_partial;  /* incremental syncs */
	struct sp_dhist netprog;       /* change seen -> programmed */
	double last_sync_timestamp;    /* seconds since the epoch, last success */
	double last_queued_timestamp;  /* last change queued */
	uint64_t endpoint_changes_total;
	uint64_t service_changes_total;
	uint64_t endpoint_changes_pending;
	uint64_t service_changes_pending;
	uint64_t sync_errors_total;	  /* the backend refused the whole sync */
	uint64_t sync_refusals_total;	  /* syncs where something was refused */
	uint64_t source_errors_total;	  /* bad files, garbage on a watch */
	uint64_t source_reconnects_total; /* watch reconnects after an error */
	uint64_t source_relists_total;	  /* 410 Gone and other relists */
	uint64_t conntrack_flushed_total;
	uint64_t healthz[2], livez[2]; /* [0] 200, [1] 503 */
	size_t rules_total;	       /* objects in the programmed state */
	size_t no_local_internal, no_local_external;
	size_t services, svcports;
};

struct sp_dhc_service {
	uint16_t port; /* healthCheckNodePort */
	char *namespace;
	char *name;
	size_t local_endpoints;
};

/* The last programmed plan, kept for /rules, which prints it on request:
 * printing 10,000 Services after every sync cost as much as the sync. The
 * HTTP thread holds a reference while it prints, so a sync replacing the
 * plan never frees it under the printer. */
struct sp_dplan_ref {
	struct sp_plan plan;
	unsigned refs; /* under sp_dshared.lock */
};

struct sp_dshared {
	pthread_mutex_t lock;
	struct sp_dmetrics m;
	const char *mode_name;
	struct sp_dplan_ref *rules_plan; /* NULL until the first successful sync */
	void (*print_plan)(const struct sp_plan *plan, struct sp_buf *out);
	/* kube-proxy's health rule: unhealthy once a queued change has waited
	 * longer than timeout (2 x sync period); here also as soon as the
	 * last sync failed, so that green means the rules are current. */
	int64_t last_updated_ns;  /* CLOCK_REALTIME of the last successful sync */
	int64_t pending_since_ns; /* CLOCK_MONOTONIC of the oldest unsynced change; 0 none */
	int64_t timeout_ns;
	bool sync_failing;
	bool node_eligible; /* false when this node is being deleted */
	double start_time;  /* seconds since the epoch */
	struct sp_dhc_service *hc;
	size_t n_hc, cap_hc;
};

void sp_dshared_init(struct sp_dshared *sh, const char *mode_name, int64_t timeout_ns);
void sp_dshared_free(struct sp_dshared *sh);
void sp_dhist_observe(struct sp_dhist *h, double value);
/* Make plan (moved in: the caller's copy is left empty) the one /rules
 * prints. Takes the lock. */
void sp_dshared_set_plan(struct sp_dshared *sh, struct sp_plan *plan);
/* A reference to the plan in force (NULL before the first sync); give it
 * back with sp_dshared_put_plan. Both take the lock. */
struct sp_dplan_ref *sp_dshared_get_plan(struct sp_dshared *sh);
void sp_dshared_put_plan(struct sp_dshared *sh, struct sp_dplan_ref *ref);

struct sp_dhealth {
	bool healthy;
	int64_t last_updated_ns; /* realtime, as kube-proxy reports it */
};

/* The rule, at mono_now / real_now. Caller holds the lock. */
struct sp_dhealth sp_dhealth_eval(const struct sp_dshared *sh, int64_t mono_now, int64_t real_now);
/* kube-proxy's bodies: {"lastUpdated": ..,"currentTime": .., "nodeEligible": ..}
 * for /healthz (with_node) and without nodeEligible for /livez. Go's
 * time.Time formatting. */
void sp_dhealth_body(struct sp_buf *out, const struct sp_dhealth *h, int64_t real_now,
		     bool with_node, bool node_eligible);
/* The per-Service health check body, kube-proxy's shape. */
void sp_dhc_body(struct sp_buf *out, const struct sp_dhc_service *svc, bool proxy_healthy);
/* Prometheus text exposition of everything. Caller holds the lock. */
void sp_dmetrics_format(const struct sp_dshared *sh, struct sp_buf *out);

int64_t sp_dclock_ns(int clock_id);

#endif
