/*
 * The store's shell commands: mailbox add|del|show|list|set|unlock|import, message list|
 * export, store stats|backup|verify.  Each one is a request to the service interface; the
 * handler returns CVX_CMD_PENDING and the completion finishes it on the loop.  Files (CSV
 * import) are read on the thread pool, never on the loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cvx/cmd.h"
#include "cvx/daemon.h"
#include "cvx/license.h"
#include "store_impl.h"

static const char *const folder_words[] = {"new", "saved", "deleted", "any", NULL};
static const char *const field_words[] = {
    "first_name",     "last_name",     "language",      "timezone", "email",           "mwi_device",
    "quota_messages", "quota_minutes", "max_message_s", "listed",   "retention_class", NULL};

static cvx_store_t *store_or_fail(cvx_cmd_req_t *req)
{
    cvx_store_t *st = cvx_store_default();
    if (st == NULL)
        cvx_cmd_error(req, "the message store does not run in this process (role %s)",
                      cvx_daemon_role_name(cvx_daemon_role()));
    return st;
}

/* Finishes a request from a done-style callback; "what" describes the success. */
typedef struct pend {
    cvx_cmd_req_t *req;
    char what[320];
    char number[CVX_STORE_NUMBER_MAX];
    char id[CVX_STORE_ID_MAX];
    cvx_mailbox_t mb;
    char pin[CVX_STORE_PIN_MAX + 1];
    int need_pin;
} pend_t;

static pend_t *pend_new(cvx_cmd_req_t *req)
{
    pend_t *p = calloc(1, sizeof(*p));
    if (p != NULL)
        p->req = req;
    return p;
}

/* Returns CVX_CMD_PENDING after a request was started, or the failure. */
static int started(cvx_cmd_req_t *req, pend_t *p, int rc)
{
    if (rc == 0)
        return CVX_CMD_PENDING;
    if (rc == CVX_EINVAL)
        cvx_cmd_error(req, "invalid argument");
    else if (rc == CVX_ENOTSUP && cvx_store_default() != NULL && cvx_store_default()->remote)
        cvx_cmd_error(req, "the message store is on the system server (this is a call server "
                           "and reaches it over the link): run this there");
    free(p);
    return rc;
}

static void not_found_msg(cvx_cmd_req_t *req, int status, const char *number)
{
    if (status == CVX_ENOTFOUND)
        cvx_cmd_error(req, "no mailbox %s", number);
    else if (status == CVX_EEXIST)
        cvx_cmd_error(req, "mailbox %s already exists", number);
    else
        cvx_cmd_error(req, "%s", cvx_strerror(status));
}

static void on_done(void *arg, int status)
{
    pend_t *p = arg;
    if (status == CVX_EEXIST && p->need_pin == 2)
        cvx_cmd_error(p->req, "the PIN repeats a recent one");
    else if (status == 0) {
        cvx_cmd_printf(p->req, "%s\n", p->what);
        cvx_cmd_json_str(p->req, "result", p->what);
    } else {
        not_found_msg(p->req, status, p->number);
    }
    cvx_cmd_finish(p->req, status);
    sodium_memzero(p, sizeof(*p));
    free(p);
}

/* --- mailbox add / del / unlock --------------------------------------------------------- */

static void on_added(void *arg, int status)
{
    pend_t *p = arg;
    if (status == CVX_ELIMIT) {
        cvx_cmd_error(p->req, "mailbox %s not added: the licence allows %u mailboxes", p->number,
                      cvx_license_max_mailboxes());
        cvx_cmd_finish(p->req, status);
        sodium_memzero(p, sizeof(*p));
        free(p);
        return;
    }
    if (status == 0 && p->need_pin) {
        /* The PIN is hashed on the thread pool, then set. */
        p->need_pin = 0;
        int rc = cvx_store_pin_set(cvx_store_default(), p->number, p->pin, on_added, p);
        if (rc == 0)
            return;
        status = rc;
    }
    on_done(arg, status);
}

static int cmd_mailbox_add(cvx_cmd_req_t *req)
{
    cvx_store_t *st = store_or_fail(req);
    if (st == NULL)
        return CVX_EUNAVAIL;
    const char *number = cvx_cmd_arg_named(req, "number");
    if (!cvx_store_valid_number(number)) {
        cvx_cmd_error(req, "'%s' is not a mailbox number (1 to 32 of 0-9 * # +)", number);
        return CVX_EINVAL;
    }
    pend_t *p = pend_new(req);
    if (p == NULL)
        return CVX_ENOMEM;
    cvx_mailbox_t *mb = &p->mb;
    store__copy(mb->number, number, sizeof(mb->number));
    store__copy(p->number, number, sizeof(p->number));
    const char *first = cvx_cmd_arg_named(req, "first_name");
    const char *last = cvx_cmd_arg_named(req, "last_name");
    store__copy(mb->first_name, first ? first : "", sizeof(mb->first_name));
    store__copy(mb->last_name, last ? last : "", sizeof(mb->last_name));
    mb->listed = 1;
    snprintf(p->what, sizeof(p->what), "mailbox %s added", number);
    return started(req, p, cvx_store_mailbox_put(st, mb, CVX_PUT_CREATE, on_added, p));
}

