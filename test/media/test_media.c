/*
 * The media core on the null driver (no RTP at all, which shows it is driver-independent):
 * play with barge-in, collect digits (maximum, terminator, timeouts, type-ahead), record
 * (maximum length, silence with hang-over, terminating digit, hangup), tones, stop, and the
 * prompt loader (WAV PCM and G.711 read on the thread pool, cached, errors).
 *
 * A call is two null legs joined back to back: what one leg writes the other receives.  The
 * "far" leg plays audio with its own cvx_media_t, paced by the media clock, so recordings
 * receive frames at the real rate.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sndfile.h>
#include <spandsp.h>
#include <unistd.h>

#include "cvx/error.h"
#include "cvx/media.h"
#include "harness.h"

typedef struct done_rec {
    int calls;
    cvx_media_result_t res;
} done_rec_t;

static void on_done(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    done_rec_t *d = arg;
    d->calls++;
    d->res = *res;
}

static int is_done(void *arg)
{
    return ((done_rec_t *)arg)->calls > 0;
}

/* Audio of n samples: a tone at level dBm0 (spandsp), or silence when level is 0. */
static cvx_audio_t *make_audio(size_t n, int level)
{
    int16_t *s = calloc(n ? n : 1, sizeof(int16_t));
    if (level != 0) {
        tone_gen_descriptor_t *d =
            tone_gen_descriptor_init(NULL, 440, level, 0, 0, 100000, 0, 0, 0, 0);
        tone_gen_state_t *t = tone_gen_init(NULL, d);
        tone_gen(t, s, (int)n);
        tone_gen_free(t);
        tone_gen_descriptor_free(d);
    }
    cvx_audio_t *a = cvx_audio_from_samples(s, n, 8000);
    free(s);
    return a;
}

