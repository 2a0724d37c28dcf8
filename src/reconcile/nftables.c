/* nftables mode: read back the agent's tables, diff them against the
 * lowered plan, and apply the difference in one nf_tables transaction.
 *
 * The diff is a list of operations ordered so that the kernel accepts them
 * in a single batch: objects are created before anything refers to them,
 * and references (map elements, jumps in flushed chains) are gone before
 * the objects they point to are deleted. */
#include "svcproxy/backend.h"

#include <errno.h>
#include <stdio.h>
#include <linux/netlink.h>
#include <stdlib.h>
#include <string.h>

#include "svcproxy/netlink.h"
#include "svcproxy/nft.h"
#include "svcproxy/nft_kernel.h"

static const int families[] = {AF_INET, AF_INET6};

struct sp_backend {
	struct sp_nl *nl;
	/* What this process last programmed (valid when have_prev): the plan
	 * (its global settings and a copy of every Service port, what an
	 * incremental sync compares the next plan with) and, of its lowering,
	 * only the fixed maps (to find the keys other ports hold). */
	struct sp_plan prev;
	struct sp_nft_ruleset last;
	bool have_prev;
	bool prev_conflicts; /* two ports claimed one key: lower whole plans */
	size_t rules_total;
};

/* ---- operations ---- */

enum op_kind {
	OP_ADD_TABLE,
	OP_DEL_TABLE,
	OP_ADD_SET,
	OP_DEL_SET,
	OP_FLUSH_SET,
	OP_ADD_CHAIN,
	OP_DEL_CHAIN,
	OP_FLUSH_CHAIN,
	OP_ADD_ELEM,
	OP_DEL_ELEM,
	OP_ADD_RULE,
};

struct op {
	enum op_kind kind;
	const struct sp_nft_table *t;
	const struct sp_nft_set *s;
	const struct sp_nft_chain *c;
	const struct sp_nft_elem *e;
	const struct sp_nft_rule *r;
};

/* The netlink verb an operation sends, whatever object it is on. */
static enum sp_nft_op nft_verb(enum op_kind kind)
{
	switch (kind) {
	case OP_DEL_TABLE:
	case OP_DEL_SET:
	case OP_DEL_CHAIN:
	case OP_DEL_ELEM:
		return SP_NFT_OP_DEL;
	case OP_FLUSH_SET:
	case OP_FLUSH_CHAIN:
		return SP_NFT_OP_FLUSH;
	default:
		return SP_NFT_OP_ADD;
	}
}

/* Phases of a batch, in the order they are sent. */
enum phase {
	PH_TABLE,
	PH_NEW_SETS,
	PH_NEW_CHAINS,
	PH_DEL_ELEMS,
	PH_FLUSH,
	PH_ADD_ELEMS,
	PH_RULES,
	PH_DEL_CHAINS,
	PH_DEL_SETS,
	PH_COUNT,
};

struct op_list {
	struct op *ops;
	size_t n, cap;
};

struct plan_ops {
	struct op_list ph[PH_COUNT];
	size_t changed, unchanged, rules_total;
};

static void push(struct plan_ops *p, enum phase ph, struct op op)
{
	*(struct op *)sp_array_push(&p->ph[ph].ops, &p->ph[ph].n, &p->ph[ph].cap,
				    sizeof(struct op)) = op;
}

static void plan_ops_free(struct plan_ops *p)
{
	for (int i = 0; i < PH_COUNT; i++)
		free(p->ph[i].ops);
	memset(p, 0, sizeof(*p));
}

static size_t plan_ops_count(const struct plan_ops *p)
{
	size_t n = 0;

	for (int i = 0; i < PH_COUNT; i++)
		n += p->ph[i].n;
	return n;
}

/* ---- diff ---- */

static void add_whole_chain(struct plan_ops *p, const struct sp_nft_table *t,
			    const struct sp_nft_chain *c, bool create)
{
	if (create)
		push(p, PH_NEW_CHAINS, (struct op){.kind = OP_ADD_CHAIN, .t = t, .c = c});
	for (size_t i = 0; i < c->n_rules; i++)
		push(p, PH_RULES,
		     (struct op){.kind = OP_ADD_RULE, .t = t, .c = c, .r = &c->rules[i]});
}

static void add_whole_table(struct plan_ops *p, const struct sp_nft_table *t)
{
	push(p, PH_TABLE, (struct op){.kind = OP_ADD_TABLE, .t = t});
	for (size_t i = 0; i < t->n_sets; i++) {
		const struct sp_nft_set *s = &t->sets[i];

		push(p, PH_NEW_SETS, (struct op){.kind = OP_ADD_SET, .t = t, .s = s});
		for (size_t j = 0; j < s->n_elems; j++)
			push(p, PH_ADD_ELEMS,
			     (struct op){.kind = OP_ADD_ELEM, .t = t, .s = s, .e = &s->elems[j]});
		p->changed += 1 + s->n_elems;
	}
	for (size_t i = 0; i < t->n_chains; i++) {
		add_whole_chain(p, t, &t->chains[i], true);
		p->rules_total += t->chains[i].n_rules;
	}
	p->changed += t->n_chains;
}

/* A chain read back from the kernel carries signatures; one this process
 * programmed carries statements. */
static bool chain_same(int family, const struct sp_nft_chain *want, const struct sp_nft_chain *have)
{
	if (want->base != have->base || want->n_rules != have->n_rules)
		return false;
	if (want->base && (strcmp(want->type, have->type) || want->hook != have->hook ||
			   want->prio != have->prio))
		return false;
	for (size_t i = 0; i < want->n_rules; i++) {
		const struct sp_nft_rule *h = &have->rules[i];

		if (h->foreign) {
			char *sig = sp_nft_rule_signature(family, &want->rules[i]);
			bool same = !strcmp(sig, h->foreign);

			if (!same && getenv("SVCPROXY_NFT_DEBUG"))
				fprintf(stderr, "want %s\nhave %s\n", sig, h->foreign);

			free(sig);
			if (!same)
				return false;
		} else if (!sp_nft_rule_equal(&want->rules[i], h)) {
			return false;
		}
	}
	return true;
}

static bool base_same(const struct sp_nft_chain *a, const struct sp_nft_chain *b)
{
	return a->base == b->base && (!a->base || (!strcmp(a->type, b->type) &&
						   a->hook == b->hook && a->prio == b->prio));
}

