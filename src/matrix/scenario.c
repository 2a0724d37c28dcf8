/* Scenario reader: Kubernetes objects (the same JSON `svcproxy sync` reads)
 * plus one MatrixLayout object that says what the cloud around the cluster
 * looks like. The harness gets the objects in a file of their own and the
 * layout as tab-separated records (documented in svcproxy-matrix(1)), so
 * that the shell never parses JSON. */
#include "matrix.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define LAYOUT_KIND "MatrixLayout"
#define CLIENT_POD_HOST 250 /* client pods sit at .250 of their node's pod CIDR */

struct scenario {
	cJSON *objects; /* array of Node, Service, EndpointSlice (owned) */
	cJSON *layout;	/* the MatrixLayout object (owned), or NULL */
	char *name;	/* from the layout, else the first file's base name */
	const char *layout_origin;
};

struct node {
	const char *name;
	char ip[SP_ADDRSTRLEN];
	struct sp_cidr pod_cidr;
};

static const char *str_at(const cJSON *obj, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static const cJSON *obj_at(const cJSON *obj, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

	return cJSON_IsObject(v) ? v : NULL;
}

static const cJSON *arr_at(const cJSON *obj, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

	return cJSON_IsArray(v) ? v : NULL;
}

static long num_at(const cJSON *obj, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

	return cJSON_IsNumber(v) ? (long)v->valuedouble : 0;
}

static const char *meta_str(const cJSON *obj, const char *key)
{
	const cJSON *meta = obj_at(obj, "metadata");

	return meta ? str_at(meta, key) : NULL;
}

static char *read_whole_file(const char *path, struct sp_diag *diag)
{
	FILE *f = fopen(path, "r");
	struct sp_buf b;
	char chunk[8192];
	size_t got;

	if (!f) {
		sp_diag_error(diag, "%s: %s", path, strerror(errno));
		return NULL;
	}
	sp_buf_init(&b);
	while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0)
		sp_buf_addn(&b, chunk, got);
	if (ferror(f)) {
		sp_diag_error(diag, "%s: read error", path);
		fclose(f);
		sp_buf_free(&b);
		return NULL;
	}
	fclose(f);
	return sp_buf_steal(&b);
}

static void scenario_take(struct scenario *sc, const cJSON *item, const char *path,
			  struct sp_diag *diag)
{
	const char *kind = str_at(item, "kind");

	if (!kind)
		return;
	if (!strcmp(kind, LAYOUT_KIND)) {
		if (sc->layout) {
			sp_diag_warn(diag, "%s: a second %s is ignored", path, LAYOUT_KIND);
			return;
		}
		sc->layout = cJSON_Duplicate(item, 1);
		sc->layout_origin = path;
		return;
	}
	if (!strcmp(kind, "Node") || !strcmp(kind, "Service") || !strcmp(kind, "EndpointSlice"))
		cJSON_AddItemToArray(sc->objects, cJSON_Duplicate(item, 1));
}

static int scenario_load_file(struct scenario *sc, const char *path, struct sp_diag *diag)
{
	char *text = read_whole_file(path, diag);
	cJSON *root, *items, *item;

	if (!text)
		return -1;
	root = cJSON_Parse(text);
	free(text);
	if (!root) {
		sp_diag_error(diag, "%s: not JSON", path);
		return -1;
	}
	items = cJSON_GetObjectItemCaseSensitive(root, "items");
	if (cJSON_IsArray(items)) {
		cJSON_ArrayForEach(item, items) scenario_take(sc, item, path, diag);
	} else {
		scenario_take(sc, root, path, diag);
	}
	cJSON_Delete(root);
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A folder's *.json files in name order, so that a scenario reads the same
 * way on every machine. */
static int scenario_load_dir(struct scenario *sc, const char *dir, struct sp_diag *diag)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;

	if (!d) {
		sp_diag_error(diag, "%s: %s", dir, strerror(errno));
		return -1;
	}
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		char **slot;

		if (de->d_name[0] == '.' || len < 6 || strcmp(de->d_name + len - 5, ".json"))
			continue;
		slot = sp_array_push(&names, &n, &cap, sizeof(*names));
		*slot = sp_xasprintf("%s/%s", dir, de->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof(*names), cmp_str);
	for (size_t i = 0; i < n; i++) {
		if (scenario_load_file(sc, names[i], diag))
			rc = -1;
		free(names[i]);
	}
	free(names);
	return rc;
}

