/* The file source: JSON files and directories watched with inotify. Each
 * file keeps the objects of its last good content: a file that is half
 * written or invalid is reported and changes nothing until it is fixed. */
#ifndef SP_DAEMON_FILES_H
#define SP_DAEMON_FILES_H

#include <stdbool.h>
#include <stddef.h>

#include "store.h"
#include "svcproxy/diag.h"
#include "svcproxy/model.h"
#include "svcproxy/source.h"

struct sp_dfiles;

/* Set up the watches and read everything once. NULL and diag when a source
 * does not exist or inotify fails. */
struct sp_dfiles *sp_dfiles_open(const char *const *paths, size_t n,
				 const struct sp_source_limits *lim, struct sp_diag *diag);
void sp_dfiles_close(struct sp_dfiles *f);
/* New limits (SIGHUP): every file is judged again under them at the next
 * full update, even one whose content did not change. */
void sp_dfiles_set_limits(struct sp_dfiles *f, const struct sp_source_limits *lim);
int sp_dfiles_fd(const struct sp_dfiles *f);
/* Drain the inotify events and re-read what they touched (all: re-read and
 * re-watch everything, for SIGHUP). Returns true when the objects in force
 * changed; ch counts the changes, *n_bad the files rejected this time. */
bool sp_dfiles_update(struct sp_dfiles *f, bool all, struct sp_dchanges *ch, size_t *n_bad,
		      struct sp_diag *diag);
/* Decode the objects in force into c (worst sp_source_read_json result). */
int sp_dfiles_fill(const struct sp_dfiles *f, struct sp_cluster *c, struct sp_diag *diag);

#endif
