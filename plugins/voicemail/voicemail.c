/*
 * The voicemail application: callers leave messages (vm_deposit.c), subscribers hear and
 * manage them (vm_login.c).  This file is the module: its configuration, how calls are
 * taken, a call's life and the helpers the flows share.
 *
 * Which calls it takes:
 *  - calls to a pilot number ([voicemail] pilot): a redirected call (the driver's redirect
 *    information names the original called number) deposits into that mailbox; a direct call
 *    is a subscriber calling in;
 *  - with "direct_prefix", calls whose dialed number starts with one of the prefixes deposit
 *    into the dialed number (or the redirecting number when there is one).
 * Everything else is declined, so other applications (echo, attendant) can take it.
 *
 * A call's life: the module answers, interposes the media core, and keeps a reference to the
 * channel until the call has hung up and every store request it started has completed (a
 * caller who hangs up while the message is being committed still gets it stored).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cvx/app.h"
#include "cvx/error.h"
#include "cvx/log.h"
#include "cvx/module.h"
#include "vm.h"

vm_conf_t vm_conf;

static const char *const unknown_choices[] = {"not-in-service", "operator", "attendant", NULL};

static const cvx_option_t vm_options[] = {
    {"pilot", CVX_OPT_LIST, offsetof(vm_conf_t, pilots), "", 0, 0, NULL, 0,
     "A voicemail pilot number (repeat for more): redirected calls to it deposit into the "
     "redirecting number's mailbox, direct calls reach the subscriber login."},
    {"direct_prefix", CVX_OPT_LIST, offsetof(vm_conf_t, dialed_mailbox), "", 0, 0, NULL, 0,
     "Calls whose dialed number starts with this prefix deposit into the dialed number's "
     "mailbox (repeat for more; * for any number)."},
    {"prompt_dir", CVX_OPT_STRING, offsetof(vm_conf_t, prompt_dir),
     "/usr/share/asterisk/sounds/en_US_f_Allison", 0, 0, NULL, 0,
     "The recorded English prompt set (Debian package asterisk-core-sounds-en-wav)."},
    {"generated_dir", CVX_OPT_STRING, offsetof(vm_conf_t, generated_dir), CVX_VM_GEN_DIR, 0, 0,
     NULL, 0, "Prompts that set lacks, generated at build time with espeak-ng and sox."},
    {"operator", CVX_OPT_STRING, offsetof(vm_conf_t, operator_number), "", 0, 0, NULL, 0,
     "Where 0 transfers a caller (blind transfer); empty: no operator."},
    {"attendant", CVX_OPT_STRING, offsetof(vm_conf_t, attendant_number), "", 0, 0, NULL, 0,
     "The auto attendant's number, for unknown_mailbox = attendant."},
    {"unknown_mailbox", CVX_OPT_ENUM, offsetof(vm_conf_t, unknown_mailbox), "not-in-service", 0, 0,
     unknown_choices, 0,
     "What a caller to a mailbox that does not exist gets: not-in-service (a prompt, then "
     "goodbye), operator or attendant (a blind transfer)."},
    {"max_message", CVX_OPT_DURATION, offsetof(vm_conf_t, max_message_ms), "3m", 1000, 3600000,
     NULL, 0, "Longest message, for mailboxes that do not set their own."},
    {"min_message", CVX_OPT_DURATION, offsetof(vm_conf_t, min_message_ms), "1s", 0, 60000, NULL, 0,
     "Shorter recordings are dropped (a caller who hangs up at the beep leaves nothing)."},
    {"silence", CVX_OPT_DURATION, offsetof(vm_conf_t, silence_ms), "5s", 0, 600000, NULL, 0,
     "A recording ends after this much silence; 0: never."},
    {"pin_min_length", CVX_OPT_INT, offsetof(vm_conf_t, pin_min_length), "4", CVX_STORE_PIN_MIN,
     CVX_STORE_PIN_MAX, NULL, 0,
     "Shortest PIN a subscriber may choose by phone (trivial PINs are refused too)."},
    {"timezone", CVX_OPT_STRING, offsetof(vm_conf_t, timezone), "", 0, 0, NULL, 0,
     "The site's time zone (\"Europe/Paris\") for mailboxes without their own; empty: the "
     "server's."},
#define VM_KEY_OPT(a, o, m, d, p, h)                                                               \
    {"key_" o,                                                                                     \
     CVX_OPT_STRING,                                                                               \
     offsetof(vm_conf_t, keys[VM_K_##a]),                                                          \
     d,                                                                                            \
     0,                                                                                            \
     0,                                                                                            \
     NULL,                                                                                         \
     0,                                                                                            \
     "Key map: the key (or keys, \"6#\") to " h "; two actions of one menu may not share a key."},
    VM_KEYS(VM_KEY_OPT)
#undef VM_KEY_OPT
        CVX_OPTIONS_END,
};

static const cvx_section_def_t vm_section = {"voicemail", 0, vm_options, sizeof(vm_conf_t),
                                             "The voicemail application."};
static const cvx_section_def_t *const vm_sections[] = {&vm_section, NULL};

/* --- helpers ------------------------------------------------------------------------------ */

