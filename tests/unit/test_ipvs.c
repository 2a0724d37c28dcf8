/* IPVS mode without a kernel: lowering of hand-built plans, the printers, and
 * the generic netlink codec (build a message, parse it back). */
#include <check.h>
#include <arpa/inet.h>
#include <errno.h>
#include <linux/ip_vs.h>
#include <netlink/genl/genl.h>
#include <netlink/msg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <cjson/cJSON.h>

#include "svcproxy/ipvs.h"
#include "svcproxy/ipvs_kernel.h"

static struct sp_addr A(const char *text) {
	struct sp_addr a;

	ck_assert_msg(sp_addr_parse(text, &a), "bad address %s", text);
	return a;
}

/* A plan under construction; everything is owned by the fixture and freed
 * by fixture_free(). */
struct fixture {
	struct sp_plan plan;
	struct sp_plan_svcport sp[4];
	struct sp_plan_endpoint eps[4][4];
	size_t idx_cluster[4][4], idx_local[4][4];
	struct sp_addr nodeport_addrs[1];
	struct sp_addr node_ips[1];
	struct sp_cidr cidrs[1];
	struct sp_addr ext[4][2], lb[4][2];
};

static struct fixture F;

static struct sp_plan_svcport *add_svcport(const char *id, const char *cip, uint16_t port)
{
	struct sp_plan_svcport *sp = &F.sp[F.plan.n_svcports];
	size_t k = F.plan.n_svcports++;

	sp->id = (char *)id;
	sp->family = AF_INET;
	sp->protocol = IPPROTO_TCP;
	sp->type = SP_SVC_CLUSTER_IP;
	sp->cluster_ip = A(cip);
	sp->port = port;
	sp->endpoints = F.eps[k];
	sp->cluster.idx = F.idx_cluster[k];
	sp->local.idx = F.idx_local[k];
	return sp;
}

static void add_ep(struct sp_plan_svcport *sp, const char *addr, uint16_t port, bool local)
{
	size_t i = sp->n_endpoints++;

	sp->endpoints[i].addr = A(addr);
	sp->endpoints[i].port = port;
	sp->endpoints[i].local = local;
	sp->endpoints[i].ready = sp->endpoints[i].serving = true;
	sp->cluster.idx[sp->cluster.n++] = i;
	if (local)
		sp->local.idx[sp->local.n++] = i;
	sp->has_any_endpoints = true;
}

static void fixture_setup(void)
{
	memset(&F, 0, sizeof(F));
	F.plan.mode = SP_MODE_IPVS;
	F.plan.svcports = F.sp;
	F.plan.node_ips = F.node_ips;
	F.node_ips[0] = A("192.168.0.10");
	F.plan.n_node_ips = 1;
	F.plan.nodeport_addrs = F.nodeport_addrs;
	F.nodeport_addrs[0] = A("192.168.0.10");
	F.plan.n_nodeport_addrs = 1;
	ck_assert(sp_cidr_parse("10.244.0.0/16", &F.cidrs[0]));
	F.plan.cluster_cidrs = F.cidrs;
	F.plan.n_cluster_cidrs = 1;
	F.plan.masquerade_mark = 0x4000;
	F.plan.ipvs_default_scheduler = (char *)"rr";
}

static bool has_line(const char *text, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (strncmp(p, line, n) == 0 && (p[n] == '\n' || p[n] == '\0'))
			return true;
	return false;
}

static char *lower_and_print(struct sp_ipvs_state *st, struct sp_diag *diag)
{
	struct sp_buf out;

	sp_ipvs_state_init(st);
	sp_diag_init(diag);
	sp_ipvs_lower(&F.plan, st, diag);
	sp_buf_init(&out);
	sp_ipvs_print(st, &out);
	return sp_buf_steal(&out);
}

