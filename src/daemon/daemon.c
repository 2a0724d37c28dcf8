/* Placeholder until the loop lands: the entry point exists so the command
 * line can be wired. */
#include "svcproxy/daemon.h"

int sp_daemon_run(const struct sp_daemon_opts *opts, struct sp_diag *diag)
{
	(void)opts;
	sp_diag_error(diag, "svcproxy run: the daemon is not built yet");
	return 1;
}
