/* Fuzz target: the Kubernetes JSON reader (sp_source_read_buffer), with the
 * default limits, as `svcproxy plan|sync` reads a file. */
#include <stdlib.h>

#include "fuzz.h"
#include "svcproxy/source.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sp_source_limits lim;
	struct sp_cluster c;
	struct sp_diag diag;

	sp_source_limits_default(&lim);
	sp_cluster_init(&c);
	sp_diag_init(&diag);
	sp_source_read_buffer(&c, "fuzz.json", (const char *)data, size, &lim, &diag);
	sp_cluster_free(&c);
	sp_diag_free(&diag);
	return 0;
}
