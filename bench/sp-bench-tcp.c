/* TCP connection set-up latency, for the benchmark's data path figures.
 *
 *   sp-bench-tcp serve PORT [SECONDS]
 *	accept and close connections on 0.0.0.0:PORT for SECONDS (default 300).
 *   sp-bench-tcp connect ADDR PORT COUNT
 *	COUNT times: a fresh socket, connect() timed with CLOCK_MONOTONIC, then
 *	close with an RST (SO_LINGER 0) so no TIME_WAIT piles up and every
 *	connect is a new conntrack entry and a new load-balancing choice. The
 *	first tenth warms caches and is left out. Prints one JSON line:
 *	{"count":N,"failed":F,"median_us":..,"p10_us":..,"p90_us":..}
 *	and exits 1 when any connect failed. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void usage(void)
{
	fprintf(stderr, "usage: sp-bench-tcp serve PORT [SECONDS]\n"
			"       sp-bench-tcp connect ADDR PORT COUNT\n");
	exit(2);
}

static long parse_long(const char *s, long min, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (*s == 0 || *end || errno || v < min || v > max)
		usage();
	return v;
}

static int serve(int port, unsigned seconds)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int one = 1, fd, c;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4096) < 0) {
		perror("sp-bench-tcp: listen");
		return 1;
	}
	alarm(seconds);
	for (;;) {
		c = accept(fd, NULL, NULL);
		if (c >= 0)
			close(c);
		else if (errno != EINTR && errno != ECONNABORTED)
			return 1;
	}
}

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* One timed connect; <0 when it failed. */
static double timed_connect(const struct sockaddr_in *sa)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};
	struct timeval tv = {.tv_sec = 2};
	double start, took;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	start = now_us();
	if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0) {
		close(fd);
		return -1;
	}
	took = now_us() - start;
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
	return took;
}

static int run_connects(const char *addr, int port, long count)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	long warm = count / 10, kept = 0, failed = 0;
	double *lat = calloc((size_t)count, sizeof(*lat));

	if (!lat || inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
		usage();
	for (long i = 0; i < count; i++) {
		double t = timed_connect(&sa);

		if (t < 0)
			failed++;
		else if (i >= warm)
			lat[kept++] = t;
	}
	if (kept == 0) {
		printf("{\"count\":0,\"failed\":%ld}\n", failed);
		return 1;
	}
	qsort(lat, (size_t)kept, sizeof(*lat), cmp_double);
	printf("{\"count\":%ld,\"failed\":%ld,\"median_us\":%.1f,\"p10_us\":%.1f,"
	       "\"p90_us\":%.1f}\n",
	       kept, failed, lat[kept / 2], lat[kept / 10], lat[kept * 9 / 10]);
	free(lat);
	return failed ? 1 : 0;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc >= 3 && strcmp(argv[1], "serve") == 0)
		return serve((int)parse_long(argv[2], 1, 65535),
			     argc > 3 ? (unsigned)parse_long(argv[3], 1, 86400) : 300);
	if (argc == 5 && strcmp(argv[1], "connect") == 0)
		return run_connects(argv[2], (int)parse_long(argv[3], 1, 65535),
				    parse_long(argv[4], 1, 10000000));
	usage();
	return 2;
}
