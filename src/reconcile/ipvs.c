/* IPVS mode: read back what the agent owns, diff against the lowered plan,
 * apply in an order that never leaves traffic without a destination.
 *
 * Ownership (docs/ipvs.md): a virtual server is ours when its address is on
 * kube-ipvs0, or when a policy rule of our table SP_IPVS_TABLE names its
 * (address, protocol, port): a capture rule for LB IPs and externalIPs, a
 * marker rule (never consulted by routing) for node ports. Both are kernel
 * state, so ownership survives restarts and needs no file; a virtual server
 * on any other address is someone else's and is never touched.
 *
 * Order of one sync: virtual servers and their new real servers first, then
 * the addresses and rules that send traffic to them; then changed real
 * servers; leaving real servers drain (weight 0) and go once idle or after
 * the grace period; virtual servers no longer planned go, then their
 * addresses and rules. */
#include "svcproxy/backend.h"
#include "svcproxy/ipset.h"
#include "svcproxy/iptc.h"
#include "svcproxy/ipvs.h"
#include "svcproxy/ipvs_kernel.h"
#include "svcproxy/ipvs_link.h"

#include <errno.h>
#include <linux/ip_vs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/* A real server that is draining: since when (monotonic ms). */
struct drain {
	struct sp_ipvs_service svc; /* identity only */
	struct sp_ipvs_dest dest;
	uint64_t since_ms;
	bool seen; /* still draining in the last sync */
};

struct sp_backend {
	uint32_t graceful_ms;
	bool strict_arp;
	struct sp_ipvs_nl *nl;
	struct sp_ipvs_rtnl *rt;
	struct sp_ipset *is;
	struct drain *drains;
	size_t n_drains, cap_drains;
};

enum op_kind {
	OP_ADD_SVC,
	OP_EDIT_SVC,
	OP_DEL_SVC,
	OP_ADD_DEST,
	OP_EDIT_DEST,
	OP_DRAIN_DEST,
	OP_DEL_DEST,
	OP_ADD_ADDR,
	OP_DEL_ADDR,
	OP_ADD_RULE,
	OP_DEL_RULE,
};

/* One change; pointers refer into the desired or actual state, which live
 * as long as the change list. */
struct op {
	enum op_kind kind;
	const struct sp_ipvs_service *svc;
	const struct sp_ipvs_dest *dest;
	const struct sp_addr *addr;
	const struct sp_ipvs_rule *rule;
};

struct change_list {
	struct op *ops;
	size_t n, cap;
};

static void push(struct change_list *cl, enum op_kind kind, const struct sp_ipvs_service *svc,
		 const struct sp_ipvs_dest *dest)
{
	struct op *op = sp_array_push(&cl->ops, &cl->n, &cl->cap, sizeof(*op));

	op->kind = kind;
	op->svc = svc;
	op->dest = dest;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- reading the kernel ---------------------------------------------- */

struct actual {
	struct sp_ipvs_state all;   /* every IPVS service (ours and foreign) */
	struct sp_ipvs_state owned; /* ours: services, link addresses, rules */
	int ifindex;		    /* kube-ipvs0, 0 when absent */
};

static bool captured(const struct sp_ipvs_state *st, const struct sp_ipvs_service *svc)
{
	char e[SP_IPVS_ENTRYLEN];

	return sp_ipvs_set_has(&st->sets[svc->addr.family == AF_INET6][SP_IPVS_SET_CAPTURE],
			       sp_ipvs_entry_ipport(&svc->addr, svc->protocol, svc->port, e));
}

static bool owned_service(const struct actual *act, const struct sp_ipvs_service *svc,
			  const struct sp_ipvs_state *desired)
{
	return sp_ipvs_has_link_addr(&act->owned, &svc->addr) || captured(&act->owned, svc) ||
	       sp_ipvs_has_rule(&act->owned, &svc->addr, svc->protocol, svc->port) ||
	       (desired && sp_ipvs_find_service(desired, svc));
}

static bool name_listed(char **names, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(names[i], name))
			return true;
	return false;
}

/* Our sets (by exact name, both families) with their members. A set of
 * ours with another type or family is read as present with no members,
 * and reported: sync cannot fix it in place (it is referenced by rules). */
