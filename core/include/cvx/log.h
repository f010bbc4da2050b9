/*
 * Logging.
 *
 * The level is checked before anything is formatted (the macros below).  Lines are formatted
 * on the calling thread and handed to one logging thread that writes them to stderr (in the
 * foreground) or syslog; the caller never waits for the write.  When the queue is full the
 * line is dropped and counted rather than blocking the reactor.  Before cvx_log_start() and
 * after cvx_log_stop() lines are written synchronously (start-up and shutdown messages).
 *
 * Every call-related line carries a context: the call id, the driver instance and what was
 * being done, printed as "[call=... inst=...] message, while <doing>".
 *
 * Thread safety: all functions may be called from any thread.
 */
#ifndef CVX_LOG_H
#define CVX_LOG_H

#include <stdarg.h>
#include <stdint.h>

typedef enum cvx_log_level {
    CVX_LOG_ERROR = 0,
    CVX_LOG_WARN = 1,
    CVX_LOG_NOTICE = 2,
    CVX_LOG_INFO = 3,
    CVX_LOG_DEBUG = 4,
    CVX_LOG_TRACE = 5,
} cvx_log_level_t;

typedef enum cvx_log_target {
    CVX_LOG_TO_STDERR = 0,
    CVX_LOG_TO_SYSLOG = 1,
} cvx_log_target_t;

/* What a log line is about.  Any field may be NULL. */
typedef struct cvx_log_ctx {
    const char *call_id;  /* the call's id, as in call records */
    const char *instance; /* driver or plugin instance, "sip:pbx1" */
    const char *doing;    /* what was being done, "while answering" without "while" */
} cvx_log_ctx_t;

/* The current threshold; read through cvx_log_enabled(). */
extern volatile int cvx__log_level;

#define cvx_log_enabled(level) ((int)(level) <= cvx__log_level)

#define cvx_log(level, ...)                                                                        \
    do {                                                                                           \
        if (cvx_log_enabled(level))                                                                \
            cvx_log_write((level), NULL, __VA_ARGS__);                                             \
    } while (0)

#define cvx_log_ctx(level, ctx, ...)                                                               \
    do {                                                                                           \
        if (cvx_log_enabled(level))                                                                \
            cvx_log_write((level), (ctx), __VA_ARGS__);                                            \
    } while (0)

#define cvx_error(...)  cvx_log(CVX_LOG_ERROR, __VA_ARGS__)
#define cvx_warn(...)   cvx_log(CVX_LOG_WARN, __VA_ARGS__)
#define cvx_notice(...) cvx_log(CVX_LOG_NOTICE, __VA_ARGS__)
#define cvx_info(...)   cvx_log(CVX_LOG_INFO, __VA_ARGS__)
#define cvx_debug(...)  cvx_log(CVX_LOG_DEBUG, __VA_ARGS__)

/* Formats and queues one line.  Use the macros, which check the level first. */
void cvx_log_write(cvx_log_level_t level, const cvx_log_ctx_t *ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void cvx_log_vwrite(cvx_log_level_t level, const cvx_log_ctx_t *ctx, const char *fmt, va_list ap);

void cvx_log_set_level(cvx_log_level_t level);
cvx_log_level_t cvx_log_get_level(void);

/* Level names: "error", "warning", "notice", "info", "debug", "trace". */
const char *cvx_log_level_name(cvx_log_level_t level);
/* Returns the level for a name (also accepts "warn"), or -1. */
int cvx_log_level_from_name(const char *name);

/*
 * Starts the logging thread writing to target.  ident names the program in syslog.
 * Returns 0 or a CVX_E* code.
 */
int cvx_log_start(cvx_log_target_t target, const char *ident);
/* Writes out everything queued, then stops the thread.  Safe to call when not started. */
void cvx_log_stop(void);
/* Waits until every line queued so far has been written. */
void cvx_log_flush(void);

/*
 * An extra receiver of every written line (the shell's attach mode, tests).  The sink runs on
 * the logging thread (or the caller's before start) and must not block; line has no newline.
 * Returns 0, or CVX_ELIMIT when too many sinks are registered.
 */
typedef void (*cvx_log_sink_fn)(void *arg, cvx_log_level_t level, const char *line);
int cvx_log_add_sink(cvx_log_sink_fn fn, void *arg);
void cvx_log_remove_sink(cvx_log_sink_fn fn, void *arg);

typedef struct cvx_log_stats {
    uint64_t written;
    uint64_t dropped; /* lines lost because the queue was full */
} cvx_log_stats_t;
void cvx_log_get_stats(cvx_log_stats_t *out);

/* Routes Sofia-SIP's and spandsp's own log output into this log. */
void cvx_log_bridge_libraries(void);

#endif
