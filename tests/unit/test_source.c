/* The Kubernetes JSON reader: every field kube-proxy acts on, every
 * validation rule with its exact message, the realistic kubectl dump, and
 * hostile input that must neither crash nor be half-read. */
#include <check.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "svcproxy/diag.h"
#include "svcproxy/model.h"
#include "svcproxy/source.h"

static const char base_service[] =
	"{\"apiVersion\":\"v1\",\"kind\":\"Service\","
	"\"metadata\":{\"name\":\"web\",\"namespace\":\"default\",\"labels\":{},"
	"\"annotations\":{},\"managedFields\":[{\"manager\":\"kubectl\"}]},"
	"\"spec\":{\"type\":\"LoadBalancer\",\"clusterIP\":\"10.96.0.10\","
	"\"clusterIPs\":[\"10.96.0.10\"],\"ipFamilies\":[\"IPv4\"],"
	"\"ports\":[{\"name\":\"http\",\"protocol\":\"TCP\",\"port\":80,\"targetPort\":8080,"
	"\"nodePort\":30080},"
	"{\"name\":\"dns\",\"protocol\":\"UDP\",\"port\":53,\"targetPort\":\"dns\","
	"\"nodePort\":30053}],"
	"\"externalIPs\":[\"192.0.2.10\"],\"externalTrafficPolicy\":\"Local\","
	"\"internalTrafficPolicy\":\"Cluster\",\"sessionAffinity\":\"ClientIP\","
	"\"sessionAffinityConfig\":{\"clientIP\":{\"timeoutSeconds\":300}},"
	"\"loadBalancerSourceRanges\":[\" 203.0.113.0/24 \",\"10.1.2.3/8\"],"
	"\"healthCheckNodePort\":32000},"
	"\"status\":{\"loadBalancer\":{\"ingress\":[{\"ip\":\"198.51.100.7\",\"ipMode\":\"VIP\"},"
	"{\"ip\":\"198.51.100.8\",\"ipMode\":\"Proxy\"},{\"hostname\":\"lb.example.com\"}]}}}";

static const char base_slice[] =
	"{\"apiVersion\":\"discovery.k8s.io/v1\",\"kind\":\"EndpointSlice\","
	"\"metadata\":{\"name\":\"web-abc\",\"namespace\":\"default\","
	"\"labels\":{\"kubernetes.io/service-name\":\"web\"}},"
	"\"addressType\":\"IPv4\","
	"\"endpoints\":[{\"addresses\":[\"10.244.1.5\",\"10.244.1.50\"],"
	"\"conditions\":{\"ready\":true,\"serving\":true,\"terminating\":false},"
	"\"nodeName\":\"node-a\",\"zone\":\"z1\",\"hints\":{\"forZones\":[{\"name\":\"z1\"},"
	"{\"name\":\"z2\"}]},\"targetRef\":{\"kind\":\"Pod\",\"name\":\"web-1\"}},"
	"{\"addresses\":[\"10.244.2.6\"],\"conditions\":{\"ready\":false,\"terminating\":true},"
	"\"nodeName\":\"node-b\"},"
	"{\"addresses\":[\"10.244.3.7\"]}],"
	"\"ports\":[{\"name\":\"http\",\"protocol\":\"TCP\",\"port\":8080},"
	"{\"name\":\"dns\",\"protocol\":\"UDP\",\"port\":53},{\"name\":\"unset\"}]}";

static const char base_node[] =
	"{\"apiVersion\":\"v1\",\"kind\":\"Node\",\"metadata\":{\"name\":\"node-a\"},"
	"\"spec\":{\"podCIDR\":\"10.244.1.0/24\",\"podCIDRs\":[\"10.244.1.0/24\",\"fd00:1::/64\"]},"
	"\"status\":{\"addresses\":[{\"type\":\"Hostname\",\"address\":\"node-a\"},"
	"{\"type\":\"ExternalIP\",\"address\":\"203.0.113.5\"},"
	"{\"type\":\"InternalIP\",\"address\":\"10.0.0.5\"},"
	"{\"type\":\"InternalIP\",\"address\":\"fd00::5\"}]}}";

static const char *data_dir(void)
{
	static char dir[PATH_MAX];
	const char *top = getenv("top_srcdir");

	snprintf(dir, sizeof(dir), "%s/tests/data/source", top ? top : "..");
	return dir;
}

static int read_text(struct sp_cluster *c, struct sp_diag *d, const char *text)
{
	return sp_source_read_buffer(c, "svc.json", text, strlen(text), NULL, d);
}

static void dump_diag(const struct sp_diag *d)
{
	for (size_t i = 0; i < d->n_msgs; i++)
		fprintf(stderr, "  diag: %s\n", d->msgs[i].text);
}

/* ---- patching a base object: "spec.ports[1].port" = JSON value ---- */

struct step {
	char key[128];
	long index; /* -1: key */
};

static size_t split_path(const char *p, struct step *steps, size_t max)
{
	size_t n = 0;

	while (*p && n < max) {
		struct step *s = &steps[n++];
		size_t len;

		if (*p == '.')
			p++;
		s->index = -1;
		if (*p == '[') {
			const char *end = strchr(p, ']');

			len = (size_t)(end - p - 1);
			memcpy(s->key, p + 1, len);
			s->key[len] = '\0';
			if (s->key[0] >= '0' && s->key[0] <= '9')
				s->index = atol(s->key);
			p = end + 1;
			continue;
		}
		len = strcspn(p, ".[");
		memcpy(s->key, p, len);
		s->key[len] = '\0';
		p += len;
	}
	return n;
}

/* value NULL deletes; objects on the way are created. */
static void patch(cJSON *root, const char *path, const char *value)
{
	struct step steps[16];
	size_t n = split_path(path, steps, 16);
	cJSON *cur = root, *v;

	for (size_t i = 0; i + 1 < n; i++) {
		cJSON *next = steps[i].index >= 0
				      ? cJSON_GetArrayItem(cur, (int)steps[i].index)
				      : cJSON_GetObjectItemCaseSensitive(cur, steps[i].key);

		if (!next) {
			ck_assert_int_lt(steps[i].index, 0);
			next = cJSON_AddObjectToObject(cur, steps[i].key);
		}
		cur = next;
	}
	if (!value) {
		if (steps[n - 1].index >= 0)
			cJSON_DeleteItemFromArray(cur, (int)steps[n - 1].index);
		else
			cJSON_DeleteItemFromObjectCaseSensitive(cur, steps[n - 1].key);
		return;
	}
	v = cJSON_Parse(value);
	ck_assert_msg(v != NULL, "test value %s", value);
	if (steps[n - 1].index >= 0)
		ck_assert(cJSON_ReplaceItemInArray(cur, (int)steps[n - 1].index, v));
	else if (cJSON_GetObjectItemCaseSensitive(cur, steps[n - 1].key))
		cJSON_ReplaceItemInObjectCaseSensitive(cur, steps[n - 1].key, v);
	else
		cJSON_AddItemToObject(cur, steps[n - 1].key, v);
}

#define DEL NULL

struct bad_case {
	const char *base;
	const char *path1, *value1;
	const char *path2, *value2;
	const char *message;
};