static int read_sets(struct sp_backend *be, struct sp_ipvs_state *out, struct sp_diag *diag)
{
	char **names = NULL;
	size_t n = 0;
	int ret = sp_ipset_names(be->is, &names, &n, diag);

	for (int v6 = 0; v6 < 2 && ret == 0; v6++) {
		int f = v6 ? AF_INET6 : AF_INET;

		for (int id = 0; id < SP_IPVS_N_SETS && ret == 0; id++) {
			struct sp_ipvs_set *set = &out->sets[v6][id];
			const char *name = sp_ipvs_set_name(id, f);
			char *type, *family;

			if (!name_listed(names, n, name))
				continue;
			set->present = true;
			ret = sp_ipset_members(be->is, name, &type, &family, &set->entries,
					       &set->n_entries, diag);
			set->wrong_type = ret == 0 && (strcmp(type, sp_ipvs_set_type(id)) ||
						       strcmp(family, v6 ? "inet6" : "inet"));
			if (set->wrong_type)
				sp_diag_error(
					diag,
					"ipset: set %s is %s family %s, not %s family %s; "
					"destroy it (ipset destroy %s) to let svcproxy recreate "
					"it",
					name, type, family, sp_ipvs_set_type(id),
					v6 ? "inet6" : "inet", name);
			free(type);
			free(family);
		}
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return ret;
}

static int read_actual(struct sp_backend *be, struct actual *act,
		       const struct sp_ipvs_state *desired, struct sp_diag *diag)
{
	int ret;

	act->ifindex = sp_ipvs_link_find(be->rt, diag);
	if (act->ifindex < 0)
		return -1;
	if (act->ifindex > 0 && sp_ipvs_link_addrs(be->rt, act->ifindex, &act->owned, diag) < 0)
		return -1;
	if (sp_ipvs_rules_dump(be->rt, &act->owned, diag) < 0)
		return -1;
	if (read_sets(be, &act->owned, diag) < 0)
		return -1;
	ret = sp_ipvs_nl_dump(be->nl, &act->all);
	if (ret < 0) {
		sp_diag_error(diag, "ipvs: reading virtual servers: %s",
			      sp_ipvs_nl_strerror(IPVS_CMD_GET_SERVICE, -ret));
		return -1;
	}
	sp_ipvs_state_sort(&act->owned);
	for (size_t i = 0; i < act->all.n_services; i++) {
		struct sp_ipvs_service *svc = &act->all.services[i];

		if (!owned_service(act, svc, desired))
			continue;
		*sp_ipvs_add_service(&act->owned) = *svc;
		svc->dests = NULL; /* moved */
		svc->n_dests = svc->cap_dests = 0;
	}
	sp_ipvs_state_sort(&act->owned);
	return 0;
}

static void actual_init(struct actual *act)
{
	sp_ipvs_state_init(&act->all);
	sp_ipvs_state_init(&act->owned);
	act->ifindex = 0;
}

static void actual_free(struct actual *act)
{
	sp_ipvs_state_free(&act->all);
	sp_ipvs_state_free(&act->owned);
}

/* ---- draining real servers -------------------------------------------- */

static struct drain *find_drain(struct sp_backend *be, const struct sp_ipvs_service *svc,
				const struct sp_ipvs_dest *d)
{
	for (size_t i = 0; i < be->n_drains; i++)
		if (sp_ipvs_service_cmp(&be->drains[i].svc, svc) == 0 &&
		    sp_ipvs_dest_cmp(&be->drains[i].dest, d) == 0)
			return &be->drains[i];
	return NULL;
}

static struct drain *track_drain(struct sp_backend *be, const struct sp_ipvs_service *svc,
				 const struct sp_ipvs_dest *d, uint64_t now)
{
	struct drain *dr = find_drain(be, svc, d);

	if (!dr) {
		dr = sp_array_push(&be->drains, &be->n_drains, &be->cap_drains, sizeof(*dr));
		dr->svc.addr = svc->addr;
		dr->svc.protocol = svc->protocol;
		dr->svc.port = svc->port;
		dr->dest = *d;
		dr->since_ms = now;
	}
	dr->seen = true;
	return dr;
}

static void forget_unseen_drains(struct sp_backend *be)
{
	size_t out = 0;

	for (size_t i = 0; i < be->n_drains; i++)
		if (be->drains[i].seen)
			be->drains[out++] = be->drains[i];
	be->n_drains = out;
}

/* A real server that is no longer planned: TCP drains (weight 0, deleted once
 * no connection is active or the grace period is over, as kube-proxy's
 * graceful termination does); UDP and SCTP go at once and rely on
 * expire_nodest_conn. */
static void plan_leaving_dest(struct sp_backend *be, struct change_list *cl,
			      const struct sp_ipvs_service *svc, const struct sp_ipvs_dest *d,
			      uint64_t now)
{
	struct drain *dr;

	if (svc->protocol != IPPROTO_TCP || be->graceful_ms == 0) {
		push(cl, OP_DEL_DEST, svc, d);
		return;
	}
	dr = track_drain(be, svc, d, now);
	if (d->weight != 0) {
		push(cl, OP_DRAIN_DEST, svc, d);
		return;
	}
	if (d->active_conns == 0 || now - dr->since_ms >= be->graceful_ms)
		push(cl, OP_DEL_DEST, svc, d);
}

static bool dest_differs(const struct sp_ipvs_dest *want, const struct sp_ipvs_dest *have)
{
	return want->weight != have->weight || want->fwd_method != have->fwd_method ||
	       want->u_threshold != have->u_threshold || want->l_threshold != have->l_threshold;
}

/* ---- diff ------------------------------------------------------------- */

static void diff_dests(struct sp_backend *be, struct change_list *cl,
		       const struct sp_ipvs_service *want, const struct sp_ipvs_service *have,
		       uint64_t now)
{
	/* New ones first: a rollout never leaves the virtual server empty. */
	for (size_t i = 0; i < want->n_dests; i++) {
		const struct sp_ipvs_dest *d = &want->dests[i];
		const struct sp_ipvs_dest *cur = have ? sp_ipvs_find_dest(have, d) : NULL;

		if (!cur)
			push(cl, OP_ADD_DEST, want, d);
		else if (dest_differs(d, cur))
			push(cl, OP_EDIT_DEST, want, d);
	}
	if (!have)
		return;
	for (size_t i = 0; i < have->n_dests; i++)
		if (!sp_ipvs_find_dest(want, &have->dests[i]))
			plan_leaving_dest(be, cl, have, &have->dests[i], now);
}

static void push_addr(struct change_list *cl, enum op_kind kind, const struct sp_addr *a)
{
	struct op *op = sp_array_push(&cl->ops, &cl->n, &cl->cap, sizeof(*op));

	op->kind = kind;
	op->addr = a;
}

static void push_rule(struct change_list *cl, enum op_kind kind, const struct sp_ipvs_rule *r)
{
	struct op *op = sp_array_push(&cl->ops, &cl->n, &cl->cap, sizeof(*op));

	op->kind = kind;
	op->rule = r;
}

static int rule_qcmp(const void *a, const void *b)
{
	return sp_ipvs_rule_cmp(a, b);
}

/* Exact match, pref included (rules are sorted). */
static bool has_rule(const struct sp_ipvs_state *st, const struct sp_ipvs_rule *r)
{
	return st->n_rules && bsearch(r, st->rules, st->n_rules, sizeof(*r), rule_qcmp);
}

static void compute_changes(struct sp_backend *be, const struct sp_ipvs_state *want,
			    const struct actual *act, struct change_list *cl)
{
	const struct sp_ipvs_state *have = &act->owned;
	uint64_t now = now_ms();

	for (size_t i = 0; i < be->n_drains; i++)
		be->drains[i].seen = false;
	for (size_t i = 0; i < want->n_services; i++) {
		const struct sp_ipvs_service *w = &want->services[i];
		const struct sp_ipvs_service *h = sp_ipvs_find_service(have, w);

		if (!h)
			push(cl, OP_ADD_SVC, w, NULL);
		else if (!sp_ipvs_service_attrs_equal(w, h))
			push(cl, OP_EDIT_SVC, w, NULL);
		diff_dests(be, cl, w, h, now);
	}
	for (size_t i = 0; i < want->n_link_addrs; i++)
		if (!sp_ipvs_has_link_addr(have, &want->link_addrs[i]))
			push_addr(cl, OP_ADD_ADDR, &want->link_addrs[i]);
	for (size_t i = 0; i < want->n_rules; i++)
		if (!has_rule(have, &want->rules[i]))
			push_rule(cl, OP_ADD_RULE, &want->rules[i]);
	for (size_t i = 0; i < have->n_services; i++)
		if (!sp_ipvs_find_service(want, &have->services[i]))
			push(cl, OP_DEL_SVC, &have->services[i], NULL);
	for (size_t i = 0; i < have->n_link_addrs; i++)
		if (!sp_ipvs_has_link_addr(want, &have->link_addrs[i]))
			push_addr(cl, OP_DEL_ADDR, &have->link_addrs[i]);
	for (size_t i = 0; i < have->n_rules; i++)
		if (!has_rule(want, &have->rules[i]))
			push_rule(cl, OP_DEL_RULE, &have->rules[i]);
	forget_unseen_drains(be);
}

/* ---- apply ------------------------------------------------------------ */

/* The order changes reach the kernel in, by pass. Marks of ownership
 * first (kube-ipvs0 addresses, marker and capture rules; the capture rule
 * acts only on packets a set member marks, and members come after the
 * virtual servers): a sync killed after adding a virtual server must leave
 * it recognisable as ours, or no later sync would ever remove it. A new
 * ClusterIP's address ahead of its virtual server catches no traffic that
 * was served before. Then virtual servers, real servers, and removals last,
 * so that nothing is unserved in between. */
static int op_order(enum op_kind k)
{
	switch (k) {
	case OP_ADD_ADDR:
	case OP_ADD_RULE:
		return 0;
	case OP_ADD_SVC:
	case OP_EDIT_SVC:
		return 1;
	case OP_ADD_DEST:
	case OP_EDIT_DEST:
		return 2;
	case OP_DRAIN_DEST:
	case OP_DEL_DEST:
		return 3;
	case OP_DEL_SVC:
		return 4;
	case OP_DEL_ADDR:
	case OP_DEL_RULE:
		return 5;
	}
	return 6;
}

static int ipvs_cmd_of(enum op_kind k)
{
	switch (k) {
	case OP_ADD_SVC:
		return IPVS_CMD_NEW_SERVICE;
	case OP_EDIT_SVC:
		return IPVS_CMD_SET_SERVICE;
	case OP_DEL_SVC:
		return IPVS_CMD_DEL_SERVICE;
	case OP_ADD_DEST:
		return IPVS_CMD_NEW_DEST;
	case OP_EDIT_DEST:
	case OP_DRAIN_DEST:
		return IPVS_CMD_SET_DEST;
	default:
		return IPVS_CMD_DEL_DEST;
	}
}

static void report_ipvs_error(const struct op *op, int err, struct sp_diag *diag)
{
	static const char *const verbs[] = {
		[OP_ADD_SVC] = "adding",     [OP_EDIT_SVC] = "changing",
		[OP_DEL_SVC] = "deleting",   [OP_ADD_DEST] = "adding",
		[OP_EDIT_DEST] = "changing", [OP_DRAIN_DEST] = "draining",
		[OP_DEL_DEST] = "deleting",
	};
	const char *meaning = sp_ipvs_nl_strerror(ipvs_cmd_of(op->kind), err);
	const char *origin = op->svc->origin ? op->svc->origin : "no longer planned";
	char sd[SP_IPVS_DESCLEN], dd[SP_IPVS_DESCLEN];

	sp_ipvs_service_desc(op->svc, sd);
	if (op->dest)
		sp_diag_error(diag, "ipvs: %s real server %s of virtual server %s (%s): %s",
			      verbs[op->kind], sp_ipvs_dest_desc(op->dest, dd), sd, origin,
			      meaning);
	else
		sp_diag_error(diag, "ipvs: %s virtual server %s (%s): %s", verbs[op->kind], sd,
			      origin, meaning);
}

static int apply_ipvs_op(struct sp_backend *be, const struct op *op)
{
	struct sp_ipvs_dest drained;

	switch (op->kind) {
	case OP_ADD_SVC:
		return sp_ipvs_nl_add_service(be->nl, op->svc);
	case OP_EDIT_SVC:
		return sp_ipvs_nl_edit_service(be->nl, op->svc);
	case OP_DEL_SVC:
		return sp_ipvs_nl_del_service(be->nl, op->svc);
	case OP_ADD_DEST:
		return sp_ipvs_nl_add_dest(be->nl, op->svc, op->dest);
	case OP_EDIT_DEST:
		return sp_ipvs_nl_edit_dest(be->nl, op->svc, op->dest);
	case OP_DRAIN_DEST:
		drained = *op->dest;
		drained.weight = 0;
		return sp_ipvs_nl_edit_dest(be->nl, op->svc, &drained);
	case OP_DEL_DEST:
		return sp_ipvs_nl_del_dest(be->nl, op->svc, op->dest);
	default:
		return 0;
	}
}

static bool same_service(const struct sp_ipvs_service *a, const struct sp_ipvs_service *b)
{
	return a && b && sp_ipvs_service_cmp(a, b) == 0;
}

/* SP_IPVS_TABLE's local route for each family that has rules (its source
 * follows the node IP); written only when it differs, counted in *sent. */
static int sync_table_routes(struct sp_backend *be, const struct sp_ipvs_state *want, size_t *sent,
			     struct sp_diag *diag)
{
	bool family[2] = {false, false};
	int ret = 0;

	for (size_t i = 0; i < want->n_rules; i++)
		family[want->rules[i].addr.family == AF_INET6] = true;
	for (int v6 = 0; v6 < 2; v6++) {
		int f = v6 ? AF_INET6 : AF_INET;
		int r = family[v6]
				? sp_ipvs_table_route_ensure(be->rt, f, &want->route_src[v6], diag)
				: sp_ipvs_table_route_del(be->rt, f, diag);

		if (r < 0)
			ret = -1;
		else
			*sent += (size_t)r;
	}
	return ret;
}

/* An address or rule change; 0 done, 1 refused (diag), -1 kube-ipvs0
 * cannot be had (nothing more can be bound). */
static int apply_rtnl_op(struct sp_backend *be, const struct op *op, int *ifindex,
			 struct sp_diag *diag)
{
	int err;

	switch (op->kind) {
	case OP_ADD_ADDR:
	case OP_DEL_ADDR:
		if (!*ifindex)
			*ifindex = sp_ipvs_link_ensure(be->rt, diag);
		if (*ifindex < 0)
			return -1;
		err = op->kind == OP_ADD_ADDR
			      ? sp_ipvs_link_addr_add(be->rt, *ifindex, op->addr, diag)
			      : sp_ipvs_link_addr_del(be->rt, *ifindex, op->addr, diag);
		break;
	case OP_ADD_RULE:
		err = sp_ipvs_rule_add(be->rt, op->rule, diag);
		break;
	default:
		err = sp_ipvs_rule_del(be->rt, op->rule, diag);
		break;
	}
	return err < 0 ? 1 : 0;
}

struct failed_set {
	const struct sp_ipvs_service **svcs;
	size_t n, cap;
};

static bool failed_has(const struct failed_set *f, const struct sp_ipvs_service *svc)
{
	for (size_t i = 0; i < f->n; i++)
		if (same_service(f->svcs[i], svc))
			return true;
	return false;
}

/* Run the changes in order. A virtual server that failed is skipped for the
 * rest of its changes (its real servers); the others go on. */
static int apply_changes(struct sp_backend *be, const struct sp_ipvs_state *want,
			 struct change_list *cl, size_t *route_msgs, struct sp_diag *diag)
{
	struct failed_set failed = {0};
	int ifindex = 0, ret = 0;

	for (int pass = 0; pass <= 5 && ret >= 0; pass++) {
		/* The capture table's route before any rule uses it. */
		if (pass == 0 && sync_table_routes(be, want, route_msgs, diag) < 0)
			ret = 1;
		for (size_t i = 0; i < cl->n && ret >= 0; i++) {
			const struct op *op = &cl->ops[i];
			int err;

			if (op_order(op->kind) != pass || (op->svc && failed_has(&failed, op->svc)))
				continue;
			if (op->kind >= OP_ADD_ADDR) {
				err = apply_rtnl_op(be, op, &ifindex, diag);
				ret = err < 0 ? -1 : err ? 1 : ret;
				continue;
			}
			err = apply_ipvs_op(be, op);
			if (err == 0)
				continue;
			report_ipvs_error(op, -err, diag);
			ret = 1;
			if (op->kind == OP_ADD_SVC || op->kind == OP_EDIT_SVC)
				*(const struct sp_ipvs_service **)sp_array_push(
					&failed.svcs, &failed.n, &failed.cap,
					sizeof(*failed.svcs)) = op->svc;
		}
	}
	free(failed.svcs);
	return ret < 0 ? 1 : ret;
}

/* A virtual server whose only mark is a capture set member (members come
 * after the virtual servers, op_order) gets a claim ahead of it: a marker
 * rule for its exact (address, protocol, port), past the default table
 * where no lookup reaches. The claim goes once the member is in. A sync
 * killed in between leaves the claim, and the next one, finding a rule of
 * ours it did not plan, removes the virtual server (when unplanned) and
 * then the rule. Returns the claims, pushed as rule additions; the caller
 * frees them after the change list. */
static struct sp_ipvs_rule *claim_captured(const struct sp_ipvs_state *want,
					   const struct actual *act, struct change_list *cl,
					   size_t *n_claims)
{
	size_t n_ops = cl->n, n = 0;
	struct sp_ipvs_rule *claims = sp_xcalloc(n_ops + 1, sizeof(*claims));

	for (size_t i = 0; i < n_ops; i++) {
		const struct sp_ipvs_service *svc = cl->ops[i].svc;
		struct sp_ipvs_rule *c = &claims[n];

		if (cl->ops[i].kind != OP_ADD_SVC || !captured(want, svc) ||
		    captured(&act->owned, svc))
			continue;
		c->addr = svc->addr;
		c->protocol = svc->protocol;
		c->port = svc->port;
		c->pref = SP_IPVS_MARKER_PREF;
		if (has_rule(want, c) || has_rule(&act->owned, c))
			continue;
		n++;
	}
	/* Pushed only now: the array must not move under the ops' pointers. */
	for (size_t i = 0; i < n; i++)
		push_rule(cl, OP_ADD_RULE, &claims[i]);
	*n_claims = n;
	return claims;
}

/* The claims whose set members are in now; counted in *sent. */
static int drop_claims(struct sp_backend *be, const struct sp_ipvs_state *want,
		       const struct sp_ipvs_rule *claims, size_t n, size_t *sent,
		       struct sp_diag *diag)
{
	int ret = 0;

	for (size_t i = 0; i < n; i++) {
		if (has_rule(want, &claims[i]))
			continue;
		if (sp_ipvs_rule_del(be->rt, &claims[i], diag) < 0)
			ret = 1;
		else
			(*sent)++;
	}
	return ret;
}

/* The plan lowered with this node's local addresses (node ports). */
static int lower_here(struct sp_backend *be, const struct sp_plan *plan, struct sp_ipvs_state *st,
		      struct sp_diag *diag)
{
	struct sp_addr *local = NULL;
	size_t n_local = 0;
	int ret;

	if (plan->nodeport_all_local && sp_ipvs_local_addrs(be->rt, &local, &n_local, diag) < 0)
		return -1;
	ret = sp_ipvs_lower_local(plan, local, n_local, st, diag);
	free(local);
	return ret;
}

/* ---- ipsets ----------------------------------------------------------- */

/* IPv4 sets always, IPv6 ones when the plan has IPv6 Service ports (as for
 * ip6tables). */
static bool family_wanted(const struct sp_ipvs_state *want, int v6)
{
	return !v6 || want->has_ipv6;
}

/* Set changes are collected as `ipset restore` text and sent in one go per
 * phase (libipset packs members into few messages); a dry run prints them
 * as ipset commands instead. */
struct set_job {
	struct sp_backend *be;
	struct sp_buf *diff; /* dry run: the ipset commands, nothing sent */
	struct sp_buf batch;
	size_t sent; /* set changes: creates, members, destroys */
	int ret;
	struct sp_diag *diag;
};

static void set_cmd(struct set_job *j, const char *verb, const char *name, const char *arg)
{
	j->sent++;
	if (j->diff)
		sp_buf_add(j->diff, "ipset ");
	sp_buf_addf(j->diff ? j->diff : &j->batch, "%s %s%s%s\n", verb, name, arg ? " " : "",
		    arg ? arg : "");
}

static void set_flush(struct set_job *j)
{
	if (j->batch.len && sp_ipset_restore(j->be->is, j->batch.data, j->diag) < 0)
		j->ret = -1;
	sp_buf_free(&j->batch);
	sp_buf_init(&j->batch);
}

/* Before the helper rules need them: every wanted set exists and holds its
 * new members (capture members only now, after their virtual servers). */
static void add_set_members(struct set_job *j, const struct sp_ipvs_state *want,
			    const struct sp_ipvs_state *have)
{
	for (int v6 = 0; v6 < 2; v6++) {
		int f = v6 ? AF_INET6 : AF_INET;

		if (!family_wanted(want, v6))
			continue;
		for (int id = 0; id < SP_IPVS_N_SETS; id++) {
			const struct sp_ipvs_set *w = &want->sets[v6][id], *h = &have->sets[v6][id];
			const char *name = sp_ipvs_set_name(id, f);

			if (!h->present) {
				char spec[64];

				snprintf(spec, sizeof(spec), "%s family %s maxelem %u",
					 sp_ipvs_set_type(id), v6 ? "inet6" : "inet",
					 SP_IPVS_SET_MAXELEM);
				set_cmd(j, "create", name, spec);
			}
			if (h->wrong_type) {
				j->ret = -1; /* reported when read */
				continue;
			}
			for (size_t i = 0; i < w->n_entries; i++)
				if (!sp_ipvs_set_has(h, w->entries[i]))
					set_cmd(j, "add", name, w->entries[i]);
		}
	}
	set_flush(j);
}

/* After the helper rules stopped using them: leaving members go, and the
 * sets of a family no longer programmed are destroyed. */
static void del_set_members(struct set_job *j, const struct sp_ipvs_state *want,
			    const struct sp_ipvs_state *have)
{
	for (int v6 = 0; v6 < 2; v6++) {
		int f = v6 ? AF_INET6 : AF_INET;

		for (int id = 0; id < SP_IPVS_N_SETS; id++) {
			const struct sp_ipvs_set *h = &have->sets[v6][id];
			const char *name = sp_ipvs_set_name(id, f);

			if (!h->present || (h->wrong_type && family_wanted(want, v6)))
				continue;
			if (!family_wanted(want, v6)) {
				set_cmd(j, "destroy", name, NULL);
				continue;
			}
			for (size_t i = 0; i < h->n_entries; i++)
				if (!sp_ipvs_set_has(&want->sets[v6][id], h->entries[i]))
					set_cmd(j, "del", name, h->entries[i]);
		}
	}
	set_flush(j);
}

/* cleanup: every set of ours, once the helper rules are gone. */
static int destroy_sets(struct sp_backend *be, const struct sp_ipvs_state *have,
			struct sp_diag *diag)
{
	struct set_job j = {.be = be, .diag = diag};

	sp_buf_init(&j.batch);
	for (int v6 = 0; v6 < 2; v6++)
		for (int id = 0; id < SP_IPVS_N_SETS; id++)
			if (have->sets[v6][id].present)
				set_cmd(&j, "destroy",
					sp_ipvs_set_name(id, v6 ? AF_INET6 : AF_INET), NULL);
	set_flush(&j);
	return j.ret;
}

/* ---- helper rules ----------------------------------------------------- */

static const struct sp_iptc_owner helper_owner = {.names = sp_ipvs_owned_chains};
/* filter first: an access rule is in place before nat lets traffic in; the
 * capture marks last, once the rules for captured traffic are there. */
static const enum sp_ipt_table_id helper_tables[] = {SP_IPT_FILTER, SP_IPT_NAT, SP_IPT_MANGLE};

static const struct sp_ipt_table *wanted_table(const struct sp_ipvs_state *want, bool v6,
					       enum sp_ipt_table_id id)
{
	if (id == SP_IPT_MANGLE)
		return v6 ? &want->mangle6 : &want->mangle;
	return v6 ? &want->ipt6.tables[id] : &want->ipt.tables[id];
}

/* Whether the kernel has this ip6tables table (a node without IPv6
 * netfilter has nothing of ours there either). */
static bool ip6_table_present(enum sp_ipt_table_id id)
{
	FILE *f = fopen("/proc/net/ip6_tables_names", "re");
	char line[64];
	bool found = false;

	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		found = strcmp(line, sp_ipt_table_name(id)) == 0;
	}
	fclose(f);
	return found;
}

