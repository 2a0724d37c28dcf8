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
	/* What this process last programmed (valid when have_last). */
	struct sp_nft_ruleset last;
	bool have_last;
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
						 o->kind == OP_ADD_TABLE ? SP_NFT_OP_ADD
									 : SP_NFT_OP_DEL);
				break;
			case OP_ADD_SET:
				sp_nft_put_set(nl, b, o->t, o->s, SP_NFT_OP_ADD);
				break;
			case OP_DEL_SET:
				sp_nft_put_set(nl, b, o->t, o->s, SP_NFT_OP_DEL);
				break;
			case OP_FLUSH_SET:
				sp_nft_put_set(nl, b, o->t, o->s, SP_NFT_OP_FLUSH);
				break;
			case OP_ADD_CHAIN:
				sp_nft_put_chain(nl, b, o->t, o->c, SP_NFT_OP_ADD);
				break;
			case OP_DEL_CHAIN:
				sp_nft_put_chain(nl, b, o->t, o->c, SP_NFT_OP_DEL);
				break;
			case OP_FLUSH_CHAIN:
				sp_nft_put_chain(nl, b, o->t, o->c, SP_NFT_OP_FLUSH);
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

static void print_elem_key(const struct sp_nft_table *t, const struct sp_nft_set *s,
			   const struct sp_nft_elem *e, struct sp_buf *out)
{
	char a[SP_ADDRSTRLEN];

	if (s->key == SP_NFT_KEY_SADDR_DADDR) {
		sp_nft_print_elem(t, s, e, out);
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

static void last_tables(struct sp_backend *be, const struct sp_nft_table *have[2])
{
	for (size_t f = 0; f < SP_ARRAY_SIZE(families); f++)
		have[f] = sp_nft_table_find(&be->last, families[f]);
}

static int nft_sync(struct sp_backend *be, const struct sp_plan *plan, bool full,
		    struct sp_sync_stats *stats, struct sp_diag *diag)
{
	struct sp_nft_ruleset want, kernel;
	const struct sp_nft_table *have[2];
	struct plan_ops ops = {0};
	struct sp_nl_batch batch;
	int ret = 0;

	memset(stats, 0, sizeof(*stats));
	full = full || !be->have_last;
	stats->full = full;
	sp_nft_lower(plan, &want, diag);
	sp_nft_ruleset_init(&kernel);
	if (full) {
		if (read_kernel(be, &kernel, have, false, diag) < 0) {
			sp_nft_ruleset_free(&want);
			sp_nft_ruleset_free(&kernel);
			return -1;
		}
	} else {
		last_tables(be, have);
	}
	diff_ruleset(&ops, &want, have);
	stats->objects_changed = ops.changed;
	stats->objects_unchanged = ops.unchanged;
	stats->rules_total = ops.rules_total;
	if (plan_ops_count(&ops)) {
		sp_nl_batch_init(&batch);
		encode_ops(be->nl, &batch, &ops);
		stats->messages_sent = batch.n_msgs;
		if (sp_nl_batch_send(be->nl, &batch, "nftables", diag) < 0) {
			sp_diag_error(diag, "nftables: the transaction was refused as a whole; "
					    "the previous rules are still in place");
			ret = -1;
		}
		sp_nl_batch_free(&batch);
	}
	plan_ops_free(&ops);
	sp_nft_ruleset_free(&kernel);
	sp_nft_ruleset_free(&be->last);
	if (ret == 0) {
		be->last = want;
		be->have_last = true;
	} else {
		sp_nft_ruleset_free(&want);
		be->have_last = false;
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
	be->have_last = false;
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
