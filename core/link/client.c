/*
 * The call-server side of the link: connects to the system servers in the order configured,
 * says hello, sends requests and matches their replies, reports its status and pings; when
 * the link drops, every request waiting completes with CVX_EUNAVAIL and the connection is
 * tried again with a back-off.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netdb.h>

#include "cvx/chan.h"
#include "cvx/daemon.h"
#include "cvx/driver.h"
#include "cvx/error.h"
#include "cvx/log.h"
#include "link/link_impl.h"

#define MAX_SERVERS   8
#define MAX_HANDLERS  16
#define MAX_STATE_FNS 8

enum { C_DOWN, C_CONNECTING, C_HELLO, C_UP };
static const char *const state_names[] = {"down", "connecting", "handshake", "up"};

typedef struct pending {
    struct pending *next;
    uint64_t id;
    uint64_t deadline_ms;
    cvx_link_reply_fn cb;
    void *arg;
} pending_t;

typedef struct handler {
    uint16_t service;
    cvx_link_client_push_fn fn;
    void *arg;
} handler_t;

/* One system server of [link] servers: a numeric address, or a name resolved (off the loop,
 * uv_getaddrinfo) at each attempt. */
typedef struct srv {
    char text[128]; /* as configured */
    char host[128];
    char port[8];
    int numeric;
    struct sockaddr_storage ss;
} srv_t;

typedef struct gai {
    uv_getaddrinfo_t req;
    uint64_t gen;
} gai_t;

static struct {
    uv_loop_t *loop;
    int running;
    cvx_tls_ctx_t *ctx;
    srv_t srv[MAX_SERVERS];
    unsigned naddrs, idx;
    /* A name being resolved, or resolved: its addresses are tried in turn. */
    int resolving;
    uint64_t gen; /* bumped when an attempt is abandoned: a late resolution is ignored */
    struct addrinfo *ai, *ai_cur;
    cvx_tls_t *tls;
    int state;
    cvx__link_rx_t rx;
    uv_timer_t retry, tick, reqt;
    uint64_t backoff_ms, attempt_ms, last_rx_ms, next_ping_ms, next_status_ms;
    uint64_t ping_id, ping_sent_us;
    uint32_t rtt_us;
    uint64_t epoch, next_id;
    pending_t *head, *tail;
    uint32_t npending;
    uint64_t ups, since_ms;
    char server_name[128];
    char last_error[256];
    char last_logged[256]; /* the last "cannot reach" reason logged */
    uint32_t spool;
    handler_t pushes[MAX_HANDLERS];
    cvx_link_state_fn state_fns[MAX_STATE_FNS];
    void *state_args[MAX_STATE_FNS];
    unsigned nstate_fns;
} C;

/* --- registrations ------------------------------------------------------------------------- */

int cvx_link_client_on_push(uint16_t service, cvx_link_client_push_fn fn, void *arg)
{
    handler_t *free_slot = NULL;
    for (int i = 0; i < MAX_HANDLERS; i++) {
        if (C.pushes[i].fn != NULL && C.pushes[i].service == service) {
            if (fn != NULL)
                return CVX_EEXIST;
            C.pushes[i].fn = NULL;
            return 0;
        }
        if (C.pushes[i].fn == NULL && free_slot == NULL)
            free_slot = &C.pushes[i];
    }
    if (fn == NULL)
        return 0;
    if (free_slot == NULL)
        return CVX_ELIMIT;
    *free_slot = (handler_t){service, fn, arg};
    return 0;
}

void cvx_link_client_on_state(cvx_link_state_fn fn, void *arg)
{
    for (unsigned i = 0; i < C.nstate_fns; i++)
        if (C.state_fns[i] == fn && C.state_args[i] == arg)
            return;
    if (C.nstate_fns < MAX_STATE_FNS) {
        C.state_fns[C.nstate_fns] = fn;
        C.state_args[C.nstate_fns++] = arg;
    }
}

