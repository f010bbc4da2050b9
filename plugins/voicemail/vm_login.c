/*
 * The subscriber conversation: login, message counts and the message menu.
 *
 * Login: from the subscriber's own phone (the calling number is a mailbox, or the caller
 * pressed * during that mailbox's greeting) only the PIN is asked; from any other phone the
 * mailbox number, then the PIN, each ended by # (or the inter-digit timeout).  A wrong PIN
 * or an unknown mailbox get the same answer ("login incorrect"), so callers cannot probe
 * which mailboxes exist; three failures end the call.  The store counts wrong PINs across
 * calls and locks the mailbox ([store] pin_attempts, pin_lockout); a locked mailbox is told
 * so and the call ends.  PINs are checked on the store's thread pool.
 *
 * Then: "you have N new messages and M old messages"; urgent new messages first, then new,
 * then saved ones, each oldest first.  Each message: its envelope (received when, in the
 * mailbox's time zone; from which number; how long), its audio, and the menu.
 *
 * Keys (the defaults of the key map, vm.h and vm_keys.c; while a message or the menu plays,
 * digits interrupt prompts):
 *   1 replay   2 envelope   3 save   4 previous   5 forward with an introduction
 *   6 or # next   7 delete   8 undelete   * reply menu (vm_forward.c: reply, call back)
 *   9 mailbox options (vm_options.c)   0 end
 * While the message itself plays: * back 5 s, # on 5 s, 2 pause (any key resumes); other
 * keys act as in the menu.  With no messages the options menu follows the counts.
 *
 * A store that cannot be reached (CVX_EUNAVAIL: on a call server, the system server is away)
 * is a documented loss of function: the subscriber is told the messages cannot be reached and
 * is offered to leave a message for a mailbox instead (the deposit flow, which says itself
 * whether it can take one).
 * Deleted messages stay in the deleted folder (undelete works during the call and until
 * the store's deleted_retention purges them).
 */
#include <stdlib.h>
#include <string.h>

#include "cvx/error.h"
#include "cvx/log.h"
#include "vm.h"

#define MAX_TRIES 3

static void play_message(vm_call_t *c, int envelope_only);
static void message_menu(vm_call_t *c);

static void say_then_hangup(vm_call_t *c, const char *a, const char *b)
{
    vm_list_t l = {0};
    if (a)
        vm_add(&l, a);
    if (b)
        vm_add(&l, b);
    vm_add(&l, "goodbye");
    vm_play_and_hangup(c, &l);
}

/* The store cannot be reached: say so, and offer a deposit instead (vm_deposit.c). */
static void offer_collected(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    vm_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return;
    if (res->digits[0] == '\0' || !cvx_store_valid_number(res->digits)) {
        say_then_hangup(c, NULL, NULL);
        return;
    }
    cvx_log_ctx_t ctx = vm_ctx(c, "logging in");
    cvx_log_ctx(CVX_LOG_INFO, &ctx, "voicemail: store away: the caller leaves a message for %s",
                res->digits);
    c->own_phone = 0;
    c->attempts = 0;
    vm_deposit_start(c, res->digits);
}

static void offer_played(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    vm_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return;
    vm_collect_number(c, offer_collected);
}

static void store_failed(vm_call_t *c, int err)
{
    cvx_log_ctx_t ctx = vm_ctx(c, "subscriber conversation");
    cvx_log_ctx(CVX_LOG_WARN, &ctx, "voicemail: mailbox %s: the store failed: %s",
                c->mailbox[0] ? c->mailbox : "?", cvx_strerror(err));
    if (err != CVX_EUNAVAIL) {
        say_then_hangup(c, "sorry", "service-down");
        return;
    }
    vm_list_t l = {0};
    vm_add(&l, "sorry");
    vm_add(&l, "messages-unavailable");
    vm_add(&l, "offer-deposit");
    vm_play(c, &l, VM_ANY_DIGIT, offer_played);
}

static void lctx(vm_call_t *c, cvx_log_level_t lv, const char *what, int err)
{
    cvx_log_ctx_t ctx = vm_ctx(c, "logging in");
    cvx_log_ctx(lv, &ctx, "voicemail: mailbox %s: %s%s%s", c->mailbox[0] ? c->mailbox : "?", what,
                err ? ": " : "", err ? cvx_strerror(err) : "");
}

