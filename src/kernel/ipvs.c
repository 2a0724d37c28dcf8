/* IPVS over generic netlink with libnl-genl-3. One socket for the life of the
 * backend, the family id resolved once, every request answered by an ACK,
 * DONE or ERROR that the receive loop waits for; the kernel's errno is taken
 * from the NLMSG_ERROR itself (libnl's NLE codes fold ESRCH and ENOENT into
 * one, and they mean different things here). */
#include "svcproxy/ipvs_kernel.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/ip_vs.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <netlink/netlink.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct sp_ipvs_nl {
	struct nl_sock *sock;
	int family_id;
	unsigned long messages; /* commands only: a read changes nothing */
	/* State of the request in flight, set by the callbacks. */
	bool done;
	int err; /* -errno from NLMSG_ERROR */
	int (*parse)(struct sp_ipvs_nl *nl, struct nlmsghdr *nlh);
	void *parse_arg;
	int parse_err;
};

/* libnl's NLE_* codes back to errno, in one place. */
static int nle_to_errno(int nle)
{
	switch (nle < 0 ? -nle : nle) {
	case 0:
		return 0;
	case NLE_NOMEM:
		return ENOMEM;
	case NLE_PERM:
		return EPERM;
	case NLE_NOACCESS:
		return EACCES;
	case NLE_AGAIN:
		return EAGAIN;
	case NLE_INTR:
	case NLE_DUMP_INTR:
		return EINTR;
	case NLE_BUSY:
		return EBUSY;
	case NLE_EXIST:
		return EEXIST;
	case NLE_OBJ_NOTFOUND:
		return ENOENT;
	case NLE_INVAL:
	case NLE_MISSING_ATTR:
		return EINVAL;
	case NLE_RANGE:
		return ERANGE;
	case NLE_MSGSIZE:
	case NLE_MSG_TRUNC:
	case NLE_MSG_TOOSHORT:
		return EMSGSIZE;
	case NLE_OPNOTSUPP:
		return EOPNOTSUPP;
	case NLE_AF_NOSUPPORT:
		return EAFNOSUPPORT;
	case NLE_NOADDR:
		return EADDRNOTAVAIL;
	case NLE_BAD_SOCK:
		return EBADF;
	case NLE_PROTO_MISMATCH:
	case NLE_SEQ_MISMATCH:
	case NLE_MSG_OVERFLOW:
	case NLE_PARSE_ERR:
		return EPROTO;
	default:
		return EIO;
	}
}

/* ---- message codec ---------------------------------------------------- */

static struct nla_policy cmd_policy[IPVS_CMD_ATTR_MAX + 1] = {
	[IPVS_CMD_ATTR_SERVICE] = {.type = NLA_NESTED},
	[IPVS_CMD_ATTR_DEST] = {.type = NLA_NESTED},
};

static struct nla_policy svc_policy[IPVS_SVC_ATTR_MAX + 1] = {
	[IPVS_SVC_ATTR_AF] = {.type = NLA_U16},
	[IPVS_SVC_ATTR_PROTOCOL] = {.type = NLA_U16},
	[IPVS_SVC_ATTR_ADDR] = {.type = NLA_UNSPEC, .minlen = 4, .maxlen = 16},
	[IPVS_SVC_ATTR_PORT] = {.type = NLA_U16},
	[IPVS_SVC_ATTR_FWMARK] = {.type = NLA_U32},
	[IPVS_SVC_ATTR_SCHED_NAME] = {.type = NLA_STRING, .maxlen = IP_VS_SCHEDNAME_MAXLEN},
	[IPVS_SVC_ATTR_FLAGS] = {.type = NLA_UNSPEC, .minlen = sizeof(struct ip_vs_flags)},
	[IPVS_SVC_ATTR_TIMEOUT] = {.type = NLA_U32},
	[IPVS_SVC_ATTR_NETMASK] = {.type = NLA_U32},
	[IPVS_SVC_ATTR_STATS] = {.type = NLA_NESTED},
};

