/*
 * sipapp: a test-only call flow that makes the SIP driver do what echo never asks of it.
 * Built into the test module directory, never installed.  It takes calls by called number:
 *
 *   ring...    takes the call and never answers (the caller cancels)
 *   hangup...  answers, then hangs up from our side after 300 ms (we send BYE)
 *   xfer...    answers, then blind-transfers the call to 7000 after 300 ms (REFER)
 *   mwi...     sends an MWI NOTIFY (device 8000, mailbox 1000: 2 new, 1 old) and refuses busy
 *   orig...    refuses the call (480) and places a call to 9000 that hangs up 300 ms after
 *              it is answered
 *
 * Everything it sees is logged with "sipapp:" so the tests can wait for it.
 */
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cvx/app.h"
#include "cvx/driver.h"
#include "cvx/error.h"
#include "cvx/log.h"
#include "cvx/module.h"

typedef struct later {
    uv_timer_t timer;
    cvx_chan_t *chan;
    int what; /* 0 hangup, 1 transfer */
} later_t;

static void later_closed(uv_handle_t *h)
{
    later_t *l = h->data;
    cvx_chan_unref(l->chan);
    free(l);
}

static void later_fire(uv_timer_t *t)
{
    later_t *l = t->data;
    if (cvx_chan_state(l->chan) != CVX_CHAN_ENDED) {
        int rc = l->what == 1 ? cvx_chan_transfer(l->chan, "7000", 0)
                              : cvx_chan_hangup(l->chan, CVX_CAUSE_NORMAL);
        cvx_notice("sipapp: %s %s: %s", l->what == 1 ? "transfer" : "hangup", cvx_chan_id(l->chan),
                   rc == 0 ? "requested" : cvx_strerror(rc));
    }
    uv_close((uv_handle_t *)&l->timer, later_closed);
}

static void after(cvx_chan_t *chan, int what, unsigned ms)
{
    later_t *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return;
    l->chan = cvx_chan_ref(chan);
    l->what = what;
    uv_timer_init(cvx_drv_inst_loop(cvx_chan_inst(chan)), &l->timer);
    l->timer.data = l;
    uv_timer_start(&l->timer, later_fire, ms, 0);
}

static void app_event(cvx_chan_t *chan, const cvx_event_t *ev, void *arg)
{
    (void)arg;
    switch (ev->type) {
    case CVX_EV_ANSWERED:
        cvx_notice("sipapp: %s answered", cvx_chan_id(chan));
        after(chan, 0, 300);
        break;
    case CVX_EV_TRANSFER:
        cvx_notice("sipapp: %s transfer %s (%d)", cvx_chan_id(chan),
                   ev->u.transfer.ok ? "ok" : "failed", ev->u.transfer.code);
        break;
    case CVX_EV_DTMF:
        cvx_notice("sipapp: %s dtmf %c", cvx_chan_id(chan), ev->u.dtmf.digit);
        break;
    case CVX_EV_HANGUP:
        cvx_notice("sipapp: %s ended (%s)", cvx_chan_id(chan), cvx_cause_name(ev->u.hangup.cause));
        cvx_chan_set_handler(chan, NULL, NULL);
        cvx_chan_unref(chan);
        break;
    default:
        break;
    }
}

static void on_driver(cvx_drv_inst_t *inst, const cvx_event_t *ev, void *arg)
{
    (void)arg;
    if (ev->type == CVX_EV_MWI_RESULT)
        cvx_notice("sipapp: mwi result %llu on %s: err %d code %d",
                   (unsigned long long)ev->u.mwi.request_id, cvx_drv_inst_name(inst), ev->u.mwi.err,
                   ev->u.mwi.code);
}

static int starts(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

static int app_incoming(cvx_chan_t *chan, void *arg)
{
    (void)arg;
    const char *called = cvx_chan_info(chan)->called;
    cvx_drv_inst_t *inst = cvx_chan_inst(chan);
    if (starts(called, "ring")) {
        cvx_chan_set_handler(chan, app_event, NULL);
        cvx_chan_ref(chan);
        cvx_notice("sipapp: %s ringing", cvx_chan_id(chan));
        return 0;
    }
    if (starts(called, "hangup") || starts(called, "xfer")) {
        cvx_chan_set_handler(chan, app_event, NULL);
        int rc = cvx_chan_answer(chan);
        if (rc != 0)
            return rc;
        cvx_chan_ref(chan);
        after(chan, starts(called, "xfer") ? 1 : 0, 300);
        return 0;
    }
    if (starts(called, "mwi")) {
        static uint64_t next_id = 41;
        cvx_mwi_req_t req = {.request_id = ++next_id,
                             .mailbox = "1000",
                             .device = "8000",
                             .on = 1,
                             .new_msgs = 2,
                             .old_msgs = 1};
        int rc = cvx_drv_inst_set_mwi(inst, &req);
        cvx_notice("sipapp: mwi request %llu: %s", (unsigned long long)req.request_id,
                   rc == 0 ? "sent" : cvx_strerror(rc));
        cvx_chan_set_handler(chan, app_event, NULL);
        cvx_chan_ref(chan);
        cvx_chan_hangup(chan, CVX_CAUSE_BUSY);
        return 0;
    }
    if (starts(called, "orig")) {
        cvx_chan_set_handler(chan, app_event, NULL);
        cvx_chan_ref(chan);
        cvx_chan_hangup(chan, CVX_CAUSE_NO_ANSWER);
        cvx_call_info_t info = {0};
        strcpy(info.calling, "5000");
        strcpy(info.called, "9000");
        cvx_chan_t *out = NULL;
        int rc = cvx_drv_originate(inst, &info, app_event, NULL, &out);
        cvx_notice("sipapp: originate to 9000: %s", rc == 0 ? "placed" : cvx_strerror(rc));
        return 0;
    }
    return CVX_EDECLINED;
}

static int app_load(cvx_module_env_t *env)
{
    (void)env;
    cvx_drv_set_listener(on_driver, NULL);
    return 0;
}

static void app_unload(void)
{
    cvx_drv_set_listener(NULL, NULL);
}

static const cvx_app_ops_t app_ops = {
    .size = sizeof(cvx_app_ops_t),
    .incoming = app_incoming,
};

static const cvx_module_t app_module = {
    .abi_major = CVX_MODULE_ABI_MAJOR,
    .abi_minor = CVX_MODULE_ABI_MINOR,
    .size = sizeof(cvx_module_t),
    .signature = CVX_MODULE_SIGNATURE,
    .name = "sipapp",
    .version = "0.1",
    .description = "SIP driver test call flows",
    .kind = CVX_MODULE_APP,
    .roles = CVX_ROLE_CALL,
    .load = app_load,
    .unload = app_unload,
    .app = &app_ops,
};

CVX_MODULE_DEFINE(app_module)
