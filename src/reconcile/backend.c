#include "svcproxy/backend.h"

#include <stddef.h>

const struct sp_backend_ops *sp_backend_for_mode(enum sp_mode mode)
{
	switch (mode) {
	case SP_MODE_NFTABLES:
		return &sp_nftables_ops;
	case SP_MODE_IPTABLES:
		return &sp_iptables_ops;
	case SP_MODE_IPVS:
		return &sp_ipvs_ops;
	case SP_MODE_NONE:
		break;
	}
	return NULL;
}
