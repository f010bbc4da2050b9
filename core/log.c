/*
 * The logging thread and its queue.
 *
 * Callers format a line into a heap entry and append it to a bounded queue under a mutex that
 * is held only for the list operation; the logging thread swaps the whole queue out and writes
 * it without the lock.  syslog() and write(2) to a slow terminal therefore never stall the
 * reactor.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "cvx/error.h"
#include "cvx/log.h"

#define LOG_QUEUE_MAX 16384
#define LOG_LINE_MAX  2048
#define LOG_SINKS_MAX 16

typedef struct log_entry {
    struct log_entry *next;
    cvx_log_level_t level;
    char line[];
} log_entry_t;

typedef struct log_sink {
    cvx_log_sink_fn fn;
    void *arg;
} log_sink_t;

volatile int cvx__log_level = CVX_LOG_INFO;

static pthread_mutex_t log_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t log_cond = PTHREAD_COND_INITIALIZER;
static pthread_cond_t log_idle_cond = PTHREAD_COND_INITIALIZER;
static log_entry_t *queue_head, *queue_tail;
static unsigned queue_len;
static int running, stopping, writing;
static pthread_t log_thread;
static cvx_log_target_t log_target = CVX_LOG_TO_STDERR;
static uint64_t lines_written, lines_dropped;

static pthread_mutex_t sink_mutex = PTHREAD_MUTEX_INITIALIZER;
static log_sink_t sinks[LOG_SINKS_MAX];
static unsigned nsinks;

static const char *const level_names[] = {"error", "warning", "notice", "info", "debug", "trace"};
static const int syslog_prio[] = {LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG, LOG_DEBUG};

const char *cvx_log_level_name(cvx_log_level_t level)
{
    if ((unsigned)level > CVX_LOG_TRACE)
        return "?";
    return level_names[level];
}

int cvx_log_level_from_name(const char *name)
{
    for (int i = 0; i <= CVX_LOG_TRACE; i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    if (strcmp(name, "warn") == 0)
        return CVX_LOG_WARN;
    return -1;
}

void cvx_log_set_level(cvx_log_level_t level)
{
    if ((unsigned)level <= CVX_LOG_TRACE)
        cvx__log_level = level;
}

cvx_log_level_t cvx_log_get_level(void)
{
    return (cvx_log_level_t)cvx__log_level;
}

int cvx_log_add_sink(cvx_log_sink_fn fn, void *arg)
{
    int err = CVX_ELIMIT;
    pthread_mutex_lock(&sink_mutex);
    if (nsinks < LOG_SINKS_MAX) {
        sinks[nsinks].fn = fn;
        sinks[nsinks].arg = arg;
        nsinks++;
        err = 0;
    }
    pthread_mutex_unlock(&sink_mutex);
    return err;
}

void cvx_log_remove_sink(cvx_log_sink_fn fn, void *arg)
{
    pthread_mutex_lock(&sink_mutex);
    for (unsigned i = 0; i < nsinks; i++) {
        if (sinks[i].fn == fn && sinks[i].arg == arg) {
            sinks[i] = sinks[--nsinks];
            break;
        }
    }
    pthread_mutex_unlock(&sink_mutex);
}

/* Writes one line to the target and the sinks.  Runs on the logging thread (or the caller's
 * when the thread is not running). */
static void emit(cvx_log_level_t level, const char *line)
{
    if (log_target == CVX_LOG_TO_SYSLOG) {
        syslog(syslog_prio[level], "%s", line);
    } else {
        struct timespec ts;
        struct tm tm;
        char stamp[32];
        clock_gettime(CLOCK_REALTIME, &ts);
        localtime_r(&ts.tv_sec, &tm);
        strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
        fprintf(stderr, "%s.%03ld %s\n", stamp, ts.tv_nsec / 1000000, line);
    }
    pthread_mutex_lock(&sink_mutex);
    for (unsigned i = 0; i < nsinks; i++)
        sinks[i].fn(sinks[i].arg, level, line);
    pthread_mutex_unlock(&sink_mutex);
}

static void *log_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&log_mutex);
    for (;;) {
        while (queue_head == NULL && !stopping)
            pthread_cond_wait(&log_cond, &log_mutex);
        if (queue_head == NULL && stopping)
            break;
        log_entry_t *batch = queue_head;
        queue_head = queue_tail = NULL;
        queue_len = 0;
        writing = 1;
        pthread_mutex_unlock(&log_mutex);

        uint64_t n = 0;
        while (batch != NULL) {
            log_entry_t *next = batch->next;
            emit(batch->level, batch->line);
            free(batch);
            batch = next;
            n++;
        }
        if (log_target == CVX_LOG_TO_STDERR)
            fflush(stderr);

        pthread_mutex_lock(&log_mutex);
        lines_written += n;
        writing = 0;
        pthread_cond_broadcast(&log_idle_cond);
    }
    pthread_mutex_unlock(&log_mutex);
    return NULL;
}

