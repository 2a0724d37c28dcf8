/* Typed access to JSON fields with located errors, and the Kubernetes
 * value rules (names, addresses) shared by every object reader. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "source_internal.h"

/* Longest value text quoted in a message. */
#define SRC_VALUE_SHOWN 64

void src_path(char *out, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(out, SRC_PATH_MAX, fmt, ap);
	va_end(ap);
}

void src_error(struct src_ctx *x, const char *path, const char *fmt, ...)
{
	struct sp_buf b;
	va_list ap;

	sp_buf_init(&b);
	sp_buf_addf(&b, "%s: %s%s%s: ", x->origin, x->kind, *x->ident ? " " : "", x->ident);
	if (path && *path)
		sp_buf_addf(&b, "%s: ", path);
	va_start(ap, fmt);
	sp_buf_vaddf(&b, fmt, ap);
	va_end(ap);
	sp_diag_error(x->diag, "%s", b.data);
	sp_buf_free(&b);
	x->n_errors++;
}

const char *src_string_text(const char *s, char *buf, size_t size)
{
	size_t o = 0, i;

	if (size < 16) {
		if (size)
			buf[0] = '\0';
		return buf;
	}
	buf[o++] = '"';
	for (i = 0; s[i] && o + 8 < size && i < SRC_VALUE_SHOWN; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '"' || ch == '\\')
			o += (size_t)snprintf(buf + o, size - o, "\\%c", ch);
		else if (ch < 0x20 || ch >= 0x7f)
			o += (size_t)snprintf(buf + o, size - o, "\\x%02x", ch);
		else
			buf[o++] = (char)ch;
	}
	if (s[i] && o + 4 < size) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

static void format_number(double d, char *buf, size_t size)
{
	if (isfinite(d) && d == floor(d) && fabs(d) < 1e18)
		snprintf(buf, size, "%.0f", d);
	else
		snprintf(buf, size, "%.17g", d);
}

const char *src_value_text(const cJSON *v, char *buf, size_t size)
{
	if (!v || cJSON_IsNull(v))
		snprintf(buf, size, "null");
	else if (cJSON_IsString(v))
		src_string_text(v->valuestring ? v->valuestring : "", buf, size);
	else if (cJSON_IsNumber(v))
		format_number(v->valuedouble, buf, size);
	else if (cJSON_IsTrue(v))
		snprintf(buf, size, "true");
	else if (cJSON_IsFalse(v))
		snprintf(buf, size, "false");
	else if (cJSON_IsArray(v))
		snprintf(buf, size, "[...]");
	else if (cJSON_IsObject(v))
		snprintf(buf, size, "{...}");
	else
		snprintf(buf, size, "?");
	return buf;
}

static void join_path(char *out, const char *base, const char *key)
{
	if (base && *base)
		snprintf(out, SRC_PATH_MAX, "%s.%s", base, key);
	else
		snprintf(out, SRC_PATH_MAX, "%s", key);
}

const cJSON *src_get(const cJSON *parent, const char *key)
{
	const cJSON *v;

	if (!parent || !cJSON_IsObject(parent))
		return NULL;
	v = cJSON_GetObjectItemCaseSensitive(parent, key);
	if (!v || cJSON_IsNull(v))
		return NULL;
	return v;
}

static void type_error(struct src_ctx *x, const cJSON *v, const char *base, const char *key,
		       const char *want)
{
	char path[SRC_PATH_MAX], val[128];

	join_path(path, base, key);
	src_error(x, path, "%s is not %s", src_value_text(v, val, sizeof(val)), want);
}

bool src_get_object(struct src_ctx *x, const cJSON *parent, const char *base, const char *key,
		    const cJSON **out)
{
	const cJSON *v = src_get(parent, key);

	*out = NULL;
	if (!v)
		return false;
	if (!cJSON_IsObject(v)) {
		type_error(x, v, base, key, "an object");
		return false;
	}
	*out = v;
	return true;
}

