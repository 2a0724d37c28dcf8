/* Lowering a plan to kube-proxy's iptables layout, so that an operator who
 * knows kube-proxy reads the same chains:
 *
 *   nat    PREROUTING/OUTPUT -> KUBE-SERVICES: per address a jump to the
 *          service port's chain; its last rule sends local addresses to
 *          KUBE-NODEPORTS.
 *          KUBE-SVC-<h>  cluster-wide endpoints, KUBE-SVL-<h> this node's,
 *          KUBE-EXT-<h>  external traffic (masquerade, or with policy Local
 *                        the in-cluster short-circuit), KUBE-FW-<h> the
 *                        loadBalancerSourceRanges, KUBE-SEP-<h> one endpoint
 *                        (hairpin mark, affinity list, DNAT).
 *          POSTROUTING -> KUBE-POSTROUTING masquerades what KUBE-MARK-MASQ
 *          marked and clears the mark.
 *   filter KUBE-SERVICES / KUBE-EXTERNAL-SERVICES reject (no endpoints) or
 *          drop (no local endpoints), KUBE-PROXY-FIREWALL drops what the
 *          source ranges did not accept, KUBE-NODEPORTS accepts health
 *          checks, KUBE-FORWARD accepts marked and established traffic.
 *
 * Semantics follow kube-proxy's syncProxyRules; names are its hashes. */
#include "svcproxy/ipt.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define CH_SERVICES "KUBE-SERVICES"
#define CH_EXTERNAL "KUBE-EXTERNAL-SERVICES"
#define CH_NODEPORTS "KUBE-NODEPORTS"
#define CH_POSTROUTING "KUBE-POSTROUTING"
#define CH_MARK_MASQ "KUBE-MARK-MASQ"
#define CH_FORWARD "KUBE-FORWARD"
#define CH_FIREWALL "KUBE-PROXY-FIREWALL"

const char *const sp_ipt_kube_owned_names[] = {
	CH_SERVICES,  CH_EXTERNAL, CH_NODEPORTS, CH_POSTROUTING,
	CH_MARK_MASQ, CH_FORWARD,  CH_FIREWALL,	 NULL,
};

const char *const sp_ipt_kube_owned_prefixes[] = {
	"KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-", NULL,
};

struct lower {
	const struct sp_plan *plan;
	int family;
	struct sp_ipt_table *nat;
	struct sp_ipt_table *filter;
	const struct sp_cidr *pod_cidr; /* kube-proxy's local-traffic detector */
	uint32_t mark;
};

/* One service port's names, as kube-proxy spells them. */
struct svcport_names {
	char *spn; /* "ns/name:port" or "ns/name" */
	char *svc, *svl, *ext, *fw;
	char **sep;	/* per endpoint of the svcport */
	char **ep_text; /* "ip:port" */
};

static struct sp_ipt_rule *rule_in(struct sp_ipt_table *t, const char *chain)
{
	return sp_ipt_rule_append(sp_ipt_chain_get(t, chain));
}

static void add_ctstate(struct sp_ipt_rule *r, uint8_t state)
{
	sp_ipt_match_add(r, SP_IPT_M_CONNTRACK)->u.ctstate = state;
}

static void add_addrtype(struct sp_ipt_rule *r, bool src, bool invert)
{
	struct sp_ipt_match *m = sp_ipt_match_add(r, SP_IPT_M_ADDRTYPE);

	if (src)
		m->u.addrtype.src_type = SP_IPT_ADDRTYPE_LOCAL;
	else
		m->u.addrtype.dst_type = SP_IPT_ADDRTYPE_LOCAL;
	m->invert = invert;
}

static void add_jump_rule(struct sp_ipt_table *t, const char *from, bool ct_new,
			  const char *comment, const char *to)
{
	struct sp_ipt_rule *r = rule_in(t, from);

	if (ct_new)
		add_ctstate(r, SP_IPT_CT_NEW);
	sp_ipt_add_comment(r, comment);
	sp_ipt_set_jump(r, to);
}

