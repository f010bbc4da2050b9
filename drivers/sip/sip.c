/*
 * The SIP driver: trunks to IP PBXs and SIP carriers through Sofia-SIP's nua, on the process's
 * loop.  One module, any number of "[sip:NAME]" instances; each instance has one or more
 * listeners (one nua each, all on the process's single su_root), its trusted addresses and
 * digest users, an optional registration to a trunk, number mapping and redirect policy.
 *
 * This file holds the module descriptor, the option table, the instance lifecycle and the
 * dispatch of nua events to calls (sip_call.c), registration and MWI (sip_reg.c).
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sofia-sip/sip_header.h>
#include <sofia-sip/tport_tag.h>

#include "cvx/error.h"
#include "cvx/log.h"
#include "cvx/media.h"
#include "cvx/module.h"
#include "sip_int.h"

static const char *const picks[] = {"first", "last", NULL};

const cvx_option_t sip_options[] = {
    {"listen", CVX_OPT_LIST, offsetof(sip_conf_t, listen), "127.0.0.1:5060", 0, 0, NULL, 0,
     "Where to accept SIP: [udp:|tcp:|tls:]ADDRESS:PORT, IPv6 in brackets ([::1]:5060); "
     "without a transport both UDP and TCP.  Repeat the key for more listeners (at most 8)."},
    {"tls_cert_dir", CVX_OPT_STRING, offsetof(sip_conf_t, tls_cert_dir), NULL, 0, 0, NULL, 0,
     "Directory with agent.pem (certificate and key) and cafile.pem, for tls: listeners."},
    {"trusted", CVX_OPT_LIST, offsetof(sip_conf_t, trusted), "", 0, 0, NULL, 0,
     "Addresses (or ADDRESS/PREFIX networks) of the PBXs whose calls are taken without "
     "authentication.  Repeat the key for more."},
    {"auth_user", CVX_OPT_LIST, offsetof(sip_conf_t, auth_users), "", 0, 0, NULL, 0,
     "USER:PASSWORD allowed to call in from untrusted addresses with digest authentication. "
     "With none, untrusted sources get 403 Forbidden."},
    {"realm", CVX_OPT_STRING, offsetof(sip_conf_t, realm), "callvox", 0, 0, NULL, 0,
     "The digest authentication realm."},
    {"registrar", CVX_OPT_STRING, offsetof(sip_conf_t, registrar), NULL, 0, 0, NULL, 0,
     "Register to this trunk (sip:HOST[:PORT]); the line is up while registered."},
    {"register_user", CVX_OPT_STRING, offsetof(sip_conf_t, register_user), NULL, 0, 0, NULL, 0,
     "The user name to register (and authenticate) as."},
    {"register_password", CVX_OPT_STRING, offsetof(sip_conf_t, register_password), NULL, 0, 0, NULL,
     0, "The password for the registrar's digest challenge."},
    {"register_expiry", CVX_OPT_DURATION, offsetof(sip_conf_t, register_expiry_ms), "3600s", 60000,
     86400000, NULL, 0, "Registration lifetime asked for; it is refreshed before it runs out."},
    {"register_retry", CVX_OPT_DURATION, offsetof(sip_conf_t, register_retry_ms), "30s", 1000,
     3600000, NULL, 0, "After a failed registration, register again this long later."},
    {"proxy", CVX_OPT_STRING, offsetof(sip_conf_t, proxy), NULL, 0, 0, NULL, 0,
     "Where outbound calls, transfers and MWI go when given a bare number (sip:HOST[:PORT])."},
    {"number_map", CVX_OPT_LIST, offsetof(sip_conf_t, number_map), "", 0, 0, NULL, 0,
     "FROM>TO: a called or redirecting number starting with FROM has it replaced by TO "
     "(strip: '9>', add: '>1', replace: '+1555>'); the first matching rule applies."},
    {"redirect_pick", CVX_OPT_ENUM, offsetof(sip_conf_t, redirect_pick), "first", 0, 0, picks, 0,
     "Whether the first (original) or the last redirection picks the mailbox."},
    {"rtp_address", CVX_OPT_STRING, offsetof(sip_conf_t, rtp_address), NULL, 0, 0, NULL, 0,
     "Local address for RTP; default: the address of the listener the call came in on."},
    {"rtp_port_min", CVX_OPT_INT, offsetof(sip_conf_t, rtp_port_min), "20000", 1024, 65534, NULL, 0,
     "Lowest RTP port."},
    {"rtp_port_max", CVX_OPT_INT, offsetof(sip_conf_t, rtp_port_max), "29999", 1025, 65535, NULL, 0,
     "Highest RTP port."},
    {"media_timeout", CVX_OPT_DURATION, offsetof(sip_conf_t, media_timeout_ms), "30s", 0, 3600000,
     NULL, 0, "Hang up when no RTP arrives for this long (0: never); not while on hold."},
    {"max_calls", CVX_OPT_INT, offsetof(sip_conf_t, max_calls), "1000", 1, 100000, NULL, 0,
     "Calls at once on this instance; more get 503 Service Unavailable."},
    CVX_OPTIONS_END,
};

static sip_inst_t *all_insts[64];

sip_inst_t *sip_inst_first(void)
{
    for (size_t i = 0; i < sizeof(all_insts) / sizeof(all_insts[0]); i++)
        if (all_insts[i] != NULL)
            return all_insts[i];
    return NULL;
}

static void track(sip_inst_t *si, int add)
{
    for (size_t i = 0; i < sizeof(all_insts) / sizeof(all_insts[0]); i++) {
        if (add && all_insts[i] == NULL) {
            all_insts[i] = si;
            return;
        }
        if (!add && all_insts[i] == si) {
            all_insts[i] = NULL;
            return;
        }
    }
}

size_t sip_inst_list(sip_inst_t **out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < sizeof(all_insts) / sizeof(all_insts[0]) && n < max; i++)
        if (all_insts[i] != NULL && !all_insts[i]->dead)
            out[n++] = all_insts[i];
    return n;
}

/* --- configuration -------------------------------------------------------------------- */

