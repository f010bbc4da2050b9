/*
 * The media core: what call flows do with a channel's audio, on any driver.
 *
 * Thread: loop thread only.  Nothing here blocks: audio files are read on the libuv thread
 * pool and completed on the loop.
 */
#ifndef CVX_MEDIA_H
#define CVX_MEDIA_H

#include <stdint.h>
#include <uv.h>

#include "cvx/chan.h"
#include "cvx/frame.h"
#include "cvx/mclock.h"

/* --- the process's media clock ------------------------------------------------------- */

/* The media clock (20 ms, 64 slots), created on loop at the first call.  Returns NULL when it
 * cannot be created or when it already runs on another loop.  Valid until
 * cvx_media_clock_close(). */
cvx_mclock_t *cvx_media_clock(uv_loop_t *loop);
/* The clock if it exists, without creating it ("show media"). */
cvx_mclock_t *cvx_media_clock_peek(void);
/* Closes the clock (subscribers are dropped); for shutdown and tests. */
void cvx_media_clock_close(void);

/* RTP send lateness of every session of the process (time a packet was sent minus its
 * deadline on the media clock), as a histogram with the media clock's buckets; read with
 * cvx_mclock_quantile().  Reset starts a new measurement (the benchmark). */
void cvx_rtp_send_lateness(cvx_mclock_stats_t *out);
void cvx_rtp_reset_lateness(void);

/* --- audio: prompts and greetings -------------------------------------------------------- */

/*
 * Decoded audio held in memory: 16-bit linear samples at one rate (8000 today), mono.
 * Reference counted; immutable once made, so any number of calls may play it at once.
 * Files are read on the libuv thread pool (libsndfile: WAV with PCM, mu-law or A-law data)
 * and cached by path for the life of the process, so a prompt is read from disk once.
 */
typedef struct cvx_audio cvx_audio_t;

cvx_audio_t *cvx_audio_ref(cvx_audio_t *a);
void cvx_audio_unref(cvx_audio_t *a);
uint32_t cvx_audio_rate(const cvx_audio_t *a);
size_t cvx_audio_samples(const cvx_audio_t *a);
const int16_t *cvx_audio_data(const cvx_audio_t *a);
/* Makes audio from samples (copied): tones, tests, audio from the store. */
cvx_audio_t *cvx_audio_from_samples(const int16_t *samples, size_t n, uint32_t rate);

/* err is 0 (audio is referenced for the callee, which unrefs it) or a CVX_E* code:
 * CVX_ENOTFOUND (no such file), CVX_ENOTSUP (not mono 8 kHz), CVX_EIO, CVX_ECORRUPT. */
typedef void (*cvx_audio_cb)(cvx_audio_t *audio, int err, void *arg);
/*
 * Loads path (from the cache when it is there).  cb always runs later on the loop thread,
 * never inside this call; loads of one path in progress at once are read once.  Returns 0,
 * or an error (then cb is never called).
 */
int cvx_audio_load(uv_loop_t *loop, const char *path, cvx_audio_cb cb, void *arg);
/* The cached audio of path (referenced for the caller), or NULL when not loaded yet. */
cvx_audio_t *cvx_audio_cached(const char *path);
/* Files and bytes in the cache ("show media"). */
void cvx_audio_cache_stats(size_t *files, size_t *bytes);
/* Empties the cache (entries in use stay alive until unreferenced); tests and shutdown. */
void cvx_audio_cache_clear(void);

/* --- media operations on a channel ----------------------------------------------------- */

/*
 * A channel's media: created by the call flow that owns the channel, it sits between the
 * channel and the flow's handler.  It consumes audio frames and DTMF for the operation in
 * progress, and passes every event on to the flow's handler (DTMF included: the flow still
 * sees each digit, after the media core has acted on it).  One operation runs at a time.
 *
 * Digits are also kept in a small type-ahead buffer: a digit that interrupts a prompt (barge
 * in) stays there for the next cvx_media_collect(); cvx_media_flush_digits() empties it.
 * Keys pressed while recording are not typed ahead (a terminating digit ends the recording,
 * others are part of the message).
 *
 * Pacing: audio is written to the channel one 20 ms frame per tick of the media clock.
 * Every callback runs on the loop thread; done is called exactly once per operation started
 * successfully, and never from inside the call that started it.
 */
typedef struct cvx_media cvx_media_t;

typedef enum cvx_media_end {
    CVX_MEDIA_DONE = 0, /* played to the end */
    CVX_MEDIA_DIGIT,    /* a barge-in or terminating digit (result.digit) */
    CVX_MEDIA_SILENCE,  /* record: the silence timeout */
    CVX_MEDIA_MAXLEN,   /* record: the maximum length; collect: the maximum digits */
    CVX_MEDIA_TIMEOUT,  /* collect: no digit in time, or the inter-digit timeout */
    CVX_MEDIA_STOPPED,  /* cvx_media_stop() */
    CVX_MEDIA_HANGUP,   /* the call ended */
    CVX_MEDIA_ERROR,    /* result.err says why */
} cvx_media_end_t;

