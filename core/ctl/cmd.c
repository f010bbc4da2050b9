/*
 * The command registry: tables of commands, parsing a typed line against them, rights,
 * argument checks, running handlers and collecting their output (text, JSON, tables).
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cvx/cmd.h"
#include "cvx/error.h"
#include "cvx/log.h"
#include "ctl.h"
#include "proto.h"

#define MAX_TABLES     64
#define MAX_COMPLETERS 32
#define MAX_WORDS      64
#define JSON_DEPTH     32
#define TABLE_COLS     16

typedef struct table_reg {
    const cvx_cmd_t *table;
    size_t entry_size;
} table_reg_t;

static table_reg_t tables[MAX_TABLES];
static unsigned ntables;
static const cvx_cmd_completer_t *completers[MAX_COMPLETERS];
static unsigned ncompleters;

/* --- a growing string -------------------------------------------------------------------- */

typedef struct sbuf {
    char *s;
    size_t len, cap;
    int oom;
} sbuf_t;

static void sb_grow(sbuf_t *b, size_t more)
{
    if (b->oom || b->len + more + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *ns = realloc(b->s, cap);
    if (ns == NULL) {
        b->oom = 1;
        return;
    }
    b->s = ns;
    b->cap = cap;
}

static void sb_add(sbuf_t *b, const char *s, size_t n)
{
    sb_grow(b, n);
    if (b->oom)
        return;
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void sb_str(sbuf_t *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static void sb_vprintf(sbuf_t *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n <= 0)
        return;
    sb_grow(b, (size_t)n);
    if (b->oom)
        return;
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

static void sb_printf(sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sb_vprintf(b, fmt, ap);
    va_end(ap);
}

/* Length of the valid UTF-8 sequence at p (a lead byte >= 0x80), or 0. */
static size_t utf8_len(const unsigned char *p)
{
    size_t n;
    unsigned min;
    unsigned cp;
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        n = 2, min = 0x80, cp = p[0] & 0x1f;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        n = 3, min = 0x800, cp = p[0] & 0x0f;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        n = 4, min = 0x10000, cp = p[0] & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

static void sb_json_string(sbuf_t *b, const char *s)
{
    sb_add(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        switch (*p) {
        case '"':
            sb_add(b, "\\\"", 2);
            break;
        case '\\':
            sb_add(b, "\\\\", 2);
            break;
        case '\n':
            sb_add(b, "\\n", 2);
            break;
        case '\t':
            sb_add(b, "\\t", 2);
            break;
        case '\r':
            sb_add(b, "\\r", 2);
            break;
        default:
            if (*p < 0x20) {
                snprintf(esc, sizeof(esc), "\\u%04x", *p);
                sb_str(b, esc);
            } else if (*p < 0x80) {
                sb_add(b, (const char *)p, 1);
            } else {
                /* Numbers and names can come from the network: bytes that are not UTF-8
                 * become U+FFFD so that the document stays valid JSON. */
                size_t n = utf8_len(p);
                if (n == 0) {
                    sb_str(b, "\\ufffd");
                } else {
                    sb_add(b, (const char *)p, n);
                    p += n - 1;
                }
            }
        }
    }
    sb_add(b, "\"", 1);
}

/* --- the request ---------------------------------------------------------------------- */

struct cvx_cmd_req {
    const cvx_cmd_t *cmd;
    cvx__ctl_peer_t peer;
    char *line;
    char *wordbuf;
    char *words[MAX_WORDS];
    int nwords, first_arg;
    char *rest[CVX_CMD_ARGS_MAX]; /* REST arguments joined, allocated on demand */
    int json;
    sbuf_t text, js;
    int js_depth;
    int js_first[JSON_DEPTH];
    char js_kind[JSON_DEPTH]; /* '{' or '[' */
    int js_written;
    char *error;
    /* the table being written */
    char *cols[TABLE_COLS];
    int ncols;
    char **cells; /* rows * ncols strings, text form only */
    size_t nrows, rows_cap;
    cvx__cmd_done_fn done;
    void *done_arg;
    int in_handler;     /* the handler is running */
    int finished_early; /* it called cvx_cmd_finish() before returning */
    int early_rc;
};

static void req_free(cvx_cmd_req_t *r)
{
    free(r->line);
    free(r->wordbuf);
    for (int i = 0; i < CVX_CMD_ARGS_MAX; i++)
        free(r->rest[i]);
    free(r->text.s);
    free(r->js.s);
    free(r->error);
    for (int i = 0; i < r->ncols; i++)
        free(r->cols[i]);
    for (size_t i = 0; i < r->nrows * (size_t)r->ncols; i++)
        free(r->cells[i]);
    free(r->cells);
    free(r);
}

const cvx_cmd_t *cvx_cmd_command(const cvx_cmd_req_t *req)
{
    return req->cmd;
}

void *cvx_cmd_data(const cvx_cmd_req_t *req)
{
    return req->cmd->data;
}

int cvx_cmd_argc(const cvx_cmd_req_t *req)
{
    return req->nwords - req->first_arg;
}

const char *cvx_cmd_arg(const cvx_cmd_req_t *req, int i)
{
    if (i < 0 || i >= cvx_cmd_argc(req))
        return NULL;
    return req->words[req->first_arg + i];
}

const char *cvx_cmd_rest(const cvx_cmd_req_t *req, int i)
{
    if (i < 0 || i >= cvx_cmd_argc(req) || i >= CVX_CMD_ARGS_MAX)
        return NULL;
    cvx_cmd_req_t *r = (cvx_cmd_req_t *)req;
    if (r->rest[i] == NULL) {
        sbuf_t b = {0};
        for (int w = req->first_arg + i; w < req->nwords; w++) {
            if (w > req->first_arg + i)
                sb_add(&b, " ", 1);
            sb_str(&b, req->words[w]);
        }
        r->rest[i] = b.s;
    }
    return r->rest[i];
}

const char *cvx_cmd_arg_named(const cvx_cmd_req_t *req, const char *name)
{
    for (int i = 0; i < CVX_CMD_ARGS_MAX && req->cmd->args[i].name != NULL; i++)
        if (strcmp(req->cmd->args[i].name, name) == 0)
            return req->cmd->args[i].flags & CVX_CMD_ARG_REST ? cvx_cmd_rest(req, i)
                                                              : cvx_cmd_arg(req, i);
    return NULL;
}

const char *cvx_cmd_user(const cvx_cmd_req_t *req)
{
    return req->peer.user;
}

uint32_t cvx_cmd_uid(const cvx_cmd_req_t *req)
{
    return req->peer.uid;
}

int cvx_cmd_is_admin(const cvx_cmd_req_t *req)
{
    return req->peer.admin;
}

int cvx_cmd_json(const cvx_cmd_req_t *req)
{
    return req->json;
}

void cvx_cmd_printf(cvx_cmd_req_t *req, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sb_vprintf(&req->text, fmt, ap);
    va_end(ap);
}

void cvx_cmd_error(cvx_cmd_req_t *req, const char *fmt, ...)
{
    sbuf_t b = {0};
    va_list ap;
    va_start(ap, fmt);
    sb_vprintf(&b, fmt, ap);
    va_end(ap);
    free(req->error);
    req->error = b.s;
}

/* --- JSON ------------------------------------------------------------------------------- */

/* Writes the separator and the key of the next value; 0 when JSON is off. */
static int js_key(cvx_cmd_req_t *r, const char *key)
{
    if (!r->json)
        return 0;
    r->js_written = 1;
    if (!r->js_first[r->js_depth])
        sb_add(&r->js, ",", 1);
    r->js_first[r->js_depth] = 0;
    if (r->js_kind[r->js_depth] == '{') {
        sb_json_string(&r->js, key ? key : "");
        sb_add(&r->js, ":", 1);
    }
    return 1;
}

static void js_open(cvx_cmd_req_t *r, const char *key, char kind)
{
    if (!js_key(r, key))
        return;
    sb_add(&r->js, kind == '{' ? "{" : "[", 1);
    if (r->js_depth + 1 < JSON_DEPTH) {
        r->js_depth++;
        r->js_first[r->js_depth] = 1;
        r->js_kind[r->js_depth] = kind;
    }
}

void cvx_cmd_json_object(cvx_cmd_req_t *req, const char *key)
{
    js_open(req, key, '{');
}

void cvx_cmd_json_array(cvx_cmd_req_t *req, const char *key)
{
    js_open(req, key, '[');
}

void cvx_cmd_json_end(cvx_cmd_req_t *req)
{
    if (!req->json || req->js_depth == 0)
        return;
    sb_add(&req->js, req->js_kind[req->js_depth] == '{' ? "}" : "]", 1);
    req->js_depth--;
}

void cvx_cmd_json_str(cvx_cmd_req_t *req, const char *key, const char *v)
{
    if (!js_key(req, key))
        return;
    if (v == NULL)
        sb_str(&req->js, "null");
    else
        sb_json_string(&req->js, v);
}

void cvx_cmd_json_int(cvx_cmd_req_t *req, const char *key, long long v)
{
    if (js_key(req, key))
        sb_printf(&req->js, "%lld", v);
}

void cvx_cmd_json_uint(cvx_cmd_req_t *req, const char *key, unsigned long long v)
{
    if (js_key(req, key))
        sb_printf(&req->js, "%llu", v);
}

void cvx_cmd_json_double(cvx_cmd_req_t *req, const char *key, double v)
{
    if (js_key(req, key))
        sb_printf(&req->js, "%.6g", v);
}

void cvx_cmd_json_bool(cvx_cmd_req_t *req, const char *key, int v)
{
    if (js_key(req, key))
        sb_str(&req->js, v ? "true" : "false");
}

/* --- tables ----------------------------------------------------------------------------- */

/* 1 when v is a number as JSON writes them (no hex, inf, nan or leading '+'). */
static int json_number(const char *v)
{
    const char *p = v;
    if (*p == '-')
        p++;
    if (!isdigit((unsigned char)*p))
        return 0;
    if (*p == '0' && isdigit((unsigned char)p[1]))
        return 0;
    while (isdigit((unsigned char)*p))
        p++;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return 0;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!isdigit((unsigned char)*p))
            return 0;
        while (isdigit((unsigned char)*p))
            p++;
    }
    return *p == '\0';
}

static int col_numeric(const char *col)
{
    size_t n = strlen(col);
    return n > 0 && col[n - 1] == '#';
}

void cvx_cmd_table_begin(cvx_cmd_req_t *req, const char *key, const char *const *columns)
{
    for (int i = 0; i < req->ncols; i++)
        free(req->cols[i]);
    req->ncols = 0;
    for (int i = 0; columns[i] != NULL && i < TABLE_COLS; i++)
        req->cols[req->ncols++] = strdup(columns[i]);
    req->nrows = 0;
    cvx_cmd_json_array(req, key);
}

void cvx_cmd_table_row(cvx_cmd_req_t *req, const char *const *cells)
{
    if (req->json) {
        cvx_cmd_json_object(req, NULL);
        for (int i = 0; i < req->ncols; i++) {
            char key[64];
            snprintf(key, sizeof(key), "%s", req->cols[i] ? req->cols[i] : "");
            size_t n = strlen(key);
            int num = col_numeric(key);
            if (num)
                key[n - 1] = '\0';
            const char *v = cells[i] ? cells[i] : "";
            if (num && json_number(v)) {
                if (js_key(req, key))
                    sb_str(&req->js, v);
            } else {
                cvx_cmd_json_str(req, key, v);
            }
        }
        cvx_cmd_json_end(req);
        return;
    }
    if (req->nrows == req->rows_cap) {
        size_t cap = req->rows_cap ? req->rows_cap * 2 : 16;
        char **nc = realloc(req->cells, cap * (size_t)req->ncols * sizeof(char *));
        if (nc == NULL)
            return;
        req->cells = nc;
        req->rows_cap = cap;
    }
    for (int i = 0; i < req->ncols; i++)
        req->cells[req->nrows * (size_t)req->ncols + (size_t)i] = strdup(cells[i] ? cells[i] : "");
    req->nrows++;
}

void cvx_cmd_table_end(cvx_cmd_req_t *req)
{
    if (req->json) {
        cvx_cmd_json_end(req);
        return;
    }
    size_t width[TABLE_COLS];
    char head[TABLE_COLS][64];
    for (int c = 0; c < req->ncols; c++) {
        snprintf(head[c], sizeof(head[c]), "%s", req->cols[c] ? req->cols[c] : "");
        size_t n = strlen(head[c]);
        if (col_numeric(head[c]))
            head[c][--n] = '\0';
        for (size_t k = 0; k < n; k++)
            head[c][k] = (char)toupper((unsigned char)head[c][k]);
        width[c] = n;
        for (size_t r = 0; r < req->nrows; r++) {
            const char *v = req->cells[r * (size_t)req->ncols + (size_t)c];
            size_t l = v ? strlen(v) : 0;
            if (l > width[c])
                width[c] = l;
        }
    }
    for (size_t r = 0; r <= req->nrows; r++) {
        for (int c = 0; c < req->ncols; c++) {
            const char *v = r == 0 ? head[c] : req->cells[(r - 1) * (size_t)req->ncols + (size_t)c];
            if (v == NULL)
                v = "";
            int last = c == req->ncols - 1;
            if (col_numeric(req->cols[c]))
                sb_printf(&req->text, "%*s%s", (int)width[c], v, last ? "" : "  ");
            else if (last)
                sb_str(&req->text, v);
            else
                sb_printf(&req->text, "%-*s  ", (int)width[c], v);
        }
        sb_add(&req->text, "\n", 1);
    }
    for (size_t i = 0; i < req->nrows * (size_t)req->ncols; i++)
        free(req->cells[i]);
    req->nrows = 0;
}

/* --- registry --------------------------------------------------------------------------- */

#define ENTRY(reg, i) ((const cvx_cmd_t *)((const char *)(reg)->table + (i) * (reg)->entry_size))

/* Calls fn for every registered command; fn returns non-zero to stop. */
static const cvx_cmd_t *each_cmd(int (*fn)(const cvx_cmd_t *c, void *arg), void *arg)
{
    for (unsigned t = 0; t < ntables; t++)
        for (size_t i = 0; ENTRY(&tables[t], i)->name != NULL; i++)
            if (fn(ENTRY(&tables[t], i), arg))
                return ENTRY(&tables[t], i);
    return NULL;
}

static int same_name(const cvx_cmd_t *c, void *arg)
{
    return strcmp(c->name, (const char *)arg) == 0;
}

static int check_entry(const cvx_cmd_t *c)
{
    if (c->handler == NULL || c->name[0] == '\0' || c->name[0] == ' ')
        return CVX_EINVAL;
    int optional = 0;
    for (int a = 0; a < CVX_CMD_ARGS_MAX && c->args[a].name != NULL; a++) {
        if (c->args[a].flags & CVX_CMD_ARG_OPTIONAL)
            optional = 1;
        else if (optional)
            return CVX_EINVAL;
        if ((c->args[a].flags & CVX_CMD_ARG_REST) && a + 1 < CVX_CMD_ARGS_MAX &&
            c->args[a + 1].name != NULL)
            return CVX_EINVAL;
    }
    return 0;
}

int cvx_cmd_register_sized(const cvx_cmd_t *table, size_t entry_size)
{
    if (table == NULL || entry_size < offsetof(cvx_cmd_t, data) + sizeof(void *))
        return CVX_EINVAL;
    if (ntables == MAX_TABLES)
        return CVX_ELIMIT;
    table_reg_t reg = {table, entry_size};
    for (size_t i = 0; ENTRY(&reg, i)->name != NULL; i++) {
        const cvx_cmd_t *c = ENTRY(&reg, i);
        if (check_entry(c) != 0) {
            cvx_error("commands: '%s' is malformed (no handler, or an optional argument before "
                      "a required one); its table is not registered",
                      c->name);
            return CVX_EINVAL;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(ENTRY(&reg, j)->name, c->name) == 0)
                return CVX_EEXIST;
        if (each_cmd(same_name, (void *)c->name) != NULL) {
            cvx_error("commands: '%s' is already registered; its table is not registered", c->name);
            return CVX_EEXIST;
        }
    }
    tables[ntables++] = reg;
    return 0;
}

void cvx_cmd_unregister(const cvx_cmd_t *table)
{
    for (unsigned t = 0; t < ntables; t++) {
        if (tables[t].table == table) {
            memmove(&tables[t], &tables[t + 1], (ntables - t - 1) * sizeof(tables[0]));
            ntables--;
            return;
        }
    }
}

void cvx__cmd_reset(void)
{
    ntables = 0;
    ncompleters = 0;
}

int cvx_cmd_add_completer(const cvx_cmd_completer_t *completer)
{
    if (ncompleters == MAX_COMPLETERS)
        return CVX_ELIMIT;
    completers[ncompleters++] = completer;
    return 0;
}

void cvx_cmd_remove_completer(const cvx_cmd_completer_t *completer)
{
    for (unsigned i = 0; i < ncompleters; i++) {
        if (completers[i] == completer) {
            completers[i] = completers[--ncompleters];
            return;
        }
    }
}

/* --- matching a line to a command --------------------------------------------------------- */

/* How many words of c's name equal words[0..n): all of them, or -1 when they differ. */
static int name_match(const char *name, char **words, int n)
{
    int k = 0;
    const char *p = name;
    while (*p != '\0') {
        const char *e = strchr(p, ' ');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (k >= n || strlen(words[k]) != l || strncmp(words[k], p, l) != 0)
            return -1;
        k++;
        p += l;
        while (*p == ' ')
            p++;
    }
    return k;
}

typedef struct find_ctx {
    char **words;
    int n;
    const cvx_cmd_t *best;
    int best_k;
} find_ctx_t;

static int find_longest(const cvx_cmd_t *c, void *arg)
{
    find_ctx_t *f = arg;
    int k = name_match(c->name, f->words, f->n);
    if (k > f->best_k) {
        f->best = c;
        f->best_k = k;
    }
    return 0;
}

/* Adds to *list the word of every command name that follows words[0..depth) (unique). */
typedef struct next_ctx {
    char **words;
    int depth;
    const char *prefix; /* only words starting with it; may be NULL */
    char *list[256];
    int n;
} next_ctx_t;

static void next_add(next_ctx_t *x, const char *w, size_t l)
{
    if (x->prefix != NULL && strncmp(w, x->prefix, strlen(x->prefix)) != 0)
        return;
    if (x->prefix != NULL && strlen(x->prefix) > l)
        return;
    for (int i = 0; i < x->n; i++)
        if (strlen(x->list[i]) == l && strncmp(x->list[i], w, l) == 0)
            return;
    if (x->n < 256)
        x->list[x->n++] = strndup(w, l);
}

static int collect_next(const cvx_cmd_t *c, void *arg)
{
    next_ctx_t *x = arg;
    if (c->flags & CVX_CMD_HIDDEN)
        return 0;
    const char *p = c->name;
    for (int k = 0; k < x->depth; k++) {
        const char *e = strchr(p, ' ');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (e == NULL || strlen(x->words[k]) != l || strncmp(x->words[k], p, l) != 0)
            return 0;
        p = e + 1;
    }
    const char *e = strchr(p, ' ');
    next_add(x, p, e ? (size_t)(e - p) : strlen(p));
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void next_words(next_ctx_t *x, sbuf_t *out, const char *sep)
{
    each_cmd(collect_next, x);
    qsort(x->list, (size_t)x->n, sizeof(char *), cmp_str);
    for (int i = 0; i < x->n; i++) {
        if (out != NULL) {
            if (i > 0)
                sb_str(out, sep);
            sb_str(out, x->list[i]);
        }
    }
}

static void next_free(next_ctx_t *x)
{
    for (int i = 0; i < x->n; i++)
        free(x->list[i]);
    x->n = 0;
}

static void usage_of(const cvx_cmd_t *c, sbuf_t *b)
{
    sb_str(b, c->name);
    for (int a = 0; a < CVX_CMD_ARGS_MAX && c->args[a].name != NULL; a++) {
        const cvx_cmd_arg_t *arg = &c->args[a];
        int literal = arg->choices != NULL && arg->choices[0] != NULL && arg->choices[1] == NULL;
        const char *rest = arg->flags & CVX_CMD_ARG_REST ? "..." : "";
        if (arg->flags & CVX_CMD_ARG_OPTIONAL)
            sb_printf(b, literal ? " [%s%s]" : " [<%s>%s]", literal ? arg->choices[0] : arg->name,
                      rest);
        else
            sb_printf(b, literal ? " %s%s" : " <%s>%s", literal ? arg->choices[0] : arg->name,
                      rest);
    }
}

const char *cvx__cmd_usage(const cvx_cmd_t *c)
{
    static char buf[512];
    sbuf_t b = {0};
    usage_of(c, &b);
    snprintf(buf, sizeof(buf), "%s", b.s ? b.s : c->name);
    free(b.s);
    return buf;
}

static void join_words(sbuf_t *b, char **words, int n)
{
    for (int i = 0; i < n; i++) {
        if (i > 0)
            sb_add(b, " ", 1);
        sb_str(b, words[i]);
    }
}

/* Explains why words name no command. */
static void unknown_command(sbuf_t *err, char **words, int n)
{
    next_ctx_t x = {.words = words};
    /* The longest run of words that is the start of some command's name. */
    int depth = 0;
    for (; depth < n; depth++) {
        x.depth = depth;
        x.prefix = NULL;
        next_words(&x, NULL, "");
        int found = 0;
        for (int i = 0; i < x.n; i++)
            if (strcmp(x.list[i], words[depth]) == 0)
                found = 1;
        next_free(&x);
        if (!found)
            break;
    }
    x.depth = depth;
    sbuf_t choices = {0};
    next_words(&x, &choices, ", ");
    next_free(&x);
    if (depth == 0) {
        sb_printf(err, "unknown command '%s'; expected one of: %s (type 'help' for a list)",
                  words[0], choices.s ? choices.s : "");
    } else if (depth == n) {
        sb_str(err, "incomplete command '");
        join_words(err, words, n);
        sb_printf(err, "'; expected '");
        join_words(err, words, n);
        sb_printf(err, "' followed by one of: %s", choices.s ? choices.s : "");
    } else {
        sb_str(err, "unknown command '");
        join_words(err, words, depth + 1);
        sb_printf(err, "'; after '");
        join_words(err, words, depth);
        sb_printf(err, "' expected one of: %s", choices.s ? choices.s : "");
    }
    free(choices.s);
}

/* Checks the argument words against c's declaration; 0 or an explanation in err. */
static int check_args(const cvx_cmd_t *c, char **args, int n, sbuf_t *err)
{
    int a = 0;
    for (; a < CVX_CMD_ARGS_MAX && c->args[a].name != NULL; a++) {
        const cvx_cmd_arg_t *arg = &c->args[a];
        if (a >= n) {
            if (arg->flags & CVX_CMD_ARG_OPTIONAL)
                return 0;
            sb_printf(err, "'%s' needs <%s> (usage: %s)", c->name, arg->name, cvx__cmd_usage(c));
            return -1;
        }
        if (arg->choices != NULL) {
            int ok = 0;
            for (int i = 0; arg->choices[i] != NULL; i++)
                if (strcmp(arg->choices[i], args[a]) == 0)
                    ok = 1;
            if (!ok) {
                sb_printf(err, "'%s': '%s' is not one of: ", c->name, args[a]);
                for (int i = 0; arg->choices[i] != NULL; i++)
                    sb_printf(err, "%s%s", i ? ", " : "", arg->choices[i]);
                sb_printf(err, " (usage: %s)", cvx__cmd_usage(c));
                return -1;
            }
        }
        if (arg->flags & CVX_CMD_ARG_REST)
            return 0;
    }
    if (n > a) {
        if (a == 0)
            sb_printf(err, "'%s' takes no arguments, got '%s' (usage: %s)", c->name, args[a],
                      cvx__cmd_usage(c));
        else
            sb_printf(err, "'%s': unexpected argument '%s' (usage: %s)", c->name, args[a],
                      cvx__cmd_usage(c));
        return -1;
    }
    return 0;
}

/* --- running ---------------------------------------------------------------------------- */

static const char *const status_names[] = {"ok", "failed", "usage", "denied"};

void (*cvx__cmd_audit_fn)(const cvx__ctl_peer_t *peer, const char *line,
                          const char *result) = cvx__audit;

/* The line as the audit log shows it: arguments declared secret become ***. */
static char *audit_line(const cvx_cmd_req_t *r)
{
    int secret = 0;
    for (int a = 0; a < CVX_CMD_ARGS_MAX && r->cmd->args[a].name != NULL; a++)
        if (r->cmd->args[a].flags & CVX_CMD_ARG_SECRET)
            secret = 1;
    if (!secret)
        return strdup(r->line);
    sbuf_t b = {0};
    sb_str(&b, r->cmd->name);
    for (int w = r->first_arg; w < r->nwords; w++) {
        int a = w - r->first_arg;
        const cvx_cmd_arg_t *arg = NULL;
        for (int k = 0; k < CVX_CMD_ARGS_MAX && r->cmd->args[k].name != NULL; k++)
            if (k == a || ((r->cmd->args[k].flags & CVX_CMD_ARG_REST) && a >= k))
                arg = &r->cmd->args[k];
        if (arg != NULL && (arg->flags & CVX_CMD_ARG_SECRET))
            sb_str(&b, " ***");
        else if (strpbrk(r->words[w], " \t\"") != NULL || r->words[w][0] == '\0')
            sb_printf(&b, " \"%s\"", r->words[w]); /* shown as typed, near enough */
        else
            sb_printf(&b, " %s", r->words[w]);
    }
    return b.s;
}

static void deliver(cvx_cmd_req_t *r, int status, const char *error)
{
    sbuf_t body = {0};
    if (r->json) {
        sb_str(&body, "{\"command\":");
        if (r->line != NULL)
            sb_json_string(&body, r->line);
        else
            sb_str(&body, "null");
        sb_printf(&body, ",\"status\":\"%s\",\"error\":", status_names[status]);
        if (error != NULL)
            sb_json_string(&body, error);
        else
            sb_str(&body, "null");
        sb_str(&body, ",\"result\":");
        if (r->js_written) {
            while (r->js_depth > 0)
                cvx_cmd_json_end(r);
            sb_add(&body, "{", 1);
            if (r->js.s != NULL)
                sb_add(&body, r->js.s, r->js.len);
            sb_add(&body, "}", 1);
        } else {
            sb_str(&body, "{\"text\":");
            sb_json_string(&body, r->text.s ? r->text.s : "");
            sb_add(&body, "}", 1);
        }
        sb_add(&body, "}\n", 2);
    } else {
        if (r->text.s != NULL)
            sb_add(&body, r->text.s, r->text.len);
        if (error != NULL)
            sb_printf(&body, "%s\n", error);
    }
    if (r->cmd != NULL && !(r->cmd->flags & CVX_CMD_READONLY)) {
        char result[600];
        if (status == CVX__CTL_OK)
            snprintf(result, sizeof(result), "ok");
        else
            snprintf(result, sizeof(result), "%s: %s", status_names[status],
                     error ? error : "(no message)");
        char *line = audit_line(r);
        cvx__cmd_audit_fn(&r->peer, line ? line : r->cmd->name, result);
        free(line);
    }
    if (r->done != NULL) {
        if (body.oom)
            r->done(r->done_arg, CVX__CTL_FAILED, "error: out of memory\n", 21);
        else
            r->done(r->done_arg, status, body.s ? body.s : "", body.len);
    }
    free(body.s);
}

void cvx_cmd_finish(cvx_cmd_req_t *req, int rc)
{
    if (req->in_handler) {
        /* Finished from inside the handler (a completion that came at once): the reply goes
         * out when the handler returns, whatever it returns. */
        req->finished_early = 1;
        req->early_rc = rc;
        return;
    }
    const char *err = NULL;
    if (rc != 0)
        err = req->error != NULL ? req->error : cvx_strerror(rc);
    deliver(req, rc == 0 ? CVX__CTL_OK : CVX__CTL_FAILED, err);
    req_free(req);
}

void cvx__cmd_detach(cvx_cmd_req_t *req)
{
    req->done = NULL;
    req->done_arg = NULL;
}

void cvx__cmd_run(const char *line, int json, const cvx__ctl_peer_t *peer, cvx__cmd_done_fn done,
                  void *arg, cvx_cmd_req_t **pending)
{
    *pending = NULL;
    cvx_cmd_req_t *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        done(arg, CVX__CTL_FAILED, "error: out of memory\n", 21);
        return;
    }
    r->peer = *peer;
    r->json = json;
    r->done = done;
    r->done_arg = arg;
    r->js_kind[0] = '{';
    r->js_first[0] = 1;
    r->line = strdup(line);
    r->wordbuf = malloc(strlen(line) + 1);
    if (r->line == NULL || r->wordbuf == NULL) {
        done(arg, CVX__CTL_FAILED, "error: out of memory\n", 21);
        req_free(r);
        return;
    }
    char perr[96];
    int n = cvx__ctl_split(line, r->wordbuf, r->words, MAX_WORDS, perr, sizeof(perr));
    if (n < 0) {
        char msg[160];
        snprintf(msg, sizeof(msg), "cannot read the command: %s", perr);
        deliver(r, CVX__CTL_USAGE, msg);
        req_free(r);
        return;
    }
    r->nwords = n;
    if (n == 0) {
        deliver(r, CVX__CTL_USAGE, "empty command; type 'help' for a list");
        req_free(r);
        return;
    }
    find_ctx_t f = {r->words, n, NULL, 0};
    each_cmd(find_longest, &f);
    sbuf_t err = {0};
    int status = CVX__CTL_OK;
    if (f.best == NULL) {
        unknown_command(&err, r->words, n);
        status = CVX__CTL_USAGE;
    } else {
        r->cmd = f.best;
        r->first_arg = f.best_k;
        if (!(f.best->flags & CVX_CMD_READONLY) && !peer->admin) {
            sb_printf(&err,
                      "permission denied: '%s' changes the system, and user %s may only run "
                      "read-only commands",
                      f.best->name, peer->user);
            status = CVX__CTL_DENIED;
        } else if (check_args(f.best, r->words + f.best_k, n - f.best_k, &err) != 0) {
            status = CVX__CTL_USAGE;
        }
    }
    if (status != CVX__CTL_OK) {
        deliver(r, status, err.s ? err.s : "error");
        free(err.s);
        req_free(r);
        return;
    }
    r->in_handler = 1;
    int rc = r->cmd->handler(r);
    r->in_handler = 0;
    if (r->finished_early)
        rc = r->early_rc;
    else if (rc == CVX_CMD_PENDING) {
        *pending = r;
        return;
    }
    cvx_cmd_finish(r, rc > 0 ? 0 : rc);
}

/* --- help ------------------------------------------------------------------------------- */

typedef struct list_ctx {
    const cvx_cmd_t *v[512];
    int n;
    const char *prefix; /* words the command name must start with, or NULL */
} list_ctx_t;

static int collect_cmd(const cvx_cmd_t *c, void *arg)
{
    list_ctx_t *l = arg;
    if (c->flags & CVX_CMD_HIDDEN)
        return 0;
    if (l->prefix != NULL) {
        size_t pl = strlen(l->prefix);
        if (strncmp(c->name, l->prefix, pl) != 0 || (c->name[pl] != '\0' && c->name[pl] != ' '))
            return 0;
    }
    if (l->n < 512)
        l->v[l->n++] = c;
    return 0;
}

static int cmp_cmd(const void *a, const void *b)
{
    return strcmp((*(const cvx_cmd_t *const *)a)->name, (*(const cvx_cmd_t *const *)b)->name);
}

/* "help" and "help <command>". */
int cvx__cmd_help(cvx_cmd_req_t *req)
{
    const char *topic = cvx_cmd_rest(req, 0);
    list_ctx_t l = {.prefix = topic};
    each_cmd(collect_cmd, &l);
    if (l.n == 0) {
        cvx_cmd_error(req, "help: no command is called '%s' or starts with it", topic);
        return CVX_ENOTFOUND;
    }
    qsort(l.v, (size_t)l.n, sizeof(l.v[0]), cmp_cmd);
    /* One command is explained in full: the one named, or the only one the words start. */
    int exact = topic != NULL && (l.n == 1 || strcmp(l.v[0]->name, topic) == 0);
    cvx_cmd_json_array(req, "commands");
    if (exact) {
        const cvx_cmd_t *c = l.v[0];
        cvx_cmd_printf(req, "usage: %s\n", cvx__cmd_usage(c));
        cvx_cmd_printf(req, "%s%s\n", c->summary ? c->summary : "",
                       c->flags & CVX_CMD_READONLY ? "" : " (changes the system: admin only)");
        if (c->help != NULL)
            cvx_cmd_printf(req, "\n%s\n", c->help);
        for (int a = 0; a < CVX_CMD_ARGS_MAX && c->args[a].name != NULL; a++) {
            if (a == 0)
                cvx_cmd_printf(req, "\n");
            cvx_cmd_printf(req, "  <%s>  %s", c->args[a].name,
                           c->args[a].help ? c->args[a].help : "");
            if (c->args[a].choices != NULL && c->args[a].choices[1] != NULL) {
                cvx_cmd_printf(req, " (one of:");
                for (int i = 0; c->args[a].choices[i] != NULL; i++)
                    cvx_cmd_printf(req, " %s", c->args[a].choices[i]);
                cvx_cmd_printf(req, ")");
            }
            cvx_cmd_printf(req, "\n");
        }
    } else {
        size_t w = 0;
        for (int i = 0; i < l.n; i++) {
            size_t n = strlen(cvx__cmd_usage(l.v[i]));
            if (n > w)
                w = n;
        }
        cvx_cmd_printf(req, "Commands (* changes the system; your access: %s):\n",
                       req->peer.admin ? "admin" : "read-only");
        for (int i = 0; i < l.n; i++)
            cvx_cmd_printf(req, " %c %-*s  %s\n", l.v[i]->flags & CVX_CMD_READONLY ? ' ' : '*',
                           (int)w, cvx__cmd_usage(l.v[i]), l.v[i]->summary ? l.v[i]->summary : "");
        cvx_cmd_printf(req, "Type 'help <command>' for details.\n");
    }
    for (int i = 0; i < l.n; i++) {
        if (exact && i > 0)
            break;
        cvx_cmd_json_object(req, NULL);
        cvx_cmd_json_str(req, "name", l.v[i]->name);
        cvx_cmd_json_str(req, "usage", cvx__cmd_usage(l.v[i]));
        cvx_cmd_json_bool(req, "read_only", (l.v[i]->flags & CVX_CMD_READONLY) != 0);
        cvx_cmd_json_str(req, "summary", l.v[i]->summary);
        cvx_cmd_json_str(req, "help", l.v[i]->help);
        cvx_cmd_json_end(req);
    }
    cvx_cmd_json_end(req);
    return 0;
}

/* --- completion ------------------------------------------------------------------------- */

struct cvx_cmd_comp {
    const char *prefix;
    char **v;
    size_t n, cap;
};

void cvx_cmd_comp_add(cvx_cmd_comp_t *c, const char *word)
{
    if (word == NULL || strncmp(word, c->prefix, strlen(c->prefix)) != 0)
        return;
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 32;
        if (cap > 4096)
            return;
        char **nv = realloc(c->v, cap * sizeof(char *));
        if (nv == NULL)
            return;
        c->v = nv;
        c->cap = cap;
    }
    char *d = strdup(word);
    if (d != NULL)
        c->v[c->n++] = d;
}

/* Completes an argument of kind "command": the words typed so far after "help". */
static void complete_command_words(cvx_cmd_comp_t *c, char **words, int depth)
{
    next_ctx_t x = {.words = words, .depth = depth, .prefix = c->prefix};
    each_cmd(collect_next, &x);
    for (int i = 0; i < x.n; i++)
        cvx_cmd_comp_add(c, x.list[i]);
    next_free(&x);
}

static void complete_arg(cvx_cmd_comp_t *c, const cvx_cmd_arg_t *arg, char **argwords, int nargs)
{
    if (arg->choices != NULL)
        for (int i = 0; arg->choices[i] != NULL; i++)
            cvx_cmd_comp_add(c, arg->choices[i]);
    if (arg->complete == NULL)
        return;
    if (strcmp(arg->complete, "command") == 0) {
        complete_command_words(c, argwords, nargs);
        return;
    }
    for (unsigned i = 0; i < ncompleters; i++)
        if (strcmp(completers[i]->kind, arg->complete) == 0)
            completers[i]->fn(c, c->prefix, completers[i]->arg);
    cvx__core_complete(c, arg->complete, c->prefix);
}

char *cvx__cmd_complete(const char *line)
{
    char *buf = malloc(strlen(line) + 2);
    char *words[MAX_WORDS + 1];
    char err[96];
    if (buf == NULL)
        return NULL;
    int n = cvx__ctl_split(line, buf, words, MAX_WORDS, err, sizeof(err));
    size_t ll = strlen(line);
    int trailing = ll == 0 || line[ll - 1] == ' ' || line[ll - 1] == '\t';
    sbuf_t out = {0};
    if (n < 0) {
        free(buf);
        sb_str(&out, "");
        return out.s;
    }
    /* The word being completed is the last one, or a new empty one after a blank. */
    static char empty[] = "";
    if (trailing)
        words[n++] = empty;
    cvx_cmd_comp_t c = {.prefix = words[n - 1]};
    int typed = n - 1; /* complete words before the one being completed */

    /* Command-name words first. */
    complete_command_words(&c, words, typed);
    /* Then arguments of the longest command the complete words name. */
    find_ctx_t f = {words, typed, NULL, 0};
    each_cmd(find_longest, &f);
    if (f.best != NULL) {
        int ai = typed - f.best_k; /* index of the argument being completed */
        const cvx_cmd_t *cmd = f.best;
        for (int a = 0; a < CVX_CMD_ARGS_MAX && cmd->args[a].name != NULL; a++) {
            if (a == ai || ((cmd->args[a].flags & CVX_CMD_ARG_REST) && ai >= a)) {
                complete_arg(&c, &cmd->args[a], words + f.best_k + a, ai - a);
                break;
            }
        }
    }
    if (c.n > 1)
        qsort(c.v, c.n, sizeof(char *), cmp_str);
    for (size_t i = 0; i < c.n; i++) {
        if (i == 0 || strcmp(c.v[i], c.v[i - 1]) != 0) {
            sb_str(&out, c.v[i]);
            sb_add(&out, "\n", 1);
        }
    }
    for (size_t i = 0; i < c.n; i++)
        free(c.v[i]);
    free(c.v);
    free(buf);
    if (out.s == NULL)
        out.s = strdup("");
    return out.s;
}
