/*
 * Licensed ports for the whole cluster, across call servers (issue 12).
 *
 * The licence's ports are for the cluster.  Every call server tells the system server how
 * many calls it has whenever that changes (a LicenseCalls push); the system server grants each
 * call server what the others leave free (ports - local calls - the other call servers'
 * calls) in a LicenseGrant push, with the licence's state and whether new messages are
 * accepted.  A call server admits a call when its own count is below its grant, so the
 * decision never waits for the network.
 *
 * Decisions (README, Licensing):
 *  - until its first grant, and while the link is down, a call server keeps answering within
 *    its last grant (demo mode's ports before any): callers are served when the system server
 *    is away, at the price of possibly exceeding the licence during a partition;
 *  - the system server forgets a call server's calls when its link goes down (a dead call
 *    server's calls must not hold ports forever); the call server reports them again on
 *    reconnect;
 *  - two call servers admitting calls within one round trip of each other may exceed the
 *    licence by those calls until the next grant.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cvx/daemon.h"
#include "cvx/error.h"
#include "cvx/license.h"
#include "cvx/link.h"
#include "cvx/log.h"
#include "license_impl.h"
#include "link.pb-c.h"

#define M_CALLS   CVX_LINK_METHOD(CVX_LINK_SVC_LICENSE, 1)
#define M_GRANT   CVX_LINK_METHOD(CVX_LINK_SVC_LICENSE, 2)
#define PEERS_MAX 256

typedef struct peer {
    char name[64];
    uint32_t calls;
    uint32_t granted; /* last grant sent */
    int sent, unlimited_sent, accepting_sent;
    unsigned features_sent;
} peer_t;

static struct {
    int system_side, call_side;
    /* system side */
    peer_t peers[PEERS_MAX];
    unsigned npeers;
    /* call side */
    int granted; /* a grant was received */
    uint32_t grant;
    int unlimited;
    int accepting;
    char why[512];
    char state[32];
    uint32_t licensed;
    unsigned features;
    char serial[64];
    int link_up;
} P = {.accepting = 1};

/* --- system side ----------------------------------------------------------------------------- */

static peer_t *peer_find(const char *name, int create)
{
    for (unsigned i = 0; i < P.npeers; i++)
        if (strcmp(P.peers[i].name, name) == 0)
            return &P.peers[i];
    if (!create || P.npeers == PEERS_MAX)
        return NULL;
    peer_t *p = &P.peers[P.npeers++];
    memset(p, 0, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "%s", name);
    return p;
}

uint32_t cvx__license_remote_calls(void)
{
    uint32_t n = 0;
    for (unsigned i = 0; i < P.npeers; i++)
        n += P.peers[i].calls;
    return n;
}

/* Sends each call server its grant when it changed (or force). */
static void send_grants(int force)
{
    const char *why = NULL;
    int accepting = cvx_license_accepting_messages(&why);
    int unlimited = !cvx__license_ports_enforced();
    uint32_t limit = cvx__license_port_limit();
    uint32_t total = cvx__license_local_calls() + cvx__license_remote_calls();
    for (unsigned i = 0; i < P.npeers; i++) {
        peer_t *p = &P.peers[i];
        uint32_t others = total - p->calls;
        uint32_t grant = limit > others ? limit - others : 0;
        if (!force && p->sent && p->granted == grant && p->unlimited_sent == unlimited &&
            p->accepting_sent == accepting && p->features_sent == cvx__license_features())
            continue;
        Cvxlink__LicenseGrant g = CVXLINK__LICENSE_GRANT__INIT;
        g.ports = grant;
        g.unlimited = unlimited;
        g.accepting = accepting;
        g.why = (char *)(why ? why : "");
        g.state = (char *)cvx__license_state_name();
        g.licensed = limit;
        g.features = cvx__license_features();
        const cvx_license_t *lic = cvx_license_current();
        g.serial = (char *)(lic != NULL ? lic->serial : "");
        uint8_t buf[768];
        size_t len = cvxlink__license_grant__get_packed_size(&g);
        if (len > sizeof(buf))
            continue;
        cvxlink__license_grant__pack(&g, buf);
        if (cvx_link_push_to(p->name, M_GRANT, buf, len) == 0) {
            p->sent = 1;
            p->granted = grant;
            p->unlimited_sent = unlimited;
            p->accepting_sent = accepting;
            p->features_sent = g.features;
        }
    }
}

static void on_calls(void *arg, const char *peer, uint32_t method, const uint8_t *body, size_t len)
{
    (void)arg;
    if (method != M_CALLS)
        return;
    Cvxlink__LicenseCalls *c = cvxlink__license_calls__unpack(NULL, len, body);
    if (c == NULL) {
        cvx_warn("licence: call server %s sent a malformed call count; ignored", peer);
        return;
    }
    peer_t *p = peer_find(peer, 1);
    if (p != NULL)
        p->calls = c->calls;
    cvxlink__license_calls__free_unpacked(c, NULL);
    send_grants(0);
}

static void on_peer(void *arg, const char *peer, int up)
{
    (void)arg;
    peer_t *p = peer_find(peer, up);
    if (p == NULL)
        return;
    if (up) {
        p->sent = 0; /* a new connection: send its grant again */
    } else {
        p->calls = 0;
        p->sent = 0;
    }
    send_grants(0);
}

void cvx__license_state_changed(void)
{
    if (P.system_side)
        send_grants(0);
}

/* --- call side ------------------------------------------------------------------------------- */

