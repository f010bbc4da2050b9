/*
 * Bulk import of mailboxes from CSV (RFC 4180 quoting: "a, b" and "say ""hi""").
 *
 * The text is parsed on the loop (it is in memory); every valid line becomes a mailbox
 * creation queued for the writer at once, so the whole file commits in a few group commits;
 * PINs are then hashed on the thread pool and set.  The report lists every line in order
 * once everything has finished.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_impl.h"

enum {
    COL_NUMBER,
    COL_FIRST,
    COL_LAST,
    COL_PIN,
    COL_LANGUAGE,
    COL_TIMEZONE,
    COL_EMAIL,
    COL_MWI,
    COL_QUOTA_MSGS,
    COL_QUOTA_MIN,
    COL_MAXLEN,
    COL_LISTED,
    COL_COUNT
};
static const char *const col_names[COL_COUNT] = {
    "number", "first_name", "last_name",      "pin",           "language",      "timezone",
    "email",  "mwi_device", "quota_messages", "quota_minutes", "max_message_s", "listed",
};

#define MAX_FIELDS 32
#define MAX_LINES  100000

struct import;
typedef struct entry {
    struct import *im;
    int line;
    cvx_mailbox_t mb;
    char pin[CVX_STORE_PIN_MAX + 1];
    char why[160]; /* rejected when not empty */
    int status;
} entry_t;

typedef struct import {
    cvx_store_t *st;
    entry_t *e;
    size_t n;
    unsigned pending;
    int phase; /* 0: creating mailboxes, 1: setting PINs */
    cvx_store_line_fn line;
    cvx_store_done_cb cb;
    void *arg;
    struct {
        cvx_async_job_t job;
        cvx_store_t *st;
    } release;
} import_t;

/* Splits one CSV record starting at *p; returns the number of fields, -1 at the end. */
static int split(const char **p, const char *end, char fields[][256], int max)
{
    const char *s = *p;
    if (s >= end)
        return -1;
    int n = 0;
    size_t len = 0;
    int quoted = 0, overflow = 0;
    fields[0][0] = '\0';
    while (s < end) {
        char c = *s++;
        if (quoted) {
            if (c == '"' && s < end && *s == '"') {
                s++;
            } else if (c == '"') {
                quoted = 0;
                continue;
            }
        } else if (c == '"') {
            quoted = 1;
            continue;
        } else if (c == ',' || c == '\n') {
            fields[n][len] = '\0';
            if (c == '\n')
                break;
            if (++n == max) {
                overflow = 1;
                n--;
            }
            len = 0;
            fields[n][0] = '\0';
            continue;
        } else if (c == '\r') {
            continue;
        }
        if (len < 255)
            fields[n][len++] = c;
    }
    fields[n][len] = '\0';
    *p = s;
    return overflow ? max + 1 : n + 1;
}

static int parse_uint(const char *s, uint32_t *out)
{
    if (s[0] == '\0') {
        *out = 0;
        return 1;
    }
    char *endp;
    unsigned long v = strtoul(s, &endp, 10);
    if (*endp != '\0' || s[0] == '-' || v > 0xffffffffUL)
        return 0;
    *out = (uint32_t)v;
    return 1;
}

static void finish(import_t *im)
{
    int rejected = 0;
    char buf[256];
    for (size_t i = 0; i < im->n; i++) {
        entry_t *e = &im->e[i];
        if (e->why[0] != '\0') {
            snprintf(buf, sizeof(buf), "line %d: rejected: %s", e->line, e->why);
            rejected++;
        } else if (e->status != 0) {
            snprintf(buf, sizeof(buf), "line %d: added %s, but the PIN was not set: %s", e->line,
                     e->mb.number, cvx_strerror(e->status));
            rejected++;
        } else {
            snprintf(buf, sizeof(buf), "line %d: added %s", e->line, e->mb.number);
        }
        if (im->line != NULL)
            im->line(im->arg, buf);
    }
    im->cb(im->arg, rejected);
    free(im->e);
    free(im);
}

static void on_pin_set(void *arg, int status);

static void start_pins(import_t *im)
{
    im->phase = 1;
    im->pending = 1; /* held until every PIN is queued */
    for (size_t i = 0; i < im->n; i++) {
        entry_t *e = &im->e[i];
        if (e->why[0] != '\0' || e->pin[0] == '\0')
            continue;
        /* The entry's address identifies it in the callback. */
        int rc = cvx_store_pin_set(im->st, e->mb.number, e->pin, on_pin_set, e);
        if (rc != 0)
            e->status = rc;
        else
            im->pending++;
    }
    if (--im->pending == 0)
        finish(im);
}

