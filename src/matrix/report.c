/* The measured cells: read from the harness (TSV) or a previous run (JSON),
 * written as JSON, a text table or an HTML page, and compared. */
#include "matrix.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

const char *const sp_matrix_field_names[SP_MATRIX_N_FIELDS] = {
	[SP_MATRIX_SCENARIO] = "scenario",
	[SP_MATRIX_MODE] = "mode",
	[SP_MATRIX_NETWORK] = "network",
	[SP_MATRIX_SERVICE] = "service",
	[SP_MATRIX_TARGET] = "target",
	[SP_MATRIX_TARGET_NODE] = "target_node",
	[SP_MATRIX_CLIENT] = "client",
	[SP_MATRIX_CLIENT_NODE] = "client_node",
	[SP_MATRIX_CLIENT_ADDRESS] = "client_address",
	[SP_MATRIX_REACHABLE] = "reachable",
	[SP_MATRIX_ENDPOINT] = "endpoint",
	[SP_MATRIX_SOURCE_SEEN] = "source_seen",
};

/* The fields that identify a cell (the rest is what was measured). */
static const enum sp_matrix_field key_fields[] = {
	SP_MATRIX_SCENARIO, SP_MATRIX_MODE,	   SP_MATRIX_NETWORK, SP_MATRIX_SERVICE,
	SP_MATRIX_TARGET,   SP_MATRIX_TARGET_NODE, SP_MATRIX_CLIENT,  SP_MATRIX_CLIENT_NODE,
};

void sp_matrix_cells_free(struct sp_matrix_cells *cs)
{
	for (size_t i = 0; i < cs->n; i++)
		for (int f = 0; f < SP_MATRIX_N_FIELDS; f++)
			free(cs->cells[i].field[f]);
	free(cs->cells);
	memset(cs, 0, sizeof(*cs));
}

bool sp_matrix_cell_reachable(const struct sp_matrix_cell *c)
{
	return c->field[SP_MATRIX_REACHABLE] && !strcmp(c->field[SP_MATRIX_REACHABLE], "true");
}

static const char *field_or(const struct sp_matrix_cell *c, enum sp_matrix_field f,
			    const char *dflt)
{
	return c->field[f] ? c->field[f] : dflt;
}

int sp_matrix_read_tsv(struct sp_matrix_cells *cs, const char *path, struct sp_diag *diag)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0, lineno = 0;
	ssize_t len;
	int rc = 0;

	if (!f) {
		sp_diag_error(diag, "%s: %s", path, strerror(errno));
		return -1;
	}
	while ((len = getline(&line, &cap, f)) >= 0) {
		struct sp_matrix_cell *c;
		char *save = NULL, *tok;
		int n = 0;

		lineno++;
		if (len && line[len - 1] == '\n')
			line[len - 1] = '\0';
		if (!line[0])
			continue;
		c = sp_array_push(&cs->cells, &cs->n, &cs->cap, sizeof(*cs->cells));
		for (tok = strtok_r(line, "\t", &save); tok && n < SP_MATRIX_N_FIELDS;
		     tok = strtok_r(NULL, "\t", &save), n++)
			c->field[n] = strcmp(tok, "-") ? sp_xstrdup(tok) : NULL;
		if (n != SP_MATRIX_N_FIELDS || tok) {
			sp_diag_error(diag, "%s:%zu: %d fields, expected %d", path, lineno, n,
				      SP_MATRIX_N_FIELDS);
			rc = -1;
		}
	}
	free(line);
	fclose(f);
	return rc;
}

static int cell_from_json(struct sp_matrix_cell *c, const cJSON *obj)
{
	for (int f = 0; f < SP_MATRIX_N_FIELDS; f++) {
		const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, sp_matrix_field_names[f]);

		if (cJSON_IsString(v))
			c->field[f] = sp_xstrdup(v->valuestring);
		else if (cJSON_IsBool(v))
			c->field[f] = sp_xstrdup(cJSON_IsTrue(v) ? "true" : "false");
		else if (v && !cJSON_IsNull(v))
			return -1;
	}
	return 0;
}