static int cleanup_helper_family(int family, struct sp_diag *diag)
{
	int ret = 0;

	for (size_t i = 0; i < SP_ARRAY_SIZE(helper_tables); i++) {
		struct sp_iptc_stats st = {0};

		if (family == AF_INET6 && !ip6_table_present(helper_tables[i]))
			continue;
		if (sp_iptc_cleanup_table_family(family, helper_tables[i], &helper_owner, &st,
						 diag) < 0)
			ret = -1;
	}
	return ret;
}

/* Returns 0 unchanged, 1 changed, -1 failed (diag). IPv6 rules only when
 * the plan has IPv6 Service ports; otherwise what an earlier dual-stack sync
 * left in ip6tables is removed. */
static int sync_helper_rules(const struct sp_ipvs_state *want, struct sp_buf *diff, size_t *changed,
			     struct sp_diag *diag)
{
	int ret = 0;

	for (int v6 = 0; v6 < 2; v6++) {
		if (v6 && !want->has_ipv6) {
			if (!diff && cleanup_helper_family(AF_INET6, diag) < 0)
				ret = -1;
			continue;
		}
		for (size_t i = 0; i < SP_ARRAY_SIZE(helper_tables); i++) {
			struct sp_iptc_stats st = {0};
			int r = sp_iptc_sync_table(wanted_table(want, v6, helper_tables[i]),
						   &helper_owner, diff, &st, diag);

			if (r < 0)
				ret = -1;
			else if (r > 0 && ret == 0)
				ret = 1;
			if (changed)
				*changed += st.chains_changed;
		}
	}
	return ret;
}

