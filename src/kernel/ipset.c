/* ipsets through libipset's command interface: the same parser and netlink
 * code the ipset tool uses, driven with argument vectors, its output (list
 * in save format) collected through a print hook. One command per call; a
 * failed command leaves libipset's session unusable for the next one, so
 * the handle is renewed after an error. */
#include "svcproxy/ipset.h"

#include <errno.h>
#include <libipset/ipset.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svcproxy/util.h"

struct sp_ipset {
	struct ipset *h;
	struct sp_buf out; /* what the last command printed */
	char err[512];	   /* why the last command failed, "" when it did not */
	unsigned long commands;
};

static int collect_output(struct ipset_session *session, void *p, const char *fmt, ...)
{
	struct sp_ipset *is = p;
	va_list ap;

	(void)session;
	va_start(ap, fmt);
	sp_buf_vaddf(&is->out, fmt, ap);
	va_end(ap);
	return 0;
}

static int custom_error(struct ipset *h, void *p, int status, const char *msg, ...)
{
	struct sp_ipset *is = p;
	va_list ap;

	(void)h;
	(void)status;
	va_start(ap, msg);
	vsnprintf(is->err, sizeof(is->err), msg, ap);
	va_end(ap);
	return -1;
}

static int standard_error(struct ipset *h, void *p)
{
	struct sp_ipset *is = p;
	struct ipset_session *s = ipset_session(h);

	/* Warnings (e.g. "already added" without -exist) are not failures. */
	if (ipset_session_report_type(s) == IPSET_ERROR)
		snprintf(is->err, sizeof(is->err), "%s", ipset_session_report_msg(s));
	ipset_session_report_reset(s);
	return is->err[0] ? -1 : 0;
}

static void handle_open(struct sp_ipset *is)
{
	is->h = ipset_init();
	if (!is->h)
		sp_xmalloc(SIZE_MAX); /* out of memory: abort like every allocation */
	ipset_custom_printf(is->h, custom_error, standard_error, collect_output, is);
}

struct sp_ipset *sp_ipset_open(void)
{
	struct sp_ipset *is = sp_xcalloc(1, sizeof(*is));
	static bool types_loaded;

	if (!types_loaded) {
		ipset_load_types();
		types_loaded = true;
	}
	sp_buf_init(&is->out);
	handle_open(is);
	return is;
}

void sp_ipset_close(struct sp_ipset *is)
{
	if (!is)
		return;
	ipset_fini(is->h);
	sp_buf_free(&is->out);
	free(is);
}

unsigned long sp_ipset_commands(const struct sp_ipset *is)
{
	return is->commands;
}

/* argv[0] is the program name, as for main(). */
static int run(struct sp_ipset *is, int argc, const char **argv)
{
	int ret;

	sp_buf_reset(&is->out);
	is->err[0] = '\0';
	is->commands++;
	ret = ipset_parse_argv(is->h, argc, (char **)argv);
	if (ret == 0 && !is->err[0])
		return 0;
	if (!is->err[0])
		snprintf(is->err, sizeof(is->err), "failed");
	is->err[strcspn(is->err, "\n")] = '\0';
	ipset_fini(is->h);
	handle_open(is);
	return -1;
}

int sp_ipset_names(struct sp_ipset *is, char ***names, size_t *n, struct sp_diag *diag)
{
	const char *argv[] = {"ipset", "list", "-n"};
	size_t cap = *n;
	char *line, *save = NULL;

	if (run(is, 3, argv) < 0) {
		sp_diag_error(diag, "ipset: listing set names: %s", is->err);
		return -1;
	}
	for (line = strtok_r(is->out.data, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		*(char **)sp_array_push(names, n, &cap, sizeof(char *)) = sp_xstrdup(line);
	return 0;
}

/* "create NAME TYPE family F ..." */
static void parse_create(const char *line, char **type, char **family)
{
	char t[64] = "", f[16] = "";

	sscanf(line, "create %*s %63s family %15s", t, f);
	*type = sp_xstrdup(t);
	*family = sp_xstrdup(f);
}

int sp_ipset_members(struct sp_ipset *is, const char *name, char **type, char **family,
		     char ***members, size_t *n, struct sp_diag *diag)
{
	const char *argv[] = {"ipset", "list", "-o", "save", name};
	size_t cap = *n, prefix = strlen("add ") + strlen(name) + 1;
	char *line, *save = NULL;

	*type = *family = NULL;
	if (run(is, 5, argv) < 0) {
		sp_diag_error(diag, "ipset: reading set %s: %s", name, is->err);
		return -1;
	}
	for (line = strtok_r(is->out.data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (!strncmp(line, "create ", 7) && !*type)
			parse_create(line, type, family);
		else if (!strncmp(line, "add ", 4) && strlen(line) > prefix)
			*(char **)sp_array_push(members, n, &cap, sizeof(char *)) =
				sp_xstrdup(line + prefix);
	}
	if (!*type)
		parse_create("", type, family);
	return 0;
}

int sp_ipset_restore(struct sp_ipset *is, const char *text, struct sp_diag *diag)
{
	FILE *f;

	if (!text || !*text)
		return 0;
	/* A fresh handle: its error messages count lines from this text. */
	ipset_fini(is->h);
	handle_open(is);
	ipset_envopt_set(ipset_session(is->h), IPSET_ENV_EXIST);
	f = fmemopen((void *)text, strlen(text), "r");
	if (!f) {
		sp_diag_error(diag, "ipset: restore: %s", strerror(errno));
		return -1;
	}
	sp_buf_reset(&is->out);
	is->err[0] = '\0';
	is->commands++;
	if (ipset_parse_stream(is->h, f) != 0 && !is->err[0])
		snprintf(is->err, sizeof(is->err), "failed");
	fclose(f);
	if (!is->err[0])
		return 0;
	is->err[strcspn(is->err, "\n")] = '\0';
	sp_diag_error(diag, "ipset: restore: %s", is->err);
	ipset_fini(is->h);
	handle_open(is);
	return -1;
}
