/* A set of Kubernetes objects as the sources last saw them, keyed by kind,
 * namespace and name. Both sources keep their state here: a watched file's
 * last good content, the API server's listed and watched objects. The model
 * is rebuilt from these raw objects at each sync, so a source never has to
 * patch the model in place. */
#ifndef SP_DAEMON_STORE_H
#define SP_DAEMON_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "svcproxy/diag.h"
#include "svcproxy/model.h"
#include "svcproxy/source.h"

enum sp_dkind {
	SP_DKIND_OTHER,
	SP_DKIND_SERVICE,
	SP_DKIND_SLICE,
	SP_DKIND_NODE,
};

struct sp_dobj {
	char *key; /* "kind/namespace/name" */
	enum sp_dkind kind;
	/* The object as compact JSON (a fraction of a cJSON tree's memory):
	 * equal text tells a repeat from a change. */
	char *text;
	/* Decoded once, when the object changed; each sync borrows it, so a
	 * sync costs no JSON decoding however many objects there are. */
	struct sp_cluster model;
	struct sp_diag diag; /* what decoding reported, replayed at each sync */
	int result;	     /* sp_source_read_json's */
	/* CLOCK_REALTIME of endpoints.kubernetes.io/last-change-trigger-time,
	 * 0 when absent: when the change was made, for the network
	 * programming latency. */
	int64_t trigger_ns;
};

struct sp_dstore {
	struct sp_dobj *objs; /* sorted by key */
	size_t n, cap;
	const char *origin; /* for the reader's messages; not owned */
	const struct sp_source_limits *lim;
};

/* When each changed Service or EndpointSlice was changed: its trigger
 * annotation when present and not older than since_ns (kube-proxy ignores
 * changes made before it started), else fallback_ns (a file's mtime, an
 * event's arrival). Owned by whoever sets it up; sp_dtriggers_free. */
struct sp_dtriggers {
	int64_t *at; /* CLOCK_REALTIME */
	size_t n, cap;
	int64_t since_ns;
	int64_t fallback_ns;
};

/* Changes seen between two versions, by kind (kube-proxy's change metrics). */
struct sp_dchanges {
	size_t services;
	size_t slices;
	size_t nodes;
	struct sp_dtriggers *trig; /* NULL: times not wanted */
};

void sp_dtriggers_free(struct sp_dtriggers *t);
/* An RFC 3339 time (fractions of a second kept) as CLOCK_REALTIME ns; 0
 * when s is NULL or not such a time. */
int64_t sp_dtime_parse(const char *s);

void sp_dstore_init(struct sp_dstore *s, const char *origin, const struct sp_source_limits *lim);
/* Frees the objects; origin and limits stay. */
void sp_dstore_free(struct sp_dstore *s);
void sp_dstore_swap(struct sp_dstore *a, struct sp_dstore *b);
enum sp_dkind sp_dkind_of(const char *kind);

/* Store obj (it must carry kind and metadata.name) and free it. Returns true
 * when the store changed (new object, or different content); ch counts it. */
bool sp_dstore_put(struct sp_dstore *s, cJSON *obj, struct sp_dchanges *ch);
/* The stored object with obj's kind/namespace/name, or NULL. */
const struct sp_dobj *sp_dstore_get(const struct sp_dstore *s, const cJSON *obj);
/* Remove the object with obj's kind/namespace/name, if present. */
bool sp_dstore_del(struct sp_dstore *s, const cJSON *obj, struct sp_dchanges *ch);
/* Add every object of a decoded document (one object, a v1 List or
 * kubectl's list output); objects of other kinds are ignored. Returns the
 * number of objects added. */
size_t sp_dstore_add_doc(struct sp_dstore *s, const cJSON *doc);
/* The same, but the objects are moved out of doc's items (no copy; the
 * caller still deletes doc), and an object whose text equals its version in
 * prev takes prev's decoded model instead of being decoded again (prev
 * keeps key and text, enough for sp_dstore_diff). */
size_t sp_dstore_add_doc_from(struct sp_dstore *s, cJSON *doc, struct sp_dstore *prev);
/* Undo what sp_dstore_add_doc_from took from prev (s is about to be
 * dropped, prev stays in force): equal text, equal decoding, so the
 * decodings of every object both hold with the same text are swapped. */
void sp_dstore_give_back(struct sp_dstore *s, struct sp_dstore *prev);
/* Count the objects that differ between old and new, by kind. */
void sp_dstore_diff(const struct sp_dstore *old_s, const struct sp_dstore *new_s,
		    struct sp_dchanges *ch);
/* Add every object's decoded model to c, borrowed (c must be released with
 * sp_dcluster_release, never sp_cluster_free) and replay the decoding
 * messages into diag. Returns the worst sp_source_read_json result. */
int sp_dstore_fill(const struct sp_dstore *s, struct sp_cluster *c, struct sp_diag *diag);
/* Release a cluster filled by sp_dstore_fill: its arrays, not what they
 * borrow. */
void sp_dcluster_release(struct sp_cluster *c);
/* Decode a stored object; the caller deletes it. NULL only if out of memory. */
cJSON *sp_dobj_decode(const struct sp_dobj *o);
/* Read cJSON string member (NULL when absent or not a string). */
const char *sp_djson_str(const cJSON *obj, const char *path);
/* The items of a list's text that hold a "\u0000" escape (cJSON would cut
 * the string there), by index in its top-level "items" array: a sorted,
 * allocated array into *bad (NULL, *n_bad 0 when none). False when such an
 * escape is anywhere else (the list's own fields, a second "items" key):
 * then no item can be told apart. */
bool sp_djson_nul_items(const char *text, size_t len, size_t **bad, size_t *n_bad);

#endif
