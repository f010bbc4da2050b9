/*
 * The licence file format: parsing, signature check, key files.  No daemon state here: the
 * vendor tool (tools/license) uses the same code as callvoxd.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "cvx/error.h"
#include "cvx/license.h"

const char *const cvx_license_feature_names[] = {"attendant", "ha",  "dahdi", "mgw",
                                                 "fax",       "web", NULL};

unsigned cvx_license_feature_bit(const char *name)
{
    for (unsigned i = 0; cvx_license_feature_names[i] != NULL; i++)
        if (strcmp(cvx_license_feature_names[i], name) == 0)
            return 1u << i;
    return 0;
}

void cvx_license_features_format(unsigned features, char *buf, size_t size)
{
    size_t n = 0;
    buf[0] = '\0';
    for (unsigned i = 0; cvx_license_feature_names[i] != NULL; i++)
        if (features & (1u << i)) {
            int w =
                snprintf(buf + n, size - n, "%s%s", n ? ", " : "", cvx_license_feature_names[i]);
            if (w < 0 || (size_t)w >= size - n)
                return;
            n += (size_t)w;
        }
    if (n == 0)
        snprintf(buf, size, "none");
}

static void hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

void cvx_license_key_id(const unsigned char pk[CVX_LICENSE_PK_BYTES],
                        char out[CVX_LICENSE_KEYID_HEX])
{
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, pk, CVX_LICENSE_PK_BYTES);
    hex(h, 8, out);
}

void cvx_license_hash_secret(const void *secret, size_t len, char out[CVX_LICENSE_HASH_HEX])
{
    static const char tag[] = "callvox-key-hash";
    crypto_hash_sha256_state st;
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, (const unsigned char *)tag, sizeof(tag)); /* with its NUL */
    crypto_hash_sha256_update(&st, secret, len);
    crypto_hash_sha256_final(&st, h);
    hex(h, sizeof(h), out);
}

int cvx_license_b64_decode(const char *in, unsigned char *out, size_t outmax)
{
    size_t n = 0;
    if (sodium_init() < 0)
        return -1;
    if (sodium_base642bin(out, outmax, in, strlen(in), NULL, &n, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0)
        return -1;
    return (int)n;
}

void cvx_license_b64_encode(const unsigned char *in, size_t len, char *out, size_t outmax)
{
    if (outmax < sodium_base64_ENCODED_LEN(len, sodium_base64_VARIANT_ORIGINAL)) {
        out[0] = '\0';
        return;
    }
    sodium_bin2base64(out, outmax, in, len, sodium_base64_VARIANT_ORIGINAL);
}

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

int cvx_license_read_key(const char *path, unsigned char *key, size_t n, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        seterr(err, errlen, "cannot read key file %s: %s", path, strerror(errno));
        return cvx_from_errno(errno);
    }
    char line[512];
    int rc = CVX_EPARSE;
    seterr(err, errlen, "key file %s holds no key", path);
    while (fgets(line, sizeof(line), f) != NULL) {
        char *s = trim(line);
        s[strcspn(s, "\n")] = '\0';
        if (*s == '\0' || *s == '#')
            continue;
        unsigned char buf[128];
        int got = cvx_license_b64_decode(s, buf, sizeof(buf));
        if (got != (int)n) {
            seterr(err, errlen, "key file %s: not a %s key (expected %zu bytes of base64)", path,
                   n == CVX_LICENSE_PK_BYTES ? "public" : "secret", n);
            rc = CVX_EPARSE;
        } else {
            memcpy(key, buf, n);
            rc = 0;
        }
        sodium_memzero(buf, sizeof(buf));
        break;
    }
    sodium_memzero(line, sizeof(line));
    fclose(f);
    return rc;
}

/* "YYYY-MM-DD" to the UTC second at which that day starts; -1 when malformed. */
static int64_t parse_date(const char *s)
{
    int y, m, d;
    char extra;
    if (strlen(s) != 10 || sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d, &extra) != 3 || y < 2000 ||
        m < 1 || m > 12 || d < 1 || d > 31)
        return -1;
    struct tm tm = {.tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = d};
    time_t t = timegm(&tm);
    if (tm.tm_mday != d) /* 2026-02-30 */
        return -1;
    return (int64_t)t;
}

