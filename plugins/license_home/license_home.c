/*
 * license_home: proves the licence's key hash by phoning home to the licence server
 * (callvox-license serve), and keeps checking every [license] retry.
 *
 * The key hash is cvx_license_hash_secret([license] server_id).  Each check sends
 * GET <server_url>/v1/prove?serial=...&hash=...&nonce=<32 random bytes, hex> and accepts only
 * an answer signed with the key built into callvoxd that repeats the serial, the hash and
 * the nonce (see tools/license/license_serve.c for the protocol).
 *
 *  - "ok": the proof holds; the time is kept in the store (setting ext.license.last_ok).
 *  - "denied" (signed): the proof fails at once; new messages are refused.
 *  - no usable answer (server down, garbage, bad signature, wrong nonce): the grace period
 *    applies, counted from the last success kept in the store; when it is over (or no
 *    success was ever recorded) new messages are refused, calls in progress go on.
 *
 * HTTP runs through libcurl's multi-socket interface on the loop (uv_poll per socket, one
 * uv_timer for curl's timeouts): nothing here blocks.  Test builds (CVX_LICENSE_TEST_HOOKS)
 * read the clock through cvx_license_now(), which honours CVX_LICENSE_TEST_NOW.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <sodium.h>
#include <uv.h>

#include "cvx/error.h"
#include "cvx/license.h"
#include "cvx/log.h"
#include "cvx/module.h"
#include "cvx/reactor.h"
#include "cvx/store.h"

#define HOME_BODY_MAX    4096
#define HOME_TIMEOUT_MS  10000L
#define HOME_SETTING_KEY "ext.license.last_ok"

typedef struct home_sock {
    uv_poll_t poll;
    curl_socket_t fd;
} home_sock_t;

static struct {
    uv_loop_t *loop;
    CURLM *multi;
    CURL *easy;             /* the check in flight, or NULL */
    uv_timer_t curl_timer;  /* curl's timeouts */
    uv_timer_t retry_timer; /* next check; also the first one, just after boot */
    int handles_open;
    int stopping;
    int timers;            /* curl_timer and retry_timer are initialised */
    uint64_t grace_end_ms; /* within grace: ms from now until it ends (+1 s), else 0 */
    cvx_license_proof_cb done;
    char serial[64];
    char hash[CVX_LICENSE_HASH_HEX];
    char nonce[65];
    char body[HOME_BODY_MAX];
    size_t body_len;
    int64_t last_ok; /* UTC seconds of the last success; 0: none recorded */
    int loaded_last; /* the store has been read */
    char state[480]; /* for show license */
    char curl_err[CURL_ERROR_SIZE];
} H;

static void check_start(void);

/* --- the verdict ------------------------------------------------------------------------ */

static void fmt_time(int64_t t, char *buf, size_t size)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, size, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

static void on_retry(uv_timer_t *t)
{
    (void)t;
    check_start();
}

/* The next check: after retry, or sooner when the grace period ends before that (so that
 * its end is noticed on time). */
static void schedule_retry(void)
{
    uint64_t ms = (uint64_t)cvx_license_conf()->retry_ms;
    if (H.grace_end_ms != 0 && H.grace_end_ms < ms)
        ms = H.grace_end_ms;
    H.grace_end_ms = 0;
    if (!H.stopping)
        uv_timer_start(&H.retry_timer, on_retry, ms, 0);
}

static void on_saved(void *arg, int status)
{
    (void)arg;
    if (status != 0)
        cvx_warn("licence: cannot record the phone-home success in the store: %s",
                 cvx_strerror(status));
}

static void succeeded(void)
{
    H.last_ok = cvx_license_now();
    char when[40], v[32];
    fmt_time(H.last_ok, when, sizeof(when));
    snprintf(H.state, sizeof(H.state), "confirmed by the licence server at %s", when);
    int n = snprintf(v, sizeof(v), "%" PRId64, H.last_ok);
    cvx_store_t *st = cvx_store_default();
    if (st == NULL || cvx_store_setting_put(st, HOME_SETTING_KEY, v, (size_t)n, on_saved, NULL))
        cvx_warn("licence: cannot record the phone-home success: the store is not open");
    H.done(0, H.hash, H.state);
}

