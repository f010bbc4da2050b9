/*
 * The system server's side of the store's service interface: each request from a call server
 * is decoded, run against the local store, and its result encoded into the reply.  Streams
 * (deposits, greetings) and audio readers a call server opens are kept here under the handle
 * the call server chose, per call server, and are aborted or closed when it goes away.
 *
 * MWI changes (the store's MWI watch) are pushed to every call server; every committed change
 * to a mailbox's record, greetings or name bumps the cache version and is pushed as a
 * CacheChange, so call servers drop what they cached of that mailbox.
 */
#include <stdlib.h>
#include <string.h>

#include "cvx/log.h"
#include "remote.h"
#include "store.pb-c.h"
#include "store_impl.h"

/* A stream or reader a call server holds open. */
typedef struct sobj sobj_t;
struct sobj {
    sobj_t *next;
    store_server_t *srv;
    char peer[128];
    uint64_t handle;
    cvx_store_stream_t *stream;
    cvx_store_reader_t *reader;
    void *pending;  /* the request waiting for the reader (open or next) */
    int append_err; /* a failed append: the commit reports it */
    int committing; /* the stream's commit is with the store: its callback frees this */
    int unlinked;   /* no longer in srv->objs (its call server went away meanwhile) */
};

struct store_server {
    cvx_store_t *st;
    store_server_io_t io;
    sobj_t *objs;
    uint64_t version; /* bumped by every change a call server may have cached */
    unsigned pending; /* store callbacks not yet run (they hold srv) */
    int destroyed;
};

/* A request waiting for the store. */
typedef struct sreq {
    store_server_t *srv;
    void *req;
    sobj_t *obj;
} sreq_t;

static void answer(store_server_t *srv, void *req, int status, Cvxstore__Reply *r)
{
    Cvxstore__Reply empty = CVXSTORE__REPLY__INIT;
    if (r == NULL)
        r = &empty;
    r->version = srv->version;
    size_t n = cvxstore__reply__get_packed_size(r);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL) {
        srv->io.reply(srv->io.ctx, req, CVX_ENOMEM, NULL, 0);
        return;
    }
    cvxstore__reply__pack(r, buf);
    srv->io.reply(srv->io.ctx, req, status, buf, n);
    free(buf);
}

static sreq_t *sreq_new(store_server_t *srv, void *req)
{
    sreq_t *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return NULL;
    q->srv = srv;
    q->req = req;
    srv->pending++;
    return q;
}

static void maybe_free(store_server_t *srv)
{
    if (srv->destroyed && srv->pending == 0)
        free(srv);
}

/* Ends a store callback (frees q); the server stays allocated until maybe_free(). */
static store_server_t *sreq_end(sreq_t *q)
{
    store_server_t *srv = q->srv;
    free(q);
    srv->pending--;
    return srv;
}

static sobj_t *find_obj(store_server_t *srv, const char *peer, uint64_t handle)
{
    for (sobj_t *o = srv->objs; o != NULL; o = o->next)
        if (o->handle == handle && strcmp(o->peer, peer) == 0)
            return o;
    return NULL;
}

static void unlink_obj(store_server_t *srv, sobj_t *o)
{
    for (sobj_t **pp = &srv->objs; *pp != NULL; pp = &(*pp)->next)
        if (*pp == o) {
            *pp = o->next;
            break;
        }
    o->unlinked = 1;
}

static void drop_obj(store_server_t *srv, sobj_t *o)
{
    if (!o->unlinked)
        unlink_obj(srv, o);
    free(o);
}

/* The call server is gone (or the service stops): a stream being recorded is aborted; one
 * being committed finishes (its callback frees it); a reader is closed. */
static void forget_obj(store_server_t *srv, sobj_t *o);

static sobj_t *new_obj(store_server_t *srv, const char *peer, uint64_t handle)
{
    sobj_t *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return NULL;
    o->srv = srv;
    store__copy(o->peer, peer, sizeof(o->peer));
    o->handle = handle;
    o->next = srv->objs;
    srv->objs = o;
    return o;
}

/* --- callbacks ------------------------------------------------------------------------------ */

