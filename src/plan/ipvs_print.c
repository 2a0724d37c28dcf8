/* IPVS mode's printers: the text each tool accepts (ipvsadm -R, ip,
 * iptables-restore), and the same state as JSON. Deterministic: the state is
 * sorted before it is printed. */
#include "svcproxy/ipvs.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static const char *proto_flag(uint8_t proto)
{
	switch (proto) {
	case IPPROTO_UDP:
		return "-u";
	case IPPROTO_SCTP:
		return "--sctp-service";
	default:
		return "-t";
	}
}

static void addr_port(struct sp_buf *out, const struct sp_addr *a, uint16_t port)
{
	char ab[SP_ADDRSTRLEN];

	sp_addr_format(a, ab);
	if (a->family == AF_INET6)
		sp_buf_addf(out, "[%s]:%u", ab, port);
	else
		sp_buf_addf(out, "%s:%u", ab, port);
}

static void print_service_line(const struct sp_ipvs_service *svc, struct sp_buf *out)
{
	sp_buf_addf(out, "-A %s ", proto_flag(svc->protocol));
	addr_port(out, &svc->addr, svc->port);
	sp_buf_addf(out, " -s %s", svc->scheduler);
	if (svc->flags & SP_IPVS_SVC_F_PERSISTENT) {
		sp_buf_addf(out, " -p %u", svc->timeout);
		if (svc->netmask != sp_ipvs_host_netmask(svc->addr.family)) {
			if (svc->addr.family == AF_INET6) {
				sp_buf_addf(out, " -M %u", svc->netmask);
			} else {
				struct in_addr m = {.s_addr = svc->netmask};
				char mb[INET_ADDRSTRLEN];

				sp_buf_addf(out, " -M %s", inet_ntop(AF_INET, &m, mb, sizeof(mb)));
			}
		}
	}
	sp_buf_add(out, "\n");
}

static const char *fwd_flag(uint32_t method)
{
	switch (method) {
	case 0:
		return "-m";
	case 2:
		return "-i";
	case 3:
		return "-g";
	default:
		return "-m";
	}
}

static void print_dest_line(const struct sp_ipvs_service *svc, const struct sp_ipvs_dest *d,
			    struct sp_buf *out)
{
	sp_buf_addf(out, "-a %s ", proto_flag(svc->protocol));
	addr_port(out, &svc->addr, svc->port);
	sp_buf_add(out, " -r ");
	addr_port(out, &d->addr, d->port);
	sp_buf_addf(out, " %s -w %u", fwd_flag(d->fwd_method), d->weight);
	if (d->u_threshold)
		sp_buf_addf(out, " -x %u", d->u_threshold);
	if (d->l_threshold)
		sp_buf_addf(out, " -y %u", d->l_threshold);
	sp_buf_add(out, "\n");
}

void sp_ipvs_print_services(const struct sp_ipvs_state *st, struct sp_buf *out)
{
	for (size_t i = 0; i < st->n_services; i++) {
		const struct sp_ipvs_service *svc = &st->services[i];

		print_service_line(svc, out);
		for (size_t j = 0; j < svc->n_dests; j++)
			print_dest_line(svc, &svc->dests[j], out);
	}
}

void sp_ipvs_print_link(const struct sp_ipvs_state *st, struct sp_buf *out)
{
	for (size_t i = 0; i < st->n_link_addrs; i++) {
		const struct sp_addr *a = &st->link_addrs[i];
		char ab[SP_ADDRSTRLEN];

		sp_buf_addf(out, "ip %saddr add %s/%u dev %s\n", a->family == AF_INET6 ? "-6 " : "",
			    sp_addr_format(a, ab), a->family == AF_INET6 ? 128 : 32, SP_IPVS_LINK);
	}
}

