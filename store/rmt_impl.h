/*
 * Declarations shared by the call server's remote store files (remote.c: requests, MWI and
 * caches; rstream.c: deposit and greeting streams; forward.c: the spool's forwarder).
 */
#ifndef CVX_STORE_RMT_IMPL_H
#define CVX_STORE_RMT_IMPL_H

#include "remote.h"
#include "spool.h"
#include "store.pb-c.h"
#include "store_impl.h"

/* A greeting or name kept by the call server (greeting cache). */
typedef struct gcache gcache_t;
struct gcache {
    gcache_t *next;
    char mailbox[CVX_STORE_NUMBER_MAX];
    cvx_greeting_t kind;
    cvx_audio_info_t info;
    uint8_t *audio;
    size_t len;
    size_t *chunk_len; /* the chunks as the system server sent them */
    uint32_t nchunks;
};

/* Bounds of the caches: past them the oldest greetings go, or all directory results. */
#define STORE_GCACHE_BYTES (32u << 20)
#define STORE_DCACHE_MAX   1024

/* Directory search results kept by the call server. */
typedef struct dcache dcache_t;
struct dcache {
    dcache_t *next;
    char digits[CVX_STORE_NUMBER_MAX];
    size_t max;
    cvx_dir_entry_t *e;
    size_t n;
};

struct store_rmt {
    cvx_store_t *st;
    uv_loop_t *loop;
    store_link_t link;
    store_remote_conf_t conf;
    spool_t *spool;
    cvx_async_queue_t done; /* results decided on the loop (caches, errors after open) */
    uint64_t next_handle;   /* streams and readers, numbered per process */
    unsigned pending;       /* link calls and local deliveries in flight */
    int closing;
    void (*on_closed)(void *arg);
    void *closed_arg;

    cvx_store_mwi_watch_fn mwi_fn;
    void *mwi_arg;
    cvx_store_stream_t *streams; /* open deposit and greeting streams (rstream.c) */

    /* caches: valid only while version/epoch say so (remote.c, "caches") */
    int cache_valid;      /* revalidated since the link came up */
    uint64_t cache_epoch; /* the system server's run they were filled from */
    uint64_t cache_version;
    gcache_t *greetings; /* most recently added first */
    size_t greeting_bytes;
    dcache_t *dir;
    unsigned ndir;
    store_cache_stats_t stats;

    /* forwarder (forward.c) */
    int fwd_busy;
    uv_timer_t fwd_timer;
    uint32_t fwd_delay_ms;
    uint64_t forwarded;

    /* figures (cvx__store_remote_stats) */
    uint64_t live, spooled;
    uint32_t lat_us[STORE_LAT_KEEP];
    uint32_t nlat, lat_next;
};

/* Records the time a live commit took (rstream.c). */
void store__rmt_commit_latency(store_rmt_t *rm, uint64_t ns);

store_rmt_t *store__rmt(cvx_store_t *st);
/* Counts a request in flight (close waits for them). */
void store__rmt_hold(store_rmt_t *rm);
void store__rmt_release(store_rmt_t *rm);
/* Sends a Request; cb gets the decoded Reply (NULL unless status is 0 with a body). */
typedef void (*rmt_reply_fn)(void *arg, int status, const Cvxstore__Reply *r);
int store__rmt_call(store_rmt_t *rm, int op, const Cvxstore__Request *rq, rmt_reply_fn cb,
                    void *arg);
/* Fire-and-forget request (its reply is ignored). */
void store__rmt_send(store_rmt_t *rm, int op, const Cvxstore__Request *rq);
/* A reply's version: bumps the known version when the caches have not seen it (nothing). */
void store__rmt_seen_version(store_rmt_t *rm, uint64_t version);

/* rstream.c: aborts the streams still open (the store closes). */
void store__rmt_abort_streams(store_rmt_t *rm);

/* forward.c */
void store__fwd_init(store_rmt_t *rm);
void store__fwd_kick(store_rmt_t *rm);
void store__fwd_close(store_rmt_t *rm);
/* Errors after which a deposit is spooled rather than refused (the system server may be
 * fine but could not be reached or could not take it now). */
int store__rmt_transient(int status);

#endif
