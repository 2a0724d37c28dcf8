/* IPVS mode's lowered state: what the plan means in IPVS terms (virtual and
 * real servers, the addresses on kube-ipvs0, the per-port capture rules and
 * the helper iptables rules), built by a pure function and printed in the
 * syntax of ipvsadm-save, ip and iptables-save. The same structures hold
 * what src/reconcile reads back from the kernel, so that desired and actual
 * state are diffed like for like. */
#ifndef SVCPROXY_IPVS_H
#define SVCPROXY_IPVS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "svcproxy/diag.h"
#include "svcproxy/ipt.h"
#include "svcproxy/plan.h"
#include "svcproxy/util.h"

#define SP_IPVS_LINK "kube-ipvs0"
/* The routing table and rule priorities the per-port capture uses. Table
 * SP_IPVS_TABLE holds only `local default dev lo`. Capture rules sit before
 * the main table; marker rules (node-port virtual servers, whose address is
 * already local) sit after the default table, where no lookup ever reaches
 * them: they only record in the kernel that the virtual server is ours. */
#define SP_IPVS_TABLE 2153
#define SP_IPVS_CAPTURE_PREF 2153
#define SP_IPVS_MARKER_PREF 42153
/* Per-port capture marks packets to a captured (address, protocol, port)
 * in mangle PREROUTING and OUTPUT (a set match), and ONE policy rule
 * `fwmark MARK/MARK lookup SP_IPVS_TABLE pref SP_IPVS_CAPTURE_PREF` routes
 * them locally: constant per-packet cost. Clear of masquerade's 0x4000 and
 * kube-proxy's drop mark 0x8000. */
#define SP_IPVS_CAPTURE_MARK 0x2000u
/* The node's own connections are routed before any packet exists to mark:
 * `iif lo lookup SP_IPVS_TABLE pref SP_IPVS_LOCAL_PREF`, after the main and
 * default tables, lets a captured address the node has no route to still
 * reach the output path, where mangle OUTPUT marks it (as a per-port rule
 * matched the connect() lookup itself). */
#define SP_IPVS_LOCAL_PREF 32800
/* Room for 262,144 members per set (kube-proxy's default is 65,536). */
#define SP_IPVS_SET_MAXELEM 262144u
/* kube-proxy's IPVS weights: every real server 1, leaving ones 0. */
#define SP_IPVS_WEIGHT 1
/* IP_VS_CONN_F_MASQ: the only forwarding method kube-proxy uses. */
#define SP_IPVS_FWD_MASQ 0
#define SP_IPVS_SVC_F_PERSISTENT 0x1
#define SP_IPVS_SCHED_MAX 16

enum sp_ipvs_vs_kind {
	SP_IPVS_VS_CLUSTER_IP,
	SP_IPVS_VS_NODE_PORT,
	SP_IPVS_VS_EXTERNAL_IP,
	SP_IPVS_VS_LOAD_BALANCER,
};

struct sp_ipvs_dest {
	struct sp_addr addr;
	uint16_t port;
	uint32_t weight;
	uint32_t fwd_method;
	uint32_t u_threshold;
	uint32_t l_threshold;
	/* Read back only. */
	uint32_t active_conns;
	uint32_t inactive_conns;
};

/* Identity: (addr, protocol, port); addr.family is the service's AF. */
struct sp_ipvs_service {
	struct sp_addr addr;
	uint8_t protocol;
	uint16_t port;
	char scheduler[SP_IPVS_SCHED_MAX];
	uint32_t flags;		    /* IP_VS_SVC_F_*, HASHED masked off */
	uint32_t timeout;	    /* persistence, seconds */
	uint32_t netmask;	    /* IPv4: network-order mask; IPv6: prefix length */
	struct sp_ipvs_dest *dests; /* sorted by (addr, port) */
	size_t n_dests, cap_dests;
	/* Desired state only: "namespace/name:port" and kind, for messages. */
	char *origin;
	enum sp_ipvs_vs_kind kind;
	size_t order; /* lowering order: the first claim on a key wins */
};

/* An `ip rule to ADDR ipproto P dport PORT lookup SP_IPVS_TABLE pref PREF`,
 * or, with port 0 (and protocol 0, address all zero of its family), the
 * capture rule `fwmark SP_IPVS_CAPTURE_MARK/SP_IPVS_CAPTURE_MARK lookup
 * SP_IPVS_TABLE pref SP_IPVS_CAPTURE_PREF`, or (pref SP_IPVS_LOCAL_PREF)
 * `iif lo lookup SP_IPVS_TABLE`. */
