/*
 * One attendant call: the menu, dial by extension, dial by name, transfers, the hand-over
 * to voicemail, and invalid or missing choices.
 *
 * A menu plays its greeting (any key barges in), then waits [attendant] timeout for one key.
 * A mapped key runs its action; another digit starts an extension (when the menu allows it),
 * checked against the store's directory; anything else is invalid.  An invalid choice, a
 * timeout, an unknown extension or a name without a match counts as a failure: after
 * [attendant] retries failures in a row the caller goes to the operator (or hears goodbye
 * when there is none); before that, the menu plays again after "invalid" / "please try
 * again".
 *
 * A call's life: the attendant answers and keeps a reference to the channel until the call
 * has hung up (or was handed to voicemail) and every store request it started has answered.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "att.h"
#include "att_store.h"
#include "cvx/app.h"
#include "cvx/cdr.h"
#include "cvx/chan.h"
#include "cvx/error.h"
#include "cvx/log.h"
#include "cvx/media.h"
#include "cvx/prompts.h"

#define MAX_MATCHES 8

typedef struct att_call {
    cvx_chan_t *chan;
    cvx_media_t *media;
    int hung_up;
    int gone; /* handed to voicemail: the channel is no longer ours */
    unsigned pending;
    int menu;
    int failures;
    char first; /* the first digit of an extension */
    char dest[CVX_MEDIA_DIGITS_MAX + 2];
    int to_operator;
    cvx_dir_entry_t matches[MAX_MATCHES];
    size_t nmatches;
    int by_first;                               /* the directory searches first names */
    char name_digits[CVX_MEDIA_DIGITS_MAX + 1]; /* what the caller dialed (first names) */
    /* what to collect once the prompts playing have ended (play_then_collect) */
    unsigned want_max;
    long long want_first_ms;
    const char *want_term;
    cvx_media_done_fn want_done;
} att_call_t;

void att__event(cvx_chan_t *chan, const cvx_event_t *ev, void *arg);

static void run_menu(att_call_t *c, cvx_playlist_t *before);
static void fail(att_call_t *c, const char *prompt);
static void start_directory(att_call_t *c);
static void got_matches(att_call_t *c, size_t n);

static void lctx(att_call_t *c, cvx_log_level_t level, const char *doing, const char *fmt,
                 const char *arg)
{
    cvx_log_ctx_t ctx = cvx_chan_log_ctx(c->chan, doing);
    cvx_log_ctx(level, &ctx, fmt, arg);
}

static void maybe_free(att_call_t *c)
{
    if ((!c->hung_up && !c->gone) || c->pending > 0)
        return;
    cvx_chan_unref(c->chan);
    free(c);
}

static void hangup(att_call_t *c)
{
    if (!c->hung_up && !c->gone)
        cvx_chan_hangup(c->chan, CVX_CAUSE_NORMAL);
}

static void add(cvx_playlist_t *l, const char *name)
{
    cvx_playlist_add(l, att_prompts, name);
}

static void say_digits(cvx_playlist_t *l, const char *digits)
{
    for (const char *p = digits; *p; p++) {
        char name[16];
        if (*p >= '0' && *p <= '9') {
            snprintf(name, sizeof(name), "digit-%c", *p);
            add(l, name);
        }
    }
}

static void play(att_call_t *c, cvx_playlist_t *l, const char *barge, cvx_media_done_fn done)
{
    int rc = c->media ? cvx_media_play(c->media, l->a, l->n, barge, done, c) : CVX_ESTATE;
    if (rc != 0) {
        lctx(c, CVX_LOG_ERROR, "playing prompts", "attendant: cannot play: %s", cvx_strerror(rc));
        hangup(c);
    }
}

static void hangup_after(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    (void)res;
    hangup(arg);
}

static void goodbye(att_call_t *c, const char *first)
{
    cvx_playlist_t l = {0};
    if (first)
        add(&l, first);
    add(&l, "goodbye");
    add(&l, "tail-silence");
    play(c, &l, NULL, hangup_after);
}

static void collect(att_call_t *c, unsigned max, long long first_ms, const char *term,
                    cvx_media_done_fn done)
{
    cvx_collect_opts_t co = {0};
    co.max_digits = max;
    co.first_timeout_ms = first_ms;
    co.inter_digit_ms = att.a.inter_digit_ms;
    co.terminators = term;
    if (cvx_media_collect(c->media, &co, done, c) != 0)
        hangup(c);
}

