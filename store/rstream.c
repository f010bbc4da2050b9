/*
 * Deposit and greeting streams of the call server's store.
 *
 * A deposit streams to the system server while it is recorded (open, append..., commit, in
 * order on the link) and writes its audio to the spool's draft (no sync) as it goes, so the
 * call server holds none of it in memory.  The commit reports 0 only when the system server
 * has confirmed the message durable.  When the system server cannot be reached at open,
 * during the recording or at commit (the link is down, a call timed out, the system server
 * was restarted and lost the stream, or is too busy), the draft becomes a spool entry with
 * the message's original receive time, and the commit reports 0 once that is on disk; the
 * forwarder sends it later.  A commit that times out may have reached the system server
 * anyway: the forwarder's copy then reports "duplicate" there (ids are idempotent), so the
 * message exists once.  Refusals that are the system server's answer (no such mailbox,
 * quota, store full) are reported to the caller as they are; a refusal of new messages for
 * its licence (CVX_EPERM: the proof failed) spools the message, which is forwarded once the
 * licence is proven.
 *
 * Greetings are recorded by subscribers, who are told when the system server is away: a
 * greeting stream needs the link and is not spooled.
 */
#include <stdlib.h>
#include <string.h>

#include "cvx/license.h"
#include "cvx/log.h"
#include "rmt_impl.h"

typedef struct rstream {
    cvx_store_stream_t base; /* base.st is the remote store */
    store_rmt_t *rm;
    unsigned refs; /* the owner, and each call in flight */
    uint64_t handle;
    int greeting;
    int remote_ok;  /* the system server holds every append so far */
    int remote_err; /* why it does not (0: it does) */
    int ending;
    /* deposits: the audio goes to the spool's draft as it comes (spool.h), so that a message
     * the system server cannot take is spooled from there, and nothing is kept in memory */
    uint32_t chunks;
    size_t len;
    int spooling; /* the draft became a spool entry */
    uint32_t duration_ms;
    uint64_t commit_ns; /* uv_hrtime() of the commit request */
    cvx_store_commit_cb cb;
    void *arg;
} rstream_t;

static void rs_unref(rstream_t *rs)
{
    if (--rs->refs > 0)
        return;
    free(rs);
}

static void lost_remote(rstream_t *rs, int status)
{
    if (rs->remote_ok) {
        rs->remote_ok = 0;
        rs->remote_err = status;
        if (!rs->greeting)
            cvx_info("store: message %s for mailbox %s: the system server cannot take it now "
                     "(%s); it goes to the spool",
                     rs->base.msg.id, rs->base.msg.mailbox, cvx_strerror(status));
    }
}

static void step_reply(void *arg, int status, const Cvxstore__Reply *r)
{
    (void)r;
    rstream_t *rs = arg;
    if (status != 0)
        lost_remote(rs, status);
    rs_unref(rs);
}

/* Sends one request of the stream; a failure to send marks the stream as not remote. */
static void send_step(rstream_t *rs, int op, Cvxstore__Request *rq)
{
    if (!rs->remote_ok)
        return;
    rq->handle = rs->handle;
    int rc = store__rmt_call(rs->rm, op, rq, step_reply, rs);
    if (rc != 0)
        lost_remote(rs, rc);
    else
        rs->refs++;
}

/* Open streams are listed (base.next, base.prev) so that closing the store aborts them. */
static void rs_unlist(rstream_t *rs)
{
    store_rmt_t *rm = rs->rm;
    if (rs->base.prev != NULL)
        rs->base.prev->next = rs->base.next;
    else if (rm->streams == &rs->base)
        rm->streams = rs->base.next;
    if (rs->base.next != NULL)
        rs->base.next->prev = rs->base.prev;
    rs->base.next = rs->base.prev = NULL;
}

void store__rmt_abort_streams(store_rmt_t *rm)
{
    while (rm->streams != NULL)
        store__r_abort(rm->streams);
}

static rstream_t *rs_new(cvx_store_t *st)
{
    rstream_t *rs = calloc(1, sizeof(*rs));
    if (rs == NULL)
        return NULL;
    rs->base.st = st;
    rs->rm = store__rmt(st);
    rs->refs = 1;
    rs->handle = ++rs->rm->next_handle;
    rs->remote_ok = 1;
    rs->base.next = rs->rm->streams;
    if (rs->base.next != NULL)
        rs->base.next->prev = &rs->base;
    rs->rm->streams = &rs->base;
    return rs;
}

