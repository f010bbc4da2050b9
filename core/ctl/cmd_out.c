/*
 * A command's request as its handler sees it: the arguments, who asks, and the output (text,
 * JSON, tables) collected until the command finishes.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cvx/cmd.h"
#include "cmd_req.h"

/* --- a growing string -------------------------------------------------------------------- */

static void cvx__sb_grow(cvx__sbuf_t *b, size_t more)
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

void cvx__sb_add(cvx__sbuf_t *b, const char *s, size_t n)
{
    cvx__sb_grow(b, n);
    if (b->oom)
        return;
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

void cvx__sb_str(cvx__sbuf_t *b, const char *s)
{
    cvx__sb_add(b, s, strlen(s));
}

void cvx__sb_vprintf(cvx__sbuf_t *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n <= 0)
        return;
    cvx__sb_grow(b, (size_t)n);
    if (b->oom)
        return;
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void cvx__sb_printf(cvx__sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cvx__sb_printf(cvx__sbuf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cvx__sb_vprintf(b, fmt, ap);
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

void cvx__sb_json_string(cvx__sbuf_t *b, const char *s)
{
    cvx__sb_add(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        switch (*p) {
        case '"':
            cvx__sb_add(b, "\\\"", 2);
            break;
        case '\\':
            cvx__sb_add(b, "\\\\", 2);
            break;
        case '\n':
            cvx__sb_add(b, "\\n", 2);
            break;
        case '\t':
            cvx__sb_add(b, "\\t", 2);
            break;
        case '\r':
            cvx__sb_add(b, "\\r", 2);
            break;
        default:
            if (*p < 0x20) {
                snprintf(esc, sizeof(esc), "\\u%04x", *p);
                cvx__sb_str(b, esc);
            } else if (*p < 0x80) {
                cvx__sb_add(b, (const char *)p, 1);
            } else {
                /* Numbers and names can come from the network: bytes that are not UTF-8
                 * become U+FFFD so that the document stays valid JSON. */
                size_t n = utf8_len(p);
                if (n == 0) {
                    cvx__sb_str(b, "\\ufffd");
                } else {
                    cvx__sb_add(b, (const char *)p, n);
                    p += n - 1;
                }
            }
        }
    }
    cvx__sb_add(b, "\"", 1);
}

/* --- the request ---------------------------------------------------------------------- */

void cvx__cmd_req_free(cvx_cmd_req_t *r)
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
        cvx__sbuf_t b = {0};
        for (int w = req->first_arg + i; w < req->nwords; w++) {
            if (w > req->first_arg + i)
                cvx__sb_add(&b, " ", 1);
            cvx__sb_str(&b, req->words[w]);
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
    cvx__sb_vprintf(&req->text, fmt, ap);
    va_end(ap);
}

void cvx_cmd_kv(cvx_cmd_req_t *req, int width, const char *key, const char *value)
{
    cvx_cmd_printf(req, "%-*s %s\n", width, key, value);
    cvx_cmd_json_str(req, key, value);
}

void cvx_cmd_kv_uint(cvx_cmd_req_t *req, int width, const char *key, unsigned long long v)
{
    cvx_cmd_printf(req, "%-*s %llu\n", width, key, v);
    cvx_cmd_json_uint(req, key, v);
}

void cvx_cmd_error(cvx_cmd_req_t *req, const char *fmt, ...)
{
    cvx__sbuf_t b = {0};
    va_list ap;
    va_start(ap, fmt);
    cvx__sb_vprintf(&b, fmt, ap);
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
        cvx__sb_add(&r->js, ",", 1);
    r->js_first[r->js_depth] = 0;
    if (r->js_kind[r->js_depth] == '{') {
        cvx__sb_json_string(&r->js, key ? key : "");
        cvx__sb_add(&r->js, ":", 1);
    }
    return 1;
}

static void js_open(cvx_cmd_req_t *r, const char *key, char kind)
{
    if (!js_key(r, key))
        return;
    cvx__sb_add(&r->js, kind == '{' ? "{" : "[", 1);
    if (r->js_depth + 1 < CVX__CMD_JSON_DEPTH) {
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
    cvx__sb_add(&req->js, req->js_kind[req->js_depth] == '{' ? "}" : "]", 1);
    req->js_depth--;
}

void cvx_cmd_json_str(cvx_cmd_req_t *req, const char *key, const char *v)
{
    if (!js_key(req, key))
        return;
    if (v == NULL)
        cvx__sb_str(&req->js, "null");
    else
        cvx__sb_json_string(&req->js, v);
}

void cvx_cmd_json_int(cvx_cmd_req_t *req, const char *key, long long v)
{
    if (js_key(req, key))
        cvx__sb_printf(&req->js, "%lld", v);
}

void cvx_cmd_json_uint(cvx_cmd_req_t *req, const char *key, unsigned long long v)
{
    if (js_key(req, key))
        cvx__sb_printf(&req->js, "%llu", v);
}

void cvx_cmd_json_double(cvx_cmd_req_t *req, const char *key, double v)
{
    if (js_key(req, key))
        cvx__sb_printf(&req->js, "%.6g", v);
}

void cvx_cmd_json_bool(cvx_cmd_req_t *req, const char *key, int v)
{
    if (js_key(req, key))
        cvx__sb_str(&req->js, v ? "true" : "false");
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
    for (int i = 0; columns[i] != NULL && i < CVX__CMD_TABLE_COLS; i++)
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
                    cvx__sb_str(&req->js, v);
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
    size_t width[CVX__CMD_TABLE_COLS];
    char head[CVX__CMD_TABLE_COLS][64];
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
                cvx__sb_printf(&req->text, "%*s%s", (int)width[c], v, last ? "" : "  ");
            else if (last)
                cvx__sb_str(&req->text, v);
            else
                cvx__sb_printf(&req->text, "%-*s  ", (int)width[c], v);
        }
        cvx__sb_add(&req->text, "\n", 1);
    }
    for (size_t i = 0; i < req->nrows * (size_t)req->ncols; i++)
        free(req->cells[i]);
    req->nrows = 0;
}

void cvx__cmd_json_close_all(cvx_cmd_req_t *r)
{
    while (r->js_depth > 0)
        cvx_cmd_json_end(r);
}
