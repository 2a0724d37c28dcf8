/* The nftables IR as `nft -f` text (and as JSON for programs). The text is
 * what `nft` itself accepts; the kernel encoder emits, statement by
 * statement, the expressions nft generates for it. */
#include "svcproxy/nft.h"

#include <linux/netfilter.h>
#include <string.h>

static const char *addr_kw(int family)
{
	return family == AF_INET6 ? "ip6" : "ip";
}

static const char *addr_type(int family)
{
	return family == AF_INET6 ? "ipv6_addr" : "ipv4_addr";
}

static void print_addr(const struct sp_addr *a, struct sp_buf *out)
{
	char buf[SP_ADDRSTRLEN];

	sp_buf_add(out, sp_addr_format(a, buf));
}

static void print_cidr(const struct sp_cidr *c, struct sp_buf *out)
{
	print_addr(&c->addr, out);
	if (c->prefix != sp_addr_len(&c->addr) * 8)
		sp_buf_addf(out, "/%u", c->prefix);
}

static void print_verdict(int verdict, const char *chain, struct sp_buf *out)
{
	switch (verdict) {
	case SP_NFT_ACCEPT:
		sp_buf_add(out, "accept");
		break;
	case SP_NFT_DROP:
		sp_buf_add(out, "drop");
		break;
	case SP_NFT_RETURN:
		sp_buf_add(out, "return");
		break;
	case SP_NFT_JUMP:
		sp_buf_addf(out, "jump %s", chain);
		break;
	case SP_NFT_GOTO:
		sp_buf_addf(out, "goto %s", chain);
		break;
	default:
		sp_buf_addf(out, "verdict %d", verdict);
	}
}

static void print_key(int family, enum sp_nft_key key, struct sp_buf *out)
{
	switch (key) {
	case SP_NFT_KEY_DADDR_PROTO_PORT:
		sp_buf_addf(out, "%s daddr . meta l4proto . th dport", addr_kw(family));
		break;
	case SP_NFT_KEY_PROTO_PORT:
		sp_buf_add(out, "meta l4proto . th dport");
		break;
	case SP_NFT_KEY_SADDR:
		sp_buf_addf(out, "%s saddr", addr_kw(family));
		break;
	case SP_NFT_KEY_SADDR_DADDR:
		sp_buf_addf(out, "%s saddr . %s daddr", addr_kw(family), addr_kw(family));
		break;
	case SP_NFT_KEY_DADDR_PORT_SLOT:
	case SP_NFT_KEY_PORT_SLOT:
	case SP_NFT_KEY_NONE:
		break;
	}
}

/* The key of an endpoint map: the transport protocol is named in it (not
 * `th`): nft then derives the protocol match dnat needs, and accepts the
 * rule on its own as well as in a script. */
static void print_pick_key(int family, enum sp_nft_key key, uint8_t proto, uint32_t mod,
			   struct sp_buf *out)
{
	if (key == SP_NFT_KEY_DADDR_PORT_SLOT)
		sp_buf_addf(out, "%s daddr . ", addr_kw(family));
	sp_buf_addf(out, "%s dport . numgen random mod %u", sp_proto_name_lower(proto), mod);
}

