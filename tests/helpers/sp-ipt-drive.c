/* Test driver for iptables mode: read Kubernetes JSON, plan, run one backend
 * operation, as `svcproxy plan|sync|diff|cleanup --proxy-mode iptables`
 * does, linking only the iptables mode (tests then do not depend on other
 * modules in progress).
 *
 *   sp-ipt-drive [--node NAME] [--node-ip IP] [--cluster-cidr CIDR]
 *                [--masquerade-all] [--stats] [--lock-timeout-ms N]
 *                plan|json|sync|diff|cleanup|state SOURCE...
 *
 * --stats prints "stats: messages_sent N objects_changed N objects_unchanged
 * N rules_total N" on stderr after a sync. Exit: 0 done, 1 something
 * refused or (diff) something would change, 2 failed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svcproxy/backend.h"
#include "svcproxy/iptc.h"
#include "svcproxy/source.h"

struct options {
	struct sp_config cfg;
	bool stats;
};

static void usage(void)
{
	fprintf(stderr, "usage: sp-ipt-drive [--node NAME] [--node-ip IP] [--cluster-cidr CIDR] "
			"[--masquerade-all] [--stats] [--lock-timeout-ms N] "
			"plan|json|sync|diff|cleanup|state SOURCE...\n");
	exit(2);
}

static void push_addr(struct sp_config *cfg, const char *text)
{
	struct sp_addr a;

	if (!sp_addr_parse(text, &a))
		usage();
	cfg->node_ips = sp_xrealloc(cfg->node_ips, (cfg->n_node_ips + 1) * sizeof(a));
	cfg->node_ips[cfg->n_node_ips++] = a;
}

static void push_cidr(struct sp_config *cfg, const char *text)
{
	struct sp_cidr c;

	if (!sp_cidr_parse(text, &c))
		usage();
	cfg->cluster_cidrs =
		sp_xrealloc(cfg->cluster_cidrs, (cfg->n_cluster_cidrs + 1) * sizeof(c));
	cfg->cluster_cidrs[cfg->n_cluster_cidrs++] = c;
}

static int parse(struct options *o, int argc, char **argv)
{
	int i = 1;

	for (; i < argc && !strncmp(argv[i], "--", 2); i++) {
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(argv[i], "--masquerade-all")) {
			o->cfg.masquerade_all = true;
			continue;
		}
		if (!strcmp(argv[i], "--stats")) {
			o->stats = true;
			continue;
		}
		if (!val)
			usage();
		if (!strcmp(argv[i], "--node")) {
			free(o->cfg.hostname);
			o->cfg.hostname = sp_xstrdup(val);
		} else if (!strcmp(argv[i], "--node-ip")) {
			push_addr(&o->cfg, val);
		} else if (!strcmp(argv[i], "--cluster-cidr")) {
			push_cidr(&o->cfg, val);
		} else if (!strcmp(argv[i], "--lock-timeout-ms")) {
			sp_iptc_set_lock_timeout((unsigned)strtoul(val, NULL, 10));
		} else {
			usage();
		}
		i++;
	}
	return i;
}

static int operate(const char *cmd, const struct options *o, const struct sp_plan *plan,
		   struct sp_buf *out, struct sp_diag *diag)
{
	const struct sp_backend_ops *ops = &sp_iptables_ops;
	struct sp_sync_stats st = {0};
	struct sp_backend *be;
	int ret;

	if (!strcmp(cmd, "plan") || !strcmp(cmd, "json")) {
		(!strcmp(cmd, "plan") ? ops->print_plan : ops->print_plan_json)(plan, out);
		return 0;
	}
	be = ops->open(&o->cfg, diag);
	if (!be)
		return 2;
	if (!strcmp(cmd, "sync")) {
		ret = ops->sync(be, plan, true, &st, diag);
		if (o->stats)
			fprintf(stderr,
				"stats: messages_sent %zu objects_changed %zu objects_unchanged "
				"%zu "
				"rules_total %zu\n",
				st.messages_sent, st.objects_changed, st.objects_unchanged,
				st.rules_total);
		ret = ret < 0 ? 2 : ret;
	} else if (!strcmp(cmd, "diff")) {
		ret = ops->diff(be, plan, out, diag);
		ret = ret < 0 ? 2 : ret;
	} else if (!strcmp(cmd, "cleanup")) {
		ret = ops->cleanup(be, diag) < 0 ? 2 : 0;
	} else if (!strcmp(cmd, "state")) {
		ret = ops->print_state(be, out, diag) < 0 ? 2 : 0;
	} else {
		ret = -1;
	}
	ops->close(be);
	if (ret == -1)
		usage();
	return ret;
}

int main(int argc, char **argv)
{
	struct options o = {0};
	struct sp_cluster cluster;
	struct sp_source_limits lim;
	struct sp_plan plan;
	struct sp_diag diag;
	struct sp_buf out;
	const char *cmd;
	int i, ret;
	bool refused = false;

	sp_config_init(&o.cfg);
	o.cfg.mode = SP_MODE_IPTABLES;
	i = parse(&o, argc, argv);
	if (i >= argc)
		usage();
	cmd = argv[i++];
	sp_cluster_init(&cluster);
	sp_diag_init(&diag);
	sp_source_limits_default(&lim);
	for (; i < argc; i++)
		refused |= sp_source_read_path(&cluster, argv[i], &lim, &diag) != 0;
	refused |= sp_plan_build(&plan, &cluster, &o.cfg, &diag) != 0;
	sp_buf_init(&out);
	ret = operate(cmd, &o, &plan, &out, &diag);
	fputs(out.data ? out.data : "", stdout);
	for (size_t k = 0; k < diag.n_msgs; k++)
		fprintf(stderr, "%s: %s\n",
			diag.msgs[k].severity == SP_SEV_ERROR	  ? "error"
			: diag.msgs[k].severity == SP_SEV_WARNING ? "warning"
								  : "info",
			diag.msgs[k].text);
	if (ret == 0 && refused && strcmp(cmd, "diff"))
		ret = 1;
	sp_buf_free(&out);
	sp_plan_free(&plan);
	sp_cluster_free(&cluster);
	sp_config_free(&o.cfg);
	sp_diag_free(&diag);
	return ret;
}
