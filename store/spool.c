/*
 * The call server's spool (spool.h): an LMDB environment with its own writer thread.
 *
 * The environment is opened with MDB_NOSYNC and the writer syncs explicitly after every
 * transaction that holds a spool entry change, before it reports any of them: a spooled
 * message is acknowledged only once it is on disk, while the mailbox records kept for
 * lookups (a cache) cost no fsync of their own.
 */
#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cvx/log.h"
#include "cvx/reactor.h"
#include "spool.h"
#include "store.pb-c.h"
#include "store_impl.h"

enum { DBQ, DBA, DBM, NDB };
static const char *const db_names[NDB] = {"queue", "audio", "mailbox"};

typedef enum sptype {
    SP_PUT,
    SP_DEL,
    SP_NOTE,
    SP_MB_PUT,
    SP_MB_DROP,
    SP_DRAFT_APPEND, /* a chunk of a recording in progress (no sync) */
    SP_DRAFT_DROP,   /* a recording that reached the system server: its chunks go */
} sptype_t;

typedef struct spop spop_t;
struct spop {
    spop_t *next;
    cvx_async_job_t job;
    spool_t *sp;
    sptype_t type;
    int status;
    cvx_message_t msg;
    cvx_mailbox_t mb;
    char text[96]; /* SP_PUT: why; SP_NOTE: the error */
    int hold;
    uint8_t sha[32];
    spool_put_cb put_cb;
    void (*done_cb)(void *arg, int status);
    void *arg;
    size_t len;
    uint8_t *audio;
    uint32_t chunk; /* SP_DRAFT_APPEND: its index; SP_PUT of a draft: the number of chunks */
    int draft;      /* SP_PUT: the audio is the draft's chunks, written already */
};

struct spool {
    uv_loop_t *loop;
    char path[4096];
    MDB_env *env;
    MDB_dbi dbi[NDB];
    cvx_async_queue_t done;
    pthread_t thread;
    int started;
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    spop_t *head, *tail;
    int stop;
    unsigned pending; /* loop: ops queued, not yet delivered */
    unsigned work;    /* loop: thread-pool loads in flight */
    uint32_t depth;
    int closing;
    void (*on_closed)(void *arg);
    void *closed_arg;
};

static int mdb_err(int rc)
{
    switch (rc) {
    case 0:
        return 0;
    case MDB_NOTFOUND:
        return CVX_ENOTFOUND;
    case MDB_MAP_FULL:
    case MDB_TXN_FULL:
    case ENOSPC:
        return CVX_EFULL;
    case ENOMEM:
        return CVX_ENOMEM;
    default:
        return CVX_EIO;
    }
}

static size_t queue_key(const cvx_message_t *m, uint8_t *key)
{
    size_t n = strlen(m->id);
    store__be64(key, m->received_ms);
    memcpy(key + 8, m->id, n);
    return 8 + n;
}

static size_t audio_key(const char *id, uint32_t chunk, uint8_t *key)
{
    size_t n = strlen(id);
    memcpy(key, id, n);
    key[n] = 0;
    store__be32(key + n + 1, chunk);
    return n + 5;
}

/* --- writer thread ------------------------------------------------------------------------- */

static int put_entry(spool_t *sp, MDB_txn *txn, const cvx_message_t *m,
                     const Cvxstore__SpoolEntry *e)
{
    uint8_t key[8 + CVX_STORE_ID_MAX], buf[STORE_REC_MAX];
    size_t n = cvxstore__spool_entry__get_packed_size(e);
    if (n > sizeof(buf))
        return CVX_EINVAL;
    cvxstore__spool_entry__pack(e, buf);
    MDB_val k = {queue_key(m, key), key}, v = {n, buf};
    return mdb_err(mdb_put(txn, sp->dbi[DBQ], &k, &v, 0));
}