static int copy_conf(sip_conf_t *dst, const sip_conf_t *src)
{
    *dst = *src;
    for (const cvx_option_t *o = sip_options; o->name != NULL; o++) {
        void *d = (char *)dst + o->offset;
        const void *s = (const char *)src + o->offset;
        if (o->type == CVX_OPT_STRING) {
            const char *v = *(char *const *)s;
            *(char **)d = v ? strdup(v) : NULL;
            if (v && *(char **)d == NULL)
                return CVX_ENOMEM;
        } else if (o->type == CVX_OPT_LIST) {
            const cvx_strlist_t *sl = s;
            cvx_strlist_t *dl = d;
            dl->n = 0;
            dl->v = sl->n ? calloc(sl->n, sizeof(char *)) : NULL;
            if (sl->n && dl->v == NULL)
                return CVX_ENOMEM;
            for (size_t i = 0; i < sl->n; i++) {
                dl->v[i] = strdup(sl->v[i]);
                if (dl->v[i] == NULL)
                    return CVX_ENOMEM;
                dl->n++;
            }
        }
    }
    return 0;
}

/* Parses "[udp:|tcp:|tls:]HOST:PORT" into a listener. */
static int parse_listen(const char *text, sip_listener_t *l, char *err, size_t errsize)
{
    const char *p = text;
    const char *transport = NULL;
    if (strncasecmp(p, "udp:", 4) == 0 || strncasecmp(p, "tcp:", 4) == 0 ||
        strncasecmp(p, "tls:", 4) == 0) {
        transport = strncasecmp(p, "udp:", 4) == 0   ? "udp"
                    : strncasecmp(p, "tcp:", 4) == 0 ? "tcp"
                                                     : "tls";
        p += 4;
    }
    char host[64];
    const char *port;
    if (*p == '[') {
        const char *close = strchr(p, ']');
        if (close == NULL || close[1] != ':' || (size_t)(close - p - 1) >= sizeof(host)) {
            snprintf(err, errsize, "'%s' is not [udp:|tcp:|tls:]ADDRESS:PORT", text);
            return -1;
        }
        memcpy(host, p + 1, (size_t)(close - p - 1));
        host[close - p - 1] = '\0';
        port = close + 2;
        l->family = AF_INET6;
    } else {
        const char *colon = strrchr(p, ':');
        if (colon == NULL || (size_t)(colon - p) >= sizeof(host) || colon == p) {
            snprintf(err, errsize, "'%s' is not [udp:|tcp:|tls:]ADDRESS:PORT", text);
            return -1;
        }
        memcpy(host, p, (size_t)(colon - p));
        host[colon - p] = '\0';
        port = colon + 1;
        l->family = AF_INET;
    }
    uint8_t buf[16];
    if (inet_pton(l->family, host, buf) != 1) {
        snprintf(err, errsize, "'%s': '%s' is not an IP address", text, host);
        return -1;
    }
    char *end;
    long pn = strtol(port, &end, 10);
    if (*port == '\0' || *end != '\0' || pn < 1 || pn > 65535) {
        snprintf(err, errsize, "'%s': '%s' is not a port number", text, port);
        return -1;
    }
    snprintf(l->host, sizeof(l->host), "%s", host);
    const char *br_open = l->family == AF_INET6 ? "[" : "",
               *br_close = l->family == AF_INET6 ? "]" : "";
    l->tls = transport && strcmp(transport, "tls") == 0;
    /* Sofia-SIP's nta binds a "sip:" URL only to udp, tcp and sctp, whatever its ;transport=
     * says ("sip:...;transport=tls" fails with EPROTONOSUPPORT); a TLS listener is bound by a
     * "sips:" URL, whose only transport is tls (nta_agent_add_tport). */
    if (l->tls)
        snprintf(l->url, sizeof(l->url), "sips:%s%s%s:%ld", br_open, host, br_close, pn);
    else if (transport)
        snprintf(l->url, sizeof(l->url), "sip:%s%s%s:%ld;transport=%s", br_open, host, br_close, pn,
                 transport);
    else
        snprintf(l->url, sizeof(l->url), "sip:%s%s%s:%ld", br_open, host, br_close, pn);
    snprintf(l->label, sizeof(l->label), "%s %s%s%s:%ld", transport ? transport : "udp+tcp",
             br_open, host, br_close, pn);
    return 0;
}

