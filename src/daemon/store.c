#include "store.h"

#include <ctype.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TRIGGER_ANNOTATION "endpoints.kubernetes.io/last-change-trigger-time"

void sp_dstore_init(struct sp_dstore *s, const char *origin, const struct sp_source_limits *lim)
{
	memset(s, 0, sizeof(*s));
	s->origin = origin;
	s->lim = lim;
}

static void obj_clear(struct sp_dobj *o)
{
	free(o->key);
	free(o->text);
	sp_cluster_free(&o->model);
	sp_diag_free(&o->diag);
}

static void obj_decode(const struct sp_dstore *s, struct sp_dobj *o, const cJSON *obj)
{
	struct sp_source_limits def;

	if (!s->lim)
		sp_source_limits_default(&def);
	sp_cluster_init(&o->model);
	sp_diag_init(&o->diag);
	o->result = sp_source_read_json(&o->model, s->origin ? s->origin : "", obj,
					s->lim ? s->lim : &def, &o->diag);
}

cJSON *sp_dobj_decode(const struct sp_dobj *o)
{
	return cJSON_Parse(o->text);
}

void sp_dstore_free(struct sp_dstore *s)
{
	for (size_t i = 0; i < s->n; i++)
		obj_clear(&s->objs[i]);
	free(s->objs);
	sp_dstore_init(s, s->origin, s->lim);
}

void sp_dstore_swap(struct sp_dstore *a, struct sp_dstore *b)
{
	struct sp_dstore t = *a;

	*a = *b;
	*b = t;
}

enum sp_dkind sp_dkind_of(const char *kind)
{
	if (!kind)
		return SP_DKIND_OTHER;
	if (!strcmp(kind, "Service"))
		return SP_DKIND_SERVICE;
	if (!strcmp(kind, "EndpointSlice"))
		return SP_DKIND_SLICE;
	if (!strcmp(kind, "Node"))
		return SP_DKIND_NODE;
	return SP_DKIND_OTHER;
}

/* "metadata.name" style lookup of a string member. */
const char *sp_djson_str(const cJSON *obj, const char *path)
{
	const char *dot;

	while (obj && (dot = strchr(path, '.'))) {
		char part[64];
		size_t len = (size_t)(dot - path);

		if (len >= sizeof(part))
			return NULL;
		memcpy(part, path, len);
		part[len] = '\0';
		obj = cJSON_GetObjectItemCaseSensitive(obj, part);
		path = dot + 1;
	}
	obj = obj ? cJSON_GetObjectItemCaseSensitive(obj, path) : NULL;
	return cJSON_IsString(obj) ? obj->valuestring : NULL;
}

static char *key_of(const cJSON *obj)
{
	const char *kind = sp_djson_str(obj, "kind");
	const char *ns = sp_djson_str(obj, "metadata.namespace");
	const char *name = sp_djson_str(obj, "metadata.name");

	return sp_xasprintf("%s/%s/%s", kind ? kind : "", ns ? ns : "", name ? name : "");
}

/* Index of key, or of where it would go (*found false). */
static size_t find(const struct sp_dstore *s, const char *key, bool *found)
{
	return sp_sorted_find_str(s->objs, s->n, sizeof(*s->objs), offsetof(struct sp_dobj, key),
				  key, found);
}

void sp_dtriggers_free(struct sp_dtriggers *t)
{
	free(t->at);
	t->at = NULL;
	t->n = t->cap = 0;
}

int64_t sp_dtime_parse(const char *s)
{
	struct tm tm = {0};
	const char *rest;
	int64_t frac = 0, scale = 100000000;

	if (!s || !(rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm)))
		return 0;
	if (*rest == '.')
		for (rest++; isdigit((unsigned char)*rest); rest++, scale /= 10)
			frac += (*rest - '0') * scale;
	/* The API server writes UTC ("Z"); an offset is not worth a guess. */
	if (*rest != 'Z')
		return 0;
	return (int64_t)timegm(&tm) * 1000000000 + frac;
}

/* An annotation's value (keys hold dots, so no sp_djson_str path). */
static int64_t trigger_of(const cJSON *obj)
{
	const cJSON *md = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(
		cJSON_GetObjectItemCaseSensitive(md, "annotations"), TRIGGER_ANNOTATION);

	return cJSON_IsString(v) ? sp_dtime_parse(v->valuestring) : 0;
}