int sp_matrix_read_json(struct sp_matrix_cells *cs, const char *path, struct sp_diag *diag)
{
	FILE *f = fopen(path, "r");
	struct sp_buf text;
	char chunk[8192];
	size_t got;
	cJSON *root, *cells, *it;
	int rc = 0;

	if (!f) {
		sp_diag_error(diag, "%s: %s", path, strerror(errno));
		return -1;
	}
	sp_buf_init(&text);
	while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0)
		sp_buf_addn(&text, chunk, got);
	fclose(f);
	root = cJSON_Parse(text.data ? text.data : "");
	sp_buf_free(&text);
	cells = root ? cJSON_GetObjectItemCaseSensitive(root, "cells") : NULL;
	if (!cJSON_IsArray(cells)) {
		sp_diag_error(diag, "%s: not a matrix (a JSON object with a \"cells\" array)",
			      path);
		cJSON_Delete(root);
		return -1;
	}
	cJSON_ArrayForEach(it, cells)
	{
		struct sp_matrix_cell *c =
			sp_array_push(&cs->cells, &cs->n, &cs->cap, sizeof(*cs->cells));

		if (!cJSON_IsObject(it) || cell_from_json(c, it)) {
			sp_diag_error(diag, "%s: cells[%zu]: not a cell", path, cs->n - 1);
			rc = -1;
		}
	}
	cJSON_Delete(root);
	return rc;
}

static void json_str(struct sp_buf *out, const char *s)
{
	if (!s) {
		sp_buf_add(out, "null");
		return;
	}
	sp_buf_add(out, "\"");
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			sp_buf_addf(out, "\\%c", ch);
		else if (ch < 0x20)
			sp_buf_addf(out, "\\u%04x", ch);
		else
			sp_buf_addn(out, s, 1);
	}
	sp_buf_add(out, "\"");
}

/* One cell per line: a diff of two files by line is a diff of cells. */
void sp_matrix_write_json(const struct sp_matrix_cells *cs, struct sp_buf *out)
{
	sp_buf_add(out, "{\"cells\": [\n");
	for (size_t i = 0; i < cs->n; i++) {
		const struct sp_matrix_cell *c = &cs->cells[i];

		sp_buf_add(out, "  {");
		for (int f = 0; f < SP_MATRIX_N_FIELDS; f++) {
			sp_buf_addf(out, "%s\"%s\": ", f ? ", " : "", sp_matrix_field_names[f]);
			if (f == SP_MATRIX_REACHABLE)
				sp_buf_add(out, sp_matrix_cell_reachable(c) ? "true" : "false");
			else
				json_str(out, c->field[f]);
		}
		sp_buf_addf(out, "}%s\n", i + 1 < cs->n ? "," : "");
	}
	sp_buf_add(out, "]}\n");
}

/* Tables: one per (scenario, mode, network, service); a row per target
 * address, a column per client position. */

static bool same_group(const struct sp_matrix_cell *a, const struct sp_matrix_cell *b)
{
	for (int f = SP_MATRIX_SCENARIO; f <= SP_MATRIX_SERVICE; f++)
		if (sp_strcmp_null(a->field[f], b->field[f]))
			return false;
	return true;
}

static char *row_label(const struct sp_matrix_cell *c)
{
	if (c->field[SP_MATRIX_TARGET_NODE])
		return sp_xasprintf("%s %s", field_or(c, SP_MATRIX_TARGET, "?"),
				    c->field[SP_MATRIX_TARGET_NODE]);
	return sp_xstrdup(field_or(c, SP_MATRIX_TARGET, "?"));
}

/* A client position: which machine it is (node, pod on a node, outside),
 * independent of the target, so that columns line up across rows. */
static char *col_label(const struct sp_matrix_cell *c)
{
	const char *kind = field_or(c, SP_MATRIX_CLIENT, "?");
	const char *node = field_or(c, SP_MATRIX_CLIENT_NODE, "");

	if (!strcmp(kind, "off-cluster"))
		return sp_xstrdup("off-cluster");
	if (strstr(kind, "pod"))
		return sp_xasprintf("pod@%s", node);
	return sp_xstrdup(node);
}

