/*
 * Registration to a trunk (REGISTER with digest credentials, refreshed by nua before it runs
 * out, retried register_retry after a failure; the line state follows it).  MWI is in
 * sip_mwi.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sofia-sip/sip_header.h>
#include <sofia-sip/su_tag.h>

#include "cvx/error.h"
#include "cvx/log.h"
#include "sip_int.h"

static void line(sip_inst_t *si, int up, const char *reason)
{
    cvx_event_t ev = {.type = CVX_EV_LINE_STATE, .u.line = {up, reason}};
    cvx_drv_event(si->inst, NULL, &ev);
}

static void reg_send(sip_inst_t *si)
{
    sip_reg_t *r = &si->reg;
    const char *registrar = si->conf.registrar;
    sip_listener_t *l = sip_listener_for(si, registrar);
    if (l == NULL)
        return;
    const char *host = strncasecmp(registrar, "sip:", 4) == 0 ? registrar + 4 : registrar;
    char aor[256], expires[24];
    snprintf(aor, sizeof(aor), "<sip:%s@%s>", si->conf.register_user, host);
    snprintf(expires, sizeof(expires), "%lld", si->conf.register_expiry_ms / 1000);
    if (r->nh == NULL) {
        r->nh = nua_handle(l->nua, &r->hm, SIPTAG_TO_STR(aor), SIPTAG_FROM_STR(aor), TAG_END());
        if (r->nh == NULL)
            return;
    }
    r->auth_tries = 0;
    r->attempts++;
    snprintf(r->state, sizeof(r->state), "registering");
    nua_register(r->nh, NUTAG_REGISTRAR(registrar), NUTAG_M_USERNAME(si->conf.register_user),
                 SIPTAG_EXPIRES_STR(expires),
                 NUTAG_OUTBOUND("no-options-keepalive no-validate no-natify"), TAG_END());
    sip_reactor_kick(si->reactor);
}

static void on_retry(su_root_magic_t *magic, su_timer_t *t, su_timer_arg_t *arg)
{
    (void)magic;
    (void)t;
    sip_inst_t *si = (sip_inst_t *)arg;
    if (!si->dead && si->started)
        reg_send(si);
}

static void schedule_retry(sip_inst_t *si)
{
    if (si->reg.retry == NULL)
        si->reg.retry = su_timer_create(su_root_task(sip_reactor_root(si->reactor)), 0);
    if (si->reg.retry != NULL)
        su_timer_set_interval(si->reg.retry, on_retry, (su_timer_arg_t *)si,
                              (su_duration_t)si->conf.register_retry_ms);
}

void sip_reg_start(sip_inst_t *si)
{
    si->reg.hm.kind = SIP_HM_REG;
    si->reg.si = si;
    reg_send(si);
}

void sip_reg_stop(sip_inst_t *si)
{
    if (si->reg.retry != NULL) {
        su_timer_destroy(si->reg.retry);
        si->reg.retry = NULL;
    }
    if (si->reg.nh != NULL && si->reg.registered) {
        nua_unregister(si->reg.nh, TAG_END());
        si->reg.registered = 0;
        snprintf(si->reg.state, sizeof(si->reg.state), "unregistering");
    }
}

/* Answers a digest challenge with the trunk credentials; 1 when it did. */
int sip_authenticate(sip_inst_t *si, nua_handle_t *nh, sip_t const *sip, int *tries)
{
    const char *user = si->conf.register_user, *pw = si->conf.register_password;
    if (sip == NULL || user == NULL || pw == NULL || (*tries)++ >= 2)
        return 0;
    msg_auth_t const *au = sip->sip_www_authenticate
                               ? (msg_auth_t const *)sip->sip_www_authenticate
                               : (msg_auth_t const *)sip->sip_proxy_authenticate;
    if (au == NULL || au->au_scheme == NULL)
        return 0;
    const char *realm = msg_params_find(au->au_params, "realm=");
    if (realm == NULL)
        return 0;
    char cred[512];
    snprintf(cred, sizeof(cred), "%s:%s:%s:%s", au->au_scheme, realm, user, pw);
    nua_authenticate(nh, NUTAG_AUTH(cred), TAG_END());
    sip_reactor_kick(si->reactor);
    return 1;
}

void sip_reg_event(sip_reg_t *r, nua_event_t event, int status, char const *phrase,
                   sip_t const *sip, tagi_t tags[])
{
    (void)tags;
    sip_inst_t *si = r->si;
    if (event != nua_r_register && event != nua_r_unregister)
        return;
    if (event == nua_r_unregister) {
        if (status >= 200)
            snprintf(r->state, sizeof(r->state), "unregistered");
        return;
    }
    if (status < 200)
        return;
    cvx_log_ctx_t ctx = cvx_drv_inst_log_ctx(si->inst, "registering");
    if ((status == 401 || status == 407) && sip_authenticate(si, r->nh, sip, &r->auth_tries))
        return;
    if (status < 300) {
        unsigned expires = 0;
        if (sip != NULL && sip->sip_contact != NULL && sip->sip_contact->m_expires != NULL)
            expires = (unsigned)strtoul(sip->sip_contact->m_expires, NULL, 10);
        else if (sip != NULL && sip->sip_expires != NULL)
            expires = (unsigned)sip->sip_expires->ex_delta;
        r->auth_tries = 0;
        r->successes++;
        int was = r->registered;
        r->registered = 1;
        snprintf(r->state, sizeof(r->state), "registered (expires %u s)", expires);
        if (!was) {
            cvx_log_ctx(CVX_LOG_INFO, &ctx, "registered to %s as %s", si->conf.registrar,
                        si->conf.register_user);
            line(si, 1, "registered");
        }
        return;
    }
    r->registered = 0;
    snprintf(r->state, sizeof(r->state), "failed: %d %s", status, phrase ? phrase : "");
    cvx_log_ctx(CVX_LOG_WARN, &ctx, "registration to %s failed: %d %s; retrying in %lld ms",
                si->conf.registrar, status, phrase ? phrase : "", si->conf.register_retry_ms);
    line(si, 0, "registration failed");
    /* nua gives up on a failed registration: start over later with a fresh handle. */
    nua_handle_bind(r->nh, NULL);
    nua_handle_destroy(r->nh);
    r->nh = NULL;
    schedule_retry(si);
}