/* Jumps from the hook chains, in the order kube-proxy's prepending leaves
 * them in. */
static void lower_hooks(struct lower *l)
{
	static const char portals[] = "kubernetes service portals";
	static const char ext_portals[] = "kubernetes externally-visible service portals";
	static const char lb_fw[] = "kubernetes load balancer firewall";

	add_jump_rule(l->filter, "INPUT", true, lb_fw, CH_FIREWALL);
	add_jump_rule(l->filter, "INPUT", false, "kubernetes health check service ports",
		      CH_NODEPORTS);
	add_jump_rule(l->filter, "INPUT", true, ext_portals, CH_EXTERNAL);
	add_jump_rule(l->filter, "FORWARD", true, lb_fw, CH_FIREWALL);
	add_jump_rule(l->filter, "FORWARD", false, "kubernetes forwarding rules", CH_FORWARD);
	add_jump_rule(l->filter, "FORWARD", true, portals, CH_SERVICES);
	add_jump_rule(l->filter, "FORWARD", true, ext_portals, CH_EXTERNAL);
	add_jump_rule(l->filter, "OUTPUT", true, lb_fw, CH_FIREWALL);
	add_jump_rule(l->filter, "OUTPUT", true, portals, CH_SERVICES);
	add_jump_rule(l->nat, "PREROUTING", false, portals, CH_SERVICES);
	add_jump_rule(l->nat, "OUTPUT", false, portals, CH_SERVICES);
	add_jump_rule(l->nat, "POSTROUTING", false, "kubernetes postrouting rules", CH_POSTROUTING);
}

static void lower_fixed_chains(struct lower *l)
{
	struct sp_ipt_rule *r;
	struct sp_ipt_match *m;

	/* Created first, so that the per-service lookups find them at once. */
	sp_ipt_chain_get(l->nat, CH_SERVICES);
	sp_ipt_chain_get(l->nat, CH_NODEPORTS);
	sp_ipt_chain_get(l->filter, CH_SERVICES);
	sp_ipt_chain_get(l->filter, CH_EXTERNAL);
	sp_ipt_chain_get(l->filter, CH_NODEPORTS);
	sp_ipt_chain_get(l->filter, CH_FIREWALL);

	r = rule_in(l->nat, CH_MARK_MASQ);
	r->target.kind = SP_IPT_T_MARK;
	r->target.mark_value = r->target.mark_mask = l->mark;

	r = rule_in(l->nat, CH_POSTROUTING);
	m = sp_ipt_match_add(r, SP_IPT_M_MARK);
	m->invert = true;
	m->u.mark.value = m->u.mark.mask = l->mark;
	sp_ipt_set_verdict(r, SP_IPT_T_RETURN);
	r = rule_in(l->nat, CH_POSTROUTING);
	r->target.kind = SP_IPT_T_MARK; /* --xor-mark: clear it before leaving */
	r->target.mark_value = l->mark;
	r = rule_in(l->nat, CH_POSTROUTING);
	sp_ipt_add_comment(r, "kubernetes service traffic requiring SNAT");
	r->target.kind = SP_IPT_T_MASQUERADE;
	r->target.random_fully = true;

	r = rule_in(l->filter, CH_FORWARD);
	add_ctstate(r, SP_IPT_CT_INVALID);
	sp_ipt_set_verdict(r, SP_IPT_T_DROP);
	r = rule_in(l->filter, CH_FORWARD);
	sp_ipt_add_comment(r, "kubernetes forwarding rules");
	m = sp_ipt_match_add(r, SP_IPT_M_MARK);
	m->u.mark.value = m->u.mark.mask = l->mark;
	sp_ipt_set_verdict(r, SP_IPT_T_ACCEPT);
	r = rule_in(l->filter, CH_FORWARD);
	sp_ipt_add_comment(r, "kubernetes forwarding conntrack rule");
	add_ctstate(r, SP_IPT_CT_RELATED | SP_IPT_CT_ESTABLISHED);
	sp_ipt_set_verdict(r, SP_IPT_T_ACCEPT);
}

