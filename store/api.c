/*
 * The service interface on the loop thread: requests, reads, recordings, PIN checks, close.
 *
 * Reads run here, in short read transactions, and their results are delivered through the
 * completion queue like every other result, so a callback never runs inside the request.
 * Writes are queued for the writer thread (writer.c).  Errors a request can know at once
 * (malformed arguments, store closing) are returned; everything that depends on stored data
 * (not found, full, quota) comes back through the callback, as it will over a network link.
 */
#include <stdlib.h>
#include <string.h>

#include "cvx/license.h"
#include "cvx/log.h"
#include "remote.h"
#include "store_impl.h"

/* A result computed on the loop, delivered from the completion queue. */
typedef struct rjob rjob_t;
struct rjob {
    cvx_async_job_t job;
    cvx_store_t *st;
    void (*call)(rjob_t *j);
    int status;
    void (*cb)(void);
    void *arg;
    size_t n;
    void *items;
    mbrec_t mb;
    cvx_mwi_t mwi;
    cvx_pin_result_t pin;
    cvx_message_t msg;
};

static void rjob_run(cvx_async_job_t *job)
{
    rjob_t *j = (rjob_t *)((char *)job - offsetof(rjob_t, job));
    cvx_store_t *st = j->st;
    j->call(j);
    free(j->items);
    free(j);
    st->loop_pending--;
    store__maybe_closed(st);
}

static rjob_t *rjob_new(cvx_store_t *st, void (*call)(rjob_t *), void (*cb)(void), void *arg)
{
    rjob_t *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return NULL;
    j->st = st;
    j->call = call;
    j->cb = cb;
    j->arg = arg;
    return j;
}

static void rjob_post(rjob_t *j)
{
    j->st->loop_pending++;
    cvx_async_queue_post(&j->st->done, &j->job, rjob_run);
}

#define CB(type, fn) ((void (*)(void))(type)(fn))

void store__pool_begin(cvx_store_t *st)
{
    st->pool_pending++;
}

void store__pool_end(cvx_store_t *st)
{
    st->pool_pending--;
    store__maybe_closed(st);
}

static int usable(cvx_store_t *st)
{
    return st != NULL && !st->closing;
}

/* --- close ---------------------------------------------------------------------------- */

static void on_queue_closed(cvx_async_queue_t *q)
{
    cvx_store_t *st = (cvx_store_t *)((char *)q - offsetof(cvx_store_t, done));
    void (*fn)(void *) = st->on_closed;
    void *arg = st->closed_arg;
    mdb_env_close(st->env);
    pthread_rwlock_destroy(&st->maplock);
    pthread_mutex_destroy(&st->wmutex);
    pthread_cond_destroy(&st->wcond);
    cvx_info("message store %s closed", st->path);
    free(st);
    if (fn != NULL)
        fn(arg);
}

static int finalizing(cvx_store_t *st)
{
    return st->closing == 2;
}

void store__maybe_closed(cvx_store_t *st)
{
    if (!st->closing || finalizing(st) || st->pool_pending > 0 || st->loop_pending > 0)
        return;
    /* Thread-pool work may still queue writes; stop the writer only once it is done. */
    store__writer_stop(st);
    if (st->wpending > 0)
        return;
    st->closing = 2;
    store__writer_join(st);
    cvx_async_queue_close(&st->done, on_queue_closed);
}

void cvx_store_close(cvx_store_t *st, void (*on_closed)(void *arg), void *arg)
{
    if (st != NULL && st->remote != NULL) {
        store__r_close(st, on_closed, arg);
        return;
    }
    if (st == NULL || st->closing)
        return;
    st->on_closed = on_closed;
    st->closed_arg = arg;
    for (cvx_store_stream_t *s = st->streams; s != NULL; s = s->next)
        if (!s->ending)
            cvx_store_stream_abort(s);
    st->closing = 1;
    store__maybe_closed(st);
}

/* --- mailboxes ------------------------------------------------------------------------- */

static void call_mailbox(rjob_t *j)
{
    ((cvx_store_mailbox_cb)j->cb)(j->arg, j->status, j->status == 0 ? &j->mb.pub : NULL);
}

