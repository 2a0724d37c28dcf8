/* nftables lowering, printing, and the libnftnl encode/parse round trip,
 * without a kernel. The cluster is read from JSON and planned by the real
 * planner, so these tests see what `svcproxy plan` sees. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svcproxy/nft.h"
#include "svcproxy/nft_kernel.h"
#include "svcproxy/plan.h"
#include "svcproxy/source.h"

#define NODE "node-1"

/* Services: web (ClusterIP, one local and one remote endpoint), lb
 * (LoadBalancer, externalTrafficPolicy Local, source ranges, node port),
 * empty (no endpoints), sticky (ClientIP affinity), web6 (IPv6). */
static const char cluster_json[] =
	"{\"kind\":\"List\",\"apiVersion\":\"v1\",\"items\":["
	"{\"apiVersion\":\"v1\",\"kind\":\"Node\",\"metadata\":{\"name\":\"node-1\"},"
	" \"status\":{\"addresses\":[{\"type\":\"InternalIP\",\"address\":\"192.0.2.11\"}]}},"
	"{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"web\","
	" \"namespace\":\"default\"},\"spec\":{\"type\":\"ClusterIP\",\"clusterIP\":\"10.96.0.10\","
	" \"ports\":[{\"name\":\"http\",\"protocol\":\"TCP\",\"port\":80,\"targetPort\":8080}]}},"
	"{\"apiVersion\":\"discovery.k8s.io/v1\",\"kind\":\"EndpointSlice\",\"metadata\":"
	" {\"name\":\"web-a\",\"namespace\":\"default\",\"labels\":"
	" {\"kubernetes.io/service-name\":\"web\"}},\"addressType\":\"IPv4\","
	" \"ports\":[{\"name\":\"http\",\"protocol\":\"TCP\",\"port\":8080}],"
	" \"endpoints\":[{\"addresses\":[\"10.244.1.5\"],\"nodeName\":\"node-1\","
	"  \"conditions\":{\"ready\":true}},{\"addresses\":[\"10.244.2.5\"],"
	"  \"nodeName\":\"node-2\",\"conditions\":{\"ready\":true}}]},"
	"{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"lb\","
	" \"namespace\":\"default\"},\"spec\":{\"type\":\"LoadBalancer\",\"clusterIP\":"
	" \"10.96.0.20\",\"externalTrafficPolicy\":\"Local\",\"healthCheckNodePort\":32000,"
	" \"loadBalancerSourceRanges\":[\"203.0.113.0/24\"],"
	" \"ports\":[{\"protocol\":\"TCP\",\"port\":443,\"targetPort\":8443,\"nodePort\":30443}]},"
	" \"status\":{\"loadBalancer\":{\"ingress\":[{\"ip\":\"198.51.100.7\"}]}}},"
	"{\"apiVersion\":\"discovery.k8s.io/v1\",\"kind\":\"EndpointSlice\",\"metadata\":"
	" {\"name\":\"lb-a\",\"namespace\":\"default\",\"labels\":"
	" {\"kubernetes.io/service-name\":\"lb\"}},\"addressType\":\"IPv4\","
	" \"ports\":[{\"protocol\":\"TCP\",\"port\":8443}],"
	" \"endpoints\":[{\"addresses\":[\"10.244.1.6\"],\"nodeName\":\"node-1\","
	"  \"conditions\":{\"ready\":true}},{\"addresses\":[\"10.244.2.6\"],"
	"  \"nodeName\":\"node-2\",\"conditions\":{\"ready\":true}}]},"
	"{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"empty\","
	" \"namespace\":\"default\"},\"spec\":{\"type\":\"ClusterIP\",\"clusterIP\":\"10.96.0.30\","
	" \"ports\":[{\"protocol\":\"UDP\",\"port\":53}]}},"
	"{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"sticky\","
	" \"namespace\":\"default\"},\"spec\":{\"type\":\"ClusterIP\",\"clusterIP\":\"10.96.0.40\","
	" \"sessionAffinity\":\"ClientIP\",\"sessionAffinityConfig\":{\"clientIP\":"
	" {\"timeoutSeconds\":5}},\"ports\":[{\"protocol\":\"TCP\",\"port\":80}]}},"
	"{\"apiVersion\":\"discovery.k8s.io/v1\",\"kind\":\"EndpointSlice\",\"metadata\":"
	" {\"name\":\"sticky-a\",\"namespace\":\"default\",\"labels\":"
	" {\"kubernetes.io/service-name\":\"sticky\"}},\"addressType\":\"IPv4\","
	" \"ports\":[{\"protocol\":\"TCP\",\"port\":8080}],"
	" \"endpoints\":[{\"addresses\":[\"10.244.1.7\"],\"nodeName\":\"node-1\"},"
	"  {\"addresses\":[\"10.244.2.7\"],\"nodeName\":\"node-2\"}]},"
	"{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"web6\","
	" \"namespace\":\"default\"},\"spec\":{\"type\":\"ClusterIP\",\"clusterIP\":\"fd00::10\","
	" \"ipFamilies\":[\"IPv6\"],\"ports\":[{\"protocol\":\"TCP\",\"port\":80}]}},"
	"{\"apiVersion\":\"discovery.k8s.io/v1\",\"kind\":\"EndpointSlice\",\"metadata\":"
	" {\"name\":\"web6-a\",\"namespace\":\"default\",\"labels\":"
	" {\"kubernetes.io/service-name\":\"web6\"}},\"addressType\":\"IPv6\","
	" \"ports\":[{\"protocol\":\"TCP\",\"port\":8080}],"
	" \"endpoints\":[{\"addresses\":[\"fd00:244::5\"],\"nodeName\":\"node-1\"}]}"
	"]}";

