/*
 * Mailbox options by phone: record the standard, busy, no-answer and temporary greetings and
 * the name, switch the temporary greeting off, change the PIN.
 *
 * Keys (the defaults of the key map, vm.h and vm_keys.c): 1 standard greeting, 2 busy, 3 no
 * answer, 4 temporary, 5 temporary greeting off, 6 name, 7 change the PIN, 8 the extended
 * absence greeting, 9 back to the messages, 0 goodbye.
 *
 * The temporary greeting asks first for how many days it plays (1-365, then #; # alone: no end
 * date); it then plays until that many days from now, which the subscriber hears once it is
 * saved ("plays until Friday, November 27 at 2 15 p m", in the mailbox's time zone).  The
 * extended absence greeting (8) has its own menu: 1 record it, after choosing whether callers
 * may leave messages while it plays (1 yes, 2 no), 2 turn it off.
 *
 * A greeting streams into the store as it is recorded (cvx_store_greeting_open) and replaces
 * the old one only when its commit is confirmed ("saved"); recordings shorter than
 * [voicemail] min_message are dropped.  A new PIN is entered twice and must be
 * pin_min_length digits or more, not trivial (one digit repeated, or a run up or down such as
 * 1234 or 9876), and not one of the last [store] pin_history PINs (the store checks that).
 */
#include <stdlib.h>
#include <string.h>

#include "cvx/error.h"
#include "cvx/log.h"
#include "vm.h"

static void options_menu(vm_call_t *c, vm_list_t *before);

static void octx(vm_call_t *c, cvx_log_level_t lv, const char *what, int err)
{
    cvx_log_ctx_t ctx = vm_ctx(c, "changing mailbox options");
    cvx_log_ctx(lv, &ctx, "voicemail: mailbox %s: %s%s%s", c->mailbox, what, err ? ": " : "",
                err ? cvx_strerror(err) : "");
}

int vm_pin_trivial(const char *pin)
{
    size_t n = strlen(pin);
    int same = 1, up = 1, down = 1;
    for (size_t i = 1; i < n; i++) {
        if (pin[i] != pin[0])
            same = 0;
        if (pin[i] != (char)('0' + (pin[i - 1] - '0' + 1) % 10))
            up = 0;
        if (pin[i] != (char)('0' + (pin[i - 1] - '0' + 9) % 10))
            down = 0;
    }
    return same || up || down;
}

/* --- greetings ------------------------------------------------------------------------------ */

static void greeting_committed(void *arg, int status, const cvx_deposit_result_t *r)
{
    (void)r;
    vm_call_t *c = arg;
    c->pending--;
    c->committing = 0;
    if (status == 0)
        octx(c, CVX_LOG_INFO,
             c->greeting_kind == CVX_GREETING_NAME ? "name recorded" : "greeting recorded", 0);
    else
        octx(c, CVX_LOG_WARN, "greeting not saved", status);
    if (c->hung_up) {
        vm_call_maybe_free(c);
        return;
    }
    vm_list_t l = {0};
    vm_add(&l, status == 0 ? "saved" : "not-saved");
    if (status == 0 && c->greeting_kind == CVX_GREETING_TEMPORARY && c->greeting_expires_ms) {
        vm_add(&l, "temp-until");
        vm_say_datetime(&l, c->greeting_expires_ms, vm_now_ms(), c->mb.timezone);
    }
    options_menu(c, &l);
}

static int greeting_sink(void *arg, const cvx_frame_t *f)
{
    vm_call_t *c = arg;
    if (f->codec != CVX_CODEC_L16 || f->rate != VM_RATE)
        return CVX_ENOTSUP;
    c->rec_n += f->samples;
    return f->len ? cvx_store_stream_append(c->stream, f->data, f->len) : 0;
}

static void greeting_recorded(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    vm_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return; /* vm_deposit_hangup drops or commits what is open: greetings are dropped */
    uint32_t ms = (uint32_t)(c->rec_n * 1000 / VM_RATE);
    cvx_store_stream_t *s = c->stream;
    c->stream = NULL;
    c->greeting_open = 0;
    if (res->end == CVX_MEDIA_ERROR || (long long)ms < vm_conf.min_message_ms) {
        cvx_store_stream_abort(s);
        vm_list_t l = {0};
        vm_add(&l, res->end == CVX_MEDIA_ERROR ? "not-saved" : "tooshort");
        options_menu(c, &l);
        return;
    }
    int rc = cvx_store_stream_commit(s, ms, greeting_committed, c);
    if (rc != 0) {
        c->pending++;
        greeting_committed(c, rc, NULL);
        return;
    }
    c->pending++;
    c->committing = 1;
}

