/*
 * A TLS 1.3 stream on the libuv loop: OpenSSL over memory BIOs on a uv_tcp_t, so that no
 * call ever blocks.  Both ends present a certificate, and each verifies the other's against
 * one CA file (mutual authentication); the peer's certificate common name is exposed as its
 * identity.  Used by the call-server link; meant for SIP over TLS and Raft traffic too, so it
 * knows nothing of what it carries.
 *
 * Lifetimes: a cvx_tls_ctx_t (certificates, key, CA) outlives the streams made from it.  A
 * stream is owned by whoever created it until either it calls cvx_tls_close() or the stream
 * reports on_close(); after either, the stream frees itself once libuv has closed its
 * handle, and no callback is called any more.  Pointers given to callbacks are valid during
 * the callback only.
 * Thread: the loop thread only.  Nothing here blocks except cvx_tls_ctx_create(), which reads
 * the PEM files (call it at start-up).
 */
#ifndef CVX_TLS_H
#define CVX_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct cvx_tls_ctx cvx_tls_ctx_t;
typedef struct cvx_tls cvx_tls_t;

/*
 * Reads ca (the CA certificates peers must chain to), cert and key (this end's certificate
 * chain and private key, PEM).  server: 1 for the accepting side.  Returns 0 or CVX_E*; on
 * failure err (errlen bytes) says which file and why.
 */
int cvx_tls_ctx_create(cvx_tls_ctx_t **out, int server, const char *ca, const char *cert,
                       const char *key, char *err, size_t errlen);
void cvx_tls_ctx_destroy(cvx_tls_ctx_t *ctx);

typedef struct cvx_tls_callbacks {
    /* The handshake finished and the peer's certificate was verified. */
    void (*on_open)(cvx_tls_t *t, void *arg);
    /* Decrypted application data, in order. */
    void (*on_data)(cvx_tls_t *t, void *arg, const uint8_t *data, size_t len);
    /* The stream ended by itself: err is 0 when the peer closed cleanly, else a CVX_E* code;
     * why is a short explanation for a log line ("certificate verify failed: unable to get
     * local issuer certificate", "connection reset by peer").  The stream is gone after. */
    void (*on_close)(cvx_tls_t *t, void *arg, int err, const char *why);
} cvx_tls_callbacks_t;

/* Accepts a pending connection on server and starts the server handshake.  Returns 0 (the
 * stream in *out) or CVX_E*. */
int cvx_tls_accept(cvx_tls_ctx_t *ctx, uv_stream_t *server, const cvx_tls_callbacks_t *cbs,
                   void *arg, cvx_tls_t **out);

/* Connects to addr and starts the client handshake; a failed connect is reported through
 * on_close.  Returns 0 (the stream in *out) or CVX_E* (then no callback is called). */
int cvx_tls_connect(cvx_tls_ctx_t *ctx, uv_loop_t *loop, const struct sockaddr *addr,
                    const cvx_tls_callbacks_t *cbs, void *arg, cvx_tls_t **out);

/* Encrypts and queues data (after on_open); what is written during one loop iteration goes
 * to the socket together, before the loop next waits.  Returns 0 or CVX_E* (CVX_ESTATE
 * before the handshake or after close). */
int cvx_tls_write(cvx_tls_t *t, const void *data, size_t len);

/* Bytes encrypted or queued for the socket and not yet written (for back-pressure). */
size_t cvx_tls_write_queue(const cvx_tls_t *t);

/* Closes the stream (sending a close_notify when the handshake was done).  No callback is
 * called afterwards. */
void cvx_tls_close(cvx_tls_t *t);

/* The verified peer certificate's common name ("" before on_open). */
const char *cvx_tls_peer_name(const cvx_tls_t *t);
/* The peer's address, "127.0.0.1:41234" or "[::1]:41234". */
const char *cvx_tls_peer_address(const cvx_tls_t *t);

/* Formats addr as cvx_tls_peer_address() does. */
void cvx_tls_format_addr(const struct sockaddr *addr, char *buf, size_t size);

#endif
