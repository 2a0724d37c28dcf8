/* iptables mode: lower the plan to kube-proxy's chain layout and make the
 * legacy filter and nat tables hold it (iptables, and ip6tables when the
 * node or a service has IPv6), one libiptc commit per table. The
 * kernel is always read back (libiptc reads the whole table anyway), so a
 * restart, a crash between commits or a chain deleted by hand is repaired by
 * the next sync, and only chains whose rules differ are rewritten. */
#include "svcproxy/backend.h"
#include "svcproxy/ipt.h"
#include "svcproxy/iptc.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct sp_backend {
	int unused;
};

/* Filter first: it holds the rejects that nat's missing DNAT would
 * otherwise leave unanswered. */
static const enum sp_ipt_table_id table_order[] = {SP_IPT_FILTER, SP_IPT_NAT};

static const struct sp_iptc_owner kube_owner = {
	.names = sp_ipt_kube_owned_names,
	.prefixes = sp_ipt_kube_owned_prefixes,
};

/* Heads the ip6tables part of the text (plan, diff, state): what follows is
 * input for ip6tables-restore, what precedes for iptables-restore. */
static const char ip6_header[] = "# ip6tables\n";

/* IPv4 is always programmed (as kube-proxy on an IPv4 or dual-stack node);
 * IPv6 when the node or a service port has IPv6. */
static bool ipv6_active(const struct sp_plan *plan)
{
	for (size_t i = 0; i < plan->n_svcports; i++) {
		if (plan->svcports[i].family == AF_INET6)
			return true;
	}
	for (size_t i = 0; i < plan->n_node_ips; i++) {
		if (plan->node_ips[i].family == AF_INET6)
			return true;
	}
	for (size_t i = 0; i < plan->n_cluster_cidrs; i++) {
		if (plan->cluster_cidrs[i].addr.family == AF_INET6)
			return true;
	}
	return false;
}

static void print_family(const struct sp_plan *plan, int family, bool json, struct sp_buf *out)
{
	struct sp_ipt_ruleset rs;

	sp_ipt_ruleset_init(&rs, family);
	sp_ipt_lower(plan, &rs);
	if (json)
		sp_ipt_print_ruleset_json(&rs, out);
	else
		sp_ipt_print_ruleset(&rs, out);
	sp_ipt_ruleset_free(&rs);
}

static void ipt_print_plan(const struct sp_plan *plan, struct sp_buf *out)
{
	print_family(plan, AF_INET, false, out);
	if (ipv6_active(plan)) {
		sp_buf_add(out, ip6_header);
		print_family(plan, AF_INET6, false, out);
	}
}

/* {"ipv4": {...}, "ipv6": {...} or null} */
static void ipt_print_plan_json(const struct sp_plan *plan, struct sp_buf *out)
{
	sp_buf_add(out, "{\"ipv4\":");
	print_family(plan, AF_INET, true, out);
	sp_buf_add(out, ",\"ipv6\":");
	if (ipv6_active(plan))
		print_family(plan, AF_INET6, true, out);
	else
		sp_buf_add(out, "null");
	sp_buf_add(out, "}\n");
}

static struct sp_backend *ipt_open(const struct sp_config *cfg, struct sp_diag *diag)
{
	struct sp_backend *be = sp_xcalloc(1, sizeof(*be));
	char path[256];

	(void)cfg;
	if (sp_iptc_host_iptables_is_nft(path, sizeof(path)))
		sp_diag_warn(diag,
			     "this host's iptables command is the nf_tables variant (%s): "
			     "iptables mode programs the legacy x_tables through libiptc, "
			     "which run alongside the nf_tables rules and are invisible to "
			     "`iptables`; choose --proxy-mode nftables on this host",
			     path);
	return be;
}

static void ipt_close(struct sp_backend *be)
{
	free(be);
}

/* Sync (diff == NULL) or diff one family's tables. Returns how many tables
 * failed, and ORs into *changed whether something changed. */
static size_t apply_family(const struct sp_plan *plan, int family, struct sp_buf *diff,
			   struct sp_iptc_stats *st, bool *changed, struct sp_diag *diag)
{
	struct sp_ipt_ruleset rs;
	struct sp_buf text;
	size_t failed = 0;

	sp_buf_init(&text);
	sp_ipt_ruleset_init(&rs, family);
	sp_ipt_lower(plan, &rs);
	for (size_t i = 0; i < SP_ARRAY_SIZE(table_order); i++) {
		int r = sp_iptc_sync_table(&rs.tables[table_order[i]], &kube_owner,
					   diff ? &text : NULL, st, diag);

		failed += r < 0;
		*changed |= r > 0;
	}
	if (diff && text.len) {
		if (family == AF_INET6)
			sp_buf_add(diff, ip6_header);
		sp_buf_add(diff, text.data);
	}
	sp_buf_free(&text);
	sp_ipt_ruleset_free(&rs);
	return failed;
}