typedef struct fixture {
    mt_env_t env;
    mt_call_t call;
    cvx_media_t *near; /* on the out leg: the one under test */
    cvx_media_t *far;  /* on the in leg: plays audio toward near */
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    mt_setup(&f->env, NULL);
    mt_call(&f->env, &f->call);
    assert_int_equal(cvx_media_create(f->call.out, mt_record_handler, &f->call.out_ev, &f->near),
                     0);
    assert_int_equal(cvx_media_create(f->call.in, mt_record_handler, &f->call.in_ev, &f->far), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    mt_call_end(&f->env, &f->call);
    cvx_media_destroy(f->near);
    cvx_media_destroy(f->far);
    cvx_audio_cache_clear();
    mt_teardown(&f->env);
    free(f);
    return 0;
}

/* --- play ------------------------------------------------------------------------------------ */

static void play_to_the_end(void **state)
{
    fixture_t *f = *state;
    cvx_audio_t *p[2] = {make_audio(400, -10), make_audio(300, -10)};
    done_rec_t d = {0};
    assert_int_equal(cvx_media_play(f->near, p, 2, "", on_done, &d), 0);
    assert_int_equal(cvx_media_play(f->near, p, 2, "", on_done, &d), CVX_EBUSY);
    assert_int_equal(d.calls, 0); /* never from inside the call */
    assert_true(mt_run_until(&f->env, is_done, &d, 5000));
    assert_int_equal(d.res.end, CVX_MEDIA_DONE);
    assert_int_equal(d.res.samples, 700);
    assert_int_equal(d.res.prompt, 1);
    /* 700 samples are five 20 ms frames, the last one padded with silence. */
    mt_run_for(&f->env, 60);
    assert_int_equal(f->call.in_ev.frames, 5);
    assert_int_equal(f->call.in_ev.samples, 800);
    assert_int_equal(f->call.in_ev.nonsilent_frames, 5);
    assert_int_equal(d.calls, 1);
    cvx_audio_unref(p[0]);
    cvx_audio_unref(p[1]);
}

static int frames_at_least(void *arg)
{
    return ((mt_events_t *)arg)->frames >= 5;
}

static void play_barge_in_then_collect(void **state)
{
    fixture_t *f = *state;
    cvx_audio_t *p[1] = {make_audio(8000 * 5, -10)};
    done_rec_t d = {0};
    assert_int_equal(cvx_media_play(f->near, p, 1, "123", on_done, &d), 0);
    assert_true(mt_run_until(&f->env, frames_at_least, &f->call.in_ev, 5000));
    /* 9 is not a barge-in digit: the prompt goes on (the digit is typed ahead). */
    assert_int_equal(cvx_chan_send_dtmf(f->call.in, '9', 100), 0);
    mt_run_for(&f->env, 100);
    assert_int_equal(d.calls, 0);
    assert_int_equal(f->call.out_ev.ndigits, 1); /* the flow still sees every digit */
    assert_int_equal(cvx_chan_send_dtmf(f->call.in, '2', 100), 0);
    assert_true(mt_run_until(&f->env, is_done, &d, 5000));
    assert_int_equal(d.res.end, CVX_MEDIA_DIGIT);
    assert_int_equal(d.res.digit, '2');
    assert_true(d.res.samples > 0 && d.res.samples < 8000 * 5);
    assert_int_equal(d.res.samples % 160, 0);
    /* The collect that follows starts with the digits typed ahead: 9 and 2. */
    done_rec_t c = {0};
    cvx_collect_opts_t co = {3, 2000, 2000, "#"};
    assert_int_equal(cvx_media_collect(f->near, &co, on_done, &c), 0);
    assert_int_equal(cvx_chan_send_dtmf(f->call.in, '7', 100), 0);
    assert_true(mt_run_until(&f->env, is_done, &c, 5000));
    assert_int_equal(c.res.end, CVX_MEDIA_MAXLEN);
    assert_string_equal(c.res.digits, "927");
    /* A barge-in digit already typed ahead stops the next prompt before it plays. */
    assert_int_equal(cvx_chan_send_dtmf(f->call.in, '1', 100), 0);
    mt_run_for(&f->env, 60);
    done_rec_t d2 = {0};
    assert_int_equal(cvx_media_play(f->near, p, 1, CVX_MEDIA_ANY_DIGIT, on_done, &d2), 0);
    assert_true(mt_run_until(&f->env, is_done, &d2, 5000));
    assert_int_equal(d2.res.end, CVX_MEDIA_DIGIT);
    assert_int_equal(d2.res.digit, '1');
    assert_int_equal(d2.res.samples, 0);
    cvx_audio_unref(p[0]);
}

/* --- collect ------------------------------------------------------------------------------- */

static void collect_terminator_and_timeouts(void **state)
{
    fixture_t *f = *state;
    done_rec_t c = {0};
    cvx_collect_opts_t co = {10, 3000, 3000, "#"};
    assert_int_equal(cvx_media_collect(f->near, &co, on_done, &c), 0);
    const char *keys = "4711#";
    for (const char *k = keys; *k; k++)
        assert_int_equal(cvx_chan_send_dtmf(f->call.in, *k, 80), 0);
    assert_true(mt_run_until(&f->env, is_done, &c, 5000));
    assert_int_equal(c.res.end, CVX_MEDIA_DIGIT);
    assert_int_equal(c.res.digit, '#');
    assert_string_equal(c.res.digits, "4711");

    /* No digit at all: the first-digit timeout, nothing collected. */
    done_rec_t t = {0};
    cvx_collect_opts_t co2 = {4, 150, 3000, "#"};
    uint64_t t0 = uv_hrtime();
    assert_int_equal(cvx_media_collect(f->near, &co2, on_done, &t), 0);
    assert_true(mt_run_until(&f->env, is_done, &t, 5000));
    assert_int_equal(t.res.end, CVX_MEDIA_TIMEOUT);
    assert_string_equal(t.res.digits, "");
    assert_true(uv_hrtime() - t0 >= 150000000ull);

    /* One digit, then the inter-digit timeout: the digit is in the result. */
    done_rec_t u = {0};
    cvx_collect_opts_t co3 = {4, 3000, 150, NULL};
    assert_int_equal(cvx_media_collect(f->near, &co3, on_done, &u), 0);
    assert_int_equal(cvx_chan_send_dtmf(f->call.in, '5', 80), 0);
    assert_true(mt_run_until(&f->env, is_done, &u, 5000));
    assert_int_equal(u.res.end, CVX_MEDIA_TIMEOUT);
    assert_string_equal(u.res.digits, "5");

    /* "*" as the only terminator is the star key, not "any digit". */
    done_rec_t v = {0};
    cvx_collect_opts_t co4 = {4, 3000, 3000, "*"};
    assert_int_equal(cvx_media_collect(f->near, &co4, on_done, &v), 0);
    assert_int_equal(cvx_chan_send_dtmf(f->call.in, '1', 80), 0);
    assert_int_equal(cvx_chan_send_dtmf(f->call.in, '#', 80), 0);
    assert_int_equal(cvx_chan_send_dtmf(f->call.in, '*', 80), 0);
    assert_true(mt_run_until(&f->env, is_done, &v, 5000));
    assert_int_equal(v.res.end, CVX_MEDIA_DIGIT);
    assert_int_equal(v.res.digit, '*');
    assert_string_equal(v.res.digits, "1#");

    /* Bad options are refused and call nothing. */
    cvx_collect_opts_t bad = {0, 0, 0, NULL};
    assert_int_equal(cvx_media_collect(f->near, &bad, on_done, &u), CVX_EINVAL);
}

/* --- record -------------------------------------------------------------------------------- */

typedef struct sink_rec {
    uint64_t samples;
    unsigned frames;
    double energy;
    int fail_after; /* frames; 0: never */
} sink_rec_t;

static int sink_write(void *arg, const cvx_frame_t *fr)
{
    sink_rec_t *s = arg;
    assert_int_equal(fr->rate, 8000);
    assert_int_equal(fr->codec, CVX_CODEC_L16);
    assert_int_equal(fr->ts, s->samples);
    s->samples += fr->samples;
    s->frames++;
    for (uint32_t i = 0; i < fr->samples; i++) {
        int16_t v;
        memcpy(&v, fr->data + 2 * i, 2);
        s->energy += (double)v * v;
    }
    if (s->fail_after && s->frames >= (unsigned)s->fail_after)
        return CVX_EFULL;
    return 0;
}

static void record_max_length(void **state)
{
    fixture_t *f = *state;
    cvx_audio_t *p[1] = {make_audio(8000 * 10, -10)};
    done_rec_t far = {0}, r = {0};
    sink_rec_t sink = {0};
    cvx_media_sink_t sk = {sink_write, &sink};
    cvx_record_opts_t ro = {.max_ms = 500, .silence_ms = 2000};
    assert_int_equal(cvx_media_record(f->near, &ro, &sk, on_done, &r), 0);
    assert_int_equal(cvx_media_play(f->far, p, 1, NULL, on_done, &far), 0);
    assert_true(mt_run_until(&f->env, is_done, &r, 5000));
    assert_int_equal(r.res.end, CVX_MEDIA_MAXLEN);
    assert_int_equal(r.res.samples, 4000);
    assert_int_equal(sink.samples, 4000);
    assert_int_equal(r.res.trailing_silence, 0);
    assert_true(sink.energy > 4000.0 * 1000.0); /* a -10 dBm0 tone, not silence */
    cvx_media_stop(f->far);
    assert_int_equal(far.res.end, CVX_MEDIA_STOPPED);
    cvx_audio_unref(p[0]);
}

static void record_silence_with_hangover(void **state)
{
    fixture_t *f = *state;
    /* 300 ms of speech (a tone), then silence. */
    cvx_audio_t *p[2] = {make_audio(2400, -10), make_audio(8000 * 10, 0)};
    done_rec_t far = {0}, r = {0};
    sink_rec_t sink = {0};
    cvx_media_sink_t sk = {sink_write, &sink};
    cvx_record_opts_t ro = {.max_ms = 60000, .silence_ms = 500, .hangover_ms = 200};
    assert_int_equal(cvx_media_record(f->near, &ro, &sk, on_done, &r), 0);
    assert_int_equal(cvx_media_play(f->far, p, 2, NULL, on_done, &far), 0);
    assert_true(mt_run_until(&f->env, is_done, &r, 5000));
    assert_int_equal(r.res.end, CVX_MEDIA_SILENCE);
    /* The speech (15 frames), then hang-over plus silence (200 + 500 ms = 35 frames). */
    assert_int_equal(r.res.samples, 2400 + 5600);
    assert_int_equal(r.res.trailing_silence, 5600);
    assert_int_equal(sink.samples, 8000);
    cvx_media_stop(f->far);
    cvx_audio_unref(p[0]);
    cvx_audio_unref(p[1]);
}

static int frames_13(void *arg)
{
    return ((mt_events_t *)arg)->frames >= 13;
}

static void record_terminating_digit_and_beep(void **state)
{
    fixture_t *f = *state;
    cvx_audio_t *p[1] = {make_audio(8000 * 10, -10)};
    done_rec_t far = {0}, r = {0};
    sink_rec_t sink = {0};
    cvx_media_sink_t sk = {sink_write, &sink};
    cvx_record_opts_t ro = {.max_ms = 60000, .silence_ms = 0, .term_digits = "#*", .beep = 1};
    assert_int_equal(cvx_media_record(f->near, &ro, &sk, on_done, &r), 0);
    /* The beep reaches the far side first: 250 ms, in 13 frames. */
    assert_true(mt_run_until(&f->env, frames_at_least, &f->call.in_ev, 5000));
    assert_int_equal(cvx_media_play(f->far, p, 1, NULL, on_done, &far), 0);
    assert_true(mt_run_until(&f->env, frames_13, &f->call.in_ev, 5000));
    mt_run_for(&f->env, 100); /* and no more */
    assert_int_equal(f->call.in_ev.frames, 13);
    assert_int_equal(f->call.in_ev.nonsilent_frames, 13);
    assert_int_equal(cvx_chan_send_dtmf(f->call.in, '1', 80), 0); /* not a terminator */
    assert_int_equal(cvx_chan_send_dtmf(f->call.in, '#', 80), 0);
    assert_true(mt_run_until(&f->env, is_done, &r, 5000));
    assert_int_equal(r.res.end, CVX_MEDIA_DIGIT);
    assert_int_equal(r.res.digit, '#');
    assert_true(r.res.samples > 0);
    assert_int_equal(sink.samples, r.res.samples);
    /* Neither the 1 nor the # is left over for the next collect. */
    done_rec_t c = {0};
    cvx_collect_opts_t co = {4, 100, 100, NULL};
    assert_int_equal(cvx_media_collect(f->near, &co, on_done, &c), 0);
    assert_true(mt_run_until(&f->env, is_done, &c, 5000));
    assert_int_equal(c.res.end, CVX_MEDIA_TIMEOUT);
    assert_string_equal(c.res.digits, "");
    cvx_media_stop(f->far);
    cvx_audio_unref(p[0]);
}

static void record_sink_error_and_hangup(void **state)
{
    fixture_t *f = *state;
    cvx_audio_t *p[1] = {make_audio(8000 * 10, -10)};
    done_rec_t far = {0}, r = {0};
    sink_rec_t sink = {.fail_after = 3};
    cvx_media_sink_t sk = {sink_write, &sink};
    cvx_record_opts_t ro = {.max_ms = 60000};
    assert_int_equal(cvx_media_record(f->near, &ro, &sk, on_done, &r), 0);
    assert_int_equal(cvx_media_play(f->far, p, 1, NULL, on_done, &far), 0);
    assert_true(mt_run_until(&f->env, is_done, &r, 5000));
    assert_int_equal(r.res.end, CVX_MEDIA_ERROR);
    assert_int_equal(r.res.err, CVX_EFULL);
    assert_int_equal(sink.frames, 3);
    /* Recording again, then the far end hangs up: the recording ends with the hangup. */
    done_rec_t r2 = {0};
    sink_rec_t sink2 = {0};
    cvx_media_sink_t sk2 = {sink_write, &sink2};
    assert_int_equal(cvx_media_record(f->near, &ro, &sk2, on_done, &r2), 0);
    mt_run_for(&f->env, 100);
    assert_int_equal(cvx_chan_hangup(f->call.in, CVX_CAUSE_NORMAL), 0);
    assert_true(mt_run_until(&f->env, is_done, &r2, 5000));
    assert_int_equal(r2.res.end, CVX_MEDIA_HANGUP);
    assert_int_equal(sink2.samples, r2.res.samples);
    assert_true(mt_run_until(&f->env, is_done, &far, 5000));
    assert_int_equal(far.res.end, CVX_MEDIA_HANGUP);
    /* Nothing starts on an ended call. */
    assert_int_equal(cvx_media_record(f->near, &ro, &sk2, on_done, &r2), CVX_ESTATE);
    cvx_audio_unref(p[0]);
}

static void tone_and_stop(void **state)
{
    fixture_t *f = *state;
    done_rec_t d = {0};
    assert_int_equal(cvx_media_tone(f->near, 350, 440, -13, 100, on_done, &d), 0);
    assert_true(mt_run_until(&f->env, is_done, &d, 5000));
    assert_int_equal(d.res.end, CVX_MEDIA_DONE);
    assert_int_equal(d.res.samples, 800);
    mt_run_for(&f->env, 60);
    assert_int_equal(f->call.in_ev.frames, 5);
    assert_true(f->call.in_ev.energy > 800.0 * 1000.0);
    /* Stop: done runs before stop returns, with the samples played so far. */
    done_rec_t s = {0};
    assert_int_equal(cvx_media_beep(f->near, on_done, &s), 0);
    cvx_media_stop(f->near);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.res.end, CVX_MEDIA_STOPPED);
    assert_int_equal(cvx_media_busy(f->near), 0);
    cvx_media_stop(f->near); /* nothing in progress: nothing happens */
    assert_int_equal(s.calls, 1);
    assert_int_equal(cvx_media_tone(f->near, 0, 0, -10, 100, on_done, &s), CVX_EINVAL);
}

