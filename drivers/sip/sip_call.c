/*
 * SIP calls: one sip_call_t per INVITE dialog, bound to its nua handle.
 *
 * Lifetime: the call is created when the INVITE arrives (or when we place one) and freed when
 * nua reports the dialog terminated (nua_i_state, nua_callstate_terminated); it then destroys
 * the handle.  While the call has a channel it holds the driver's reference to it; the hangup
 * is reported exactly once (CVX_EV_HANGUP), after which the reference is dropped.  Hangups we
 * start (BYE, a final error response) are reported from a deferred job, never from inside the
 * operation that caused them; hangups the far end starts are reported from the nua event.
 * Deferred jobs hold a reference on the call (refs) so it outlives them.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sofia-sip/msg_addr.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/su_tag.h>
#include <sofia-sip/su_tagarg.h>
#include <sofia-sip/url.h>

#include "cvx/error.h"
#include "cvx/license.h"
#include "cvx/log.h"
#include "sip_int.h"
#include "sip_redirect.h"

typedef struct sip_call_ext {
    sip_call_t c;
    unsigned refs;
    int licensed; /* holds a licensed port (cvx_license_admit_call) until call_free */
} sip_call_ext_t;

/* --- media (core/media through cvx/rtp.h when it is built) ----------------------------- */

#ifdef SIP_HAVE_RTP
int sip_media_available(void)
{
    return 1;
}
#else
int sip_media_available(void)
{
    return 0;
}
static uint16_t fake_port_next;
#endif

static const char *media_addr(const sip_call_t *c)
{
    const char *a = c->si->conf.rtp_address;
    return a && a[0] ? a : c->l->host;
}

/* Allocates the local RTP port for the SDP.  Returns 0 or CVX_E*. */
static int media_create(sip_call_t *c)
{
    snprintf(c->local_addr, sizeof(c->local_addr), "%s", media_addr(c));
#ifdef SIP_HAVE_RTP
    cvx_rtp_params_t p = {
        .bind_addr = c->local_addr,
        .port_min = (uint16_t)c->si->conf.rtp_port_min,
        .port_max = (uint16_t)c->si->conf.rtp_port_max,
        .media_timeout_ms = c->si->conf.media_timeout_ms,
        .ptime_ms = 20,
    };
    int rc = cvx_rtp_create(cvx_drv_inst_loop(c->si->inst), c->si->inst, c->chan, &p, &c->rtp);
    if (rc != 0)
        return rc;
    c->local_port = cvx_rtp_local_port(c->rtp);
    return 0;
#else
    /* No media engine in this build: signalling only, with a port from the range that
     * nothing listens on. */
    uint16_t lo = (uint16_t)c->si->conf.rtp_port_min, hi = (uint16_t)c->si->conf.rtp_port_max;
    if (fake_port_next < lo || fake_port_next + 1 > hi)
        fake_port_next = lo + (lo & 1);
    c->local_port = fake_port_next;
    fake_port_next += 2;
    return 0;
#endif
}

static void media_apply(sip_call_t *c)
{
#ifdef SIP_HAVE_RTP
    if (c->rtp == NULL || !c->have_remote)
        return;
    cvx_rtp_remote_t r = {.codec = c->remote.codec,
                          .payload_type = c->remote.payload_type,
                          .te_payload_type = c->remote.te_payload_type};
    if (sip_sdp_remote_addr(&c->remote, &r.addr) != 0)
        return;
    cvx_rtp_set_remote(c->rtp, &r);
    cvx_rtp_start(c->rtp);
    cvx_rtp_hold(c->rtp, c->remote.hold);
#else
    (void)c;
#endif
}

static void media_destroy(sip_call_t *c)
{
#ifdef SIP_HAVE_RTP
    if (c->rtp != NULL)
        cvx_rtp_destroy(c->rtp);
#endif
    c->rtp = NULL;
}

/* --- call objects --------------------------------------------------------------------- */

static sip_call_t *call_new(sip_listener_t *l, nua_handle_t *nh)
{
    sip_call_ext_t *x = calloc(1, sizeof(*x));
    if (x == NULL)
        return NULL;
    sip_call_t *c = &x->c;
    x->refs = 1;
    c->hm.kind = SIP_HM_CALL;
    c->si = l->si;
    c->l = l;
    c->nh = nh;
    c->cause = CVX_CAUSE_NORMAL;
    c->next = l->si->calls;
    if (c->next)
        c->next->prev = c;
    l->si->calls = c;
    l->si->ncalls++;
    nua_handle_bind(nh, &c->hm);
    return c;
}

