/* A tiny TCP+UDP echo of identity for integration tests.
 *
 *   sp-whoami serve NAME PORT... [--for SECONDS]
 *	answers every TCP connection and UDP datagram on each PORT (IPv4 and
 *	IPv6) with "NAME PEER-ADDRESS\n", then exits after SECONDS (default
 *	120): a test that forgets it cannot leave it running for ever.
 *   sp-whoami connect tcp|udp ADDR PORT [--from ADDR] [--count N] [--wait SECONDS]
 *	makes N fresh connections (each from a new source port, so each is a
 *	new conntrack entry and a new load-balancing choice) and prints one
 *	line per attempt: the server's answer, or "ERR refused", "ERR timeout",
 *	"ERR <errno text>". Every attempt waits at most --wait (default 2) s.
 *	Exit status 0 when every attempt was answered, 1 otherwise. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_PORTS 16

static void usage(void)
{
	fprintf(stderr, "usage: sp-whoami serve NAME PORT... [--for SECONDS]\n"
			"       sp-whoami connect tcp|udp ADDR PORT [--from ADDR] [--count N] "
			"[--wait SECONDS]\n");
	exit(2);
}

static int parse_int(const char *s, int min, int max)
{
	char *end;
	long v = strtol(s, &end, 10);

	if (*s == 0 || *end || v < min || v > max)
		usage();
	return (int)v;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Peer address as text; IPv4-mapped IPv6 addresses shown as IPv4. */
static void peer_text(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;

		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
			inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], buf, (socklen_t)len);
		else
			inet_ntop(AF_INET6, &s6->sin6_addr, buf, (socklen_t)len);
	} else {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, buf,
			  (socklen_t)len);
	}
}

static int listen_on(int type, int port)
{
	struct sockaddr_in6 a = {.sin6_family = AF_INET6,
				 .sin6_port = htons((uint16_t)port),
				 .sin6_addr = IN6ADDR_ANY_INIT};
	int one = 1, zero = 0;
	int fd = socket(AF_INET6, type, 0);

	if (fd < 0) {
		perror("socket");
		exit(1);
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		fprintf(stderr, "sp-whoami: bind %s port %d: %s\n",
			type == SOCK_STREAM ? "tcp" : "udp", port, strerror(errno));
		exit(1);
	}
	if (type == SOCK_STREAM && listen(fd, 128) < 0) {
		perror("listen");
		exit(1);
	}
	return fd;
}

static void answer_tcp(int lfd, const char *name)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char peer[INET6_ADDRSTRLEN], line[256], buf[64];
	struct pollfd p;
	int fd = accept(lfd, (struct sockaddr *)&ss, &sl);

	if (fd < 0)
		return;
	peer_text(&ss, peer, sizeof(peer));
	/* Read the client's greeting if it comes soon; answer anyway. */
	p.fd = fd;
	p.events = POLLIN;
	if (poll(&p, 1, 500) > 0)
		(void)!read(fd, buf, sizeof(buf));
	snprintf(line, sizeof(line), "%s %s\n", name, peer);
	(void)!write(fd, line, strlen(line));
	close(fd);
}

static void answer_udp(int fd, const char *name)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char peer[INET6_ADDRSTRLEN], line[256], buf[512];

	if (recvfrom(fd, buf, sizeof(buf), 0, (struct sockaddr *)&ss, &sl) < 0)
		return;
	peer_text(&ss, peer, sizeof(peer));
	snprintf(line, sizeof(line), "%s %s\n", name, peer);
	(void)!sendto(fd, line, strlen(line), 0, (struct sockaddr *)&ss, sl);
}

static int serve(int argc, char **argv)
{
	struct pollfd fds[2 * MAX_PORTS];
	int n = 0, seconds = 120;
	const char *name;
	double end;

	if (argc < 2)
		usage();
	name = argv[0];
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--for") && i + 1 < argc) {
			seconds = parse_int(argv[++i], 1, 86400);
			continue;
		}
		if (n >= 2 * MAX_PORTS)
			usage();
		int port = parse_int(argv[i], 1, 65535);

		fds[n].fd = listen_on(SOCK_STREAM, port);
		fds[n++].events = POLLIN;
		fds[n].fd = listen_on(SOCK_DGRAM, port);
		fds[n++].events = POLLIN;
	}
	if (!n)
		usage();
	printf("ready\n");
	fflush(stdout);
	end = now() + seconds;
	while (now() < end) {
		int left_ms = (int)((end - now()) * 1000) + 1;

		if (poll(fds, (nfds_t)n, left_ms) <= 0)
			continue;
		for (int i = 0; i < n; i++) {
			if (!(fds[i].revents & POLLIN))
				continue;
			if (i % 2 == 0)
				answer_tcp(fds[i].fd, name);
			else
				answer_udp(fds[i].fd, name);
		}
	}
	return 0;
}

