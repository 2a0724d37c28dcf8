/* Programming legacy x_tables through libiptc (libip4tc, and libip6tc for
 * tables whose family is AF_INET6), Kubernetes-agnostic:
 * "make these chains hold these rules in table T; chains matching this
 * ownership are mine, nothing else is". Used by the iptables mode for all
 * of its state and by the IPVS mode for its helper rules.
 *
 * Every call takes the xtables lock (/run/xtables.lock, or
 * $XTABLES_LOCKFILE, as iptables does) for its whole read-modify-commit, and
 * commits a table at most once, so a reader never sees half a change. */
#ifndef SVCPROXY_IPTC_H
#define SVCPROXY_IPTC_H

#include <stdbool.h>
#include <stddef.h>

#include "svcproxy/diag.h"
#include "svcproxy/ipt.h"
#include "svcproxy/util.h"

/* Which user chains belong to the caller: exact names and name prefixes,
 * both NULL-terminated lists (either may be NULL). */
struct sp_iptc_owner {
	const char *const *names;
	const char *const *prefixes;
};

bool sp_iptc_owned(const struct sp_iptc_owner *own, const char *chain);

struct sp_iptc_stats {
	size_t commits;	       /* iptc_commit calls */
	size_t chains_changed; /* added, rewritten or deleted (and hook chains edited) */
	size_t chains_unchanged;
	size_t rules_total; /* rules in the wanted owned chains */
};

/* Make table want->id hold exactly want's user chains among the owned ones:
 * missing chains are created, chains whose rules differ are rewritten whole,
 * identical chains are left alone (counters kept), owned chains not in want
 * are deleted. want's built-in chains list jump rules that must exist: a
 * missing one is inserted at the head (in want's order) and then kept;
 * other rules of built-in chains are not touched, except rules jumping to
 * a deleted owned chain. Anyone else's chains are never touched.
 *
 * diff != NULL: change nothing, append what would change in
 * `iptables-restore --noflush` syntax. Returns 0 (nothing to change), 1
 * (changed / would change) or -1 (diag says why; the table is as before). */
int sp_iptc_sync_table(const struct sp_ipt_table *want, const struct sp_iptc_owner *own,
		       struct sp_buf *diff, struct sp_iptc_stats *stats, struct sp_diag *diag);

/* The owned chains of a table as programmed, plus the built-in chains'
 * rules that jump to them. out is initialised here; the caller frees it
 * with sp_ipt_table_free(). 0 or -1. */
int sp_iptc_read_table(enum sp_ipt_table_id id, const struct sp_iptc_owner *own,
		       struct sp_ipt_table *out, struct sp_diag *diag);

/* Remove every owned chain and every built-in chain rule jumping to one, in
 * one commit. 0 (nothing there), 1 (removed) or -1. */
int sp_iptc_cleanup_table(enum sp_ipt_table_id id, const struct sp_iptc_owner *own,
			  struct sp_iptc_stats *stats, struct sp_diag *diag);

/* The same for a family (AF_INET: iptables, AF_INET6: ip6tables); the two
 * above are AF_INET. sp_iptc_sync_table() takes the family from want. */
int sp_iptc_read_table_family(int family, enum sp_ipt_table_id id, const struct sp_iptc_owner *own,
			      struct sp_ipt_table *out, struct sp_diag *diag);
int sp_iptc_cleanup_table_family(int family, enum sp_ipt_table_id id,
				 const struct sp_iptc_owner *own, struct sp_iptc_stats *stats,
				 struct sp_diag *diag);

/* How long to wait for the xtables lock before giving up (default 10 s). */
void sp_iptc_set_lock_timeout(unsigned ms);

/* True when the host's `iptables` command is the nf_tables variant (its
 * rules live in nf_tables, where libiptc neither sees nor changes them);
 * path receives the resolved binary. */
bool sp_iptc_host_iptables_is_nft(char *path, size_t len);

#endif
