"""SIP over TLS: a [sip:pbx] instance with a tls: listener and a certificate, called by a real
TLS client (Python's ssl module speaking SIP over the stream: Debian 12's sipp is built
without TLS, its -t has no l1).  The client checks the daemon's certificate against the test
CA (test/sip/tls/cafile.pem, IP 127.0.0.1 in subjectAltName) and places a whole call:
INVITE, 100/200 with an SDP answer, ACK, BYE, 200.  Clients that fail the handshake (plain
text on the TLS port, a client that does not trust the certificate, a handshake left half
done, one that closes in the middle) do not disturb the daemon: a call placed while such a
client holds its connection open completes, and so does one afterwards."""
import os
import random
import re
import socket
import ssl
import threading
import time

from cvxtest import main, free_port, wait_for
from siptest import SipDaemon

TLS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tls")
CALL_ENDED = r"echo: call ended \(normal\)"


class TlsDaemon(SipDaemon):
    def start(self, *a, **kw):
        # Under ASan, the slow unwinder: Sofia-SIP's TLS leak (test/lsan.supp) is suppressed by
        # its Sofia-SIP frames, which the fast unwinder cannot see through libssl.
        if "ASAN_OPTIONS" in os.environ:
            kw["extra_env"] = {"ASAN_OPTIONS": os.environ["ASAN_OPTIONS"] +
                               ":fast_unwind_on_malloc=0:malloc_context_size=40"}
        if not kw.get("wait", True):
            return SipDaemon.start(self, *a, **kw)
        # Other test processes on this machine may take a port between free_port() and the
        # bind: then the daemon says so in one line and the test moves to fresh ports.
        for attempt in range(3):
            try:
                return SipDaemon.start(self, *a, **kw)
            except AssertionError:
                if attempt == 2 or "the address is in use" not in self.log():
                    raise
                old = (self.port, self.tls_port)
                self.port, self.tls_port = free_port(), free_port(socket.SOCK_STREAM)
                text = open(self.conf_path).read()
                text = text.replace("127.0.0.1:%d\n" % old[0], "127.0.0.1:%d\n" % self.port)
                text = text.replace("tls:127.0.0.1:%d" % old[1], "tls:127.0.0.1:%d" % self.tls_port)
                open(self.conf_path, "w").write(text)


def tls_daemon(extra=""):
    port = free_port(socket.SOCK_STREAM)
    d = TlsDaemon(v6=False, sip_extra="listen = tls:127.0.0.1:%d\ntls_cert_dir = %s\n%s"
                  % (port, TLS_DIR, extra))
    d.tls_port = port
    return d


def client_context():
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=os.path.join(TLS_DIR,
                                                                                   "cafile.pem"))
    ctx.check_hostname = True
    return ctx


class SipStream:
    """One SIP connection over TLS: writes requests, reads messages framed by Content-Length."""

    def __init__(self, port, ctx=None):
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.s = (ctx or client_context()).wrap_socket(raw, server_hostname="127.0.0.1")
        self.buf = b""
        self.local = self.s.getsockname()

    def send(self, text):
        self.s.sendall(text.replace("\n", "\r\n").encode())

    def read(self, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end >= 0:
                head = self.buf[:head_end].decode("utf-8", "replace")
                m = re.search(r"^(?:Content-Length|l)\s*:\s*(\d+)", head, re.I | re.M)
                n = int(m.group(1)) if m else 0
                if len(self.buf) >= head_end + 4 + n:
                    body = self.buf[head_end + 4:head_end + 4 + n].decode("utf-8", "replace")
                    self.buf = self.buf[head_end + 4 + n:]
                    return head, body
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no complete SIP message within %ss; have %r"
                                     % (timeout, self.buf[:500]))
            self.s.settimeout(left)
            data = self.s.recv(65536)
            if not data:
                raise AssertionError("the daemon closed the TLS connection; have %r" % self.buf)
            self.buf += data

    def response(self, method, timeout=10):
        """The next final response to method (provisional ones are skipped)."""
        while True:
            head, body = self.read(timeout)
            m = re.match(r"SIP/2\.0 (\d{3}) ", head)
            assert m, "expected a response, got:\n%s" % head
            cseq = re.search(r"^CSeq\s*:\s*\d+\s+(\S+)", head, re.I | re.M)
            assert cseq and cseq.group(1) == method, head
            if int(m.group(1)) >= 200:
                return int(m.group(1)), head, body

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def header(head, name):
    m = re.search(r"^%s\s*:\s*(.*)$" % name, head, re.I | re.M)
    return m.group(1).strip() if m else None