/* The plan printer's order: nat, filter, then mangle when it has ours. */
static int print_helper_state(int family, struct sp_buf *out, struct sp_diag *diag)
{
	static const enum sp_ipt_table_id order[] = {SP_IPT_NAT, SP_IPT_FILTER, SP_IPT_MANGLE};
	struct sp_buf text;
	bool any = family == AF_INET;

	sp_buf_init(&text);
	for (size_t i = 0; i < SP_ARRAY_SIZE(order); i++) {
		struct sp_ipt_table t;
		bool ours = false;

		if (family == AF_INET6 && !ip6_table_present(order[i]))
			continue;
		if (sp_iptc_read_table_family(family, order[i], &helper_owner, &t, diag) < 0) {
			sp_buf_free(&text);
			return -1;
		}
		for (size_t c = 0; c < t.n_chains; c++)
			ours |= !t.chains[c].builtin || t.chains[c].n_rules > 0;
		any |= ours;
		if (order[i] != SP_IPT_MANGLE || ours)
			sp_ipt_print_table(&t, &text);
		sp_ipt_table_free(&t);
	}
	if (any && text.data) {
		sp_buf_add(out, family == AF_INET6 ? "# ip6tables-save\n" : "# iptables-save\n");
		sp_buf_add(out, text.data);
	}
	sp_buf_free(&text);
	return 0;
}