static void diff_elems(struct plan_ops *p, const struct sp_nft_table *t,
		       const struct sp_nft_set *want, const struct sp_nft_set *have)
{
	size_t i = 0, j = 0;

	while (i < want->n_elems || j < have->n_elems) {
		int cmp = i == want->n_elems   ? 1
			  : j == have->n_elems ? -1
					       : sp_nft_elem_cmp(&want->elems[i], &have->elems[j]);

		if (cmp < 0) {
			push(p, PH_ADD_ELEMS,
			     (struct op){.kind = OP_ADD_ELEM,
					 .t = t,
					 .s = want,
					 .e = &want->elems[i++]});
			p->changed++;
		} else if (cmp > 0) {
			push(p, PH_DEL_ELEMS,
			     (struct op){.kind = OP_DEL_ELEM,
					 .t = t,
					 .s = have,
					 .e = &have->elems[j++]});
			p->changed++;
		} else {
			if (!sp_nft_elem_equal(&want->elems[i], &have->elems[j])) {
				push(p, PH_DEL_ELEMS,
				     (struct op){.kind = OP_DEL_ELEM,
						 .t = t,
						 .s = have,
						 .e = &have->elems[j]});
				push(p, PH_ADD_ELEMS,
				     (struct op){.kind = OP_ADD_ELEM,
						 .t = t,
						 .s = want,
						 .e = &want->elems[i]});
				p->changed++;
			} else {
				p->unchanged++;
			}
			i++;
			j++;
		}
	}
}

/* Sets must agree in type, or the table is rebuilt in the same transaction
 * (a set cannot change type in place, and rebuilding is simpler than
 * tracking every rule bound to it). */
static bool sets_compatible(const struct sp_nft_table *want, const struct sp_nft_table *have)
{
	for (size_t i = 0; i < want->n_sets; i++) {
		const struct sp_nft_set *h = sp_nft_set_find(have, want->sets[i].name);

		if (h && !sp_nft_set_same_type(&want->sets[i], h))
			return false;
	}
	for (size_t i = 0; i < have->n_sets; i++)
		if (have->sets[i].key == SP_NFT_KEY_NONE)
			return false;
	return true;
}

/* The affinity map of a Service port forgets its clients when the
 * endpoints of that port change, so nobody sticks to a removed endpoint. */
static bool affinity_chains_changed(const struct sp_nft_set *s, const char *const *changed,
				    size_t n_changed)
{
	const char *tag = s->name + strlen("aff-");

	for (size_t i = 0; i < n_changed; i++) {
		const char *dash = strchr(changed[i], '-');

		if (dash && !strcmp(dash + 1, tag) &&
		    (!strncmp(changed[i], "svc-", 4) || !strncmp(changed[i], "local-", 6)))
			return true;
	}
	return false;
}

static void diff_table(struct plan_ops *p, const struct sp_nft_table *want,
		       const struct sp_nft_table *have)
{
	const char **changed = NULL;
	size_t n_changed = 0, cap_changed = 0;
	struct sp_nft_chain_index want_ix, have_ix;

	if (!sets_compatible(want, have)) {
		push(p, PH_TABLE, (struct op){.kind = OP_DEL_TABLE, .t = have});
		add_whole_table(p, want);
		return;
	}
	for (size_t i = 0; i < want->n_sets; i++) {
		const struct sp_nft_set *s = &want->sets[i];
		const struct sp_nft_set *h = sp_nft_set_find(have, s->name);

		if (!h) {
			push(p, PH_NEW_SETS, (struct op){.kind = OP_ADD_SET, .t = want, .s = s});
			for (size_t j = 0; j < s->n_elems; j++)
				push(p, PH_ADD_ELEMS,
				     (struct op){.kind = OP_ADD_ELEM,
						 .t = want,
						 .s = s,
						 .e = &s->elems[j]});
			p->changed += 1 + s->n_elems;
		} else if (!s->affinity) {
			diff_elems(p, want, s, h);
		}
	}
	sp_nft_chain_index_build(&want_ix, want);
	sp_nft_chain_index_build(&have_ix, have);
	for (size_t i = 0; i < want->n_chains; i++) {
		const struct sp_nft_chain *c = &want->chains[i];
		const struct sp_nft_chain *h = sp_nft_chain_index_find(&have_ix, c->name);

		p->rules_total += c->n_rules;
		if (h && chain_same(want->family, c, h)) {
			p->unchanged++;
			continue;
		}
		p->changed++;
		*(const char **)sp_array_push(&changed, &n_changed, &cap_changed,
					      sizeof(*changed)) = c->name;
		if (h && !base_same(c, h)) {
			/* A base chain with other hook properties is
			 * replaced: flush, delete, create again. */
			push(p, PH_FLUSH, (struct op){.kind = OP_FLUSH_CHAIN, .t = have, .c = h});
			push(p, PH_DEL_CHAINS,
			     (struct op){.kind = OP_DEL_CHAIN, .t = have, .c = h});
			push(p, PH_DEL_CHAINS,
			     (struct op){.kind = OP_ADD_CHAIN, .t = want, .c = c});
			for (size_t j = 0; j < c->n_rules; j++)
				push(p, PH_DEL_CHAINS,
				     (struct op){.kind = OP_ADD_RULE,
						 .t = want,
						 .c = c,
						 .r = &c->rules[j]});
			continue;
		}
		if (h)
			push(p, PH_FLUSH, (struct op){.kind = OP_FLUSH_CHAIN, .t = want, .c = c});
		add_whole_chain(p, want, c, !h);
	}
	for (size_t i = 0; i < have->n_chains; i++) {
		const struct sp_nft_chain *h = &have->chains[i];

		if (sp_nft_chain_index_find(&want_ix, h->name))
			continue;
		push(p, PH_FLUSH, (struct op){.kind = OP_FLUSH_CHAIN, .t = have, .c = h});
		push(p, PH_DEL_CHAINS, (struct op){.kind = OP_DEL_CHAIN, .t = have, .c = h});
		p->changed++;
	}
	for (size_t i = 0; i < have->n_sets; i++) {
		const struct sp_nft_set *h = &have->sets[i];

		if (sp_nft_set_find(want, h->name))
			continue;
		push(p, PH_DEL_SETS, (struct op){.kind = OP_DEL_SET, .t = have, .s = h});
		p->changed++;
	}
	for (size_t i = 0; i < want->n_sets; i++) {
		const struct sp_nft_set *s = &want->sets[i];

		if (s->affinity && sp_nft_set_find(have, s->name) &&
		    affinity_chains_changed(s, changed, n_changed))
			push(p, PH_FLUSH, (struct op){.kind = OP_FLUSH_SET, .t = want, .s = s});
	}
	sp_nft_chain_index_free(&want_ix);
	sp_nft_chain_index_free(&have_ix);
	free(changed);
}

/* have[i] is NULL when the family's table does not exist. */
static void diff_ruleset(struct plan_ops *p, const struct sp_nft_ruleset *want,
			 const struct sp_nft_table *const have[2])
{
	for (size_t f = 0; f < SP_ARRAY_SIZE(families); f++) {
		const struct sp_nft_table *w = sp_nft_table_find(want, families[f]);

		if (w && have[f])
			diff_table(p, w, have[f]);
		else if (w)
			add_whole_table(p, w);
		else if (have[f]) {
			push(p, PH_TABLE, (struct op){.kind = OP_DEL_TABLE, .t = have[f]});
			p->changed++;
		}
	}
}

