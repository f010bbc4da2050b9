/*
 * Shell commands of the SIP driver: "show sip" (listeners, registration, counters),
 * "show sip calls" (from, to, redirect information, codec, hold) and "hangup <call>".
 * Registered through cvx/cmd.h when the control socket is built (SIP_HAVE_CMD).
 */
#include <stdio.h>
#include <string.h>

#include "cvx/error.h"
#include "cvx/log.h"
#include "sip_int.h"

#ifdef SIP_HAVE_CMD
#include "cvx/cmd.h"

static int cmd_show_sip(cvx_cmd_req_t *req)
{
    sip_inst_t *list[64];
    size_t n = sip_inst_list(list, 64);
    cvx_cmd_json_array(req, "instances");
    for (size_t i = 0; i < n; i++) {
        sip_inst_t *si = list[i];
        const sip_counters_t *k = &si->counters;
        cvx_drv_inst_info_t info;
        cvx_drv_inst_get_info(si->inst, &info);
        char reason[128] = "";
        if (info.line_reason && info.line_reason[0])
            snprintf(reason, sizeof(reason), " (%s)", info.line_reason);
        cvx_cmd_printf(req, "%s: line %s%s, %u call%s\n", info.name, info.line_up ? "up" : "down",
                       reason, si->ncalls, si->ncalls == 1 ? "" : "s");
        cvx_cmd_json_object(req, NULL);
        cvx_cmd_json_str(req, "name", info.name);
        cvx_cmd_json_bool(req, "line_up", info.line_up);
        cvx_cmd_json_array(req, "listeners");
        for (unsigned j = 0; j < si->nlisteners; j++) {
            cvx_cmd_printf(req, "  listen %s\n", si->listeners[j].label);
            cvx_cmd_json_str(req, NULL, si->listeners[j].label);
        }
        cvx_cmd_json_end(req);
        if (si->conf.registrar && si->conf.registrar[0]) {
            cvx_cmd_printf(req, "  registration to %s as %s: %s (%llu attempts, %llu ok)\n",
                           si->conf.registrar, si->conf.register_user, si->reg.state,
                           (unsigned long long)si->reg.attempts,
                           (unsigned long long)si->reg.successes);
            cvx_cmd_json_object(req, "registration");
            cvx_cmd_json_str(req, "registrar", si->conf.registrar);
            cvx_cmd_json_str(req, "state", si->reg.state);
            cvx_cmd_json_bool(req, "registered", si->reg.registered);
            cvx_cmd_json_end(req);
        }
        cvx_cmd_printf(req,
                       "  invites %llu, answered %llu, 403 untrusted %llu, challenged %llu, "
                       "bad credentials %llu, 488 no codec %llu, bad sdp %llu, cancelled %llu, "
                       "bye in %llu, bye out %llu, re-offers %llu, refer %llu, mwi ok %llu, "
                       "mwi failed %llu, originated %llu, refused busy %llu\n",
                       (unsigned long long)k->invites, (unsigned long long)k->answered,
                       (unsigned long long)k->rejected_untrusted, (unsigned long long)k->challenged,
                       (unsigned long long)k->auth_failed, (unsigned long long)k->no_codec,
                       (unsigned long long)k->bad_sdp, (unsigned long long)k->cancelled,
                       (unsigned long long)k->bye_in, (unsigned long long)k->bye_out,
                       (unsigned long long)k->reinvites, (unsigned long long)k->refer,
                       (unsigned long long)k->mwi_sent, (unsigned long long)k->mwi_failed,
                       (unsigned long long)k->originated, (unsigned long long)k->busy);
        cvx_cmd_printf(req,
                       "  message-summary subscriptions %u (accepted %llu, refused %llu, "
                       "expired %llu)\n",
                       sip_sub_count(si), (unsigned long long)k->subscribes,
                       (unsigned long long)k->subscribes_refused,
                       (unsigned long long)k->subscriptions_expired);
        cvx_cmd_json_uint(req, "subscriptions", sip_sub_count(si));
        cvx_cmd_json_object(req, "counters");
        cvx_cmd_json_uint(req, "invites", k->invites);
        cvx_cmd_json_uint(req, "answered", k->answered);
        cvx_cmd_json_uint(req, "rejected_untrusted", k->rejected_untrusted);
        cvx_cmd_json_uint(req, "challenged", k->challenged);
        cvx_cmd_json_uint(req, "auth_failed", k->auth_failed);
        cvx_cmd_json_uint(req, "no_codec", k->no_codec);
        cvx_cmd_json_uint(req, "cancelled", k->cancelled);
        cvx_cmd_json_uint(req, "bye_in", k->bye_in);
        cvx_cmd_json_uint(req, "bye_out", k->bye_out);
        cvx_cmd_json_uint(req, "mwi_sent", k->mwi_sent);
        cvx_cmd_json_uint(req, "mwi_failed", k->mwi_failed);
        cvx_cmd_json_uint(req, "subscribes", k->subscribes);
        cvx_cmd_json_uint(req, "subscribes_refused", k->subscribes_refused);
        cvx_cmd_json_uint(req, "subscriptions_expired", k->subscriptions_expired);
        cvx_cmd_json_end(req);
        cvx_cmd_json_end(req);
    }
    cvx_cmd_json_end(req);
    if (n == 0)
        cvx_cmd_printf(req, "no SIP instances\n");
    return 0;
}

