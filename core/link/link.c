/*
 * The link's [link] section, its start/stop hooks and its shell commands (`show callservers`
 * on a system server, `show link` on a call server).  The two sides are server.c and
 * client.c; framing is frame.c.
 */
#include <arpa/inet.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cvx/cmd.h"
#include "cvx/daemon.h"
#include "cvx/error.h"
#include "cvx/log.h"
#include "link/link_impl.h"

cvx__link_conf_t cvx__link_conf;

#define O(f) offsetof(cvx__link_conf_t, f)
static const cvx_option_t link_options[] = {
    {"listen", CVX_OPT_STRING, O(listen), NULL, 0, 0, NULL, 0,
     "System server (roles system and all): the address call servers connect to, "
     "host:port or [v6]:port (numeric).  Unset: no link is served."},
    {"servers", CVX_OPT_LIST, O(servers), NULL, 0, 0, NULL, 0,
     "Call server (role call): the system servers' addresses (host:port, numeric), tried in "
     "order; the key may repeat and a value may list several, separated by commas."},
    {"ca", CVX_OPT_STRING, O(ca), NULL, 0, 0, NULL, 0,
     "The cluster CA certificate (PEM): peers must present a certificate it signed."},
    {"cert", CVX_OPT_STRING, O(cert), NULL, 0, 0, NULL, 0,
     "This server's certificate (PEM, made by tools/callvox-ca); its common name is the name "
     "peers know this server by."},
    {"key", CVX_OPT_STRING, O(key), NULL, 0, 0, NULL, 0, "This server's private key (PEM)."},
    {"name", CVX_OPT_STRING, O(name), NULL, 0, 0, NULL, 0,
     "This server's name in the hello (default: [general] name); it must be the common name "
     "of its certificate."},
    {"ports", CVX_OPT_INT, O(ports), "0", 0, 1000000, NULL, 0,
     "Call server: the number of ports (simultaneous calls) it declares to the system server."},
    {"heartbeat_ms", CVX_OPT_INT, O(heartbeat_ms), "1000", 50, 600000, NULL, 0,
     "Milliseconds between pings (both sides) and status reports (call server)."},
    {"timeout_ms", CVX_OPT_INT, O(timeout_ms), "5000", 100, 3600000, NULL, 0,
     "Milliseconds without any frame after which the peer is taken for dead and dropped."},
    {"hello_timeout_ms", CVX_OPT_INT, O(hello_timeout_ms), "5000", 100, 600000, NULL, 0,
     "Milliseconds a new connection has to finish TLS and its hello before it is refused."},
    {"request_timeout_ms", CVX_OPT_INT, O(request_timeout_ms), "10000", 10, 3600000, NULL, 0,
     "Call server: a request with no reply after this many milliseconds completes with "
     "'timed out'."},
    {"reconnect_min_ms", CVX_OPT_INT, O(reconnect_min_ms), "100", 10, 600000, NULL, 0,
     "Call server: first wait before connecting again after the link drops; doubles after "
     "every round of failed attempts over all servers."},
    {"reconnect_max_ms", CVX_OPT_INT, O(reconnect_max_ms), "5000", 10, 3600000, NULL, 0,
     "Call server: longest wait between rounds of connection attempts."},
    CVX_OPTIONS_END,
};
#undef O

static const cvx_section_def_t link_section = {
    "link", 0, link_options, sizeof(cvx__link_conf_t),
    "The call-server <-> system-server link: TLS 1.3 with certificates from the cluster CA."};

/* --- addresses --------------------------------------------------------------------------- */

int cvx__link_parse_addr(const char *s, struct sockaddr_storage *out)
{
    char host[INET6_ADDRSTRLEN + 2];
    const char *colon;
    memset(out, 0, sizeof(*out));
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (end == NULL || end[1] != ':' || (size_t)(end - s - 1) >= sizeof(host))
            return CVX_EINVAL;
        memcpy(host, s + 1, (size_t)(end - s - 1));
        host[end - s - 1] = '\0';
        colon = end + 1;
    } else {
        colon = strchr(s, ':');
        /* An IPv6 address needs its brackets: "::1:5070" is ambiguous. */
        if (colon == NULL || strchr(colon + 1, ':') != NULL || (size_t)(colon - s) >= sizeof(host))
            return CVX_EINVAL;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || port <= 0 || port > 65535)
        return CVX_EINVAL;
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)out) == 0)
        return 0;
    if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)out) == 0)
        return 0;
    return CVX_EINVAL;
}

const char *cvx__link_my_name(void)
{
    const char *n = cvx__link_conf.name;
    return n != NULL && n[0] != '\0' ? n : cvx_daemon_name();
}

/* --- start and stop ------------------------------------------------------------------------ */

/* The checks a start needs; one error line each. */
static int check_conf(int server)
{
    const cvx__link_conf_t *c = &cvx__link_conf;
    int rc = 0;
    if (c->ca == NULL || c->cert == NULL || c->key == NULL) {
        cvx_error("[link] %s needs ca, cert and key (the cluster CA and this server's "
                  "certificate; tools/callvox-ca makes them)",
                  server ? "listen" : "servers");
        rc = CVX_EINVAL;
    }
    struct sockaddr_storage ss;
    if (server && cvx__link_parse_addr(c->listen, &ss) != 0) {
        cvx_error("[link] listen: '%s' is not a numeric host:port", c->listen);
        rc = CVX_EINVAL;
    }
    if (c->reconnect_max_ms < c->reconnect_min_ms) {
        cvx_error("[link] reconnect_max_ms is below reconnect_min_ms");
        rc = CVX_EINVAL;
    }
    return rc;
}

