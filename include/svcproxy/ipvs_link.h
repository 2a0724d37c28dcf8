/* IPVS mode's rtnetlink side (libnl-route-3): the kube-ipvs0 dummy link and
 * its addresses, the per-port capture rules and their routing table, and the
 * sysctls IPVS mode depends on. Everything acts on the current network
 * namespace. Functions return 0 or -1 with the object and the kernel's
 * reason in diag. */
#ifndef SVCPROXY_IPVS_LINK_H
#define SVCPROXY_IPVS_LINK_H

#include <stdbool.h>

#include "svcproxy/diag.h"
#include "svcproxy/ipvs.h"

struct sp_ipvs_rtnl;

struct sp_ipvs_rtnl *sp_ipvs_rtnl_open(struct sp_diag *diag);
void sp_ipvs_rtnl_close(struct sp_ipvs_rtnl *rt);

/* kube-ipvs0's ifindex, 0 when it does not exist, -1 on error. */
int sp_ipvs_link_find(struct sp_ipvs_rtnl *rt, struct sp_diag *diag);
/* Create kube-ipvs0 as a dummy link if missing and keep it down (NOARP, as
 * dummy links are); returns the ifindex or -1. A kube-ipvs0 that is not a
 * dummy link is refused. */
int sp_ipvs_link_ensure(struct sp_ipvs_rtnl *rt, struct sp_diag *diag);
int sp_ipvs_link_delete(struct sp_ipvs_rtnl *rt, struct sp_diag *diag);
/* Append the addresses of ifindex to out->link_addrs. */
int sp_ipvs_link_addrs(struct sp_ipvs_rtnl *rt, int ifindex, struct sp_ipvs_state *out,
		       struct sp_diag *diag);
int sp_ipvs_link_addr_add(struct sp_ipvs_rtnl *rt, int ifindex, const struct sp_addr *a,
			  struct sp_diag *diag);
int sp_ipvs_link_addr_del(struct sp_ipvs_rtnl *rt, int ifindex, const struct sp_addr *a,
			  struct sp_diag *diag);

/* The node's own addresses a node port may listen on: every address of
 * every link but kube-ipvs0, without loopback and IPv6 link-local ones.
 * *out is allocated (caller frees). 0 or -1. */
int sp_ipvs_local_addrs(struct sp_ipvs_rtnl *rt, struct sp_addr **out, size_t *n,
			struct sp_diag *diag);

/* Append the policy rules that look up SP_IPVS_TABLE to out->rules (rules of
 * that table that are not of our shape are reported, not returned). */
int sp_ipvs_rules_dump(struct sp_ipvs_rtnl *rt, struct sp_ipvs_state *out, struct sp_diag *diag);
int sp_ipvs_rule_add(struct sp_ipvs_rtnl *rt, const struct sp_ipvs_rule *r, struct sp_diag *diag);
int sp_ipvs_rule_del(struct sp_ipvs_rtnl *rt, const struct sp_ipvs_rule *r, struct sp_diag *diag);
/* `local default dev lo table SP_IPVS_TABLE [src SRC]` for family: ensure
 * (src may be NULL or of family 0) / remove. Each reads the table first and
 * writes only when it differs: 1 a message was sent, 0 nothing to do, -1
 * error. */
int sp_ipvs_table_route_ensure(struct sp_ipvs_rtnl *rt, int family, const struct sp_addr *src,
			       struct sp_diag *diag);
int sp_ipvs_table_route_del(struct sp_ipvs_rtnl *rt, int family, struct sp_diag *diag);

/* kube-proxy's IPVS sysctls: net.ipv4.vs.conntrack, expire_nodest_conn,
 * expire_quiescent_template, net.ipv4.ip_forward = 1 and, with strict_arp,
 * conf.all.arp_ignore = 1, arp_announce = 2. Each is written when it
 * differs, then read back. */
int sp_ipvs_sysctls_apply(bool strict_arp, struct sp_diag *diag);

#endif
