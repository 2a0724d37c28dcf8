/* nftables mode: the plan lowered to the objects of the agent's own tables
 * (one per family, `ip svcproxy` and `ip6 svcproxy`), printed as an `nft -f`
 * script, and compared object by object. Pure: the kernel encoding lives in
 * src/kernel/nft.c and the reconciliation in src/reconcile/nftables.c.
 *
 * A rule is a short list of typed statements, each one of the few recipes
 * the lowering emits; the kernel encoder turns each statement into the exact
 * expressions `nft` itself generates for the printed text, so that a table
 * programmed by svcproxy and one loaded with `nft -f` from `svcproxy plan`
 * list the same. */
#ifndef SVCPROXY_NFT_H
#define SVCPROXY_NFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "svcproxy/diag.h"
#include "svcproxy/plan.h"
#include "svcproxy/util.h"

#define SP_NFT_TABLE "svcproxy"

/* Verdicts, as the kernel numbers them (NF_DROP, NF_ACCEPT, NFT_RETURN,
 * NFT_JUMP, NFT_GOTO), so that no translation is needed either way. */
#define SP_NFT_DROP 0
#define SP_NFT_ACCEPT 1
#define SP_NFT_RETURN (-5)
#define SP_NFT_GOTO (-4)
#define SP_NFT_JUMP (-3)

enum sp_nft_stmt_kind {
	SP_NFT_MATCH_L4PROTO,	 /* meta l4proto P */
	SP_NFT_MATCH_ADDR,	 /* ip saddr|daddr [!=] CIDR */
	SP_NFT_MATCH_DPORT,	 /* th dport P */
	SP_NFT_MATCH_CT_NEW,	 /* ct state new */
	SP_NFT_MATCH_FIB_LOCAL,	 /* fib saddr|daddr type local */
	SP_NFT_MATCH_MARK_CLEAR, /* meta mark & M == 0 */
	SP_NFT_MATCH_NUMGEN,	 /* numgen random mod N == 0 */
	SP_NFT_VMAP,		 /* <key> vmap @set */
	SP_NFT_MATCH_SET,	 /* <key> @set (a plain set) */
	SP_NFT_MARK_OR,		 /* meta mark set meta mark | M */
	SP_NFT_MARK_XOR,	 /* meta mark set meta mark ^ M */
	SP_NFT_AFFINITY_UPDATE,	 /* update @set { ip saddr : ADDR } */
	SP_NFT_DNAT_MAP,	 /* dnat ip to ip saddr map @set : PORT */
	SP_NFT_DNAT,		 /* dnat ip to ADDR:PORT */
	/* dnat ip to <key> . numgen random mod N map @set: the endpoint is
	 * map data (see docs/nftables-layout.md, "pickmap") */
	SP_NFT_DNAT_PICK,
	SP_NFT_MASQUERADE, /* masquerade fully-random */
	SP_NFT_REJECT,	   /* reject (ICMP port unreachable) */
	SP_NFT_VERDICT,	   /* accept|drop|return|jump C|goto C */
};

/* The keys of the table's maps. */
enum sp_nft_key {
	SP_NFT_KEY_NONE = 0,
	SP_NFT_KEY_DADDR_PROTO_PORT, /* ip daddr . meta l4proto . th dport */
	SP_NFT_KEY_PROTO_PORT,	     /* meta l4proto . th dport */
	SP_NFT_KEY_SADDR,	     /* ip saddr (session affinity) */
	SP_NFT_KEY_SADDR_DADDR,	     /* ip saddr . ip daddr (hairpin) */
	/* Endpoint maps, one per transport protocol P; data: address . port. */
	SP_NFT_KEY_DADDR_PORT_SLOT, /* ip daddr . P dport . numgen random mod N */
	SP_NFT_KEY_PORT_SLOT,	    /* P dport . numgen random mod N (node ports) */
};

/* Unused fields stay zero, so that two statements compare field by field. */
struct sp_nft_stmt {
	enum sp_nft_stmt_kind kind;
	bool neg;	     /* MATCH_ADDR: != */
	bool source;	     /* MATCH_ADDR, MATCH_FIB_LOCAL: saddr, else daddr */
	struct sp_cidr cidr; /* MATCH_ADDR */
	struct sp_addr addr; /* DNAT, AFFINITY_UPDATE */
	uint32_t value;	     /* proto, mark mask, numgen modulus */
	uint8_t proto;	     /* DNAT_PICK: the map's transport protocol */
	uint16_t port;	     /* MATCH_DPORT, DNAT, DNAT_MAP (host order) */
	enum sp_nft_key key; /* VMAP, MATCH_SET, DNAT_PICK */
	int verdict;	     /* VERDICT */
	char *set;	     /* VMAP, AFFINITY_UPDATE, DNAT_MAP, DNAT_PICK (owned) */
	char *chain;	     /* VERDICT jump/goto (owned) */
};

