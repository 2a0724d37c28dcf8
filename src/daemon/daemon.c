/* `svcproxy run`: the loop. Sources feed object stores; a change marks the
 * model dirty; a sync (coalesced to --min-sync-period, full every
 * --sync-period) rebuilds the model from the stores, plans and programs it.
 * The HTTP servers read what the loop publishes in struct sp_dshared. */
#include "svcproxy/daemon.h"

#include <ctype.h>
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "files.h"
#include "http.h"
#include "kube.h"
#include "log.h"
#include "loop.h"
#include "state.h"
#include "svcproxy/conntrack.h"
#include "svcproxy/plan.h"
#include "svcproxy/source.h"

#define NS_PER_MS 1000000LL
/* Change times waiting for a sync; beyond this (syncs failing for long)
 * later changes go untimed rather than grow without bound. */
#define MAX_TRIGGERS 100000

struct sp_daemon {
	const struct sp_daemon_opts *opts;
	struct sp_config *cfg;
	const struct sp_backend_ops *ops;
	struct sp_backend *be;
	struct sp_ct_tracker *ct; /* NULL: no conntrack flushing */
	struct sp_source_limits lim;
	int epfd;
	struct sp_dwatch sig_w, sync_w, wd_w, files_w;
	struct sp_dfiles *files;
	struct sp_kube *kube;
	struct sp_dshared sh;
	struct sp_dhttp *http;
	struct sp_dlog_dedup dedup_sync;
	struct sp_dlog_dedup dedup_hc; /* health-check port binds */
	bool stop;
	bool dirty;	/* the stores changed since the last successful sync */
	bool need_full; /* next sync reads the kernel back (first, reload, failure) */
	bool synced_once;
	bool failing;
	int64_t last_attempt_ns, last_full_ns; /* CLOCK_MONOTONIC */
	int64_t retry_ns;		       /* backoff after a failed sync */
	int64_t *triggers; /* CLOCK_REALTIME of unsynced changes, one per object */
	size_t n_triggers, cap_triggers;
	struct sp_dchanges pending;
	uint64_t watchdog_usec;
};

int sp_dloop_add(int epfd, struct sp_dwatch *w, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = w};

	return epoll_ctl(epfd, EPOLL_CTL_ADD, w->fd, &ev);
}

int sp_dloop_mod(int epfd, struct sp_dwatch *w, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = w};

	return epoll_ctl(epfd, EPOLL_CTL_MOD, w->fd, &ev);
}

int sp_dloop_del(int epfd, struct sp_dwatch *w)
{
	return epoll_ctl(epfd, EPOLL_CTL_DEL, w->fd, NULL);
}

