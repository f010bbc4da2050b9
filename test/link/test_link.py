"""The call-server <-> system-server link with real callvoxd processes on loopback: one system
server, two call servers, certificates from tools/ca/callvox-ca.  A test service
(test/link/linkmod.c, linktest.so) proves request/reply, ordering and pushes; peers that break
the rules (no certificate, another CA, another protocol version, garbage, silence) are refused
with one log line while the good call servers keep working; a system server killed with
SIGKILL makes calls fail with "service unavailable", and the call servers come back when it is
restarted (new epoch)."""
import atexit
import json
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import time

from cvxtest import BUILD, Daemon, free_port, main, run_callvoxd, wait_for

CALLVOX = os.path.join(BUILD, "bin", "callvox")
CA_TOOL = os.path.join(BUILD, "bin", "callvox-ca")
LINK_MODULES = os.environ.get("CVX_LINK_TEST_MODULES",
                              os.path.join(BUILD, "test", "link", "modules"))

WORK = tempfile.mkdtemp(prefix="cvx-link-")
if not os.environ.get("CVX_KEEP"):
    atexit.register(shutil.rmtree, WORK, True)
os.chmod(WORK, 0o755)

# The daemons load only null (driver instances to declare), echo (to hold calls up) and
# linktest.
MODULES = os.path.join(WORK, "modules")
os.makedirs(MODULES)
for m in ("null.so", "echo.so"):
    os.symlink(os.path.join(BUILD, "lib", "callvox", "modules", m), os.path.join(MODULES, m))
os.symlink(os.path.join(LINK_MODULES, "linktest.so"), os.path.join(MODULES, "linktest.so"))

CA = os.path.join(WORK, "ca")
OTHER = os.path.join(WORK, "other-ca")