static char *base_name_without_json(const char *path)
{
	size_t end = strlen(path), start, len;

	while (end > 1 && path[end - 1] == '/')
		end--;
	start = end;
	while (start > 0 && path[start - 1] != '/')
		start--;
	len = end - start;
	if (len > 5 && !strncmp(path + end - 5, ".json", 5))
		len -= 5;
	return sp_xstrndup(path + start, len);
}

static int scenario_load(struct scenario *sc, const char *const *paths, size_t n_paths,
			 struct sp_diag *diag)
{
	int rc = 0;

	memset(sc, 0, sizeof(*sc));
	sc->objects = cJSON_CreateArray();
	for (size_t i = 0; i < n_paths; i++) {
		struct stat st;

		if (stat(paths[i], &st)) {
			sp_diag_error(diag, "%s: %s", paths[i], strerror(errno));
			rc = -1;
		} else if (S_ISDIR(st.st_mode) ? scenario_load_dir(sc, paths[i], diag)
					       : scenario_load_file(sc, paths[i], diag)) {
			rc = -1;
		}
	}
	if (!rc && !sc->layout) {
		sp_diag_error(diag, "%s: no %s object (the cluster layout) in the scenario",
			      paths[0], LAYOUT_KIND);
		rc = -1;
	}
	if (!rc) {
		const char *name = meta_str(sc->layout, "name");

		sc->name = name ? sp_xstrdup(name) : base_name_without_json(paths[0]);
	}
	return rc;
}

static void scenario_free(struct scenario *sc)
{
	cJSON_Delete(sc->objects);
	cJSON_Delete(sc->layout);
	free(sc->name);
}

/* Layout fields that must be addresses are checked here, so that the
 * harness gets only well-formed records. */
static bool layout_addr(const cJSON *obj, const char *key, const char *origin, const char *what,
			bool required, char *out, struct sp_diag *diag)
{
	const char *text = str_at(obj, key);
	struct sp_addr a;

	out[0] = '\0';
	if (!text) {
		if (required)
			sp_diag_error(diag, "%s: %s: %s is missing", origin, what, key);
		return !required;
	}
	if (!sp_addr_parse(text, &a) || a.family != AF_INET) {
		sp_diag_error(diag, "%s: %s: %s: %s is not an IPv4 address", origin, what, key,
			      text);
		return false;
	}
	sp_addr_format(&a, out);
	return true;
}

static void addr_with_host(const struct sp_cidr *c, uint32_t host, char *out)
{
	struct sp_addr a = c->addr;

	a.u.v4.s_addr = htonl(ntohl(a.u.v4.s_addr) + host);
	sp_addr_format(&a, out);
}

static int collect_nodes(const struct scenario *sc, struct node **nodes, size_t *n,
			 struct sp_diag *diag)
{
	size_t cap = 0;
	const cJSON *obj;

	cJSON_ArrayForEach(obj, sc->objects)
	{
		const char *kind = str_at(obj, "kind"), *name = meta_str(obj, "name");
		const cJSON *addrs =
			obj_at(obj, "status") ? arr_at(obj_at(obj, "status"), "addresses") : NULL;
		const char *cidr =
			obj_at(obj, "spec") ? str_at(obj_at(obj, "spec"), "podCIDR") : NULL;
		const cJSON *a;
		struct node *nd;

		if (strcmp(kind, "Node"))
			continue;
		if (!name || !cidr) {
			sp_diag_error(diag, "Node %s: metadata.name and spec.podCIDR are needed",
				      name ? name : "?");
			return -1;
		}
		nd = sp_array_push(nodes, n, &cap, sizeof(**nodes));
		nd->name = name;
		if (!sp_cidr_parse(cidr, &nd->pod_cidr) || nd->pod_cidr.addr.family != AF_INET ||
		    nd->pod_cidr.prefix > 24) {
			sp_diag_error(diag, "Node %s: spec.podCIDR: %s is not an IPv4 /24 or wider",
				      name, cidr);
			return -1;
		}
		cJSON_ArrayForEach(a, addrs)
		{
			const char *type = str_at(a, "type"), *ip = str_at(a, "address");
			struct sp_addr parsed;

			if (type && ip && !strcmp(type, "InternalIP") &&
			    sp_addr_parse(ip, &parsed) && parsed.family == AF_INET) {
				sp_addr_format(&parsed, nd->ip);
				break;
			}
		}
		if (!nd->ip[0]) {
			sp_diag_error(diag, "Node %s: status.addresses has no IPv4 InternalIP",
				      name);
			return -1;
		}
	}
	if (*n < 1) {
		sp_diag_error(diag, "%s: the scenario has no Node objects", sc->name);
		return -1;
	}
	return 0;
}

