/*
 * Synchronous wrappers around the store's asynchronous interface, for tests and tools: each
 * starts a request and runs the loop until its callback has run.
 */
#ifndef CVX_STORETEST_H
#define CVX_STORETEST_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "cvx/store.h"

typedef struct st_env {
    uv_loop_t loop;
    char dir[256];
    cvx_store_t *st;
    cvx_store_conf_t conf;
    char err[512];
} st_env_t;

/* Makes a fresh directory and a loop; conf gets the defaults with path = dir/store. */
void st_init(st_env_t *e);
/* Opens the store with e->conf; returns the open's status (e->err explains). */
int st_open(st_env_t *e);
/* Closes the store and runs the loop until it is gone. */
void st_close(st_env_t *e);
/* Closes everything and removes the directory. */
void st_fini(st_env_t *e);

int st_put(st_env_t *e, const char *number, const char *first, const char *last, int mode);
int st_get(st_env_t *e, const char *number, cvx_mailbox_t *out);
int st_del(st_env_t *e, const char *number);
/* Records data (in chunks of chunk bytes) as message id into mailbox and commits it. */
int st_deposit(st_env_t *e, const char *id, const char *mailbox, const void *data, size_t len,
               size_t chunk, cvx_deposit_result_t *res);
/* Messages of a mailbox: returns the status; *n and up to max into out. */
int st_list(st_env_t *e, const char *mailbox, int folder, cvx_message_t *out, size_t max,
            size_t *n);
int st_msg(st_env_t *e, const char *id, cvx_message_t *out);
int st_move(st_env_t *e, const char *id, cvx_folder_t f);
int st_purge(st_env_t *e, const char *id);
/* Plays a recording into buf (up to size bytes); *len is what was read. */
int st_play(st_env_t *e, const cvx_audio_ref_t *ref, void *buf, size_t size, size_t *len);
int st_play_msg(st_env_t *e, const char *id, void *buf, size_t size, size_t *len);
int st_stats(st_env_t *e, cvx_store_stats_t *out);
/* Runs verify; returns the number of problems or CVX_E*. */
int st_verify(st_env_t *e);
/* Waits for a done-style callback. */
typedef struct st_wait {
    int done;
    int status;
} st_wait_t;
void st_done_cb(void *arg, int status);
void st_run(st_env_t *e, int *flag);

/* Deterministic audio for an id: len bytes. */
void st_audio_for(const char *id, uint8_t *buf, size_t len);

#endif
