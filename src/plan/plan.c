/* The planner: kube-proxy's service and endpoint semantics, applied once for
 * every mode. It reads the cluster objects and the node configuration and
 * writes a struct sp_plan; it makes no syscall, reads no clock and keeps no
 * state, so the same input always gives the same plan.
 *
 * Upstream references (kubernetes/pkg/proxy): servicechangetracker.go and
 * serviceport.go (what a ServicePort is), endpointslicecache.go (how slices
 * become endpoints), topology.go CategorizeEndpoints (which endpoints serve
 * which traffic).
 *
 * Topology hints are not applied. kube-proxy only applies them when the Node
 * carries a topology.kubernetes.io/zone label; the model keeps no node
 * labels, so this is the same behaviour as kube-proxy on an unlabelled node. */
#include "svcproxy/plan.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Schedulers the kernel's IPVS offers (ip_vs_*.ko), as ipvsadm names them. */
/* clang-format off */
static const char *const ipvs_schedulers[] = {
	"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh", "fo", "ovf", "twos",
};
/* clang-format on */

/* Who took a node port (protocol, port) or a Service address (address,
 * protocol, port) first. The API server refuses a second Service asking for
 * either; a file can still carry one, and planning it would let a Service
 * without endpoints reject the traffic of the one that took it first. */
enum claim_kind { CLAIM_NODE_PORT = 1, CLAIM_ADDRESS };

struct claim {
	uint8_t kind; /* 0: free slot */
	uint8_t protocol;
	uint16_t port;
	struct sp_addr addr; /* zeroed for node ports */
	size_t owner;	     /* index in the cluster's services[] */
	const char *field;   /* the owner's field and index, for messages */
	size_t field_index;
};

struct claims {
	struct claim *slots;
	size_t n, cap; /* cap: 0 or a power of two */
};

struct planner {
	struct sp_plan *plan;
	const struct sp_cluster *cluster;
	const struct sp_config *cfg;
	struct sp_diag *diag;
	size_t cap_svcports;
	int refused;
	/* Slices sorted by (namespace, service name, slice name), so that a
	 * Service finds its own in log time: planning stays linear in the
	 * number of objects. */
	const struct sp_endpoint_slice **slices;
	size_t n_slices;
	/* duplicate[i]: services[i] repeats the namespace/name of an earlier one. */
	bool *duplicate;
	struct claims claims;
};

/* ---- sorted address lists ---- */

static int addr_qsort_cmp(const void *a, const void *b)
{
	return sp_addr_cmp(a, b);
}

static int cidr_qsort_cmp(const void *a, const void *b)
{
	return sp_cidr_cmp(a, b);
}

static void addrs_sort_unique(struct sp_addr *addrs, size_t *n)
{
	size_t out = 0;

	if (*n == 0)
		return;
	qsort(addrs, *n, sizeof(*addrs), addr_qsort_cmp);
	for (size_t i = 1; i < *n; i++)
		if (!sp_addr_equal(&addrs[out], &addrs[i]))
			addrs[++out] = addrs[i];
	*n = out + 1;
}

static void cidrs_sort_unique(struct sp_cidr *cidrs, size_t *n)
{
	size_t out = 0;

	if (*n == 0)
		return;
	qsort(cidrs, *n, sizeof(*cidrs), cidr_qsort_cmp);
	for (size_t i = 1; i < *n; i++)
		if (sp_cidr_cmp(&cidrs[out], &cidrs[i]))
			cidrs[++out] = cidrs[i];
	*n = out + 1;
}

static void addrs_push(struct sp_addr **addrs, size_t *n, size_t *cap, const struct sp_addr *a)
{
	struct sp_addr *slot = sp_array_push(addrs, n, cap, sizeof(**addrs));

	*slot = *a;
}

static bool addrs_contain(const struct sp_addr *addrs, size_t n, const struct sp_addr *a)
{
	for (size_t i = 0; i < n; i++)
		if (sp_addr_equal(&addrs[i], a))
			return true;
	return false;
}

/* ---- node ---- */

static void plan_node_ips(struct planner *p)
{
	const struct sp_config *cfg = p->cfg;
	struct sp_plan *plan = p->plan;
	const struct sp_addr *src = cfg->node_ips;
	size_t n_src = cfg->n_node_ips;
	size_t cap = 0;

	if (n_src == 0 && plan->node_name[0]) {
		const struct sp_node *node = sp_cluster_find_node(p->cluster, plan->node_name);

		if (node) {
			src = node->addresses;
			n_src = node->n_addresses;
		}
	}
	for (size_t i = 0; i < n_src; i++)
		if (src[i].family == AF_INET || src[i].family == AF_INET6)
			addrs_push(&plan->node_ips, &plan->n_node_ips, &cap, &src[i]);
	addrs_sort_unique(plan->node_ips, &plan->n_node_ips);
	if (plan->n_node_ips == 0)
		sp_diag_warn(p->diag,
			     "node %s: no address known (no --node-ip and no Node object with "
			     "addresses); node ports get no explicit address",
			     plan->node_name[0] ? plan->node_name : "(unnamed)");
}

