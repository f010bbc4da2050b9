/*
 * The consensus engine (cvx/raft.h) with three real libraft servers on one loop, on loopback:
 * over the cluster's TLS (certificates made by callvox-ca), and over libraft's clear-text TCP
 * transport for comparison.  Elections, replication in one order everywhere, a proposal on a
 * follower refused, the leader stopped and a new one elected, a restarted server catching up
 * (through a snapshot), leadership transfer, and a server with another name's certificate
 * kept out.
 */
#include <netinet/in.h>
#include <raft.h>
#include <raft/uv.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cvx/error.h"
#include "cvx/raft.h"
#include "cvx/tls.h"

#define N      3
#define VALUES 4096

/* The state machine: the list of values applied, and the last index applied. */
typedef struct fsm {
    uint32_t values[VALUES];
    unsigned n;
    uint64_t applied;
    unsigned snapshots, restores;
} fsm_t;

typedef struct node {
    cvx_raft_t *raft;
    struct raft_uv_transport transport;
    int transport_open;
    cvx_tls_ctx_t *server_ctx, *client_ctx;
    const char *cert; /* the certificate's name: sys-N, or another for the impostor */
    fsm_t fsm;
    char dir[160];
    char address[64];
    int leader;
    uint64_t term;
} node_t;

typedef struct cluster {
    uv_loop_t loop;
    node_t nodes[N];
    cvx_raft_member_t members[N];
    char root[96];
    int tls;
} cluster_t;

static int fsm_apply(void *arg, uint64_t index, const void *data, size_t len)
{
    fsm_t *f = arg;
    if (index <= f->applied)
        return 0; /* replayed: already in the state (idempotent apply) */
    if (len != sizeof(uint32_t) || f->n == VALUES)
        return CVX_EINVAL;
    memcpy(&f->values[f->n++], data, sizeof(uint32_t));
    f->applied = index;
    return 0;
}

static int fsm_snapshot(void *arg, void **data, size_t *len)
{
    fsm_t *f = arg;
    *len = sizeof(f->n) + f->n * sizeof(uint32_t);
    *data = malloc(*len);
    memcpy(*data, &f->n, sizeof(f->n));
    memcpy((char *)*data + sizeof(f->n), f->values, f->n * sizeof(uint32_t));
    f->snapshots++;
    return 0;
}

static int fsm_restore(void *arg, const void *data, size_t len)
{
    fsm_t *f = arg;
    unsigned n;
    memcpy(&n, data, sizeof(n));
    if (len != sizeof(n) + n * sizeof(uint32_t))
        return CVX_ECORRUPT;
    memcpy(f->values, (const char *)data + sizeof(n), n * sizeof(uint32_t));
    f->n = n;
    f->restores++;
    return 0;
}

static const cvx_raft_fsm_t FSM = {fsm_apply, fsm_snapshot, fsm_restore};