void cvx_link_client_off_state(cvx_link_state_fn fn, void *arg)
{
    for (unsigned i = 0; i < C.nstate_fns; i++)
        if (C.state_fns[i] == fn && C.state_args[i] == arg) {
            C.nstate_fns--;
            memmove(&C.state_fns[i], &C.state_fns[i + 1],
                    (C.nstate_fns - i) * sizeof(C.state_fns[0]));
            memmove(&C.state_args[i], &C.state_args[i + 1],
                    (C.nstate_fns - i) * sizeof(C.state_args[0]));
            return;
        }
}

/* Calls the state callbacks (a copy of the list: one may remove itself). */
static void tell_state(int up)
{
    cvx_link_state_fn fns[MAX_STATE_FNS];
    void *args[MAX_STATE_FNS];
    unsigned n = C.nstate_fns;
    memcpy(fns, C.state_fns, n * sizeof(fns[0]));
    memcpy(args, C.state_args, n * sizeof(args[0]));
    for (unsigned i = 0; i < n; i++)
        fns[i](args[i], up, C.epoch);
}

void cvx_link_client_set_spool_depth(uint32_t n)
{
    C.spool = n;
}

int cvx_link_up(void)
{
    return C.running && C.state == C_UP;
}

/* --- connection ---------------------------------------------------------------------------- */

static void set_state(int state)
{
    if (C.state != state)
        C.since_ms = cvx__link_wall_ms();
    C.state = state;
}

static void connect_next(void);

static void on_retry(uv_timer_t *t)
{
    (void)t;
    connect_next();
}

/* Completes every waiting request with status (the link is gone, or we stop). */
static void fail_pending(int status)
{
    pending_t *p = C.head;
    C.head = C.tail = NULL;
    C.npending = 0;
    uv_timer_stop(&C.reqt);
    while (p != NULL) {
        pending_t *next = p->next;
        p->cb(p->arg, status, NULL, 0);
        free(p);
        p = next;
    }
}

/* The connection ended (or an attempt failed): tell, clean up, schedule the next attempt. */
static void link_down(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void link_down(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(C.last_error, sizeof(C.last_error), fmt, ap);
    va_end(ap);
    int was_up = C.state == C_UP;
    if (C.tls != NULL) {
        cvx_tls_close(C.tls);
        C.tls = NULL;
    }
    cvx__link_rx_release(&C.rx);
    set_state(C_DOWN);
    if (C.resolving) {
        C.resolving = 0;
        C.gen++;
    }
    uint64_t delay;
    if (!was_up && C.ai_cur != NULL && C.ai_cur->ai_next != NULL) {
        /* The name has more addresses: the next one at once. */
        cvx_debug("link: cannot reach the system server %s at one of its addresses: %s",
                  C.srv[C.idx].text, C.last_error);
        C.ai_cur = C.ai_cur->ai_next;
        if (C.running)
            uv_timer_start(&C.retry, on_retry, 0, 0);
        return;
    }
    if (C.ai != NULL) {
        uv_freeaddrinfo(C.ai);
        C.ai = C.ai_cur = NULL;
    }
    if (was_up) {
        cvx_warn("link: lost the system server %s (%s): %s", C.server_name, C.srv[C.idx].text,
                 C.last_error);
        C.idx = 0;
        C.backoff_ms = (uint64_t)cvx__link_conf.reconnect_min_ms;
        delay = C.backoff_ms;
    } else {
        /* One line per new reason, not one per attempt while the server stays away. */
        if (strcmp(C.last_logged, C.last_error) != 0)
            cvx_warn("link: cannot reach the system server %s: %s (trying again)",
                     C.srv[C.idx].text, C.last_error);
        else
            cvx_debug("link: cannot reach the system server %s: %s", C.srv[C.idx].text,
                      C.last_error);
        snprintf(C.last_logged, sizeof(C.last_logged), "%s", C.last_error);
        C.idx = (C.idx + 1) % C.naddrs;
        if (C.idx == 0) {
            /* Every server failed once: wait longer each round. */
            delay = C.backoff_ms;
            C.backoff_ms *= 2;
            if (C.backoff_ms > (uint64_t)cvx__link_conf.reconnect_max_ms)
                C.backoff_ms = (uint64_t)cvx__link_conf.reconnect_max_ms;
        } else {
            delay = 0;
        }
    }
    if (C.running)
        uv_timer_start(&C.retry, on_retry, delay, 0);
    if (was_up) {
        fail_pending(CVX_EUNAVAIL);
        tell_state(0);
    }
}

static int send_frame(Cvxlink__Frame__Type type, uint64_t id, uint32_t method, const void *body,
                      size_t len)
{
    if (C.tls == NULL)
        return CVX_EUNAVAIL;
    if (cvx_tls_write_queue(C.tls) > CVX__LINK_QUEUE_MAX) {
        link_down("the system server does not read (%zu bytes waiting to be sent)",
                  cvx_tls_write_queue(C.tls));
        return CVX_EUNAVAIL;
    }
    return cvx__link_send(C.tls, type, id, method, 0, body, len);
}

static void send_status(void)
{
    Cvxlink__Status st = CVXLINK__STATUS__INIT;
    st.calls = cvx_chan_count();
    st.spool = C.spool;
    uint8_t buf[32];
    size_t n = cvxlink__status__pack(&st, buf);
    send_frame(CVXLINK__FRAME__TYPE__STATUS, 0, 0, buf, n);
}

static int add_driver(cvx_drv_inst_t *inst, void *arg)
{
    Cvxlink__Hello *h = arg;
    if (h->n_drivers < 64)
        h->drivers[h->n_drivers++] = (char *)cvx_drv_inst_name(inst);
    return 0;
}

static void on_tls_open(cvx_tls_t *t, void *arg)
{
    (void)arg;
    snprintf(C.server_name, sizeof(C.server_name), "%s", cvx_tls_peer_name(t));
    Cvxlink__Hello h = CVXLINK__HELLO__INIT;
    char *drivers[64];
    h.name = (char *)cvx__link_my_name();
    h.version = (char *)cvx_daemon_version();
    h.drivers = drivers;
    cvx_drv_inst_foreach(add_driver, &h);
    h.ports = (uint32_t)cvx__link_conf.ports;
    size_t n = cvxlink__hello__get_packed_size(&h);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL) {
        link_down("out of memory");
        return;
    }
    cvxlink__hello__pack(&h, buf);
    set_state(C_HELLO);
    int rc = send_frame(CVXLINK__FRAME__TYPE__HELLO, 0, 0, buf, n);
    free(buf);
    if (rc != 0)
        link_down("cannot send the hello: %s", cvx_strerror(rc));
}

