/*
 * The running daemon, as the control socket and the modules see it.  Loop thread only.
 */
#ifndef CVX_DAEMON_H
#define CVX_DAEMON_H

#include <stdint.h>
#include <uv.h>

#include "cvx/config.h"
#include "cvx/module.h"
#include "cvx/reactor.h"

/* Options of [general]. */
typedef struct cvx_general_conf {
    int role; /* index into "call", "system", "all" */
    char *name;
    char *user;
    char *module_dir;
    char *run_dir;
    char *data_dir;
    char *pid_file;
    long long drain_timeout_ms;
    long long lease_timeout_ms;
} cvx_general_conf_t;

/* Options of [log]. */
typedef struct cvx_log_conf {
    int level;
    long long stall_threshold_ms;
} cvx_log_conf_t;

extern const cvx_section_def_t cvx_general_section;
extern const cvx_section_def_t cvx_log_section;

uv_loop_t *cvx_daemon_loop(void);
cvx_role_t cvx_daemon_role(void);
const char *cvx_daemon_role_name(cvx_role_t role);
const char *cvx_daemon_name(void);
const char *cvx_daemon_version(void);
/* uv_now() at start, in ms. */
uint64_t cvx_daemon_started_ms(void);
const cvx_general_conf_t *cvx_daemon_general(void);
cvx_watchdog_t *cvx_daemon_watchdog(void);
/* The configuration in force (replaced by a successful reload). */
cvx_conf_t *cvx_daemon_conf(void);

/* A module as "show plugins" lists it. */
typedef struct cvx_module_info {
    const char *name;
    const char *path;
    const char *state;  /* "loaded", "declined", "refused", "skipped" */
    const char *reason; /* why not loaded, "" when loaded */
    const char *version;
    const char *description;
    const char *kind; /* "driver", "app", "service", "" */
} cvx_module_info_t;
void cvx_daemon_foreach_module(int (*fn)(const cvx_module_info_t *m, void *arg), void *arg);

/*
 * Re-reads the configuration, applies what can be applied and writes one line per finding
 * (applied, needs a restart, error) to report.  Returns 0, or CVX_EINVAL when the new
 * configuration has errors (then nothing changed).
 */
int cvx_daemon_reload(cvx_diag_t *report);

/* Stops the daemon: graceful waits for calls in progress to end (up to drain_timeout, then
 * hangs them up); otherwise calls are hung up at once.  The process exits 0. */
void cvx_daemon_shutdown(int graceful);

/* Registers a section kind the core itself reads ("control", "media"), so that it is bound
 * and checked at start and listed by "show config".  Call before cvx_daemon_main(). */
typedef struct cvx_conf_section cvx_conf_section_t;
typedef struct cvx_core_section {
    const cvx_section_def_t *def;
    void *conf; /* the struct the section fills (def->conf_size bytes); NULL when repeated */
    /* repeated sections: called for every "[kind:name]".  At start restart is NULL: bind and
     * keep.  On reload, bind into a scratch struct to check, and add a line naming each change
     * to restart (it needs a restart); errors go to diag as usual.  Returns 0 or CVX_E*. */
    int (*each)(void *arg, cvx_conf_section_t *sec, cvx_diag_t *diag, cvx_diag_t *restart);
    void (*release)(void *arg); /* frees what each kept, at the end */
    void *each_arg;
} cvx_core_section_t;
int cvx_daemon_add_section(const cvx_section_def_t *def, void *conf);
/* Registers a repeated section kind the core reads ("[member:NAME]"); def->repeated = 1. */
int cvx_daemon_add_sections(const cvx_section_def_t *def,
                            int (*each)(void *arg, cvx_conf_section_t *sec, cvx_diag_t *diag,
                                        cvx_diag_t *restart),
                            void (*release)(void *arg), void *arg);
void cvx_daemon_foreach_section(int (*fn)(const cvx_core_section_t *s, void *arg), void *arg);

/* Hooks that subsystems of the core (the control socket) attach to the daemon's life. */
typedef struct cvx_daemon_hooks {
    const char *name;
    unsigned roles;                /* cvx_role_t bits in which the subsystem runs */
    int (*start)(uv_loop_t *loop); /* as root, before privileges are dropped */
    void (*stop)(void);            /* at shutdown, before drivers are destroyed */
    void (*reloaded)(void);        /* after a successful reload */
} cvx_daemon_hooks_t;
int cvx_daemon_add_hooks(const cvx_daemon_hooks_t *hooks);

/* A check for --check-config, in processes of the roles given: it checks what a subsystem
 * reads at start besides the INI files (the licence file), prints one line of its finding to
 * stdout or of the problem to stderr, and returns 0 or CVX_E*.  It may block: it runs
 * before the loop does. */
int cvx_daemon_add_check(unsigned roles, int (*check)(void));

/* The process's entry point (callvoxd's main). */
int cvx_daemon_main(int argc, char **argv);

#endif
