/* The IPVS state containers shared by the lowering (desired) and the
 * reconciler (read back): building, ordering, lookup. Pure. */
#include "svcproxy/ipvs.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

void sp_ipvs_state_init(struct sp_ipvs_state *st)
{
	memset(st, 0, sizeof(*st));
	sp_ipt_ruleset_init(&st->ipt, AF_INET);
	sp_ipt_ruleset_init(&st->ipt6, AF_INET6);
	sp_ipt_table_init(&st->mangle, SP_IPT_MANGLE);
	st->mangle.family = AF_INET;
	sp_ipt_table_init(&st->mangle6, SP_IPT_MANGLE);
	st->mangle6.family = AF_INET6;
}

static void set_free(struct sp_ipvs_set *set)
{
	for (size_t i = 0; i < set->n_entries; i++)
		free(set->entries[i]);
	free(set->entries);
	memset(set, 0, sizeof(*set));
}

void sp_ipvs_state_free(struct sp_ipvs_state *st)
{
	for (size_t i = 0; i < st->n_services; i++) {
		free(st->services[i].dests);
		free(st->services[i].origin);
	}
	free(st->services);
	free(st->link_addrs);
	free(st->rules);
	sp_ipt_ruleset_free(&st->ipt);
	sp_ipt_ruleset_free(&st->ipt6);
	sp_ipt_table_free(&st->mangle);
	sp_ipt_table_free(&st->mangle6);
	for (int f = 0; f < 2; f++)
		for (int i = 0; i < SP_IPVS_N_SETS; i++)
			set_free(&st->sets[f][i]);
	memset(st, 0, sizeof(*st));
}

struct sp_ipvs_service *sp_ipvs_add_service(struct sp_ipvs_state *st)
{
	struct sp_ipvs_service *svc =
		sp_array_push(&st->services, &st->n_services, &st->cap_services, sizeof(*svc));

	svc->order = st->n_services - 1;
	return svc;
}

struct sp_ipvs_dest *sp_ipvs_add_dest(struct sp_ipvs_service *svc)
{
	return sp_array_push(&svc->dests, &svc->n_dests, &svc->cap_dests,
			     sizeof(struct sp_ipvs_dest));
}

void sp_ipvs_add_link_addr(struct sp_ipvs_state *st, const struct sp_addr *a)
{
	struct sp_addr *slot = sp_array_push(&st->link_addrs, &st->n_link_addrs,
					     &st->cap_link_addrs, sizeof(*slot));

	*slot = *a;
}

void sp_ipvs_add_rule(struct sp_ipvs_state *st, const struct sp_ipvs_rule *r)
{
	struct sp_ipvs_rule *slot =
		sp_array_push(&st->rules, &st->n_rules, &st->cap_rules, sizeof(*slot));

	*slot = *r;
}

/* Address, then protocol, then port: the order every IPVS list is kept in. */
static int cmp_endpoint(const struct sp_addr *a_addr, uint8_t a_proto, uint16_t a_port,
			const struct sp_addr *b_addr, uint8_t b_proto, uint16_t b_port)
{
	int c = sp_addr_cmp(a_addr, b_addr);

	if (c)
		return c;
	if (a_proto != b_proto)
		return a_proto < b_proto ? -1 : 1;
	if (a_port != b_port)
		return a_port < b_port ? -1 : 1;
	return 0;
}

int sp_ipvs_service_cmp(const struct sp_ipvs_service *a, const struct sp_ipvs_service *b)
{
	return cmp_endpoint(&a->addr, a->protocol, a->port, &b->addr, b->protocol, b->port);
}

int sp_ipvs_dest_cmp(const struct sp_ipvs_dest *a, const struct sp_ipvs_dest *b)
{
	return cmp_endpoint(&a->addr, 0, a->port, &b->addr, 0, b->port);
}

int sp_ipvs_rule_cmp(const struct sp_ipvs_rule *a, const struct sp_ipvs_rule *b)
{
	int c = cmp_endpoint(&a->addr, a->protocol, a->port, &b->addr, b->protocol, b->port);

	if (c)
		return c;
	if (a->pref != b->pref)
		return a->pref < b->pref ? -1 : 1;
	return 0;
}