/* ---- encoding and printing the operations ---- */

static void encode_ops(struct sp_nl *nl, struct sp_nl_batch *b, const struct plan_ops *p)
{
	sp_nft_put_batch_begin(nl, b);
	for (int ph = 0; ph < PH_COUNT; ph++) {
		const struct op_list *l = &p->ph[ph];

		for (size_t i = 0; i < l->n; i++) {
			const struct op *o = &l->ops[i];

			switch (o->kind) {
			case OP_ADD_TABLE:
			case OP_DEL_TABLE:
				sp_nft_put_table(nl, b, o->t->family, o->t->name,
						 nft_verb(o->kind));
				break;
			case OP_ADD_SET:
			case OP_DEL_SET:
			case OP_FLUSH_SET:
				sp_nft_put_set(nl, b, o->t, o->s, nft_verb(o->kind));
				break;
			case OP_ADD_CHAIN:
			case OP_DEL_CHAIN:
			case OP_FLUSH_CHAIN:
				sp_nft_put_chain(nl, b, o->t, o->c, nft_verb(o->kind));
				break;
			case OP_ADD_ELEM:
			case OP_DEL_ELEM: {
				/* Consecutive elements of one map share messages. */
				const struct sp_nft_elem **run = NULL;
				size_t n = 0, cap = 0, j = i;

				while (j < l->n && l->ops[j].kind == o->kind &&
				       l->ops[j].s == o->s) {
					*(const struct sp_nft_elem **)sp_array_push(
						&run, &n, &cap, sizeof(*run)) = l->ops[j].e;
					j++;
				}
				sp_nft_put_elems(nl, b, o->t, o->s, run, n,
						 o->kind == OP_ADD_ELEM ? SP_NFT_OP_ADD
									: SP_NFT_OP_DEL);
				free(run);
				i = j - 1;
				break;
			}
			case OP_ADD_RULE:
				sp_nft_put_rule(nl, b, o->t, o->c, o->r);
				break;
			}
		}
	}
	sp_nft_put_batch_end(nl, b);
}

/* ops as one transaction, when there is anything to send: -1 when the
 * kernel refused it, which leaves the previous rules in place. */
static int send_ops(struct sp_nl *nl, const struct plan_ops *ops, struct sp_sync_stats *stats,
		    struct sp_diag *diag)
{
	struct sp_nl_batch batch;
	int ret = 0;

	if (!plan_ops_count(ops))
		return 0;
	sp_nl_batch_init(&batch);
	encode_ops(nl, &batch, ops);
	stats->messages_sent = batch.n_msgs;
	if (sp_nl_batch_send(nl, &batch, "nftables", diag) < 0) {
		sp_diag_error(diag, "nftables: the transaction was refused as a whole; "
				    "the previous rules are still in place");
		ret = -1;
	}
	sp_nl_batch_free(&batch);
	return ret;
}

static void print_elem_key(const struct sp_nft_table *t, const struct sp_nft_set *s,
			   const struct sp_nft_elem *e, struct sp_buf *out)
{
	char a[SP_ADDRSTRLEN];

	if (s->key == SP_NFT_KEY_SADDR_DADDR) {
		sp_nft_print_elem(t, s, e, out);
		return;
	}
	if (s->key == SP_NFT_KEY_DADDR_PORT_SLOT || s->key == SP_NFT_KEY_PORT_SLOT) {
		if (s->key == SP_NFT_KEY_DADDR_PORT_SLOT)
			sp_buf_addf(out, "%s . ", sp_addr_format(&e->addr, a));
		sp_buf_addf(out, "%u . %u", e->port, e->slot);
		return;
	}
	if (s->key == SP_NFT_KEY_DADDR_PROTO_PORT)
		sp_buf_addf(out, "%s . ", sp_addr_format(&e->addr, a));
	sp_buf_addf(out, "%s . %u", sp_proto_name_lower(e->proto), e->port);
}

static void print_ops(const struct plan_ops *p, struct sp_buf *out)
{
	for (int ph = 0; ph < PH_COUNT; ph++) {
		for (size_t i = 0; i < p->ph[ph].n; i++) {
			const struct op *o = &p->ph[ph].ops[i];
			const char *fam = sp_nft_family_name(o->t->family);

			switch (o->kind) {
			case OP_ADD_TABLE:
				sp_buf_addf(out, "add table %s %s\n", fam, o->t->name);
				break;
			case OP_DEL_TABLE:
				sp_buf_addf(out, "delete table %s %s\n", fam, o->t->name);
				break;
			case OP_ADD_SET:
				sp_buf_addf(out, "add table %s %s { ", fam, o->t->name);
				sp_nft_print_set_decl(o->t, o->s, "", out);
				out->len--; /* the declaration's newline */
				out->data[out->len] = 0;
				sp_buf_add(out, " }\n");
				break;
			case OP_DEL_SET:
				sp_buf_addf(out, "delete %s %s %s %s\n",
					    o->s->plain ? "set" : "map", fam, o->t->name,
					    o->s->name);
				break;
			case OP_FLUSH_SET:
				sp_buf_addf(out, "flush map %s %s %s\n", fam, o->t->name,
					    o->s->name);
				break;
			case OP_ADD_CHAIN:
				sp_buf_addf(out, "add chain %s %s %s", fam, o->t->name, o->c->name);
				if (o->c->base) {
					sp_buf_add(out, " { ");
					sp_nft_print_chain_decl(o->c, out);
					sp_buf_add(out, " }");
				}
				sp_buf_add(out, "\n");
				break;
			case OP_DEL_CHAIN:
				sp_buf_addf(out, "delete chain %s %s %s\n", fam, o->t->name,
					    o->c->name);
				break;
			case OP_FLUSH_CHAIN:
				sp_buf_addf(out, "flush chain %s %s %s\n", fam, o->t->name,
					    o->c->name);
				break;
			case OP_ADD_ELEM:
				sp_buf_addf(out, "add element %s %s %s { ", fam, o->t->name,
					    o->s->name);
				sp_nft_print_elem(o->t, o->s, o->e, out);
				sp_buf_add(out, " }\n");
				break;
			case OP_DEL_ELEM:
				sp_buf_addf(out, "delete element %s %s %s { ", fam, o->t->name,
					    o->s->name);
				print_elem_key(o->t, o->s, o->e, out);
				sp_buf_add(out, " }\n");
				break;
			case OP_ADD_RULE:
				sp_buf_addf(out, "add rule %s %s %s ", fam, o->t->name, o->c->name);
				sp_nft_print_rule(o->t, o->r, out);
				sp_buf_add(out, "\n");
				break;
			}
		}
	}
}

