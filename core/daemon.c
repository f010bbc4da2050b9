/*
 * callvoxd: command line, start-up, roles, privileges, signals, reload and shutdown.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cvx/daemon.h"
#include "cvx/lease.h"
#include "cvx/error.h"
#include "cvx/log.h"
#include "ctl/ctl.h"
#include "internal.h"

#ifndef CVX_VERSION
#define CVX_VERSION "0.0.0"
#endif
#ifndef CVX_DEFAULT_CONFIG
#define CVX_DEFAULT_CONFIG "/etc/callvox/callvox.conf"
#endif

static const char *const role_names[] = {"call", "system", "all", "witness", NULL};
static const char *const level_names[] = {"error", "warning", "notice", "info",
                                          "debug", "trace",   NULL};

static const cvx_option_t general_options[] = {
    {"role", CVX_OPT_ENUM, offsetof(cvx_general_conf_t, role), "all", 0, 0, role_names, 0,
     "What this process does: call (media and call flows), system (message store, directory, "
     "MWI, licence), all (both, in one process) or witness (a Raft vote for a cluster of two "
     "system servers). --role overrides it."},
    {"name", CVX_OPT_STRING, offsetof(cvx_general_conf_t, name), "", 0, 0, NULL, 0,
     "This server's name, used in call ids and cluster membership; empty: the host name."},
    {"user", CVX_OPT_STRING, offsetof(cvx_general_conf_t, user), "callvox", 0, 0, NULL, 0,
     "Unprivileged user the daemon runs as after binding its ports as root; empty: stay."},
    {"module_dir", CVX_OPT_STRING, offsetof(cvx_general_conf_t, module_dir), "", 0, 0, NULL, 0,
     "Directory of driver and plugin modules; empty: ../lib/callvox/modules beside callvoxd."},
    {"run_dir", CVX_OPT_STRING, offsetof(cvx_general_conf_t, run_dir), "/run/callvox", 0, 0, NULL,
     0, "Directory for the control socket and the pid file."},
    {"data_dir", CVX_OPT_STRING, offsetof(cvx_general_conf_t, data_dir), "/var/lib/callvox", 0, 0,
     NULL, 0, "Directory of the message store and the spool."},
    {"pid_file", CVX_OPT_STRING, offsetof(cvx_general_conf_t, pid_file), "", 0, 0, NULL, 0,
     "Write the daemon's process id here; empty: no pid file."},
    {"drain_timeout", CVX_OPT_DURATION, offsetof(cvx_general_conf_t, drain_timeout_ms), "5s", 0,
     600000, NULL, 0,
     "On shutdown, how long drivers have to end calls in progress cleanly before the daemon "
     "exits anyway."},
    {"lease_timeout", CVX_OPT_DURATION, offsetof(cvx_general_conf_t, lease_timeout_ms), "15s", 300,
     3600000, NULL, 0,
     "The data directory's lease: a holder whose heartbeat is older than this is gone, and "
     "another callvoxd may take the directory over (renewed every third of it)."},
    CVX_OPTIONS_END,
};

static const cvx_option_t log_options[] = {
    {"level", CVX_OPT_ENUM, offsetof(cvx_log_conf_t, level), "info", 0, 0, level_names,
     CVX_OPT_RELOADABLE, "Lowest level written: error, warning, notice, info, debug, trace."},
    {"stall_threshold", CVX_OPT_DURATION, offsetof(cvx_log_conf_t, stall_threshold_ms), "10ms", 1,
     1000, NULL, 0, "A loop iteration busy for longer than this is counted and logged."},
    CVX_OPTIONS_END,
};

const cvx_section_def_t cvx_general_section = {"general", 0, general_options,
                                               sizeof(cvx_general_conf_t),
                                               "The process: role, name, user, directories."};
const cvx_section_def_t cvx_log_section = {"log", 0, log_options, sizeof(cvx_log_conf_t),
                                           "Logging and the loop watchdog."};

#define MAX_CORE_SECTIONS 16
#define MAX_HOOKS         16

typedef struct daemon {
    uv_loop_t loop;
    cvx_role_t role;
    int role_forced; /* --role given */
    const char *config_path;
    int foreground;
    cvx_conf_t *conf;
    cvx_general_conf_t general;
    cvx_log_conf_t log;
    char name[64];
    char module_dir[PATH_MAX];
    cvx__module_t *modules;
    cvx_watchdog_t watchdog;
    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t drain_timer;
    uint64_t started_ms, drain_started_ms;
    int stopping;
    int ready_fd; /* daemon mode: the pipe to the waiting parent */
    cvx_core_section_t sections[MAX_CORE_SECTIONS];
    unsigned nsections;
    const cvx_daemon_hooks_t *hooks[MAX_HOOKS];
    unsigned nhooks;
    unsigned hooks_started;
    struct {
        unsigned roles;
        int (*fn)(void);
    } checks[MAX_HOOKS];
    unsigned nchecks;
    int force_takeover; /* --force-takeover */
    cvx_lease_t *lease; /* of data_dir */
    int exit_status;
    char lease_note[640]; /* a takeover to log once the log runs */
} daemon_t;

