/* Lower a plan to IPVS mode's kernel objects, with kube-proxy's IPVS
 * semantics: one virtual server per (address, protocol, port) for the
 * ClusterIP, each node-port address, each externalIP and each LB ingress IP;
 * real servers in masquerade mode with weight 1; ClientIP affinity as
 * persistence. ClusterIPs go on kube-ipvs0; externalIPs and LB IPs are
 * captured per port with a policy rule (default) or bound whole to
 * kube-ipvs0 (kube-proxy's way). Pure: no syscalls. */
#include "svcproxy/ipvs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct lower_ctx {
	const struct sp_plan *plan;
	struct sp_ipvs_state *st;
	struct sp_diag *diag;
	char mark[32]; /* "0x4000/0x4000" */
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

const char *const sp_ipvs_nat_chains[] = {"KUBE-SERVICES", "KUBE-POSTROUTING", "KUBE-MARK-MASQ",
					  NULL};
const char *const sp_ipvs_filter_chains[] = {"KUBE-IPVS-FIREWALL", NULL};

static void add_iptrule(struct lower_ctx *c, int family, const char *table, const char *chain,
			const char *fmt, ...) SP_PRINTF(5, 6);

static void add_iptrule(struct lower_ctx *c, int family, const char *table, const char *chain,
			const char *fmt, ...)
{
	struct sp_ipvs_state *st = c->st;
	struct sp_ipvs_iptrule *r =
		sp_array_push(&st->iptrules, &st->n_iptrules, &st->cap_iptrules, sizeof(*r));
	struct sp_buf b;
	va_list ap;

	sp_buf_init(&b);
	va_start(ap, fmt);
	sp_buf_vaddf(&b, fmt, ap);
	va_end(ap);
	r->family = family;
	r->table = table;
	r->chain = sp_xstrdup(chain);
	r->spec = sp_buf_steal(&b);
}

/* "-d 10.0.0.1/32 -p tcp -m tcp --dport 80", as iptables-save prints it. */
static void match_vs(const struct sp_ipvs_service *svc, char *buf, size_t len)
{
	char ab[SP_ADDRSTRLEN];
	const char *p = sp_proto_name_lower(svc->protocol);

	snprintf(buf, len, "-d %s/%u -p %s -m %s --dport %u", sp_addr_format(&svc->addr, ab),
		 svc->addr.family == AF_INET6 ? 128 : 32, p, p, svc->port);
}

static const struct sp_cidr *first_cluster_cidr(const struct sp_plan *plan, int family)
{
	for (size_t i = 0; i < plan->n_cluster_cidrs; i++)
		if (plan->cluster_cidrs[i].addr.family == family)
			return &plan->cluster_cidrs[i];
	return NULL;
}

static void add_static_rules(struct lower_ctx *c, int family)
{
	add_iptrule(c, family, "nat", "PREROUTING",
		    "-m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES");
	add_iptrule(c, family, "nat", "OUTPUT",
		    "-m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES");
	add_iptrule(c, family, "nat", "POSTROUTING",
		    "-m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING");
	add_iptrule(c, family, "nat", "KUBE-MARK-MASQ", "-j MARK --set-xmark %s", c->mark);
	add_iptrule(c, family, "filter", "INPUT", "-j KUBE-IPVS-FIREWALL");
}

static void add_masquerade_tail(struct lower_ctx *c, int family)
{
	uint32_t m = c->plan->masquerade_mark;

	add_iptrule(c, family, "nat", "KUBE-POSTROUTING", "-m mark ! --mark %s -j RETURN", c->mark);
	add_iptrule(c, family, "nat", "KUBE-POSTROUTING", "-j MARK --set-xmark 0x%x/0x0", m);
	add_iptrule(c, family, "nat", "KUBE-POSTROUTING",
		    "-m comment --comment \"kubernetes service traffic requiring SNAT\" -j "
		    "MASQUERADE");
}

/* Masquerade: ClusterIP traffic from outside the cluster CIDR (or all of it
 * with --masquerade-all), external traffic under Cluster policy, and the
 * in-cluster fallback of a Local service with no local endpoint. */
static void add_masq_rule(struct lower_ctx *c, const struct sp_ipvs_service *svc, bool masq)
{
	char m[128];
	char cb[SP_CIDRSTRLEN];

	match_vs(svc, m, sizeof(m));
	if (svc->kind == SP_IPVS_VS_CLUSTER_IP && !c->plan->masquerade_all) {
		const struct sp_cidr *cidr = first_cluster_cidr(c->plan, svc->addr.family);

		if (cidr)
			add_iptrule(c, svc->addr.family, "nat", "KUBE-SERVICES",
				    "! -s %s %s -j KUBE-MARK-MASQ", sp_cidr_format(cidr, cb), m);
		return;
	}
	if (masq || c->plan->masquerade_all)
		add_iptrule(c, svc->addr.family, "nat", "KUBE-SERVICES", "%s -j KUBE-MARK-MASQ", m);
}