static void on_role(void *arg, int leader, uint64_t leader_id, uint64_t term)
{
    node_t *n = arg;
    (void)leader_id;
    n->leader = leader;
    n->term = term;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void tick(uv_timer_t *t)
{
    (void)t;
}

/* Runs the loop until cond(arg) or the deadline; returns cond's last value. */
static int run_until(cluster_t *c, int (*cond)(cluster_t *c, void *arg), void *arg,
                     unsigned timeout_ms)
{
    uv_timer_t t;
    uv_timer_init(&c->loop, &t);
    uv_timer_start(&t, tick, 10, 10);
    uv_update_time(&c->loop);
    uint64_t deadline = uv_now(&c->loop) + timeout_ms;
    int ok;
    while (!(ok = cond(c, arg)) && uv_now(&c->loop) < deadline)
        uv_run(&c->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&c->loop, UV_RUN_NOWAIT);
    return ok;
}

/* Raft server id may speak only with the certificate named sys-<id>. */
static int check_peer(void *arg, uint64_t id, const char *cert_name)
{
    (void)arg;
    char want[32];
    snprintf(want, sizeof(want), "sys-%llu", (unsigned long long)id);
    return strcmp(cert_name, want) == 0;
}

static void make_tls(cluster_t *c, node_t *n)
{
    char ca[160], cert[160], key[160], err[256];
    snprintf(ca, sizeof(ca), "%s/pki/ca.pem", c->root);
    snprintf(cert, sizeof(cert), "%s/pki/%s.pem", c->root, n->cert);
    snprintf(key, sizeof(key), "%s/pki/%s.key", c->root, n->cert);
    if (cvx_tls_ctx_create(&n->server_ctx, 1, ca, cert, key, err, sizeof(err)) != 0 ||
        cvx_tls_ctx_create(&n->client_ctx, 0, ca, cert, key, err, sizeof(err)) != 0)
        fail_msg("%s: %s", n->cert, err);
    assert_int_equal(
        cvx_raft_tls_init(&n->transport, &c->loop, n->server_ctx, n->client_ctx, check_peer, NULL),
        0);
}

static void start_node(cluster_t *c, int i)
{
    node_t *n = &c->nodes[i];
    if (c->tls)
        make_tls(c, n);
    else
        assert_int_equal(raft_uv_tcp_init(&n->transport, &c->loop), 0);
    n->transport_open = 1;
    cvx_raft_conf_t conf;
    cvx_raft_conf_defaults(&conf);
    conf.id = (uint64_t)i + 1;
    conf.dir = n->dir;
    conf.address = n->address;
    memcpy(conf.members, c->members, sizeof(c->members));
    conf.nmembers = N;
    conf.election_timeout_ms = 500;
    conf.heartbeat_timeout_ms = 50;
    conf.snapshot_threshold = 32;
    conf.snapshot_trailing = 8;
    conf.transport = &n->transport;
    memset(&n->fsm, 0, sizeof(n->fsm));
    n->leader = 0;
    char err[256];
    int rc = cvx_raft_start(&c->loop, &conf, &FSM, &n->fsm, on_role, n, &n->raft, err, sizeof(err));
    if (rc != 0)
        fail_msg("node %d: %s", i + 1, err);
}

static void on_node_stopped(void *arg)
{
    node_t *n = arg;
    if (n->server_ctx != NULL) {
        cvx_raft_tls_free(&n->transport);
        cvx_tls_ctx_destroy(n->server_ctx);
        cvx_tls_ctx_destroy(n->client_ctx);
        n->server_ctx = n->client_ctx = NULL;
    } else {
        raft_uv_tcp_close(&n->transport);
    }
    n->transport_open = 0;
}

static int node_closed(cluster_t *c, void *arg)
{
    (void)c;
    return !((node_t *)arg)->transport_open;
}

static void stop_node(cluster_t *c, int i)
{
    node_t *n = &c->nodes[i];
    if (n->raft == NULL)
        return;
    cvx_raft_stop(n->raft, on_node_stopped, n);
    n->raft = NULL;
    n->leader = 0;
    assert_true(run_until(c, node_closed, n, 5000));
}

static int setup_cluster(void **state, int tls, const char *third_cert)
{
    cluster_t *c = calloc(1, sizeof(*c));
    uv_loop_init(&c->loop);
    c->tls = tls;
    strcpy(c->root, "/tmp/cvx-raft-XXXXXX");
    assert_non_null(mkdtemp(c->root));
    static const char *certs[N] = {"sys-1", "sys-2", "sys-3"};
    for (int i = 0; i < N; i++)
        c->nodes[i].cert = certs[i];
    if (third_cert != NULL)
        c->nodes[2].cert = third_cert;
    if (tls) {
        char cmd[1024];
        snprintf(cmd, sizeof(cmd),
                 "%s init %s/pki >/dev/null && %s issue %s/pki sys-1 >/dev/null && %s issue "
                 "%s/pki sys-2 >/dev/null && %s issue %s/pki sys-3 >/dev/null && %s issue "
                 "%s/pki cs1 >/dev/null",
                 CVX_CA_TOOL, c->root, CVX_CA_TOOL, c->root, CVX_CA_TOOL, c->root, CVX_CA_TOOL,
                 c->root, CVX_CA_TOOL, c->root);
        assert_int_equal(system(cmd), 0);
    }
    for (int i = 0; i < N; i++) {
        node_t *n = &c->nodes[i];
        snprintf(n->dir, sizeof(n->dir), "%s/%d", c->root, i + 1);
        assert_int_equal(mkdir(n->dir, 0700), 0);
        snprintf(n->address, sizeof(n->address), "127.0.0.1:%d", free_port());
        c->members[i].id = (uint64_t)i + 1;
        snprintf(c->members[i].address, sizeof(c->members[i].address), "%s", n->address);
        c->members[i].voter = 1;
    }
    for (int i = 0; i < N; i++)
        start_node(c, i);
    *state = c;
    return 0;
}

static int setup(void **state)
{
    return setup_cluster(state, 0, NULL);
}

static int setup_tls(void **state)
{
    return setup_cluster(state, 1, NULL);
}

/* The third server presents a valid cluster certificate, but a call server's (cs1). */
static int setup_tls_impostor(void **state)
{
    return setup_cluster(state, 1, "cs1");
}

static int teardown(void **state)
{
    cluster_t *c = *state;
    for (int i = 0; i < N; i++)
        stop_node(c, i);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&c->loop), 0);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", c->root);
    assert_int_equal(system(cmd), 0);
    free(c);
    return 0;
}