static int cmd_show_sip_calls(cvx_cmd_req_t *req)
{
    static const char *const cols[] = {"call", "instance",        "dir",    "state", "from",
                                       "to",   "redirected_from", "reason", "media", "age#",
                                       NULL};
    sip_inst_t *list[64];
    size_t n = sip_inst_list(list, 64);
    cvx_cmd_table_begin(req, "calls", cols);
    for (size_t i = 0; i < n; i++) {
        for (sip_call_t *c = list[i]->calls; c != NULL; c = c->next) {
            if (c->chan == NULL)
                continue;
            const cvx_call_info_t *info = cvx_chan_info(c->chan);
            char media[48], age[24];
            sip_call_describe(c, media, sizeof(media));
            uint64_t now = uv_now(cvx_drv_inst_loop(list[i]->inst));
            snprintf(age, sizeof(age), "%llu",
                     (unsigned long long)((now - cvx_chan_start_ms(c->chan)) / 1000));
            const char *cells[] = {cvx_chan_id(c->chan),
                                   cvx_drv_inst_name(list[i]->inst),
                                   cvx_chan_dir(c->chan) == CVX_DIR_IN ? "in" : "out",
                                   c->state == SIP_CALL_UP        ? "up"
                                   : c->state == SIP_CALL_OFFERED ? "ringing"
                                   : c->state == SIP_CALL_DIALING ? "dialing"
                                                                  : "ending",
                                   info->calling,
                                   info->called,
                                   info->original_called[0] ? info->original_called : "-",
                                   cvx_redirect_name(info->redirect),
                                   media,
                                   age};
            cvx_cmd_table_row(req, cells);
        }
    }
    cvx_cmd_table_end(req);
    return 0;
}

typedef struct find_arg {
    const char *id;
    cvx_chan_t *found;
} find_arg_t;

static int find_chan(cvx_chan_t *chan, void *arg)
{
    find_arg_t *f = arg;
    if (strcmp(cvx_chan_id(chan), f->id) != 0)
        return 0;
    f->found = chan;
    return 1;
}

static int cmd_hangup(cvx_cmd_req_t *req)
{
    find_arg_t f = {cvx_cmd_arg_named(req, "call"), NULL};
    cvx_chan_foreach(find_chan, &f);
    if (f.found == NULL) {
        cvx_cmd_error(req, "no call '%s'", f.id);
        return CVX_ENOTFOUND;
    }
    int rc = cvx_chan_hangup(f.found, CVX_CAUSE_NORMAL);
    if (rc != 0) {
        cvx_cmd_error(req, "cannot hang up %s: %s", f.id, cvx_strerror(rc));
        return rc;
    }
    cvx_cmd_printf(req, "hanging up %s\n", f.id);
    return 0;
}

static const cvx_cmd_t sip_show_cmds[] = {
    {"show sip",
     {{0}},
     CVX_CMD_READONLY,
     "Show SIP instances: listeners, registration, counters",
     "One block per [sip:NAME] instance: its line state, calls now, each listener, the state "
     "of its registration to a trunk (when configured) and its counters: INVITEs received and "
     "answered, sources refused with 403, digest challenges and bad credentials, offers "
     "refused with 488, cancelled calls, BYEs each way, re-INVITEs and UPDATEs, transfers, MWI "
     "NOTIFYs and outbound calls.",
     cmd_show_sip,
     NULL},
    {"show sip calls",
     {{0}},
     CVX_CMD_READONLY,
     "List SIP calls with numbers, redirect information and codec",
     "One line per SIP call: its id, instance, direction, state, calling and called numbers, "
     "the number it was redirected from and why, the codec (+te when RFC 4733 events were "
     "negotiated, 'hold' while the far end holds the call) and its age in seconds.",
     cmd_show_sip_calls,
     NULL},
    CVX_CMDS_END,
};

static const cvx_cmd_t sip_hangup_cmds[] = {
    {"hangup",
     {{"call", 0, NULL, "call", "the call id, as 'show calls' lists it"}},
     0,
     "Hang up a call",
     "Ends the call at once: a call not yet answered is refused, an answered one gets a BYE. "
     "The call flow sees a normal hangup.",
     cmd_hangup,
     NULL},
    CVX_CMDS_END,
};

static int hangup_registered;
static int show_registered;

int sip_cmds_register(void)
{
    int rc = cvx_cmd_register(sip_show_cmds);
    show_registered = rc == 0;
    if (rc != 0)
        cvx_warn("sip: cannot register 'show sip': %s", cvx_strerror(rc));
    /* "hangup" is generic: the core may own it some day; then its own is used. */
    hangup_registered = cvx_cmd_register(sip_hangup_cmds) == 0;
    return 0;
}

void sip_cmds_unregister(void)
{
    if (show_registered)
        cvx_cmd_unregister(sip_show_cmds);
    if (hangup_registered)
        cvx_cmd_unregister(sip_hangup_cmds);
    show_registered = hangup_registered = 0;
}
#else
int sip_cmds_register(void)
{
    return 0;
}

void sip_cmds_unregister(void)
{
}
#endif