static const struct bad_case bad_cases[] = {
	{base_service, "spec.ports[1].port", "70000", NULL, NULL,
	 "svc.json: Service default/web: spec.ports[1].port: 70000 is not a port"},
	{base_service, "spec.ports[0].port", "0", NULL, NULL,
	 "svc.json: Service default/web: spec.ports[0].port: 0 is not a port"},
	{base_service, "spec.ports[0].port", "80.5", NULL, NULL,
	 "spec.ports[0].port: 80.5 is not a port"},
	{base_service, "spec.ports[0].port", "\"80\"", NULL, NULL,
	 "spec.ports[0].port: \"80\" is not an integer"},
	{base_service, "spec.ports[0].port", DEL, NULL, NULL,
	 "spec.ports[0].port: required value is missing"},
	{base_service, "spec.ports[0].nodePort", "70000", NULL, NULL,
	 "spec.ports[0].nodePort: 70000 is not a port"},
	{base_service, "spec.ports[1].name", "\"http\"", NULL, NULL,
	 "spec.ports[1].name: \"http\" is a duplicate of spec.ports[0].name"},
	{base_service, "spec.ports[1]", "{\"name\":\"b\",\"port\":80}", NULL, NULL,
	 "spec.ports[1]: TCP/80 is a duplicate of spec.ports[0]"},
	{base_service, "spec.ports[1].protocol", "\"TCP\"", "spec.ports[1].nodePort", "30080",
	 "spec.ports[1].nodePort: 30080 is a duplicate of spec.ports[0].nodePort"},
	{base_service, "spec.ports[0].protocol", "\"ICMP\"", NULL, NULL,
	 "spec.ports[0].protocol: \"ICMP\" is not one of TCP, UDP, SCTP"},
	{base_service, "spec.ports[1].name", DEL, NULL, NULL,
	 "spec.ports[1].name: required value is missing (the Service has 2 ports)"},
	{base_service, "spec.ports[1].name", "\"\"", NULL, NULL,
	 "spec.ports[1].name: required value is missing (the Service has 2 ports)"},
	{base_service, "spec.ports[0].name", "5", NULL, NULL,
	 "spec.ports[0].name: 5 is not a string"},
	{base_service, "spec.ports[0].name", "\"Http\"", NULL, NULL,
	 "spec.ports[0].name: \"Http\" is not a valid name"},
	{base_service, "spec.ports[0].targetPort", "\"HTTP_x\"", NULL, NULL,
	 "spec.ports[0].targetPort: \"HTTP_x\" is not a port name (IANA service name)"},
	{base_service, "spec.ports[0].targetPort", "70000", NULL, NULL,
	 "spec.ports[0].targetPort: 70000 is not a port"},
	{base_service, "spec.type", "\"ClusterIP\"", NULL, NULL,
	 "spec.ports[0].nodePort: 30080 may not be used when spec.type is ClusterIP"},
	{base_service, "spec.ports", "\"x\"", NULL, NULL, "spec.ports: \"x\" is not an array"},
	{base_service, "spec.ports[0]", "7", NULL, NULL, "spec.ports[0]: 7 is not an object"},
	{base_service, "spec.ports", DEL, NULL, NULL, "spec.ports: required value is missing"},
	{base_service, "spec.clusterIP", "\"10.96.0.11\"", NULL, NULL,
	 "spec.clusterIPs[0]: \"10.96.0.10\" does not match spec.clusterIP \"10.96.0.11\""},
	{base_service, "spec.clusterIP", "\"10.96.0.300\"", "spec.clusterIPs", "[\"10.96.0.300\"]",
	 "spec.clusterIPs[0]: \"10.96.0.300\" is not an IP address"},
	{base_service, "spec.clusterIP", DEL, "spec.clusterIPs", DEL,
	 "spec.clusterIP: required value is missing"},
	{base_service, "spec.clusterIP", "[]", NULL, NULL, "spec.clusterIP: [...] is not a string"},
	{base_service, "spec.clusterIPs", "[\"10.96.0.10\",\"10.96.0.11\"]", NULL, NULL,
	 "spec.clusterIPs[1]: \"10.96.0.11\": a second IPv4 cluster IP"},
	{base_service, "spec.clusterIPs", "[\"10.96.0.10\",\"fd00::1\",\"fd00::2\"]", NULL, NULL,
	 "spec.clusterIPs: 3 addresses"},
	{base_service, "spec.ipFamilies", "[\"IPv6\"]", NULL, NULL,
	 "spec.clusterIPs[0]: \"10.96.0.10\" is IPv4 but spec.ipFamilies[0] is IPv6"},
	{base_service, "spec.ipFamilies", "[\"IPv5\"]", NULL, NULL,
	 "spec.ipFamilies[0]: \"IPv5\" is not one of IPv4, IPv6"},
	{base_service, "spec.ipFamilies", "[\"IPv4\",\"IPv4\"]", NULL, NULL,
	 "spec.ipFamilies[1]: \"IPv4\" is listed twice"},
	{base_service, "spec.type", "\"Foo\"", NULL, NULL,
	 "spec.type: \"Foo\" is not one of ClusterIP, NodePort, LoadBalancer, ExternalName"},
	{base_service, "spec.externalTrafficPolicy", "\"Global\"", NULL, NULL,
	 "spec.externalTrafficPolicy: \"Global\" is not one of Cluster, Local"},
	{base_service, "spec.internalTrafficPolicy", "\"local\"", NULL, NULL,
	 "spec.internalTrafficPolicy: \"local\" is not one of Cluster, Local"},
	{base_service, "spec.sessionAffinity", "\"Sticky\"", NULL, NULL,
	 "spec.sessionAffinity: \"Sticky\" is not one of None, ClientIP"},
	{base_service, "spec.sessionAffinityConfig.clientIP.timeoutSeconds", "86401", NULL, NULL,
	 "spec.sessionAffinityConfig.clientIP.timeoutSeconds: 86401 is not between 1 and 86400"},
	{base_service, "spec.sessionAffinityConfig.clientIP.timeoutSeconds", "0", NULL, NULL,
	 "spec.sessionAffinityConfig.clientIP.timeoutSeconds: 0 is not between 1 and 86400"},
	{base_service, "spec.loadBalancerSourceRanges", "[\"10.0.0.0/33\"]", NULL, NULL,
	 "spec.loadBalancerSourceRanges[0]: \"10.0.0.0/33\" is not a CIDR"},
	{base_service, "spec.externalIPs", "[\"not-an-ip\"]", NULL, NULL,
	 "spec.externalIPs[0]: \"not-an-ip\" is not an IP address"},
	{base_service, "spec.externalIPs", "[\"127.0.0.1\"]", NULL, NULL,
	 "spec.externalIPs[0]: \"127.0.0.1\" is not a usable external IP"},
	{base_service, "spec.externalIPs", "[\"192.0.2.1\",\"fe80::1\"]", NULL, NULL,
	 "spec.externalIPs[1]: \"fe80::1\" is not a usable external IP"},
	{base_service, "spec.externalIPs", "[5]", NULL, NULL,
	 "spec.externalIPs[0]: 5 is not a string"},
	{base_service, "spec.healthCheckNodePort", "-1", NULL, NULL,
	 "spec.healthCheckNodePort: -1 is not a port"},
	{base_service, "status.loadBalancer.ingress[0].ip", "\"1.2.3\"", NULL, NULL,
	 "status.loadBalancer.ingress[0].ip: \"1.2.3\" is not an IP address"},
	{base_service, "status.loadBalancer.ingress[0].ipMode", "\"Direct\"", NULL, NULL,
	 "status.loadBalancer.ingress[0].ipMode: \"Direct\" is not one of VIP, Proxy"},
	{base_service, "metadata.name", DEL, NULL, NULL,
	 "svc.json: Service default/?: metadata.name: required value is missing"},
	{base_service, "metadata.namespace", DEL, NULL, NULL,
	 "svc.json: Service ?/web: metadata.namespace: required value is missing"},
	{base_service, "metadata.name", "\"Web\"", NULL, NULL,
	 "Service default/Web: metadata.name: \"Web\" is not a valid name"},
	{base_service, "metadata.name", "\"w\\u0001b\"", NULL, NULL,
	 "metadata.name: \"w\\x01b\" contains a control character"},
	{base_service, "metadata.name", "42", NULL, NULL, "metadata.name: 42 is not a string"},
	{base_service, "metadata", DEL, NULL, NULL, "metadata: required value is missing"},
	{base_service, "spec", "\"x\"", NULL, NULL, "spec: \"x\" is not an object"},
	{base_service, "apiVersion", "\"v2\"", NULL, NULL,
	 "Service default/web: apiVersion: \"v2\" is not supported for Service (only v1)"},
	{base_service, "kind", "3", NULL, NULL, "kind: 3 is not a string"},
	{base_service, "metadata.labels[service.kubernetes.io/service-proxy-name]",
	 "\"bad value!\"", NULL, NULL,
	 "metadata.labels[service.kubernetes.io/service-proxy-name]: \"bad value!\" is not a "
	 "valid label value"},
	{base_service, "metadata.annotations[kubernetes.io/elb.pass-through]", "true", NULL, NULL,
	 "metadata.annotations[kubernetes.io/elb.pass-through]: true is not a string"},
	{base_service, "metadata.labels", "[\"a\"]", NULL, NULL,
	 "Service default/web: metadata.labels: [...] is not an object"},
	{base_slice, "metadata.annotations", "\"a=b\"", NULL, NULL,
	 "EndpointSlice default/web-abc: metadata.annotations: \"a=b\" is not an object"},
	{base_slice, "addressType", "\"IPv5\"", NULL, NULL,
	 "svc.json: EndpointSlice default/web-abc: addressType: \"IPv5\" is not one of IPv4, "
	 "IPv6, FQDN"},
	{base_slice, "addressType", DEL, NULL, NULL, "addressType: required value is missing"},
	{base_slice, "endpoints[0].addresses", "[\"fd00::1\"]", NULL, NULL,
	 "endpoints[0].addresses[0]: \"fd00::1\" is IPv6 but addressType is IPv4"},
	{base_slice, "endpoints[1].addresses", "[]", NULL, NULL,
	 "endpoints[1].addresses: must contain at least one address"},
	{base_slice, "endpoints[2].addresses", DEL, NULL, NULL,
	 "endpoints[2].addresses: required value is missing"},
	{base_slice, "endpoints[0].addresses", "[\"10.1.1.\"]", NULL, NULL,
	 "endpoints[0].addresses[0]: \"10.1.1.\" is not an IP address"},
	{base_slice, "endpoints[0].conditions.ready", "\"yes\"", NULL, NULL,
	 "endpoints[0].conditions.ready: \"yes\" is not a boolean"},
	{base_slice, "endpoints[0].nodeName", "\"Node A\"", NULL, NULL,
	 "endpoints[0].nodeName: \"Node A\" is not a valid name"},
	{base_slice, "endpoints[0].hints.forZones[0]", "\"z1\"", NULL, NULL,
	 "endpoints[0].hints.forZones[0]: \"z1\" is not an object"},
	{base_slice, "endpoints", "{}", NULL, NULL, "endpoints: {...} is not an array"},
	{base_slice, "ports[0].port", "70000", NULL, NULL, "ports[0].port: 70000 is not a port"},
	{base_slice, "ports[1].name", "\"http\"", NULL, NULL,
	 "ports[1].name: \"http\" is a duplicate of ports[0].name"},
	{base_slice, "ports[0].protocol", "\"FOO\"", NULL, NULL,
	 "ports[0].protocol: \"FOO\" is not one of TCP, UDP, SCTP"},
	{base_slice, "metadata.labels[kubernetes.io/service-name]", DEL, NULL, NULL,
	 "metadata.labels[kubernetes.io/service-name]: required value is missing"},
	{base_slice, "apiVersion", "\"discovery.k8s.io/v1beta1\"", NULL, NULL,
	 "EndpointSlice default/web-abc: apiVersion: \"discovery.k8s.io/v1beta1\" is not "
	 "supported for EndpointSlice (only discovery.k8s.io/v1)"},
	{base_node, "status.addresses[2].address", "\"10.0.0.500\"", NULL, NULL,
	 "svc.json: Node node-a: status.addresses[2].address: \"10.0.0.500\" is not an IP "
	 "address"},
	{base_node, "spec.podCIDRs[1]", "\"fd00:1::/129\"", NULL, NULL,
	 "spec.podCIDRs[1]: \"fd00:1::/129\" is not a CIDR"},
	{base_node, "metadata.name", DEL, NULL, NULL,
	 "svc.json: Node ?: metadata.name: required value is missing"},
	{base_node, "status.addresses", "\"x\"", NULL, NULL,
	 "status.addresses: \"x\" is not an array"},
};