/* The one leader among the running nodes, or -1 (none, or two claiming it). */
static int leader_of(cluster_t *c)
{
    int who = -1;
    for (int i = 0; i < N; i++) {
        if (c->nodes[i].raft == NULL || !c->nodes[i].leader)
            continue;
        if (who >= 0)
            return -1;
        who = i;
    }
    return who;
}

static int has_leader(cluster_t *c, void *arg)
{
    (void)arg;
    return leader_of(c) >= 0;
}

typedef struct proposals {
    unsigned sent, done, failed;
} proposals_t;

static void on_done(void *arg, int status, uint64_t index)
{
    proposals_t *p = arg;
    p->done++;
    if (status != 0 || index == 0)
        p->failed++;
}

static int all_done(cluster_t *c, void *arg)
{
    (void)c;
    proposals_t *p = arg;
    return p->done == p->sent;
}

/* Proposes from..from+count-1 on the leader and waits until every one is committed. */
static void propose_values(cluster_t *c, int leader, uint32_t from, unsigned count)
{
    proposals_t p = {0};
    for (unsigned k = 0; k < count; k++) {
        uint32_t v = from + k;
        assert_int_equal(cvx_raft_propose(c->nodes[leader].raft, &v, sizeof(v), on_done, &p), 0);
        p.sent++;
    }
    if (!run_until(c, all_done, &p, 20000))
        fail_msg("proposals not committed: %u of %u", p.done, p.sent);
    assert_int_equal(p.failed, 0);
}

typedef struct expect {
    unsigned n;
} expect_t;

static int everyone_has(cluster_t *c, void *arg)
{
    unsigned want = ((expect_t *)arg)->n;
    for (int i = 0; i < N; i++)
        if (c->nodes[i].raft != NULL && c->nodes[i].fsm.n != want)
            return 0;
    return 1;
}

static int everyone_but_3_has(cluster_t *c, void *arg)
{
    unsigned want = ((expect_t *)arg)->n;
    for (int i = 0; i < 2; i++)
        if (c->nodes[i].raft != NULL && c->nodes[i].fsm.n != want)
            return 0;
    return 1;
}

/* Every running node holds exactly the values from..from+n-1, in that order. */
static void assert_same_state(cluster_t *c, unsigned n)
{
    for (int i = 0; i < N; i++) {
        if (c->nodes[i].raft == NULL)
            continue;
        assert_int_equal(c->nodes[i].fsm.n, n);
        for (unsigned k = 0; k < n; k++)
            if (c->nodes[i].fsm.values[k] != 1000 + k)
                fail_msg("node %d: value %u is %u, not %u (%u snapshots, %u restores)", i + 1, k,
                         c->nodes[i].fsm.values[k], 1000 + k, c->nodes[i].fsm.snapshots,
                         c->nodes[i].fsm.restores);
    }
}

static void test_elects_one_leader_and_replicates_in_order(void **state)
{
    cluster_t *c = *state;
    assert_true(run_until(c, has_leader, NULL, 15000));
    int l = leader_of(c);
    propose_values(c, l, 1000, 100);
    expect_t e = {100};
    assert_true(run_until(c, everyone_has, &e, 10000));
    assert_same_state(c, 100);

    cvx_raft_status_t st;
    cvx_raft_status(c->nodes[l].raft, &st);
    assert_true(st.leader);
    assert_int_equal(st.leader_id, (uint64_t)l + 1);
    assert_int_equal(st.nmembers, N);
    assert_true(st.commit_index >= 100);
    assert_true(st.applied_index >= 100);

    /* A follower refuses proposals at once: the proposer must go to the leader. */
    int f = (l + 1) % N;
    uint32_t v = 7;
    assert_int_equal(cvx_raft_propose(c->nodes[f].raft, &v, sizeof(v), on_done, NULL), CVX_ESTATE);
    cvx_raft_status(c->nodes[f].raft, &st);
    assert_false(st.leader);
    assert_int_equal(st.leader_id, (uint64_t)l + 1);
}