struct sp_nft_rule {
	struct sp_nft_stmt *stmts;
	size_t n_stmts, cap_stmts;
	/* A rule read back from the kernel: its expressions in libnftnl's
	 * text (see sp_nft_rule_signature), what comparisons use; stmts are
	 * then only for display, and empty when not a rule svcproxy makes. */
	char *foreign;
	uint64_t handle; /* from the kernel; 0 when planned */
};

struct sp_nft_chain {
	char *name;
	bool base;
	const char *type; /* "nat" or "filter" (static strings) */
	unsigned hook;	  /* NF_INET_* */
	int prio;
	struct sp_nft_rule *rules;
	size_t n_rules, cap_rules;
};

/* A map element: key (address, protocol, port, slot as the key needs) and
 * its verdict, or for an endpoint map its endpoint. Elements are kept sorted
 * by key (sp_nft_elem_cmp). */
struct sp_nft_elem {
	struct sp_addr addr;
	uint8_t proto;
	uint16_t port;
	uint32_t slot; /* endpoint maps: the numgen draw */
	int verdict;
	char *chain;	   /* jump/goto target (owned) */
	struct sp_addr to; /* endpoint maps: the endpoint */
	uint16_t to_port;
};

struct sp_nft_set {
	char *name;
	enum sp_nft_key key;
	/* A verdict map, or (affinity) a dynamic map from the client address to
	 * the endpoint address whose elements time out after timeout_s. */
	bool affinity;
	uint32_t timeout_s;
	bool plain;    /* a set of keys, not a map (hairpin) */
	uint8_t proto; /* endpoint maps: the transport protocol of the key */
	struct sp_nft_elem *elems;
	size_t n_elems, cap_elems;
};

struct sp_nft_table {
	int family; /* AF_INET or AF_INET6 */
	char *name;
	struct sp_nft_chain *chains;
	size_t n_chains, cap_chains;
	struct sp_nft_set *sets;
	size_t n_sets, cap_sets;
};

/* The desired (or read back) state: zero, one or two tables. */
struct sp_nft_ruleset {
	struct sp_nft_table *tables;
	size_t n_tables, cap_tables;
};

/* nf_tables family numbers (NFPROTO_IPV4/IPV6) and back. */
int sp_nft_nfproto(int family);
const char *sp_nft_family_name(int family); /* "ip", "ip6" */

void sp_nft_ruleset_init(struct sp_nft_ruleset *rs);
void sp_nft_ruleset_free(struct sp_nft_ruleset *rs);
void sp_nft_table_free(struct sp_nft_table *t);
void sp_nft_chain_free(struct sp_nft_chain *c);
void sp_nft_set_free(struct sp_nft_set *s);
void sp_nft_rule_free(struct sp_nft_rule *r);

struct sp_nft_table *sp_nft_table_add(struct sp_nft_ruleset *rs, int family, const char *name);
struct sp_nft_chain *sp_nft_chain_add(struct sp_nft_table *t, const char *name);
struct sp_nft_set *sp_nft_set_add(struct sp_nft_table *t, const char *name, enum sp_nft_key key);
struct sp_nft_rule *sp_nft_rule_add(struct sp_nft_chain *c);
struct sp_nft_stmt *sp_nft_stmt_add(struct sp_nft_rule *r, enum sp_nft_stmt_kind kind);
struct sp_nft_elem *sp_nft_elem_add(struct sp_nft_set *s);

struct sp_nft_table *sp_nft_table_find(const struct sp_nft_ruleset *rs, int family);
struct sp_nft_chain *sp_nft_chain_find(const struct sp_nft_table *t, const char *name);
struct sp_nft_set *sp_nft_set_find(const struct sp_nft_table *t, const char *name);

/* Chains by name in O(log n): tables hold tens of thousands of chains. The
 * index points into the table, which must not grow while it is used. */
struct sp_nft_chain_index {
	struct sp_nft_chain **sorted;
	size_t n;
};

void sp_nft_chain_index_build(struct sp_nft_chain_index *ix, const struct sp_nft_table *t);
struct sp_nft_chain *sp_nft_chain_index_find(const struct sp_nft_chain_index *ix, const char *name);
void sp_nft_chain_index_free(struct sp_nft_chain_index *ix);

