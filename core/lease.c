/*
 * The data directory's lease (cvx/lease.h).
 */
#include "cvx/lease.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "cvx/error.h"
#include "cvx/log.h"

#define LEASE_FILE "callvox.lease"

struct cvx_lease {
    char path[4096], tmp[4096];
    cvx_lease_info_t me;
    uint64_t timeout_ms;
    uv_loop_t *loop;
    uv_timer_t timer;
    uv_work_t work;
    int working, releasing, timer_open, lost_reported;
    /* set by the work on the thread pool, read in after_work */
    int w_lost, w_errno;
    cvx_lease_info_t w_holder;
    void (*lost)(void *arg, const char *why);
    void *arg;
};

static uint64_t utc_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int cvx_lease_read(const char *path, cvx_lease_info_t *info)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return errno == ENOENT ? CVX_ENOTFOUND : CVX_EIO;
    memset(info, 0, sizeof(*info));
    char line[512];
    unsigned seen = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        char *eq = strchr(line, '=');
        if (eq == NULL)
            continue;
        *eq = '\0';
        const char *k = line, *v = eq + 1;
        if (strcmp(k, "host") == 0 && strlen(v) < sizeof(info->host)) {
            strcpy(info->host, v);
            seen |= 1;
        } else if (strcmp(k, "pid") == 0) {
            info->pid = strtol(v, NULL, 10);
            seen |= 2;
        } else if (strcmp(k, "started") == 0) {
            info->started_ms = strtoull(v, NULL, 10);
        } else if (strcmp(k, "heartbeat") == 0) {
            info->heartbeat_ms = strtoull(v, NULL, 10);
            seen |= 4;
        } else if (strcmp(k, "token") == 0 && strlen(v) < sizeof(info->token)) {
            strcpy(info->token, v);
            seen |= 8;
        }
    }
    fclose(f);
    return seen == 15 ? 0 : CVX_EPARSE;
}

/* Writes the lease atomically: a temporary file, fsync, rename, fsync of the directory.
 * Returns 0 or an errno value. */
