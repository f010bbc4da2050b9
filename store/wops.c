/*
 * The write operations, applied by the writer thread inside a (nested) transaction.
 *
 * Each function reads what it needs and writes everything an operation changes (message,
 * index, counters, MWI state, blob references) in the transaction it is given, so that the
 * operation is all or nothing.  They depend only on the operation's parameters, so a batch
 * can be applied again after the map has grown.
 */
#include <stdlib.h>
#include <string.h>

#include "cvx/log.h"
#include "store_impl.h"

#define E(rc) store__mdb_err(rc)

static int put_rec(cvx_store_t *st, MDB_txn *txn, int db, const void *key, size_t klen,
                   rectype_t type, const void *obj)
{
    uint8_t buf[STORE_REC_MAX];
    size_t n = store__encode(type, obj, buf, sizeof(buf));
    if (n == SIZE_MAX)
        return CVX_EINVAL;
    MDB_val k = {klen, (void *)key}, v = {n, buf};
    return E(mdb_put(txn, st->dbi[db], &k, &v, 0));
}

static int del_key(cvx_store_t *st, MDB_txn *txn, int db, const void *key, size_t klen)
{
    MDB_val k = {klen, (void *)key};
    int rc = mdb_del(txn, st->dbi[db], &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : E(rc);
}

static int get_msg(cvx_store_t *st, MDB_txn *txn, const char *id, cvx_message_t *m)
{
    MDB_val k = {strlen(id), (void *)id}, v;
    int rc = mdb_get(txn, st->dbi[DB_MESSAGES], &k, &v);
    if (rc != 0)
        return E(rc);
    return store__decode(REC_MESSAGE, v.mv_data, v.mv_size, m);
}

static size_t greet_key(const char *number, int kind, uint8_t *key)
{
    size_t n = strlen(number);
    memcpy(key, number, n);
    key[n] = '\0';
    key[n + 1] = (uint8_t)kind;
    return n + 2;
}

int store__drop_sid(cvx_store_t *st, MDB_txn *txn, uint64_t sid)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, st->dbi[DB_CHUNKS], &c);
    if (rc != 0)
        return E(rc);
    uint8_t key[12];
    store__be64(key, sid);
    store__be32(key + 8, 0);
    MDB_val k = {12, key}, v;
    /* After a delete the cursor stands on the following item; MDB_NEXT does not skip it. */
    for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 12 || memcmp(k.mv_data, key, 8) != 0)
            break;
        rc = mdb_cursor_del(c, 0);
        if (rc != 0)
            break;
    }
    mdb_cursor_close(c);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return E(rc);
    return del_key(st, txn, DB_STREAMS, key, 8);
}

static int blob_unref(cvx_store_t *st, MDB_txn *txn, const uint8_t sha[32])
{
    MDB_val k = {32, (void *)sha}, v;
    int rc = mdb_get(txn, st->dbi[DB_BLOBS], &k, &v);
    if (rc == MDB_NOTFOUND)
        return 0; /* already gone; verify reports the dangling reference */
    if (rc != 0)
        return E(rc);
    blobrec_t b;
    rc = store__decode(REC_BLOB, v.mv_data, v.mv_size, &b);
    if (rc != 0)
        return rc;
    if (b.refs > 1) {
        b.refs--;
        return put_rec(st, txn, DB_BLOBS, sha, 32, REC_BLOB, &b);
    }
    rc = store__drop_sid(st, txn, b.sid);
    if (rc == 0)
        rc = del_key(st, txn, DB_BLOBS, sha, 32);
    return rc;
}

static int blob_ref(cvx_store_t *st, MDB_txn *txn, const uint8_t sha[32])
{
    MDB_val k = {32, (void *)sha}, v;
    int rc = mdb_get(txn, st->dbi[DB_BLOBS], &k, &v);
    if (rc != 0)
        return rc == MDB_NOTFOUND ? CVX_ECORRUPT : E(rc);
    blobrec_t b;
    rc = store__decode(REC_BLOB, v.mv_data, v.mv_size, &b);
    if (rc != 0)
        return rc;
    b.refs++;
    return put_rec(st, txn, DB_BLOBS, sha, 32, REC_BLOB, &b);
}

/* --- counters and MWI ---------------------------------------------------------------------- */