static void then_collect(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    att_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return;
    if (res->end == CVX_MEDIA_ERROR) {
        hangup(c);
        return;
    }
    collect(c, c->want_max, c->want_first_ms, c->want_term, c->want_done);
}

/* Plays l (any key barges in and is kept for the collection), then collects digits. */
static void play_then_collect(att_call_t *c, cvx_playlist_t *l, unsigned max, long long first_ms,
                              const char *term, cvx_media_done_fn done)
{
    c->want_max = max;
    c->want_first_ms = first_ms;
    c->want_term = term;
    c->want_done = done;
    play(c, l, ATT_KEYS, then_collect);
}

/* --- transfers ------------------------------------------------------------------------------ */

static void after_hold_prompt(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    att_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return;
    cvx_cdr_set_transfer(c->chan, c->dest);
    int rc = cvx_chan_transfer(c->chan, c->dest, 0);
    if (rc != 0) {
        lctx(c, CVX_LOG_WARN, "transferring", "attendant: blind transfer failed: %s",
             cvx_strerror(rc));
        cvx_cdr_set_outcome(c->chan, CVX_CDR_TRANSFER_FAILED);
        goodbye(c, "att-transfer-failed");
    }
}

/* "Please hold while I try that extension", then a blind transfer to dest. */
static void transfer(att_call_t *c, const char *dest, int to_operator)
{
    if (dest != c->dest)
        snprintf(c->dest, sizeof(c->dest), "%s", dest);
    c->to_operator = to_operator;
    lctx(c, CVX_LOG_INFO, "transferring", "attendant: transferring to %s", dest);
    cvx_playlist_t l = {0};
    add(&l, "transfer");
    play(c, &l, NULL, after_hold_prompt);
}

static void operator(att_call_t *c, const char *first)
{
    if (att.a.operator_number[0] == '\0') {
        lctx(c, CVX_LOG_INFO, "going to the operator", "attendant: %s",
             "no operator is configured; goodbye");
        cvx_cdr_set_outcome(c->chan, CVX_CDR_HANGUP);
        goodbye(c, "att-no-operator");
        return;
    }
    if (first) {
        /* Say why first ("invalid"), then the usual transfer prompt. */
        snprintf(c->dest, sizeof(c->dest), "%s", att.a.operator_number);
        c->to_operator = 1;
        cvx_playlist_t l = {0};
        add(&l, first);
        add(&l, "transfer");
        lctx(c, CVX_LOG_INFO, "going to the operator", "attendant: transferring to %s",
             att.a.operator_number);
        play(c, &l, NULL, after_hold_prompt);
        return;
    }
    transfer(c, att.a.operator_number, 1);
}

/* The driver's answer to the REFER (or its failure). */
static void transfer_result(att_call_t *c, int ok, int code)
{
    char codes[16];
    snprintf(codes, sizeof(codes), "%d", code);
    lctx(c, ok ? CVX_LOG_INFO : CVX_LOG_NOTICE, "transferring",
         ok ? "attendant: transfer done (%s)" : "attendant: transfer failed (%s)", codes);
    if (ok) {
        cvx_cdr_set_outcome(c->chan, c->to_operator ? CVX_CDR_OPERATOR : CVX_CDR_TRANSFER);
        hangup(c);
        return;
    }
    cvx_cdr_set_outcome(c->chan, CVX_CDR_TRANSFER_FAILED);
    goodbye(c, "att-transfer-failed");
}

/* --- leaving a message: the call goes to voicemail ------------------------------------------ */

