/*
 * The null driver through the core on a real loop: null.so loaded by the loader, instances
 * created from configuration, calls placed with cvx_drv_originate() and offered to a test
 * application, media and DTMF across the legs, hangups with their causes, the channel limit,
 * unrouted calls, blind transfer, MWI results, reload and shutdown.
 *
 * Waiting is on events only: the loop runs until the expected event has arrived, and a test
 * fails at once when the loop has nothing left to do before it did.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cvx/app.h"
#include "cvx/driver.h"
#include "cvx/error.h"
#include "cvx/log.h"
#include "cvx/reactor.h"
#include "internal.h"

typedef struct leg {
    cvx_chan_t *chan; /* our reference */
    char events[64];  /* one letter per event: A answered, H hangup, D dtmf, F frame, T transfer */
    int answered, hangups, frames, transfers;
    cvx_cause_t cause;
    char dtmf[32];
    cvx_dtmf_source_t dtmf_source;
    unsigned dtmf_duration;
    cvx_frame_t frame;
    uint8_t frame_data[640];
    int transfer_ok, transfer_code;
} leg_t;

typedef struct mwi_rec {
    cvx_drv_inst_t *inst;
    uint64_t id;
    int err, code;
} mwi_rec_t;

typedef struct fx {
    uv_loop_t loop;
    cvx__module_t mod;
    cvx_conf_t *conf;
    cvx_drv_inst_t *inst;
    int app_registered;
    int app_answers;
    leg_t out[4];
    leg_t in[4]; /* inbound legs, in the order the application was offered them */
    int nin;
    int line_events, line_up;
    char line_reason[64];
    mwi_rec_t mwi[8];
    int nmwi;
} fx_t;

static fx_t fx;

/* Every event ends the loop's current run, so that RUN_UNTIL looks at the state after each
 * one (UV_RUN_ONCE alone would go on to wait for, and deliver, a later timer). */
static void seen(void)
{
    uv_stop(&fx.loop);
}

static void add_event(leg_t *l, char c)
{
    seen();
    size_t n = strlen(l->events);
    if (n + 1 < sizeof(l->events))
        l->events[n] = c;
}

static void leg_handler(cvx_chan_t *chan, const cvx_event_t *ev, void *arg)
{
    leg_t *l = arg;
    (void)chan;
    switch (ev->type) {
    case CVX_EV_ANSWERED:
        add_event(l, 'A');
        l->answered++;
        break;
    case CVX_EV_HANGUP:
        add_event(l, 'H');
        l->hangups++;
        l->cause = ev->u.hangup.cause;
        assert_int_equal(cvx_chan_state(chan), CVX_CHAN_ENDED);
        break;
    case CVX_EV_DTMF: {
        add_event(l, 'D');
        size_t n = strlen(l->dtmf);
        if (n + 1 < sizeof(l->dtmf))
            l->dtmf[n] = ev->u.dtmf.digit;
        l->dtmf_source = ev->u.dtmf.source;
        l->dtmf_duration = ev->u.dtmf.duration_ms;
        break;
    }
    case CVX_EV_FRAME:
        add_event(l, 'F');
        l->frames++;
        l->frame = *ev->u.frame;
        assert_true(ev->u.frame->len <= sizeof(l->frame_data));
        memcpy(l->frame_data, ev->u.frame->data, ev->u.frame->len);
        break;
    case CVX_EV_TRANSFER:
        add_event(l, 'T');
        l->transfers++;
        l->transfer_ok = ev->u.transfer.ok;
        l->transfer_code = ev->u.transfer.code;
        break;
    default:
        fail_msg("unexpected event %d on a channel", (int)ev->type);
    }
}

static int app_incoming(cvx_chan_t *chan, void *arg)
{
    fx_t *f = arg;
    seen();
    assert_true(f->nin < 4);
    leg_t *l = &f->in[f->nin++];
    assert_int_equal(cvx_chan_dir(chan), CVX_DIR_IN);
    assert_int_equal(cvx_chan_state(chan), CVX_CHAN_RINGING);
    l->chan = cvx_chan_ref(chan);
    cvx_chan_set_handler(chan, leg_handler, l);
    if (f->app_answers)
        assert_int_equal(cvx_chan_answer(chan), 0);
    return 0;
}

static const cvx_app_ops_t app_ops = {sizeof(cvx_app_ops_t), app_incoming};