static void done_cb(void *arg, int status)
{
    sreq_t *q = arg;
    void *req = q->req;
    store_server_t *srv = sreq_end(q);
    answer(srv, req, status, NULL);
    maybe_free(srv);
}

static void mailbox_cb(void *arg, int status, const cvx_mailbox_t *mb)
{
    sreq_t *q = arg;
    void *req = q->req;
    store_server_t *srv = sreq_end(q);
    Cvxstore__Reply r = CVXSTORE__REPLY__INIT;
    Cvxstore__Mailbox pm, *pms[1] = {&pm};
    if (status == 0 && mb != NULL) {
        store__pb_from_mailbox(&pm, mb);
        r.mailboxes = pms;
        r.n_mailboxes = 1;
    }
    answer(srv, req, status, &r);
    maybe_free(srv);
}

static void mailboxes_cb(void *arg, int status, const cvx_mailbox_t *mbs, size_t n)
{
    sreq_t *q = arg;
    void *req = q->req;
    store_server_t *srv = sreq_end(q);
    Cvxstore__Reply r = CVXSTORE__REPLY__INIT;
    Cvxstore__Mailbox *pm = status == 0 && n > 0 ? calloc(n, sizeof(*pm)) : NULL;
    Cvxstore__Mailbox **pp = pm != NULL ? calloc(n, sizeof(*pp)) : NULL;
    if (pp != NULL) {
        for (size_t i = 0; i < n; i++) {
            store__pb_from_mailbox(&pm[i], &mbs[i]);
            pp[i] = &pm[i];
        }
        r.mailboxes = pp;
        r.n_mailboxes = n;
    } else if (status == 0 && n > 0) {
        status = CVX_ENOMEM;
    }
    answer(srv, req, status, &r);
    free(pp);
    free(pm);
    maybe_free(srv);
}

static void pin_cb(void *arg, int status, const cvx_pin_result_t *pr)
{
    sreq_t *q = arg;
    void *req = q->req;
    store_server_t *srv = sreq_end(q);
    Cvxstore__Reply r = CVXSTORE__REPLY__INIT;
    Cvxstore__PinResult p = CVXSTORE__PIN_RESULT__INIT;
    if (status == 0 && pr != NULL) {
        p.verdict = pr->verdict;
        p.attempts_left = pr->attempts_left;
        p.locked_until_ms = pr->locked_until_ms;
        r.pin = &p;
    }
    answer(srv, req, status, &r);
    maybe_free(srv);
}

static void commit_cb(void *arg, int status, const cvx_deposit_result_t *res)
{
    sreq_t *q = arg;
    void *req = q->req;
    sobj_t *o = q->obj;
    store_server_t *srv = sreq_end(q);
    if (o != NULL)
        drop_obj(srv, o); /* the store frees the stream after this callback */
    Cvxstore__Reply r = CVXSTORE__REPLY__INIT;
    Cvxstore__DepositResult d = CVXSTORE__DEPOSIT_RESULT__INIT;
    if (status == 0 && res != NULL) {
        d.id = (char *)res->id;
        d.duplicate = res->duplicate != 0;
        d.shared_audio = res->shared_audio != 0;
        d.bytes = res->bytes;
        d.sha256.data = (uint8_t *)res->sha256;
        d.sha256.len = sizeof(res->sha256);
        r.deposit = &d;
    }
    answer(srv, req, status, &r);
    maybe_free(srv);
}

static void list_cb(void *arg, int status, const cvx_message_t *msgs, size_t n)
{
    sreq_t *q = arg;
    void *req = q->req;
    store_server_t *srv = sreq_end(q);
    Cvxstore__Reply r = CVXSTORE__REPLY__INIT;
    Cvxstore__Message *pm = status == 0 && n > 0 ? calloc(n, sizeof(*pm)) : NULL;
    Cvxstore__Message **pp = pm != NULL ? calloc(n, sizeof(*pp)) : NULL;
    if (pp != NULL) {
        for (size_t i = 0; i < n; i++) {
            store__pb_from_message(&pm[i], &msgs[i]);
            pp[i] = &pm[i];
        }
        r.messages = pp;
        r.n_messages = n;
    } else if (status == 0 && n > 0) {
        status = CVX_ENOMEM;
    }
    answer(srv, req, status, &r);
    free(pp);
    free(pm);
    maybe_free(srv);
}