def tls_call(d, number="100"):
    """A whole call over TLS; returns the 200's SDP body.  Asserts every step."""
    c = SipStream(d.tls_port)
    try:
        host, lport = c.local
        tag = "%08x" % random.getrandbits(32)
        cid = "%016x@tls-test" % random.getrandbits(64)
        branch = lambda: "z9hG4bK%012x" % random.getrandbits(48)
        rtp = free_port()
        sdp = ("v=0\no=tester 1 1 IN IP4 127.0.0.1\ns=-\nc=IN IP4 127.0.0.1\nt=0 0\n"
               "m=audio %d RTP/AVP 0 101\na=rtpmap:0 PCMU/8000\n"
               "a=rtpmap:101 telephone-event/8000\na=sendrecv\n" % rtp)
        sdp = sdp.replace("\n", "\r\n")
        req = ("INVITE sips:%s@127.0.0.1:%d SIP/2.0\n"
               "Via: SIP/2.0/TLS %s:%d;branch=%s;rport\n"
               "Max-Forwards: 70\n"
               "From: \"TLS tester\" <sips:tester@127.0.0.1>;tag=%s\n"
               "To: <sips:%s@127.0.0.1>\n"
               "Call-ID: %s\nCSeq: 1 INVITE\n"
               "Contact: <sips:tester@%s:%d;transport=tls>\n"
               "Content-Type: application/sdp\nContent-Length: %d\n\n"
               % (number, d.tls_port, host, lport, branch(), tag, number, cid, host, lport,
                  len(sdp)))
        c.send(req)
        c.s.sendall(sdp.encode())
        code, head, body = c.response("INVITE")
        assert code == 200, head
        assert "m=audio" in body and "PCMU" in body, body
        # The daemon's Contact for this dialog is reachable over TLS (sips: or transport=tls).
        contact = header(head, "Contact") or header(head, "m")
        assert contact and ("sips:" in contact or "transport=tls" in contact.lower()), head
        to = header(head, "To") or header(head, "t")
        c.send("ACK sips:%s@127.0.0.1:%d SIP/2.0\n"
               "Via: SIP/2.0/TLS %s:%d;branch=%s;rport\nMax-Forwards: 70\n"
               "From: \"TLS tester\" <sips:tester@127.0.0.1>;tag=%s\nTo: %s\n"
               "Call-ID: %s\nCSeq: 1 ACK\nContent-Length: 0\n\n"
               % (number, d.tls_port, host, lport, branch(), tag, to, cid))
        d.wait_log(r"echo: answered call to %s" % number)
        c.send("BYE sips:%s@127.0.0.1:%d SIP/2.0\n"
               "Via: SIP/2.0/TLS %s:%d;branch=%s;rport\nMax-Forwards: 70\n"
               "From: \"TLS tester\" <sips:tester@127.0.0.1>;tag=%s\nTo: %s\n"
               "Call-ID: %s\nCSeq: 2 BYE\nContent-Length: 0\n\n"
               % (number, d.tls_port, host, lport, branch(), tag, to, cid))
        code, head, _ = c.response("BYE")
        assert code == 200, head
        return body
    finally:
        c.close()


def test_call_over_tls():
    with tls_daemon() as d:
        d.start()
        d.wait_log(r"\[inst=sip:pbx\] listening on tls 127\.0\.0\.1:%d" % d.tls_port)
        tls_call(d)
        d.wait_log(r"incoming call from 'tester' to '100'")
        d.wait_log(CALL_ENDED)
        tls_call(d)
        d.wait_log(CALL_ENDED, count=2)
        assert d.stop() == 0


def test_failed_handshakes_do_not_disturb_the_daemon():
    with tls_daemon() as d:
        d.start()
        # 1. Plain text SIP on the TLS port: no answer in clear, the connection is dropped.
        s = socket.create_connection(("127.0.0.1", d.tls_port), timeout=5)
        s.sendall(b"OPTIONS sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;"
                  b"branch=z9hG4bKplain\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:100@127.0.0.1>\r\n"
                  b"Call-ID: plain@x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
        got = b""
        try:
            while True:
                data = s.recv(4096)
                if not data:
                    break
                got += data
        except (socket.timeout, ConnectionResetError):
            pass
        s.close()
        assert b"SIP/2.0" not in got, got

        # 2. A client that does not trust the daemon's certificate aborts the handshake.
        untrusting = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)  # system CAs only
        raw = socket.create_connection(("127.0.0.1", d.tls_port), timeout=5)
        try:
            untrusting.wrap_socket(raw, server_hostname="127.0.0.1")
            raise AssertionError("the handshake should fail: the test CA is not trusted")
        except ssl.SSLCertVerificationError:
            pass
        finally:
            raw.close()

        # 3. A handshake left half done: a TCP connection that never sends its ClientHello, and
        # one that sends half a ClientHello, stay open while a whole call goes through.
        idle = socket.create_connection(("127.0.0.1", d.tls_port), timeout=5)
        half = socket.create_connection(("127.0.0.1", d.tls_port), timeout=5)
        half.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        tls_call(d)
        d.wait_log(CALL_ENDED)

        # 4. Garbage in place of a ClientHello, and a client gone in the middle.
        junk = socket.create_connection(("127.0.0.1", d.tls_port), timeout=5)
        junk.sendall(os.urandom(3000))
        junk.close()
        half.close()
        idle.close()

        # The daemon is alive, still serves TLS calls, and stops cleanly.
        assert d.alive()
        tls_call(d)
        d.wait_log(CALL_ENDED, count=2)
        assert d.stop() == 0


