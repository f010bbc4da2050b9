/*
 * The control socket: a UNIX socket the `callvox` shell connects to.
 *
 * Every peer's credentials come from the kernel (SO_PEERCRED, SO_PEERGROUPS): root, the
 * daemon's own user and members of [control] admin_group may run every command; members of
 * readonly_group may run read-only commands; everyone else is told so and disconnected.  The
 * socket file is world-connectable (0666) on purpose, so that a refused user gets that clear
 * message instead of a bare EACCES; the credential check is the gate.
 *
 * One client can never disturb another or the calls: a frame longer than max_request, an
 * unknown frame type or bytes that are no frame at all ("garbage"), a frame left unfinished for
 * frame_timeout, more than max_pipeline requests sent ahead of their replies (a flood), or more
 * than max_output bytes of replies left unread each cut that client off (with a goodbye frame
 * saying why and a log line).  A client that sends its requests one after the other, waiting
 * for each reply, is never cut off however fast it goes (a script piping a thousand commands):
 * it holds the loop for one request at a time, like everybody else.
 *
 * Attach mode: a log sink (on the logging thread) hands lines to the loop through an async
 * queue; each attached client gets the lines at its level or above while fewer than log_backlog
 * bytes wait to be sent to it: the rest are dropped and counted, and the client is told how
 * many once it catches up.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "cvx/daemon.h"
#include "cvx/error.h"
#include "cvx/log.h"
#include "cvx/reactor.h"
#include "ctl.h"
#include "proto.h"

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59
#endif

#define LOG_QUEUE_MAX 20000 /* lines in flight from the logging thread to the loop */

typedef struct ctl_conf {
    char *socket;
    char *admin_group;
    char *readonly_group;
    char *audit_log;
    long long max_clients;
    long long frame_timeout_ms;
    long long max_request;
    long long max_output;
    long long log_backlog;
    long long max_pipeline;
} ctl_conf_t;

static const cvx_option_t control_options[] = {
    {"socket", CVX_OPT_STRING, offsetof(ctl_conf_t, socket), "", 0, 0, NULL, 0,
     "Path of the control socket; empty: callvox.ctl in [general] run_dir."},
    {"admin_group", CVX_OPT_STRING, offsetof(ctl_conf_t, admin_group), "callvox-admin", 0, 0, NULL,
     0,
     "Members of this group may run every command, as may root and the daemon's own user. "
     "Empty, or a group that does not exist: nobody else."},
    {"readonly_group", CVX_OPT_STRING, offsetof(ctl_conf_t, readonly_group), "callvox-ro", 0, 0,
     NULL, 0,
     "Members of this group may run read-only commands (help, status, show ...). Everyone "
     "else is refused."},
    {"audit_log", CVX_OPT_STRING, offsetof(ctl_conf_t, audit_log), "", 0, 0, NULL, 0,
     "File that records every command that changes something: time (UTC), user, command, "
     "result. Empty: audit.log in [general] data_dir."},
    {"max_clients", CVX_OPT_INT, offsetof(ctl_conf_t, max_clients), "32", 1, 1024, NULL,
     CVX_OPT_RELOADABLE, "Connections at once; more are told so and closed."},
    {"frame_timeout", CVX_OPT_DURATION, offsetof(ctl_conf_t, frame_timeout_ms), "5s", 10, 600000,
     NULL, CVX_OPT_RELOADABLE,
     "A request started must be complete within this time, or the client is cut off."},
    {"max_request", CVX_OPT_INT, offsetof(ctl_conf_t, max_request), "4096", 64, 65536, NULL,
     CVX_OPT_RELOADABLE,
     "Largest request frame in bytes; a longer one is garbage and cuts the client off."},
    {"max_output", CVX_OPT_INT, offsetof(ctl_conf_t, max_output), "4194304", 4096, 1073741824, NULL,
     CVX_OPT_RELOADABLE, "Bytes of replies a client may leave unread before it is cut off."},
    {"log_backlog", CVX_OPT_INT, offsetof(ctl_conf_t, log_backlog), "262144", 4096, 67108864, NULL,
     CVX_OPT_RELOADABLE,
     "Bytes an attached shell may leave unread before further log lines are dropped (and "
     "counted, and the shell told how many)."},
    {"max_pipeline", CVX_OPT_INT, offsetof(ctl_conf_t, max_pipeline), "32", 1, 10000, NULL,
     CVX_OPT_RELOADABLE,
     "Requests a client may send ahead of their replies; more at once is a flood and cuts it "
     "off."},
    CVX_OPTIONS_END,
};

