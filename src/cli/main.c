/* svcproxy command line: parse options the way kube-proxy names them, read
 * the sources, build the plan and hand it to the proxy mode. Every problem
 * found on the way is collected in one struct sp_diag and reported here. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "svcproxy/backend.h"
#include "svcproxy/config.h"
#include "svcproxy/conntrack.h"
#include "svcproxy/daemon.h"
#include "svcproxy/diag.h"
#include "svcproxy/model.h"
#include "svcproxy/plan.h"
#include "svcproxy/source.h"

/* Exit statuses shared by every subcommand but diff (see usage). */
enum {
	SP_EXIT_OK = 0,
	SP_EXIT_PARTIAL = 1, /* something skipped or refused; the rest is done */
	SP_EXIT_USAGE = 2,
};

enum sp_cli_command {
	SP_CMD_PLAN,
	SP_CMD_SYNC,
	SP_CMD_DIFF,
	SP_CMD_CLEANUP,
	SP_CMD_RUN,
};

struct sp_cli {
	enum sp_cli_command command;
	struct sp_config cfg;
	bool output_json;
	bool print_stats;
	bool show_state;
	int verbosity; /* 0 errors and warnings, 1 also info */
	char **sources;
	size_t n_sources;
	char *state_dir;  /* conntrack: where the last programmed plan is kept */
	char *kubeconfig; /* run: API server access */
	bool in_cluster;
	/* Kept for SIGHUP, which rebuilds the configuration from them. */
	int argc;
	char **argv;
};

static const char sp_usage[] =
	"Usage: svcproxy COMMAND [OPTIONS] SOURCE...\n"
	"\n"
	"Commands:\n"
	"  plan      print the desired kernel state, touch nothing\n"
	"  sync      program the kernel to match the sources, then exit\n"
	"  diff      print what a sync would change; exit 0 none, 2 some, 1 error\n"
	"  cleanup   remove everything the mode owns (no SOURCE needed)\n"
	"  run       stay running: watch the sources (or the API server when no\n"
	"            SOURCE is given), program every change, serve health and metrics\n"
	"\n"
	"A SOURCE is a JSON file (one object, a v1 List, or `kubectl get -o json`\n"
	"output) or a directory of them.\n"
	"\n"
	"Options (kube-proxy's names):\n"
	"  --proxy-mode MODE            iptables (default), ipvs or nftables\n"
	"  --hostname-override NAME     this node's name (default: the host name)\n"
	"  --node-ip ADDR[,ADDR]        this node's addresses (default: its Node object)\n"
	"  --cluster-cidr CIDR[,CIDR]   pod network; traffic from outside it is masqueraded\n"
	"  --nodeport-addresses CIDR[,CIDR]  addresses node ports listen on\n"
	"  --masquerade-all             masquerade all traffic to Service addresses\n"
	"  --iptables-masquerade-bit N  fwmark bit for masquerade (default 14)\n"
	"  --ipvs-scheduler NAME        rr (default), wlc, sh, lc, wrr, dh, sed, nq, mh\n"
	"  --ipvs-strict-arp            set arp_ignore/arp_announce for kube-ipvs0\n"
	"  --ipvs-capture MODE          per-port (default) or whole-address\n"
	"  --config FILE                a KubeProxyConfiguration (JSON or YAML)\n"
	"  -o, --output FORMAT          text (default) or json (plan)\n"
	"  --max-input-bytes N          refuse a source file (run: also an API list\n"
	"                               answer) larger than N bytes (default 67108864)\n"
	"  --max-json-depth N           ... or one nested deeper than N (default 64)\n"
	"  --max-json-items N           ... or one with more than N entries in one array or\n"
	"                               object (default 100000)\n"
	"  --kubeconfig FILE            run: API server credentials\n"
	"  --in-cluster                 run: use the Pod's service account\n"
	"  --sync-period DURATION       run: full resync interval (default 30s)\n"
	"  --min-sync-period DURATION   run: coalesce changes this long (default 1s)\n"
	"  --healthz-bind-address ADDR:PORT  run: default 0.0.0.0:10256\n"
	"  --metrics-bind-address ADDR:PORT  run: default 127.0.0.1:10249\n"
	"      --stats                  print what the sync sent to the kernel\n"
	"      --show-state             after sync, print the programmed kernel state\n"
	"      --state-dir DIR          where sync keeps what it programmed, to flush\n"
	"                               conntrack entries a change makes stale\n"
	"                               (default $SVCPROXY_STATE_DIR, else\n"
	"                               " SP_CT_DEFAULT_STATE_DIR ")\n"
	"  -v, --verbose                also print informational messages\n"
	"  -h, --help                   this text\n"
	"      --version                the version\n"
	"\n"
	"Exit status: 0 done, 1 something was skipped or refused (the rest is done),\n"
	"2 usage error; diff: 0 nothing to change, 2 changes pending, 1 error.\n";