static void listener(cvx_drv_inst_t *inst, const cvx_event_t *ev, void *arg)
{
    fx_t *f = arg;
    seen();
    if (ev->type == CVX_EV_LINE_STATE) {
        f->line_events++;
        f->line_up = ev->u.line.up;
        snprintf(f->line_reason, sizeof(f->line_reason), "%s",
                 ev->u.line.reason ? ev->u.line.reason : "");
    } else if (ev->type == CVX_EV_MWI_RESULT) {
        assert_true(f->nmwi < 8);
        mwi_rec_t *m = &f->mwi[f->nmwi++];
        m->inst = inst;
        m->id = ev->u.mwi.request_id;
        m->err = ev->u.mwi.err;
        m->code = ev->u.mwi.code;
    } else {
        fail_msg("unexpected event %d at the listener", (int)ev->type);
    }
}

/* Runs the loop until cond holds; fails when the loop runs out of work first. */
#define RUN_UNTIL(f, cond)                                                                         \
    do {                                                                                           \
        while (!(cond)) {                                                                          \
            if (uv_run(&(f)->loop, UV_RUN_ONCE) == 0 && !(cond))                                   \
                fail_msg("the loop went idle before: %s", #cond);                                  \
        }                                                                                          \
    } while (0)

/* Runs the loop until nothing is pending. */
static void settle(fx_t *f)
{
    while (uv_run(&f->loop, UV_RUN_DEFAULT) != 0)
        ;
}

static void fx_teardown(fx_t *f);

static int fx_setup(fx_t *f, const char *text, int with_app)
{
    memset(f, 0, sizeof(*f));
    assert_int_equal(cvx_loop_init(&f->loop), 0);
    const char *dir = getenv("CVX_MODULE_DIR");
    assert_non_null(dir);
    char path[1024];
    snprintf(path, sizeof(path), "%s/null.so", dir);
    assert_int_equal(cvx__module_open(&f->mod, path), 0);
    f->conf = cvx_conf_new();
    cvx_module_env_t env = {&f->loop, CVX_ROLE_ALL, f->conf, ""};
    assert_int_equal(cvx__module_load(&f->mod, &env), 0);

    cvx_diag_t d = {0};
    assert_int_equal(cvx_conf_parse(f->conf, "null.conf", text, &d), 0);
    assert_int_equal(cvx__drv_create_all(&f->mod, f->conf, &f->loop, &d), 0);
    assert_int_equal(d.n, 0);
    assert_int_equal(cvx_conf_check_unclaimed(f->conf, &d), 0);
    cvx_drv_set_listener(listener, f);
    assert_int_equal(cvx__drv_start_all(&d), 0);
    f->inst = cvx_drv_inst_find("null:a");
    assert_non_null(f->inst);
    assert_string_equal(cvx_drv_inst_name(f->inst), "null:a");
    if (with_app) {
        assert_int_equal(cvx_app_register("testapp", &app_ops, f), 0);
        f->app_registered = 1;
        f->app_answers = 1;
    }
    return 0;
}

#define CONF_A     "[null:a]\nchannels = 4\n"
#define CONF_DELAY "[null:a]\nchannels = 4\nanswer_delay = 300ms\n"
#define CONF_MWI   "[null:a]\n[null:f]\nmwi_result = fail\n[null:s]\nmwi_result = silent\n"

/* cmocka runs the teardown even after a failed test, so one failure does not spill into
 * the next test. */
static int setup_app(void **state)
{
    const char *text = *state ? *state : CONF_A;
    *state = &fx;
    return fx_setup(&fx, text, 1);
}

static int setup_noapp(void **state)
{
    const char *text = *state ? *state : CONF_A;
    *state = &fx;
    return fx_setup(&fx, text, 0);
}

static int teardown(void **state)
{
    fx_teardown(*state);
    return 0;
}

static void fx_teardown(fx_t *f)
{
    settle(f);
    for (int i = 0; i < 4; i++) {
        if (f->out[i].chan)
            cvx_chan_unref(f->out[i].chan);
        if (f->in[i].chan)
            cvx_chan_unref(f->in[i].chan);
        f->out[i].chan = f->in[i].chan = NULL;
    }
    cvx__drv_stop_all();
    settle(f);
    assert_int_equal(cvx_chan_count(), 0);
    cvx__drv_destroy_all();
    assert_null(cvx_drv_inst_find("null:a"));
    /* The driver's handles close on the loop, with callbacks in null.so: run them before the
     * module is unloaded. */
    settle(f);
    if (f->app_registered)
        cvx_app_unregister("testapp");
    cvx_drv_set_listener(NULL, NULL);
    cvx__module_close(&f->mod);
    free(f->mod.path);
    f->mod.path = NULL;
    cvx_conf_free(f->conf);
    f->conf = NULL;
    assert_int_equal(uv_loop_close(&f->loop), 0);
}

static int originate(fx_t *f, leg_t *out, const char *calling, const char *called)
{
    cvx_call_info_t info;
    memset(&info, 0, sizeof(info));
    snprintf(info.calling, sizeof(info.calling), "%s", calling);
    snprintf(info.called, sizeof(info.called), "%s", called);
    return cvx_drv_originate(f->inst, &info, leg_handler, out, &out->chan);
}

/* Places a call and waits until the application has it and the caller heard the answer. */
static void call_up(fx_t *f, leg_t *out)
{
    int before = f->nin;
    assert_int_equal(originate(f, out, "100", "2000"), 0);
    RUN_UNTIL(f, f->nin == before + 1 && out->answered == 1);
    assert_int_equal(cvx_chan_state(out->chan), CVX_CHAN_UP);
    assert_int_equal(cvx_chan_state(f->in[before].chan), CVX_CHAN_UP);
}

static void test_call_answered(void **state)
{
    fx_t *f = *state;
    cvx_call_info_t info;
    memset(&info, 0, sizeof(info));
    snprintf(info.calling, sizeof(info.calling), "100");
    snprintf(info.calling_name, sizeof(info.calling_name), "Front Desk");
    snprintf(info.called, sizeof(info.called), "2000");
    snprintf(info.original_called, sizeof(info.original_called), "3001");
    info.redirect = CVX_REDIRECT_NO_ANSWER;
    info.redirect_count = 1;
    assert_int_equal(cvx_drv_originate(f->inst, &info, leg_handler, &f->out[0], &f->out[0].chan),
                     0);
    assert_int_equal(cvx_chan_dir(f->out[0].chan), CVX_DIR_OUT);
    assert_int_equal(cvx_chan_state(f->out[0].chan), CVX_CHAN_DIALING);
    /* Nothing is reported from inside the operation. */
    assert_int_equal(f->nin, 0);
    assert_string_equal(f->out[0].events, "");

    RUN_UNTIL(f, f->nin == 1 && f->out[0].answered == 1);
    cvx_chan_t *in = f->in[0].chan;
    const cvx_call_info_t *ii = cvx_chan_info(in);
    assert_string_equal(ii->calling, "100");
    assert_string_equal(ii->calling_name, "Front Desk");
    assert_string_equal(ii->called, "2000");
    assert_string_equal(ii->original_called, "3001");
    assert_int_equal(ii->redirect, CVX_REDIRECT_NO_ANSWER);
    assert_int_equal(ii->redirect_count, 1);
    assert_ptr_equal(cvx_chan_inst(in), f->inst);
    assert_string_not_equal(cvx_chan_id(in), cvx_chan_id(f->out[0].chan));
    assert_int_equal(cvx_chan_state(in), CVX_CHAN_UP);
    assert_int_equal(cvx_chan_state(f->out[0].chan), CVX_CHAN_UP);
    assert_string_equal(f->out[0].events, "A");
    assert_string_equal(f->in[0].events, "");
    assert_int_equal(cvx_chan_count(), 2);
    /* Answering twice is a state error. */
    assert_int_equal(cvx_chan_answer(in), CVX_ESTATE);

    cvx_drv_inst_info_t di;
    cvx_drv_inst_get_info(f->inst, &di);
    assert_string_equal(di.name, "null:a");
    assert_string_equal(di.driver, "null");
    assert_int_equal(di.calls, 2);
    assert_int_equal(di.calls_total, 2);
    assert_int_equal(di.line_up, 1);
    assert_string_equal(di.line_reason, "loopback ready");
    assert_int_equal(f->line_events, 1);
    assert_string_equal(f->line_reason, "loopback ready");
}

static void test_media_and_dtmf(void **state)
{
    fx_t *f = *state;
    call_up(f, &f->out[0]);
    cvx_chan_t *out = f->out[0].chan, *in = f->in[0].chan;

    uint8_t pcm[320];
    for (int i = 0; i < 320; i++)
        pcm[i] = (uint8_t)(i * 7);
    cvx_frame_t fr = {8000, CVX_CODEC_L16, 160, 320, 1234, pcm};
    assert_int_equal(cvx_chan_write_frame(out, &fr), 0);
    memset(pcm, 0, sizeof(pcm)); /* the driver copied it */
    RUN_UNTIL(f, f->in[0].frames == 1);
    assert_int_equal(f->in[0].frame.rate, 8000);
    assert_int_equal(f->in[0].frame.codec, CVX_CODEC_L16);
    assert_int_equal(f->in[0].frame.samples, 160);
    assert_int_equal(f->in[0].frame.len, 320);
    assert_int_equal(f->in[0].frame.ts, 1234);
    for (int i = 0; i < 320; i++)
        assert_int_equal(f->in[0].frame_data[i], (uint8_t)(i * 7));

    uint8_t ulaw[160];
    memset(ulaw, 0xff, sizeof(ulaw));
    cvx_frame_t fr2 = {8000, CVX_CODEC_PCMU, 160, 160, 99, ulaw};
    assert_int_equal(cvx_chan_write_frame(in, &fr2), 0);
    RUN_UNTIL(f, f->out[0].frames == 1);
    assert_int_equal(f->out[0].frame.codec, CVX_CODEC_PCMU);
    assert_int_equal(f->out[0].frame.len, 160);
    assert_int_equal(f->out[0].frame_data[159], 0xff);

    cvx_frame_t huge = {8000, CVX_CODEC_L16, 400, 800, 0, NULL};
    assert_int_equal(cvx_chan_write_frame(out, &huge), CVX_EINVAL);

    assert_int_equal(cvx_chan_send_dtmf(out, '5', 120), 0);
    RUN_UNTIL(f, strlen(f->in[0].dtmf) == 1);
    assert_string_equal(f->in[0].dtmf, "5");
    assert_int_equal(f->in[0].dtmf_source, CVX_DTMF_SIGNAL);
    assert_int_equal(f->in[0].dtmf_duration, 120);
    assert_int_equal(cvx_chan_send_dtmf(in, '#', 80), 0);
    assert_int_equal(cvx_chan_send_dtmf(in, '*', 80), 0);
    assert_int_equal(cvx_chan_send_dtmf(in, 'A', 80), 0);
    assert_int_equal(cvx_chan_send_dtmf(in, '0', 80), 0);
    RUN_UNTIL(f, strlen(f->out[0].dtmf) == 4);
    assert_string_equal(f->out[0].dtmf, "#*A0");
    assert_int_equal(cvx_chan_send_dtmf(in, 'x', 80), CVX_EINVAL);
    assert_int_equal(cvx_chan_send_dtmf(in, '\0', 80), CVX_EINVAL);
    settle(f);
    assert_string_equal(f->out[0].events, "AFDDDD");
    assert_string_equal(f->in[0].events, "FD");
}

static void hangup_case(fx_t *f, cvx_cause_t cause, int from_caller)
{
    call_up(f, &f->out[0]);
    leg_t *me = from_caller ? &f->out[0] : &f->in[0];
    leg_t *far = from_caller ? &f->in[0] : &f->out[0];
    assert_int_equal(cvx_chan_hangup(me->chan, cause), 0);
    /* Asked once; a second request is refused while the first is under way. */
    assert_int_equal(cvx_chan_hangup(me->chan, cause), CVX_ESTATE);
    RUN_UNTIL(f, me->hangups == 1 && far->hangups == 1);
    assert_int_equal(far->cause, cause);
    assert_int_equal(me->cause, cause);
    assert_int_equal(cvx_chan_state(me->chan), CVX_CHAN_ENDED);
    assert_int_equal(cvx_chan_state(far->chan), CVX_CHAN_ENDED);
    assert_int_equal(cvx_chan_count(), 0); /* off the live list while we still hold them */
    cvx_drv_inst_info_t di;
    cvx_drv_inst_get_info(f->inst, &di);
    assert_int_equal(di.calls, 0);
    /* Nothing works on an ended call, and nothing more is reported. */
    assert_int_equal(cvx_chan_hangup(far->chan, CVX_CAUSE_NORMAL), CVX_ESTATE);
    assert_int_equal(cvx_chan_send_dtmf(far->chan, '1', 80), CVX_ESTATE);
    cvx_frame_t fr = {8000, CVX_CODEC_PCMU, 0, 0, 0, NULL};
    assert_int_equal(cvx_chan_write_frame(far->chan, &fr), CVX_ESTATE);
    settle(f);
    assert_int_equal(me->hangups, 1);
    assert_int_equal(far->hangups, 1);
}

static void test_hangup_from_caller(void **state)
{
    (void)state;
    hangup_case(*state, CVX_CAUSE_NORMAL, 1);
}

static void test_hangup_from_callee(void **state)
{
    (void)state;
    hangup_case(*state, CVX_CAUSE_BUSY, 0);
}

static void test_channel_limit(void **state)
{
    fx_t *f = *state;
    call_up(f, &f->out[0]);
    call_up(f, &f->out[1]);
    assert_int_equal(cvx_chan_count(), 4);
    /* A third call needs a fifth leg. */
    cvx_chan_t *none = NULL;
    cvx_call_info_t info;
    memset(&info, 0, sizeof(info));
    assert_int_equal(cvx_drv_originate(f->inst, &info, leg_handler, &f->out[2], &none), CVX_EBUSY);
    assert_null(none);
    assert_int_equal(cvx_chan_count(), 4);
    settle(f);
    assert_int_equal(f->nin, 2);
    assert_string_equal(f->out[2].events, "");

    /* Once a call ends there is room again. */
    assert_int_equal(cvx_chan_hangup(f->out[0].chan, CVX_CAUSE_NORMAL), 0);
    RUN_UNTIL(f, f->in[0].hangups == 1 && f->out[0].hangups == 1);
    call_up(f, &f->out[2]);
    assert_int_equal(cvx_chan_count(), 4);
    cvx_drv_inst_info_t di;
    cvx_drv_inst_get_info(f->inst, &di);
    assert_int_equal(di.calls_total, 6);
}

static void test_no_route(void **state)
{
    fx_t *f = *state;
    assert_int_equal(originate(f, &f->out[0], "100", "2000"), 0);
    RUN_UNTIL(f, f->out[0].hangups == 1);
    assert_int_equal(f->out[0].cause, CVX_CAUSE_NO_ROUTE);
    assert_string_equal(f->out[0].events, "H");
    assert_int_equal(f->nin, 0);
    settle(f);
    assert_int_equal(cvx_chan_count(), 0);
}

static void test_blind_transfer(void **state)
{
    fx_t *f = *state;
    call_up(f, &f->out[0]);
    cvx_chan_t *in = f->in[0].chan;
    assert_int_equal(cvx_chan_transfer(in, "4000", 1), CVX_ENOTSUP);
    assert_int_equal(cvx_chan_transfer(in, "4000", 0), 0);
    RUN_UNTIL(f, f->nin == 2 && f->in[0].hangups == 1);
    /* The transferring leg hears the result, then is released. */
    assert_string_equal(f->in[0].events, "TH");
    assert_int_equal(f->in[0].transfer_ok, 1);
    assert_int_equal(f->in[0].transfer_code, 202);
    assert_int_equal(f->in[0].cause, CVX_CAUSE_NORMAL);
    /* The far leg is offered again to the application, to the new number. */
    const cvx_call_info_t *ni = cvx_chan_info(f->in[1].chan);
    assert_string_equal(ni->called, "4000");
    assert_string_equal(ni->calling, "100");
    RUN_UNTIL(f, f->out[0].answered == 2);
    assert_int_equal(f->out[0].hangups, 0);
    assert_int_equal(cvx_chan_state(f->out[0].chan), CVX_CHAN_UP);

    /* The caller now talks to the new leg. */
    assert_int_equal(cvx_chan_send_dtmf(f->out[0].chan, '9', 60), 0);
    RUN_UNTIL(f, strlen(f->in[1].dtmf) == 1);
    assert_string_equal(f->in[1].dtmf, "9");
    assert_string_equal(f->in[0].dtmf, "");
    assert_int_equal(cvx_chan_hangup(f->in[1].chan, CVX_CAUSE_NORMAL), 0);
    RUN_UNTIL(f, f->out[0].hangups == 1 && f->in[1].hangups == 1);
    assert_int_equal(f->out[0].cause, CVX_CAUSE_NORMAL);
    settle(f);
    assert_int_equal(cvx_chan_count(), 0);
}

static void test_mwi(void **state)
{
    fx_t *f = *state;
    cvx_drv_inst_t *fi = cvx_drv_inst_find("null:f"), *si = cvx_drv_inst_find("null:s");
    assert_non_null(fi);
    assert_non_null(si);
    cvx_mwi_req_t req = {1, "200", "200@pbx", 1, 2, 0, 0, 0};
    /* The silent one first: if it answered, its result would come first. */
    req.request_id = 3;
    assert_int_equal(cvx_drv_inst_set_mwi(si, &req), 0);
    req.request_id = 1;
    assert_int_equal(cvx_drv_inst_set_mwi(f->inst, &req), 0);
    req.request_id = 2;
    assert_int_equal(cvx_drv_inst_set_mwi(fi, &req), 0);
    req.device = "";
    assert_int_equal(cvx_drv_inst_set_mwi(f->inst, &req), CVX_EINVAL);
    req.device = NULL;
    assert_int_equal(cvx_drv_inst_set_mwi(f->inst, &req), CVX_EINVAL);
    assert_int_equal(f->nmwi, 0); /* results come later, from the loop */
    settle(f);
    assert_int_equal(f->nmwi, 2);
    mwi_rec_t *ok = f->mwi[0].id == 1 ? &f->mwi[0] : &f->mwi[1];
    mwi_rec_t *bad = f->mwi[0].id == 1 ? &f->mwi[1] : &f->mwi[0];
    assert_int_equal(ok->id, 1);
    assert_ptr_equal(ok->inst, f->inst);
    assert_int_equal(ok->err, 0);
    assert_int_equal(ok->code, 200);
    assert_int_equal(bad->id, 2);
    assert_ptr_equal(bad->inst, fi);
    assert_int_equal(bad->err, CVX_EIO);
    assert_int_equal(bad->code, 500);
    assert_int_equal(f->line_events, 3);

    /* Reload: mwi_result is reloadable and now fails on null:a; channels needs a restart. */
    cvx_conf_t *c2 = cvx_conf_new();
    cvx_diag_t d = {0};
    assert_int_equal(cvx_conf_parse(c2, "null.conf",
                                    "[null:a]\nmwi_result = fail\nchannels = 3\n[null:f]\n"
                                    "mwi_result = fail\n[null:s]\nmwi_result = silent\n",
                                    &d),
                     0);
    unsigned applied = 0, restart = 0;
    assert_int_equal(cvx__drv_reload_all(c2, &applied, &restart, &d), 0);
    assert_int_equal(applied, 1);
    assert_int_equal(restart, 1);
    assert_int_equal(d.n, 2);
    assert_string_equal(d.msgs[0], "[null:a] channels = 3: needs a restart");
    assert_string_equal(d.msgs[1], "[null:a] mwi_result = fail: applied");
    cvx_diag_clear(&d);
    cvx_conf_free(c2);
    req.device = "200@pbx";
    req.request_id = 4;
    assert_int_equal(cvx_drv_inst_set_mwi(f->inst, &req), 0);
    settle(f);
    assert_int_equal(f->nmwi, 3);
    assert_int_equal(f->mwi[2].id, 4);
    assert_int_equal(f->mwi[2].err, CVX_EIO);

    /* A stopped instance takes no requests. */
    cvx__drv_stop_all();
    assert_int_equal(cvx_drv_inst_set_mwi(f->inst, &req), CVX_ESTATE);
}

static void test_stop_hangs_up(void **state)
{
    fx_t *f = *state;
    call_up(f, &f->out[0]);
    call_up(f, &f->out[1]);
    cvx__drv_stop_all();
    RUN_UNTIL(f, f->out[0].hangups == 1 && f->in[0].hangups == 1 && f->out[1].hangups == 1 &&
                     f->in[1].hangups == 1);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(f->out[i].cause, CVX_CAUSE_SHUTDOWN);
        assert_int_equal(f->in[i].cause, CVX_CAUSE_SHUTDOWN);
    }
    assert_int_equal(cvx_chan_count(), 0);
    /* No new calls once stopped. */
    cvx_chan_t *none = NULL;
    cvx_call_info_t info;
    memset(&info, 0, sizeof(info));
    assert_int_equal(cvx_drv_originate(f->inst, &info, leg_handler, &f->out[2], &none), CVX_ESTATE);
    assert_null(none);
}