static void on_hello_ack(const Cvxlink__Frame *f)
{
    Cvxlink__HelloAck *a = cvxlink__hello_ack__unpack(NULL, f->body.len, f->body.data);
    if (a == NULL) {
        link_down("malformed hello-ack");
        return;
    }
    C.epoch = a->server_epoch;
    cvx_notice("link: up to system server %s (%s), callvoxd %s, epoch %016llx", C.server_name,
               C.srv[C.idx].text, a->version, (unsigned long long)C.epoch);
    cvxlink__hello_ack__free_unpacked(a, NULL);
    set_state(C_UP);
    C.ups++;
    C.last_error[0] = '\0';
    C.last_logged[0] = '\0';
    C.backoff_ms = (uint64_t)cvx__link_conf.reconnect_min_ms;
    uint64_t now = uv_now(C.loop);
    C.next_ping_ms = now;
    C.next_status_ms = now + (uint64_t)cvx__link_conf.heartbeat_ms;
    send_status();
    tell_state(1);
}

static void on_reply(const Cvxlink__Frame *f)
{
    pending_t **pp = &C.head, *prev = NULL;
    while (*pp != NULL && (*pp)->id != f->id) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    pending_t *p = *pp;
    if (p == NULL) {
        cvx_debug("link: reply to request %llu, which is no longer waiting",
                  (unsigned long long)f->id);
        return;
    }
    *pp = p->next;
    if (C.tail == p)
        C.tail = prev;
    C.npending--;
    p->cb(p->arg, f->status, f->body.data, f->body.len);
    free(p);
}

