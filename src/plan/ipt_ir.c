/* Building and releasing the iptables IR. */
#include "svcproxy/ipt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static const char *const filter_builtins[] = {"INPUT", "FORWARD", "OUTPUT", NULL};
static const char *const nat_builtins[] = {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING", NULL};
static const char *const mangle_builtins[] = {"PREROUTING", "INPUT",	   "FORWARD",
					      "OUTPUT",	    "POSTROUTING", NULL};

static const char *const *builtins_of(enum sp_ipt_table_id id)
{
	if (id == SP_IPT_MANGLE)
		return mangle_builtins;
	return id == SP_IPT_NAT ? nat_builtins : filter_builtins;
}

const char *sp_ipt_table_name(enum sp_ipt_table_id id)
{
	if (id == SP_IPT_MANGLE)
		return "mangle";
	return id == SP_IPT_NAT ? "nat" : "filter";
}

bool sp_ipt_builtin_chain(enum sp_ipt_table_id id, const char *name)
{
	for (const char *const *b = builtins_of(id); *b; b++) {
		if (!strcmp(*b, name))
			return true;
	}
	return false;
}

void sp_ipt_table_init(struct sp_ipt_table *t, enum sp_ipt_table_id id)
{
	memset(t, 0, sizeof(*t));
	t->id = id;
	for (const char *const *b = builtins_of(id); *b; b++) {
		struct sp_ipt_chain *c = sp_ipt_chain_add(t, *b);

		c->builtin = true;
	}
}

void sp_ipt_ruleset_init(struct sp_ipt_ruleset *rs, int family)
{
	rs->family = family;
	for (int i = 0; i < SP_IPT_N_TABLES; i++) {
		sp_ipt_table_init(&rs->tables[i], (enum sp_ipt_table_id)i);
		rs->tables[i].family = family;
	}
}

static void match_free(struct sp_ipt_match *m)
{
	switch (m->kind) {
	case SP_IPT_M_COMMENT:
	case SP_IPT_M_UNKNOWN:
		free(m->u.comment);
		break;
	case SP_IPT_M_RECENT:
		free(m->u.recent.name);
		break;
	case SP_IPT_M_SET:
		free(m->u.set.name);
		break;
	default:
		break;
	}
}

void sp_ipt_rule_free(struct sp_ipt_rule *r)
{
	for (size_t i = 0; i < r->n_matches; i++)
		match_free(&r->matches[i]);
	free(r->matches);
	free(r->target.chain);
	memset(r, 0, sizeof(*r));
}

void sp_ipt_chain_free(struct sp_ipt_chain *c)
{
	for (size_t i = 0; i < c->n_rules; i++)
		sp_ipt_rule_free(&c->rules[i]);
	free(c->rules);
	free(c->name);
	memset(c, 0, sizeof(*c));
}

void sp_ipt_table_free(struct sp_ipt_table *t)
{
	for (size_t i = 0; i < t->n_chains; i++)
		sp_ipt_chain_free(&t->chains[i]);
	free(t->chains);
	memset(t, 0, sizeof(*t));
}

void sp_ipt_ruleset_free(struct sp_ipt_ruleset *rs)
{
	for (int i = 0; i < SP_IPT_N_TABLES; i++)
		sp_ipt_table_free(&rs->tables[i]);
}

struct sp_ipt_chain *sp_ipt_chain_find(const struct sp_ipt_table *t, const char *name)
{
	for (size_t i = 0; i < t->n_chains; i++) {
		if (!strcmp(t->chains[i].name, name))
			return &t->chains[i];
	}
	return NULL;
}

struct sp_ipt_chain *sp_ipt_chain_add(struct sp_ipt_table *t, const char *name)
{
	struct sp_ipt_chain *c =
		sp_array_push(&t->chains, &t->n_chains, &t->cap_chains, sizeof(*c));

	c->name = sp_xstrdup(name);
	return c;
}

struct sp_ipt_chain *sp_ipt_chain_get(struct sp_ipt_table *t, const char *name)
{
	struct sp_ipt_chain *c = sp_ipt_chain_find(t, name);

	return c ? c : sp_ipt_chain_add(t, name);
}

struct sp_ipt_rule *sp_ipt_rule_append(struct sp_ipt_chain *c)
{
	return sp_array_push(&c->rules, &c->n_rules, &c->cap_rules, sizeof(struct sp_ipt_rule));
}

struct sp_ipt_match *sp_ipt_match_add(struct sp_ipt_rule *r, enum sp_ipt_match_kind kind)
{
	struct sp_ipt_match *m =
		sp_array_push(&r->matches, &r->n_matches, &r->cap_matches, sizeof(*m));

	m->kind = kind;
	return m;
}

void sp_ipt_add_comment(struct sp_ipt_rule *r, const char *comment)
{
	sp_ipt_match_add(r, SP_IPT_M_COMMENT)->u.comment = sp_xstrdup(comment);
}

void sp_ipt_add_dport(struct sp_ipt_rule *r, uint8_t proto, uint16_t dport)
{
	enum sp_ipt_match_kind kind = SP_IPT_M_TCP;

	if (proto == IPPROTO_UDP)
		kind = SP_IPT_M_UDP;
	else if (proto == IPPROTO_SCTP)
		kind = SP_IPT_M_SCTP;
	r->proto = proto;
	sp_ipt_match_add(r, kind)->u.dport = dport;
}

void sp_ipt_set_jump(struct sp_ipt_rule *r, const char *chain)
{
	free(r->target.chain);
	r->target.kind = SP_IPT_T_JUMP;
	r->target.chain = sp_xstrdup(chain);
}

void sp_ipt_set_verdict(struct sp_ipt_rule *r, enum sp_ipt_target_kind kind)
{
	r->target.kind = kind;
}

void sp_ipt_set_host(struct sp_cidr *c, const struct sp_addr *a)
{
	c->addr = *a;
	c->prefix = a->family == AF_INET6 ? 128 : 32;
}

void sp_ipt_add_set_match(struct sp_ipt_rule *r, const char *set, const char *dirs, bool invert)
{
	struct sp_ipt_match *m = sp_ipt_match_add(r, SP_IPT_M_SET);

	m->invert = invert;
	m->u.set.name = sp_xstrdup(set);
	for (const char *d = dirs; *d && m->u.set.dim < SP_IPT_SET_DIM_MAX;) {
		if (!strncmp(d, "src", 3))
			m->u.set.src_dims |= (uint8_t)(1u << m->u.set.dim);
		m->u.set.dim++;
		d += strcspn(d, ",");
		d += *d == ',';
	}
}

uint32_t sp_ipt_probability(unsigned n)
{
	char text[32];

	/* Round-trip through kube-proxy's text so that the stored value is
	 * the one iptables-restore would store for kube-proxy's rule. */
	snprintf(text, sizeof(text), "%0.10f", 1.0 / (double)n);
	return (uint32_t)(2147483648.0 * strtod(text, NULL) + 0.5);
}
