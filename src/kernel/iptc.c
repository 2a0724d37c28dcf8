/* libiptc (legacy x_tables, libip4tc and libip6tc): encode the IR into
 * ipt_entry / ip6t_entry blobs,
 * decode the kernel's entries back into the IR, and apply per-chain
 * changes under the xtables lock with one commit per table.
 *
 * libiptc reads the whole table at iptc_init() and writes it whole at
 * iptc_commit() (counters of untouched rules are carried over), and fails
 * the commit with EAGAIN when another writer committed in between: then the
 * whole read-compare-edit is redone, a few times. */
#include "svcproxy/iptc.h"

#include <errno.h>
#include <fcntl.h>
#include <libiptc/libip6tc.h>
#include <libiptc/libiptc.h>
#include <limits.h>
#include <linux/netfilter/nf_nat.h>
#include <linux/netfilter/x_tables.h>
#include <linux/netfilter/xt_MARK.h>
#include <linux/netfilter/xt_addrtype.h>
#include <linux/netfilter/xt_comment.h>
#include <linux/netfilter/xt_conntrack.h>
#include <linux/netfilter/xt_mark.h>
#include <linux/netfilter/xt_recent.h>
#include <linux/netfilter/xt_set.h>
#include <linux/netfilter/xt_sctp.h>
#include <linux/netfilter/xt_statistic.h>
#include <linux/netfilter/xt_tcpudp.h>
#include <linux/netfilter_ipv4/ipt_REJECT.h>
#include <linux/netfilter_ipv6/ip6t_REJECT.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define COMMIT_TRIES 3
#define ENTRY_MAX 4096

static unsigned lock_timeout_ms = 10000;

void sp_iptc_set_lock_timeout(unsigned ms)
{
	lock_timeout_ms = ms;
}

bool sp_iptc_owned(const struct sp_iptc_owner *own, const char *chain)
{
	for (const char *const *n = own->names; n && *n; n++) {
		if (!strcmp(*n, chain))
			return true;
	}
	for (const char *const *p = own->prefixes; p && *p; p++) {
		if (!strncmp(*p, chain, strlen(*p)))
			return true;
	}
	return false;
}

/* ---- the xtables lock ---- */

static const char *lock_path(void)
{
	const char *env = getenv("XTABLES_LOCKFILE");

	return env && *env ? env : "/run/xtables.lock";
}

/* flock() as iptables -w does: wait (polling, so that the wait is bounded)
 * up to the timeout. Returns the descriptor or -1. */
static int xtables_lock(struct sp_diag *diag)
{
	const char *path = lock_path();
	int fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0600);
	unsigned waited = 0;

	if (fd < 0) {
		sp_diag_error(diag, "xtables lock %s: %s", path, strerror(errno));
		return -1;
	}
	while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		struct timespec ts = {0, 10 * 1000 * 1000};

		if (errno != EWOULDBLOCK && errno != EINTR) {
			sp_diag_error(diag, "xtables lock %s: %s", path, strerror(errno));
			close(fd);
			return -1;
		}
		if (waited >= lock_timeout_ms) {
			sp_diag_error(diag,
				      "xtables lock %s: still held by another program after %u ms "
				      "(an iptables command or another agent); nothing changed",
				      path, waited);
			close(fd);
			return -1;
		}
		nanosleep(&ts, NULL);
		waited += 10;
	}
	return fd;
}

static void xtables_unlock(int fd)
{
	if (fd >= 0)
		close(fd); /* releases the flock */
}

/* ---- one family's libiptc ---- */

/* libip4tc and libip6tc have the same functions under two prefixes, with
 * their own entry types; a job runs on this table of them. */
struct fam {
	int family;
	const char *tool; /* for messages */
	size_t entry_hdr; /* XT_ALIGN(sizeof(the entry)) */
	struct xtc_handle *(*init)(const char *table);
	void (*free)(struct xtc_handle *h);
	int (*commit)(struct xtc_handle *h);
	const char *(*first_chain)(struct xtc_handle *h);
	const char *(*next_chain)(struct xtc_handle *h);
	int (*builtin)(const char *chain, struct xtc_handle *const h);
	int (*is_chain)(const char *chain, struct xtc_handle *const h);
	int (*create_chain)(const char *chain, struct xtc_handle *h);
	int (*delete_chain)(const char *chain, struct xtc_handle *h);
	int (*flush_entries)(const char *chain, struct xtc_handle *h);
	int (*delete_num_entry)(const char *chain, unsigned int n, struct xtc_handle *h);
	const char *(*strerror)(int err);
	const void *(*first_rule)(const char *chain, struct xtc_handle *h);
	const void *(*next_rule)(const void *prev, struct xtc_handle *h);
	const char *(*get_target)(const void *e, struct xtc_handle *h);
	int (*append)(const char *chain, const void *e, struct xtc_handle *h);
	int (*insert)(const char *chain, const void *e, unsigned int n, struct xtc_handle *h);
};

static const void *v4_first_rule(const char *chain, struct xtc_handle *h)
{
	return iptc_first_rule(chain, h);
}

static const void *v4_next_rule(const void *prev, struct xtc_handle *h)
{
	return iptc_next_rule(prev, h);
}

static const char *v4_get_target(const void *e, struct xtc_handle *h)
{
	return iptc_get_target(e, h);
}

static int v4_append(const char *chain, const void *e, struct xtc_handle *h)
{
	return iptc_append_entry(chain, e, h);
}

static int v4_insert(const char *chain, const void *e, unsigned int n, struct xtc_handle *h)
{
	return iptc_insert_entry(chain, e, n, h);
}

static const void *v6_first_rule(const char *chain, struct xtc_handle *h)
{
	return ip6tc_first_rule(chain, h);
}

static const void *v6_next_rule(const void *prev, struct xtc_handle *h)
{
	return ip6tc_next_rule(prev, h);
}

static const char *v6_get_target(const void *e, struct xtc_handle *h)
{
	return ip6tc_get_target(e, h);
}

static int v6_append(const char *chain, const void *e, struct xtc_handle *h)
{
	return ip6tc_append_entry(chain, e, h);
}

static int v6_insert(const char *chain, const void *e, unsigned int n, struct xtc_handle *h)
{
	return ip6tc_insert_entry(chain, e, n, h);
}

