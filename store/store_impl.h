/*
 * Declarations shared by the files of store/; nothing here leaves store/.
 *
 * Layout of the LMDB environment (named databases; keys in brackets):
 *
 *   settings   ["schema"] u32 LE, ["store_id"] 16 random bytes
 *   mailboxes  [number] -> mailbox record (TLV, see codec.c), with PIN hash and history
 *   messages   [id] -> message record
 *   mbidx      [number NUL be64(received_ms) id] -> folder (1 byte): a mailbox's messages
 *   blobs      [sha256] -> blob record: references, storage id, chunks, bytes, codec, rate
 *   chunks     [be64(storage id) be32(index)] -> audio bytes
 *   streams    [be64(storage id)] -> be64(opened ms): recordings not yet committed
 *   greetings  [number NUL kind] -> greeting record (blob sha256, expiry, flags)
 *   directory  [keypad(last first) NUL number] -> 1 byte: dial-by-name index (schema 2)
 *   mwi        [number] -> MWI and counter record
 *
 * A recording's chunks are written under a fresh storage id as they arrive; at commit the
 * writer hashes them, and either names them by their SHA-256 (a new blob) or, when that
 * SHA-256 is stored already, drops them and references the existing blob.
 */
#ifndef CVX_STORE_IMPL_H
#define CVX_STORE_IMPL_H

#include <lmdb.h>
#include <pthread.h>
#include <sodium.h>
#include <stdint.h>
#include <uv.h>

#include "cvx/error.h"
#include "cvx/reactor.h"
#include "cvx/store.h"

#define STORE_SCHEMA          2
#define STORE_PIN_HASH        crypto_pwhash_STRBYTES
#define STORE_PIN_HISTORY_MAX 8

enum {
    DB_SETTINGS,
    DB_MAILBOXES,
    DB_MESSAGES,
    DB_MBIDX,
    DB_BLOBS,
    DB_CHUNKS,
    DB_STREAMS,
    DB_GREETINGS,
    DB_DIRECTORY,
    DB_MWI,
    DB_COUNT
};
extern const char *const store__db_names[DB_COUNT];

/* The stored mailbox: the public part plus what never leaves the store. */
typedef struct mbrec {
    cvx_mailbox_t pub;
    char pin_hash[STORE_PIN_HASH];
    char history[STORE_PIN_HISTORY_MAX][STORE_PIN_HASH];
} mbrec_t;

typedef struct blobrec {
    uint64_t refs;
    uint64_t sid;
    uint32_t chunks;
    uint64_t bytes;
    uint8_t codec;
    uint32_t rate;
} blobrec_t;

typedef struct greetrec {
    uint8_t sha256[32];
    uint64_t expires_ms;
    uint32_t flags;
    uint64_t recorded_ms;
} greetrec_t;

typedef struct mwirec {
    cvx_mwi_t pub;
    uint32_t msgs_deleted;
    uint64_t total_ms;
} mwirec_t;

/* --- codec.c: records and keys -------------------------------------------------------- */

typedef enum rectype { REC_MAILBOX, REC_MESSAGE, REC_BLOB, REC_GREETING, REC_MWI } rectype_t;

/* Encodes obj (mbrec_t, cvx_message_t, blobrec_t, greetrec_t or mwirec_t) into buf;
 * returns the length, or SIZE_MAX when buf is too small. */
size_t store__encode(rectype_t type, const void *obj, uint8_t *buf, size_t size);
/* Decodes into obj (zeroed first); unknown fields are skipped.  Returns 0 or CVX_ECORRUPT. */
int store__decode(rectype_t type, const void *data, size_t len, void *obj);

#define STORE_REC_MAX 4096

void store__be64(uint8_t *p, uint64_t v);
uint64_t store__get_be64(const uint8_t *p);
void store__be32(uint8_t *p, uint32_t v);
uint32_t store__get_be32(const uint8_t *p);
uint64_t store__now_ms(void);
/* Copies src into dst of size n, always terminated; returns 1 when it fit. */
int store__copy(char *dst, const char *src, size_t n);
void store__hex(const uint8_t *bin, size_t n, char *out);

