/*
 * The LMDB environment: opening, the schema version and its upgrades, the map size, read
 * transactions and the lookups that several files share.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cvx/log.h"
#include "store_impl.h"

const char *const store__db_names[DB_COUNT] = {
    "settings", "mailboxes", "messages",  "mbidx",     "blobs",
    "chunks",   "streams",   "greetings", "directory", "mwi",
};

int store__mdb_err(int rc)
{
    switch (rc) {
    case 0:
        return 0;
    case MDB_NOTFOUND:
        return CVX_ENOTFOUND;
    case MDB_KEYEXIST:
        return CVX_EEXIST;
    case MDB_MAP_FULL:
    case MDB_TXN_FULL:
    case MDB_DBS_FULL:
    case ENOSPC:
    case EDQUOT:
        return CVX_EFULL;
    case MDB_READERS_FULL:
        return CVX_EBUSY;
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH:
        return CVX_ECORRUPT;
    case ENOMEM:
        return CVX_ENOMEM;
    case EACCES:
    case EPERM:
        return CVX_EPERM;
    case ENOENT:
        return CVX_ENOTFOUND;
    default:
        return rc < 0 ? CVX_EIO : cvx_from_errno(rc);
    }
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

void cvx_store_conf_defaults(cvx_store_conf_t *conf)
{
    memset(conf, 0, sizeof(*conf));
    conf->map_size = 1024ull << 20;
    conf->map_max = 16384ull << 20;
    conf->batch_max = 1024;
    conf->queue_max = 256ull << 20;
    conf->pin_attempts = 5;
    conf->pin_lockout_ms = 30 * 60 * 1000;
    conf->pin_history = 4;
    conf->prefetch = 8;
    conf->group_commit = 1;
    conf->retention_warning_ms = 3ull * 86400000;
}

/* --- schema ------------------------------------------------------------------------------ */

/*
 * Schema history:
 *   1  the first layout, without the directory database;
 *   2  adds "directory", the dial-by-name index, built from the mailboxes on upgrade.
 * Each step runs inside the one write transaction that opens the store, so an upgrade is
 * all or nothing.
 */
static int upgrade_1_to_2(cvx_store_t *st, MDB_txn *txn)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, st->dbi[DB_MAILBOXES], &c);
    if (rc != 0)
        return rc;
    MDB_val k, v;
    mbrec_t *mb = malloc(sizeof(*mb));
    if (mb == NULL) {
        mdb_cursor_close(c);
        return ENOMEM;
    }
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (store__decode(REC_MAILBOX, v.mv_data, v.mv_size, mb) != 0)
            continue;
        if (!mb->pub.listed)
            continue;
        uint8_t key[2 * CVX_STORE_NAME_MAX + CVX_STORE_NUMBER_MAX + 2];
        MDB_val dk = {store__dir_key(&mb->pub, key), key}, dv = {1, "\1"};
        rc = mdb_put(txn, st->dbi[DB_DIRECTORY], &dk, &dv, 0);
        if (rc != 0)
            break;
    }
    free(mb);
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int put_schema(cvx_store_t *st, MDB_txn *txn, uint32_t version)
{
    uint8_t b[4] = {(uint8_t)version, (uint8_t)(version >> 8), (uint8_t)(version >> 16),
                    (uint8_t)(version >> 24)};
    MDB_val k = {6, "schema"}, v = {4, b};
    return mdb_put(txn, st->dbi[DB_SETTINGS], &k, &v, 0);
}

/* Removes the chunks of recordings a crash left unfinished. */
static int collect_streams(cvx_store_t *st, MDB_txn *txn, unsigned *n)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, st->dbi[DB_STREAMS], &c);
    if (rc != 0)
        return rc;
    MDB_val k, v;
    uint64_t sids[256];
    unsigned count = 0;
    *n = 0;
    do {
        count = 0;
        for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0 && count < 256;
             rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
            if (k.mv_size == 8)
                sids[count++] = store__get_be64(k.mv_data);
        for (unsigned i = 0; i < count; i++) {
            int r = store__drop_sid(st, txn, sids[i]);
            if (r != 0) {
                mdb_cursor_close(c);
                return r == CVX_EFULL ? MDB_MAP_FULL : EIO;
            }
        }
        *n += count;
    } while (count == 256);
    mdb_cursor_close(c);
    return 0;
}

