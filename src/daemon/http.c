#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct sp_dhc_server {
	uint16_t port;
	struct MHD_Daemon *d;
	struct sp_dhttp *owner;
};

/* Health-check servers come one per Local Service with a node port (a
 * thousand in the 10,000-Service benchmark), each probed every few seconds.
 * One thread serves them all: each server runs without a thread of its own,
 * and its epoll descriptor sits in the poller's epoll set, keyed by port. */
struct sp_dhc_poller {
	pthread_t thread;
	bool running;
	int epfd;
	int stop_fd;	      /* eventfd: the poller exits when it is readable */
	pthread_mutex_t lock; /* the server list, against sp_dhttp_sync_hc */
};

struct sp_dhttp {
	struct sp_dshared *sh;
	struct MHD_Daemon *healthz;
	struct MHD_Daemon *metrics;
	struct sp_dhc_poller poller;
	struct sp_dhc_server **hc; /* under poller.lock once the poller runs */
	size_t n_hc, cap_hc;
};

int sp_dhttp_parse_addr(const char *text, struct sockaddr_storage *ss, struct sp_diag *diag)
{
	const char *colon = strrchr(text, ':');
	char host[64];
	long port;
	size_t hlen;

	memset(ss, 0, sizeof(*ss));
	if (!colon || !sp_parse_long(colon + 1, 0, 65535, &port))
		goto bad;
	hlen = (size_t)(colon - text);
	if (hlen >= 2 && text[0] == '[' && text[hlen - 1] == ']') {
		text++;
		hlen -= 2;
	}
	if (hlen >= sizeof(host))
		goto bad;
	memcpy(host, text, hlen);
	host[hlen] = '\0';
	if (!hlen || strchr(host, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		if (hlen && inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
			goto bad;
		if (!hlen)
			s6->sin6_addr = in6addr_any;
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
			goto bad;
	}
	return 0;
bad:
	sp_diag_error(diag, "bind address \"%s\": not host:port", text);
	return -1;
}

static enum MHD_Result reply_with(struct MHD_Connection *conn, unsigned status, const char *type,
				  struct sp_buf *body, const char *extra_name,
				  const char *extra_value)
{
	struct MHD_Response *r =
		MHD_create_response_from_buffer(body->len, body->data, MHD_RESPMEM_MUST_COPY);
	enum MHD_Result ret;

	sp_buf_free(body);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", type);
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	if (extra_name)
		MHD_add_response_header(r, extra_name, extra_value);
	ret = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *type,
			     struct sp_buf *body)
{
	return reply_with(conn, status, type, body, NULL, NULL);
}

static enum MHD_Result not_found(struct MHD_Connection *conn)
{
	struct sp_buf body;

	sp_buf_init(&body);
	sp_buf_add(&body, "404 page not found\n");
	return reply(conn, MHD_HTTP_NOT_FOUND, "text/plain; charset=utf-8", &body);
}

static enum MHD_Result health_reply(struct sp_dshared *sh, struct MHD_Connection *conn,
				    bool healthz)
{
	int64_t mono = sp_dclock_ns(CLOCK_MONOTONIC), real = sp_dclock_ns(CLOCK_REALTIME);
	struct sp_dhealth h;
	struct sp_buf body;
	bool ok, eligible;

	sp_buf_init(&body);
	pthread_mutex_lock(&sh->lock);
	h = sp_dhealth_eval(sh, mono, real);
	eligible = sh->node_eligible;
	ok = h.healthy && (!healthz || eligible);
	if (healthz)
		sh->m.healthz[ok ? 0 : 1]++;
	else
		sh->m.livez[ok ? 0 : 1]++;
	pthread_mutex_unlock(&sh->lock);
	sp_dhealth_body(&body, &h, real, healthz, eligible);
	return reply(conn, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, "application/json",
		     &body);
}

static enum MHD_Result on_health(void *cls, struct MHD_Connection *conn, const char *url,
				 const char *method, const char *version, const char *upload,
				 size_t *upload_size, void **con_cls)
{
	(void)method;
	(void)version;
	(void)upload;
	(void)upload_size;
	(void)con_cls;
	if (!strcmp(url, "/healthz"))
		return health_reply(cls, conn, true);
	if (!strcmp(url, "/livez"))
		return health_reply(cls, conn, false);
	return not_found(conn);
}

static enum MHD_Result on_metrics(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct sp_dshared *sh = cls;
	struct sp_buf body;

	(void)method;
	(void)version;
	(void)upload;
	(void)upload_size;
	(void)con_cls;
	sp_buf_init(&body);
	if (!strcmp(url, "/metrics")) {
		pthread_mutex_lock(&sh->lock);
		sp_dmetrics_format(sh, &body);
		pthread_mutex_unlock(&sh->lock);
		return reply(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", &body);
	}
	if (!strcmp(url, "/proxyMode")) {
		sp_buf_add(&body, sh->mode_name);
		return reply(conn, MHD_HTTP_OK, "text/plain; charset=utf-8", &body);
	}
	if (!strcmp(url, "/rules")) {
		struct sp_dplan_ref *ref = sp_dshared_get_plan(sh);

		if (ref && sh->print_plan)
			sh->print_plan(&ref->plan, &body);
		sp_dshared_put_plan(sh, ref);
		return reply(conn, MHD_HTTP_OK, "text/plain; charset=utf-8", &body);
	}
	if (!strcmp(url, "/healthz")) {
		sp_buf_add(&body, "ok");
		return reply(conn, MHD_HTTP_OK, "text/plain; charset=utf-8", &body);
	}
	return not_found(conn);
}

static enum MHD_Result on_hc(void *cls, struct MHD_Connection *conn, const char *url,
			     const char *method, const char *version, const char *upload,
			     size_t *upload_size, void **con_cls)
{
	struct sp_dhc_server *srv = cls;
	struct sp_dshared *sh = srv->owner->sh;
	struct sp_dhc_service svc = {0};
	struct sp_buf body;
	char weight[24];
	bool found = false, healthy;

	(void)url;
	(void)method;
	(void)version;
	(void)upload;
	(void)upload_size;
	(void)con_cls;
	sp_buf_init(&body);
	pthread_mutex_lock(&sh->lock);
	healthy = sp_dhealth_eval(sh, sp_dclock_ns(CLOCK_MONOTONIC), sp_dclock_ns(CLOCK_REALTIME))
			  .healthy;
	for (size_t i = 0; i < sh->n_hc; i++)
		if (sh->hc[i].port == srv->port) {
			svc.port = srv->port;
			svc.namespace = sp_xstrdup(sh->hc[i].namespace);
			svc.name = sp_xstrdup(sh->hc[i].name);
			svc.local_endpoints = sh->hc[i].local_endpoints;
			found = true;
			break;
		}
	pthread_mutex_unlock(&sh->lock);
	if (!found)
		return not_found(conn);
	sp_dhc_body(&body, &svc, healthy);
	free(svc.namespace);
	free(svc.name);
	/* As kube-proxy: 200 only with local endpoints AND rules that are
	 * current; a balancer should not send traffic to a node whose proxy
	 * is stuck. The weight header lets balancers that read it spread by
	 * local endpoint count. */
	snprintf(weight, sizeof(weight), "%zu", svc.local_endpoints);
	return reply_with(
		conn, svc.local_endpoints && healthy ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE,
		"application/json", &body, "X-Load-Balancing-Endpoint-Weight", weight);
}

static struct MHD_Daemon *serve(const struct sockaddr_storage *ss, MHD_AccessHandlerCallback cb,
				void *cls, bool own_thread, struct sp_diag *diag, const char *what)
{
	unsigned flags = MHD_USE_EPOLL | (own_thread ? MHD_USE_INTERNAL_POLLING_THREAD : 0);
	uint16_t port;
	struct MHD_Daemon *d;

	if (ss->ss_family == AF_INET6) {
		flags |= MHD_USE_IPv6;
		port = ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
		if (IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)ss)->sin6_addr))
			flags |= MHD_USE_DUAL_STACK;
	} else {
		port = ntohs(((const struct sockaddr_in *)ss)->sin_port);
	}
	errno = 0;
	d = MHD_start_daemon(flags, port, NULL, NULL, cb, cls, MHD_OPTION_SOCK_ADDR, ss,
			     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
			     MHD_OPTION_CONNECTION_LIMIT, (unsigned)64, MHD_OPTION_END);
	if (!d)
		sp_diag_error(diag, "%s server on port %u: cannot listen: %s", what, port,
			      errno ? strerror(errno) : "libmicrohttpd refused");
	return d;
}

