/* The planner against kube-proxy's rules: a table of clusters built in C,
 * each with the plan it must give, summarised one svcport per line, in every
 * mode the rule applies to. */
#include <check.h>
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "svcproxy/plan.h"

#define NODE "worker-1"
#define OTHER "worker-2"

static struct sp_cluster cl;
static struct sp_config cfg;
static struct sp_diag diag;
static struct sp_plan plan;

/* ---- builders ---- */

static struct sp_addr ip(const char *text)
{
	struct sp_addr a;

	ck_assert_msg(sp_addr_parse(text, &a), "bad test address %s", text);
	return a;
}

static struct sp_cidr cidr(const char *text)
{
	struct sp_cidr c;

	ck_assert_msg(sp_cidr_parse(text, &c), "bad test cidr %s", text);
	return c;
}

static void push_addr(struct sp_addr **addrs, size_t *n, const char *text)
{
	*addrs = sp_xrealloc(*addrs, (*n + 1) * sizeof(**addrs));
	(*addrs)[(*n)++] = ip(text);
}

static void push_cidr(struct sp_cidr **cidrs, size_t *n, const char *text)
{
	*cidrs = sp_xrealloc(*cidrs, (*n + 1) * sizeof(**cidrs));
	(*cidrs)[(*n)++] = cidr(text);
}

/* A Service with one cluster IP per comma-separated address (or none). */
static struct sp_service *svc(const char *ns, const char *name, enum sp_service_type type,
			      const char *cluster_ips)
{
	struct sp_service *s = sp_cluster_add_service(&cl);
	char *list = sp_xstrdup(cluster_ips), *save = NULL;

	s->namespace = sp_xstrdup(ns);
	s->name = sp_xstrdup(name);
	s->type = type;
	for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save))
		push_addr(&s->cluster_ips, &s->n_cluster_ips, t);
	free(list);
	return s;
}

static void svc_port(struct sp_service *s, const char *name, uint8_t proto, uint16_t port,
		     uint16_t node_port)
{
	struct sp_service_port *p;

	s->ports = sp_xrealloc(s->ports, (s->n_ports + 1) * sizeof(*s->ports));
	p = &s->ports[s->n_ports++];
	memset(p, 0, sizeof(*p));
	p->name = sp_xstrdup(name);
	p->protocol = proto;
	p->port = port;
	p->node_port = node_port;
	p->target_port = sp_xstrdup(name[0] ? name : "8080");
}

static void svc_lb(struct sp_service *s, const char *addr, bool proxy)
{
	s->lb_ingress = sp_xrealloc(s->lb_ingress, (s->n_lb_ingress + 1) * sizeof(*s->lb_ingress));
	s->lb_ingress[s->n_lb_ingress].ip = ip(addr);
	s->lb_ingress[s->n_lb_ingress++].ip_mode_proxy = proxy;
}

/* The usual Service: default/web, port "http" 80/TCP. */
static struct sp_service *web(enum sp_service_type type)
{
	struct sp_service *s = svc("default", "web", type, "10.96.0.10");

	svc_port(s, "http", IPPROTO_TCP, 80, type == SP_SVC_CLUSTER_IP ? 0 : 30080);
	return s;
}

static struct sp_endpoint_slice *slice(const char *ns, const char *name, const char *service,
				       int family)
{
	struct sp_endpoint_slice *s = sp_cluster_add_slice(&cl);

	s->namespace = sp_xstrdup(ns);
	s->name = sp_xstrdup(name);
	s->service_name = service ? sp_xstrdup(service) : NULL;
	s->address_type = family;
	return s;
}

static void slice_port(struct sp_endpoint_slice *s, const char *name, uint8_t proto, uint16_t port)
{
	struct sp_endpoint_port *p;

	s->ports = sp_xrealloc(s->ports, (s->n_ports + 1) * sizeof(*s->ports));
	p = &s->ports[s->n_ports++];
	p->name = sp_xstrdup(name);
	p->protocol = proto;
	p->port = port;
}

enum { READY = 1, SERVING = 2, TERMINATING = 4 };

static void ep(struct sp_endpoint_slice *s, const char *addr, const char *node, unsigned cond)
{
	struct sp_endpoint *e;

	s->endpoints = sp_xrealloc(s->endpoints, (s->n_endpoints + 1) * sizeof(*s->endpoints));
	e = &s->endpoints[s->n_endpoints++];
	memset(e, 0, sizeof(*e));
	e->addr = ip(addr);
	e->node_name = node ? sp_xstrdup(node) : NULL;
	e->ready = cond & READY;
	e->serving = cond & SERVING;
	e->terminating = cond & TERMINATING;
	e->target_name = sp_xasprintf("pod-%s", addr);
}

/* A slice for default/web port "http" -> 8080 with endpoints given as
 * (address, node, conditions) triples, NULL-terminated. */
static struct sp_endpoint_slice *web_slice(const char *name, ...)
{
	struct sp_endpoint_slice *s = slice("default", name, "web", AF_INET);
	va_list ap;
	const char *addr;

	slice_port(s, "http", IPPROTO_TCP, 8080);
	va_start(ap, name);
	while ((addr = va_arg(ap, const char *))) {
		const char *node = va_arg(ap, const char *);

		ep(s, addr, node, va_arg(ap, unsigned));
	}
	va_end(ap);
	return s;
}

#define UP (READY | SERVING)
#define DRAINING (SERVING | TERMINATING)
#define GONE (TERMINATING)

/* Two ready endpoints: .1 here, .2 on another node. */
static void web_two_eps(void)
{
	web_slice("web-a", "10.244.1.1", NODE, UP, "10.244.2.1", OTHER, UP, NULL);
}

/* ---- the plan, one svcport per line ---- */

static void ep_ref(struct sp_buf *b, const struct sp_plan_endpoint *e)
{
	char buf[SP_ADDRSTRLEN];

	sp_buf_addf(b, e->addr.family == AF_INET6 ? "[%s]:%u" : "%s:%u",
		    sp_addr_format(&e->addr, buf), e->port);
}

static void set_summary(struct sp_buf *b, const char *label, const struct sp_plan_svcport *sp,
			const struct sp_plan_ep_set *set)
{
	sp_buf_addf(b, " %s=", label);
	if (!set->n)
		sp_buf_add(b, "-");
	for (size_t i = 0; i < set->n; i++) {
		sp_buf_add(b, i ? "," : "");
		ep_ref(b, &sp->endpoints[set->idx[i]]);
	}
}

static void addrs_summary(struct sp_buf *b, const char *label, const struct sp_addr *a, size_t n)
{
	char buf[SP_ADDRSTRLEN];

	if (!n)
		return;
	sp_buf_addf(b, " %s=", label);
	for (size_t i = 0; i < n; i++)
		sp_buf_addf(b, "%s%s", i ? "," : "", sp_addr_format(&a[i], buf));
}

