/*
 * The audit log: one line for every command that changes something (and for every attempt
 * that was refused), with the time (UTC), who ran it, the command and the result.
 *
 * The file is opened at start (as root, before privileges are dropped) with O_APPEND and kept
 * open.  Lines are queued on the loop thread and written by libuv's thread pool, one write in
 * flight at a time so that they stay in order; the loop never waits for the disk.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "cvx/daemon.h"
#include "cvx/error.h"
#include "cvx/log.h"
#include "ctl.h"

typedef struct audit_line {
    struct audit_line *next;
    size_t len;
    char text[];
} audit_line_t;

static struct {
    int fd;
    char path[4096];
    uv_fs_t req;
    audit_line_t *head, *tail;
    audit_line_t *writing; /* the lines of the write in flight */
    char *wbuf;
    int closing;
    uint64_t failures;
} A = {.fd = -1};

int cvx__audit_open(const char *path)
{
    A.fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (A.fd < 0)
        return cvx_from_errno(errno);
    snprintf(A.path, sizeof(A.path), "%s", path);
    A.closing = 0;
    return 0;
}

static void close_fd(void)
{
    if (A.fd >= 0)
        close(A.fd);
    A.fd = -1;
}

static void write_next(void);

static void on_written(uv_fs_t *req)
{
    if (req->result < 0) {
        if (A.failures++ == 0)
            cvx_error("audit log %s: cannot write: %s", A.path, uv_strerror((int)req->result));
    }
    uv_fs_req_cleanup(req);
    free(A.wbuf);
    A.wbuf = NULL;
    while (A.writing != NULL) {
        audit_line_t *n = A.writing->next;
        free(A.writing);
        A.writing = n;
    }
    write_next();
}

/* Starts writing everything queued, unless a write is in flight. */
static void write_next(void)
{
    if (A.writing != NULL || A.wbuf != NULL)
        return;
    if (A.head == NULL) {
        if (A.closing)
            close_fd();
        return;
    }
    size_t total = 0;
    for (audit_line_t *l = A.head; l != NULL; l = l->next)
        total += l->len;
    A.wbuf = malloc(total);
    if (A.wbuf == NULL)
        return; /* retried with the next line */
    size_t off = 0;
    for (audit_line_t *l = A.head; l != NULL; l = l->next) {
        memcpy(A.wbuf + off, l->text, l->len);
        off += l->len;
    }
    A.writing = A.head;
    A.head = A.tail = NULL;
    uv_buf_t buf = uv_buf_init(A.wbuf, (unsigned)total);
    if (uv_fs_write(cvx_daemon_loop(), &A.req, A.fd, &buf, 1, -1, on_written) != 0) {
        A.req.result = UV_EIO;
        on_written(&A.req);
    }
}

/* Appends s to b with '"', '\' and control characters escaped. */
static size_t quoted(char *b, size_t size, const char *s)
{
    size_t o = 0;
    for (; *s && o + 5 < size; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            b[o++] = '\\';
            b[o++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            o += (size_t)snprintf(b + o, size - o, "\\x%02x", c);
        } else {
            b[o++] = (char)c;
        }
    }
    b[o] = '\0';
    return o;
}

void cvx__audit(const cvx__ctl_peer_t *peer, const char *line, const char *result)
{
    if (A.fd < 0)
        return;
    struct timespec ts;
    struct tm tm;
    char stamp[40], cmd[1100], res[1100];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp + n, sizeof(stamp) - n, ".%03ldZ", ts.tv_nsec / 1000000);
    quoted(cmd, sizeof(cmd), line ? line : "");
    quoted(res, sizeof(res), result);
    int len = snprintf(NULL, 0, "%s user=%s uid=%u pid=%d command=\"%s\" result=\"%s\"\n", stamp,
                       peer->user, (unsigned)peer->uid, (int)peer->pid, cmd, res);
    audit_line_t *l = malloc(sizeof(*l) + (size_t)len + 1);
    if (l == NULL)
        return;
    snprintf(l->text, (size_t)len + 1, "%s user=%s uid=%u pid=%d command=\"%s\" result=\"%s\"\n",
             stamp, peer->user, (unsigned)peer->uid, (int)peer->pid, cmd, res);
    l->len = (size_t)len;
    l->next = NULL;
    if (A.tail != NULL)
        A.tail->next = l;
    else
        A.head = l;
    A.tail = l;
    write_next();
}

void cvx__audit_close(void)
{
    A.closing = 1;
    write_next(); /* closes the file once the queue is written */
}
