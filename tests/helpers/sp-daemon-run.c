/* Test driver for the daemon: `sp-daemon-run [flags] [SOURCE...]` runs
 * sp_daemon_run with kube-proxy's flag names (the subset the tests use), so
 * that the daemon's integration tests do not depend on the command line's
 * progress. --backend record:FILE replaces the kernel backend by one that
 * writes each programmed plan to FILE (one line per service port), for the
 * API tests that are about the watch, not the kernel. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "svcproxy/backend.h"
#include "svcproxy/daemon.h"
#include "svcproxy/plan.h"
#include "svcproxy/source.h"

static int saved_argc;
static char **saved_argv;
static const char *record_file;
static const char *kubeconfig;
static const char *state_dir;
static enum sp_log_level log_level = SP_LOG_NOTICE;

static struct sp_backend *rec_open(const struct sp_config *cfg, struct sp_diag *diag)
{
	(void)cfg;
	(void)diag;
	return (struct sp_backend *)sp_xstrdup("record");
}

static void rec_close(struct sp_backend *be)
{
	free(be);
}

static void rec_print(const struct sp_plan *plan, struct sp_buf *out)
{
	for (size_t i = 0; i < plan->n_svcports; i++) {
		const struct sp_plan_svcport *sp = &plan->svcports[i];
		char ip[SP_ADDRSTRLEN];

		sp_buf_addf(out, "%s %s:%u hc=%u eps=", sp->id, sp_addr_format(&sp->cluster_ip, ip),
			    sp->port, sp->health_check_node_port);
		for (size_t j = 0; j < sp->n_endpoints; j++)
			sp_buf_addf(out, "%s%s:%u", j ? "," : "",
				    sp_addr_format(&sp->endpoints[j].addr, ip),
				    sp->endpoints[j].port);
		sp_buf_add(out, "\n");
	}
}

static int rec_sync(struct sp_backend *be, const struct sp_plan *plan, bool full,
		    struct sp_sync_stats *stats, struct sp_diag *diag)
{
	struct sp_buf text;
	char *tmp = sp_xasprintf("%s.tmp", record_file);
	FILE *f = fopen(tmp, "w");

	(void)be;
	if (!f) {
		sp_diag_error(diag, "%s: cannot write", tmp);
		free(tmp);
		return -1;
	}
	sp_buf_init(&text);
	rec_print(plan, &text);
	fputs(text.data ? text.data : "", f);
	fclose(f);
	rename(tmp, record_file);
	free(tmp);
	sp_buf_free(&text);
	stats->full = full;
	stats->rules_total = plan->n_svcports;
	return 0;
}

static const struct sp_backend_ops record_ops = {
	.mode = SP_MODE_NFTABLES,
	.print_plan = rec_print,
	.open = rec_open,
	.close = rec_close,
	.sync = rec_sync,
};

static bool duration(const char *text, unsigned *ms)
{
	uint64_t v;

	if (!sp_src_parse_duration_ms(text, &v))
		return false;
	*ms = (unsigned)v;
	return true;
}

/* Defaults, then --config, then the flags: the same on start and SIGHUP. */
static int build_config(struct sp_config *cfg, void *arg, struct sp_diag *diag)
{
	static const struct option longopts[] = {
		{"proxy-mode", required_argument, NULL, 'm'},
		{"hostname-override", required_argument, NULL, 'n'},
		{"kubeconfig", required_argument, NULL, 'k'},
		{"healthz-bind-address", required_argument, NULL, 'h'},
		{"metrics-bind-address", required_argument, NULL, 'M'},
		{"min-sync-period", required_argument, NULL, 'p'},
		{"sync-period", required_argument, NULL, 's'},
		{"config", required_argument, NULL, 'c'},
		{"backend", required_argument, NULL, 'b'},
		{"state-dir", required_argument, NULL, 'S'},
		{"v", required_argument, NULL, 'v'},
		{NULL, 0, NULL, 0},
	};
	int c;

	(void)arg;
	sp_config_init(cfg);
	optind = 1;
	while ((c = getopt_long(saved_argc, saved_argv, "", longopts, NULL)) != -1)
		if (c == 'c') {
			cfg->config_file = sp_xstrdup(optarg);
			if (sp_config_load_file(cfg, optarg, diag) < 0)
				return -1;
		}
	optind = 1;
	while ((c = getopt_long(saved_argc, saved_argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'm':
			cfg->mode = sp_mode_parse(optarg);
			break;
		case 'n':
			free(cfg->hostname);
			cfg->hostname = sp_xstrdup(optarg);
			break;
		case 'k':
			kubeconfig = optarg;
			break;
		case 'h':
			free(cfg->healthz_bind_address);
			cfg->healthz_bind_address = sp_xstrdup(optarg);
			break;
		case 'M':
			free(cfg->metrics_bind_address);
			cfg->metrics_bind_address = sp_xstrdup(optarg);
			break;
		case 'p':
			if (!duration(optarg, &cfg->min_sync_period_ms))
				goto bad;
			break;
		case 's':
			if (!duration(optarg, &cfg->sync_period_ms))
				goto bad;
			break;
		case 'b':
			if (strncmp(optarg, "record:", 7))
				goto bad;
			record_file = optarg + 7;
			break;
		case 'v':
			log_level = atoi(optarg) >= 4	? SP_LOG_DEBUG
				    : atoi(optarg) >= 2 ? SP_LOG_INFO
							: SP_LOG_NOTICE;
			break;
		case 'S':
			state_dir = optarg;
			break;
		case 'c':
			break;
		default:
			sp_diag_error(diag, "usage: sp-daemon-run [flags] [SOURCE...]");
			return -1;
		}
	}
	if (cfg->mode == SP_MODE_NONE) {
		sp_diag_error(diag, "--proxy-mode: unknown mode");
		return -1;
	}
	return 0;
bad:
	sp_diag_error(diag, "bad value \"%s\"", optarg);
	return -1;
}

int main(int argc, char **argv)
{
	struct sp_config cfg;
	struct sp_diag diag;
	struct sp_daemon_opts opts = {0};
	int ret;

	saved_argc = argc;
	saved_argv = argv;
	sp_diag_init(&diag);
	if (build_config(&cfg, NULL, &diag) < 0) {
		for (size_t i = 0; i < diag.n_msgs; i++)
			fprintf(stderr, "sp-daemon-run: %s\n", diag.msgs[i].text);
		return 2;
	}
	opts.cfg = &cfg;
	opts.sources = (const char *const *)argv + optind;
	opts.n_sources = (size_t)(argc - optind);
	opts.kubeconfig = kubeconfig;
	opts.in_cluster = !kubeconfig;
	opts.ops = record_file ? &record_ops : sp_backend_for_mode(cfg.mode);
	opts.log_level = log_level;
	opts.reload = build_config;
	opts.state_dir = state_dir;
	ret = sp_daemon_run(&opts, &diag);
	for (size_t i = 0; i < diag.n_msgs; i++)
		fprintf(stderr, "sp-daemon-run: %s\n", diag.msgs[i].text);
	sp_config_free(&cfg);
	sp_diag_free(&diag);
	return ret;
}