static daemon_t D = {.ready_fd = -1};

/* --- accessors --------------------------------------------------------------------------- */

uv_loop_t *cvx_daemon_loop(void)
{
    return &D.loop;
}

cvx_role_t cvx_daemon_role(void)
{
    return D.role;
}

const char *cvx_daemon_role_name(cvx_role_t role)
{
    return role == CVX_ROLE_CALL      ? "call"
           : role == CVX_ROLE_SYSTEM  ? "system"
           : role == CVX_ROLE_WITNESS ? "witness"
                                      : "all";
}

const char *cvx_daemon_name(void)
{
    return D.name;
}

const char *cvx_daemon_version(void)
{
    return CVX_VERSION;
}

uint64_t cvx_daemon_started_ms(void)
{
    return D.started_ms;
}

const cvx_general_conf_t *cvx_daemon_general(void)
{
    return &D.general;
}

cvx_watchdog_t *cvx_daemon_watchdog(void)
{
    return &D.watchdog;
}

cvx_conf_t *cvx_daemon_conf(void)
{
    return D.conf;
}

int cvx_daemon_add_section(const cvx_section_def_t *def, void *conf)
{
    if (D.nsections == MAX_CORE_SECTIONS)
        return CVX_ELIMIT;
    D.sections[D.nsections].def = def;
    D.sections[D.nsections].conf = conf;
    D.nsections++;
    return 0;
}

int cvx_daemon_add_sections(const cvx_section_def_t *def,
                            int (*each)(void *arg, cvx_conf_section_t *sec, cvx_diag_t *diag,
                                        cvx_diag_t *restart),
                            void (*release)(void *arg), void *arg)
{
    if (!def->repeated || each == NULL)
        return CVX_EINVAL;
    if (D.nsections == MAX_CORE_SECTIONS)
        return CVX_ELIMIT;
    D.sections[D.nsections].def = def;
    D.sections[D.nsections].conf = NULL;
    D.sections[D.nsections].each = each;
    D.sections[D.nsections].release = release;
    D.sections[D.nsections].each_arg = arg;
    D.nsections++;
    return 0;
}

void cvx_daemon_foreach_section(int (*fn)(const cvx_core_section_t *s, void *arg), void *arg)
{
    for (unsigned i = 0; i < D.nsections; i++)
        if (fn(&D.sections[i], arg))
            return;
}

int cvx_daemon_add_hooks(const cvx_daemon_hooks_t *hooks)
{
    if (D.nhooks == MAX_HOOKS)
        return CVX_ELIMIT;
    D.hooks[D.nhooks++] = hooks;
    return 0;
}

int cvx_daemon_add_check(unsigned roles, int (*check)(void))
{
    if (D.nchecks == MAX_HOOKS)
        return CVX_ELIMIT;
    D.checks[D.nchecks].roles = roles;
    D.checks[D.nchecks++].fn = check;
    return 0;
}

void cvx_daemon_foreach_module(int (*fn)(const cvx_module_info_t *m, void *arg), void *arg)
{
    static const char *const states[] = {"loaded", "declined", "refused", "skipped"};
    static const char *const kinds[] = {"", "driver", "app", "service"};
    for (cvx__module_t *m = D.modules; m != NULL; m = m->next) {
        cvx_module_info_t info = {m->name,
                                  m->path ? m->path : "",
                                  states[m->state],
                                  m->state == CVX__MOD_LOADED ? "" : m->reason,
                                  "",
                                  "",
                                  ""};
        if (m->desc != NULL) {
            info.version = m->desc->version ? m->desc->version : "";
            info.description = m->desc->description ? m->desc->description : "";
            if ((unsigned)m->desc->kind < 4)
                info.kind = kinds[m->desc->kind];
        }
        if (fn(&info, arg))
            return;
    }
}

