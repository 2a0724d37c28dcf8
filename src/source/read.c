/* Sources: files, directories and buffers of Kubernetes JSON, split into
 * objects and handed to the per-kind readers. Limits are enforced before
 * anything recursive touches the input. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "svcproxy/source.h"
#include "source_internal.h"

void sp_source_limits_default(struct sp_source_limits *lim)
{
	lim->max_file_bytes = 64u << 20;
	lim->max_depth = 64;
	lim->max_items = 100000;
}

/* -1 beats 1 beats 0: the worst outcome of several reads. */
static int worst(int a, int b)
{
	if (a < 0 || b < 0)
		return -1;
	return a > b ? a : b;
}

struct kind_reader {
	const char *kind;
	const char *api_version;
	bool namespaced;
	int (*read)(struct sp_cluster *c, struct src_ctx *x, const cJSON *obj);
};

static const struct kind_reader kind_readers[] = {
	{"Service", "v1", true, src_read_service},
	{"EndpointSlice", "discovery.k8s.io/v1", true, src_read_slice},
	{"Node", "v1", false, src_read_node},
};

static const struct kind_reader *find_reader(const char *kind)
{
	for (size_t i = 0; i < SP_ARRAY_SIZE(kind_readers); i++)
		if (!strcmp(kind, kind_readers[i].kind))
			return &kind_readers[i];
	return NULL;
}

/* A typed list ("ServiceList") leaves kind and apiVersion out of its items. */
static const struct kind_reader *reader_of_list(const char *list_kind)
{
	size_t n = strlen(list_kind);

	for (size_t i = 0; i < SP_ARRAY_SIZE(kind_readers); i++) {
		size_t k = strlen(kind_readers[i].kind);

		if (n == k + 4 && !strncmp(list_kind, kind_readers[i].kind, k))
			return &kind_readers[i];
	}
	return NULL;
}

static int read_item(struct sp_cluster *c, struct src_ctx *x, const cJSON *item,
		     const struct kind_reader *implied)
{
	const struct kind_reader *r;
	const cJSON *kind, *api;
	char val[128];

	if (!cJSON_IsObject(item)) {
		src_error(x, "", "%s is not an object", src_value_text(item, val, sizeof(val)));
		return 1;
	}
	kind = src_get(item, "kind");
	api = src_get(item, "apiVersion");
	if (!kind && implied) {
		r = implied;
	} else if (!kind) {
		src_error(x, "kind", "required value is missing");
		return 1;
	} else if (!src_is_string(x, kind, "kind")) {
		return 1;
	} else if (!(r = find_reader(kind->valuestring))) {
		return 0; /* a kind kube-proxy does not watch */
	}
	x->kind = r->kind;
	src_set_ident(x, item, r->namespaced);
	if (!api && implied == r)
		return r->read(c, x, item);
	if (!api) {
		src_error(x, "apiVersion", "required value is missing");
		return 1;
	}
	if (!src_is_string(x, api, "apiVersion"))
		return 1;
	if (strcmp(api->valuestring, r->api_version)) {
		src_error(x, "apiVersion", "%s is not supported for %s (only %s)",
			  src_value_text(api, val, sizeof(val)), r->kind, r->api_version);
		return 1;
	}
	return r->read(c, x, item);
}

static void ctx_init(struct src_ctx *x, const char *origin, const struct sp_source_limits *lim,
		     struct sp_diag *diag)
{
	memset(x, 0, sizeof(*x));
	x->origin = origin;
	x->kind = "object";
	x->lim = lim;
	x->diag = diag;
}

/* Bounded recursion: stops one level past the limit. */
static bool tree_depth_ok(const cJSON *v, size_t depth, size_t max)
{
	const cJSON *it;

	if (!cJSON_IsArray(v) && !cJSON_IsObject(v))
		return true;
	if (depth + 1 > max)
		return false;
	for (it = v->child; it; it = it->next)
		if (!tree_depth_ok(it, depth + 1, max))
			return false;
	return true;
}

static int read_list(struct sp_cluster *c, const char *origin, const cJSON *obj,
		     const char *list_kind, const struct sp_source_limits *lim,
		     struct sp_diag *diag)
{
	const struct kind_reader *implied = reader_of_list(list_kind);
	const cJSON *items = src_get(obj, "items"), *it;
	size_t n = 0;
	int ret = 0;

	if (items && !cJSON_IsArray(items)) {
		sp_diag_error(diag, "%s: %s: items is not an array", origin, list_kind);
		return -1;
	}
	cJSON_ArrayForEach(it, items)
	{
		if (++n > lim->max_items) {
			sp_diag_error(diag, "%s: %s: more than %zu items (the max_items limit)",
				      origin, list_kind, lim->max_items);
			return -1;
		}
	}
	n = 0;
	cJSON_ArrayForEach(it, items)
	{
		struct src_ctx x;

		ctx_init(&x, origin, lim, diag);
		snprintf(x.ident, sizeof(x.ident), "items[%zu]", n++);
		ret = worst(ret, read_item(c, &x, it, implied));
	}
	return ret;
}