/* --nodeport-addresses: unset means every local address; set, only the node
 * addresses inside the given ranges. */
static void plan_nodeport_addrs(struct planner *p)
{
	const struct sp_config *cfg = p->cfg;
	struct sp_plan *plan = p->plan;
	size_t cap = 0;

	plan->nodeport_all_local = cfg->n_nodeport_cidrs == 0;
	for (size_t i = 0; i < plan->n_node_ips; i++) {
		bool inside = plan->nodeport_all_local;

		for (size_t j = 0; !inside && j < cfg->n_nodeport_cidrs; j++)
			inside = sp_cidr_contains(&cfg->nodeport_cidrs[j], &plan->node_ips[i]);
		if (inside)
			addrs_push(&plan->nodeport_addrs, &plan->n_nodeport_addrs, &cap,
				   &plan->node_ips[i]);
	}
}

static void plan_node(struct planner *p)
{
	const struct sp_config *cfg = p->cfg;
	struct sp_plan *plan = p->plan;

	plan->mode = cfg->mode;
	plan->node_name = sp_xstrdup(cfg->hostname ? cfg->hostname : "");
	plan_node_ips(p);
	plan_nodeport_addrs(p);
	if (cfg->n_cluster_cidrs) {
		plan->cluster_cidrs =
			sp_xcalloc(cfg->n_cluster_cidrs, sizeof(*plan->cluster_cidrs));
		memcpy(plan->cluster_cidrs, cfg->cluster_cidrs,
		       cfg->n_cluster_cidrs * sizeof(*plan->cluster_cidrs));
		plan->n_cluster_cidrs = cfg->n_cluster_cidrs;
		cidrs_sort_unique(plan->cluster_cidrs, &plan->n_cluster_cidrs);
	}
	plan->masquerade_all = cfg->masquerade_all;
	plan->masquerade_mark = cfg->masquerade_bit < 32 ? 1u << cfg->masquerade_bit : 0;
	plan->ipvs_default_scheduler = sp_xstrdup(
		cfg->ipvs_scheduler && cfg->ipvs_scheduler[0] ? cfg->ipvs_scheduler : "rr");
	plan->ipvs_strict_arp = cfg->ipvs_strict_arp;
	plan->ipvs_capture = cfg->ipvs_capture;
}

/* ---- which Services kube-proxy handles ---- */

/* kube-proxy watches Services without the service-proxy-name label and not
 * headless, then skips those without a cluster IP and ExternalName ones
 * (ShouldSkipService). */
static bool service_is_proxied(const struct sp_service *svc)
{
	return svc->namespace && svc->name && !svc->proxy_name && !svc->headless &&
	       svc->type != SP_SVC_EXTERNAL_NAME && svc->n_cluster_ips > 0;
}

static const struct sp_addr *service_cluster_ip(const struct sp_service *svc, int family)
{
	for (size_t i = 0; i < svc->n_cluster_ips; i++)
		if (svc->cluster_ips[i].family == family)
			return &svc->cluster_ips[i];
	return NULL;
}

static bool service_externally_accessible(const struct sp_service *svc)
{
	return svc->type == SP_SVC_LOAD_BALANCER || svc->type == SP_SVC_NODE_PORT ||
	       (svc->type == SP_SVC_CLUSTER_IP && svc->n_external_ips > 0);
}

static void service_error(struct planner *p, const struct sp_service *svc, const char *fmt, ...)
	SP_PRINTF(3, 4);

static void service_error(struct planner *p, const struct sp_service *svc, const char *fmt, ...)
{
	struct sp_buf msg;
	va_list ap;

	sp_buf_init(&msg);
	if (svc->origin && svc->origin[0])
		sp_buf_addf(&msg, "%s: ", svc->origin);
	sp_buf_addf(&msg, "Service %s/%s: ", svc->namespace, svc->name);
	va_start(ap, fmt);
	sp_buf_vaddf(&msg, fmt, ap);
	va_end(ap);
	sp_diag_error(p->diag, "%s", msg.data);
	sp_buf_free(&msg);
	p->refused = 1;
}

static const char *service_ipvs_scheduler(struct planner *p, const struct sp_service *svc)
{
	const char *want = svc->ipvs_scheduler;

	if (!want)
		return p->plan->ipvs_default_scheduler;
	for (size_t i = 0; i < SP_ARRAY_SIZE(ipvs_schedulers); i++)
		if (!strcmp(want, ipvs_schedulers[i]))
			return ipvs_schedulers[i];
	/* Only IPVS mode uses the scheduler; elsewhere the annotation is inert. */
	if (p->plan->mode == SP_MODE_IPVS)
		service_error(p, svc,
			      "metadata.annotations[\"%s\"]: \"%s\" is not an IPVS scheduler; "
			      "using the node default \"%s\"",
			      SP_ANNOTATION_IPVS_SCHEDULER, want, p->plan->ipvs_default_scheduler);
	return p->plan->ipvs_default_scheduler;
}

/* ---- the addresses a Service captures on this node, per family ---- */

