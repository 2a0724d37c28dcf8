/* How to reach the API server: from a kubeconfig file (parsed with libyaml)
 * or from the in-cluster service account. The token is a secret: it goes
 * into the Authorization header and nowhere else (never into a message). */
#ifndef SP_DAEMON_KUBECONFIG_H
#define SP_DAEMON_KUBECONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "svcproxy/diag.h"

struct sp_kblob {
	char *data; /* PEM bytes (decoded *-data) */
	size_t len;
};

struct sp_kconn {
	char *server;	    /* https://host:port, no trailing slash */
	char *ca_file;	    /* certificate-authority, or */
	struct sp_kblob ca; /* certificate-authority-data */
	char *cert_file;
	struct sp_kblob cert;
	char *key_file;
	struct sp_kblob key;
	char *token;	  /* static token, or */
	char *token_file; /* re-read at every request: tokens rotate */
	bool insecure;
};

void sp_kconn_free(struct sp_kconn *c);
/* current-context's cluster and user. 0, or -1 with diag. */
int sp_kconn_from_kubeconfig(struct sp_kconn *c, const char *path, struct sp_diag *diag);
/* KUBERNETES_SERVICE_HOST/PORT and the service account's token and CA (the
 * directory can be overridden with SVCPROXY_SERVICEACCOUNT_DIR for tests). */
int sp_kconn_in_cluster(struct sp_kconn *c, struct sp_diag *diag);
/* The bearer token to send now (NULL: none). Caller frees. */
char *sp_kconn_token(const struct sp_kconn *c);

#endif