static const struct fam fam_v4 = {
	.family = AF_INET,
	.tool = "iptables",
	.entry_hdr = XT_ALIGN(sizeof(struct ipt_entry)),
	.init = iptc_init,
	.free = iptc_free,
	.commit = iptc_commit,
	.first_chain = iptc_first_chain,
	.next_chain = iptc_next_chain,
	.builtin = iptc_builtin,
	.is_chain = iptc_is_chain,
	.create_chain = iptc_create_chain,
	.delete_chain = iptc_delete_chain,
	.flush_entries = iptc_flush_entries,
	.delete_num_entry = iptc_delete_num_entry,
	.strerror = iptc_strerror,
	.first_rule = v4_first_rule,
	.next_rule = v4_next_rule,
	.get_target = v4_get_target,
	.append = v4_append,
	.insert = v4_insert,
};

static const struct fam fam_v6 = {
	.family = AF_INET6,
	.tool = "ip6tables",
	.entry_hdr = XT_ALIGN(sizeof(struct ip6t_entry)),
	.init = ip6tc_init,
	.free = ip6tc_free,
	.commit = ip6tc_commit,
	.first_chain = ip6tc_first_chain,
	.next_chain = ip6tc_next_chain,
	.builtin = ip6tc_builtin,
	.is_chain = ip6tc_is_chain,
	.create_chain = ip6tc_create_chain,
	.delete_chain = ip6tc_delete_chain,
	.flush_entries = ip6tc_flush_entries,
	.delete_num_entry = ip6tc_delete_num_entry,
	.strerror = ip6tc_strerror,
	.first_rule = v6_first_rule,
	.next_rule = v6_next_rule,
	.get_target = v6_get_target,
	.append = v6_append,
	.insert = v6_insert,
};

static const struct fam *fam_of(int family)
{
	return family == AF_INET6 ? &fam_v6 : &fam_v4;
}

static uint16_t entry_target_offset(const struct fam *f, const void *e)
{
	return f->family == AF_INET6 ? ((const struct ip6t_entry *)e)->target_offset
				     : ((const struct ipt_entry *)e)->target_offset;
}

/* ---- encoding ---- */

struct entry_buf {
	union {
		struct ipt_entry e;
		struct ip6t_entry e6;
		uint8_t bytes[ENTRY_MAX];
	} u;
	size_t len;
};

static void *put_ext(struct entry_buf *b, const char *name, uint8_t revision, size_t size)
{
	struct xt_entry_match *m = (struct xt_entry_match *)(b->u.bytes + b->len);
	size_t total = XT_ALIGN(sizeof(*m) + size);

	/* match and target headers share the layout (size, name, revision). */
	m->u.match_size = (uint16_t)total;
	snprintf(m->u.user.name, sizeof(m->u.user.name), "%s", name);
	m->u.user.revision = revision;
	b->len += total;
	return m->data;
}

static void encode_ports(struct sp_ipt_match *m, struct entry_buf *b)
{
	uint16_t lo = m->u.dport ? m->u.dport : 0, hi = m->u.dport ? m->u.dport : 0xffff;

	if (m->kind == SP_IPT_M_TCP) {
		struct xt_tcp *t = put_ext(b, "tcp", 0, sizeof(*t));

		t->spts[1] = 0xffff;
		t->dpts[0] = lo;
		t->dpts[1] = hi;
	} else if (m->kind == SP_IPT_M_UDP) {
		struct xt_udp *u = put_ext(b, "udp", 0, sizeof(*u));

		u->spts[1] = 0xffff;
		u->dpts[0] = lo;
		u->dpts[1] = hi;
	} else {
		struct xt_sctp_info *s = put_ext(b, "sctp", 0, sizeof(*s));

		s->spts[1] = 0xffff;
		s->dpts[0] = lo;
		s->dpts[1] = hi;
		s->flags = m->u.dport ? XT_SCTP_DEST_PORTS : 0;
	}
}

/* The set match carries the kernel's index of the set, not its name; ask the
 * ipset getsockopt interface (as libxt_set does). IPSET_INVALID_ID when the
 * set does not exist: the kernel then refuses the rule at commit, which
 * reports it. */
static int set_sockopt(void *req, socklen_t len)
{
	int fd = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW);
	int ret;

	if (fd < 0)
		return -1;
	ret = getsockopt(fd, SOL_IP, SO_IP_SET, req, &len);
	close(fd);
	return ret;
}

static unsigned set_protocol_version(void)
{
	struct ip_set_req_version v = {.op = IP_SET_OP_VERSION};

	return set_sockopt(&v, sizeof(v)) < 0 ? IPSET_PROTOCOL : v.version;
}

static ip_set_id_t set_index_of(const char *name)
{
	struct ip_set_req_get_set req = {.op = IP_SET_OP_GET_BYNAME};

	req.version = set_protocol_version();
	snprintf(req.set.name, sizeof(req.set.name), "%s", name);
	if (set_sockopt(&req, sizeof(req)) < 0)
		return IPSET_INVALID_ID;
	return req.set.index;
}

static bool set_name_of(ip_set_id_t index, char *name, size_t len)
{
	struct ip_set_req_get_set req = {.op = IP_SET_OP_GET_BYINDEX};

	req.version = set_protocol_version();
	req.set.index = index;
	if (set_sockopt(&req, sizeof(req)) < 0 || !req.set.name[0])
		return false;
	snprintf(name, len, "%.*s", (int)sizeof(req.set.name), req.set.name);
	return true;
}

static void encode_set(const struct sp_ipt_match *m, struct entry_buf *b)
{
	struct xt_set_info_match_v1 *s = put_ext(b, "set", 1, sizeof(*s));

	s->match_set.index = set_index_of(m->u.set.name);
	s->match_set.dim = m->u.set.dim;
	/* Kernel layout: bit 0 inverts, bit i marks dimension i as source. */
	s->match_set.flags =
		(uint8_t)((m->u.set.src_dims << 1) | (m->invert ? IPSET_INV_MATCH : 0));
}