void sp_ipvs_print_rules(const struct sp_ipvs_state *st, struct sp_buf *out)
{
	bool route[2] = {false, false};

	for (size_t i = 0; i < st->n_rules; i++) {
		const struct sp_ipvs_rule *r = &st->rules[i];
		bool v6 = r->addr.family == AF_INET6;
		char ab[SP_ADDRSTRLEN];

		route[v6] = true;
		if (!r->port && r->pref == SP_IPVS_LOCAL_PREF) {
			sp_buf_addf(out, "ip %srule add iif lo lookup %u pref %u\n",
				    v6 ? "-6 " : "", SP_IPVS_TABLE, r->pref);
			continue;
		}
		if (!r->port) {
			sp_buf_addf(out, "ip %srule add fwmark 0x%x/0x%x lookup %u pref %u\n",
				    v6 ? "-6 " : "", SP_IPVS_CAPTURE_MARK, SP_IPVS_CAPTURE_MARK,
				    SP_IPVS_TABLE, r->pref);
			continue;
		}
		sp_buf_addf(out, "ip %srule add to %s/%u ipproto %s dport %u lookup %u pref %u\n",
			    v6 ? "-6 " : "", sp_addr_format(&r->addr, ab), v6 ? 128 : 32,
			    sp_proto_name_lower(r->protocol), r->port, SP_IPVS_TABLE, r->pref);
	}
	for (int v6 = 0; v6 < 2; v6++) {
		char ab[SP_ADDRSTRLEN];

		if (!route[v6])
			continue;
		sp_buf_addf(out, "ip %sroute add local default dev lo table %u", v6 ? "-6 " : "",
			    SP_IPVS_TABLE);
		if (st->route_src[v6].family)
			sp_buf_addf(out, " src %s", sp_addr_format(&st->route_src[v6], ab));
		sp_buf_add(out, "\n");
	}
}

void sp_ipvs_print_iptables(const struct sp_ipvs_state *st, int family, struct sp_buf *out)
{
	const struct sp_ipt_ruleset *rs = family == AF_INET6 ? &st->ipt6 : &st->ipt;

	sp_ipt_print_table(&rs->tables[SP_IPT_NAT], out);
	sp_ipt_print_table(&rs->tables[SP_IPT_FILTER], out);
	sp_ipvs_print_mangle(st, family, out);
}

void sp_ipvs_print_mangle(const struct sp_ipvs_state *st, int family, struct sp_buf *out)
{
	const struct sp_ipt_table *t = family == AF_INET6 ? &st->mangle6 : &st->mangle;

	if (sp_ipt_chain_find(t, "KUBE-IPVS-CAPTURE"))
		sp_ipt_print_table(t, out);
}

void sp_ipvs_print_sets(const struct sp_ipvs_state *st, struct sp_buf *out)
{
	for (int v6 = 0; v6 < 1 + st->has_ipv6; v6++) {
		int f = v6 ? AF_INET6 : AF_INET;

		for (int id = 0; id < SP_IPVS_N_SETS; id++) {
			const struct sp_ipvs_set *set = &st->sets[v6][id];
			const char *name = sp_ipvs_set_name(id, f);

			sp_buf_addf(out, "create %s %s family %s maxelem %u\n", name,
				    sp_ipvs_set_type(id), v6 ? "inet6" : "inet",
				    SP_IPVS_SET_MAXELEM);
			for (size_t i = 0; i < set->n_entries; i++)
				sp_buf_addf(out, "add %s %s\n", name, set->entries[i]);
		}
	}
}

void sp_ipvs_print(const struct sp_ipvs_state *st, struct sp_buf *out)
{
	sp_buf_add(out, "# ipvsadm-save -n\n");
	sp_ipvs_print_services(st, out);
	sp_buf_addf(out, "# ip: %s addresses\n", SP_IPVS_LINK);
	sp_ipvs_print_link(st, out);
	sp_buf_add(out, "# ip: capture rules\n");
	sp_ipvs_print_rules(st, out);
	sp_buf_add(out, "# ipset restore\n");
	sp_ipvs_print_sets(st, out);
	sp_buf_add(out, "# iptables-save\n");
	sp_ipvs_print_iptables(st, AF_INET, out);
	if (st->has_ipv6) {
		sp_buf_add(out, "# ip6tables-save\n");
		sp_ipvs_print_iptables(st, AF_INET6, out);
	}
}