static void add_source_range_rules(struct lower_ctx *c, const struct sp_plan_svcport *sp,
				   const struct sp_ipvs_service *svc)
{
	char m[128];
	char cb[SP_CIDRSTRLEN];
	size_t n = 0;

	match_vs(svc, m, sizeof(m));
	for (size_t i = 0; i < sp->n_source_ranges; i++) {
		if (sp->source_ranges[i].addr.family != svc->addr.family)
			continue;
		add_iptrule(c, svc->addr.family, "filter", "KUBE-IPVS-FIREWALL",
			    "-s %s %s -j RETURN", sp_cidr_format(&sp->source_ranges[i], cb), m);
		n++;
	}
	if (n)
		add_iptrule(c, svc->addr.family, "filter", "KUBE-IPVS-FIREWALL", "%s -j DROP", m);
}

/* Local policy, no local endpoint: the virtual server serves in-cluster
 * clients from the cluster-wide endpoints; everyone else is dropped, as the
 * node has nothing local to offer them. */
static void add_local_drop_rules(struct lower_ctx *c, const struct sp_ipvs_service *svc)
{
	char m[128];
	char cb[SP_CIDRSTRLEN];
	int family = svc->addr.family;

	match_vs(svc, m, sizeof(m));
	for (size_t i = 0; i < c->plan->n_cluster_cidrs; i++) {
		if (c->plan->cluster_cidrs[i].addr.family != family)
			continue;
		add_iptrule(c, family, "filter", "KUBE-IPVS-FIREWALL", "-s %s %s -j RETURN",
			    sp_cidr_format(&c->plan->cluster_cidrs[i], cb), m);
	}
	add_iptrule(c, family, "filter", "KUBE-IPVS-FIREWALL",
		    "%s -m addrtype --src-type LOCAL -j RETURN", m);
	add_iptrule(c, family, "filter", "KUBE-IPVS-FIREWALL", "%s -j DROP", m);
}

static void add_hairpin_rules(struct lower_ctx *c, const struct sp_plan_svcport *sp)
{
	for (size_t i = 0; i < sp->n_endpoints; i++) {
		const struct sp_plan_endpoint *ep = &sp->endpoints[i];
		const char *p = sp_proto_name_lower(sp->protocol);
		unsigned plen = ep->addr.family == AF_INET6 ? 128 : 32;
		char ab[SP_ADDRSTRLEN];

		if (!ep->local)
			continue;
		sp_addr_format(&ep->addr, ab);
		add_iptrule(c, ep->addr.family, "nat", "KUBE-POSTROUTING",
			    "-s %s/%u -d %s/%u -p %s -m %s --dport %u -j MASQUERADE", ab, plen, ab,
			    plen, p, p, ep->port);
	}
}

static struct sp_ipvs_service *add_vs(struct lower_ctx *c, const struct sp_plan_svcport *sp,
				      enum sp_ipvs_vs_kind kind, const struct sp_addr *addr,
				      uint16_t port, const struct sp_plan_ep_set *eps)
{
	const char *sched = sp->ipvs_scheduler ? sp->ipvs_scheduler
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
		svc->timeout = sp->affinity_timeout ? sp->affinity_timeout
						    : SP_DEFAULT_AFFINITY_TIMEOUT;
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
		r.pref = SP_IPVS_CAPTURE_PREF;
		break;
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
		add_source_range_rules(c, sp, svc);
	if (fallback && sp->has_any_endpoints)
		add_local_drop_rules(c, svc);
	add_masq_rule(c, svc, !sp->external_policy_local || fallback);
}

static void lower_svcport(struct lower_ctx *c, const struct sp_plan_svcport *sp)
{
	const struct sp_plan *plan = c->plan;

	if (sp->cluster_ip.family) {
		struct sp_ipvs_service *svc = add_vs(c, sp, SP_IPVS_VS_CLUSTER_IP, &sp->cluster_ip,
						     sp->port, sp_plan_internal_eps(sp));

		capture(c, svc);
		add_masq_rule(c, svc, false);
	}
	add_hairpin_rules(c, sp);
	if (!sp_plan_externally_accessible(sp))
		return;
	if (sp->node_port)
		for (size_t i = 0; i < plan->n_nodeport_addrs; i++)
			if (plan->nodeport_addrs[i].family == sp->family)
				lower_external(c, sp, SP_IPVS_VS_NODE_PORT,
					       &plan->nodeport_addrs[i], sp->node_port);
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

int sp_ipvs_lower(const struct sp_plan *plan, struct sp_ipvs_state *st, struct sp_diag *diag)
{
	struct lower_ctx c = {.plan = plan, .st = st, .diag = diag};
	uint32_t mark = plan->masquerade_mark ? plan->masquerade_mark : 0x4000;
	bool family_used[2] = {false, false};

	snprintf(c.mark, sizeof(c.mark), "0x%x/0x%x", mark, mark);
	for (size_t i = 0; i < plan->n_svcports; i++)
		family_used[plan->svcports[i].family == AF_INET6] = true;
	for (int f = 0; f < 2; f++)
		if (family_used[f] || f == 0)
			add_static_rules(&c, f ? AF_INET6 : AF_INET);
	for (size_t i = 0; i < plan->n_svcports; i++)
		lower_svcport(&c, &plan->svcports[i]);
	for (int f = 0; f < 2; f++)
		if (family_used[f] || f == 0)
			add_masquerade_tail(&c, f ? AF_INET6 : AF_INET);
	sp_ipvs_state_sort(st);
	return drop_conflicts(&c);
}