/* No usable answer: the grace period decides. */
static void unreachable(const char *why)
{
    long long grace_s = cvx_license_conf()->grace_ms / 1000;
    int64_t now = cvx_license_now();
    char detail[480];
    if (H.last_ok == 0) {
        snprintf(detail, sizeof(detail),
                 "no valid answer from the licence server (%s) and no earlier success is recorded",
                 why);
        snprintf(H.state, sizeof(H.state), "%s", detail);
        H.done(CVX_EUNAVAIL, NULL, detail);
        return;
    }
    char last[40], until[40];
    fmt_time(H.last_ok, last, sizeof(last));
    fmt_time(H.last_ok + grace_s, until, sizeof(until));
    if (now < H.last_ok + grace_s) {
        snprintf(detail, sizeof(detail),
                 "no valid answer from the licence server (%s); grace period since %s, until %s",
                 why, last, until);
        snprintf(H.state, sizeof(H.state), "%s", detail);
        cvx_warn("licence: %s", detail);
        H.grace_end_ms = (uint64_t)(H.last_ok + grace_s - now) * 1000 + 1000;
        H.done(0, H.hash, detail);
        return;
    }
    snprintf(detail, sizeof(detail),
             "no valid answer from the licence server (%s); the grace period since the last "
             "success (%s) "
             "ended at %s",
             why, last, until);
    snprintf(H.state, sizeof(H.state), "%s", detail);
    H.done(CVX_ETIMEOUT, NULL, detail);
}

/* Checks a signed answer; returns 1 (ok), 0 (denied) or -1 with why set. */
static int check_answer(char *why, size_t size)
{
    const char *text = H.body;
    const char *sig = strstr(text, "\nsignature = ");
    if (H.body_len >= HOME_BODY_MAX - 1 || strncmp(text, "callvox-proof 1\n", 16) != 0 ||
        sig == NULL) {
        snprintf(why, size, "the answer is not a callvox proof");
        return -1;
    }
    size_t signed_len = (size_t)(sig - text) + 1;
    char b64[128];
    if (sscanf(sig + 13, "%127s", b64) != 1) {
        snprintf(why, size, "the answer is not a callvox proof");
        return -1;
    }
    unsigned char s[CVX_LICENSE_SIG_BYTES + 8];
    const unsigned char *pk = cvx_license_builtin_key();
    if (pk == NULL || cvx_license_b64_decode(b64, s, sizeof(s)) != CVX_LICENSE_SIG_BYTES ||
        crypto_sign_verify_detached(s, (const unsigned char *)text, signed_len, pk) != 0) {
        snprintf(why, size, "the answer's signature is not valid for this build's key");
        return -1;
    }
    char want[512];
    snprintf(want, sizeof(want), "\nserial = %s\nhash = %s\nnonce = %s\n", H.serial, H.hash,
             H.nonce);
    if (strstr(text, want) == NULL) {
        snprintf(why, size, "the answer is for another challenge");
        return -1;
    }
    if (strncmp(text + 16, "status = ok\n", 12) == 0)
        return 1;
    if (strncmp(text + 16, "status = denied\n", 16) == 0)
        return 0;
    snprintf(why, size, "the answer has an unknown status");
    return -1;
}

static void finished(CURLcode res)
{
    long code = 0;
    curl_easy_getinfo(H.easy, CURLINFO_RESPONSE_CODE, &code);
    curl_multi_remove_handle(H.multi, H.easy);
    curl_easy_cleanup(H.easy);
    H.easy = NULL;
    H.body[H.body_len < HOME_BODY_MAX ? H.body_len : HOME_BODY_MAX - 1] = '\0';
    char why[256];
    if (res != CURLE_OK) {
        snprintf(why, sizeof(why), "%s", H.curl_err[0] ? H.curl_err : curl_easy_strerror(res));
        unreachable(why);
    } else if (code != 200) {
        snprintf(why, sizeof(why), "HTTP status %ld", code);
        unreachable(why);
    } else {
        int v = check_answer(why, sizeof(why));
        if (v == 1) {
            succeeded();
        } else if (v == 0) {
            snprintf(H.state, sizeof(H.state),
                     "the licence server denies key hash %.16s... for licence %s", H.hash,
                     H.serial);
            H.done(CVX_EPERM, NULL, H.state);
        } else {
            unreachable(why);
        }
    }
    schedule_retry();
}

/* --- libcurl on the loop ------------------------------------------------------------------ */