/* --- the store -------------------------------------------------------------------------- */

typedef struct wop wop_t;

struct cvx_store {
    uv_loop_t *loop;
    cvx_store_conf_t conf;
    char path[4096];
    MDB_env *env;
    MDB_dbi dbi[DB_COUNT];
    uint64_t map_size;
    /* Readers hold it shared around their transactions; the writer holds it exclusively
     * to grow the map (LMDB requires that no transaction is active then). */
    pthread_rwlock_t maplock;

    cvx_async_queue_t done; /* completions from the writer and the thread pool */
    int closing;
    void (*on_closed)(void *arg);
    void *closed_arg;
    unsigned pool_pending; /* uv_queue_work jobs in flight */
    unsigned loop_pending; /* results posted by loop reads, not yet delivered */

    /* writer */
    pthread_t writer;
    int writer_started;
    pthread_mutex_t wmutex;
    pthread_cond_t wcond;
    wop_t *whead, *wtail;
    int wstop;
    uint64_t wqueued_bytes; /* atomic: audio bytes queued */
    unsigned wpending;      /* loop: ops queued whose completion is not delivered */

    uint64_t next_sid;           /* loop: storage ids for new recordings */
    cvx_store_stream_t *streams; /* loop: open streams */
    uint64_t nstreams;

    cvx_store_mwi_watch_fn mwi_fn;
    void *mwi_arg;
    /* serve.c: told of committed changes to a mailbox's record, greetings or name, and of
     * MWI changes (beside mwi_fn, which belongs to the process's own lamp sender). */
    void (*change_fn)(void *arg, const char *number);
    cvx_store_mwi_watch_fn mwi_link_fn;
    void *change_arg;

    /* remote.c: set when this is a call server's remote store (nothing above is used). */
    struct store_rmt *remote;

    /* counters (atomic; written by the writer) */
    uint64_t commits, transactions, full_refusals;
};

struct cvx_store_stream {
    cvx_store_stream_t *next, *prev; /* st->streams */
    cvx_store_t *st;
    uint64_t sid;
    uint32_t next_index;
    uint64_t bytes;
    int is_greeting;
    cvx_message_t msg; /* deposit: the message's metadata */
    char mailbox[CVX_STORE_NUMBER_MAX];
    cvx_greeting_t kind;
    uint8_t codec;
    uint32_t rate;
    uint64_t expires_ms;
    uint32_t gflags;
    int ending;           /* loop: commit or abort queued */
    int werr, werr_batch; /* writer only: failed appends (final, in the current attempt) */
};

/* --- remote.c, rstream.c: the call server's store (remote.h) ----------------------------
 * Every public function of cvx/store.h starts by handing a remote store's request to these.
 * A remote stream embeds cvx_store_stream_t (st points to the remote store); a remote reader
 * starts with a cvx_store_t pointer like struct cvx_store_reader, so r->st tells them apart. */
typedef struct store_rmt store_rmt_t;
int store__r_mailbox_get(cvx_store_t *st, const char *number, cvx_store_mailbox_cb cb, void *arg);
int store__r_mailbox_list(cvx_store_t *st, const char *after, size_t max, cvx_store_mailboxes_cb cb,
                          void *arg);
int store__r_mailbox_put(cvx_store_t *st, const cvx_mailbox_t *mb, int mode, cvx_store_done_cb cb,
                         void *arg);
int store__r_simple(cvx_store_t *st, int op, const char *number, cvx_store_done_cb cb, void *arg);
int store__r_pin_set(cvx_store_t *st, const char *number, const char *pin, cvx_store_done_cb cb,
                     void *arg);
int store__r_pin_check(cvx_store_t *st, const char *number, const char *pin, cvx_store_pin_cb cb,
                       void *arg);
