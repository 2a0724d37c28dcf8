/* v1 Service: every spec and status field kube-proxy acts on, checked the
 * way the API server validates them, so that a hand-written file fails here
 * rather than in the kernel. */
#include <stdio.h>
#include <string.h>

#include "svcproxy/model.h"
#include "source_internal.h"

#define SP_AFFINITY_DEFAULT_TIMEOUT 10800
#define SP_AFFINITY_MAX_TIMEOUT 86400

static const char *const ipvs_schedulers[] = {"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh",
					      "sh", "sed", "nq", "mh",	"fo",	"ovf",	 "twos"};

static bool one_of(const char *s, const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(s, names[i]))
			return true;
	return false;
}

/* A string field that must be one of a few words; absent keeps *out. */
static int read_enum(struct src_ctx *x, const cJSON *spec, const char *key,
		     const char *const *names, size_t n, const char *list)
{
	char path[SRC_PATH_MAX], val[128];
	const char *s;

	if (!src_get_string(x, spec, "spec", key, &s))
		return -1;
	for (size_t i = 0; i < n; i++)
		if (!strcmp(s, names[i]))
			return (int)i;
	src_path(path, "spec.%s", key);
	src_error(x, path, "%s is not one of %s", src_string_text(s, val, sizeof(val)), list);
	return -1;
}

static void read_type(struct src_ctx *x, const cJSON *spec, struct sp_service *s)
{
	static const char *const names[] = {"ClusterIP", "NodePort", "LoadBalancer",
					    "ExternalName"};
	static const enum sp_service_type types[] = {SP_SVC_CLUSTER_IP, SP_SVC_NODE_PORT,
						     SP_SVC_LOAD_BALANCER, SP_SVC_EXTERNAL_NAME};
	int i = read_enum(x, spec, "type", names, SP_ARRAY_SIZE(names),
			  "ClusterIP, NodePort, LoadBalancer, ExternalName");

	s->type = i >= 0 ? types[i] : SP_SVC_CLUSTER_IP;
}

static void add_cluster_ip(struct src_ctx *x, struct sp_service *s, const cJSON *v,
			   const char *path, size_t index, size_t count)
{
	char val[128];
	struct sp_addr a;

	if (!src_is_string(x, v, path))
		return;
	if (!strcmp(v->valuestring, "None")) {
		if (index != 0 || count != 1)
			src_error(x, path, "\"None\" must be the only cluster IP");
		s->headless = true;
		return;
	}
	if (!src_parse_addr(x, v, path, &a))
		return;
	if (sp_addr_is_special(&a)) {
		src_error(x, path, "%s is not a usable cluster IP",
			  src_value_text(v, val, sizeof(val)));
		return;
	}
	for (size_t i = 0; i < s->n_cluster_ips; i++)
		if (s->cluster_ips[i].family == a.family) {
			src_error(x, path, "%s: a second %s cluster IP (one per family)",
				  src_value_text(v, val, sizeof(val)), src_family_name(a.family));
			return;
		}
	s->cluster_ips[s->n_cluster_ips++] = a;
}

static void read_cluster_ips(struct src_ctx *x, const cJSON *spec, struct sp_service *s)
{
	const cJSON *cip = src_get(spec, "clusterIP"), *cips = NULL, *it;
	char path[SRC_PATH_MAX], val[128], val2[128];
	size_t n = 0, i = 0;

	if (cip && !src_is_string(x, cip, "spec.clusterIP"))
		return;
	if (cip && !*cip->valuestring)
		cip = NULL;
	if (!src_get_array(x, spec, "spec", "clusterIPs", &cips) && x->n_errors)
		return;
	n = cips ? (size_t)cJSON_GetArraySize(cips) : 0;
	if (n > 2) {
		src_error(x, "spec.clusterIPs", "%zu addresses, at most one per family (2)", n);
		return;
	}
	s->cluster_ips = sp_xcalloc(2, sizeof(*s->cluster_ips));
	if (n == 0) {
		if (cip)
			add_cluster_ip(x, s, cip, "spec.clusterIP", 0, 1);
		return;
	}
	it = cips->child;
	if (cip && cJSON_IsString(it) && strcmp(cip->valuestring, it->valuestring)) {
		src_error(x, "spec.clusterIPs[0]", "%s does not match spec.clusterIP %s",
			  src_value_text(it, val, sizeof(val)),
			  src_value_text(cip, val2, sizeof(val2)));
		return;
	}
	cJSON_ArrayForEach(it, cips)
	{
		src_path(path, "spec.clusterIPs[%zu]", i);
		add_cluster_ip(x, s, it, path, i, n);
		i++;
	}
}

