#include "state.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* prometheus.ExponentialBuckets(0.001, 2, 15), kube-proxy's sync buckets. */
static const double sync_bounds[] = {0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128,
				     0.256, 0.512, 1.024, 2.048, 4.096, 8.192, 16.384};
/* kube-proxy's network programming buckets: 0.25, 0.5, 1..59, 60..115 by 5,
 * 120..300 by 30. Filled on first use. */
static double netprog_bounds[2 + 59 + 12 + 7];

static void netprog_bounds_init(void)
{
	size_t n = 0;

	if (netprog_bounds[0] != 0)
		return;
	netprog_bounds[n++] = 0.25;
	netprog_bounds[n++] = 0.5;
	for (int i = 1; i <= 59; i++)
		netprog_bounds[n++] = i;
	for (int i = 0; i < 12; i++)
		netprog_bounds[n++] = 60 + 5 * i;
	for (int i = 0; i < 7; i++)
		netprog_bounds[n++] = 120 + 30 * i;
}

static void hist_init(struct sp_dhist *h, const double *bounds, size_t n)
{
	memset(h, 0, sizeof(*h));
	h->bounds = bounds;
	h->n_bounds = n;
	h->buckets = sp_xcalloc(n, sizeof(*h->buckets));
}

void sp_dhist_observe(struct sp_dhist *h, double value)
{
	for (size_t i = 0; i < h->n_bounds; i++)
		if (value <= h->bounds[i]) {
			h->buckets[i]++;
			break;
		}
	h->sum += value;
	h->count++;
}

void sp_dshared_init(struct sp_dshared *sh, const char *mode_name, int64_t timeout_ns)
{
	memset(sh, 0, sizeof(*sh));
	pthread_mutex_init(&sh->lock, NULL);
	netprog_bounds_init();
	hist_init(&sh->m.sync_duration, sync_bounds, SP_ARRAY_SIZE(sync_bounds));
	hist_init(&sh->m.sync_full, sync_bounds, SP_ARRAY_SIZE(sync_bounds));
	hist_init(&sh->m.sync_partial, sync_bounds, SP_ARRAY_SIZE(sync_bounds));
	hist_init(&sh->m.netprog, netprog_bounds, SP_ARRAY_SIZE(netprog_bounds));
	sh->mode_name = mode_name;
	sh->timeout_ns = timeout_ns;
	sh->node_eligible = true;
	sh->start_time = (double)sp_dclock_ns(CLOCK_REALTIME) / 1e9;
}

static void hc_free(struct sp_dshared *sh)
{
	for (size_t i = 0; i < sh->n_hc; i++) {
		free(sh->hc[i].namespace);
		free(sh->hc[i].name);
	}
	free(sh->hc);
	sh->hc = NULL;
	sh->n_hc = sh->cap_hc = 0;
}

void sp_dshared_free(struct sp_dshared *sh)
{
	free(sh->m.sync_duration.buckets);
	free(sh->m.sync_full.buckets);
	free(sh->m.sync_partial.buckets);
	free(sh->m.netprog.buckets);
	if (sh->rules_plan) {
		sp_plan_free(&sh->rules_plan->plan);
		free(sh->rules_plan);
	}
	hc_free(sh);
	pthread_mutex_destroy(&sh->lock);
}

static void plan_ref_drop(struct sp_dplan_ref *ref)
{
	sp_plan_free(&ref->plan);
	free(ref);
}

void sp_dshared_set_plan(struct sp_dshared *sh, struct sp_plan *plan)
{
	struct sp_dplan_ref *ref = sp_xcalloc(1, sizeof(*ref)), *old;

	ref->plan = *plan;
	ref->refs = 1;
	memset(plan, 0, sizeof(*plan));
	pthread_mutex_lock(&sh->lock);
	old = sh->rules_plan;
	sh->rules_plan = ref;
	if (old && --old->refs)
		old = NULL;
	pthread_mutex_unlock(&sh->lock);
	/* Freed outside the lock: at 10,000 Services it takes milliseconds
	 * that /healthz should not wait for. */
	if (old)
		plan_ref_drop(old);
}