static int on_frame(void *arg, const uint8_t *data, size_t len)
{
    (void)arg;
    Cvxlink__Frame *f = cvxlink__frame__unpack(NULL, len, data);
    if (f == NULL) {
        link_down("malformed frame (%zu bytes) from the system server", len);
        return CVX_EPROTO;
    }
    int rc = 0;
    if (f->version != CVX_LINK_VERSION) {
        link_down("the system server speaks protocol version %u, this server %d", f->version,
                  CVX_LINK_VERSION);
        rc = CVX_EPROTO;
        goto out;
    }
    C.last_rx_ms = uv_now(C.loop);
    if (C.state == C_HELLO) {
        if (f->type == CVXLINK__FRAME__TYPE__HELLO_ACK)
            on_hello_ack(f);
        else
            link_down("expected a hello-ack, got a %s frame", cvx__link_type_name(f->type));
        goto out;
    }
    switch (f->type) {
    case CVXLINK__FRAME__TYPE__REPLY:
        on_reply(f);
        break;
    case CVXLINK__FRAME__TYPE__PUSH: {
        uint16_t svc = (uint16_t)(f->method >> 16);
        for (int i = 0; i < MAX_HANDLERS; i++)
            if (C.pushes[i].fn != NULL && C.pushes[i].service == svc) {
                C.pushes[i].fn(C.pushes[i].arg, f->method, f->body.data, f->body.len);
                break;
            }
        break;
    }
    case CVXLINK__FRAME__TYPE__PING:
        send_frame(CVXLINK__FRAME__TYPE__PONG, f->id, 0, NULL, 0);
        break;
    case CVXLINK__FRAME__TYPE__PONG:
        if (f->id == C.ping_id && C.ping_sent_us != 0) {
            C.rtt_us = (uint32_t)(cvx__link_mono_us() - C.ping_sent_us);
            C.ping_sent_us = 0;
        }
        break;
    default:
        link_down("unexpected %s frame from the system server", cvx__link_type_name(f->type));
        break;
    }
out:
    cvxlink__frame__free_unpacked(f, NULL);
    if (rc == 0 && C.tls == NULL)
        rc = CVX_ECLOSED; /* dropped while handling it */
    return rc;
}

static void on_tls_data(cvx_tls_t *t, void *arg, const uint8_t *data, size_t len)
{
    (void)t;
    (void)arg;
    uint32_t bad = 0;
    int rc = cvx__link_rx_feed(&C.rx, data, len, on_frame, NULL, &bad);
    if (rc == CVX_EPROTO && C.tls != NULL)
        link_down("oversized frame (%u bytes) from the system server", bad);
    else if (rc != 0 && C.tls != NULL)
        link_down("%s", cvx_strerror(rc));
}

static void on_tls_close(cvx_tls_t *t, void *arg, int err, const char *why)
{
    (void)t;
    (void)arg;
    (void)err;
    C.tls = NULL;
    link_down("%s", why);
}

static const cvx_tls_callbacks_t tls_cbs = {on_tls_open, on_tls_data, on_tls_close};

static void connect_to(const struct sockaddr *addr)
{
    int rc = cvx_tls_connect(C.ctx, C.loop, addr, &tls_cbs, NULL, &C.tls);
    if (rc != 0)
        link_down("%s", cvx_strerror(rc));
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    gai_t *g = (gai_t *)req;
    int mine = g->gen == C.gen && C.running && C.resolving;
    free(g);
    if (!mine) {
        if (res != NULL)
            uv_freeaddrinfo(res);
        return;
    }
    C.resolving = 0;
    if (status < 0 || res == NULL) {
        link_down("cannot resolve %s: %s", C.srv[C.idx].host,
                  status < 0 ? uv_strerror(status) : "no address");
        return;
    }
    C.ai = C.ai_cur = res;
    connect_to(res->ai_addr);
}

