/* The daemon's epoll registrations: every fd in the loop carries one of
 * these as its epoll data, so dispatch is a single indirect call. */
#ifndef SP_DAEMON_LOOP_H
#define SP_DAEMON_LOOP_H

#include <stdint.h>

struct sp_dwatch;
typedef void (*sp_dwatch_fn)(struct sp_dwatch *w, uint32_t events);

struct sp_dwatch {
	int fd;
	sp_dwatch_fn fn;
	void *arg;
};

/* epoll_ctl wrappers; -1 with errno on failure. */
int sp_dloop_add(int epfd, struct sp_dwatch *w, uint32_t events);
int sp_dloop_mod(int epfd, struct sp_dwatch *w, uint32_t events);
int sp_dloop_del(int epfd, struct sp_dwatch *w);
/* Arm a CLOCK_MONOTONIC timerfd at an absolute time (ns); 0 disarms. */
int sp_dtimer_at(int tfd, int64_t when_ns);

#endif