/* Hashes the chunks a recording wrote as it went; fails when one is missing. */
static int hash_draft(spool_t *sp, MDB_txn *txn, spop_t *op)
{
    crypto_hash_sha256_state hs;
    crypto_hash_sha256_init(&hs);
    op->len = 0;
    for (uint32_t chunk = 0; chunk < op->chunk; chunk++) {
        uint8_t ak[CVX_STORE_ID_MAX + 5];
        MDB_val a = {audio_key(op->msg.id, chunk, ak), ak}, v;
        int rc = mdb_get(txn, sp->dbi[DBA], &a, &v);
        if (rc != 0)
            return rc == MDB_NOTFOUND ? CVX_EIO : mdb_err(rc);
        crypto_hash_sha256_update(&hs, v.mv_data, v.mv_size);
        op->len += v.mv_size;
    }
    crypto_hash_sha256_final(&hs, op->sha);
    return 0;
}

static int op_put(spool_t *sp, MDB_txn *txn, spop_t *op)
{
    if (op->draft) {
        int rc = hash_draft(sp, txn, op);
        if (rc != 0)
            return rc;
        op->msg.bytes = op->len;
        memcpy(op->msg.sha256, op->sha, 32);
        Cvxstore__SpoolEntry e = CVXSTORE__SPOOL_ENTRY__INIT;
        Cvxstore__Message pm;
        store__pb_from_message(&pm, &op->msg);
        e.message = &pm;
        e.spooled_ms = store__now_ms();
        e.why = op->text;
        return put_entry(sp, txn, &op->msg, &e);
    }
    crypto_hash_sha256(op->sha, op->audio, op->len);
    op->msg.bytes = op->len;
    memcpy(op->msg.sha256, op->sha, 32);
    uint32_t chunk = 0;
    for (size_t off = 0; off < op->len; off += CVX_STORE_CHUNK_MAX, chunk++) {
        size_t n = op->len - off < CVX_STORE_CHUNK_MAX ? op->len - off : CVX_STORE_CHUNK_MAX;
        uint8_t key[CVX_STORE_ID_MAX + 5];
        MDB_val k = {audio_key(op->msg.id, chunk, key), key}, v = {n, op->audio + off};
        int rc = mdb_err(mdb_put(txn, sp->dbi[DBA], &k, &v, 0));
        if (rc != 0)
            return rc;
    }
    Cvxstore__SpoolEntry e = CVXSTORE__SPOOL_ENTRY__INIT;
    Cvxstore__Message pm;
    store__pb_from_message(&pm, &op->msg);
    e.message = &pm;
    e.spooled_ms = store__now_ms();
    e.why = op->text;
    return put_entry(sp, txn, &op->msg, &e);
}

static int drop_chunks(spool_t *sp, MDB_txn *txn, const char *id)
{
    for (uint32_t chunk = 0;; chunk++) {
        uint8_t ak[CVX_STORE_ID_MAX + 5];
        MDB_val a = {audio_key(id, chunk, ak), ak};
        int rc = mdb_del(txn, sp->dbi[DBA], &a, NULL);
        if (rc == MDB_NOTFOUND)
            return 0;
        if (rc != 0)
            return mdb_err(rc);
    }
}

static int op_draft(spool_t *sp, MDB_txn *txn, spop_t *op)
{
    if (op->type == SP_DRAFT_DROP)
        return drop_chunks(sp, txn, op->msg.id);
    uint8_t ak[CVX_STORE_ID_MAX + 5];
    MDB_val a = {audio_key(op->msg.id, op->chunk, ak), ak}, v = {op->len, op->audio};
    return mdb_err(mdb_put(txn, sp->dbi[DBA], &a, &v, 0));
}