static int service_order_cmp(const void *pa, const void *pb)
{
	const struct sp_ipvs_service *a = pa, *b = pb;
	int c = sp_ipvs_service_cmp(a, b);

	if (c)
		return c;
	return a->order < b->order ? -1 : a->order > b->order;
}

static int dest_qcmp(const void *a, const void *b)
{
	return sp_ipvs_dest_cmp(a, b);
}

static int addr_qcmp(const void *a, const void *b)
{
	return sp_addr_cmp(a, b);
}

static int rule_qcmp(const void *a, const void *b)
{
	return sp_ipvs_rule_cmp(a, b);
}

static size_t uniq(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
	char *p = base;
	size_t out = 0;

	for (size_t i = 0; i < n; i++) {
		if (out && cmp(p + (out - 1) * size, p + i * size) == 0)
			continue;
		if (out != i)
			memcpy(p + out * size, p + i * size, size);
		out++;
	}
	return out;
}

static int str_qcmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void set_sort(struct sp_ipvs_set *set)
{
	size_t out = 0;

	if (set->n_entries)
		qsort(set->entries, set->n_entries, sizeof(*set->entries), str_qcmp);
	for (size_t i = 0; i < set->n_entries; i++) {
		if (out && !strcmp(set->entries[out - 1], set->entries[i])) {
			free(set->entries[i]);
			continue;
		}
		set->entries[out++] = set->entries[i];
	}
	set->n_entries = out;
}

void sp_ipvs_state_sort(struct sp_ipvs_state *st)
{
	if (st->n_services)
		qsort(st->services, st->n_services, sizeof(*st->services), service_order_cmp);
	for (size_t i = 0; i < st->n_services; i++) {
		struct sp_ipvs_service *svc = &st->services[i];

		if (svc->n_dests)
			qsort(svc->dests, svc->n_dests, sizeof(*svc->dests), dest_qcmp);
		svc->n_dests = uniq(svc->dests, svc->n_dests, sizeof(*svc->dests), dest_qcmp);
	}
	if (st->n_link_addrs)
		qsort(st->link_addrs, st->n_link_addrs, sizeof(*st->link_addrs), addr_qcmp);
	st->n_link_addrs =
		uniq(st->link_addrs, st->n_link_addrs, sizeof(*st->link_addrs), addr_qcmp);
	if (st->n_rules)
		qsort(st->rules, st->n_rules, sizeof(*st->rules), rule_qcmp);
	st->n_rules = uniq(st->rules, st->n_rules, sizeof(*st->rules), rule_qcmp);
	for (int f = 0; f < 2; f++)
		for (int i = 0; i < SP_IPVS_N_SETS; i++)
			set_sort(&st->sets[f][i]);
}

static const struct {
	const char *name; /* without the "KUBE-" / "KUBE6-" prefix */
	const char *type;
} set_defs[SP_IPVS_N_SETS] = {
	[SP_IPVS_SET_CLUSTER_IP] = {"CLUSTER-IP", "hash:ip,port"},
	[SP_IPVS_SET_NODE_PORT] = {"NODE-PORT", "hash:ip,port"},
	[SP_IPVS_SET_EXTERNAL_IP] = {"EXTERNAL-IP", "hash:ip,port"},
	[SP_IPVS_SET_LOAD_BALANCER] = {"LOAD-BALANCER", "hash:ip,port"},
	[SP_IPVS_SET_LB_FW] = {"LOAD-BALANCER-FW", "hash:ip,port"},
	[SP_IPVS_SET_LB_SOURCE_CIDR] = {"LOAD-BALANCER-SOURCE-CIDR", "hash:ip,port,net"},
	[SP_IPVS_SET_LOCAL_NO_ENDPOINT] = {"LOCAL-NO-ENDPOINT", "hash:ip,port"},
	[SP_IPVS_SET_LOOP_BACK] = {"LOOP-BACK", "hash:ip,port,ip"},
	[SP_IPVS_SET_CAPTURE] = {"IPVS-CAPTURE", "hash:ip,port"},
};

const char *sp_ipvs_set_name(enum sp_ipvs_set_id id, int family)
{
	static char names[2][SP_IPVS_N_SETS][32];
	int v6 = family == AF_INET6;

	if (!names[v6][id][0])
		snprintf(names[v6][id], sizeof(names[v6][id]), "%s%s", v6 ? "KUBE6-" : "KUBE-",
			 set_defs[id].name);
	return names[v6][id];
}

