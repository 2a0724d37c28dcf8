/* KubeProxyConfiguration files (JSON and YAML) and Go durations. */
#include <check.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "svcproxy/config.h"
#include "svcproxy/diag.h"
#include "svcproxy/source.h"

static char *data_path(const char *name)
{
	const char *top = getenv("top_srcdir");
	char *p = NULL;

	ck_assert_int_gt(asprintf(&p, "%s/tests/data/source/config/%s", top ? top : "..", name), 0);
	return p;
}

static void dump_diag(const struct sp_diag *d)
{
	for (size_t i = 0; i < d->n_msgs; i++)
		fprintf(stderr, "  diag: %s\n", d->msgs[i].text);
}

static void assert_cidr(const struct sp_cidr *c, const char *want)
{
	char buf[SP_CIDRSTRLEN];

	ck_assert_str_eq(sp_cidr_format(c, buf), want);
}

START_TEST(durations)
{
	static const struct {
		const char *text;
		bool ok;
		uint64_t ms;
	} cases[] = {
		{"30s", true, 30000},	 {"1m", true, 60000},	 {"500ms", true, 500},
		{"1m30s", true, 90000},	 {"1h", true, 3600000},	 {"0", true, 0},
		{"0s", true, 0},	 {"1.5s", true, 1500},	 {".5s", true, 500},
		{"1500us", true, 1},	 {"2000000ns", true, 2}, {"1\xc2\xb5s", true, 0},
		{"+2s", true, 2000},	 {"", false, 0},	 {"30", false, 0},
		{"s", false, 0},	 {"-1s", false, 0},	 {"1d", false, 0},
		{"1 s", false, 0},	 {"1s ", false, 0},	 {"1.s", true, 1000},
		{"10000000h", false, 0}, {"abc", false, 0},	 {"1m-1s", false, 0},
	};
	for (size_t i = 0; i < SP_ARRAY_SIZE(cases); i++) {
		uint64_t ms = 12345;
		bool ok = sp_src_parse_duration_ms(cases[i].text, &ms);

		ck_assert_msg(ok == cases[i].ok, "%s", cases[i].text);
		if (ok)
			ck_assert_msg(ms == cases[i].ms, "%s: %lu", cases[i].text,
				      (unsigned long)ms);
	}
}
END_TEST

START_TEST(yaml_every_field)
{
	char *path = data_path("full.yaml");
	struct sp_config cfg;
	struct sp_diag d;

	sp_config_init(&cfg);
	sp_diag_init(&d);
	ck_assert_int_eq(sp_config_load_file(&cfg, path, &d), 0);
	dump_diag(&d);
	ck_assert_uint_eq(d.n_msgs, 0);
	ck_assert_int_eq(cfg.mode, SP_MODE_IPVS);
	ck_assert_str_eq(cfg.hostname, "worker-7");
	ck_assert_uint_eq(cfg.n_cluster_cidrs, 2);
	assert_cidr(&cfg.cluster_cidrs[0], "10.244.0.0/16");
	assert_cidr(&cfg.cluster_cidrs[1], "fd00:10::/56");
	ck_assert_uint_eq(cfg.n_nodeport_cidrs, 2);
	assert_cidr(&cfg.nodeport_cidrs[0], "192.168.7.0/24");
	assert_cidr(&cfg.nodeport_cidrs[1], "fd00:7::/64");
	ck_assert(cfg.masquerade_all);
	ck_assert_uint_eq(cfg.masquerade_bit, 15);
	ck_assert_str_eq(cfg.ipvs_scheduler, "wlc");
	ck_assert(cfg.ipvs_strict_arp);
	/* The mode in use picks its section's periods. */
	ck_assert_uint_eq(cfg.sync_period_ms, 45000);
	ck_assert_uint_eq(cfg.min_sync_period_ms, 1500);
	ck_assert_str_eq(cfg.healthz_bind_address, "0.0.0.0:10256");
	ck_assert_str_eq(cfg.metrics_bind_address, "[::1]:10249");
	ck_assert_str_eq(cfg.config_file, path);
	sp_config_free(&cfg);
	sp_diag_free(&d);
	free(path);
}
END_TEST

