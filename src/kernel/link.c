/* rtnetlink for IPVS mode, with libnl-route-3: kube-ipvs0 and its addresses,
 * the capture rules and table, and the sysctls. */
#include "svcproxy/ipvs_link.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fib_rules.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/route.h>
#include <netlink/route/rule.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct sp_ipvs_rtnl {
	struct nl_sock *sock;
};

struct sp_ipvs_rtnl *sp_ipvs_rtnl_open(struct sp_diag *diag)
{
	struct sp_ipvs_rtnl *rt = sp_xcalloc(1, sizeof(*rt));
	int ret;

	rt->sock = nl_socket_alloc();
	if (!rt->sock)
		sp_xmalloc(SIZE_MAX);
	ret = nl_connect(rt->sock, NETLINK_ROUTE);
	if (ret < 0) {
		sp_diag_error(diag, "ipvs: rtnetlink socket: %s", nl_geterror(ret));
		sp_ipvs_rtnl_close(rt);
		return NULL;
	}
	if (fcntl(nl_socket_get_fd(rt->sock), F_SETFD, FD_CLOEXEC) < 0) {
		sp_diag_error(diag, "ipvs: rtnetlink socket: %s", strerror(errno));
		sp_ipvs_rtnl_close(rt);
		return NULL;
	}
	nl_socket_set_buffer_size(rt->sock, 1 << 20, 1 << 20);
	return rt;
}

void sp_ipvs_rtnl_close(struct sp_ipvs_rtnl *rt)
{
	if (!rt)
		return;
	nl_socket_free(rt->sock);
	free(rt);
}

static struct nl_addr *host_addr(const struct sp_addr *a)
{
	struct nl_addr *n = nl_addr_build(a->family, a->u.bytes, sp_addr_len(a));

	if (!n)
		sp_xmalloc(SIZE_MAX);
	nl_addr_set_prefixlen(n, a->family == AF_INET6 ? 128 : 32);
	return n;
}

static bool from_nl_addr(struct nl_addr *n, struct sp_addr *out)
{
	int family = n ? nl_addr_get_family(n) : 0;
	size_t want = family == AF_INET6 ? 16 : family == AF_INET ? 4 : 0;

	if (!want || nl_addr_get_len(n) != want)
		return false;
	memset(out, 0, sizeof(*out));
	out->family = family;
	memcpy(out->u.bytes, nl_addr_get_binary_addr(n), want);
	return true;
}

int sp_ipvs_link_find(struct sp_ipvs_rtnl *rt, struct sp_diag *diag)
{
	struct rtnl_link *link = NULL;
	int ret = rtnl_link_get_kernel(rt->sock, 0, SP_IPVS_LINK, &link);
	int ifindex;

	if (ret == -NLE_OBJ_NOTFOUND || ret == -NLE_NODEV)
		return 0;
	if (ret < 0) {
		sp_diag_error(diag, "ipvs: reading link %s: %s", SP_IPVS_LINK, nl_geterror(ret));
		return -1;
	}
	ifindex = rtnl_link_get_ifindex(link);
	rtnl_link_put(link);
	return ifindex;
}

static int check_link(struct sp_ipvs_rtnl *rt, struct rtnl_link *link, struct sp_diag *diag)
{
	const char *type = rtnl_link_get_type(link);
	int ret;

	if (!type || strcmp(type, "dummy") != 0) {
		sp_diag_error(diag,
			      "ipvs: link %s exists and is a %s link, not a dummy one; "
			      "refusing to use it",
			      SP_IPVS_LINK, type ? type : "plain");
		return -1;
	}
	if (rtnl_link_get_flags(link) & IFF_UP) {
		/* Up, it would answer for the service addresses on its own. */
		struct rtnl_link *change = rtnl_link_alloc();

		if (!change)
			sp_xmalloc(SIZE_MAX);
		rtnl_link_unset_flags(change, IFF_UP);
		ret = rtnl_link_change(rt->sock, link, change, 0);
		rtnl_link_put(change);
		if (ret < 0) {
			sp_diag_error(diag, "ipvs: setting %s down: %s", SP_IPVS_LINK,
				      nl_geterror(ret));
			return -1;
		}
	}
	return rtnl_link_get_ifindex(link);
}

