/* sp_ct_stale(): a table of plan changes and the exact filters each one must
 * produce, nothing more (unrelated Services and TCP untouched where the rule
 * says so); plus the summary's JSON state round trip. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "svcproxy/conntrack.h"

static struct sp_addr A(const char *text) {
	struct sp_addr a;

	ck_assert_msg(sp_addr_parse(text, &a), "bad address %s", text);
	return a;
}

static void
eps_add(struct sp_ct_eps *e, const char *addr, uint16_t port)
{
	e->items = sp_xrealloc(e->items, (e->n + 1) * sizeof(*e->items));
	e->items[e->n].addr = A(addr);
	e->items[e->n].port = port;
	e->n++;
}

static void eps_del(struct sp_ct_eps *e, const char *addr)
{
	struct sp_addr a = A(addr);
	size_t kept = 0;

	for (size_t i = 0; i < e->n; i++)
		if (!sp_addr_equal(&e->items[i].addr, &a))
			e->items[kept++] = e->items[i];
	e->n = kept;
}

static struct sp_ct_svcport *svc_add(struct sp_ct_summary *s, const char *id, uint8_t proto,
				     const char *cip, uint16_t port)
{
	struct sp_ct_svcport *sp;

	s->svcports = sp_xrealloc(s->svcports, (s->n_svcports + 1) * sizeof(*s->svcports));
	sp = &s->svcports[s->n_svcports++];
	memset(sp, 0, sizeof(*sp));
	sp->id = sp_xstrdup(id);
	sp->protocol = proto;
	sp->cluster_ip = A(cip);
	sp->family = sp->cluster_ip.family;
	sp->port = port;
	return sp;
}

static void ext_add(struct sp_ct_svcport *sp, const char *addr)
{
	sp->external_addrs = sp_xrealloc(sp->external_addrs,
					 (sp->n_external_addrs + 1) * sizeof(struct sp_addr));
	sp->external_addrs[sp->n_external_addrs++] = A(addr);
}

/* Mutable lookup after normalize (svcports are sorted then). */
static struct sp_ct_svcport *svc(struct sp_ct_summary *s, const char *id)
{
	for (size_t i = 0; i < s->n_svcports; i++)
		if (strcmp(s->svcports[i].id, id) == 0)
			return &s->svcports[i];
	ck_abort_msg("no svcport %s", id);
	return NULL;
}

static void svc_del(struct sp_ct_summary *s, const char *id)
{
	size_t kept = 0;

	for (size_t i = 0; i < s->n_svcports; i++) {
		if (strcmp(s->svcports[i].id, id) == 0) {
			free(s->svcports[i].id);
			free(s->svcports[i].external_addrs);
			free(s->svcports[i].cluster_eps.items);
			free(s->svcports[i].local_eps.items);
			continue;
		}
		s->svcports[kept++] = s->svcports[i];
	}
	s->n_svcports = kept;
}

/* A node 192.168.1.10 with:
 *  dns   UDP  ClusterIP 10.96.0.10:53, eps A (local) B (remote), port 5353
 *  web   TCP  10.96.0.20:80, nodePort 30080, externalIP 203.0.113.5, eps C (local) D
 *  game  UDP  10.96.0.30:7777, nodePort 30777, LB 203.0.113.7, eps E (local) F
 *  sig   SCTP 10.96.0.40:3868, ep G
 *  other UDP  10.96.0.50:53, ep H: never changes, must never be flushed
 *  v6    UDP  fd00::10:53, eps fd00:244::2 (local), fd00:244::3 */