START_TEST(json_every_field)
{
	char *path = data_path("full.json");
	struct sp_config cfg;
	struct sp_diag d;

	sp_config_init(&cfg);
	sp_diag_init(&d);
	ck_assert_int_eq(sp_config_load_file(&cfg, path, &d), 0);
	dump_diag(&d);
	ck_assert_uint_eq(d.n_msgs, 0);
	ck_assert_int_eq(cfg.mode, SP_MODE_NFTABLES);
	ck_assert_str_eq(cfg.hostname, "worker-8");
	ck_assert_uint_eq(cfg.n_cluster_cidrs, 1);
	ck_assert_uint_eq(cfg.n_nodeport_cidrs, 1);
	assert_cidr(&cfg.nodeport_cidrs[0], "10.7.0.0/24");
	ck_assert(!cfg.masquerade_all);
	ck_assert_uint_eq(cfg.masquerade_bit, 0);
	ck_assert_str_eq(cfg.ipvs_scheduler, "rr");
	ck_assert(!cfg.ipvs_strict_arp);
	ck_assert_uint_eq(cfg.sync_period_ms, 90000);
	ck_assert_uint_eq(cfg.min_sync_period_ms, 250);
	ck_assert_str_eq(cfg.healthz_bind_address, "127.0.0.1:10256");
	ck_assert_str_eq(cfg.metrics_bind_address, "0.0.0.0:10249");
	sp_config_free(&cfg);
	sp_diag_free(&d);
	free(path);
}
END_TEST

static int load_text(const char *text, struct sp_config *cfg, struct sp_diag *d, char **name)
{
	char tmpl[] = "/tmp/sp-config-XXXXXX";
	int fd = mkstemp(tmpl);
	int ret;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	ret = sp_config_load_file(cfg, tmpl, d);
	unlink(tmpl);
	*name = strdup(tmpl);
	return ret;
}

#define HDR "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"