static struct nla_policy dest_policy[IPVS_DEST_ATTR_MAX + 1] = {
	[IPVS_DEST_ATTR_ADDR] = {.type = NLA_UNSPEC, .minlen = 4, .maxlen = 16},
	[IPVS_DEST_ATTR_PORT] = {.type = NLA_U16},
	[IPVS_DEST_ATTR_FWD_METHOD] = {.type = NLA_U32},
	[IPVS_DEST_ATTR_WEIGHT] = {.type = NLA_U32},
	[IPVS_DEST_ATTR_U_THRESH] = {.type = NLA_U32},
	[IPVS_DEST_ATTR_L_THRESH] = {.type = NLA_U32},
	[IPVS_DEST_ATTR_ACTIVE_CONNS] = {.type = NLA_U32},
	[IPVS_DEST_ATTR_INACT_CONNS] = {.type = NLA_U32},
	[IPVS_DEST_ATTR_PERSIST_CONNS] = {.type = NLA_U32},
	[IPVS_DEST_ATTR_ADDR_FAMILY] = {.type = NLA_U16},
};

static int put_addr(struct nl_msg *m, int attr, const struct sp_addr *a)
{
	uint8_t raw[16] = {0}; /* union nf_inet_addr, zero padded */

	memcpy(raw, a->u.bytes, sp_addr_len(a));
	return nla_put(m, attr, sizeof(raw), raw);
}

static int put_service(struct nl_msg *m, const struct sp_ipvs_service *svc, bool full)
{
	struct nlattr *nest = nla_nest_start(m, IPVS_CMD_ATTR_SERVICE);
	struct ip_vs_flags flags = {.flags = svc->flags, .mask = ~0u};

	if (!nest || nla_put_u16(m, IPVS_SVC_ATTR_AF, (uint16_t)svc->addr.family) ||
	    nla_put_u16(m, IPVS_SVC_ATTR_PROTOCOL, svc->protocol) ||
	    put_addr(m, IPVS_SVC_ATTR_ADDR, &svc->addr) ||
	    nla_put_u16(m, IPVS_SVC_ATTR_PORT, htons(svc->port)))
		return -1;
	if (full && (nla_put_string(m, IPVS_SVC_ATTR_SCHED_NAME, svc->scheduler) ||
		     nla_put(m, IPVS_SVC_ATTR_FLAGS, sizeof(flags), &flags) ||
		     nla_put_u32(m, IPVS_SVC_ATTR_TIMEOUT, svc->timeout) ||
		     nla_put_u32(m, IPVS_SVC_ATTR_NETMASK, svc->netmask)))
		return -1;
	return nla_nest_end(m, nest);
}

static int put_dest(struct nl_msg *m, const struct sp_ipvs_dest *d, bool full)
{
	struct nlattr *nest = nla_nest_start(m, IPVS_CMD_ATTR_DEST);

	if (!nest || put_addr(m, IPVS_DEST_ATTR_ADDR, &d->addr) ||
	    nla_put_u16(m, IPVS_DEST_ATTR_PORT, htons(d->port)) ||
	    nla_put_u16(m, IPVS_DEST_ATTR_ADDR_FAMILY, (uint16_t)d->addr.family))
		return -1;
	if (full && (nla_put_u32(m, IPVS_DEST_ATTR_FWD_METHOD, d->fwd_method) ||
		     nla_put_u32(m, IPVS_DEST_ATTR_WEIGHT, d->weight) ||
		     nla_put_u32(m, IPVS_DEST_ATTR_U_THRESH, d->u_threshold) ||
		     nla_put_u32(m, IPVS_DEST_ATTR_L_THRESH, d->l_threshold)))
		return -1;
	return nla_nest_end(m, nest);
}

struct nl_msg *sp_ipvs_msg_build(int family_id, uint8_t cmd, int nl_flags,
				 const struct sp_ipvs_service *svc, bool full_svc,
				 const struct sp_ipvs_dest *dest, bool full_dest)
{
	struct nl_msg *m = nlmsg_alloc();

	if (!m) {
		sp_xmalloc(SIZE_MAX); /* aborts with the project's OOM message */
		return NULL;
	}
	if (!genlmsg_put(m, NL_AUTO_PORT, NL_AUTO_SEQ, family_id, 0, nl_flags, cmd,
			 IPVS_GENL_VERSION) ||
	    (svc && put_service(m, svc, full_svc) < 0) ||
	    (dest && put_dest(m, dest, full_dest) < 0)) {
		nlmsg_free(m);
		return NULL;
	}
	return m;
}