static char *cell_text(const struct sp_matrix_cell *c)
{
	if (!sp_matrix_cell_reachable(c))
		return sp_xstrdup("--");
	return sp_xasprintf("%s < %s", field_or(c, SP_MATRIX_ENDPOINT, "?"),
			    field_or(c, SP_MATRIX_SOURCE_SEEN, "?"));
}

struct labels {
	char **v;
	size_t n, cap;
};

static size_t labels_index(struct labels *l, char *label)
{
	for (size_t i = 0; i < l->n; i++) {
		if (!strcmp(l->v[i], label)) {
			free(label);
			return i;
		}
	}
	*(char **)sp_array_push(&l->v, &l->n, &l->cap, sizeof(*l->v)) = label;
	return l->n - 1;
}

static void labels_free(struct labels *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
}

/* A group's cells laid out as a grid of cell pointers (NULL: not measured). */
struct grid {
	struct labels rows, cols;
	const struct sp_matrix_cell **at; /* rows.n x cols.n */
};

static size_t grid_build(struct grid *g, const struct sp_matrix_cells *cs, size_t first)
{
	size_t end = first;

	memset(g, 0, sizeof(*g));
	while (end < cs->n && same_group(&cs->cells[first], &cs->cells[end])) {
		labels_index(&g->rows, row_label(&cs->cells[end]));
		labels_index(&g->cols, col_label(&cs->cells[end]));
		end++;
	}
	g->at = sp_xcalloc(g->rows.n * g->cols.n, sizeof(*g->at));
	for (size_t i = first; i < end; i++) {
		size_t r = labels_index(&g->rows, row_label(&cs->cells[i]));
		size_t k = labels_index(&g->cols, col_label(&cs->cells[i]));

		g->at[r * g->cols.n + k] = &cs->cells[i];
	}
	return end;
}

static void grid_free(struct grid *g)
{
	labels_free(&g->rows);
	labels_free(&g->cols);
	free(g->at);
}

static void text_group(const struct grid *g, const struct sp_matrix_cell *head, struct sp_buf *out)
{
	size_t *width = sp_xcalloc(g->cols.n + 1, sizeof(*width));

	width[0] = strlen("target");
	for (size_t r = 0; r < g->rows.n; r++)
		if (strlen(g->rows.v[r]) > width[0])
			width[0] = strlen(g->rows.v[r]);
	for (size_t k = 0; k < g->cols.n; k++) {
		width[k + 1] = strlen(g->cols.v[k]);
		for (size_t r = 0; r < g->rows.n; r++) {
			const struct sp_matrix_cell *c = g->at[r * g->cols.n + k];
			char *t = c ? cell_text(c) : NULL;

			if (t && strlen(t) > width[k + 1])
				width[k + 1] = strlen(t);
			free(t);
		}
	}
	sp_buf_addf(out, "%s  %s/%s  %s\n", field_or(head, SP_MATRIX_SCENARIO, "?"),
		    field_or(head, SP_MATRIX_MODE, "?"), field_or(head, SP_MATRIX_NETWORK, "?"),
		    field_or(head, SP_MATRIX_SERVICE, "?"));
	sp_buf_addf(out, "  %-*s", (int)width[0], "target");
	for (size_t k = 0; k < g->cols.n; k++)
		sp_buf_addf(out, " | %-*s", (int)width[k + 1], g->cols.v[k]);
	sp_buf_add(out, "\n");
	for (size_t r = 0; r < g->rows.n; r++) {
		sp_buf_addf(out, "  %-*s", (int)width[0], g->rows.v[r]);
		for (size_t k = 0; k < g->cols.n; k++) {
			const struct sp_matrix_cell *c = g->at[r * g->cols.n + k];
			char *t = c ? cell_text(c) : sp_xstrdup("");

			sp_buf_addf(out, " | %-*s", (int)width[k + 1], t);
			free(t);
		}
		sp_buf_add(out, "\n");
	}
	sp_buf_add(out, "\n");
	free(width);
}

