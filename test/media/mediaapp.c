/*
 * mediaapp: a test-only call flow for the media tests and the RTP benchmark.  Built into the
 * test module directory, never installed.  It takes calls by called number:
 *
 *   rec...   answers and records what the caller sends until the call ends (no limits), and
 *            logs every digit it hears; at the end it logs the recording's length and energy:
 *              mediaapp: <call> digit <d> (<source>)
 *              mediaapp: <call> recorded <samples> samples, <n> loud frames, energy <e>
 *   play...  answers and plays a 1 kHz tone for 2 s, then a 1 s silence, then hangs up.
 *   bench... answers and records into a counting sink (nothing kept), silently: the
 *            benchmark's flow.  RTP flows both ways: the session sends comfort silence.
 *
 * Everything else is declined, so echo and other applications can take it.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cvx/app.h"
#include "cvx/driver.h"
#include "cvx/error.h"
#include "cvx/log.h"
#include "cvx/media.h"
#include "cvx/module.h"

typedef struct mcall {
    cvx_media_t *media;
    int kind; /* 0 rec, 1 play, 2 bench */
    uint64_t samples, loud_frames;
    double energy;
    cvx_audio_t *tone;
} mcall_t;

static cvx_audio_t *tone_1k, *silence_1s;

static int sink_write(void *arg, const cvx_frame_t *f)
{
    mcall_t *c = arg;
    int loud = 0;
    for (uint32_t i = 0; i < f->samples; i++) {
        int16_t s;
        memcpy(&s, f->data + 2 * i, 2);
        c->energy += (double)s * s;
        if (s > 256 || s < -256)
            loud = 1;
    }
    c->samples += f->samples;
    c->loud_frames += (uint64_t)loud;
    return 0;
}

static void rec_done(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    mcall_t *c = arg;
    cvx_chan_t *chan = cvx_media_chan(m);
    if (c->kind == 2)
        return;
    cvx_notice("mediaapp: %s recorded %llu samples, %llu loud frames, energy %.0f (%s)",
               cvx_chan_id(chan), (unsigned long long)c->samples,
               (unsigned long long)c->loud_frames, c->energy, cvx_media_end_name(res->end));
}

static void play_done(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)arg;
    cvx_chan_t *chan = cvx_media_chan(m);
    cvx_notice("mediaapp: %s played %llu samples (%s)", cvx_chan_id(chan),
               (unsigned long long)res->samples, cvx_media_end_name(res->end));
    if (res->end == CVX_MEDIA_DONE)
        cvx_chan_hangup(chan, CVX_CAUSE_NORMAL);
}

static void mediaapp_event(cvx_chan_t *chan, const cvx_event_t *ev, void *arg)
{
    mcall_t *c = arg;
    if (ev->type == CVX_EV_DTMF && c->kind != 2) {
        cvx_notice("mediaapp: %s digit %c (%s)", cvx_chan_id(chan), ev->u.dtmf.digit,
                   ev->u.dtmf.source == CVX_DTMF_RFC4733  ? "rfc4733"
                   : ev->u.dtmf.source == CVX_DTMF_INBAND ? "inband"
                                                          : "signal");
    } else if (ev->type == CVX_EV_HANGUP) {
        /* The media core has already ended the operation (done ran) before passing this on. */
        cvx_media_destroy(c->media);
        free(c);
        cvx_chan_set_handler(chan, NULL, NULL);
        cvx_chan_unref(chan);
    }
}

static int mediaapp_incoming(cvx_chan_t *chan, void *arg)
{
    (void)arg;
    const char *called = cvx_chan_info(chan)->called;
    int kind = strncmp(called, "rec", 3) == 0     ? 0
               : strncmp(called, "play", 4) == 0  ? 1
               : strncmp(called, "bench", 5) == 0 ? 2
                                                  : -1;
    if (kind < 0)
        return CVX_EDECLINED;
    mcall_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return CVX_ENOMEM;
    c->kind = kind;
    int rc = cvx_media_create(chan, mediaapp_event, c, &c->media);
    if (rc != 0) {
        free(c);
        return rc;
    }
    rc = cvx_chan_answer(chan);
    if (rc != 0) {
        cvx_media_destroy(c->media);
        free(c);
        return rc;
    }
    cvx_chan_ref(chan);
    cvx_media_sink_t sink = {sink_write, c};
    cvx_record_opts_t ro = {0};
    if (kind == 1) {
        cvx_audio_t *p[2] = {tone_1k, silence_1s};
        rc = cvx_media_play(c->media, p, 2, NULL, play_done, c);
    } else {
        rc = cvx_media_record(c->media, &ro, &sink, rec_done, c);
    }
    if (rc != 0)
        cvx_notice("mediaapp: %s cannot start: %s", cvx_chan_id(chan), cvx_strerror(rc));
    else if (kind != 2)
        cvx_notice("mediaapp: %s answered (%s)", cvx_chan_id(chan), called);
    return 0;
}

static int make_audio(void)
{
    int16_t *s = malloc(8000 * 2 * sizeof(int16_t));
    if (s == NULL)
        return CVX_ENOMEM;
    for (int i = 0; i < 16000; i++)
        s[i] = (int16_t)(8000.0 * sin(2.0 * M_PI * 1000.0 * i / 8000.0));
    tone_1k = cvx_audio_from_samples(s, 16000, 8000);
    memset(s, 0, 8000 * sizeof(int16_t));
    silence_1s = cvx_audio_from_samples(s, 8000, 8000);
    free(s);
    return tone_1k && silence_1s ? 0 : CVX_ENOMEM;
}

static int mediaapp_load(cvx_module_env_t *env)
{
    (void)env;
    return make_audio();
}

static void mediaapp_unload(void)
{
    cvx_audio_unref(tone_1k);
    cvx_audio_unref(silence_1s);
}

static const cvx_app_ops_t mediaapp_ops = {
    .size = sizeof(cvx_app_ops_t),
    .incoming = mediaapp_incoming,
};

static const cvx_module_t mediaapp_module = {
    .abi_major = CVX_MODULE_ABI_MAJOR,
    .abi_minor = CVX_MODULE_ABI_MINOR,
    .size = sizeof(cvx_module_t),
    .signature = CVX_MODULE_SIGNATURE,
    .name = "mediaapp",
    .version = "1.0",
    .description = "test flows for the media tests and the RTP benchmark",
    .kind = CVX_MODULE_APP,
    .roles = CVX_ROLE_CALL,
    .load = mediaapp_load,
    .unload = mediaapp_unload,
    .app = &mediaapp_ops,
};

CVX_MODULE_DEFINE(mediaapp_module)