def test_missing_certificate_is_one_clear_line():
    with tls_daemon() as d:
        text = open(d.conf_path).read().replace(TLS_DIR, "/nonexistent/callvox-certs")
        open(d.conf_path, "w").write(text)
        d.start(wait=False)
        wait_for(lambda: d.proc.poll() is not None, 20, "callvoxd to exit")
        assert d.proc.returncode == 1, d.log()
        assert re.search(r"cannot listen on tls 127\.0\.0\.1:%d: .*certificate in "
                         r"/nonexistent/callvox-certs is missing" % d.tls_port, d.log()), d.log()
    # The TLS port taken by someone else: the same line, before Sofia-SIP is asked.
    with tls_daemon() as d:
        taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        taken.bind(("127.0.0.1", d.tls_port))
        taken.listen(1)
        try:
            d.start(wait=False)
            wait_for(lambda: d.proc.poll() is not None, 20, "callvoxd to exit")
            assert d.proc.returncode == 1, d.log()
            assert re.search(r"cannot listen on tls 127\.0\.0\.1:%d: the address is in use"
                             % d.tls_port, d.log()), d.log()
        finally:
            taken.close()


class TlsPeer(threading.Thread):
    """A PBX on a TLS trunk: accepts one TLS connection with the test certificate, answers
    each request on it 200 OK and keeps what it received."""

    def __init__(self):
        threading.Thread.__init__(self, daemon=True)
        self.port = free_port(socket.SOCK_STREAM)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(TLS_DIR, "agent.pem"))
        self.lsock = socket.create_server(("127.0.0.1", self.port))
        self.lsock.settimeout(20)
        self.ctx = ctx
        self.requests = []
        self.error = None

    def run(self):
        try:
            raw, _ = self.lsock.accept()
            conn = SipStream.__new__(SipStream)
            conn.s = self.ctx.wrap_socket(raw, server_side=True)
            conn.buf = b""
            while True:
                head, body = conn.read(20)
                self.requests.append((head, body))
                lines = head.split("\r\n")
                keep = [l for l in lines[1:] if re.match(r"(Via|From|To|Call-ID|CSeq)\s*:", l,
                                                         re.I)]
                conn.s.sendall(("SIP/2.0 200 OK\r\n%s\r\nContent-Length: 0\r\n\r\n"
                                % "\r\n".join(keep)).encode())
        except Exception as e:  # the test checks what arrived; a closed connection ends it
            self.error = e
        finally:
            self.lsock.close()


def test_notify_sent_over_tls_to_a_sips_proxy():
    peer = TlsPeer()
    peer.start()
    with tls_daemon("proxy = sips:127.0.0.1:%d\n" % peer.port) as d:
        d.start()
        # The test call flow "mwi1" sends an MWI NOTIFY (mailbox 1000, device 8000: 2 new,
        # 1 old) and refuses the call busy.
        c = SipStream(d.tls_port)
        try:
            host, lport = c.local
            c.send("INVITE sips:mwi1@127.0.0.1:%d SIP/2.0\n"
                   "Via: SIP/2.0/TLS %s:%d;branch=z9hG4bK-mwi-tls;rport\nMax-Forwards: 70\n"
                   "From: <sips:tester@127.0.0.1>;tag=m1\nTo: <sips:mwi1@127.0.0.1>\n"
                   "Call-ID: mwi-tls@test\nCSeq: 1 INVITE\n"
                   "Contact: <sips:tester@%s:%d;transport=tls>\nContent-Length: 0\n\n"
                   % (d.tls_port, host, lport, host, lport))
            code, head, _ = c.response("INVITE")
            assert code == 486, head
        finally:
            c.close()
        d.wait_log(r"sipapp: mwi result 42 on sip:pbx: err 0 code 200")
        assert peer.requests, peer.error
        head, body = peer.requests[0]
        assert head.startswith("NOTIFY sips:8000@127.0.0.1:%d" % peer.port), head
        assert re.search(r"^Via: SIP/2\.0/TLS ", head, re.M), head
        assert re.search(r"^Event: message-summary", head, re.M), head
        assert body == ("Messages-Waiting: yes\r\nMessage-Account: sip:1000@127.0.0.1\r\n"
                        "Voice-Message: 2/1 (0/0)\r\n"), body
        assert d.stop() == 0


if __name__ == "__main__":
    main([test_call_over_tls, test_failed_handshakes_do_not_disturb_the_daemon,
          test_notify_sent_over_tls_to_a_sips_proxy, test_missing_certificate_is_one_clear_line])
