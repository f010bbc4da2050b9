/*
 * The call server's store: every request of cvx/store.h is sent to the system server over
 * the link and its reply delivered through the same callbacks, with the same errors.  When
 * the link is down a request fails at once with CVX_EUNAVAIL, except for what the call server
 * can answer itself:
 *
 *  - a mailbox lookup falls back on the last record seen of that mailbox (kept in the spool's
 *    environment), so callers can still leave messages; its counts may be old;
 *  - greetings and recorded names, and directory searches, come from the caches.
 *
 * Caches.  Greetings, names and directory results are kept in memory, tagged with the system
 * server's cache version.  The system server pushes a CacheChange (its new version and the
 * mailbox) after every committed change of a mailbox's record, greetings or name; a push
 * whose version is not the next one means a change was missed, and everything is dropped.
 * When the link comes up (after a reconnect or with a new server_epoch) the caches are not
 * used until the system server's current version has been fetched and compared: a different
 * run or version drops them all.  An entry is only added when no change arrived while it
 * was being fetched.  So no missed invalidation leaves stale data once the link is up.
 */
#include <stdlib.h>
#include <string.h>

#include "cvx/log.h"
#include "rmt_impl.h"

store_rmt_t *store__rmt(cvx_store_t *st)
{
    return st != NULL ? st->remote : NULL;
}

int cvx__store_is_remote(const cvx_store_t *st)
{
    return st != NULL && st->remote != NULL;
}

int cvx_store_reachable(const cvx_store_t *st)
{
    if (st == NULL || st->closing)
        return 0;
    if (st->remote == NULL)
        return 1;
    store_rmt_t *rm = st->remote;
    return !rm->closing && rm->link.up(rm->link.ctx);
}

/* --- requests ------------------------------------------------------------------------------ */

static void maybe_closed(store_rmt_t *rm);

void store__rmt_hold(store_rmt_t *rm)
{
    rm->pending++;
}

void store__rmt_release(store_rmt_t *rm)
{
    rm->pending--;
    maybe_closed(rm);
}

typedef struct rpending {
    store_rmt_t *rm;
    rmt_reply_fn cb;
    void *arg;
} rpending_t;

static void on_link_reply(void *arg, int status, const uint8_t *body, size_t len)
{
    rpending_t *p = arg;
    store_rmt_t *rm = p->rm;
    Cvxstore__Reply *r = NULL;
    if (status == 0) {
        r = cvxstore__reply__unpack(NULL, len, body);
        if (r == NULL) {
            cvx_warn("store: the system server's reply does not decode (%zu bytes)", len);
            status = CVX_EPROTO;
        }
    }
    if (p->cb != NULL)
        p->cb(p->arg, status, r);
    if (r != NULL)
        cvxstore__reply__free_unpacked(r, NULL);
    free(p);
    store__rmt_release(rm);
}

int store__rmt_call(store_rmt_t *rm, int op, const Cvxstore__Request *rq, rmt_reply_fn cb,
                    void *arg)
{
    if (rm == NULL || rm->closing)
        return CVX_EUNAVAIL;
    if (!rm->link.up(rm->link.ctx))
        return CVX_EUNAVAIL;
    size_t n = cvxstore__request__get_packed_size(rq);
    if (n > CVX_LINK_BODY_MAX)
        return CVX_EINVAL;
    uint8_t small[512];
    uint8_t *buf = n <= sizeof(small) ? small : malloc(n);
    rpending_t *p = malloc(sizeof(*p));
    if (buf == NULL || p == NULL) {
        if (buf != small)
            free(buf);
        free(p);
        return CVX_ENOMEM;
    }
    cvxstore__request__pack(rq, buf);
    p->rm = rm;
    p->cb = cb;
    p->arg = arg;
    int rc = rm->link.call(rm->link.ctx, RM(op), buf, n, on_link_reply, p);
    if (buf != small)
        free(buf);
    if (rc != 0) {
        free(p);
        return rc;
    }
    store__rmt_hold(rm);
    return 0;
}

void store__rmt_send(store_rmt_t *rm, int op, const Cvxstore__Request *rq)
{
    store__rmt_call(rm, op, rq, NULL, NULL);
}

/* 1 for errors worth a retry later (the message is spooled, or stays in the spool): the link,
 * a busy system server, and CVX_EPERM (its licence refuses new messages until proven). */
int store__rmt_transient(int status)
{
    switch (status) {
    case CVX_ENOTFOUND: /* no such mailbox */
    case CVX_EINVAL:
    case CVX_ELIMIT:
    case CVX_EFULL:
    case CVX_EEXIST:
    case CVX_ECORRUPT:
        return 0;
    default:
        return 1;
    }
}

/* Results decided on the loop are delivered from the queue, never inside the request. */
typedef struct ldeliv {
    cvx_async_job_t job;
    store_rmt_t *rm;
    void (*fn)(void *ctx);
    void *ctx;
} ldeliv_t;

static void ldeliv_run(cvx_async_job_t *job)
{
    ldeliv_t *d = (ldeliv_t *)((char *)job - offsetof(ldeliv_t, job));
    store_rmt_t *rm = d->rm;
    d->fn(d->ctx);
    free(d);
    store__rmt_release(rm);
}

static int post_local(store_rmt_t *rm, void (*fn)(void *ctx), void *ctx)
{
    ldeliv_t *d = malloc(sizeof(*d));
    if (d == NULL)
        return CVX_ENOMEM;
    d->rm = rm;
    d->fn = fn;
    d->ctx = ctx;
    store__rmt_hold(rm);
    cvx_async_queue_post(&rm->done, &d->job, ldeliv_run);
    return 0;
}