static int cmd_mailbox_del(cvx_cmd_req_t *req)
{
    cvx_store_t *st = store_or_fail(req);
    if (st == NULL)
        return CVX_EUNAVAIL;
    pend_t *p = pend_new(req);
    if (p == NULL)
        return CVX_ENOMEM;
    const char *number = cvx_cmd_arg_named(req, "number");
    store__copy(p->number, number, sizeof(p->number));
    snprintf(p->what, sizeof(p->what), "mailbox %s deleted with its messages and greetings",
             number);
    return started(req, p, cvx_store_mailbox_del(st, number, on_done, p));
}

static int cmd_mailbox_unlock(cvx_cmd_req_t *req)
{
    cvx_store_t *st = store_or_fail(req);
    if (st == NULL)
        return CVX_EUNAVAIL;
    pend_t *p = pend_new(req);
    if (p == NULL)
        return CVX_ENOMEM;
    const char *number = cvx_cmd_arg_named(req, "number");
    store__copy(p->number, number, sizeof(p->number));
    snprintf(p->what, sizeof(p->what), "mailbox %s unlocked", number);
    return started(req, p, cvx_store_mailbox_unlock(st, number, on_done, p));
}

/* --- mailbox show / set -------------------------------------------------------------------- */

static void fmt_time(uint64_t ms, char *buf, size_t size)
{
    if (ms == 0) {
        snprintf(buf, size, "-");
        return;
    }
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, size, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

static void show_mailbox(cvx_cmd_req_t *req, const cvx_mailbox_t *mb)
{
    char created[40], locked[40], greet[128] = "";
    fmt_time(mb->created_ms, created, sizeof(created));
    fmt_time(mb->locked_until_ms, locked, sizeof(locked));
    for (int g = 0; g < CVX_GREETING_COUNT; g++)
        if (mb->greetings & (1u << g))
            snprintf(greet + strlen(greet), sizeof(greet) - strlen(greet), "%s%s",
                     greet[0] ? " " : "", cvx_greeting_name(g));
    cvx_cmd_printf(req, "mailbox:        %s\n", mb->number);
    cvx_cmd_printf(req, "name:           %s %s\n", mb->first_name, mb->last_name);
    cvx_cmd_printf(req, "messages:       %u new (%u urgent), %u saved, %u deleted; %.1f min\n",
                   mb->msgs_new, mb->urgent_new, mb->msgs_saved, mb->msgs_deleted,
                   (double)mb->total_ms / 60000.0);
    cvx_cmd_printf(req, "quota:          %u messages, %u minutes (0: none)\n", mb->quota_messages,
                   mb->quota_minutes);
    cvx_cmd_printf(req, "max message:    %u s (0: site default)\n", mb->max_message_s);
    cvx_cmd_printf(req, "pin:            %s; %u failed attempts; locked until %s\n",
                   mb->has_pin ? "set" : "not set", mb->failed_logins, locked);
    cvx_cmd_printf(req, "greetings:      %s\n", greet[0] ? greet : "-");
    cvx_cmd_printf(req, "language:       %s\n", mb->language[0] ? mb->language : "-");
    cvx_cmd_printf(req, "timezone:       %s\n", mb->timezone[0] ? mb->timezone : "-");
    cvx_cmd_printf(req, "email:          %s\n", mb->email[0] ? mb->email : "-");
    cvx_cmd_printf(req, "mwi device:     %s\n", mb->mwi_device[0] ? mb->mwi_device : "-");
    cvx_cmd_printf(req, "directory:      %s\n", mb->listed ? "listed" : "not listed");
    cvx_cmd_printf(req, "retention:      class %u\n", mb->retention_class);
    cvx_cmd_printf(req, "created:        %s\n", created);
    cvx_cmd_json_str(req, "number", mb->number);
    cvx_cmd_json_str(req, "first_name", mb->first_name);
    cvx_cmd_json_str(req, "last_name", mb->last_name);
    cvx_cmd_json_uint(req, "new", mb->msgs_new);
    cvx_cmd_json_uint(req, "urgent_new", mb->urgent_new);
    cvx_cmd_json_uint(req, "saved", mb->msgs_saved);
    cvx_cmd_json_uint(req, "deleted", mb->msgs_deleted);
    cvx_cmd_json_uint(req, "quota_messages", mb->quota_messages);
    cvx_cmd_json_uint(req, "quota_minutes", mb->quota_minutes);
    cvx_cmd_json_uint(req, "max_message_s", mb->max_message_s);
    cvx_cmd_json_bool(req, "has_pin", mb->has_pin);
    cvx_cmd_json_uint(req, "failed_logins", mb->failed_logins);
    cvx_cmd_json_uint(req, "locked_until_ms", mb->locked_until_ms);
    cvx_cmd_json_uint(req, "greetings", mb->greetings);
    cvx_cmd_json_uint(req, "greeting_flags", mb->greeting_flags);
    cvx_cmd_json_uint(req, "temporary_until_ms", mb->temporary_until_ms);
    cvx_cmd_json_str(req, "language", mb->language);
    cvx_cmd_json_str(req, "timezone", mb->timezone);
    cvx_cmd_json_str(req, "email", mb->email);
    cvx_cmd_json_str(req, "mwi_device", mb->mwi_device);
    cvx_cmd_json_bool(req, "listed", mb->listed);
    cvx_cmd_json_uint(req, "retention_class", mb->retention_class);
}

static void on_show(void *arg, int status, const cvx_mailbox_t *mb)
{
    pend_t *p = arg;
    if (status == 0)
        show_mailbox(p->req, mb);
    else
        not_found_msg(p->req, status, p->number);
    cvx_cmd_finish(p->req, status);
    free(p);
}

static int cmd_mailbox_show(cvx_cmd_req_t *req)
{
    cvx_store_t *st = store_or_fail(req);
    if (st == NULL)
        return CVX_EUNAVAIL;
    pend_t *p = pend_new(req);
    if (p == NULL)
        return CVX_ENOMEM;
    const char *number = cvx_cmd_arg_named(req, "number");
    store__copy(p->number, number, sizeof(p->number));
    return started(req, p, cvx_store_mailbox_get(st, number, on_show, p));
}

/* Applies "field value" to mb; returns 0 or sets the request's error. */
static int set_field(cvx_cmd_req_t *req, cvx_mailbox_t *mb, const char *field, const char *value)
{
    struct {
        const char *name;
        char *s;
        size_t size;
        uint32_t *u;
    } f[] = {
        {"first_name", mb->first_name, sizeof(mb->first_name), NULL},
        {"last_name", mb->last_name, sizeof(mb->last_name), NULL},
        {"language", mb->language, sizeof(mb->language), NULL},
        {"timezone", mb->timezone, sizeof(mb->timezone), NULL},
        {"email", mb->email, sizeof(mb->email), NULL},
        {"mwi_device", mb->mwi_device, sizeof(mb->mwi_device), NULL},
        {"quota_messages", NULL, 0, &mb->quota_messages},
        {"quota_minutes", NULL, 0, &mb->quota_minutes},
        {"max_message_s", NULL, 0, &mb->max_message_s},
    };
    if (strcmp(field, "retention_class") == 0) {
        if (value[0] < '0' || value[0] > '0' + CVX_STORE_RETENTION_CLASSES - 1 || value[1]) {
            cvx_cmd_error(req, "retention_class: '%s' is not a class from 0 to %d", value,
                          CVX_STORE_RETENTION_CLASSES - 1);
            return CVX_EINVAL;
        }
        mb->retention_class = (uint8_t)(value[0] - '0');
        return 0;
    }
    if (strcmp(field, "listed") == 0) {
        if (strcmp(value, "yes") == 0)
            mb->listed = 1;
        else if (strcmp(value, "no") == 0)
            mb->listed = 0;
        else {
            cvx_cmd_error(req, "listed: '%s' is not yes or no", value);
            return CVX_EINVAL;
        }
        return 0;
    }
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
        if (strcmp(field, f[i].name) != 0)
            continue;
        if (f[i].s != NULL) {
            if (!store__copy(f[i].s, value, f[i].size)) {
                cvx_cmd_error(req, "%s: longer than %zu characters", field, f[i].size - 1);
                return CVX_EINVAL;
            }
            return 0;
        }
        char *end;
        errno = 0;
        unsigned long v = strtoul(value, &end, 10);
        if (value[0] == '\0' || value[0] == '-' || *end != '\0' || errno != 0 || v > 0xffffffffUL) {
            cvx_cmd_error(req, "%s: '%s' is not a number", field, value);
            return CVX_EINVAL;
        }
        *f[i].u = (uint32_t)v;
        return 0;
    }
    cvx_cmd_error(req, "unknown field '%s'", field);
    return CVX_EINVAL;
}

