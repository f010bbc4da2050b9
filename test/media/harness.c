/*
 * The media tests' harness (see harness.h).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cvx/app.h"
#include "cvx/config.h"
#include "cvx/error.h"
#include "cvx/media.h"
#include "cvx/reactor.h"
#include "harness.h"
#include "internal.h"

static int mt_incoming(cvx_chan_t *chan, void *arg)
{
    mt_env_t *e = arg;
    if (e->in_events == NULL)
        return CVX_EDECLINED;
    cvx_chan_set_handler(chan, mt_record_handler, e->in_events);
    e->in_chan = cvx_chan_ref(chan);
    e->in_events = NULL;
    return cvx_chan_answer(chan);
}

static const cvx_app_ops_t mt_app = {sizeof(cvx_app_ops_t), mt_incoming};

void mt_setup(mt_env_t *e, const char *extra_conf)
{
    memset(e, 0, sizeof(*e));
    assert_int_equal(cvx_loop_init(&e->loop), 0);
    cvx_conf_t *conf = cvx_conf_new();
    cvx_diag_t diag = {0};
    char text[1024];
    /* Only the null driver: a directory holding just null.so, so that the other modules
     * of the build (sip, echo, voicemail, ...) stay out whatever is added later. */
    snprintf(text, sizeof(text), "[null:t]\nchannels = 1000\n%s", extra_conf ? extra_conf : "");
    assert_int_equal(cvx_conf_parse(conf, "test.conf", text, &diag), 0);
    const char *build_dir = getenv("CVX_MODULE_DIR");
    assert_non_null(build_dir);
    char dir[] = "/tmp/cvx-harness-XXXXXX", src[4096], dst[256];
    assert_non_null(mkdtemp(dir));
    snprintf(src, sizeof(src), "%s/null.so", build_dir);
    snprintf(dst, sizeof(dst), "%s/null.so", dir);
    assert_int_equal(symlink(src, dst), 0);
    int rc = cvx__modules_load_dir(dir, conf, CVX_ROLE_CALL, &e->loop, &e->mods, &diag);
    unlink(dst);
    rmdir(dir);
    for (size_t i = 0; i < diag.n; i++)
        fprintf(stderr, "diag: %s\n", diag.msgs[i]);
    assert_int_equal(rc, 0);
    assert_int_equal(cvx__drv_create_all(e->mods, conf, &e->loop, &diag), 0);
    assert_int_equal(cvx__drv_start_all(&diag), 0);
    cvx_diag_clear(&diag);
    e->conf = conf;
    e->inst = cvx_drv_inst_find("null:t");
    assert_non_null(e->inst);
    assert_int_equal(cvx_app_register("mediatest", &mt_app, e), 0);
}

void mt_teardown(mt_env_t *e)
{
    cvx_app_unregister("mediatest");
    cvx__drv_stop_all();
    mt_run_for(e, 20);
    cvx__drv_destroy_all();
    cvx_media_clock_close();
    /* Close callbacks of the drivers run from their own code: before it is unloaded. */
    uv_run(&e->loop, UV_RUN_NOWAIT);
    cvx_loop_close_all(&e->loop);
    cvx__modules_unload(&e->mods);
    cvx_conf_free(e->conf);
}

void mt_record_handler(cvx_chan_t *chan, const cvx_event_t *ev, void *arg)
{
    mt_events_t *r = arg;
    (void)chan;
    switch (ev->type) {
    case CVX_EV_DTMF:
        if (r->ndigits + 1 < sizeof(r->digits))
            r->digits[r->ndigits++] = ev->u.dtmf.digit;
        r->last_source = ev->u.dtmf.source;
        break;
    case CVX_EV_FRAME: {
        const cvx_frame_t *f = ev->u.frame;
        r->frames++;
        r->samples += f->samples;
        if (f->codec == CVX_CODEC_L16) {
            int loud = 0;
            for (uint32_t i = 0; i < f->samples; i++) {
                int16_t s;
                memcpy(&s, f->data + 2 * i, 2);
                r->energy += (double)s * s;
                if (s > 64 || s < -64)
                    loud = 1;
            }
            r->nonsilent_frames += (uint64_t)loud;
        }
        break;
    }
    case CVX_EV_HANGUP:
        r->hangup++;
        r->cause = ev->u.hangup.cause;
        break;
    case CVX_EV_ANSWERED:
        r->answered++;
        break;
    default:
        break;
    }
}

cvx_chan_t *mt_chan(mt_env_t *e, mt_events_t *ev)
{
    cvx_call_info_t info;
    memset(&info, 0, sizeof(info));
    snprintf(info.called, sizeof(info.called), "100");
    cvx_chan_t *c = cvx_chan_create(e->inst, CVX_DIR_IN, &info);
    assert_non_null(c);
    cvx_chan_set_handler(c, mt_record_handler, ev);
    return c;
}

static void deadline_cb(uv_timer_t *t)
{
    (void)t; /* only wakes the loop up */
}

int mt_run_until(mt_env_t *e, int (*cond)(void *arg), void *arg, unsigned timeout_ms)
{
    uint64_t deadline = uv_hrtime() + (uint64_t)timeout_ms * 1000000ull;
    /* A timer keeps uv_run(ONCE) from waiting forever when nothing else is active. */
    uv_timer_t t;
    uv_timer_init(&e->loop, &t);
    uv_timer_start(&t, deadline_cb, 10, 10);
    int ok = 1;
    while (!cond(arg)) {
        if (uv_hrtime() > deadline) {
            ok = 0;
            break;
        }
        uv_run(&e->loop, UV_RUN_ONCE);
    }
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&e->loop, UV_RUN_NOWAIT);
    return ok;
}

static void on_timer(uv_timer_t *t)
{
    *(int *)t->data = 1;
}

static int flag_set(void *arg)
{
    return *(int *)arg;
}

void mt_run_for(mt_env_t *e, unsigned ms)
{
    uv_timer_t t;
    int done = 0;
    uv_timer_init(&e->loop, &t);
    t.data = &done;
    uv_timer_start(&t, on_timer, ms, 0);
    mt_run_until(e, flag_set, &done, ms + 5000);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&e->loop, UV_RUN_NOWAIT);
}

static int call_up(void *arg)
{
    mt_call_t *c = arg;
    return c->out_ev.answered > 0;
}

void mt_call(mt_env_t *e, mt_call_t *c)
{
    memset(c, 0, sizeof(*c));
    cvx_call_info_t info;
    memset(&info, 0, sizeof(info));
    snprintf(info.called, sizeof(info.called), "200");
    e->in_events = &c->in_ev;
    assert_int_equal(cvx_drv_originate(e->inst, &info, mt_record_handler, &c->out_ev, &c->out), 0);
    assert_true(mt_run_until(e, call_up, c, 5000));
    assert_non_null(e->in_chan);
    c->in = e->in_chan;
    e->in_chan = NULL;
}

static int both_down(void *arg)
{
    mt_call_t *c = arg;
    return c->out_ev.hangup > 0 && c->in_ev.hangup > 0;
}

void mt_call_end(mt_env_t *e, mt_call_t *c)
{
    if (cvx_chan_state(c->out) != CVX_CHAN_ENDED && c->out_ev.hangup == 0)
        cvx_chan_hangup(c->out, CVX_CAUSE_NORMAL);
    assert_true(mt_run_until(e, both_down, c, 5000));
    cvx_chan_unref(c->out);
    cvx_chan_unref(c->in);
}
