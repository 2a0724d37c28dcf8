/* The iptables intermediate representation: tables -> chains -> rules with
 * typed matches and targets. The iptables mode lowers a plan into it
 * (kube-proxy's layout), the IPVS mode builds its helper rules with it, the
 * printer turns it into `iptables-save` text exactly as iptables-legacy-save
 * prints the same rules, and src/kernel/iptc.c encodes it for libiptc and
 * decodes what the kernel holds back into it. Pure data, no syscalls.
 *
 * Every string and array is owned by the structure that holds it;
 * sp_ipt_ruleset_free() releases everything. */
#ifndef SVCPROXY_IPT_H
#define SVCPROXY_IPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "svcproxy/plan.h"
#include "svcproxy/util.h"

enum sp_ipt_table_id {
	SP_IPT_FILTER,
	SP_IPT_NAT,
	SP_IPT_N_TABLES,
	/* Not part of a ruleset (whose tables[] stop at N_TABLES): a stand-alone
	 * table for the few rules that must see every packet (IPVS capture). */
	SP_IPT_MANGLE = SP_IPT_N_TABLES,
};

/* Address types of the addrtype match (the kernel's XT_ADDRTYPE_* bits). */
#define SP_IPT_ADDRTYPE_LOCAL (1u << 2)

/* Conntrack states of the conntrack match (the kernel's state bits). */
#define SP_IPT_CT_INVALID (1u << 0)
#define SP_IPT_CT_ESTABLISHED (1u << 1)
#define SP_IPT_CT_RELATED (1u << 2)
#define SP_IPT_CT_NEW (1u << 3)

enum sp_ipt_match_kind {
	SP_IPT_M_COMMENT,
	SP_IPT_M_TCP, /* port matches: u.dport, 0 = any port */
	SP_IPT_M_UDP,
	SP_IPT_M_SCTP,
	SP_IPT_M_ADDRTYPE,
	SP_IPT_M_MARK,
	SP_IPT_M_STATISTIC, /* --mode random */
	SP_IPT_M_RECENT,
	SP_IPT_M_CONNTRACK, /* --ctstate */
	/* Read back from the kernel and not understood: never equal to
	 * anything the agent wants, so its chain gets rewritten. */
	SP_IPT_M_UNKNOWN,
	/* -m set --match-set NAME dir[,dir...]: u.set, invert honoured. */
	SP_IPT_M_SET,
};

/* Most dimensions an ipset match names (hash:ip,port,ip). */
#define SP_IPT_SET_DIM_MAX 3

struct sp_ipt_match {
	enum sp_ipt_match_kind kind;
	bool invert; /* mark, addrtype (whichever type is set) */
	union {
		char *comment; /* COMMENT; also UNKNOWN: the match name */
		uint16_t dport;
		struct {
			uint16_t src_type;
			uint16_t dst_type;
		} addrtype;
		struct {
			uint32_t value;
			uint32_t mask;
		} mark;
		/* Probability in units of 2^-31, as the kernel keeps it. */
		uint32_t probability;
		struct {
			bool set; /* --set; else --rcheck */
			bool reap;
			uint32_t seconds; /* --rcheck --seconds; 0 = none */
			char *name;
		} recent;
		uint8_t ctstate;
		struct {
			char *name;
			uint8_t dim; /* 1..SP_IPT_SET_DIM_MAX */
			/* Bit i-1 set: dimension i is the source ("src"), else "dst". */
			uint8_t src_dims;
		} set;
	} u;
};

enum sp_ipt_target_kind {
	SP_IPT_T_JUMP, /* to u.chain */
	SP_IPT_T_GOTO,
	SP_IPT_T_ACCEPT,
	SP_IPT_T_DROP,
	SP_IPT_T_RETURN,
	SP_IPT_T_REJECT, /* icmp-port-unreachable */
	SP_IPT_T_DNAT,
	SP_IPT_T_MARK, /* --set-xmark value/mask (--or-mark: mask = value) */
	SP_IPT_T_MASQUERADE,
	SP_IPT_T_UNKNOWN, /* read back; u.chain holds the target name */
};

struct sp_ipt_target {
	enum sp_ipt_target_kind kind;
	char *chain;		/* JUMP, GOTO, UNKNOWN */
	struct sp_addr to_addr; /* DNAT */
	uint16_t to_port;	/* DNAT; 0 = keep */
	uint32_t mark_value;	/* MARK */
	uint32_t mark_mask;
	bool random_fully; /* MASQUERADE */
};

struct sp_ipt_rule {
	struct sp_cidr src; /* addr.family 0: any */
	struct sp_cidr dst;
	bool src_invert;
	bool dst_invert;
	uint8_t proto; /* 0: any */
	struct sp_ipt_match *matches;
	size_t n_matches, cap_matches;
	struct sp_ipt_target target;
};

struct sp_ipt_chain {
	char *name;
	bool builtin; /* hook chain: only the rules listed here are the agent's */
	struct sp_ipt_rule *rules;
	size_t n_rules, cap_rules;
};