typedef struct setreq {
    pend_t p;
    char field[32];
    char value[CVX_STORE_TEXT_MAX];
} setreq_t;

static void on_set_loaded(void *arg, int status, const cvx_mailbox_t *mb)
{
    setreq_t *s = arg;
    cvx_cmd_req_t *req = s->p.req;
    if (status != 0) {
        not_found_msg(req, status, s->p.number);
        cvx_cmd_finish(req, status);
        free(s);
        return;
    }
    cvx_mailbox_t copy = *mb;
    int rc = set_field(req, &copy, s->field, s->value);
    if (rc == 0)
        rc = cvx_store_mailbox_put(cvx_store_default(), &copy, CVX_PUT_UPDATE, on_done, &s->p);
    if (rc != 0) {
        cvx_cmd_finish(req, rc);
        free(s);
    }
}

static int cmd_mailbox_set(cvx_cmd_req_t *req)
{
    cvx_store_t *st = store_or_fail(req);
    if (st == NULL)
        return CVX_EUNAVAIL;
    const char *number = cvx_cmd_arg_named(req, "number");
    const char *field = cvx_cmd_arg_named(req, "field");
    const char *value = cvx_cmd_rest(req, 2);
    if (value == NULL)
        value = "";
    setreq_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return CVX_ENOMEM;
    s->p.req = req;
    store__copy(s->p.number, number, sizeof(s->p.number));
    store__copy(s->field, field, sizeof(s->field));
    if (!store__copy(s->value, value, sizeof(s->value))) {
        free(s);
        cvx_cmd_error(req, "%s: the value is too long", field);
        return CVX_EINVAL;
    }
    snprintf(s->p.what, sizeof(s->p.what), "mailbox %s: %s = %s", number, field, value);
    return started(req, &s->p, cvx_store_mailbox_get(st, number, on_set_loaded, s));
}

