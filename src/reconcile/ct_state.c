/* The conntrack view of the last programmed plan, kept across processes, and
 * the flush that runs after each sync.
 *
 * A one-shot `svcproxy sync` has no previous plan in memory, yet needs it to
 * know what the change made stale; the daemon has it but may be restarted.
 * So after each flush the summary of the plan just programmed is written to
 * a state file (JSON, atomically replaced), together with the flushes that
 * failed: those are retried at the next sync, whatever that sync changes.
 * A missing file means no previous plan: nothing is flushed (after a reboot
 * the conntrack table is empty anyway). A corrupt one is reported, treated
 * as missing and overwritten. */
#include "svcproxy/conntrack.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SP_CT_STATE_VERSION 1

char *sp_ct_state_path(const char *dir, enum sp_mode mode)
{
	return sp_xasprintf("%s/%s.state", dir ? dir : SP_CT_DEFAULT_STATE_DIR, sp_mode_name(mode));
}

/* ---- to JSON ---- */

/* ---- to JSON ----
 * Written straight into the buffer: at 10,000 Service ports the state is
 * megabytes, and a cJSON tree of it was the daemon's largest allocation
 * after the source itself, rebuilt on every sync. The reader below takes
 * the same text (cJSON_PrintUnformatted's shape). */

static void put_key(struct sp_buf *b, const char *key)
{
	sp_buf_addf(b, ",\"%s\":", key);
}

static void put_addr(struct sp_buf *b, const struct sp_addr *a)
{
	char buf[SP_ADDRSTRLEN];

	sp_buf_add_json_string(b, a->family ? sp_addr_format(a, buf) : "");
}

static void put_addrs(struct sp_buf *b, const struct sp_addr *a, size_t n)
{
	sp_buf_add(b, "[");
	for (size_t i = 0; i < n; i++) {
		if (i)
			sp_buf_add(b, ",");
		put_addr(b, &a[i]);
	}
	sp_buf_add(b, "]");
}

static void put_cidrs(struct sp_buf *b, const struct sp_cidr *c, size_t n)
{
	char buf[SP_CIDRSTRLEN];

	sp_buf_add(b, "[");
	for (size_t i = 0; i < n; i++) {
		if (i)
			sp_buf_add(b, ",");
		sp_buf_add_json_string(b, sp_cidr_format(&c[i], buf));
	}
	sp_buf_add(b, "]");
}

static void put_eps(struct sp_buf *b, const struct sp_ct_eps *e)
{
	sp_buf_add(b, "[");
	for (size_t i = 0; i < e->n; i++) {
		sp_buf_add(b, i ? ",[" : "[");
		put_addr(b, &e->items[i].addr);
		sp_buf_addf(b, ",%u]", (unsigned)e->items[i].port);
	}
	sp_buf_add(b, "]");
}

static const char *json_bool(bool v)
{
	return v ? "true" : "false";
}

static int family_number(int family)
{
	return family == AF_INET6 ? 6 : 4;
}

static void put_svcport(struct sp_buf *b, const struct sp_ct_svcport *sp)
{
	sp_buf_add(b, "{\"id\":");
	sp_buf_add_json_string(b, sp->id);
	sp_buf_addf(b, ",\"family\":%d,\"protocol\":", family_number(sp->family));
	sp_buf_add_json_string(b, sp_proto_name(sp->protocol));
	put_key(b, "cluster_ip");
	put_addr(b, &sp->cluster_ip);
	sp_buf_addf(b, ",\"port\":%u,\"node_port\":%u", (unsigned)sp->port,
		    (unsigned)sp->node_port);
	put_key(b, "external");
	put_addrs(b, sp->external_addrs, sp->n_external_addrs);
	sp_buf_addf(b,
		    ",\"external_policy_local\":%s,\"internal_policy_local\":%s"
		    ",\"affinity\":%s,\"affinity_timeout\":%u",
		    json_bool(sp->external_policy_local), json_bool(sp->internal_policy_local),
		    json_bool(sp->affinity), (unsigned)sp->affinity_timeout);
	put_key(b, "cluster_eps");
	put_eps(b, &sp->cluster_eps);
	put_key(b, "local_eps");
	put_eps(b, &sp->local_eps);
	sp_buf_add(b, "}");
}

