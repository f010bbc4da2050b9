/*
 * Housekeeping: purging deleted messages and applying retention classes.
 *
 * Finding the candidates means reading every message, which is long for a big store: the
 * scan runs on the thread pool in a read transaction, and only the list of ids it found goes
 * to the writer, which checks each again (it may have changed since) and applies the change.
 * The writer's transaction stays short, so deposits are not held up.  Slices of SLICE ids
 * follow one another until the scan finds nothing more.
 */
#include <stdlib.h>
#include <string.h>

#include "store_impl.h"

#define SLICE 1024

typedef struct hk {
    uv_work_t req;
    cvx_store_t *st;
    wtype_t type; /* W_EXPIRE or W_RETAIN */
    uint64_t t;   /* older-than for W_EXPIRE, now for W_RETAIN */
    char (*ids)[CVX_STORE_ID_MAX];
    uint32_t n;
    int more;
    int status;
    int total;
    cvx_store_done_cb cb;
    void *arg;
} hk_t;

static void scan_work(uv_work_t *req)
{
    hk_t *h = req->data;
    cvx_store_t *st = h->st;
    MDB_txn *txn;
    MDB_cursor *c;
    h->n = 0;
    h->more = 0;
    h->status = store__read_begin(st, &txn);
    if (h->status != 0)
        return;
    int rc = mdb_cursor_open(txn, st->dbi[DB_MESSAGES], &c);
    if (rc != 0) {
        h->status = store__mdb_err(rc);
        store__read_end(st, txn);
        return;
    }
    char last[CVX_STORE_NUMBER_MAX] = "";
    uint64_t limit = 0;
    MDB_val k, v;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        cvx_message_t m;
        if (store__decode(REC_MESSAGE, v.mv_data, v.mv_size, &m) != 0)
            continue;
        int want;
        if (h->type == W_EXPIRE) {
            want = m.folder == CVX_FOLDER_DELETED && m.folder_changed_ms < h->t;
        } else {
            if (m.folder != CVX_FOLDER_SAVED)
                continue;
            if (strcmp(m.mailbox, last) != 0) {
                memcpy(last, m.mailbox, sizeof(last));
                limit = store__retention_of(st, txn, m.mailbox);
            }
            want = store__retain_action(st, &m, limit, h->t) != 0;
        }
        if (!want)
            continue;
        if (h->n == SLICE) {
            h->more = 1;
            break;
        }
        memcpy(h->ids[h->n++], m.id, CVX_STORE_ID_MAX);
    }
    mdb_cursor_close(c);
    store__read_end(st, txn);
}

static void scan_after(uv_work_t *req, int uvstatus);

static void finish(hk_t *h, int status)
{
    h->cb(h->arg, status);
    free(h->ids);
    free(h);
}

static int scan_start(hk_t *h)
{
    h->req.data = h;
    if (uv_queue_work(h->st->loop, &h->req, scan_work, scan_after) != 0)
        return CVX_EIO;
    store__pool_begin(h->st);
    return 0;
}

static void written(void *arg, int status)
{
    hk_t *h = arg;
    if (status < 0) {
        finish(h, status);
        return;
    }
    h->total += status;
    if (!h->more || h->st->closing) {
        finish(h, h->total);
        return;
    }
    int rc = scan_start(h);
    if (rc != 0)
        finish(h, rc);
}

static void scan_after(uv_work_t *req, int uvstatus)
{
    hk_t *h = req->data;
    cvx_store_t *st = h->st;
    int status = uvstatus != 0 ? CVX_EUNAVAIL : h->status;
    if (status != 0 || h->n == 0) {
        finish(h, status != 0 ? status : h->total);
    } else {
        wop_t *op = store__wop_new(st, h->type, (size_t)h->n * CVX_STORE_ID_MAX);
        if (op == NULL) {
            finish(h, CVX_ENOMEM);
        } else {
            memcpy(op->data, h->ids, (size_t)h->n * CVX_STORE_ID_MAX);
            op->n = h->n;
            op->u1 = h->t;
            op->cb.done = written;
            op->arg = h;
            store__submit(st, op);
        }
    }
    store__pool_end(st);
}

static int housekeep(cvx_store_t *st, wtype_t type, uint64_t t, cvx_store_done_cb cb, void *arg)
{
    if (st == NULL || st->closing)
        return CVX_EUNAVAIL;
    if (cb == NULL)
        return CVX_EINVAL;
    hk_t *h = calloc(1, sizeof(*h));
    if (h == NULL || (h->ids = malloc(SLICE * sizeof(*h->ids))) == NULL) {
        free(h);
        return CVX_ENOMEM;
    }
    h->st = st;
    h->type = type;
    h->t = t;
    h->cb = cb;
    h->arg = arg;
    int rc = scan_start(h);
    if (rc != 0) {
        free(h->ids);
        free(h);
    }
    return rc;
}

int cvx_store_expire(cvx_store_t *st, uint64_t older_than_ms, cvx_store_done_cb cb, void *arg)
{
    if (st != NULL && st->remote != NULL)
        return CVX_ENOTSUP; /* administration runs on the system server */
    return housekeep(st, W_EXPIRE, older_than_ms, cb, arg);
}

int cvx_store_retain(cvx_store_t *st, uint64_t now_ms, cvx_store_done_cb cb, void *arg)
{
    if (st != NULL && st->remote != NULL)
        return CVX_ENOTSUP; /* administration runs on the system server */
    return housekeep(st, W_RETAIN, now_ms, cb, arg);
}