static void print_stmt(int family, const struct sp_nft_stmt *s, struct sp_buf *out)
{
	const char *kw = addr_kw(family);

	switch (s->kind) {
	case SP_NFT_MATCH_L4PROTO:
		sp_buf_addf(out, "meta l4proto %s", sp_proto_name_lower((uint8_t)s->value));
		break;
	case SP_NFT_MATCH_ADDR:
		sp_buf_addf(out, "%s %s %s", kw, s->source ? "saddr" : "daddr",
			    s->neg ? "!= " : "");
		print_cidr(&s->cidr, out);
		break;
	case SP_NFT_MATCH_DPORT:
		sp_buf_addf(out, "th dport %u", s->port);
		break;
	case SP_NFT_MATCH_CT_NEW:
		sp_buf_add(out, "ct state new");
		break;
	case SP_NFT_MATCH_FIB_LOCAL:
		sp_buf_addf(out, "fib %s type local", s->source ? "saddr" : "daddr");
		break;
	case SP_NFT_MATCH_MARK_CLEAR:
		sp_buf_addf(out, "meta mark & 0x%08x == 0", s->value);
		break;
	case SP_NFT_MATCH_NUMGEN:
		sp_buf_addf(out, "numgen random mod %u == 0", s->value);
		break;
	case SP_NFT_VMAP:
		print_key(family, s->key, out);
		sp_buf_addf(out, " vmap @%s", s->set);
		break;
	case SP_NFT_MATCH_SET:
		print_key(family, s->key, out);
		sp_buf_addf(out, " @%s", s->set);
		break;
	case SP_NFT_MARK_OR:
		sp_buf_addf(out, "meta mark set meta mark | 0x%08x", s->value);
		break;
	case SP_NFT_MARK_XOR:
		sp_buf_addf(out, "meta mark set meta mark ^ 0x%08x", s->value);
		break;
	case SP_NFT_AFFINITY_UPDATE:
		sp_buf_addf(out, "update @%s { %s saddr : ", s->set, kw);
		print_addr(&s->addr, out);
		sp_buf_add(out, " }");
		break;
	case SP_NFT_DNAT_MAP:
		sp_buf_addf(out, "dnat %s to %s saddr map @%s : %u", kw, kw, s->set, s->port);
		break;
	case SP_NFT_DNAT:
		sp_buf_addf(out, "dnat %s to ", kw);
		if (family == AF_INET6)
			sp_buf_add(out, "[");
		print_addr(&s->addr, out);
		sp_buf_addf(out, "%s:%u", family == AF_INET6 ? "]" : "", s->port);
		break;
	case SP_NFT_DNAT_PICK:
		sp_buf_addf(out, "dnat %s to ", kw);
		print_pick_key(family, s->key, s->proto, s->value, out);
		sp_buf_addf(out, " map @%s", s->set);
		break;
	case SP_NFT_MASQUERADE:
		sp_buf_add(out, "masquerade fully-random");
		break;
	case SP_NFT_REJECT:
		sp_buf_add(out, "reject");
		break;
	case SP_NFT_VERDICT:
		print_verdict(s->verdict, s->chain, out);
		break;
	}
}

void sp_nft_print_rule(const struct sp_nft_table *t, const struct sp_nft_rule *r,
		       struct sp_buf *out)
{
	if (!r->n_stmts && r->foreign) {
		sp_buf_addf(out, "# not made by svcproxy: %s", r->foreign);
		return;
	}
	for (size_t i = 0; i < r->n_stmts; i++) {
		if (i)
			sp_buf_add(out, " ");
		print_stmt(t->family, &r->stmts[i], out);
	}
}

void sp_nft_print_elem(const struct sp_nft_table *t, const struct sp_nft_set *s,
		       const struct sp_nft_elem *e, struct sp_buf *out)
{
	if (s->key == SP_NFT_KEY_SADDR_DADDR) {
		print_addr(&e->addr, out);
		sp_buf_add(out, " . ");
		print_addr(&e->addr, out);
		return;
	}
	(void)t;
	if (s->key == SP_NFT_KEY_DADDR_PORT_SLOT || s->key == SP_NFT_KEY_PORT_SLOT) {
		if (s->key == SP_NFT_KEY_DADDR_PORT_SLOT) {
			print_addr(&e->addr, out);
			sp_buf_add(out, " . ");
		}
		sp_buf_addf(out, "%u . %u : ", e->port, e->slot);
		print_addr(&e->to, out);
		sp_buf_addf(out, " . %u", e->to_port);
		return;
	}
	if (s->key == SP_NFT_KEY_DADDR_PROTO_PORT) {
		print_addr(&e->addr, out);
		sp_buf_add(out, " . ");
	}
	sp_buf_addf(out, "%s . %u : ", sp_proto_name_lower(e->proto), e->port);
	print_verdict(e->verdict, e->chain, out);
}

