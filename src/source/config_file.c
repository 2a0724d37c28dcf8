/* KubeProxyConfiguration files (JSON or YAML): the subset svcproxy honours,
 * under kube-proxy's own field names and validation rules. YAML is turned
 * into the same cJSON tree the JSON path reads, so both share one reader. */
#include <ctype.h>
#include <inttypes.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "svcproxy/config.h"
#include "svcproxy/source.h"
#include "source_internal.h"

#define CFG_API_VERSION "kubeproxy.config.k8s.io/v1alpha1"
#define CFG_KIND "KubeProxyConfiguration"
#define CFG_MAX_BYTES (1u << 20)
#define CFG_MAX_DEPTH 32
/* Bounds alias expansion ("billion laughs") while converting YAML. */
#define CFG_MAX_NODES 100000

/* Go's duration units, longest spelling first where they share a prefix. */
static const struct {
	const char *unit;
	double ns;
} duration_units[] = {
	{"ns", 1},   {"us", 1e3}, {"\xc2\xb5s", 1e3}, {"\xce\xbcs", 1e3},
	{"ms", 1e6}, {"s", 1e9},  {"m", 60e9},	      {"h", 3600e9},
};

static size_t match_unit(const char *p, double *ns)
{
	size_t best = 0;

	for (size_t i = 0; i < SP_ARRAY_SIZE(duration_units); i++) {
		size_t n = strlen(duration_units[i].unit);

		if (n > best && !strncmp(p, duration_units[i].unit, n)) {
			best = n;
			*ns = duration_units[i].ns;
		}
	}
	return best;
}

bool sp_src_parse_duration_ms(const char *text, uint64_t *ms)
{
	const char *p = text;
	double total_ns = 0;

	if (!text || !*text)
		return false;
	if (*p == '+')
		p++;
	if (!strcmp(p, "0")) {
		*ms = 0;
		return true;
	}
	if (!*p)
		return false;
	while (*p) {
		double value = 0, scale = 1, unit_ns = 0;
		bool digits = false;
		size_t ulen;

		while (isdigit((unsigned char)*p)) {
			value = value * 10 + (*p++ - '0');
			digits = true;
		}
		if (*p == '.') {
			p++;
			while (isdigit((unsigned char)*p)) {
				scale /= 10;
				value += (*p++ - '0') * scale;
				digits = true;
			}
		}
		ulen = match_unit(p, &unit_ns);
		if (!digits || !ulen)
			return false;
		p += ulen;
		total_ns += value * unit_ns;
		if (total_ns / 1e6 > (double)UINT32_MAX)
			return false;
	}
	*ms = (uint64_t)floor(total_ns / 1e6);
	return true;
}

/* ---- YAML to cJSON ---- */

struct yaml_conv {
	yaml_document_t *doc;
	size_t nodes;
	const char *origin;
	struct sp_diag *diag;
	bool failed;
};

static bool plain_is(const char *s, const char *const *words, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(s, words[i]))
			return true;
	return false;
}