static size_t n_objects(const struct sp_cluster *c)
{
	return c->n_services + c->n_slices + c->n_nodes;
}

START_TEST(invalid_object_is_skipped_with_one_clear_line)
{
	const struct bad_case *bc = &bad_cases[_i];
	struct sp_cluster c;
	struct sp_diag d;
	cJSON *obj = cJSON_Parse(bc->base);
	char *text;
	int ret;

	ck_assert_ptr_nonnull(obj);
	patch(obj, bc->path1, bc->value1);
	if (bc->path2)
		patch(obj, bc->path2, bc->value2);
	/* A valid object next to it must still be read. */
	text = cJSON_PrintUnformatted(obj);
	{
		char *list = NULL;

		ck_assert_int_gt(asprintf(&list,
					  "{\"apiVersion\":\"v1\",\"kind\":\"List\",\"items\":[%s,"
					  "%s]}",
					  text, base_node),
				 0);
		free(text);
		text = list;
	}
	sp_cluster_init(&c);
	sp_diag_init(&d);
	ret = read_text(&c, &d, text);
	if (!sp_diag_has(&d, SP_SEV_ERROR, bc->message) || ret != 1)
		dump_diag(&d);
	ck_assert_msg(ret == 1, "case %d: ret %d", _i, ret);
	ck_assert_msg(sp_diag_has(&d, SP_SEV_ERROR, bc->message), "case %d: want %s", _i,
		      bc->message);
	for (size_t i = 0; i < d.n_msgs; i++)
		ck_assert_ptr_null(strchr(d.msgs[i].text, '\n'));
	/* Only the valid node is left. */
	ck_assert_uint_eq(n_objects(&c), 1);
	ck_assert_uint_eq(c.n_nodes, 1);
	sp_cluster_free(&c);
	sp_diag_free(&d);
	free(text);
	cJSON_Delete(obj);
}
END_TEST