int cvx_store_mailbox_get(cvx_store_t *st, const char *number, cvx_store_mailbox_cb cb, void *arg)
{
    if (st != NULL && st->remote != NULL)
        return store__r_mailbox_get(st, number, cb, arg);
    if (!usable(st))
        return CVX_EUNAVAIL;
    if (!cvx_store_valid_number(number) || cb == NULL)
        return CVX_EINVAL;
    rjob_t *j = rjob_new(st, call_mailbox, CB(cvx_store_mailbox_cb, cb), arg);
    if (j == NULL)
        return CVX_ENOMEM;
    MDB_txn *txn;
    j->status = store__read_begin(st, &txn);
    if (j->status == 0) {
        j->status = store__get_mailbox(st, txn, number, &j->mb);
        store__read_end(st, txn);
    }
    rjob_post(j);
    return 0;
}

static void call_mailboxes(rjob_t *j)
{
    ((cvx_store_mailboxes_cb)j->cb)(j->arg, j->status, j->items, j->n);
}

int cvx_store_mailbox_list(cvx_store_t *st, const char *after, size_t max,
                           cvx_store_mailboxes_cb cb, void *arg)
{
    if (st != NULL && st->remote != NULL)
        return store__r_mailbox_list(st, after, max, cb, arg);
    if (!usable(st))
        return CVX_EUNAVAIL;
    if (cb == NULL || max == 0 || max > 10000)
        return CVX_EINVAL;
    rjob_t *j = rjob_new(st, call_mailboxes, CB(cvx_store_mailboxes_cb, cb), arg);
    cvx_mailbox_t *out = j ? malloc(max * sizeof(*out)) : NULL;
    mbrec_t *tmp = out ? malloc(sizeof(*tmp)) : NULL;
    if (tmp == NULL) {
        free(out);
        free(j);
        return CVX_ENOMEM;
    }
    j->items = out;
    MDB_txn *txn;
    MDB_cursor *c;
    j->status = store__read_begin(st, &txn);
    if (j->status == 0) {
        if (mdb_cursor_open(txn, st->dbi[DB_MAILBOXES], &c) == 0) {
            const char *from = after ? after : "";
            MDB_val k = {strlen(from), (void *)from}, v;
            int rc = k.mv_size ? mdb_cursor_get(c, &k, &v, MDB_SET_RANGE)
                               : mdb_cursor_get(c, &k, &v, MDB_FIRST);
            if (rc == 0 && k.mv_size == strlen(from) && memcmp(k.mv_data, from, k.mv_size) == 0)
                rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
            for (; rc == 0 && j->n < max; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
                char number[CVX_STORE_NUMBER_MAX];
                if (k.mv_size >= sizeof(number))
                    continue;
                memcpy(number, k.mv_data, k.mv_size);
                number[k.mv_size] = '\0';
                if (store__get_mailbox(st, txn, number, tmp) == 0)
                    out[j->n++] = tmp->pub;
            }
            mdb_cursor_close(c);
        }
        store__read_end(st, txn);
    }
    free(tmp);
    rjob_post(j);
    return 0;
}

int cvx_store_mailbox_put(cvx_store_t *st, const cvx_mailbox_t *mb, int mode, cvx_store_done_cb cb,
                          void *arg)
{
    if (st != NULL && st->remote != NULL)
        return store__r_mailbox_put(st, mb, mode, cb, arg);
    if (!usable(st))
        return CVX_EUNAVAIL;
    if (mb == NULL || !cvx_store_valid_number(mb->number) ||
        (mode != CVX_PUT_CREATE && mode != CVX_PUT_UPDATE))
        return CVX_EINVAL;
    wop_t *op = store__wop_new(st, W_MB_PUT, 0);
    if (op == NULL || (op->mb = calloc(1, sizeof(mbrec_t))) == NULL) {
        free(op);
        return CVX_ENOMEM;
    }
    op->mb->pub = *mb;
    op->mode = mode;
    op->cb.done = cb;
    op->arg = arg;
    store__submit(st, op);
    return 0;
}

