/*
 * The store's service interface over the call-server link: the remote store a call server
 * runs (remote.c, rstream.c), its spool (spool.c) and the system server's side (serve.c).
 * Internal to store/ and its tests; the daemon wires it to the link (daemon_link.c).
 *
 * Neither side calls the link itself: each is given a small table of functions
 * (store_link_t, store_server_io_t) that the daemon fills with cvx_link_* and the unit tests
 * with an in-process loopback, so the whole interface is tested without TLS.
 *
 * Thread: the loop thread only.
 */
#ifndef CVX_STORE_REMOTE_H
#define CVX_STORE_REMOTE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cvx/link.h"
#include "cvx/store.h"

/* Operations of CVX_LINK_SVC_STORE (the low 16 bits of the method number).  The Request
 * fields each one reads are named beside it (store/store.proto). */
enum {
    RM_MAILBOX_GET = 1,   /* number -> mailboxes[0] */
    RM_MAILBOX_LIST = 2,  /* after, max -> mailboxes */
    RM_MAILBOX_PUT = 3,   /* mailbox, mode */
    RM_MAILBOX_DEL = 4,   /* number */
    RM_PIN_SET = 5,       /* number, pin */
    RM_PIN_CHECK = 6,     /* number, pin -> pin */
    RM_UNLOCK = 7,        /* number */
    RM_DEPOSIT_OPEN = 8,  /* handle, message */
    RM_GREETING_OPEN = 9, /* handle, number, kind, codec, rate, expires_ms, flags */
    RM_APPEND = 10,       /* handle, data */
    RM_COMMIT = 11,       /* handle, duration_ms -> deposit */
    RM_ABORT = 12,        /* handle */
    RM_MSG_LIST = 13,     /* number, folder -> messages */
    RM_MSG_GET = 14,      /* id -> messages[0] */
    RM_MSG_MOVE = 15,     /* id, folder */
    RM_MSG_PURGE = 16,    /* id */
    RM_MSG_COPY = 17,     /* id, id2, number -> deposit */
    RM_GREETING_DEL = 18, /* number, kind */
    RM_AUDIO_OPEN = 19,   /* handle, is_greeting, id, number, kind -> audio */
    RM_AUDIO_NEXT = 20,   /* handle -> data (empty: the end) */
    RM_AUDIO_CLOSE = 21,  /* handle */
    RM_DIR_SEARCH = 22,   /* digits, max -> entries */
    RM_MWI_GET = 23,      /* number -> mwi */
    RM_MWI_REPORT = 24,   /* number, gen, lamp, ok */
    RM_SETTING_GET = 25,  /* key -> value */
    RM_SETTING_PUT = 26,  /* key, value */
    RM_VERSION = 27,      /* -> version (the cache version, for revalidation) */
};
/* Pushes: CVX_LINK_SVC_MWI op 1 carries an Mwi; CVX_LINK_SVC_CACHE op 1 a CacheChange. */
#define RM_PUSH_MWI   CVX_LINK_METHOD(CVX_LINK_SVC_MWI, 1)
#define RM_PUSH_CACHE CVX_LINK_METHOD(CVX_LINK_SVC_CACHE, 1)
#define RM(op)        CVX_LINK_METHOD(CVX_LINK_SVC_STORE, (op))

/* --- call server ------------------------------------------------------------------------- */

/* How the remote store reaches the system server (the daemon: cvx_link_call and friends). */
typedef struct store_link {
    int (*up)(void *ctx);
    int (*call)(void *ctx, uint32_t method, const void *body, size_t len, cvx_link_reply_fn cb,
                void *arg);
    int (*push)(void *ctx, uint32_t method, const void *body, size_t len);
    void (*set_spool_depth)(void *ctx, uint32_t n);
    void *ctx;
} store_link_t;

typedef struct store_remote_conf {
    const char *spool_path;  /* the spool's directory (created if missing) */
    uint64_t spool_map_size; /* bytes; 0: 1 GB */
    uint32_t retry_ms;       /* first delay before re-sending a message that failed */
    uint32_t retry_max_ms;   /* the delay doubles up to this */
} store_remote_conf_t;

/*
 * Opens the remote store: its spool (an LMDB environment of its own, with its writer thread)
 * and its caches.  Blocks on file I/O: call it at start-up.  link is copied.  Returns 0 or
 * CVX_E*; err explains a failure.  The store is closed with cvx_store_close().
 */
int cvx__store_remote_open(uv_loop_t *loop, const store_link_t *link,
                           const store_remote_conf_t *conf, cvx_store_t **out, char *err,
                           size_t errlen);
/* The link's state changed (cvx_link_client_on_state). */
void cvx__store_remote_link_state(cvx_store_t *st, int up, uint64_t server_epoch);
/* A push from the system server (cvx_link_client_on_push, services MWI and CACHE). */
void cvx__store_remote_push(cvx_store_t *st, uint32_t method, const uint8_t *body, size_t len);