static const struct sp_service *read_one_service(struct sp_cluster *c, struct sp_diag *d,
						 const char *text)
{
	int ret = read_text(c, d, text);

	if (ret != 0 || c->n_services != 1)
		dump_diag(d);
	ck_assert_int_eq(ret, 0);
	ck_assert_uint_eq(c->n_services, 1);
	return &c->services[0];
}

static void assert_addr(const struct sp_addr *a, const char *want)
{
	char buf[SP_ADDRSTRLEN];

	ck_assert_str_eq(sp_addr_format(a, buf), want);
}

static void assert_cidr(const struct sp_cidr *c, const char *want)
{
	char buf[SP_CIDRSTRLEN];

	ck_assert_str_eq(sp_cidr_format(c, buf), want);
}

START_TEST(service_every_field)
{
	struct sp_cluster c;
	struct sp_diag d;
	const struct sp_service *s;
	cJSON *obj = cJSON_Parse(base_service);
	char *text;

	patch(obj, "metadata.labels[service.kubernetes.io/service-proxy-name]", "\"other\"");
	patch(obj, "metadata.annotations[kubernetes.io/elb.pass-through]", "\"true\"");
	patch(obj, "metadata.annotations[svcproxy.io/ipvs-scheduler]", "\"wlc\"");
	text = cJSON_PrintUnformatted(obj);
	sp_cluster_init(&c);
	sp_diag_init(&d);
	s = read_one_service(&c, &d, text);
	ck_assert_uint_eq(d.n_msgs, 0);
	ck_assert_str_eq(s->namespace, "default");
	ck_assert_str_eq(s->name, "web");
	ck_assert_str_eq(s->origin, "svc.json");
	ck_assert_int_eq(s->type, SP_SVC_LOAD_BALANCER);
	ck_assert(!s->headless);
	ck_assert_uint_eq(s->n_cluster_ips, 1);
	assert_addr(&s->cluster_ips[0], "10.96.0.10");
	ck_assert_int_eq(s->ip_families[0], AF_INET);
	ck_assert_int_eq(s->ip_families[1], 0);
	ck_assert_uint_eq(s->n_ports, 2);
	ck_assert_str_eq(s->ports[0].name, "http");
	ck_assert_uint_eq(s->ports[0].protocol, IPPROTO_TCP);
	ck_assert_uint_eq(s->ports[0].port, 80);
	ck_assert_uint_eq(s->ports[0].node_port, 30080);
	ck_assert_str_eq(s->ports[0].target_port, "8080");
	ck_assert_str_eq(s->ports[1].name, "dns");
	ck_assert_uint_eq(s->ports[1].protocol, IPPROTO_UDP);
	ck_assert_uint_eq(s->ports[1].port, 53);
	ck_assert_uint_eq(s->ports[1].node_port, 30053);
	ck_assert_str_eq(s->ports[1].target_port, "dns");
	ck_assert_uint_eq(s->n_external_ips, 1);
	assert_addr(&s->external_ips[0], "192.0.2.10");
	ck_assert(s->external_policy_local);
	ck_assert(!s->internal_policy_local);
	ck_assert(s->affinity_client_ip);
	ck_assert_uint_eq(s->affinity_timeout, 300);
	ck_assert_uint_eq(s->n_source_ranges, 2);
	assert_cidr(&s->source_ranges[0], "203.0.113.0/24");
	assert_cidr(&s->source_ranges[1], "10.0.0.0/8"); /* host bits cleared, as Go does */
	ck_assert_uint_eq(s->health_check_node_port, 32000);
	ck_assert_uint_eq(s->n_lb_ingress, 2); /* hostname-only ingress ignored */
	assert_addr(&s->lb_ingress[0].ip, "198.51.100.7");
	ck_assert(!s->lb_ingress[0].ip_mode_proxy);
	assert_addr(&s->lb_ingress[1].ip, "198.51.100.8");
	ck_assert(s->lb_ingress[1].ip_mode_proxy);
	ck_assert(s->elb_pass_through);
	ck_assert_str_eq(s->proxy_name, "other");
	ck_assert_str_eq(s->ipvs_scheduler, "wlc");
	sp_cluster_free(&c);
	sp_diag_free(&d);
	free(text);
	cJSON_Delete(obj);
}
END_TEST

START_TEST(service_defaults)
{
	static const char text[] =
		"{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"a\","
		"\"namespace\":\"ns\",\"annotations\":{\"kubernetes.io/"
		"elb.pass-through\":\"false\","
		"\"svcproxy.io/ipvs-scheduler\":\"fastest\"}},"
		"\"spec\":{\"clusterIP\":\"10.0.0.1\",\"sessionAffinity\":\"ClientIP\","
		"\"ports\":[{\"port\":80}]}}";
	struct sp_cluster c;
	struct sp_diag d;
	const struct sp_service *s;

	sp_cluster_init(&c);
	sp_diag_init(&d);
	s = read_one_service(&c, &d, text);
	ck_assert_int_eq(s->type, SP_SVC_CLUSTER_IP);
	ck_assert_uint_eq(s->n_cluster_ips, 1);
	ck_assert_int_eq(s->ip_families[0], AF_INET);
	ck_assert_str_eq(s->ports[0].name, "");
	ck_assert_uint_eq(s->ports[0].protocol, IPPROTO_TCP);
	ck_assert_str_eq(s->ports[0].target_port, "80");
	ck_assert_uint_eq(s->ports[0].node_port, 0);
	ck_assert(s->affinity_client_ip);
	ck_assert_uint_eq(s->affinity_timeout, 10800);
	ck_assert(!s->external_policy_local);
	ck_assert(!s->internal_policy_local);
	ck_assert(!s->elb_pass_through);
	ck_assert_ptr_null(s->proxy_name);
	/* Our own annotation with a typo warns and falls back; the Service stays. */
	ck_assert_ptr_null(s->ipvs_scheduler);
	ck_assert_uint_eq(d.n_errors, 0);
	ck_assert(sp_diag_has(&d, SP_SEV_WARNING, "\"fastest\" is not an IPVS scheduler"));
	sp_cluster_free(&c);
	sp_diag_free(&d);
}
END_TEST