static void put_filter(struct sp_buf *b, const struct sp_ct_filter *f)
{
	sp_buf_add(b, "{\"reason\":");
	sp_buf_add_json_string(b, sp_ct_reason_name(f->reason));
	put_key(b, "id");
	sp_buf_add_json_string(b, f->svc_id ? f->svc_id : "");
	sp_buf_addf(b, ",\"family\":%d,\"protocol\":", family_number(f->family));
	sp_buf_add_json_string(b, sp_proto_name(f->protocol));
	put_key(b, "orig_dst");
	put_addr(b, &f->orig_dst);
	sp_buf_addf(b, ",\"orig_dport\":%u", (unsigned)f->orig_dport);
	if (f->match_reply_src) {
		put_key(b, "reply_src");
		put_addr(b, &f->reply_src);
		sp_buf_addf(b, ",\"reply_sport\":%u", (unsigned)f->reply_sport);
	}
	sp_buf_addf(b, ",\"snat\":%s", json_bool(f->snat_only));
	if (f->n_skip_src) {
		put_key(b, "skip_src");
		put_cidrs(b, f->skip_src, f->n_skip_src);
	}
	sp_buf_add(b, "}");
}

void sp_ct_summary_to_json(const struct sp_ct_summary *s, struct sp_buf *out)
{
	sp_buf_addf(out, "{\"version\":%d,\"mode\":", SP_CT_STATE_VERSION);
	sp_buf_add_json_string(out, s->mode ? sp_mode_name(s->mode) : "");
	sp_buf_addf(out, ",\"masquerade_all\":%s", json_bool(s->masquerade_all));
	put_key(out, "nodeport_addrs");
	put_addrs(out, s->nodeport_addrs, s->n_nodeport_addrs);
	put_key(out, "cluster_sources");
	put_cidrs(out, s->cluster_sources, s->n_cluster_sources);
	put_key(out, "svcports");
	sp_buf_add(out, "[");
	for (size_t i = 0; i < s->n_svcports; i++) {
		if (i)
			sp_buf_add(out, ",");
		put_svcport(out, &s->svcports[i]);
	}
	sp_buf_add(out, "]");
	put_key(out, "pending");
	sp_buf_add(out, "[");
	for (size_t i = 0; i < s->pending.n; i++) {
		if (i)
			sp_buf_add(out, ",");
		put_filter(out, &s->pending.items[i]);
	}
	sp_buf_add(out, "]}\n");
}

/* ---- from JSON ---- */

/* Parsing context: the first problem found, with its JSON path. */
struct rd {
	const char *origin;
	char *err;
};

static bool rd_fail(struct rd *r, const char *path, const char *what)
{
	if (!r->err)
		r->err = sp_xasprintf("%s: %s", path, what);
	return false;
}

static const cJSON *rd_get(struct rd *r, const cJSON *obj, const char *key, const char *path)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

	if (!v) {
		char *p = sp_xasprintf("%s.%s", path, key);

		rd_fail(r, p, "missing");
		free(p);
	}
	return v;
}

static bool rd_long(struct rd *r, const cJSON *v, long min, long max, long *out, const char *path)
{
	if (!cJSON_IsNumber(v) || v->valuedouble != (double)(long)v->valuedouble ||
	    v->valuedouble < min || v->valuedouble > max)
		return rd_fail(r, path, "not an integer in range");
	*out = (long)v->valuedouble;
	return true;
}

static bool rd_key_long(struct rd *r, const cJSON *obj, const char *key, long min, long max,
			long *out, const char *path)
{
	const cJSON *v = rd_get(r, obj, key, path);
	char *p;
	bool ok;

	if (!v)
		return false;
	p = sp_xasprintf("%s.%s", path, key);
	ok = rd_long(r, v, min, max, out, p);
	free(p);
	return ok;
}

static bool rd_key_bool(struct rd *r, const cJSON *obj, const char *key, bool *out,
			const char *path)
{
	const cJSON *v = rd_get(r, obj, key, path);

	if (!v)
		return false;
	if (!cJSON_IsBool(v)) {
		char *p = sp_xasprintf("%s.%s", path, key);

		rd_fail(r, p, "not a boolean");
		free(p);
		return false;
	}
	*out = cJSON_IsTrue(v);
	return true;
}

