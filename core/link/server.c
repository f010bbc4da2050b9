/*
 * The system-server side of the link: accepts call servers, checks their certificate (TLS),
 * their protocol version and their hello, then serves their requests, takes their pushes and
 * status reports and pings them.  A peer that breaks the rules is refused with one log line
 * naming it and the reason; the others are not disturbed.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "cvx/daemon.h"
#include "cvx/error.h"
#include "cvx/log.h"
#include "link/link_impl.h"

#define MAX_HANDLERS 16
#define MAX_PEERS    1024 /* call servers remembered (up or down) for `show callservers` */
#define MAX_WAITING  64   /* connections at once that have not finished their hello */

typedef struct conn conn_t;

/* A call server known since start, by name. */
struct cvx_link_peer {
    cvx_link_peer_t *next;
    char name[128];
    char address[64];
    char version[32];
    char drivers[512];
    uint32_t ports, calls, spool, rtt_us;
    uint64_t since_ms;
    conn_t *conn; /* NULL while down */
};

struct cvx_link_req {
    cvx_link_req_t *next, *prev;
    conn_t *conn; /* NULL once the connection is gone */
    uint64_t id;
    char peer[128];
};

enum { CONN_TLS, CONN_HELLO, CONN_UP };

struct conn {
    conn_t *next, *prev;
    cvx_tls_t *tls; /* NULL once closed */
    cvx__link_rx_t rx;
    int state;
    uv_timer_t timer;
    uint64_t created_ms, last_rx_ms, next_ping_ms;
    uint64_t ping_id, ping_sent_us;
    cvx_link_peer_t *peer;
    cvx_link_req_t *reqs;
    char address[64];
    int dead; /* being dropped */
};

typedef struct handler {
    uint16_t service;
    void *fn;
    void *arg;
} handler_t;

static struct {
    uv_loop_t *loop;
    int running;
    uv_tcp_t listener;
    cvx_tls_ctx_t *ctx;
    uint64_t epoch;
    conn_t *conns;
    cvx_link_peer_t *peers;
    unsigned npeers;
    uint64_t turned_away, turned_away_logged_ms;
    handler_t methods[MAX_HANDLERS];
    handler_t pushes[MAX_HANDLERS];
    cvx_link_peer_fn peer_fns[8];
    void *peer_args[8];
    unsigned npeer_fns;
} S;

/* --- registrations ------------------------------------------------------------------------- */

static int set_handler(handler_t *tab, uint16_t service, void *fn, void *arg)
{
    handler_t *free_slot = NULL;
    for (int i = 0; i < MAX_HANDLERS; i++) {
        if (tab[i].fn != NULL && tab[i].service == service) {
            if (fn != NULL)
                return CVX_EEXIST;
            tab[i].fn = NULL;
            return 0;
        }
        if (tab[i].fn == NULL && free_slot == NULL)
            free_slot = &tab[i];
    }
    if (fn == NULL)
        return 0;
    if (free_slot == NULL)
        return CVX_ELIMIT;
    free_slot->service = service;
    free_slot->fn = fn;
    free_slot->arg = arg;
    return 0;
}

static handler_t *find_handler(handler_t *tab, uint16_t service)
{
    for (int i = 0; i < MAX_HANDLERS; i++)
        if (tab[i].fn != NULL && tab[i].service == service)
            return &tab[i];
    return NULL;
}

int cvx_link_serve(uint16_t service, cvx_link_method_fn fn, void *arg)
{
    return set_handler(S.methods, service, (void *)fn, arg);
}

int cvx_link_server_on_push(uint16_t service, cvx_link_push_fn fn, void *arg)
{
    return set_handler(S.pushes, service, (void *)fn, arg);
}

void cvx_link_server_on_peer(cvx_link_peer_fn fn, void *arg)
{
    for (unsigned i = 0; i < S.npeer_fns; i++)
        if (S.peer_fns[i] == fn && S.peer_args[i] == arg)
            return;
    if (S.npeer_fns < 8) {
        S.peer_fns[S.npeer_fns] = fn;
        S.peer_args[S.npeer_fns++] = arg;
    }
}

