/*
 * Raft traffic over the cluster's TLS (cvx/raft.h, cvx_raft_tls_init).
 *
 * libraft's I/O backend asks its transport for a connected uv_stream_t per peer.  This
 * transport gives it one end of a UNIX socketpair and bridges the other end, on the loop, to
 * a TLS connection with the cluster's certificates (cvx/tls.h), so Raft is authenticated and
 * encrypted like the call-server link.
 *
 * On a new connection the connecting side first sends who it is: 8 bytes of Raft id
 * (big-endian), 2 bytes of address length and the address; the accepting side checks the
 * claim against the peer's certificate (check callback) before handing the stream to
 * libraft.  Streams handed to libraft are allocated with raft_malloc(): libraft closes and
 * frees them.
 */
#include <errno.h>
#include <raft.h>
#include <raft/uv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cvx/error.h"
#include "cvx/log.h"
#include "cvx/raft.h"
#include "cvx/tls.h"

#define HELLO_MAX (8 + 2 + 255)

typedef struct transport transport_t;

typedef struct bridge {
    transport_t *tr;
    struct bridge *next;
    cvx_tls_t *tls;
    uv_pipe_t pipe; /* our end of the socketpair */
    int pipe_open;
    int raft_fd;                 /* libraft's end until it is handed over */
    struct raft_uv_connect *req; /* client side, until answered */
    int accepting;
    unsigned char hello[HELLO_MAX];
    size_t hello_len;
    int bridged;
    int closing;
} bridge_t;

struct transport {
    uv_loop_t *loop;
    cvx_tls_ctx_t *server_ctx, *client_ctx;
    cvx_raft_peer_check_fn check;
    void *check_arg;
    raft_id id;
    char address[128];
    char listen_address[128]; /* where to bind, when not the advertised address */
    uv_tcp_t listener;
    int listening;
    raft_uv_accept_cb accept_cb;
    struct raft_uv_transport *t;
    bridge_t *bridges;
    int closing;
    raft_uv_transport_close_cb close_cb;
};

static int parse_address(const char *address, struct sockaddr_storage *ss)
{
    char host[128];
    const char *colon = strrchr(address, ':');
    if (colon == NULL || colon == address)
        return CVX_EINVAL;
    size_t hl = (size_t)(colon - address);
    const char *h = address;
    if (address[0] == '[' && colon[-1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl >= sizeof(host))
        return CVX_EINVAL;
    memcpy(host, h, hl);
    host[hl] = '\0';
    int port = atoi(colon + 1);
    if (port <= 0 || port > 65535)
        return CVX_EINVAL;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0)
        return 0;
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
        return 0;
    return CVX_EINVAL;
}

/* --- bridges ------------------------------------------------------------------------------ */

static void bridge_unlink(bridge_t *b)
{
    for (bridge_t **pp = &b->tr->bridges; *pp != NULL; pp = &(*pp)->next)
        if (*pp == b) {
            *pp = b->next;
            return;
        }
}

static void maybe_closed(transport_t *tr);

static void bridge_free(bridge_t *b)
{
    transport_t *tr = b->tr;
    if (b->raft_fd >= 0)
        close(b->raft_fd);
    bridge_unlink(b);
    free(b);
    maybe_closed(tr);
}

static void on_pipe_closed(uv_handle_t *h)
{
    bridge_free(h->data);
}

/* Ends a bridge: the TLS side, our pipe end (libraft then reads EOF), an unanswered
 * connect. */
static void bridge_close(bridge_t *b, int raft_status)
{
    if (b->closing)
        return;
    b->closing = 1;
    if (b->req != NULL) {
        struct raft_uv_connect *req = b->req;
        b->req = NULL;
        req->cb(req, NULL, raft_status);
    }
    if (b->tls != NULL) {
        cvx_tls_close(b->tls);
        b->tls = NULL;
    }
    if (b->pipe_open)
        uv_close((uv_handle_t *)&b->pipe, on_pipe_closed);
    else
        bridge_free(b);
}

typedef struct pipe_write {
    uv_write_t req;
    bridge_t *b;
    char data[];
} pipe_write_t;

static void on_pipe_written(uv_write_t *req, int status)
{
    pipe_write_t *w = (pipe_write_t *)req;
    if (status != 0 && status != UV_ECANCELED)
        bridge_close(w->b, RAFT_NOCONNECTION);
    free(w);
}

/* TLS -> libraft. */
static void to_raft(bridge_t *b, const uint8_t *data, size_t len)
{
    if (len == 0 || b->closing)
        return;
    pipe_write_t *w = malloc(sizeof(*w) + len);
    if (w == NULL) {
        bridge_close(b, RAFT_NOMEM);
        return;
    }
    memcpy(w->data, data, len);
    w->b = b;
    uv_buf_t buf = uv_buf_init(w->data, (unsigned)len);
    if (uv_write(&w->req, (uv_stream_t *)&b->pipe, &buf, 1, on_pipe_written) != 0) {
        free(w);
        bridge_close(b, RAFT_NOCONNECTION);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    buf->base = malloc(suggested);
    buf->len = buf->base != NULL ? suggested : 0;
}

/* libraft -> TLS. */
static void on_pipe_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    bridge_t *b = s->data;
    if (n > 0 && b->tls != NULL && cvx_tls_write(b->tls, buf->base, (size_t)n) != 0)
        n = UV_EPIPE;
    free(buf->base);
    if (n < 0)
        bridge_close(b, RAFT_NOCONNECTION); /* libraft closed its end, or TLS failed */
}

