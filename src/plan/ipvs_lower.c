/* Lower a plan to IPVS mode's kernel objects, with kube-proxy's IPVS
 * semantics: one virtual server per (address, protocol, port) for the
 * ClusterIP, each node-port address, each externalIP and each LB ingress IP;
 * real servers in masquerade mode with weight 1; ClientIP affinity as
 * persistence. ClusterIPs go on kube-ipvs0; externalIPs and LB IPs are
 * captured per port (a set member marked in mangle, one fwmark policy rule;
 * default) or bound whole to kube-ipvs0 (kube-proxy's way). Helper rules
 * are constant and match ipsets whose members carry the per-Service part,
 * as kube-proxy's IPVS mode does. Pure: no syscalls. */
#include "svcproxy/ipvs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct lower_ctx {
	const struct sp_plan *plan;
	struct sp_ipvs_state *st;
	struct sp_diag *diag;
	uint32_t mark;			/* the masquerade mark bit */
	struct sp_addr *nodeport_addrs; /* sorted, unique */
	size_t n_nodeport_addrs;
};

static const char *kind_name(enum sp_ipvs_vs_kind k)
{
	switch (k) {
	case SP_IPVS_VS_CLUSTER_IP:
		return "ClusterIP";
	case SP_IPVS_VS_NODE_PORT:
		return "NodePort";
	case SP_IPVS_VS_EXTERNAL_IP:
		return "externalIP";
	case SP_IPVS_VS_LOAD_BALANCER:
		return "LoadBalancer";
	}
	return "?";
}

const char *const sp_ipvs_owned_chains[] = {"KUBE-SERVICES",	 "KUBE-POSTROUTING",
					    "KUBE-MARK-MASQ",	 "KUBE-IPVS-FIREWALL",
					    "KUBE-IPVS-CAPTURE", NULL};

/* ---- helper rules (iptables for IPv4, ip6tables for IPv6) -------------- */

static struct sp_ipt_table *table_of(struct lower_ctx *c, int family, enum sp_ipt_table_id table)
{
	return family == AF_INET6 ? &c->st->ipt6.tables[table] : &c->st->ipt.tables[table];
}

static struct sp_ipt_rule *rule_in(struct lower_ctx *c, int family, enum sp_ipt_table_id table,
				   const char *chain)
{
	return sp_ipt_rule_append(sp_ipt_chain_get(table_of(c, family, table), chain));
}

static void set_rule(struct sp_ipt_rule *r, enum sp_ipvs_set_id id, int family, const char *dirs)
{
	sp_ipt_add_set_match(r, sp_ipvs_set_name(id, family), dirs, false);
}

static void add_static_rules(struct lower_ctx *c, int f)
{
	struct sp_ipt_rule *r;

	r = rule_in(c, f, SP_IPT_NAT, "PREROUTING");
	sp_ipt_add_comment(r, "kubernetes service portals");
	sp_ipt_set_jump(r, "KUBE-SERVICES");
	r = rule_in(c, f, SP_IPT_NAT, "OUTPUT");
	sp_ipt_add_comment(r, "kubernetes service portals");
	sp_ipt_set_jump(r, "KUBE-SERVICES");
	r = rule_in(c, f, SP_IPT_NAT, "POSTROUTING");
	sp_ipt_add_comment(r, "kubernetes postrouting rules");
	sp_ipt_set_jump(r, "KUBE-POSTROUTING");
	r = rule_in(c, f, SP_IPT_NAT, "KUBE-MARK-MASQ");
	r->target.kind = SP_IPT_T_MARK;
	r->target.mark_value = c->mark;
	r->target.mark_mask = c->mark;
	sp_ipt_chain_get(table_of(c, f, SP_IPT_NAT), "KUBE-SERVICES");
	r = rule_in(c, f, SP_IPT_FILTER, "INPUT");
	sp_ipt_add_comment(r, "kubernetes ipvs access filter");
	sp_ipt_set_jump(r, "KUBE-IPVS-FIREWALL");
	sp_ipt_chain_get(table_of(c, f, SP_IPT_FILTER), "KUBE-IPVS-FIREWALL");
}

