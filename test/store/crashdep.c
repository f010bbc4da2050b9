/*
 * crashdep: the store's crash test program.
 *
 *   crashdep deposit DIR ROUND CLIENTS [MAP_MB]
 *       Opens the store in DIR (with a map of MAP_MB, which then grows: default 1024) and deposits
 * from CLIENTS concurrent "callers" as fast as it can, forever; prints "ACK <id> <bytes>" (flushed)
 * for each deposit once its commit is reported durable.  Every seventh deposit of a client
 * re-commits its previous id, which must come back as a duplicate ("DUP <id>").  The test kills it
 * with SIGKILL. crashdep verify DIR ACKFILE... Checks that every acknowledged id is stored with
 * exactly the audio that was sent, that committing acknowledged ids again stores nothing, and that
 * the store verifies (reference counts, hashes, no orphaned chunks).  Prints "OK ..." and exits 0,
 * or prints each problem and exits 1.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cvx/error.h"
#include "storetest.h"

#define CHUNK     1600
#define MAXLEN    (5 * CHUNK)
#define MAILBOXES 4

static st_env_t E;
static int round_no;

typedef struct client {
    int no;
    unsigned n;
    char id[CVX_STORE_ID_MAX];
    char prev[CVX_STORE_ID_MAX];
    size_t len;
    int redo;
} client_t;

static size_t len_for(unsigned n)
{
    return (size_t)(1 + n % 5) * CHUNK - (n % 3) * 100;
}

static void next_deposit(client_t *c);

static void on_commit(void *arg, int status, const cvx_deposit_result_t *r)
{
    client_t *c = arg;
    if (status != 0) {
        fprintf(stderr, "crashdep: commit of %s failed: %s\n", c->id, cvx_strerror(status));
        exit(3);
    }
    if (c->redo) {
        if (!r->duplicate) {
            printf("NOTDUP %s\n", c->id);
            fflush(stdout);
            exit(4);
        }
        printf("DUP %s\n", c->id);
    } else {
        printf("ACK %s %zu\n", c->id, c->len);
        snprintf(c->prev, sizeof(c->prev), "%s", c->id);
    }
    fflush(stdout);
    next_deposit(c);
}

static void next_deposit(client_t *c)
{
    static uint8_t audio[MAXLEN];
    c->n++;
    c->redo = c->n % 7 == 0 && c->prev[0] != '\0';
    unsigned n = c->n;
    if (c->redo) {
        snprintf(c->id, sizeof(c->id), "%s", c->prev);
        unsigned pn;
        sscanf(strrchr(c->prev, '-') + 1, "%u", &pn);
        n = pn;
    } else {
        snprintf(c->id, sizeof(c->id), "r%d-c%d-%u", round_no, c->no, c->n);
    }
    c->len = len_for(n);
    st_audio_for(c->id, audio, c->len);
    cvx_message_t m = {0};
    snprintf(m.id, sizeof(m.id), "%s", c->id);
    snprintf(m.mailbox, sizeof(m.mailbox), "%d", 100 + c->no % MAILBOXES);
    m.codec = CVX_CODEC_ULAW;
    m.rate = 8000;
    cvx_store_stream_t *s;
    if (cvx_store_deposit_open(E.st, &m, &s) != 0)
        exit(5);
    for (size_t off = 0; off < c->len; off += CHUNK) {
        size_t k = c->len - off < CHUNK ? c->len - off : CHUNK;
        if (cvx_store_stream_append(s, audio + off, k) != 0)
            exit(6);
    }
    if (cvx_store_stream_commit(s, (uint32_t)(c->len / 8), on_commit, c) != 0)
        exit(7);
}

static int open_store(const char *dir, unsigned map_mb)
{
    memset(&E, 0, sizeof(E));
    uv_loop_init(&E.loop);
    cvx_store_conf_defaults(&E.conf);
    E.conf.path = dir;
    if (map_mb > 0)
        E.conf.map_size = (uint64_t)map_mb << 20;
    int rc = st_open(&E);
    if (rc != 0)
        fprintf(stderr, "crashdep: %s\n", E.err);
    return rc;
}

static int deposit(const char *dir, int clients, unsigned map_mb)
{
    alarm(300); /* a safety net should the test that kills us die first */
    if (open_store(dir, map_mb) != 0)
        return 2;
    for (int i = 0; i < MAILBOXES; i++) {
        char num[16];
        snprintf(num, sizeof(num), "%d", 100 + i);
        int rc = st_put(&E, num, "Crash", "Test", CVX_PUT_CREATE);
        if (rc != 0 && rc != CVX_EEXIST)
            return 2;
    }
    printf("READY\n");
    fflush(stdout);
    client_t *c = calloc((size_t)clients, sizeof(*c));
    for (int i = 0; i < clients; i++) {
        c[i].no = i;
        next_deposit(&c[i]);
    }
    uv_run(&E.loop, UV_RUN_DEFAULT);
    return 0;
}