static int cmd_mailbox_pin(cvx_cmd_req_t *req)
{
    cvx_store_t *st = store_or_fail(req);
    if (st == NULL)
        return CVX_EUNAVAIL;
    const char *number = cvx_cmd_arg_named(req, "number");
    const char *pin = cvx_cmd_arg_named(req, "pin");
    size_t n = strlen(pin);
    if (n < CVX_STORE_PIN_MIN || n > CVX_STORE_PIN_MAX || strspn(pin, "0123456789") != n) {
        cvx_cmd_error(req, "the PIN must be %d to %d digits", CVX_STORE_PIN_MIN, CVX_STORE_PIN_MAX);
        return CVX_EINVAL;
    }
    pend_t *p = pend_new(req);
    if (p == NULL)
        return CVX_ENOMEM;
    store__copy(p->number, number, sizeof(p->number));
    snprintf(p->what, sizeof(p->what), "mailbox %s: PIN changed", number);
    p->need_pin = 2; /* tells on_done that CVX_EEXIST is about the PIN history */
    return started(req, p, cvx_store_pin_set(st, number, pin, on_done, p));
}

/* --- mailbox list ---------------------------------------------------------------------------- */

static void on_list_mailboxes(void *arg, int status, const cvx_mailbox_t *mbs, size_t n)
{
    pend_t *p = arg;
    if (status == 0) {
        static const char *const cols[] = {"number", "first_name", "last_name", "new#",
                                           "saved#", "pin",        NULL};
        cvx_cmd_table_begin(p->req, "mailboxes", cols);
        for (size_t i = 0; i < n; i++) {
            char nw[16], sv[16];
            snprintf(nw, sizeof(nw), "%u", mbs[i].msgs_new);
            snprintf(sv, sizeof(sv), "%u", mbs[i].msgs_saved);
            const char *cells[] = {mbs[i].number,
                                   mbs[i].first_name,
                                   mbs[i].last_name,
                                   nw,
                                   sv,
                                   mbs[i].has_pin ? "set" : "-"};
            cvx_cmd_table_row(p->req, cells);
        }
        cvx_cmd_table_end(p->req);
        cvx_cmd_printf(p->req, "%zu mailbox%s\n", n, n == 1 ? "" : "es");
    } else {
        cvx_cmd_error(p->req, "%s", cvx_strerror(status));
    }
    cvx_cmd_finish(p->req, status);
    free(p);
}

static int cmd_mailbox_list(cvx_cmd_req_t *req)
{
    cvx_store_t *st = store_or_fail(req);
    if (st == NULL)
        return CVX_EUNAVAIL;
    pend_t *p = pend_new(req);
    if (p == NULL)
        return CVX_ENOMEM;
    const char *after = cvx_cmd_arg_named(req, "after");
    return started(req, p,
                   cvx_store_mailbox_list(st, after ? after : "", 1000, on_list_mailboxes, p));
}

/* --- mailbox import ------------------------------------------------------------------------- */

typedef struct importreq {
    uv_work_t work;
    cvx_cmd_req_t *req;
    char path[4096];
    char *text;
    size_t len;
    int err;
    unsigned added, rejected;
} importreq_t;

static void read_work(uv_work_t *w)
{
    importreq_t *im = w->data;
    int fd = open(im->path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        im->err = errno;
        if (fd >= 0)
            close(fd);
        return;
    }
    if (sb.st_size > 64 << 20) {
        im->err = EFBIG;
        close(fd);
        return;
    }
    im->text = malloc((size_t)sb.st_size + 1);
    size_t got = 0;
    while (im->text != NULL && got < (size_t)sb.st_size) {
        ssize_t n = read(fd, im->text + got, (size_t)sb.st_size - got);
        if (n <= 0) {
            im->err = n < 0 ? errno : EIO;
            break;
        }
        got += (size_t)n;
    }
    if (im->text == NULL)
        im->err = ENOMEM;
    im->len = got;
    close(fd);
}