static void drain_messages(void)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(H.multi, &left)) != NULL)
        if (m->msg == CURLMSG_DONE && m->easy_handle == H.easy)
            finished(m->data.result);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    home_sock_t *s = p->data;
    int flags = status < 0 ? CURL_CSELECT_ERR : 0;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    int running;
    cvx_loop_doing("license_home: curl");
    curl_multi_socket_action(H.multi, s->fd, flags, &running);
    drain_messages();
    cvx_loop_doing(NULL);
}

static void on_sock_closed(uv_handle_t *h)
{
    free(h->data);
    H.handles_open--;
}

static int on_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)e, (void)userp;
    home_sock_t *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            uv_poll_stop(&s->poll);
            uv_close((uv_handle_t *)&s->poll, on_sock_closed);
            curl_multi_assign(H.multi, fd, NULL);
        }
        return 0;
    }
    if (s == NULL) {
        s = calloc(1, sizeof(*s));
        if (s == NULL || uv_poll_init_socket(H.loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        H.handles_open++;
        s->fd = fd;
        s->poll.data = s;
        curl_multi_assign(H.multi, fd, s);
    }
    int ev = ((what & CURL_POLL_IN) ? UV_READABLE : 0) | ((what & CURL_POLL_OUT) ? UV_WRITABLE : 0);
    uv_poll_start(&s->poll, ev, on_poll);
    return 0;
}

static void on_curl_timer(uv_timer_t *t)
{
    (void)t;
    int running;
    cvx_loop_doing("license_home: curl timeout");
    curl_multi_socket_action(H.multi, CURL_SOCKET_TIMEOUT, 0, &running);
    drain_messages();
    cvx_loop_doing(NULL);
}

static int on_timeout(CURLM *m, long ms, void *userp)
{
    (void)m, (void)userp;
    if (ms < 0)
        uv_timer_stop(&H.curl_timer);
    else
        uv_timer_start(&H.curl_timer, on_curl_timer, ms == 0 ? 1 : (uint64_t)ms, 0);
    return 0;
}

static size_t on_body(char *data, size_t size, size_t n, void *userp)
{
    (void)userp;
    size_t len = size * n;
    if (H.body_len + len >= HOME_BODY_MAX)
        return 0; /* too long to be a proof: curl reports a write error */
    memcpy(H.body + H.body_len, data, len);
    H.body_len += len;
    return len;
}

/* --- checks ------------------------------------------------------------------------------- */

static void check_start(void)
{
    if (H.stopping || H.easy != NULL)
        return;
    unsigned char nonce[32];
    randombytes_buf(nonce, sizeof(nonce));
    sodium_bin2hex(H.nonce, sizeof(H.nonce), nonce, sizeof(nonce));
    const cvx_license_conf_t *conf = cvx_license_conf();
    char url[1024];
    int ulen = (int)strlen(conf->server_url);
    while (ulen > 0 && conf->server_url[ulen - 1] == '/')
        ulen--;
    char *serial = curl_easy_escape(NULL, H.serial, 0);
    snprintf(url, sizeof(url), "%.*s/v1/prove?serial=%s&hash=%s&nonce=%s", ulen, conf->server_url,
             serial ? serial : "", H.hash, H.nonce);
    curl_free(serial);
    H.body_len = 0;
    H.curl_err[0] = '\0';
    H.easy = curl_easy_init();
    if (H.easy == NULL) {
        unreachable("libcurl cannot make a request");
        schedule_retry();
        return;
    }
    curl_easy_setopt(H.easy, CURLOPT_URL, url);
    curl_easy_setopt(H.easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(H.easy, CURLOPT_ERRORBUFFER, H.curl_err);
    curl_easy_setopt(H.easy, CURLOPT_TIMEOUT_MS, HOME_TIMEOUT_MS);
    curl_easy_setopt(H.easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(H.easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(H.easy, CURLOPT_FOLLOWLOCATION, 0L);
    if (curl_multi_add_handle(H.multi, H.easy) != CURLM_OK) {
        curl_easy_cleanup(H.easy);
        H.easy = NULL;
        unreachable("libcurl cannot start the request");
        schedule_retry();
    }
}

static void on_last_ok(void *arg, int status, const void *value, size_t len)
{
    (void)arg;
    H.loaded_last = 1;
    if (status == 0 && len > 0 && len < 32) {
        char v[32];
        memcpy(v, value, len);
        v[len] = '\0';
        H.last_ok = strtoll(v, NULL, 10);
    } else if (status != CVX_ENOTFOUND) {
        cvx_warn("licence: cannot read the last phone-home success from the store: %s",
                 cvx_strerror(status));
    }
    check_start();
}

/* Just after boot: the store is open now; read the last success, then check. */
static void first_check(uv_timer_t *t)
{
    (void)t;
    cvx_store_t *st = cvx_store_default();
    if (st == NULL || cvx_store_setting_get(st, HOME_SETTING_KEY, on_last_ok, NULL) != 0)
        on_last_ok(NULL, CVX_EUNAVAIL, NULL, 0);
}

static int home_prove(const cvx_license_t *lic, cvx_license_proof_cb done)
{
    const cvx_license_conf_t *conf = cvx_license_conf();
    H.done = done;
    if (conf->server_url == NULL || conf->server_url[0] == '\0' || conf->server_id == NULL ||
        conf->server_id[0] == '\0') {
        snprintf(H.state, sizeof(H.state),
                 "[license] server_url and server_id must be set for provider home");
        done(CVX_EINVAL, NULL, H.state);
        return 0;
    }
    snprintf(H.serial, sizeof(H.serial), "%s", lic->serial);
    /* The handles exist only once proving starts, so that a daemon that does not use this
     * provider never has a handle of this module on its loop. */
    uv_timer_init(H.loop, &H.curl_timer);
    uv_timer_init(H.loop, &H.retry_timer);
    H.handles_open = 2;
    H.timers = 1;
    cvx_license_hash_secret(conf->server_id, strlen(conf->server_id), H.hash);
    snprintf(H.state, sizeof(H.state), "checking with the licence server");
    uv_timer_start(&H.retry_timer, first_check, 0, 0);
    return 0;
}

static void home_describe(void (*line)(void *arg, const char *key, const char *value), void *arg)
{
    char last[40] = "never";
    if (H.last_ok != 0)
        fmt_time(H.last_ok, last, sizeof(last));
    line(arg, "server", cvx_license_conf()->server_url ? cvx_license_conf()->server_url : "-");
    line(arg, "last_success", last);
    line(arg, "phone_home", H.state);
}

static void on_timer_closed(uv_handle_t *h)
{
    (void)h;
    H.handles_open--;
}

static void home_stop(void)
{
    if (H.stopping)
        return;
    H.stopping = 1;
    if (H.easy != NULL) {
        curl_multi_remove_handle(H.multi, H.easy); /* closes its sockets: CURL_POLL_REMOVE */
        curl_easy_cleanup(H.easy);
        H.easy = NULL;
    }
    if (H.timers) {
        uv_close((uv_handle_t *)&H.curl_timer, on_timer_closed);
        uv_close((uv_handle_t *)&H.retry_timer, on_timer_closed);
    }
}

static const cvx_license_provider_t home_provider = {
    .size = sizeof(cvx_license_provider_t),
    .name = "home",
    .prove = home_prove,
    .describe = home_describe,
    .stop = home_stop,
};

static int home_load(cvx_module_env_t *env)
{
    memset(&H, 0, sizeof(H));
    H.loop = env->loop;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        cvx_module_decline(env, "libcurl cannot be initialised");
        return CVX_EDECLINED;
    }
    H.multi = curl_multi_init();
    if (H.multi == NULL) {
        curl_global_cleanup();
        return CVX_ENOMEM;
    }
    curl_multi_setopt(H.multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(H.multi, CURLMOPT_TIMERFUNCTION, on_timeout);
    int rc = cvx_license_provider_register(&home_provider);
    if (rc != 0) {
        curl_multi_cleanup(H.multi);
        curl_global_cleanup();
    }
    return rc;
}

static void home_unload(void)
{
    cvx_license_provider_unregister(&home_provider);
    if (H.timers && !H.stopping)
        cvx_warn("licence: license_home unloaded without a stop");
    curl_multi_cleanup(H.multi);
    curl_global_cleanup();
}

static const cvx_module_t license_home_module = {
    .abi_major = CVX_MODULE_ABI_MAJOR,
    .abi_minor = CVX_MODULE_ABI_MINOR,
    .size = sizeof(cvx_module_t),
    .signature = CVX_MODULE_SIGNATURE,
    .name = "license_home",
    .version = "1.0",
    .description = "licence proof by phoning home (libcurl on the loop)",
    .kind = CVX_MODULE_SERVICE,
    .roles = CVX_ROLE_SYSTEM,
    .load = home_load,
    .unload = home_unload,
};

CVX_MODULE_DEFINE(license_home_module)