static int verify(const char *dir, int nfiles, char **files)
{
    if (open_store(dir, 0) != 0)
        return 2;
    int bad = 0;
    unsigned acked = 0;
    static uint8_t want[MAXLEN], got[MAXLEN];
    char redo[5][CVX_STORE_ID_MAX];
    int nredo = 0;
    for (int f = 0; f < nfiles; f++) {
        FILE *in = fopen(files[f], "r");
        if (in == NULL) {
            perror(files[f]);
            return 2;
        }
        char line[256];
        while (fgets(line, sizeof(line), in) != NULL) {
            char id[CVX_STORE_ID_MAX];
            size_t len;
            if (strchr(line, '\n') == NULL || sscanf(line, "ACK %64s %zu", id, &len) != 2)
                continue;
            acked++;
            size_t n = 0;
            int rc = st_play_msg(&E, id, got, sizeof(got), &n);
            if (rc != 0) {
                printf("MISSING %s: %s\n", id, cvx_strerror(rc));
                bad++;
                continue;
            }
            st_audio_for(id, want, len);
            if (n != len || memcmp(got, want, len) != 0) {
                printf("CORRUPT %s: %zu bytes, %zu expected\n", id, n, len);
                bad++;
            }
            if (nredo < 5)
                snprintf(redo[nredo++], sizeof(redo[0]), "%s", id);
        }
        fclose(in);
    }
    cvx_store_stats_t before, after;
    st_stats(&E, &before);
    /* Committing acknowledged ids again (a recorder retrying) stores nothing. */
    for (int i = 0; i < nredo; i++) {
        cvx_message_t m;
        if (st_msg(&E, redo[i], &m) != 0)
            continue;
        cvx_deposit_result_t r;
        size_t len = m.bytes;
        st_audio_for(redo[i], want, len);
        int rc = st_deposit(&E, redo[i], m.mailbox, want, len, CHUNK, &r);
        if (rc != 0 || !r.duplicate) {
            printf("REDO %s: %s, duplicate %d\n", redo[i], cvx_strerror(rc), r.duplicate);
            bad++;
        }
    }
    st_stats(&E, &after);
    if (after.messages != before.messages || after.blobs != before.blobs) {
        printf("REDO changed the store: %llu -> %llu messages\n",
               (unsigned long long)before.messages, (unsigned long long)after.messages);
        bad++;
    }
    /* Every stored message is listed once in its mailbox. */
    size_t listed = 0;
    for (int i = 0; i < MAILBOXES; i++) {
        char num[16];
        size_t n = 0;
        snprintf(num, sizeof(num), "%d", 100 + i);
        if (st_list(&E, num, CVX_FOLDER_ANY, NULL, 0, &n) == 0)
            listed += n;
    }
    if (listed != after.messages) {
        printf("LISTED %zu messages, the store holds %llu\n", listed,
               (unsigned long long)after.messages);
        bad++;
    }
    int problems = st_verify(&E);
    if (problems != 0) {
        printf("VERIFY %d problem%s\n", problems, problems == 1 ? "" : "s");
        bad++;
    }
    st_close(&E);
    uv_loop_close(&E.loop);
    if (bad)
        return 1;
    printf("OK acknowledged %u, stored %llu, open recordings %llu\n", acked,
           (unsigned long long)after.messages, (unsigned long long)after.open_streams);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if ((argc == 5 || argc == 6) && strcmp(argv[1], "deposit") == 0) {
        round_no = atoi(argv[3]);
        return deposit(argv[2], atoi(argv[4]), argc == 6 ? (unsigned)atoi(argv[5]) : 0);
    }
    if (argc >= 4 && strcmp(argv[1], "verify") == 0)
        return verify(argv[2], argc - 3, argv + 3);
    fprintf(
        stderr,
        "usage: crashdep deposit DIR ROUND CLIENTS [MAP_MB] | crashdep verify DIR ACKFILE...\n");
    return 2;
}