/* empty_ok: "" stands for no address. */
static bool rd_addr(struct rd *r, const cJSON *v, bool empty_ok, struct sp_addr *out,
		    const char *path)
{
	if (!cJSON_IsString(v))
		return rd_fail(r, path, "not a string");
	if (empty_ok && v->valuestring[0] == '\0') {
		memset(out, 0, sizeof(*out));
		return true;
	}
	if (!sp_addr_parse(v->valuestring, out))
		return rd_fail(r, path, "not an IP address");
	return true;
}

static bool rd_key_addr(struct rd *r, const cJSON *obj, const char *key, bool empty_ok,
			struct sp_addr *out, const char *path)
{
	const cJSON *v = rd_get(r, obj, key, path);
	char *p;
	bool ok;

	if (!v)
		return false;
	p = sp_xasprintf("%s.%s", path, key);
	ok = rd_addr(r, v, empty_ok, out, p);
	free(p);
	return ok;
}

static bool rd_family(struct rd *r, const cJSON *obj, int *out, const char *path)
{
	long n;

	if (!rd_key_long(r, obj, "family", 4, 6, &n, path))
		return false;
	if (n != 4 && n != 6)
		return rd_fail(r, path, "family is neither 4 nor 6");
	*out = n == 6 ? AF_INET6 : AF_INET;
	return true;
}

static bool rd_proto(struct rd *r, const cJSON *obj, uint8_t *out, const char *path)
{
	const cJSON *v = rd_get(r, obj, "protocol", path);

	if (!v)
		return false;
	if (!cJSON_IsString(v) || !(*out = sp_proto_parse(v->valuestring)))
		return rd_fail(r, path, "protocol is not TCP, UDP or SCTP");
	return true;
}

static bool rd_addrs(struct rd *r, const cJSON *obj, const char *key, struct sp_addr **out,
		     size_t *n, const char *path)
{
	const cJSON *arr = rd_get(r, obj, key, path);
	const cJSON *it;
	bool ok = true;

	*n = 0;
	*out = sp_xcalloc(1, sizeof(**out));
	if (!arr)
		return false;
	if (!cJSON_IsArray(arr))
		return rd_fail(r, path, "address list is not an array");
	*out = sp_xrealloc(*out, (size_t)(cJSON_GetArraySize(arr) + 1) * sizeof(**out));
	cJSON_ArrayForEach(it, arr)
	{
		char *p = sp_xasprintf("%s.%s[%zu]", path, key, *n);

		ok = rd_addr(r, it, false, &(*out)[*n], p);
		free(p);
		if (!ok)
			return false;
		(*n)++;
	}
	return true;
}

/* An optional list of CIDRs: absent is empty. */
static bool rd_cidrs(struct rd *r, const cJSON *obj, const char *key, struct sp_cidr **out,
		     size_t *n, const char *path)
{
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(obj, key);
	const cJSON *it;

	*n = 0;
	*out = NULL;
	if (!arr)
		return true;
	if (!cJSON_IsArray(arr))
		return rd_fail(r, path, "CIDR list is not an array");
	*out = sp_xcalloc((size_t)cJSON_GetArraySize(arr) + 1, sizeof(**out));
	cJSON_ArrayForEach(it, arr)
	{
		if (!cJSON_IsString(it) || !sp_cidr_parse(it->valuestring, &(*out)[*n])) {
			char *p = sp_xasprintf("%s.%s[%zu]", path, key, *n);

			rd_fail(r, p, "not a CIDR");
			free(p);
			return false;
		}
		(*n)++;
	}
	return true;
}

