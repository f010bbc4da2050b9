/*
 * Message-waiting indication over SIP (RFC 3842 message-summary bodies).
 *
 * set_mwi sends the lamp state to a device: in the device's message-summary subscription when
 * it has one (a NOTIFY in that dialog), otherwise as an unsolicited NOTIFY to the device's URI
 * (what most PBXs and phones expect from a voicemail server).  Either way the result comes
 * back as CVX_EV_MWI_RESULT with the request's id: 2xx is success, anything else (or no answer:
 * nua's transaction timeout, a 408) is a failure the MWI engine retries.
 *
 * The driver also accepts SUBSCRIBE for message-summary (from trusted addresses, or with
 * digest credentials when auth_user is set) and sends the state it was last asked to show for
 * that mailbox or device at once (RFC 3842 A3: the "sync" NOTIFY); a device it knows nothing
 * about yet is told "Messages-Waiting: no".  Refreshes are answered by nua (200 and a copy of
 * the last NOTIFY); a subscription that is not refreshed in time ends with a NOTIFY
 * "terminated;reason=timeout", after which updates go unsolicited again.  Expiry is capped at
 * one hour (nua's limit for notifiers).
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sofia-sip/msg_addr.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/su_tag.h>
#include <sofia-sip/su_tagarg.h>

#include "cvx/error.h"
#include "cvx/log.h"
#include "sip_int.h"

#define SIP_SUB_MAX_EXPIRES 3600

/* The user part of "2001", "sip:2001@host", "<sips:2001@host;x>": what lamps and
 * subscriptions are matched by. */
static void user_of(const char *dev, char *out, size_t size)
{
    const char *p = dev + (*dev == '<');
    int scheme = 0;
    if (strncasecmp(p, "sips:", 5) == 0)
        p += 5, scheme = 1;
    else if (strncasecmp(p, "sip:", 4) == 0)
        p += 4, scheme = 1;
    const char *at = strchr(p, '@');
    size_t n = at != NULL ? (size_t)(at - p) : scheme ? 0 : strcspn(p, ";>");
    if (n >= size)
        n = size - 1;
    memcpy(out, p, n);
    out[n] = '\0';
}

static sip_lamp_t *lamp_find(sip_inst_t *si, const char *user)
{
    for (sip_lamp_t *lp = si->lamps; lp != NULL; lp = lp->next)
        if (strcmp(lp->user, user) == 0 || strcmp(lp->mailbox, user) == 0)
            return lp;
    return NULL;
}

/* Records what req asks the device user to show; returns its entry (NULL: no memory). */
static sip_lamp_t *lamp_remember(sip_inst_t *si, const char *user, const cvx_mwi_req_t *req)
{
    sip_lamp_t *lp = NULL;
    for (lp = si->lamps; lp != NULL; lp = lp->next)
        if (strcmp(lp->user, user) == 0)
            break;
    if (lp == NULL) {
        lp = calloc(1, sizeof(*lp));
        if (lp == NULL)
            return NULL; /* only the sync NOTIFY of a later SUBSCRIBE loses this state */
        snprintf(lp->user, sizeof(lp->user), "%s", user);
        lp->next = si->lamps;
        si->lamps = lp;
    }
    snprintf(lp->mailbox, sizeof(lp->mailbox), "%s", req->mailbox ? req->mailbox : "");
    lp->on = req->on;
    lp->new_msgs = req->new_msgs;
    lp->old_msgs = req->old_msgs;
    lp->new_urgent = req->new_urgent;
    lp->old_urgent = req->old_urgent;
    return lp;
}

/* The RFC 3842 body (section 5.2): Voice-Message is new/old (urgent new/urgent old). */
static void summary_body(const sip_listener_t *l, const sip_lamp_t *lp, char *body, size_t size)
{
    const char *br = l->family == AF_INET6 ? "[" : "", *bre = l->family == AF_INET6 ? "]" : "";
    if (lp == NULL) {
        snprintf(body, size, "Messages-Waiting: no\r\n");
        return;
    }
    const char *acct = lp->mailbox[0] ? lp->mailbox : lp->user;
    snprintf(body, size,
             "Messages-Waiting: %s\r\nMessage-Account: sip:%s@%s%s%s\r\n"
             "Voice-Message: %u/%u (%u/%u)\r\n",
             lp->on ? "yes" : "no", acct, br, l->host, bre, lp->new_msgs, lp->old_msgs,
             lp->new_urgent, lp->old_urgent);
}

