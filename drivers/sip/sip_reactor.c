/*
 * Sofia-SIP on the process's libuv loop, on one thread.
 *
 * One su_root per process, shared by every SIP instance, created on Sofia's epoll port with
 * threading off (su_root_threading(root, 0) before any nua_create(), or nua starts a thread of
 * its own).  The port's epoll descriptor is watched with uv_poll; when it is readable, or when
 * the one-shot timer re-armed from su_root_step()'s returned delay fires, we run
 * su_root_step(root, 0).  A returned delay of 0 is clamped to 1 ms on the timer path, because
 * sub-millisecond Sofia timers would otherwise make the loop spin.
 *
 * Sofia has no public getter for the epoll descriptor: we compare the process's descriptors
 * before and after creating the root and require exactly one new eventpoll descriptor.
 *
 * Messages queued by nua_*() calls made on this thread outside su_root_step() do not wake the
 * epoll descriptor (Sofia only signals its mailbox from other threads), so every such call is
 * followed by sip_reactor_kick(), which runs a step from the next loop iteration.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sofia-sip/su.h>

#include "cvx/error.h"
#include "cvx/log.h"
#include "cvx/reactor.h"
#include "sip_int.h"

typedef struct sip_deferred {
    struct sip_deferred *next;
    void (*fn)(void *arg);
    void *arg;
} sip_deferred_t;

struct sip_reactor {
    uv_loop_t *loop;
    su_root_t *root;
    int epfd;
    uv_poll_t poll;
    uv_timer_t timer; /* Sofia's next timer */
    uv_timer_t kick;  /* "step soon" after API calls and deferred work */
    unsigned refs;
    int stepping;
    int closing;
    unsigned open_handles;
    sip_deferred_t *deferred, **deferred_tail;
};

static sip_reactor_t *the_reactor;

/* The eventpoll descriptors of this process, as a bitmap over fd numbers < 4096. */
static int list_epoll_fds(uint8_t *bits, size_t nbytes)
{
    memset(bits, 0, nbytes);
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        char *end;
        long fd = strtol(de->d_name, &end, 10);
        if (*end != '\0' || fd < 0 || (size_t)fd >= nbytes * 8)
            continue;
        char path[64], target[64];
        snprintf(path, sizeof(path), "/proc/self/fd/%ld", fd);
        ssize_t n = readlink(path, target, sizeof(target) - 1);
        if (n <= 0)
            continue;
        target[n] = '\0';
        if (strcmp(target, "anon_inode:[eventpoll]") == 0)
            bits[fd / 8] |= (uint8_t)(1u << (fd % 8));
    }
    closedir(d);
    return 0;
}

static void run_deferred(sip_reactor_t *r)
{
    while (r->deferred != NULL) {
        sip_deferred_t *d = r->deferred;
        r->deferred = d->next;
        if (r->deferred == NULL)
            r->deferred_tail = &r->deferred;
        d->fn(d->arg);
        free(d);
    }
}

static void on_timer(uv_timer_t *t);

/* Runs Sofia until it has nothing ready, then re-arms the timer for its next deadline. */
static void step(sip_reactor_t *r)
{
    if (r->root == NULL || r->stepping)
        return;
    r->stepping = 1;
    cvx_loop_doing("sip: su_root_step");
    su_duration_t delay = su_root_step(r->root, 0);
    /* Zero means more queued work: a few immediate rounds, then the clamp. */
    for (int i = 0; delay == 0 && i < 4; i++)
        delay = su_root_step(r->root, 0);
    cvx_loop_doing(NULL);
    r->stepping = 0;
    run_deferred(r);
    if (r->closing)
        return;
    if (delay < 0 || delay == SU_WAIT_FOREVER) {
        uv_timer_stop(&r->timer);
        return;
    }
    uv_timer_start(&r->timer, on_timer, delay < 1 ? 1 : (uint64_t)delay, 0);
}