static struct sp_plan plan;
static struct sp_nft_ruleset rs;
static struct sp_diag diag;

static void build(const char *cluster_cidr)
{
	struct sp_cluster cl;
	struct sp_config cfg;
	struct sp_source_limits lim;
	int ret;

	sp_diag_init(&diag);
	sp_cluster_init(&cl);
	sp_config_init(&cfg);
	cfg.mode = SP_MODE_NFTABLES;
	cfg.hostname = sp_xstrdup(NODE);
	if (cluster_cidr) {
		cfg.cluster_cidrs = sp_xcalloc(1, sizeof(*cfg.cluster_cidrs));
		ck_assert(sp_cidr_parse(cluster_cidr, &cfg.cluster_cidrs[0]));
		cfg.n_cluster_cidrs = 1;
	}
	sp_source_limits_default(&lim);
	ret = sp_source_read_buffer(&cl, "test.json", cluster_json, strlen(cluster_json), &lim,
				    &diag);
	ck_assert_msg(ret == 0, "source: %s", diag.n_msgs ? diag.msgs[0].text : "?");
	sp_plan_build(&plan, &cl, &cfg, &diag);
	sp_nft_lower(&plan, &rs, &diag);
	sp_cluster_free(&cl);
	sp_config_free(&cfg);
}

static void teardown(void)
{
	sp_nft_ruleset_free(&rs);
	sp_plan_free(&plan);
	sp_diag_free(&diag);
}

static char *text_of(void)
{
	struct sp_buf b;

	sp_buf_init(&b);
	sp_nft_print_ruleset(&rs, &b);
	if (getenv("SP_TEST_DUMP"))
		fputs(b.data, stderr);
	return sp_buf_steal(&b);
}

/* The rules of chain `name` in the ip table, one per line. */
static char *chain_text(int family, const char *name)
{
	const struct sp_nft_table *t = sp_nft_table_find(&rs, family);
	const struct sp_nft_chain *c;
	struct sp_buf b;

	ck_assert_ptr_nonnull(t);
	c = sp_nft_chain_find(t, name);
	ck_assert_msg(c != NULL, "no chain %s", name);
	sp_buf_init(&b);
	sp_buf_add(&b, "");
	for (size_t i = 0; i < c->n_rules; i++) {
		sp_nft_print_rule(t, &c->rules[i], &b);
		sp_buf_add(&b, "\n");
	}
	return sp_buf_steal(&b);
}