static int check_conf(sip_inst_t *si, char *err, size_t errsize)
{
    const sip_conf_t *c = &si->conf;
    if (c->listen.n == 0 || c->listen.n > SIP_MAX_LISTENERS) {
        snprintf(err, errsize, "listen: between 1 and %d listeners, not %zu", SIP_MAX_LISTENERS,
                 c->listen.n);
        return -1;
    }
    for (size_t i = 0; i < c->listen.n; i++) {
        sip_listener_t *l = &si->listeners[i];
        if (parse_listen(c->listen.v[i], l, err, errsize) != 0)
            return -1;
        if (l->tls && (c->tls_cert_dir == NULL || c->tls_cert_dir[0] == '\0')) {
            snprintf(err, errsize, "listen: '%s' needs tls_cert_dir", c->listen.v[i]);
            return -1;
        }
        l->si = si;
    }
    si->nlisteners = (unsigned)c->listen.n;
    if (c->trusted.n > SIP_MAX_TRUSTED) {
        snprintf(err, errsize, "trusted: at most %d entries", SIP_MAX_TRUSTED);
        return -1;
    }
    for (size_t i = 0; i < c->trusted.n; i++) {
        if (sip_net_parse(c->trusted.v[i], &si->trusted[i]) != 0) {
            snprintf(err, errsize, "trusted: '%s' is not an address or ADDRESS/PREFIX",
                     c->trusted.v[i]);
            return -1;
        }
    }
    si->ntrusted = (unsigned)c->trusted.n;
    for (size_t i = 0; i < c->auth_users.n; i++) {
        const char *colon = strchr(c->auth_users.v[i], ':');
        if (colon == NULL || colon == c->auth_users.v[i]) {
            snprintf(err, errsize, "auth_user: '%s' is not USER:PASSWORD", c->auth_users.v[i]);
            return -1;
        }
    }
    for (size_t i = 0; i < c->number_map.n; i++) {
        if (strchr(c->number_map.v[i], '>') == NULL) {
            snprintf(err, errsize, "number_map: '%s' is not FROM>TO", c->number_map.v[i]);
            return -1;
        }
    }
    if (c->rtp_port_min >= c->rtp_port_max) {
        snprintf(err, errsize, "rtp_port_min (%lld) must be below rtp_port_max (%lld)",
                 c->rtp_port_min, c->rtp_port_max);
        return -1;
    }
    if (c->registrar && c->registrar[0] != '\0' &&
        (c->register_user == NULL || c->register_user[0] == '\0')) {
        snprintf(err, errsize, "registrar is set but register_user is not");
        return -1;
    }
    return 0;
}