/* A request's caller: its callback and what the reply needs. */
typedef struct rop {
    store_rmt_t *rm;
    void (*cb)(void);
    void *arg;
    char number[CVX_STORE_NUMBER_MAX];
    char digits[CVX_STORE_NUMBER_MAX];
    size_t max;
    uint64_t version; /* the cache version when the request was sent */
    int status;
    cvx_mailbox_t mb;
} rop_t;

static rop_t *rop_new(store_rmt_t *rm, void (*cb)(void), void *arg)
{
    rop_t *o = calloc(1, sizeof(*o));
    if (o != NULL) {
        o->rm = rm;
        o->cb = cb;
        o->arg = arg;
        o->version = rm->cache_version;
    }
    return o;
}

#define CB(fn) ((void (*)(void))(fn))

static int send_op(store_rmt_t *rm, int op, const Cvxstore__Request *rq, rmt_reply_fn on_reply,
                   rop_t *o)
{
    if (o == NULL)
        return CVX_ENOMEM;
    int rc = store__rmt_call(rm, op, rq, on_reply, o);
    if (rc != 0)
        free(o);
    return rc;
}

static void done_reply(void *arg, int status, const Cvxstore__Reply *r)
{
    (void)r;
    rop_t *o = arg;
    ((cvx_store_done_cb)o->cb)(o->arg, status);
    free(o);
}

static int done_op(cvx_store_t *st, int op, const Cvxstore__Request *rq, cvx_store_done_cb cb,
                   void *arg)
{
    store_rmt_t *rm = store__rmt(st);
    if (cb == NULL)
        return CVX_EINVAL;
    return send_op(rm, op, rq, done_reply, rop_new(rm, CB(cb), arg));
}

/* --- mailboxes ------------------------------------------------------------------------------ */

static void mailbox_deliver(void *ctx)
{
    rop_t *o = ctx;
    ((cvx_store_mailbox_cb)o->cb)(o->arg, o->status, o->status == 0 ? &o->mb : NULL);
    free(o);
}

/* The system server could not be reached: the last record seen of the mailbox, if any. */
static int mailbox_offline(rop_t *o)
{
    store_rmt_t *rm = o->rm;
    if (rm->spool == NULL || spool_mailbox_get(rm->spool, o->number, &o->mb) != 0)
        return CVX_EUNAVAIL;
    rm->stats.served_stale++;
    o->status = 0;
    cvx_debug("store: system server unreachable: mailbox %s from its last known record", o->number);
    return post_local(rm, mailbox_deliver, o);
}

static void mailbox_reply(void *arg, int status, const Cvxstore__Reply *r)
{
    rop_t *o = arg;
    store_rmt_t *rm = o->rm;
    if (status == 0 && (r == NULL || r->n_mailboxes < 1))
        status = CVX_EPROTO;
    if (status == 0) {
        store__pb_to_mailbox(r->mailboxes[0], &o->mb);
        if (rm->spool != NULL)
            spool_mailbox_put(rm->spool, &o->mb);
    } else if (status == CVX_ENOTFOUND && rm->spool != NULL) {
        spool_mailbox_drop(rm->spool, o->number);
    } else if ((status == CVX_EUNAVAIL || status == CVX_ETIMEOUT) && !rm->closing &&
               mailbox_offline(o) == 0) {
        return;
    }
    o->status = status;
    mailbox_deliver(o);
}

int store__r_mailbox_get(cvx_store_t *st, const char *number, cvx_store_mailbox_cb cb, void *arg)
{
    store_rmt_t *rm = store__rmt(st);
    if (rm->closing)
        return CVX_EUNAVAIL;
    if (!cvx_store_valid_number(number) || cb == NULL)
        return CVX_EINVAL;
    rop_t *o = rop_new(rm, CB(cb), arg);
    if (o == NULL)
        return CVX_ENOMEM;
    store__copy(o->number, number, sizeof(o->number));
    Cvxstore__Request rq = CVXSTORE__REQUEST__INIT;
    rq.number = (char *)number;
    int rc = store__rmt_call(rm, RM_MAILBOX_GET, &rq, mailbox_reply, o);
    if (rc == CVX_EUNAVAIL)
        rc = mailbox_offline(o);
    if (rc != 0)
        free(o);
    return rc;
}

static void mailboxes_reply(void *arg, int status, const Cvxstore__Reply *r)
{
    rop_t *o = arg;
    size_t n = status == 0 && r != NULL ? r->n_mailboxes : 0;
    cvx_mailbox_t *mbs = n > 0 ? calloc(n, sizeof(*mbs)) : NULL;
    if (n > 0 && mbs == NULL) {
        status = CVX_ENOMEM;
        n = 0;
    }
    for (size_t i = 0; i < n; i++)
        store__pb_to_mailbox(r->mailboxes[i], &mbs[i]);
    ((cvx_store_mailboxes_cb)o->cb)(o->arg, status, mbs, n);
    free(mbs);
    free(o);
}

int store__r_mailbox_list(cvx_store_t *st, const char *after, size_t max, cvx_store_mailboxes_cb cb,
                          void *arg)
{
    store_rmt_t *rm = store__rmt(st);
    if (cb == NULL)
        return CVX_EINVAL;
    Cvxstore__Request rq = CVXSTORE__REQUEST__INIT;
    rq.after = (char *)(after != NULL ? after : "");
    rq.max = (uint32_t)max;
    return send_op(rm, RM_MAILBOX_LIST, &rq, mailboxes_reply, rop_new(rm, CB(cb), arg));
}