/* For "show config" (core/ctl): loaded modules' descriptors and the [log] options. */
void cvx__daemon_foreach_desc(int (*fn)(const cvx_module_t *desc, void *arg), void *arg)
{
    for (cvx__module_t *m = D.modules; m != NULL; m = m->next)
        if (m->state == CVX__MOD_LOADED && m->desc != NULL && fn(m->desc, arg))
            return;
}

const cvx_log_conf_t *cvx__daemon_log_conf(void)
{
    return &D.log;
}

/* --- configuration ------------------------------------------------------------------------ */

static void release_core_conf(cvx_general_conf_t *g, cvx_log_conf_t *l)
{
    cvx_conf_release(general_options, g);
    cvx_conf_release(log_options, l);
}

/* Binds the core's own sections of conf into g, l and the registered core sections.  restart
 * is NULL at start; on reload it collects what repeated sections say needs a restart. */
static int bind_core(cvx_conf_t *conf, cvx_general_conf_t *g, cvx_log_conf_t *l, void **extra,
                     cvx_diag_t *restart, cvx_diag_t *diag)
{
    int rc = 0;
    if (cvx_conf_bind(&cvx_general_section, cvx_conf_find(conf, "general", NULL), g, diag))
        rc = CVX_EINVAL;
    if (cvx_conf_bind(&cvx_log_section, cvx_conf_find(conf, "log", NULL), l, diag))
        rc = CVX_EINVAL;
    for (unsigned i = 0; i < D.nsections; i++) {
        const cvx_section_def_t *def = D.sections[i].def;
        if (def->repeated) {
            /* One bind per "[kind:name]", into storage the owner gives for each. */
            for (cvx_conf_section_t *s = conf->sections; s != NULL; s = s->next)
                if (s->name != NULL && strcmp(s->kind, def->kind) == 0 &&
                    D.sections[i].each(D.sections[i].each_arg, s, diag, restart) != 0)
                    rc = CVX_EINVAL;
            continue;
        }
        if (cvx_conf_bind(def, cvx_conf_find(conf, def->kind, NULL), extra[i], diag))
            rc = CVX_EINVAL;
    }
    /* Sections like "[general:x]" are not meant to exist. */
    for (cvx_conf_section_t *s = conf->sections; s != NULL; s = s->next) {
        if (s->name == NULL || s->claimed)
            continue;
        if (strcmp(s->kind, "general") == 0 || strcmp(s->kind, "log") == 0) {
            cvx_diag_add(diag, "%s:%d: [%s:%s]: [%s] takes no name", s->file, s->line, s->kind,
                         s->name, s->kind);
            s->claimed = 1;
            rc = CVX_EINVAL;
        }
    }
    return rc;
}

static void resolve_module_dir(void)
{
    if (D.general.module_dir != NULL && D.general.module_dir[0] != '\0') {
        snprintf(D.module_dir, sizeof(D.module_dir), "%s", D.general.module_dir);
        return;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0) {
        snprintf(D.module_dir, sizeof(D.module_dir), "/usr/lib/callvox/modules");
        return;
    }
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash != NULL)
        *slash = '\0';
    if ((size_t)snprintf(D.module_dir, sizeof(D.module_dir), "%.*s/../lib/callvox/modules",
                         (int)(sizeof(D.module_dir) - 32), exe) >= sizeof(D.module_dir))
        snprintf(D.module_dir, sizeof(D.module_dir), "/usr/lib/callvox/modules");
}

static void print_diag(const cvx_diag_t *diag)
{
    for (size_t i = 0; i < diag->n; i++)
        fprintf(stderr, "callvoxd: %s\n", diag->msgs[i]);
}

/* --- privileges --------------------------------------------------------------------------- */

/* Creates dir (mode 0750) if missing and gives it to uid/gid. */
static int prepare_dir(const char *dir, uid_t uid, gid_t gid, int chown_it)
{
    if (dir == NULL || dir[0] == '\0')
        return 0;
    if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
        fprintf(stderr, "callvoxd: cannot create %s: %s\n", dir, strerror(errno));
        return CVX_EIO;
    }
    if (chown_it && chown(dir, uid, gid) != 0) {
        fprintf(stderr, "callvoxd: cannot give %s to the daemon's user: %s\n", dir,
                strerror(errno));
        return CVX_EIO;
    }
    return 0;
}