/* --- lifecycle ------------------------------------------------------------------------ */

static void inst_free(sip_inst_t *si)
{
    track(si, 0);
    cvx_conf_release(sip_options, &si->conf);
    free(si);
}

static int sip_create(cvx_drv_inst_t *inst, const void *conf, void **priv)
{
    sip_inst_t *si = calloc(1, sizeof(*si));
    if (si == NULL)
        return CVX_ENOMEM;
    si->inst = inst;
    if (copy_conf(&si->conf, conf) != 0) {
        inst_free(si);
        return CVX_ENOMEM;
    }
    char err[256];
    if (check_conf(si, err, sizeof(err)) != 0) {
        cvx_log_ctx_t ctx = cvx_drv_inst_log_ctx(inst, "reading the configuration");
        cvx_log_ctx(CVX_LOG_ERROR, &ctx, "%s", err);
        inst_free(si);
        return CVX_EINVAL;
    }
    if (getrandom(si->nonce_key, sizeof(si->nonce_key), 0) != (ssize_t)sizeof(si->nonce_key)) {
        inst_free(si);
        return CVX_EIO;
    }
    si->sdp_session = (uint64_t)si->nonce_key[0] << 24 | (uint64_t)si->nonce_key[1] << 16 |
                      (uint64_t)si->nonce_key[2] << 8 | si->nonce_key[3];
    track(si, 1);
    *priv = si;
    return 0;
}

/* Checks that the listener's address can be bound before nua_create() tries: a nua_create()
 * that fails to bind leaves a reference on the su_root's port behind (a leak inside Sofia-SIP
 * that ASan reports), so the common failure (address in use or not local) is caught here.
 * Returns 1 when every transport of the listener could bind. */