/* --- login ------------------------------------------------------------------------------ */

/* After a prompt (digits interrupt it and are kept), collects digits ended by #. */
static void prompt_done(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    vm_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return;
    cvx_collect_opts_t co = {0};
    co.max_digits = CVX_STORE_PIN_MAX + 1;
    co.first_timeout_ms = 6000;
    co.inter_digit_ms = 4000;
    co.terminators = "#";
    if (cvx_media_collect(c->media, &co, c->collected, c) != 0)
        vm_hangup(c);
}

static void collect(vm_call_t *c, vm_list_t *l, const char *prompt, cvx_media_done_fn done)
{
    vm_add(l, prompt);
    c->collected = done;
    vm_play(c, l, VM_ANY_DIGIT, prompt_done);
}

static void pin_collected(cvx_media_t *m, const cvx_media_result_t *res, void *arg);
static void mailbox_collected(cvx_media_t *m, const cvx_media_result_t *res, void *arg);

static void ask_pin(vm_call_t *c, vm_list_t *before)
{
    vm_list_t l = {0};
    collect(c, before ? before : &l, "password", pin_collected);
}

static void ask_mailbox(vm_call_t *c, vm_list_t *before)
{
    vm_list_t l = {0};
    c->mailbox[0] = '\0';
    collect(c, before ? before : &l, "login", mailbox_collected);
}

static void login_failed(vm_call_t *c)
{
    if (++c->pin_tries >= MAX_TRIES) {
        lctx(c, CVX_LOG_NOTICE, "login failed three times, call ended", 0);
        say_then_hangup(c, "incorrect", NULL);
        return;
    }
    vm_list_t l = {0};
    vm_add(&l, "incorrect");
    if (c->own_phone)
        ask_pin(c, &l);
    else
        ask_mailbox(c, &l);
}

static void on_messages(void *arg, int status, const cvx_message_t *msgs, size_t n);

static void on_pin(void *arg, int status, const cvx_pin_result_t *r)
{
    vm_call_t *c = arg;
    c->pending--;
    if (c->hung_up) {
        vm_call_maybe_free(c);
        return;
    }
    if (status == CVX_ENOTFOUND || (status == 0 && r->verdict == CVX_PIN_WRONG)) {
        lctx(c, CVX_LOG_NOTICE, "wrong PIN or unknown mailbox", 0);
        login_failed(c);
        return;
    }
    if (status != 0) {
        lctx(c, CVX_LOG_WARN, "PIN check failed", status);
        store_failed(c, status);
        return;
    }
    if (r->verdict == CVX_PIN_LOCKED) {
        lctx(c, CVX_LOG_NOTICE, "mailbox locked after too many wrong PINs", 0);
        say_then_hangup(c, "locked", NULL);
        return;
    }
    if (r->verdict == CVX_PIN_UNSET) {
        say_then_hangup(c, "pin-unset", NULL);
        return;
    }
    lctx(c, CVX_LOG_INFO, "subscriber logged in", 0);
    cvx_cdr_set_mailbox(c->chan, c->mailbox);
    cvx_cdr_set_outcome(c->chan, CVX_CDR_LOGIN);
    cvx_store_t *st = cvx_store_default();
    int rc =
        st ? cvx_store_message_list(st, c->mailbox, CVX_FOLDER_ANY, on_messages, c) : CVX_EUNAVAIL;
    if (rc != 0) {
        store_failed(c, rc);
        return;
    }
    c->pending++;
}

static void pin_collected(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    vm_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return;
    if (res->digits[0] == '\0') {
        login_failed(c);
        return;
    }
    cvx_store_t *st = cvx_store_default();
    int rc = st ? cvx_store_pin_check(st, c->mailbox, res->digits, on_pin, c) : CVX_EUNAVAIL;
    if (rc == CVX_EINVAL) { /* not a well-formed PIN or mailbox: simply wrong */
        login_failed(c);
        return;
    }
    if (rc != 0) {
        lctx(c, CVX_LOG_WARN, "PIN check failed", rc);
        store_failed(c, rc);
        return;
    }
    c->pending++;
}