const char *sp_ipvs_set_type(enum sp_ipvs_set_id id)
{
	return set_defs[id].type;
}

void sp_ipvs_set_add(struct sp_ipvs_state *st, int family, enum sp_ipvs_set_id id,
		     const char *entry)
{
	struct sp_ipvs_set *set = &st->sets[family == AF_INET6][id];

	*(char **)sp_array_push(&set->entries, &set->n_entries, &set->cap_entries, sizeof(char *)) =
		sp_xstrdup(entry);
}

bool sp_ipvs_set_has(const struct sp_ipvs_set *set, const char *entry)
{
	return set->n_entries &&
	       bsearch(&entry, set->entries, set->n_entries, sizeof(*set->entries), str_qcmp);
}

const char *sp_ipvs_entry_ipport(const struct sp_addr *a, uint8_t proto, uint16_t port, char *buf)
{
	char ab[SP_ADDRSTRLEN];

	snprintf(buf, SP_IPVS_ENTRYLEN, "%s,%s:%u", sp_addr_format(a, ab),
		 sp_proto_name_lower(proto), port);
	return buf;
}

static int service_key_cmp(const void *key, const void *elem)
{
	return sp_ipvs_service_cmp(key, elem);
}

const struct sp_ipvs_service *sp_ipvs_find_service(const struct sp_ipvs_state *st,
						   const struct sp_ipvs_service *key)
{
	if (!st->n_services)
		return NULL;
	return bsearch(key, st->services, st->n_services, sizeof(*st->services), service_key_cmp);
}

const struct sp_ipvs_dest *sp_ipvs_find_dest(const struct sp_ipvs_service *svc,
					     const struct sp_ipvs_dest *key)
{
	if (!svc->n_dests)
		return NULL;
	return bsearch(key, svc->dests, svc->n_dests, sizeof(*svc->dests), dest_qcmp);
}

bool sp_ipvs_has_link_addr(const struct sp_ipvs_state *st, const struct sp_addr *a)
{
	return st->n_link_addrs &&
	       bsearch(a, st->link_addrs, st->n_link_addrs, sizeof(*a), addr_qcmp) != NULL;
}

bool sp_ipvs_has_rule(const struct sp_ipvs_state *st, const struct sp_addr *a, uint8_t proto,
		      uint16_t port)
{
	/* Rules are sorted by (addr, proto, port, pref): any pref will do. */
	for (size_t lo = 0, hi = st->n_rules; lo < hi;) {
		size_t mid = lo + (hi - lo) / 2;
		const struct sp_ipvs_rule *r = &st->rules[mid];
		struct sp_ipvs_rule key = {
			.addr = *a, .protocol = proto, .port = port, .pref = r->pref};
		int c = sp_ipvs_rule_cmp(&key, r);

		if (c == 0)
			return true;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return false;
}

bool sp_ipvs_service_attrs_equal(const struct sp_ipvs_service *a, const struct sp_ipvs_service *b)
{
	return strcmp(a->scheduler, b->scheduler) == 0 && a->flags == b->flags &&
	       a->timeout == b->timeout && a->netmask == b->netmask;
}

uint32_t sp_ipvs_host_netmask(int family)
{
	return family == AF_INET6 ? 128 : 0xffffffffu;
}

static const char *addr_port(const struct sp_addr *a, uint16_t port, char *buf, size_t len)
{
	char ab[SP_ADDRSTRLEN];

	sp_addr_format(a, ab);
	if (a->family == AF_INET6)
		snprintf(buf, len, "[%s]:%u", ab, port);
	else
		snprintf(buf, len, "%s:%u", ab, port);
	return buf;
}

const char *sp_ipvs_service_desc(const struct sp_ipvs_service *svc, char *buf)
{
	char ap[SP_IPVS_DESCLEN - 8];

	snprintf(buf, SP_IPVS_DESCLEN, "%s %s", sp_proto_name(svc->protocol),
		 addr_port(&svc->addr, svc->port, ap, sizeof(ap)));
	return buf;
}

const char *sp_ipvs_dest_desc(const struct sp_ipvs_dest *d, char *buf)
{
	return addr_port(&d->addr, d->port, buf, SP_IPVS_DESCLEN);
}