def ca_tool(*args):
    p = subprocess.run([CA_TOOL] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
    return p.returncode, p.stdout, p.stderr


def make_certs():
    rc, out, err = ca_tool("init", CA)
    assert rc == 0 and out.startswith("callvox-ca: CA created: %s/ca.pem" % CA), (rc, out, err)
    for name in ("sys1", "call1", "call2", "badver", "liar", "garbler", "mute"):
        rc, out, err = ca_tool("issue", CA, name)
        assert rc == 0, (rc, out, err)
    assert ca_tool("init", OTHER)[0] == 0
    assert ca_tool("issue", OTHER, "call3")[0] == 0
    # The tool refuses to overwrite, and names without a CA.
    rc, out, err = ca_tool("issue", CA, "call1")
    assert rc == 1 and "exists already" in err, (rc, err)
    rc, out, err = ca_tool("issue", os.path.join(WORK, "nowhere"), "x")
    assert rc == 1 and "holds no CA" in err, (rc, err)
    rc, out, err = ca_tool("issue", CA, "bad/name")
    assert rc == 1 and "is not a server name" in err, (rc, err)
    p = subprocess.run(["openssl", "x509", "-noout", "-subject", "-in", os.path.join(CA, "call1.pem")],
                       stdout=subprocess.PIPE, text=True)
    assert "CN = call1" in p.stdout, p.stdout


make_certs()


def link_conf(ca_dir, name, extra):
    return ("[link]\nca = %s\ncert = %s\nkey = %s\n" % (
        os.path.join(ca_dir, "ca.pem"), os.path.join(ca_dir, name + ".pem"),
        os.path.join(ca_dir, name + ".key"))) + extra


def x(d, command, *flags):
    p = subprocess.run([CALLVOX, "-s", os.path.join(d.run_dir, "callvox.ctl")] + list(flags)
                       + ["-x", command], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def x_json(d, command):
    rc, out, err = x(d, command, "--json")
    return json.loads(out)


class Cluster:
    """sys1 (role system) with call1 and call2 (role call) connected."""

    def __init__(self, sys_extra="", call_extra=""):
        self.port = free_port(socket.SOCK_STREAM)
        self.sys_dir = tempfile.mkdtemp(prefix="sys1-", dir=WORK)
        self.sys_conf = link_conf(CA, "sys1", "listen = 127.0.0.1:%d\nheartbeat_ms = 200\n"
                                  "hello_timeout_ms = 1500\n%s" % (self.port, sys_extra))
        self.sys = self.new_sys()
        self.calls = []
        # call1 lists a system server that is not there first (tried in order, then the next
        # one); call2 names it by host name (resolved off the loop).
        dead = free_port(socket.SOCK_STREAM)
        servers = ["127.0.0.1:%d, 127.0.0.1:%d" % (dead, self.port), "localhost:%d" % self.port]
        for i, name in enumerate(("call1", "call2")):
            conf = link_conf(CA, name, "servers = %s\nports = %d\nheartbeat_ms = 200\n"
                             "reconnect_max_ms = 500\n%s" % (servers[i], 8 * (i + 1), call_extra))
            conf += "[null:pbx%d]\nchannels = 4\n[echo]\nnumber = 600\n" % (i + 1)
            self.calls.append(Daemon(conf, role="call", name=name,
                                     general={"module_dir": MODULES}))

    def new_sys(self):
        return Daemon(self.sys_conf, role="system", name="sys1", workdir=self.sys_dir,
                      general={"module_dir": MODULES})

    def start(self):
        self.sys.start()
        for c in self.calls:
            c.start()
        for c, at in zip(self.calls, ("127\\.0\\.0\\.1", "localhost")):
            c.wait_log(r"link: up to system server sys1 \(%s:%d\)" % (at, self.port))
        return self

    def close(self, check=False):
        # A clean stop (SIGTERM) of every daemon still running: under ASan, leaks and errors
        # found at exit show in its status.
        bad = []
        for d in self.calls + [self.sys]:
            if d.proc is not None and d.proc.poll() is None:
                rc = d.stop()
                if rc != 0:
                    bad.append("%s exited %s:\n%s" % (d.conf_path, rc, d.log()[-3000:]))
            d.close()
        shutil.rmtree(self.sys_dir, ignore_errors=True)
        assert not check or not bad, "\n".join(bad)

    def __enter__(self):
        return self.start()

    def __exit__(self, exc_type, *exc):
        self.close(check=exc_type is None)


def callservers(sys):
    return {c["name"]: c for c in x_json(sys, "show callservers")["result"]["callservers"]}


def test_show_callservers_lists_both():
    with Cluster() as cl:
        sys, (c1, c2) = cl.sys, cl.calls
        # A call on call1 (null loopback: two legs, the far end answered by echo).
        rc, out, err = x(c1, "call originate null:pbx1 600")
        assert rc == 0, (rc, out, err)
        # Spool depth, as the spool sets it, on call2.
        assert x(c2, "linktest spool 3")[0] == 0

        def reported():
            cs = callservers(sys)
            ok = (set(cs) == {"call1", "call2"} and cs["call1"]["calls"] == 2
                  and all(c["rtt_ms"] > 0 for c in cs.values()))
            ok = ok and cs["call2"]["spool"] == 3
            return ok and cs
        cs = wait_for(reported, 10, "both call servers with their status and rtt")
        assert (cs["call1"]["state"], cs["call1"]["ports"], cs["call1"]["drivers"],
                cs["call1"]["spool"]) == ("up", 8, "null:pbx1", 0), cs
        assert (cs["call2"]["state"], cs["call2"]["ports"], cs["call2"]["drivers"],
                cs["call2"]["calls"], cs["call2"]["spool"]) == ("up", 16, "null:pbx2", 0, 3), cs
        assert cs["call1"]["version"] == cs["call2"]["version"] != "", cs
        assert re.match(r"127\.0\.0\.1:\d+$", cs["call1"]["address"]), cs
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", cs["call1"]["since"]), cs
        # The rtt is a real round trip on loopback: well under 100 ms.
        assert all(0 < c["rtt_ms"] < 100 for c in cs.values()), cs
        rc, out, err = x(sys, "show callservers")
        assert rc == 0 and re.search(r"^call1 +127\.0\.0\.1:\d+ +up +\S+ +null:pbx1 +8 +2 +0 +\d+\.\d{3} ",
                                     out, re.M), out
        rc, out, err = x(sys, "show link")
        assert rc == 1 and "has no link to a system server" in err, (rc, err)

        link = x_json(c1, "show link")["result"]
        assert (link["server"], link["name"], link["state"], link["pending"],
                link["reconnects"], link["last_error"]) == (
                    "127.0.0.1:%d" % cl.port, "sys1", "up", 0, 0, "-"), link
        assert x_json(c2, "show link")["result"]["server"] == "localhost:%d" % cl.port
        # call1 tried the missing server first, said so once, and went on to the next.
        assert len(re.findall(r"warning: link: cannot reach the system server 127\.0\.0\.1:\d+: "
                              r"connection refused \(trying again\)", c1.log())) == 1, c1.log()
        assert re.match(r"[0-9a-f]{16}$", link["epoch"]), link
        epoch = re.search(r"link: listening for call servers on \S+ as sys1 \(epoch ([0-9a-f]+)\)",
                          sys.log()).group(1)
        assert link["epoch"] == epoch, (link, epoch)
        rc, out, err = x(c1, "show callservers")
        assert rc == 1 and "no link is served here" in err, (rc, err)

        # call2 stops: it stays listed, down, with the time it went.
        before = cs["call2"]["since"]
        assert c2.stop() == 0
        sys.wait_log(r"notice: link: call server call2 \(127\.0\.0\.1:\d+\) down: ")
        cs = callservers(sys)
        assert (cs["call2"]["state"], cs["call1"]["state"]) == ("down", "up"), cs
        assert cs["call2"]["since"] >= before, cs
        # What the services above the link were told (each once).
        assert x(sys, "linktest events")[1] in ("call1 up\ncall2 up\ncall2 down\n",
                                                "call2 up\ncall1 up\ncall2 down\n")
        assert x(c1, "linktest events")[1] == "up %s\n" % link["epoch"]


def test_request_reply_order_and_push():
    with Cluster() as cl:
        sys, (c1, c2) = cl.sys, cl.calls
        assert x(c1, "linktest call 1 hello over the link") == (0, "hello over the link\n", "")
        # The reply's status reaches the caller as is.
        rc, out, err = x(c1, "linktest call 5")
        assert (rc, err) == (1, "not found\n"), (rc, err)
        # A method of a service nobody serves.
        rc, out, err = x(c1, "linktest call 77")
        assert (rc, err) == (1, "operation not supported\n"), (rc, err)
        # 2000 requests sent at once from each call server: the system server sees each
        # stream in order, and the replies come back in order.
        p1 = subprocess.Popen([CALLVOX, "-s", os.path.join(c1.run_dir, "callvox.ctl"), "-x",
                               "linktest seq 2000"], stdout=subprocess.PIPE, text=True)
        rc, out, err = x(c2, "linktest seq 2000")
        assert (rc, out) == (0, "2000 replies in order\n"), (rc, out, err)
        assert p1.wait(60) == 0 and p1.stdout.read() == "2000 replies in order\n"
        p1.stdout.close()
        # The largest body goes both ways intact; one byte more is refused at once.
        assert x(c1, "linktest big") == (0, "1048576 bytes back, 0 differ\n", ""), x(c1, "linktest big")
        # Pushes: the system server to one call server by name, and a call server to it.
        assert x(c2, "linktest call 4 lamp on for 4711")[0] == 0
        assert x(c2, "linktest pushes")[1] == "system: lamp on for 4711\n"
        assert x(c1, "linktest pushes")[1] == ""
        assert x(c1, "linktest push lamp 4711 sent")[0] == 0
        wait_for(lambda: x(sys, "linktest pushes")[1] == "call1: lamp 4711 sent\n", 5,
                 "the push from call1")
        assert x(c1, "show link", "--json")[0] == 0
        assert x_json(c1, "show link")["result"]["pending"] == 0


def test_request_timeout():
    with Cluster(call_extra="request_timeout_ms = 700\n") as cl:
        c1 = cl.calls[0]
        start = time.monotonic()
        rc, out, err = x(c1, "linktest call 6 never answered")
        took = time.monotonic() - start
        assert (rc, err) == (1, "timed out\n"), (rc, err)
        assert 0.6 < took < 5, took
        # The link is still up and serves the next request.
        assert x(c1, "linktest call 1 still here") == (0, "still here\n", "")


# --- peers that break the rules ----------------------------------------------------------------

def tls_client(port, name=None, ca_dir=CA):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(os.path.join(CA, "ca.pem"))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if name is not None:
        ctx.load_cert_chain(os.path.join(ca_dir, name + ".pem"), os.path.join(ca_dir, name + ".key"))
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(s)


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(num, value):
    if isinstance(value, int):
        return varint(num << 3) + varint(value)
    if isinstance(value, str):
        value = value.encode()
    return varint(num << 3 | 2) + varint(len(value)) + value


def frame(version, ftype, body=b""):
    env = field(1, version) + field(2, ftype) + field(6, body)
    return struct.pack(">I", len(env)) + env


def hello(name):
    return field(1, name) + field(2, "0.1.0") + field(4, 4)


def closed_by_peer(s, timeout=10):
    """Reads until the peer closes (or resets) the connection."""
    s.settimeout(timeout)
    try:
        while s.recv(4096):
            pass
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        pass
    except socket.timeout:
        raise AssertionError("the system server did not close the connection")
    return True


def test_bad_peers_are_refused_and_do_not_disturb():
    with Cluster() as cl:
        sys, (c1, c2) = cl.sys, cl.calls
        wait_for(lambda: len(callservers(sys)) == 2, 5, "both call servers listed")
        refused = r"warning: link: refused call server "

        # No certificate at all.
        try:
            s = tls_client(cl.port)
            s.sendall(frame(1, 1, hello("anonymous")))
            closed_by_peer(s)
            s.close()
        except (ssl.SSLError, ConnectionResetError):
            pass
        sys.wait_log(refused + r"127\.0\.0\.1:\d+: TLS: peer did not return a certificate")

        # A client whose certificate comes from another CA (it trusts ours).
        try:
            s = tls_client(cl.port, "call3", OTHER)
            s.sendall(frame(1, 1, hello("call3")))
            closed_by_peer(s)
            s.close()
        except (ssl.SSLError, ConnectionResetError):
            pass
        sys.wait_log(refused + r"127\.0\.0\.1:\d+: certificate verify failed: unable to get "
                     r"local issuer certificate")
        # A real call server of another CA: it does not trust this system server either, so
        # it gives up first; the system server still says who came and why it failed.
        conf = link_conf(OTHER, "call3", "servers = 127.0.0.1:%d\nreconnect_max_ms = 500\n"
                         % cl.port)
        with Daemon(conf, role="call", name="call3", general={"module_dir": MODULES}) as c3:
            c3.start()
            c3.wait_log(r"warning: link: cannot reach the system server 127\.0\.0\.1:%d: "
                        r"certificate verify failed: self-signed certificate in certificate chain"
                        % cl.port)
            sys.wait_log(refused + r"127\.0\.0\.1:\d+: TLS: tlsv1 alert unknown ca")
            rc, out, err = x(c3, "linktest call 1 hi")
            assert (rc, err) == (1, "service unavailable\n"), (rc, err)
            assert x_json(c3, "show link")["result"]["state"] != "up"

        # A good certificate and another protocol version.
        s = tls_client(cl.port, "badver")
        s.sendall(frame(2, 1, hello("badver")))
        closed_by_peer(s)
        s.close()
        sys.wait_log(refused + r"badver \(127\.0\.0\.1:\d+\): protocol version 2, this server "
                     r"speaks version 1")

        # A hello that names someone else than the certificate.
        s = tls_client(cl.port, "liar")
        s.sendall(frame(1, 1, hello("call1")))
        closed_by_peer(s)
        s.close()
        sys.wait_log(refused + r"liar \(127\.0\.0\.1:\d+\): hello names 'call1', the "
                     r"certificate 'liar'")

        # Garbage: text where a frame length belongs, and an envelope that does not decode.
        s = tls_client(cl.port, "garbler")
        s.sendall(b"GET / HTTP/1.1\r\nHost: sys1\r\n\r\n")
        closed_by_peer(s)
        s.close()
        sys.wait_log(refused + r"garbler \(127\.0\.0\.1:\d+\): oversized frame \(1195725856 "
                     r"bytes, at most \d+\)")
        s = tls_client(cl.port, "garbler")
        s.sendall(struct.pack(">I", 6) + b"\x32\x7f\xff\xff\xff\x0f")
        closed_by_peer(s)
        s.close()
        sys.wait_log(refused + r"garbler \(127\.0\.0\.1:\d+\): malformed frame \(6 bytes\)")

        # Silence after TLS: refused when hello_timeout_ms (1.5 s) has passed.
        s = tls_client(cl.port, "mute")
        t0 = time.monotonic()
        closed_by_peer(s)
        s.close()
        assert 1.0 < time.monotonic() - t0 < 6, time.monotonic() - t0
        sys.wait_log(refused + r"mute \(127\.0\.0\.1:\d+\): no hello within 1500 ms")
        # Silence before TLS too (a bare TCP connection).
        raw = socket.create_connection(("127.0.0.1", cl.port))
        closed_by_peer(raw)
        raw.close()
        sys.wait_log(refused + r"127\.0\.0\.1:\d+: no TLS handshake within 1500 ms")

        # One line per refusal, and the good call servers never noticed.
        log = sys.log()
        # (call3 tried more than once while it ran: one line per attempt.)
        lines = [l for l in log.splitlines() if re.search(refused, l) and "unknown ca" not in l]
        assert len(lines) == 8, log
        assert "call server call1 down" not in log and "call server call2 down" not in log, log
        cs = callservers(sys)
        assert set(cs) == {"call1", "call2"}, cs
        assert all(c["state"] == "up" for c in cs.values()), cs
        for c in (c1, c2):
            assert x(c, "linktest call 1 still fine") == (0, "still fine\n", "")
            assert x_json(c, "show link")["result"]["reconnects"] == 0

        # A flood of connections that never say anything: 64 may wait at once, the next are
        # turned away (one line), and the call servers go on working meanwhile.
        flood = [socket.create_connection(("127.0.0.1", cl.port)) for _ in range(70)]
        sys.wait_log(r"warning: link: refused the connection from 127\.0\.0\.1:\d+: 64 "
                     r"connections are already waiting for their handshake or hello \(1 turned "
                     r"away so far\)")
        assert x(c1, "linktest call 1 during the flood") == (0, "during the flood\n", "")
        for f in flood:
            f.close()
        assert len(re.findall(r"turned away so far", sys.log())) == 1, sys.log()
        assert all(c["state"] == "up" for c in callservers(sys).values())


def test_system_server_killed_and_restarted():
    with Cluster() as cl:
        sys, (c1, c2) = cl.sys, cl.calls
        epoch1 = x_json(c1, "show link")["result"]["epoch"]
        # A request waiting for its reply when the system server dies.
        waiting = subprocess.Popen([CALLVOX, "-s", os.path.join(c1.run_dir, "callvox.ctl"), "-x",
                                    "linktest call 6 held"], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        wait_for(lambda: x_json(c1, "show link")["result"]["pending"] == 1, 5, "the request sent")
        sys.kill()  # SIGKILL
        out, err = waiting.communicate(timeout=20)
        assert (waiting.returncode, err) == (1, "service unavailable\n"), (
            waiting.returncode, err)
        for c in (c1, c2):
            c.wait_log(r"warning: link: lost the system server sys1 \((127\.0\.0\.1|localhost):%d\): "
                       % cl.port)
            wait_for(lambda: x_json(c, "show link")["result"]["state"] != "up", 5, "link down")
            rc, out, err = x(c, "linktest call 1 anyone")
            assert (rc, err) == (1, "service unavailable\n"), (rc, err)
        assert x_json(c1, "show link")["result"]["pending"] == 0
        # Back on the same port: both call servers return by themselves, with the new epoch.
        cl.sys = cl.new_sys()
        cl.sys.start()
        for c in (c1, c2):
            c.wait_log(r"link: up to system server sys1 .*", count=2, timeout=15)
            link = wait_for(lambda: (lambda l: l["state"] == "up" and l)(
                x_json(c, "show link")["result"]), 5, "link up again")
            assert link["reconnects"] == 1 and link["epoch"] != epoch1, (link, epoch1)
            assert x(c, "linktest call 1 back") == (0, "back\n", "")
        epochs = re.findall(r"link: listening for call servers on \S+ as sys1 \(epoch ([0-9a-f]+)\)",
                            cl.sys.log())
        for c in (c1, c2):
            assert x(c, "linktest events")[1] == "up {0}\ndown {0}\nup {1}\n".format(
                epoch1, epochs[1]), x(c, "linktest events")
        assert len(epochs) == 2 and epochs[0] == epoch1 and epochs[1] != epoch1, epochs
        cs = wait_for(lambda: (lambda cs: len(cs) == 2 and all(c["state"] == "up" for c in cs.values())
                               and cs)(callservers(cl.sys)), 5, "both listed again")
        assert set(cs) == {"call1", "call2"}, cs


def test_configuration_errors():
    # The [link] table checks keys and bounds like every section (--check-config).
    d = Daemon("[link]\nlisten = 127.0.0.1:5999\nheartbeat_ms = 10\nbogus = 1\n", role="system",
               general={"module_dir": MODULES})
    with d:
        rc, out = run_callvoxd(["--check-config", "--config", d.conf_path])
        assert rc == 2, (rc, out)
        assert "%s:9: [link] heartbeat_ms: 10 is out of range (50..600000)" % d.conf_path in out, out
        assert "%s:10: [link] unknown key 'bogus'" % d.conf_path in out, out
    # listen without certificates: the start stops with one line naming what is missing.
    d = Daemon("[link]\nlisten = 127.0.0.1:%d\n" % free_port(socket.SOCK_STREAM), role="system",
               general={"module_dir": MODULES})
    with d:
        d.start(wait=False)
        assert d.proc.wait(20) == 1
        assert re.search(r"error: \[link\] listen needs ca, cert and key", d.log()), d.log()
    d = Daemon(link_conf(CA, "call1", "servers = 127.0.0.1:5070, sys1.example\n"), role="call",
               general={"module_dir": MODULES})
    with d:
        d.start(wait=False)
        assert d.proc.wait(20) == 1
        assert ("error: [link] servers: 'sys1.example' is not host:port (a name, an IPv4 address "
                "or [an IPv6 address], and a port)") in d.log(), d.log()
    d = Daemon(link_conf(CA, "call1", "servers = 127.0.0.1:1\n").replace("call1.key", "call2.key"),
               role="call", general={"module_dir": MODULES})
    with d:
        d.start(wait=False)
        assert d.proc.wait(20) == 1
        assert re.search(r"error: link: cannot use private key \S+/call2\.key: key values mismatch",
                         d.log()), d.log()


if __name__ == "__main__":
    main([test_show_callservers_lists_both, test_request_reply_order_and_push, test_request_timeout,
          test_bad_peers_are_refused_and_do_not_disturb, test_system_server_killed_and_restarted,
          test_configuration_errors])