static struct sp_dhc_server *hc_find(struct sp_dhttp *h, uint16_t port)
{
	for (size_t i = 0; i < h->n_hc; i++)
		if (h->hc[i]->port == port)
			return h->hc[i];
	return NULL;
}

/* MHD closes idle connections only when it runs: run every server that
 * holds one (it then has a timeout) about once a second. */
static void hc_run_timeouts(struct sp_dhttp *h)
{
	for (size_t i = 0; i < h->n_hc; i++) {
		MHD_UNSIGNED_LONG_LONG ms;

		if (MHD_get_timeout(h->hc[i]->d, &ms) == MHD_YES)
			MHD_run(h->hc[i]->d);
	}
}

static void *hc_poll(void *arg)
{
	struct sp_dhttp *h = arg;
	struct epoll_event evs[64];
	int64_t last_sweep = sp_dclock_ns(CLOCK_MONOTONIC);

	for (;;) {
		int n = epoll_wait(h->poller.epfd, evs, SP_ARRAY_SIZE(evs), 1000);
		int64_t now = sp_dclock_ns(CLOCK_MONOTONIC);

		if (n < 0 && errno != EINTR)
			return NULL; /* only on a broken epoll set: a bug */
		pthread_mutex_lock(&h->poller.lock);
		for (int i = 0; i < n; i++) {
			struct sp_dhc_server *srv;

			if (evs[i].data.u64 == UINT64_MAX) {
				pthread_mutex_unlock(&h->poller.lock);
				return NULL;
			}
			/* By port, not by pointer: the server may have been
			 * stopped since epoll_wait returned. */
			srv = hc_find(h, (uint16_t)evs[i].data.u64);
			if (srv)
				MHD_run(srv->d);
		}
		if (now - last_sweep >= 1000000000) {
			hc_run_timeouts(h);
			last_sweep = now;
		}
		pthread_mutex_unlock(&h->poller.lock);
	}
}

