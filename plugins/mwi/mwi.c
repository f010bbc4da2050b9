/*
 * The MWI engine: message-waiting lamps as tracked state (ARCHITECTURE.md, "MWI ownership").
 *
 * The store owns what each mailbox's lamp should show (cvx_store_mwi_*).  This module, on the
 * process that holds the driver instances, keeps one entry per mailbox ("device"): the state
 * the store wants, the state last sent successfully, the request in flight and the retry
 * schedule.  It
 *   - learns every mailbox at start (cvx_store_mailbox_list, cvx_store_mwi_get) and sends
 *     each lamp once (the state may have been lost while the daemon was down);
 *   - watches the store (cvx_store_mwi_watch) and sends a mailbox's state whenever its lamp
 *     or its counts change;
 *   - resolves the mailbox's mwi_device to a driver instance and target: "sip:pbx1/2001" is
 *     target "2001" on instance "sip:pbx1"; a device without "/" is a target on the default
 *     instance; an empty device is the mailbox number on the default instance ([mwi]
 *     instance, or the first driver instance configured);
 *   - sends through cvx_drv_inst_set_mwi() and reports each outcome with
 *     cvx_store_mwi_report(); a failure, or no answer within answer_timeout, is retried after
 *     retry_min, doubling up to retry_max, for as long as it takes;
 *   - sends every lamp again when its instance's line comes back up (a trunk that
 *     re-registers) and every refresh interval;
 *   - answers "show mwi" (devices whose last sent state differs from the store's) and
 *     "show mwi all".
 * Only the store's public interface is used, so the engine runs unchanged where the store is
 * reached over the call-server link.
 *
 * Thread: the loop thread only; nothing here blocks.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "cvx/chan.h"
#include "cvx/cmd.h"
#include "cvx/config.h"
#include "cvx/daemon.h"
#include "cvx/driver.h"
#include "cvx/error.h"
#include "cvx/log.h"
#include "cvx/module.h"
/* cvx/store.h and cvx/frame.h (through cvx/chan.h) both name a type cvx_codec_t; the store's
 * is renamed while its header is read (as plugins/voicemail/vm_store.h does). */
#define cvx_codec   cvx_store_codec
#define cvx_codec_t cvx_store_codec_t
#include "cvx/store.h"
#undef cvx_codec
#undef cvx_codec_t

typedef struct mwi_conf {
    char *instance;
    long long retry_min_ms, retry_max_ms, answer_timeout_ms, refresh_ms;
    long long max_in_flight;
} mwi_conf_t;

static const cvx_option_t mwi_options[] = {
    {"instance", CVX_OPT_STRING, offsetof(mwi_conf_t, instance), NULL, 0, 0, NULL, 0,
     "Driver instance (sip:pbx1) for mailboxes whose mwi_device names none; default: the first "
     "driver instance configured."},
    {"retry_min", CVX_OPT_DURATION, offsetof(mwi_conf_t, retry_min_ms), "10s", 100, 3600000, NULL,
     CVX_OPT_RELOADABLE, "First wait before a failed or unanswered lamp update is sent again."},
    {"retry_max", CVX_OPT_DURATION, offsetof(mwi_conf_t, retry_max_ms), "10m", 100, 86400000, NULL,
     CVX_OPT_RELOADABLE, "The wait doubles after each failure up to this."},
    {"answer_timeout", CVX_OPT_DURATION, offsetof(mwi_conf_t, answer_timeout_ms), "40s", 100,
     600000, NULL, CVX_OPT_RELOADABLE,
     "An update the driver has not answered within this counts as failed (SIP: longer than "
     "the 32 s transaction timeout)."},
    {"refresh", CVX_OPT_DURATION, offsetof(mwi_conf_t, refresh_ms), "24h", 0, 30LL * 86400000, NULL,
     CVX_OPT_RELOADABLE,
     "Send every lamp again this long after it was last sent (0: never), in case a device lost "
     "it."},
    {"max_in_flight", CVX_OPT_INT, offsetof(mwi_conf_t, max_in_flight), "50", 1, 10000, NULL,
     CVX_OPT_RELOADABLE,
     "Updates sent and not yet answered at once (paces a start with many "
     "mailboxes)."},
    CVX_OPTIONS_END,
};

static const cvx_section_def_t mwi_section = {"mwi", 0, mwi_options, sizeof(mwi_conf_t),
                                              "Message-waiting lamps (the MWI engine)."};
static const cvx_section_def_t *const mwi_sections[] = {&mwi_section, NULL};

