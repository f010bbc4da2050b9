/*
 * The writer thread: the only thread that writes to LMDB.
 *
 * Operations are queued by the loop; the writer takes everything queued (up to batch_max
 * operations) and applies it in one transaction, each operation in a nested transaction of
 * its own so that one failing operation (mailbox missing, quota, map full) is rolled back
 * alone.  The transaction commits with a full sync (no MDB_NOSYNC: an operation is reported
 * only once it is durable), then every operation's completion is posted to the loop.
 *
 * Map full: the writer grows the map (up to map_max) and applies the batch again; when it
 * cannot grow, the operations that did not fit fail with CVX_EFULL and the others commit.
 * If the commit itself fails for lack of space, each operation is retried in a transaction
 * of its own, so only the ones that do not fit are refused.
 */
#include <stdlib.h>
#include <string.h>

#include "cvx/log.h"
#include "store_impl.h"

#define BATCH_BYTES_MAX (32u << 20)

wop_t *store__wop_new(cvx_store_t *st, wtype_t type, size_t extra)
{
    wop_t *op = calloc(1, sizeof(*op) + extra);
    if (op == NULL)
        return NULL;
    op->st = st;
    op->type = type;
    op->now_ms = store__now_ms();
    return op;
}

void store__submit(cvx_store_t *st, wop_t *op)
{
    st->wpending++;
    pthread_mutex_lock(&st->wmutex);
    op->next = NULL;
    if (st->wtail != NULL)
        st->wtail->next = op;
    else
        st->whead = op;
    st->wtail = op;
    pthread_cond_signal(&st->wcond);
    pthread_mutex_unlock(&st->wmutex);
}

/* Takes up to batch_max queued operations (and about BATCH_BYTES_MAX of audio); NULL when
 * the writer should exit. */
static wop_t *take_batch(cvx_store_t *st)
{
    pthread_mutex_lock(&st->wmutex);
    while (st->whead == NULL && !st->wstop)
        pthread_cond_wait(&st->wcond, &st->wmutex);
    wop_t *head = st->whead, *last = NULL, *op = head;
    uint32_t n = 0;
    size_t bytes = 0;
    while (op != NULL && n < st->conf.batch_max && (n == 0 || bytes < BATCH_BYTES_MAX)) {
        bytes += op->len;
        n++;
        last = op;
        op = op->next;
    }
    if (last != NULL) {
        st->whead = last->next;
        if (st->whead == NULL)
            st->wtail = NULL;
        last->next = NULL;
    }
    pthread_mutex_unlock(&st->wmutex);
    return head;
}

/* Applies one operation in a nested transaction of parent.  Returns its status. */
static int apply_nested(cvx_store_t *st, MDB_txn *parent, wop_t *op)
{
    MDB_txn *child;
    int rc = mdb_txn_begin(st->env, parent, 0, &child);
    if (rc != 0)
        return store__mdb_err(rc);
    int status = store__apply(st, child, op);
    if (status == 0) {
        rc = mdb_txn_commit(child);
        if (rc != 0)
            status = store__mdb_err(rc);
    } else {
        mdb_txn_abort(child);
    }
    /* A recording whose commit failed still has chunks to remove. */
    if (status != 0 && op->type == W_COMMIT && mdb_txn_begin(st->env, parent, 0, &child) == 0) {
        if (store__drop_sid(st, child, op->stream->sid) == 0)
            mdb_txn_commit(child);
        else
            mdb_txn_abort(child);
    }
    if (status != 0 && op->type == W_APPEND)
        op->stream->werr_batch = status;
    return status;
}

/* Runs ops in one transaction.  Returns the commit's status (0 or CVX_E*); each op's own
 * status is in op->status.  *full tells whether some op failed for lack of space. */
static int run_txn(cvx_store_t *st, wop_t *ops, int *full)
{
    MDB_txn *txn;
    *full = 0;
    for (wop_t *op = ops; op != NULL; op = op->next)
        if (op->type == W_APPEND)
            op->stream->werr_batch = 0;
    int rc = mdb_txn_begin(st->env, NULL, 0, &txn);
    if (rc != 0)
        return store__mdb_err(rc);
    for (wop_t *op = ops; op != NULL; op = op->next) {
        op->status = apply_nested(st, txn, op);
        if (op->status == CVX_EFULL)
            *full = 1;
    }
    if (*full && st->map_size < st->conf.map_max) {
        /* Do not commit a partial batch when the map can still grow: the caller grows it and
         * applies the whole batch again. */
        mdb_txn_abort(txn);
        return CVX_EFULL;
    }
    rc = mdb_txn_commit(txn);
    __atomic_add_fetch(&st->transactions, 1, __ATOMIC_RELAXED);
    return store__mdb_err(rc);
}

/* Tells the change watcher (the link's cache invalidation) which mailbox's record, greetings
 * or name a committed write changed. */