/* ---- the backend ------------------------------------------------------ */

static struct sp_backend *ipvs_open(const struct sp_config *cfg, struct sp_diag *diag)
{
	struct sp_backend *be = sp_xcalloc(1, sizeof(*be));

	be->graceful_ms = cfg->ipvs_graceful_period_ms;
	be->strict_arp = cfg->ipvs_strict_arp;
	be->nl = sp_ipvs_nl_open(diag);
	be->rt = be->nl ? sp_ipvs_rtnl_open(diag) : NULL;
	be->is = sp_ipset_open();
	if (!be->nl || !be->rt) {
		sp_ipvs_nl_close(be->nl);
		sp_ipvs_rtnl_close(be->rt);
		free(be);
		return NULL;
	}
	return be;
}

static void ipvs_close(struct sp_backend *be)
{
	if (!be)
		return;
	sp_ipvs_nl_close(be->nl);
	sp_ipvs_rtnl_close(be->rt);
	sp_ipset_close(be->is);
	free(be->drains);
	free(be);
}

static void ipvs_print_plan(const struct sp_plan *plan, struct sp_buf *out)
{
	struct sp_ipvs_state st;
	struct sp_diag diag;

	sp_ipvs_state_init(&st);
	sp_diag_init(&diag);
	sp_ipvs_lower(plan, &st, &diag);
	sp_ipvs_print(&st, out);
	sp_ipvs_state_free(&st);
	sp_diag_free(&diag);
}

