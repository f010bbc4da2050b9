/*
 * The system servers' cluster (cvx/cluster.h).
 */
#include "cvx/cluster.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <raft/uv.h>

#include "cvx/cmd.h"
#include "cvx/config.h"
#include "cvx/daemon.h"
#include "cvx/error.h"
#include "cvx/log.h"
#include "cvx/tls.h"

#define MEMBERS_MAX CVX_RAFT_MEMBERS_MAX

/* [cluster] */
typedef struct cluster_conf {
    int preset; /* index into preset_names */
    long long election_ms, heartbeat_ms;
    char *dir;
    char *ca, *cert, *key;
    long long snapshot_threshold;
    char *listen;
} cluster_conf_t;

/* [member:NAME] */
typedef struct member_conf {
    long long id;
    char *raft;
    int role; /* index into member_roles */
} member_conf_t;

static const char *const preset_names[] = {"lan", "geo", NULL};
static const char *const member_roles[] = {"data", "witness", NULL};

/* Election and heartbeat timeouts of the presets (README, Cluster). */
static const struct {
    unsigned election_ms, heartbeat_ms;
} presets[] = {{1000, 100}, {1500, 250}};

#define O(f) offsetof(cluster_conf_t, f)
static const cvx_option_t cluster_options[] = {
    {"preset", CVX_OPT_ENUM, O(preset), "lan", 0, 0, preset_names, 0,
     "Timeouts for the distance between the system servers: lan (election after 1 s without a "
     "leader, heartbeats every 100 ms) or geo (sites up to ~120 ms apart one way: 1.5 s, 250 ms)."},
    {"election_timeout", CVX_OPT_DURATION, O(election_ms), "0", 0, 60000, NULL, 0,
     "Overrides the preset's election timeout; 0: the preset's."},
    {"heartbeat", CVX_OPT_DURATION, O(heartbeat_ms), "0", 0, 10000, NULL, 0,
     "Overrides the preset's heartbeat interval; 0: the preset's."},
    {"dir", CVX_OPT_STRING, O(dir), "", 0, 0, NULL, 0,
     "Where Raft keeps its log and snapshots (ext4 or xfs); empty: 'raft' in [general] "
     "data_dir."},
    {"ca", CVX_OPT_STRING, O(ca), NULL, 0, 0, NULL, 0,
     "The cluster CA certificate (PEM) other members' certificates must chain to."},
    {"cert", CVX_OPT_STRING, O(cert), NULL, 0, 0, NULL, 0,
     "This server's certificate (PEM), named as its [member:NAME] section."},
    {"key", CVX_OPT_STRING, O(key), NULL, 0, 0, NULL, 0, "This server's private key (PEM)."},
    {"snapshot_threshold", CVX_OPT_INT, O(snapshot_threshold), "1024", 16, 1000000, NULL, 0,
     "Log entries between snapshots (libraft keeps entries in memory until one)."},
    {"listen", CVX_OPT_STRING, O(listen), "", 0, 0, NULL, 0,
     "host:port this member binds Raft to, when the others reach it at another address (its "
     "[member:NAME] raft, through NAT or a proxy); empty: that address."},
    CVX_OPTIONS_END,
};
#undef O

#define M(f) offsetof(member_conf_t, f)
static const cvx_option_t member_options[] = {
    {"id", CVX_OPT_INT, M(id), NULL, 1, 1000000, NULL, CVX_OPT_REQUIRED,
     "The member's Raft id: unique in the cluster, never reused."},
    {"raft", CVX_OPT_STRING, M(raft), NULL, 0, 0, NULL, CVX_OPT_REQUIRED,
     "host:port where the member accepts Raft connections (TLS)."},
    {"role", CVX_OPT_ENUM, M(role), "data", 0, 0, member_roles, 0,
     "data: a system server (stores messages, may be active); witness: a vote only."},
    CVX_OPTIONS_END,
};
#undef M