uint64_t vm_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

cvx_log_ctx_t vm_ctx(vm_call_t *c, const char *doing)
{
    return cvx_chan_log_ctx(c->chan, doing);
}

void vm_call_maybe_free(vm_call_t *c)
{
    if (!c->hung_up || c->pending > 0)
        return;
    if (c->stream)
        cvx_store_stream_abort(c->stream);
    if (c->reader)
        cvx_store_audio_close(c->reader);
    if (c->audio)
        cvx_audio_unref(c->audio);
    free(c->fetch);
    free(c->rec);
    free(c->msgs);
    cvx_chan_unref(c->chan);
    free(c);
}

void vm_hangup(vm_call_t *c)
{
    if (!c->hung_up)
        cvx_chan_hangup(c->chan, CVX_CAUSE_NORMAL);
}

int vm_play(vm_call_t *c, vm_list_t *l, const char *barge, cvx_media_done_fn done)
{
    if (c->media == NULL)
        return CVX_ESTATE;
    int rc = cvx_media_play(c->media, l->a, l->n, barge, done, c);
    if (rc != 0) {
        cvx_log_ctx_t ctx = vm_ctx(c, "playing prompts");
        cvx_log_ctx(CVX_LOG_ERROR, &ctx, "voicemail: cannot play: %s", cvx_strerror(rc));
        vm_hangup(c);
    }
    return rc;
}

static void hangup_after(cvx_media_t *m, const cvx_media_result_t *res, void *arg)
{
    (void)m;
    (void)res;
    vm_hangup(arg);
}

void vm_collect_key(vm_call_t *c, unsigned timeout_ms, cvx_media_done_fn done)
{
    cvx_collect_opts_t co = {0};
    co.max_digits = 1;
    co.first_timeout_ms = timeout_ms;
    if (cvx_media_collect(c->media, &co, done, c) != 0)
        vm_hangup(c);
}

void vm_collect_number(vm_call_t *c, cvx_media_done_fn done)
{
    cvx_collect_opts_t co = {0};
    co.max_digits = CVX_STORE_NUMBER_MAX - 1;
    co.first_timeout_ms = 6000;
    co.inter_digit_ms = 4000;
    co.terminators = "#";
    if (cvx_media_collect(c->media, &co, done, c) != 0)
        vm_hangup(c);
}

int vm_rec_append(vm_call_t *c, const cvx_frame_t *f)
{
    if (f->codec != CVX_CODEC_L16 || f->rate != VM_RATE)
        return CVX_ENOTSUP;
    if (c->rec_n + f->samples > c->rec_cap) {
        size_t cap = c->rec_cap ? c->rec_cap * 2 : VM_RATE * 16;
        while (cap < c->rec_n + f->samples)
            cap *= 2;
        int16_t *p = realloc(c->rec, cap * sizeof(int16_t));
        if (p == NULL)
            return CVX_ENOMEM;
        c->rec = p;
        c->rec_cap = cap;
    }
    memcpy(c->rec + c->rec_n, f->data, (size_t)f->samples * 2);
    c->rec_n += f->samples;
    return 0;
}

void vm_play_and_hangup(vm_call_t *c, vm_list_t *l)
{
    vm_add(l, "tail-silence");
    vm_play(c, l, NULL, hangup_after);
}

