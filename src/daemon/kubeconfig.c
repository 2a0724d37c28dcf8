#include "kubeconfig.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

void sp_kconn_free(struct sp_kconn *c)
{
	free(c->server);
	free(c->ca_file);
	free(c->ca.data);
	free(c->cert_file);
	free(c->cert.data);
	free(c->key_file);
	free(c->key.data);
	if (c->token)
		explicit_bzero(c->token, strlen(c->token));
	free(c->token);
	free(c->token_file);
	memset(c, 0, sizeof(*c));
}

static yaml_node_t *ymap_get(yaml_document_t *doc, yaml_node_t *map, const char *key)
{
	if (!map || map->type != YAML_MAPPING_NODE)
		return NULL;
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = yaml_document_get_node(doc, p->key);

		if (k && k->type == YAML_SCALAR_NODE && !strcmp((char *)k->data.scalar.value, key))
			return yaml_document_get_node(doc, p->value);
	}
	return NULL;
}

static const char *yscalar(yaml_node_t *n)
{
	return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* The entry of a named list (clusters, users, contexts) called name. */
static yaml_node_t *named(yaml_document_t *doc, yaml_node_t *root, const char *list,
			  const char *name, const char *field)
{
	yaml_node_t *seq = ymap_get(doc, root, list);

	if (!seq || seq->type != YAML_SEQUENCE_NODE || !name)
		return NULL;
	for (yaml_node_item_t *it = seq->data.sequence.items.start;
	     it < seq->data.sequence.items.top; it++) {
		yaml_node_t *e = yaml_document_get_node(doc, *it);
		const char *n = yscalar(ymap_get(doc, e, "name"));

		if (n && !strcmp(n, name))
			return ymap_get(doc, e, field);
	}
	return NULL;
}

static int b64val(int ch)
{
	const char *alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const char *p = ch ? strchr(alphabet, ch) : NULL;

	return p ? (int)(p - alphabet) : -1;
}

static bool b64decode(const char *in, struct sp_kblob *out)
{
	size_t cap = strlen(in) / 4 * 3 + 4, n = 0;
	unsigned acc = 0;
	int bits = 0;

	out->data = sp_xmalloc(cap);
	for (; *in; in++) {
		int v;

		if (*in == '=' || *in == '\n' || *in == '\r' || *in == ' ')
			continue;
		v = b64val(*in);
		if (v < 0) {
			free(out->data);
			out->data = NULL;
			return false;
		}
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out->data[n++] = (char)((acc >> bits) & 0xff);
		}
	}
	out->data[n] = '\0';
	out->len = n;
	return true;
}

/* A path in a kubeconfig is relative to the kubeconfig's directory. */
static char *resolve(const char *dir, const char *path)
{
	if (!path)
		return NULL;
	if (path[0] == '/')
		return sp_xstrdup(path);
	return sp_xasprintf("%s/%s", dir, path);
}

static int take_blob(yaml_document_t *doc, yaml_node_t *map, const char *field,
		     struct sp_kblob *out, const char *path, struct sp_diag *diag)
{
	const char *v = yscalar(ymap_get(doc, map, field));

	if (v && !b64decode(v, out)) {
		sp_diag_error(diag, "%s: %s: not base64", path, field);
		return -1;
	}
	return 0;
}

static void trim_server(struct sp_kconn *c)
{
	size_t len = strlen(c->server);

	while (len && c->server[len - 1] == '/')
		c->server[--len] = '\0';
}