static int open_schema(cvx_store_t *st, char *err, size_t errlen)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(st->env, NULL, 0, &txn);
    if (rc != 0)
        goto fail;
    rc = mdb_dbi_open(txn, "settings", MDB_CREATE, &st->dbi[DB_SETTINGS]);
    if (rc != 0)
        goto fail_txn;
    MDB_val k = {6, "schema"}, v;
    uint32_t version = 0;
    rc = mdb_get(txn, st->dbi[DB_SETTINGS], &k, &v);
    if (rc == 0 && v.mv_size == 4) {
        const uint8_t *b = v.mv_data;
        version = b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    } else if (rc != MDB_NOTFOUND) {
        set_err(err, errlen, "message store %s: unreadable schema version", st->path);
        mdb_txn_abort(txn);
        return CVX_ECORRUPT;
    }
    if (version > STORE_SCHEMA) {
        set_err(err, errlen,
                "message store %s was written by a newer callvox (schema version %u; this "
                "callvoxd reads up to %u): refusing to open it",
                st->path, version, STORE_SCHEMA);
        mdb_txn_abort(txn);
        return CVX_ENOTSUP;
    }
    for (int i = 1; i < DB_COUNT; i++) {
        rc = mdb_dbi_open(txn, store__db_names[i], MDB_CREATE, &st->dbi[i]);
        if (rc != 0)
            goto fail_txn;
    }
    if (version == 0) {
        MDB_stat ms;
        mdb_stat(txn, st->dbi[DB_MAILBOXES], &ms);
        if (ms.ms_entries > 0) {
            set_err(err, errlen, "message store %s has mailboxes but no schema version", st->path);
            mdb_txn_abort(txn);
            return CVX_ECORRUPT;
        }
        uint8_t id[16];
        randombytes_buf(id, sizeof(id));
        MDB_val ik = {8, "store_id"}, iv = {sizeof(id), id};
        rc = mdb_put(txn, st->dbi[DB_SETTINGS], &ik, &iv, 0);
        if (rc == 0)
            rc = put_schema(st, txn, STORE_SCHEMA);
        if (rc != 0)
            goto fail_txn;
        cvx_info("message store %s created (schema version %u)", st->path, STORE_SCHEMA);
    } else if (version < STORE_SCHEMA) {
        if (version < 2)
            rc = upgrade_1_to_2(st, txn);
        if (rc == 0)
            rc = put_schema(st, txn, STORE_SCHEMA);
        if (rc != 0)
            goto fail_txn;
        cvx_notice("message store %s upgraded from schema version %u to %u", st->path, version,
                   STORE_SCHEMA);
    }
    unsigned dropped = 0;
    rc = collect_streams(st, txn, &dropped);
    if (rc != 0)
        goto fail_txn;
    if (dropped > 0)
        cvx_notice("message store: removed %u unfinished recording%s left by a previous run",
                   dropped, dropped == 1 ? "" : "s");
    rc = mdb_txn_commit(txn);
    if (rc != 0)
        goto fail;
    return 0;
fail_txn:
    mdb_txn_abort(txn);
fail:
    set_err(err, errlen, "message store %s: %s", st->path, mdb_strerror(rc));
    return store__mdb_err(rc);
}

/* The storage id after the highest one in use. */
static int find_next_sid(cvx_store_t *st)
{
    MDB_txn *txn;
    MDB_cursor *c;
    int rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0)
        return store__mdb_err(rc);
    st->next_sid = 1;
    if (mdb_cursor_open(txn, st->dbi[DB_CHUNKS], &c) == 0) {
        MDB_val k, v;
        if (mdb_cursor_get(c, &k, &v, MDB_LAST) == 0 && k.mv_size == 12)
            st->next_sid = store__get_be64(k.mv_data) + 1;
        mdb_cursor_close(c);
    }
    mdb_txn_abort(txn);
    return 0;
}