static void test_destroy_with_live_calls(void **state)
{
    (void)state;
    /* Destroying an instance whose calls were never ended frees them (ASan checks leaks). */
    fx_t *f = *state;
    call_up(f, &f->out[0]);
    cvx_chan_unref(f->out[0].chan);
    cvx_chan_unref(f->in[0].chan);
    f->out[0].chan = f->in[0].chan = NULL;
    cvx__drv_destroy_all();
    assert_int_equal(cvx_chan_count(), 0);
    assert_null(cvx_drv_inst_find("null:a"));
}

static void test_hangup_before_delayed_answer(void **state)
{
    fx_t *f = *state;
    /* answer_delay holds the answer back; the callee hangs up before it is reported: the
     * caller hears the hangup and never an answer. */
    assert_int_equal(originate(f, &f->out[0], "100", "2000"), 0);
    RUN_UNTIL(f, f->nin == 1);
    assert_int_equal(cvx_chan_state(f->in[0].chan), CVX_CHAN_UP);
    assert_int_equal(cvx_chan_hangup(f->in[0].chan, CVX_CAUSE_NORMAL), 0);
    settle(f);
    assert_string_equal(f->out[0].events, "H");
    assert_int_equal(f->out[0].cause, CVX_CAUSE_NORMAL);
    assert_string_equal(f->in[0].events, "H");

    /* With the delay, the answer still arrives when nobody hangs up. */
    call_up(f, &f->out[1]);
    assert_string_equal(f->out[1].events, "A");
}

