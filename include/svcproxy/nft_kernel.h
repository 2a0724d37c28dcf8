/* nftables kernel encoding: the IR of svcproxy/nft.h as nf_tables netlink
 * messages (libnftnl) appended to a shared-transport batch, and the agent's
 * table read back into the IR. */
#ifndef SVCPROXY_NFT_KERNEL_H
#define SVCPROXY_NFT_KERNEL_H

#include <stdbool.h>

#include "svcproxy/diag.h"
#include "svcproxy/netlink.h"
#include "svcproxy/nft.h"

enum sp_nft_op {
	SP_NFT_OP_ADD,
	SP_NFT_OP_DEL,
	SP_NFT_OP_FLUSH, /* chain: every rule; map: every element */
};

void sp_nft_put_batch_begin(struct sp_nl *nl, struct sp_nl_batch *b);
void sp_nft_put_batch_end(struct sp_nl *nl, struct sp_nl_batch *b);
void sp_nft_put_table(struct sp_nl *nl, struct sp_nl_batch *b, int family, const char *name,
		      enum sp_nft_op op);
void sp_nft_put_chain(struct sp_nl *nl, struct sp_nl_batch *b, const struct sp_nft_table *t,
		      const struct sp_nft_chain *c, enum sp_nft_op op);
void sp_nft_put_set(struct sp_nl *nl, struct sp_nl_batch *b, const struct sp_nft_table *t,
		    const struct sp_nft_set *s, enum sp_nft_op op);
/* Add or delete elements (as many messages as their size needs). */
void sp_nft_put_elems(struct sp_nl *nl, struct sp_nl_batch *b, const struct sp_nft_table *t,
		      const struct sp_nft_set *s, const struct sp_nft_elem *const *elems, size_t n,
		      enum sp_nft_op op);
void sp_nft_put_rule(struct sp_nl *nl, struct sp_nl_batch *b, const struct sp_nft_table *t,
		     const struct sp_nft_chain *c, const struct sp_nft_rule *r);

/* The kernel expressions of a rule, in libnftnl's notation ("[ payload load
 * 4b @ network header + 16 => reg 1 ] ..."): a planned rule and a rule read
 * back from the kernel are the same exactly when these texts are. Caller
 * frees. */
char *sp_nft_rule_signature(int family, const struct sp_nft_rule *r);

/* Read table `name` of `family` back. *found tells whether it exists; rules
 * come back as signatures in sp_nft_rule.foreign, with their handles, and
 * with decode also as statements when they are exactly rules svcproxy makes
 * (for display; comparisons use the signatures); map elements and chains as
 * in the IR. Returns 0 or -1 (diag). */
int sp_nft_read_table(struct sp_nl *nl, int family, const char *name, struct sp_nft_table *out,
		      bool *found, bool decode, struct sp_diag *diag);

/* Round trip without a kernel, for tests: encode the rule into a NEWRULE
 * message, parse it back and return its signature. */
char *sp_nft_rule_roundtrip_signature(int family, const struct sp_nft_rule *r);
/* The same, decoded back into statements (out empty when not decodable). */
void sp_nft_rule_roundtrip_decode(int family, const struct sp_nft_rule *r, struct sp_nft_rule *out);

#endif