START_TEST(cluster_ip_round_robin)
{
	struct sp_plan_svcport *sp = add_svcport("default/web:http", "10.96.0.10", 80);
	struct sp_ipvs_state st;
	struct sp_diag diag;
	char *text;

	add_ep(sp, "10.244.1.5", 8080, false);
	add_ep(sp, "10.244.0.7", 8080, true);
	text = lower_and_print(&st, &diag);
	ck_assert_uint_eq(st.n_services, 1);
	ck_assert_uint_eq(st.services[0].n_dests, 2);
	/* Sorted: 10.244.0.7 before 10.244.1.5. */
	ck_assert(has_line(text, "-A -t 10.96.0.10:80 -s rr"));
	ck_assert(has_line(text, "-a -t 10.96.0.10:80 -r 10.244.0.7:8080 -m -w 1"));
	ck_assert(has_line(text, "-a -t 10.96.0.10:80 -r 10.244.1.5:8080 -m -w 1"));
	ck_assert(strstr(text, "-a -t 10.96.0.10:80 -r 10.244.0.7") <
		  strstr(text, "-a -t 10.96.0.10:80 -r 10.244.1.5"));
	ck_assert(has_line(text, "ip addr add 10.96.0.10/32 dev kube-ipvs0"));
	/* Off-cluster sources of a ClusterIP are masqueraded; hairpin of the
	 * local endpoint too. */
	ck_assert(has_line(text, "-A KUBE-SERVICES ! -s 10.244.0.0/16 -m set --match-set "
				 "KUBE-CLUSTER-IP dst,dst -j KUBE-MARK-MASQ"));
	ck_assert(has_line(text, "add KUBE-CLUSTER-IP 10.96.0.10,tcp:80"));
	ck_assert(has_line(text,
			   "-A KUBE-POSTROUTING -m set --match-set KUBE-LOOP-BACK dst,dst,src "
			   "-j MASQUERADE"));
	ck_assert(has_line(text, "add KUBE-LOOP-BACK 10.244.0.7,tcp:8080,10.244.0.7"));
	ck_assert(!strstr(text, "10.244.1.5,tcp:8080,"));
	/* No capture member, so no fwmark rule and no capture route. */
	ck_assert(!strstr(text, "fwmark"));
	ck_assert_uint_eq(st.n_rules, 0);
	ck_assert_uint_eq(diag.n_errors, 0);
	free(text);
	sp_ipvs_state_free(&st);
	sp_diag_free(&diag);
}
END_TEST

START_TEST(affinity_and_scheduler)
{
	struct sp_plan_svcport *sp = add_svcport("default/db:", "10.96.0.20", 5432);
	struct sp_ipvs_state st;
	struct sp_diag diag;
	char *text;

	add_ep(sp, "10.244.1.5", 5432, false);
	sp->affinity = true;
	sp->affinity_timeout = 600;
	sp->ipvs_scheduler = (char *)"sh";
	text = lower_and_print(&st, &diag);
	ck_assert(has_line(text, "-A -t 10.96.0.20:5432 -s sh -p 600"));
	ck_assert_uint_eq(st.services[0].flags, SP_IPVS_SVC_F_PERSISTENT);
	ck_assert_uint_eq(st.services[0].netmask, 0xffffffffu);
	free(text);
	sp_ipvs_state_free(&st);
	sp_diag_free(&diag);
}
END_TEST

static struct sp_plan_svcport *lb_service(void)
{
	struct sp_plan_svcport *sp = add_svcport("default/lb:http", "10.96.0.30", 80);
	size_t k = F.plan.n_svcports - 1;

	sp->type = SP_SVC_LOAD_BALANCER;
	sp->node_port = 30080;
	F.ext[k][0] = A("203.0.113.7");
	sp->external_ips = F.ext[k];
	sp->n_external_ips = 1;
	F.lb[k][0] = A("198.51.100.1");
	sp->lb_ips = F.lb[k];
	sp->n_lb_ips = 1;
	return sp;
}