static int hc_poller_start(struct sp_dhttp *h, struct sp_diag *diag)
{
	struct sp_dhc_poller *p = &h->poller;
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = UINT64_MAX};
	int err;

	p->epfd = epoll_create1(EPOLL_CLOEXEC);
	p->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (p->epfd < 0 || p->stop_fd < 0 || epoll_ctl(p->epfd, EPOLL_CTL_ADD, p->stop_fd, &ev)) {
		sp_diag_error(diag, "health check servers: %s", strerror(errno));
		return -1;
	}
	pthread_mutex_init(&p->lock, NULL);
	err = pthread_create(&p->thread, NULL, hc_poll, h);
	if (err) {
		pthread_mutex_destroy(&p->lock);
		sp_diag_error(diag, "health check servers: thread: %s", strerror(err));
		return -1;
	}
	p->running = true;
	return 0;
}

static void hc_poller_stop(struct sp_dhc_poller *p)
{
	uint64_t one = 1;

	if (p->running) {
		if (write(p->stop_fd, &one, sizeof(one)) != sizeof(one))
			abort(); /* an eventfd write of 1 cannot fail */
		pthread_join(p->thread, NULL);
		pthread_mutex_destroy(&p->lock);
		p->running = false;
	}
	if (p->epfd >= 0)
		close(p->epfd);
	if (p->stop_fd >= 0)
		close(p->stop_fd);
	p->epfd = p->stop_fd = -1;
}

struct sp_dhttp *sp_dhttp_start(struct sp_dshared *sh, const char *healthz_addr,
				const char *metrics_addr, struct sp_diag *diag)
{
	struct sp_dhttp *h = sp_xcalloc(1, sizeof(*h));
	struct sockaddr_storage ss;

	h->sh = sh;
	h->poller.epfd = h->poller.stop_fd = -1;
	if (hc_poller_start(h, diag) < 0)
		goto fail;
	if (healthz_addr && *healthz_addr) {
		if (sp_dhttp_parse_addr(healthz_addr, &ss, diag) < 0)
			goto fail;
		if (((struct sockaddr_in *)&ss)->sin_port &&
		    !(h->healthz = serve(&ss, on_health, sh, true, diag, "healthz")))
			goto fail;
	}
	if (metrics_addr && *metrics_addr) {
		if (sp_dhttp_parse_addr(metrics_addr, &ss, diag) < 0)
			goto fail;
		if (((struct sockaddr_in *)&ss)->sin_port &&
		    !(h->metrics = serve(&ss, on_metrics, sh, true, diag, "metrics")))
			goto fail;
	}
	return h;
fail:
	sp_dhttp_stop(h);
	return NULL;
}