static void count(mwirec_t *m, const cvx_message_t *msg, int add)
{
#define ADJ(field, by)                                                                             \
    do {                                                                                           \
        if (add)                                                                                   \
            (field) += (by);                                                                       \
        else                                                                                       \
            (field) = (field) > (by) ? (field) - (by) : 0;                                         \
    } while (0)
    switch (msg->folder) {
    case CVX_FOLDER_NEW:
        ADJ(m->pub.msgs_new, 1u);
        if (msg->flags & CVX_MSG_URGENT)
            ADJ(m->pub.urgent_new, 1u);
        break;
    case CVX_FOLDER_SAVED:
        ADJ(m->pub.msgs_saved, 1u);
        break;
    default:
        ADJ(m->msgs_deleted, 1u);
        break;
    }
    if (msg->folder != CVX_FOLDER_DELETED)
        ADJ(m->total_ms, (uint64_t)msg->duration_ms);
#undef ADJ
}

/* Adds (add = 1) or removes msg from its mailbox's counters and updates the lamp. */
static int account(cvx_store_t *st, MDB_txn *txn, const cvx_message_t *msg, int add, wop_t *op)
{
    mwirec_t m;
    int rc = store__get_mwi(st, txn, msg->mailbox, &m);
    if (rc != 0)
        return rc;
    uint32_t before[3] = {m.pub.msgs_new, m.pub.urgent_new, m.pub.msgs_saved};
    count(&m, msg, add);
    uint8_t lamp = m.pub.msgs_new > 0;
    if (lamp != m.pub.lamp) {
        m.pub.lamp = lamp;
        m.pub.generation++;
        op->mwi_changed = 1;
    }
    /* The counts the lamp's NOTIFY carries (RFC 3842 new/old) changed: the watcher is told
     * too, so that a device showing counts is updated, not only a lamp that turns. */
    if (before[0] != m.pub.msgs_new || before[1] != m.pub.urgent_new ||
        before[2] != m.pub.msgs_saved)
        op->mwi_changed = 1;
    if (op->mwi_changed)
        op->mwi = m.pub;
    return put_rec(st, txn, DB_MWI, msg->mailbox, strlen(msg->mailbox), REC_MWI, &m);
}

static int msg_insert(cvx_store_t *st, MDB_txn *txn, const cvx_message_t *msg, wop_t *op)
{
    int rc = put_rec(st, txn, DB_MESSAGES, msg->id, strlen(msg->id), REC_MESSAGE, msg);
    if (rc != 0)
        return rc;
    uint8_t key[CVX_STORE_NUMBER_MAX + 8 + CVX_STORE_ID_MAX];
    MDB_val k = {store__idx_key(msg->mailbox, msg->received_ms, msg->id, key), key};
    MDB_val v = {1, (void *)&msg->folder};
    rc = mdb_put(txn, st->dbi[DB_MBIDX], &k, &v, 0);
    if (rc != 0)
        return E(rc);
    return account(st, txn, msg, 1, op);
}

static int msg_remove(cvx_store_t *st, MDB_txn *txn, const cvx_message_t *msg, wop_t *op)
{
    int rc = del_key(st, txn, DB_MESSAGES, msg->id, strlen(msg->id));
    uint8_t key[CVX_STORE_NUMBER_MAX + 8 + CVX_STORE_ID_MAX];
    if (rc == 0)
        rc = del_key(st, txn, DB_MBIDX, key,
                     store__idx_key(msg->mailbox, msg->received_ms, msg->id, key));
    if (rc == 0)
        rc = account(st, txn, msg, 0, op);
    if (rc == 0)
        rc = blob_unref(st, txn, msg->sha256);
    return rc;
}

/* Fails with CVX_ELIMIT when one more message does not fit the mailbox's quota. */
static int check_quota(cvx_store_t *st, MDB_txn *txn, const char *number, uint32_t dur_ms)
{
    mbrec_t *mb = malloc(sizeof(*mb));
    if (mb == NULL)
        return CVX_ENOMEM;
    int rc = store__get_mailbox(st, txn, number, mb);
    if (rc == 0) {
        const cvx_mailbox_t *p = &mb->pub;
        if (p->quota_messages > 0 && p->msgs_new + p->msgs_saved >= p->quota_messages)
            rc = CVX_ELIMIT;
        else if (p->quota_minutes > 0 && p->total_ms + dur_ms > (uint64_t)p->quota_minutes * 60000)
            rc = CVX_ELIMIT;
    }
    free(mb);
    return rc;
}