/* --- audio files ---------------------------------------------------------------------------- */

typedef struct load_rec {
    int calls;
    int err;
    cvx_audio_t *audio;
} load_rec_t;

static void on_loaded(cvx_audio_t *a, int err, void *arg)
{
    load_rec_t *l = arg;
    l->calls++;
    l->err = err;
    l->audio = a;
}

static int loaded(void *arg)
{
    return ((load_rec_t *)arg)->calls > 0;
}

static void write_wav(const char *path, int format, int rate, const int16_t *s, size_t n)
{
    SF_INFO info = {.samplerate = rate, .channels = 1, .format = format};
    SNDFILE *sf = sf_open(path, SFM_WRITE, &info);
    assert_non_null(sf);
    assert_int_equal(sf_write_short(sf, s, (sf_count_t)n), (sf_count_t)n);
    sf_close(sf);
}

static void audio_files(void **state)
{
    (void)state;
    mt_env_t env;
    mt_setup(&env, NULL);
    char dir[] = "/tmp/cvx-media-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char pcm[256], ulaw[256], alaw[256], wide[256], junk[256], missing[256];
    snprintf(pcm, sizeof(pcm), "%s/pcm.wav", dir);
    snprintf(ulaw, sizeof(ulaw), "%s/ulaw.wav", dir);
    snprintf(alaw, sizeof(alaw), "%s/alaw.wav", dir);
    snprintf(wide, sizeof(wide), "%s/wide.wav", dir);
    snprintf(junk, sizeof(junk), "%s/junk.wav", dir);
    snprintf(missing, sizeof(missing), "%s/missing.wav", dir);
    int16_t s[1000];
    for (int i = 0; i < 1000; i++)
        s[i] = (int16_t)((i % 50) * 400 - 10000);
    write_wav(pcm, SF_FORMAT_WAV | SF_FORMAT_PCM_16, 8000, s, 1000);
    write_wav(ulaw, SF_FORMAT_WAV | SF_FORMAT_ULAW, 8000, s, 1000);
    write_wav(alaw, SF_FORMAT_WAV | SF_FORMAT_ALAW, 8000, s, 1000);
    write_wav(wide, SF_FORMAT_WAV | SF_FORMAT_PCM_16, 16000, s, 1000);
    FILE *j = fopen(junk, "w");
    fputs("RIFF this is not a wave file at all", j);
    fclose(j);

    /* PCM: exact samples; the callback never runs inside the call. */
    load_rec_t a = {0}, b = {0};
    assert_int_equal(cvx_audio_load(&env.loop, pcm, on_loaded, &a), 0);
    assert_int_equal(cvx_audio_load(&env.loop, pcm, on_loaded, &b), 0); /* joins the load */
    assert_int_equal(a.calls + b.calls, 0);
    assert_null(cvx_audio_cached(pcm));
    assert_true(mt_run_until(&env, loaded, &a, 5000));
    assert_true(mt_run_until(&env, loaded, &b, 5000));
    assert_int_equal(a.err, 0);
    assert_ptr_equal(a.audio, b.audio); /* read once */
    assert_int_equal(cvx_audio_samples(a.audio), 1000);
    assert_int_equal(cvx_audio_rate(a.audio), 8000);
    assert_memory_equal(cvx_audio_data(a.audio), s, sizeof(s));
    size_t files, bytes;
    cvx_audio_cache_stats(&files, &bytes);
    assert_int_equal(files, 1);
    assert_int_equal(bytes, 2000);
    /* Cached: still answered later, from the loop. */
    load_rec_t c = {0};
    assert_int_equal(cvx_audio_load(&env.loop, pcm, on_loaded, &c), 0);
    assert_int_equal(c.calls, 0);
    assert_true(mt_run_until(&env, loaded, &c, 5000));
    assert_ptr_equal(c.audio, a.audio);
    cvx_audio_t *cached = cvx_audio_cached(pcm);
    assert_ptr_equal(cached, a.audio);
    cvx_audio_unref(cached);

    /* G.711 WAV files decode to within the quantisation step. */
    const char *g711[2] = {ulaw, alaw};
    for (int k = 0; k < 2; k++) {
        load_rec_t g = {0};
        assert_int_equal(cvx_audio_load(&env.loop, g711[k], on_loaded, &g), 0);
        assert_true(mt_run_until(&env, loaded, &g, 5000));
        assert_int_equal(g.err, 0);
        assert_int_equal(cvx_audio_samples(g.audio), 1000);
        for (int i = 0; i < 1000; i++) {
            int diff = abs(cvx_audio_data(g.audio)[i] - s[i]);
            assert_true(diff <= abs(s[i]) / 16 + 16);
        }
        cvx_audio_unref(g.audio);
    }

    /* Errors: exact codes, nothing cached. */
    const char *bad[3] = {wide, junk, missing};
    int want[3] = {CVX_ENOTSUP, CVX_ECORRUPT, CVX_ENOTFOUND};
    for (int k = 0; k < 3; k++) {
        load_rec_t e = {0};
        assert_int_equal(cvx_audio_load(&env.loop, bad[k], on_loaded, &e), 0);
        assert_true(mt_run_until(&env, loaded, &e, 5000));
        assert_int_equal(e.err, want[k]);
        assert_null(e.audio);
        assert_null(cvx_audio_cached(bad[k]));
    }
    cvx_audio_cache_stats(&files, &bytes);
    assert_int_equal(files, 3);
    assert_int_equal(cvx_audio_load(&env.loop, NULL, on_loaded, &c), CVX_EINVAL);

    cvx_audio_unref(a.audio);
    cvx_audio_unref(b.audio);
    cvx_audio_unref(c.audio);
    cvx_audio_cache_clear();
    cvx_audio_cache_stats(&files, &bytes);
    assert_int_equal(files, 0);
    const char *all[6] = {pcm, ulaw, alaw, wide, junk, NULL};
    for (int k = 0; all[k]; k++)
        unlink(all[k]);
    rmdir(dir);
    mt_run_for(&env, 10);
    mt_teardown(&env);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(play_to_the_end, setup, teardown),
        cmocka_unit_test_setup_teardown(play_barge_in_then_collect, setup, teardown),
        cmocka_unit_test_setup_teardown(collect_terminator_and_timeouts, setup, teardown),
        cmocka_unit_test_setup_teardown(record_max_length, setup, teardown),
        cmocka_unit_test_setup_teardown(record_silence_with_hangover, setup, teardown),
        cmocka_unit_test_setup_teardown(record_terminating_digit_and_beep, setup, teardown),
        cmocka_unit_test_setup_teardown(record_sink_error_and_hangup, setup, teardown),
        cmocka_unit_test_setup_teardown(tone_and_stop, setup, teardown),
        cmocka_unit_test(audio_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
