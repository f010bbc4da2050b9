/*
 * Audio in memory and the prompt cache (see cvx/media.h).
 *
 * A file is read by libsndfile on the libuv thread pool (uv_queue_work) into a new
 * cvx_audio_t; the after-work callback, on the loop, puts it in the cache and calls everyone
 * who asked for that path meanwhile.  The cache is a short list keyed by path: a prompt set is
 * a few hundred files, looked up when a call flow starts a prompt, not per frame.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sndfile.h>
#include <sys/stat.h>

#include "cvx/error.h"
#include "cvx/log.h"
#include "cvx/media.h"

struct cvx_audio {
    unsigned refs;
    uint32_t rate;
    size_t n;
    int16_t samples[]; /* n samples */
};

typedef struct waiter {
    struct waiter *next;
    cvx_audio_cb cb;
    void *arg;
} waiter_t;

typedef struct entry {
    struct entry *next;
    char *path;
    cvx_audio_t *audio; /* NULL while loading */
    waiter_t *waiters;  /* callbacks to call when loaded */
    uv_work_t work;
    int loading;
    int err; /* the load's result, set on the pool thread */
    cvx_audio_t *loaded;
    uv_idle_t idle; /* for cache hits: the callback runs later, from the loop */
    int idle_on;
} entry_t;

static entry_t *cache;
static size_t cache_files, cache_bytes;

cvx_audio_t *cvx_audio_ref(cvx_audio_t *a)
{
    a->refs++;
    return a;
}

void cvx_audio_unref(cvx_audio_t *a)
{
    if (a != NULL && --a->refs == 0)
        free(a);
}

uint32_t cvx_audio_rate(const cvx_audio_t *a)
{
    return a->rate;
}

size_t cvx_audio_samples(const cvx_audio_t *a)
{
    return a->n;
}

const int16_t *cvx_audio_data(const cvx_audio_t *a)
{
    return a->samples;
}

static cvx_audio_t *audio_new(size_t n, uint32_t rate)
{
    cvx_audio_t *a = malloc(sizeof(*a) + (n ? n : 1) * sizeof(int16_t));
    if (a == NULL)
        return NULL;
    a->refs = 1;
    a->rate = rate;
    a->n = n;
    return a;
}

cvx_audio_t *cvx_audio_from_samples(const int16_t *samples, size_t n, uint32_t rate)
{
    cvx_audio_t *a = audio_new(n, rate);
    if (a != NULL && n > 0)
        memcpy(a->samples, samples, n * sizeof(int16_t));
    return a;
}

/* --- loading, on a pool thread ------------------------------------------------------------ */

static int read_file(const char *path, cvx_audio_t **out)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return errno == ENOENT || errno == ENOTDIR ? CVX_ENOTFOUND
               : errno == EACCES                   ? CVX_EPERM
                                                   : CVX_EIO;
    SF_INFO info;
    memset(&info, 0, sizeof(info));
    SNDFILE *sf = sf_open(path, SFM_READ, &info);
    if (sf == NULL) {
        int e = sf_error(NULL);
        if (e == SF_ERR_SYSTEM)
            return errno == EACCES ? CVX_EPERM : CVX_EIO;
        return e == SF_ERR_UNSUPPORTED_ENCODING ? CVX_ENOTSUP : CVX_ECORRUPT;
    }
    int rc = 0;
    if (info.channels != 1 || info.samplerate != 8000) {
        rc = CVX_ENOTSUP;
        goto out;
    }
    if (info.frames < 0 || info.frames > 8000LL * 3600) {
        rc = CVX_ERANGE; /* over an hour: not a prompt */
        goto out;
    }
    cvx_audio_t *a = audio_new((size_t)info.frames, 8000);
    if (a == NULL) {
        rc = CVX_ENOMEM;
        goto out;
    }
    sf_count_t got = sf_read_short(sf, a->samples, info.frames);
    if (got < 0) {
        free(a);
        rc = CVX_EIO;
        goto out;
    }
    a->n = (size_t)got;
    *out = a;
out:
    sf_close(sf);
    return rc;
}

static void work_cb(uv_work_t *w)
{
    entry_t *e = w->data;
    e->loaded = NULL;
    e->err = read_file(e->path, &e->loaded);
}

