/*
 * Administration on the thread pool: statistics, backup, verification.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cvx/log.h"
#include "store_impl.h"

/* A thread-pool job with text lines for the loop. */
typedef struct adminwork {
    uv_work_t req;
    cvx_store_t *st;
    int status;
    cvx_store_done_cb done;
    cvx_store_stats_cb stats_cb;
    cvx_store_line_fn line;
    void *arg;
    cvx_store_stats_t stats;
    char dir[4096];
    char **lines;
    size_t nlines;
} adminwork_t;

static void add_line(adminwork_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_line(adminwork_t *w, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    char **p = realloc(w->lines, (w->nlines + 1) * sizeof(*p));
    if (p == NULL)
        return;
    w->lines = p;
    if ((w->lines[w->nlines] = strdup(buf)) != NULL)
        w->nlines++;
}

static void admin_after(uv_work_t *req, int uvstatus)
{
    adminwork_t *w = req->data;
    cvx_store_t *st = w->st;
    if (uvstatus != 0 && w->status == 0)
        w->status = CVX_EUNAVAIL;
    for (size_t i = 0; i < w->nlines; i++) {
        if (w->line != NULL)
            w->line(w->arg, w->lines[i]);
        free(w->lines[i]);
    }
    free(w->lines);
    if (w->stats_cb != NULL)
        w->stats_cb(w->arg, w->status, w->status == 0 ? &w->stats : NULL);
    else if (w->done != NULL)
        w->done(w->arg, w->status);
    free(w);
    store__pool_end(st);
}

static int admin_start(cvx_store_t *st, adminwork_t *w, uv_work_cb fn)
{
    w->st = st;
    w->req.data = w;
    if (uv_queue_work(st->loop, &w->req, fn, admin_after) != 0) {
        free(w);
        return CVX_EIO;
    }
    store__pool_begin(st);
    return 0;
}

/* --- stats ---------------------------------------------------------------------------------- */

static void stats_work(uv_work_t *req)
{
    adminwork_t *w = req->data;
    cvx_store_t *st = w->st;
    cvx_store_stats_t *s = &w->stats;
    MDB_txn *txn;
    w->status = store__read_begin(st, &txn);
    if (w->status != 0)
        return;
    MDB_envinfo ei;
    MDB_stat es;
    mdb_env_info(st->env, &ei);
    mdb_env_stat(st->env, &es);
    s->map_bytes = ei.me_mapsize;
    s->map_max_bytes = st->conf.map_max;
    s->used_bytes = (uint64_t)(ei.me_last_pgno + 1) * es.ms_psize;
    s->readers = ei.me_numreaders;
    s->max_readers = ei.me_maxreaders;
    s->schema = STORE_SCHEMA;
    MDB_stat ms;
    if (mdb_stat(txn, st->dbi[DB_MAILBOXES], &ms) == 0)
        s->mailboxes = ms.ms_entries;
    if (mdb_stat(txn, st->dbi[DB_MESSAGES], &ms) == 0)
        s->messages = ms.ms_entries;
    if (mdb_stat(txn, st->dbi[DB_CHUNKS], &ms) == 0)
        s->chunks = ms.ms_entries;
    if (mdb_stat(txn, st->dbi[DB_STREAMS], &ms) == 0)
        s->open_streams = ms.ms_entries;
    MDB_cursor *c;
    if (mdb_cursor_open(txn, st->dbi[DB_BLOBS], &c) == 0) {
        MDB_val k, v;
        for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
            blobrec_t b;
            if (store__decode(REC_BLOB, v.mv_data, v.mv_size, &b) != 0)
                continue;
            s->blobs++;
            s->blob_bytes += b.bytes;
            s->references += b.refs;
            if (b.refs > 1)
                s->blobs_shared++;
        }
        mdb_cursor_close(c);
    }
    store__read_end(st, txn);
    char path[4200];
    snprintf(path, sizeof(path), "%s/data.mdb", st->path);
    struct stat sb;
    if (stat(path, &sb) == 0)
        s->file_bytes = (uint64_t)sb.st_blocks * 512;
    s->commits = __atomic_load_n(&st->commits, __ATOMIC_RELAXED);
    s->transactions = __atomic_load_n(&st->transactions, __ATOMIC_RELAXED);
    s->full_refusals = __atomic_load_n(&st->full_refusals, __ATOMIC_RELAXED);
}

