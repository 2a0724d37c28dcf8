/* Conntrack flushing: an established conntrack entry keeps steering its flow
 * where the rules sent its first packet, so after a sync svcproxy deletes the
 * entries that the change made stale, and only those.
 *
 * Three layers, in the project's data-flow order:
 *  - plan (pure): a conntrack summary of a plan (what each Service port
 *    captures and which endpoints may answer it), and sp_ct_stale(), which
 *    compares two summaries and lists exact flush filters;
 *  - reconcile: the summary of the last programmed plan kept in a state file
 *    (so a one-shot `svcproxy sync` knows the previous plan), flushes that
 *    failed kept there too and retried, and sp_ct_flush_stale() tying it up;
 *  - kernel: ctnetlink dump + exact delete of the entries a filter matches.
 *
 * Call order for the caller: program the new rules first, then flush (a
 * flush before the rules change would let the next packet recreate the
 * stale entry through the old rules), then save the state. */
#ifndef SVCPROXY_CONNTRACK_H
#define SVCPROXY_CONNTRACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "svcproxy/config.h"
#include "svcproxy/diag.h"
#include "svcproxy/plan.h"
#include "svcproxy/util.h"

/* ---- summary of a plan, as far as conntrack cares ---- */

struct sp_ct_endpoint {
	struct sp_addr addr;
	uint16_t port; /* the endpoint's port: an entry's reply source port */
};

/* Sorted by address then port, no duplicates. */
struct sp_ct_eps {
	struct sp_ct_endpoint *items;
	size_t n;
};

struct sp_ct_svcport {
	char *id; /* kube-proxy's ServicePortName, "namespace/name:port_name" */
	int family;
	uint8_t protocol;
	struct sp_addr cluster_ip; /* family 0: none */
	uint16_t port;
	uint16_t node_port;		/* 0: none */
	struct sp_addr *external_addrs; /* captured externalIPs + LB IPs, sorted */
	size_t n_external_addrs;
	bool external_policy_local;
	bool internal_policy_local;
	bool affinity;
	uint32_t affinity_timeout;
	struct sp_ct_eps cluster_eps; /* the plan's cluster endpoint set */
	struct sp_ct_eps local_eps;   /* the plan's local endpoint set */
};

enum sp_ct_reason {
	SP_CT_ENDPOINT_GONE,   /* endpoint removed or no longer ready/serving */
	SP_CT_POLICY,	       /* eTP/iTP change: endpoint no longer allowed */
	SP_CT_POLICY_SNAT,     /* eTP Cluster -> Local: SNATed flow must keep the client source */
	SP_CT_ADDRESS_GONE,    /* Service, port, or one of its addresses removed */
	SP_CT_FIRST_ENDPOINTS, /* had no endpoints (rejected/black-holed), now has */
	SP_CT_AFFINITY,	       /* session affinity turned on/off or timeout changed */
	SP_CT_REASON_MAX,
};

/* One exact flush: entries of this family and protocol whose original
 * destination is orig_dst:orig_dport, and, when asked, whose reply source is
 * reply_src (and reply_sport, when not 0), and that were source-NATed
 * (conntrack status IPS_SRC_NAT). */
struct sp_ct_filter {
	int family;
	uint8_t protocol;
	struct sp_addr orig_dst;
	uint16_t orig_dport;
	bool match_reply_src;
	struct sp_addr reply_src;
	uint16_t reply_sport; /* 0: any */
	bool snat_only;
	/* Entries whose original source is in one of these are left alone:
	 * in-cluster clients of a Local Service's external address are
	 * short-circuited to every endpoint, so a policy change does not make
	 * their flows stale. Owned; usually empty. */
	struct sp_cidr *skip_src;
	size_t n_skip_src;
	enum sp_ct_reason reason;
	char *svc_id; /* for the log line; owned */
};

struct sp_ct_filters {
	struct sp_ct_filter *items;
	size_t n, cap;
};

struct sp_ct_summary {
	enum sp_mode mode;
	bool masquerade_all;
	/* Node ports are matched on these addresses (the plan's
	 * nodeport_addrs: the known node IPs). Sorted. */
	struct sp_addr *nodeport_addrs;
	size_t n_nodeport_addrs;
	/* In-cluster client sources: the cluster CIDRs and the node's own
	 * addresses (host prefixes). Sorted. */
	struct sp_cidr *cluster_sources;
	size_t n_cluster_sources;
	struct sp_ct_svcport *svcports; /* sorted by (id, family) */
	size_t n_svcports;
	/* Flushes that failed at the last sync, retried at the next one. */
	struct sp_ct_filters pending;
};

