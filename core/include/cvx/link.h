/*
 * The call-server <-> system-server link (ARCHITECTURE.md, "Processes and roles").
 *
 * One TCP connection per call server to the active system server, TLS 1.3 (OpenSSL) with
 * mutual certificates from the cluster CA, on the loop thread (memory BIOs: no blocking
 * call).  Frames are a 4-byte big-endian length then a protobuf-c `Frame` envelope
 * (core/link/link.proto) that carries the protocol version, the frame type, a request id,
 * a method number and an opaque body.  The link knows nothing of what the bodies mean: the
 * services above it (the store's service interface, MWI, caches) define their own messages
 * (store/store.proto) and register method numbers.
 *
 * Ordering: frames on one connection arrive in the order they were sent, so a stream of
 * calls (deposit open, append, append, commit) is processed in order by the other side.
 *
 * Lifetimes: every pointer handed to a callback is valid during that callback only.
 * Thread: the loop thread only.
 *
 * Configuration ([link] section, registered by the core):
 *   listen   = host:port            system/all: where call servers connect (none: no link)
 *   servers  = host:port, host:port call: the system servers, tried in order
 *   ca, cert, key                   PEM files: the cluster CA, this server's certificate/key
 *   name                            this server's name in `show callservers` (default: the
 *                                   daemon's name, [general] name)
 *   ports                           call: the ports this call server declares
 *   heartbeat_ms, timeout_ms        ping interval and dead-peer time
 *   hello_timeout_ms                time a new connection has for TLS and its hello
 *   request_timeout_ms              a call with no reply by then completes with CVX_ETIMEOUT
 *   reconnect_min_ms, reconnect_max_ms   call: back-off between connection attempts
 * (the *_ms keys are plain integers in milliseconds)
 *
 * Identity: a peer is known by its certificate's common name; the name in its hello must be
 * the same, or it is refused.
 */
#ifndef CVX_LINK_H
#define CVX_LINK_H

#include <stddef.h>
#include <stdint.h>

/* Bumped on any incompatible change of the envelope; a peer with another major is refused
 * with a log line naming both versions. */
#define CVX_LINK_VERSION 1

/* Method numbers: the service in the high 16 bits, the operation in the low 16 bits. */
#define CVX_LINK_METHOD(service, op) (((uint32_t)(service) << 16) | (uint32_t)(op))
enum {
    CVX_LINK_SVC_LINK = 0,    /* the link's own (hello, status, ping) */
    CVX_LINK_SVC_STORE = 1,   /* the store's service interface (store/) */
    CVX_LINK_SVC_MWI = 2,     /* lamp updates to call servers and their results */
    CVX_LINK_SVC_CACHE = 3,   /* cache invalidations */
    CVX_LINK_SVC_LICENSE = 4, /* licensed ports across call servers, the licence's state */
};
#define CVX_LINK_BODY_MAX (1024 * 1024) /* largest body of one frame */

/* --- system-server side (roles system and all, when [link] listen is set) --------------- */

typedef struct cvx_link_req cvx_link_req_t;   /* a request waiting for its reply */
typedef struct cvx_link_peer cvx_link_peer_t; /* a connected call server */

/*
 * A handler for every method of one service.  It must call cvx_link_reply() exactly once
 * for req, now or later (after an asynchronous store operation).  If the peer goes away in
 * between, the reply is dropped silently and req is freed by cvx_link_reply().
 */
typedef void (*cvx_link_method_fn)(void *arg, cvx_link_req_t *req, uint32_t method,
                                   const uint8_t *body, size_t len);
/* Returns 0, CVX_EEXIST (the service has a handler) or CVX_ELIMIT; fn NULL removes the
 * service's handler (a module's unload()).  May be called before the link starts. */