static void mailbox_collected(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    vm_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return;
    if (res->digits[0] == '\0' || !cvx_store_valid_number(res->digits) ||
        strlen(res->digits) >= sizeof(c->mailbox)) {
        login_failed(c);
        return;
    }
    memcpy(c->mailbox, res->digits, strlen(res->digits) + 1);
    ask_pin(c, NULL);
}

static void on_own_mailbox(void *arg, int status, const cvx_mailbox_t *mb)
{
    (void)mb;
    vm_call_t *c = arg;
    c->pending--;
    if (c->hung_up) {
        vm_call_maybe_free(c);
        return;
    }
    if (status == 0) {
        c->own_phone = 1;
        ask_pin(c, NULL);
    } else if (status == CVX_ENOTFOUND) {
        ask_mailbox(c, NULL);
    } else {
        store_failed(c, status);
    }
}

void vm_login_start(vm_call_t *c, const char *mailbox)
{
    c->pin_tries = 0;
    c->audio_msg = (size_t)-1; /* c->audio may hold the greeting: no message heard yet */
    if (mailbox[0] != '\0') {
        /* '*' during this mailbox's greeting: the subscriber's own mailbox. */
        c->own_phone = 1;
        ask_pin(c, NULL);
        return;
    }
    const char *calling = cvx_chan_info(c->chan)->calling;
    cvx_store_t *st = cvx_store_default();
    if (st == NULL || !cvx_store_reachable(st)) {
        store_failed(c, CVX_EUNAVAIL);
        return;
    }
    if (!cvx_store_valid_number(calling) || strlen(calling) >= sizeof(c->mailbox)) {
        ask_mailbox(c, NULL);
        return;
    }
    memcpy(c->mailbox, calling, strlen(calling) + 1);
    if (cvx_store_mailbox_get(st, calling, on_own_mailbox, c) != 0) {
        ask_mailbox(c, NULL);
        return;
    }
    c->pending++;
}

/* --- messages ---------------------------------------------------------------------------- */

/* Order: urgent new, new, saved; each oldest first (the store lists oldest first). */
static int rank(const cvx_message_t *m)
{
    if (m->folder == CVX_FOLDER_NEW)
        return (m->flags & CVX_MSG_URGENT) ? 0 : 1;
    return 2;
}

static void counts_done(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    vm_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return;
    play_message(c, 0);
}

static void on_messages(void *arg, int status, const cvx_message_t *msgs, size_t n)
{
    vm_call_t *c = arg;
    c->pending--;
    if (c->hung_up) {
        vm_call_maybe_free(c);
        return;
    }
    if (status != 0) {
        store_failed(c, status);
        return;
    }
    free(c->msgs);
    c->msgs = calloc(n ? n : 1, sizeof(*c->msgs));
    if (c->msgs == NULL) {
        vm_hangup(c);
        return;
    }
    c->nmsgs = 0;
    unsigned nnew = 0, nold = 0;
    for (int r = 0; r < 3; r++)
        for (size_t i = 0; i < n; i++)
            if (msgs[i].folder != CVX_FOLDER_DELETED && rank(&msgs[i]) == r)
                c->msgs[c->nmsgs++] = msgs[i];
    for (size_t i = 0; i < c->nmsgs; i++) {
        if (c->msgs[i].folder == CVX_FOLDER_NEW)
            nnew++;
        else
            nold++;
    }
    c->cur = 0;
    vm_list_t l = {0};
    vm_add(&l, "youhave");
    if (nnew == 0 && nold == 0) {
        vm_add(&l, "no");
        vm_add(&l, "messages");
        vm_options_start(c, &l);
        return;
    }
    if (nnew > 0) {
        vm_say_number(&l, nnew);
        vm_add(&l, "new");
        vm_add(&l, nnew == 1 ? "message" : "messages");
    }
    if (nold > 0) {
        if (nnew > 0)
            vm_add(&l, "and");
        vm_say_number(&l, nold);
        vm_add(&l, "old");
        vm_add(&l, nold == 1 ? "message" : "messages");
    }
    vm_play(c, &l, VM_ANY_DIGIT, counts_done);
}

static void menu_digit(vm_call_t *c, char d);

