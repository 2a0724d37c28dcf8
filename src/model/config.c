#include "svcproxy/config.h"

#include <stdlib.h>
#include <string.h>

void sp_config_init(struct sp_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->mode = SP_MODE_IPTABLES;
	cfg->masquerade_bit = 14;
	cfg->ipvs_scheduler = sp_xstrdup("rr");
	cfg->ipvs_capture = SP_IPVS_CAPTURE_PER_PORT;
	cfg->ipvs_graceful_period_ms = 15000;
	cfg->sync_period_ms = 30000;
	cfg->min_sync_period_ms = 1000;
	cfg->healthz_bind_address = sp_xstrdup("0.0.0.0:10256");
	cfg->metrics_bind_address = sp_xstrdup("127.0.0.1:10249");
}

void sp_config_free(struct sp_config *cfg)
{
	free(cfg->hostname);
	free(cfg->cluster_cidrs);
	free(cfg->nodeport_cidrs);
	free(cfg->node_ips);
	free(cfg->ipvs_scheduler);
	free(cfg->healthz_bind_address);
	free(cfg->metrics_bind_address);
	free(cfg->config_file);
	memset(cfg, 0, sizeof(*cfg));
}

static const char *const sp_mode_names[] = {
	[SP_MODE_NONE] = "",
	[SP_MODE_IPTABLES] = "iptables",
	[SP_MODE_IPVS] = "ipvs",
	[SP_MODE_NFTABLES] = "nftables",
};

const char *sp_mode_name(enum sp_mode m)
{
	if ((size_t)m < SP_ARRAY_SIZE(sp_mode_names))
		return sp_mode_names[m];
	return "";
}

enum sp_mode sp_mode_parse(const char *name)
{
	for (size_t i = 1; name && i < SP_ARRAY_SIZE(sp_mode_names); i++)
		if (!strcmp(name, sp_mode_names[i]))
			return (enum sp_mode)i;
	return SP_MODE_NONE;
}
