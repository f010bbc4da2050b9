/*
 * Sending on from a message: forwarding it to another mailbox with a recorded introduction
 * (key 5 of the message menu, once the message has been heard), and the reply menu (key *):
 * a reply recorded into the sender's mailbox when the sender is a local mailbox, or a call to
 * the sender (blind transfer to the message's caller number).
 *
 * The subscriber enters the mailbox number (#), then records an introduction after the tone
 * (# ends it).  The forwarded message is a new message in that mailbox whose audio is the
 * introduction followed by the original, from the forwarding mailbox's number; it is
 * committed through the same deposit stream as any message, and "message forwarded" is said
 * only once the commit is confirmed.  (Without an introduction the store's
 * cvx_store_message_copy would share the audio; with one the audio differs, so it is
 * written anew.)
 */
#include <stdlib.h>
#include <string.h>

#include "cvx/error.h"
#include "cvx/log.h"
#include "vm.h"

static void fctx(vm_call_t *c, cvx_log_level_t lv, const char *what, int err)
{
    cvx_log_ctx_t ctx = vm_ctx(c, "forwarding a message");
    cvx_log_ctx(lv, &ctx, "voicemail: mailbox %s: %s%s%s", c->mailbox, what, err ? ": " : "",
                err ? cvx_strerror(err) : "");
}

static void back(vm_call_t *c, const char *said)
{
    vm_list_t l = {0};
    vm_add(&l, said);
    vm_back_to_menu(c, &l);
}

static void forwarded(void *arg, int status, const cvx_deposit_result_t *r)
{
    vm_call_t *c = arg;
    c->pending--;
    const char *what = c->replying ? "reply" : "message forward";
    cvx_log_ctx_t ctx = vm_ctx(c, c->replying ? "replying" : "forwarding a message");
    if (status == 0)
        cvx_log_ctx(CVX_LOG_INFO, &ctx, "voicemail: mailbox %s: %s saved in mailbox %s", c->mailbox,
                    what, c->fwd_to);
    else
        cvx_log_ctx(CVX_LOG_WARN, &ctx, "voicemail: mailbox %s: %s to %s not saved: %s", c->mailbox,
                    what, c->fwd_to, cvx_strerror(status));
    (void)r;
    if (c->hung_up) {
        vm_call_maybe_free(c);
        return;
    }
    const char *ok = c->replying ? "reply-sent" : "msgforwarded";
    back(c, status == 0 ? ok : status == CVX_ELIMIT ? "mailboxfull" : "not-saved");
}

static int intro_sink(void *arg, const cvx_frame_t *f)
{
    vm_call_t *c = arg;
    return vm_rec_append(c, f);
}

/* Writes introduction + original as a new message in c->fwd_to. */
static int write_forward(vm_call_t *c)
{
    cvx_store_t *st = cvx_store_default();
    if (st == NULL)
        return CVX_EUNAVAIL;
    const cvx_message_t *orig = &c->msgs[c->cur];
    cvx_message_t msg;
    memset(&msg, 0, sizeof(msg));
    cvx_store_make_id(msg.id);
    memcpy(msg.mailbox, c->fwd_to, sizeof(msg.mailbox));
    memcpy(msg.caller_number, c->mailbox, sizeof(msg.caller_number));
    if (!c->replying)
        memcpy(msg.called_number, orig->called_number, sizeof(msg.called_number));
    msg.received_ms = vm_now_ms();
    msg.flags = c->replying ? 0 : orig->flags & CVX_MSG_URGENT;
    msg.codec = CVX_CODEC_PCM16;
    msg.rate = VM_RATE;
    cvx_store_stream_t *s;
    int rc = cvx_store_deposit_open(st, &msg, &s);
    if (rc != 0)
        return rc;
    /* A forward holds the introduction then the original; a reply only what was recorded. */
    const int16_t *parts[2] = {c->rec, c->replying ? NULL : cvx_audio_data(c->audio)};
    size_t lens[2] = {c->rec_n, c->replying ? 0 : cvx_audio_samples(c->audio)};
    for (int p = 0; p < 2 && rc == 0; p++)
        for (size_t off = 0; off < lens[p] && rc == 0; off += CVX_STORE_CHUNK_MAX / 2) {
            size_t n = lens[p] - off;
            if (n > CVX_STORE_CHUNK_MAX / 2)
                n = CVX_STORE_CHUNK_MAX / 2;
            rc = cvx_store_stream_append(s, parts[p] + off, n * 2);
        }
    uint32_t ms = (uint32_t)((lens[0] + lens[1]) * 1000 / VM_RATE);
    if (rc == 0)
        rc = cvx_store_stream_commit(s, ms, forwarded, c);
    else
        cvx_store_stream_abort(s);
    if (rc == 0)
        c->pending++;
    return rc;
}