static const cvx_section_def_t control_section = {
    "control", 0, control_options, sizeof(ctl_conf_t),
    "The control socket the callvox shell connects to: who may do what, the audit log, limits."};

typedef struct client {
    uv_pipe_t pipe;
    uv_timer_t timer; /* frame timeout */
    uv_work_t work;   /* user name lookup on the thread pool */
    struct client *next;
    cvx__ctl_peer_t peer;
    int refused; /* not allowed in: goodbye once the name is known */
    int ready;   /* hello sent, requests are read */
    int closing;
    int eof;     /* the peer shut its side: close once its replies are out */
    int handles; /* handles not yet closed, plus 1 while the lookup runs */
    cvx__ctl_dec_t dec;
    cvx_cmd_req_t *pending; /* a command that finishes later */
    int attach_level;       /* -1: not attached */
    uint64_t log_dropped;
    uint32_t *groups;
    int ngroups;
} client_t;

typedef struct log_item {
    cvx_async_job_t job;
    cvx_log_level_t level;
    char line[];
} log_item_t;

static struct {
    ctl_conf_t conf;
    uv_loop_t *loop;
    uv_pipe_t listener;
    int listening;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    gid_t admin_gid, ro_gid;
    int have_admin, have_ro;
    client_t *clients;
    unsigned nclients;
    cvx_async_queue_t logq;
    int logq_open, sink_added;
    atomic_int attached;
    atomic_long log_inflight;
    atomic_ulong log_lost;
    uint64_t accepted, refused, cut_off, commands;
} S;

void cvx__ctl_get_stats(cvx__ctl_stats_t *out)
{
    out->clients = S.nclients;
    out->attached = (unsigned)atomic_load(&S.attached);
    out->accepted = S.accepted;
    out->refused = S.refused;
    out->cut_off = S.cut_off;
    out->commands = S.commands;
}

/* --- writing ------------------------------------------------------------------------------ */

typedef struct wreq {
    uv_write_t w;
    client_t *c;
    int is_log;
    size_t len;
    uint8_t data[];
} wreq_t;

static void client_close(client_t *c);
static void log_dropped_note(client_t *c);
static void cut_off(client_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A peer that half-closed (sent its requests, then shut its side) is closed once nothing is
 * pending and every reply has been written. */
static void close_if_finished(client_t *c)
{
    if (c->eof && !c->closing && c->pending == NULL &&
        uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) == 0)
        client_close(c);
}

static void on_write(uv_write_t *w, int status)
{
    wreq_t *r = (wreq_t *)w;
    client_t *c = r->c;
    free(r);
    if (status < 0) {
        client_close(c);
        return;
    }
    close_if_finished(c);
    if (c->log_dropped > 0 && !c->closing &&
        uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) < (size_t)S.conf.log_backlog / 2)
        log_dropped_note(c);
}