static void menu_collected(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    vm_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return;
    if (res->digits[0] == '\0') {
        if (++c->attempts >= 3) {
            say_then_hangup(c, NULL, NULL);
            return;
        }
        message_menu(c);
        return;
    }
    c->attempts = 0;
    menu_digit(c, res->digits[0]);
}

static void menu_played(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    vm_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return;
    vm_collect_key(c, 6000, menu_collected);
}

static void message_menu(vm_call_t *c)
{
    vm_back_to_menu(c, NULL);
}

void vm_back_to_menu(vm_call_t *c, vm_list_t *before)
{
    vm_list_t l = {0};
    if (before == NULL)
        before = &l;
    vm_say_menu(before, VM_MENU_MESSAGE);
    vm_play(c, before, VM_ANY_DIGIT, menu_played);
}

static void after_message(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    vm_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return;
    if (res->end == CVX_MEDIA_DIGIT) {
        /* A key pressed during the message acts at once. */
        cvx_media_flush_digits(c->media);
        menu_digit(c, res->digit);
        return;
    }
    message_menu(c);
}

static void message_played(cvx_media_t *m, const cvx_media_result_t *res, void *arg);

/* Plays the current message's audio from sample pos on. */
static void play_from(vm_call_t *c, size_t pos)
{
    size_t n = cvx_audio_samples(c->audio);
    if (pos >= n) {
        message_menu(c);
        return;
    }
    cvx_audio_t *part = pos == 0 ? cvx_audio_ref(c->audio)
                                 : cvx_audio_from_samples(cvx_audio_data(c->audio) + pos, n - pos,
                                                          cvx_audio_rate(c->audio));
    if (part == NULL) {
        vm_hangup(c);
        return;
    }
    c->play_pos = pos;
    vm_list_t l = {0};
    vm_add_audio(&l, part);
    vm_play(c, &l, VM_ANY_DIGIT, message_played);
    cvx_audio_unref(part); /* the media core holds its own reference while it plays */
}

static void resume(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    vm_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return;
    cvx_media_flush_digits(c->media);
    play_from(c, c->play_pos);
}

/* Keys while the message itself plays: * back 5 s, # on 5 s, 2 pause (any key resumes);
 * the others act as in the menu. */
static void message_played(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    vm_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return;
    if (res->end != CVX_MEDIA_DIGIT) {
        message_menu(c);
        return;
    }
    size_t at = c->play_pos + (size_t)res->samples;
    size_t skip = 5 * 8000;
    switch (vm_key_action(VM_MENU_PLAYBACK, res->digit)) {
    case VM_K_REWIND:
        cvx_media_flush_digits(c->media);
        play_from(c, at > skip ? at - skip : 0);
        break;
    case VM_K_FFWD:
        cvx_media_flush_digits(c->media);
        play_from(c, at + skip);
        break;
    case VM_K_PAUSE:
        cvx_media_flush_digits(c->media);
        c->play_pos = at;
        vm_collect_key(c, 60000, resume);
        break;
    default:
        after_message(m, res, arg);
        break;
    }
}

static void message_fetched(vm_call_t *c, int status, cvx_audio_t *a)
{
    vm_list_t l = {0};
    if (status != 0) {
        cvx_log_ctx_t ctx = vm_ctx(c, "playing a message");
        cvx_log_ctx(CVX_LOG_WARN, &ctx, "voicemail: message %s cannot be played: %s",
                    c->msgs[c->cur].id, cvx_strerror(status));
        vm_add(&l, "sorry");
        vm_play(c, &l, VM_ANY_DIGIT, after_message);
        return;
    }
    if (c->audio)
        cvx_audio_unref(c->audio);
    c->audio = a;
    c->audio_msg = c->cur;
    play_from(c, 0);
}

static void envelope(vm_call_t *c, vm_list_t *l)
{
    const cvx_message_t *msg = &c->msgs[c->cur];
    vm_add(l, c->cur == 0 ? "first" : "next");
    if (msg->flags & CVX_MSG_URGENT)
        vm_add(l, "urgent");
    vm_add(l, "message");
    vm_add(l, "received");
    vm_say_datetime(l, msg->received_ms, vm_now_ms(), c->mb.timezone);
    if (msg->caller_number[0]) {
        vm_add(l, "from-phonenumber");
        vm_say_digits(l, msg->caller_number);
    } else {
        vm_add(l, "unknown-caller");
    }
    vm_add(l, "duration");
    vm_say_duration(l, msg->duration_ms);
}

