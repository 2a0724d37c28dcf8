#include "svcproxy/model.h"

#include <stdlib.h>
#include <string.h>

void sp_cluster_init(struct sp_cluster *c)
{
	memset(c, 0, sizeof(*c));
}

void sp_service_clear(struct sp_service *s)
{
	free(s->namespace);
	free(s->name);
	free(s->origin);
	free(s->cluster_ips);
	for (size_t i = 0; i < s->n_ports; i++) {
		free(s->ports[i].name);
		free(s->ports[i].target_port);
	}
	free(s->ports);
	free(s->external_ips);
	free(s->lb_ingress);
	free(s->source_ranges);
	free(s->proxy_name);
	free(s->ipvs_scheduler);
	memset(s, 0, sizeof(*s));
}

static void sp_endpoint_clear(struct sp_endpoint *e)
{
	free(e->node_name);
	free(e->zone);
	for (size_t i = 0; i < e->n_hint_zones; i++)
		free(e->hint_zones[i]);
	free(e->hint_zones);
	free(e->target_name);
	memset(e, 0, sizeof(*e));
}

void sp_slice_clear(struct sp_endpoint_slice *s)
{
	free(s->namespace);
	free(s->name);
	free(s->origin);
	free(s->service_name);
	for (size_t i = 0; i < s->n_endpoints; i++)
		sp_endpoint_clear(&s->endpoints[i]);
	free(s->endpoints);
	for (size_t i = 0; i < s->n_ports; i++)
		free(s->ports[i].name);
	free(s->ports);
	memset(s, 0, sizeof(*s));
}

void sp_node_clear(struct sp_node *n)
{
	free(n->name);
	free(n->origin);
	free(n->addresses);
	free(n->pod_cidrs);
	memset(n, 0, sizeof(*n));
}

void sp_cluster_free(struct sp_cluster *c)
{
	for (size_t i = 0; i < c->n_services; i++)
		sp_service_clear(&c->services[i]);
	for (size_t i = 0; i < c->n_slices; i++)
		sp_slice_clear(&c->slices[i]);
	for (size_t i = 0; i < c->n_nodes; i++)
		sp_node_clear(&c->nodes[i]);
	free(c->services);
	free(c->slices);
	free(c->nodes);
	sp_cluster_init(c);
}

struct sp_service *sp_cluster_add_service(struct sp_cluster *c)
{
	return sp_array_push(&c->services, &c->n_services, &c->cap_services, sizeof(*c->services));
}

struct sp_endpoint_slice *sp_cluster_add_slice(struct sp_cluster *c)
{
	return sp_array_push(&c->slices, &c->n_slices, &c->cap_slices, sizeof(*c->slices));
}

struct sp_node *sp_cluster_add_node(struct sp_cluster *c)
{
	return sp_array_push(&c->nodes, &c->n_nodes, &c->cap_nodes, sizeof(*c->nodes));
}

void sp_cluster_drop_last_service(struct sp_cluster *c)
{
	if (c->n_services)
		sp_service_clear(&c->services[--c->n_services]);
}

void sp_cluster_drop_last_slice(struct sp_cluster *c)
{
	if (c->n_slices)
		sp_slice_clear(&c->slices[--c->n_slices]);
}

void sp_cluster_drop_last_node(struct sp_cluster *c)
{
	if (c->n_nodes)
		sp_node_clear(&c->nodes[--c->n_nodes]);
}

const struct sp_service *sp_cluster_find_service(const struct sp_cluster *c, const char *ns,
						 const char *name)
{
	for (size_t i = 0; i < c->n_services; i++)
		if (!strcmp(c->services[i].namespace, ns) && !strcmp(c->services[i].name, name))
			return &c->services[i];
	return NULL;
}

const struct sp_node *sp_cluster_find_node(const struct sp_cluster *c, const char *name)
{
	for (size_t i = 0; i < c->n_nodes; i++)
		if (!strcmp(c->nodes[i].name, name))
			return &c->nodes[i];
	return NULL;
}

const char *sp_service_type_name(enum sp_service_type t)
{
	switch (t) {
	case SP_SVC_CLUSTER_IP:
		return "ClusterIP";
	case SP_SVC_NODE_PORT:
		return "NodePort";
	case SP_SVC_LOAD_BALANCER:
		return "LoadBalancer";
	case SP_SVC_EXTERNAL_NAME:
		return "ExternalName";
	}
	return "?";
}