/* Queues one frame; 0 or CVX_E*.  Replies over max_output unread cut the client off. */
static int send_frame(client_t *c, uint8_t type, const void *prefix, size_t plen,
                      const void *payload, size_t len, int is_log)
{
    if (c->closing)
        return CVX_ECLOSED;
    size_t total = CVX__CTL_HDR + 1 + plen + len;
    wreq_t *r = malloc(sizeof(*r) + total);
    if (r == NULL)
        return CVX_ENOMEM;
    cvx__ctl_header(r->data, type, plen + len);
    if (plen)
        memcpy(r->data + CVX__CTL_HDR + 1, prefix, plen);
    if (len)
        memcpy(r->data + CVX__CTL_HDR + 1 + plen, payload, len);
    r->c = c;
    r->is_log = is_log;
    r->len = total;
    uv_buf_t buf = uv_buf_init((char *)r->data, (unsigned)total);
    int rc = uv_write(&r->w, (uv_stream_t *)&c->pipe, &buf, 1, on_write);
    if (rc != 0) {
        free(r);
        client_close(c);
        return CVX_EIO;
    }
    if (!is_log &&
        uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) > (size_t)S.conf.max_output) {
        cut_off(c, "not reading its replies: more than %lld bytes unsent", S.conf.max_output);
        return CVX_ECLOSED;
    }
    return 0;
}

/* Tells the client why it is being disconnected (best effort: never waits) and closes it. */
static void goodbye(client_t *c, const char *why)
{
    if (c->closing)
        return;
    size_t len = strlen(why);
    uint8_t hdr[CVX__CTL_HDR + 1];
    cvx__ctl_header(hdr, CVX__CTL_GOODBYE, len);
    uv_buf_t bufs[2] = {uv_buf_init((char *)hdr, sizeof(hdr)),
                        uv_buf_init((char *)why, (unsigned)len)};
    if (uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) == 0)
        uv_try_write((uv_stream_t *)&c->pipe, bufs, 2);
    client_close(c);
}

/* Cuts a misbehaving client off, saying why to it and to the log. */
static void cut_off(client_t *c, const char *fmt, ...)
{
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    S.cut_off++;
    cvx_warn("control: cut off client pid %d (user %s): %s", (int)c->peer.pid, c->peer.user, why);
    goodbye(c, why);
}

/* --- closing ------------------------------------------------------------------------------ */

static void client_free_if_done(client_t *c)
{
    if (c->handles > 0)
        return;
    cvx__ctl_dec_free(&c->dec);
    free(c->groups);
    free(c);
}

static void on_client_handle_closed(uv_handle_t *h)
{
    client_t *c = h->data;
    c->handles--;
    client_free_if_done(c);
}

static void client_close(client_t *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    for (client_t **p = &S.clients; *p != NULL; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            S.nclients--;
            break;
        }
    }
    if (c->pending != NULL) {
        cvx__cmd_detach(c->pending);
        c->pending = NULL;
    }
    if (c->attach_level >= 0) {
        atomic_fetch_sub(&S.attached, 1);
        c->attach_level = -1;
    }
    uv_close((uv_handle_t *)&c->timer, on_client_handle_closed);
    uv_close((uv_handle_t *)&c->pipe, on_client_handle_closed);
}

/* --- requests ----------------------------------------------------------------------------- */

static void process_frames(client_t *c);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void on_reply(void *arg, int status, const char *body, size_t len)
{
    client_t *c = arg;
    uint8_t st = (uint8_t)status;
    if (c->pending != NULL) {
        c->pending = NULL;
        send_frame(c, CVX__CTL_REPLY, &st, 1, body, len, 0);
        if (!c->closing) {
            if (!c->eof) /* reading stopped while it ran: see process_frames */
                uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
            process_frames(c);
            close_if_finished(c);
        }
        return;
    }
    send_frame(c, CVX__CTL_REPLY, &st, 1, body, len, 0);
}

