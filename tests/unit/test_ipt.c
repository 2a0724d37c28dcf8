/* iptables mode, pure part: names, probabilities and kube-proxy's layout for
 * each kind of service, on plans built by hand. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "svcproxy/ipt.h"

/* ---- a small plan builder ---- */

static struct sp_addr A(const char *text) {
	struct sp_addr a;

	ck_assert_msg(sp_addr_parse(text, &a), "bad address %s", text);
	return a;
}

static void
plan_init(struct sp_plan *p)
{
	memset(p, 0, sizeof(*p));
	p->mode = SP_MODE_IPTABLES;
	p->node_name = sp_xstrdup("node-a");
	p->nodeport_all_local = true;
	p->masquerade_mark = 0x4000;
	p->node_ips = sp_xcalloc(1, sizeof(*p->node_ips));
	p->node_ips[0] = A("192.168.0.10");
	p->n_node_ips = 1;
}

static void set_cluster_cidr(struct sp_plan *p, const char *cidr)
{
	p->cluster_cidrs = sp_xcalloc(1, sizeof(*p->cluster_cidrs));
	ck_assert(sp_cidr_parse(cidr, &p->cluster_cidrs[0]));
	p->n_cluster_cidrs = 1;
}

static struct sp_plan_svcport *add_svcport(struct sp_plan *p, const char *ns, const char *name,
					   const char *port_name, uint8_t proto,
					   const char *cluster_ip, uint16_t port)
{
	struct sp_plan_svcport *sp;

	p->svcports = sp_xrealloc(p->svcports, (p->n_svcports + 1) * sizeof(*sp));
	sp = &p->svcports[p->n_svcports++];
	memset(sp, 0, sizeof(*sp));
	sp->namespace = sp_xstrdup(ns);
	sp->name = sp_xstrdup(name);
	sp->port_name = sp_xstrdup(port_name);
	sp->id = sp_xasprintf("%s/%s:%s", ns, name, port_name);
	sp->family = AF_INET;
	sp->protocol = proto;
	sp->type = SP_SVC_CLUSTER_IP;
	sp->cluster_ip = A(cluster_ip);
	sp->port = port;
	return sp;
}

/* Endpoint ip:port, local or not, and in which sets. */
static void add_ep(struct sp_plan_svcport *sp, const char *ip, uint16_t port, bool local,
		   bool in_cluster, bool in_local)
{
	size_t i = sp->n_endpoints++;

	sp->endpoints = sp_xrealloc(sp->endpoints, sp->n_endpoints * sizeof(*sp->endpoints));
	memset(&sp->endpoints[i], 0, sizeof(sp->endpoints[i]));
	sp->endpoints[i].addr = A(ip);
	sp->endpoints[i].port = port;
	sp->endpoints[i].local = local;
	sp->endpoints[i].ready = sp->endpoints[i].serving = true;
	if (in_cluster) {
		sp->cluster.idx =
			sp_xrealloc(sp->cluster.idx, (sp->cluster.n + 1) * sizeof(size_t));
		sp->cluster.idx[sp->cluster.n++] = i;
	}
	if (in_local) {
		sp->local.idx = sp_xrealloc(sp->local.idx, (sp->local.n + 1) * sizeof(size_t));
		sp->local.idx[sp->local.n++] = i;
	}
	sp->has_any_endpoints = true;
}

static void plan_release(struct sp_plan *p)
{
	for (size_t i = 0; i < p->n_svcports; i++) {
		struct sp_plan_svcport *sp = &p->svcports[i];

		free(sp->namespace);
		free(sp->name);
		free(sp->port_name);
		free(sp->id);
		free(sp->external_ips);
		free(sp->lb_ips);
		free(sp->source_ranges);
		free(sp->endpoints);
		free(sp->cluster.idx);
		free(sp->local.idx);
	}
	free(p->svcports);
	free(p->node_ips);
	free(p->cluster_cidrs);
	free(p->nodeport_addrs);
	free(p->node_name);
}

