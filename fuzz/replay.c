/* Runs a fuzz target once per file: each argument is a file or a directory
 * of them (one level). Exit 0 when every input was run; a crash is the
 * failure, as under libFuzzer. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"
#include "svcproxy/util.h"

static size_t n_run;

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	struct sp_buf b;
	char chunk[65536];
	size_t n;

	if (!f) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return -1;
	}
	sp_buf_init(&b);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		sp_buf_addn(&b, chunk, n);
	if (ferror(f)) {
		fprintf(stderr, "%s: read error\n", path);
		fclose(f);
		sp_buf_free(&b);
		return -1;
	}
	fclose(f);
	/* A private copy of exactly the input's size, so that ASan sees a
	 * read past its end as libFuzzer would. */
	{
		uint8_t *copy = sp_xmalloc(b.len ? b.len : 1);

		memcpy(copy, b.data ? b.data : "", b.len);
		LLVMFuzzerTestOneInput(copy, b.len);
		free(copy);
	}
	sp_buf_free(&b);
	n_run++;
	return 0;
}

static int run_path(const char *path)
{
	struct stat st;
	struct dirent *de;
	DIR *d;
	int ret = 0;

	if (stat(path, &st) < 0) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode))
		return run_file(path);
	d = opendir(path);
	if (!d) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return -1;
	}
	while ((de = readdir(d))) {
		char *sub;

		if (de->d_name[0] == '.')
			continue;
		sub = sp_xasprintf("%s/%s", path, de->d_name);
		if (stat(sub, &st) == 0 && S_ISREG(st.st_mode) && run_file(sub) < 0)
			ret = -1;
		free(sub);
	}
	closedir(d);
	return ret;
}

int main(int argc, char **argv)
{
	int ret = 0;

	for (int i = 1; i < argc; i++)
		if (run_path(argv[i]) < 0)
			ret = 1;
	printf("%s: %zu inputs run\n", argv[0], n_run);
	return ret;
}