static char *summarize(const struct sp_plan *p)
{
	struct sp_buf b;

	sp_buf_init(&b);
	for (size_t i = 0; i < p->n_svcports; i++) {
		const struct sp_plan_svcport *sp = &p->svcports[i];
		char buf[SP_CIDRSTRLEN];

		sp_buf_addf(&b, "%s %s %s %s:%u/%s", sp->id, sp->family == AF_INET ? "v4" : "v6",
			    sp_service_type_name(sp->type), sp_addr_format(&sp->cluster_ip, buf),
			    sp->port, sp_proto_name_lower(sp->protocol));
		if (sp->node_port)
			sp_buf_addf(&b, " np=%u", sp->node_port);
		addrs_summary(&b, "ext", sp->external_ips, sp->n_external_ips);
		addrs_summary(&b, "lb", sp->lb_ips, sp->n_lb_ips);
		for (size_t j = 0; j < sp->n_source_ranges; j++)
			sp_buf_addf(&b, "%s%s",
				    j ? "," : " src=", sp_cidr_format(&sp->source_ranges[j], buf));
		if (sp->external_policy_local)
			sp_buf_add(&b, " etp=Local");
		if (sp->internal_policy_local)
			sp_buf_add(&b, " itp=Local");
		if (sp->affinity)
			sp_buf_addf(&b, " aff=%u", sp->affinity_timeout);
		if (sp->health_check_node_port)
			sp_buf_addf(&b, " hc=%u", sp->health_check_node_port);
		if (strcmp(sp->ipvs_scheduler, "rr"))
			sp_buf_addf(&b, " sched=%s", sp->ipvs_scheduler);
		if (!sp->has_any_endpoints)
			sp_buf_add(&b, " none");
		set_summary(&b, "cl", sp, &sp->cluster);
		set_summary(&b, "lo", sp, &sp->local);
		sp_buf_add(&b, "\n");
	}
	return sp_buf_steal(&b);
}

/* ---- the table ---- */

static void c_clusterip(void)
{
	web(SP_SVC_CLUSTER_IP);
	web_two_eps();
}

static void c_unnamed_port(void)
{
	struct sp_service *s = svc("default", "one", SP_SVC_CLUSTER_IP, "10.96.0.11");
	struct sp_endpoint_slice *sl = slice("default", "one-x", "one", AF_INET);

	svc_port(s, "", IPPROTO_UDP, 53, 0);
	slice_port(sl, "", IPPROTO_UDP, 5353);
	ep(sl, "10.244.1.9", NODE, UP);
}

static void c_nodeport(void)
{
	web(SP_SVC_NODE_PORT);
	web_two_eps();
}

static void c_external_ips(void)
{
	struct sp_service *s = web(SP_SVC_CLUSTER_IP);

	push_addr(&s->external_ips, &s->n_external_ips, "203.0.113.9");
	push_addr(&s->external_ips, &s->n_external_ips, "203.0.113.1");
	push_addr(&s->external_ips, &s->n_external_ips, "203.0.113.9");
	push_addr(&s->external_ips, &s->n_external_ips, "2001:db8::9"); /* other family */
	s->external_policy_local = true;
	web_two_eps();
}

static void c_clusterip_etp_local_inert(void)
{
	web(SP_SVC_CLUSTER_IP)->external_policy_local = true;
	web_two_eps();
}

static void c_lb(void)
{
	struct sp_service *s = web(SP_SVC_LOAD_BALANCER);

	svc_lb(s, "198.51.100.7", false);
	svc_lb(s, "198.51.100.3", false);
	push_cidr(&s->source_ranges, &s->n_source_ranges, "192.0.2.0/24");
	push_cidr(&s->source_ranges, &s->n_source_ranges, "2001:db8::/32");
	push_cidr(&s->source_ranges, &s->n_source_ranges, "10.0.0.0/8");
	s->health_check_node_port = 32000; /* Cluster policy: not used */
	web_two_eps();
}

static void c_lb_pass_through(void)
{
	struct sp_service *s = web(SP_SVC_LOAD_BALANCER);

	svc_lb(s, "198.51.100.7", false);
	s->elb_pass_through = true;
	web_two_eps();
}

static void c_lb_ipmode_proxy(void)
{
	struct sp_service *s = web(SP_SVC_LOAD_BALANCER);

	svc_lb(s, "198.51.100.7", true);
	svc_lb(s, "198.51.100.8", false);
	web_two_eps();
}

static void c_lb_status_on_nodeport(void)
{
	svc_lb(web(SP_SVC_NODE_PORT), "198.51.100.7", false);
	web_two_eps();
}

static void c_skipped(void)
{
	struct sp_service *s;

	web(SP_SVC_CLUSTER_IP);
	web_two_eps();
	s = svc("default", "headless", SP_SVC_CLUSTER_IP, "");
	s->headless = true;
	svc_port(s, "http", IPPROTO_TCP, 80, 0);
	s = svc("default", "labelled-headless", SP_SVC_CLUSTER_IP, "10.96.0.20");
	s->headless = true;
	svc_port(s, "http", IPPROTO_TCP, 80, 0);
	s = svc("default", "ext", SP_SVC_EXTERNAL_NAME, "");
	svc_port(s, "http", IPPROTO_TCP, 80, 0);
	s = svc("default", "ext-with-ip", SP_SVC_EXTERNAL_NAME, "10.96.0.21");
	svc_port(s, "http", IPPROTO_TCP, 80, 0);
	s = svc("default", "other-proxy", SP_SVC_CLUSTER_IP, "10.96.0.22");
	s->proxy_name = sp_xstrdup("some-other-proxy");
	svc_port(s, "http", IPPROTO_TCP, 80, 0);
	s = svc("default", "empty-proxy-label", SP_SVC_CLUSTER_IP, "10.96.0.23");
	s->proxy_name = sp_xstrdup("");
	svc_port(s, "http", IPPROTO_TCP, 80, 0);
	s = svc("default", "no-cluster-ip", SP_SVC_CLUSTER_IP, "");
	svc_port(s, "http", IPPROTO_TCP, 80, 0);
}

static void c_lb_local(void)
{
	struct sp_service *s = web(SP_SVC_LOAD_BALANCER);

	svc_lb(s, "198.51.100.7", false);
	s->external_policy_local = true;
	s->health_check_node_port = 32000;
	web_two_eps();
}

static void c_nodeport_local(void)
{
	struct sp_service *s = web(SP_SVC_NODE_PORT);

	s->external_policy_local = true;
	s->health_check_node_port = 32000; /* only a LoadBalancer has one */
	web_two_eps();
}

static void c_lb_local_no_local_ep(void)
{
	struct sp_service *s = web(SP_SVC_LOAD_BALANCER);

	svc_lb(s, "198.51.100.7", false);
	s->external_policy_local = true;
	s->health_check_node_port = 32000;
	web_slice("web-a", "10.244.2.1", OTHER, UP, NULL);
}

static void c_itp_local(void)
{
	web(SP_SVC_CLUSTER_IP)->internal_policy_local = true;
	web_two_eps();
}

static void c_itp_local_none_here(void)
{
	web(SP_SVC_CLUSTER_IP)->internal_policy_local = true;
	web_slice("web-a", "10.244.2.1", OTHER, UP, NULL);
}

static void c_itp_local_nodeport(void)
{
	web(SP_SVC_NODE_PORT)->internal_policy_local = true;
	web_two_eps();
}

static void c_terminating_fallback(void)
{
	web(SP_SVC_CLUSTER_IP);
	web_slice("web-a", "10.244.1.1", NODE, DRAINING, "10.244.2.1", OTHER, GONE, "10.244.2.2",
		  OTHER, SERVING, NULL);
}

static void c_ready_beats_terminating(void)
{
	web(SP_SVC_CLUSTER_IP);
	web_slice("web-a", "10.244.1.1", NODE, DRAINING, "10.244.2.1", OTHER, UP, NULL);
}

