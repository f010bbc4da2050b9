/*
 * The null driver: a loopback reference driver.
 *
 * It is the template for integrators writing a driver, and the core's test double.  An
 * outbound call placed on a null instance comes back in on the same instance as an inbound
 * call (two channels joined back to back): media frames and DTMF written on one leg arrive on
 * the other, a hangup on either side ends both, and a blind transfer joins the far leg to a
 * new inbound call to the transfer target.  MWI requests are remembered per device and
 * answered with a result, which can be configured to fail for tests.
 *
 * Like every driver it reports events asynchronously: operations queue their events and a
 * zero-delay timer delivers them from the loop, never from inside the operation that caused
 * them, so call flows see the same re-entrancy rules as with real drivers.
 *
 * Each queued event holds a channel reference; each leg holds one from creation until its
 * hangup has been reported.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cvx/driver.h"
#include "cvx/error.h"
#include "cvx/log.h"
#include "cvx/module.h"

typedef struct null_conf {
    long long channels;
    long long answer_delay_ms;
    int mwi_result; /* 0 ok, 1 fail, 2 silent */
} null_conf_t;

static const char *const mwi_results[] = {"ok", "fail", "silent", NULL};

static const cvx_option_t null_options[] = {
    {"channels", CVX_OPT_INT, offsetof(null_conf_t, channels), "8", 1, 100000, NULL, 0,
     "How many calls (legs) the instance carries at once; more are refused as busy."},
    {"answer_delay", CVX_OPT_DURATION, offsetof(null_conf_t, answer_delay_ms), "0", 0, 60000, NULL,
     CVX_OPT_RELOADABLE, "Delay before an answer is reported to the calling leg."},
    {"mwi_result", CVX_OPT_ENUM, offsetof(null_conf_t, mwi_result), "ok", 0, 0, mwi_results,
     CVX_OPT_RELOADABLE,
     "How MWI requests end: ok, fail (reported as an error) or silent (never answered)."},
    CVX_OPTIONS_END,
};

typedef struct null_leg null_leg_t;

typedef struct null_event {
    struct null_event *next;
    cvx_chan_t *chan; /* referenced; NULL for instance events */
    cvx_event_t ev;
    cvx_frame_t frame; /* a copy, for CVX_EV_FRAME */
    uint8_t data[640];
    uint64_t due_ms;
} null_event_t;

typedef struct null_mwi {
    struct null_mwi *next;
    char device[128];
    int on;
    unsigned new_msgs, old_msgs;
} null_mwi_t;

typedef struct null_inst {
    cvx_drv_inst_t *inst;
    null_conf_t conf;
    uv_timer_t timer;
    int timer_open;
    null_event_t *head, *tail;
    unsigned legs;
    null_leg_t *all; /* every live leg */
    null_mwi_t *lamps;
    int started;
} null_inst_t;

struct null_leg {
    null_leg_t *next_all, *prev_all;
    cvx_chan_t *chan; /* the leg's own reference */
    null_leg_t *peer;
    int ended;
};

static void null_kick(null_inst_t *ni);

static void null_queue(null_inst_t *ni, cvx_chan_t *chan, const cvx_event_t *ev, uint64_t delay)
{
    null_event_t *e = calloc(1, sizeof(*e));
    if (e == NULL) {
        cvx_log_ctx_t ctx = cvx_drv_inst_log_ctx(ni->inst, "queueing an event");
        cvx_log_ctx(CVX_LOG_ERROR, &ctx, "out of memory; event lost");
        return;
    }
    e->chan = chan ? cvx_chan_ref(chan) : NULL;
    e->ev = *ev;
    e->due_ms = uv_now(cvx_drv_inst_loop(ni->inst)) + delay;
    if (ev->type == CVX_EV_FRAME) {
        e->frame = *ev->u.frame;
        if (e->frame.len > sizeof(e->data))
            e->frame.len = sizeof(e->data);
        memcpy(e->data, ev->u.frame->data, e->frame.len);
        e->frame.data = e->data;
        e->ev.u.frame = &e->frame;
    }
    if (ni->tail)
        ni->tail->next = e;
    else
        ni->head = e;
    ni->tail = e;
    null_kick(ni);
}