START_TEST(service_dual_stack_headless_external_name)
{
	static const char text[] =
		"{\"kind\":\"List\",\"apiVersion\":\"v1\",\"items\":["
		"{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"ds\","
		"\"namespace\":\"ns\"},\"spec\":{\"type\":\"NodePort\",\"clusterIP\":\"fd00::10\","
		"\"clusterIPs\":[\"fd00::10\",\"10.0.0.10\"],\"ports\":[{\"port\":443,"
		"\"protocol\":\"SCTP\",\"nodePort\":30443}]}},"
		"{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"hl\","
		"\"namespace\":\"ns\"},\"spec\":{\"clusterIP\":\"None\",\"clusterIPs\":[\"None\"],"
		"\"ipFamilies\":[\"IPv6\"]}},"
		"{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"hl2\","
		"\"namespace\":\"ns\",\"labels\":{\"service.kubernetes.io/headless\":\"\"}},"
		"\"spec\":{\"clusterIP\":\"10.0.0.11\",\"ports\":[{\"port\":80}]}},"
		"{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"en\","
		"\"namespace\":\"ns\"},\"spec\":{\"type\":\"ExternalName\","
		"\"externalName\":\"x.example.com\"}},"
		"{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"cm\"}},"
		"{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"name\":\"d\"}}"
		"]}";
	struct sp_cluster c;
	struct sp_diag d;
	const struct sp_service *s;

	sp_cluster_init(&c);
	sp_diag_init(&d);
	ck_assert_int_eq(read_text(&c, &d, text), 0);
	ck_assert_uint_eq(d.n_msgs, 0);
	ck_assert_uint_eq(c.n_services, 4);
	s = &c.services[0];
	ck_assert_int_eq(s->type, SP_SVC_NODE_PORT);
	ck_assert_uint_eq(s->n_cluster_ips, 2);
	assert_addr(&s->cluster_ips[0], "fd00::10");
	assert_addr(&s->cluster_ips[1], "10.0.0.10");
	ck_assert_int_eq(s->ip_families[0], AF_INET6);
	ck_assert_int_eq(s->ip_families[1], AF_INET);
	ck_assert_uint_eq(s->ports[0].protocol, IPPROTO_SCTP);
	ck_assert_uint_eq(s->ports[0].node_port, 30443);
	s = &c.services[1];
	ck_assert(s->headless);
	ck_assert_uint_eq(s->n_cluster_ips, 0);
	ck_assert_uint_eq(s->n_ports, 0);
	ck_assert_int_eq(s->ip_families[0], AF_INET6);
	s = &c.services[2];
	ck_assert(s->headless);
	ck_assert_uint_eq(s->n_cluster_ips, 1);
	s = &c.services[3];
	ck_assert_int_eq(s->type, SP_SVC_EXTERNAL_NAME);
	ck_assert_uint_eq(s->n_cluster_ips, 0);
	sp_cluster_free(&c);
	sp_diag_free(&d);
}
END_TEST

START_TEST(slice_every_field_and_condition_defaults)
{
	struct sp_cluster c;
	struct sp_diag d;
	const struct sp_endpoint_slice *s;
	const struct sp_endpoint *e;

	sp_cluster_init(&c);
	sp_diag_init(&d);
	ck_assert_int_eq(read_text(&c, &d, base_slice), 0);
	ck_assert_uint_eq(d.n_msgs, 0);
	ck_assert_uint_eq(c.n_slices, 1);
	s = &c.slices[0];
	ck_assert_str_eq(s->namespace, "default");
	ck_assert_str_eq(s->name, "web-abc");
	ck_assert_str_eq(s->origin, "svc.json");
	ck_assert_str_eq(s->service_name, "web");
	ck_assert_int_eq(s->address_type, AF_INET);
	ck_assert_uint_eq(s->n_endpoints, 3);
	e = &s->endpoints[0];
	assert_addr(&e->addr, "10.244.1.5"); /* only the first address counts */
	ck_assert(e->ready && e->serving && !e->terminating);
	ck_assert_str_eq(e->node_name, "node-a");
	ck_assert_str_eq(e->zone, "z1");
	ck_assert_uint_eq(e->n_hint_zones, 2);
	ck_assert_str_eq(e->hint_zones[0], "z1");
	ck_assert_str_eq(e->hint_zones[1], "z2");
	ck_assert_str_eq(e->target_name, "web-1");
	e = &s->endpoints[1]; /* serving missing: follows ready */
	ck_assert(!e->ready && !e->serving && e->terminating);
	ck_assert_str_eq(e->node_name, "node-b");
	ck_assert_ptr_null(e->zone);
	ck_assert_uint_eq(e->n_hint_zones, 0);
	ck_assert_ptr_null(e->target_name);
	e = &s->endpoints[2]; /* no conditions: ready, serving, not terminating */
	ck_assert(e->ready && e->serving && !e->terminating);
	ck_assert_ptr_null(e->node_name);
	ck_assert_uint_eq(s->n_ports, 3);
	ck_assert_str_eq(s->ports[0].name, "http");
	ck_assert_uint_eq(s->ports[0].protocol, IPPROTO_TCP);
	ck_assert_uint_eq(s->ports[0].port, 8080);
	ck_assert_str_eq(s->ports[1].name, "dns");
	ck_assert_uint_eq(s->ports[1].protocol, IPPROTO_UDP);
	ck_assert_uint_eq(s->ports[1].port, 53);
	ck_assert_uint_eq(s->ports[2].port, 0); /* unset: no usable endpoint */
	sp_cluster_free(&c);
	sp_diag_free(&d);
}
END_TEST

START_TEST(slice_ipv6_and_fqdn)
{
	static const char text[] =
		"{\"kind\":\"EndpointSliceList\",\"apiVersion\":\"discovery.k8s.io/v1\","
		"\"items\":[{\"metadata\":{\"name\":\"v6\",\"namespace\":\"ns\","
		"\"labels\":{\"kubernetes.io/service-name\":\"svc\"}},\"addressType\":\"IPv6\","
		"\"endpoints\":[{\"addresses\":[\"fd00::7\"],\"conditions\":{\"ready\":false,"
		"\"serving\":true,\"terminating\":true}}],\"ports\":[{\"port\":80,\"name\":\"\"}]},"
		"{\"metadata\":{\"name\":\"fq\",\"namespace\":\"ns\","
		"\"labels\":{\"kubernetes.io/service-name\":\"svc\"}},\"addressType\":\"FQDN\","
		"\"endpoints\":[{\"addresses\":[\"db.example.com\"]}],\"ports\":null}]}";
	struct sp_cluster c;
	struct sp_diag d;

	sp_cluster_init(&c);
	sp_diag_init(&d);
	ck_assert_int_eq(read_text(&c, &d, text), 0);
	ck_assert_uint_eq(c.n_slices, 2);
	ck_assert_int_eq(c.slices[0].address_type, AF_INET6);
	assert_addr(&c.slices[0].endpoints[0].addr, "fd00::7");
	ck_assert(!c.slices[0].endpoints[0].ready);
	ck_assert(c.slices[0].endpoints[0].serving);
	ck_assert(c.slices[0].endpoints[0].terminating);
	ck_assert_str_eq(c.slices[0].ports[0].name, "");
	ck_assert_int_eq(c.slices[1].address_type, 0);
	ck_assert_uint_eq(c.slices[1].n_endpoints, 0);
	sp_cluster_free(&c);
	sp_diag_free(&d);
}
END_TEST

START_TEST(node_every_field)
{
	static const char single[] = "{\"apiVersion\":\"v1\",\"kind\":\"Node\",\"metadata\":"
				     "{\"name\":\"n2\"},\"spec\":{\"podCIDR\":\"10.244.2.0/24\"}}";
	struct sp_cluster c;
	struct sp_diag d;
	const struct sp_node *n;

	sp_cluster_init(&c);
	sp_diag_init(&d);
	ck_assert_int_eq(read_text(&c, &d, base_node), 0);
	ck_assert_int_eq(read_text(&c, &d, single), 0);
	ck_assert_uint_eq(d.n_msgs, 0);
	ck_assert_uint_eq(c.n_nodes, 2);
	n = sp_cluster_find_node(&c, "node-a");
	ck_assert_ptr_nonnull(n);
	ck_assert_uint_eq(n->n_addresses, 3); /* InternalIP first, then ExternalIP */
	assert_addr(&n->addresses[0], "10.0.0.5");
	assert_addr(&n->addresses[1], "fd00::5");
	assert_addr(&n->addresses[2], "203.0.113.5");
	ck_assert_uint_eq(n->n_pod_cidrs, 2);
	assert_cidr(&n->pod_cidrs[0], "10.244.1.0/24");
	assert_cidr(&n->pod_cidrs[1], "fd00:1::/64");
	n = sp_cluster_find_node(&c, "n2");
	ck_assert_uint_eq(n->n_addresses, 0);
	ck_assert_uint_eq(n->n_pod_cidrs, 1);
	assert_cidr(&n->pod_cidrs[0], "10.244.2.0/24");
	sp_cluster_free(&c);
	sp_diag_free(&d);
}
END_TEST