int sp_source_read_json(struct sp_cluster *c, const char *origin, const cJSON *obj,
			const struct sp_source_limits *lim, struct sp_diag *diag)
{
	struct sp_source_limits defaults;
	const cJSON *kind;
	struct src_ctx x;

	if (!lim) {
		sp_source_limits_default(&defaults);
		lim = &defaults;
	}
	if (!tree_depth_ok(obj, 0, lim->max_depth)) {
		sp_diag_error(diag, "%s: nested deeper than %zu levels (the max_depth limit)",
			      origin, lim->max_depth);
		return -1;
	}
	if (!cJSON_IsObject(obj)) {
		sp_diag_error(diag, "%s: the top level is not a JSON object", origin);
		return -1;
	}
	kind = src_get(obj, "kind");
	if (cJSON_IsString(kind) && !strcmp(kind->valuestring, "List"))
		return read_list(c, origin, obj, "List", lim, diag);
	if (cJSON_IsString(kind) && reader_of_list(kind->valuestring))
		return read_list(c, origin, obj, kind->valuestring, lim, diag);
	ctx_init(&x, origin, lim, diag);
	snprintf(x.ident, sizeof(x.ident), "(top level)");
	return read_item(c, &x, obj, NULL);
}

static void line_col(const char *text, size_t off, size_t *line, size_t *col)
{
	*line = 1;
	*col = 1;
	for (size_t i = 0; i < off; i++) {
		if (text[i] == '\n') {
			(*line)++;
			*col = 1;
		} else {
			(*col)++;
		}
	}
}

enum scan_result {
	SCAN_OK,
	SCAN_TOO_DEEP,
	SCAN_TOO_MANY,
	SCAN_NUL,
};

/* "\u0000" at text[i] (the backslash): cJSON would end the string there and
 * hand back a shorter, different name or value. */
static bool escaped_nul_at(const char *text, size_t len, size_t i)
{
	return len - i >= 6 && text[i + 1] == 'u' && !memcmp(text + i + 2, "0000", 4);
}

size_t sp_src_find_escaped_nul(const char *text, size_t len)
{
	bool in_string = false;

	for (size_t i = 0; i < len; i++) {
		if (!in_string)
			in_string = text[i] == '"';
		else if (text[i] == '\\' && escaped_nul_at(text, len, i))
			return i;
		else if (text[i] == '\\')
			i++;
		else if (text[i] == '"')
			in_string = false;
	}
	return len;
}

/* Nesting, container sizes and escaped NULs of the raw text, found before cJSON
 * recurses into it or allocates a node per value; *off is where the
 * first limit was crossed. */
static enum scan_result scan_structure(const char *text, size_t len,
				       const struct sp_source_limits *lim, size_t *off)
{
	enum scan_result res = SCAN_OK;
	size_t *members = NULL, depth = 0, cap = 0;
	bool in_string = false;

	for (size_t i = 0; i < len && res == SCAN_OK; i++) {
		char ch = text[i];

		*off = i;
		if (in_string) {
			if (ch == '\\' && escaped_nul_at(text, len, i))
				res = SCAN_NUL;
			else if (ch == '\\')
				i++;
			else if (ch == '"')
				in_string = false;
			continue;
		}
		if (ch == '"') {
			in_string = true;
		} else if (ch == '[' || ch == '{') {
			if (depth + 1 > lim->max_depth)
				res = SCAN_TOO_DEEP;
			else
				*(size_t *)sp_array_push(&members, &depth, &cap, sizeof(*members)) =
					1;
		} else if ((ch == ']' || ch == '}') && depth) {
			depth--;
		} else if (ch == ',' && depth && ++members[depth - 1] > lim->max_items) {
			res = SCAN_TOO_MANY;
		}
	}
	free(members);
	return res;
}

static bool only_space(const char *p, const char *end)
{
	for (; p < end; p++)
		if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
			return false;
	return true;
}

