#include "kube.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "kubeconfig.h"
#include "log.h"
#include "loop.h"

#define NS_PER_MS 1000000LL
/* client-go's reflector: 800 ms doubling up to 30 s. */
#define BACKOFF_MIN_NS (800 * NS_PER_MS)
#define BACKOFF_MAX_NS (30000 * NS_PER_MS)
#define MAX_LINE (64u << 20)

enum kphase { K_IDLE, K_LISTING, K_WATCHING, K_BACKOFF };

struct kres {
	struct sp_kube *k;
	const char *name; /* for messages */
	const char *path;
	const char *kind;
	const char *api_version;
	char *query;		  /* label or field selector */
	struct sp_dstore store;	  /* in force */
	struct sp_dstore listing; /* a list in progress */
	char *rv;
	char *cont;
	enum kphase phase;
	bool synced;
	bool relist;  /* a 410 was seen: list again */
	bool garbage; /* the stream broke the protocol */
	bool too_big; /* the answer or one watch event passed max_file_bytes */
	bool got_event;
	CURL *easy;
	struct curl_slist *hdrs;
	struct sp_buf body;
	int64_t backoff_ns;
	struct sp_dwatch timer;
};

struct ksock {
	struct sp_dwatch w;
	struct sp_kube *k;
	bool active;
};

struct sp_kube {
	struct sp_kube_opts o;
	char *node_name;
	struct sp_kconn conn;
	CURLM *multi;
	struct sp_dwatch curl_timer;
	struct ksock **socks;
	size_t n_socks, cap_socks;
	struct kres res[3];
};

static void start_list(struct kres *r);
static void start_watch(struct kres *r);

static int64_t now_mono(void)
{
	return sp_dclock_ns(CLOCK_MONOTONIC);
}

static void bump(struct sp_kube *k, uint64_t *counter)
{
	pthread_mutex_lock(&k->o.sh->lock);
	(*counter)++;
	pthread_mutex_unlock(&k->o.sh->lock);
}

/* ---- libcurl multi <-> epoll ---- */

static void check_done(struct sp_kube *k);

static void on_sock(struct sp_dwatch *w, uint32_t events)
{
	struct ksock *ks = w->arg;
	int running, flags = 0;

	if (!ks->active)
		return;
	if (events & EPOLLIN)
		flags |= CURL_CSELECT_IN;
	if (events & EPOLLOUT)
		flags |= CURL_CSELECT_OUT;
	if (events & (EPOLLERR | EPOLLHUP))
		flags |= CURL_CSELECT_ERR;
	curl_multi_socket_action(ks->k->multi, w->fd, flags, &running);
	check_done(ks->k);
}

static int sock_cb(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct sp_kube *k = userp;
	struct ksock *ks = socketp;
	uint32_t ev = 0;

	(void)e;
	if (what == CURL_POLL_REMOVE) {
		if (ks) {
			sp_dloop_del(k->o.epfd, &ks->w);
			/* Kept, not freed: an event for it may still be in
			 * the loop's current batch. */
			ks->active = false;
			curl_multi_assign(k->multi, s, NULL);
		}
		return 0;
	}
	if (what & CURL_POLL_IN)
		ev |= EPOLLIN;
	if (what & CURL_POLL_OUT)
		ev |= EPOLLOUT;
	if (!ks) {
		for (size_t i = 0; i < k->n_socks && !ks; i++)
			if (!k->socks[i]->active)
				ks = k->socks[i];
		if (!ks) {
			ks = sp_xcalloc(1, sizeof(*ks));
			*(struct ksock **)sp_array_push(&k->socks, &k->n_socks, &k->cap_socks,
							sizeof(ks)) = ks;
		}
		ks->k = k;
		ks->w.fd = s;
		ks->w.fn = on_sock;
		ks->w.arg = ks;
		ks->active = true;
		curl_multi_assign(k->multi, s, ks);
		if (sp_dloop_add(k->o.epfd, &ks->w, ev) < 0)
			sp_dlog(SP_LOG_ERROR, "epoll add: %s", strerror(errno));
		return 0;
	}
	if (sp_dloop_mod(k->o.epfd, &ks->w, ev) < 0)
		sp_dlog(SP_LOG_ERROR, "epoll mod: %s", strerror(errno));
	return 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct sp_kube *k = userp;

	(void)multi;
	sp_dtimer_at(k->curl_timer.fd,
		     timeout_ms < 0 ? 0 : now_mono() + timeout_ms * NS_PER_MS + 1);
	return 0;
}