/* Looks up the daemon's user (before the loop runs: getpwnam may block on NSS). */
static int lookup_user(struct passwd *pw_out, char *buf, size_t len)
{
    struct passwd *pw = NULL;
    int rc = getpwnam_r(D.general.user, pw_out, buf, len, &pw);
    if (pw == NULL) {
        fprintf(stderr,
                "callvoxd: the user '%s' does not exist (create it with 'useradd --system %s', "
                "or set [general] user)\n",
                D.general.user, D.general.user);
        return rc ? cvx_from_errno(rc) : CVX_ENOTFOUND;
    }
    return 0;
}

static int drop_privileges(const struct passwd *pw)
{
    if (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
        setuid(pw->pw_uid) != 0) {
        fprintf(stderr, "callvoxd: cannot switch to the user '%s': %s\n", pw->pw_name,
                strerror(errno));
        return CVX_EPERM;
    }
    if (setuid(0) == 0) {
        fprintf(stderr, "callvoxd: root privileges could be regained; refusing to run\n");
        return CVX_EPERM;
    }
    cvx_info("running as user %s (uid %u, gid %u)", pw->pw_name, (unsigned)pw->pw_uid,
             (unsigned)pw->pw_gid);
    return 0;
}

/* --- reload --------------------------------------------------------------------------------- */

static void compare_section(const cvx_section_def_t *def, const void *old, const void *new,
                            unsigned *applied, unsigned *restart, cvx_diag_t *report)
{
    for (const cvx_option_t *o = def->options; o->name != NULL; o++) {
        if (cvx_opt_equal(o, old, new))
            continue;
        char v[256];
        cvx_opt_format(o, new, v, sizeof(v));
        if (o->flags & CVX_OPT_RELOADABLE) {
            cvx_diag_add(report, "[%s] %s = %s: applied", def->kind, o->name, v);
            (*applied)++;
        } else {
            cvx_diag_add(report, "[%s] %s = %s: needs a restart", def->kind, o->name, v);
            (*restart)++;
        }
    }
}

int cvx_daemon_reload(cvx_diag_t *report)
{
    cvx_diag_t diag = {0};
    cvx_conf_t *conf = cvx_conf_new();
    cvx_general_conf_t g = {0};
    cvx_log_conf_t l = {0};
    void *extra[MAX_CORE_SECTIONS] = {0};
    int rc = conf ? cvx_conf_load(conf, D.config_path, &diag) : CVX_ENOMEM;
    for (unsigned i = 0; i < D.nsections; i++)
        if (!D.sections[i].def->repeated)
            extra[i] = calloc(1, D.sections[i].def->conf_size);
    cvx_diag_t later = {0}; /* what repeated sections say needs a restart */
    if (rc == 0)
        rc = bind_core(conf, &g, &l, extra, &later, &diag);
    if (rc != 0 || diag.n > 0) {
        for (size_t i = 0; i < diag.n; i++)
            cvx_diag_add(report, "error: %s", diag.msgs[i]);
        cvx_diag_add(report, "the configuration has errors; nothing was changed");
        rc = CVX_EINVAL;
        goto out;
    }
    unsigned applied = 0, restart = 0;
    cvx_diag_t changes = {0};
    if (cvx__drv_reload_all(conf, &applied, &restart, &changes) != 0) {
        for (size_t i = 0; i < changes.n; i++)
            cvx_diag_add(report, "error: %s", changes.msgs[i]);
        cvx_diag_add(report, "the configuration has errors; nothing was changed");
        cvx_diag_clear(&changes);
        rc = CVX_EINVAL;
        goto out;
    }
    compare_section(&cvx_general_section, &D.general, &g, &applied, &restart, report);
    compare_section(&cvx_log_section, &D.log, &l, &applied, &restart, report);
    for (unsigned i = 0; i < D.nsections; i++)
        if (!D.sections[i].def->repeated)
            compare_section(D.sections[i].def, D.sections[i].conf, extra[i], &applied, &restart,
                            report);
    for (size_t i = 0; i < later.n; i++) {
        cvx_diag_add(report, "%s: needs a restart", later.msgs[i]);
        restart++;
    }
    for (size_t i = 0; i < changes.n; i++)
        cvx_diag_add(report, "%s", changes.msgs[i]);
    cvx_diag_clear(&changes);

    /* Apply: [log] level is reloadable; keep the rest of the old values in force. */
    if (D.log.level != l.level)
        cvx_log_set_level((cvx_log_level_t)l.level);
    D.log.level = l.level;
    for (unsigned i = 0; i < D.nsections; i++) {
        const cvx_section_def_t *def = D.sections[i].def;
        for (const cvx_option_t *o = def->options; !def->repeated && o->name != NULL; o++) {
            if (!(o->flags & CVX_OPT_RELOADABLE) || o->type == CVX_OPT_STRING ||
                o->type == CVX_OPT_LIST)
                continue;
            size_t sz = o->type == CVX_OPT_INT || o->type == CVX_OPT_DURATION ? sizeof(long long)
                                                                              : sizeof(int);
            memcpy((char *)D.sections[i].conf + o->offset, (char *)extra[i] + o->offset, sz);
        }
    }
    cvx_diag_add(report, "reload: %u change%s applied, %u need%s a restart", applied,
                 applied == 1 ? "" : "s", restart, restart == 1 ? "s" : "");
    cvx_conf_free(D.conf);
    D.conf = conf;
    conf = NULL;
    for (unsigned i = 0; i < D.nhooks; i++)
        if (D.hooks[i]->reloaded != NULL && (D.hooks[i]->roles & D.role))
            D.hooks[i]->reloaded();
out:
    cvx_diag_clear(&later);
    release_core_conf(&g, &l);
    for (unsigned i = 0; i < D.nsections; i++) {
        if (extra[i] != NULL)
            cvx_conf_release(D.sections[i].def->options, extra[i]);
        free(extra[i]);
    }
    cvx_conf_free(conf);
    cvx_diag_clear(&diag);
    return rc;
}

