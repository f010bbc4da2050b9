/*
 * The daemon's licence: the [license] section, the boot check (roles system and all), the
 * proof of the key hash by a provider plugin, the limits other code asks about, and
 * "show license".
 *
 * Boot: the licence file is read and verified the first time anyone asks (the module loader
 * asks before loading a feature module, so that happens before modules load); a tampered,
 * foreign-key, malformed or expired file stops the daemon at start with one line saying
 * exactly why.  Without a file the daemon runs in demo mode.  With a file, the configured
 * provider proves one of its key hashes; until it has, and if it fails, no new message is
 * accepted (calls are still answered and never dropped), and the log and "show license" say
 * why.  The proof is needed at boot only: losing the dongle later changes nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cvx/cmd.h"
#include "cvx/daemon.h"
#include "cvx/error.h"
#include "cvx/license.h"
#include "cvx/log.h"
#include "license_impl.h"

#ifndef CVX_LICENSE_PUBKEY_B64
#error "CVX_LICENSE_PUBKEY_B64 must be defined by the build (CVX_LICENSE_PUBLIC_KEY)"
#endif

static const char *const provider_names[] = {"none", "usb", "home", NULL};

static const cvx_option_t license_options[] = {
    {"file", CVX_OPT_STRING, offsetof(cvx_license_conf_t, file), NULL, 0, 0, NULL, 0,
     "The signed licence file.  Without one callvox runs in demo mode (8 ports, 10 mailboxes)."},
    {"provider", CVX_OPT_ENUM, offsetof(cvx_license_conf_t, provider), "none", 0, 0, provider_names,
     0,
     "How this system server proves its key hash at boot: usb (a dongle, plugin license_usb) "
     "or home (the licence server, plugin license_home).  none only in demo mode."},
    {"grace", CVX_OPT_DURATION, offsetof(cvx_license_conf_t, grace_ms), "7d", 0,
     90LL * 86400 * 1000, NULL, 0,
     "Phone home: how long after the last successful check the system keeps accepting "
     "messages while the licence server cannot be reached."},
    {"usb_vendor", CVX_OPT_INT, offsetof(cvx_license_conf_t, usb_vendor), "4617", 0, 65535, NULL, 0,
     "USB vendor id of the dongle (decimal; 4617 is 0x1209)."},
    {"usb_product", CVX_OPT_INT, offsetof(cvx_license_conf_t, usb_product), "51136", 0, 65535, NULL,
     0, "USB product id of the dongle (decimal; 51136 is 0xc7c0)."},
    {"usb_timeout", CVX_OPT_DURATION, offsetof(cvx_license_conf_t, usb_timeout_ms), "2s", 100,
     60000, NULL, 0, "How long the dongle may take to answer its control transfer."},
    {"server_url", CVX_OPT_STRING, offsetof(cvx_license_conf_t, server_url), NULL, 0, 0, NULL, 0,
     "Phone home: the licence server, http://host:port or https://host:port."},
    {"server_id", CVX_OPT_STRING, offsetof(cvx_license_conf_t, server_id), NULL, 0, 0, NULL, 0,
     "Phone home: this server's identity secret; its hash must be a key_hash of the licence."},
    {"retry", CVX_OPT_DURATION, offsetof(cvx_license_conf_t, retry_ms), "1h", 1000, 86400LL * 1000,
     NULL, 0, "Phone home: time between checks with the licence server."},
    CVX_OPTIONS_END,
};

static const cvx_section_def_t license_section = {
    "license", 0, license_options, sizeof(cvx_license_conf_t),
    "The licence: signed feature file and how this server proves it may use it."};

typedef enum lic_state {
    LIC_UNCHECKED = 0,
    LIC_DEMO,
    LIC_PROVING,
    LIC_VALID,
    LIC_UNPROVEN,
    LIC_REFUSED,
} lic_state_t;

static const char *const state_names[] = {"not checked", "demo",       "proving",
                                          "valid",       "not proven", "refused"};

#define PROVIDERS_MAX 4

static struct {
    cvx_license_conf_t conf;
    lic_state_t state;
    int loaded;
    cvx_license_t lic;
    char why[640]; /* why messages are refused, or why the file was refused */
    char proven_hash[CVX_LICENSE_HASH_HEX];
    char proof_detail[512];
    const cvx_license_provider_t *providers[PROVIDERS_MAX];
    unsigned ncalls;
    uint64_t calls_admitted, calls_refused, peak_calls;
} L;