static void base(struct sp_ct_summary *s)
{
	struct sp_ct_svcport *sp;

	sp_ct_summary_init(s);
	s->mode = SP_MODE_NFTABLES;
	s->nodeport_addrs = sp_xcalloc(1, sizeof(struct sp_addr));
	s->nodeport_addrs[0] = A("192.168.1.10");
	s->n_nodeport_addrs = 1;

	sp = svc_add(s, "default/dns:dns", IPPROTO_UDP, "10.96.0.10", 53);
	eps_add(&sp->cluster_eps, "10.244.1.2", 5353);
	eps_add(&sp->cluster_eps, "10.244.2.3", 5353);
	eps_add(&sp->local_eps, "10.244.1.2", 5353);

	sp = svc_add(s, "default/web:http", IPPROTO_TCP, "10.96.0.20", 80);
	sp->node_port = 30080;
	ext_add(sp, "203.0.113.5");
	eps_add(&sp->cluster_eps, "10.244.1.4", 8080);
	eps_add(&sp->cluster_eps, "10.244.2.5", 8080);
	eps_add(&sp->local_eps, "10.244.1.4", 8080);

	sp = svc_add(s, "default/game:udp", IPPROTO_UDP, "10.96.0.30", 7777);
	sp->node_port = 30777;
	ext_add(sp, "203.0.113.7");
	eps_add(&sp->cluster_eps, "10.244.1.6", 7777);
	eps_add(&sp->cluster_eps, "10.244.2.7", 7777);
	eps_add(&sp->local_eps, "10.244.1.6", 7777);

	sp = svc_add(s, "default/sig:diameter", IPPROTO_SCTP, "10.96.0.40", 3868);
	eps_add(&sp->cluster_eps, "10.244.2.8", 3868);

	sp = svc_add(s, "other/x:p", IPPROTO_UDP, "10.96.0.50", 53);
	eps_add(&sp->cluster_eps, "10.244.3.9", 53);

	sp = svc_add(s, "default/v6:dns", IPPROTO_UDP, "fd00::10", 53);
	eps_add(&sp->cluster_eps, "fd00:244::2", 53);
	eps_add(&sp->cluster_eps, "fd00:244::3", 53);
	eps_add(&sp->local_eps, "fd00:244::2", 53);
	sp_ct_summary_normalize(s);
}

/* ---- mutations: old -> new ---- */

static void m_none(struct sp_ct_summary *o, struct sp_ct_summary *n)
{
	(void)o;
	(void)n;
}

static void m_dns_ep_removed(struct sp_ct_summary *o, struct sp_ct_summary *n)
{
	(void)o;
	eps_del(&svc(n, "default/dns:dns")->cluster_eps, "10.244.2.3");
}

static void m_dns_ep_port_changed(struct sp_ct_summary *o, struct sp_ct_summary *n)
{
	struct sp_ct_svcport *sp = svc(n, "default/dns:dns");

	(void)o;
	sp->cluster_eps.items[0].port = 5354;
	sp->local_eps.items[0].port = 5354;
}

static void m_web_ep_removed(struct sp_ct_summary *o, struct sp_ct_summary *n)
{
	(void)o;
	eps_del(&svc(n, "default/web:http")->cluster_eps, "10.244.2.5");
}

static void m_game_ep_removed(struct sp_ct_summary *o, struct sp_ct_summary *n)
{
	(void)o;
	eps_del(&svc(n, "default/game:udp")->cluster_eps, "10.244.2.7");
}

static void m_game_local_ep_not_ready(struct sp_ct_summary *o, struct sp_ct_summary *n)
{
	(void)o;
	eps_del(&svc(n, "default/game:udp")->cluster_eps, "10.244.1.6");
	eps_del(&svc(n, "default/game:udp")->local_eps, "10.244.1.6");
}

static void m_sig_ep_removed(struct sp_ct_summary *o, struct sp_ct_summary *n)
{
	(void)o;
	eps_del(&svc(n, "default/sig:diameter")->cluster_eps, "10.244.2.8");
}

static void m_game_etp_local(struct sp_ct_summary *o, struct sp_ct_summary *n)
{
	(void)o;
	svc(n, "default/game:udp")->external_policy_local = true;
}

static void set_cluster_sources(struct sp_ct_summary *s)
{
	s->cluster_sources = sp_xcalloc(3, sizeof(struct sp_cidr));
	ck_assert(sp_cidr_parse("10.244.0.0/16", &s->cluster_sources[0]));
	ck_assert(sp_cidr_parse("192.168.1.10/32", &s->cluster_sources[1]));
	ck_assert(sp_cidr_parse("fd00:244::/64", &s->cluster_sources[2]));
	s->n_cluster_sources = 3;
	sp_ct_summary_normalize(s);
}

static void m_game_etp_local_cluster_sources(struct sp_ct_summary *o, struct sp_ct_summary *n)
{
	set_cluster_sources(o);
	set_cluster_sources(n);
	svc(n, "default/game:udp")->external_policy_local = true;
}

static void m_dns_itp_local_cluster_sources(struct sp_ct_summary *o, struct sp_ct_summary *n)
{
	set_cluster_sources(o);
	set_cluster_sources(n);
	svc(n, "default/dns:dns")->internal_policy_local = true;
}

static void m_game_etp_local_masq_all(struct sp_ct_summary *o, struct sp_ct_summary *n)
{
	o->masquerade_all = n->masquerade_all = true;
	svc(n, "default/game:udp")->external_policy_local = true;
}