typedef struct mwi_dev {
    struct mwi_dev *next;
    char mailbox[CVX_STORE_NUMBER_MAX];
    char device[CVX_STORE_TEXT_MAX]; /* as configured; "" for the number itself */
    int known;                       /* want holds the store's state */
    cvx_mwi_t want;
    int sent;             /* sent_state holds what was last sent successfully */
    cvx_mwi_t sent_state; /* counts and lamp of that update */
    uint64_t sent_ms;     /* uv time */
    cvx_mwi_t req_state;  /* the update in flight */
    uint64_t req_id, req_deadline;
    int dirty; /* want has not been sent (or must be sent again) */
    unsigned failures, attempts;
    uint64_t retry_at, refresh_at;
    char result[96]; /* "200", "failed: 500", "no answer", "no instance sip:x" */
    char inst[64];   /* the instance of the last attempt */
} mwi_dev_t;

static struct {
    mwi_conf_t conf;
    uv_loop_t *loop;
    cvx_store_t *st;
    uv_timer_t timer;
    int running, timer_open;
    mwi_dev_t *devs;
    unsigned ndevs, in_flight;
    uint64_t next_id;
    char list_after[CVX_STORE_NUMBER_MAX];
    int listing;
    uint64_t sent_ok, sent_failed;
    char line_up[64][64]; /* instances whose line is up, to see it come back */
} M;

static uint64_t now_ms(void)
{
    return uv_now(M.loop);
}

static void pump(void);

static void on_timer(uv_timer_t *t)
{
    (void)t;
    pump();
}

/* Runs pump() from the loop soon: many changes in one iteration cost one pass. */
static void kick(void)
{
    if (M.running)
        uv_timer_start(&M.timer, on_timer, 0, 0);
}

static mwi_dev_t *dev_find(const char *mailbox)
{
    for (mwi_dev_t *d = M.devs; d != NULL; d = d->next)
        if (strcmp(d->mailbox, mailbox) == 0)
            return d;
    return NULL;
}

static mwi_dev_t *dev_get(const char *mailbox)
{
    mwi_dev_t *d = dev_find(mailbox);
    if (d != NULL)
        return d;
    d = calloc(1, sizeof(*d));
    if (d == NULL)
        return NULL;
    snprintf(d->mailbox, sizeof(d->mailbox), "%s", mailbox);
    d->next = M.devs;
    M.devs = d;
    M.ndevs++;
    return d;
}

static int same_state(const cvx_mwi_t *a, const cvx_mwi_t *b)
{
    return a->lamp == b->lamp && a->msgs_new == b->msgs_new && a->urgent_new == b->urgent_new &&
           a->msgs_saved == b->msgs_saved;
}

/* The store wants st for d: sent at the next pump unless the device shows it already. */
static void want(mwi_dev_t *d, const cvx_mwi_t *st, int force)
{
    d->want = *st;
    d->known = 1;
    if (force || !d->sent || !same_state(&d->sent_state, st)) {
        d->dirty = 1;
        d->retry_at = 0; /* a new state goes at once, whatever the back-off was */
        d->failures = 0;
    }
}

/* --- instance and target ------------------------------------------------------------------ */

static int first_inst(cvx_drv_inst_t *inst, void *arg)
{
    *(cvx_drv_inst_t **)arg = inst;
    return 1;
}

/* Resolves d's device: the instance, and the target written into target. */
static cvx_drv_inst_t *resolve(const mwi_dev_t *d, char *target, size_t tsize, char *iname,
                               size_t isize)
{
    const char *slash = strchr(d->device, '/');
    cvx_drv_inst_t *inst = NULL;
    if (slash != NULL) {
        snprintf(iname, isize, "%.*s", (int)(slash - d->device), d->device);
        snprintf(target, tsize, "%s", slash + 1);
        return cvx_drv_inst_find(iname);
    }
    snprintf(target, tsize, "%s", d->device[0] ? d->device : d->mailbox);
    if (M.conf.instance != NULL && M.conf.instance[0] != '\0') {
        snprintf(iname, isize, "%s", M.conf.instance);
        return cvx_drv_inst_find(M.conf.instance);
    }
    cvx_drv_inst_foreach(first_inst, &inst);
    snprintf(iname, isize, "%s", inst ? cvx_drv_inst_name(inst) : "(none)");
    return inst;
}

/* --- outcomes ------------------------------------------------------------------------------ */