struct family_addrs {
	struct sp_addr *external_ips;
	size_t n_external_ips, cap_external_ips;
	struct sp_addr *lb_ips;
	size_t n_lb_ips, cap_lb_ips;
	struct sp_cidr *source_ranges;
	size_t n_source_ranges, cap_source_ranges;
};

static void family_addrs_free(struct family_addrs *fa)
{
	free(fa->external_ips);
	free(fa->lb_ips);
	free(fa->source_ranges);
	memset(fa, 0, sizeof(*fa));
}

/* In IPVS mode a captured address is bound to the node (kube-ipvs0 or a
 * local route): a node's own address there would take the node off the
 * network, so it is refused. The other modes DNAT it and are fine. */
static bool refuse_node_address(struct planner *p, const struct sp_service *svc, const char *field,
				size_t index, const struct sp_addr *a)
{
	char buf[SP_ADDRSTRLEN];

	if (p->plan->mode != SP_MODE_IPVS ||
	    !addrs_contain(p->plan->node_ips, p->plan->n_node_ips, a))
		return false;
	service_error(p, svc, "%s[%zu]%s: %s is this node's address (%s); refused in ipvs mode",
		      field, index, strcmp(field, "status.loadBalancer.ingress") ? "" : ".ip",
		      sp_addr_format(a, buf), p->plan->node_name);
	return true;
}

static void family_addrs_build(struct planner *p, const struct sp_service *svc, int family,
			       struct family_addrs *fa)
{
	memset(fa, 0, sizeof(*fa));
	for (size_t i = 0; i < svc->n_external_ips; i++) {
		const struct sp_addr *a = &svc->external_ips[i];

		if (a->family != family || refuse_node_address(p, svc, "spec.externalIPs", i, a))
			continue;
		addrs_push(&fa->external_ips, &fa->n_external_ips, &fa->cap_external_ips, a);
	}
	addrs_sort_unique(fa->external_ips, &fa->n_external_ips);

	/* Pass-through and ipMode Proxy: the balancer itself proxies, so the
	 * address is not taken over and in-cluster traffic goes out to it. */
	if (svc->type == SP_SVC_LOAD_BALANCER && !svc->elb_pass_through) {
		for (size_t i = 0; i < svc->n_lb_ingress; i++) {
			const struct sp_lb_ingress *ing = &svc->lb_ingress[i];

			if (ing->ip.family != family || ing->ip_mode_proxy ||
			    refuse_node_address(p, svc, "status.loadBalancer.ingress", i, &ing->ip))
				continue;
			addrs_push(&fa->lb_ips, &fa->n_lb_ips, &fa->cap_lb_ips, &ing->ip);
		}
		addrs_sort_unique(fa->lb_ips, &fa->n_lb_ips);
	}

	for (size_t i = 0; i < svc->n_source_ranges; i++) {
		struct sp_cidr *slot;

		if (svc->source_ranges[i].addr.family != family)
			continue;
		slot = sp_array_push(&fa->source_ranges, &fa->n_source_ranges,
				     &fa->cap_source_ranges, sizeof(*fa->source_ranges));
		*slot = svc->source_ranges[i];
	}
	cidrs_sort_unique(fa->source_ranges, &fa->n_source_ranges);
}

static struct sp_addr *addrs_dup(const struct sp_addr *src, size_t n)
{
	struct sp_addr *dst;

	if (n == 0)
		return NULL;
	dst = sp_xcalloc(n, sizeof(*dst));
	memcpy(dst, src, n * sizeof(*dst));
	return dst;
}

/* ---- endpoints (endpointslicecache.go + topology.go) ---- */

/* An endpoint found in a slice, before duplicates are merged. Strings are
 * borrowed from the cluster until the endpoint is kept. */
struct ep_candidate {
	struct sp_plan_endpoint ep;
	const char *slice_name;
};

struct ep_candidates {
	struct ep_candidate *items;
	size_t n, cap;
};

static int bool_desc(bool a, bool b)
{
	return (int)b - (int)a;
}

/* Same address and port: the same endpoint. Among duplicates the best comes
 * first: ready, then serving, then not terminating, then local (kube-proxy
 * favours local ones), then the rest only to be deterministic. */
static int ep_candidate_cmp(const void *va, const void *vb)
{
	const struct ep_candidate *a = va, *b = vb;
	int r = sp_addr_cmp(&a->ep.addr, &b->ep.addr);

	if (r)
		return r;
	if (a->ep.port != b->ep.port)
		return a->ep.port < b->ep.port ? -1 : 1;
	if ((r = bool_desc(a->ep.ready, b->ep.ready)) ||
	    (r = bool_desc(a->ep.serving, b->ep.serving)))
		return r;
	if ((r = bool_desc(!a->ep.terminating, !b->ep.terminating)) ||
	    (r = bool_desc(a->ep.local, b->ep.local)))
		return r;
	if ((r = sp_strcmp_null(a->slice_name, b->slice_name)) ||
	    (r = sp_strcmp_null(a->ep.node_name, b->ep.node_name)))
		return r;
	return sp_strcmp_null(a->ep.target_name, b->ep.target_name);
}