START_TEST(bad_values_name_file_field_value)
{
	static const struct {
		const char *text;
		const char *message; /* after "<file>: " */
	} cases[] = {
		{HDR "mode: userspace\n",
		 "KubeProxyConfiguration: mode: \"userspace\" is not one of iptables, ipvs, "
		 "nftables"},
		{HDR "mode: [ipvs]\n", "KubeProxyConfiguration: mode: [...] is not a string"},
		{HDR "iptables:\n  syncPeriod: 30\n",
		 "KubeProxyConfiguration: iptables.syncPeriod: 30 is not a string"},
		{HDR "iptables:\n  syncPeriod: 30x\n",
		 "KubeProxyConfiguration: iptables.syncPeriod: \"30x\" is not a duration"},
		{HDR "ipvs:\n  minSyncPeriod: -1s\n",
		 "KubeProxyConfiguration: ipvs.minSyncPeriod: \"-1s\" is not a duration"},
		{HDR "nftables:\n  syncPeriod: 0s\n",
		 "KubeProxyConfiguration: nftables.syncPeriod: must be greater than 0"},
		{HDR "iptables:\n  syncPeriod: 1s\n  minSyncPeriod: 5s\n",
		 "KubeProxyConfiguration: iptables.syncPeriod: 1000ms is shorter than "
		 "minSyncPeriod "
		 "(5000ms)"},
		{HDR "iptables:\n  masqueradeBit: 32\n",
		 "KubeProxyConfiguration: iptables.masqueradeBit: 32 is not within the range [0, "
		 "31]"},
		{HDR "iptables:\n  masqueradeAll: maybe\n",
		 "KubeProxyConfiguration: iptables.masqueradeAll: \"maybe\" is not a boolean"},
		{HDR "ipvs:\n  scheduler: fastest\n",
		 "KubeProxyConfiguration: ipvs.scheduler: \"fastest\" is not an IPVS scheduler"},
		{HDR "clusterCIDR: 10.0.0.0/8,10.300.0.0/16\n",
		 "KubeProxyConfiguration: clusterCIDR: \"10.300.0.0/16\" is not a CIDR"},
		{HDR "nodePortAddresses: [10.0.0.0/40]\n",
		 "KubeProxyConfiguration: nodePortAddresses[0]: \"10.0.0.0/40\" is not a CIDR"},
		{HDR "nodePortAddresses: 10.0.0.0/8\n",
		 "KubeProxyConfiguration: nodePortAddresses: \"10.0.0.0/8\" is not an array"},
		{HDR "healthzBindAddress: localhost:10256\n",
		 "KubeProxyConfiguration: healthzBindAddress: \"localhost:10256\" is not an "
		 "IP:port"},
		{HDR "metricsBindAddress: 127.0.0.1:99999\n",
		 "KubeProxyConfiguration: metricsBindAddress: \"127.0.0.1:99999\" is not an "
		 "IP:port"},
		{HDR "hostnameOverride: Bad_Host\n",
		 "KubeProxyConfiguration: hostnameOverride: \"bad_host\" is not a valid name"},
		{"kind: KubeProxyConfiguration\nmode: ipvs\n",
		 "KubeProxyConfiguration: apiVersion: required value is missing"},
		{"apiVersion: kubeproxy.config.k8s.io/v1alpha2\n",
		 "KubeProxyConfiguration: apiVersion: \"kubeproxy.config.k8s.io/v1alpha2\" is not "
		 "supported"},
		{"apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeletConfiguration\n",
		 "KubeProxyConfiguration: kind: \"KubeletConfiguration\" is not "
		 "KubeProxyConfiguration"},
		{"mode: [unclosed\n", "not YAML: line 2"},
		{"{\"mode\": }", "not JSON: parse error at line 1 column 10"},
		{"- a\n- b\n", "KubeProxyConfiguration: the top level is not a mapping"},
		{"", "the file is empty"},
		{"a: &a [1,1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
		 "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
		 "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\n",
		 "more than 100000 YAML values once aliases are expanded"},
		{"a: "
		 "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"
		 "\n",
		 "line 1: YAML nested deeper than 32 levels"},
		{HDR "svcproxy:\n  maxInputBytes: 0\n",
		 "KubeProxyConfiguration: svcproxy.maxInputBytes: 0 is not a whole number from 1 "
		 "up"},
		{HDR "svcproxy:\n  maxJSONDepth: 2.5\n",
		 "KubeProxyConfiguration: svcproxy.maxJSONDepth: 2.5 is not a whole number"},
		{HDR "svcproxy:\n  maxJSONItems: -3\n",
		 "KubeProxyConfiguration: svcproxy.maxJSONItems: -3 is not a whole number"},
		{HDR "svcproxy:\n  maxJSONItems: 9007199254740994\n",
		 "KubeProxyConfiguration: svcproxy.maxJSONItems: 9007199254740994 is not a whole "
		 "number from 1 up to 2^53"},
		{HDR "svcproxy:\n  maxInputBytes: \"1Mi\"\n",
		 "KubeProxyConfiguration: svcproxy.maxInputBytes: \"1Mi\" is not an integer"},
		{HDR "svcproxy:\n  maxJsonDepth: 8\n",
		 "KubeProxyConfiguration: svcproxy.\"maxJsonDepth\": unknown field (known: "
		 "maxInputBytes, maxJSONDepth, maxJSONItems)"},
		{HDR "svcproxy: 1048576\n",
		 "KubeProxyConfiguration: svcproxy: 1048576 is not an object"},
	};
	for (size_t i = 0; i < SP_ARRAY_SIZE(cases); i++) {
		struct sp_config cfg;
		struct sp_diag d;
		char *name, *want;
		int ret;

		sp_config_init(&cfg);
		sp_diag_init(&d);
		ret = load_text(cases[i].text, &cfg, &d, &name);
		ck_assert_int_gt(asprintf(&want, "%s: %s", name, cases[i].message), 0);
		if (ret != -1 || !sp_diag_has(&d, SP_SEV_ERROR, want))
			dump_diag(&d);
		ck_assert_msg(ret == -1, "case %zu", i);
		ck_assert_msg(sp_diag_has(&d, SP_SEV_ERROR, want), "case %zu: %s", i, want);
		free(want);
		free(name);
		sp_config_free(&cfg);
		sp_diag_free(&d);
	}
}
END_TEST

