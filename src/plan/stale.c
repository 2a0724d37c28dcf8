/* Which conntrack entries a plan change makes stale. Pure: two summaries in,
 * a list of exact filters out. See include/svcproxy/conntrack.h for the
 * rules; the reasoning behind each is next to its code. */
#include "svcproxy/conntrack.h"

#include <stdlib.h>
#include <string.h>

/* ---- summary building ---- */

void sp_ct_filters_init(struct sp_ct_filters *f)
{
	memset(f, 0, sizeof(*f));
}

static void filter_release(struct sp_ct_filter *f)
{
	free(f->svc_id);
	free(f->skip_src);
}

void sp_ct_filters_free(struct sp_ct_filters *f)
{
	for (size_t i = 0; i < f->n; i++)
		filter_release(&f->items[i]);
	free(f->items);
	memset(f, 0, sizeof(*f));
}

struct sp_ct_filter *sp_ct_filters_add(struct sp_ct_filters *f)
{
	return sp_array_push(&f->items, &f->n, &f->cap, sizeof(*f->items));
}

void sp_ct_filter_copy(struct sp_ct_filter *dst, const struct sp_ct_filter *src)
{
	*dst = *src;
	dst->svc_id = src->svc_id ? sp_xstrdup(src->svc_id) : NULL;
	dst->skip_src = NULL;
	if (src->n_skip_src) {
		dst->skip_src = sp_xcalloc(src->n_skip_src, sizeof(*dst->skip_src));
		memcpy(dst->skip_src, src->skip_src, src->n_skip_src * sizeof(*dst->skip_src));
	}
}

void sp_ct_summary_init(struct sp_ct_summary *s)
{
	memset(s, 0, sizeof(*s));
}

static void svcport_free(struct sp_ct_svcport *sp)
{
	free(sp->id);
	free(sp->external_addrs);
	free(sp->cluster_eps.items);
	free(sp->local_eps.items);
}

void sp_ct_summary_free(struct sp_ct_summary *s)
{
	for (size_t i = 0; i < s->n_svcports; i++)
		svcport_free(&s->svcports[i]);
	free(s->svcports);
	free(s->nodeport_addrs);
	free(s->cluster_sources);
	sp_ct_filters_free(&s->pending);
	memset(s, 0, sizeof(*s));
}

static int endpoint_cmp(const void *a, const void *b)
{
	const struct sp_ct_endpoint *x = a, *y = b;
	int r = sp_addr_cmp(&x->addr, &y->addr);

	if (r)
		return r;
	return (int)x->port - (int)y->port;
}

static int addr_qsort_cmp(const void *a, const void *b)
{
	return sp_addr_cmp(a, b);
}

static int cidr_qsort_cmp(const void *a, const void *b)
{
	return sp_cidr_cmp(a, b);
}

static size_t dedupe_sorted(void *items, size_t n, size_t size,
			    int (*cmp)(const void *, const void *))
{
	char *base = items;
	size_t kept = 0;

	for (size_t i = 0; i < n; i++) {
		if (kept && cmp(base + (kept - 1) * size, base + i * size) == 0)
			continue;
		if (kept != i)
			memcpy(base + kept * size, base + i * size, size);
		kept++;
	}
	return kept;
}

static void sort_unique(void *items, size_t *n, size_t size, int (*cmp)(const void *, const void *))
{
	if (*n == 0)
		return;
	qsort(items, *n, size, cmp);
	*n = dedupe_sorted(items, *n, size, cmp);
}

static int svcport_cmp(const void *a, const void *b)
{
	const struct sp_ct_svcport *x = a, *y = b;
	int r = strcmp(x->id, y->id);

	if (r)
		return r;
	return x->family - y->family;
}