static void notify_change(cvx_store_t *st, const wop_t *op)
{
    const char *number = NULL;
    switch (op->type) {
    case W_MB_PUT:
        number = op->mb->pub.number;
        break;
    case W_MB_DEL:
    case W_GREET_DEL:
    case W_PIN_SET:
        number = op->number;
        break;
    case W_COMMIT:
        if (op->stream->is_greeting)
            number = op->stream->mailbox;
        break;
    default:
        break;
    }
    if (number != NULL)
        st->change_fn(st->change_arg, number);
}

static void deliver(cvx_async_job_t *job);

static void finish_batch(cvx_store_t *st, wop_t *ops, int commit_status)
{
    wop_t *next;
    for (wop_t *op = ops; op != NULL; op = next) {
        next = op->next;
        if (commit_status != 0)
            op->status = commit_status;
        if (op->type == W_APPEND && op->status != 0 && op->stream->werr == 0)
            op->stream->werr = op->status;
        if (op->status == CVX_EFULL)
            __atomic_add_fetch(&st->full_refusals, 1, __ATOMIC_RELAXED);
        if (op->status == 0 && op->type == W_COMMIT)
            __atomic_add_fetch(&st->commits, 1, __ATOMIC_RELAXED);
        cvx_async_queue_post(&st->done, &op->job, deliver);
    }
}

static void run_batch(cvx_store_t *st, wop_t *ops)
{
    int full, rc;
    for (;;) {
        rc = run_txn(st, ops, &full);
        if (rc == CVX_EFULL && store__grow(st) == 0)
            continue; /* the map grew: apply the whole batch again */
        break;
    }
    if (rc == CVX_EFULL && ops->next != NULL) {
        /* The batch as a whole does not fit: one transaction per operation. */
        wop_t *next;
        for (wop_t *op = ops; op != NULL; op = next) {
            next = op->next;
            op->next = NULL;
            int r = run_txn(st, op, &full);
            finish_batch(st, op, r);
        }
        return;
    }
    if (rc != 0 && rc != CVX_EFULL)
        cvx_error("message store: commit failed: %s", cvx_strerror(rc));
    finish_batch(st, ops, rc);
}

static void *writer_main(void *arg)
{
    cvx_store_t *st = arg;
    wop_t *ops;
    while ((ops = take_batch(st)) != NULL)
        run_batch(st, ops);
    return NULL;
}

int store__writer_start(cvx_store_t *st)
{
    int rc = pthread_create(&st->writer, NULL, writer_main, st);
    if (rc != 0)
        return cvx_from_errno(rc);
    st->writer_started = 1;
    return 0;
}

void store__writer_stop(cvx_store_t *st)
{
    pthread_mutex_lock(&st->wmutex);
    st->wstop = 1;
    pthread_cond_signal(&st->wcond);
    pthread_mutex_unlock(&st->wmutex);
}

void store__writer_join(cvx_store_t *st)
{
    if (st->writer_started) {
        pthread_join(st->writer, NULL);
        st->writer_started = 0;
    }
}

/* --- completions on the loop ------------------------------------------------------------- */

static void deliver(cvx_async_job_t *job)
{
    wop_t *op = (wop_t *)((char *)job - offsetof(wop_t, job));
    cvx_store_t *st = op->st;
    switch (op->type) {
    case W_APPEND:
        /* Audio counts against queue_max until its completion reaches the loop. */
        __atomic_sub_fetch(&st->wqueued_bytes, op->len, __ATOMIC_RELAXED);
        break;
    case W_COMMIT:
    case W_COPY:
        if (op->cb.commit != NULL)
            op->cb.commit(op->arg, op->status, op->status == 0 ? &op->res : NULL);
        break;
    case W_LOGIN:
        if (op->cb.pin != NULL)
            op->cb.pin(op->arg, op->status, op->status == 0 ? &op->pin : NULL);
        break;
    case W_EXPIRE:
    case W_RETAIN:
        if (op->cb.done != NULL)
            op->cb.done(op->arg, op->status == 0 ? (int)op->n : op->status);
        break;
    default:
        if (op->cb.done != NULL)
            op->cb.done(op->arg, op->status);
        break;
    }
    if (op->status == 0 && op->mwi_changed && st->mwi_fn != NULL)
        st->mwi_fn(st->mwi_arg, &op->mwi);
    if (op->status == 0 && op->mwi_changed && st->mwi_link_fn != NULL)
        st->mwi_link_fn(st->change_arg, &op->mwi);
    if (op->status == 0 && st->change_fn != NULL)
        notify_change(st, op);
    if (op->type == W_COMMIT || op->type == W_ABORT) {
        cvx_store_stream_t *s = op->stream;
        if (s->prev != NULL)
            s->prev->next = s->next;
        else
            st->streams = s->next;
        if (s->next != NULL)
            s->next->prev = s->prev;
        st->nstreams--;
        free(s);
    }
    free(op->mb);
    free(op);
    st->wpending--;
    store__maybe_closed(st);
}
