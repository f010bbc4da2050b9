"""Helpers for the SIP driver's integration tests: a daemon with a [sip:pbx] instance on
ephemeral loopback ports, sipp runs with scenario files from this directory, and a raw socket
sender for messages sipp cannot carry (NUL bytes, broken framing).

Only processes a test started are killed, by PID; waits poll a condition with a deadline.
"""
import os
import random
import re
import shutil
import socket
import subprocess
import tempfile
import time

from cvxtest import CALLVOXD, Daemon, free_port, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
SCEN = os.path.join(HERE, "scenarios")
MODULES = os.path.join(os.path.dirname(CALLVOXD), "..", "lib", "callvox", "modules")
TEST_MODULES = os.environ.get("CVX_TEST_MODULE_DIR", "")
DATA = os.environ.get("CVX_TEST_DATA", os.path.join(HERE, "..", "data"))
SIPP = shutil.which("sipp") or "/usr/bin/sipp"


def module_dir():
    """A module directory with sip, echo and the test-only sipapp."""
    tmp = tempfile.mkdtemp(prefix="cvx-sipmods-")
    for m in ("sip.so", "echo.so"):
        shutil.copy(os.path.join(MODULES, m), tmp)
    app = os.path.join(TEST_MODULES, "sipapp.so")
    if os.path.exists(app):
        shutil.copy(app, tmp)
    return tmp


class SipDaemon(Daemon):
    """callvoxd with one SIP instance "pbx" listening on UDP+TCP 127.0.0.1 and [::1]."""

    def __init__(self, sip_extra="", echo=("100",), trusted=("127.0.0.1", "::1"), v6=True,
                 extra_conf="", log_level="info"):
        self.port = free_port()
        self.mods = module_dir()
        sip = "[sip:pbx]\nlisten = 127.0.0.1:%d\n" % self.port
        if v6:
            sip += "listen = [::1]:%d\n" % self.port
        for t in trusted:
            sip += "trusted = %s\n" % t
        # RTP ports below the kernel's ephemeral range, a wide random window: other tests may
        # hold many RTP ports at the same time.
        rtp = random.randrange(10000, 28000, 2)
        sip += "rtp_port_min = %d\nrtp_port_max = %d\n" % (rtp, rtp + 3999)
        sip += sip_extra
        conf = sip + "[log]\nlevel = %s\n" % log_level
        if echo:
            conf += "[echo]\n" + "".join("number = %s\n" % n for n in echo)
        conf += extra_conf
        # Role "call": the SIP driver's processes (no message store is needed here).
        Daemon.__init__(self, conf, role="call", general={"module_dir": self.mods})

    def start(self, *a, **kw):
        CURRENT.append(self)
        return Daemon.start(self, *a, **kw)

    def close(self):
        if self in CURRENT:
            CURRENT.remove(self)
        Daemon.close(self)
        shutil.rmtree(self.mods, ignore_errors=True)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def count(self, pattern):
        return len(re.findall(pattern, self.log()))


class SippResult:
    def __init__(self, rc, out, cwd):
        self.rc, self.out, self.cwd = rc, out, cwd

    def __repr__(self):
        return "sipp rc=%s\n%s" % (self.rc, self.out[-3000:])


def sipp(scenario, target_port, service="100", host="127.0.0.1", local_port=None, calls=1,
         keys=None, args=(), timeout=30, background=False, transport="u1"):
    """Runs sipp with scenario (a file in scenarios/, or a built-in name such as 'uac')."""
    cwd = tempfile.mkdtemp(prefix="cvx-sipp-")
    local_port = local_port or free_port(host=host)
    target = "[%s]:%d" % (host, target_port) if ":" in host else "%s:%d" % (host, target_port)
    cmd = [SIPP]
    if scenario.endswith(".xml"):
        cmd += ["-sf", os.path.join(SCEN, scenario)]
    else:
        cmd += ["-sn", scenario]
    cmd += ["-i", host, "-p", str(local_port), "-m", str(calls), "-s", service, "-t", transport,
            "-timeout", "%ds" % (timeout - 5), "-nostdin", "-trace_err", "-trace_msg",
            "-max_recv_loops", "100"]
    for k, v in (keys or {}).items():
        cmd += ["-key", k, str(v)]
    cmd += list(args) + [target]
    if background:
        p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        p.cwd = cwd
        p.local_port = local_port
        return p
    p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    out = p.stdout.decode("utf-8", "replace")
    for f in sorted(os.listdir(cwd)):
        if f.endswith("_errors.log") or f.endswith("_messages.log"):
            with open(os.path.join(cwd, f), "rb") as fh:
                out += "\n--- %s\n%s" % (f, fh.read().decode("utf-8", "replace")[-6000:])
    shutil.rmtree(cwd, ignore_errors=True)
    return SippResult(p.returncode, out, cwd)