static void on_import_line(void *arg, const char *line)
{
    importreq_t *im = arg;
    cvx_cmd_printf(im->req, "%s\n", line);
    if (strstr(line, ": added ") != NULL)
        im->added++;
}

static void on_import_done(void *arg, int status)
{
    importreq_t *im = arg;
    if (status > 0) {
        cvx_cmd_error(im->req, "import: %u added, %d rejected", im->added, status);
    } else if (status == 0) {
        cvx_cmd_printf(im->req, "import: %u added, %d rejected\n", im->added, status);
        cvx_cmd_json_uint(im->req, "added", im->added);
        cvx_cmd_json_int(im->req, "rejected", status);
    } else {
        cvx_cmd_error(im->req, "%s: %s", im->path, cvx_strerror(status));
    }
    /* Lines rejected make the command fail, so scripts notice. */
    cvx_cmd_finish(im->req, status == 0 ? 0 : status > 0 ? CVX_EINVAL : status);
    free(im->text);
    free(im);
}

static void read_after(uv_work_t *w, int status)
{
    importreq_t *im = w->data;
    cvx_store_t *st = cvx_store_default();
    int rc = status != 0 ? CVX_EIO : im->err ? cvx_from_errno(im->err) : 0;
    if (rc == 0 && st == NULL)
        rc = CVX_EUNAVAIL;
    if (rc == 0)
        rc = cvx_store_import_csv(st, im->text, im->len, on_import_line, on_import_done, im);
    if (rc != 0) {
        cvx_cmd_error(im->req, "cannot read %s: %s", im->path,
                      im->err ? strerror(im->err) : cvx_strerror(rc));
        cvx_cmd_finish(im->req, rc);
        free(im->text);
        free(im);
    }
}

static int cmd_mailbox_import(cvx_cmd_req_t *req)
{
    if (store_or_fail(req) == NULL)
        return CVX_EUNAVAIL;
    importreq_t *im = calloc(1, sizeof(*im));
    if (im == NULL)
        return CVX_ENOMEM;
    im->req = req;
    store__copy(im->path, cvx_cmd_arg_named(req, "file"), sizeof(im->path));
    im->work.data = im;
    if (uv_queue_work(cvx_daemon_loop(), &im->work, read_work, read_after) != 0) {
        free(im);
        return CVX_EIO;
    }
    return CVX_CMD_PENDING;
}

/* --- messages --------------------------------------------------------------------------- */

static void on_message_list(void *arg, int status, const cvx_message_t *m, size_t n)
{
    pend_t *p = arg;
    if (status != 0) {
        not_found_msg(p->req, status, p->number);
        cvx_cmd_finish(p->req, status);
        free(p);
        return;
    }
    static const char *const cols[] = {"id",   "folder",   "received", "from",
                                       "name", "seconds#", "flags",    NULL};
    cvx_cmd_table_begin(p->req, "messages", cols);
    for (size_t i = 0; i < n; i++) {
        char when[40], secs[16], flags[32];
        fmt_time(m[i].received_ms, when, sizeof(when));
        snprintf(secs, sizeof(secs), "%.1f", (double)m[i].duration_ms / 1000.0);
        snprintf(flags, sizeof(flags), "%s%s%s", m[i].flags & CVX_MSG_URGENT ? "urgent" : "",
                 (m[i].flags & CVX_MSG_URGENT) && (m[i].flags & CVX_MSG_PRIVATE) ? "," : "",
                 m[i].flags & CVX_MSG_PRIVATE ? "private" : "");
        const char *cells[] = {m[i].id,
                               cvx_folder_name((cvx_folder_t)m[i].folder),
                               when,
                               m[i].caller_number[0] ? m[i].caller_number : "-",
                               m[i].caller_name[0] ? m[i].caller_name : "-",
                               secs,
                               flags[0] ? flags : "-"};
        cvx_cmd_table_row(p->req, cells);
    }
    cvx_cmd_table_end(p->req);
    cvx_cmd_printf(p->req, "%zu message%s\n", n, n == 1 ? "" : "s");
    cvx_cmd_finish(p->req, 0);
    free(p);
}

static int cmd_message_list(cvx_cmd_req_t *req)
{
    cvx_store_t *st = store_or_fail(req);
    if (st == NULL)
        return CVX_EUNAVAIL;
    pend_t *p = pend_new(req);
    if (p == NULL)
        return CVX_ENOMEM;
    const char *number = cvx_cmd_arg_named(req, "mailbox");
    const char *folder = cvx_cmd_arg_named(req, "folder");
    store__copy(p->number, number, sizeof(p->number));
    int f = folder ? cvx_folder_from_name(folder) : CVX_FOLDER_ANY;
    return started(req, p, cvx_store_message_list(st, number, f, on_message_list, p));
}

