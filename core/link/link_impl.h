/*
 * Inside the link (core/link/): framing shared by both sides, the two sides, the commands.
 * Loop thread only.
 */
#ifndef CVX_LINK_IMPL_H
#define CVX_LINK_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "cvx/config.h"
#include "cvx/link.h"
#include "cvx/tls.h"
#include "link.pb-c.h"

/* The largest frame accepted: a full body plus room for the envelope's other fields. */
#define CVX__LINK_FRAME_MAX (CVX_LINK_BODY_MAX + 256)

/* A peer with more than this queued for it and not yet written is not reading: dropped. */
#define CVX__LINK_QUEUE_MAX ((size_t)64 * 1024 * 1024)

/* --- framing (frame.c) ----------------------------------------------------------------- */

/* Reassembles frames from a byte stream: 4-byte big-endian length, then the frame. */
typedef struct cvx__link_rx {
    uint8_t *buf;
    size_t len, cap;
} cvx__link_rx_t;

/* Called with each complete frame (without its length); returns 0 to go on, or an error that
 * stops cvx__link_rx_feed(). */
typedef int (*cvx__link_frame_fn)(void *arg, const uint8_t *frame, size_t len);

/*
 * Feeds bytes; calls fn for every complete frame, in order.  Returns 0, fn's error, or
 * CVX_EPROTO when a length is over CVX__LINK_FRAME_MAX (then *bad_len, when not NULL, is
 * that length).  After an error the rx must not be fed again (the peer is dropped).
 */
int cvx__link_rx_feed(cvx__link_rx_t *rx, const uint8_t *data, size_t len, cvx__link_frame_fn fn,
                      void *arg, uint32_t *bad_len);
void cvx__link_rx_release(cvx__link_rx_t *rx);

/* Encodes f with its 4-byte length into a malloc'd buffer (*out, *out_len).  Returns 0,
 * CVX_ERANGE (body too large) or CVX_ENOMEM. */
int cvx__link_frame_pack(const Cvxlink__Frame *f, uint8_t **out, size_t *out_len);

/* Builds and sends one frame on t.  Returns 0 or CVX_E*. */
int cvx__link_send(cvx_tls_t *t, Cvxlink__Frame__Type type, uint64_t id, uint32_t method,
                   int32_t status, const void *body, size_t len);

/* Name of a frame type for log lines ("hello", "request"). */
const char *cvx__link_type_name(int type);

/* Wall clock in ms (UTC) and a monotonic clock in microseconds. */
uint64_t cvx__link_wall_ms(void);
uint64_t cvx__link_mono_us(void);

/* --- configuration (link.c) -------------------------------------------------------------- */

typedef struct cvx__link_conf {
    char *listen;
    cvx_strlist_t servers;
    char *ca, *cert, *key;
    char *name;
    long long ports;
    long long heartbeat_ms, timeout_ms, hello_timeout_ms, request_timeout_ms;
    long long reconnect_min_ms, reconnect_max_ms;
} cvx__link_conf_t;

extern cvx__link_conf_t cvx__link_conf;

/* Parses "host:port" or "[v6]:port" (numeric addresses only).  Returns 0 or CVX_EINVAL. */
int cvx__link_parse_addr(const char *s, struct sockaddr_storage *out);

/* This server's name in the hello ([link] name, else [general] name). */
const char *cvx__link_my_name(void);

/* --- the two sides ----------------------------------------------------------------------- */

int cvx__link_server_start(uv_loop_t *loop);
void cvx__link_server_stop(void);
int cvx__link_server_running(void);

int cvx__link_client_start(uv_loop_t *loop);
void cvx__link_client_stop(void);
int cvx__link_client_running(void);

/* What `show link` prints. */
typedef struct cvx__link_client_info {
    const char *server;  /* the address connected or being tried, "" */
    const char *name;    /* the system server's name (its certificate), "" */
    const char *state;   /* "down", "connecting", "handshake", "up" */
    uint64_t epoch;      /* server_epoch of the last hello-ack */
    uint32_t rtt_us;     /* last ping round trip */
    uint32_t pending;    /* requests waiting for their reply */
    uint64_t reconnects; /* connections made after the first */
    uint64_t since_ms;   /* UTC ms of the last state change */
    const char *last_error;
} cvx__link_client_info_t;
void cvx__link_client_get_info(cvx__link_client_info_t *out);

#endif
