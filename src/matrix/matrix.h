/* svcproxy-matrix's helper program: reads scenarios for the shell harness
 * and renders or compares the cells it measured. The harness (bash, in
 * svcproxy-matrix.in) owns everything that touches namespaces; this side
 * never makes a syscall beyond file I/O. */
#ifndef SVCPROXY_MATRIX_H
#define SVCPROXY_MATRIX_H

#include <stdbool.h>
#include <stdio.h>

#include "svcproxy/diag.h"
#include "svcproxy/util.h"

/* The JSON keys of one cell, in output order (the interface). The
 * harness writes cells as tab-separated lines in this order, "-" for null. */
enum sp_matrix_field {
	SP_MATRIX_SCENARIO,
	SP_MATRIX_MODE,
	SP_MATRIX_NETWORK,
	SP_MATRIX_SERVICE,
	SP_MATRIX_TARGET,
	SP_MATRIX_TARGET_NODE,
	SP_MATRIX_CLIENT,
	SP_MATRIX_CLIENT_NODE,
	SP_MATRIX_CLIENT_ADDRESS,
	SP_MATRIX_REACHABLE,
	SP_MATRIX_ENDPOINT,
	SP_MATRIX_SOURCE_SEEN,
	SP_MATRIX_N_FIELDS,
};

extern const char *const sp_matrix_field_names[SP_MATRIX_N_FIELDS];

/* One measured cell; NULL fields are JSON null. */
struct sp_matrix_cell {
	char *field[SP_MATRIX_N_FIELDS]; /* REACHABLE is "true"/"false" */
};

struct sp_matrix_cells {
	struct sp_matrix_cell *cells;
	size_t n, cap;
};

void sp_matrix_cells_free(struct sp_matrix_cells *cs);
bool sp_matrix_cell_reachable(const struct sp_matrix_cell *c);

/* Append the cells of a harness TSV file. 0, or -1 with diag. */
int sp_matrix_read_tsv(struct sp_matrix_cells *cs, const char *path, struct sp_diag *diag);
/* Append the cells of a `{"cells": [...]}` file. 0, or -1 with diag. */
int sp_matrix_read_json(struct sp_matrix_cells *cs, const char *path, struct sp_diag *diag);

void sp_matrix_write_json(const struct sp_matrix_cells *cs, struct sp_buf *out);
void sp_matrix_write_text(const struct sp_matrix_cells *cs, struct sp_buf *out);
void sp_matrix_write_html(const struct sp_matrix_cells *cs, struct sp_buf *out);
/* Describe every cell that differs between a and b (only_reachability:
 * compare the reachable flag alone). Returns the number of differences. */
size_t sp_matrix_diff(const struct sp_matrix_cells *a, const struct sp_matrix_cells *b,
		      bool only_reachability, struct sp_buf *out);

/* Read a scenario (files or folders of Kubernetes JSON plus one
 * MatrixLayout object), write the Kubernetes objects for `svcproxy sync` to
 * objects_path and the layout, one tab-separated record per line, to out.
 * 0, or -1 with diag. */
int sp_matrix_scenario_layout(const char *const *paths, size_t n_paths, const char *objects_path,
			      struct sp_buf *out, struct sp_diag *diag);

#endif