static void m_web_etp_local(struct sp_ct_summary *o, struct sp_ct_summary *n)
{
	(void)o;
	svc(n, "default/web:http")->external_policy_local = true;
}

static void m_game_etp_cluster(struct sp_ct_summary *o, struct sp_ct_summary *n)
{
	svc(o, "default/game:udp")->external_policy_local = true;
	(void)n;
}

static void m_dns_itp_local(struct sp_ct_summary *o, struct sp_ct_summary *n)
{
	(void)o;
	svc(n, "default/dns:dns")->internal_policy_local = true;
}

static void m_dns_deleted(struct sp_ct_summary *o, struct sp_ct_summary *n)
{
	(void)o;
	svc_del(n, "default/dns:dns");
}

static void m_web_deleted(struct sp_ct_summary *o, struct sp_ct_summary *n)
{
	(void)o;
	svc_del(n, "default/web:http");
}

static void m_game_lb_removed(struct sp_ct_summary *o, struct sp_ct_summary *n)
{
	(void)o;
	svc(n, "default/game:udp")->n_external_addrs = 0;
}

static void m_game_node_port_changed(struct sp_ct_summary *o, struct sp_ct_summary *n)
{
	(void)o;
	svc(n, "default/game:udp")->node_port = 30778;
}

static void m_node_address_changed(struct sp_ct_summary *o, struct sp_ct_summary *n)
{
	(void)o;
	n->nodeport_addrs[0] = A("192.168.1.11");
}

static void m_dns_first_endpoints(struct sp_ct_summary *o, struct sp_ct_summary *n)
{
	(void)n;
	svc(o, "default/dns:dns")->cluster_eps.n = 0;
	svc(o, "default/dns:dns")->local_eps.n = 0;
}

static void m_web_first_endpoints(struct sp_ct_summary *o, struct sp_ct_summary *n)
{
	(void)n;
	svc(o, "default/web:http")->cluster_eps.n = 0;
	svc(o, "default/web:http")->local_eps.n = 0;
}

static void m_udp_service_added(struct sp_ct_summary *o, struct sp_ct_summary *n)
{
	struct sp_ct_svcport *sp = svc_add(n, "default/new:q", IPPROTO_UDP, "10.96.0.60", 9000);

	(void)o;
	eps_add(&sp->cluster_eps, "10.244.2.11", 9000);
	sp_ct_summary_normalize(n);
}

static void m_udp_service_added_no_eps(struct sp_ct_summary *o, struct sp_ct_summary *n)
{
	(void)o;
	svc_add(n, "default/new:q", IPPROTO_UDP, "10.96.0.60", 9000);
	sp_ct_summary_normalize(n);
}

static void m_dns_affinity_on(struct sp_ct_summary *o, struct sp_ct_summary *n)
{
	(void)o;
	svc(n, "default/dns:dns")->affinity = true;
	svc(n, "default/dns:dns")->affinity_timeout = 10800;
}

static void m_dns_affinity_timeout(struct sp_ct_summary *o, struct sp_ct_summary *n)
{
	svc(o, "default/dns:dns")->affinity = true;
	svc(o, "default/dns:dns")->affinity_timeout = 10800;
	svc(n, "default/dns:dns")->affinity = true;
	svc(n, "default/dns:dns")->affinity_timeout = 60;
}

static void m_web_affinity_on(struct sp_ct_summary *o, struct sp_ct_summary *n)
{
	(void)o;
	svc(n, "default/web:http")->affinity = true;
}

static void m_dns_became_tcp(struct sp_ct_summary *o, struct sp_ct_summary *n)
{
	(void)o;
	svc(n, "default/dns:dns")->protocol = IPPROTO_TCP;
}

static void m_v6_ep_removed(struct sp_ct_summary *o, struct sp_ct_summary *n)
{
	(void)o;
	eps_del(&svc(n, "default/v6:dns")->cluster_eps, "fd00:244::3");
}

static void m_terminating_fallback_ends(struct sp_ct_summary *o, struct sp_ct_summary *n)
{
	/* Old: only a terminating endpoint was left (serving fallback);
	 * new: a ready one appeared, the terminating one leaves the set. */
	struct sp_ct_svcport *os = svc(o, "other/x:p");
	struct sp_ct_svcport *ns = svc(n, "other/x:p");

	eps_del(&ns->cluster_eps, "10.244.3.9");
	eps_add(&ns->cluster_eps, "10.244.3.10", 53);
	(void)os;
}