static int write_lease(const cvx_lease_t *l, const char *dir_path)
{
    int fd = open(l->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0)
        return errno;
    char buf[512];
    int n = snprintf(buf, sizeof(buf),
                     "# callvoxd's lease of this data directory (see README, Cold standby)\n"
                     "host=%s\npid=%ld\nstarted=%" PRIu64 "\nheartbeat=%" PRIu64 "\ntoken=%s\n",
                     l->me.host, l->me.pid, l->me.started_ms, l->me.heartbeat_ms, l->me.token);
    int e = 0;
    if (write(fd, buf, (size_t)n) != n || fsync(fd) != 0)
        e = errno ? errno : EIO;
    close(fd);
    if (e == 0 && rename(l->tmp, l->path) != 0)
        e = errno;
    if (e == 0 && dir_path != NULL) {
        int dfd = open(dir_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
    if (e != 0)
        unlink(l->tmp);
    return e;
}

/* A holder is live when its heartbeat is recent and, on this host, its process exists. */
static int holder_live(const cvx_lease_info_t *h, const char *myhost, uint64_t now,
                       uint64_t timeout_ms, const char **gone_why)
{
    if (strcmp(h->host, myhost) == 0) {
        if (h->pid > 0 && kill((pid_t)h->pid, 0) != 0 && errno == ESRCH) {
            *gone_why = "no longer running";
            return 0;
        }
        if (h->pid == (long)getpid()) {
            *gone_why = "this process";
            return 0;
        }
    }
    if (now > h->heartbeat_ms && now - h->heartbeat_ms >= timeout_ms) {
        *gone_why = "its heartbeat stopped";
        return 0;
    }
    return 1;
}

int cvx_lease_acquire(const char *dir, uint64_t timeout_ms, int force, cvx_lease_t **out, char *err,
                      size_t errlen)
{
    err[0] = '\0';
    cvx_lease_t *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return CVX_ENOMEM;
    if ((size_t)snprintf(l->path, sizeof(l->path), "%s/%s", dir, LEASE_FILE) >= sizeof(l->path) ||
        (size_t)snprintf(l->tmp, sizeof(l->tmp), "%s/.%s.tmp", dir, LEASE_FILE) >= sizeof(l->tmp)) {
        snprintf(err, errlen, "data directory path too long");
        free(l);
        return CVX_EINVAL;
    }
    l->timeout_ms = timeout_ms;
    if (gethostname(l->me.host, sizeof(l->me.host) - 1) != 0)
        strcpy(l->me.host, "localhost");
    l->me.pid = (long)getpid();
    l->me.started_ms = l->me.heartbeat_ms = utc_ms();
    unsigned char rnd[16];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        snprintf(err, errlen, "cannot draw a random lease token: %s", strerror(errno));
        free(l);
        return CVX_EIO;
    }
    for (size_t i = 0; i < sizeof(rnd); i++)
        sprintf(l->me.token + 2 * i, "%02x", rnd[i]);

    cvx_lease_info_t h;
    int rc = cvx_lease_read(l->path, &h);
    if (rc == CVX_EIO) {
        snprintf(err, errlen, "cannot read the lease %s: %s", l->path, strerror(errno));
        free(l);
        return CVX_EIO;
    }
    if (rc == 0) {
        const char *gone = NULL;
        uint64_t now = utc_ms();
        double age = now > h.heartbeat_ms ? (double)(now - h.heartbeat_ms) / 1000.0 : 0.0;
        if (holder_live(&h, l->me.host, now, timeout_ms, &gone)) {
            if (!force) {
                snprintf(err, errlen,
                         "data directory %s is leased by callvoxd on host %s (pid %ld), last "
                         "heartbeat %.1f s ago: it may still be running. If that host is down "
                         "and fenced, start with --force-takeover",
                         dir, h.host, h.pid, age);
                free(l);
                return CVX_EBUSY;
            }
            snprintf(err, errlen,
                     "--force-takeover: taking the lease of %s from callvoxd on host %s (pid "
                     "%ld), last heartbeat %.1f s ago",
                     dir, h.host, h.pid, age);
        } else if (strcmp(gone, "this process") != 0) {
            snprintf(err, errlen,
                     "taking over the lease of %s left by callvoxd on host %s (pid %ld): %s, "
                     "last heartbeat %.1f s ago",
                     dir, h.host, h.pid, gone, age);
        }
    } else if (rc == CVX_EPARSE) {
        snprintf(err, errlen, "the lease %s was unreadable; replacing it", l->path);
    }
    int e = write_lease(l, dir);
    if (e != 0) {
        snprintf(err, errlen, "cannot write the lease %s: %s", l->path, strerror(e));
        free(l);
        return CVX_EIO;
    }
    *out = l;
    return 0;
}

/* --- the heartbeat (thread pool) ---------------------------------------------------------- */

static void heartbeat_work(uv_work_t *w)
{
    cvx_lease_t *l = w->data;
    cvx_lease_info_t cur;
    int rc = cvx_lease_read(l->path, &cur);
    l->w_lost = 0;
    l->w_errno = 0;
    if (rc == 0 && strcmp(cur.token, l->me.token) != 0) {
        l->w_lost = 1;
        l->w_holder = cur;
        return;
    }
    l->me.heartbeat_ms = utc_ms();
    l->w_errno = write_lease(l, NULL);
}

static void unlink_if_ours(cvx_lease_t *l)
{
    cvx_lease_info_t cur;
    if (!l->lost_reported && cvx_lease_read(l->path, &cur) == 0 &&
        strcmp(cur.token, l->me.token) == 0)
        unlink(l->path);
}

static void free_if_done(cvx_lease_t *l)
{
    if (l->releasing && !l->working && !l->timer_open)
        free(l);
}

static void heartbeat_done(uv_work_t *w, int status)
{
    cvx_lease_t *l = w->data;
    l->working = 0;
    if (l->releasing) {
        unlink_if_ours(l); /* the heartbeat may have rewritten it after release */
        free_if_done(l);
        return;
    }
    if (status == 0 && l->w_lost && !l->lost_reported) {
        char why[4700];
        snprintf(why, sizeof(why),
                 "the lease of %s was taken over by callvoxd on host %s (pid %ld); this "
                 "process must not use the directory any more",
                 l->path, l->w_holder.host, l->w_holder.pid);
        l->lost_reported = 1;
        uv_timer_stop(&l->timer);
        if (l->lost != NULL)
            l->lost(l->arg, why);
    } else if (status == 0 && l->w_errno != 0) {
        cvx_warn("lease: cannot renew %s: %s", l->path, strerror(l->w_errno));
    }
}

static void on_tick(uv_timer_t *t)
{
    cvx_lease_t *l = t->data;
    if (l->working || l->lost_reported)
        return;
    l->work.data = l;
    if (uv_queue_work(l->loop, &l->work, heartbeat_work, heartbeat_done) == 0)
        l->working = 1;
}

int cvx_lease_start(cvx_lease_t *l, uv_loop_t *loop, void (*lost)(void *arg, const char *why),
                    void *arg)
{
    l->loop = loop;
    l->lost = lost;
    l->arg = arg;
    uint64_t every = l->timeout_ms / 3 > 0 ? l->timeout_ms / 3 : 1;
    uv_timer_init(loop, &l->timer);
    l->timer.data = l;
    l->timer_open = 1;
    int rc = uv_timer_start(&l->timer, on_tick, every, every);
    uv_unref((uv_handle_t *)&l->timer); /* the lease alone does not keep the daemon running */
    return rc == 0 ? 0 : CVX_EINVAL;
}

static void on_timer_closed(uv_handle_t *h)
{
    cvx_lease_t *l = h->data;
    l->timer_open = 0;
    free_if_done(l);
}

void cvx_lease_release(cvx_lease_t *l)
{
    if (l == NULL)
        return;
    if (!l->working)
        unlink_if_ours(l);
    l->releasing = 1;
    if (l->timer_open)
        uv_close((uv_handle_t *)&l->timer, on_timer_closed);
    else
        free_if_done(l);
}
