/*
 * Small named values kept in the store for other parts of callvox (the licence's last
 * successful phone-home check): cvx_store_setting_get/put.  Keys start with "ext." so they
 * never meet the store's own settings (the schema version).
 */
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>

#include "cvx/error.h"
#include "cvx/store.h"
#include "store_impl.h"

typedef struct setting_job {
    cvx_async_job_t job;
    cvx_store_t *st;
    int status;
    cvx_store_setting_cb cb;
    void *arg;
    size_t len;
    uint8_t value[CVX_STORE_SETTING_MAX];
} setting_job_t;

static int valid_key(const char *key)
{
    size_t n = key != NULL ? strlen(key) : 0;
    return n > 4 && n < CVX_STORE_ID_MAX && strncmp(key, "ext.", 4) == 0;
}

static void setting_deliver(cvx_async_job_t *job)
{
    setting_job_t *j = (setting_job_t *)((char *)job - offsetof(setting_job_t, job));
    cvx_store_t *st = j->st;
    j->cb(j->arg, j->status, j->status == 0 ? j->value : NULL, j->status == 0 ? j->len : 0);
    free(j);
    st->loop_pending--;
    store__maybe_closed(st);
}

int cvx_store_setting_get(cvx_store_t *st, const char *key, cvx_store_setting_cb cb, void *arg)
{
    if (st != NULL && st->remote != NULL)
        return store__r_setting_get(st, key, cb, arg);
    if (st == NULL || st->closing)
        return CVX_EUNAVAIL;
    if (!valid_key(key) || cb == NULL)
        return CVX_EINVAL;
    setting_job_t *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return CVX_ENOMEM;
    j->st = st;
    j->cb = cb;
    j->arg = arg;
    MDB_txn *txn;
    j->status = store__read_begin(st, &txn);
    if (j->status == 0) {
        MDB_val k = {strlen(key), (void *)key}, v;
        int rc = mdb_get(txn, st->dbi[DB_SETTINGS], &k, &v);
        if (rc == 0 && v.mv_size <= sizeof(j->value)) {
            memcpy(j->value, v.mv_data, v.mv_size);
            j->len = v.mv_size;
        } else {
            j->status = rc == MDB_NOTFOUND ? CVX_ENOTFOUND
                        : rc == 0          ? CVX_ECORRUPT
                                           : store__mdb_err(rc);
        }
        store__read_end(st, txn);
    }
    st->loop_pending++;
    cvx_async_queue_post(&st->done, &j->job, setting_deliver);
    return 0;
}

int cvx_store_setting_put(cvx_store_t *st, const char *key, const void *value, size_t len,
                          cvx_store_done_cb cb, void *arg)
{
    if (st != NULL && st->remote != NULL)
        return store__r_setting_put(st, key, value, len, cb, arg);
    if (st == NULL || st->closing)
        return CVX_EUNAVAIL;
    if (!valid_key(key) || len > CVX_STORE_SETTING_MAX || (len > 0 && value == NULL))
        return CVX_EINVAL;
    wop_t *op = store__wop_new(st, W_SETTING_PUT, len);
    if (op == NULL)
        return CVX_ENOMEM;
    store__copy(op->key, key, sizeof(op->key));
    if (len > 0)
        memcpy(op->data, value, len);
    op->len = len;
    op->cb.done = cb;
    op->arg = arg;
    store__submit(st, op);
    return 0;
}

int store__op_setting_put(cvx_store_t *st, MDB_txn *txn, wop_t *op)
{
    MDB_val k = {strlen(op->key), op->key}, v = {op->len, op->data};
    int rc = mdb_put(txn, st->dbi[DB_SETTINGS], &k, &v, 0);
    return rc == 0 ? 0 : store__mdb_err(rc);
}
