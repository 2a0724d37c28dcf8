/* Kernel ipsets through libipset (the library the ipset tool is built on),
 * Kubernetes-agnostic: list names, read a set's members, and apply changes
 * (create, add, del, destroy) as one `ipset restore` batch. Members are
 * spelled as `ipset save` prints them ("10.0.0.1,tcp:80"), so that desired
 * and read-back members compare as strings. Acts on the current network
 * namespace. Functions return 0 or -1 with the set or line and the kernel's
 * reason in diag. */
#ifndef SVCPROXY_IPSET_H
#define SVCPROXY_IPSET_H

#include <stdbool.h>
#include <stddef.h>

#include "svcproxy/diag.h"

struct sp_ipset;

struct sp_ipset *sp_ipset_open(void);
void sp_ipset_close(struct sp_ipset *is);
/* Commands sent since open (reads included). */
unsigned long sp_ipset_commands(const struct sp_ipset *is);

/* Every set's name, appended to *names (caller frees each and the array). */
int sp_ipset_names(struct sp_ipset *is, char ***names, size_t *n, struct sp_diag *diag);
/* The members of an existing set, appended to *members (caller frees);
 * *type receives its type ("hash:ip,port") and *family "inet" or "inet6"
 * (caller frees both). */
int sp_ipset_members(struct sp_ipset *is, const char *name, char **type, char **family,
		     char ***members, size_t *n, struct sp_diag *diag);
/* `ipset -exist restore` of text ("create ...", "add SET MEMBER", "del SET
 * MEMBER", "destroy SET" lines): libipset packs consecutive members of one
 * set into few netlink messages, so a big change costs little. Idempotent
 * (-exist): creating a set that exists, adding a member that is there or
 * deleting one that is not succeeds. A failure names the line it stopped
 * at; the lines before it are done. */
int sp_ipset_restore(struct sp_ipset *is, const char *text, struct sp_diag *diag);

#endif