static void on_reported(void *arg, int status)
{
    (void)arg;
    if (status != 0 && status != CVX_ENOTFOUND)
        cvx_warn("mwi: recording a lamp result in the store failed: %s", cvx_strerror(status));
}

static void finish(mwi_dev_t *d, int ok, const char *result)
{
    uint64_t now = now_ms();
    if (d->req_id != 0 && M.in_flight > 0)
        M.in_flight--;
    d->req_id = 0;
    snprintf(d->result, sizeof(d->result), "%s", result);
    cvx_log_ctx_t ctx = {.instance = d->inst, .doing = "sending a lamp update"};
    if (ok) {
        M.sent_ok++;
        d->sent = 1;
        d->sent_state = d->req_state;
        d->sent_ms = now;
        d->failures = 0;
        d->retry_at = 0;
        d->refresh_at = M.conf.refresh_ms > 0 ? now + (uint64_t)M.conf.refresh_ms : 0;
        cvx_log_ctx(CVX_LOG_INFO, &ctx, "mwi: mailbox %s lamp %s (%u new, %u saved) sent: %s",
                    d->mailbox, d->req_state.lamp ? "on" : "off", d->req_state.msgs_new,
                    d->req_state.msgs_saved, result);
    } else {
        M.sent_failed++;
        d->failures++;
        d->dirty = 1; /* the device may show anything: send the current state again */
        uint64_t wait = (uint64_t)M.conf.retry_min_ms;
        for (unsigned i = 1; i < d->failures && wait < (uint64_t)M.conf.retry_max_ms; i++)
            wait *= 2;
        if (wait > (uint64_t)M.conf.retry_max_ms)
            wait = (uint64_t)M.conf.retry_max_ms;
        d->retry_at = now + wait;
        cvx_log_ctx(CVX_LOG_WARN, &ctx,
                    "mwi: mailbox %s lamp update failed (%s); attempt %u, next in %" PRIu64 " ms",
                    d->mailbox, result, d->failures, wait);
    }
    if (M.st != NULL)
        cvx_store_mwi_report(M.st, d->mailbox, d->req_state.generation, d->req_state.lamp, ok,
                             on_reported, NULL);
}

static void send_now(mwi_dev_t *d)
{
    char target[CVX_STORE_TEXT_MAX];
    cvx_drv_inst_t *inst = resolve(d, target, sizeof(target), d->inst, sizeof(d->inst));
    d->dirty = 0;
    d->attempts++;
    d->req_state = d->want;
    d->req_id = ++M.next_id;
    M.in_flight++;
    if (inst == NULL) {
        char why[96];
        snprintf(why, sizeof(why), "no driver instance %s", d->inst);
        finish(d, 0, why);
        return;
    }
    cvx_mwi_req_t req = {.request_id = d->req_id,
                         .mailbox = d->mailbox,
                         .device = target,
                         .on = d->want.lamp,
                         .new_msgs = d->want.msgs_new,
                         .old_msgs = d->want.msgs_saved,
                         .new_urgent = d->want.urgent_new,
                         /* The store keeps no count of urgent saved messages. */
                         .old_urgent = 0};
    d->req_deadline = now_ms() + (uint64_t)M.conf.answer_timeout_ms;
    int rc = cvx_drv_inst_set_mwi(inst, &req);
    if (rc != 0) {
        char why[96];
        snprintf(why, sizeof(why), "refused by %s: %s", d->inst, cvx_strerror(rc));
        finish(d, 0, why);
    }
}

/* Runs what is due and arms the timer for the next thing that will be. */
static void pump(void)
{
    if (!M.running)
        return;
    uint64_t now = now_ms(), next = 0;
#define NEXT(t)                                                                                    \
    do {                                                                                           \
        if ((t) != 0 && (next == 0 || (t) < next))                                                 \
            next = (t);                                                                            \
    } while (0)
    for (mwi_dev_t *d = M.devs; d != NULL; d = d->next) {
        if (d->req_id != 0) {
            if (now >= d->req_deadline)
                finish(d, 0, "no answer");
            else
                NEXT(d->req_deadline);
        }
        if (d->req_id != 0 || !d->known)
            continue;
        if (!d->dirty && d->refresh_at != 0 && now >= d->refresh_at) {
            d->dirty = 1; /* periodic refresh */
            d->refresh_at = 0;
        }
        if (d->dirty && d->retry_at <= now && M.in_flight < (unsigned)M.conf.max_in_flight)
            send_now(d);
        if (d->req_id != 0)
            NEXT(d->req_deadline);
        else if (d->dirty)
            NEXT(d->retry_at > now ? d->retry_at : now + 50);
        else
            NEXT(d->refresh_at);
    }
#undef NEXT
    if (next != 0)
        uv_timer_start(&M.timer, on_timer, next > now ? next - now : 1, 0);
    else
        uv_timer_stop(&M.timer);
}