static const struct stale_case {
	const char *name;
	void (*mutate)(struct sp_ct_summary *o, struct sp_ct_summary *n);
	const char *want[8]; /* NULL-terminated, in normalized order */
} cases[] = {
	{"no change", m_none, {NULL}},
	{"udp endpoint removed",
	 m_dns_ep_removed,
	 {"udp 10.96.0.10:53 reply-src 10.244.2.3:5353 (endpoint-gone, default/dns:dns)"}},
	{"udp endpoint port changed",
	 m_dns_ep_port_changed,
	 {"udp 10.96.0.10:53 reply-src 10.244.1.2:5353 (endpoint-gone, default/dns:dns)"}},
	{"tcp endpoint removed: left alone", m_web_ep_removed, {NULL}},
	{"udp endpoint removed: every address of the port",
	 m_game_ep_removed,
	 {"udp 10.96.0.30:7777 reply-src 10.244.2.7:7777 (endpoint-gone, default/game:udp)",
	  "udp 192.168.1.10:30777 reply-src 10.244.2.7:7777 (endpoint-gone, default/game:udp)",
	  "udp 203.0.113.7:7777 reply-src 10.244.2.7:7777 (endpoint-gone, default/game:udp)"}},
	{"local endpoint no longer ready",
	 m_game_local_ep_not_ready,
	 {"udp 10.96.0.30:7777 reply-src 10.244.1.6:7777 (endpoint-gone, default/game:udp)",
	  "udp 192.168.1.10:30777 reply-src 10.244.1.6:7777 (endpoint-gone, default/game:udp)",
	  "udp 203.0.113.7:7777 reply-src 10.244.1.6:7777 (endpoint-gone, default/game:udp)"}},
	{"sctp endpoint removed",
	 m_sig_ep_removed,
	 {"sctp 10.96.0.40:3868 reply-src 10.244.2.8:3868 (endpoint-gone, default/sig:diameter)"}},
	{"eTP Cluster -> Local (udp): remote endpoints and SNATed local ones, external only",
	 m_game_etp_local,
	 {"udp 192.168.1.10:30777 reply-src 10.244.1.6:7777 snat (traffic-policy-snat, "
	  "default/game:udp)",
	  "udp 192.168.1.10:30777 reply-src 10.244.2.7:7777 (traffic-policy, default/game:udp)",
	  "udp 203.0.113.7:7777 reply-src 10.244.1.6:7777 snat (traffic-policy-snat, "
	  "default/game:udp)",
	  "udp 203.0.113.7:7777 reply-src 10.244.2.7:7777 (traffic-policy, default/game:udp)"}},
	{"eTP Cluster -> Local: in-cluster clients (short-circuited) skipped",
	 m_game_etp_local_cluster_sources,
	 {"udp 192.168.1.10:30777 reply-src 10.244.1.6:7777 snat off-cluster "
	  "(traffic-policy-snat, default/game:udp)",
	  "udp 192.168.1.10:30777 reply-src 10.244.2.7:7777 off-cluster (traffic-policy, "
	  "default/game:udp)",
	  "udp 203.0.113.7:7777 reply-src 10.244.1.6:7777 snat off-cluster (traffic-policy-snat, "
	  "default/game:udp)",
	  "udp 203.0.113.7:7777 reply-src 10.244.2.7:7777 off-cluster (traffic-policy, "
	  "default/game:udp)"}},
	{"iTP Cluster -> Local: no client is exempt",
	 m_dns_itp_local_cluster_sources,
	 {"udp 10.96.0.10:53 reply-src 10.244.2.3:5353 (traffic-policy, default/dns:dns)"}},
	{"eTP Cluster -> Local with masquerade-all: SNAT stays legitimate",
	 m_game_etp_local_masq_all,
	 {"udp 192.168.1.10:30777 reply-src 10.244.2.7:7777 (traffic-policy, default/game:udp)",
	  "udp 203.0.113.7:7777 reply-src 10.244.2.7:7777 (traffic-policy, default/game:udp)"}},
	{"eTP Cluster -> Local (tcp too)",
	 m_web_etp_local,
	 {"tcp 192.168.1.10:30080 reply-src 10.244.1.4:8080 snat (traffic-policy-snat, "
	  "default/web:http)",
	  "tcp 192.168.1.10:30080 reply-src 10.244.2.5:8080 (traffic-policy, default/web:http)",
	  "tcp 203.0.113.5:80 reply-src 10.244.1.4:8080 snat (traffic-policy-snat, "
	  "default/web:http)",
	  "tcp 203.0.113.5:80 reply-src 10.244.2.5:8080 (traffic-policy, default/web:http)"}},
	{"eTP Local -> Cluster: nothing stale", m_game_etp_cluster, {NULL}},
	{"iTP Cluster -> Local: ClusterIP entries to remote endpoints",
	 m_dns_itp_local,
	 {"udp 10.96.0.10:53 reply-src 10.244.2.3:5353 (traffic-policy, default/dns:dns)"}},
	{"udp service deleted",
	 m_dns_deleted,
	 {"udp 10.96.0.10:53 (address-gone, default/dns:dns)"}},
	{"tcp service deleted: left alone", m_web_deleted, {NULL}},
	{"LB address removed",
	 m_game_lb_removed,
	 {"udp 203.0.113.7:7777 (address-gone, default/game:udp)"}},
	{"node port changed",
	 m_game_node_port_changed,
	 {"udp 192.168.1.10:30777 (address-gone, default/game:udp)",
	  "udp 192.168.1.10:30778 reply-src 192.168.1.10:30778 (first-endpoints, "
	  "default/game:udp)"}},
	{"node address changed",
	 m_node_address_changed,
	 {"udp 192.168.1.10:30777 (address-gone, default/game:udp)",
	  "udp 192.168.1.11:30777 reply-src 192.168.1.11:30777 (first-endpoints, "
	  "default/game:udp)"}},
	{"first endpoints: un-NATed entries to the ClusterIP",
	 m_dns_first_endpoints,
	 {"udp 10.96.0.10:53 reply-src 10.96.0.10:53 (first-endpoints, default/dns:dns)"}},
	{"first endpoints, tcp: left alone", m_web_first_endpoints, {NULL}},
	{"udp service added with endpoints",
	 m_udp_service_added,
	 {"udp 10.96.0.60:9000 reply-src 10.96.0.60:9000 (first-endpoints, default/new:q)"}},
	{"udp service added without endpoints", m_udp_service_added_no_eps, {NULL}},
	{"affinity turned on",
	 m_dns_affinity_on,
	 {"udp 10.96.0.10:53 (affinity, default/dns:dns)"}},
	{"affinity timeout changed",
	 m_dns_affinity_timeout,
	 {"udp 10.96.0.10:53 (affinity, default/dns:dns)"}},
	{"affinity on, tcp: left alone", m_web_affinity_on, {NULL}},
	{"protocol changed udp -> tcp",
	 m_dns_became_tcp,
	 {"udp 10.96.0.10:53 (address-gone, default/dns:dns)"}},
	{"ipv6 endpoint removed",
	 m_v6_ep_removed,
	 {"udp [fd00::10]:53 reply-src [fd00:244::3]:53 (endpoint-gone, default/v6:dns)"}},
	{"terminating fallback replaced by a ready endpoint",
	 m_terminating_fallback_ends,
	 {"udp 10.96.0.50:53 reply-src 10.244.3.9:53 (endpoint-gone, other/x:p)"}},
};