static const struct sp_cidr *first_cluster_cidr(const struct sp_plan *plan, int family)
{
	for (size_t i = 0; i < plan->n_cluster_cidrs; i++)
		if (plan->cluster_cidrs[i].addr.family == family)
			return &plan->cluster_cidrs[i];
	return NULL;
}

/* Masquerade: ClusterIP traffic from outside the cluster CIDR (or all of it
 * with --masquerade-all), and external traffic whose virtual server is in
 * one of the masquerading sets (Cluster policy, Local fallback). */
static void add_masq_rules(struct lower_ctx *c, int f)
{
	static const enum sp_ipvs_set_id external[] = {
		SP_IPVS_SET_NODE_PORT, SP_IPVS_SET_EXTERNAL_IP, SP_IPVS_SET_LOAD_BALANCER};
	const struct sp_cidr *cidr = first_cluster_cidr(c->plan, f);
	struct sp_ipt_rule *r;

	if (c->plan->masquerade_all || cidr) {
		r = rule_in(c, f, SP_IPT_NAT, "KUBE-SERVICES");
		if (!c->plan->masquerade_all) {
			r->src = *cidr;
			r->src_invert = true;
		}
		set_rule(r, SP_IPVS_SET_CLUSTER_IP, f, "dst,dst");
		sp_ipt_set_jump(r, "KUBE-MARK-MASQ");
	}
	for (size_t i = 0; i < sizeof(external) / sizeof(external[0]); i++) {
		r = rule_in(c, f, SP_IPT_NAT, "KUBE-SERVICES");
		set_rule(r, external[i], f, "dst,dst");
		sp_ipt_set_jump(r, "KUBE-MARK-MASQ");
	}
}

/* loadBalancerSourceRanges first (an allowed source is let through even when
 * the Local fallback below would drop it, as the per-service rules did), then
 * Local policy without a local endpoint: in-cluster and node-local sources
 * pass, everyone else is dropped. */
static void add_firewall_rules(struct lower_ctx *c, int f)
{
	const char *chain = "KUBE-IPVS-FIREWALL";
	struct sp_ipt_rule *r;
	struct sp_ipt_match *m;

	r = rule_in(c, f, SP_IPT_FILTER, chain);
	set_rule(r, SP_IPVS_SET_LB_SOURCE_CIDR, f, "dst,dst,src");
	sp_ipt_set_verdict(r, SP_IPT_T_RETURN);
	r = rule_in(c, f, SP_IPT_FILTER, chain);
	set_rule(r, SP_IPVS_SET_LB_FW, f, "dst,dst");
	sp_ipt_set_verdict(r, SP_IPT_T_DROP);
	for (size_t i = 0; i < c->plan->n_cluster_cidrs; i++) {
		if (c->plan->cluster_cidrs[i].addr.family != f)
			continue;
		r = rule_in(c, f, SP_IPT_FILTER, chain);
		r->src = c->plan->cluster_cidrs[i];
		set_rule(r, SP_IPVS_SET_LOCAL_NO_ENDPOINT, f, "dst,dst");
		sp_ipt_set_verdict(r, SP_IPT_T_RETURN);
	}
	r = rule_in(c, f, SP_IPT_FILTER, chain);
	m = sp_ipt_match_add(r, SP_IPT_M_ADDRTYPE);
	m->u.addrtype.src_type = SP_IPT_ADDRTYPE_LOCAL;
	set_rule(r, SP_IPVS_SET_LOCAL_NO_ENDPOINT, f, "dst,dst");
	sp_ipt_set_verdict(r, SP_IPT_T_RETURN);
	r = rule_in(c, f, SP_IPT_FILTER, chain);
	set_rule(r, SP_IPVS_SET_LOCAL_NO_ENDPOINT, f, "dst,dst");
	sp_ipt_set_verdict(r, SP_IPT_T_DROP);
}

/* A pod reaching itself through a Service: the reply would not come back
 * through IPVS without SNAT (kube-proxy's KUBE-LOOP-BACK set). */