static int parse_uint(const char *s, uint32_t *out)
{
    char *end;
    if (!isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0' || errno != 0 || v > 1000000)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

static int is_hex(const char *s, size_t n)
{
    if (strlen(s) != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
            return 0;
    return 1;
}

static int parse_features(char *v, unsigned *out)
{
    *out = 0;
    if (strcmp(v, "none") == 0)
        return 0;
    for (char *save = NULL, *w = strtok_r(v, ", \t", &save); w != NULL;
         w = strtok_r(NULL, ", \t", &save)) {
        unsigned b = cvx_license_feature_bit(w);
        if (b == 0)
            return -1;
        *out |= b;
    }
    return 0;
}

enum {
    F_FORMAT = 1,
    F_SERIAL = 2,
    F_CUSTOMER = 4,
    F_ISSUED = 8,
    F_EXPIRES = 16,
    F_PORTS = 32,
    F_MAILBOXES = 64,
    F_FEATURES = 128,
    F_KEYID = 256,
    F_ALL = 511
};

/* One "key = value" line of the signed part. */
static int parse_field(cvx_license_t *l, unsigned *seen, int lineno, char *key, char *v, char *err,
                       size_t errlen)
{
    unsigned f = 0;
    if (strcmp(key, "format") == 0) {
        f = F_FORMAT;
        if (strcmp(v, "1") != 0) {
            seterr(err, errlen, "line %d: format %s is not supported (this callvoxd reads 1)",
                   lineno, v);
            return CVX_EPARSE;
        }
    } else if (strcmp(key, "serial") == 0 || strcmp(key, "customer") == 0) {
        int serial = key[0] == 's';
        f = serial ? F_SERIAL : F_CUSTOMER;
        size_t max = serial ? sizeof(l->serial) : sizeof(l->customer);
        if (*v == '\0' || strlen(v) >= max) {
            seterr(err, errlen, "line %d: %s must have 1 to %zu characters", lineno, key, max - 1);
            return CVX_EPARSE;
        }
        snprintf(serial ? l->serial : l->customer, max, "%s", v);
    } else if (strcmp(key, "issued") == 0 || strcmp(key, "expires") == 0) {
        int issued = key[0] == 'i';
        f = issued ? F_ISSUED : F_EXPIRES;
        if (!issued && strcmp(v, "never") == 0) {
            l->expires[0] = '\0';
            l->expires_s = 0;
        } else {
            int64_t t = parse_date(v);
            if (t < 0) {
                seterr(err, errlen, "line %d: %s '%s' is not a date (YYYY-MM-DD%s)", lineno, key, v,
                       issued ? "" : " or never");
                return CVX_EPARSE;
            }
            snprintf(issued ? l->issued : l->expires, sizeof(l->issued), "%s", v);
            if (!issued)
                l->expires_s = t + 86400;
        }
    } else if (strcmp(key, "ports") == 0 || strcmp(key, "mailboxes") == 0) {
        int ports = key[0] == 'p';
        f = ports ? F_PORTS : F_MAILBOXES;
        if (parse_uint(v, ports ? &l->ports : &l->mailboxes) != 0) {
            seterr(err, errlen, "line %d: %s '%s' is not a number from 0 to 1000000", lineno, key,
                   v);
            return CVX_EPARSE;
        }
    } else if (strcmp(key, "features") == 0) {
        f = F_FEATURES;
        if (parse_features(v, &l->features) != 0) {
            seterr(err, errlen,
                   "line %d: features: unknown feature (expected none or a list of "
                   "attendant, ha, dahdi, mgw, fax, web)",
                   lineno);
            return CVX_EPARSE;
        }
    } else if (strcmp(key, "key_hash") == 0) {
        if (!is_hex(v, 64)) {
            seterr(err, errlen, "line %d: key_hash must be 64 lowercase hex digits", lineno);
            return CVX_EPARSE;
        }
        if (l->nhashes == CVX_LICENSE_HASHES_MAX) {
            seterr(err, errlen, "line %d: more than %d key_hash lines", lineno,
                   CVX_LICENSE_HASHES_MAX);
            return CVX_EPARSE;
        }
        snprintf(l->hashes[l->nhashes++], CVX_LICENSE_HASH_HEX, "%s", v);
        return 0;
    } else if (strcmp(key, "key_id") == 0) {
        f = F_KEYID;
        if (!is_hex(v, 16)) {
            seterr(err, errlen, "line %d: key_id must be 16 lowercase hex digits", lineno);
            return CVX_EPARSE;
        }
        snprintf(l->key_id, sizeof(l->key_id), "%s", v);
    } else {
        seterr(err, errlen, "line %d: unknown key '%s'", lineno, key);
        return CVX_EPARSE;
    }
    if (*seen & f) {
        seterr(err, errlen, "line %d: %s is given twice", lineno, key);
        return CVX_EPARSE;
    }
    *seen |= f;
    return 0;
}

static const char *missing_name(unsigned seen)
{
    static const char *const names[] = {"format", "serial",    "customer", "issued", "expires",
                                        "ports",  "mailboxes", "features", "key_id"};
    for (unsigned i = 0; i < 9; i++)
        if (!(seen & (1u << i)))
            return names[i];
    return "key_hash";
}

/* Splits the text into lines and parses the fields; sets *sig_at to the offset of the
 * signature line and sig to its value. */
static int parse_lines(const char *text, size_t len, cvx_license_t *l, size_t *sig_at, char *sig,
                       size_t sigsize, char *err, size_t errlen)
{
    unsigned seen = 0;
    int lineno = 0;
    size_t pos = 0;
    *sig_at = (size_t)-1;
    while (pos < len) {
        size_t start = pos;
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        pos = nl ? end + 1 : len;
        lineno++;
        char line[512];
        if (end - start >= sizeof(line)) {
            seterr(err, errlen, "line %d: too long", lineno);
            return CVX_EPARSE;
        }
        memcpy(line, text + start, end - start);
        line[end - start] = '\0';
        if (memchr(line, '\0', end - start) != NULL) {
            seterr(err, errlen, "line %d: contains a NUL byte", lineno);
            return CVX_EPARSE;
        }
        char *s = trim(line);
        if (*sig_at != (size_t)-1) {
            if (*s != '\0') {
                seterr(err, errlen, "line %d: text after the signature line", lineno);
                return CVX_EPARSE;
            }
            continue;
        }
        if (*s == '\0' || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (eq == NULL) {
            seterr(err, errlen, "line %d: expected key = value", lineno);
            return CVX_EPARSE;
        }
        *eq = '\0';
        char *key = trim(s), *v = trim(eq + 1);
        if (strcmp(key, "signature") == 0) {
            *sig_at = start;
            snprintf(sig, sigsize, "%s", v);
            continue;
        }
        int rc = parse_field(l, &seen, lineno, key, v, err, errlen);
        if (rc != 0)
            return rc;
    }
    if (*sig_at == (size_t)-1) {
        seterr(err, errlen, "no signature line: the file is not a signed licence");
        return CVX_EPARSE;
    }
    if ((seen & F_ALL) != F_ALL || l->nhashes == 0) {
        seterr(err, errlen, "%s is missing", missing_name(seen));
        return CVX_EPARSE;
    }
    return 0;
}

int cvx_license_parse(const char *text, size_t len, const unsigned char pk[CVX_LICENSE_PK_BYTES],
                      int64_t now_s, cvx_license_t *out, char *err, size_t errlen)
{
    cvx_license_t l;
    memset(&l, 0, sizeof(l));
    char sig64[256];
    size_t sig_at;
    if (sodium_init() < 0) {
        seterr(err, errlen, "libsodium cannot be initialised");
        return CVX_EIO;
    }
    int rc = parse_lines(text, len, &l, &sig_at, sig64, sizeof(sig64), err, errlen);
    if (rc != 0)
        return rc;
    char want[CVX_LICENSE_KEYID_HEX];
    cvx_license_key_id(pk, want);
    if (strcmp(want, l.key_id) != 0) {
        seterr(err, errlen,
               "signed with key %s, but this build accepts only licences signed with key %s",
               l.key_id, want);
        return CVX_EPERM;
    }
    unsigned char sig[CVX_LICENSE_SIG_BYTES + 8];
    if (cvx_license_b64_decode(sig64, sig, sizeof(sig)) != CVX_LICENSE_SIG_BYTES) {
        seterr(err, errlen, "the signature line does not hold a %d-byte base64 signature",
               CVX_LICENSE_SIG_BYTES);
        return CVX_EPARSE;
    }
    if (crypto_sign_verify_detached(sig, (const unsigned char *)text, sig_at, pk) != 0) {
        seterr(err, errlen,
               "the signature does not match the contents: the file was altered "
               "after it was signed");
        return CVX_ECORRUPT;
    }
    if (now_s != 0 && l.expires_s != 0 && now_s >= l.expires_s) {
        seterr(err, errlen, "licence %s for %s expired on %s", l.serial, l.customer, l.expires);
        return CVX_ERANGE;
    }
    *out = l;
    return 0;
}