static const cvx_section_def_t cluster_section = {
    "cluster", 0, cluster_options, sizeof(cluster_conf_t),
    "The system servers' replication: timeouts, Raft's directory, the cluster certificates."};
static const cvx_section_def_t member_section = {
    "member", 1, member_options, sizeof(member_conf_t),
    "A member of the system servers' cluster: [member:NAME] (NAME as its [general] name)."};

typedef struct member {
    char name[64];
    member_conf_t conf;
} member_t;

static struct {
    cluster_conf_t conf;
    member_t members[MEMBERS_MAX];
    unsigned nmembers;
    const member_t *self;
    const cvx_raft_fsm_t *fsm;
    void *fsm_arg;
    cvx_tls_ctx_t *server_ctx, *client_ctx;
    struct raft_uv_transport transport;
    int transport_ready;
    cvx_raft_t *raft;
    int leader;
    uint64_t leader_id, term;
    uint64_t leader_changes;
    uint64_t leader_since_ms;
    int handing_over;
} C;

static const member_t *member_by_id(uint64_t id)
{
    for (unsigned i = 0; i < C.nmembers; i++)
        if ((uint64_t)C.members[i].conf.id == id)
            return &C.members[i];
    return NULL;
}

static const member_t *member_by_name(const char *name)
{
    for (unsigned i = 0; i < C.nmembers; i++)
        if (strcmp(C.members[i].name, name) == 0)
            return &C.members[i];
    return NULL;
}

/* --- configuration ------------------------------------------------------------------------ */

static int bind_member(void *arg, cvx_conf_section_t *sec, cvx_diag_t *diag, cvx_diag_t *restart)
{
    (void)arg;
    member_conf_t m = {0};
    if (cvx_conf_bind(&member_section, sec, &m, diag) != 0)
        return CVX_EINVAL;
    int rc = 0;
    if (restart != NULL) {
        /* Membership changes at run time are the shell's (cluster operations), not reload's. */
        const member_t *old = member_by_name(sec->name);
        if (old == NULL || old->conf.id != m.id || strcmp(old->conf.raft, m.raft) != 0 ||
            old->conf.role != m.role)
            cvx_diag_add(restart, "[member:%s]", sec->name);
        cvx_conf_release(member_options, &m);
        return 0;
    }
    if (strlen(sec->name) >= sizeof(C.members[0].name)) {
        cvx_diag_add(diag, "%s:%d: [member:%s]: the name is too long", sec->file, sec->line,
                     sec->name);
        rc = CVX_EINVAL;
    } else if (C.nmembers == MEMBERS_MAX) {
        cvx_diag_add(diag, "%s:%d: [member:%s]: at most %d members", sec->file, sec->line,
                     sec->name, MEMBERS_MAX);
        rc = CVX_EINVAL;
    } else if (member_by_name(sec->name) != NULL) {
        rc = 0; /* the same section continued in another file: bound once */
    } else if (member_by_id((uint64_t)m.id) != NULL) {
        cvx_diag_add(diag, "%s:%d: [member:%s] id: %lld is the id of [member:%s] too", sec->file,
                     sec->line, sec->name, m.id, member_by_id((uint64_t)m.id)->name);
        rc = CVX_EINVAL;
    } else {
        member_t *mm = &C.members[C.nmembers++];
        snprintf(mm->name, sizeof(mm->name), "%s", sec->name);
        mm->conf = m;
        return 0;
    }
    cvx_conf_release(member_options, &m);
    return rc;
}

static void release_members(void *arg)
{
    (void)arg;
    for (unsigned i = 0; i < C.nmembers; i++)
        cvx_conf_release(member_options, &C.members[i].conf);
    C.nmembers = 0;
    C.self = NULL;
}

/* --- the engine --------------------------------------------------------------------------- */