int cvx_store_open(uv_loop_t *loop, const cvx_store_conf_t *conf, cvx_store_t **out, char *err,
                   size_t errlen)
{
    *out = NULL;
    if (conf == NULL || conf->path == NULL || conf->path[0] == '\0' || conf->map_size == 0) {
        set_err(err, errlen, "message store: no path or map size configured");
        return CVX_EINVAL;
    }
    if (sodium_init() < 0) {
        set_err(err, errlen, "message store: libsodium failed to initialise");
        return CVX_EIO;
    }
    if (mkdir(conf->path, 0750) != 0 && errno != EEXIST) {
        set_err(err, errlen, "message store: cannot create %s: %s", conf->path, strerror(errno));
        return cvx_from_errno(errno);
    }
    cvx_store_t *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return CVX_ENOMEM;
    st->loop = loop;
    st->conf = *conf;
    if (st->conf.map_max < st->conf.map_size)
        st->conf.map_max = st->conf.map_size;
    if (st->conf.batch_max == 0 || !st->conf.group_commit)
        st->conf.batch_max = st->conf.group_commit ? 1024 : 1;
    if (st->conf.pin_history > STORE_PIN_HISTORY_MAX)
        st->conf.pin_history = STORE_PIN_HISTORY_MAX;
    if (st->conf.prefetch == 0)
        st->conf.prefetch = 1;
    snprintf(st->path, sizeof(st->path), "%s", conf->path);
    st->conf.path = st->path;

    int rc = mdb_env_create(&st->env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(st->env, 16);
    if (rc == 0)
        rc = mdb_env_set_mapsize(st->env, (size_t)conf->map_size);
    if (rc == 0)
        rc = mdb_env_set_maxreaders(st->env, 126);
    if (rc == 0)
        rc = mdb_env_open(st->env, st->path, MDB_NOTLS, 0640);
    if (rc != 0) {
        set_err(err, errlen, "message store %s: %s", st->path, mdb_strerror(rc));
        if (st->env != NULL)
            mdb_env_close(st->env);
        free(st);
        return store__mdb_err(rc);
    }
    MDB_envinfo info;
    mdb_env_info(st->env, &info);
    st->map_size = info.me_mapsize;
    rc = open_schema(st, err, errlen);
    if (rc == 0)
        rc = find_next_sid(st);
    if (rc != 0) {
        mdb_env_close(st->env);
        free(st);
        return rc;
    }
    pthread_rwlock_init(&st->maplock, NULL);
    pthread_mutex_init(&st->wmutex, NULL);
    pthread_cond_init(&st->wcond, NULL);
    rc = cvx_async_queue_init(loop, &st->done);
    if (rc == 0)
        rc = store__writer_start(st);
    if (rc != 0) {
        set_err(err, errlen, "message store: cannot start the writer: %s", cvx_strerror(rc));
        mdb_env_close(st->env);
        free(st);
        return rc;
    }
    cvx_info("message store %s open: map %llu MB (grows to %llu MB), group commit %s", st->path,
             (unsigned long long)(st->map_size >> 20), (unsigned long long)(st->conf.map_max >> 20),
             st->conf.group_commit ? "on" : "off");
    *out = st;
    return 0;
}

/* --- reads and map growth ----------------------------------------------------------------- */

int store__read_begin(cvx_store_t *st, MDB_txn **txn)
{
    pthread_rwlock_rdlock(&st->maplock);
    int rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, txn);
    if (rc != 0) {
        pthread_rwlock_unlock(&st->maplock);
        return store__mdb_err(rc);
    }
    return 0;
}

void store__read_end(cvx_store_t *st, MDB_txn *txn)
{
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&st->maplock);
}

int store__grow(cvx_store_t *st)
{
    if (st->map_size >= st->conf.map_max)
        return CVX_EFULL;
    uint64_t next = st->map_size * 2;
    if (next > st->conf.map_max)
        next = st->conf.map_max;
    pthread_rwlock_wrlock(&st->maplock);
    int rc = mdb_env_set_mapsize(st->env, (size_t)next);
    pthread_rwlock_unlock(&st->maplock);
    if (rc != 0) {
        cvx_error("message store: cannot grow the map to %llu MB: %s",
                  (unsigned long long)(next >> 20), mdb_strerror(rc));
        return CVX_EFULL;
    }
    cvx_notice("message store: map grown from %llu MB to %llu MB",
               (unsigned long long)(st->map_size >> 20), (unsigned long long)(next >> 20));
    __atomic_store_n(&st->map_size, next, __ATOMIC_RELAXED);
    return 0;
}

/* --- lookups -------------------------------------------------------------------------- */