static void call_waiters(entry_t *e)
{
    waiter_t *w = e->waiters;
    e->waiters = NULL;
    while (w != NULL) {
        waiter_t *next = w->next;
        if (e->audio != NULL)
            w->cb(cvx_audio_ref(e->audio), 0, w->arg);
        else
            w->cb(NULL, e->err, w->arg);
        free(w);
        w = next;
    }
}

static void entry_remove(entry_t *e)
{
    for (entry_t **pp = &cache; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == e) {
            *pp = e->next;
            return;
        }
    }
}

static void entry_free(entry_t *e)
{
    free(e->path);
    free(e);
}

static void after_work_cb(uv_work_t *w, int status)
{
    entry_t *e = w->data;
    e->loading = 0;
    if (status != 0 && e->err == 0)
        e->err = CVX_EIO;
    if (e->err == 0 && e->loaded != NULL) {
        e->audio = e->loaded;
        cache_files++;
        cache_bytes += e->audio->n * sizeof(int16_t);
    } else {
        cvx_log(CVX_LOG_WARN, "media: cannot load %s: %s", e->path, cvx_strerror(e->err));
    }
    e->loaded = NULL;
    /* A failed load is not cached: the file may appear later.  Take it out first so that a
     * waiter asking again starts a new load. */
    if (e->audio == NULL)
        entry_remove(e);
    call_waiters(e);
    if (e->audio == NULL && !e->idle_on)
        entry_free(e);
}

static void idle_cb(uv_idle_t *h)
{
    entry_t *e = h->data;
    uv_idle_stop(h);
    call_waiters(e);
}

static entry_t *find(const char *path)
{
    for (entry_t *e = cache; e != NULL; e = e->next)
        if (strcmp(e->path, path) == 0)
            return e;
    return NULL;
}

int cvx_audio_load(uv_loop_t *loop, const char *path, cvx_audio_cb cb, void *arg)
{
    if (path == NULL || cb == NULL)
        return CVX_EINVAL;
    entry_t *e = find(path);
    waiter_t *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return CVX_ENOMEM;
    w->cb = cb;
    w->arg = arg;
    if (e != NULL) {
        w->next = e->waiters;
        e->waiters = w;
        if (e->audio != NULL && !e->idle_on) {
            /* Cached: answer from the loop's next iteration, not from inside this call. */
            if (uv_idle_init(loop, &e->idle) != 0) {
                e->waiters = w->next;
                free(w);
                return CVX_EIO;
            }
            e->idle.data = e;
            e->idle_on = 1;
        }
        if (e->audio != NULL)
            uv_idle_start(&e->idle, idle_cb);
        return 0;
    }
    e = calloc(1, sizeof(*e));
    if (e == NULL || (e->path = strdup(path)) == NULL) {
        free(e);
        free(w);
        return CVX_ENOMEM;
    }
    e->waiters = w;
    e->work.data = e;
    e->loading = 1;
    int rc = uv_queue_work(loop, &e->work, work_cb, after_work_cb);
    if (rc != 0) {
        entry_free(e);
        free(w);
        return CVX_EIO;
    }
    e->next = cache;
    cache = e;
    return 0;
}

cvx_audio_t *cvx_audio_cached(const char *path)
{
    entry_t *e = find(path);
    return e != NULL && e->audio != NULL ? cvx_audio_ref(e->audio) : NULL;
}

void cvx_audio_cache_stats(size_t *files, size_t *bytes)
{
    *files = cache_files;
    *bytes = cache_bytes;
}

static void idle_closed(uv_handle_t *h)
{
    entry_free(h->data);
}

void cvx_audio_cache_clear(void)
{
    entry_t **pp = &cache;
    while (*pp != NULL) {
        entry_t *e = *pp;
        if (e->loading || e->waiters != NULL) {
            pp = &e->next; /* still being loaded or answered: leave it */
            continue;
        }
        *pp = e->next;
        if (e->audio != NULL) {
            cache_files--;
            cache_bytes -= e->audio->n * sizeof(int16_t);
            cvx_audio_unref(e->audio);
            e->audio = NULL;
        }
        if (e->idle_on && !uv_is_closing((uv_handle_t *)&e->idle))
            uv_close((uv_handle_t *)&e->idle, idle_closed);
        else if (!e->idle_on)
            entry_free(e);
    }
}