/* Makes the socketpair; our end is watched, libraft's end is returned in a raft_malloc()ed
 * pipe. */
static uv_stream_t *bridge_start(bridge_t *b)
{
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0)
        return NULL;
    uv_pipe_t *raft_end = raft_malloc(sizeof(*raft_end));
    if (raft_end == NULL || uv_pipe_init(b->tr->loop, &b->pipe, 0) != 0) {
        raft_free(raft_end);
        close(fds[0]);
        close(fds[1]);
        return NULL;
    }
    b->pipe.data = b;
    b->pipe_open = 1;
    b->raft_fd = fds[1];
    if (uv_pipe_open(&b->pipe, fds[0]) != 0) {
        close(fds[0]);
        raft_free(raft_end);
        return NULL;
    }
    uv_pipe_init(b->tr->loop, raft_end, 0);
    if (uv_pipe_open(raft_end, fds[1]) != 0) {
        uv_close((uv_handle_t *)raft_end, (uv_close_cb)raft_free);
        return NULL;
    }
    b->raft_fd = -1; /* libraft's now */
    uv_read_start((uv_stream_t *)&b->pipe, on_alloc, on_pipe_read);
    b->bridged = 1;
    return (uv_stream_t *)raft_end;
}

/* --- the TLS side ------------------------------------------------------------------------ */

static void on_tls_open(cvx_tls_t *t, void *arg)
{
    bridge_t *b = arg;
    (void)t;
    if (b->accepting)
        return; /* wait for the peer's hello */
    transport_t *tr = b->tr;
    unsigned char hello[HELLO_MAX];
    size_t al = strlen(tr->address);
    for (int i = 0; i < 8; i++)
        hello[i] = (unsigned char)(tr->id >> (56 - 8 * i));
    hello[8] = (unsigned char)(al >> 8);
    hello[9] = (unsigned char)al;
    memcpy(hello + 10, tr->address, al);
    uv_stream_t *s = NULL;
    if (cvx_tls_write(b->tls, hello, 10 + al) == 0)
        s = bridge_start(b);
    if (s == NULL) {
        bridge_close(b, RAFT_NOCONNECTION);
        return;
    }
    struct raft_uv_connect *req = b->req;
    b->req = NULL;
    req->cb(req, s, 0);
}

/* The accepting side reads the hello, checks it and hands the stream to libraft. */
static void on_hello_data(bridge_t *b, const uint8_t *data, size_t len)
{
    size_t take = len;
    if (b->hello_len < 10) {
        size_t need = 10 - b->hello_len;
        take = len < need ? len : need;
    } else {
        size_t al = (size_t)b->hello[8] << 8 | b->hello[9];
        size_t need = 10 + al - b->hello_len;
        take = len < need ? len : need;
    }
    memcpy(b->hello + b->hello_len, data, take);
    b->hello_len += take;
    if (b->hello_len >= 10) {
        size_t al = (size_t)b->hello[8] << 8 | b->hello[9];
        if (al == 0 || al > 255) {
            cvx_warn("raft: %s sent a malformed hello; closed", cvx_tls_peer_address(b->tls));
            bridge_close(b, 0);
            return;
        }
        if (b->hello_len == 10 + al) {
            transport_t *tr = b->tr;
            raft_id id = 0;
            for (int i = 0; i < 8; i++)
                id = id << 8 | b->hello[i];
            char address[256];
            memcpy(address, b->hello + 10, al);
            address[al] = '\0';
            const char *name = cvx_tls_peer_name(b->tls);
            if (tr->check != NULL && !tr->check(tr->check_arg, id, name)) {
                cvx_warn("raft: %s (certificate %s) claims to be server %llu; refused",
                         cvx_tls_peer_address(b->tls), name, (unsigned long long)id);
                bridge_close(b, 0);
                return;
            }
            uv_stream_t *s = bridge_start(b);
            if (s == NULL) {
                bridge_close(b, 0);
                return;
            }
            tr->accept_cb(tr->t, id, address, s);
            if (len > take)
                to_raft(b, data + take, len - take);
            return;
        }
    }
    if (len > take)
        on_hello_data(b, data + take, len - take);
}

static void on_tls_data(cvx_tls_t *t, void *arg, const uint8_t *data, size_t len)
{
    bridge_t *b = arg;
    (void)t;
    if (b->bridged)
        to_raft(b, data, len);
    else if (b->accepting)
        on_hello_data(b, data, len);
}

