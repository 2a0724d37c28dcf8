/* LD_PRELOAD fault injector for tests/integration/faults.sh. It sits between
 * svcproxy and the kernel interfaces it programs through (netlink sockets,
 * libiptc's setsockopt/getsockopt) and, driven by the environment:
 *
 *   SP_FAULT_KILL_AT=K        SIGKILL at the K-th socket call (sendto,
 *   SP_FAULT_KILL_WHEN=after  sendmsg, recvfrom, recvmsg, setsockopt,
 *                             getsockopt), before it reaches the kernel
 *                             (default) or after it returned;
 *   SP_FAULT_KILL_AFTER_US=N  SIGKILL N microseconds after the program
 *                             started (a POSIX timer: sub-millisecond);
 *   SP_FAULT_NFT_REFUSE=1     make the kernel refuse the first nf_tables
 *                             batch: the last message before the batch end
 *                             gets a message type nf_tables does not know,
 *                             so the kernel aborts the whole transaction;
 *   SP_FAULT_IPT_REFUSE=N     make the kernel refuse the N-th libiptc commit
 *                             (IPT_SO_SET_REPLACE): its valid_hooks mask is
 *                             altered, which the kernel rejects with EINVAL;
 *   SP_FAULT_COUNT=FILE       append the number of socket calls made, at exit.
 *
 * The refusals are real kernel refusals of a corrupted request, not errors
 * made up here: what the agent sees is what the kernel answers. */
#include <dlfcn.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter_ipv4/ip_tables.h>
#include <linux/netlink.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static unsigned long calls, kill_at, ipt_refuse, ipt_commits;
static int kill_after, nft_refuse;

static void die_now(void)
{
	kill(getpid(), SIGKILL);
	for (;;)
		pause();
}

__attribute__((constructor)) static void fault_init(void)
{
	const char *at = getenv("SP_FAULT_KILL_AT"), *when = getenv("SP_FAULT_KILL_WHEN");
	const char *us = getenv("SP_FAULT_KILL_AFTER_US"), *nft = getenv("SP_FAULT_NFT_REFUSE");
	const char *ipt = getenv("SP_FAULT_IPT_REFUSE");

	kill_at = at ? strtoul(at, NULL, 10) : 0;
	kill_after = when && !strcmp(when, "after");
	nft_refuse = nft && *nft == '1';
	ipt_refuse = ipt ? strtoul(ipt, NULL, 10) : 0;
	if (us) {
		struct sigevent sev = {.sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGKILL};
		struct itimerspec its = {0};
		unsigned long n = strtoul(us, NULL, 10);
		timer_t t;

		its.it_value.tv_sec = (time_t)(n / 1000000);
		its.it_value.tv_nsec = (long)(n % 1000000) * 1000;
		if (!its.it_value.tv_sec && !its.it_value.tv_nsec)
			die_now();
		if (timer_create(CLOCK_MONOTONIC, &sev, &t) < 0 ||
		    timer_settime(t, 0, &its, NULL) < 0)
			abort();
	}
}

__attribute__((destructor)) static void fault_fini(void)
{
	const char *path = getenv("SP_FAULT_COUNT");
	FILE *f;

	if (!path || !(f = fopen(path, "a")))
		return;
	fprintf(f, "%lu\n", calls);
	fclose(f);
}

static void *real(const char *name)
{
	void *fn = dlsym(RTLD_NEXT, name);

	if (!fn)
		abort();
	return fn;
}

static void before(void)
{
	calls++;
	if (kill_at && calls == kill_at && !kill_after)
		die_now();
}

static void after(void)
{
	if (kill_at && calls == kill_at && kill_after)
		die_now();
}

/* The copy of an nf_tables batch with its last command made unknown, or
 * NULL when buf holds no batch end. */
static void *refuse_batch(const void *buf, size_t len)
{
	const struct nlmsghdr *nlh = buf;
	size_t left = len, last = 0, off = 0;
	int have_cmd = 0;
	char *copy;

	for (; NLMSG_OK(nlh, left); nlh = NLMSG_NEXT(nlh, left)) {
		off = (size_t)((const char *)nlh - (const char *)buf);
		if (nlh->nlmsg_type == NFNL_MSG_BATCH_END && have_cmd)
			break;
		if ((nlh->nlmsg_type >> 8) == NFNL_SUBSYS_NFTABLES) {
			last = off;
			have_cmd = 1;
		}
	}
	if (!NLMSG_OK(nlh, left) || !have_cmd)
		return NULL;
	copy = malloc(len);
	if (!copy)
		abort();
	memcpy(copy, buf, len);
	((struct nlmsghdr *)(copy + last))->nlmsg_type = (NFNL_SUBSYS_NFTABLES << 8) | 0xff;
	return copy;
}

ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *to,
	       socklen_t tolen)
{
	static ssize_t (*fn)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
	void *copy = NULL;
	ssize_t r;

	if (!fn)
		fn = real("sendto");
	before();
	if (nft_refuse && (copy = refuse_batch(buf, len)))
		nft_refuse = 0;
	r = fn(fd, copy ? copy : buf, len, flags, to, tolen);
	free(copy);
	after();
	return r;
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	static ssize_t (*fn)(int, const struct msghdr *, int);
	ssize_t r;

	if (!fn)
		fn = real("sendmsg");
	before();
	r = fn(fd, msg, flags);
	after();
	return r;
}

ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *from,
		 socklen_t *fromlen)
{
	static ssize_t (*fn)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
	ssize_t r;

	if (!fn)
		fn = real("recvfrom");
	before();
	r = fn(fd, buf, len, flags, from, fromlen);
	after();
	return r;
}

ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	static ssize_t (*fn)(int, struct msghdr *, int);
	ssize_t r;

	if (!fn)
		fn = real("recvmsg");
	before();
	r = fn(fd, msg, flags);
	after();
	return r;
}

int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
{
	static int (*fn)(int, int, int, const void *, socklen_t);
	void *copy = NULL;
	int r;

	if (!fn)
		fn = real("setsockopt");
	before();
	if (level == IPPROTO_IP && name == IPT_SO_SET_REPLACE &&
	    len >= sizeof(struct ipt_replace) && ++ipt_commits == ipt_refuse) {
		copy = malloc(len);
		if (!copy)
			abort();
		memcpy(copy, val, len);
		((struct ipt_replace *)copy)->valid_hooks ^= 1u << NF_INET_NUMHOOKS;
	}
	r = fn(fd, level, name, copy ? copy : val, len);
	free(copy);
	after();
	return r;
}

int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
{
	static int (*fn)(int, int, int, void *, socklen_t *);
	int r;

	if (!fn)
		fn = real("getsockopt");
	before();
	r = fn(fd, level, name, val, len);
	after();
	return r;
}
