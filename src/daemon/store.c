#include "store.h"

#include <stdlib.h>
#include <string.h>

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
	size_t lo = 0, hi = s->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(s->objs[mid].key, key);

		if (!c) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

static void count(struct sp_dchanges *ch, enum sp_dkind kind)
{
	if (!ch)
		return;
	if (kind == SP_DKIND_SERVICE)
		ch->services++;
	else if (kind == SP_DKIND_SLICE)
		ch->slices++;
	else if (kind == SP_DKIND_NODE)
		ch->nodes++;
}

bool sp_dstore_put(struct sp_dstore *s, cJSON *obj, struct sp_dchanges *ch)
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
	obj_decode(s, o, obj);
	cJSON_Delete(obj);
	count(ch, o->kind);
	return true;
}

bool sp_dstore_del(struct sp_dstore *s, const cJSON *obj, struct sp_dchanges *ch)
{
	char *key = key_of(obj);
	bool found;
	size_t at = find(s, key, &found);

	free(key);
	if (!found)
		return false;
	count(ch, s->objs[at].kind);
	obj_clear(&s->objs[at]);
	memmove(&s->objs[at], &s->objs[at + 1], (s->n - at - 1) * sizeof(*s->objs));
	s->n--;
	return true;
}

size_t sp_dstore_add_doc(struct sp_dstore *s, const cJSON *doc)
{
	const cJSON *items = cJSON_GetObjectItemCaseSensitive(doc, "items");
	const cJSON *it;
	size_t added = 0;

	if (!cJSON_IsArray(items)) {
		if (sp_dkind_of(sp_djson_str(doc, "kind")) == SP_DKIND_OTHER)
			return 0;
		sp_dstore_put(s, cJSON_Duplicate(doc, true), NULL);
		return 1;
	}
	cJSON_ArrayForEach(it, items)
	{
		if (sp_dkind_of(sp_djson_str(it, "kind")) == SP_DKIND_OTHER)
			continue;
		sp_dstore_put(s, cJSON_Duplicate(it, true), NULL);
		added++;
	}
	return added;
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
			count(ch, old_s->objs[i++].kind);
		} else if (c > 0) {
			count(ch, new_s->objs[j++].kind);
		} else {
			if (strcmp(old_s->objs[i].text, new_s->objs[j].text))
				count(ch, new_s->objs[j].kind);
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