static void c_local_terminating_fallback(void)
{
	struct sp_service *s = web(SP_SVC_NODE_PORT);

	s->external_policy_local = true;
	web_slice("web-a", "10.244.1.1", NODE, DRAINING, "10.244.1.2", NODE, GONE, "10.244.2.1",
		  OTHER, UP, NULL);
}

static void c_local_ready_preferred(void)
{
	struct sp_service *s = web(SP_SVC_NODE_PORT);

	s->external_policy_local = true;
	web_slice("web-a", "10.244.1.1", NODE, DRAINING, "10.244.1.2", NODE, UP, "10.244.2.1",
		  OTHER, UP, NULL);
}

static void c_no_endpoints(void)
{
	web(SP_SVC_CLUSTER_IP);
	slice("default", "web-empty", "web", AF_INET);
}

static void c_not_ready_only(void)
{
	web(SP_SVC_CLUSTER_IP);
	web_slice("web-a", "10.244.1.1", NODE, 0, "10.244.2.1", OTHER, GONE, NULL);
}

static void c_itp_local_nothing_usable(void)
{
	web(SP_SVC_CLUSTER_IP)->internal_policy_local = true;
	web_slice("web-a", "10.244.1.1", NODE, 0, NULL);
}

static void c_dual_stack(void)
{
	struct sp_service *s = svc("default", "web", SP_SVC_NODE_PORT, "fd00:96::10,10.96.0.10");
	struct sp_endpoint_slice *sl;

	svc_port(s, "http", IPPROTO_TCP, 80, 30080);
	push_addr(&s->external_ips, &s->n_external_ips, "2001:db8::9");
	push_addr(&s->external_ips, &s->n_external_ips, "203.0.113.9");
	web_slice("web-v4", "10.244.1.1", NODE, UP, NULL);
	sl = slice("default", "web-v6", "web", AF_INET6);
	slice_port(sl, "http", IPPROTO_TCP, 8080);
	ep(sl, "fd00:244::1", NODE, UP);
	ep(sl, "fd00:244::2", OTHER, UP);
}

static void c_dual_stack_external_one_family(void)
{
	struct sp_service *s = svc("default", "web", SP_SVC_CLUSTER_IP, "10.96.0.10,fd00:96::10");
	struct sp_endpoint_slice *sl;

	svc_port(s, "http", IPPROTO_TCP, 80, 0);
	push_addr(&s->external_ips, &s->n_external_ips, "203.0.113.9");
	s->external_policy_local = true;
	web_slice("web-v4", "10.244.1.1", NODE, UP, "10.244.2.1", OTHER, UP, NULL);
	sl = slice("default", "web-v6", "web", AF_INET6);
	slice_port(sl, "http", IPPROTO_TCP, 8080);
	ep(sl, "fd00:244::1", NODE, UP);
	ep(sl, "fd00:244::2", OTHER, UP);
}

static void c_slice_port_matching(void)
{
	struct sp_service *s = web(SP_SVC_CLUSTER_IP);
	struct sp_endpoint_slice *sl = slice("default", "web-a", "web", AF_INET);

	svc_port(s, "metrics", IPPROTO_TCP, 9100, 0);
	svc_port(s, "dns", IPPROTO_UDP, 53, 0);
	slice_port(sl, "metrics", IPPROTO_TCP, 9090);
	slice_port(sl, "http", IPPROTO_TCP, 8080);
	slice_port(sl, "dns", IPPROTO_TCP, 5353); /* wrong protocol */
	slice_port(sl, "other", IPPROTO_TCP, 7000);
	ep(sl, "10.244.1.1", NODE, UP);
	sl = slice("default", "web-b", "web", AF_INET);
	slice_port(sl, "http", IPPROTO_TCP, 0); /* unset port: unusable */
	ep(sl, "10.244.3.3", OTHER, UP);
}

static void c_foreign_slices(void)
{
	struct sp_endpoint_slice *sl;

	web(SP_SVC_CLUSTER_IP);
	web_slice("web-a", "10.244.1.1", NODE, UP, NULL);
	sl = slice("other-ns", "web-x", "web", AF_INET);
	slice_port(sl, "http", IPPROTO_TCP, 8080);
	ep(sl, "10.244.9.1", NODE, UP);
	sl = slice("default", "api-x", "api", AF_INET);
	slice_port(sl, "http", IPPROTO_TCP, 8080);
	ep(sl, "10.244.9.2", NODE, UP);
	sl = slice("default", "unlabelled", NULL, AF_INET);
	slice_port(sl, "http", IPPROTO_TCP, 8080);
	ep(sl, "10.244.9.3", NODE, UP);
	sl = slice("default", "web-v6", "web", AF_INET6); /* no IPv6 cluster IP */
	slice_port(sl, "http", IPPROTO_TCP, 8080);
	ep(sl, "fd00:244::1", NODE, UP);
	sl = slice("default", "web-fqdn", "web", 0);
	slice_port(sl, "http", IPPROTO_TCP, 8080);
}

static void c_dedupe(void)
{
	web(SP_SVC_CLUSTER_IP);
	web_slice("web-b", "10.244.2.1", OTHER, UP, "10.244.1.1", NODE, GONE, NULL);
	web_slice("web-a", "10.244.1.1", NODE, UP, "10.244.2.1", OTHER, UP, NULL);
}

static void c_node_ip_as_external(void)
{
	struct sp_service *s = web(SP_SVC_LOAD_BALANCER);

	push_addr(&s->external_ips, &s->n_external_ips, "203.0.113.9");
	push_addr(&s->external_ips, &s->n_external_ips, "10.0.0.5");
	svc_lb(s, "192.0.2.5", false); /* the node's ExternalIP */
	svc_lb(s, "198.51.100.7", false);
	web_two_eps();
}

static void c_node_ip_pass_through(void)
{
	struct sp_service *s = web(SP_SVC_LOAD_BALANCER);

	svc_lb(s, "10.0.0.5", true); /* not captured: nothing to refuse */
	web_two_eps();
}

static void c_scheduler_valid(void)
{
	web(SP_SVC_CLUSTER_IP)->ipvs_scheduler = sp_xstrdup("sh");
	web_two_eps();
}

static void c_scheduler_invalid(void)
{
	web(SP_SVC_CLUSTER_IP)->ipvs_scheduler = sp_xstrdup("fastest");
	web_two_eps();
}

static void c_scheduler_node_default(void)
{
	free(cfg.ipvs_scheduler);
	cfg.ipvs_scheduler = sp_xstrdup("wlc");
	web(SP_SVC_CLUSTER_IP);
	web_two_eps();
}

static void c_affinity(void)
{
	struct sp_service *s = web(SP_SVC_CLUSTER_IP);

	s->affinity_client_ip = true;
	s = svc("default", "sticky", SP_SVC_CLUSTER_IP, "10.96.0.12");
	svc_port(s, "", IPPROTO_TCP, 80, 0);
	s->affinity_client_ip = true;
	s->affinity_timeout = 60;
	web_two_eps();
}

