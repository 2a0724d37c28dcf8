/* svcproxy-matrix-tool: the C half of svcproxy-matrix, run by the harness.
 *
 *   svcproxy-matrix-tool layout OBJECTS_OUT SCENARIO...
 *   svcproxy-matrix-tool report [--text] [--json FILE] [--html FILE] CELLS.tsv...
 *   svcproxy-matrix-tool diff [--reachability] A.json B.json
 *
 * Exit status: 0 done (diff: no change), 1 diff found changes, 2 error. */
#include "matrix.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#define PROG "svcproxy-matrix-tool"

static void print_diag(const struct sp_diag *diag)
{
	for (size_t i = 0; i < diag->n_msgs; i++)
		fprintf(stderr, PROG ": %s%s\n",
			diag->msgs[i].severity == SP_SEV_WARNING ? "warning: " : "",
			diag->msgs[i].text);
}

static int write_file(const char *path, const struct sp_buf *b)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "w") : stdout;
	int rc = 0;

	if (!f || fwrite(b->data ? b->data : "", 1, b->len, f) != b->len) {
		fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
		rc = -1;
	}
	if (f && f != stdout && fclose(f)) {
		fprintf(stderr, PROG ": %s: %s\n", path, strerror(errno));
		rc = -1;
	}
	return rc;
}

static int cmd_layout(int argc, char **argv)
{
	struct sp_diag diag;
	struct sp_buf out;
	int rc;

	if (argc < 3) {
		fprintf(stderr, "usage: " PROG " layout OBJECTS_OUT SCENARIO...\n");
		return 2;
	}
	sp_diag_init(&diag);
	sp_buf_init(&out);
	rc = sp_matrix_scenario_layout((const char *const *)argv + 2, (size_t)argc - 2, argv[1],
				       &out, &diag);
	print_diag(&diag);
	if (!rc)
		rc = write_file("-", &out);
	sp_buf_free(&out);
	sp_diag_free(&diag);
	return rc ? 2 : 0;
}

static int cmd_report(int argc, char **argv)
{
	static const struct option opts[] = {
		{"text", no_argument, NULL, 't'},
		{"json", required_argument, NULL, 'j'},
		{"html", required_argument, NULL, 'H'},
		{NULL, 0, NULL, 0},
	};
	const char *json = NULL, *html = NULL;
	bool text = false;
	struct sp_matrix_cells cells = {0};
	struct sp_diag diag;
	struct sp_buf out;
	int opt, rc = 0;

	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 't':
			text = true;
			break;
		case 'j':
			json = optarg;
			break;
		case 'H':
			html = optarg;
			break;
		default:
			return 2;
		}
	}
	sp_diag_init(&diag);
	for (int i = optind; i < argc; i++)
		if (sp_matrix_read_tsv(&cells, argv[i], &diag))
			rc = -1;
	print_diag(&diag);
	sp_diag_free(&diag);
	sp_buf_init(&out);
	if (!rc && text) {
		sp_matrix_write_text(&cells, &out);
		rc = write_file("-", &out);
	}
	if (!rc && json) {
		sp_buf_reset(&out);
		sp_matrix_write_json(&cells, &out);
		rc = write_file(json, &out);
	}
	if (!rc && html) {
		sp_buf_reset(&out);
		sp_matrix_write_html(&cells, &out);
		rc = write_file(html, &out);
	}
	sp_buf_free(&out);
	sp_matrix_cells_free(&cells);
	return rc ? 2 : 0;
}

static int cmd_diff(int argc, char **argv)
{
	bool only_reachability = argc > 1 && !strcmp(argv[1], "--reachability");
	struct sp_matrix_cells a = {0}, b = {0};
	struct sp_diag diag;
	struct sp_buf out;
	size_t changes = 0;
	int rc;

	argc -= only_reachability;
	argv += only_reachability;
	if (argc != 3) {
		fprintf(stderr, "usage: " PROG " diff [--reachability] A.json B.json\n");
		return 2;
	}
	sp_diag_init(&diag);
	sp_buf_init(&out);
	rc = sp_matrix_read_json(&a, argv[1], &diag) | sp_matrix_read_json(&b, argv[2], &diag);
	print_diag(&diag);
	if (!rc) {
		changes = sp_matrix_diff(&a, &b, only_reachability, &out);
		sp_buf_addf(&out, "%zu cell%s changed\n", changes, changes == 1 ? "" : "s");
		rc = write_file("-", &out);
	}
	sp_buf_free(&out);
	sp_diag_free(&diag);
	sp_matrix_cells_free(&a);
	sp_matrix_cells_free(&b);
	if (rc)
		return 2;
	return changes ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "layout"))
		return cmd_layout(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "report"))
		return cmd_report(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "diff"))
		return cmd_diff(argc - 1, argv + 1);
	fprintf(stderr, "usage: " PROG " layout|report|diff ...\n"
			"(run by svcproxy-matrix; see svcproxy-matrix(1))\n");
	return 2;
}