static void on_tls_close(cvx_tls_t *t, void *arg, int err, const char *why)
{
    bridge_t *b = arg;
    (void)t;
    if (err != 0 && !b->tr->closing)
        cvx_info("raft: connection %s %s: %s", b->accepting ? "from" : "to",
                 b->tls != NULL ? cvx_tls_peer_address(b->tls) : "?", why);
    b->tls = NULL; /* gone by itself */
    bridge_close(b, RAFT_NOCONNECTION);
}

static const cvx_tls_callbacks_t TLS_CBS = {on_tls_open, on_tls_data, on_tls_close};

/* --- the transport's operations ----------------------------------------------------------- */

static int tr_init(struct raft_uv_transport *t, raft_id id, const char *address)
{
    transport_t *tr = t->impl;
    tr->id = id;
    snprintf(tr->address, sizeof(tr->address), "%s", address);
    return 0;
}

static void on_connection(uv_stream_t *server, int status)
{
    transport_t *tr = server->data;
    if (status != 0 || tr->closing)
        return;
    bridge_t *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return;
    b->tr = tr;
    b->raft_fd = -1;
    b->accepting = 1;
    if (cvx_tls_accept(tr->server_ctx, server, &TLS_CBS, b, &b->tls) != 0) {
        free(b);
        return;
    }
    b->next = tr->bridges;
    tr->bridges = b;
}

static int tr_listen(struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
    transport_t *tr = t->impl;
    struct sockaddr_storage ss;
    const char *bind_to = tr->listen_address[0] != '\0' ? tr->listen_address : tr->address;
    if (parse_address(bind_to, &ss) != 0) {
        snprintf(t->errmsg, sizeof(t->errmsg), "bad address %s", bind_to);
        return RAFT_INVALID;
    }
    tr->accept_cb = cb;
    uv_tcp_init(tr->loop, &tr->listener);
    tr->listener.data = tr;
    tr->listening = 1;
    int rc = uv_tcp_bind(&tr->listener, (struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&tr->listener, 64, on_connection);
    if (rc != 0) {
        snprintf(t->errmsg, sizeof(t->errmsg), "cannot listen on %s: %s", bind_to, uv_strerror(rc));
        return RAFT_IOERR;
    }
    return 0;
}

static int tr_connect(struct raft_uv_transport *t, struct raft_uv_connect *req, raft_id id,
                      const char *address, raft_uv_connect_cb cb)
{
    transport_t *tr = t->impl;
    (void)id;
    struct sockaddr_storage ss;
    if (parse_address(address, &ss) != 0)
        return RAFT_NOCONNECTION;
    bridge_t *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return RAFT_NOMEM;
    b->tr = tr;
    b->raft_fd = -1;
    req->cb = cb;
    b->req = req;
    if (cvx_tls_connect(tr->client_ctx, tr->loop, (struct sockaddr *)&ss, &TLS_CBS, b, &b->tls) !=
        0) {
        free(b);
        return RAFT_NOCONNECTION;
    }
    b->next = tr->bridges;
    tr->bridges = b;
    return 0;
}

static void maybe_closed(transport_t *tr)
{
    if (!tr->closing || tr->listening || tr->bridges != NULL || tr->close_cb == NULL)
        return;
    raft_uv_transport_close_cb cb = tr->close_cb;
    tr->close_cb = NULL;
    cb(tr->t);
}

static void on_listener_closed(uv_handle_t *h)
{
    transport_t *tr = h->data;
    tr->listening = 0;
    maybe_closed(tr);
}

static void tr_close(struct raft_uv_transport *t, raft_uv_transport_close_cb cb)
{
    transport_t *tr = t->impl;
    tr->closing = 1;
    tr->close_cb = cb;
    if (tr->listening)
        uv_close((uv_handle_t *)&tr->listener, on_listener_closed);
    for (bridge_t *b = tr->bridges, *next; b != NULL; b = next) {
        next = b->next;
        bridge_close(b, RAFT_CANCELED);
    }
    maybe_closed(tr);
}

int cvx_raft_tls_init(struct raft_uv_transport *t, uv_loop_t *loop, struct cvx_tls_ctx *server,
                      struct cvx_tls_ctx *client, cvx_raft_peer_check_fn check, void *check_arg)
{
    transport_t *tr = calloc(1, sizeof(*tr));
    if (tr == NULL)
        return CVX_ENOMEM;
    tr->loop = loop;
    tr->server_ctx = server;
    tr->client_ctx = client;
    tr->check = check;
    tr->check_arg = check_arg;
    tr->t = t;
    memset(t, 0, sizeof(*t));
    t->impl = tr;
    t->init = tr_init;
    t->listen = tr_listen;
    t->connect = tr_connect;
    t->close = tr_close;
    return 0;
}

void cvx_raft_tls_set_listen(struct raft_uv_transport *t, const char *address)
{
    transport_t *tr = t->impl;
    snprintf(tr->listen_address, sizeof(tr->listen_address), "%s", address ? address : "");
}

void cvx_raft_tls_free(struct raft_uv_transport *t)
{
    free(t->impl);
    t->impl = NULL;
}