int sp_ipvs_link_ensure(struct sp_ipvs_rtnl *rt, struct sp_diag *diag)
{
	struct rtnl_link *link = NULL;
	int ret = rtnl_link_get_kernel(rt->sock, 0, SP_IPVS_LINK, &link);

	if (ret == -NLE_OBJ_NOTFOUND || ret == -NLE_NODEV) {
		struct rtnl_link *create = rtnl_link_alloc();

		if (!create)
			sp_xmalloc(SIZE_MAX);
		rtnl_link_set_name(create, SP_IPVS_LINK);
		ret = rtnl_link_set_type(create, "dummy");
		if (ret >= 0)
			ret = rtnl_link_add(rt->sock, create, NLM_F_CREATE | NLM_F_EXCL);
		rtnl_link_put(create);
		if (ret < 0 && ret != -NLE_EXIST) {
			sp_diag_error(diag,
				      "ipvs: creating dummy link %s: %s (does the kernel have "
				      "dummy links, module dummy?)",
				      SP_IPVS_LINK, nl_geterror(ret));
			return -1;
		}
		ret = rtnl_link_get_kernel(rt->sock, 0, SP_IPVS_LINK, &link);
	}
	if (ret < 0) {
		sp_diag_error(diag, "ipvs: reading link %s: %s", SP_IPVS_LINK, nl_geterror(ret));
		return -1;
	}
	ret = check_link(rt, link, diag);
	rtnl_link_put(link);
	return ret;
}

int sp_ipvs_link_delete(struct sp_ipvs_rtnl *rt, struct sp_diag *diag)
{
	struct rtnl_link *link = rtnl_link_alloc();
	int ret;

	if (!link)
		sp_xmalloc(SIZE_MAX);
	rtnl_link_set_name(link, SP_IPVS_LINK);
	ret = rtnl_link_delete(rt->sock, link);
	rtnl_link_put(link);
	if (ret < 0 && ret != -NLE_OBJ_NOTFOUND && ret != -NLE_NODEV) {
		sp_diag_error(diag, "ipvs: deleting link %s: %s", SP_IPVS_LINK, nl_geterror(ret));
		return -1;
	}
	return 0;
}

int sp_ipvs_link_addrs(struct sp_ipvs_rtnl *rt, int ifindex, struct sp_ipvs_state *out,
		       struct sp_diag *diag)
{
	struct nl_cache *cache = NULL;
	int ret = rtnl_addr_alloc_cache(rt->sock, &cache);

	if (ret < 0) {
		sp_diag_error(diag, "ipvs: reading addresses: %s", nl_geterror(ret));
		return -1;
	}
	for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
		struct rtnl_addr *a = (struct rtnl_addr *)o;
		struct sp_addr sa;

		if (rtnl_addr_get_ifindex(a) != ifindex)
			continue;
		if (from_nl_addr(rtnl_addr_get_local(a), &sa))
			sp_ipvs_add_link_addr(out, &sa);
	}
	nl_cache_free(cache);
	return 0;
}

static bool nodeport_candidate(const struct sp_addr *a)
{
	if (a->family == AF_INET)
		return (ntohl(a->u.v4.s_addr) >> 24) != 127;
	return !IN6_IS_ADDR_LOOPBACK(&a->u.v6) && !IN6_IS_ADDR_LINKLOCAL(&a->u.v6);
}

int sp_ipvs_local_addrs(struct sp_ipvs_rtnl *rt, struct sp_addr **out, size_t *n,
			struct sp_diag *diag)
{
	struct nl_cache *cache = NULL;
	int skip = sp_ipvs_link_find(rt, diag);
	size_t cap = 0;
	int ret;

	*out = NULL;
	*n = 0;
	if (skip < 0)
		return -1;
	ret = rtnl_addr_alloc_cache(rt->sock, &cache);
	if (ret < 0) {
		sp_diag_error(diag, "ipvs: reading addresses: %s", nl_geterror(ret));
		return -1;
	}
	for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
		struct rtnl_addr *a = (struct rtnl_addr *)o;
		struct sp_addr sa;

