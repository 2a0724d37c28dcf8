/* Placeholder until the ipvs mode lands: the command line reports the mode
 * as not yet available. */
#include "svcproxy/backend.h"

const struct sp_backend_ops sp_ipvs_ops = {
	.mode = SP_MODE_IPVS,
};