/* --- unsolicited NOTIFY ---------------------------------------------------------------- */

static void mwi_free(sip_mwi_t *m)
{
    sip_inst_t *si = m->si;
    for (sip_mwi_t **pp = &si->mwis; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == m) {
            *pp = m->next;
            break;
        }
    }
    if (m->nh != NULL) {
        nua_handle_bind(m->nh, NULL);
        nua_handle_destroy(m->nh);
    }
    free(m);
}

static sip_sub_t *sub_for(sip_inst_t *si, const char *user, const char *mailbox)
{
    for (sip_sub_t *s = si->subs; s != NULL; s = s->next)
        if (!s->terminated && (strcmp(s->user, user) == 0 ||
                               (mailbox != NULL && mailbox[0] && strcmp(s->user, mailbox) == 0)))
            return s;
    return NULL;
}

static int notify_in_subscription(sip_sub_t *s, const sip_lamp_t *lp, uint64_t request_id)
{
    sip_listener_t *l = sip_listener_for(s->si, NULL);
    char body[512];
    summary_body(l, lp, body, sizeof(body));
    s->request_id = request_id;
    nua_notify(s->nh, SIPTAG_EVENT_STR("message-summary"),
               SIPTAG_CONTENT_TYPE_STR("application/simple-message-summary"),
               SIPTAG_PAYLOAD_STR(body), NUTAG_SUBSTATE(nua_substate_active), TAG_END());
    sip_reactor_kick(s->si->reactor);
    return 0;
}

int sip_op_set_mwi(void *priv, const cvx_mwi_req_t *req)
{
    sip_inst_t *si = priv;
    if (!si->started)
        return CVX_ESTATE;
    if (req->device == NULL || req->device[0] == '\0')
        return CVX_EINVAL;
    char user[64];
    user_of(req->device, user, sizeof(user));
    sip_lamp_t *lp = lamp_remember(si, user[0] ? user : req->device, req);
    if (lp == NULL)
        return CVX_ENOMEM;
    sip_sub_t *s = user[0] ? sub_for(si, user, req->mailbox) : NULL;
    if (s != NULL && s->request_id == 0)
        return notify_in_subscription(s, lp, req->request_id);
    char uri[512];
    int rc = sip_dest_uri(si, req->device, uri, sizeof(uri));
    if (rc != 0)
        return rc;
    sip_listener_t *l = sip_listener_for(si, uri);
    if (l == NULL)
        return CVX_ESTATE;
    sip_mwi_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return CVX_ENOMEM;
    m->hm.kind = SIP_HM_MWI;
    m->si = si;
    m->request_id = req->request_id;
    const char *br = l->family == AF_INET6 ? "[" : "", *bre = l->family == AF_INET6 ? "]" : "";
    char from[256], body[512];
    snprintf(from, sizeof(from), "<sip:%s@%s%s%s>", req->mailbox ? req->mailbox : "voicemail", br,
             l->host, bre);
    summary_body(l, lp, body, sizeof(body));
    m->nh = nua_handle(l->nua, &m->hm, SIPTAG_TO_STR(uri), SIPTAG_FROM_STR(from), TAG_END());
    if (m->nh == NULL) {
        free(m);
        return CVX_ENOMEM;
    }
    m->next = si->mwis;
    si->mwis = m;
    nua_notify(m->nh, NUTAG_NEWSUB(1), SIPTAG_EVENT_STR("message-summary"),
               SIPTAG_SUBSCRIPTION_STATE_STR("active"),
               SIPTAG_CONTENT_TYPE_STR("application/simple-message-summary"),
               SIPTAG_PAYLOAD_STR(body), TAG_END());
    sip_reactor_kick(si->reactor);
    return 0;
}