/* --- shutdown ------------------------------------------------------------------------------ */

static void on_handle_closed(uv_handle_t *h)
{
    (void)h;
}

static void finish(void)
{
    for (unsigned i = D.hooks_started; i-- > 0;)
        if (D.hooks[i]->stop != NULL && (D.hooks[i]->roles & D.role))
            D.hooks[i]->stop();
    D.hooks_started = 0;
    cvx__drv_destroy_all();
    uv_close((uv_handle_t *)&D.drain_timer, on_handle_closed);
    uv_close((uv_handle_t *)&D.sigterm, on_handle_closed);
    uv_close((uv_handle_t *)&D.sigint, on_handle_closed);
    uv_close((uv_handle_t *)&D.sighup, on_handle_closed);
    cvx_watchdog_stop(&D.watchdog);
}

static void on_drain_timer(uv_timer_t *t)
{
    (void)t;
    unsigned calls = cvx_chan_count();
    uint64_t waited = uv_now(&D.loop) - D.drain_started_ms;
    if (calls > 0 && waited < (uint64_t)D.general.drain_timeout_ms)
        return;
    if (calls > 0)
        cvx_warn("shutdown: %u call%s still up after %lld ms; exiting anyway", calls,
                 calls == 1 ? "" : "s", D.general.drain_timeout_ms);
    uv_timer_stop(&D.drain_timer);
    finish();
}

void cvx_daemon_shutdown(int graceful)
{
    if (D.stopping) {
        if (!graceful && D.stopping == 2) {
            /* A second, hard request while draining gracefully: hang up now. */
            D.stopping = 1;
            cvx__drv_stop_all();
        }
        return;
    }
    cvx_notice("shutting down%s; %u call%s in progress", graceful ? " gracefully" : "",
               cvx_chan_count(), cvx_chan_count() == 1 ? "" : "s");
    D.stopping = graceful ? 2 : 1;
    D.drain_started_ms = uv_now(&D.loop);
    if (!graceful)
        cvx__drv_stop_all();
    uv_timer_start(&D.drain_timer, on_drain_timer, 0, 50);
}