static void read_ip_families(struct src_ctx *x, const cJSON *spec, struct sp_service *s)
{
	const cJSON *fams, *it;
	char path[SRC_PATH_MAX], val[128];
	size_t i = 0;

	if (src_get_array(x, spec, "spec", "ipFamilies", &fams)) {
		cJSON_ArrayForEach(it, fams)
		{
			int fam;

			src_path(path, "spec.ipFamilies[%zu]", i);
			if (i >= 2) {
				src_error(x, "spec.ipFamilies", "more than two families");
				return;
			}
			if (!src_is_string(x, it, path))
				return;
			fam = src_family_parse(it->valuestring);
			if (!fam) {
				src_error(x, path, "%s is not one of IPv4, IPv6",
					  src_value_text(it, val, sizeof(val)));
				return;
			}
			if (i == 1 && s->ip_families[0] == fam) {
				src_error(x, path, "%s is listed twice",
					  src_value_text(it, val, sizeof(val)));
				return;
			}
			s->ip_families[i++] = fam;
		}
	}
	for (size_t k = 0; k < s->n_cluster_ips; k++) {
		char addr[SP_ADDRSTRLEN];
		int fam = s->cluster_ips[k].family;

		if (!s->ip_families[k]) {
			s->ip_families[k] = fam;
			continue;
		}
		if (s->ip_families[k] != fam) {
			src_path(path, "spec.clusterIPs[%zu]", k);
			src_error(x, path, "\"%s\" is %s but spec.ipFamilies[%zu] is %s",
				  sp_addr_format(&s->cluster_ips[k], addr), src_family_name(fam), k,
				  src_family_name(s->ip_families[k]));
		}
	}
}

/* IANA service name, as a targetPort name must be. */
static bool iana_svc_name_ok(const char *s)
{
	size_t n = strlen(s);
	bool letter = false;

	if (n == 0 || n > 15 || s[0] == '-' || s[n - 1] == '-' || strstr(s, "--"))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] >= 'a' && s[i] <= 'z')
			letter = true;
		else if (!(s[i] >= '0' && s[i] <= '9') && s[i] != '-')
			return false;
	}
	return letter;
}

static char *read_target_port(struct src_ctx *x, const cJSON *p, const char *base, long port)
{
	const cJSON *v = src_get(p, "targetPort");
	char path[SRC_PATH_MAX], val[128];
	long num;

	src_path(path, "%s.targetPort", base);
	if (v && cJSON_IsString(v)) {
		if (!iana_svc_name_ok(v->valuestring)) {
			src_error(x, path, "%s is not a port name (IANA service name)",
				  src_value_text(v, val, sizeof(val)));
			return NULL;
		}
		return sp_xstrdup(v->valuestring);
	}
	if (v && !src_get_int(x, p, base, "targetPort", 0, 65535, "is not a port", &num))
		return NULL;
	/* The API server defaults a missing or zero targetPort to the port. */
	return sp_xasprintf("%ld", v && num ? num : port);
}

static bool read_protocol(struct src_ctx *x, const cJSON *p, const char *base, uint8_t *out)
{
	char path[SRC_PATH_MAX], val[128];
	const char *proto;

	*out = IPPROTO_TCP;
	if (!src_get_string(x, p, base, "protocol", &proto))
		return src_get(p, "protocol") == NULL;
	*out = sp_proto_parse(proto);
	if (*out)
		return true;
	src_path(path, "%s.protocol", base);
	src_error(x, path, "%s is not one of TCP, UDP, SCTP",
		  src_string_text(proto, val, sizeof(val)));
	return false;
}

