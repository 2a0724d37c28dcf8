/* Lowering of the plan to the nftables IR (see docs/nftables-layout.md).
 *
 * Dispatch is kube-proxy's: one verdict map from (address, protocol, port)
 * and one from (protocol, node port) to a chain per Service port. The
 * endpoint is then map data ("pickmap"): one endpoint map per kind and
 * transport protocol, keyed by (frontend address . port . slot) or (node
 * port . slot), read by a few shared chains `pick-<map>-<n>` that draw the
 * slot with `numgen random mod n`. An endpoint coming or going is an element
 * change in a map of plain data, which the kernel commits without
 * validating the table; the Service chain changes only when its endpoint
 * count does. Ports with ClientIP affinity keep cascading `numgen` rules
 * with an immediate dnat (their rules update the affinity map). Sets stay a
 * fixed handful per table, plus one dynamic map per affinity port: the
 * kernel's commit cost grows with the number of sets and of rules bound to
 * one set. */
#include "svcproxy/nft.h"

#include <linux/netfilter.h>
#include <stdlib.h>
#include <string.h>

#define FILTER_PRIO (-110) /* dstnat - 10: before DNAT rewrites the address */
#define DSTNAT_PRIO (-100)
#define SRCNAT_PRIO 100

#define SET_SERVICE_IPS "service-ips"
#define SET_SERVICE_NODEPORTS "service-nodeports"
#define SET_NOEP_SERVICES "no-endpoint-services"
#define SET_NOEP_NODEPORTS "no-endpoint-nodeports"
#define SET_FIREWALL_IPS "firewall-ips"
#define SET_HAIRPIN "hairpin-endpoints"

#define CHAIN_SERVICES "services"
#define CHAIN_MASQUERADING "masquerading"
#define CHAIN_MARK_MASQ "mark-for-masquerade"
#define CHAIN_MASQ_OFF_CLUSTER "masquerade-off-cluster"
#define CHAIN_REJECT "reject-chain"

struct lower_ctx {
	const struct sp_plan *plan;
	struct sp_nft_table *t;
	int family;
	bool masq_off_cluster; /* cluster CIDRs of this family exist */
	struct sp_diag *diag;
};

/* The maps every table has, first in its set array (enum sp_nft_fixed_set).
 * Affinity maps are appended later, which may move the array: hold indexes,
 * not pointers. */
#define FS_SERVICE_IPS SP_NFT_FS_SERVICE_IPS
#define FS_SERVICE_NODEPORTS SP_NFT_FS_SERVICE_NODEPORTS
#define FS_NOEP_SERVICES SP_NFT_FS_NOEP_SERVICES
#define FS_NOEP_NODEPORTS SP_NFT_FS_NOEP_NODEPORTS
#define FS_FIREWALL_IPS SP_NFT_FS_FIREWALL_IPS
#define FS_HAIRPIN SP_NFT_FS_HAIRPIN

static struct sp_nft_set *fixed(struct lower_ctx *x, enum sp_nft_fixed_set which)
{
	return &x->t->sets[which];
}

static void add_l4proto(struct sp_nft_rule *r, uint8_t proto)
{
	sp_nft_stmt_add(r, SP_NFT_MATCH_L4PROTO)->value = proto;
}

static void add_cidr(struct sp_nft_rule *r, bool source, bool neg, const struct sp_cidr *c)
{
	struct sp_nft_stmt *s = sp_nft_stmt_add(r, SP_NFT_MATCH_ADDR);

	s->source = source;
	s->neg = neg;
	s->cidr = *c;
}

static void add_host(struct sp_nft_rule *r, bool source, const struct sp_addr *a)
{
	struct sp_cidr c = {.addr = *a, .prefix = (unsigned)sp_addr_len(a) * 8};

	add_cidr(r, source, false, &c);
}

static void add_dport(struct sp_nft_rule *r, uint16_t port)
{
	sp_nft_stmt_add(r, SP_NFT_MATCH_DPORT)->port = port;
}

static void add_verdict(struct sp_nft_rule *r, int verdict, const char *chain)
{
	struct sp_nft_stmt *s = sp_nft_stmt_add(r, SP_NFT_VERDICT);

	s->verdict = verdict;
	if (chain)
		s->chain = sp_xstrdup(chain);
}

static void add_vmap(struct sp_nft_rule *r, enum sp_nft_key key, const char *set)
{
	struct sp_nft_stmt *s = sp_nft_stmt_add(r, SP_NFT_VMAP);

	s->key = key;
	s->set = sp_xstrdup(set);
}

static void add_fib_local(struct sp_nft_rule *r, bool source)
{
	sp_nft_stmt_add(r, SP_NFT_MATCH_FIB_LOCAL)->source = source;
}

static struct sp_nft_chain *add_base(struct sp_nft_table *t, const char *name, const char *type,
				     unsigned hook, int prio)
{
	struct sp_nft_chain *c = sp_nft_chain_add(t, name);

	c->base = true;
	c->type = type;
	c->hook = hook;
	c->prio = prio;
	return c;
}