static void json_str(struct sp_buf *out, const char *s)
{
	sp_buf_add(out, "\"");
	for (const unsigned char *c = (const unsigned char *)(s ? s : ""); *c; c++) {
		if (*c == '"' || *c == '\\')
			sp_buf_addf(out, "\\%c", *c);
		else if (*c < 0x20)
			sp_buf_addf(out, "\\u%04x", *c);
		else
			sp_buf_addn(out, (const char *)c, 1);
	}
	sp_buf_add(out, "\"");
}

static void json_addr(struct sp_buf *out, const struct sp_addr *a)
{
	char ab[SP_ADDRSTRLEN];

	json_str(out, sp_addr_format(a, ab));
}

static void json_service(struct sp_buf *out, const struct sp_ipvs_service *svc)
{
	sp_buf_add(out, "{\"address\": ");
	json_addr(out, &svc->addr);
	sp_buf_addf(out, ", \"protocol\": \"%s\", \"port\": %u, \"scheduler\": ",
		    sp_proto_name(svc->protocol), svc->port);
	json_str(out, svc->scheduler);
	sp_buf_addf(out, ", \"persistent\": %s, \"timeout\": %u, \"origin\": ",
		    svc->flags & SP_IPVS_SVC_F_PERSISTENT ? "true" : "false", svc->timeout);
	json_str(out, svc->origin);
	sp_buf_add(out, ", \"realServers\": [");
	for (size_t j = 0; j < svc->n_dests; j++) {
		sp_buf_add(out, j ? ", {\"address\": " : "{\"address\": ");
		json_addr(out, &svc->dests[j].addr);
		sp_buf_addf(out, ", \"port\": %u, \"weight\": %u, \"forward\": \"masq\"}",
			    svc->dests[j].port, svc->dests[j].weight);
	}
	sp_buf_add(out, "]}");
}

void sp_ipvs_print_json(const struct sp_ipvs_state *st, struct sp_buf *out)
{
	struct sp_buf rules;

	sp_buf_add(out, "{\n  \"virtualServers\": [");
	for (size_t i = 0; i < st->n_services; i++) {
		sp_buf_add(out, i ? ",\n    " : "\n    ");
		json_service(out, &st->services[i]);
	}
	sp_buf_addf(out, "%s],\n  \"linkAddresses\": [", st->n_services ? "\n  " : "");
	for (size_t i = 0; i < st->n_link_addrs; i++) {
		if (i)
			sp_buf_add(out, ", ");
		json_addr(out, &st->link_addrs[i]);
	}
	sp_buf_add(out, "],\n  \"captureRules\": [");
	for (size_t i = 0; i < st->n_rules; i++) {
		const struct sp_ipvs_rule *r = &st->rules[i];

		sp_buf_add(out, i ? ", {\"address\": " : "{\"address\": ");
		json_addr(out, &r->addr);
		sp_buf_addf(out,
			    ", \"protocol\": \"%s\", \"port\": %u, \"table\": %u, \"pref\": %u}",
			    sp_proto_name(r->protocol), r->port, SP_IPVS_TABLE, r->pref);
	}
	sp_buf_add(out, "],\n  \"ipsets\": ");
	sp_buf_init(&rules);
	sp_ipvs_print_sets(st, &rules);
	json_str(out, rules.data);
	sp_buf_free(&rules);
	sp_buf_add(out, ",\n  \"iptables\": ");
	sp_buf_init(&rules);
	sp_ipvs_print_iptables(st, AF_INET, &rules);
	json_str(out, rules.data);
	sp_buf_reset(&rules);
	sp_buf_add(out, ",\n  \"ip6tables\": ");
	if (st->has_ipv6)
		sp_ipvs_print_iptables(st, AF_INET6, &rules);
	json_str(out, rules.data);
	sp_buf_free(&rules);
	sp_buf_add(out, "\n}\n");
}