static void encode_match(struct sp_ipt_match *m, int family, struct entry_buf *b)
{
	switch (m->kind) {
	case SP_IPT_M_COMMENT: {
		struct xt_comment_info *c = put_ext(b, "comment", 0, sizeof(*c));

		snprintf(c->comment, sizeof(c->comment), "%s", m->u.comment);
		break;
	}
	case SP_IPT_M_TCP:
	case SP_IPT_M_UDP:
	case SP_IPT_M_SCTP:
		encode_ports(m, b);
		break;
	case SP_IPT_M_ADDRTYPE: {
		struct xt_addrtype_info_v1 *a = put_ext(b, "addrtype", 1, sizeof(*a));

		a->source = m->u.addrtype.src_type;
		a->dest = m->u.addrtype.dst_type;
		if (m->invert)
			a->flags = a->source ? XT_ADDRTYPE_INVERT_SOURCE : XT_ADDRTYPE_INVERT_DEST;
		break;
	}
	case SP_IPT_M_MARK: {
		struct xt_mark_mtinfo1 *k = put_ext(b, "mark", 1, sizeof(*k));

		k->mark = m->u.mark.value;
		k->mask = m->u.mark.mask;
		k->invert = m->invert;
		break;
	}
	case SP_IPT_M_STATISTIC: {
		struct xt_statistic_info *s = put_ext(b, "statistic", 0, sizeof(*s));

		s->mode = XT_STATISTIC_MODE_RANDOM;
		s->u.random.probability = m->u.probability;
		break;
	}
	case SP_IPT_M_RECENT: {
		struct xt_recent_mtinfo_v1 *r = put_ext(b, "recent", 1, sizeof(*r));

		r->check_set = m->u.recent.set ? XT_RECENT_SET : XT_RECENT_CHECK;
		if (m->u.recent.reap)
			r->check_set |= XT_RECENT_REAP;
		r->seconds = m->u.recent.seconds;
		snprintf(r->name, sizeof(r->name), "%s", m->u.recent.name);
		r->side = XT_RECENT_SOURCE;
		memset(&r->mask, 0xff, family == AF_INET6 ? 16 : 4);
		break;
	}
	case SP_IPT_M_CONNTRACK: {
		struct xt_conntrack_mtinfo3 *c = put_ext(b, "conntrack", 3, sizeof(*c));

		c->match_flags = XT_CONNTRACK_STATE;
		c->state_mask = m->u.ctstate;
		break;
	}
	case SP_IPT_M_SET:
		encode_set(m, b);
		break;
	case SP_IPT_M_UNKNOWN:
		break;
	}
}

static void encode_target(const struct sp_ipt_target *t, int family, struct entry_buf *b)
{
	const char *verdict = NULL;

	switch (t->kind) {
	case SP_IPT_T_JUMP:
	case SP_IPT_T_GOTO:
	case SP_IPT_T_UNKNOWN:
		verdict = t->chain;
		break;
	case SP_IPT_T_ACCEPT:
		verdict = IPTC_LABEL_ACCEPT;
		break;
	case SP_IPT_T_DROP:
		verdict = IPTC_LABEL_DROP;
		break;
	case SP_IPT_T_RETURN:
		verdict = IPTC_LABEL_RETURN;
		break;
	case SP_IPT_T_REJECT:
		if (family == AF_INET6) {
			struct ip6t_reject_info *r6 = put_ext(b, "REJECT", 0, sizeof(*r6));

			r6->with = IP6T_ICMP6_PORT_UNREACH;
		} else {
			struct ipt_reject_info *r = put_ext(b, "REJECT", 0, sizeof(*r));

			r->with = IPT_ICMP_PORT_UNREACHABLE;
		}
		return;
	case SP_IPT_T_DNAT: {
		struct nf_nat_range2 *r = put_ext(b, "DNAT", 2, sizeof(*r));

		r->flags = NF_NAT_RANGE_MAP_IPS;
		memcpy(&r->min_addr, t->to_addr.u.bytes, sp_addr_len(&t->to_addr));
		r->max_addr = r->min_addr;
		if (t->to_port) {
			r->flags |= NF_NAT_RANGE_PROTO_SPECIFIED;
			r->min_proto.all = r->max_proto.all = htons(t->to_port);
		}
		return;
	}
	case SP_IPT_T_MARK: {
		struct xt_mark_tginfo2 *k = put_ext(b, "MARK", 2, sizeof(*k));

		k->mark = t->mark_value;
		k->mask = t->mark_mask;
		return;
	}
	case SP_IPT_T_MASQUERADE:
		if (family == AF_INET6) {
			struct nf_nat_range *r6 = put_ext(b, "MASQUERADE", 0, sizeof(*r6));

			r6->flags = t->random_fully ? NF_NAT_RANGE_PROTO_RANDOM_FULLY : 0;
		} else {
			struct nf_nat_ipv4_multi_range_compat *r =
				put_ext(b, "MASQUERADE", 0, sizeof(*r));

			r->rangesize = 1;
			if (t->random_fully)
				r->range[0].flags = NF_NAT_RANGE_PROTO_RANDOM_FULLY;
		}
		return;
	}
	/* libiptc maps these names to verdicts or jumps itself. */
	put_ext(b, verdict, 0, sizeof(int));
}

static uint32_t prefix_mask(unsigned prefix)
{
	return prefix ? htonl(0xffffffffu << (32 - prefix)) : 0;
}

static void prefix_mask6(unsigned prefix, struct in6_addr *mask)
{
	memset(mask, 0, sizeof(*mask));
	for (unsigned bit = 0; bit < prefix && bit < 128; bit++)
		mask->s6_addr[bit / 8] |= (uint8_t)(0x80 >> (bit % 8));
}

static void encode_header6(const struct sp_ipt_rule *r, struct entry_buf *b)
{
	struct ip6t_entry *e = &b->u.e6;

	if (r->src.addr.family) {
		e->ipv6.src = r->src.addr.u.v6;
		prefix_mask6(r->src.prefix, &e->ipv6.smsk);
	}
	if (r->dst.addr.family) {
		e->ipv6.dst = r->dst.addr.u.v6;
		prefix_mask6(r->dst.prefix, &e->ipv6.dmsk);
	}
	if (r->src_invert)
		e->ipv6.invflags |= IP6T_INV_SRCIP;
	if (r->dst_invert)
		e->ipv6.invflags |= IP6T_INV_DSTIP;
	e->ipv6.proto = r->proto;
	if (r->proto)
		e->ipv6.flags |= IP6T_F_PROTO; /* as ip6tables -p sets it */
	if (r->target.kind == SP_IPT_T_GOTO)
		e->ipv6.flags |= IP6T_F_GOTO;
}