static void message_cb(void *arg, int status, const cvx_message_t *msg)
{
    list_cb(arg, status, msg, status == 0 && msg != NULL ? 1 : 0);
}

static void dir_cb(void *arg, int status, const cvx_dir_entry_t *e, size_t n)
{
    sreq_t *q = arg;
    void *req = q->req;
    store_server_t *srv = sreq_end(q);
    Cvxstore__Reply r = CVXSTORE__REPLY__INIT;
    Cvxstore__DirEntry *pe = status == 0 && n > 0 ? calloc(n, sizeof(*pe)) : NULL;
    Cvxstore__DirEntry **pp = pe != NULL ? calloc(n, sizeof(*pp)) : NULL;
    if (pp != NULL) {
        for (size_t i = 0; i < n; i++) {
            store__pb_from_dir(&pe[i], &e[i]);
            pp[i] = &pe[i];
        }
        r.entries = pp;
        r.n_entries = n;
    } else if (status == 0 && n > 0) {
        status = CVX_ENOMEM;
    }
    answer(srv, req, status, &r);
    free(pp);
    free(pe);
    maybe_free(srv);
}

static void mwi_cb(void *arg, int status, const cvx_mwi_t *mwi)
{
    sreq_t *q = arg;
    void *req = q->req;
    store_server_t *srv = sreq_end(q);
    Cvxstore__Reply r = CVXSTORE__REPLY__INIT;
    Cvxstore__Mwi pm;
    if (status == 0 && mwi != NULL) {
        store__pb_from_mwi(&pm, mwi);
        r.mwi = &pm;
    }
    answer(srv, req, status, &r);
    maybe_free(srv);
}

static void setting_cb(void *arg, int status, const void *value, size_t len)
{
    sreq_t *q = arg;
    void *req = q->req;
    store_server_t *srv = sreq_end(q);
    Cvxstore__Reply r = CVXSTORE__REPLY__INIT;
    if (status == 0) {
        r.value.data = (uint8_t *)value;
        r.value.len = len;
    }
    answer(srv, req, status, &r);
    maybe_free(srv);
}

/* --- audio readers -------------------------------------------------------------------------- */

static void audio_open_cb(void *arg, int status, const cvx_audio_info_t *info)
{
    sobj_t *o = arg;
    store_server_t *srv = o->srv;
    void *req = o->pending;
    o->pending = NULL;
    Cvxstore__Reply r = CVXSTORE__REPLY__INIT;
    Cvxstore__AudioInfo ai = CVXSTORE__AUDIO_INFO__INIT;
    if (status == 0 && info != NULL) {
        ai.codec = info->codec;
        ai.rate = info->rate;
        ai.bytes = info->bytes;
        ai.chunks = info->chunks;
        r.audio = &ai;
    } else {
        /* The call server closes its reader after a failed open; this side forgets it now. */
        cvx_store_audio_close(o->reader);
        drop_obj(srv, o);
    }
    answer(srv, req, status, &r);
}

static void audio_chunk_cb(void *arg, int status, const void *data, size_t len)
{
    sobj_t *o = arg;
    void *req = o->pending;
    o->pending = NULL;
    Cvxstore__Reply r = CVXSTORE__REPLY__INIT;
    if (status == 0) {
        r.data.data = (uint8_t *)data;
        r.data.len = len;
    }
    answer(o->srv, req, status, &r);
}

/* Closes a reader and answers the request it was serving (the store drops its callback). */
static void close_reader(store_server_t *srv, sobj_t *o)
{
    cvx_store_audio_close(o->reader);
    if (o->pending != NULL)
        srv->io.reply(srv->io.ctx, o->pending, CVX_ECLOSED, NULL, 0);
    drop_obj(srv, o);
}

/* --- dispatch ------------------------------------------------------------------------------- */

