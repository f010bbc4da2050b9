/*
 * Playback: audio read on the thread pool.
 *
 * Opening a recording reads all of its chunks once on the thread pool and checks their
 * SHA-256 against the blob's name, so corrupt audio is found before a caller hears any of it
 * (and the pages are warm afterwards).  Chunks are then copied out a window at a time, also on
 * the thread pool, ahead of the flow's requests: the loop never touches a cold page.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cvx/log.h"
#include "store_impl.h"

typedef struct chunk {
    struct chunk *next;
    size_t len;
    uint8_t data[];
} chunk_t;

struct cvx_store_reader {
    cvx_store_t *st;
    uv_work_t req;
    int busy;       /* a thread-pool job is in flight */
    int job_posted; /* a delivery is queued on the loop */
    int closed;
    int opened;
    int status; /* of the open, then of the last fetch */
    cvx_audio_ref_t ref;
    cvx_audio_info_t info;
    blobrec_t blob;
    uint8_t sha[32];
    cvx_store_audio_cb open_cb;
    void *open_arg;
    chunk_t *head, *tail; /* read ahead, not yet delivered */
    unsigned nready;
    uint32_t fetch_next;    /* next chunk index to read */
    chunk_t *fhead, *ftail; /* the running fetch's result */
    int fstatus;
    cvx_store_chunk_cb want_cb; /* the pending request */
    void *want_arg;
    cvx_async_job_t job;
};

/* Reads chunks [first, first + count) of sid into a list; hashes them into hs if not NULL.
 * Returns 0 or CVX_E*; *got is the number of chunks read. */
static int read_chunks(cvx_store_t *st, MDB_txn *txn, uint64_t sid, uint32_t first, uint32_t count,
                       crypto_hash_sha256_state *hs, chunk_t **head, chunk_t **tail, uint32_t *got,
                       uint64_t *bytes)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, st->dbi[DB_CHUNKS], &c);
    if (rc != 0)
        return store__mdb_err(rc);
    uint8_t key[12];
    store__be64(key, sid);
    store__be32(key + 8, first);
    MDB_val k = {12, key}, v;
    *got = 0;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0 && *got < count;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        if (k.mv_size != 12 || memcmp(k.mv_data, key, 8) != 0 ||
            store__get_be32((uint8_t *)k.mv_data + 8) != first + *got)
            break;
        if (hs != NULL)
            crypto_hash_sha256_update(hs, v.mv_data, v.mv_size);
        if (bytes != NULL)
            *bytes += v.mv_size;
        if (head != NULL) {
            chunk_t *ch = malloc(sizeof(*ch) + v.mv_size);
            if (ch == NULL) {
                mdb_cursor_close(c);
                return CVX_ENOMEM;
            }
            ch->next = NULL;
            ch->len = v.mv_size;
            memcpy(ch->data, v.mv_data, v.mv_size);
            if (*tail != NULL)
                (*tail)->next = ch;
            else
                *head = ch;
            *tail = ch;
        }
        (*got)++;
    }
    mdb_cursor_close(c);
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : store__mdb_err(rc);
}

/* Checks a blob's chunks against its SHA-256.  Returns 0, CVX_ECORRUPT or CVX_E*. */
static int check_blob(cvx_store_t *st, MDB_txn *txn, const uint8_t sha[32], const blobrec_t *b)
{
    crypto_hash_sha256_state hs;
    crypto_hash_sha256_init(&hs);
    uint32_t got;
    uint64_t bytes = 0;
    int rc = read_chunks(st, txn, b->sid, 0, b->chunks, &hs, NULL, NULL, &got, &bytes);
    if (rc != 0)
        return rc;
    uint8_t h[32];
    crypto_hash_sha256_final(&hs, h);
    if (got != b->chunks || bytes != b->bytes || memcmp(h, sha, 32) != 0)
        return CVX_ECORRUPT;
    return 0;
}

static void free_chunks(chunk_t *c)
{
    while (c != NULL) {
        chunk_t *next = c->next;
        free(c);
        c = next;
    }
}