static int op_del(spool_t *sp, MDB_txn *txn, spop_t *op)
{
    uint8_t key[8 + CVX_STORE_ID_MAX];
    MDB_val k = {queue_key(&op->msg, key), key};
    int rc = mdb_del(txn, sp->dbi[DBQ], &k, NULL);
    if (rc != 0)
        return mdb_err(rc);
    for (uint32_t chunk = 0;; chunk++) {
        uint8_t ak[CVX_STORE_ID_MAX + 5];
        MDB_val a = {audio_key(op->msg.id, chunk, ak), ak};
        rc = mdb_del(txn, sp->dbi[DBA], &a, NULL);
        if (rc == MDB_NOTFOUND)
            return 0;
        if (rc != 0)
            return mdb_err(rc);
    }
}

static int op_note(spool_t *sp, MDB_txn *txn, spop_t *op)
{
    uint8_t key[8 + CVX_STORE_ID_MAX];
    MDB_val k = {queue_key(&op->msg, key), key}, v;
    int rc = mdb_get(txn, sp->dbi[DBQ], &k, &v);
    if (rc != 0)
        return mdb_err(rc);
    Cvxstore__SpoolEntry *e = cvxstore__spool_entry__unpack(NULL, v.mv_size, v.mv_data);
    if (e == NULL)
        return CVX_ECORRUPT;
    e->attempts++;
    char *old = e->last_error;
    e->last_error = op->text;
    e->held = op->hold;
    rc = put_entry(sp, txn, &op->msg, e);
    e->last_error = old;
    cvxstore__spool_entry__free_unpacked(e, NULL);
    return rc;
}

static int op_mb(spool_t *sp, MDB_txn *txn, spop_t *op)
{
    MDB_val k = {strlen(op->mb.number), op->mb.number};
    if (op->type == SP_MB_DROP) {
        int rc = mdb_del(txn, sp->dbi[DBM], &k, NULL);
        return rc == MDB_NOTFOUND ? 0 : mdb_err(rc);
    }
    Cvxstore__Mailbox pm;
    store__pb_from_mailbox(&pm, &op->mb);
    uint8_t buf[STORE_REC_MAX];
    size_t n = cvxstore__mailbox__get_packed_size(&pm);
    if (n > sizeof(buf))
        return CVX_EINVAL;
    cvxstore__mailbox__pack(&pm, buf);
    MDB_val v = {n, buf};
    return mdb_err(mdb_put(txn, sp->dbi[DBM], &k, &v, 0));
}

static int apply(spool_t *sp, MDB_txn *parent, spop_t *op)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(sp->env, parent, 0, &txn);
    if (rc != 0)
        return mdb_err(rc);
    switch (op->type) {
    case SP_PUT:
        rc = op_put(sp, txn, op);
        break;
    case SP_DEL:
        rc = op_del(sp, txn, op);
        break;
    case SP_NOTE:
        rc = op_note(sp, txn, op);
        break;
    case SP_DRAFT_APPEND:
    case SP_DRAFT_DROP:
        rc = op_draft(sp, txn, op);
        break;
    default:
        rc = op_mb(sp, txn, op);
        break;
    }
    if (rc == 0)
        rc = mdb_err(mdb_txn_commit(txn));
    else
        mdb_txn_abort(txn);
    return rc;
}

static void deliver(cvx_async_job_t *job);

static void run_batch(spool_t *sp, spop_t *ops)
{
    MDB_txn *txn;
    int rc = mdb_err(mdb_txn_begin(sp->env, NULL, 0, &txn));
    int sync = 0;
    for (spop_t *op = ops; op != NULL; op = op->next) {
        op->status = rc == 0 ? apply(sp, txn, op) : rc;
        if (op->type == SP_PUT || op->type == SP_DEL || op->type == SP_NOTE)
            sync = 1;
    }
    if (rc == 0) {
        rc = mdb_err(mdb_txn_commit(txn));
        if (rc == 0 && sync)
            rc = mdb_err(mdb_env_sync(sp->env, 1));
    }
    spop_t *next;
    for (spop_t *op = ops; op != NULL; op = next) {
        next = op->next;
        if (rc != 0)
            op->status = rc;
        cvx_async_queue_post(&sp->done, &op->job, deliver);
    }
}

