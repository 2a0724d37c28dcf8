/* The nftables IR: construction, release and comparison. */
#include "svcproxy/nft.h"

#include <linux/netfilter.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

int sp_nft_epmap_index(enum sp_nft_epmap kind, uint8_t proto)
{
	int p = proto == IPPROTO_TCP	? 0
		: proto == IPPROTO_UDP	? 1
		: proto == IPPROTO_SCTP ? 2
					: -1;

	if (p < 0 || kind >= SP_NFT_EPMAP_COUNT)
		return -1;
	return SP_NFT_FS_ENDPOINTS + (int)kind * 3 + p;
}

int sp_nft_nfproto(int family)
{
	return family == AF_INET6 ? NFPROTO_IPV6 : NFPROTO_IPV4;
}

const char *sp_nft_family_name(int family)
{
	return family == AF_INET6 ? "ip6" : "ip";
}

void sp_nft_ruleset_init(struct sp_nft_ruleset *rs)
{
	memset(rs, 0, sizeof(*rs));
}

static void stmt_free(struct sp_nft_stmt *s)
{
	free(s->set);
	free(s->chain);
}

void sp_nft_rule_free(struct sp_nft_rule *r)
{
	for (size_t i = 0; i < r->n_stmts; i++)
		stmt_free(&r->stmts[i]);
	free(r->stmts);
	free(r->foreign);
	memset(r, 0, sizeof(*r));
}

void sp_nft_chain_free(struct sp_nft_chain *c)
{
	for (size_t i = 0; i < c->n_rules; i++)
		sp_nft_rule_free(&c->rules[i]);
	free(c->rules);
	free(c->name);
	memset(c, 0, sizeof(*c));
}

void sp_nft_set_free(struct sp_nft_set *s)
{
	for (size_t i = 0; i < s->n_elems; i++)
		free(s->elems[i].chain);
	free(s->elems);
	free(s->name);
	memset(s, 0, sizeof(*s));
}

void sp_nft_table_free(struct sp_nft_table *t)
{
	for (size_t i = 0; i < t->n_chains; i++)
		sp_nft_chain_free(&t->chains[i]);
	for (size_t i = 0; i < t->n_sets; i++)
		sp_nft_set_free(&t->sets[i]);
	free(t->chains);
	free(t->sets);
	free(t->name);
	memset(t, 0, sizeof(*t));
}

void sp_nft_ruleset_free(struct sp_nft_ruleset *rs)
{
	for (size_t i = 0; i < rs->n_tables; i++)
		sp_nft_table_free(&rs->tables[i]);
	free(rs->tables);
	memset(rs, 0, sizeof(*rs));
}

struct sp_nft_table *sp_nft_table_add(struct sp_nft_ruleset *rs, int family, const char *name)
{
	struct sp_nft_table *t =
		sp_array_push(&rs->tables, &rs->n_tables, &rs->cap_tables, sizeof(*t));

	t->family = family;
	t->name = sp_xstrdup(name);
	return t;
}

struct sp_nft_chain *sp_nft_chain_add(struct sp_nft_table *t, const char *name)
{
	struct sp_nft_chain *c =
		sp_array_push(&t->chains, &t->n_chains, &t->cap_chains, sizeof(*c));

	c->name = sp_xstrdup(name);
	return c;
}

struct sp_nft_set *sp_nft_set_add(struct sp_nft_table *t, const char *name, enum sp_nft_key key)
{
	struct sp_nft_set *s = sp_array_push(&t->sets, &t->n_sets, &t->cap_sets, sizeof(*s));

	s->name = sp_xstrdup(name);
	s->key = key;
	return s;
}

struct sp_nft_rule *sp_nft_rule_add(struct sp_nft_chain *c)
{
	return sp_array_push(&c->rules, &c->n_rules, &c->cap_rules, sizeof(struct sp_nft_rule));
}

struct sp_nft_stmt *sp_nft_stmt_add(struct sp_nft_rule *r, enum sp_nft_stmt_kind kind)
{
	struct sp_nft_stmt *s = sp_array_push(&r->stmts, &r->n_stmts, &r->cap_stmts, sizeof(*s));

	s->kind = kind;
	return s;
}

struct sp_nft_elem *sp_nft_elem_add(struct sp_nft_set *s)
{
	return sp_array_push(&s->elems, &s->n_elems, &s->cap_elems, sizeof(struct sp_nft_elem));
}

struct sp_nft_table *sp_nft_table_find(const struct sp_nft_ruleset *rs, int family)
{
	for (size_t i = 0; i < rs->n_tables; i++)
		if (rs->tables[i].family == family)
			return &rs->tables[i];
	return NULL;
}

struct sp_nft_chain *sp_nft_chain_find(const struct sp_nft_table *t, const char *name)
{
	for (size_t i = 0; i < t->n_chains; i++)
		if (!strcmp(t->chains[i].name, name))
			return &t->chains[i];
	return NULL;
}

struct sp_nft_set *sp_nft_set_find(const struct sp_nft_table *t, const char *name)
{
	for (size_t i = 0; i < t->n_sets; i++)
		if (!strcmp(t->sets[i].name, name))
			return &t->sets[i];
	return NULL;
}

static int chain_ptr_cmp(const void *a, const void *b)
{
	return strcmp((*(struct sp_nft_chain *const *)a)->name,
		      (*(struct sp_nft_chain *const *)b)->name);
}