int sp_dtimer_at(int tfd, int64_t when_ns)
{
	struct itimerspec its = {0};

	if (when_ns > 0) {
		its.it_value.tv_sec = when_ns / 1000000000;
		its.it_value.tv_nsec = when_ns % 1000000000;
	}
	return timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

static int64_t mono_now(void)
{
	return sp_dclock_ns(CLOCK_MONOTONIC);
}

static int64_t max64(int64_t a, int64_t b)
{
	return a > b ? a : b;
}

static int64_t min_sync_ns(const struct sp_daemon *d)
{
	return (int64_t)d->cfg->min_sync_period_ms * NS_PER_MS;
}

static int64_t sync_period_ns(const struct sp_daemon *d)
{
	return max64((int64_t)d->cfg->sync_period_ms * NS_PER_MS, NS_PER_MS);
}

static bool sources_ready(const struct sp_daemon *d)
{
	return d->files || (d->kube && sp_kube_synced(d->kube));
}

/* When the next sync is due, or 0 for none (sources not ready yet). */
static int64_t next_sync_at(const struct sp_daemon *d, bool *full)
{
	int64_t at = 0;

	*full = false;
	if (!sources_ready(d))
		return 0;
	if (!d->synced_once && !d->failing) {
		*full = true;
		return mono_now();
	}
	if (d->failing)
		at = d->last_attempt_ns + d->retry_ns;
	else if (d->dirty)
		at = max64(d->last_attempt_ns + min_sync_ns(d), 1);
	if (!at || d->last_full_ns + sync_period_ns(d) <= at) {
		at = d->last_full_ns + sync_period_ns(d);
		*full = true;
	}
	return at;
}

static void rearm(struct sp_daemon *d)
{
	bool full;
	int64_t at = next_sync_at(d, &full);

	if (sp_dtimer_at(d->sync_w.fd, at ? max64(at, 1) : 0) < 0)
		sp_dlog(SP_LOG_ERROR, "timerfd: %s", strerror(errno));
}

static void add_trigger(struct sp_daemon *d, int64_t at)
{
	if (d->n_triggers < MAX_TRIGGERS)
		*(int64_t *)sp_array_push(&d->triggers, &d->n_triggers, &d->cap_triggers,
					  sizeof(int64_t)) = at;
}

/* A source changed what is in force: queue a sync. Each changed Service or
 * EndpointSlice is one network programming observation, timed from
 * ch->trig when the source knows when it changed, else from trigger_ns or
 * now. */
static void queue_change(struct sp_daemon *d, const struct sp_dchanges *ch, int64_t trigger_ns)
{
	int64_t real = sp_dclock_ns(CLOCK_REALTIME);

	bool any = ch->services || ch->slices || ch->nodes;

	if (ch->trig)
		for (size_t i = 0; i < ch->trig->n; i++)
			add_trigger(d, ch->trig->at[i]);
	else
		for (size_t i = 0; i < ch->services + ch->slices; i++)
			add_trigger(d, trigger_ns ? trigger_ns : real);
	d->dirty = true;
	d->pending.services += ch->services;
	d->pending.slices += ch->slices;
	d->pending.nodes += ch->nodes;
	pthread_mutex_lock(&d->sh.lock);
	d->sh.m.service_changes_total += ch->services;
	d->sh.m.endpoint_changes_total += ch->slices;
	d->sh.m.service_changes_pending = d->pending.services;
	d->sh.m.endpoint_changes_pending = d->pending.slices;
	d->sh.m.last_queued_timestamp = (double)real / 1e9;
	if (!d->sh.pending_since_ns)
		d->sh.pending_since_ns = mono_now();
	pthread_mutex_unlock(&d->sh.lock);
	if (any)
		sp_dlog(SP_LOG_INFO,
			"change queued: %zu service(s), %zu endpoint slice(s), %zu node(s)",
			ch->services, ch->slices, ch->nodes);
}

/* As kube-proxy's change tracker: a change made before the start is not
 * timed from when it was made. */
static int64_t started_ns(const struct sp_daemon *d)
{
	return (int64_t)(d->sh.start_time * 1e9);
}

static void kube_changed(void *arg, const struct sp_dchanges *ch, int64_t trigger_ns)
{
	queue_change(arg, ch, trigger_ns);
}

static size_t count_local_ready(const struct sp_plan_svcport *sp)
{
	size_t n = 0;

	for (size_t i = 0; i < sp->n_endpoints; i++)
		n += sp->endpoints[i].local && sp->endpoints[i].ready;
	return n;
}

/* Publish what the plan says about Local Services (health check ports,
 * "no local endpoints" gauges). Caller holds the lock. */
static void publish_plan(struct sp_daemon *d, const struct sp_plan *plan)
{
	struct sp_dshared *sh = &d->sh;
	size_t services = 0;

	for (size_t i = 0; i < sh->n_hc; i++) {
		free(sh->hc[i].namespace);
		free(sh->hc[i].name);
	}
	sh->n_hc = 0;
	sh->m.no_local_internal = sh->m.no_local_external = 0;
	for (size_t i = 0; i < plan->n_svcports; i++) {
		const struct sp_plan_svcport *sp = &plan->svcports[i];
		const struct sp_plan_svcport *prev = i ? &plan->svcports[i - 1] : NULL;
		bool new_service = !prev || strcmp(prev->namespace, sp->namespace) ||
				   strcmp(prev->name, sp->name);
		size_t local = count_local_ready(sp);
		struct sp_dhc_service *hc = NULL;

		services += new_service;
		if (sp->internal_policy_local && !sp->local.n)
			sh->m.no_local_internal++;
		if (sp->external_policy_local && !sp->local.n)
			sh->m.no_local_external++;
		if (!sp->health_check_node_port)
			continue;
		for (size_t j = 0; j < sh->n_hc; j++)
			if (sh->hc[j].port == sp->health_check_node_port)
				hc = &sh->hc[j];
		if (!hc) {
			hc = sp_array_push(&sh->hc, &sh->n_hc, &sh->cap_hc, sizeof(*hc));
			hc->port = sp->health_check_node_port;
			hc->namespace = sp_xstrdup(sp->namespace);
			hc->name = sp_xstrdup(sp->name);
		}
		/* Over the Service's ports and families: the most local
		 * endpoints any of them has. */
		if (local > hc->local_endpoints)
			hc->local_endpoints = local;
	}
	sh->m.services = services;
	sh->m.svcports = plan->n_svcports;
}

static int fill_model(struct sp_daemon *d, struct sp_cluster *c, struct sp_diag *diag)
{
	if (d->files)
		return sp_dfiles_fill(d->files, c, diag);
	return sp_kube_fill(d->kube, c, diag);
}

static void notify_status(struct sp_daemon *d, const struct sp_plan *plan, bool ok)
{
	char *status;

	if (ok)
		status = sp_xasprintf("STATUS=%s: %zu service ports programmed",
				      d->ops ? sp_mode_name(d->ops->mode) : "", plan->n_svcports);
	else
		status = sp_xasprintf("STATUS=%s: last sync failed, retrying",
				      sp_mode_name(d->ops->mode));
	if (ok && !d->synced_once)
		sd_notifyf(0, "READY=1\n%s", status);
	else
		sd_notify(0, status);
	free(status);
}

/* Health-check servers follow the published Local Services. A port another
 * program holds is retried at every sync and reported once. */
static void sync_hc_servers(struct sp_daemon *d)
{
	struct sp_diag diag;

	if (!d->http)
		return;
	sp_diag_init(&diag);
	sp_dhttp_sync_hc(d->http, &diag);
	sp_dlog_diag(&d->dedup_hc, &diag, NULL);
	sp_diag_free(&diag);
}

static void do_sync(struct sp_daemon *d, bool full)
{
	struct sp_cluster c;
	struct sp_plan plan;
	struct sp_diag diag;
	struct sp_sync_stats stats = {0};
	struct sp_ct_stats ct_stats = {0};
	int64_t start = mono_now(), planned, end, real;
	double secs;
	int r;

	full = full || d->need_full || !d->synced_once;
	sp_cluster_init(&c);
	sp_diag_init(&diag);
	fill_model(d, &c, &diag);
	sp_plan_build(&plan, &c, d->cfg, &diag);
	planned = mono_now();
	/* A sync in progress counts as pending: one stuck in the kernel (an
	 * xtables lock held elsewhere) turns /healthz red after the timeout,
	 * even when it was a periodic resync with no change queued. */
	pthread_mutex_lock(&d->sh.lock);
	if (!d->sh.pending_since_ns)
		d->sh.pending_since_ns = start;
	pthread_mutex_unlock(&d->sh.lock);
	if (!d->be)
		d->be = d->ops->open(d->cfg, &diag);
	r = d->be ? d->ops->sync(d->be, &plan, full, &stats, &diag) : -1;
	end = mono_now();
	real = sp_dclock_ns(CLOCK_REALTIME);
	secs = (double)(end - start) / 1e9;
	d->last_attempt_ns = end;

	/* After the rules, never before: a flush ahead of them would let the
	 * next packet recreate the stale entry through the old rules. */
	if (r >= 0 && d->ct)
		sp_ct_tracker_sync(d->ct, &plan, &ct_stats, &diag);
	sp_dlog_diag(&d->dedup_sync, &diag, NULL);

	pthread_mutex_lock(&d->sh.lock);
	d->sh.m.conntrack_flushed_total += ct_stats.entries_deleted;
	sp_dhist_observe(&d->sh.m.sync_duration, secs);
	sp_dhist_observe(full ? &d->sh.m.sync_full : &d->sh.m.sync_partial, secs);
	if (r < 0) {
		d->sh.m.sync_errors_total++;
		d->sh.sync_failing = true;
	} else {
		if (r > 0)
			d->sh.m.sync_refusals_total++;
		d->sh.sync_failing = false;
		d->sh.pending_since_ns = 0;
		d->sh.last_updated_ns = real;
		d->sh.m.last_sync_timestamp = (double)real / 1e9;
		d->sh.m.rules_total = stats.objects_changed + stats.objects_unchanged;
		if (stats.rules_total)
			d->sh.m.rules_total = stats.rules_total;
		d->sh.m.service_changes_pending = d->sh.m.endpoint_changes_pending = 0;
		for (size_t i = 0; i < d->n_triggers; i++)
			sp_dhist_observe(&d->sh.m.netprog, max64(real - d->triggers[i], 0) / 1e9);
		publish_plan(d, &plan);
	}
	pthread_mutex_unlock(&d->sh.lock);

	if (r < 0) {
		if (!d->failing)
			d->retry_ns = max64(min_sync_ns(d), 1000 * NS_PER_MS);
		else
			d->retry_ns = d->retry_ns * 2 > sync_period_ns(d) ? sync_period_ns(d)
									  : d->retry_ns * 2;
		if (!d->failing)
			sp_dlog(SP_LOG_ERROR,
				"sync failed; the previous kernel state stays in force, retrying");
		d->failing = true;
		d->need_full = true;
		notify_status(d, &plan, false);
	} else {
		if (d->failing)
			sp_dlog(SP_LOG_NOTICE, "sync recovered");
		if (!d->synced_once)
			sp_dlog(SP_LOG_NOTICE, "first sync done: %zu service ports programmed (%s)",
				plan.n_svcports, sp_mode_name(d->ops->mode));
		sp_dlog(SP_LOG_INFO,
			"%s sync: %zu service ports, %zu objects changed, %zu messages, %.6f s "
			"(model and plan %.6f s, %s %.6f s)",
			full ? "full" : "partial", plan.n_svcports, stats.objects_changed,
			stats.messages_sent, secs, (double)(planned - start) / 1e9,
			sp_mode_name(d->ops->mode), (double)(end - planned) / 1e9);
		notify_status(d, &plan, true);
		d->failing = false;
		d->need_full = false;
		d->synced_once = true;
		d->dirty = false;
		d->n_triggers = 0;
		memset(&d->pending, 0, sizeof(d->pending));
		if (full)
			d->last_full_ns = end;
	}
	sync_hc_servers(d);
	if (r >= 0)
		sp_dshared_set_plan(&d->sh, &plan);
	sp_plan_free(&plan);
	sp_dcluster_release(&c);
	/* Decoding a large source leaves glibc's heap full of freed pages;
	 * give them back, as a node agent's footprint is watched. */
	malloc_trim(0);
	sp_diag_free(&diag);
}

static void on_sync_timer(struct sp_dwatch *w, uint32_t events)
{
	struct sp_daemon *d = w->arg;
	uint64_t ticks;
	bool full;
	int64_t at;

	(void)events;
	if (read(w->fd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
		sp_dlog(SP_LOG_ERROR, "timerfd read: %s", strerror(errno));
	at = next_sync_at(d, &full);
	if (at && at <= mono_now())
		do_sync(d, full);
}

static void on_watchdog(struct sp_dwatch *w, uint32_t events)
{
	uint64_t ticks;

	(void)events;
	if (read(w->fd, &ticks, sizeof(ticks)) > 0)
		sd_notify(0, "WATCHDOG=1");
}

static void on_files(struct sp_dwatch *w, uint32_t events)
{
	struct sp_daemon *d = w->arg;
	struct sp_dtriggers trig = {.since_ns = started_ns(d)};
	struct sp_dchanges ch = {.trig = &trig};
	struct sp_diag diag;
	size_t n_bad = 0;

	(void)events;
	sp_diag_init(&diag);
	if (sp_dfiles_update(d->files, false, &ch, &n_bad, &diag))
		queue_change(d, &ch, 0);
	sp_dtriggers_free(&trig);
	for (size_t i = 0; i < diag.n_msgs; i++)
		sp_dlog(diag.msgs[i].severity == SP_SEV_ERROR ? SP_LOG_ERROR : SP_LOG_WARNING, "%s",
			diag.msgs[i].text);
	if (n_bad) {
		pthread_mutex_lock(&d->sh.lock);
		d->sh.m.source_errors_total += n_bad;
		pthread_mutex_unlock(&d->sh.lock);
	}
	sp_diag_free(&diag);
}

/* Every message of diag, no deduplication (one-off events). */
static void log_all(const struct sp_diag *diag, const char *context)
{
	struct sp_dlog_dedup once = {0};

	sp_dlog_diag(&once, diag, context);
	sp_dlog_dedup_free(&once);
}

/* Rebind the health and metrics servers to the configured addresses; when
 * that fails, go back to the previous ones rather than serve nothing. */
static void rebind_http(struct sp_daemon *d, const char *old_healthz, const char *old_metrics)
{
	struct sp_diag diag;

	sp_diag_init(&diag);
	sp_dhttp_stop(d->http);
	d->http = sp_dhttp_start(&d->sh, d->cfg->healthz_bind_address, d->cfg->metrics_bind_address,
				 &diag);
	if (!d->http) {
		log_all(&diag, "reload: keeping the previous bind addresses");
		sp_diag_free(&diag);
		sp_diag_init(&diag);
		d->http = sp_dhttp_start(&d->sh, old_healthz, old_metrics, &diag);
		if (!d->http)
			log_all(&diag, "reload: health and metrics servers are down");
	}
	sp_diag_free(&diag);
}

/* The sources read under the configuration's limits; the API source
 * borrows d->lim, the file source keeps a copy. */
static void apply_limits(struct sp_daemon *d)
{
	sp_config_source_limits(d->cfg, &d->lim);
	if (d->files)
		sp_dfiles_set_limits(d->files, &d->lim);
	sp_dlog(SP_LOG_INFO, "source limits: %zu bytes, %zu levels, %zu items",
		d->lim.max_file_bytes, d->lim.max_depth, d->lim.max_items);
}

/* Swap in a configuration rebuilt by the caller's reload function. */
static void reload_config(struct sp_daemon *d)
{
	struct sp_config next, old;
	struct sp_diag diag;
	bool rebind;

	memset(&next, 0, sizeof(next));
	sp_diag_init(&diag);
	if (d->opts->reload(&next, d->opts->reload_arg, &diag) < 0) {
		log_all(&diag, "reload refused, the running configuration stays");
		sp_config_free(&next);
		sp_diag_free(&diag);
		return;
	}
	log_all(&diag, "reload");
	sp_diag_free(&diag);
	if (next.mode != d->cfg->mode) {
		sp_dlog(SP_LOG_WARNING,
			"reload: the proxy mode cannot change without a restart; staying in %s "
			"mode",
			sp_mode_name(d->cfg->mode));
		next.mode = d->cfg->mode;
	}
	if (!next.hostname && d->cfg->hostname)
		next.hostname = sp_xstrdup(d->cfg->hostname);
	rebind = sp_strcmp_null(next.healthz_bind_address, d->cfg->healthz_bind_address) ||
		 sp_strcmp_null(next.metrics_bind_address, d->cfg->metrics_bind_address);
	old = *d->cfg;
	*d->cfg = next;
	if (rebind)
		rebind_http(d, old.healthz_bind_address, old.metrics_bind_address);
	sp_config_free(&old);
	apply_limits(d);
	/* The backend may keep what it read from the old configuration: open
	 * a fresh one (its first sync is full, from the kernel's state). */
	if (d->be)
		d->ops->close(d->be);
	d->be = NULL;
	pthread_mutex_lock(&d->sh.lock);
	d->sh.timeout_ns = 2 * sync_period_ns(d);
	pthread_mutex_unlock(&d->sh.lock);
}

static void reload(struct sp_daemon *d)
{
	struct sp_dtriggers trig = {.since_ns = started_ns(d)};
	struct sp_dchanges ch = {.trig = &trig};

	sp_dlog(SP_LOG_NOTICE, "SIGHUP: reloading");
	if (d->opts->reload)
		reload_config(d);
	if (d->files) {
		struct sp_diag diag;
		size_t n_bad = 0;

		sp_diag_init(&diag);
		sp_dfiles_update(d->files, true, &ch, &n_bad, &diag);
		log_all(&diag, NULL);
		sp_diag_free(&diag);
		pthread_mutex_lock(&d->sh.lock);
		d->sh.m.source_errors_total += n_bad;
		pthread_mutex_unlock(&d->sh.lock);
	}
	if (d->kube)
		sp_kube_relist(d->kube);
	d->need_full = true;
	queue_change(d, &ch, 0);
	sp_dtriggers_free(&trig);
}

static void on_signal(struct sp_dwatch *w, uint32_t events)
{
	struct sp_daemon *d = w->arg;
	struct signalfd_siginfo si;

	(void)events;
	while (read(w->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			reload(d);
		} else {
			sp_dlog(SP_LOG_NOTICE, "%s: stopping; the kernel state stays programmed",
				strsignal((int)si.ssi_signo));
			d->stop = true;
		}
	}
}

static int add_fd(struct sp_daemon *d, struct sp_dwatch *w, int fd, sp_dwatch_fn fn,
		  struct sp_diag *diag)
{
	w->fd = fd;
	w->fn = fn;
	w->arg = d;
	if (fd < 0 || sp_dloop_add(d->epfd, w, EPOLLIN) < 0) {
		sp_diag_error(diag, "event loop setup: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static char *node_name(const struct sp_config *cfg)
{
	char host[256] = "";
	char *name;

	if (cfg->hostname && *cfg->hostname)
		return sp_xstrdup(cfg->hostname);
	gethostname(host, sizeof(host) - 1);
	name = sp_xstrdup(host);
	/* As kube-proxy: the node name is the lower-cased host name. */
	for (char *p = name; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return name;
}

static int setup(struct sp_daemon *d, sigset_t *old_mask, struct sp_diag *diag)
{
	sigset_t mask;

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	signal(SIGPIPE, SIG_IGN);
	if (sigprocmask(SIG_BLOCK, &mask, old_mask) < 0) {
		sp_diag_error(diag, "sigprocmask: %s", strerror(errno));
		return -1;
	}
	d->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (d->epfd < 0) {
		sp_diag_error(diag, "epoll: %s", strerror(errno));
		return -1;
	}
	if (add_fd(d, &d->sig_w, signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC), on_signal, diag) <
		    0 ||
	    add_fd(d, &d->sync_w, timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC),
		   on_sync_timer, diag) < 0)
		return -1;
	if (sd_watchdog_enabled(0, &d->watchdog_usec) > 0 && d->watchdog_usec) {
		int64_t half = (int64_t)d->watchdog_usec * 500;
		struct itimerspec its = {
			.it_value = {half / 1000000000, half % 1000000000},
			.it_interval = {half / 1000000000, half % 1000000000},
		};

		if (add_fd(d, &d->wd_w, timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC),
			   on_watchdog, diag) < 0 ||
		    timerfd_settime(d->wd_w.fd, 0, &its, NULL) < 0)
			return -1;
	} else {
		d->wd_w.fd = -1;
	}
	d->http = sp_dhttp_start(&d->sh, d->cfg->healthz_bind_address, d->cfg->metrics_bind_address,
				 diag);
	if (!d->http)
		return -1;
	if (!d->opts->no_conntrack_flush) {
		char *path = sp_ct_state_path(d->opts->state_dir, d->ops->mode);

		d->ct = sp_ct_tracker_new(path, diag);
		free(path);
	}
	if (d->opts->n_sources) {
		d->files = sp_dfiles_open(d->opts->sources, d->opts->n_sources, &d->lim, diag);
		if (!d->files)
			return -1;
		return add_fd(d, &d->files_w, sp_dfiles_fd(d->files), on_files, diag);
	} else {
		char *node = node_name(d->cfg);
		struct sp_kube_opts ko = {
			.kubeconfig = d->opts->in_cluster ? NULL : d->opts->kubeconfig,
			.node_name = node,
			.epfd = d->epfd,
			.sh = &d->sh,
			.lim = &d->lim,
			.changed = kube_changed,
			.arg = d,
		};

		d->kube = sp_kube_open(&ko, diag);
		free(node);
		return d->kube ? 0 : -1;
	}
}

static void teardown(struct sp_daemon *d, const sigset_t *old_mask)
{
	sp_dhttp_stop(d->http);
	sp_kube_close(d->kube);
	sp_dfiles_close(d->files);
	if (d->be)
		d->ops->close(d->be);
	if (d->ct)
		sp_ct_tracker_free(d->ct);
	if (d->sig_w.fd >= 0)
		close(d->sig_w.fd);
	if (d->sync_w.fd >= 0)
		close(d->sync_w.fd);
	if (d->wd_w.fd >= 0)
		close(d->wd_w.fd);
	if (d->epfd >= 0)
		close(d->epfd);
	free(d->triggers);
	sp_dlog_dedup_free(&d->dedup_sync);
	sp_dlog_dedup_free(&d->dedup_hc);
	sp_dshared_free(&d->sh);
	/* SIGTERM and SIGINT stay blocked: a second one (timeout(1) and
	 * process-group kills deliver it twice) must not kill the process
	 * halfway through its exit. SIGHUP goes back to how it was. */
	{
		sigset_t hup;

		sigemptyset(&hup);
		sigaddset(&hup, SIGHUP);
		if (!sigismember(old_mask, SIGHUP))
			sigprocmask(SIG_UNBLOCK, &hup, NULL);
	}
}

int sp_daemon_run(const struct sp_daemon_opts *opts, struct sp_diag *diag)
{
	struct sp_daemon d = {0};
	sigset_t old_mask;
	int ret = 0;

	sigemptyset(&old_mask);
	sp_dlog_set_level(opts->log_level);
	if (!opts->cfg || !opts->ops || !opts->ops->sync || !opts->ops->open) {
		sp_diag_error(diag, "svcproxy run: the %s mode cannot program the kernel yet",
			      opts->cfg ? sp_mode_name(opts->cfg->mode) : "selected");
		return 1;
	}
	d.opts = opts;
	d.cfg = opts->cfg;
	d.ops = opts->ops;
	d.epfd = d.sig_w.fd = d.sync_w.fd = d.wd_w.fd = -1;
	apply_limits(&d);
	sp_dshared_init(&d.sh, sp_mode_name(opts->ops->mode), 2 * sync_period_ns(&d));
	d.sh.print_plan = opts->ops->print_plan;
	/* Like kube-proxy, count from the start: no sync within the timeout
	 * is unhealthy. */
	d.sh.pending_since_ns = mono_now();
	if (setup(&d, &old_mask, diag) < 0) {
		teardown(&d, &old_mask);
		return 1;
	}
	sp_dlog(SP_LOG_NOTICE, "started: %s mode, %s", sp_mode_name(d.ops->mode),
		d.files ? "file sources" : "API server");
	while (!d.stop) {
		struct epoll_event evs[32];
		int n;

		rearm(&d);
		n = epoll_wait(d.epfd, evs, SP_ARRAY_SIZE(evs), -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			sp_diag_error(diag, "epoll_wait: %s", strerror(errno));
			ret = 1;
			break;
		}
		for (int i = 0; i < n && !d.stop; i++) {
			struct sp_dwatch *w = evs[i].data.ptr;

			w->fn(w, evs[i].events);
		}
		if (d.kube && !d.sh.node_eligible != !sp_kube_node_eligible(d.kube)) {
			pthread_mutex_lock(&d.sh.lock);
			d.sh.node_eligible = sp_kube_node_eligible(d.kube);
			pthread_mutex_unlock(&d.sh.lock);
		}
	}
	sd_notify(0, "STOPPING=1");
	teardown(&d, &old_mask);
	return ret;
}
