/* The interface between the command line / daemon and a proxy mode. Each mode
 * (nftables, iptables, ipvs) implements it in src/reconcile: it lowers the
 * plan to its kernel objects, reads back what it owns, diffs and applies. */
#ifndef SVCPROXY_BACKEND_H
#define SVCPROXY_BACKEND_H

#include <stdbool.h>
#include <stddef.h>

#include "svcproxy/config.h"
#include "svcproxy/diag.h"
#include "svcproxy/plan.h"
#include "svcproxy/util.h"

/* What one sync did, for tests, logs and metrics. */
struct sp_sync_stats {
	bool full;		/* read back everything (else: from the cache) */
	size_t messages_sent;	/* netlink messages (or libiptc commits) */
	size_t objects_changed; /* chains, map elements, virtual servers, ... */
	size_t objects_unchanged;
	size_t rules_total; /* in the programmed state, for metrics */
};

struct sp_backend;

struct sp_backend_ops {
	enum sp_mode mode;
	/* Print the desired state in the mode's native syntax (nft -f script,
	 * iptables-save text, ipvsadm-save lines plus helpers). */
	void (*print_plan)(const struct sp_plan *plan, struct sp_buf *out);
	/* The same as JSON: an object for the mode's lowered state. */
	void (*print_plan_json)(const struct sp_plan *plan, struct sp_buf *out);
	/* Open sockets (in the current network namespace). NULL and diag on
	 * failure. */
	struct sp_backend *(*open)(const struct sp_config *cfg, struct sp_diag *diag);
	void (*close)(struct sp_backend *be);
	/* Make the kernel equal to the plan. full: read the kernel state back
	 * first (always the case for the first sync of a process); else diff
	 * against what this process last programmed. Returns 0 all programmed,
	 * 1 something refused (diag says what; the rest is programmed), -1
	 * nothing changed (diag says why; the previous state is whole). */
	int (*sync)(struct sp_backend *be, const struct sp_plan *plan, bool full,
		    struct sp_sync_stats *stats, struct sp_diag *diag);
	/* What a sync would change, in print_plan's syntax. Returns 0 nothing
	 * would change, 1 something would, -1 error. */
	int (*diff)(struct sp_backend *be, const struct sp_plan *plan, struct sp_buf *out,
		    struct sp_diag *diag);
	/* Remove everything the mode owns; 0 or -1. */
	int (*cleanup)(struct sp_backend *be, struct sp_diag *diag);
	/* The programmed kernel state the mode owns, in print_plan's syntax. */
	int (*print_state)(struct sp_backend *be, struct sp_buf *out, struct sp_diag *diag);
};

extern const struct sp_backend_ops sp_nftables_ops;
extern const struct sp_backend_ops sp_iptables_ops;
extern const struct sp_backend_ops sp_ipvs_ops;

const struct sp_backend_ops *sp_backend_for_mode(enum sp_mode mode);

#endif
