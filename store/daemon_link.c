/*
 * The store over the call-server link inside callvoxd (cvx/link.h):
 *
 *  - role system (and all): serves the store's interface to the call servers
 *    (CVX_LINK_SVC_STORE), pushes MWI changes (CVX_LINK_SVC_MWI) and cache changes
 *    (CVX_LINK_SVC_CACHE) to them;
 *  - role call: cvx_store_default() is the remote store, with its spool and caches, driven by
 *    the link's state and pushes; `show spool` lists what waits.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cvx/cmd.h"
#include "cvx/daemon.h"
#include "cvx/link.h"
#include "cvx/log.h"
#include "remote.h"
#include "store_impl.h"

/* --- system side --------------------------------------------------------------------------- */

static store_server_t *server;

static int io_reply(void *ctx, void *req, int status, const void *body, size_t len)
{
    (void)ctx;
    return cvx_link_reply(req, status, body, len);
}

static int io_push_all(void *ctx, uint32_t method, const void *body, size_t len)
{
    (void)ctx;
    int rc = cvx_link_push_to(NULL, method, body, len);
    return rc == CVX_ENOTFOUND || rc == CVX_EUNAVAIL ? 0 : rc; /* no call server: nobody to tell */
}

static void on_method(void *arg, cvx_link_req_t *req, uint32_t method, const uint8_t *body,
                      size_t len)
{
    cvx__store_server_method(arg, req, cvx_link_req_peer(req), method, body, len);
}

/* Registered once (the link has no way to remove it); does nothing once the store stopped. */
static void on_peer(void *arg, const char *peer, int up)
{
    (void)arg;
    if (!up && server != NULL)
        cvx__store_server_peer_down(server, peer);
}

static void on_server_push(void *arg, const char *peer, uint32_t method, const uint8_t *body,
                           size_t len)
{
    cvx__store_server_push(arg, peer, method, body, len);
}

int store__link_serve(cvx_store_t *st)
{
    static const store_server_io_t io = {io_reply, io_push_all, NULL};
    server = cvx__store_server_create(st, &io);
    if (server == NULL)
        return CVX_ENOMEM;
    int rc = cvx_link_serve(CVX_LINK_SVC_STORE, on_method, server);
    if (rc == 0)
        rc = cvx_link_server_on_push(CVX_LINK_SVC_MWI, on_server_push, server);
    if (rc != 0) {
        cvx_error("message store: cannot serve the call servers: %s", cvx_strerror(rc));
        cvx_link_serve(CVX_LINK_SVC_STORE, NULL, NULL);
        cvx__store_server_destroy(server);
        server = NULL;
        return rc;
    }
    cvx_link_server_on_peer(on_peer, NULL); /* once: the link ignores the same pair again */
    return 0;
}

void store__link_unserve(void)
{
    if (server == NULL)
        return;
    cvx_link_serve(CVX_LINK_SVC_STORE, NULL, NULL);
    cvx_link_server_on_push(CVX_LINK_SVC_MWI, NULL, NULL);
    cvx__store_server_destroy(server);
    server = NULL;
}

/* --- call side ------------------------------------------------------------------------------ */

static int l_up(void *ctx)
{
    (void)ctx;
    return cvx_link_up();
}

static int l_call(void *ctx, uint32_t method, const void *body, size_t len, cvx_link_reply_fn cb,
                  void *arg)
{
    (void)ctx;
    return cvx_link_call(method, body, len, cb, arg);
}

static int l_push(void *ctx, uint32_t method, const void *body, size_t len)
{
    (void)ctx;
    return cvx_link_push(method, body, len);
}

static void l_depth(void *ctx, uint32_t n)
{
    (void)ctx;
    cvx_link_client_set_spool_depth(n);
}

static cvx_store_t *remote_st;

/* Registered once (the link has no way to remove it); does nothing once the store stopped. */
static void on_state(void *arg, int up, uint64_t epoch)
{
    (void)arg;
    if (remote_st != NULL)
        cvx__store_remote_link_state(remote_st, up, epoch);
}