static void c_sorted(void)
{
	struct sp_service *s;

	s = svc("kube-system", "dns", SP_SVC_CLUSTER_IP, "10.96.0.2");
	svc_port(s, "udp", IPPROTO_UDP, 53, 0);
	svc_port(s, "tcp", IPPROTO_TCP, 53, 0);
	s = svc("default", "zeta", SP_SVC_CLUSTER_IP, "10.96.0.30");
	svc_port(s, "b", IPPROTO_TCP, 81, 0);
	svc_port(s, "a", IPPROTO_TCP, 82, 0);
	s = svc("default", "alpha", SP_SVC_CLUSTER_IP, "10.96.0.31");
	svc_port(s, "", IPPROTO_TCP, 80, 0);
	web_slice("web-z", "10.244.2.9", OTHER, UP, "10.244.2.10", OTHER, UP, "10.244.1.200", NODE,
		  UP, NULL);
	web(SP_SVC_CLUSTER_IP);
}

static void c_duplicate_service(void)
{
	web(SP_SVC_CLUSTER_IP);
	web(SP_SVC_NODE_PORT);
	web_two_eps();
}

/* A second Service asking for what an earlier one (in source order) took. */
static struct sp_service *other(enum sp_service_type type, const char *cluster_ip, uint8_t proto,
				uint16_t port, uint16_t node_port)
{
	struct sp_service *s = svc("default", "other", type, cluster_ip);

	svc_port(s, "http", proto, port, node_port);
	return s;
}

static void c_clash_node_port(void)
{
	web(SP_SVC_NODE_PORT);
	other(SP_SVC_NODE_PORT, "10.96.0.20", IPPROTO_TCP, 80, 30080);
	web_two_eps();
}

static void c_node_port_other_protocol(void)
{
	web(SP_SVC_NODE_PORT);
	other(SP_SVC_NODE_PORT, "10.96.0.20", IPPROTO_UDP, 80, 30080);
	web_two_eps();
}

static void c_clash_cluster_ip(void)
{
	web(SP_SVC_CLUSTER_IP);
	other(SP_SVC_CLUSTER_IP, "10.96.0.10", IPPROTO_TCP, 80, 0);
	web_two_eps();
}

static void c_cluster_ip_other_port(void)
{
	web(SP_SVC_CLUSTER_IP);
	other(SP_SVC_CLUSTER_IP, "10.96.0.10", IPPROTO_TCP, 81, 0);
	web_two_eps();
}

/* The later Service is refused even though its name sorts first. */
static void c_clash_source_order(void)
{
	other(SP_SVC_CLUSTER_IP, "10.96.0.10", IPPROTO_TCP, 80, 0);
	web(SP_SVC_CLUSTER_IP);
	web_two_eps();
}

static void c_clash_external_ip_on_lb_ip(void)
{
	struct sp_service *s = web(SP_SVC_LOAD_BALANCER);

	svc_lb(s, "198.51.100.7", false);
	s = other(SP_SVC_CLUSTER_IP, "10.96.0.20", IPPROTO_TCP, 80, 0);
	push_addr(&s->external_ips, &s->n_external_ips, "198.51.100.7");
	web_two_eps();
}

/* Dual stack: one node port for both families of the same Service. */
static void c_node_port_dual_stack_own(void)
{
	struct sp_service *s = svc("default", "web", SP_SVC_NODE_PORT, "10.96.0.10,fd00:96::10");

	svc_port(s, "http", IPPROTO_TCP, 80, 30080);
}

#define ALL SP_MODE_NONE

struct plan_case {
	const char *name;
	enum sp_mode mode; /* ALL: iptables, ipvs and nftables alike */
	void (*setup)(void);
	const char *plan;
	int rc;
	const char *error; /* expected in diag; NULL: no error at all */
};

#define WEB "default/web:http v4 "
#define TWO "cl=10.244.1.1:8080,10.244.2.1:8080"

