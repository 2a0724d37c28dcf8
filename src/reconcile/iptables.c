/* iptables mode: lower the plan to kube-proxy's chain layout and make the
 * legacy filter and nat tables hold it, one libiptc commit per table. The
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
	int family;
};

/* Filter first: it holds the rejects that nat's missing DNAT would
 * otherwise leave unanswered. */
static const enum sp_ipt_table_id table_order[] = {SP_IPT_FILTER, SP_IPT_NAT};

static const struct sp_iptc_owner kube_owner = {
	.names = sp_ipt_kube_owned_names,
	.prefixes = sp_ipt_kube_owned_prefixes,
};

static size_t skipped_family(const struct sp_plan *plan, int family)
{
	size_t n = 0;

	for (size_t i = 0; i < plan->n_svcports; i++)
		n += plan->svcports[i].family != family;
	return n;
}

static void ipt_print_plan(const struct sp_plan *plan, struct sp_buf *out)
{
	struct sp_ipt_ruleset rs;
	size_t skipped = skipped_family(plan, AF_INET);

	if (skipped)
		sp_buf_addf(out,
			    "# %zu IPv6 service port(s) not shown: iptables mode programs IPv4 "
			    "only\n",
			    skipped);
	sp_ipt_ruleset_init(&rs, AF_INET);
	sp_ipt_lower(plan, &rs);
	sp_ipt_print_ruleset(&rs, out);
	sp_ipt_ruleset_free(&rs);
}

static void ipt_print_plan_json(const struct sp_plan *plan, struct sp_buf *out)
{
	struct sp_ipt_ruleset rs;

	sp_ipt_ruleset_init(&rs, AF_INET);
	sp_ipt_lower(plan, &rs);
	sp_ipt_print_ruleset_json(&rs, out);
	sp_ipt_ruleset_free(&rs);
}

static struct sp_backend *ipt_open(const struct sp_config *cfg, struct sp_diag *diag)
{
	struct sp_backend *be = sp_xcalloc(1, sizeof(*be));
	char path[256];

	(void)cfg;
	be->family = AF_INET;
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

static void warn_skipped(const struct sp_plan *plan, struct sp_diag *diag)
{
	size_t skipped = skipped_family(plan, AF_INET);

	if (skipped)
		sp_diag_warn(diag,
			     "iptables mode: %zu IPv6 service port(s) not programmed "
			     "(IPv4 only)",
			     skipped);
}

static int ipt_sync(struct sp_backend *be, const struct sp_plan *plan, bool full,
		    struct sp_sync_stats *stats, struct sp_diag *diag)
{
	struct sp_ipt_ruleset rs;
	struct sp_iptc_stats st = {0};
	size_t failed = 0;

	(void)full; /* libiptc reads the whole table on every sync anyway */
	memset(stats, 0, sizeof(*stats));
	stats->full = true;
	warn_skipped(plan, diag);
	sp_ipt_ruleset_init(&rs, be->family);
	sp_ipt_lower(plan, &rs);
	for (size_t i = 0; i < SP_ARRAY_SIZE(table_order); i++) {
		if (sp_iptc_sync_table(&rs.tables[table_order[i]], &kube_owner, NULL, &st, diag) <
		    0)
			failed++;
	}
	sp_ipt_ruleset_free(&rs);
	stats->messages_sent = st.commits;
	stats->objects_changed = st.chains_changed;
	stats->objects_unchanged = st.chains_unchanged;
	stats->rules_total = st.rules_total;
	if (failed == SP_ARRAY_SIZE(table_order))
		return -1;
	return failed ? 1 : 0;
}

static int ipt_diff(struct sp_backend *be, const struct sp_plan *plan, struct sp_buf *out,
		    struct sp_diag *diag)
{
	struct sp_ipt_ruleset rs;
	struct sp_iptc_stats st = {0};
	int ret = 0;

	sp_ipt_ruleset_init(&rs, be->family);
	sp_ipt_lower(plan, &rs);
	for (size_t i = 0; i < SP_ARRAY_SIZE(table_order) && ret >= 0; i++) {
		int r = sp_iptc_sync_table(&rs.tables[table_order[i]], &kube_owner, out, &st, diag);

		ret = r < 0 ? -1 : (ret || r);
	}
	sp_ipt_ruleset_free(&rs);
	return ret;
}

static int ipt_cleanup(struct sp_backend *be, struct sp_diag *diag)
{
	struct sp_iptc_stats st = {0};
	int ret = 0;

	(void)be;
	for (size_t i = 0; i < SP_ARRAY_SIZE(table_order); i++) {
		if (sp_iptc_cleanup_table(table_order[i], &kube_owner, &st, diag) < 0)
			ret = -1;
	}
	return ret;
}

static int ipt_print_state(struct sp_backend *be, struct sp_buf *out, struct sp_diag *diag)
{
	(void)be;
	for (size_t i = 0; i < SP_ARRAY_SIZE(table_order); i++) {
		struct sp_ipt_table t;

		if (sp_iptc_read_table(table_order[i], &kube_owner, &t, diag) < 0) {
			sp_ipt_table_free(&t);
			return -1;
		}
		sp_ipt_print_table(&t, out);
		sp_ipt_table_free(&t);
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