static void on_exported(void *arg, int status)
{
    pend_t *p = arg;
    if (status == CVX_ENOTFOUND)
        cvx_cmd_error(p->req, "no message %s", p->id);
    else if (status == CVX_ECORRUPT)
        cvx_cmd_error(p->req, "message %s: its audio fails the SHA-256 check; not exported", p->id);
    else if (status != 0)
        cvx_cmd_error(p->req, "cannot export message %s: %s", p->id, cvx_strerror(status));
    else
        cvx_cmd_printf(p->req, "%s\n", p->what);
    cvx_cmd_finish(p->req, status);
    free(p);
}

static int cmd_message_export(cvx_cmd_req_t *req)
{
    cvx_store_t *st = store_or_fail(req);
    if (st == NULL)
        return CVX_EUNAVAIL;
    const char *id = cvx_cmd_arg_named(req, "id");
    const char *file = cvx_cmd_arg_named(req, "file");
    if (file[0] != '/') {
        cvx_cmd_error(req, "give the file as an absolute path (the daemon writes it)");
        return CVX_EINVAL;
    }
    pend_t *p = pend_new(req);
    if (p == NULL)
        return CVX_ENOMEM;
    store__copy(p->id, id, sizeof(p->id));
    snprintf(p->what, sizeof(p->what), "message %.64s written to %.80s", id, file);
    return started(req, p, cvx_store_message_export(st, id, file, on_exported, p));
}

/* --- store stats / backup / verify ---------------------------------------------------------- */

static void on_stats(void *arg, int status, const cvx_store_stats_t *s)
{
    pend_t *p = arg;
    cvx_cmd_req_t *req = p->req;
    if (status != 0) {
        cvx_cmd_error(req, "%s", cvx_strerror(status));
        cvx_cmd_finish(req, status);
        free(p);
        return;
    }
    cvx_store_t *st = cvx_store_default();
    cvx_cmd_printf(req, "path:          %s (schema %u)\n", st ? st->path : "-", s->schema);
    cvx_cmd_printf(req, "size:          %.1f MB on disk, %.1f MB of pages in use\n",
                   (double)s->file_bytes / 1048576.0, (double)s->used_bytes / 1048576.0);
    cvx_cmd_printf(req, "map:           %.0f MB, grows to %.0f MB (%.1f%% used)\n",
                   (double)s->map_bytes / 1048576.0, (double)s->map_max_bytes / 1048576.0,
                   s->map_bytes ? 100.0 * (double)s->used_bytes / (double)s->map_bytes : 0.0);
    cvx_cmd_printf(req, "readers:       %u of %u\n", s->readers, s->max_readers);
    cvx_cmd_printf(req, "mailboxes:     %llu\n", (unsigned long long)s->mailboxes);
    cvx_cmd_printf(req, "messages:      %llu\n", (unsigned long long)s->messages);
    cvx_cmd_printf(req,
                   "audio:         %llu blobs, %.1f MB in %llu chunks; %llu shared, %llu "
                   "references\n",
                   (unsigned long long)s->blobs, (double)s->blob_bytes / 1048576.0,
                   (unsigned long long)s->chunks, (unsigned long long)s->blobs_shared,
                   (unsigned long long)s->references);
    cvx_cmd_printf(req, "recording:     %llu deposits in progress\n",
                   (unsigned long long)s->open_streams);
    cvx_cmd_printf(req, "writer:        %llu commits in %llu transactions, %llu refused (full)\n",
                   (unsigned long long)s->commits, (unsigned long long)s->transactions,
                   (unsigned long long)s->full_refusals);
    cvx_cmd_json_str(req, "path", st ? st->path : "");
    cvx_cmd_json_uint(req, "schema", s->schema);
    cvx_cmd_json_uint(req, "file_bytes", s->file_bytes);
    cvx_cmd_json_uint(req, "used_bytes", s->used_bytes);
    cvx_cmd_json_uint(req, "map_bytes", s->map_bytes);
    cvx_cmd_json_uint(req, "map_max_bytes", s->map_max_bytes);
    cvx_cmd_json_uint(req, "readers", s->readers);
    cvx_cmd_json_uint(req, "max_readers", s->max_readers);
    cvx_cmd_json_uint(req, "mailboxes", s->mailboxes);
    cvx_cmd_json_uint(req, "messages", s->messages);
    cvx_cmd_json_uint(req, "blobs", s->blobs);
    cvx_cmd_json_uint(req, "blob_bytes", s->blob_bytes);
    cvx_cmd_json_uint(req, "chunks", s->chunks);
    cvx_cmd_json_uint(req, "blobs_shared", s->blobs_shared);
    cvx_cmd_json_uint(req, "references", s->references);
    cvx_cmd_json_uint(req, "open_streams", s->open_streams);
    cvx_cmd_json_uint(req, "commits", s->commits);
    cvx_cmd_json_uint(req, "transactions", s->transactions);
    cvx_cmd_json_uint(req, "full_refusals", s->full_refusals);
    cvx_cmd_finish(req, 0);
    free(p);
}