static bool rd_eps(struct rd *r, const cJSON *obj, const char *key, struct sp_ct_eps *out,
		   const char *path)
{
	const cJSON *arr = rd_get(r, obj, key, path);
	const cJSON *it;

	out->n = 0;
	out->items = sp_xcalloc(1, sizeof(*out->items));
	if (!arr)
		return false;
	if (!cJSON_IsArray(arr))
		return rd_fail(r, path, "endpoint list is not an array");
	out->items = sp_xrealloc(out->items,
				 (size_t)(cJSON_GetArraySize(arr) + 1) * sizeof(*out->items));
	cJSON_ArrayForEach(it, arr)
	{
		char *p = sp_xasprintf("%s.%s[%zu]", path, key, out->n);
		struct sp_ct_endpoint *ep = &out->items[out->n];
		long port;
		bool ok = cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2;

		ok = ok ? rd_addr(r, cJSON_GetArrayItem(it, 0), false, &ep->addr, p)
			: rd_fail(r, p, "not an [address, port] pair");
		ok = ok && rd_long(r, cJSON_GetArrayItem(it, 1), 1, 65535, &port, p);
		free(p);
		if (!ok)
			return false;
		ep->port = (uint16_t)port;
		out->n++;
	}
	return true;
}

static bool rd_svcport(struct rd *r, const cJSON *o, struct sp_ct_svcport *sp, const char *path)
{
	const cJSON *id = rd_get(r, o, "id", path);
	long port, node_port, timeout;

	if (!id)
		return false;
	if (!cJSON_IsString(id))
		return rd_fail(r, path, "id is not a string");
	sp->id = sp_xstrdup(id->valuestring);
	return rd_family(r, o, &sp->family, path) && rd_proto(r, o, &sp->protocol, path) &&
	       rd_key_addr(r, o, "cluster_ip", true, &sp->cluster_ip, path) &&
	       rd_key_long(r, o, "port", 1, 65535, &port, path) &&
	       rd_key_long(r, o, "node_port", 0, 65535, &node_port, path) &&
	       rd_addrs(r, o, "external", &sp->external_addrs, &sp->n_external_addrs, path) &&
	       rd_key_bool(r, o, "external_policy_local", &sp->external_policy_local, path) &&
	       rd_key_bool(r, o, "internal_policy_local", &sp->internal_policy_local, path) &&
	       rd_key_bool(r, o, "affinity", &sp->affinity, path) &&
	       rd_key_long(r, o, "affinity_timeout", 0, UINT32_MAX, &timeout, path) &&
	       rd_eps(r, o, "cluster_eps", &sp->cluster_eps, path) &&
	       rd_eps(r, o, "local_eps", &sp->local_eps, path) &&
	       (sp->port = (uint16_t)port, sp->node_port = (uint16_t)node_port,
		sp->affinity_timeout = (uint32_t)timeout, true);
}

static bool rd_filter(struct rd *r, const cJSON *o, struct sp_ct_filter *f, const char *path)
{
	const cJSON *reason = rd_get(r, o, "reason", path);
	const cJSON *id = rd_get(r, o, "id", path);
	long dport, sport = 0;

	if (!reason || !id)
		return false;
	if (!cJSON_IsString(reason) ||
	    (f->reason = sp_ct_reason_parse(reason->valuestring)) == SP_CT_REASON_MAX)
		return rd_fail(r, path, "unknown reason");
	if (!cJSON_IsString(id))
		return rd_fail(r, path, "id is not a string");
	f->svc_id = sp_xstrdup(id->valuestring);
	f->match_reply_src = cJSON_GetObjectItemCaseSensitive(o, "reply_src") != NULL;
	return rd_family(r, o, &f->family, path) && rd_proto(r, o, &f->protocol, path) &&
	       rd_key_addr(r, o, "orig_dst", false, &f->orig_dst, path) &&
	       rd_key_long(r, o, "orig_dport", 1, 65535, &dport, path) &&
	       (!f->match_reply_src ||
		(rd_key_addr(r, o, "reply_src", false, &f->reply_src, path) &&
		 rd_key_long(r, o, "reply_sport", 0, 65535, &sport, path))) &&
	       rd_key_bool(r, o, "snat", &f->snat_only, path) &&
	       rd_cidrs(r, o, "skip_src", &f->skip_src, &f->n_skip_src, path) &&
	       (f->orig_dport = (uint16_t)dport, f->reply_sport = (uint16_t)sport, true);
}

