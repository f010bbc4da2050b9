/*
 * linktest.so: a test-only service over the link (test/link/test_link.py).
 *
 * On a system server it serves service 0x7e57:
 *   op 1 echo       replies 0 with the body
 *   op 3 sequence   the body is a number that must follow the previous one from that call
 *                   server; replies 0 with the number, CVX_ERANGE when out of order
 *   op 4 push me    pushes the body back to the calling server (op 9), then replies 0
 *   op 5 not found  replies CVX_ENOTFOUND
 *   op 6 no reply   keeps the request (replied when the module unloads)
 * and keeps the pushes call servers send it.  On a call server it has hidden commands that
 * call those operations and show what came back:
 *   linktest call <op> [text]   one request; prints the reply body, fails with its status
 *   linktest seq <n>            n sequence requests at once; checks the replies' order
 *   linktest big                an echo of the largest body; checks it came back intact
 *   linktest push <text>        a push to the system server (op 8)
 *   linktest pushes             pushes received (both roles)
 *   linktest spool <n>          sets the spool depth the status reports carry
 *   linktest rtt <n> [bytes]    n echo requests one after the other; prints p50/p99/max
 *   linktest events             peer (system) or link state (call) changes seen, one a line
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cvx/cmd.h"
#include "cvx/error.h"
#include "cvx/link.h"
#include "cvx/module.h"

#define SVC 0x7e57

static char pushes[4096];
static size_t npushes_len;
static cvx_link_req_t *held[64];
static int nheld;

typedef struct seqstate {
    char peer[128];
    long last;
} seqstate_t;
static seqstate_t seqs[16];

static char events[4096];
static size_t nevents_len;

static void note_event(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note_event(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(events + nevents_len, sizeof(events) - nevents_len, fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n < sizeof(events) - nevents_len)
        nevents_len += (size_t)n;
}

static void on_peer(void *arg, const char *peer, int up)
{
    (void)arg;
    note_event("%s %s\n", peer, up ? "up" : "down");
}

static void on_state(void *arg, int up, uint64_t epoch)
{
    (void)arg;
    note_event("%s %016llx\n", up ? "up" : "down", (unsigned long long)epoch);
}

static int cmd_events(cvx_cmd_req_t *req)
{
    cvx_cmd_printf(req, "%s", events);
    return 0;
}

static void note_push(const char *from, const uint8_t *body, size_t len)
{
    int n = snprintf(pushes + npushes_len, sizeof(pushes) - npushes_len, "%s%s: %.*s\n", "", from,
                     (int)len, (const char *)body);
    if (n > 0 && (size_t)n < sizeof(pushes) - npushes_len)
        npushes_len += (size_t)n;
}

/* --- system side ------------------------------------------------------------------------- */

static seqstate_t *seq_of(const char *peer)
{
    for (int i = 0; i < 16; i++)
        if (strcmp(seqs[i].peer, peer) == 0)
            return &seqs[i];
    for (int i = 0; i < 16; i++)
        if (seqs[i].peer[0] == '\0') {
            snprintf(seqs[i].peer, sizeof(seqs[i].peer), "%s", peer);
            seqs[i].last = 0;
            return &seqs[i];
        }
    return &seqs[0];
}

static void serve(void *arg, cvx_link_req_t *req, uint32_t method, const uint8_t *body, size_t len)
{
    (void)arg;
    char text[64];
    switch (method & 0xffff) {
    case 1:
        cvx_link_reply(req, 0, body, len);
        break;
    case 3: {
        snprintf(text, sizeof(text), "%.*s", (int)(len < 60 ? len : 60), (const char *)body);
        long n = strtol(text, NULL, 10);
        seqstate_t *s = seq_of(cvx_link_req_peer(req));
        int ok = n == 1 || n == s->last + 1;
        s->last = n;
        cvx_link_reply(req, ok ? 0 : CVX_ERANGE, body, len);
        break;
    }
    case 4:
        cvx_link_push_to(cvx_link_req_peer(req), CVX_LINK_METHOD(SVC, 9), body, len);
        cvx_link_reply(req, 0, NULL, 0);
        break;
    case 5:
        cvx_link_reply(req, CVX_ENOTFOUND, NULL, 0);
        break;
    case 6:
        if (nheld < 64)
            held[nheld++] = req;
        else
            cvx_link_reply(req, CVX_ELIMIT, NULL, 0);
        break;
    default:
        cvx_link_reply(req, CVX_ENOTSUP, NULL, 0);
        break;
    }
}