int store__r_mailbox_put(cvx_store_t *st, const cvx_mailbox_t *mb, int mode, cvx_store_done_cb cb,
                         void *arg)
{
    if (mb == NULL || !cvx_store_valid_number(mb->number) ||
        (mode != CVX_PUT_CREATE && mode != CVX_PUT_UPDATE))
        return CVX_EINVAL;
    Cvxstore__Request rq = CVXSTORE__REQUEST__INIT;
    Cvxstore__Mailbox pm;
    store__pb_from_mailbox(&pm, mb);
    rq.mailbox = &pm;
    rq.mode = mode;
    return done_op(st, RM_MAILBOX_PUT, &rq, cb, arg);
}

/* Operations on a mailbox number with a done callback: del, unlock. */
int store__r_simple(cvx_store_t *st, int op, const char *number, cvx_store_done_cb cb, void *arg)
{
    if (!cvx_store_valid_number(number))
        return CVX_EINVAL;
    Cvxstore__Request rq = CVXSTORE__REQUEST__INIT;
    rq.number = (char *)number;
    return done_op(st, op, &rq, cb, arg);
}

int store__r_pin_set(cvx_store_t *st, const char *number, const char *pin, cvx_store_done_cb cb,
                     void *arg)
{
    if (!cvx_store_valid_number(number) || pin == NULL)
        return CVX_EINVAL;
    Cvxstore__Request rq = CVXSTORE__REQUEST__INIT;
    rq.number = (char *)number;
    rq.pin = (char *)pin;
    return done_op(st, RM_PIN_SET, &rq, cb, arg);
}

static void pin_reply(void *arg, int status, const Cvxstore__Reply *r)
{
    rop_t *o = arg;
    cvx_pin_result_t pr;
    memset(&pr, 0, sizeof(pr));
    if (status == 0 && (r == NULL || r->pin == NULL))
        status = CVX_EPROTO;
    if (status == 0) {
        pr.verdict = (cvx_pin_verdict_t)r->pin->verdict;
        pr.attempts_left = r->pin->attempts_left;
        pr.locked_until_ms = r->pin->locked_until_ms;
    }
    ((cvx_store_pin_cb)o->cb)(o->arg, status, status == 0 ? &pr : NULL);
    free(o);
}

int store__r_pin_check(cvx_store_t *st, const char *number, const char *pin, cvx_store_pin_cb cb,
                       void *arg)
{
    store_rmt_t *rm = store__rmt(st);
    if (!cvx_store_valid_number(number) || pin == NULL || cb == NULL)
        return CVX_EINVAL;
    Cvxstore__Request rq = CVXSTORE__REQUEST__INIT;
    rq.number = (char *)number;
    rq.pin = (char *)pin;
    return send_op(rm, RM_PIN_CHECK, &rq, pin_reply, rop_new(rm, CB(cb), arg));
}

/* --- messages ------------------------------------------------------------------------------- */

static void list_reply(void *arg, int status, const Cvxstore__Reply *r)
{
    rop_t *o = arg;
    size_t n = status == 0 && r != NULL ? r->n_messages : 0;
    cvx_message_t *m = n > 0 ? calloc(n, sizeof(*m)) : NULL;
    if (n > 0 && m == NULL) {
        status = CVX_ENOMEM;
        n = 0;
    }
    for (size_t i = 0; i < n; i++)
        store__pb_to_message(r->messages[i], &m[i]);
    ((cvx_store_list_cb)o->cb)(o->arg, status, m, n);
    free(m);
    free(o);
}

int store__r_msg_list(cvx_store_t *st, const char *mailbox, int folder, cvx_store_list_cb cb,
                      void *arg)
{
    store_rmt_t *rm = store__rmt(st);
    if (!cvx_store_valid_number(mailbox) || cb == NULL)
        return CVX_EINVAL;
    Cvxstore__Request rq = CVXSTORE__REQUEST__INIT;
    rq.number = (char *)mailbox;
    rq.folder = folder;
    return send_op(rm, RM_MSG_LIST, &rq, list_reply, rop_new(rm, CB(cb), arg));
}

static void message_reply(void *arg, int status, const Cvxstore__Reply *r)
{
    rop_t *o = arg;
    cvx_message_t m;
    if (status == 0 && (r == NULL || r->n_messages < 1))
        status = CVX_EPROTO;
    if (status == 0)
        store__pb_to_message(r->messages[0], &m);
    ((cvx_store_message_cb)o->cb)(o->arg, status, status == 0 ? &m : NULL);
    free(o);
}

int store__r_msg_get(cvx_store_t *st, const char *id, cvx_store_message_cb cb, void *arg)
{
    store_rmt_t *rm = store__rmt(st);
    if (!cvx_store_valid_id(id) || cb == NULL)
        return CVX_EINVAL;
    Cvxstore__Request rq = CVXSTORE__REQUEST__INIT;
    rq.id = (char *)id;
    return send_op(rm, RM_MSG_GET, &rq, message_reply, rop_new(rm, CB(cb), arg));
}

/* move (folder) and purge */
int store__r_msg_id_op(cvx_store_t *st, int op, const char *id, int folder, cvx_store_done_cb cb,
                       void *arg)
{
    if (!cvx_store_valid_id(id))
        return CVX_EINVAL;
    Cvxstore__Request rq = CVXSTORE__REQUEST__INIT;
    rq.id = (char *)id;
    rq.folder = folder;
    return done_op(st, op, &rq, cb, arg);
}

