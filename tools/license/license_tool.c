/*
 * callvox-license: the vendor's licence tool.
 *
 *   callvox-license keygen PREFIX              writes PREFIX.pub and PREFIX.secret (0600)
 *   callvox-license sign -k SECRET [-o OUT] FILE
 *                                              signs an unsigned licence (adds key_id and
 *                                              signature); writes OUT or stdout
 *   callvox-license verify [-p PUB] FILE       checks a licence (exit 0 valid, 1 not)
 *   callvox-license print [-p PUB] FILE        checks and prints its fields
 *   callvox-license hash SECRET                prints the key hash of a secret (a dongle's
 *                                              secret, a server's phone-home identity)
 *   callvox-license serve -k SECRET [-a ADDR] [-P PORT] LICENSE...
 *                                              runs the phone-home licence server
 *
 * Without -p, verify and print use the key built into this build (as callvoxd does).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "cvx/error.h"
#include "cvx/license.h"
#include "license_tool.h"

static int usage(void)
{
    fprintf(stderr, "usage: callvox-license keygen PREFIX\n"
                    "       callvox-license sign -k SECRET [-o OUT] FILE\n"
                    "       callvox-license verify [-p PUBLIC] FILE\n"
                    "       callvox-license print [-p PUBLIC] FILE\n"
                    "       callvox-license hash SECRET\n"
                    "       callvox-license serve -k SECRET [-a ADDRESS] [-P PORT] LICENSE...\n");
    return 2;
}

char *lt_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "callvox-license: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap + 1);
    if (buf != NULL)
        n = fread(buf, 1, cap, f);
    fclose(f);
    if (buf != NULL && n == cap) {
        fprintf(stderr, "callvox-license: %s: too large to be a licence\n", path);
        free(buf);
        return NULL;
    }
    if (buf != NULL) {
        buf[n] = '\0';
        *len = n;
    }
    return buf;
}

static int write_key(const char *path, const unsigned char *key, size_t n, int secret)
{
    char b64[sodium_base64_ENCODED_LEN(CVX_LICENSE_SK_BYTES, sodium_base64_VARIANT_ORIGINAL)];
    cvx_license_b64_encode(key, n, b64, sizeof(b64));
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, secret ? 0600 : 0644);
    if (fd < 0) {
        fprintf(stderr, "callvox-license: %s: %s\n", path, strerror(errno));
        return 1;
    }
    char text[256];
    int len = snprintf(text, sizeof(text), "# callvox licence %s key\n%s\n",
                       secret ? "SECRET signing" : "public", b64);
    int ok = write(fd, text, (size_t)len) == len;
    sodium_memzero(text, sizeof(text));
    sodium_memzero(b64, sizeof(b64));
    if (close(fd) != 0 || !ok) {
        fprintf(stderr, "callvox-license: %s: write failed\n", path);
        return 1;
    }
    return 0;
}

static int cmd_keygen(int argc, char **argv)
{
    if (argc != 1)
        return usage();
    unsigned char pk[CVX_LICENSE_PK_BYTES], sk[CVX_LICENSE_SK_BYTES];
    crypto_sign_keypair(pk, sk);
    char pub[4096], sec[4096];
    snprintf(pub, sizeof(pub), "%s.pub", argv[0]);
    snprintf(sec, sizeof(sec), "%s.secret", argv[0]);
    int rc = write_key(sec, sk, sizeof(sk), 1) || write_key(pub, pk, sizeof(pk), 0);
    sodium_memzero(sk, sizeof(sk));
    if (rc == 0) {
        char id[CVX_LICENSE_KEYID_HEX];
        cvx_license_key_id(pk, id);
        printf("key %s: public %s, secret %s\n", id, pub, sec);
    }
    return rc;
}

int lt_load_secret(const char *path, unsigned char sk[CVX_LICENSE_SK_BYTES])
{
    char err[512];
    if (cvx_license_read_key(path, sk, CVX_LICENSE_SK_BYTES, err, sizeof(err)) != 0) {
        fprintf(stderr, "callvox-license: %s\n", err);
        return -1;
    }
    return 0;
}

static int cmd_sign(int argc, char **argv)
{
    const char *keyfile = NULL, *out = NULL;
    int c;
    optind = 1;
    while ((c = getopt(argc, argv, "+k:o:")) != -1) {
        if (c == 'k')
            keyfile = optarg;
        else if (c == 'o')
            out = optarg;
        else
            return usage();
    }
    if (keyfile == NULL || optind != argc - 1)
        return usage();
    const char *in = argv[optind];
    unsigned char sk[CVX_LICENSE_SK_BYTES], pk[CVX_LICENSE_PK_BYTES];
    if (lt_load_secret(keyfile, sk) != 0)
        return 1;
    crypto_sign_ed25519_sk_to_pk(pk, sk);
    size_t len;
    char *text = lt_read_file(in, &len);
    if (text == NULL) {
        sodium_memzero(sk, sizeof(sk));
        return 1;
    }
    if (strstr(text, "signature") != NULL || strstr(text, "key_id") != NULL) {
        fprintf(stderr,
                "callvox-license: %s: already has a key_id or signature line; sign the "
                "unsigned text\n",
                in);
        free(text);
        sodium_memzero(sk, sizeof(sk));
        return 1;
    }
    char id[CVX_LICENSE_KEYID_HEX];
    cvx_license_key_id(pk, id);
    size_t cap = len + 256;
    char *doc = malloc(cap);
    int n = snprintf(doc, cap, "%s%skey_id = %s\n", text,
                     len > 0 && text[len - 1] != '\n' ? "\n" : "", id);
    unsigned char sig[CVX_LICENSE_SIG_BYTES];
    crypto_sign_detached(sig, NULL, (unsigned char *)doc, (size_t)n, sk);
    sodium_memzero(sk, sizeof(sk));
    char b64[sodium_base64_ENCODED_LEN(CVX_LICENSE_SIG_BYTES, sodium_base64_VARIANT_ORIGINAL)];
    cvx_license_b64_encode(sig, sizeof(sig), b64, sizeof(b64));
    n += snprintf(doc + n, cap - (size_t)n, "signature = %s\n", b64);
    free(text);

    /* Check what we made, as callvoxd will (the expiry is the buyer's concern here). */
    cvx_license_t lic;
    char err[320];
    if (cvx_license_parse(doc, (size_t)n, pk, 0, &lic, err, sizeof(err)) != 0) {
        fprintf(stderr, "callvox-license: %s: %s\n", in, err);
        free(doc);
        return 1;
    }
    FILE *f = out ? fopen(out, "w") : stdout;
    if (f == NULL) {
        fprintf(stderr, "callvox-license: %s: %s\n", out, strerror(errno));
        free(doc);
        return 1;
    }
    int ok = fwrite(doc, 1, (size_t)n, f) == (size_t)n;
    if (out != NULL)
        ok = fclose(f) == 0 && ok;
    free(doc);
    if (!ok) {
        fprintf(stderr, "callvox-license: write failed\n");
        return 1;
    }
    return 0;
}