static void add_postrouting_rules(struct lower_ctx *c, int f)
{
	struct sp_ipt_rule *r;
	struct sp_ipt_match *m;

	r = rule_in(c, f, SP_IPT_NAT, "KUBE-POSTROUTING");
	set_rule(r, SP_IPVS_SET_LOOP_BACK, f, "dst,dst,src");
	sp_ipt_set_verdict(r, SP_IPT_T_MASQUERADE);
	r = rule_in(c, f, SP_IPT_NAT, "KUBE-POSTROUTING");
	m = sp_ipt_match_add(r, SP_IPT_M_MARK);
	m->invert = true;
	m->u.mark.value = c->mark;
	m->u.mark.mask = c->mark;
	sp_ipt_set_verdict(r, SP_IPT_T_RETURN);
	r = rule_in(c, f, SP_IPT_NAT, "KUBE-POSTROUTING");
	r->target.kind = SP_IPT_T_MARK; /* --xor-mark: clear it for the next hop */
	r->target.mark_value = c->mark;
	r->target.mark_mask = 0;
	r = rule_in(c, f, SP_IPT_NAT, "KUBE-POSTROUTING");
	sp_ipt_add_comment(r, "kubernetes service traffic requiring SNAT");
	sp_ipt_set_verdict(r, SP_IPT_T_MASQUERADE);
}

/* Per-port capture: mark what goes to a captured (address, protocol, port),
 * arriving (PREROUTING) or sent by the node (OUTPUT, which re-routes a
 * packet whose mark changed); the fwmark rule routes it locally. */
static void add_capture_rules(struct lower_ctx *c, int f)
{
	struct sp_ipt_table *t = f == AF_INET6 ? &c->st->mangle6 : &c->st->mangle;
	struct sp_ipvs_rule fwmark = {.addr = {.family = f}, .pref = SP_IPVS_CAPTURE_PREF};
	struct sp_ipvs_rule local = {.addr = {.family = f}, .pref = SP_IPVS_LOCAL_PREF};
	struct sp_ipt_rule *r;

	if (c->plan->ipvs_capture == SP_IPVS_CAPTURE_WHOLE_ADDRESS)
		return;
	r = sp_ipt_rule_append(sp_ipt_chain_get(t, "PREROUTING"));
	sp_ipt_add_comment(r, "svcproxy ipvs per-port capture");
	sp_ipt_set_jump(r, "KUBE-IPVS-CAPTURE");
	r = sp_ipt_rule_append(sp_ipt_chain_get(t, "OUTPUT"));
	sp_ipt_add_comment(r, "svcproxy ipvs per-port capture");
	sp_ipt_set_jump(r, "KUBE-IPVS-CAPTURE");
	/* Clear first: a packet IPVS sends on to a real server passes mangle
	 * OUTPUT again, and with the mark still set NAT's re-route would
	 * send it back to the local table instead of to the real server. */
	r = sp_ipt_rule_append(sp_ipt_chain_get(t, "KUBE-IPVS-CAPTURE"));
	r->target.kind = SP_IPT_T_MARK;
	r->target.mark_value = 0;
	r->target.mark_mask = SP_IPVS_CAPTURE_MARK;
	r = sp_ipt_rule_append(sp_ipt_chain_get(t, "KUBE-IPVS-CAPTURE"));
	set_rule(r, SP_IPVS_SET_CAPTURE, f, "dst,dst");
	r->target.kind = SP_IPT_T_MARK;
	r->target.mark_value = SP_IPVS_CAPTURE_MARK;
	r->target.mark_mask = SP_IPVS_CAPTURE_MARK;
	if (c->st->sets[f == AF_INET6][SP_IPVS_SET_CAPTURE].n_entries) {
		sp_ipvs_add_rule(c->st, &fwmark);
		sp_ipvs_add_rule(c->st, &local);
	}
}

static void add_constant_rules(struct lower_ctx *c, int f)
{
	add_static_rules(c, f);
	add_masq_rules(c, f);
	add_firewall_rules(c, f);
	add_postrouting_rules(c, f);
	add_capture_rules(c, f);
}

