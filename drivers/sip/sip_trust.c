/*
 * Who may call: trusted addresses (ADDRESS or ADDRESS/PREFIX), digest authentication
 * (RFC 2617/3261, MD5, qop=auth) for the configured users, and number mapping rules.
 *
 * Nonces carry their creation time and a keyed MD5 over it (the key is random per instance),
 * so they need no table: a nonce is ours if its MAC matches and fresh for SIP_NONCE_LIFE
 * seconds; an older one of ours gets a new challenge with stale=true.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <sofia-sip/auth_digest.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/su_md5.h>

#include "sip_int.h"

#define SIP_NONCE_LIFE 300

int sip_net_parse(const char *text, sip_net_t *out)
{
    char buf[80];
    snprintf(buf, sizeof(buf), "%s", text);
    char *slash = strchr(buf, '/');
    long prefix = -1;
    if (slash != NULL) {
        char *end;
        *slash = '\0';
        prefix = strtol(slash + 1, &end, 10);
        if (slash[1] == '\0' || *end != '\0')
            return -1;
    }
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = AF_INET;
        if (prefix > 32)
            return -1;
        out->prefix = prefix < 0 ? 32 : (unsigned)prefix;
        return 0;
    }
    if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = AF_INET6;
        if (prefix > 128)
            return -1;
        out->prefix = prefix < 0 ? 128 : (unsigned)prefix;
        return 0;
    }
    return -1;
}

static int prefix_equal(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    unsigned bytes = bits / 8, rest = bits % 8;
    if (memcmp(a, b, bytes) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[bytes] & mask) == (b[bytes] & mask);
}

int sip_net_match(const sip_net_t *nets, unsigned n, const struct sockaddr *sa)
{
    uint8_t addr[16];
    int family;
    if (sa->sa_family == AF_INET) {
        family = AF_INET;
        memcpy(addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        /* An IPv4-mapped address is matched as IPv4. */
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            family = AF_INET;
            memcpy(addr, s6->sin6_addr.s6_addr + 12, 4);
        } else {
            family = AF_INET6;
            memcpy(addr, &s6->sin6_addr, 16);
        }
    } else {
        return 0;
    }
    for (unsigned i = 0; i < n; i++)
        if (nets[i].family == family && prefix_equal(nets[i].addr, addr, nets[i].prefix))
            return 1;
    return 0;
}

static void nonce_mac(const sip_inst_t *si, const char *ts, char out[17])
{
    su_md5_t md5;
    char hex[33];
    su_md5_init(&md5);
    su_md5_update(&md5, si->nonce_key, sizeof(si->nonce_key));
    su_md5_strupdate(&md5, ts);
    su_md5_hexdigest(&md5, hex);
    memcpy(out, hex, 16);
    out[16] = '\0';
}

void sip_auth_challenge(sip_inst_t *si, int stale, char *buf, size_t size)
{
    char ts[24], mac[17];
    snprintf(ts, sizeof(ts), "%llx", (unsigned long long)time(NULL));
    nonce_mac(si, ts, mac);
    snprintf(buf, size, "Digest realm=\"%s\", nonce=\"%s.%s\", algorithm=MD5, qop=\"auth\"%s",
             si->conf.realm ? si->conf.realm : "callvox", ts, mac, stale ? ", stale=true" : "");
}

/* 1 fresh, -1 ours but old, 0 not ours. */
static int nonce_check(const sip_inst_t *si, const char *nonce)
{
    if (nonce == NULL)
        return 0;
    const char *dot = strchr(nonce, '.');
    if (dot == NULL || dot - nonce > 20)
        return 0;
    char ts[24], mac[17];
    memcpy(ts, nonce, (size_t)(dot - nonce));
    ts[dot - nonce] = '\0';
    nonce_mac(si, ts, mac);
    if (strcmp(dot + 1, mac) != 0)
        return 0;
    unsigned long long t = strtoull(ts, NULL, 16), now = (unsigned long long)time(NULL);
    return t <= now && now - t <= SIP_NONCE_LIFE ? 1 : -1;
}

static const char *user_password(const sip_inst_t *si, const char *user)
{
    size_t ulen = strlen(user);
    for (size_t i = 0; i < si->conf.auth_users.n; i++) {
        const char *e = si->conf.auth_users.v[i];
        if (strncmp(e, user, ulen) == 0 && e[ulen] == ':')
            return e + ulen + 1;
    }
    return NULL;
}

int sip_auth_check(sip_inst_t *si, sip_t const *sip, char *user, size_t usize)
{
    user[0] = '\0';
    sip_authorization_t const *au = sip->sip_authorization;
    if (au == NULL || au->au_scheme == NULL || strcasecmp(au->au_scheme, "Digest") != 0 ||
        au->au_params == NULL || sip->sip_request == NULL)
        return 0;
    su_home_t home[1] = {SU_HOME_INIT(home)};
    auth_response_t ar[1];
    memset(ar, 0, sizeof(ar));
    ar->ar_size = sizeof(ar[0]);
    int result = 0;
    if (auth_digest_response_get(home, ar, au->au_params) < 0 || ar->ar_username == NULL ||
        ar->ar_response == NULL || ar->ar_realm == NULL)
        goto done;
    snprintf(user, usize, "%s", ar->ar_username);
    const char *realm = si->conf.realm ? si->conf.realm : "callvox";
    if (strcmp(ar->ar_realm, realm) != 0 || (!ar->ar_md5 && ar->ar_algorithm != NULL))
        goto done;
    if (ar->ar_auth_int)
        goto done; /* qop=auth-int is not offered */
    int fresh = nonce_check(si, ar->ar_nonce);
    if (fresh == 0)
        goto done;
    const char *pw = user_password(si, ar->ar_username);
    if (pw == NULL)
        goto done;
    auth_hexmd5_t ha1, expected;
    auth_digest_ha1(ha1, ar->ar_username, realm, pw);
    if (auth_digest_response(ar, expected, ha1, sip->sip_request->rq_method_name, NULL, 0) < 0)
        goto done;
    if (strcasecmp(expected, ar->ar_response) != 0)
        goto done;
    result = fresh;
done:
    su_home_deinit(home);
    return result;
}

void sip_number_map(const cvx_strlist_t *rules, char *number, size_t size)
{
    for (size_t i = 0; i < rules->n; i++) {
        const char *r = rules->v[i];
        const char *gt = strchr(r, '>');
        if (gt == NULL)
            continue;
        size_t flen = (size_t)(gt - r);
        if (strncmp(number, r, flen) != 0)
            continue;
        char out[CVX_NUMBER_MAX];
        snprintf(out, sizeof(out), "%s%s", gt + 1, number + flen);
        snprintf(number, size, "%s", out);
        return;
    }
}