static void *writer_main(void *arg)
{
    spool_t *sp = arg;
    pthread_mutex_lock(&sp->mutex);
    for (;;) {
        while (sp->head == NULL && !sp->stop)
            pthread_cond_wait(&sp->cond, &sp->mutex);
        if (sp->head == NULL)
            break;
        spop_t *ops = sp->head;
        sp->head = sp->tail = NULL;
        pthread_mutex_unlock(&sp->mutex);
        run_batch(sp, ops);
        pthread_mutex_lock(&sp->mutex);
    }
    pthread_mutex_unlock(&sp->mutex);
    return NULL;
}

/* --- loop side ------------------------------------------------------------------------------ */

static void maybe_closed(spool_t *sp);

static void deliver(cvx_async_job_t *job)
{
    spop_t *op = (spop_t *)((char *)job - offsetof(spop_t, job));
    spool_t *sp = op->sp;
    if (op->status == 0 && op->type == SP_PUT)
        sp->depth++;
    if (op->status == 0 && op->type == SP_DEL && sp->depth > 0)
        sp->depth--;
    if (op->status != 0 && op->type != SP_MB_PUT && op->type != SP_DRAFT_APPEND)
        cvx_warn("spool %s: writing failed: %s", sp->path, cvx_strerror(op->status));
    if (op->put_cb != NULL)
        op->put_cb(op->arg, op->status, op->status == 0 ? op->sha : NULL);
    else if (op->done_cb != NULL)
        op->done_cb(op->arg, op->status);
    free(op->audio);
    free(op);
    sp->pending--;
    maybe_closed(sp);
}

static spop_t *op_new(spool_t *sp, sptype_t type)
{
    if (sp == NULL || sp->closing)
        return NULL;
    spop_t *op = calloc(1, sizeof(*op));
    if (op != NULL) {
        op->sp = sp;
        op->type = type;
    }
    return op;
}

static void submit(spool_t *sp, spop_t *op)
{
    sp->pending++;
    pthread_mutex_lock(&sp->mutex);
    if (sp->tail != NULL)
        sp->tail->next = op;
    else
        sp->head = op;
    sp->tail = op;
    pthread_cond_signal(&sp->cond);
    pthread_mutex_unlock(&sp->mutex);
}

int spool_put(spool_t *sp, const cvx_message_t *msg, const void *audio, size_t len, const char *why,
              spool_put_cb cb, void *arg)
{
    spop_t *op = op_new(sp, SP_PUT);
    if (op == NULL)
        return sp == NULL || sp->closing ? CVX_EUNAVAIL : CVX_ENOMEM;
    op->audio = malloc(len ? len : 1);
    if (op->audio == NULL) {
        free(op);
        return CVX_ENOMEM;
    }
    if (len > 0)
        memcpy(op->audio, audio, len);
    op->len = len;
    op->msg = *msg;
    store__copy(op->text, why != NULL ? why : "", sizeof(op->text));
    op->put_cb = cb;
    op->arg = arg;
    submit(sp, op);
    return 0;
}

int spool_put_draft(spool_t *sp, const cvx_message_t *msg, uint32_t chunks, const char *why,
                    spool_put_cb cb, void *arg)
{
    spop_t *op = op_new(sp, SP_PUT);
    if (op == NULL)
        return sp == NULL || sp->closing ? CVX_EUNAVAIL : CVX_ENOMEM;
    op->draft = 1;
    op->chunk = chunks;
    op->msg = *msg;
    store__copy(op->text, why != NULL ? why : "", sizeof(op->text));
    op->put_cb = cb;
    op->arg = arg;
    submit(sp, op);
    return 0;
}

