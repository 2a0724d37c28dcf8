/* The daemon's parts alone (metrics text, health rule, object store,
 * kubeconfig) and its loop against a fake backend that records every sync:
 * file changes coalesced into syncs, a broken file kept out, a failing
 * backend turning /healthz red, health-check ports following endpoints,
 * SIGHUP, SIGTERM. */
#include <check.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../src/daemon/files.h"
#include "../../src/daemon/http.h"
#include "../../src/daemon/kubeconfig.h"
#include "../../src/daemon/log.h"
#include "../../src/daemon/state.h"
#include "../../src/daemon/store.h"
#include "svcproxy/daemon.h"

/* ---- pure parts ---- */

START_TEST(metrics_text)
{
	struct sp_dshared sh;
	struct sp_buf out;

	sp_dshared_init(&sh, "nftables", 60000000000LL);
	sp_dhist_observe(&sh.m.sync_duration, 0.003);
	sp_dhist_observe(&sh.m.sync_duration, 20);
	sh.m.endpoint_changes_total = 7;
	sp_buf_init(&out);
	sp_dmetrics_format(&sh, &out);
	ck_assert_ptr_nonnull(strstr(out.data, "# TYPE kubeproxy_sync_proxy_rules_duration_seconds "
					       "histogram\n"));
	/* cumulative buckets: 0.003 falls in le=0.004 and above */
	ck_assert_ptr_nonnull(strstr(
		out.data, "kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"0.002\"} 0\n"));
	ck_assert_ptr_nonnull(strstr(
		out.data, "kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"0.004\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(
		out.data, "kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"16.384\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(
		out.data, "kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"+Inf\"} 2\n"));
	ck_assert_ptr_nonnull(
		strstr(out.data, "kubeproxy_sync_proxy_rules_duration_seconds_count 2\n"));
	ck_assert_ptr_nonnull(
		strstr(out.data, "kubeproxy_sync_proxy_rules_endpoint_changes_total 7\n"));
	ck_assert_ptr_nonnull(strstr(
		out.data, "kubeproxy_network_programming_duration_seconds_bucket{le=\"300\"} 0\n"));
	ck_assert_ptr_nonnull(
		strstr(out.data, "svcproxy_programmed_objects{mode=\"nftables\"} 0\n"));
	ck_assert_ptr_nonnull(strstr(out.data, "\nprocess_resident_memory_bytes "));
	ck_assert_ptr_null(strstr(out.data, "\nprocess_resident_memory_bytes 0\n"));
	ck_assert_ptr_nonnull(strstr(out.data, "\nprocess_start_time_seconds 1"));
	sp_buf_free(&out);
	sp_dshared_free(&sh);
}
END_TEST

START_TEST(health_rule)
{
	struct sp_dshared sh;
	struct sp_dhealth h;
	struct sp_buf out;

	sp_dshared_init(&sh, "nftables", 1000);
	h = sp_dhealth_eval(&sh, 5000, 42);
	ck_assert(h.healthy); /* nothing pending: starting up or fully synced */
	ck_assert_int_eq(h.last_updated_ns, 42);
	sh.pending_since_ns = 4500;
	ck_assert(sp_dhealth_eval(&sh, 5000, 42).healthy); /* queued, not late yet */
	sh.last_updated_ns = 7;
	h = sp_dhealth_eval(&sh, 5500, 42);
	ck_assert(!h.healthy); /* waited the whole timeout */
	ck_assert_int_eq(h.last_updated_ns, 7);
	sh.pending_since_ns = 0;
	sh.sync_failing = true;
	ck_assert(!sp_dhealth_eval(&sh, 5500, 42).healthy); /* a failed sync is red at once */

	sp_buf_init(&out);
	h.last_updated_ns = 1700000000123456000LL;
	sp_dhealth_body(&out, &h, 1700000001000000000LL, true, true);
	ck_assert_str_eq(out.data, "{\"lastUpdated\": \"2023-11-14 22:13:20.123456 +0000 UTC\","
				   "\"currentTime\": \"2023-11-14 22:13:21 +0000 UTC\", "
				   "\"nodeEligible\": true}");
	sp_buf_free(&out);
	sp_dshared_free(&sh);
}
END_TEST

START_TEST(hc_body_shape)
{
	struct sp_dhc_service svc = {
		.port = 30000, .namespace = "ns", .name = "we\"b", .local_endpoints = 2};
	struct sp_buf out;

	sp_buf_init(&out);
	sp_dhc_body(&out, &svc, true);
	ck_assert_str_eq(out.data, "{\n\t\"service\": {\n\t\t\"namespace\": \"ns\",\n\t\t\"name\": "
				   "\"we\\\"b\"\n\t},\n\t\"localEndpoints\": 2,\n\t"
				   "\"serviceProxyHealthy\": true\n}");
	sp_buf_free(&out);
}
END_TEST

START_TEST(bind_addresses)
{
	static const struct {
		const char *text;
		int family;
		unsigned port;
	} cases[] = {
		{"0.0.0.0:10256", AF_INET, 10256},
		{"127.0.0.1:10249", AF_INET, 10249},
		{"[::]:10256", AF_INET6, 10256},
		{"[fd00::1]:80", AF_INET6, 80},
		{":10256", AF_INET6, 10256},
		{"10256", 0, 0},
		{"1.2.3.4:70000", 0, 0},
		{"host.example:80", 0, 0},
		{"[fd00::1]", 0, 0},
	};
	for (size_t i = 0; i < SP_ARRAY_SIZE(cases); i++) {
		struct sockaddr_storage ss;
		struct sp_diag diag;
		int r;

		sp_diag_init(&diag);
		r = sp_dhttp_parse_addr(cases[i].text, &ss, &diag);
		ck_assert_msg((r == 0) == (cases[i].family != 0), "%s", cases[i].text);
		if (!r) {
			ck_assert_int_eq(ss.ss_family, cases[i].family);
			ck_assert_uint_eq(ntohs(((struct sockaddr_in *)&ss)->sin_port),
					  cases[i].port);
		} else {
			ck_assert(sp_diag_has(&diag, SP_SEV_ERROR, cases[i].text));
		}
		sp_diag_free(&diag);
	}
}
END_TEST

/* What the daemon writes to stderr while fn runs (in this process). */
static char *capture_stderr(void (*fn)(void))
{
	int fds[2], saved = dup(STDERR_FILENO);
	char buf[4096];
	ssize_t n;

	ck_assert_int_eq(pipe(fds), 0);
	fflush(stderr);
	dup2(fds[1], STDERR_FILENO);
	close(fds[1]);
	fn();
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	n = read(fds[0], buf, sizeof(buf) - 1);
	close(fds[0]);
	buf[n > 0 ? n : 0] = '\0';
	return sp_xstrdup(buf);
}

static void log_some(void)
{
	struct sp_diag d;
	struct sp_dlog_dedup dd = {0};

	sp_dlog(SP_LOG_INFO, "an info line nobody asked for");
	sp_dlog(SP_LOG_WARNING, "two\nlines");
	sp_diag_init(&d);
	sp_diag_error(&d, "svc.json: Service a/b: spec.ports[0].port: 0 is not a port");
	sp_dlog_diag(&dd, &d, NULL);
	sp_dlog_diag(&dd, &d, NULL); /* the same again: logged once */
	sp_diag_free(&d);
	sp_dlog_dedup_free(&dd);
}

START_TEST(journald_lines)
{
	char *out;

	setenv("JOURNAL_STREAM", "8:1234", 1);
	sp_dlog_set_level(0); /* the default: quiet */
	out = capture_stderr(log_some);
	ck_assert_str_eq(out, "<4>two lines\n"
			      "<3>svc.json: Service a/b: spec.ports[0].port: 0 is not a port\n");
	free(out);
	unsetenv("JOURNAL_STREAM");
	sp_dlog_set_level(SP_LOG_INFO);
	out = capture_stderr(log_some);
	ck_assert_ptr_nonnull(strstr(out, "svcproxy info: an info line nobody asked for\n"));
	ck_assert_ptr_nonnull(strstr(out, "svcproxy warning: two lines\n"));
	free(out);
	sp_dlog_set_level(0);
}
END_TEST

static cJSON *obj(const char *kind, const char *name, const char *extra)
{
	char *text = sp_xasprintf("{\"kind\":\"%s\",\"metadata\":{\"namespace\":\"ns\",\"name\":"
				  "\"%s\"}%s}",
				  kind, name, extra);
	cJSON *o = cJSON_Parse(text);

	free(text);
	ck_assert_ptr_nonnull(o);
	return o;
}

START_TEST(store_changes)
{
	struct sp_dstore a, b;
	struct sp_dchanges ch = {0};
	cJSON *doc;

	sp_dstore_init(&a, "test", NULL);
	sp_dstore_init(&b, "test", NULL);
	ck_assert(sp_dstore_put(&a, obj("Service", "x", ""), &ch));
	ck_assert(sp_dstore_put(&a, obj("EndpointSlice", "x-1", ""), &ch));
	ck_assert(!sp_dstore_put(&a, obj("Service", "x", ""), &ch)); /* a repeat */
	ck_assert(sp_dstore_put(&a, obj("Service", "x", ",\"spec\":{}"), &ch));
	ck_assert_uint_eq(ch.services, 2);
	ck_assert_uint_eq(ch.slices, 1);
	ck_assert_uint_eq(a.n, 2);

	doc = cJSON_Parse("{\"kind\":\"List\",\"items\":[{\"kind\":\"Service\",\"metadata\":"
			  "{\"namespace\":\"ns\",\"name\":\"x\"}},{\"kind\":\"ConfigMap\","
			  "\"metadata\":{\"name\":\"c\"}},{\"kind\":\"Node\",\"metadata\":"
			  "{\"name\":\"n\"}}]}");
	ck_assert_uint_eq(sp_dstore_add_doc(&b, doc), 2);
	cJSON_Delete(doc);
	memset(&ch, 0, sizeof(ch));
	sp_dstore_diff(&a, &b, &ch);
	/* Service x changed (spec gone), slice removed, node added */
	ck_assert_uint_eq(ch.services, 1);
	ck_assert_uint_eq(ch.slices, 1);
	ck_assert_uint_eq(ch.nodes, 1);
	doc = obj("EndpointSlice", "x-1", "");
	ck_assert(sp_dstore_del(&a, doc, NULL));
	ck_assert(!sp_dstore_del(&a, doc, NULL));
	cJSON_Delete(doc);
	sp_dstore_free(&a);
	sp_dstore_free(&b);
}
END_TEST

static char *write_tmp(const char *dir, const char *name, const char *text)
{
	char *path = sp_xasprintf("%s/%s", dir, name);
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	return path;
}

/* Which list items hold \u0000, and when the list as a whole must go. */
START_TEST(list_nul_items)
{
	static const struct {
		const char *text;
		bool ok;
		size_t n;
		size_t idx[2];
	} cases[] = {
		{"{\"items\":[{\"a\":\"x\"},{\"b\":\"y\"}]}", true, 0, {0}},
		{"{\"items\":[{\"a\":\"x\"},{\"b\":\"y\\u0000z\",\"c\":\"\\u0000\"}]}",
		 true,
		 1,
		 {1}},
		{"{\"kind\":\"List\", \"items\" : [ {\"a\":[\"\\u0000\",1]}, {}, {\"k\\u0000\":1} "
		 "]}",
		 true,
		 2,
		 {0, 2}},
		/* An escaped backslash then "u0000" is text, not a NUL. */
		{"{\"items\":[{\"a\":\"\\\\u0000\"}]}", true, 0, {0}},
		/* Commas inside an item's strings and arrays do not count. */
		{"{\"items\":[{\"a\":\",,\",\"b\":[1,2,3]},{\"c\":\"\\u0000\"}]}", true, 1, {1}},
		{"{\"metadata\":{\"continue\":\"\\u0000\"},\"items\":[]}", false, 0, {0}},
		{"{\"items\":[{}],\"x\":\"\\u0000\"}", false, 0, {0}},
		{"{\"items\":[{}],\"items\":[{\"a\":\"\\u0000\"}]}", false, 0, {0}},
		{"{\"other\":[{\"a\":\"\\u0000\"}]}", false, 0, {0}},
	};

	for (size_t i = 0; i < SP_ARRAY_SIZE(cases); i++) {
		size_t *bad = (size_t *)1, n = 99;
		bool ok = sp_djson_nul_items(cases[i].text, strlen(cases[i].text), &bad, &n);

		ck_assert_msg(ok == cases[i].ok, "case %zu", i);
		ck_assert_msg(n == cases[i].n, "case %zu: %zu items", i, n);
		for (size_t j = 0; j < n; j++)
			ck_assert_msg(bad[j] == cases[i].idx[j], "case %zu: item %zu", i, bad[j]);
		if (!n)
			ck_assert_ptr_null(bad);
		free(bad);
	}
}
END_TEST

START_TEST(kubeconfig_parse)
{
	char dir[] = "/tmp/sp-kubeconfig-XXXXXX";
	struct sp_kconn c;
	struct sp_diag diag;
	char *path, *token;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	sp_diag_init(&diag);
	/* "UEVNCg==" is "PEM\n" */
	path = write_tmp(dir, "config",
			 "apiVersion: v1\nkind: Config\ncurrent-context: b\n"
			 "contexts:\n- name: a\n  context: {cluster: one, user: u1}\n"
			 "- name: b\n  context:\n    cluster: two\n    user: u2\n"
			 "clusters:\n- name: one\n  cluster: {server: 'https://one:1'}\n"
			 "- name: two\n  cluster:\n    server: https://10.0.0.1:6443/\n"
			 "    certificate-authority-data: UEVNCg==\n"
			 "users:\n- name: u2\n  user:\n    client-certificate: certs/c.pem\n"
			 "    client-key: /abs/k.pem\n    token: s3cret\n");
	ck_assert_int_eq(sp_kconn_from_kubeconfig(&c, path, &diag), 0);
	ck_assert_str_eq(c.server, "https://10.0.0.1:6443");
	ck_assert_uint_eq(c.ca.len, 4);
	ck_assert(!memcmp(c.ca.data, "PEM\n", 4));
	ck_assert_str_eq(c.key_file, "/abs/k.pem");
	ck_assert_ptr_nonnull(strstr(c.cert_file, "/certs/c.pem"));
	token = sp_kconn_token(&c);
	ck_assert_str_eq(token, "s3cret");
	free(token);
	sp_kconn_free(&c);
	free(path);

	path = write_tmp(dir, "bad", "current-context: x\ncontexts: []\n");
	ck_assert_int_eq(sp_kconn_from_kubeconfig(&c, path, &diag), -1);
	ck_assert(sp_diag_has(&diag, SP_SEV_ERROR, "current-context \"x\" not found"));
	unlink(path);
	free(path);
	path = write_tmp(
		dir, "exec",
		"current-context: a\ncontexts:\n- name: a\n  context: {cluster: c, user: u}\n"
		"clusters:\n- name: c\n  cluster: {server: 'https://c'}\n"
		"users:\n- name: u\n  user:\n    exec: {command: x}\n");
	ck_assert_int_eq(sp_kconn_from_kubeconfig(&c, path, &diag), -1);
	ck_assert(sp_diag_has(&diag, SP_SEV_ERROR, "not supported"));
	unlink(path);
	free(path);
	path = sp_xasprintf("%s/config", dir);
	unlink(path);
	free(path);
	rmdir(dir);
	sp_diag_free(&diag);
}
END_TEST

/* ---- the loop, against a fake backend ---- */

static int fake_pipe = -1;
static const char *fake_fail_file;

static struct sp_backend *fake_open(const struct sp_config *cfg, struct sp_diag *diag)
{
	(void)cfg;
	(void)diag;
	return (struct sp_backend *)sp_xstrdup("fake");
}

static void fake_close(struct sp_backend *be)
{
	free(be);
}

static int fake_sync(struct sp_backend *be, const struct sp_plan *plan, bool full,
		     struct sp_sync_stats *stats, struct sp_diag *diag)
{
	char line[128];
	bool fail = access(fake_fail_file, F_OK) == 0;
	char *stall = sp_xasprintf("%s.stall", fake_fail_file);
	int len;

	(void)be;
	/* A sync stuck in the kernel: the loop is blocked here while the
	 * HTTP threads keep answering. */
	while (access(stall, F_OK) == 0)
		usleep(50000);
	free(stall);
	len = snprintf(line, sizeof(line), "sync full=%d svcports=%zu result=%s\n", full,
		       plan->n_svcports, fail ? "fail" : "ok");
	if (write(fake_pipe, line, (size_t)len) < 0)
		abort();
	if (fail) {
		sp_diag_error(diag, "fake: kernel says no");
		return -1;
	}
	stats->full = full;
	stats->rules_total = plan->n_svcports * 3;
	return 0;
}

static void fake_print(const struct sp_plan *plan, struct sp_buf *out)
{
	sp_buf_addf(out, "# fake plan: %zu svcports\n", plan->n_svcports);
}

static const struct sp_backend_ops fake_ops = {
	.mode = SP_MODE_NFTABLES,
	.print_plan = fake_print,
	.open = fake_open,
	.close = fake_close,
	.sync = fake_sync,
};

static int free_port(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

static char *next_line(int fd, int timeout_ms)
{
	static char buf[4096];
	static size_t len;
	struct pollfd p = {.fd = fd, .events = POLLIN};
	char *nl;

	while (!(nl = memchr(buf, '\n', len))) {
		ssize_t r;

		if (poll(&p, 1, timeout_ms) <= 0)
			return NULL;
		r = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (r <= 0)
			return NULL;
		len += (size_t)r;
	}
	{
		char *line = sp_xstrndup(buf, (size_t)(nl - buf));

		memmove(buf, nl + 1, len - (size_t)(nl - buf) - 1);
		len -= (size_t)(nl - buf) + 1;
		return line;
	}
}

static void expect_sync(int fd, const char *want)
{
	char *line = next_line(fd, 10000);

	ck_assert_msg(line != NULL, "no sync, wanted \"%s\"", want);
	ck_assert_str_eq(line, want);
	free(line);
}

static void expect_no_sync(int fd, int ms)
{
	char *line = next_line(fd, ms);

	ck_assert_msg(line == NULL, "unexpected sync \"%s\"", line ? line : "");
}

static size_t collect(char *ptr, size_t size, size_t n, void *userdata)
{
	sp_buf_addn(userdata, ptr, size * n);
	return size * n;
}

static long http_get(int port, const char *path, struct sp_buf *body)
{
	CURL *c = curl_easy_init();
	char *url = sp_xasprintf("http://127.0.0.1:%d%s", port, path);
	long status = 0;

	sp_buf_reset(body);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 5L);
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	if (curl_easy_perform(c) == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(c);
	free(url);
	if (!body->data)
		sp_buf_add(body, "");
	return status;
}

/* The sync line is written from inside the backend, before the daemon
 * publishes the result: poll for the expected answer. */
static long http_wait(int port, const char *path, long want, struct sp_buf *body)
{
	long got = 0;

	for (int i = 0; i < 50; i++) {
		got = http_get(port, path, body);
		if (got == want)
			break;
		usleep(100000);
	}
	return got;
}

static bool http_wait_text(int port, const char *path, const char *text, struct sp_buf *body)
{
	for (int i = 0; i < 50; i++) {
		if (http_get(port, path, body) == 200 && !strcmp(body->data, text))
			return true;
		usleep(100000);
	}
	return false;
}

/* Atomic replace, as a careful writer (and kubectl, and ConfigMaps) do. */
static void put_file(const char *dir, const char *name, const char *text)
{
	char *tmp = sp_xasprintf("%s/.%s.tmp", dir, name);
	char *path = sp_xasprintf("%s/%s", dir, name);
	FILE *f = fopen(tmp, "w");

	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	ck_assert_int_eq(rename(tmp, path), 0);
	free(tmp);
	free(path);
}

static char *service_json(const char *name, const char *ip, int hc_port, const char *ep_node)
{
	return sp_xasprintf(
		"{\"kind\":\"List\",\"apiVersion\":\"v1\",\"items\":["
		"{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"%s\","
		"\"namespace\":\"default\"},\"spec\":{\"type\":\"%s\",\"clusterIP\":\"%s\","
		"\"clusterIPs\":[\"%s\"],\"externalTrafficPolicy\":\"%s\"%s%.0d"
		",\"ports\":[{\"name\":\"http\",\"port\":80,\"protocol\":\"TCP\",\"targetPort\":"
		"8080%s}]}},"
		"{\"apiVersion\":\"discovery.k8s.io/v1\",\"kind\":\"EndpointSlice\",\"metadata\":"
		"{\"name\":\"%s-1\",\"namespace\":\"default\",\"labels\":{"
		"\"kubernetes.io/service-name\":\"%s\"}},\"addressType\":\"IPv4\",\"endpoints\":"
		"[{\"addresses\":[\"10.244.1.5\"],\"conditions\":{\"ready\":true},\"nodeName\":"
		"\"%s\"}],\"ports\":[{\"name\":\"http\",\"port\":8080,\"protocol\":\"TCP\"}]}]}\n",
		name, hc_port ? "LoadBalancer" : "ClusterIP", ip, ip, hc_port ? "Local" : "Cluster",
		hc_port ? ",\"healthCheckNodePort\":" : "", hc_port,
		hc_port ? ",\"nodePort\":30080" : "", name, name, ep_node);
}

static const char *fast_file; /* exists: 1 s sync period on reload */

static int reload_cfg(struct sp_config *cfg, void *arg, struct sp_diag *diag)
{
	(void)diag;
	sp_config_init(cfg);
	cfg->mode = SP_MODE_NFTABLES;
	cfg->hostname = sp_xstrdup("node-a");
	cfg->min_sync_period_ms = 200;
	if (fast_file && access(fast_file, F_OK) == 0)
		cfg->sync_period_ms = 1000;
	free(cfg->healthz_bind_address);
	free(cfg->metrics_bind_address);
	cfg->healthz_bind_address = sp_xasprintf("127.0.0.1:%d", ((int *)arg)[0]);
	cfg->metrics_bind_address = sp_xasprintf("127.0.0.1:%d", ((int *)arg)[1]);
	return 0;
}

/* Fork the daemon on the source dir with the fake backend; its sync lines
 * come on fds[0]. */
static pid_t start_daemon(const char *dir, int *ports, int fds[2], const char *fail_file)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct sp_config cfg;
		struct sp_diag diag;
		const char *sources[] = {dir};
		struct sp_daemon_opts opts = {
			.cfg = &cfg,
			.sources = sources,
			.n_sources = 1,
			.ops = &fake_ops,
			.log_level = SP_LOG_INFO,
			.reload = reload_cfg,
			.reload_arg = ports,
			.no_conntrack_flush = true,
		};
		int r;

		close(fds[0]);
		fake_pipe = fds[1];
		fake_fail_file = fail_file;
		sp_diag_init(&diag);
		reload_cfg(&cfg, ports, &diag);
		r = sp_daemon_run(&opts, &diag);
		for (size_t i = 0; i < diag.n_msgs; i++)
			fprintf(stderr, "%s\n", diag.msgs[i].text);
		sp_config_free(&cfg);
		_exit(r);
	}
	return pid;
}

START_TEST(loop_with_fake_backend)
{
	char dir[] = "/tmp/sp-daemon-XXXXXX";
	int fds[2], ports[3], status;
	struct sp_buf body;
	char *text, *fail_file, *stall, *fast;
	pid_t pid;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_int_eq(pipe(fds), 0);
	ports[0] = free_port();
	ports[1] = free_port();
	ports[2] = free_port();
	fail_file = sp_xasprintf("%s/FAIL", dir);
	fast = sp_xasprintf("%s/FAST", dir);
	fast_file = fast;
	text = service_json("web", "10.96.0.10", 0, "node-a");
	put_file(dir, "web.json", text);
	free(text);
	pid = start_daemon(dir, ports, fds, fail_file);
	close(fds[1]);
	sp_buf_init(&body);

	expect_sync(fds[0], "sync full=1 svcports=1 result=ok");
	ck_assert(http_wait_text(ports[1], "/rules", "# fake plan: 1 svcports\n", &body));
	ck_assert_int_eq(http_wait(ports[0], "/healthz", 200, &body), 200);
	ck_assert_ptr_nonnull(strstr(body.data, "\"nodeEligible\": true}"));
	ck_assert_int_eq(http_get(ports[0], "/livez", &body), 200);
	ck_assert_ptr_null(strstr(body.data, "nodeEligible"));
	ck_assert_int_eq(http_get(ports[1], "/proxyMode", &body), 200);
	ck_assert_str_eq(body.data, "nftables");
	ck_assert_int_eq(http_get(ports[1], "/metrics", &body), 200);
	ck_assert_ptr_nonnull(
		strstr(body.data, "kubeproxy_sync_full_proxy_rules_duration_seconds_count 1\n"));
	ck_assert_ptr_nonnull(
		strstr(body.data, "svcproxy_programmed_objects{mode=\"nftables\"} 3\n"));

	/* A second Service, written atomically: one partial sync. */
	text = service_json("api", "10.96.0.11", ports[2], "node-a");
	put_file(dir, "api.json", text);
	free(text);
	expect_sync(fds[0], "sync full=0 svcports=2 result=ok");
	ck_assert_int_eq(http_wait(ports[2], "/", 200, &body), 200);
	ck_assert_ptr_nonnull(strstr(body.data, "\"localEndpoints\": 1,"));
	ck_assert_ptr_nonnull(strstr(body.data, "\"name\": \"api\""));
	ck_assert_int_eq(http_get(ports[1], "/metrics", &body), 200);
	ck_assert_ptr_nonnull(
		strstr(body.data, "kubeproxy_sync_proxy_rules_service_changes_total 1\n"));
	ck_assert_ptr_nonnull(
		strstr(body.data, "kubeproxy_sync_proxy_rules_endpoint_changes_total 1\n"));

	/* The endpoint moves to another node: the health check says 503. */
	text = service_json("api", "10.96.0.11", ports[2], "node-b");
	put_file(dir, "api.json", text);
	free(text);
	expect_sync(fds[0], "sync full=0 svcports=2 result=ok");
	ck_assert_int_eq(http_wait(ports[2], "/", 503, &body), 503);
	ck_assert_ptr_nonnull(strstr(body.data, "\"localEndpoints\": 0,"));

	/* A half-written file changes nothing: no sync, web stays. */
	put_file(dir, "web.json", "{\"kind\":\"List\",\"items\":[{\"kind\":\"Serv");
	expect_no_sync(fds[0], 1000);
	ck_assert_int_eq(http_get(ports[1], "/metrics", &body), 200);
	ck_assert_ptr_nonnull(strstr(body.data, "svcproxy_source_errors_total 1\n"));
	/* The next real change still programs both Services. */
	text = service_json("api", "10.96.0.11", ports[2], "node-a");
	put_file(dir, "api.json", text);
	free(text);
	expect_sync(fds[0], "sync full=0 svcports=2 result=ok");

	/* The backend refuses: /healthz goes red at once, and comes back
	 * when a retry succeeds. */
	close(creat(fail_file, 0600));
	text = sp_xasprintf("%s/api.json", dir);
	unlink(text);
	free(text);
	expect_sync(fds[0], "sync full=0 svcports=1 result=fail");
	ck_assert_int_eq(http_wait(ports[0], "/healthz", 503, &body), 503);
	ck_assert_int_eq(http_get(ports[1], "/metrics", &body), 200);
	ck_assert_ptr_nonnull(strstr(body.data, "svcproxy_sync_errors_total 1\n"));
	/* The removed Service's health check server stays until a sync
	 * succeeds, and says 503 while the proxy is unhealthy even with a
	 * local endpoint (kube-proxy's rule: the rules are not current). */
	ck_assert_int_eq(http_get(ports[2], "/", &body), 503);
	ck_assert_ptr_nonnull(strstr(body.data, "\"localEndpoints\": 1,"));
	ck_assert_ptr_nonnull(strstr(body.data, "\"serviceProxyHealthy\": false"));
	unlink(fail_file);
	expect_sync(fds[0], "sync full=1 svcports=1 result=ok");
	ck_assert_int_eq(http_wait(ports[0], "/healthz", 200, &body), 200);
	ck_assert_int_eq(http_wait(ports[2], "/", 0, &body), 0); /* no longer served */

	/* SIGHUP: reload, then a full sync. */
	kill(pid, SIGHUP);
	expect_sync(fds[0], "sync full=1 svcports=1 result=ok");

	/* Reload into a 1 s sync period (health timeout 2 s). */
	close(creat(fast, 0600));
	kill(pid, SIGHUP);
	expect_sync(fds[0], "sync full=1 svcports=1 result=ok");
	/* A sync that stalls (periodic resync every second here, health
	 * timeout two periods) turns /healthz red while it hangs, answered by
	 * the HTTP thread; it comes back when the sync completes. */
	stall = sp_xasprintf("%s.stall", fail_file);
	close(creat(stall, 0600));
	ck_assert_int_eq(http_wait(ports[0], "/healthz", 503, &body), 503);
	ck_assert_int_eq(http_get(ports[0], "/livez", &body), 503);
	unlink(stall);
	free(stall);
	ck_assert_int_eq(http_wait(ports[0], "/healthz", 200, &body), 200);

	kill(pid, SIGTERM);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	sp_buf_free(&body);
	close(fds[0]);
	{
		char *cmd = sp_xasprintf("rm -rf '%s'", dir);

		ck_assert_int_eq(system(cmd), 0);
		free(cmd);
	}
	free(fail_file);
	free(fast);
}
END_TEST

/* Run a shell command built by the caller; frees it. */
static void sh_run(char *cmd)
{
	ck_assert_int_eq(system(cmd), 0);
	free(cmd);
}

/* A ConfigMap volume as the kubelet writes it: files are symlinks through
 * ..data to a timestamped directory, and an update renames a new ..data
 * into place, then adds the links of new keys. */
START_TEST(configmap_volume)
{
	char dir[] = "/tmp/sp-daemon-cm-XXXXXX";
	int fds[2], ports[3], status;
	char *text, *fail_file, *path;
	pid_t pid;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_int_eq(pipe(fds), 0);
	for (int i = 0; i < 3; i++)
		ports[i] = free_port();
	fail_file = sp_xasprintf("%s/..FAIL", dir);
	fast_file = NULL;
	sh_run(sp_xasprintf("mkdir %s/..2026_1 && ln -s ..2026_1 %s/..data && ln -s "
			    "..data/web.json %s/web.json",
			    dir, dir, dir));
	text = service_json("web", "10.96.0.10", 0, "node-a");
	path = sp_xasprintf("%s/..2026_1", dir);
	put_file(path, "web.json", text);
	free(path);
	free(text);
	pid = start_daemon(dir, ports, fds, fail_file);
	close(fds[1]);
	expect_sync(fds[0], "sync full=1 svcports=1 result=ok");

	/* The update: a new timestamped directory with both keys, ..data
	 * swapped by rename, then the new key's link. */
	sh_run(sp_xasprintf("mkdir %s/..2026_2", dir));
	path = sp_xasprintf("%s/..2026_2", dir);
	text = service_json("web", "10.96.0.10", 0, "node-a");
	put_file(path, "web.json", text);
	free(text);
	text = service_json("api", "10.96.0.11", 0, "node-a");
	put_file(path, "api.json", text);
	free(text);
	free(path);
	sh_run(sp_xasprintf("ln -s ..2026_2 %s/..data_tmp && mv -T %s/..data_tmp %s/..data && "
			    "rm -rf %s/..2026_1",
			    dir, dir, dir, dir));
	/* web.json's content did not change: nothing to program yet. */
	expect_no_sync(fds[0], 700);
	/* The new key's link gets only IN_CREATE. */
	sh_run(sp_xasprintf("ln -s ..data/api.json %s/api.json", dir));
	expect_sync(fds[0], "sync full=0 svcports=2 result=ok");

	kill(pid, SIGTERM);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(fds[0]);
	sh_run(sp_xasprintf("rm -rf %s", dir));
	free(fail_file);
}
END_TEST

/* Services in force in the file source. */
static size_t files_services(const struct sp_dfiles *f)
{
	struct sp_cluster c;
	struct sp_diag diag;
	size_t n;

	sp_cluster_init(&c);
	sp_diag_init(&diag);
	sp_dfiles_fill(f, &c, &diag);
	n = c.n_services;
	sp_dcluster_release(&c);
	sp_diag_free(&diag);
	return n;
}

/* An event re-reads the file it names, not its neighbours: a change made
 * behind the watch (through a hard link elsewhere, so no event) is seen only
 * when that file is read again (here: a full rescan, as SIGHUP does). */
START_TEST(files_read_what_changed)
{
	char dir[] = "/tmp/sp-daemon-files-XXXXXX";
	char *src, *link, *text;
	const char *paths[1];
	struct sp_source_limits lim;
	struct sp_dtriggers trig = {0};
	struct sp_dchanges ch = {.trig = &trig};
	struct sp_diag diag;
	struct sp_dfiles *f;
	size_t n_bad = 0;
	FILE *out;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	src = sp_xasprintf("%s/src", dir);
	ck_assert_int_eq(mkdir(src, 0755), 0);
	text = service_json("a", "10.96.0.10", 0, "node-a");
	put_file(src, "a.json", text);
	free(text);
	text = service_json("b", "10.96.0.11", 0, "node-a");
	put_file(src, "b.json", text);
	free(text);
	link = sp_xasprintf("%s/b-link", dir);
	sh_run(sp_xasprintf("ln %s/b.json %s", src, link));
	sp_source_limits_default(&lim);
	sp_diag_init(&diag);
	paths[0] = src;
	f = sp_dfiles_open(paths, 1, &lim, &diag);
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(files_services(f), 2);

	/* b gets a second Service behind the watch's back. */
	out = fopen(link, "w");
	ck_assert_ptr_nonnull(out);
	text = service_json("c", "10.96.0.12", 0, "node-a");
	fputs(text, out);
	free(text);
	fclose(out);
	text = service_json("a", "10.96.0.20", 0, "node-a");
	put_file(src, "a.json", text);
	free(text);
	ck_assert(sp_dfiles_update(f, false, &ch, &n_bad, &diag));
	ck_assert_uint_eq(ch.services, 1);
	ck_assert_uint_eq(ch.slices, 0);
	/* One observation per changed object, timed from the file's mtime. */
	ck_assert_uint_eq(trig.n, 1);
	ck_assert(trig.at[0] > 0 && trig.at[0] <= sp_dclock_ns(CLOCK_REALTIME));
	ck_assert(sp_dclock_ns(CLOCK_REALTIME) - trig.at[0] < 60 * 1000000000LL);
	ck_assert_uint_eq(files_services(f), 2);

	/* The full rescan reads b: service b goes, c comes. */
	memset(&ch, 0, sizeof(ch));
	ch.trig = &trig;
	trig.n = 0;
	ck_assert(sp_dfiles_update(f, true, &ch, &n_bad, &diag));
	ck_assert_uint_eq(ch.services, 2);
	ck_assert_uint_eq(ch.slices, 2);
	ck_assert_uint_eq(trig.n, 4);
	ck_assert_uint_eq(files_services(f), 2);
	ck_assert_uint_eq(n_bad, 0);

	sp_dfiles_close(f);
	sp_dtriggers_free(&trig);
	sp_diag_free(&diag);
	sh_run(sp_xasprintf("rm -rf %s", dir));
	free(link);
	free(src);
}
END_TEST

/* The trigger annotation times a slice's change (kube-proxy's network
 * programming latency); without it, the file's mtime. */
START_TEST(files_trigger_time)
{
	char dir[] = "/tmp/sp-daemon-trig-XXXXXX";
	const char *paths[1] = {dir};
	struct sp_source_limits lim;
	struct sp_dtriggers trig = {0};
	struct sp_dchanges ch = {.trig = &trig};
	struct sp_diag diag;
	struct sp_dfiles *f;
	size_t n_bad = 0;
	char *text, *annotated, *path;
	struct timespec times[2] = {{.tv_sec = 1700000000}, {.tv_sec = 1700000000}};
	int64_t annotated_ns = sp_dtime_parse("2026-01-02T03:04:05.25Z");

	ck_assert(annotated_ns == 1767323045250000000LL);
	ck_assert(sp_dtime_parse("2026-01-02T03:04:05+01:00") == 0);
	ck_assert_ptr_nonnull(mkdtemp(dir));
	sp_source_limits_default(&lim);
	sp_diag_init(&diag);
	f = sp_dfiles_open(paths, 1, &lim, &diag);
	ck_assert_ptr_nonnull(f);

	text = service_json("a", "10.96.0.10", 0, "node-a");
	annotated = sp_xasprintf(
		"%.*s\"annotations\":{\"endpoints.kubernetes.io/last-change-trigger-time\":"
		"\"2026-01-02T03:04:05.25Z\"},%s",
		(int)(strstr(text, "{\"name\":\"a-1\"") + 1 - text), text,
		strstr(text, "{\"name\":\"a-1\"") + 1);
	/* Written elsewhere, given an old mtime, then moved in: the Service
	 * has no annotation and its file's mtime predates since_ns, so the
	 * arrival times it. */
	put_file(dir, ".x", annotated);
	path = sp_xasprintf("%s/.x", dir);
	ck_assert_int_eq(utimensat(AT_FDCWD, path, times, 0), 0);
	trig.since_ns = 1710000000LL * 1000000000;
	sh_run(sp_xasprintf("mv %s %s/a.json", path, dir));
	ck_assert(sp_dfiles_update(f, false, &ch, &n_bad, &diag));
	ck_assert_uint_eq(trig.n, 2);
	/* Sorted by key: EndpointSlice first. */
	ck_assert(trig.at[0] == annotated_ns || trig.at[1] == annotated_ns);
	ck_assert(trig.at[0] > 1710000000LL * 1000000000 && trig.at[1] > 1710000000LL * 1000000000);

	sp_dfiles_close(f);
	sp_dtriggers_free(&trig);
	sp_diag_free(&diag);
	sh_run(sp_xasprintf("rm -rf %s", dir));
	free(path);
	free(text);
	free(annotated);
}
END_TEST

/* A directory that vanishes keeps its objects; once back, it is watched and
 * read again. */
START_TEST(files_directory_comes_back)
{
	char dir[] = "/tmp/sp-daemon-back-XXXXXX";
	char *src, *text;
	const char *paths[1];
	struct sp_source_limits lim;
	struct sp_dchanges ch = {0};
	struct sp_diag diag;
	struct sp_dfiles *f;
	size_t n_bad = 0;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	src = sp_xasprintf("%s/src", dir);
	ck_assert_int_eq(mkdir(src, 0755), 0);
	text = service_json("a", "10.96.0.10", 0, "node-a");
	put_file(src, "a.json", text);
	free(text);
	sp_source_limits_default(&lim);
	sp_diag_init(&diag);
	paths[0] = src;
	f = sp_dfiles_open(paths, 1, &lim, &diag);
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(files_services(f), 1);

	sh_run(sp_xasprintf("mv %s %s/gone", src, dir));
	ck_assert(!sp_dfiles_update(f, false, &ch, &n_bad, &diag));
	ck_assert_uint_eq(files_services(f), 1);
	ck_assert(sp_diag_has(&diag, SP_SEV_WARNING, "gone; keeping its last good content"));
	/* What happens where it went is not ours. */
	sh_run(sp_xasprintf("rm %s/gone/a.json", dir));
	ck_assert(!sp_dfiles_update(f, false, &ch, &n_bad, &diag));
	ck_assert_uint_eq(files_services(f), 1);

	ck_assert_int_eq(mkdir(src, 0755), 0);
	ck_assert(sp_dfiles_update(f, false, &ch, &n_bad, &diag));
	ck_assert_uint_eq(files_services(f), 0); /* back, empty */
	text = service_json("b", "10.96.0.11", 0, "node-a");
	put_file(src, "b.json", text);
	free(text);
	text = service_json("c", "10.96.0.12", 0, "node-a");
	put_file(src, "c.json", text);
	free(text);
	ck_assert(sp_dfiles_update(f, false, &ch, &n_bad, &diag));
	ck_assert_uint_eq(files_services(f), 2);

	sp_dfiles_close(f);
	sp_diag_free(&diag);
	sh_run(sp_xasprintf("rm -rf %s", dir));
	free(src);
}
END_TEST

static Suite *daemon_suite(void)
{
	Suite *s = suite_create("daemon");
	TCase *pure = tcase_create("parts");
	TCase *loop = tcase_create("loop");

	tcase_add_test(pure, metrics_text);
	tcase_add_test(pure, health_rule);
	tcase_add_test(pure, hc_body_shape);
	tcase_add_test(pure, store_changes);
	tcase_add_test(pure, kubeconfig_parse);
	tcase_add_test(pure, list_nul_items);
	tcase_add_test(pure, journald_lines);
	tcase_add_test(pure, bind_addresses);
	tcase_add_test(loop, loop_with_fake_backend);
	tcase_add_test(loop, configmap_volume);
	tcase_add_test(loop, files_read_what_changed);
	tcase_add_test(loop, files_trigger_time);
	tcase_add_test(loop, files_directory_comes_back);
	tcase_set_timeout(loop, 60);
	suite_add_tcase(s, pure);
	suite_add_tcase(s, loop);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(daemon_suite());
	int failed;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