static void assert_chain(int family, const char *name, const char *want)
{
	char *got = chain_text(family, name);

	ck_assert_msg(!strcmp(got, want), "chain %s:\n%s\nwanted:\n%s", name, got, want);
	free(got);
}

START_TEST(cluster_ip_spreads_over_endpoints)
{
	char *text;

	build("10.244.0.0/16");
	assert_chain(AF_INET, "svc-default/web/tcp/http",
		     "ip daddr 10.96.0.10 meta l4proto tcp th dport 80 jump "
		     "masquerade-off-cluster\n"
		     "goto pick-endpoints-tcp-2\n");
	/* The endpoint is map data: slot i of (ClusterIP . port) is endpoint i. */
	assert_chain(AF_INET, "pick-endpoints-tcp-2",
		     "dnat ip to ip daddr . tcp dport . numgen random mod 2 map @endpoints-tcp\n");
	assert_chain(AF_INET, "masquerade-off-cluster",
		     "ip saddr 10.244.0.0/16 return\ngoto mark-for-masquerade\n");
	text = text_of();
	ck_assert_ptr_nonnull(
		strstr(text, "10.96.0.10 . tcp . 80 : goto svc-default/web/tcp/http"));
	ck_assert_ptr_nonnull(strstr(text, "10.96.0.10 . 80 . 0 : 10.244.1.5 . 8080,"));
	ck_assert_ptr_nonnull(strstr(text, "10.96.0.10 . 80 . 1 : 10.244.2.5 . 8080"));
	ck_assert_ptr_nonnull(strstr(text, "typeof ip daddr . tcp dport . numgen random mod 1 : "
					   "ip daddr . tcp dport"));
	/* Hairpin: local endpoints only. */
	ck_assert_ptr_nonnull(strstr(text, "10.244.1.5 . 10.244.1.5"));
	ck_assert_ptr_null(strstr(text, "10.244.2.5 . 10.244.2.5"));
	assert_chain(AF_INET, "masquerading",
		     "ip saddr . ip daddr @hairpin-endpoints jump mark-for-masquerade\n"
		     "meta mark & 0x00004000 == 0 return\n"
		     "meta mark set meta mark ^ 0x00004000\n"
		     "masquerade fully-random\n");
	free(text);
}
END_TEST

START_TEST(no_endpoints_rejected)
{
	const struct sp_nft_table *t;
	const struct sp_nft_set *s;
	char *text;

	build(NULL);
	t = sp_nft_table_find(&rs, AF_INET);
	ck_assert_ptr_null(sp_nft_chain_find(t, "svc-default/empty/udp/53"));
	s = sp_nft_set_find(t, "no-endpoint-services");
	ck_assert_ptr_nonnull(s);
	text = text_of();
	ck_assert_ptr_nonnull(strstr(text, "10.96.0.30 . udp . 53 : goto reject-chain"));
	ck_assert_ptr_null(strstr(text, "10.96.0.30 . udp . 53 : goto svc"));
	free(text);
	/* Without cluster CIDRs nothing masquerades ClusterIP traffic. */
	assert_chain(AF_INET, "svc-default/web/tcp/http", "goto pick-endpoints-tcp-2\n");
}
END_TEST