int spool_draft_append(spool_t *sp, const char *id, uint32_t chunk, const void *data, size_t len)
{
    spop_t *op = op_new(sp, SP_DRAFT_APPEND);
    if (op == NULL)
        return sp == NULL || sp->closing ? CVX_EUNAVAIL : CVX_ENOMEM;
    op->audio = malloc(len);
    if (op->audio == NULL) {
        free(op);
        return CVX_ENOMEM;
    }
    memcpy(op->audio, data, len);
    op->len = len;
    op->chunk = chunk;
    store__copy(op->msg.id, id, sizeof(op->msg.id));
    submit(sp, op);
    return 0;
}

int spool_draft_drop(spool_t *sp, const char *id)
{
    spop_t *op = op_new(sp, SP_DRAFT_DROP);
    if (op == NULL)
        return CVX_EUNAVAIL;
    store__copy(op->msg.id, id, sizeof(op->msg.id));
    submit(sp, op);
    return 0;
}

int spool_del(spool_t *sp, const cvx_message_t *msg, void (*cb)(void *arg, int status), void *arg)
{
    spop_t *op = op_new(sp, SP_DEL);
    if (op == NULL)
        return CVX_EUNAVAIL;
    op->msg = *msg;
    op->done_cb = cb;
    op->arg = arg;
    submit(sp, op);
    return 0;
}

int spool_note(spool_t *sp, const cvx_message_t *msg, const char *error, int hold,
               void (*cb)(void *arg, int status), void *arg)
{
    spop_t *op = op_new(sp, SP_NOTE);
    if (op == NULL)
        return CVX_EUNAVAIL;
    op->msg = *msg;
    store__copy(op->text, error, sizeof(op->text));
    op->hold = hold;
    op->done_cb = cb;
    op->arg = arg;
    submit(sp, op);
    return 0;
}

int spool_mailbox_put(spool_t *sp, const cvx_mailbox_t *mb)
{
    spop_t *op = op_new(sp, SP_MB_PUT);
    if (op == NULL)
        return CVX_EUNAVAIL;
    op->mb = *mb;
    submit(sp, op);
    return 0;
}

int spool_mailbox_drop(spool_t *sp, const char *number)
{
    spop_t *op = op_new(sp, SP_MB_DROP);
    if (op == NULL)
        return CVX_EUNAVAIL;
    store__copy(op->mb.number, number, sizeof(op->mb.number));
    submit(sp, op);
    return 0;
}

int spool_mailbox_get(spool_t *sp, const char *number, cvx_mailbox_t *out)
{
    MDB_txn *txn;
    int rc = mdb_err(mdb_txn_begin(sp->env, NULL, MDB_RDONLY, &txn));
    if (rc != 0)
        return rc;
    MDB_val k = {strlen(number), (void *)number}, v;
    rc = mdb_err(mdb_get(txn, sp->dbi[DBM], &k, &v));
    if (rc == 0) {
        Cvxstore__Mailbox *pm = cvxstore__mailbox__unpack(NULL, v.mv_size, v.mv_data);
        if (pm == NULL) {
            rc = CVX_ECORRUPT;
        } else {
            store__pb_to_mailbox(pm, out);
            cvxstore__mailbox__free_unpacked(pm, NULL);
        }
    }
    mdb_txn_abort(txn);
    return rc;
}

uint64_t spool_chunks(spool_t *sp)
{
    MDB_txn *txn;
    MDB_stat ms;
    uint64_t n = 0;
    if (sp != NULL && mdb_txn_begin(sp->env, NULL, MDB_RDONLY, &txn) == 0) {
        if (mdb_stat(txn, sp->dbi[DBA], &ms) == 0)
            n = ms.ms_entries;
        mdb_txn_abort(txn);
    }
    return n;
}

unsigned spool_pending(const spool_t *sp)
{
    return sp != NULL ? sp->pending : 0;
}

uint32_t spool_depth(const spool_t *sp)
{
    return sp != NULL ? sp->depth : 0;
}