static void on_timer(uv_timer_t *t)
{
    step(t->data);
}

static void on_kick(uv_timer_t *t)
{
    step(t->data);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    step(p->data);
}

static void on_closed(uv_handle_t *h)
{
    sip_reactor_t *r = h->data;
    if (--r->open_handles == 0)
        free(r);
}

int sip_reactor_get(uv_loop_t *loop, sip_reactor_t **out, char *err, size_t errsize)
{
    if (the_reactor != NULL) {
        the_reactor->refs++;
        *out = the_reactor;
        return 0;
    }
    sip_reactor_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return CVX_ENOMEM;
    r->loop = loop;
    r->epfd = -1;
    r->deferred_tail = &r->deferred;
    if (su_init() != 0) {
        snprintf(err, errsize, "su_init() failed");
        free(r);
        return CVX_EIO;
    }
    static uint8_t before[512], after[512];
    if (list_epoll_fds(before, sizeof(before)) != 0) {
        snprintf(err, errsize, "cannot list /proc/self/fd: %s", strerror(errno));
        goto fail;
    }
    su_port_prefer(su_epoll_port_create, su_epoll_clone_start);
    r->root = su_root_create(NULL);
    if (r->root == NULL) {
        snprintf(err, errsize, "su_root_create() failed on the epoll port");
        goto fail;
    }
    su_root_threading(r->root, 0);
    list_epoll_fds(after, sizeof(after));
    int found = 0;
    for (size_t i = 0; i < sizeof(after) * 8; i++) {
        if ((after[i / 8] & (1u << (i % 8))) && !(before[i / 8] & (1u << (i % 8)))) {
            found++;
            r->epfd = (int)i;
        }
    }
    if (found != 1) {
        snprintf(err, errsize,
                 "cannot identify Sofia-SIP's epoll descriptor (%d new eventpoll descriptors)",
                 found);
        goto fail;
    }
    if (uv_poll_init(loop, &r->poll, r->epfd) != 0 || uv_timer_init(loop, &r->timer) != 0 ||
        uv_timer_init(loop, &r->kick) != 0) {
        snprintf(err, errsize, "cannot watch Sofia-SIP's epoll descriptor");
        goto fail;
    }
    r->poll.data = r->timer.data = r->kick.data = r;
    r->open_handles = 3;
    uv_poll_start(&r->poll, UV_READABLE, on_poll);
    r->refs = 1;
    the_reactor = r;
    *out = r;
    return 0;
fail:
    if (r->root != NULL)
        su_root_destroy(r->root);
    su_deinit();
    free(r);
    return CVX_EIO;
}

su_root_t *sip_reactor_root(sip_reactor_t *r)
{
    return r->root;
}

void sip_reactor_kick(sip_reactor_t *r)
{
    if (r != NULL && !r->closing && !uv_is_active((uv_handle_t *)&r->kick))
        uv_timer_start(&r->kick, on_kick, 0, 0);
}

void sip_reactor_defer(sip_reactor_t *r, void (*fn)(void *arg), void *arg)
{
    sip_deferred_t *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        cvx_error("sip: out of memory deferring work; running it now");
        fn(arg);
        return;
    }
    d->fn = fn;
    d->arg = arg;
    *r->deferred_tail = d;
    r->deferred_tail = &d->next;
    if (!r->stepping)
        sip_reactor_kick(r);
}

void sip_reactor_put(sip_reactor_t *r)
{
    if (r == NULL || --r->refs > 0)
        return;
    run_deferred(r);
    the_reactor = NULL;
    r->closing = 1;
    /* Stop watching the descriptor before Sofia closes it. */
    uv_close((uv_handle_t *)&r->poll, on_closed);
    uv_close((uv_handle_t *)&r->timer, on_closed);
    uv_close((uv_handle_t *)&r->kick, on_closed);
    su_root_destroy(r->root);
    r->root = NULL;
    su_deinit();
}