/* --- recordings ------------------------------------------------------------------------------ */

static int op_append(cvx_store_t *st, MDB_txn *txn, wop_t *op)
{
    uint8_t key[12];
    store__be64(key, op->stream->sid);
    store__be32(key + 8, op->n);
    MDB_val k = {12, key}, v = {op->len, op->data};
    int rc = mdb_put(txn, st->dbi[DB_CHUNKS], &k, &v, 0);
    if (rc != 0)
        return E(rc);
    /* The recording is marked in progress with its first chunk (so that a crash leaves
     * nothing behind), or again after an earlier append failed and the first may be
     * missing.  Not with every chunk: that would rewrite a page per append. */
    cvx_store_stream_t *s = op->stream;
    if (op->n != 0 && s->werr == 0 && s->werr_batch == 0)
        return 0;
    uint8_t opened[8];
    store__be64(opened, op->now_ms);
    MDB_val sk = {8, key}, sv = {8, opened};
    return E(mdb_put(txn, st->dbi[DB_STREAMS], &sk, &sv, 0));
}

/* Hashes a recording's chunks; fails unless exactly `expected` consecutive chunks exist. */
static int hash_sid(cvx_store_t *st, MDB_txn *txn, uint64_t sid, uint32_t expected, uint8_t sha[32],
                    uint64_t *bytes)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, st->dbi[DB_CHUNKS], &c);
    if (rc != 0)
        return E(rc);
    crypto_hash_sha256_state hs;
    crypto_hash_sha256_init(&hs);
    uint8_t key[12];
    store__be64(key, sid);
    store__be32(key + 8, 0);
    MDB_val k = {12, key}, v;
    uint32_t n = 0;
    *bytes = 0;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 12 || memcmp(k.mv_data, key, 8) != 0)
            break;
        if (store__get_be32((uint8_t *)k.mv_data + 8) != n)
            break; /* a gap */
        crypto_hash_sha256_update(&hs, v.mv_data, v.mv_size);
        *bytes += v.mv_size;
        n++;
    }
    mdb_cursor_close(c);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return E(rc);
    crypto_hash_sha256_final(&hs, sha);
    return n == expected ? 0 : CVX_EIO;
}

static int op_commit(cvx_store_t *st, MDB_txn *txn, wop_t *op)
{
    cvx_store_stream_t *s = op->stream;
    cvx_deposit_result_t *res = &op->res;
    memset(res, 0, sizeof(*res));
    const char *number = s->is_greeting ? s->mailbox : s->msg.mailbox;
    int rc;
    if (!s->is_greeting) {
        cvx_message_t old;
        store__copy(res->id, s->msg.id, sizeof(res->id));
        rc = get_msg(st, txn, s->msg.id, &old);
        if (rc == 0) {
            /* Committed before (a retry after a lost acknowledgement): store nothing. */
            res->duplicate = 1;
            res->bytes = old.bytes;
            memcpy(res->sha256, old.sha256, 32);
            return store__drop_sid(st, txn, s->sid);
        }
        if (rc != CVX_ENOTFOUND)
            return rc;
        rc = check_quota(st, txn, number, op->u1 & 0xffffffffu);
        if (rc != 0)
            return rc;
    } else {
        MDB_val k = {strlen(number), (void *)number}, v;
        rc = mdb_get(txn, st->dbi[DB_MAILBOXES], &k, &v);
        if (rc != 0)
            return E(rc);
    }
    if (op->n == 0)
        return CVX_EINVAL; /* nothing was recorded */
    uint8_t sha[32];
    uint64_t bytes = 0;
    rc = hash_sid(st, txn, s->sid, op->n, sha, &bytes);
    if (rc != 0) {
        /* A chunk is missing: one of the appends failed. */
        return s->werr ? s->werr : s->werr_batch ? s->werr_batch : rc;
    }
    MDB_val bk = {32, sha}, bv;
    rc = mdb_get(txn, st->dbi[DB_BLOBS], &bk, &bv);
    if (rc == 0) {
        res->shared_audio = 1;
        rc = blob_ref(st, txn, sha);
        if (rc == 0)
            rc = store__drop_sid(st, txn, s->sid);
    } else if (rc == MDB_NOTFOUND) {
        blobrec_t b = {1, s->sid, op->n, bytes, s->codec, s->rate};
        rc = put_rec(st, txn, DB_BLOBS, sha, 32, REC_BLOB, &b);
        uint8_t key[8];
        store__be64(key, s->sid);
        if (rc == 0)
            rc = del_key(st, txn, DB_STREAMS, key, 8);
    } else {
        rc = E(rc);
    }
    if (rc != 0)
        return rc;
    res->bytes = bytes;
    memcpy(res->sha256, sha, 32);
    if (!s->is_greeting) {
        cvx_message_t m = s->msg;
        m.folder = CVX_FOLDER_NEW;
        m.folder_changed_ms = op->now_ms;
        m.duration_ms = (uint32_t)op->u1;
        m.codec = s->codec;
        m.rate = s->rate;
        m.bytes = bytes;
        memcpy(m.sha256, sha, 32);
        return msg_insert(st, txn, &m, op);
    }
    uint8_t gk[CVX_STORE_NUMBER_MAX + 2];
    size_t gn = greet_key(number, s->kind, gk);
    MDB_val k = {gn, gk}, v;
    rc = mdb_get(txn, st->dbi[DB_GREETINGS], &k, &v);
    if (rc == 0) {
        greetrec_t old;
        if (store__decode(REC_GREETING, v.mv_data, v.mv_size, &old) == 0)
            rc = blob_unref(st, txn, old.sha256);
        if (rc != 0)
            return rc;
    } else if (rc != MDB_NOTFOUND) {
        return E(rc);
    }
    greetrec_t g = {{0}, s->expires_ms, s->gflags, op->now_ms};
    memcpy(g.sha256, sha, 32);
    return put_rec(st, txn, DB_GREETINGS, gk, gn, REC_GREETING, &g);
}