static void print_set_type(int family, const struct sp_nft_set *s, struct sp_buf *out)
{
	switch (s->key) {
	case SP_NFT_KEY_DADDR_PROTO_PORT:
		sp_buf_addf(out, "%s . inet_proto . inet_service : verdict", addr_type(family));
		break;
	case SP_NFT_KEY_PROTO_PORT:
		sp_buf_add(out, "inet_proto . inet_service : verdict");
		break;
	case SP_NFT_KEY_SADDR:
		sp_buf_addf(out, "%s : %s", addr_type(family), addr_type(family));
		break;
	case SP_NFT_KEY_SADDR_DADDR:
		sp_buf_addf(out, "%s . %s", addr_type(family), addr_type(family));
		break;
	case SP_NFT_KEY_DADDR_PORT_SLOT:
	case SP_NFT_KEY_PORT_SLOT:
		/* nft has no type name for numgen's value: typeof. */
		print_pick_key(family, s->key, s->proto, 1, out);
		sp_buf_addf(out, " : %s daddr . %s dport", addr_kw(family),
			    sp_proto_name_lower(s->proto));
		break;
	case SP_NFT_KEY_NONE:
		break;
	}
}

static bool is_typeof(const struct sp_nft_set *s)
{
	return s->key == SP_NFT_KEY_DADDR_PORT_SLOT || s->key == SP_NFT_KEY_PORT_SLOT;
}

void sp_nft_print_set_decl(const struct sp_nft_table *t, const struct sp_nft_set *s,
			   const char *indent, struct sp_buf *out)
{
	sp_buf_addf(out, "%s%s %s {\n%s\t%s ", indent, s->plain ? "set" : "map", s->name, indent,
		    is_typeof(s) ? "typeof" : "type");
	print_set_type(t->family, s, out);
	sp_buf_add(out, "\n");
	if (s->affinity)
		sp_buf_addf(out, "%s\tsize 65535\n%s\tflags dynamic,timeout\n%s\ttimeout %us\n",
			    indent, indent, indent, s->timeout_s);
	if (s->n_elems) {
		sp_buf_addf(out, "%s\telements = {", indent);
		for (size_t i = 0; i < s->n_elems; i++) {
			sp_buf_addf(out, "%s\n%s\t\t", i ? "," : "", indent);
			sp_nft_print_elem(t, s, &s->elems[i], out);
		}
		sp_buf_addf(out, "\n%s\t}\n", indent);
	}
	sp_buf_addf(out, "%s}\n", indent);
}

static const char *hook_name(unsigned hook)
{
	switch (hook) {
	case NF_INET_PRE_ROUTING:
		return "prerouting";
	case NF_INET_LOCAL_IN:
		return "input";
	case NF_INET_FORWARD:
		return "forward";
	case NF_INET_LOCAL_OUT:
		return "output";
	case NF_INET_POST_ROUTING:
		return "postrouting";
	}
	return "?";
}

void sp_nft_print_chain_decl(const struct sp_nft_chain *c, struct sp_buf *out)
{
	sp_buf_addf(out, "type %s hook %s priority %d; policy accept;", c->type, hook_name(c->hook),
		    c->prio);
}

static void print_chain(const struct sp_nft_table *t, const struct sp_nft_chain *c,
			struct sp_buf *out)
{
	sp_buf_addf(out, "\tchain %s {\n", c->name);
	if (c->base) {
		sp_buf_add(out, "\t\t");
		sp_nft_print_chain_decl(c, out);
		sp_buf_add(out, "\n");
	}
	for (size_t i = 0; i < c->n_rules; i++) {
		sp_buf_add(out, "\t\t");
		sp_nft_print_rule(t, &c->rules[i], out);
		sp_buf_add(out, "\n");
	}
	sp_buf_add(out, "\t}\n");
}