void cvx_link_server_off_peer(cvx_link_peer_fn fn, void *arg)
{
    for (unsigned i = 0; i < S.npeer_fns; i++)
        if (S.peer_fns[i] == fn && S.peer_args[i] == arg) {
            S.npeer_fns--;
            memmove(&S.peer_fns[i], &S.peer_fns[i + 1], (S.npeer_fns - i) * sizeof(S.peer_fns[0]));
            memmove(&S.peer_args[i], &S.peer_args[i + 1],
                    (S.npeer_fns - i) * sizeof(S.peer_args[0]));
            return;
        }
}

uint64_t cvx_link_server_epoch(void)
{
    return S.running ? S.epoch : 0;
}

static void tell_peer_state(const char *name, int up)
{
    /* A copy of the list: a callback may remove itself. */
    cvx_link_peer_fn fns[8];
    void *args[8];
    unsigned n = S.npeer_fns;
    memcpy(fns, S.peer_fns, n * sizeof(fns[0]));
    memcpy(args, S.peer_args, n * sizeof(args[0]));
    for (unsigned i = 0; i < n; i++)
        fns[i](args[i], name, up);
}

/* --- connections --------------------------------------------------------------------------- */

static void on_timer_closed(uv_handle_t *h)
{
    conn_t *c = h->data;
    cvx__link_rx_release(&c->rx);
    free(c);
}