		if (rtnl_addr_get_ifindex(a) == skip ||
		    !from_nl_addr(rtnl_addr_get_local(a), &sa) || !nodeport_candidate(&sa))
			continue;
		*(struct sp_addr *)sp_array_push(out, n, &cap, sizeof(sa)) = sa;
	}
	nl_cache_free(cache);
	return 0;
}

static struct rtnl_addr *link_addr(int ifindex, const struct sp_addr *a)
{
	struct rtnl_addr *ra = rtnl_addr_alloc();
	struct nl_addr *local = host_addr(a);

	if (!ra)
		sp_xmalloc(SIZE_MAX);
	rtnl_addr_set_ifindex(ra, ifindex);
	rtnl_addr_set_family(ra, a->family);
	rtnl_addr_set_local(ra, local);
	rtnl_addr_set_prefixlen(ra, a->family == AF_INET6 ? 128 : 32);
	if (a->family == AF_INET6)
		rtnl_addr_set_flags(ra, IFA_F_NODAD);
	nl_addr_put(local);
	return ra;
}

int sp_ipvs_link_addr_add(struct sp_ipvs_rtnl *rt, int ifindex, const struct sp_addr *a,
			  struct sp_diag *diag)
{
	struct rtnl_addr *ra = link_addr(ifindex, a);
	int ret = rtnl_addr_add(rt->sock, ra, NLM_F_CREATE | NLM_F_REPLACE);
	char ab[SP_ADDRSTRLEN];

	rtnl_addr_put(ra);
	if (ret < 0 && ret != -NLE_EXIST) {
		sp_diag_error(diag, "ipvs: adding %s to %s: %s", sp_addr_format(a, ab),
			      SP_IPVS_LINK, nl_geterror(ret));
		return -1;
	}
	return 0;
}

int sp_ipvs_link_addr_del(struct sp_ipvs_rtnl *rt, int ifindex, const struct sp_addr *a,
			  struct sp_diag *diag)
{
	struct rtnl_addr *ra = link_addr(ifindex, a);
	int ret = rtnl_addr_delete(rt->sock, ra, 0);
	char ab[SP_ADDRSTRLEN];

	rtnl_addr_put(ra);
	if (ret < 0 && ret != -NLE_NOADDR && ret != -NLE_OBJ_NOTFOUND) {
		sp_diag_error(diag, "ipvs: removing %s from %s: %s", sp_addr_format(a, ab),
			      SP_IPVS_LINK, nl_geterror(ret));
		return -1;
	}
	return 0;
}

/* `fwmark MARK/MARK lookup SP_IPVS_TABLE pref SP_IPVS_CAPTURE_PREF` and
 * nothing else (no address, protocol or port selector). */
static bool is_capture_mark_rule(struct rtnl_rule *r)
{
	uint8_t proto = 0;
	uint16_t start = 0, end = 0;

	return rtnl_rule_get_mark(r) == SP_IPVS_CAPTURE_MARK &&
	       rtnl_rule_get_mask(r) == SP_IPVS_CAPTURE_MARK &&
	       rtnl_rule_get_prio(r) == SP_IPVS_CAPTURE_PREF && !rtnl_rule_get_dst(r) &&
	       rtnl_rule_get_ipproto(r, &proto) < 0 && rtnl_rule_get_dport(r, &start, &end) < 0;
}

/* `iif lo lookup SP_IPVS_TABLE pref SP_IPVS_LOCAL_PREF`. */
static bool is_local_fallback_rule(struct rtnl_rule *r)
{
	const char *iif = rtnl_rule_get_iif(r);

	return iif && !strcmp(iif, "lo") && rtnl_rule_get_prio(r) == SP_IPVS_LOCAL_PREF &&
	       !rtnl_rule_get_dst(r);
}

