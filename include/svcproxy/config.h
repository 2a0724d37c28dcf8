/* Node configuration: kube-proxy's flag names and defaults. Filled from the
 * command line and an optional KubeProxyConfiguration file; read by the
 * planner and the backends. */
#ifndef SVCPROXY_CONFIG_H
#define SVCPROXY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "svcproxy/diag.h"
#include "svcproxy/util.h"

enum sp_mode {
	SP_MODE_NONE = 0,
	SP_MODE_IPTABLES,
	SP_MODE_IPVS,
	SP_MODE_NFTABLES,
};

/* How IPVS mode captures LB ingress IPs and externalIPs (see the ipvs issue):
 * per (address, protocol, port) with a policy rule, or kube-proxy's binding of
 * the whole address to kube-ipvs0. */
enum sp_ipvs_capture {
	SP_IPVS_CAPTURE_PER_PORT = 0,
	SP_IPVS_CAPTURE_WHOLE_ADDRESS,
};

struct sp_config {
	enum sp_mode mode;	       /* default iptables, as kube-proxy on Linux */
	char *hostname;		       /* --hostname-override; else the host name */
	struct sp_cidr *cluster_cidrs; /* --cluster-cidr (comma list) */
	size_t n_cluster_cidrs;
	/* --nodeport-addresses: empty means every node address. */
	struct sp_cidr *nodeport_cidrs;
	size_t n_nodeport_cidrs;
	/* --node-ip: the node's own addresses; else from its Node object. */
	struct sp_addr *node_ips;
	size_t n_node_ips;
	bool masquerade_all;
	unsigned masquerade_bit; /* --iptables-masquerade-bit, default 14 */
	char *ipvs_scheduler;	 /* default "rr" */
	bool ipvs_strict_arp;
	enum sp_ipvs_capture ipvs_capture;
	uint32_t ipvs_graceful_period_ms; /* real server drain time, default 15 s */
	unsigned sync_period_ms;	  /* --sync-period, default 30 s */
	unsigned min_sync_period_ms;	  /* --min-sync-period, default 1 s */
	char *healthz_bind_address;	  /* default 0.0.0.0:10256 */
	char *metrics_bind_address;	  /* default 127.0.0.1:10249 */
	char *config_file;		  /* --config, for messages and SIGHUP */
	/* Source limits (svcproxy.maxInputBytes & co in the file, then
	 * --max-input-bytes & co); 0 leaves the reader's default. */
	size_t max_input_bytes;
	size_t max_json_depth;
	size_t max_json_items;
};

void sp_config_init(struct sp_config *cfg); /* kube-proxy's defaults */
void sp_config_free(struct sp_config *cfg);
const char *sp_mode_name(enum sp_mode m); /* "iptables", "ipvs", "nftables" */
enum sp_mode sp_mode_parse(const char *name);

/* Read the matching subset of a KubeProxyConfiguration (JSON or YAML) into
 * cfg. Returns 0, or -1 with the reason in diag (file, field, value). */
int sp_config_load_file(struct sp_config *cfg, const char *path, struct sp_diag *diag);

/* Appended for the configurable source limits (issue 10). */
struct sp_source_limits;

/* The limits cfg asks for, the reader's default where it sets none. */
void sp_config_source_limits(const struct sp_config *cfg, struct sp_source_limits *lim);

#endif
