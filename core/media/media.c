/*
 * Media operations on a channel: play, record, collect digits, tones (see cvx/media.h).
 *
 * A cvx_media_t takes the channel's handler and passes every event on to the flow's handler
 * after acting on it.  While an operation runs, the media object is subscribed to the media
 * clock: each tick writes one 20 ms frame (play, tone, beep) and checks wall-clock limits
 * (collect timeouts; record guards for when frames stop arriving).  Audio received is counted
 * in samples, so a recording's length is the audio that arrived, not the time that passed.
 *
 * Completion: done runs from a tick or from an event, never from inside the call that
 * started the operation (an operation that is over at once, like a collect satisfied by
 * typed-ahead digits, completes at the next tick).  cvx_media_stop() is the exception: it
 * completes at once, as documented.
 *
 * Re-entrancy: done and the flow's handler may start another operation or destroy the media
 * object; a busy count keeps the object alive until the outermost call returns.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <spandsp.h>

#include "cvx/driver.h"
#include "cvx/error.h"
#include "cvx/log.h"
#include "cvx/media.h"
#include "media/media_impl.h"

#define FRAME_SAMPLES 160
#define TYPEAHEAD_MAX 32
#define BEEP_HZ       1000
#define BEEP_DBM0     (-12)
#define BEEP_MS       250

typedef enum op {
    OP_NONE = 0,
    OP_PLAY,
    OP_RECORD,
    OP_COLLECT,
    OP_TONE,
} op_t;

struct cvx_media {
    cvx_chan_t *chan; /* referenced */
    cvx_chan_handler_fn fn;
    void *arg;
    cvx_mclock_t *clock;
    cvx_mclock_sub_t sub;
    unsigned busy;
    int dead;

    op_t op;
    int pending; /* the operation is over; done runs at the next tick */
    cvx_media_done_fn done;
    void *done_arg;
    cvx_media_result_t res;
    uint64_t start_ns;

    char typeahead[TYPEAHEAD_MAX];
    unsigned ntype;

    /* play */
    cvx_audio_t **prompts;
    size_t nprompts, cur, pos;
    char barge[24];

    /* tone (and the beep before a recording) */
    tone_gen_descriptor_t *tone_desc;
    tone_gen_state_t *tone;
    uint64_t tone_left;

    /* record */
    cvx_media_sink_t sink;
    char term[24];
    uint64_t max_samples, silence_samples, hang_samples;
    int32_t threshold;
    power_meter_t meter;
    uint64_t silent_run;
    uint64_t last_frame_ns;
    long long max_ms, silence_ms, hangover_ms;
    int recording; /* 0 while the beep plays */

    /* collect */
    unsigned max_digits;
    long long first_ms, inter_ms;
    char terms[24];
    uint64_t last_digit_ns;
    unsigned ndigits;
};

static const char *const end_names[] = {"done",    "digit",   "silence", "maximum length",
                                        "timeout", "stopped", "hangup",  "error"};

const char *cvx_media_end_name(cvx_media_end_t end)
{
    return (unsigned)end < sizeof(end_names) / sizeof(end_names[0]) ? end_names[end] : "?";
}

static void media_free(cvx_media_t *m)
{
    cvx_chan_unref(m->chan);
    free(m);
}

static void tone_release(cvx_media_t *m)
{
    if (m->tone != NULL)
        tone_gen_free(m->tone);
    if (m->tone_desc != NULL)
        tone_gen_descriptor_free(m->tone_desc);
    m->tone = NULL;
    m->tone_desc = NULL;
    m->tone_left = 0;
}

/* Releases what the operation in progress holds; leaves m->res as it is. */
static void op_release(cvx_media_t *m)
{
    for (size_t i = 0; i < m->nprompts; i++)
        cvx_audio_unref(m->prompts[i]);
    free(m->prompts);
    m->prompts = NULL;
    m->nprompts = 0;
    tone_release(m);
    if (m->sub.active)
        cvx_mclock_remove(m->clock, &m->sub);
    m->op = OP_NONE;
    m->pending = 0;
}

/* Ends the operation in progress and calls its done. */
static void finish(cvx_media_t *m, cvx_media_end_t end, int err)
{
    if (m->op == OP_NONE)
        return;
    cvx_media_result_t res = m->res;
    res.end = end;
    res.err = err;
    cvx_media_done_fn done = m->done;
    void *arg = m->done_arg;
    op_release(m);
    m->busy++;
    if (done != NULL)
        done(m, &res, arg);
    m->busy--;
}