int cvx_store_stats(cvx_store_t *st, cvx_store_stats_cb cb, void *arg)
{
    if (st != NULL && st->remote != NULL)
        return CVX_ENOTSUP; /* administration runs on the system server */
    if (st == NULL || st->closing)
        return CVX_EUNAVAIL;
    if (cb == NULL)
        return CVX_EINVAL;
    adminwork_t *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return CVX_ENOMEM;
    w->stats_cb = cb;
    w->arg = arg;
    return admin_start(st, w, stats_work);
}

/* --- backup ---------------------------------------------------------------------------- */

static void backup_work(uv_work_t *req)
{
    adminwork_t *w = req->data;
    cvx_store_t *st = w->st;
    char path[4200];
    struct stat sb;
    if (stat(w->dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        w->status = CVX_ENOTFOUND;
        add_line(w, "backup: %s is not a directory", w->dir);
        return;
    }
    snprintf(path, sizeof(path), "%s/data.mdb", w->dir);
    if (stat(path, &sb) == 0) {
        w->status = CVX_EEXIST;
        add_line(w, "backup: %s exists already; give an empty directory", path);
        return;
    }
    /* The copy runs in a read transaction: hold the map lock like any reader. */
    pthread_rwlock_rdlock(&st->maplock);
    int rc = mdb_env_copy2(st->env, w->dir, MDB_CP_COMPACT);
    pthread_rwlock_unlock(&st->maplock);
    w->status = store__mdb_err(rc);
    if (rc != 0)
        add_line(w, "backup: copy to %s failed: %s", w->dir, mdb_strerror(rc));
    else if (stat(path, &sb) == 0)
        add_line(w, "backup: %s written (%llu bytes)", path, (unsigned long long)sb.st_size);
}

int cvx_store_backup(cvx_store_t *st, const char *dir, cvx_store_done_cb cb, void *arg)
{
    if (st != NULL && st->remote != NULL)
        return CVX_ENOTSUP; /* administration runs on the system server */
    if (st == NULL || st->closing)
        return CVX_EUNAVAIL;
    if (dir == NULL || dir[0] == '\0' || strlen(dir) >= 4096 || cb == NULL)
        return CVX_EINVAL;
    adminwork_t *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return CVX_ENOMEM;
    store__copy(w->dir, dir, sizeof(w->dir));
    w->done = cb;
    w->arg = arg;
    return admin_start(st, w, backup_work);
}

/* --- verify -------------------------------------------------------------------------------- */

typedef struct ref {
    uint8_t sha[32];
} ref_t;

static int cmp_ref(const void *a, const void *b)
{
    return memcmp(a, b, 32);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Collects the SHA-256 of every message's and greeting's audio. */
static int collect_refs(cvx_store_t *st, MDB_txn *txn, ref_t **out, size_t *n)
{
    size_t cap = 0;
    *out = NULL;
    *n = 0;
    for (int db = DB_MESSAGES; db != -1; db = db == DB_MESSAGES ? DB_GREETINGS : -1) {
        MDB_cursor *c;
        if (mdb_cursor_open(txn, st->dbi[db], &c) != 0)
            return CVX_EIO;
        MDB_val k, v;
        for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
            uint8_t sha[32];
            if (db == DB_MESSAGES) {
                cvx_message_t m;
                if (store__decode(REC_MESSAGE, v.mv_data, v.mv_size, &m) != 0)
                    continue;
                memcpy(sha, m.sha256, 32);
            } else {
                greetrec_t g;
                if (store__decode(REC_GREETING, v.mv_data, v.mv_size, &g) != 0)
                    continue;
                memcpy(sha, g.sha256, 32);
            }
            if (*n == cap) {
                cap = cap ? cap * 2 : 1024;
                ref_t *p = realloc(*out, cap * sizeof(*p));
                if (p == NULL) {
                    mdb_cursor_close(c);
                    return CVX_ENOMEM;
                }
                *out = p;
            }
            memcpy((*out)[(*n)++].sha, sha, 32);
        }
        mdb_cursor_close(c);
    }
    if (*n > 1)
        qsort(*out, *n, sizeof(ref_t), cmp_ref);
    return 0;
}

static void verify_work(uv_work_t *req)
{
    adminwork_t *w = req->data;
    cvx_store_t *st = w->st;
    MDB_txn *txn;
    ref_t *refs = NULL;
    size_t nrefs = 0, nsids = 0, capsids = 0;
    uint64_t *sids = NULL;
    unsigned problems = 0;
    w->status = store__read_begin(st, &txn);
    if (w->status != 0)
        return;
    w->status = collect_refs(st, txn, &refs, &nrefs);
    MDB_cursor *c;
    MDB_val k, v;
    if (w->status == 0 && mdb_cursor_open(txn, st->dbi[DB_BLOBS], &c) == 0) {
        for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
            char hex[65];
            store__hex(k.mv_data, k.mv_size == 32 ? 32 : 0, hex);
            blobrec_t b;
            if (k.mv_size != 32 || store__decode(REC_BLOB, v.mv_data, v.mv_size, &b) != 0) {
                add_line(w, "blob %s: unreadable record", hex);
                problems++;
                continue;
            }
            ref_t *lo = nrefs ? bsearch(k.mv_data, refs, nrefs, sizeof(ref_t), cmp_ref) : NULL;
            uint64_t count = 0;
            if (lo != NULL) {
                while (lo > refs && memcmp(lo[-1].sha, k.mv_data, 32) == 0)
                    lo--;
                while (lo + count < refs + nrefs && memcmp(lo[count].sha, k.mv_data, 32) == 0)
                    count++;
            }
            if (count != b.refs) {
                add_line(w, "blob %s: reference count %llu, but %llu references", hex,
                         (unsigned long long)b.refs, (unsigned long long)count);
                problems++;
            }
            if (store__check_blob(st, txn, k.mv_data, &b) != 0) {
                add_line(w, "blob %s: audio fails its SHA-256 check", hex);
                problems++;
            }
            if (nsids == capsids) {
                capsids = capsids ? capsids * 2 : 1024;
                uint64_t *p = realloc(sids, capsids * sizeof(*p));
                if (p == NULL)
                    break;
                sids = p;
            }
            sids[nsids++] = b.sid;
        }
        mdb_cursor_close(c);
    }
    /* Every reference must name a blob. */
    for (size_t i = 0; i < nrefs; i++) {
        if (i > 0 && memcmp(refs[i].sha, refs[i - 1].sha, 32) == 0)
            continue;
        MDB_val bk = {32, refs[i].sha}, bv;
        if (mdb_get(txn, st->dbi[DB_BLOBS], &bk, &bv) != 0) {
            char hex[65];
            store__hex(refs[i].sha, 32, hex);
            add_line(w, "audio %s is referenced but not stored", hex);
            problems++;
        }
    }
    /* Chunks belong to a blob or to a recording in progress. */
    if (w->status == 0 && mdb_cursor_open(txn, st->dbi[DB_STREAMS], &c) == 0) {
        for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
            if (nsids == capsids) {
                capsids = capsids ? capsids * 2 : 1024;
                uint64_t *p = realloc(sids, capsids * sizeof(*p));
                if (p == NULL)
                    break;
                sids = p;
            }
            if (k.mv_size == 8)
                sids[nsids++] = store__get_be64(k.mv_data);
        }
        mdb_cursor_close(c);
    }
    if (nsids > 1)
        qsort(sids, nsids, sizeof(uint64_t), cmp_u64);
    if (w->status == 0 && mdb_cursor_open(txn, st->dbi[DB_CHUNKS], &c) == 0) {
        int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
        while (rc == 0) {
            if (k.mv_size != 12) {
                rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
                continue;
            }
            uint64_t sid = store__get_be64(k.mv_data);
            if (nsids == 0 || bsearch(&sid, sids, nsids, sizeof(uint64_t), cmp_u64) == NULL) {
                add_line(w, "chunks of storage id %llu belong to no blob", (unsigned long long)sid);
                problems++;
            }
            uint8_t next[12];
            store__be64(next, sid + 1);
            store__be32(next + 8, 0);
            k.mv_size = 12;
            k.mv_data = next;
            rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
        }
        mdb_cursor_close(c);
    }
    store__read_end(st, txn);
    free(refs);
    free(sids);
    if (w->status == 0)
        w->status = (int)problems;
}

int cvx_store_verify(cvx_store_t *st, cvx_store_line_fn line, cvx_store_done_cb cb, void *arg)
{
    if (st != NULL && st->remote != NULL)
        return CVX_ENOTSUP; /* administration runs on the system server */
    if (st == NULL || st->closing)
        return CVX_EUNAVAIL;
    if (cb == NULL)
        return CVX_EINVAL;
    adminwork_t *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return CVX_ENOMEM;
    w->done = cb;
    w->line = line;
    w->arg = arg;
    return admin_start(st, w, verify_work);
}