/* YAML 1.1 plain scalars as Go's yaml decoder types them. */
static cJSON *yaml_scalar(const yaml_node_t *node)
{
	static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
	static const char *const trues[] = {"true", "True", "TRUE", "yes", "Yes",
					    "YES",  "on",   "On",   "ON"};
	static const char *const falses[] = {"false", "False", "FALSE", "no", "No",
					     "NO",    "off",   "Off",	"OFF"};
	const char *s = (const char *)node->data.scalar.value;
	char *end;
	double d;

	if (node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return cJSON_CreateString(s);
	if (plain_is(s, nulls, SP_ARRAY_SIZE(nulls)))
		return cJSON_CreateNull();
	if (plain_is(s, trues, SP_ARRAY_SIZE(trues)))
		return cJSON_CreateTrue();
	if (plain_is(s, falses, SP_ARRAY_SIZE(falses)))
		return cJSON_CreateFalse();
	if ((isdigit((unsigned char)s[0]) || ((s[0] == '-' || s[0] == '+') && s[1])) &&
	    strpbrk(s, "xXnNiI") == NULL) {
		errno = 0;
		d = strtod(s, &end);
		if (!*end && !errno)
			return cJSON_CreateNumber(d);
	}
	return cJSON_CreateString(s);
}

static cJSON *yaml_convert(struct yaml_conv *yc, yaml_node_t *node, size_t depth)
{
	cJSON *out = NULL;

	if (!node || yc->failed)
		return NULL;
	if (depth > CFG_MAX_DEPTH) {
		sp_diag_error(yc->diag, "%s: line %zu: YAML nested deeper than %d levels",
			      yc->origin, node->start_mark.line + 1, CFG_MAX_DEPTH);
		yc->failed = true;
		return NULL;
	}
	if (++yc->nodes > CFG_MAX_NODES) {
		sp_diag_error(yc->diag, "%s: more than %d YAML values once aliases are expanded",
			      yc->origin, CFG_MAX_NODES);
		yc->failed = true;
		return NULL;
	}
	switch (node->type) {
	case YAML_SCALAR_NODE:
		return yaml_scalar(node);
	case YAML_SEQUENCE_NODE:
		out = cJSON_CreateArray();
		for (yaml_node_item_t *it = node->data.sequence.items.start;
		     it < node->data.sequence.items.top && !yc->failed; it++) {
			cJSON *v =
				yaml_convert(yc, yaml_document_get_node(yc->doc, *it), depth + 1);

			if (v)
				cJSON_AddItemToArray(out, v);
		}
		break;
	case YAML_MAPPING_NODE:
		out = cJSON_CreateObject();
		for (yaml_node_pair_t *pr = node->data.mapping.pairs.start;
		     pr < node->data.mapping.pairs.top && !yc->failed; pr++) {
			yaml_node_t *k = yaml_document_get_node(yc->doc, pr->key);
			cJSON *v;

			if (!k || k->type != YAML_SCALAR_NODE) {
				sp_diag_error(yc->diag,
					      "%s: line %zu: a mapping key is not a scalar",
					      yc->origin, k ? k->start_mark.line + 1 : 0);
				yc->failed = true;
				break;
			}
			v = yaml_convert(yc, yaml_document_get_node(yc->doc, pr->value), depth + 1);
			if (v)
				cJSON_AddItemToObject(out, (const char *)k->data.scalar.value, v);
		}
		break;
	default:
		break;
	}
	if (yc->failed) {
		cJSON_Delete(out);
		return NULL;
	}
	return out;
}

static cJSON *parse_yaml(const char *origin, const char *text, size_t len, struct sp_diag *diag)
{
	struct yaml_conv yc = {.origin = origin, .diag = diag};
	yaml_parser_t parser;
	yaml_document_t doc;
	cJSON *root = NULL;

	if (!yaml_parser_initialize(&parser)) {
		sp_diag_error(diag, "%s: cannot start the YAML parser", origin);
		return NULL;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &doc)) {
		sp_diag_error(diag, "%s: not YAML: line %zu column %zu: %s", origin,
			      parser.problem_mark.line + 1, parser.problem_mark.column + 1,
			      parser.problem ? parser.problem : "parse error");
		yaml_parser_delete(&parser);
		return NULL;
	}
	yc.doc = &doc;
	root = yaml_convert(&yc, yaml_document_get_root_node(&doc), 0);
	if (!root && !yc.failed)
		sp_diag_error(diag, "%s: the file is empty", origin);
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	return root;
}

static cJSON *parse_config_text(const char *origin, const char *text, size_t len,
				struct sp_diag *diag)
{
	size_t i = 0;

	while (i < len && isspace((unsigned char)text[i]))
		i++;
	if (i < len && text[i] == '{') {
		const char *end = NULL;
		cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, false);
		size_t line = 1, col = 1;

		if (root)
			return root;
		for (const char *p = text; end && p < end && p < text + len; p++) {
			if (*p == '\n') {
				line++;
				col = 1;
			} else {
				col++;
			}
		}
		sp_diag_error(diag, "%s: not JSON: parse error at line %zu column %zu", origin,
			      line, col);
		return NULL;
	}
	return parse_yaml(origin, text, len, diag);
}

/* ---- the configuration fields ---- */

static bool read_duration(struct src_ctx *x, const cJSON *sec, const char *base, const char *key,
			  uint64_t *ms)
{
	char path[SRC_PATH_MAX], val[128];
	const char *s;

	if (!src_get_string(x, sec, base, key, &s))
		return false;
	if (sp_src_parse_duration_ms(s, ms))
		return true;
	src_path(path, "%s.%s", base, key);
	src_error(x, path, "%s is not a duration (like \"30s\", \"1m\", \"500ms\")",
		  src_string_text(s, val, sizeof(val)));
	return false;
}

/* syncPeriod/minSyncPeriod of one mode's section; applied when it is the
 * mode in use. */
static void read_sync_section(struct src_ctx *x, const cJSON *root, const char *key,
			      enum sp_mode mode, struct sp_config *cfg)
{
	uint64_t sync = cfg->sync_period_ms, min_sync = cfg->min_sync_period_ms;
	bool has_sync, has_min;
	const cJSON *sec;
	char path[SRC_PATH_MAX];