int spool_foreach(spool_t *sp, int (*fn)(void *arg, const store_spool_info_t *i), void *arg)
{
    MDB_txn *txn;
    MDB_cursor *c;
    int rc = mdb_err(mdb_txn_begin(sp->env, NULL, MDB_RDONLY, &txn));
    if (rc != 0)
        return rc;
    rc = mdb_err(mdb_cursor_open(txn, sp->dbi[DBQ], &c));
    int n = 0;
    if (rc == 0) {
        MDB_val k, v;
        for (int r = mdb_cursor_get(c, &k, &v, MDB_FIRST); r == 0;
             r = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
            Cvxstore__SpoolEntry *e = cvxstore__spool_entry__unpack(NULL, v.mv_size, v.mv_data);
            if (e == NULL)
                continue;
            store_spool_info_t i;
            memset(&i, 0, sizeof(i));
            cvx_message_t m;
            store__pb_to_message(e->message, &m);
            store__copy(i.id, m.id, sizeof(i.id));
            store__copy(i.mailbox, m.mailbox, sizeof(i.mailbox));
            i.received_ms = m.received_ms;
            i.bytes = m.bytes;
            i.attempts = e->attempts;
            store__copy(i.last_error, e->last_error, sizeof(i.last_error));
            cvxstore__spool_entry__free_unpacked(e, NULL);
            n++;
            if (fn(arg, &i) != 0)
                break;
        }
        mdb_cursor_close(c);
    }
    mdb_txn_abort(txn);
    return rc != 0 ? rc : n;
}

/* --- loading on the thread pool -------------------------------------------------------------- */

typedef struct load {
    uv_work_t req;
    spool_t *sp;
    spool_load_cb cb;
    void *arg;
    int status;
    cvx_message_t msg;
    uint32_t attempts;
    uint8_t *audio;
    size_t len;
} load_t;

static void load_work(uv_work_t *req)
{
    load_t *l = req->data;
    spool_t *sp = l->sp;
    MDB_txn *txn;
    MDB_cursor *c;
    l->status = mdb_err(mdb_txn_begin(sp->env, NULL, MDB_RDONLY, &txn));
    if (l->status != 0)
        return;
    l->status = mdb_err(mdb_cursor_open(txn, sp->dbi[DBQ], &c));
    if (l->status == 0) {
        MDB_val k, v;
        int found = 0;
        for (int r = mdb_cursor_get(c, &k, &v, MDB_FIRST); r == 0 && !found;
             r = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
            Cvxstore__SpoolEntry *e = cvxstore__spool_entry__unpack(NULL, v.mv_size, v.mv_data);
            if (e == NULL)
                continue;
            if (!e->held) {
                store__pb_to_message(e->message, &l->msg);
                l->attempts = e->attempts;
                found = 1;
            }
            cvxstore__spool_entry__free_unpacked(e, NULL);
        }
        mdb_cursor_close(c);
        l->status = found ? 0 : CVX_ENOTFOUND;
    }
    if (l->status == 0) {
        l->audio = malloc(l->msg.bytes ? l->msg.bytes : 1);
        if (l->audio == NULL)
            l->status = CVX_ENOMEM;
        for (uint32_t chunk = 0; l->status == 0 && l->len < l->msg.bytes; chunk++) {
            uint8_t ak[CVX_STORE_ID_MAX + 5];
            MDB_val a = {audio_key(l->msg.id, chunk, ak), ak}, v;
            int r = mdb_get(txn, sp->dbi[DBA], &a, &v);
            if (r != 0 || v.mv_size > l->msg.bytes - l->len) {
                l->status = CVX_ECORRUPT;
                break;
            }
            memcpy(l->audio + l->len, v.mv_data, v.mv_size);
            l->len += v.mv_size;
        }
    }
    mdb_txn_abort(txn);
}

