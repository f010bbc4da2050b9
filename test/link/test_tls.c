/*
 * The TLS stream (core/tls.c) by itself, on one loop: a server and a client with
 * certificates made by tools/ca/callvox-ca (run by this test into a temporary directory).
 * Checks the mutual handshake and the names each side sees, 4 MB of data both ways in order
 * and intact, the refusals (no certificate, another CA) with their reasons, a clean close,
 * and the errors of a context with unusable files.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cvx/error.h"
#include "cvx/reactor.h"
#include "cvx/tls.h"

static char dir[256];

static char *path(const char *sub, const char *name, const char *ext)
{
    static char bufs[8][512];
    static int i;
    char *b = bufs[i++ % 8];
    snprintf(b, 512, "%s/%s/%s%s", dir, sub, name, ext);
    return b;
}

static int make_certs(void **state)
{
    (void)state;
    const char *build = getenv("CVX_BUILD");
    snprintf(dir, sizeof(dir), "/tmp/cvx-tls-XXXXXX");
    if (mkdtemp(dir) == NULL || build == NULL)
        return -1;
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "T=%s/bin/callvox-ca; $T init %s/ca && $T issue %s/ca srv && $T issue %s/ca cli && "
             "$T init %s/other && $T issue %s/other cli >/dev/null",
             build, dir, dir, dir, dir, dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int remove_certs(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* --- one side of a test connection ---------------------------------------------------- */

typedef struct side {
    cvx_tls_t *t;
    int opened, closed, close_err;
    char why[256];
    char peer[128];
    uint8_t *got;
    size_t ngot;
    size_t expect; /* close once this much arrived (0: never) */
    int echo;      /* send back what arrives */
} side_t;

typedef struct pair {
    uv_loop_t loop;
    uv_tcp_t listener;
    cvx_tls_ctx_t *sctx, *cctx;
    side_t srv, cli;
    const uint8_t *send;
    size_t nsend;
} pair_t;

static pair_t P;

static void on_open(cvx_tls_t *t, void *arg)
{
    side_t *s = arg;
    s->opened = 1;
    snprintf(s->peer, sizeof(s->peer), "%s", cvx_tls_peer_name(t));
    if (s == &P.cli && P.nsend > 0) {
        /* In pieces of every size up to 64 KB, to cross TLS record boundaries anywhere. */
        size_t off = 0, step = 1;
        while (off < P.nsend) {
            size_t n = P.nsend - off < step ? P.nsend - off : step;
            assert_int_equal(cvx_tls_write(t, P.send + off, n), 0);
            off += n;
            step = step * 3 % 65521 + 1;
        }
    }
}

static void on_data(cvx_tls_t *t, void *arg, const uint8_t *data, size_t len)
{
    side_t *s = arg;
    s->got = realloc(s->got, s->ngot + len);
    memcpy(s->got + s->ngot, data, len);
    s->ngot += len;
    if (s->echo)
        assert_int_equal(cvx_tls_write(t, data, len), 0);
    if (s->expect != 0 && s->ngot >= s->expect) {
        cvx_tls_close(t);
        s->t = NULL;
        s->closed = 1;
        s->close_err = 0;
        snprintf(s->why, sizeof(s->why), "closed here");
    }
}

static void on_close(cvx_tls_t *t, void *arg, int err, const char *why)
{
    (void)t;
    side_t *s = arg;
    s->t = NULL;
    s->closed = 1;
    s->close_err = err;
    snprintf(s->why, sizeof(s->why), "%s", why);
}

static const cvx_tls_callbacks_t cbs = {on_open, on_data, on_close};

static void on_connection(uv_stream_t *server, int status)
{
    assert_int_equal(status, 0);
    assert_int_equal(cvx_tls_accept(P.sctx, server, &cbs, &P.srv, &P.srv.t), 0);
}

/* Starts a server with srv's certificate and a client with the given one, runs the loop
 * until both sides closed (or 10 s). */