static void reader_free(cvx_store_reader_t *r)
{
    free_chunks(r->head);
    free_chunks(r->fhead);
    free(r);
}

static void describe(const cvx_audio_ref_t *ref, char *buf, size_t size)
{
    if (ref->is_greeting)
        snprintf(buf, size, "%s greeting of mailbox %s", cvx_greeting_name(ref->greeting),
                 ref->mailbox);
    else
        snprintf(buf, size, "message %s", ref->id);
}

/* --- open ------------------------------------------------------------------------------ */

static void open_work(uv_work_t *req)
{
    cvx_store_reader_t *r = req->data;
    MDB_txn *txn;
    r->status = store__read_begin(r->st, &txn);
    if (r->status != 0)
        return;
    r->status = store__resolve_audio(r->st, txn, &r->ref, r->sha, &r->blob);
    if (r->status == 0)
        r->status = check_blob(r->st, txn, r->sha, &r->blob);
    store__read_end(r->st, txn);
}

static void fetch_start(cvx_store_reader_t *r);
static void deliver_post(cvx_store_reader_t *r);

static void open_after(uv_work_t *req, int uvstatus)
{
    cvx_store_reader_t *r = req->data;
    cvx_store_t *st = r->st;
    r->busy = 0;
    if (uvstatus != 0 && r->status == 0)
        r->status = CVX_EUNAVAIL;
    if (r->status == CVX_ECORRUPT) {
        char what[160], hex[65];
        describe(&r->ref, what, sizeof(what));
        store__hex(r->sha, 32, hex);
        cvx_error("message store: %s: audio %s fails its SHA-256 check; skipped", what, hex);
    }
    if (r->closed) {
        reader_free(r);
    } else {
        r->opened = r->status == 0;
        r->info.codec = r->blob.codec;
        r->info.rate = r->blob.rate;
        r->info.bytes = r->blob.bytes;
        r->info.chunks = r->blob.chunks;
        if (r->opened)
            fetch_start(r);
        r->open_cb(r->open_arg, r->status, r->status == 0 ? &r->info : NULL);
    }
    store__pool_end(st);
}

int cvx_store_audio_open(cvx_store_t *st, const cvx_audio_ref_t *ref, cvx_store_audio_cb cb,
                         void *arg, cvx_store_reader_t **out)
{
    if (st != NULL && st->remote != NULL)
        return store__r_audio_open(st, ref, cb, arg, out);
    if (st == NULL || st->closing)
        return CVX_EUNAVAIL;
    if (ref == NULL || cb == NULL || out == NULL ||
        (ref->is_greeting ? !cvx_store_valid_number(ref->mailbox) ||
                                (unsigned)ref->greeting >= CVX_GREETING_COUNT
                          : !cvx_store_valid_id(ref->id)))
        return CVX_EINVAL;
    cvx_store_reader_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return CVX_ENOMEM;
    r->st = st;
    r->ref = *ref;
    r->open_cb = cb;
    r->open_arg = arg;
    r->req.data = r;
    if (uv_queue_work(st->loop, &r->req, open_work, open_after) != 0) {
        free(r);
        return CVX_EIO;
    }
    r->busy = 1;
    store__pool_begin(st);
    *out = r;
    return 0;
}

/* --- read-ahead --------------------------------------------------------------------------- */

static void fetch_work(uv_work_t *req)
{
    cvx_store_reader_t *r = req->data;
    MDB_txn *txn;
    uint32_t got = 0;
    r->fstatus = store__read_begin(r->st, &txn);
    if (r->fstatus != 0)
        return;
    uint32_t want = r->info.chunks - r->fetch_next;
    if (want > r->st->conf.prefetch)
        want = r->st->conf.prefetch;
    r->fstatus = read_chunks(r->st, txn, r->blob.sid, r->fetch_next, want, NULL, &r->fhead,
                             &r->ftail, &got, NULL);
    store__read_end(r->st, txn);
    if (r->fstatus == 0 && got != want)
        r->fstatus = CVX_ECORRUPT; /* the blob lost chunks since it was opened */
}