static void null_leg_free(null_inst_t *ni, null_leg_t *leg)
{
    if (leg->prev_all)
        leg->prev_all->next_all = leg->next_all;
    else
        ni->all = leg->next_all;
    if (leg->next_all)
        leg->next_all->prev_all = leg->prev_all;
    if (leg->peer && leg->peer->peer == leg)
        leg->peer->peer = NULL;
    ni->legs--;
    cvx_chan_set_driver_data(leg->chan, NULL);
    cvx_chan_unref(leg->chan);
    free(leg);
}

static void null_deliver(null_inst_t *ni, null_event_t *e)
{
    /* An event for a leg that has already ended is dropped (except its own hangup). */
    null_leg_t *leg = e->chan ? cvx_chan_driver_data(e->chan) : NULL;
    if (e->chan != NULL && leg == NULL)
        return;
    cvx_drv_event(ni->inst, e->chan, &e->ev);
    if (e->ev.type == CVX_EV_HANGUP && leg != NULL)
        null_leg_free(ni, leg);
}

static void null_on_timer(uv_timer_t *t)
{
    null_inst_t *ni = t->data;
    uint64_t now = uv_now(cvx_drv_inst_loop(ni->inst));
    /* Take the ready events first: handlers may queue new ones while we deliver. */
    null_event_t *ready = NULL, **rtail = &ready, **pp = &ni->head;
    ni->tail = NULL;
    while (*pp != NULL) {
        null_event_t *e = *pp;
        if (e->due_ms <= now) {
            *pp = e->next;
            e->next = NULL;
            *rtail = e;
            rtail = &e->next;
        } else {
            ni->tail = e;
            pp = &e->next;
        }
    }
    while (ready != NULL) {
        null_event_t *e = ready;
        ready = e->next;
        null_deliver(ni, e);
        if (e->chan)
            cvx_chan_unref(e->chan);
        free(e);
    }
    null_kick(ni);
}

static void null_kick(null_inst_t *ni)
{
    if (ni->head == NULL || !ni->timer_open)
        return;
    uint64_t now = uv_now(cvx_drv_inst_loop(ni->inst)), due = UINT64_MAX;
    for (null_event_t *e = ni->head; e != NULL; e = e->next)
        if (e->due_ms < due)
            due = e->due_ms;
    uv_timer_start(&ni->timer, null_on_timer, due > now ? due - now : 0, 0);
}

static null_leg_t *null_leg_new(null_inst_t *ni, cvx_chan_t *chan)
{
    null_leg_t *leg = calloc(1, sizeof(*leg));
    if (leg == NULL)
        return NULL;
    leg->chan = chan;
    leg->next_all = ni->all;
    if (ni->all)
        ni->all->prev_all = leg;
    ni->all = leg;
    ni->legs++;
    cvx_chan_set_driver_data(chan, leg);
    return leg;
}

/* --- operations ------------------------------------------------------------------------- */

static int null_create(cvx_drv_inst_t *inst, const void *conf, void **priv)
{
    null_inst_t *ni = calloc(1, sizeof(*ni));
    if (ni == NULL)
        return CVX_ENOMEM;
    ni->inst = inst;
    ni->conf = *(const null_conf_t *)conf;
    *priv = ni;
    return 0;
}

static int null_start(void *priv)
{
    null_inst_t *ni = priv;
    int rc = uv_timer_init(cvx_drv_inst_loop(ni->inst), &ni->timer);
    if (rc != 0)
        return CVX_EIO;
    ni->timer.data = ni;
    ni->timer_open = 1;
    ni->started = 1;
    cvx_event_t ev = {.type = CVX_EV_LINE_STATE, .u.line = {1, "loopback ready"}};
    null_queue(ni, NULL, &ev, 0);
    return 0;
}

/* Ends a leg: its peer hears the cause, the leg itself gets its hangup confirmed. */
static void null_end(null_inst_t *ni, null_leg_t *leg, cvx_cause_t cause)
{
    if (leg->ended)
        return;
    leg->ended = 1;
    cvx_event_t ev = {.type = CVX_EV_HANGUP, .u.hangup = {cause}};
    null_leg_t *peer = leg->peer;
    if (peer != NULL && !peer->ended) {
        peer->ended = 1;
        null_queue(ni, peer->chan, &ev, 0);
    }
    null_queue(ni, leg->chan, &ev, 0);
}