static void commit_reply(void *arg, int status, const Cvxstore__Reply *r)
{
    rop_t *o = arg;
    cvx_deposit_result_t d;
    memset(&d, 0, sizeof(d));
    if (status == 0 && (r == NULL || r->deposit == NULL))
        status = CVX_EPROTO;
    if (status == 0) {
        store__copy(d.id, r->deposit->id, sizeof(d.id));
        d.duplicate = r->deposit->duplicate;
        d.shared_audio = r->deposit->shared_audio;
        d.bytes = r->deposit->bytes;
        if (r->deposit->sha256.len == 32)
            memcpy(d.sha256, r->deposit->sha256.data, 32);
    }
    ((cvx_store_commit_cb)o->cb)(o->arg, status, status == 0 ? &d : NULL);
    free(o);
}

int store__r_msg_copy(cvx_store_t *st, const char *id, const char *new_id, const char *mailbox,
                      cvx_store_commit_cb cb, void *arg)
{
    store_rmt_t *rm = store__rmt(st);
    if (!cvx_store_valid_id(id) || !cvx_store_valid_id(new_id) || !cvx_store_valid_number(mailbox))
        return CVX_EINVAL;
    Cvxstore__Request rq = CVXSTORE__REQUEST__INIT;
    rq.id = (char *)id;
    rq.id2 = (char *)new_id;
    rq.number = (char *)mailbox;
    return send_op(rm, RM_MSG_COPY, &rq, commit_reply, rop_new(rm, CB(cb), arg));
}

int store__r_greeting_del(cvx_store_t *st, const char *mailbox, cvx_greeting_t kind,
                          cvx_store_done_cb cb, void *arg)
{
    if (!cvx_store_valid_number(mailbox) || (unsigned)kind >= CVX_GREETING_COUNT)
        return CVX_EINVAL;
    Cvxstore__Request rq = CVXSTORE__REQUEST__INIT;
    rq.number = (char *)mailbox;
    rq.kind = kind;
    return done_op(st, RM_GREETING_DEL, &rq, cb, arg);
}

/* --- caches ---------------------------------------------------------------------------------- */

static void gcache_free(gcache_t *g)
{
    free(g->audio);
    free(g->chunk_len);
    free(g);
}

static void dir_flush(store_rmt_t *rm)
{
    while (rm->dir != NULL) {
        dcache_t *d = rm->dir;
        rm->dir = d->next;
        free(d->e);
        free(d);
    }
    rm->ndir = 0;
}

static void cache_flush(store_rmt_t *rm)
{
    while (rm->greetings != NULL) {
        gcache_t *g = rm->greetings;
        rm->greetings = g->next;
        gcache_free(g);
    }
    rm->greeting_bytes = 0;
    dir_flush(rm);
}

static void cache_drop_mailbox(store_rmt_t *rm, const char *number)
{
    for (gcache_t **pp = &rm->greetings; *pp != NULL;) {
        gcache_t *g = *pp;
        if (strcmp(g->mailbox, number) == 0) {
            *pp = g->next;
            rm->greeting_bytes -= g->len;
            gcache_free(g);
        } else {
            pp = &g->next;
        }
    }
    /* A name or listing change may move the mailbox in any search. */
    dir_flush(rm);
}

static gcache_t *gcache_find(store_rmt_t *rm, const char *mailbox, cvx_greeting_t kind)
{
    if (!rm->cache_valid)
        return NULL;
    for (gcache_t *g = rm->greetings; g != NULL; g = g->next)
        if (g->kind == kind && strcmp(g->mailbox, mailbox) == 0)
            return g;
    return NULL;
}

void cvx__store_cache_stats(cvx_store_t *st, store_cache_stats_t *out)
{
    store_rmt_t *rm = store__rmt(st);
    memset(out, 0, sizeof(*out));
    if (rm == NULL)
        return;
    *out = rm->stats;
    out->valid = rm->cache_valid;
    out->version = rm->cache_version;
    out->epoch = rm->cache_epoch;
}

static void version_reply(void *arg, int status, const Cvxstore__Reply *r)
{
    store_rmt_t *rm = arg;
    if (status != 0 || r == NULL)
        return; /* the link went down again: the next up revalidates */
    if (!rm->cache_valid) {
        if (r->version != rm->cache_version || rm->stats.epoch != rm->cache_epoch) {
            cache_flush(rm);
            rm->stats.flushes++;
        }
        rm->cache_epoch = rm->stats.epoch;
        rm->cache_version = r->version;
        rm->cache_valid = 1;
        cvx_debug("store: caches revalidated at version %llu of run %llu",
                  (unsigned long long)r->version, (unsigned long long)rm->cache_epoch);
    }
}

void cvx__store_remote_link_state(cvx_store_t *st, int up, uint64_t server_epoch)
{
    store_rmt_t *rm = store__rmt(st);
    if (rm == NULL || rm->closing)
        return;
    if (!up)
        return; /* pending requests complete with CVX_EUNAVAIL; the caches keep serving */
    rm->cache_valid = 0;
    rm->stats.epoch = server_epoch; /* the run being revalidated against */
    Cvxstore__Request rq = CVXSTORE__REQUEST__INIT;
    if (store__rmt_call(rm, RM_VERSION, &rq, version_reply, rm) != 0)
        cvx_debug("store: cannot ask the system server's cache version (link down again)");
    /* A new link: spooled messages go now, whatever the back-off had reached. */
    uv_timer_stop(&rm->fwd_timer);
    rm->fwd_delay_ms = rm->conf.retry_ms;
    store__fwd_kick(rm);
}