static void on_server_push(void *arg, const char *peer, uint32_t method, const uint8_t *body,
                           size_t len)
{
    (void)arg;
    (void)method;
    note_push(peer, body, len);
}

/* --- call side ------------------------------------------------------------------------------ */

static void on_client_push(void *arg, uint32_t method, const uint8_t *body, size_t len)
{
    (void)arg;
    (void)method;
    note_push("system", body, len);
}

static void on_reply(void *arg, int status, const uint8_t *body, size_t len)
{
    cvx_cmd_req_t *req = arg;
    if (status != 0) {
        cvx_cmd_error(req, "%s", cvx_strerror(status));
        cvx_cmd_finish(req, status);
        return;
    }
    cvx_cmd_printf(req, "%.*s\n", (int)len, (const char *)body);
    cvx_cmd_finish(req, 0);
}

static int cmd_call(cvx_cmd_req_t *req)
{
    long op = strtol(cvx_cmd_arg(req, 0), NULL, 10);
    const char *text = cvx_cmd_argc(req) > 1 ? cvx_cmd_rest(req, 1) : "";
    int rc = cvx_link_call(CVX_LINK_METHOD(SVC, op), text, strlen(text), on_reply, req);
    if (rc != 0)
        return rc;
    return CVX_CMD_PENDING;
}

typedef struct seqrun {
    cvx_cmd_req_t *req;
    long n, got, expect, bad;
    int status;
} seqrun_t;

static void on_seq_reply(void *arg, int status, const uint8_t *body, size_t len)
{
    seqrun_t *s = arg;
    char text[32];
    snprintf(text, sizeof(text), "%.*s", (int)(len < 30 ? len : 30), (const char *)body);
    if (status != 0 && s->status == 0)
        s->status = status;
    if (status == 0 && strtol(text, NULL, 10) != s->expect)
        s->bad++;
    s->expect++;
    if (++s->got < s->n)
        return;
    if (s->status != 0) {
        cvx_cmd_error(s->req, "%s", cvx_strerror(s->status));
        cvx_cmd_finish(s->req, s->status);
    } else if (s->bad != 0) {
        cvx_cmd_error(s->req, "%ld of %ld replies out of order", s->bad, s->n);
        cvx_cmd_finish(s->req, CVX_EPROTO);
    } else {
        cvx_cmd_printf(s->req, "%ld replies in order\n", s->n);
        cvx_cmd_finish(s->req, 0);
    }
    free(s);
}

static int cmd_seq(cvx_cmd_req_t *req)
{
    long n = strtol(cvx_cmd_arg(req, 0), NULL, 10);
    if (n <= 0 || n > 100000)
        return CVX_EINVAL;
    seqrun_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return CVX_ENOMEM;
    s->req = req;
    s->n = n;
    s->expect = 1;
    for (long i = 1; i <= n; i++) {
        char text[32];
        int len = snprintf(text, sizeof(text), "%ld", i);
        int rc = cvx_link_call(CVX_LINK_METHOD(SVC, 3), text, (size_t)len, on_seq_reply, s);
        if (rc != 0) {
            /* Those sent still complete (with an error when the link drops). */
            if (i == 1) {
                free(s);
                return rc;
            }
            s->n = i - 1;
            s->status = rc;
            break;
        }
    }
    return CVX_CMD_PENDING;
}

static void on_big_reply(void *arg, int status, const uint8_t *body, size_t len)
{
    cvx_cmd_req_t *req = arg;
    if (status != 0) {
        cvx_cmd_error(req, "%s", cvx_strerror(status));
        cvx_cmd_finish(req, status);
        return;
    }
    size_t bad = 0;
    for (size_t i = 0; i < len; i++)
        if (body[i] != (uint8_t)(i * 7 + i / 251))
            bad++;
    cvx_cmd_printf(req, "%zu bytes back, %zu differ\n", len, bad);
    cvx_cmd_finish(req, len == CVX_LINK_BODY_MAX && bad == 0 ? 0 : CVX_ECORRUPT);
}

