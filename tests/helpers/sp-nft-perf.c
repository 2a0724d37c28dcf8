/* What the nftables backend's syncs cost, measured in-process (not part of
 * `make check`; build with `make tests/helpers/sp-nft-perf`).
 *
 *   sp-nft-perf BASE.json CHANGED.json [REPEAT]
 *
 * Run it inside a scratch network namespace. It plans both inputs (node-1,
 * cluster CIDR 10.128.0.0/9, as bench/gen-cluster.py's clusters), programs
 * BASE with a full sync, then alternates partial syncs (full=false, the
 * daemon's path) between CHANGED and BASE REPEAT times, then one no-op
 * partial sync. Each line: the operation, wall, user and sys CPU of this
 * process (getrusage), and the messages sent.
 *
 *   sp-nft-perf --check [--cidr CIDR]... FILE...
 *
 * Correctness of the same path, for tests: programs the first FILE with a
 * full sync, then each next one with a partial sync, and after each asks the
 * backend's diff (which reads the kernel back) whether anything differs
 * from that file's plan; exits 1 at the first difference, printing it.
 * SP_NFT_PERF_HOOK, when set, is a shell command run after the first sync
 * (to damage the table behind the backend's back). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "svcproxy/backend.h"
#include "svcproxy/config.h"
#include "svcproxy/diag.h"
#include "svcproxy/model.h"
#include "svcproxy/plan.h"
#include "svcproxy/source.h"

struct sample {
	double wall, user, sys, cpu;
};

static double seconds(const struct timeval *tv)
{
	return (double)tv->tv_sec + (double)tv->tv_usec / 1e6;
}

static void sample_now(struct sample *s)
{
	struct timespec ts;
	struct rusage ru;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	getrusage(RUSAGE_SELF, &ru);
	s->wall = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	/* rusage counts in ticks; this is exact (user + sys together). */
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	s->cpu = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
	s->user = seconds(&ru.ru_utime);
	s->sys = seconds(&ru.ru_stime);
}

static void setup_config(struct sp_config *cfg, const char *const *cidrs, size_t n)
{
	sp_config_init(cfg);
	cfg->mode = SP_MODE_NFTABLES;
	free(cfg->hostname);
	cfg->hostname = sp_xstrdup("node-1");
	cfg->cluster_cidrs = sp_xcalloc(n + 1, sizeof(*cfg->cluster_cidrs));
	for (size_t i = 0; i < n; i++) {
		if (!sp_cidr_parse(cidrs[i], &cfg->cluster_cidrs[i])) {
			fprintf(stderr, "sp-nft-perf: bad CIDR %s\n", cidrs[i]);
			exit(2);
		}
	}
	cfg->n_cluster_cidrs = n;
}

static void plan_file(const char *path, const struct sp_config *cfg, struct sp_plan *plan)
{
	struct sp_source_limits lim;
	struct sp_cluster c;
	struct sp_diag diag;

	sp_diag_init(&diag);
	sp_source_limits_default(&lim);
	sp_cluster_init(&c);
	if (sp_source_read_path(&c, path, &lim, &diag) < 0) {
		fprintf(stderr, "sp-nft-perf: cannot read %s\n", path);
		exit(1);
	}
	sp_plan_build(plan, &c, cfg, &diag);
	sp_cluster_free(&c);
	sp_diag_free(&diag);
}

static void timed_sync(const struct sp_backend_ops *ops, struct sp_backend *be,
		       const struct sp_plan *plan, bool full, const char *what)
{
	struct sp_sync_stats st;
	struct {
		struct sample a, b;
	} t;
	struct sp_diag diag;
	int rc;

	sp_diag_init(&diag);
	sample_now(&t.a);
	rc = ops->sync(be, plan, full, &st, &diag);
	sample_now(&t.b);
	printf("%-8s wall %.6f cpu %.6f user %.6f sys %.6f messages %zu changed %zu rc %d\n", what,
	       t.b.wall - t.a.wall, t.b.cpu - t.a.cpu, t.b.user - t.a.user, t.b.sys - t.a.sys,
	       st.messages_sent, st.objects_changed, rc);
	if (rc < 0) {
		for (size_t i = 0; i < diag.n_msgs; i++)
			fprintf(stderr, "%s\n", diag.msgs[i].text);
		exit(1);
	}
	sp_diag_free(&diag);
}

static int check(int argc, char **argv)
{
	const struct sp_backend_ops *ops = sp_backend_for_mode(SP_MODE_NFTABLES);
	const char *cidrs[16];
	size_t n_cidrs = 0;
	struct sp_backend *be;
	struct sp_config cfg;
	struct sp_diag diag;
	int i = 2, ret = 0;

	for (; i + 1 < argc && !strcmp(argv[i], "--cidr") && n_cidrs < 16; i += 2)
		cidrs[n_cidrs++] = argv[i + 1];
	setup_config(&cfg, cidrs, n_cidrs);
	sp_diag_init(&diag);
	be = ops->open(&cfg, &diag);
	if (!be) {
		fprintf(stderr, "sp-nft-perf: cannot open the nftables backend\n");
		return 1;
	}
	for (bool first = true; i < argc && !ret; i++, first = false) {
		struct sp_plan plan;
		struct sp_buf out;

		plan_file(argv[i], &cfg, &plan);
		printf("%s: ", argv[i]);
		timed_sync(ops, be, &plan, first, first ? "full" : "partial");
		sp_buf_init(&out);
		if (ops->diff(be, &plan, &out, &diag) != 0) {
			fprintf(stderr, "sp-nft-perf: kernel differs from %s after the sync:\n%s",
				argv[i], out.data ? out.data : "");
			ret = 1;
		}
		sp_buf_free(&out);
		sp_plan_free(&plan);
		if (!ret && first && getenv("SP_NFT_PERF_HOOK") &&
		    system(getenv("SP_NFT_PERF_HOOK")) != 0) {
			fprintf(stderr, "sp-nft-perf: the hook failed\n");
			ret = 1;
		}
	}
	ops->close(be);
	sp_diag_free(&diag);
	sp_config_free(&cfg);
	return ret;
}

int main(int argc, char **argv)
{
	const struct sp_backend_ops *ops = sp_backend_for_mode(SP_MODE_NFTABLES);
	struct sp_plan base, changed;
	struct sp_backend *be;
	struct sp_config cfg;
	struct sp_diag diag;
	const char *cidr = "10.128.0.0/9";
	int repeat = argc > 3 ? atoi(argv[3]) : 5;

	if (argc > 1 && !strcmp(argv[1], "--check"))
		return check(argc, argv);
	if (argc < 3) {
		fprintf(stderr, "usage: sp-nft-perf BASE.json CHANGED.json [REPEAT]\n");
		return 2;
	}
	setup_config(&cfg, &cidr, 1);
	plan_file(argv[1], &cfg, &base);
	plan_file(argv[2], &cfg, &changed);

	sp_diag_init(&diag);
	be = ops->open(&cfg, &diag);
	if (!be) {
		fprintf(stderr, "sp-nft-perf: cannot open the nftables backend\n");
		return 1;
	}
	timed_sync(ops, be, &base, true, "full");
	for (int i = 0; i < repeat; i++) {
		timed_sync(ops, be, &changed, false, "partial");
		timed_sync(ops, be, &base, false, "partial");
	}
	timed_sync(ops, be, &base, false, "noop");
	ops->close(be);
	sp_diag_free(&diag);
	sp_plan_free(&base);
	sp_plan_free(&changed);
	sp_config_free(&cfg);
	return 0;
}