static void ipvs_print_plan_json(const struct sp_plan *plan, struct sp_buf *out)
{
	struct sp_ipvs_state st;
	struct sp_diag diag;

	sp_ipvs_state_init(&st);
	sp_diag_init(&diag);
	sp_ipvs_lower(plan, &st, &diag);
	sp_ipvs_print_json(&st, out);
	sp_ipvs_state_free(&st);
	sp_diag_free(&diag);
}

/* Address and rule changes: one rtnetlink request each. */
static size_t rtnl_ops(const struct change_list *cl)
{
	size_t n = 0;

	for (size_t i = 0; i < cl->n; i++)
		n += cl->ops[i].kind >= OP_ADD_ADDR;
	return n;
}

static int ipvs_sync(struct sp_backend *be, const struct sp_plan *plan, bool full,
		     struct sp_sync_stats *stats, struct sp_diag *diag)
{
	struct sp_ipvs_state want;
	struct change_list cl = {0};
	struct actual act;
	unsigned long sent = sp_ipvs_nl_messages(be->nl);
	size_t helper_changed = 0, route_msgs = 0, n_claims = 0;
	struct sp_ipvs_rule *claims;
	struct set_job sets = {.be = be, .diag = diag};
	int ret;

	(void)full; /* IPVS has no change notifications: always read back */
	sp_buf_init(&sets.batch);
	sp_ipvs_state_init(&want);
	ret = lower_here(be, plan, &want, diag);
	if (ret < 0) {
		sp_ipvs_state_free(&want);
		return -1;
	}
	if (sp_ipvs_sysctls_apply(plan->ipvs_strict_arp || be->strict_arp, diag) < 0)
		ret = 1;
	actual_init(&act);
	if (read_actual(be, &act, &want, diag) < 0) {
		actual_free(&act);
		sp_ipvs_state_free(&want);
		return -1;
	}
	if (sp_ipvs_link_ensure(be->rt, diag) < 0) {
		ret = 1;
	}
	compute_changes(be, &want, &act, &cl);
	claims = claim_captured(&want, &act, &cl, &n_claims);
	if (apply_changes(be, &want, &cl, &route_msgs, diag) != 0)
		ret = 1;
	add_set_members(&sets, &want, &act.owned);
	if (sets.ret >= 0 && drop_claims(be, &want, claims, n_claims, &route_msgs, diag))
		ret = 1;
	if (sync_helper_rules(&want, NULL, &helper_changed, diag) < 0)
		ret = 1;
	del_set_members(&sets, &want, &act.owned);
	if (sets.ret < 0)
		ret = 1;
	if (stats) {
		stats->full = true;
		stats->messages_sent =
			sp_ipvs_nl_messages(be->nl) - sent + rtnl_ops(&cl) + route_msgs + sets.sent;
		stats->objects_changed = cl.n + helper_changed + route_msgs + sets.sent;
		stats->objects_unchanged =
			want.n_services + want.n_link_addrs + want.n_rules > cl.n
				? want.n_services + want.n_link_addrs + want.n_rules - cl.n
				: 0;
		stats->rules_total = want.n_services;
		for (size_t i = 0; i < want.n_services; i++)
			stats->rules_total += want.services[i].n_dests;
	}
	free(cl.ops);
	free(claims);
	actual_free(&act);
	sp_ipvs_state_free(&want);
	return ret;
}