	if (!src_get_object(x, root, "", key, &sec))
		return;
	has_sync = read_duration(x, sec, key, "syncPeriod", &sync);
	has_min = read_duration(x, sec, key, "minSyncPeriod", &min_sync);
	if (has_sync && sync == 0) {
		src_path(path, "%s.syncPeriod", key);
		src_error(x, path, "must be greater than 0");
		return;
	}
	if ((has_sync || has_min) && min_sync > sync) {
		src_path(path, "%s.syncPeriod", key);
		src_error(x, path, "%" PRIu64 "ms is shorter than minSyncPeriod (%" PRIu64 "ms)",
			  sync, min_sync);
		return;
	}
	if (cfg->mode != mode)
		return;
	cfg->sync_period_ms = (unsigned)sync;
	cfg->min_sync_period_ms = (unsigned)min_sync;
}

static void read_mode(struct src_ctx *x, const cJSON *root, struct sp_config *cfg)
{
	char val[128];
	const char *s;
	enum sp_mode m;

	if (!src_get_string(x, root, "", "mode", &s) || !*s)
		return;
	m = sp_mode_parse(s);
	if (m == SP_MODE_NONE)
		src_error(x, "mode", "%s is not one of iptables, ipvs, nftables",
			  src_string_text(s, val, sizeof(val)));
	else
		cfg->mode = m;
}

/* Parses a comma list of CIDRs into a new array; false with an error. */
static bool read_cidr_list(struct src_ctx *x, const char *list, const char *path,
			   struct sp_cidr **out, size_t *n_out)
{
	struct sp_cidr *cidrs = NULL;
	size_t n = 0, cap = 0;
	const char *p = list;
	char val[128];

	while (*p) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		char *item = sp_xstrndup(p, len);
		struct sp_cidr cidr;

		if (!src_parse_cidr_loose(item, &cidr)) {
			src_error(x, path, "%s is not a CIDR",
				  src_string_text(item, val, sizeof(val)));
			free(item);
			free(cidrs);
			return false;
		}
		*(struct sp_cidr *)sp_array_push(&cidrs, &n, &cap, sizeof(*cidrs)) = cidr;
		free(item);
		p += len;
		if (*p == ',')
			p++;
	}
	free(*out);
	*out = cidrs;
	*n_out = n;
	return true;
}

static void read_cluster_cidr(struct src_ctx *x, const cJSON *root, struct sp_config *cfg)
{
	const char *s;

	if (src_get_string(x, root, "", "clusterCIDR", &s))
		read_cidr_list(x, s, "clusterCIDR", &cfg->cluster_cidrs, &cfg->n_cluster_cidrs);
}

static void read_nodeport_addresses(struct src_ctx *x, const cJSON *root, struct sp_config *cfg)
{
	struct sp_cidr *cidrs;
	const cJSON *arr, *it;
	char path[SRC_PATH_MAX], val[128];
	size_t n = 0, i = 0;

	if (!src_get_array(x, root, "", "nodePortAddresses", &arr))
		return;
	cidrs = sp_xcalloc((size_t)cJSON_GetArraySize(arr) + 1, sizeof(*cidrs));
	cJSON_ArrayForEach(it, arr)
	{
		src_path(path, "nodePortAddresses[%zu]", i++);
		if (!src_is_string(x, it, path))
			continue;
		if (!strcmp(it->valuestring, "primary")) {
			sp_diag_warn(x->diag,
				     "%s: %s: \"primary\" is not supported; node ports accept "
				     "every node address",
				     x->origin, path);
			n = 0;
			break;
		}
		if (!src_parse_cidr_loose(it->valuestring, &cidrs[n]))
			src_error(x, path, "%s is not a CIDR",
				  src_value_text(it, val, sizeof(val)));
		else
			n++;
	}
	free(cfg->nodeport_cidrs);
	cfg->nodeport_cidrs = cidrs;
	cfg->n_nodeport_cidrs = n;
}

static void read_iptables(struct src_ctx *x, const cJSON *root, struct sp_config *cfg)
{
	const cJSON *sec;
	long bit;

	if (!src_get_object(x, root, "", "iptables", &sec))
		return;
	src_get_bool(x, sec, "iptables", "masqueradeAll", &cfg->masquerade_all);
	if (src_get_int(x, sec, "iptables", "masqueradeBit", 0, 31,
			"is not within the range [0, 31]", &bit))
		cfg->masquerade_bit = (unsigned)bit;
}