static void test_events_after_hangup_ignored(void **state)
{
    fx_t *f = *state;
    call_up(f, &f->out[0]);
    assert_int_equal(cvx_chan_hangup(f->out[0].chan, CVX_CAUSE_NORMAL), 0);
    RUN_UNTIL(f, f->out[0].hangups == 1 && f->in[0].hangups == 1);
    /* A driver reporting late (an answer or a digit that crossed the hangup, a second
     * hangup) must not reach the call flow of an ended call. */
    cvx_event_t ev = {.type = CVX_EV_ANSWERED};
    cvx_drv_event(f->inst, f->out[0].chan, &ev);
    ev.type = CVX_EV_DTMF;
    ev.u.dtmf.digit = '1';
    cvx_drv_event(f->inst, f->out[0].chan, &ev);
    ev.type = CVX_EV_HANGUP;
    ev.u.hangup.cause = CVX_CAUSE_BUSY;
    cvx_drv_event(f->inst, f->out[0].chan, &ev);
    assert_string_equal(f->out[0].events, "AH");
    assert_int_equal(f->out[0].cause, CVX_CAUSE_NORMAL);
    assert_int_equal(cvx_chan_state(f->out[0].chan), CVX_CHAN_ENDED);
}

static void test_transfer_without_room(void **state)
{
    fx_t *f = *state;
    /* Two channels: the call fills them, so a transfer has no leg for the new call.  It is
     * refused and the call goes on as before. */
    call_up(f, &f->out[0]);
    assert_int_equal(cvx_chan_transfer(f->in[0].chan, "4000", 0), CVX_EBUSY);
    assert_int_equal(cvx_chan_send_dtmf(f->out[0].chan, '7', 60), 0);
    RUN_UNTIL(f, strlen(f->in[0].dtmf) == 1);
    assert_string_equal(f->in[0].dtmf, "7");
    settle(f);
    assert_int_equal(f->nin, 1);
    assert_string_equal(f->in[0].events, "D");
    assert_string_equal(f->out[0].events, "A");
    assert_int_equal(cvx_chan_count(), 2);
}