/* --- audio from the store ------------------------------------------------------------------ */

static int16_t ulaw_lin(uint8_t u)
{
    u = (uint8_t)~u;
    int t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4);
    return (int16_t)((u & 0x80) ? 0x84 - t : t - 0x84);
}

static int16_t alaw_lin(uint8_t a)
{
    a ^= 0x55;
    int t = (a & 0x0F) << 4;
    int seg = (a & 0x70) >> 4;
    if (seg == 0)
        t += 8;
    else if (seg == 1)
        t += 0x108;
    else
        t = (t + 0x108) << (seg - 1);
    return (int16_t)((a & 0x80) ? t : -t);
}

static void fetch_end(vm_call_t *c, int status)
{
    cvx_audio_t *a = NULL;
    if (status == 0) {
        size_t n = c->fetch_codec == CVX_CODEC_PCM16 ? c->fetch_n / 2 : c->fetch_n;
        int16_t *s = malloc((n ? n : 1) * sizeof(int16_t));
        if (s == NULL) {
            status = CVX_ENOMEM;
        } else {
            for (size_t i = 0; i < n; i++) {
                if (c->fetch_codec == CVX_CODEC_PCM16)
                    memcpy(&s[i], c->fetch + 2 * i, 2);
                else if (c->fetch_codec == CVX_CODEC_ULAW)
                    s[i] = ulaw_lin(c->fetch[i]);
                else
                    s[i] = alaw_lin(c->fetch[i]);
            }
            a = cvx_audio_from_samples(s, n, 8000);
            free(s);
            if (a == NULL)
                status = CVX_ENOMEM;
        }
    }
    free(c->fetch);
    c->fetch = NULL;
    c->fetch_n = c->fetch_cap = 0;
    cvx_store_audio_close(c->reader);
    c->reader = NULL;
    c->fetched(c, status, a);
}

static void on_chunk(void *arg, int status, const void *data, size_t len)
{
    vm_call_t *c = arg;
    if (status != 0 || len == 0) {
        fetch_end(c, status);
        return;
    }
    if (c->fetch_n + len > c->fetch_cap) {
        size_t cap = (c->fetch_n + len) * 2;
        uint8_t *p = realloc(c->fetch, cap);
        if (p == NULL) {
            fetch_end(c, CVX_ENOMEM);
            return;
        }
        c->fetch = p;
        c->fetch_cap = cap;
    }
    memcpy(c->fetch + c->fetch_n, data, len);
    c->fetch_n += len;
    int rc = cvx_store_audio_next(c->reader, on_chunk, c);
    if (rc != 0)
        fetch_end(c, rc);
}

static void on_audio_open(void *arg, int status, const cvx_audio_info_t *info)
{
    vm_call_t *c = arg;
    if (status == 0 && info->rate != 8000)
        status = CVX_ENOTSUP;
    if (status != 0) {
        fetch_end(c, status);
        return;
    }
    c->fetch_codec = info->codec;
    int rc = cvx_store_audio_next(c->reader, on_chunk, c);
    if (rc != 0)
        fetch_end(c, rc);
}

int vm_fetch(vm_call_t *c, const cvx_audio_ref_t *ref,
             void (*fetched)(vm_call_t *c, int status, cvx_audio_t *a))
{
    cvx_store_t *st = cvx_store_default();
    if (st == NULL)
        return CVX_EUNAVAIL;
    c->fetched = fetched;
    return cvx_store_audio_open(st, ref, on_audio_open, c, &c->reader);
}

/* --- calls ---------------------------------------------------------------------------------- */

static void vm_event(cvx_chan_t *chan, const cvx_event_t *ev, void *arg)
{
    vm_call_t *c = arg;
    if (ev->type == CVX_EV_TRANSFER) {
        cvx_log_ctx_t ctx = vm_ctx(c, "transferring");
        cvx_log_ctx(CVX_LOG_INFO, &ctx, "voicemail: transfer %s (%d)",
                    ev->u.transfer.ok ? "done" : "failed", ev->u.transfer.code);
        cvx_cdr_set_outcome(chan, ev->u.transfer.ok ? CVX_CDR_TRANSFER : CVX_CDR_TRANSFER_FAILED);
        if (ev->u.transfer.ok)
            vm_hangup(c);
        return;
    }
    if (ev->type != CVX_EV_HANGUP)
        return;
    /* The media core has ended the operation in progress (its done ran) before this. */
    c->hung_up = 1;
    cvx_media_destroy(c->media);
    c->media = NULL;
    cvx_chan_set_handler(chan, NULL, NULL);
    if (c->reader) {
        cvx_store_audio_close(c->reader);
        c->reader = NULL;
    }
    vm_deposit_hangup(c);
    vm_call_maybe_free(c);
}