static bool rd_summary(struct rd *r, const cJSON *root, struct sp_ct_summary *s)
{
	const cJSON *mode, *arr, *it;
	long version;

	if (!cJSON_IsObject(root))
		return rd_fail(r, "$", "not an object");
	if (!rd_key_long(r, root, "version", 0, 1000, &version, "$"))
		return false;
	if (version != SP_CT_STATE_VERSION)
		return rd_fail(r, "$.version", "unsupported version");
	mode = rd_get(r, root, "mode", "$");
	if (!mode)
		return false;
	if (!cJSON_IsString(mode))
		return rd_fail(r, "$.mode", "not a string");
	s->mode = sp_mode_parse(mode->valuestring);
	if (!rd_key_bool(r, root, "masquerade_all", &s->masquerade_all, "$") ||
	    !rd_addrs(r, root, "nodeport_addrs", &s->nodeport_addrs, &s->n_nodeport_addrs, "$") ||
	    !rd_cidrs(r, root, "cluster_sources", &s->cluster_sources, &s->n_cluster_sources, "$"))
		return false;
	arr = rd_get(r, root, "svcports", "$");
	if (!arr)
		return false;
	if (!cJSON_IsArray(arr))
		return rd_fail(r, "$.svcports", "not an array");
	s->svcports = sp_xcalloc((size_t)cJSON_GetArraySize(arr) + 1, sizeof(*s->svcports));
	cJSON_ArrayForEach(it, arr)
	{
		char *p = sp_xasprintf("$.svcports[%zu]", s->n_svcports);
		bool ok = rd_svcport(r, it, &s->svcports[s->n_svcports++], p);

		free(p);
		if (!ok)
			return false;
	}
	arr = cJSON_GetObjectItemCaseSensitive(root, "pending");
	if (!arr)
		return true;
	if (!cJSON_IsArray(arr))
		return rd_fail(r, "$.pending", "not an array");
	cJSON_ArrayForEach(it, arr)
	{
		char *p = sp_xasprintf("$.pending[%zu]", s->pending.n);
		bool ok = rd_filter(r, it, sp_ct_filters_add(&s->pending), p);

		free(p);
		if (!ok)
			return false;
	}
	return true;
}

int sp_ct_summary_from_json(struct sp_ct_summary *out, const char *text, const char *origin,
			    struct sp_diag *diag)
{
	struct rd r = {.origin = origin};
	cJSON *root = cJSON_Parse(text);
	bool ok;

	sp_ct_summary_init(out);
	if (!root) {
		sp_diag_warn(diag, "%s: conntrack state is not JSON", origin);
		return -1;
	}
	ok = rd_summary(&r, root, out);
	cJSON_Delete(root);
	if (!ok) {
		sp_diag_warn(diag, "%s: conntrack state: %s", origin, r.err ? r.err : "invalid");
		free(r.err);
		sp_ct_summary_free(out);
		return -1;
	}
	sp_ct_summary_normalize(out);
	return 0;
}

/* ---- file ---- */

static char *read_file(const char *path, int *err)
{
	struct sp_buf b;
	char chunk[8192];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		*err = errno;
		return NULL;
	}
	sp_buf_init(&b);
	while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			*err = errno;
			close(fd);
			sp_buf_free(&b);
			return NULL;
		}
		sp_buf_addn(&b, chunk, (size_t)n);
	}
	close(fd);
	if (strlen(b.data ? b.data : "") != b.len) {
		*err = EILSEQ; /* a NUL inside: not our text */
		sp_buf_free(&b);
		return NULL;
	}
	return b.data ? sp_buf_steal(&b) : sp_xstrdup("");
}

int sp_ct_state_load(struct sp_ct_summary *out, const char *path, struct sp_diag *diag)
{
	int err = 0;
	char *text = read_file(path, &err);
	int ret;

	sp_ct_summary_init(out);
	if (!text) {
		if (err == ENOENT)
			return 0;
		sp_diag_warn(diag, "%s: cannot read conntrack state: %s (nothing flushed)", path,
			     strerror(err));
		return -1;
	}
	ret = sp_ct_summary_from_json(out, text, path, diag);
	free(text);
	if (ret < 0) {
		sp_diag_warn(diag, "%s: conntrack state ignored: nothing flushed, overwritten now",
			     path);
		return -1;
	}
	return 1;
}