static void do_attach(client_t *c, const char *level)
{
    uint8_t st = CVX__CTL_OK;
    char msg[256];
    if (strcmp(level, "off") == 0) {
        if (c->attach_level >= 0)
            atomic_fetch_sub(&S.attached, 1);
        c->attach_level = -1;
        snprintf(msg, sizeof(msg), "log stream stopped\n");
    } else {
        int l = cvx_log_level_from_name(level);
        if (l < 0) {
            st = CVX__CTL_USAGE;
            snprintf(msg, sizeof(msg),
                     "unknown log level '%s'; expected one of: error, warning, notice, info, "
                     "debug, trace, off\n",
                     level);
        } else {
            if (c->attach_level < 0)
                atomic_fetch_add(&S.attached, 1);
            c->attach_level = l;
            int cur = cvx_log_get_level();
            if (l > cur)
                snprintf(msg, sizeof(msg),
                         "showing the log at level %s; the daemon writes only %s and above "
                         "(change it with 'log level %s')\n",
                         cvx_log_level_name((cvx_log_level_t)l),
                         cvx_log_level_name((cvx_log_level_t)cur),
                         cvx_log_level_name((cvx_log_level_t)l));
            else
                snprintf(msg, sizeof(msg), "showing the log at level %s\n",
                         cvx_log_level_name((cvx_log_level_t)l));
        }
    }
    send_frame(c, CVX__CTL_REPLY, &st, 1, msg, strlen(msg), 0);
}

/* Handles one frame; returns 0, or -1 when the client was cut off. */
static int handle_frame(client_t *c, const cvx__ctl_frame_t *f)
{
    if (f->type != CVX__CTL_COMMAND && f->type != CVX__CTL_COMPLETE && f->type != CVX__CTL_ATTACH) {
        cut_off(c, "protocol error: unknown frame type 0x%02x", f->type);
        return -1;
    }
    const uint8_t *p = f->payload;
    size_t len = f->len;
    int flags = 0;
    if (f->type == CVX__CTL_COMMAND) {
        if (len == 0) {
            cut_off(c, "protocol error: command frame without flags");
            return -1;
        }
        flags = p[0];
        p++;
        len--;
    }
    if (memchr(p, '\0', len) != NULL) {
        cut_off(c, "protocol error: NUL byte in a request");
        return -1;
    }
    char *text = malloc(len + 1);
    if (text == NULL) {
        cut_off(c, "out of memory");
        return -1;
    }
    memcpy(text, p, len);
    text[len] = '\0';
    if (f->type == CVX__CTL_COMMAND) {
        S.commands++;
        cvx_loop_doing("control: running a command");
        cvx__cmd_run(text, flags & CVX__CTL_JSON, &c->peer, on_reply, c, &c->pending);
        cvx_loop_doing(NULL);
    } else if (f->type == CVX__CTL_COMPLETE) {
        char *m = cvx__cmd_complete(text);
        send_frame(c, CVX__CTL_MATCHES, NULL, 0, m ? m : "", m ? strlen(m) : 0, 0);
        free(m);
    } else {
        do_attach(c, text);
    }
    free(text);
    return c->closing ? -1 : 0;
}

static void on_frame_timeout(uv_timer_t *t)
{
    client_t *c = t->data;
    cut_off(c, "incomplete request: %zu bytes received, the rest not within %lld ms",
            cvx__ctl_dec_held(&c->dec), S.conf.frame_timeout_ms);
}

