/* nf_tables encoding of the nftables IR (libnftnl, and libmnl directly for
 * the common rules), and read-back.
 *
 * Every statement becomes the expressions nft 1.0 generates for the text
 * the printer writes (the recipes were taken from `nft --debug=netlink`),
 * including nft's register layout: a value at 32-bit register r (8..23) is
 * addressed as the 16-byte register NFT_REG_1 + (r - 8) / 4 when r starts
 * one, else as r itself. */
#include "svcproxy/nft_kernel.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_nat.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/rtnetlink.h>
#include <netinet/icmp6.h>
#include <netinet/ip_icmp.h>
#include <stdlib.h>
#include <string.h>

#include "svcproxy/util.h"

/* nft's datatype numbers (nftables include/datatype.h); the kernel keeps
 * them only so that `nft list` can print keys and data. */
#define NFT_TYPE_IPADDR 7
#define NFT_TYPE_IP6ADDR 8
#define NFT_TYPE_INET_PROTOCOL 12
#define NFT_TYPE_INET_SERVICE 13
#define NFT_TYPE_INTEGER 4
#define NFT_TYPE_BITS 6

#define R32(i) (8 + (i)) /* NFT_REG32_00 + i */
#define MSG_MAX 65536u	 /* room reserved per message; elements are chunked */
#define ELEMS_PER_MSG 512

static uint32_t nreg(unsigned r32)
{
	return (r32 - 8) % 4 ? r32 : NFT_REG_1 + (r32 - 8) / 4;
}

static unsigned alen(int family)
{
	return family == AF_INET6 ? 16 : 4;
}

static uint32_t saddr_off(int family)
{
	return family == AF_INET6 ? 8 : 12;
}

static uint32_t daddr_off(int family)
{
	return family == AF_INET6 ? 24 : 16;
}

/* ---- expression builders ---- */

static struct nftnl_expr *ex(const char *name)
{
	struct nftnl_expr *e = nftnl_expr_alloc(name);

	if (!e)
		abort(); /* out of memory, as sp_xmalloc */
	return e;
}

static void put_payload(struct nftnl_rule *r, uint32_t base, uint32_t off, uint32_t len,
			unsigned r32)
{
	struct nftnl_expr *e = ex("payload");

	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, nreg(r32));
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, off);
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
	nftnl_rule_add_expr(r, e);
}

static void put_meta_load(struct nftnl_rule *r, uint32_t key, unsigned r32)
{
	struct nftnl_expr *e = ex("meta");

	nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
	nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, nreg(r32));
	nftnl_rule_add_expr(r, e);
}

static void put_cmp(struct nftnl_rule *r, uint32_t op, const void *data, uint32_t len)
{
	struct nftnl_expr *e = ex("cmp");

	nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
	nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
	nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
	nftnl_rule_add_expr(r, e);
}

static void put_cmp_u32(struct nftnl_rule *r, uint32_t op, uint32_t v)
{
	put_cmp(r, op, &v, sizeof(v));
}

static void put_bitwise(struct nftnl_rule *r, const void *mask, const void * xor, uint32_t len)
{
	struct nftnl_expr *e = ex("bitwise");

	nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
	nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
	nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_LEN, len);
	nftnl_expr_set(e, NFTNL_EXPR_BITWISE_MASK, mask, len);
	nftnl_expr_set(e, NFTNL_EXPR_BITWISE_XOR, xor, len);
	nftnl_rule_add_expr(r, e);
}

static void put_bitwise_u32(struct nftnl_rule *r, uint32_t mask, uint32_t xor)
{
	put_bitwise(r, &mask, &xor, sizeof(mask));
}

static void put_immediate_data(struct nftnl_rule *r, unsigned r32, const void *data, uint32_t len)
{
	struct nftnl_expr *e = ex("immediate");

	nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, nreg(r32));
	nftnl_expr_set(e, NFTNL_EXPR_IMM_DATA, data, len);
	nftnl_rule_add_expr(r, e);
}

static void put_verdict(struct nftnl_rule *r, int verdict, const char *chain)
{
	struct nftnl_expr *e = ex("immediate");

	nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
	nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, (uint32_t)verdict);
	if (chain)
		nftnl_expr_set_str(e, NFTNL_EXPR_IMM_CHAIN, chain);
	nftnl_rule_add_expr(r, e);
}

static void put_lookup(struct nftnl_rule *r, const char *set, bool verdict_map, unsigned dreg32)
{
	struct nftnl_expr *e = ex("lookup");

	nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, NFT_REG_1);
	nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, set);
	nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_FLAGS, 0); /* the kernel dumps it */
	/* dreg32 0: a plain membership test, no destination. */
	if (verdict_map || dreg32)
		nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_DREG,
				   verdict_map ? NFT_REG_VERDICT : nreg(dreg32));
	nftnl_rule_add_expr(r, e);
}

static void put_nat(struct nftnl_rule *r, int family, unsigned addr32, unsigned port32)
{
	struct nftnl_expr *e = ex("nat");

	nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_TYPE, NFT_NAT_DNAT);
	nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_FAMILY, (uint32_t)sp_nft_nfproto(family));
	nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_ADDR_MIN, nreg(addr32));
	nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_ADDR_MAX, nreg(addr32));
	nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_PROTO_MIN, nreg(port32));
	nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_REG_PROTO_MAX, nreg(port32));
	nftnl_expr_set_u32(e, NFTNL_EXPR_NAT_FLAGS,
			   NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED);
	nftnl_rule_add_expr(r, e);
}

/* nft loads only the bytes a byte-aligned prefix covers, and masks the
 * whole address otherwise. */
static void put_addr_match(struct nftnl_rule *r, int family, const struct sp_nft_stmt *s)
{
	unsigned len = alen(family), prefix = s->cidr.prefix;
	uint32_t off = s->source ? saddr_off(family) : daddr_off(family);
	uint32_t op = s->neg ? NFT_CMP_NEQ : NFT_CMP_EQ;

	if (prefix && prefix % 8 == 0) {
		put_payload(r, NFT_PAYLOAD_NETWORK_HEADER, off, prefix / 8, R32(0));
		put_cmp(r, op, s->cidr.addr.u.bytes, prefix / 8);
		return;
	}
	uint8_t mask[16] = {0}, zero[16] = {0};

	for (unsigned i = 0; i < prefix; i++)
		mask[i / 8] |= (uint8_t)(0x80 >> (i % 8));
	put_payload(r, NFT_PAYLOAD_NETWORK_HEADER, off, len, R32(0));
	put_bitwise(r, mask, zero, len);
	put_cmp(r, op, s->cidr.addr.u.bytes, len);
}

/* Key concatenations: each field starts on a 32-bit register. */
static void put_key(struct nftnl_rule *r, int family, enum sp_nft_key key)
{
	unsigned a = alen(family) / 4;

	switch (key) {
	case SP_NFT_KEY_DADDR_PROTO_PORT:
		put_payload(r, NFT_PAYLOAD_NETWORK_HEADER, daddr_off(family), alen(family), R32(0));
		put_meta_load(r, NFT_META_L4PROTO, R32(a));
		put_payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, R32(a + 1));
		break;
	case SP_NFT_KEY_PROTO_PORT:
		put_meta_load(r, NFT_META_L4PROTO, R32(0));
		put_payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, R32(1));
		break;
	case SP_NFT_KEY_SADDR:
		put_payload(r, NFT_PAYLOAD_NETWORK_HEADER, saddr_off(family), alen(family), R32(0));
		break;
	case SP_NFT_KEY_SADDR_DADDR:
		put_payload(r, NFT_PAYLOAD_NETWORK_HEADER, saddr_off(family), alen(family), R32(0));
		put_payload(r, NFT_PAYLOAD_NETWORK_HEADER, daddr_off(family), alen(family), R32(a));
		break;
	case SP_NFT_KEY_DADDR_PORT_SLOT: /* only in DNAT_PICK (put_pick) */
	case SP_NFT_KEY_PORT_SLOT:
	case SP_NFT_KEY_NONE:
		break;
	}
}

/* dnat to <key> . numgen random mod N map @set, as nft generates it for a
 * key naming the protocol: the protocol match nft derives from `tcp dport`,
 * the key fields on consecutive 32-bit registers, the endpoint (address .
 * port) looked up into the registers the nat expression reads. */
static void put_pick(struct nftnl_rule *r, int family, const struct sp_nft_stmt *s)
{
	unsigned a = alen(family) / 4, next = 0;
	uint8_t proto = s->proto;
	struct nftnl_expr *e;

	put_meta_load(r, NFT_META_L4PROTO, R32(0));
	put_cmp(r, NFT_CMP_EQ, &proto, 1);
	if (s->key == SP_NFT_KEY_DADDR_PORT_SLOT) {
		put_payload(r, NFT_PAYLOAD_NETWORK_HEADER, daddr_off(family), alen(family), R32(0));
		next = a;
	}
	put_payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, R32(next));
	e = ex("numgen");
	nftnl_expr_set_u32(e, NFTNL_EXPR_NG_DREG, nreg(R32(next + 1)));
	nftnl_expr_set_u32(e, NFTNL_EXPR_NG_TYPE, NFT_NG_RANDOM);
	nftnl_expr_set_u32(e, NFTNL_EXPR_NG_MODULUS, s->value);
	nftnl_expr_set_u32(e, NFTNL_EXPR_NG_OFFSET, 0);
	nftnl_rule_add_expr(r, e);
	put_lookup(r, s->set, false, R32(0));
	put_nat(r, family, R32(0), R32(a));
}

