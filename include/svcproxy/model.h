/* The Kubernetes objects svcproxy acts on, reduced to the fields that change
 * what kube-proxy does. Sources fill these; the planner reads them. Every
 * string and array is owned by the object that holds it and is released by
 * sp_cluster_free(). */
#ifndef SVCPROXY_MODEL_H
#define SVCPROXY_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "svcproxy/util.h"

/* Label and annotation names kube-proxy (and this project) honour. */
#define SP_LABEL_SERVICE_PROXY_NAME "service.kubernetes.io/service-proxy-name"
#define SP_LABEL_HEADLESS "service.kubernetes.io/headless"
#define SP_LABEL_SERVICE_NAME "kubernetes.io/service-name"
#define SP_ANNOTATION_ELB_PASS_THROUGH "kubernetes.io/elb.pass-through"
#define SP_ANNOTATION_IPVS_SCHEDULER "svcproxy.io/ipvs-scheduler"

enum sp_service_type {
	SP_SVC_CLUSTER_IP,
	SP_SVC_NODE_PORT,
	SP_SVC_LOAD_BALANCER,
	SP_SVC_EXTERNAL_NAME,
};

struct sp_service_port {
	char *name;	  /* "" when the Service has a single unnamed port */
	uint8_t protocol; /* IPPROTO_TCP, IPPROTO_UDP or IPPROTO_SCTP */
	uint16_t port;
	uint16_t node_port; /* 0: none */
	char *target_port;  /* as written (number or name); informational only */
};

struct sp_lb_ingress {
	struct sp_addr ip;  /* family 0 when the ingress has only a hostname */
	bool ip_mode_proxy; /* status.loadBalancer.ingress[].ipMode == "Proxy" */
};

struct sp_service {
	char *namespace;
	char *name;
	char *origin; /* where it was read from, for messages */
	enum sp_service_type type;
	bool headless;		     /* clusterIP None, or the headless label */
	struct sp_addr *cluster_ips; /* clusterIPs, primary first */
	size_t n_cluster_ips;
	int ip_families[2]; /* AF_INET / AF_INET6 in spec order; 0 = unset */
	struct sp_service_port *ports;
	size_t n_ports;
	struct sp_addr *external_ips;
	size_t n_external_ips;
	struct sp_lb_ingress *lb_ingress;
	size_t n_lb_ingress;
	struct sp_cidr *source_ranges; /* loadBalancerSourceRanges */
	size_t n_source_ranges;
	bool external_policy_local;	 /* externalTrafficPolicy: Local */
	bool internal_policy_local;	 /* internalTrafficPolicy: Local */
	bool affinity_client_ip;	 /* sessionAffinity: ClientIP */
	uint32_t affinity_timeout;	 /* seconds; kube-proxy's default 10800 */
	uint16_t health_check_node_port; /* 0: none */
	bool elb_pass_through;		 /* annotation kubernetes.io/elb.pass-through: "true" */
	char *proxy_name;		 /* label service-proxy-name; NULL when absent */
	char *ipvs_scheduler;		 /* annotation; NULL when absent */
};

/* A condition that the API left out is unknown (kube-proxy treats a missing
 * ready as ready, serving as ready, terminating as false). The reader applies
 * those defaults, so these are plain booleans. */
struct sp_endpoint {
	struct sp_addr addr; /* addresses[0]: kube-proxy uses only the first */
	bool ready;
	bool serving;
	bool terminating;
	char *node_name; /* NULL when unset */
	char *zone;
	char **hint_zones;
	size_t n_hint_zones;
	char *target_name; /* targetRef name, informational */
};

struct sp_endpoint_port {
	char *name; /* "" when unnamed */
	uint8_t protocol;
	uint16_t port; /* 0 when the slice leaves it unset: no usable endpoint */
};

struct sp_endpoint_slice {
	char *namespace;
	char *name;
	char *origin;
	char *service_name; /* label kubernetes.io/service-name */
	int address_type;   /* AF_INET, AF_INET6, or 0 for FQDN (ignored) */
	struct sp_endpoint *endpoints;
	size_t n_endpoints;
	struct sp_endpoint_port *ports;
	size_t n_ports;
};

struct sp_node {
	char *name;
	char *origin;
	struct sp_addr *addresses; /* InternalIP then ExternalIP, in object order */
	size_t n_addresses;
	struct sp_cidr *pod_cidrs;
	size_t n_pod_cidrs;
};

/* Everything read from the sources, in the order read. */
struct sp_cluster {
	struct sp_service *services;
	size_t n_services, cap_services;
	struct sp_endpoint_slice *slices;
	size_t n_slices, cap_slices;
	struct sp_node *nodes;
	size_t n_nodes, cap_nodes;
};

void sp_cluster_init(struct sp_cluster *c);
void sp_cluster_free(struct sp_cluster *c);
/* New zeroed slots owned by the cluster. */
struct sp_service *sp_cluster_add_service(struct sp_cluster *c);
struct sp_endpoint_slice *sp_cluster_add_slice(struct sp_cluster *c);
struct sp_node *sp_cluster_add_node(struct sp_cluster *c);
/* Drop the last slot added (a reader that found the object invalid). */
void sp_cluster_drop_last_service(struct sp_cluster *c);
void sp_cluster_drop_last_slice(struct sp_cluster *c);
void sp_cluster_drop_last_node(struct sp_cluster *c);

void sp_service_clear(struct sp_service *s);
void sp_slice_clear(struct sp_endpoint_slice *s);
void sp_node_clear(struct sp_node *n);

const struct sp_service *sp_cluster_find_service(const struct sp_cluster *c, const char *ns,
						 const char *name);
const struct sp_node *sp_cluster_find_node(const struct sp_cluster *c, const char *name);

const char *sp_service_type_name(enum sp_service_type t);

#endif
