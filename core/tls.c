/*
 * TLS 1.3 streams on the loop (cvx/tls.h): OpenSSL with two memory BIOs per stream.  Bytes
 * read from the socket are written into the read BIO, and whatever OpenSSL leaves in the
 * write BIO is handed to uv_write; so OpenSSL never touches the socket and never blocks.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "cvx/error.h"
#include "cvx/tls.h"

struct cvx_tls_ctx {
    SSL_CTX *ssl;
    int server;
};

struct cvx_tls {
    uv_tcp_t tcp;
    uv_prepare_t flusher; /* sends what cvx_tls_write() encrypted, once per loop iteration */
    int handles;          /* open handles; the stream is freed when the last one closed */
    uv_connect_t connect;
    SSL *ssl;
    BIO *rbio; /* socket -> OpenSSL */
    BIO *wbio; /* OpenSSL -> socket */
    cvx_tls_callbacks_t cbs;
    void *arg;
    size_t rbudget; /* bytes read in this loop iteration */
    int paused;     /* reading stopped until the next iteration (budget used up) */
    int open;       /* handshake done, peer verified */
    int closing;    /* no more callbacks */
    size_t queued;
    char peer_name[256];
    char address[64];
};

typedef struct write_req {
    uv_write_t req;
    cvx_tls_t *t;
    size_t len;
    char data[];
} write_req_t;

/* --- contexts --------------------------------------------------------------------------- */

/* The reason of the last OpenSSL error ("no such file", "key values mismatch"). */
static const char *ssl_error_text(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
    return r != NULL ? r : "unknown error";
}

int cvx_tls_ctx_create(cvx_tls_ctx_t **out, int server, const char *ca, const char *cert,
                       const char *key, char *err, size_t errlen)
{
    *out = NULL;
    cvx_tls_ctx_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return CVX_ENOMEM;
    c->server = server;
    ERR_clear_error();
    c->ssl = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (c->ssl == NULL) {
        snprintf(err, errlen, "cannot create a TLS context: %s", ssl_error_text());
        free(c);
        return CVX_ENOMEM;
    }
    SSL_CTX_set_min_proto_version(c->ssl, TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(c->ssl, TLS1_3_VERSION);
    /* No session tickets: every connection is a full handshake with both certificates. */
    SSL_CTX_set_num_tickets(c->ssl, 0);
    SSL_CTX_set_verify(c->ssl, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    const char *what = NULL, *file = NULL;
    if (SSL_CTX_use_certificate_chain_file(c->ssl, cert) != 1)
        what = "certificate", file = cert;
    else if (SSL_CTX_use_PrivateKey_file(c->ssl, key, SSL_FILETYPE_PEM) != 1)
        what = "private key", file = key;
    else if (SSL_CTX_check_private_key(c->ssl) != 1)
        what = "private key (does not match the certificate)", file = key;
    else if (SSL_CTX_load_verify_locations(c->ssl, ca, NULL) != 1)
        what = "CA certificate", file = ca;
    if (what == NULL && server) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);
        if (names == NULL)
            what = "CA certificate", file = ca;
        else
            SSL_CTX_set_client_CA_list(c->ssl, names);
    }
    if (what != NULL) {
        snprintf(err, errlen, "cannot use %s %s: %s", what, file, ssl_error_text());
        ERR_clear_error();
        cvx_tls_ctx_destroy(c);
        return CVX_EINVAL;
    }
    *out = c;
    return 0;
}

void cvx_tls_ctx_destroy(cvx_tls_ctx_t *ctx)
{
    if (ctx == NULL)
        return;
    SSL_CTX_free(ctx->ssl);
    free(ctx);
}

/* --- streams ------------------------------------------------------------------------------ */

void cvx_tls_format_addr(const struct sockaddr *addr, char *buf, size_t size)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)addr;
        uv_ip6_name(a, host, sizeof(host));
        snprintf(buf, size, "[%s]:%u", host, ntohs(a->sin6_port));
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)addr;
        uv_ip4_name(a, host, sizeof(host));
        snprintf(buf, size, "%s:%u", host, ntohs(a->sin_port));
    }
}