static void print_rtnl_op(const struct op *op, struct sp_buf *out)
{
	struct sp_ipvs_state one = {0};
	struct sp_buf line;
	char ab[SP_ADDRSTRLEN];
	char *verb;

	if (op->kind == OP_ADD_ADDR || op->kind == OP_DEL_ADDR) {
		sp_buf_addf(out, "ip %saddr %s %s/%u dev %s\n",
			    op->addr->family == AF_INET6 ? "-6 " : "",
			    op->kind == OP_ADD_ADDR ? "add" : "del", sp_addr_format(op->addr, ab),
			    op->addr->family == AF_INET6 ? 128 : 32, SP_IPVS_LINK);
		return;
	}
	one.rules = (struct sp_ipvs_rule *)op->rule;
	one.n_rules = 1;
	sp_buf_init(&line);
	sp_ipvs_print_rules(&one, &line);
	/* The rule line only (the table route follows it), with this verb. */
	line.data[strcspn(line.data, "\n")] = '\0';
	verb = strstr(line.data, "rule add");
	if (verb && op->kind == OP_DEL_RULE)
		memcpy(verb, "rule del", 8);
	sp_buf_addf(out, "%s\n", line.data);
	sp_buf_free(&line);
}

/* A virtual or real server change as the ipvsadm command that makes it. */
static void print_ipvs_op(const struct op *op, struct sp_buf *out)
{
	static const char *const cmd[] = {
		[OP_ADD_SVC] = "-A",  [OP_EDIT_SVC] = "-E",  [OP_DEL_SVC] = "-D",
		[OP_ADD_DEST] = "-a", [OP_EDIT_DEST] = "-e", [OP_DRAIN_DEST] = "-e",
		[OP_DEL_DEST] = "-d",
	};
	struct sp_ipvs_state one = {0};
	struct sp_ipvs_service svc = *op->svc;
	struct sp_ipvs_dest dest;
	struct sp_buf line;
	char *text;

	svc.n_dests = 0;
	if (op->dest) {
		dest = *op->dest;
		if (op->kind == OP_DRAIN_DEST)
			dest.weight = 0;
		svc.dests = &dest;
		svc.n_dests = 1;
	}
	one.services = &svc;
	one.n_services = 1;
	sp_buf_init(&line);
	sp_ipvs_print_services(&one, &line);
	/* Line 1 is the service, line 2 the destination. */
	text = op->dest ? strchr(line.data, '\n') + 1 : line.data;
	text[strcspn(text, "\n")] = '\0';
	memcpy(text, cmd[op->kind], 2);
	if (op->kind == OP_DEL_SVC || op->kind == OP_DEL_DEST) {
		/* ipvsadm's delete takes only the identity. */
		char *cut = strstr(text, op->dest ? " -m" : " -s");

		if (cut)
			*cut = '\0';
	}
	sp_buf_addf(out, "%s\n", text);
	sp_buf_free(&line);
}