static void put_stmt(struct nftnl_rule *r, int family, const struct sp_nft_stmt *s)
{
	struct nftnl_expr *e;
	uint16_t port = htons(s->port);

	switch (s->kind) {
	case SP_NFT_MATCH_L4PROTO: {
		uint8_t p = (uint8_t)s->value;

		put_meta_load(r, NFT_META_L4PROTO, R32(0));
		put_cmp(r, NFT_CMP_EQ, &p, 1);
		break;
	}
	case SP_NFT_MATCH_ADDR:
		put_addr_match(r, family, s);
		break;
	case SP_NFT_MATCH_DPORT:
		put_payload(r, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, R32(0));
		put_cmp(r, NFT_CMP_EQ, &port, 2);
		break;
	case SP_NFT_MATCH_CT_NEW:
		e = ex("ct");
		nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, NFT_CT_STATE);
		nftnl_expr_set_u32(e, NFTNL_EXPR_CT_DREG, NFT_REG_1);
		nftnl_rule_add_expr(r, e);
		put_bitwise_u32(r, NF_CT_STATE_BIT(IP_CT_NEW), 0);
		put_cmp_u32(r, NFT_CMP_NEQ, 0);
		break;
	case SP_NFT_MATCH_FIB_LOCAL:
		e = ex("fib");
		nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_DREG, NFT_REG_1);
		nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE);
		nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_FLAGS,
				   s->source ? NFTA_FIB_F_SADDR : NFTA_FIB_F_DADDR);
		nftnl_rule_add_expr(r, e);
		put_cmp_u32(r, NFT_CMP_EQ, RTN_LOCAL);
		break;
	case SP_NFT_MATCH_MARK_CLEAR:
		put_meta_load(r, NFT_META_MARK, R32(0));
		put_bitwise_u32(r, s->value, 0);
		put_cmp_u32(r, NFT_CMP_EQ, 0);
		break;
	case SP_NFT_MATCH_NUMGEN:
		e = ex("numgen");
		nftnl_expr_set_u32(e, NFTNL_EXPR_NG_DREG, NFT_REG_1);
		nftnl_expr_set_u32(e, NFTNL_EXPR_NG_TYPE, NFT_NG_RANDOM);
		nftnl_expr_set_u32(e, NFTNL_EXPR_NG_MODULUS, s->value);
		nftnl_expr_set_u32(e, NFTNL_EXPR_NG_OFFSET, 0);
		nftnl_rule_add_expr(r, e);
		put_cmp_u32(r, NFT_CMP_EQ, 0);
		break;
	case SP_NFT_VMAP:
		put_key(r, family, s->key);
		put_lookup(r, s->set, true, 0);
		break;
	case SP_NFT_MATCH_SET:
		put_key(r, family, s->key);
		put_lookup(r, s->set, false, 0);
		break;
	case SP_NFT_MARK_OR:
	case SP_NFT_MARK_XOR:
		put_meta_load(r, NFT_META_MARK, R32(0));
		if (s->kind == SP_NFT_MARK_OR)
			put_bitwise_u32(r, ~s->value, s->value);
		else
			put_bitwise_u32(r, 0xffffffffu, s->value);
		e = ex("meta");
		nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, NFT_META_MARK);
		nftnl_expr_set_u32(e, NFTNL_EXPR_META_SREG, NFT_REG_1);
		nftnl_rule_add_expr(r, e);
		break;
	case SP_NFT_AFFINITY_UPDATE:
		put_key(r, family, SP_NFT_KEY_SADDR);
		put_immediate_data(r, R32(4), s->addr.u.bytes, alen(family));
		e = ex("dynset");
		nftnl_expr_set_u32(e, NFTNL_EXPR_DYNSET_OP, NFT_DYNSET_OP_UPDATE);
		nftnl_expr_set_u32(e, NFTNL_EXPR_DYNSET_SREG_KEY, NFT_REG_1);
		nftnl_expr_set_u32(e, NFTNL_EXPR_DYNSET_SREG_DATA, NFT_REG_2);
		nftnl_expr_set_str(e, NFTNL_EXPR_DYNSET_SET_NAME, s->set);
		/* 0: the map's own timeout; the kernel dumps it anyway. */
		nftnl_expr_set_u64(e, NFTNL_EXPR_DYNSET_TIMEOUT, 0);
		nftnl_rule_add_expr(r, e);
		break;
	case SP_NFT_DNAT_MAP:
		put_key(r, family, SP_NFT_KEY_SADDR);
		put_lookup(r, s->set, false, R32(0));
		put_immediate_data(r, R32(4), &port, 2);
		put_nat(r, family, R32(0), R32(4));
		break;
	case SP_NFT_DNAT:
		put_immediate_data(r, R32(0), s->addr.u.bytes, alen(family));
		put_immediate_data(r, R32(4), &port, 2);
		put_nat(r, family, R32(0), R32(4));
		break;
	case SP_NFT_DNAT_PICK:
		put_pick(r, family, s);
		break;
	case SP_NFT_MASQUERADE:
		e = ex("masq");
		nftnl_expr_set_u32(e, NFTNL_EXPR_MASQ_FLAGS, NF_NAT_RANGE_PROTO_RANDOM_FULLY);
		nftnl_rule_add_expr(r, e);
		break;
	case SP_NFT_REJECT:
		e = ex("reject");
		nftnl_expr_set_u32(e, NFTNL_EXPR_REJECT_TYPE, NFT_REJECT_ICMP_UNREACH);
		nftnl_expr_set_u8(e, NFTNL_EXPR_REJECT_CODE,
				  family == AF_INET6 ? ICMP6_DST_UNREACH_NOPORT
						     : ICMP_PORT_UNREACH);
		nftnl_rule_add_expr(r, e);
		break;
	case SP_NFT_VERDICT:
		put_verdict(r, s->verdict, s->chain);
		break;
	}
}

static struct nftnl_rule *rule_build(int family, const char *table, const char *chain,
				     const struct sp_nft_rule *ir)
{
	struct nftnl_rule *r = nftnl_rule_alloc();

	if (!r)
		abort();
	nftnl_rule_set_u32(r, NFTNL_RULE_FAMILY, (uint32_t)sp_nft_nfproto(family));
	nftnl_rule_set_str(r, NFTNL_RULE_TABLE, table);
	nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chain);
	for (size_t i = 0; i < ir->n_stmts; i++)
		put_stmt(r, family, &ir->stmts[i]);
	return r;
}

/* ---- direct encoding of the common rules ----
 *
 * libnftnl allocates an object per expression and looks its operations up
 * by name (about 800 instructions per expression; 75% of a 10,000-Service
 * full sync's user time). The rules that make up almost all of a table
 * (endpoint choice, address and port matches, verdicts) are written here
 * straight into the message with libmnl, attribute for attribute as
 * libnftnl writes them; the roundtrip test parses them back with libnftnl
 * and compares them with the libnftnl-built expressions. Other rules go
 * through libnftnl. */

static struct nlattr *expr_start(struct nlmsghdr *nlh, const char *name)
{
	struct nlattr *elem = mnl_attr_nest_start(nlh, NFTA_LIST_ELEM);

	mnl_attr_put_strz(nlh, NFTA_EXPR_NAME, name);
	return elem;
}

static void expr_end(struct nlmsghdr *nlh, struct nlattr *elem, struct nlattr *data)
{
	mnl_attr_nest_end(nlh, data);
	mnl_attr_nest_end(nlh, elem);
}

static void fast_u32(struct nlmsghdr *nlh, uint16_t type, uint32_t v)
{
	mnl_attr_put_u32(nlh, type, htonl(v));
}

static void fast_data_value(struct nlmsghdr *nlh, uint16_t type, const void *data, uint32_t len)
{
	struct nlattr *nest = mnl_attr_nest_start(nlh, type);

	mnl_attr_put(nlh, NFTA_DATA_VALUE, len, data);
	mnl_attr_nest_end(nlh, nest);
}

static void fast_meta_load(struct nlmsghdr *nlh, uint32_t key, unsigned r32)
{
	struct nlattr *e = expr_start(nlh, "meta"), *d = mnl_attr_nest_start(nlh, NFTA_EXPR_DATA);

	fast_u32(nlh, NFTA_META_KEY, key);
	fast_u32(nlh, NFTA_META_DREG, nreg(r32));
	expr_end(nlh, e, d);
}

static void fast_cmp(struct nlmsghdr *nlh, uint32_t op, const void *data, uint32_t len)
{
	struct nlattr *e = expr_start(nlh, "cmp"), *d = mnl_attr_nest_start(nlh, NFTA_EXPR_DATA);

	fast_u32(nlh, NFTA_CMP_SREG, NFT_REG_1);
	fast_u32(nlh, NFTA_CMP_OP, op);
	fast_data_value(nlh, NFTA_CMP_DATA, data, len);
	expr_end(nlh, e, d);
}

static void fast_payload(struct nlmsghdr *nlh, uint32_t base, uint32_t off, uint32_t len,
			 unsigned r32)
{
	struct nlattr *e = expr_start(nlh, "payload"),
		      *d = mnl_attr_nest_start(nlh, NFTA_EXPR_DATA);

	fast_u32(nlh, NFTA_PAYLOAD_DREG, nreg(r32));
	fast_u32(nlh, NFTA_PAYLOAD_BASE, base);
	fast_u32(nlh, NFTA_PAYLOAD_OFFSET, off);
	fast_u32(nlh, NFTA_PAYLOAD_LEN, len);
	expr_end(nlh, e, d);
}

static void fast_immediate(struct nlmsghdr *nlh, unsigned r32, const void *data, uint32_t len)
{
	struct nlattr *e = expr_start(nlh, "immediate"),
		      *d = mnl_attr_nest_start(nlh, NFTA_EXPR_DATA);

	fast_u32(nlh, NFTA_IMMEDIATE_DREG, nreg(r32));
	fast_data_value(nlh, NFTA_IMMEDIATE_DATA, data, len);
	expr_end(nlh, e, d);
}