static void on_client_push(void *arg, uint32_t method, const uint8_t *body, size_t len)
{
    cvx__store_remote_push(arg, method, body, len);
}

int store__link_remote_open(uv_loop_t *loop, const char *spool_path, cvx_store_t **out)
{
    static const store_link_t link = {l_up, l_call, l_push, l_depth, NULL};
    store_remote_conf_t conf;
    memset(&conf, 0, sizeof(conf));
    conf.spool_path = spool_path;
    char err[512] = "";
    int rc = cvx__store_remote_open(loop, &link, &conf, out, err, sizeof(err));
    if (rc != 0) {
        cvx_error("%s", err[0] ? err : cvx_strerror(rc));
        fprintf(stderr, "callvoxd: %s\n", err[0] ? err : cvx_strerror(rc));
        return rc;
    }
    remote_st = *out;
    cvx_link_client_on_state(on_state, NULL);
    cvx_link_client_on_push(CVX_LINK_SVC_MWI, on_client_push, *out);
    cvx_link_client_on_push(CVX_LINK_SVC_CACHE, on_client_push, *out);
    cvx_info("message store: remote (over the link), spool in %s", spool_path);
    return 0;
}

void store__link_remote_close(void)
{
    remote_st = NULL;
    cvx_link_client_on_push(CVX_LINK_SVC_MWI, NULL, NULL);
    cvx_link_client_on_push(CVX_LINK_SVC_CACHE, NULL, NULL);
}

/* --- show spool ------------------------------------------------------------------------------ */

static void fmt_time(uint64_t ms, char *out, size_t size)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(out, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, size - n, ".%03uZ", (unsigned)(ms % 1000));
}

static int spool_row(void *arg, const store_spool_info_t *i)
{
    cvx_cmd_req_t *req = arg;
    char received[40], bytes[24], attempts[16];
    fmt_time(i->received_ms, received, sizeof(received));
    snprintf(bytes, sizeof(bytes), "%llu", (unsigned long long)i->bytes);
    snprintf(attempts, sizeof(attempts), "%u", i->attempts);
    const char *cells[] = {i->id, i->mailbox, received, bytes, attempts, i->last_error};
    cvx_cmd_table_row(req, cells);
    return 0;
}

static int cmd_show_spool(cvx_cmd_req_t *req)
{
    cvx_store_t *st = cvx_store_default();
    if (st == NULL || !cvx__store_is_remote(st)) {
        cvx_cmd_error(req, "no spool in this process (role %s): only call servers spool",
                      cvx_daemon_role_name(cvx_daemon_role()));
        return CVX_ENOTSUP;
    }
    static const char *const cols[] = {"id",        "mailbox",    "received", "bytes#",
                                       "attempts#", "last_error", NULL};
    cvx_cmd_table_begin(req, "spool", cols);
    int n = cvx__store_spool_foreach(st, spool_row, req);
    cvx_cmd_table_end(req);
    if (n < 0) {
        cvx_cmd_error(req, "cannot read the spool: %s", cvx_strerror(n));
        return n;
    }
    if (!cvx_cmd_json(req))
        cvx_cmd_printf(req, "%d message%s waiting for the system server%s\n", n, n == 1 ? "" : "s",
                       cvx_link_up() ? "" : " (link down)");
    return 0;
}

static const cvx_cmd_t link_cmds[] = {
    {"show spool",
     {{NULL, 0, NULL, NULL, NULL}},
     CVX_CMD_READONLY,
     "List the messages waiting in this call server's spool",
     "Lists the messages this call server took while the system server could not be reached "
     "and has not yet forwarded, oldest first: id, mailbox, time received (UTC), audio bytes, "
     "forwarding attempts and the last error.",
     cmd_show_spool,
     NULL},
    CVX_CMDS_END,
};

int store__link_cmds_register(void)
{
    return cvx_cmd_register(link_cmds);
}
