/* Fuzz target: the API server source's decoders in src/daemon/kube.c, the
 * watch-event decoder (on_event, fed line by line as on_data splits the
 * stream) and the list-answer decoder (list_done), then what the daemon
 * does with the objects they stored (sp_kube_fill, sp_plan_build,
 * sp_kube_node_eligible). They are static, so the file is included: the
 * fuzzer sees the exact code the daemon runs, with libcurl's transfer left
 * out (no network: a request is created and dropped unperformed).
 *
 * Input: the first byte picks the resource (services, endpointslices,
 * node) and whether the rest is a list answer or a watch stream. */
#include "../src/daemon/kube.c"

#include <stdio.h>

#include "fuzz.h"
#include "svcproxy/plan.h"

static void on_changed(void *arg, const struct sp_dchanges *ch, int64_t trigger_ns)
{
	(void)arg;
	(void)ch;
	(void)trigger_ns;
}

/* As sp_kube_open sets the source up, minus the kubeconfig and the first
 * requests: res_init itself, so that the harness follows its changes. */
static struct sp_kube *fuzz_kube(struct sp_dshared *sh, const struct sp_source_limits *lim)
{
	struct sp_kube *k = sp_xcalloc(1, sizeof(*k));
	struct sp_diag diag;

	k->o.epfd = epoll_create1(EPOLL_CLOEXEC);
	k->o.sh = sh;
	k->o.lim = lim;
	k->o.changed = on_changed;
	k->node_name = sp_xstrdup("node-1");
	k->conn.server = sp_xstrdup("https://apiserver.invalid");
	k->curl_timer.fd = -1;
	for (size_t i = 0; i < SP_ARRAY_SIZE(k->res); i++)
		k->res[i].timer.fd = -1;
	k->multi = curl_multi_init();
	sp_diag_init(&diag);
	if (k->o.epfd < 0 || !k->multi ||
	    res_init(k, &k->res[0], "services", "/api/v1/services", "Service", "v1", false, &diag) <
		    0 ||
	    res_init(k, &k->res[1], "endpointslices", "/apis/discovery.k8s.io/v1/endpointslices",
		     "EndpointSlice", "discovery.k8s.io/v1", false, &diag) < 0 ||
	    res_init(k, &k->res[2], "node", "/api/v1/nodes", "Node", "v1", true, &diag) < 0) {
		fprintf(stderr, "fuzz_watch: setup failed\n");
		abort();
	}
	sp_diag_free(&diag);
	return k;
}

static void fuzz_kube_close(struct sp_kube *k)
{
	int epfd = k->o.epfd;

	sp_kube_close(k);
	close(epfd);
}

static void feed_watch(struct kres *r, const char *data, size_t size)
{
	const char *p = data, *end = data + size;

	r->phase = K_WATCHING;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		bool blank = true;

		for (size_t i = 0; i < len && blank; i++)
			blank = p[i] == ' ' || p[i] == '\r';
		/* on_data keeps an unterminated tail for later: so does this. */
		if (!nl)
			break;
		if (!blank && !on_event(r, p, len))
			break;
		p = nl + 1;
	}
}

static void feed_list(struct kres *r, const char *data, size_t size)
{
	r->phase = K_LISTING;
	sp_buf_reset(&r->body);
	sp_buf_addn(&r->body, data, size);
	list_done(r, CURLE_OK, 200);
	finish_easy(r);
}

/* What the daemon does next with the objects: plan them. */
static void plan_nftables(const struct sp_cluster *c)
{
	struct sp_config cfg;
	struct sp_plan plan;
	struct sp_diag diag;

	sp_config_init(&cfg);
	cfg.mode = SP_MODE_NFTABLES;
	cfg.hostname = sp_xstrdup("node-1");
	sp_diag_init(&diag);
	memset(&plan, 0, sizeof(plan));
	sp_plan_build(&plan, c, &cfg, &diag);
	sp_plan_free(&plan);
	sp_diag_free(&diag);
	sp_config_free(&cfg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool once;
	struct sp_source_limits lim;
	struct sp_dshared sh;
	struct sp_cluster c;
	struct sp_diag diag;
	struct sp_kube *k;
	struct kres *r;

	if (size < 1)
		return 0;
	if (!once) {
		curl_global_init(CURL_GLOBAL_DEFAULT);
		sp_dlog_set_level(SP_LOG_ERROR);
		once = true;
	}
	sp_source_limits_default(&lim);
	sp_dshared_init(&sh, "nftables", 0);
	k = fuzz_kube(&sh, &lim);
	r = &k->res[data[0] % 3];
	if (data[0] & 0x80)
		feed_list(r, (const char *)data + 1, size - 1);
	else
		feed_watch(r, (const char *)data + 1, size - 1);
	sp_cluster_init(&c);
	sp_diag_init(&diag);
	sp_kube_fill(k, &c, &diag);
	plan_nftables(&c);
	sp_kube_node_eligible(k);
	sp_dcluster_release(&c);
	sp_diag_free(&diag);
	fuzz_kube_close(k);
	sp_dshared_free(&sh);
	return 0;
}