void cvx__store_remote_push(cvx_store_t *st, uint32_t method, const uint8_t *body, size_t len)
{
    store_rmt_t *rm = store__rmt(st);
    if (rm == NULL || rm->closing)
        return;
    if (method == RM_PUSH_MWI) {
        Cvxstore__Mwi *pm = cvxstore__mwi__unpack(NULL, len, body);
        if (pm == NULL) {
            cvx_warn("store: an MWI push from the system server does not decode");
            return;
        }
        cvx_mwi_t m;
        store__pb_to_mwi(pm, &m);
        cvxstore__mwi__free_unpacked(pm, NULL);
        if (rm->mwi_fn != NULL)
            rm->mwi_fn(rm->mwi_arg, &m);
    } else if (method == RM_PUSH_CACHE) {
        Cvxstore__CacheChange *c = cvxstore__cache_change__unpack(NULL, len, body);
        if (c == NULL) {
            cvx_warn("store: a cache change from the system server does not decode");
            return;
        }
        if (rm->cache_valid) {
            if (c->version == rm->cache_version + 1) {
                cache_drop_mailbox(rm, c->number);
                rm->stats.invalidations++;
            } else {
                cvx_info("store: cache version jumped from %llu to %llu: caches dropped",
                         (unsigned long long)rm->cache_version, (unsigned long long)c->version);
                cache_flush(rm);
                rm->stats.flushes++;
            }
            rm->cache_version = c->version;
        }
        cvxstore__cache_change__free_unpacked(c, NULL);
    }
}

/* --- directory ------------------------------------------------------------------------------- */

typedef struct dres {
    rop_t *o;
    cvx_dir_entry_t *e;
    size_t n;
} dres_t;

static void dir_deliver(void *ctx)
{
    dres_t *d = ctx;
    ((cvx_store_dir_cb)d->o->cb)(d->o->arg, 0, d->e, d->n);
    free(d->e);
    free(d->o);
    free(d);
}

static void dir_reply(void *arg, int status, const Cvxstore__Reply *r)
{
    rop_t *o = arg;
    store_rmt_t *rm = o->rm;
    size_t n = status == 0 && r != NULL ? r->n_entries : 0;
    cvx_dir_entry_t *e = n > 0 ? calloc(n, sizeof(*e)) : NULL;
    if (n > 0 && e == NULL) {
        status = CVX_ENOMEM;
        n = 0;
    }
    for (size_t i = 0; i < n; i++)
        store__pb_to_dir(r->entries[i], &e[i]);
    if (status == 0 && rm->cache_valid && rm->cache_version == o->version) {
        dcache_t *d = calloc(1, sizeof(*d));
        cvx_dir_entry_t *copy = n > 0 ? malloc(n * sizeof(*copy)) : NULL;
        if (d != NULL && (n == 0 || copy != NULL)) {
            store__copy(d->digits, o->digits, sizeof(d->digits));
            d->max = o->max;
            if (n > 0)
                memcpy(copy, e, n * sizeof(*copy));
            d->e = copy;
            d->n = n;
            if (rm->ndir >= STORE_DCACHE_MAX)
                dir_flush(rm);
            d->next = rm->dir;
            rm->dir = d;
            rm->ndir++;
        } else {
            free(d);
            free(copy);
        }
    }
    ((cvx_store_dir_cb)o->cb)(o->arg, status, e, n);
    free(e);
    free(o);
}

int store__r_dir_search(cvx_store_t *st, const char *digits, size_t max, cvx_store_dir_cb cb,
                        void *arg)
{
    store_rmt_t *rm = store__rmt(st);
    if (rm->closing)
        return CVX_EUNAVAIL;
    if (digits == NULL || strlen(digits) >= CVX_STORE_NUMBER_MAX || cb == NULL)
        return CVX_EINVAL;
    rop_t *o = rop_new(rm, CB(cb), arg);
    if (o == NULL)
        return CVX_ENOMEM;
    store__copy(o->digits, digits, sizeof(o->digits));
    o->max = max;
    if (rm->cache_valid) {
        for (dcache_t *d = rm->dir; d != NULL; d = d->next) {
            if (d->max != max || strcmp(d->digits, digits) != 0)
                continue;
            dres_t *res = calloc(1, sizeof(*res));
            res->e = d->n > 0 ? malloc(d->n * sizeof(*res->e)) : NULL;
            if (res == NULL || (d->n > 0 && res->e == NULL)) {
                free(res);
                break;
            }
            if (d->n > 0)
                memcpy(res->e, d->e, d->n * sizeof(*res->e));
            res->n = d->n;
            res->o = o;
            rm->stats.hits++;
            int rc = post_local(rm, dir_deliver, res);
            if (rc != 0) {
                free(res->e);
                free(res);
                free(o);
            }
            return rc;
        }
    }
    rm->stats.misses++;
    Cvxstore__Request rq = CVXSTORE__REQUEST__INIT;
    rq.digits = (char *)digits;
    rq.max = (uint32_t)max;
    return send_op(rm, RM_DIR_SEARCH, &rq, dir_reply, o);
}

/* --- MWI ------------------------------------------------------------------------------------- */

static void mwi_reply(void *arg, int status, const Cvxstore__Reply *r)
{
    rop_t *o = arg;
    cvx_mwi_t m;
    if (status == 0 && (r == NULL || r->mwi == NULL))
        status = CVX_EPROTO;
    if (status == 0)
        store__pb_to_mwi(r->mwi, &m);
    ((cvx_store_mwi_cb)o->cb)(o->arg, status, status == 0 ? &m : NULL);
    free(o);
}

int store__r_mwi_get(cvx_store_t *st, const char *mailbox, cvx_store_mwi_cb cb, void *arg)
{
    store_rmt_t *rm = store__rmt(st);
    if (!cvx_store_valid_number(mailbox) || cb == NULL)
        return CVX_EINVAL;
    Cvxstore__Request rq = CVXSTORE__REQUEST__INIT;
    rq.number = (char *)mailbox;
    return send_op(rm, RM_MWI_GET, &rq, mwi_reply, rop_new(rm, CB(cb), arg));
}

