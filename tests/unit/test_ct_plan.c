/* The stale-entry rules on plans made by the real planner from Kubernetes
 * objects: what the planner decides (which addresses a LoadBalancer
 * captures, node port addresses, local/cluster endpoint sets, readiness)
 * reaches sp_ct_stale() through sp_ct_summary_from_plan() unchanged. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svcproxy/conntrack.h"

struct game {
	bool present;
	bool etp_local;
	bool remote_ready;
	bool affinity;
};

static struct sp_addr ip(const char *text)
{
	struct sp_addr a;

	ck_assert_msg(sp_addr_parse(text, &a), "bad address %s", text);
	return a;
}

static void add_endpoint(struct sp_endpoint_slice *sl, const char *addr, const char *node,
			 bool ready)
{
	struct sp_endpoint *e;

	sl->endpoints = sp_xrealloc(sl->endpoints, (sl->n_endpoints + 1) * sizeof(*e));
	e = &sl->endpoints[sl->n_endpoints++];
	memset(e, 0, sizeof(*e));
	e->addr = ip(addr);
	e->node_name = sp_xstrdup(node);
	e->ready = e->serving = ready;
}

/* default/game: LoadBalancer UDP 7777 (nodePort 30777, LB 203.0.113.7),
 * endpoints 10.244.1.6 on this node and 10.244.2.7 on another; plus
 * default/dns, ClusterIP UDP 53, never changing. */
static void build(struct sp_ct_summary *out, const struct game *g)
{
	struct sp_cluster cl;
	struct sp_config cfg;
	struct sp_diag d;
	struct sp_plan plan;
	struct sp_service *s;
	struct sp_endpoint_slice *sl;

	sp_cluster_init(&cl);
	sp_config_init(&cfg);
	sp_diag_init(&d);
	cfg.mode = SP_MODE_NFTABLES;
	free(cfg.hostname);
	cfg.hostname = sp_xstrdup("worker-1");
	cfg.node_ips = sp_xcalloc(1, sizeof(*cfg.node_ips));
	cfg.node_ips[0] = ip("192.168.1.10");
	cfg.n_node_ips = 1;
	cfg.cluster_cidrs = sp_xcalloc(1, sizeof(*cfg.cluster_cidrs));
	ck_assert(sp_cidr_parse("10.244.0.0/16", &cfg.cluster_cidrs[0]));
	cfg.n_cluster_cidrs = 1;

	if (g->present) {
		s = sp_cluster_add_service(&cl);
		s->namespace = sp_xstrdup("default");
		s->name = sp_xstrdup("game");
		s->type = SP_SVC_LOAD_BALANCER;
		s->cluster_ips = sp_xcalloc(1, sizeof(*s->cluster_ips));
		s->cluster_ips[0] = ip("10.96.0.30");
		s->n_cluster_ips = 1;
		s->ports = sp_xcalloc(1, sizeof(*s->ports));
		s->ports[0].name = sp_xstrdup("udp");
		s->ports[0].protocol = IPPROTO_UDP;
		s->ports[0].port = 7777;
		s->ports[0].node_port = 30777;
		s->ports[0].target_port = sp_xstrdup("7777");
		s->n_ports = 1;
		s->lb_ingress = sp_xcalloc(1, sizeof(*s->lb_ingress));
		s->lb_ingress[0].ip = ip("203.0.113.7");
		s->n_lb_ingress = 1;
		s->external_policy_local = g->etp_local;
		s->health_check_node_port = g->etp_local ? 32000 : 0;
		s->affinity_client_ip = g->affinity;
		s->affinity_timeout = 10800;

		sl = sp_cluster_add_slice(&cl);
		sl->namespace = sp_xstrdup("default");
		sl->name = sp_xstrdup("game-abc");
		sl->service_name = sp_xstrdup("game");
		sl->address_type = AF_INET;
		sl->ports = sp_xcalloc(1, sizeof(*sl->ports));
		sl->ports[0].name = sp_xstrdup("udp");
		sl->ports[0].protocol = IPPROTO_UDP;
		sl->ports[0].port = 7777;
		sl->n_ports = 1;
		add_endpoint(sl, "10.244.1.6", "worker-1", true);
		add_endpoint(sl, "10.244.2.7", "worker-2", g->remote_ready);
	}

	s = sp_cluster_add_service(&cl);
	s->namespace = sp_xstrdup("default");
	s->name = sp_xstrdup("dns");
	s->type = SP_SVC_CLUSTER_IP;
	s->cluster_ips = sp_xcalloc(1, sizeof(*s->cluster_ips));
	s->cluster_ips[0] = ip("10.96.0.10");
	s->n_cluster_ips = 1;
	s->ports = sp_xcalloc(1, sizeof(*s->ports));
	s->ports[0].name = sp_xstrdup("dns");
	s->ports[0].protocol = IPPROTO_UDP;
	s->ports[0].port = 53;
	s->ports[0].target_port = sp_xstrdup("53");
	s->n_ports = 1;
	sl = sp_cluster_add_slice(&cl);
	sl->namespace = sp_xstrdup("default");
	sl->name = sp_xstrdup("dns-abc");
	sl->service_name = sp_xstrdup("dns");
	sl->address_type = AF_INET;
	sl->ports = sp_xcalloc(1, sizeof(*sl->ports));
	sl->ports[0].name = sp_xstrdup("dns");
	sl->ports[0].protocol = IPPROTO_UDP;
	sl->ports[0].port = 53;
	sl->n_ports = 1;
	add_endpoint(sl, "10.244.2.9", "worker-2", true);

	ck_assert_int_eq(sp_plan_build(&plan, &cl, &cfg, &d), 0);
	sp_ct_summary_from_plan(out, &plan);
	sp_plan_free(&plan);
	sp_cluster_free(&cl);
	sp_config_free(&cfg);
	sp_diag_free(&d);
}