START_TEST(per_port_capture_cluster_policy)
{
	struct sp_plan_svcport *sp = lb_service();
	struct sp_ipvs_state st;
	struct sp_diag diag;
	char *text;

	add_ep(sp, "10.244.1.5", 8080, false);
	text = lower_and_print(&st, &diag);
	/* ClusterIP, node port, externalIP, LB IP. */
	ck_assert_uint_eq(st.n_services, 4);
	ck_assert(has_line(text, "-A -t 192.168.0.10:30080 -s rr"));
	ck_assert(has_line(text, "-A -t 198.51.100.1:80 -s rr"));
	ck_assert(has_line(text, "-A -t 203.0.113.7:80 -s rr"));
	/* Only the ClusterIP is bound; the rest is captured per port. */
	ck_assert_uint_eq(st.n_link_addrs, 1);
	ck_assert(has_line(text, "add KUBE-IPVS-CAPTURE 198.51.100.1,tcp:80"));
	ck_assert(has_line(text, "add KUBE-IPVS-CAPTURE 203.0.113.7,tcp:80"));
	ck_assert(!strstr(text, "add KUBE-IPVS-CAPTURE 192.168.0.10"));
	/* One policy rule for every captured port, and the marking rule. */
	ck_assert(has_line(text, "ip rule add fwmark 0x2000/0x2000 lookup 2153 pref 2153"));
	ck_assert(!strstr(text, "ipproto tcp dport 80 lookup"));
	ck_assert(has_line(text,
			   "-A KUBE-IPVS-CAPTURE -m set --match-set KUBE-IPVS-CAPTURE dst,dst "
			   "-j MARK --set-xmark 0x2000/0x2000"));
	ck_assert(has_line(text, "-A PREROUTING -m comment --comment \"svcproxy ipvs per-port "
				 "capture\" -j KUBE-IPVS-CAPTURE"));
	ck_assert(has_line(text, "-A OUTPUT -m comment --comment \"svcproxy ipvs per-port "
				 "capture\" -j KUBE-IPVS-CAPTURE"));
	ck_assert(has_line(text, "ip rule add iif lo lookup 2153 pref 32800"));
	ck_assert_uint_eq(st.n_rules, 3); /* fwmark, node-local fallback, node-port marker */
	ck_assert(has_line(text, "ip rule add to 192.168.0.10/32 ipproto tcp dport 30080 lookup "
				 "2153 pref 42153"));
	ck_assert(has_line(text, "ip route add local default dev lo table 2153 src 192.168.0.10"));
	ck_assert(has_line(text,
			   "-A KUBE-SERVICES -m set --match-set KUBE-LOAD-BALANCER dst,dst -j "
			   "KUBE-MARK-MASQ"));
	ck_assert(has_line(text, "add KUBE-LOAD-BALANCER 198.51.100.1,tcp:80"));
	ck_assert(has_line(text, "add KUBE-EXTERNAL-IP 203.0.113.7,tcp:80"));
	ck_assert(has_line(text, "add KUBE-NODE-PORT 192.168.0.10,tcp:30080"));
	free(text);
	sp_ipvs_state_free(&st);
	sp_diag_free(&diag);
}
END_TEST

START_TEST(whole_address_capture)
{
	struct sp_plan_svcport *sp = lb_service();
	struct sp_ipvs_state st;
	struct sp_diag diag;
	char *text;

	add_ep(sp, "10.244.1.5", 8080, false);
	F.plan.ipvs_capture = SP_IPVS_CAPTURE_WHOLE_ADDRESS;
	text = lower_and_print(&st, &diag);
	ck_assert_uint_eq(st.n_link_addrs, 3);
	ck_assert(has_line(text, "ip addr add 198.51.100.1/32 dev kube-ipvs0"));
	ck_assert(has_line(text, "ip addr add 203.0.113.7/32 dev kube-ipvs0"));
	/* The node port keeps its marker rule: that is how it is known to be ours. */
	ck_assert_uint_eq(st.n_rules, 1);
	ck_assert_uint_eq(st.rules[0].pref, SP_IPVS_MARKER_PREF);
	/* Nothing is marked: no capture members, no mangle rules. */
	ck_assert_uint_eq(st.sets[0][SP_IPVS_SET_CAPTURE].n_entries, 0);
	ck_assert(!strstr(text, "*mangle"));
	free(text);
	sp_ipvs_state_free(&st);
	sp_diag_free(&diag);
}
END_TEST