static const struct node *find_node(const struct node *nodes, size_t n, const char *name)
{
	for (size_t i = 0; name && i < n; i++)
		if (!strcmp(nodes[i].name, name))
			return &nodes[i];
	return NULL;
}

static bool service_selected(const struct scenario *sc, const char *id)
{
	const cJSON *list = arr_at(obj_at(sc->layout, "spec"), "services"), *it;

	if (!list)
		return true;
	cJSON_ArrayForEach(it, list) if (cJSON_IsString(it) &&
					 !strcmp(it->valuestring, id)) return true;
	return false;
}

/* The first port of a Service is the one measured (the JSON cell has no
 * port key; the manual says so). */
static const cJSON *measured_port(const cJSON *svc)
{
	const cJSON *ports = arr_at(obj_at(svc, "spec"), "ports");

	return ports ? cJSON_GetArrayItem(ports, 0) : NULL;
}

static const char *proto_of(const cJSON *port)
{
	const char *p = str_at(port, "protocol");

	return p && !strcmp(p, "UDP") ? "udp" : "tcp";
}

/* Every endpoint of a Service (through its slices) becomes a pod of the
 * virtual cluster, listening on the slice port that matches the measured
 * Service port. Pods seen twice (two slices, two Services) are one pod. */
static void emit_pods_and_endpoints(const struct scenario *sc, const struct node *nodes,
				    size_t n_nodes, struct sp_buf *out, struct sp_diag *diag)
{
	const cJSON *svc;

	cJSON_ArrayForEach(svc, sc->objects)
	{
		const char *ns = meta_str(svc, "namespace"), *name = meta_str(svc, "name");
		const cJSON *port, *slice;
		char *id;

		if (strcmp(str_at(svc, "kind"), "Service") || !name)
			continue;
		ns = ns ? ns : "default";
		id = sp_xasprintf("%s/%s", ns, name);
		port = measured_port(svc);
		if (!service_selected(sc, id) || !port) {
			free(id);
			continue;
		}
		cJSON_ArrayForEach(slice, sc->objects)
		{
			const char *sns = meta_str(slice, "namespace");
			const cJSON *labels = obj_at(obj_at(slice, "metadata"), "labels");
			const char *owner =
				labels ? str_at(labels, "kubernetes.io/service-name") : NULL;
			const cJSON *sports = arr_at(slice, "ports"), *sp, *ep;
			const char *want = str_at(port, "name");
			long target = 0;

			if (strcmp(str_at(slice, "kind"), "EndpointSlice") || !owner ||
			    strcmp(owner, name) || strcmp(sns ? sns : "default", ns))
				continue;
			cJSON_ArrayForEach(sp, sports)
			{
				const char *pn = str_at(sp, "name");

				if (!want || !*want || (pn && !strcmp(pn, want))) {
					target = num_at(sp, "port");
					break;
				}
			}
			if (target <= 0 || target > 65535) {
				sp_diag_warn(diag, "EndpointSlice %s/%s: no port for %s", ns,
					     meta_str(slice, "name"), id);
				continue;
			}
			cJSON_ArrayForEach(ep, arr_at(slice, "endpoints"))
			{
				const cJSON *addrs = arr_at(ep, "addresses");
				const cJSON *cond = obj_at(ep, "conditions");
				const cJSON *ready =
					cond ? cJSON_GetObjectItem(cond, "ready") : NULL;
				const cJSON *ref = obj_at(ep, "targetRef");
				const char *node = str_at(ep, "nodeName");
				const char *ip =
					addrs && cJSON_GetArrayItem(addrs, 0) &&
							cJSON_IsString(cJSON_GetArrayItem(addrs, 0))
						? cJSON_GetArrayItem(addrs, 0)->valuestring
						: NULL;
				const char *pod = ref ? str_at(ref, "name") : NULL;

				if (!ip || !find_node(nodes, n_nodes, node)) {
					sp_diag_warn(diag,
						     "%s: endpoint %s has no known nodeName: "
						     "left out of the virtual cluster",
						     id, ip ? ip : "?");
					continue;
				}
				sp_buf_addf(out, "endpoint\t%s\t%s\t%s\t%s\t%s\t%ld\t%d\n", id,
					    pod ? pod : ip, node, ip, proto_of(port), target,
					    !cJSON_IsFalse(ready));
			}
		}
		free(id);
	}
}