static void lower_nodeports_jump(struct lower *l)
{
	static const char comment[] =
		"kubernetes service nodeports; NOTE: this must be the last rule in this chain";
	struct sp_addr loopback;
	struct sp_ipt_rule *r;

	if (l->plan->nodeport_all_local) {
		r = rule_in(l->nat, CH_SERVICES);
		/* Node ports on loopback would need route_localnet (IPv4) or
		 * cannot work (IPv6): not offered, as kube-proxy. */
		sp_addr_parse(l->family == AF_INET6 ? "::1" : "127.0.0.0", &loopback);
		r->dst.addr = loopback;
		r->dst.prefix = l->family == AF_INET6 ? 128 : 8;
		r->dst_invert = true;
		sp_ipt_add_comment(r, comment);
		add_addrtype(r, false, false);
		sp_ipt_set_jump(r, CH_NODEPORTS);
		return;
	}
	for (size_t i = 0; i < l->plan->n_nodeport_addrs; i++) {
		if (l->plan->nodeport_addrs[i].family != l->family)
			continue;
		r = rule_in(l->nat, CH_SERVICES);
		sp_ipt_set_host(&r->dst, &l->plan->nodeport_addrs[i]);
		sp_ipt_add_comment(r, comment);
		sp_ipt_set_jump(r, CH_NODEPORTS);
	}
}

static void names_init(struct svcport_names *n, const struct sp_plan_svcport *sp)
{
	char buf[SP_ADDRSTRLEN];

	n->spn = sp->port_name[0] ? sp_xasprintf("%s/%s:%s", sp->namespace, sp->name, sp->port_name)
				  : sp_xasprintf("%s/%s", sp->namespace, sp->name);
	n->svc = sp_ipt_hashed_chain("KUBE-SVC-", n->spn, sp->protocol, NULL);
	n->svl = sp_ipt_hashed_chain("KUBE-SVL-", n->spn, sp->protocol, NULL);
	n->ext = sp_ipt_hashed_chain("KUBE-EXT-", n->spn, sp->protocol, NULL);
	n->fw = sp_ipt_hashed_chain("KUBE-FW-", n->spn, sp->protocol, NULL);
	n->sep = sp_xcalloc(sp->n_endpoints + 1, sizeof(*n->sep));
	n->ep_text = sp_xcalloc(sp->n_endpoints + 1, sizeof(*n->ep_text));
	for (size_t i = 0; i < sp->n_endpoints; i++) {
		const struct sp_plan_endpoint *ep = &sp->endpoints[i];

		sp_addr_format(&ep->addr, buf);
		n->ep_text[i] = ep->addr.family == AF_INET6 ? sp_xasprintf("[%s]:%u", buf, ep->port)
							    : sp_xasprintf("%s:%u", buf, ep->port);
		n->sep[i] = sp_ipt_hashed_chain("KUBE-SEP-", n->spn, sp->protocol, n->ep_text[i]);
	}
}

static void names_free(struct svcport_names *n, size_t n_endpoints)
{
	for (size_t i = 0; i < n_endpoints; i++) {
		free(n->sep[i]);
		free(n->ep_text[i]);
	}
	free(n->sep);
	free(n->ep_text);
	free(n->spn);
	free(n->svc);
	free(n->svl);
	free(n->ext);
	free(n->fw);
}

/* "-m comment --comment C -m proto -p proto -d addr --dport port" */
static struct sp_ipt_rule *dest_rule(struct sp_ipt_table *t, const char *chain, const char *comment,
				     const struct sp_plan_svcport *sp, const struct sp_addr *addr,
				     uint16_t port)
{
	struct sp_ipt_rule *r = rule_in(t, chain);

	sp_ipt_add_comment(r, comment);
	sp_ipt_add_dport(r, sp->protocol, port);
	if (addr)
		sp_ipt_set_host(&r->dst, addr);
	return r;
}

