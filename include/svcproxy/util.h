/* Small helpers every module uses: memory, growable arrays, text buffers,
 * addresses. Nothing here knows about Kubernetes or the kernel. */
#ifndef SVCPROXY_UTIL_H
#define SVCPROXY_UTIL_H

#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SP_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define SP_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* Allocation failure aborts with a message: an agent that cannot allocate a
 * few bytes cannot program anything either, and systemd or the DaemonSet
 * restarts it with its kernel state intact. This keeps every caller free of
 * unreachable error paths. */
void *sp_xmalloc(size_t size);
void *sp_xcalloc(size_t n, size_t size);
void *sp_xrealloc(void *ptr, size_t size);
char *sp_xstrdup(const char *s);
char *sp_xstrndup(const char *s, size_t n);
char *sp_xasprintf(const char *fmt, ...) SP_PRINTF(1, 2);

/* Make room for one more element in *items (count *n, capacity *cap) and
 * return a pointer to the new, zeroed slot; *n is incremented. */
void *sp_array_push(void *items_ptr, size_t *n, size_t *cap, size_t elem_size);

/* A growable NUL-terminated text buffer, used by every printer. */
struct sp_buf {
	char *data;
	size_t len;
	size_t cap;
};

void sp_buf_init(struct sp_buf *b);
void sp_buf_free(struct sp_buf *b);
void sp_buf_reset(struct sp_buf *b);
void sp_buf_add(struct sp_buf *b, const char *s);
void sp_buf_addn(struct sp_buf *b, const char *s, size_t n);
void sp_buf_addf(struct sp_buf *b, const char *fmt, ...) SP_PRINTF(2, 3);
void sp_buf_vaddf(struct sp_buf *b, const char *fmt, va_list ap);
/* s (NULL as "") as a JSON string, quotes included, control characters,
 * quote and backslash escaped. */
void sp_buf_add_json_string(struct sp_buf *b, const char *s);
/* Hand the text to the caller, who frees it; the buffer is left empty. */
char *sp_buf_steal(struct sp_buf *b);

/* An IPv4 or IPv6 address. family is AF_INET or AF_INET6; 0 means unset. */
struct sp_addr {
	int family;
	union {
		struct in_addr v4;
		struct in6_addr v6;
		uint8_t bytes[16];
	} u;
};

#define SP_ADDRSTRLEN 46 /* INET6_ADDRSTRLEN */

struct sp_cidr {
	struct sp_addr addr; /* host bits cleared */
	unsigned prefix;
};

#define SP_CIDRSTRLEN (SP_ADDRSTRLEN + 4)

bool sp_addr_parse(const char *text, struct sp_addr *out);
/* Returns buf, which must hold SP_ADDRSTRLEN bytes. */
const char *sp_addr_format(const struct sp_addr *a, char *buf);
int sp_addr_cmp(const struct sp_addr *a, const struct sp_addr *b);
bool sp_addr_equal(const struct sp_addr *a, const struct sp_addr *b);
size_t sp_addr_len(const struct sp_addr *a); /* 4, 16 or 0 */
/* Unspecified, loopback, multicast or broadcast: never a Service address. */
bool sp_addr_is_special(const struct sp_addr *a);

/* "10.0.0.0/8", "fd00::/64"; a bare address is a host prefix. Host bits set
 * are rejected, as the API server does. */
bool sp_cidr_parse(const char *text, struct sp_cidr *out);
const char *sp_cidr_format(const struct sp_cidr *c, char *buf);
bool sp_cidr_contains(const struct sp_cidr *c, const struct sp_addr *a);
int sp_cidr_cmp(const struct sp_cidr *a, const struct sp_cidr *b);

/* IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP; 0 if unknown. */
uint8_t sp_proto_parse(const char *name);
const char *sp_proto_name(uint8_t proto);	/* "TCP" */
const char *sp_proto_name_lower(uint8_t proto); /* "tcp" */

/* Strict decimal integer in [min, max]; false on anything else. */
bool sp_parse_long(const char *text, long min, long max, long *out);

int sp_strcmp_null(const char *a, const char *b);

/* Binary search in n elements of elem_size bytes sorted by the string that
 * the char * at field_offset of each points to: the index of key, or where
 * it would be inserted (*found false). */
size_t sp_sorted_find_str(const void *items, size_t n, size_t elem_size, size_t field_offset,
			  const char *key, bool *found);

#endif
