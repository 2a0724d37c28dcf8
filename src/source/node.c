/* v1 Node: the node's own addresses and pod ranges. */
#include <stdio.h>
#include <string.h>

#include "svcproxy/model.h"
#include "source_internal.h"

/* InternalIP addresses first, then ExternalIP, each in object order. */
static void read_addresses(struct src_ctx *x, const cJSON *obj, struct sp_node *n)
{
	static const char *const wanted[] = {"InternalIP", "ExternalIP"};
	const cJSON *status, *addrs, *it;
	char base[SRC_PATH_MAX], path[SRC_PATH_MAX], val[128];

	if (!src_get_object(x, obj, "", "status", &status) ||
	    !src_get_array(x, status, "status", "addresses", &addrs))
		return;
	n->addresses = sp_xcalloc((size_t)cJSON_GetArraySize(addrs) + 1, sizeof(*n->addresses));
	for (size_t pass = 0; pass < SP_ARRAY_SIZE(wanted); pass++) {
		size_t i = 0;

		cJSON_ArrayForEach(it, addrs)
		{
			const char *type;
			const cJSON *addr;

			src_path(base, "status.addresses[%zu]", i++);
			if (!cJSON_IsObject(it)) {
				if (pass == 0)
					src_error(x, base, "%s is not an object",
						  src_value_text(it, val, sizeof(val)));
				continue;
			}
			if (!src_get_string(x, it, base, "type", &type) ||
			    strcmp(type, wanted[pass]))
				continue;
			addr = src_get(it, "address");
			src_path(path, "%s.address", base);
			if (!addr) {
				src_error(x, path, "required value is missing");
				continue;
			}
			if (src_parse_addr(x, addr, path, &n->addresses[n->n_addresses]))
				n->n_addresses++;
		}
	}
}

static void add_pod_cidr(struct src_ctx *x, struct sp_node *n, const cJSON *v, const char *path)
{
	char val[128];

	if (!src_is_string(x, v, path))
		return;
	if (src_parse_cidr_loose(v->valuestring, &n->pod_cidrs[n->n_pod_cidrs]))
		n->n_pod_cidrs++;
	else
		src_error(x, path, "%s is not a CIDR", src_value_text(v, val, sizeof(val)));
}

static void read_pod_cidrs(struct src_ctx *x, const cJSON *obj, struct sp_node *n)
{
	const cJSON *spec, *cidrs, *one, *it;
	char path[SRC_PATH_MAX];
	size_t i = 0;

	if (!src_get_object(x, obj, "", "spec", &spec))
		return;
	if (src_get_array(x, spec, "spec", "podCIDRs", &cidrs) && cidrs->child) {
		n->pod_cidrs = sp_xcalloc((size_t)cJSON_GetArraySize(cidrs), sizeof(*n->pod_cidrs));
		cJSON_ArrayForEach(it, cidrs)
		{
			src_path(path, "spec.podCIDRs[%zu]", i++);
			add_pod_cidr(x, n, it, path);
		}
		return;
	}
	one = src_get(spec, "podCIDR");
	if (!one || (cJSON_IsString(one) && !*one->valuestring))
		return;
	n->pod_cidrs = sp_xcalloc(1, sizeof(*n->pod_cidrs));
	add_pod_cidr(x, n, one, "spec.podCIDR");
}

int src_read_node(struct sp_cluster *c, struct src_ctx *x, const cJSON *obj)
{
	struct sp_node *n = sp_cluster_add_node(c);
	const char *ns, *name;

	x->kind = "Node";
	if (src_read_metadata(x, obj, false, &ns, &name) &&
	    src_check_dns_subdomain(x, name, "metadata.name"))
		n->name = sp_xstrdup(name);
	n->origin = sp_xstrdup(x->origin);
	read_addresses(x, obj, n);
	read_pod_cidrs(x, obj, n);
	if (x->n_errors || !n->name) {
		sp_cluster_drop_last_node(c);
		return 1;
	}
	return 0;
}
