/* Placeholder: replaced by the source module. */
#include "svcproxy/source.h"
#include "svcproxy/config.h"

void sp_source_limits_default(struct sp_source_limits *lim)
{
	lim->max_file_bytes = 64u << 20;
	lim->max_depth = 64;
	lim->max_items = 100000;
}

int sp_source_read_path(struct sp_cluster *c, const char *path,
			const struct sp_source_limits *lim, struct sp_diag *diag)
{
	(void)c;
	(void)lim;
	sp_diag_error(diag, "%s: JSON reader not built yet", path);
	return -1;
}
