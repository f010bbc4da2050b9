/*
 * The store inside callvoxd: the [store] section, start and stop with the daemon (roles
 * system and all), and the periodic purge of deleted messages.
 *
 * The store is a library (libcvxstore) rather than a loadable module because call flows
 * (plugins) and the shell commands call its service interface directly: a plugin links
 * libcvxstore like it links libcallvox, so a missing symbol is a link error at build time.
 * callvoxd's main() registers it with cvx_store_register() before cvx_daemon_main().
 */
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cvx/daemon.h"
#include "cvx/license.h"
#include "cvx/log.h"
#include "remote.h"
#include "store_impl.h"

typedef struct store_section {
    char *path;
    char *spool_path;
    long long map_size_mb;
    long long map_max_mb;
    long long batch_max;
    long long queue_max_mb;
    long long pin_attempts;
    long long pin_lockout_ms;
    long long pin_history;
    long long prefetch;
    long long deleted_retention_ms;
    long long retention_ms[CVX_STORE_RETENTION_CLASSES];
    long long retention_warning_ms;
} store_section_t;

static const cvx_option_t store_options[] = {
    {"path", CVX_OPT_STRING, offsetof(store_section_t, path), "", 0, 0, NULL, 0,
     "Directory of the message store (LMDB); empty: 'store' in [general] data_dir."},
    {"spool_path", CVX_OPT_STRING, offsetof(store_section_t, spool_path), "", 0, 0, NULL, 0,
     "Role call: directory of the spool (LMDB) that keeps messages while the system server "
     "cannot be reached; empty: 'spool' in [general] data_dir."},
    {"map_size", CVX_OPT_INT, offsetof(store_section_t, map_size_mb), "1024", 1, 1 << 24, NULL, 0,
     "Initial size of the store's memory map, in MB (a sparse file grows as data arrives)."},
    {"map_max", CVX_OPT_INT, offsetof(store_section_t, map_max_mb), "16384", 1, 1 << 24, NULL, 0,
     "The map doubles when full, up to this many MB; beyond it writes fail with 'storage "
     "full' and the store stays usable."},
    {"batch_max", CVX_OPT_INT, offsetof(store_section_t, batch_max), "1024", 1, 100000, NULL, 0,
     "Most write operations committed in one transaction (group commit)."},
    {"queue_max", CVX_OPT_INT, offsetof(store_section_t, queue_max_mb), "256", 1, 65536, NULL, 0,
     "MB of recorded audio queued for the writer before recorders are told to wait."},
    {"pin_attempts", CVX_OPT_INT, offsetof(store_section_t, pin_attempts), "5", 1, 100, NULL, 0,
     "Wrong PINs in a row that lock a mailbox."},
    {"pin_lockout", CVX_OPT_DURATION, offsetof(store_section_t, pin_lockout_ms), "30m", 1000,
     365LL * 86400000, NULL, 0, "How long a mailbox stays locked after too many wrong PINs."},
    {"pin_history", CVX_OPT_INT, offsetof(store_section_t, pin_history), "4", 0, 8, NULL, 0,
     "A new PIN may not repeat the current one or one of this many before it."},
    {"prefetch", CVX_OPT_INT, offsetof(store_section_t, prefetch), "8", 1, 1024, NULL, 0,
     "Audio chunks read ahead of playback on the thread pool."},
    {"deleted_retention", CVX_OPT_DURATION, offsetof(store_section_t, deleted_retention_ms), "7d",
     0, 3650LL * 86400000, NULL, 0,
     "Messages in the deleted folder are purged this long after they were deleted; 0: never."},
    {"saved_retention", CVX_OPT_DURATION, offsetof(store_section_t, retention_ms[0]), "0", 0,
     36500LL * 86400000, NULL, 0,
     "Saved messages of mailboxes in retention class 0 move to the deleted folder this long "
     "after they were saved; 0: kept until the subscriber deletes them."},
    {"retention_class1", CVX_OPT_DURATION, offsetof(store_section_t, retention_ms[1]), "0", 0,
     36500LL * 86400000, NULL, 0, "Retention of saved messages in class 1; 0: forever."},
    {"retention_class2", CVX_OPT_DURATION, offsetof(store_section_t, retention_ms[2]), "0", 0,
     36500LL * 86400000, NULL, 0, "Retention of saved messages in class 2; 0: forever."},
    {"retention_class3", CVX_OPT_DURATION, offsetof(store_section_t, retention_ms[3]), "0", 0,
     36500LL * 86400000, NULL, 0, "Retention of saved messages in class 3; 0: forever."},
    {"retention_warning", CVX_OPT_DURATION, offsetof(store_section_t, retention_warning_ms), "3d",
     0, 3650LL * 86400000, NULL, 0,
     "Saved messages this close to their retention are flagged, so the subscriber is warned "
     "before they go."},
    CVX_OPTIONS_END,
};

const cvx_section_def_t cvx_store_section = {"store", 0, store_options, sizeof(store_section_t),
                                             "The message store (roles system and all)."};

static store_section_t S;
static cvx_store_t *the_store;
static uv_timer_t expire_timer;
static int timer_on;

cvx_store_t *cvx_store_default(void)
{
    return the_store;
}