void sp_ct_summary_normalize(struct sp_ct_summary *s)
{
	for (size_t i = 0; i < s->n_svcports; i++) {
		struct sp_ct_svcport *sp = &s->svcports[i];

		sort_unique(sp->external_addrs, &sp->n_external_addrs, sizeof(struct sp_addr),
			    addr_qsort_cmp);
		sort_unique(sp->cluster_eps.items, &sp->cluster_eps.n,
			    sizeof(struct sp_ct_endpoint), endpoint_cmp);
		sort_unique(sp->local_eps.items, &sp->local_eps.n, sizeof(struct sp_ct_endpoint),
			    endpoint_cmp);
	}
	if (s->n_svcports)
		qsort(s->svcports, s->n_svcports, sizeof(*s->svcports), svcport_cmp);
	/* Two svcports with the same (id, family) cannot both be programmed;
	 * keep the first so lookups stay unambiguous. */
	size_t kept = 0;
	for (size_t i = 0; i < s->n_svcports; i++) {
		if (kept && svcport_cmp(&s->svcports[kept - 1], &s->svcports[i]) == 0) {
			svcport_free(&s->svcports[i]);
			continue;
		}
		s->svcports[kept++] = s->svcports[i];
	}
	s->n_svcports = kept;
	sort_unique(s->nodeport_addrs, &s->n_nodeport_addrs, sizeof(struct sp_addr),
		    addr_qsort_cmp);
	sort_unique(s->cluster_sources, &s->n_cluster_sources, sizeof(struct sp_cidr),
		    cidr_qsort_cmp);
	sp_ct_filters_normalize(&s->pending);
}

static bool eps_equal(const struct sp_ct_eps *a, const struct sp_ct_eps *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (endpoint_cmp(&a->items[i], &b->items[i]) != 0)
			return false;
	return true;
}

static bool addrs_equal(const struct sp_addr *a, size_t na, const struct sp_addr *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (!sp_addr_equal(&a[i], &b[i]))
			return false;
	return true;
}

static bool svcport_equal(const struct sp_ct_svcport *a, const struct sp_ct_svcport *b)
{
	return svcport_cmp(a, b) == 0 && a->protocol == b->protocol &&
	       sp_addr_equal(&a->cluster_ip, &b->cluster_ip) && a->port == b->port &&
	       a->node_port == b->node_port &&
	       addrs_equal(a->external_addrs, a->n_external_addrs, b->external_addrs,
			   b->n_external_addrs) &&
	       a->external_policy_local == b->external_policy_local &&
	       a->internal_policy_local == b->internal_policy_local && a->affinity == b->affinity &&
	       a->affinity_timeout == b->affinity_timeout &&
	       eps_equal(&a->cluster_eps, &b->cluster_eps) &&
	       eps_equal(&a->local_eps, &b->local_eps);
}

static int filter_cmp(const void *a, const void *b);

static bool cidrs_equal(const struct sp_cidr *a, size_t na, const struct sp_cidr *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (sp_cidr_cmp(&a[i], &b[i]) != 0)
			return false;
	return true;
}

bool sp_ct_summary_equal(const struct sp_ct_summary *a, const struct sp_ct_summary *b)
{
	if (a->mode != b->mode || a->masquerade_all != b->masquerade_all ||
	    !addrs_equal(a->nodeport_addrs, a->n_nodeport_addrs, b->nodeport_addrs,
			 b->n_nodeport_addrs) ||
	    !cidrs_equal(a->cluster_sources, a->n_cluster_sources, b->cluster_sources,
			 b->n_cluster_sources) ||
	    a->n_svcports != b->n_svcports || a->pending.n != b->pending.n)
		return false;
	for (size_t i = 0; i < a->n_svcports; i++)
		if (!svcport_equal(&a->svcports[i], &b->svcports[i]))
			return false;
	for (size_t i = 0; i < a->pending.n; i++)
		if (filter_cmp(&a->pending.items[i], &b->pending.items[i]) != 0)
			return false;
	return true;
}

