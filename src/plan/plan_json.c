/* `--output json`: the mode-independent plan as JSON. Written by hand into an
 * sp_buf so that key order and spacing are fixed: the same plan always gives
 * the same bytes, which the golden tests and `svcproxy diff` rely on. */
#include "svcproxy/plan.h"

#include <stdio.h>
#include <sys/socket.h>

static void json_key(struct sp_buf *out, int indent, const char *key, bool first)
{
	sp_buf_addf(out, "%s\n%*s", first ? "" : ",", indent, "");
	sp_buf_add_json_string(out, key);
	sp_buf_add(out, ": ");
}

static void json_key_str(struct sp_buf *out, int indent, const char *key, const char *val)
{
	json_key(out, indent, key, false);
	sp_buf_add_json_string(out, val);
}

static void json_key_bool(struct sp_buf *out, int indent, const char *key, bool val)
{
	json_key(out, indent, key, false);
	sp_buf_add(out, val ? "true" : "false");
}

static void json_key_uint(struct sp_buf *out, int indent, const char *key, unsigned long val)
{
	json_key(out, indent, key, false);
	sp_buf_addf(out, "%lu", val);
}

static void json_addrs(struct sp_buf *out, const struct sp_addr *addrs, size_t n)
{
	char buf[SP_ADDRSTRLEN];

	sp_buf_add(out, "[");
	for (size_t i = 0; i < n; i++) {
		sp_buf_add(out, i ? ", " : "");
		sp_buf_add_json_string(out, sp_addr_format(&addrs[i], buf));
	}
	sp_buf_add(out, "]");
}

static void json_cidrs(struct sp_buf *out, const struct sp_cidr *cidrs, size_t n)
{
	char buf[SP_CIDRSTRLEN];

	sp_buf_add(out, "[");
	for (size_t i = 0; i < n; i++) {
		sp_buf_add(out, i ? ", " : "");
		sp_buf_add_json_string(out, sp_cidr_format(&cidrs[i], buf));
	}
	sp_buf_add(out, "]");
}

static const char *family_name(int family)
{
	return family == AF_INET6 ? "IPv6" : "IPv4";
}

/* "10.0.0.1:80", "[fd00::1]:80": sets name their endpoints by what they are
 * rather than by an index a reader would have to follow. */
static void json_endpoint_ref(struct sp_buf *out, const struct sp_plan_endpoint *ep)
{
	char addr[SP_ADDRSTRLEN], ref[SP_ADDRSTRLEN + 8];

	sp_addr_format(&ep->addr, addr);
	snprintf(ref, sizeof(ref), ep->addr.family == AF_INET6 ? "[%s]:%u" : "%s:%u", addr,
		 ep->port);
	sp_buf_add_json_string(out, ref);
}

static void json_ep_set(struct sp_buf *out, const struct sp_plan_svcport *sp,
			const struct sp_plan_ep_set *set)
{
	sp_buf_add(out, "[");
	for (size_t i = 0; i < set->n; i++) {
		sp_buf_add(out, i ? ", " : "");
		json_endpoint_ref(out, &sp->endpoints[set->idx[i]]);
	}
	sp_buf_add(out, "]");
}

static void json_endpoint(struct sp_buf *out, const struct sp_plan_endpoint *ep)
{
	char buf[SP_ADDRSTRLEN];

	sp_buf_add(out, "{\"addr\": ");
	sp_buf_add_json_string(out, sp_addr_format(&ep->addr, buf));
	sp_buf_addf(out, ", \"port\": %u, \"local\": %s, \"ready\": %s, \"serving\": %s, ",
		    ep->port, ep->local ? "true" : "false", ep->ready ? "true" : "false",
		    ep->serving ? "true" : "false");
	sp_buf_addf(out, "\"terminating\": %s, \"node\": ", ep->terminating ? "true" : "false");
	if (ep->node_name)
		sp_buf_add_json_string(out, ep->node_name);
	else
		sp_buf_add(out, "null");
	sp_buf_add(out, ", \"target\": ");
	if (ep->target_name)
		sp_buf_add_json_string(out, ep->target_name);
	else
		sp_buf_add(out, "null");
	sp_buf_add(out, "}");
}