/* Marks the operation over; done runs at the next tick. */
static void finish_later(cvx_media_t *m, cvx_media_end_t end)
{
    m->res.end = end;
    m->pending = 1;
}

static void unbusy(cvx_media_t *m)
{
    if (--m->busy == 0 && m->dead)
        media_free(m);
}

/* --- type-ahead digits ---------------------------------------------------------------------- */

static void type_push(cvx_media_t *m, char d)
{
    if (m->ntype == TYPEAHEAD_MAX) {
        memmove(m->typeahead, m->typeahead + 1, TYPEAHEAD_MAX - 1);
        m->ntype--;
    }
    m->typeahead[m->ntype++] = d;
}

static char type_pop(cvx_media_t *m)
{
    if (m->ntype == 0)
        return 0;
    char d = m->typeahead[0];
    memmove(m->typeahead, m->typeahead + 1, --m->ntype);
    return d;
}

void cvx_media_flush_digits(cvx_media_t *m)
{
    m->ntype = 0;
}

static int in_set(const char *set, char d)
{
    return d != 0 && strchr(set, d) != NULL;
}

/* Takes typed-ahead digits into the collection until it is complete. */
static void collect_take(cvx_media_t *m, uint64_t now)
{
    while (m->op == OP_COLLECT && !m->pending && m->ntype > 0) {
        char d = type_pop(m);
        m->last_digit_ns = now;
        if (in_set(m->terms, d)) {
            m->res.digit = d;
            finish_later(m, CVX_MEDIA_DIGIT);
            return;
        }
        m->res.digits[m->ndigits++] = d;
        m->res.digits[m->ndigits] = 0;
        if (m->ndigits >= m->max_digits)
            finish_later(m, CVX_MEDIA_MAXLEN);
    }
}

/* --- frames ---------------------------------------------------------------------------------- */

static int write_samples(cvx_media_t *m, const int16_t *s, unsigned n)
{
    cvx_frame_t f = {.rate = 8000,
                     .codec = CVX_CODEC_L16,
                     .samples = n,
                     .len = n * 2,
                     .ts = m->res.samples,
                     .data = (const uint8_t *)s};
    m->res.samples += n;
    return cvx_chan_write_frame(m->chan, &f);
}

/* Writes the next frame of the prompts; returns 1 when everything has been played. */
static int play_tick(cvx_media_t *m)
{
    int16_t buf[FRAME_SAMPLES];
    unsigned filled = 0;
    while (filled < FRAME_SAMPLES && m->cur < m->nprompts) {
        cvx_audio_t *a = m->prompts[m->cur];
        size_t left = cvx_audio_samples(a) - m->pos;
        size_t take = left < FRAME_SAMPLES - filled ? left : FRAME_SAMPLES - filled;
        memcpy(buf + filled, cvx_audio_data(a) + m->pos, take * sizeof(int16_t));
        filled += (unsigned)take;
        m->pos += take;
        if (m->pos >= cvx_audio_samples(a)) {
            m->pos = 0;
            m->cur++;
        }
    }
    m->res.prompt = (unsigned)(m->cur < m->nprompts ? m->cur : m->nprompts ? m->nprompts - 1 : 0);
    if (filled > 0) {
        memset(buf + filled, 0, (FRAME_SAMPLES - filled) * sizeof(int16_t));
        int rc = write_samples(m, buf, FRAME_SAMPLES);
        m->res.samples -= FRAME_SAMPLES - filled;
        if (rc != 0)
            return rc;
    }
    return m->cur >= m->nprompts;
}

/* Writes the next frame of the tone; returns 1 when it has ended. */
static int tone_tick(cvx_media_t *m)
{
    int16_t buf[FRAME_SAMPLES];
    memset(buf, 0, sizeof(buf));
    unsigned n = m->tone_left < FRAME_SAMPLES ? (unsigned)m->tone_left : FRAME_SAMPLES;
    tone_gen(m->tone, buf, (int)n);
    m->tone_left -= n;
    cvx_media_result_t keep = m->res;
    int rc = write_samples(m, buf, FRAME_SAMPLES);
    if (m->op == OP_RECORD)
        m->res = keep; /* the beep is not part of the recording's figures */
    if (rc != 0)
        return rc;
    return m->tone_left == 0;
}