static void add_elem(struct sp_nft_set *s, const struct sp_addr *addr, uint8_t proto, uint16_t port,
		     int verdict, const char *chain)
{
	struct sp_nft_elem *e = sp_nft_elem_add(s);

	if (addr)
		e->addr = *addr;
	e->proto = proto;
	e->port = port;
	e->verdict = verdict;
	if (chain)
		e->chain = sp_xstrdup(chain);
}

static void loopback_cidr(int family, struct sp_cidr *c)
{
	sp_cidr_parse(family == AF_INET6 ? "::1/128" : "127.0.0.0/8", c);
}

/* Node ports are matched on any local address but loopback (kube-proxy's
 * rule), or on the --nodeport-addresses of this family. One rule per address
 * in the second case: a handful of bindings instead of another set. */
static void add_nodeport_dispatch(struct lower_ctx *x, struct sp_nft_chain *c, bool ct_new,
				  const char *set)
{
	const struct sp_plan *p = x->plan;

	if (p->nodeport_all_local) {
		struct sp_nft_rule *r = sp_nft_rule_add(c);
		struct sp_cidr lo;

		if (ct_new)
			sp_nft_stmt_add(r, SP_NFT_MATCH_CT_NEW);
		add_fib_local(r, false);
		loopback_cidr(x->family, &lo);
		add_cidr(r, false, true, &lo);
		add_vmap(r, SP_NFT_KEY_PROTO_PORT, set);
		return;
	}
	for (size_t i = 0; i < p->n_nodeport_addrs; i++) {
		struct sp_nft_rule *r;

		if (p->nodeport_addrs[i].family != x->family)
			continue;
		r = sp_nft_rule_add(c);
		if (ct_new)
			sp_nft_stmt_add(r, SP_NFT_MATCH_CT_NEW);
		add_host(r, false, &p->nodeport_addrs[i]);
		add_vmap(r, SP_NFT_KEY_PROTO_PORT, set);
	}
}

static void add_ct_new_vmap(struct sp_nft_chain *c, enum sp_nft_key key, const char *set)
{
	struct sp_nft_rule *r = sp_nft_rule_add(c);

	sp_nft_stmt_add(r, SP_NFT_MATCH_CT_NEW);
	add_vmap(r, key, set);
}

static int addr_ptr_cmp(const void *a, const void *b)
{
	return sp_addr_cmp(a, b);
}

/* A pod that reaches itself through its Service must be masqueraded, or its
 * reply would bypass the DNAT. After DNAT the source and destination are the
 * same local endpoint: one set of (endpoint . endpoint) pairs, so that an
 * endpoint coming or going is one element, not a rewritten chain. */
static void add_hairpin_elems(struct lower_ctx *x, struct sp_nft_set *set)
{
	struct sp_addr *addrs = NULL;
	size_t n = 0, cap = 0, kept = 0;

	for (size_t i = 0; i < x->plan->n_svcports; i++) {
		const struct sp_plan_svcport *sp = &x->plan->svcports[i];

		if (sp->family != x->family)
			continue;
		for (size_t j = 0; j < sp->n_endpoints; j++)
			if (sp->endpoints[j].local)
				*(struct sp_addr *)sp_array_push(&addrs, &n, &cap, sizeof(*addrs)) =
					sp->endpoints[j].addr;
	}
	if (n)
		qsort(addrs, n, sizeof(*addrs), addr_ptr_cmp);
	for (size_t i = 0; i < n; i++) {
		if (kept && sp_addr_equal(&addrs[kept - 1], &addrs[i]))
			continue;
		addrs[kept++] = addrs[i];
		add_elem(set, &addrs[i], 0, 0, 0, NULL);
	}
	free(addrs);
}

static const uint8_t epmap_protos[] = {IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP};

static char *epmap_name(int kind, uint8_t proto)
{
	static const char *const prefix[] = {
		[SP_NFT_EPMAP_ADDR] = "endpoints",
		[SP_NFT_EPMAP_ADDR_LOCAL] = "local-endpoints",
		[SP_NFT_EPMAP_NODEPORT] = "nodeport-endpoints",
		[SP_NFT_EPMAP_NODEPORT_LOCAL] = "local-nodeport-endpoints",
	};

	return sp_xasprintf("%s-%s", prefix[kind], sp_proto_name_lower(proto));
}

/* The shared chain that picks one of n endpoints from an endpoint map:
 * "pick-<map>-<n>". */
static char *pick_chain_name(int kind, uint8_t proto, size_t n)
{
	char *map = epmap_name(kind, proto);
	char *name = sp_xasprintf("pick-%s-%zu", map, n);

	free(map);
	return name;
}