static int cmd_big(cvx_cmd_req_t *req)
{
    uint8_t *b = malloc(CVX_LINK_BODY_MAX + 1);
    if (b == NULL)
        return CVX_ENOMEM;
    for (size_t i = 0; i <= CVX_LINK_BODY_MAX; i++)
        b[i] = (uint8_t)(i * 7 + i / 251);
    /* One byte over the limit is refused at once; the limit itself goes through. */
    int over = cvx_link_call(CVX_LINK_METHOD(SVC, 1), b, CVX_LINK_BODY_MAX + 1, on_big_reply, req);
    if (over != CVX_ERANGE) {
        free(b);
        cvx_cmd_error(req, "a body over the limit was not refused (%d)", over);
        return CVX_EPROTO;
    }
    int rc = cvx_link_call(CVX_LINK_METHOD(SVC, 1), b, CVX_LINK_BODY_MAX, on_big_reply, req);
    free(b);
    return rc != 0 ? rc : CVX_CMD_PENDING;
}

static int cmd_push(cvx_cmd_req_t *req)
{
    const char *text = cvx_cmd_rest(req, 0);
    return cvx_link_push(CVX_LINK_METHOD(SVC, 8), text, strlen(text));
}

static int cmd_spool(cvx_cmd_req_t *req)
{
    cvx_link_client_set_spool_depth((uint32_t)strtoul(cvx_cmd_arg(req, 0), NULL, 10));
    return 0;
}

typedef struct rttrun {
    cvx_cmd_req_t *req;
    long n, done;
    uint64_t sent_ns;
    uint64_t *us;
    uint8_t *body;
    size_t len;
} rttrun_t;

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void rtt_end(rttrun_t *r, int status)
{
    if (status != 0) {
        cvx_cmd_error(r->req, "%s", cvx_strerror(status));
    } else {
        qsort(r->us, (size_t)r->n, sizeof(uint64_t), cmp_u64);
        cvx_cmd_printf(
            r->req, "%ld round trips of %zu bytes: p50 %llu us, p99 %llu us, max %llu us\n", r->n,
            r->len, (unsigned long long)r->us[r->n / 2], (unsigned long long)r->us[r->n * 99 / 100],
            (unsigned long long)r->us[r->n - 1]);
    }
    cvx_cmd_finish(r->req, status);
    free(r->us);
    free(r->body);
    free(r);
}

static void on_rtt_reply(void *arg, int status, const uint8_t *body, size_t len)
{
    (void)body;
    rttrun_t *r = arg;
    if (status == 0 && len != r->len)
        status = CVX_ECORRUPT;
    if (status != 0) {
        rtt_end(r, status);
        return;
    }
    r->us[r->done++] = (uv_hrtime() - r->sent_ns) / 1000;
    if (r->done == r->n) {
        rtt_end(r, 0);
        return;
    }
    r->sent_ns = uv_hrtime();
    int rc = cvx_link_call(CVX_LINK_METHOD(SVC, 1), r->body, r->len, on_rtt_reply, r);
    if (rc != 0)
        rtt_end(r, rc);
}

static int cmd_rtt(cvx_cmd_req_t *req)
{
    long n = strtol(cvx_cmd_arg(req, 0), NULL, 10);
    const char *b = cvx_cmd_arg(req, 1);
    long len = b != NULL ? strtol(b, NULL, 10) : 16;
    if (n <= 0 || n > 1000000 || len < 0 || len > CVX_LINK_BODY_MAX)
        return CVX_EINVAL;
    rttrun_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return CVX_ENOMEM;
    r->req = req;
    r->n = n;
    r->len = (size_t)len;
    r->us = calloc((size_t)n, sizeof(uint64_t));
    r->body = calloc(1, r->len + 1);
    r->sent_ns = uv_hrtime();
    int rc = cvx_link_call(CVX_LINK_METHOD(SVC, 1), r->body, r->len, on_rtt_reply, r);
    if (rc != 0) {
        free(r->us);
        free(r->body);
        free(r);
        return rc;
    }
    return CVX_CMD_PENDING;
}