struct verdict {
	enum sp_ipt_target_kind kind; /* ACCEPT: nothing to filter */
	char *comment;
};

static void filter_rule(struct sp_ipt_table *t, const char *chain, const struct verdict *v,
			const struct sp_plan_svcport *sp, const struct sp_addr *addr, uint16_t port)
{
	sp_ipt_set_verdict(dest_rule(t, chain, v->comment, sp, addr, port), v->kind);
}

/* kube-proxy's writeServiceToEndpointRules: affinity checks first, then a
 * cascade of random draws, 1/n, 1/(n-1), ..., the last one certain. */
static void endpoint_rules(struct sp_ipt_chain *c, const struct sp_plan_svcport *sp,
			   const struct svcport_names *n, const struct sp_plan_ep_set *set)
{
	for (size_t pass = sp->affinity ? 0 : 1; pass < 2; pass++) {
		for (size_t i = 0; i < set->n; i++) {
			size_t ep = set->idx[i];
			struct sp_ipt_rule *r = sp_ipt_rule_append(c);
			char *comment = sp_xasprintf("%s -> %s", n->spn, n->ep_text[ep]);
			struct sp_ipt_match *m;

			sp_ipt_add_comment(r, comment);
			free(comment);
			if (pass == 0) {
				m = sp_ipt_match_add(r, SP_IPT_M_RECENT);
				m->u.recent.seconds = sp->affinity_timeout;
				m->u.recent.reap = true;
				m->u.recent.name = sp_xstrdup(n->sep[ep]);
			} else if (i + 1 < set->n) {
				m = sp_ipt_match_add(r, SP_IPT_M_STATISTIC);
				m->u.probability = sp_ipt_probability((unsigned)(set->n - i));
			}
			sp_ipt_set_jump(r, n->sep[ep]);
		}
	}
}

/* Masquerade of off-cluster clients of the cluster IP (kube-proxy does it so
 * that a static route to the service range through any node works). */
static void cluster_ip_masq_rule(struct lower *l, struct sp_ipt_chain *c,
				 const struct sp_plan_svcport *sp, const struct svcport_names *n)
{
	struct sp_ipt_rule *r;
	char *comment;

	if (!l->plan->masquerade_all && !l->pod_cidr)
		return;
	r = sp_ipt_rule_append(c);
	comment = sp_xasprintf("%s cluster IP", n->spn);
	sp_ipt_add_comment(r, comment);
	free(comment);
	sp_ipt_add_dport(r, sp->protocol, sp->port);
	sp_ipt_set_host(&r->dst, &sp->cluster_ip);
	if (!l->plan->masquerade_all) {
		r->src = *l->pod_cidr;
		r->src_invert = true;
	}
	sp_ipt_set_jump(r, CH_MARK_MASQ);
}

static void ext_chain(struct lower *l, const struct sp_plan_svcport *sp,
		      const struct svcport_names *n, bool has_external)
{
	struct sp_ipt_chain *c = sp_ipt_chain_add(l->nat, n->ext);
	struct sp_ipt_rule *r;
	char *comment;

	if (!sp->external_policy_local) {
		r = sp_ipt_rule_append(c);
		comment = sp_xasprintf("masquerade traffic for %s external destinations", n->spn);
		sp_ipt_add_comment(r, comment);
		free(comment);
		sp_ipt_set_jump(r, CH_MARK_MASQ);
	} else {
		/* Pods and the node itself are not subject to the external
		 * policy: they reach the cluster-wide endpoints, as if they had
		 * gone out to the balancer and back. */
		if (l->pod_cidr) {
			r = sp_ipt_rule_append(c);
			comment = sp_xasprintf("pod traffic for %s external destinations", n->spn);
			sp_ipt_add_comment(r, comment);
			free(comment);
			r->src = *l->pod_cidr;
			sp_ipt_set_jump(r, n->svc);
		}
		r = sp_ipt_rule_append(c);
		comment = sp_xasprintf("masquerade LOCAL traffic for %s external destinations",
				       n->spn);
		sp_ipt_add_comment(r, comment);
		free(comment);
		add_addrtype(r, true, false);
		sp_ipt_set_jump(r, CH_MARK_MASQ);
		r = sp_ipt_rule_append(c);
		comment = sp_xasprintf("route LOCAL traffic for %s external destinations", n->spn);
		sp_ipt_add_comment(r, comment);
		free(comment);
		add_addrtype(r, true, false);
		sp_ipt_set_jump(r, n->svc);
	}
	if (has_external)
		sp_ipt_set_jump(sp_ipt_rule_append(c), sp->external_policy_local ? n->svl : n->svc);
}

