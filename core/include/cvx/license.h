/*
 * Licensing: the signed feature file, the proof of the key hash at boot, and the limits the
 * rest of the system asks about.
 *
 * A licence file is text: "key = value" lines, then one "signature = <base64>" line that must
 * be the last.  The signature is an Ed25519 detached signature (libsodium) over every byte of
 * the file before the signature line.  Fields (see README, "Licensing"):
 *
 *   format = 1                      required, first
 *   serial = L-2026-0001            required
 *   customer = ACME Corp            required
 *   issued = 2026-11-25             required, a UTC date
 *   expires = 2027-12-31 | never    required; valid to the end of that UTC day
 *   ports = 120                     required, concurrent calls for the whole cluster
 *   mailboxes = 500                 required
 *   features = attendant, fax       required; "none" or a list of attendant ha dahdi mgw fax web
 *   key_hash = <64 hex digits>      one per data server (at least one)
 *   key_id = <16 hex digits>        the signing key's id (first 8 bytes of SHA-256 of it)
 *   signature = <base64>
 *
 * The key that verifies licences is built into callvoxd (CMake cache variable
 * CVX_LICENSE_PUBLIC_KEY, a public key file); the tree's default is the development key whose
 * secret half is test/license/dev-key.secret.
 *
 * Thread: the parsing functions may be called from any thread; everything else belongs to the
 * loop thread.
 */
#ifndef CVX_LICENSE_H
#define CVX_LICENSE_H

#include <stddef.h>
#include <stdint.h>

#define CVX_LICENSE_PK_BYTES   32
#define CVX_LICENSE_SK_BYTES   64
#define CVX_LICENSE_SIG_BYTES  64
#define CVX_LICENSE_HASHES_MAX 8
#define CVX_LICENSE_HASH_HEX   65 /* 64 hex digits and NUL */
#define CVX_LICENSE_KEYID_HEX  17 /* 16 hex digits and NUL */

/* Demo mode: what callvox may do without any licence file. */
#define CVX_LICENSE_DEMO_PORTS     8
#define CVX_LICENSE_DEMO_MAILBOXES 10

enum {
    CVX_LIC_ATTENDANT = 1 << 0,
    CVX_LIC_HA = 1 << 1,
    CVX_LIC_DAHDI = 1 << 2,
    CVX_LIC_MGW = 1 << 3,
    CVX_LIC_FAX = 1 << 4,
    CVX_LIC_WEB = 1 << 5,
    CVX_LIC_ALL_FEATURES = (1 << 6) - 1,
};

typedef struct cvx_license {
    char serial[64];
    char customer[128];
    char issued[11];   /* YYYY-MM-DD */
    char expires[11];  /* YYYY-MM-DD, or "" for never */
    int64_t expires_s; /* first second (UTC) at which it is no longer valid; 0: never */
    uint32_t ports;
    uint32_t mailboxes;
    unsigned features; /* CVX_LIC_* */
    size_t nhashes;
    char hashes[CVX_LICENSE_HASHES_MAX][CVX_LICENSE_HASH_HEX];
    char key_id[CVX_LICENSE_KEYID_HEX];
} cvx_license_t;

/* --- the file format (license_file.c; any thread, no I/O) ------------------------------- */

/* Feature names in bit order; cvx_license_feature_bit("fax") is CVX_LIC_FAX, or 0. */
extern const char *const cvx_license_feature_names[];
unsigned cvx_license_feature_bit(const char *name);
/* Writes the features as "attendant, fax" ("none" when there are none). */
void cvx_license_features_format(unsigned features, char *buf, size_t size);

/* The id of a public key: 16 lowercase hex digits. */
void cvx_license_key_id(const unsigned char pk[CVX_LICENSE_PK_BYTES],
                        char out[CVX_LICENSE_KEYID_HEX]);

/* The key hash of a secret (a dongle's serial or secret, a server's identity): 64 lowercase
 * hex digits of SHA-256("callvox-key-hash\0" || secret). */
void cvx_license_hash_secret(const void *secret, size_t len, char out[CVX_LICENSE_HASH_HEX]);

/*
 * Reads and checks a licence text: the signature line, the signing key's id (against pk's),
 * the signature, then every field.  now_s is the current UTC time in seconds (expiry is
 * checked against it; pass 0 to skip the expiry check).  On failure err holds one line saying
 * exactly what is wrong (without the file name) and the return value is:
 *   CVX_EPARSE    malformed (line N: ...), or no signature line;
 *   CVX_EPERM     signed with another key than pk;
 *   CVX_ECORRUPT  the signature does not match the contents (altered after signing);
 *   CVX_ERANGE    expired.
 */