static int tone_setup(cvx_media_t *m, unsigned f1, unsigned f2, int level, unsigned ms)
{
    m->tone_desc = tone_gen_descriptor_init(NULL, (int)f1, level, (int)f2, f2 ? level : 0, (int)ms,
                                            0, 0, 0, 0);
    if (m->tone_desc == NULL)
        return CVX_ENOMEM;
    m->tone = tone_gen_init(NULL, m->tone_desc);
    if (m->tone == NULL) {
        tone_release(m);
        return CVX_ENOMEM;
    }
    m->tone_left = (uint64_t)ms * 8;
    return 0;
}

static void record_frame(cvx_media_t *m, const cvx_frame_t *f, uint64_t now)
{
    int16_t lin[480];
    unsigned n = f->samples;
    if (f->rate != 8000 || n > 480) {
        finish(m, CVX_MEDIA_ERROR, CVX_ENOTSUP);
        return;
    }
    if (f->codec == CVX_CODEC_L16 && f->len >= n * 2)
        memcpy(lin, f->data, n * 2);
    else if ((f->codec == CVX_CODEC_PCMU || f->codec == CVX_CODEC_PCMA) && f->len >= n)
        cvx__g711_decode(f->codec == CVX_CODEC_PCMA, f->data, lin, n);
    else
        return; /* malformed frame: nothing to record */
    m->last_frame_ns = now;
    if (m->max_samples > 0 && m->res.samples + n > m->max_samples)
        n = (unsigned)(m->max_samples - m->res.samples);
    for (unsigned i = 0; i < n; i++)
        power_meter_update(&m->meter, lin[i]);
    /* The meter (spandsp, damping shift 4: a 2 ms time constant) is read at the end of each
     * frame.  A frame is silent when the level has fallen below the threshold; short dips
     * inside speech are bridged by the hang-over, which must pass before silence counts. */
    int silent = power_meter_current(&m->meter) < m->threshold;
    m->silent_run = silent ? m->silent_run + n : 0;
    if (n > 0) {
        cvx_frame_t out = {.rate = 8000,
                           .codec = CVX_CODEC_L16,
                           .samples = n,
                           .len = n * 2,
                           .ts = m->res.samples,
                           .data = (const uint8_t *)lin};
        int rc = m->sink.write ? m->sink.write(m->sink.arg, &out) : 0;
        if (rc != 0) {
            finish(m, CVX_MEDIA_ERROR, rc);
            return;
        }
        m->res.samples += n;
    }
    m->res.trailing_silence = m->silent_run;
    if (m->max_samples > 0 && m->res.samples >= m->max_samples)
        finish(m, CVX_MEDIA_MAXLEN, 0);
    else if (m->silence_samples > 0 && m->silent_run >= m->hang_samples + m->silence_samples)
        finish(m, CVX_MEDIA_SILENCE, 0);
}

/* --- the clock and the channel's events ------------------------------------------------------- */

static void media_tick(cvx_mclock_sub_t *sub, uint64_t deadline)
{
    cvx_media_t *m = sub->data;
    uint64_t now = uv_hrtime();
    (void)deadline;
    m->busy++;
    if (m->pending) {
        finish(m, m->res.end, m->res.err);
        unbusy(m);
        return;
    }
    int rc = 0, over = -1;
    switch (m->op) {
    case OP_PLAY:
        rc = play_tick(m);
        break;
    case OP_TONE:
        rc = tone_tick(m);
        break;
    case OP_RECORD:
        if (!m->recording) {
            rc = tone_tick(m);
            if (rc == 1) {
                rc = 0;
                tone_release(m);
                m->recording = 1;
                m->start_ns = m->last_frame_ns = now;
            }
        } else if (m->max_ms > 0 && now - m->start_ns > (uint64_t)(m->max_ms + 1000) * 1000000ull) {
            over = CVX_MEDIA_MAXLEN; /* frames stopped arriving: wall time decides */
        } else if (m->silence_ms > 0 &&
                   now - m->last_frame_ns >
                       (uint64_t)(m->silence_ms + m->hangover_ms) * 1000000ull) {
            over = CVX_MEDIA_SILENCE;
        }
        break;
    case OP_COLLECT: {
        long long limit = m->ndigits == 0 ? m->first_ms : m->inter_ms;
        uint64_t since = m->ndigits == 0 ? m->start_ns : m->last_digit_ns;
        if (now - since >= (uint64_t)limit * 1000000ull)
            over = CVX_MEDIA_TIMEOUT;
        break;
    }
    case OP_NONE:
        break;
    }
    if (rc < 0)
        finish(m, CVX_MEDIA_ERROR, rc);
    else if (rc == 1)
        finish(m, CVX_MEDIA_DONE, 0);
    else if (over >= 0)
        finish(m, (cvx_media_end_t)over, 0);
    unbusy(m);
}

