/*
 * The data directory's lease: which callvoxd holds [general] data_dir (the message store,
 * the spool).  It serves the SAN cold-standby deployment, where a second host mounts the
 * volume after the first one failed: a callvoxd refuses a directory whose lease has a live
 * holder, and the holder stops if its lease is ever taken from it.
 *
 * The lease file, DATA_DIR/callvox.lease, is text: host, pid, started, heartbeat (UTC ms)
 * and a random token.  The holder rewrites it every interval (a third of the timeout) on the
 * thread pool.  A lease is live when its heartbeat is younger than the timeout and, when it
 * was written on this host, its process still exists.
 *
 * The lease guards against mistakes (a second daemon started on the same directory, a
 * standby started while the first host still runs); it is not a fence.  Two hosts mounting
 * one volume at once is prevented by fencing the failed host first (README, Cold standby).
 */
#ifndef CVX_LEASE_H
#define CVX_LEASE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct cvx_lease cvx_lease_t;

typedef struct cvx_lease_info {
    char host[256];
    long pid;
    uint64_t started_ms, heartbeat_ms; /* UTC */
    char token[33];
} cvx_lease_info_t;

/*
 * Takes the lease of dir (which must exist) for this process.  A live holder makes it fail
 * with CVX_EBUSY and err saying who holds it, unless force (--force-takeover, after fencing).
 * A lease left by a holder that is gone is taken over with a notice (in err, rc 0).  Blocks
 * on file I/O and fsync: call it at start-up, before the loop runs.
 */
int cvx_lease_acquire(const char *dir, uint64_t timeout_ms, int force, cvx_lease_t **out, char *err,
                      size_t errlen);

/* Starts the heartbeat on loop.  lost is called (once, on the loop) when another process
 * has taken the lease over; the caller must stop using the directory at once. */
int cvx_lease_start(cvx_lease_t *l, uv_loop_t *loop, void (*lost)(void *arg, const char *why),
                    void *arg);

/* Stops the heartbeat, removes the lease file if it is still ours, and frees l (once its
 * handles are closed and a heartbeat in flight is done: keep the loop running).  Blocking
 * file I/O: at shutdown only. */
void cvx_lease_release(cvx_lease_t *l);

/* Reads and parses a lease file; 0, CVX_ENOTFOUND or CVX_EPARSE. */
int cvx_lease_read(const char *path, cvx_lease_info_t *info);

#endif