static void record_greeting_now(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    vm_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return;
    cvx_store_t *st = cvx_store_default();
    int rc = st ? cvx_store_greeting_open(st, c->mailbox, (cvx_greeting_t)c->greeting_kind,
                                          CVX_CODEC_PCM16, VM_RATE, c->greeting_expires_ms,
                                          c->greeting_flags, &c->stream)
                : CVX_EUNAVAIL;
    if (rc != 0) {
        octx(c, CVX_LOG_WARN, "cannot record a greeting", rc);
        vm_list_t l = {0};
        vm_add(&l, "not-saved");
        options_menu(c, &l);
        return;
    }
    c->greeting_open = 1;
    c->rec_n = 0;
    cvx_media_flush_digits(c->media);
    cvx_record_opts_t ro = {0};
    ro.max_ms = 120000;
    ro.silence_ms = vm_conf.silence_ms;
    ro.term_digits = "#";
    ro.beep = 1;
    cvx_media_sink_t sink = {greeting_sink, c};
    rc = cvx_media_record(c->media, &ro, &sink, greeting_recorded, c);
    if (rc != 0) {
        cvx_store_stream_abort(c->stream);
        c->stream = NULL;
        vm_hangup(c);
    }
}

static void record_greeting(vm_call_t *c, cvx_greeting_t kind)
{
    c->greeting_kind = (int)kind;
    vm_list_t l = {0};
    vm_add(&l, "record-after-tone");
    vm_play(c, &l, NULL, record_greeting_now);
}

/* Digits ended by # after a prompt, to done. */
static void collect_number(cvx_media_t *m, const cvx_media_result_t *res, void *arg);

static void ask_number(vm_call_t *c, vm_list_t *l, const char *prompt, cvx_media_done_fn done)
{
    vm_add(l, prompt);
    c->collected = done;
    vm_play(c, l, VM_ANY_DIGIT, collect_number);
}

static void collect_number(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    vm_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return;
    cvx_collect_opts_t co = {0};
    co.max_digits = 8;
    co.first_timeout_ms = 6000;
    co.inter_digit_ms = 4000;
    co.terminators = "#";
    if (cvx_media_collect(c->media, &co, c->collected, c) != 0)
        vm_hangup(c);
}

/* The temporary greeting: how many days it plays, then the recording. */
static void days_collected(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    vm_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return;
    const char *d = res->digits;
    long days = 0;
    if (d[0] != '\0') {
        char *end;
        days = strspn(d, "0123456789") == strlen(d) ? strtol(d, &end, 10) : -1;
        if (days < 1 || days > 365) {
            vm_list_t l = {0};
            vm_add(&l, "invalid");
            ask_number(c, &l, "temp-days", days_collected);
            return;
        }
    }
    c->greeting_expires_ms = days ? vm_now_ms() + (uint64_t)days * 86400000u : 0;
    c->greeting_flags = 0;
    record_greeting(c, CVX_GREETING_TEMPORARY);
}

static void ext_removed(void *arg, int status)
{
    vm_call_t *c = arg;
    c->pending--;
    if (c->hung_up) {
        vm_call_maybe_free(c);
        return;
    }
    octx(c, status == 0 || status == CVX_ENOTFOUND ? CVX_LOG_INFO : CVX_LOG_WARN,
         "extended absence greeting off", status == CVX_ENOTFOUND ? 0 : status);
    vm_list_t l = {0};
    vm_add(&l, status == 0 || status == CVX_ENOTFOUND ? "extended-off" : "sorry");
    options_menu(c, &l);
}

static void ext_refuse_key(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    vm_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return;
    char k = res->digits[0];
    if (k != '1' && k != '2') {
        vm_list_t l = {0};
        vm_add(&l, "invalid");
        options_menu(c, &l);
        return;
    }
    c->greeting_expires_ms = 0;
    c->greeting_flags = k == '2' ? CVX_GREETING_REFUSE : 0;
    record_greeting(c, CVX_GREETING_EXTENDED);
}

static void ext_refuse_asked(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    vm_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return;
    vm_collect_key(c, 6000, ext_refuse_key);
}

static void ext_key(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    vm_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return;
    vm_list_t l = {0};
    cvx_store_t *st = cvx_store_default();
    int rc;
    switch (res->digits[0]) {
    case '1':
        cvx_media_flush_digits(c->media);
        vm_add(&l, "extended-refuse");
        vm_play(c, &l, VM_ANY_DIGIT, ext_refuse_asked);
        break;
    case '2':
        rc = st ? cvx_store_greeting_del(st, c->mailbox, CVX_GREETING_EXTENDED, ext_removed, c)
                : CVX_EUNAVAIL;
        c->pending++;
        if (rc != 0)
            ext_removed(c, rc);
        break;
    default:
        vm_add(&l, "invalid");
        options_menu(c, &l);
        break;
    }
}

static void ext_menu_played(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    vm_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return;
    vm_collect_key(c, 6000, ext_key);
}

static void temp_removed(void *arg, int status)
{
    vm_call_t *c = arg;
    c->pending--;
    if (c->hung_up) {
        vm_call_maybe_free(c);
        return;
    }
    vm_list_t l = {0};
    vm_add(&l, status == 0 || status == CVX_ENOTFOUND ? "tempremoved" : "sorry");
    options_menu(c, &l);
}

/* --- PIN ------------------------------------------------------------------------------------- */

static void pin_entered(cvx_media_t *m, const cvx_media_result_t *res, void *arg);