static void to_voicemail(att_call_t *c, const char *mailbox)
{
    lctx(c, CVX_LOG_INFO, "handing the call to voicemail", "attendant: message for mailbox %s",
         mailbox);
    /* Voicemail sees the call as forwarded from the mailbox to its pilot, as a PBX would
     * present it. */
    cvx_call_info_t *info = cvx_chan_info_mut(c->chan);
    cvx_call_info_t saved = *info;
    snprintf(info->called, sizeof(info->called), "%s", att.a.voicemail);
    snprintf(info->original_called, sizeof(info->original_called), "%s", mailbox);
    if (info->redirect == CVX_REDIRECT_NONE)
        info->redirect = CVX_REDIRECT_UNKNOWN;
    info->redirect_count++;
    cvx_cdr_set_outcome(c->chan, CVX_CDR_VOICEMAIL);
    cvx_cdr_set_mailbox(c->chan, mailbox);
    cvx_media_destroy(c->media);
    c->media = NULL;
    int rc = cvx_app_handoff(c->chan, "voicemail");
    if (rc == 0) {
        c->gone = 1;
        maybe_free(c);
        return;
    }
    lctx(c, CVX_LOG_WARN, "handing the call to voicemail", "attendant: voicemail refused: %s",
         cvx_strerror(rc));
    *info = saved;
    /* Take the call back (cvx_app_handoff left it without a handler). */
    if (cvx_media_create(c->chan, att__event, c, &c->media) != 0) {
        cvx_chan_set_handler(c->chan, att__event, c);
        hangup(c);
        return;
    }
    cvx_cdr_set_outcome(c->chan, NULL);
    goodbye(c, "sorry");
}

/* --- dial by extension ---------------------------------------------------------------------- */

static void on_extension(void *arg, int status, const cvx_mailbox_t *mb)
{
    (void)mb;
    att_call_t *c = arg;
    c->pending--;
    if (c->hung_up) {
        maybe_free(c);
        return;
    }
    if (status == CVX_ENOTFOUND) {
        lctx(c, CVX_LOG_INFO, "dialing by extension",
             "attendant: extension %s is not in the "
             "directory",
             c->dest);
        fail(c, "att-no-extension");
        return;
    }
    if (status != 0)
        /* The directory cannot be reached (a call server without its system server): the
         * PBX knows its extensions, so the caller is not held back. */
        lctx(c, CVX_LOG_WARN, "dialing by extension",
             "attendant: directory unavailable (%s); transferring without the check",
             cvx_strerror(status));
    transfer(c, c->dest, 0);
}

static void on_extension_digits(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    att_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return;
    if (res->end == CVX_MEDIA_ERROR) {
        hangup(c);
        return;
    }
    snprintf(c->dest, sizeof(c->dest), "%c%s", c->first, res->digits);
    cvx_store_t *st = cvx_store_default();
    int rc = st ? cvx_store_mailbox_get(st, c->dest, on_extension, c) : CVX_EUNAVAIL;
    if (rc == 0) {
        c->pending++;
        return;
    }
    if (rc == CVX_EINVAL) {
        fail(c, "att-no-extension");
        return;
    }
    c->pending++;
    on_extension(c, rc, NULL);
}

static void dial_extension(att_call_t *c, char first)
{
    c->first = first;
    if (att.a.extension_max <= 1) {
        cvx_media_result_t res = {.end = CVX_MEDIA_MAXLEN};
        on_extension_digits(c->media, &res, c);
        return;
    }
    collect(c, (unsigned)att.a.extension_max - 1, att.a.inter_digit_ms, "#", on_extension_digits);
}

/* --- dial by name --------------------------------------------------------------------------- */

static void on_match_choice(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    att_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return;
    char k = res->digits[0];
    if (res->end == CVX_MEDIA_TIMEOUT || k == '\0') {
        fail(c, NULL);
        return;
    }
    if (k == '*') {
        start_directory(c);
        return;
    }
    if (k < '1' || (size_t)(k - '0') > c->nmatches) {
        fail(c, "invalid");
        return;
    }
    c->failures = 0;
    transfer(c, c->matches[k - '1'].number, 0);
}

static void read_matches(att_call_t *c)
{
    /* "For extension 1 0 0 1, press 1.  For extension 1 0 0 2, press 2." */
    cvx_playlist_t l = {0};
    for (size_t i = 0; i < c->nmatches; i++) {
        char d[2] = {(char)('1' + i), '\0'};
        add(&l, "for");
        add(&l, "extension");
        say_digits(&l, c->matches[i].number);
        add(&l, "press");
        say_digits(&l, d);
    }
    play_then_collect(c, &l, 1, att.a.timeout_ms, NULL, on_match_choice);
}

