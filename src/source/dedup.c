/* An object defined twice across sources (the same Service in two files)
 * would be planned twice; the API server can hold only one. The first one
 * read wins and every later one is skipped with an error. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "source_internal.h"

struct key_view {
	const char *ns; /* "" for cluster-scoped kinds */
	const char *name;
	const char *origin;
};

typedef struct key_view (*key_of_fn)(const void *items, size_t i);

static uint64_t key_hash(const struct key_view *k)
{
	uint64_t h = 1469598103934665603ull;

	for (const char *p = k->ns; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	h = (h ^ '/') * 1099511628211ull;
	for (const char *p = k->name; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	return h;
}

/* keep[i] becomes false for every item at or after start whose key an
 * earlier item already has. Returns how many were marked. */
static size_t mark_duplicates(const void *items, size_t n, size_t start, key_of_fn key_of,
			      const char *kind, bool *keep, struct sp_diag *diag)
{
	size_t cap = 16, dropped = 0;
	size_t *slots;

	while (cap < n * 2)
		cap *= 2;
	slots = sp_xmalloc(cap * sizeof(*slots));
	for (size_t i = 0; i < cap; i++)
		slots[i] = SIZE_MAX;
	for (size_t i = 0; i < n; i++) {
		struct key_view k = key_of(items, i);
		size_t s = (size_t)key_hash(&k) & (cap - 1);

		keep[i] = true;
		for (; slots[s] != SIZE_MAX; s = (s + 1) & (cap - 1)) {
			struct key_view o = key_of(items, slots[s]);

			if (!strcmp(o.ns, k.ns) && !strcmp(o.name, k.name))
				break;
		}
		if (slots[s] == SIZE_MAX) {
			slots[s] = i;
			continue;
		}
		if (i < start)
			continue;
		keep[i] = false;
		dropped++;
		sp_diag_error(diag, "%s: %s %s%s%s: defined again (first read from %s); skipped",
			      k.origin, kind, k.ns, *k.ns ? "/" : "", k.name,
			      key_of(items, slots[s]).origin);
	}
	free(slots);
	return dropped;
}

static struct key_view service_key(const void *items, size_t i)
{
	const struct sp_service *s = (const struct sp_service *)items + i;

	return (struct key_view){s->namespace, s->name, s->origin};
}

static struct key_view slice_key(const void *items, size_t i)
{
	const struct sp_endpoint_slice *s = (const struct sp_endpoint_slice *)items + i;

	return (struct key_view){s->namespace, s->name, s->origin};
}

static struct key_view node_key(const void *items, size_t i)
{
	const struct sp_node *n = (const struct sp_node *)items + i;

	return (struct key_view){"", n->name, n->origin};
}

size_t src_drop_duplicates(struct sp_cluster *c, const struct src_marks *from, struct sp_diag *diag)
{
	size_t dropped = 0, j;
	bool *keep;

	keep = sp_xcalloc(c->n_services + 1, sizeof(*keep));
	if (mark_duplicates(c->services, c->n_services, from->services, service_key, "Service",
			    keep, diag)) {
		for (size_t i = j = 0; i < c->n_services; i++) {
			if (keep[i]) {
				c->services[j++] = c->services[i];
			} else {
				sp_service_clear(&c->services[i]);
				dropped++;
			}
		}
		c->n_services = j;
	}
	free(keep);
	keep = sp_xcalloc(c->n_slices + 1, sizeof(*keep));
	if (mark_duplicates(c->slices, c->n_slices, from->slices, slice_key, "EndpointSlice", keep,
			    diag)) {
		for (size_t i = j = 0; i < c->n_slices; i++) {
			if (keep[i]) {
				c->slices[j++] = c->slices[i];
			} else {
				sp_slice_clear(&c->slices[i]);
				dropped++;
			}
		}
		c->n_slices = j;
	}
	free(keep);
	keep = sp_xcalloc(c->n_nodes + 1, sizeof(*keep));
	if (mark_duplicates(c->nodes, c->n_nodes, from->nodes, node_key, "Node", keep, diag)) {
		for (size_t i = j = 0; i < c->n_nodes; i++) {
			if (keep[i]) {
				c->nodes[j++] = c->nodes[i];
			} else {
				sp_node_clear(&c->nodes[i]);
				dropped++;
			}
		}
		c->n_nodes = j;
	}
	free(keep);
	return dropped;
}