START_TEST(stale_table)
{
	const struct stale_case *c = &cases[_i];
	struct sp_ct_summary o, n;
	struct sp_ct_filters got;
	size_t n_want = 0;

	base(&o);
	base(&n);
	c->mutate(&o, &n);
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
		ck_assert_msg(strstr(b.data, "other/x:p") == NULL || strstr(c->name, "terminating"),
			      "%s: unrelated service flushed", c->name);
		sp_buf_free(&b);
	}
	ck_assert_msg(got.n == n_want, "%s: %zu filters, want %zu", c->name, got.n, n_want);
	sp_ct_filters_free(&got);
	sp_ct_summary_free(&o);
	sp_ct_summary_free(&n);
}
END_TEST

START_TEST(no_old_state_flushes_nothing)
{
	struct sp_ct_summary n;
	struct sp_ct_filters pending;
	struct sp_ct_stats stats = {0};
	struct sp_diag d;

	base(&n);
	sp_diag_init(&d);
	sp_ct_filters_init(&pending);
	ck_assert_int_eq(sp_ct_flush_stale(NULL, &n, &pending, &stats, &d), 0);
	ck_assert_uint_eq(stats.filters, 0);
	ck_assert_uint_eq(pending.n, 0);
	sp_ct_filters_free(&pending);
	sp_diag_free(&d);
	sp_ct_summary_free(&n);
}
END_TEST