enum {
	OPT_PROXY_MODE = 256,
	OPT_HOSTNAME,
	OPT_NODE_IP,
	OPT_CLUSTER_CIDR,
	OPT_NODEPORT_ADDRESSES,
	OPT_MASQUERADE_ALL,
	OPT_MASQUERADE_BIT,
	OPT_IPVS_SCHEDULER,
	OPT_IPVS_STRICT_ARP,
	OPT_IPVS_CAPTURE,
	OPT_CONFIG,
	OPT_STATS,
	OPT_SHOW_STATE,
	OPT_VERSION,
	OPT_KUBECONFIG,
	OPT_IN_CLUSTER,
	OPT_SYNC_PERIOD,
	OPT_MIN_SYNC_PERIOD,
	OPT_HEALTHZ_BIND,
	OPT_METRICS_BIND,
	OPT_STATE_DIR,
	OPT_MAX_INPUT_BYTES,
	OPT_MAX_JSON_DEPTH,
	OPT_MAX_JSON_ITEMS,
};

static const struct option sp_options[] = {
	{"proxy-mode", required_argument, NULL, OPT_PROXY_MODE},
	{"hostname-override", required_argument, NULL, OPT_HOSTNAME},
	{"node-ip", required_argument, NULL, OPT_NODE_IP},
	{"cluster-cidr", required_argument, NULL, OPT_CLUSTER_CIDR},
	{"nodeport-addresses", required_argument, NULL, OPT_NODEPORT_ADDRESSES},
	{"masquerade-all", no_argument, NULL, OPT_MASQUERADE_ALL},
	{"iptables-masquerade-bit", required_argument, NULL, OPT_MASQUERADE_BIT},
	{"ipvs-scheduler", required_argument, NULL, OPT_IPVS_SCHEDULER},
	{"ipvs-strict-arp", no_argument, NULL, OPT_IPVS_STRICT_ARP},
	{"ipvs-capture", required_argument, NULL, OPT_IPVS_CAPTURE},
	{"config", required_argument, NULL, OPT_CONFIG},
	{"output", required_argument, NULL, 'o'},
	{"stats", no_argument, NULL, OPT_STATS},
	{"show-state", no_argument, NULL, OPT_SHOW_STATE},
	{"verbose", no_argument, NULL, 'v'},
	{"help", no_argument, NULL, 'h'},
	{"version", no_argument, NULL, OPT_VERSION},
	{"kubeconfig", required_argument, NULL, OPT_KUBECONFIG},
	{"in-cluster", no_argument, NULL, OPT_IN_CLUSTER},
	{"sync-period", required_argument, NULL, OPT_SYNC_PERIOD},
	{"min-sync-period", required_argument, NULL, OPT_MIN_SYNC_PERIOD},
	{"healthz-bind-address", required_argument, NULL, OPT_HEALTHZ_BIND},
	{"metrics-bind-address", required_argument, NULL, OPT_METRICS_BIND},
	{"state-dir", required_argument, NULL, OPT_STATE_DIR},
	{"max-input-bytes", required_argument, NULL, OPT_MAX_INPUT_BYTES},
	{"max-json-depth", required_argument, NULL, OPT_MAX_JSON_DEPTH},
	{"max-json-items", required_argument, NULL, OPT_MAX_JSON_ITEMS},
	{NULL, 0, NULL, 0},
};