static void call_unref(sip_call_t *c)
{
    sip_call_ext_t *x = (sip_call_ext_t *)c;
    if (--x->refs > 0)
        return;
    free(x);
}

static void report_hangup(sip_call_t *c)
{
    if (c->chan == NULL)
        return;
    cvx_chan_t *chan = c->chan;
    media_destroy(c);
    c->state = SIP_CALL_DONE;
    if (!c->si->dead) {
        cvx_event_t ev = {.type = CVX_EV_HANGUP, .u.hangup = {c->cause}};
        cvx_drv_event(c->si->inst, chan, &ev);
    }
    cvx_chan_set_driver_data(chan, NULL);
    c->chan = NULL;
    cvx_chan_unref(chan);
}

static void deferred_hangup(void *arg)
{
    sip_call_t *c = arg;
    report_hangup(c);
    call_unref(c);
}

static void defer_hangup(sip_call_t *c)
{
    ((sip_call_ext_t *)c)->refs++;
    sip_reactor_defer(c->si->reactor, deferred_hangup, c);
}

/* Unlinks the call and destroys its handle; the memory goes with the last reference. */
static void call_free(sip_call_t *c)
{
    sip_inst_t *si = c->si;
    report_hangup(c);
    if (c->prev)
        c->prev->next = c->next;
    else if (si->calls == c)
        si->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->next = c->prev = NULL;
    si->ncalls--;
    if (((sip_call_ext_t *)c)->licensed) {
        ((sip_call_ext_t *)c)->licensed = 0;
        cvx_license_release_call();
    }
    if (c->nh != NULL) {
        nua_handle_bind(c->nh, NULL);
        nua_handle_destroy(c->nh);
        c->nh = NULL;
    }
    call_unref(c);
}

/* A final error response to the INVITE; the dialog's end frees the call. */
static void reject(sip_call_t *c, int status, const char *phrase, tag_type_t tag, tag_value_t value,
                   ...)
{
    ta_list ta;
    ta_start(ta, tag, value);
    nua_respond(c->nh, status, phrase, ta_tags(ta));
    ta_end(ta);
    c->state = SIP_CALL_ENDING;
    sip_reactor_kick(c->si->reactor);
}

static int cause_status(cvx_cause_t cause, const char **phrase)
{
    switch (cause) {
    case CVX_CAUSE_BUSY:
        *phrase = "Busy Here";
        return 486;
    case CVX_CAUSE_UNALLOCATED:
    case CVX_CAUSE_NO_ROUTE:
        *phrase = "Not Found";
        return 404;
    case CVX_CAUSE_REJECTED:
        *phrase = "Decline";
        return 603;
    case CVX_CAUSE_CONGESTION:
    case CVX_CAUSE_TEMP_FAILURE:
    case CVX_CAUSE_SHUTDOWN:
        *phrase = "Service Unavailable";
        return 503;
    case CVX_CAUSE_MEDIA_TIMEOUT:
        *phrase = "Request Timeout";
        return 408;
    default:
        *phrase = "Temporarily Unavailable";
        return 480;
    }
}

static cvx_cause_t status_cause(int status)
{
    switch (status) {
    case 486:
    case 600:
        return CVX_CAUSE_BUSY;
    case 404:
    case 484:
    case 604:
        return CVX_CAUSE_UNALLOCATED;
    case 408:
    case 480:
    case 487:
        return CVX_CAUSE_NO_ANSWER;
    case 403:
    case 603:
        return CVX_CAUSE_REJECTED;
    case 503:
        return CVX_CAUSE_CONGESTION;
    default:
        return CVX_CAUSE_TEMP_FAILURE;
    }
}

/* --- incoming calls ------------------------------------------------------------------- */

/* The number in a Sofia URL, bounded. */
static void url_number(const url_t *url, char *out, size_t size)
{
    out[0] = '\0';
    if (url == NULL)
        return;
    char buf[1024];
    issize_t n = url_e(buf, sizeof(buf), url);
    if (n <= 0 || (size_t)n >= sizeof(buf))
        return;
    buf[n] = '\0';
    if (sip_uri_number(buf, (size_t)n, out, size) != 0)
        out[0] = '\0';
}

static void display_name(const char *d, char *out, size_t size)
{
    out[0] = '\0';
    if (d == NULL)
        return;
    size_t len = strnlen(d, 256);
    if (len >= 2 && d[0] == '"' && d[len - 1] == '"') {
        d++;
        len -= 2;
    }
    size_t k = 0;
    for (size_t i = 0; i < len && k + 1 < size; i++) {
        if (d[i] == '\\' && i + 1 < len)
            i++;
        if ((unsigned char)d[i] >= 0x20)
            out[k++] = d[i];
    }
    out[k] = '\0';
}