static int link_start(uv_loop_t *loop)
{
    const cvx__link_conf_t *c = &cvx__link_conf;
    int rc = 0;
    if ((cvx_daemon_role() & CVX_ROLE_SYSTEM) && c->listen != NULL && c->listen[0] != '\0') {
        rc = check_conf(1);
        if (rc == 0)
            rc = cvx__link_server_start(loop);
    } else if (cvx_daemon_role() == CVX_ROLE_CALL && c->servers.n > 0) {
        rc = check_conf(0);
        if (rc == 0)
            rc = cvx__link_client_start(loop);
    }
    if (cvx_daemon_role() != CVX_ROLE_CALL && c->servers.n > 0)
        cvx_notice("link: [link] servers is ignored in role %s (only call servers connect)",
                   cvx_daemon_role_name(cvx_daemon_role()));
    return rc;
}

static void link_stop(void)
{
    cvx__link_server_stop();
    cvx__link_client_stop();
}

static const cvx_daemon_hooks_t link_hooks = {"link", CVX_ROLE_ALL, link_start, link_stop, NULL};

/* --- commands -------------------------------------------------------------------------------- */

static void format_since(uint64_t ms, char *buf, size_t size)
{
    if (ms == 0) {
        snprintf(buf, size, "-");
        return;
    }
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void format_rtt(uint32_t us, char *buf, size_t size)
{
    snprintf(buf, size, "%.3f", (double)us / 1000.0);
}

static int peer_row(void *arg, const cvx_link_peer_info_t *p)
{
    char ports[16], calls[16], spool[16], rtt[32], since[32];
    snprintf(ports, sizeof(ports), "%u", p->ports);
    snprintf(calls, sizeof(calls), "%u", p->calls);
    snprintf(spool, sizeof(spool), "%u", p->spool);
    format_rtt(p->rtt_us, rtt, sizeof(rtt));
    format_since(p->since_ms, since, sizeof(since));
    const char *cells[] = {
        p->name, p->address, p->state, p->version, p->drivers[0] ? p->drivers : "-",
        ports,   calls,      spool,    rtt,        since};
    cvx_cmd_table_row(arg, cells);
    return 0;
}

static int cmd_show_callservers(cvx_cmd_req_t *req)
{
    if (!cvx__link_server_running()) {
        cvx_cmd_error(req, "no link is served here ([link] listen is not set%s)",
                      cvx_daemon_role() & CVX_ROLE_SYSTEM ? "" : ", and this is a call server");
        return CVX_ENOTSUP;
    }
    static const char *const cols[] = {"name",    "address", "state",  "version",
                                       "drivers", "ports#",  "calls#", "spool#",
                                       "rtt_ms#", "since",   NULL};
    cvx_cmd_table_begin(req, "callservers", cols);
    cvx_link_foreach_peer(peer_row, req);
    cvx_cmd_table_end(req);
    return 0;
}

static int cmd_show_link(cvx_cmd_req_t *req)
{
    if (!cvx__link_client_running()) {
        cvx_cmd_error(req, "this server has no link to a system server ([link] servers is not "
                           "set, or the role is not call)");
        return CVX_ENOTSUP;
    }
    cvx__link_client_info_t i;
    cvx__link_client_get_info(&i);
    char rtt[32], since[32], epoch[32];
    format_rtt(i.rtt_us, rtt, sizeof(rtt));
    format_since(i.since_ms, since, sizeof(since));
    snprintf(epoch, sizeof(epoch), "%016llx", (unsigned long long)i.epoch);
    cvx_cmd_kv(req, 12, "server", i.server[0] ? i.server : "-");
    cvx_cmd_kv(req, 12, "name", i.name[0] ? i.name : "-");
    cvx_cmd_kv(req, 12, "state", i.state);
    cvx_cmd_kv(req, 12, "epoch", i.epoch ? epoch : "-");
    cvx_cmd_printf(req, "%-12s %s\n", "rtt_ms", rtt);
    cvx_cmd_json_double(req, "rtt_ms", (double)i.rtt_us / 1000.0);
    cvx_cmd_kv_uint(req, 12, "pending", i.pending);
    cvx_cmd_kv_uint(req, 12, "reconnects", i.reconnects);
    cvx_cmd_kv(req, 12, "since", since);
    cvx_cmd_kv(req, 12, "last_error", i.last_error[0] ? i.last_error : "-");
    return 0;
}

static const cvx_cmd_t link_cmds[] = {
    {"show callservers",
     {{0}},
     CVX_CMD_READONLY,
     "List the call servers connected to this system server",
     "One line per call server known since start: its name (certificate common name), "
     "address, state (up, down), callvoxd version, driver instances, declared ports, calls "
     "in progress and spool depth (from its last status report), last link round-trip time "
     "in ms, and when its state last changed (UTC).",
     cmd_show_callservers,
     NULL},
    {"show link",
     {{0}},
     CVX_CMD_READONLY,
     "Show this call server's link to the system server",
     "The system server's address and name, the link state (down, connecting, handshake, "
     "up), the system server's run epoch, the last round-trip time in ms, requests waiting "
     "for their reply, reconnections since start, when the state last changed (UTC) and the "
     "last error.",
     cmd_show_link,
     NULL},
    CVX_CMDS_END,
};

int cvx_link_register(void)
{
    int rc = cvx_daemon_add_section(&link_section, &cvx__link_conf);
    if (rc == 0)
        rc = cvx_daemon_add_hooks(&link_hooks);
    if (rc == 0)
        rc = cvx_cmd_register(link_cmds);
    return rc;
}