def finish_bg(p, timeout=30):
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    out = out.decode("utf-8", "replace")
    for f in sorted(os.listdir(p.cwd)):
        if f.endswith("_errors.log") or f.endswith("_messages.log"):
            with open(os.path.join(p.cwd, f), "rb") as fh:
                out += "\n--- %s\n%s" % (f, fh.read().decode("utf-8", "replace")[-6000:])
    shutil.rmtree(p.cwd, ignore_errors=True)
    return SippResult(p.returncode, out, p.cwd)


CURRENT = []  # the daemons alive, for failure messages


def assert_sipp_ok(r, what):
    if r.rc != 0:
        logs = "".join("\n--- callvoxd log\n%s" % "\n".join(
            l for l in d.log().splitlines() if "sofia-sip" not in l)[-3000:] for d in CURRENT)
        raise AssertionError("%s: %r%s" % (what, r, logs))


# --- raw sockets ------------------------------------------------------------------------

def via_port(msg):
    """The port of the top Via's sent-by (5060 when none), where UDP responses go."""
    m = re.search(rb"^(?:Via|v)[ \t]*:[ \t]*SIP[ \t]*/[ \t]*2\.0[ \t]*/[ \t]*\w+[ \t\r\n]+"
                  rb"([^;,\r\n]+)", msg, re.I | re.M)
    if not m:
        return 5060
    hp = m.group(1).strip()
    pm = re.search(rb"\]:(\d+)$", hp) if hp.startswith(b"[") else re.search(rb":(\d+)$", hp)
    return int(pm.group(1)) if pm else 5060


def udp_exchange(msg, port, settle=0.6, wait_first=1.5):
    """Sends msg over UDP from a fresh loopback address at the Via port, so responses (sent to
    the Via's port at the source address) come back to us; returns the responses' bytes."""
    vp = via_port(msg)
    for _ in range(50):
        addr = "127.%d.%d.%d" % (random.randint(1, 254), random.randint(0, 255), random.randint(2, 254))
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind((addr, vp))
            break
        except OSError:
            s.close()
    else:
        raise AssertionError("no free loopback address for port %d" % vp)
    try:
        s.sendto(msg, ("127.0.0.1", port))
        return _collect_udp(s, settle, wait_first)
    finally:
        s.close()


def _collect_udp(s, settle, wait_first):
    out = []
    deadline = time.monotonic() + wait_first
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return out
        s.settimeout(left)
        try:
            data, _ = s.recvfrom(65536)
        except socket.timeout:
            return out
        out.append(data)
        # After a final response, wait a little for retransmissions or more responses.
        deadline = time.monotonic() + settle if status_of(data) >= 200 else deadline


def tcp_exchange(msg, port, wait=1.5):
    """Sends msg on a new TCP connection; returns (responses bytes, closed_by_peer)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=3)
    buf = b""
    closed = False
    try:
        s.sendall(msg)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                d = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not d:
                closed = True
                break
            buf += d
            if status_of(buf) >= 200:
                deadline = min(deadline, time.monotonic() + 0.3)
    finally:
        s.close()
    return buf, closed


def status_of(data):
    m = re.match(rb"SIP/2\.0 (\d{3}) ", data)
    return int(m.group(1)) if m else 0


def statuses(responses):
    return [status_of(r) for r in responses]
