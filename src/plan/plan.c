/* Placeholder: replaced by the planner module. */
#include "svcproxy/plan.h"

#include <string.h>

int sp_plan_build(struct sp_plan *plan, const struct sp_cluster *cluster,
		  const struct sp_config *cfg, struct sp_diag *diag)
{
	(void)cluster;
	memset(plan, 0, sizeof(*plan));
	plan->mode = cfg->mode;
	sp_diag_error(diag, "planner not built yet");
	return 1;
}

void sp_plan_free(struct sp_plan *plan)
{
	memset(plan, 0, sizeof(*plan));
}