/* Runs the complete frames held, stopping while a command is pending. */
static void process_frames(client_t *c)
{
    while (!c->closing && c->pending == NULL) {
        cvx__ctl_frame_t f;
        int rc = cvx__ctl_dec_next(&c->dec, &f);
        if (rc == 0)
            break;
        if (rc < 0) {
            cut_off(c, "protocol error: %s", c->dec.error);
            return;
        }
        if (handle_frame(c, &f) != 0)
            return;
    }
    if (c->closing || c->eof)
        return;
    if (c->pending != NULL) {
        /* Stop reading until it finishes: the peer waits, nobody else does. */
        uv_read_stop((uv_stream_t *)&c->pipe);
        uv_timer_stop(&c->timer);
    } else if (cvx__ctl_dec_held(&c->dec) == 0) {
        uv_timer_stop(&c->timer);
    } else if (!uv_is_active((uv_handle_t *)&c->timer)) {
        uv_timer_start(&c->timer, on_frame_timeout, (uint64_t)S.conf.frame_timeout_ms, 0);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    static char rbuf[65536];
    (void)suggested;
    *buf = uv_buf_init(rbuf, sizeof(rbuf));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    client_t *c = s->data;
    if (n == UV_EOF) {
        /* Requests already received are answered (pipelined ones included) before closing. */
        c->eof = 1;
        uv_read_stop(s);
        uv_timer_stop(&c->timer);
        close_if_finished(c);
        return;
    }
    if (n < 0) {
        client_close(c); /* the peer left */
        return;
    }
    if (n == 0)
        return;
    int rc = cvx__ctl_dec_feed(&c->dec, buf->base, (size_t)n);
    if (rc == CVX_ELIMIT) {
        cut_off(c, "flooding: more than %zu bytes of requests waiting", c->dec.max_buffer);
        return;
    }
    if (rc != 0) {
        cut_off(c, "out of memory");
        return;
    }
    if (cvx__ctl_dec_complete(&c->dec) > (size_t)S.conf.max_pipeline) {
        cut_off(c, "flooding: more than %lld requests sent ahead of their replies",
                S.conf.max_pipeline);
        return;
    }
    process_frames(c);
}

/* --- connections -------------------------------------------------------------------------- */

static int in_groups(const client_t *c, gid_t gid)
{
    if (c->peer.gid == gid)
        return 1;
    for (int i = 0; i < c->ngroups; i++)
        if (c->groups[i] == gid)
            return 1;
    return 0;
}

/* Reads the peer's credentials and decides its access; 0, or -1 when unreadable. */
static int read_credentials(client_t *c)
{
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->pipe, &fd) != 0)
        return -1;
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
        return -1;
    c->peer.uid = cred.uid;
    c->peer.gid = cred.gid;
    c->peer.pid = cred.pid;
    snprintf(c->peer.user, sizeof(c->peer.user), "%u", (unsigned)cred.uid);
    socklen_t glen = 64 * sizeof(gid_t);
    for (int tries = 0; tries < 4; tries++) {
        uint32_t *g = realloc(c->groups, glen);
        if (g == NULL)
            return -1;
        c->groups = g;
        socklen_t l = glen;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, c->groups, &l) == 0) {
            c->ngroups = (int)(l / sizeof(gid_t));
            break;
        }
        if (errno != ERANGE)
            break; /* an old kernel: the primary group alone decides */
        glen = l > glen ? l : glen * 2;
    }
    if (cred.uid == 0) {
        c->peer.admin = 1;
        snprintf(c->peer.why, sizeof(c->peer.why), "root");
    } else if (cred.uid == geteuid()) {
        c->peer.admin = 1;
        snprintf(c->peer.why, sizeof(c->peer.why), "the daemon's own user");
    } else if (S.have_admin && in_groups(c, S.admin_gid)) {
        c->peer.admin = 1;
        snprintf(c->peer.why, sizeof(c->peer.why), "group %s", S.conf.admin_group);
    } else if (S.have_ro && in_groups(c, S.ro_gid)) {
        snprintf(c->peer.why, sizeof(c->peer.why), "group %s", S.conf.readonly_group);
    } else {
        c->refused = 1;
    }
    return 0;
}

/* Thread pool: the user name (NSS may block). */
static void lookup_work(uv_work_t *w)
{
    client_t *c = w->data;
    struct passwd pw, *res = NULL;
    char buf[4096];
    if (getpwuid_r(c->peer.uid, &pw, buf, sizeof(buf), &res) == 0 && res != NULL)
        snprintf(c->peer.user, sizeof(c->peer.user), "%s", pw.pw_name);
}