static void eps_from_set(struct sp_ct_eps *out, const struct sp_plan_svcport *sp,
			 const struct sp_plan_ep_set *set)
{
	out->items = sp_xcalloc(set->n ? set->n : 1, sizeof(*out->items));
	out->n = 0;
	for (size_t i = 0; i < set->n; i++) {
		if (set->idx[i] >= sp->n_endpoints)
			continue;
		const struct sp_plan_endpoint *ep = &sp->endpoints[set->idx[i]];

		out->items[out->n].addr = ep->addr;
		out->items[out->n].port = ep->port;
		out->n++;
	}
}

static struct sp_addr *addrs_dup(const struct sp_addr *a, size_t n)
{
	struct sp_addr *copy = sp_xcalloc(n ? n : 1, sizeof(*copy));

	if (n)
		memcpy(copy, a, n * sizeof(*copy));
	return copy;
}

void sp_ct_summary_from_plan(struct sp_ct_summary *out, const struct sp_plan *plan)
{
	sp_ct_summary_init(out);
	out->mode = plan->mode;
	out->masquerade_all = plan->masquerade_all;
	out->nodeport_addrs = addrs_dup(plan->nodeport_addrs, plan->n_nodeport_addrs);
	out->n_nodeport_addrs = plan->n_nodeport_addrs;
	out->cluster_sources =
		sp_xcalloc(plan->n_cluster_cidrs + plan->n_node_ips + 1, sizeof(struct sp_cidr));
	for (size_t i = 0; i < plan->n_cluster_cidrs; i++)
		out->cluster_sources[out->n_cluster_sources++] = plan->cluster_cidrs[i];
	for (size_t i = 0; i < plan->n_node_ips; i++) {
		struct sp_cidr *c = &out->cluster_sources[out->n_cluster_sources++];

		c->addr = plan->node_ips[i];
		c->prefix = (unsigned)sp_addr_len(&plan->node_ips[i]) * 8;
	}
	out->svcports = sp_xcalloc(plan->n_svcports ? plan->n_svcports : 1, sizeof(*out->svcports));
	for (size_t i = 0; i < plan->n_svcports; i++) {
		const struct sp_plan_svcport *sp = &plan->svcports[i];
		struct sp_ct_svcport *cs = &out->svcports[out->n_svcports++];
		size_t n_ext = sp->n_external_ips + sp->n_lb_ips;

		cs->id = sp_xstrdup(sp->id ? sp->id : "");
		cs->family = sp->family;
		cs->protocol = sp->protocol;
		cs->cluster_ip = sp->cluster_ip;
		cs->port = sp->port;
		cs->node_port = sp->node_port;
		cs->external_addrs = sp_xcalloc(n_ext ? n_ext : 1, sizeof(struct sp_addr));
		for (size_t j = 0; j < sp->n_external_ips; j++)
			cs->external_addrs[cs->n_external_addrs++] = sp->external_ips[j];
		for (size_t j = 0; j < sp->n_lb_ips; j++)
			cs->external_addrs[cs->n_external_addrs++] = sp->lb_ips[j];
		cs->external_policy_local = sp->external_policy_local;
		cs->internal_policy_local = sp->internal_policy_local;
		cs->affinity = sp->affinity;
		cs->affinity_timeout = sp->affinity ? sp->affinity_timeout : 0;
		eps_from_set(&cs->cluster_eps, sp, &sp->cluster);
		eps_from_set(&cs->local_eps, sp, &sp->local);
	}
	sp_ct_summary_normalize(out);
}

/* ---- filters ---- */

static const char *const reason_names[SP_CT_REASON_MAX] = {
	[SP_CT_ENDPOINT_GONE] = "endpoint-gone",     [SP_CT_POLICY] = "traffic-policy",
	[SP_CT_POLICY_SNAT] = "traffic-policy-snat", [SP_CT_ADDRESS_GONE] = "address-gone",
	[SP_CT_FIRST_ENDPOINTS] = "first-endpoints", [SP_CT_AFFINITY] = "affinity",
};