static const struct plan_case {
	const char *name;
	struct game old, new;
	const char *want[8];
} cases[] = {
	{"no change", {true, false, true, false}, {true, false, true, false}, {NULL}},
	{"eTP Cluster -> Local",
	 {true, false, true, false},
	 {true, true, true, false},
	 {"udp 192.168.1.10:30777 reply-src 10.244.1.6:7777 snat off-cluster "
	  "(traffic-policy-snat, default/game:udp)",
	  "udp 192.168.1.10:30777 reply-src 10.244.2.7:7777 off-cluster (traffic-policy, "
	  "default/game:udp)",
	  "udp 203.0.113.7:7777 reply-src 10.244.1.6:7777 snat off-cluster (traffic-policy-snat, "
	  "default/game:udp)",
	  "udp 203.0.113.7:7777 reply-src 10.244.2.7:7777 off-cluster (traffic-policy, "
	  "default/game:udp)"}},
	{"remote endpoint no longer ready",
	 {true, false, true, false},
	 {true, false, false, false},
	 {"udp 10.96.0.30:7777 reply-src 10.244.2.7:7777 (endpoint-gone, default/game:udp)",
	  "udp 192.168.1.10:30777 reply-src 10.244.2.7:7777 (endpoint-gone, default/game:udp)",
	  "udp 203.0.113.7:7777 reply-src 10.244.2.7:7777 (endpoint-gone, default/game:udp)"}},
	{"remote endpoint not ready under Local (in-cluster clients reach it)",
	 {true, true, true, false},
	 {true, true, false, false},
	 {"udp 10.96.0.30:7777 reply-src 10.244.2.7:7777 (endpoint-gone, default/game:udp)",
	  "udp 192.168.1.10:30777 reply-src 10.244.2.7:7777 (endpoint-gone, default/game:udp)",
	  "udp 203.0.113.7:7777 reply-src 10.244.2.7:7777 (endpoint-gone, default/game:udp)"}},
	{"service deleted",
	 {true, false, true, false},
	 {false, false, false, false},
	 {"udp 10.96.0.30:7777 (address-gone, default/game:udp)",
	  "udp 192.168.1.10:30777 (address-gone, default/game:udp)",
	  "udp 203.0.113.7:7777 (address-gone, default/game:udp)"}},
	{"service created",
	 {false, false, false, false},
	 {true, false, true, false},
	 {"udp 10.96.0.30:7777 reply-src 10.96.0.30:7777 (first-endpoints, default/game:udp)",
	  "udp 192.168.1.10:30777 reply-src 192.168.1.10:30777 (first-endpoints, "
	  "default/game:udp)",
	  "udp 203.0.113.7:7777 reply-src 203.0.113.7:7777 (first-endpoints, default/game:udp)"}},
	{"affinity on",
	 {true, false, true, false},
	 {true, false, true, true},
	 {"udp 10.96.0.30:7777 (affinity, default/game:udp)",
	  "udp 192.168.1.10:30777 (affinity, default/game:udp)",
	  "udp 203.0.113.7:7777 (affinity, default/game:udp)"}},
};

START_TEST(plan_table)
{
	const struct plan_case *c = &cases[_i];
	struct sp_ct_summary o, n;
	struct sp_ct_filters got;
	size_t n_want = 0;

	build(&o, &c->old);
	build(&n, &c->new);
	sp_ct_filters_init(&got);
	sp_ct_stale(&o, &n, &got);
	while (c->want[n_want])
		n_want++;
	for (size_t i = 0; i < got.n; i++) {
		struct sp_buf b;

		sp_buf_init(&b);
		sp_ct_filter_format(&got.items[i], &b);
		ck_assert_msg(i < n_want, "%s: unexpected filter %s", c->name, b.data);
		ck_assert_msg(strcmp(b.data, c->want[i]) == 0,
			      "%s: filter %zu is\n  %s\nwant\n  %s", c->name, i, b.data,
			      c->want[i]);
		sp_buf_free(&b);
	}
	ck_assert_msg(got.n == n_want, "%s: %zu filters, want %zu", c->name, got.n, n_want);
	for (size_t i = 0; i < got.n; i++) {
		char buf[SP_CIDRSTRLEN];

		if (!got.items[i].n_skip_src)
			continue;
		/* In-cluster clients: the cluster CIDR and the node's address. */
		ck_assert_uint_eq(got.items[i].n_skip_src, 2);
		ck_assert_str_eq(sp_cidr_format(&got.items[i].skip_src[0], buf), "10.244.0.0/16");
		ck_assert_str_eq(sp_cidr_format(&got.items[i].skip_src[1], buf), "192.168.1.10/32");
	}
	sp_ct_filters_free(&got);
	sp_ct_summary_free(&o);
	sp_ct_summary_free(&n);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("ct_plan");
	TCase *tc = tcase_create("planner");
	SRunner *sr;
	int failed;

	tcase_add_loop_test(tc, plan_table, 0, (int)SP_ARRAY_SIZE(cases));
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