/* ---- the previous plan, for incremental syncs ----
 *
 * A partial sync (full = false, the daemon's path on every change) gets the
 * whole new plan. Lowering and diffing all of it costs O(Services) (0.2 s
 * of CPU at 10,000), while comparing a Service port with its previous
 * version is a few field compares. So the previous plan is kept, ports are
 * compared in plan order, and only the ports that changed are lowered, old
 * and new version each into a small table, whose diff is what is sent. */

static void *dup_array(const void *src, size_t n, size_t size)
{
	void *p;

	if (!n)
		return NULL;
	p = sp_xmalloc(n * size);
	memcpy(p, src, n * size);
	return p;
}

/* Only the fields the lowering reads (svcport_equal compares them all). */
static void svcport_copy(struct sp_plan_svcport *d, const struct sp_plan_svcport *s)
{
	*d = *s;
	d->namespace = sp_xstrdup(s->namespace);
	d->name = sp_xstrdup(s->name);
	d->port_name = sp_xstrdup(s->port_name);
	d->id = NULL;
	d->ipvs_scheduler = NULL;
	d->external_ips = dup_array(s->external_ips, s->n_external_ips, sizeof(*s->external_ips));
	d->lb_ips = dup_array(s->lb_ips, s->n_lb_ips, sizeof(*s->lb_ips));
	d->source_ranges =
		dup_array(s->source_ranges, s->n_source_ranges, sizeof(*s->source_ranges));
	d->endpoints = dup_array(s->endpoints, s->n_endpoints, sizeof(*s->endpoints));
	for (size_t i = 0; i < s->n_endpoints; i++) {
		d->endpoints[i].node_name = NULL;
		d->endpoints[i].target_name = NULL;
	}
	d->cluster.idx = dup_array(s->cluster.idx, s->cluster.n, sizeof(*s->cluster.idx));
	d->local.idx = dup_array(s->local.idx, s->local.n, sizeof(*s->local.idx));
}

static void svcport_release(struct sp_plan_svcport *sp)
{
	free(sp->namespace);
	free(sp->name);
	free(sp->port_name);
	free(sp->external_ips);
	free(sp->lb_ips);
	free(sp->source_ranges);
	free(sp->endpoints);
	free(sp->cluster.idx);
	free(sp->local.idx);
	memset(sp, 0, sizeof(*sp));
}

static void prev_release(struct sp_plan *p)
{
	for (size_t i = 0; i < p->n_svcports; i++)
		svcport_release(&p->svcports[i]);
	free(p->svcports);
	free(p->nodeport_addrs);
	free(p->cluster_cidrs);
	memset(p, 0, sizeof(*p));
}

static void prev_copy_globals(struct sp_plan *d, const struct sp_plan *s)
{
	d->nodeport_all_local = s->nodeport_all_local;
	d->nodeport_addrs =
		dup_array(s->nodeport_addrs, s->n_nodeport_addrs, sizeof(*s->nodeport_addrs));
	d->n_nodeport_addrs = s->n_nodeport_addrs;
	d->cluster_cidrs =
		dup_array(s->cluster_cidrs, s->n_cluster_cidrs, sizeof(*s->cluster_cidrs));
	d->n_cluster_cidrs = s->n_cluster_cidrs;
	d->masquerade_all = s->masquerade_all;
	d->masquerade_mark = s->masquerade_mark;
}

static bool addrs_equal(const struct sp_addr *a, const struct sp_addr *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!sp_addr_equal(&a[i], &b[i]))
			return false;
	return true;
}

static bool cidrs_equal(const struct sp_cidr *a, const struct sp_cidr *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (a[i].prefix != b[i].prefix || !sp_addr_equal(&a[i].addr, &b[i].addr))
			return false;
	return true;
}

static bool globals_equal(const struct sp_plan *a, const struct sp_plan *b)
{
	return a->nodeport_all_local == b->nodeport_all_local &&
	       a->n_nodeport_addrs == b->n_nodeport_addrs &&
	       addrs_equal(a->nodeport_addrs, b->nodeport_addrs, a->n_nodeport_addrs) &&
	       a->n_cluster_cidrs == b->n_cluster_cidrs &&
	       cidrs_equal(a->cluster_cidrs, b->cluster_cidrs, a->n_cluster_cidrs) &&
	       a->masquerade_all == b->masquerade_all && a->masquerade_mark == b->masquerade_mark;
}

static bool ep_set_equal(const struct sp_plan_ep_set *a, const struct sp_plan_ep_set *b)
{
	return a->n == b->n && (!a->n || !memcmp(a->idx, b->idx, a->n * sizeof(*a->idx)));
}

static bool endpoints_equal(const struct sp_plan_svcport *a, const struct sp_plan_svcport *b)
{
	if (a->n_endpoints != b->n_endpoints)
		return false;
	for (size_t i = 0; i < a->n_endpoints; i++) {
		const struct sp_plan_endpoint *x = &a->endpoints[i], *y = &b->endpoints[i];

		if (x->port != y->port || x->local != y->local || x->ready != y->ready ||
		    x->serving != y->serving || x->terminating != y->terminating ||
		    !sp_addr_equal(&x->addr, &y->addr))
			return false;
	}
	return ep_set_equal(&a->cluster, &b->cluster) && ep_set_equal(&a->local, &b->local);
}

/* Every field the lowering reads. */
static bool svcport_equal(const struct sp_plan_svcport *a, const struct sp_plan_svcport *b)
{
	return a->family == b->family && a->protocol == b->protocol && a->type == b->type &&
	       a->port == b->port && a->node_port == b->node_port &&
	       a->external_policy_local == b->external_policy_local &&
	       a->internal_policy_local == b->internal_policy_local && a->affinity == b->affinity &&
	       a->affinity_timeout == b->affinity_timeout &&
	       a->has_any_endpoints == b->has_any_endpoints &&
	       sp_addr_equal(&a->cluster_ip, &b->cluster_ip) &&
	       a->n_external_ips == b->n_external_ips &&
	       addrs_equal(a->external_ips, b->external_ips, a->n_external_ips) &&
	       a->n_lb_ips == b->n_lb_ips && addrs_equal(a->lb_ips, b->lb_ips, a->n_lb_ips) &&
	       a->n_source_ranges == b->n_source_ranges &&
	       cidrs_equal(a->source_ranges, b->source_ranges, a->n_source_ranges) &&
	       !strcmp(a->namespace, b->namespace) && !strcmp(a->name, b->name) &&
	       !strcmp(a->port_name, b->port_name) && endpoints_equal(a, b);
}

struct port_changes {
	const struct sp_plan_svcport **olds, **news;
	size_t n_old, cap_old, n_new, cap_new;
	/* kept[j]: the previous port equal to the plan's port j, else NULL */
	struct sp_plan_svcport **kept;
};

static void port_changes_free(struct port_changes *pc)
{
	free(pc->olds);
	free(pc->news);
	free(pc->kept);
}

