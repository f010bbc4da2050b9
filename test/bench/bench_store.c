/*
 * bench_store: the message store's write load (issue 6, ARCHITECTURE.md "Store").
 *
 * 2,000 recordings in progress at once, each appending 8,000 bytes a second (G.711 at
 * 8 kHz: 16 MB/s in all), plus 300 deposit commits a second (each recording ends after
 * about 6.7 s and a new one starts in its place).  Commit latency is measured from
 * cvx_store_stream_commit() to its callback (the commit is durable by then).  Runs once with
 * group commit and once with one transaction per operation.
 *
 *   bench_store [seconds] [recordings] [commits/s]     (defaults 10, 2000, 300)
 *
 * The store lives in $CVX_BENCH_DIR (default: a fresh directory under $TMPDIR or /tmp).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cvx/error.h"
#include "cvx/log.h"
#include "cvx/reactor.h"
#include "storetest.h"

#define CHUNK     8000
#define MAILBOXES 100

typedef struct rec {
    cvx_store_stream_t *s;
    unsigned chunks;
    unsigned serial;
} rec_t;

typedef struct pending {
    uint64_t t0;
    struct bench *b;
} pending_t;

typedef struct bench {
    st_env_t e;
    uv_timer_t tick;
    rec_t *recs;
    unsigned nrecs, rate;
    uint64_t start_ns, end_ns;
    uint64_t appends, appended_bytes, append_busy, commits_started, commits_done, failures;
    unsigned next_append, next_commit, serial;
    double *lat;
    size_t nlat, caplat;
    int draining;
    cvx_watchdog_t wd;
} bench_t;

static uint8_t chunk_buf[CHUNK];

static int open_rec(bench_t *b, unsigned i)
{
    cvx_message_t m = {0};
    b->serial++;
    snprintf(m.id, sizeof(m.id), "bench-%u-%u", getpid(), b->serial);
    snprintf(m.mailbox, sizeof(m.mailbox), "%u", 5000 + b->serial % MAILBOXES);
    m.codec = CVX_CODEC_ULAW;
    m.rate = 8000;
    b->recs[i].chunks = 0;
    b->recs[i].serial = b->serial;
    return cvx_store_deposit_open(b->e.st, &m, &b->recs[i].s);
}

static void on_commit(void *arg, int status, const cvx_deposit_result_t *r)
{
    pending_t *p = arg;
    bench_t *b = p->b;
    (void)r;
    if (status != 0)
        b->failures++;
    b->commits_done++;
    if (b->nlat == b->caplat) {
        b->caplat = b->caplat ? 2 * b->caplat : 4096;
        b->lat = realloc(b->lat, b->caplat * sizeof(double));
    }
    b->lat[b->nlat++] = (double)(uv_hrtime() - p->t0) / 1e6;
    free(p);
}

static void append_one(bench_t *b, unsigned i)
{
    rec_t *r = &b->recs[i];
    /* Distinct audio per recording and chunk, so nothing is shared by accident. */
    memcpy(chunk_buf, &r->serial, sizeof(r->serial));
    memcpy(chunk_buf + 4, &r->chunks, sizeof(r->chunks));
    int rc = cvx_store_stream_append(r->s, chunk_buf, CHUNK);
    if (rc == CVX_EBUSY) {
        b->append_busy++;
        return;
    }
    if (rc != 0) {
        b->failures++;
        return;
    }
    r->chunks++;
    b->appends++;
    b->appended_bytes += CHUNK;
}

static void commit_one(bench_t *b, unsigned i)
{
    rec_t *r = &b->recs[i];
    if (r->chunks == 0)
        append_one(b, i);
    pending_t *p = malloc(sizeof(*p));
    p->b = b;
    p->t0 = uv_hrtime();
    if (cvx_store_stream_commit(r->s, r->chunks * 1000, on_commit, p) != 0) {
        b->failures++;
        free(p);
    } else {
        b->commits_started++;
    }
    if (open_rec(b, i) != 0)
        b->failures++;
}

static void on_tick(uv_timer_t *t)
{
    bench_t *b = t->data;
    uint64_t now = uv_hrtime();
    if (now >= b->end_ns) {
        uv_timer_stop(&b->tick);
        b->draining = 1;
        for (unsigned i = 0; i < b->nrecs; i++)
            cvx_store_stream_abort(b->recs[i].s);
        return;
    }
    double el = (double)(now - b->start_ns) / 1e9;
    uint64_t appends_due = (uint64_t)(el * b->nrecs); /* one chunk per recording per second */
    uint64_t commits_due = (uint64_t)(el * b->rate);
    while (b->appends + b->append_busy < appends_due) {
        append_one(b, b->next_append);
        b->next_append = (b->next_append + 1) % b->nrecs;
    }
    while (b->commits_started < commits_due) {
        commit_one(b, b->next_commit);
        b->next_commit = (b->next_commit + 1) % b->nrecs;
    }
}