static void sp_cli_report(const struct sp_diag *diag, int verbosity)
{
	static const char *const label[] = {
		[SP_SEV_INFO] = "info",
		[SP_SEV_WARNING] = "warning",
		[SP_SEV_ERROR] = "error",
	};

	for (size_t i = 0; i < diag->n_msgs; i++) {
		const struct sp_diag_msg *m = &diag->msgs[i];

		if (m->severity == SP_SEV_INFO && verbosity < 1)
			continue;
		fprintf(stderr, "svcproxy: %s: %s\n", label[m->severity], m->text);
	}
}

typedef bool (*sp_cli_item_parser)(const char *text, void *out);

static bool sp_cli_parse_addr_item(const char *text, void *out)
{
	return sp_addr_parse(text, out);
}

static bool sp_cli_parse_cidr_item(const char *text, void *out)
{
	return sp_cidr_parse(text, out);
}

/* Split "a,b,c", parse each element into a new slot of *items_ptr (count
 * *n) and report each bad one, naming the flag and what it should be. */
static bool sp_cli_parse_list(const char *flag, const char *text, const char *what,
			      sp_cli_item_parser parse, void *items_ptr, size_t *n,
			      size_t elem_size, struct sp_diag *diag)
{
	char *copy = sp_xstrdup(text), *save = NULL;
	size_t cap = *n;
	bool ok = true;

	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		void *slot = sp_array_push(items_ptr, n, &cap, elem_size);

		if (!parse(tok, slot)) {
			sp_diag_error(diag, "--%s: %s is not %s", flag, tok, what);
			(*n)--;
			ok = false;
		}
	}
	free(copy);
	return ok;
}

static bool sp_cli_parse_cidr_list(const char *flag, const char *text, struct sp_cidr **items,
				   size_t *n, struct sp_diag *diag)
{
	return sp_cli_parse_list(flag, text, "a CIDR", sp_cli_parse_cidr_item, items, n,
				 sizeof(**items), diag);
}

static bool sp_cli_parse_addr_list(const char *flag, const char *text, struct sp_addr **items,
				   size_t *n, struct sp_diag *diag)
{
	return sp_cli_parse_list(flag, text, "an IP address", sp_cli_parse_addr_item, items, n,
				 sizeof(**items), diag);
}

static void sp_cli_replace(char **slot, const char *value)
{
	free(*slot);
	*slot = sp_xstrdup(value);
}

/* kube-proxy takes Go durations ("30s", "1m30s", "500ms"), parsed exactly as
 * the configuration file's syncPeriod is. */
static bool sp_cli_parse_duration(const char *flag, const char *text, unsigned *out_ms,
				  struct sp_diag *diag)
{
	uint64_t ms;

	if (!sp_src_parse_duration_ms(text, &ms)) {
		sp_diag_error(diag, "--%s: %s is not a duration (e.g. 30s, 1m, 500ms)", flag, text);
		return false;
	}
	*out_ms = (unsigned)ms; /* at most UINT32_MAX by the parser's contract */
	return true;
}

/* --config is applied before every other flag, so that flags given on the
 * command line override the file (as an operator expects when testing a
 * change to one setting). */
static bool sp_cli_load_config_first(struct sp_config *cfg, int argc, char **argv,
				     struct sp_diag *diag)
{
	for (int i = 1; i < argc; i++) {
		const char *path = NULL;

		if (!strcmp(argv[i], "--config") && i + 1 < argc)
			path = argv[i + 1];
		else if (!strncmp(argv[i], "--config=", 9))
			path = argv[i] + 9;
		if (!path)
			continue;
		sp_cli_replace(&cfg->config_file, path);
		if (sp_config_load_file(cfg, path, diag) < 0)
			return false;
	}
	return true;
}

/* A source limit: a whole number from 1 up. */
static bool sp_cli_parse_limit(const char *flag, const char *text, size_t *out,
			       struct sp_diag *diag)
{
	long v;

	if (!sp_parse_long(text, 1, LONG_MAX, &v)) {
		sp_diag_error(diag, "--%s: %s is not a whole number from 1 up", flag, text);
		return false;
	}
	*out = (size_t)v;
	return true;
}

static bool sp_cli_apply_option(struct sp_cli *cli, struct sp_config *cfg, int opt, const char *arg,
				struct sp_diag *diag)
{
	long v;