void sp_nft_print_table(const struct sp_nft_table *t, struct sp_buf *out)
{
	const char *fam = sp_nft_family_name(t->family);

	/* Declaring then deleting makes the script replace the table whether
	 * or not it exists, in one transaction. */
	sp_buf_addf(out, "table %s %s\ndelete table %s %s\ntable %s %s {\n", fam, t->name, fam,
		    t->name, fam, t->name);
	for (size_t i = 0; i < t->n_sets; i++) {
		if (i)
			sp_buf_add(out, "\n");
		sp_nft_print_set_decl(t, &t->sets[i], "\t", out);
	}
	for (size_t i = 0; i < t->n_chains; i++) {
		sp_buf_add(out, "\n");
		print_chain(t, &t->chains[i], out);
	}
	sp_buf_add(out, "}\n");
}

void sp_nft_print_ruleset(const struct sp_nft_ruleset *rs, struct sp_buf *out)
{
	for (size_t i = 0; i < rs->n_tables; i++)
		sp_nft_print_table(&rs->tables[i], out);
}

static void json_str(const char *s, struct sp_buf *out)
{
	sp_buf_add(out, "\"");
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			sp_buf_addf(out, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			sp_buf_addf(out, "\\u%04x", *s);
		else
			sp_buf_addn(out, s, 1);
	}
	sp_buf_add(out, "\"");
}

void sp_nft_print_ruleset_json(const struct sp_nft_ruleset *rs, struct sp_buf *out)
{
	struct sp_buf tmp;

	sp_buf_init(&tmp);
	sp_buf_add(out, "{\"mode\":\"nftables\",\"tables\":[");
	for (size_t i = 0; i < rs->n_tables; i++) {
		const struct sp_nft_table *t = &rs->tables[i];

		sp_buf_addf(out, "%s{\"family\":\"%s\",\"name\":", i ? "," : "",
			    sp_nft_family_name(t->family));
		json_str(t->name, out);
		sp_buf_add(out, ",\"maps\":[");
		for (size_t j = 0; j < t->n_sets; j++) {
			const struct sp_nft_set *s = &t->sets[j];

			sp_buf_add(out, j ? ",{\"name\":" : "{\"name\":");
			json_str(s->name, out);
			sp_buf_reset(&tmp);
			print_set_type(t->family, s, &tmp);
			sp_buf_add(out, ",\"type\":");
			json_str(tmp.data, out);
			if (s->affinity)
				sp_buf_addf(out, ",\"timeout\":%u", s->timeout_s);
			sp_buf_add(out, ",\"elements\":[");
			for (size_t k = 0; k < s->n_elems; k++) {
				sp_buf_reset(&tmp);
				sp_nft_print_elem(t, s, &s->elems[k], &tmp);
				if (k)
					sp_buf_add(out, ",");
				json_str(tmp.data, out);
			}
			sp_buf_add(out, "]}");
		}
		sp_buf_add(out, "],\"chains\":[");
		for (size_t j = 0; j < t->n_chains; j++) {
			const struct sp_nft_chain *c = &t->chains[j];

			sp_buf_add(out, j ? ",{\"name\":" : "{\"name\":");
			json_str(c->name, out);
			if (c->base) {
				sp_buf_reset(&tmp);
				sp_nft_print_chain_decl(c, &tmp);
				sp_buf_add(out, ",\"base\":");
				json_str(tmp.data, out);
			}
			sp_buf_add(out, ",\"rules\":[");
			for (size_t k = 0; k < c->n_rules; k++) {
				sp_buf_reset(&tmp);
				sp_nft_print_rule(t, &c->rules[k], &tmp);
				if (k)
					sp_buf_add(out, ",");
				json_str(tmp.data, out);
			}
			sp_buf_add(out, "]}");
		}
		sp_buf_add(out, "]}");
	}
	sp_buf_add(out, "]}\n");
	sp_buf_free(&tmp);
}