const char *sp_ct_reason_name(enum sp_ct_reason r)
{
	return (unsigned)r < SP_CT_REASON_MAX ? reason_names[r] : "unknown";
}

enum sp_ct_reason sp_ct_reason_parse(const char *name)
{
	for (int r = 0; r < SP_CT_REASON_MAX; r++)
		if (strcmp(reason_names[r], name) == 0)
			return (enum sp_ct_reason)r;
	return SP_CT_REASON_MAX;
}

static void format_addr_port(struct sp_buf *out, const struct sp_addr *a, uint16_t port)
{
	char buf[SP_ADDRSTRLEN];

	sp_addr_format(a, buf);
	if (a->family == AF_INET6)
		sp_buf_addf(out, "[%s]", buf);
	else
		sp_buf_add(out, buf);
	if (port)
		sp_buf_addf(out, ":%u", port);
}

void sp_ct_filter_format(const struct sp_ct_filter *f, struct sp_buf *out)
{
	sp_buf_addf(out, "%s ", sp_proto_name_lower(f->protocol));
	format_addr_port(out, &f->orig_dst, f->orig_dport);
	if (f->match_reply_src) {
		sp_buf_add(out, " reply-src ");
		format_addr_port(out, &f->reply_src, f->reply_sport);
	}
	if (f->snat_only)
		sp_buf_add(out, " snat");
	if (f->n_skip_src)
		sp_buf_add(out, " off-cluster");
	sp_buf_addf(out, " (%s, %s)", sp_ct_reason_name(f->reason), f->svc_id ? f->svc_id : "-");
}

static int filter_key_cmp(const struct sp_ct_filter *x, const struct sp_ct_filter *y)
{
	int r;

	if (x->family != y->family)
		return x->family - y->family;
	if (x->protocol != y->protocol)
		return (int)x->protocol - (int)y->protocol;
	r = sp_addr_cmp(&x->orig_dst, &y->orig_dst);
	if (r)
		return r;
	return (int)x->orig_dport - (int)y->orig_dport;
}

/* Fewer skipped sources first: a filter skipping nothing covers one that
 * skips some. */
static int skip_cmp(const struct sp_ct_filter *x, const struct sp_ct_filter *y)
{
	if (x->n_skip_src != y->n_skip_src)
		return x->n_skip_src < y->n_skip_src ? -1 : 1;
	for (size_t i = 0; i < x->n_skip_src; i++) {
		int r = sp_cidr_cmp(&x->skip_src[i], &y->skip_src[i]);

		if (r)
			return r;
	}
	return 0;
}

/* A filter that covers another sorts before it: no reply match first, then
 * any reply port before a given one, then SNATed-or-not before SNATed. */
static int filter_cmp(const void *a, const void *b)
{
	const struct sp_ct_filter *x = a, *y = b;
	int r = filter_key_cmp(x, y);

	if (r)
		return r;
	if (x->match_reply_src != y->match_reply_src)
		return x->match_reply_src ? 1 : -1;
	if (x->match_reply_src) {
		r = sp_addr_cmp(&x->reply_src, &y->reply_src);
		if (r)
			return r;
		if (x->reply_sport != y->reply_sport)
			return (int)x->reply_sport - (int)y->reply_sport;
	}
	if (x->snat_only != y->snat_only)
		return x->snat_only ? 1 : -1;
	r = skip_cmp(x, y);
	if (r)
		return r;
	if (x->reason != y->reason)
		return (int)x->reason - (int)y->reason;
	return sp_strcmp_null(x->svc_id, y->svc_id);
}

static bool filter_covers(const struct sp_ct_filter *a, const struct sp_ct_filter *b)
{
	if (filter_key_cmp(a, b) != 0)
		return false;
	if (a->match_reply_src) {
		if (!b->match_reply_src || !sp_addr_equal(&a->reply_src, &b->reply_src))
			return false;
		if (a->reply_sport && a->reply_sport != b->reply_sport)
			return false;
	}
	if (a->n_skip_src && skip_cmp(a, b) != 0)
		return false;
	return !a->snat_only || b->snat_only;
}

