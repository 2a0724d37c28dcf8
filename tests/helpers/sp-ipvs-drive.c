/* Test driver for IPVS mode: reads Kubernetes JSON, plans, and runs one
 * backend operation, like `svcproxy plan|sync|diff|cleanup --proxy-mode ipvs`
 * but with only the options the IPVS tests need and no other mode linked in
 * (so that the lab tests do not depend on modules in progress elsewhere).
 *
 *   sp-ipvs-drive [options] plan|json|sync|diff|cleanup|state SOURCE...
 *   --node NAME --node-ip IP --cluster-cidr CIDR --nodeport-addresses CIDR
 *   --scheduler NAME
 *   --whole-address --graceful-ms N --strict-arp --masquerade-all
 *
 * Exit: 0 done, 1 done with something refused (diagnostics on stderr), 2
 * failed; diff: 0 no change, 1 changes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svcproxy/backend.h"
#include "svcproxy/config.h"
#include "svcproxy/ipvs.h"
#include "svcproxy/plan.h"
#include "svcproxy/source.h"

static void usage(void)
{
	fprintf(stderr, "usage: sp-ipvs-drive [options] plan|json|sync|diff|cleanup|state "
			"SOURCE...\n");
	exit(2);
}

static void add_addr(struct sp_config *cfg, const char *text)
{
	struct sp_addr a;

	if (!sp_addr_parse(text, &a)) {
		fprintf(stderr, "sp-ipvs-drive: bad address %s\n", text);
		exit(2);
	}
	cfg->node_ips = sp_xrealloc(cfg->node_ips, (cfg->n_node_ips + 1) * sizeof(a));
	cfg->node_ips[cfg->n_node_ips++] = a;
}

static void add_cidr(struct sp_cidr **v, size_t *n, const char *text)
{
	struct sp_cidr c;

	if (!sp_cidr_parse(text, &c)) {
		fprintf(stderr, "sp-ipvs-drive: bad CIDR %s\n", text);
		exit(2);
	}
	*v = sp_xrealloc(*v, (*n + 1) * sizeof(c));
	(*v)[(*n)++] = c;
}

static int parse_options(struct sp_config *cfg, int argc, char **argv)
{
	int i;

	for (i = 1; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		const char *opt = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(opt, "--whole-address") == 0) {
			cfg->ipvs_capture = SP_IPVS_CAPTURE_WHOLE_ADDRESS;
		} else if (strcmp(opt, "--strict-arp") == 0) {
			cfg->ipvs_strict_arp = true;
		} else if (strcmp(opt, "--masquerade-all") == 0) {
			cfg->masquerade_all = true;
		} else if (!val) {
			usage();
		} else if (strcmp(opt, "--node") == 0) {
			free(cfg->hostname);
			cfg->hostname = sp_xstrdup(val);
			i++;
		} else if (strcmp(opt, "--node-ip") == 0) {
			add_addr(cfg, val);
			i++;
		} else if (strcmp(opt, "--cluster-cidr") == 0) {
			add_cidr(&cfg->cluster_cidrs, &cfg->n_cluster_cidrs, val);
			i++;
		} else if (strcmp(opt, "--nodeport-addresses") == 0) {
			add_cidr(&cfg->nodeport_cidrs, &cfg->n_nodeport_cidrs, val);
			i++;
		} else if (strcmp(opt, "--scheduler") == 0) {
			free(cfg->ipvs_scheduler);
			cfg->ipvs_scheduler = sp_xstrdup(val);
			i++;
		} else if (strcmp(opt, "--graceful-ms") == 0) {
			cfg->ipvs_graceful_period_ms = (uint32_t)strtoul(val, NULL, 10);
			i++;
		} else {
			usage();
		}
	}
	return i;
}

static void print_diag(const struct sp_diag *d)
{
	for (size_t i = 0; i < d->n_msgs; i++)
		fprintf(stderr, "%s: %s\n",
			d->msgs[i].severity == SP_SEV_ERROR	? "error"
			: d->msgs[i].severity == SP_SEV_WARNING ? "warning"
								: "info",
			d->msgs[i].text);
}

static int run(const char *cmd, const struct sp_config *cfg, const struct sp_plan *plan,
	       struct sp_buf *out, struct sp_diag *diag)
{
	const struct sp_backend_ops *ops = &sp_ipvs_ops;
	struct sp_backend *be;
	struct sp_sync_stats stats = {0};
	int ret;

	if (strcmp(cmd, "plan") == 0) {
		ops->print_plan(plan, out);
		return 0;
	}
	if (strcmp(cmd, "json") == 0) {
		ops->print_plan_json(plan, out);
		return 0;
	}
	be = ops->open(cfg, diag);
	if (!be)
		return 2;
	if (strcmp(cmd, "sync") == 0) {
		ret = ops->sync(be, plan, true, &stats, diag);
		if (getenv("SP_IPVS_STATS"))
			sp_buf_addf(out, "changed %zu unchanged %zu messages %zu\n",
				    stats.objects_changed, stats.objects_unchanged,
				    stats.messages_sent);
		ret = ret < 0 ? 2 : ret;
	} else if (strcmp(cmd, "diff") == 0) {
		ret = ops->diff(be, plan, out, diag);
		ret = ret < 0 ? 2 : ret;
	} else if (strcmp(cmd, "cleanup") == 0) {
		ret = ops->cleanup(be, diag) < 0 ? 2 : 0;
	} else if (strcmp(cmd, "state") == 0) {
		ret = ops->print_state(be, out, diag) < 0 ? 2 : 0;
	} else {
		ops->close(be);
		usage();
		return 2;
	}
	ops->close(be);
	return ret;
}

int main(int argc, char **argv)
{
	struct sp_config cfg;
	struct sp_cluster cluster;
	struct sp_source_limits lim;
	struct sp_plan plan;
	struct sp_diag diag;
	struct sp_buf out;
	const char *cmd;
	int i, ret, refused = 0;

	sp_config_init(&cfg);
	cfg.mode = SP_MODE_IPVS;
	i = parse_options(&cfg, argc, argv);
	if (i >= argc)
		usage();
	cmd = argv[i++];
	sp_cluster_init(&cluster);
	sp_diag_init(&diag);
	sp_source_limits_default(&lim);
	for (; i < argc; i++)
		if (sp_source_read_path(&cluster, argv[i], &lim, &diag) != 0)
			refused = 1;
	if (sp_plan_build(&plan, &cluster, &cfg, &diag) != 0)
		refused = 1;
	sp_buf_init(&out);
	ret = run(cmd, &cfg, &plan, &out, &diag);
	if (out.data)
		fputs(out.data, stdout);
	print_diag(&diag);
	if (ret == 0 && refused && strcmp(cmd, "diff") != 0 && strcmp(cmd, "cleanup") != 0 &&
	    strcmp(cmd, "state") != 0)
		ret = 1;
	sp_buf_free(&out);
	sp_plan_free(&plan);
	sp_cluster_free(&cluster);
	sp_config_free(&cfg);
	sp_diag_free(&diag);
	return ret;
}