static void fast_verdict(struct nlmsghdr *nlh, int verdict, const char *chain)
{
	struct nlattr *e = expr_start(nlh, "immediate"),
		      *d = mnl_attr_nest_start(nlh, NFTA_EXPR_DATA), *data, *v;

	fast_u32(nlh, NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT);
	data = mnl_attr_nest_start(nlh, NFTA_IMMEDIATE_DATA);
	v = mnl_attr_nest_start(nlh, NFTA_DATA_VERDICT);
	fast_u32(nlh, NFTA_VERDICT_CODE, (uint32_t)verdict);
	if (chain)
		mnl_attr_put_strz(nlh, NFTA_VERDICT_CHAIN, chain);
	mnl_attr_nest_end(nlh, v);
	mnl_attr_nest_end(nlh, data);
	expr_end(nlh, e, d);
}

static void fast_numgen(struct nlmsghdr *nlh, uint32_t modulus)
{
	struct nlattr *e = expr_start(nlh, "numgen"), *d = mnl_attr_nest_start(nlh, NFTA_EXPR_DATA);

	fast_u32(nlh, NFTA_NG_DREG, NFT_REG_1);
	fast_u32(nlh, NFTA_NG_MODULUS, modulus);
	fast_u32(nlh, NFTA_NG_TYPE, NFT_NG_RANDOM);
	fast_u32(nlh, NFTA_NG_OFFSET, 0);
	expr_end(nlh, e, d);
}

static void fast_nat(struct nlmsghdr *nlh, int family, unsigned addr32, unsigned port32)
{
	struct nlattr *e = expr_start(nlh, "nat"), *d = mnl_attr_nest_start(nlh, NFTA_EXPR_DATA);

	fast_u32(nlh, NFTA_NAT_TYPE, NFT_NAT_DNAT);
	fast_u32(nlh, NFTA_NAT_FAMILY, (uint32_t)sp_nft_nfproto(family));
	fast_u32(nlh, NFTA_NAT_REG_ADDR_MIN, nreg(addr32));
	fast_u32(nlh, NFTA_NAT_REG_ADDR_MAX, nreg(addr32));
	fast_u32(nlh, NFTA_NAT_REG_PROTO_MIN, nreg(port32));
	fast_u32(nlh, NFTA_NAT_REG_PROTO_MAX, nreg(port32));
	fast_u32(nlh, NFTA_NAT_FLAGS, NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED);
	expr_end(nlh, e, d);
}

static bool fast_encodable(const struct sp_nft_rule *ir)
{
	for (size_t i = 0; i < ir->n_stmts; i++) {
		const struct sp_nft_stmt *s = &ir->stmts[i];

		switch (s->kind) {
		case SP_NFT_MATCH_L4PROTO:
		case SP_NFT_MATCH_DPORT:
		case SP_NFT_MATCH_NUMGEN:
		case SP_NFT_DNAT:
		case SP_NFT_VERDICT:
			break;
		case SP_NFT_MATCH_ADDR:
			if (!s->cidr.prefix || s->cidr.prefix % 8)
				return false;
			break;
		default:
			return false;
		}
	}
	return true;
}

static void fast_stmt(struct nlmsghdr *nlh, int family, const struct sp_nft_stmt *s)
{
	uint16_t port = htons(s->port);

	switch (s->kind) {
	case SP_NFT_MATCH_L4PROTO: {
		uint8_t p = (uint8_t)s->value;

		fast_meta_load(nlh, NFT_META_L4PROTO, R32(0));
		fast_cmp(nlh, NFT_CMP_EQ, &p, 1);
		break;
	}
	case SP_NFT_MATCH_ADDR: /* byte-aligned prefix (fast_encodable) */
		fast_payload(nlh, NFT_PAYLOAD_NETWORK_HEADER,
			     s->source ? saddr_off(family) : daddr_off(family), s->cidr.prefix / 8,
			     R32(0));
		fast_cmp(nlh, s->neg ? NFT_CMP_NEQ : NFT_CMP_EQ, s->cidr.addr.u.bytes,
			 s->cidr.prefix / 8);
		break;
	case SP_NFT_MATCH_DPORT:
		fast_payload(nlh, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, R32(0));
		fast_cmp(nlh, NFT_CMP_EQ, &port, 2);
		break;
	case SP_NFT_MATCH_NUMGEN: {
		uint32_t zero = 0;

		fast_numgen(nlh, s->value);
		fast_cmp(nlh, NFT_CMP_EQ, &zero, sizeof(zero));
		break;
	}
	case SP_NFT_DNAT:
		fast_immediate(nlh, R32(0), s->addr.u.bytes, alen(family));
		fast_immediate(nlh, R32(4), &port, 2);
		fast_nat(nlh, family, R32(0), R32(4));
		break;
	case SP_NFT_VERDICT:
		fast_verdict(nlh, s->verdict, s->chain);
		break;
	default:
		abort(); /* excluded by fast_encodable */
	}
}

/* The payload of a NEWRULE message, as nftnl_rule_nlmsg_build_payload. */
static void rule_payload(struct nlmsghdr *nlh, int family, const char *table, const char *chain,
			 const struct sp_nft_rule *ir)
{
	struct nlattr *list;
	struct nftnl_rule *r;

	if (!fast_encodable(ir)) {
		r = rule_build(family, table, chain, ir);
		nftnl_rule_nlmsg_build_payload(nlh, r);
		nftnl_rule_free(r);
		return;
	}
	mnl_attr_put_strz(nlh, NFTA_RULE_TABLE, table);
	mnl_attr_put_strz(nlh, NFTA_RULE_CHAIN, chain);
	list = mnl_attr_nest_start(nlh, NFTA_RULE_EXPRESSIONS);
	for (size_t i = 0; i < ir->n_stmts; i++)
		fast_stmt(nlh, family, &ir->stmts[i]);
	mnl_attr_nest_end(nlh, list);
}

/* ---- signatures ---- */

static int expr_text_cb(struct nftnl_expr *e, void *data)
{
	struct sp_buf *out = data;
	char buf[1024];

	nftnl_expr_snprintf(buf, sizeof(buf), e, NFTNL_OUTPUT_DEFAULT, 0);
	sp_buf_addf(out, "[ %s %s]", nftnl_expr_get_str(e, NFTNL_EXPR_NAME), buf);
	return 0;
}

static char *signature_of(struct nftnl_rule *r)
{
	struct sp_buf out;

	sp_buf_init(&out);
	sp_buf_add(&out, "");
	nftnl_expr_foreach(r, expr_text_cb, &out);
	return sp_buf_steal(&out);
}

char *sp_nft_rule_signature(int family, const struct sp_nft_rule *ir)
{
	struct nftnl_rule *r;
	char *sig;

	if (ir->foreign)
		return sp_xstrdup(ir->foreign);
	r = rule_build(family, "", "", ir);
	sig = signature_of(r);
	nftnl_rule_free(r);
	return sig;
}

char *sp_nft_rule_roundtrip_signature(int family, const struct sp_nft_rule *ir)
{
	char *buf = sp_xmalloc(MSG_MAX);
	struct nftnl_rule *back;
	struct nlmsghdr *nlh;
	char *sig = NULL;

	/* The encoder sync uses, parsed back by libnftnl. */
	nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_NEWRULE, (uint16_t)sp_nft_nfproto(family),
				    NLM_F_APPEND | NLM_F_CREATE, 1);
	rule_payload(nlh, family, SP_NFT_TABLE, "c", ir);
	back = nftnl_rule_alloc();
	if (back && nftnl_rule_nlmsg_parse(nlh, back) == 0)
		sig = signature_of(back);
	nftnl_rule_free(back);
	free(buf);
	return sig;
}

/* ---- messages ---- */

static struct nlmsghdr *hdr(struct sp_nl *nl, struct sp_nl_batch *b, uint16_t type, int family,
			    uint16_t flags)
{
	char *buf = sp_nl_batch_tail(b, MSG_MAX);

	return nftnl_nlmsg_build_hdr(buf, type, (uint16_t)sp_nft_nfproto(family),
				     flags | NLM_F_REQUEST, sp_nl_next_seq(nl));
}

void sp_nft_put_batch_begin(struct sp_nl *nl, struct sp_nl_batch *b)
{
	nftnl_batch_begin(sp_nl_batch_tail(b, MSG_MAX), sp_nl_next_seq(nl));
	sp_nl_batch_commit(b, NULL, false);
}

void sp_nft_put_batch_end(struct sp_nl *nl, struct sp_nl_batch *b)
{
	nftnl_batch_end(sp_nl_batch_tail(b, MSG_MAX), sp_nl_next_seq(nl));
	sp_nl_batch_commit(b, NULL, false);
}

static const char *op_word(enum sp_nft_op op)
{
	return op == SP_NFT_OP_ADD ? "add" : op == SP_NFT_OP_DEL ? "delete" : "flush";
}

void sp_nft_put_table(struct sp_nl *nl, struct sp_nl_batch *b, int family, const char *name,
		      enum sp_nft_op op)
{
	struct nftnl_table *t = nftnl_table_alloc();
	struct nlmsghdr *nlh;
	char *label;

	if (!t)
		abort();
	nftnl_table_set_u32(t, NFTNL_TABLE_FAMILY, (uint32_t)sp_nft_nfproto(family));
	nftnl_table_set_str(t, NFTNL_TABLE_NAME, name);
	nlh = hdr(nl, b, op == SP_NFT_OP_ADD ? NFT_MSG_NEWTABLE : NFT_MSG_DELTABLE, family,
		  op == SP_NFT_OP_ADD ? NLM_F_CREATE : 0);
	nftnl_table_nlmsg_build_payload(nlh, t);
	nftnl_table_free(t);
	label = sp_xasprintf("%s table %s %s", op_word(op), sp_nft_family_name(family), name);
	sp_nl_batch_commit(b, label, true);
	free(label);
}