static void run_pair(const char *cli_ca_dir, const char *cli_name)
{
    char err[512];
    assert_int_equal(cvx_loop_init(&P.loop), 0);
    assert_int_equal(cvx_tls_ctx_create(&P.sctx, 1, path("ca", "ca", ".pem"),
                                        path("ca", "srv", ".pem"), path("ca", "srv", ".key"), err,
                                        sizeof(err)),
                     0);
    /* The client trusts our CA; its own certificate comes from cli_ca_dir. */
    assert_int_equal(cvx_tls_ctx_create(&P.cctx, 0, path("ca", "ca", ".pem"),
                                        path(cli_ca_dir, cli_name, ".pem"),
                                        path(cli_ca_dir, cli_name, ".key"), err, sizeof(err)),
                     0);
    uv_tcp_init(&P.loop, &P.listener);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_bind(&P.listener, (struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&P.listener, 8, on_connection), 0);
    int len = sizeof(a);
    uv_tcp_getsockname(&P.listener, (struct sockaddr *)&a, &len);
    assert_int_equal(
        cvx_tls_connect(P.cctx, &P.loop, (struct sockaddr *)&a, &cbs, &P.cli, &P.cli.t), 0);
    uint64_t deadline = uv_now(&P.loop) + 10000;
    while (!(P.srv.closed && P.cli.closed) && uv_now(&P.loop) < deadline)
        uv_run(&P.loop, UV_RUN_ONCE);
    if (P.srv.t != NULL)
        cvx_tls_close(P.srv.t);
    if (P.cli.t != NULL)
        cvx_tls_close(P.cli.t);
    uv_close((uv_handle_t *)&P.listener, NULL);
    cvx_loop_close_all(&P.loop);
    cvx_tls_ctx_destroy(P.sctx);
    cvx_tls_ctx_destroy(P.cctx);
}

static void reset(void)
{
    free(P.srv.got);
    free(P.cli.got);
    memset(&P, 0, sizeof(P));
}

static void test_mutual_handshake_and_data(void **state)
{
    (void)state;
    size_t n = 4 * 1024 * 1024;
    uint8_t *data = malloc(n);
    for (size_t i = 0; i < n; i++)
        data[i] = (uint8_t)(i * 31 + i / 65536);
    P.send = data;
    P.nsend = n;
    P.srv.echo = 1;
    P.cli.expect = n; /* the client closes once everything came back */
    run_pair("ca", "cli");
    assert_true(P.srv.opened && P.cli.opened);
    assert_string_equal(P.srv.peer, "cli");
    assert_string_equal(P.cli.peer, "srv");
    assert_int_equal(P.srv.ngot, n);
    assert_memory_equal(P.srv.got, data, n);
    assert_int_equal(P.cli.ngot, n);
    assert_memory_equal(P.cli.got, data, n);
    /* The server saw a clean close (close_notify). */
    assert_true(P.srv.closed);
    assert_int_equal(P.srv.close_err, 0);
    assert_string_equal(P.srv.why, "closed by the peer");
    free(data);
    reset();
}

static void test_certificate_from_another_ca(void **state)
{
    (void)state;
    run_pair("other", "cli");
    assert_false(P.srv.opened);
    assert_true(P.srv.closed);
    assert_int_equal(P.srv.close_err, CVX_EPERM);
    assert_string_equal(P.srv.why,
                        "certificate verify failed: unable to get local issuer certificate");
    /* The client finished its side of the TLS 1.3 handshake and then hears the alert. */
    assert_true(P.cli.closed);
    assert_non_null(strstr(P.cli.why, "unknown ca"));
    assert_int_equal(P.srv.ngot, 0);
    reset();
}

static void test_unusable_files(void **state)
{
    (void)state;
    char err[512];
    cvx_tls_ctx_t *ctx = (cvx_tls_ctx_t *)1;
    assert_int_equal(cvx_tls_ctx_create(&ctx, 1, path("ca", "ca", ".pem"),
                                        path("ca", "missing", ".pem"), path("ca", "srv", ".key"),
                                        err, sizeof(err)),
                     CVX_EINVAL);
    assert_null(ctx);
    char want[600];
    snprintf(want, sizeof(want), "cannot use certificate %s: ", path("ca", "missing", ".pem"));
    assert_memory_equal(err, want, strlen(want));
    /* A key that is not the certificate's. */
    assert_int_equal(cvx_tls_ctx_create(&ctx, 0, path("ca", "ca", ".pem"),
                                        path("ca", "srv", ".pem"), path("ca", "cli", ".key"), err,
                                        sizeof(err)),
                     CVX_EINVAL);
    snprintf(want, sizeof(want), "cannot use private key %s: key values mismatch",
             path("ca", "cli", ".key"));
    assert_string_equal(err, want);
    /* A CA file that is not there. */
    assert_int_equal(cvx_tls_ctx_create(&ctx, 1, path("ca", "nothing", ".pem"),
                                        path("ca", "srv", ".pem"), path("ca", "srv", ".key"), err,
                                        sizeof(err)),
                     CVX_EINVAL);
    snprintf(want, sizeof(want), "cannot use CA certificate %s: ", path("ca", "nothing", ".pem"));
    assert_memory_equal(err, want, strlen(want));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mutual_handshake_and_data),
        cmocka_unit_test(test_certificate_from_another_ca),
        cmocka_unit_test(test_unusable_files),
    };
    return cmocka_run_group_tests(tests, make_certs, remove_certs);
}