int store__r_mwi_report(cvx_store_t *st, const char *mailbox, uint64_t gen, int lamp, int ok,
                        cvx_store_done_cb cb, void *arg)
{
    store_rmt_t *rm = store__rmt(st);
    if (!cvx_store_valid_number(mailbox))
        return CVX_EINVAL;
    Cvxstore__Request rq = CVXSTORE__REQUEST__INIT;
    rq.number = (char *)mailbox;
    rq.gen = gen;
    rq.lamp = lamp != 0;
    rq.ok = ok != 0;
    if (cb == NULL) {
        /* The caller does not want the outcome. */
        return store__rmt_call(rm, RM_MWI_REPORT, &rq, NULL, NULL);
    }
    return done_op(st, RM_MWI_REPORT, &rq, cb, arg);
}

void store__r_mwi_watch(cvx_store_t *st, cvx_store_mwi_watch_fn fn, void *arg)
{
    store_rmt_t *rm = store__rmt(st);
    rm->mwi_fn = fn;
    rm->mwi_arg = arg;
}

/* --- settings -------------------------------------------------------------------------------- */

static void setting_reply(void *arg, int status, const Cvxstore__Reply *r)
{
    rop_t *o = arg;
    const void *v = status == 0 && r != NULL ? r->value.data : NULL;
    size_t n = status == 0 && r != NULL ? r->value.len : 0;
    ((cvx_store_setting_cb)o->cb)(o->arg, status, v, n);
    free(o);
}

int store__r_setting_get(cvx_store_t *st, const char *key, cvx_store_setting_cb cb, void *arg)
{
    store_rmt_t *rm = store__rmt(st);
    if (key == NULL || cb == NULL)
        return CVX_EINVAL;
    Cvxstore__Request rq = CVXSTORE__REQUEST__INIT;
    rq.key = (char *)key;
    return send_op(rm, RM_SETTING_GET, &rq, setting_reply, rop_new(rm, CB(cb), arg));
}

int store__r_setting_put(cvx_store_t *st, const char *key, const void *value, size_t len,
                         cvx_store_done_cb cb, void *arg)
{
    if (key == NULL || (value == NULL && len > 0) || len > CVX_STORE_SETTING_MAX)
        return CVX_EINVAL;
    Cvxstore__Request rq = CVXSTORE__REQUEST__INIT;
    rq.key = (char *)key;
    rq.value.data = (uint8_t *)value;
    rq.value.len = len;
    return done_op(st, RM_SETTING_PUT, &rq, cb, arg);
}

/* --- audio ------------------------------------------------------------------------------------ */

/* Starts like struct cvx_store_reader (audio.c) so that r->st tells a remote reader. */
typedef struct rreader {
    cvx_store_t *st;
    store_rmt_t *rm;
    uint64_t handle;
    cvx_audio_ref_t ref;
    unsigned refs; /* the owner, and each request in flight */
    int closed;
    int remote_open; /* the system server has a reader under handle */
    cvx_audio_info_t info;
    /* playing from the cache: a copy of the entry */
    uint8_t *local;
    size_t *chunk_len;
    uint32_t nchunks, next_chunk;
    size_t offset;
    /* fetching a greeting to keep it */
    int filling;
    uint64_t fill_version;
    uint8_t *fill;
    size_t fill_len, fill_cap;
    size_t *fill_chunks;
    uint32_t fill_n, fill_chunk_cap;
    cvx_store_audio_cb open_cb;
    void *open_arg;
    cvx_store_chunk_cb next_cb;
    void *next_arg;
} rreader_t;

static void rreader_unref(rreader_t *r)
{
    if (--r->refs > 0)
        return;
    free(r->local);
    free(r->chunk_len);
    free(r->fill);
    free(r->fill_chunks);
    free(r);
}

static void audio_open_local(void *ctx)
{
    rreader_t *r = ctx;
    if (!r->closed)
        r->open_cb(r->open_arg, 0, &r->info);
    rreader_unref(r);
}

static void audio_open_reply(void *arg, int status, const Cvxstore__Reply *r)
{
    rreader_t *rd = arg;
    if (status == 0 && (r == NULL || r->audio == NULL))
        status = CVX_EPROTO;
    if (status == 0) {
        rd->remote_open = 1;
        rd->info.codec = (uint8_t)r->audio->codec;
        rd->info.rate = r->audio->rate;
        rd->info.bytes = r->audio->bytes;
        rd->info.chunks = r->audio->chunks;
    }
    if (rd->closed) {
        if (rd->remote_open) {
            Cvxstore__Request rq = CVXSTORE__REQUEST__INIT;
            rq.handle = rd->handle;
            store__rmt_send(rd->rm, RM_AUDIO_CLOSE, &rq);
        }
    } else {
        rd->open_cb(rd->open_arg, status, status == 0 ? &rd->info : NULL);
    }
    rreader_unref(rd);
}