	switch (opt) {
	case OPT_PROXY_MODE:
		cfg->mode = sp_mode_parse(arg);
		if (cfg->mode == SP_MODE_NONE) {
			sp_diag_error(diag, "--proxy-mode: %s is not iptables, ipvs or nftables",
				      arg);
			return false;
		}
		return true;
	case OPT_HOSTNAME:
		sp_cli_replace(&cfg->hostname, arg);
		return true;
	case OPT_NODE_IP:
		return sp_cli_parse_addr_list("node-ip", arg, &cfg->node_ips, &cfg->n_node_ips,
					      diag);
	case OPT_CLUSTER_CIDR:
		return sp_cli_parse_cidr_list("cluster-cidr", arg, &cfg->cluster_cidrs,
					      &cfg->n_cluster_cidrs, diag);
	case OPT_NODEPORT_ADDRESSES:
		return sp_cli_parse_cidr_list("nodeport-addresses", arg, &cfg->nodeport_cidrs,
					      &cfg->n_nodeport_cidrs, diag);
	case OPT_MASQUERADE_ALL:
		cfg->masquerade_all = true;
		return true;
	case OPT_MASQUERADE_BIT:
		if (!sp_parse_long(arg, 0, 31, &v)) {
			sp_diag_error(diag, "--iptables-masquerade-bit: %s is not in 0..31", arg);
			return false;
		}
		cfg->masquerade_bit = (unsigned)v;
		return true;
	case OPT_IPVS_SCHEDULER:
		sp_cli_replace(&cfg->ipvs_scheduler, arg);
		return true;
	case OPT_IPVS_STRICT_ARP:
		cfg->ipvs_strict_arp = true;
		return true;
	case OPT_IPVS_CAPTURE:
		if (!strcmp(arg, "per-port")) {
			cfg->ipvs_capture = SP_IPVS_CAPTURE_PER_PORT;
		} else if (!strcmp(arg, "whole-address")) {
			cfg->ipvs_capture = SP_IPVS_CAPTURE_WHOLE_ADDRESS;
		} else {
			sp_diag_error(diag, "--ipvs-capture: %s is not per-port or whole-address",
				      arg);
			return false;
		}
		return true;
	case OPT_CONFIG:
		return true; /* applied first, see sp_cli_load_config_first() */
	case 'o':
		if (!strcmp(arg, "json")) {
			cli->output_json = true;
		} else if (!strcmp(arg, "text")) {
			cli->output_json = false;
		} else {
			sp_diag_error(diag, "--output: %s is not text or json", arg);
			return false;
		}
		return true;
	case OPT_STATS:
		cli->print_stats = true;
		return true;
	case OPT_SHOW_STATE:
		cli->show_state = true;
		return true;
	case 'v':
		cli->verbosity++;
		return true;
	case OPT_STATE_DIR:
		sp_cli_replace(&cli->state_dir, arg);
		return true;
	case OPT_KUBECONFIG:
		sp_cli_replace(&cli->kubeconfig, arg);
		return true;
	case OPT_IN_CLUSTER:
		cli->in_cluster = true;
		return true;
	case OPT_SYNC_PERIOD:
		return sp_cli_parse_duration("sync-period", arg, &cfg->sync_period_ms, diag);
	case OPT_MIN_SYNC_PERIOD:
		return sp_cli_parse_duration("min-sync-period", arg, &cfg->min_sync_period_ms,
					     diag);
	case OPT_HEALTHZ_BIND:
		sp_cli_replace(&cfg->healthz_bind_address, arg);
		return true;
	case OPT_METRICS_BIND:
		sp_cli_replace(&cfg->metrics_bind_address, arg);
		return true;
	case OPT_MAX_INPUT_BYTES:
		return sp_cli_parse_limit("max-input-bytes", arg, &cfg->max_input_bytes, diag);
	case OPT_MAX_JSON_DEPTH:
		return sp_cli_parse_limit("max-json-depth", arg, &cfg->max_json_depth, diag);
	case OPT_MAX_JSON_ITEMS:
		return sp_cli_parse_limit("max-json-items", arg, &cfg->max_json_items, diag);
	}
	return false;
}