void sp_matrix_write_text(const struct sp_matrix_cells *cs, struct sp_buf *out)
{
	sp_buf_add(out, "Cells: \"ENDPOINT < SOURCE\" is the pod that answered and the source "
			"address it saw; \"--\" is not reachable.\n\n");
	for (size_t i = 0; i < cs->n;) {
		struct grid g;
		size_t next = grid_build(&g, cs, i);

		text_group(&g, &cs->cells[i], out);
		grid_free(&g);
		i = next;
	}
}

static void html_escaped(struct sp_buf *out, const char *s)
{
	for (; s && *s; s++) {
		switch (*s) {
		case '<':
			sp_buf_add(out, "&lt;");
			break;
		case '>':
			sp_buf_add(out, "&gt;");
			break;
		case '&':
			sp_buf_add(out, "&amp;");
			break;
		case '"':
			sp_buf_add(out, "&quot;");
			break;
		default:
			sp_buf_addn(out, s, 1);
		}
	}
}

/* Colour classes: reachable with the client's own address, reachable
 * through source NAT, not reachable. */
static const char *html_class(const struct sp_matrix_cell *c)
{
	if (!sp_matrix_cell_reachable(c))
		return "no";
	if (!sp_strcmp_null(c->field[SP_MATRIX_SOURCE_SEEN], c->field[SP_MATRIX_CLIENT_ADDRESS]))
		return "own";
	return "nat";
}

static void html_cell(const struct sp_matrix_cell *c, struct sp_buf *out)
{
	if (!c) {
		sp_buf_add(out, "<td></td>");
		return;
	}
	sp_buf_addf(out, "<td class=\"%s\" title=\"", html_class(c));
	for (int f = 0; f < SP_MATRIX_N_FIELDS; f++) {
		sp_buf_addf(out, "%s%s: ", f ? "&#10;" : "", sp_matrix_field_names[f]);
		html_escaped(out, field_or(c, f, "null"));
	}
	sp_buf_add(out, "\">");
	if (sp_matrix_cell_reachable(c)) {
		html_escaped(out, field_or(c, SP_MATRIX_ENDPOINT, "?"));
		sp_buf_add(out, "<br><small>saw ");
		html_escaped(out, field_or(c, SP_MATRIX_SOURCE_SEEN, "?"));
		sp_buf_add(out, "</small>");
	} else {
		sp_buf_add(out, "not reachable");
	}
	sp_buf_addf(out, "<br><small class=\"kind\">%s from ", field_or(c, SP_MATRIX_CLIENT, "?"));
	html_escaped(out, field_or(c, SP_MATRIX_CLIENT_ADDRESS, "?"));
	sp_buf_add(out, "</small></td>");
}

static void html_group(const struct grid *g, const struct sp_matrix_cell *head, struct sp_buf *out)
{
	sp_buf_add(out, "<h2>");
	html_escaped(out, field_or(head, SP_MATRIX_SERVICE, "?"));
	sp_buf_add(out, " <span>");
	html_escaped(out, field_or(head, SP_MATRIX_SCENARIO, "?"));
	sp_buf_add(out, " &middot; ");
	html_escaped(out, field_or(head, SP_MATRIX_MODE, "?"));
	sp_buf_add(out, " &middot; ");
	html_escaped(out, field_or(head, SP_MATRIX_NETWORK, "?"));
	sp_buf_add(out, "</span></h2>\n<table><tr><th>target \\ client</th>");
	for (size_t k = 0; k < g->cols.n; k++) {
		sp_buf_add(out, "<th>");
		html_escaped(out, g->cols.v[k]);
		sp_buf_add(out, "</th>");
	}
	sp_buf_add(out, "</tr>\n");
	for (size_t r = 0; r < g->rows.n; r++) {
		sp_buf_add(out, "<tr><th>");
		html_escaped(out, g->rows.v[r]);
		sp_buf_add(out, "</th>");
		for (size_t k = 0; k < g->cols.n; k++)
			html_cell(g->at[r * g->cols.n + k], out);
		sp_buf_add(out, "</tr>\n");
	}
	sp_buf_add(out, "</table>\n");
}