START_TEST(normalize_drops_covered)
{
	struct sp_ct_filters f;
	struct sp_ct_filter *x;
	struct sp_buf b;

	sp_ct_filters_init(&f);
	for (int i = 0; i < 4; i++) {
		x = sp_ct_filters_add(&f);
		x->family = AF_INET;
		x->protocol = IPPROTO_UDP;
		x->orig_dst = A("10.96.0.10");
		x->orig_dport = 53;
		x->svc_id = sp_xstrdup("a/b:c");
		x->reason = SP_CT_ENDPOINT_GONE;
		x->match_reply_src = i != 3;
		x->reply_src = A("10.244.0.1");
		x->reply_sport = i == 1 ? 0 : 53;
		x->snat_only = i == 2;
	}
	x = sp_ct_filters_add(&f); /* another port: kept */
	x->family = AF_INET;
	x->protocol = IPPROTO_UDP;
	x->orig_dst = A("10.96.0.10");
	x->orig_dport = 54;
	x->match_reply_src = true;
	x->reply_src = A("10.244.0.1");
	sp_ct_filters_normalize(&f);
	ck_assert_uint_eq(f.n, 2);
	sp_buf_init(&b);
	sp_ct_filter_format(&f.items[0], &b);
	ck_assert_str_eq(b.data, "udp 10.96.0.10:53 (endpoint-gone, a/b:c)");
	sp_buf_reset(&b);
	sp_ct_filter_format(&f.items[1], &b);
	ck_assert_str_eq(b.data, "udp 10.96.0.10:54 reply-src 10.244.0.1 (endpoint-gone, -)");
	sp_buf_free(&b);
	sp_ct_filters_free(&f);
}
END_TEST

START_TEST(summary_from_plan)
{
	struct sp_plan_endpoint eps[3] = {
		{.addr = A("10.244.1.2"), .port = 8080, .local = true, .ready = true},
		{.addr = A("10.244.2.3"), .port = 8080, .ready = true},
		{.addr = A("10.244.2.4"), .port = 8080, .terminating = true},
	};
	size_t cl[] = {0, 1}, lo[] = {0};
	struct sp_addr ext[] = {A("203.0.113.5")}, lb[] = {A("198.51.100.7")};
	struct sp_addr node = A("192.168.1.10");
	struct sp_plan_svcport sp = {
		.id = "ns/svc:p",
		.family = AF_INET,
		.protocol = IPPROTO_UDP,
		.cluster_ip = A("10.96.0.1"),
		.port = 53,
		.node_port = 30053,
		.external_ips = ext,
		.n_external_ips = 1,
		.lb_ips = lb,
		.n_lb_ips = 1,
		.external_policy_local = true,
		.affinity = true,
		.affinity_timeout = 60,
		.endpoints = eps,
		.n_endpoints = 3,
		.cluster = {cl, 2},
		.local = {lo, 1},
		.has_any_endpoints = true,
	};
	struct sp_plan plan = {
		.mode = SP_MODE_IPTABLES,
		.nodeport_addrs = &node,
		.n_nodeport_addrs = 1,
		.svcports = &sp,
		.n_svcports = 1,
	};
	struct sp_ct_summary s;
	char buf[SP_ADDRSTRLEN];

	sp_ct_summary_from_plan(&s, &plan);
	ck_assert_int_eq(s.mode, SP_MODE_IPTABLES);
	ck_assert_uint_eq(s.n_svcports, 1);
	ck_assert_str_eq(s.svcports[0].id, "ns/svc:p");
	ck_assert_uint_eq(s.svcports[0].n_external_addrs, 2);
	ck_assert_str_eq(sp_addr_format(&s.svcports[0].external_addrs[0], buf), "198.51.100.7");
	ck_assert_uint_eq(s.svcports[0].cluster_eps.n, 2);
	ck_assert_uint_eq(s.svcports[0].local_eps.n, 1);
	ck_assert_str_eq(sp_addr_format(&s.svcports[0].local_eps.items[0].addr, buf), "10.244.1.2");
	ck_assert(s.svcports[0].external_policy_local);
	ck_assert_uint_eq(s.svcports[0].affinity_timeout, 60);
	sp_ct_summary_free(&s);
}
END_TEST