static void emit_targets(const char *id, const cJSON *svc, const cJSON *port,
			 const struct node *nodes, size_t n_nodes, struct sp_buf *out)
{
	const cJSON *spec = obj_at(svc, "spec"), *eip;
	const char *cip = str_at(spec, "clusterIP");
	long p = num_at(port, "port"), np = num_at(port, "nodePort");
	struct sp_addr a;

	if (cip && sp_addr_parse(cip, &a) && a.family == AF_INET)
		sp_buf_addf(out, "target\t%s\tcluster-ip\t%s\t%ld\t-\n", id, cip, p);
	for (size_t i = 0; np > 0 && i < n_nodes; i++)
		sp_buf_addf(out, "target\t%s\tnode-port\t%s\t%ld\t%s\n", id, nodes[i].ip, np,
			    nodes[i].name);
	cJSON_ArrayForEach(eip,
			   arr_at(spec, "externalIPs")) if (cJSON_IsString(eip) &&
							    sp_addr_parse(eip->valuestring, &a) &&
							    a.family == AF_INET)
		sp_buf_addf(out, "target\t%s\texternal-ip\t%s\t%ld\t-\n", id, eip->valuestring, p);
}

static int emit_balancers(const struct scenario *sc, struct sp_buf *out, struct sp_diag *diag)
{
	const cJSON *b;

	cJSON_ArrayForEach(b, arr_at(obj_at(sc->layout, "spec"), "balancers"))
	{
		const char *svc = str_at(b, "service"), *fwd = str_at(b, "forward");
		char priv[SP_ADDRSTRLEN], pub[SP_ADDRSTRLEN];

		if (!svc || !strchr(svc, '/')) {
			sp_diag_error(diag, "%s: spec.balancers[].service must be namespace/name",
				      sc->layout_origin);
			return -1;
		}
		if (!layout_addr(b, "privateIP", sc->layout_origin, svc, true, priv, diag) ||
		    !layout_addr(b, "publicIP", sc->layout_origin, svc, false, pub, diag))
			return -1;
		fwd = fwd ? fwd : "node-port";
		if (strcmp(fwd, "node-port") && strcmp(fwd, "pod")) {
			sp_diag_error(diag, "%s: %s: forward: %s is not node-port or pod",
				      sc->layout_origin, svc, fwd);
			return -1;
		}
		sp_buf_addf(out, "balancer\t%s\t%s\t%s\t%s\n", svc, priv, pub[0] ? pub : "-", fwd);
	}
	return 0;
}

static int emit_services(const struct scenario *sc, const struct node *nodes, size_t n_nodes,
			 struct sp_buf *out)
{
	const cJSON *svc;

	cJSON_ArrayForEach(svc, sc->objects)
	{
		const char *ns = meta_str(svc, "namespace"), *name = meta_str(svc, "name");
		const cJSON *spec = obj_at(svc, "spec"), *port = measured_port(svc);
		const char *etp = spec ? str_at(spec, "externalTrafficPolicy") : NULL;
		char *id;

		if (strcmp(str_at(svc, "kind"), "Service") || !name || !port)
			continue;
		id = sp_xasprintf("%s/%s", ns ? ns : "default", name);
		if (service_selected(sc, id)) {
			sp_buf_addf(out, "service\t%s\t%s\t%ld\t%ld\t%ld\t%s\n", id, proto_of(port),
				    num_at(port, "port"), num_at(port, "nodePort"),
				    num_at(spec, "healthCheckNodePort"),
				    etp && !strcmp(etp, "Local") ? "Local" : "Cluster");
			emit_targets(id, svc, port, nodes, n_nodes, out);
		}
		free(id);
	}
	return 0;
}

static const char *const target_kinds[] = {"cluster-ip", "node-port", "lb-private", "lb-public",
					   "external-ip"};

/* spec.targets narrows what is measured (the ClusterIP remedy measures only
 * the ClusterIP); the default is every kind of address. */
static int emit_measured_kinds(const struct scenario *sc, struct sp_buf *out, struct sp_diag *diag)
{
	const cJSON *list = arr_at(obj_at(sc->layout, "spec"), "targets"), *it;

	if (!list) {
		for (size_t i = 0; i < SP_ARRAY_SIZE(target_kinds); i++)
			sp_buf_addf(out, "measure\t%s\n", target_kinds[i]);
		return 0;
	}
	cJSON_ArrayForEach(it, list)
	{
		size_t i = 0;

		while (i < SP_ARRAY_SIZE(target_kinds) &&
		       (!cJSON_IsString(it) || strcmp(it->valuestring, target_kinds[i])))
			i++;
		if (i == SP_ARRAY_SIZE(target_kinds)) {
			sp_diag_error(diag,
				      "%s: spec.targets: %s is not one of cluster-ip, "
				      "node-port, lb-private, lb-public, external-ip",
				      sc->layout_origin,
				      cJSON_IsString(it) ? it->valuestring : "?");
			return -1;
		}
		sp_buf_addf(out, "measure\t%s\n", target_kinds[i]);
	}
	return 0;
}