/* Only the member's own certificate may speak as its Raft id. */
static int check_peer(void *arg, uint64_t id, const char *cert_name)
{
    (void)arg;
    const member_t *m = member_by_id(id);
    return m != NULL && strcmp(m->name, cert_name) == 0;
}

static void on_handed_over(void *arg, int status, uint64_t index)
{
    (void)arg;
    (void)index;
    C.handing_over = 0;
    if (status != 0)
        cvx_warn("cluster: the witness could not hand leadership over yet: %s",
                 cvx_strerror(status));
}

static void on_role(void *arg, int leader, uint64_t leader_id, uint64_t term)
{
    (void)arg;
    if (leader_id != C.leader_id) {
        C.leader_changes++;
        C.leader_since_ms = uv_now(cvx_daemon_loop());
        const member_t *m = member_by_id(leader_id);
        if (m != NULL)
            cvx_notice("cluster: %s (%s) is the active system server, term %llu",
                       m == C.self ? "this server" : m->name, m->name, (unsigned long long)term);
        else
            cvx_warn("cluster: no active system server (term %llu)", (unsigned long long)term);
    }
    C.leader = leader;
    C.leader_id = leader_id;
    C.term = term;
    /* A witness serves nobody: if it ever wins, it hands leadership to a data server. */
    if (leader && C.self->conf.role == 1 && !C.handing_over) {
        cvx_notice("cluster: the witness won an election; handing leadership to a data server");
        if (cvx_raft_transfer(C.raft, 0, on_handed_over, NULL) == 0)
            C.handing_over = 1;
    }
}

static int empty_apply(void *arg, uint64_t index, const void *data, size_t len)
{
    (void)arg;
    (void)index;
    (void)data;
    (void)len;
    return 0; /* a witness keeps the log only; nothing else is applied */
}

static int empty_snapshot(void *arg, void **data, size_t *len)
{
    (void)arg;
    *data = malloc(1);
    *len = 0;
    return *data != NULL ? 0 : CVX_ENOMEM;
}

static int empty_restore(void *arg, const void *data, size_t len)
{
    (void)arg;
    (void)data;
    (void)len;
    return 0;
}

static const cvx_raft_fsm_t witness_fsm = {empty_apply, empty_snapshot, empty_restore};