/* trigger_ns: the changed object's own time, 0 none (a deletion). */
static void count(struct sp_dchanges *ch, enum sp_dkind kind, int64_t trigger_ns)
{
	struct sp_dtriggers *t;

	if (!ch)
		return;
	if (kind == SP_DKIND_SERVICE)
		ch->services++;
	else if (kind == SP_DKIND_SLICE)
		ch->slices++;
	else if (kind == SP_DKIND_NODE)
		ch->nodes++;
	t = ch->trig;
	if (!t || (kind != SP_DKIND_SERVICE && kind != SP_DKIND_SLICE))
		return;
	*(int64_t *)sp_array_push(&t->at, &t->n, &t->cap, sizeof(int64_t)) =
		trigger_ns && trigger_ns >= t->since_ns ? trigger_ns : t->fallback_ns;
}

/* Take prev's decoding of the same key and text, if it has one. */
static bool reuse(struct sp_dobj *o, struct sp_dstore *prev)
{
	bool found;
	size_t at;
	struct sp_dobj *p;

	if (!prev)
		return false;
	at = find(prev, o->key, &found);
	if (!found || strcmp(prev->objs[at].text, o->text))
		return false;
	p = &prev->objs[at];
	o->model = p->model;
	o->diag = p->diag;
	o->result = p->result;
	sp_cluster_init(&p->model);
	sp_diag_init(&p->diag);
	return true;
}

static bool put(struct sp_dstore *s, cJSON *obj, struct sp_dchanges *ch, struct sp_dstore *prev)
{
	char *key = key_of(obj);
	char *text = cJSON_PrintUnformatted(obj);
	enum sp_dkind kind = sp_dkind_of(sp_djson_str(obj, "kind"));
	bool found;
	size_t at = find(s, key, &found);
	struct sp_dobj *o;

	if (!text)
		abort(); /* cJSON only fails to print when out of memory */
	if (found) {
		o = &s->objs[at];
		free(key);
		if (!strcmp(o->text, text)) {
			free(text);
			cJSON_Delete(obj);
			return false;
		}
		free(o->text);
		sp_cluster_free(&o->model);
		sp_diag_free(&o->diag);
	} else {
		sp_array_push(&s->objs, &s->n, &s->cap, sizeof(*s->objs));
		memmove(&s->objs[at + 1], &s->objs[at], (s->n - 1 - at) * sizeof(*s->objs));
		o = &s->objs[at];
		o->key = key;
		o->kind = kind;
	}
	o->text = text;
	o->trigger_ns = trigger_of(obj);
	if (!reuse(o, prev))
		obj_decode(s, o, obj);
	cJSON_Delete(obj);
	count(ch, o->kind, o->trigger_ns);
	return true;
}

bool sp_dstore_put(struct sp_dstore *s, cJSON *obj, struct sp_dchanges *ch)
{
	return put(s, obj, ch, NULL);
}

const struct sp_dobj *sp_dstore_get(const struct sp_dstore *s, const cJSON *obj)
{
	char *key = key_of(obj);
	bool found;
	size_t at = find(s, key, &found);

	free(key);
	return found ? &s->objs[at] : NULL;
}

bool sp_dstore_del(struct sp_dstore *s, const cJSON *obj, struct sp_dchanges *ch)
{
	char *key = key_of(obj);
	bool found;
	size_t at = find(s, key, &found);

	free(key);
	if (!found)
		return false;
	count(ch, s->objs[at].kind, 0);
	obj_clear(&s->objs[at]);
	memmove(&s->objs[at], &s->objs[at + 1], (s->n - at - 1) * sizeof(*s->objs));
	s->n--;
	return true;
}

size_t sp_dstore_add_doc(struct sp_dstore *s, const cJSON *doc)
{
	cJSON *copy = cJSON_Duplicate(doc, true);
	size_t added;

	if (!copy && doc)
		abort(); /* cJSON only fails to copy when out of memory */
	added = sp_dstore_add_doc_from(s, copy, NULL);
	cJSON_Delete(copy);
	return added;
}

size_t sp_dstore_add_doc_from(struct sp_dstore *s, cJSON *doc, struct sp_dstore *prev)
{
	cJSON *items = cJSON_GetObjectItemCaseSensitive(doc, "items");
	cJSON *it, *next;
	size_t added = 0;

	if (!cJSON_IsArray(items)) {
		if (sp_dkind_of(sp_djson_str(doc, "kind")) == SP_DKIND_OTHER)
			return 0;
		put(s, cJSON_Duplicate(doc, true), NULL, prev);
		return 1;
	}
	for (it = items->child; it; it = next) {
		next = it->next;
		if (sp_dkind_of(sp_djson_str(it, "kind")) == SP_DKIND_OTHER)
			continue;
		put(s, cJSON_DetachItemViaPointer(items, it), NULL, prev);
		added++;
	}
	return added;
}

