/* Fuzz target: read -> sp_plan_build -> every mode's printers. The first
 * byte picks node options (so that the fuzzer can reach the paths they
 * open); the rest is the JSON input. Each input is planned for all three
 * modes: the plan itself depends on the mode. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "svcproxy/backend.h"
#include "svcproxy/plan.h"
#include "svcproxy/source.h"

static void set_cidr(struct sp_cidr **out, size_t *n, const char *text)
{
	*out = sp_xcalloc(1, sizeof(**out));
	if (!sp_cidr_parse(text, *out))
		abort(); /* a broken harness, not a finding */
	*n = 1;
}

static void node_config(struct sp_config *cfg, enum sp_mode mode, uint8_t flags)
{
	sp_config_init(cfg);
	cfg->mode = mode;
	cfg->hostname = sp_xstrdup("node-1");
	cfg->masquerade_all = flags & 1;
	if (flags & 2)
		set_cidr(&cfg->cluster_cidrs, &cfg->n_cluster_cidrs, "10.244.0.0/16");
	if (flags & 4)
		set_cidr(&cfg->nodeport_cidrs, &cfg->n_nodeport_cidrs, "192.0.2.0/24");
	if (flags & 8) {
		cfg->node_ips = sp_xcalloc(1, sizeof(*cfg->node_ips));
		sp_addr_parse((flags & 16) ? "2001:db8::11" : "192.0.2.11", cfg->node_ips);
		cfg->n_node_ips = 1;
	}
	if (flags & 32)
		cfg->ipvs_capture = SP_IPVS_CAPTURE_WHOLE_ADDRESS;
	if (flags & 64)
		cfg->masquerade_bit = 31;
}

static void plan_and_print(const struct sp_cluster *c, enum sp_mode mode, uint8_t flags)
{
	const struct sp_backend_ops *ops = sp_backend_for_mode(mode);
	struct sp_config cfg;
	struct sp_plan plan;
	struct sp_diag diag;
	struct sp_buf out;

	node_config(&cfg, mode, flags);
	sp_diag_init(&diag);
	sp_buf_init(&out);
	memset(&plan, 0, sizeof(plan));
	sp_plan_build(&plan, c, &cfg, &diag);
	ops->print_plan(&plan, &out);
	sp_buf_reset(&out);
	ops->print_plan_json(&plan, &out);
	sp_buf_reset(&out);
	sp_plan_print_json(&plan, &out);
	sp_buf_free(&out);
	sp_plan_free(&plan);
	sp_diag_free(&diag);
	sp_config_free(&cfg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum sp_mode modes[] = {SP_MODE_NFTABLES, SP_MODE_IPTABLES, SP_MODE_IPVS};
	struct sp_source_limits lim;
	struct sp_cluster c;
	struct sp_diag diag;
	uint8_t flags;

	if (size < 1)
		return 0;
	flags = data[0];
	sp_source_limits_default(&lim);
	sp_cluster_init(&c);
	sp_diag_init(&diag);
	if (sp_source_read_buffer(&c, "fuzz.json", (const char *)data + 1, size - 1, &lim, &diag) >=
	    0)
		for (size_t i = 0; i < SP_ARRAY_SIZE(modes); i++)
			plan_and_print(&c, modes[i], flags);
	sp_cluster_free(&c);
	sp_diag_free(&diag);
	return 0;
}