int sp_ipvs_rules_dump(struct sp_ipvs_rtnl *rt, struct sp_ipvs_state *out, struct sp_diag *diag)
{
	struct nl_cache *cache = NULL;
	int ret = rtnl_rule_alloc_cache(rt->sock, AF_UNSPEC, &cache);

	if (ret < 0) {
		sp_diag_error(diag, "ipvs: reading policy rules: %s", nl_geterror(ret));
		return -1;
	}
	for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
		struct rtnl_rule *r = (struct rtnl_rule *)o;
		struct sp_ipvs_rule rule = {0};
		uint16_t start = 0, end = 0;
		uint8_t proto = 0;
		struct nl_addr *dst;

		if (rtnl_rule_get_table(r) != SP_IPVS_TABLE)
			continue;
		if (is_capture_mark_rule(r) || is_local_fallback_rule(r)) {
			rule.addr.family = rtnl_rule_get_family(r);
			rule.pref = rtnl_rule_get_prio(r);
			sp_ipvs_add_rule(out, &rule);
			continue;
		}
		dst = rtnl_rule_get_dst(r);
		if (!from_nl_addr(dst, &rule.addr) ||
		    nl_addr_get_prefixlen(dst) != (rule.addr.family == AF_INET6 ? 128u : 32u) ||
		    rtnl_rule_get_ipproto(r, &proto) < 0 ||
		    rtnl_rule_get_dport(r, &start, &end) < 0 || start != end) {
			sp_diag_warn(diag,
				     "ipvs: a policy rule of table %u (pref %u) is not one of "
				     "ours; left alone",
				     SP_IPVS_TABLE, rtnl_rule_get_prio(r));
			continue;
		}
		rule.protocol = proto;
		rule.port = start;
		rule.pref = rtnl_rule_get_prio(r);
		sp_ipvs_add_rule(out, &rule);
	}
	nl_cache_free(cache);
	return 0;
}

static struct rtnl_rule *make_rule(const struct sp_ipvs_rule *r)
{
	struct rtnl_rule *rule = rtnl_rule_alloc();
	struct nl_addr *dst;

	if (!rule)
		sp_xmalloc(SIZE_MAX);
	rtnl_rule_set_family(rule, r->addr.family);
	rtnl_rule_set_table(rule, SP_IPVS_TABLE);
	rtnl_rule_set_prio(rule, r->pref);
	rtnl_rule_set_action(rule, FR_ACT_TO_TBL);
	if (!r->port && r->pref == SP_IPVS_LOCAL_PREF) {
		rtnl_rule_set_iif(rule, "lo");
		return rule;
	}
	if (!r->port) {
		rtnl_rule_set_mark(rule, SP_IPVS_CAPTURE_MARK);
		rtnl_rule_set_mask(rule, SP_IPVS_CAPTURE_MARK);
		return rule;
	}
	dst = host_addr(&r->addr);
	rtnl_rule_set_dst(rule, dst);
	rtnl_rule_set_ipproto(rule, r->protocol);
	rtnl_rule_set_dport(rule, r->port);
	nl_addr_put(dst);
	return rule;
}

static const char *rule_desc(const struct sp_ipvs_rule *r, char *buf, size_t len)
{
	char ab[SP_ADDRSTRLEN];

	if (!r->port && r->pref == SP_IPVS_LOCAL_PREF) {
		snprintf(buf, len, "iif lo lookup %u pref %u", SP_IPVS_TABLE, r->pref);
		return buf;
	}
	if (!r->port) {
		snprintf(buf, len, "fwmark 0x%x/0x%x lookup %u pref %u", SP_IPVS_CAPTURE_MARK,
			 SP_IPVS_CAPTURE_MARK, SP_IPVS_TABLE, r->pref);
		return buf;
	}
	snprintf(buf, len, "to %s ipproto %s dport %u lookup %u pref %u",
		 sp_addr_format(&r->addr, ab), sp_proto_name_lower(r->protocol), r->port,
		 SP_IPVS_TABLE, r->pref);
	return buf;
}

int sp_ipvs_rule_add(struct sp_ipvs_rtnl *rt, const struct sp_ipvs_rule *r, struct sp_diag *diag)
{
	struct rtnl_rule *rule = make_rule(r);
	int ret = rtnl_rule_add(rt->sock, rule, NLM_F_EXCL);
	char d[128];

	rtnl_rule_put(rule);
	if (ret < 0 && ret != -NLE_EXIST) {
		sp_diag_error(diag, "ipvs: adding rule %s: %s", rule_desc(r, d, sizeof(d)),
			      nl_geterror(ret));
		return -1;
	}
	return 0;
}

