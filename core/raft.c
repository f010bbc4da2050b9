/*
 * The consensus engine (cvx/raft.h) on libraft 0.15 and its libuv I/O backend.
 *
 * libraft 0.15 has no role-change callback: a 50 ms timer watches raft_state() and the
 * leader and reports changes.  Its fsm apply cannot fail without stopping the replication of
 * every later entry, so our apply always returns 0 to libraft and carries the state
 * machine's own status to the proposer through the result pointer.
 */
#include "cvx/raft.h"

#include <raft.h>
#include <raft/uv.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cvx/error.h"
#include "cvx/log.h"

#define WATCH_MS 50

struct cvx_raft {
    struct raft raft;
    struct raft_io io;
    struct raft_fsm rfsm;
    cvx_raft_fsm_t fsm;
    void *fsm_arg;
    cvx_raft_role_fn role;
    void *role_arg;
    uv_loop_t *loop;
    uv_timer_t watch;
    int last_state;
    raft_id last_leader;
    raft_term last_term;
    int stopping;
    void (*on_stopped)(void *arg);
    void *stopped_arg;
    unsigned closing; /* handles and libraft still to close */
};

typedef struct propose {
    struct raft_apply req;
    cvx_raft_t *r;
    cvx_raft_done_fn cb;
    void *arg;
} propose_t;

typedef struct transfer {
    struct raft_transfer req;
    cvx_raft_t *r;
    cvx_raft_done_fn cb;
    void *arg;
} transfer_t;

/* libraft's errors, as ours. */
static int raft_err(int rv)
{
    switch (rv) {
    case 0:
        return 0;
    case RAFT_NOMEM:
        return CVX_ENOMEM;
    case RAFT_NOTLEADER:
    case RAFT_LEADERSHIPLOST:
        return CVX_ESTATE;
    case RAFT_CANCELED:
        return CVX_ECLOSED;
    case RAFT_BADID:
        return CVX_ENOTFOUND;
    default:
        return CVX_EIO;
    }
}

void cvx_raft_conf_defaults(cvx_raft_conf_t *conf)
{
    memset(conf, 0, sizeof(*conf));
    conf->election_timeout_ms = 1000;
    conf->heartbeat_timeout_ms = 100;
    conf->snapshot_threshold = 1024;
    conf->snapshot_trailing = 256;
}

/* --- the state machine -------------------------------------------------------------------- */

/* libraft's disk log pads every entry to a multiple of 8 bytes and gives it back padded
 * after a restart, so records (and snapshots) travel with a 4-byte length in front. */
#define HDR 4

static int unwrap(const struct raft_buffer *buf, const void **data, size_t *len)
{
    if (buf->len < HDR)
        return CVX_ECORRUPT;
    const unsigned char *p = buf->base;
    size_t n = (size_t)p[0] | (size_t)p[1] << 8 | (size_t)p[2] << 16 | (size_t)p[3] << 24;
    if (n > buf->len - HDR)
        return CVX_ECORRUPT;
    *data = p + HDR;
    *len = n;
    return 0;
}

/* A raft_malloc()ed copy of data behind its length. */
static void *wrap(const void *data, size_t len, size_t *out_len)
{
    unsigned char *p = raft_malloc(HDR + len);
    if (p == NULL)
        return NULL;
    p[0] = (unsigned char)len;
    p[1] = (unsigned char)(len >> 8);
    p[2] = (unsigned char)(len >> 16);
    p[3] = (unsigned char)(len >> 24);
    if (len > 0)
        memcpy(p + HDR, data, len);
    *out_len = HDR + len;
    return p;
}

static int fsm_apply(struct raft_fsm *f, const struct raft_buffer *buf, void **result)
{
    cvx_raft_t *r = f->data;
    /* The entry being applied comes right after the last one applied. */
    uint64_t index = raft_last_applied(&r->raft) + 1;
    const void *data;
    size_t len;
    int rc = unwrap(buf, &data, &len);
    if (rc == 0)
        rc = r->fsm.apply(r->fsm_arg, index, data, len);
    else
        cvx_error("raft %llu: entry %llu is malformed; not applied", (unsigned long long)r->raft.id,
                  (unsigned long long)index);
    *result = (void *)(intptr_t)rc;
    return 0;
}

static int fsm_snapshot(struct raft_fsm *f, struct raft_buffer *bufs[], unsigned *n)
{
    cvx_raft_t *r = f->data;
    void *data = NULL;
    size_t len = 0;
    int rc = r->fsm.snapshot(r->fsm_arg, &data, &len);
    if (rc != 0)
        return RAFT_IOERR;
    *bufs = raft_malloc(sizeof(**bufs));
    size_t wlen = 0;
    void *copy = wrap(data, len, &wlen);
    free(data);
    if (*bufs == NULL || copy == NULL) {
        raft_free(*bufs);
        raft_free(copy);
        return RAFT_NOMEM;
    }
    (*bufs)[0].base = copy;
    (*bufs)[0].len = wlen;
    *n = 1;
    return 0;
}