static int cluster_start(uv_loop_t *loop)
{
    if (C.nmembers == 0) {
        if (cvx_daemon_role() == CVX_ROLE_WITNESS) {
            fprintf(stderr, "callvoxd: a witness needs the cluster's [member:NAME] sections\n");
            return CVX_EINVAL;
        }
        return 0; /* a system server alone: active, no failover */
    }
    const char *name = cvx_daemon_name();
    C.self = member_by_name(name);
    if (C.self == NULL) {
        fprintf(stderr,
                "callvoxd: this server's name '%s' ([general] name) is not one of the "
                "[member:NAME] sections\n",
                name);
        return CVX_EINVAL;
    }
    int want = cvx_daemon_role() == CVX_ROLE_WITNESS ? 1 : 0;
    if (C.self->conf.role != want) {
        fprintf(stderr, "callvoxd: [member:%s] is a %s member, but this process runs role %s\n",
                name, member_roles[C.self->conf.role], cvx_daemon_role_name(cvx_daemon_role()));
        return CVX_EINVAL;
    }
    if (C.conf.ca == NULL || C.conf.cert == NULL || C.conf.key == NULL) {
        fprintf(stderr, "callvoxd: [cluster] ca, cert and key are needed: Raft traffic between "
                        "members is always TLS\n");
        return CVX_EINVAL;
    }
    char err[512];
    if (cvx_tls_ctx_create(&C.server_ctx, 1, C.conf.ca, C.conf.cert, C.conf.key, err,
                           sizeof(err)) != 0 ||
        cvx_tls_ctx_create(&C.client_ctx, 0, C.conf.ca, C.conf.cert, C.conf.key, err,
                           sizeof(err)) != 0) {
        fprintf(stderr, "callvoxd: cluster: %s\n", err);
        return CVX_EINVAL;
    }
    if (cvx_raft_tls_init(&C.transport, loop, C.server_ctx, C.client_ctx, check_peer, NULL) != 0)
        return CVX_ENOMEM;
    C.transport_ready = 1;
    if (C.conf.listen != NULL && C.conf.listen[0] != '\0')
        cvx_raft_tls_set_listen(&C.transport, C.conf.listen);

    char dir[4096];
    if (C.conf.dir != NULL && C.conf.dir[0] != '\0')
        snprintf(dir, sizeof(dir), "%s", C.conf.dir);
    else
        snprintf(dir, sizeof(dir), "%s/raft", cvx_daemon_general()->data_dir);
    if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
        fprintf(stderr, "callvoxd: cluster: cannot create %s: %s\n", dir, strerror(errno));
        return CVX_EIO;
    }
    cvx_raft_conf_t rc;
    cvx_raft_conf_defaults(&rc);
    rc.id = (uint64_t)C.self->conf.id;
    rc.dir = dir;
    rc.address = C.self->conf.raft;
    for (unsigned i = 0; i < C.nmembers; i++) {
        rc.members[i].id = (uint64_t)C.members[i].conf.id;
        snprintf(rc.members[i].address, sizeof(rc.members[i].address), "%s",
                 C.members[i].conf.raft);
        rc.members[i].voter = 1;
    }
    rc.nmembers = C.nmembers;
    rc.election_timeout_ms =
        C.conf.election_ms > 0 ? (unsigned)C.conf.election_ms : presets[C.conf.preset].election_ms;
    rc.heartbeat_timeout_ms = C.conf.heartbeat_ms > 0 ? (unsigned)C.conf.heartbeat_ms
                                                      : presets[C.conf.preset].heartbeat_ms;
    rc.snapshot_threshold = (unsigned)C.conf.snapshot_threshold;
    rc.snapshot_trailing = rc.snapshot_threshold / 4;
    rc.transport = &C.transport;
    const cvx_raft_fsm_t *fsm = want == 1 || C.fsm == NULL ? &witness_fsm : C.fsm;
    int r = cvx_raft_start(loop, &rc, fsm, C.fsm_arg, on_role, NULL, &C.raft, err, sizeof(err));
    if (r != 0) {
        fprintf(stderr, "callvoxd: cluster: %s\n", err);
        return r;
    }
    cvx_notice("cluster: member %s (id %lld, %s) of %u, Raft on %s, %s preset (election %u ms, "
               "heartbeat %u ms)",
               C.self->name, C.self->conf.id, member_roles[C.self->conf.role], C.nmembers,
               C.self->conf.raft, preset_names[C.conf.preset], rc.election_timeout_ms,
               rc.heartbeat_timeout_ms);
    if (C.fsm == NULL && want == 0)
        cvx_warn("cluster: no replicated state machine is registered yet: the Raft log elects "
                 "the active system server but carries no store records");
    return 0;
}

static void on_stopped(void *arg)
{
    (void)arg;
    if (C.transport_ready)
        cvx_raft_tls_free(&C.transport);
    C.transport_ready = 0;
    cvx_tls_ctx_destroy(C.server_ctx);
    cvx_tls_ctx_destroy(C.client_ctx);
    C.server_ctx = C.client_ctx = NULL;
}

static void cluster_stop(void)
{
    if (C.raft != NULL) {
        cvx_raft_stop(C.raft, on_stopped, NULL);
        C.raft = NULL;
    } else if (C.server_ctx != NULL || C.client_ctx != NULL) {
        on_stopped(NULL);
    }
}

static const cvx_daemon_hooks_t cluster_hooks = {"cluster", CVX_ROLE_SYSTEM | CVX_ROLE_WITNESS,
                                                 cluster_start, cluster_stop, NULL};

