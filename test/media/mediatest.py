"""Helpers for the media integration tests and the RTP benchmark: callvoxd with one SIP
instance on ephemeral loopback ports and the test-only mediaapp flow, sipp runs with the media
scenarios of this directory, the pcaps sip-tester ships, and the shell's JSON output.

Only processes a test started are killed, by PID; waits poll a condition with a deadline.
"""
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile

from cvxtest import BUILD, CALLVOXD, Daemon, free_port, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
SCEN = os.path.join(HERE, "scenarios")
MODULES = os.path.join(BUILD, "lib", "callvox", "modules")
TEST_MODULES = os.environ.get("CVX_TEST_MODULE_DIR", os.path.join(BUILD, "test", "modules"))
SHELL = os.path.join(BUILD, "bin", "callvox")
SIPP = shutil.which("sipp") or "/usr/bin/sipp"


def pcap_dir():
    """Where sip-tester installed its pcaps (dpkg -L sip-tester), or None."""
    try:
        out = subprocess.run(["dpkg", "-L", "sip-tester"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, timeout=30).stdout.decode()
    except (OSError, subprocess.SubprocessError):
        out = ""
    for line in out.splitlines():
        if line.endswith("/g711a.pcap"):
            return os.path.dirname(line)
    return None


def have_sip():
    return os.path.exists(os.path.join(MODULES, "sip.so"))


class MediaDaemon(Daemon):
    """callvoxd with [sip:pbx] on 127.0.0.1 (UDP+TCP) and the mediaapp flow."""

    def __init__(self, sip_extra="", extra_conf="", log_level="info", general=None):
        self.port = free_port()
        self.mods = tempfile.mkdtemp(prefix="cvx-mediamods-")
        for m in ("sip.so",):
            shutil.copy(os.path.join(MODULES, m), self.mods)
        shutil.copy(os.path.join(TEST_MODULES, "mediaapp.so"), self.mods)
        # RTP ports: a window in 20000-59999 chosen from an ephemeral port, so parallel tests
        # rarely meet; the allocator skips ports in use anyway.
        base = 20000 + (free_port() % 20000) * 2 % 38000
        conf = ("[sip:pbx]\nlisten = 127.0.0.1:%d\ntrusted = 127.0.0.1\n"
                "rtp_port_min = %d\nrtp_port_max = %d\n%s[log]\nlevel = %s\n%s"
                % (self.port, base, base + 2999, sip_extra, log_level, extra_conf))
        g = {"module_dir": self.mods}
        if general:
            g.update(general)
        Daemon.__init__(self, conf, general=g)

    def close(self):
        Daemon.close(self)
        shutil.rmtree(self.mods, ignore_errors=True)

    def ctl(self, command):
        """Runs a shell command with --json; returns the result object."""
        p = subprocess.run([SHELL, "-s", os.path.join(self.run_dir, "callvox.ctl"), "-j", "-x",
                            command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        doc = json.loads(p.stdout.decode())
        assert doc.get("status") == "ok", doc
        return doc["result"]

    def recorded(self, timeout=30, count=1):
        """The 'recorded' lines of mediaapp: [(call, samples, loud_frames, energy, end)]."""
        rx = r"mediaapp: (\S+) recorded (\d+) samples, (\d+) loud frames, energy (\d+) \((\w+)\)"
        self.wait_log(rx, timeout=timeout, count=count)
        return [(c, int(s), int(l), int(e), end) for c, s, l, e, end in re.findall(rx, self.log())]

    def digits(self):
        return re.findall(r"mediaapp: \S+ digit (\S) \((\w+)\)", self.log())


def write_scenario(name, **subst):
    """Copies scenarios/name to a temporary file with @KEY@ replaced; returns its path."""
    with open(os.path.join(SCEN, name)) as f:
        text = f.read()
    for k, v in subst.items():
        text = text.replace("@%s@" % k, str(v))
    fd, path = tempfile.mkstemp(prefix="cvx-scen-", suffix=".xml")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def sipp(scenario, port, service, calls=1, rate=None, limit=None, args=(), timeout=60,
         background=False):
    """Runs sipp (UDP) against 127.0.0.1:port; returns (rc, output) or the Popen object."""
    cwd = tempfile.mkdtemp(prefix="cvx-sipp-")
    cmd = [SIPP, "-sf", scenario, "-i", "127.0.0.1", "-p", str(free_port()), "-mi", "127.0.0.1",
           "-mp", str(free_port()), "-m", str(calls), "-s", service, "-nostdin", "-trace_err",
           "-timeout", "%ds" % max(5, timeout - 5)]
    if rate:
        cmd += ["-r", str(rate)]
    if limit:
        cmd += ["-l", str(limit)]
    cmd += list(args) + ["127.0.0.1:%d" % port]
    if background:
        p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        p.cwd = cwd
        return p
    p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    out = p.stdout.decode("utf-8", "replace") + sipp_errors(cwd)
    shutil.rmtree(cwd, ignore_errors=True)
    return p.returncode, out


def sipp_errors(cwd):
    out = ""
    for f in sorted(os.listdir(cwd)):
        if f.endswith("_errors.log"):
            with open(os.path.join(cwd, f), "rb") as fh:
                out += "\n--- %s\n%s" % (f, fh.read().decode("utf-8", "replace")[-4000:])
    return out


def finish(p, timeout=60):
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    out = out.decode("utf-8", "replace") + sipp_errors(p.cwd)
    shutil.rmtree(p.cwd, ignore_errors=True)
    return p.returncode, out


# --- G.711 and pcaps ----------------------------------------------------------------------

def alaw_to_linear(a):
    """ITU-T G.711 A-law decoding (as spandsp does it)."""
    a ^= 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if a & 0x80 else -t


def ulaw_to_linear(u):
    """ITU-T G.711 mu-law decoding (as spandsp does it)."""
    u = ~u & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return 0x84 - t if u & 0x80 else t - 0x84


def pcap_rtp(path):
    """The RTP payloads of a pcap (Ethernet/IPv4/UDP): [(pt, seq, ts, ssrc, payload)]."""
    with open(path, "rb") as f:
        d = f.read()
    off, out = 24, []
    while off + 16 <= len(d):
        incl = struct.unpack("<I", d[off + 8:off + 12])[0]
        pkt = d[off + 16:off + 16 + incl]
        off += 16 + incl
        rtp = pkt[42:]
        pt = rtp[1] & 0x7F
        seq, ts, ssrc = struct.unpack(">HII", rtp[2:12])
        out.append((pt, seq, ts, ssrc, rtp[12:]))
    return out


def rtp_packet(pt, seq, ts, ssrc, payload, marker=0):
    return struct.pack(">BBHII", 0x80, (marker << 7) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF,
                       ssrc) + payload


def udp_socket():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    return s


__all__ = ["MediaDaemon", "write_scenario", "sipp", "finish", "pcap_dir", "have_sip",
           "alaw_to_linear", "ulaw_to_linear", "pcap_rtp", "rtp_packet", "udp_socket", "wait_for", "CALLVOXD"]