static void push_port(const struct sp_plan_svcport ***v, size_t *n, size_t *cap,
		      const struct sp_plan_svcport *sp)
{
	*(const struct sp_plan_svcport **)sp_array_push(v, n, cap, sizeof(**v)) = sp;
}

/* Walk both sorted port lists; false when either is out of order or the
 * families present differ (a table would appear or vanish). */
static bool compare_ports(struct sp_plan *prev, const struct sp_plan *plan, struct port_changes *pc)
{
	size_t i = 0, j = 0;
	bool v6_old = false, v6_new = false;

	pc->kept = sp_xcalloc(plan->n_svcports + 1, sizeof(*pc->kept));
	while (i < prev->n_svcports || j < plan->n_svcports) {
		struct sp_plan_svcport *o = i < prev->n_svcports ? &prev->svcports[i] : NULL;
		const struct sp_plan_svcport *n = j < plan->n_svcports ? &plan->svcports[j] : NULL;
		int cmp = !o ? 1 : !n ? -1 : sp_plan_svcport_cmp(o, n);

		if (cmp <= 0) {
			if (i && sp_plan_svcport_cmp(&prev->svcports[i - 1], o) >= 0)
				return false;
			v6_old |= o->family == AF_INET6;
			i++;
		}
		if (cmp >= 0) {
			if (j && sp_plan_svcport_cmp(&plan->svcports[j - 1], n) >= 0)
				return false;
			v6_new |= n->family == AF_INET6;
			j++;
		}
		if (cmp == 0 && svcport_equal(o, n)) {
			pc->kept[j - 1] = o;
			continue;
		}
		if (cmp <= 0)
			push_port(&pc->olds, &pc->n_old, &pc->cap_old, o);
		if (cmp >= 0)
			push_port(&pc->news, &pc->n_new, &pc->cap_new, n);
	}
	return v6_old == v6_new;
}

/* The new previous plan: unchanged ports move over, changed ones are
 * copied from the plan. */
static void prev_advance(struct sp_plan *prev, const struct sp_plan *plan,
			 struct sp_plan_svcport **kept)
{
	struct sp_plan_svcport *v;
	bool in_place = prev->n_svcports == plan->n_svcports;

	/* Same ports (the usual change): replace the changed ones where they
	 * are rather than moving 10,000 ports to a new array. */
	for (size_t j = 0; in_place && j < plan->n_svcports; j++)
		in_place = !kept[j] || kept[j] == &prev->svcports[j];
	if (in_place) {
		for (size_t j = 0; j < plan->n_svcports; j++) {
			if (kept[j])
				continue;
			svcport_release(&prev->svcports[j]);
			svcport_copy(&prev->svcports[j], &plan->svcports[j]);
		}
		return;
	}
	v = sp_xcalloc(plan->n_svcports + 1, sizeof(*v));
	for (size_t j = 0; j < plan->n_svcports; j++) {
		if (kept[j]) {
			v[j] = *kept[j];
			memset(kept[j], 0, sizeof(*kept[j]));
		} else {
			svcport_copy(&v[j], &plan->svcports[j]);
		}
	}
	for (size_t i = 0; i < prev->n_svcports; i++)
		svcport_release(&prev->svcports[i]);
	free(prev->svcports);
	prev->svcports = v;
	prev->n_svcports = plan->n_svcports;
}

static void prev_replace(struct sp_plan *prev, const struct sp_plan *plan)
{
	prev_release(prev);
	prev_copy_globals(prev, plan);
	prev->svcports = sp_xcalloc(plan->n_svcports + 1, sizeof(*prev->svcports));
	for (size_t j = 0; j < plan->n_svcports; j++)
		svcport_copy(&prev->svcports[j], &plan->svcports[j]);
	prev->n_svcports = plan->n_svcports;
}

static bool is_pick_chain(const struct sp_nft_chain *c)
{
	return !strncmp(c->name, "pick-", 5);
}

/* Of a full lowering, keep only the fixed maps and the shared pick chains. */
static void keep_fixed_sets(struct sp_nft_ruleset *rs)
{
	for (size_t t = 0; t < rs->n_tables; t++) {
		struct sp_nft_table *tb = &rs->tables[t];
		size_t kept = 0;

		for (size_t i = 0; i < tb->n_chains; i++) {
			if (is_pick_chain(&tb->chains[i]))
				tb->chains[kept++] = tb->chains[i];
			else
				sp_nft_chain_free(&tb->chains[i]);
		}
		tb->n_chains = kept;
		for (size_t i = SP_NFT_FS_COUNT; i < tb->n_sets; i++)
			sp_nft_set_free(&tb->sets[i]);
		if (tb->n_sets > SP_NFT_FS_COUNT)
			tb->n_sets = SP_NFT_FS_COUNT;
	}
}