static unsigned char builtin_pk[CVX_LICENSE_PK_BYTES];
static int builtin_ok = -1;

const unsigned char *cvx_license_builtin_key(void)
{
    if (builtin_ok < 0)
        builtin_ok = cvx_license_b64_decode(CVX_LICENSE_PUBKEY_B64, builtin_pk,
                                            sizeof(builtin_pk)) == CVX_LICENSE_PK_BYTES;
    return builtin_ok ? builtin_pk : NULL;
}

int64_t cvx_license_now(void)
{
#ifdef CVX_LICENSE_TEST_HOOKS
    const char *t = getenv("CVX_LICENSE_TEST_NOW");
    if (t != NULL && *t != '\0')
        return strtoll(t, NULL, 10);
#endif
    return (int64_t)time(NULL);
}

const cvx_license_conf_t *cvx_license_conf(void)
{
    return &L.conf;
}

/* Reads a whole (small) file.  Start-up only: blocking file I/O. */
static char *read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot read it: %s", strerror(errno));
        return NULL;
    }
    size_t cap = 64 * 1024, n = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            snprintf(err, errlen, "cannot read it: %s", strerror(errno));
            free(buf);
            buf = NULL;
        } else if (r == 0) {
            break;
        } else if ((n += (size_t)r) == cap) {
            snprintf(err, errlen, "too large to be a licence (over %zu bytes)", cap - 1);
            free(buf);
            buf = NULL;
        }
    }
    close(fd);
    if (buf != NULL)
        *len = n;
    return buf;
}

/* Loads and verifies the licence file once.  Returns 0 (valid or demo) or CVX_E*. */
static int ensure_loaded(void)
{
    static int rc;
    if (L.loaded)
        return rc;
    L.loaded = 1;
    if (L.conf.file == NULL || L.conf.file[0] == '\0') {
        L.state = LIC_DEMO;
        return rc = 0;
    }
    char err[320];
    const unsigned char *pk = cvx_license_builtin_key();
    if (pk == NULL) {
        snprintf(err, sizeof(err), "the public key built into this callvoxd is malformed");
        rc = CVX_EINVAL;
    } else {
        size_t len = 0;
        char *text = read_file(L.conf.file, &len, err, sizeof(err));
        rc = text == NULL
                 ? CVX_EIO
                 : cvx_license_parse(text, len, pk, cvx_license_now(), &L.lic, err, sizeof(err));
        free(text);
    }
    if (rc != 0) {
        L.state = LIC_REFUSED;
        snprintf(L.why, sizeof(L.why), "licence file %s refused: %s", L.conf.file, err);
        cvx_error("%s", L.why);
    }
    return rc;
}

