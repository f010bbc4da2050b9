/*
 * callvox-license serve: the phone-home licence server (libmicrohttpd, its own thread).
 *
 * Protocol (version 1), plain HTTP or behind a TLS proxy:
 *
 *   GET /v1/prove?serial=SERIAL&hash=KEYHASH&nonce=NONCE      (nonce: 32..64 hex digits)
 *
 * answers 200 with text/plain:
 *
 *   callvox-proof 1
 *   status = ok | denied
 *   serial = SERIAL
 *   hash = KEYHASH
 *   nonce = NONCE
 *   time = <UTC seconds>
 *   signature = <base64 Ed25519 signature of every byte before this line>
 *
 * "ok" when one of the served licences has that serial and lists that key hash.  The
 * signature is made with the vendor's secret key, so callvoxd checks it with its built-in
 * public key; the nonce ties the answer to one challenge.  Malformed requests get 400.
 */
#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sodium.h>

#include "license_tool.h"

#define SERVE_LICENSES_MAX 64

static unsigned char serve_sk[CVX_LICENSE_SK_BYTES];
static cvx_license_t serve_lic[SERVE_LICENSES_MAX];
static size_t serve_nlic;

static int valid_token(const char *s, size_t min, size_t max, int hex_only)
{
    size_t n = s ? strlen(s) : 0;
    if (n < min || n > max)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (hex_only ? !isxdigit(c) : !(isalnum(c) || c == '-' || c == '_' || c == '.'))
            return 0;
    }
    return 1;
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned code, const char *body)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", "text/plain");
    enum MHD_Result ret = MHD_queue_response(conn, code, r);
    MHD_destroy_response(r);
    return ret;
}

static int licensed(const char *serial, const char *hash)
{
    for (size_t i = 0; i < serve_nlic; i++) {
        if (strcmp(serve_lic[i].serial, serial) != 0)
            continue;
        for (size_t j = 0; j < serve_lic[i].nhashes; j++)
            if (strcmp(serve_lic[i].hashes[j], hash) == 0)
                return 1;
    }
    return 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)cls, (void)version, (void)upload_data, (void)upload_data_size, (void)con_cls;
    if (strcmp(method, "GET") != 0)
        return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET\n");
    if (strcmp(url, "/v1/prove") != 0)
        return reply(conn, MHD_HTTP_NOT_FOUND, "unknown path\n");
    const char *serial = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "serial");
    const char *hash = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "hash");
    const char *nonce = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "nonce");
    if (!valid_token(serial, 1, 63, 0) || !valid_token(hash, 64, 64, 1) ||
        !valid_token(nonce, 32, 64, 1))
        return reply(conn, MHD_HTTP_BAD_REQUEST, "expected serial, hash and nonce\n");
    int ok = licensed(serial, hash);
    char doc[1024];
    int n = snprintf(doc, sizeof(doc),
                     "callvox-proof 1\nstatus = %s\nserial = %s\nhash = %s\nnonce = %s\ntime = "
                     "%lld\n",
                     ok ? "ok" : "denied", serial, hash, nonce, (long long)time(NULL));
    unsigned char sig[CVX_LICENSE_SIG_BYTES];
    crypto_sign_detached(sig, NULL, (unsigned char *)doc, (size_t)n, serve_sk);
    char b64[sodium_base64_ENCODED_LEN(CVX_LICENSE_SIG_BYTES, sodium_base64_VARIANT_ORIGINAL)];
    cvx_license_b64_encode(sig, sizeof(sig), b64, sizeof(b64));
    snprintf(doc + n, sizeof(doc) - (size_t)n, "signature = %s\n", b64);
    printf("%s %s %s\n", ok ? "ok" : "denied", serial, hash);
    fflush(stdout);
    return reply(conn, MHD_HTTP_OK, doc);
}

static int load_licenses(char **paths, int n)
{
    unsigned char pk[CVX_LICENSE_PK_BYTES];
    crypto_sign_ed25519_sk_to_pk(pk, serve_sk);
    for (int i = 0; i < n; i++) {
        if (serve_nlic == SERVE_LICENSES_MAX) {
            fprintf(stderr, "callvox-license: more than %d licences\n", SERVE_LICENSES_MAX);
            return -1;
        }
        size_t len;
        char *text = lt_read_file(paths[i], &len);
        if (text == NULL)
            return -1;
        char err[320];
        int rc = cvx_license_parse(text, len, pk, 0, &serve_lic[serve_nlic], err, sizeof(err));
        free(text);
        if (rc != 0) {
            fprintf(stderr, "callvox-license: %s: %s\n", paths[i], err);
            return -1;
        }
        serve_nlic++;
    }
    return 0;
}

int lt_serve(int argc, char **argv)
{
    const char *keyfile = NULL, *addr = "127.0.0.1";
    long port = 0;
    int c;
    optind = 1;
    while ((c = getopt(argc, argv, "+k:a:P:")) != -1) {
        if (c == 'k')
            keyfile = optarg;
        else if (c == 'a')
            addr = optarg;
        else if (c == 'P')
            port = strtol(optarg, NULL, 10);
        else
            return 2;
    }
    if (keyfile == NULL || optind >= argc || port < 0 || port > 65535) {
        fprintf(stderr, "usage: callvox-license serve -k SECRET [-a ADDRESS] [-P PORT] "
                        "LICENSE...\n");
        return 2;
    }
    if (lt_load_secret(keyfile, serve_sk) != 0 || load_licenses(argv + optind, argc - optind))
        return 1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
        fprintf(stderr, "callvox-license: %s is not an IPv4 address\n", addr);
        return 2;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* before MHD's thread starts: it inherits it */
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, NULL,
        MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "callvox-license: cannot listen on %s:%ld\n", addr, port);
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf("callvox-license: serving %zu licence(s) on http://%s:%u\n", serve_nlic, addr,
           info ? info->port : (unsigned)port);
    fflush(stdout);
    int sig = 0;
    sigwait(&set, &sig);
    MHD_stop_daemon(d);
    sodium_memzero(serve_sk, sizeof(serve_sk));
    return 0;
}