void cvx_log_vwrite(cvx_log_level_t level, const cvx_log_ctx_t *ctx, const char *fmt, va_list ap)
{
    char buf[LOG_LINE_MAX];
    size_t off = 0;
    int n;

    if ((unsigned)level > CVX_LOG_TRACE)
        level = CVX_LOG_TRACE;
    n = snprintf(buf, sizeof(buf), "%s: ", level_names[level]);
    off = (size_t)n;
    if (ctx != NULL && (ctx->call_id != NULL || ctx->instance != NULL)) {
        n = snprintf(buf + off, sizeof(buf) - off, "[%s%s%s%s%s] ", ctx->call_id ? "call=" : "",
                     ctx->call_id ? ctx->call_id : "", ctx->call_id && ctx->instance ? " " : "",
                     ctx->instance ? "inst=" : "", ctx->instance ? ctx->instance : "");
        off += (size_t)n < sizeof(buf) - off ? (size_t)n : sizeof(buf) - off - 1;
    }
    n = vsnprintf(buf + off, sizeof(buf) - off, fmt, ap);
    if (n > 0)
        off += (size_t)n < sizeof(buf) - off ? (size_t)n : sizeof(buf) - off - 1;
    if (ctx != NULL && ctx->doing != NULL && off < sizeof(buf) - 1)
        snprintf(buf + off, sizeof(buf) - off, ", while %s", ctx->doing);

    /* The entry is made before the lock is taken, so the lock is held once, briefly. */
    size_t len = strlen(buf);
    log_entry_t *e = malloc(sizeof(*e) + len + 1);
    if (e != NULL) {
        e->next = NULL;
        e->level = level;
        memcpy(e->line, buf, len + 1);
    }

    pthread_mutex_lock(&log_mutex);
    if (!running) {
        /* Start-up and shutdown: write directly, in order. */
        lines_written++;
        emit(level, buf);
        if (log_target == CVX_LOG_TO_STDERR)
            fflush(stderr);
    } else if (e == NULL || queue_len >= LOG_QUEUE_MAX) {
        lines_dropped++;
    } else {
        if (queue_tail != NULL)
            queue_tail->next = e;
        else
            queue_head = e;
        queue_tail = e;
        queue_len++;
        e = NULL;
        pthread_cond_signal(&log_cond);
    }
    pthread_mutex_unlock(&log_mutex);
    free(e); /* not queued */
}

void cvx_log_write(cvx_log_level_t level, const cvx_log_ctx_t *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cvx_log_vwrite(level, ctx, fmt, ap);
    va_end(ap);
}

int cvx_log_start(cvx_log_target_t target, const char *ident)
{
    pthread_mutex_lock(&log_mutex);
    if (running) {
        pthread_mutex_unlock(&log_mutex);
        return CVX_ESTATE;
    }
    log_target = target;
    if (target == CVX_LOG_TO_SYSLOG)
        openlog(ident ? ident : "callvoxd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
    stopping = 0;
    int rc = pthread_create(&log_thread, NULL, log_main, NULL);
    if (rc == 0)
        running = 1;
    pthread_mutex_unlock(&log_mutex);
    return rc == 0 ? 0 : cvx_from_errno(rc);
}

void cvx_log_flush(void)
{
    pthread_mutex_lock(&log_mutex);
    while (running && (queue_head != NULL || writing))
        pthread_cond_wait(&log_idle_cond, &log_mutex);
    pthread_mutex_unlock(&log_mutex);
}

void cvx_log_stop(void)
{
    pthread_mutex_lock(&log_mutex);
    if (!running) {
        pthread_mutex_unlock(&log_mutex);
        return;
    }
    stopping = 1;
    pthread_cond_signal(&log_cond);
    pthread_mutex_unlock(&log_mutex);
    pthread_join(log_thread, NULL);
    pthread_mutex_lock(&log_mutex);
    running = 0;
    /* Lines another thread queued after the logging thread's last look are written here, in
     * order, rather than being lost (and leaked). */
    while (queue_head != NULL) {
        log_entry_t *e = queue_head;
        queue_head = e->next;
        emit(e->level, e->line);
        lines_written++;
        free(e);
    }
    queue_tail = NULL;
    queue_len = 0;
    uint64_t dropped = lines_dropped;
    pthread_mutex_unlock(&log_mutex);
    if (dropped > 0)
        cvx_log_write(CVX_LOG_WARN, NULL, "log: %llu lines were dropped because the queue was full",
                      (unsigned long long)dropped);
    if (log_target == CVX_LOG_TO_SYSLOG)
        closelog();
    log_target = CVX_LOG_TO_STDERR;
}

void cvx_log_get_stats(cvx_log_stats_t *out)
{
    pthread_mutex_lock(&log_mutex);
    out->written = lines_written;
    out->dropped = lines_dropped;
    pthread_mutex_unlock(&log_mutex);
}
