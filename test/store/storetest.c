/* Synchronous helpers over the store's service interface (see storetest.h). */
#include <assert.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cvx/error.h"
#include "cvx/reactor.h"
#include "storetest.h"

void st_run(st_env_t *e, int *flag)
{
    while (!*flag)
        uv_run(&e->loop, UV_RUN_ONCE);
}

void st_init(st_env_t *e)
{
    memset(e, 0, sizeof(*e));
    const char *tmp = getenv("TMPDIR");
    snprintf(e->dir, sizeof(e->dir), "%s/cvx-store-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (mkdtemp(e->dir) == NULL)
        abort();
    uv_loop_init(&e->loop);
    cvx_store_conf_defaults(&e->conf);
    static char path[300];
    snprintf(path, sizeof(path), "%s/store", e->dir);
    e->conf.path = strdup(path);
}

int st_open(st_env_t *e)
{
    e->err[0] = '\0';
    return cvx_store_open(&e->loop, &e->conf, &e->st, e->err, sizeof(e->err));
}

static void on_closed(void *arg)
{
    *(int *)arg = 1;
}

void st_close(st_env_t *e)
{
    if (e->st == NULL)
        return;
    int closed = 0;
    cvx_store_close(e->st, on_closed, &closed);
    st_run(e, &closed);
    e->st = NULL;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void st_fini(st_env_t *e)
{
    st_close(e);
    uv_run(&e->loop, UV_RUN_NOWAIT);
    uv_loop_close(&e->loop);
    if (getenv("CVX_KEEP") == NULL)
        nftw(e->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free((char *)e->conf.path);
}

void st_done_cb(void *arg, int status)
{
    st_wait_t *w = arg;
    w->status = status;
    w->done = 1;
}

static int wait_done(st_env_t *e, int rc, st_wait_t *w)
{
    if (rc != 0)
        return rc;
    st_run(e, &w->done);
    return w->status;
}

int st_put(st_env_t *e, const char *number, const char *first, const char *last, int mode)
{
    cvx_mailbox_t mb = {0};
    snprintf(mb.number, sizeof(mb.number), "%s", number);
    snprintf(mb.first_name, sizeof(mb.first_name), "%s", first ? first : "");
    snprintf(mb.last_name, sizeof(mb.last_name), "%s", last ? last : "");
    mb.listed = 1;
    st_wait_t w = {0};
    return wait_done(e, cvx_store_mailbox_put(e->st, &mb, mode, st_done_cb, &w), &w);
}

typedef struct mbwait {
    int done, status;
    cvx_mailbox_t mb;
} mbwait_t;

static void on_mailbox(void *arg, int status, const cvx_mailbox_t *mb)
{
    mbwait_t *w = arg;
    w->status = status;
    if (mb != NULL)
        w->mb = *mb;
    w->done = 1;
}

int st_get(st_env_t *e, const char *number, cvx_mailbox_t *out)
{
    mbwait_t w = {0};
    int rc = cvx_store_mailbox_get(e->st, number, on_mailbox, &w);
    if (rc != 0)
        return rc;
    st_run(e, &w.done);
    if (out != NULL)
        *out = w.mb;
    return w.status;
}

int st_del(st_env_t *e, const char *number)
{
    st_wait_t w = {0};
    return wait_done(e, cvx_store_mailbox_del(e->st, number, st_done_cb, &w), &w);
}

typedef struct commitwait {
    int done, status;
    cvx_deposit_result_t res;
} commitwait_t;

static void on_commit(void *arg, int status, const cvx_deposit_result_t *r)
{
    commitwait_t *w = arg;
    w->status = status;
    if (r != NULL)
        w->res = *r;
    w->done = 1;
}

int st_deposit(st_env_t *e, const char *id, const char *mailbox, const void *data, size_t len,
               size_t chunk, cvx_deposit_result_t *res)
{
    cvx_message_t m = {0};
    snprintf(m.id, sizeof(m.id), "%s", id);
    snprintf(m.mailbox, sizeof(m.mailbox), "%s", mailbox);
    snprintf(m.caller_number, sizeof(m.caller_number), "5551234");
    m.codec = CVX_CODEC_ULAW;
    m.rate = 8000;
    cvx_store_stream_t *s;
    int rc = cvx_store_deposit_open(e->st, &m, &s);
    if (rc != 0)
        return rc;
    for (size_t off = 0; off < len; off += chunk) {
        size_t n = len - off < chunk ? len - off : chunk;
        rc = cvx_store_stream_append(s, (const uint8_t *)data + off, n);
        assert(rc == 0);
    }
    commitwait_t w = {0};
    rc = cvx_store_stream_commit(s, (uint32_t)(len / 8), on_commit, &w);
    if (rc != 0)
        return rc;
    st_run(e, &w.done);
    if (res != NULL)
        *res = w.res;
    return w.status;
}

typedef struct listwait {
    int done, status;
    cvx_message_t *out;
    size_t max, n;
} listwait_t;

static void on_list(void *arg, int status, const cvx_message_t *msgs, size_t n)
{
    listwait_t *w = arg;
    w->status = status;
    w->n = n;
    for (size_t i = 0; i < n && i < w->max; i++)
        w->out[i] = msgs[i];
    w->done = 1;
}

int st_list(st_env_t *e, const char *mailbox, int folder, cvx_message_t *out, size_t max, size_t *n)
{
    listwait_t w = {0, 0, out, out ? max : 0, 0};
    int rc = cvx_store_message_list(e->st, mailbox, folder, on_list, &w);
    if (rc != 0)
        return rc;
    st_run(e, &w.done);
    *n = w.n;
    return w.status;
}

typedef struct msgwait {
    int done, status;
    cvx_message_t m;
} msgwait_t;

static void on_msg(void *arg, int status, const cvx_message_t *m)
{
    msgwait_t *w = arg;
    w->status = status;
    if (m != NULL)
        w->m = *m;
    w->done = 1;
}

int st_msg(st_env_t *e, const char *id, cvx_message_t *out)
{
    msgwait_t w = {0};
    int rc = cvx_store_message_get(e->st, id, on_msg, &w);
    if (rc != 0)
        return rc;
    st_run(e, &w.done);
    if (out != NULL)
        *out = w.m;
    return w.status;
}

int st_move(st_env_t *e, const char *id, cvx_folder_t f)
{
    st_wait_t w = {0};
    return wait_done(e, cvx_store_message_move(e->st, id, f, st_done_cb, &w), &w);
}

int st_purge(st_env_t *e, const char *id)
{
    st_wait_t w = {0};
    return wait_done(e, cvx_store_message_purge(e->st, id, st_done_cb, &w), &w);
}

typedef struct playwait {
    int done, status;
    uint8_t *buf;
    size_t size, len;
    cvx_store_reader_t *r;
} playwait_t;

static void on_chunk(void *arg, int status, const void *data, size_t len)
{
    playwait_t *w = arg;
    if (status != 0 || len == 0) {
        w->status = status;
        w->done = 1;
        return;
    }
    if (w->len + len <= w->size)
        memcpy(w->buf + w->len, data, len);
    w->len += len;
    int rc = cvx_store_audio_next(w->r, on_chunk, w);
    if (rc != 0) {
        w->status = rc;
        w->done = 1;
    }
}

static void on_open(void *arg, int status, const cvx_audio_info_t *info)
{
    playwait_t *w = arg;
    (void)info;
    if (status != 0) {
        w->status = status;
        w->done = 1;
        return;
    }
    int rc = cvx_store_audio_next(w->r, on_chunk, w);
    if (rc != 0) {
        w->status = rc;
        w->done = 1;
    }
}

int st_play(st_env_t *e, const cvx_audio_ref_t *ref, void *buf, size_t size, size_t *len)
{
    playwait_t w = {0, 0, buf, size, 0, NULL};
    int rc = cvx_store_audio_open(e->st, ref, on_open, &w, &w.r);
    if (rc != 0)
        return rc;
    st_run(e, &w.done);
    cvx_store_audio_close(w.r);
    if (len != NULL)
        *len = w.len;
    return w.status;
}

int st_play_msg(st_env_t *e, const char *id, void *buf, size_t size, size_t *len)
{
    cvx_audio_ref_t ref = {0};
    snprintf(ref.id, sizeof(ref.id), "%s", id);
    return st_play(e, &ref, buf, size, len);
}

typedef struct statswait {
    int done, status;
    cvx_store_stats_t s;
} statswait_t;

static void on_stats(void *arg, int status, const cvx_store_stats_t *s)
{
    statswait_t *w = arg;
    w->status = status;
    if (s != NULL)
        w->s = *s;
    w->done = 1;
}

int st_stats(st_env_t *e, cvx_store_stats_t *out)
{
    statswait_t w = {0};
    int rc = cvx_store_stats(e->st, on_stats, &w);
    if (rc != 0)
        return rc;
    st_run(e, &w.done);
    *out = w.s;
    return w.status;
}

static void print_line(void *arg, const char *line)
{
    (void)arg;
    printf("verify: %s\n", line);
}

int st_verify(st_env_t *e)
{
    st_wait_t w = {0};
    return wait_done(e, cvx_store_verify(e->st, print_line, st_done_cb, &w), &w);
}

void st_audio_for(const char *id, uint8_t *buf, size_t len)
{
    uint32_t h = 2166136261u;
    for (const char *p = id; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    for (size_t i = 0; i < len; i++) {
        h ^= h << 13;
        h ^= h >> 17;
        h ^= h << 5;
        buf[i] = (uint8_t)h;
    }
}
