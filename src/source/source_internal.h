/* Shared by the source readers only: one object's reading context and the
 * typed getters that turn every JSON type mismatch into a located error. */
#ifndef SVCPROXY_SOURCE_INTERNAL_H
#define SVCPROXY_SOURCE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "svcproxy/diag.h"
#include "svcproxy/source.h"
#include "svcproxy/util.h"

/* Longest field path and value text put into a message. */
#define SRC_PATH_MAX 192

/* The object being read: every error names origin, kind, identity. */
struct src_ctx {
	const char *origin;
	const char *kind; /* "Service", "EndpointSlice", "Node", "object" */
	char ident[320];  /* "ns/name", "name" or "items[3]" */
	const struct sp_source_limits *lim;
	struct sp_diag *diag;
	unsigned n_errors;
};

/* Formats a field path into a SRC_PATH_MAX buffer; long paths are cut. */
void src_path(char *out, const char *fmt, ...) SP_PRINTF(2, 3);
void src_error(struct src_ctx *x, const char *path, const char *fmt, ...) SP_PRINTF(3, 4);
/* Human text of a JSON value for a message: strings quoted and escaped,
 * anything long cut short. Returns buf. */
const char *src_value_text(const cJSON *v, char *buf, size_t size);
/* Same for a C string. */
const char *src_string_text(const char *s, char *buf, size_t size);

/* Getters: absent or null gives false without an error; a value of the
 * wrong type gives false with an error at "base.key". */
const cJSON *src_get(const cJSON *parent, const char *key);
bool src_get_object(struct src_ctx *x, const cJSON *parent, const char *base, const char *key,
		    const cJSON **out);
/* Arrays longer than lim->max_items are an error naming the limit. */
bool src_get_array(struct src_ctx *x, const cJSON *parent, const char *base, const char *key,
		   const cJSON **out);
bool src_get_string(struct src_ctx *x, const cJSON *parent, const char *base, const char *key,
		    const char **out);
bool src_get_bool(struct src_ctx *x, const cJSON *parent, const char *base, const char *key,
		  bool *out);
/* An integer in [min, max]; outside it "<value> <what>" (e.g. "is not a port"). */
bool src_get_int(struct src_ctx *x, const cJSON *parent, const char *base, const char *key,
		 long min, long max, const char *what, long *out);

/* Value checks on a value already known to be there. */
bool src_is_string(struct src_ctx *x, const cJSON *v, const char *path);
bool src_check_array_size(struct src_ctx *x, const cJSON *arr, const char *path);
/* Text that is safe to carry into rules, comments and messages: valid
 * UTF-8 without control characters, at most max_len bytes. */
bool src_check_text(struct src_ctx *x, const char *s, size_t max_len, const char *path);
/* Kubernetes name rules: RFC 1123 label, RFC 1123 subdomain, RFC 1035
 * label, label value. */
bool src_check_dns_label(struct src_ctx *x, const char *s, const char *path);
bool src_check_dns_subdomain(struct src_ctx *x, const char *s, const char *path);
bool src_check_dns1035_label(struct src_ctx *x, const char *s, const char *path);
bool src_check_label_value(struct src_ctx *x, const char *s, const char *path);

/* Parses an address, complaining at path when it is not one. */
bool src_parse_addr(struct src_ctx *x, const cJSON *v, const char *path, struct sp_addr *out);
/* A CIDR as kube-proxy accepts it: spaces around tolerated, host bits
 * cleared (Go's ParseCIDR). */
bool src_parse_cidr_loose(const char *text, struct sp_cidr *out);

const char *src_family_name(int family);
/* "IPv4" / "IPv6" to AF_*; 0 if neither. */
int src_family_parse(const char *s);

/* Object readers. Each adds its object to c, or reports and drops it.
 * Return 0 read, 1 skipped. */
int src_read_service(struct sp_cluster *c, struct src_ctx *x, const cJSON *obj);
int src_read_slice(struct sp_cluster *c, struct src_ctx *x, const cJSON *obj);
int src_read_node(struct sp_cluster *c, struct src_ctx *x, const cJSON *obj);

/* Reads metadata.name (and namespace when namespaced) into *name, *ns and
 * fills x->ident. False (with errors) when required parts are missing. */
bool src_read_metadata(struct src_ctx *x, const cJSON *obj, bool namespaced, const char **ns,
		       const char **name);
/* Names the object in x->ident from its metadata, without judging it. */
void src_set_ident(struct src_ctx *x, const cJSON *obj, bool namespaced);
/* metadata.labels[key] / metadata.annotations[key] as a string, or NULL. */
const char *src_get_label(struct src_ctx *x, const cJSON *obj, const char *map, const char *key);

/* Where a read started, so that only what it added is checked. */
struct src_marks {
	size_t services, slices, nodes;
};

/* Skips (with an error each) objects added since from whose kind and
 * namespace/name an earlier object has; returns how many. */
size_t src_drop_duplicates(struct sp_cluster *c, const struct src_marks *from,
			   struct sp_diag *diag);

#endif