static void add_vs_entry(struct lower_ctx *c, enum sp_ipvs_set_id id,
			 const struct sp_ipvs_service *svc)
{
	char e[SP_IPVS_ENTRYLEN];

	sp_ipvs_set_add(c->st, svc->addr.family, id,
			sp_ipvs_entry_ipport(&svc->addr, svc->protocol, svc->port, e));
}

static void add_masq_member(struct lower_ctx *c, const struct sp_ipvs_service *svc, bool masq)
{
	switch (svc->kind) {
	case SP_IPVS_VS_CLUSTER_IP:
		add_vs_entry(c, SP_IPVS_SET_CLUSTER_IP, svc);
		return;
	case SP_IPVS_VS_NODE_PORT:
		if (masq || c->plan->masquerade_all)
			add_vs_entry(c, SP_IPVS_SET_NODE_PORT, svc);
		return;
	case SP_IPVS_VS_EXTERNAL_IP:
		if (masq || c->plan->masquerade_all)
			add_vs_entry(c, SP_IPVS_SET_EXTERNAL_IP, svc);
		return;
	case SP_IPVS_VS_LOAD_BALANCER:
		if (masq || c->plan->masquerade_all)
			add_vs_entry(c, SP_IPVS_SET_LOAD_BALANCER, svc);
		return;
	}
}

static bool is_host_cidr(const struct sp_cidr *cidr)
{
	return cidr->prefix == (cidr->addr.family == AF_INET6 ? 128 : 32);
}

/* hash:ip,port,net takes no /0: a range that allows everyone leaves the
 * virtual server out of the firewall sets altogether. */
static void add_source_range_members(struct lower_ctx *c, const struct sp_plan_svcport *sp,
				     const struct sp_ipvs_service *svc)
{
	char vs[SP_IPVS_ENTRYLEN], ab[SP_ADDRSTRLEN];
	size_t n = 0;

	for (size_t i = 0; i < sp->n_source_ranges; i++)
		if (sp->source_ranges[i].addr.family == svc->addr.family &&
		    sp->source_ranges[i].prefix == 0)
			return;
	sp_ipvs_entry_ipport(&svc->addr, svc->protocol, svc->port, vs);
	for (size_t i = 0; i < sp->n_source_ranges; i++) {
		const struct sp_cidr *r = &sp->source_ranges[i];
		char *e;

		if (r->addr.family != svc->addr.family)
			continue;
		e = is_host_cidr(r)
			    ? sp_xasprintf("%s,%s", vs, sp_addr_format(&r->addr, ab))
			    : sp_xasprintf("%s,%s/%u", vs, sp_addr_format(&r->addr, ab), r->prefix);
		sp_ipvs_set_add(c->st, svc->addr.family, SP_IPVS_SET_LB_SOURCE_CIDR, e);
		free(e);
		n++;
	}
	if (n)
		add_vs_entry(c, SP_IPVS_SET_LB_FW, svc);
}

/* A local endpoint a pod may reach through a Service: (addr, proto, port). */
static void collect_hairpins(struct lower_ctx *c, const struct sp_plan_svcport *sp)
{
	char e[SP_IPVS_ENTRYLEN], ab[SP_ADDRSTRLEN];

	for (size_t i = 0; i < sp->n_endpoints; i++) {
		const struct sp_plan_endpoint *ep = &sp->endpoints[i];
		char *entry;

		if (!ep->local)
			continue;
		entry = sp_xasprintf("%s,%s",
				     sp_ipvs_entry_ipport(&ep->addr, sp->protocol, ep->port, e),
				     sp_addr_format(&ep->addr, ab));
		sp_ipvs_set_add(c->st, ep->addr.family, SP_IPVS_SET_LOOP_BACK, entry);
		free(entry);
	}
}