struct sp_dplan_ref *sp_dshared_get_plan(struct sp_dshared *sh)
{
	struct sp_dplan_ref *ref;

	pthread_mutex_lock(&sh->lock);
	ref = sh->rules_plan;
	if (ref)
		ref->refs++;
	pthread_mutex_unlock(&sh->lock);
	return ref;
}

void sp_dshared_put_plan(struct sp_dshared *sh, struct sp_dplan_ref *ref)
{
	bool last;

	if (!ref)
		return;
	pthread_mutex_lock(&sh->lock);
	last = --ref->refs == 0;
	pthread_mutex_unlock(&sh->lock);
	if (last)
		plan_ref_drop(ref);
}

int64_t sp_dclock_ns(int clock_id)
{
	struct timespec ts;

	clock_gettime(clock_id, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct sp_dhealth sp_dhealth_eval(const struct sp_dshared *sh, int64_t mono_now, int64_t real_now)
{
	struct sp_dhealth h = {.healthy = true, .last_updated_ns = sh->last_updated_ns};

	if (sh->sync_failing)
		h.healthy = false;
	else if (sh->pending_since_ns && mono_now - sh->pending_since_ns >= sh->timeout_ns)
		h.healthy = false;
	/* As kube-proxy: a healthy answer reports "now", for the clients that
	 * read lastUpdated as "the proxy is alive". */
	if (h.healthy)
		h.last_updated_ns = real_now;
	return h;
}

/* Go's time.Time.String() for a UTC time without the monotonic part:
 * "2006-01-02 15:04:05.999999999 +0000 UTC"; the zero time as Go prints it. */
static void go_time(struct sp_buf *out, int64_t ns)
{
	char stamp[32], frac[16];
	time_t sec = (time_t)(ns / 1000000000);
	long nsec = (long)(ns % 1000000000);
	struct tm tm;
	size_t len;

	if (ns <= 0) {
		sp_buf_add(out, "0001-01-01 00:00:00 +0000 UTC");
		return;
	}
	gmtime_r(&sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
	sp_buf_add(out, stamp);
	if (nsec) {
		snprintf(frac, sizeof(frac), ".%09ld", nsec);
		len = strlen(frac);
		while (frac[len - 1] == '0')
			frac[--len] = '\0';
		sp_buf_add(out, frac);
	}
	sp_buf_add(out, " +0000 UTC");
}

void sp_dhealth_body(struct sp_buf *out, const struct sp_dhealth *h, int64_t real_now,
		     bool with_node, bool node_eligible)
{
	sp_buf_add(out, "{\"lastUpdated\": \"");
	go_time(out, h->last_updated_ns);
	sp_buf_add(out, "\",\"currentTime\": \"");
	go_time(out, real_now);
	sp_buf_add(out, "\"");
	if (with_node)
		sp_buf_addf(out, ", \"nodeEligible\": %s", node_eligible ? "true" : "false");
	sp_buf_add(out, "}");
}

static void json_string(struct sp_buf *out, const char *s)
{
	sp_buf_add(out, "\"");
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			sp_buf_addf(out, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			sp_buf_addf(out, "\\u%04x", (unsigned char)*s);
		else
			sp_buf_addn(out, s, 1);
	}
	sp_buf_add(out, "\"");
}

void sp_dhc_body(struct sp_buf *out, const struct sp_dhc_service *svc, bool proxy_healthy)
{
	sp_buf_add(out, "{\n\t\"service\": {\n\t\t\"namespace\": ");
	json_string(out, svc->namespace);
	sp_buf_add(out, ",\n\t\t\"name\": ");
	json_string(out, svc->name);
	sp_buf_addf(out, "\n\t},\n\t\"localEndpoints\": %zu,\n\t\"serviceProxyHealthy\": %s\n}",
		    svc->local_endpoints, proxy_healthy ? "true" : "false");
}

static void head(struct sp_buf *out, const char *name, const char *type, const char *help)
{
	sp_buf_addf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void value(struct sp_buf *out, const char *name, const char *type, const char *help,
		  double v)
{
	head(out, name, type, help);
	sp_buf_addf(out, "%s %.17g\n", name, v);
}

static void hist(struct sp_buf *out, const char *name, const char *help, const struct sp_dhist *h)
{
	uint64_t cum = 0;

	head(out, name, "histogram", help);
	for (size_t i = 0; i < h->n_bounds; i++) {
		cum += h->buckets[i];
		sp_buf_addf(out, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i],
			    (unsigned long long)cum);
	}
	sp_buf_addf(out, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)h->count);
	sp_buf_addf(out, "%s_sum %.17g\n%s_count %llu\n", name, h->sum, name,
		    (unsigned long long)h->count);
}

/* The process_* family every Prometheus client exports, which node
 * dashboards read for kube-proxy too. */
static void process_metrics(const struct sp_dshared *sh, struct sp_buf *out)
{
	struct rusage ru;
	struct rlimit rl;
	long pages = 0, rss = 0;
	size_t fds = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	DIR *dir = opendir("/proc/self/fd");
	struct dirent *de;

	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	while (dir && (de = readdir(dir)))
		fds += de->d_name[0] != '.';
	if (dir) {
		closedir(dir);
		fds--; /* the directory's own descriptor */
	}
	getrusage(RUSAGE_SELF, &ru);
	value(out, "process_cpu_seconds_total", "counter",
	      "Total user and system CPU time spent in seconds.",
	      (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
		      (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
	value(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
	      (double)rss * (double)sysconf(_SC_PAGESIZE));
	value(out, "process_open_fds", "gauge", "Number of open file descriptors.", (double)fds);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		value(out, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
		      (double)rl.rlim_cur);
	value(out, "process_start_time_seconds", "gauge",
	      "Start time of the process since unix epoch in seconds.", sh->start_time);
}

void sp_dmetrics_format(const struct sp_dshared *sh, struct sp_buf *out)
{
	const struct sp_dmetrics *m = &sh->m;

	hist(out, "kubeproxy_sync_proxy_rules_duration_seconds",
	     "SyncProxyRules latency in seconds", &m->sync_duration);
	hist(out, "kubeproxy_sync_full_proxy_rules_duration_seconds",
	     "SyncProxyRules latency in seconds for full resyncs", &m->sync_full);
	hist(out, "kubeproxy_sync_partial_proxy_rules_duration_seconds",
	     "SyncProxyRules latency in seconds for partial resyncs", &m->sync_partial);
	value(out, "kubeproxy_sync_proxy_rules_last_timestamp_seconds", "gauge",
	      "The last time proxy rules were successfully synced", m->last_sync_timestamp);
	value(out, "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds", "gauge",
	      "The last time a sync of proxy rules was queued", m->last_queued_timestamp);
	hist(out, "kubeproxy_network_programming_duration_seconds",
	     "In Cluster Network Programming Latency in seconds", &m->netprog);
	value(out, "kubeproxy_sync_proxy_rules_endpoint_changes_pending", "gauge",
	      "Pending proxy rules Endpoint changes", (double)m->endpoint_changes_pending);
	value(out, "kubeproxy_sync_proxy_rules_endpoint_changes_total", "counter",
	      "Cumulative proxy rules Endpoint changes", (double)m->endpoint_changes_total);
	value(out, "kubeproxy_sync_proxy_rules_service_changes_pending", "gauge",
	      "Pending proxy rules Service changes", (double)m->service_changes_pending);
	value(out, "kubeproxy_sync_proxy_rules_service_changes_total", "counter",
	      "Cumulative proxy rules Service changes", (double)m->service_changes_total);
	head(out, "kubeproxy_sync_proxy_rules_no_local_endpoints_total", "gauge",
	     "Number of services with a Local traffic policy and no endpoints");
	sp_buf_addf(out,
		    "kubeproxy_sync_proxy_rules_no_local_endpoints_total{traffic_policy="
		    "\"internal\"} %zu\n"
		    "kubeproxy_sync_proxy_rules_no_local_endpoints_total{traffic_policy="
		    "\"external\"} %zu\n",
		    m->no_local_internal, m->no_local_external);
	head(out, "kubeproxy_proxy_healthz_total", "counter",
	     "Cumulative proxy healthz HTTP status");
	sp_buf_addf(out, "kubeproxy_proxy_healthz_total{code=\"200\"} %llu\n",
		    (unsigned long long)m->healthz[0]);
	sp_buf_addf(out, "kubeproxy_proxy_healthz_total{code=\"503\"} %llu\n",
		    (unsigned long long)m->healthz[1]);
	head(out, "kubeproxy_proxy_livez_total", "counter", "Cumulative proxy livez HTTP status");
	sp_buf_addf(out, "kubeproxy_proxy_livez_total{code=\"200\"} %llu\n",
		    (unsigned long long)m->livez[0]);
	sp_buf_addf(out, "kubeproxy_proxy_livez_total{code=\"503\"} %llu\n",
		    (unsigned long long)m->livez[1]);
	/* The per-mode rule counts under kube-proxy's names where it has one. */
	if (!strcmp(sh->mode_name, "nftables")) {
		value(out, "kubeproxy_sync_proxy_rules_nftables_sync_failures_total", "counter",
		      "Cumulative proxy nftables sync failures", (double)m->sync_errors_total);
	} else {
		value(out, "kubeproxy_sync_proxy_rules_iptables_restore_failures_total", "counter",
		      "Cumulative proxy iptables restore failures", (double)m->sync_errors_total);
		head(out, "kubeproxy_sync_proxy_rules_iptables_total", "gauge",
		     "Total number of iptables rules owned by kube-proxy");
		sp_buf_addf(out, "kubeproxy_sync_proxy_rules_iptables_total{table=\"all\"} %zu\n",
			    m->rules_total);
	}
	head(out, "svcproxy_programmed_objects", "gauge",
	     "Kernel objects (rules, chains, map elements, virtual servers) in the programmed "
	     "state");
	sp_buf_addf(out, "svcproxy_programmed_objects{mode=\"%s\"} %zu\n", sh->mode_name,
		    m->rules_total);
	value(out, "svcproxy_services", "gauge", "Services in the programmed plan",
	      (double)m->services);
	value(out, "svcproxy_service_ports", "gauge", "Service ports in the programmed plan",
	      (double)m->svcports);
	value(out, "svcproxy_sync_errors_total", "counter",
	      "Syncs the kernel refused as a whole (the previous state stayed)",
	      (double)m->sync_errors_total);
	value(out, "svcproxy_sync_refusals_total", "counter",
	      "Syncs where some object was refused and the rest programmed",
	      (double)m->sync_refusals_total);
	value(out, "svcproxy_source_errors_total", "counter",
	      "Invalid source input (broken files, garbage on a watch) kept out",
	      (double)m->source_errors_total);
	value(out, "svcproxy_source_reconnects_total", "counter",
	      "API watch reconnections after an error or a dropped stream",
	      (double)m->source_reconnects_total);
	value(out, "svcproxy_source_relists_total", "counter",
	      "API relists (410 Gone, expired resource version)", (double)m->source_relists_total);
	value(out, "svcproxy_conntrack_flushed_total", "counter",
	      "Conntrack entries flushed for stale UDP endpoints",
	      (double)m->conntrack_flushed_total);
	process_metrics(sh, out);
}