START_TEST(local_policy_falls_back_and_drops_off_cluster)
{
	struct sp_plan_svcport *sp = lb_service();
	struct sp_plan_svcport *sp2;
	struct sp_ipvs_state st;
	struct sp_diag diag;
	const struct sp_ipvs_service *lb;
	struct sp_ipvs_service key = {
		.addr = A("198.51.100.1"), .protocol = IPPROTO_TCP, .port = 80};
	char *text;

	sp->external_policy_local = true;
	add_ep(sp, "10.244.1.5", 8080, false); /* remote only */
	/* A second Local service with a local endpoint: external VS get only it. */
	sp2 = add_svcport("default/lb2:http", "10.96.0.31", 81);
	sp2->type = SP_SVC_NODE_PORT;
	sp2->node_port = 30081;
	sp2->external_policy_local = true;
	add_ep(sp2, "10.244.1.6", 8080, false);
	add_ep(sp2, "10.244.0.6", 8080, true);
	text = lower_and_print(&st, &diag);
	lb = sp_ipvs_find_service(&st, &key);
	ck_assert_ptr_nonnull(lb);
	ck_assert_uint_eq(lb->n_dests, 1); /* the cluster-wide fallback */
	ck_assert(has_line(text, "-A KUBE-IPVS-FIREWALL -s 10.244.0.0/16 -m set --match-set "
				 "KUBE-LOCAL-NO-ENDPOINT dst,dst -j RETURN"));
	ck_assert(has_line(text, "-A KUBE-IPVS-FIREWALL -m addrtype --src-type LOCAL -m set "
				 "--match-set KUBE-LOCAL-NO-ENDPOINT dst,dst -j RETURN"));
	ck_assert(has_line(text, "-A KUBE-IPVS-FIREWALL -m set --match-set KUBE-LOCAL-NO-ENDPOINT "
				 "dst,dst -j DROP"));
	ck_assert(has_line(text, "add KUBE-LOCAL-NO-ENDPOINT 198.51.100.1,tcp:80"));
	ck_assert(has_line(text, "add KUBE-LOCAL-NO-ENDPOINT 192.168.0.10,tcp:30080"));
	/* The fallback masquerades (its endpoints are remote). */
	ck_assert(has_line(text, "add KUBE-LOAD-BALANCER 198.51.100.1,tcp:80"));
	ck_assert(!has_line(text, "add KUBE-LOCAL-NO-ENDPOINT 192.168.0.10,tcp:30081"));
	ck_assert(has_line(text, "-a -t 192.168.0.10:30081 -r 10.244.0.6:8080 -m -w 1"));
	ck_assert(!has_line(text, "-a -t 192.168.0.10:30081 -r 10.244.1.6:8080 -m -w 1"));
	/* Local with a local endpoint: client source kept, no masquerade. */
	ck_assert(!has_line(text, "add KUBE-NODE-PORT 192.168.0.10,tcp:30081"));
	free(text);
	sp_ipvs_state_free(&st);
	sp_diag_free(&diag);
}
END_TEST

START_TEST(conflicting_claims_first_wins)
{
	struct sp_plan_svcport *a = lb_service();
	struct sp_plan_svcport *b = add_svcport("default/other:http", "10.96.0.40", 80);
	struct sp_ipvs_state st;
	struct sp_diag diag;
	char *text;

	add_ep(a, "10.244.1.5", 8080, false);
	add_ep(b, "10.244.1.9", 9090, false);
	b->external_ips = a->external_ips; /* 203.0.113.7:80 twice */
	b->n_external_ips = 1;
	b->type = SP_SVC_CLUSTER_IP;
	text = lower_and_print(&st, &diag);
	ck_assert(sp_diag_has(&diag, SP_SEV_ERROR, "203.0.113.7:80"));
	ck_assert(has_line(text, "-a -t 203.0.113.7:80 -r 10.244.1.5:8080 -m -w 1"));
	ck_assert(!has_line(text, "-a -t 203.0.113.7:80 -r 10.244.1.9:9090 -m -w 1"));
	free(text);
	sp_ipvs_state_free(&st);
	sp_diag_free(&diag);
}
END_TEST

START_TEST(ipv6_service)
{
	struct sp_plan_svcport *sp = add_svcport("default/v6:http", "fd00:96::10", 80);
	struct sp_ipvs_state st;
	struct sp_diag diag;
	char *text;

	sp->family = AF_INET6;
	sp->protocol = IPPROTO_UDP;
	add_ep(sp, "fd00:244::5", 53, false);
	sp->affinity = true;
	sp->affinity_timeout = 30;
	text = lower_and_print(&st, &diag);
	ck_assert(has_line(text, "-A -u [fd00:96::10]:80 -s rr -p 30"));
	ck_assert(has_line(text, "-a -u [fd00:96::10]:80 -r [fd00:244::5]:53 -m -w 1"));
	ck_assert(has_line(text, "ip -6 addr add fd00:96::10/128 dev kube-ipvs0"));
	ck_assert_uint_eq(st.services[0].netmask, 128);
	/* Helper rules for IPv6 go to ip6tables. */
	ck_assert(st.has_ipv6);
	ck_assert(strstr(text, "# ip6tables-save\n"));
	/* No IPv6 cluster CIDR known: no ClusterIP masquerade rule for it. */
	ck_assert(!strstr(text, "-d fd00:96::10/128"));
	free(text);
	sp_ipvs_state_free(&st);
	sp_diag_free(&diag);
}
END_TEST