struct sp_ipvs_rule {
	struct sp_addr addr;
	uint8_t protocol;
	uint16_t port;
	uint32_t pref; /* SP_IPVS_CAPTURE_PREF or SP_IPVS_MARKER_PREF */
};

/* The ipsets the helper rules match: each rule is constant, membership
 * carries the per-Service part. kube-proxy's names where the meaning is
 * kube-proxy's; IPv6 sets are named "KUBE6-..." (one name space for both
 * families, and KUBE-6-LOAD-BALANCER-SOURCE-CIDR would not fit 31 bytes). */
enum sp_ipvs_set_id {
	SP_IPVS_SET_CLUSTER_IP,	       /* hash:ip,port: every ClusterIP virtual server */
	SP_IPVS_SET_NODE_PORT,	       /* hash:ip,port: node-port VSs that masquerade */
	SP_IPVS_SET_EXTERNAL_IP,       /* hash:ip,port: externalIP VSs that masquerade */
	SP_IPVS_SET_LOAD_BALANCER,     /* hash:ip,port: LB VSs that masquerade */
	SP_IPVS_SET_LB_FW,	       /* hash:ip,port: LB VSs with source ranges */
	SP_IPVS_SET_LB_SOURCE_CIDR,    /* hash:ip,port,net: (LB VS, allowed source) */
	SP_IPVS_SET_LOCAL_NO_ENDPOINT, /* hash:ip,port: Local policy, no local endpoint */
	SP_IPVS_SET_LOOP_BACK,	       /* hash:ip,port,ip: (local endpoint, itself) */
	SP_IPVS_SET_CAPTURE,	       /* hash:ip,port: captured LB IPs and externalIPs */
	SP_IPVS_N_SETS,
};

/* Members in `ipset save` spelling ("10.0.0.1,tcp:80"), sorted and unique
 * after sp_ipvs_state_sort(). Read back only: present, the set exists;
 * wrong_type, it exists with another type or family (left alone). */
struct sp_ipvs_set {
	char **entries;
	size_t n_entries, cap_entries;
	bool present;
	bool wrong_type;
};

struct sp_ipvs_state {
	struct sp_ipvs_service *services; /* sorted by sp_ipvs_service_cmp */
	size_t n_services, cap_services;
	struct sp_addr *link_addrs; /* kube-ipvs0, sorted, unique */
	size_t n_link_addrs, cap_link_addrs;
	struct sp_ipvs_rule *rules; /* sorted, unique */
	size_t n_rules, cap_rules;
	/* Source address of SP_IPVS_TABLE's local route per family ([0] IPv4,
	 * [1] IPv6; family 0: none): the node IP, so that the node's own
	 * connections to a captured address carry an address replies can
	 * reach (without it they would leave with the captured address). */
	struct sp_addr route_src[2];
	/* Helper rules, IPv4 and IPv6 (programmed with src/kernel/iptc.c).
	 * Desired state only: read-back states leave them empty. has_ipv6:
	 * the plan has IPv6 Service ports, so ip6tables is ours to program. */
	struct sp_ipt_ruleset ipt;
	struct sp_ipt_ruleset ipt6;
	bool has_ipv6;
	/* [0] IPv4, [1] IPv6. Desired state: every set of a programmed family
	 * (empty ones too); read back: the sets that exist. */
	struct sp_ipvs_set sets[2][SP_IPVS_N_SETS];
	/* The capture mark rules (desired only; empty in whole-address mode). */
	struct sp_ipt_table mangle, mangle6;
};

void sp_ipvs_state_init(struct sp_ipvs_state *st);
void sp_ipvs_state_free(struct sp_ipvs_state *st);

/* Lower the plan. Conflicts (two Service ports claiming one virtual server)
 * are reported in diag; the first claim wins. Returns 0, or 1 if something
 * was left out. */
int sp_ipvs_lower(const struct sp_plan *plan, struct sp_ipvs_state *st, struct sp_diag *diag);
/* The same, knowing the node's local addresses (read by the reconciler):
 * without --nodeport-addresses, node ports listen on every one of them, as
 * kube-proxy's IPVS mode does, not only on the Node object's addresses. */
int sp_ipvs_lower_local(const struct sp_plan *plan, const struct sp_addr *local, size_t n_local,
			struct sp_ipvs_state *st, struct sp_diag *diag);