int store__r_deposit_open(cvx_store_t *st, const cvx_message_t *msg, cvx_store_stream_t **out);
int store__r_greeting_open(cvx_store_t *st, const char *mailbox, cvx_greeting_t kind, uint8_t codec,
                           uint32_t rate, uint64_t expires_ms, uint32_t flags,
                           cvx_store_stream_t **out);
int store__r_append(cvx_store_stream_t *s, const void *data, size_t len);
int store__r_commit(cvx_store_stream_t *s, uint32_t duration_ms, cvx_store_commit_cb cb, void *arg);
void store__r_abort(cvx_store_stream_t *s);
int store__r_msg_list(cvx_store_t *st, const char *mailbox, int folder, cvx_store_list_cb cb,
                      void *arg);
int store__r_msg_get(cvx_store_t *st, const char *id, cvx_store_message_cb cb, void *arg);
int store__r_msg_id_op(cvx_store_t *st, int op, const char *id, int folder, cvx_store_done_cb cb,
                       void *arg);
int store__r_msg_copy(cvx_store_t *st, const char *id, const char *new_id, const char *mailbox,
                      cvx_store_commit_cb cb, void *arg);
int store__r_greeting_del(cvx_store_t *st, const char *mailbox, cvx_greeting_t kind,
                          cvx_store_done_cb cb, void *arg);
int store__r_audio_open(cvx_store_t *st, const cvx_audio_ref_t *ref, cvx_store_audio_cb cb,
                        void *arg, cvx_store_reader_t **out);
int store__r_audio_next(cvx_store_reader_t *r, cvx_store_chunk_cb cb, void *arg);
void store__r_audio_close(cvx_store_reader_t *r);
int store__r_dir_search(cvx_store_t *st, const char *digits, size_t max, cvx_store_dir_cb cb,
                        void *arg);
int store__r_mwi_get(cvx_store_t *st, const char *mailbox, cvx_store_mwi_cb cb, void *arg);
int store__r_mwi_report(cvx_store_t *st, const char *mailbox, uint64_t gen, int lamp, int ok,
                        cvx_store_done_cb cb, void *arg);
void store__r_mwi_watch(cvx_store_t *st, cvx_store_mwi_watch_fn fn, void *arg);
int store__r_setting_get(cvx_store_t *st, const char *key, cvx_store_setting_cb cb, void *arg);
int store__r_setting_put(cvx_store_t *st, const char *key, const void *value, size_t len,
                         cvx_store_done_cb cb, void *arg);
void store__r_close(cvx_store_t *st, void (*on_closed)(void *arg), void *arg);

/* --- writer.c ---------------------------------------------------------------------------- */

typedef enum wtype {
    W_APPEND,
    W_COMMIT,
    W_ABORT,
    W_MB_PUT,
    W_MB_DEL,
    W_PIN_SET,
    W_LOGIN,
    W_UNLOCK,
    W_MOVE,
    W_PURGE,
    W_COPY,
    W_EXPIRE,
    W_GREET_DEL,
    W_MWI_REPORT,
    W_RETAIN,
    W_SETTING_PUT, /* settings.c */
} wtype_t;

struct wop {
    wop_t *next;
    cvx_async_job_t job;
    cvx_store_t *st;
    wtype_t type;
    int status;
    union {
        cvx_store_done_cb done;
        cvx_store_commit_cb commit;
        cvx_store_pin_cb pin;
    } cb;
    void *arg;
    /* parameters */
    char key[CVX_STORE_ID_MAX];  /* id or number */
    char key2[CVX_STORE_ID_MAX]; /* second id */
    char number[CVX_STORE_NUMBER_MAX];
    uint64_t u1, u2, now_ms;
    uint32_t n;
    int mode;
    cvx_store_stream_t *stream;
    mbrec_t *mb; /* W_MB_PUT, W_PIN_SET (pin_hash) */
    /* results */
    cvx_deposit_result_t res;
    cvx_pin_result_t pin;
    int mwi_changed;
    cvx_mwi_t mwi;
    /* W_APPEND */
    size_t len;
    uint8_t data[];
};