static void null_stop(void *priv)
{
    null_inst_t *ni = priv;
    for (null_leg_t *l = ni->all; l != NULL; l = l->next_all)
        null_end(ni, l, CVX_CAUSE_SHUTDOWN);
    ni->started = 0;
}

static void null_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

static void null_destroy(void *priv)
{
    null_inst_t *ni = priv;
    /* Events not delivered by now never will be; legs still alive lose their reference. */
    while (ni->head != NULL) {
        null_event_t *e = ni->head;
        ni->head = e->next;
        if (e->chan)
            cvx_chan_unref(e->chan);
        free(e);
    }
    while (ni->all != NULL)
        null_leg_free(ni, ni->all);
    while (ni->lamps != NULL) {
        null_mwi_t *m = ni->lamps;
        ni->lamps = m->next;
        free(m);
    }
    if (ni->timer_open) {
        /* The timer is embedded: ni is freed in its close callback. */
        ni->timer.data = ni;
        ni->timer_open = 0;
        uv_close((uv_handle_t *)&ni->timer, null_timer_closed);
        return;
    }
    free(ni);
}

static int null_answer(void *priv, cvx_chan_t *chan)
{
    null_inst_t *ni = priv;
    null_leg_t *leg = cvx_chan_driver_data(chan);
    if (leg == NULL || leg->ended)
        return CVX_ESTATE;
    if (leg->peer != NULL) {
        cvx_event_t ev = {.type = CVX_EV_ANSWERED};
        null_queue(ni, leg->peer->chan, &ev, (uint64_t)ni->conf.answer_delay_ms);
    }
    return 0;
}

static int null_hangup(void *priv, cvx_chan_t *chan, cvx_cause_t cause)
{
    null_leg_t *leg = cvx_chan_driver_data(chan);
    if (leg == NULL || leg->ended)
        return CVX_ESTATE;
    null_end(priv, leg, cause);
    return 0;
}

/* Creates the inbound leg joined to out (NULL: none) and offers it. */
static int null_loop_in(null_inst_t *ni, null_leg_t *out, const cvx_call_info_t *info)
{
    if (ni->legs >= (unsigned)ni->conf.channels)
        return CVX_EBUSY;
    cvx_chan_t *in = cvx_chan_create(ni->inst, CVX_DIR_IN, info);
    if (in == NULL)
        return CVX_ENOMEM;
    null_leg_t *leg = null_leg_new(ni, in);
    if (leg == NULL) {
        cvx_chan_unref(in);
        return CVX_ENOMEM;
    }
    leg->peer = out;
    if (out != NULL)
        out->peer = leg;
    cvx_event_t ev = {.type = CVX_EV_INCOMING};
    null_queue(ni, in, &ev, 0);
    return 0;
}

static int null_originate(void *priv, cvx_chan_t *chan)
{
    null_inst_t *ni = priv;
    if (!ni->started)
        return CVX_ESTATE;
    if (ni->legs + 2 > (unsigned)ni->conf.channels)
        return CVX_EBUSY;
    null_leg_t *out = null_leg_new(ni, cvx_chan_ref(chan));
    if (out == NULL) {
        cvx_chan_unref(chan);
        return CVX_ENOMEM;
    }
    int rc = null_loop_in(ni, out, cvx_chan_info(chan));
    if (rc != 0) {
        out->ended = 1;
        null_leg_free(ni, out);
    }
    return rc;
}

static int null_transfer(void *priv, cvx_chan_t *chan, const char *dest, int supervised)
{
    null_inst_t *ni = priv;
    null_leg_t *leg = cvx_chan_driver_data(chan);
    if (leg == NULL || leg->ended)
        return CVX_ESTATE;
    if (supervised)
        return CVX_ENOTSUP;
    null_leg_t *far = leg->peer;
    cvx_call_info_t info = *cvx_chan_info(chan);
    snprintf(info.called, sizeof(info.called), "%s", dest);
    if (far != NULL) {
        /* The far leg now talks to a new inbound call to dest; this leg is released. */
        far->peer = NULL;
        leg->peer = NULL;
        int rc = null_loop_in(ni, far, &info);
        if (rc != 0) {
            far->peer = leg;
            leg->peer = far;
            return rc;
        }
    }
    cvx_event_t ev = {.type = CVX_EV_TRANSFER, .u.transfer = {1, 202}};
    null_queue(ni, chan, &ev, 0);
    null_end(ni, leg, CVX_CAUSE_NORMAL);
    return 0;
}