static void call_info(sip_inst_t *si, sip_t const *sip, cvx_call_info_t *info)
{
    memset(info, 0, sizeof(*info));
    if (sip->sip_from != NULL) {
        url_number(sip->sip_from->a_url, info->calling, sizeof(info->calling));
        display_name(sip->sip_from->a_display, info->calling_name, sizeof(info->calling_name));
    }
    url_number(sip->sip_request->rq_url, info->called, sizeof(info->called));
    if (info->called[0] == '\0' && sip->sip_to != NULL)
        url_number(sip->sip_to->a_url, info->called, sizeof(info->called));

    const char *div[SIP_REDIR_MAX_ENTRIES], *hist[SIP_REDIR_MAX_ENTRIES];
    sip_redirect_in_t in = {.diversion = div, .history = hist, .pick_last = si->conf.redirect_pick};
    for (sip_unknown_t const *u = sip->sip_unknown; u != NULL; u = u->un_next) {
        if (u->un_name == NULL || u->un_value == NULL)
            continue;
        if (strcasecmp(u->un_name, "Diversion") == 0 && in.ndiversion < SIP_REDIR_MAX_ENTRIES)
            div[in.ndiversion++] = u->un_value;
        else if (strcasecmp(u->un_name, "History-Info") == 0 && in.nhistory < SIP_REDIR_MAX_ENTRIES)
            hist[in.nhistory++] = u->un_value;
    }
    char ruri[1024];
    issize_t n = url_e(ruri, sizeof(ruri), sip->sip_request->rq_url);
    if (n > 0 && (size_t)n < sizeof(ruri)) {
        ruri[n] = '\0';
        in.ruri = ruri;
    }
    sip_redirect_parse(&in, info);
    sip_number_map(&si->conf.number_map, info->called, sizeof(info->called));
    if (info->original_called[0] != '\0')
        sip_number_map(&si->conf.number_map, info->original_called, sizeof(info->original_called));
}

static void source_text(const struct sockaddr *sa, char *buf, size_t size)
{
    char a[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa != NULL && sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, a, sizeof(a));
        port = ntohs(s4->sin_port);
    } else if (sa != NULL && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof(a));
        port = ntohs(s6->sin6_port);
    }
    snprintf(buf, size, "%s port %u", a, port);
}

/* Trusted source, good digest credentials, or a response (401/403) and 0. */
static int admit(sip_call_t *c, sip_t const *sip)
{
    sip_inst_t *si = c->si;
    msg_t *msg = nua_current_request(c->l->nua);
    su_addrinfo_t *ai = msg ? msg_addrinfo(msg) : NULL;
    const struct sockaddr *sa = ai ? ai->ai_addr : NULL;
    if (sa != NULL && sip_net_match(si->trusted, si->ntrusted, sa))
        return 1;
    char src[96];
    source_text(sa, src, sizeof(src));
    cvx_log_ctx_t ctx = cvx_drv_inst_log_ctx(si->inst, "admitting a call");
    if (si->conf.auth_users.n == 0) {
        si->counters.rejected_untrusted++;
        cvx_log_ctx(CVX_LOG_WARN, &ctx, "INVITE from untrusted %s refused (403)", src);
        reject(c, 403, "Forbidden", TAG_END());
        return 0;
    }
    char user[64];
    int a = sip_auth_check(si, sip, user, sizeof(user));
    if (a == 1) {
        cvx_log_ctx(CVX_LOG_INFO, &ctx, "INVITE from %s authenticated as '%s'", src, user);
        return 1;
    }
    if (a == 0 && sip->sip_authorization != NULL) {
        si->counters.auth_failed++;
        cvx_log_ctx(CVX_LOG_WARN, &ctx, "INVITE from %s: wrong credentials for '%s'", src, user);
    }
    si->counters.challenged++;
    char chal[256];
    sip_auth_challenge(si, a < 0, chal, sizeof(chal));
    reject(c, 401, "Unauthorized", SIPTAG_WWW_AUTHENTICATE_STR(chal), TAG_END());
    return 0;
}

/* Reads the SDP of a request or response into out.  Returns 1 when there is usable SDP,
 * 0 when there is none, or a SIP status to answer with (415, 400, 488). */