/* Ends a connection: its requests lose their peer, its call server goes down. */
static void conn_drop(conn_t *c)
{
    if (c->dead)
        return;
    c->dead = 1;
    if (c->tls != NULL) {
        cvx_tls_close(c->tls);
        c->tls = NULL;
    }
    for (cvx_link_req_t *r = c->reqs; r != NULL; r = r->next)
        r->conn = NULL;
    c->reqs = NULL;
    if (c->next != NULL)
        c->next->prev = c->prev;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        S.conns = c->next;
    cvx_link_peer_t *p = c->peer;
    if (p != NULL && p->conn == c) {
        p->conn = NULL;
        p->since_ms = cvx__link_wall_ms();
        tell_peer_state(p->name, 0);
    }
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

/* The peer's name for a log line: its certificate's, else its address only. */
static const char *conn_label(const conn_t *c, char *buf, size_t size)
{
    const char *n = c->tls != NULL ? cvx_tls_peer_name(c->tls) : "";
    if (c->peer != NULL)
        n = c->peer->name;
    if (n[0] != '\0')
        snprintf(buf, size, "%s (%s)", n, c->address);
    else
        snprintf(buf, size, "%s", c->address);
    return buf;
}

/* Refuses or drops a peer with one line. */
static void conn_refuse(conn_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void conn_refuse(conn_t *c, const char *fmt, ...)
{
    char why[256], label[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    conn_label(c, label, sizeof(label));
    if (c->state == CONN_UP)
        cvx_warn("link: call server %s dropped: %s", label, why);
    else
        cvx_warn("link: refused call server %s: %s", label, why);
    conn_drop(c);
}

static int send_frame(conn_t *c, Cvxlink__Frame__Type type, uint64_t id, uint32_t method,
                      int32_t status, const void *body, size_t len)
{
    if (c->tls == NULL || c->dead)
        return CVX_EUNAVAIL;
    if (cvx_tls_write_queue(c->tls) > CVX__LINK_QUEUE_MAX) {
        conn_refuse(c, "it does not read (%zu bytes waiting to be sent)",
                    cvx_tls_write_queue(c->tls));
        return CVX_EUNAVAIL;
    }
    return cvx__link_send(c->tls, type, id, method, status, body, len);
}

static cvx_link_peer_t *peer_get(const char *name)
{
    for (cvx_link_peer_t *p = S.peers; p != NULL; p = p->next)
        if (strcmp(p->name, name) == 0)
            return p;
    if (S.npeers >= MAX_PEERS) {
        /* Forget the oldest call server that is down. */
        cvx_link_peer_t **pp, **old = NULL;
        for (pp = &S.peers; *pp != NULL; pp = &(*pp)->next)
            if ((*pp)->conn == NULL)
                old = pp;
        if (old == NULL)
            return NULL;
        cvx_link_peer_t *gone = *old;
        *old = gone->next;
        free(gone);
        S.npeers--;
    }
    cvx_link_peer_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    snprintf(p->name, sizeof(p->name), "%s", name);
    cvx_link_peer_t **tail = &S.peers;
    while (*tail != NULL)
        tail = &(*tail)->next;
    *tail = p; /* `show callservers` lists them in the order they first came */
    S.npeers++;
    return p;
}

static void on_hello(conn_t *c, const Cvxlink__Frame *f)
{
    Cvxlink__Hello *h = cvxlink__hello__unpack(NULL, f->body.len, f->body.data);
    if (h == NULL) {
        conn_refuse(c, "malformed hello");
        return;
    }
    const char *cn = cvx_tls_peer_name(c->tls);
    if (cn[0] == '\0' || strlen(cn) >= sizeof(((cvx_link_peer_t *)0)->name)) {
        conn_refuse(c, "the certificate's common name is %s", cn[0] == '\0' ? "empty" : "too long");
        cvxlink__hello__free_unpacked(h, NULL);
        return;
    }
    if (strcmp(h->name, cn) != 0) {
        conn_refuse(c, "hello names '%s', the certificate '%s'", h->name, cn);
        cvxlink__hello__free_unpacked(h, NULL);
        return;
    }
    cvx_link_peer_t *p = peer_get(cn);
    if (p == NULL) {
        conn_refuse(c, "too many call servers");
        cvxlink__hello__free_unpacked(h, NULL);
        return;
    }
    if (p->conn != NULL) {
        /* The same call server again (it restarted before we noticed): the new one wins. */
        char label[256];
        cvx_notice("link: call server %s connected again from %s; the old connection is closed",
                   conn_label(p->conn, label, sizeof(label)), c->address);
        conn_drop(p->conn);
    }
    c->peer = p;
    p->conn = c;
    snprintf(p->address, sizeof(p->address), "%s", c->address);
    snprintf(p->version, sizeof(p->version), "%s", h->version);
    p->drivers[0] = '\0';
    size_t off = 0;
    for (size_t i = 0; i < h->n_drivers && off < sizeof(p->drivers); i++)
        off += (size_t)snprintf(p->drivers + off, sizeof(p->drivers) - off, "%s%s", i ? " " : "",
                                h->drivers[i]);
    p->ports = h->ports;
    p->calls = p->spool = p->rtt_us = 0;
    p->since_ms = cvx__link_wall_ms();
    cvxlink__hello__free_unpacked(h, NULL);

    Cvxlink__HelloAck ack = CVXLINK__HELLO_ACK__INIT;
    ack.name = (char *)cvx__link_my_name();
    ack.version = (char *)cvx_daemon_version();
    ack.server_epoch = S.epoch;
    uint8_t buf[512];
    size_t n = cvxlink__hello_ack__get_packed_size(&ack);
    if (n > sizeof(buf)) {
        conn_refuse(c, "hello-ack too large");
        return;
    }
    cvxlink__hello_ack__pack(&ack, buf);
    c->state = CONN_UP;
    if (send_frame(c, CVXLINK__FRAME__TYPE__HELLO_ACK, 0, 0, 0, buf, n) != 0) {
        conn_refuse(c, "cannot send the hello-ack");
        return;
    }
    cvx_notice("link: call server %s up from %s: callvoxd %s, drivers %s, %u ports", p->name,
               p->address, p->version, p->drivers[0] ? p->drivers : "none", p->ports);
    tell_peer_state(p->name, 1);
}

static void on_request(conn_t *c, const Cvxlink__Frame *f)
{
    handler_t *h = find_handler(S.methods, (uint16_t)(f->method >> 16));
    if (h == NULL) {
        send_frame(c, CVXLINK__FRAME__TYPE__REPLY, f->id, f->method, CVX_ENOTSUP, NULL, 0);
        return;
    }
    cvx_link_req_t *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        send_frame(c, CVXLINK__FRAME__TYPE__REPLY, f->id, f->method, CVX_ENOMEM, NULL, 0);
        return;
    }
    r->conn = c;
    r->id = f->id;
    snprintf(r->peer, sizeof(r->peer), "%s", c->peer->name);
    r->next = c->reqs;
    if (c->reqs != NULL)
        c->reqs->prev = r;
    c->reqs = r;
    ((cvx_link_method_fn)h->fn)(h->arg, r, f->method, f->body.data, f->body.len);
}

static void on_status(conn_t *c, const Cvxlink__Frame *f)
{
    Cvxlink__Status *st = cvxlink__status__unpack(NULL, f->body.len, f->body.data);
    if (st == NULL) {
        conn_refuse(c, "malformed status report");
        return;
    }
    c->peer->calls = st->calls;
    c->peer->spool = st->spool;
    cvxlink__status__free_unpacked(st, NULL);
}

/* One frame from a call server. */
static int on_frame(void *arg, const uint8_t *data, size_t len)
{
    conn_t *c = arg;
    Cvxlink__Frame *f = cvxlink__frame__unpack(NULL, len, data);
    if (f == NULL) {
        conn_refuse(c, "malformed frame (%zu bytes)", len);
        return CVX_EPROTO;
    }
    if (f->version != CVX_LINK_VERSION) {
        conn_refuse(c, "protocol version %u, this server speaks version %d", f->version,
                    CVX_LINK_VERSION);
        cvxlink__frame__free_unpacked(f, NULL);
        return CVX_EPROTO;
    }
    c->last_rx_ms = uv_now(S.loop);
    if (c->state != CONN_UP) {
        if (f->type == CVXLINK__FRAME__TYPE__HELLO)
            on_hello(c, f);
        else
            conn_refuse(c, "expected a hello, got a %s frame", cvx__link_type_name(f->type));
    } else {
        switch (f->type) {
        case CVXLINK__FRAME__TYPE__REQUEST:
            on_request(c, f);
            break;
        case CVXLINK__FRAME__TYPE__PUSH: {
            handler_t *h = find_handler(S.pushes, (uint16_t)(f->method >> 16));
            if (h != NULL)
                ((cvx_link_push_fn)h->fn)(h->arg, c->peer->name, f->method, f->body.data,
                                          f->body.len);
            else
                cvx_debug("link: push %08x from %s: no handler", f->method, c->peer->name);
            break;
        }
        case CVXLINK__FRAME__TYPE__STATUS:
            on_status(c, f);
            break;
        case CVXLINK__FRAME__TYPE__PING:
            send_frame(c, CVXLINK__FRAME__TYPE__PONG, f->id, 0, 0, NULL, 0);
            break;
        case CVXLINK__FRAME__TYPE__PONG:
            if (f->id == c->ping_id && c->ping_sent_us != 0) {
                c->peer->rtt_us = (uint32_t)(cvx__link_mono_us() - c->ping_sent_us);
                c->ping_sent_us = 0;
            }
            break;
        default:
            conn_refuse(c, "unexpected %s frame", cvx__link_type_name(f->type));
            break;
        }
    }
    cvxlink__frame__free_unpacked(f, NULL);
    return c->dead ? CVX_ECLOSED : 0;
}

static void on_tls_open(cvx_tls_t *t, void *arg)
{
    conn_t *c = arg;
    (void)t;
    c->state = CONN_HELLO;
}

static void on_tls_data(cvx_tls_t *t, void *arg, const uint8_t *data, size_t len)
{
    conn_t *c = arg;
    (void)t;
    uint32_t bad = 0;
    int rc = cvx__link_rx_feed(&c->rx, data, len, on_frame, c, &bad);
    if (rc == CVX_EPROTO && !c->dead)
        conn_refuse(c, "oversized frame (%u bytes, at most %d)", bad, CVX__LINK_FRAME_MAX);
    else if (rc != 0 && !c->dead)
        conn_refuse(c, "%s", cvx_strerror(rc));
}

static void on_tls_close(cvx_tls_t *t, void *arg, int err, const char *why)
{
    conn_t *c = arg;
    (void)t;
    (void)err;
    c->tls = NULL; /* the stream frees itself */
    if (c->state == CONN_UP) {
        char label[256];
        cvx_notice("link: call server %s down: %s", conn_label(c, label, sizeof(label)), why);
        conn_drop(c);
    } else {
        conn_refuse(c, "%s", why);
    }
}

static const cvx_tls_callbacks_t tls_cbs = {on_tls_open, on_tls_data, on_tls_close};

static void on_conn_timer(uv_timer_t *timer)
{
    conn_t *c = timer->data;
    uint64_t now = uv_now(S.loop);
    const cvx__link_conf_t *cf = &cvx__link_conf;
    if (c->state != CONN_UP) {
        if (now - c->created_ms >= (uint64_t)cf->hello_timeout_ms)
            conn_refuse(c, "no %s within %lld ms", c->state == CONN_TLS ? "TLS handshake" : "hello",
                        cf->hello_timeout_ms);
        return;
    }
    if (now - c->last_rx_ms >= (uint64_t)cf->timeout_ms) {
        conn_refuse(c, "nothing received for %lld ms", cf->timeout_ms);
        return;
    }
    if (now >= c->next_ping_ms) {
        c->next_ping_ms = now + (uint64_t)cf->heartbeat_ms;
        c->ping_id++;
        c->ping_sent_us = cvx__link_mono_us();
        send_frame(c, CVXLINK__FRAME__TYPE__PING, c->ping_id, 0, 0, NULL, 0);
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0) {
        cvx_warn("link: accepting a connection: %s", uv_strerror(status));
        return;
    }
    conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    int rc = cvx_tls_accept(S.ctx, server, &tls_cbs, c, &c->tls);
    if (rc != 0) {
        cvx_warn("link: accepting a connection: %s", cvx_strerror(rc));
        free(c);
        return;
    }
    snprintf(c->address, sizeof(c->address), "%s", cvx_tls_peer_address(c->tls));
    /* Connections that have not said hello yet are limited, so that a flood of them cannot
     * use up descriptors and memory; one line per 10 s says how many were turned away. */
    unsigned waiting = 0;
    for (conn_t *o = S.conns; o != NULL; o = o->next)
        waiting += o->state != CONN_UP;
    if (waiting >= MAX_WAITING) {
        uint64_t now = uv_now(S.loop);
        S.turned_away++;
        if (now - S.turned_away_logged_ms >= 10000 || S.turned_away_logged_ms == 0) {
            cvx_warn("link: refused the connection from %s: %u connections are already "
                     "waiting for their handshake or hello (%llu turned away so far)",
                     c->address, waiting, (unsigned long long)S.turned_away);
            S.turned_away_logged_ms = now;
        }
        cvx_tls_close(c->tls);
        free(c);
        return;
    }
    c->created_ms = c->last_rx_ms = uv_now(S.loop);
    c->next = S.conns;
    if (S.conns != NULL)
        S.conns->prev = c;
    S.conns = c;
    uv_timer_init(S.loop, &c->timer);
    c->timer.data = c;
    uint64_t tick = (uint64_t)cvx__link_conf.heartbeat_ms < 100 ? 50 : 100;
    uv_timer_start(&c->timer, on_conn_timer, tick, tick);
    cvx_debug("link: connection from %s", c->address);
}

/* --- start and stop -------------------------------------------------------------------------- */

int cvx__link_server_start(uv_loop_t *loop)
{
    const cvx__link_conf_t *cf = &cvx__link_conf;
    char err[512];
    int rc = cvx_tls_ctx_create(&S.ctx, 1, cf->ca, cf->cert, cf->key, err, sizeof(err));
    if (rc != 0) {
        cvx_error("link: %s", err);
        return rc;
    }
    struct sockaddr_storage ss;
    cvx__link_parse_addr(cf->listen, &ss);
    S.loop = loop;
    uv_tcp_init(loop, &S.listener);
    int urc = uv_tcp_bind(&S.listener, (struct sockaddr *)&ss, 0);
    if (urc == 0)
        urc = uv_listen((uv_stream_t *)&S.listener, 128, on_connection);
    if (urc != 0) {
        cvx_error("link: cannot listen on %s: %s", cf->listen, uv_strerror(urc));
        uv_close((uv_handle_t *)&S.listener, NULL);
        cvx_tls_ctx_destroy(S.ctx);
        S.ctx = NULL;
        return cvx_from_errno(-urc);
    }
    if (getrandom(&S.epoch, sizeof(S.epoch), GRND_NONBLOCK) != sizeof(S.epoch))
        S.epoch = cvx__link_wall_ms() ^ ((uint64_t)getpid() << 40);
    if (S.epoch == 0)
        S.epoch = 1;
    S.running = 1;
    cvx_notice("link: listening for call servers on %s as %s (epoch %016llx)", cf->listen,
               cvx__link_my_name(), (unsigned long long)S.epoch);
    return 0;
}

void cvx__link_server_stop(void)
{
    if (!S.running)
        return;
    S.running = 0;
    while (S.conns != NULL)
        conn_drop(S.conns);
    uv_close((uv_handle_t *)&S.listener, NULL);
    cvx_tls_ctx_destroy(S.ctx);
    S.ctx = NULL;
    while (S.peers != NULL) {
        cvx_link_peer_t *p = S.peers;
        S.peers = p->next;
        free(p);
    }
    S.npeers = 0;
}

int cvx__link_server_running(void)
{
    return S.running;
}

/* --- the service API --------------------------------------------------------------------- */

int cvx_link_reply(cvx_link_req_t *req, int status, const void *body, size_t len)
{
    int rc = 0;
    conn_t *c = req->conn;
    if (c != NULL) {
        /* Unlinked first: sending may drop the connection (a peer that does not read). */
        if (req->next != NULL)
            req->next->prev = req->prev;
        if (req->prev != NULL)
            req->prev->next = req->next;
        else
            c->reqs = req->next;
        rc = send_frame(c, CVXLINK__FRAME__TYPE__REPLY, req->id, 0, status, body, len);
        if (rc == CVX_ERANGE) /* the caller must still hear of its request */
            send_frame(c, CVXLINK__FRAME__TYPE__REPLY, req->id, 0, CVX_ERANGE, NULL, 0);
    }
    free(req);
    return rc == CVX_EUNAVAIL ? 0 : rc;
}

const char *cvx_link_req_peer(const cvx_link_req_t *req)
{
    return req->conn != NULL ? req->peer : "";
}

int cvx_link_push_to(const char *name, uint32_t method, const void *body, size_t len)
{
    if (!S.running)
        return CVX_EUNAVAIL;
    if (len > CVX_LINK_BODY_MAX)
        return CVX_ERANGE;
    int found = 0;
    for (conn_t *c = S.conns; c != NULL; c = c->next) {
        if (c->state != CONN_UP || (name != NULL && strcmp(c->peer->name, name) != 0))
            continue;
        found = 1;
        send_frame(c, CVXLINK__FRAME__TYPE__PUSH, 0, method, 0, body, len);
    }
    return found || name == NULL ? 0 : CVX_ENOTFOUND;
}

void cvx_link_foreach_peer(int (*fn)(void *arg, const cvx_link_peer_info_t *p), void *arg)
{
    for (cvx_link_peer_t *p = S.peers; p != NULL; p = p->next) {
        cvx_link_peer_info_t i = {p->name,    p->address, p->conn ? "up" : "down",
                                  p->version, p->drivers, p->ports,
                                  p->calls,   p->spool,   p->rtt_us,
                                  p->since_ms};
        if (fn(arg, &i))
            return;
    }
}