static int cmd_pushes(cvx_cmd_req_t *req)
{
    cvx_cmd_printf(req, "%s", pushes);
    return 0;
}

static const cvx_cmd_t cmds[] = {
    {"linktest call",
     {{"op", 0, NULL, NULL, "operation"},
      {"text", CVX_CMD_ARG_OPTIONAL | CVX_CMD_ARG_REST, NULL, NULL, "body"}},
     CVX_CMD_HIDDEN,
     "link test: one request",
     "Sends one request of the link test service and prints the reply.",
     cmd_call,
     NULL},
    {"linktest seq",
     {{"n", 0, NULL, NULL, "how many"}},
     CVX_CMD_HIDDEN,
     "link test: ordered requests",
     "Sends n numbered requests at once and checks that the replies come in order.",
     cmd_seq,
     NULL},
    {"linktest big",
     {{0}},
     CVX_CMD_HIDDEN,
     "link test: largest body",
     "Echoes a body of the largest size and checks it.",
     cmd_big,
     NULL},
    {"linktest push",
     {{"text", CVX_CMD_ARG_REST, NULL, NULL, "body"}},
     CVX_CMD_HIDDEN,
     "link test: push",
     "Pushes text to the system server.",
     cmd_push,
     NULL},
    {"linktest spool",
     {{"n", 0, NULL, NULL, "messages"}},
     CVX_CMD_HIDDEN,
     "link test: spool depth",
     "Sets the spool depth reported to the system server.",
     cmd_spool,
     NULL},
    {"linktest rtt",
     {{"n", 0, NULL, NULL, "how many"}, {"bytes", CVX_CMD_ARG_OPTIONAL, NULL, NULL, "body size"}},
     CVX_CMD_HIDDEN,
     "link test: round trips",
     "Sends n echo requests one after the other and prints the round-trip percentiles.",
     cmd_rtt,
     NULL},
    {"linktest events",
     {{0}},
     CVX_CMD_HIDDEN,
     "link test: state changes",
     "Lists the peer or link state changes seen.",
     cmd_events,
     NULL},
    {"linktest pushes",
     {{0}},
     CVX_CMD_HIDDEN,
     "link test: pushes received",
     "Lists the pushes received.",
     cmd_pushes,
     NULL},
    CVX_CMDS_END,
};

static int lm_load(cvx_module_env_t *env)
{
    int rc = 0;
    if (env->role & CVX_ROLE_SYSTEM) {
        rc = cvx_link_serve(SVC, serve, NULL);
        if (rc == 0)
            rc = cvx_link_server_on_push(SVC, on_server_push, NULL);
        cvx_link_server_on_peer(on_peer, NULL);
        cvx_link_server_on_peer(on_peer, NULL); /* the same pair again: no second call */
    } else {
        rc = cvx_link_client_on_push(SVC, on_client_push, NULL);
        cvx_link_client_on_state(on_state, NULL);
        cvx_link_client_on_state(on_state, NULL);
    }
    if (rc == 0)
        rc = cvx_cmd_register(cmds);
    return rc;
}

static void lm_unload(void)
{
    for (int i = 0; i < nheld; i++)
        cvx_link_reply(held[i], 0, NULL, 0);
    nheld = 0;
    cvx_link_serve(SVC, NULL, NULL);
    cvx_link_server_on_push(SVC, NULL, NULL);
    cvx_link_client_on_push(SVC, NULL, NULL);
    cvx_link_server_off_peer(on_peer, NULL);
    cvx_link_client_off_state(on_state, NULL);
    cvx_cmd_unregister(cmds);
}

static const cvx_module_t lm_desc = {
    .abi_major = CVX_MODULE_ABI_MAJOR,
    .abi_minor = CVX_MODULE_ABI_MINOR,
    .size = sizeof(cvx_module_t),
    .signature = CVX_MODULE_SIGNATURE,
    .name = "linktest",
    .version = "1.0",
    .description = "link test service (tests only)",
    .kind = CVX_MODULE_SERVICE,
    .roles = CVX_ROLE_ALL,
    .load = lm_load,
    .unload = lm_unload,
};

CVX_MODULE_DEFINE(lm_desc)
