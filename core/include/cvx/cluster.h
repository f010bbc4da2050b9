/*
 * The system servers' cluster: [cluster] and [member:NAME] sections, the consensus engine
 * (cvx/raft.h) over the cluster's TLS, the witness role, `show cluster` and
 * `cluster failover`.
 *
 * A system server (role system) or a witness (role witness) whose configuration has
 * [member:NAME] sections runs Raft with the other members; its [general] name must be one of
 * them.  Without members a system server runs alone (no failover).  Role all is never a
 * cluster member.
 *
 * What is replicated is given by the state machine registered with cvx_cluster_set_fsm()
 * (the message store's, which is issue 10's remaining work); a witness keeps the log only.
 *
 * Thread: the loop thread.
 */
#ifndef CVX_CLUSTER_H
#define CVX_CLUSTER_H

#include <stdint.h>

#include "cvx/raft.h"

/* Registers the sections, hooks and commands; callvoxd's main calls it. */
int cvx_cluster_register(void);

/* The state machine data servers apply the log to.  Call before the daemon starts. */
void cvx_cluster_set_fsm(const cvx_raft_fsm_t *fsm, void *arg);

/* The running engine, or NULL (no members, or not started yet). */
cvx_raft_t *cvx_cluster_raft(void);

/* 1 when this process is the active system server: the Raft leader, or a system server
 * without cluster members. */
int cvx_cluster_active(void);

#endif