static void check_port_unique(struct src_ctx *x, const struct sp_service *s, size_t i)
{
	const struct sp_service_port *p = &s->ports[i];
	char path[SRC_PATH_MAX], val[128];

	for (size_t k = 0; k < i; k++) {
		const struct sp_service_port *q = &s->ports[k];

		if (*p->name && !strcmp(p->name, q->name)) {
			src_path(path, "spec.ports[%zu].name", i);
			src_error(x, path, "%s is a duplicate of spec.ports[%zu].name",
				  src_string_text(p->name, val, sizeof(val)), k);
		}
		if (p->port && p->protocol == q->protocol && p->port == q->port) {
			src_path(path, "spec.ports[%zu]", i);
			src_error(x, path, "%s/%u is a duplicate of spec.ports[%zu]",
				  sp_proto_name(p->protocol), p->port, k);
		}
		if (p->node_port && p->protocol == q->protocol && p->node_port == q->node_port) {
			src_path(path, "spec.ports[%zu].nodePort", i);
			src_error(x, path, "%u is a duplicate of spec.ports[%zu].nodePort",
				  p->node_port, k);
		}
	}
}

static void read_port(struct src_ctx *x, struct sp_service *s, const cJSON *p, size_t i,
		      size_t count)
{
	struct sp_service_port *sp = &s->ports[s->n_ports];
	char base[SRC_PATH_MAX], path[SRC_PATH_MAX];
	const char *name = NULL;
	long port = 0, node_port = 0;

	src_path(base, "spec.ports[%zu]", i);
	if (!cJSON_IsObject(p)) {
		char val[128];

		src_error(x, base, "%s is not an object", src_value_text(p, val, sizeof(val)));
		return;
	}
	src_path(path, "%s.name", base);
	if (!src_get_string(x, p, base, "name", &name) && src_get(p, "name"))
		return; /* not a string: reported */
	if (name && *name && !src_check_dns_label(x, name, path))
		return;
	if ((!name || !*name) && count > 1)
		src_error(x, path, "required value is missing (the Service has %zu ports)", count);
	read_protocol(x, p, base, &sp->protocol);
	if (!src_get_int(x, p, base, "port", 1, 65535, "is not a port", &port) &&
	    !src_get(p, "port")) {
		src_path(path, "%s.port", base);
		src_error(x, path, "required value is missing");
	}
	if (src_get_int(x, p, base, "nodePort", 0, 65535, "is not a port", &node_port) &&
	    node_port && (s->type == SP_SVC_CLUSTER_IP || s->type == SP_SVC_EXTERNAL_NAME)) {
		src_path(path, "%s.nodePort", base);
		src_error(x, path, "%ld may not be used when spec.type is %s", node_port,
			  sp_service_type_name(s->type));
	}
	sp->name = sp_xstrdup(name ? name : "");
	sp->port = (uint16_t)port;
	sp->node_port = (uint16_t)node_port;
	sp->target_port = read_target_port(x, p, base, port);
	s->n_ports++;
	check_port_unique(x, s, s->n_ports - 1);
}

static void read_ports(struct src_ctx *x, const cJSON *spec, struct sp_service *s)
{
	const cJSON *ports, *p;
	size_t n, i = 0;

	if (!src_get_array(x, spec, "spec", "ports", &ports))
		return;
	n = (size_t)cJSON_GetArraySize(ports);
	s->ports = sp_xcalloc(n ? n : 1, sizeof(*s->ports));
	cJSON_ArrayForEach(p, ports)
	{
		read_port(x, s, p, i++, n);
	}
}

/* The API server refuses link-local external IPs on top of the special
 * ones. */
static bool is_link_local(const struct sp_addr *a)
{
	if (a->family == AF_INET)
		return a->u.bytes[0] == 169 && a->u.bytes[1] == 254;
	return a->family == AF_INET6 && a->u.bytes[0] == 0xfe && (a->u.bytes[1] & 0xc0) == 0x80;
}