static void add_fixed_sets(struct sp_nft_table *t)
{
	/* In the order of enum sp_nft_fixed_set. */
	sp_nft_set_add(t, SET_SERVICE_IPS, SP_NFT_KEY_DADDR_PROTO_PORT);
	sp_nft_set_add(t, SET_SERVICE_NODEPORTS, SP_NFT_KEY_PROTO_PORT);
	sp_nft_set_add(t, SET_NOEP_SERVICES, SP_NFT_KEY_DADDR_PROTO_PORT);
	sp_nft_set_add(t, SET_NOEP_NODEPORTS, SP_NFT_KEY_PROTO_PORT);
	sp_nft_set_add(t, SET_FIREWALL_IPS, SP_NFT_KEY_DADDR_PROTO_PORT);
	sp_nft_set_add(t, SET_HAIRPIN, SP_NFT_KEY_SADDR_DADDR)->plain = true;
	for (int k = 0; k < SP_NFT_EPMAP_COUNT; k++) {
		for (size_t p = 0; p < SP_ARRAY_SIZE(epmap_protos); p++) {
			bool by_addr = k == SP_NFT_EPMAP_ADDR || k == SP_NFT_EPMAP_ADDR_LOCAL;
			char *name = epmap_name(k, epmap_protos[p]);
			struct sp_nft_set *s = sp_nft_set_add(t, name,
							      by_addr ? SP_NFT_KEY_DADDR_PORT_SLOT
								      : SP_NFT_KEY_PORT_SLOT);

			s->proto = epmap_protos[p];
			free(name);
		}
	}
}

static bool has_cluster_cidr(const struct sp_plan *p, int family)
{
	for (size_t i = 0; i < p->n_cluster_cidrs; i++)
		if (p->cluster_cidrs[i].addr.family == family)
			return true;
	return false;
}

static void build_infrastructure(struct lower_ctx *x)
{
	struct sp_nft_table *t = x->t;
	const struct sp_plan *p = x->plan;
	struct sp_nft_chain *c;
	struct sp_nft_rule *r;
	struct sp_nft_stmt *s;

	add_fixed_sets(t);

	/* Filtering happens before DNAT, on the Service address itself. */
	c = add_base(t, "filter-prerouting", "filter", NF_INET_PRE_ROUTING, FILTER_PRIO);
	add_ct_new_vmap(c, SP_NFT_KEY_DADDR_PROTO_PORT, SET_FIREWALL_IPS);
	c = add_base(t, "filter-input", "filter", NF_INET_LOCAL_IN, FILTER_PRIO);
	add_ct_new_vmap(c, SP_NFT_KEY_DADDR_PROTO_PORT, SET_NOEP_SERVICES);
	add_nodeport_dispatch(x, c, true, SET_NOEP_NODEPORTS);
	c = add_base(t, "filter-forward", "filter", NF_INET_FORWARD, FILTER_PRIO);
	add_ct_new_vmap(c, SP_NFT_KEY_DADDR_PROTO_PORT, SET_NOEP_SERVICES);
	c = add_base(t, "filter-output", "filter", NF_INET_LOCAL_OUT, FILTER_PRIO);
	add_ct_new_vmap(c, SP_NFT_KEY_DADDR_PROTO_PORT, SET_FIREWALL_IPS);
	add_ct_new_vmap(c, SP_NFT_KEY_DADDR_PROTO_PORT, SET_NOEP_SERVICES);
	add_nodeport_dispatch(x, c, true, SET_NOEP_NODEPORTS);

	c = add_base(t, "nat-prerouting", "nat", NF_INET_PRE_ROUTING, DSTNAT_PRIO);
	add_verdict(sp_nft_rule_add(c), SP_NFT_JUMP, CHAIN_SERVICES);
	c = add_base(t, "nat-output", "nat", NF_INET_LOCAL_OUT, DSTNAT_PRIO);
	add_verdict(sp_nft_rule_add(c), SP_NFT_JUMP, CHAIN_SERVICES);
	c = add_base(t, "nat-postrouting", "nat", NF_INET_POST_ROUTING, SRCNAT_PRIO);
	add_verdict(sp_nft_rule_add(c), SP_NFT_JUMP, CHAIN_MASQUERADING);

	c = sp_nft_chain_add(t, CHAIN_SERVICES);
	r = sp_nft_rule_add(c);
	add_vmap(r, SP_NFT_KEY_DADDR_PROTO_PORT, SET_SERVICE_IPS);
	add_nodeport_dispatch(x, c, false, SET_SERVICE_NODEPORTS);

	c = sp_nft_chain_add(t, CHAIN_MASQUERADING);
	add_hairpin_elems(x, fixed(x, FS_HAIRPIN));
	r = sp_nft_rule_add(c);
	s = sp_nft_stmt_add(r, SP_NFT_MATCH_SET);
	s->key = SP_NFT_KEY_SADDR_DADDR;
	s->set = sp_xstrdup(SET_HAIRPIN);
	add_verdict(r, SP_NFT_JUMP, CHAIN_MARK_MASQ);
	r = sp_nft_rule_add(c);
	sp_nft_stmt_add(r, SP_NFT_MATCH_MARK_CLEAR)->value = p->masquerade_mark;
	add_verdict(r, SP_NFT_RETURN, NULL);
	r = sp_nft_rule_add(c);
	sp_nft_stmt_add(r, SP_NFT_MARK_XOR)->value = p->masquerade_mark;
	r = sp_nft_rule_add(c);
	sp_nft_stmt_add(r, SP_NFT_MASQUERADE);

	c = sp_nft_chain_add(t, CHAIN_MARK_MASQ);
	s = sp_nft_stmt_add(sp_nft_rule_add(c), SP_NFT_MARK_OR);
	s->value = p->masquerade_mark;

	x->masq_off_cluster = has_cluster_cidr(p, x->family);
	if (x->masq_off_cluster && !p->masquerade_all) {
		c = sp_nft_chain_add(t, CHAIN_MASQ_OFF_CLUSTER);
		for (size_t i = 0; i < p->n_cluster_cidrs; i++) {
			if (p->cluster_cidrs[i].addr.family != x->family)
				continue;
			r = sp_nft_rule_add(c);
			add_cidr(r, true, false, &p->cluster_cidrs[i]);
			add_verdict(r, SP_NFT_RETURN, NULL);
		}
		add_verdict(sp_nft_rule_add(c), SP_NFT_GOTO, CHAIN_MARK_MASQ);
	}

	c = sp_nft_chain_add(t, CHAIN_REJECT);
	sp_nft_stmt_add(sp_nft_rule_add(c), SP_NFT_REJECT);
}

