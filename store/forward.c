/*
 * The spool's forwarder: while the link is up, sends the spooled messages to the system
 * server, oldest first, one at a time (open, appends, commit, as a live deposit), and removes
 * each from the spool only after the system server confirmed it durable.  A message whose
 * commit reached the system server before this call server lost the answer (timeout, crash,
 * kill -9 between the commit and the removal) is sent again and reported as a duplicate
 * there: it exists once, and leaves the spool then.
 *
 * A message the system server refuses for good (no such mailbox, invalid) is held: it stays
 * in the spool with its error (`show spool`), is not retried before the next start, and the
 * forwarder goes on with the next.  Other failures are retried after a delay that doubles up
 * to retry_max_ms.
 */
#include <stdlib.h>
#include <string.h>

#include "cvx/log.h"
#include "rmt_impl.h"

typedef struct fwd {
    store_rmt_t *rm;
    cvx_message_t msg;
    uint64_t handle;
    int failed;    /* first failure of the open or an append */
    unsigned refs; /* the forwarder's, and one per call in flight */
    size_t bytes;
} fwd_t;

static void fwd_unref(fwd_t *f)
{
    if (--f->refs == 0)
        free(f);
}

static void fwd_end(store_rmt_t *rm, int retry);

static void on_timer(uv_timer_t *t)
{
    store_rmt_t *rm = t->data;
    store__fwd_kick(rm);
}

void store__fwd_init(store_rmt_t *rm)
{
    uv_timer_init(rm->loop, &rm->fwd_timer);
    rm->fwd_timer.data = rm;
    rm->fwd_delay_ms = rm->conf.retry_ms;
}

static void timer_closed(uv_handle_t *h)
{
    store__rmt_release(h->data);
}

void store__fwd_close(store_rmt_t *rm)
{
    store__rmt_hold(rm);
    uv_close((uv_handle_t *)&rm->fwd_timer, timer_closed);
}

static void depth_changed(store_rmt_t *rm)
{
    if (rm->link.set_spool_depth != NULL)
        rm->link.set_spool_depth(rm->link.ctx, spool_depth(rm->spool));
}

static void removed(void *arg, int status)
{
    fwd_t *f = arg;
    store_rmt_t *rm = f->rm;
    if (status != 0)
        cvx_error("spool: message %s was forwarded but could not be removed from the spool: "
                  "%s (it will be sent again and reported as a duplicate)",
                  f->msg.id, cvx_strerror(status));
    depth_changed(rm);
    fwd_unref(f);
    fwd_end(rm, status != 0);
}

static void noted(void *arg, int status)
{
    (void)status;
    fwd_t *f = arg;
    store_rmt_t *rm = f->rm;
    fwd_unref(f);
    fwd_end(rm, 1);
}

static void commit_reply(void *arg, int status, const Cvxstore__Reply *r)
{
    fwd_t *f = arg;
    store_rmt_t *rm = f->rm;
    if (status == 0 && f->failed != 0)
        status = f->failed; /* cannot happen: the system server refuses a commit with holes */
    if (status == 0 && (r == NULL || r->deposit == NULL))
        status = CVX_EPROTO;
    if (status == 0) {
        int dup = r->deposit->duplicate;
        rm->forwarded++;
        rm->fwd_delay_ms = rm->conf.retry_ms;
        cvx_info("spool: message %s for mailbox %s forwarded to the system server%s", f->msg.id,
                 f->msg.mailbox, dup ? " (it had it already: duplicate)" : "");
        if (spool_del(rm->spool, &f->msg, removed, f) != 0) {
            fwd_unref(f);
            fwd_end(rm, 1);
        }
        fwd_unref(f); /* the commit call's reference */
        return;
    }
    int hold = !store__rmt_transient(status);
    cvx_warn("spool: forwarding message %s for mailbox %s failed: %s%s", f->msg.id, f->msg.mailbox,
             cvx_strerror(status),
             hold ? " (refused by the system server: held in the spool)" : "; will retry");
    if (rm->closing || spool_note(rm->spool, &f->msg, cvx_strerror(status), hold, noted, f) != 0) {
        fwd_unref(f);
        fwd_end(rm, 1);
    }
    fwd_unref(f); /* the commit call's reference */
}

static void step_reply(void *arg, int status, const Cvxstore__Reply *r)
{
    (void)r;
    fwd_t *f = arg;
    if (status != 0 && f->failed == 0)
        f->failed = status;
    fwd_unref(f);
}