/* --- mailboxes --------------------------------------------------------------------------- */

static int dir_set(cvx_store_t *st, MDB_txn *txn, const cvx_mailbox_t *mb, int add)
{
    uint8_t key[2 * CVX_STORE_NAME_MAX + CVX_STORE_NUMBER_MAX + 2];
    size_t n = store__dir_key(mb, key);
    if (!add)
        return del_key(st, txn, DB_DIRECTORY, key, n);
    if (!mb->listed)
        return 0;
    MDB_val k = {n, key}, v = {1, "\1"};
    return E(mdb_put(txn, st->dbi[DB_DIRECTORY], &k, &v, 0));
}

/* Mailboxes in the store, as this write transaction sees them. */
static uint64_t mailbox_count(cvx_store_t *st, MDB_txn *txn)
{
    MDB_stat ms;
    return mdb_stat(txn, st->dbi[DB_MAILBOXES], &ms) == 0 ? ms.ms_entries : 0;
}

static int op_mb_put(cvx_store_t *st, MDB_txn *txn, wop_t *op)
{
    mbrec_t *cur = malloc(sizeof(*cur));
    if (cur == NULL)
        return CVX_ENOMEM;
    const cvx_mailbox_t *in = &op->mb->pub;
    int rc = store__get_mailbox(st, txn, in->number, cur);
    if (op->mode == CVX_PUT_CREATE) {
        if (rc == 0)
            rc = CVX_EEXIST;
        else if (rc == CVX_ENOTFOUND && st->conf.max_mailboxes != 0 &&
                 mailbox_count(st, txn) >= st->conf.max_mailboxes)
            rc = CVX_ELIMIT;
        else if (rc == CVX_ENOTFOUND) {
            memset(cur, 0, sizeof(*cur));
            cur->pub.created_ms = op->now_ms;
            rc = 0;
        }
    } else if (rc == 0) {
        rc = dir_set(st, txn, &cur->pub, 0);
    }
    if (rc == 0) {
        /* The settable fields: from number to listed. */
        memcpy(&cur->pub, in, offsetof(cvx_mailbox_t, has_pin));
        rc = put_rec(st, txn, DB_MAILBOXES, in->number, strlen(in->number), REC_MAILBOX, cur);
    }
    if (rc == 0)
        rc = dir_set(st, txn, &cur->pub, 1);
    free(cur);
    return rc;
}