static char *data_path(const char *name)
{
	char *p = NULL;

	ck_assert_int_gt(asprintf(&p, "%s/%s", data_dir(), name), 0);
	return p;
}

START_TEST(kubectl_dump_sample)
{
	char *path = data_path("kubectl-dump.json");
	struct sp_cluster c;
	struct sp_diag d;
	const struct sp_service *s;
	char *want;

	sp_cluster_init(&c);
	sp_diag_init(&d);
	ck_assert_int_eq(sp_source_read_path(&c, path, NULL, &d), 1);
	dump_diag(&d);
	ck_assert_uint_eq(d.n_errors, 1);
	ck_assert_int_gt(asprintf(&want,
				  "%s: Service default/kubernetes: spec.clusterIPs[0]: "
				  "\"10.103.108.1\" does not match spec.clusterIP \"10.103.141.1\"",
				  path),
			 0);
	ck_assert(sp_diag_has(&d, SP_SEV_ERROR, want));
	ck_assert_uint_eq(c.n_services, 7);
	ck_assert_uint_eq(c.n_slices, 7);
	ck_assert_uint_eq(c.n_nodes, 3);
	ck_assert_ptr_null(sp_cluster_find_service(&c, "default", "kubernetes"));
	s = sp_cluster_find_service(&c, "shop", "frontend");
	ck_assert_int_eq(s->type, SP_SVC_LOAD_BALANCER);
	ck_assert(s->external_policy_local);
	ck_assert_uint_eq(s->health_check_node_port, 31007);
	ck_assert_uint_eq(s->n_lb_ingress, 1);
	assert_addr(&s->lb_ingress[0].ip, "192.168.7.200");
	ck_assert_str_eq(s->ports[0].target_port, "http");
	s = sp_cluster_find_service(&c, "shop", "checkout");
	ck_assert(s->elb_pass_through);
	s = sp_cluster_find_service(&c, "shop", "cart");
	ck_assert(s->affinity_client_ip);
	ck_assert_uint_eq(s->affinity_timeout, 600);
	assert_addr(&s->external_ips[0], "192.168.7.210");
	s = sp_cluster_find_service(&c, "shop", "catalog-headless");
	ck_assert(s->headless);
	s = sp_cluster_find_service(&c, "shop", "payments-ext");
	ck_assert_int_eq(s->type, SP_SVC_EXTERNAL_NAME);
	s = sp_cluster_find_service(&c, "mesh", "gateway");
	ck_assert_str_eq(s->proxy_name, "other-proxy");
	s = sp_cluster_find_service(&c, "kube-system", "kube-dns");
	ck_assert_uint_eq(s->n_ports, 3);
	ck_assert_ptr_nonnull(sp_cluster_find_node(&c, "worker-1"));
	free(want);
	free(path);
	sp_cluster_free(&c);
	sp_diag_free(&d);
}
END_TEST

START_TEST(directory_is_read_in_name_order)
{
	char *dir = data_path("dir");
	struct sp_cluster c;
	struct sp_diag d;

	sp_cluster_init(&c);
	sp_diag_init(&d);
	ck_assert_int_eq(sp_source_read_path(&c, dir, NULL, &d), 0);
	dump_diag(&d);
	ck_assert_uint_eq(c.n_services, 2);
	ck_assert_str_eq(c.services[0].name, "alpha"); /* 10-alpha.json before 20-beta.json */
	ck_assert_str_eq(c.services[1].name, "beta");
	ck_assert(strstr(c.services[0].origin, "/10-alpha.json"));
	ck_assert_uint_eq(c.n_slices, 1);
	ck_assert_uint_eq(c.n_nodes, 0); /* node.txt is not a *.json file */
	/* The same objects again: the first definitions win, the rest are skipped. */
	ck_assert_int_eq(sp_source_read_path(&c, dir, NULL, &d), 1);
	ck_assert_uint_eq(c.n_services, 2);
	ck_assert_uint_eq(c.n_slices, 1);
	ck_assert_uint_eq(d.n_errors, 3);
	ck_assert(sp_diag_has(
		&d, SP_SEV_ERROR,
		"/20-beta.json: Service default/beta: defined again (first read from "));
	ck_assert(sp_diag_has(&d, SP_SEV_ERROR,
			      "/10-alpha.json: EndpointSlice default/alpha-1: "
			      "defined again"));
	ck_assert_str_eq(c.services[1].name, "beta");
	free(dir);
	sp_cluster_free(&c);
	sp_diag_free(&d);
}
END_TEST

START_TEST(not_json_file_is_rejected_whole)
{
	char *dir = data_path("dir-bad");
	char *file = data_path("dir-bad/20-broken.json");
	struct sp_cluster c;
	struct sp_diag d;
	char *want;

	sp_cluster_init(&c);
	sp_diag_init(&d);
	ck_assert_int_eq(sp_source_read_path(&c, file, NULL, &d), -1);
	ck_assert_uint_eq(n_objects(&c), 0); /* its valid first object is not read either */
	ck_assert_int_gt(asprintf(&want, "%s: not JSON: parse error at line 3 column", file), 0);
	dump_diag(&d);
	ck_assert(sp_diag_has(&d, SP_SEV_ERROR, want));
	sp_diag_free(&d);
	sp_diag_init(&d);
	/* In a directory the other files are still read. */
	ck_assert_int_eq(sp_source_read_path(&c, dir, NULL, &d), -1);
	ck_assert_uint_eq(c.n_services, 2);
	ck_assert(sp_diag_has(&d, SP_SEV_ERROR, "20-broken.json: not JSON"));
	free(want);
	free(dir);
	free(file);
	sp_cluster_free(&c);
	sp_diag_free(&d);
}
END_TEST

START_TEST(rejected_texts)
{
	static const struct {
		const char *text;
		const char *message;
	} cases[] = {
		{"", "svc.json: not JSON: parse error at line 1 column 1"},
		{"   \n  ", "svc.json: not JSON: parse error at line"},
		{"{\"kind\":\"Service\"", "svc.json: not JSON"},
		{"{\"kind\":\"Service\"} {}",
		 "svc.json: not JSON: parse error at line 1 column 19"},
		{"{\"a\":1,}", "svc.json: not JSON"},
		{"kind: Service\n", "svc.json: not JSON"},
		{"[1,2]", "svc.json: the top level is not a JSON object"},
		{"42", "svc.json: the top level is not a JSON object"},
		{"{\"kind\":\"List\",\"items\":{}}", "svc.json: List: items is not an array"},
	};
	for (size_t i = 0; i < SP_ARRAY_SIZE(cases); i++) {
		struct sp_cluster c;
		struct sp_diag d;

		sp_cluster_init(&c);
		sp_diag_init(&d);
		ck_assert_int_eq(read_text(&c, &d, cases[i].text), -1);
		if (!sp_diag_has(&d, SP_SEV_ERROR, cases[i].message))
			dump_diag(&d);
		ck_assert_msg(sp_diag_has(&d, SP_SEV_ERROR, cases[i].message), "case %zu", i);
		sp_cluster_free(&c);
		sp_diag_free(&d);
	}
}
END_TEST

