/* Run one command and report what it cost, for the benchmark driver.
 *
 *   sp-bench-run [-n NETNS] [-i INPUT] [-o OUTPUT] [-t SECONDS] -- COMMAND [ARG...]
 *
 * The command runs in network namespace NETNS (entered with setns, so the
 * measured process is the command itself and not an `ip netns exec` wrapper),
 * with stdin from INPUT and stdout to OUTPUT (default /dev/null; stderr is
 * kept). After it exits one JSON line goes to stdout:
 *
 *   {"status":0,"wall":0.123456,"user":0.1,"sys":0.02,"maxrss_kb":5120}
 *
 * wall is CLOCK_MONOTONIC around fork..wait4; user, sys and maxrss come from
 * the rusage wait4 returns for that one child. status is the exit status,
 * 128+N for a signal, 124 when -t SECONDS ran out (the child is killed; a
 * process stuck in one long kernel call dies only when that call returns). */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct run_opts {
	const char *netns;
	const char *input;
	const char *output;
	unsigned timeout;
	char **argv;
};

static pid_t child_pid;

static void usage(void)
{
	fprintf(stderr, "usage: sp-bench-run [-n NETNS] [-i INPUT] [-o OUTPUT] [-t SECONDS] "
			"-- COMMAND [ARG...]\n");
	exit(2);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double tv_seconds(const struct timeval *tv)
{
	return (double)tv->tv_sec + (double)tv->tv_usec / 1e6;
}

static void die(const char *what, const char *arg)
{
	fprintf(stderr, "sp-bench-run: %s %s: %s\n", what, arg, strerror(errno));
	_exit(127);
}

static void redirect(const char *path, int flags, int target)
{
	int fd = open(path, flags, 0644);

	if (fd < 0)
		die("cannot open", path);
	if (dup2(fd, target) < 0)
		die("dup2", path);
	close(fd);
}

static void enter_netns(const char *name)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "/var/run/netns/%s", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		die("cannot open", path);
	if (setns(fd, CLONE_NEWNET) < 0)
		die("setns", path);
	close(fd);
}

static void exec_child(const struct run_opts *o)
{
	if (o->netns)
		enter_netns(o->netns);
	redirect(o->input ? o->input : "/dev/null", O_RDONLY, 0);
	redirect(o->output ? o->output : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 1);
	execvp(o->argv[0], o->argv);
	die("cannot run", o->argv[0]);
}

static void on_alarm(int sig)
{
	(void)sig;
	if (child_pid > 0)
		kill(child_pid, SIGKILL);
}

static void parse(int argc, char **argv, struct run_opts *o)
{
	int c;

	while ((c = getopt(argc, argv, "+n:i:o:t:")) != -1) {
		switch (c) {
		case 'n':
			o->netns = optarg;
			break;
		case 'i':
			o->input = optarg;
			break;
		case 'o':
			o->output = optarg;
			break;
		case 't':
			o->timeout = (unsigned)strtoul(optarg, NULL, 10);
			break;
		default:
			usage();
		}
	}
	if (optind >= argc)
		usage();
	o->argv = argv + optind;
}

int main(int argc, char **argv)
{
	struct run_opts o = {0};
	struct rusage ru;
	struct sigaction sa = {.sa_handler = on_alarm};
	bool timed_out;
	int status, code;
	double start, wall;
	pid_t r;

	parse(argc, argv, &o);
	sigaction(SIGALRM, &sa, NULL);
	fflush(stdout);
	start = now();
	child_pid = fork();
	if (child_pid < 0) {
		perror("sp-bench-run: fork");
		return 127;
	}
	if (child_pid == 0)
		exec_child(&o);
	if (o.timeout)
		alarm(o.timeout);
	do {
		r = wait4(child_pid, &status, 0, &ru);
	} while (r < 0 && errno == EINTR);
	wall = now() - start;
	if (r < 0) {
		perror("sp-bench-run: wait4");
		return 127;
	}
	timed_out = o.timeout && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL &&
		    wall >= o.timeout;
	if (timed_out)
		code = 124;
	else if (WIFEXITED(status))
		code = WEXITSTATUS(status);
	else
		code = 128 + WTERMSIG(status);
	printf("{\"status\":%d,\"wall\":%.6f,\"user\":%.6f,\"sys\":%.6f,\"maxrss_kb\":%ld}\n", code,
	       wall, tv_seconds(&ru.ru_utime), tv_seconds(&ru.ru_stime), ru.ru_maxrss);
	return 0;
}