int store__get_mwi(cvx_store_t *st, MDB_txn *txn, const char *number, mwirec_t *out)
{
    MDB_val k = {strlen(number), (void *)number}, v;
    int rc = mdb_get(txn, st->dbi[DB_MWI], &k, &v);
    if (rc == MDB_NOTFOUND) {
        memset(out, 0, sizeof(*out));
        store__copy(out->pub.mailbox, number, sizeof(out->pub.mailbox));
        return 0;
    }
    if (rc != 0)
        return store__mdb_err(rc);
    return store__decode(REC_MWI, v.mv_data, v.mv_size, out);
}

int store__get_mailbox(cvx_store_t *st, MDB_txn *txn, const char *number, mbrec_t *out)
{
    MDB_val k = {strlen(number), (void *)number}, v;
    int rc = mdb_get(txn, st->dbi[DB_MAILBOXES], &k, &v);
    if (rc != 0)
        return store__mdb_err(rc);
    rc = store__decode(REC_MAILBOX, v.mv_data, v.mv_size, out);
    if (rc != 0)
        return rc;
    out->pub.has_pin = out->pin_hash[0] != '\0';
    mwirec_t m;
    rc = store__get_mwi(st, txn, number, &m);
    if (rc != 0)
        return rc;
    out->pub.msgs_new = m.pub.msgs_new;
    out->pub.msgs_saved = m.pub.msgs_saved;
    out->pub.msgs_deleted = m.msgs_deleted;
    out->pub.urgent_new = m.pub.urgent_new;
    out->pub.total_ms = m.total_ms;
    /* Greetings: one key per kind under "number NUL". */
    for (int g = 0; g < CVX_GREETING_COUNT; g++) {
        uint8_t key[CVX_STORE_NUMBER_MAX + 2];
        size_t n = strlen(number);
        memcpy(key, number, n);
        key[n] = '\0';
        key[n + 1] = (uint8_t)g;
        MDB_val gk = {n + 2, key}, gv;
        if (mdb_get(txn, st->dbi[DB_GREETINGS], &gk, &gv) != 0)
            continue;
        greetrec_t gr;
        if (store__decode(REC_GREETING, gv.mv_data, gv.mv_size, &gr) != 0)
            continue;
        out->pub.greetings |= 1u << g;
        if (g == CVX_GREETING_EXTENDED)
            out->pub.greeting_flags = gr.flags;
        if (g == CVX_GREETING_TEMPORARY)
            out->pub.temporary_until_ms = gr.expires_ms;
    }
    return 0;
}

int store__resolve_audio(cvx_store_t *st, MDB_txn *txn, const cvx_audio_ref_t *ref, uint8_t sha[32],
                         blobrec_t *blob)
{
    MDB_val k, v;
    int rc;
    if (!ref->is_greeting) {
        k.mv_size = strlen(ref->id);
        k.mv_data = (void *)ref->id;
        rc = mdb_get(txn, st->dbi[DB_MESSAGES], &k, &v);
        if (rc != 0)
            return store__mdb_err(rc);
        cvx_message_t m;
        rc = store__decode(REC_MESSAGE, v.mv_data, v.mv_size, &m);
        if (rc != 0)
            return rc;
        memcpy(sha, m.sha256, 32);
    } else {
        uint8_t key[CVX_STORE_NUMBER_MAX + 2];
        size_t n = strlen(ref->mailbox);
        memcpy(key, ref->mailbox, n);
        key[n] = '\0';
        key[n + 1] = (uint8_t)ref->greeting;
        k.mv_size = n + 2;
        k.mv_data = key;
        rc = mdb_get(txn, st->dbi[DB_GREETINGS], &k, &v);
        if (rc != 0)
            return store__mdb_err(rc);
        greetrec_t g;
        rc = store__decode(REC_GREETING, v.mv_data, v.mv_size, &g);
        if (rc != 0)
            return rc;
        memcpy(sha, g.sha256, 32);
    }
    k.mv_size = 32;
    k.mv_data = sha;
    rc = mdb_get(txn, st->dbi[DB_BLOBS], &k, &v);
    if (rc == MDB_NOTFOUND)
        return CVX_ECORRUPT; /* a reference to audio that is not there */
    if (rc != 0)
        return store__mdb_err(rc);
    return store__decode(REC_BLOB, v.mv_data, v.mv_size, blob);
}