/* Removes every message of a mailbox, a slice at a time. */
static int remove_messages(cvx_store_t *st, MDB_txn *txn, const char *number, wop_t *op)
{
    size_t n = strlen(number);
    int rc;
    for (;;) {
        MDB_cursor *c;
        rc = mdb_cursor_open(txn, st->dbi[DB_MBIDX], &c);
        if (rc != 0)
            return E(rc);
        char ids[64][CVX_STORE_ID_MAX];
        unsigned count = 0;
        uint8_t key[CVX_STORE_NUMBER_MAX + 1];
        memcpy(key, number, n);
        key[n] = '\0';
        MDB_val k = {n + 1, key}, v;
        for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0 && count < 64;
             rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
            if (k.mv_size < n + 9 || memcmp(k.mv_data, key, n + 1) != 0)
                break;
            size_t idlen = k.mv_size - n - 9;
            if (idlen >= CVX_STORE_ID_MAX)
                continue;
            memcpy(ids[count], (char *)k.mv_data + n + 9, idlen);
            ids[count++][idlen] = '\0';
        }
        mdb_cursor_close(c);
        if (count == 0)
            return 0;
        for (unsigned i = 0; i < count; i++) {
            cvx_message_t m;
            rc = get_msg(st, txn, ids[i], &m);
            if (rc == 0)
                rc = msg_remove(st, txn, &m, op);
            if (rc != 0)
                return rc;
        }
    }
}

static int op_mb_del(cvx_store_t *st, MDB_txn *txn, wop_t *op)
{
    mbrec_t *cur = malloc(sizeof(*cur));
    if (cur == NULL)
        return CVX_ENOMEM;
    int rc = store__get_mailbox(st, txn, op->number, cur);
    if (rc == 0)
        rc = remove_messages(st, txn, op->number, op);
    for (int g = 0; rc == 0 && g < CVX_GREETING_COUNT; g++) {
        uint8_t gk[CVX_STORE_NUMBER_MAX + 2];
        size_t gn = greet_key(op->number, g, gk);
        MDB_val k = {gn, gk}, v;
        if (mdb_get(txn, st->dbi[DB_GREETINGS], &k, &v) != 0)
            continue;
        greetrec_t gr;
        if (store__decode(REC_GREETING, v.mv_data, v.mv_size, &gr) == 0)
            rc = blob_unref(st, txn, gr.sha256);
        if (rc == 0)
            rc = del_key(st, txn, DB_GREETINGS, gk, gn);
    }
    if (rc == 0)
        rc = dir_set(st, txn, &cur->pub, 0);
    if (rc == 0)
        rc = del_key(st, txn, DB_MWI, op->number, strlen(op->number));
    if (rc == 0)
        rc = del_key(st, txn, DB_MAILBOXES, op->number, strlen(op->number));
    if (rc == 0 && cur->pub.msgs_new > 0) {
        /* The lamp goes off with the mailbox. */
        memset(&op->mwi, 0, sizeof(op->mwi));
        store__copy(op->mwi.mailbox, op->number, sizeof(op->mwi.mailbox));
        op->mwi_changed = 1;
    }
    free(cur);
    return rc;
}

/* Reads, changes (fn) and writes back a mailbox record. */
static int with_mailbox(cvx_store_t *st, MDB_txn *txn, wop_t *op,
                        int (*fn)(cvx_store_t *st, mbrec_t *mb, wop_t *op))
{
    mbrec_t *mb = malloc(sizeof(*mb));
    if (mb == NULL)
        return CVX_ENOMEM;
    int rc = store__get_mailbox(st, txn, op->number, mb);
    if (rc == 0)
        rc = fn(st, mb, op);
    if (rc == 0)
        rc = put_rec(st, txn, DB_MAILBOXES, op->number, strlen(op->number), REC_MAILBOX, mb);
    free(mb);
    return rc;
}

static int set_pin(cvx_store_t *st, mbrec_t *mb, wop_t *op)
{
    uint32_t keep = st->conf.pin_history;
    if (keep > 0 && mb->pin_hash[0] != '\0') {
        for (uint32_t i = keep - 1; i > 0; i--)
            memcpy(mb->history[i], mb->history[i - 1], STORE_PIN_HASH);
        memcpy(mb->history[0], mb->pin_hash, STORE_PIN_HASH);
    }
    for (uint32_t i = keep; i < STORE_PIN_HISTORY_MAX; i++)
        mb->history[i][0] = '\0';
    memcpy(mb->pin_hash, op->mb->pin_hash, STORE_PIN_HASH);
    mb->pub.pin_changed_ms = op->now_ms;
    mb->pub.failed_logins = 0;
    mb->pub.locked_until_ms = 0;
    return 0;
}