void cvx_cluster_set_fsm(const cvx_raft_fsm_t *fsm, void *arg)
{
    C.fsm = fsm;
    C.fsm_arg = arg;
}

cvx_raft_t *cvx_cluster_raft(void)
{
    return C.raft;
}

int cvx_cluster_active(void)
{
    if (!(cvx_daemon_role() & CVX_ROLE_SYSTEM))
        return 0;
    return C.nmembers == 0 || C.leader;
}

/* --- commands ----------------------------------------------------------------------------- */

static int cmd_show_cluster(cvx_cmd_req_t *req)
{
    if (C.raft == NULL) {
        cvx_cmd_error(req, "%s",
                      C.nmembers == 0 ? "no cluster: this system server runs alone "
                                        "(no [member:NAME] sections)"
                                      : "the cluster is not running");
        return CVX_ENOTFOUND;
    }
    cvx_raft_status_t st;
    cvx_raft_status(C.raft, &st);
    const member_t *leader = member_by_id(st.leader_id);
    uint64_t now = uv_now(cvx_daemon_loop());
    cvx_cmd_printf(req, "%-14s %s\n", "this", C.self->name);
    cvx_cmd_json_str(req, "this", C.self->name);
    cvx_cmd_printf(req, "%-14s %s\n", "active", leader ? leader->name : "none");
    cvx_cmd_json_str(req, "active", leader ? leader->name : NULL);
    cvx_cmd_printf(req, "%-14s %llu\n", "term", (unsigned long long)st.term);
    cvx_cmd_json_uint(req, "term", st.term);
    cvx_cmd_printf(req, "%-14s %llu\n", "commit", (unsigned long long)st.commit_index);
    cvx_cmd_json_uint(req, "commit", st.commit_index);
    cvx_cmd_printf(req, "%-14s %llu\n", "applied", (unsigned long long)st.applied_index);
    cvx_cmd_json_uint(req, "applied", st.applied_index);
    cvx_cmd_printf(req, "%-14s %llu\n", "leader_changes", (unsigned long long)C.leader_changes);
    cvx_cmd_json_uint(req, "leader_changes", C.leader_changes);
    cvx_cmd_printf(req, "%-14s %.1f s\n", "active_for",
                   leader ? (double)(now - C.leader_since_ms) / 1000.0 : 0.0);
    cvx_cmd_json_uint(req, "active_for_ms", leader ? now - C.leader_since_ms : 0);
    static const char *const cols[] = {"name",  "id#",    "role", "raft",
                                       "state", "match#", "lag#", NULL};
    cvx_cmd_table_begin(req, "members", cols);
    for (unsigned i = 0; i < C.nmembers; i++) {
        const member_t *m = &C.members[i];
        char id[24], match[24] = "-", lag[24] = "-";
        snprintf(id, sizeof(id), "%lld", m->conf.id);
        const char *state = m == leader ? "active" : "passive";
        if (m->conf.role == 1)
            state = m == leader ? "witness (leading)" : "witness";
        for (unsigned k = 0; st.leader && k < st.nmembers; k++) {
            if (st.members[k].id != (uint64_t)m->conf.id)
                continue;
            if (m != C.self) {
                snprintf(match, sizeof(match), "%llu",
                         (unsigned long long)st.members[k].match_index);
                snprintf(lag, sizeof(lag), "%llu",
                         (unsigned long long)(st.last_index > st.members[k].match_index
                                                  ? st.last_index - st.members[k].match_index
                                                  : 0));
                if (!st.members[k].recent)
                    state = "unreachable";
            }
        }
        const char *cells[] = {m->name, id, member_roles[m->conf.role], m->conf.raft, state,
                               match,   lag};
        cvx_cmd_table_row(req, cells);
    }
    cvx_cmd_table_end(req);
    return 0;
}

typedef struct failover_req {
    cvx_cmd_req_t *req;
    char to[64];
} failover_req_t;