static void send_hello(client_t *c)
{
    char hello[512];
    int n =
        snprintf(hello, sizeof(hello),
                 "version=%s\nname=%s\nrole=%s\nuser=%s\naccess=%s\nwhy=%s\nlevel=%s\n",
                 cvx_daemon_version(), cvx_daemon_name(), cvx_daemon_role_name(cvx_daemon_role()),
                 c->peer.user, c->peer.admin ? "admin" : "read-only", c->peer.why,
                 cvx_log_level_name(cvx_log_get_level()));
    send_frame(c, CVX__CTL_HELLO, NULL, 0, hello, (size_t)n, 0);
}

static void lookup_done(uv_work_t *w, int status)
{
    (void)status;
    client_t *c = w->data;
    c->handles--;
    if (c->closing) {
        client_free_if_done(c);
        return;
    }
    if (c->refused) {
        char why[320];
        S.refused++;
        snprintf(why, sizeof(why),
                 "permission denied: user %s (uid %u) is neither root nor a member of the "
                 "admin group (%s) or the read-only group (%s)",
                 c->peer.user, (unsigned)c->peer.uid,
                 S.conf.admin_group && *S.conf.admin_group ? S.conf.admin_group : "none",
                 S.conf.readonly_group && *S.conf.readonly_group ? S.conf.readonly_group : "none");
        cvx_notice("control: refused user %s (uid %u, pid %d): not in %s or %s", c->peer.user,
                   (unsigned)c->peer.uid, (int)c->peer.pid,
                   S.conf.admin_group ? S.conf.admin_group : "",
                   S.conf.readonly_group ? S.conf.readonly_group : "");
        goodbye(c, why);
        return;
    }
    c->ready = 1;
    cvx_debug("control: user %s (uid %u, pid %d) connected with %s access (%s)", c->peer.user,
              (unsigned)c->peer.uid, (int)c->peer.pid, c->peer.admin ? "admin" : "read-only",
              c->peer.why);
    send_hello(c);
    if (!c->closing)
        uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read);
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0) {
        cvx_warn("control: accept failed: %s", uv_strerror(status));
        return;
    }
    client_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    uv_pipe_init(S.loop, &c->pipe, 0);
    uv_timer_init(S.loop, &c->timer);
    c->pipe.data = c->timer.data = c->work.data = c;
    c->handles = 2;
    c->attach_level = -1;
    cvx__ctl_dec_init(&c->dec, (size_t)S.conf.max_request, 65536 + (size_t)S.conf.max_request);
    c->next = S.clients;
    S.clients = c;
    S.nclients++;
    if (uv_accept(server, (uv_stream_t *)&c->pipe) != 0) {
        client_close(c);
        return;
    }
    S.accepted++;
    if (read_credentials(c) != 0) {
        cvx_warn("control: cannot read a client's credentials: %s", strerror(errno));
        goodbye(c, "cannot read your credentials");
        return;
    }
    if (S.nclients > (unsigned)S.conf.max_clients) {
        S.refused++;
        cvx_warn("control: refused pid %d (uid %u): already %lld clients (max_clients)",
                 (int)c->peer.pid, (unsigned)c->peer.uid, S.conf.max_clients);
        goodbye(c, "too many connections: the daemon serves at most max_clients at once");
        return;
    }
    c->handles++;
    if (uv_queue_work(S.loop, &c->work, lookup_work, lookup_done) != 0) {
        c->handles--;
        lookup_done(&c->work, 0);
    }
}

/* --- attach mode: the log stream ------------------------------------------------------------ */

static void log_dropped_note(client_t *c)
{
    char note[160];
    int n = snprintf(note, sizeof(note),
                     "notice: control: %llu log line%s not shown: the shell did not keep up",
                     (unsigned long long)c->log_dropped, c->log_dropped == 1 ? "" : "s");
    uint8_t lvl = CVX_LOG_NOTICE;
    c->log_dropped = 0;
    send_frame(c, CVX__CTL_LOG, &lvl, 1, note, (size_t)n, 1);
}

