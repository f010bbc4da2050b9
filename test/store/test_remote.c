/*
 * The store's service interface over the link, with both sides in one process: a local store
 * served by serve.c, and a remote store (remote.c, rstream.c, the spool and its forwarder)
 * whose link is an in-process loopback here.  The loopback keeps the link's contract: frames
 * in order, every call answered once (CVX_EUNAVAIL for the calls in flight when it goes
 * down), calls refused at once while it is down.  The real link (TLS, processes) is covered by
 * test/split/.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cvx/error.h"
#include "remote.h"
#include "spool.h"
#include "storetest.h"

/* --- the loopback link ------------------------------------------------------------------------ */

typedef struct pcall pcall_t;
struct pcall {
    pcall_t *next; /* lb.calls: waiting for a reply */
    cvx_link_reply_fn cb;
    void *arg;
    uint32_t method;
    int dead; /* answered with CVX_EUNAVAIL when the link went down */
    int answered;
};

enum { F_CALL, F_REPLY, F_PUSH };
typedef struct frame frame_t;
struct frame {
    frame_t *next;
    int type;
    uint32_t method;
    int status;
    pcall_t *call;
    size_t len;
    uint8_t body[];
};

static struct lb {
    uv_loop_t *loop;
    uv_idle_t idle;
    store_server_t *srv;
    cvx_store_t *remote;
    int up;
    uint64_t epoch;
    frame_t *head, *tail;
    pcall_t *calls;
    /* faults */
    int drop_commit_reply; /* the next commit's reply is lost and the link goes down */
    int down_after_commit; /* the link goes down as soon as the server has the commit */
    int pending_down;
    unsigned calls_sent, commits;
} lb;

static void lb_process(uv_idle_t *h);

static void enqueue(int type, uint32_t method, int status, pcall_t *c, const void *body, size_t len)
{
    frame_t *f = malloc(sizeof(*f) + len);
    assert_non_null(f);
    f->next = NULL;
    f->type = type;
    f->method = method;
    f->status = status;
    f->call = c;
    f->len = len;
    if (len > 0)
        memcpy(f->body, body, len);
    if (lb.tail != NULL)
        lb.tail->next = f;
    else
        lb.head = f;
    lb.tail = f;
    uv_idle_start(&lb.idle, lb_process);
}

static void drop_call(pcall_t *c)
{
    for (pcall_t **pp = &lb.calls; *pp != NULL; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            return;
        }
}

static void lb_down(void)
{
    if (!lb.up)
        return;
    lb.up = 0;
    while (lb.head != NULL) {
        frame_t *f = lb.head;
        lb.head = f->next;
        if (f->type == F_CALL)
            f->call->answered = 1; /* never reached the server: no reply will come */
        free(f);
    }
    lb.tail = NULL;
    /* Like the link: the calls waiting complete with CVX_EUNAVAIL, the server forgets the
     * call server's streams, the client hears the link is down. */
    while (lb.calls != NULL) {
        pcall_t *c = lb.calls;
        lb.calls = c->next;
        c->dead = 1;
        c->cb(c->arg, CVX_EUNAVAIL, NULL, 0);
        if (c->answered)
            free(c);
    }
    cvx__store_server_peer_down(lb.srv, "cs1");
    cvx__store_remote_link_state(lb.remote, 0, 0);
}

static void lb_up(uint64_t epoch)
{
    lb.up = 1;
    lb.epoch = epoch;
    cvx__store_remote_link_state(lb.remote, 1, epoch);
}

static void lb_process(uv_idle_t *h)
{
    (void)h;
    while (lb.head != NULL) {
        frame_t *f = lb.head;
        lb.head = f->next;
        if (lb.head == NULL)
            lb.tail = NULL;
        if (f->type == F_CALL) {
            cvx__store_server_method(lb.srv, f->call, "cs1", f->method, f->body, f->len);
            if (lb.down_after_commit && f->method == RM(RM_COMMIT)) {
                lb.down_after_commit = 0;
                free(f);
                lb_down(); /* drops what is queued; the commit goes on in the writer */
                return;
            }
        } else if (f->type == F_REPLY) {
            pcall_t *c = f->call;
            drop_call(c);
            c->cb(c->arg, f->status, f->body, f->len);
            free(c);
        } else {
            cvx__store_remote_push(lb.remote, f->method, f->body, f->len);
        }
        free(f);
    }
    uv_idle_stop(&lb.idle);
    if (lb.pending_down) {
        lb.pending_down = 0;
        lb_down();
    }
}

static int l_up(void *ctx)
{
    (void)ctx;
    return lb.up;
}