static int cmd_check(int argc, char **argv, int print)
{
    const char *pubfile = NULL;
    int c;
    optind = 1;
    while ((c = getopt(argc, argv, "+p:")) != -1) {
        if (c == 'p')
            pubfile = optarg;
        else
            return usage();
    }
    if (optind != argc - 1)
        return usage();
    const char *path = argv[optind];
    unsigned char pk[CVX_LICENSE_PK_BYTES];
    char err[512];
    if (pubfile != NULL) {
        if (cvx_license_read_key(pubfile, pk, sizeof(pk), err, sizeof(err)) != 0) {
            fprintf(stderr, "callvox-license: %s\n", err);
            return 1;
        }
    } else {
        const unsigned char *b = cvx_license_builtin_key();
        if (b == NULL) {
            fprintf(stderr, "callvox-license: the built-in public key is malformed\n");
            return 1;
        }
        memcpy(pk, b, sizeof(pk));
    }
    size_t len;
    char *text = lt_read_file(path, &len);
    if (text == NULL)
        return 1;
    cvx_license_t l;
    int rc = cvx_license_parse(text, len, pk, (int64_t)time(NULL), &l, err, sizeof(err));
    free(text);
    if (rc != 0) {
        fprintf(stderr, "callvox-license: %s: %s\n", path, err);
        return 1;
    }
    if (!print) {
        printf("%s: valid licence %s for %s\n", path, l.serial, l.customer);
        return 0;
    }
    char feats[96];
    cvx_license_features_format(l.features, feats, sizeof(feats));
    printf("serial      %s\ncustomer    %s\nissued      %s\nexpires     %s\nports       %u\n"
           "mailboxes   %u\nfeatures    %s\nkey_id      %s\n",
           l.serial, l.customer, l.issued, l.expires[0] ? l.expires : "never", l.ports, l.mailboxes,
           feats, l.key_id);
    for (size_t i = 0; i < l.nhashes; i++)
        printf("key_hash    %s\n", l.hashes[i]);
    return 0;
}

static int cmd_hash(int argc, char **argv)
{
    if (argc != 1)
        return usage();
    char h[CVX_LICENSE_HASH_HEX];
    cvx_license_hash_secret(argv[0], strlen(argv[0]), h);
    printf("%s\n", h);
    return 0;
}

int main(int argc, char **argv)
{
    if (sodium_init() < 0) {
        fprintf(stderr, "callvox-license: libsodium cannot be initialised\n");
        return 1;
    }
    if (argc < 2)
        return usage();
    const char *cmd = argv[1];
    if (strcmp(cmd, "keygen") == 0)
        return cmd_keygen(argc - 2, argv + 2);
    if (strcmp(cmd, "sign") == 0)
        return cmd_sign(argc - 1, argv + 1);
    if (strcmp(cmd, "verify") == 0)
        return cmd_check(argc - 1, argv + 1, 0);
    if (strcmp(cmd, "print") == 0)
        return cmd_check(argc - 1, argv + 1, 1);
    if (strcmp(cmd, "hash") == 0)
        return cmd_hash(argc - 2, argv + 2);
    if (strcmp(cmd, "serve") == 0)
        return lt_serve(argc - 1, argv + 1);
    return usage();
}
