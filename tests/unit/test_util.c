#include <check.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "svcproxy/diag.h"
#include "svcproxy/util.h"

START_TEST(addr_roundtrip)
{
	static const struct {
		const char *in;
		int family;
		const char *out;
	} cases[] = {
		{"10.0.0.1", AF_INET, "10.0.0.1"},
		{"fd00::1", AF_INET6, "fd00::1"},
		{"FD00:0::1", AF_INET6, "fd00::1"},
		{"010.0.0.1", 0, NULL},
		{"10.0.0.256", 0, NULL},
		{"", 0, NULL},
		{"10.0.0.1/32", 0, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sp_addr a;
		char buf[SP_ADDRSTRLEN];
		bool ok = sp_addr_parse(cases[i].in, &a);

		ck_assert_msg(ok == (cases[i].family != 0), "parse %s", cases[i].in);
		if (!ok)
			continue;
		ck_assert_int_eq(a.family, cases[i].family);
		ck_assert_str_eq(sp_addr_format(&a, buf), cases[i].out);
	}
}
END_TEST

START_TEST(cidr_parse_and_contains)
{
	struct sp_cidr c;
	struct sp_addr a;
	char buf[SP_CIDRSTRLEN];

	ck_assert(sp_cidr_parse("10.244.0.0/16", &c));
	ck_assert_str_eq(sp_cidr_format(&c, buf), "10.244.0.0/16");
	ck_assert(sp_addr_parse("10.244.3.4", &a));
	ck_assert(sp_cidr_contains(&c, &a));
	ck_assert(sp_addr_parse("10.245.0.1", &a));
	ck_assert(!sp_cidr_contains(&c, &a));
	ck_assert(sp_addr_parse("fd00::1", &a));
	ck_assert(!sp_cidr_contains(&c, &a));
	ck_assert(!sp_cidr_parse("10.244.0.1/16", &c)); /* host bits set */
	ck_assert(!sp_cidr_parse("10.0.0.0/33", &c));
	ck_assert(!sp_cidr_parse("10.0.0.0/", &c));
	ck_assert(sp_cidr_parse("192.0.2.7", &c));
	ck_assert_uint_eq(c.prefix, 32);
	ck_assert(sp_cidr_parse("0.0.0.0/0", &c));
	ck_assert(sp_cidr_contains(&c, &(struct sp_addr){.family = AF_INET}));
}
END_TEST

START_TEST(special_addresses)
{
	const char *special[] = {"0.0.0.0", "127.0.0.1", "224.0.0.1", "255.255.255.255",
				 "::",	    "::1",	 "ff02::1"};
	const char *plain[] = {"10.0.0.1", "192.168.7.200", "fd00::10"};
	struct sp_addr a;

	for (size_t i = 0; i < sizeof(special) / sizeof(*special); i++) {
		ck_assert(sp_addr_parse(special[i], &a));
		ck_assert_msg(sp_addr_is_special(&a), "%s is special", special[i]);
	}
	for (size_t i = 0; i < sizeof(plain) / sizeof(*plain); i++) {
		ck_assert(sp_addr_parse(plain[i], &a));
		ck_assert_msg(!sp_addr_is_special(&a), "%s is plain", plain[i]);
	}
}
END_TEST

START_TEST(parse_long_is_strict)
{
	long v;

	ck_assert(sp_parse_long("80", 1, 65535, &v) && v == 80);
	ck_assert(!sp_parse_long("70000", 1, 65535, &v));
	ck_assert(!sp_parse_long("8O", 1, 65535, &v));
	ck_assert(!sp_parse_long(" 8", 1, 65535, &v));
	ck_assert(!sp_parse_long("", 1, 65535, &v));
}
END_TEST

START_TEST(buf_and_diag)
{
	struct sp_buf b;
	struct sp_diag d;
	char *s;

	sp_buf_init(&b);
	for (int i = 0; i < 1000; i++)
		sp_buf_addf(&b, "%d,", i);
	ck_assert_uint_eq(b.len, strlen(b.data));
	s = sp_buf_steal(&b);
	ck_assert(!strncmp(s, "0,1,2,", 6));
	free(s);
	ck_assert_ptr_null(b.data);

	sp_diag_init(&d);
	sp_diag_error(&d, "svc.json: Service %s: %s", "default/web", "spec.ports[1].port");
	sp_diag_warn(&d, "note");
	ck_assert_uint_eq(d.n_errors, 1);
	ck_assert_uint_eq(d.n_warnings, 1);
	ck_assert(sp_diag_has(&d, SP_SEV_ERROR, "default/web"));
	ck_assert(!sp_diag_has(&d, SP_SEV_ERROR, "note"));
	sp_diag_free(&d);
}
END_TEST

START_TEST(json_string_escapes)
{
	struct sp_buf b;

	sp_buf_init(&b);
	sp_buf_add_json_string(&b, "default/web:http");
	sp_buf_add(&b, " ");
	sp_buf_add_json_string(&b, "a\"b\\c\n\x01" "d");
	sp_buf_add(&b, " ");
	sp_buf_add_json_string(&b, NULL);
	ck_assert_str_eq(b.data, "\"default/web:http\" \"a\\\"b\\\\c\\u000a\\u0001d\" \"\"");
	sp_buf_free(&b);
}
END_TEST

START_TEST(sorted_find_str)
{
	struct named {
		int pad;
		const char *name;
	} items[] = {{1, "a"}, {2, "c"}, {3, "e"}};
	bool found;

	ck_assert_uint_eq(sp_sorted_find_str(items, 3, sizeof(*items), offsetof(struct named, name),
					     "c", &found),
			  1);
	ck_assert(found);
	ck_assert_uint_eq(sp_sorted_find_str(items, 3, sizeof(*items), offsetof(struct named, name),
					     "d", &found),
			  2);
	ck_assert(!found);
	ck_assert_uint_eq(sp_sorted_find_str(items, 3, sizeof(*items), offsetof(struct named, name),
					     "z", &found),
			  3);
	ck_assert(!found);
	ck_assert_uint_eq(sp_sorted_find_str(NULL, 0, sizeof(*items), offsetof(struct named, name),
					     "a", &found),
			  0);
	ck_assert(!found);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("util");
	TCase *tc = tcase_create("core");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, addr_roundtrip);
	tcase_add_test(tc, cidr_parse_and_contains);
	tcase_add_test(tc, special_addresses);
	tcase_add_test(tc, parse_long_is_strict);
	tcase_add_test(tc, buf_and_diag);
	tcase_add_test(tc, sorted_find_str);
	tcase_add_test(tc, json_string_escapes);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