static const struct plan_case cases[] = {
	{"ClusterIP: all ready endpoints, no local set", ALL, c_clusterip,
	 WEB "ClusterIP 10.96.0.10:80/tcp " TWO " lo=-\n", 0, NULL},
	{"unnamed port: id ends with ':'", ALL, c_unnamed_port,
	 "default/one: v4 ClusterIP 10.96.0.11:53/udp cl=10.244.1.9:5353 lo=-\n", 0, NULL},
	{"NodePort", ALL, c_nodeport, WEB "NodePort 10.96.0.10:80/tcp np=30080 " TWO " lo=-\n", 0,
	 NULL},
	{"externalIPs: family filtered, sorted, deduped; makes Local policy apply", ALL,
	 c_external_ips,
	 WEB "ClusterIP 10.96.0.10:80/tcp ext=203.0.113.1,203.0.113.9 etp=Local " TWO
	     " lo=10.244.1.1:8080\n",
	 0, NULL},
	{"ClusterIP without external addresses ignores externalTrafficPolicy", ALL,
	 c_clusterip_etp_local_inert, WEB "ClusterIP 10.96.0.10:80/tcp " TWO " lo=-\n", 0, NULL},
	{"LoadBalancer: ingress IPs, source ranges of the family, no hc for Cluster", ALL, c_lb,
	 WEB "LoadBalancer 10.96.0.10:80/tcp np=30080 lb=198.51.100.3,198.51.100.7 "
	     "src=10.0.0.0/8,192.0.2.0/24 " TWO " lo=-\n",
	 0, NULL},
	{"elb.pass-through: ingress not captured", ALL, c_lb_pass_through,
	 WEB "LoadBalancer 10.96.0.10:80/tcp np=30080 " TWO " lo=-\n", 0, NULL},
	{"ipMode Proxy: that ingress not captured", ALL, c_lb_ipmode_proxy,
	 WEB "LoadBalancer 10.96.0.10:80/tcp np=30080 lb=198.51.100.8 " TWO " lo=-\n", 0, NULL},
	{"LB status on a NodePort Service is ignored", ALL, c_lb_status_on_nodeport,
	 WEB "NodePort 10.96.0.10:80/tcp np=30080 " TWO " lo=-\n", 0, NULL},
	{"headless, ExternalName, other proxy, no cluster IP: skipped", ALL, c_skipped,
	 WEB "ClusterIP 10.96.0.10:80/tcp " TWO " lo=-\n", 0, NULL},
	{"LB Local: local set for external, cluster set for short-circuit, hc port", ALL,
	 c_lb_local,
	 WEB "LoadBalancer 10.96.0.10:80/tcp np=30080 lb=198.51.100.7 etp=Local hc=32000 " TWO
	     " lo=10.244.1.1:8080\n",
	 0, NULL},
	{"NodePort Local: no health check port", ALL, c_nodeport_local,
	 WEB "NodePort 10.96.0.10:80/tcp np=30080 etp=Local " TWO " lo=10.244.1.1:8080\n", 0, NULL},
	{"LB Local without local endpoint: empty local set, still has endpoints", ALL,
	 c_lb_local_no_local_ep,
	 WEB "LoadBalancer 10.96.0.10:80/tcp np=30080 lb=198.51.100.7 etp=Local hc=32000 "
	     "cl=10.244.2.1:8080 lo=-\n",
	 0, NULL},
	{"internalTrafficPolicy Local: only the local set", ALL, c_itp_local,
	 WEB "ClusterIP 10.96.0.10:80/tcp itp=Local cl=- lo=10.244.1.1:8080\n", 0, NULL},
	{"iTP Local with no local endpoint: drop, not reject", ALL, c_itp_local_none_here,
	 WEB "ClusterIP 10.96.0.10:80/tcp itp=Local cl=- lo=-\n", 0, NULL},
	{"iTP Local on a NodePort: cluster set kept for external traffic", ALL,
	 c_itp_local_nodeport,
	 WEB "NodePort 10.96.0.10:80/tcp np=30080 itp=Local " TWO " lo=10.244.1.1:8080\n", 0, NULL},
	{"no ready endpoint: serving terminating ones serve", ALL, c_terminating_fallback,
	 WEB "ClusterIP 10.96.0.10:80/tcp cl=10.244.1.1:8080 lo=-\n", 0, NULL},
	{"ready endpoints exclude terminating ones", ALL, c_ready_beats_terminating,
	 WEB "ClusterIP 10.96.0.10:80/tcp cl=10.244.2.1:8080 lo=-\n", 0, NULL},
	{"Local: serving terminating local endpoint when none ready here", ALL,
	 c_local_terminating_fallback,
	 WEB "NodePort 10.96.0.10:80/tcp np=30080 etp=Local cl=10.244.2.1:8080 "
	     "lo=10.244.1.1:8080\n",
	 0, NULL},
	{"Local: a ready local endpoint hides terminating ones", ALL, c_local_ready_preferred,
	 WEB "NodePort 10.96.0.10:80/tcp np=30080 etp=Local cl=10.244.1.2:8080,10.244.2.1:8080 "
	     "lo=10.244.1.2:8080\n",
	 0, NULL},
	{"no endpoints: has_any_endpoints false", ALL, c_no_endpoints,
	 WEB "ClusterIP 10.96.0.10:80/tcp none cl=- lo=-\n", 0, NULL},
	{"only unusable endpoints: none", ALL, c_not_ready_only,
	 WEB "ClusterIP 10.96.0.10:80/tcp none cl=- lo=-\n", 0, NULL},
	{"iTP Local with nothing usable anywhere: none", ALL, c_itp_local_nothing_usable,
	 WEB "ClusterIP 10.96.0.10:80/tcp itp=Local none cl=- lo=-\n", 0, NULL},
	{"dual stack: one svcport per family with its own addresses and slices", ALL, c_dual_stack,
	 WEB "NodePort 10.96.0.10:80/tcp np=30080 ext=203.0.113.9 cl=10.244.1.1:8080 lo=-\n"
	     "default/web:http v6 NodePort fd00:96::10:80/tcp np=30080 ext=2001:db8::9 "
	     "cl=[fd00:244::1]:8080,[fd00:244::2]:8080 lo=-\n",
	 0, NULL},
	{"dual stack: Local external policy only where the family has external addresses", ALL,
	 c_dual_stack_external_one_family,
	 WEB "ClusterIP 10.96.0.10:80/tcp ext=203.0.113.9 etp=Local " TWO " lo=10.244.1.1:8080\n"
	     "default/web:http v6 ClusterIP fd00:96::10:80/tcp "
	     "cl=[fd00:244::1]:8080,[fd00:244::2]:8080 lo=-\n",
	 0, NULL},
	{"slice ports matched by name and protocol; port 0 unusable", ALL, c_slice_port_matching,
	 "default/web:dns v4 ClusterIP 10.96.0.10:53/udp none cl=- lo=-\n" WEB
	 "ClusterIP 10.96.0.10:80/tcp cl=10.244.1.1:8080 lo=-\n"
	 "default/web:metrics v4 ClusterIP 10.96.0.10:9100/tcp cl=10.244.1.1:9090 lo=-\n",
	 0, NULL},
	{"slices of other namespaces, services and families ignored", ALL, c_foreign_slices,
	 WEB "ClusterIP 10.96.0.10:80/tcp cl=10.244.1.1:8080 lo=-\n", 0, NULL},
	{"same endpoint in two slices: once, the ready copy", ALL, c_dedupe,
	 WEB "ClusterIP 10.96.0.10:80/tcp " TWO " lo=-\n", 0, NULL},
	{"ipvs: node IPs as externalIP and LB IP refused, the rest planned", SP_MODE_IPVS,
	 c_node_ip_as_external,
	 WEB "LoadBalancer 10.96.0.10:80/tcp np=30080 ext=203.0.113.9 lb=198.51.100.7 " TWO
	     " lo=-\n",
	 1,
	 "Service default/web: spec.externalIPs[1]: 10.0.0.5 is this node's address (worker-1); "
	 "refused in ipvs mode"},
	{"ipvs: node IP as LB ingress names the ingress", SP_MODE_IPVS, c_node_ip_as_external, NULL,
	 1,
	 "Service default/web: status.loadBalancer.ingress[0].ip: 192.0.2.5 is this node's "
	 "address (worker-1); refused in ipvs mode"},
	{"iptables: node IP as externalIP/LB IP is fine", SP_MODE_IPTABLES, c_node_ip_as_external,
	 WEB "LoadBalancer 10.96.0.10:80/tcp np=30080 ext=10.0.0.5,203.0.113.9 "
	     "lb=192.0.2.5,198.51.100.7 " TWO " lo=-\n",
	 0, NULL},
	{"nftables: node IP as externalIP/LB IP is fine", SP_MODE_NFTABLES, c_node_ip_as_external,
	 WEB "LoadBalancer 10.96.0.10:80/tcp np=30080 ext=10.0.0.5,203.0.113.9 "
	     "lb=192.0.2.5,198.51.100.7 " TWO " lo=-\n",
	 0, NULL},
	{"ipvs: a pass-through node IP is not captured, so not refused", SP_MODE_IPVS,
	 c_node_ip_pass_through, WEB "LoadBalancer 10.96.0.10:80/tcp np=30080 " TWO " lo=-\n", 0,
	 NULL},
	{"scheduler annotation", ALL, c_scheduler_valid,
	 WEB "ClusterIP 10.96.0.10:80/tcp sched=sh " TWO " lo=-\n", 0, NULL},
	{"ipvs: bad scheduler annotation refused, node default used", SP_MODE_IPVS,
	 c_scheduler_invalid, WEB "ClusterIP 10.96.0.10:80/tcp " TWO " lo=-\n", 1,
	 "Service default/web: metadata.annotations[\"svcproxy.io/ipvs-scheduler\"]: \"fastest\" "
	 "is not an IPVS scheduler"},
	{"iptables: scheduler annotation inert", SP_MODE_IPTABLES, c_scheduler_invalid,
	 WEB "ClusterIP 10.96.0.10:80/tcp " TWO " lo=-\n", 0, NULL},
	{"node default scheduler", ALL, c_scheduler_node_default,
	 WEB "ClusterIP 10.96.0.10:80/tcp sched=wlc " TWO " lo=-\n", 0, NULL},
	{"ClientIP affinity: default and explicit timeout", ALL, c_affinity,
	 "default/sticky: v4 ClusterIP 10.96.0.12:80/tcp aff=60 none cl=- lo=-\n" WEB
	 "ClusterIP 10.96.0.10:80/tcp aff=10800 " TWO " lo=-\n",
	 0, NULL},
	{"svcports by namespace, name, port name; endpoints by address", ALL, c_sorted,
	 "default/alpha: v4 ClusterIP 10.96.0.31:80/tcp none cl=- lo=-\n" WEB
	 "ClusterIP 10.96.0.10:80/tcp cl=10.244.1.200:8080,10.244.2.9:8080,10.244.2.10:8080 "
	 "lo=-\n"
	 "default/zeta:a v4 ClusterIP 10.96.0.30:82/tcp none cl=- lo=-\n"
	 "default/zeta:b v4 ClusterIP 10.96.0.30:81/tcp none cl=- lo=-\n"
	 "kube-system/dns:tcp v4 ClusterIP 10.96.0.2:53/tcp none cl=- lo=-\n"
	 "kube-system/dns:udp v4 ClusterIP 10.96.0.2:53/udp none cl=- lo=-\n",
	 0, NULL},
	{"a Service defined twice: first planned, the other refused", ALL, c_duplicate_service,
	 WEB "ClusterIP 10.96.0.10:80/tcp " TWO " lo=-\n", 1,
	 "Service default/web: defined more than once"},
	{"node port of an earlier Service: the later port refused", ALL, c_clash_node_port,
	 WEB "NodePort 10.96.0.10:80/tcp np=30080 " TWO " lo=-\n", 1,
	 "Service default/other: spec.ports[0].nodePort: 30080/TCP is already used by Service "
	 "default/web (spec.ports[0].nodePort); port \"http\" not planned"},
	{"same node port number, other protocol: both planned", ALL, c_node_port_other_protocol,
	 "default/other:http v4 NodePort 10.96.0.20:80/udp np=30080 none cl=- lo=-\n" WEB
	 "NodePort 10.96.0.10:80/tcp np=30080 " TWO " lo=-\n",
	 0, NULL},
	{"cluster IP and port of an earlier Service: the later port refused", ALL,
	 c_clash_cluster_ip, WEB "ClusterIP 10.96.0.10:80/tcp " TWO " lo=-\n", 1,
	 "Service default/other: spec.clusterIPs[0]: 10.96.0.10 port 80/TCP is already used by "
	 "Service default/web (spec.clusterIPs[0]); port \"http\" not planned"},
	{"same cluster IP, other port: both planned", ALL, c_cluster_ip_other_port,
	 "default/other:http v4 ClusterIP 10.96.0.10:81/tcp none cl=- lo=-\n" WEB
	 "ClusterIP 10.96.0.10:80/tcp " TWO " lo=-\n",
	 0, NULL},
	{"clash: the first in source order wins, not the first by name", ALL, c_clash_source_order,
	 "default/other:http v4 ClusterIP 10.96.0.10:80/tcp none cl=- lo=-\n", 1,
	 "Service default/web: spec.clusterIPs[0]: 10.96.0.10 port 80/TCP is already used by "
	 "Service default/other (spec.clusterIPs[0])"},
	{"externalIP equal to an earlier LB ingress IP and port: refused", ALL,
	 c_clash_external_ip_on_lb_ip,
	 WEB "LoadBalancer 10.96.0.10:80/tcp np=30080 lb=198.51.100.7 " TWO " lo=-\n", 1,
	 "Service default/other: spec.externalIPs[0]: 198.51.100.7 port 80/TCP is already used "
	 "by Service default/web (status.loadBalancer.ingress[0].ip)"},
	{"dual stack: a Service's node port serves both its families", ALL,
	 c_node_port_dual_stack_own,
	 WEB "NodePort 10.96.0.10:80/tcp np=30080 none cl=- lo=-\n"
	     "default/web:http v6 NodePort fd00:96::10:80/tcp np=30080 none cl=- lo=-\n",
	 0, NULL},
};