static void read_ipvs(struct src_ctx *x, const cJSON *root, struct sp_config *cfg)
{
	static const char *const schedulers[] = {"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh",
						 "sh", "sed", "nq", "mh",  "fo",   "ovf",   "twos"};
	char val[128];
	const cJSON *sec;
	const char *s;

	if (!src_get_object(x, root, "", "ipvs", &sec))
		return;
	src_get_bool(x, sec, "ipvs", "strictARP", &cfg->ipvs_strict_arp);
	if (!src_get_string(x, sec, "ipvs", "scheduler", &s) || !*s)
		return;
	for (size_t i = 0; i < SP_ARRAY_SIZE(schedulers); i++)
		if (!strcmp(s, schedulers[i])) {
			free(cfg->ipvs_scheduler);
			cfg->ipvs_scheduler = sp_xstrdup(s);
			return;
		}
	src_error(x, "ipvs.scheduler", "%s is not an IPVS scheduler",
		  src_string_text(s, val, sizeof(val)));
}

/* "host:port" with host an IP ("[v6]" bracketed) or empty, as kube-proxy
 * binds them. */
static bool bind_address_ok(const char *s)
{
	const char *colon = strrchr(s, ':');
	char host[SP_ADDRSTRLEN + 2];
	struct sp_addr a;
	size_t hlen;
	long port;

	if (!colon || !sp_parse_long(colon + 1, 0, 65535, &port))
		return false;
	hlen = (size_t)(colon - s);
	if (hlen == 0)
		return true;
	if (hlen >= sizeof(host))
		return false;
	memcpy(host, s, hlen);
	host[hlen] = '\0';
	if (host[0] == '[' && host[hlen - 1] == ']') {
		host[hlen - 1] = '\0';
		return sp_addr_parse(host + 1, &a) && a.family == AF_INET6;
	}
	return sp_addr_parse(host, &a) && a.family == AF_INET;
}

static void read_bind_address(struct src_ctx *x, const cJSON *root, const char *key, char **out)
{
	char val[128];
	const char *s;

	if (!src_get_string(x, root, "", key, &s))
		return;
	if (*s && !bind_address_ok(s)) {
		src_error(x, key, "%s is not an IP:port address",
			  src_string_text(s, val, sizeof(val)));
		return;
	}
	free(*out);
	*out = sp_xstrdup(s);
}

/* svcproxy's own settings, under one top-level key of their own: a name
 * kube-proxy never uses, so that one file serves both (kube-proxy's strict
 * decoder reports the unknown field and goes on leniently). */
#define CFG_OWN_SECTION "svcproxy"
/* Past 2^53 a JSON number is no longer a whole number exactly. */
#define CFG_MAX_LIMIT (1L << 53)

static void read_limit(struct src_ctx *x, const cJSON *sec, const char *key, size_t *out)
{
	long v;

	if (src_get_int(x, sec, CFG_OWN_SECTION, key, 1, CFG_MAX_LIMIT,
			"is not a whole number from 1 up to 2^53", &v))
		*out = (size_t)v;
}

/* The section is ours alone, so a misspelt key is an error: a limit an
 * operator believes is set must not silently stay at its default. */
static void check_own_keys(struct src_ctx *x, const cJSON *sec)
{
	static const char *const known[] = {"maxInputBytes", "maxJSONDepth", "maxJSONItems"};
	char path[SRC_PATH_MAX], val[128];
	const cJSON *it;

	cJSON_ArrayForEach(it, sec)
	{
		if (plain_is(it->string, known, SP_ARRAY_SIZE(known)))
			continue;
		src_path(path, "%s.%s", CFG_OWN_SECTION,
			 src_string_text(it->string, val, sizeof(val)));
		src_error(x, path,
			  "unknown field (known: maxInputBytes, maxJSONDepth, maxJSONItems)");
	}
}

static void read_own_section(struct src_ctx *x, const cJSON *root, struct sp_config *cfg)
{
	const cJSON *sec;

	if (!src_get_object(x, root, "", CFG_OWN_SECTION, &sec))
		return;
	check_own_keys(x, sec);
	read_limit(x, sec, "maxInputBytes", &cfg->max_input_bytes);
	read_limit(x, sec, "maxJSONDepth", &cfg->max_json_depth);
	read_limit(x, sec, "maxJSONItems", &cfg->max_json_items);
}