static void encode_rule(const struct fam *f, const struct sp_ipt_rule *r, struct entry_buf *b)
{
	struct ipt_entry *e = &b->u.e;

	memset(b, 0, sizeof(*b));
	b->len = f->entry_hdr;
	if (f->family == AF_INET6) {
		encode_header6(r, b);
		for (size_t i = 0; i < r->n_matches; i++)
			encode_match(&r->matches[i], f->family, b);
		b->u.e6.target_offset = (uint16_t)b->len;
		encode_target(&r->target, f->family, b);
		b->u.e6.next_offset = (uint16_t)b->len;
		return;
	}

	if (r->src.addr.family) {
		e->ip.src = r->src.addr.u.v4;
		e->ip.smsk.s_addr = prefix_mask(r->src.prefix);
	}
	if (r->dst.addr.family) {
		e->ip.dst = r->dst.addr.u.v4;
		e->ip.dmsk.s_addr = prefix_mask(r->dst.prefix);
	}
	if (r->src_invert)
		e->ip.invflags |= IPT_INV_SRCIP;
	if (r->dst_invert)
		e->ip.invflags |= IPT_INV_DSTIP;
	e->ip.proto = r->proto;
	if (r->target.kind == SP_IPT_T_GOTO)
		e->ip.flags |= IPT_F_GOTO;
	for (size_t i = 0; i < r->n_matches; i++)
		encode_match(&r->matches[i], f->family, b);
	e->target_offset = (uint16_t)b->len;
	encode_target(&r->target, f->family, b);
	e->next_offset = (uint16_t)b->len;
}

/* ---- decoding ---- */

static void unknown_match(struct sp_ipt_rule *r, const char *what)
{
	sp_ipt_match_add(r, SP_IPT_M_UNKNOWN)->u.comment = sp_xstrdup(what);
}