static void get_addr(const struct nlattr *a, int family, struct sp_addr *out)
{
	size_t want = family == AF_INET6 ? 16 : 4;
	size_t len = (size_t)nla_len(a);

	memset(out, 0, sizeof(*out));
	out->family = family;
	memcpy(out->u.bytes, nla_data(a), len < want ? len : want);
}

static int parse_service(struct nlattr *nest, struct sp_ipvs_service *svc)
{
	struct nlattr *tb[IPVS_SVC_ATTR_MAX + 1];
	int family;

	if (nla_parse_nested(tb, IPVS_SVC_ATTR_MAX, nest, svc_policy) < 0 ||
	    !tb[IPVS_SVC_ATTR_AF] || !tb[IPVS_SVC_ATTR_PROTOCOL] || !tb[IPVS_SVC_ATTR_ADDR] ||
	    !tb[IPVS_SVC_ATTR_PORT])
		return -EINVAL; /* fwmark services are never ours */
	family = nla_get_u16(tb[IPVS_SVC_ATTR_AF]);
	if (family != AF_INET && family != AF_INET6)
		return -EINVAL;
	memset(svc, 0, sizeof(*svc));
	get_addr(tb[IPVS_SVC_ATTR_ADDR], family, &svc->addr);
	svc->protocol = (uint8_t)nla_get_u16(tb[IPVS_SVC_ATTR_PROTOCOL]);
	svc->port = ntohs(nla_get_u16(tb[IPVS_SVC_ATTR_PORT]));
	if (tb[IPVS_SVC_ATTR_SCHED_NAME])
		nla_strlcpy(svc->scheduler, tb[IPVS_SVC_ATTR_SCHED_NAME], sizeof(svc->scheduler));
	if (tb[IPVS_SVC_ATTR_FLAGS]) {
		struct ip_vs_flags f;

		memcpy(&f, nla_data(tb[IPVS_SVC_ATTR_FLAGS]), sizeof(f));
		svc->flags = f.flags & ~(uint32_t)IP_VS_SVC_F_HASHED;
	}
	if (tb[IPVS_SVC_ATTR_TIMEOUT])
		svc->timeout = nla_get_u32(tb[IPVS_SVC_ATTR_TIMEOUT]);
	if (tb[IPVS_SVC_ATTR_NETMASK])
		svc->netmask = nla_get_u32(tb[IPVS_SVC_ATTR_NETMASK]);
	return 0;
}

static int parse_dest(struct nlattr *nest, int svc_family, struct sp_ipvs_dest *d)
{
	struct nlattr *tb[IPVS_DEST_ATTR_MAX + 1];
	int family = svc_family;

	if (nla_parse_nested(tb, IPVS_DEST_ATTR_MAX, nest, dest_policy) < 0 ||
	    !tb[IPVS_DEST_ATTR_ADDR] || !tb[IPVS_DEST_ATTR_PORT])
		return -EINVAL;
	if (tb[IPVS_DEST_ATTR_ADDR_FAMILY])
		family = nla_get_u16(tb[IPVS_DEST_ATTR_ADDR_FAMILY]);
	if (family != AF_INET && family != AF_INET6)
		return -EINVAL;
	memset(d, 0, sizeof(*d));
	get_addr(tb[IPVS_DEST_ATTR_ADDR], family, &d->addr);
	d->port = ntohs(nla_get_u16(tb[IPVS_DEST_ATTR_PORT]));
	if (tb[IPVS_DEST_ATTR_FWD_METHOD])
		d->fwd_method = nla_get_u32(tb[IPVS_DEST_ATTR_FWD_METHOD]) & IP_VS_CONN_F_FWD_MASK;
	if (tb[IPVS_DEST_ATTR_WEIGHT])
		d->weight = nla_get_u32(tb[IPVS_DEST_ATTR_WEIGHT]);
	if (tb[IPVS_DEST_ATTR_U_THRESH])
		d->u_threshold = nla_get_u32(tb[IPVS_DEST_ATTR_U_THRESH]);
	if (tb[IPVS_DEST_ATTR_L_THRESH])
		d->l_threshold = nla_get_u32(tb[IPVS_DEST_ATTR_L_THRESH]);
	if (tb[IPVS_DEST_ATTR_ACTIVE_CONNS])
		d->active_conns = nla_get_u32(tb[IPVS_DEST_ATTR_ACTIVE_CONNS]);
	if (tb[IPVS_DEST_ATTR_INACT_CONNS])
		d->inactive_conns = nla_get_u32(tb[IPVS_DEST_ATTR_INACT_CONNS]);
	return 0;
}