int sp_kconn_from_kubeconfig(struct sp_kconn *c, const char *path, struct sp_diag *diag)
{
	FILE *f = fopen(path, "r");
	yaml_parser_t parser;
	yaml_document_t doc;
	yaml_node_t *root, *ctx, *cluster, *user;
	const char *current, *v;
	char *copy, *dir;
	int ret = -1;

	memset(c, 0, sizeof(*c));
	if (!f) {
		sp_diag_error(diag, "%s: %s", path, strerror(errno));
		return -1;
	}
	yaml_parser_initialize(&parser);
	yaml_parser_set_input_file(&parser, f);
	if (!yaml_parser_load(&parser, &doc)) {
		sp_diag_error(diag, "%s: line %zu: %s", path, parser.problem_mark.line + 1,
			      parser.problem ? parser.problem : "not YAML");
		yaml_parser_delete(&parser);
		fclose(f);
		return -1;
	}
	copy = sp_xstrdup(path);
	dir = dirname(copy);
	root = yaml_document_get_root_node(&doc);
	current = yscalar(ymap_get(&doc, root, "current-context"));
	ctx = named(&doc, root, "contexts", current, "context");
	if (!ctx) {
		sp_diag_error(diag, "%s: current-context \"%s\" not found", path,
			      current ? current : "");
		goto out;
	}
	cluster = named(&doc, root, "clusters", yscalar(ymap_get(&doc, ctx, "cluster")), "cluster");
	user = named(&doc, root, "users", yscalar(ymap_get(&doc, ctx, "user")), "user");
	v = yscalar(ymap_get(&doc, cluster, "server"));
	if (!v || strncmp(v, "https://", 8)) {
		sp_diag_error(diag, "%s: cluster of context \"%s\": server must be an https:// URL",
			      path, current);
		goto out;
	}
	c->server = sp_xstrdup(v);
	trim_server(c);
	c->ca_file = resolve(dir, yscalar(ymap_get(&doc, cluster, "certificate-authority")));
	v = yscalar(ymap_get(&doc, cluster, "insecure-skip-tls-verify"));
	c->insecure = v && !strcmp(v, "true");
	if (take_blob(&doc, cluster, "certificate-authority-data", &c->ca, path, diag) < 0)
		goto out;
	if (user) {
		if (ymap_get(&doc, user, "exec") || ymap_get(&doc, user, "auth-provider")) {
			sp_diag_error(
				diag,
				"%s: user of context \"%s\": exec and auth-provider "
				"plugins are not supported; use a token or a client certificate",
				path, current);
			goto out;
		}
		c->cert_file = resolve(dir, yscalar(ymap_get(&doc, user, "client-certificate")));
		c->key_file = resolve(dir, yscalar(ymap_get(&doc, user, "client-key")));
		c->token_file = resolve(dir, yscalar(ymap_get(&doc, user, "tokenFile")));
		v = yscalar(ymap_get(&doc, user, "token"));
		c->token = v ? sp_xstrdup(v) : NULL;
		if (take_blob(&doc, user, "client-certificate-data", &c->cert, path, diag) < 0 ||
		    take_blob(&doc, user, "client-key-data", &c->key, path, diag) < 0)
			goto out;
	}
	ret = 0;
out:
	if (ret < 0)
		sp_kconn_free(c);
	free(copy);
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	fclose(f);
	return ret;
}

int sp_kconn_in_cluster(struct sp_kconn *c, struct sp_diag *diag)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST");
	const char *port = getenv("KUBERNETES_SERVICE_PORT");
	const char *dir = getenv("SVCPROXY_SERVICEACCOUNT_DIR");

	memset(c, 0, sizeof(*c));
	if (!host || !*host || !port || !*port) {
		sp_diag_error(diag,
			      "in-cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT "
			      "are not set (not in a pod? use --kubeconfig)");
		return -1;
	}
	if (!dir)
		dir = "/var/run/secrets/kubernetes.io/serviceaccount";
	c->server = strchr(host, ':') ? sp_xasprintf("https://[%s]:%s", host, port)
				      : sp_xasprintf("https://%s:%s", host, port);
	c->ca_file = sp_xasprintf("%s/ca.crt", dir);
	c->token_file = sp_xasprintf("%s/token", dir);
	return 0;
}

char *sp_kconn_token(const struct sp_kconn *c)
{
	char buf[16384];
	size_t n;
	FILE *f;

	if (!c->token_file)
		return c->token ? sp_xstrdup(c->token) : NULL;
	f = fopen(c->token_file, "r");
	if (!f)
		return c->token ? sp_xstrdup(c->token) : NULL;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
		n--;
	buf[n] = '\0';
	{
		char *tok = sp_xstrdup(buf);

		explicit_bzero(buf, sizeof(buf));
		return tok;
	}
}
