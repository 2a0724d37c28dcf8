/* Shared netlink transport (libmnl). */
#include "svcproxy/netlink.h"

#include <errno.h>
#include <linux/netlink.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include "svcproxy/util.h"

/* Big enough that a dump of thousands of objects does not overflow between
 * two reads; forced past the sysctl limit when we may (CAP_NET_ADMIN). */
#define SP_NL_RCVBUF (32u << 20)
#define SP_NL_MIN_SNDBUF (4u << 20)
/* Bound every wait: the kernel answers a request at once, so a silent
 * socket means something is badly wrong, not that we should wait longer. */
#define SP_NL_RECV_TIMEOUT_S 30

struct sp_nl {
	struct mnl_socket *sock;
	uint32_t seq;
	size_t sndbuf;
	char *rxbuf;
	size_t rxlen;
};

static void set_buf(struct mnl_socket *sock, int force_opt, int opt, size_t size)
{
	int fd = mnl_socket_get_fd(sock);
	int v = size > INT32_MAX ? INT32_MAX : (int)size;

	if (setsockopt(fd, SOL_SOCKET, force_opt, &v, sizeof(v)) < 0)
		(void)setsockopt(fd, SOL_SOCKET, opt, &v, sizeof(v));
}

struct sp_nl *sp_nl_open(int bus, struct sp_diag *diag)
{
	struct sp_nl *nl = sp_xcalloc(1, sizeof(*nl));
	struct timeval tv = {.tv_sec = SP_NL_RECV_TIMEOUT_S};
	int one = 1;