START_TEST(primary_and_defaults)
{
	struct sp_config cfg;
	struct sp_diag d;
	char *name;

	sp_config_init(&cfg);
	sp_diag_init(&d);
	ck_assert_int_eq(load_text(HDR "nodePortAddresses: [primary]\nmode: \"\"\n"
				       "iptables:\n  syncPeriod: 10s\n",
				   &cfg, &d, &name),
			 0);
	ck_assert(sp_diag_has(&d, SP_SEV_WARNING, "\"primary\" is not supported"));
	ck_assert_uint_eq(cfg.n_nodeport_cidrs, 0);
	ck_assert_int_eq(cfg.mode, SP_MODE_IPTABLES);
	ck_assert_uint_eq(cfg.sync_period_ms, 10000);
	ck_assert_uint_eq(cfg.min_sync_period_ms, 1000);
	ck_assert_uint_eq(cfg.masquerade_bit, 14);
	ck_assert_str_eq(cfg.ipvs_scheduler, "rr");
	free(name);
	sp_config_free(&cfg);
	sp_diag_free(&d);
	sp_config_init(&cfg);
	sp_diag_init(&d);
	ck_assert_int_eq(sp_config_load_file(&cfg, "/nonexistent/kp.yaml", &d), -1);
	ck_assert(sp_diag_has(&d, SP_SEV_ERROR, "/nonexistent/kp.yaml: cannot open"));
	sp_config_free(&cfg);
	sp_diag_free(&d);
}
END_TEST

/* svcproxy's own section: read from YAML and JSON, absent keys keep the
 * reader's defaults, and a file without it changes nothing. */
START_TEST(source_limits_section)
{
	struct sp_source_limits lim, def;
	struct sp_config cfg;
	struct sp_diag d;
	char *name;

	sp_source_limits_default(&def);
	sp_config_init(&cfg);
	sp_diag_init(&d);
	sp_config_source_limits(&cfg, &lim);
	ck_assert_uint_eq(lim.max_file_bytes, def.max_file_bytes);
	ck_assert_uint_eq(lim.max_depth, def.max_depth);
	ck_assert_uint_eq(lim.max_items, def.max_items);
	ck_assert_int_eq(load_text(HDR "svcproxy:\n  maxInputBytes: 1048576\n"
				       "  maxJSONDepth: 12\n  maxJSONItems: 5000\n",
				   &cfg, &d, &name),
			 0);
	dump_diag(&d);
	ck_assert_uint_eq(d.n_msgs, 0);
	sp_config_source_limits(&cfg, &lim);
	ck_assert_uint_eq(lim.max_file_bytes, 1048576);
	ck_assert_uint_eq(lim.max_depth, 12);
	ck_assert_uint_eq(lim.max_items, 5000);
	free(name);
	sp_config_free(&cfg);
	sp_diag_free(&d);

	sp_config_init(&cfg);
	sp_diag_init(&d);
	ck_assert_int_eq(load_text("{\"apiVersion\": \"kubeproxy.config.k8s.io/v1alpha1\", "
				   "\"kind\": \"KubeProxyConfiguration\", "
				   "\"svcproxy\": {\"maxJSONDepth\": 9007199254740992}}",
				   &cfg, &d, &name),
			 0);
	dump_diag(&d);
	sp_config_source_limits(&cfg, &lim);
	ck_assert_uint_eq(lim.max_file_bytes, def.max_file_bytes);
	ck_assert_uint_eq(lim.max_depth, 9007199254740992u);
	ck_assert_uint_eq(lim.max_items, def.max_items);
	free(name);
	sp_config_free(&cfg);
	sp_diag_free(&d);

	sp_config_init(&cfg);
	sp_diag_init(&d);
	ck_assert_int_eq(load_text(HDR "svcproxy: null\nmode: nftables\n", &cfg, &d, &name), 0);
	sp_config_source_limits(&cfg, &lim);
	ck_assert_uint_eq(lim.max_file_bytes, def.max_file_bytes);
	free(name);
	sp_config_free(&cfg);
	sp_diag_free(&d);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("file");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, durations);
	tcase_add_test(tc, yaml_every_field);
	tcase_add_test(tc, json_every_field);
	tcase_add_test(tc, bad_values_name_file_field_value);
	tcase_add_test(tc, primary_and_defaults);
	tcase_add_test(tc, source_limits_section);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