int sp_ipvs_msg_parse(struct nlmsghdr *nlh, struct sp_ipvs_service *svc, struct sp_ipvs_dest *dest)
{
	struct nlattr *tb[IPVS_CMD_ATTR_MAX + 1];
	struct sp_ipvs_service tmp;
	int family = AF_INET;

	if (genlmsg_parse(nlh, 0, tb, IPVS_CMD_ATTR_MAX, cmd_policy) < 0)
		return -EINVAL;
	if (svc || (dest && tb[IPVS_CMD_ATTR_SERVICE])) {
		struct sp_ipvs_service *s = svc ? svc : &tmp;

		if (!tb[IPVS_CMD_ATTR_SERVICE] || parse_service(tb[IPVS_CMD_ATTR_SERVICE], s) < 0)
			return -EINVAL;
		family = s->addr.family;
	}
	if (dest &&
	    (!tb[IPVS_CMD_ATTR_DEST] || parse_dest(tb[IPVS_CMD_ATTR_DEST], family, dest) < 0))
		return -EINVAL;
	return 0;
}

/* ---- transport -------------------------------------------------------- */

static int on_valid(struct nl_msg *m, void *arg)
{
	struct sp_ipvs_nl *nl = arg;

	if (nl->parse && !nl->parse_err)
		nl->parse_err = nl->parse(nl, nlmsg_hdr(m));
	return NL_OK;
}

static int on_done(struct nl_msg *m, void *arg)
{
	struct sp_ipvs_nl *nl = arg;

	(void)m;
	nl->done = true;
	return NL_STOP;
}

static int on_error(struct sockaddr_nl *who, struct nlmsgerr *e, void *arg)
{
	struct sp_ipvs_nl *nl = arg;

	(void)who;
	nl->err = e->error;
	nl->done = true;
	return NL_STOP;
}

/* Send m (consumed) and read until its ACK, DONE or ERROR. */
static int transact(struct sp_ipvs_nl *nl, struct nl_msg *m,
		    int (*parse)(struct sp_ipvs_nl *, struct nlmsghdr *), void *parse_arg)
{
	int ret;

	if (!m)
		return -EMSGSIZE;
	nl->done = false;
	nl->err = 0;
	nl->parse = parse;
	nl->parse_arg = parse_arg;
	nl->parse_err = 0;
	ret = nl_send_auto(nl->sock, m);
	nlmsg_free(m);
	if (ret < 0)
		return -nle_to_errno(ret);
	while (!nl->done) {
		ret = nl_recvmsgs_default(nl->sock);
		if (ret < 0 && !nl->done)
			return -nle_to_errno(ret);
	}
	nl->parse = NULL;
	if (nl->err)
		return nl->err;
	return nl->parse_err;
}

struct sp_ipvs_nl *sp_ipvs_nl_open(struct sp_diag *diag)
{
	struct sp_ipvs_nl *nl = sp_xcalloc(1, sizeof(*nl));
	int ret;