static void media_handler(cvx_chan_t *chan, const cvx_event_t *ev, void *arg)
{
    cvx_media_t *m = arg;
    uint64_t now = uv_hrtime();
    m->busy++;
    switch (ev->type) {
    case CVX_EV_FRAME:
        if (m->op == OP_RECORD && m->recording && !m->pending)
            record_frame(m, ev->u.frame, now);
        break;
    case CVX_EV_DTMF: {
        char d = ev->u.dtmf.digit;
        if (m->pending)
            break;
        if (m->op == OP_RECORD) {
            /* Other keys pressed while recording are part of the message, not type-ahead. */
            if (in_set(m->term, d)) {
                m->res.digit = d;
                finish(m, CVX_MEDIA_DIGIT, 0);
            }
            break;
        }
        type_push(m, d);
        if (m->op == OP_PLAY && in_set(m->barge, d)) {
            m->res.digit = d; /* stays typed ahead for the next collect */
            finish(m, CVX_MEDIA_DIGIT, 0);
        } else if (m->op == OP_COLLECT) {
            collect_take(m, now);
            if (m->pending)
                finish(m, m->res.end, 0);
        }
        break;
    }
    case CVX_EV_HANGUP:
        finish(m, CVX_MEDIA_HANGUP, 0);
        break;
    default:
        break;
    }
    if (!m->dead && m->fn != NULL)
        m->fn(chan, ev, m->arg);
    unbusy(m);
}

/* --- the interface ---------------------------------------------------------------------------- */

int cvx_media_create(cvx_chan_t *chan, cvx_chan_handler_fn fn, void *arg, cvx_media_t **out)
{
    cvx_mclock_t *clock = cvx_media_clock(cvx_drv_inst_loop(cvx_chan_inst(chan)));
    if (clock == NULL)
        return CVX_EIO;
    cvx_media_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return CVX_ENOMEM;
    m->chan = cvx_chan_ref(chan);
    m->fn = fn;
    m->arg = arg;
    m->clock = clock;
    m->sub.tick = media_tick;
    m->sub.data = m;
    cvx_chan_set_handler(chan, media_handler, m);
    *out = m;
    return 0;
}

void cvx_media_destroy(cvx_media_t *m)
{
    if (m == NULL || m->dead)
        return;
    op_release(m);
    cvx_chan_set_handler(m->chan, m->fn, m->arg);
    m->dead = 1;
    if (m->busy == 0)
        media_free(m);
}

cvx_chan_t *cvx_media_chan(const cvx_media_t *m)
{
    return m->chan;
}

int cvx_media_busy(const cvx_media_t *m)
{
    return m->op != OP_NONE;
}

static int op_begin(cvx_media_t *m, op_t op, cvx_media_done_fn done, void *arg)
{
    if (m->dead)
        return CVX_ESTATE;
    if (m->op != OP_NONE)
        return CVX_EBUSY;
    if (cvx_chan_state(m->chan) == CVX_CHAN_ENDED)
        return CVX_ESTATE;
    memset(&m->res, 0, sizeof(m->res));
    m->op = op;
    m->pending = 0;
    m->done = done;
    m->done_arg = arg;
    m->start_ns = uv_hrtime();
    m->pos = 0;
    m->cur = 0;
    cvx_mclock_add(m->clock, &m->sub);
    return 0;
}

int cvx_media_play(cvx_media_t *m, cvx_audio_t *const *prompts, size_t n, const char *barge_in,
                   cvx_media_done_fn done, void *arg)
{
    if ((n > 0 && prompts == NULL) || (barge_in && strlen(barge_in) >= sizeof(m->barge)))
        return CVX_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (prompts[i] == NULL || cvx_audio_rate(prompts[i]) != 8000)
            return prompts[i] == NULL ? CVX_EINVAL : CVX_ENOTSUP;
    cvx_audio_t **copy = n ? calloc(n, sizeof(*copy)) : NULL;
    if (n > 0 && copy == NULL)
        return CVX_ENOMEM;
    int rc = op_begin(m, OP_PLAY, done, arg);
    if (rc != 0) {
        free(copy);
        return rc;
    }
    for (size_t i = 0; i < n; i++)
        copy[i] = cvx_audio_ref(prompts[i]);
    m->prompts = copy;
    m->nprompts = n;
    snprintf(m->barge, sizeof(m->barge), "%s", barge_in ? barge_in : "");
    /* A barge-in digit typed ahead interrupts before anything is played. */
    for (unsigned i = 0; i < m->ntype; i++) {
        if (in_set(m->barge, m->typeahead[i])) {
            m->res.digit = m->typeahead[i];
            finish_later(m, CVX_MEDIA_DIGIT);
            break;
        }
    }
    return 0;
}

