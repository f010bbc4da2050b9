/*
 * The consensus engine of the system servers' replication, behind a small interface so that
 * the engine can be replaced.  Today it is Debian's libraft 0.15 (canonical Raft, libuv I/O
 * backend) on the process's loop.
 *
 * Decisions (ARCHITECTURE.md and issue 10):
 *  - pre-vote is on, so a server that was cut off does not disrupt the cluster when it
 *    returns;
 *  - only small records go through the log (metadata, folder moves, MWI and licence state);
 *    audio is copied by its own streaming.  libraft keeps every entry in memory until a
 *    snapshot, so snapshots are taken every snapshot_threshold entries and cover metadata;
 *  - the apply callback runs on the loop: it must be short (an LMDB write without sync that
 *    stores the applied index in the same transaction, so replaying after a crash is
 *    idempotent: entries at or below the stored index are skipped by the state machine);
 *  - the transport is given by the caller: production passes one that carries Raft over the
 *    cluster's TLS; the clear-text TCP transport of libraft is for tests only;
 *  - SIGPIPE must be ignored by the process (callvoxd does): a peer that dies mid-write
 *    otherwise kills the writer (test_raft hit exactly this);
 *  - libraft's disk log pads every entry to a multiple of 8 bytes and gives it back padded
 *    after a restart: the engine frames each record (and snapshot) with its length, so the
 *    state machine always sees the bytes that were proposed;
 *  - libraft stops applying later entries when its fsm apply fails: the engine always
 *    reports success to libraft and hands the state machine's status to the proposer.
 *
 * Thread: everything on the loop thread that started the engine.
 */
#ifndef CVX_RAFT_H
#define CVX_RAFT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct raft_uv_transport;

typedef struct cvx_raft cvx_raft_t;

#define CVX_RAFT_MEMBERS_MAX 5

typedef struct cvx_raft_member {
    uint64_t id;       /* 1.. */
    char address[128]; /* what the transport connects to, "127.0.0.1:7501" */
    int voter;         /* 1: votes; 0: a non-voting standby that receives the log */
} cvx_raft_member_t;

/* The state machine the log is applied to. */
typedef struct cvx_raft_fsm {
    /* Applies entry index (on every server, in index order).  Returns 0 or CVX_E*; an error
     * is reported to the proposer (on the leader) but the entry stays in the log. */
    int (*apply)(void *arg, uint64_t index, const void *data, size_t len);
    /* A copy of the whole state (metadata only), malloc()ed, for a snapshot. */
    int (*snapshot)(void *arg, void **data, size_t *len);
    /* Replaces the state with a snapshot (a server that fell too far behind). */
    int (*restore)(void *arg, const void *data, size_t len);
} cvx_raft_fsm_t;

typedef struct cvx_raft_conf {
    uint64_t id;         /* this server's id: one of members */
    const char *dir;     /* where Raft keeps its log and snapshots (ext4 or xfs) */
    const char *address; /* this server's address, as in members */
    cvx_raft_member_t members[CVX_RAFT_MEMBERS_MAX];
    unsigned nmembers; /* the initial configuration (used once, on a fresh dir) */
    unsigned election_timeout_ms;
    unsigned heartbeat_timeout_ms;
    unsigned snapshot_threshold;         /* entries between snapshots */
    unsigned snapshot_trailing;          /* entries kept after a snapshot for slow followers */
    struct raft_uv_transport *transport; /* initialised, owned by the caller */
} cvx_raft_conf_t;

/* LAN defaults: elections after 1 s without a leader, heartbeats every 100 ms. */
void cvx_raft_conf_defaults(cvx_raft_conf_t *conf);

/* Called on the loop whenever this server's role or the known leader changes. */
typedef void (*cvx_raft_role_fn)(void *arg, int leader, uint64_t leader_id, uint64_t term);

/* Starts the engine: opens (or creates and bootstraps) the log in conf->dir, replays it
 * through fsm.  err explains a failure in one line.  Blocks on file I/O (start-up only). */
int cvx_raft_start(uv_loop_t *loop, const cvx_raft_conf_t *conf, const cvx_raft_fsm_t *fsm,
                   void *fsm_arg, cvx_raft_role_fn role, void *role_arg, cvx_raft_t **out,
                   char *err, size_t errlen);

/*
 * Proposes a record (copied).  cb reports, once, later: 0 when the record is committed and
 * applied here, with its index; CVX_ESTATE when this server is not (or stopped being) the
 * leader (the record may or may not be committed: the proposer retries with an idempotent
 * record); another CVX_E* otherwise.  Returns CVX_ESTATE at once (cb not called) when this
 * server is not the leader.
 */
typedef void (*cvx_raft_done_fn)(void *arg, int status, uint64_t index);
int cvx_raft_propose(cvx_raft_t *r, const void *data, size_t len, cvx_raft_done_fn cb, void *arg);

/* Hands leadership to member id (0: the most up-to-date voter).  cb reports the outcome. */
int cvx_raft_transfer(cvx_raft_t *r, uint64_t id, cvx_raft_done_fn cb, void *arg);

typedef struct cvx_raft_status {
    int leader;         /* 1 when this server leads */
    uint64_t leader_id; /* 0: none known */
    uint64_t term;
    uint64_t last_index, commit_index, applied_index;
    unsigned nmembers;
    struct {
        uint64_t id;
        int voter;
        uint64_t match_index; /* leader only: highest index the member has */
        int recent;           /* leader only: heard from it within an election timeout */
    } members[CVX_RAFT_MEMBERS_MAX];
} cvx_raft_status_t;
void cvx_raft_status(cvx_raft_t *r, cvx_raft_status_t *st);

/* Stops the engine; on_stopped (may be NULL) is called on the loop once every handle is
 * closed.  Proposals pending are reported with CVX_ESTATE first. */
void cvx_raft_stop(cvx_raft_t *r, void (*on_stopped)(void *arg), void *arg);

/* --- Raft over the cluster's TLS ----------------------------------------------------------- */

struct cvx_tls_ctx;

/* Says whether the peer whose verified certificate name is cert_name may speak as Raft
 * server id (1: yes).  Without it any holder of a cluster certificate could, call servers
 * included. */
typedef int (*cvx_raft_peer_check_fn)(void *arg, uint64_t id, const char *cert_name);

/*
 * Makes t a libraft transport that carries Raft over TLS connections (cvx/tls.h) made with
 * server (accepting) and client (connecting) contexts of the cluster's CA and this server's
 * certificate: libraft gets one end of a socketpair per connection, and the loop bridges the
 * other end to TLS.  The contexts must outlive the engine.  Free with cvx_raft_tls_free()
 * once the engine using it has stopped.
 */
int cvx_raft_tls_init(struct raft_uv_transport *t, uv_loop_t *loop, struct cvx_tls_ctx *server,
                      struct cvx_tls_ctx *client, cvx_raft_peer_check_fn check, void *check_arg);
/* Binds the listener to address instead of this server's advertised Raft address (behind
 * NAT or a proxy: the others connect to the advertised one). */
void cvx_raft_tls_set_listen(struct raft_uv_transport *t, const char *address);
void cvx_raft_tls_free(struct raft_uv_transport *t);

#endif