START_TEST(print_is_deterministic)
{
	struct sp_plan_svcport *a = add_svcport("default/a:http", "10.96.0.50", 80);
	struct sp_plan_svcport *b = add_svcport("default/b:http", "10.96.0.5", 80);
	struct sp_ipvs_state st1, st2;
	struct sp_diag d1, d2;
	char *t1, *t2;

	add_ep(a, "10.244.1.5", 80, false);
	add_ep(b, "10.244.1.6", 80, false);
	t1 = lower_and_print(&st1, &d1);
	{
		struct sp_plan_svcport tmp = *a; /* the same Service ports in another order */

		*a = *b;
		*b = tmp;
	}
	t2 = lower_and_print(&st2, &d2);
	/* IPVS objects are sorted whatever the order; helper rules follow the
	 * plan's order, which the planner makes canonical. */
	*strstr(t1, "# iptables-save") = '\0';
	*strstr(t2, "# iptables-save") = '\0';
	ck_assert_str_eq(t1, t2);
	free(t1);
	free(t2);
	sp_ipvs_state_free(&st1);
	sp_ipvs_state_free(&st2);
	sp_diag_free(&d1);
	sp_diag_free(&d2);
}
END_TEST

static size_t helper_rule_count(const struct sp_ipvs_state *st)
{
	size_t n = 0;

	for (int t = 0; t < SP_IPT_N_TABLES; t++)
		for (size_t c = 0; c < st->ipt.tables[t].n_chains; c++)
			n += st->ipt.tables[t].chains[c].n_rules;
	for (size_t c = 0; c < st->mangle.n_chains; c++)
		n += st->mangle.chains[c].n_rules;
	/* Node-port markers sit after the default table: no lookup walks them. */
	for (size_t i = 0; i < st->n_rules; i++)
		n += st->rules[i].pref != SP_IPVS_MARKER_PREF;
	return n;
}

/* The point of the ipsets: what a packet walks does not grow with the
 * number of Services; only set members do. */
START_TEST(helper_rules_are_constant)
{
	struct sp_ipvs_state one, four;
	struct sp_diag diag;
	char *text;
	size_t n_one;

	add_ep(lb_service(), "10.244.0.5", 8080, true);
	text = lower_and_print(&one, &diag);
	free(text);
	sp_diag_free(&diag);
	n_one = helper_rule_count(&one);
	for (int i = 1; i < 4; i++) {
		static const char *const cips[] = {"", "10.96.0.41", "10.96.0.42", "10.96.0.43"};
		struct sp_plan_svcport *sp = lb_service();
		size_t k = F.plan.n_svcports - 1;

		sp->cluster_ip = A(cips[i]);
		sp->node_port = (uint16_t)(30080 + i);
		F.lb[k][0].u.v4.s_addr = htonl(0xc6336401u + (uint32_t)i); /* 198.51.100.1+i */
		F.ext[k][0].u.v4.s_addr = htonl(0xcb007107u + (uint32_t)i);
		add_ep(sp, "10.244.0.5", (uint16_t)(8080 + i), true);
	}
	text = lower_and_print(&four, &diag);
	ck_assert_uint_eq(four.n_services, 16);
	ck_assert_uint_eq(helper_rule_count(&four), n_one);
	ck_assert_uint_eq(four.sets[0][SP_IPVS_SET_CLUSTER_IP].n_entries, 4);
	ck_assert_uint_eq(four.sets[0][SP_IPVS_SET_CAPTURE].n_entries, 8);
	ck_assert_uint_eq(four.sets[0][SP_IPVS_SET_LOOP_BACK].n_entries, 4);
	free(text);
	sp_ipvs_state_free(&one);
	sp_ipvs_state_free(&four);
	sp_diag_free(&diag);
}
END_TEST

