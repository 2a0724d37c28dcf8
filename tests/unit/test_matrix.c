/* svcproxy-matrix's C side: scenario records, cell I/O, diff. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "matrix.h"

static char *example(const char *name)
{
	const char *top = getenv("top_srcdir");

	return sp_xasprintf("%s/examples/matrix/%s", top ? top : ".", name);
}

static char *layout_of(const char *name, struct sp_diag *diag, int *rc)
{
	char *path = example(name);
	const char *paths[] = {path};
	struct sp_buf out;

	sp_buf_init(&out);
	*rc = sp_matrix_scenario_layout(paths, 1, NULL, &out, diag);
	free(path);
	return sp_buf_steal(&out);
}

START_TEST(layout_records)
{
	struct sp_diag diag;
	int rc;
	char *text;

	sp_diag_init(&diag);
	text = layout_of("elb-local.json", &diag, &rc);
	ck_assert_int_eq(rc, 0);
	ck_assert_ptr_nonnull(strstr(text, "scenario\telb-local\n"));
	ck_assert_ptr_nonnull(strstr(
		text, "node\tnode-1\t192.0.2.11\t10.244.1.0/24\t10.244.1.0\t10.244.1.250\n"));
	ck_assert_ptr_nonnull(
		strstr(text, "service\tshop/frontend\ttcp\t80\t30080\t32080\tLocal\n"));
	ck_assert_ptr_nonnull(
		strstr(text, "target\tshop/frontend\tcluster-ip\t10.96.0.80\t80\t-\n"));
	ck_assert_ptr_nonnull(
		strstr(text, "target\tshop/frontend\texternal-ip\t203.0.113.50\t80\t-\n"));
	ck_assert_ptr_nonnull(strstr(
		text, "endpoint\tshop/frontend\tfrontend-1\tnode-2\t10.244.2.10\ttcp\t8080\t1\n"));
	ck_assert_ptr_nonnull(strstr(text, "extipnode\tnode-1\n"));
	free(text);
	sp_diag_free(&diag);
}
END_TEST

START_TEST(layout_policy_and_targets)
{
	struct sp_diag diag;
	int rc;
	char *text;

	sp_diag_init(&diag);
	text = layout_of("elb-local-cluster-policy.json", &diag, &rc);
	ck_assert_int_eq(rc, 0);
	ck_assert_ptr_nonnull(strstr(text, "\t30080\t0\tCluster\n"));
	free(text);
	text = layout_of("elb-local-cluster-ip.json", &diag, &rc);
	ck_assert_int_eq(rc, 0);
	ck_assert_ptr_nonnull(strstr(text, "measure\tcluster-ip\n"));
	ck_assert_ptr_null(strstr(text, "measure\tnode-port\n"));
	free(text);
	sp_diag_free(&diag);
}
END_TEST

START_TEST(layout_missing_is_an_error)
{
	char path[] = "/tmp/test_matrix.XXXXXX";
	const char *paths[] = {path};
	struct sp_diag diag;
	struct sp_buf out;
	int fd = mkstemp(path);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_gt(write(fd, "{\"kind\": \"Service\"}", 19), 0);
	close(fd);
	sp_diag_init(&diag);
	sp_buf_init(&out);
	ck_assert_int_eq(sp_matrix_scenario_layout(paths, 1, NULL, &out, &diag), -1);
	ck_assert(sp_diag_has(&diag, SP_SEV_ERROR, "no MatrixLayout object"));
	unlink(path);
	sp_buf_free(&out);
	sp_diag_free(&diag);
}
END_TEST

static void add_cell(struct sp_matrix_cells *cs, const char *target_node, bool reachable,
		     const char *endpoint)
{
	static const char *const base[SP_MATRIX_N_FIELDS] = {
		"s",	       "nftables", "tunnel",	    "ns/svc", "node-port", NULL,
		"off-cluster", NULL,	   "198.51.100.10", NULL,     NULL,	   NULL,
	};
	struct sp_matrix_cell *c = sp_array_push(&cs->cells, &cs->n, &cs->cap, sizeof(*c));

	for (int f = 0; f < SP_MATRIX_N_FIELDS; f++)
		c->field[f] = base[f] ? sp_xstrdup(base[f]) : NULL;
	c->field[SP_MATRIX_TARGET_NODE] = sp_xstrdup(target_node);
	c->field[SP_MATRIX_REACHABLE] = sp_xstrdup(reachable ? "true" : "false");
	c->field[SP_MATRIX_ENDPOINT] = endpoint ? sp_xstrdup(endpoint) : NULL;
}

START_TEST(json_keys_and_nulls)
{
	struct sp_matrix_cells cs = {0};
	struct sp_buf out;

	add_cell(&cs, "node-1", false, NULL);
	sp_buf_init(&out);
	sp_matrix_write_json(&cs, &out);
	ck_assert_str_eq(
		out.data,
		"{\"cells\": [\n  {\"scenario\": \"s\", \"mode\": \"nftables\", \"network\": "
		"\"tunnel\", \"service\": \"ns/svc\", \"target\": \"node-port\", "
		"\"target_node\": \"node-1\", \"client\": \"off-cluster\", "
		"\"client_node\": null, \"client_address\": \"198.51.100.10\", "
		"\"reachable\": false, \"endpoint\": null, \"source_seen\": null}\n]}\n");
	sp_buf_free(&out);
	sp_matrix_cells_free(&cs);
}
END_TEST

START_TEST(diff_names_changes)
{
	struct sp_matrix_cells a = {0}, b = {0};
	struct sp_buf out;

	add_cell(&a, "node-1", false, NULL);
	add_cell(&a, "node-2", true, "web-1");
	add_cell(&b, "node-1", true, "web-1");
	add_cell(&b, "node-2", true, "web-2");
	sp_buf_init(&out);
	ck_assert_uint_eq(sp_matrix_diff(&a, &a, false, &out), 0);
	ck_assert_uint_eq(sp_matrix_diff(&a, &b, false, &out), 2);
	ck_assert_uint_eq(sp_matrix_diff(&a, &b, true, &out), 1);
	ck_assert_ptr_nonnull(strstr(out.data, "node-port node-1 off-cluster -: not reachable -> "
					       "reachable (web-1 saw ?)"));
	sp_buf_free(&out);
	sp_matrix_cells_free(&a);
	sp_matrix_cells_free(&b);
}
END_TEST

static Suite *matrix_suite(void)
{
	Suite *s = suite_create("matrix");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, layout_records);
	tcase_add_test(tc, layout_policy_and_targets);
	tcase_add_test(tc, layout_missing_is_an_error);
	tcase_add_test(tc, json_keys_and_nulls);
	tcase_add_test(tc, diff_names_changes);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(matrix_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