static const enum sp_mode all_modes[] = {SP_MODE_IPTABLES, SP_MODE_IPVS, SP_MODE_NFTABLES};

static void fixture_setup(void)
{
	struct sp_node *n;

	sp_cluster_init(&cl);
	sp_config_init(&cfg);
	sp_diag_init(&diag);
	memset(&plan, 0, sizeof(plan));
	cfg.hostname = sp_xstrdup(NODE);
	n = sp_cluster_add_node(&cl);
	n->name = sp_xstrdup(NODE);
	push_addr(&n->addresses, &n->n_addresses, "10.0.0.5");
	push_addr(&n->addresses, &n->n_addresses, "192.0.2.5");
	n = sp_cluster_add_node(&cl);
	n->name = sp_xstrdup(OTHER);
	push_addr(&n->addresses, &n->n_addresses, "10.0.0.6");
}

static void fixture_teardown(void)
{
	sp_plan_free(&plan);
	sp_diag_free(&diag);
	sp_config_free(&cfg);
	sp_cluster_free(&cl);
}

static void dump_diag(void)
{
	for (size_t i = 0; i < diag.n_msgs; i++)
		fprintf(stderr, "  diag: %s\n", diag.msgs[i].text);
}

static void run_case(const struct plan_case *c, enum sp_mode mode)
{
	int rc;
	char *got;

	cfg.mode = mode;
	rc = sp_plan_build(&plan, &cl, &cfg, &diag);
	got = summarize(&plan);
	if (c->plan && strcmp(got, c->plan))
		fprintf(stderr, "case \"%s\" (%s):\nwant:\n%sgot:\n%s", c->name, sp_mode_name(mode),
			c->plan, got);
	if (c->plan)
		ck_assert_str_eq(got, c->plan);
	free(got);
	if (rc != c->rc)
		dump_diag();
	ck_assert_msg(rc == c->rc, "case \"%s\" (%s): rc %d, want %d", c->name, sp_mode_name(mode),
		      rc, c->rc);
	if (c->error)
		ck_assert_msg(sp_diag_has(&diag, SP_SEV_ERROR, c->error),
			      "case \"%s\": no error \"%s\"", c->name, c->error);
	else
		ck_assert_msg(diag.n_errors == 0, "case \"%s\": unexpected error", c->name);
	sp_plan_free(&plan);
	sp_diag_free(&diag);
	sp_diag_init(&diag);
}

START_TEST(plan_table)
{
	const struct plan_case *c = &cases[_i];

	c->setup();
	if (c->mode != ALL) {
		run_case(c, c->mode);
		return;
	}
	for (size_t m = 0; m < SP_ARRAY_SIZE(all_modes); m++)
		run_case(c, all_modes[m]);
}
END_TEST

/* ---- node-level fields ---- */

START_TEST(node_fields_from_node_object)
{
	struct sp_addr want_a = ip("10.0.0.5"), want_b = ip("192.0.2.5");

	free(cfg.ipvs_scheduler);
	cfg.ipvs_scheduler = sp_xstrdup("sh");
	cfg.masquerade_bit = 14;
	cfg.masquerade_all = true;
	cfg.ipvs_strict_arp = true;
	cfg.ipvs_capture = SP_IPVS_CAPTURE_WHOLE_ADDRESS;
	push_cidr(&cfg.cluster_cidrs, &cfg.n_cluster_cidrs, "10.244.0.0/16");
	push_cidr(&cfg.cluster_cidrs, &cfg.n_cluster_cidrs, "10.0.0.0/8");
	cfg.mode = SP_MODE_IPVS;
	ck_assert_int_eq(sp_plan_build(&plan, &cl, &cfg, &diag), 0);
	ck_assert_int_eq(plan.mode, SP_MODE_IPVS);
	ck_assert_str_eq(plan.node_name, NODE);
	ck_assert_uint_eq(plan.n_node_ips, 2);
	ck_assert(sp_addr_equal(&plan.node_ips[0], &(struct sp_addr){0}) == false);
	ck_assert(sp_addr_equal(&plan.node_ips[0], &want_a));
	ck_assert(sp_addr_equal(&plan.node_ips[1], &want_b));
	ck_assert(plan.nodeport_all_local);
	ck_assert_uint_eq(plan.n_nodeport_addrs, 2);
	ck_assert_uint_eq(plan.masquerade_mark, 0x4000);
	ck_assert(plan.masquerade_all);
	ck_assert_str_eq(plan.ipvs_default_scheduler, "sh");
	ck_assert(plan.ipvs_strict_arp);
	ck_assert_int_eq(plan.ipvs_capture, SP_IPVS_CAPTURE_WHOLE_ADDRESS);
	ck_assert_uint_eq(plan.n_cluster_cidrs, 2);
	ck_assert_uint_eq(plan.cluster_cidrs[0].prefix, 8);
	ck_assert_uint_eq(diag.n_msgs, 0);
}
END_TEST