int store__writer_start(cvx_store_t *st);
/* Asks the writer to finish the queue and exit; it posts its last completion after. */
void store__writer_stop(cvx_store_t *st);
void store__writer_join(cvx_store_t *st);
/* Allocates an op (extra bytes of data) or NULL. */
wop_t *store__wop_new(cvx_store_t *st, wtype_t type, size_t extra);
/* Queues op; its completion runs on the loop.  Loop thread. */
void store__submit(cvx_store_t *st, wop_t *op);
/* Loop: called when an op's completion has been delivered (for close accounting). */
void store__maybe_closed(cvx_store_t *st);

/* settings.c: W_SETTING_PUT inside txn (writer thread). */
int store__op_setting_put(cvx_store_t *st, MDB_txn *txn, wop_t *op);
/* wops.c: one write operation inside txn (writer thread).  Returns 0 or CVX_E*. */
int store__apply(cvx_store_t *st, MDB_txn *txn, wop_t *op);
/* Removes a stream's chunks and its streams entry (after a failed commit, abort, GC). */
int store__drop_sid(cvx_store_t *st, MDB_txn *txn, uint64_t sid);
/* Retention of a mailbox's saved messages (0: forever); what retention does to m as of now:
 * 0 nothing, 1 flag it CVX_MSG_EXPIRING, 2 move it to deleted. */
uint64_t store__retention_of(cvx_store_t *st, MDB_txn *txn, const char *number);
int store__retain_action(cvx_store_t *st, const cvx_message_t *m, uint64_t limit, uint64_t now);
/* Translates an LMDB or errno return code. */
int store__mdb_err(int rc);

/* env.c */
int store__read_begin(cvx_store_t *st, MDB_txn **txn);
void store__read_end(cvx_store_t *st, MDB_txn *txn);
/* Grows the map (writer thread, no transaction open); returns 0 or CVX_EFULL at the max. */
int store__grow(cvx_store_t *st);
/* Reads a mailbox record (and its counters, greetings) in txn.  Returns 0 or CVX_E*. */
int store__get_mailbox(cvx_store_t *st, MDB_txn *txn, const char *number, mbrec_t *out);
int store__get_mwi(cvx_store_t *st, MDB_txn *txn, const char *number, mwirec_t *out);
/* The blob a message or greeting plays. */
int store__resolve_audio(cvx_store_t *st, MDB_txn *txn, const cvx_audio_ref_t *ref, uint8_t sha[32],
                         blobrec_t *blob);
/* Directory key of a mailbox into key (size >= 2 * CVX_STORE_NAME_MAX + 34); returns len. */
size_t store__dir_key(const cvx_mailbox_t *mb, uint8_t *key);
/* Key of a mailbox's message in mbidx. */
size_t store__idx_key(const char *number, uint64_t received_ms, const char *id, uint8_t *key);

/* audio.c: checks a blob's chunks against its SHA-256 (0, CVX_ECORRUPT or CVX_E*). */
int store__check_blob(cvx_store_t *st, MDB_txn *txn, const uint8_t sha[32], const blobrec_t *b);

/* daemon_link.c: the store over the link in callvoxd. */
int store__link_serve(cvx_store_t *st);
void store__link_unserve(void);
int store__link_remote_open(uv_loop_t *loop, const char *spool_path, cvx_store_t **out);
void store__link_remote_close(void);
int store__link_cmds_register(void);

/* cmds.c: registers the shell commands and the mailbox completer (callvoxd only). */
int store__cmds_register(void);

/* api.c */
/* Loop: accounting for jobs delivered through st->done. */
void store__pool_begin(cvx_store_t *st);
void store__pool_end(cvx_store_t *st);

#endif