int cvx_license_parse(const char *text, size_t len, const unsigned char pk[CVX_LICENSE_PK_BYTES],
                      int64_t now_s, cvx_license_t *out, char *err, size_t errlen);

/* Base64 (standard alphabet, padded) helpers over libsodium.  decode returns the number of
 * bytes written or -1. */
int cvx_license_b64_decode(const char *in, unsigned char *out, size_t outmax);
void cvx_license_b64_encode(const unsigned char *in, size_t len, char *out, size_t outmax);

/* Reads a key file ("#" comments, one line of base64) into key (exactly n bytes).  Blocking
 * file I/O: start-up and tools only.  Returns 0 or CVX_E*; err explains. */
int cvx_license_read_key(const char *path, unsigned char *key, size_t n, char *err, size_t errlen);

/* --- the daemon's licence (license.c; loop thread) -------------------------------------- */

/* The public key this callvoxd was built with. */
const unsigned char *cvx_license_builtin_key(void);

/* Registers the [license] section, the boot check (roles system and all) and "show license";
 * callvoxd's main calls it. */
int cvx_license_register(void);

/* The licence in force: NULL before the boot check and in demo mode. */
const cvx_license_t *cvx_license_current(void);
/* 1 in demo mode (no licence file configured). */
int cvx_license_demo(void);

/* Current UTC time in seconds; test builds honour CVX_LICENSE_TEST_NOW (seconds). */
int64_t cvx_license_now(void);

/*
 * Ports: a driver asks before it takes a new call and tells when the call is gone.  Returns 0
 * (admitted: call cvx_license_release_call() once, when the call ends) or CVX_ELIMIT (every
 * licensed port is in use: refuse the call with a busy signal or SIP 503 + Retry-After).
 */
int cvx_license_admit_call(void);
void cvx_license_release_call(void);
/* Suggested Retry-After for calls refused for lack of ports, in seconds. */
#define CVX_LICENSE_RETRY_AFTER_S   30
#define CVX_LICENSE_RETRY_AFTER_STR "30"

/* Mailboxes: the licensed number (the store refuses to create more). */
uint32_t cvx_license_max_mailboxes(void);

/* 1 when the licence (or demo mode) covers feature (CVX_LIC_*). */
int cvx_license_has_feature(unsigned feature);

/* 1 while new messages may be accepted; 0 when the proof failed at boot or the phone-home
 * grace period ran out (why says why, may be NULL).  Calls in progress are never dropped. */
int cvx_license_accepting_messages(const char **why);

/* --- proof providers (plugins) --------------------------------------------------------- */

/* The result of a proof: status 0 and the key hash proven, or an error and detail (one line,
 * as the log and "show license" give it).  A provider that keeps checking after boot (phone
 * home, with its grace period) calls it again whenever its verdict changes; each call sets
 * whether new messages are accepted. */
typedef void (*cvx_license_proof_cb)(int status, const char *hash, const char *detail);

typedef struct cvx_license_provider {
    size_t size;      /* sizeof(cvx_license_provider_t) as the plugin was built */
    const char *name; /* "usb", "home": the value of [license] provider */
    /* Starts proving; calls done exactly once, later or from inside (0) or returns an error
     * without calling it.  Loop thread; must not block. */
    int (*prove)(const cvx_license_t *lic, cvx_license_proof_cb done);
    /* Lines for "show license" (may be NULL): what the provider found. */
    void (*describe)(void (*line)(void *arg, const char *key, const char *value), void *arg);
    /* At shutdown, before the module is unloaded: close every handle (may be NULL). */
    void (*stop)(void);
} cvx_license_provider_t;

int cvx_license_provider_register(const cvx_license_provider_t *p);
void cvx_license_provider_unregister(const cvx_license_provider_t *p);

/* Options of [license], for the providers. */
typedef struct cvx_license_conf {
    char *file;
    int provider; /* index into "none", "usb", "home" */
    long long grace_ms;
    long long usb_vendor;
    long long usb_product;
    long long usb_timeout_ms;
    char *server_url;
    char *server_id; /* this server's identity for phone home (secret) */
    long long retry_ms;
} cvx_license_conf_t;
const cvx_license_conf_t *cvx_license_conf(void);

/* Called by the module loader: 1 (and a reason) when name is a feature module the licence
 * does not cover.  Loads the licence file on first use. */
int cvx__license_denies_module(const char *name, char *reason, size_t size);

#endif