static void on_log_item(cvx_async_job_t *job)
{
    log_item_t *it = (log_item_t *)job;
    atomic_fetch_sub(&S.log_inflight, 1);
    size_t len = strlen(it->line);
    uint8_t lvl = (uint8_t)it->level;
    for (client_t *c = S.clients, *next; c != NULL; c = next) {
        next = c->next;
        if (c->attach_level < 0 || (int)it->level > c->attach_level)
            continue;
        if (uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) >= (size_t)S.conf.log_backlog) {
            c->log_dropped++;
            continue;
        }
        send_frame(c, CVX__CTL_LOG, &lvl, 1, it->line, len, 1);
    }
    free(it);
}

/* The logging thread: must not block; lines beyond LOG_QUEUE_MAX in flight are dropped. */
static void log_sink(void *arg, cvx_log_level_t level, const char *line)
{
    (void)arg;
    if (atomic_load(&S.attached) == 0)
        return;
    if (atomic_fetch_add(&S.log_inflight, 1) >= LOG_QUEUE_MAX) {
        atomic_fetch_sub(&S.log_inflight, 1);
        atomic_fetch_add(&S.log_lost, 1);
        return;
    }
    size_t len = strlen(line);
    log_item_t *it = malloc(sizeof(*it) + len + 1);
    if (it == NULL) {
        atomic_fetch_sub(&S.log_inflight, 1);
        return;
    }
    it->level = level;
    memcpy(it->line, line, len + 1);
    cvx_async_queue_post(&S.logq, &it->job, on_log_item);
}

/* --- start and stop ------------------------------------------------------------------------- */

static int resolve_group(const char *name, gid_t *gid, const char *what)
{
    if (name == NULL || name[0] == '\0')
        return 0;
    struct group gr, *res = NULL;
    char buf[16384];
    if (getgrnam_r(name, &gr, buf, sizeof(buf), &res) == 0 && res != NULL) {
        *gid = gr.gr_gid;
        return 1;
    }
    cvx_notice("control: the %s group '%s' does not exist; nobody is let in through it", what,
               name);
    return 0;
}

/* A socket file left by a daemon that died is removed; one a live daemon answers is not. */
static int clear_stale_socket(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return 0;
    if (!S_ISSOCK(st.st_mode)) {
        cvx_error("control: %s exists and is not a socket", path);
        return CVX_EEXIST;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        close(fd);
        cvx_error("control: another daemon is listening on %s", path);
        return CVX_EBUSY;
    }
    if (fd >= 0)
        close(fd);
    unlink(path);
    return 0;
}

