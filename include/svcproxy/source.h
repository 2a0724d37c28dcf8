/* Sources: Kubernetes JSON (one object, a v1 List, or `kubectl get -o json`
 * output) read into the model. */
#ifndef SVCPROXY_SOURCE_H
#define SVCPROXY_SOURCE_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "svcproxy/diag.h"
#include "svcproxy/model.h"

/* Limits against hostile input; a file or object beyond them is rejected
 * with an error naming the limit. */
struct sp_source_limits {
	size_t max_file_bytes; /* default 64 MiB */
	size_t max_depth;      /* JSON nesting, default 64 */
	size_t max_items;      /* objects, ports, endpoints per array, default 100000 */
};

void sp_source_limits_default(struct sp_source_limits *lim);

/* Result of reading: 0 everything was read; 1 some objects were skipped
 * (each with an error in diag: file, object, field path, value); -1 a file
 * was rejected whole (unreadable, not JSON, over a limit). Objects of kinds
 * svcproxy does not use are ignored silently. */
int sp_source_read_path(struct sp_cluster *c, const char *path, const struct sp_source_limits *lim,
			struct sp_diag *diag);
int sp_source_read_buffer(struct sp_cluster *c, const char *origin, const char *text, size_t len,
			  const struct sp_source_limits *lim, struct sp_diag *diag);
/* One decoded object (a Service, EndpointSlice or Node, or a List of them),
 * as the API watch delivers them. */
int sp_source_read_json(struct sp_cluster *c, const char *origin, const cJSON *obj,
			const struct sp_source_limits *lim, struct sp_diag *diag);

/* Helpers other modules may reuse (appended by the source module). */

/* Go's time.ParseDuration text ("30s", "1m30s", "500ms", "0") in
 * milliseconds, sub-millisecond rest dropped. False when malformed,
 * negative, or longer than UINT32_MAX milliseconds. */
bool sp_src_parse_duration_ms(const char *text, uint64_t *ms);

/* Offset of the first "\u0000" escape inside a JSON string of text, or len
 * when there is none. cJSON ends the string there and hands back a shorter,
 * different name or value, so a caller that parses text itself (a watch
 * stream) refuses such text; sp_source_read_buffer() already does. */
size_t sp_src_find_escaped_nul(const char *text, size_t len);

#endif