int sp_source_read_buffer(struct sp_cluster *c, const char *origin, const char *text, size_t len,
			  const struct sp_source_limits *lim, struct sp_diag *diag)
{
	struct sp_source_limits defaults;
	const char *end = NULL;
	size_t off, line, col;
	cJSON *root;
	int ret;

	if (!lim) {
		sp_source_limits_default(&defaults);
		lim = &defaults;
	}
	if (len > lim->max_file_bytes) {
		sp_diag_error(diag, "%s: %zu bytes, over the max_file_bytes limit of %zu", origin,
			      len, lim->max_file_bytes);
		return -1;
	}
	switch (scan_structure(text, len, lim, &off)) {
	case SCAN_OK:
		break;
	case SCAN_TOO_DEEP:
		line_col(text, off, &line, &col);
		sp_diag_error(diag,
			      "%s: line %zu column %zu: nested deeper than %zu levels (the "
			      "max_depth limit)",
			      origin, line, col, lim->max_depth);
		return -1;
	case SCAN_TOO_MANY:
		line_col(text, off, &line, &col);
		sp_diag_error(diag,
			      "%s: line %zu column %zu: more than %zu entries in one array or "
			      "object (the max_items limit)",
			      origin, line, col, lim->max_items);
		return -1;
	case SCAN_NUL:
		line_col(text, off, &line, &col);
		sp_diag_error(diag,
			      "%s: line %zu column %zu: a string holds \\u0000 (NUL), which no "
			      "Kubernetes name or value can hold",
			      origin, line, col);
		return -1;
	}
	root = cJSON_ParseWithLengthOpts(text, len, &end, false);
	if (root && end && !only_space(end, text + len)) {
		cJSON_Delete(root);
		root = NULL;
	}
	if (!root) {
		off = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
		if (!end) {
			const char *e = cJSON_GetErrorPtr();

			off = e && e >= text && e <= text + len ? (size_t)(e - text) : 0;
		}
		line_col(text, off, &line, &col);
		sp_diag_error(diag, "%s: not JSON: parse error at line %zu column %zu", origin,
			      line, col);
		return -1;
	}
	ret = sp_source_read_json(c, origin, root, lim, diag);
	cJSON_Delete(root);
	return ret;
}

static int read_fd(struct sp_cluster *c, const char *path, int fd,
		   const struct sp_source_limits *lim, struct sp_diag *diag)
{
	size_t cap = 65536, len = 0;
	struct stat st;
	char *text;
	int ret;

	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
		if ((uintmax_t)st.st_size > lim->max_file_bytes) {
			sp_diag_error(diag, "%s: %jd bytes, over the max_file_bytes limit of %zu",
				      path, (intmax_t)st.st_size, lim->max_file_bytes);
			return -1;
		}
		cap = (size_t)st.st_size + 1;
	}
	text = sp_xmalloc(cap);
	for (;;) {
		ssize_t n;

		if (len == cap) {
			if (cap > lim->max_file_bytes) {
				sp_diag_error(diag,
					      "%s: more than %zu bytes (the max_file_bytes limit)",
					      path, lim->max_file_bytes);
				free(text);
				return -1;
			}
			cap *= 2;
			text = sp_xrealloc(text, cap);
		}
		n = read(fd, text + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			sp_diag_error(diag, "%s: cannot read: %s", path, strerror(errno));
			free(text);
			return -1;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	ret = sp_source_read_buffer(c, path, text, len, lim, diag);
	free(text);
	return ret;
}

static int read_file(struct sp_cluster *c, const char *path, const struct sp_source_limits *lim,
		     struct sp_diag *diag)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int ret;

	if (fd < 0) {
		sp_diag_error(diag, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	ret = read_fd(c, path, fd, lim, diag);
	close(fd);
	return ret;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_json_name(const char *name)
{
	size_t n = strlen(name);

	return name[0] != '.' && n > 5 && !strcmp(name + n - 5, ".json");
}

static int read_dir(struct sp_cluster *c, const char *path, const struct sp_source_limits *lim,
		    struct sp_diag *diag)
{
	DIR *dir = opendir(path);
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	int ret = 0;

	if (!dir) {
		sp_diag_error(diag, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	while ((de = readdir(dir)))
		if (is_json_name(de->d_name))
			*(char **)sp_array_push(&names, &n, &cap, sizeof(*names)) =
				sp_xstrdup(de->d_name);
	closedir(dir);
	if (n)
		qsort(names, n, sizeof(*names), cmp_names);
	else
		sp_diag_warn(diag, "%s: no *.json files in this directory", path);
	for (size_t i = 0; i < n; i++) {
		size_t plen = strlen(path);
		char *file = sp_xasprintf("%s%s%s", path, plen && path[plen - 1] == '/' ? "" : "/",
					  names[i]);
		struct stat st;

		if (stat(file, &st) == 0 && S_ISREG(st.st_mode))
			ret = worst(ret, read_file(c, file, lim, diag));
		free(file);
		free(names[i]);
	}
	free(names);
	return ret;
}

int sp_source_read_path(struct sp_cluster *c, const char *path, const struct sp_source_limits *lim,
			struct sp_diag *diag)
{
	struct src_marks from = {c->n_services, c->n_slices, c->n_nodes};
	struct sp_source_limits defaults;
	struct stat st;
	int ret;

	if (!lim) {
		sp_source_limits_default(&defaults);
		lim = &defaults;
	}
	if (stat(path, &st) < 0) {
		sp_diag_error(diag, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	if (S_ISDIR(st.st_mode))
		ret = read_dir(c, path, lim, diag);
	else
		ret = read_file(c, path, lim, diag);
	if (src_drop_duplicates(c, &from, diag))
		ret = worst(ret, 1);
	return ret;
}