int cvx__license_denies_module(const char *name, char *reason, size_t size)
{
    static const struct {
        const char *module;
        unsigned feature;
    } gated[] = {{"attendant", CVX_LIC_ATTENDANT},
                 {"dahdi", CVX_LIC_DAHDI},
                 {"mgw", CVX_LIC_MGW},
                 {"fax", CVX_LIC_FAX},
                 {"web", CVX_LIC_WEB},
                 {"replication", CVX_LIC_HA}};
    for (size_t i = 0; i < sizeof(gated) / sizeof(gated[0]); i++) {
        if (strcmp(gated[i].module, name) != 0)
            continue;
        if (!(cvx_daemon_role() & CVX_ROLE_SYSTEM)) {
            /* Call servers learn the licence from their system server, after their modules
             * have loaded: until then a feature is allowed; afterwards the applications the
             * licence does not cover are not offered calls (cvx_app_route). */
            unsigned f;
            const char *serial = "";
            if (!cvx__license_grant_features(&f, &serial) || (f & gated[i].feature))
                return 0;
            snprintf(reason, size, "feature '%s' is not licensed (the system server's licence %s)",
                     cvx_license_feature_names[__builtin_ctz(gated[i].feature)], serial);
            return 1;
        }
        if (ensure_loaded() != 0) {
            snprintf(reason, size, "not loaded: the licence file was refused");
            return 1;
        }
        if (!cvx_license_has_feature(gated[i].feature)) {
            snprintf(reason, size, "not loaded: feature '%s' is not licensed (licence %s)",
                     cvx_license_feature_names[__builtin_ctz(gated[i].feature)], L.lic.serial);
            return 1;
        }
        return 0;
    }
    return 0;
}

const cvx_license_t *cvx_license_current(void)
{
    return L.loaded && L.state != LIC_DEMO && L.state != LIC_REFUSED ? &L.lic : NULL;
}

int cvx_license_demo(void)
{
    return L.state == LIC_DEMO;
}

int cvx_license_has_feature(unsigned feature)
{
    if (L.state == LIC_DEMO || !L.loaded)
        return 1; /* demo mode has every feature; role call: the system server decides */
    if (L.state == LIC_REFUSED)
        return 0;
    return (L.lic.features & feature) == feature;
}

/* Demo mode's ports.  Test builds may raise them with CVX_LICENSE_TEST_DEMO_PORTS, because
 * the test and benchmark harnesses run far more than 8 calls without a licence (ctest and
 * tools/bench set it; the test of the demo limit unsets it).  Release builds
 * (-DBUILD_TESTING=OFF) always allow CVX_LICENSE_DEMO_PORTS. */
uint32_t cvx__license_demo_ports(void)
{
#ifdef CVX_LICENSE_TEST_HOOKS
    const char *t = getenv("CVX_LICENSE_TEST_DEMO_PORTS");
    if (t != NULL && *t != '\0')
        return (uint32_t)strtoul(t, NULL, 10);
#endif
    return CVX_LICENSE_DEMO_PORTS;
}

uint32_t cvx__license_port_limit(void)
{
    return L.state == LIC_DEMO || !L.loaded ? cvx__license_demo_ports() : L.lic.ports;
}

uint32_t cvx_license_max_mailboxes(void)
{
    if (!L.loaded && (cvx_daemon_role() & CVX_ROLE_SYSTEM))
        ensure_loaded();
    return L.state == LIC_DEMO || !L.loaded ? CVX_LICENSE_DEMO_MAILBOXES : L.lic.mailboxes;
}

/* Ports are enforced with a licence in force and in demo mode (roles system and all); not
 * while the proof is still pending at boot.  Call servers learn the cluster's count from the
 * system server once the link carries it (see README, Licensing). */
int cvx__license_ports_enforced(void)
{
    return L.loaded && L.state != LIC_UNCHECKED && (cvx_daemon_role() & CVX_ROLE_SYSTEM);
}

unsigned cvx__license_features(void)
{
    return L.state == LIC_DEMO || !L.loaded ? CVX_LIC_ALL_FEATURES : L.lic.features;
}

const char *cvx__license_state_name(void)
{
    return state_names[L.state];
}

unsigned cvx__license_local_calls(void)
{
    return L.ncalls;
}

/* A call server admits within the ports its system server granted it; a system server (role
 * all, or role system for the call servers it serves) counts the call servers' calls too
 * (license_ports.c). */
int cvx_license_admit_call(void)
{
    int fits = cvx_daemon_role() == CVX_ROLE_CALL
                   ? cvx__license_grant_admits(L.ncalls)
                   : !cvx__license_ports_enforced() ||
                         L.ncalls + cvx__license_remote_calls() < cvx__license_port_limit();
    if (!fits) {
        L.calls_refused++;
        return CVX_ELIMIT;
    }
    L.ncalls++;
    L.calls_admitted++;
    if (L.ncalls > L.peak_calls)
        L.peak_calls = L.ncalls;
    cvx__license_calls_changed(L.ncalls);
    return 0;
}