static bool sp_cli_parse_command(struct sp_cli *cli, const char *word)
{
	static const struct {
		const char *name;
		enum sp_cli_command command;
	} commands[] = {
		{"plan", SP_CMD_PLAN},	     {"sync", SP_CMD_SYNC}, {"diff", SP_CMD_DIFF},
		{"cleanup", SP_CMD_CLEANUP}, {"run", SP_CMD_RUN},
	};

	for (size_t i = 0; i < SP_ARRAY_SIZE(commands); i++) {
		if (!strcmp(word, commands[i].name)) {
			cli->command = commands[i].command;
			return true;
		}
	}
	return false;
}

static void sp_cli_default_hostname(struct sp_config *cfg)
{
	char name[256];

	if (cfg->hostname)
		return;
	if (gethostname(name, sizeof(name) - 1) < 0)
		strcpy(name, "localhost");
	name[sizeof(name) - 1] = '\0';
	cfg->hostname = sp_xstrdup(name);
}

static void sp_cli_exit_with(const char *what)
{
	if (!strcmp(what, "help"))
		fputs(sp_usage, stdout);
	else
		printf("svcproxy %s\n", PACKAGE_VERSION);
	exit(SP_EXIT_OK);
}

/* Defaults, then --config FILE, then every other flag: at startup and again
 * on SIGHUP, so that a reload sees exactly what a restart would. */
static bool sp_cli_build_config(struct sp_cli *cli, struct sp_config *cfg, struct sp_diag *diag)
{
	int opt;

	sp_config_init(cfg);
	if (!sp_cli_load_config_first(cfg, cli->argc, cli->argv, diag))
		return false;
	optind = 0; /* glibc: 0 restarts the scan from scratch */
	while ((opt = getopt_long(cli->argc - 1, cli->argv + 1, "o:vh", sp_options, NULL)) != -1) {
		if (opt == 'h')
			sp_cli_exit_with("help");
		if (opt == OPT_VERSION)
			sp_cli_exit_with("version");
		if (opt == '?' || !sp_cli_apply_option(cli, cfg, opt, optarg, diag))
			return false;
	}
	cli->sources = cli->argv + 1 + optind;
	cli->n_sources = (size_t)(cli->argc - 1 - optind);
	sp_cli_default_hostname(cfg);
	return true;
}

static int sp_cli_reload(struct sp_config *cfg, void *arg, struct sp_diag *diag)
{
	struct sp_cli *cli = arg;
	int verbosity = cli->verbosity;
	bool ok = sp_cli_build_config(cli, cfg, diag);

	cli->verbosity = verbosity; /* -v counts up on every scan */
	return ok ? 0 : -1;
}

/* Returns SP_EXIT_OK, or SP_EXIT_USAGE when the command line is wrong (help
 * and version exit from here directly). */
static int sp_cli_parse(struct sp_cli *cli, int argc, char **argv, struct sp_diag *diag)
{
	if (argc < 2) {
		fputs(sp_usage, stderr);
		return SP_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))
		sp_cli_exit_with("help");
	if (!strcmp(argv[1], "--version"))
		sp_cli_exit_with("version");
	if (!sp_cli_parse_command(cli, argv[1])) {
		sp_diag_error(diag, "%s is not a command (plan, sync, diff, cleanup, run)",
			      argv[1]);
		return SP_EXIT_USAGE;
	}
	cli->argc = argc;
	cli->argv = argv;
	sp_config_free(&cli->cfg);
	if (!sp_cli_build_config(cli, &cli->cfg, diag))
		return SP_EXIT_USAGE;
	/* Tests run many agents on one host, one per namespace: each gets its
	 * own state folder through the environment. */
	if (!cli->state_dir && getenv("SVCPROXY_STATE_DIR"))
		cli->state_dir = sp_xstrdup(getenv("SVCPROXY_STATE_DIR"));
	if (cli->command != SP_CMD_CLEANUP && cli->command != SP_CMD_RUN && cli->n_sources == 0) {
		sp_diag_error(diag, "no SOURCE given: name JSON files or directories to read");
		return SP_EXIT_USAGE;
	}
	return SP_EXIT_OK;
}

/* Read every source; -1 when a file was rejected whole, 1 when objects were
 * skipped. Nothing read from a rejected file is used. */
static int sp_cli_read_sources(const struct sp_cli *cli, struct sp_cluster *cluster,
			       struct sp_diag *diag)
{
	struct sp_source_limits lim;
	int worst = 0;