START_TEST(local_policy_short_circuits_in_cluster)
{
	char *text;

	build("10.244.0.0/16");
	assert_chain(AF_INET, "ext-default/lb/tcp/443",
		     "ip saddr 10.244.0.0/16 goto svc-default/lb/tcp/443\n"
		     "fib saddr type local jump mark-for-masquerade\n"
		     "fib saddr type local goto svc-default/lb/tcp/443\n"
		     "goto local-default/lb/tcp/443\n");
	assert_chain(AF_INET, "local-default/lb/tcp/443", "goto pick-local-endpoints-tcp-1\n");
	/* Node ports arrive on any local address: their own chain, keyed by
	 * the node port alone. */
	assert_chain(AF_INET, "nodeport-default/lb/tcp/443",
		     "ip saddr 10.244.0.0/16 goto pick-nodeport-endpoints-tcp-2\n"
		     "fib saddr type local jump mark-for-masquerade\n"
		     "fib saddr type local goto pick-nodeport-endpoints-tcp-2\n"
		     "goto pick-local-nodeport-endpoints-tcp-1\n");
	assert_chain(
		AF_INET, "pick-local-nodeport-endpoints-tcp-1",
		"dnat ip to tcp dport . numgen random mod 1 map @local-nodeport-endpoints-tcp\n");
	assert_chain(AF_INET, "fw-default/lb/tcp/443", "ip saddr 203.0.113.0/24 return\ndrop\n");
	text = text_of();
	ck_assert_ptr_nonnull(
		strstr(text, "198.51.100.7 . tcp . 443 : goto ext-default/lb/tcp/443"));
	ck_assert_ptr_nonnull(
		strstr(text, "198.51.100.7 . tcp . 443 : goto fw-default/lb/tcp/443"));
	ck_assert_ptr_nonnull(strstr(text, "tcp . 30443 : goto nodeport-default/lb/tcp/443"));
	/* The LB IP: every endpoint for the short circuit, the local one
	 * otherwise; the node port likewise. */
	ck_assert_ptr_nonnull(strstr(text, "198.51.100.7 . 443 . 1 : 10.244.2.6 . 8443"));
	ck_assert_ptr_nonnull(strstr(text, "local-endpoints-tcp {\n\t\ttypeof ip daddr . tcp dport "
					   ". numgen random mod 1 : ip daddr . tcp dport\n"
					   "\t\telements = {\n\t\t\t198.51.100.7 . 443 . 0 : "
					   "10.244.1.6 . 8443\n"));
	ck_assert_ptr_nonnull(strstr(text, "30443 . 1 : 10.244.2.6 . 8443"));
	free(text);
}
END_TEST

START_TEST(affinity_uses_one_dynamic_map)
{
	const struct sp_nft_set *s;

	build(NULL);
	s = sp_nft_set_find(sp_nft_table_find(&rs, AF_INET), "aff-default/sticky/tcp/80");
	ck_assert_ptr_nonnull(s);
	ck_assert(s->affinity);
	ck_assert_uint_eq(s->timeout_s, 5);
	assert_chain(AF_INET, "svc-default/sticky/tcp/80",
		     "meta l4proto tcp dnat ip to ip saddr map @aff-default/sticky/tcp/80 : 8080\n"
		     "meta l4proto tcp numgen random mod 2 == 0 update @aff-default/sticky/tcp/80 "
		     "{ ip saddr : 10.244.1.7 } dnat ip to 10.244.1.7:8080\n"
		     "meta l4proto tcp update @aff-default/sticky/tcp/80 { ip saddr : 10.244.2.7 } "
		     "dnat ip to 10.244.2.7:8080\n");
}
END_TEST

START_TEST(ipv6_gets_its_own_table)
{
	const struct sp_nft_table *t6;

	build(NULL);
	ck_assert_uint_eq(rs.n_tables, 2);
	t6 = sp_nft_table_find(&rs, AF_INET6);
	ck_assert_ptr_nonnull(t6);
	ck_assert_ptr_null(sp_nft_chain_find(t6, "svc-default/web/tcp/http"));
	assert_chain(AF_INET6, "svc-default/web6/tcp/80", "goto pick-endpoints-tcp-1\n");
	assert_chain(
		AF_INET6, "pick-endpoints-tcp-1",
		"dnat ip6 to ip6 daddr . tcp dport . numgen random mod 1 map @endpoints-tcp\n");
	assert_chain(AF_INET6, "services",
		     "ip6 daddr . meta l4proto . th dport vmap @service-ips\n"
		     "fib daddr type local ip6 daddr != ::1 meta l4proto . th dport vmap "
		     "@service-nodeports\n");
}
END_TEST