const char *cvx_media_end_name(cvx_media_end_t end);

#define CVX_MEDIA_DIGITS_MAX 64

typedef struct cvx_media_result {
    cvx_media_end_t end;
    int err;                               /* CVX_E* with CVX_MEDIA_ERROR */
    char digit;                            /* the digit that ended it, 0 when none */
    char digits[CVX_MEDIA_DIGITS_MAX + 1]; /* collect: the digits, without the terminator */
    unsigned prompt;                       /* play: the index of the prompt playing at the end */
    uint64_t samples;                      /* played or recorded */
    uint64_t trailing_silence;             /* record: samples of silence at the end */
} cvx_media_result_t;

typedef void (*cvx_media_done_fn)(cvx_media_t *m, const cvx_media_result_t *res, void *arg);

/* Where a recording goes: write() receives every frame (8 kHz L16 today); a non-zero
 * return ends the recording with CVX_MEDIA_ERROR.  Called on the loop thread: must not block
 * (hand data to the store's asynchronous interface). */
typedef struct cvx_media_sink {
    int (*write)(void *arg, const cvx_frame_t *frame);
    void *arg;
} cvx_media_sink_t;

typedef struct cvx_record_opts {
    long long max_ms;        /* maximum length; 0: no limit */
    long long silence_ms;    /* end after this much silence; 0: never */
    int silence_dbm0;        /* level below which audio is silence; 0: the default (-42) */
    long long hangover_ms;   /* speech this long below the level is not silence yet; <0: 0,
                                0: the default (300) */
    const char *term_digits; /* digits that end the recording (not recorded), NULL: none */
    int beep;                /* play a beep before recording starts */
} cvx_record_opts_t;

typedef struct cvx_collect_opts {
    unsigned max_digits;        /* 1..CVX_MEDIA_DIGITS_MAX */
    long long first_timeout_ms; /* for the first digit; 0: 5 s */
    long long inter_digit_ms;   /* between digits; 0: 3 s */
    const char *terminators;    /* ends the entry ("#"), not part of the digits; NULL: none */
} cvx_collect_opts_t;

/* Interposes the media core on chan: chan's events go to the media core and then to fn(arg).
 * Holds a reference to chan until cvx_media_destroy(). */
int cvx_media_create(cvx_chan_t *chan, cvx_chan_handler_fn fn, void *arg, cvx_media_t **out);
/* Stops the operation in progress without calling its done, gives chan back to fn as its
 * handler and frees m. */
void cvx_media_destroy(cvx_media_t *m);
cvx_chan_t *cvx_media_chan(const cvx_media_t *m);

/* Every DTMF key, for barge_in, term_digits or terminators that take any digit. */
#define CVX_MEDIA_ANY_DIGIT "0123456789*#ABCD"

/* Plays prompts in order.  barge_in: the digits that interrupt ("" or NULL: none;
 * CVX_MEDIA_ANY_DIGIT: any). */
int cvx_media_play(cvx_media_t *m, cvx_audio_t *const *prompts, size_t n, const char *barge_in,
                   cvx_media_done_fn done, void *arg);
/* Records into sink.  Ends on the maximum length, silence, a terminating digit or hangup.
 * Lengths count the audio that arrived (a recording of max_ms holds exactly max_ms), so the
 * recording keeps its timeline through network jitter; when frames stop arriving altogether,
 * wall time ends it: CVX_MEDIA_SILENCE after silence_ms plus the hang-over without a frame,
 * CVX_MEDIA_MAXLEN one second after max_ms.  result.trailing_silence tells how much of the
 * end was silence, for the caller to trim. */
int cvx_media_record(cvx_media_t *m, const cvx_record_opts_t *opts, const cvx_media_sink_t *sink,
                     cvx_media_done_fn done, void *arg);
/* Collects digits (starting with those typed ahead). */
int cvx_media_collect(cvx_media_t *m, const cvx_collect_opts_t *opts, cvx_media_done_fn done,
                      void *arg);
/* Plays a tone: f1 and f2 Hz (f2 0: a single frequency) at level dBm0 for ms. */
int cvx_media_tone(cvx_media_t *m, unsigned f1, unsigned f2, int level_dbm0, unsigned ms,
                   cvx_media_done_fn done, void *arg);
/* The usual beep: 1000 Hz, -12 dBm0, 250 ms. */
int cvx_media_beep(cvx_media_t *m, cvx_media_done_fn done, void *arg);
/* Ends the operation in progress with CVX_MEDIA_STOPPED; its done runs before this returns.
 * Nothing in progress: nothing happens. */
void cvx_media_stop(cvx_media_t *m);
/* 1 while an operation is in progress. */
int cvx_media_busy(const cvx_media_t *m);
void cvx_media_flush_digits(cvx_media_t *m);

#endif
