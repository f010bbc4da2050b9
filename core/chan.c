/*
 * Channels: reference counting, the live-channel list, and operations forwarded to drivers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cvx/error.h"
#include "cvx/log.h"
#include "chan_impl.h"
#include "internal.h"

static cvx_chan_t *live_head;
static unsigned live_count;
static uint64_t next_serial;
static char id_prefix[48] = "cvx";

void cvx__chan_set_id_prefix(const char *prefix)
{
    snprintf(id_prefix, sizeof(id_prefix), "%s", prefix);
}

cvx_chan_t *cvx_chan_create(cvx_drv_inst_t *inst, cvx_dir_t dir, const cvx_call_info_t *info)
{
    cvx_chan_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->refs = 1;
    c->inst = inst;
    c->dir = dir;
    c->state = dir == CVX_DIR_IN ? CVX_CHAN_RINGING : CVX_CHAN_DIALING;
    if (info != NULL)
        c->info = *info;
    c->cdr_info = c->info;
    c->start_ms = uv_now(cvx__drv_inst_loop(inst));
    c->start_wall_ms = cvx__wall_ms();
    snprintf(c->cdr_instance, sizeof(c->cdr_instance), "%s", cvx_drv_inst_name(inst));
    snprintf(c->id, sizeof(c->id), "%s-%llu", id_prefix, (unsigned long long)++next_serial);
    c->next = live_head;
    if (live_head != NULL)
        live_head->prev = c;
    live_head = c;
    live_count++;
    cvx__drv_inst_count(inst, +1);
    return c;
}

cvx_chan_t *cvx_chan_ref(cvx_chan_t *chan)
{
    chan->refs++;
    return chan;
}

/* Takes an ended channel off the live list (it stays allocated while referenced). */
void cvx__chan_unlink(cvx_chan_t *c)
{
    if (!c->linked_out) {
        if (c->prev != NULL)
            c->prev->next = c->next;
        else
            live_head = c->next;
        if (c->next != NULL)
            c->next->prev = c->prev;
        c->next = c->prev = NULL;
        c->linked_out = 1;
        live_count--;
        cvx__drv_inst_count(c->inst, -1);
    }
}

void cvx_chan_unref(cvx_chan_t *chan)
{
    if (--chan->refs > 0)
        return;
    cvx__chan_unlink(chan);
    if (!chan->no_record)
        cvx__cdr_emit(chan);
    free(chan);
}

const char *cvx_chan_id(const cvx_chan_t *chan)
{
    return chan->id;
}

const cvx_call_info_t *cvx_chan_info(const cvx_chan_t *chan)
{
    return &chan->info;
}

cvx_call_info_t *cvx_chan_info_mut(cvx_chan_t *chan)
{
    return &chan->info;
}

cvx_drv_inst_t *cvx_chan_inst(const cvx_chan_t *chan)
{
    return chan->inst;
}

cvx_dir_t cvx_chan_dir(const cvx_chan_t *chan)
{
    return chan->dir;
}

cvx_chan_state_t cvx_chan_state(const cvx_chan_t *chan)
{
    return chan->state;
}

uint64_t cvx_chan_start_ms(const cvx_chan_t *chan)
{
    return chan->start_ms;
}

void cvx_chan_set_driver_data(cvx_chan_t *chan, void *data)
{
    chan->drv_data = data;
}

void *cvx_chan_driver_data(const cvx_chan_t *chan)
{
    return chan->drv_data;
}

void cvx_chan_set_handler(cvx_chan_t *chan, cvx_chan_handler_fn fn, void *arg)
{
    chan->handler = fn;
    chan->handler_arg = arg;
}

cvx_log_ctx_t cvx_chan_log_ctx(const cvx_chan_t *chan, const char *doing)
{
    cvx_log_ctx_t ctx = {chan->id, cvx_drv_inst_name(chan->inst), doing};
    return ctx;
}

void cvx_chan_foreach(int (*fn)(cvx_chan_t *chan, void *arg), void *arg)
{
    cvx_chan_t *c = live_head;
    while (c != NULL) {
        cvx_chan_t *next = c->next;
        if (fn(c, arg))
            break;
        c = next;
    }
}

unsigned cvx_chan_count(void)
{
    return live_count;
}

/* --- operations forwarded to the driver ------------------------------------------------ */

int cvx_chan_answer(cvx_chan_t *chan)
{
    const cvx_driver_ops_t *ops = cvx__drv_inst_ops(chan->inst);
    int (*op)(void *, cvx_chan_t *) = CVX_OP(ops, answer);
    if (op == NULL)
        return CVX_ENOTSUP;
    if (chan->state == CVX_CHAN_UP && chan->handed_off)
        return 0; /* answered by the flow that handed it on (cvx_app_handoff) */
    if (chan->state != CVX_CHAN_RINGING)
        return CVX_ESTATE;
    int rc = op(cvx__drv_inst_priv(chan->inst), chan);
    if (rc == 0) {
        chan->state = CVX_CHAN_UP;
        chan->answer_wall_ms = cvx__wall_ms();
    }
    return rc;
}

int cvx_chan_hangup(cvx_chan_t *chan, cvx_cause_t cause)
{
    const cvx_driver_ops_t *ops = cvx__drv_inst_ops(chan->inst);
    int (*op)(void *, cvx_chan_t *, cvx_cause_t) = CVX_OP(ops, hangup);
    if (op == NULL)
        return CVX_ENOTSUP;
    if (chan->state == CVX_CHAN_ENDED || chan->hangup_sent)
        return CVX_ESTATE;
    chan->hangup_sent = 1;
    return op(cvx__drv_inst_priv(chan->inst), chan, cause);
}

int cvx_chan_transfer(cvx_chan_t *chan, const char *dest, int supervised)
{
    const cvx_driver_ops_t *ops = cvx__drv_inst_ops(chan->inst);
    int (*op)(void *, cvx_chan_t *, const char *, int) = CVX_OP(ops, transfer);
    if (op == NULL)
        return CVX_ENOTSUP;
    if (chan->state != CVX_CHAN_UP)
        return CVX_ESTATE;
    return op(cvx__drv_inst_priv(chan->inst), chan, dest, supervised);
}

int cvx_chan_send_dtmf(cvx_chan_t *chan, char digit, unsigned duration_ms)
{
    const cvx_driver_ops_t *ops = cvx__drv_inst_ops(chan->inst);
    int (*op)(void *, cvx_chan_t *, char, unsigned) = CVX_OP(ops, send_dtmf);
    if (op == NULL)
        return CVX_ENOTSUP;
    if (strchr("0123456789*#ABCD", digit) == NULL || digit == '\0')
        return CVX_EINVAL;
    if (chan->state != CVX_CHAN_UP)
        return CVX_ESTATE;
    return op(cvx__drv_inst_priv(chan->inst), chan, digit, duration_ms);
}

int cvx_chan_write_frame(cvx_chan_t *chan, const cvx_frame_t *frame)
{
    const cvx_driver_ops_t *ops = cvx__drv_inst_ops(chan->inst);
    int (*op)(void *, cvx_chan_t *, const cvx_frame_t *) = CVX_OP(ops, write_frame);
    if (op == NULL)
        return CVX_ENOTSUP;
    if (chan->state != CVX_CHAN_UP)
        return CVX_ESTATE;
    return op(cvx__drv_inst_priv(chan->inst), chan, frame);
}
