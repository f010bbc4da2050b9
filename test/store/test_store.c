/*
 * Unit tests of the message store's service interface: every operation and its error paths.
 */
#include <lmdb.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <cmocka.h>
#include <sndfile.h>

#include "cvx/error.h"
#include "storetest.h"

static st_env_t *E;

static int setup(void **state)
{
    (void)state;
    E = calloc(1, sizeof(*E));
    st_init(E);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    st_fini(E);
    free(E);
    E = NULL;
    return 0;
}

static void open_ok(void)
{
    int rc = st_open(E);
    if (rc != 0)
        fail_msg("open: %s: %s", cvx_strerror(rc), E->err);
}

/* --- mailboxes ---------------------------------------------------------------------------- */

typedef struct mblist {
    int done, status;
    size_t n;
    char numbers[8][CVX_STORE_NUMBER_MAX];
} mblist_t;

static void on_mailboxes(void *arg, int status, const cvx_mailbox_t *mbs, size_t n)
{
    mblist_t *w = arg;
    w->status = status;
    w->n = n;
    for (size_t i = 0; i < n && i < 8; i++)
        strcpy(w->numbers[i], mbs[i].number);
    w->done = 1;
}

static void test_mailbox_crud(void **state)
{
    (void)state;
    open_ok();
    cvx_mailbox_t mb;
    assert_int_equal(st_put(E, "2001", "John", "Smith", CVX_PUT_CREATE), 0);
    assert_int_equal(st_put(E, "2001", "John", "Smith", CVX_PUT_CREATE), CVX_EEXIST);
    assert_int_equal(st_put(E, "2002", "Jane", "Doe", CVX_PUT_UPDATE), CVX_ENOTFOUND);
    assert_int_equal(st_put(E, "2002", "Jane", "Doe", CVX_PUT_CREATE), 0);
    assert_int_equal(st_get(E, "2001", &mb), 0);
    assert_string_equal(mb.first_name, "John");
    assert_string_equal(mb.last_name, "Smith");
    assert_int_equal(mb.has_pin, 0);
    assert_true(mb.created_ms > 0);
    assert_int_equal(st_put(E, "2001", "Johnny", "Smith", CVX_PUT_UPDATE), 0);
    assert_int_equal(st_get(E, "2001", &mb), 0);
    assert_string_equal(mb.first_name, "Johnny");
    assert_int_equal(st_get(E, "2999", &mb), CVX_ENOTFOUND);
    assert_int_equal(st_get(E, "20x1", &mb), CVX_EINVAL);
    assert_int_equal(st_put(E, "", "a", "b", CVX_PUT_CREATE), CVX_EINVAL);

    mblist_t w = {0};
    assert_int_equal(cvx_store_mailbox_list(E->st, "", 10, on_mailboxes, &w), 0);
    st_run(E, &w.done);
    assert_int_equal(w.status, 0);
    assert_int_equal(w.n, 2);
    assert_string_equal(w.numbers[0], "2001");
    assert_string_equal(w.numbers[1], "2002");
    memset(&w, 0, sizeof(w));
    assert_int_equal(cvx_store_mailbox_list(E->st, "2001", 10, on_mailboxes, &w), 0);
    st_run(E, &w.done);
    assert_int_equal(w.n, 1);
    assert_string_equal(w.numbers[0], "2002");

    assert_int_equal(st_del(E, "2001"), 0);
    assert_int_equal(st_del(E, "2001"), CVX_ENOTFOUND);
    assert_int_equal(st_get(E, "2001", &mb), CVX_ENOTFOUND);
}

/* --- deposits ------------------------------------------------------------------------------ */

