/*
 * Routes the log output of Sofia-SIP and spandsp into callvox's log.
 *
 * Sofia-SIP formats its messages in pieces (a line may arrive in several calls, each ending
 * without a newline), so fragments are collected per thread until a newline ends the line.
 * spandsp hands over whole messages with its own level numbers.
 */
#include <stdio.h>
#include <string.h>

#include <sofia-sip/su_log.h>
#include <spandsp.h>

#include "cvx/log.h"

static __thread char sofia_line[1024];
static __thread size_t sofia_len;

static void sofia_emit(const char *s, size_t len)
{
    while (len > 0 && s[len - 1] == '\r')
        len--;
    if (len > 0)
        cvx_log(CVX_LOG_DEBUG, "sofia-sip: %.*s", (int)len, s);
}

/* One call may also carry several lines (tport's message dumps do): each becomes a log line
 * of its own, never one with newlines inside. */
static void sofia_logger(void *stream, char const *fmt, va_list ap)
{
    (void)stream;
    int n = vsnprintf(sofia_line + sofia_len, sizeof(sofia_line) - sofia_len, fmt, ap);
    if (n < 0)
        return;
    sofia_len += (size_t)n;
    int full = sofia_len >= sizeof(sofia_line) - 1;
    if (full)
        sofia_len = sizeof(sofia_line) - 1;
    char *start = sofia_line, *end = sofia_line + sofia_len, *nl;
    while ((nl = memchr(start, '\n', (size_t)(end - start))) != NULL) {
        sofia_emit(start, (size_t)(nl - start));
        start = nl + 1;
    }
    size_t rest = (size_t)(end - start);
    if (full && rest > 0) {
        /* No room to wait for the end of this line: out it goes, cut. */
        sofia_emit(start, rest);
        rest = 0;
    }
    memmove(sofia_line, start, rest);
    sofia_len = rest;
    sofia_line[sofia_len] = '\0';
}

static void spandsp_logger(int level, const char *text)
{
    /* level carries spandsp's display flags (SPAN_LOG_SUPPRESS_LABELLING...) above the
     * severity. */
    level &= SPAN_LOG_SEVERITY_MASK;
    cvx_log_level_t ours = level <= SPAN_LOG_ERROR     ? CVX_LOG_ERROR
                           : level <= SPAN_LOG_WARNING ? CVX_LOG_WARN
                           : level <= SPAN_LOG_FLOW    ? CVX_LOG_DEBUG
                                                       : CVX_LOG_TRACE;
    if (!cvx_log_enabled(ours))
        return;
    size_t len = strlen(text);
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
        len--;
    cvx_log_write(ours, NULL, "spandsp: %.*s", (int)len, text);
}

void cvx_log_bridge_libraries(void)
{
    /* Logs without a redirection of their own fall back to the default log's logger. */
    su_log_redirect(NULL, sofia_logger, NULL);
    span_set_message_handler(spandsp_logger);
}