int cvx_link_serve(uint16_t service, cvx_link_method_fn fn, void *arg);
/* status: 0 or CVX_E* (sent as is); body may be NULL with len 0. */
int cvx_link_reply(cvx_link_req_t *req, int status, const void *body, size_t len);
/* The call server a request came from (its certificate's common name), "" once gone. */
const char *cvx_link_req_peer(const cvx_link_req_t *req);

/* Sends a push (no reply) to one call server by name, or to all when name is NULL.
 * Returns 0, CVX_ENOTFOUND (no such call server connected) or CVX_EUNAVAIL. */
int cvx_link_push_to(const char *name, uint32_t method, const void *body, size_t len);

/* Pushes received from call servers (MWI results) go to a handler per service. */
typedef void (*cvx_link_push_fn)(void *arg, const char *peer, uint32_t method, const uint8_t *body,
                                 size_t len);
int cvx_link_server_on_push(uint16_t service, cvx_link_push_fn fn, void *arg);

/* Called when a call server connects (up = 1, after its hello) or goes (up = 0). */
typedef void (*cvx_link_peer_fn)(void *arg, const char *peer, int up);
void cvx_link_server_on_peer(cvx_link_peer_fn fn, void *arg);
/* Removes that callback (a module's unload()); registering the same pair twice is a no-op. */
void cvx_link_server_off_peer(cvx_link_peer_fn fn, void *arg);

/* This system server's epoch (random per run, as sent in the hello-ack); 0 when no link is
 * served. */
uint64_t cvx_link_server_epoch(void);

/* What `show callservers` lists, one per call server known since start. */
typedef struct cvx_link_peer_info {
    const char *name;
    const char *address; /* "127.0.0.2:41234" */
    const char *state;   /* "up", "down" */
    const char *version; /* the peer's callvoxd version */
    const char *drivers; /* "sip:pbx1 sip:pbx2" */
    uint32_t ports;      /* ports its driver instances declare */
    uint32_t calls;      /* calls in progress (last status) */
    uint32_t spool;      /* messages waiting in its spool (last status) */
    uint32_t rtt_us;     /* last ping round trip */
    uint64_t since_ms;   /* UTC ms of the last state change */
} cvx_link_peer_info_t;
void cvx_link_foreach_peer(int (*fn)(void *arg, const cvx_link_peer_info_t *p), void *arg);

/* --- call-server side (role call) --------------------------------------------------------- */

/* 1 when the link to a system server is up (hello exchanged). */
int cvx_link_up(void);

/*
 * Sends a request to the system server.  Returns CVX_EUNAVAIL at once (cb not called) when
 * the link is down.  Otherwise cb is called exactly once, later: with the peer's status and
 * reply body, with CVX_EUNAVAIL when the link goes down first, or CVX_ETIMEOUT.
 */
typedef void (*cvx_link_reply_fn)(void *arg, int status, const uint8_t *body, size_t len);
int cvx_link_call(uint32_t method, const void *body, size_t len, cvx_link_reply_fn cb, void *arg);
/* Sends a push to the system server (no reply). */
int cvx_link_push(uint32_t method, const void *body, size_t len);

/* Pushes from the system server, per service. */
typedef void (*cvx_link_client_push_fn)(void *arg, uint32_t method, const uint8_t *body,
                                        size_t len);
int cvx_link_client_on_push(uint16_t service, cvx_link_client_push_fn fn, void *arg);

/* Called when the link comes up (up = 1, after the hello; server_epoch identifies the
 * system server's run, so caches can tell a restart or a failover) and when it goes down. */
typedef void (*cvx_link_state_fn)(void *arg, int up, uint64_t server_epoch);
void cvx_link_client_on_state(cvx_link_state_fn fn, void *arg);
/* Removes that callback; registering the same pair twice is a no-op. */
void cvx_link_client_off_state(cvx_link_state_fn fn, void *arg);

/* Figures the call server reports in its periodic status frame. */
void cvx_link_client_set_spool_depth(uint32_t n);

/* Registers the [link] section, its start/stop hooks and its commands (core/main.c). */
int cvx_link_register(void);

#endif