void sp_ct_filters_normalize(struct sp_ct_filters *f)
{
	size_t kept = 0, group = 0;

	if (f->n == 0)
		return;
	qsort(f->items, f->n, sizeof(*f->items), filter_cmp);
	for (size_t i = 0; i < f->n; i++) {
		bool covered = false;

		if (kept && filter_key_cmp(&f->items[kept - 1], &f->items[i]) != 0)
			group = kept;
		for (size_t j = group; j < kept && !covered; j++)
			covered = filter_covers(&f->items[j], &f->items[i]);
		if (covered) {
			filter_release(&f->items[i]);
			continue;
		}
		f->items[kept++] = f->items[i];
	}
	f->n = kept;
}

/* ---- stale rules ---- */

/* An address:port a Service port captures, and which endpoint set answers
 * it: internal (ClusterIP) or external (node port, externalIP, LB IP). */
struct ct_target {
	bool external;
	struct sp_addr addr;
	uint16_t port;
};

struct ct_targets {
	struct ct_target *items;
	size_t n, cap;
};

static void targets_add(struct ct_targets *t, bool external, const struct sp_addr *addr,
			uint16_t port)
{
	struct ct_target *x = sp_array_push(&t->items, &t->n, &t->cap, sizeof(*t->items));

	x->external = external;
	x->addr = *addr;
	x->port = port;
}

static void targets_of(const struct sp_ct_summary *s, const struct sp_ct_svcport *sp,
		       struct ct_targets *out)
{
	memset(out, 0, sizeof(*out));
	if (sp->cluster_ip.family == sp->family)
		targets_add(out, false, &sp->cluster_ip, sp->port);
	if (sp->node_port)
		for (size_t i = 0; i < s->n_nodeport_addrs; i++)
			if (s->nodeport_addrs[i].family == sp->family)
				targets_add(out, true, &s->nodeport_addrs[i], sp->node_port);
	for (size_t i = 0; i < sp->n_external_addrs; i++)
		if (sp->external_addrs[i].family == sp->family)
			targets_add(out, true, &sp->external_addrs[i], sp->port);
}

static bool targets_has(const struct ct_targets *t, const struct ct_target *x)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->items[i].port == x->port && sp_addr_equal(&t->items[i].addr, &x->addr))
			return true;
	return false;
}

static const struct sp_ct_svcport *find_svcport(const struct sp_ct_summary *s, const char *id,
						int family)
{
	struct sp_ct_svcport key = {.id = (char *)id, .family = family};

	if (!s->n_svcports)
		return NULL;
	return bsearch(&key, s->svcports, s->n_svcports, sizeof(*s->svcports), svcport_cmp);
}

static bool eps_has(const struct sp_ct_eps *e, const struct sp_ct_endpoint *ep)
{
	if (!e->n)
		return false;
	return bsearch(ep, e->items, e->n, sizeof(*e->items), endpoint_cmp) != NULL;
}

/* The endpoints the svcport's policy lets answer a class of address. */
static const struct sp_ct_eps *class_eps(const struct sp_ct_svcport *sp, bool external)
{
	bool local = external ? sp->external_policy_local : sp->internal_policy_local;

	return local ? &sp->local_eps : &sp->cluster_eps;
}

static bool usable(const struct sp_ct_svcport *sp, const struct sp_ct_endpoint *ep)
{
	return eps_has(&sp->cluster_eps, ep) || eps_has(&sp->local_eps, ep);
}

static struct sp_ct_filter *add_filter(struct sp_ct_filters *out, const struct sp_ct_svcport *sp,
				       uint8_t protocol, const struct ct_target *t,
				       enum sp_ct_reason reason)
{
	struct sp_ct_filter *f = sp_ct_filters_add(out);

	f->family = sp->family;
	f->protocol = protocol;
	f->orig_dst = t->addr;
	f->orig_dport = t->port;
	f->reason = reason;
	f->svc_id = sp_xstrdup(sp->id);
	return f;
}