struct sp_ipt_table {
	enum sp_ipt_table_id id;
	/* Built-in chains first in hook order, then user chains; the printer
	 * and the kernel sort user chains by name. */
	struct sp_ipt_chain *chains;
	size_t n_chains, cap_chains;
	int family; /* AF_INET (also when 0) or AF_INET6: ip6tables */
};

struct sp_ipt_ruleset {
	int family; /* AF_INET or AF_INET6 (ip6tables) */
	struct sp_ipt_table tables[SP_IPT_N_TABLES];
};

const char *sp_ipt_table_name(enum sp_ipt_table_id id); /* "filter", "nat" */

/* Building (used by the lowering and by other modes' helper rules). */
void sp_ipt_ruleset_init(struct sp_ipt_ruleset *rs, int family);
void sp_ipt_ruleset_free(struct sp_ipt_ruleset *rs);
void sp_ipt_table_init(struct sp_ipt_table *t, enum sp_ipt_table_id id);
void sp_ipt_table_free(struct sp_ipt_table *t);
/* The chain of that name, created empty (user chain) if absent. Built-in
 * chains of the table exist from sp_ipt_table_init(). */
struct sp_ipt_chain *sp_ipt_chain_get(struct sp_ipt_table *t, const char *name);
struct sp_ipt_chain *sp_ipt_chain_find(const struct sp_ipt_table *t, const char *name);
/* A new empty user chain; the caller knows the name is not taken yet (no
 * search: the lowering creates 10^5 chains). The pointer stays valid until
 * the next chain is added. */
struct sp_ipt_chain *sp_ipt_chain_add(struct sp_ipt_table *t, const char *name);
bool sp_ipt_builtin_chain(enum sp_ipt_table_id id, const char *name);
struct sp_ipt_rule *sp_ipt_rule_append(struct sp_ipt_chain *c);
void sp_ipt_rule_free(struct sp_ipt_rule *r);
void sp_ipt_chain_free(struct sp_ipt_chain *c);
struct sp_ipt_match *sp_ipt_match_add(struct sp_ipt_rule *r, enum sp_ipt_match_kind kind);
void sp_ipt_add_comment(struct sp_ipt_rule *r, const char *comment);
void sp_ipt_add_dport(struct sp_ipt_rule *r, uint8_t proto, uint16_t dport); /* sets r->proto */
void sp_ipt_set_jump(struct sp_ipt_rule *r, const char *chain);
void sp_ipt_set_verdict(struct sp_ipt_rule *r, enum sp_ipt_target_kind kind);
void sp_ipt_set_host(struct sp_cidr *c, const struct sp_addr *a); /* a/32 or a/128 */
/* -m set [!] --match-set SET DIRS, DIRS as iptables spells it ("dst,dst,src"). */
void sp_ipt_add_set_match(struct sp_ipt_rule *r, const char *set, const char *dirs, bool invert);
/* The probability 1/n as iptables stores `--probability` printed with
 * kube-proxy's "%0.10f". */
uint32_t sp_ipt_probability(unsigned n);

/* Printing: `iptables-save` text, byte for byte what iptables-legacy-save
 * prints for the same rules with zero counters and without its "#" lines. */
void sp_ipt_print_rule(const char *chain, const struct sp_ipt_rule *r, struct sp_buf *out);
/* The same for ip6tables-save when family is AF_INET6. */
void sp_ipt_print_rule_family(const char *chain, const struct sp_ipt_rule *r, int family,
			      struct sp_buf *out);
void sp_ipt_print_table(const struct sp_ipt_table *t, struct sp_buf *out);
void sp_ipt_print_ruleset(const struct sp_ipt_ruleset *rs, struct sp_buf *out);
void sp_ipt_print_ruleset_json(const struct sp_ipt_ruleset *rs, struct sp_buf *out);
/* Two chains hold the same rules (compared as printed). */
bool sp_ipt_chain_equal(const struct sp_ipt_chain *a, const struct sp_ipt_chain *b);

/* Chain names the agent owns in iptables mode: the fixed KUBE-* chains and
 * the per-service prefixes. NULL-terminated. */
extern const char *const sp_ipt_kube_owned_names[];
extern const char *const sp_ipt_kube_owned_prefixes[];

/* kube-proxy's chain names: prefix + the first 16 characters of base32
 * (sha256(service port name + lower-case protocol [+ endpoint])). */
void sp_ipt_sha256(const void *data, size_t len, uint8_t digest[32]);
char *sp_ipt_hashed_chain(const char *prefix, const char *svcport_name, uint8_t proto,
			  const char *endpoint);

/* Lower a plan to kube-proxy's layout for the ruleset's family (AF_INET or
 * AF_INET6; service ports of the other family are left out). */
void sp_ipt_lower(const struct sp_plan *plan, struct sp_ipt_ruleset *out);

#endif