static void json_svcport(struct sp_buf *out, const struct sp_plan_svcport *sp)
{
	const int in = 6;
	char buf[SP_ADDRSTRLEN];

	sp_buf_add(out, "{");
	json_key(out, in, "id", true);
	sp_buf_add_json_string(out, sp->id);
	json_key_str(out, in, "namespace", sp->namespace);
	json_key_str(out, in, "name", sp->name);
	json_key_str(out, in, "port_name", sp->port_name);
	json_key_str(out, in, "family", family_name(sp->family));
	json_key_str(out, in, "protocol", sp_proto_name(sp->protocol));
	json_key_str(out, in, "type", sp_service_type_name(sp->type));
	json_key_str(out, in, "cluster_ip", sp_addr_format(&sp->cluster_ip, buf));
	json_key_uint(out, in, "port", sp->port);
	json_key_uint(out, in, "node_port", sp->node_port);
	json_key(out, in, "external_ips", false);
	json_addrs(out, sp->external_ips, sp->n_external_ips);
	json_key(out, in, "lb_ips", false);
	json_addrs(out, sp->lb_ips, sp->n_lb_ips);
	json_key(out, in, "source_ranges", false);
	json_cidrs(out, sp->source_ranges, sp->n_source_ranges);
	json_key_bool(out, in, "externally_accessible", sp_plan_externally_accessible(sp));
	json_key_str(out, in, "external_traffic_policy",
		     sp->external_policy_local ? "Local" : "Cluster");
	json_key_str(out, in, "internal_traffic_policy",
		     sp->internal_policy_local ? "Local" : "Cluster");
	json_key_str(out, in, "session_affinity", sp->affinity ? "ClientIP" : "None");
	json_key_uint(out, in, "affinity_timeout", sp->affinity_timeout);
	json_key_uint(out, in, "health_check_node_port", sp->health_check_node_port);
	json_key_str(out, in, "ipvs_scheduler", sp->ipvs_scheduler);
	json_key_bool(out, in, "has_any_endpoints", sp->has_any_endpoints);
	json_key(out, in, "endpoints", false);
	sp_buf_add(out, "[");
	for (size_t i = 0; i < sp->n_endpoints; i++) {
		sp_buf_addf(out, "%s\n%*s", i ? "," : "", in + 2, "");
		json_endpoint(out, &sp->endpoints[i]);
	}
	sp_buf_addf(out, "%s]", sp->n_endpoints ? "\n      " : "");
	json_key(out, in, "cluster_endpoints", false);
	json_ep_set(out, sp, &sp->cluster);
	json_key(out, in, "local_endpoints", false);
	json_ep_set(out, sp, &sp->local);
	json_key(out, in, "internal_endpoints", false);
	json_ep_set(out, sp, sp_plan_internal_eps(sp));
	json_key(out, in, "external_endpoints", false);
	json_ep_set(out, sp, sp_plan_external_eps(sp));
	sp_buf_add(out, "\n    }");
}

static const char *capture_name(enum sp_ipvs_capture c)
{
	return c == SP_IPVS_CAPTURE_WHOLE_ADDRESS ? "whole-address" : "per-port";
}

void sp_plan_print_json(const struct sp_plan *plan, struct sp_buf *out)
{
	sp_buf_add(out, "{");
	json_key(out, 2, "mode", true);
	sp_buf_add_json_string(out, sp_mode_name(plan->mode));
	json_key_str(out, 2, "node", plan->node_name);
	json_key(out, 2, "node_ips", false);
	json_addrs(out, plan->node_ips, plan->n_node_ips);
	json_key(out, 2, "nodeport", false);
	sp_buf_addf(out, "{\"all_local\": %s, \"addresses\": ",
		    plan->nodeport_all_local ? "true" : "false");
	json_addrs(out, plan->nodeport_addrs, plan->n_nodeport_addrs);
	sp_buf_add(out, "}");
	json_key(out, 2, "cluster_cidrs", false);
	json_cidrs(out, plan->cluster_cidrs, plan->n_cluster_cidrs);
	json_key(out, 2, "masquerade", false);
	sp_buf_addf(out, "{\"all\": %s, \"mark\": \"0x%08x\"}",
		    plan->masquerade_all ? "true" : "false", plan->masquerade_mark);
	json_key(out, 2, "ipvs", false);
	sp_buf_add(out, "{\"scheduler\": ");
	sp_buf_add_json_string(out, plan->ipvs_default_scheduler);
	sp_buf_addf(out, ", \"strict_arp\": %s, \"capture\": \"%s\"}",
		    plan->ipvs_strict_arp ? "true" : "false", capture_name(plan->ipvs_capture));
	json_key(out, 2, "svcports", false);
	sp_buf_add(out, "[");
	for (size_t i = 0; i < plan->n_svcports; i++) {
		sp_buf_add(out, i ? ",\n    " : "\n    ");
		json_svcport(out, &plan->svcports[i]);
	}
	sp_buf_addf(out, "%s]\n}\n", plan->n_svcports ? "\n  " : "");
}