START_TEST(node_ips_flag_wins)
{
	struct sp_addr want = ip("10.0.0.99");

	push_addr(&cfg.node_ips, &cfg.n_node_ips, "10.0.0.99");
	ck_assert_int_eq(sp_plan_build(&plan, &cl, &cfg, &diag), 0);
	ck_assert_uint_eq(plan.n_node_ips, 1);
	ck_assert(sp_addr_equal(&plan.node_ips[0], &want));
}
END_TEST

START_TEST(node_unknown_warns)
{
	free(cfg.hostname);
	cfg.hostname = sp_xstrdup("ghost");
	ck_assert_int_eq(sp_plan_build(&plan, &cl, &cfg, &diag), 0);
	ck_assert_uint_eq(plan.n_node_ips, 0);
	ck_assert(sp_diag_has(&diag, SP_SEV_WARNING, "node ghost: no address known"));
}
END_TEST

START_TEST(nodeport_addresses_filtered)
{
	struct sp_addr want = ip("192.0.2.5");

	push_cidr(&cfg.nodeport_cidrs, &cfg.n_nodeport_cidrs, "192.0.2.0/24");
	push_cidr(&cfg.nodeport_cidrs, &cfg.n_nodeport_cidrs, "2001:db8::/32");
	ck_assert_int_eq(sp_plan_build(&plan, &cl, &cfg, &diag), 0);
	ck_assert(!plan.nodeport_all_local);
	ck_assert_uint_eq(plan.n_nodeport_addrs, 1);
	ck_assert(sp_addr_equal(&plan.nodeport_addrs[0], &want));
}
END_TEST

/* ---- lookups and policy helpers ---- */

START_TEST(find_and_policy_helpers)
{
	const struct sp_plan_svcport *sp;

	c_lb_local();
	ck_assert_int_eq(sp_plan_build(&plan, &cl, &cfg, &diag), 0);
	sp = sp_plan_find(&plan, "default/web:http", AF_INET);
	ck_assert_ptr_nonnull(sp);
	ck_assert_ptr_null(sp_plan_find(&plan, "default/web:http", AF_INET6));
	ck_assert_ptr_null(sp_plan_find(&plan, "default/web:", AF_INET));
	ck_assert(sp_plan_externally_accessible(sp));
	ck_assert_ptr_eq(sp_plan_internal_eps(sp), &sp->cluster);
	ck_assert_ptr_eq(sp_plan_external_eps(sp), &sp->local);
	ck_assert_uint_eq(sp->n_endpoints, 2);
	ck_assert(sp->endpoints[0].local && !sp->endpoints[1].local);
	ck_assert_str_eq(sp->endpoints[1].node_name, OTHER);
	ck_assert_str_eq(sp->endpoints[0].target_name, "pod-10.244.1.1");
	ck_assert_str_eq(sp->namespace, "default");
	ck_assert_str_eq(sp->name, "web");
	ck_assert_str_eq(sp->port_name, "http");
}
END_TEST

START_TEST(itp_local_helpers)
{
	const struct sp_plan_svcport *sp;

	c_itp_local();
	ck_assert_int_eq(sp_plan_build(&plan, &cl, &cfg, &diag), 0);
	sp = sp_plan_find(&plan, "default/web:http", AF_INET);
	ck_assert_ptr_nonnull(sp);
	ck_assert(!sp_plan_externally_accessible(sp));
	ck_assert_ptr_eq(sp_plan_internal_eps(sp), &sp->local);
	/* Only the reachable endpoints are kept. */
	ck_assert_uint_eq(sp->n_endpoints, 1);
}
END_TEST

/* ---- JSON ---- */

static char *plan_json(void)
{
	struct sp_buf b;

	sp_buf_init(&b);
	sp_plan_build(&plan, &cl, &cfg, &diag);
	sp_plan_print_json(&plan, &b);
	sp_plan_free(&plan);
	return sp_buf_steal(&b);
}

static void rich_cluster(void)
{
	struct sp_service *s;

	c_sorted();
	s = svc("shop", "dual", SP_SVC_NODE_PORT, "fd00:96::20,10.96.0.20");
	svc_port(s, "", IPPROTO_UDP, 5000, 30500);
	push_addr(&s->external_ips, &s->n_external_ips, "2001:db8::9");
	push_addr(&s->external_ips, &s->n_external_ips, "203.0.113.9");
	slice_port(slice("shop", "dual-6", "dual", AF_INET6), "", IPPROTO_UDP, 5001);
	ep(&cl.slices[cl.n_slices - 1], "fd00:244::2", OTHER, UP);
	ep(&cl.slices[cl.n_slices - 1], "fd00:244::1", NODE, UP);
	s = svc("shop", "front", SP_SVC_LOAD_BALANCER, "10.96.1.1");
	svc_port(s, "https", IPPROTO_TCP, 443, 30443);
	svc_lb(s, "198.51.100.7", false);
	push_cidr(&s->source_ranges, &s->n_source_ranges, "192.0.2.0/24");
	s->external_policy_local = true;
	s->health_check_node_port = 32001;
	s->affinity_client_ip = true;
	s = svc("shop", "cart", SP_SVC_CLUSTER_IP, "10.96.1.2");
	svc_port(s, "grpc", IPPROTO_SCTP, 9000, 0);
	slice_port(slice("shop", "front-1", "front", AF_INET), "https", IPPROTO_TCP, 8443);
	ep(&cl.slices[cl.n_slices - 1], "10.244.5.5", NODE, UP);
	ep(&cl.slices[cl.n_slices - 1], "10.244.5.4", "quote\"node", DRAINING);
	ep(&cl.slices[cl.n_slices - 1], "10.244.5.3", NULL, UP);
}

/* Fisher-Yates with a fixed LCG: a reproducible shuffle. */
static unsigned lcg_state = 12345;

static size_t lcg_below(size_t n)
{
	lcg_state = lcg_state * 1103515245u + 12345u;
	return (lcg_state >> 8) % n;
}

#define SHUFFLE(items, n)                                                                          \
	do {                                                                                       \
		for (size_t i_ = (n); i_ > 1; i_--) {                                              \
			size_t j_ = lcg_below(i_);                                                 \
			__typeof__((items)[0]) t_ = (items)[i_ - 1];                               \
			(items)[i_ - 1] = (items)[j_];                                             \
			(items)[j_] = t_;                                                          \
		}                                                                                  \
	} while (0)