static struct sp_ipvs_service *add_vs(struct lower_ctx *c, const struct sp_plan_svcport *sp,
				      enum sp_ipvs_vs_kind kind, const struct sp_addr *addr,
				      uint16_t port, const struct sp_plan_ep_set *eps)
{
	const char *sched = sp->ipvs_scheduler		      ? sp->ipvs_scheduler
			    : c->plan->ipvs_default_scheduler ? c->plan->ipvs_default_scheduler
							      : "rr";
	struct sp_ipvs_service *svc = sp_ipvs_add_service(c->st);

	svc->addr = *addr;
	svc->protocol = sp->protocol;
	svc->port = port;
	snprintf(svc->scheduler, sizeof(svc->scheduler), "%s", sched);
	svc->netmask = sp_ipvs_host_netmask(addr->family);
	if (sp->affinity) {
		svc->flags |= SP_IPVS_SVC_F_PERSISTENT;
		svc->timeout =
			sp->affinity_timeout ? sp->affinity_timeout : SP_DEFAULT_AFFINITY_TIMEOUT;
	}
	svc->kind = kind;
	svc->origin = sp_xasprintf("%s (%s)", sp->id, kind_name(kind));
	for (size_t i = 0; i < eps->n; i++) {
		const struct sp_plan_endpoint *ep = &sp->endpoints[eps->idx[i]];
		struct sp_ipvs_dest *d;

		if (ep->addr.family != addr->family)
			continue;
		d = sp_ipvs_add_dest(svc);
		d->addr = ep->addr;
		d->port = ep->port;
		d->weight = SP_IPVS_WEIGHT;
		d->fwd_method = SP_IPVS_FWD_MASQ;
	}
	return svc;
}

static void capture(struct lower_ctx *c, const struct sp_ipvs_service *svc)
{
	struct sp_ipvs_rule r = {.addr = svc->addr, .protocol = svc->protocol, .port = svc->port};

	switch (svc->kind) {
	case SP_IPVS_VS_CLUSTER_IP:
		sp_ipvs_add_link_addr(c->st, &svc->addr);
		return;
	case SP_IPVS_VS_NODE_PORT:
		r.pref = SP_IPVS_MARKER_PREF;
		break;
	case SP_IPVS_VS_EXTERNAL_IP:
	case SP_IPVS_VS_LOAD_BALANCER:
		if (c->plan->ipvs_capture == SP_IPVS_CAPTURE_WHOLE_ADDRESS) {
			sp_ipvs_add_link_addr(c->st, &svc->addr);
			return;
		}
		add_vs_entry(c, SP_IPVS_SET_CAPTURE, svc);
		return;
	}
	sp_ipvs_add_rule(c->st, &r);
}

static void lower_external(struct lower_ctx *c, const struct sp_plan_svcport *sp,
			   enum sp_ipvs_vs_kind kind, const struct sp_addr *addr, uint16_t port)
{
	const struct sp_plan_ep_set *eps = sp_plan_external_eps(sp);
	bool fallback = sp->external_policy_local && eps->n == 0;
	struct sp_ipvs_service *svc;

	if (fallback)
		eps = &sp->cluster;
	svc = add_vs(c, sp, kind, addr, port, eps);
	capture(c, svc);
	if (kind == SP_IPVS_VS_LOAD_BALANCER)
		add_source_range_members(c, sp, svc);
	if (fallback && sp->has_any_endpoints)
		add_vs_entry(c, SP_IPVS_SET_LOCAL_NO_ENDPOINT, svc);
	add_masq_member(c, svc, !sp->external_policy_local || fallback);
}

static void lower_svcport(struct lower_ctx *c, const struct sp_plan_svcport *sp)
{
	if (sp->cluster_ip.family) {
		struct sp_ipvs_service *svc = add_vs(c, sp, SP_IPVS_VS_CLUSTER_IP, &sp->cluster_ip,
						     sp->port, sp_plan_internal_eps(sp));

		capture(c, svc);
		add_masq_member(c, svc, false);
	}
	collect_hairpins(c, sp);
	if (!sp_plan_externally_accessible(sp))
		return;
	if (sp->node_port)
		for (size_t i = 0; i < c->n_nodeport_addrs; i++)
			if (c->nodeport_addrs[i].family == sp->family)
				lower_external(c, sp, SP_IPVS_VS_NODE_PORT, &c->nodeport_addrs[i],
					       sp->node_port);
	for (size_t i = 0; i < sp->n_external_ips; i++)
		lower_external(c, sp, SP_IPVS_VS_EXTERNAL_IP, &sp->external_ips[i], sp->port);
	for (size_t i = 0; i < sp->n_lb_ips; i++)
		lower_external(c, sp, SP_IPVS_VS_LOAD_BALANCER, &sp->lb_ips[i], sp->port);
}