static void intro_recorded(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    vm_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return; /* hanging up abandons the forward */
    if (res->end == CVX_MEDIA_ERROR) {
        back(c, "not-saved");
        return;
    }
    if (c->replying && (long long)c->rec_n * 1000 / VM_RATE < vm_conf.min_message_ms) {
        c->rec_n = 0;
        back(c, "tooshort");
        return;
    }
    int rc = write_forward(c);
    c->rec_n = 0;
    if (rc != 0) {
        fctx(c, CVX_LOG_WARN, c->replying ? "reply not sent" : "message not forwarded", rc);
        back(c, rc == CVX_ELIMIT ? "mailboxfull" : "not-saved");
    }
}

static void record_intro(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    vm_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return;
    cvx_media_flush_digits(c->media);
    c->rec_n = 0;
    cvx_record_opts_t ro = {0};
    ro.max_ms = 60000;
    ro.silence_ms = vm_conf.silence_ms;
    ro.term_digits = "#";
    ro.beep = 1;
    cvx_media_sink_t sink = {intro_sink, c};
    if (cvx_media_record(c->media, &ro, &sink, intro_recorded, c) != 0)
        vm_hangup(c);
}

static void on_target(void *arg, int status, const cvx_mailbox_t *mb)
{
    (void)mb;
    vm_call_t *c = arg;
    c->pending--;
    if (c->hung_up) {
        vm_call_maybe_free(c);
        return;
    }
    if (status == CVX_ENOTFOUND) {
        back(c, "invalid");
        return;
    }
    if (status != 0) {
        back(c, "sorry");
        return;
    }
    vm_list_t l = {0};
    vm_add(&l, "record-intro");
    vm_play(c, &l, NULL, record_intro);
}

static void target_collected(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    vm_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return;
    cvx_store_t *st = cvx_store_default();
    if (!cvx_store_valid_number(res->digits) || strlen(res->digits) >= sizeof(c->fwd_to)) {
        back(c, "invalid");
        return;
    }
    memcpy(c->fwd_to, res->digits, strlen(res->digits) + 1);
    int rc = st ? cvx_store_mailbox_get(st, c->fwd_to, on_target, c) : CVX_EUNAVAIL;
    if (rc != 0) {
        back(c, "sorry");
        return;
    }
    c->pending++;
}

static void ask_target(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    vm_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return;
    vm_collect_number(c, target_collected);
}

void vm_forward_start(vm_call_t *c)
{
    if (c->audio == NULL || c->audio_msg != c->cur) {
        back(c, "invalid"); /* listen to the message first */
        return;
    }
    c->replying = 0;
    vm_list_t l = {0};
    vm_add(&l, "fwd-mailbox");
    vm_play(c, &l, VM_ANY_DIGIT, ask_target);
}

/* --- the reply menu ---------------------------------------------------------------------- */

static void on_sender(void *arg, int status, const cvx_mailbox_t *mb)
{
    (void)mb;
    vm_call_t *c = arg;
    c->pending--;
    if (c->hung_up) {
        vm_call_maybe_free(c);
        return;
    }
    if (status == CVX_ENOTFOUND) {
        back(c, "not-local");
        return;
    }
    if (status != 0) {
        back(c, "sorry");
        return;
    }
    c->replying = 1;
    vm_list_t l = {0};
    vm_add(&l, "record-reply");
    vm_play(c, &l, NULL, record_intro);
}

static void reply_key(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    vm_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return;
    const char *sender = c->msgs[c->cur].caller_number;
    int action = vm_key_action(VM_MENU_REPLY, res->digits[0]);
    if ((action == VM_K_REPLY || action == VM_K_CALLBACK) && sender[0] == '\0') {
        back(c, "no-number");
        return;
    }
    cvx_store_t *st = cvx_store_default();
    int rc;
    switch (action) {
    case VM_K_REPLY:
        snprintf(c->fwd_to, sizeof(c->fwd_to), "%s", sender);
        rc = st ? cvx_store_mailbox_get(st, sender, on_sender, c) : CVX_EUNAVAIL;
        if (rc == CVX_EINVAL) {
            back(c, "not-local");
            return;
        }
        if (rc != 0) {
            back(c, "sorry");
            return;
        }
        c->pending++;
        break;
    case VM_K_CALLBACK:
        fctx(c, CVX_LOG_INFO, "calling the sender back", 0);
        vm_transfer(c, sender);
        break;
    case VM_K_BACK:
        vm_back_to_menu(c, NULL);
        break;
    default:
        back(c, "invalid");
        break;
    }
}

static void reply_menu_played(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    vm_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return;
    vm_collect_key(c, 6000, reply_key);
}

void vm_reply_menu(vm_call_t *c)
{
    cvx_media_flush_digits(c->media);
    vm_list_t l = {0};
    vm_say_menu(&l, VM_MENU_REPLY);
    vm_play(c, &l, VM_ANY_DIGIT, reply_menu_played);
}