static int fsm_restore(struct raft_fsm *f, struct raft_buffer *buf)
{
    cvx_raft_t *r = f->data;
    const void *data;
    size_t len;
    int rc = unwrap(buf, &data, &len);
    if (rc == 0)
        rc = r->fsm.restore(r->fsm_arg, data, len);
    if (rc != 0)
        return RAFT_IOERR;
    raft_free(buf->base); /* libraft hands the snapshot's memory over on success */
    return 0;
}

/* --- roles ----------------------------------------------------------------------------------- */

static void on_watch(uv_timer_t *t)
{
    cvx_raft_t *r = t->data;
    int state = raft_state(&r->raft);
    raft_id leader = 0;
    const char *address = NULL;
    raft_leader(&r->raft, &leader, &address);
    raft_term term = r->raft.current_term;
    if (state == r->last_state && leader == r->last_leader)
        return;
    int was_leader = r->last_state == RAFT_LEADER;
    r->last_state = state;
    r->last_leader = leader;
    r->last_term = term;
    if ((state == RAFT_LEADER) != was_leader || state == RAFT_LEADER || leader != 0)
        cvx_info("raft %llu: %s, leader %llu, term %llu", (unsigned long long)r->raft.id,
                 state == RAFT_LEADER      ? "leader"
                 : state == RAFT_CANDIDATE ? "candidate"
                 : state == RAFT_FOLLOWER  ? "follower"
                                           : "unavailable",
                 (unsigned long long)leader, (unsigned long long)term);
    if (r->role != NULL)
        r->role(r->role_arg, state == RAFT_LEADER, leader, term);
}

/* --- life ------------------------------------------------------------------------------------ */

static void on_raft_closed(struct raft *raft);

int cvx_raft_start(uv_loop_t *loop, const cvx_raft_conf_t *conf, const cvx_raft_fsm_t *fsm,
                   void *fsm_arg, cvx_raft_role_fn role, void *role_arg, cvx_raft_t **out,
                   char *err, size_t errlen)
{
    if (conf->transport == NULL || conf->dir == NULL || conf->address == NULL || conf->id == 0 ||
        fsm == NULL || fsm->apply == NULL || fsm->snapshot == NULL || fsm->restore == NULL) {
        snprintf(err, errlen, "raft: incomplete configuration");
        return CVX_EINVAL;
    }
    cvx_raft_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return CVX_ENOMEM;
    r->fsm = *fsm;
    r->fsm_arg = fsm_arg;
    r->role = role;
    r->role_arg = role_arg;
    r->loop = loop;
    r->last_state = -1;
    r->rfsm.version = 1;
    r->rfsm.data = r;
    r->rfsm.apply = fsm_apply;
    r->rfsm.snapshot = fsm_snapshot;
    r->rfsm.restore = fsm_restore;

    int rv = raft_uv_init(&r->io, loop, conf->dir, conf->transport);
    if (rv != 0) {
        snprintf(err, errlen, "raft: cannot use %s: %s", conf->dir, r->io.errmsg);
        free(r);
        return CVX_EIO;
    }
    rv = raft_init(&r->raft, &r->io, &r->rfsm, conf->id, conf->address);
    if (rv != 0) {
        snprintf(err, errlen, "raft: %s", raft_errmsg(&r->raft));
        raft_uv_close(&r->io);
        free(r);
        return CVX_EIO;
    }
    struct raft_configuration c;
    raft_configuration_init(&c);
    for (unsigned i = 0; rv == 0 && i < conf->nmembers; i++)
        rv = raft_configuration_add(&c, conf->members[i].id, conf->members[i].address,
                                    conf->members[i].voter ? RAFT_VOTER : RAFT_STANDBY);
    if (rv == 0)
        rv = raft_bootstrap(&r->raft, &c);
    raft_configuration_close(&c);
    if (rv != 0 && rv != RAFT_CANTBOOTSTRAP) { /* CANTBOOTSTRAP: the log exists already */
        snprintf(err, errlen, "raft: cannot bootstrap in %s: %s", conf->dir, raft_errmsg(&r->raft));
        goto fail;
    }
    raft_set_election_timeout(&r->raft, conf->election_timeout_ms);
    raft_set_heartbeat_timeout(&r->raft, conf->heartbeat_timeout_ms);
    raft_set_snapshot_threshold(&r->raft, conf->snapshot_threshold);
    raft_set_snapshot_trailing(&r->raft, conf->snapshot_trailing);
    raft_set_pre_vote(&r->raft, true);
    rv = raft_start(&r->raft);
    if (rv != 0) {
        snprintf(err, errlen, "raft: cannot start: %s", raft_errmsg(&r->raft));
        goto fail;
    }
    uv_timer_init(loop, &r->watch);
    r->watch.data = r;
    uv_timer_start(&r->watch, on_watch, WATCH_MS, WATCH_MS);
    *out = r;
    return 0;

fail:
    /* raft_close releases what raft_init took; r is freed once it is done (on the loop). */
    r->stopping = 1;
    r->closing = 1;
    raft_close(&r->raft, on_raft_closed);
    return CVX_EIO;
}

