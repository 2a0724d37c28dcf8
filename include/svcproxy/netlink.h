/* The one netlink transport every kernel module shares (nftables, conntrack,
 * ...): a libmnl socket with extended ACKs and large buffers, batches sent in
 * one sendmsg whose errors name the object each failed message programmed,
 * and a request/dump loop. It knows nothing about the messages it carries. */
#ifndef SVCPROXY_NETLINK_H
#define SVCPROXY_NETLINK_H

#include <libmnl/libmnl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "svcproxy/diag.h"
#include "svcproxy/util.h"

struct sp_nl;

/* Open and bind a socket of the given bus (NETLINK_NETFILTER, ...) in the
 * current network namespace. NULL with the reason in diag. */
struct sp_nl *sp_nl_open(int bus, struct sp_diag *diag);
void sp_nl_close(struct sp_nl *nl);
/* The next sequence number; every message gets its own. */
uint32_t sp_nl_next_seq(struct sp_nl *nl);
uint32_t sp_nl_portid(const struct sp_nl *nl);

/* A label written only if the kernel refuses the message: formatting one
 * for each of 100,000 messages would cost more than building them. fn
 * writes it into out from x, y, z, which must stay valid until the batch
 * is sent. */
typedef void (*sp_nl_label_fn)(struct sp_buf *out, const void *x, const void *y, const void *z);

struct sp_nl_lazy_label {
	sp_nl_label_fn fn;
	const void *x, *y, *z;
};

/* Messages built back to back in one buffer, each with a label naming what
 * it programs ("add chain ip svcproxy svc-default/web/tcp/http"). */
struct sp_nl_batch {
	char *buf;
	size_t len, cap;
	uint32_t *seqs; /* per message, increasing */
	char **labels;
	size_t n_msgs, cap_msgs;
	size_t n_counted;	       /* messages that are not framing (see commit) */
	struct sp_nl_lazy_label *lazy; /* per message; fn NULL: labels[] */
};

void sp_nl_batch_init(struct sp_nl_batch *b);
void sp_nl_batch_free(struct sp_nl_batch *b);
void sp_nl_batch_reset(struct sp_nl_batch *b);
/* Room for a message of up to max bytes at the end of the batch: build the
 * message there, then commit it. */
void *sp_nl_batch_tail(struct sp_nl_batch *b, size_t max);
/* Keep the message just built at the tail. label (copied) names the object
 * for errors; framing messages (batch begin/end) pass counted = false so
 * that n_counted is the number of object messages. */
void sp_nl_batch_commit(struct sp_nl_batch *b, const char *label, bool counted);
/* The same with a label made on error only (an object message). */
void sp_nl_batch_commit_lazy(struct sp_nl_batch *b, sp_nl_label_fn fn, const void *x, const void *y,
			     const void *z);

/* Send the whole batch in one sendmsg (the kernel handles a framed batch as
 * one transaction), then a no-op barrier with an ACK request, and read
 * until the barrier's ACK: every error the kernel sent for a message of the
 * batch is then in, and each is reported in diag as
 * "<what>: <label>: <errno text>[ (<kernel message>)]". Returns 0 when the
 * kernel refused nothing, -1 otherwise. */
int sp_nl_batch_send(struct sp_nl *nl, struct sp_nl_batch *b, const char *what,
		     struct sp_diag *diag);

/* Send one request (its nlmsg_seq set from sp_nl_next_seq) and read the
 * replies until NLMSG_DONE or the request's ACK/error, calling cb (may be
 * NULL) for each data message. Returns 0, -1 with diag (naming what), or
 * 1 when a dump was interrupted by a concurrent change (NLM_F_DUMP_INTR):
 * the caller starts over. */
int sp_nl_talk(struct sp_nl *nl, struct nlmsghdr *req, mnl_cb_t cb, void *data, const char *what,
	       struct sp_diag *diag);

#endif