static const struct sp_nft_elem *find_elem(const struct sp_nft_set *s, const struct sp_nft_elem *e)
{
	size_t lo = 0, hi = s->n_elems;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int cmp = sp_nft_elem_cmp(e, &s->elems[mid]);

		if (!cmp)
			return &s->elems[mid];
		if (cmp < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* A key a changed port now claims that an unchanged port holds: the first
 * port in plan order must win, which only a whole lowering decides. */
static bool claims_held_key(const struct sp_nft_table *last, const struct sp_nft_table *old_t,
			    const struct sp_nft_table *new_t)
{
	for (size_t k = 0; k < SP_NFT_FS_COUNT; k++) {
		const struct sp_nft_set *ns = &new_t->sets[k];

		if (k == SP_NFT_FS_HAIRPIN)
			continue;

		for (size_t i = 0; i < ns->n_elems; i++)
			if (!last || (find_elem(&last->sets[k], &ns->elems[i]) &&
				      !find_elem(&old_t->sets[k], &ns->elems[i])))
				return true;
	}
	return false;
}

static bool affinity_types_kept(const struct sp_nft_table *old_t, const struct sp_nft_table *new_t)
{
	for (size_t i = SP_NFT_FS_COUNT; i < new_t->n_sets; i++) {
		const struct sp_nft_set *h = sp_nft_set_find(old_t, new_t->sets[i].name);

		if (h && !sp_nft_set_same_type(&new_t->sets[i], h))
			return false;
	}
	return true;
}

static int addr_qcmp(const void *a, const void *b)
{
	return sp_addr_cmp(a, b);
}

static void local_addrs(const struct sp_plan_svcport *const *sps, size_t n, int family,
			struct sp_addr **v, size_t *nv)
{
	size_t cap = 0, kept = 0;

	*v = NULL;
	*nv = 0;
	for (size_t i = 0; i < n; i++) {
		if (sps[i]->family != family)
			continue;
		for (size_t j = 0; j < sps[i]->n_endpoints; j++)
			if (sps[i]->endpoints[j].local)
				*(struct sp_addr *)sp_array_push(v, nv, &cap, sizeof(**v)) =
					sps[i]->endpoints[j].addr;
	}
	if (*nv)
		qsort(*v, *nv, sizeof(**v), addr_qcmp);
	for (size_t i = 0; i < *nv; i++)
		if (!kept || !sp_addr_equal(&(*v)[kept - 1], &(*v)[i]))
			(*v)[kept++] = (*v)[i];
	*nv = kept;
}

static bool addr_in(const struct sp_addr *v, size_t n, const struct sp_addr *a)
{
	return n && bsearch(a, v, n, sizeof(*v), addr_qcmp);
}

/* hairpin-endpoints holds every local endpoint of every port: of the
 * addresses the changed ports had or have, the old fragment gets those the
 * map holds and the new one those some port of the plan still has. */
static void fill_hairpin(const struct sp_plan *plan, const struct port_changes *pc,
			 const struct sp_nft_table *last, struct sp_nft_table *old_t,
			 struct sp_nft_table *new_t)
{
	struct sp_addr *was, *is, *gone = NULL;
	size_t n_was, n_is, n_gone = 0, cap_gone = 0;
	bool *still;

	local_addrs(pc->olds, pc->n_old, old_t->family, &was, &n_was);
	local_addrs(pc->news, pc->n_new, new_t->family, &is, &n_is);
	for (size_t i = 0; i < n_was; i++)
		if (!addr_in(is, n_is, &was[i]))
			*(struct sp_addr *)sp_array_push(&gone, &n_gone, &cap_gone, sizeof(*gone)) =
				was[i];
	still = sp_xcalloc(n_gone + 1, sizeof(*still));
	for (size_t i = 0; n_gone && i < plan->n_svcports; i++) {
		const struct sp_plan_svcport *sp = &plan->svcports[i];

		if (sp->family != new_t->family)
			continue;
		for (size_t j = 0; j < sp->n_endpoints; j++) {
			const struct sp_addr *a;

			if (!sp->endpoints[j].local)
				continue;
			a = bsearch(&sp->endpoints[j].addr, gone, n_gone, sizeof(*gone), addr_qcmp);
			if (a)
				still[a - gone] = true;
		}
	}
	/* Union of was and is, in order, so that both fragments stay sorted. */
	for (size_t i = 0, j = 0; i < n_was || j < n_is;) {
		int cmp = i == n_was ? 1 : j == n_is ? -1 : sp_addr_cmp(&was[i], &is[j]);
		const struct sp_addr *a = cmp <= 0 ? &was[i] : &is[j];
		struct sp_nft_elem key = {.addr = *a};
		bool present = last && find_elem(&last->sets[SP_NFT_FS_HAIRPIN], &key);
		bool wanted = cmp >= 0;

		if (cmp < 0) {
			const struct sp_addr *g =
				bsearch(a, gone, n_gone, sizeof(*gone), addr_qcmp);

			wanted = g && still[g - gone];
		}
		if (present)
			sp_nft_elem_add(&old_t->sets[SP_NFT_FS_HAIRPIN])->addr = *a;
		if (wanted)
			sp_nft_elem_add(&new_t->sets[SP_NFT_FS_HAIRPIN])->addr = *a;
		if (cmp <= 0)
			i++;
		if (cmp >= 0)
			j++;
	}
	free(was);
	free(is);
	free(gone);
	free(still);
}

/* The common change, an endpoint replaced: the fragments have the same
 * keys, all in last, whose elements then take the new data in place
 * (the endpoint map holds every endpoint of every port: merging it into a
 * new array costs milliseconds at 10,000 Services). */
static bool patch_in_place(struct sp_nft_set *ls, const struct sp_nft_set *os,
			   struct sp_nft_set *ns)
{
	if (os->n_elems != ns->n_elems)
		return false;
	for (size_t i = 0; i < ns->n_elems; i++)
		if (sp_nft_elem_cmp(&os->elems[i], &ns->elems[i]) || !find_elem(ls, &ns->elems[i]))
			return false;
	for (size_t i = 0; i < ns->n_elems; i++) {
		struct sp_nft_elem *e = (struct sp_nft_elem *)find_elem(ls, &ns->elems[i]);

		free(e->chain);
		*e = ns->elems[i];
		ns->elems[i].chain = NULL;
	}
	return true;
}

/* last's fixed maps after the change: old fragment's elements out, new
 * fragment's in (moved). */
static void patch_fixed_sets(struct sp_nft_table *last, const struct sp_nft_table *old_t,
			     struct sp_nft_table *new_t)
{
	for (size_t k = 0; k < SP_NFT_FS_COUNT; k++) {
		struct sp_nft_set *ls = &last->sets[k], *ns = &new_t->sets[k];
		const struct sp_nft_set *os = &old_t->sets[k];
		struct sp_nft_elem *v;
		size_t n = 0, i = 0, j = 0, cap = ls->n_elems + ns->n_elems + 1;

		if ((!os->n_elems && !ns->n_elems) || patch_in_place(ls, os, ns))
			continue;
		v = sp_xcalloc(cap, sizeof(*v));
		while (i < ls->n_elems || j < ns->n_elems) {
			int cmp = i == ls->n_elems ? 1
				  : j == ns->n_elems
					  ? -1
					  : sp_nft_elem_cmp(&ls->elems[i], &ns->elems[j]);

			if (cmp < 0 && find_elem(os, &ls->elems[i])) {
				free(ls->elems[i++].chain);
			} else if (cmp < 0) {
				v[n++] = ls->elems[i++];
			} else {
				if (cmp == 0) /* replaced: it was the old fragment's */
					free(ls->elems[i++].chain);
				v[n++] = ns->elems[j];
				ns->elems[j++].chain = NULL;
			}
		}
		free(ls->elems);
		ls->elems = v;
		ls->n_elems = n;
		ls->cap_elems = cap;
	}
}

static void copy_chain(struct sp_nft_table *dst, const struct sp_nft_chain *c)
{
	struct sp_nft_chain *d = sp_nft_chain_add(dst, c->name);

	for (size_t i = 0; i < c->n_rules; i++) {
		struct sp_nft_rule *r = sp_nft_rule_add(d);

		for (size_t j = 0; j < c->rules[i].n_stmts; j++) {
			const struct sp_nft_stmt *from = &c->rules[i].stmts[j];
			struct sp_nft_stmt *to = sp_nft_stmt_add(r, from->kind);

			*to = *from;
			to->set = from->set ? sp_xstrdup(from->set) : NULL;
			to->chain = from->chain ? sp_xstrdup(from->chain) : NULL;
		}
	}
}

/* The pick chains are shared by every port with the same endpoint map and
 * count: those the new plan needs (picks) and last lacks go into the new
 * fragment, those last has and the plan no longer needs into the old one,
 * so that the fragments' diff creates and deletes them. */
static void diff_pick_chains(const struct sp_nft_table *last, const struct sp_nft_table *picks,
			     struct sp_nft_table *old_t, struct sp_nft_table *new_t)
{
	struct sp_nft_chain_index have, want;

	sp_nft_chain_index_build(&have, last);
	sp_nft_chain_index_build(&want, picks);
	for (size_t i = 0; i < picks->n_chains; i++)
		if (!sp_nft_chain_index_find(&have, picks->chains[i].name))
			copy_chain(new_t, &picks->chains[i]);
	for (size_t i = 0; i < last->n_chains; i++)
		if (!sp_nft_chain_index_find(&want, last->chains[i].name))
			copy_chain(old_t, &last->chains[i]);
	sp_nft_chain_index_free(&have);
	sp_nft_chain_index_free(&want);
}

static void replace_chains(struct sp_nft_table *dst, struct sp_nft_table *src)
{
	for (size_t i = 0; i < dst->n_chains; i++)
		sp_nft_chain_free(&dst->chains[i]);
	free(dst->chains);
	dst->chains = src->chains;
	dst->n_chains = src->n_chains;
	dst->cap_chains = src->cap_chains;
	src->chains = NULL;
	src->n_chains = src->cap_chains = 0;
}

static size_t count_rules(const struct sp_nft_table *t)
{
	size_t n = 0;

	for (size_t i = 0; i < t->n_chains; i++)
		n += t->chains[i].n_rules;
	return n;
}

enum { INCR_FALLBACK = 1 };

/* The partial sync: only the ports that changed since the previous plan.
 * Returns 0, -1 (refused; diag), or INCR_FALLBACK when only a whole
 * lowering can tell what to do (global settings changed, a family appears
 * or vanishes, conflicting keys, an affinity map changing type). */
static int incremental_sync(struct sp_backend *be, const struct sp_plan *plan,
			    struct sp_sync_stats *stats, struct sp_diag *diag)
{
	struct sp_nft_ruleset olds = {0}, news = {0};
	struct sp_nft_table picks[SP_ARRAY_SIZE(families)] = {0};
	struct port_changes pc = {0};
	struct plan_ops ops = {0};
	ssize_t rules_delta = 0;
	int ret = INCR_FALLBACK;

	if (!globals_equal(&be->prev, plan) || !compare_ports(&be->prev, plan, &pc))
		goto out;
	if (!pc.n_old && !pc.n_new) {
		prev_advance(&be->prev, plan, pc.kept);
		stats->rules_total = be->rules_total;
		ret = 0;
		goto out;
	}
	if (be->prev_conflicts)
		goto out;
	sp_nft_lower_svcports(&be->prev, pc.olds, pc.n_old, &olds);
	if (sp_nft_lower_svcports(plan, pc.news, pc.n_new, &news))
		goto out;
	for (size_t f = 0; f < olds.n_tables; f++) {
		const struct sp_nft_table *last =
			sp_nft_table_find(&be->last, olds.tables[f].family);
		bool touched = olds.tables[f].n_chains || news.tables[f].n_chains;

		for (size_t k = 0; k < SP_NFT_FS_COUNT; k++)
			touched |= olds.tables[f].sets[k].n_elems || news.tables[f].sets[k].n_elems;
		if (!touched)
			continue;
		if (!last || claims_held_key(last, &olds.tables[f], &news.tables[f]) ||
		    !affinity_types_kept(&olds.tables[f], &news.tables[f]))
			goto out;
		fill_hairpin(plan, &pc, last, &olds.tables[f], &news.tables[f]);
		picks[f].family = olds.tables[f].family;
		sp_nft_pick_chains(plan, picks[f].family, &picks[f]);
		diff_pick_chains(last, &picks[f], &olds.tables[f], &news.tables[f]);
		diff_table(&ops, &news.tables[f], &olds.tables[f]);
		rules_delta += (ssize_t)count_rules(&news.tables[f]) -
			       (ssize_t)count_rules(&olds.tables[f]);
	}
	ret = 0;
	stats->objects_changed = ops.changed;
	stats->objects_unchanged = ops.unchanged;
	if (send_ops(be->nl, &ops, stats, diag) < 0)
		ret = -1;
	if (ret < 0) {
		be->have_prev = false;
		goto out;
	}
	for (size_t f = 0; f < news.n_tables; f++) {
		struct sp_nft_table *last = sp_nft_table_find(&be->last, news.tables[f].family);

		if (!last)
			continue;
		patch_fixed_sets(last, &olds.tables[f], &news.tables[f]);
		if (picks[f].family)
			replace_chains(last, &picks[f]);
	}
	be->rules_total = (size_t)((ssize_t)be->rules_total + rules_delta);
	stats->rules_total = be->rules_total;
	prev_advance(&be->prev, plan, pc.kept);
out:
	for (size_t f = 0; f < SP_ARRAY_SIZE(picks); f++)
		sp_nft_table_free(&picks[f]);
	plan_ops_free(&ops);
	sp_nft_ruleset_free(&olds);
	sp_nft_ruleset_free(&news);
	port_changes_free(&pc);
	return ret;
}

/* ---- backend operations ---- */

static void nft_print_plan(const struct sp_plan *plan, struct sp_buf *out)
{
	struct sp_nft_ruleset rs;

	sp_nft_lower(plan, &rs, NULL);
	sp_nft_print_ruleset(&rs, out);
	sp_nft_ruleset_free(&rs);
}

static void nft_print_plan_json(const struct sp_plan *plan, struct sp_buf *out)
{
	struct sp_nft_ruleset rs;

	sp_nft_lower(plan, &rs, NULL);
	sp_nft_print_ruleset_json(&rs, out);
	sp_nft_ruleset_free(&rs);
}

static struct sp_backend *nft_open(const struct sp_config *cfg, struct sp_diag *diag)
{
	struct sp_backend *be;
	struct sp_nl *nl;

	(void)cfg;
	nl = sp_nl_open(NETLINK_NETFILTER, diag);
	if (!nl)
		return NULL;
	be = sp_xcalloc(1, sizeof(*be));
	be->nl = nl;
	return be;
}

static void nft_close(struct sp_backend *be)
{
	if (!be)
		return;
	sp_nft_ruleset_free(&be->last);
	prev_release(&be->prev);
	sp_nl_close(be->nl);
	free(be);
}

/* The kernel's tables of both families; have[f] NULL when absent. */
static int read_kernel(struct sp_backend *be, struct sp_nft_ruleset *kernel,
		       const struct sp_nft_table *have[2], bool decode, struct sp_diag *diag)
{
	sp_nft_ruleset_init(kernel);
	for (size_t f = 0; f < SP_ARRAY_SIZE(families); f++) {
		struct sp_nft_table t;
		bool found = false;

		have[f] = NULL;
		if (sp_nft_read_table(be->nl, families[f], SP_NFT_TABLE, &t, &found, decode, diag) <
		    0) {
			sp_nft_table_free(&t);
			return -1;
		}
		if (!found) {
			sp_nft_table_free(&t);
			continue;
		}
		*(struct sp_nft_table *)sp_array_push(&kernel->tables, &kernel->n_tables,
						      &kernel->cap_tables, sizeof(t)) = t;
	}
	for (size_t f = 0; f < SP_ARRAY_SIZE(families); f++)
		have[f] = sp_nft_table_find(kernel, families[f]);
	return 0;
}

static int nft_sync(struct sp_backend *be, const struct sp_plan *plan, bool full,
		    struct sp_sync_stats *stats, struct sp_diag *diag)
{
	struct sp_nft_ruleset want, kernel;
	const struct sp_nft_table *have[2];
	struct plan_ops ops = {0};
	size_t conflicts;
	int ret = 0;

	memset(stats, 0, sizeof(*stats));
	full = full || !be->have_prev;
	stats->full = full;
	if (!full) {
		ret = incremental_sync(be, plan, stats, diag);
		if (ret != INCR_FALLBACK)
			return ret;
		memset(stats, 0, sizeof(*stats));
		ret = 0;
	}
	conflicts = sp_nft_lower(plan, &want, diag);
	sp_nft_ruleset_init(&kernel);
	if (full) {
		if (read_kernel(be, &kernel, have, false, diag) < 0) {
			sp_nft_ruleset_free(&want);
			sp_nft_ruleset_free(&kernel);
			return -1;
		}
	} else {
		/* What was last programmed, lowered again from its plan. */
		sp_nft_lower(&be->prev, &kernel, NULL);
		for (size_t f = 0; f < SP_ARRAY_SIZE(families); f++)
			have[f] = sp_nft_table_find(&kernel, families[f]);
	}
	diff_ruleset(&ops, &want, have);
	stats->objects_changed = ops.changed;
	stats->objects_unchanged = ops.unchanged;
	stats->rules_total = ops.rules_total;
	if (send_ops(be->nl, &ops, stats, diag) < 0)
		ret = -1;
	plan_ops_free(&ops);
	sp_nft_ruleset_free(&kernel);
	sp_nft_ruleset_free(&be->last);
	if (ret == 0) {
		keep_fixed_sets(&want);
		be->last = want;
		be->prev_conflicts = conflicts > 0;
		be->rules_total = ops.rules_total;
		prev_replace(&be->prev, plan);
		be->have_prev = true;
	} else {
		sp_nft_ruleset_free(&want);
		sp_nft_ruleset_init(&be->last);
		be->have_prev = false;
	}
	return ret;
}

static int nft_diff(struct sp_backend *be, const struct sp_plan *plan, struct sp_buf *out,
		    struct sp_diag *diag)
{
	struct sp_nft_ruleset want, kernel;
	const struct sp_nft_table *have[2];
	struct plan_ops ops = {0};
	int ret;

	if (read_kernel(be, &kernel, have, false, diag) < 0) {
		sp_nft_ruleset_free(&kernel);
		return -1;
	}
	sp_nft_lower(plan, &want, diag);
	diff_ruleset(&ops, &want, have);
	print_ops(&ops, out);
	ret = plan_ops_count(&ops) ? 1 : 0;
	plan_ops_free(&ops);
	sp_nft_ruleset_free(&want);
	sp_nft_ruleset_free(&kernel);
	return ret;
}

static int nft_cleanup(struct sp_backend *be, struct sp_diag *diag)
{
	struct sp_nft_ruleset kernel;
	const struct sp_nft_table *have[2];
	struct sp_nl_batch batch;
	int ret = 0;

	if (read_kernel(be, &kernel, have, false, diag) < 0) {
		sp_nft_ruleset_free(&kernel);
		return -1;
	}
	sp_nl_batch_init(&batch);
	for (size_t f = 0; f < SP_ARRAY_SIZE(families); f++) {
		if (!have[f])
			continue;
		if (!batch.n_msgs)
			sp_nft_put_batch_begin(be->nl, &batch);
		sp_nft_put_table(be->nl, &batch, families[f], SP_NFT_TABLE, SP_NFT_OP_DEL);
	}
	if (batch.n_msgs) {
		sp_nft_put_batch_end(be->nl, &batch);
		if (sp_nl_batch_send(be->nl, &batch, "nftables cleanup", diag) < 0)
			ret = -1;
	}
	sp_nl_batch_free(&batch);
	sp_nft_ruleset_free(&kernel);
	sp_nft_ruleset_free(&be->last);
	sp_nft_ruleset_init(&be->last);
	be->have_prev = false;
	return ret;
}

/* The kernel's table in plan syntax: rules svcproxy makes are decoded back
 * into statements; any other rule is shown as its kernel expressions. */
static void print_kernel_table(const struct sp_nft_table *t, struct sp_buf *out)
{
	const char *fam = sp_nft_family_name(t->family);

	sp_buf_addf(out, "table %s %s {\n", fam, t->name);
	for (size_t i = 0; i < t->n_sets; i++) {
		if (i)
			sp_buf_add(out, "\n");
		sp_nft_print_set_decl(t, &t->sets[i], "\t", out);
	}
	for (size_t i = 0; i < t->n_chains; i++) {
		const struct sp_nft_chain *c = &t->chains[i];

		sp_buf_addf(out, "\n\tchain %s {\n", c->name);
		if (c->base) {
			sp_buf_add(out, "\t\t");
			sp_nft_print_chain_decl(c, out);
			sp_buf_add(out, "\n");
		}
		for (size_t j = 0; j < c->n_rules; j++) {
			sp_buf_add(out, "\t\t");
			sp_nft_print_rule(t, &c->rules[j], out);
			sp_buf_add(out, "\n");
		}
		sp_buf_add(out, "\t}\n");
	}
	sp_buf_add(out, "}\n");
}

static int nft_print_state(struct sp_backend *be, struct sp_buf *out, struct sp_diag *diag)
{
	struct sp_nft_ruleset kernel;
	const struct sp_nft_table *have[2];

	if (read_kernel(be, &kernel, have, true, diag) < 0) {
		sp_nft_ruleset_free(&kernel);
		return -1;
	}
	for (size_t f = 0; f < SP_ARRAY_SIZE(families); f++)
		if (have[f])
			print_kernel_table(have[f], out);
	sp_nft_ruleset_free(&kernel);
	return 0;
}

const struct sp_backend_ops sp_nftables_ops = {
	.mode = SP_MODE_NFTABLES,
	.print_plan = nft_print_plan,
	.print_plan_json = nft_print_plan_json,
	.open = nft_open,
	.close = nft_close,
	.sync = nft_sync,
	.diff = nft_diff,
	.cleanup = nft_cleanup,
	.print_state = nft_print_state,
};