static int simple_op(cvx_store_t *st, wtype_t type, const char *number, cvx_store_done_cb cb,
                     void *arg, wop_t **out)
{
    if (!usable(st))
        return CVX_EUNAVAIL;
    if (number != NULL && !cvx_store_valid_number(number))
        return CVX_EINVAL;
    wop_t *op = store__wop_new(st, type, 0);
    if (op == NULL)
        return CVX_ENOMEM;
    if (number != NULL)
        store__copy(op->number, number, sizeof(op->number));
    op->cb.done = cb;
    op->arg = arg;
    if (out != NULL)
        *out = op;
    else
        store__submit(st, op);
    return 0;
}

int cvx_store_mailbox_del(cvx_store_t *st, const char *number, cvx_store_done_cb cb, void *arg)
{
    if (st != NULL && st->remote != NULL)
        return store__r_simple(st, RM_MAILBOX_DEL, number, cb, arg);
    return simple_op(st, W_MB_DEL, number, cb, arg, NULL);
}

int cvx_store_mailbox_unlock(cvx_store_t *st, const char *number, cvx_store_done_cb cb, void *arg)
{
    if (st != NULL && st->remote != NULL)
        return store__r_simple(st, RM_UNLOCK, number, cb, arg);
    return simple_op(st, W_UNLOCK, number, cb, arg, NULL);
}

/* --- PINs ---------------------------------------------------------------------------------- */

typedef struct pinwork {
    uv_work_t req;
    cvx_store_t *st;
    char number[CVX_STORE_NUMBER_MAX];
    char pin[CVX_STORE_PIN_MAX + 1];
    int setting; /* 1: pin_set, 0: pin_check */
    int status;
    int ok;
    cvx_store_done_cb done;
    cvx_store_pin_cb check;
    void *arg;
    mbrec_t mb; /* the stored hash and history; for set, the new hash */
} pinwork_t;