/* Building blocks, also used for read-back. */
struct sp_ipvs_service *sp_ipvs_add_service(struct sp_ipvs_state *st);
struct sp_ipvs_dest *sp_ipvs_add_dest(struct sp_ipvs_service *svc);
void sp_ipvs_add_link_addr(struct sp_ipvs_state *st, const struct sp_addr *a);
void sp_ipvs_add_rule(struct sp_ipvs_state *st, const struct sp_ipvs_rule *r);
/* Sort everything and drop duplicate addresses and rules. */
void sp_ipvs_state_sort(struct sp_ipvs_state *st);
const struct sp_ipvs_service *sp_ipvs_find_service(const struct sp_ipvs_state *st,
						   const struct sp_ipvs_service *key);
const struct sp_ipvs_dest *sp_ipvs_find_dest(const struct sp_ipvs_service *svc,
					     const struct sp_ipvs_dest *key);
bool sp_ipvs_has_link_addr(const struct sp_ipvs_state *st, const struct sp_addr *a);
bool sp_ipvs_has_rule(const struct sp_ipvs_state *st, const struct sp_addr *a, uint8_t proto,
		      uint16_t port);

int sp_ipvs_service_cmp(const struct sp_ipvs_service *a, const struct sp_ipvs_service *b);
int sp_ipvs_dest_cmp(const struct sp_ipvs_dest *a, const struct sp_ipvs_dest *b);
int sp_ipvs_rule_cmp(const struct sp_ipvs_rule *a, const struct sp_ipvs_rule *b);
/* Same scheduler, flags, timeout and netmask (identity not compared). */
bool sp_ipvs_service_attrs_equal(const struct sp_ipvs_service *a, const struct sp_ipvs_service *b);
/* The default persistence granularity: one client address. */
uint32_t sp_ipvs_host_netmask(int family);

/* "TCP 10.0.0.1:80", "UDP [fd00::1]:53"; buf holds SP_IPVS_DESCLEN bytes. */
#define SP_IPVS_DESCLEN 80
const char *sp_ipvs_service_desc(const struct sp_ipvs_service *svc, char *buf);
const char *sp_ipvs_dest_desc(const struct sp_ipvs_dest *d, char *buf);

/* Printers: `ipvsadm-save -n` lines, then `ip` commands for kube-ipvs0 and
 * the capture rules, then iptables-save text for the helper rules; each
 * part starts with a `# ` header line naming the tool that accepts it. */
void sp_ipvs_print_services(const struct sp_ipvs_state *st, struct sp_buf *out);
void sp_ipvs_print_link(const struct sp_ipvs_state *st, struct sp_buf *out);
void sp_ipvs_print_rules(const struct sp_ipvs_state *st, struct sp_buf *out);
/* family AF_INET: iptables-save text; AF_INET6: ip6tables-save text. */
void sp_ipvs_print_iptables(const struct sp_ipvs_state *st, int family, struct sp_buf *out);
void sp_ipvs_print(const struct sp_ipvs_state *st, struct sp_buf *out);
void sp_ipvs_print_json(const struct sp_ipvs_state *st, struct sp_buf *out);

/* Set names (family AF_INET or AF_INET6) and ipset types. */
const char *sp_ipvs_set_name(enum sp_ipvs_set_id id, int family);
const char *sp_ipvs_set_type(enum sp_ipvs_set_id id);
void sp_ipvs_set_add(struct sp_ipvs_state *st, int family, enum sp_ipvs_set_id id,
		     const char *entry);
bool sp_ipvs_set_has(const struct sp_ipvs_set *set, const char *entry);
/* "ADDR,proto:PORT": a hash:ip,port member; buf holds SP_IPVS_ENTRYLEN. */
#define SP_IPVS_ENTRYLEN 128
const char *sp_ipvs_entry_ipport(const struct sp_addr *a, uint8_t proto, uint16_t port, char *buf);
/* `ipset restore` text creating and filling every desired set. */
void sp_ipvs_print_sets(const struct sp_ipvs_state *st, struct sp_buf *out);
/* iptables-save text of the mangle (capture) table of a family. */
void sp_ipvs_print_mangle(const struct sp_ipvs_state *st, int family, struct sp_buf *out);

/* The helper chains the mode owns (NULL-terminated; same names in every
 * table: nat has the first three, filter KUBE-IPVS-FIREWALL, mangle
 * KUBE-IPVS-CAPTURE). */
extern const char *const sp_ipvs_owned_chains[];

#endif