static void on_closed(uv_handle_t *h)
{
    cvx_tls_t *t = h->data;
    if (--t->handles > 0)
        return;
    SSL_free(t->ssl); /* frees both BIOs */
    free(t);
}

static void close_now(cvx_tls_t *t)
{
    if (!uv_is_closing((uv_handle_t *)&t->tcp)) {
        uv_close((uv_handle_t *)&t->flusher, on_closed);
        uv_close((uv_handle_t *)&t->tcp, on_closed);
    }
}

/* The stream ends by itself: one on_close, then the handle closes. */
static void fail(cvx_tls_t *t, int err, const char *why)
{
    if (t->closing)
        return;
    t->closing = 1;
    uv_read_stop((uv_stream_t *)&t->tcp);
    if (t->cbs.on_close != NULL)
        t->cbs.on_close(t, t->arg, err, why);
    close_now(t);
}

static void on_write(uv_write_t *req, int status)
{
    write_req_t *w = (write_req_t *)req;
    cvx_tls_t *t = w->t;
    t->queued -= w->len;
    free(w);
    if (status < 0 && status != UV_ECANCELED)
        fail(t, cvx_from_errno(-status), uv_strerror(status));
}

/* Sends what OpenSSL wrote into the write BIO. */
static int flush(cvx_tls_t *t)
{
    size_t n = BIO_ctrl_pending(t->wbio);
    if (n == 0 || uv_is_closing((uv_handle_t *)&t->tcp))
        return 0;
    write_req_t *w = malloc(sizeof(*w) + n);
    if (w == NULL)
        return CVX_ENOMEM;
    int got = BIO_read(t->wbio, w->data, (int)n);
    if (got <= 0) {
        free(w);
        return 0;
    }
    w->t = t;
    w->len = (size_t)got;
    uv_buf_t buf = uv_buf_init(w->data, (unsigned)got);
    int rc = uv_write(&w->req, (uv_stream_t *)&t->tcp, &buf, 1, on_write);
    if (rc < 0) {
        free(w);
        return cvx_from_errno(-rc);
    }
    t->queued += w->len;
    return 0;
}

/* Why the last OpenSSL call on t failed, for a log line. */
static void describe_ssl_failure(cvx_tls_t *t, int sslerr, char *buf, size_t size)
{
    long v = SSL_get_verify_result(t->ssl);
    unsigned long e = ERR_peek_last_error();
    if (v != X509_V_OK)
        snprintf(buf, size, "certificate verify failed: %s", X509_verify_cert_error_string(v));
    else if (e != 0)
        snprintf(buf, size, "TLS: %s", ssl_error_text());
    else if (sslerr == SSL_ERROR_SYSCALL || sslerr == SSL_ERROR_ZERO_RETURN)
        snprintf(buf, size, "connection closed by the peer%s",
                 t->open ? "" : " during the TLS handshake");
    else
        snprintf(buf, size, "TLS error %d", sslerr);
    ERR_clear_error();
}

static int finish_handshake(cvx_tls_t *t)
{
    X509 *peer = SSL_get1_peer_certificate(t->ssl);
    if (peer == NULL) {
        fail(t, CVX_EPERM, "no certificate");
        return CVX_EPERM;
    }
    t->peer_name[0] = '\0';
    X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, t->peer_name,
                              sizeof(t->peer_name));
    X509_free(peer);
    t->open = 1;
    if (t->cbs.on_open != NULL)
        t->cbs.on_open(t, t->arg);
    return t->closing ? CVX_ECLOSED : 0;
}