static void envelope_done(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    vm_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return;
    if (res->end == CVX_MEDIA_DIGIT) {
        cvx_media_flush_digits(c->media);
        menu_digit(c, res->digit);
        return;
    }
    cvx_audio_ref_t ref = {0};
    memcpy(ref.id, c->msgs[c->cur].id, sizeof(ref.id));
    int rc = vm_fetch(c, &ref, message_fetched);
    if (rc != 0)
        message_fetched(c, rc, NULL);
}

static void play_message(vm_call_t *c, int envelope_only)
{
    vm_list_t l = {0};
    envelope(c, &l);
    vm_play(c, &l, VM_ANY_DIGIT, envelope_only ? after_message : envelope_done);
}

static void moved(void *arg, int status)
{
    vm_call_t *c = arg;
    c->pending--;
    if (c->hung_up) {
        vm_call_maybe_free(c);
        return;
    }
    vm_list_t l = {0};
    if (status != 0) {
        vm_add(&l, "sorry");
    } else {
        vm_add(&l, c->said);
    }
    vm_play(c, &l, VM_ANY_DIGIT, after_message);
}

/* Moves the current message to folder f; said is what the subscriber hears once done. */
static void move_to(vm_call_t *c, cvx_folder_t f, const char *said)
{
    c->said = said;
    cvx_store_t *st = cvx_store_default();
    int rc = st ? cvx_store_message_move(st, c->msgs[c->cur].id, f, moved, c) : CVX_EUNAVAIL;
    if (rc != 0) {
        store_failed(c, rc);
        return;
    }
    c->msgs[c->cur].folder = (uint8_t)f;
    c->pending++;
}

void vm_messages_again(vm_call_t *c)
{
    cvx_store_t *st = cvx_store_default();
    int rc =
        st ? cvx_store_message_list(st, c->mailbox, CVX_FOLDER_ANY, on_messages, c) : CVX_EUNAVAIL;
    if (rc != 0) {
        store_failed(c, rc);
        return;
    }
    c->pending++;
}

static void menu_digit(vm_call_t *c, char d)
{
    vm_list_t l = {0};
    switch (vm_key_action(VM_MENU_MESSAGE, d)) {
    case VM_K_REPLAY:
        envelope_done(c->media, &(cvx_media_result_t){.end = CVX_MEDIA_DONE}, c);
        break;
    case VM_K_ENVELOPE:
        play_message(c, 1);
        break;
    case VM_K_SAVE:
        move_to(c, CVX_FOLDER_SAVED, "saved");
        break;
    case VM_K_DELETE:
        move_to(c, CVX_FOLDER_DELETED, "deleted");
        break;
    case VM_K_UNDELETE:
        /* Back to saved: the subscriber has heard it. */
        if (c->msgs[c->cur].folder == CVX_FOLDER_DELETED)
            move_to(c, CVX_FOLDER_SAVED, "undeleted");
        else
            message_menu(c);
        break;
    case VM_K_PREVIOUS:
        if (c->cur == 0) {
            vm_add(&l, "first");
            vm_play(c, &l, VM_ANY_DIGIT, after_message);
        } else {
            c->cur--;
            play_message(c, 0);
        }
        break;
    case VM_K_NEXT:
        if (c->cur + 1 >= c->nmsgs) {
            vm_add(&l, "nomore");
            vm_play(c, &l, VM_ANY_DIGIT, after_message);
        } else {
            c->cur++;
            play_message(c, 0);
        }
        break;
    case VM_K_FORWARD:
        vm_forward_start(c);
        break;
    case VM_K_MORE:
        vm_reply_menu(c);
        break;
    case VM_K_OPTIONS:
        vm_options_start(c, NULL);
        break;
    case VM_K_END:
        say_then_hangup(c, NULL, NULL);
        break;
    default:
        vm_add(&l, "invalid");
        vm_play(c, &l, VM_ANY_DIGIT, after_message);
        break;
    }
}