int sp_ipvs_rule_del(struct sp_ipvs_rtnl *rt, const struct sp_ipvs_rule *r, struct sp_diag *diag)
{
	struct rtnl_rule *rule = make_rule(r);
	int ret = rtnl_rule_delete(rt->sock, rule, 0);
	char d[128];

	rtnl_rule_put(rule);
	if (ret < 0 && ret != -NLE_OBJ_NOTFOUND) {
		sp_diag_error(diag, "ipvs: deleting rule %s: %s", rule_desc(r, d, sizeof(d)),
			      nl_geterror(ret));
		return -1;
	}
	return 0;
}

static struct rtnl_route *table_route(int family)
{
	struct rtnl_route *route = rtnl_route_alloc();
	struct rtnl_nexthop *nh = rtnl_route_nh_alloc();
	uint8_t zero[16] = {0};
	struct nl_addr *dst = nl_addr_build(family, zero, family == AF_INET6 ? 16 : 4);

	if (!route || !nh || !dst)
		sp_xmalloc(SIZE_MAX);
	nl_addr_set_prefixlen(dst, 0);
	rtnl_route_set_family(route, family);
	rtnl_route_set_table(route, SP_IPVS_TABLE);
	rtnl_route_set_type(route, RTN_LOCAL);
	rtnl_route_set_scope(route, RT_SCOPE_HOST);
	rtnl_route_set_protocol(route, RTPROT_STATIC);
	rtnl_route_set_dst(route, dst);
	rtnl_route_nh_set_ifindex(nh, (int)if_nametoindex("lo"));
	rtnl_route_add_nexthop(route, nh);
	nl_addr_put(dst);
	return route;
}

static bool is_table_route(struct rtnl_route *r, const struct sp_addr *src)
{
	struct nl_addr *dst = rtnl_route_get_dst(r);
	struct rtnl_nexthop *nh;
	struct sp_addr have;
	bool has_src;

	if (rtnl_route_get_type(r) != RTN_LOCAL || !dst || nl_addr_get_prefixlen(dst) != 0 ||
	    rtnl_route_get_nnexthops(r) != 1)
		return false;
	nh = rtnl_route_nexthop_n(r, 0);
	if (!nh || rtnl_route_nh_get_ifindex(nh) != (int)if_nametoindex("lo"))
		return false;
	has_src = from_nl_addr(rtnl_route_get_pref_src(r), &have);
	if (!src || !src->family)
		return !has_src;
	return has_src && sp_addr_cmp(&have, src) == 0;
}

/* How many routes SP_IPVS_TABLE holds for family, and whether the only one
 * is our route with source src: the read that lets a sync skip the route
 * when nothing changed. -1 on error. */
static int table_routes(struct sp_ipvs_rtnl *rt, int family, const struct sp_addr *src, bool *exact,
			struct sp_diag *diag)
{
	struct nl_cache *cache = NULL;
	int ret = rtnl_route_alloc_cache(rt->sock, family, 0, &cache);
	int n = 0;

	*exact = false;
	if (ret == -NLE_AF_NOSUPPORT)
		return 0;
	if (ret < 0) {
		sp_diag_error(diag, "ipvs: reading the routes of table %u (%s): %s", SP_IPVS_TABLE,
			      family == AF_INET6 ? "IPv6" : "IPv4", nl_geterror(ret));
		return -1;
	}
	for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
		struct rtnl_route *r = (struct rtnl_route *)o;

		if (rtnl_route_get_table(r) != SP_IPVS_TABLE)
			continue;
		n++;
		*exact = is_table_route(r, src);
	}
	nl_cache_free(cache);
	*exact = *exact && n == 1;
	return n;
}

int sp_ipvs_table_route_ensure(struct sp_ipvs_rtnl *rt, int family, const struct sp_addr *src,
			       struct sp_diag *diag)
{
	struct rtnl_route *route;
	bool exact;
	int ret = table_routes(rt, family, src, &exact, diag);