int store__r_audio_open(cvx_store_t *st, const cvx_audio_ref_t *ref, cvx_store_audio_cb cb,
                        void *arg, cvx_store_reader_t **out)
{
    store_rmt_t *rm = store__rmt(st);
    if (rm->closing)
        return CVX_EUNAVAIL;
    if (ref == NULL || cb == NULL || out == NULL)
        return CVX_EINVAL;
    rreader_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return CVX_ENOMEM;
    r->st = st;
    r->rm = rm;
    r->ref = *ref;
    r->open_cb = cb;
    r->open_arg = arg;
    r->refs = 2; /* the owner and the open */
    gcache_t *g = ref->is_greeting ? gcache_find(rm, ref->mailbox, ref->greeting) : NULL;
    int rc;
    if (g != NULL) {
        r->info = g->info;
        r->local = malloc(g->len ? g->len : 1);
        r->chunk_len = malloc((g->nchunks ? g->nchunks : 1) * sizeof(size_t));
        if (r->local == NULL || r->chunk_len == NULL) {
            rc = CVX_ENOMEM;
        } else {
            memcpy(r->local, g->audio, g->len);
            memcpy(r->chunk_len, g->chunk_len, g->nchunks * sizeof(size_t));
            r->nchunks = g->nchunks;
            rm->stats.hits++;
            rc = post_local(rm, audio_open_local, r);
        }
    } else {
        if (ref->is_greeting)
            rm->stats.misses++;
        r->handle = ++rm->next_handle;
        Cvxstore__Request rq = CVXSTORE__REQUEST__INIT;
        rq.handle = r->handle;
        rq.is_greeting = ref->is_greeting != 0;
        rq.id = (char *)ref->id;
        rq.number = (char *)ref->mailbox;
        rq.kind = ref->greeting;
        if (ref->is_greeting && rm->cache_valid) {
            r->filling = 1;
            r->fill_version = rm->cache_version;
        }
        rc = store__rmt_call(rm, RM_AUDIO_OPEN, &rq, audio_open_reply, r);
    }
    if (rc != 0) {
        r->refs = 1;
        rreader_unref(r);
        return rc;
    }
    *out = (cvx_store_reader_t *)r;
    return 0;
}

static void chunk_local(void *ctx)
{
    rreader_t *r = ctx;
    cvx_store_chunk_cb cb = r->next_cb;
    r->next_cb = NULL;
    if (!r->closed) {
        if (r->next_chunk >= r->nchunks) {
            cb(r->next_arg, 0, NULL, 0);
        } else {
            size_t n = r->chunk_len[r->next_chunk++];
            const uint8_t *p = r->local + r->offset;
            r->offset += n;
            cb(r->next_arg, 0, p, n);
        }
    }
    rreader_unref(r);
}

/* Keeps a greeting the system server sent in full, unless it changed meanwhile. */
static void fill_done(rreader_t *r)
{
    store_rmt_t *rm = r->rm;
    if (!rm->cache_valid || rm->cache_version != r->fill_version ||
        gcache_find(rm, r->ref.mailbox, r->ref.greeting) != NULL)
        return;
    gcache_t *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return;
    store__copy(g->mailbox, r->ref.mailbox, sizeof(g->mailbox));
    g->kind = r->ref.greeting;
    g->info = r->info;
    g->audio = r->fill;
    g->len = r->fill_len;
    g->chunk_len = r->fill_chunks;
    g->nchunks = r->fill_n;
    r->fill = NULL;
    r->fill_chunks = NULL;
    g->next = rm->greetings;
    rm->greetings = g;
    rm->greeting_bytes += g->len;
    /* Over the bound: the oldest entries go (the list is newest first). */
    gcache_t **pp = &rm->greetings;
    size_t kept = 0;
    while (*pp != NULL && kept + (*pp)->len <= STORE_GCACHE_BYTES) {
        kept += (*pp)->len;
        pp = &(*pp)->next;
    }
    while (*pp != NULL) {
        gcache_t *old = *pp;
        *pp = old->next;
        gcache_free(old);
    }
    rm->greeting_bytes = kept;
}

static void fill_add(rreader_t *r, const uint8_t *data, size_t len)
{
    if (r->fill_len + len > r->fill_cap) {
        size_t cap = (r->fill_len + len) * 2;
        uint8_t *p = realloc(r->fill, cap);
        if (p == NULL) {
            r->filling = 0;
            return;
        }
        r->fill = p;
        r->fill_cap = cap;
    }
    if (r->fill_n == r->fill_chunk_cap) {
        uint32_t cap = r->fill_chunk_cap ? r->fill_chunk_cap * 2 : 16;
        size_t *p = realloc(r->fill_chunks, cap * sizeof(size_t));
        if (p == NULL) {
            r->filling = 0;
            return;
        }
        r->fill_chunks = p;
        r->fill_chunk_cap = cap;
    }
    memcpy(r->fill + r->fill_len, data, len);
    r->fill_len += len;
    r->fill_chunks[r->fill_n++] = len;
}

static void chunk_reply(void *arg, int status, const Cvxstore__Reply *rep)
{
    rreader_t *r = arg;
    cvx_store_chunk_cb cb = r->next_cb;
    r->next_cb = NULL;
    const uint8_t *data = status == 0 && rep != NULL ? rep->data.data : NULL;
    size_t len = status == 0 && rep != NULL ? rep->data.len : 0;
    if (r->filling && !r->closed) {
        if (status != 0)
            r->filling = 0;
        else if (len > 0)
            fill_add(r, data, len);
        else
            fill_done(r);
    }
    if (!r->closed && cb != NULL)
        cb(r->next_arg, status, data, len);
    rreader_unref(r);
}

int store__r_audio_next(cvx_store_reader_t *reader, cvx_store_chunk_cb cb, void *arg)
{
    rreader_t *r = (rreader_t *)reader;
    if (cb == NULL || r->closed)
        return CVX_EINVAL;
    if (r->next_cb != NULL)
        return CVX_EBUSY;
    if (r->local == NULL && !r->remote_open)
        return CVX_ESTATE;
    r->next_cb = cb;
    r->next_arg = arg;
    r->refs++;
    int rc;
    if (r->local != NULL) {
        rc = post_local(r->rm, chunk_local, r);
    } else {
        Cvxstore__Request rq = CVXSTORE__REQUEST__INIT;
        rq.handle = r->handle;
        rc = store__rmt_call(r->rm, RM_AUDIO_NEXT, &rq, chunk_reply, r);
    }
    if (rc != 0) {
        r->next_cb = NULL;
        r->refs--;
    }
    return rc;
}