static int read_sdp(sip_t const *sip, sip_sdp_t *out)
{
    if (sip->sip_payload == NULL || sip->sip_payload->pl_len == 0)
        return 0;
    if (sip->sip_content_type != NULL && sip->sip_content_type->c_type != NULL &&
        strcasecmp(sip->sip_content_type->c_type, "application/sdp") != 0)
        return 415;
    if (sip_sdp_parse(sip->sip_payload->pl_data, sip->sip_payload->pl_len, out) != 0)
        return 400;
    return out->usable ? 1 : 488;
}

static void answer_bad_sdp(sip_call_t *c, int status, const sip_sdp_t *sdp, int in_dialog)
{
    if (status == 415) {
        nua_respond(c->nh, 415, "Unsupported Media Type", SIPTAG_ACCEPT_STR("application/sdp"),
                    TAG_IF(in_dialog, NUTAG_WITH_THIS(c->l->nua)), TAG_END());
    } else if (status == 400) {
        c->si->counters.bad_sdp++;
        nua_respond(c->nh, 400, "Bad Session Description",
                    TAG_IF(in_dialog, NUTAG_WITH_THIS(c->l->nua)), TAG_END());
    } else {
        c->si->counters.no_codec++;
        char warn[200];
        snprintf(warn, sizeof(warn), "304 callvox \"%s\"", sdp->error);
        nua_respond(c->nh, 488, "Not Acceptable Here", SIPTAG_WARNING_STR(warn),
                    TAG_IF(in_dialog, NUTAG_WITH_THIS(c->l->nua)), TAG_END());
    }
    sip_reactor_kick(c->si->reactor);
}

void sip_call_incoming(sip_listener_t *l, nua_handle_t *nh, sip_t const *sip)
{
    sip_inst_t *si = l->si;
    si->counters.invites++;
    sip_call_t *c = call_new(l, nh);
    if (c == NULL) {
        nua_respond(nh, 500, "Server Internal Error", TAG_END());
        nua_handle_destroy(nh);
        return;
    }
    cvx_log_ctx_t ctx = cvx_drv_inst_log_ctx(si->inst, "receiving an INVITE");
    if (sip == NULL || sip->sip_request == NULL) {
        reject(c, 400, "Bad Request", TAG_END());
        return;
    }
    if (!admit(c, sip))
        return;
    if (!si->started) {
        reject(c, 503, "Service Unavailable", TAG_END());
        return;
    }
    if (si->ncalls > (unsigned)si->conf.max_calls) {
        si->counters.busy++;
        cvx_log_ctx(CVX_LOG_WARN, &ctx, "max_calls (%lld) reached; refusing a call (503)",
                    si->conf.max_calls);
        reject(c, 503, "Service Unavailable", TAG_END());
        return;
    }
    if (cvx_license_admit_call() != 0) {
        si->counters.busy++;
        cvx_log_ctx(CVX_LOG_WARN, &ctx,
                    "every licensed port is in use; refusing a call (503, Retry-After %d)",
                    CVX_LICENSE_RETRY_AFTER_S);
        reject(c, 503, "Service Unavailable", SIPTAG_RETRY_AFTER_STR(CVX_LICENSE_RETRY_AFTER_STR),
               TAG_END());
        return;
    }
    ((sip_call_ext_t *)c)->licensed = 1;
    int s = read_sdp(sip, &c->remote);
    if (s > 1) {
        cvx_log_ctx(CVX_LOG_NOTICE, &ctx, "refusing an INVITE (%d): %s", s,
                    s == 415 ? "the body is not SDP" : c->remote.error);
        answer_bad_sdp(c, s, &c->remote, 0);
        c->state = SIP_CALL_ENDING;
        return;
    }
    c->have_remote = s == 1;
    c->need_answer_in_ack = s == 0;

    cvx_call_info_t info;
    call_info(si, sip, &info);
    cvx_chan_t *chan = cvx_chan_create(si->inst, CVX_DIR_IN, &info);
    if (chan == NULL) {
        reject(c, 500, "Server Internal Error", TAG_END());
        return;
    }
    c->chan = chan;
    cvx_chan_set_driver_data(chan, c);
    int rc = media_create(c);
    if (rc != 0) {
        cvx_log_ctx_t cctx = cvx_chan_log_ctx(chan, "allocating RTP ports");
        cvx_log_ctx(CVX_LOG_ERROR, &cctx, "no RTP port: %s; refusing the call (503)",
                    cvx_strerror(rc));
        cvx_chan_set_driver_data(chan, NULL);
        c->chan = NULL;
        /* The channel was never offered: it ends quietly. */
        cvx_chan_unref(chan);
        reject(c, 503, "Service Unavailable", TAG_END());
        return;
    }
    c->hold = c->have_remote && c->remote.hold;
    cvx_event_t ev = {.type = CVX_EV_INCOMING};
    /* The handler may answer or refuse at once (and the call may even end): hold on. */
    ((sip_call_ext_t *)c)->refs++;
    cvx_drv_event(si->inst, chan, &ev);
    /* A flow that took the call without answering yet: the caller hears ringing. */
    if (c->state == SIP_CALL_OFFERED && c->nh != NULL) {
        nua_respond(c->nh, SIP_180_RINGING, TAG_END());
        sip_reactor_kick(si->reactor);
    }
    call_unref(c);
}