	sp_config_source_limits(&cli->cfg, &lim);
	for (size_t i = 0; i < cli->n_sources; i++) {
		int r = sp_source_read_path(cluster, cli->sources[i], &lim, diag);

		if (r < 0)
			worst = -1;
		else if (r > 0 && worst == 0)
			worst = 1;
	}
	return worst;
}

static void sp_cli_write(const struct sp_buf *out)
{
	if (out->len)
		fwrite(out->data, 1, out->len, stdout);
}

static int sp_cli_print_plan(const struct sp_cli *cli, const struct sp_backend_ops *ops,
			     const struct sp_plan *plan)
{
	struct sp_buf out;

	sp_buf_init(&out);
	if (cli->output_json) {
		sp_buf_add(&out, "{\"plan\":");
		sp_plan_print_json(plan, &out);
		sp_buf_addf(&out, ",\"%s\":", sp_mode_name(plan->mode));
		if (ops->print_plan_json)
			ops->print_plan_json(plan, &out);
		else
			sp_buf_add(&out, "null");
		sp_buf_add(&out, "}\n");
	} else {
		ops->print_plan(plan, &out);
	}
	sp_cli_write(&out);
	sp_buf_free(&out);
	return SP_EXIT_OK;
}

static void sp_cli_print_stats(const struct sp_sync_stats *st, const struct sp_ct_stats *ct)
{
	printf("stats: full=%d messages_sent=%zu objects_changed=%zu objects_unchanged=%zu "
	       "rules_total=%zu conntrack_filters=%zu conntrack_deleted=%zu\n",
	       st->full ? 1 : 0, st->messages_sent, st->objects_changed, st->objects_unchanged,
	       st->rules_total, ct->filters, ct->entries_deleted);
}

static int sp_cli_print_state(struct sp_backend *be, const struct sp_backend_ops *ops,
			      struct sp_diag *diag)
{
	struct sp_buf out;
	int r;

	sp_buf_init(&out);
	r = ops->print_state(be, &out, diag);
	if (r == 0)
		sp_cli_write(&out);
	sp_buf_free(&out);
	return r;
}

static int sp_cli_sync(const struct sp_cli *cli, const struct sp_backend_ops *ops,
		       struct sp_backend *be, const struct sp_plan *plan, struct sp_diag *diag)
{
	struct sp_sync_stats stats = {0};
	struct sp_ct_stats ct_stats = {0};
	int r = ops->sync(be, plan, true, &stats, diag);

	if (r < 0)
		return SP_EXIT_PARTIAL;
	/* Only after the new rules are in: flushing earlier would let the next
	 * packet recreate the stale entry through the old rules. A flush that
	 * fails is retried at the next sync and does not fail this one. */
	sp_ct_sync_plan(cli->state_dir, plan, &ct_stats, diag);
	if (cli->print_stats)
		sp_cli_print_stats(&stats, &ct_stats);
	if (cli->show_state && sp_cli_print_state(be, ops, diag) < 0)
		return SP_EXIT_PARTIAL;
	return r > 0 ? SP_EXIT_PARTIAL : SP_EXIT_OK;
}

/* diff follows terraform's --detailed-exitcode: 0 in sync, 2 changes, 1 error. */
static int sp_cli_diff(const struct sp_backend_ops *ops, struct sp_backend *be,
		       const struct sp_plan *plan, struct sp_diag *diag)
{
	struct sp_buf out;
	int r;

	sp_buf_init(&out);
	r = ops->diff(be, plan, &out, diag);
	sp_cli_write(&out);
	sp_buf_free(&out);
	if (r < 0)
		return 1;
	return r > 0 ? 2 : 0;
}

/* Commands that need the kernel: open the mode in the current network
 * namespace, run, close. */