static int valid_pin(const char *pin)
{
    size_t n = pin ? strlen(pin) : 0;
    if (n < CVX_STORE_PIN_MIN || n > CVX_STORE_PIN_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (pin[i] < '0' || pin[i] > '9')
            return 0;
    return 1;
}

/* Thread pool: the slow hashing. */
static void pin_work(uv_work_t *req)
{
    pinwork_t *w = req->data;
    size_t len = strlen(w->pin);
    if (!w->setting) {
        w->ok = crypto_pwhash_str_verify(w->mb.pin_hash, w->pin, len) == 0;
        return;
    }
    for (uint32_t i = 0; i <= w->st->conf.pin_history && i < STORE_PIN_HISTORY_MAX + 1; i++) {
        const char *h = i == 0 ? w->mb.pin_hash : w->mb.history[i - 1];
        if (i > 0 && i > w->st->conf.pin_history)
            break;
        if (h[0] != '\0' && crypto_pwhash_str_verify(h, w->pin, len) == 0) {
            w->status = CVX_EEXIST;
            return;
        }
    }
    if (crypto_pwhash_str(w->mb.pin_hash, w->pin, len, crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
        w->status = CVX_ENOMEM;
}

static void pin_after(uv_work_t *req, int uvstatus)
{
    pinwork_t *w = req->data;
    cvx_store_t *st = w->st;
    sodium_memzero(w->pin, sizeof(w->pin));
    if (uvstatus != 0 && w->status == 0)
        w->status = CVX_EUNAVAIL;
    wop_t *op = w->status == 0 ? store__wop_new(st, w->setting ? W_PIN_SET : W_LOGIN, 0) : NULL;
    if (op == NULL) {
        int status = w->status ? w->status : CVX_ENOMEM;
        if (w->setting)
            w->done(w->arg, status);
        else
            w->check(w->arg, status, NULL);
    } else {
        store__copy(op->number, w->number, sizeof(op->number));
        op->arg = w->arg;
        if (w->setting) {
            op->cb.done = w->done;
            op->mb = malloc(sizeof(mbrec_t));
            if (op->mb != NULL)
                memcpy(op->mb->pin_hash, w->mb.pin_hash, STORE_PIN_HASH);
        } else {
            op->cb.pin = w->check;
            op->mode = w->ok;
        }
        if (w->setting && op->mb == NULL) {
            free(op);
            w->done(w->arg, CVX_ENOMEM);
        } else {
            store__submit(st, op);
        }
    }
    sodium_memzero(&w->mb, sizeof(w->mb));
    free(w);
    store__pool_end(st);
}

static void call_pin(rjob_t *j)
{
    ((cvx_store_pin_cb)j->cb)(j->arg, j->status, j->status == 0 ? &j->pin : NULL);
}

static void call_done(rjob_t *j)
{
    ((cvx_store_done_cb)j->cb)(j->arg, j->status);
}

static int pin_start(cvx_store_t *st, const char *number, const char *pin, int setting,
                     cvx_store_done_cb done, cvx_store_pin_cb check, void *arg)
{
    if (!usable(st))
        return CVX_EUNAVAIL;
    if (!cvx_store_valid_number(number) || !valid_pin(pin) || (setting ? !done : !check))
        return CVX_EINVAL;
    pinwork_t *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return CVX_ENOMEM;
    w->st = st;
    w->setting = setting;
    w->done = done;
    w->check = check;
    w->arg = arg;
    store__copy(w->number, number, sizeof(w->number));
    store__copy(w->pin, pin, sizeof(w->pin));
    MDB_txn *txn;
    int rc = store__read_begin(st, &txn);
    if (rc == 0) {
        rc = store__get_mailbox(st, txn, number, &w->mb);
        store__read_end(st, txn);
    }
    rjob_t *j = NULL;
    if (rc != 0 ||
        (!setting && (w->mb.pin_hash[0] == '\0' || w->mb.pub.locked_until_ms > store__now_ms()))) {
        /* Answered without hashing: not found, no PIN, locked. */
        j = setting ? rjob_new(st, call_done, CB(cvx_store_done_cb, done), arg)
                    : rjob_new(st, call_pin, CB(cvx_store_pin_cb, check), arg);
        if (j != NULL) {
            j->status = rc;
            if (rc == 0 && w->mb.pin_hash[0] == '\0') {
                j->pin.verdict = CVX_PIN_UNSET;
            } else if (rc == 0) {
                j->pin.verdict = CVX_PIN_LOCKED;
                j->pin.locked_until_ms = w->mb.pub.locked_until_ms;
            }
            rjob_post(j);
        }
        sodium_memzero(w, sizeof(*w));
        free(w);
        return j ? 0 : CVX_ENOMEM;
    }
    w->req.data = w;
    rc = uv_queue_work(st->loop, &w->req, pin_work, pin_after);
    if (rc != 0) {
        free(w);
        return CVX_EIO;
    }
    store__pool_begin(st);
    return 0;
}

int cvx_store_pin_set(cvx_store_t *st, const char *number, const char *pin, cvx_store_done_cb cb,
                      void *arg)
{
    if (st != NULL && st->remote != NULL)
        return store__r_pin_set(st, number, pin, cb, arg);
    return pin_start(st, number, pin, 1, cb, NULL, arg);
}

int cvx_store_pin_check(cvx_store_t *st, const char *number, const char *pin, cvx_store_pin_cb cb,
                        void *arg)
{
    if (st != NULL && st->remote != NULL)
        return store__r_pin_check(st, number, pin, cb, arg);
    return pin_start(st, number, pin, 0, NULL, cb, arg);
}

/* --- recordings ------------------------------------------------------------------------- */

static cvx_store_stream_t *stream_new(cvx_store_t *st)
{
    cvx_store_stream_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->st = st;
    s->sid = st->next_sid++;
    s->next = st->streams;
    if (s->next != NULL)
        s->next->prev = s;
    st->streams = s;
    st->nstreams++;
    return s;
}

int cvx_store_deposit_open(cvx_store_t *st, const cvx_message_t *msg, cvx_store_stream_t **out)
{
    if (st != NULL && st->remote != NULL)
        return store__r_deposit_open(st, msg, out);
    if (!usable(st))
        return CVX_EUNAVAIL;
    const char *why = NULL;
    if (!cvx_license_accepting_messages(&why)) {
        cvx_warn("a new message for mailbox %.32s refused: %s", msg != NULL ? msg->mailbox : "?",
                 why);
        return CVX_EPERM;
    }
    if (msg == NULL || out == NULL || !cvx_store_valid_id(msg->id) ||
        !cvx_store_valid_number(msg->mailbox) || msg->codec > CVX_CODEC_ALAW || msg->rate == 0)
        return CVX_EINVAL;
    cvx_store_stream_t *s = stream_new(st);
    if (s == NULL)
        return CVX_ENOMEM;
    s->msg = *msg;
    s->msg.id[CVX_STORE_ID_MAX - 1] = '\0';
    s->codec = msg->codec;
    s->rate = msg->rate;
    if (s->msg.received_ms == 0)
        s->msg.received_ms = store__now_ms();
    *out = s;
    return 0;
}

int cvx_store_greeting_open(cvx_store_t *st, const char *mailbox, cvx_greeting_t kind,
                            uint8_t codec, uint32_t rate, uint64_t expires_ms, uint32_t flags,
                            cvx_store_stream_t **out)
{
    if (st != NULL && st->remote != NULL)
        return store__r_greeting_open(st, mailbox, kind, codec, rate, expires_ms, flags, out);
    if (!usable(st))
        return CVX_EUNAVAIL;
    if (out == NULL || !cvx_store_valid_number(mailbox) || (unsigned)kind >= CVX_GREETING_COUNT ||
        codec > CVX_CODEC_ALAW || rate == 0)
        return CVX_EINVAL;
    cvx_store_stream_t *s = stream_new(st);
    if (s == NULL)
        return CVX_ENOMEM;
    s->is_greeting = 1;
    store__copy(s->mailbox, mailbox, sizeof(s->mailbox));
    s->kind = kind;
    s->codec = codec;
    s->rate = rate;
    s->expires_ms = expires_ms;
    s->gflags = flags;
    *out = s;
    return 0;
}

int cvx_store_stream_append(cvx_store_stream_t *s, const void *data, size_t len)
{
    if (s != NULL && s->st->remote != NULL)
        return store__r_append(s, data, len);
    if (s == NULL || s->ending || data == NULL || len == 0 || len > CVX_STORE_CHUNK_MAX)
        return CVX_EINVAL;
    cvx_store_t *st = s->st;
    if (!usable(st))
        return CVX_EUNAVAIL;
    if (__atomic_load_n(&st->wqueued_bytes, __ATOMIC_RELAXED) + len > st->conf.queue_max)
        return CVX_EBUSY;
    wop_t *op = store__wop_new(st, W_APPEND, len);
    if (op == NULL)
        return CVX_ENOMEM;
    op->stream = s;
    op->n = s->next_index++;
    op->len = len;
    memcpy(op->data, data, len);
    s->bytes += len;
    __atomic_add_fetch(&st->wqueued_bytes, len, __ATOMIC_RELAXED);
    store__submit(st, op);
    return 0;
}

int cvx_store_stream_commit(cvx_store_stream_t *s, uint32_t duration_ms, cvx_store_commit_cb cb,
                            void *arg)
{
    if (s != NULL && s->st->remote != NULL)
        return store__r_commit(s, duration_ms, cb, arg);
    if (s == NULL || s->ending)
        return CVX_EINVAL;
    wop_t *op = store__wop_new(s->st, W_COMMIT, 0);
    if (op == NULL)
        return CVX_ENOMEM;
    s->ending = 1;
    op->stream = s;
    op->n = s->next_index;
    op->u1 = duration_ms;
    op->cb.commit = cb;
    op->arg = arg;
    store__submit(s->st, op);
    return 0;
}

void cvx_store_stream_abort(cvx_store_stream_t *s)
{
    if (s != NULL && s->st->remote != NULL) {
        store__r_abort(s);
        return;
    }
    if (s == NULL || s->ending)
        return;
    s->ending = 1;
    wop_t *op = store__wop_new(s->st, W_ABORT, 0);
    if (op == NULL) {
        /* Out of memory: the chunks stay until the next start removes them. */
        cvx_warn("message store: cannot queue the abort of a recording: out of memory");
        return;
    }
    op->stream = s;
    store__submit(s->st, op);
}

/* --- messages ----------------------------------------------------------------------------- */

static void call_list(rjob_t *j)
{
    ((cvx_store_list_cb)j->cb)(j->arg, j->status, j->items, j->n);
}

int cvx_store_message_list(cvx_store_t *st, const char *mailbox, int folder, cvx_store_list_cb cb,
                           void *arg)
{
    if (st != NULL && st->remote != NULL)
        return store__r_msg_list(st, mailbox, folder, cb, arg);
    if (!usable(st))
        return CVX_EUNAVAIL;
    if (!cvx_store_valid_number(mailbox) || cb == NULL ||
        !(folder == CVX_FOLDER_ANY || (folder >= 0 && folder <= CVX_FOLDER_DELETED)))
        return CVX_EINVAL;
    rjob_t *j = rjob_new(st, call_list, CB(cvx_store_list_cb, cb), arg);
    if (j == NULL)
        return CVX_ENOMEM;
    MDB_txn *txn;
    j->status = store__read_begin(st, &txn);
    if (j->status != 0) {
        rjob_post(j);
        return 0;
    }
    MDB_val k = {strlen(mailbox), (void *)mailbox}, v;
    int rc = mdb_get(txn, st->dbi[DB_MAILBOXES], &k, &v);
    MDB_cursor *c = NULL;
    if (rc == 0)
        rc = mdb_cursor_open(txn, st->dbi[DB_MBIDX], &c);
    size_t cap = 0, n = strlen(mailbox);
    uint8_t key[CVX_STORE_NUMBER_MAX + 1];
    memcpy(key, mailbox, n);
    key[n] = '\0';
    k.mv_size = n + 1;
    k.mv_data = key;
    if (rc == 0) {
        for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0;
             rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
            if (k.mv_size < n + 9 || memcmp(k.mv_data, key, n + 1) != 0)
                break;
            if (folder != CVX_FOLDER_ANY && (v.mv_size != 1 || *(uint8_t *)v.mv_data != folder))
                continue;
            MDB_val mk = {k.mv_size - n - 9, (char *)k.mv_data + n + 9}, mv;
            if (mdb_get(txn, st->dbi[DB_MESSAGES], &mk, &mv) != 0)
                continue;
            if (j->n == cap) {
                cap = cap ? cap * 2 : 16;
                void *p = realloc(j->items, cap * sizeof(cvx_message_t));
                if (p == NULL) {
                    rc = ENOMEM;
                    break;
                }
                j->items = p;
            }
            cvx_message_t *m = (cvx_message_t *)j->items + j->n;
            if (store__decode(REC_MESSAGE, mv.mv_data, mv.mv_size, m) == 0)
                j->n++;
        }
        if (rc == MDB_NOTFOUND)
            rc = 0;
    }
    if (c != NULL)
        mdb_cursor_close(c);
    store__read_end(st, txn);
    j->status = store__mdb_err(rc);
    if (j->status != 0)
        j->n = 0;
    rjob_post(j);
    return 0;
}

static void call_message(rjob_t *j)
{
    ((cvx_store_message_cb)j->cb)(j->arg, j->status, j->status == 0 ? &j->msg : NULL);
}

int cvx_store_message_get(cvx_store_t *st, const char *id, cvx_store_message_cb cb, void *arg)
{
    if (st != NULL && st->remote != NULL)
        return store__r_msg_get(st, id, cb, arg);
    if (!usable(st))
        return CVX_EUNAVAIL;
    if (!cvx_store_valid_id(id) || cb == NULL)
        return CVX_EINVAL;
    rjob_t *j = rjob_new(st, call_message, CB(cvx_store_message_cb, cb), arg);
    if (j == NULL)
        return CVX_ENOMEM;
    MDB_txn *txn;
    j->status = store__read_begin(st, &txn);
    if (j->status == 0) {
        MDB_val k = {strlen(id), (void *)id}, v;
        int rc = mdb_get(txn, st->dbi[DB_MESSAGES], &k, &v);
        j->status = rc == 0 ? store__decode(REC_MESSAGE, v.mv_data, v.mv_size, &j->msg)
                            : store__mdb_err(rc);
        store__read_end(st, txn);
    }
    rjob_post(j);
    return 0;
}

static int id_op(cvx_store_t *st, wtype_t type, const char *id, cvx_store_done_cb cb, void *arg,
                 wop_t **out)
{
    if (!usable(st))
        return CVX_EUNAVAIL;
    if (!cvx_store_valid_id(id))
        return CVX_EINVAL;
    wop_t *op = store__wop_new(st, type, 0);
    if (op == NULL)
        return CVX_ENOMEM;
    store__copy(op->key, id, sizeof(op->key));
    op->cb.done = cb;
    op->arg = arg;
    *out = op;
    return 0;
}

int cvx_store_message_move(cvx_store_t *st, const char *id, cvx_folder_t folder,
                           cvx_store_done_cb cb, void *arg)
{
    if (st != NULL && st->remote != NULL)
        return store__r_msg_id_op(st, RM_MSG_MOVE, id, (int)folder, cb, arg);
    if ((unsigned)folder > CVX_FOLDER_DELETED)
        return CVX_EINVAL;
    wop_t *op;
    int rc = id_op(st, W_MOVE, id, cb, arg, &op);
    if (rc == 0) {
        op->n = folder;
        store__submit(st, op);
    }
    return rc;
}

int cvx_store_message_purge(cvx_store_t *st, const char *id, cvx_store_done_cb cb, void *arg)
{
    if (st != NULL && st->remote != NULL)
        return store__r_msg_id_op(st, RM_MSG_PURGE, id, 0, cb, arg);
    wop_t *op;
    int rc = id_op(st, W_PURGE, id, cb, arg, &op);
    if (rc == 0)
        store__submit(st, op);
    return rc;
}

int cvx_store_message_copy(cvx_store_t *st, const char *id, const char *new_id, const char *mailbox,
                           cvx_store_commit_cb cb, void *arg)
{
    if (st != NULL && st->remote != NULL)
        return store__r_msg_copy(st, id, new_id, mailbox, cb, arg);
    if (!cvx_store_valid_id(new_id) || !cvx_store_valid_number(mailbox))
        return CVX_EINVAL;
    wop_t *op;
    int rc = id_op(st, W_COPY, id, NULL, NULL, &op);
    if (rc == 0) {
        store__copy(op->key2, new_id, sizeof(op->key2));
        store__copy(op->number, mailbox, sizeof(op->number));
        op->cb.commit = cb;
        op->arg = arg;
        store__submit(st, op);
    }
    return rc;
}

int cvx_store_greeting_del(cvx_store_t *st, const char *mailbox, cvx_greeting_t kind,
                           cvx_store_done_cb cb, void *arg)
{
    if (st != NULL && st->remote != NULL)
        return store__r_greeting_del(st, mailbox, kind, cb, arg);
    if ((unsigned)kind >= CVX_GREETING_COUNT)
        return CVX_EINVAL;
    wop_t *op;
    int rc = simple_op(st, W_GREET_DEL, mailbox, cb, arg, &op);
    if (rc == 0) {
        op->n = kind;
        store__submit(st, op);
    }
    return rc;
}

/* --- directory and MWI ---------------------------------------------------------------------- */

static void call_dir(rjob_t *j)
{
    ((cvx_store_dir_cb)j->cb)(j->arg, j->status, j->items, j->n);
}

int cvx_store_dir_search(cvx_store_t *st, const char *digits, size_t max, cvx_store_dir_cb cb,
                         void *arg)
{
    if (st != NULL && st->remote != NULL)
        return store__r_dir_search(st, digits, max, cb, arg);
    if (!usable(st))
        return CVX_EUNAVAIL;
    size_t dn = digits ? strlen(digits) : 0;
    if (dn == 0 || dn >= 2 * CVX_STORE_NAME_MAX || cb == NULL || max == 0 || max > 1000 ||
        strspn(digits, "0123456789") != dn)
        return CVX_EINVAL;
    rjob_t *j = rjob_new(st, call_dir, CB(cvx_store_dir_cb, cb), arg);
    cvx_dir_entry_t *out = j ? malloc(max * sizeof(*out)) : NULL;
    mbrec_t *mb = out ? malloc(sizeof(*mb)) : NULL;
    if (mb == NULL) {
        free(out);
        free(j);
        return CVX_ENOMEM;
    }
    j->items = out;
    MDB_txn *txn;
    MDB_cursor *c;
    j->status = store__read_begin(st, &txn);
    if (j->status == 0) {
        if (mdb_cursor_open(txn, st->dbi[DB_DIRECTORY], &c) == 0) {
            MDB_val k = {dn, (void *)digits}, v;
            for (int rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0 && j->n < max;
                 rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
                if (k.mv_size < dn || memcmp(k.mv_data, digits, dn) != 0)
                    break;
                const char *nul = memchr(k.mv_data, '\0', k.mv_size);
                if (nul == NULL)
                    continue;
                size_t nn = k.mv_size - (size_t)(nul + 1 - (const char *)k.mv_data);
                char number[CVX_STORE_NUMBER_MAX];
                if (nn >= sizeof(number))
                    continue;
                memcpy(number, nul + 1, nn);
                number[nn] = '\0';
                if (store__get_mailbox(st, txn, number, mb) != 0)
                    continue;
                cvx_dir_entry_t *e = &out[j->n++];
                memcpy(e->number, mb->pub.number, sizeof(e->number));
                memcpy(e->first_name, mb->pub.first_name, sizeof(e->first_name));
                memcpy(e->last_name, mb->pub.last_name, sizeof(e->last_name));
            }
            mdb_cursor_close(c);
        }
        store__read_end(st, txn);
    }
    free(mb);
    rjob_post(j);
    return 0;
}

static void call_mwi(rjob_t *j)
{
    ((cvx_store_mwi_cb)j->cb)(j->arg, j->status, j->status == 0 ? &j->mwi : NULL);
}

int cvx_store_mwi_get(cvx_store_t *st, const char *mailbox, cvx_store_mwi_cb cb, void *arg)
{
    if (st != NULL && st->remote != NULL)
        return store__r_mwi_get(st, mailbox, cb, arg);
    if (!usable(st))
        return CVX_EUNAVAIL;
    if (!cvx_store_valid_number(mailbox) || cb == NULL)
        return CVX_EINVAL;
    rjob_t *j = rjob_new(st, call_mwi, CB(cvx_store_mwi_cb, cb), arg);
    if (j == NULL)
        return CVX_ENOMEM;
    MDB_txn *txn;
    j->status = store__read_begin(st, &txn);
    if (j->status == 0) {
        MDB_val k = {strlen(mailbox), (void *)mailbox}, v;
        int rc = mdb_get(txn, st->dbi[DB_MAILBOXES], &k, &v);
        mwirec_t m;
        j->status = rc != 0 ? store__mdb_err(rc) : store__get_mwi(st, txn, mailbox, &m);
        if (j->status == 0)
            j->mwi = m.pub;
        store__read_end(st, txn);
    }
    rjob_post(j);
    return 0;
}

int cvx_store_mwi_report(cvx_store_t *st, const char *mailbox, uint64_t gen, int lamp, int ok,
                         cvx_store_done_cb cb, void *arg)
{
    if (st != NULL && st->remote != NULL)
        return store__r_mwi_report(st, mailbox, gen, lamp, ok, cb, arg);
    wop_t *op;
    int rc = simple_op(st, W_MWI_REPORT, mailbox, cb, arg, &op);
    if (rc == 0) {
        op->u1 = gen;
        op->mode = lamp ? 1 : 0;
        op->n = ok ? 1 : 0;
        store__submit(st, op);
    }
    return rc;
}

void cvx_store_mwi_watch(cvx_store_t *st, cvx_store_mwi_watch_fn fn, void *arg)
{
    if (st != NULL && st->remote != NULL) {
        store__r_mwi_watch(st, fn, arg);
        return;
    }
    st->mwi_fn = fn;
    st->mwi_arg = arg;
}