/*
 * How long the lockout-th lockout lasts since the last good PIN (or administrator's unlock):
 * pin_lockout, doubled for every lockout before it (back-off), at most a day (or pin_lockout
 * when that is configured longer).
 */
static uint64_t lockout_ms(uint64_t base, uint32_t lockout)
{
    uint64_t cap = base > 86400000u ? base : 86400000u;
    uint32_t shift = lockout > 1 ? lockout - 1 : 0;
    if (shift > 20)
        shift = 20;
    uint64_t ms = base << shift;
    return ms < cap ? ms : cap;
}

/*
 * A PIN check.  failed_logins counts the wrong PINs since the last good one (or unlock); it is
 * not cleared when a lock runs out, so every pin_attempts more wrong PINs lock the mailbox
 * again, for longer each time (lockout_ms).  A good PIN or the administrator's unlock clears
 * the count and with it the back-off.
 */
static int login(cvx_store_t *st, mbrec_t *mb, wop_t *op)
{
    cvx_pin_result_t *r = &op->pin;
    uint32_t per = st->conf.pin_attempts ? st->conf.pin_attempts : 1;
    memset(r, 0, sizeof(*r));
    if (mb->pub.locked_until_ms != 0 && mb->pub.locked_until_ms <= op->now_ms)
        mb->pub.locked_until_ms = 0; /* the lock has run out: pin_attempts more tries */
    if (mb->pub.locked_until_ms > op->now_ms) {
        r->verdict = CVX_PIN_LOCKED;
        r->locked_until_ms = mb->pub.locked_until_ms;
        return 0;
    }
    if (op->mode) {
        r->verdict = CVX_PIN_OK;
        mb->pub.failed_logins = 0;
        mb->pub.locked_until_ms = 0;
        return 0;
    }
    r->verdict = CVX_PIN_WRONG;
    mb->pub.failed_logins++;
    if (mb->pub.failed_logins % per == 0) {
        uint32_t lockouts = mb->pub.failed_logins / per;
        uint64_t ms = lockout_ms(st->conf.pin_lockout_ms, lockouts);
        mb->pub.locked_until_ms = op->now_ms + ms;
        r->locked_until_ms = mb->pub.locked_until_ms;
        cvx_notice("mailbox %s locked for %llu s after %u failed PIN attempts (lockout %u)",
                   mb->pub.number, (unsigned long long)(ms / 1000), mb->pub.failed_logins,
                   lockouts);
    } else {
        r->attempts_left = per - mb->pub.failed_logins % per;
    }
    return 0;
}

static int unlock(cvx_store_t *st, mbrec_t *mb, wop_t *op)
{
    (void)st;
    (void)op;
    mb->pub.failed_logins = 0;
    mb->pub.locked_until_ms = 0;
    return 0;
}

/* --- messages ------------------------------------------------------------------------------ */

static int op_move(cvx_store_t *st, MDB_txn *txn, wop_t *op)
{
    cvx_message_t m;
    int rc = get_msg(st, txn, op->key, &m);
    if (rc != 0 || m.folder == op->n)
        return rc;
    rc = account(st, txn, &m, 0, op);
    if (rc != 0)
        return rc;
    m.folder = (uint8_t)op->n;
    m.folder_changed_ms = op->now_ms;
    m.flags &= ~(uint32_t)CVX_MSG_EXPIRING; /* its retention starts again */
    rc = account(st, txn, &m, 1, op);
    if (rc == 0)
        rc = put_rec(st, txn, DB_MESSAGES, m.id, strlen(m.id), REC_MESSAGE, &m);
    if (rc == 0) {
        uint8_t key[CVX_STORE_NUMBER_MAX + 8 + CVX_STORE_ID_MAX];
        MDB_val k = {store__idx_key(m.mailbox, m.received_ms, m.id, key), key};
        MDB_val v = {1, &m.folder};
        rc = E(mdb_put(txn, st->dbi[DB_MBIDX], &k, &v, 0));
    }
    return rc;
}