START_TEST(skipped_items_name_themselves)
{
	static const char text[] = "{\"kind\":\"List\",\"apiVersion\":\"v1\",\"items\":["
				   "7,{\"apiVersion\":\"v1\"},{\"kind\":\"Node\"},"
				   "{\"kind\":\"Service\",\"apiVersion\":\"v1\",\"metadata\":"
				   "{\"name\":\"a\",\"namespace\":\"b\"},\"spec\":{\"clusterIP\":"
				   "\"10.0.0.1\",\"ports\":[{\"port\":1}]}}]}";
	struct sp_cluster c;
	struct sp_diag d;

	sp_cluster_init(&c);
	sp_diag_init(&d);
	ck_assert_int_eq(read_text(&c, &d, text), 1);
	dump_diag(&d);
	ck_assert(sp_diag_has(&d, SP_SEV_ERROR, "svc.json: object items[0]: 7 is not an object"));
	ck_assert(sp_diag_has(&d, SP_SEV_ERROR,
			      "svc.json: object items[1]: kind: required value is missing"));
	ck_assert(sp_diag_has(&d, SP_SEV_ERROR,
			      "svc.json: Node items[2]: apiVersion: required value is missing"));
	ck_assert_uint_eq(c.n_services, 1);
	sp_cluster_free(&c);
	sp_diag_free(&d);
}
END_TEST

static char *nested(size_t depth)
{
	char *t = malloc(depth * 2 + 64);
	size_t o = 0;

	o += (size_t)sprintf(t, "{\"kind\":\"Service\",\"x\":");
	for (size_t i = 0; i < depth; i++)
		t[o++] = '[';
	for (size_t i = 0; i < depth; i++)
		t[o++] = ']';
	t[o++] = '}';
	t[o] = '\0';
	return t;
}

static const char text_of_list[] = "{\"kind\":\"List\",\"items\":[1,2,3,4]}";

START_TEST(limits_are_enforced)
{
	struct sp_source_limits lim;
	struct sp_cluster c;
	struct sp_diag d;
	char *deep = nested(200000);
	char *ok = nested(40);
	char *path = data_path("kubectl-dump.json");
	cJSON *obj;

	sp_source_limits_default(&lim);
	ck_assert_uint_eq(lim.max_file_bytes, 64u << 20);
	ck_assert_uint_eq(lim.max_depth, 64);
	ck_assert_uint_eq(lim.max_items, 100000);
	sp_cluster_init(&c);
	sp_diag_init(&d);
	ck_assert_int_eq(read_text(&c, &d, deep), -1);
	ck_assert(sp_diag_has(&d, SP_SEV_ERROR,
			      "svc.json: line 1 column 86: nested deeper than 64 levels (the "
			      "max_depth limit)"));
	/* Within the limit: read, and the Service (no metadata) is skipped. */
	ck_assert_int_eq(read_text(&c, &d, ok), 1);
	/* A tree handed over already parsed is checked too. */
	obj = cJSON_Parse(ok);
	lim.max_depth = 10;
	ck_assert_int_eq(sp_source_read_json(&c, "watch", obj, &lim, &d), -1);
	ck_assert(sp_diag_has(&d, SP_SEV_ERROR, "watch: nested deeper than 10 levels"));
	cJSON_Delete(obj);
	sp_source_limits_default(&lim);
	lim.max_file_bytes = 1000;
	ck_assert_int_eq(sp_source_read_path(&c, path, &lim, &d), -1);
	ck_assert(sp_diag_has(&d, SP_SEV_ERROR, "bytes, over the max_file_bytes limit of 1000"));
	ck_assert_int_eq(sp_source_read_buffer(&c, "b.json", ok, strlen(ok), &lim, &d), 0 + 1);
	lim.max_file_bytes = 10;
	ck_assert_int_eq(sp_source_read_buffer(&c, "b.json", ok, strlen(ok), &lim, &d), -1);
	sp_source_limits_default(&lim);
	lim.max_items = 3;
	ck_assert_int_eq(sp_source_read_path(&c, path, &lim, &d), -1);
	ck_assert(sp_diag_has(&d, SP_SEV_ERROR,
			      "kubectl-dump.json: line 6 column 6: more than 3 entries in one "
			      "array or object (the max_items limit)"));
	/* Trees handed over already parsed: per List and per field. */
	obj = cJSON_Parse(text_of_list);
	ck_assert_int_eq(sp_source_read_json(&c, "watch", obj, &lim, &d), -1);
	ck_assert(sp_diag_has(&d, SP_SEV_ERROR,
			      "watch: List: more than 3 items (the max_items limit)"));
	cJSON_Delete(obj);
	lim.max_items = 1;
	obj = cJSON_Parse(base_service);
	ck_assert_int_eq(sp_source_read_json(&c, "watch", obj, &lim, &d), 1);
	ck_assert(sp_diag_has(&d, SP_SEV_ERROR,
			      "watch: Service default/web: spec.ports: more than 1 entries (the "
			      "max_items limit)"));
	cJSON_Delete(obj);
	/* A huge flat array is refused before a node is allocated per value. */
	sp_source_limits_default(&lim);
	{
		size_t n = 300000;
		char *flat = malloc(n * 2 + 16);

		strcpy(flat, "{\"a\":[");
		for (size_t i = 0; i < n; i++)
			memcpy(flat + 6 + i * 2, "0,", 2);
		strcpy(flat + 6 + n * 2 - 1, "]}");
		ck_assert_int_eq(read_text(&c, &d, flat), -1);
		ck_assert(sp_diag_has(&d, SP_SEV_ERROR,
				      "svc.json: line 1 column 200006: more "
				      "than 100000 entries in one array"));
		free(flat);
	}
	ck_assert_uint_eq(n_objects(&c), 0);
	free(deep);
	free(ok);
	free(path);
	sp_cluster_free(&c);
	sp_diag_free(&d);
}
END_TEST

static char *read_whole(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *t;

	ck_assert_ptr_nonnull(f);
	fseek(f, 0, SEEK_END);
	*len = (size_t)ftell(f);
	rewind(f);
	t = malloc(*len + 1);
	ck_assert_uint_eq(fread(t, 1, *len, f), *len);
	t[*len] = '\0';
	fclose(f);
	return t;
}

static int read_quiet(const char *text, size_t len)
{
	struct sp_cluster c;
	struct sp_diag d;
	int ret;

	sp_cluster_init(&c);
	sp_diag_init(&d);
	ret = sp_source_read_buffer(&c, "fuzz.json", text, len, NULL, &d);
	sp_cluster_free(&c);
	sp_diag_free(&d);
	return ret;
}

/* Every prefix and thousands of byte mutations of the real dump: any
 * outcome but a crash (ASan builds also catch overruns). */