START_TEST(few_sets_whatever_the_size)
{
	const struct sp_nft_table *t;

	build("10.244.0.0/16");
	t = sp_nft_table_find(&rs, AF_INET);
	/* Five fixed maps, the hairpin set, the endpoint maps (four kinds
	 * for each of TCP, UDP and SCTP), and one map per Service port with
	 * affinity. */
	ck_assert_uint_eq(t->n_sets, 6 + 12 + 1);
}
END_TEST

/* One pick chain per endpoint map and endpoint count in use, whatever the
 * number of ports, large counts included; affinity ports and ports without
 * endpoints need none. */
START_TEST(pick_chains_one_per_count)
{
	static const size_t counts[] = {5, 1500, 5, 2000, 1500, 1023, 1024, 7};
	struct sp_plan_svcport sps[SP_ARRAY_SIZE(counts)] = {0};
	struct sp_plan p = {0};
	struct sp_nft_table t = {0};
	struct sp_buf names;

	for (size_t i = 0; i < SP_ARRAY_SIZE(counts); i++) {
		sps[i].family = AF_INET;
		sps[i].protocol = IPPROTO_TCP;
		sps[i].has_any_endpoints = true;
		sps[i].cluster.n = counts[i];
	}
	sps[7].affinity = true; /* keeps the cascade */
	sps[0].protocol = IPPROTO_UDP;
	sps[2].node_port = 30000;
	sps[2].external_policy_local = true;
	sps[2].local.n = 2;
	p.svcports = sps;
	p.n_svcports = SP_ARRAY_SIZE(sps);
	t.family = AF_INET;
	sp_nft_pick_chains(&p, AF_INET, &t);
	sp_buf_init(&names);
	sp_buf_add(&names, "");
	for (size_t i = 0; i < t.n_chains; i++) {
		sp_buf_addf(&names, "%s\n", t.chains[i].name);
		ck_assert_uint_eq(t.chains[i].n_rules, 1);
	}
	ck_assert_str_eq(names.data, "pick-endpoints-tcp-5\n"
				     "pick-endpoints-tcp-1023\n"
				     "pick-endpoints-tcp-1024\n"
				     "pick-endpoints-tcp-1500\n"
				     "pick-endpoints-tcp-2000\n"
				     "pick-endpoints-udp-5\n"
				     "pick-local-endpoints-tcp-2\n"
				     "pick-nodeport-endpoints-tcp-5\n"
				     "pick-local-nodeport-endpoints-tcp-2\n");
	sp_buf_free(&names);
	sp_nft_table_free(&t);
}
END_TEST

START_TEST(deterministic_text)
{
	char *a, *b;

	build("10.244.0.0/16");
	a = text_of();
	teardown();
	build("10.244.0.0/16");
	b = text_of();
	ck_assert_str_eq(a, b);
	free(a);
	free(b);
}
END_TEST

/* Every rule survives libnftnl's message encoding and parsing with the same
 * expressions: what read-back compares is what sync sent. */
START_TEST(rules_roundtrip_through_netlink)
{
	size_t n = 0;

	build("10.244.0.0/16");
	for (size_t i = 0; i < rs.n_tables; i++) {
		const struct sp_nft_table *t = &rs.tables[i];

		for (size_t j = 0; j < t->n_chains; j++) {
			for (size_t k = 0; k < t->chains[j].n_rules; k++) {
				const struct sp_nft_rule *r = &t->chains[j].rules[k];
				char *want = sp_nft_rule_signature(t->family, r);
				char *got = sp_nft_rule_roundtrip_signature(t->family, r);

				ck_assert_ptr_nonnull(got);
				ck_assert_msg(!strcmp(want, got), "%s: %s != %s", t->chains[j].name,
					      want, got);
				ck_assert(strlen(want) > 0);
				free(want);
				free(got);
				n++;
			}
		}
	}
	ck_assert_uint_gt(n, 30);
}
END_TEST

/* Every rule the lowering makes decodes back into the same statements
 * (what print_state shows for a table read back from the kernel). */