void store__r_audio_close(cvx_store_reader_t *reader)
{
    rreader_t *r = (rreader_t *)reader;
    if (r->closed)
        return;
    r->closed = 1;
    if (r->remote_open) {
        Cvxstore__Request rq = CVXSTORE__REQUEST__INIT;
        rq.handle = r->handle;
        store__rmt_send(r->rm, RM_AUDIO_CLOSE, &rq);
    }
    rreader_unref(r);
}

/* --- open and close ------------------------------------------------------------------------- */

static void queue_closed(cvx_async_queue_t *q)
{
    store_rmt_t *rm = (store_rmt_t *)((char *)q - offsetof(store_rmt_t, done));
    void (*fn)(void *) = rm->on_closed;
    void *arg = rm->closed_arg;
    cache_flush(rm);
    free(rm->st);
    free(rm);
    if (fn != NULL)
        fn(arg);
}

static void spool_closed(void *arg)
{
    store_rmt_t *rm = arg;
    rm->spool = NULL;
    cvx_async_queue_close(&rm->done, queue_closed);
}

static void maybe_closed(store_rmt_t *rm)
{
    if (rm->closing != 1 || rm->pending > 0 || rm->fwd_busy)
        return;
    rm->closing = 2;
    if (rm->spool != NULL)
        spool_close(rm->spool, spool_closed, rm);
    else
        spool_closed(rm);
}

void store__r_close(cvx_store_t *st, void (*on_closed)(void *arg), void *arg)
{
    store_rmt_t *rm = store__rmt(st);
    if (rm->closing)
        return;
    /* Like the local store: streams still open are aborted, and must not be used after. */
    store__rmt_abort_streams(rm);
    rm->closing = 1;
    rm->on_closed = on_closed;
    rm->closed_arg = arg;
    store__fwd_close(rm);
    maybe_closed(rm);
}

int cvx__store_remote_open(uv_loop_t *loop, const store_link_t *link,
                           const store_remote_conf_t *conf, cvx_store_t **out, char *err,
                           size_t errlen)
{
    cvx_store_t *st = calloc(1, sizeof(*st));
    store_rmt_t *rm = calloc(1, sizeof(*rm));
    if (st == NULL || rm == NULL) {
        free(st);
        free(rm);
        return CVX_ENOMEM;
    }
    st->loop = loop;
    st->remote = rm;
    rm->st = st;
    rm->loop = loop;
    rm->link = *link;
    rm->conf = *conf;
    if (rm->conf.retry_ms == 0)
        rm->conf.retry_ms = 1000;
    if (rm->conf.retry_max_ms < rm->conf.retry_ms)
        rm->conf.retry_max_ms = 60000;
    if (conf->spool_path != NULL) {
        snprintf(st->path, sizeof(st->path), "%s", conf->spool_path);
        rm->conf.spool_path = st->path;
    }
    int rc = spool_open(loop, st->path, conf->spool_map_size, &rm->spool, err, errlen);
    if (rc == 0) {
        rc = cvx_async_queue_init(loop, &rm->done);
        if (rc != 0) {
            snprintf(err, errlen, "remote store: %s", cvx_strerror(rc));
            spool_close(rm->spool, NULL, NULL);
        }
    }
    if (rc != 0) {
        free(st);
        free(rm);
        return rc;
    }
    store__fwd_init(rm);
    if (rm->link.set_spool_depth != NULL)
        rm->link.set_spool_depth(rm->link.ctx, spool_depth(rm->spool));
    if (spool_depth(rm->spool) > 0)
        cvx_info("spool %s: %u message%s waiting for the system server", st->path,
                 spool_depth(rm->spool), spool_depth(rm->spool) == 1 ? "" : "s");
    *out = st;
    return 0;
}

void store__rmt_commit_latency(store_rmt_t *rm, uint64_t ns)
{
    uint64_t us = ns / 1000;
    rm->lat_us[rm->lat_next] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    rm->lat_next = (rm->lat_next + 1) % STORE_LAT_KEEP;
    if (rm->nlat < STORE_LAT_KEEP)
        rm->nlat++;
}

void cvx__store_remote_stats(cvx_store_t *st, store_remote_stats_t *out)
{
    store_rmt_t *rm = store__rmt(st);
    memset(out, 0, sizeof(*out));
    if (rm == NULL)
        return;
    out->live = rm->live;
    out->spooled = rm->spooled;
    out->forwarded = rm->forwarded;
    out->nlat = rm->nlat;
    out->lat_us = rm->lat_us;
}

int cvx__store_spool_foreach(cvx_store_t *st, int (*fn)(void *arg, const store_spool_info_t *i),
                             void *arg)
{
    store_rmt_t *rm = store__rmt(st);
    if (rm == NULL || rm->spool == NULL)
        return CVX_EUNAVAIL;
    return spool_foreach(rm->spool, fn, arg);
}

int cvx__store_spool_settled(cvx_store_t *st)
{
    store_rmt_t *rm = store__rmt(st);
    return rm == NULL || spool_pending(rm->spool) == 0;
}

uint64_t cvx__store_spool_chunks(cvx_store_t *st)
{
    store_rmt_t *rm = store__rmt(st);
    return rm != NULL ? spool_chunks(rm->spool) : 0;
}

uint32_t cvx__store_spool_depth(cvx_store_t *st)
{
    store_rmt_t *rm = store__rmt(st);
    return rm != NULL ? spool_depth(rm->spool) : 0;
}