static void chain_label(struct sp_buf *out, const void *x, const void *y, const void *z)
{
	const struct sp_nft_table *t = x;
	const struct sp_nft_chain *c = y;

	sp_buf_addf(out, "%s chain %s %s %s", (const char *)z, sp_nft_family_name(t->family),
		    t->name, c->name);
}

void sp_nft_put_chain(struct sp_nl *nl, struct sp_nl_batch *b, const struct sp_nft_table *t,
		      const struct sp_nft_chain *c, enum sp_nft_op op)
{
	struct nftnl_chain *ch;
	struct nlmsghdr *nlh;
	if (op == SP_NFT_OP_FLUSH) {
		struct nftnl_rule *r = nftnl_rule_alloc();

		if (!r)
			abort();
		nftnl_rule_set_u32(r, NFTNL_RULE_FAMILY, (uint32_t)sp_nft_nfproto(t->family));
		nftnl_rule_set_str(r, NFTNL_RULE_TABLE, t->name);
		nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, c->name);
		nlh = hdr(nl, b, NFT_MSG_DELRULE, t->family, 0);
		nftnl_rule_nlmsg_build_payload(nlh, r);
		nftnl_rule_free(r);
		sp_nl_batch_commit_lazy(b, chain_label, t, c, op_word(op));
		return;
	}
	ch = nftnl_chain_alloc();
	if (!ch)
		abort();
	nftnl_chain_set_u32(ch, NFTNL_CHAIN_FAMILY, (uint32_t)sp_nft_nfproto(t->family));
	nftnl_chain_set_str(ch, NFTNL_CHAIN_TABLE, t->name);
	nftnl_chain_set_str(ch, NFTNL_CHAIN_NAME, c->name);
	if (op == SP_NFT_OP_ADD && c->base) {
		nftnl_chain_set_str(ch, NFTNL_CHAIN_TYPE, c->type);
		nftnl_chain_set_u32(ch, NFTNL_CHAIN_HOOKNUM, c->hook);
		nftnl_chain_set_s32(ch, NFTNL_CHAIN_PRIO, c->prio);
		nftnl_chain_set_u32(ch, NFTNL_CHAIN_POLICY, NF_ACCEPT);
	}
	nlh = hdr(nl, b, op == SP_NFT_OP_ADD ? NFT_MSG_NEWCHAIN : NFT_MSG_DELCHAIN, t->family,
		  op == SP_NFT_OP_ADD ? NLM_F_CREATE : 0);
	nftnl_chain_nlmsg_build_payload(nlh, ch);
	nftnl_chain_free(ch);
	sp_nl_batch_commit_lazy(b, chain_label, t, c, op_word(op));
}

static uint32_t concat_type(const uint32_t *types, size_t n)
{
	uint32_t t = 0;

	for (size_t i = 0; i < n; i++)
		t = (t << NFT_TYPE_BITS) | types[i];
	return t;
}

static void key_shape(int family, enum sp_nft_key key, uint32_t *type, uint32_t *len)
{
	uint32_t addr = family == AF_INET6 ? NFT_TYPE_IP6ADDR : NFT_TYPE_IPADDR;

	switch (key) {
	case SP_NFT_KEY_DADDR_PROTO_PORT: {
		uint32_t types[] = {addr, NFT_TYPE_INET_PROTOCOL, NFT_TYPE_INET_SERVICE};

		*type = concat_type(types, 3);
		*len = alen(family) + 8;
		return;
	}
	case SP_NFT_KEY_PROTO_PORT: {
		uint32_t types[] = {NFT_TYPE_INET_PROTOCOL, NFT_TYPE_INET_SERVICE};

		*type = concat_type(types, 2);
		*len = 8;
		return;
	}
	case SP_NFT_KEY_SADDR_DADDR: {
		uint32_t types[] = {addr, addr};

		*type = concat_type(types, 2);
		*len = 2 * alen(family);
		return;
	}
	case SP_NFT_KEY_DADDR_PORT_SLOT: {
		uint32_t types[] = {addr, NFT_TYPE_INET_SERVICE, NFT_TYPE_INTEGER};

		*type = concat_type(types, 3);
		*len = alen(family) + 8;
		return;
	}
	case SP_NFT_KEY_PORT_SLOT: {
		uint32_t types[] = {NFT_TYPE_INET_SERVICE, NFT_TYPE_INTEGER};

		*type = concat_type(types, 2);
		*len = 8;
		return;
	}
	case SP_NFT_KEY_SADDR:
	case SP_NFT_KEY_NONE:
		*type = addr;
		*len = alen(family);
		return;
	}
}

static bool is_epmap_key(enum sp_nft_key key)
{
	return key == SP_NFT_KEY_DADDR_PORT_SLOT || key == SP_NFT_KEY_PORT_SLOT;
}

/* ---- the `typeof` of an endpoint map ----
 *
 * nft keeps a typeof declaration in the set's user data (nftnl_udata
 * attributes: type, length, value) and prints the set from it; a map
 * without it cannot be listed, since nft has no type name for numgen's
 * value. These are the attributes nft 1.0.6 writes for
 * `typeof ip daddr . tcp dport . numgen random mod 1 : ip daddr . tcp dport`
 * (read back from a map nft created): byte orders, then the key's and the
 * data's expressions, each a concatenation of payload and numgen
 * expressions with nft's own numbering of expression kinds, protocol
 * headers and fields. */

enum {
	UD_KEY_BYTEORDER = 0,
	UD_DATA_BYTEORDER = 1,
	UD_KEY_TYPEOF = 3,
	UD_DATA_TYPEOF = 4,
	UD_DATA_INTERVAL = 6,
	UD_EXPR_KIND = 0, /* within a typeof: kind, then its data */
	UD_EXPR_DATA = 1,
	UD_KIND_PAYLOAD = 7,
	UD_KIND_CONCAT = 13,
	UD_KIND_NUMGEN = 23,
	UD_HDR_IP = 12,
	UD_HDR_IP6 = 13,
	UD_HDR_UDP = 6,
	UD_HDR_TCP = 8,
	UD_HDR_SCTP = 10,
	UD_FIELD_IP_DADDR = 12,
	UD_FIELD_IP6_DADDR = 9,
	UD_FIELD_DPORT = 2,
	UD_NUMGEN_RANDOM = 1,
};

struct udata {
	uint8_t b[256];
	size_t n;
};

static void ud_u32(struct udata *u, uint8_t type, uint32_t v)
{
	u->b[u->n++] = type;
	u->b[u->n++] = sizeof(v);
	memcpy(u->b + u->n, &v, sizeof(v)); /* host order, as nftnl_udata_put_u32 */
	u->n += sizeof(v);
}

static size_t ud_nest(struct udata *u, uint8_t type)
{
	u->b[u->n++] = type;
	u->b[u->n++] = 0;
	return u->n;
}

static void ud_nest_end(struct udata *u, size_t start)
{
	u->b[start - 1] = (uint8_t)(u->n - start);
}

static void ud_payload(struct udata *u, uint8_t pos, uint32_t hdr, uint32_t field)
{
	size_t e = ud_nest(u, pos), d;

	ud_u32(u, UD_EXPR_KIND, UD_KIND_PAYLOAD);
	d = ud_nest(u, UD_EXPR_DATA);
	ud_u32(u, 0, hdr);
	ud_u32(u, 1, field);
	ud_nest_end(u, d);
	ud_nest_end(u, e);
}

static uint32_t ud_proto_hdr(uint8_t proto)
{
	return proto == IPPROTO_UDP ? UD_HDR_UDP : proto == IPPROTO_SCTP ? UD_HDR_SCTP : UD_HDR_TCP;
}

static void ud_daddr(struct udata *u, uint8_t pos, int family)
{
	if (family == AF_INET6)
		ud_payload(u, pos, UD_HDR_IP6, UD_FIELD_IP6_DADDR);
	else
		ud_payload(u, pos, UD_HDR_IP, UD_FIELD_IP_DADDR);
}

static void epmap_udata(int family, const struct sp_nft_set *s, struct udata *u)
{
	size_t top, list, e, d;
	uint8_t pos = 0;

	u->n = 0;
	ud_u32(u, UD_KEY_BYTEORDER, 0);
	ud_u32(u, UD_DATA_BYTEORDER, 0);
	top = ud_nest(u, UD_KEY_TYPEOF);
	ud_u32(u, UD_EXPR_KIND, UD_KIND_CONCAT);
	list = ud_nest(u, UD_EXPR_DATA);
	if (s->key == SP_NFT_KEY_DADDR_PORT_SLOT)
		ud_daddr(u, pos++, family);
	ud_payload(u, pos++, ud_proto_hdr(s->proto), UD_FIELD_DPORT);
	e = ud_nest(u, pos);
	ud_u32(u, UD_EXPR_KIND, UD_KIND_NUMGEN);
	d = ud_nest(u, UD_EXPR_DATA);
	ud_u32(u, 0, UD_NUMGEN_RANDOM);
	ud_u32(u, 1, 1); /* modulus: `mod 1` in the declaration */
	ud_u32(u, 2, 0); /* offset */
	ud_nest_end(u, d);
	ud_nest_end(u, e);
	ud_nest_end(u, list);
	ud_nest_end(u, top);
	top = ud_nest(u, UD_DATA_TYPEOF);
	ud_u32(u, UD_EXPR_KIND, UD_KIND_CONCAT);
	list = ud_nest(u, UD_EXPR_DATA);
	ud_daddr(u, 0, family);
	ud_payload(u, 1, ud_proto_hdr(s->proto), UD_FIELD_DPORT);
	ud_nest_end(u, list);
	ud_nest_end(u, top);
	ud_u32(u, UD_DATA_INTERVAL, 0);
}