static int op_purge(cvx_store_t *st, MDB_txn *txn, wop_t *op)
{
    cvx_message_t m;
    int rc = get_msg(st, txn, op->key, &m);
    return rc == 0 ? msg_remove(st, txn, &m, op) : rc;
}

static int op_copy(cvx_store_t *st, MDB_txn *txn, wop_t *op)
{
    cvx_message_t m;
    memset(&op->res, 0, sizeof(op->res));
    store__copy(op->res.id, op->key2, sizeof(op->res.id));
    int rc = get_msg(st, txn, op->key2, &m);
    if (rc == 0) {
        op->res.duplicate = 1;
        op->res.bytes = m.bytes;
        memcpy(op->res.sha256, m.sha256, 32);
        return 0;
    }
    if (rc != CVX_ENOTFOUND)
        return rc;
    rc = get_msg(st, txn, op->key, &m);
    if (rc == 0)
        rc = check_quota(st, txn, op->number, m.duration_ms);
    if (rc == 0)
        rc = blob_ref(st, txn, m.sha256);
    if (rc != 0)
        return rc;
    store__copy(m.id, op->key2, sizeof(m.id));
    store__copy(m.mailbox, op->number, sizeof(m.mailbox));
    m.folder = CVX_FOLDER_NEW;
    m.folder_changed_ms = op->now_ms;
    op->res.shared_audio = 1;
    op->res.bytes = m.bytes;
    memcpy(op->res.sha256, m.sha256, 32);
    return msg_insert(st, txn, &m, op);
}

/* The ids of a housekeeping operation: op->n ids of CVX_STORE_ID_MAX bytes in op->data. */
#define OP_ID(op, i) ((const char *)(op)->data + (size_t)(i)*CVX_STORE_ID_MAX)

/* Purges the listed messages that are still deleted since before op->u1. */
static int op_expire(cvx_store_t *st, MDB_txn *txn, wop_t *op)
{
    uint32_t ids = op->n, done = 0;
    int rc = 0;
    for (uint32_t i = 0; rc == 0 && i < ids; i++) {
        cvx_message_t m;
        if (get_msg(st, txn, OP_ID(op, i), &m) != 0 || m.folder != CVX_FOLDER_DELETED ||
            m.folder_changed_ms >= op->u1)
            continue; /* changed since the scan */
        rc = msg_remove(st, txn, &m, op);
        done++;
    }
    op->n = done;
    op->mwi_changed = 0; /* deleted messages never light the lamp */
    return rc;
}

uint64_t store__retention_of(cvx_store_t *st, MDB_txn *txn, const char *number)
{
    MDB_val k = {strlen(number), (void *)number}, v;
    mbrec_t *mb = malloc(sizeof(*mb));
    unsigned cls = 0;
    if (mb != NULL && mdb_get(txn, st->dbi[DB_MAILBOXES], &k, &v) == 0 &&
        store__decode(REC_MAILBOX, v.mv_data, v.mv_size, mb) == 0)
        cls = mb->pub.retention_class;
    free(mb);
    if (cls >= CVX_STORE_RETENTION_CLASSES)
        cls = 0;
    return st->conf.retention_ms[cls];
}

int store__retain_action(cvx_store_t *st, const cvx_message_t *m, uint64_t limit, uint64_t now)
{
    if (m->folder != CVX_FOLDER_SAVED || limit == 0)
        return 0;
    uint64_t age = now > m->folder_changed_ms ? now - m->folder_changed_ms : 0;
    if (age >= limit)
        return 2;
    if (age + st->conf.retention_warning_ms >= limit && !(m->flags & CVX_MSG_EXPIRING))
        return 1;
    return 0;
}