void cvx_license_release_call(void)
{
    if (L.ncalls > 0)
        L.ncalls--;
    cvx__license_calls_changed(L.ncalls);
}

int cvx_license_accepting_messages(const char **why)
{
    if (cvx_daemon_role() == CVX_ROLE_CALL)
        return cvx__license_remote_accepting(why);
    int ok = L.state == LIC_DEMO || L.state == LIC_VALID || L.state == LIC_UNCHECKED;
    if (why != NULL)
        *why = ok ? NULL : L.why;
    return ok;
}

/* --- providers ------------------------------------------------------------------------- */

int cvx_license_provider_register(const cvx_license_provider_t *p)
{
    if (p == NULL || p->name == NULL || p->size < offsetof(cvx_license_provider_t, describe))
        return CVX_EINVAL;
    for (unsigned i = 0; i < PROVIDERS_MAX; i++)
        if (L.providers[i] != NULL && strcmp(L.providers[i]->name, p->name) == 0)
            return CVX_EEXIST;
    for (unsigned i = 0; i < PROVIDERS_MAX; i++)
        if (L.providers[i] == NULL) {
            L.providers[i] = p;
            return 0;
        }
    return CVX_ELIMIT;
}

void cvx_license_provider_unregister(const cvx_license_provider_t *p)
{
    for (unsigned i = 0; i < PROVIDERS_MAX; i++)
        if (L.providers[i] == p)
            L.providers[i] = NULL;
}

static const cvx_license_provider_t *find_provider(const char *name)
{
    for (unsigned i = 0; i < PROVIDERS_MAX; i++)
        if (L.providers[i] != NULL && strcmp(L.providers[i]->name, name) == 0)
            return L.providers[i];
    return NULL;
}

static void proof_apply(int status, const char *hash, const char *detail);

/* A provider's verdict; call servers hear of any change (license_ports.c). */
static void proof_done(int status, const char *hash, const char *detail)
{
    proof_apply(status, hash, detail);
    cvx__license_state_changed();
}

static void proof_apply(int status, const char *hash, const char *detail)
{
    const char *pname = provider_names[L.conf.provider];
    if (L.state != LIC_PROVING && L.state != LIC_VALID && L.state != LIC_UNPROVEN)
        return; /* a late answer after a stop */
    snprintf(L.proof_detail, sizeof(L.proof_detail), "%s", detail ? detail : "");
    lic_state_t was = L.state;
    char old_why[sizeof(L.why)];
    snprintf(old_why, sizeof(old_why), "%s", L.why);
    if (status == 0 && hash != NULL) {
        for (size_t i = 0; i < L.lic.nhashes; i++)
            if (strcmp(L.lic.hashes[i], hash) == 0) {
                L.state = LIC_VALID;
                if (was == LIC_VALID)
                    return;
                L.why[0] = '\0';
                snprintf(L.proven_hash, sizeof(L.proven_hash), "%s", hash);
                cvx_notice("licence %s for %s: key hash %.16s... proven by %s; %u ports, %u "
                           "mailboxes",
                           L.lic.serial, L.lic.customer, hash, pname, L.lic.ports, L.lic.mailboxes);
                return;
            }
        L.state = LIC_UNPROVEN;
        snprintf(L.why, sizeof(L.why),
                 "licence %s not proven: the %s key hash %.16s... is not one of the licence's "
                 "key hashes; new messages are refused",
                 L.lic.serial, pname, hash);
    } else {
        L.state = LIC_UNPROVEN;
        snprintf(L.why, sizeof(L.why), "licence %s not proven by %s: %s; new messages are refused",
                 L.lic.serial, pname, detail && *detail ? detail : cvx_strerror(status));
    }
    if (was != LIC_UNPROVEN || strcmp(old_why, L.why) != 0)
        cvx_error("%s", L.why);
}