static struct nftnl_set *set_build(const struct sp_nft_table *t, const struct sp_nft_set *s)
{
	struct nftnl_set *ns = nftnl_set_alloc();

	if (!ns)
		abort();
	nftnl_set_set_u32(ns, NFTNL_SET_FAMILY, (uint32_t)sp_nft_nfproto(t->family));
	nftnl_set_set_str(ns, NFTNL_SET_TABLE, t->name);
	nftnl_set_set_str(ns, NFTNL_SET_NAME, s->name);
	return ns;
}

static uint32_t set_ids;

void sp_nft_put_set(struct sp_nl *nl, struct sp_nl_batch *b, const struct sp_nft_table *t,
		    const struct sp_nft_set *s, enum sp_nft_op op)
{
	struct nftnl_set *ns = set_build(t, s);
	struct nlmsghdr *nlh;
	uint16_t type = NFT_MSG_NEWSET, flags = NLM_F_CREATE;
	char *label;

	if (op == SP_NFT_OP_ADD) {
		uint32_t ktype = 0, klen = 0;

		key_shape(t->family, s->key, &ktype, &klen);
		/* The kernel requires an id, unique within the batch, by
		 * which later messages could name the new set. */
		nftnl_set_set_u32(ns, NFTNL_SET_ID, ++set_ids);
		nftnl_set_set_u32(ns, NFTNL_SET_KEY_TYPE, ktype);
		nftnl_set_set_u32(ns, NFTNL_SET_KEY_LEN, klen);
		if (s->affinity) {
			nftnl_set_set_u32(ns, NFTNL_SET_FLAGS,
					  NFT_SET_MAP | NFT_SET_TIMEOUT | NFT_SET_EVAL);
			nftnl_set_set_u32(ns, NFTNL_SET_DATA_TYPE, ktype);
			nftnl_set_set_u32(ns, NFTNL_SET_DATA_LEN, klen);
			nftnl_set_set_u64(ns, NFTNL_SET_TIMEOUT, (uint64_t)s->timeout_s * 1000);
			nftnl_set_set_u32(ns, NFTNL_SET_DESC_SIZE, 65535);
		} else if (s->plain) {
			nftnl_set_set_u32(ns, NFTNL_SET_FLAGS, 0);
		} else if (is_epmap_key(s->key)) {
			uint32_t types[] = {t->family == AF_INET6 ? NFT_TYPE_IP6ADDR
								  : NFT_TYPE_IPADDR,
					    NFT_TYPE_INET_SERVICE};
			struct udata u;

			epmap_udata(t->family, s, &u);
			nftnl_set_set_u32(ns, NFTNL_SET_FLAGS, NFT_SET_MAP);
			nftnl_set_set_u32(ns, NFTNL_SET_DATA_TYPE, concat_type(types, 2));
			nftnl_set_set_u32(ns, NFTNL_SET_DATA_LEN, alen(t->family) + 4);
			nftnl_set_set_data(ns, NFTNL_SET_USERDATA, u.b, (uint32_t)u.n);
		} else {
			nftnl_set_set_u32(ns, NFTNL_SET_FLAGS, NFT_SET_MAP);
			nftnl_set_set_u32(ns, NFTNL_SET_DATA_TYPE, NFT_DATA_VERDICT);
		}
	} else if (op == SP_NFT_OP_DEL) {
		type = NFT_MSG_DELSET;
		flags = 0;
	} else {
		type = NFT_MSG_DELSETELEM; /* no elements: flush */
		flags = 0;
	}
	nlh = hdr(nl, b, type, t->family, flags);
	if (op == SP_NFT_OP_FLUSH)
		nftnl_set_elems_nlmsg_build_payload(nlh, ns);
	else
		nftnl_set_nlmsg_build_payload(nlh, ns);
	nftnl_set_free(ns);
	label = sp_xasprintf("%s %s %s %s %s", op_word(op), s->plain ? "set" : "map",
			     sp_nft_family_name(t->family), t->name, s->name);
	sp_nl_batch_commit(b, label, true);
	free(label);
}

static size_t elem_key(int family, enum sp_nft_key key, const struct sp_nft_elem *e,
		       uint8_t out[40])
{
	size_t n = 0;
	uint16_t port = htons(e->port);

	memset(out, 0, 40);
	if (key == SP_NFT_KEY_SADDR_DADDR) {
		memcpy(out, e->addr.u.bytes, alen(family));
		memcpy(out + alen(family), e->addr.u.bytes, alen(family));
		return 2 * alen(family);
	}
	if (key == SP_NFT_KEY_DADDR_PROTO_PORT || key == SP_NFT_KEY_SADDR) {
		memcpy(out, e->addr.u.bytes, alen(family));
		n = alen(family);
	}
	if (key == SP_NFT_KEY_DADDR_PORT_SLOT) {
		memcpy(out, e->addr.u.bytes, alen(family));
		n = alen(family);
	}
	if (is_epmap_key(key)) {
		memcpy(out + n, &port, 2);
		memcpy(out + n + 4, &e->slot, 4); /* numgen's value, host order */
		return n + 8;
	}
	if (key == SP_NFT_KEY_SADDR)
		return n;
	out[n] = e->proto;
	memcpy(out + n + 4, &port, 2);
	return n + 8;
}

static struct nftnl_set_elem *elem_build(int family, const struct sp_nft_set *s,
					 const struct sp_nft_elem *e, bool with_data)
{
	struct nftnl_set_elem *ne = nftnl_set_elem_alloc();
	uint8_t key[40];
	size_t klen = elem_key(family, s->key, e, key);

	if (!ne)
		abort();
	nftnl_set_elem_set(ne, NFTNL_SET_ELEM_KEY, key, (uint32_t)klen);
	if (with_data && is_epmap_key(s->key)) {
		uint8_t data[20] = {0};
		uint16_t port = htons(e->to_port);

		memcpy(data, e->to.u.bytes, alen(family));
		memcpy(data + alen(family), &port, 2);
		nftnl_set_elem_set(ne, NFTNL_SET_ELEM_DATA, data, alen(family) + 4);
	} else if (with_data && !s->plain) {
		nftnl_set_elem_set_u32(ne, NFTNL_SET_ELEM_VERDICT, (uint32_t)e->verdict);
		if (e->chain)
			nftnl_set_elem_set_str(ne, NFTNL_SET_ELEM_CHAIN, e->chain);
	}
	return ne;
}

void sp_nft_put_elems(struct sp_nl *nl, struct sp_nl_batch *b, const struct sp_nft_table *t,
		      const struct sp_nft_set *s, const struct sp_nft_elem *const *elems, size_t n,
		      enum sp_nft_op op)
{
	for (size_t start = 0; start < n; start += ELEMS_PER_MSG) {
		size_t end = start + ELEMS_PER_MSG < n ? start + ELEMS_PER_MSG : n;
		struct nftnl_set *ns = set_build(t, s);
		struct nlmsghdr *nlh;
		char *label;

		for (size_t i = start; i < end; i++)
			nftnl_set_elem_add(ns,
					   elem_build(t->family, s, elems[i], op == SP_NFT_OP_ADD));
		nlh = hdr(nl, b, op == SP_NFT_OP_ADD ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM,
			  t->family, op == SP_NFT_OP_ADD ? NLM_F_CREATE : 0);
		nftnl_set_elems_nlmsg_build_payload(nlh, ns);
		nftnl_set_free(ns);
		if (end - start == 1) {
			struct sp_buf eb;

			sp_buf_init(&eb);
			sp_nft_print_elem(t, s, elems[start], &eb);
			label = sp_xasprintf("%s element %s %s %s { %s }", op_word(op),
					     sp_nft_family_name(t->family), t->name, s->name,
					     eb.data);
			sp_buf_free(&eb);
		} else {
			label = sp_xasprintf("%s %zu elements of map %s %s %s", op_word(op),
					     end - start, sp_nft_family_name(t->family), t->name,
					     s->name);
		}
		sp_nl_batch_commit(b, label, true);
		free(label);
	}
}

static void rule_label(struct sp_buf *out, const void *x, const void *y, const void *z)
{
	const struct sp_nft_table *t = x;
	const struct sp_nft_chain *c = y;

	sp_buf_addf(out, "add rule %s %s %s ", sp_nft_family_name(t->family), t->name, c->name);
	sp_nft_print_rule(t, z, out);
}

void sp_nft_put_rule(struct sp_nl *nl, struct sp_nl_batch *b, const struct sp_nft_table *t,
		     const struct sp_nft_chain *c, const struct sp_nft_rule *ir)
{
	struct nlmsghdr *nlh = hdr(nl, b, NFT_MSG_NEWRULE, t->family, NLM_F_APPEND | NLM_F_CREATE);

	rule_payload(nlh, t->family, t->name, c->name, ir);
	sp_nl_batch_commit_lazy(b, rule_label, t, c, ir);
}

/* ---- read-back ---- */

struct dump_ctx {
	struct sp_nft_table *t;
	int family;
	bool found;
	struct sp_nft_set *set;		  /* element dumps */
	struct sp_nft_chain_index chains; /* rule dumps */
	struct sp_nft_chain *last;	  /* rules come chain by chain */
	bool decode;			  /* also into statements, for display */
};

static int table_cb(const struct nlmsghdr *nlh, void *data)
{
	struct dump_ctx *x = data;
	struct nftnl_table *t = nftnl_table_alloc();

	if (t && nftnl_table_nlmsg_parse(nlh, t) == 0 &&
	    !strcmp(nftnl_table_get_str(t, NFTNL_TABLE_NAME), x->t->name))
		x->found = true;
	nftnl_table_free(t);
	return MNL_CB_OK;
}