static bool node_ip_in(const struct sp_plan *plan, const struct sp_cidr *range)
{
	for (size_t i = 0; i < plan->n_node_ips; i++) {
		if (sp_cidr_contains(range, &plan->node_ips[i]))
			return true;
	}
	return false;
}

static void fw_chain(struct lower *l, const struct sp_plan_svcport *sp,
		     const struct svcport_names *n)
{
	struct sp_ipt_chain *c = sp_ipt_chain_add(l->nat, n->fw);
	char *comment = sp_xasprintf("%s loadbalancer IP", n->spn);
	bool allow_from_node = false;
	struct sp_ipt_rule *r;

	for (size_t i = 0; i < sp->n_source_ranges; i++) {
		r = sp_ipt_rule_append(c);
		r->src = sp->source_ranges[i];
		sp_ipt_add_comment(r, comment);
		sp_ipt_set_jump(r, n->ext);
		allow_from_node |= node_ip_in(l->plan, &sp->source_ranges[i]);
	}
	/* A node reaching a VIP held locally loops back with the VIP as source. */
	for (size_t i = 0; allow_from_node && i < sp->n_lb_ips; i++) {
		r = sp_ipt_rule_append(c);
		sp_ipt_set_host(&r->src, &sp->lb_ips[i]);
		sp_ipt_add_comment(r, comment);
		sp_ipt_set_jump(r, n->ext);
	}
	/* What falls through is not DNATed and KUBE-PROXY-FIREWALL drops it. */
	free(comment);
}

static void sep_chain(struct lower *l, const struct sp_plan_svcport *sp,
		      const struct svcport_names *n, size_t ep)
{
	struct sp_ipt_chain *c = sp_ipt_chain_add(l->nat, n->sep[ep]);
	const struct sp_plan_endpoint *e = &sp->endpoints[ep];
	struct sp_ipt_rule *r;
	struct sp_ipt_match *m;

	/* Hairpin: a pod reaching itself through the service needs SNAT. */
	r = sp_ipt_rule_append(c);
	sp_ipt_add_comment(r, n->spn);
	sp_ipt_set_host(&r->src, &e->addr);
	sp_ipt_set_jump(r, CH_MARK_MASQ);

	r = sp_ipt_rule_append(c);
	sp_ipt_add_comment(r, n->spn);
	if (sp->affinity) {
		m = sp_ipt_match_add(r, SP_IPT_M_RECENT);
		m->u.recent.set = true;
		m->u.recent.name = sp_xstrdup(n->sep[ep]);
	}
	sp_ipt_add_dport(r, sp->protocol, 0);
	r->target.kind = SP_IPT_T_DNAT;
	r->target.to_addr = e->addr;
	r->target.to_port = e->port;
}