static int cmd_store_stats(cvx_cmd_req_t *req)
{
    cvx_store_t *st = store_or_fail(req);
    if (st == NULL)
        return CVX_EUNAVAIL;
    pend_t *p = pend_new(req);
    if (p == NULL)
        return CVX_ENOMEM;
    return started(req, p, cvx_store_stats(st, on_stats, p));
}

static void on_backup(void *arg, int status)
{
    pend_t *p = arg;
    if (status == CVX_EEXIST)
        cvx_cmd_error(p->req, "%s holds a data.mdb already; give an empty directory", p->what);
    else if (status == CVX_ENOTFOUND)
        cvx_cmd_error(p->req, "%s is not a directory", p->what);
    else if (status != 0)
        cvx_cmd_error(p->req, "backup to %s failed: %s", p->what, cvx_strerror(status));
    else
        cvx_cmd_printf(p->req, "backup written to %s/data.mdb\n", p->what);
    cvx_cmd_finish(p->req, status);
    free(p);
}

static int cmd_store_backup(cvx_cmd_req_t *req)
{
    cvx_store_t *st = store_or_fail(req);
    if (st == NULL)
        return CVX_EUNAVAIL;
    const char *dir = cvx_cmd_arg_named(req, "dir");
    if (dir[0] != '/') {
        cvx_cmd_error(req, "give the directory as an absolute path (the daemon writes it)");
        return CVX_EINVAL;
    }
    pend_t *p = pend_new(req);
    if (p == NULL)
        return CVX_ENOMEM;
    snprintf(p->what, sizeof(p->what), "%s", dir);
    return started(req, p, cvx_store_backup(st, dir, on_backup, p));
}

static void on_verify_line(void *arg, const char *line)
{
    pend_t *p = arg;
    cvx_cmd_printf(p->req, "%s\n", line);
}

static void on_verified(void *arg, int status)
{
    pend_t *p = arg;
    if (status < 0)
        cvx_cmd_error(p->req, "%s", cvx_strerror(status));
    else
        cvx_cmd_printf(p->req, "verify: %d problem%s\n", status, status == 1 ? "" : "s");
    cvx_cmd_json_int(p->req, "problems", status);
    cvx_cmd_finish(p->req, status < 0 ? status : status > 0 ? CVX_ECORRUPT : 0);
    free(p);
}

static int cmd_store_verify(cvx_cmd_req_t *req)
{
    cvx_store_t *st = store_or_fail(req);
    if (st == NULL)
        return CVX_EUNAVAIL;
    pend_t *p = pend_new(req);
    if (p == NULL)
        return CVX_ENOMEM;
    return started(req, p, cvx_store_verify(st, on_verify_line, on_verified, p));
}

/* --- table ------------------------------------------------------------------------------- */

#define NUMBER_ARG                                                                                 \
    {                                                                                              \
        "number", 0, NULL, "mailbox", "the mailbox number"                                         \
    }

