/*
 * A command request and its output buffers, shared by cmd.c (parsing, running, help,
 * completion) and cmd_out.c (the request's accessors, text, JSON and tables).  Loop thread.
 */
#ifndef CVX_CTL_CMD_REQ_H
#define CVX_CTL_CMD_REQ_H

#include <stdarg.h>
#include <stddef.h>

#include "ctl.h"

#define CVX__CMD_MAX_WORDS  64
#define CVX__CMD_JSON_DEPTH 32
#define CVX__CMD_TABLE_COLS 16

/* A growing string; oom is set (and further appends ignored) when memory ran out. */
typedef struct cvx__sbuf {
    char *s;
    size_t len, cap;
    int oom;
} cvx__sbuf_t;

void cvx__sb_add(cvx__sbuf_t *b, const char *s, size_t n);
void cvx__sb_str(cvx__sbuf_t *b, const char *s);
void cvx__sb_vprintf(cvx__sbuf_t *b, const char *fmt, va_list ap);
void cvx__sb_printf(cvx__sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string (quoted, escaped; bytes that are not UTF-8 become U+FFFD). */
void cvx__sb_json_string(cvx__sbuf_t *b, const char *s);

struct cvx_cmd_req {
    const cvx_cmd_t *cmd;
    cvx__ctl_peer_t peer;
    char *line;
    char *wordbuf;
    char *words[CVX__CMD_MAX_WORDS];
    int nwords, first_arg;
    char *rest[CVX_CMD_ARGS_MAX]; /* REST arguments joined, allocated on demand */
    int json;
    cvx__sbuf_t text, js;
    int js_depth;
    int js_first[CVX__CMD_JSON_DEPTH];
    char js_kind[CVX__CMD_JSON_DEPTH]; /* '{' or '[' */
    int js_written;
    char *error;
    /* the table being written */
    char *cols[CVX__CMD_TABLE_COLS];
    int ncols;
    char **cells; /* rows * ncols strings, text form only */
    size_t nrows, rows_cap;
    cvx__cmd_done_fn done;
    void *done_arg;
    int in_handler;     /* the handler is running */
    int finished_early; /* it called cvx_cmd_finish() before returning */
    int early_rc;
};

/* Frees a request and everything it holds. */
void cvx__cmd_req_free(cvx_cmd_req_t *r);
/* Closes every JSON object and array still open. */
void cvx__cmd_json_close_all(cvx_cmd_req_t *r);

#endif