START_TEST(rules_decode_back)
{
	size_t n = 0;

	build("10.244.0.0/16");
	for (size_t i = 0; i < rs.n_tables; i++) {
		const struct sp_nft_table *t = &rs.tables[i];

		for (size_t j = 0; j < t->n_chains; j++) {
			for (size_t k = 0; k < t->chains[j].n_rules; k++) {
				const struct sp_nft_rule *r = &t->chains[j].rules[k];
				struct sp_nft_rule back;
				struct sp_buf a, b;

				sp_nft_rule_roundtrip_decode(t->family, r, &back);
				sp_buf_init(&a);
				sp_buf_init(&b);
				sp_nft_print_rule(t, r, &a);
				sp_nft_print_rule(t, &back, &b);
				ck_assert_msg(sp_nft_rule_equal(r, &back), "%s: %s decoded as %s",
					      t->chains[j].name, a.data,
					      b.data ? b.data : "nothing");
				sp_buf_free(&a);
				sp_buf_free(&b);
				sp_nft_rule_free(&back);
				n++;
			}
		}
	}
	ck_assert_uint_gt(n, 30);
}
END_TEST

/* The signature is exact: a different endpoint gives a different text. */
START_TEST(signature_tells_rules_apart)
{
	struct sp_nft_rule a = {0}, b = {0};
	struct sp_nft_stmt *s;
	char *sa, *sb;

	s = sp_nft_stmt_add(&a, SP_NFT_DNAT);
	sp_addr_parse("10.0.0.1", &s->addr);
	s->port = 80;
	s = sp_nft_stmt_add(&b, SP_NFT_DNAT);
	sp_addr_parse("10.0.0.2", &s->addr);
	s->port = 80;
	sa = sp_nft_rule_signature(AF_INET, &a);
	sb = sp_nft_rule_signature(AF_INET, &b);
	ck_assert_str_ne(sa, sb);
	ck_assert(!sp_nft_rule_equal(&a, &b));
	ck_assert_ptr_nonnull(strstr(sa, "nat dnat ip"));
	free(sa);
	free(sb);
	sp_nft_rule_free(&a);
	sp_nft_rule_free(&b);
}
END_TEST

START_TEST(duplicate_keys_keep_the_first)
{
	struct sp_nft_set s = {0};
	struct sp_diag d;
	struct sp_nft_elem *e;

	sp_diag_init(&d);
	s.name = sp_xstrdup("service-ips");
	s.key = SP_NFT_KEY_DADDR_PROTO_PORT;
	for (int i = 0; i < 3; i++) {
		e = sp_nft_elem_add(&s);
		sp_addr_parse(i == 1 ? "10.0.0.1" : "10.0.0.2", &e->addr);
		e->proto = 6;
		e->port = 80;
		e->verdict = SP_NFT_GOTO;
		e->chain = sp_xasprintf("c%d", i);
	}
	sp_nft_set_sort(&s, &d);
	ck_assert_uint_eq(s.n_elems, 2);
	ck_assert_str_eq(s.elems[0].chain, "c1");
	ck_assert_str_eq(s.elems[1].chain, "c0");
	ck_assert(sp_diag_has(&d, SP_SEV_WARNING, "claimed twice"));
	sp_nft_set_free(&s);
	sp_diag_free(&d);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("nft");
	TCase *tc = tcase_create("lower");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_add_test(tc, cluster_ip_spreads_over_endpoints);
	tcase_add_test(tc, no_endpoints_rejected);
	tcase_add_test(tc, local_policy_short_circuits_in_cluster);
	tcase_add_test(tc, affinity_uses_one_dynamic_map);
	tcase_add_test(tc, ipv6_gets_its_own_table);
	tcase_add_test(tc, few_sets_whatever_the_size);
	tcase_add_test(tc, deterministic_text);
	tcase_add_test(tc, pick_chains_one_per_count);
	tcase_add_test(tc, rules_roundtrip_through_netlink);
	tcase_add_test(tc, rules_decode_back);
	suite_add_tcase(s, tc);
	tc = tcase_create("ir");
	tcase_add_test(tc, signature_tells_rules_apart);
	tcase_add_test(tc, duplicate_keys_keep_the_first);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