static void load_after(uv_work_t *req, int uvstatus)
{
    load_t *l = req->data;
    spool_t *sp = l->sp;
    if (uvstatus != 0 && l->status == 0)
        l->status = CVX_EUNAVAIL;
    l->cb(l->arg, l->status, l->status == 0 ? &l->msg : NULL, l->audio, l->len, l->attempts);
    free(l->audio);
    free(l);
    sp->work--;
    maybe_closed(sp);
}

int spool_load_oldest(spool_t *sp, spool_load_cb cb, void *arg)
{
    if (sp == NULL || sp->closing)
        return CVX_EUNAVAIL;
    load_t *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return CVX_ENOMEM;
    l->sp = sp;
    l->cb = cb;
    l->arg = arg;
    l->req.data = l;
    int rc = uv_queue_work(sp->loop, &l->req, load_work, load_after);
    if (rc != 0) {
        free(l);
        return CVX_EIO;
    }
    sp->work++;
    return 0;
}

/* --- open and close ------------------------------------------------------------------------- */

/* Removes the chunks of recordings that were in progress when the call server stopped
 * (audio whose id has no spool entry).  At open, before the loop serves calls. */
static int drop_orphans(spool_t *sp, MDB_txn *txn, unsigned *n)
{
    MDB_cursor *q, *a;
    int rc = mdb_cursor_open(txn, sp->dbi[DBQ], &q);
    if (rc != 0)
        return rc;
    /* the ids that have an entry */
    size_t nids = 0, cap = 0;
    char(*ids)[CVX_STORE_ID_MAX] = NULL;
    MDB_val k, v;
    for (rc = mdb_cursor_get(q, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(q, &k, &v, MDB_NEXT)) {
        if (k.mv_size <= 8 || k.mv_size - 8 >= CVX_STORE_ID_MAX)
            continue;
        if (nids == cap) {
            cap = cap ? cap * 2 : 64;
            void *p = realloc(ids, cap * sizeof(*ids));
            if (p == NULL) {
                free(ids);
                mdb_cursor_close(q);
                return ENOMEM;
            }
            ids = p;
        }
        memcpy(ids[nids], (char *)k.mv_data + 8, k.mv_size - 8);
        ids[nids][k.mv_size - 8] = '\0';
        nids++;
    }
    mdb_cursor_close(q);
    rc = mdb_cursor_open(txn, sp->dbi[DBA], &a);
    if (rc != 0) {
        free(ids);
        return rc;
    }
    char last[CVX_STORE_ID_MAX] = "";
    for (rc = mdb_cursor_get(a, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(a, &k, &v, MDB_NEXT)) {
        const char *id = k.mv_data;
        size_t idlen = strnlen(id, k.mv_size);
        if (idlen >= CVX_STORE_ID_MAX)
            continue;
        int known = 0;
        for (size_t i = 0; i < nids && !known; i++)
            known = strlen(ids[i]) == idlen && memcmp(ids[i], id, idlen) == 0;
        if (known)
            continue;
        if (strlen(last) != idlen || memcmp(last, id, idlen) != 0) {
            memcpy(last, id, idlen);
            last[idlen] = '\0';
            (*n)++;
        }
        if ((rc = mdb_cursor_del(a, 0)) != 0)
            break;
    }
    mdb_cursor_close(a);
    free(ids);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int spool_open(uv_loop_t *loop, const char *path, uint64_t map_size, spool_t **out, char *err,
               size_t errlen)
{
    spool_t *sp = calloc(1, sizeof(*sp));
    if (sp == NULL)
        return CVX_ENOMEM;
    sp->loop = loop;
    snprintf(sp->path, sizeof(sp->path), "%s", path);
    int rc;
    if (mkdir(path, 0750) != 0 && errno != EEXIST) {
        rc = cvx_from_errno(errno);
        snprintf(err, errlen, "spool %s: cannot create the directory: %s", path, strerror(errno));
        goto fail;
    }
    if ((rc = mdb_env_create(&sp->env)) != 0 || (rc = mdb_env_set_maxdbs(sp->env, NDB)) != 0 ||
        (rc = mdb_env_set_mapsize(sp->env, map_size ? map_size : (1ULL << 30))) != 0 ||
        (rc = mdb_env_open(sp->env, path, MDB_NOSYNC | MDB_NOTLS, 0640)) != 0) {
        snprintf(err, errlen, "spool %s: cannot open: %s", path, mdb_strerror(rc));
        rc = mdb_err(rc);
        goto fail;
    }
    MDB_txn *txn;
    if ((rc = mdb_txn_begin(sp->env, NULL, 0, &txn)) != 0) {
        snprintf(err, errlen, "spool %s: %s", path, mdb_strerror(rc));
        rc = mdb_err(rc);
        goto fail;
    }
    for (int i = 0; i < NDB && rc == 0; i++)
        rc = mdb_dbi_open(txn, db_names[i], MDB_CREATE, &sp->dbi[i]);
    MDB_stat ms;
    if (rc == 0 && (rc = mdb_stat(txn, sp->dbi[DBQ], &ms)) == 0)
        sp->depth = (uint32_t)ms.ms_entries;
    unsigned orphans = 0;
    if (rc == 0)
        rc = drop_orphans(sp, txn, &orphans);
    if (rc == 0 && orphans > 0)
        cvx_notice("spool %s: %u recording%s cut short by a stop removed", path, orphans,
                   orphans == 1 ? "" : "s");
    if (rc == 0)
        rc = mdb_txn_commit(txn);
    else
        mdb_txn_abort(txn);
    if (rc == 0)
        rc = mdb_env_sync(sp->env, 1);
    if (rc != 0) {
        snprintf(err, errlen, "spool %s: %s", path, mdb_strerror(rc));
        rc = mdb_err(rc);
        goto fail;
    }
    pthread_mutex_init(&sp->mutex, NULL);
    pthread_cond_init(&sp->cond, NULL);
    if ((rc = cvx_async_queue_init(loop, &sp->done)) != 0) {
        snprintf(err, errlen, "spool %s: %s", path, cvx_strerror(rc));
        goto fail_locks;
    }
    if (pthread_create(&sp->thread, NULL, writer_main, sp) != 0) {
        snprintf(err, errlen, "spool %s: cannot start its writer thread", path);
        rc = CVX_ENOMEM;
        cvx_async_queue_close(&sp->done, NULL);
        goto fail_locks;
    }
    sp->started = 1;
    *out = sp;
    return 0;
fail_locks:
    pthread_mutex_destroy(&sp->mutex);
    pthread_cond_destroy(&sp->cond);
fail:
    if (sp->env != NULL)
        mdb_env_close(sp->env);
    free(sp);
    return rc;
}

static void queue_closed(cvx_async_queue_t *q)
{
    spool_t *sp = (spool_t *)((char *)q - offsetof(spool_t, done));
    void (*fn)(void *) = sp->on_closed;
    void *arg = sp->closed_arg;
    mdb_env_sync(sp->env, 1);
    mdb_env_close(sp->env);
    pthread_mutex_destroy(&sp->mutex);
    pthread_cond_destroy(&sp->cond);
    free(sp);
    if (fn != NULL)
        fn(arg);
}

static void maybe_closed(spool_t *sp)
{
    if (sp->closing != 1 || sp->pending > 0 || sp->work > 0)
        return;
    sp->closing = 2;
    pthread_mutex_lock(&sp->mutex);
    sp->stop = 1;
    pthread_cond_signal(&sp->cond);
    pthread_mutex_unlock(&sp->mutex);
    pthread_join(sp->thread, NULL);
    cvx_async_queue_close(&sp->done, queue_closed);
}

void spool_close(spool_t *sp, void (*on_closed)(void *arg), void *arg)
{
    if (sp == NULL || sp->closing)
        return;
    sp->closing = 1;
    sp->on_closed = on_closed;
    sp->closed_arg = arg;
    maybe_closed(sp);
}
