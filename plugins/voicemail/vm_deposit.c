/*
 * Message deposit: what a caller forwarded to a mailbox hears and does.
 *
 *   mailbox lookup -> greeting (# skips it, 0 operator, * subscriber login) -> beep ->
 *   record (until #, silence, the maximum length or hang-up) -> after #: review
 *   (1 send, 2 listen, 3 re-record, 4 mark urgent) -> commit -> "message saved" -> goodbye.
 *
 * The recording streams into the store as it is taken (one append per second of audio); the
 * caller hears "message saved" only after the store has reported the commit durable.  A
 * caller who hangs up while recording or reviewing leaves the message (as callers expect);
 * recordings shorter than [voicemail] min_message are dropped.  A mailbox at its quota gets a
 * clear prompt and no recording; a store that cannot be reached gets "cannot take messages
 * right now", and a commit that fails gets "your message could not be saved": the flow never
 * says "saved" for a message that is not.
 *
 * Greeting choice: temporary (while it has not expired) > extended absence > busy or no
 * answer (by the redirect reason) > standard > the recorded name ("<name> is unavailable") >
 * the system greeting ("the person at extension 1 0 0 0 is unavailable").  An extended
 * absence greeting recorded as refusing messages is followed by goodbye, without a beep
 * (# skips to that goodbye; 0 and * still work).
 */
#include <stdlib.h>
#include <string.h>

#include "cvx/error.h"
#include "cvx/log.h"
#include "vm.h"

#define APPEND_SAMPLES 8000 /* one second per append */