static void test_deposit_and_play(void **state)
{
    (void)state;
    E->conf.prefetch = 3;
    open_ok();
    assert_int_equal(st_put(E, "100", "A", "B", CVX_PUT_CREATE), 0);
    static uint8_t audio[50 * 1600], back[sizeof(audio)];
    st_audio_for("m1", audio, sizeof(audio));
    cvx_deposit_result_t r;
    assert_int_equal(st_deposit(E, "m1", "100", audio, sizeof(audio), 1600, &r), 0);
    assert_string_equal(r.id, "m1");
    assert_int_equal(r.duplicate, 0);
    assert_int_equal(r.shared_audio, 0);
    assert_int_equal(r.bytes, sizeof(audio));

    cvx_message_t m[4];
    size_t n;
    assert_int_equal(st_list(E, "100", CVX_FOLDER_ANY, m, 4, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(m[0].id, "m1");
    assert_int_equal(m[0].folder, CVX_FOLDER_NEW);
    assert_string_equal(m[0].caller_number, "5551234");
    assert_int_equal(m[0].codec, CVX_CODEC_ULAW);
    assert_int_equal(m[0].rate, 8000);
    assert_int_equal(m[0].bytes, sizeof(audio));
    assert_int_equal(m[0].duration_ms, sizeof(audio) / 8);
    assert_true(m[0].received_ms > 0);

    size_t len;
    assert_int_equal(st_play_msg(E, "m1", back, sizeof(back), &len), 0);
    assert_int_equal(len, sizeof(audio));
    assert_memory_equal(back, audio, sizeof(audio));

    assert_int_equal(st_play_msg(E, "nosuch", back, sizeof(back), &len), CVX_ENOTFOUND);
    assert_int_equal(st_list(E, "999", CVX_FOLDER_ANY, m, 4, &n), CVX_ENOTFOUND);
    assert_int_equal(st_msg(E, "nosuch", NULL), CVX_ENOTFOUND);

    cvx_store_stats_t s;
    assert_int_equal(st_stats(E, &s), 0);
    assert_int_equal(s.mailboxes, 1);
    assert_int_equal(s.messages, 1);
    assert_int_equal(s.blobs, 1);
    assert_int_equal(s.chunks, 50);
    assert_int_equal(s.open_streams, 0);
    assert_int_equal(s.schema, 2);
    assert_int_equal(st_verify(E), 0);
}

static void test_idempotent_commit(void **state)
{
    (void)state;
    open_ok();
    assert_int_equal(st_put(E, "100", "A", "B", CVX_PUT_CREATE), 0);
    uint8_t audio[4000];
    st_audio_for("dup", audio, sizeof(audio));
    cvx_deposit_result_t r;
    assert_int_equal(st_deposit(E, "dup", "100", audio, sizeof(audio), 1000, &r), 0);
    assert_int_equal(r.duplicate, 0);
    /* The recorder did not hear the acknowledgement and sends the same message again. */
    assert_int_equal(st_deposit(E, "dup", "100", audio, sizeof(audio), 1000, &r), 0);
    assert_int_equal(r.duplicate, 1);
    assert_int_equal(r.bytes, sizeof(audio));
    size_t n;
    assert_int_equal(st_list(E, "100", CVX_FOLDER_ANY, NULL, 0, &n), 0);
    assert_int_equal(n, 1);
    cvx_store_stats_t s;
    assert_int_equal(st_stats(E, &s), 0);
    assert_int_equal(s.messages, 1);
    assert_int_equal(s.references, 1);
    assert_int_equal(s.chunks, 4);
    cvx_mailbox_t mb;
    assert_int_equal(st_get(E, "100", &mb), 0);
    assert_int_equal(mb.msgs_new, 1);
    assert_int_equal(st_verify(E), 0);
}

static void test_deposit_errors(void **state)
{
    (void)state;
    open_ok();
    uint8_t audio[3000];
    st_audio_for("x", audio, sizeof(audio));
    /* No such mailbox: refused at commit, and the recording's chunks are gone. */
    assert_int_equal(st_deposit(E, "x1", "404", audio, sizeof(audio), 1000, NULL), CVX_ENOTFOUND);
    cvx_store_stats_t s;
    assert_int_equal(st_stats(E, &s), 0);
    assert_int_equal(s.chunks, 0);
    assert_int_equal(s.open_streams, 0);
    assert_int_equal(st_put(E, "100", "A", "B", CVX_PUT_CREATE), 0);
    /* Nothing recorded. */
    assert_int_equal(st_deposit(E, "x2", "100", audio, 0, 1000, NULL), CVX_EINVAL);
    /* Malformed requests fail at once. */
    cvx_message_t m = {0};
    cvx_store_stream_t *str;
    strcpy(m.id, "bad id");
    strcpy(m.mailbox, "100");
    m.rate = 8000;
    assert_int_equal(cvx_store_deposit_open(E->st, &m, &str), CVX_EINVAL);
    strcpy(m.id, "ok");
    m.rate = 0;
    assert_int_equal(cvx_store_deposit_open(E->st, &m, &str), CVX_EINVAL);
    m.rate = 8000;
    assert_int_equal(cvx_store_deposit_open(E->st, &m, &str), 0);
    assert_int_equal(cvx_store_stream_append(str, audio, 0), CVX_EINVAL);
    assert_int_equal(cvx_store_stream_append(str, audio, CVX_STORE_CHUNK_MAX + 1), CVX_EINVAL);
    /* Abort: the chunks go away in the background. */
    assert_int_equal(cvx_store_stream_append(str, audio, 1000), 0);
    cvx_store_stream_abort(str);
    assert_int_equal(st_stats(E, &s), 0);
    /* The abort may still be queued: a later write is ordered after it. */
    assert_int_equal(st_put(E, "101", "C", "D", CVX_PUT_CREATE), 0);
    assert_int_equal(st_stats(E, &s), 0);
    assert_int_equal(s.chunks, 0);
    assert_int_equal(s.open_streams, 0);
    assert_int_equal(s.messages, 0);

    /* Quota: two messages, the third is refused with "limit reached". */
    cvx_mailbox_t mb = {0};
    strcpy(mb.number, "102");
    mb.quota_messages = 2;
    st_wait_t w = {0};
    assert_int_equal(cvx_store_mailbox_put(E->st, &mb, CVX_PUT_CREATE, st_done_cb, &w), 0);
    st_run(E, &w.done);
    assert_int_equal(w.status, 0);
    assert_int_equal(st_deposit(E, "q1", "102", audio, 1000, 1000, NULL), 0);
    assert_int_equal(st_deposit(E, "q2", "102", audio + 1, 1000, 1000, NULL), 0);
    assert_int_equal(st_deposit(E, "q3", "102", audio + 2, 1000, 1000, NULL), CVX_ELIMIT);
    assert_string_equal(cvx_strerror(CVX_ELIMIT), "limit reached");
    assert_int_equal(st_verify(E), 0);
}

typedef struct {
    int done, status;
    cvx_deposit_result_t r;
} copywait_t;

static void on_copy(void *arg, int status, const cvx_deposit_result_t *res)
{
    copywait_t *w = arg;
    w->status = status;
    if (res != NULL)
        w->r = *res;
    w->done = 1;
}

static void test_shared_audio_refcount(void **state)
{
    (void)state;
    open_ok();
    uint8_t audio[5000], other[5000];
    st_audio_for("same", audio, sizeof(audio));
    st_audio_for("other", other, sizeof(other));
    const char *boxes[] = {"201", "202", "203"};
    for (int i = 0; i < 3; i++)
        assert_int_equal(st_put(E, boxes[i], "X", "Y", CVX_PUT_CREATE), 0);
    cvx_deposit_result_t r;
    assert_int_equal(st_deposit(E, "s1", "201", audio, sizeof(audio), 1000, &r), 0);
    assert_int_equal(r.shared_audio, 0);
    assert_int_equal(st_deposit(E, "s2", "202", audio, sizeof(audio), 700, &r), 0);
    assert_int_equal(r.shared_audio, 1);
    assert_int_equal(st_deposit(E, "o1", "203", other, sizeof(other), 1000, &r), 0);

    /* Forward s1 to 203: a new message, the same audio. */
    copywait_t cw = {0};
    assert_int_equal(cvx_store_message_copy(E->st, "s1", "s3", "203", on_copy, &cw), 0);
    st_run(E, &cw.done);
    assert_int_equal(cw.status, 0);
    assert_int_equal(cw.r.shared_audio, 1);
    memset(&cw, 0, sizeof(cw));
    assert_int_equal(cvx_store_message_copy(E->st, "nosuch", "s4", "203", on_copy, &cw), 0);
    st_run(E, &cw.done);
    assert_int_equal(cw.status, CVX_ENOTFOUND);

    cvx_store_stats_t s;
    assert_int_equal(st_stats(E, &s), 0);
    assert_int_equal(s.messages, 4);
    assert_int_equal(s.blobs, 2);
    assert_int_equal(s.blobs_shared, 1);
    assert_int_equal(s.references, 4);
    assert_int_equal(s.chunks, 10); /* the second copy's chunks were dropped */
    assert_int_equal(st_verify(E), 0);

    uint8_t back[5000];
    size_t len;
    assert_int_equal(st_play_msg(E, "s3", back, sizeof(back), &len), 0);
    assert_memory_equal(back, audio, sizeof(audio));

    /* The audio stays while one message holds it and goes with the last. */
    assert_int_equal(st_purge(E, "s1"), 0);
    assert_int_equal(st_purge(E, "s1"), CVX_ENOTFOUND);
    assert_int_equal(st_purge(E, "s2"), 0);
    assert_int_equal(st_stats(E, &s), 0);
    assert_int_equal(s.blobs, 2);
    assert_int_equal(st_play_msg(E, "s3", back, sizeof(back), &len), 0);
    assert_int_equal(st_purge(E, "s3"), 0);
    assert_int_equal(st_stats(E, &s), 0);
    assert_int_equal(s.blobs, 1);
    assert_int_equal(s.chunks, 5);
    /* Deleting a mailbox releases its messages' audio too. */
    assert_int_equal(st_del(E, "203"), 0);
    assert_int_equal(st_stats(E, &s), 0);
    assert_int_equal(s.blobs, 0);
    assert_int_equal(s.chunks, 0);
    assert_int_equal(s.messages, 0);
    assert_int_equal(st_verify(E), 0);
}

/* --- folders and MWI --------------------------------------------------------------------- */

typedef struct mwiwatch {
    int calls;
    cvx_mwi_t last;
} mwiwatch_t;

static void on_mwi_change(void *arg, const cvx_mwi_t *m)
{
    mwiwatch_t *w = arg;
    w->calls++;
    w->last = *m;
}

typedef struct mwiwait {
    int done, status;
    cvx_mwi_t m;
} mwiwait_t;

static void on_mwi(void *arg, int status, const cvx_mwi_t *m)
{
    mwiwait_t *w = arg;
    w->status = status;
    if (m != NULL)
        w->m = *m;
    w->done = 1;
}

static cvx_mwi_t get_mwi(const char *mb, int expect)
{
    mwiwait_t w = {0};
    assert_int_equal(cvx_store_mwi_get(E->st, mb, on_mwi, &w), 0);
    st_run(E, &w.done);
    assert_int_equal(w.status, expect);
    return w.m;
}

static void test_folders_and_mwi(void **state)
{
    (void)state;
    open_ok();
    mwiwatch_t watch = {0};
    cvx_store_mwi_watch(E->st, on_mwi_change, &watch);
    assert_int_equal(st_put(E, "300", "A", "B", CVX_PUT_CREATE), 0);
    cvx_mwi_t m = get_mwi("300", 0);
    assert_int_equal(m.lamp, 0);
    get_mwi("301", CVX_ENOTFOUND);
    uint8_t audio[2000];
    st_audio_for("f1", audio, sizeof(audio));
    assert_int_equal(st_deposit(E, "f1", "300", audio, sizeof(audio), 1000, NULL), 0);
    assert_int_equal(watch.calls, 1);
    assert_int_equal(watch.last.lamp, 1);
    assert_int_equal(watch.last.msgs_new, 1);
    st_audio_for("f2", audio, sizeof(audio));
    assert_int_equal(st_deposit(E, "f2", "300", audio, sizeof(audio), 1000, NULL), 0);
    /* The lamp was on already, but the count of new messages changed. */
    assert_int_equal(watch.calls, 2);
    assert_int_equal(watch.last.lamp, 1);
    assert_int_equal(watch.last.msgs_new, 2);
    m = get_mwi("300", 0);
    assert_int_equal(m.lamp, 1);
    assert_int_equal(m.msgs_new, 2);
    uint64_t gen = m.generation;

    /* The lamp was sent. */
    st_wait_t w = {0};
    assert_int_equal(cvx_store_mwi_report(E->st, "300", gen, 1, 1, st_done_cb, &w), 0);
    st_run(E, &w.done);
    assert_int_equal(w.status, 0);
    m = get_mwi("300", 0);
    assert_int_equal(m.sent_lamp, 1);
    assert_int_equal(m.sent_ok, 1);
    memset(&w, 0, sizeof(w));
    assert_int_equal(cvx_store_mwi_report(E->st, "399", 1, 1, 1, st_done_cb, &w), 0);
    st_run(E, &w.done);
    assert_int_equal(w.status, CVX_ENOTFOUND);

    assert_int_equal(st_move(E, "f1", CVX_FOLDER_SAVED), 0);
    assert_int_equal(watch.calls, 3); /* lamp still on: 1 new, 1 saved */
    assert_int_equal(watch.last.msgs_new, 1);
    assert_int_equal(watch.last.msgs_saved, 1);
    assert_int_equal(st_move(E, "f2", CVX_FOLDER_DELETED), 0);
    assert_int_equal(watch.calls, 4);
    assert_int_equal(watch.last.lamp, 0);
    assert_int_equal(watch.last.generation, gen + 1);
    assert_int_equal(st_move(E, "nosuch", CVX_FOLDER_SAVED), CVX_ENOTFOUND);
    assert_int_equal(cvx_store_message_move(E->st, "f1", 7, st_done_cb, &w), CVX_EINVAL);

    cvx_message_t msgs[4];
    size_t n;
    assert_int_equal(st_list(E, "300", CVX_FOLDER_SAVED, msgs, 4, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(msgs[0].id, "f1");
    assert_int_equal(st_list(E, "300", CVX_FOLDER_NEW, msgs, 4, &n), 0);
    assert_int_equal(n, 0);
    cvx_mailbox_t mb;
    assert_int_equal(st_get(E, "300", &mb), 0);
    assert_int_equal(mb.msgs_new, 0);
    assert_int_equal(mb.msgs_saved, 1);
    assert_int_equal(mb.msgs_deleted, 1);

    /* Purge of deleted messages older than a time: only f2 goes. */
    memset(&w, 0, sizeof(w));
    assert_int_equal(cvx_store_expire(E->st, UINT64_MAX, st_done_cb, &w), 0);
    st_run(E, &w.done);
    assert_int_equal(w.status, 1);
    assert_int_equal(st_msg(E, "f2", NULL), CVX_ENOTFOUND);
    assert_int_equal(st_msg(E, "f1", NULL), 0);
    memset(&w, 0, sizeof(w));
    assert_int_equal(cvx_store_expire(E->st, UINT64_MAX, st_done_cb, &w), 0);
    st_run(E, &w.done);
    assert_int_equal(w.status, 0);
    assert_int_equal(st_verify(E), 0);
}

/* --- greetings ------------------------------------------------------------------------------ */

static int record_greeting(const char *mb, cvx_greeting_t kind, const char *seed, size_t len,
                           uint32_t flags)
{
    uint8_t audio[8000];
    st_audio_for(seed, audio, len);
    cvx_store_stream_t *s;
    int rc = cvx_store_greeting_open(E->st, mb, kind, CVX_CODEC_ALAW, 8000, 0, flags, &s);
    if (rc != 0)
        return rc;
    assert_int_equal(cvx_store_stream_append(s, audio, len), 0);
    copywait_t w = {0};
    assert_int_equal(cvx_store_stream_commit(s, 500, on_copy, &w), 0);
    st_run(E, &w.done);
    return w.status;
}

static void test_greetings(void **state)
{
    (void)state;
    open_ok();
    assert_int_equal(st_put(E, "400", "A", "B", CVX_PUT_CREATE), 0);
    assert_int_equal(record_greeting("401", CVX_GREETING_STANDARD, "g", 4000, 0), CVX_ENOTFOUND);
    assert_int_equal(record_greeting("400", CVX_GREETING_STANDARD, "g1", 4000, 0), 0);
    assert_int_equal(record_greeting("400", CVX_GREETING_NAME, "n1", 3000, 0), 0);
    assert_int_equal(record_greeting("400", CVX_GREETING_EXTENDED, "e1", 2000, CVX_GREETING_REFUSE),
                     0);
    cvx_mailbox_t mb;
    assert_int_equal(st_get(E, "400", &mb), 0);
    assert_int_equal(mb.greetings, (1u << CVX_GREETING_STANDARD) | (1u << CVX_GREETING_NAME) |
                                       (1u << CVX_GREETING_EXTENDED));
    assert_int_equal(mb.greeting_flags, CVX_GREETING_REFUSE);

    cvx_audio_ref_t ref = {0};
    ref.is_greeting = 1;
    strcpy(ref.mailbox, "400");
    ref.greeting = CVX_GREETING_NAME;
    uint8_t back[8000], want[8000];
    size_t len;
    assert_int_equal(st_play(E, &ref, back, sizeof(back), &len), 0);
    st_audio_for("n1", want, 3000);
    assert_int_equal(len, 3000);
    assert_memory_equal(back, want, 3000);
    ref.greeting = CVX_GREETING_BUSY;
    assert_int_equal(st_play(E, &ref, back, sizeof(back), &len), CVX_ENOTFOUND);

    /* Re-recording replaces the greeting and frees the old audio. */
    assert_int_equal(record_greeting("400", CVX_GREETING_STANDARD, "g2", 5000, 0), 0);
    cvx_store_stats_t s;
    assert_int_equal(st_stats(E, &s), 0);
    assert_int_equal(s.blobs, 3);
    ref.greeting = CVX_GREETING_STANDARD;
    assert_int_equal(st_play(E, &ref, back, sizeof(back), &len), 0);
    assert_int_equal(len, 5000);

    st_wait_t w = {0};
    assert_int_equal(cvx_store_greeting_del(E->st, "400", CVX_GREETING_EXTENDED, st_done_cb, &w),
                     0);
    st_run(E, &w.done);
    assert_int_equal(w.status, 0);
    memset(&w, 0, sizeof(w));
    assert_int_equal(cvx_store_greeting_del(E->st, "400", CVX_GREETING_EXTENDED, st_done_cb, &w),
                     0);
    st_run(E, &w.done);
    assert_int_equal(w.status, CVX_ENOTFOUND);
    assert_int_equal(st_stats(E, &s), 0);
    assert_int_equal(s.blobs, 2);
    assert_int_equal(st_verify(E), 0);
    assert_int_equal(st_del(E, "400"), 0);
    assert_int_equal(st_stats(E, &s), 0);
    assert_int_equal(s.blobs, 0);
    assert_int_equal(s.chunks, 0);
}

/* --- PINs --------------------------------------------------------------------------------- */

typedef struct pinwait {
    int done, status;
    cvx_pin_result_t r;
} pinwait_t;

static void on_pin(void *arg, int status, const cvx_pin_result_t *r)
{
    pinwait_t *w = arg;
    w->status = status;
    if (r != NULL)
        w->r = *r;
    w->done = 1;
}

static pinwait_t check_pin(const char *mb, const char *pin)
{
    pinwait_t w = {0};
    assert_int_equal(cvx_store_pin_check(E->st, mb, pin, on_pin, &w), 0);
    st_run(E, &w.done);
    return w;
}

static int set_pin(const char *mb, const char *pin)
{
    st_wait_t w = {0};
    int rc = cvx_store_pin_set(E->st, mb, pin, st_done_cb, &w);
    if (rc != 0)
        return rc;
    st_run(E, &w.done);
    return w.status;
}

static void test_pin(void **state)
{
    (void)state;
    E->conf.pin_attempts = 3;
    E->conf.pin_history = 1;
    open_ok();
    assert_int_equal(st_put(E, "500", "A", "B", CVX_PUT_CREATE), 0);
    pinwait_t w = check_pin("500", "1234");
    assert_int_equal(w.status, 0);
    assert_int_equal(w.r.verdict, CVX_PIN_UNSET);
    assert_int_equal(set_pin("500", "12a4"), CVX_EINVAL);
    assert_int_equal(set_pin("500", "123"), CVX_EINVAL);
    assert_int_equal(set_pin("599", "1234"), CVX_ENOTFOUND);
    assert_int_equal(set_pin("500", "1234"), 0);
    cvx_mailbox_t mb;
    assert_int_equal(st_get(E, "500", &mb), 0);
    assert_int_equal(mb.has_pin, 1);
    w = check_pin("500", "1234");
    assert_int_equal(w.r.verdict, CVX_PIN_OK);
    w = check_pin("500", "9999");
    assert_int_equal(w.r.verdict, CVX_PIN_WRONG);
    assert_int_equal(w.r.attempts_left, 2);
    w = check_pin("500", "9998");
    assert_int_equal(w.r.attempts_left, 1);
    w = check_pin("500", "9997");
    assert_int_equal(w.r.verdict, CVX_PIN_WRONG);
    assert_true(w.r.locked_until_ms > 0);
    /* Locked: even the right PIN is refused, without hashing. */
    w = check_pin("500", "1234");
    assert_int_equal(w.r.verdict, CVX_PIN_LOCKED);
    assert_int_equal(st_get(E, "500", &mb), 0);
    assert_true(mb.locked_until_ms > 0);
    st_wait_t u = {0};
    assert_int_equal(cvx_store_mailbox_unlock(E->st, "500", st_done_cb, &u), 0);
    st_run(E, &u.done);
    assert_int_equal(u.status, 0);
    w = check_pin("500", "1234");
    assert_int_equal(w.r.verdict, CVX_PIN_OK);
    w = check_pin("599", "1234");
    assert_int_equal(w.status, CVX_ENOTFOUND);
    /* History: the current PIN and the one before may not come back. */
    assert_int_equal(set_pin("500", "1234"), CVX_EEXIST);
    assert_int_equal(set_pin("500", "5678"), 0);
    assert_int_equal(set_pin("500", "1234"), CVX_EEXIST);
    assert_int_equal(set_pin("500", "2468"), 0);
    assert_int_equal(set_pin("500", "1234"), 0);
    w = check_pin("500", "1234");
    assert_int_equal(w.r.verdict, CVX_PIN_OK);
}

static void test_pin_lock_runs_out(void **state)
{
    (void)state;
    E->conf.pin_attempts = 2;
    E->conf.pin_lockout_ms = 1;
    open_ok();
    assert_int_equal(st_put(E, "510", "A", "B", CVX_PUT_CREATE), 0);
    assert_int_equal(set_pin("510", "2580"), 0);
    pinwait_t w = check_pin("510", "0000");
    assert_int_equal(w.r.attempts_left, 1);
    w = check_pin("510", "0001");
    assert_int_equal(w.r.verdict, CVX_PIN_WRONG);
    uint64_t until = w.r.locked_until_ms;
    assert_true(until > 0);
    /* Poll the clock past the lock (1 ms). */
    struct timespec ts;
    do
        clock_gettime(CLOCK_REALTIME, &ts);
    while ((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000 <= until);
    /* A wrong PIN after the lock ran out counts as the first of a new series. */
    w = check_pin("510", "0002");
    assert_int_equal(w.r.verdict, CVX_PIN_WRONG);
    assert_int_equal(w.r.attempts_left, 1);
    w = check_pin("510", "2580");
    assert_int_equal(w.r.verdict, CVX_PIN_OK);
    cvx_mailbox_t mb;
    assert_int_equal(st_get(E, "510", &mb), 0);
    assert_int_equal(mb.failed_logins, 0);
    assert_int_equal(mb.locked_until_ms, 0);
}

/* --- directory ------------------------------------------------------------------------------- */

typedef struct dirwait {
    int done, status;
    size_t n;
    char numbers[8][CVX_STORE_NUMBER_MAX];
} dirwait_t;

static void on_dir(void *arg, int status, const cvx_dir_entry_t *e, size_t n)
{
    dirwait_t *w = arg;
    w->status = status;
    w->n = n;
    for (size_t i = 0; i < n && i < 8; i++)
        strcpy(w->numbers[i], e[i].number);
    w->done = 1;
}

static dirwait_t search(const char *digits)
{
    dirwait_t w = {0};
    assert_int_equal(cvx_store_dir_search(E->st, digits, 8, on_dir, &w), 0);
    st_run(E, &w.done);
    assert_int_equal(w.status, 0);
    return w;
}

static void test_directory(void **state)
{
    (void)state;
    open_ok();
    char kp[32];
    cvx_store_keypad("O'Brien", kp);
    assert_string_equal(kp, "627436");
    assert_int_equal(st_put(E, "601", "John", "Smith", CVX_PUT_CREATE), 0);
    assert_int_equal(st_put(E, "602", "Jane", "Smyth", CVX_PUT_CREATE), 0);
    assert_int_equal(st_put(E, "603", "Pat", "O'Brien", CVX_PUT_CREATE), 0);
    cvx_mailbox_t hidden = {0};
    strcpy(hidden.number, "604");
    strcpy(hidden.last_name, "Smith");
    hidden.listed = 0;
    st_wait_t w = {0};
    assert_int_equal(cvx_store_mailbox_put(E->st, &hidden, CVX_PUT_CREATE, st_done_cb, &w), 0);
    st_run(E, &w.done);
    dirwait_t d = search("76");
    assert_int_equal(d.n, 2);
    d = search("76484"); /* SMITH + J */
    assert_int_equal(d.n, 1);
    assert_string_equal(d.numbers[0], "601");
    d = search("627");
    assert_int_equal(d.n, 1);
    assert_string_equal(d.numbers[0], "603");
    d = search("9");
    assert_int_equal(d.n, 0);
    /* A renamed mailbox moves in the directory. */
    assert_int_equal(st_put(E, "601", "John", "Brown", CVX_PUT_UPDATE), 0);
    d = search("76");
    assert_int_equal(d.n, 1);
    assert_string_equal(d.numbers[0], "602");
    d = search("27696");
    assert_int_equal(d.n, 1);
    assert_string_equal(d.numbers[0], "601");
    assert_int_equal(st_del(E, "601"), 0);
    d = search("27696");
    assert_int_equal(d.n, 0);
    assert_int_equal(cvx_store_dir_search(E->st, "7a", 8, on_dir, &d), CVX_EINVAL);
}

/* --- corruption ------------------------------------------------------------------------------ */

/* Flips one byte of the first chunk of storage id sid with LMDB directly. */
static void flip_chunk_byte(const char *path, uint64_t sid)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 16);
    assert_int_equal(mdb_env_open(env, path, 0, 0640), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "chunks", 0, &dbi), 0);
    uint8_t key[12] = {0};
    for (int i = 7; i >= 0; i--, sid >>= 8)
        key[i] = (uint8_t)sid;
    MDB_val k = {12, key}, v;
    assert_int_equal(mdb_get(txn, dbi, &k, &v), 0);
    uint8_t *copy = malloc(v.mv_size);
    memcpy(copy, v.mv_data, v.mv_size);
    copy[v.mv_size / 2] ^= 0x5a;
    MDB_val nv = {v.mv_size, copy};
    assert_int_equal(mdb_put(txn, dbi, &k, &nv, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    free(copy);
}

typedef struct exportwait {
    int done, status;
} exportwait_t;

static void test_corrupt_chunk(void **state)
{
    (void)state;
    open_ok();
    assert_int_equal(st_put(E, "700", "A", "B", CVX_PUT_CREATE), 0);
    const char *ids[] = {"c1", "c2", "c3"};
    uint8_t audio[3][6000];
    for (int i = 0; i < 3; i++) {
        st_audio_for(ids[i], audio[i], sizeof(audio[i]));
        assert_int_equal(st_deposit(E, ids[i], "700", audio[i], sizeof(audio[i]), 2000, NULL), 0);
    }
    st_close(E);
    /* A fresh store gives storage ids 1, 2, 3 in deposit order: damage c2's audio. */
    flip_chunk_byte(E->conf.path, 2);
    open_ok();
    uint8_t back[6000];
    size_t len;
    assert_int_equal(st_play_msg(E, "c2", back, sizeof(back), &len), CVX_ECORRUPT);
    assert_string_equal(cvx_strerror(CVX_ECORRUPT), "data corrupt");
    /* The rest of the mailbox still plays. */
    assert_int_equal(st_play_msg(E, "c1", back, sizeof(back), &len), 0);
    assert_memory_equal(back, audio[0], sizeof(back));
    assert_int_equal(st_play_msg(E, "c3", back, sizeof(back), &len), 0);
    assert_memory_equal(back, audio[2], sizeof(back));
    size_t n;
    assert_int_equal(st_list(E, "700", CVX_FOLDER_ANY, NULL, 0, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(st_verify(E), 1);
    char wav[400];
    snprintf(wav, sizeof(wav), "%s/c2.wav", E->dir);
    st_wait_t w = {0};
    assert_int_equal(cvx_store_message_export(E->st, "c2", wav, st_done_cb, &w), 0);
    st_run(E, &w.done);
    assert_int_equal(w.status, CVX_ECORRUPT);
    struct stat sb;
    assert_int_not_equal(stat(wav, &sb), 0);
    /* Purging the damaged message leaves a healthy store. */
    assert_int_equal(st_purge(E, "c2"), 0);
    assert_int_equal(st_verify(E), 0);
}

/* --- export ---------------------------------------------------------------------------------- */

static void test_export_wav(void **state)
{
    (void)state;
    open_ok();
    assert_int_equal(st_put(E, "800", "A", "B", CVX_PUT_CREATE), 0);
    uint8_t audio[16000];
    st_audio_for("w1", audio, sizeof(audio));
    assert_int_equal(st_deposit(E, "w1", "800", audio, sizeof(audio), 1600, NULL), 0);
    char wav[400];
    snprintf(wav, sizeof(wav), "%s/w1.wav", E->dir);
    st_wait_t w = {0};
    assert_int_equal(cvx_store_message_export(E->st, "w1", wav, st_done_cb, &w), 0);
    st_run(E, &w.done);
    assert_int_equal(w.status, 0);
    SF_INFO info = {0};
    SNDFILE *sf = sf_open(wav, SFM_READ, &info);
    assert_non_null(sf);
    assert_int_equal(info.samplerate, 8000);
    assert_int_equal(info.channels, 1);
    assert_int_equal(info.format, SF_FORMAT_WAV | SF_FORMAT_ULAW);
    assert_int_equal(info.frames, sizeof(audio));
    uint8_t back[16000];
    assert_int_equal(sf_read_raw(sf, back, sizeof(back)), sizeof(back));
    assert_memory_equal(back, audio, sizeof(audio));
    sf_close(sf);
    memset(&w, 0, sizeof(w));
    assert_int_equal(cvx_store_message_export(E->st, "nosuch", wav, st_done_cb, &w), 0);
    st_run(E, &w.done);
    assert_int_equal(w.status, CVX_ENOTFOUND);
}

/* --- full ------------------------------------------------------------------------------- */

static void test_map_full(void **state)
{
    (void)state;
    E->conf.map_size = E->conf.map_max = 1 << 20; /* 1 MB, no growth */
    open_ok();
    assert_int_equal(st_put(E, "900", "A", "B", CVX_PUT_CREATE), 0);
    static uint8_t audio[64 * 1024];
    int rc = 0, stored = 0;
    char id[32];
    for (int i = 0; i < 100 && rc == 0; i++) {
        snprintf(id, sizeof(id), "full%d", i);
        st_audio_for(id, audio, sizeof(audio));
        rc = st_deposit(E, id, "900", audio, sizeof(audio), 16384, NULL);
        if (rc == 0)
            stored++;
    }
    assert_int_equal(rc, CVX_EFULL);
    assert_string_equal(cvx_strerror(rc), "storage full");
    assert_true(stored >= 5);
    /* Still usable: reads work, the refused recording left nothing behind. */
    cvx_mailbox_t mb;
    assert_int_equal(st_get(E, "900", &mb), 0);
    assert_int_equal(mb.msgs_new, (uint32_t)stored);
    static uint8_t back[sizeof(audio)];
    size_t len;
    assert_int_equal(st_play_msg(E, "full0", back, sizeof(back), &len), 0);
    assert_int_equal(len, sizeof(audio));
    assert_int_equal(st_verify(E), 0);
    cvx_store_stats_t s;
    assert_int_equal(st_stats(E, &s), 0);
    assert_true(s.full_refusals >= 1);
    /* Freeing space makes room again. */
    assert_int_equal(st_purge(E, "full0"), 0);
    assert_int_equal(st_purge(E, "full1"), 0);
    st_audio_for("again", audio, sizeof(audio));
    assert_int_equal(st_deposit(E, "again", "900", audio, sizeof(audio), 16384, NULL), 0);
    assert_int_equal(st_verify(E), 0);
}

static void test_map_grows(void **state)
{
    (void)state;
    E->conf.map_size = 1 << 20;
    E->conf.map_max = 8 << 20;
    open_ok();
    assert_int_equal(st_put(E, "901", "A", "B", CVX_PUT_CREATE), 0);
    static uint8_t audio[64 * 1024];
    char id[32];
    for (int i = 0; i < 40; i++) {
        snprintf(id, sizeof(id), "grow%d", i);
        st_audio_for(id, audio, sizeof(audio));
        assert_int_equal(st_deposit(E, id, "901", audio, sizeof(audio), 16384, NULL), 0);
    }
    cvx_store_stats_t s;
    assert_int_equal(st_stats(E, &s), 0);
    assert_true(s.map_bytes > (1u << 20));
    assert_true(s.map_bytes <= (8u << 20));
    assert_int_equal(s.messages, 40);
    assert_int_equal(st_verify(E), 0);
}

/* --- schema ------------------------------------------------------------------------------- */

static void set_schema(const char *path, uint32_t version, int drop_directory)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 16);
    assert_int_equal(mdb_env_open(env, path, 0, 0640), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "settings", 0, &dbi), 0);
    uint8_t b[4] = {(uint8_t)version, (uint8_t)(version >> 8), 0, 0};
    MDB_val k = {6, "schema"}, v = {4, b};
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    if (drop_directory) {
        assert_int_equal(mdb_dbi_open(txn, "directory", 0, &dbi), 0);
        assert_int_equal(mdb_drop(txn, dbi, 1), 0);
    }
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static void test_schema_versions(void **state)
{
    (void)state;
    open_ok();
    assert_int_equal(st_put(E, "611", "Ann", "Lee", CVX_PUT_CREATE), 0);
    st_close(E);
    /* A store from a newer callvox is refused, untouched. */
    set_schema(E->conf.path, 3, 0);
    assert_int_equal(st_open(E), CVX_ENOTSUP);
    char want[600];
    snprintf(want, sizeof(want),
             "message store %s was written by a newer callvox (schema version 3; this callvoxd "
             "reads up to 2): refusing to open it",
             E->conf.path);
    assert_string_equal(E->err, want);
    assert_null(E->st);
    /* A schema 1 store (no directory) is upgraded in place: the directory is built. */
    set_schema(E->conf.path, 1, 1);
    open_ok();
    dirwait_t d = search("533");
    assert_int_equal(d.n, 1);
    assert_string_equal(d.numbers[0], "611");
    cvx_store_stats_t s;
    assert_int_equal(st_stats(E, &s), 0);
    assert_int_equal(s.schema, 2);
    st_close(E);
    open_ok(); /* and opens again as schema 2 */
    d = search("533");
    assert_int_equal(d.n, 1);
}

/* --- concurrency and restart ------------------------------------------------------------- */

typedef struct multi {
    int done;
    int status;
    int duplicate;
} multi_t;

static void on_multi(void *arg, int status, const cvx_deposit_result_t *r)
{
    multi_t *m = arg;
    m->status = status;
    m->duplicate = r ? r->duplicate : -1;
    m->done = 1;
}

static void test_many_deposits_one_mailbox(void **state)
{
    (void)state;
    enum { N = 200, CHUNKS = 5, CHUNK = 800 };
    open_ok();
    assert_int_equal(st_put(E, "1000", "Busy", "Line", CVX_PUT_CREATE), 0);
    cvx_store_stream_t *s[N];
    static multi_t res[N];
    static uint8_t audio[N][CHUNKS * CHUNK];
    char id[32];
    for (int i = 0; i < N; i++) {
        cvx_message_t m = {0};
        snprintf(m.id, sizeof(m.id), "many-%03d", i);
        strcpy(m.mailbox, "1000");
        m.codec = CVX_CODEC_ULAW;
        m.rate = 8000;
        st_audio_for(m.id, audio[i], sizeof(audio[i]));
        assert_int_equal(cvx_store_deposit_open(E->st, &m, &s[i]), 0);
    }
    /* Everyone speaks at once: appends interleave across the calls. */
    for (int c = 0; c < CHUNKS; c++)
        for (int i = 0; i < N; i++)
            assert_int_equal(cvx_store_stream_append(s[i], audio[i] + c * CHUNK, CHUNK), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(cvx_store_stream_commit(s[i], 500, on_multi, &res[i]), 0);
    for (int i = 0; i < N; i++) {
        st_run(E, &res[i].done);
        assert_int_equal(res[i].status, 0);
        assert_int_equal(res[i].duplicate, 0);
    }
    size_t n;
    static cvx_message_t msgs[N];
    assert_int_equal(st_list(E, "1000", CVX_FOLDER_NEW, msgs, N, &n), 0);
    assert_int_equal(n, N);
    cvx_mailbox_t mb;
    assert_int_equal(st_get(E, "1000", &mb), 0);
    assert_int_equal(mb.msgs_new, N);
    static uint8_t back[CHUNKS * CHUNK];
    for (int i = 0; i < N; i += 37) {
        snprintf(id, sizeof(id), "many-%03d", i);
        size_t len;
        assert_int_equal(st_play_msg(E, id, back, sizeof(back), &len), 0);
        assert_int_equal(len, sizeof(back));
        assert_memory_equal(back, audio[i], sizeof(back));
    }
    cvx_store_stats_t st;
    assert_int_equal(st_stats(E, &st), 0);
    /* Group commit: far fewer transactions than operations. */
    assert_true(st.transactions < (uint64_t)N * (CHUNKS + 1));
    assert_int_equal(st_verify(E), 0);
}

static void test_unfinished_recordings_removed_at_open(void **state)
{
    (void)state;
    open_ok();
    assert_int_equal(st_put(E, "1100", "A", "B", CVX_PUT_CREATE), 0);
    cvx_message_t m = {0};
    strcpy(m.id, "half");
    strcpy(m.mailbox, "1100");
    m.rate = 8000;
    cvx_store_stream_t *s;
    assert_int_equal(cvx_store_deposit_open(E->st, &m, &s), 0);
    uint8_t audio[1000] = {1};
    assert_int_equal(cvx_store_stream_append(s, audio, sizeof(audio)), 0);
    assert_int_equal(st_put(E, "1101", "A", "B", CVX_PUT_CREATE), 0); /* orders after it */
    cvx_store_stats_t st;
    assert_int_equal(st_stats(E, &st), 0);
    assert_int_equal(st.open_streams, 1);
    assert_int_equal(st.chunks, 1);
    st_close(E); /* aborts the open recording */
    open_ok();
    assert_int_equal(st_stats(E, &st), 0);
    assert_int_equal(st.open_streams, 0);
    assert_int_equal(st.chunks, 0);
    assert_int_equal(st_msg(E, "half", NULL), CVX_ENOTFOUND);
}

static void on_closed_flag(void *arg)
{
    *(int *)arg = 1;
}

static void test_closed_store_unavailable(void **state)
{
    (void)state;
    open_ok();
    assert_int_equal(st_put(E, "1200", "A", "B", CVX_PUT_CREATE), 0);
    /* Requests queued before close still complete. */
    st_wait_t w = {0};
    cvx_mailbox_t mb = {0};
    strcpy(mb.number, "1201");
    assert_int_equal(cvx_store_mailbox_put(E->st, &mb, CVX_PUT_CREATE, st_done_cb, &w), 0);
    int closed = 0;
    cvx_store_close(E->st, on_closed_flag, &closed);
    assert_int_equal(cvx_store_mailbox_get(E->st, "1200", NULL, NULL), CVX_EUNAVAIL);
    st_run(E, &closed);
    assert_int_equal(w.done, 1);
    assert_int_equal(w.status, 0);
    E->st = NULL;
    open_ok();
    assert_int_equal(st_get(E, "1201", NULL), 0);
}

/* --- backup ---------------------------------------------------------------------------------- */

static void test_backup_under_load(void **state)
{
    (void)state;
    open_ok();
    assert_int_equal(st_put(E, "1300", "A", "B", CVX_PUT_CREATE), 0);
    uint8_t audio[4000];
    char id[32];
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof(id), "b%d", i);
        st_audio_for(id, audio, sizeof(audio));
        assert_int_equal(st_deposit(E, id, "1300", audio, sizeof(audio), 1000, NULL), 0);
    }
    /* Deposits keep arriving while the copy is made. */
    enum { LOAD = 30 };
    static multi_t res[LOAD];
    memset(res, 0, sizeof(res));
    for (int i = 0; i < LOAD; i++) {
        cvx_message_t m = {0};
        snprintf(m.id, sizeof(m.id), "load%d", i);
        strcpy(m.mailbox, "1300");
        m.rate = 8000;
        cvx_store_stream_t *s;
        assert_int_equal(cvx_store_deposit_open(E->st, &m, &s), 0);
        st_audio_for(m.id, audio, sizeof(audio));
        assert_int_equal(cvx_store_stream_append(s, audio, sizeof(audio)), 0);
        assert_int_equal(cvx_store_stream_commit(s, 500, on_multi, &res[i]), 0);
    }
    char bdir[400];
    snprintf(bdir, sizeof(bdir), "%s/backup", E->dir);
    assert_int_equal(mkdir(bdir, 0750), 0);
    st_wait_t w = {0};
    assert_int_equal(cvx_store_backup(E->st, bdir, st_done_cb, &w), 0);
    st_run(E, &w.done);
    assert_int_equal(w.status, 0);
    for (int i = 0; i < LOAD; i++) {
        st_run(E, &res[i].done);
        assert_int_equal(res[i].status, 0);
    }
    memset(&w, 0, sizeof(w));
    assert_int_equal(cvx_store_backup(E->st, bdir, st_done_cb, &w), 0);
    st_run(E, &w.done);
    assert_int_equal(w.status, CVX_EEXIST);
    st_close(E);

    /* Restore: the copy opens as a store, verifies, and holds every message acknowledged
     * before the backup began. */
    const char *orig = E->conf.path;
    E->conf.path = bdir;
    open_ok();
    assert_int_equal(st_verify(E), 0);
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof(id), "b%d", i);
        uint8_t back[4000];
        size_t len;
        st_audio_for(id, audio, sizeof(audio));
        assert_int_equal(st_play_msg(E, id, back, sizeof(back), &len), 0);
        assert_memory_equal(back, audio, sizeof(audio));
    }
    st_close(E);
    E->conf.path = orig;
}

static void test_append_queue_limit(void **state)
{
    (void)state;
    E->conf.queue_max = 64 * 1024;
    open_ok();
    assert_int_equal(st_put(E, "1400", "A", "B", CVX_PUT_CREATE), 0);
    cvx_message_t m = {0};
    strcpy(m.id, "busy1");
    strcpy(m.mailbox, "1400");
    m.rate = 8000;
    cvx_store_stream_t *s;
    assert_int_equal(cvx_store_deposit_open(E->st, &m, &s), 0);
    static uint8_t audio[16 * 1024], want[80 * 1024];
    int appended = 0, rc;
    /* Queued audio counts until its completion reaches the loop, and the loop does not run
     * here: the queue fills up and the recorder is told to wait, memory does not grow. */
    while ((rc = cvx_store_stream_append(s, audio, sizeof(audio))) == 0 && appended < 5) {
        memcpy(want + appended * sizeof(audio), audio, sizeof(audio));
        appended++;
        audio[0]++;
    }
    assert_int_equal(rc, CVX_EBUSY);
    assert_string_equal(cvx_strerror(rc), "resource busy");
    assert_int_equal(appended, 4);
    /* Once the writer has caught up, appends are taken again and nothing was lost. */
    copywait_t w = {0};
    assert_int_equal(st_put(E, "1401", "A", "B", CVX_PUT_CREATE), 0);
    assert_int_equal(cvx_store_stream_append(s, audio, sizeof(audio)), 0);
    memcpy(want + appended * sizeof(audio), audio, sizeof(audio));
    assert_int_equal(cvx_store_stream_commit(s, 1000, on_copy, &w), 0);
    st_run(E, &w.done);
    assert_int_equal(w.status, 0);
    static uint8_t back[80 * 1024];
    size_t len;
    assert_int_equal(st_play_msg(E, "busy1", back, sizeof(back), &len), 0);
    assert_int_equal(len, 5 * sizeof(audio));
    assert_memory_equal(back, want, len);
}

static void test_temporary_greeting_expiry_kept(void **state)
{
    (void)state;
    open_ok();
    assert_int_equal(st_put(E, "1500", "A", "B", CVX_PUT_CREATE), 0);
    cvx_store_stream_t *s;
    uint64_t until = 1893456000000ull; /* 2030-01-01 UTC */
    assert_int_equal(cvx_store_greeting_open(E->st, "1500", CVX_GREETING_TEMPORARY, CVX_CODEC_PCM16,
                                             16000, until, 0, &s),
                     0);
    uint8_t audio[640] = {0};
    assert_int_equal(cvx_store_stream_append(s, audio, sizeof(audio)), 0);
    copywait_t w = {0};
    assert_int_equal(cvx_store_stream_commit(s, 20, on_copy, &w), 0);
    st_run(E, &w.done);
    assert_int_equal(w.status, 0);
    cvx_mailbox_t mb;
    assert_int_equal(st_get(E, "1500", &mb), 0);
    assert_int_equal(mb.greetings, 1u << CVX_GREETING_TEMPORARY);
    assert_int_equal(mb.temporary_until_ms, until);
    assert_int_equal(cvx_store_greeting_open(E->st, "1500", CVX_GREETING_COUNT, CVX_CODEC_PCM16,
                                             16000, 0, 0, &s),
                     CVX_EINVAL);
}

static void test_retention_classes(void **state)
{
    (void)state;
    const uint64_t day = 86400000;
    E->conf.retention_ms[1] = 10 * day;
    E->conf.retention_warning_ms = 3 * day;
    open_ok();
    cvx_mailbox_t mb = {0};
    strcpy(mb.number, "1600");
    mb.retention_class = 1;
    st_wait_t w = {0};
    assert_int_equal(cvx_store_mailbox_put(E->st, &mb, CVX_PUT_CREATE, st_done_cb, &w), 0);
    st_run(E, &w.done);
    assert_int_equal(st_put(E, "1601", "A", "B", CVX_PUT_CREATE), 0); /* class 0: forever */
    uint8_t audio[1000];
    st_audio_for("keep1", audio, sizeof(audio));
    assert_int_equal(st_deposit(E, "ret1", "1600", audio, sizeof(audio), 500, NULL), 0);
    assert_int_equal(st_deposit(E, "ret2", "1601", audio, sizeof(audio), 500, NULL), 0);
    assert_int_equal(st_deposit(E, "ret3", "1600", audio, sizeof(audio), 500, NULL), 0);
    assert_int_equal(st_move(E, "ret1", CVX_FOLDER_SAVED), 0);
    assert_int_equal(st_move(E, "ret2", CVX_FOLDER_SAVED), 0);
    uint64_t now = (uint64_t)time(NULL) * 1000;

    /* Eight days on: within the warning, flagged, still saved. */
    memset(&w, 0, sizeof(w));
    assert_int_equal(cvx_store_retain(E->st, now + 8 * day, st_done_cb, &w), 0);
    st_run(E, &w.done);
    assert_int_equal(w.status, 0);
    cvx_message_t m;
    assert_int_equal(st_msg(E, "ret1", &m), 0);
    assert_int_equal(m.folder, CVX_FOLDER_SAVED);
    assert_true(m.flags & CVX_MSG_EXPIRING);
    assert_int_equal(st_msg(E, "ret2", &m), 0);
    assert_false(m.flags & CVX_MSG_EXPIRING);
    assert_int_equal(st_msg(E, "ret3", &m), 0); /* new messages are not retained */
    assert_false(m.flags & CVX_MSG_EXPIRING);

    /* Eleven days on: class 1's saved message goes to the deleted folder. */
    memset(&w, 0, sizeof(w));
    assert_int_equal(cvx_store_retain(E->st, now + 11 * day, st_done_cb, &w), 0);
    st_run(E, &w.done);
    assert_int_equal(w.status, 1);
    assert_int_equal(st_msg(E, "ret1", &m), 0);
    assert_int_equal(m.folder, CVX_FOLDER_DELETED);
    assert_false(m.flags & CVX_MSG_EXPIRING);
    assert_int_equal(st_msg(E, "ret2", &m), 0);
    assert_int_equal(m.folder, CVX_FOLDER_SAVED);
    cvx_mailbox_t got;
    assert_int_equal(st_get(E, "1600", &got), 0);
    assert_int_equal(got.msgs_saved, 0);
    assert_int_equal(got.msgs_deleted, 1);
    assert_int_equal(got.msgs_new, 1);
    /* Saving again restarts the retention and clears the flag. */
    assert_int_equal(st_move(E, "ret1", CVX_FOLDER_SAVED), 0);
    assert_int_equal(st_msg(E, "ret1", &m), 0);
    assert_false(m.flags & CVX_MSG_EXPIRING);
    assert_int_equal(st_verify(E), 0);
}

static void on_moved(void *arg, int status)
{
    int *left = arg;
    assert_int_equal(status, 0);
    (*left)--;
}

static void test_expire_in_slices(void **state)
{
    (void)state;
    enum { N = 1100 }; /* more than one slice of the housekeeping scan (1024) */
    open_ok();
    assert_int_equal(st_put(E, "1700", "A", "B", CVX_PUT_CREATE), 0);
    static multi_t res[N];
    memset(res, 0, sizeof(res));
    uint8_t audio[160];
    st_audio_for("same for all", audio, sizeof(audio));
    char id[32];
    for (int i = 0; i < N; i++) {
        cvx_message_t m = {0};
        snprintf(m.id, sizeof(m.id), "old-%04d", i);
        strcpy(m.mailbox, "1700");
        m.rate = 8000;
        cvx_store_stream_t *s;
        assert_int_equal(cvx_store_deposit_open(E->st, &m, &s), 0);
        assert_int_equal(cvx_store_stream_append(s, audio, sizeof(audio)), 0);
        assert_int_equal(cvx_store_stream_commit(s, 20, on_multi, &res[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        st_run(E, &res[i].done);
        assert_int_equal(res[i].status, 0);
    }
    cvx_store_stats_t s;
    assert_int_equal(st_stats(E, &s), 0);
    assert_int_equal(s.blobs, 1);
    assert_int_equal(s.references, N);
    int left = N;
    for (int i = 0; i < N; i++) {
        snprintf(id, sizeof(id), "old-%04d", i);
        assert_int_equal(cvx_store_message_move(E->st, id, CVX_FOLDER_DELETED, on_moved, &left), 0);
    }
    while (left > 0)
        uv_run(&E->loop, UV_RUN_ONCE);
    st_wait_t w = {0};
    assert_int_equal(cvx_store_expire(E->st, UINT64_MAX, st_done_cb, &w), 0);
    st_run(E, &w.done);
    assert_int_equal(w.status, N);
    assert_int_equal(st_stats(E, &s), 0);
    assert_int_equal(s.messages, 0);
    assert_int_equal(s.blobs, 0);
    assert_int_equal(s.chunks, 0);
    cvx_mailbox_t mb;
    assert_int_equal(st_get(E, "1700", &mb), 0);
    assert_int_equal(mb.msgs_deleted, 0);
    assert_int_equal(st_verify(E), 0);
}

/* --- CSV import ---------------------------------------------------------------------------- */

typedef struct importwait {
    int done, status;
    char lines[16][200];
    int n;
} importwait_t;

static void on_import_line(void *arg, const char *line)
{
    importwait_t *w = arg;
    if (w->n < 16)
        snprintf(w->lines[w->n++], sizeof(w->lines[0]), "%s", line);
}

static void on_import_done(void *arg, int status)
{
    importwait_t *w = arg;
    w->status = status;
    w->done = 1;
}

static void test_csv_import(void **state)
{
    (void)state;
    E->conf.pin_history = 0;
    open_ok();
    assert_int_equal(st_put(E, "3001", "Old", "Timer", CVX_PUT_CREATE), 0);
    const char *csv = "number,first_name,last_name,pin,quota_messages\n"
                      "3000,Alice,Archer,1234,50\n"
                      "3001,Bob,Baker,,\n"
                      "30x2,Carol,Cook,,\n"
                      "3003,Dan,\"Dee, Jr\",12,\n"
                      "3004,Eve,Evans,,abc\n"
                      "3005,Fay,Fox\n"
                      "\n"
                      "3006,Gus,Grey,,10\n";
    importwait_t w = {0};
    assert_int_equal(
        cvx_store_import_csv(E->st, csv, strlen(csv), on_import_line, on_import_done, &w), 0);
    st_run(E, &w.done);
    assert_int_equal(w.status, 5);
    assert_int_equal(w.n, 7);
    assert_string_equal(w.lines[0], "line 2: added 3000");
    assert_string_equal(w.lines[1], "line 3: rejected: mailbox 3001 already exists");
    assert_string_equal(w.lines[2], "line 4: rejected: '30x2' is not a mailbox number");
    assert_string_equal(w.lines[3], "line 5: rejected: the PIN must be 4 to 16 digits");
    assert_string_equal(w.lines[4], "line 6: rejected: quota_messages: 'abc' is not a number");
    assert_string_equal(w.lines[5], "line 7: rejected: 3 fields, the header has 5");
    assert_string_equal(w.lines[6], "line 9: added 3006");
    cvx_mailbox_t mb;
    assert_int_equal(st_get(E, "3000", &mb), 0);
    assert_string_equal(mb.last_name, "Archer");
    assert_int_equal(mb.quota_messages, 50);
    assert_int_equal(mb.has_pin, 1);
    pinwait_t p = check_pin("3000", "1234");
    assert_int_equal(p.r.verdict, CVX_PIN_OK);
    assert_int_equal(st_get(E, "3006", &mb), 0);
    assert_int_equal(mb.has_pin, 0);
    assert_int_equal(st_get(E, "3001", &mb), 0);
    assert_string_equal(mb.first_name, "Old");

    memset(&w, 0, sizeof(w));
    const char *bad = "first_name,last_name\nA,B\n";
    assert_int_equal(
        cvx_store_import_csv(E->st, bad, strlen(bad), on_import_line, on_import_done, &w), 0);
    st_run(E, &w.done);
    assert_int_equal(w.status, CVX_EPARSE);
    assert_string_equal(w.lines[0], "line 1: the header has no 'number' column");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_mailbox_crud, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deposit_and_play, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotent_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deposit_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_audio_refcount, setup, teardown),
        cmocka_unit_test_setup_teardown(test_folders_and_mwi, setup, teardown),
        cmocka_unit_test_setup_teardown(test_greetings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pin_lock_runs_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_directory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_chunk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_export_wav, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_grows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_schema_versions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_deposits_one_mailbox, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unfinished_recordings_removed_at_open, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_closed_store_unavailable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backup_under_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_csv_import, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_queue_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_classes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expire_in_slices, setup, teardown),
        cmocka_unit_test_setup_teardown(test_temporary_greeting_expiry_kept, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