int store__r_deposit_open(cvx_store_t *st, const cvx_message_t *msg, cvx_store_stream_t **out)
{
    store_rmt_t *rm = store__rmt(st);
    if (rm->closing)
        return CVX_EUNAVAIL;
    if (msg == NULL || out == NULL || !cvx_store_valid_id(msg->id) ||
        !cvx_store_valid_number(msg->mailbox) || msg->codec > CVX_CODEC_ALAW || msg->rate == 0)
        return CVX_EINVAL;
    rstream_t *rs = rs_new(st);
    if (rs == NULL)
        return CVX_ENOMEM;
    rs->base.msg = *msg;
    rs->base.msg.id[CVX_STORE_ID_MAX - 1] = '\0';
    if (rs->base.msg.received_ms == 0)
        rs->base.msg.received_ms = store__now_ms();
    /* The system server refuses new messages (its licence is not proven): callers are still
     * served, and the message waits in the spool until it accepts them again (issue 12). */
    const char *why = NULL;
    if (!cvx_license_accepting_messages(&why)) {
        lost_remote(rs, CVX_EPERM);
        cvx_warn("store: the system server refuses new messages (%s): message %s for mailbox "
                 "%s goes to the spool",
                 why, rs->base.msg.id, rs->base.msg.mailbox);
    }
    Cvxstore__Request rq = CVXSTORE__REQUEST__INIT;
    Cvxstore__Message pm;
    store__pb_from_message(&pm, &rs->base.msg);
    rq.message = &pm;
    send_step(rs, RM_DEPOSIT_OPEN, &rq);
    *out = &rs->base;
    return 0;
}

int store__r_greeting_open(cvx_store_t *st, const char *mailbox, cvx_greeting_t kind, uint8_t codec,
                           uint32_t rate, uint64_t expires_ms, uint32_t flags,
                           cvx_store_stream_t **out)
{
    store_rmt_t *rm = store__rmt(st);
    if (rm->closing || !rm->link.up(rm->link.ctx))
        return CVX_EUNAVAIL;
    if (out == NULL || !cvx_store_valid_number(mailbox) || (unsigned)kind >= CVX_GREETING_COUNT ||
        codec > CVX_CODEC_ALAW || rate == 0)
        return CVX_EINVAL;
    rstream_t *rs = rs_new(st);
    if (rs == NULL)
        return CVX_ENOMEM;
    rs->greeting = 1;
    rs->base.is_greeting = 1;
    store__copy(rs->base.mailbox, mailbox, sizeof(rs->base.mailbox));
    Cvxstore__Request rq = CVXSTORE__REQUEST__INIT;
    rq.number = (char *)mailbox;
    rq.kind = kind;
    rq.codec = codec;
    rq.rate = rate;
    rq.expires_ms = expires_ms;
    rq.flags = flags;
    send_step(rs, RM_GREETING_OPEN, &rq);
    if (!rs->remote_ok) {
        int rc = rs->remote_err;
        rs_unlist(rs);
        rs_unref(rs);
        return rc;
    }
    *out = &rs->base;
    return 0;
}

int store__r_append(cvx_store_stream_t *s, const void *data, size_t len)
{
    rstream_t *rs = (rstream_t *)s;
    if (rs->ending || data == NULL || len == 0 || len > CVX_STORE_CHUNK_MAX)
        return CVX_EINVAL;
    if (rs->rm->closing)
        return CVX_EUNAVAIL;
    if (!rs->greeting) {
        int rc = spool_draft_append(rs->rm->spool, rs->base.msg.id, rs->chunks, data, len);
        if (rc != 0)
            return rc;
        rs->chunks++;
        rs->len += len;
    } else if (!rs->remote_ok) {
        return rs->remote_err;
    }
    Cvxstore__Request rq = CVXSTORE__REQUEST__INIT;
    rq.data.data = (uint8_t *)data;
    rq.data.len = len;
    send_step(rs, RM_APPEND, &rq);
    return 0;
}

/* --- commit ---------------------------------------------------------------------------------- */

static void finish(rstream_t *rs, int status, const cvx_deposit_result_t *res)
{
    /* Taken by the system server, refused by it, or not spooled: the draft goes. */
    if (!rs->greeting && !rs->spooling)
        spool_draft_drop(rs->rm->spool, rs->base.msg.id);
    if (rs->cb != NULL)
        rs->cb(rs->arg, status, status == 0 ? res : NULL);
    rs_unref(rs);
}

static void spooled(void *arg, int status, const uint8_t sha256[32])
{
    rstream_t *rs = arg;
    store_rmt_t *rm = rs->rm;
    cvx_deposit_result_t res;
    memset(&res, 0, sizeof(res));
    if (status == 0) {
        store__copy(res.id, rs->base.msg.id, sizeof(res.id));
        res.bytes = rs->len;
        memcpy(res.sha256, sha256, 32);
        cvx_info("store: message %s for mailbox %s spooled (%zu bytes); %u waiting",
                 rs->base.msg.id, rs->base.msg.mailbox, rs->len, spool_depth(rm->spool));
        rm->spooled++;
        if (rm->link.set_spool_depth != NULL)
            rm->link.set_spool_depth(rm->link.ctx, spool_depth(rm->spool));
        store__fwd_kick(rm);
    } else {
        cvx_error("store: message %s for mailbox %s could not be spooled: %s", rs->base.msg.id,
                  rs->base.msg.mailbox, cvx_strerror(status));
        spool_draft_drop(rm->spool, rs->base.msg.id);
    }
    store__rmt_release(rm);
    finish(rs, status, &res);
}