START_TEST(json_deterministic_under_shuffle)
{
	char *first, *again;

	rich_cluster();
	first = plan_json();
	for (int round = 0; round < 20; round++) {
		SHUFFLE(cl.services, cl.n_services);
		SHUFFLE(cl.slices, cl.n_slices);
		SHUFFLE(cl.nodes, cl.n_nodes);
		for (size_t i = 0; i < cl.n_slices; i++) {
			SHUFFLE(cl.slices[i].endpoints, cl.slices[i].n_endpoints);
			SHUFFLE(cl.slices[i].ports, cl.slices[i].n_ports);
		}
		for (size_t i = 0; i < cl.n_services; i++) {
			SHUFFLE(cl.services[i].ports, cl.services[i].n_ports);
			SHUFFLE(cl.services[i].external_ips, cl.services[i].n_external_ips);
			SHUFFLE(cl.services[i].lb_ingress, cl.services[i].n_lb_ingress);
		}
		again = plan_json();
		ck_assert_str_eq(again, first);
		free(again);
	}
	free(first);
}
END_TEST

static const cJSON *obj(const cJSON *o, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	ck_assert_msg(v != NULL, "JSON key %s missing", key);
	return v;
}

START_TEST(json_is_valid_and_complete)
{
	char *text;
	cJSON *root;
	const cJSON *sps, *sp, *eps;
	size_t n = 0;

	rich_cluster();
	cfg.mode = SP_MODE_NFTABLES;
	text = plan_json();
	root = cJSON_Parse(text);
	ck_assert_msg(root != NULL, "not JSON:\n%s", text);
	ck_assert_str_eq(obj(root, "mode")->valuestring, "nftables");
	ck_assert_str_eq(obj(root, "node")->valuestring, NODE);
	ck_assert_int_eq(cJSON_GetArraySize(obj(root, "node_ips")), 2);
	ck_assert(cJSON_IsTrue(obj(obj(root, "nodeport"), "all_local")));
	ck_assert_str_eq(obj(obj(root, "masquerade"), "mark")->valuestring, "0x00004000");
	ck_assert_str_eq(obj(obj(root, "ipvs"), "capture")->valuestring, "per-port");
	sps = obj(root, "svcports");
	cJSON_ArrayForEach(sp, sps)
	{
		if (!strcmp(obj(sp, "id")->valuestring, "shop/front:https"))
			break;
		n++;
	}
	ck_assert_ptr_nonnull(sp);
	ck_assert_int_eq(cJSON_GetArraySize(sps), 10);
	ck_assert_str_eq(obj(sp, "family")->valuestring, "IPv4");
	ck_assert_str_eq(obj(sp, "type")->valuestring, "LoadBalancer");
	ck_assert_str_eq(obj(sp, "cluster_ip")->valuestring, "10.96.1.1");
	ck_assert_int_eq(obj(sp, "port")->valueint, 443);
	ck_assert_int_eq(obj(sp, "node_port")->valueint, 30443);
	ck_assert_str_eq(cJSON_GetArrayItem(obj(sp, "lb_ips"), 0)->valuestring, "198.51.100.7");
	ck_assert_str_eq(cJSON_GetArrayItem(obj(sp, "source_ranges"), 0)->valuestring,
			 "192.0.2.0/24");
	ck_assert_str_eq(obj(sp, "external_traffic_policy")->valuestring, "Local");
	ck_assert_str_eq(obj(sp, "session_affinity")->valuestring, "ClientIP");
	ck_assert_int_eq(obj(sp, "affinity_timeout")->valueint, 10800);
	ck_assert_int_eq(obj(sp, "health_check_node_port")->valueint, 32001);
	ck_assert(cJSON_IsTrue(obj(sp, "has_any_endpoints")));
	eps = obj(sp, "endpoints");
	/* 10.244.5.4 is terminating while others are ready: not reachable. */
	ck_assert_int_eq(cJSON_GetArraySize(eps), 2);
	ck_assert_str_eq(obj(cJSON_GetArrayItem(eps, 0), "addr")->valuestring, "10.244.5.3");
	ck_assert(cJSON_IsNull(obj(cJSON_GetArrayItem(eps, 0), "node")));
	ck_assert_str_eq(cJSON_GetArrayItem(obj(sp, "local_endpoints"), 0)->valuestring,
			 "10.244.5.5:8443");
	ck_assert_str_eq(cJSON_GetArrayItem(obj(sp, "external_endpoints"), 0)->valuestring,
			 "10.244.5.5:8443");
	ck_assert_int_eq(cJSON_GetArraySize(obj(sp, "internal_endpoints")), 2);
	cJSON_Delete(root);
	free(text);
}
END_TEST

START_TEST(json_escapes_strings)
{
	char *text;
	cJSON *root;

	rich_cluster();
	cl.slices[cl.n_slices - 1].endpoints[2].node_name = sp_xstrdup("ctl\x01");
	c_slice_port_matching();
	free(cl.services[cl.n_services - 1].namespace);
	cl.services[cl.n_services - 1].namespace = sp_xstrdup("we\"ird\\ns\n");
	text = plan_json();
	root = cJSON_Parse(text);
	ck_assert_msg(root != NULL, "not JSON:\n%s", text);
	cJSON_Delete(root);
	free(text);
}
END_TEST

START_TEST(slice_family_mismatch_warns)
{
	struct sp_endpoint_slice *sl;

	web(SP_SVC_CLUSTER_IP);
	sl = web_slice("web-a", "10.244.1.1", NODE, UP, NULL);
	ep(sl, "fd00::7", NODE, UP);
	ck_assert_int_eq(sp_plan_build(&plan, &cl, &cfg, &diag), 0);
	ck_assert(sp_diag_has(&diag, SP_SEV_WARNING, "EndpointSlice default/web-a: endpoints[1]"));
	ck_assert_uint_eq(plan.svcports[0].n_endpoints, 1);
}
END_TEST

START_TEST(lb_local_without_hc_warns)
{
	struct sp_service *s = web(SP_SVC_LOAD_BALANCER);

	s->external_policy_local = true;
	web_two_eps();
	ck_assert_int_eq(sp_plan_build(&plan, &cl, &cfg, &diag), 0);
	ck_assert(sp_diag_has(&diag, SP_SEV_WARNING, "spec.healthCheckNodePort: unset"));
	ck_assert_uint_eq(plan.svcports[0].health_check_node_port, 0);
	ck_assert(plan.svcports[0].external_policy_local);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("plan");
	TCase *table = tcase_create("rules");
	TCase *tc = tcase_create("plan");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(table, fixture_setup, fixture_teardown);
	tcase_add_loop_test(table, plan_table, 0, SP_ARRAY_SIZE(cases));
	suite_add_tcase(s, table);
	tcase_add_checked_fixture(tc, fixture_setup, fixture_teardown);
	tcase_add_test(tc, node_fields_from_node_object);
	tcase_add_test(tc, node_ips_flag_wins);
	tcase_add_test(tc, node_unknown_warns);
	tcase_add_test(tc, nodeport_addresses_filtered);
	tcase_add_test(tc, find_and_policy_helpers);
	tcase_add_test(tc, itp_local_helpers);
	tcase_add_test(tc, json_deterministic_under_shuffle);
	tcase_add_test(tc, json_is_valid_and_complete);
	tcase_add_test(tc, json_escapes_strings);
	tcase_add_test(tc, slice_family_mismatch_warns);
	tcase_add_test(tc, lb_local_without_hc_warns);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