/* "ns/name/tcp/http": readable, unique per Service port and family (the
 * table is per family), and within nft's identifier alphabet. */
static char *svcport_tag(const struct sp_plan_svcport *sp)
{
	if (sp->port_name && *sp->port_name)
		return sp_xasprintf("%s/%s/%s/%s", sp->namespace, sp->name,
				    sp_proto_name_lower(sp->protocol), sp->port_name);
	return sp_xasprintf("%s/%s/%s/%u", sp->namespace, sp->name,
			    sp_proto_name_lower(sp->protocol), sp->port);
}

struct svc_names {
	char *cluster, *local, *external, *nodeport, *firewall, *affinity;
};

static void svc_names_free(struct svc_names *n)
{
	free(n->cluster);
	free(n->local);
	free(n->external);
	free(n->nodeport);
	free(n->firewall);
	free(n->affinity);
}

/* Affinity remembers the client's endpoint address; the port comes from the
 * lookup rule, so every endpoint must listen on the same port. */
static bool affinity_usable(struct lower_ctx *x, const struct sp_plan_svcport *sp)
{
	if (!sp->affinity)
		return false;
	for (size_t i = 1; i < sp->n_endpoints; i++) {
		if (sp->endpoints[i].port != sp->endpoints[0].port) {
			if (x->diag)
				sp_diag_warn(x->diag,
					     "nftables: Service %s/%s port %s: endpoints listen on "
					     "different ports; session affinity is not programmed",
					     sp->namespace, sp->name,
					     *sp->port_name ? sp->port_name : "(unnamed)");
			return false;
		}
	}
	return true;
}

/* ClusterIP traffic from outside the cluster (or all of it with
 * --masquerade-all) is masqueraded, as kube-proxy does. */
static void add_cluster_ip_masq(struct lower_ctx *x, const struct sp_plan_svcport *sp,
				struct sp_nft_chain *c)
{
	struct sp_nft_rule *r;

	if (!x->plan->masquerade_all && !x->masq_off_cluster)
		return;
	r = sp_nft_rule_add(c);
	add_host(r, false, &sp->cluster_ip);
	add_l4proto(r, sp->protocol);
	add_dport(r, sp->port);
	add_verdict(r, SP_NFT_JUMP,
		    x->plan->masquerade_all ? CHAIN_MARK_MASQ : CHAIN_MASQ_OFF_CLUSTER);
}

/* Endpoint i of n is taken with probability 1/(n-i) among the remaining
 * ones, which makes every endpoint equally likely with independent draws. */
static void add_endpoint_choice(const struct sp_plan_svcport *sp, const struct sp_plan_ep_set *eps,
				const char *affinity, struct sp_nft_chain *c)
{
	struct sp_nft_rule *r;
	struct sp_nft_stmt *s;

	if (affinity) {
		r = sp_nft_rule_add(c);
		add_l4proto(r, sp->protocol);
		s = sp_nft_stmt_add(r, SP_NFT_DNAT_MAP);
		s->set = sp_xstrdup(affinity);
		s->port = sp->endpoints[eps->idx[0]].port;
	}
	for (size_t i = 0; i < eps->n; i++) {
		const struct sp_plan_endpoint *ep = &sp->endpoints[eps->idx[i]];

		r = sp_nft_rule_add(c);
		add_l4proto(r, sp->protocol);
		if (eps->n - i > 1)
			sp_nft_stmt_add(r, SP_NFT_MATCH_NUMGEN)->value = (uint32_t)(eps->n - i);
		if (affinity) {
			s = sp_nft_stmt_add(r, SP_NFT_AFFINITY_UPDATE);
			s->set = sp_xstrdup(affinity);
			s->addr = ep->addr;
		}
		s = sp_nft_stmt_add(r, SP_NFT_DNAT);
		s->addr = ep->addr;
		s->port = ep->port;
	}
}