static int emit_layout(const struct scenario *sc, struct sp_buf *out, struct sp_diag *diag)
{
	const cJSON *spec = obj_at(sc->layout, "spec");
	const cJSON *off = spec ? obj_at(spec, "offCluster") : NULL;
	const char *cidr = spec ? str_at(spec, "clusterCIDR") : NULL;
	const char *eip_node = spec ? str_at(spec, "externalIPNode") : NULL;
	char gw[SP_ADDRSTRLEN], off_ip[SP_ADDRSTRLEN], buf[SP_ADDRSTRLEN];
	struct node *nodes = NULL;
	size_t n_nodes = 0;
	struct sp_cidr cc;
	int rc = -1;

	if (!spec || !cidr || !sp_cidr_parse(cidr, &cc) || cc.addr.family != AF_INET) {
		sp_diag_error(diag, "%s: spec.clusterCIDR: an IPv4 CIDR is needed",
			      sc->layout_origin);
		return -1;
	}
	if (collect_nodes(sc, &nodes, &n_nodes, diag))
		goto out;
	if (eip_node && !find_node(nodes, n_nodes, eip_node)) {
		sp_diag_error(diag, "%s: spec.externalIPNode: %s is not a Node", sc->layout_origin,
			      eip_node);
		goto out;
	}
	if (!layout_addr(spec, "vpcGateway", sc->layout_origin, "spec", false, gw, diag) ||
	    !layout_addr(off ? off : spec, "address", sc->layout_origin, "spec.offCluster", false,
			 off_ip, diag))
		goto out;
	if (!gw[0]) {
		struct sp_cidr first;

		sp_cidr_parse(nodes[0].ip, &first);
		first.addr.u.v4.s_addr &= htonl(0xffffff00);
		addr_with_host(&first, 1, gw);
	}
	sp_buf_addf(out, "scenario\t%s\n", sc->name);
	sp_buf_addf(out, "clustercidr\t%s\n", sp_cidr_format(&cc, buf));
	sp_buf_addf(out, "gateway\t%s\n", gw);
	sp_buf_addf(out, "offcluster\t%s\n", off_ip[0] ? off_ip : "198.51.100.10");
	for (size_t i = 0; i < n_nodes; i++) {
		char net[SP_ADDRSTRLEN], client[SP_ADDRSTRLEN];
		char cbuf[SP_CIDRSTRLEN];

		addr_with_host(&nodes[i].pod_cidr, 0, net);
		addr_with_host(&nodes[i].pod_cidr, CLIENT_POD_HOST, client);
		sp_buf_addf(out, "node\t%s\t%s\t%s\t%s\t%s\n", nodes[i].name, nodes[i].ip,
			    sp_cidr_format(&nodes[i].pod_cidr, cbuf), net, client);
	}
	sp_buf_addf(out, "extipnode\t%s\n", eip_node ? eip_node : nodes[0].name);
	if (emit_measured_kinds(sc, out, diag) || emit_balancers(sc, out, diag) ||
	    emit_services(sc, nodes, n_nodes, out))
		goto out;
	emit_pods_and_endpoints(sc, nodes, n_nodes, out, diag);
	rc = 0;
out:
	free(nodes);
	return rc;
}

static int write_objects(const struct scenario *sc, const char *path, struct sp_diag *diag)
{
	cJSON *list = cJSON_CreateObject();
	char *text;
	FILE *f;
	int rc = 0;

	cJSON_AddStringToObject(list, "apiVersion", "v1");
	cJSON_AddStringToObject(list, "kind", "List");
	cJSON_AddItemReferenceToObject(list, "items", sc->objects);
	text = cJSON_Print(list);
	cJSON_Delete(list);
	f = fopen(path, "w");
	if (!f || fputs(text, f) < 0 || fputc('\n', f) < 0) {
		sp_diag_error(diag, "%s: %s", path, strerror(errno));
		rc = -1;
	}
	if (f && fclose(f)) {
		sp_diag_error(diag, "%s: %s", path, strerror(errno));
		rc = -1;
	}
	free(text);
	return rc;
}

int sp_matrix_scenario_layout(const char *const *paths, size_t n_paths, const char *objects_path,
			      struct sp_buf *out, struct sp_diag *diag)
{
	struct scenario sc;
	int rc = scenario_load(&sc, paths, n_paths, diag);

	if (!rc)
		rc = emit_layout(&sc, out, diag);
	if (!rc && objects_path)
		rc = write_objects(&sc, objects_path, diag);
	scenario_free(&sc);
	return rc;
}