static const cvx_cmd_t store_cmds[] = {
    {"mailbox add",
     {NUMBER_ARG,
      {"first_name", CVX_CMD_ARG_OPTIONAL, NULL, NULL, "first name"},
      {"last_name", CVX_CMD_ARG_OPTIONAL, NULL, NULL, "last name"}},
     0,
     "Create a mailbox",
     "Creates the mailbox with that number, listed in the directory under the names given. "
     "Set its PIN and options with 'mailbox set'.",
     cmd_mailbox_add,
     NULL},
    {"mailbox del",
     {NUMBER_ARG},
     0,
     "Delete a mailbox",
     "Deletes the mailbox with all its messages, greetings, recorded name, directory entry and "
     "message-waiting state.",
     cmd_mailbox_del,
     NULL},
    {"mailbox show",
     {NUMBER_ARG},
     CVX_CMD_READONLY,
     "Show a mailbox",
     "Shows a mailbox's names, message counts, quotas, PIN and lock state, greetings and "
     "options.",
     cmd_mailbox_show,
     NULL},
    {"mailbox list",
     {{"after", CVX_CMD_ARG_OPTIONAL, NULL, "mailbox", "list from after this"}},
     CVX_CMD_READONLY,
     "List mailboxes",
     "Lists up to 1000 mailboxes in number order, starting after the number given.",
     cmd_mailbox_list,
     NULL},
    {"mailbox set",
     {NUMBER_ARG,
      {"field", 0, field_words, NULL, "what to change"},
      {"value", CVX_CMD_ARG_REST, NULL, NULL, "the new value"}},
     0,
     "Change a mailbox's PIN or options",
     "Sets one field: first_name, last_name, language, timezone, email, mwi_device, "
     "quota_messages, quota_minutes, max_message_s "
     "(numbers; 0 means none or the site default), listed (yes or no) or retention_class "
     "(0 to 3: how long saved messages are kept, see [store]).",
     cmd_mailbox_set,
     NULL},
    {"mailbox pin",
     {NUMBER_ARG, {"pin", CVX_CMD_ARG_SECRET, NULL, NULL, "4 to 16 digits"}},
     0,
     "Set a mailbox's PIN",
     "Sets the PIN (4 to 16 digits; not the current one nor one of the last pin_history). "
     "It is stored as a salted slow hash; the audit log shows *** in its place.",
     cmd_mailbox_pin,
     NULL},
    {"mailbox unlock",
     {NUMBER_ARG},
     0,
     "Unlock a mailbox locked by wrong PINs",
     "Clears the failed PIN attempts and the lock.",
     cmd_mailbox_unlock,
     NULL},
    {"mailbox import",
     {{"file", 0, NULL, NULL, "a CSV file the daemon can read"}},
     0,
     "Create mailboxes from a CSV file",
     "Reads a CSV file whose header names columns among number, first_name, last_name, pin, "
     "language, timezone, email, mwi_device, quota_messages, quota_minutes, max_message_s and "
     "listed, and creates one mailbox per line.  Every line is reported: added, or rejected "
     "with the reason.  Fails when any line was rejected.",
     cmd_mailbox_import,
     NULL},
    {"message list",
     {{"mailbox", 0, NULL, "mailbox", "the mailbox number"},
      {"folder", CVX_CMD_ARG_OPTIONAL, folder_words, NULL, "new, saved, deleted or any"}},
     CVX_CMD_READONLY,
     "List a mailbox's messages",
     "Lists the messages of a mailbox, oldest first: id, folder, time received, caller, "
     "length and flags.",
     cmd_message_list,
     NULL},
    {"message export",
     {{"id", 0, NULL, NULL, "the message id"},
      {"file", 0, NULL, NULL, "the WAV file to write (absolute path)"}},
     0,
     "Write a message's audio to a WAV file",
     "Checks the message's audio against its SHA-256 and writes it as a WAV file (G.711 or "
     "16-bit linear, as recorded).  The daemon writes the file, as its own user.",
     cmd_message_export,
     NULL},
    {"store stats",
     {{0}},
     CVX_CMD_READONLY,
     "Message store figures",
     "Size on disk, map size and use, readers, counts of mailboxes, messages, audio blobs "
     "and chunks, shared audio, deposits in progress, commits and transactions.",
     cmd_store_stats,
     NULL},
    {"store backup",
     {{"dir", 0, NULL, NULL, "an existing empty directory (absolute path)"}},
     0,
     "Copy the message store while it runs",
     "Writes a consistent, compacted copy of the store (data.mdb) into an empty directory "
     "while the system keeps running.  To restore: stop callvoxd, replace data.mdb in the "
     "store's directory (see 'store stats') with the copy, remove lock.mdb, start callvoxd.",
     cmd_store_backup,
     NULL},
    {"store verify",
     {{0}},
     CVX_CMD_READONLY,
     "Check the message store",
     "Checks every audio blob against its SHA-256, every reference count against the "
     "messages and greetings that use it, and that no chunk is orphaned.  Fails when a "
     "problem is found.",
     cmd_store_verify,
     NULL},
    CVX_CMDS_END,
};

/* Tab completion of mailbox numbers: one short read transaction. */
static void complete_mailbox(cvx_cmd_comp_t *c, const char *prefix, void *arg)
{
    (void)arg;
    cvx_store_t *st = cvx_store_default();
    MDB_txn *txn;
    MDB_cursor *cur;
    if (st == NULL || st->remote != NULL || store__read_begin(st, &txn) != 0)
        return; /* a call server completes no mailbox numbers */
    if (mdb_cursor_open(txn, st->dbi[DB_MAILBOXES], &cur) == 0) {
        size_t n = strlen(prefix);
        MDB_val k = {n, (void *)prefix}, v;
        int count = 0;
        for (int rc = n ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)
                        : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
             rc == 0 && count < 200; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT), count++) {
            if (k.mv_size < n || memcmp(k.mv_data, prefix, n) != 0 ||
                k.mv_size >= CVX_STORE_NUMBER_MAX)
                break;
            char num[CVX_STORE_NUMBER_MAX];
            memcpy(num, k.mv_data, k.mv_size);
            num[k.mv_size] = '\0';
            cvx_cmd_comp_add(c, num);
        }
        mdb_cursor_close(cur);
    }
    store__read_end(st, txn);
}

static const cvx_cmd_completer_t mailbox_completer = {"mailbox", complete_mailbox, NULL};

int store__cmds_register(void)
{
    int rc = cvx_cmd_register(store_cmds);
    if (rc == 0)
        rc = cvx_cmd_add_completer(&mailbox_completer);
    return rc;
}