static void mwi_done(void *arg)
{
    mwi_free(arg);
}

static void report(sip_inst_t *si, uint64_t request_id, int status)
{
    if (status < 300)
        si->counters.mwi_sent++;
    else
        si->counters.mwi_failed++;
    cvx_event_t ev = {.type = CVX_EV_MWI_RESULT,
                      .u.mwi = {request_id, status < 300 ? 0 : CVX_EIO, status}};
    cvx_drv_event(si->inst, NULL, &ev);
}

void sip_mwi_event(sip_mwi_t *m, nua_event_t event, int status, char const *phrase,
                   sip_t const *sip, tagi_t tags[])
{
    (void)tags;
    (void)phrase;
    if (event != nua_r_notify || status < 200)
        return;
    sip_inst_t *si = m->si;
    if ((status == 401 || status == 407) && sip_authenticate(si, m->nh, sip, &m->auth_tries))
        return;
    report(si, m->request_id, status);
    /* The handle is destroyed from the loop, not from inside its own event. */
    nua_handle_bind(m->nh, NULL);
    for (sip_mwi_t **pp = &si->mwis; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == m) {
            *pp = m->next;
            break;
        }
    }
    sip_reactor_defer(si->reactor, mwi_done, m);
}

/* --- subscriptions --------------------------------------------------------------------- */

static void sub_unlink(sip_sub_t *s)
{
    for (sip_sub_t **pp = &s->si->subs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            return;
        }
    }
}

static void sub_done(void *arg)
{
    sip_sub_t *s = arg;
    if (s->nh != NULL)
        nua_handle_destroy(s->nh);
    free(s);
}

/* Ends our side of a subscription: the handle goes from the loop, never from inside its
 * event; a set_mwi waiting for an answer in it is reported failed (the engine retries, then
 * unsolicited). */
static void sub_end(sip_sub_t *s, const char *why)
{
    sip_inst_t *si = s->si;
    cvx_log_ctx_t ctx = cvx_drv_inst_log_ctx(si->inst, "ending a subscription");
    cvx_log_ctx(CVX_LOG_INFO, &ctx, "message-summary subscription of %s for %s ended: %s", s->from,
                s->user, why);
    uint64_t pending = s->request_id;
    s->request_id = 0;
    s->terminated = 1;
    sub_unlink(s);
    nua_handle_bind(s->nh, NULL);
    sip_reactor_defer(si->reactor, sub_done, s);
    if (pending != 0)
        report(si, pending, 408);
}

static uint64_t now_ms(sip_inst_t *si)
{
    return uv_now(cvx_drv_inst_loop(si->inst));
}

static void arm_timer(sip_inst_t *si);

static void on_sub_timer(su_root_magic_t *magic, su_timer_t *t, su_timer_arg_t *arg)
{
    (void)magic;
    (void)t;
    sip_inst_t *si = (sip_inst_t *)arg;
    uint64_t now = now_ms(si);
    for (sip_sub_t *s = si->subs; s != NULL; s = s->next) {
        if (s->terminated || s->expires_ms > now)
            continue;
        /* Not refreshed in time (RFC 6665 4.2.2): a last NOTIFY says so.  nua's own usage
         * timer normally does this first (and its NOTIFY's result ends the subscription
         * in sip_sub_event()); this is the backstop. */
        s->terminated = 1;
        nua_notify(s->nh, SIPTAG_EVENT_STR("message-summary"),
                   SIPTAG_SUBSCRIPTION_STATE_STR("terminated;reason=timeout"), TAG_END());
    }
    sip_reactor_kick(si->reactor);
    arm_timer(si);
}