static struct sp_ct_filter *add_reply_filter(struct sp_ct_filters *out,
					     const struct sp_ct_svcport *sp,
					     const struct ct_target *t,
					     const struct sp_ct_endpoint *ep, bool snat_only,
					     enum sp_ct_reason reason)
{
	struct sp_ct_filter *f = add_filter(out, sp, sp->protocol, t, reason);

	f->match_reply_src = true;
	f->reply_src = ep->addr;
	f->reply_sport = ep->port;
	f->snat_only = snat_only;
	return f;
}

/* Only sources of the family matter; none at all means nothing to skip. */
static void skip_cluster_sources(struct sp_ct_filter *f, const struct sp_ct_summary *s)
{
	f->skip_src = sp_xcalloc(s->n_cluster_sources + 1, sizeof(*f->skip_src));
	for (size_t i = 0; i < s->n_cluster_sources; i++)
		if (s->cluster_sources[i].addr.family == f->family)
			f->skip_src[f->n_skip_src++] = s->cluster_sources[i];
	if (!f->n_skip_src) {
		free(f->skip_src);
		f->skip_src = NULL;
	}
}

/* UDP and SCTP have no end of flow the endpoint could signal, so their
 * entries toward a vanished endpoint would live as long as the client keeps
 * sending. TCP ends on its own (RST or timeout), as kube-proxy assumes.
 * External addresses can hold entries to any usable endpoint (in-cluster
 * clients are short-circuited to the cluster set under Local). */
static void rule_endpoint_gone(const struct sp_ct_svcport *o, const struct sp_ct_svcport *n,
			       const struct ct_target *t, struct sp_ct_filters *out)
{
	const struct sp_ct_eps *sets[2] = {class_eps(o, t->external), NULL};

	if (o->protocol != IPPROTO_UDP && o->protocol != IPPROTO_SCTP)
		return;
	if (t->external) {
		sets[0] = &o->cluster_eps;
		sets[1] = &o->local_eps;
	}
	for (size_t s = 0; s < 2 && sets[s]; s++) {
		for (size_t i = 0; i < sets[s]->n; i++) {
			const struct sp_ct_endpoint *ep = &sets[s]->items[i];

			if (!n || !usable(n, ep))
				add_reply_filter(out, o, t, ep, false, SP_CT_ENDPOINT_GONE);
		}
	}
}

/* A traffic policy change re-decides which endpoints may answer an address
 * class; every protocol's entries toward an endpoint now excluded would keep
 * breaking the policy (a TCP flow to a remote endpoint keeps its SNAT and
 * its hop) until it ends. Cluster -> Local also promises the client's own
 * source address, which a SNATed entry to a local endpoint breaks. */
static void rule_policy(const struct sp_ct_summary *new_s, const struct sp_ct_svcport *o,
			const struct sp_ct_svcport *n, const struct ct_target *t,
			struct sp_ct_filters *out)
{
	bool o_local = t->external ? o->external_policy_local : o->internal_policy_local;
	bool n_local = t->external ? n->external_policy_local : n->internal_policy_local;
	const struct sp_ct_eps *o_eps = class_eps(o, t->external);
	const struct sp_ct_eps *n_eps = class_eps(n, t->external);
	struct sp_ct_filter *f;

	if (o_local == n_local || o->protocol != n->protocol)
		return;
	for (size_t i = 0; i < o_eps->n; i++) {
		const struct sp_ct_endpoint *ep = &o_eps->items[i];

		if (!usable(n, ep) || eps_has(n_eps, ep))
			continue;
		f = add_reply_filter(out, o, t, ep, false, SP_CT_POLICY);
		if (t->external && n_local)
			skip_cluster_sources(f, new_s);
	}
	if (!t->external || o_local || !n_local || new_s->masquerade_all)
		return;
	for (size_t i = 0; i < n_eps->n; i++) {
		if (!eps_has(o_eps, &n_eps->items[i]))
			continue;
		f = add_reply_filter(out, o, t, &n_eps->items[i], true, SP_CT_POLICY_SNAT);
		skip_cluster_sources(f, new_s);
	}
}