void sp_config_source_limits(const struct sp_config *cfg, struct sp_source_limits *lim)
{
	sp_source_limits_default(lim);
	if (cfg->max_input_bytes)
		lim->max_file_bytes = cfg->max_input_bytes;
	if (cfg->max_json_depth)
		lim->max_depth = cfg->max_json_depth;
	if (cfg->max_json_items)
		lim->max_items = cfg->max_json_items;
}

static void read_header(struct src_ctx *x, const cJSON *root)
{
	const char *api = NULL, *kind = NULL;
	char val[128];

	if (!src_get_string(x, root, "", "apiVersion", &api) && !src_get(root, "apiVersion"))
		src_error(x, "apiVersion", "required value is missing (want %s)", CFG_API_VERSION);
	else if (api && strcmp(api, CFG_API_VERSION))
		src_error(x, "apiVersion", "%s is not supported (only %s)",
			  src_string_text(api, val, sizeof(val)), CFG_API_VERSION);
	if (src_get_string(x, root, "", "kind", &kind) && strcmp(kind, CFG_KIND))
		src_error(x, "kind", "%s is not %s", src_string_text(kind, val, sizeof(val)),
			  CFG_KIND);
}

/* kube-proxy trims and lower-cases the override before using it as the
 * node name. */
static void read_hostname(struct src_ctx *x, const cJSON *root, struct sp_config *cfg)
{
	const char *host;
	char *name;
	size_t len;

	if (!src_get_string(x, root, "", "hostnameOverride", &host))
		return;
	while (isspace((unsigned char)*host))
		host++;
	len = strlen(host);
	while (len && isspace((unsigned char)host[len - 1]))
		len--;
	if (!len)
		return;
	name = sp_xstrndup(host, len);
	for (char *p = name; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	if (src_check_dns_subdomain(x, name, "hostnameOverride")) {
		free(cfg->hostname);
		cfg->hostname = name;
	} else {
		free(name);
	}
}

static void apply_config(struct src_ctx *x, const cJSON *root, struct sp_config *cfg)
{
	read_header(x, root);
	read_mode(x, root, cfg);
	read_hostname(x, root, cfg);
	read_cluster_cidr(x, root, cfg);
	read_nodeport_addresses(x, root, cfg);
	read_iptables(x, root, cfg);
	read_ipvs(x, root, cfg);
	read_sync_section(x, root, "iptables", SP_MODE_IPTABLES, cfg);
	read_sync_section(x, root, "ipvs", SP_MODE_IPVS, cfg);
	read_sync_section(x, root, "nftables", SP_MODE_NFTABLES, cfg);
	read_bind_address(x, root, "healthzBindAddress", &cfg->healthz_bind_address);
	read_bind_address(x, root, "metricsBindAddress", &cfg->metrics_bind_address);
	read_own_section(x, root, cfg);
}

static char *slurp(const char *path, size_t *len, struct sp_diag *diag)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t cap = 4096;
	char *text;

	*len = 0;
	if (fd < 0) {
		sp_diag_error(diag, "%s: cannot open: %s", path, strerror(errno));
		return NULL;
	}
	text = sp_xmalloc(cap);
	for (;;) {
		ssize_t n;

		if (*len + 1 >= cap) {
			if (cap > CFG_MAX_BYTES) {
				sp_diag_error(diag, "%s: larger than %u bytes", path,
					      CFG_MAX_BYTES);
				goto fail;
			}
			cap *= 2;
			text = sp_xrealloc(text, cap);
		}
		n = read(fd, text + *len, cap - *len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			sp_diag_error(diag, "%s: cannot read: %s", path, strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		*len += (size_t)n;
	}
	close(fd);
	text[*len] = '\0';
	return text;
fail:
	close(fd);
	free(text);
	return NULL;
}

int sp_config_load_file(struct sp_config *cfg, const char *path, struct sp_diag *diag)
{
	struct sp_source_limits lim;
	struct src_ctx x;
	cJSON *root;
	size_t len;
	char *text = slurp(path, &len, diag);

	if (!text)
		return -1;
	root = parse_config_text(path, text, len, diag);
	free(text);
	if (!root)
		return -1;
	sp_source_limits_default(&lim);
	memset(&x, 0, sizeof(x));
	x.origin = path;
	x.kind = CFG_KIND;
	x.lim = &lim;
	x.diag = diag;
	if (!cJSON_IsObject(root))
		src_error(&x, "", "the top level is not a mapping");
	else
		apply_config(&x, root, cfg);
	cJSON_Delete(root);
	free(cfg->config_file);
	cfg->config_file = sp_xstrdup(path);
	return x.n_errors ? -1 : 0;
}
