/* The planner: a pure function from (objects, node configuration, mode) to
 * what each Service port needs on this node, with kube-proxy's semantics
 * already applied (which addresses are captured, which endpoints serve
 * internal and external traffic, what is refused). The per-mode lowerings
 * (nft, iptables, ipvs) turn this into their kernel objects and print them.
 * No syscalls anywhere below this header. */
#ifndef SVCPROXY_PLAN_H
#define SVCPROXY_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "svcproxy/config.h"
#include "svcproxy/diag.h"
#include "svcproxy/model.h"
#include "svcproxy/util.h"

/* kube-proxy's default ClientIP affinity timeout (seconds). */
#define SP_DEFAULT_AFFINITY_TIMEOUT 10800

struct sp_plan_endpoint {
	struct sp_addr addr;
	uint16_t port;
	bool local; /* nodeName is this node */
	bool ready;
	bool serving;
	bool terminating;
	char *node_name;   /* may be NULL */
	char *target_name; /* pod name, may be NULL */
};

/* A subset of an svcport's endpoints, as indexes into its endpoints[]. */
struct sp_plan_ep_set {
	size_t *idx;
	size_t n;
};

/* One Service port in one IP family: kube-proxy's unit of programming. */
struct sp_plan_svcport {
	char *namespace;
	char *name;
	char *port_name; /* "" when unnamed */
	char *id;	 /* "namespace/name:port_name" (kube-proxy's ServicePortName) */
	int family;	 /* AF_INET or AF_INET6 */
	uint8_t protocol;
	enum sp_service_type type;
	struct sp_addr cluster_ip;
	uint16_t port;
	uint16_t node_port; /* 0: none */
	/* Addresses captured on this node (pass-through and ipMode Proxy
	 * ingresses are not here; refused addresses are not here). Sorted. */
	struct sp_addr *external_ips;
	size_t n_external_ips;
	struct sp_addr *lb_ips;
	size_t n_lb_ips;
	struct sp_cidr *source_ranges; /* loadBalancerSourceRanges, sorted */
	size_t n_source_ranges;
	bool external_policy_local; /* only when externally accessible */
	bool internal_policy_local;
	bool affinity;
	uint32_t affinity_timeout;	 /* seconds */
	uint16_t health_check_node_port; /* Local LoadBalancer only, as kube-proxy */
	char *ipvs_scheduler;		 /* resolved: the Service's annotation or the node's */
	/* Usable endpoints (kube-proxy's allReachableEndpoints), sorted by
	 * address then port, no duplicates. */
	struct sp_plan_endpoint *endpoints;
	size_t n_endpoints;
	struct sp_plan_ep_set cluster; /* ready anywhere, else serving+terminating */
	struct sp_plan_ep_set local;   /* ready here, else serving+terminating here */
	bool has_any_endpoints;	       /* false: the Service port rejects traffic */
};

struct sp_plan {
	enum sp_mode mode;
	char *node_name;
	struct sp_addr *node_ips; /* this node's addresses, sorted */
	size_t n_node_ips;
	/* Addresses node ports listen on. nodeport_all_local: any local
	 * address (--nodeport-addresses unset), as kube-proxy matches them with
	 * addrtype/fib; node_port_addrs still lists the known node IPs for
	 * modes that need explicit addresses (IPVS). */
	bool nodeport_all_local;
	struct sp_addr *nodeport_addrs;
	size_t n_nodeport_addrs;
	struct sp_cidr *cluster_cidrs;
	size_t n_cluster_cidrs;
	bool masquerade_all;
	uint32_t masquerade_mark; /* 1 << masquerade_bit */
	char *ipvs_default_scheduler;
	bool ipvs_strict_arp;
	enum sp_ipvs_capture ipvs_capture;
	/* Sorted by (namespace, name, port_name, family): output is
	 * deterministic whatever the input order. */
	struct sp_plan_svcport *svcports;
	size_t n_svcports;
};

/* Build the plan. Problems (a node IP used as an externalIP in ipvs mode,
 * an endpoint family mismatch, ...) are reported in diag and the offending
 * part is left out; everything valid is planned. The caller frees with
 * sp_plan_free(). Returns 0, or 1 if something was refused. */
int sp_plan_build(struct sp_plan *plan, const struct sp_cluster *cluster,
		  const struct sp_config *cfg, struct sp_diag *diag);
void sp_plan_free(struct sp_plan *plan);

/* The endpoints that serve internal (ClusterIP) and external (node port,
 * externalIP, LB IP) traffic under the svcport's policies. */
const struct sp_plan_ep_set *sp_plan_internal_eps(const struct sp_plan_svcport *sp);
const struct sp_plan_ep_set *sp_plan_external_eps(const struct sp_plan_svcport *sp);
bool sp_plan_externally_accessible(const struct sp_plan_svcport *sp);
const struct sp_plan_svcport *sp_plan_find(const struct sp_plan *plan, const char *id, int family);
/* The order of plan->svcports: (namespace, name, port_name, family, protocol,
 * port). Backends that walk two plans side by side rely on it. */
int sp_plan_svcport_cmp(const struct sp_plan_svcport *a, const struct sp_plan_svcport *b);

/* The mode-independent part of `--output json`. */
void sp_plan_print_json(const struct sp_plan *plan, struct sp_buf *out);

#endif