static void to_spool(rstream_t *rs, int why)
{
    store_rmt_t *rm = rs->rm;
    if (rs->handle != 0 && rm->link.up(rm->link.ctx)) {
        /* The system server may hold part of it: drop that (best effort). */
        Cvxstore__Request rq = CVXSTORE__REQUEST__INIT;
        rq.handle = rs->handle;
        store__rmt_send(rm, RM_ABORT, &rq);
    }
    cvx_message_t m = rs->base.msg;
    m.duration_ms = rs->duration_ms;
    m.folder = CVX_FOLDER_NEW;
    rs->spooling = 1;
    int rc = spool_put_draft(rm->spool, &m, rs->chunks, cvx_strerror(why), spooled, rs);
    if (rc != 0) {
        rs->spooling = 0;
        cvx_error("store: message %s for mailbox %s could not be spooled: %s", m.id, m.mailbox,
                  cvx_strerror(rc));
        finish(rs, rc, NULL);
        return;
    }
    store__rmt_hold(rm);
}

static void commit_reply(void *arg, int status, const Cvxstore__Reply *r)
{
    rstream_t *rs = arg;
    rs->refs--; /* the call's reference; the owner's is released by finish() */
    if (status == 0 && (r == NULL || r->deposit == NULL))
        status = CVX_EPROTO;
    if (status == 0) {
        cvx_deposit_result_t res;
        memset(&res, 0, sizeof(res));
        store__copy(res.id, r->deposit->id, sizeof(res.id));
        res.duplicate = r->deposit->duplicate;
        res.shared_audio = r->deposit->shared_audio;
        res.bytes = r->deposit->bytes;
        if (r->deposit->sha256.len == 32)
            memcpy(res.sha256, r->deposit->sha256.data, 32);
        if (!rs->greeting) {
            rs->rm->live++;
            store__rmt_commit_latency(rs->rm, uv_hrtime() - rs->commit_ns);
        }
        finish(rs, 0, &res);
    } else if (!rs->greeting && store__rmt_transient(status) && !rs->rm->closing) {
        to_spool(rs, status);
    } else {
        finish(rs, status, NULL);
    }
}

int store__r_commit(cvx_store_stream_t *s, uint32_t duration_ms, cvx_store_commit_cb cb, void *arg)
{
    rstream_t *rs = (rstream_t *)s;
    if (rs->ending)
        return CVX_EINVAL;
    rs->ending = 1;
    rs_unlist(rs);
    rs->commit_ns = uv_hrtime();
    rs->duration_ms = duration_ms;
    rs->cb = cb;
    rs->arg = arg;
    store_rmt_t *rm = rs->rm;
    if (rs->remote_ok) {
        Cvxstore__Request rq = CVXSTORE__REQUEST__INIT;
        rq.handle = rs->handle;
        rq.duration_ms = duration_ms;
        int rc = store__rmt_call(rm, RM_COMMIT, &rq, commit_reply, rs);
        if (rc == 0) {
            rs->refs++;
            return 0;
        }
        lost_remote(rs, rc);
    }
    if (rs->greeting) {
        int rc = rs->remote_err;
        rs_unref(rs);
        return rc;
    }
    if (rm->closing) {
        rs_unref(rs);
        return CVX_EUNAVAIL;
    }
    cvx_message_t m = rs->base.msg;
    m.duration_ms = duration_ms;
    m.folder = CVX_FOLDER_NEW;
    rs->spooling = 1;
    int rc = spool_put_draft(rm->spool, &m, rs->chunks, cvx_strerror(rs->remote_err), spooled, rs);
    if (rc != 0) {
        spool_draft_drop(rm->spool, rs->base.msg.id);
        rs_unref(rs);
        return rc;
    }
    store__rmt_hold(rm);
    if (rs->handle != 0 && rm->link.up(rm->link.ctx)) {
        Cvxstore__Request rq = CVXSTORE__REQUEST__INIT;
        rq.handle = rs->handle;
        store__rmt_send(rm, RM_ABORT, &rq);
    }
    return 0;
}

void store__r_abort(cvx_store_stream_t *s)
{
    rstream_t *rs = (rstream_t *)s;
    if (rs->ending)
        return;
    rs->ending = 1;
    rs_unlist(rs);
    Cvxstore__Request rq = CVXSTORE__REQUEST__INIT;
    send_step(rs, RM_ABORT, &rq);
    if (!rs->greeting)
        spool_draft_drop(rs->rm->spool, rs->base.msg.id);
    rs_unref(rs);
}