/* --- boot --------------------------------------------------------------------------------- */

static int license_start(uv_loop_t *loop)
{
    (void)loop;
    cvx__license_ports_start();
    int rc = ensure_loaded();
    if (rc != 0) /* the line above says exactly why; the daemon adds the code */
        return rc == CVX_EIO || rc == CVX_ENOMEM ? rc : CVX_EPERM;
    if (L.state == LIC_DEMO) {
        cvx_notice("licence: no licence file ([license] file): demo mode, %u ports, %d mailboxes",
                   cvx__license_demo_ports(), CVX_LICENSE_DEMO_MAILBOXES);
        return 0;
    }
    char feats[96];
    cvx_license_features_format(L.lic.features, feats, sizeof(feats));
    cvx_info("licence %s for %s: %u ports, %u mailboxes, features %s, expires %s", L.lic.serial,
             L.lic.customer, L.lic.ports, L.lic.mailboxes, feats,
             L.lic.expires[0] ? L.lic.expires : "never");
    const char *pname = provider_names[L.conf.provider];
    if (L.conf.provider == 0) {
        L.state = LIC_REFUSED;
        snprintf(L.why, sizeof(L.why),
                 "licence %s needs a proof of its key hash, but [license] provider is none "
                 "(set usb or home)",
                 L.lic.serial);
        cvx_error("%s", L.why);
        return CVX_EINVAL;
    }
    const cvx_license_provider_t *p = find_provider(pname);
    if (p == NULL) {
        L.state = LIC_REFUSED;
        snprintf(L.why, sizeof(L.why),
                 "licence provider %s is not available: module license_%s is not loaded", pname,
                 pname);
        cvx_error("%s", L.why);
        return CVX_EINVAL;
    }
    L.state = LIC_PROVING;
    snprintf(L.why, sizeof(L.why), "waiting for the licence proof (provider %s)", pname);
    rc = p->prove(&L.lic, proof_done);
    if (rc != 0 && L.state == LIC_PROVING)
        proof_done(rc, NULL, cvx_strerror(rc));
    return 0;
}

static void license_stop(void)
{
    const cvx_license_provider_t *p = find_provider(provider_names[L.conf.provider]);
    if (p != NULL && p->size >= offsetof(cvx_license_provider_t, stop) + sizeof(p->stop) &&
        p->stop != NULL)
        p->stop();
    if (L.state == LIC_PROVING)
        L.state = LIC_UNCHECKED;
    cvx__license_ports_stop();
}

/* Call servers: the ports their system server grants, and its licence's state. */
static int license_call_start(uv_loop_t *loop)
{
    (void)loop;
    return cvx__license_ports_start();
}

static const cvx_daemon_hooks_t license_call_hooks = {
    "licence (call server)", CVX_ROLE_CALL, license_call_start, cvx__license_ports_stop, NULL};

/* --check-config: the file's signature, key and expiry (not the proof, which needs the
 * dongle or the licence server). */
static int license_check(void)
{
    if (ensure_loaded() != 0)
        return CVX_EINVAL; /* ensure_loaded logged why (to stderr: the log is not started) */
    if (L.state == LIC_DEMO)
        printf("callvoxd: licence: none, demo mode (%d ports, %d mailboxes)\n",
               CVX_LICENSE_DEMO_PORTS, CVX_LICENSE_DEMO_MAILBOXES);
    else
        printf("callvoxd: licence %s for %s: %u ports, %u mailboxes, expires %s; proof by %s at "
               "start\n",
               L.lic.serial, L.lic.customer, L.lic.ports, L.lic.mailboxes,
               L.lic.expires[0] ? L.lic.expires : "never", provider_names[L.conf.provider]);
    return 0;
}

static const cvx_daemon_hooks_t license_hooks = {"licence", CVX_ROLE_SYSTEM, license_start,
                                                 license_stop, NULL};