static void test_reload(void **state)
{
    fx_t *f = *state;
    cvx_diag_t d = {0};
    unsigned applied = 0, restart = 0;
    const char *text = "[null:a]\nmwi_result = fail\nchannels = 3\n[null:f]\nmwi_result = fail\n"
                       "[null:s]\nmwi_result = silent\n";
    for (int round = 0; round < 2; round++) {
        /* The same new file twice: the reloadable change is applied once; the other one is
         * reported as needing a restart both times, and never shown as applied. */
        cvx_conf_t *c2 = cvx_conf_new();
        assert_int_equal(cvx_conf_parse(c2, "null.conf", text, &d), 0);
        applied = restart = 0;
        assert_int_equal(cvx__drv_reload_all(c2, &applied, &restart, &d), 0);
        assert_int_equal(applied, round == 0 ? 1 : 0);
        assert_int_equal(restart, 1);
        assert_int_equal(d.n, round == 0 ? 2 : 1);
        assert_string_equal(d.msgs[0], "[null:a] channels = 3: needs a restart");
        if (round == 0)
            assert_string_equal(d.msgs[1], "[null:a] mwi_result = fail: applied");
        cvx_diag_clear(&d);
        cvx_conf_free(c2);
    }

    /* A removed instance and a new one need a restart; an error changes nothing. */
    cvx_conf_t *c3 = cvx_conf_new();
    assert_int_equal(cvx_conf_parse(c3, "null.conf",
                                    "[null:a]\nmwi_result = fail\n[null:s]\nmwi_result = "
                                    "silent\n[null:b]\n",
                                    &d),
                     0);
    applied = restart = 0;
    assert_int_equal(cvx__drv_reload_all(c3, &applied, &restart, &d), 0);
    assert_int_equal(applied, 0);
    /* null:a runs with 8 channels still, which is what this file says: nothing to do. */
    assert_int_equal(restart, 2);
    assert_int_equal(d.n, 2);
    assert_string_equal(d.msgs[0], "[null:f] was removed: needs a restart");
    assert_string_equal(d.msgs[1], "[null:b] is new: needs a restart");
    cvx_diag_clear(&d);
    cvx_conf_free(c3);

    cvx_conf_t *c4 = cvx_conf_new();
    assert_int_equal(cvx_conf_parse(c4, "null.conf",
                                    "[null:a]\nmwi_result = ok\n[null:f]\nmwi_result = maybe\n"
                                    "[null:s]\n",
                                    &d),
                     0);
    applied = restart = 0;
    assert_int_equal(cvx__drv_reload_all(c4, &applied, &restart, &d), CVX_EINVAL);
    assert_int_equal(applied, 0);
    assert_int_equal(d.n, 1);
    assert_string_equal(
        d.msgs[0], "null.conf:4: [null:f] mwi_result: 'maybe' is not one of: ok, fail, silent");
    cvx_diag_clear(&d);
    cvx_conf_free(c4);
    /* null:a still fails MWI requests, as the last good reload said. */
    cvx_mwi_req_t req = {9, "200", "200@pbx", 1, 1, 0, 0, 0};
    assert_int_equal(cvx_drv_inst_set_mwi(f->inst, &req), 0);
    settle(f);
    assert_int_equal(f->mwi[f->nmwi - 1].id, 9);
    assert_int_equal(f->mwi[f->nmwi - 1].err, CVX_EIO);
}