static int chain_cb(const struct nlmsghdr *nlh, void *data)
{
	struct dump_ctx *x = data;
	struct nftnl_chain *ch = nftnl_chain_alloc();
	struct sp_nft_chain *c;

	if (!ch || nftnl_chain_nlmsg_parse(nlh, ch) < 0 ||
	    strcmp(nftnl_chain_get_str(ch, NFTNL_CHAIN_TABLE), x->t->name)) {
		nftnl_chain_free(ch);
		return MNL_CB_OK;
	}
	c = sp_nft_chain_add(x->t, nftnl_chain_get_str(ch, NFTNL_CHAIN_NAME));
	if (nftnl_chain_is_set(ch, NFTNL_CHAIN_HOOKNUM)) {
		const char *type = nftnl_chain_is_set(ch, NFTNL_CHAIN_TYPE)
					   ? nftnl_chain_get_str(ch, NFTNL_CHAIN_TYPE)
					   : "filter";

		c->base = true;
		c->type = !strcmp(type, "nat")	    ? "nat"
			  : !strcmp(type, "filter") ? "filter"
						    : "other";
		c->hook = nftnl_chain_get_u32(ch, NFTNL_CHAIN_HOOKNUM);
		c->prio = nftnl_chain_get_s32(ch, NFTNL_CHAIN_PRIO);
		if (nftnl_chain_is_set(ch, NFTNL_CHAIN_POLICY) &&
		    nftnl_chain_get_u32(ch, NFTNL_CHAIN_POLICY) != NF_ACCEPT)
			c->type = "other"; /* never equal to a planned chain */
	}
	nftnl_chain_free(ch);
	return MNL_CB_OK;
}

/* ---- decoding kernel rules back into statements (for display) ----
 *
 * Each statement is recognised by the expressions put_stmt emits for it.
 * The result is only trusted when encoding it again gives the kernel's
 * expressions exactly (see rule_cb); anything else stays a signature. */

struct expr_seq {
	struct nftnl_expr **e;
	size_t n, cap;
};

static int collect_cb(struct nftnl_expr *e, void *data)
{
	struct expr_seq *q = data;

	*(struct nftnl_expr **)sp_array_push(&q->e, &q->n, &q->cap, sizeof(e)) = e;
	return 0;
}

static bool is(const struct expr_seq *q, size_t i, const char *name)
{
	return i < q->n && !strcmp(nftnl_expr_get_str(q->e[i], NFTNL_EXPR_NAME), name);
}

static uint32_t u32(const struct expr_seq *q, size_t i, uint16_t attr)
{
	return nftnl_expr_is_set(q->e[i], attr) ? nftnl_expr_get_u32(q->e[i], attr) : 0;
}

static const void *data_of(const struct expr_seq *q, size_t i, uint16_t attr, uint32_t *len)
{
	*len = 0;
	return nftnl_expr_is_set(q->e[i], attr) ? nftnl_expr_get(q->e[i], attr, len) : NULL;
}

static bool is_payload(const struct expr_seq *q, size_t i, uint32_t base, uint32_t off)
{
	return is(q, i, "payload") && u32(q, i, NFTNL_EXPR_PAYLOAD_BASE) == base &&
	       u32(q, i, NFTNL_EXPR_PAYLOAD_OFFSET) == off;
}

static bool is_meta(const struct expr_seq *q, size_t i, uint32_t key)
{
	return is(q, i, "meta") && u32(q, i, NFTNL_EXPR_META_KEY) == key;
}

static char *str_of(const struct expr_seq *q, size_t i, uint16_t attr)
{
	return nftnl_expr_is_set(q->e[i], attr) ? sp_xstrdup(nftnl_expr_get_str(q->e[i], attr))
						: NULL;
}

static void set_addr(struct sp_addr *a, int family, const void *bytes, uint32_t len)
{
	memset(a, 0, sizeof(*a));
	a->family = family;
	memcpy(a->u.bytes, bytes, len < 16 ? len : 16);
}

static bool decode_pick(int family, const struct expr_seq *q, size_t *i, struct sp_nft_rule *r)
{
	size_t k = *i + 2;
	enum sp_nft_key key = SP_NFT_KEY_PORT_SLOT;
	struct sp_nft_stmt *s;
	const uint8_t *d;
	uint32_t len;

	if (!is_meta(q, *i, NFT_META_L4PROTO) || !is(q, *i + 1, "cmp"))
		return false;
	if (is_payload(q, k, NFT_PAYLOAD_NETWORK_HEADER, daddr_off(family))) {
		key = SP_NFT_KEY_DADDR_PORT_SLOT;
		k++;
	}
	if (!is_payload(q, k, NFT_PAYLOAD_TRANSPORT_HEADER, 2) || !is(q, k + 1, "numgen") ||
	    !is(q, k + 2, "lookup") || !is(q, k + 3, "nat"))
		return false;
	d = data_of(q, *i + 1, NFTNL_EXPR_CMP_DATA, &len);
	if (!d || len != 1)
		return false;
	s = sp_nft_stmt_add(r, SP_NFT_DNAT_PICK);
	s->key = key;
	s->proto = d[0];
	s->value = u32(q, k + 1, NFTNL_EXPR_NG_MODULUS);
	s->set = str_of(q, k + 2, NFTNL_EXPR_LOOKUP_SET);
	*i = k + 4;
	return true;
}

/* One statement at q[*i]; false when nothing matches. */
static bool decode_stmt(int family, const struct expr_seq *q, size_t *i, struct sp_nft_rule *r)
{
	size_t k = *i;
	uint32_t len, alen_b = alen(family);
	const uint8_t *d;
	struct sp_nft_stmt *s;

	if (decode_pick(family, q, i, r))
		return true;
	if (is_meta(q, k, NFT_META_L4PROTO) && is(q, k + 1, "cmp")) {
		d = data_of(q, k + 1, NFTNL_EXPR_CMP_DATA, &len);
		if (!d || len != 1)
			return false;
		sp_nft_stmt_add(r, SP_NFT_MATCH_L4PROTO)->value = d[0];
		*i = k + 2;
		return true;
	}
	if (is_meta(q, k, NFT_META_L4PROTO) &&
	    is_payload(q, k + 1, NFT_PAYLOAD_TRANSPORT_HEADER, 2) && is(q, k + 2, "lookup")) {
		s = sp_nft_stmt_add(r, SP_NFT_VMAP);
		s->key = SP_NFT_KEY_PROTO_PORT;
		s->set = str_of(q, k + 2, NFTNL_EXPR_LOOKUP_SET);
		*i = k + 3;
		return true;
	}
	if (is_payload(q, k, NFT_PAYLOAD_TRANSPORT_HEADER, 2) && is(q, k + 1, "cmp")) {
		d = data_of(q, k + 1, NFTNL_EXPR_CMP_DATA, &len);
		if (!d || len != 2)
			return false;
		sp_nft_stmt_add(r, SP_NFT_MATCH_DPORT)->port = (uint16_t)(d[0] << 8 | d[1]);
		*i = k + 2;
		return true;
	}
	if (is_payload(q, k, NFT_PAYLOAD_NETWORK_HEADER, daddr_off(family)) &&
	    is_meta(q, k + 1, NFT_META_L4PROTO) && is(q, k + 3, "lookup")) {
		s = sp_nft_stmt_add(r, SP_NFT_VMAP);
		s->key = SP_NFT_KEY_DADDR_PROTO_PORT;
		s->set = str_of(q, k + 3, NFTNL_EXPR_LOOKUP_SET);
		*i = k + 4;
		return true;
	}
	if (is_payload(q, k, NFT_PAYLOAD_NETWORK_HEADER, saddr_off(family)) &&
	    is_payload(q, k + 1, NFT_PAYLOAD_NETWORK_HEADER, daddr_off(family)) &&
	    is(q, k + 2, "lookup")) {
		s = sp_nft_stmt_add(r, SP_NFT_MATCH_SET);
		s->key = SP_NFT_KEY_SADDR_DADDR;
		s->set = str_of(q, k + 2, NFTNL_EXPR_LOOKUP_SET);
		*i = k + 3;
		return true;
	}
	if (is_payload(q, k, NFT_PAYLOAD_NETWORK_HEADER, saddr_off(family)) &&
	    is(q, k + 1, "immediate") && is(q, k + 2, "dynset")) {
		s = sp_nft_stmt_add(r, SP_NFT_AFFINITY_UPDATE);
		s->set = str_of(q, k + 2, NFTNL_EXPR_DYNSET_SET_NAME);
		d = data_of(q, k + 1, NFTNL_EXPR_IMM_DATA, &len);
		if (d)
			set_addr(&s->addr, family, d, len);
		*i = k + 3;
		return true;
	}
	if (is_payload(q, k, NFT_PAYLOAD_NETWORK_HEADER, saddr_off(family)) &&
	    is(q, k + 1, "lookup") && is(q, k + 2, "immediate") && is(q, k + 3, "nat")) {
		s = sp_nft_stmt_add(r, SP_NFT_DNAT_MAP);
		s->set = str_of(q, k + 1, NFTNL_EXPR_LOOKUP_SET);
		d = data_of(q, k + 2, NFTNL_EXPR_IMM_DATA, &len);
		if (d && len == 2)
			s->port = (uint16_t)(d[0] << 8 | d[1]);
		*i = k + 4;
		return true;
	}
	if (is(q, k, "payload") &&
	    u32(q, k, NFTNL_EXPR_PAYLOAD_BASE) == NFT_PAYLOAD_NETWORK_HEADER &&
	    (u32(q, k, NFTNL_EXPR_PAYLOAD_OFFSET) == saddr_off(family) ||
	     u32(q, k, NFTNL_EXPR_PAYLOAD_OFFSET) == daddr_off(family))) {
		size_t c = is(q, k + 1, "bitwise") ? k + 2 : k + 1;
		unsigned prefix;

		if (!is(q, c, "cmp"))
			return false;
		d = data_of(q, c, NFTNL_EXPR_CMP_DATA, &len);
		if (!d || len > alen_b)
			return false;
		prefix = u32(q, k, NFTNL_EXPR_PAYLOAD_LEN) * 8;
		if (c == k + 2) {
			uint32_t mlen;
			const uint8_t *m = data_of(q, k + 1, NFTNL_EXPR_BITWISE_MASK, &mlen);

			prefix = 0;
			for (uint32_t b = 0; m && b < mlen * 8 && (m[b / 8] & (0x80 >> (b % 8)));
			     b++)
				prefix++;
		}
		s = sp_nft_stmt_add(r, SP_NFT_MATCH_ADDR);
		s->source = u32(q, k, NFTNL_EXPR_PAYLOAD_OFFSET) == saddr_off(family);
		s->neg = u32(q, c, NFTNL_EXPR_CMP_OP) == NFT_CMP_NEQ;
		set_addr(&s->cidr.addr, family, d, len);
		s->cidr.prefix = prefix;
		*i = c + 1;
		return true;
	}
	if (is(q, k, "ct") && is(q, k + 1, "bitwise") && is(q, k + 2, "cmp")) {
		sp_nft_stmt_add(r, SP_NFT_MATCH_CT_NEW);
		*i = k + 3;
		return true;
	}
	if (is(q, k, "fib") && is(q, k + 1, "cmp")) {
		sp_nft_stmt_add(r, SP_NFT_MATCH_FIB_LOCAL)->source =
			u32(q, k, NFTNL_EXPR_FIB_FLAGS) & NFTA_FIB_F_SADDR;
		*i = k + 2;
		return true;
	}
	if (is_meta(q, k, NFT_META_MARK) && is(q, k + 1, "bitwise")) {
		uint32_t mask = 0, xor = 0, mlen, xlen;
		const void *m = data_of(q, k + 1, NFTNL_EXPR_BITWISE_MASK, &mlen);
		const void *x = data_of(q, k + 1, NFTNL_EXPR_BITWISE_XOR, &xlen);

		if (!m || !x || mlen != 4 || xlen != 4)
			return false;
		memcpy(&mask, m, 4);
		memcpy(&xor, x, 4);
		if (is(q, k + 2, "cmp")) {
			sp_nft_stmt_add(r, SP_NFT_MATCH_MARK_CLEAR)->value = mask;
		} else if (is(q, k + 2, "meta")) {
			s = sp_nft_stmt_add(r,
					    mask == 0xffffffffu ? SP_NFT_MARK_XOR : SP_NFT_MARK_OR);
			s->value = xor;
		} else {
			return false;
		}
		*i = k + 3;
		return true;
	}
	if (is(q, k, "numgen") && is(q, k + 1, "cmp")) {
		sp_nft_stmt_add(r, SP_NFT_MATCH_NUMGEN)->value = u32(q, k, NFTNL_EXPR_NG_MODULUS);
		*i = k + 2;
		return true;
	}
	if (is(q, k, "immediate") && u32(q, k, NFTNL_EXPR_IMM_DREG) != NFT_REG_VERDICT &&
	    is(q, k + 1, "immediate") && is(q, k + 2, "nat")) {
		s = sp_nft_stmt_add(r, SP_NFT_DNAT);
		d = data_of(q, k, NFTNL_EXPR_IMM_DATA, &len);
		if (d)
			set_addr(&s->addr, family, d, len);
		d = data_of(q, k + 1, NFTNL_EXPR_IMM_DATA, &len);
		if (d && len == 2)
			s->port = (uint16_t)(d[0] << 8 | d[1]);
		*i = k + 3;
		return true;
	}
	if (is(q, k, "masq") || is(q, k, "reject")) {
		sp_nft_stmt_add(r, is(q, k, "masq") ? SP_NFT_MASQUERADE : SP_NFT_REJECT);
		*i = k + 1;
		return true;
	}
	if (is(q, k, "immediate") && u32(q, k, NFTNL_EXPR_IMM_DREG) == NFT_REG_VERDICT) {
		s = sp_nft_stmt_add(r, SP_NFT_VERDICT);
		s->verdict = (int)u32(q, k, NFTNL_EXPR_IMM_VERDICT);
		s->chain = str_of(q, k, NFTNL_EXPR_IMM_CHAIN);
		*i = k + 1;
		return true;
	}
	return false;
}