/* Pure (src/plan/stale.c). */
void sp_ct_summary_init(struct sp_ct_summary *s);
void sp_ct_summary_free(struct sp_ct_summary *s);
/* The caller frees out with sp_ct_summary_free(). */
void sp_ct_summary_from_plan(struct sp_ct_summary *out, const struct sp_plan *plan);
/* Sort svcports and their lists and drop duplicates; a summary read from a
 * file or built by hand goes through this before sp_ct_stale(). */
void sp_ct_summary_normalize(struct sp_ct_summary *s);

/* Same content (both normalized), pending flushes included. */
bool sp_ct_summary_equal(const struct sp_ct_summary *a, const struct sp_ct_summary *b);

void sp_ct_filters_init(struct sp_ct_filters *f);
void sp_ct_filters_free(struct sp_ct_filters *f);
struct sp_ct_filter *sp_ct_filters_add(struct sp_ct_filters *f);
/* Sort and drop duplicates and filters another one already covers. */
void sp_ct_filters_normalize(struct sp_ct_filters *f);
void sp_ct_filter_copy(struct sp_ct_filter *dst, const struct sp_ct_filter *src);
/* "udp 10.96.0.10:53 reply-src 10.244.1.5:5353 snat (endpoint-gone, ns/svc:dns)";
 * " off-cluster" after snat when the filter skips in-cluster sources. */
void sp_ct_filter_format(const struct sp_ct_filter *f, struct sp_buf *out);
const char *sp_ct_reason_name(enum sp_ct_reason r);	/* "endpoint-gone" */
enum sp_ct_reason sp_ct_reason_parse(const char *name); /* SP_CT_REASON_MAX if unknown */

/* The filters for the entries that the change from old to new made stale,
 * appended to out (normalized). Rules (kube-proxy's, plus the issue's):
 *  - endpoint gone (no longer in the new cluster or local set): UDP and
 *    SCTP entries to every address of the Service port, reply src = it;
 *  - traffic policy changed: entries (all protocols) to the addresses of
 *    the changed class whose reply src the new policy no longer allows;
 *    eTP Cluster -> Local (without masquerade-all): SNATed entries to the
 *    external addresses from the endpoints still allowed; for external
 *    addresses, in-cluster clients (cluster CIDRs, node addresses) are
 *    skipped, as Local still sends them to every endpoint;
 *  - Service port or address gone: UDP entries to it;
 *  - an address whose endpoint set was empty (or that is new) now has
 *    endpoints: UDP entries to it that were never DNATed (reply src =
 *    orig dst);
 *  - session affinity changed: UDP entries to the Service port's addresses,
 *    so that every flow is placed again under the new affinity rule.
 * TCP is left alone except on a traffic policy change.
 *
 * "The affinity state" of a Service port, per mode, and who resets it:
 *  - conntrack (all modes): established UDP flows keep the endpoint they had
 *    whatever the affinity rule says now; flushed here (the rule above);
 *  - nftables: the client -> endpoint records are elements of the port's
 *    dynamic affinity map, whose type carries the timeout; turning affinity
 *    off deletes the map, on creates it empty, a timeout change replaces it
 *    (a new set type): the nft sync resets it;
 *  - iptables: xt_recent lists, one per endpoint chain; the kernel frees a
 *    list with the last rule that names it (affinity off), a new timeout is
 *    applied by the rules' --rcheck --seconds at the next packet;
 *  - ipvs: persistence templates live in IPVS's own connection table, not in
 *    nf_conntrack, and cannot be deleted over netlink; with persistence off
 *    IPVS stops consulting them and they expire, and nf_conntrack entries
 *    of IPVS flows (net.ipv4.vs.conntrack=1) are flushed here like others.
 *
 * IPVS mode: IPVS steers a flow by its own connection table. A real
 * server leaving a virtual server ends its connections at their next packet
 * (expire_nodest_conn); one that stays (the local endpoint on Cluster ->
 * Local) keeps its connection, and deleting the flow's SNATed entry is then
 * enough: the next packet gets a fresh entry along the same connection,
 * without masquerade (kernel lab, Linux 6.1, tests/integration/
 * conntrack-ipvs.sh; docs/ipvs.md "Conntrack"). */
void sp_ct_stale(const struct sp_ct_summary *old, const struct sp_ct_summary *new,
		 struct sp_ct_filters *out);

/* ---- state file (src/reconcile/ct_state.c) ---- */

#define SP_CT_DEFAULT_STATE_DIR "/run/svcproxy"