static void on_dir(void *arg, int status, const cvx_dir_entry_t *e, size_t n)
{
    att_call_t *c = arg;
    c->pending--;
    if (c->hung_up) {
        maybe_free(c);
        return;
    }
    if (status != 0) {
        lctx(c, CVX_LOG_WARN, "searching the directory", "attendant: directory search failed: %s",
             cvx_strerror(status));
        operator(c, "sorry");
        return;
    }
    lctx(c, CVX_LOG_INFO, "searching the directory", "attendant: %s",
         n == 0   ? "no match"
         : n == 1 ? "one match"
                  : "several matches");
    c->nmatches = n < MAX_MATCHES ? n : MAX_MATCHES;
    if (c->nmatches)
        memcpy(c->matches, e, c->nmatches * sizeof(*e));
    got_matches(c, c->nmatches);
}

/* The matches are in c->matches: none, one (transferred at once) or several (read out). */
static void got_matches(att_call_t *c, size_t n)
{
    if (n == 0) {
        fail(c, "dir-nomatch");
        return;
    }
    c->failures = 0;
    if (n == 1) {
        transfer(c, c->matches[0].number, 0);
        return;
    }
    read_matches(c);
}

/*
 * First names: the store's directory index is keypad digits of the last name then the first
 * name, so a first-name search reads the mailboxes a page at a time (short read transactions
 * on the loop, one page per callback) and keeps the listed ones whose first name's keypad
 * digits start with what the caller dialed.  Fine for a site's directory; a second index in
 * the store would serve very large ones better.
 */
#define SCAN_PAGE 256

static void on_scan(void *arg, int status, const cvx_mailbox_t *mbs, size_t n)
{
    att_call_t *c = arg;
    c->pending--;
    if (c->hung_up) {
        maybe_free(c);
        return;
    }
    if (status != 0) {
        lctx(c, CVX_LOG_WARN, "searching the directory", "attendant: directory search failed: %s",
             cvx_strerror(status));
        operator(c, "sorry");
        return;
    }
    size_t dn = strlen(c->name_digits);
    for (size_t i = 0; i < n && c->nmatches < MAX_MATCHES; i++) {
        char keys[2 * CVX_STORE_NAME_MAX];
        cvx_store_keypad(mbs[i].first_name, keys);
        if (!mbs[i].listed || strncmp(keys, c->name_digits, dn) != 0)
            continue;
        cvx_dir_entry_t *e = &c->matches[c->nmatches++];
        memcpy(e->number, mbs[i].number, sizeof(e->number));
        memcpy(e->first_name, mbs[i].first_name, sizeof(e->first_name));
        memcpy(e->last_name, mbs[i].last_name, sizeof(e->last_name));
    }
    if (n == SCAN_PAGE && c->nmatches < MAX_MATCHES) {
        cvx_store_t *st = cvx_store_default();
        int rc = st ? cvx_store_mailbox_list(st, mbs[n - 1].number, SCAN_PAGE, on_scan, c)
                    : CVX_EUNAVAIL;
        c->pending++;
        if (rc != 0)
            on_scan(c, rc, NULL, 0);
        return;
    }
    got_matches(c, c->nmatches);
}

static void on_name_digits(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    att_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return;
    if (res->digits[0] == '\0' || strspn(res->digits, "0123456789") != strlen(res->digits)) {
        fail(c, res->digits[0] ? "invalid" : NULL);
        return;
    }
    cvx_store_t *st = cvx_store_default();
    c->nmatches = 0;
    if (c->by_first) {
        snprintf(c->name_digits, sizeof(c->name_digits), "%s", res->digits);
        int rc = st ? cvx_store_mailbox_list(st, "", SCAN_PAGE, on_scan, c) : CVX_EUNAVAIL;
        c->pending++;
        if (rc != 0)
            on_scan(c, rc, NULL, 0);
        return;
    }
    int rc = st ? cvx_store_dir_search(st, res->digits, MAX_MATCHES, on_dir, c) : CVX_EUNAVAIL;
    c->pending++;
    if (rc != 0)
        on_dir(c, rc, NULL, 0);
}

static void start_directory(att_call_t *c)
{
    cvx_playlist_t l = {0};
    add(&l, c->by_first ? "dir-intro-fn" : "dir-intro");
    cvx_media_flush_digits(c->media);
    play_then_collect(c, &l, (unsigned)att.a.name_digits, att.a.timeout_ms, "#", on_name_digits);
}