bool src_check_array_size(struct src_ctx *x, const cJSON *arr, const char *path)
{
	size_t n = 0;
	const cJSON *it;

	cJSON_ArrayForEach(it, arr)
	{
		if (++n > x->lim->max_items) {
			src_error(x, path, "more than %zu entries (the max_items limit)",
				  x->lim->max_items);
			return false;
		}
	}
	return true;
}

bool src_get_array(struct src_ctx *x, const cJSON *parent, const char *base, const char *key,
		   const cJSON **out)
{
	const cJSON *v = src_get(parent, key);
	char path[SRC_PATH_MAX];

	*out = NULL;
	if (!v)
		return false;
	if (!cJSON_IsArray(v)) {
		type_error(x, v, base, key, "an array");
		return false;
	}
	join_path(path, base, key);
	if (!src_check_array_size(x, v, path))
		return false;
	*out = v;
	return true;
}

bool src_is_string(struct src_ctx *x, const cJSON *v, const char *path)
{
	char val[128];

	if (cJSON_IsString(v) && v->valuestring)
		return true;
	src_error(x, path, "%s is not a string", src_value_text(v, val, sizeof(val)));
	return false;
}

bool src_get_string(struct src_ctx *x, const cJSON *parent, const char *base, const char *key,
		    const char **out)
{
	const cJSON *v = src_get(parent, key);
	char path[SRC_PATH_MAX];

	*out = NULL;
	if (!v)
		return false;
	join_path(path, base, key);
	if (!src_is_string(x, v, path))
		return false;
	*out = v->valuestring;
	return true;
}

bool src_get_bool(struct src_ctx *x, const cJSON *parent, const char *base, const char *key,
		  bool *out)
{
	const cJSON *v = src_get(parent, key);

	if (!v)
		return false;
	if (!cJSON_IsBool(v)) {
		type_error(x, v, base, key, "a boolean");
		return false;
	}
	*out = cJSON_IsTrue(v);
	return true;
}

bool src_get_int(struct src_ctx *x, const cJSON *parent, const char *base, const char *key,
		 long min, long max, const char *what, long *out)
{
	const cJSON *v = src_get(parent, key);
	char path[SRC_PATH_MAX], val[128];
	double d;

	if (!v)
		return false;
	if (!cJSON_IsNumber(v)) {
		type_error(x, v, base, key, "an integer");
		return false;
	}
	d = v->valuedouble;
	if (!isfinite(d) || d != floor(d) || d < (double)min || d > (double)max) {
		join_path(path, base, key);
		src_error(x, path, "%s %s", src_value_text(v, val, sizeof(val)), what);
		return false;
	}
	*out = (long)d;
	return true;
}

/* Length of the UTF-8 sequence at s, or 0 when it is not valid UTF-8
 * (overlong forms, surrogates and code points past U+10FFFF included). */
static size_t utf8_seq_len(const unsigned char *s)
{
	unsigned char c = s[0];

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		return (s[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		if ((s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80)
			return 0;
		if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] >= 0xa0))
			return 0;
		return 3;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		if ((s[1] & 0xc0) != 0x80 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
			return 0;
		if ((c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] >= 0x90))
			return 0;
		return 4;
	}
	return 0;
}

bool src_check_text(struct src_ctx *x, const char *s, size_t max_len, const char *path)
{
	const unsigned char *p = (const unsigned char *)s;
	char val[128];
	size_t len = 0;

	while (p[len]) {
		size_t n = utf8_seq_len(p + len);

		if (!n) {
			src_error(x, path, "%s is not valid UTF-8",
				  src_string_text(s, val, sizeof(val)));
			return false;
		}
		if (n == 1 && (p[len] < 0x20 || p[len] == 0x7f)) {
			src_error(x, path, "%s contains a control character",
				  src_string_text(s, val, sizeof(val)));
			return false;
		}
		len += n;
	}
	if (len > max_len) {
		src_error(x, path, "%s is longer than %zu bytes",
			  src_string_text(s, val, sizeof(val)), max_len);
		return false;
	}
	return true;
}