static int write_all(int fd, const char *data, size_t len)
{
	while (len) {
		ssize_t n = write(fd, data, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

/* mkdir -p of the file's folder: a --state-dir given by the operator (or a
 * test) may not exist yet, nor its parents. */
static int make_parent_dir(const char *path)
{
	char *dir = sp_xstrdup(path);
	char *end = strrchr(dir, '/');
	int ret = 0;

	if (end && end != dir) {
		*end = '\0';
		for (char *p = dir + 1; ret == 0 && p <= end; p++) {
			if (*p != '/' && *p != '\0')
				continue;
			char saved = *p;

			*p = '\0';
			if (mkdir(dir, 0755) < 0 && errno != EEXIST)
				ret = -1;
			*p = saved;
		}
	}
	free(dir);
	return ret;
}

int sp_ct_state_save(const struct sp_ct_summary *s, const char *path, struct sp_diag *diag)
{
	struct sp_buf b;
	char *tmp = sp_xasprintf("%s.tmp.%ld", path, (long)getpid());
	int fd, ret = -1;

	if (make_parent_dir(path) < 0) {
		sp_diag_warn(diag, "%s: cannot create the state directory: %s", path,
			     strerror(errno));
		free(tmp);
		return -1;
	}
	sp_buf_init(&b);
	sp_ct_summary_to_json(s, &b);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		sp_diag_warn(diag, "%s: cannot write conntrack state: %s", tmp, strerror(errno));
		goto out;
	}
	if (write_all(fd, b.data, b.len) < 0 || fsync(fd) < 0) {
		sp_diag_warn(diag, "%s: cannot write conntrack state: %s", tmp, strerror(errno));
		close(fd);
		unlink(tmp);
		goto out;
	}
	if (close(fd) < 0 || rename(tmp, path) < 0) {
		sp_diag_warn(diag, "%s: cannot replace conntrack state: %s", path, strerror(errno));
		unlink(tmp);
		goto out;
	}
	ret = 0;
out:
	sp_buf_free(&b);
	free(tmp);
	return ret;
}

/* ---- flush ---- */

static void log_flush(const struct sp_ct_filter *f, size_t deleted, struct sp_diag *diag)
{
	struct sp_buf b;

	sp_buf_init(&b);
	sp_ct_filter_format(f, &b);
	sp_diag_info(diag, "conntrack: flushed %zu %s: %s", deleted,
		     deleted == 1 ? "entry" : "entries", b.data);
	sp_buf_free(&b);
}

int sp_ct_flush_stale(const struct sp_ct_summary *old, const struct sp_ct_summary *new,
		      struct sp_ct_filters *pending, struct sp_ct_stats *stats,
		      struct sp_diag *diag)
{
	struct sp_ct_handle *h = NULL;
	int ret = sp_ct_flush_stale_with(&h, old, new, pending, stats, diag);

	sp_ct_close(h);
	return ret;
}

int sp_ct_flush_stale_with(struct sp_ct_handle **hp, const struct sp_ct_summary *old,
			   const struct sp_ct_summary *new, struct sp_ct_filters *pending,
			   struct sp_ct_stats *stats, struct sp_diag *diag)
{
	struct sp_ct_filters todo;
	size_t *deleted;
	bool *failed;
	int ret = 0;

	if (!old)
		return 0;
	sp_ct_filters_init(&todo);
	sp_ct_stale(old, new, &todo);
	for (size_t i = 0; i < old->pending.n; i++)
		sp_ct_filter_copy(sp_ct_filters_add(&todo), &old->pending.items[i]);
	sp_ct_filters_normalize(&todo);
	if (todo.n == 0) {
		sp_ct_filters_free(&todo);
		return 0;
	}
	stats->filters += todo.n;
	if (!*hp)
		*hp = sp_ct_open(diag);
	deleted = sp_xcalloc(todo.n, sizeof(*deleted));
	failed = sp_xcalloc(todo.n, sizeof(*failed));
	if (*hp) {
		sp_ct_delete_matching(*hp, todo.items, todo.n, deleted, failed, stats, diag);
	} else {
		for (size_t i = 0; i < todo.n; i++)
			failed[i] = true;
	}
	for (size_t i = 0; i < todo.n; i++) {
		if (failed[i]) {
			sp_ct_filter_copy(sp_ct_filters_add(pending), &todo.items[i]);
			stats->filters_failed++;
			ret = 1;
			continue;
		}
		stats->entries_deleted += deleted[i];
		log_flush(&todo.items[i], deleted[i], diag);
	}
	if (ret)
		sp_diag_warn(diag, "conntrack: %zu flush(es) failed; retried at the next sync",
			     stats->filters_failed);
	free(deleted);
	free(failed);
	sp_ct_filters_free(&todo);
	return ret;
}

int sp_ct_sync_summary(const char *path, struct sp_ct_summary *new, struct sp_ct_stats *stats,
		       struct sp_diag *diag)
{
	struct sp_ct_summary old;
	int loaded, ret;

	loaded = sp_ct_state_load(&old, path, diag);
	sp_ct_filters_free(&new->pending);
	ret = sp_ct_flush_stale(loaded == 1 ? &old : NULL, new, &new->pending, stats, diag);
	sp_ct_filters_normalize(&new->pending);
	/* If this fails the old state stays: the next sync diffs from it
	 * again, which retries everything flushed or not now. */
	if (sp_ct_state_save(new, path, diag) < 0)
		ret = 1;
	sp_ct_summary_free(&old);
	return ret;
}

int sp_ct_sync_plan(const char *state_dir, const struct sp_plan *plan, struct sp_ct_stats *stats,
		    struct sp_diag *diag)
{
	char *path = sp_ct_state_path(state_dir, plan->mode);
	struct sp_ct_summary new;
	int ret;

	sp_ct_summary_from_plan(&new, plan);
	ret = sp_ct_sync_summary(path, &new, stats, diag);
	sp_ct_summary_free(&new);
	free(path);
	return ret;
}

struct sp_ct_tracker {
	char *state_path;
	bool have_old; /* false until a plan is known: nothing to diff against */
	bool saved;    /* the state file holds old */
	struct sp_ct_summary old;
	struct sp_ct_handle *h; /* opened on first need, reopened after failure */
};

struct sp_ct_tracker *sp_ct_tracker_new(const char *state_path, struct sp_diag *diag)
{
	struct sp_ct_tracker *t = sp_xcalloc(1, sizeof(*t));

	sp_ct_summary_init(&t->old);
	if (state_path) {
		t->state_path = sp_xstrdup(state_path);
		t->have_old = sp_ct_state_load(&t->old, state_path, diag) == 1;
		t->saved = t->have_old;
	}
	return t;
}

void sp_ct_tracker_free(struct sp_ct_tracker *t)
{
	if (!t)
		return;
	sp_ct_close(t->h);
	sp_ct_summary_free(&t->old);
	free(t->state_path);
	free(t);
}

int sp_ct_tracker_sync(struct sp_ct_tracker *t, const struct sp_plan *plan,
		       struct sp_ct_stats *stats, struct sp_diag *diag)
{
	struct sp_ct_summary new;
	int ret;

	sp_ct_summary_from_plan(&new, plan);
	ret = sp_ct_flush_stale_with(&t->h, t->have_old ? &t->old : NULL, &new, &new.pending, stats,
				     diag);
	sp_ct_filters_normalize(&new.pending);
	if (ret && t->h) {
		/* A socket error may have left replies queued: start clean. */
		sp_ct_close(t->h);
		t->h = NULL;
	}
	/* The periodic resync usually changes nothing: skip rewriting a file
	 * that grows with the number of Services (4.7 MB and ~0.2 s for
	 * 10,000 Service ports with 10 endpoints each). */
	if (t->saved && t->have_old && sp_ct_summary_equal(&t->old, &new)) {
		/* nothing to write */
	} else if (t->state_path) {
		t->saved = sp_ct_state_save(&new, t->state_path, diag) == 0;
		if (!t->saved)
			ret = 1;
	}
	sp_ct_summary_free(&t->old);
	t->old = new;
	t->have_old = true;
	return ret;
}