static void on_curl_timer(struct sp_dwatch *w, uint32_t events)
{
	struct sp_kube *k = w->arg;
	uint64_t ticks;
	int running;

	(void)events;
	if (read(w->fd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN)
		return;
	curl_multi_socket_action(k->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(k);
}

/* ---- requests ---- */

static char *url_for(struct kres *r, bool watch)
{
	struct sp_buf u;

	sp_buf_init(&u);
	sp_buf_addf(&u, "%s%s?%s", r->k->conn.server, r->path, r->query);
	if (watch) {
		/* A server-side timeout like client-go's (5 to 10 min) keeps
		 * idle connections from living forever. */
		sp_buf_addf(&u, "&watch=true&allowWatchBookmarks=true&timeoutSeconds=%d",
			    300 + rand() % 300);
		if (r->rv) {
			char *esc = curl_easy_escape(NULL, r->rv, 0);

			sp_buf_addf(&u, "&resourceVersion=%s", esc);
			curl_free(esc);
		}
	} else {
		sp_buf_add(&u, "&limit=500");
		if (r->cont) {
			char *esc = curl_easy_escape(NULL, r->cont, 0);

			sp_buf_addf(&u, "&continue=%s", esc);
			curl_free(esc);
		}
	}
	return sp_buf_steal(&u);
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata);

static void request(struct kres *r, bool watch)
{
	struct sp_kconn *c = &r->k->conn;
	char *url = url_for(r, watch);
	char *token = sp_kconn_token(c);

	r->easy = curl_easy_init();
	if (!r->easy)
		abort();
	sp_buf_reset(&r->body);
	r->garbage = r->relist = r->got_event = r->too_big = false;
	r->hdrs = curl_slist_append(NULL, "Accept: application/json");
	if (token) {
		char *h = sp_xasprintf("Authorization: Bearer %s", token);

		r->hdrs = curl_slist_append(r->hdrs, h);
		explicit_bzero(h, strlen(h));
		explicit_bzero(token, strlen(token));
		free(h);
		free(token);
	}
	curl_easy_setopt(r->easy, CURLOPT_URL, url);
	curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->hdrs);
	curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
	curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(r->easy, CURLOPT_TIMEOUT, watch ? 0L : 60L);
	curl_easy_setopt(r->easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(r->easy, CURLOPT_TCP_KEEPIDLE, 30L);
	curl_easy_setopt(r->easy, CURLOPT_TCP_KEEPINTVL, 10L);
	curl_easy_setopt(r->easy, CURLOPT_USERAGENT, "svcproxy/" PACKAGE_VERSION);
	/* Watches stream for minutes: give up on a server that went silent
	 * (bookmarks arrive about every minute). */
	if (watch) {
		curl_easy_setopt(r->easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(r->easy, CURLOPT_LOW_SPEED_TIME, 120L);
	}
	if (c->ca.data) {
		struct curl_blob b = {c->ca.data, c->ca.len, CURL_BLOB_COPY};

		curl_easy_setopt(r->easy, CURLOPT_CAINFO_BLOB, &b);
	} else if (c->ca_file) {
		curl_easy_setopt(r->easy, CURLOPT_CAINFO, c->ca_file);
	}
	if (c->cert.data) {
		struct curl_blob b = {c->cert.data, c->cert.len, CURL_BLOB_COPY};

		curl_easy_setopt(r->easy, CURLOPT_SSLCERT_BLOB, &b);
		curl_easy_setopt(r->easy, CURLOPT_SSLCERTTYPE, "PEM");
	} else if (c->cert_file) {
		curl_easy_setopt(r->easy, CURLOPT_SSLCERT, c->cert_file);
	}
	if (c->key.data) {
		struct curl_blob b = {c->key.data, c->key.len, CURL_BLOB_COPY};

		curl_easy_setopt(r->easy, CURLOPT_SSLKEY_BLOB, &b);
		curl_easy_setopt(r->easy, CURLOPT_SSLKEYTYPE, "PEM");
	} else if (c->key_file) {
		curl_easy_setopt(r->easy, CURLOPT_SSLKEY, c->key_file);
	}
	if (c->insecure) {
		curl_easy_setopt(r->easy, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(r->easy, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	sp_dlog(SP_LOG_DEBUG, "API %s %s", watch ? "watch" : "list", url);
	free(url);
	r->phase = watch ? K_WATCHING : K_LISTING;
	curl_multi_add_handle(r->k->multi, r->easy);
}

static void finish_easy(struct kres *r)
{
	if (!r->easy)
		return;
	curl_multi_remove_handle(r->k->multi, r->easy);
	curl_easy_cleanup(r->easy);
	curl_slist_free_all(r->hdrs);
	r->easy = NULL;
	r->hdrs = NULL;
}

static void start_list(struct kres *r)
{
	request(r, false);
}

static void start_watch(struct kres *r)
{
	request(r, true);
}

static void backoff(struct kres *r, const char *why)
{
	int64_t jitter;

	r->backoff_ns = r->backoff_ns ? r->backoff_ns * 2 : BACKOFF_MIN_NS;
	if (r->backoff_ns > BACKOFF_MAX_NS)
		r->backoff_ns = BACKOFF_MAX_NS;
	jitter = r->backoff_ns / 4 ? rand() % (r->backoff_ns / 4) : 0;
	sp_dlog(SP_LOG_WARNING,
		"API %s: %s; retrying in %.1f s (the last good state stays in force)", r->name, why,
		(double)(r->backoff_ns + jitter) / 1e9);
	r->phase = K_BACKOFF;
	sp_dtimer_at(r->timer.fd, now_mono() + r->backoff_ns + jitter);
}

static void on_backoff_timer(struct sp_dwatch *w, uint32_t events)
{
	struct kres *r = w->arg;
	uint64_t ticks;

	(void)events;
	if (read(w->fd, &ticks, sizeof(ticks)) < 0)
		return;
	if (r->phase != K_BACKOFF)
		return;
	if (r->rv && !r->relist)
		start_watch(r);
	else
		start_list(r);
}

/* ---- objects ---- */

/* Lists leave kind out of their items; the model reader needs it. */
static void complete(struct kres *r, cJSON *obj)
{
	if (!cJSON_GetObjectItemCaseSensitive(obj, "kind"))
		cJSON_AddStringToObject(obj, "kind", r->kind);
	if (!cJSON_GetObjectItemCaseSensitive(obj, "apiVersion"))
		cJSON_AddStringToObject(obj, "apiVersion", r->api_version);
}

static bool plausible(struct kres *r, const cJSON *obj)
{
	const char *kind = sp_djson_str(obj, "kind");

	return cJSON_IsObject(obj) && sp_djson_str(obj, "metadata.name") &&
	       (!kind || !strcmp(kind, r->kind));
}

static void set_rv(struct kres *r, const char *rv)
{
	if (!rv)
		return;
	free(r->rv);
	r->rv = sp_xstrdup(rv);
}

/* cJSON ends a string at "\u0000" and hands back a shorter name or value,
 * so an object holding one could change another: a watch event or list item
 * holding one is refused (as the one-shot reader refuses such a file) and the
 * object keeps its last good state. A watch goes on past it, or the server
 * would send it again. */
static void refuse_nul_object(struct kres *r, const cJSON *obj, const char *what)
{
	const char *ns = sp_djson_str(obj, "metadata.namespace");
	const char *name = sp_djson_str(obj, "metadata.name");

	sp_dlog(SP_LOG_ERROR,
		"API %s: %s for %s %s%s%s: a string holds \\u0000 (NUL), which no Kubernetes "
		"name or value can hold; refused, the object keeps its last good state",
		r->name, what, r->kind, ns ? ns : "", ns ? "/" : "", name ? name : "?");
	bump(r->k, &r->k->o.sh->m.source_errors_total);
}

/* One watch event line. Returns false when the stream must be dropped. */
static bool on_event(struct kres *r, const char *line, size_t len)
{
	bool has_nul = sp_src_find_escaped_nul(line, len) < len;
	cJSON *ev = cJSON_ParseWithLength(line, len);
	const char *type = sp_djson_str(ev, "type");
	cJSON *obj = ev ? cJSON_DetachItemFromObjectCaseSensitive(ev, "object") : NULL;
	struct sp_dchanges ch = {0};
	bool ok = true;

	if (!type || !obj || !cJSON_IsObject(obj)) {
		sp_dlog(SP_LOG_WARNING, "API %s: watch stream sent something that is not an event",
			r->name);
		r->garbage = true;
		ok = false;
	} else if (!strcmp(type, "ERROR")) {
		const cJSON *code = cJSON_GetObjectItemCaseSensitive(obj, "code");
		const char *msg = sp_djson_str(obj, "message");

		if (cJSON_IsNumber(code) && code->valueint == 410) {
			sp_dlog(SP_LOG_INFO,
				"API %s: resource version expired (410 Gone): relisting", r->name);
			r->relist = true;
		} else {
			sp_dlog(SP_LOG_WARNING, "API %s: watch error %d: %s", r->name,
				cJSON_IsNumber(code) ? code->valueint : 0, msg ? msg : "");
		}
		ok = false;
	} else if (!strcmp(type, "BOOKMARK")) {
		set_rv(r, sp_djson_str(obj, "metadata.resourceVersion"));
		r->got_event = true;
	} else if (!plausible(r, obj)) {
		sp_dlog(SP_LOG_WARNING, "API %s: watch event without a proper %s object", r->name,
			r->kind);
		r->garbage = true;
		ok = false;
	} else if (has_nul) {
		set_rv(r, sp_djson_str(obj, "metadata.resourceVersion"));
		r->got_event = true;
		refuse_nul_object(r, obj, "watch event");
	} else {
		/* No since_ns: the first list is not timed at all (below),
		 * so whatever a watch event carries changed after it. */
		struct sp_dtriggers trig = {.fallback_ns = sp_dclock_ns(CLOCK_REALTIME)};

		ch.trig = &trig;
		set_rv(r, sp_djson_str(obj, "metadata.resourceVersion"));
		complete(r, obj);
		r->got_event = true;
		if (!strcmp(type, "DELETED")) {
			sp_dstore_del(&r->store, obj, &ch);
		} else if (!strcmp(type, "ADDED") || !strcmp(type, "MODIFIED")) {
			sp_dstore_put(&r->store, obj, &ch);
			obj = NULL;
		}
		if (ch.services || ch.slices || ch.nodes)
			r->k->o.changed(r->k->o.arg, &ch, 0);
		sp_dtriggers_free(&trig);
	}
	cJSON_Delete(obj);
	cJSON_Delete(ev);
	return ok;
}

static long status_of(struct kres *r)
{
	long status = 0;

	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	return status;
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct kres *r = userdata;
	size_t n = size * nmemb, max_bytes = r->k->o.lim->max_file_bytes;
	char *nl;

	sp_buf_addn(&r->body, ptr, n);
	if (r->phase != K_WATCHING || status_of(r) != 200) {
		r->too_big = r->body.len > max_bytes;
		return r->too_big ? 0 : n;
	}
	while ((nl = memchr(r->body.data, '\n', r->body.len))) {
		size_t len = (size_t)(nl - r->body.data);
		bool blank = true;

		if (len > max_bytes) {
			r->garbage = r->too_big = true;
			return 0;
		}
		for (size_t i = 0; i < len && blank; i++)
			blank = r->body.data[i] == ' ' || r->body.data[i] == '\r';
		if (!blank && !on_event(r, r->body.data, len))
			return 0; /* drops the connection */
		memmove(r->body.data, nl + 1, r->body.len - len - 1);
		r->body.len -= len + 1;
		r->body.data[r->body.len] = '\0';
	}
	if (r->body.len > MAX_LINE || r->body.len > max_bytes) {
		r->garbage = true;
		r->too_big = r->body.len > max_bytes;
		return 0;
	}
	return n;
}

static void list_refused(struct kres *r, const char *why)
{
	bump(r->k, &r->k->o.sh->m.source_errors_total);
	free(r->cont);
	r->cont = NULL;
	sp_dstore_free(&r->listing);
	backoff(r, why);
	r->relist = true;
}

/* A listed object holding \u0000 is refused alone, like a watch event:
 * the version in force stays, if there is one. */
static void keep_last_good(struct kres *r, const cJSON *it)
{
	const struct sp_dobj *old = sp_dstore_get(&r->store, it);
	cJSON *copy;

	refuse_nul_object(r, it, "list item");
	if (!old)
		return;
	copy = sp_dobj_decode(old);
	if (!copy)
		abort(); /* cJSON only fails to parse its own output when out of memory */
	sp_dstore_put(&r->listing, copy, NULL);
}

static void list_done(struct kres *r, CURLcode res, long status)
{
	size_t *bad = NULL, n_bad = 0, next_bad = 0, index = 0;
	cJSON *doc, *items, *it;
	const char *cont;
	struct sp_dtriggers trig = {0};
	struct sp_dchanges ch = {.trig = &trig};
	char why[CURL_ERROR_SIZE + 64];

	if (r->too_big) {
		snprintf(why, sizeof(why),
			 "list answer refused: over the max_file_bytes limit of %zu bytes",
			 r->k->o.lim->max_file_bytes);
		list_refused(r, why);
		return;
	}
	if (res != CURLE_OK || status != 200) {
		if (status == 410 && r->cont) {
			/* The continue token expired: the list starts over. */
			free(r->cont);
			r->cont = NULL;
			sp_dstore_free(&r->listing);
		}
		snprintf(why, sizeof(why), "list failed (%s)",
			 res != CURLE_OK ? curl_easy_strerror(res) : "HTTP error");
		if (res == CURLE_OK)
			snprintf(why, sizeof(why), "list failed (HTTP %ld)", status);
		bump(r->k, &r->k->o.sh->m.source_reconnects_total);
		backoff(r, why);
		r->relist = true;
		return;
	}
	if (!sp_djson_nul_items(r->body.data, r->body.len, &bad, &n_bad)) {
		list_refused(r, "list answer refused: a string outside its items holds \\u0000 "
				"(NUL), which no Kubernetes name or value can hold");
		return;
	}
	doc = cJSON_ParseWithLength(r->body.data, r->body.len);
	items = cJSON_GetObjectItemCaseSensitive(doc, "items");
	if (!doc || !(cJSON_IsArray(items) || cJSON_IsNull(items))) {
		cJSON_Delete(doc);
		free(bad);
		list_refused(r, "list answer is not a list");
		return;
	}
	cJSON_ArrayForEach(it, items)
	{
		bool refused = next_bad < n_bad && bad[next_bad] == index;

		next_bad += refused;
		index++;
		if (!plausible(r, it))
			continue;
		complete(r, it);
		if (refused)
			keep_last_good(r, it);
		else
			sp_dstore_put(&r->listing, cJSON_Duplicate(it, true), NULL);
	}
	free(bad);
	cont = sp_djson_str(doc, "metadata.continue");
	free(r->cont);
	r->cont = cont && *cont ? sp_xstrdup(cont) : NULL;
	if (!r->cont)
		set_rv(r, sp_djson_str(doc, "metadata.resourceVersion"));
	cJSON_Delete(doc);
	if (r->cont) {
		start_list(r);
		return;
	}
	trig.fallback_ns = sp_dclock_ns(CLOCK_REALTIME);
	/* The first list is the initial state, not a change to time. */
	if (!r->synced)
		ch.trig = NULL;
	sp_dstore_diff(&r->store, &r->listing, &ch);
	sp_dstore_swap(&r->store, &r->listing);
	sp_dstore_free(&r->listing);
	r->backoff_ns = 0;
	r->relist = false;
	sp_dlog(SP_LOG_INFO, "API %s: listed %zu objects at resourceVersion %s", r->name,
		r->store.n, r->rv ? r->rv : "?");
	if (!r->synced || ch.services || ch.slices || ch.nodes) {
		r->synced = true;
		r->k->o.changed(r->k->o.arg, &ch, 0);
	}
	sp_dtriggers_free(&trig);
	start_watch(r);
}

static void watch_done(struct kres *r, CURLcode res, long status)
{
	char why[CURL_ERROR_SIZE + 64];

	if (status == 410 || r->relist) {
		bump(r->k, &r->k->o.sh->m.source_relists_total);
		r->relist = true;
		start_list(r);
		return;
	}
	if (r->garbage) {
		bump(r->k, &r->k->o.sh->m.source_errors_total);
		bump(r->k, &r->k->o.sh->m.source_reconnects_total);
		if (!r->too_big) {
			backoff(r, "garbage on the watch stream, reconnecting");
			return;
		}
		snprintf(why, sizeof(why),
			 "a watch event over the max_file_bytes limit of %zu bytes, reconnecting",
			 r->k->o.lim->max_file_bytes);
		backoff(r, why);
		return;
	}
	if (res == CURLE_OK && status == 200) {
		/* The server's timeout ended the watch: resume at once. */
		r->backoff_ns = 0;
		start_watch(r);
		return;
	}
	if (r->got_event)
		r->backoff_ns = 0;
	bump(r->k, &r->k->o.sh->m.source_reconnects_total);
	if (res != CURLE_OK)
		snprintf(why, sizeof(why), "watch dropped (%s)", curl_easy_strerror(res));
	else
		snprintf(why, sizeof(why), "watch refused (HTTP %ld)", status);
	backoff(r, why);
}

static void check_done(struct sp_kube *k)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(k->multi, &left))) {
		struct kres *r = NULL;
		CURLcode res;
		long status;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
		res = msg->data.result;
		status = status_of(r);
		finish_easy(r);
		if (r->phase == K_LISTING)
			list_done(r, res, status);
		else if (r->phase == K_WATCHING)
			watch_done(r, res, status);
	}
}

/* ---- setup ---- */

static char *selector_query(const char *node_name, bool node)
{
	char *esc, *q;

	if (node) {
		char *sel = sp_xasprintf("metadata.name=%s", node_name);

		esc = curl_easy_escape(NULL, sel, 0);
		free(sel);
		q = sp_xasprintf("fieldSelector=%s", esc);
	} else {
		/* kube-proxy's informers: objects of another proxy and
		 * headless ones are not ours. */
		esc = curl_easy_escape(NULL, "!" SP_LABEL_SERVICE_PROXY_NAME ",!" SP_LABEL_HEADLESS,
				       0);
		q = sp_xasprintf("labelSelector=%s", esc);
	}
	curl_free(esc);
	return q;
}

static int res_init(struct sp_kube *k, struct kres *r, const char *name, const char *path,
		    const char *kind, const char *api_version, bool node, struct sp_diag *diag)
{
	r->k = k;
	r->name = name;
	r->path = path;
	r->kind = kind;
	r->api_version = api_version;
	r->query = selector_query(k->node_name, node);
	sp_dstore_init(&r->store, "apiserver", k->o.lim);
	sp_dstore_init(&r->listing, "apiserver", k->o.lim);
	sp_buf_init(&r->body);
	r->timer.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	r->timer.fn = on_backoff_timer;
	r->timer.arg = r;
	if (r->timer.fd < 0 || sp_dloop_add(k->o.epfd, &r->timer, EPOLLIN) < 0) {
		sp_diag_error(diag, "API source setup: %s", strerror(errno));
		return -1;
	}
	return 0;
}

struct sp_kube *sp_kube_open(const struct sp_kube_opts *opts, struct sp_diag *diag)
{
	struct sp_kube *k = sp_xcalloc(1, sizeof(*k));
	int r;

	k->o = *opts;
	k->node_name = sp_xstrdup(opts->node_name);
	for (size_t i = 0; i < SP_ARRAY_SIZE(k->res); i++)
		k->res[i].timer.fd = -1;
	k->curl_timer.fd = -1;
	if (opts->kubeconfig)
		r = sp_kconn_from_kubeconfig(&k->conn, opts->kubeconfig, diag);
	else
		r = sp_kconn_in_cluster(&k->conn, diag);
	if (r < 0) {
		sp_kube_close(k);
		return NULL;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		sp_diag_error(diag, "libcurl: cannot initialise");
		sp_kube_close(k);
		return NULL;
	}
	k->multi = curl_multi_init();
	k->curl_timer.fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	k->curl_timer.fn = on_curl_timer;
	k->curl_timer.arg = k;
	if (!k->multi || k->curl_timer.fd < 0 ||
	    sp_dloop_add(opts->epfd, &k->curl_timer, EPOLLIN) < 0) {
		sp_diag_error(diag, "API source setup: %s", strerror(errno));
		sp_kube_close(k);
		return NULL;
	}
	curl_multi_setopt(k->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
	curl_multi_setopt(k->multi, CURLMOPT_SOCKETDATA, k);
	curl_multi_setopt(k->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(k->multi, CURLMOPT_TIMERDATA, k);
	if (res_init(k, &k->res[0], "services", "/api/v1/services", "Service", "v1", false, diag) <
		    0 ||
	    res_init(k, &k->res[1], "endpointslices", "/apis/discovery.k8s.io/v1/endpointslices",
		     "EndpointSlice", "discovery.k8s.io/v1", false, diag) < 0 ||
	    res_init(k, &k->res[2], "node", "/api/v1/nodes", "Node", "v1", true, diag) < 0) {
		sp_kube_close(k);
		return NULL;
	}
	srand((unsigned)now_mono());
	sp_dlog(SP_LOG_NOTICE, "API server %s, node %s", k->conn.server, k->node_name);
	for (size_t i = 0; i < SP_ARRAY_SIZE(k->res); i++)
		start_list(&k->res[i]);
	return k;
}

void sp_kube_close(struct sp_kube *k)
{
	if (!k)
		return;
	for (size_t i = 0; i < SP_ARRAY_SIZE(k->res); i++) {
		struct kres *r = &k->res[i];

		if (!r->k)
			continue;
		finish_easy(r);
		if (r->timer.fd >= 0)
			close(r->timer.fd);
		free(r->query);
		free(r->rv);
		free(r->cont);
		sp_dstore_free(&r->store);
		sp_dstore_free(&r->listing);
		sp_buf_free(&r->body);
	}
	if (k->multi)
		curl_multi_cleanup(k->multi);
	for (size_t i = 0; i < k->n_socks; i++)
		free(k->socks[i]);
	free(k->socks);
	if (k->curl_timer.fd >= 0)
		close(k->curl_timer.fd);
	sp_kconn_free(&k->conn);
	free(k->node_name);
	free(k);
}

bool sp_kube_synced(const struct sp_kube *k)
{
	for (size_t i = 0; i < SP_ARRAY_SIZE(k->res); i++)
		if (!k->res[i].synced)
			return false;
	return true;
}

void sp_kube_relist(struct sp_kube *k)
{
	for (size_t i = 0; i < SP_ARRAY_SIZE(k->res); i++) {
		struct kres *r = &k->res[i];

		finish_easy(r);
		free(r->cont);
		r->cont = NULL;
		sp_dstore_free(&r->listing);
		r->backoff_ns = 0;
		start_list(r);
	}
}

int sp_kube_fill(const struct sp_kube *k, struct sp_cluster *c, struct sp_diag *diag)
{
	int worst = 0;

	for (size_t i = 0; i < SP_ARRAY_SIZE(k->res); i++) {
		int r = sp_dstore_fill(&k->res[i].store, c, diag);

		if (r < 0 || (r > worst && worst >= 0))
			worst = r;
	}
	return worst;
}

bool sp_kube_node_eligible(const struct sp_kube *k)
{
	const struct sp_dstore *nodes = &k->res[2].store;
	bool eligible = true;

	for (size_t i = 0; i < nodes->n && eligible; i++) {
		cJSON *obj = sp_dobj_decode(&nodes->objs[i]);
		const cJSON *taints = cJSON_GetObjectItemCaseSensitive(
			cJSON_GetObjectItemCaseSensitive(obj, "spec"), "taints");
		const cJSON *t;

		if (sp_djson_str(obj, "metadata.deletionTimestamp"))
			eligible = false;
		cJSON_ArrayForEach(t, taints)
		{
			const char *key = sp_djson_str(t, "key");

			if (key && !strcmp(key, "ToBeDeletedByClusterAutoscaler"))
				eligible = false;
		}
		cJSON_Delete(obj);
	}
	return eligible;
}