static void on_signal(uv_signal_t *h, int signum)
{
    (void)h;
    cvx_watchdog_resync(&D.watchdog);
    if (signum == SIGHUP) {
        cvx_diag_t report = {0};
        cvx_notice("SIGHUP: reloading %s", D.config_path);
        int rc = cvx_daemon_reload(&report);
        for (size_t i = 0; i < report.n; i++)
            cvx_log(rc ? CVX_LOG_ERROR : CVX_LOG_NOTICE, "%s", report.msgs[i]);
        cvx_diag_clear(&report);
        return;
    }
    cvx_notice("%s received", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    cvx_daemon_shutdown(0);
}

/* --- start-up ------------------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: callvoxd [options]\n"
            "  -c, --config FILE   configuration file (default %s, plus conf.d/*.conf)\n"
            "  -r, --role ROLE     call, system, all or witness (overrides [general] role)\n"
            "  -f, --foreground    stay in the foreground and log to stderr\n"
            "  -t, --check-config  check the configuration and exit\n"
            "      --force-takeover  take the data directory's lease from a holder that\n"
            "                      looks alive (only after fencing its host: README)\n"
            "  -V, --version       print the version and exit\n"
            "  -h, --help          this text\n",
            CVX_DEFAULT_CONFIG);
}

/* Parses the command line; returns -1 to go on, or an exit status. */
static int parse_args(int argc, char **argv, int *check_only)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},   {"role", required_argument, NULL, 'r'},
        {"foreground", no_argument, NULL, 'f'},     {"check-config", no_argument, NULL, 't'},
        {"force-takeover", no_argument, NULL, 'F'}, {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0}};
    int c;
    D.config_path = CVX_DEFAULT_CONFIG;
    while ((c = getopt_long(argc, argv, "c:r:ftVh", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            D.config_path = optarg;
            break;
        case 'r':
            if (strcmp(optarg, "call") == 0)
                D.role = CVX_ROLE_CALL;
            else if (strcmp(optarg, "system") == 0)
                D.role = CVX_ROLE_SYSTEM;
            else if (strcmp(optarg, "all") == 0)
                D.role = CVX_ROLE_ALL;
            else if (strcmp(optarg, "witness") == 0)
                D.role = CVX_ROLE_WITNESS;
            else {
                fprintf(stderr, "callvoxd: unknown role '%s' (call, system, all or witness)\n",
                        optarg);
                return 2;
            }
            D.role_forced = 1;
            break;
        case 'f':
            D.foreground = 1;
            break;
        case 't':
            *check_only = 1;
            break;
        case 'F':
            D.force_takeover = 1;
            break;
        case 'V':
            printf("callvoxd %s\n", CVX_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "callvoxd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    return -1;
}

/* Reads and checks the whole configuration, loads modules and creates driver instances. */
static int configure(cvx_diag_t *diag)
{
    D.conf = cvx_conf_new();
    if (D.conf == NULL)
        return CVX_ENOMEM;
    if (cvx_conf_load(D.conf, D.config_path, diag) != 0 && diag->n == 0)
        return CVX_EIO;
    void *extra[MAX_CORE_SECTIONS];
    for (unsigned i = 0; i < D.nsections; i++)
        extra[i] = D.sections[i].conf;
    bind_core(D.conf, &D.general, &D.log, extra, NULL, diag);
    if (!D.role_forced)
        D.role = D.general.role == 0   ? CVX_ROLE_CALL
                 : D.general.role == 1 ? CVX_ROLE_SYSTEM
                 : D.general.role == 3 ? CVX_ROLE_WITNESS
                                       : CVX_ROLE_ALL;
    cvx_log_set_level((cvx_log_level_t)D.log.level);
    for (size_t i = 0; i < D.conf->nfiles; i++)
        cvx_debug("configuration: read %s", D.conf->files[i]);
    if (D.general.name != NULL && D.general.name[0] != '\0')
        snprintf(D.name, sizeof(D.name), "%s", D.general.name);
    else if (gethostname(D.name, sizeof(D.name)) != 0)
        snprintf(D.name, sizeof(D.name), "callvox");
    D.name[sizeof(D.name) - 1] = '\0';
    cvx__chan_set_id_prefix(D.name);
    resolve_module_dir();

    int rc = cvx__modules_load_dir(D.module_dir, D.conf, D.role, &D.loop, &D.modules, diag);
    if (rc == 0)
        rc = cvx__drv_create_all(D.modules, D.conf, &D.loop, diag);
    cvx_conf_check_unclaimed(D.conf, diag);
    return diag->n > 0 ? CVX_EINVAL : rc;
}

/* Daemon mode, before anything else is set up (threads and pending work do not survive a
 * fork): fork twice; the first parent waits for the daemon to report its exit status for the
 * start (0 once it runs) and exits with it.  The daemon keeps the terminal's stderr until it
 * has started, so start-up errors are still seen by whoever started it. */
static int daemonize(void)
{
    int fds[2];
    if (pipe(fds) != 0)
        return CVX_EIO;
    pid_t pid = fork();
    if (pid < 0)
        return CVX_EIO;
    if (pid > 0) {
        close(fds[1]);
        unsigned char status = 1;
        ssize_t n = read(fds[0], &status, 1);
        _exit(n == 1 ? status : 1);
    }
    close(fds[0]);
    setsid();
    pid = fork();
    if (pid < 0)
        _exit(1);
    if (pid > 0)
        _exit(0); /* the middle process; the grandchild keeps the pipe */
    D.ready_fd = fds[1];
    return 0;
}

/* Tells the waiting parent (daemon mode) how the start ended; 0 detaches from the terminal. */
static void report_start(int status)
{
    if (D.ready_fd < 0)
        return;
    unsigned char b = (unsigned char)status;
    if (write(D.ready_fd, &b, 1) != 1)
        cvx_warn("could not tell the parent process how the start went");
    close(D.ready_fd);
    D.ready_fd = -1;
    if (status != 0)
        return;
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        if (null > 2)
            close(null);
    }
}

static int write_pid_file(void)
{
    if (D.general.pid_file == NULL || D.general.pid_file[0] == '\0')
        return 0;
    FILE *f = fopen(D.general.pid_file, "w");
    if (f == NULL) {
        cvx_error("cannot write the pid file %s: %s", D.general.pid_file, strerror(errno));
        return CVX_EIO;
    }
    fprintf(f, "%ld\n", (long)getpid());
    fclose(f);
    return 0;
}

static int start_handles(void)
{
    uv_signal_init(&D.loop, &D.sigterm);
    uv_signal_init(&D.loop, &D.sigint);
    uv_signal_init(&D.loop, &D.sighup);
    uv_timer_init(&D.loop, &D.drain_timer);
    uv_signal_start(&D.sigterm, on_signal, SIGTERM);
    uv_signal_start(&D.sigint, on_signal, SIGINT);
    uv_signal_start(&D.sighup, on_signal, SIGHUP);
    return cvx_watchdog_start(&D.watchdog, &D.loop, (unsigned)D.log.stall_threshold_ms);
}

/* Everything that needs root: ports, devices, the run directory, hooks. */
static int start_privileged(struct passwd *pw, int switch_user)
{
    cvx_diag_t diag = {0};
    int rc = prepare_dir(D.general.run_dir, switch_user ? pw->pw_uid : 0,
                         switch_user ? pw->pw_gid : 0, switch_user);
    if (rc == 0)
        rc = cvx__drv_start_all(&diag);
    print_diag(&diag);
    cvx_diag_clear(&diag);
    for (unsigned i = 0; rc == 0 && i < D.nhooks; i++) {
        if (!(D.hooks[i]->roles & D.role) || D.hooks[i]->start == NULL) {
            D.hooks_started = i + 1;
            continue;
        }
        rc = D.hooks[i]->start(&D.loop);
        if (rc != 0)
            fprintf(stderr, "callvoxd: cannot start %s: %s\n", D.hooks[i]->name, cvx_strerror(rc));
        else
            D.hooks_started = i + 1;
    }
    return rc;
}

static void on_drain_tick(uv_timer_t *t)
{
    (void)t;
}

/* Lets requests still in flight (thread-pool work such as prompt loads a module started in
 * its load()) complete while the modules that will receive their callbacks are still loaded:
 * at most 5 s.  Called only outside uv_run(). */
static void drain_requests(void)
{
    uv_timer_t tick;
    uv_timer_init(&D.loop, &tick);
    uv_timer_start(&tick, on_drain_tick, 10, 10);
    uint64_t deadline = uv_now(&D.loop) + 5000;
    while (D.loop.active_reqs.count > 0 && uv_now(&D.loop) < deadline)
        uv_run(&D.loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&D.loop, UV_RUN_NOWAIT);
}

static void teardown(void)
{
    cvx__drv_destroy_all();
    drain_requests();
    cvx__modules_unload(&D.modules);
    release_core_conf(&D.general, &D.log);
    for (unsigned i = 0; i < D.nsections; i++)
        if (D.sections[i].conf != NULL)
            cvx_conf_release(D.sections[i].def->options, D.sections[i].conf);
        else if (D.sections[i].release != NULL)
            D.sections[i].release(D.sections[i].each_arg);
    cvx_conf_free(D.conf);
    D.conf = NULL;
}

static int run(int check_only);

/* --- the data directory's lease -------------------------------------------------------------- */

/* Creates data_dir if needed and takes its lease (cvx/lease.h).  Before the log starts: the
 * refusal goes to stderr, a takeover notice is kept for the log. */
static int take_lease(struct passwd *pw, int switch_user)
{
    const char *dir = D.general.data_dir;
    int rc =
        prepare_dir(dir, switch_user ? pw->pw_uid : 0, switch_user ? pw->pw_gid : 0, switch_user);
    if (rc != 0)
        return rc;
    rc = cvx_lease_acquire(dir, (uint64_t)D.general.lease_timeout_ms, D.force_takeover, &D.lease,
                           D.lease_note, sizeof(D.lease_note));
    if (rc != 0) {
        fprintf(stderr, "callvoxd: %s\n", D.lease_note);
        return rc;
    }
    if (switch_user) {
        char path[4200];
        snprintf(path, sizeof(path), "%s/callvox.lease", dir);
        if (chown(path, pw->pw_uid, pw->pw_gid) != 0)
            fprintf(stderr, "callvoxd: cannot give %s to the daemon's user: %s\n", path,
                    strerror(errno));
    }
    return 0;
}

static void on_lease_lost(void *arg, const char *why)
{
    (void)arg;
    cvx_error("%s: stopping now", why);
    D.exit_status = 1;
    cvx_daemon_shutdown(0);
}

int cvx_daemon_main(int argc, char **argv)
{
    int check_only = 0;
    int status = parse_args(argc, argv, &check_only);
    if (status >= 0)
        return status;
    if (!D.foreground && !check_only && daemonize() != 0) {
        fprintf(stderr, "callvoxd: cannot detach into the background\n");
        return 1;
    }
    status = run(check_only);
    report_start(status);
    return status;
}

static int run(int check_only)
{
    signal(SIGPIPE, SIG_IGN);
    cvx_log_bridge_libraries();
    if (cvx_loop_init(&D.loop) != 0) {
        fprintf(stderr, "callvoxd: cannot initialise the event loop\n");
        return 1;
    }

    cvx_diag_t diag = {0};
    int rc = configure(&diag);
    if (rc != 0) {
        print_diag(&diag);
        if (diag.n == 0)
            fprintf(stderr, "callvoxd: %s: %s\n", D.config_path, cvx_strerror(rc));
        fprintf(stderr, "callvoxd: configuration has errors; not starting\n");
        cvx_diag_clear(&diag);
        teardown();
        cvx_loop_close_all(&D.loop);
        return 2;
    }
    if (check_only) {
        int bad = 0;
        for (unsigned i = 0; i < D.nchecks; i++)
            if (D.checks[i].roles & D.role)
                bad |= D.checks[i].fn() != 0;
        if (bad) {
            fprintf(stderr, "callvoxd: configuration has errors; not starting\n");
            teardown();
            cvx_loop_close_all(&D.loop);
            return 2;
        }
        printf("callvoxd: configuration OK (%zu file%s, role %s)\n", D.conf->nfiles,
               D.conf->nfiles == 1 ? "" : "s", cvx_daemon_role_name(D.role));
        teardown();
        cvx_loop_close_all(&D.loop);
        return 0;
    }

    struct passwd pw;
    char pwbuf[4096];
    int switch_user = getuid() == 0 && D.general.user != NULL && D.general.user[0] != '\0';
    if (switch_user && lookup_user(&pw, pwbuf, sizeof(pwbuf)) != 0) {
        teardown();
        cvx_loop_close_all(&D.loop);
        return 1;
    }
    rc = take_lease(&pw, switch_user);
    if (rc != 0) {
        teardown();
        cvx_loop_close_all(&D.loop);
        return 1;
    }
    cvx_log_start(D.foreground ? CVX_LOG_TO_STDERR : CVX_LOG_TO_SYSLOG, "callvoxd");
    if (D.lease_note[0] != '\0')
        cvx_warn("%s", D.lease_note);
    D.started_ms = uv_now(&D.loop);
    rc = start_handles();
    if (rc == 0)
        rc = cvx_lease_start(D.lease, &D.loop, on_lease_lost, NULL);
    if (rc == 0)
        rc = start_privileged(&pw, switch_user);
    if (rc == 0 && switch_user)
        rc = drop_privileges(&pw);
    if (rc == 0)
        rc = write_pid_file();
    if (rc != 0) {
        cvx_error("start-up failed: %s", cvx_strerror(rc));
        cvx_daemon_shutdown(0);
        uv_run(&D.loop, UV_RUN_DEFAULT);
        cvx_lease_release(D.lease);
        D.lease = NULL;
        teardown();
        cvx_loop_close_all(&D.loop);
        cvx_log_stop();
        return 1;
    }
    cvx_notice("callvoxd %s started: role %s, name %s, pid %ld", CVX_VERSION,
               cvx_daemon_role_name(D.role), D.name, (long)getpid());
    report_start(0);

    uv_run(&D.loop, UV_RUN_DEFAULT);

    if (D.general.pid_file != NULL && D.general.pid_file[0] != '\0')
        unlink(D.general.pid_file);
    cvx_notice("callvoxd stopped");
    cvx_lease_release(D.lease);
    D.lease = NULL;
    teardown();
    cvx_loop_close_all(&D.loop);
    cvx_log_stop();
    return D.exit_status;
}