/* Copies src into dst of size bytes, cut to fit. */
static void copy(char *dst, size_t size, const char *src)
{
    size_t n = strnlen(src, size - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static void start_record(vm_call_t *c);
static void review(vm_call_t *c);

static void log_call(vm_call_t *c, cvx_log_level_t level, const char *doing, const char *what,
                     int err)
{
    cvx_log_ctx_t ctx = vm_ctx(c, doing);
    cvx_log_ctx(level, &ctx, "voicemail: mailbox %s: %s%s%s", c->mailbox, what, err ? ": " : "",
                err ? cvx_strerror(err) : "");
}

static void store_unavailable(vm_call_t *c, int err)
{
    log_call(c, CVX_LOG_WARN, "depositing", "the store cannot take messages", err);
    vm_list_t l = {0};
    vm_add(&l, "sorry");
    vm_add(&l, "store-unavailable");
    vm_add(&l, "goodbye");
    vm_play_and_hangup(c, &l);
}

static void after_transfer_prompt(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    vm_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return;
    cvx_cdr_set_transfer(c->chan, c->xfer_to);
    int rc = cvx_chan_transfer(c->chan, c->xfer_to, 0);
    if (rc != 0) {
        log_call(c, CVX_LOG_WARN, "transferring", "blind transfer failed", rc);
        vm_list_t l = {0};
        vm_add(&l, "operator-unavailable");
        vm_add(&l, "goodbye");
        vm_play_and_hangup(c, &l);
    }
}

void vm_transfer(vm_call_t *c, const char *dest)
{
    vm_list_t l = {0};
    if (dest == NULL || *dest == '\0') {
        vm_add(&l, "operator-unavailable");
        vm_add(&l, "goodbye");
        vm_play_and_hangup(c, &l);
        return;
    }
    snprintf(c->xfer_to, sizeof(c->xfer_to), "%s", dest);
    cvx_log_ctx_t ctx = vm_ctx(c, "transferring");
    cvx_log_ctx(CVX_LOG_INFO, &ctx, "voicemail: transferring to %s", dest);
    vm_add(&l, "transfer");
    vm_add(&l, "tail-silence"); /* the prompt has left before the transfer takes the call */
    vm_play(c, &l, NULL, after_transfer_prompt);
}

/* --- greeting ------------------------------------------------------------------------------- */

static void greeting_done(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    vm_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return;
    if (res->end == CVX_MEDIA_DIGIT && res->digit == '0') {
        vm_transfer(c, vm_conf.operator_number);
        return;
    }
    if (res->end == CVX_MEDIA_DIGIT && res->digit == '*') {
        cvx_media_flush_digits(c->media);
        vm_login_start(c, c->mailbox);
        return;
    }
    if (c->refuse) { /* the extended absence greeting refuses messages */
        log_call(c, CVX_LOG_INFO, "depositing", "extended absence: no messages taken", 0);
        vm_list_t l = {0};
        vm_add(&l, "goodbye");
        vm_play_and_hangup(c, &l);
        return;
    }
    start_record(c); /* played to the end, or # */
}

/* The system greeting, or the recorded name, then the instructions. */
static void play_system_greeting(vm_call_t *c, cvx_audio_t *name)
{
    vm_list_t l = {0};
    const cvx_call_info_t *info = cvx_chan_info(c->chan);
    if (name) {
        vm_add_audio(&l, name);
    } else {
        vm_add(&l, "theperson");
        vm_say_digits(&l, c->mailbox);
    }
    vm_add(&l, info->redirect == CVX_REDIRECT_BUSY ? "isonphone" : "isunavail");
    vm_add(&l, "intro");
    vm_play(c, &l, "#0*", greeting_done);
}

static void greeting_fetched(vm_call_t *c, int status, cvx_audio_t *a)
{
    if (status != 0) {
        log_call(c, CVX_LOG_WARN, "fetching the greeting", "greeting unusable", status);
        play_system_greeting(c, NULL);
        return;
    }
    if (c->audio)
        cvx_audio_unref(c->audio);
    c->audio = a;
    if (c->fetch_is_name) {
        play_system_greeting(c, a);
        return;
    }
    vm_list_t l = {0};
    vm_add_audio(&l, a);
    vm_play(c, &l, "#0*", greeting_done);
}

static int has(const cvx_mailbox_t *mb, cvx_greeting_t g)
{
    return (mb->greetings >> g) & 1;
}

static void play_greeting(vm_call_t *c)
{
    const cvx_mailbox_t *mb = &c->mb;
    cvx_redirect_t why = cvx_chan_info(c->chan)->redirect;
    int g = -1;
    if (has(mb, CVX_GREETING_TEMPORARY) &&
        (mb->temporary_until_ms == 0 || mb->temporary_until_ms > vm_now_ms()))
        g = CVX_GREETING_TEMPORARY;
    else if (has(mb, CVX_GREETING_EXTENDED))
        g = CVX_GREETING_EXTENDED;
    else if (why == CVX_REDIRECT_BUSY && has(mb, CVX_GREETING_BUSY))
        g = CVX_GREETING_BUSY;
    else if (why == CVX_REDIRECT_NO_ANSWER && has(mb, CVX_GREETING_NOANSWER))
        g = CVX_GREETING_NOANSWER;
    else if (has(mb, CVX_GREETING_STANDARD))
        g = CVX_GREETING_STANDARD;
    else if (has(mb, CVX_GREETING_NAME))
        g = CVX_GREETING_NAME;
    c->refuse = g == CVX_GREETING_EXTENDED && (mb->greeting_flags & CVX_GREETING_REFUSE);
    if (g < 0) {
        play_system_greeting(c, NULL);
        return;
    }
    cvx_audio_ref_t ref = {0};
    ref.is_greeting = 1;
    snprintf(ref.mailbox, sizeof(ref.mailbox), "%s", c->mailbox);
    ref.greeting = (cvx_greeting_t)g;
    c->fetch_is_name = g == CVX_GREETING_NAME;
    int rc = vm_fetch(c, &ref, greeting_fetched);
    if (rc != 0) {
        log_call(c, CVX_LOG_WARN, "fetching the greeting", "greeting unusable", rc);
        play_system_greeting(c, NULL);
        return;
    }
}

/* --- lookup --------------------------------------------------------------------------------- */

static void unknown_mailbox(vm_call_t *c)
{
    log_call(c, CVX_LOG_NOTICE, "depositing", "no such mailbox", 0);
    if (vm_conf.unknown_mailbox == VM_UNKNOWN_OPERATOR) {
        vm_transfer(c, vm_conf.operator_number);
    } else if (vm_conf.unknown_mailbox == VM_UNKNOWN_ATTENDANT) {
        vm_transfer(c, vm_conf.attendant_number);
    } else {
        vm_list_t l = {0};
        vm_add(&l, "not-in-service");
        vm_add(&l, "goodbye");
        vm_play_and_hangup(c, &l);
    }
}

static int mailbox_full(const cvx_mailbox_t *mb)
{
    return mb->quota_messages > 0 && mb->msgs_new + mb->msgs_saved >= mb->quota_messages;
}

static void on_mailbox(void *arg, int status, const cvx_mailbox_t *mb)
{
    vm_call_t *c = arg;
    c->pending--;
    if (c->hung_up) {
        vm_call_maybe_free(c);
        return;
    }
    if (status == CVX_ENOTFOUND) {
        unknown_mailbox(c);
        return;
    }
    if (status != 0) {
        store_unavailable(c, status);
        return;
    }
    c->mb = *mb;
    if (mailbox_full(mb)) {
        log_call(c, CVX_LOG_NOTICE, "depositing", "mailbox full, no message taken", 0);
        vm_list_t l = {0};
        vm_add(&l, "mailboxfull");
        vm_add(&l, "goodbye");
        vm_play_and_hangup(c, &l);
        return;
    }
    play_greeting(c);
}

void vm_deposit_start(vm_call_t *c, const char *mailbox)
{
    copy(c->mailbox, sizeof(c->mailbox), mailbox);
    cvx_store_t *st = cvx_store_default();
    int rc = st ? cvx_store_mailbox_get(st, mailbox, on_mailbox, c) : CVX_EUNAVAIL;
    if (rc == CVX_EINVAL) {
        unknown_mailbox(c);
        return;
    }
    if (rc != 0) {
        store_unavailable(c, rc);
        return;
    }
    c->pending++;
}

/* --- recording ------------------------------------------------------------------------------ */

static int open_stream(vm_call_t *c)
{
    cvx_store_t *st = cvx_store_default();
    if (st == NULL)
        return CVX_EUNAVAIL;
    const cvx_call_info_t *info = cvx_chan_info(c->chan);
    cvx_message_t msg;
    memset(&msg, 0, sizeof(msg));
    cvx_store_make_id(c->msg_id);
    snprintf(msg.id, sizeof(msg.id), "%s", c->msg_id);
    snprintf(msg.mailbox, sizeof(msg.mailbox), "%s", c->mailbox);
    if (cvx_store_valid_number(info->calling))
        copy(msg.caller_number, sizeof(msg.caller_number), info->calling);
    copy(msg.caller_name, sizeof(msg.caller_name), info->calling_name);
    if (cvx_store_valid_number(info->called))
        copy(msg.called_number, sizeof(msg.called_number), info->called);
    msg.redirect_reason = (uint8_t)info->redirect;
    msg.received_ms = vm_now_ms();
    msg.flags = c->flags;
    msg.codec = CVX_CODEC_PCM16;
    msg.rate = VM_RATE;
    c->rec_sent = 0;
    return cvx_store_deposit_open(st, &msg, &c->stream);
}

/* Sends what was recorded and not yet appended (all of it when all is set). */
static int flush(vm_call_t *c, int all)
{
    while (c->stream && c->rec_n > c->rec_sent &&
           (all || c->rec_n - c->rec_sent >= APPEND_SAMPLES)) {
        size_t n = c->rec_n - c->rec_sent;
        if (n > CVX_STORE_CHUNK_MAX / 2)
            n = CVX_STORE_CHUNK_MAX / 2;
        int rc = cvx_store_stream_append(c->stream, c->rec + c->rec_sent, n * 2);
        if (rc != 0)
            return rc;
        c->rec_sent += n;
    }
    return 0;
}

static int sink_write(void *arg, const cvx_frame_t *f)
{
    vm_call_t *c = arg;
    int rc = vm_rec_append(c, f);
    if (rc != 0)
        return rc;
    return flush(c, 0);
}

static uint32_t duration_ms(const vm_call_t *c)
{
    return (uint32_t)(c->rec_n * 1000 / VM_RATE);
}

static void on_committed(void *arg, int status, const cvx_deposit_result_t *r)
{
    vm_call_t *c = arg;
    c->pending--;
    c->committing = 0;
    cvx_log_ctx_t ctx = vm_ctx(c, "committing the message");
    cvx_cdr_set_mailbox(c->chan, c->mailbox);
    cvx_cdr_set_outcome(c->chan, status == 0 ? CVX_CDR_MESSAGE_LEFT : CVX_CDR_MESSAGE_FAILED);
    if (status == 0)
        cvx_log_ctx(CVX_LOG_INFO, &ctx, "voicemail: message %s saved in mailbox %s (%u ms%s)",
                    r->id, c->mailbox, duration_ms(c), c->flags & CVX_MSG_URGENT ? ", urgent" : "");
    else
        cvx_log_ctx(CVX_LOG_WARN, &ctx, "voicemail: message %s for mailbox %s not saved: %s",
                    c->msg_id, c->mailbox, cvx_strerror(status));
    if (c->hung_up) {
        vm_call_maybe_free(c);
        return;
    }
    vm_list_t l = {0};
    if (status == 0)
        vm_add(&l, "msgsaved");
    else if (status == CVX_ELIMIT)
        vm_add(&l, "mailboxfull");
    else
        vm_add(&l, "not-saved");
    vm_add(&l, "goodbye");
    vm_play_and_hangup(c, &l);
}

/* Commits the recording; "saved" is said (when the caller is still there) in on_committed. */
static void commit(vm_call_t *c)
{
    int rc = flush(c, 1);
    cvx_store_stream_t *s = c->stream;
    c->stream = NULL;
    if (rc == 0)
        rc = cvx_store_stream_commit(s, duration_ms(c), on_committed, c);
    else
        cvx_store_stream_abort(s);
    if (rc != 0) {
        on_committed(c, rc, NULL);
        return;
    }
    c->pending++;
    c->committing = 1;
}

static void drop(vm_call_t *c)
{
    if (c->stream)
        cvx_store_stream_abort(c->stream);
    c->stream = NULL;
    c->rec_n = c->rec_sent = 0;
}

void vm_deposit_hangup(vm_call_t *c)
{
    if (c->stream == NULL)
        return;
    if (c->greeting_open) { /* a greeting left unfinished is dropped, the old one stays */
        cvx_store_stream_abort(c->stream);
        c->stream = NULL;
        return;
    }
    if ((long long)duration_ms(c) < vm_conf.min_message_ms) {
        log_call(c, CVX_LOG_INFO, "depositing", "caller hung up, recording too short: dropped", 0);
        drop(c);
        return;
    }
    /* pending++ in commit keeps the call until the store answers; on_committed sees hung_up.
     * on_committed(c, error) reached directly from commit() runs with pending unchanged and
     * hung_up set, which frees nothing yet: the caller (vm_event) frees afterwards. */
    c->pending++;
    commit(c);
    c->pending--;
}

static void after_tooshort(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    vm_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return;
    start_record(c);
}

static void record_done(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    vm_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return; /* vm_deposit_hangup commits */
    if (res->end == CVX_MEDIA_ERROR) {
        log_call(c, CVX_LOG_WARN, "recording", "recording failed", res->err);
        drop(c);
        vm_list_t l = {0};
        vm_add(&l, "not-saved");
        vm_add(&l, "goodbye");
        vm_play_and_hangup(c, &l);
        return;
    }
    if ((long long)duration_ms(c) < vm_conf.min_message_ms) {
        drop(c);
        if (++c->attempts >= 3) {
            vm_list_t l = {0};
            vm_add(&l, "goodbye");
            vm_play_and_hangup(c, &l);
            return;
        }
        vm_list_t l = {0};
        vm_add(&l, "tooshort");
        vm_play(c, &l, NULL, after_tooshort);
        return;
    }
    if (res->end == CVX_MEDIA_DIGIT) {
        review(c);
        return;
    }
    commit(c); /* silence or the maximum length */
}

static void start_record(vm_call_t *c)
{
    drop(c);
    int rc = open_stream(c);
    if (rc != 0) {
        store_unavailable(c, rc);
        return;
    }
    cvx_media_flush_digits(c->media);
    cvx_record_opts_t ro = {0};
    ro.max_ms =
        c->mb.max_message_s ? (long long)c->mb.max_message_s * 1000 : vm_conf.max_message_ms;
    ro.silence_ms = vm_conf.silence_ms;
    ro.term_digits = "#";
    ro.beep = 1;
    cvx_media_sink_t sink = {sink_write, c};
    rc = cvx_media_record(c->media, &ro, &sink, record_done, c);
    if (rc != 0) {
        log_call(c, CVX_LOG_ERROR, "recording", "cannot record", rc);
        drop(c);
        vm_hangup(c);
        return;
    }
    log_call(c, CVX_LOG_INFO, "recording", "recording a message", 0);
}

/* --- review --------------------------------------------------------------------------------- */

static void review_digit(vm_call_t *c, char d);

static void review_collected(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    vm_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return;
    if (res->digits[0] == '\0') {
        /* No answer: send it, as the caller most likely meant to. */
        if (++c->attempts >= 2) {
            commit(c);
            return;
        }
        review(c);
        return;
    }
    review_digit(c, res->digits[0]);
}

static void review_played(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    vm_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return;
    cvx_collect_opts_t co = {0};
    co.max_digits = 1;
    co.first_timeout_ms = 5000;
    int rc = cvx_media_collect(c->media, &co, review_collected, c);
    if (rc != 0)
        commit(c);
}

static void review(vm_call_t *c)
{
    cvx_media_flush_digits(c->media);
    vm_list_t l = {0};
    vm_add(&l, "review");
    vm_play(c, &l, VM_ANY_DIGIT, review_played);
}

/* Re-writes the recording under a new id with the current flags (urgent is part of the
 * message's metadata, given when its stream opens). */
static int reopen_with_flags(vm_call_t *c)
{
    size_t n = c->rec_n;
    cvx_store_stream_abort(c->stream);
    c->stream = NULL;
    int rc = open_stream(c);
    if (rc != 0)
        return rc;
    c->rec_n = n;
    c->rec_sent = 0;
    return flush(c, 1);
}

static void review_digit(vm_call_t *c, char d)
{
    vm_list_t l = {0};
    int rc;
    switch (d) {
    case '1':
        commit(c);
        break;
    case '2':
        if (c->audio)
            cvx_audio_unref(c->audio);
        c->audio = cvx_audio_from_samples(c->rec, c->rec_n, VM_RATE);
        vm_add_audio(&l, c->audio);
        vm_play(c, &l, VM_ANY_DIGIT, review_played);
        break;
    case '3':
        c->attempts = 0;
        start_record(c);
        break;
    case '4':
        c->flags |= CVX_MSG_URGENT;
        rc = reopen_with_flags(c);
        if (rc != 0) {
            store_unavailable(c, rc);
            drop(c);
            return;
        }
        vm_add(&l, "marked-urgent");
        vm_play(c, &l, VM_ANY_DIGIT, review_played);
        break;
    default:
        vm_add(&l, "invalid");
        vm_play(c, &l, NULL, review_played);
        break;
    }
}