static void print_op(const struct op *op, struct sp_buf *out)
{
	if (op->kind >= OP_ADD_ADDR)
		print_rtnl_op(op, out);
	else
		print_ipvs_op(op, out);
}

static int ipvs_diff(struct sp_backend *be, const struct sp_plan *plan, struct sp_buf *out,
		     struct sp_diag *diag)
{
	struct sp_ipvs_state want;
	struct change_list cl = {0};
	struct actual act;
	struct drain *saved;
	size_t n_saved = be->n_drains;
	struct set_job sets = {.be = be, .diag = diag};
	int helper;

	sp_ipvs_state_init(&want);
	actual_init(&act);
	if (lower_here(be, plan, &want, diag) < 0 || read_actual(be, &act, &want, diag) < 0) {
		actual_free(&act);
		sp_ipvs_state_free(&want);
		return -1;
	}
	/* A diff must not start or forget drains. */
	saved = n_saved ? sp_xmalloc(n_saved * sizeof(*saved)) : NULL;
	if (n_saved)
		memcpy(saved, be->drains, n_saved * sizeof(*saved));
	compute_changes(be, &want, &act, &cl);
	free(be->drains);
	be->drains = saved;
	be->n_drains = be->cap_drains = n_saved;
	for (int pass = 0; pass <= 5; pass++)
		for (size_t i = 0; i < cl.n; i++)
			if (op_order(cl.ops[i].kind) == pass)
				print_op(&cl.ops[i], out);
	sp_buf_init(&sets.batch);
	sets.diff = out;
	add_set_members(&sets, &want, &act.owned);
	helper = sync_helper_rules(&want, out, NULL, diag);
	del_set_members(&sets, &want, &act.owned);
	free(cl.ops);
	actual_free(&act);
	sp_ipvs_state_free(&want);
	if (helper < 0)
		return -1;
	return cl.n || sets.sent || helper > 0 ? 1 : 0;
}

static int ipvs_cleanup(struct sp_backend *be, struct sp_diag *diag)
{
	struct actual act;
	int ret = 0;

	actual_init(&act);
	if (read_actual(be, &act, NULL, diag) < 0) {
		actual_free(&act);
		return -1;
	}
	for (size_t i = 0; i < act.owned.n_services; i++) {
		int err = sp_ipvs_nl_del_service(be->nl, &act.owned.services[i]);

		if (err < 0) {
			struct op op = {.kind = OP_DEL_SVC, .svc = &act.owned.services[i]};

			report_ipvs_error(&op, -err, diag);
			ret = -1;
		}
	}
	for (size_t i = 0; i < act.owned.n_rules; i++)
		if (sp_ipvs_rule_del(be->rt, &act.owned.rules[i], diag) < 0)
			ret = -1;
	if (sp_ipvs_table_route_del(be->rt, AF_INET, diag) < 0 ||
	    sp_ipvs_table_route_del(be->rt, AF_INET6, diag) < 0)
		ret = -1;
	if (act.ifindex > 0 && sp_ipvs_link_delete(be->rt, diag) < 0)
		ret = -1;
	if (cleanup_helper_family(AF_INET, diag) < 0 || cleanup_helper_family(AF_INET6, diag) < 0)
		ret = -1;
	if (destroy_sets(be, &act.owned, diag) < 0)
		ret = -1;
	be->n_drains = 0;
	actual_free(&act);
	return ret;
}

/* The sets of ours that exist, in the plan printer's spelling. */
static void print_sets_state(const struct sp_ipvs_state *have, struct sp_buf *out)
{
	for (int v6 = 0; v6 < 2; v6++)
		for (int id = 0; id < SP_IPVS_N_SETS; id++) {
			const struct sp_ipvs_set *set = &have->sets[v6][id];
			const char *name = sp_ipvs_set_name(id, v6 ? AF_INET6 : AF_INET);

			if (!set->present)
				continue;
			sp_buf_addf(out, "create %s %s family %s maxelem %u\n", name,
				    sp_ipvs_set_type(id), v6 ? "inet6" : "inet",
				    SP_IPVS_SET_MAXELEM);
			for (size_t i = 0; i < set->n_entries; i++)
				sp_buf_addf(out, "add %s %s\n", name, set->entries[i]);
		}
}

static int ipvs_print_state(struct sp_backend *be, struct sp_buf *out, struct sp_diag *diag)
{
	struct actual act;

	actual_init(&act);
	if (read_actual(be, &act, NULL, diag) < 0) {
		actual_free(&act);
		return -1;
	}
	sp_buf_add(out, "# ipvsadm-save -n\n");
	sp_ipvs_print_services(&act.owned, out);
	sp_buf_addf(out, "# ip: %s addresses\n", SP_IPVS_LINK);
	sp_ipvs_print_link(&act.owned, out);
	sp_buf_add(out, "# ip: capture rules\n");
	sp_ipvs_print_rules(&act.owned, out);
	sp_buf_add(out, "# ipset restore\n");
	print_sets_state(&act.owned, out);
	actual_free(&act);
	if (print_helper_state(AF_INET, out, diag) < 0 ||
	    print_helper_state(AF_INET6, out, diag) < 0)
		return -1;
	return 0;
}

const struct sp_backend_ops sp_ipvs_ops = {
	.mode = SP_MODE_IPVS,
	.print_plan = ipvs_print_plan,
	.print_plan_json = ipvs_print_plan_json,
	.open = ipvs_open,
	.close = ipvs_close,
	.sync = ipvs_sync,
	.diff = ipvs_diff,
	.cleanup = ipvs_cleanup,
	.print_state = ipvs_print_state,
};