START_TEST(hostile_bytes_never_crash)
{
	char *path = data_path("kubectl-dump.json");
	static const char junk[] = "\0\xff\xc3{}[]\",:\\0-e9.ntf \n";
	uint32_t seed = 12345;
	size_t len;
	char *text = read_whole(path, &len);
	char *copy = malloc(len + 1);

	for (size_t cut = 0; cut < len; cut += 97)
		ck_assert_int_eq(read_quiet(text, cut), -1);
	for (int round = 0; round < 3000; round++) {
		int ret;

		memcpy(copy, text, len + 1);
		for (int k = 0; k < 1 + round % 8; k++) {
			seed = seed * 1103515245u + 12345u;
			copy[(seed >> 8) % len] = junk[(seed >> 4) % (sizeof(junk) - 1)];
		}
		ret = read_quiet(copy, len);
		ck_assert(ret >= -1 && ret <= 1);
	}
	free(copy);
	free(text);
	free(path);
}
END_TEST

/* Replace every value of the dump, one at a time, by each JSON type. */
START_TEST(wrong_types_everywhere_never_crash)
{
	static const char *const replacements[] = {"null", "-1", "1e300", "\"\\u0000x\"", "\"x\"",
						   "[]",   "{}", "true",  "[[{}]]"};
	char *path = data_path("kubectl-dump.json");
	size_t len, visited = 0;
	char *text = read_whole(path, &len);
	cJSON *root = cJSON_Parse(text);
	cJSON *stack[64];
	size_t depth = 0;

	ck_assert_ptr_nonnull(root);
	/* Depth-first walk with an explicit stack of the current path. */
	stack[depth++] = root;
	while (depth) {
		cJSON *node = stack[depth - 1];
		cJSON *next = node->child;

		if (node != root && (!next || node->type == cJSON_Raw)) {
			next = NULL;
		}
		if (node != root) {
			cJSON saved = *node;

			for (size_t r = 0; r < SP_ARRAY_SIZE(replacements); r++) {
				cJSON *v = cJSON_Parse(replacements[r]);
				struct sp_cluster c;
				struct sp_diag d;
				int ret;

				/* Swap the contents in place, keep the links. */
				node->type = v->type;
				node->child = v->child;
				node->valuestring = v->valuestring;
				node->valuedouble = v->valuedouble;
				node->valueint = v->valueint;
				sp_cluster_init(&c);
				sp_diag_init(&d);
				ret = sp_source_read_json(&c, "types.json", root, NULL, &d);
				ck_assert(ret >= -1 && ret <= 1);
				sp_cluster_free(&c);
				sp_diag_free(&d);
				node->type = saved.type;
				node->child = saved.child;
				node->valuestring = saved.valuestring;
				node->valuedouble = saved.valuedouble;
				node->valueint = saved.valueint;
				cJSON_Delete(v);
			}
			visited++;
		}
		/* Advance: into the first child, else to the next sibling up the path. */
		if (next && depth < SP_ARRAY_SIZE(stack)) {
			stack[depth++] = next;
			continue;
		}
		while (depth) {
			cJSON *cur = stack[--depth];

			if (depth && cur->next) {
				stack[depth++] = cur->next;
				break;
			}
		}
	}
	ck_assert_uint_gt(visited, 500);
	cJSON_Delete(root);
	free(text);
	free(path);
}
END_TEST

START_TEST(invalid_utf8_is_reported)
{
	static const char text[] =
		"{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"a\xff\","
		"\"namespace\":\"b\"},\"spec\":{\"clusterIP\":\"10.0.0.1\",\"ports\":[{\"port\":1}]"
		"}}";
	struct sp_cluster c;
	struct sp_diag d;

	sp_cluster_init(&c);
	sp_diag_init(&d);
	ck_assert_int_eq(read_text(&c, &d, text), 1);
	ck_assert(sp_diag_has(
		&d, SP_SEV_ERROR,
		"svc.json: Service b/a?: metadata.name: \"a\\xff\" is not valid UTF-8"));
	sp_cluster_free(&c);
	sp_diag_free(&d);
}
END_TEST

START_TEST(escaped_nul_is_refused)
{
	/* An escaped backslash before "u0000" is two characters, not a NUL. */
	static const char fine[] =
		"{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"a\","
		"\"namespace\":\"b\",\"annotations\":{\"x\":\"c:\\\\u0000\"}},\"spec\":{"
		"\"clusterIP\":\"10.0.0.1\",\"ports\":[{\"port\":1}]}}";
	static const char text[] =
		"{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\n\"name\":"
		"\"bad\\u0000x\","
		"\"namespace\":\"b\"},\"spec\":{\"clusterIP\":\"10.0.0.1\",\"ports\":[{\"port\":1}]"
		"}}";
	struct sp_cluster c;
	struct sp_diag d;

	sp_cluster_init(&c);
	sp_diag_init(&d);
	ck_assert_int_eq(read_text(&c, &d, fine), 0);
	ck_assert_uint_eq(c.n_services, 1);
	ck_assert_int_eq(read_text(&c, &d, text), -1);
	ck_assert_uint_eq(c.n_services, 1);
	if (!sp_diag_has(&d, SP_SEV_ERROR,
			 "svc.json: line 2 column 12: a string holds \\u0000 (NUL), which no "
			 "Kubernetes name or value can hold"))
		dump_diag(&d);
	ck_assert(sp_diag_has(&d, SP_SEV_ERROR,
			      "svc.json: line 2 column 12: a string holds \\u0000 (NUL), which no "
			      "Kubernetes name or value can hold"));
	ck_assert_uint_eq(sp_src_find_escaped_nul(fine, strlen(fine)), strlen(fine));
	ck_assert_uint_eq(sp_src_find_escaped_nul(text, strlen(text)),
			  (size_t)(strstr(text, "\\u0000") - text));
	/* Outside a string it is not JSON anyway: left to the parser. */
	ck_assert_uint_eq(sp_src_find_escaped_nul("[\\u0000]", 8), 8);
	ck_assert_uint_eq(sp_src_find_escaped_nul("\"\\u000", 6), 6);
	sp_cluster_free(&c);
	sp_diag_free(&d);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("source");
	TCase *tc = tcase_create("reader");
	SRunner *sr;
	int failed;

	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, invalid_object_is_skipped_with_one_clear_line, 0,
			    (int)SP_ARRAY_SIZE(bad_cases));
	tcase_add_test(tc, service_every_field);
	tcase_add_test(tc, service_defaults);
	tcase_add_test(tc, service_dual_stack_headless_external_name);
	tcase_add_test(tc, slice_every_field_and_condition_defaults);
	tcase_add_test(tc, slice_ipv6_and_fqdn);
	tcase_add_test(tc, node_every_field);
	tcase_add_test(tc, kubectl_dump_sample);
	tcase_add_test(tc, directory_is_read_in_name_order);
	tcase_add_test(tc, not_json_file_is_rejected_whole);
	tcase_add_test(tc, rejected_texts);
	tcase_add_test(tc, skipped_items_name_themselves);
	tcase_add_test(tc, limits_are_enforced);
	tcase_add_test(tc, invalid_utf8_is_reported);
	tcase_add_test(tc, escaped_nul_is_refused);
	tcase_add_test(tc, hostile_bytes_never_crash);
	tcase_add_test(tc, wrong_types_everywhere_never_crash);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