static void ask_new_pin(vm_call_t *c, vm_list_t *l, const char *prompt)
{
    vm_add(l, prompt);
    vm_play(c, l, VM_ANY_DIGIT, pin_entered);
}

static void pin_set(void *arg, int status)
{
    vm_call_t *c = arg;
    c->pending--;
    if (c->hung_up) {
        vm_call_maybe_free(c);
        return;
    }
    vm_list_t l = {0};
    if (status == CVX_EEXIST) {
        octx(c, CVX_LOG_INFO, "new PIN refused: used before", 0);
        c->new_pin[0] = '\0';
        vm_add(&l, "pin-reused");
        ask_new_pin(c, &l, "newpassword");
        return;
    }
    if (status != 0) {
        octx(c, CVX_LOG_WARN, "PIN not changed", status);
        vm_add(&l, "sorry");
    } else {
        octx(c, CVX_LOG_INFO, "PIN changed", 0);
        vm_add(&l, "passchanged");
    }
    options_menu(c, &l);
}

static void pin_collected2(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    vm_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return;
    vm_list_t l = {0};
    const char *pin = res->digits;
    if (c->new_pin[0] == '\0') {
        size_t n = strlen(pin);
        if (n < (size_t)vm_conf.pin_min_length || n > CVX_STORE_PIN_MAX || vm_pin_trivial(pin)) {
            octx(c, CVX_LOG_INFO, "new PIN refused: too short or trivial", 0);
            vm_add(&l, "pin-trivial");
            ask_new_pin(c, &l, "newpassword");
            return;
        }
        memcpy(c->new_pin, pin, n + 1);
        ask_new_pin(c, &l, "reenterpassword");
        return;
    }
    if (strcmp(pin, c->new_pin) != 0) {
        c->new_pin[0] = '\0';
        vm_add(&l, "mismatch");
        ask_new_pin(c, &l, "newpassword");
        return;
    }
    cvx_store_t *st = cvx_store_default();
    int rc = st ? cvx_store_pin_set(st, c->mailbox, c->new_pin, pin_set, c) : CVX_EUNAVAIL;
    c->new_pin[0] = '\0';
    if (rc != 0) {
        c->pending++;
        pin_set(c, rc);
        return;
    }
    c->pending++;
}

static void pin_entered(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
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
    if (cvx_media_collect(c->media, &co, pin_collected2, c) != 0)
        vm_hangup(c);
}

/* --- the menu ------------------------------------------------------------------------------ */

static void options_digit(vm_call_t *c, char d)
{
    vm_list_t l = {0};
    cvx_store_t *st = cvx_store_default();
    int rc;
    c->greeting_expires_ms = 0;
    c->greeting_flags = 0;
    switch (vm_key_action(VM_MENU_OPTIONS, d)) {
    case VM_K_STANDARD:
        record_greeting(c, CVX_GREETING_STANDARD);
        break;
    case VM_K_BUSY:
        record_greeting(c, CVX_GREETING_BUSY);
        break;
    case VM_K_NOANSWER:
        record_greeting(c, CVX_GREETING_NOANSWER);
        break;
    case VM_K_TEMPORARY:
        ask_number(c, &l, "temp-days", days_collected);
        break;
    case VM_K_TEMP_OFF:
        rc = st ? cvx_store_greeting_del(st, c->mailbox, CVX_GREETING_TEMPORARY, temp_removed, c)
                : CVX_EUNAVAIL;
        if (rc != 0) {
            c->pending++;
            temp_removed(c, rc);
        } else {
            c->pending++;
        }
        break;
    case VM_K_EXTENDED:
        vm_add(&l, "extended-menu");
        vm_play(c, &l, VM_ANY_DIGIT, ext_menu_played);
        break;
    case VM_K_NAME:
        record_greeting(c, CVX_GREETING_NAME);
        break;
    case VM_K_PIN:
        c->new_pin[0] = '\0';
        ask_new_pin(c, &l, "newpassword");
        break;
    case VM_K_MESSAGES:
        vm_messages_again(c);
        break;
    case VM_K_OPT_END:
        vm_add(&l, "goodbye");
        vm_play_and_hangup(c, &l);
        break;
    default:
        vm_add(&l, "invalid");
        options_menu(c, &l);
        break;
    }
}

static void options_collected(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    vm_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return;
    if (res->digits[0] == '\0') {
        if (++c->attempts >= 3) {
            vm_list_t l = {0};
            vm_add(&l, "goodbye");
            vm_play_and_hangup(c, &l);
            return;
        }
        options_menu(c, NULL);
        return;
    }
    c->attempts = 0;
    options_digit(c, res->digits[0]);
}

static void options_played(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    vm_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return;
    vm_collect_key(c, 6000, options_collected);
}

static void options_menu(vm_call_t *c, vm_list_t *before)
{
    vm_list_t l = {0};
    if (before == NULL)
        before = &l;
    vm_add(before, "options-intro");
    vm_say_menu(before, VM_MENU_OPTIONS);
    vm_play(c, before, VM_ANY_DIGIT, options_played);
}

void vm_options_start(vm_call_t *c, vm_list_t *before)
{
    c->attempts = 0;
    options_menu(c, before);
}