/* Statements for a kernel rule whose signature is sig, or none. */
static void decode_rule(int family, struct nftnl_rule *nr, const char *sig, struct sp_nft_rule *out)
{
	struct expr_seq q = {0};
	struct sp_nft_rule tmp = {0};
	size_t i = 0;
	bool ok = true;
	char *again;

	nftnl_expr_foreach(nr, collect_cb, &q);
	while (ok && i < q.n)
		ok = decode_stmt(family, &q, &i, &tmp);
	free(q.e);
	if (!ok || !tmp.n_stmts) {
		sp_nft_rule_free(&tmp);
		return;
	}
	again = sp_nft_rule_signature(family, &tmp);
	if (!strcmp(again, sig)) {
		out->stmts = tmp.stmts;
		out->n_stmts = tmp.n_stmts;
		out->cap_stmts = tmp.cap_stmts;
	} else {
		sp_nft_rule_free(&tmp);
	}
	free(again);
}

void sp_nft_rule_roundtrip_decode(int family, const struct sp_nft_rule *ir, struct sp_nft_rule *out)
{
	char *buf = sp_xmalloc(MSG_MAX);
	struct nftnl_rule *back;
	struct nlmsghdr *nlh;

	memset(out, 0, sizeof(*out));
	nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_NEWRULE, (uint16_t)sp_nft_nfproto(family),
				    NLM_F_APPEND | NLM_F_CREATE, 1);
	rule_payload(nlh, family, SP_NFT_TABLE, "c", ir);
	back = nftnl_rule_alloc();
	if (back && nftnl_rule_nlmsg_parse(nlh, back) == 0) {
		char *sig = signature_of(back);

		decode_rule(family, back, sig, out);
		free(sig);
	}
	nftnl_rule_free(back);
	free(buf);
}

static int rule_cb(const struct nlmsghdr *nlh, void *data)
{
	struct dump_ctx *x = data;
	struct nftnl_rule *r = nftnl_rule_alloc();
	struct sp_nft_chain *c;
	struct sp_nft_rule *ir;

	if (!r || nftnl_rule_nlmsg_parse(nlh, r) < 0 ||
	    strcmp(nftnl_rule_get_str(r, NFTNL_RULE_TABLE), x->t->name)) {
		nftnl_rule_free(r);
		return MNL_CB_OK;
	}
	c = x->last;
	if (!c || strcmp(c->name, nftnl_rule_get_str(r, NFTNL_RULE_CHAIN)))
		c = x->last = sp_nft_chain_index_find(&x->chains,
						      nftnl_rule_get_str(r, NFTNL_RULE_CHAIN));
	if (c) {
		ir = sp_nft_rule_add(c);
		ir->foreign = signature_of(r);
		ir->handle = nftnl_rule_get_u64(r, NFTNL_RULE_HANDLE);
		if (x->decode)
			decode_rule(x->family, r, ir->foreign, ir);
	}
	nftnl_rule_free(r);
	return MNL_CB_OK;
}

/* Our maps are told apart by key length and data; the plain set (hairpin
 * pairs, 8 bytes in IPv4 as protocol . port is) by being no map. */
static enum sp_nft_key key_of(int family, uint32_t key_len, bool map, bool verdict_data)
{
	if (!map)
		return key_len == 2 * alen(family) ? SP_NFT_KEY_SADDR_DADDR : SP_NFT_KEY_NONE;
	if (!verdict_data && key_len == alen(family))
		return SP_NFT_KEY_SADDR;
	if (!verdict_data)
		return key_len == alen(family) + 8 ? SP_NFT_KEY_DADDR_PORT_SLOT
		       : key_len == 8		   ? SP_NFT_KEY_PORT_SLOT
						   : SP_NFT_KEY_NONE;
	if (key_len == alen(family) + 8)
		return SP_NFT_KEY_DADDR_PROTO_PORT;
	if (key_len == 8)
		return SP_NFT_KEY_PROTO_PORT;
	return SP_NFT_KEY_NONE;
}

/* An endpoint map read back: its protocol from its name ("...-tcp"), and
 * it is ours only when its data and typeof are exactly what we create. */
static void epmap_check(int family, struct nftnl_set *ns, struct sp_nft_set *s)
{
	static const uint8_t protos[] = {IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP};
	const char *dash = strrchr(s->name, '-');
	uint8_t proto = 0;
	const void *ud;
	uint32_t ulen = 0;
	struct udata want;

	for (size_t i = 0; dash && i < SP_ARRAY_SIZE(protos); i++)
		if (!strcmp(dash + 1, sp_proto_name_lower(protos[i])))
			proto = protos[i];
	s->proto = proto;
	epmap_udata(family, s, &want);
	ud = nftnl_set_is_set(ns, NFTNL_SET_USERDATA)
		     ? nftnl_set_get_data(ns, NFTNL_SET_USERDATA, &ulen)
		     : NULL;
	if (!proto || nftnl_set_get_u32(ns, NFTNL_SET_DATA_LEN) != alen(family) + 4 || !ud ||
	    ulen != want.n || memcmp(ud, want.b, want.n))
		s->key = SP_NFT_KEY_NONE;
}