	if (ret < 0)
		return -1;
	if (exact)
		return 0;
	route = table_route(family);
	if (src && src->family == family) {
		struct nl_addr *pref = host_addr(src);

		rtnl_route_set_pref_src(route, pref);
		nl_addr_put(pref);
	}
	ret = rtnl_route_add(rt->sock, route, NLM_F_CREATE | NLM_F_REPLACE);

	rtnl_route_put(route);
	if (ret < 0) {
		sp_diag_error(diag, "ipvs: adding `local default dev lo table %u` (%s): %s",
			      SP_IPVS_TABLE, family == AF_INET6 ? "IPv6" : "IPv4",
			      nl_geterror(ret));
		return -1;
	}
	return 1;
}

int sp_ipvs_table_route_del(struct sp_ipvs_rtnl *rt, int family, struct sp_diag *diag)
{
	struct rtnl_route *route;
	bool exact;
	int ret = table_routes(rt, family, NULL, &exact, diag);

	if (ret <= 0)
		return ret;
	route = table_route(family);
	ret = rtnl_route_delete(rt->sock, route, 0);
	rtnl_route_put(route);
	if (ret < 0 && ret != -NLE_OBJ_NOTFOUND && ret != -NLE_AF_NOSUPPORT) {
		sp_diag_error(diag, "ipvs: deleting the routes of table %u (%s): %s", SP_IPVS_TABLE,
			      family == AF_INET6 ? "IPv6" : "IPv4", nl_geterror(ret));
		return -1;
	}
	return 1;
}

static int read_sysctl(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");
	int ok;

	if (!f)
		return -1;
	ok = fgets(buf, (int)len, f) != NULL;
	fclose(f);
	if (!ok)
		return -1;
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

static int write_sysctl(const char *path, const char *value)
{
	FILE *f = fopen(path, "we");

	if (!f)
		return -1;
	if (fputs(value, f) < 0) {
		fclose(f);
		return -1;
	}
	return fclose(f);
}

static int ensure_sysctl(const char *name, const char *value, struct sp_diag *diag)
{
	char path[128], cur[64];
	const char *p;
	size_t n = (size_t)snprintf(path, sizeof(path), "/proc/sys/");

	for (p = name; *p && n + 1 < sizeof(path); p++)
		path[n++] = *p == '.' ? '/' : *p;
	path[n] = '\0';
	if (read_sysctl(path, cur, sizeof(cur)) < 0) {
		sp_diag_error(diag, "ipvs: sysctl %s: %s", name, strerror(errno));
		return -1;
	}
	if (strcmp(cur, value) == 0)
		return 0;
	if (write_sysctl(path, value) < 0) {
		sp_diag_error(diag, "ipvs: setting sysctl %s=%s: %s", name, value, strerror(errno));
		return -1;
	}
	if (read_sysctl(path, cur, sizeof(cur)) < 0 || strcmp(cur, value) != 0) {
		sp_diag_error(diag, "ipvs: sysctl %s reads %s after setting it to %s", name, cur,
			      value);
		return -1;
	}
	return 0;
}

int sp_ipvs_sysctls_apply(bool strict_arp, struct sp_diag *diag)
{
	static const char *const always[][2] = {
		{"net.ipv4.vs.conntrack", "1"},
		{"net.ipv4.vs.expire_nodest_conn", "1"},
		{"net.ipv4.vs.expire_quiescent_template", "1"},
		{"net.ipv4.ip_forward", "1"},
	};
	int ret = 0;

	for (size_t i = 0; i < SP_ARRAY_SIZE(always); i++)
		if (ensure_sysctl(always[i][0], always[i][1], diag) < 0)
			ret = -1;
	if (strict_arp) {
		if (ensure_sysctl("net.ipv4.conf.all.arp_ignore", "1", diag) < 0)
			ret = -1;
		if (ensure_sysctl("net.ipv4.conf.all.arp_announce", "2", diag) < 0)
			ret = -1;
	}
	return ret;
}