/* The driver's answer to one of our requests. */
static void on_driver_event(cvx_drv_inst_t *inst, const cvx_event_t *ev, void *arg)
{
    (void)arg;
    if (!M.running)
        return;
    if (ev->type == CVX_EV_MWI_RESULT) {
        for (mwi_dev_t *d = M.devs; d != NULL; d = d->next) {
            if (d->req_id != ev->u.mwi.request_id)
                continue;
            char result[96];
            if (ev->u.mwi.err == 0)
                snprintf(result, sizeof(result), "ok (%d)", ev->u.mwi.code);
            else if (ev->u.mwi.code == 408)
                snprintf(result, sizeof(result), "no answer (408)");
            else
                snprintf(result, sizeof(result), "failed (%d)", ev->u.mwi.code);
            finish(d, ev->u.mwi.err == 0, result);
            break;
        }
        kick();
        return;
    }
    if (ev->type != CVX_EV_LINE_STATE)
        return;
    /* A line that comes back up (a trunk that registers again) may have lost its lamps. */
    const char *name = cvx_drv_inst_name(inst);
    int slot = -1, free_slot = -1, was_up = 0;
    for (int i = 0; i < 64; i++) {
        if (strcmp(M.line_up[i], name) == 0)
            slot = i, was_up = 1;
        else if (M.line_up[i][0] == '\0' && free_slot < 0)
            free_slot = i;
    }
    if (!ev->u.line.up) {
        if (slot >= 0)
            M.line_up[slot][0] = '\0';
        return;
    }
    if (was_up)
        return;
    if (free_slot >= 0)
        snprintf(M.line_up[free_slot], sizeof(M.line_up[free_slot]), "%s", name);
    unsigned n = 0;
    for (mwi_dev_t *d = M.devs; d != NULL; d = d->next) {
        char target[CVX_STORE_TEXT_MAX], iname[64];
        if (d->known && resolve(d, target, sizeof(target), iname, sizeof(iname)) == inst) {
            want(d, &d->want, 1);
            n++;
        }
    }
    cvx_log_ctx_t ctx = cvx_drv_inst_log_ctx(inst, "line up");
    cvx_log_ctx(CVX_LOG_INFO, &ctx, "mwi: line up again: sending %u lamp%s", n, n == 1 ? "" : "s");
    kick();
}

/* --- the store ----------------------------------------------------------------------------- */

static void on_mwi_state(void *arg, int status, const cvx_mwi_t *mwi)
{
    char *number = arg;
    if (M.running && status == 0) {
        mwi_dev_t *d = dev_find(number);
        if (d != NULL)
            want(d, mwi, 1); /* at start: the device may show anything */
        kick();
    }
    free(number);
}

static void fetch_state(const char *number)
{
    char *copy = strdup(number);
    if (copy == NULL || cvx_store_mwi_get(M.st, number, on_mwi_state, copy) != 0)
        free(copy);
}

static void list_next(void);

static void on_mailboxes(void *arg, int status, const cvx_mailbox_t *mbs, size_t n)
{
    (void)arg;
    M.listing = 0;
    if (!M.running)
        return;
    if (status != 0) {
        cvx_warn("mwi: listing the mailboxes failed (%s); lamps are sent as they change",
                 cvx_strerror(status));
        return;
    }
    for (size_t i = 0; i < n; i++) {
        mwi_dev_t *d = dev_get(mbs[i].number);
        if (d == NULL)
            continue;
        snprintf(d->device, sizeof(d->device), "%s", mbs[i].mwi_device);
        fetch_state(mbs[i].number);
    }
    if (n > 0) {
        snprintf(M.list_after, sizeof(M.list_after), "%s", mbs[n - 1].number);
        list_next();
    } else {
        cvx_info("mwi: tracking %u mailbox%s", M.ndevs, M.ndevs == 1 ? "" : "es");
    }
}

static void list_next(void)
{
    if (cvx_store_mailbox_list(M.st, M.list_after, 200, on_mailboxes, NULL) == 0)
        M.listing = 1;
}

