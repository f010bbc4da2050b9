"""Call servers and a system server as separate processes (issue 9): 1 system server and 2 call
servers on loopback, joined by the TLS link (certificates from tools/ca/callvox-ca), with sipp
leaving messages through the SIP driver and the voicemail flow of each call server.

 - deposits on both call servers reach the system server's store while the link is up;
 - the system server is killed with SIGKILL during deposits: both call servers keep answering
   and take the messages into their spools (`show spool`); restarted, it receives every
   spooled message exactly once (counted in its store, not from SIP results), with its audio
   intact (the caller's tone sequence found in the exported audio, `store verify` clean);
 - a call server killed with SIGKILL while it forwards its spool, and restarted, loses and
   duplicates nothing.

Only processes this test started are killed, by PID; waits poll with deadlines.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

from cvxtest import SRC, Daemon, free_port, main, wait_for
from lictest import DONGLE_SECRET, sim_file, write_license
from vmtest import SHELL, TONES, VmDaemon, detect_tones, finish, have_all, read_wav, sipp, \
    write_caller_pcap, write_scenario

CA_TOOL = os.path.join(SRC, "tools", "ca", "callvox-ca")
DIV = "<sip:%s@127.0.0.1>;reason=no-answer"


def shell(d, command):
    p = subprocess.run([SHELL, "-s", os.path.join(d.run_dir, "callvox.ctl"), "-j", "-x", command],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    try:
        return json.loads(p.stdout.decode())
    except ValueError:
        return {"status": "error", "output": p.stdout.decode("utf-8", "replace")}


def restart(d, starts, env=None):
    """Starts d again; starts is how many times it has started before (its log is kept)."""
    d.start(wait=False, extra_env=env)
    d.wait_log(r"callvoxd \S+ started", timeout=60, count=starts + 1)


def ok(d, command):
    doc = shell(d, command)
    assert doc.get("status") == "ok", (command, doc)
    return doc["result"]


class Cluster:
    """A CA, a system server and two call servers (not started)."""

    def __init__(self, log_level="info", sys_extra=""):
        self.tmp = tempfile.mkdtemp(prefix="cvx-split-")
        self.pki = os.path.join(self.tmp, "pki")
        for args in (["init", self.pki], ["issue", self.pki, "sys"], ["issue", self.pki, "cs1"],
                     ["issue", self.pki, "cs2"]):
            subprocess.run([CA_TOOL] + args, check=True, stdout=subprocess.DEVNULL)
        self.port = free_port(kind=1)  # SOCK_STREAM
        self.sys = Daemon(self.link_conf("sys", listen=True) + "[log]\nlevel = %s\n" % log_level +
                          sys_extra, role="system", name="sys")
        self.sys_env = None
        self.cs = [VmDaemon(role="call", vm_extra="\n" + self.link_conf(n), log_level=log_level)
                   for n in ("cs1", "cs2")]

    def link_conf(self, name, listen=False):
        where = ("listen = 127.0.0.1:%d\n" % self.port) if listen else \
            ("servers = 127.0.0.1:%d\nreconnect_max_ms = 300\n" % self.port)
        return ("[link]\n%sca = %s/ca.pem\ncert = %s/%s.pem\nkey = %s/%s.key\nname = %s\n"
                "heartbeat_ms = 200\ntimeout_ms = 1500\n"
                % (where, self.pki, self.pki, name, self.pki, name, name))

    def start(self):
        self.sys.start(extra_env=self.sys_env)
        for c in self.cs:
            c.start()
            c.wait_log(r"voicemail: \d+ prompts loaded", timeout=60)
        for c in self.cs:
            c.wait_log(r"link: up to system server", timeout=60)

    def close(self):
        for c in self.cs:
            c.close()
        self.sys.close()
        if not os.environ.get("CVX_KEEP"):
            shutil.rmtree(self.tmp, ignore_errors=True)


def deposit_scenario():
    fd, pcap = tempfile.mkstemp(prefix="cvx-caller-", suffix=".pcap")
    os.close(fd)
    ms = write_caller_pcap(pcap)
    return write_scenario("uac_deposit.xml", PCAP=pcap, MS=ms + 300), pcap


def messages(d, mailbox):
    return ok(d, "message list %s any" % mailbox)["messages"]


def spool(d):
    return ok(d, "show spool")["spool"]


def check_audio(sysd, msgs):
    for m in msgs:
        path = os.path.join(sysd.dir, "export-%s.wav" % m["id"])
        ok(sysd, "message export %s %s" % (m["id"], path))
        heard = detect_tones(read_wav(path))
        assert heard == list(TONES), (m, heard)
        os.unlink(path)
    doc = shell(sysd, "store verify")
    assert doc.get("status") == "ok", doc  # every blob matches its SHA-256, counts agree


SCENARIO = []  # (scenario, pcap): made once, removed at exit


def deposit(c, mailbox, calls, background=False, rate=None):
    """sipp leaving calls messages for mailbox on call server c; returns (rc, output), or the
    process when background."""
    if not SCENARIO:
        SCENARIO.append(deposit_scenario())
    return sipp(SCENARIO[0][0], c.port, "8000", calls=calls, limit=calls, rate=rate or 20,
                keys={"div": DIV % mailbox}, timeout=120, background=background)


def test_system_server_killed_during_deposits():
    cl = Cluster()
    try:
        cl.start()
        ok(cl.sys, "mailbox add 1000 Alice Example")
        ok(cl.sys, "mailbox add 2000 Bob Example")
        # link up: both call servers deposit into the system server's store
        for c, mb in zip(cl.cs, ("1000", "2000")):
            rc, out = deposit(c, mb, 2)
            assert rc == 0, out
        wait_for(lambda: len(messages(cl.sys, "1000")) == 2 and len(messages(cl.sys, "2000")) == 2,
                 30, "4 messages on the system server")
        assert spool(cl.cs[0]) == [] and spool(cl.cs[1]) == []

        # SIGKILL the system server while 6 callers on each call server are leaving messages
        procs = [deposit(c, mb, 6, background=True, rate=3)
                 for c, mb in zip(cl.cs, ("1000", "2000"))]
        wait_for(lambda: len(messages(cl.sys, "1000")) + len(messages(cl.sys, "2000")) >= 5,
                 30, "some of the new messages on the system server")
        cl.sys.kill()
        for p in procs:
            rc, out = finish(p, 120)
            assert rc == 0, out  # every caller was answered and heard the whole flow
        # ... and more callers while it is away: answered, and spooled
        for c, mb in zip(cl.cs, ("1000", "2000")):
            rc, out = deposit(c, mb, 3)
            assert rc == 0, out
        depth = [len(spool(c)) for c in cl.cs]
        assert depth[0] >= 3 and depth[1] >= 3, depth
        for c in cl.cs:
            for row in spool(c):
                assert row["bytes"] > 0 and row["mailbox"] in ("1000", "2000"), row

        # restarted: every spooled message arrives, exactly once, intact
        restart(cl.sys, 1)
        for c in cl.cs:
            wait_for(lambda: spool(c) == [], 60, "the spool of %s to empty" % c.conf_path)
        m1, m2 = messages(cl.sys, "1000"), messages(cl.sys, "2000")
        assert len(m1) == 2 + 6 + 3, len(m1)
        assert len(m2) == 2 + 6 + 3, len(m2)
        ids = [m["id"] for m in m1 + m2]
        assert len(set(ids)) == len(ids)
        check_audio(cl.sys, m1 + m2)
        for c in cl.cs:
            assert c.stop() == 0
        assert cl.sys.stop() == 0
    finally:
        cl.close()


def test_call_server_killed_mid_forward():
    N = 24  # spooled messages; forwarding them takes long enough to be killed in the middle
    cl = Cluster()
    try:
        cl.start()
        ok(cl.sys, "mailbox add 3000 Carol Example")
        cs = cl.cs[0]
        rc, out = deposit(cs, "3000", 1)
        assert rc == 0, out
        wait_for(lambda: len(messages(cl.sys, "3000")) == 1, 30, "the first message")
        assert cl.sys.stop() == 0
        rc, out = deposit(cs, "3000", N, rate=50)
        assert rc == 0, out
        assert len(spool(cs)) == N
        restart(cl.sys, 1)
        cs.wait_log(r"spool: message \S+ for mailbox 3000 forwarded", timeout=30)
        cs.kill()  # SIGKILL while it forwards
        forwarded = len(messages(cl.sys, "3000")) - 1
        print("call server killed after %d of %d spooled messages were forwarded" % (forwarded, N))
        assert 0 < forwarded < N, forwarded  # it was killed in the middle
        restart(cs, 1)
        wait_for(lambda: spool(cs) == [], 60, "the spool to empty after the restart")
        msgs = messages(cl.sys, "3000")
        assert len(msgs) == N + 1, (len(msgs), forwarded)
        assert len(set(m["id"] for m in msgs)) == N + 1
        check_audio(cl.sys, msgs)
        assert cs.stop() == 0
        assert cl.sys.stop() == 0
    finally:
        cl.close()


def test_deposits_spooled_while_the_licence_is_not_proven():
    """Issue 12: a system server whose licence proof fails refuses new messages; the call
    servers keep answering, raise an alarm and spool the messages, which arrive once the
    system server is restarted with its dongle."""
    tmp = tempfile.mkdtemp(prefix="cvx-split-lic-")
    lic = write_license(tmp, ports=20, mailboxes=10)
    sim = sim_file(tmp, "absent")
    cl = Cluster(sys_extra="[license]\nfile = %s\nprovider = usb\n" % lic)
    cl.sys_env = {"CVX_LICENSE_USB_SIM": sim}
    try:
        cl.start()
        cl.sys.wait_log(r"licence T-0001 not proven by usb: no dongle found")
        ok(cl.sys, "mailbox add 3100 Dana Example")
        cs = cl.cs[0]
        cs.wait_log(r"licence alarm: the system server refuses new messages", timeout=30)
        rc, out = deposit(cs, "3100", 2)
        assert rc == 0, out  # the callers were answered and left their messages
        assert len(spool(cs)) == 2
        assert messages(cl.sys, "3100") == []
        cs.wait_log(r"store: the system server refuses new messages \(licence T-0001 not "
                    r"proven by usb: no dongle found")
        # The dongle is back; the proof is made at boot: restart the system server.
        sim_file(tmp, "secret " + DONGLE_SECRET)
        assert cl.sys.stop() == 0
        restart(cl.sys, 1, env=cl.sys_env)
        cl.sys.wait_log(r"proven by usb")
        wait_for(lambda: spool(cs) == [], 60, "the spool to empty")
        msgs = messages(cl.sys, "3100")
        assert len(msgs) == 2 and len(set(m["id"] for m in msgs)) == 2, msgs
        check_audio(cl.sys, msgs)
        cs.wait_log(r"licence: the system server accepts new messages again", timeout=30)
        for c in cl.cs:
            assert c.stop() == 0
        assert cl.sys.stop() == 0
    finally:
        cl.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if not have_all() or not os.path.exists(CA_TOOL):
        print("SKIP: needs sip.so, voicemail.so, sipp, the prompt set and tools/ca/callvox-ca")
        sys.exit(77)
    try:
        main([test_system_server_killed_during_deposits, test_call_server_killed_mid_forward,
              test_deposits_spooled_while_the_licence_is_not_proven])
    finally:
        for path in SCENARIO[0] if SCENARIO else ():
            os.unlink(path)