/* One message waiting in the spool, as `show spool` lists it. */
typedef struct store_spool_info {
    char id[CVX_STORE_ID_MAX];
    char mailbox[CVX_STORE_NUMBER_MAX];
    uint64_t received_ms;
    uint64_t bytes;
    uint32_t attempts;
    char last_error[96];
} store_spool_info_t;
/* Lists the spool, oldest first (a read transaction on the loop: metadata only).  fn returns
 * nonzero to stop.  Returns the number listed or CVX_E*. */
int cvx__store_spool_foreach(cvx_store_t *st, int (*fn)(void *arg, const store_spool_info_t *i),
                             void *arg);
/* 1 when the spool's writer has nothing queued (every write so far is applied). */
int cvx__store_spool_settled(cvx_store_t *st);
/* Audio chunks the spool holds (spooled messages and recordings in progress). */
uint64_t cvx__store_spool_chunks(cvx_store_t *st);
/* Messages in the spool (its depth). */
uint32_t cvx__store_spool_depth(cvx_store_t *st);
/* Figures of the caches, for `show spool` and the tests. */
typedef struct store_cache_stats {
    uint64_t hits, misses, invalidations, flushes, served_stale;
    int valid;        /* revalidated since the link last came up: in use */
    uint64_t version; /* the system server's version the caches hold */
    uint64_t epoch;   /* the system server's run they were filled from */
} store_cache_stats_t;
void cvx__store_cache_stats(cvx_store_t *st, store_cache_stats_t *out);
/* Deposits of the call server: committed live on the system server, spooled, forwarded from
 * the spool; and the time from each live commit request (the end of the call) to the system
 * server's confirmation that the message is durable, in µs, the last STORE_LAT_KEEP of them
 * (lat_us is valid until the next request on the loop). */
#define STORE_LAT_KEEP 8192
typedef struct store_remote_stats {
    uint64_t live, spooled, forwarded;
    uint32_t nlat;
    const uint32_t *lat_us;
} store_remote_stats_t;
void cvx__store_remote_stats(cvx_store_t *st, store_remote_stats_t *out);
/* 1 when st is a remote store. */
int cvx__store_is_remote(const cvx_store_t *st);

/* --- system server ----------------------------------------------------------------------- */

typedef struct store_server store_server_t;
/* How the server answers and pushes (the daemon: cvx_link_reply, cvx_link_push_to). */
typedef struct store_server_io {
    int (*reply)(void *ctx, void *req, int status, const void *body, size_t len);
    int (*push_all)(void *ctx, uint32_t method, const void *body, size_t len);
    void *ctx;
} store_server_io_t;

/* Serves st's interface to call servers; watches st's MWI and cache-relevant changes. */
store_server_t *cvx__store_server_create(cvx_store_t *st, const store_server_io_t *io);
/* Stops: aborts the streams and closes the readers the call servers had open. */
void cvx__store_server_destroy(store_server_t *srv);
/* A request from call server peer (req is passed back to io->reply exactly once). */
void cvx__store_server_method(store_server_t *srv, void *req, const char *peer, uint32_t method,
                              const uint8_t *body, size_t len);
/* A push from call server peer (lamp results). */
void cvx__store_server_push(store_server_t *srv, const char *peer, uint32_t method,
                            const uint8_t *body, size_t len);
/* Call server peer went away: its open streams are aborted, its readers closed. */
void cvx__store_server_peer_down(store_server_t *srv, const char *peer);

/* --- conversions (rcodec.c) --------------------------------------------------------------- */

struct Cvxstore__Mailbox;
struct Cvxstore__Message;
struct Cvxstore__Mwi;
struct Cvxstore__DirEntry;
/* To protobuf: the strings of the result point into the C struct (keep it alive). */
void store__pb_from_mailbox(struct Cvxstore__Mailbox *p, const cvx_mailbox_t *m);
void store__pb_from_message(struct Cvxstore__Message *p, const cvx_message_t *m);
void store__pb_from_mwi(struct Cvxstore__Mwi *p, const cvx_mwi_t *m);
void store__pb_from_dir(struct Cvxstore__DirEntry *p, const cvx_dir_entry_t *e);
/* From protobuf: NULL gives zeros; strings are truncated to the C sizes. */
void store__pb_to_mailbox(const struct Cvxstore__Mailbox *p, cvx_mailbox_t *m);
void store__pb_to_message(const struct Cvxstore__Message *p, cvx_message_t *m);
void store__pb_to_mwi(const struct Cvxstore__Mwi *p, cvx_mwi_t *m);
void store__pb_to_dir(const struct Cvxstore__DirEntry *p, cvx_dir_entry_t *e);

#endif