START_TEST(source_ranges_as_set_members)
{
	struct sp_plan_svcport *sp = lb_service();
	struct sp_cidr ranges[3];
	struct sp_ipvs_state st;
	struct sp_diag diag;
	char *text;

	add_ep(sp, "10.244.1.5", 8080, false);
	ck_assert(sp_cidr_parse("203.0.113.0/24", &ranges[0]));
	ck_assert(sp_cidr_parse("192.0.2.9/32", &ranges[1]));
	ck_assert(sp_cidr_parse("fd00::/64", &ranges[2]));
	sp->source_ranges = ranges;
	sp->n_source_ranges = 3;
	text = lower_and_print(&st, &diag);
	ck_assert(has_line(text, "add KUBE-LOAD-BALANCER-FW 198.51.100.1,tcp:80"));
	ck_assert(has_line(
		text, "add KUBE-LOAD-BALANCER-SOURCE-CIDR 198.51.100.1,tcp:80,203.0.113.0/24"));
	/* A host range is spelled as ipset prints it: without /32. */
	ck_assert(
		has_line(text, "add KUBE-LOAD-BALANCER-SOURCE-CIDR 198.51.100.1,tcp:80,192.0.2.9"));
	ck_assert_uint_eq(st.sets[0][SP_IPVS_SET_LB_SOURCE_CIDR].n_entries, 2);
	/* Only LB IPs are filtered by source, as before. */
	ck_assert(!strstr(text, "add KUBE-LOAD-BALANCER-FW 203.0.113.7"));
	ck_assert(has_line(text, "-A KUBE-IPVS-FIREWALL -m set --match-set "
				 "KUBE-LOAD-BALANCER-SOURCE-CIDR dst,dst,src -j RETURN"));
	ck_assert(has_line(text, "-A KUBE-IPVS-FIREWALL -m set --match-set KUBE-LOAD-BALANCER-FW "
				 "dst,dst -j DROP"));
	free(text);
	sp_ipvs_state_free(&st);
	sp_diag_free(&diag);
	/* 0.0.0.0/0 allows everyone (and hash:ip,port,net takes no /0). */
	ck_assert(sp_cidr_parse("0.0.0.0/0", &ranges[1]));
	text = lower_and_print(&st, &diag);
	ck_assert_uint_eq(st.sets[0][SP_IPVS_SET_LB_FW].n_entries, 0);
	ck_assert_uint_eq(st.sets[0][SP_IPVS_SET_LB_SOURCE_CIDR].n_entries, 0);
	free(text);
	sp_ipvs_state_free(&st);
	sp_diag_free(&diag);
}
END_TEST

START_TEST(set_match_spelling)
{
	struct sp_ipt_rule r = {0};
	struct sp_buf out;

	sp_buf_init(&out);
	sp_ipt_add_set_match(&r, "KUBE-LOOP-BACK", "dst,dst,src", false);
	sp_ipt_add_set_match(&r, "KUBE-X", "src", true);
	ck_assert_uint_eq(r.matches[0].u.set.dim, 3);
	ck_assert_uint_eq(r.matches[0].u.set.src_dims, 4);
	sp_ipt_set_verdict(&r, SP_IPT_T_MASQUERADE);
	sp_ipt_print_rule("C", &r, &out);
	ck_assert_str_eq(out.data, "-A C -m set --match-set KUBE-LOOP-BACK dst,dst,src -m set ! "
				   "--match-set KUBE-X src -j MASQUERADE\n");
	sp_ipt_rule_free(&r);
	sp_buf_free(&out);
}
END_TEST

START_TEST(json_plan_parses)
{
	struct sp_plan_svcport *sp = lb_service();
	struct sp_ipvs_state st;
	struct sp_diag diag;
	struct sp_buf out;
	cJSON *root, *vs;
	char *text;

	add_ep(sp, "10.244.1.5", 8080, false);
	text = lower_and_print(&st, &diag);
	sp_buf_init(&out);
	sp_ipvs_print_json(&st, &out);
	root = cJSON_Parse(out.data);
	ck_assert_ptr_nonnull(root);
	vs = cJSON_GetObjectItem(root, "virtualServers");
	ck_assert_int_eq(cJSON_GetArraySize(vs), 4);
	/* The fwmark rule, the node-local fallback and the node port's marker. */
	ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(root, "captureRules")), 3);
	ck_assert(cJSON_IsString(cJSON_GetObjectItem(root, "ipsets")));
	ck_assert(cJSON_IsString(cJSON_GetObjectItem(root, "iptables")));
	cJSON_Delete(root);
	sp_buf_free(&out);
	free(text);
	sp_ipvs_state_free(&st);
	sp_diag_free(&diag);
}
END_TEST