static int slice_owner_cmp(const struct sp_endpoint_slice *s, const char *ns, const char *service)
{
	int r = strcmp(s->namespace, ns);

	return r ? r : strcmp(s->service_name, service);
}

static int slice_ptr_cmp(const void *va, const void *vb)
{
	const struct sp_endpoint_slice *a = *(const struct sp_endpoint_slice *const *)va;
	const struct sp_endpoint_slice *b = *(const struct sp_endpoint_slice *const *)vb;
	int r = slice_owner_cmp(a, b->namespace, b->service_name);

	return r ? r : sp_strcmp_null(a->name, b->name);
}

/* Only slices that name their Service and carry IP addresses can serve. */
static void index_slices(struct planner *p)
{
	const struct sp_cluster *c = p->cluster;

	p->slices = sp_xcalloc(c->n_slices + 1, sizeof(*p->slices));
	for (size_t i = 0; i < c->n_slices; i++) {
		const struct sp_endpoint_slice *s = &c->slices[i];

		if (s->namespace && s->service_name &&
		    (s->address_type == AF_INET || s->address_type == AF_INET6))
			p->slices[p->n_slices++] = s;
	}
	qsort(p->slices, p->n_slices, sizeof(*p->slices), slice_ptr_cmp);
}

/* The first indexed slice of svc's namespace and name (or n_slices). */
static size_t slices_lower_bound(const struct planner *p, const struct sp_service *svc)
{
	size_t lo = 0, hi = p->n_slices;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (slice_owner_cmp(p->slices[mid], svc->namespace, svc->name) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void collect_slice(struct planner *p, const struct sp_endpoint_slice *slice,
			  const struct sp_service_port *port, int family, struct ep_candidates *out)
{
	for (size_t j = 0; j < slice->n_ports; j++) {
		const struct sp_endpoint_port *sport = &slice->ports[j];

		/* kube-proxy pairs a slice port with a Service port by name and
		 * protocol; a port left unset carries no usable endpoint. */
		if (sport->port == 0 || sport->protocol != port->protocol ||
		    sp_strcmp_null(sport->name ? sport->name : "", port->name ? port->name : ""))
			continue;
		for (size_t k = 0; k < slice->n_endpoints; k++) {
			const struct sp_endpoint *e = &slice->endpoints[k];
			struct ep_candidate *c;

			if (e->addr.family != family)
				continue;
			c = sp_array_push(&out->items, &out->n, &out->cap, sizeof(*out->items));
			c->slice_name = slice->name;
			c->ep.addr = e->addr;
			c->ep.port = sport->port;
			c->ep.local = e->node_name && !strcmp(e->node_name, p->plan->node_name);
			c->ep.ready = e->ready;
			c->ep.serving = e->serving;
			c->ep.terminating = e->terminating;
			c->ep.node_name = e->node_name;
			c->ep.target_name = e->target_name;
		}
	}
}

/* Candidates for one svcport, sorted by (address, port), duplicates merged. */
static void collect_endpoints(struct planner *p, const struct sp_service *svc,
			      const struct sp_service_port *port, int family,
			      struct ep_candidates *out)
{
	size_t kept = 0;

	memset(out, 0, sizeof(*out));
	for (size_t i = slices_lower_bound(p, svc); i < p->n_slices; i++) {
		const struct sp_endpoint_slice *slice = p->slices[i];

		if (strcmp(slice->namespace, svc->namespace) ||
		    strcmp(slice->service_name, svc->name))
			break;
		if (slice->address_type == family)
			collect_slice(p, slice, port, family, out);
	}
	if (out->n == 0)
		return;
	qsort(out->items, out->n, sizeof(*out->items), ep_candidate_cmp);
	for (size_t i = 1; i < out->n; i++) {
		struct sp_plan_endpoint *prev = &out->items[kept].ep, *cur = &out->items[i].ep;

		if (!sp_addr_equal(&prev->addr, &cur->addr) || prev->port != cur->port)
			out->items[++kept] = out->items[i];
	}
	out->n = kept + 1;
}

static bool ep_serving_terminating(const struct sp_plan_endpoint *ep)
{
	return ep->serving && ep->terminating;
}

bool sp_plan_externally_accessible(const struct sp_plan_svcport *sp)
{
	return sp->node_port != 0 || sp->n_lb_ips != 0 || sp->n_external_ips != 0;
}

static bool uses_cluster_endpoints(const struct sp_plan_svcport *sp)
{
	/* Even with external policy Local the cluster endpoints serve in-cluster
	 * clients of the external addresses (kube-proxy's short-circuit). */
	return !sp->internal_policy_local || sp_plan_externally_accessible(sp);
}

static bool uses_local_endpoints(const struct sp_plan_svcport *sp)
{
	return sp->internal_policy_local ||
	       (sp->external_policy_local && sp_plan_externally_accessible(sp));
}

/* kube-proxy's CategorizeEndpoints on the candidates: marks which are in the
 * cluster set and the local set, and tells whether any endpoint is usable. */
static void categorize(const struct sp_plan_svcport *sp, const struct ep_candidates *cands,
		       bool *in_cluster, bool *in_local, bool *has_any)
{
	bool any_cluster = false, local_ready = false, local_st = false;

	*has_any = false;
	if (uses_cluster_endpoints(sp)) {
		for (size_t i = 0; i < cands->n; i++)
			any_cluster |= in_cluster[i] = cands->items[i].ep.ready;
		/* No ready endpoint anywhere: fall back to serving terminating
		 * ones rather than drop the traffic. */
		if (!any_cluster)
			for (size_t i = 0; i < cands->n; i++)
				any_cluster |= in_cluster[i] =
					ep_serving_terminating(&cands->items[i].ep);
		*has_any = any_cluster;
	}
	if (!uses_local_endpoints(sp))
		return;
	for (size_t i = 0; i < cands->n; i++) {
		const struct sp_plan_endpoint *ep = &cands->items[i].ep;

		if (ep->ready) {
			*has_any = true;
			local_ready |= ep->local;
		} else if (ep_serving_terminating(ep)) {
			*has_any = true;
			local_st |= ep->local;
		}
	}
	for (size_t i = 0; i < cands->n; i++) {
		const struct sp_plan_endpoint *ep = &cands->items[i].ep;

		in_local[i] = ep->local &&
			      (local_ready ? ep->ready : local_st && ep_serving_terminating(ep));
	}
}

static void set_push(struct sp_plan_ep_set *set, size_t idx, size_t cap)
{
	if (!set->idx)
		set->idx = sp_xcalloc(cap, sizeof(*set->idx));
	set->idx[set->n++] = idx;
}

static void plan_endpoints(struct planner *p, const struct sp_service *svc,
			   const struct sp_service_port *port, struct sp_plan_svcport *sp)
{
	struct ep_candidates cands;
	bool *in_cluster, *in_local;
	size_t n_kept = 0;

	collect_endpoints(p, svc, port, sp->family, &cands);
	in_cluster = sp_xcalloc(cands.n + 1, sizeof(*in_cluster));
	in_local = sp_xcalloc(cands.n + 1, sizeof(*in_local));
	categorize(sp, &cands, in_cluster, in_local, &sp->has_any_endpoints);

	for (size_t i = 0; i < cands.n; i++)
		n_kept += in_cluster[i] || in_local[i];
	if (n_kept)
		sp->endpoints = sp_xcalloc(n_kept, sizeof(*sp->endpoints));
	for (size_t i = 0; i < cands.n; i++) {
		struct sp_plan_endpoint *ep;

		if (!in_cluster[i] && !in_local[i])
			continue;
		ep = &sp->endpoints[sp->n_endpoints];
		*ep = cands.items[i].ep;
		ep->node_name = ep->node_name ? sp_xstrdup(ep->node_name) : NULL;
		ep->target_name = ep->target_name ? sp_xstrdup(ep->target_name) : NULL;
		if (in_cluster[i])
			set_push(&sp->cluster, sp->n_endpoints, n_kept);
		if (in_local[i])
			set_push(&sp->local, sp->n_endpoints, n_kept);
		sp->n_endpoints++;
	}
	free(in_cluster);
	free(in_local);
	free(cands.items);
}

/* ---- node ports and Service addresses taken by an earlier Service ---- */

static uint64_t claim_hash(const struct claim *c)
{
	uint64_t h = 1469598103934665603ull;
	uint8_t head[6] = {c->kind,
			   c->protocol,
			   (uint8_t)(c->port >> 8),
			   (uint8_t)c->port,
			   (uint8_t)c->addr.family,
			   (uint8_t)(c->addr.family >> 8)};

	for (size_t i = 0; i < sizeof(head); i++)
		h = (h ^ head[i]) * 1099511628211ull;
	for (size_t i = 0; i < sp_addr_len(&c->addr); i++)
		h = (h ^ c->addr.u.bytes[i]) * 1099511628211ull;
	return h;
}

static bool claim_same_key(const struct claim *a, const struct claim *b)
{
	return a->kind == b->kind && a->protocol == b->protocol && a->port == b->port &&
	       (a->kind == CLAIM_NODE_PORT || sp_addr_equal(&a->addr, &b->addr));
}

/* The slot holding key's claim, or the free slot where it belongs. */
static struct claim *claims_slot(struct claims *t, const struct claim *key)
{
	size_t i = claim_hash(key) & (t->cap - 1);

	while (t->slots[i].kind && !claim_same_key(&t->slots[i], key))
		i = (i + 1) & (t->cap - 1);
	return &t->slots[i];
}

static void claims_grow(struct claims *t)
{
	struct claims bigger = {.cap = t->cap ? t->cap * 2 : 64};

	bigger.slots = sp_xcalloc(bigger.cap, sizeof(*bigger.slots));
	for (size_t i = 0; i < t->cap; i++)
		if (t->slots[i].kind)
			*claims_slot(&bigger, &t->slots[i]) = t->slots[i];
	bigger.n = t->n;
	free(t->slots);
	*t = bigger;
}

static const struct claim *claims_find(const struct claims *t, const struct claim *key)
{
	const struct claim *slot;

	if (!t->cap)
		return NULL;
	slot = claims_slot((struct claims *)t, key);
	return slot->kind ? slot : NULL;
}

static void claims_add(struct claims *t, const struct claim *c)
{
	struct claim *slot;

	if (2 * (t->n + 1) > t->cap)
		claims_grow(t);
	slot = claims_slot(t, c);
	if (slot->kind)
		return;
	*slot = *c;
	t->n++;
}

/* What one svcport would take, as claims (at most a few per address). */
struct svcport_claims {
	struct claim *items;
	size_t n, cap;
};

static void want_claim(struct svcport_claims *w, const struct claim *c)
{
	struct claim *slot = sp_array_push(&w->items, &w->n, &w->cap, sizeof(*w->items));

	*slot = *c;
}

static size_t addr_index(const struct sp_addr *addrs, size_t n, const struct sp_addr *a)
{
	for (size_t i = 0; i < n; i++)
		if (sp_addr_equal(&addrs[i], a))
			return i;
	return 0;
}

static size_t ingress_index(const struct sp_service *svc, const struct sp_addr *a)
{
	for (size_t i = 0; i < svc->n_lb_ingress; i++)
		if (sp_addr_equal(&svc->lb_ingress[i].ip, a))
			return i;
	return 0;
}

static void svcport_wanted_claims(size_t index, const struct sp_service *svc,
				  const struct sp_service_port *port,
				  const struct sp_addr *cluster_ip, const struct family_addrs *fa,
				  struct svcport_claims *w)
{
	struct claim c = {.protocol = port->protocol, .owner = index};

	memset(w, 0, sizeof(*w));
	if ((svc->type == SP_SVC_NODE_PORT || svc->type == SP_SVC_LOAD_BALANCER) &&
	    port->node_port) {
		c.kind = CLAIM_NODE_PORT;
		c.port = port->node_port;
		c.field_index = (size_t)(port - svc->ports);
		want_claim(w, &c);
	}
	c.kind = CLAIM_ADDRESS;
	c.port = port->port;
	c.addr = *cluster_ip;
	c.field = "spec.clusterIPs";
	c.field_index = addr_index(svc->cluster_ips, svc->n_cluster_ips, cluster_ip);
	want_claim(w, &c);
	for (size_t i = 0; i < fa->n_external_ips; i++) {
		c.addr = fa->external_ips[i];
		c.field = "spec.externalIPs";
		c.field_index = addr_index(svc->external_ips, svc->n_external_ips, &c.addr);
		want_claim(w, &c);
	}
	for (size_t i = 0; i < fa->n_lb_ips; i++) {
		c.addr = fa->lb_ips[i];
		c.field = "status.loadBalancer.ingress";
		c.field_index = ingress_index(svc, &c.addr);
		want_claim(w, &c);
	}
}

static void claim_describe(struct sp_buf *b, const struct claim *c, bool with_value)
{
	char buf[SP_ADDRSTRLEN];

	if (c->kind == CLAIM_NODE_PORT)
		sp_buf_addf(b, "spec.ports[%zu].nodePort", c->field_index);
	else
		sp_buf_addf(b, "%s[%zu]%s", c->field, c->field_index,
			    strcmp(c->field, "status.loadBalancer.ingress") ? "" : ".ip");
	if (!with_value)
		return;
	if (c->kind == CLAIM_NODE_PORT)
		sp_buf_addf(b, ": %u/%s", c->port, sp_proto_name(c->protocol));
	else
		sp_buf_addf(b, ": %s port %u/%s", sp_addr_format(&c->addr, buf), c->port,
			    sp_proto_name(c->protocol));
}

/* True (with an error naming both Services) when the svcport would take a
 * node port or address an earlier Service took; otherwise claims them. */
static bool svcport_clashes(struct planner *p, size_t index, const struct sp_service *svc,
			    const struct sp_service_port *port, const struct sp_addr *cluster_ip,
			    const struct family_addrs *fa)
{
	struct svcport_claims want;
	bool clash = false;

	svcport_wanted_claims(index, svc, port, cluster_ip, fa, &want);
	for (size_t i = 0; i < want.n && !clash; i++) {
		const struct claim *had = claims_find(&p->claims, &want.items[i]);
		const struct sp_service *first;
		struct sp_buf mine, theirs;

		if (!had || had->owner == index)
			continue;
		clash = true;
		first = &p->cluster->services[had->owner];
		sp_buf_init(&mine);
		sp_buf_init(&theirs);
		claim_describe(&mine, &want.items[i], true);
		claim_describe(&theirs, had, false);
		service_error(
			p, svc,
			"%s is already used by Service %s/%s (%s%s%s); port \"%s\" not planned",
			mine.data, first->namespace, first->name, theirs.data,
			first->origin && first->origin[0] ? ", " : "",
			first->origin ? first->origin : "", port->name ? port->name : "");
		sp_buf_free(&mine);
		sp_buf_free(&theirs);
	}
	for (size_t i = 0; i < want.n && !clash; i++)
		claims_add(&p->claims, &want.items[i]);
	free(want.items);
	return clash;
}

/* ---- svcports ---- */

static void plan_svcport(struct planner *p, const struct sp_service *svc,
			 const struct sp_service_port *port, int family,
			 const struct sp_addr *cluster_ip, const struct family_addrs *fa,
			 const char *scheduler)
{
	struct sp_plan *plan = p->plan;
	struct sp_plan_svcport *sp = sp_array_push(&plan->svcports, &plan->n_svcports,
						   &p->cap_svcports, sizeof(*plan->svcports));
	bool local_ext = service_externally_accessible(svc) && svc->external_policy_local;

	sp->namespace = sp_xstrdup(svc->namespace);
	sp->name = sp_xstrdup(svc->name);
	sp->port_name = sp_xstrdup(port->name ? port->name : "");
	sp->id = sp_xasprintf("%s/%s:%s", svc->namespace, svc->name, sp->port_name);
	sp->family = family;
	sp->protocol = port->protocol;
	sp->type = svc->type;
	sp->cluster_ip = *cluster_ip;
	sp->port = port->port;
	/* The API server only allocates node ports for these two types. */
	if (svc->type == SP_SVC_NODE_PORT || svc->type == SP_SVC_LOAD_BALANCER)
		sp->node_port = port->node_port;
	sp->external_ips = addrs_dup(fa->external_ips, fa->n_external_ips);
	sp->n_external_ips = fa->n_external_ips;
	sp->lb_ips = addrs_dup(fa->lb_ips, fa->n_lb_ips);
	sp->n_lb_ips = fa->n_lb_ips;
	if (fa->n_source_ranges) {
		sp->source_ranges = sp_xcalloc(fa->n_source_ranges, sizeof(*sp->source_ranges));
		memcpy(sp->source_ranges, fa->source_ranges,
		       fa->n_source_ranges * sizeof(*sp->source_ranges));
		sp->n_source_ranges = fa->n_source_ranges;
	}
	/* Service-wide in kube-proxy; per svcport here so that a family with no
	 * external address (or only refused ones) reads as plain Cluster. */
	sp->external_policy_local = local_ext && sp_plan_externally_accessible(sp);
	sp->internal_policy_local = svc->internal_policy_local;
	sp->affinity = svc->affinity_client_ip;
	if (sp->affinity)
		sp->affinity_timeout =
			svc->affinity_timeout ? svc->affinity_timeout : SP_DEFAULT_AFFINITY_TIMEOUT;
	/* kube-proxy's NeedsHealthCheck: a Local LoadBalancer. */
	if (svc->type == SP_SVC_LOAD_BALANCER && local_ext)
		sp->health_check_node_port = svc->health_check_node_port;
	sp->ipvs_scheduler = sp_xstrdup(scheduler);
	plan_endpoints(p, svc, port, sp);
}

static void plan_service(struct planner *p, size_t index)
{
	static const int families[] = {AF_INET, AF_INET6};
	const struct sp_service *svc = &p->cluster->services[index];
	const char *scheduler;

	if (!service_is_proxied(svc))
		return;
	if (p->duplicate[index]) {
		service_error(p, svc, "defined more than once; only the first is planned");
		return;
	}
	scheduler = service_ipvs_scheduler(p, svc);
	if (svc->type == SP_SVC_LOAD_BALANCER && svc->external_policy_local &&
	    !svc->health_check_node_port)
		sp_diag_warn(p->diag,
			     "%s%sService %s/%s: spec.healthCheckNodePort: unset on a Local "
			     "LoadBalancer; the balancer cannot tell which nodes have endpoints",
			     svc->origin ? svc->origin : "", svc->origin ? ": " : "",
			     svc->namespace, svc->name);
	for (size_t f = 0; f < SP_ARRAY_SIZE(families); f++) {
		const struct sp_addr *cluster_ip = service_cluster_ip(svc, families[f]);
		struct family_addrs fa;

		if (!cluster_ip)
			continue;
		family_addrs_build(p, svc, families[f], &fa);
		for (size_t i = 0; i < svc->n_ports; i++)
			if (!svcport_clashes(p, index, svc, &svc->ports[i], cluster_ip, &fa))
				plan_svcport(p, svc, &svc->ports[i], families[f], cluster_ip, &fa,
					     scheduler);
		family_addrs_free(&fa);
	}
}

int sp_plan_svcport_cmp(const struct sp_plan_svcport *a, const struct sp_plan_svcport *b)
{
	int r;

	if ((r = strcmp(a->namespace, b->namespace)) || (r = strcmp(a->name, b->name)) ||
	    (r = strcmp(a->port_name, b->port_name)))
		return r;
	if (a->family != b->family)
		return a->family == AF_INET ? -1 : 1;
	if (a->protocol != b->protocol)
		return a->protocol < b->protocol ? -1 : 1;
	return a->port < b->port ? -1 : a->port > b->port;
}

static int svcport_qcmp(const void *a, const void *b)
{
	return sp_plan_svcport_cmp(a, b);
}

/* Slices whose endpoints are of another family than they claim: kube-proxy
 * ignores such endpoints and says so once. */
static void check_slices(struct planner *p)
{
	for (size_t i = 0; i < p->cluster->n_slices; i++) {
		const struct sp_endpoint_slice *s = &p->cluster->slices[i];

		for (size_t k = 0; k < s->n_endpoints; k++) {
			char buf[SP_ADDRSTRLEN];

			if (!s->endpoints[k].addr.family ||
			    s->endpoints[k].addr.family == s->address_type || !s->address_type)
				continue;
			sp_diag_warn(p->diag,
				     "%s%sEndpointSlice %s/%s: endpoints[%zu].addresses[0]: %s is "
				     "not of the slice's addressType; ignored",
				     s->origin ? s->origin : "", s->origin ? ": " : "",
				     s->namespace ? s->namespace : "", s->name ? s->name : "", k,
				     sp_addr_format(&s->endpoints[k].addr, buf));
		}
	}
}

struct service_ref {
	const struct sp_service *svc;
	size_t index;
};

static int service_ref_cmp(const void *va, const void *vb)
{
	const struct service_ref *a = va, *b = vb;
	int r;

	if ((r = sp_strcmp_null(a->svc->namespace, b->svc->namespace)) ||
	    (r = sp_strcmp_null(a->svc->name, b->svc->name)))
		return r;
	return a->index < b->index ? -1 : a->index > b->index;
}

/* A Service given twice (two files, or a List and a file) keeps its first
 * definition; the others are reported and left out. */
static void find_duplicate_services(struct planner *p)
{
	const struct sp_cluster *c = p->cluster;
	struct service_ref *refs = sp_xcalloc(c->n_services + 1, sizeof(*refs));

	p->duplicate = sp_xcalloc(c->n_services + 1, sizeof(*p->duplicate));
	for (size_t i = 0; i < c->n_services; i++)
		refs[i] = (struct service_ref){.svc = &c->services[i], .index = i};
	qsort(refs, c->n_services, sizeof(*refs), service_ref_cmp);
	for (size_t i = 1; i < c->n_services; i++)
		if (!sp_strcmp_null(refs[i - 1].svc->namespace, refs[i].svc->namespace) &&
		    !sp_strcmp_null(refs[i - 1].svc->name, refs[i].svc->name))
			p->duplicate[refs[i].index] = true;
	free(refs);
}

int sp_plan_build(struct sp_plan *plan, const struct sp_cluster *cluster,
		  const struct sp_config *cfg, struct sp_diag *diag)
{
	struct planner p = {.plan = plan, .cluster = cluster, .cfg = cfg, .diag = diag};

	memset(plan, 0, sizeof(*plan));
	plan_node(&p);
	check_slices(&p);
	index_slices(&p);
	find_duplicate_services(&p);
	for (size_t i = 0; i < cluster->n_services; i++)
		plan_service(&p, i);
	free(p.slices);
	free(p.duplicate);
	free(p.claims.slots);
	if (plan->n_svcports)
		qsort(plan->svcports, plan->n_svcports, sizeof(*plan->svcports), svcport_qcmp);
	return p.refused;
}

static void svcport_free(struct sp_plan_svcport *sp)
{
	free(sp->namespace);
	free(sp->name);
	free(sp->port_name);
	free(sp->id);
	free(sp->external_ips);
	free(sp->lb_ips);
	free(sp->source_ranges);
	free(sp->ipvs_scheduler);
	for (size_t i = 0; i < sp->n_endpoints; i++) {
		free(sp->endpoints[i].node_name);
		free(sp->endpoints[i].target_name);
	}
	free(sp->endpoints);
	free(sp->cluster.idx);
	free(sp->local.idx);
}

void sp_plan_free(struct sp_plan *plan)
{
	for (size_t i = 0; i < plan->n_svcports; i++)
		svcport_free(&plan->svcports[i]);
	free(plan->svcports);
	free(plan->node_name);
	free(plan->node_ips);
	free(plan->nodeport_addrs);
	free(plan->cluster_cidrs);
	free(plan->ipvs_default_scheduler);
	memset(plan, 0, sizeof(*plan));
}

const struct sp_plan_ep_set *sp_plan_internal_eps(const struct sp_plan_svcport *sp)
{
	return sp->internal_policy_local ? &sp->local : &sp->cluster;
}

const struct sp_plan_ep_set *sp_plan_external_eps(const struct sp_plan_svcport *sp)
{
	return sp->external_policy_local ? &sp->local : &sp->cluster;
}

const struct sp_plan_svcport *sp_plan_find(const struct sp_plan *plan, const char *id, int family)
{
	for (size_t i = 0; i < plan->n_svcports; i++)
		if (plan->svcports[i].family == family && !strcmp(plan->svcports[i].id, id))
			return &plan->svcports[i];
	return NULL;
}