static void fetch_after(uv_work_t *req, int uvstatus)
{
    cvx_store_reader_t *r = req->data;
    cvx_store_t *st = r->st;
    r->busy = 0;
    if (uvstatus != 0 && r->fstatus == 0)
        r->fstatus = CVX_EUNAVAIL;
    for (chunk_t *c = r->fhead; c != NULL; c = c->next) {
        r->nready++;
        r->fetch_next++;
    }
    if (r->fhead != NULL) {
        if (r->tail != NULL)
            r->tail->next = r->fhead;
        else
            r->head = r->fhead;
        r->tail = r->ftail;
    }
    r->fhead = r->ftail = NULL;
    if (r->fstatus != 0)
        r->status = r->fstatus;
    if (r->closed) {
        if (!r->job_posted)
            reader_free(r);
    } else if (r->want_cb != NULL && !r->job_posted) {
        deliver_post(r);
    } else {
        fetch_start(r);
    }
    store__pool_end(st);
}

/* Starts reading the next window when fewer than half a window is ready. */
static void fetch_start(cvx_store_reader_t *r)
{
    if (r->busy || r->closed || r->status != 0 || r->fetch_next >= r->info.chunks ||
        r->nready > r->st->conf.prefetch / 2)
        return;
    r->req.data = r;
    if (uv_queue_work(r->st->loop, &r->req, fetch_work, fetch_after) != 0) {
        r->status = CVX_EIO;
        return;
    }
    r->busy = 1;
    store__pool_begin(r->st);
}

static void deliver(cvx_async_job_t *job)
{
    cvx_store_reader_t *r = (cvx_store_reader_t *)((char *)job - offsetof(cvx_store_reader_t, job));
    cvx_store_t *st = r->st;
    r->job_posted = 0;
    st->loop_pending--;
    if (r->closed) {
        if (!r->busy)
            reader_free(r);
        store__maybe_closed(st);
        return;
    }
    cvx_store_chunk_cb cb = r->want_cb;
    void *arg = r->want_arg;
    if (r->head != NULL) {
        chunk_t *c = r->head;
        r->head = c->next;
        if (r->head == NULL)
            r->tail = NULL;
        r->nready--;
        r->want_cb = NULL;
        fetch_start(r);
        cb(arg, 0, c->data, c->len);
        free(c);
    } else if (r->status != 0 || r->fetch_next >= r->info.chunks) {
        r->want_cb = NULL;
        cb(arg, r->status, NULL, 0);
    } else {
        fetch_start(r); /* the chunk arrives with the fetch (fetch_after delivers) */
    }
    store__maybe_closed(st);
}

static void deliver_post(cvx_store_reader_t *r)
{
    r->job_posted = 1;
    r->st->loop_pending++;
    cvx_async_queue_post(&r->st->done, &r->job, deliver);
}

int cvx_store_audio_next(cvx_store_reader_t *r, cvx_store_chunk_cb cb, void *arg)
{
    if (r != NULL && r->st->remote != NULL)
        return store__r_audio_next(r, cb, arg);
    if (r == NULL || cb == NULL || r->closed)
        return CVX_EINVAL;
    if (!r->opened)
        return CVX_ESTATE;
    if (r->want_cb != NULL)
        return CVX_EBUSY;
    r->want_cb = cb;
    r->want_arg = arg;
    if (r->head != NULL || !r->busy)
        deliver_post(r);
    return 0;
}

void cvx_store_audio_close(cvx_store_reader_t *r)
{
    if (r != NULL && r->st->remote != NULL) {
        store__r_audio_close(r);
        return;
    }
    if (r == NULL || r->closed)
        return;
    r->closed = 1;
    if (!r->busy && !r->job_posted)
        reader_free(r);
}

/* --- export -------------------------------------------------------------------------------- */

#include <sndfile.h>