START_TEST(rule_lookup_ignores_pref)
{
	struct sp_ipvs_state st;
	struct sp_ipvs_rule r1 = {.addr = A("198.51.100.1"),
				  .protocol = IPPROTO_TCP,
				  .port = 80,
				  .pref = SP_IPVS_CAPTURE_PREF};
	struct sp_ipvs_rule r2 = {.addr = A("192.168.0.10"),
				  .protocol = IPPROTO_TCP,
				  .port = 30080,
				  .pref = SP_IPVS_MARKER_PREF};
	struct sp_addr a1 = A("198.51.100.1"), a2 = A("192.168.0.10");

	sp_ipvs_state_init(&st);
	sp_ipvs_add_rule(&st, &r1);
	sp_ipvs_add_rule(&st, &r2);
	sp_ipvs_add_rule(&st, &r1); /* duplicates collapse */
	sp_ipvs_add_link_addr(&st, &a2);
	sp_ipvs_add_link_addr(&st, &a2);
	sp_ipvs_state_sort(&st);
	ck_assert_uint_eq(st.n_rules, 2);
	ck_assert_uint_eq(st.n_link_addrs, 1);
	ck_assert(sp_ipvs_has_rule(&st, &a1, IPPROTO_TCP, 80));
	ck_assert(sp_ipvs_has_rule(&st, &a2, IPPROTO_TCP, 30080));
	ck_assert(!sp_ipvs_has_rule(&st, &a1, IPPROTO_UDP, 80));
	ck_assert(!sp_ipvs_has_rule(&st, &a1, IPPROTO_TCP, 81));
	ck_assert(sp_ipvs_has_link_addr(&st, &a2));
	ck_assert(!sp_ipvs_has_link_addr(&st, &a1));
	sp_ipvs_state_free(&st);
}
END_TEST

START_TEST(codec_round_trip)
{
	struct sp_ipvs_service svc = {.addr = A("10.96.0.10"),
				      .protocol = IPPROTO_TCP,
				      .port = 443,
				      .scheduler = "wlc",
				      .flags = SP_IPVS_SVC_F_PERSISTENT,
				      .timeout = 10800,
				      .netmask = 0xffffffffu};
	struct sp_ipvs_dest dest = {
		.addr = A("10.244.1.5"), .port = 8443, .weight = 1, .fwd_method = SP_IPVS_FWD_MASQ};
	struct sp_ipvs_service svc2;
	struct sp_ipvs_dest dest2;
	struct nl_msg *m = sp_ipvs_msg_build(42, IPVS_CMD_NEW_DEST, 0, &svc, true, &dest, true);
	struct nlmsghdr *nlh;
	struct genlmsghdr *g;

	ck_assert_ptr_nonnull(m);
	nlh = nlmsg_hdr(m);
	ck_assert_uint_eq(nlh->nlmsg_type, 42);
	g = nlmsg_data(nlh);
	ck_assert_uint_eq(g->cmd, IPVS_CMD_NEW_DEST);
	ck_assert_uint_eq(g->version, IPVS_GENL_VERSION);
	ck_assert_int_eq(sp_ipvs_msg_parse(nlh, &svc2, &dest2), 0);
	ck_assert_int_eq(sp_ipvs_service_cmp(&svc, &svc2), 0);
	ck_assert(sp_ipvs_service_attrs_equal(&svc, &svc2));
	ck_assert_int_eq(sp_ipvs_dest_cmp(&dest, &dest2), 0);
	ck_assert_uint_eq(dest2.weight, 1);
	ck_assert_uint_eq(dest2.fwd_method, SP_IPVS_FWD_MASQ);
	nlmsg_free(m);
}
END_TEST