static bool is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* [a-z0-9]([-a-z0-9]*[a-z0-9])? over s[0..n). */
static bool dns_label_ok(const char *s, size_t n)
{
	if (n == 0 || n > 63 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
		return false;
	for (size_t i = 1; i + 1 < n; i++)
		if (!is_lower_alnum(s[i]) && s[i] != '-')
			return false;
	return true;
}

static bool name_error(struct src_ctx *x, const char *s, const char *path, const char *rule)
{
	char val[128];

	src_error(x, path, "%s is not a valid name (%s)", src_string_text(s, val, sizeof(val)),
		  rule);
	return false;
}

bool src_check_dns_label(struct src_ctx *x, const char *s, const char *path)
{
	if (dns_label_ok(s, strlen(s)))
		return true;
	return name_error(x, s, path, "lowercase RFC 1123 label, at most 63 characters");
}

bool src_check_dns_subdomain(struct src_ctx *x, const char *s, const char *path)
{
	size_t len = strlen(s);
	const char *p = s;

	if (len == 0 || len > 253)
		return name_error(x, s, path, "lowercase RFC 1123 subdomain");
	for (;;) {
		const char *dot = strchr(p, '.');
		size_t n = dot ? (size_t)(dot - p) : strlen(p);

		if (!dns_label_ok(p, n))
			return name_error(x, s, path, "lowercase RFC 1123 subdomain");
		if (!dot)
			return true;
		p = dot + 1;
	}
}

bool src_check_dns1035_label(struct src_ctx *x, const char *s, const char *path)
{
	if (s[0] >= 'a' && s[0] <= 'z' && dns_label_ok(s, strlen(s)))
		return true;
	return name_error(x, s, path,
			  "RFC 1035 label: lowercase letter first, at most 63 characters");
}

bool src_check_label_value(struct src_ctx *x, const char *s, const char *path)
{
	size_t n = strlen(s);
	char val[128];
	bool ok = n <= 63;

	if (ok && n > 0)
		ok = isalnum((unsigned char)s[0]) && isalnum((unsigned char)s[n - 1]);
	for (size_t i = 0; ok && i < n; i++)
		ok = isalnum((unsigned char)s[i]) || s[i] == '-' || s[i] == '_' || s[i] == '.';
	if (!ok)
		src_error(x, path, "%s is not a valid label value",
			  src_string_text(s, val, sizeof(val)));
	return ok;
}

bool src_parse_addr(struct src_ctx *x, const cJSON *v, const char *path, struct sp_addr *out)
{
	char val[128];

	if (!src_is_string(x, v, path))
		return false;
	if (sp_addr_parse(v->valuestring, out))
		return true;
	src_error(x, path, "%s is not an IP address", src_value_text(v, val, sizeof(val)));
	return false;
}

static void cidr_clear_host_bits(struct sp_cidr *c)
{
	size_t len = sp_addr_len(&c->addr);

	for (size_t i = 0; i < len; i++) {
		unsigned keep = c->prefix > i * 8 ? c->prefix - (unsigned)i * 8 : 0;

		if (keep < 8)
			c->addr.u.bytes[i] &= (uint8_t)(0xff00u >> keep);
	}
}

bool src_parse_cidr_loose(const char *text, struct sp_cidr *out)
{
	char buf[SP_CIDRSTRLEN + 1];
	const char *start = text, *end, *slash;
	long prefix;
	size_t n;

	memset(out, 0, sizeof(*out));
	while (*start == ' ' || *start == '\t')
		start++;
	end = start + strlen(start);
	while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	n = (size_t)(end - start);
	if (n == 0 || n >= sizeof(buf))
		return false;
	memcpy(buf, start, n);
	buf[n] = '\0';
	slash = strchr(buf, '/');
	if (!slash)
		return false;
	buf[slash - buf] = '\0';
	if (!sp_addr_parse(buf, &out->addr))
		return false;
	if (!sp_parse_long(slash + 1, 0, (long)sp_addr_len(&out->addr) * 8, &prefix))
		return false;
	out->prefix = (unsigned)prefix;
	cidr_clear_host_bits(out);
	return true;
}

const char *src_family_name(int family)
{
	return family == AF_INET ? "IPv4" : family == AF_INET6 ? "IPv6" : "unknown";
}

int src_family_parse(const char *s)
{
	if (!strcmp(s, "IPv4"))
		return AF_INET;
	if (!strcmp(s, "IPv6"))
		return AF_INET6;
	return 0;
}

static bool metadata_string(struct src_ctx *x, const cJSON *meta, const char *key, const char **out)
{
	const cJSON *v = src_get(meta, key);
	char path[SRC_PATH_MAX];

	*out = NULL;
	src_path(path, "metadata.%s", key);
	if (v && !src_is_string(x, v, path))
		return false;
	if (!v || !*v->valuestring) {
		src_error(x, path, "required value is missing");
		return false;
	}
	*out = v->valuestring;
	return true;
}

/* Printable, bounded copy of a name for the object's identity. */
static void ident_part(char *out, size_t size, const cJSON *v)
{
	size_t o = 0;

	if (!cJSON_IsString(v) || !*v->valuestring) {
		snprintf(out, size, "?");
		return;
	}
	for (const char *p = v->valuestring; *p && o + 4 < size; p++)
		out[o++] = ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f) ? '?' : *p;
	if (o + 4 >= size)
		out[o++] = '~';
	out[o] = '\0';
}

