/*
 * The media tests' harness (see harness.h).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cvx/config.h"
#include "cvx/error.h"
#include "cvx/media.h"
#include "cvx/reactor.h"
#include "harness.h"
#include "internal.h"

void mt_setup(mt_env_t *e, const char *extra_conf)
{
    memset(e, 0, sizeof(*e));
    assert_int_equal(cvx_loop_init(&e->loop), 0);
    cvx_conf_t *conf = cvx_conf_new();
    cvx_diag_t diag = {0};
    char text[1024];
    snprintf(text, sizeof(text), "[null:t]\nchannels = 1000\n%s", extra_conf ? extra_conf : "");
    assert_int_equal(cvx_conf_parse(conf, "test.conf", text, &diag), 0);
    const char *dir = getenv("CVX_MODULE_DIR");
    assert_non_null(dir);
    int rc = cvx__modules_load_dir(dir, conf, CVX_ROLE_CALL, &e->loop, &e->mods, &diag);
    for (size_t i = 0; i < diag.n; i++)
        fprintf(stderr, "diag: %s\n", diag.msgs[i]);
    assert_int_equal(rc, 0);
    assert_int_equal(cvx__drv_create_all(e->mods, conf, &e->loop, &diag), 0);
    assert_int_equal(cvx__drv_start_all(&diag), 0);
    cvx_diag_clear(&diag);
    e->conf = conf;
    e->inst = cvx_drv_inst_find("null:t");
    assert_non_null(e->inst);
}

void mt_teardown(mt_env_t *e)
{
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

int mt_run_until(mt_env_t *e, int (*cond)(void *arg), void *arg, unsigned timeout_ms)
{
    uint64_t deadline = uv_hrtime() + (uint64_t)timeout_ms * 1000000ull;
    while (!cond(arg)) {
        if (uv_hrtime() > deadline)
            return 0;
        uv_run(&e->loop, UV_RUN_ONCE);
    }
    return 1;
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