static void on_pin_set(void *arg, int status)
{
    entry_t *e = arg;
    import_t *im = e->im;
    e->status = status;
    sodium_memzero(e->pin, sizeof(e->pin));
    if (--im->pending == 0)
        finish(im);
}

static void on_created(void *arg, int status)
{
    entry_t *e = arg;
    import_t *im = e->im;
    if (status == CVX_EEXIST)
        snprintf(e->why, sizeof(e->why), "mailbox %s already exists", e->mb.number);
    else if (status == CVX_ELIMIT)
        snprintf(e->why, sizeof(e->why), "the licence allows %u mailboxes",
                 im->st->conf.max_mailboxes);
    else if (status != 0)
        snprintf(e->why, sizeof(e->why), "%s", cvx_strerror(status));
    if (--im->pending == 0)
        start_pins(im);
}

/* Reads one data line into e; returns 0 or sets e->why. */
static void read_entry(entry_t *e, char fields[][256], int nf, const int *cols, int ncols)
{
    if (nf != ncols) {
        snprintf(e->why, sizeof(e->why), "%d field%s, the header has %d", nf, nf == 1 ? "" : "s",
                 ncols);
        return;
    }
    cvx_mailbox_t *mb = &e->mb;
    mb->listed = 1;
    for (int i = 0; i < nf; i++) {
        const char *v = fields[i];
        uint32_t u;
        switch (cols[i]) {
        case COL_NUMBER:
            if (!cvx_store_valid_number(v)) {
                snprintf(e->why, sizeof(e->why), "'%.40s' is not a mailbox number", v);
                return;
            }
            store__copy(mb->number, v, sizeof(mb->number));
            break;
        case COL_FIRST:
            store__copy(mb->first_name, v, sizeof(mb->first_name));
            break;
        case COL_LAST:
            store__copy(mb->last_name, v, sizeof(mb->last_name));
            break;
        case COL_PIN: {
            size_t n = strlen(v);
            if (n > 0 &&
                (n < CVX_STORE_PIN_MIN || n > CVX_STORE_PIN_MAX || strspn(v, "0123456789") != n)) {
                snprintf(e->why, sizeof(e->why), "the PIN must be %d to %d digits",
                         CVX_STORE_PIN_MIN, CVX_STORE_PIN_MAX);
                return;
            }
            store__copy(e->pin, v, sizeof(e->pin));
            break;
        }
        case COL_LANGUAGE:
            store__copy(mb->language, v, sizeof(mb->language));
            break;
        case COL_TIMEZONE:
            store__copy(mb->timezone, v, sizeof(mb->timezone));
            break;
        case COL_EMAIL:
            store__copy(mb->email, v, sizeof(mb->email));
            break;
        case COL_MWI:
            store__copy(mb->mwi_device, v, sizeof(mb->mwi_device));
            break;
        case COL_LISTED:
            if (strcmp(v, "no") == 0 || strcmp(v, "0") == 0 || strcmp(v, "false") == 0)
                mb->listed = 0;
            else if (v[0] != '\0' && strcmp(v, "yes") != 0 && strcmp(v, "1") != 0 &&
                     strcmp(v, "true") != 0) {
                snprintf(e->why, sizeof(e->why), "listed: '%.40s' is not yes or no", v);
                return;
            }
            break;
        default:
            if (!parse_uint(v, &u)) {
                snprintf(e->why, sizeof(e->why), "%s: '%.40s' is not a number", col_names[cols[i]],
                         v);
                return;
            }
            if (cols[i] == COL_QUOTA_MSGS)
                mb->quota_messages = u;
            else if (cols[i] == COL_QUOTA_MIN)
                mb->quota_minutes = u;
            else
                mb->max_message_s = u;
            break;
        }
    }
}

static void release_run(cvx_async_job_t *job)
{
    import_t *im = (import_t *)((char *)job - offsetof(import_t, release.job));
    cvx_store_t *st = im->release.st;
    if (--im->pending == 0)
        start_pins(im);
    st->loop_pending--;
    store__maybe_closed(st);
}