/* --- offers inside the dialog ---------------------------------------------------------- */

static int respond_with_sdp(sip_call_t *c, int in_dialog_with)
{
    char sdp[1024];
    int n;
    c->sdp_version++;
    if (c->have_remote && !c->need_answer_in_ack)
        n = sip_sdp_answer(&c->remote, c->local_addr, c->local_port, c->si->sdp_session,
                           c->sdp_version, sdp, sizeof(sdp));
    else
        n = sip_sdp_offer(c->local_addr, c->local_port, c->si->sdp_session, c->sdp_version, 0, sdp,
                          sizeof(sdp));
    if (n < 0)
        return CVX_ERANGE;
    nua_respond(c->nh, SIP_200_OK, SIPTAG_CONTENT_TYPE_STR("application/sdp"),
                SIPTAG_PAYLOAD_STR(sdp), TAG_IF(in_dialog_with, NUTAG_WITH_THIS(c->l->nua)),
                TAG_END());
    sip_reactor_kick(c->si->reactor);
    return 0;
}

static void reoffer(sip_call_t *c, sip_t const *sip, int update)
{
    c->si->counters.reinvites++;
    sip_sdp_t sdp;
    int s = read_sdp(sip, &sdp);
    cvx_log_ctx_t ctx =
        cvx_chan_log_ctx(c->chan, update ? "handling an UPDATE" : "handling a re-INVITE");
    if (s > 1) {
        cvx_log_ctx(CVX_LOG_NOTICE, &ctx, "new offer refused (%d): %s", s, sdp.error);
        answer_bad_sdp(c, s, &sdp, update);
        return;
    }
    if (s == 0) {
        if (update) {
            nua_respond(c->nh, SIP_200_OK, NUTAG_WITH_THIS(c->l->nua), TAG_END());
            sip_reactor_kick(c->si->reactor);
            return;
        }
        /* A re-INVITE without SDP asks for our offer; the answer comes in the ACK. */
        c->need_answer_in_ack = 1;
        respond_with_sdp(c, 0);
        return;
    }
    int was_hold = c->hold;
    c->remote = sdp;
    c->have_remote = 1;
    c->need_answer_in_ack = 0;
    c->hold = sdp.hold;
    if (was_hold != c->hold)
        cvx_log_ctx(CVX_LOG_INFO, &ctx, "call %s", c->hold ? "put on hold" : "resumed");
    media_apply(c);
    respond_with_sdp(c, update);
}

static void handle_info(sip_call_t *c, sip_t const *sip)
{
    char digit = 0;
    unsigned duration = 250;
    if (sip->sip_payload != NULL && sip->sip_content_type != NULL &&
        sip->sip_content_type->c_type != NULL) {
        const char *t = sip->sip_content_type->c_type;
        char body[256];
        size_t n = sip->sip_payload->pl_len < sizeof(body) - 1 ? sip->sip_payload->pl_len
                                                               : sizeof(body) - 1;
        memcpy(body, sip->sip_payload->pl_data, n);
        body[n] = '\0';
        if (strcasecmp(t, "application/dtmf-relay") == 0) {
            const char *sg = strcasestr(body, "Signal=");
            if (sg != NULL) {
                sg += 7;
                while (*sg == ' ')
                    sg++;
                digit = *sg;
            }
            const char *d = strcasestr(body, "Duration=");
            if (d != NULL) {
                long v = strtol(d + 9, NULL, 10);
                if (v > 0 && v < 10000)
                    duration = (unsigned)v;
            }
        } else if (strcasecmp(t, "application/dtmf") == 0) {
            const char *p = body;
            while (*p == ' ')
                p++;
            digit = *p;
            if (strncmp(p, "10", 2) == 0)
                digit = '*';
            else if (strncmp(p, "11", 2) == 0)
                digit = '#';
        }
    }
    if (digit >= 'a' && digit <= 'd')
        digit = (char)(digit - 'a' + 'A');
    int valid = digit != 0 && strchr("0123456789*#ABCD", digit) != NULL;
    nua_respond(c->nh, valid || sip->sip_payload == NULL ? 200 : 415,
                valid || sip->sip_payload == NULL ? "OK" : "Unsupported Media Type",
                NUTAG_WITH_THIS(c->l->nua), TAG_END());
    sip_reactor_kick(c->si->reactor);
    if (valid && c->chan != NULL && c->state == SIP_CALL_UP) {
        cvx_event_t ev = {.type = CVX_EV_DTMF, .u.dtmf = {digit, CVX_DTMF_SIGNAL, duration}};
        cvx_chan_t *chan = cvx_chan_ref(c->chan);
        cvx_drv_event(c->si->inst, chan, &ev);
        cvx_chan_unref(chan);
    }
}

