/* Lowering of the plan to the nftables IR (see docs/nftables-layout.md).
 *
 * Dispatch is kube-proxy's: one verdict map from (address, protocol, port)
 * and one from (protocol, node port) to a chain per Service port. Unlike
 * kube-proxy, endpoints are chosen inside that chain by cascading
 * `numgen random mod n` draws with an immediate dnat, without a chain per
 * endpoint nor an anonymous map per Service: the kernel's commit cost grows
 * with the number of sets in a table and of rules bound to one set, while
 * plain chains and map elements are cheap. Sets stay a handful per table;
 * only Services with ClientIP affinity add one (a dynamic map). */
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

static void add_fixed_sets(struct sp_nft_table *t)
{
	/* In the order of enum sp_nft_fixed_set. */
	sp_nft_set_add(t, SET_SERVICE_IPS, SP_NFT_KEY_DADDR_PROTO_PORT);
	sp_nft_set_add(t, SET_SERVICE_NODEPORTS, SP_NFT_KEY_PROTO_PORT);
	sp_nft_set_add(t, SET_NOEP_SERVICES, SP_NFT_KEY_DADDR_PROTO_PORT);
	sp_nft_set_add(t, SET_NOEP_NODEPORTS, SP_NFT_KEY_PROTO_PORT);
	sp_nft_set_add(t, SET_FIREWALL_IPS, SP_NFT_KEY_DADDR_PROTO_PORT);
	sp_nft_set_add(t, SET_HAIRPIN, SP_NFT_KEY_SADDR_DADDR)->plain = true;
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
	char *cluster, *local, *external, *firewall, *affinity;
};

static void svc_names_free(struct svc_names *n)
{
	free(n->cluster);
	free(n->local);
	free(n->external);
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

static void add_external_chain(struct lower_ctx *x, const struct sp_plan_svcport *sp,
			       const struct svc_names *nm, bool has_cluster, bool has_local)
{
	struct sp_nft_chain *c = sp_nft_chain_add(x->t, nm->external);
	struct sp_nft_rule *r;

	if (!sp->external_policy_local) {
		if (!has_cluster) {
			add_verdict(sp_nft_rule_add(c), SP_NFT_DROP, NULL);
			return;
		}
		add_verdict(sp_nft_rule_add(c), SP_NFT_JUMP, CHAIN_MARK_MASQ);
		add_verdict(sp_nft_rule_add(c), SP_NFT_GOTO, nm->cluster);
		return;
	}
	/* Local: in-cluster clients short-circuit to every endpoint (pods
	 * keep their address, the node itself is masqueraded); the others
	 * reach only this node's endpoints and keep their address. */
	for (size_t i = 0; has_cluster && i < x->plan->n_cluster_cidrs; i++) {
		if (x->plan->cluster_cidrs[i].addr.family != x->family)
			continue;
		r = sp_nft_rule_add(c);
		add_cidr(r, true, false, &x->plan->cluster_cidrs[i]);
		add_verdict(r, SP_NFT_GOTO, nm->cluster);
	}
	if (has_cluster) {
		r = sp_nft_rule_add(c);
		add_fib_local(r, true);
		add_verdict(r, SP_NFT_JUMP, CHAIN_MARK_MASQ);
		r = sp_nft_rule_add(c);
		add_fib_local(r, true);
		add_verdict(r, SP_NFT_GOTO, nm->cluster);
	}
	if (has_local)
		add_verdict(sp_nft_rule_add(c), SP_NFT_GOTO, nm->local);
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

static void add_external_elems(struct lower_ctx *x, const struct sp_plan_svcport *sp,
			       bool no_endpoints, int verdict, const char *chain)
{
	struct sp_nft_set *set = fixed(x, no_endpoints ? FS_NOEP_SERVICES : FS_SERVICE_IPS);

	for (size_t i = 0; i < sp->n_external_ips; i++)
		add_elem(set, &sp->external_ips[i], sp->protocol, sp->port, verdict, chain);
	for (size_t i = 0; i < sp->n_lb_ips; i++)
		add_elem(set, &sp->lb_ips[i], sp->protocol, sp->port, verdict, chain);
	if (sp->node_port)
		add_elem(fixed(x, no_endpoints ? FS_NOEP_NODEPORTS : FS_SERVICE_NODEPORTS), NULL,
			 sp->protocol, sp->node_port, verdict, chain);
}

static void lower_svcport(struct lower_ctx *x, const struct sp_plan_svcport *sp)
{
	const struct sp_plan_ep_set *internal = sp_plan_internal_eps(sp);
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
		if (external)
			add_external_elems(x, sp, true, SP_NFT_GOTO, CHAIN_REJECT);
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

	if (internal->n)
		add_elem(fixed(x, FS_SERVICE_IPS), &sp->cluster_ip, sp->protocol, sp->port,
			 SP_NFT_GOTO, sp->internal_policy_local ? nm.local : nm.cluster);
	else
		add_elem(fixed(x, FS_SERVICE_IPS), &sp->cluster_ip, sp->protocol, sp->port,
			 SP_NFT_DROP, NULL);
	if (external) {
		add_external_chain(x, sp, &nm, has_cluster, has_local);
		add_external_elems(x, sp, false, SP_NFT_GOTO, nm.external);
	}
	svc_names_free(&nm);
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
	for (size_t i = 0; i < x.t->n_sets; i++)
		dropped += sp_nft_set_sort(&x.t->sets[i], diag);
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