	nl->sock = mnl_socket_open(bus);
	if (!nl->sock) {
		sp_diag_error(diag, "netlink: cannot open socket (bus %d): %s", bus,
			      strerror(errno));
		free(nl);
		return NULL;
	}
	if (mnl_socket_bind(nl->sock, 0, MNL_SOCKET_AUTOPID) < 0) {
		sp_diag_error(diag, "netlink: cannot bind socket (bus %d): %s", bus,
			      strerror(errno));
		mnl_socket_close(nl->sock);
		free(nl);
		return NULL;
	}
	/* Best effort: without extended ACKs errors just carry less text. */
	(void)mnl_socket_setsockopt(nl->sock, NETLINK_EXT_ACK, &one, sizeof(one));
	(void)mnl_socket_setsockopt(nl->sock, NETLINK_CAP_ACK, &one, sizeof(one));
	set_buf(nl->sock, SO_RCVBUFFORCE, SO_RCVBUF, SP_NL_RCVBUF);
	set_buf(nl->sock, SO_SNDBUFFORCE, SO_SNDBUF, SP_NL_MIN_SNDBUF);
	nl->sndbuf = SP_NL_MIN_SNDBUF;
	(void)setsockopt(mnl_socket_get_fd(nl->sock), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	nl->seq = (uint32_t)time(NULL) << 8;
	nl->rxlen = MNL_SOCKET_BUFFER_SIZE * 16;
	nl->rxbuf = sp_xmalloc(nl->rxlen);
	return nl;
}

void sp_nl_close(struct sp_nl *nl)
{
	if (!nl)
		return;
	mnl_socket_close(nl->sock);
	free(nl->rxbuf);
	free(nl);
}

uint32_t sp_nl_next_seq(struct sp_nl *nl)
{
	return ++nl->seq;
}

uint32_t sp_nl_portid(const struct sp_nl *nl)
{
	return mnl_socket_get_portid(nl->sock);
}

void sp_nl_batch_init(struct sp_nl_batch *b)
{
	memset(b, 0, sizeof(*b));
}

void sp_nl_batch_reset(struct sp_nl_batch *b)
{
	for (size_t i = 0; i < b->n_msgs; i++)
		free(b->labels[i]);
	b->len = 0;
	b->n_msgs = 0;
	b->n_counted = 0;
}

void sp_nl_batch_free(struct sp_nl_batch *b)
{
	sp_nl_batch_reset(b);
	free(b->buf);
	free(b->seqs);
	free(b->labels);
	free(b->lazy);
	memset(b, 0, sizeof(*b));
}

void *sp_nl_batch_tail(struct sp_nl_batch *b, size_t max)
{
	if (b->len + max > b->cap) {
		size_t cap = b->cap ? b->cap : 1u << 16;

		while (b->len + max > cap)
			cap *= 2;
		b->buf = sp_xrealloc(b->buf, cap);
		/* Builders leave holes (struct padding, alignment) that are
		 * sent as they are: zero new memory once, at growth, rather
		 * than every reservation. */
		memset(b->buf + b->cap, 0, cap - b->cap);
		b->cap = cap;
	}
	memset(b->buf + b->len, 0, max < 64 ? max : 64);
	return b->buf + b->len;
}

static void batch_append(struct sp_nl_batch *b, char *label, const struct sp_nl_lazy_label *lazy,
			 bool counted)
{
	struct nlmsghdr *nlh = (struct nlmsghdr *)(b->buf + b->len);

	if (b->n_msgs == b->cap_msgs) {
		b->cap_msgs = b->cap_msgs ? b->cap_msgs * 2 : 256;
		b->seqs = sp_xrealloc(b->seqs, b->cap_msgs * sizeof(*b->seqs));
		b->labels = sp_xrealloc(b->labels, b->cap_msgs * sizeof(*b->labels));
		b->lazy = sp_xrealloc(b->lazy, b->cap_msgs * sizeof(*b->lazy));
	}
	b->seqs[b->n_msgs] = nlh->nlmsg_seq;
	b->labels[b->n_msgs] = label;
	if (lazy)
		b->lazy[b->n_msgs] = *lazy;
	else
		memset(&b->lazy[b->n_msgs], 0, sizeof(*b->lazy));
	b->n_msgs++;
	b->n_counted += counted;
	/* The alignment gap after a message goes to the kernel too: zero it
	 * rather than send whatever the reused buffer held. */
	memset((char *)nlh + nlh->nlmsg_len, 0, NLMSG_ALIGN(nlh->nlmsg_len) - nlh->nlmsg_len);
	b->len += NLMSG_ALIGN(nlh->nlmsg_len);
}

void sp_nl_batch_commit(struct sp_nl_batch *b, const char *label, bool counted)
{
	batch_append(b, label ? sp_xstrdup(label) : NULL, NULL, counted);
}

void sp_nl_batch_commit_lazy(struct sp_nl_batch *b, sp_nl_label_fn fn, const void *x, const void *y,
			     const void *z)
{
	struct sp_nl_lazy_label lazy = {.fn = fn, .x = x, .y = y, .z = z};

	batch_append(b, NULL, &lazy, true);
}

/* The label of message seq, written into out. */
static void batch_label(const struct sp_nl_batch *b, uint32_t seq, struct sp_buf *out)
{
	size_t lo = 0, hi = b->n_msgs;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (b->seqs[mid] == seq) {
			const struct sp_nl_lazy_label *l = &b->lazy[mid];

			if (l->fn)
				l->fn(out, l->x, l->y, l->z);
			else
				sp_buf_add(out,
					   b->labels[mid] ? b->labels[mid] : "(batch framing)");
			return;
		}
		if (b->seqs[mid] < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	sp_buf_add(out, "(unknown message)");
}

/* The kernel's own words from an extended ACK, if any. */
static const char *extack_text(const struct nlmsghdr *nlh)
{
	const struct nlmsgerr *err = mnl_nlmsg_get_payload(nlh);
	size_t off = sizeof(*err);
	const struct nlattr *attr;

	if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS))
		return NULL;
	if (!(nlh->nlmsg_flags & NLM_F_CAPPED))
		off += mnl_nlmsg_get_payload_len(&err->msg);
	if (mnl_nlmsg_get_payload_len(nlh) < off)
		return NULL;
	mnl_attr_for_each_payload((const struct nlattr *)((const char *)err + off),
				  mnl_nlmsg_get_payload_len(nlh) - off)
	{
		if (mnl_attr_get_type(attr) == NLMSGERR_ATTR_MSG &&
		    mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) == 0)
			return mnl_attr_get_str(attr);
	}
	return NULL;
}

static int send_all(struct sp_nl *nl, const void *buf, size_t len)
{
	if (len + 65536 > nl->sndbuf) {
		nl->sndbuf = len + 65536;
		set_buf(nl->sock, SO_SNDBUFFORCE, SO_SNDBUF, nl->sndbuf);
	}
	return mnl_socket_sendto(nl->sock, buf, len) < 0 ? -1 : 0;
}