#define NEWQ()                                                                                     \
    do {                                                                                           \
        q = sreq_new(srv, req);                                                                    \
        if (q == NULL) {                                                                           \
            rc = CVX_ENOMEM;                                                                       \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

static int stream_open(store_server_t *srv, const char *peer, const Cvxstore__Request *rq,
                       int greeting)
{
    if (find_obj(srv, peer, rq->handle) != NULL)
        return CVX_EEXIST;
    sobj_t *o = new_obj(srv, peer, rq->handle);
    if (o == NULL)
        return CVX_ENOMEM;
    int rc;
    if (greeting) {
        rc = cvx_store_greeting_open(srv->st, rq->number, (cvx_greeting_t)rq->kind,
                                     (uint8_t)rq->codec, rq->rate, rq->expires_ms, rq->flags,
                                     &o->stream);
    } else {
        cvx_message_t m;
        store__pb_to_message(rq->message, &m);
        rc = cvx_store_deposit_open(srv->st, &m, &o->stream);
    }
    if (rc != 0)
        drop_obj(srv, o);
    return rc;
}

static void dispatch(store_server_t *srv, void *req, const char *peer, unsigned op,
                     const Cvxstore__Request *rq)
{
    cvx_store_t *st = srv->st;
    sreq_t *q = NULL;
    sobj_t *o;
    int rc;
    switch (op) {
    case RM_MAILBOX_GET:
        NEWQ();
        rc = cvx_store_mailbox_get(st, rq->number, mailbox_cb, q);
        break;
    case RM_MAILBOX_LIST:
        NEWQ();
        rc = cvx_store_mailbox_list(st, rq->after, rq->max, mailboxes_cb, q);
        break;
    case RM_MAILBOX_PUT: {
        cvx_mailbox_t mb;
        store__pb_to_mailbox(rq->mailbox, &mb);
        NEWQ();
        rc = cvx_store_mailbox_put(st, &mb, rq->mode, done_cb, q);
        break;
    }
    case RM_MAILBOX_DEL:
        NEWQ();
        rc = cvx_store_mailbox_del(st, rq->number, done_cb, q);
        break;
    case RM_UNLOCK:
        NEWQ();
        rc = cvx_store_mailbox_unlock(st, rq->number, done_cb, q);
        break;
    case RM_PIN_SET:
        NEWQ();
        rc = cvx_store_pin_set(st, rq->number, rq->pin, done_cb, q);
        break;
    case RM_PIN_CHECK:
        NEWQ();
        rc = cvx_store_pin_check(st, rq->number, rq->pin, pin_cb, q);
        break;
    case RM_DEPOSIT_OPEN:
    case RM_GREETING_OPEN:
        rc = stream_open(srv, peer, rq, op == RM_GREETING_OPEN);
        if (rc == 0)
            answer(srv, req, 0, NULL);
        break;
    case RM_APPEND:
        o = find_obj(srv, peer, rq->handle);
        if (o == NULL || o->stream == NULL) {
            rc = CVX_ESTATE; /* not CVX_ENOTFOUND, which says "no such mailbox" */
            break;
        }
        rc = cvx_store_stream_append(o->stream, rq->data.data, rq->data.len);
        if (rc != 0 && o->append_err == 0)
            o->append_err = rc;
        answer(srv, req, rc, NULL);
        rc = 0;
        break;
    case RM_COMMIT:
        o = find_obj(srv, peer, rq->handle);
        if (o == NULL || o->stream == NULL) {
            rc = CVX_ESTATE; /* not CVX_ENOTFOUND, which says "no such mailbox" */
            break;
        }
        if (o->append_err != 0) {
            /* Part of the audio is missing: the call server must not count it saved. */
            rc = o->append_err;
            cvx_store_stream_abort(o->stream);
            drop_obj(srv, o);
            break;
        }
        NEWQ();
        q->obj = o;
        o->committing = 1;
        rc = cvx_store_stream_commit(o->stream, rq->duration_ms, commit_cb, q);
        if (rc != 0)
            drop_obj(srv, o); /* the store freed the stream */
        break;
    case RM_ABORT:
        o = find_obj(srv, peer, rq->handle);
        /* An abort after a commit (the call server gave up waiting) leaves the commit be. */
        if (o != NULL && o->stream != NULL && !o->committing) {
            cvx_store_stream_abort(o->stream);
            drop_obj(srv, o);
        }
        answer(srv, req, 0, NULL);
        rc = 0;
        break;
    case RM_MSG_LIST:
        NEWQ();
        rc = cvx_store_message_list(st, rq->number, rq->folder, list_cb, q);
        break;
    case RM_MSG_GET:
        NEWQ();
        rc = cvx_store_message_get(st, rq->id, message_cb, q);
        break;
    case RM_MSG_MOVE:
        NEWQ();
        rc = cvx_store_message_move(st, rq->id, (cvx_folder_t)rq->folder, done_cb, q);
        break;
    case RM_MSG_PURGE:
        NEWQ();
        rc = cvx_store_message_purge(st, rq->id, done_cb, q);
        break;
    case RM_MSG_COPY:
        NEWQ();
        rc = cvx_store_message_copy(st, rq->id, rq->id2, rq->number, commit_cb, q);
        break;
    case RM_GREETING_DEL:
        NEWQ();
        rc = cvx_store_greeting_del(st, rq->number, (cvx_greeting_t)rq->kind, done_cb, q);
        break;
    case RM_AUDIO_OPEN: {
        if (find_obj(srv, peer, rq->handle) != NULL) {
            rc = CVX_EEXIST;
            break;
        }
        cvx_audio_ref_t ref;
        memset(&ref, 0, sizeof(ref));
        ref.is_greeting = rq->is_greeting;
        store__copy(ref.id, rq->id, sizeof(ref.id));
        store__copy(ref.mailbox, rq->number, sizeof(ref.mailbox));
        ref.greeting = (cvx_greeting_t)rq->kind;
        o = new_obj(srv, peer, rq->handle);
        if (o == NULL) {
            rc = CVX_ENOMEM;
            break;
        }
        o->pending = req;
        rc = cvx_store_audio_open(st, &ref, audio_open_cb, o, &o->reader);
        if (rc != 0)
            drop_obj(srv, o);
        break;
    }
    case RM_AUDIO_NEXT:
        o = find_obj(srv, peer, rq->handle);
        if (o == NULL || o->reader == NULL) {
            rc = CVX_ENOTFOUND;
            break;
        }
        if (o->pending != NULL) {
            rc = CVX_EBUSY;
            break;
        }
        o->pending = req;
        rc = cvx_store_audio_next(o->reader, audio_chunk_cb, o);
        if (rc != 0)
            o->pending = NULL;
        break;
    case RM_AUDIO_CLOSE:
        o = find_obj(srv, peer, rq->handle);
        if (o != NULL && o->reader != NULL)
            close_reader(srv, o);
        answer(srv, req, 0, NULL);
        rc = 0;
        break;
    case RM_DIR_SEARCH:
        NEWQ();
        rc = cvx_store_dir_search(st, rq->digits, rq->max, dir_cb, q);
        break;
    case RM_MWI_GET:
        NEWQ();
        rc = cvx_store_mwi_get(st, rq->number, mwi_cb, q);
        break;
    case RM_MWI_REPORT:
        NEWQ();
        rc = cvx_store_mwi_report(st, rq->number, rq->gen, rq->lamp, rq->ok, done_cb, q);
        break;
    case RM_SETTING_GET:
        NEWQ();
        rc = cvx_store_setting_get(st, rq->key, setting_cb, q);
        break;
    case RM_SETTING_PUT:
        NEWQ();
        rc = cvx_store_setting_put(st, rq->key, rq->value.data, rq->value.len, done_cb, q);
        break;
    case RM_VERSION:
        answer(srv, req, 0, NULL);
        rc = 0;
        break;
    default:
        rc = CVX_ENOTSUP;
        break;
    }
out:
    if (rc != 0) {
        /* A function that returns an error never calls its callback. */
        if (q != NULL) {
            sreq_end(q);
        }
        answer(srv, req, rc, NULL);
    }
}

void cvx__store_server_method(store_server_t *srv, void *req, const char *peer, uint32_t method,
                              const uint8_t *body, size_t len)
{
    if (srv == NULL || srv->destroyed) {
        if (srv != NULL)
            srv->io.reply(srv->io.ctx, req, CVX_EUNAVAIL, NULL, 0);
        return;
    }
    Cvxstore__Request *rq = cvxstore__request__unpack(NULL, len, body);
    if (rq == NULL) {
        cvx_warn("store service: call server %s sent a request that does not decode (method "
                 "0x%08x, %zu bytes): refused",
                 peer, (unsigned)method, len);
        srv->io.reply(srv->io.ctx, req, CVX_EPROTO, NULL, 0);
        return;
    }
    dispatch(srv, req, peer, method & 0xffff, rq);
    cvxstore__request__free_unpacked(rq, NULL);
}

void cvx__store_server_push(store_server_t *srv, const char *peer, uint32_t method,
                            const uint8_t *body, size_t len)
{
    (void)srv;
    (void)body;
    (void)len;
    cvx_debug("store service: push 0x%08x from %s ignored", (unsigned)method, peer);
}

void cvx__store_server_peer_down(store_server_t *srv, const char *peer)
{
    if (srv == NULL)
        return;
    sobj_t *o = srv->objs;
    while (o != NULL) {
        sobj_t *next = o->next;
        if (strcmp(o->peer, peer) == 0) {
            if (o->stream != NULL && !o->committing)
                cvx_info("store service: call server %s went away while recording: its "
                         "recording is dropped (the call server spools it)",
                         peer);
            forget_obj(srv, o);
        }
        o = next;
    }
}

static void forget_obj(store_server_t *srv, sobj_t *o)
{
    if (o->stream != NULL && o->committing) {
        unlink_obj(srv, o); /* the commit goes on; its answer is dropped by the link */
    } else if (o->stream != NULL) {
        cvx_store_stream_abort(o->stream);
        drop_obj(srv, o);
    } else {
        close_reader(srv, o);
    }
}

/* --- pushes --------------------------------------------------------------------------------- */

static void push_pb_mwi(store_server_t *srv, const cvx_mwi_t *mwi)
{
    Cvxstore__Mwi pm;
    store__pb_from_mwi(&pm, mwi);
    uint8_t buf[512];
    size_t n = cvxstore__mwi__get_packed_size(&pm);
    if (n > sizeof(buf))
        return;
    cvxstore__mwi__pack(&pm, buf);
    srv->io.push_all(srv->io.ctx, RM_PUSH_MWI, buf, n);
}

static void on_mwi(void *arg, const cvx_mwi_t *mwi)
{
    push_pb_mwi(arg, mwi);
}

static void on_change(void *arg, const char *number)
{
    store_server_t *srv = arg;
    srv->version++;
    Cvxstore__CacheChange c = CVXSTORE__CACHE_CHANGE__INIT;
    c.version = srv->version;
    c.number = (char *)number;
    uint8_t buf[128];
    size_t n = cvxstore__cache_change__get_packed_size(&c);
    if (n > sizeof(buf))
        return;
    cvxstore__cache_change__pack(&c, buf);
    srv->io.push_all(srv->io.ctx, RM_PUSH_CACHE, buf, n);
}

store_server_t *cvx__store_server_create(cvx_store_t *st, const store_server_io_t *io)
{
    store_server_t *srv = calloc(1, sizeof(*srv));
    if (srv == NULL)
        return NULL;
    srv->st = st;
    srv->io = *io;
    srv->version = 1;
    st->mwi_link_fn = on_mwi;
    st->change_fn = on_change;
    st->change_arg = srv;
    return srv;
}

void cvx__store_server_destroy(store_server_t *srv)
{
    if (srv == NULL)
        return;
    while (srv->objs != NULL)
        forget_obj(srv, srv->objs);
    if (srv->st->change_arg == srv) {
        srv->st->change_fn = NULL;
        srv->st->mwi_link_fn = NULL;
        srv->st->change_arg = NULL;
    }
    srv->destroyed = 1;
    maybe_free(srv);
}