START_TEST(state_json_roundtrip)
{
	struct sp_ct_summary s, back;
	struct sp_buf a, b;
	struct sp_diag d;
	struct sp_ct_filter *f;

	base(&s);
	svc(&s, "default/dns:dns")->affinity = true;
	svc(&s, "default/dns:dns")->affinity_timeout = 99;
	f = sp_ct_filters_add(&s.pending);
	f->family = AF_INET6;
	f->protocol = IPPROTO_SCTP;
	f->orig_dst = A("fd00::10");
	f->orig_dport = 3868;
	f->match_reply_src = true;
	f->reply_src = A("fd00:244::9");
	f->reply_sport = 3868;
	f->snat_only = true;
	f->reason = SP_CT_POLICY_SNAT;
	f->svc_id = sp_xstrdup("default/sig:diameter");
	f->skip_src = sp_xcalloc(1, sizeof(*f->skip_src));
	ck_assert(sp_cidr_parse("fd00:244::/64", &f->skip_src[0]));
	f->n_skip_src = 1;
	set_cluster_sources(&s);
	sp_diag_init(&d);
	sp_buf_init(&a);
	sp_buf_init(&b);
	sp_ct_summary_to_json(&s, &a);
	ck_assert_int_eq(sp_ct_summary_from_json(&back, a.data, "t", &d), 0);
	sp_ct_summary_to_json(&back, &b);
	ck_assert_str_eq(a.data, b.data);
	ck_assert_uint_eq(back.pending.n, 1);
	ck_assert(back.pending.items[0].snat_only);
	ck_assert_int_eq(back.pending.items[0].reason, SP_CT_POLICY_SNAT);
	ck_assert_uint_eq(back.pending.items[0].n_skip_src, 1);
	ck_assert_uint_eq(back.n_cluster_sources, 3);
	ck_assert(sp_ct_summary_equal(&s, &back));
	sp_buf_free(&a);
	sp_buf_free(&b);
	sp_ct_summary_free(&s);
	sp_ct_summary_free(&back);
	sp_diag_free(&d);
}
END_TEST

START_TEST(state_json_corrupt)
{
	static const char *const bad[] = {
		"",
		"{",
		"[]",
		"{\"version\":2,\"mode\":\"nftables\"}",
		"{\"version\":1,\"mode\":\"nftables\",\"masquerade_all\":false,"
		"\"nodeport_addrs\":[\"10.0.0.300\"],\"svcports\":[]}",
		"{\"version\":1,\"mode\":\"nftables\",\"masquerade_all\":false,"
		"\"nodeport_addrs\":[],\"svcports\":[{\"id\":\"a/b:c\",\"family\":4,"
		"\"protocol\":\"udp\",\"cluster_ip\":\"10.96.0.1\",\"port\":70000}]}",
		"{\"version\":1,\"mode\":\"nftables\",\"masquerade_all\":false,"
		"\"nodeport_addrs\":[],\"svcports\":[],\"pending\":[{\"reason\":\"nope\"}]}",
	};

	for (size_t i = 0; i < SP_ARRAY_SIZE(bad); i++) {
		struct sp_ct_summary s;
		struct sp_diag d;

		sp_diag_init(&d);
		ck_assert_msg(sp_ct_summary_from_json(&s, bad[i], "state", &d) == -1, "case %zu",
			      i);
		ck_assert_msg(d.n_warnings == 1, "case %zu: %zu warnings", i, d.n_warnings);
		ck_assert_uint_eq(s.n_svcports, 0);
		sp_ct_summary_free(&s);
		sp_diag_free(&d);
	}
}
END_TEST

START_TEST(state_file_missing_corrupt_saved)
{
	char dir[] = "/tmp/sp-ct-state-XXXXXX";
	struct sp_ct_summary s, back;
	struct sp_diag d;
	char *path, *sub;
	FILE *fp;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	sub = sp_xasprintf("%s/run", dir);
	path = sp_ct_state_path(sub, SP_MODE_NFTABLES);
	ck_assert(strstr(path, "/run/nftables.state") != NULL);
	sp_diag_init(&d);
	ck_assert_int_eq(sp_ct_state_load(&back, path, &d), 0);
	ck_assert_uint_eq(d.n_warnings, 0);
	sp_ct_summary_free(&back);

	base(&s);
	ck_assert_int_eq(sp_ct_state_save(&s, path, &d), 0);
	ck_assert_int_eq(sp_ct_state_load(&back, path, &d), 1);
	ck_assert_uint_eq(back.n_svcports, s.n_svcports);
	sp_ct_summary_free(&back);

	fp = fopen(path, "w");
	ck_assert_ptr_nonnull(fp);
	fputs("{\"version\":1, trunc", fp);
	fclose(fp);
	ck_assert_int_eq(sp_ct_state_load(&back, path, &d), -1);
	ck_assert(sp_diag_has(&d, SP_SEV_WARNING, "nothing flushed"));
	ck_assert_uint_eq(back.n_svcports, 0);
	sp_ct_summary_free(&back);
	ck_assert_int_eq(sp_ct_state_save(&s, path, &d), 0);
	ck_assert_int_eq(sp_ct_state_load(&back, path, &d), 1);
	sp_ct_summary_free(&back);

	unlink(path);
	rmdir(sub);
	rmdir(dir);
	free(path);
	free(sub);
	sp_ct_summary_free(&s);
	sp_diag_free(&d);
}
END_TEST