/* Two Service ports claiming one (address, protocol, port): the first one
 * lowered keeps it, as kube-proxy's map keeps one. */
static int drop_conflicts(struct lower_ctx *c)
{
	struct sp_ipvs_state *st = c->st;
	size_t out = 0;
	int ret = 0;

	for (size_t i = 0; i < st->n_services; i++) {
		struct sp_ipvs_service *svc = &st->services[i];

		if (out && sp_ipvs_service_cmp(&st->services[out - 1], svc) == 0) {
			char d[SP_IPVS_DESCLEN];

			sp_diag_error(c->diag,
				      "ipvs: virtual server %s of %s is already used by %s; "
				      "left out",
				      sp_ipvs_service_desc(svc, d), svc->origin,
				      st->services[out - 1].origin);
			free(svc->dests);
			free(svc->origin);
			ret = 1;
			continue;
		}
		if (out != i)
			st->services[out] = *svc;
		out++;
	}
	st->n_services = out;
	return ret;
}

static int addr_qcmp(const void *a, const void *b)
{
	return sp_addr_cmp(a, b);
}

/* The plan's node-port addresses, plus every local address when node ports
 * listen on all of them. */
static void collect_nodeport_addrs(struct lower_ctx *c, const struct sp_addr *local, size_t n_local)
{
	const struct sp_plan *plan = c->plan;
	size_t n = 0, total = plan->n_nodeport_addrs + (plan->nodeport_all_local ? n_local : 0);
	struct sp_addr *v = sp_xcalloc(total ? total : 1, sizeof(*v));

	for (size_t i = 0; i < plan->n_nodeport_addrs; i++)
		v[n++] = plan->nodeport_addrs[i];
	for (size_t i = 0; plan->nodeport_all_local && i < n_local; i++)
		v[n++] = local[i];
	if (n)
		qsort(v, n, sizeof(*v), addr_qcmp);
	c->n_nodeport_addrs = 0;
	for (size_t i = 0; i < n; i++)
		if (!c->n_nodeport_addrs || !sp_addr_equal(&v[c->n_nodeport_addrs - 1], &v[i]))
			v[c->n_nodeport_addrs++] = v[i];
	c->nodeport_addrs = v;
}

int sp_ipvs_lower(const struct sp_plan *plan, struct sp_ipvs_state *st, struct sp_diag *diag)
{
	return sp_ipvs_lower_local(plan, NULL, 0, st, diag);
}

int sp_ipvs_lower_local(const struct sp_plan *plan, const struct sp_addr *local, size_t n_local,
			struct sp_ipvs_state *st, struct sp_diag *diag)
{
	struct lower_ctx c = {.plan = plan, .st = st, .diag = diag};

	c.mark = plan->masquerade_mark ? plan->masquerade_mark : 0x4000;
	collect_nodeport_addrs(&c, local, n_local);
	for (size_t i = plan->n_node_ips; i-- > 0;)
		st->route_src[plan->node_ips[i].family == AF_INET6] = plan->node_ips[i];
	for (size_t i = 0; i < plan->n_svcports; i++)
		st->has_ipv6 |= plan->svcports[i].family == AF_INET6;
	for (size_t i = 0; i < plan->n_svcports; i++)
		lower_svcport(&c, &plan->svcports[i]);
	add_constant_rules(&c, AF_INET);
	if (st->has_ipv6)
		add_constant_rules(&c, AF_INET6);
	free(c.nodeport_addrs);
	sp_ipvs_state_sort(st);
	return drop_conflicts(&c);
}