static int ipt_sync(struct sp_backend *be, const struct sp_plan *plan, bool full,
		    struct sp_sync_stats *stats, struct sp_diag *diag)
{
	struct sp_iptc_stats st = {0};
	size_t failed, tables = 2 * SP_ARRAY_SIZE(table_order);
	bool changed = false;

	(void)be;
	(void)full; /* libiptc reads the whole table on every sync anyway */
	memset(stats, 0, sizeof(*stats));
	stats->full = true;
	failed = apply_family(plan, AF_INET, NULL, &st, &changed, diag);
	if (ipv6_active(plan))
		failed += apply_family(plan, AF_INET6, NULL, &st, &changed, diag);
	else
		tables /= 2;
	stats->messages_sent = st.commits;
	stats->objects_changed = st.chains_changed;
	stats->objects_unchanged = st.chains_unchanged;
	stats->rules_total = st.rules_total;
	if (failed == tables)
		return -1;
	return failed ? 1 : 0;
}

static int ipt_diff(struct sp_backend *be, const struct sp_plan *plan, struct sp_buf *out,
		    struct sp_diag *diag)
{
	struct sp_iptc_stats st = {0};
	bool changed = false;
	size_t failed;

	(void)be;
	failed = apply_family(plan, AF_INET, out, &st, &changed, diag);
	if (ipv6_active(plan))
		failed += apply_family(plan, AF_INET6, out, &st, &changed, diag);
	return failed ? -1 : changed;
}

/* ip6tables leftovers are removed when the tables can be opened at all: a
 * host without IPv6 netfilter has none. */
static int cleanup_family(int family, struct sp_diag *diag)
{
	struct sp_iptc_stats st = {0};
	struct sp_diag local;
	int ret = 0;

	sp_diag_init(&local);
	for (size_t i = 0; i < SP_ARRAY_SIZE(table_order); i++) {
		if (sp_iptc_cleanup_table_family(family, table_order[i], &kube_owner, &st, &local) <
		    0)
			ret = -1;
	}
	if (family == AF_INET || !sp_diag_has(&local, SP_SEV_ERROR, "reading the table"))
		sp_diag_merge(diag, &local);
	else
		ret = 0;
	sp_diag_free(&local);
	return ret;
}

static int ipt_cleanup(struct sp_backend *be, struct sp_diag *diag)
{
	int v4, v6;

	(void)be;
	v4 = cleanup_family(AF_INET, diag);
	v6 = cleanup_family(AF_INET6, diag);
	return v4 < 0 || v6 < 0 ? -1 : 0;
}

static bool has_owned_chains(const struct sp_ipt_table *t)
{
	for (size_t i = 0; i < t->n_chains; i++) {
		if (!t->chains[i].builtin || t->chains[i].n_rules)
			return true;
	}
	return false;
}

static int ipt_print_state(struct sp_backend *be, struct sp_buf *out, struct sp_diag *diag)
{
	struct sp_ipt_table v6[SP_ARRAY_SIZE(table_order)];
	bool any_v6 = false;

	(void)be;
	for (size_t i = 0; i < SP_ARRAY_SIZE(table_order); i++) {
		struct sp_ipt_table t;
		int r = sp_iptc_read_table_family(AF_INET, table_order[i], &kube_owner, &t, diag);

		if (r == 0)
			sp_ipt_print_table(&t, out);
		sp_ipt_table_free(&t);
		if (r < 0)
			return -1;
	}
	/* IPv6 only when the agent has something there. */
	for (size_t i = 0; i < SP_ARRAY_SIZE(table_order); i++) {
		struct sp_diag ignore;

		sp_diag_init(&ignore);
		if (sp_iptc_read_table_family(AF_INET6, table_order[i], &kube_owner, &v6[i],
					      &ignore) == 0)
			any_v6 |= has_owned_chains(&v6[i]);
		sp_diag_free(&ignore);
	}
	if (any_v6)
		sp_buf_add(out, ip6_header);
	for (size_t i = 0; i < SP_ARRAY_SIZE(table_order); i++) {
		if (any_v6)
			sp_ipt_print_table(&v6[i], out);
		sp_ipt_table_free(&v6[i]);
	}
	return 0;
}

const struct sp_backend_ops sp_iptables_ops = {
	.mode = SP_MODE_IPTABLES,
	.print_plan = ipt_print_plan,
	.print_plan_json = ipt_print_plan_json,
	.open = ipt_open,
	.close = ipt_close,
	.sync = ipt_sync,
	.diff = ipt_diff,
	.cleanup = ipt_cleanup,
	.print_state = ipt_print_state,
};