/* --- show license ---------------------------------------------------------------------- */

static void describe_line(void *arg, const char *key, const char *value)
{
    cvx_cmd_kv(arg, 20, key, value);
}

static int cmd_show_license(cvx_cmd_req_t *req)
{
    const char *why = NULL;
    int accepting = cvx_license_accepting_messages(&why);
    if (!(cvx_daemon_role() & CVX_ROLE_SYSTEM)) {
        cvx__license_ports_describe(req, L.ncalls, L.calls_refused, L.peak_calls);
        return 0;
    }
    cvx_cmd_kv(req, 20, "state", state_names[L.state]);
    if (L.state == LIC_DEMO) {
        cvx_cmd_kv(req, 20, "mode", "demo (no [license] file)");
    } else if (L.state != LIC_REFUSED) {
        char feats[96];
        cvx_license_features_format(L.lic.features, feats, sizeof(feats));
        cvx_cmd_kv(req, 20, "file", L.conf.file);
        cvx_cmd_kv(req, 20, "serial", L.lic.serial);
        cvx_cmd_kv(req, 20, "customer", L.lic.customer);
        cvx_cmd_kv(req, 20, "issued", L.lic.issued);
        cvx_cmd_kv(req, 20, "expires", L.lic.expires[0] ? L.lic.expires : "never");
        cvx_cmd_kv(req, 20, "features", feats);
        cvx_cmd_kv(req, 20, "provider", provider_names[L.conf.provider]);
        cvx_cmd_kv(req, 20, "proven_hash", L.proven_hash[0] ? L.proven_hash : "-");
        cvx_cmd_kv(req, 20, "proof", L.proof_detail[0] ? L.proof_detail : "-");
        const cvx_license_provider_t *p = find_provider(provider_names[L.conf.provider]);
        if (p != NULL && p->describe != NULL)
            p->describe(describe_line, req);
    }
    cvx_cmd_kv_uint(req, 20, "ports", cvx__license_port_limit());
    cvx_cmd_printf(req, "%-20s %s\n", "ports_enforced",
                   cvx__license_ports_enforced() ? "yes" : "no");
    cvx_cmd_json_bool(req, "ports_enforced", cvx__license_ports_enforced());
    cvx_cmd_kv_uint(req, 20, "ports_in_use", L.ncalls + cvx__license_remote_calls());
    cvx_cmd_kv_uint(req, 20, "ports_on_call_servers", cvx__license_remote_calls());
    cvx_cmd_kv_uint(req, 20, "ports_peak", L.peak_calls);
    cvx_cmd_kv_uint(req, 20, "calls_refused", L.calls_refused);
    cvx_cmd_kv_uint(req, 20, "mailboxes", cvx_license_max_mailboxes());
    cvx_cmd_kv(req, 20, "messages", accepting ? "accepted" : "refused");
    if (!accepting)
        cvx_cmd_kv(req, 20, "why", why);
    return 0;
}

static const cvx_cmd_t license_cmds[] = {
    {"show license",
     {{0}},
     CVX_CMD_READONLY,
     "Show the licence, its proof and its limits",
     "Prints the licence state (demo, proving, valid, not proven), its serial, customer, dates, "
     "features and key hash proof, the licensed ports with those in use and the calls refused "
     "for lack of ports, the licensed mailboxes, and whether new messages are accepted, with "
     "the reason when they are not.",
     cmd_show_license,
     NULL},
    CVX_CMDS_END,
};

int cvx_license_register(void)
{
    int rc = cvx_daemon_add_section(&license_section, &L.conf);
    if (rc == 0)
        rc = cvx_daemon_add_hooks(&license_hooks);
    if (rc == 0)
        rc = cvx_daemon_add_hooks(&license_call_hooks);
    if (rc == 0)
        rc = cvx_daemon_add_check(CVX_ROLE_SYSTEM, license_check);
    if (rc == 0)
        rc = cvx_cmd_register(license_cmds);
    return rc;
}