static int fill_addr(const char *text, int port, struct sockaddr_storage *ss, socklen_t *sl)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, text, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		*sl = sizeof(*s4);
		return AF_INET;
	}
	if (inet_pton(AF_INET6, text, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		*sl = sizeof(*s6);
		return AF_INET6;
	}
	fprintf(stderr, "sp-whoami: not an address: %s\n", text);
	exit(2);
}

static const char *err_word(int err)
{
	switch (err) {
	case ECONNREFUSED:
		return "refused";
	case ETIMEDOUT:
	case EAGAIN:
	case EINPROGRESS:
		return "timeout";
	default:
		return strerror(err);
	}
}

/* One attempt; the answer (or ERR ...) goes to out. 0 when answered. */
static int attempt(int type, const struct sockaddr_storage *dst, socklen_t dl,
		   const struct sockaddr_storage *src, socklen_t srcl, int wait_ms, char *out,
		   size_t outlen)
{
	int fd = socket(dst->ss_family, type | SOCK_NONBLOCK, 0);
	struct pollfd p = {.fd = fd};
	double end = now() + wait_ms / 1000.0;
	size_t got = 0;
	int err = 0;
	socklen_t el = sizeof(err);

	if (fd < 0) {
		snprintf(out, outlen, "ERR %s", strerror(errno));
		return 1;
	}
	if (src && bind(fd, (const struct sockaddr *)src, srcl) < 0) {
		snprintf(out, outlen, "ERR bind: %s", strerror(errno));
		close(fd);
		return 1;
	}
	if (connect(fd, (const struct sockaddr *)dst, dl) < 0 && errno != EINPROGRESS) {
		snprintf(out, outlen, "ERR %s", err_word(errno));
		close(fd);
		return 1;
	}
	if (type == SOCK_STREAM) {
		p.events = POLLOUT;
		if (poll(&p, 1, wait_ms) <= 0) {
			snprintf(out, outlen, "ERR timeout");
			close(fd);
			return 1;
		}
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
		if (err) {
			snprintf(out, outlen, "ERR %s", err_word(err));
			close(fd);
			return 1;
		}
	}
	if (send(fd, "who?\n", 5, 0) < 0) {
		snprintf(out, outlen, "ERR %s", err_word(errno));
		close(fd);
		return 1;
	}
	while (got + 1 < outlen) {
		int left = (int)((end - now()) * 1000);
		ssize_t n;

		p.events = POLLIN;
		if (left <= 0 || poll(&p, 1, left) <= 0) {
			err = ETIMEDOUT;
			break;
		}
		n = recv(fd, out + got, outlen - 1 - got, 0);
		if (n < 0) {
			err = errno == EAGAIN ? 0 : errno;
			if (err)
				break;
			continue;
		}
		if (n == 0)
			break;
		got += (size_t)n;
		if (memchr(out, '\n', got))
			break;
	}
	close(fd);
	if (!got || !memchr(out, '\n', got)) {
		snprintf(out, outlen, "ERR %s", err_word(err ? err : ETIMEDOUT));
		return 1;
	}
	*(char *)memchr(out, '\n', got) = 0;
	return 0;
}

static int connect_cmd(int argc, char **argv)
{
	struct sockaddr_storage dst, src;
	socklen_t dl, srcl = 0;
	int type, count = 1, wait_s = 2, failed = 0;
	const char *from = NULL;

	if (argc < 3)
		usage();
	if (!strcmp(argv[0], "tcp"))
		type = SOCK_STREAM;
	else if (!strcmp(argv[0], "udp"))
		type = SOCK_DGRAM;
	else
		usage();
	fill_addr(argv[1], parse_int(argv[2], 1, 65535), &dst, &dl);
	for (int i = 3; i < argc; i++) {
		if (i + 1 >= argc)
			usage();
		if (!strcmp(argv[i], "--from"))
			from = argv[++i];
		else if (!strcmp(argv[i], "--count"))
			count = parse_int(argv[++i], 1, 100000);
		else if (!strcmp(argv[i], "--wait"))
			wait_s = parse_int(argv[++i], 1, 60);
		else
			usage();
	}
	if (from)
		fill_addr(from, 0, &src, &srcl);
	for (int i = 0; i < count; i++) {
		char line[512];

		failed |= attempt(type, &dst, dl, from ? &src : NULL, srcl, wait_s * 1000, line,
				  sizeof(line));
		printf("%s\n", line);
		fflush(stdout);
	}
	return failed;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		usage();
	if (!strcmp(argv[1], "serve"))
		return serve(argc - 2, argv + 2);
	if (!strcmp(argv[1], "connect"))
		return connect_cmd(argc - 2, argv + 2);
	usage();
	return 2;
}
