#include "svcproxy/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void sp_oom(size_t size)
{
	fprintf(stderr, "svcproxy: out of memory allocating %zu bytes\n", size);
	abort();
}

void *sp_xmalloc(size_t size)
{
	void *p = malloc(size ? size : 1);

	if (!p)
		sp_oom(size);
	return p;
}

void *sp_xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (!p)
		sp_oom(n * size);
	return p;
}

void *sp_xrealloc(void *ptr, size_t size)
{
	void *p = realloc(ptr, size ? size : 1);

	if (!p)
		sp_oom(size);
	return p;
}

char *sp_xstrdup(const char *s)
{
	return sp_xstrndup(s, strlen(s));
}

char *sp_xstrndup(const char *s, size_t n)
{
	char *p = sp_xmalloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *sp_xasprintf(const char *fmt, ...)
{
	struct sp_buf b;
	va_list ap;

	sp_buf_init(&b);
	va_start(ap, fmt);
	sp_buf_vaddf(&b, fmt, ap);
	va_end(ap);
	return sp_buf_steal(&b);
}

void *sp_array_push(void *items_ptr, size_t *n, size_t *cap, size_t elem_size)
{
	void **items = items_ptr;
	char *slot;

	if (*n == *cap) {
		size_t new_cap = *cap ? *cap * 2 : 4;

		if (new_cap > SIZE_MAX / elem_size)
			sp_oom(SIZE_MAX);
		*items = sp_xrealloc(*items, new_cap * elem_size);
		*cap = new_cap;
	}
	slot = (char *)*items + *n * elem_size;
	memset(slot, 0, elem_size);
	(*n)++;
	return slot;
}

void sp_buf_init(struct sp_buf *b)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void sp_buf_free(struct sp_buf *b)
{
	free(b->data);
	sp_buf_init(b);
}

void sp_buf_reset(struct sp_buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

static void sp_buf_reserve(struct sp_buf *b, size_t extra)
{
	size_t need = b->len + extra + 1;

	if (need <= b->cap)
		return;
	if (need < 2 * b->cap)
		need = 2 * b->cap;
	if (need < 64)
		need = 64;
	b->data = sp_xrealloc(b->data, need);
	b->cap = need;
}

void sp_buf_addn(struct sp_buf *b, const char *s, size_t n)
{
	sp_buf_reserve(b, n);
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void sp_buf_add(struct sp_buf *b, const char *s)
{
	sp_buf_addn(b, s, strlen(s));
}

void sp_buf_vaddf(struct sp_buf *b, const char *fmt, va_list ap)
{
	va_list copy;
	int n;

	va_copy(copy, ap);
	n = vsnprintf(NULL, 0, fmt, copy);
	va_end(copy);
	if (n < 0)
		return;
	sp_buf_reserve(b, (size_t)n);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
}

void sp_buf_addf(struct sp_buf *b, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	sp_buf_vaddf(b, fmt, ap);
	va_end(ap);
}

void sp_buf_add_json_string(struct sp_buf *b, const char *s)
{
	const char *run = s ? s : "";

	sp_buf_add(b, "\"");
	for (const char *c = run;; c++) {
		unsigned char ch = (unsigned char)*c;

		if (ch && ch >= 0x20 && ch != '"' && ch != '\\')
			continue;
		sp_buf_addn(b, run, (size_t)(c - run));
		if (!ch)
			break;
		if (ch == '"' || ch == '\\')
			sp_buf_addf(b, "\\%c", ch);
		else
			sp_buf_addf(b, "\\u%04x", ch);
		run = c + 1;
	}
	sp_buf_add(b, "\"");
}

char *sp_buf_steal(struct sp_buf *b)
{
	char *s = b->data ? b->data : sp_xstrdup("");

	sp_buf_init(b);
	return s;
}

bool sp_addr_parse(const char *text, struct sp_addr *out)
{
	memset(out, 0, sizeof(*out));
	if (!text)
		return false;
	if (inet_pton(AF_INET, text, &out->u.v4) == 1) {
		out->family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, text, &out->u.v6) == 1) {
		out->family = AF_INET6;
		return true;
	}
	memset(out, 0, sizeof(*out));
	return false;
}

const char *sp_addr_format(const struct sp_addr *a, char *buf)
{
	if (!a->family || !inet_ntop(a->family, &a->u, buf, SP_ADDRSTRLEN))
		strcpy(buf, "?");
	return buf;
}

size_t sp_addr_len(const struct sp_addr *a)
{
	if (a->family == AF_INET)
		return 4;
	if (a->family == AF_INET6)
		return 16;
	return 0;
}

int sp_addr_cmp(const struct sp_addr *a, const struct sp_addr *b)
{
	if (a->family != b->family)
		return a->family < b->family ? -1 : 1;
	return memcmp(&a->u, &b->u, sp_addr_len(a));
}

bool sp_addr_equal(const struct sp_addr *a, const struct sp_addr *b)
{
	return sp_addr_cmp(a, b) == 0;
}

bool sp_addr_is_special(const struct sp_addr *a)
{
	if (a->family == AF_INET) {
		uint32_t h = ntohl(a->u.v4.s_addr);

		return h == 0 || (h >> 24) == 127 || (h >> 28) == 0xe || h == 0xffffffffu;
	}
	if (a->family == AF_INET6)
		return IN6_IS_ADDR_UNSPECIFIED(&a->u.v6) || IN6_IS_ADDR_LOOPBACK(&a->u.v6) ||
		       IN6_IS_ADDR_MULTICAST(&a->u.v6);
	return true;
}

static bool sp_cidr_host_bits_clear(const struct sp_cidr *c)
{
	size_t len = sp_addr_len(&c->addr);

	for (size_t bit = c->prefix; bit < len * 8; bit++)
		if (c->addr.u.bytes[bit / 8] & (0x80 >> (bit % 8)))
			return false;
	return true;
}

bool sp_cidr_parse(const char *text, struct sp_cidr *out)
{
	const char *slash;
	char addr[SP_ADDRSTRLEN];
	long prefix;

	memset(out, 0, sizeof(*out));
	if (!text)
		return false;
	slash = strchr(text, '/');
	if (!slash) {
		if (!sp_addr_parse(text, &out->addr))
			return false;
		out->prefix = (unsigned)sp_addr_len(&out->addr) * 8;
		return true;
	}
	if ((size_t)(slash - text) >= sizeof(addr))
		return false;
	memcpy(addr, text, (size_t)(slash - text));
	addr[slash - text] = '\0';
	if (!sp_addr_parse(addr, &out->addr))
		return false;
	if (!sp_parse_long(slash + 1, 0, (long)sp_addr_len(&out->addr) * 8, &prefix))
		return false;
	out->prefix = (unsigned)prefix;
	return sp_cidr_host_bits_clear(out);
}

const char *sp_cidr_format(const struct sp_cidr *c, char *buf)
{
	char a[SP_ADDRSTRLEN];

	snprintf(buf, SP_CIDRSTRLEN, "%s/%u", sp_addr_format(&c->addr, a), c->prefix);
	return buf;
}

bool sp_cidr_contains(const struct sp_cidr *c, const struct sp_addr *a)
{
	if (c->addr.family != a->family)
		return false;
	for (unsigned bit = 0; bit < c->prefix; bit++) {
		uint8_t mask = 0x80 >> (bit % 8);

		if ((c->addr.u.bytes[bit / 8] & mask) != (a->u.bytes[bit / 8] & mask))
			return false;
	}
	return true;
}

int sp_cidr_cmp(const struct sp_cidr *a, const struct sp_cidr *b)
{
	int r = sp_addr_cmp(&a->addr, &b->addr);

	if (r)
		return r;
	return a->prefix < b->prefix ? -1 : a->prefix > b->prefix;
}

uint8_t sp_proto_parse(const char *name)
{
	if (!name)
		return 0;
	if (!strcmp(name, "TCP"))
		return IPPROTO_TCP;
	if (!strcmp(name, "UDP"))
		return IPPROTO_UDP;
	if (!strcmp(name, "SCTP"))
		return IPPROTO_SCTP;
	return 0;
}

const char *sp_proto_name(uint8_t proto)
{
	switch (proto) {
	case IPPROTO_TCP:
		return "TCP";
	case IPPROTO_UDP:
		return "UDP";
	case IPPROTO_SCTP:
		return "SCTP";
	}
	return "?";
}

const char *sp_proto_name_lower(uint8_t proto)
{
	switch (proto) {
	case IPPROTO_TCP:
		return "tcp";
	case IPPROTO_UDP:
		return "udp";
	case IPPROTO_SCTP:
		return "sctp";
	}
	return "?";
}

bool sp_parse_long(const char *text, long min, long max, long *out)
{
	char *end;
	long v;

	if (!text || !*text || (*text != '-' && (*text < '0' || *text > '9')))
		return false;
	errno = 0;
	v = strtol(text, &end, 10);
	if (errno || *end || v < min || v > max)
		return false;
	*out = v;
	return true;
}

int sp_strcmp_null(const char *a, const char *b)
{
	if (!a || !b)
		return a ? 1 : (b ? -1 : 0);
	return strcmp(a, b);
}

size_t sp_sorted_find_str(const void *items, size_t n, size_t elem_size, size_t field_offset,
			  const char *key, bool *found)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const char *elem = (const char *)items + mid * elem_size;
		int c = strcmp(*(const char *const *)(elem + field_offset), key);

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