void sp_dstore_give_back(struct sp_dstore *s, struct sp_dstore *prev)
{
	for (size_t i = 0; i < s->n; i++) {
		struct sp_dobj *o = &s->objs[i], t;
		bool found;
		size_t at = find(prev, o->key, &found);

		if (!found || strcmp(prev->objs[at].text, o->text))
			continue;
		t = *o;
		o->model = prev->objs[at].model;
		o->diag = prev->objs[at].diag;
		o->result = prev->objs[at].result;
		prev->objs[at].model = t.model;
		prev->objs[at].diag = t.diag;
		prev->objs[at].result = t.result;
	}
}

void sp_dstore_diff(const struct sp_dstore *old_s, const struct sp_dstore *new_s,
		    struct sp_dchanges *ch)
{
	size_t i = 0, j = 0;

	while (i < old_s->n || j < new_s->n) {
		int c = i == old_s->n	? 1
			: j == new_s->n ? -1
					: strcmp(old_s->objs[i].key, new_s->objs[j].key);

		if (c < 0) {
			count(ch, old_s->objs[i++].kind, 0);
		} else if (c > 0) {
			count(ch, new_s->objs[j].kind, new_s->objs[j].trigger_ns);
			j++;
		} else {
			if (strcmp(old_s->objs[i].text, new_s->objs[j].text))
				count(ch, new_s->objs[j].kind, new_s->objs[j].trigger_ns);
			i++;
			j++;
		}
	}
}

int sp_dstore_fill(const struct sp_dstore *s, struct sp_cluster *c, struct sp_diag *diag)
{
	int worst = 0;

	for (size_t i = 0; i < s->n; i++) {
		const struct sp_dobj *o = &s->objs[i];

		for (size_t j = 0; j < o->model.n_services; j++)
			*sp_cluster_add_service(c) = o->model.services[j];
		for (size_t j = 0; j < o->model.n_slices; j++)
			*sp_cluster_add_slice(c) = o->model.slices[j];
		for (size_t j = 0; j < o->model.n_nodes; j++)
			*sp_cluster_add_node(c) = o->model.nodes[j];
		for (size_t j = 0; j < o->diag.n_msgs; j++)
			sp_diag_add(diag, o->diag.msgs[j].severity, "%s", o->diag.msgs[j].text);
		if (o->result < 0 || (o->result > worst && worst >= 0))
			worst = o->result;
	}
	return worst;
}

void sp_dcluster_release(struct sp_cluster *c)
{
	free(c->services);
	free(c->slices);
	free(c->nodes);
	memset(c, 0, sizeof(*c));
}

/* One pass over the raw text, strings and escapes as the reader's scan
 * reads them, counting only the members of the top-level "items" array. */
bool sp_djson_nul_items(const char *text, size_t len, size_t **bad, size_t *n_bad)
{
	size_t depth = 0, item = 0, arrays = 0, cap = 0, key_at = 0;
	bool in_string = false, in_items = false, key_is_items = false;

	*bad = NULL;
	*n_bad = 0;
	for (size_t i = 0; i < len; i++) {
		char c = text[i];

		if (in_string) {
			if (c == '"') {
				in_string = false;
				if (depth == 1)
					key_is_items = i - key_at == 5 &&
						       !memcmp(text + key_at, "items", 5);
			} else if (c == '\\' && len - i >= 6 && !memcmp(text + i + 1, "u0000", 5)) {
				if (!in_items || arrays > 1)
					goto refuse;
				if (!*n_bad || (*bad)[*n_bad - 1] != item)
					*(size_t *)sp_array_push(bad, n_bad, &cap, sizeof(**bad)) =
						item;
				i++;
			} else if (c == '\\') {
				i++;
			}
			continue;
		}
		if (c == '"') {
			in_string = true;
			key_at = i + 1;
		} else if (c == '{' || c == '[') {
			if (++depth == 2 && c == '[' && key_is_items) {
				in_items = true;
				arrays++;
				item = 0;
			}
		} else if (c == '}' || c == ']') {
			if (depth == 2)
				in_items = false;
			if (depth)
				depth--;
		} else if (c == ',' && depth == 2 && in_items) {
			item++;
		}
	}
	return true;
refuse:
	free(*bad);
	*bad = NULL;
	*n_bad = 0;
	return false;
}
