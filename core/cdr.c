/*
 * Call records (cvx/cdr.h): one per call, as CSV and as JSON lines.
 *
 * The loop thread formats a record when a channel is freed and queues the two lines; a writer
 * thread appends them to the files and flushes after each batch, so the loop never touches a
 * file.  A reload (SIGHUP or "reload") asks the writer to reopen the files: the usual way to
 * rotate them (move the file, then reload).  The files are opened at start as root and given
 * to the daemon's user, so that it can reopen them later.  At shutdown the writer is joined
 * after the loop has ended (atexit), so that the records of calls freed while the drivers are
 * destroyed are written too.
 *
 * Columns (CSV, after a header line; JSON lines use the same names as keys):
 *   call_id, instance, direction, start, answer, end, duration_ms, calling, calling_name,
 *   called, original_called, redirect_reason, redirect_count, application, mailbox, outcome,
 *   transfer_to, hangup_cause
 * Times are UTC, ISO 8601 with milliseconds ("2026-11-25T12:34:56.789Z"); an empty CSV field
 * (JSON null) for an answer or end that did not happen.  duration_ms runs from the answer to
 * the end (0 when not answered).
 */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "chan_impl.h"
#include "cvx/cdr.h"
#include "cvx/daemon.h"
#include "cvx/error.h"
#include "cvx/log.h"
#include "cdr_impl.h"

typedef struct cdr_conf {
    char *csv;  /* path of the CSV file; "" or NULL: none */
    char *json; /* path of the JSON-lines file; "" or NULL: none */
} cdr_conf_t;

static cdr_conf_t conf;

static const cvx_option_t cdr_options[] = {
    {"csv", CVX_OPT_STRING, offsetof(cdr_conf_t, csv), "", 0, 0, NULL, 0,
     "Call records as CSV (a header line, then one line per call); a relative path is in "
     "data_dir; empty: none.  Reopened by a reload (rotate by moving the file, then reload)."},
    {"json", CVX_OPT_STRING, offsetof(cdr_conf_t, json), "", 0, 0, NULL, 0,
     "Call records as JSON lines (one object per call); a relative path is in data_dir; "
     "empty: none.  Reopened by a reload."},
    CVX_OPTIONS_END,
};

static const cvx_section_def_t cdr_section = {"cdr", 0, cdr_options, sizeof(cdr_conf_t),
                                              "Call records (one per call, CSV and JSON lines)."};

static const char csv_header[] =
    "call_id,instance,direction,start,answer,end,duration_ms,calling,calling_name,called,"
    "original_called,redirect_reason,redirect_count,application,mailbox,outcome,transfer_to,"
    "hangup_cause";

const char *cvx_cdr_csv_header(void)
{
    return csv_header;
}

/* --- the writer thread ------------------------------------------------------------------- */

typedef struct rec {
    struct rec *next;
    char *csv, *json;
} rec_t;

static struct {
    int running;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    rec_t *head, **tail;
    int reopen, quit;
    char csv_path[4096], json_path[4096];
    FILE *csv, *json;
    unsigned long written, dropped;
} W = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