static int sp_cli_run_kernel(const struct sp_cli *cli, const struct sp_backend_ops *ops,
			     const struct sp_plan *plan, struct sp_diag *diag)
{
	struct sp_backend *be;
	int status;

	be = ops->open(&cli->cfg, diag);
	if (!be)
		return cli->command == SP_CMD_DIFF ? 1 : SP_EXIT_PARTIAL;
	switch (cli->command) {
	case SP_CMD_SYNC:
		status = sp_cli_sync(cli, ops, be, plan, diag);
		break;
	case SP_CMD_DIFF:
		status = sp_cli_diff(ops, be, plan, diag);
		break;
	case SP_CMD_CLEANUP:
		status = ops->cleanup(be, diag) < 0 ? SP_EXIT_PARTIAL : SP_EXIT_OK;
		break;
	default:
		status = SP_EXIT_USAGE;
		break;
	}
	ops->close(be);
	return status;
}

static bool sp_cli_mode_available(const struct sp_backend_ops *ops, enum sp_cli_command cmd)
{
	if (!ops || !ops->print_plan)
		return false;
	return cmd == SP_CMD_PLAN || (ops->open && ops->sync && ops->diff && ops->cleanup);
}

static int sp_cli_run_daemon(struct sp_cli *cli, const struct sp_backend_ops *ops,
			     struct sp_diag *diag)
{
	struct sp_daemon_opts opts = {
		.cfg = &cli->cfg,
		.sources = (const char *const *)cli->sources,
		.n_sources = cli->n_sources,
		.kubeconfig = cli->kubeconfig,
		.in_cluster = cli->in_cluster,
		.ops = ops,
		.log_level = cli->verbosity > 1	  ? SP_LOG_DEBUG
			     : cli->verbosity > 0 ? SP_LOG_INFO
						  : SP_LOG_NOTICE,
		.reload = sp_cli_reload,
		.reload_arg = cli,
		.state_dir = cli->state_dir,
	};

	return sp_daemon_run(&opts, diag);
}

static int sp_cli_main(struct sp_cli *cli, struct sp_diag *diag)
{
	const struct sp_backend_ops *ops = sp_backend_for_mode(cli->cfg.mode);
	struct sp_cluster cluster;
	struct sp_plan plan = {0};
	int read_status = 0, plan_status = 0, status;

	if (!sp_cli_mode_available(ops, cli->command)) {
		sp_diag_error(diag, "proxy mode %s is not available in this build",
			      sp_mode_name(cli->cfg.mode));
		return cli->command == SP_CMD_DIFF ? 1 : SP_EXIT_PARTIAL;
	}
	if (cli->command == SP_CMD_RUN)
		return sp_cli_run_daemon(cli, ops, diag);
	sp_cluster_init(&cluster);
	if (cli->command != SP_CMD_CLEANUP) {
		read_status = sp_cli_read_sources(cli, &cluster, diag);
		/* A file rejected whole could hold any Service: programming
		 * without it would remove good state, so sync and diff stop. */
		if (read_status < 0 && cli->command != SP_CMD_PLAN) {
			sp_diag_error(diag, "not programming anything: a source was rejected");
			sp_cluster_free(&cluster);
			return cli->command == SP_CMD_DIFF ? 1 : SP_EXIT_PARTIAL;
		}
		plan_status = sp_plan_build(&plan, &cluster, &cli->cfg, diag);
	}
	if (cli->command == SP_CMD_PLAN)
		status = sp_cli_print_plan(cli, ops, &plan);
	else
		status = sp_cli_run_kernel(cli, ops, &plan, diag);
	if (status == SP_EXIT_OK && (read_status != 0 || plan_status != 0))
		status = SP_EXIT_PARTIAL;
	sp_plan_free(&plan);
	sp_cluster_free(&cluster);
	return status;
}

int main(int argc, char **argv)
{
	struct sp_cli cli = {0};
	struct sp_diag diag;
	bool usage_error;
	int status;

	sp_diag_init(&diag);
	sp_config_init(&cli.cfg);
	status = sp_cli_parse(&cli, argc, argv, &diag);
	usage_error = status != SP_EXIT_OK;
	if (!usage_error)
		status = sp_cli_main(&cli, &diag);
	sp_cli_report(&diag, cli.verbosity);
	/* Only for a wrong command line: diff also exits 2, for "changes
	 * pending". */
	if (usage_error)
		fputs("Try 'svcproxy --help'.\n", stderr);
	sp_diag_free(&diag);
	sp_config_free(&cli.cfg);
	free(cli.kubeconfig);
	free(cli.state_dir);
	return status;
}