static int listener_probe(const sip_listener_t *l, const char *cert_dir)
{
    if (l->tls) {
        /* Sofia-SIP's TLS transport reads agent.pem (certificate and key) from the directory;
         * without it nua_create() fails, leaking as above. */
        char pem[4096];
        snprintf(pem, sizeof(pem), "%s/agent.pem", cert_dir ? cert_dir : ".");
        if (access(pem, R_OK) != 0)
            return 0;
    }
    const char *colon = strrchr(l->label, ':');
    if (colon == NULL)
        return 1; /* nothing to check against; let Sofia say */
    int port = atoi(colon + 1);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t len;
    if (l->family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, l->host, &a->sin6_addr) != 1)
            return 1;
        len = sizeof(*a);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, l->host, &a->sin_addr) != 1)
            return 1;
        len = sizeof(*a);
    }
    int udp = strncmp(l->label, "udp", 3) == 0;
    int tcp = l->tls || strstr(l->label, "tcp") != NULL; /* TLS listens on TCP */
    for (int i = 0; i < 2; i++) {
        if ((i == 0 && !udp) || (i == 1 && !tcp))
            continue;
        int fd = socket(l->family, (i == 0 ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return 1;
        int one = 1;
        if (i == 1)
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        int ok = bind(fd, (struct sockaddr *)&ss, len) == 0;
        close(fd);
        if (!ok)
            return 0;
    }
    return 1;
}

static int sip_start(void *priv)
{
    sip_inst_t *si = priv;
    cvx_log_ctx_t ctx = cvx_drv_inst_log_ctx(si->inst, "starting");
    char err[256];
    int rc = sip_reactor_get(cvx_drv_inst_loop(si->inst), &si->reactor, err, sizeof(err));
    if (rc != 0) {
        cvx_log_ctx(CVX_LOG_ERROR, &ctx, "%s", err);
        return rc;
    }
    for (unsigned i = 0; i < si->nlisteners; i++) {
        sip_listener_t *l = &si->listeners[i];
        l->nua = NULL;
        if (listener_probe(l, si->conf.tls_cert_dir))
            l->nua = nua_create(
                sip_reactor_root(si->reactor), sip_nua_callback, l, NUTAG_URL(l->url),
                NUTAG_MEDIA_ENABLE(0), NUTAG_AUTOALERT(0), NUTAG_AUTOANSWER(0), NUTAG_AUTOACK(1),
                SIPTAG_ALLOW_STR("INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO, "
                                 "REFER, NOTIFY, SUBSCRIBE"),
                NUTAG_ALLOW_EVENTS("message-summary"), NUTAG_APPL_METHOD("UPDATE, INFO, MESSAGE"),
                NUTAG_ENABLEMESSAGE(1), SIPTAG_USER_AGENT_STR("callvox/" CVX_VERSION),
                SIPTAG_SUPPORTED_STR("timer"),
                TAG_IF(l->tls, NUTAG_CERTIFICATE_DIR(si->conf.tls_cert_dir)), TAG_END());
        if (l->nua == NULL) {
            if (l->tls)
                cvx_log_ctx(CVX_LOG_ERROR, &ctx,
                            "cannot listen on %s: the address is in use or not local, or the "
                            "certificate in %s is missing or unusable (Sofia-SIP needs agent.pem "
                            "there: certificate and private key)",
                            l->label, si->conf.tls_cert_dir);
            else
                cvx_log_ctx(CVX_LOG_ERROR, &ctx,
                            "cannot listen on %s: the address is in use or not local", l->label);
            /* The ones created so far are shut down with the instance. */
            si->nlisteners = i;
            return CVX_EIO;
        }
        cvx_log_ctx(CVX_LOG_INFO, &ctx, "listening on %s", l->label);
    }
    si->started = 1;
    sip_reactor_kick(si->reactor);
    if (si->conf.registrar && si->conf.registrar[0] != '\0') {
        cvx_event_t ev = {.type = CVX_EV_LINE_STATE, .u.line = {0, "registering"}};
        cvx_drv_event(si->inst, NULL, &ev);
        sip_reg_start(si);
    } else {
        cvx_event_t ev = {.type = CVX_EV_LINE_STATE, .u.line = {1, "listening"}};
        cvx_drv_event(si->inst, NULL, &ev);
    }
    return 0;
}

static void sip_stop(void *priv)
{
    sip_inst_t *si = priv;
    if (!si->started)
        return;
    si->started = 0;
    sip_call_end_all(si, CVX_CAUSE_SHUTDOWN);
    sip_reg_stop(si);
    sip_reactor_kick(si->reactor);
}

/* The last SIP instance is gone: the media clock its calls used is closed too when no RTP
 * session is left (it is created again on first use), so that the loop can end. */
static void media_release(void)
{
#ifdef SIP_HAVE_RTP
    if (sip_inst_first() == NULL && cvx_rtp_count() == 0)
        cvx_media_clock_close();
#endif
}

static void listener_destroy(void *arg)
{
    sip_listener_t *l = arg;
    sip_inst_t *si = l->si;
    nua_destroy(l->nua);
    l->nua = NULL;
    if (--si->shut_pending == 0) {
        sip_reactor_t *r = si->reactor;
        inst_free(si);
        sip_reactor_put(r);
        media_release();
    }
}

static void sip_destroy(void *priv)
{
    sip_inst_t *si = priv;
    if (si->started)
        sip_reg_stop(si);
    else if (si->reg.retry != NULL)
        su_timer_destroy(si->reg.retry);
    si->reg.retry = NULL;
    si->dead = 1;
    si->started = 0;
    sip_call_free_all(si);
    sip_mwi_free_all(si);
    if (si->reg.nh != NULL) {
        nua_handle_bind(si->reg.nh, NULL);
        nua_handle_destroy(si->reg.nh);
        si->reg.nh = NULL;
    }
    unsigned live = 0;
    for (unsigned i = 0; i < si->nlisteners; i++)
        if (si->listeners[i].nua != NULL)
            live++;
    if (live == 0) {
        sip_reactor_t *r = si->reactor;
        inst_free(si);
        sip_reactor_put(r);
        media_release();
        return;
    }
    /* nua_shutdown() completes asynchronously (nua_r_shutdown); the listeners and the
     * instance are freed then, from the loop. */
    si->shut_pending = live;
    cvx_debug("sip: shutting down %u listener%s", live, live == 1 ? "" : "s");
    for (unsigned i = 0; i < si->nlisteners; i++)
        if (si->listeners[i].nua != NULL)
            nua_shutdown(si->listeners[i].nua);
    sip_reactor_kick(si->reactor);
}

/* --- nua events ----------------------------------------------------------------------- */

static int is_request_event(nua_event_t e)
{
    switch (e) {
    case nua_i_options:
    case nua_i_message:
    case nua_i_subscribe:
    case nua_i_register:
    case nua_i_publish:
    case nua_i_refer:
    case nua_i_notify:
    case nua_i_method:
    case nua_i_info:
    case nua_i_update:
    case nua_i_error:
        return 1;
    default:
        return 0;
    }
}

void sip_nua_callback(nua_event_t event, int status, char const *phrase, nua_t *nua,
                      sip_listener_t *l, nua_handle_t *nh, sip_hm_t *hm, sip_t const *sip,
                      tagi_t tags[])
{
    (void)nua;
    sip_inst_t *si = l->si;
    if (event == nua_r_shutdown) {
        cvx_debug("sip: %s: shutdown %d %s", l->label, status, phrase ? phrase : "");
        if (status >= 200 && !l->shut && si->dead) {
            l->shut = 1;
            sip_reactor_defer(si->reactor, listener_destroy, l);
        }
        return;
    }
    if (si->dead) {
        if (nh != NULL && hm == NULL && (event == nua_i_invite || is_request_event(event)))
            nua_handle_destroy(nh);
        return;
    }
    if (hm == NULL) {
        if (event == nua_i_invite && nh != NULL) {
            sip_call_incoming(l, nh, sip);
        } else if (event == nua_i_subscribe && nh != NULL) {
            sip_sub_incoming(l, nh, sip);
        } else if (nh != NULL && event == nua_i_message) {
            /* Not a messaging server: 405 with the methods we take. */
            nua_respond(nh, 405, "Method Not Allowed", NUTAG_WITH_THIS(l->nua),
                        SIPTAG_ALLOW_STR("INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO, REFER, "
                                         "NOTIFY"),
                        TAG_END());
            nua_handle_destroy(nh);
        } else if (nh != NULL && (event == nua_i_info || event == nua_i_update)) {
            /* Outside a dialog: these methods need one. */
            nua_respond(nh, 481, "Call/Transaction Does Not Exist", NUTAG_WITH_THIS(l->nua),
                        TAG_END());
            nua_handle_destroy(nh);
        } else if (nh != NULL && is_request_event(event)) {
            /* nua has answered it already (OPTIONS: 200 with Allow and Accept). */
            nua_handle_destroy(nh);
        }
        return;
    }
    switch (hm->kind) {
    case SIP_HM_CALL:
        sip_call_event((sip_call_t *)hm, event, status, phrase, sip, tags);
        break;
    case SIP_HM_REG:
        sip_reg_event((sip_reg_t *)hm, event, status, phrase, sip, tags);
        break;
    case SIP_HM_MWI:
        sip_mwi_event((sip_mwi_t *)hm, event, status, phrase, sip, tags);
        break;
    case SIP_HM_SUB:
        sip_sub_event((sip_sub_t *)hm, event, status, phrase, sip, tags);
        break;
    }
}

sip_listener_t *sip_listener_for(sip_inst_t *si, const char *uri)
{
    int v6 = uri != NULL && strchr(uri, '[') != NULL;
    /* A sips: target needs a listener with the TLS transport. */
    if (uri != NULL && strncasecmp(uri, "sips:", 5) == 0)
        for (unsigned i = 0; i < si->nlisteners; i++)
            if (si->listeners[i].tls && si->listeners[i].nua != NULL &&
                (si->listeners[i].family == AF_INET6) == v6)
                return &si->listeners[i];
    for (unsigned i = 0; i < si->nlisteners; i++)
        if ((si->listeners[i].family == AF_INET6) == v6 && si->listeners[i].nua != NULL)
            return &si->listeners[i];
    return si->nlisteners > 0 ? &si->listeners[0] : NULL;
}

int sip_dest_uri(sip_inst_t *si, const char *dest, char *buf, size_t size)
{
    if (dest == NULL || dest[0] == '\0')
        return CVX_EINVAL;
    if (strncasecmp(dest, "sip:", 4) == 0 || strncasecmp(dest, "sips:", 5) == 0 ||
        strncasecmp(dest, "tel:", 4) == 0) {
        snprintf(buf, size, "%s", dest);
        return 0;
    }
    const char *proxy = si->conf.proxy;
    if (proxy == NULL || proxy[0] == '\0')
        proxy = si->conf.registrar;
    if (proxy == NULL || proxy[0] == '\0')
        return CVX_EINVAL;
    for (const char *p = dest; *p; p++)
        if (!(*p == '+' || *p == '*' || *p == '#' || (*p >= '0' && *p <= '9') ||
              (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '-' || *p == '.'))
            return CVX_EINVAL;
    /* A sips: proxy (a trunk over TLS) keeps its scheme: the request goes over TLS. */
    int sips = strncasecmp(proxy, "sips:", 5) == 0;
    const char *host = sips ? proxy + 5 : strncasecmp(proxy, "sip:", 4) == 0 ? proxy + 4 : proxy;
    snprintf(buf, size, "%s:%s@%s", sips ? "sips" : "sip", dest, host);
    return 0;
}

/* --- module --------------------------------------------------------------------------- */

static int sip_load(cvx_module_env_t *env)
{
    (void)env;
    sip_cmds_register();
    return 0;
}

static void sip_unload(void)
{
    sip_cmds_unregister();
}

static const cvx_driver_ops_t sip_ops = {
    .size = sizeof(cvx_driver_ops_t),
    .options = sip_options,
    .conf_size = sizeof(sip_conf_t),
    .create = sip_create,
    .start = sip_start,
    .stop = sip_stop,
    .destroy = sip_destroy,
    .answer = sip_op_answer,
    .hangup = sip_op_hangup,
    .originate = sip_op_originate,
    .transfer = sip_op_transfer,
    .send_dtmf = sip_op_send_dtmf,
    .write_frame = sip_op_write_frame,
    .set_mwi = sip_op_set_mwi,
    .reload = NULL,
};

static const cvx_module_t sip_module = {
    .abi_major = CVX_MODULE_ABI_MAJOR,
    .abi_minor = CVX_MODULE_ABI_MINOR,
    .size = sizeof(cvx_module_t),
    .signature = CVX_MODULE_SIGNATURE,
    .name = "sip",
    .version = "1.0",
    .description = "SIP trunks through Sofia-SIP (nua) on the loop",
    .kind = CVX_MODULE_DRIVER,
    .roles = CVX_ROLE_CALL,
    .load = sip_load,
    .unload = sip_unload,
    .driver = &sip_ops,
};

CVX_MODULE_DEFINE(sip_module)