static int l_call(void *ctx, uint32_t method, const void *body, size_t len, cvx_link_reply_fn cb,
                  void *arg)
{
    (void)ctx;
    if (!lb.up)
        return CVX_EUNAVAIL;
    pcall_t *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->cb = cb;
    c->arg = arg;
    c->method = method;
    c->next = lb.calls;
    lb.calls = c;
    lb.calls_sent++;
    enqueue(F_CALL, method, 0, c, body, len);
    return 0;
}

static int l_push(void *ctx, uint32_t method, const void *body, size_t len)
{
    (void)ctx;
    (void)method;
    (void)body;
    (void)len;
    return 0;
}

static uint32_t reported_depth;
static void l_depth(void *ctx, uint32_t n)
{
    (void)ctx;
    reported_depth = n;
}

static int io_reply(void *ctx, void *req, int status, const void *body, size_t len)
{
    (void)ctx;
    pcall_t *c = req;
    if (c->dead) {
        free(c); /* the call server went away: the reply is dropped */
        return 0;
    }
    c->answered = 1;
    if (lb.drop_commit_reply && c->method == RM(RM_COMMIT)) {
        /* The commit is done on the system server, but its answer is lost: the link breaks
         * before it arrives (the call gets CVX_EUNAVAIL). */
        lb.drop_commit_reply = 0;
        lb.pending_down = 1;
        uv_idle_start(&lb.idle, lb_process);
        return 0;
    }
    enqueue(F_REPLY, 0, status, c, body, len);
    return 0;
}

static int io_push_all(void *ctx, uint32_t method, const void *body, size_t len)
{
    (void)ctx;
    if (lb.up)
        enqueue(F_PUSH, method, 0, NULL, body, len);
    return 0;
}

/* --- fixture ---------------------------------------------------------------------------------- */

typedef struct fx {
    st_env_t e; /* the system server's store (e.st) */
    cvx_store_t *local;
    char spool[300];
} fx_t;

static const store_link_t link_ops = {l_up, l_call, l_push, l_depth, NULL};

static void open_remote(fx_t *f)
{
    store_remote_conf_t conf;
    memset(&conf, 0, sizeof(conf));
    conf.spool_path = f->spool;
    conf.retry_ms = 10;
    conf.retry_max_ms = 50;
    char err[256];
    assert_int_equal(
        cvx__store_remote_open(&f->e.loop, &link_ops, &conf, &lb.remote, err, sizeof(err)), 0);
}

static void on_closed(void *arg)
{
    *(int *)arg = 1;
}