START_TEST(codec_wire_format)
{
	struct sp_ipvs_service svc = {.addr = A("fd00::1"),
				      .protocol = IPPROTO_SCTP,
				      .port = 0x1234,
				      .scheduler = "rr",
				      .netmask = 128};
	struct nl_msg *m = sp_ipvs_msg_build(42, IPVS_CMD_NEW_SERVICE, 0, &svc, true, NULL, false);
	struct nlattr *tb[IPVS_CMD_ATTR_MAX + 1], *st[IPVS_SVC_ATTR_MAX + 1];
	struct sp_ipvs_service back;

	ck_assert_ptr_nonnull(m);
	ck_assert_int_eq(genlmsg_parse(nlmsg_hdr(m), 0, tb, IPVS_CMD_ATTR_MAX, NULL), 0);
	ck_assert_ptr_nonnull(tb[IPVS_CMD_ATTR_SERVICE]);
	ck_assert_ptr_null(tb[IPVS_CMD_ATTR_DEST]);
	ck_assert_int_eq(nla_parse_nested(st, IPVS_SVC_ATTR_MAX, tb[IPVS_CMD_ATTR_SERVICE], NULL),
			 0);
	/* Port in network order, address zero-padded to 16 bytes, the full
	 * attribute set the kernel demands for NEW_SERVICE. */
	ck_assert_uint_eq(nla_get_u16(st[IPVS_SVC_ATTR_PORT]), htons(0x1234));
	ck_assert_int_eq(nla_len(st[IPVS_SVC_ATTR_ADDR]), 16);
	ck_assert_uint_eq(nla_get_u16(st[IPVS_SVC_ATTR_AF]), AF_INET6);
	ck_assert_ptr_nonnull(st[IPVS_SVC_ATTR_FLAGS]);
	ck_assert_ptr_nonnull(st[IPVS_SVC_ATTR_TIMEOUT]);
	ck_assert_uint_eq(nla_get_u32(st[IPVS_SVC_ATTR_NETMASK]), 128);
	ck_assert_str_eq(nla_get_string(st[IPVS_SVC_ATTR_SCHED_NAME]), "rr");
	ck_assert_int_eq(sp_ipvs_msg_parse(nlmsg_hdr(m), &back, NULL), 0);
	ck_assert(sp_addr_equal(&back.addr, &svc.addr));
	ck_assert_uint_eq(back.protocol, IPPROTO_SCTP);
	nlmsg_free(m);

	/* Delete commands carry only the identity. */
	m = sp_ipvs_msg_build(42, IPVS_CMD_DEL_SERVICE, 0, &svc, false, NULL, false);
	ck_assert_int_eq(genlmsg_parse(nlmsg_hdr(m), 0, tb, IPVS_CMD_ATTR_MAX, NULL), 0);
	ck_assert_int_eq(nla_parse_nested(st, IPVS_SVC_ATTR_MAX, tb[IPVS_CMD_ATTR_SERVICE], NULL),
			 0);
	ck_assert_ptr_null(st[IPVS_SVC_ATTR_SCHED_NAME]);
	ck_assert_ptr_null(st[IPVS_SVC_ATTR_NETMASK]);
	nlmsg_free(m);
}
END_TEST

START_TEST(codec_rejects_garbage)
{
	struct nl_msg *m = nlmsg_alloc();
	struct sp_ipvs_service svc;

	ck_assert_ptr_nonnull(genlmsg_put(m, 0, 0, 42, 0, 0, IPVS_CMD_NEW_SERVICE, 1));
	/* No service nest at all. */
	ck_assert_int_lt(sp_ipvs_msg_parse(nlmsg_hdr(m), &svc, NULL), 0);
	nlmsg_free(m);
}
END_TEST

START_TEST(errno_meanings)
{
	ck_assert(strstr(sp_ipvs_nl_strerror(IPVS_CMD_NEW_DEST, EINVAL), "broadcast"));
	ck_assert(strstr(sp_ipvs_nl_strerror(IPVS_CMD_NEW_DEST, ESRCH), "no such virtual server"));
	ck_assert(strstr(sp_ipvs_nl_strerror(IPVS_CMD_NEW_SERVICE, ENOENT), "scheduler"));
	ck_assert(strstr(sp_ipvs_nl_strerror(IPVS_CMD_DEL_DEST, ENOENT), "no such real server"));
}
END_TEST

static Suite *ipvs_suite(void)
{
	Suite *s = suite_create("ipvs");
	TCase *lower = tcase_create("lower");
	TCase *codec = tcase_create("codec");

	tcase_add_checked_fixture(lower, fixture_setup, NULL);
	tcase_add_test(lower, cluster_ip_round_robin);
	tcase_add_test(lower, affinity_and_scheduler);
	tcase_add_test(lower, per_port_capture_cluster_policy);
	tcase_add_test(lower, whole_address_capture);
	tcase_add_test(lower, local_policy_falls_back_and_drops_off_cluster);
	tcase_add_test(lower, conflicting_claims_first_wins);
	tcase_add_test(lower, ipv6_service);
	tcase_add_test(lower, print_is_deterministic);
	tcase_add_test(lower, json_plan_parses);
	tcase_add_test(lower, helper_rules_are_constant);
	tcase_add_test(lower, source_ranges_as_set_members);
	tcase_add_test(lower, set_match_spelling);
	tcase_add_test(lower, rule_lookup_ignores_pref);
	suite_add_tcase(s, lower);
	tcase_add_test(codec, codec_round_trip);
	tcase_add_test(codec, codec_wire_format);
	tcase_add_test(codec, codec_rejects_garbage);
	tcase_add_test(codec, errno_meanings);
	suite_add_tcase(s, codec);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(ipvs_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