/* --- menus ---------------------------------------------------------------------------------- */

/* A failed choice: again after prompt (may be NULL), or the operator after too many. */
static void fail(att_call_t *c, const char *prompt)
{
    if (++c->failures >= att.a.retries) {
        lctx(c, CVX_LOG_INFO, "taking a choice", "attendant: %s",
             "too many invalid or missing choices; going to the operator");
        c->failures = 0;
        operator(c, prompt ? prompt : "please-try-again");
        return;
    }
    cvx_playlist_t l = {0};
    add(&l, prompt ? prompt : "please-try-again");
    cvx_media_flush_digits(c->media);
    run_menu(c, &l);
}

static void do_action(att_call_t *c, const att_action_t *a)
{
    switch (a->kind) {
    case ATT_MENU:
        c->menu = a->menu;
        c->failures = 0;
        run_menu(c, NULL);
        break;
    case ATT_TRANSFER:
        c->failures = 0;
        transfer(c, a->arg, 0);
        break;
    case ATT_MESSAGE:
        to_voicemail(c, a->arg);
        break;
    case ATT_DIRECTORY:
        c->by_first = strcmp(a->arg, "first") == 0;
        start_directory(c);
        break;
    case ATT_OPERATOR:
        operator(c, NULL);
        break;
    case ATT_REPEAT:
        run_menu(c, NULL);
        break;
    case ATT_HANGUP:
        cvx_cdr_set_outcome(c->chan, CVX_CDR_HANGUP);
        goodbye(c, NULL);
        break;
    case ATT_NONE:
        fail(c, "invalid");
        break;
    }
}

static void on_choice(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    att_call_t *c = arg;
    if (res->end == CVX_MEDIA_HANGUP || c->hung_up)
        return;
    if (res->end == CVX_MEDIA_ERROR) {
        hangup(c);
        return;
    }
    char k = res->digits[0];
    const char *p = k ? strchr(ATT_KEYS, k) : NULL;
    if (res->end == CVX_MEDIA_TIMEOUT || p == NULL) {
        fail(c, NULL);
        return;
    }
    const att_menu_t *menu = &att.menus[c->menu];
    const att_action_t *a = &menu->act[p - ATT_KEYS];
    if (a->kind == ATT_NONE && menu->c.dial_extension && isdigit((unsigned char)k)) {
        dial_extension(c, k);
        return;
    }
    do_action(c, a);
}

/* Plays before (may be NULL) and the menu's greeting, then waits for a key. */
static void run_menu(att_call_t *c, cvx_playlist_t *before)
{
    const att_menu_t *menu = &att.menus[c->menu];
    cvx_playlist_t l = {0};
    if (before)
        l = *before;
    if (menu->greeting_audio)
        cvx_playlist_add_audio(&l, menu->greeting_audio);
    else
        add(&l, menu->c.greeting);
    play_then_collect(c, &l, 1, att.a.timeout_ms, NULL, on_choice);
}

/* --- the call ------------------------------------------------------------------------------- */

void att__event(cvx_chan_t *chan, const cvx_event_t *ev, void *arg)
{
    att_call_t *c = arg;
    if (ev->type == CVX_EV_TRANSFER) {
        transfer_result(c, ev->u.transfer.ok, ev->u.transfer.code);
        return;
    }
    if (ev->type != CVX_EV_HANGUP)
        return;
    c->hung_up = 1;
    cvx_media_destroy(c->media);
    c->media = NULL;
    cvx_chan_set_handler(chan, NULL, NULL);
    maybe_free(c);
}

int att_call_start(cvx_chan_t *chan)
{
    att_call_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return CVX_ENOMEM;
    c->chan = chan;
    c->menu = att_current_menu();
    int rc = cvx_media_create(chan, att__event, c, &c->media);
    if (rc != 0) {
        free(c);
        return rc;
    }
    rc = cvx_chan_answer(chan);
    if (rc != 0) {
        cvx_media_destroy(c->media);
        cvx_chan_set_handler(chan, NULL, NULL);
        free(c);
        return rc;
    }
    cvx_chan_ref(chan);
    cvx_cdr_set_app(chan, "attendant");
    lctx(c, CVX_LOG_INFO, "answering", "attendant: menu %s", att.menus[c->menu].name);
    run_menu(c, NULL);
    return 0;
}