void sp_nft_chain_index_build(struct sp_nft_chain_index *ix, const struct sp_nft_table *t)
{
	ix->n = t->n_chains;
	ix->sorted = sp_xcalloc(ix->n + 1, sizeof(*ix->sorted));
	for (size_t i = 0; i < ix->n; i++)
		ix->sorted[i] = &t->chains[i];
	qsort(ix->sorted, ix->n, sizeof(*ix->sorted), chain_ptr_cmp);
}

struct sp_nft_chain *sp_nft_chain_index_find(const struct sp_nft_chain_index *ix, const char *name)
{
	size_t lo = 0, hi = ix->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int r = strcmp(ix->sorted[mid]->name, name);

		if (!r)
			return ix->sorted[mid];
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

void sp_nft_chain_index_free(struct sp_nft_chain_index *ix)
{
	free(ix->sorted);
	memset(ix, 0, sizeof(*ix));
}

static bool addr_same(const struct sp_addr *a, const struct sp_addr *b)
{
	if (a->family != b->family)
		return false;
	return !a->family || sp_addr_equal(a, b);
}

bool sp_nft_stmt_equal(const struct sp_nft_stmt *a, const struct sp_nft_stmt *b)
{
	return a->kind == b->kind && a->neg == b->neg && a->source == b->source &&
	       addr_same(&a->cidr.addr, &b->cidr.addr) && a->cidr.prefix == b->cidr.prefix &&
	       addr_same(&a->addr, &b->addr) && a->value == b->value && a->port == b->port &&
	       a->proto == b->proto && a->key == b->key && a->verdict == b->verdict &&
	       !sp_strcmp_null(a->set, b->set) && !sp_strcmp_null(a->chain, b->chain);
}

bool sp_nft_rule_equal(const struct sp_nft_rule *a, const struct sp_nft_rule *b)
{
	if (a->foreign || b->foreign || a->n_stmts != b->n_stmts)
		return false;
	for (size_t i = 0; i < a->n_stmts; i++)
		if (!sp_nft_stmt_equal(&a->stmts[i], &b->stmts[i]))
			return false;
	return true;
}

bool sp_nft_chain_equal(const struct sp_nft_chain *a, const struct sp_nft_chain *b)
{
	if (a->base != b->base || a->n_rules != b->n_rules)
		return false;
	if (a->base && (strcmp(a->type, b->type) || a->hook != b->hook || a->prio != b->prio))
		return false;
	for (size_t i = 0; i < a->n_rules; i++)
		if (!sp_nft_rule_equal(&a->rules[i], &b->rules[i]))
			return false;
	return true;
}

int sp_nft_elem_cmp(const struct sp_nft_elem *a, const struct sp_nft_elem *b)
{
	int r;

	if (a->addr.family || b->addr.family) {
		if (a->addr.family != b->addr.family)
			return a->addr.family < b->addr.family ? -1 : 1;
		r = sp_addr_cmp(&a->addr, &b->addr);
		if (r)
			return r;
	}
	if (a->proto != b->proto)
		return a->proto < b->proto ? -1 : 1;
	if (a->port != b->port)
		return a->port < b->port ? -1 : 1;
	if (a->slot != b->slot)
		return a->slot < b->slot ? -1 : 1;
	return 0;
}

bool sp_nft_elem_equal(const struct sp_nft_elem *a, const struct sp_nft_elem *b)
{
	return !sp_nft_elem_cmp(a, b) && a->verdict == b->verdict &&
	       !sp_strcmp_null(a->chain, b->chain) && addr_same(&a->to, &b->to) &&
	       a->to_port == b->to_port;
}

bool sp_nft_set_same_type(const struct sp_nft_set *a, const struct sp_nft_set *b)
{
	return a->key == b->key && a->affinity == b->affinity && a->timeout_s == b->timeout_s &&
	       a->plain == b->plain && a->proto == b->proto;
}

struct elem_pos {
	struct sp_nft_elem elem;
	size_t pos;
};

static int elem_pos_cmp(const void *pa, const void *pb)
{
	const struct elem_pos *a = pa, *b = pb;
	int r = sp_nft_elem_cmp(&a->elem, &b->elem);

	if (r)
		return r;
	return a->pos < b->pos ? -1 : a->pos > b->pos;
}

size_t sp_nft_set_sort(struct sp_nft_set *s, struct sp_diag *diag)
{
	struct elem_pos *tmp;
	size_t n = 0, dropped = 0;

	if (s->n_elems < 2)
		return 0;
	tmp = sp_xcalloc(s->n_elems, sizeof(*tmp));
	for (size_t i = 0; i < s->n_elems; i++) {
		tmp[i].elem = s->elems[i];
		tmp[i].pos = i;
	}
	qsort(tmp, s->n_elems, sizeof(*tmp), elem_pos_cmp);
	for (size_t i = 0; i < s->n_elems; i++) {
		if (n && !sp_nft_elem_cmp(&s->elems[n - 1], &tmp[i].elem)) {
			char a[SP_ADDRSTRLEN];

			if (diag)
				sp_diag_warn(diag,
					     "nftables: %s %s/%s:%u is claimed twice; %s keeps it, "
					     "%s is not programmed for it",
					     s->name,
					     tmp[i].elem.addr.family
						     ? sp_addr_format(&tmp[i].elem.addr, a)
						     : "*",
					     sp_proto_name_lower(tmp[i].elem.proto),
					     tmp[i].elem.port,
					     s->elems[n - 1].chain ? s->elems[n - 1].chain : "drop",
					     tmp[i].elem.chain ? tmp[i].elem.chain : "drop");
			free(tmp[i].elem.chain);
			dropped++;
			continue;
		}
		s->elems[n++] = tmp[i].elem;
	}
	s->n_elems = n;
	free(tmp);
	return dropped;
}