int cvx_media_record(cvx_media_t *m, const cvx_record_opts_t *o, const cvx_media_sink_t *sink,
                     cvx_media_done_fn done, void *arg)
{
    if (o == NULL || o->max_ms < 0 || o->silence_ms < 0 ||
        (o->term_digits && strlen(o->term_digits) >= sizeof(m->term)))
        return CVX_EINVAL;
    int rc = op_begin(m, OP_RECORD, done, arg);
    if (rc != 0)
        return rc;
    m->sink = sink ? *sink : (cvx_media_sink_t){NULL, NULL};
    snprintf(m->term, sizeof(m->term), "%s", o->term_digits ? o->term_digits : "");
    m->max_ms = o->max_ms;
    m->silence_ms = o->silence_ms;
    m->hangover_ms = o->hangover_ms < 0 ? 0
                     : o->hangover_ms   ? o->hangover_ms
                                        : cvx__media_conf.silence_hangover_ms;
    m->max_samples = (uint64_t)o->max_ms * 8;
    m->silence_samples = (uint64_t)o->silence_ms * 8;
    m->hang_samples = (uint64_t)m->hangover_ms * 8;
    m->threshold = power_meter_level_dbm0(
        (float)(o->silence_dbm0 ? o->silence_dbm0 : cvx__media_conf.silence_threshold_dbm0));
    power_meter_init(&m->meter, 4);
    m->silent_run = 0;
    m->last_frame_ns = m->start_ns;
    m->recording = 1;
    if (o->beep) {
        rc = tone_setup(m, BEEP_HZ, 0, BEEP_DBM0, BEEP_MS);
        if (rc != 0) {
            op_release(m);
            return rc;
        }
        m->recording = 0;
    }
    /* A terminating digit typed before the recording began is not taken as an answer to it:
     * type-ahead is for collect.  Flows flush it or collect it first. */
    return 0;
}

int cvx_media_collect(cvx_media_t *m, const cvx_collect_opts_t *o, cvx_media_done_fn done,
                      void *arg)
{
    if (o == NULL || o->max_digits < 1 || o->max_digits > CVX_MEDIA_DIGITS_MAX ||
        o->first_timeout_ms < 0 || o->inter_digit_ms < 0 ||
        (o->terminators && strlen(o->terminators) >= sizeof(m->terms)))
        return CVX_EINVAL;
    int rc = op_begin(m, OP_COLLECT, done, arg);
    if (rc != 0)
        return rc;
    m->max_digits = o->max_digits;
    m->first_ms = o->first_timeout_ms ? o->first_timeout_ms : 5000;
    m->inter_ms = o->inter_digit_ms ? o->inter_digit_ms : 3000;
    snprintf(m->terms, sizeof(m->terms), "%s", o->terminators ? o->terminators : "");
    m->ndigits = 0;
    collect_take(m, m->start_ns);
    return 0;
}

int cvx_media_tone(cvx_media_t *m, unsigned f1, unsigned f2, int level_dbm0, unsigned ms,
                   cvx_media_done_fn done, void *arg)
{
    if (f1 == 0 || f1 >= 4000 || f2 >= 4000 || ms == 0 || level_dbm0 > 3)
        return CVX_EINVAL;
    int rc = op_begin(m, OP_TONE, done, arg);
    if (rc != 0)
        return rc;
    rc = tone_setup(m, f1, f2, level_dbm0, ms);
    if (rc != 0)
        op_release(m);
    return rc;
}

int cvx_media_beep(cvx_media_t *m, cvx_media_done_fn done, void *arg)
{
    return cvx_media_tone(m, BEEP_HZ, 0, BEEP_DBM0, BEEP_MS, done, arg);
}

void cvx_media_stop(cvx_media_t *m)
{
    if (m->op == OP_NONE)
        return;
    m->busy++;
    finish(m, CVX_MEDIA_STOPPED, 0);
    unbusy(m);
}