static void set_verdicts(const struct sp_plan_svcport *sp, const struct svcport_names *n,
			 bool has_internal, bool has_external, struct verdict *internal,
			 struct verdict *external)
{
	internal->kind = external->kind = SP_IPT_T_ACCEPT;
	internal->comment = external->comment = NULL;
	if (!sp->has_any_endpoints) {
		internal->kind = external->kind = SP_IPT_T_REJECT;
		internal->comment = sp_xasprintf("%s has no endpoints", n->spn);
		external->comment = sp_xasprintf("%s has no endpoints", n->spn);
		return;
	}
	if (!has_internal) {
		internal->kind = SP_IPT_T_DROP;
		internal->comment = sp_xasprintf("%s has no local endpoints", n->spn);
	}
	if (!has_external) {
		external->kind = SP_IPT_T_DROP;
		external->comment = sp_xasprintf("%s has no local endpoints", n->spn);
	}
}

/* What kube-proxy decides once per service port. */
struct svcport_ctx {
	const struct sp_plan_svcport *sp;
	struct svcport_names n;
	bool has_eps;	       /* usable endpoints anywhere */
	bool has_internal;     /* internal traffic has endpoints under its policy */
	bool has_external;     /* external traffic has endpoints under its policy */
	bool uses_fw;	       /* loadBalancerSourceRanges apply */
	struct verdict vi, ve; /* filter verdicts for unserved internal / external traffic */
};

static void capture_cluster_ip(struct lower *l, const struct svcport_ctx *c)
{
	const struct sp_plan_svcport *sp = c->sp;
	char *comment;

	if (!c->has_internal) {
		filter_rule(l->filter, CH_SERVICES, &c->vi, sp, &sp->cluster_ip, sp->port);
		return;
	}
	comment = sp_xasprintf("%s cluster IP", c->n.spn);
	sp_ipt_set_jump(dest_rule(l->nat, CH_SERVICES, comment, sp, &sp->cluster_ip, sp->port),
			sp->internal_policy_local ? c->n.svl : c->n.svc);
	free(comment);
}

static void capture_external_ips(struct lower *l, const struct svcport_ctx *c)
{
	const struct sp_plan_svcport *sp = c->sp;
	char *comment = sp_xasprintf("%s external IP", c->n.spn);

	for (size_t i = 0; i < sp->n_external_ips; i++) {
		if (c->has_eps)
			sp_ipt_set_jump(dest_rule(l->nat, CH_SERVICES, comment, sp,
						  &sp->external_ips[i], sp->port),
					c->n.ext);
		if (!c->has_external)
			filter_rule(l->filter, CH_EXTERNAL, &c->ve, sp, &sp->external_ips[i],
				    sp->port);
	}
	free(comment);
}

static void capture_lb_ips(struct lower *l, const struct svcport_ctx *c)
{
	const struct sp_plan_svcport *sp = c->sp;
	char *comment = sp_xasprintf("%s loadbalancer IP", c->n.spn);
	struct verdict drop = {SP_IPT_T_DROP, NULL};

	drop.comment = sp_xasprintf("%s traffic not accepted by %s", c->n.spn, c->n.fw);
	for (size_t i = 0; i < sp->n_lb_ips; i++) {
		if (c->has_eps)
			sp_ipt_set_jump(dest_rule(l->nat, CH_SERVICES, comment, sp, &sp->lb_ips[i],
						  sp->port),
					c->uses_fw ? c->n.fw : c->n.ext);
		if (c->uses_fw)
			filter_rule(l->filter, CH_FIREWALL, &drop, sp, &sp->lb_ips[i], sp->port);
	}
	for (size_t i = 0; !c->has_external && i < sp->n_lb_ips; i++)
		filter_rule(l->filter, CH_EXTERNAL, &c->ve, sp, &sp->lb_ips[i], sp->port);
	free(drop.comment);
	free(comment);
}

static void capture_node_port(struct lower *l, const struct svcport_ctx *c)
{
	const struct sp_plan_svcport *sp = c->sp;
	struct sp_ipt_rule *r;

	if (!sp->node_port)
		return;
	if (c->has_eps)
		sp_ipt_set_jump(dest_rule(l->nat, CH_NODEPORTS, c->n.spn, sp, NULL, sp->node_port),
				c->n.ext);
	if (c->has_external)
		return;
	r = rule_in(l->filter, CH_EXTERNAL);
	sp_ipt_add_comment(r, c->ve.comment);
	add_addrtype(r, false, false);
	sp_ipt_add_dport(r, sp->protocol, sp->node_port);
	sp_ipt_set_verdict(r, c->ve.kind);
}