bool sp_nft_stmt_equal(const struct sp_nft_stmt *a, const struct sp_nft_stmt *b);
bool sp_nft_rule_equal(const struct sp_nft_rule *a, const struct sp_nft_rule *b);
/* Same base properties and same rules in the same order. */
bool sp_nft_chain_equal(const struct sp_nft_chain *a, const struct sp_nft_chain *b);
/* Key order; verdicts are not part of the key. */
int sp_nft_elem_cmp(const struct sp_nft_elem *a, const struct sp_nft_elem *b);
bool sp_nft_elem_equal(const struct sp_nft_elem *a, const struct sp_nft_elem *b);
bool sp_nft_set_same_type(const struct sp_nft_set *a, const struct sp_nft_set *b);
/* Sort elements by key; a later duplicate key is dropped (and reported
 * when diag is given). Returns how many were dropped. */
size_t sp_nft_set_sort(struct sp_nft_set *s, struct sp_diag *diag);

/* Lower the plan. Conflicts (two Services claiming the same address and
 * port) are reported in diag (may be NULL); the first one wins. Returns
 * how many such conflicts there were. */
size_t sp_nft_lower(const struct sp_plan *plan, struct sp_nft_ruleset *out, struct sp_diag *diag);

/* Index of the maps every lowered table has, first in its set array. */
enum sp_nft_fixed_set {
	SP_NFT_FS_SERVICE_IPS,
	SP_NFT_FS_SERVICE_NODEPORTS,
	SP_NFT_FS_NOEP_SERVICES,
	SP_NFT_FS_NOEP_NODEPORTS,
	SP_NFT_FS_FIREWALL_IPS,
	SP_NFT_FS_HAIRPIN,
	/* Endpoint maps (SP_NFT_EPMAP_COUNT kinds x TCP, UDP, SCTP), in the
	 * order of sp_nft_epmap_index(). */
	SP_NFT_FS_ENDPOINTS,
	SP_NFT_FS_COUNT = SP_NFT_FS_ENDPOINTS + 4 * 3,
};

/* The endpoint maps: by frontend address or by node port, over the
 * cluster-wide or this node's endpoints. */
enum sp_nft_epmap {
	SP_NFT_EPMAP_ADDR,	     /* endpoints-P */
	SP_NFT_EPMAP_ADDR_LOCAL,     /* local-endpoints-P */
	SP_NFT_EPMAP_NODEPORT,	     /* nodeport-endpoints-P */
	SP_NFT_EPMAP_NODEPORT_LOCAL, /* local-nodeport-endpoints-P */
	SP_NFT_EPMAP_COUNT,
};

/* Index in the set array of a table's endpoint map; -1 for a protocol
 * without one. */
int sp_nft_epmap_index(enum sp_nft_epmap kind, uint8_t proto);

/* Lower only the given Service ports, for an incremental sync: one table
 * per family (both always), each holding the fixed maps with only these
 * ports' elements (hairpin-endpoints left empty), their chains and their
 * affinity maps, and none of the shared chains. Global settings come from
 * plan. Returns how many duplicate map keys were dropped (conflicts among
 * these ports). */
size_t sp_nft_lower_svcports(const struct sp_plan *plan, const struct sp_plan_svcport *const *sps,
			     size_t n, struct sp_nft_ruleset *out);

/* Append to t the shared pick chains ("pick-<endpoint map>-<n>", one rule
 * each) that the plan's Service ports of this family go to, in a fixed
 * order. The full lowering ends with them; an incremental sync compares
 * them with the programmed ones. */
void sp_nft_pick_chains(const struct sp_plan *plan, int family, struct sp_nft_table *t);

/* `nft -f` text. */
void sp_nft_print_ruleset(const struct sp_nft_ruleset *rs, struct sp_buf *out);
void sp_nft_print_table(const struct sp_nft_table *t, struct sp_buf *out);
void sp_nft_print_rule(const struct sp_nft_table *t, const struct sp_nft_rule *r,
		       struct sp_buf *out);
void sp_nft_print_elem(const struct sp_nft_table *t, const struct sp_nft_set *s,
		       const struct sp_nft_elem *e, struct sp_buf *out);
void sp_nft_print_set_decl(const struct sp_nft_table *t, const struct sp_nft_set *s,
			   const char *indent, struct sp_buf *out);
void sp_nft_print_chain_decl(const struct sp_nft_chain *c, struct sp_buf *out);
void sp_nft_print_ruleset_json(const struct sp_nft_ruleset *rs, struct sp_buf *out);

#endif
