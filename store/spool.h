/*
 * The call server's spool: messages taken while the system server could not be reached,
 * kept durably (an LMDB environment of its own in the call server's data directory) until the
 * forwarder has them confirmed by the system server.  The same environment keeps the last
 * known record of each mailbox a call server looked up, so deposits still find their mailbox
 * while the system server is away.
 *
 * Layout (named databases):
 *   queue    [be64(received_ms) id] -> SpoolEntry (store.proto): oldest first
 *   audio    [id NUL be32(chunk)]   -> audio bytes (chunks of up to CVX_STORE_CHUNK_MAX); also
 *                                     the chunks of recordings in progress (no entry yet:
 *                                     removed at open when a stop cut them short)
 *   mailbox  [number]               -> Mailbox (store.proto): the last record seen
 *
 * Writes go to the spool's own writer thread, which groups what is queued into one
 * transaction; spool entries are reported only after an fsync (mailbox records alone do not
 * force one).  Reads of metadata run on the loop in short read transactions; a spooled
 * message's audio is read on the thread pool.  Thread: the loop thread.
 */
#ifndef CVX_STORE_SPOOL_H
#define CVX_STORE_SPOOL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cvx/store.h"
#include "remote.h"

typedef struct spool spool_t;

int spool_open(uv_loop_t *loop, const char *path, uint64_t map_size, spool_t **out, char *err,
               size_t errlen);
/* Finishes queued writes (their callbacks run), then frees the spool and calls on_closed. */
void spool_close(spool_t *sp, void (*on_closed)(void *arg), void *arg);

/* Takes a message: audio is copied.  cb runs once the entry is durable, with the audio's
 * SHA-256; status 0 or CVX_E* (CVX_EFULL when the spool's map is full). */
typedef void (*spool_put_cb)(void *arg, int status, const uint8_t sha256[32]);
int spool_put(spool_t *sp, const cvx_message_t *msg, const void *audio, size_t len, const char *why,
              spool_put_cb cb, void *arg);
/* A recording in progress writes its audio as it goes (chunks numbered from 0, no sync), so
 * the call server holds none of it in memory; a recording the system server took is dropped,
 * one it could not take is put in the spool from its chunks (hashed then, and synced). */
int spool_draft_append(spool_t *sp, const char *id, uint32_t chunk, const void *data, size_t len);
int spool_draft_drop(spool_t *sp, const char *id);
int spool_put_draft(spool_t *sp, const cvx_message_t *msg, uint32_t chunks, const char *why,
                    spool_put_cb cb, void *arg);
/* Removes a forwarded message (durably) and its audio. */
int spool_del(spool_t *sp, const cvx_message_t *msg, void (*cb)(void *arg, int status), void *arg);
/* Counts an attempt and its error; hold = 1 keeps the forwarder from trying it again in this
 * run (the system server refused it for good). */
int spool_note(spool_t *sp, const cvx_message_t *msg, const char *error, int hold,
               void (*cb)(void *arg, int status), void *arg);
/* Keeps the last known record of a mailbox (not synced on its own). */
int spool_mailbox_put(spool_t *sp, const cvx_mailbox_t *mb);
int spool_mailbox_drop(spool_t *sp, const char *number);
/* Reads it: 0, CVX_ENOTFOUND or CVX_E*.  Loop thread (read transaction). */
int spool_mailbox_get(spool_t *sp, const char *number, cvx_mailbox_t *out);

uint32_t spool_depth(const spool_t *sp);
/* Audio chunks stored (a read transaction on the loop). */
uint64_t spool_chunks(spool_t *sp);
/* Writes queued and not yet delivered. */
unsigned spool_pending(const spool_t *sp);
int spool_foreach(spool_t *sp, int (*fn)(void *arg, const store_spool_info_t *i), void *arg);

/* Loads the oldest message not held, with its audio, on the thread pool.  cb gets status 0
 * and the message (audio valid during the callback), CVX_ENOTFOUND when nothing waits. */
typedef void (*spool_load_cb)(void *arg, int status, const cvx_message_t *msg, const uint8_t *audio,
                              size_t len, uint32_t attempts);
int spool_load_oldest(spool_t *sp, spool_load_cb cb, void *arg);

#endif