/* "<dir>/<mode>.state"; dir NULL means SP_CT_DEFAULT_STATE_DIR. Caller frees. */
char *sp_ct_state_path(const char *dir, enum sp_mode mode);
/* Returns 1 loaded, 0 no file (out empty: no previous plan), -1 unreadable
 * or corrupt (warning in diag, out empty: flush nothing, the next save
 * overwrites it). */
int sp_ct_state_load(struct sp_ct_summary *out, const char *path, struct sp_diag *diag);
/* Atomic: a temporary file in the same directory, fsync, rename. Creates the
 * directory (0755) if needed. Returns 0 or -1 (diag). */
int sp_ct_state_save(const struct sp_ct_summary *s, const char *path, struct sp_diag *diag);
/* The same JSON text save writes, for tests and the helper. */
void sp_ct_summary_to_json(const struct sp_ct_summary *s, struct sp_buf *out);
int sp_ct_summary_from_json(struct sp_ct_summary *out, const char *text, const char *origin,
			    struct sp_diag *diag);

/* ---- flushing ---- */

struct sp_ct_handle; /* an open ctnetlink socket (src/kernel/conntrack.c) */

struct sp_ct_stats {
	size_t filters;	       /* filters tried */
	size_t filters_failed; /* left pending */
	size_t entries_deleted;
	size_t dumps; /* dump requests sent */
};

/* Flush what old -> new made stale plus old->pending. Filters that could not
 * be flushed go to *pending (appended; the caller stores them with the new
 * summary). old NULL: no previous plan (after a reboot the table is empty
 * anyway): nothing is flushed. Returns 0 all flushed, 1 something left pending (warning in diag).
 * Never fatal. */
int sp_ct_flush_stale(const struct sp_ct_summary *old, const struct sp_ct_summary *new,
		      struct sp_ct_filters *pending, struct sp_ct_stats *stats,
		      struct sp_diag *diag);
/* The same, reusing *h: opened there when a flush is needed and *h is NULL;
 * the caller closes it. */
int sp_ct_flush_stale_with(struct sp_ct_handle **h, const struct sp_ct_summary *old,
			   const struct sp_ct_summary *new, struct sp_ct_filters *pending,
			   struct sp_ct_stats *stats, struct sp_diag *diag);

/* One-shot `svcproxy sync` after the backend programmed plan: load the
 * state of dir (NULL: default) for plan->mode, flush, save the new summary
 * with whatever is left pending. Returns as sp_ct_flush_stale(), or 1 when
 * the state could not be saved (warning). */
int sp_ct_sync_plan(const char *state_dir, const struct sp_plan *plan, struct sp_ct_stats *stats,
		    struct sp_diag *diag);
/* The same from a summary, with the state file path given: new->pending is
 * replaced by what is left pending. */
int sp_ct_sync_summary(const char *path, struct sp_ct_summary *new, struct sp_ct_stats *stats,
		       struct sp_diag *diag);

/* For the daemon: the previous summary kept in memory (loaded once from the
 * state file at start), one ctnetlink socket kept open, the state file
 * rewritten after each flush so a restart or a later one-shot sync knows
 * what is programmed. state_path NULL: memory only. Never NULL. */
struct sp_ct_tracker;
struct sp_ct_tracker *sp_ct_tracker_new(const char *state_path, struct sp_diag *diag);
void sp_ct_tracker_free(struct sp_ct_tracker *t);
/* Call after the backend programmed plan. Returns as sp_ct_flush_stale(). */
int sp_ct_tracker_sync(struct sp_ct_tracker *t, const struct sp_plan *plan,
		       struct sp_ct_stats *stats, struct sp_diag *diag);

/* ---- kernel (src/kernel/conntrack.c) ---- */

/* Opens ctnetlink in the current network namespace. NULL and diag on
 * failure. */
struct sp_ct_handle *sp_ct_open(struct sp_diag *diag);
void sp_ct_close(struct sp_ct_handle *h);
/* Delete every entry each filter matches. deleted[i] gets filter i's count,
 * failed[i] whether it failed (diag says why). Returns the number of failed
 * filters. */
size_t sp_ct_delete_matching(struct sp_ct_handle *h, const struct sp_ct_filter *filters, size_t n,
			     size_t *deleted, bool *failed, struct sp_ct_stats *stats,
			     struct sp_diag *diag);
/* Count the entries a filter matches (tests, and `svcproxy` diagnostics). */
int sp_ct_count_matching(struct sp_ct_handle *h, const struct sp_ct_filter *f, size_t *count,
			 struct sp_diag *diag);

#endif