static void connect_next(void)
{
    if (!C.running || C.tls != NULL || C.resolving)
        return;
    set_state(C_CONNECTING);
    C.attempt_ms = uv_now(C.loop);
    C.server_name[0] = '\0';
    const srv_t *s = &C.srv[C.idx];
    if (s->numeric) {
        connect_to((const struct sockaddr *)&s->ss);
        return;
    }
    if (C.ai_cur != NULL) {
        connect_to(C.ai_cur->ai_addr);
        return;
    }
    gai_t *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        link_down("out of memory");
        return;
    }
    g->gen = C.gen;
    struct addrinfo hints = {0};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = uv_getaddrinfo(C.loop, &g->req, on_resolved, s->host, s->port, &hints);
    if (rc < 0) {
        free(g);
        link_down("cannot resolve %s: %s", s->host, uv_strerror(rc));
        return;
    }
    C.resolving = 1;
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
    uint64_t now = uv_now(C.loop);
    const cvx__link_conf_t *cf = &cvx__link_conf;
    if (C.state == C_CONNECTING || C.state == C_HELLO) {
        if (now - C.attempt_ms >= (uint64_t)cf->hello_timeout_ms)
            link_down("no %s within %lld ms", C.state == C_CONNECTING ? "connection" : "hello-ack",
                      cf->hello_timeout_ms);
        return;
    }
    if (C.state != C_UP)
        return;
    if (now - C.last_rx_ms >= (uint64_t)cf->timeout_ms) {
        link_down("nothing received for %lld ms", cf->timeout_ms);
        return;
    }
    if (now >= C.next_ping_ms) {
        C.next_ping_ms = now + (uint64_t)cf->heartbeat_ms;
        C.ping_id++;
        C.ping_sent_us = cvx__link_mono_us();
        send_frame(CVXLINK__FRAME__TYPE__PING, C.ping_id, 0, NULL, 0);
    }
    if (now >= C.next_status_ms) {
        C.next_status_ms = now + (uint64_t)cf->heartbeat_ms;
        send_status();
    }
}

/* Requests are queued in the order sent, all with the same timeout: the head expires first. */
static void arm_request_timer(void);

static void on_request_timeout(uv_timer_t *t)
{
    (void)t;
    uint64_t now = uv_now(C.loop);
    while (C.head != NULL && C.head->deadline_ms <= now) {
        pending_t *p = C.head;
        C.head = p->next;
        if (C.head == NULL)
            C.tail = NULL;
        C.npending--;
        cvx_info("link: request %llu got no reply within %lld ms", (unsigned long long)p->id,
                 cvx__link_conf.request_timeout_ms);
        p->cb(p->arg, CVX_ETIMEOUT, NULL, 0);
        free(p);
    }
    arm_request_timer();
}

static void arm_request_timer(void)
{
    if (C.head == NULL) {
        uv_timer_stop(&C.reqt);
        return;
    }
    uint64_t now = uv_now(C.loop);
    uint64_t delay = C.head->deadline_ms > now ? C.head->deadline_ms - now : 0;
    uv_timer_start(&C.reqt, on_request_timeout, delay, 0);
}

/* --- start and stop -------------------------------------------------------------------------- */

/* "name:port" with a host name made of letters, digits, '.' and '-'. */
static int split_name(const char *tok, srv_t *sv)
{
    const char *colon = strrchr(tok, ':');
    if (colon == NULL || colon == tok || (size_t)(colon - tok) >= sizeof(sv->host))
        return CVX_EINVAL;
    for (const char *p = tok; p < colon; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '-'))
            return CVX_EINVAL;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || port <= 0 || port > 65535)
        return CVX_EINVAL;
    memcpy(sv->host, tok, (size_t)(colon - tok));
    sv->host[colon - tok] = '\0';
    snprintf(sv->port, sizeof(sv->port), "%ld", port);
    return 0;
}

