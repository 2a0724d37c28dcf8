/* discovery.k8s.io/v1 EndpointSlice, with kube-proxy's defaults for the
 * conditions the API leaves out. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svcproxy/model.h"
#include "source_internal.h"

/* The API server's bound on addresses per endpoint. */
#define SP_SLICE_MAX_ADDRESSES 100

static void read_address_type(struct src_ctx *x, const cJSON *obj, struct sp_endpoint_slice *s,
			      bool *fqdn)
{
	const char *t;
	char val[128];

	*fqdn = false;
	if (!src_get_string(x, obj, "", "addressType", &t)) {
		if (!src_get(obj, "addressType"))
			src_error(x, "addressType", "required value is missing");
		return;
	}
	if (!strcmp(t, "FQDN")) {
		*fqdn = true;
		return;
	}
	s->address_type = src_family_parse(t);
	if (!s->address_type)
		src_error(x, "addressType", "%s is not one of IPv4, IPv6, FQDN",
			  src_string_text(t, val, sizeof(val)));
}

static void read_addresses(struct src_ctx *x, const cJSON *e, const char *base,
			   const struct sp_endpoint_slice *s, struct sp_endpoint *ep, bool fqdn)
{
	const cJSON *addrs, *it;
	char path[SRC_PATH_MAX];
	size_t i = 0;

	src_path(path, "%s.addresses", base);
	if (!src_get_array(x, e, base, "addresses", &addrs)) {
		if (!src_get(e, "addresses"))
			src_error(x, path, "required value is missing");
		return;
	}
	if (!addrs->child) {
		src_error(x, path, "must contain at least one address");
		return;
	}
	cJSON_ArrayForEach(it, addrs)
	{
		struct sp_addr a;
		char addr[SP_ADDRSTRLEN];

		src_path(path, "%s.addresses[%zu]", base, i);
		if (i++ >= SP_SLICE_MAX_ADDRESSES) {
			src_error(x, path, "more than %d addresses", SP_SLICE_MAX_ADDRESSES);
			return;
		}
		if (fqdn) {
			if (src_is_string(x, it, path))
				src_check_dns_subdomain(x, it->valuestring, path);
			continue;
		}
		if (!src_parse_addr(x, it, path, &a))
			continue;
		if (a.family != s->address_type) {
			src_error(x, path, "\"%s\" is %s but addressType is %s",
				  sp_addr_format(&a, addr), src_family_name(a.family),
				  src_family_name(s->address_type));
			continue;
		}
		/* kube-proxy uses only the first address. */
		if (i == 1)
			ep->addr = a;
	}
}

static void read_conditions(struct src_ctx *x, const cJSON *e, const char *base,
			    struct sp_endpoint *ep)
{
	char cbase[SRC_PATH_MAX];
	const cJSON *cond;

	ep->ready = true;
	ep->terminating = false;
	src_path(cbase, "%s.conditions", base);
	if (src_get_object(x, e, base, "conditions", &cond)) {
		src_get_bool(x, cond, cbase, "ready", &ep->ready);
		ep->serving = ep->ready;
		src_get_bool(x, cond, cbase, "serving", &ep->serving);
		src_get_bool(x, cond, cbase, "terminating", &ep->terminating);
	} else {
		ep->serving = true;
	}
}

static void read_hints(struct src_ctx *x, const cJSON *e, const char *base, struct sp_endpoint *ep)
{
	char hbase[SRC_PATH_MAX], path[SRC_PATH_MAX];
	const cJSON *hints, *zones, *it;
	size_t i = 0;

	src_path(hbase, "%s.hints", base);
	if (!src_get_object(x, e, base, "hints", &hints) ||
	    !src_get_array(x, hints, hbase, "forZones", &zones))
		return;
	ep->hint_zones = sp_xcalloc((size_t)cJSON_GetArraySize(zones) + 1, sizeof(char *));
	cJSON_ArrayForEach(it, zones)
	{
		const char *zone;

		src_path(path, "%s.forZones[%zu]", hbase, i++);
		if (!cJSON_IsObject(it)) {
			char val[128];

			src_error(x, path, "%s is not an object",
				  src_value_text(it, val, sizeof(val)));
			continue;
		}
		if (!src_get_string(x, it, path, "name", &zone))
			continue;
		src_path(path, "%s.forZones[%zu].name", hbase, i - 1);
		if (src_check_text(x, zone, 253, path))
			ep->hint_zones[ep->n_hint_zones++] = sp_xstrdup(zone);
	}
}