static int ctl_start(uv_loop_t *loop)
{
    S.loop = loop;
    const cvx_general_conf_t *g = cvx_daemon_general();
    char path[4096];
    if (S.conf.socket != NULL && S.conf.socket[0] != '\0') {
        snprintf(path, sizeof(path), "%s", S.conf.socket);
    } else if (g->run_dir != NULL && g->run_dir[0] != '\0') {
        snprintf(path, sizeof(path), "%s/callvox.ctl", g->run_dir);
    } else {
        cvx_error("control: no socket path: set [control] socket or [general] run_dir");
        return CVX_EINVAL;
    }
    if (strlen(path) >= sizeof(S.path)) {
        cvx_error("control: the socket path %s is longer than %zu bytes", path, sizeof(S.path) - 1);
        return CVX_ERANGE;
    }
    memcpy(S.path, path, strlen(path) + 1);

    char audit[4096];
    if (S.conf.audit_log != NULL && S.conf.audit_log[0] != '\0')
        snprintf(audit, sizeof(audit), "%s", S.conf.audit_log);
    else if (g->data_dir != NULL && g->data_dir[0] != '\0')
        snprintf(audit, sizeof(audit), "%s/audit.log", g->data_dir);
    else {
        cvx_error("control: no audit log path: set [control] audit_log or [general] data_dir");
        return CVX_EINVAL;
    }
    int rc = cvx__audit_open(audit);
    if (rc != 0) {
        cvx_error("control: cannot open the audit log %s: %s", audit, cvx_strerror(rc));
        return rc;
    }
    S.have_admin = resolve_group(S.conf.admin_group, &S.admin_gid, "admin");
    S.have_ro = resolve_group(S.conf.readonly_group, &S.ro_gid, "read-only");

    rc = clear_stale_socket(S.path);
    if (rc != 0)
        goto fail_audit;
    uv_pipe_init(loop, &S.listener, 0);
    int r = uv_pipe_bind(&S.listener, S.path);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&S.listener, 64, on_connection);
    if (r != 0) {
        cvx_error("control: cannot listen on %s: %s", S.path, uv_strerror(r));
        uv_close((uv_handle_t *)&S.listener, NULL);
        rc = cvx_from_errno(-r);
        goto fail_audit;
    }
    S.listening = 1;
    /* Anyone may connect; the credential check decides (see the top of this file). */
    if (chmod(S.path, 0666) != 0)
        cvx_warn("control: cannot chmod %s: %s", S.path, strerror(errno));
    char dir[sizeof(S.path)];
    snprintf(dir, sizeof(dir), "%s", S.path);
    char *slash = strrchr(dir, '/');
    struct stat st;
    if (slash != NULL && slash != dir) {
        *slash = '\0';
        /* The run directory must be traversable by the groups: add o+x (not read). */
        if (g->run_dir != NULL && strcmp(dir, g->run_dir) == 0 && stat(dir, &st) == 0 &&
            !(st.st_mode & S_IXOTH))
            chmod(dir, (st.st_mode & 07777) | S_IXOTH);
    }
    rc = cvx_async_queue_init(loop, &S.logq);
    if (rc != 0)
        goto fail_listen;
    S.logq_open = 1;
    if (cvx_log_add_sink(log_sink, NULL) == 0)
        S.sink_added = 1;
    else
        cvx_warn("control: no room for another log sink; attach mode shows nothing");
    cvx_info("control: listening on %s (admin group %s, read-only group %s, audit log %s)", S.path,
             S.have_admin ? S.conf.admin_group : "none", S.have_ro ? S.conf.readonly_group : "none",
             audit);
    return 0;

fail_listen:
    uv_close((uv_handle_t *)&S.listener, NULL);
    S.listening = 0;
    unlink(S.path);
fail_audit:
    cvx__audit_close();
    return rc;
}

static void ctl_stop(void)
{
    cvx__core_cmds_stop();
    while (S.clients != NULL)
        goodbye(S.clients, "the daemon is stopping");
    if (S.sink_added)
        cvx_log_remove_sink(log_sink, NULL); /* waits for a sink call in progress */
    S.sink_added = 0;
    if (S.logq_open)
        cvx_async_queue_close(&S.logq, NULL);
    S.logq_open = 0;
    if (S.listening) {
        uv_close((uv_handle_t *)&S.listener, NULL);
        /* libuv unlinks a bound pipe's path when it closes it; ENOENT is that. */
        if (unlink(S.path) != 0 && errno != ENOENT)
            cvx_notice("control: cannot remove %s: %s", S.path, strerror(errno));
        S.listening = 0;
    }
    cvx__audit_close();
    unsigned long lost = atomic_load(&S.log_lost);
    if (lost > 0)
        cvx_notice("control: %lu log lines were not shown to attached shells (queue full)", lost);
}

static const cvx_daemon_hooks_t ctl_hooks = {"control socket", CVX_ROLE_ALL | CVX_ROLE_WITNESS,
                                             ctl_start, ctl_stop, NULL};

int cvx__ctl_setup(void)
{
    int rc = cvx_daemon_add_section(&control_section, &S.conf);
    if (rc == 0)
        rc = cvx_daemon_add_hooks(&ctl_hooks);
    if (rc == 0)
        rc = cvx__core_cmds_register();
    return rc;
}