static void accept_health_check(struct lower *l, const struct svcport_ctx *c)
{
	struct sp_ipt_rule *r;
	char *comment;

	if (!c->sp->health_check_node_port)
		return;
	r = rule_in(l->filter, CH_NODEPORTS);
	comment = sp_xasprintf("%s health check node port", c->n.spn);
	sp_ipt_add_comment(r, comment);
	free(comment);
	sp_ipt_add_dport(r, IPPROTO_TCP, c->sp->health_check_node_port);
	sp_ipt_set_verdict(r, SP_IPT_T_ACCEPT);
}

/* The service port's own chains, each written whole before the next is
 * added (adding a chain may move the others). */
static void policy_chains(struct lower *l, const struct svcport_ctx *c)
{
	const struct sp_plan_svcport *sp = c->sp;
	bool ext_access = sp->node_port || sp->n_lb_ips || sp->n_external_ips;

	if (c->has_eps && ext_access)
		ext_chain(l, sp, &c->n, c->has_external);
	if (c->uses_fw)
		fw_chain(l, sp, &c->n);
	if (sp->cluster.n) {
		struct sp_ipt_chain *ch = sp_ipt_chain_add(l->nat, c->n.svc);

		if (c->has_internal && !sp->internal_policy_local)
			cluster_ip_masq_rule(l, ch, sp, &c->n);
		endpoint_rules(ch, sp, &c->n, &sp->cluster);
	}
	if (sp->local.n) {
		struct sp_ipt_chain *ch = sp_ipt_chain_add(l->nat, c->n.svl);

		if (c->has_internal && sp->internal_policy_local)
			cluster_ip_masq_rule(l, ch, sp, &c->n);
		endpoint_rules(ch, sp, &c->n, &sp->local);
	}
	for (size_t i = 0; i < sp->n_endpoints; i++)
		sep_chain(l, sp, &c->n, i);
}

static void lower_svcport(struct lower *l, const struct sp_plan_svcport *sp)
{
	struct svcport_ctx c = {.sp = sp, .has_eps = sp->has_any_endpoints};

	c.has_internal = c.has_eps && (!sp->internal_policy_local || sp->local.n);
	c.has_external = c.has_eps && (!sp->external_policy_local || sp->local.n);
	c.uses_fw = c.has_eps && sp->n_lb_ips && sp->n_source_ranges;
	names_init(&c.n, sp);
	set_verdicts(sp, &c.n, c.has_internal, c.has_external, &c.vi, &c.ve);

	capture_cluster_ip(l, &c);
	capture_external_ips(l, &c);
	capture_lb_ips(l, &c);
	capture_node_port(l, &c);
	accept_health_check(l, &c);
	policy_chains(l, &c);

	free(c.vi.comment);
	free(c.ve.comment);
	names_free(&c.n, sp->n_endpoints);
}

void sp_ipt_lower(const struct sp_plan *plan, struct sp_ipt_ruleset *out)
{
	struct lower l = {
		.plan = plan,
		.family = out->family,
		.nat = &out->tables[SP_IPT_NAT],
		.filter = &out->tables[SP_IPT_FILTER],
		.mark = plan->masquerade_mark,
	};

	for (size_t i = 0; i < plan->n_cluster_cidrs; i++) {
		if (plan->cluster_cidrs[i].addr.family == out->family) {
			l.pod_cidr = &plan->cluster_cidrs[i];
			break;
		}
	}
	lower_hooks(&l);
	lower_fixed_chains(&l);
	for (size_t i = 0; i < plan->n_svcports; i++) {
		if (plan->svcports[i].family == out->family)
			lower_svcport(&l, &plan->svcports[i]);
	}
	lower_nodeports_jump(&l);
}