	nl->sock = nl_socket_alloc();
	if (!nl->sock)
		sp_xmalloc(SIZE_MAX);
	ret = genl_connect(nl->sock);
	if (ret < 0) {
		sp_diag_error(diag, "ipvs: generic netlink socket: %s", nl_geterror(ret));
		goto fail;
	}
	if (fcntl(nl_socket_get_fd(nl->sock), F_SETFD, FD_CLOEXEC) < 0) {
		sp_diag_error(diag, "ipvs: netlink socket: %s", strerror(errno));
		goto fail;
	}
	nl_socket_set_buffer_size(nl->sock, 1 << 20, 1 << 20);
	nl->family_id = genl_ctrl_resolve(nl->sock, IPVS_GENL_NAME);
	if (nl->family_id < 0) {
		sp_diag_error(diag,
			      "ipvs: generic netlink family \"%s\" not found (%s): this kernel has "
			      "no IPVS, or the ip_vs module is not loaded (modprobe ip_vs)",
			      IPVS_GENL_NAME, nl_geterror(nl->family_id));
		goto fail;
	}
	nl_socket_modify_cb(nl->sock, NL_CB_VALID, NL_CB_CUSTOM, on_valid, nl);
	nl_socket_modify_cb(nl->sock, NL_CB_FINISH, NL_CB_CUSTOM, on_done, nl);
	nl_socket_modify_cb(nl->sock, NL_CB_ACK, NL_CB_CUSTOM, on_done, nl);
	nl_socket_modify_err_cb(nl->sock, NL_CB_CUSTOM, on_error, nl);
	/* Prove that we may talk to it (GENL_ADMIN_PERM applies to reads). */
	ret = transact(
		nl,
		sp_ipvs_msg_build(nl->family_id, IPVS_CMD_GET_INFO, 0, NULL, false, NULL, false),
		NULL, NULL);
	if (ret < 0) {
		sp_diag_error(diag, "ipvs: reading IPVS info: %s",
			      sp_ipvs_nl_strerror(IPVS_CMD_GET_INFO, -ret));
		goto fail;
	}
	return nl;
fail:
	sp_ipvs_nl_close(nl);
	return NULL;
}

void sp_ipvs_nl_close(struct sp_ipvs_nl *nl)
{
	if (!nl)
		return;
	nl_socket_free(nl->sock);
	free(nl);
}

unsigned long sp_ipvs_nl_messages(const struct sp_ipvs_nl *nl)
{
	return nl->messages;
}

static int command(struct sp_ipvs_nl *nl, uint8_t cmd, const struct sp_ipvs_service *svc,
		   bool full_svc, const struct sp_ipvs_dest *dest, bool full_dest)
{
	nl->messages++;
	return transact(nl,
			sp_ipvs_msg_build(nl->family_id, cmd, 0, svc, full_svc, dest, full_dest),
			NULL, NULL);
}

int sp_ipvs_nl_add_service(struct sp_ipvs_nl *nl, const struct sp_ipvs_service *svc)
{
	int ret = command(nl, IPVS_CMD_NEW_SERVICE, svc, true, NULL, false);

	if (ret == -EEXIST)
		ret = command(nl, IPVS_CMD_SET_SERVICE, svc, true, NULL, false);
	return ret;
}

int sp_ipvs_nl_edit_service(struct sp_ipvs_nl *nl, const struct sp_ipvs_service *svc)
{
	int ret = command(nl, IPVS_CMD_SET_SERVICE, svc, true, NULL, false);

	if (ret == -ESRCH)
		ret = command(nl, IPVS_CMD_NEW_SERVICE, svc, true, NULL, false);
	return ret;
}

int sp_ipvs_nl_del_service(struct sp_ipvs_nl *nl, const struct sp_ipvs_service *svc)
{
	int ret = command(nl, IPVS_CMD_DEL_SERVICE, svc, false, NULL, false);

	return ret == -ESRCH ? 0 : ret;
}

int sp_ipvs_nl_add_dest(struct sp_ipvs_nl *nl, const struct sp_ipvs_service *svc,
			const struct sp_ipvs_dest *dest)
{
	int ret = command(nl, IPVS_CMD_NEW_DEST, svc, false, dest, true);

	if (ret == -EEXIST)
		ret = command(nl, IPVS_CMD_SET_DEST, svc, false, dest, true);
	return ret;
}