static void push_calls(unsigned ncalls)
{
    Cvxlink__LicenseCalls c = CVXLINK__LICENSE_CALLS__INIT;
    c.calls = ncalls;
    uint8_t buf[16];
    size_t len = cvxlink__license_calls__get_packed_size(&c);
    cvxlink__license_calls__pack(&c, buf);
    cvx_link_push(M_CALLS, buf, len); /* fails quietly while the link is down */
}

static void on_grant(void *arg, uint32_t method, const uint8_t *body, size_t len)
{
    (void)arg;
    if (method != M_GRANT)
        return;
    Cvxlink__LicenseGrant *g = cvxlink__license_grant__unpack(NULL, len, body);
    if (g == NULL) {
        cvx_warn("licence: the system server sent a malformed grant; ignored");
        return;
    }
    int was_accepting = P.accepting;
    P.granted = 1;
    P.grant = g->ports;
    P.unlimited = g->unlimited;
    P.accepting = g->accepting;
    snprintf(P.why, sizeof(P.why), "%s", g->why ? g->why : "");
    snprintf(P.state, sizeof(P.state), "%s", g->state ? g->state : "");
    P.licensed = g->licensed;
    P.features = g->features;
    snprintf(P.serial, sizeof(P.serial), "%s", g->serial ? g->serial : "");
    cvxlink__license_grant__free_unpacked(g, NULL);
    if (was_accepting && !P.accepting)
        cvx_warn("licence alarm: the system server refuses new messages (%s); callers are still "
                 "answered",
                 P.why);
    else if (!was_accepting && P.accepting)
        cvx_notice("licence: the system server accepts new messages again");
}

static void on_link_state(void *arg, int up, uint64_t epoch)
{
    (void)arg;
    (void)epoch;
    P.link_up = up;
    if (up)
        push_calls(cvx__license_local_calls());
}

int cvx__license_grant_admits(unsigned ncalls)
{
    if (P.granted && P.unlimited)
        return 1;
    uint32_t limit = P.granted ? P.grant : cvx__license_demo_ports();
    return ncalls < limit;
}

int cvx__license_grant_features(unsigned *features, const char **serial)
{
    if (!P.granted)
        return 0;
    *features = P.features;
    if (serial != NULL)
        *serial = P.serial;
    return 1;
}

int cvx__license_remote_accepting(const char **why)
{
    if (why != NULL)
        *why = P.accepting ? NULL : P.why;
    return P.accepting;
}

void cvx__license_calls_changed(unsigned ncalls)
{
    if (P.call_side)
        push_calls(ncalls);
    else if (P.system_side)
        send_grants(0);
}

void cvx__license_ports_describe(cvx_cmd_req_t *req, unsigned ncalls, uint64_t refused,
                                 uint64_t peak)
{
    cvx_cmd_kv(req, 20, "held_by", "the system server (this is a call server)");
    cvx_cmd_kv(req, 20, "link", P.link_up ? "up" : "down");
    cvx_cmd_kv(req, 20, "state",
               P.granted ? P.state : "unknown (no word from the system server yet)");
    if (P.granted) {
        char feats[96];
        cvx_license_features_format(P.features, feats, sizeof(feats));
        cvx_cmd_kv(req, 20, "features", feats);
        cvx_cmd_kv_uint(req, 20, "cluster_ports", P.licensed);
    }
    if (P.granted && P.unlimited)
        cvx_cmd_kv(req, 20, "ports", "not enforced (the proof is pending)");
    else
        cvx_cmd_kv_uint(req, 20, "ports", P.granted ? P.grant : cvx__license_demo_ports());
    cvx_cmd_kv(req, 20, "ports_from",
               P.granted
                   ? (P.link_up ? "the system server's grant" : "the last grant (the link is down)")
                   : "demo mode's ports (no grant yet)");
    cvx_cmd_kv_uint(req, 20, "ports_in_use", ncalls);
    cvx_cmd_kv_uint(req, 20, "ports_peak", peak);
    cvx_cmd_kv_uint(req, 20, "calls_refused", refused);
    cvx_cmd_kv(req, 20, "messages", P.accepting ? "accepted" : "refused by the system server");
    if (!P.accepting) {
        cvx_cmd_kv(req, 20, "why", P.why);
        cvx_cmd_kv(req, 20, "alarm",
                   "the system server refuses new messages; callers are still answered");
    }
}

/* --- life ------------------------------------------------------------------------------------ */

int cvx__license_ports_start(void)
{
    cvx_role_t role = cvx_daemon_role();
    if (role & CVX_ROLE_SYSTEM) {
        P.system_side = 1;
        cvx_link_server_on_push(CVX_LINK_SVC_LICENSE, on_calls, NULL);
        cvx_link_server_on_peer(on_peer, NULL);
    } else if (role == CVX_ROLE_CALL) {
        P.call_side = 1;
        cvx_link_client_on_push(CVX_LINK_SVC_LICENSE, on_grant, NULL);
        cvx_link_client_on_state(on_link_state, NULL);
    }
    return 0;
}

void cvx__license_ports_stop(void)
{
    if (P.system_side) {
        cvx_link_server_on_push(CVX_LINK_SVC_LICENSE, NULL, NULL);
        cvx_link_server_off_peer(on_peer, NULL);
    }
    if (P.call_side) {
        cvx_link_client_on_push(CVX_LINK_SVC_LICENSE, NULL, NULL);
        cvx_link_client_off_state(on_link_state, NULL);
    }
    P.system_side = P.call_side = 0;
    P.npeers = 0;
}