START_TEST(summary_equal)
{
	struct sp_ct_summary a, b;

	base(&a);
	base(&b);
	ck_assert(sp_ct_summary_equal(&a, &b));
	svc(&b, "default/game:udp")->local_eps.items[0].port = 7778;
	ck_assert(!sp_ct_summary_equal(&a, &b));
	sp_ct_summary_free(&b);
	base(&b);
	svc(&b, "other/x:p")->affinity_timeout = 1;
	ck_assert(!sp_ct_summary_equal(&a, &b));
	sp_ct_summary_free(&a);
	sp_ct_summary_free(&b);
}
END_TEST

static ino_t inode_of(const char *path)
{
	struct stat st;

	ck_assert_int_eq(stat(path, &st), 0);
	return st.st_ino;
}

/* TCP endpoint changes make nothing stale, so the tracker never needs the
 * kernel here; what is checked is when it rewrites its state. */
START_TEST(tracker_saves_only_changes)
{
	struct sp_plan_endpoint eps[2] = {
		{.addr = A("10.244.1.2"), .port = 8080, .local = true, .ready = true},
		{.addr = A("10.244.2.3"), .port = 8080, .ready = true},
	};
	size_t cl[] = {0, 1};
	struct sp_plan_svcport sp = {
		.id = "ns/web:http",
		.family = AF_INET,
		.protocol = IPPROTO_TCP,
		.cluster_ip = A("10.96.0.1"),
		.port = 80,
		.endpoints = eps,
		.n_endpoints = 2,
		.cluster = {cl, 2},
		.has_any_endpoints = true,
	};
	struct sp_plan plan = {.mode = SP_MODE_NFTABLES, .svcports = &sp, .n_svcports = 1};
	char dir[] = "/tmp/sp-ct-tracker-XXXXXX";
	struct sp_ct_stats stats = {0};
	struct sp_ct_tracker *t;
	struct sp_diag d;
	char *path;
	ino_t ino;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	path = sp_xasprintf("%s/nftables.state", dir);
	sp_diag_init(&d);
	t = sp_ct_tracker_new(path, &d);
	ck_assert_int_eq(sp_ct_tracker_sync(t, &plan, &stats, &d), 0);
	ino = inode_of(path);
	ck_assert_int_eq(sp_ct_tracker_sync(t, &plan, &stats, &d), 0);
	ck_assert(inode_of(path) == ino);
	sp.cluster.n = 1;
	ck_assert_int_eq(sp_ct_tracker_sync(t, &plan, &stats, &d), 0);
	ck_assert(inode_of(path) != ino);
	sp_ct_tracker_free(t);

	/* A new tracker (a restarted daemon) starts from the file. */
	t = sp_ct_tracker_new(path, &d);
	ino = inode_of(path);
	ck_assert_int_eq(sp_ct_tracker_sync(t, &plan, &stats, &d), 0);
	ck_assert(inode_of(path) == ino);
	ck_assert_uint_eq(stats.filters, 0);
	ck_assert_uint_eq(d.n_warnings, 0);
	sp_ct_tracker_free(t);
	unlink(path);
	rmdir(dir);
	free(path);
	sp_diag_free(&d);
}
END_TEST

static Suite *stale_suite(void)
{
	Suite *s = suite_create("stale");
	TCase *tc = tcase_create("rules");

	tcase_add_loop_test(tc, stale_table, 0, (int)SP_ARRAY_SIZE(cases));
	tcase_add_test(tc, no_old_state_flushes_nothing);
	tcase_add_test(tc, normalize_drops_covered);
	tcase_add_test(tc, summary_from_plan);
	suite_add_tcase(s, tc);
	tc = tcase_create("state");
	tcase_add_test(tc, state_json_roundtrip);
	tcase_add_test(tc, state_json_corrupt);
	tcase_add_test(tc, state_file_missing_corrupt_saved);
	tcase_add_test(tc, summary_equal);
	tcase_add_test(tc, tracker_saves_only_changes);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(stale_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
