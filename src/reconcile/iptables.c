/* Placeholder until the iptables mode lands: the command line reports the mode
 * as not yet available. */
#include "svcproxy/backend.h"

const struct sp_backend_ops sp_iptables_ops = {
	.mode = SP_MODE_IPTABLES,
};