static int cmp_d(const void *a, const void *c)
{
    double x = *(const double *)a, y = *(const double *)c;
    return x < y ? -1 : x > y;
}

static double pct(double *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i];
}

static int run(int group, double seconds, unsigned nrecs, unsigned rate)
{
    bench_t *b = calloc(1, sizeof(*b));
    st_init(&b->e);
    const char *dir = getenv("CVX_BENCH_DIR");
    if (dir != NULL && dir[0] != '\0') {
        free((char *)b->e.conf.path);
        char p[512];
        snprintf(p, sizeof(p), "%s/bench-store-%d", dir, group);
        b->e.conf.path = strdup(p);
    }
    b->e.conf.group_commit = group;
    /* The loop's busy time is measured as in the daemon (stall threshold 10 ms). */
    uv_loop_configure(&b->e.loop, UV_METRICS_IDLE_TIME);
    b->e.conf.map_size = 4096ull << 20;
    b->e.conf.map_max = 65536ull << 20;
    if (st_open(&b->e) != 0) {
        fprintf(stderr, "bench_store: %s\n", b->e.err);
        return 1;
    }
    for (unsigned i = 0; i < MAILBOXES; i++) {
        char num[16];
        snprintf(num, sizeof(num), "%u", 5000 + i);
        st_put(&b->e, num, "Bench", "Mark", CVX_PUT_CREATE);
    }
    b->nrecs = nrecs;
    b->rate = rate;
    b->recs = calloc(nrecs, sizeof(rec_t));
    for (unsigned i = 0; i < nrecs; i++)
        open_rec(b, i);
    /* Start the recordings at staggered points so that commits spread out. */
    b->next_commit = 0;
    cvx_watchdog_start(&b->wd, &b->e.loop, 10);
    uv_timer_init(&b->e.loop, &b->tick);
    b->tick.data = b;
    b->start_ns = uv_hrtime();
    b->end_ns = b->start_ns + (uint64_t)(seconds * 1e9);
    uv_timer_start(&b->tick, on_tick, 1, 1);
    while (!b->draining || b->commits_done < b->commits_started)
        uv_run(&b->e.loop, UV_RUN_ONCE);
    double elapsed = (double)(uv_hrtime() - b->start_ns) / 1e9;
    cvx_store_stats_t s;
    st_stats(&b->e, &s);
    uv_close((uv_handle_t *)&b->tick, NULL);
    cvx_watchdog_stop(&b->wd);
    qsort(b->lat, b->nlat, sizeof(double), cmp_d);
    double p50 = pct(b->lat, b->nlat, 0.50), p99 = pct(b->lat, b->nlat, 0.99);
    double mx = b->nlat ? b->lat[b->nlat - 1] : 0;
    printf("%-28s commits %6llu (%5.0f/s)  appends %7llu (%5.1f MB/s)  refused %llu  "
           "failed %llu\n",
           group ? "group commit:" : "one transaction per op:", (unsigned long long)b->commits_done,
           (double)b->commits_done / elapsed, (unsigned long long)b->appends,
           (double)b->appended_bytes / elapsed / 1e6, (unsigned long long)b->append_busy,
           (unsigned long long)b->failures);
    printf("%-28s commit latency p50 %7.2f ms  p99 %8.2f ms  max %8.2f ms  (target p99 <= 20 "
           "ms: %s)\n",
           "", p50, p99, mx, p99 <= 20.0 ? "met" : "NOT met");
    printf("%-28s loop: %llu iterations, longest busy %.2f ms, %llu over 10 ms\n", "",
           (unsigned long long)b->wd.iterations, (double)b->wd.busy_max_ns / 1e6,
           (unsigned long long)b->wd.stalls);
    printf("%-28s transactions %llu (%.1f operations each), store %llu MB\n", "",
           (unsigned long long)s.transactions,
           s.transactions ? (double)(b->appends + b->commits_done) / (double)s.transactions : 0,
           (unsigned long long)(s.file_bytes >> 20));
    fflush(stdout);
    free(b->lat);
    free(b->recs);
    st_fini(&b->e);
    free(b);
    return 0;
}

int main(int argc, char **argv)
{
    cvx_log_set_level(CVX_LOG_WARN);
    double seconds = argc > 1 ? atof(argv[1]) : 10;
    unsigned nrecs = argc > 2 ? (unsigned)atoi(argv[2]) : 2000;
    unsigned rate = argc > 3 ? (unsigned)atoi(argv[3]) : 300;
    if (seconds <= 0 || nrecs == 0 || rate == 0) {
        fprintf(stderr, "usage: bench_store [seconds] [recordings] [commits/s]\n");
        return 2;
    }
    printf("bench_store: %u recordings appending %u bytes/s each (%.1f MB/s), %u commits/s, "
           "%.0f s per mode\n",
           nrecs, CHUNK, (double)nrecs * CHUNK / 1e6, rate, seconds);
    int rc = run(1, seconds, nrecs, rate);
    if (rc == 0)
        rc = run(0, seconds, nrecs, rate);
    return rc;
}
