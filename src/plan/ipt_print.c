/* `iptables-save` text for the IR. Every detail (field order, quoting, the
 * 11-digit probability, --set-xmark for --or-mark, the recent match's
 * defaults) follows what iptables-legacy-save 1.8 prints for the same kernel
 * rules, so that the plan can be compared with the kernel as text. */
#include "svcproxy/ipt.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* xtables_save_string(): bare when only [A-Za-z0-9_-], else double-quoted
 * with ", \ and ' escaped. */
static void print_string(const char *s, struct sp_buf *out)
{
	static const char bare[] =
		"_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
	size_t n = strspn(s, bare);

	sp_buf_add(out, " ");
	if (n > 0 && s[n] == '\0') {
		sp_buf_add(out, s);
		return;
	}
	sp_buf_add(out, "\"");
	for (; *s; s++) {
		if (*s == '"' || *s == '\\' || *s == '\'')
			sp_buf_add(out, "\\");
		sp_buf_addn(out, s, 1);
	}
	sp_buf_add(out, "\"");
}

static void print_cidr(char letter, const struct sp_cidr *c, bool invert, struct sp_buf *out)
{
	char buf[SP_ADDRSTRLEN];

	if (!c->addr.family)
		return;
	sp_buf_addf(out, "%s -%c %s/%u", invert ? " !" : "", letter, sp_addr_format(&c->addr, buf),
		    c->prefix);
}

static void print_proto(uint8_t proto, struct sp_buf *out)
{
	const char *name = sp_proto_name_lower(proto);

	if (!proto)
		return;
	if (strcmp(name, "?"))
		sp_buf_addf(out, " -p %s", name);
	else
		sp_buf_addf(out, " -p %u", proto);
}

static void print_ctstate(uint8_t state, struct sp_buf *out)
{
	static const struct {
		uint8_t bit;
		const char *name;
	} names[] = {
		{SP_IPT_CT_INVALID, "INVALID"},
		{SP_IPT_CT_NEW, "NEW"},
		{SP_IPT_CT_RELATED, "RELATED"},
		{SP_IPT_CT_ESTABLISHED, "ESTABLISHED"},
	};
	const char *sep = " ";

	sp_buf_add(out, " --ctstate");
	for (size_t i = 0; i < SP_ARRAY_SIZE(names); i++) {
		if (state & names[i].bit) {
			sp_buf_addf(out, "%s%s", sep, names[i].name);
			sep = ",";
		}
	}
}

static void print_addrtype(const struct sp_ipt_match *m, struct sp_buf *out)
{
	sp_buf_add(out, " -m addrtype");
	if (m->u.addrtype.src_type)
		sp_buf_addf(out, "%s --src-type %s", m->invert ? " !" : "",
			    m->u.addrtype.src_type == SP_IPT_ADDRTYPE_LOCAL ? "LOCAL" : "?");
	if (m->u.addrtype.dst_type)
		sp_buf_addf(out, "%s --dst-type %s", m->invert ? " !" : "",
			    m->u.addrtype.dst_type == SP_IPT_ADDRTYPE_LOCAL ? "LOCAL" : "?");
}

static void print_recent(const struct sp_ipt_match *m, int family, struct sp_buf *out)
{
	sp_buf_add(out, m->u.recent.set ? " -m recent --set" : " -m recent --rcheck");
	if (m->u.recent.seconds)
		sp_buf_addf(out, " --seconds %u", m->u.recent.seconds);
	if (m->u.recent.reap)
		sp_buf_add(out, " --reap");
	sp_buf_addf(out, " --name %s --mask %s --rsource", m->u.recent.name,
		    family == AF_INET6 ? "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
				       : "255.255.255.255");
}