int sp_nl_batch_send(struct sp_nl *nl, struct sp_nl_batch *b, const char *what,
		     struct sp_diag *diag)
{
	char barrier_buf[MNL_NLMSG_HDRLEN];
	struct nlmsghdr *barrier;
	uint32_t barrier_seq;
	int failed = 0;
	bool lost = false;

	if (!b->n_msgs)
		return 0;
	if (send_all(nl, b->buf, b->len) < 0) {
		sp_diag_error(diag, "%s: sending %zu messages (%zu bytes): %s", what, b->n_msgs,
			      b->len, strerror(errno));
		return -1;
	}
	barrier = mnl_nlmsg_put_header(barrier_buf);
	barrier->nlmsg_type = NLMSG_NOOP;
	barrier->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	barrier->nlmsg_seq = barrier_seq = sp_nl_next_seq(nl);
	if (send_all(nl, barrier, barrier->nlmsg_len) < 0) {
		sp_diag_error(diag, "%s: sending the barrier: %s", what, strerror(errno));
		return -1;
	}
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(nl->sock, nl->rxbuf, nl->rxlen);
		const struct nlmsghdr *nlh;
		int left;

		if (n < 0) {
			if (errno == ENOBUFS) {
				lost = true; /* errors overflowed; keep draining */
				continue;
			}
			if (errno == EINTR)
				continue;
			sp_diag_error(diag, "%s: reading the kernel's answers: %s", what,
				      strerror(errno));
			return -1;
		}
		left = (int)n;
		for (nlh = (const struct nlmsghdr *)nl->rxbuf; mnl_nlmsg_ok(nlh, left);
		     nlh = mnl_nlmsg_next(nlh, &left)) {
			const struct nlmsgerr *err;
			struct sp_buf label;
			const char *ext;

			if (nlh->nlmsg_type != NLMSG_ERROR)
				continue;
			err = mnl_nlmsg_get_payload(nlh);
			if (nlh->nlmsg_seq == barrier_seq) {
				if (lost) {
					sp_diag_error(diag,
						      "%s: the kernel refused messages (some "
						      "answers were lost)",
						      what);
					failed = 1;
				}
				return failed ? -1 : 0;
			}
			if (!err->error)
				continue;
			failed = 1;
			ext = extack_text(nlh);
			sp_buf_init(&label);
			batch_label(b, nlh->nlmsg_seq, &label);
			sp_diag_error(diag, "%s: %s: %s%s%s%s", what, label.data ? label.data : "",
				      strerror(-err->error), ext ? " (" : "", ext ? ext : "",
				      ext ? ")" : "");
			sp_buf_free(&label);
		}
	}
}

int sp_nl_talk(struct sp_nl *nl, struct nlmsghdr *req, mnl_cb_t cb, void *data, const char *what,
	       struct sp_diag *diag)
{
	uint32_t portid = sp_nl_portid(nl);
	bool interrupted = false;

	if (send_all(nl, req, req->nlmsg_len) < 0) {
		sp_diag_error(diag, "%s: %s", what, strerror(errno));
		return -1;
	}
	for (;;) {
		ssize_t n = mnl_socket_recvfrom(nl->sock, nl->rxbuf, nl->rxlen);
		const struct nlmsghdr *nlh;
		int left, ret;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			sp_diag_error(diag, "%s: %s", what, strerror(errno));
			return -1;
		}
		/* Check every message for the dump-interrupted flag before
		 * handing the buffer to libmnl. */
		left = (int)n;
		for (nlh = (const struct nlmsghdr *)nl->rxbuf; mnl_nlmsg_ok(nlh, left);
		     nlh = mnl_nlmsg_next(nlh, &left))
			if (nlh->nlmsg_flags & NLM_F_DUMP_INTR)
				interrupted = true;
		ret = mnl_cb_run(nl->rxbuf, (size_t)n, req->nlmsg_seq, portid, cb, data);
		if (ret == MNL_CB_STOP)
			return interrupted ? 1 : 0;
		if (ret < 0) {
			if (errno == EINTR)
				return 1;
			sp_diag_error(diag, "%s: %s", what, strerror(errno));
			return -1;
		}
	}
}