static int set_cb(const struct nlmsghdr *nlh, void *data)
{
	struct dump_ctx *x = data;
	struct nftnl_set *ns = nftnl_set_alloc();
	struct sp_nft_set *s;
	uint32_t flags;
	bool verdict_data;

	if (!ns || nftnl_set_nlmsg_parse(nlh, ns) < 0 ||
	    strcmp(nftnl_set_get_str(ns, NFTNL_SET_TABLE), x->t->name)) {
		nftnl_set_free(ns);
		return MNL_CB_OK;
	}
	flags = nftnl_set_get_u32(ns, NFTNL_SET_FLAGS);
	verdict_data = (flags & NFT_SET_MAP) &&
		       nftnl_set_get_u32(ns, NFTNL_SET_DATA_TYPE) == NFT_DATA_VERDICT;
	s = sp_nft_set_add(x->t, nftnl_set_get_str(ns, NFTNL_SET_NAME),
			   key_of(x->family, nftnl_set_get_u32(ns, NFTNL_SET_KEY_LEN),
				  flags & NFT_SET_MAP, verdict_data));
	if (flags & NFT_SET_TIMEOUT) {
		s->affinity = true;
		s->timeout_s = (uint32_t)(nftnl_set_get_u64(ns, NFTNL_SET_TIMEOUT) / 1000);
	}
	/* A set we would not make (anonymous, interval, another data type)
	 * gets a key no planned set has, so it is replaced. */
	s->plain = !(flags & NFT_SET_MAP);
	if (is_epmap_key(s->key) && !s->affinity && flags == NFT_SET_MAP)
		epmap_check(x->family, ns, s);
	else if ((flags & ~(NFT_SET_MAP | NFT_SET_TIMEOUT | NFT_SET_EVAL)) ||
		 (s->plain && (flags || s->key != SP_NFT_KEY_SADDR_DADDR)) ||
		 (!s->plain && !s->affinity && !verdict_data) ||
		 (s->affinity && s->key != SP_NFT_KEY_SADDR))
		s->key = SP_NFT_KEY_NONE;
	nftnl_set_free(ns);
	return MNL_CB_OK;
}

/* Key and endpoint of an endpoint map's element; a malformed one gets no
 * address, so that it never equals a planned one. */
static void epmap_elem(int family, enum sp_nft_key key, struct nftnl_set_elem *ne, const uint8_t *k,
		       uint32_t klen, struct sp_nft_elem *e)
{
	size_t off = key == SP_NFT_KEY_DADDR_PORT_SLOT ? alen(family) : 0;
	uint32_t dlen = 0;
	const uint8_t *d = nftnl_set_elem_is_set(ne, NFTNL_SET_ELEM_DATA)
				   ? nftnl_set_elem_get(ne, NFTNL_SET_ELEM_DATA, &dlen)
				   : NULL;
	uint16_t port;

	if (klen != off + 8 || !d || dlen != alen(family) + 4)
		return;
	if (off)
		set_addr(&e->addr, family, k, alen(family));
	memcpy(&port, k + off, 2);
	e->port = ntohs(port);
	memcpy(&e->slot, k + off + 4, 4);
	set_addr(&e->to, family, d, alen(family));
	memcpy(&port, d + alen(family), 2);
	e->to_port = ntohs(port);
}

static int elem_cb(const struct nlmsghdr *nlh, void *data)
{
	struct dump_ctx *x = data;
	struct nftnl_set *ns = nftnl_set_alloc();
	struct nftnl_set_elems_iter *it;
	struct nftnl_set_elem *ne;

	if (!ns || nftnl_set_elems_nlmsg_parse(nlh, ns) < 0) {
		nftnl_set_free(ns);
		return MNL_CB_OK;
	}
	it = nftnl_set_elems_iter_create(ns);
	for (ne = it ? nftnl_set_elems_iter_cur(it) : NULL; ne;
	     ne = nftnl_set_elems_iter_next(it)) {
		struct sp_nft_elem *e = sp_nft_elem_add(x->set);
		uint32_t klen = 0;
		const uint8_t *key = nftnl_set_elem_get(ne, NFTNL_SET_ELEM_KEY, &klen);
		size_t off = 0;
		uint16_t port;

		if (is_epmap_key(x->set->key)) {
			epmap_elem(x->family, x->set->key, ne, key, klen, e);
			continue;
		}
		if (x->set->key == SP_NFT_KEY_DADDR_PROTO_PORT || x->set->key == SP_NFT_KEY_SADDR ||
		    x->set->key == SP_NFT_KEY_SADDR_DADDR) {
			if (klen >= alen(x->family)) {
				e->addr.family = x->family;
				memcpy(e->addr.u.bytes, key, alen(x->family));
			}
			off = alen(x->family);
		}
		if (x->set->key == SP_NFT_KEY_SADDR_DADDR &&
		    (klen != 2 * off || memcmp(key, key + off, off)))
			e->addr.family = 0; /* not a pair we make: never equal */
		if (x->set->key != SP_NFT_KEY_SADDR && x->set->key != SP_NFT_KEY_SADDR_DADDR &&
		    klen >= off + 6) {
			e->proto = key[off];
			memcpy(&port, key + off + 4, 2);
			e->port = ntohs(port);
		}
		if (nftnl_set_elem_is_set(ne, NFTNL_SET_ELEM_VERDICT))
			e->verdict = (int)nftnl_set_elem_get_u32(ne, NFTNL_SET_ELEM_VERDICT);
		if (nftnl_set_elem_is_set(ne, NFTNL_SET_ELEM_CHAIN))
			e->chain = sp_xstrdup(nftnl_set_elem_get_str(ne, NFTNL_SET_ELEM_CHAIN));
	}
	if (it)
		nftnl_set_elems_iter_destroy(it);
	nftnl_set_free(ns);
	return MNL_CB_OK;
}

static int dump(struct sp_nl *nl, uint16_t type, int family, const char *table, const char *set,
		const char *chain, mnl_cb_t cb, struct dump_ctx *x, struct sp_diag *diag)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh;
	char *what;
	int ret;

	/* Zeroed: libnftnl leaves gaps (attribute padding) that are sent. */
	memset(buf, 0, sizeof(buf));
	nlh = nftnl_nlmsg_build_hdr(buf, type, (uint16_t)sp_nft_nfproto(family), NLM_F_DUMP,
				    sp_nl_next_seq(nl));

	if (set) {
		struct nftnl_set *ns = nftnl_set_alloc();

		if (!ns)
			abort();
		nftnl_set_set_str(ns, NFTNL_SET_TABLE, table);
		nftnl_set_set_str(ns, NFTNL_SET_NAME, set);
		nftnl_set_elems_nlmsg_build_payload(nlh, ns);
		nftnl_set_free(ns);
	} else if (type == NFT_MSG_GETRULE) {
		struct nftnl_rule *r = nftnl_rule_alloc();

		if (!r)
			abort();
		nftnl_rule_set_str(r, NFTNL_RULE_TABLE, table);
		if (chain)
			nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chain);
		nftnl_rule_nlmsg_build_payload(nlh, r);
		nftnl_rule_free(r);
	} else if (type == NFT_MSG_GETSET) {
		struct nftnl_set *ns = nftnl_set_alloc();

		if (!ns)
			abort();
		nftnl_set_set_str(ns, NFTNL_SET_TABLE, table);
		nftnl_set_nlmsg_build_payload(nlh, ns);
		nftnl_set_free(ns);
	}
	what = sp_xasprintf("nftables: reading %s %s%s%s", sp_nft_family_name(family), table,
			    set	    ? " map "
			    : chain ? " chain "
				    : "",
			    set	    ? set
			    : chain ? chain
				    : "");
	ret = sp_nl_talk(nl, nlh, cb, x, what, diag);
	free(what);
	return ret;
}

static int read_once(struct sp_nl *nl, int family, const char *name, struct sp_nft_table *out,
		     bool *found, bool decode, struct sp_diag *diag)
{
	struct dump_ctx x = {.t = out, .family = family, .decode = decode};
	int ret;

	ret = dump(nl, NFT_MSG_GETTABLE, family, name, NULL, NULL, table_cb, &x, diag);
	if (ret)
		return ret;
	*found = x.found;
	if (!x.found)
		return 0;
	ret = dump(nl, NFT_MSG_GETCHAIN, family, name, NULL, NULL, chain_cb, &x, diag);
	/* One dump per chain: the kernel resumes a table-wide rule dump by
	 * walking past every rule already sent, which is quadratic in the
	 * table's size (seconds at 10,000 Services); a chain's dump is cheap. */
	sp_nft_chain_index_build(&x.chains, out);
	for (size_t i = 0; !ret && i < out->n_chains; i++) {
		x.last = &out->chains[i];
		ret = dump(nl, NFT_MSG_GETRULE, family, name, NULL, out->chains[i].name, rule_cb,
			   &x, diag);
	}
	sp_nft_chain_index_free(&x.chains);
	if (!ret)
		ret = dump(nl, NFT_MSG_GETSET, family, name, NULL, NULL, set_cb, &x, diag);
	for (size_t i = 0; !ret && i < out->n_sets; i++) {
		if (out->sets[i].affinity)
			continue; /* dynamic: its elements are the clients' */
		x.set = &out->sets[i];
		ret = dump(nl, NFT_MSG_GETSETELEM, family, name, x.set->name, NULL, elem_cb, &x,
			   diag);
		sp_nft_set_sort(x.set, NULL);
	}
	return ret;
}

int sp_nft_read_table(struct sp_nl *nl, int family, const char *name, struct sp_nft_table *out,
		      bool *found, bool decode, struct sp_diag *diag)
{
	for (int attempt = 0; attempt < 10; attempt++) {
		int ret;

		memset(out, 0, sizeof(*out));
		out->family = family;
		out->name = sp_xstrdup(name);
		ret = read_once(nl, family, name, out, found, decode, diag);
		if (ret <= 0)
			return ret;
		/* Someone changed the ruleset while we read: start over. */
		sp_nft_table_free(out);
	}
	sp_diag_error(diag, "nftables: table %s %s kept changing while being read",
		      sp_nft_family_name(family), name);
	return -1;
}