static int starts_with(const char *s, const char *prefix)
{
    return strcmp(prefix, "*") == 0 || strncmp(s, prefix, strlen(prefix)) == 0;
}

static int vm_incoming(cvx_chan_t *chan, void *arg)
{
    (void)arg;
    const cvx_call_info_t *info = cvx_chan_info(chan);
    int pilot = 0, direct = 0;
    for (size_t i = 0; i < vm_conf.pilots.n; i++)
        if (strcmp(info->called, vm_conf.pilots.v[i]) == 0)
            pilot = 1;
    for (size_t i = 0; !pilot && i < vm_conf.dialed_mailbox.n; i++)
        if (starts_with(info->called, vm_conf.dialed_mailbox.v[i]))
            direct = 1;
    if (!pilot && !direct)
        return CVX_EDECLINED;
    int redirected = info->redirect != CVX_REDIRECT_NONE && info->original_called[0] != '\0';

    vm_call_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return CVX_ENOMEM;
    c->chan = chan;
    int rc = cvx_media_create(chan, vm_event, c, &c->media);
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
    cvx_cdr_set_app(chan, "voicemail");
    cvx_log_ctx_t ctx = vm_ctx(c, "answering");
    cvx_log_ctx(
        CVX_LOG_INFO, &ctx, "voicemail: answered call from '%s' to %s (redirected from '%s', %s)",
        info->calling, info->called, info->original_called, cvx_redirect_name(info->redirect));
    if (redirected)
        vm_deposit_start(c, info->original_called);
    else if (direct)
        vm_deposit_start(c, info->called);
    else
        vm_login_start(c, "");
    return 0;
}

/* --- the module -------------------------------------------------------------------------- */

static int vm_load(cvx_module_env_t *env)
{
    cvx_diag_t diag = {0};
    memset(&vm_conf, 0, sizeof(vm_conf));
    cvx_conf_section_t *sec = cvx_conf_find(env->conf, "voicemail", NULL);
    int rc = cvx_conf_bind(&vm_section, sec, &vm_conf, &diag);
    if (rc == 0)
        rc = vm_keys_check(sec, &diag);
    for (size_t i = 0; i < diag.n; i++)
        cvx_error("%s", diag.msgs[i]);
    cvx_diag_clear(&diag);
    if (rc != 0) {
        cvx_conf_release(vm_options, &vm_conf);
        return rc;
    }
    char err[768];
    rc = vm_prompts_load(env->loop, err, sizeof(err));
    if (rc != 0) {
        cvx_error("voicemail: %s", err);
        vm_prompts_unload();
        cvx_conf_release(vm_options, &vm_conf);
        return rc;
    }
    return 0;
}

static void vm_unload(void)
{
    vm_prompts_unload();
    cvx_conf_release(vm_options, &vm_conf);
}

static const cvx_app_ops_t vm_ops = {
    .size = sizeof(cvx_app_ops_t),
    .incoming = vm_incoming,
};

static const cvx_module_t vm_module = {
    .abi_major = CVX_MODULE_ABI_MAJOR,
    .abi_minor = CVX_MODULE_ABI_MINOR,
    .size = sizeof(cvx_module_t),
    .signature = CVX_MODULE_SIGNATURE,
    .name = "voicemail",
    .version = "0.1",
    .description = "voicemail: message deposit and the subscriber conversation",
    .kind = CVX_MODULE_APP,
    .roles = CVX_ROLE_CALL,
    .load = vm_load,
    .unload = vm_unload,
    .app = &vm_ops,
    .sections = vm_sections,
};

CVX_MODULE_DEFINE(vm_module)