/* Applies retention to the listed messages as of op->u1: flags or moves to deleted. */
static int op_retain(cvx_store_t *st, MDB_txn *txn, wop_t *op)
{
    uint32_t ids = op->n, moved = 0;
    int rc = 0;
    for (uint32_t i = 0; rc == 0 && i < ids; i++) {
        cvx_message_t m;
        if (get_msg(st, txn, OP_ID(op, i), &m) != 0)
            continue;
        int action = store__retain_action(st, &m, store__retention_of(st, txn, m.mailbox), op->u1);
        if (action == 1) {
            m.flags |= CVX_MSG_EXPIRING;
            rc = put_rec(st, txn, DB_MESSAGES, m.id, strlen(m.id), REC_MESSAGE, &m);
            continue;
        }
        if (action != 2)
            continue;
        /* Saved to deleted: counters, index and record; purged later like any deleted one. */
        rc = account(st, txn, &m, 0, op);
        m.folder = CVX_FOLDER_DELETED;
        m.folder_changed_ms = op->u1;
        m.flags &= ~(uint32_t)CVX_MSG_EXPIRING;
        if (rc == 0)
            rc = account(st, txn, &m, 1, op);
        if (rc == 0)
            rc = put_rec(st, txn, DB_MESSAGES, m.id, strlen(m.id), REC_MESSAGE, &m);
        if (rc == 0) {
            uint8_t key[CVX_STORE_NUMBER_MAX + 8 + CVX_STORE_ID_MAX];
            MDB_val ik = {store__idx_key(m.mailbox, m.received_ms, m.id, key), key};
            MDB_val iv = {1, &m.folder};
            rc = E(mdb_put(txn, st->dbi[DB_MBIDX], &ik, &iv, 0));
        }
        moved++;
    }
    op->n = moved;
    op->mwi_changed = 0; /* saved messages never light the lamp */
    return rc;
}

static int op_greet_del(cvx_store_t *st, MDB_txn *txn, wop_t *op)
{
    uint8_t gk[CVX_STORE_NUMBER_MAX + 2];
    size_t gn = greet_key(op->number, (int)op->n, gk);
    MDB_val k = {gn, gk}, v;
    int rc = mdb_get(txn, st->dbi[DB_GREETINGS], &k, &v);
    if (rc != 0)
        return E(rc);
    greetrec_t g;
    rc = store__decode(REC_GREETING, v.mv_data, v.mv_size, &g);
    if (rc == 0)
        rc = blob_unref(st, txn, g.sha256);
    if (rc == 0)
        rc = del_key(st, txn, DB_GREETINGS, gk, gn);
    return rc;
}

static int op_mwi_report(cvx_store_t *st, MDB_txn *txn, wop_t *op)
{
    MDB_val k = {strlen(op->number), op->number}, v;
    int rc = mdb_get(txn, st->dbi[DB_MAILBOXES], &k, &v);
    if (rc != 0)
        return E(rc);
    mwirec_t m;
    rc = store__get_mwi(st, txn, op->number, &m);
    if (rc != 0)
        return rc;
    if (op->u1 != m.pub.generation)
        return 0; /* a report about a state that has changed since: the next one counts */
    m.pub.sent_ok = op->n ? 1 : 0;
    if (op->n)
        m.pub.sent_lamp = (uint8_t)op->mode;
    m.pub.sent_ms = op->now_ms;
    return put_rec(st, txn, DB_MWI, op->number, strlen(op->number), REC_MWI, &m);
}

int store__apply(cvx_store_t *st, MDB_txn *txn, wop_t *op)
{
    op->mwi_changed = 0;
    switch (op->type) {
    case W_APPEND:
        return op_append(st, txn, op);
    case W_COMMIT:
        return op_commit(st, txn, op);
    case W_ABORT:
        return store__drop_sid(st, txn, op->stream->sid);
    case W_MB_PUT:
        return op_mb_put(st, txn, op);
    case W_MB_DEL:
        return op_mb_del(st, txn, op);
    case W_PIN_SET:
        return with_mailbox(st, txn, op, set_pin);
    case W_LOGIN:
        return with_mailbox(st, txn, op, login);
    case W_UNLOCK:
        return with_mailbox(st, txn, op, unlock);
    case W_MOVE:
        return op_move(st, txn, op);
    case W_PURGE:
        return op_purge(st, txn, op);
    case W_COPY:
        return op_copy(st, txn, op);
    case W_EXPIRE:
        return op_expire(st, txn, op);
    case W_GREET_DEL:
        return op_greet_del(st, txn, op);
    case W_MWI_REPORT:
        return op_mwi_report(st, txn, op);
    case W_RETAIN:
        return op_retain(st, txn, op);
    case W_SETTING_PUT:
        return store__op_setting_put(st, txn, op);
    }
    return CVX_EINVAL;
}