/* External traffic towards the chains (or pick chains) of the cluster-wide
 * and of this node's endpoints. */
static void add_external_chain(struct lower_ctx *x, const struct sp_plan_svcport *sp,
			       const char *name, const char *to_cluster, const char *to_local)
{
	struct sp_nft_chain *c = sp_nft_chain_add(x->t, name);
	struct sp_nft_rule *r;

	if (!sp->external_policy_local) {
		if (!to_cluster) {
			add_verdict(sp_nft_rule_add(c), SP_NFT_DROP, NULL);
			return;
		}
		add_verdict(sp_nft_rule_add(c), SP_NFT_JUMP, CHAIN_MARK_MASQ);
		add_verdict(sp_nft_rule_add(c), SP_NFT_GOTO, to_cluster);
		return;
	}
	/* Local: in-cluster clients short-circuit to every endpoint (pods
	 * keep their address, the node itself is masqueraded); the others
	 * reach only this node's endpoints and keep their address. */
	for (size_t i = 0; to_cluster && i < x->plan->n_cluster_cidrs; i++) {
		if (x->plan->cluster_cidrs[i].addr.family != x->family)
			continue;
		r = sp_nft_rule_add(c);
		add_cidr(r, true, false, &x->plan->cluster_cidrs[i]);
		add_verdict(r, SP_NFT_GOTO, to_cluster);
	}
	if (to_cluster) {
		r = sp_nft_rule_add(c);
		add_fib_local(r, true);
		add_verdict(r, SP_NFT_JUMP, CHAIN_MARK_MASQ);
		r = sp_nft_rule_add(c);
		add_fib_local(r, true);
		add_verdict(r, SP_NFT_GOTO, to_cluster);
	}
	if (to_local)
		add_verdict(sp_nft_rule_add(c), SP_NFT_GOTO, to_local);
	else
		add_verdict(sp_nft_rule_add(c), SP_NFT_DROP, NULL);
}

static void add_firewall_chain(struct lower_ctx *x, const struct sp_plan_svcport *sp,
			       const char *name)
{
	struct sp_nft_chain *c = sp_nft_chain_add(x->t, name);

	for (size_t i = 0; i < sp->n_source_ranges; i++) {
		struct sp_nft_rule *r;

		if (sp->source_ranges[i].addr.family != x->family)
			continue;
		r = sp_nft_rule_add(c);
		add_cidr(r, true, false, &sp->source_ranges[i]);
		add_verdict(r, SP_NFT_RETURN, NULL);
	}
	add_verdict(sp_nft_rule_add(c), SP_NFT_DROP, NULL);
}

static void add_external_addr_elems(struct lower_ctx *x, const struct sp_plan_svcport *sp,
				    bool no_endpoints, int verdict, const char *chain)
{
	struct sp_nft_set *set = fixed(x, no_endpoints ? FS_NOEP_SERVICES : FS_SERVICE_IPS);

	for (size_t i = 0; i < sp->n_external_ips; i++)
		add_elem(set, &sp->external_ips[i], sp->protocol, sp->port, verdict, chain);
	for (size_t i = 0; i < sp->n_lb_ips; i++)
		add_elem(set, &sp->lb_ips[i], sp->protocol, sp->port, verdict, chain);
}

static void add_nodeport_elem(struct lower_ctx *x, const struct sp_plan_svcport *sp,
			      bool no_endpoints, int verdict, const char *chain)
{
	if (sp->node_port)
		add_elem(fixed(x, no_endpoints ? FS_NOEP_NODEPORTS : FS_SERVICE_NODEPORTS), NULL,
			 sp->protocol, sp->node_port, verdict, chain);
}

/* Affinity ports keep the cascade (their endpoint choice must update the
 * affinity map); every other port picks its endpoint from an endpoint map. */
static bool uses_pickmap(const struct sp_plan_svcport *sp)
{
	return !sp->affinity && sp_nft_epmap_index(SP_NFT_EPMAP_ADDR, sp->protocol) >= 0;
}

/* How many endpoints each endpoint map holds for sp (0: the map is not
 * used). The pick chains a plan needs follow from this alone. */
static void svcport_picks(const struct sp_plan_svcport *sp, size_t n[SP_NFT_EPMAP_COUNT])
{
	bool external = sp_plan_externally_accessible(sp);
	bool has_local = sp->local.n > 0;

	memset(n, 0, SP_NFT_EPMAP_COUNT * sizeof(*n));
	if (!sp->has_any_endpoints || !uses_pickmap(sp))
		return;
	n[SP_NFT_EPMAP_ADDR] = sp->cluster.n;
	if (has_local && (sp->internal_policy_local || (external && sp->external_policy_local)))
		n[SP_NFT_EPMAP_ADDR_LOCAL] = sp->local.n;
	if (external && sp->node_port) {
		n[SP_NFT_EPMAP_NODEPORT] = sp->cluster.n;
		if (sp->external_policy_local)
			n[SP_NFT_EPMAP_NODEPORT_LOCAL] = sp->local.n;
	}
}