/* Drives the handshake and reads whatever can be decrypted. */
static void progress(cvx_tls_t *t)
{
    char why[256];
    if (!t->open) {
        ERR_clear_error();
        int r = SSL_do_handshake(t->ssl);
        int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(t->ssl, r);
        if (e != SSL_ERROR_NONE && e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
            describe_ssl_failure(t, e, why, sizeof(why));
            flush(t); /* the alert, so the peer learns why */
            fail(t, e == SSL_ERROR_SSL ? CVX_EPERM : CVX_ECLOSED, why);
            return;
        }
        flush(t);
        if (r != 1 || finish_handshake(t) != 0)
            return;
    }
    static uint8_t buf[64 * 1024];
    for (;;) {
        ERR_clear_error();
        int r = SSL_read(t->ssl, buf, sizeof(buf));
        if (r > 0) {
            if (t->cbs.on_data != NULL)
                t->cbs.on_data(t, t->arg, buf, (size_t)r);
            if (t->closing)
                return;
            continue;
        }
        int e = SSL_get_error(t->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            break;
        if (e == SSL_ERROR_ZERO_RETURN) {
            fail(t, 0, "closed by the peer");
            return;
        }
        describe_ssl_failure(t, e, why, sizeof(why));
        fail(t, CVX_EPROTO, why);
        return;
    }
    flush(t);
}

/* Reading is shared out: a stream reads at most READ_BUDGET bytes per loop iteration, so
 * that a peer sending a flood of small frames cannot hold the loop for long (each byte read
 * is decrypted and its frames handled in the same callback). */
#define READ_CHUNK  (16 * 1024)
#define READ_BUDGET (32 * 1024)

static void on_flush(uv_prepare_t *p);

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    static char rbuf[READ_CHUNK];
    *buf = uv_buf_init(rbuf, sizeof(rbuf));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    cvx_tls_t *t = s->data;
    if (n == 0 || t->closing)
        return;
    if (n < 0) {
        if (n == UV_EOF)
            fail(t, 0,
                 t->open ? "connection closed by the peer"
                         : "connection closed by the peer during the TLS handshake");
        else
            fail(t, cvx_from_errno((int)-n), uv_strerror((int)n));
        return;
    }
    if (BIO_write(t->rbio, buf->base, (int)n) != (int)n) {
        fail(t, CVX_ENOMEM, "out of memory");
        return;
    }
    progress(t);
    if (t->closing)
        return;
    t->rbudget += (size_t)n;
    if (t->rbudget >= READ_BUDGET) {
        uv_read_stop((uv_stream_t *)&t->tcp);
        t->paused = 1;
    }
    if (!uv_is_active((uv_handle_t *)&t->flusher))
        uv_prepare_start(&t->flusher, on_flush);
}

static cvx_tls_t *stream_new(cvx_tls_ctx_t *ctx, uv_loop_t *loop, const cvx_tls_callbacks_t *cbs,
                             void *arg)
{
    cvx_tls_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->ssl = SSL_new(ctx->ssl);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (t->ssl == NULL || t->rbio == NULL || t->wbio == NULL) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        SSL_free(t->ssl);
        free(t);
        return NULL;
    }
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    if (ctx->server)
        SSL_set_accept_state(t->ssl);
    else
        SSL_set_connect_state(t->ssl);
    t->cbs = *cbs;
    t->arg = arg;
    uv_tcp_init(loop, &t->tcp);
    t->tcp.data = t;
    uv_prepare_init(loop, &t->flusher);
    t->flusher.data = t;
    t->handles = 2;
    return t;
}

int cvx_tls_accept(cvx_tls_ctx_t *ctx, uv_stream_t *server, const cvx_tls_callbacks_t *cbs,
                   void *arg, cvx_tls_t **out)
{
    *out = NULL;
    cvx_tls_t *t = stream_new(ctx, server->loop, cbs, arg);
    if (t == NULL)
        return CVX_ENOMEM;
    int rc = uv_accept(server, (uv_stream_t *)&t->tcp);
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (rc == 0)
        rc = uv_tcp_getpeername(&t->tcp, (struct sockaddr *)&ss, &len);
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&t->tcp, on_alloc, on_read);
    if (rc < 0) {
        t->closing = 1;
        close_now(t);
        return cvx_from_errno(-rc);
    }
    uv_tcp_nodelay(&t->tcp, 1);
    cvx_tls_format_addr((struct sockaddr *)&ss, t->address, sizeof(t->address));
    *out = t;
    return 0;
}