static void read_external_ips(struct src_ctx *x, const cJSON *spec, struct sp_service *s)
{
	const cJSON *ips, *it;
	char path[SRC_PATH_MAX], val[128];
	size_t i = 0;

	if (!src_get_array(x, spec, "spec", "externalIPs", &ips))
		return;
	s->external_ips = sp_xcalloc((size_t)cJSON_GetArraySize(ips) + 1, sizeof(struct sp_addr));
	cJSON_ArrayForEach(it, ips)
	{
		struct sp_addr a;

		src_path(path, "spec.externalIPs[%zu]", i++);
		if (!src_parse_addr(x, it, path, &a))
			continue;
		if (sp_addr_is_special(&a) || is_link_local(&a)) {
			src_error(x, path,
				  "%s is not a usable external IP (unspecified, loopback, "
				  "link-local, multicast or broadcast)",
				  src_value_text(it, val, sizeof(val)));
			continue;
		}
		s->external_ips[s->n_external_ips++] = a;
	}
}

static void read_policies(struct src_ctx *x, const cJSON *spec, struct sp_service *s)
{
	static const char *const policies[] = {"Cluster", "Local"};
	static const char *const affinities[] = {"None", "ClientIP"};
	const cJSON *cfg, *cip;
	long timeout = SP_AFFINITY_DEFAULT_TIMEOUT;

	s->external_policy_local =
		read_enum(x, spec, "externalTrafficPolicy", policies, 2, "Cluster, Local") == 1;
	s->internal_policy_local =
		read_enum(x, spec, "internalTrafficPolicy", policies, 2, "Cluster, Local") == 1;
	s->affinity_client_ip =
		read_enum(x, spec, "sessionAffinity", affinities, 2, "None, ClientIP") == 1;
	if (src_get_object(x, spec, "spec", "sessionAffinityConfig", &cfg) &&
	    src_get_object(x, cfg, "spec.sessionAffinityConfig", "clientIP", &cip))
		src_get_int(x, cip, "spec.sessionAffinityConfig.clientIP", "timeoutSeconds", 1,
			    SP_AFFINITY_MAX_TIMEOUT, "is not between 1 and 86400 seconds",
			    &timeout);
	s->affinity_timeout = (uint32_t)timeout;
}

static void read_source_ranges(struct src_ctx *x, const cJSON *spec, struct sp_service *s)
{
	const cJSON *ranges, *it;
	char path[SRC_PATH_MAX], val[128];
	size_t i = 0;

	if (!src_get_array(x, spec, "spec", "loadBalancerSourceRanges", &ranges))
		return;
	s->source_ranges =
		sp_xcalloc((size_t)cJSON_GetArraySize(ranges) + 1, sizeof(*s->source_ranges));
	cJSON_ArrayForEach(it, ranges)
	{
		src_path(path, "spec.loadBalancerSourceRanges[%zu]", i++);
		if (!src_is_string(x, it, path))
			continue;
		if (!src_parse_cidr_loose(it->valuestring, &s->source_ranges[s->n_source_ranges]))
			src_error(x, path, "%s is not a CIDR",
				  src_value_text(it, val, sizeof(val)));
		else
			s->n_source_ranges++;
	}
}

static void read_lb_status(struct src_ctx *x, const cJSON *obj, struct sp_service *s)
{
	static const char *const modes[] = {"VIP", "Proxy"};
	const cJSON *status, *lb, *ingress, *it;
	char base[SRC_PATH_MAX], path[SRC_PATH_MAX], val[128];
	size_t i = 0;

	if (!src_get_object(x, obj, "", "status", &status) ||
	    !src_get_object(x, status, "status", "loadBalancer", &lb) ||
	    !src_get_array(x, lb, "status.loadBalancer", "ingress", &ingress))
		return;
	s->lb_ingress = sp_xcalloc((size_t)cJSON_GetArraySize(ingress) + 1, sizeof(*s->lb_ingress));
	cJSON_ArrayForEach(it, ingress)
	{
		struct sp_lb_ingress *in = &s->lb_ingress[s->n_lb_ingress];
		const char *hostname, *mode;
		const cJSON *ip;

		src_path(base, "status.loadBalancer.ingress[%zu]", i++);
		if (!cJSON_IsObject(it)) {
			src_error(x, base, "%s is not an object",
				  src_value_text(it, val, sizeof(val)));
			continue;
		}
		src_get_string(x, it, base, "hostname", &hostname);
		if (src_get_string(x, it, base, "ipMode", &mode) &&
		    !one_of(mode, modes, SP_ARRAY_SIZE(modes))) {
			src_path(path, "%s.ipMode", base);
			src_error(x, path, "%s is not one of VIP, Proxy",
				  src_string_text(mode, val, sizeof(val)));
		}
		ip = src_get(it, "ip");
		if (!ip || (cJSON_IsString(ip) && !*ip->valuestring))
			continue; /* hostname only: nothing for a node to capture */
		src_path(path, "%s.ip", base);
		if (!src_parse_addr(x, ip, path, &in->ip))
			continue;
		in->ip_mode_proxy = mode && !strcmp(mode, "Proxy");
		s->n_lb_ingress++;
	}
}