static bool all_ones(const union nf_inet_addr *mask, int family)
{
	static const uint8_t ones[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
					 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

	return !memcmp(mask, ones, family == AF_INET6 ? 16 : 4);
}

static bool decode_ports(const struct xt_entry_match *m, struct sp_ipt_rule *r)
{
	const char *name = m->u.user.name;
	enum sp_ipt_match_kind kind;
	const uint16_t *spts, *dpts;
	uint16_t dport;

	if (!strcmp(name, "tcp")) {
		const struct xt_tcp *t = (const void *)m->data;

		if (t->option || t->flg_mask || t->invflags)
			return false;
		kind = SP_IPT_M_TCP;
		spts = t->spts;
		dpts = t->dpts;
	} else if (!strcmp(name, "udp")) {
		const struct xt_udp *u = (const void *)m->data;

		if (u->invflags)
			return false;
		kind = SP_IPT_M_UDP;
		spts = u->spts;
		dpts = u->dpts;
	} else {
		const struct xt_sctp_info *s = (const void *)m->data;

		if (s->flags & ~XT_SCTP_DEST_PORTS || s->invflags)
			return false;
		kind = SP_IPT_M_SCTP;
		spts = s->spts;
		dpts = s->dpts;
		if (!(s->flags & XT_SCTP_DEST_PORTS)) {
			sp_ipt_match_add(r, kind)->u.dport = 0;
			return true;
		}
	}
	if (spts[0] != 0 || spts[1] != 0xffff)
		return false;
	if (dpts[0] == 0 && dpts[1] == 0xffff)
		dport = 0;
	else if (dpts[0] == dpts[1] && dpts[0])
		dport = dpts[0];
	else
		return false;
	sp_ipt_match_add(r, kind)->u.dport = dport;
	return true;
}

static bool decode_match(const struct xt_entry_match *m, int family, struct sp_ipt_rule *r)
{
	const char *name = m->u.user.name;
	uint8_t rev = m->u.user.revision;
	struct sp_ipt_match *x;

	if (!strcmp(name, "comment") && rev == 0) {
		const struct xt_comment_info *c = (const void *)m->data;

		sp_ipt_match_add(r, SP_IPT_M_COMMENT)->u.comment =
			sp_xstrndup(c->comment, sizeof(c->comment));
		return true;
	}
	if ((!strcmp(name, "tcp") || !strcmp(name, "udp") || !strcmp(name, "sctp")) && rev == 0)
		return decode_ports(m, r);
	if (!strcmp(name, "addrtype") && rev == 1) {
		const struct xt_addrtype_info_v1 *a = (const void *)m->data;

		if ((a->source && a->dest) ||
		    (a->flags & ~(XT_ADDRTYPE_INVERT_SOURCE | XT_ADDRTYPE_INVERT_DEST)))
			return false;
		x = sp_ipt_match_add(r, SP_IPT_M_ADDRTYPE);
		x->u.addrtype.src_type = a->source;
		x->u.addrtype.dst_type = a->dest;
		x->invert = a->flags != 0;
		return true;
	}
	if (!strcmp(name, "mark") && rev == 1) {
		const struct xt_mark_mtinfo1 *k = (const void *)m->data;

		x = sp_ipt_match_add(r, SP_IPT_M_MARK);
		x->u.mark.value = k->mark;
		x->u.mark.mask = k->mask;
		x->invert = k->invert;
		return true;
	}
	if (!strcmp(name, "statistic") && rev == 0) {
		const struct xt_statistic_info *s = (const void *)m->data;

		if (s->mode != XT_STATISTIC_MODE_RANDOM || s->flags)
			return false;
		sp_ipt_match_add(r, SP_IPT_M_STATISTIC)->u.probability = s->u.random.probability;
		return true;
	}
	if (!strcmp(name, "recent") && rev == 1) {
		const struct xt_recent_mtinfo_v1 *k = (const void *)m->data;
		uint8_t kind = k->check_set & ~XT_RECENT_REAP;

		if ((kind != XT_RECENT_SET && kind != XT_RECENT_CHECK) || k->invert ||
		    k->hit_count || k->side != XT_RECENT_SOURCE || !all_ones(&k->mask, family))
			return false;
		x = sp_ipt_match_add(r, SP_IPT_M_RECENT);
		x->u.recent.set = kind == XT_RECENT_SET;
		x->u.recent.reap = k->check_set & XT_RECENT_REAP;
		x->u.recent.seconds = k->seconds;
		x->u.recent.name = sp_xstrndup(k->name, sizeof(k->name));
		return true;
	}
	if (!strcmp(name, "set") && rev == 1) {
		const struct xt_set_info_match_v1 *k = (const void *)m->data;
		char set[IPSET_MAXNAMELEN];

		if (!k->match_set.dim || k->match_set.dim > SP_IPT_SET_DIM_MAX ||
		    !set_name_of(k->match_set.index, set, sizeof(set)))
			return false;
		x = sp_ipt_match_add(r, SP_IPT_M_SET);
		x->u.set.name = sp_xstrdup(set);
		x->u.set.dim = k->match_set.dim;
		x->u.set.src_dims =
			(uint8_t)((k->match_set.flags >> 1) & ((1u << SP_IPT_SET_DIM_MAX) - 1));
		x->invert = k->match_set.flags & IPSET_INV_MATCH;
		return true;
	}
	if (!strcmp(name, "conntrack") && rev == 3) {
		const struct xt_conntrack_mtinfo3 *c = (const void *)m->data;

		if ((c->match_flags & ~XT_CONNTRACK_STATE_ALIAS) != XT_CONNTRACK_STATE ||
		    c->invert_flags || c->state_mask > 0xff)
			return false;
		sp_ipt_match_add(r, SP_IPT_M_CONNTRACK)->u.ctstate = (uint8_t)c->state_mask;
		return true;
	}
	return false;
}

static bool decode_reject(const struct fam *f, const struct xt_entry_target *t)
{
	if (f->family == AF_INET6)
		return ((const struct ip6t_reject_info *)t->data)->with == IP6T_ICMP6_PORT_UNREACH;
	return ((const struct ipt_reject_info *)t->data)->with == IPT_ICMP_PORT_UNREACHABLE;
}

static bool decode_dnat(const struct fam *f, const struct xt_entry_target *t, struct sp_ipt_rule *r)
{
	const struct nf_nat_range2 *n = (const void *)t->data;
	size_t len = f->family == AF_INET6 ? 16 : 4;

	if (!(n->flags & NF_NAT_RANGE_MAP_IPS) || memcmp(&n->min_addr, &n->max_addr, len) ||
	    n->min_proto.all != n->max_proto.all ||
	    (n->flags & ~(NF_NAT_RANGE_MAP_IPS | NF_NAT_RANGE_PROTO_SPECIFIED)))
		return false;
	r->target.kind = SP_IPT_T_DNAT;
	r->target.to_addr.family = f->family;
	memcpy(r->target.to_addr.u.bytes, &n->min_addr, len);
	if (n->flags & NF_NAT_RANGE_PROTO_SPECIFIED)
		r->target.to_port = ntohs(n->min_proto.all);
	return true;
}

static bool decode_masquerade(const struct fam *f, const struct xt_entry_target *t,
			      struct sp_ipt_rule *r)
{
	unsigned flags;

	if (f->family == AF_INET6) {
		flags = ((const struct nf_nat_range *)t->data)->flags;
	} else {
		const struct nf_nat_ipv4_multi_range_compat *n = (const void *)t->data;

		if (n->rangesize != 1)
			return false;
		flags = n->range[0].flags;
	}
	if (flags & ~NF_NAT_RANGE_PROTO_RANDOM_FULLY)
		return false;
	r->target.kind = SP_IPT_T_MASQUERADE;
	r->target.random_fully = flags != 0;
	return true;
}

static bool decode_target(const struct fam *f, const void *e, bool go_to, struct xtc_handle *h,
			  struct sp_ipt_rule *r)
{
	const struct xt_entry_target *t =
		(const void *)((const uint8_t *)e + entry_target_offset(f, e));
	const char *label = f->get_target(e, h);
	const char *name = t->u.user.name;
	uint8_t rev = t->u.user.revision;

	if (!strcmp(label, "ACCEPT")) {
		r->target.kind = SP_IPT_T_ACCEPT;
	} else if (!strcmp(label, "DROP")) {
		r->target.kind = SP_IPT_T_DROP;
	} else if (!strcmp(label, "RETURN")) {
		r->target.kind = SP_IPT_T_RETURN;
	} else if (f->is_chain(label, h)) {
		r->target.kind = go_to ? SP_IPT_T_GOTO : SP_IPT_T_JUMP;
		r->target.chain = sp_xstrdup(label);
	} else if (!strcmp(name, "REJECT") && rev == 0 && decode_reject(f, t)) {
		r->target.kind = SP_IPT_T_REJECT;
	} else if (!strcmp(name, "DNAT") && rev == 2) {
		return decode_dnat(f, t, r);
	} else if (!strcmp(name, "MARK") && rev == 2) {
		const struct xt_mark_tginfo2 *k = (const void *)t->data;

		r->target.kind = SP_IPT_T_MARK;
		r->target.mark_value = k->mark;
		r->target.mark_mask = k->mask;
	} else if (!strcmp(name, "MASQUERADE") && rev == 0) {
		return decode_masquerade(f, t, r);
	} else {
		return false;
	}
	return true;
}

static void decode_addr(const void *addr, const void *mask, int family, struct sp_cidr *out)
{
	static const uint8_t zero[16];
	size_t len = family == AF_INET6 ? 16 : 4;
	const uint8_t *m = mask;
	unsigned prefix = 0;

	if (!memcmp(addr, zero, len) && !memcmp(mask, zero, len))
		return;
	while (prefix < 8 * len && (m[prefix / 8] & (0x80 >> (prefix % 8))))
		prefix++;
	out->addr.family = family;
	memcpy(out->addr.u.bytes, addr, len);
	out->prefix = prefix;
}

/* The address part of the entry; returns whether it holds anything this
 * module does not write (interfaces, fragments, TOS, inversions). */
static bool decode_header(const struct fam *f, const void *entry, struct sp_ipt_rule *r,
			  bool *go_to, uint16_t *target_offset)
{
	if (f->family == AF_INET6) {
		const struct ip6t_entry *e = entry;

		decode_addr(&e->ipv6.src, &e->ipv6.smsk, AF_INET6, &r->src);
		decode_addr(&e->ipv6.dst, &e->ipv6.dmsk, AF_INET6, &r->dst);
		r->src_invert = e->ipv6.invflags & IP6T_INV_SRCIP;
		r->dst_invert = e->ipv6.invflags & IP6T_INV_DSTIP;
		r->proto = (uint8_t)e->ipv6.proto;
		*go_to = e->ipv6.flags & IP6T_F_GOTO;
		*target_offset = e->target_offset;
		return e->ipv6.iniface[0] || e->ipv6.outiface[0] ||
		       (e->ipv6.flags & ~(IP6T_F_PROTO | IP6T_F_GOTO)) ||
		       (e->ipv6.invflags & ~(IP6T_INV_SRCIP | IP6T_INV_DSTIP)) ||
		       e->ipv6.proto > 255 || (!e->ipv6.proto != !(e->ipv6.flags & IP6T_F_PROTO));
	} else {
		const struct ipt_entry *e = entry;

		decode_addr(&e->ip.src, &e->ip.smsk, AF_INET, &r->src);
		decode_addr(&e->ip.dst, &e->ip.dmsk, AF_INET, &r->dst);
		r->src_invert = e->ip.invflags & IPT_INV_SRCIP;
		r->dst_invert = e->ip.invflags & IPT_INV_DSTIP;
		r->proto = (uint8_t)e->ip.proto;
		*go_to = e->ip.flags & IPT_F_GOTO;
		*target_offset = e->target_offset;
		return e->ip.iniface[0] || e->ip.outiface[0] || (e->ip.flags & ~IPT_F_GOTO) ||
		       (e->ip.invflags & ~(IPT_INV_SRCIP | IPT_INV_DSTIP)) || e->ip.proto > 255;
	}
}

/* The kernel's entry as IR. Anything this module would not have written
 * becomes an UNKNOWN match or target, so that it never compares equal. */
static void decode_rule(const struct fam *f, const void *e, struct xtc_handle *h,
			struct sp_ipt_rule *r)
{
	const uint8_t *p = e;
	size_t off = f->entry_hdr;
	uint16_t target_offset;
	bool go_to;

	memset(r, 0, sizeof(*r));
	if (decode_header(f, e, r, &go_to, &target_offset))
		unknown_match(r, "[interface/fragment/tos/inverted protocol]");
	while (off < target_offset) {
		const struct xt_entry_match *m = (const void *)(p + off);

		if (m->u.match_size < sizeof(*m))
			break;
		if (!decode_match(m, f->family, r))
			unknown_match(r, m->u.user.name);
		off += m->u.match_size;
	}
	if (!decode_target(f, e, go_to, h, r)) {
		r->target.kind = SP_IPT_T_UNKNOWN;
		r->target.chain = sp_xstrdup(f->get_target(e, h));
	}
}

static void read_chain(const struct fam *f, const char *name, struct xtc_handle *h,
		       struct sp_ipt_chain *out)
{
	for (const void *e = f->first_rule(name, h); e; e = f->next_rule(e, h))
		decode_rule(f, e, h, sp_ipt_rule_append(out));
}

/* ---- sync ---- */

struct table_job {
	const struct sp_ipt_table *want;
	enum sp_ipt_table_id id;
	const char *table;
	const struct sp_iptc_owner *own;
	struct sp_buf *diff; /* dry run when set */
	const struct fam *f;
	struct xtc_handle *h;
	struct sp_iptc_stats *stats; /* this attempt's; added to *out_stats at the end */
	struct sp_iptc_stats attempt_stats;
	struct sp_iptc_stats *out_stats;
	struct sp_diag *diag;
	const struct sp_ipt_chain **wanted; /* user chains, by name */
	size_t n_wanted;
	bool changed;
	struct sp_buf head, body, tail; /* the diff, in restore order */
};

static int chain_ptr_cmp(const void *a, const void *b)
{
	const struct sp_ipt_chain *const *x = a, *const *y = b;

	return strcmp((*x)->name, (*y)->name);
}

static bool wanted_chain(const struct table_job *j, const char *name)
{
	struct sp_ipt_chain key = {.name = (char *)name};
	const struct sp_ipt_chain *kp = &key;

	return j->n_wanted &&
	       bsearch(&kp, j->wanted, j->n_wanted, sizeof(*j->wanted), chain_ptr_cmp) != NULL;
}

static int fail(struct table_job *j, const char *what, const char *chain)
{
	int err = errno;

	sp_diag_error(j->diag, "%s %s%s%s: %s: %s", j->f->tool, j->table, chain ? " chain " : "",
		      chain ? chain : "", what, j->f->strerror(err));
	return -1;
}

static int append_rules(struct table_job *j, const struct sp_ipt_chain *c)
{
	struct entry_buf *b = sp_xmalloc(sizeof(*b));

	for (size_t i = 0; i < c->n_rules; i++) {
		encode_rule(j->f, &c->rules[i], b);
		if (!j->f->append(c->name, b->u.bytes, j->h)) {
			free(b);
			return fail(j, "adding a rule", c->name);
		}
	}
	free(b);
	return 0;
}

static void diff_chain(struct table_job *j, const struct sp_ipt_chain *c)
{
	sp_buf_addf(&j->head, ":%s - [0:0]\n", c->name);
	for (size_t i = 0; i < c->n_rules; i++)
		sp_ipt_print_rule_family(c->name, &c->rules[i], j->f->family, &j->body);
}

/* Create the missing wanted chains first: a jump can only be encoded to a
 * chain libiptc already knows. */
static int create_missing(struct table_job *j, bool *missing)
{
	for (size_t i = 0; i < j->n_wanted; i++) {
		missing[i] = !j->f->is_chain(j->wanted[i]->name, j->h);
		if (!missing[i])
			continue;
		j->changed = true;
		j->stats->chains_changed++;
		if (j->diff) {
			diff_chain(j, j->wanted[i]);
			continue;
		}
		if (!j->f->create_chain(j->wanted[i]->name, j->h))
			return fail(j, "creating the chain", j->wanted[i]->name);
	}
	return 0;
}

static int sync_user_chains(struct table_job *j)
{
	bool *missing = sp_xcalloc(j->n_wanted + 1, sizeof(*missing));
	int ret = create_missing(j, missing);

	for (size_t i = 0; ret == 0 && i < j->n_wanted; i++) {
		const struct sp_ipt_chain *want = j->wanted[i];
		struct sp_ipt_chain have = {0};
		bool same = false;

		j->stats->rules_total += want->n_rules;
		if (!missing[i]) {
			read_chain(j->f, want->name, j->h, &have);
			same = sp_ipt_chain_equal(&have, want);
			sp_ipt_chain_free(&have);
			if (same) {
				j->stats->chains_unchanged++;
				continue;
			}
			j->changed = true;
			j->stats->chains_changed++;
			if (j->diff) {
				diff_chain(j, want);
				continue;
			}
			if (!j->f->flush_entries(want->name, j->h)) {
				ret = fail(j, "flushing the chain", want->name);
				break;
			}
		}
		if (!j->diff)
			ret = append_rules(j, want);
	}
	free(missing);
	return ret;
}

static bool same_rule(const struct sp_ipt_rule *a, const struct sp_ipt_rule *b)
{
	struct sp_ipt_chain x = {.rules = (struct sp_ipt_rule *)a, .n_rules = 1};
	struct sp_ipt_chain y = {.rules = (struct sp_ipt_rule *)b, .n_rules = 1};

	return sp_ipt_chain_equal(&x, &y);
}

static bool wanted_rule(const struct sp_ipt_rule *r, const struct sp_ipt_chain *want)
{
	for (size_t i = 0; i < want->n_rules; i++) {
		if (same_rule(r, &want->rules[i]))
			return true;
	}
	return false;
}

static bool jumps_to_owned(const struct table_job *j, const struct sp_ipt_rule *r)
{
	return (r->target.kind == SP_IPT_T_JUMP || r->target.kind == SP_IPT_T_GOTO) &&
	       sp_iptc_owned(j->own, r->target.chain);
}

static void diff_insert(struct table_job *j, const char *chain, size_t pos,
			const struct sp_ipt_rule *r)
{
	struct sp_buf line;

	sp_buf_init(&line);
	sp_ipt_print_rule_family(chain, r, j->f->family, &line);
	/* "-A CHAIN rest" -> "-I CHAIN pos rest" */
	sp_buf_addf(&j->body, "-I %s %zu%s", chain, pos, line.data + 3 + strlen(chain));
	sp_buf_free(&line);
}

/* Hook chains: delete jumps to owned chains that are no longer wanted, then
 * insert each missing wanted jump right after the wanted one before it (at
 * the head for the first), so that a repaired chain is in the wanted order
 * again. v mirrors the kernel chain as it is being edited. */
static int sync_builtin_chain(struct table_job *j, const struct sp_ipt_chain *want)
{
	struct sp_ipt_chain have = {0};
	const struct sp_ipt_rule **v;
	size_t n, next = 0;
	bool touched = false;
	int ret = 0;

	read_chain(j->f, want->name, j->h, &have);
	n = have.n_rules;
	v = sp_xcalloc(n + want->n_rules + 1, sizeof(*v));
	for (size_t i = 0; i < n; i++)
		v[i] = &have.rules[i];
	for (size_t k = n; k-- > 0 && ret == 0;) {
		if (!jumps_to_owned(j, v[k]) || wanted_rule(v[k], want))
			continue;
		touched = true;
		if (j->diff)
			sp_buf_addf(&j->body, "-D %s %zu\n", want->name, k + 1);
		else if (!j->f->delete_num_entry(want->name, (unsigned)k, j->h))
			ret = fail(j, "deleting a stale jump", want->name);
		memmove(v + k, v + k + 1, (n - k - 1) * sizeof(*v));
		n--;
	}
	for (size_t i = 0; i < want->n_rules && ret == 0; i++) {
		const struct sp_ipt_rule *r = &want->rules[i];
		size_t k = 0;

		while (k < n && !same_rule(v[k], r))
			k++;
		if (k < n) {
			next = k + 1;
			continue;
		}
		touched = true;
		if (j->diff) {
			diff_insert(j, want->name, next + 1, r);
		} else {
			struct entry_buf *b = sp_xmalloc(sizeof(*b));

			encode_rule(j->f, r, b);
			if (!j->f->insert(want->name, b->u.bytes, (unsigned)next, j->h))
				ret = fail(j, "inserting a jump", want->name);
			free(b);
		}
		memmove(v + next + 1, v + next, (n - next) * sizeof(*v));
		v[next++] = r;
		n++;
	}
	free(v);
	sp_ipt_chain_free(&have);
	if (touched) {
		j->changed = true;
		j->stats->chains_changed++;
	}
	return ret;
}

/* Names of the owned chains present in the kernel table; caller frees. */
static char **owned_chains(struct table_job *j, size_t *n)
{
	char **names = NULL;
	size_t cap = 0;

	*n = 0;
	for (const char *c = j->f->first_chain(j->h); c; c = j->f->next_chain(j->h)) {
		if (j->f->builtin(c, j->h) || !sp_iptc_owned(j->own, c))
			continue;
		*(char **)sp_array_push(&names, n, &cap, sizeof(*names)) = sp_xstrdup(c);
	}
	return names;
}

static void free_names(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* Owned chains not wanted: flushed first (they may jump to each other),
 * then deleted. */
static int delete_stale(struct table_job *j, bool everything)
{
	size_t n;
	char **names = owned_chains(j, &n);
	int ret = 0;

	for (size_t pass = 0; pass < 2 && ret == 0; pass++) {
		for (size_t i = 0; i < n && ret == 0; i++) {
			if (!everything && wanted_chain(j, names[i]))
				continue;
			if (pass == 0) {
				j->changed = true;
				j->stats->chains_changed++;
			}
			if (j->diff) {
				/* restore's -X wants an empty chain, as the kernel. */
				sp_buf_addf(&j->tail, "-%c %s\n", pass ? 'X' : 'F', names[i]);
				continue;
			}
			if (pass == 0 && !j->f->flush_entries(names[i], j->h))
				ret = fail(j, "flushing a stale chain", names[i]);
			if (pass == 1 && !j->f->delete_chain(names[i], j->h))
				ret = fail(j, "deleting a stale chain (still referenced?)",
					   names[i]);
		}
	}
	free_names(names, n);
	return ret;
}

static int sync_once(struct table_job *j)
{
	int ret = sync_user_chains(j);

	for (size_t i = 0; ret == 0 && i < j->want->n_chains; i++) {
		if (j->want->chains[i].builtin)
			ret = sync_builtin_chain(j, &j->want->chains[i]);
	}
	if (ret == 0)
		ret = delete_stale(j, false);
	return ret;
}

static void job_init(struct table_job *j, int family, enum sp_ipt_table_id id,
		     const struct sp_iptc_owner *own, struct sp_buf *diff,
		     struct sp_iptc_stats *stats, struct sp_diag *diag)
{
	memset(j, 0, sizeof(*j));
	j->f = fam_of(family);
	j->id = id;
	j->table = sp_ipt_table_name(id);
	j->own = own;
	j->diff = diff;
	j->stats = &j->attempt_stats;
	j->out_stats = stats;
	j->diag = diag;
	sp_buf_init(&j->head);
	sp_buf_init(&j->body);
	sp_buf_init(&j->tail);
}

static void job_reset(struct table_job *j)
{
	struct sp_iptc_stats zero = {0};

	*j->stats = zero;
	j->changed = false;
	sp_buf_reset(&j->head);
	sp_buf_reset(&j->body);
	sp_buf_reset(&j->tail);
}

static void job_free(struct table_job *j)
{
	free(j->wanted);
	sp_buf_free(&j->head);
	sp_buf_free(&j->body);
	sp_buf_free(&j->tail);
	if (j->h)
		j->f->free(j->h);
	j->h = NULL;
}

static int open_table(struct table_job *j)
{
	j->h = j->f->init(j->table);
	if (!j->h)
		return fail(j, "reading the table", NULL);
	return 0;
}

/* Commit or, in a dry run, emit the diff. Returns 0 done, 1 retry (another
 * writer committed in between), -1 error. */
static int finish(struct table_job *j)
{
	if (j->diff) {
		if (j->changed) {
			sp_buf_addf(j->diff, "*%s\n", j->table);
			sp_buf_add(j->diff, j->head.data ? j->head.data : "");
			sp_buf_add(j->diff, j->body.data ? j->body.data : "");
			sp_buf_add(j->diff, j->tail.data ? j->tail.data : "");
			sp_buf_add(j->diff, "COMMIT\n");
		}
		return 0;
	}
	if (!j->changed)
		return 0;
	j->stats->commits++;
	if (j->f->commit(j->h))
		return 0;
	if (errno == EAGAIN)
		return 1;
	fail(j, "commit refused by the kernel (the table is unchanged)", NULL);
	return -1;
}

static int run_job(struct table_job *j, bool everything)
{
	int lock = xtables_lock(j->diag), ret = -1;
	size_t commits = 0;
	bool raced = false;

	if (lock < 0)
		return -1;
	for (int attempt = 0; attempt < COMMIT_TRIES; attempt++) {
		job_reset(j);
		if (open_table(j) < 0)
			break;
		ret = everything ? 0 : sync_once(j);
		if (everything) {
			for (size_t i = 0; ret == 0 && i < j->want->n_chains; i++)
				ret = sync_builtin_chain(j, &j->want->chains[i]);
			if (ret == 0)
				ret = delete_stale(j, true);
		}
		if (ret == 0)
			ret = finish(j);
		commits += j->stats->commits;
		j->f->free(j->h);
		j->h = NULL;
		raced = ret == 1;
		if (!raced)
			break;
		ret = -1;
	}
	if (raced)
		sp_diag_error(j->diag,
			      "%s %s: another program kept changing the table; "
			      "gave up after %d tries",
			      j->f->tool, j->table, COMMIT_TRIES);
	j->stats->commits = commits;
	j->out_stats->commits += j->stats->commits;
	j->out_stats->chains_changed += j->stats->chains_changed;
	j->out_stats->chains_unchanged += j->stats->chains_unchanged;
	j->out_stats->rules_total += j->stats->rules_total;
	xtables_unlock(lock);
	return ret < 0 ? -1 : j->changed ? 1 : 0;
}

int sp_iptc_sync_table(const struct sp_ipt_table *want, const struct sp_iptc_owner *own,
		       struct sp_buf *diff, struct sp_iptc_stats *stats, struct sp_diag *diag)
{
	struct table_job j;
	int ret;

	job_init(&j, want->family ? want->family : AF_INET, want->id, own, diff, stats, diag);
	j.want = want;
	j.wanted = sp_xcalloc(want->n_chains + 1, sizeof(*j.wanted));
	for (size_t i = 0; i < want->n_chains; i++) {
		if (!want->chains[i].builtin)
			j.wanted[j.n_wanted++] = &want->chains[i];
	}
	qsort(j.wanted, j.n_wanted, sizeof(*j.wanted), chain_ptr_cmp);
	ret = run_job(&j, false);
	job_free(&j);
	return ret;
}

int sp_iptc_cleanup_table(enum sp_ipt_table_id id, const struct sp_iptc_owner *own,
			  struct sp_iptc_stats *stats, struct sp_diag *diag)
{
	return sp_iptc_cleanup_table_family(AF_INET, id, own, stats, diag);
}

int sp_iptc_cleanup_table_family(int family, enum sp_ipt_table_id id,
				 const struct sp_iptc_owner *own, struct sp_iptc_stats *stats,
				 struct sp_diag *diag)
{
	struct sp_ipt_table none;
	struct table_job j;
	int ret;

	/* The built-in chains with no wanted rule: every jump to an owned
	 * chain is stale. */
	sp_ipt_table_init(&none, id);
	job_init(&j, family, id, own, NULL, stats, diag);
	j.want = &none;
	ret = run_job(&j, true);
	job_free(&j);
	sp_ipt_table_free(&none);
	return ret;
}

int sp_iptc_read_table(enum sp_ipt_table_id id, const struct sp_iptc_owner *own,
		       struct sp_ipt_table *out, struct sp_diag *diag)
{
	return sp_iptc_read_table_family(AF_INET, id, own, out, diag);
}

int sp_iptc_read_table_family(int family, enum sp_ipt_table_id id, const struct sp_iptc_owner *own,
			      struct sp_ipt_table *out, struct sp_diag *diag)
{
	struct sp_iptc_stats stats = {0};
	struct table_job j;
	int lock, ret = 0;

	sp_ipt_table_init(out, id);
	out->family = family;
	job_init(&j, family, id, own, NULL, &stats, diag);
	lock = xtables_lock(diag);
	if (lock < 0 || open_table(&j) < 0) {
		xtables_unlock(lock);
		job_free(&j);
		return -1;
	}
	for (size_t i = 0; i < out->n_chains; i++) {
		struct sp_ipt_chain all = {0};

		if (!out->chains[i].builtin)
			continue;
		read_chain(j.f, out->chains[i].name, j.h, &all);
		for (size_t r = 0; r < all.n_rules; r++) {
			struct sp_ipt_rule *rule = &all.rules[r];

			if ((rule->target.kind == SP_IPT_T_JUMP ||
			     rule->target.kind == SP_IPT_T_GOTO) &&
			    sp_iptc_owned(own, rule->target.chain)) {
				*sp_ipt_rule_append(&out->chains[i]) = *rule;
				memset(rule, 0, sizeof(*rule));
			}
		}
		sp_ipt_chain_free(&all);
	}
	{
		size_t n;
		char **names = owned_chains(&j, &n);

		for (size_t i = 0; i < n; i++)
			read_chain(j.f, names[i], j.h, sp_ipt_chain_add(out, names[i]));
		free_names(names, n);
	}
	job_free(&j);
	xtables_unlock(lock);
	return ret;
}

bool sp_iptc_host_iptables_is_nft(char *path, size_t len)
{
	static const char *const candidates[] = {"/usr/sbin/iptables", "/sbin/iptables",
						 "/usr/bin/iptables", NULL};
	char resolved[PATH_MAX];

	for (const char *const *c = candidates; *c; c++) {
		const char *base;

		if (!realpath(*c, resolved))
			continue;
		if (path && len)
			snprintf(path, len, "%s", resolved);
		base = strrchr(resolved, '/');
		return strstr(base ? base + 1 : resolved, "nft") != NULL;
	}
	return false;
}