/* Slot i of (frontend address or node port) holds endpoint i. */
static void add_ep_elems(struct lower_ctx *x, int kind, const struct sp_plan_svcport *sp,
			 const struct sp_addr *addr, uint16_t port,
			 const struct sp_plan_ep_set *eps)
{
	struct sp_nft_set *set = &x->t->sets[sp_nft_epmap_index(kind, sp->protocol)];

	for (size_t i = 0; i < eps->n; i++) {
		const struct sp_plan_endpoint *ep = &sp->endpoints[eps->idx[i]];
		struct sp_nft_elem *e = sp_nft_elem_add(set);

		if (addr)
			e->addr = *addr;
		e->port = port;
		e->slot = (uint32_t)i;
		e->to = ep->addr;
		e->to_port = ep->port;
	}
}

static void add_ep_addr_elems(struct lower_ctx *x, int kind, const struct sp_plan_svcport *sp,
			      bool cluster_ip, bool external, const struct sp_plan_ep_set *eps)
{
	if (cluster_ip)
		add_ep_elems(x, kind, sp, &sp->cluster_ip, sp->port, eps);
	for (size_t i = 0; external && i < sp->n_external_ips; i++)
		add_ep_elems(x, kind, sp, &sp->external_ips[i], sp->port, eps);
	for (size_t i = 0; external && i < sp->n_lb_ips; i++)
		add_ep_elems(x, kind, sp, &sp->lb_ips[i], sp->port, eps);
}

static void add_pick_goto(struct sp_nft_chain *c, int kind, uint8_t proto, size_t n)
{
	char *name = pick_chain_name(kind, proto, n);

	add_verdict(sp_nft_rule_add(c), SP_NFT_GOTO, name);
	free(name);
}

/* Endpoint maps and the chains that reach them, for a port with endpoints
 * that uses them: svc-<tag> and local-<tag> keep their masquerade rule and
 * go to the pick chain of their endpoint count; node ports get their own
 * nodeport-<tag> chain, since their key cannot hold the (any local)
 * destination address. */
static void lower_pickmap(struct lower_ctx *x, const struct sp_plan_svcport *sp,
			  const struct svc_names *nm, const size_t picks[SP_NFT_EPMAP_COUNT])
{
	bool external = sp_plan_externally_accessible(sp);
	bool has_ext_addrs = sp->n_external_ips + sp->n_lb_ips > 0;
	char *np_cluster = NULL, *np_local = NULL;
	struct sp_nft_chain *c;

	if (picks[SP_NFT_EPMAP_ADDR]) {
		c = sp_nft_chain_add(x->t, nm->cluster);
		if (!sp->internal_policy_local)
			add_cluster_ip_masq(x, sp, c);
		add_pick_goto(c, SP_NFT_EPMAP_ADDR, sp->protocol, picks[SP_NFT_EPMAP_ADDR]);
		add_ep_addr_elems(x, SP_NFT_EPMAP_ADDR, sp, !sp->internal_policy_local, external,
				  &sp->cluster);
	}
	if (picks[SP_NFT_EPMAP_ADDR_LOCAL]) {
		c = sp_nft_chain_add(x->t, nm->local);
		if (sp->internal_policy_local)
			add_cluster_ip_masq(x, sp, c);
		add_pick_goto(c, SP_NFT_EPMAP_ADDR_LOCAL, sp->protocol,
			      picks[SP_NFT_EPMAP_ADDR_LOCAL]);
		add_ep_addr_elems(x, SP_NFT_EPMAP_ADDR_LOCAL, sp, sp->internal_policy_local,
				  external && sp->external_policy_local, &sp->local);
	}
	if (!external)
		return;
	if (has_ext_addrs) {
		add_external_chain(x, sp, nm->external,
				   picks[SP_NFT_EPMAP_ADDR] ? nm->cluster : NULL,
				   sp->local.n ? nm->local : NULL);
		add_external_addr_elems(x, sp, false, SP_NFT_GOTO, nm->external);
	}
	if (!sp->node_port)
		return;
	if (picks[SP_NFT_EPMAP_NODEPORT]) {
		np_cluster = pick_chain_name(SP_NFT_EPMAP_NODEPORT, sp->protocol,
					     picks[SP_NFT_EPMAP_NODEPORT]);
		add_ep_elems(x, SP_NFT_EPMAP_NODEPORT, sp, NULL, sp->node_port, &sp->cluster);
	}
	if (picks[SP_NFT_EPMAP_NODEPORT_LOCAL]) {
		np_local = pick_chain_name(SP_NFT_EPMAP_NODEPORT_LOCAL, sp->protocol,
					   picks[SP_NFT_EPMAP_NODEPORT_LOCAL]);
		add_ep_elems(x, SP_NFT_EPMAP_NODEPORT_LOCAL, sp, NULL, sp->node_port, &sp->local);
	}
	add_external_chain(x, sp, nm->nodeport, np_cluster, np_local);
	add_nodeport_elem(x, sp, false, SP_NFT_GOTO, nm->nodeport);
	free(np_cluster);
	free(np_local);
}

