/* The bundled example cluster (examples/cluster), read by the real JSON
 * reader and planned for node-1 in every mode: what its README promises is
 * what the planner gives. */
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "svcproxy/plan.h"
#include "svcproxy/source.h"

static struct sp_cluster cl;
static struct sp_config cfg;
static struct sp_diag diag;
static struct sp_plan plan;

static const enum sp_mode modes[] = {SP_MODE_IPTABLES, SP_MODE_IPVS, SP_MODE_NFTABLES};

static void read_example(void)
{
	const char *top = getenv("top_srcdir");
	struct sp_source_limits lim;
	char *path = sp_xasprintf("%s/examples/cluster", top ? top : "..");

	sp_cluster_init(&cl);
	sp_config_init(&cfg);
	sp_diag_init(&diag);
	memset(&plan, 0, sizeof(plan));
	cfg.hostname = sp_xstrdup("node-1");
	sp_source_limits_default(&lim);
	ck_assert_msg(sp_source_read_path(&cl, path, &lim, &diag) == 0, "reading %s", path);
	free(path);
}

static void release(void)
{
	sp_plan_free(&plan);
	sp_diag_free(&diag);
	sp_config_free(&cfg);
	sp_cluster_free(&cl);
}

static const struct sp_plan_svcport *get(const char *id)
{
	const struct sp_plan_svcport *sp = sp_plan_find(&plan, id, AF_INET);

	ck_assert_msg(sp != NULL, "%s not planned", id);
	return sp;
}

static char *set_text(const struct sp_plan_svcport *sp, const struct sp_plan_ep_set *set)
{
	struct sp_buf b;
	char buf[SP_ADDRSTRLEN];

	sp_buf_init(&b);
	for (size_t i = 0; i < set->n; i++)
		sp_buf_addf(&b, "%s%s", i ? "," : "",
			    sp_addr_format(&sp->endpoints[set->idx[i]].addr, buf));
	return sp_buf_steal(&b);
}

static void assert_set(const struct sp_plan_svcport *sp, const struct sp_plan_ep_set *set,
		       const char *want)
{
	char *got = set_text(sp, set);

	ck_assert_msg(!strcmp(got, want), "%s: endpoints \"%s\", want \"%s\"", sp->id, got, want);
	free(got);
}

static void assert_addr(const struct sp_addr *addrs, size_t n, const char *want)
{
	char buf[SP_ADDRSTRLEN];

	if (!want) {
		ck_assert_uint_eq(n, 0);
		return;
	}
	ck_assert_uint_eq(n, 1);
	ck_assert_str_eq(sp_addr_format(&addrs[0], buf), want);
}

START_TEST(example_matches_its_readme)
{
	const struct sp_plan_svcport *sp;

	cfg.mode = modes[_i];
	ck_assert_int_eq(sp_plan_build(&plan, &cl, &cfg, &diag), 0);
	ck_assert_uint_eq(diag.n_errors, 0);
	ck_assert_uint_eq(plan.n_svcports, 8);
	ck_assert_uint_eq(plan.n_node_ips, 1);

	/* ClusterIP over two ready endpoints; the not-ready third left out. */
	sp = get("default/web:http");
	assert_set(sp, sp_plan_internal_eps(sp), "10.244.1.5,10.244.2.5");
	ck_assert_uint_eq(sp->n_endpoints, 2);

	/* UDP and TCP ports of one Service. */
	ck_assert_uint_eq(get("kube-system/kube-dns:dns")->protocol, IPPROTO_UDP);
	ck_assert_uint_eq(get("kube-system/kube-dns:dns-tcp")->protocol, IPPROTO_TCP);

	/* Local LB with its only endpoint elsewhere: nothing local for
	 * off-cluster traffic, the cluster set for in-cluster clients. */
	sp = get("shop/frontend:http");
	ck_assert(sp->external_policy_local);
	ck_assert_uint_ne(sp->health_check_node_port, 0);
	assert_addr(sp->lb_ips, sp->n_lb_ips, "203.0.113.10");
	assert_set(sp, sp_plan_external_eps(sp), "");
	assert_set(sp, sp_plan_internal_eps(sp), "10.244.2.20");
	ck_assert(sp->has_any_endpoints);

	/* NodePort with ClientIP affinity and an externalIP. */
	sp = get("shop/cart:grpc");
	ck_assert_uint_ne(sp->node_port, 0);
	ck_assert(sp->affinity);
	ck_assert_uint_eq(sp->affinity_timeout, 600);
	assert_addr(sp->external_ips, sp->n_external_ips, "198.51.100.20");

	/* Pass-through: the LB address is not captured. */
	sp = get("shop/checkout:http");
	assert_addr(sp->lb_ips, sp->n_lb_ips, NULL);
	ck_assert_uint_ne(sp->node_port, 0);

	/* Cluster LB: every endpoint. */
	sp = get("shop/search:http");
	ck_assert(!sp->external_policy_local);
	assert_addr(sp->lb_ips, sp->n_lb_ips, "203.0.113.40");
	assert_set(sp, sp_plan_external_eps(sp), "10.244.2.50");

	/* No endpoints: rejected, not dropped. */
	ck_assert(!get("shop/orders:http")->has_any_endpoints);
}
END_TEST

static char *plan_json_text(void)
{
	struct sp_buf b;

	sp_buf_init(&b);
	sp_plan_build(&plan, &cl, &cfg, &diag);
	sp_plan_print_json(&plan, &b);
	sp_plan_free(&plan);
	return sp_buf_steal(&b);
}

#define REVERSE(items, n)                                                                          \
	do {                                                                                       \
		for (size_t i_ = 0; i_ < (n) / 2; i_++) {                                          \
			__typeof__((items)[0]) t_ = (items)[i_];                                   \
			(items)[i_] = (items)[(n)-1 - i_];                                         \
			(items)[(n)-1 - i_] = t_;                                                  \
		}                                                                                  \
	} while (0)

START_TEST(example_json_independent_of_object_order)
{
	char *first, *second;

	first = plan_json_text();
	REVERSE(cl.services, cl.n_services);
	REVERSE(cl.slices, cl.n_slices);
	REVERSE(cl.nodes, cl.n_nodes);
	second = plan_json_text();
	ck_assert_str_eq(first, second);
	ck_assert(strstr(first, "\"id\": \"shop/frontend:http\"") != NULL);
	free(first);
	free(second);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("plan_example");
	TCase *tc = tcase_create("example");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, read_example, release);
	tcase_add_loop_test(tc, example_matches_its_readme, 0, SP_ARRAY_SIZE(modes));
	tcase_add_test(tc, example_json_independent_of_object_order);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