static void on_mailbox(void *arg, int status, const cvx_mailbox_t *mb)
{
    cvx_mwi_t *st = arg;
    if (M.running && (status == 0 || status == CVX_ENOTFOUND)) {
        /* A deleted mailbox's lamp goes off with it: sent to the device last known. */
        mwi_dev_t *d = status == 0 ? dev_get(st->mailbox) : dev_find(st->mailbox);
        if (d != NULL) {
            if (status == 0)
                snprintf(d->device, sizeof(d->device), "%s", mb->mwi_device);
            want(d, st, 0);
        }
        kick();
    }
    free(st);
}

/* A committed write changed a mailbox's lamp or counts.  The mailbox is read again first: its
 * mwi_device may have changed since (and a mailbox created since the start is new here). */
static void on_store_change(void *arg, const cvx_mwi_t *mwi)
{
    (void)arg;
    if (!M.running)
        return;
    cvx_mwi_t *copy = malloc(sizeof(*copy));
    if (copy == NULL)
        return;
    *copy = *mwi;
    if (cvx_store_mailbox_get(M.st, mwi->mailbox, on_mailbox, copy) != 0)
        free(copy);
}

/* --- life ---------------------------------------------------------------------------------- */

/* The lines up now, so that only a line that goes down and comes back resends its lamps. */
static int note_line(cvx_drv_inst_t *inst, void *arg)
{
    unsigned *n = arg;
    cvx_drv_inst_info_t info;
    cvx_drv_inst_get_info(inst, &info);
    if (info.line_up && *n < 64)
        snprintf(M.line_up[(*n)++], sizeof(M.line_up[0]), "%s", info.name);
    return 0;
}

static int mwi_start(uv_loop_t *loop)
{
    unsigned lines = 0;
    cvx_drv_inst_foreach(note_line, &lines);
    M.loop = loop;
    M.st = cvx_store_default();
    uv_timer_init(loop, &M.timer);
    M.timer_open = 1;
    M.running = 1;
    cvx_drv_set_listener(on_driver_event, NULL);
    if (M.st == NULL) {
        cvx_notice("mwi: no message store in this process: no lamps are sent");
        return 0;
    }
    cvx_store_mwi_watch(M.st, on_store_change, NULL);
    M.list_after[0] = '\0';
    list_next();
    return 0;
}

static void mwi_stop(void)
{
    if (!M.running)
        return;
    M.running = 0;
    if (M.st != NULL)
        cvx_store_mwi_watch(M.st, NULL, NULL);
    cvx_drv_set_listener(NULL, NULL);
    if (M.timer_open) {
        uv_close((uv_handle_t *)&M.timer, NULL);
        M.timer_open = 0;
    }
    while (M.devs != NULL) {
        mwi_dev_t *d = M.devs;
        M.devs = d->next;
        free(d);
    }
    M.ndevs = 0;
    M.in_flight = 0;
}

static void mwi_reloaded(void)
{
    cvx_conf_t *conf = cvx_daemon_conf();
    mwi_conf_t fresh = {0};
    cvx_diag_t diag = {0};
    if (cvx_conf_bind(&mwi_section, cvx_conf_find(conf, "mwi", NULL), &fresh, &diag) == 0) {
        M.conf.retry_min_ms = fresh.retry_min_ms;
        M.conf.retry_max_ms = fresh.retry_max_ms;
        M.conf.answer_timeout_ms = fresh.answer_timeout_ms;
        M.conf.refresh_ms = fresh.refresh_ms;
        M.conf.max_in_flight = fresh.max_in_flight;
    }
    cvx_conf_release(mwi_options, &fresh);
    cvx_diag_clear(&diag);
    kick();
}

static const cvx_daemon_hooks_t mwi_hooks = {"mwi", CVX_ROLE_CALL, mwi_start, mwi_stop,
                                             mwi_reloaded};

/* --- show mwi ------------------------------------------------------------------------------ */

static void fmt_state(const cvx_mwi_t *s, char *buf, size_t size)
{
    snprintf(buf, size, "%s %u/%u (%u/0)", s->lamp ? "on" : "off", s->msgs_new, s->msgs_saved,
             s->urgent_new);
}

