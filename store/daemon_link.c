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

/* Does nothing once the store stopped (it is also removed then). */
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
    cvx_link_server_on_peer(on_peer, NULL);
    return 0;
}

void store__link_unserve(void)
{
    if (server == NULL)
        return;
    cvx_link_serve(CVX_LINK_SVC_STORE, NULL, NULL);
    cvx_link_server_on_push(CVX_LINK_SVC_MWI, NULL, NULL);
    cvx_link_server_off_peer(on_peer, NULL);
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

/* Does nothing once the store stopped (it is also removed then). */
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
    cvx_link_client_off_state(on_state, NULL);
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

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int cmd_show_store_link(cvx_cmd_req_t *req)
{
    cvx_store_t *st = cvx_store_default();
    if (st == NULL || !cvx__store_is_remote(st)) {
        cvx_cmd_error(req,
                      "this process has the store itself (role %s): nothing goes over the "
                      "link from here",
                      cvx_daemon_role_name(cvx_daemon_role()));
        return CVX_ENOTSUP;
    }
    store_remote_stats_t rs;
    store_cache_stats_t cs;
    cvx__store_remote_stats(st, &rs);
    cvx__store_cache_stats(st, &cs);
    uint32_t *sorted = rs.nlat ? malloc(rs.nlat * sizeof(*sorted)) : NULL;
    uint32_t p50 = 0, p99 = 0, max = 0;
    if (sorted != NULL) {
        memcpy(sorted, rs.lat_us, rs.nlat * sizeof(*sorted));
        qsort(sorted, rs.nlat, sizeof(*sorted), cmp_u32);
        p50 = sorted[rs.nlat / 2];
        p99 = sorted[(size_t)rs.nlat * 99 / 100];
        max = sorted[rs.nlat - 1];
    }
    if (cvx_cmd_json(req)) {
        cvx_cmd_json_bool(req, "link_up", cvx_link_up());
        cvx_cmd_json_uint(req, "live", rs.live);
        cvx_cmd_json_uint(req, "spooled", rs.spooled);
        cvx_cmd_json_uint(req, "forwarded", rs.forwarded);
        cvx_cmd_json_uint(req, "spool", cvx__store_spool_depth(st));
        cvx_cmd_json_uint(req, "commit_p50_us", p50);
        cvx_cmd_json_uint(req, "commit_p99_us", p99);
        cvx_cmd_json_uint(req, "commit_max_us", max);
        cvx_cmd_json_array(req, "commit_us");
        for (uint32_t i = 0; i < rs.nlat; i++)
            cvx_cmd_json_uint(req, NULL, rs.lat_us[i]);
        cvx_cmd_json_end(req);
        cvx_cmd_json_object(req, "cache");
        cvx_cmd_json_uint(req, "hits", cs.hits);
        cvx_cmd_json_uint(req, "misses", cs.misses);
        cvx_cmd_json_uint(req, "invalidations", cs.invalidations);
        cvx_cmd_json_uint(req, "flushes", cs.flushes);
        cvx_cmd_json_uint(req, "served_stale", cs.served_stale);
        cvx_cmd_json_uint(req, "version", cs.version);
        cvx_cmd_json_end(req);
    } else {
        cvx_cmd_printf(req,
                       "link %s; deposits: %llu confirmed by the system server, %llu "
                       "spooled, %llu forwarded from the spool, %u waiting\n",
                       cvx_link_up() ? "up" : "down", (unsigned long long)rs.live,
                       (unsigned long long)rs.spooled, (unsigned long long)rs.forwarded,
                       cvx__store_spool_depth(st));
        cvx_cmd_printf(req,
                       "end of call to durable on the system server (last %u): p50 %.1f ms, "
                       "p99 %.1f ms, max %.1f ms\n",
                       rs.nlat, p50 / 1000.0, p99 / 1000.0, max / 1000.0);
        cvx_cmd_printf(req,
                       "caches: %llu hits, %llu misses, %llu invalidations, %llu flushes, "
                       "%llu mailbox lookups answered from the last known record\n",
                       (unsigned long long)cs.hits, (unsigned long long)cs.misses,
                       (unsigned long long)cs.invalidations, (unsigned long long)cs.flushes,
                       (unsigned long long)cs.served_stale);
    }
    free(sorted);
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
    {"show store link",
     {{NULL, 0, NULL, NULL, NULL}},
     CVX_CMD_READONLY,
     "The store over the link, as this call server sees it",
     "Deposits confirmed by the system server, spooled and forwarded; the time from the end of "
     "a call (the commit) to the system server's confirmation that the message is durable "
     "(p50, p99, max of the last 8192); the caches' hits, misses and invalidations.",
     cmd_show_store_link,
     NULL},
    CVX_CMDS_END,
};

int store__link_cmds_register(void)
{
    return cvx_cmd_register(link_cmds);
}