/* With ClientIP affinity a client's flows must share one endpoint; without
 * it they must spread again. Established UDP flows keep whichever endpoint
 * they had, so they are placed again. The affinity records themselves live
 * in the mode's own state (nft set, xt_recent list, IPVS persistence
 * template) and are reset by the backend that owns them. */
static void rule_affinity(const struct sp_ct_svcport *o, const struct sp_ct_svcport *n,
			  const struct ct_target *t, struct sp_ct_filters *out)
{
	bool changed = o->affinity != n->affinity ||
		       (o->affinity && o->affinity_timeout != n->affinity_timeout);

	if (changed && o->protocol == IPPROTO_UDP && n->protocol == IPPROTO_UDP)
		add_filter(out, o, IPPROTO_UDP, t, SP_CT_AFFINITY);
}

static void stale_from_old(const struct sp_ct_summary *old_s, const struct sp_ct_summary *new_s,
			   const struct sp_ct_svcport *o, struct sp_ct_filters *out)
{
	const struct sp_ct_svcport *n = find_svcport(new_s, o->id, o->family);
	struct ct_targets ot, nt = {0};

	targets_of(old_s, o, &ot);
	if (n)
		targets_of(new_s, n, &nt);
	for (size_t i = 0; i < ot.n; i++) {
		const struct ct_target *t = &ot.items[i];
		bool kept = n && n->protocol == o->protocol && targets_has(&nt, t);

		rule_endpoint_gone(o, kept ? n : NULL, t, out);
		if (!kept) {
			/* A UDP entry to an address nothing captures any more
			 * keeps its old DNAT for as long as the client sends. */
			if (o->protocol == IPPROTO_UDP)
				add_filter(out, o, IPPROTO_UDP, t, SP_CT_ADDRESS_GONE);
			continue;
		}
		rule_policy(new_s, o, n, t, out);
		rule_affinity(o, n, t, out);
	}
	free(ot.items);
	free(nt.items);
}

/* While an address had no endpoint its UDP packets were rejected or left
 * the node un-NATed (black-holed), and a confirmed entry of such a flow
 * would bypass the DNAT now in place. Such an entry answers from the very
 * address it was sent to. */
static void stale_from_new(const struct sp_ct_summary *old_s, const struct sp_ct_summary *new_s,
			   const struct sp_ct_svcport *n, struct sp_ct_filters *out)
{
	const struct sp_ct_svcport *o = find_svcport(old_s, n->id, n->family);
	struct ct_targets ot = {0}, nt;

	if (n->protocol != IPPROTO_UDP)
		return;
	if (o && o->protocol != n->protocol)
		o = NULL;
	targets_of(new_s, n, &nt);
	if (o)
		targets_of(old_s, o, &ot);
	for (size_t i = 0; i < nt.n; i++) {
		const struct ct_target *t = &nt.items[i];

		if (!class_eps(n, t->external)->n)
			continue;
		if (o && targets_has(&ot, t) && class_eps(o, t->external)->n)
			continue;
		struct sp_ct_endpoint self = {.addr = t->addr, .port = t->port};

		add_reply_filter(out, n, t, &self, false, SP_CT_FIRST_ENDPOINTS);
	}
	free(ot.items);
	free(nt.items);
}

void sp_ct_stale(const struct sp_ct_summary *old, const struct sp_ct_summary *new,
		 struct sp_ct_filters *out)
{
	for (size_t i = 0; i < old->n_svcports; i++)
		stale_from_old(old, new, &old->svcports[i], out);
	for (size_t i = 0; i < new->n_svcports; i++)
		stale_from_new(old, new, &new->svcports[i], out);
	sp_ct_filters_normalize(out);
}