typedef struct exportwork {
    uv_work_t req;
    cvx_store_t *st;
    char id[CVX_STORE_ID_MAX];
    char path[4096];
    int status;
    cvx_store_done_cb cb;
    void *arg;
} exportwork_t;

static void export_work(uv_work_t *req)
{
    exportwork_t *w = req->data;
    cvx_store_t *st = w->st;
    MDB_txn *txn;
    cvx_audio_ref_t ref = {0};
    store__copy(ref.id, w->id, sizeof(ref.id));
    uint8_t sha[32];
    blobrec_t b;
    w->status = store__read_begin(st, &txn);
    if (w->status != 0)
        return;
    w->status = store__resolve_audio(st, txn, &ref, sha, &b);
    if (w->status == 0)
        w->status = check_blob(st, txn, sha, &b);
    if (w->status != 0) {
        store__read_end(st, txn);
        return;
    }
    SF_INFO info = {0};
    info.samplerate = (int)b.rate;
    info.channels = 1;
    info.format = SF_FORMAT_WAV | (b.codec == CVX_CODEC_ULAW   ? SF_FORMAT_ULAW
                                   : b.codec == CVX_CODEC_ALAW ? SF_FORMAT_ALAW
                                                               : SF_FORMAT_PCM_16);
    SNDFILE *sf = sf_open(w->path, SFM_WRITE, &info);
    if (sf == NULL) {
        cvx_warn("message store: cannot write %s: %s", w->path, sf_strerror(NULL));
        w->status = CVX_EIO;
        store__read_end(st, txn);
        return;
    }
    MDB_cursor *c;
    if (mdb_cursor_open(txn, st->dbi[DB_CHUNKS], &c) == 0) {
        uint8_t key[12];
        store__be64(key, b.sid);
        store__be32(key + 8, 0);
        MDB_val k = {12, key}, v;
        for (int rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0;
             rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
            if (k.mv_size != 12 || memcmp(k.mv_data, key, 8) != 0)
                break;
            if (sf_write_raw(sf, v.mv_data, (sf_count_t)v.mv_size) != (sf_count_t)v.mv_size) {
                w->status = CVX_EIO;
                break;
            }
        }
        mdb_cursor_close(c);
    }
    store__read_end(st, txn);
    if (sf_close(sf) != 0 && w->status == 0)
        w->status = CVX_EIO;
    if (w->status != 0)
        unlink(w->path);
}

static void export_after(uv_work_t *req, int uvstatus)
{
    exportwork_t *w = req->data;
    cvx_store_t *st = w->st;
    if (uvstatus != 0 && w->status == 0)
        w->status = CVX_EUNAVAIL;
    if (w->status == CVX_ECORRUPT)
        cvx_error("message store: message %s: audio fails its SHA-256 check; not exported", w->id);
    w->cb(w->arg, w->status);
    free(w);
    store__pool_end(st);
}

int cvx_store_message_export(cvx_store_t *st, const char *id, const char *path,
                             cvx_store_done_cb cb, void *arg)
{
    if (st != NULL && st->remote != NULL)
        return CVX_ENOTSUP; /* the system server's shell exports */
    if (st == NULL || st->closing)
        return CVX_EUNAVAIL;
    if (!cvx_store_valid_id(id) || path == NULL || path[0] == '\0' || cb == NULL ||
        strlen(path) >= 4096)
        return CVX_EINVAL;
    exportwork_t *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return CVX_ENOMEM;
    w->st = st;
    store__copy(w->id, id, sizeof(w->id));
    store__copy(w->path, path, sizeof(w->path));
    w->cb = cb;
    w->arg = arg;
    w->req.data = w;
    if (uv_queue_work(st->loop, &w->req, export_work, export_after) != 0) {
        free(w);
        return CVX_EIO;
    }
    store__pool_begin(st);
    return 0;
}

int store__check_blob(cvx_store_t *st, MDB_txn *txn, const uint8_t sha[32], const blobrec_t *b)
{
    return check_blob(st, txn, sha, b);
}