/* --- proposals -------------------------------------------------------------------------------- */

static void on_applied(struct raft_apply *req, int status, void *result)
{
    propose_t *p = req->data;
    int rc = status == 0 ? (int)(intptr_t)result : raft_err(status);
    uint64_t index = status == 0 ? raft_last_applied(&p->r->raft) : 0;
    if (p->cb != NULL)
        p->cb(p->arg, rc, index);
    free(p);
}

int cvx_raft_propose(cvx_raft_t *r, const void *data, size_t len, cvx_raft_done_fn cb, void *arg)
{
    if (r->stopping || raft_state(&r->raft) != RAFT_LEADER)
        return CVX_ESTATE;
    if (len > UINT32_MAX - HDR)
        return CVX_EINVAL;
    propose_t *p = calloc(1, sizeof(*p));
    struct raft_buffer buf = {0};
    buf.base = wrap(data, len, &buf.len);
    if (p == NULL || buf.base == NULL) {
        free(p);
        raft_free(buf.base);
        return CVX_ENOMEM;
    }
    p->r = r;
    p->cb = cb;
    p->arg = arg;
    p->req.data = p;
    int rv = raft_apply(&r->raft, &p->req, &buf, 1, on_applied);
    if (rv != 0) {
        raft_free(buf.base);
        free(p);
        return raft_err(rv);
    }
    return 0;
}

static void on_transferred(struct raft_transfer *req)
{
    transfer_t *t = req->data;
    cvx_raft_t *r = t->r;
    int ok = raft_state(&r->raft) != RAFT_LEADER;
    if (t->cb != NULL)
        t->cb(t->arg, ok ? 0 : CVX_ETIMEOUT, 0);
    free(t);
}

int cvx_raft_transfer(cvx_raft_t *r, uint64_t id, cvx_raft_done_fn cb, void *arg)
{
    if (r->stopping || raft_state(&r->raft) != RAFT_LEADER)
        return CVX_ESTATE;
    transfer_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return CVX_ENOMEM;
    t->r = r;
    t->cb = cb;
    t->arg = arg;
    t->req.data = t;
    int rv = raft_transfer(&r->raft, &t->req, id, on_transferred);
    if (rv != 0) {
        free(t);
        return raft_err(rv);
    }
    return 0;
}

void cvx_raft_status(cvx_raft_t *r, cvx_raft_status_t *st)
{
    memset(st, 0, sizeof(*st));
    const char *address = NULL;
    raft_id leader = 0;
    raft_leader(&r->raft, &leader, &address);
    st->leader = raft_state(&r->raft) == RAFT_LEADER;
    st->leader_id = leader;
    st->term = r->raft.current_term;
    st->last_index = raft_last_index(&r->raft);
    st->commit_index = r->raft.commit_index;
    st->applied_index = raft_last_applied(&r->raft);
    const struct raft_configuration *c = &r->raft.configuration;
    for (unsigned i = 0; i < c->n && st->nmembers < CVX_RAFT_MEMBERS_MAX; i++) {
        unsigned k = st->nmembers++;
        st->members[k].id = c->servers[i].id;
        st->members[k].voter = c->servers[i].role == RAFT_VOTER;
        if (st->leader && r->raft.leader_state.progress != NULL) {
            st->members[k].match_index = r->raft.leader_state.progress[i].match_index;
            st->members[k].recent = r->raft.leader_state.progress[i].recent_recv;
        }
    }
}

/* --- stop ----------------------------------------------------------------------------------- */

static void stop_step(cvx_raft_t *r)
{
    if (--r->closing > 0)
        return;
    void (*cb)(void *) = r->on_stopped;
    void *arg = r->stopped_arg;
    free(r);
    if (cb != NULL)
        cb(arg);
}

static void on_watch_closed(uv_handle_t *h)
{
    stop_step(h->data);
}

static void on_raft_closed(struct raft *raft)
{
    cvx_raft_t *r = (cvx_raft_t *)((char *)raft - offsetof(cvx_raft_t, raft));
    raft_uv_close(&r->io);
    stop_step(r);
}

void cvx_raft_stop(cvx_raft_t *r, void (*on_stopped)(void *arg), void *arg)
{
    if (r == NULL || r->stopping)
        return;
    r->stopping = 1;
    r->on_stopped = on_stopped;
    r->stopped_arg = arg;
    r->closing = 2;
    uv_close((uv_handle_t *)&r->watch, on_watch_closed);
    raft_close(&r->raft, on_raft_closed);
}