/* Opens path for appending; a new or empty CSV file gets the header first. */
static FILE *open_file(const char *path, int is_csv)
{
    FILE *f = fopen(path, "ae");
    if (f == NULL) {
        cvx_error("cdr: cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    if (is_csv && ftell(f) == 0)
        fprintf(f, "%s\n", csv_header);
    fflush(f);
    return f;
}

static void reopen_files(void)
{
    if (W.csv)
        fclose(W.csv);
    if (W.json)
        fclose(W.json);
    W.csv = W.csv_path[0] ? open_file(W.csv_path, 1) : NULL;
    W.json = W.json_path[0] ? open_file(W.json_path, 0) : NULL;
}

static void *writer(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&W.lock);
    for (;;) {
        while (W.head == NULL && !W.reopen && !W.quit)
            pthread_cond_wait(&W.cond, &W.lock);
        rec_t *batch = W.head;
        W.head = NULL;
        W.tail = &W.head;
        int reopen = W.reopen, quit = W.quit;
        W.reopen = 0;
        pthread_mutex_unlock(&W.lock);
        if (reopen) {
            reopen_files();
            cvx_info("cdr: call record files reopened");
        }
        while (batch != NULL) {
            rec_t *r = batch;
            batch = r->next;
            if (W.csv)
                fputs(r->csv, W.csv);
            if (W.json)
                fputs(r->json, W.json);
            free(r->csv);
            free(r->json);
            free(r);
            W.written++;
        }
        if (W.csv && (fflush(W.csv) != 0 || ferror(W.csv))) {
            cvx_error("cdr: writing %s failed: %s", W.csv_path, strerror(errno));
            clearerr(W.csv);
        }
        if (W.json && (fflush(W.json) != 0 || ferror(W.json))) {
            cvx_error("cdr: writing %s failed: %s", W.json_path, strerror(errno));
            clearerr(W.json);
        }
        pthread_mutex_lock(&W.lock);
        if (quit && W.head == NULL)
            break;
    }
    pthread_mutex_unlock(&W.lock);
    return NULL;
}

static void cdr_shutdown(void)
{
    if (!W.running)
        return;
    pthread_mutex_lock(&W.lock);
    W.quit = 1;
    pthread_cond_signal(&W.cond);
    pthread_mutex_unlock(&W.lock);
    pthread_join(W.thread, NULL);
    W.running = 0;
    if (W.csv)
        fclose(W.csv);
    if (W.json)
        fclose(W.json);
    W.csv = W.json = NULL;
}

static void resolve(const char *path, char *out, size_t size)
{
    const cvx_general_conf_t *g = cvx_daemon_general();
    if (path == NULL || path[0] == '\0')
        out[0] = '\0';
    else if (path[0] == '/' || g == NULL || g->data_dir == NULL)
        snprintf(out, size, "%s", path);
    else
        snprintf(out, size, "%s/%s", g->data_dir, path);
}

/* Start-up (as root when started as root): opens the files, gives them to the daemon's user
 * so that a reload can reopen them, and starts the writer. */
static int cdr_start(uv_loop_t *loop)
{
    (void)loop;
    resolve(conf.csv, W.csv_path, sizeof(W.csv_path));
    resolve(conf.json, W.json_path, sizeof(W.json_path));
    if (W.csv_path[0] == '\0' && W.json_path[0] == '\0')
        return 0;
    reopen_files();
    if ((W.csv_path[0] && W.csv == NULL) || (W.json_path[0] && W.json == NULL))
        return CVX_EIO;
    const cvx_general_conf_t *g = cvx_daemon_general();
    if (geteuid() == 0 && g && g->user && g->user[0]) {
        struct passwd *pw = getpwnam(g->user);
        if (pw != NULL) {
            if ((W.csv && fchown(fileno(W.csv), pw->pw_uid, pw->pw_gid) != 0) ||
                (W.json && fchown(fileno(W.json), pw->pw_uid, pw->pw_gid) != 0))
                cvx_warn("cdr: cannot give the call record files to %s: %s", g->user,
                         strerror(errno));
        }
    }
    W.tail = &W.head;
    W.quit = W.reopen = 0;
    if (pthread_create(&W.thread, NULL, writer, NULL) != 0) {
        cvx_error("cdr: cannot start the writer thread");
        return CVX_ENOMEM;
    }
    W.running = 1;
    atexit(cdr_shutdown);
    cvx_info("cdr: call records to%s%s%s%s", W.csv_path[0] ? " " : "", W.csv_path,
             W.json_path[0] ? " " : "", W.json_path);
    return 0;
}

static void cdr_reloaded(void)
{
    if (!W.running)
        return;
    pthread_mutex_lock(&W.lock);
    W.reopen = 1;
    pthread_cond_signal(&W.cond);
    pthread_mutex_unlock(&W.lock);
}

static const cvx_daemon_hooks_t cdr_hooks = {"cdr", CVX_ROLE_CALL, cdr_start, NULL, cdr_reloaded};

int cvx__cdr_setup(void)
{
    int rc = cvx_daemon_add_section(&cdr_section, &conf);
    if (rc == 0)
        rc = cvx_daemon_add_hooks(&cdr_hooks);
    return rc;
}

/* --- records ------------------------------------------------------------------------------ */

uint64_t cvx__wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void iso_time(uint64_t ms, char *out, size_t size)
{
    if (ms == 0) {
        out[0] = '\0';
        return;
    }
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(out, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, size - n, ".%03uZ", (unsigned)(ms % 1000));
}

/* Appends s to the buffer as one CSV field (RFC 4180: quoted when it holds a comma, a quote
 * or a line break; quotes doubled). */
static void csv_field(char **p, char *end, const char *s, int last)
{
    int quote = strpbrk(s, ",\"\r\n") != NULL;
    if (quote && *p < end)
        *(*p)++ = '"';
    for (; *s && *p < end; s++) {
        if (*s == '"' && *p < end)
            *(*p)++ = '"';
        if (*p < end)
            *(*p)++ = *s;
    }
    if (quote && *p < end)
        *(*p)++ = '"';
    if (*p < end)
        *(*p)++ = last ? '\n' : ',';
}

void cvx__cdr_emit(const cvx_chan_t *c)
{
    if (!W.running)
        return;
    char start[40], answer[40], end[40], dur[24], count[12];
    iso_time(c->start_wall_ms, start, sizeof(start));
    iso_time(c->answer_wall_ms, answer, sizeof(answer));
    iso_time(c->end_wall_ms, end, sizeof(end));
    uint64_t duration = c->answer_wall_ms && c->end_wall_ms > c->answer_wall_ms
                            ? c->end_wall_ms - c->answer_wall_ms
                            : 0;
    snprintf(dur, sizeof(dur), "%llu", (unsigned long long)duration);
    snprintf(count, sizeof(count), "%u", c->cdr_info.redirect_count);
    const char *outcome = c->cdr_outcome[0]   ? c->cdr_outcome
                          : c->answer_wall_ms ? "abandoned"
                                              : "unanswered";
    const char *cause = c->end_cause ? cvx_cause_name((cvx_cause_t)c->end_cause) : "";
    const char *inst = c->cdr_instance;
    const char *dir = c->dir == CVX_DIR_IN ? "in" : "out";
    const char *redirect =
        c->cdr_info.redirect == CVX_REDIRECT_NONE ? "" : cvx_redirect_name(c->cdr_info.redirect);
    const char *fields[] = {c->id,
                            inst,
                            dir,
                            start,
                            answer,
                            end,
                            dur,
                            c->cdr_info.calling,
                            c->cdr_info.calling_name,
                            c->cdr_info.called,
                            c->cdr_info.original_called,
                            redirect,
                            count,
                            c->cdr_app,
                            c->cdr_mailbox,
                            outcome,
                            c->cdr_transfer,
                            cause};
    static const char *const keys[] = {"call_id",        "instance",        "direction",
                                       "start",          "answer",          "end",
                                       "duration_ms",    "calling",         "calling_name",
                                       "called",         "original_called", "redirect_reason",
                                       "redirect_count", "application",     "mailbox",
                                       "outcome",        "transfer_to",     "hangup_cause"};
    size_t nf = sizeof(fields) / sizeof(fields[0]);

    size_t cap = 64;
    for (size_t i = 0; i < nf; i++)
        cap += 2 * strlen(fields[i]) + 3;
    rec_t *r = calloc(1, sizeof(*r));
    char *csv = malloc(cap);
    json_t *obj = json_object();
    if (r == NULL || csv == NULL || obj == NULL)
        goto fail;
    char *p = csv, *e = csv + cap - 1;
    for (size_t i = 0; i < nf; i++) {
        csv_field(&p, e, fields[i], i + 1 == nf);
        json_t *v;
        if (i == 6)
            v = json_integer((json_int_t)duration);
        else if (i == 12)
            v = json_integer((json_int_t)c->cdr_info.redirect_count);
        else if (fields[i][0] == '\0' && (i == 4 || i == 5))
            v = json_null();
        else
            v = json_string(fields[i]);
        if (v == NULL || json_object_set_new(obj, keys[i], v) != 0)
            goto fail;
    }
    *p = '\0';
    char *js = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (js == NULL)
        goto fail;
    size_t jn = strlen(js);
    r->json = malloc(jn + 2);
    if (r->json == NULL) {
        free(js);
        goto fail;
    }
    memcpy(r->json, js, jn);
    r->json[jn] = '\n';
    r->json[jn + 1] = '\0';
    free(js);
    json_decref(obj);
    r->csv = csv;
    pthread_mutex_lock(&W.lock);
    *W.tail = r;
    W.tail = &r->next;
    pthread_cond_signal(&W.cond);
    pthread_mutex_unlock(&W.lock);
    return;
fail:
    if (obj)
        json_decref(obj);
    free(csv);
    if (r)
        free(r->json);
    free(r);
    W.dropped++;
    cvx_error("cdr: out of memory: the call record of %s dropped", c->id);
}

/* --- what flows add ------------------------------------------------------------------------ */

static void copy(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src ? src : "");
}

void cvx_cdr_set_app(cvx_chan_t *chan, const char *app)
{
    size_t n = strlen(chan->cdr_app);
    if (n == 0)
        copy(chan->cdr_app, sizeof(chan->cdr_app), app);
    else if (app != NULL && strcmp(chan->cdr_app, app) != 0)
        /* Handed on (cvx_app_handoff): "attendant>voicemail". */
        snprintf(chan->cdr_app + n, sizeof(chan->cdr_app) - n, ">%s", app);
}

void cvx_cdr_set_mailbox(cvx_chan_t *chan, const char *mailbox)
{
    copy(chan->cdr_mailbox, sizeof(chan->cdr_mailbox), mailbox);
}

void cvx_cdr_set_outcome(cvx_chan_t *chan, const char *outcome)
{
    copy(chan->cdr_outcome, sizeof(chan->cdr_outcome), outcome);
}

void cvx_cdr_set_transfer(cvx_chan_t *chan, const char *dest)
{
    copy(chan->cdr_transfer, sizeof(chan->cdr_transfer), dest);
}