static int null_send_dtmf(void *priv, cvx_chan_t *chan, char digit, unsigned duration_ms)
{
    null_leg_t *leg = cvx_chan_driver_data(chan);
    if (leg == NULL || leg->ended)
        return CVX_ESTATE;
    if (leg->peer != NULL) {
        cvx_event_t ev = {.type = CVX_EV_DTMF, .u.dtmf = {digit, CVX_DTMF_SIGNAL, duration_ms}};
        null_queue(priv, leg->peer->chan, &ev, 0);
    }
    return 0;
}

static int null_write_frame(void *priv, cvx_chan_t *chan, const cvx_frame_t *frame)
{
    null_leg_t *leg = cvx_chan_driver_data(chan);
    if (leg == NULL || leg->ended)
        return CVX_ESTATE;
    if (frame->len > 640)
        return CVX_EINVAL;
    if (leg->peer != NULL) {
        cvx_event_t ev = {.type = CVX_EV_FRAME, .u.frame = frame};
        null_queue(priv, leg->peer->chan, &ev, 0);
    }
    return 0;
}

static int null_set_mwi(void *priv, const cvx_mwi_req_t *req)
{
    null_inst_t *ni = priv;
    if (req->device == NULL || req->device[0] == '\0')
        return CVX_EINVAL;
    null_mwi_t *m = ni->lamps;
    while (m != NULL && strcmp(m->device, req->device) != 0)
        m = m->next;
    if (m == NULL) {
        m = calloc(1, sizeof(*m));
        if (m == NULL)
            return CVX_ENOMEM;
        snprintf(m->device, sizeof(m->device), "%s", req->device);
        m->next = ni->lamps;
        ni->lamps = m;
    }
    if (ni->conf.mwi_result == 0) {
        m->on = req->on;
        m->new_msgs = req->new_msgs;
        m->old_msgs = req->old_msgs;
    }
    if (ni->conf.mwi_result != 2) {
        cvx_event_t ev = {.type = CVX_EV_MWI_RESULT,
                          .u.mwi = {req->request_id, ni->conf.mwi_result ? CVX_EIO : 0,
                                    ni->conf.mwi_result ? 500 : 200}};
        null_queue(ni, NULL, &ev, 0);
    }
    return 0;
}

static int null_reload(void *priv, const void *conf)
{
    null_inst_t *ni = priv;
    const null_conf_t *nc = conf;
    ni->conf.answer_delay_ms = nc->answer_delay_ms;
    ni->conf.mwi_result = nc->mwi_result;
    return 0;
}

static const cvx_driver_ops_t null_ops = {
    .size = sizeof(cvx_driver_ops_t),
    .options = null_options,
    .conf_size = sizeof(null_conf_t),
    .create = null_create,
    .start = null_start,
    .stop = null_stop,
    .destroy = null_destroy,
    .answer = null_answer,
    .hangup = null_hangup,
    .originate = null_originate,
    .transfer = null_transfer,
    .send_dtmf = null_send_dtmf,
    .write_frame = null_write_frame,
    .set_mwi = null_set_mwi,
    .reload = null_reload,
};

static const cvx_module_t null_module = {
    .abi_major = CVX_MODULE_ABI_MAJOR,
    .abi_minor = CVX_MODULE_ABI_MINOR,
    .size = sizeof(cvx_module_t),
    .signature = CVX_MODULE_SIGNATURE,
    .name = "null",
    .version = "1.0",
    .description = "loopback reference driver",
    .kind = CVX_MODULE_DRIVER,
    .roles = CVX_ROLE_CALL,
    .driver = &null_ops,
};

CVX_MODULE_DEFINE(null_module)