static void print_match(const struct sp_ipt_match *m, int family, struct sp_buf *out)
{
	switch (m->kind) {
	case SP_IPT_M_COMMENT:
		sp_buf_add(out, " -m comment --comment");
		print_string(m->u.comment, out);
		break;
	case SP_IPT_M_TCP:
	case SP_IPT_M_UDP:
	case SP_IPT_M_SCTP:
		sp_buf_add(out, m->kind == SP_IPT_M_TCP	  ? " -m tcp"
				: m->kind == SP_IPT_M_UDP ? " -m udp"
							  : " -m sctp");
		if (m->u.dport)
			sp_buf_addf(out, " --dport %u", m->u.dport);
		break;
	case SP_IPT_M_ADDRTYPE:
		print_addrtype(m, out);
		break;
	case SP_IPT_M_MARK:
		sp_buf_addf(out, " -m mark%s --mark 0x%x", m->invert ? " !" : "", m->u.mark.value);
		if (m->u.mark.mask != 0xffffffffu)
			sp_buf_addf(out, "/0x%x", m->u.mark.mask);
		break;
	case SP_IPT_M_STATISTIC:
		sp_buf_addf(out, " -m statistic --mode random --probability %.11f",
			    (double)m->u.probability / 2147483648.0);
		break;
	case SP_IPT_M_RECENT:
		print_recent(m, family, out);
		break;
	case SP_IPT_M_CONNTRACK:
		sp_buf_add(out, " -m conntrack");
		print_ctstate(m->u.ctstate, out);
		break;
	case SP_IPT_M_SET:
		sp_buf_addf(out, " -m set%s --match-set %s ", m->invert ? " !" : "", m->u.set.name);
		for (unsigned i = 0; i < m->u.set.dim; i++)
			sp_buf_addf(out, "%s%s", i ? "," : "",
				    m->u.set.src_dims & (1u << i) ? "src" : "dst");
		break;
	case SP_IPT_M_UNKNOWN:
		/* Marked, so that it can never print (and compare) like a
		 * match the agent writes, e.g. "-m tcp" with a source port. */
		sp_buf_addf(out, " -m %s [not understood]", m->u.comment);
		break;
	}
}

static void print_target(const struct sp_ipt_target *t, int family, struct sp_buf *out)
{
	char buf[SP_ADDRSTRLEN];

	switch (t->kind) {
	case SP_IPT_T_JUMP:
		sp_buf_addf(out, " -j %s", t->chain);
		break;
	case SP_IPT_T_UNKNOWN:
		sp_buf_addf(out, " -j %s [not understood]", t->chain);
		break;
	case SP_IPT_T_GOTO:
		sp_buf_addf(out, " -g %s", t->chain);
		break;
	case SP_IPT_T_ACCEPT:
		sp_buf_add(out, " -j ACCEPT");
		break;
	case SP_IPT_T_DROP:
		sp_buf_add(out, " -j DROP");
		break;
	case SP_IPT_T_RETURN:
		sp_buf_add(out, " -j RETURN");
		break;
	case SP_IPT_T_REJECT:
		sp_buf_add(out, family == AF_INET6
					? " -j REJECT --reject-with icmp6-port-unreachable"
					: " -j REJECT --reject-with icmp-port-unreachable");
		break;
	case SP_IPT_T_DNAT:
		sp_addr_format(&t->to_addr, buf);
		if (!t->to_port)
			sp_buf_addf(out, " -j DNAT --to-destination %s", buf);
		else if (t->to_addr.family == AF_INET6)
			sp_buf_addf(out, " -j DNAT --to-destination [%s]:%u", buf, t->to_port);
		else
			sp_buf_addf(out, " -j DNAT --to-destination %s:%u", buf, t->to_port);
		break;
	case SP_IPT_T_MARK:
		sp_buf_addf(out, " -j MARK --set-xmark 0x%x/0x%x", t->mark_value, t->mark_mask);
		break;
	case SP_IPT_T_MASQUERADE:
		sp_buf_add(out,
			   t->random_fully ? " -j MASQUERADE --random-fully" : " -j MASQUERADE");
		break;
	}
}

void sp_ipt_print_rule(const char *chain, const struct sp_ipt_rule *r, struct sp_buf *out)
{
	sp_ipt_print_rule_family(chain, r, AF_INET, out);
}

void sp_ipt_print_rule_family(const char *chain, const struct sp_ipt_rule *r, int family,
			      struct sp_buf *out)
{
	sp_buf_addf(out, "-A %s", chain);
	print_cidr('s', &r->src, r->src_invert, out);
	print_cidr('d', &r->dst, r->dst_invert, out);
	print_proto(r->proto, out);
	for (size_t i = 0; i < r->n_matches; i++)
		print_match(&r->matches[i], family, out);
	print_target(&r->target, family, out);
	sp_buf_add(out, "\n");
}

static int chain_ptr_cmp(const void *a, const void *b)
{
	const struct sp_ipt_chain *const *x = a;
	const struct sp_ipt_chain *const *y = b;

	return strcmp((*x)->name, (*y)->name);
}

/* Built-in chains in hook order, then user chains by name: the order in
 * which libiptc (and so iptables-save) lists them. Caller frees. */