static void close_remote(fx_t *f)
{
    int closed = 0;
    cvx_store_close(lb.remote, on_closed, &closed);
    st_run(&f->e, &closed);
    lb.remote = NULL;
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    st_init(&f->e);
    assert_int_equal(st_open(&f->e), 0);
    f->local = f->e.st;
    snprintf(f->spool, sizeof(f->spool), "%s/spool", f->e.dir);
    memset(&lb, 0, sizeof(lb));
    lb.loop = &f->e.loop;
    uv_idle_init(lb.loop, &lb.idle);
    static const store_server_io_t io = {io_reply, io_push_all, NULL};
    lb.srv = cvx__store_server_create(f->local, &io);
    assert_non_null(lb.srv);
    open_remote(f);
    lb_up(1);
    assert_int_equal(st_put(&f->e, "2001", "Ada", "Lovelace", CVX_PUT_CREATE), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    f->e.st = f->local;
    lb_down();
    if (lb.remote != NULL)
        close_remote(f);
    cvx__store_server_destroy(lb.srv);
    uv_close((uv_handle_t *)&lb.idle, NULL);
    st_fini(&f->e);
    free(f);
    return 0;
}

/* Runs a helper of storetest.h against the remote store. */
#define REMOTE(f, call)                                                                            \
    ({                                                                                             \
        (f)->e.st = lb.remote;                                                                     \
        int rc_ = (call);                                                                          \
        (f)->e.st = (f)->local;                                                                    \
        rc_;                                                                                       \
    })

static void tick(uv_timer_t *t)
{
    (void)t;
}

static void run_until(fx_t *f, int (*cond)(void), int max_ms)
{
    uint64_t end = uv_now(&f->e.loop) + (uint64_t)max_ms;
    uv_timer_t t;
    uv_timer_init(&f->e.loop, &t);
    uv_timer_start(&t, tick, 5, 5); /* wakes the loop */
    while (!cond() && uv_now(&f->e.loop) < end)
        uv_run(&f->e.loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&f->e.loop, UV_RUN_NOWAIT);
}

static int spool_settled(void)
{
    return cvx__store_spool_settled(lb.remote);
}

static int spool_empty(void)
{
    return cvx__store_spool_depth(lb.remote) == 0;
}

/* --- waiting for callbacks ------------------------------------------------------------------ */

typedef struct cwait {
    int done, status;
    cvx_deposit_result_t res;
} cwait_t;

static void on_commit(void *arg, int status, const cvx_deposit_result_t *r)
{
    cwait_t *w = arg;
    w->status = status;
    if (r != NULL)
        w->res = *r;
    w->done = 1;
}

typedef struct mwait {
    int done, status;
    cvx_mwi_t m;
} mwait_t;

static void on_get(void *arg, int status, const cvx_mwi_t *m)
{
    mwait_t *w = arg;
    w->status = status;
    if (m != NULL)
        w->m = *m;
    w->done = 1;
}

typedef struct pwait {
    int done, status;
    cvx_pin_result_t r;
} pwait_t;

static void on_pin(void *arg, int status, const cvx_pin_result_t *r)
{
    pwait_t *w = arg;
    w->status = status;
    if (r != NULL)
        w->r = *r;
    w->done = 1;
}

static void on_put(void *arg, int status, const uint8_t sha256[32])
{
    (void)sha256;
    *(int *)arg = status == 0 ? 1 : -1;
}

static void on_raw(void *arg, int st, const uint8_t *body, size_t len)
{
    (void)body;
    (void)len;
    *(int *)arg = st;
}

/* --- tests ------------------------------------------------------------------------------------ */

static void test_mailbox_over_link(void **state)
{
    fx_t *f = *state;
    cvx_mailbox_t mb;
    assert_int_equal(REMOTE(f, st_get(&f->e, "2001", &mb)), 0);
    assert_string_equal(mb.first_name, "Ada");
    assert_string_equal(mb.last_name, "Lovelace");
    /* "no such mailbox" stays distinct from "unavailable" */
    assert_int_equal(REMOTE(f, st_get(&f->e, "2999", &mb)), CVX_ENOTFOUND);
    assert_int_equal(REMOTE(f, st_put(&f->e, "2002", "Alan", "Turing", CVX_PUT_CREATE)), 0);
    assert_int_equal(st_get(&f->e, "2002", &mb), 0); /* it is on the system server */
    assert_string_equal(mb.last_name, "Turing");
    assert_int_equal(REMOTE(f, st_put(&f->e, "2002", "A", "T", CVX_PUT_CREATE)), CVX_EEXIST);

    /* The system server away: a mailbox seen before answers from its last known record, one
     * never seen is unavailable (not "not found"). */
    run_until(f, spool_settled, 2000); /* the records seen are written */
    lb_down();
    memset(&mb, 0, sizeof(mb));
    assert_int_equal(REMOTE(f, st_get(&f->e, "2001", &mb)), 0);
    assert_string_equal(mb.last_name, "Lovelace");
    assert_int_equal(REMOTE(f, st_get(&f->e, "2002", &mb)), CVX_EUNAVAIL);
    assert_int_equal(REMOTE(f, st_del(&f->e, "2001")), CVX_EUNAVAIL);
    store_cache_stats_t cs;
    cvx__store_cache_stats(lb.remote, &cs);
    assert_int_equal(cs.served_stale, 1);
}

static void test_deposit_live(void **state)
{
    fx_t *f = *state;
    uint8_t audio[40000], back[50000];
    st_audio_for("m1", audio, sizeof(audio));
    cvx_deposit_result_t res;
    assert_int_equal(REMOTE(f, st_deposit(&f->e, "m1", "2001", audio, sizeof(audio), 3000, &res)),
                     0);
    assert_int_equal(res.duplicate, 0);
    assert_int_equal(res.bytes, sizeof(audio));
    assert_int_equal(cvx__store_spool_depth(lb.remote), 0);
    run_until(f, spool_settled, 2000);
    assert_int_equal(cvx__store_spool_chunks(lb.remote), 0); /* its draft is gone */
    /* the system server has it, intact, and the call server plays it back over the link */
    size_t n = 0;
    assert_int_equal(st_play_msg(&f->e, "m1", back, sizeof(back), &n), 0);
    assert_int_equal(n, sizeof(audio));
    assert_memory_equal(back, audio, n);
    n = 0;
    memset(back, 0, sizeof(back));
    assert_int_equal(REMOTE(f, st_play_msg(&f->e, "m1", back, sizeof(back), &n)), 0);
    assert_int_equal(n, sizeof(audio));
    assert_memory_equal(back, audio, n);
    cvx_message_t m[4];
    size_t cnt = 0;
    assert_int_equal(REMOTE(f, st_list(&f->e, "2001", CVX_FOLDER_NEW, m, 4, &cnt)), 0);
    assert_int_equal(cnt, 1);
    assert_string_equal(m[0].id, "m1");
    assert_int_equal(m[0].bytes, sizeof(audio));
    assert_int_equal(REMOTE(f, st_move(&f->e, "m1", CVX_FOLDER_SAVED)), 0);
    assert_int_equal(st_msg(&f->e, "m1", &m[0]), 0);
    assert_int_equal(m[0].folder, CVX_FOLDER_SAVED);
    /* a deposit into a mailbox the system server does not have is refused, not spooled */
    assert_int_equal(REMOTE(f, st_deposit(&f->e, "m2", "2999", audio, 100, 100, &res)),
                     CVX_ENOTFOUND);
    assert_int_equal(cvx__store_spool_depth(lb.remote), 0);
}

typedef struct spool_seen {
    int n;
    store_spool_info_t first;
} spool_seen_t;

static int seen(void *arg, const store_spool_info_t *i)
{
    spool_seen_t *s = arg;
    if (s->n++ == 0)
        s->first = *i;
    return 0;
}

static void test_spool_and_forward(void **state)
{
    fx_t *f = *state;
    static uint8_t a1[20000], a2[300000], back[400000];
    st_audio_for("s1", a1, sizeof(a1));
    st_audio_for("s2", a2, sizeof(a2));
    cvx_mailbox_t mb;
    assert_int_equal(REMOTE(f, st_get(&f->e, "2001", &mb)), 0); /* known to the call server */

    /* Down before the recording: the commit is acknowledged once the spool has it. */
    lb_down();
    cvx_deposit_result_t res;
    assert_int_equal(REMOTE(f, st_deposit(&f->e, "s1", "2001", a1, sizeof(a1), 4000, &res)), 0);
    assert_int_equal(res.bytes, sizeof(a1));
    assert_int_equal(cvx__store_spool_depth(lb.remote), 1);
    assert_int_equal(reported_depth, 1);
    cvx_message_t m;
    assert_int_equal(st_msg(&f->e, "s1", &m), CVX_ENOTFOUND);

    /* Down during the recording: opened and partly streamed, then the link drops. */
    lb_up(1);
    cvx_message_t msg = {0};
    snprintf(msg.id, sizeof(msg.id), "s2");
    snprintf(msg.mailbox, sizeof(msg.mailbox), "2001");
    msg.codec = CVX_CODEC_ULAW;
    msg.rate = 8000;
    msg.received_ms = 1700000000123ULL; /* its original receive time travels with it */
    cvx_store_stream_t *s;
    assert_int_equal(cvx_store_deposit_open(lb.remote, &msg, &s), 0);
    assert_int_equal(cvx_store_stream_append(s, a2, 100000), 0);
    uv_run(&f->e.loop, UV_RUN_NOWAIT);
    lb_down();
    assert_int_equal(cvx_store_stream_append(s, a2 + 100000, sizeof(a2) - 100000), 0);
    cwait_t w = {0};
    assert_int_equal(cvx_store_stream_commit(s, 1234, on_commit, &w), 0);
    st_run(&f->e, &w.done);
    assert_int_equal(w.status, 0);
    assert_int_equal(cvx__store_spool_depth(lb.remote), 2);

    spool_seen_t sp = {0};
    assert_int_equal(cvx__store_spool_foreach(lb.remote, seen, &sp), 2);
    assert_string_equal(sp.first.id, "s2"); /* oldest first: by receive time */
    assert_int_equal(sp.first.received_ms, 1700000000123ULL);
    assert_int_equal(sp.first.bytes, sizeof(a2));

    /* The link returns: both arrive, once, intact, and leave the spool. */
    lb_up(1);
    run_until(f, spool_empty, 5000);
    assert_int_equal(cvx__store_spool_depth(lb.remote), 0);
    assert_int_equal(reported_depth, 0);
    assert_int_equal(cvx__store_spool_chunks(lb.remote), 0);
    size_t n = 0;
    assert_int_equal(st_play_msg(&f->e, "s1", back, sizeof(back), &n), 0);
    assert_int_equal(n, sizeof(a1));
    assert_memory_equal(back, a1, n);
    assert_int_equal(st_play_msg(&f->e, "s2", back, sizeof(back), &n), 0);
    assert_int_equal(n, sizeof(a2));
    assert_memory_equal(back, a2, n);
    assert_int_equal(st_msg(&f->e, "s2", &m), 0);
    assert_int_equal(m.received_ms, 1700000000123ULL);
    assert_int_equal(m.duration_ms, 1234);
    cvx_message_t all[8];
    size_t cnt = 0;
    assert_int_equal(st_list(&f->e, "2001", CVX_FOLDER_ANY, all, 8, &cnt), 0);
    assert_int_equal(cnt, 2);
}

static void test_lost_commit_reply_is_not_duplicated(void **state)
{
    fx_t *f = *state;
    uint8_t a[9000];
    st_audio_for("d1", a, sizeof(a));
    /* The system server commits, but its answer is lost with the link: the call server cannot
     * know, spools the message, and forwards it later; the system server reports it as a
     * duplicate and stores nothing more. */
    lb.drop_commit_reply = 1;
    cvx_deposit_result_t res;
    assert_int_equal(REMOTE(f, st_deposit(&f->e, "d1", "2001", a, sizeof(a), 3000, &res)), 0);
    assert_int_equal(cvx__store_spool_depth(lb.remote), 1);
    cvx_message_t m;
    assert_int_equal(st_msg(&f->e, "d1", &m), 0); /* it did arrive */
    lb_up(1);
    run_until(f, spool_empty, 5000);
    assert_int_equal(cvx__store_spool_depth(lb.remote), 0);
    cvx_message_t all[4];
    size_t cnt = 0;
    assert_int_equal(st_list(&f->e, "2001", CVX_FOLDER_ANY, all, 4, &cnt), 0);
    assert_int_equal(cnt, 1);
    cvx_mailbox_t mb;
    assert_int_equal(st_get(&f->e, "2001", &mb), 0);
    assert_int_equal(mb.msgs_new, 1);
}

static void test_link_lost_during_commit(void **state)
{
    fx_t *f = *state;
    uint8_t a[7000];
    st_audio_for("c1", a, sizeof(a));
    /* The call server goes away while the system server's writer has the commit: the commit
     * completes there, the call server spools its copy, and forwarding it later reports a
     * duplicate.  One message, nothing freed twice (ASan). */
    lb.down_after_commit = 1;
    assert_int_equal(REMOTE(f, st_deposit(&f->e, "c1", "2001", a, sizeof(a), 7000, NULL)), 0);
    assert_int_equal(cvx__store_spool_depth(lb.remote), 1);
    lb_up(1);
    run_until(f, spool_empty, 5000);
    assert_int_equal(cvx__store_spool_depth(lb.remote), 0);
    cvx_message_t all[4];
    size_t cnt = 0;
    assert_int_equal(st_list(&f->e, "2001", CVX_FOLDER_ANY, all, 4, &cnt), 0);
    assert_int_equal(cnt, 1);
    assert_string_equal(all[0].id, "c1");
}

static void test_spool_survives_restart(void **state)
{
    fx_t *f = *state;
    uint8_t a[5000], back[6000];
    st_audio_for("r1", a, sizeof(a));
    lb_down();
    assert_int_equal(REMOTE(f, st_deposit(&f->e, "r1", "2001", a, sizeof(a), 5000, NULL)), 0);
    close_remote(f); /* the call server stops (or is killed after the fsync) */
    reported_depth = 0;
    open_remote(f);
    assert_int_equal(cvx__store_spool_depth(lb.remote), 1);
    assert_int_equal(reported_depth, 1);
    lb_up(7);
    run_until(f, spool_empty, 5000);
    size_t n = 0;
    assert_int_equal(st_play_msg(&f->e, "r1", back, sizeof(back), &n), 0);
    assert_int_equal(n, sizeof(a));
    assert_memory_equal(back, a, n);
}

static void test_unfinished_recordings_dropped(void **state)
{
    fx_t *f = *state;
    uint8_t a[3000];
    st_audio_for("u1", a, sizeof(a));
    /* A recording still open when the store closes is aborted, its draft dropped. */
    lb_down();
    cvx_message_t msg = {0};
    snprintf(msg.id, sizeof(msg.id), "u1");
    snprintf(msg.mailbox, sizeof(msg.mailbox), "2001");
    msg.codec = CVX_CODEC_ULAW;
    msg.rate = 8000;
    cvx_store_stream_t *s;
    assert_int_equal(cvx_store_deposit_open(lb.remote, &msg, &s), 0);
    assert_int_equal(cvx_store_stream_append(s, a, sizeof(a)), 0);
    close_remote(f);
    open_remote(f);
    assert_int_equal(cvx__store_spool_chunks(lb.remote), 0);
    assert_int_equal(cvx__store_spool_depth(lb.remote), 0);
    close_remote(f);

    /* A call server that stopped in the middle (kill -9) leaves a draft with no entry: the
     * next open removes it, and keeps what is spooled. */
    char err[256];
    spool_t *sp;
    assert_int_equal(spool_open(&f->e.loop, f->spool, 0, &sp, err, sizeof(err)), 0);
    assert_int_equal(spool_draft_append(sp, "u2", 0, a, 1000), 0);
    assert_int_equal(spool_draft_append(sp, "u2", 1, a + 1000, 1000), 0);
    cvx_message_t m = msg;
    snprintf(m.id, sizeof(m.id), "u3");
    assert_int_equal(spool_draft_append(sp, "u3", 0, a, sizeof(a)), 0);
    int put = 0;
    assert_int_equal(spool_put_draft(sp, &m, 1, "test", on_put, &put), 0);
    int closed = 0;
    spool_close(sp, on_closed, &closed);
    st_run(&f->e, &closed);
    assert_int_equal(put, 1);
    open_remote(f);
    assert_int_equal(cvx__store_spool_depth(lb.remote), 1);
    assert_int_equal(cvx__store_spool_chunks(lb.remote), 1); /* u3's; u2's are gone */
    lb_up(3);
    run_until(f, spool_empty, 5000);
    assert_int_equal(cvx__store_spool_chunks(lb.remote), 0);
    uint8_t back[4000];
    size_t n = 0;
    assert_int_equal(st_play_msg(&f->e, "u3", back, sizeof(back), &n), 0);
    assert_int_equal(n, sizeof(a));
    assert_memory_equal(back, a, n);
}

static void test_held_when_refused(void **state)
{
    fx_t *f = *state;
    uint8_t a[1000];
    st_audio_for("h1", a, sizeof(a));
    cvx_mailbox_t mb;
    assert_int_equal(st_put(&f->e, "2003", "Grace", "Hopper", CVX_PUT_CREATE), 0);
    assert_int_equal(REMOTE(f, st_get(&f->e, "2003", &mb)), 0);
    lb_down();
    assert_int_equal(REMOTE(f, st_deposit(&f->e, "h1", "2003", a, sizeof(a), 1000, NULL)), 0);
    assert_int_equal(REMOTE(f, st_deposit(&f->e, "h2", "2001", a, sizeof(a), 1000, NULL)), 0);
    assert_int_equal(st_del(&f->e, "2003"), 0); /* meanwhile, the mailbox is deleted */
    lb_up(1);
    cvx_message_t m;
    for (int i = 0; i < 200 && st_msg(&f->e, "h2", &m) != 0; i++)
        run_until(f, spool_empty, 10);
    run_until(f, spool_empty, 100);
    /* h2 got through; h1 is held with the system server's answer */
    assert_int_equal(st_msg(&f->e, "h2", &m), 0);
    assert_int_equal(cvx__store_spool_depth(lb.remote), 1);
    spool_seen_t sp = {0};
    assert_int_equal(cvx__store_spool_foreach(lb.remote, seen, &sp), 1);
    assert_string_equal(sp.first.id, "h1");
    assert_int_equal(sp.first.attempts, 1);
    assert_string_equal(sp.first.last_error, "not found");
}

static int mwi_seen;
static cvx_mwi_t mwi_last;
static void on_mwi(void *arg, const cvx_mwi_t *m)
{
    (void)arg;
    mwi_seen++;
    mwi_last = *m;
}

static int got_mwi(void)
{
    return mwi_seen > 0;
}

static void test_mwi_push_and_report(void **state)
{
    fx_t *f = *state;
    mwi_seen = 0;
    cvx_store_mwi_watch(lb.remote, on_mwi, NULL);
    uint8_t a[800];
    st_audio_for("w1", a, sizeof(a));
    /* a message left on the system server (by any call server) lights the lamp here */
    assert_int_equal(st_deposit(&f->e, "w1", "2001", a, sizeof(a), 800, NULL), 0);
    run_until(f, got_mwi, 2000);
    assert_int_equal(mwi_seen, 1);
    assert_string_equal(mwi_last.mailbox, "2001");
    assert_int_equal(mwi_last.msgs_new, 1);
    assert_int_equal(mwi_last.lamp, 1);
    st_wait_t w = {0};
    assert_int_equal(
        cvx_store_mwi_report(lb.remote, "2001", mwi_last.generation, 1, 1, st_done_cb, &w), 0);
    st_run(&f->e, &w.done);
    assert_int_equal(w.status, 0);
    mwait_t mw = {0};
    assert_int_equal(cvx_store_mwi_get(f->local, "2001", on_get, &mw), 0);
    st_run(&f->e, &mw.done);
    assert_int_equal(mw.m.sent_lamp, 1);
    assert_int_equal(mw.m.sent_ok, 1);
    /* and the call server reads the same state */
    mwait_t rw = {0};
    assert_int_equal(cvx_store_mwi_get(lb.remote, "2001", on_get, &rw), 0);
    st_run(&f->e, &rw.done);
    assert_int_equal(rw.status, 0);
    assert_int_equal(rw.m.msgs_new, 1);
    assert_int_equal(rw.m.sent_ok, 1);
}

static int record_greeting(fx_t *f, cvx_store_t *st, const char *mailbox, const uint8_t *a,
                           size_t len)
{
    cvx_store_stream_t *s;
    int rc =
        cvx_store_greeting_open(st, mailbox, CVX_GREETING_STANDARD, CVX_CODEC_ULAW, 8000, 0, 0, &s);
    if (rc != 0)
        return rc;
    assert_int_equal(cvx_store_stream_append(s, a, len), 0);
    cwait_t w = {0};
    assert_int_equal(cvx_store_stream_commit(s, 100, on_commit, &w), 0);
    st_run(&f->e, &w.done);
    return w.status;
}

static int play_greeting(fx_t *f, uint8_t *buf, size_t size, size_t *n)
{
    cvx_audio_ref_t ref = {0};
    ref.is_greeting = 1;
    snprintf(ref.mailbox, sizeof(ref.mailbox), "2001");
    ref.greeting = CVX_GREETING_STANDARD;
    return REMOTE(f, st_play(&f->e, &ref, buf, size, n));
}

static int caches_valid(void)
{
    store_cache_stats_t cs;
    cvx__store_cache_stats(lb.remote, &cs);
    return cs.valid;
}

/* Waits until the caches have seen `want` invalidations (pushes). */
static uint64_t want_inval;
static int invalidated(void)
{
    store_cache_stats_t cs;
    cvx__store_cache_stats(lb.remote, &cs);
    return cs.invalidations >= want_inval;
}

static uint64_t stat_invalidations(void)
{
    store_cache_stats_t cs;
    cvx__store_cache_stats(lb.remote, &cs);
    return cs.invalidations;
}

static void test_greeting_cache(void **state)
{
    fx_t *f = *state;
    uint8_t g1[3000], g2[3000], g3[2000], back[4000];
    memset(g1, 0x11, sizeof(g1));
    memset(g2, 0x22, sizeof(g2));
    memset(g3, 0x33, sizeof(g3));
    /* recorded by phone on the call server: over the link */
    run_until(f, caches_valid, 2000); /* the version check after the link came up */
    want_inval = stat_invalidations() + 1;
    assert_int_equal(record_greeting(f, lb.remote, "2001", g1, sizeof(g1)), 0);
    run_until(f, invalidated, 2000); /* its own change comes back as a push */
    assert_int_equal(stat_invalidations(), want_inval);
    size_t n = 0;
    assert_int_equal(play_greeting(f, back, sizeof(back), &n), 0);
    assert_int_equal(n, sizeof(g1));
    assert_memory_equal(back, g1, n);
    store_cache_stats_t cs;
    cvx__store_cache_stats(lb.remote, &cs);
    assert_int_equal(cs.misses, 1);
    assert_int_equal(cs.hits, 0);
    /* heard again: from the cache, even with the system server away */
    lb_down();
    n = 0;
    memset(back, 0, sizeof(back));
    assert_int_equal(play_greeting(f, back, sizeof(back), &n), 0);
    assert_int_equal(n, sizeof(g1));
    assert_memory_equal(back, g1, n);
    cvx__store_cache_stats(lb.remote, &cs);
    assert_int_equal(cs.hits, 1);

    /* Changed on the system server while the link is down: the push is missed.  When the
     * link returns the version check drops the cache, and callers hear the new greeting. */
    assert_int_equal(record_greeting(f, f->local, "2001", g2, sizeof(g2)), 0);
    lb_up(1);
    assert_false(caches_valid()); /* not used until revalidated */
    run_until(f, caches_valid, 2000);
    assert_int_equal(play_greeting(f, back, sizeof(back), &n), 0);
    assert_int_equal(n, sizeof(g2));
    assert_memory_equal(back, g2, n);
    cvx__store_cache_stats(lb.remote, &cs);
    assert_true(cs.flushes >= 1);
    assert_int_equal(play_greeting(f, back, sizeof(back), &n), 0);
    cvx__store_cache_stats(lb.remote, &cs);
    assert_int_equal(cs.hits, 2);

    /* Changed while the link is up: the push invalidates it. */
    uint64_t inval = cs.invalidations;
    want_inval = inval + 1;
    assert_int_equal(record_greeting(f, f->local, "2001", g3, sizeof(g3)), 0);
    run_until(f, invalidated, 2000);
    cvx__store_cache_stats(lb.remote, &cs);
    assert_int_equal(cs.invalidations, inval + 1);
    assert_int_equal(play_greeting(f, back, sizeof(back), &n), 0);
    assert_int_equal(n, sizeof(g3));
    assert_memory_equal(back, g3, n);

    /* A new run of the system server (another epoch) drops everything too. */
    uint64_t flushes = cs.flushes;
    lb_down();
    lb_up(2);
    run_until(f, caches_valid, 2000);
    cvx__store_cache_stats(lb.remote, &cs);
    assert_int_equal(cs.flushes, flushes + 1);
    assert_int_equal(cs.epoch, 2);
}

typedef struct dwait {
    int done, status;
    size_t n;
    cvx_dir_entry_t e[8];
} dwait_t;

static void on_dir(void *arg, int status, const cvx_dir_entry_t *e, size_t n)
{
    dwait_t *w = arg;
    w->status = status;
    w->n = n;
    for (size_t i = 0; i < n && i < 8; i++)
        w->e[i] = e[i];
    w->done = 1;
}

static int dir_search(fx_t *f, const char *digits, dwait_t *w)
{
    memset(w, 0, sizeof(*w));
    int rc = cvx_store_dir_search(lb.remote, digits, 8, on_dir, w);
    if (rc != 0)
        return rc;
    st_run(&f->e, &w->done);
    return w->status;
}

static void test_directory_cache(void **state)
{
    fx_t *f = *state;
    run_until(f, caches_valid, 2000); /* the caches are revalidated after the link came up */
    dwait_t w;
    /* "LOV" = 568: Lovelace */
    assert_int_equal(dir_search(f, "568", &w), 0);
    assert_int_equal(w.n, 1);
    assert_string_equal(w.e[0].number, "2001");
    store_cache_stats_t cs;
    cvx__store_cache_stats(lb.remote, &cs);
    uint64_t misses = cs.misses;
    /* the same search again: from the cache, also with the system server away */
    lb_down();
    assert_int_equal(dir_search(f, "568", &w), 0);
    assert_int_equal(w.n, 1);
    cvx__store_cache_stats(lb.remote, &cs);
    assert_int_equal(cs.hits, 1);
    assert_int_equal(cs.misses, misses);
    lb_up(1);
    run_until(f, caches_valid, 2000);
    /* a new mailbox on the system server: the push drops directory results */
    want_inval = stat_invalidations() + 1;
    assert_int_equal(st_put(&f->e, "2004", "Linus", "Lovelace", CVX_PUT_CREATE), 0);
    run_until(f, invalidated, 2000);
    assert_int_equal(dir_search(f, "568", &w), 0);
    assert_int_equal(w.n, 2);
}

static void test_pin_over_link(void **state)
{
    fx_t *f = *state;
    st_wait_t w = {0};
    assert_int_equal(cvx_store_pin_set(lb.remote, "2001", "4826", st_done_cb, &w), 0);
    st_run(&f->e, &w.done);
    assert_int_equal(w.status, 0);
    pwait_t pw = {0};
    assert_int_equal(cvx_store_pin_check(lb.remote, "2001", "1111", on_pin, &pw), 0);
    st_run(&f->e, &pw.done);
    assert_int_equal(pw.status, 0);
    assert_int_equal(pw.r.verdict, CVX_PIN_WRONG);
    memset(&pw, 0, sizeof(pw));
    assert_int_equal(cvx_store_pin_check(lb.remote, "2001", "4826", on_pin, &pw), 0);
    st_run(&f->e, &pw.done);
    assert_int_equal(pw.r.verdict, CVX_PIN_OK);
    /* while the system server is away, a PIN cannot be checked: unavailable, at once */
    lb_down();
    assert_int_equal(cvx_store_pin_check(lb.remote, "2001", "4826", on_pin, &pw), CVX_EUNAVAIL);
}

static void test_garbage_request_refused(void **state)
{
    fx_t *f = *state;
    int status = 1;
    const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x12};
    assert_int_equal(l_call(NULL, RM(RM_MAILBOX_GET), junk, sizeof(junk), on_raw, &status), 0);
    while (status == 1)
        uv_run(&f->e.loop, UV_RUN_ONCE);
    assert_int_equal(status, CVX_EPROTO);
    /* and the service goes on */
    cvx_mailbox_t mb;
    assert_int_equal(REMOTE(f, st_get(&f->e, "2001", &mb)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_mailbox_over_link, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deposit_live, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_and_forward, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lost_commit_reply_is_not_duplicated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_link_lost_during_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_survives_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unfinished_recordings_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_held_when_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mwi_push_and_report, setup, teardown),
        cmocka_unit_test_setup_teardown(test_greeting_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_directory_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pin_over_link, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_request_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