static void on_connect(uv_connect_t *req, int status)
{
    cvx_tls_t *t = req->handle->data;
    if (t->closing)
        return;
    if (status < 0) {
        fail(t, cvx_from_errno(-status), uv_strerror(status));
        return;
    }
    uv_tcp_nodelay(&t->tcp, 1);
    int rc = uv_read_start((uv_stream_t *)&t->tcp, on_alloc, on_read);
    if (rc < 0) {
        fail(t, cvx_from_errno(-rc), uv_strerror(rc));
        return;
    }
    progress(t); /* sends the ClientHello */
}

int cvx_tls_connect(cvx_tls_ctx_t *ctx, uv_loop_t *loop, const struct sockaddr *addr,
                    const cvx_tls_callbacks_t *cbs, void *arg, cvx_tls_t **out)
{
    *out = NULL;
    cvx_tls_t *t = stream_new(ctx, loop, cbs, arg);
    if (t == NULL)
        return CVX_ENOMEM;
    cvx_tls_format_addr(addr, t->address, sizeof(t->address));
    int rc = uv_tcp_connect(&t->connect, &t->tcp, addr, on_connect);
    if (rc < 0) {
        t->closing = 1;
        close_now(t);
        return cvx_from_errno(-rc);
    }
    *out = t;
    return 0;
}

/* Once per loop iteration while needed, just before the loop waits: sends what was
 * written, and lets a stream whose read budget was used up read again. */
static void on_flush(uv_prepare_t *p)
{
    cvx_tls_t *t = p->data;
    uv_prepare_stop(p);
    int rc = flush(t);
    if (rc != 0) {
        fail(t, rc, cvx_strerror(rc));
        return;
    }
    t->rbudget = 0;
    if (t->paused && !t->closing) {
        t->paused = 0;
        rc = uv_read_start((uv_stream_t *)&t->tcp, on_alloc, on_read);
        if (rc < 0)
            fail(t, cvx_from_errno(-rc), uv_strerror(rc));
    }
}

/* Writes are encrypted at once but sent together just before the loop next waits (a
 * prepare handle): a burst of frames costs one write(2), not one each. */
int cvx_tls_write(cvx_tls_t *t, const void *data, size_t len)
{
    if (!t->open || t->closing)
        return CVX_ESTATE;
    if (len == 0)
        return 0;
    ERR_clear_error();
    int r = SSL_write(t->ssl, data, (int)len);
    if (r <= 0) {
        ERR_clear_error();
        return CVX_EIO;
    }
    if (!uv_is_active((uv_handle_t *)&t->flusher))
        uv_prepare_start(&t->flusher, on_flush);
    return 0;
}

size_t cvx_tls_write_queue(const cvx_tls_t *t)
{
    return t->queued + BIO_ctrl_pending(t->wbio);
}

void cvx_tls_close(cvx_tls_t *t)
{
    if (t == NULL || t->closing)
        return;
    t->closing = 1;
    uv_read_stop((uv_stream_t *)&t->tcp);
    if (t->open) {
        /* A close_notify after what was written.  uv_write() writes at once when nothing is
         * queued, and close(2) still sends what the kernel holds; a peer that does not read
         * loses the rest, and never keeps the handle open. */
        ERR_clear_error();
        SSL_shutdown(t->ssl);
        ERR_clear_error();
        flush(t);
    }
    close_now(t);
}

const char *cvx_tls_peer_name(const cvx_tls_t *t)
{
    return t->peer_name;
}

const char *cvx_tls_peer_address(const cvx_tls_t *t)
{
    return t->address;
}