static const struct sp_ipt_chain **chains_in_save_order(const struct sp_ipt_table *t)
{
	const struct sp_ipt_chain **v = sp_xcalloc(t->n_chains + 1, sizeof(*v));
	size_t n = 0, first_user;

	for (size_t i = 0; i < t->n_chains; i++) {
		if (t->chains[i].builtin)
			v[n++] = &t->chains[i];
	}
	first_user = n;
	for (size_t i = 0; i < t->n_chains; i++) {
		if (!t->chains[i].builtin)
			v[n++] = &t->chains[i];
	}
	qsort(v + first_user, n - first_user, sizeof(*v), chain_ptr_cmp);
	return v;
}

void sp_ipt_print_table(const struct sp_ipt_table *t, struct sp_buf *out)
{
	const struct sp_ipt_chain **v = chains_in_save_order(t);

	sp_buf_addf(out, "*%s\n", sp_ipt_table_name(t->id));
	for (size_t i = 0; i < t->n_chains; i++)
		sp_buf_addf(out, ":%s %s [0:0]\n", v[i]->name, v[i]->builtin ? "ACCEPT" : "-");
	for (size_t i = 0; i < t->n_chains; i++) {
		for (size_t j = 0; j < v[i]->n_rules; j++)
			sp_ipt_print_rule_family(v[i]->name, &v[i]->rules[j], t->family, out);
	}
	sp_buf_add(out, "COMMIT\n");
	free(v);
}

void sp_ipt_print_ruleset(const struct sp_ipt_ruleset *rs, struct sp_buf *out)
{
	for (int i = 0; i < SP_IPT_N_TABLES; i++)
		sp_ipt_print_table(&rs->tables[i], out);
}

static void json_string(const char *s, struct sp_buf *out)
{
	sp_buf_add(out, "\"");
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			sp_buf_addf(out, "\\%c", c);
		else if (c == '\n')
			sp_buf_add(out, "\\n");
		else if (c < 0x20)
			sp_buf_addf(out, "\\u%04x", c);
		else
			sp_buf_addn(out, s, 1);
	}
	sp_buf_add(out, "\"");
}

/* {"family":"ipv4","tables":[{"name":"nat","chains":[{"name":..,
 * "builtin":..,"rules":["-A ...",...]}]}]}: rules as iptables-save lines,
 * which programs can match on without a second schema. */
void sp_ipt_print_ruleset_json(const struct sp_ipt_ruleset *rs, struct sp_buf *out)
{
	struct sp_buf line;

	sp_buf_init(&line);
	sp_buf_addf(out, "{\"family\":\"%s\",\"tables\":[",
		    rs->family == AF_INET6 ? "ipv6" : "ipv4");
	for (int i = 0; i < SP_IPT_N_TABLES; i++) {
		const struct sp_ipt_table *t = &rs->tables[i];
		const struct sp_ipt_chain **v = chains_in_save_order(t);

		sp_buf_addf(out, "%s{\"name\":\"%s\",\"chains\":[", i ? "," : "",
			    sp_ipt_table_name(t->id));
		for (size_t c = 0; c < t->n_chains; c++) {
			sp_buf_addf(out, "%s{\"name\":", c ? "," : "");
			json_string(v[c]->name, out);
			sp_buf_addf(out, ",\"builtin\":%s,\"rules\":[",
				    v[c]->builtin ? "true" : "false");
			for (size_t r = 0; r < v[c]->n_rules; r++) {
				sp_buf_reset(&line);
				sp_ipt_print_rule_family(v[c]->name, &v[c]->rules[r], rs->family,
							 &line);
				line.data[--line.len] = '\0'; /* the newline */
				if (r)
					sp_buf_add(out, ",");
				json_string(line.data, out);
			}
			sp_buf_add(out, "]}");
		}
		sp_buf_add(out, "]}");
		free(v);
	}
	sp_buf_add(out, "]}\n");
	sp_buf_free(&line);
}

bool sp_ipt_chain_equal(const struct sp_ipt_chain *a, const struct sp_ipt_chain *b)
{
	struct sp_buf x, y;
	bool same = a->n_rules == b->n_rules;

	sp_buf_init(&x);
	sp_buf_init(&y);
	for (size_t i = 0; same && i < a->n_rules; i++) {
		sp_buf_reset(&x);
		sp_buf_reset(&y);
		sp_ipt_print_rule("", &a->rules[i], &x);
		sp_ipt_print_rule("", &b->rules[i], &y);
		same = x.len == y.len && !memcmp(x.data, y.data, x.len);
	}
	sp_buf_free(&x);
	sp_buf_free(&y);
	return same;
}