/* The status line of a message/sipfrag body, or 0. */
static int sipfrag_status(sip_t const *sip)
{
    if (sip->sip_payload == NULL || sip->sip_payload->pl_len < 12)
        return 0;
    const char *p = sip->sip_payload->pl_data;
    if (strncmp(p, "SIP/2.0 ", 8) != 0)
        return 0;
    int v = 0;
    for (int i = 8; i < 11; i++) {
        if (p[i] < '0' || p[i] > '9')
            return 0;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

static void transfer_result(sip_call_t *c, int ok, int code)
{
    if (!c->transfer_pending)
        return;
    c->transfer_pending = 0;
    if (c->chan != NULL) {
        cvx_log_ctx_t ctx = cvx_chan_log_ctx(c->chan, "transferring");
        cvx_log_ctx(ok ? CVX_LOG_INFO : CVX_LOG_NOTICE, &ctx, "blind transfer %s (%d)",
                    ok ? "succeeded" : "failed", code);
        cvx_event_t ev = {.type = CVX_EV_TRANSFER, .u.transfer = {ok, code}};
        cvx_chan_t *chan = cvx_chan_ref(c->chan);
        cvx_drv_event(c->si->inst, chan, &ev);
        cvx_chan_unref(chan);
    }
    if (ok && c->state == SIP_CALL_UP) {
        /* The far end is now talking to the target: our leg ends. */
        c->cause = CVX_CAUSE_NORMAL;
        c->state = SIP_CALL_ENDING;
        c->si->counters.bye_out++;
        nua_bye(c->nh, TAG_END());
        defer_hangup(c);
    }
}

void sip_call_event(sip_call_t *c, nua_event_t event, int status, char const *phrase,
                    sip_t const *sip, tagi_t tags[])
{
    (void)phrase;
    switch (event) {
    case nua_i_state: {
        int state = -1;
        tl_gets(tags, NUTAG_CALLSTATE_REF(state), TAG_END());
        if (state == nua_callstate_terminated)
            call_free(c);
        break;
    }
    case nua_i_ack:
        if (c->need_answer_in_ack && sip != NULL) {
            sip_sdp_t sdp;
            if (read_sdp(sip, &sdp) == 1) {
                c->remote = sdp;
                c->have_remote = 1;
                c->hold = sdp.hold;
                media_apply(c);
            } else if (c->chan != NULL && c->state == SIP_CALL_UP) {
                cvx_log_ctx_t ctx = cvx_chan_log_ctx(c->chan, "reading the ACK");
                cvx_log_ctx(CVX_LOG_NOTICE, &ctx, "no usable answer in the ACK; hanging up");
                c->cause = CVX_CAUSE_TEMP_FAILURE;
                c->state = SIP_CALL_ENDING;
                nua_bye(c->nh, TAG_END());
                defer_hangup(c);
            }
            c->need_answer_in_ack = 0;
        }
        break;
    case nua_i_cancel:
        c->si->counters.cancelled++;
        c->cause = CVX_CAUSE_NORMAL;
        c->state = SIP_CALL_ENDING;
        report_hangup(c);
        break;
    case nua_i_bye:
        c->si->counters.bye_in++;
        c->cause = CVX_CAUSE_NORMAL;
        c->state = SIP_CALL_ENDING;
        report_hangup(c);
        break;
    case nua_i_invite:
        if (sip != NULL && c->state == SIP_CALL_UP)
            reoffer(c, sip, 0);
        else
            nua_respond(c->nh, 491, "Request Pending", TAG_END());
        break;
    case nua_i_update:
        if (sip != NULL && c->state == SIP_CALL_UP)
            reoffer(c, sip, 1);
        else
            nua_respond(c->nh, 491, "Request Pending", NUTAG_WITH_THIS(c->l->nua), TAG_END());
        break;
    case nua_i_info:
        if (sip != NULL)
            handle_info(c, sip);
        break;
    case nua_r_invite:
        if (status == 401 || status == 407) {
            const char *user = c->si->conf.register_user, *pw = c->si->conf.register_password;
            if (c->auth_tries++ == 0 && user && pw && sip != NULL) {
                const char *scheme = NULL, *realm = NULL;
                sip_www_authenticate_t const *wa = sip->sip_www_authenticate;
                sip_proxy_authenticate_t const *pa = sip->sip_proxy_authenticate;
                if (wa) {
                    scheme = wa->au_scheme;
                    realm = msg_params_find(wa->au_params, "realm=");
                } else if (pa) {
                    scheme = pa->au_scheme;
                    realm = msg_params_find(pa->au_params, "realm=");
                }
                if (scheme && realm) {
                    char cred[256];
                    snprintf(cred, sizeof(cred), "%s:%s:%s:%s", scheme, realm, user, pw);
                    nua_authenticate(c->nh, NUTAG_AUTH(cred), TAG_END());
                    break;
                }
            }
        }
        if (status >= 200 && status < 300 && c->state == SIP_CALL_DIALING) {
            c->state = SIP_CALL_UP;
            if (sip != NULL && read_sdp(sip, &c->remote) == 1) {
                c->have_remote = 1;
                c->hold = c->remote.hold;
                media_apply(c);
            }
            if (c->chan != NULL) {
                cvx_event_t ev = {.type = CVX_EV_ANSWERED};
                cvx_chan_t *chan = cvx_chan_ref(c->chan);
                cvx_drv_event(c->si->inst, chan, &ev);
                cvx_chan_unref(chan);
            }
        } else if (status >= 300 && c->state == SIP_CALL_DIALING) {
            c->cause = status_cause(status);
            c->state = SIP_CALL_ENDING;
            report_hangup(c);
        }
        break;
    case nua_r_bye:
        if (status >= 200)
            report_hangup(c);
        break;
    case nua_r_refer:
        if (status >= 300)
            transfer_result(c, 0, status);
        break;
    case nua_i_notify:
        if (sip != NULL && sip->sip_event != NULL && sip->sip_event->o_type != NULL &&
            strcasecmp(sip->sip_event->o_type, "refer") == 0) {
            int code = sipfrag_status(sip);
            if (code >= 200)
                transfer_result(c, code < 300, code);
        }
        break;
    default:
        break;
    }
}

/* --- operations ----------------------------------------------------------------------- */

int sip_op_answer(void *priv, cvx_chan_t *chan)
{
    (void)priv;
    sip_call_t *c = cvx_chan_driver_data(chan);
    if (c == NULL || c->state != SIP_CALL_OFFERED)
        return CVX_ESTATE;
    int rc = respond_with_sdp(c, 0);
    if (rc != 0)
        return rc;
    c->state = SIP_CALL_UP;
    c->si->counters.answered++;
    if (c->have_remote)
        media_apply(c);
    return 0;
}

int sip_op_hangup(void *priv, cvx_chan_t *chan, cvx_cause_t cause)
{
    (void)priv;
    sip_call_t *c = cvx_chan_driver_data(chan);
    if (c == NULL || c->state >= SIP_CALL_ENDING)
        return CVX_ESTATE;
    c->cause = cause;
    if (c->state == SIP_CALL_OFFERED) {
        const char *phrase;
        int status = cause_status(cause, &phrase);
        nua_respond(c->nh, status, phrase, TAG_END());
    } else if (c->state == SIP_CALL_DIALING) {
        nua_cancel(c->nh, TAG_END());
    } else {
        c->si->counters.bye_out++;
        nua_bye(c->nh, TAG_END());
    }
    c->state = SIP_CALL_ENDING;
    defer_hangup(c);
    sip_reactor_kick(c->si->reactor);
    return 0;
}

int sip_op_originate(void *priv, cvx_chan_t *chan)
{
    sip_inst_t *si = priv;
    if (!si->started)
        return CVX_ESTATE;
    if (si->ncalls >= (unsigned)si->conf.max_calls)
        return CVX_EBUSY;
    const cvx_call_info_t *info = cvx_chan_info(chan);
    char uri[512];
    int rc = sip_dest_uri(si, info->called, uri, sizeof(uri));
    if (rc != 0)
        return rc;
    sip_listener_t *l = sip_listener_for(si, uri);
    if (l == NULL)
        return CVX_ESTATE;
    char from[256];
    const char *br = l->family == AF_INET6 ? "[" : "", *bre = l->family == AF_INET6 ? "]" : "";
    snprintf(from, sizeof(from), "<sip:%s@%s%s%s>", info->calling[0] ? info->calling : "callvox",
             br, l->host, bre);
    nua_handle_t *nh =
        nua_handle(l->nua, NULL, SIPTAG_TO_STR(uri), SIPTAG_FROM_STR(from), TAG_END());
    if (nh == NULL)
        return CVX_ENOMEM;
    sip_call_t *c = call_new(l, nh);
    if (c == NULL) {
        nua_handle_destroy(nh);
        return CVX_ENOMEM;
    }
    c->chan = cvx_chan_ref(chan);
    c->state = SIP_CALL_DIALING;
    rc = media_create(c);
    char sdp[1024];
    int n = rc == 0 ? sip_sdp_offer(c->local_addr, c->local_port, si->sdp_session, ++c->sdp_version,
                                    0, sdp, sizeof(sdp))
                    : -1;
    if (n < 0) {
        media_destroy(c);
        cvx_chan_unref(c->chan);
        c->chan = NULL;
        call_free(c);
        return rc ? rc : CVX_ERANGE;
    }
    cvx_chan_set_driver_data(chan, c);
    si->counters.originated++;
    nua_invite(nh, SIPTAG_CONTENT_TYPE_STR("application/sdp"), SIPTAG_PAYLOAD_STR(sdp), TAG_END());
    sip_reactor_kick(si->reactor);
    return 0;
}

int sip_op_transfer(void *priv, cvx_chan_t *chan, const char *dest, int supervised)
{
    sip_inst_t *si = priv;
    sip_call_t *c = cvx_chan_driver_data(chan);
    if (c == NULL || c->state != SIP_CALL_UP || c->transfer_pending)
        return CVX_ESTATE;
    if (supervised)
        return CVX_ENOTSUP;
    char uri[512];
    int rc = sip_dest_uri(si, dest, uri, sizeof(uri));
    if (rc != 0)
        return rc;
    c->transfer_pending = 1;
    si->counters.refer++;
    nua_refer(c->nh, SIPTAG_REFER_TO_STR(uri), TAG_END());
    sip_reactor_kick(si->reactor);
    return 0;
}

int sip_op_send_dtmf(void *priv, cvx_chan_t *chan, char digit, unsigned duration_ms)
{
    (void)priv;
    sip_call_t *c = cvx_chan_driver_data(chan);
    if (c == NULL || c->state != SIP_CALL_UP)
        return CVX_ESTATE;
#ifdef SIP_HAVE_RTP
    if (c->rtp != NULL && c->have_remote)
        return cvx_rtp_send_dtmf(c->rtp, digit, duration_ms);
#endif
    char body[64];
    snprintf(body, sizeof(body), "Signal=%c\r\nDuration=%u\r\n", digit,
             duration_ms ? duration_ms : 250);
    nua_info(c->nh, SIPTAG_CONTENT_TYPE_STR("application/dtmf-relay"), SIPTAG_PAYLOAD_STR(body),
             TAG_END());
    sip_reactor_kick(c->si->reactor);
    return 0;
}

int sip_op_write_frame(void *priv, cvx_chan_t *chan, const cvx_frame_t *frame)
{
    (void)priv;
    sip_call_t *c = cvx_chan_driver_data(chan);
    if (c == NULL || c->state != SIP_CALL_UP)
        return CVX_ESTATE;
#ifdef SIP_HAVE_RTP
    if (c->rtp != NULL)
        return cvx_rtp_write(c->rtp, frame);
#else
    (void)frame;
#endif
    return CVX_ENOTSUP;
}

void sip_call_end_all(sip_inst_t *si, cvx_cause_t cause)
{
    for (sip_call_t *c = si->calls; c != NULL; c = c->next) {
        if (c->chan == NULL || c->state >= SIP_CALL_ENDING)
            continue;
        cvx_chan_t *chan = cvx_chan_ref(c->chan);
        sip_op_hangup(si, chan, cause);
        cvx_chan_unref(chan);
    }
}

void sip_call_free_all(sip_inst_t *si)
{
    while (si->calls != NULL)
        call_free(si->calls);
}

size_t sip_call_describe(const sip_call_t *c, char *buf, size_t size)
{
    const char *codec = !c->have_remote ? "-" : c->remote.codec == CVX_CODEC_PCMA ? "PCMA" : "PCMU";
    int n = snprintf(buf, size, "%s%s%s", codec,
                     c->remote.te_payload_type >= 0 && c->have_remote ? "+te" : "",
                     c->hold ? " hold" : "");
    return n > 0 ? (size_t)n : 0;
}
