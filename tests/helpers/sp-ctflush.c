/* Test helper: run svcproxy's conntrack flush between two conntrack
 * summaries (the state file's JSON), in the current network namespace.
 *
 *   sp-ctflush [--dry-run] OLD.json NEW.json
 *       flush what OLD -> NEW made stale (plus OLD's pending flushes)
 *   sp-ctflush --state FILE NEW.json
 *       as a one-shot sync does: FILE is the previous state (missing: none),
 *       rewritten with NEW and whatever failed
 *
 * Prints one line per filter ("flushed N entries: <filter>") and the
 * warnings on stderr. Exit 0 all flushed, 1 something failed, 2 usage. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svcproxy/conntrack.h"

static char *slurp(const char *path)
{
	FILE *fp = fopen(path, "r");
	struct sp_buf b;
	char chunk[4096];
	size_t n;

	if (!fp) {
		fprintf(stderr, "sp-ctflush: %s: %s\n", path, strerror(errno));
		exit(2);
	}
	sp_buf_init(&b);
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
		sp_buf_addn(&b, chunk, n);
	fclose(fp);
	return b.data ? sp_buf_steal(&b) : sp_xstrdup("");
}

static void load(struct sp_ct_summary *s, const char *path, struct sp_diag *d)
{
	char *text = slurp(path);

	if (sp_ct_summary_from_json(s, text, path, d) < 0) {
		fprintf(stderr, "sp-ctflush: %s\n", d->msgs[d->n_msgs - 1].text);
		exit(2);
	}
	free(text);
}

static void print_diag(const struct sp_diag *d)
{
	for (size_t i = 0; i < d->n_msgs; i++)
		fprintf(d->msgs[i].severity == SP_SEV_INFO ? stdout : stderr, "%s\n",
			d->msgs[i].text);
}

static int usage(void)
{
	fprintf(stderr, "usage: sp-ctflush [--dry-run] OLD.json NEW.json\n"
			"       sp-ctflush --state FILE NEW.json\n");
	return 2;
}

int main(int argc, char **argv)
{
	struct sp_ct_summary old, new;
	struct sp_ct_stats stats = {0};
	struct sp_diag d;
	int ret;

	sp_diag_init(&d);
	if (argc == 4 && strcmp(argv[1], "--state") == 0) {
		load(&new, argv[3], &d);
		ret = sp_ct_sync_summary(argv[2], &new, &stats, &d);
		sp_ct_summary_free(&new);
	} else if (argc == 4 && strcmp(argv[1], "--dry-run") == 0) {
		struct sp_ct_filters f;
		struct sp_buf b;

		load(&old, argv[2], &d);
		load(&new, argv[3], &d);
		sp_ct_filters_init(&f);
		sp_ct_stale(&old, &new, &f);
		sp_buf_init(&b);
		for (size_t i = 0; i < f.n; i++) {
			sp_buf_reset(&b);
			sp_ct_filter_format(&f.items[i], &b);
			printf("%s\n", b.data);
		}
		sp_buf_free(&b);
		sp_ct_filters_free(&f);
		sp_ct_summary_free(&old);
		sp_ct_summary_free(&new);
		return 0;
	} else if (argc == 3) {
		struct sp_ct_filters pending;

		load(&old, argv[1], &d);
		load(&new, argv[2], &d);
		sp_ct_filters_init(&pending);
		ret = sp_ct_flush_stale(&old, &new, &pending, &stats, &d);
		sp_ct_filters_free(&pending);
		sp_ct_summary_free(&old);
		sp_ct_summary_free(&new);
	} else {
		return usage();
	}
	print_diag(&d);
	printf("filters %zu failed %zu deleted %zu dumps %zu\n", stats.filters,
	       stats.filters_failed, stats.entries_deleted, stats.dumps);
	sp_diag_free(&d);
	return ret ? 1 : 0;
}