static void add_service_ip_elem(struct lower_ctx *x, const struct sp_plan_svcport *sp,
				const struct svc_names *nm)
{
	if (sp_plan_internal_eps(sp)->n)
		add_elem(fixed(x, FS_SERVICE_IPS), &sp->cluster_ip, sp->protocol, sp->port,
			 SP_NFT_GOTO, sp->internal_policy_local ? nm->local : nm->cluster);
	else
		add_elem(fixed(x, FS_SERVICE_IPS), &sp->cluster_ip, sp->protocol, sp->port,
			 SP_NFT_DROP, NULL);
}

static void lower_svcport(struct lower_ctx *x, const struct sp_plan_svcport *sp)
{
	bool external = sp_plan_externally_accessible(sp);
	bool has_cluster = sp->cluster.n > 0, has_local = sp->local.n > 0;
	bool need_local =
		has_local && (sp->internal_policy_local || (external && sp->external_policy_local));
	struct svc_names nm = {0};
	char *tag = svcport_tag(sp);
	const char *aff = NULL;

	nm.cluster = sp_xasprintf("svc-%s", tag);
	nm.local = sp_xasprintf("local-%s", tag);
	nm.external = sp_xasprintf("ext-%s", tag);
	nm.nodeport = sp_xasprintf("nodeport-%s", tag);
	nm.firewall = sp_xasprintf("fw-%s", tag);
	nm.affinity = sp_xasprintf("aff-%s", tag);
	free(tag);

	if (sp->n_source_ranges && sp->n_lb_ips && external) {
		add_firewall_chain(x, sp, nm.firewall);
		for (size_t i = 0; i < sp->n_lb_ips; i++)
			add_elem(fixed(x, FS_FIREWALL_IPS), &sp->lb_ips[i], sp->protocol, sp->port,
				 SP_NFT_GOTO, nm.firewall);
	}
	if (!sp->has_any_endpoints) {
		/* kube-proxy rejects at once rather than letting clients time
		 * out. */
		add_elem(fixed(x, FS_NOEP_SERVICES), &sp->cluster_ip, sp->protocol, sp->port,
			 SP_NFT_GOTO, CHAIN_REJECT);
		if (external) {
			add_external_addr_elems(x, sp, true, SP_NFT_GOTO, CHAIN_REJECT);
			add_nodeport_elem(x, sp, true, SP_NFT_GOTO, CHAIN_REJECT);
		}
		svc_names_free(&nm);
		return;
	}
	if (uses_pickmap(sp)) {
		size_t picks[SP_NFT_EPMAP_COUNT];

		svcport_picks(sp, picks);
		lower_pickmap(x, sp, &nm, picks);
		add_service_ip_elem(x, sp, &nm);
		svc_names_free(&nm);
		return;
	}
	if (affinity_usable(x, sp)) {
		struct sp_nft_set *s = sp_nft_set_add(x->t, nm.affinity, SP_NFT_KEY_SADDR);

		s->affinity = true;
		s->timeout_s =
			sp->affinity_timeout ? sp->affinity_timeout : SP_DEFAULT_AFFINITY_TIMEOUT;
		aff = nm.affinity;
	}

	struct sp_nft_chain *c;

	if (has_cluster) {
		c = sp_nft_chain_add(x->t, nm.cluster);
		if (!sp->internal_policy_local)
			add_cluster_ip_masq(x, sp, c);
		add_endpoint_choice(sp, &sp->cluster, aff, c);
	}
	if (need_local) {
		c = sp_nft_chain_add(x->t, nm.local);
		if (sp->internal_policy_local)
			add_cluster_ip_masq(x, sp, c);
		add_endpoint_choice(sp, &sp->local, aff, c);
	}

	add_service_ip_elem(x, sp, &nm);
	if (external) {
		add_external_chain(x, sp, nm.external, has_cluster ? nm.cluster : NULL,
				   has_local ? nm.local : NULL);
		add_external_addr_elems(x, sp, false, SP_NFT_GOTO, nm.external);
		add_nodeport_elem(x, sp, false, SP_NFT_GOTO, nm.external);
	}
	svc_names_free(&nm);
}

/* An endpoint map's duplicate keys come with a duplicate in service-ips or
 * service-nodeports, which is reported. */
static bool quiet_set(size_t i)
{
	return i >= SP_NFT_FS_ENDPOINTS && i < SP_NFT_FS_COUNT;
}

static int size_cmp(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	return x < y ? -1 : x > y;
}

#define PICK_SMALL 1024 /* endpoint counts tracked in a bitmap; larger ones sorted */