static void hc_stop(struct sp_dhc_server *srv)
{
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv->d, MHD_DAEMON_INFO_EPOLL_FD);

	if (info)
		epoll_ctl(srv->owner->poller.epfd, EPOLL_CTL_DEL, info->epoll_fd, NULL);
	MHD_stop_daemon(srv->d);
	free(srv);
}

void sp_dhttp_stop(struct sp_dhttp *h)
{
	if (!h)
		return;
	if (h->healthz)
		MHD_stop_daemon(h->healthz);
	if (h->metrics)
		MHD_stop_daemon(h->metrics);
	hc_poller_stop(&h->poller);
	for (size_t i = 0; i < h->n_hc; i++)
		hc_stop(h->hc[i]);
	free(h->hc);
	free(h);
}

static bool port_wanted(const uint16_t *ports, size_t n, uint16_t port)
{
	for (size_t i = 0; i < n; i++)
		if (ports[i] == port)
			return true;
	return false;
}

/* A health-check server for port, registered with the poller; NULL (and
 * diag) when it cannot listen. */
static struct sp_dhc_server *hc_start(struct sp_dhttp *h, uint16_t port, struct sp_diag *diag)
{
	struct sp_dhc_server *srv = sp_xcalloc(1, sizeof(*srv));
	struct sockaddr_storage ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	const union MHD_DaemonInfo *info;
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = port};
	struct sp_diag v6diag;

	srv->port = port;
	srv->owner = h;
	/* Every node address, as kube-proxy listens without
	 * --nodeport-addresses; IPv4-only hosts fall back. */
	memset(&ss, 0, sizeof(ss));
	s6->sin6_family = AF_INET6;
	s6->sin6_port = htons(port);
	s6->sin6_addr = in6addr_any;
	sp_diag_init(&v6diag);
	srv->d = serve(&ss, on_hc, srv, false, &v6diag, "health check");
	sp_diag_free(&v6diag);
	if (!srv->d) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;

		memset(&ss, 0, sizeof(ss));
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		srv->d = serve(&ss, on_hc, srv, false, diag, "health check");
	}
	if (!srv->d) {
		free(srv);
		return NULL;
	}
	info = MHD_get_daemon_info(srv->d, MHD_DAEMON_INFO_EPOLL_FD);
	if (!info || epoll_ctl(h->poller.epfd, EPOLL_CTL_ADD, info->epoll_fd, &ev)) {
		sp_diag_error(diag, "health check server on port %u: cannot poll: %s", port,
			      info ? strerror(errno) : "no epoll descriptor");
		MHD_stop_daemon(srv->d);
		free(srv);
		return NULL;
	}
	return srv;
}

void sp_dhttp_sync_hc(struct sp_dhttp *h, struct sp_diag *diag)
{
	struct sp_dshared *sh = h->sh;
	uint16_t *want;
	size_t n_want, kept = 0;

	pthread_mutex_lock(&sh->lock);
	n_want = sh->n_hc;
	want = sp_xcalloc(n_want + 1, sizeof(*want));
	for (size_t i = 0; i < n_want; i++)
		want[i] = sh->hc[i].port;
	pthread_mutex_unlock(&sh->lock);

	/* Not under sh->lock: the poller holds its lock while a request
	 * takes sh->lock. */
	pthread_mutex_lock(&h->poller.lock);
	for (size_t i = 0; i < h->n_hc; i++) {
		if (port_wanted(want, n_want, h->hc[i]->port))
			h->hc[kept++] = h->hc[i];
		else
			hc_stop(h->hc[i]);
	}
	h->n_hc = kept;
	for (size_t i = 0; i < n_want; i++) {
		struct sp_dhc_server *srv;

		if (hc_find(h, want[i]))
			continue;
		srv = hc_start(h, want[i], diag);
		if (srv)
			*(struct sp_dhc_server **)sp_array_push(&h->hc, &h->n_hc, &h->cap_hc,
								sizeof(*h->hc)) = srv;
	}
	pthread_mutex_unlock(&h->poller.lock);
	free(want);
}