static void header_error(cvx_store_line_fn line, void *arg, const char *fmt, const char *what)
{
    char buf[300];
    snprintf(buf, sizeof(buf), fmt, what);
    if (line != NULL)
        line(arg, buf);
}

/* Reports a header error through the completion queue (never from inside the request). */
typedef struct hdrfail {
    cvx_async_job_t job;
    cvx_store_t *st;
    char text[300];
    cvx_store_line_fn line;
    cvx_store_done_cb cb;
    void *arg;
} hdrfail_t;

static void hdrfail_run(cvx_async_job_t *job)
{
    hdrfail_t *h = (hdrfail_t *)((char *)job - offsetof(hdrfail_t, job));
    cvx_store_t *st = h->st;
    header_error(h->line, h->arg, "%s", h->text);
    h->cb(h->arg, CVX_EPARSE);
    free(h);
    st->loop_pending--;
    store__maybe_closed(st);
}

int cvx_store_import_csv(cvx_store_t *st, const char *text, size_t len, cvx_store_line_fn line,
                         cvx_store_done_cb cb, void *arg)
{
    if (st != NULL && st->remote != NULL)
        return CVX_ENOTSUP; /* administration runs on the system server */
    if (st == NULL || st->closing)
        return CVX_EUNAVAIL;
    if (text == NULL || cb == NULL)
        return CVX_EINVAL;
    static char fields[MAX_FIELDS + 1][256];
    const char *p = text, *end = text + len;
    int nf = split(&p, end, fields, MAX_FIELDS);
    int cols[MAX_FIELDS], ncols = nf > 0 && nf <= MAX_FIELDS ? nf : 0, have_number = 0;
    char err[300] = "";
    if (ncols == 0)
        snprintf(err, sizeof(err), "line 1: no header line");
    for (int i = 0; i < ncols && err[0] == '\0'; i++) {
        cols[i] = -1;
        for (int c = 0; c < COL_COUNT; c++)
            if (strcmp(fields[i], col_names[c]) == 0)
                cols[i] = c;
        if (cols[i] < 0)
            snprintf(err, sizeof(err), "line 1: unknown column '%.40s'", fields[i]);
        if (cols[i] == COL_NUMBER)
            have_number = 1;
    }
    if (err[0] == '\0' && !have_number)
        snprintf(err, sizeof(err), "line 1: the header has no 'number' column");
    if (err[0] != '\0') {
        hdrfail_t *h = calloc(1, sizeof(*h));
        if (h == NULL)
            return CVX_ENOMEM;
        h->st = st;
        snprintf(h->text, sizeof(h->text), "%s", err);
        h->line = line;
        h->cb = cb;
        h->arg = arg;
        st->loop_pending++;
        cvx_async_queue_post(&st->done, &h->job, hdrfail_run);
        return 0;
    }
    import_t *im = calloc(1, sizeof(*im));
    if (im == NULL)
        return CVX_ENOMEM;
    size_t cap = 0;
    int lineno = 1;
    while ((nf = split(&p, end, fields, MAX_FIELDS)) >= 0 && im->n < MAX_LINES) {
        lineno++;
        if (nf == 1 && fields[0][0] == '\0')
            continue; /* a blank line */
        if (im->n == cap) {
            cap = cap ? cap * 2 : 64;
            entry_t *ne = realloc(im->e, cap * sizeof(*ne));
            if (ne == NULL) {
                free(im->e);
                free(im);
                return CVX_ENOMEM;
            }
            im->e = ne;
        }
        entry_t *e = &im->e[im->n++];
        memset(e, 0, sizeof(*e));
        e->line = lineno;
        read_entry(e, fields, nf > MAX_FIELDS ? MAX_FIELDS + 1 : nf, cols, ncols);
    }
    im->st = st;
    im->line = line;
    im->cb = cb;
    im->arg = arg;
    im->pending = 1;
    for (size_t i = 0; i < im->n; i++) {
        entry_t *e = &im->e[i];
        e->im = im;
        if (e->why[0] != '\0')
            continue;
        int rc = cvx_store_mailbox_put(st, &e->mb, CVX_PUT_CREATE, on_created, e);
        if (rc != 0)
            snprintf(e->why, sizeof(e->why), "%s", cvx_strerror(rc));
        else
            im->pending++;
    }
    /* The first reference is dropped through the queue, so cb never runs inside this call. */
    im->release.st = st;
    st->loop_pending++;
    cvx_async_queue_post(&st->done, &im->release.job, release_run);
    return 0;
}