void sp_nft_pick_chains(const struct sp_plan *plan, int family, struct sp_nft_table *t)
{
	enum { N_MAPS = SP_NFT_EPMAP_COUNT * SP_ARRAY_SIZE(epmap_protos) };
	uint8_t *small = sp_xcalloc(N_MAPS, PICK_SMALL / 8);
	size_t *large[N_MAPS] = {0}, n_large[N_MAPS] = {0}, cap_large[N_MAPS] = {0};

	for (size_t i = 0; i < plan->n_svcports; i++) {
		const struct sp_plan_svcport *sp = &plan->svcports[i];
		size_t picks[SP_NFT_EPMAP_COUNT];

		if (sp->family != family)
			continue;
		svcport_picks(sp, picks);
		for (int k = 0; k < SP_NFT_EPMAP_COUNT; k++) {
			int m = sp_nft_epmap_index(k, sp->protocol) - SP_NFT_FS_ENDPOINTS;

			if (!picks[k])
				continue;
			if (picks[k] < PICK_SMALL)
				small[m * PICK_SMALL / 8 + picks[k] / 8] |=
					(uint8_t)(1 << picks[k] % 8);
			else
				*(size_t *)sp_array_push(&large[m], &n_large[m], &cap_large[m],
							 sizeof(size_t)) = picks[k];
		}
	}
	for (int k = 0; k < SP_NFT_EPMAP_COUNT; k++) {
		for (size_t p = 0; p < SP_ARRAY_SIZE(epmap_protos); p++) {
			int idx = sp_nft_epmap_index(k, epmap_protos[p]);
			int m = idx - SP_NFT_FS_ENDPOINTS;
			char *map = epmap_name(k, epmap_protos[p]);

			if (n_large[m])
				qsort(large[m], n_large[m], sizeof(size_t), size_cmp);
			for (size_t n = 1; n < PICK_SMALL + n_large[m]; n++) {
				size_t count = n < PICK_SMALL ? n : large[m][n - PICK_SMALL];
				struct sp_nft_stmt *st;
				char *name;

				if (n < PICK_SMALL &&
				    !(small[m * PICK_SMALL / 8 + n / 8] & (1 << n % 8)))
					continue;
				if (n > PICK_SMALL && count == large[m][n - PICK_SMALL - 1])
					continue;
				name = pick_chain_name(k, epmap_protos[p], count);
				st = sp_nft_stmt_add(sp_nft_rule_add(sp_nft_chain_add(t, name)),
						     SP_NFT_DNAT_PICK);
				st->key = k == SP_NFT_EPMAP_ADDR || k == SP_NFT_EPMAP_ADDR_LOCAL
						  ? SP_NFT_KEY_DADDR_PORT_SLOT
						  : SP_NFT_KEY_PORT_SLOT;
				st->proto = epmap_protos[p];
				st->value = (uint32_t)count;
				st->set = sp_xstrdup(map);
				free(name);
			}
			free(map);
			free(large[m]);
		}
	}
	free(small);
}

static size_t lower_family(const struct sp_plan *plan, int family, struct sp_nft_ruleset *out,
			   struct sp_diag *diag)
{
	struct lower_ctx x = {.plan = plan, .family = family, .diag = diag};
	size_t dropped = 0;

	x.t = sp_nft_table_add(out, family, SP_NFT_TABLE);
	build_infrastructure(&x);
	for (size_t i = 0; i < plan->n_svcports; i++)
		if (plan->svcports[i].family == family)
			lower_svcport(&x, &plan->svcports[i]);
	sp_nft_pick_chains(plan, family, x.t);
	for (size_t i = 0; i < x.t->n_sets; i++)
		dropped += sp_nft_set_sort(&x.t->sets[i], quiet_set(i) ? NULL : diag);
	return dropped;
}

size_t sp_nft_lower(const struct sp_plan *plan, struct sp_nft_ruleset *out, struct sp_diag *diag)
{
	bool v6 = false;
	size_t dropped;

	sp_nft_ruleset_init(out);
	for (size_t i = 0; i < plan->n_svcports; i++)
		v6 |= plan->svcports[i].family == AF_INET6;
	dropped = lower_family(plan, AF_INET, out, diag);
	if (v6)
		dropped += lower_family(plan, AF_INET6, out, diag);
	return dropped;
}

size_t sp_nft_lower_svcports(const struct sp_plan *plan, const struct sp_plan_svcport *const *sps,
			     size_t n, struct sp_nft_ruleset *out)
{
	static const int fams[] = {AF_INET, AF_INET6};
	size_t dropped = 0;

	sp_nft_ruleset_init(out);
	for (size_t f = 0; f < SP_ARRAY_SIZE(fams); f++) {
		struct lower_ctx x = {.plan = plan, .family = fams[f]};

		x.t = sp_nft_table_add(out, fams[f], SP_NFT_TABLE);
		x.masq_off_cluster = has_cluster_cidr(plan, fams[f]);
		add_fixed_sets(x.t);
		for (size_t i = 0; i < n; i++)
			if (sps[i]->family == fams[f])
				lower_svcport(&x, sps[i]);
		for (size_t i = 0; i < x.t->n_sets; i++)
			dropped += sp_nft_set_sort(&x.t->sets[i], NULL);
	}
	return dropped;
}