int cvx__link_client_start(uv_loop_t *loop)
{
    const cvx__link_conf_t *cf = &cvx__link_conf;
    C.naddrs = 0;
    for (size_t i = 0; i < cf->servers.n; i++) {
        char *copy = strdup(cf->servers.v[i]), *save = NULL;
        if (copy == NULL)
            return CVX_ENOMEM;
        for (char *tok = strtok_r(copy, ", \t", &save); tok != NULL;
             tok = strtok_r(NULL, ", \t", &save)) {
            if (C.naddrs == MAX_SERVERS) {
                cvx_error("[link] servers: at most %d system servers", MAX_SERVERS);
                free(copy);
                return CVX_EINVAL;
            }
            srv_t *sv = &C.srv[C.naddrs];
            memset(sv, 0, sizeof(*sv));
            snprintf(sv->text, sizeof(sv->text), "%s", tok);
            if (cvx__link_parse_addr(tok, &sv->ss) == 0) {
                sv->numeric = 1;
            } else if (split_name(tok, sv) != 0) {
                cvx_error("[link] servers: '%s' is not host:port (a name, an IPv4 address or "
                          "[an IPv6 address], and a port)",
                          tok);
                free(copy);
                return CVX_EINVAL;
            }
            C.naddrs++;
        }
        free(copy);
    }
    if (C.naddrs == 0)
        return 0;
    char err[512];
    int rc = cvx_tls_ctx_create(&C.ctx, 0, cf->ca, cf->cert, cf->key, err, sizeof(err));
    if (rc != 0) {
        cvx_error("link: %s", err);
        return rc;
    }
    C.loop = loop;
    C.idx = 0;
    C.backoff_ms = (uint64_t)cf->reconnect_min_ms;
    C.next_id = 1;
    uv_timer_init(loop, &C.retry);
    uv_timer_init(loop, &C.tick);
    uv_timer_init(loop, &C.reqt);
    uint64_t tick = cf->heartbeat_ms < 100 ? 50 : 100;
    uv_timer_start(&C.tick, on_tick, tick, tick);
    C.running = 1;
    cvx_notice("link: call server %s, system servers %s%s", cvx__link_my_name(), C.srv[0].text,
               C.naddrs > 1 ? " and others" : "");
    connect_next();
    return 0;
}

void cvx__link_client_stop(void)
{
    if (!C.running)
        return;
    int was_up = C.state == C_UP;
    C.running = 0;
    C.resolving = 0;
    C.gen++; /* a resolution still running is freed when it ends */
    if (C.ai != NULL) {
        uv_freeaddrinfo(C.ai);
        C.ai = C.ai_cur = NULL;
    }
    if (C.tls != NULL) {
        cvx_tls_close(C.tls);
        C.tls = NULL;
    }
    cvx__link_rx_release(&C.rx);
    set_state(C_DOWN);
    fail_pending(CVX_EUNAVAIL);
    if (was_up)
        tell_state(0);
    uv_close((uv_handle_t *)&C.retry, NULL);
    uv_close((uv_handle_t *)&C.tick, NULL);
    uv_close((uv_handle_t *)&C.reqt, NULL);
    cvx_tls_ctx_destroy(C.ctx);
    C.ctx = NULL;
}

int cvx__link_client_running(void)
{
    return C.running;
}

void cvx__link_client_get_info(cvx__link_client_info_t *out)
{
    out->server = C.naddrs > 0 ? C.srv[C.idx].text : "";
    out->name = C.server_name;
    out->state = state_names[C.state];
    out->epoch = C.epoch;
    out->rtt_us = C.rtt_us;
    out->pending = C.npending;
    out->reconnects = C.ups > 0 ? C.ups - 1 : 0;
    out->since_ms = C.since_ms;
    out->last_error = C.last_error;
}

/* --- the service API --------------------------------------------------------------------- */

int cvx_link_call(uint32_t method, const void *body, size_t len, cvx_link_reply_fn cb, void *arg)
{
    if (!cvx_link_up())
        return CVX_EUNAVAIL;
    if (len > CVX_LINK_BODY_MAX)
        return CVX_ERANGE;
    pending_t *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return CVX_ENOMEM;
    p->id = C.next_id++;
    p->cb = cb;
    p->arg = arg;
    p->deadline_ms = uv_now(C.loop) + (uint64_t)cvx__link_conf.request_timeout_ms;
    int rc = send_frame(CVXLINK__FRAME__TYPE__REQUEST, p->id, method, body, len);
    if (rc != 0) {
        free(p);
        return rc;
    }
    if (C.tail != NULL)
        C.tail->next = p;
    else
        C.head = p;
    C.tail = p;
    C.npending++;
    if (C.head == p)
        arm_request_timer();
    return 0;
}

int cvx_link_push(uint32_t method, const void *body, size_t len)
{
    if (!cvx_link_up())
        return CVX_EUNAVAIL;
    if (len > CVX_LINK_BODY_MAX)
        return CVX_ERANGE;
    return send_frame(CVXLINK__FRAME__TYPE__PUSH, 0, method, body, len);
}