static void arm_timer(sip_inst_t *si)
{
    uint64_t next = 0, now = now_ms(si);
    for (sip_sub_t *s = si->subs; s != NULL; s = s->next)
        if (!s->terminated && (next == 0 || s->expires_ms < next))
            next = s->expires_ms;
    if (si->sub_timer == NULL)
        si->sub_timer = su_timer_create(su_root_task(sip_reactor_root(si->reactor)), 0);
    if (si->sub_timer == NULL)
        return;
    su_timer_reset(si->sub_timer);
    if (next == 0)
        return;
    su_duration_t in = next > now ? (su_duration_t)(next - now) : 1;
    su_timer_set_interval(si->sub_timer, on_sub_timer, (su_timer_arg_t *)si, in);
}

static unsigned expires_of(sip_t const *sip)
{
    unsigned e = SIP_SUB_MAX_EXPIRES;
    if (sip != NULL && sip->sip_expires != NULL && sip->sip_expires->ex_delta < e)
        e = (unsigned)sip->sip_expires->ex_delta;
    return e;
}

/* Trusted source or good digest credentials; otherwise answers 403 or 401 and returns 0. */
static int sub_admit(sip_listener_t *l, nua_handle_t *nh, sip_t const *sip)
{
    sip_inst_t *si = l->si;
    msg_t *msg = nua_current_request(l->nua);
    su_addrinfo_t *ai = msg ? msg_addrinfo(msg) : NULL;
    const struct sockaddr *sa = ai ? ai->ai_addr : NULL;
    if (sa != NULL && sip_net_match(si->trusted, si->ntrusted, sa))
        return 1;
    if (si->conf.auth_users.n > 0) {
        char user[64];
        int a = sip_auth_check(si, sip, user, sizeof(user));
        if (a == 1)
            return 1;
        char chal[256];
        sip_auth_challenge(si, a < 0, chal, sizeof(chal));
        nua_respond(nh, 401, "Unauthorized", NUTAG_WITH_THIS(l->nua),
                    SIPTAG_WWW_AUTHENTICATE_STR(chal), TAG_END());
        return 0;
    }
    si->counters.subscribes_refused++;
    cvx_log_ctx_t ctx = cvx_drv_inst_log_ctx(si->inst, "admitting a subscription");
    cvx_log_ctx(CVX_LOG_WARN, &ctx, "SUBSCRIBE from an untrusted address refused (403)");
    nua_respond(nh, 403, "Forbidden", NUTAG_WITH_THIS(l->nua), TAG_END());
    return 0;
}

void sip_sub_incoming(sip_listener_t *l, nua_handle_t *nh, sip_t const *sip)
{
    sip_inst_t *si = l->si;
    if (sip == NULL || sip->sip_event == NULL || sip->sip_event->o_type == NULL ||
        strcmp(sip->sip_event->o_type, "message-summary") != 0) {
        nua_respond(nh, 489, "Bad Event", NUTAG_WITH_THIS(l->nua),
                    SIPTAG_ALLOW_EVENTS_STR("message-summary"), TAG_END());
        nua_handle_destroy(nh);
        return;
    }
    if (!sub_admit(l, nh, sip)) {
        nua_handle_destroy(nh);
        return;
    }
    unsigned expires = expires_of(sip);
    sip_sub_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        nua_respond(nh, 500, "Server Internal Error", NUTAG_WITH_THIS(l->nua), TAG_END());
        nua_handle_destroy(nh);
        sip_reactor_kick(si->reactor);
        return;
    }
    s->hm.kind = SIP_HM_SUB;
    s->si = si;
    s->nh = nh;
    const char *u = sip->sip_request->rq_url->url_user;
    snprintf(s->user, sizeof(s->user), "%s", u ? u : "");
    if (sip->sip_from != NULL && sip->sip_from->a_url->url_host != NULL)
        snprintf(s->from, sizeof(s->from), "%s@%s",
                 sip->sip_from->a_url->url_user ? sip->sip_from->a_url->url_user : "",
                 sip->sip_from->a_url->url_host);
    s->expires_ms = now_ms(si) + (uint64_t)expires * 1000;
    s->next = si->subs;
    si->subs = s;
    si->counters.subscribes++;
    nua_handle_bind(nh, &s->hm);
    char exp[16];
    snprintf(exp, sizeof(exp), "%u", expires);
    nua_respond(nh, 200, "OK", NUTAG_WITH_THIS(l->nua), SIPTAG_EXPIRES_STR(exp), TAG_END());
    cvx_log_ctx_t ctx = cvx_drv_inst_log_ctx(si->inst, "accepting a subscription");
    cvx_log_ctx(CVX_LOG_INFO, &ctx, "message-summary subscription of %s for %s, %u s", s->from,
                s->user, expires);
    /* The sync NOTIFY (RFC 3842 A3): the state last asked for, not an engine request.  A
     * fetch (Expires: 0, RFC 6665 4.4.3) gets it as the last NOTIFY of the subscription. */
    char body[512];
    summary_body(l, lamp_find(si, s->user), body, sizeof(body));
    s->terminated = expires == 0;
    nua_notify(nh, SIPTAG_EVENT_STR("message-summary"),
               SIPTAG_CONTENT_TYPE_STR("application/simple-message-summary"),
               SIPTAG_PAYLOAD_STR(body),
               TAG_IF(expires == 0, SIPTAG_SUBSCRIPTION_STATE_STR("terminated;reason=timeout")),
               TAG_IF(expires > 0, NUTAG_SUBSTATE(nua_substate_active)), TAG_END());
    sip_reactor_kick(si->reactor);
    arm_timer(si);
}