static void on_failover(void *arg, int status, uint64_t index)
{
    failover_req_t *f = arg;
    (void)index;
    if (status == 0) {
        /* libraft's view, fresher than the role watch's; else the member asked for. */
        cvx_raft_status_t st;
        cvx_raft_status(C.raft, &st);
        const member_t *m = st.leader_id != 0 ? member_by_id(st.leader_id) : NULL;
        if (m == NULL && f->to[0] != '\0')
            m = member_by_name(f->to);
        if (m != NULL)
            cvx_cmd_printf(f->req, "leadership handed over: %s is now active\n", m->name);
        else
            cvx_cmd_printf(f->req, "leadership handed over; the next active server is being "
                                   "elected\n");
    } else {
        cvx_cmd_error(f->req, "leadership was not handed over: %s", cvx_strerror(status));
    }
    cvx_cmd_finish(f->req, status);
    free(f);
}

static int cmd_cluster_failover(cvx_cmd_req_t *req)
{
    if (C.raft == NULL) {
        cvx_cmd_error(req, "no cluster is running here");
        return CVX_ENOTFOUND;
    }
    cvx_raft_status_t st;
    cvx_raft_status(C.raft, &st);
    if (!st.leader) {
        const member_t *l = member_by_id(st.leader_id);
        cvx_cmd_error(req, "this server is not the active one; run it on %s",
                      l != NULL ? l->name : "the active system server");
        return CVX_ESTATE;
    }
    uint64_t to = 0;
    if (cvx_cmd_argc(req) > 0) {
        const char *name = cvx_cmd_arg(req, 0);
        const member_t *m = member_by_name(name);
        if (m == NULL) {
            cvx_cmd_error(req, "no member named %s", name);
            return CVX_ENOTFOUND;
        }
        if (m->conf.role != 0 || m == C.self) {
            cvx_cmd_error(req, "%s cannot take over: %s", name,
                          m == C.self ? "it is active already" : "it is a witness");
            return CVX_EINVAL;
        }
        to = (uint64_t)m->conf.id;
    }
    failover_req_t *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return CVX_ENOMEM;
    f->req = req;
    if (to != 0)
        snprintf(f->to, sizeof(f->to), "%s", member_by_id(to)->name);
    int rc = cvx_raft_transfer(C.raft, to, on_failover, f);
    if (rc != 0) {
        free(f);
        cvx_cmd_error(req, "cannot hand leadership over: %s", cvx_strerror(rc));
        return rc;
    }
    return CVX_CMD_PENDING;
}

static const cvx_cmd_t cluster_cmds[] = {
    {"show cluster",
     {{0}},
     CVX_CMD_READONLY,
     "Show the system servers' cluster: members, the active one, term and indexes",
     "Prints this member, the active system server, the Raft term, commit and applied "
     "indexes, how often the active server changed and since when it is active; then one line "
     "per member with its id, role, Raft address and state (active, passive, witness, or "
     "unreachable when the active server has not heard from it within an election timeout) "
     "and, on the active server, the log index it has and how many records it lags behind.",
     cmd_show_cluster,
     NULL},
    {"cluster failover",
     {{"to", CVX_CMD_ARG_OPTIONAL, NULL, NULL, "the data member to hand over to"}},
     0,
     "Hand the active role to another system server (planned maintenance)",
     "Runs on the active system server: hands leadership to the named data member, or to the "
     "most up-to-date one, and reports which member is active afterwards.",
     cmd_cluster_failover,
     NULL},
    CVX_CMDS_END,
};

int cvx_cluster_register(void)
{
    int rc = cvx_daemon_add_section(&cluster_section, &C.conf);
    if (rc == 0)
        rc = cvx_daemon_add_sections(&member_section, bind_member, release_members, NULL);
    if (rc == 0)
        rc = cvx_daemon_add_hooks(&cluster_hooks);
    if (rc == 0)
        rc = cvx_cmd_register(cluster_cmds);
    return rc;
}
