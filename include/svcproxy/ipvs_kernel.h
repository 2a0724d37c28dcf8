/* IPVS over generic netlink (libnl-genl-3): one long-lived socket in the
 * current network namespace, family "IPVS" resolved once. Every call returns
 * 0 or -errno; sp_ipvs_nl_strerror() says what that errno means for the
 * command (the kernel reuses a few errnos for very different things). */
#ifndef SVCPROXY_IPVS_KERNEL_H
#define SVCPROXY_IPVS_KERNEL_H

#include <stdbool.h>
#include <stdint.h>

#include "svcproxy/diag.h"
#include "svcproxy/ipvs.h"

struct nl_msg;
struct nlmsghdr;
struct sp_ipvs_nl;

/* NULL and diag on failure (no IPVS in this kernel, no permission). */
struct sp_ipvs_nl *sp_ipvs_nl_open(struct sp_diag *diag);
void sp_ipvs_nl_close(struct sp_ipvs_nl *nl);

/* Idempotent: adding what exists and deleting what is gone succeed (the
 * kernel's EEXIST / ESRCH / ENOENT are folded in here, explicitly). */
int sp_ipvs_nl_add_service(struct sp_ipvs_nl *nl, const struct sp_ipvs_service *svc);
int sp_ipvs_nl_edit_service(struct sp_ipvs_nl *nl, const struct sp_ipvs_service *svc);
int sp_ipvs_nl_del_service(struct sp_ipvs_nl *nl, const struct sp_ipvs_service *svc);
int sp_ipvs_nl_add_dest(struct sp_ipvs_nl *nl, const struct sp_ipvs_service *svc,
			const struct sp_ipvs_dest *dest);
int sp_ipvs_nl_edit_dest(struct sp_ipvs_nl *nl, const struct sp_ipvs_service *svc,
			 const struct sp_ipvs_dest *dest);
int sp_ipvs_nl_del_dest(struct sp_ipvs_nl *nl, const struct sp_ipvs_service *svc,
			const struct sp_ipvs_dest *dest);
int sp_ipvs_nl_flush(struct sp_ipvs_nl *nl);
/* Append every service with its destinations to out (unsorted). */
int sp_ipvs_nl_dump(struct sp_ipvs_nl *nl, struct sp_ipvs_state *out);
/* The destinations of one service, appended to svc. */
int sp_ipvs_nl_dump_dests(struct sp_ipvs_nl *nl, struct sp_ipvs_service *svc);
/* Commands sent so far (changes; dumps and the handshake not counted), for
 * sync statistics. */
unsigned long sp_ipvs_nl_messages(const struct sp_ipvs_nl *nl);

/* What errno err means as the answer to IPVS command cmd (IPVS_CMD_*). */
const char *sp_ipvs_nl_strerror(int cmd, int err);

/* The message codec, exposed for kernel-free round-trip tests. build returns
 * a new message (the caller frees it with nlmsg_free) carrying the service
 * (identifying attributes, plus the full set when full_svc) and, when dest is
 * not NULL, the destination (full set when full_dest). parse reads a
 * service or destination message back (either out pointer may be NULL);
 * 0 or -EINVAL. */
struct nl_msg *sp_ipvs_msg_build(int family_id, uint8_t cmd, int nl_flags,
				 const struct sp_ipvs_service *svc, bool full_svc,
				 const struct sp_ipvs_dest *dest, bool full_dest);
int sp_ipvs_msg_parse(struct nlmsghdr *nlh, struct sp_ipvs_service *svc, struct sp_ipvs_dest *dest);

#endif
