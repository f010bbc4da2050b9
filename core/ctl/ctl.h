/*
 * The control socket's pieces, shared between the files of core/ctl, core/main.c and core/daemon.c;
 * not for modules (they use cvx/cmd.h).  Loop thread unless said otherwise.
 */
#ifndef CVX_CTL_H
#define CVX_CTL_H

#include <stddef.h>
#include <stdint.h>

#include "cvx/cmd.h"
#include "cvx/module.h"

/* Registers the [control] section, the socket's start/stop hooks and the core's commands.
 * Called by callvoxd's main() before cvx_daemon_main(). */
int cvx__ctl_setup(void);

/* Who is on the other end of a connection. */
typedef struct cvx__ctl_peer {
    uint32_t uid, gid;
    int32_t pid;
    char user[64]; /* the user name, or the uid in decimal when it has none */
    int admin;     /* 1: may run commands that change things */
    char why[96];  /* how the access was granted: "root", "group callvox-admin" */
} cvx__ctl_peer_t;

/* How a finished command went: status is CVX__CTL_*; body (len bytes, NUL-terminated) is
 * the reply: the text, or the JSON document.  Called exactly once per cvx__cmd_run(). */
typedef void (*cvx__cmd_done_fn)(void *arg, int status, const char *body, size_t len);

/*
 * Parses line, checks it against the command tables and the peer's rights, and runs it.
 * done may be called before this returns (most commands) or later (CVX_CMD_PENDING); in the
 * latter case *pending is set to the request, else to NULL.
 */
void cvx__cmd_run(const char *line, int json, const cvx__ctl_peer_t *peer, cvx__cmd_done_fn done,
                  void *arg, cvx_cmd_req_t **pending);
/* The client of a pending request went away: finish it silently. */
void cvx__cmd_detach(cvx_cmd_req_t *req);

/* Completion candidates for the last word of line (the text before the cursor), one per line
 * in a malloc'ed string, sorted, without duplicates.  NULL when out of memory. */
char *cvx__cmd_complete(const char *line);

/* Where cmd.c sends audit lines (cvx__audit; tests replace it). */
extern void (*cvx__cmd_audit_fn)(const cvx__ctl_peer_t *peer, const char *line, const char *result);

/* Unregisters every table (at exit, for tests). */
void cvx__cmd_reset(void);

/* The usage line of c ("log level <level>"), in a static buffer. */
const char *cvx__cmd_usage(const cvx_cmd_t *c);
/* The handler of "help [<command>...]" (cmd.c). */
int cvx__cmd_help(cvx_cmd_req_t *req);

/* "show config" and the completion of sections and options (cmd_config.c). */
int cvx__cmd_show_config(cvx_cmd_req_t *req);
void cvx__config_complete(cvx_cmd_comp_t *c, int options);

/* The core's own commands and completion kinds (core_cmds.c). */
int cvx__core_cmds_register(void);
/* Ends the core's commands still pending (at shutdown). */
void cvx__core_cmds_stop(void);
void cvx__core_complete(cvx_cmd_comp_t *c, const char *kind, const char *prefix);

/* Audit log (audit.c): opened at start as root; lines are appended off the loop thread. */
int cvx__audit_open(const char *path);
void cvx__audit(const cvx__ctl_peer_t *peer, const char *line, const char *result);
void cvx__audit_close(void);

/* Loaded modules' descriptors and the [log] options in force, for "show config" (daemon.c). */
void cvx__daemon_foreach_desc(int (*fn)(const cvx_module_t *desc, void *arg), void *arg);
struct cvx_log_conf;
const struct cvx_log_conf *cvx__daemon_log_conf(void);

/* Control-socket figures for "status". */
typedef struct cvx__ctl_stats {
    unsigned clients, attached;
    uint64_t accepted, refused, cut_off, commands;
} cvx__ctl_stats_t;
void cvx__ctl_get_stats(cvx__ctl_stats_t *out);

#endif