void sip_sub_event(sip_sub_t *s, nua_event_t event, int status, char const *phrase,
                   sip_t const *sip, tagi_t tags[])
{
    (void)phrase;
    sip_inst_t *si = s->si;
    if (event == nua_i_subscribe) {
        /* A refresh or an unsubscribe in the dialog: nua has answered 200 and re-sends the
         * last NOTIFY (the current state: every update goes in the dialog). */
        unsigned expires = expires_of(sip);
        s->expires_ms = now_ms(si) + (uint64_t)expires * 1000;
        cvx_log_ctx_t ctx = cvx_drv_inst_log_ctx(si->inst, "refreshing a subscription");
        cvx_log_ctx(CVX_LOG_INFO, &ctx, "message-summary subscription of %s for %s %s, %u s",
                    s->from, s->user, expires ? "refreshed" : "ended by the subscriber", expires);
        if (expires == 0)
            s->terminated = 1; /* nua's NOTIFY says terminated; its result ends it */
        arm_timer(si);
        return;
    }
    if (event == nua_r_notify && status >= 200) {
        int substate = nua_substate_active;
        tl_gets(tags, NUTAG_SUBSTATE_REF(substate), TAG_END());
        if (s->request_id != 0) {
            uint64_t id = s->request_id;
            s->request_id = 0;
            report(si, id, status);
        }
        if (s->terminated || substate == nua_substate_terminated || status == 481 ||
            status == 408) {
            /* nua's clock has whole seconds: within one of the expiry it is the expiry. */
            int expired = now_ms(si) + 1000 >= s->expires_ms;
            if (expired)
                si->counters.subscriptions_expired++;
            sub_end(s, status >= 300 ? "the subscriber is gone"
                       : expired     ? "expired; updates go unsolicited again"
                                     : "terminated");
        }
        return;
    }
    if (event == nua_i_terminated || event == nua_r_shutdown)
        sub_end(s, "dialog terminated");
}

unsigned sip_sub_count(const sip_inst_t *si)
{
    unsigned n = 0;
    for (const sip_sub_t *s = si->subs; s != NULL; s = s->next)
        n += !s->terminated;
    return n;
}

void sip_mwi_free_all(sip_inst_t *si)
{
    while (si->mwis != NULL)
        mwi_free(si->mwis);
    while (si->subs != NULL) {
        sip_sub_t *s = si->subs;
        si->subs = s->next;
        nua_handle_bind(s->nh, NULL);
        nua_handle_destroy(s->nh);
        free(s);
    }
    while (si->lamps != NULL) {
        sip_lamp_t *lp = si->lamps;
        si->lamps = lp->next;
        free(lp);
    }
    if (si->sub_timer != NULL) {
        su_timer_destroy(si->sub_timer);
        si->sub_timer = NULL;
    }
}