static void read_endpoint(struct src_ctx *x, const cJSON *e, size_t i, struct sp_endpoint_slice *s,
			  bool fqdn)
{
	struct sp_endpoint *ep = &s->endpoints[s->n_endpoints++];
	char base[SRC_PATH_MAX], path[SRC_PATH_MAX];
	const cJSON *ref;
	const char *v;

	src_path(base, "endpoints[%zu]", i);
	if (!cJSON_IsObject(e)) {
		char val[128];

		src_error(x, base, "%s is not an object", src_value_text(e, val, sizeof(val)));
		return;
	}
	read_addresses(x, e, base, s, ep, fqdn);
	read_conditions(x, e, base, ep);
	src_path(path, "%s.nodeName", base);
	if (src_get_string(x, e, base, "nodeName", &v) && src_check_dns_subdomain(x, v, path))
		ep->node_name = sp_xstrdup(v);
	src_path(path, "%s.zone", base);
	if (src_get_string(x, e, base, "zone", &v) && src_check_text(x, v, 253, path))
		ep->zone = sp_xstrdup(v);
	read_hints(x, e, base, ep);
	src_path(path, "%s.targetRef", base);
	if (src_get_object(x, e, base, "targetRef", &ref) &&
	    src_get_string(x, ref, path, "name", &v)) {
		src_path(path, "%s.targetRef.name", base);
		if (src_check_text(x, v, 253, path))
			ep->target_name = sp_xstrdup(v);
	}
}

static void read_slice_port(struct src_ctx *x, const cJSON *p, size_t i,
			    struct sp_endpoint_slice *s)
{
	struct sp_endpoint_port *ep = &s->ports[s->n_ports++];
	char base[SRC_PATH_MAX], path[SRC_PATH_MAX], val[128];
	const char *name = NULL, *proto;
	long port = 0;

	src_path(base, "ports[%zu]", i);
	ep->name = sp_xstrdup("");
	ep->protocol = IPPROTO_TCP;
	if (!cJSON_IsObject(p)) {
		src_error(x, base, "%s is not an object", src_value_text(p, val, sizeof(val)));
		return;
	}
	src_path(path, "%s.name", base);
	if (src_get_string(x, p, base, "name", &name) && *name &&
	    src_check_dns_label(x, name, path)) {
		free(ep->name);
		ep->name = sp_xstrdup(name);
	}
	if (src_get_string(x, p, base, "protocol", &proto)) {
		ep->protocol = sp_proto_parse(proto);
		if (!ep->protocol) {
			src_path(path, "%s.protocol", base);
			src_error(x, path, "%s is not one of TCP, UDP, SCTP",
				  src_string_text(proto, val, sizeof(val)));
		}
	}
	if (src_get_int(x, p, base, "port", 1, 65535, "is not a port", &port))
		ep->port = (uint16_t)port;
	for (size_t k = 0; k + 1 < s->n_ports; k++)
		if (!strcmp(s->ports[k].name, ep->name)) {
			src_path(path, "%s.name", base);
			src_error(x, path, "%s is a duplicate of ports[%zu].name",
				  src_string_text(ep->name, val, sizeof(val)), k);
			break;
		}
}

int src_read_slice(struct sp_cluster *c, struct src_ctx *x, const cJSON *obj)
{
	struct sp_endpoint_slice *s = sp_cluster_add_slice(c);
	const char *svc_path = "metadata.labels[" SP_LABEL_SERVICE_NAME "]";
	const cJSON *eps, *ports, *it;
	const char *ns, *name, *svc;
	bool fqdn;
	size_t i;

	x->kind = "EndpointSlice";
	if (src_read_metadata(x, obj, true, &ns, &name) &&
	    src_check_dns_subdomain(x, name, "metadata.name")) {
		s->namespace = sp_xstrdup(ns);
		s->name = sp_xstrdup(name);
	}
	s->origin = sp_xstrdup(x->origin);
	svc = src_get_label(x, obj, "labels", SP_LABEL_SERVICE_NAME);
	if (!svc && !x->n_errors)
		src_error(x, svc_path, "required value is missing (kube-proxy ignores the slice)");
	else if (svc && src_check_dns1035_label(x, svc, svc_path))
		s->service_name = sp_xstrdup(svc);
	read_address_type(x, obj, s, &fqdn);
	if (src_get_array(x, obj, "", "endpoints", &eps)) {
		s->endpoints =
			sp_xcalloc((size_t)cJSON_GetArraySize(eps) + 1, sizeof(*s->endpoints));
		i = 0;
		cJSON_ArrayForEach(it, eps)
		{
			read_endpoint(x, it, i++, s, fqdn);
		}
	}
	if (src_get_array(x, obj, "", "ports", &ports)) {
		s->ports = sp_xcalloc((size_t)cJSON_GetArraySize(ports) + 1, sizeof(*s->ports));
		i = 0;
		cJSON_ArrayForEach(it, ports)
		{
			read_slice_port(x, it, i++, s);
		}
	}
	if (x->n_errors || !s->name || !s->service_name) {
		sp_cluster_drop_last_slice(c);
		return 1;
	}
	if (fqdn) {
		/* kube-proxy does not proxy FQDN endpoints: keep the slice, not them. */
		for (i = 0; i < s->n_endpoints; i++) {
			free(s->endpoints[i].node_name);
			free(s->endpoints[i].zone);
			for (size_t k = 0; k < s->endpoints[i].n_hint_zones; k++)
				free(s->endpoints[i].hint_zones[k]);
			free(s->endpoints[i].hint_zones);
			free(s->endpoints[i].target_name);
		}
		s->n_endpoints = 0;
	}
	return 0;
}