static int cmd_show_mwi(cvx_cmd_req_t *req)
{
    int all = cvx_cmd_arg_named(req, "all") != NULL;
    static const char *const cols[] = {"mailbox", "device",    "store", "sent",
                                       "result",  "attempts#", "state", NULL};
    uint64_t now = now_ms();
    unsigned shown = 0, differ = 0;
    cvx_cmd_table_begin(req, "devices", cols);
    for (mwi_dev_t *d = M.devs; d != NULL; d = d->next) {
        int same = d->known && d->sent && same_state(&d->sent_state, &d->want) && !d->dirty;
        if (!same)
            differ++;
        if (same && !all)
            continue;
        char dev[CVX_STORE_TEXT_MAX + 8], want_s[48], sent_s[48], attempts[16], state[64];
        snprintf(dev, sizeof(dev), "%s", d->device[0] ? d->device : "(number)");
        if (d->known)
            fmt_state(&d->want, want_s, sizeof(want_s));
        else
            snprintf(want_s, sizeof(want_s), "?");
        if (d->sent)
            fmt_state(&d->sent_state, sent_s, sizeof(sent_s));
        else
            snprintf(sent_s, sizeof(sent_s), "-");
        snprintf(attempts, sizeof(attempts), "%u", d->attempts);
        if (d->req_id != 0)
            snprintf(state, sizeof(state), "sending");
        else if (d->dirty && d->retry_at > now)
            snprintf(state, sizeof(state), "retry in %" PRIu64 " s",
                     (d->retry_at - now + 999) / 1000);
        else if (d->dirty)
            snprintf(state, sizeof(state), "due");
        else
            snprintf(state, sizeof(state), "in step");
        const char *cells[] = {d->mailbox, dev,   want_s, sent_s, d->result[0] ? d->result : "-",
                               attempts,   state, NULL};
        cvx_cmd_table_row(req, cells);
        shown++;
    }
    cvx_cmd_table_end(req);
    cvx_cmd_printf(req,
                   "%u mailbox%s tracked, %u not in step with the store; %" PRIu64
                   " updates sent, %" PRIu64 " failed\n",
                   M.ndevs, M.ndevs == 1 ? "" : "es", differ, M.sent_ok, M.sent_failed);
    cvx_cmd_json_uint(req, "tracked", M.ndevs);
    cvx_cmd_json_uint(req, "differ", differ);
    cvx_cmd_json_uint(req, "sent_ok", M.sent_ok);
    cvx_cmd_json_uint(req, "sent_failed", M.sent_failed);
    return 0;
}

static const char *const all_word[] = {"all", NULL};

static const cvx_cmd_t mwi_cmds[] = {
    {"show mwi",
     {{"all", CVX_CMD_ARG_OPTIONAL, all_word, NULL, "every mailbox, not only those out of step"}},
     CVX_CMD_READONLY,
     "Lamps whose last sent state differs from the store's",
     "Lists the mailboxes whose message-waiting lamp, as last sent successfully to the device, "
     "differs from what the store says it should show (never sent, failed, waiting for a "
     "retry, or being sent), with the store's state and the sent one as 'on NEW/SAVED "
     "(URGENT/0)', the last result, the attempts and what happens next.  'show mwi all' lists "
     "every mailbox.",
     cmd_show_mwi,
     NULL},
    CVX_CMDS_END,
};

/* --- module -------------------------------------------------------------------------------- */

static int mwi_load(cvx_module_env_t *env)
{
    memset(&M, 0, sizeof(M));
    cvx_diag_t diag = {0};
    int rc = cvx_conf_bind(&mwi_section, cvx_conf_find(env->conf, "mwi", NULL), &M.conf, &diag);
    for (size_t i = 0; i < diag.n; i++)
        cvx_error("%s", diag.msgs[i]);
    cvx_diag_clear(&diag);
    if (rc != 0)
        return rc;
    if (M.conf.retry_max_ms < M.conf.retry_min_ms)
        M.conf.retry_max_ms = M.conf.retry_min_ms;
    rc = cvx_daemon_add_hooks(&mwi_hooks);
    if (rc == 0)
        rc = cvx_cmd_register(mwi_cmds);
    return rc;
}

static void mwi_unload(void)
{
    cvx_cmd_unregister(mwi_cmds);
    cvx_conf_release(mwi_options, &M.conf);
}

static const cvx_module_t mwi_module = {
    .abi_major = CVX_MODULE_ABI_MAJOR,
    .abi_minor = CVX_MODULE_ABI_MINOR,
    .size = sizeof(cvx_module_t),
    .signature = CVX_MODULE_SIGNATURE,
    .name = "mwi",
    .version = "1.0",
    .description = "message-waiting lamps: tracks the store's MWI state and sends it to devices",
    .kind = CVX_MODULE_SERVICE,
    .roles = CVX_ROLE_CALL,
    .load = mwi_load,
    .unload = mwi_unload,
    .sections = mwi_sections,
};

CVX_MODULE_DEFINE(mwi_module)