/* Lower and print the plan; caller frees. */
static char *lower_text(const struct sp_plan *p)
{
	struct sp_ipt_ruleset rs;
	struct sp_buf out;

	sp_buf_init(&out);
	sp_ipt_ruleset_init(&rs, AF_INET);
	sp_ipt_lower(p, &rs);
	sp_ipt_print_ruleset(&rs, &out);
	sp_ipt_ruleset_free(&rs);
	return sp_buf_steal(&out);
}

static void assert_has(const char *text, const char *line)
{
	if (!strstr(text, line))
		fprintf(stderr, "plan:\n%s", text);
	ck_assert_msg(strstr(text, line) != NULL, "missing:\n%s", line);
}

static void assert_lacks(const char *text, const char *needle)
{
	if (strstr(text, needle))
		fprintf(stderr, "plan:\n%s", text);
	ck_assert_msg(strstr(text, needle) == NULL, "unexpected:\n%s", needle);
}

static char *chain_name(const char *prefix, const char *spn, uint8_t proto, const char *ep)
{
	return sp_ipt_hashed_chain(prefix, spn, proto, ep);
}

/* ---- tests ---- */

START_TEST(sha256_vectors)
{
	static const struct {
		const char *in;
		const char *hex;
	} cases[] = {
		{"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
		 "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
		{"0123456789012345678901234567890123456789012345678901234567890123",
		 "9674d9e078535b7cec43284387a6ee39956188e735a85452b0050b55341cda56"},
		/* 55 and 56 bytes: the padding boundary. */
		{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		 "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
		{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		 "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
	};
	for (size_t i = 0; i < SP_ARRAY_SIZE(cases); i++) {
		uint8_t d[32];
		char hex[65];

		sp_ipt_sha256(cases[i].in, strlen(cases[i].in), d);
		for (int j = 0; j < 32; j++)
			snprintf(hex + 2 * j, 3, "%02x", d[j]);
		ck_assert_str_eq(hex, cases[i].hex);
	}
}
END_TEST

START_TEST(chain_names_match_kube_proxy)
{
	/* Names seen on every kube-proxy cluster. */
	char *svc = chain_name("KUBE-SVC-", "default/kubernetes:https", IPPROTO_TCP, NULL);
	char *dns = chain_name("KUBE-SVC-", "kube-system/kube-dns:dns", IPPROTO_UDP, NULL);

	ck_assert_str_eq(svc, "KUBE-SVC-NPX46M4PTMTKRN6Y");
	ck_assert_str_eq(dns, "KUBE-SVC-TCOU7JCQXEZGVUNU");
	free(svc);
	free(dns);
}
END_TEST

START_TEST(probabilities)
{
	/* iptables stores round(p * 2^31); these are what it prints back. */
	struct sp_ipt_rule r;
	struct sp_buf b;

	memset(&r, 0, sizeof(r));
	sp_buf_init(&b);
	sp_ipt_match_add(&r, SP_IPT_M_STATISTIC)->u.probability = sp_ipt_probability(3);
	sp_ipt_set_verdict(&r, SP_IPT_T_ACCEPT);
	sp_ipt_print_rule("X", &r, &b);
	ck_assert_str_eq(b.data,
			 "-A X -m statistic --mode random --probability 0.33333333349 -j ACCEPT\n");
	ck_assert_uint_eq(sp_ipt_probability(2), 0x40000000u);
	ck_assert_uint_eq(sp_ipt_probability(1), 0x80000000u);
	ck_assert_uint_eq(sp_ipt_probability(10), 214748365u);
	sp_ipt_rule_free(&r);
	sp_buf_free(&b);
}
END_TEST

START_TEST(comment_quoting)
{
	struct sp_ipt_rule r;
	struct sp_buf b;

	memset(&r, 0, sizeof(r));
	sp_buf_init(&b);
	sp_ipt_add_comment(&r, "abc_-9");
	sp_ipt_add_comment(&r, "a\"b\\c'd e");
	sp_ipt_set_verdict(&r, SP_IPT_T_RETURN);
	sp_ipt_print_rule("X", &r, &b);
	ck_assert_str_eq(b.data, "-A X -m comment --comment abc_-9 -m comment --comment "
				 "\"a\\\"b\\\\c\\'d e\" -j RETURN\n");
	sp_ipt_rule_free(&r);
	sp_buf_free(&b);
}
END_TEST

START_TEST(cluster_ip_spread_and_masquerade)
{
	struct sp_plan p;
	struct sp_plan_svcport *sp;
	char *text, *svc, *sep1, *sep3, line[512];

	plan_init(&p);
	set_cluster_cidr(&p, "10.244.0.0/16");
	sp = add_svcport(&p, "default", "web", "http", IPPROTO_TCP, "10.96.0.10", 80);
	add_ep(sp, "10.244.1.1", 8080, false, true, false);
	add_ep(sp, "10.244.1.2", 8080, true, true, false);
	add_ep(sp, "10.244.1.3", 8080, false, true, false);
	text = lower_text(&p);
	svc = chain_name("KUBE-SVC-", "default/web:http", IPPROTO_TCP, NULL);
	sep1 = chain_name("KUBE-SEP-", "default/web:http", IPPROTO_TCP, "10.244.1.1:8080");
	sep3 = chain_name("KUBE-SEP-", "default/web:http", IPPROTO_TCP, "10.244.1.3:8080");

	snprintf(line, sizeof(line),
		 "-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m comment --comment \"default/web:http "
		 "cluster IP\" -m tcp --dport 80 -j %s\n",
		 svc);
	assert_has(text, line);
	snprintf(line, sizeof(line),
		 "-A %s ! -s 10.244.0.0/16 -d 10.96.0.10/32 -p tcp -m comment --comment "
		 "\"default/web:http cluster IP\" -m tcp --dport 80 -j KUBE-MARK-MASQ\n"
		 "-A %s -m comment --comment \"default/web:http -> 10.244.1.1:8080\" -m statistic "
		 "--mode random --probability 0.33333333349 -j %s\n",
		 svc, svc, sep1);
	assert_has(text, line);
	snprintf(line, sizeof(line),
		 "-A %s -m comment --comment \"default/web:http -> 10.244.1.3:8080\" -j %s\n", svc,
		 sep3);
	assert_has(text, line);
	assert_has(text, "--probability 0.50000000000 -j KUBE-SEP-");
	snprintf(line, sizeof(line),
		 "-A %s -s 10.244.1.1/32 -m comment --comment \"default/web:http\" -j "
		 "KUBE-MARK-MASQ\n-A %s -p tcp -m comment --comment \"default/web:http\" -m tcp -j "
		 "DNAT --to-destination 10.244.1.1:8080\n",
		 sep1, sep1);
	assert_has(text, line);
	/* No external access: no KUBE-EXT, no KUBE-SVL, no affinity. */
	assert_lacks(text, "KUBE-EXT-");
	assert_lacks(text, "KUBE-SVL-");
	assert_lacks(text, "recent");
	/* Fixed layout. */
	assert_has(text, "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n");
	assert_has(text, "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n"
			 "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0\n");
	assert_has(text, "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j "
			 "KUBE-SERVICES\n");
	assert_has(text, "-A KUBE-SERVICES ! -d 127.0.0.0/8 -m comment --comment \"kubernetes "
			 "service nodeports; NOTE: this must be the last rule in this chain\" -m "
			 "addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n");
	free(text);
	free(svc);
	free(sep1);
	free(sep3);
	plan_release(&p);
}
END_TEST

START_TEST(chain_names_stable_across_order)
{
	struct sp_plan p1, p2;
	char *t1, *t2;

	plan_init(&p1);
	plan_init(&p2);
	add_ep(add_svcport(&p1, "a", "x", "", IPPROTO_UDP, "10.96.0.1", 53), "10.1.0.1", 53, false,
	       true, false);
	add_ep(add_svcport(&p1, "b", "y", "p", IPPROTO_TCP, "10.96.0.2", 80), "10.1.0.2", 80, false,
	       true, false);
	add_ep(add_svcport(&p2, "a", "x", "", IPPROTO_UDP, "10.96.0.1", 53), "10.1.0.1", 53, false,
	       true, false);
	add_ep(add_svcport(&p2, "b", "y", "p", IPPROTO_TCP, "10.96.0.2", 80), "10.1.0.2", 80, false,
	       true, false);
	t1 = lower_text(&p1);
	t2 = lower_text(&p2);
	ck_assert_str_eq(t1, t2);
	/* Unnamed port: kube-proxy's name has no trailing colon. */
	assert_has(t1, "--comment \"a/x -> 10.1.0.1:53\"");
	free(t1);
	free(t2);
	plan_release(&p1);
	plan_release(&p2);
}
END_TEST

START_TEST(affinity_uses_recent)
{
	struct sp_plan p;
	struct sp_plan_svcport *sp;
	char *text, *sep, line[512];

	plan_init(&p);
	sp = add_svcport(&p, "ns", "s", "", IPPROTO_TCP, "10.96.0.5", 80);
	sp->affinity = true;
	sp->affinity_timeout = 30;
	add_ep(sp, "10.244.2.1", 80, false, true, false);
	add_ep(sp, "10.244.2.2", 80, false, true, false);
	text = lower_text(&p);
	sep = chain_name("KUBE-SEP-", "ns/s", IPPROTO_TCP, "10.244.2.1:80");
	snprintf(line, sizeof(line),
		 "-m comment --comment \"ns/s -> 10.244.2.1:80\" -m recent --rcheck --seconds 30 "
		 "--reap --name %s --mask 255.255.255.255 --rsource -j %s\n",
		 sep, sep);
	assert_has(text, line);
	snprintf(line, sizeof(line),
		 "-A %s -p tcp -m comment --comment \"ns/s\" -m recent --set --name %s --mask "
		 "255.255.255.255 --rsource -m tcp -j DNAT --to-destination 10.244.2.1:80\n",
		 sep, sep);
	assert_has(text, line);
	/* No cluster CIDR, no masquerade-all: no masquerade rule for the IP. */
	assert_lacks(text, "cluster IP\" -m tcp --dport 80 -j KUBE-MARK-MASQ");
	free(sep);
	free(text);
	plan_release(&p);
}
END_TEST

START_TEST(no_endpoints_rejects)
{
	struct sp_plan p;
	struct sp_plan_svcport *sp;
	char *text;

	plan_init(&p);
	sp = add_svcport(&p, "ns", "empty", "", IPPROTO_TCP, "10.96.0.7", 80);
	sp->type = SP_SVC_NODE_PORT;
	sp->node_port = 30007;
	sp->external_ips = sp_xcalloc(1, sizeof(struct sp_addr));
	sp->external_ips[0] = A("203.0.113.7");
	sp->n_external_ips = 1;
	text = lower_text(&p);
	assert_has(text, "-A KUBE-SERVICES -d 10.96.0.7/32 -p tcp -m comment --comment \"ns/empty "
			 "has no endpoints\" -m tcp --dport 80 -j REJECT --reject-with "
			 "icmp-port-unreachable\n");
	assert_has(text, "-A KUBE-EXTERNAL-SERVICES -d 203.0.113.7/32 -p tcp -m comment --comment "
			 "\"ns/empty has no endpoints\" -m tcp --dport 80 -j REJECT");
	assert_has(text, "-A KUBE-EXTERNAL-SERVICES -p tcp -m comment --comment \"ns/empty has no "
			 "endpoints\" -m addrtype --dst-type LOCAL -m tcp --dport 30007 -j REJECT");
	assert_lacks(text, "KUBE-SVC-");
	assert_lacks(text, "KUBE-EXT-");
	assert_lacks(text, "-A KUBE-NODEPORTS");
	free(text);
	plan_release(&p);
}
END_TEST

START_TEST(external_local_short_circuit)
{
	struct sp_plan p;
	struct sp_plan_svcport *sp;
	char *text, *svc, *svl, *ext, line[600];

	plan_init(&p);
	set_cluster_cidr(&p, "10.244.0.0/16");
	sp = add_svcport(&p, "ns", "lb", "", IPPROTO_TCP, "10.96.0.8", 80);
	sp->type = SP_SVC_LOAD_BALANCER;
	sp->node_port = 30008;
	sp->external_policy_local = true;
	sp->health_check_node_port = 32000;
	sp->lb_ips = sp_xcalloc(1, sizeof(struct sp_addr));
	sp->lb_ips[0] = A("198.51.100.8");
	sp->n_lb_ips = 1;
	add_ep(sp, "10.244.1.1", 80, true, true, true);
	add_ep(sp, "10.244.2.1", 80, false, true, false);
	text = lower_text(&p);
	svc = chain_name("KUBE-SVC-", "ns/lb", IPPROTO_TCP, NULL);
	svl = chain_name("KUBE-SVL-", "ns/lb", IPPROTO_TCP, NULL);
	ext = chain_name("KUBE-EXT-", "ns/lb", IPPROTO_TCP, NULL);
	snprintf(line, sizeof(line),
		 "-A %s -s 10.244.0.0/16 -m comment --comment \"pod traffic for ns/lb external "
		 "destinations\" -j %s\n"
		 "-A %s -m comment --comment \"masquerade LOCAL traffic for ns/lb external "
		 "destinations\" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ\n"
		 "-A %s -m comment --comment \"route LOCAL traffic for ns/lb external "
		 "destinations\" -m addrtype --src-type LOCAL -j %s\n"
		 "-A %s -j %s\n",
		 ext, svc, ext, ext, svc, ext, svl);
	assert_has(text, line);
	snprintf(line, sizeof(line),
		 "-A KUBE-SERVICES -d 198.51.100.8/32 -p tcp -m comment --comment \"ns/lb "
		 "loadbalancer IP\" -m tcp --dport 80 -j %s\n",
		 ext);
	assert_has(text, line);
	snprintf(line, sizeof(line),
		 "-A KUBE-NODEPORTS -p tcp -m comment --comment \"ns/lb\" -m tcp --dport 30008 -j "
		 "%s\n",
		 ext);
	assert_has(text, line);
	assert_has(text, "-A KUBE-NODEPORTS -p tcp -m comment --comment \"ns/lb health check node "
			 "port\" -m tcp --dport 32000 -j ACCEPT\n");
	/* Only the local endpoint in the SVL chain. */
	snprintf(line, sizeof(line), "-A %s -m comment --comment \"ns/lb -> 10.244.1.1:80\" -j ",
		 svl);
	assert_has(text, line);
	assert_lacks(text, "ns/lb -> 10.244.2.1:80\" -m statistic --mode random --probability "
			   "0.50000000000 -j KUBE-SEP");
	free(svc);
	free(svl);
	free(ext);
	free(text);
	plan_release(&p);
}
END_TEST

START_TEST(external_local_without_local_endpoints_drops)
{
	struct sp_plan p;
	struct sp_plan_svcport *sp;
	char *text, *ext;

	plan_init(&p);
	sp = add_svcport(&p, "ns", "lb", "", IPPROTO_UDP, "10.96.0.9", 53);
	sp->type = SP_SVC_NODE_PORT;
	sp->node_port = 30009;
	sp->external_policy_local = true;
	add_ep(sp, "10.244.2.1", 53, false, true, false);
	text = lower_text(&p);
	ext = chain_name("KUBE-EXT-", "ns/lb", IPPROTO_UDP, NULL);
	assert_has(text, "-A KUBE-EXTERNAL-SERVICES -p udp -m comment --comment \"ns/lb has no "
			 "local endpoints\" -m addrtype --dst-type LOCAL -m udp --dport 30009 -j "
			 "DROP\n");
	/* The EXT chain still exists for the node's own traffic, but has no
	 * final jump to an (empty) SVL chain. */
	assert_has(text, ext);
	assert_lacks(text, "KUBE-SVL-");
	free(ext);
	free(text);
	plan_release(&p);
}
END_TEST

START_TEST(source_ranges_firewall)
{
	struct sp_plan p;
	struct sp_plan_svcport *sp;
	char *text, *fw, *ext, line[600];

	plan_init(&p);
	sp = add_svcport(&p, "ns", "fw", "", IPPROTO_TCP, "10.96.0.11", 80);
	sp->type = SP_SVC_LOAD_BALANCER;
	sp->lb_ips = sp_xcalloc(1, sizeof(struct sp_addr));
	sp->lb_ips[0] = A("198.51.100.11");
	sp->n_lb_ips = 1;
	sp->source_ranges = sp_xcalloc(2, sizeof(struct sp_cidr));
	ck_assert(sp_cidr_parse("203.0.113.0/24", &sp->source_ranges[0]));
	ck_assert(sp_cidr_parse("192.168.0.0/24", &sp->source_ranges[1]));
	sp->n_source_ranges = 2;
	add_ep(sp, "10.244.2.1", 80, false, true, false);
	text = lower_text(&p);
	fw = chain_name("KUBE-FW-", "ns/fw", IPPROTO_TCP, NULL);
	ext = chain_name("KUBE-EXT-", "ns/fw", IPPROTO_TCP, NULL);
	snprintf(line, sizeof(line),
		 "-A %s -s 203.0.113.0/24 -m comment --comment \"ns/fw loadbalancer IP\" -j %s\n"
		 "-A %s -s 192.168.0.0/24 -m comment --comment \"ns/fw loadbalancer IP\" -j %s\n"
		 "-A %s -s 198.51.100.11/32 -m comment --comment \"ns/fw loadbalancer IP\" -j %s\n",
		 fw, ext, fw, ext, fw, ext);
	assert_has(text, line);
	snprintf(line, sizeof(line),
		 "-A KUBE-PROXY-FIREWALL -d 198.51.100.11/32 -p tcp -m comment --comment \"ns/fw "
		 "traffic not accepted by %s\" -m tcp --dport 80 -j DROP\n",
		 fw);
	assert_has(text, line);
	snprintf(line, sizeof(line), "loadbalancer IP\" -m tcp --dport 80 -j %s\n", fw);
	assert_has(text, line);
	free(fw);
	free(ext);
	free(text);
	plan_release(&p);
}
END_TEST

START_TEST(internal_local_without_local_endpoints_drops)
{
	struct sp_plan p;
	struct sp_plan_svcport *sp;
	char *text;

	plan_init(&p);
	p.masquerade_all = true;
	sp = add_svcport(&p, "ns", "itp", "", IPPROTO_TCP, "10.96.0.12", 80);
	sp->internal_policy_local = true;
	sp->has_any_endpoints = true; /* endpoints elsewhere, none here */
	text = lower_text(&p);
	assert_has(text, "-A KUBE-SERVICES -d 10.96.0.12/32 -p tcp -m comment --comment \"ns/itp "
			 "has no local endpoints\" -m tcp --dport 80 -j DROP\n");
	free(text);
	plan_release(&p);
}
END_TEST

START_TEST(masquerade_all_and_nodeport_addresses)
{
	struct sp_plan p;
	struct sp_plan_svcport *sp;
	char *text;

	plan_init(&p);
	p.masquerade_all = true;
	p.nodeport_all_local = false;
	p.nodeport_addrs = sp_xcalloc(1, sizeof(struct sp_addr));
	p.nodeport_addrs[0] = A("192.168.0.10");
	p.n_nodeport_addrs = 1;
	sp = add_svcport(&p, "ns", "m", "", IPPROTO_SCTP, "10.96.0.13", 9);
	add_ep(sp, "10.244.2.1", 9, false, true, false);
	text = lower_text(&p);
	assert_has(text,
		   "-d 10.96.0.13/32 -p sctp -m comment --comment \"ns/m cluster IP\" -m sctp "
		   "--dport 9 -j KUBE-MARK-MASQ\n");
	assert_has(text, "-A KUBE-SERVICES -d 192.168.0.10/32 -m comment --comment \"kubernetes "
			 "service nodeports; NOTE: this must be the last rule in this chain\" -j "
			 "KUBE-NODEPORTS\n");
	free(text);
	plan_release(&p);
}
END_TEST

START_TEST(ipv6_lowering)
{
	struct sp_plan p;
	struct sp_plan_svcport *sp;
	struct sp_ipt_ruleset rs;
	struct sp_buf out;

	plan_init(&p);
	sp = add_svcport(&p, "ns", "v6", "", IPPROTO_TCP, "fd00::5", 80);
	sp->family = AF_INET6;
	sp->affinity = true;
	sp->affinity_timeout = 10;
	add_ep(sp, "fd01::7", 8080, false, true, false);
	sp = add_svcport(&p, "ns", "gone", "", IPPROTO_UDP, "fd00::6", 53);
	sp->family = AF_INET6;
	add_svcport(&p, "ns", "v4", "", IPPROTO_TCP, "10.96.0.4", 80);
	sp_buf_init(&out);
	sp_ipt_ruleset_init(&rs, AF_INET6);
	sp_ipt_lower(&p, &rs);
	sp_ipt_print_ruleset(&rs, &out);
	assert_has(out.data,
		   "-A KUBE-SERVICES ! -d ::1/128 -m comment --comment \"kubernetes "
		   "service nodeports; NOTE: this must be the last rule in this chain\" -m "
		   "addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n");
	assert_has(out.data,
		   "-A KUBE-SERVICES -d fd00::6/128 -p udp -m comment --comment \"ns/gone "
		   "has no endpoints\" -m udp --dport 53 -j REJECT --reject-with "
		   "icmp6-port-unreachable\n");
	assert_has(out.data, "--mask ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff --rsource -m tcp -j "
			     "DNAT --to-destination [fd01::7]:8080\n");
	/* The IPv4 service port is not in the IPv6 rules. */
	assert_lacks(out.data, "10.96.0.4");
	sp_ipt_ruleset_free(&rs);
	sp_buf_free(&out);
	plan_release(&p);
}
END_TEST

START_TEST(chain_equal_compares_rules)
{
	struct sp_ipt_table a, b;
	struct sp_ipt_chain *ca, *cb;

	sp_ipt_table_init(&a, SP_IPT_NAT);
	sp_ipt_table_init(&b, SP_IPT_NAT);
	ca = sp_ipt_chain_add(&a, "KUBE-X");
	cb = sp_ipt_chain_add(&b, "KUBE-X");
	sp_ipt_set_jump(sp_ipt_rule_append(ca), "KUBE-MARK-MASQ");
	sp_ipt_set_jump(sp_ipt_rule_append(cb), "KUBE-MARK-MASQ");
	ck_assert(sp_ipt_chain_equal(ca, cb));
	sp_ipt_add_comment(&cb->rules[0], "x");
	ck_assert(!sp_ipt_chain_equal(ca, cb));
	/* A match read back and not understood never equals one the agent
	 * writes, even when its name is the same ("-m tcp" with a source
	 * port against a bare "-m tcp"). */
	sp_ipt_add_dport(&ca->rules[0], IPPROTO_TCP, 0);
	sp_ipt_rule_free(&cb->rules[0]);
	sp_ipt_set_jump(&cb->rules[0], "KUBE-MARK-MASQ");
	cb->rules[0].proto = IPPROTO_TCP;
	sp_ipt_match_add(&cb->rules[0], SP_IPT_M_UNKNOWN)->u.comment = sp_xstrdup("tcp");
	ck_assert(!sp_ipt_chain_equal(ca, cb));
	sp_ipt_table_free(&a);
	sp_ipt_table_free(&b);
}
END_TEST

static Suite *ipt_suite(void)
{
	Suite *s = suite_create("ipt");
	TCase *tc = tcase_create("lower");

	tcase_add_test(tc, sha256_vectors);
	tcase_add_test(tc, chain_names_match_kube_proxy);
	tcase_add_test(tc, probabilities);
	tcase_add_test(tc, comment_quoting);
	tcase_add_test(tc, cluster_ip_spread_and_masquerade);
	tcase_add_test(tc, chain_names_stable_across_order);
	tcase_add_test(tc, affinity_uses_recent);
	tcase_add_test(tc, no_endpoints_rejects);
	tcase_add_test(tc, external_local_short_circuit);
	tcase_add_test(tc, external_local_without_local_endpoints_drops);
	tcase_add_test(tc, source_ranges_firewall);
	tcase_add_test(tc, internal_local_without_local_endpoints_drops);
	tcase_add_test(tc, masquerade_all_and_nodeport_addresses);
	tcase_add_test(tc, ipv6_lowering);
	tcase_add_test(tc, chain_equal_compares_rules);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(ipt_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
