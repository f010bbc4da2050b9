"""Helpers for the voicemail tests: callvoxd (role all: store, SIP driver, voicemail) on
ephemeral loopback ports, the shell, caller audio made as pcaps for sipp to play, what a
caller hears captured from RTP, and tone detection on audio.

Only processes a test started are killed, by PID; waits poll a condition with a deadline.
"""
import json
import math
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import wave

from cvxtest import BUILD, Daemon, free_port, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
SCEN = os.path.join(HERE, "scenarios")
MODULES = os.path.join(BUILD, "lib", "callvox", "modules")
SHELL = os.path.join(BUILD, "bin", "callvox")
SIPP = shutil.which("sipp") or "/usr/bin/sipp"
PROMPTS = "/usr/share/asterisk/sounds/en_US_f_Allison"
RATE = 8000


def have_all():
    return all(os.path.exists(os.path.join(MODULES, m)) for m in ("sip.so", "voicemail.so")) \
        and os.path.exists(SIPP) and os.path.isdir(PROMPTS)


class VmDaemon(Daemon):
    """callvoxd, role all, with [sip:pbx] on 127.0.0.1 and voicemail (pilot 8000)."""

    def __init__(self, vm_extra="", role=None, log_level="info", sip_extra=""):
        self.port = free_port()
        self.mods = tempfile.mkdtemp(prefix="cvx-vmmods-")
        for m in ("sip.so", "voicemail.so"):
            shutil.copy(os.path.join(MODULES, m), self.mods)
        base = 20000 + (free_port() % 20000) * 2 % 38000
        conf = ("[sip:pbx]\nlisten = 127.0.0.1:%d\ntrusted = 127.0.0.1\n"
                "rtp_port_min = %d\nrtp_port_max = %d\n%s[log]\nlevel = %s\n"
                "[voicemail]\npilot = 8000\n%s"
                % (self.port, base, base + 2999, sip_extra, log_level, vm_extra))
        Daemon.__init__(self, conf, role=role, general={"module_dir": self.mods})

    def close(self):
        Daemon.close(self)
        shutil.rmtree(self.mods, ignore_errors=True)

    def shell(self, command):
        """Runs one shell command with --json; returns the parsed document."""
        p = subprocess.run([SHELL, "-s", os.path.join(self.run_dir, "callvox.ctl"), "-j", "-x",
                            command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=30)
        return json.loads(p.stdout.decode())

    def ok(self, command):
        doc = self.shell(command)
        assert doc.get("status") == "ok", (command, doc)
        return doc["result"]

    def messages(self, mailbox, folder="any"):
        return self.ok("message list %s %s" % (mailbox, folder))["messages"]

    def mailbox(self, number):
        return self.ok("mailbox show %s" % number)

    def hang_up_all(self):
        """Hangs up every call from the daemon's side (the shell's 'call hangup')."""
        for c in self.ok("show calls")["calls"]:
            self.ok("call hangup %s" % c["id"])

    def export(self, msg_id):
        """The message's audio as a list of samples (exported by the daemon to a WAV)."""
        path = os.path.join(self.dir, "export-%s.wav" % msg_id)
        self.ok("message export %s %s" % (msg_id, path))
        return read_wav(path)


def read_wav(path):
    with wave.open(path, "rb") as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2, path
        assert w.getframerate() == RATE, (path, w.getframerate())
        data = w.readframes(w.getnframes())
    return list(struct.unpack("<%dh" % (len(data) // 2), data))


# --- G.711 (as spandsp does it) -----------------------------------------------------------

def linear_to_ulaw(x):
    if x < 0:
        x = 0x84 - x
        mask = 0x7F
    else:
        x = 0x84 + x
        mask = 0xFF
    seg = (x | 0xFF).bit_length() - 1 - 7
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((x >> (seg + 3)) & 0xF)) ^ mask


def ulaw_to_linear(u):
    u = ~u & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return 0x84 - t if u & 0x80 else t - 0x84


def prompt_ulaw(name):
    """A recorded prompt as the caller receives it: its samples in mu-law."""
    return bytes(linear_to_ulaw(s) for s in read_wav(os.path.join(PROMPTS, name)))


# --- tones ---------------------------------------------------------------------------------

TONES = (600, 1100, 1700)  # the known sequence a caller leaves (not DTMF, not the 1 kHz beep)


def tone(freq, ms, level=8000):
    n = RATE * ms // 1000
    return [int(level * math.sin(2 * math.pi * freq * i / RATE)) for i in range(n)]


def goertzel(samples, freq):
    k = 2 * math.cos(2 * math.pi * freq / RATE)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + k * s1 - s2, s1
    return s1 * s1 + s2 * s2 - k * s1 * s2


def detect_tones(samples, freqs=TONES + (1000,), win=400):
    """The sequence of tones heard (runs of 50 ms windows where one of freqs clearly
    dominates and the window is loud), collapsed: [600, 1100, 1700]."""
    seq = []
    for i in range(0, len(samples) - win + 1, win):
        w = samples[i:i + win]
        energy = sum(x * x for x in w)
        if energy < win * 500 ** 2:  # quieter than about -36 dBm0: nothing there
            seq.append(None)
            continue
        powers = sorted(((goertzel(w, f), f) for f in freqs), reverse=True)
        # a pure tone puts nearly all its energy at its frequency: p ~ (win/2)^2 * A^2 / ... so
        # compare with the window's energy (Parseval): p / (energy * win / 2) near 1
        top, f = powers[0]
        seq.append(f if top / (energy * win / 2) > 0.6 else None)
    out = []
    for f in seq:
        if f is not None and (not out or out[-1] != f):
            out.append(f)
        elif f is None and out and out[-1] is not None:
            out.append(None)
    return [f for f in out if f is not None]


# --- what callers send: pcaps for sipp's play_pcap_audio -------------------------------------

def tones_ulaw(tone_ms=400):
    """The tone sequence as mu-law: each tone then 200 ms of silence."""
    out = []
    for f in TONES:
        out += tone(f, tone_ms) + [0] * (RATE * 200 // 1000)
    return bytes(linear_to_ulaw(x) for x in out)


def write_caller_pcap(path, pre_ms=1000, digits="#", gap_ms=1200, tone_ms=400, tail_ms=600):
    """A pcap of one RTP stream (PCMU, 20 ms): silence, RFC 4733 digits, silence (the greeting
    ends and the beep plays), the tone sequence TONES with 200 ms gaps, silence."""
    audio = [0] * (RATE * pre_ms // 1000)
    pkts = []  # (pt, marker, payload, seq, ts, advances the clock)
    seq, ts = 1000, 160000

    def add_audio(samples):
        nonlocal seq, ts
        for i in range(0, len(samples) - 159, 160):
            pkts.append((0, 0, bytes(linear_to_ulaw(s) for s in samples[i:i + 160]), seq, ts, 1))
            seq += 1
            ts += 160

    add_audio(audio)
    for d in digits:
        ev = "0123456789*#".index(d)
        for n in range(1, 6):
            end = n == 5
            dur = 160 * n
            payload = struct.pack(">BBH", ev, (0x80 if end else 0) | 10, dur)
            for _rep in range(3 if end else 1):
                pkts.append((101, 1 if n == 1 else 0, payload, seq, ts, 1 if _rep == 0 else 0))
                seq += 1
        ts += 160 * 5
        add_audio([0] * (RATE * 200 // 1000))
    add_audio([0] * (RATE * gap_ms // 1000))
    for f in TONES:
        add_audio(tone(f, tone_ms))
        add_audio([0] * (RATE * 200 // 1000))
    add_audio([0] * (RATE * tail_ms // 1000))
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        t = 0.0
        for pt, marker, payload, s, tstamp, adv in pkts:
            rtp = struct.pack(">BBHII", 0x80, (marker << 7) | pt, s & 0xFFFF, tstamp, 0x1234ABCD)
            rtp += payload
            udp = struct.pack(">HHHH", 6000, 6002, 8 + len(rtp), 0) + rtp
            ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                             socket.inet_aton("127.0.0.1"), socket.inet_aton("127.0.0.1")) + udp
            frame = b"\x00" * 12 + b"\x08\x00" + ip
            sec = int(t)
            fh.write(struct.pack("<IIII", sec, int((t - sec) * 1e6), len(frame), len(frame)))
            fh.write(frame)
            t += 0.02 * adv
    return int(t * 1000)


def write_scenario(name, **subst):
    """A copy of scenario name with @KEY@ replaced by subst's values (FROM, the calling
    number, defaults to 'sipp', which is not a number)."""
    subst.setdefault("FROM", "sipp")
    with open(os.path.join(SCEN, name)) as f:
        text = f.read()
    for k, v in subst.items():
        text = text.replace("@%s@" % k, str(v))
    fd, path = tempfile.mkstemp(prefix="cvx-vmscen-", suffix=".xml")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def sipp(scenario, port, service, calls=1, limit=None, rate=None, keys=None, timeout=90,
         background=False):
    cwd = tempfile.mkdtemp(prefix="cvx-sipp-")
    cmd = [SIPP, "-sf", scenario, "-i", "127.0.0.1", "-p", str(free_port()), "-mi", "127.0.0.1",
           "-mp", str(free_port()), "-m", str(calls), "-s", service, "-nostdin", "-trace_err",
           "-timeout", "%ds" % max(5, timeout - 5)]
    if limit:
        cmd += ["-l", str(limit)]
    if rate:
        cmd += ["-r", str(rate)]
    for k, v in (keys or {}).items():
        cmd += ["-key", k, str(v)]
    cmd += ["127.0.0.1:%d" % port]
    p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    p.cwd = cwd
    if background:
        return p
    return finish(p, timeout)


def finish(p, timeout=90):
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    out = out.decode("utf-8", "replace")
    for f in sorted(os.listdir(p.cwd)):
        if f.endswith("_errors.log"):
            with open(os.path.join(p.cwd, f), "rb") as fh:
                out += "\n--- %s\n%s" % (f, fh.read().decode("utf-8", "replace")[-4000:])
    shutil.rmtree(p.cwd, ignore_errors=True)
    return p.returncode, out


def listen_call(d, service, div, calls=1):
    """A caller that only listens (its SDP names a socket of this test) until the daemon hangs
    up; returns (sipp rc, sipp output, mu-law bytes received)."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    scen = write_scenario("uac_listen_div.xml", PORT=rx.getsockname()[1])
    p = sipp(scen, d.port, service, keys={"div": div}, background=True)
    audio = bytearray()
    rx.settimeout(0.3)
    while True:
        try:
            data, _src = rx.recvfrom(2048)
        except socket.timeout:
            if p.poll() is not None:
                break
            continue
        if len(data) > 12 and data[1] & 0x7F == 0:
            audio += data[12:]
    rc, out = finish(p)
    rx.close()
    os.unlink(scen)
    return rc, out, bytes(audio)


# --- a subscriber calling in: RTP and RFC 4733 digits sent by the test itself ---------------

class Keypad(threading.Thread):
    """Sends PCMU silence every 20 ms from sock to the daemon's RTP port, with RFC 4733 digits
    queued by press(); the daemon latches on this socket, which is also where the caller's
    SDP points, so everything it says arrives on sock."""

    def __init__(self, sock, port):
        threading.Thread.__init__(self, daemon=True)
        self.sock, self.dest = sock, ("127.0.0.1", port)
        self.queue = []
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.seq, self.ts = 5000, 800000
        self.busy = False  # a digit or queued audio is being sent

    def idle(self):
        """True once everything queued has been sent."""
        with self.lock:
            return not self.queue and not self.busy

    def press(self, digits):
        with self.lock:
            self.queue.extend(digits)

    def send_audio(self, ulaw):
        """Queues audio (mu-law bytes) to send, in order with the digits."""
        with self.lock:
            self.queue.extend(ulaw[i:i + 160] for i in range(0, len(ulaw) - 159, 160))

    def stop(self):
        self.stopped.set()
        self.join(5)

    def _send(self, pt, payload, marker=0):
        self.sock.sendto(struct.pack(">BBHII", 0x80, (marker << 7) | pt, self.seq & 0xFFFF,
                                     self.ts & 0xFFFFFFFF, 0x5151ABCD) + payload, self.dest)
        self.seq += 1

    def run(self):
        nxt = time.monotonic()
        event = None  # (code, packets sent)
        silence = bytes([0xFF]) * 160
        while not self.stopped.is_set():
            frame = None
            if event is None:
                with self.lock:
                    d = self.queue.pop(0) if self.queue else None
                    self.busy = d is not None
                if isinstance(d, bytes):
                    frame = d
                elif d is not None:
                    event = ["0123456789*#".index(d), 0]
            if frame is not None:
                self._send(0, frame)
                self.ts += 160
            elif event is not None:
                event[1] += 1
                end = event[1] == 5
                payload = struct.pack(">BBH", event[0], (0x80 if end else 0) | 10, 160 * event[1])
                for _ in range(3 if end else 1):
                    self._send(101, payload, 1 if event[1] == 1 else 0)
                if end:
                    self.ts += 160 * 5
                    event = None
                    # 100 ms of silence between digits
                    for _ in range(5):
                        nxt += 0.02
                        time.sleep(max(0, nxt - time.monotonic()))
                        self._send(0, silence)
                        self.ts += 160
            else:
                self._send(0, silence)
                self.ts += 160
            nxt += 0.02
            time.sleep(max(0, nxt - time.monotonic()))


def subscriber_call(d, steps, timeout=60, div=None, refer=None, calling="sipp"):
    """Calls the pilot as calling (by default 'sipp', not a number, so not a mailbox), directly
    or, with div, forwarded (a Diversion header).  steps is a list of (condition on the audio
    heard so far, digits to press or a function of the Keypad), taken in order; the call ends
    when the daemon hangs up.  With refer, the daemon must transfer the call to that number
    (the caller accepts the REFER, checks that it names sip:<refer>@, reports success and waits
    for the BYE).  Returns the mu-law bytes heard."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    keys = {}
    if refer is not None:
        scen = write_scenario("uac_listen_refer.xml", PORT=rx.getsockname()[1], TARGET=refer,
                              FROM=calling,
                              DIVLINE="Diversion: [div]" if div else "X-Callvox-Test: refer")
    elif div:
        scen = write_scenario("uac_listen_div.xml", PORT=rx.getsockname()[1], FROM=calling)
    else:
        scen = write_scenario("uac_listen.xml", PORT=rx.getsockname()[1], FROM=calling)
    if div:
        keys["div"] = div
    p = sipp(scen, d.port, "8000", background=True, timeout=timeout, keys=keys)
    audio = bytearray()
    pad = None
    start = time.monotonic()
    deadline = start + timeout
    try:
        port = wait_for(lambda: (lambda c: int(c[0]["port"]) if c else None)(
            d.ok("show calls media")["calls"]), 15, "the call's RTP port")
        pad = Keypad(rx, port)
        pad.start()
        rx.settimeout(0.1)
        steps = list(steps)
        checked = 0.0
        while time.monotonic() < deadline:
            try:
                data, _src = rx.recvfrom(2048)
                if len(data) > 12 and data[1] & 0x7F == 0:
                    audio += data[12:]
            except socket.timeout:
                if p.poll() is not None:
                    break
            # Check the conditions five times a second (they search everything heard so far).
            if steps and time.monotonic() - checked > 0.2:
                checked = time.monotonic()
                if steps[0][0](bytes(audio)):
                    action = steps.pop(0)[1]
                    if callable(action):
                        print("  %.1fs: %s" % (time.monotonic() - start, action.__doc__))
                        action(pad)
                    else:
                        print("  %.1fs: pressing %s" % (time.monotonic() - start, action))
                        pad.press(action)
        assert not steps, "the call ended before every step was taken (%d left)" % len(steps)
    finally:
        global last_audio
        last_audio = bytes(audio)  # for a failing test's post-mortem
        if pad:
            pad.stop()
        rc, out = finish(p)
        rx.close()
        os.unlink(scen)
    assert rc == 0, out
    return bytes(audio)


last_audio = b""