static int new_leader_other_than(cluster_t *c, void *arg)
{
    int old = *(int *)arg;
    int l = leader_of(c);
    return l >= 0 && l != old;
}

static void test_leader_stopped_new_leader_and_restart_catches_up(void **state)
{
    cluster_t *c = *state;
    assert_true(run_until(c, has_leader, NULL, 15000));
    int old = leader_of(c);
    propose_values(c, old, 1000, 50);
    stop_node(c, old);
    /* The two others elect a leader among themselves and go on. */
    assert_true(run_until(c, new_leader_other_than, &old, 15000));
    int l = leader_of(c);
    propose_values(c, l, 1050, 100);
    expect_t e = {150};
    assert_true(run_until(c, everyone_has, &e, 10000));
    assert_same_state(c, 150);
    /* The stopped server comes back with an empty state machine: its log and a snapshot
     * (taken every 32 entries) bring it back to the same 150 values, in order. */
    start_node(c, old);
    assert_true(run_until(c, everyone_has, &e, 15000));
    assert_same_state(c, 150);
    unsigned snapshots = 0;
    for (int i = 0; i < N; i++)
        snapshots += c->nodes[i].fsm.snapshots;
    assert_true(snapshots > 0);
}

static int is_leader(cluster_t *c, void *arg)
{
    return leader_of(c) == *(int *)arg;
}

static void on_transfer(void *arg, int status, uint64_t index)
{
    (void)index;
    *(int *)arg = status == 0 ? 1 : -1;
}

static void test_leadership_transfer(void **state)
{
    cluster_t *c = *state;
    assert_true(run_until(c, has_leader, NULL, 15000));
    int l = leader_of(c);
    propose_values(c, l, 1000, 10);
    int target = (l + 2) % N, result = 0;
    assert_int_equal(
        cvx_raft_transfer(c->nodes[l].raft, (uint64_t)target + 1, on_transfer, &result), 0);
    assert_true(run_until(c, is_leader, &target, 10000));
    propose_values(c, target, 1010, 10);
    expect_t e = {20};
    assert_true(run_until(c, everyone_has, &e, 10000));
    assert_same_state(c, 20);
}

static void test_tls_server_with_another_name_kept_out(void **state)
{
    cluster_t *c = *state;
    /* Servers 1 and 2 form the majority without 3, whose connections they refuse: 3 can
     * never win an election, since nobody hears it. */
    assert_true(run_until(c, has_leader, NULL, 15000));
    int l = leader_of(c);
    assert_true(l == 0 || l == 1);
    propose_values(c, l, 1000, 20);
    int other = l == 0 ? 1 : 0;
    node_t *o = &c->nodes[other];
    expect_t e = {20};
    assert_true(run_until(c, everyone_but_3_has, &e, 10000));
    assert_int_equal(o->fsm.n, 20);
    /* The leader never hears from server 3. */
    cvx_raft_status_t st;
    cvx_raft_status(c->nodes[l].raft, &st);
    for (unsigned k = 0; k < st.nmembers; k++)
        if (st.members[k].id == 3) {
            assert_false(st.members[k].recent);
            assert_int_equal(st.members[k].match_index, 0);
        }
}

int main(void)
{
    /* As callvoxd does: a peer that dies mid-write must not kill the writer (issue 10). */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_elects_one_leader_and_replicates_in_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_leader_stopped_new_leader_and_restart_catches_up,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_leadership_transfer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_elects_one_leader_and_replicates_in_order, setup_tls,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_leader_stopped_new_leader_and_restart_catches_up,
                                        setup_tls, teardown),
        cmocka_unit_test_setup_teardown(test_leadership_transfer, setup_tls, teardown),
        cmocka_unit_test_setup_teardown(test_tls_server_with_another_name_kept_out,
                                        setup_tls_impostor, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