void src_set_ident(struct src_ctx *x, const cJSON *obj, bool namespaced)
{
	const cJSON *meta = src_get(obj, "metadata");
	char np[96], sp[96];

	if (!cJSON_IsObject(meta))
		return;
	ident_part(np, sizeof(np), src_get(meta, "name"));
	ident_part(sp, sizeof(sp), src_get(meta, "namespace"));
	if (namespaced)
		snprintf(x->ident, sizeof(x->ident), "%s/%s", sp, np);
	else
		snprintf(x->ident, sizeof(x->ident), "%s", np);
}

bool src_read_metadata(struct src_ctx *x, const cJSON *obj, bool namespaced, const char **ns,
		       const char **name)
{
	unsigned before = x->n_errors;
	const cJSON *meta, *map;

	*ns = NULL;
	*name = NULL;
	if (!src_get_object(x, obj, "", "metadata", &meta)) {
		if (x->n_errors == before)
			src_error(x, "metadata", "required value is missing");
		return false;
	}
	src_set_ident(x, obj, namespaced);
	if (metadata_string(x, meta, "name", name) &&
	    !src_check_text(x, *name, 253, "metadata.name"))
		*name = NULL;
	if (namespaced && metadata_string(x, meta, "namespace", ns) &&
	    !src_check_dns_label(x, *ns, "metadata.namespace"))
		*ns = NULL;
	src_get_object(x, meta, "metadata", "labels", &map);
	src_get_object(x, meta, "metadata", "annotations", &map);
	return x->n_errors == before && *name && (!namespaced || *ns);
}

const char *src_get_label(struct src_ctx *x, const cJSON *obj, const char *map, const char *key)
{
	const cJSON *meta = src_get(obj, "metadata"), *m, *v;
	char path[SRC_PATH_MAX];

	if (!cJSON_IsObject(meta))
		return NULL;
	m = src_get(meta, map);
	if (!cJSON_IsObject(m))
		return NULL; /* src_read_metadata reported it */
	v = src_get(m, key);
	if (!v)
		return NULL;
	src_path(path, "metadata.%s[%s]", map, key);
	if (!src_is_string(x, v, path))
		return NULL;
	return v->valuestring;
}