static int fwd_send(store_rmt_t *rm, int op, Cvxstore__Request *rq, rmt_reply_fn cb, fwd_t *f)
{
    rq->handle = f->handle;
    if (cb == NULL)
        return store__rmt_call(rm, op, rq, NULL, NULL);
    int rc = store__rmt_call(rm, op, rq, cb, f);
    if (rc == 0)
        f->refs++;
    return rc;
}

/* The oldest message is loaded: send it. */
static void loaded(void *arg, int status, const cvx_message_t *msg, const uint8_t *audio,
                   size_t len, uint32_t attempts)
{
    store_rmt_t *rm = arg;
    if (status != 0 || rm->closing || !rm->link.up(rm->link.ctx)) {
        if (status != 0 && status != CVX_ENOTFOUND)
            cvx_error("spool: cannot read the oldest message: %s", cvx_strerror(status));
        fwd_end(rm, status != 0 && status != CVX_ENOTFOUND);
        return;
    }
    fwd_t *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        fwd_end(rm, 1);
        return;
    }
    f->rm = rm;
    f->refs = 1;
    f->msg = *msg;
    f->handle = ++rm->next_handle;
    f->bytes = len;
    cvx_debug("spool: forwarding message %s for mailbox %s (%zu bytes, attempt %u)", msg->id,
              msg->mailbox, len, attempts + 1);
    /* The stream's steps are sent back to back; the link keeps their order, and the commit's
     * answer covers them all (the system server refuses a commit after a failed append). */
    Cvxstore__Request rq = CVXSTORE__REQUEST__INIT;
    Cvxstore__Message pm;
    cvx_message_t m = *msg;
    store__pb_from_message(&pm, &m);
    rq.message = &pm;
    int rc = fwd_send(rm, RM_DEPOSIT_OPEN, &rq, step_reply, f);
    for (size_t off = 0; rc == 0 && off < len; off += CVX_STORE_CHUNK_MAX) {
        Cvxstore__Request a = CVXSTORE__REQUEST__INIT;
        a.data.data = (uint8_t *)audio + off;
        a.data.len = len - off < CVX_STORE_CHUNK_MAX ? len - off : CVX_STORE_CHUNK_MAX;
        rc = fwd_send(rm, RM_APPEND, &a, step_reply, f);
    }
    if (rc == 0) {
        Cvxstore__Request c = CVXSTORE__REQUEST__INIT;
        c.duration_ms = msg->duration_ms;
        rc = fwd_send(rm, RM_COMMIT, &c, commit_reply, f);
    }
    if (rc != 0) {
        /* The link went down while sending: what was sent completes with CVX_EUNAVAIL and
         * the system server drops the half stream; the message stays spooled.  f is still
         * referenced by the steps already sent, so it is abandoned to them. */
        cvx_info("spool: forwarding message %s stopped: %s", msg->id, cvx_strerror(rc));
        Cvxstore__Request ab = CVXSTORE__REQUEST__INIT;
        fwd_send(rm, RM_ABORT, &ab, NULL, f);
        f->failed = rc;
        fwd_unref(f);
        fwd_end(rm, 1);
    }
}

static void fwd_end(store_rmt_t *rm, int retry)
{
    rm->fwd_busy = 0;
    if (rm->closing) {
        store__rmt_release(rm);
        return;
    }
    if (retry) {
        uv_timer_start(&rm->fwd_timer, on_timer, rm->fwd_delay_ms, 0);
        rm->fwd_delay_ms = rm->fwd_delay_ms * 2 > rm->conf.retry_max_ms ? rm->conf.retry_max_ms
                                                                        : rm->fwd_delay_ms * 2;
    } else {
        store__fwd_kick(rm);
    }
    store__rmt_release(rm);
}

void store__fwd_kick(store_rmt_t *rm)
{
    if (rm->fwd_busy || rm->closing || spool_depth(rm->spool) == 0 || !rm->link.up(rm->link.ctx) ||
        uv_is_active((uv_handle_t *)&rm->fwd_timer))
        return;
    rm->fwd_busy = 1;
    store__rmt_hold(rm);
    if (spool_load_oldest(rm->spool, loaded, rm) != 0) {
        rm->fwd_busy = 0;
        store__rmt_release(rm);
    }
}