static void read_metadata_flags(struct src_ctx *x, const cJSON *obj, struct sp_service *s)
{
	const char *v;
	char val[128];
	const char *proxy_path = "metadata.labels[" SP_LABEL_SERVICE_PROXY_NAME "]";

	v = src_get_label(x, obj, "annotations", SP_ANNOTATION_ELB_PASS_THROUGH);
	s->elb_pass_through = v && !strcmp(v, "true");
	v = src_get_label(x, obj, "annotations", SP_ANNOTATION_IPVS_SCHEDULER);
	if (v && one_of(v, ipvs_schedulers, SP_ARRAY_SIZE(ipvs_schedulers)))
		s->ipvs_scheduler = sp_xstrdup(v);
	else if (v)
		/* Our own annotation: a typo must not take the Service down. */
		sp_diag_warn(x->diag,
			     "%s: %s %s: metadata.annotations[%s]: %s is not an IPVS scheduler; "
			     "using the node's",
			     x->origin, x->kind, x->ident, SP_ANNOTATION_IPVS_SCHEDULER,
			     src_string_text(v, val, sizeof(val)));
	v = src_get_label(x, obj, "labels", SP_LABEL_SERVICE_PROXY_NAME);
	if (v && src_check_label_value(x, v, proxy_path))
		s->proxy_name = sp_xstrdup(v);
	if (src_get_label(x, obj, "labels", SP_LABEL_HEADLESS))
		s->headless = true;
}

static void check_addresses_present(struct src_ctx *x, const cJSON *spec,
				    const struct sp_service *s)
{
	if (s->type == SP_SVC_EXTERNAL_NAME) {
		if (s->n_cluster_ips)
			src_error(x, "spec.clusterIP", "must be empty for type ExternalName");
		return;
	}
	if (!s->n_cluster_ips && !s->headless)
		src_error(x, "spec.clusterIP",
			  "required value is missing (no cluster IP allocated)");
	if (!s->n_ports && !s->headless && !src_get(spec, "ports"))
		src_error(x, "spec.ports", "required value is missing");
}

int src_read_service(struct sp_cluster *c, struct src_ctx *x, const cJSON *obj)
{
	struct sp_service *s = sp_cluster_add_service(c);
	const char *ns, *name;
	const cJSON *spec = NULL;
	long hc = 0;

	x->kind = "Service";
	if (src_read_metadata(x, obj, true, &ns, &name) &&
	    src_check_dns1035_label(x, name, "metadata.name")) {
		s->namespace = sp_xstrdup(ns);
		s->name = sp_xstrdup(name);
	}
	s->origin = sp_xstrdup(x->origin);
	if (!src_get_object(x, obj, "", "spec", &spec) && !x->n_errors)
		src_error(x, "spec", "required value is missing");
	if (spec) {
		unsigned before = x->n_errors;

		read_type(x, spec, s);
		read_cluster_ips(x, spec, s);
		read_ip_families(x, spec, s);
		read_metadata_flags(x, obj, s);
		read_ports(x, spec, s);
		read_external_ips(x, spec, s);
		read_policies(x, spec, s);
		read_source_ranges(x, spec, s);
		if (src_get_int(x, spec, "spec", "healthCheckNodePort", 0, 65535, "is not a port",
				&hc))
			s->health_check_node_port = (uint16_t)hc;
		read_lb_status(x, obj, s);
		if (x->n_errors == before)
			check_addresses_present(x, spec, s);
	}
	if (x->n_errors || !s->name) {
		sp_cluster_drop_last_service(c);
		return 1;
	}
	return 0;
}