int sp_ipvs_nl_edit_dest(struct sp_ipvs_nl *nl, const struct sp_ipvs_service *svc,
			 const struct sp_ipvs_dest *dest)
{
	int ret = command(nl, IPVS_CMD_SET_DEST, svc, false, dest, true);

	if (ret == -ENOENT)
		ret = command(nl, IPVS_CMD_NEW_DEST, svc, false, dest, true);
	return ret;
}

int sp_ipvs_nl_del_dest(struct sp_ipvs_nl *nl, const struct sp_ipvs_service *svc,
			const struct sp_ipvs_dest *dest)
{
	int ret = command(nl, IPVS_CMD_DEL_DEST, svc, false, dest, false);

	/* Gone already, or its whole service is. */
	return ret == -ENOENT || ret == -ESRCH ? 0 : ret;
}

int sp_ipvs_nl_flush(struct sp_ipvs_nl *nl)
{
	return command(nl, IPVS_CMD_FLUSH, NULL, false, NULL, false);
}

static int collect_service(struct sp_ipvs_nl *nl, struct nlmsghdr *nlh)
{
	struct sp_ipvs_state *out = nl->parse_arg;
	struct sp_ipvs_service svc;

	if (sp_ipvs_msg_parse(nlh, &svc, NULL) < 0)
		return 0; /* a fwmark service: not ours, not comparable */
	*sp_ipvs_add_service(out) = svc;
	return 0;
}

static int collect_dest(struct sp_ipvs_nl *nl, struct nlmsghdr *nlh)
{
	struct sp_ipvs_service *svc = nl->parse_arg;
	struct sp_ipvs_dest d;

	if (sp_ipvs_msg_parse(nlh, NULL, &d) < 0)
		return -EPROTO;
	*sp_ipvs_add_dest(svc) = d;
	return 0;
}

int sp_ipvs_nl_dump_dests(struct sp_ipvs_nl *nl, struct sp_ipvs_service *svc)
{
	return transact(nl,
			sp_ipvs_msg_build(nl->family_id, IPVS_CMD_GET_DEST, NLM_F_DUMP, svc, false,
					  NULL, false),
			collect_dest, svc);
}

int sp_ipvs_nl_dump(struct sp_ipvs_nl *nl, struct sp_ipvs_state *out)
{
	size_t first = out->n_services;
	int ret = transact(nl,
			   sp_ipvs_msg_build(nl->family_id, IPVS_CMD_GET_SERVICE, NLM_F_DUMP, NULL,
					     false, NULL, false),
			   collect_service, out);

	for (size_t i = first; ret == 0 && i < out->n_services; i++)
		ret = sp_ipvs_nl_dump_dests(nl, &out->services[i]);
	return ret;
}

const char *sp_ipvs_nl_strerror(int cmd, int err)
{
	switch (err) {
	case EPERM:
		return "permission denied: IPVS needs CAP_NET_ADMIN in the initial user namespace";
	case EINVAL:
		if (cmd == IPVS_CMD_NEW_DEST || cmd == IPVS_CMD_SET_DEST)
			return "invalid argument: the kernel classes the real server address as "
			       "broadcast, multicast or zero-net (or, for IPv6, link-local), or a "
			       "threshold is out of range";
		return "invalid argument: an attribute is missing or out of range (netmask, "
		       "address family)";
	case EEXIST:
		return cmd == IPVS_CMD_NEW_DEST ? "the real server already exists"
						: "the virtual server already exists";
	case ESRCH:
		return "no such virtual server";
	case ENOENT:
		if (cmd == IPVS_CMD_NEW_SERVICE || cmd == IPVS_CMD_SET_SERVICE)
			return "scheduler or persistence engine not found (is its ip_vs_<name> "
			       "module loaded?)";
		return "no such real server";
	case ERANGE:
		return "weight or threshold out of range";
	case EAFNOSUPPORT:
		return "address family not supported (IPv6 disabled?)";
	case ENOPROTOOPT:
		return "protocol not available";
	case ENOMEM:
		return "the kernel is out of memory";
	case EMSGSIZE:
		return "message size mismatch (IPVS module of another version?)";
	default:
		return strerror(err);
	}
}