static void expired(void *arg, int status)
{
    (void)arg;
    if (status > 0)
        cvx_info("message store: purged %d deleted message%s", status, status == 1 ? "" : "s");
    else if (status < 0)
        cvx_warn("message store: purging deleted messages failed: %s", cvx_strerror(status));
}

static void retained(void *arg, int status)
{
    (void)arg;
    if (status > 0)
        cvx_info("message store: %d saved message%s reached %s retention and moved to the "
                 "deleted folder",
                 status, status == 1 ? "" : "s", status == 1 ? "its" : "their");
    else if (status < 0)
        cvx_warn("message store: applying retention classes failed: %s", cvx_strerror(status));
}

static void on_expire_timer(uv_timer_t *t)
{
    (void)t;
    if (the_store == NULL)
        return;
    uint64_t now = store__now_ms();
    cvx_store_retain(the_store, now, retained, NULL);
    if (S.deleted_retention_ms > 0)
        cvx_store_expire(the_store, now - (uint64_t)S.deleted_retention_ms, expired, NULL);
}

/* Gives the store's files to the daemon's user when started as root. */
static void give_to_user(const char *path)
{
    const cvx_general_conf_t *g = cvx_daemon_general();
    if (getuid() != 0 || g->user == NULL || g->user[0] == '\0')
        return;
    struct passwd pw, *res = NULL;
    char buf[4096];
    if (getpwnam_r(g->user, &pw, buf, sizeof(buf), &res) != 0 || res == NULL)
        return;
    const char *files[] = {"", "/data.mdb", "/lock.mdb"};
    for (int i = 0; i < 3; i++) {
        char p[PATH_MAX];
        snprintf(p, sizeof(p), "%s%s", path, files[i]);
        if (chown(p, pw.pw_uid, pw.pw_gid) != 0)
            cvx_warn("message store: cannot give %s to user %s", p, g->user);
    }
}

static int store_start(uv_loop_t *loop)
{
    char path[PATH_MAX];
    const cvx_general_conf_t *g = cvx_daemon_general();
    if (cvx_daemon_role() == CVX_ROLE_CALL) {
        /* A call server's store is the system server's, over the link. */
        if (S.spool_path != NULL && S.spool_path[0] != '\0')
            snprintf(path, sizeof(path), "%s", S.spool_path);
        else
            snprintf(path, sizeof(path), "%s/spool", g->data_dir ? g->data_dir : ".");
        int rc = store__link_remote_open(loop, path, &the_store);
        if (rc == 0)
            give_to_user(path);
        return rc;
    }
    if (S.path != NULL && S.path[0] != '\0')
        snprintf(path, sizeof(path), "%s", S.path);
    else
        snprintf(path, sizeof(path), "%s/store", g->data_dir ? g->data_dir : ".");
    cvx_store_conf_t conf;
    cvx_store_conf_defaults(&conf);
    conf.path = path;
    conf.map_size = (uint64_t)S.map_size_mb << 20;
    conf.map_max = (uint64_t)S.map_max_mb << 20;
    conf.batch_max = (uint32_t)S.batch_max;
    conf.queue_max = (uint64_t)S.queue_max_mb << 20;
    conf.pin_attempts = (uint32_t)S.pin_attempts;
    conf.pin_lockout_ms = (uint64_t)S.pin_lockout_ms;
    conf.pin_history = (uint32_t)S.pin_history;
    conf.prefetch = (uint32_t)S.prefetch;
    for (int i = 0; i < CVX_STORE_RETENTION_CLASSES; i++)
        conf.retention_ms[i] = (uint64_t)S.retention_ms[i];
    conf.retention_warning_ms = (uint64_t)S.retention_warning_ms;
    conf.max_mailboxes = cvx_license_max_mailboxes();
    char err[512] = "";
    int rc = cvx_store_open(loop, &conf, &the_store, err, sizeof(err));
    if (rc != 0) {
        cvx_error("%s", err[0] ? err : cvx_strerror(rc));
        fprintf(stderr, "callvoxd: %s\n", err[0] ? err : cvx_strerror(rc));
        return rc;
    }
    give_to_user(path);
    if ((rc = store__link_serve(the_store)) != 0)
        return rc;
    uv_timer_init(loop, &expire_timer);
    uv_timer_start(&expire_timer, on_expire_timer, 60 * 1000, 3600 * 1000);
    uv_unref((uv_handle_t *)&expire_timer);
    timer_on = 1;
    return 0;
}

static void store_stop(void)
{
    if (timer_on) {
        uv_close((uv_handle_t *)&expire_timer, NULL);
        timer_on = 0;
    }
    if (the_store != NULL) {
        if (cvx__store_is_remote(the_store))
            store__link_remote_close();
        else
            store__link_unserve();
        cvx_store_close(the_store, NULL, NULL);
        the_store = NULL;
    }
}

/* Role call runs the remote store (over the link) with its spool; system and all the local one. */
static const cvx_daemon_hooks_t store_hooks = {"message store", CVX_ROLE_ALL, store_start,
                                               store_stop, NULL};

int cvx_store_register(void)
{
    int rc = cvx_daemon_add_section(&cvx_store_section, &S);
    if (rc == 0)
        rc = cvx_daemon_add_hooks(&store_hooks);
    if (rc == 0)
        rc = store__cmds_register();
    if (rc == 0)
        rc = store__link_cmds_register();
    return rc;
}