void sp_matrix_write_html(const struct sp_matrix_cells *cs, struct sp_buf *out)
{
	sp_buf_add(
		out,
		"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
		"<title>svcproxy reachability matrix</title>\n<style>\n"
		"body{font-family:sans-serif;margin:1em 2em}\n"
		"h2{font-size:1.05em;margin:1.4em 0 .4em}h2 span{color:#666;font-weight:normal}\n"
		"table{border-collapse:collapse}th,td{border:1px solid #999;padding:.3em .6em;"
		"font-size:.85em;text-align:left;vertical-align:top}\n"
		"th{background:#eee}td.own{background:#9fdf9f}td.nat{background:#ffe38a}"
		"td.no{background:#f3a0a0}\nsmall.kind{color:#444}\n"
		".legend span{display:inline-block;padding:.2em .6em;margin-right:.6em}\n"
		"</style></head><body>\n<h1>svcproxy reachability matrix</h1>\n"
		"<p class=\"legend\"><span class=\"own\" style=\"background:#9fdf9f\">reachable,"
		" the endpoint saw the client's own address</span><span "
		"style=\"background:#ffe38a\">reachable through source NAT</span><span "
		"style=\"background:#f3a0a0\">not reachable</span> Hover a cell for its "
		"record.</p>\n");
	for (size_t i = 0; i < cs->n;) {
		struct grid g;
		size_t next = grid_build(&g, cs, i);

		html_group(&g, &cs->cells[i], out);
		grid_free(&g);
		i = next;
	}
	sp_buf_add(out, "</body></html>\n");
}

static char *cell_key(const struct sp_matrix_cell *c)
{
	struct sp_buf b;

	sp_buf_init(&b);
	for (size_t i = 0; i < SP_ARRAY_SIZE(key_fields); i++)
		sp_buf_addf(&b, "%s%s", i ? " " : "", field_or(c, key_fields[i], "-"));
	return sp_buf_steal(&b);
}

static const struct sp_matrix_cell *find_cell(const struct sp_matrix_cells *cs, const char *key)
{
	for (size_t i = 0; i < cs->n; i++) {
		char *k = cell_key(&cs->cells[i]);
		bool match = !strcmp(k, key);

		free(k);
		if (match)
			return &cs->cells[i];
	}
	return NULL;
}

static void describe(const struct sp_matrix_cell *c, struct sp_buf *out)
{
	if (!sp_matrix_cell_reachable(c)) {
		sp_buf_add(out, "not reachable");
		return;
	}
	sp_buf_addf(out, "reachable (%s saw %s)", field_or(c, SP_MATRIX_ENDPOINT, "?"),
		    field_or(c, SP_MATRIX_SOURCE_SEEN, "?"));
}

static bool cells_differ(const struct sp_matrix_cell *a, const struct sp_matrix_cell *b,
			 bool only_reachability)
{
	if (sp_matrix_cell_reachable(a) != sp_matrix_cell_reachable(b))
		return true;
	if (only_reachability)
		return false;
	return sp_strcmp_null(a->field[SP_MATRIX_ENDPOINT], b->field[SP_MATRIX_ENDPOINT]) ||
	       sp_strcmp_null(a->field[SP_MATRIX_SOURCE_SEEN], b->field[SP_MATRIX_SOURCE_SEEN]);
}

size_t sp_matrix_diff(const struct sp_matrix_cells *a, const struct sp_matrix_cells *b,
		      bool only_reachability, struct sp_buf *out)
{
	size_t changes = 0;

	for (size_t i = 0; i < a->n; i++) {
		char *key = cell_key(&a->cells[i]);
		const struct sp_matrix_cell *other = find_cell(b, key);

		if (!other) {
			sp_buf_addf(out, "- %s: only in the first run\n", key);
			changes++;
		} else if (cells_differ(&a->cells[i], other, only_reachability)) {
			sp_buf_addf(out, "~ %s: ", key);
			describe(&a->cells[i], out);
			sp_buf_add(out, " -> ");
			describe(other, out);
			sp_buf_add(out, "\n");
			changes++;
		}
		free(key);
	}
	for (size_t i = 0; i < b->n; i++) {
		char *key = cell_key(&b->cells[i]);

		if (!find_cell(a, key)) {
			sp_buf_addf(out, "+ %s: only in the second run\n", key);
			changes++;
		}
		free(key);
	}
	return changes;
}