static void test_create_errors(void **state)
{
    (void)state;
    uv_loop_t loop;
    cvx__module_t mod;
    memset(&mod, 0, sizeof(mod));
    assert_int_equal(cvx_loop_init(&loop), 0);
    char path[1024];
    snprintf(path, sizeof(path), "%s/null.so", getenv("CVX_MODULE_DIR"));
    assert_int_equal(cvx__module_open(&mod, path), 0);
    cvx_conf_t *conf = cvx_conf_new();
    cvx_module_env_t env = {&loop, CVX_ROLE_ALL, conf, ""};
    assert_int_equal(cvx__module_load(&mod, &env), 0);
    cvx_diag_t d = {0};
    assert_int_equal(cvx_conf_parse(conf, "null.conf",
                                    "[null]\nchannels = 2\n[null:a]\nchannels = 0\n"
                                    "[null:b]\nringing = yes\n[null:c]\n",
                                    &d),
                     0);
    assert_int_equal(cvx__drv_create_all(&mod, conf, &loop, &d), CVX_EINVAL);
    assert_int_equal(d.n, 3);
    assert_string_equal(d.msgs[0], "null.conf:1: [null] needs an instance name: [null:NAME]");
    assert_string_equal(d.msgs[1], "null.conf:4: [null:a] channels: 0 is out of range (1..100000)");
    assert_string_equal(d.msgs[2], "null.conf:6: [null:b] unknown key 'ringing'");
    cvx_diag_clear(&d);
    /* Only the good one exists, and every section was looked at. */
    assert_null(cvx_drv_inst_find("null:a"));
    assert_null(cvx_drv_inst_find("null:b"));
    assert_non_null(cvx_drv_inst_find("null:c"));
    assert_int_equal(cvx_conf_check_unclaimed(conf, &d), 0);
    cvx__drv_destroy_all();
    uv_run(&loop, UV_RUN_DEFAULT);
    cvx__module_close(&mod);
    free(mod.path);
    cvx_conf_free(conf);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    cvx_log_set_level(CVX_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_call_answered, setup_app, teardown),
        cmocka_unit_test_setup_teardown(test_media_and_dtmf, setup_app, teardown),
        cmocka_unit_test_setup_teardown(test_hangup_from_caller, setup_app, teardown),
        cmocka_unit_test_setup_teardown(test_hangup_from_callee, setup_app, teardown),
        cmocka_unit_test_setup_teardown(test_channel_limit, setup_app, teardown),
        cmocka_unit_test_setup_teardown(test_no_route, setup_noapp, teardown),
        cmocka_unit_test_setup_teardown(test_blind_transfer, setup_app, teardown),
        cmocka_unit_test_prestate_setup_teardown(test_mwi, setup_noapp, teardown, (void *)CONF_MWI),
        cmocka_unit_test_setup_teardown(test_stop_hangs_up, setup_app, teardown),
        cmocka_unit_test_setup_teardown(test_destroy_with_live_calls, setup_app, teardown),
        cmocka_unit_test_prestate_setup_teardown(test_hangup_before_delayed_answer, setup_app,
                                                 teardown, (void *)CONF_DELAY),
        cmocka_unit_test_setup_teardown(test_events_after_hangup_ignored, setup_app, teardown),
        cmocka_unit_test_prestate_setup_teardown(test_transfer_without_room, setup_app, teardown,
                                                 (void *)"[null:a]\nchannels = 2\n"),
        cmocka_unit_test_prestate_setup_teardown(test_reload, setup_noapp, teardown,
                                                 (void *)CONF_MWI),
        cmocka_unit_test(test_create_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
