"""Torture: every RFC 4475 message (test/data/rfc4475) over UDP, and over TCP the ones whose
framing EXPECTATIONS.md discusses for streams; every Sofia-SIP parser test message
(test/data/sofia-sip/sip-tests) over UDP.  Sent bit-exact by a raw socket (several contain NUL
bytes that sipp cannot carry) from a loopback address at the top Via's port, where UDP
responses go.  For each message the daemon gives one of the answers EXPECTATIONS.md allows, or
drops it; it never crashes; and a normal call completes afterwards.
"""
import glob
import json
import os
import re

from cvxtest import main
from siptest import DATA, SipDaemon, assert_sipp_ok, sipp, statuses, tcp_exchange, udp_exchange

DROP = None  # no response at all

# RFC 4475: what a UAS may answer (EXPECTATIONS.md, "expected (UAS)").  A set of statuses; DROP
# in the set means silence is fine too.  Valid requests to a user no application serves get
# the ordinary 404 of the routing; the torture is in the parsing.
RFC4475 = {
    # wsinv's To carries a tag: an in-dialog INVITE for no dialog gets 481 (RFC 3261 12.2.2)
    "wsinv.dat": {481},
    # unknown method: 501 with Allow; but Sofia-SIP 1.12's parser calls this message garbage
    # (the method's token characters, the NUL in a quoted string) and drops it: a known
    # limitation of the parser, not a crash
    "intmeth.dat": {501, DROP},
    "esc01.dat": {404},                      # valid INVITE with escapes
    "escnull.dat": {405, 501},               # REGISTER: we are no registrar
    "esc02.dat": {501},                      # RE%47IST%45R is not REGISTER
    "lwsdisp.dat": {200, 405, 501},          # OPTIONS
    "longreq.dat": {404, 481},               # long values, valid INVITE (TCP Via)
    "dblreq.dat": {405, 501},                # the REGISTER only, trailing octets ignored
    "semiuri.dat": {200, 405, 501},          # OPTIONS with ;par in the user part
    "transports.dat": {200, 405, 501},       # OPTIONS with odd Via transports
    "mpart01.dat": {405},                    # MESSAGE with a multipart body: not taken
    "unreason.dat": {DROP},                  # a response: matches nothing, dropped
    "noreason.dat": {DROP},
    "badinv01.dat": {400, DROP},
    "clerr.dat": {400, DROP},
    "ncl.dat": {400, DROP},
    "scalar02.dat": {400, DROP},
    "scalarlg.dat": {DROP},
    "quotbal.dat": {400, DROP},
    "ltgtruri.dat": {400, DROP},
    "lwsruri.dat": {400, DROP},
    "lwsstart.dat": {400, 404, DROP},        # liberal: extra SP ignored
    "trws.dat": {400, 200, 405, 501, DROP},  # OPTIONS; liberal: trailing SP ignored
    "escruri.dat": {400, 404, DROP},         # never turns escaped headers into headers
    "baddate.dat": {400, 404, DROP},         # Date may be ignored
    "regbadct.dat": {400, 405, 501, DROP},
    "badaspec.dat": {400, 200, 405, 501, DROP},  # OPTIONS; liberal parsers accept it
    "baddn.dat": {400, 200, 405, 501, DROP},
    "badvers.dat": {505, 400, DROP},
    "mismatch01.dat": {400, DROP},
    "mismatch02.dat": {501, 400, DROP},
    "bigcode.dat": {DROP},
    "badbranch.dat": {400, 200, 405, 501, DROP},  # OPTIONS without a branch
    "insuf.dat": {400, DROP},
    "unkscm.dat": {416, 400, DROP},
    "novelsc.dat": {416, 404, 400, DROP},
    "unksm2.dat": {200, 405, 501, 400},      # REGISTER with unknown schemes in headers
    "bext01.dat": {420, 200, 405, 501},      # OPTIONS with Require: 420
    "invut.dat": {415},                      # unknown Content-Type
    "regaut01.dat": {405, 501},
    "multi01.dat": {400, DROP},
    "mcl01.dat": {400, DROP},
    "bcast.dat": {DROP},
    "zeromf.dat": {200},                     # OPTIONS; Max-Forwards 0 matters to proxies only
    "cparam01.dat": {405, 501},
    "cparam02.dat": {405, 501},
    "regescrt.dat": {405, 501},
    "sdp01.dat": {406, 400, 404},            # Accept without application/sdp
    "inv2543.dat": {404, 400, DROP},         # RFC 2543 syntax: accepted or 400
    "test.dat": {400, DROP},
}
# Stream input: EXPECTATIONS.md describes TCP framing for clerr, ncl and mcl01, and the
# messages whose top Via says TCP are meant for a stream (their UDP answers go to a TCP
# address we do not listen on, so over UDP only "no crash" is checked for them).
RFC4475_TCP = {"clerr.dat", "ncl.dat", "mcl01.dat"}


def via_transport(msg):
    m = re.search(rb"^(?:Via|v)[ \t]*:[ \t\r\n]*SIP[ \t\r\n]*/[ \t\r\n]*2\.0[ \t\r\n]*/"
                  rb"[ \t\r\n]*(\w+)", msg, re.I | re.M)
    return m.group(1).upper().decode() if m else "UDP"


def first_final(resps):
    """The first final status among the responses (a TCP read may hold several), the last
    provisional one when there is no final, or DROP when nothing came."""
    codes = [int(c) for r in resps for c in re.findall(rb"(?m)^SIP/2\.0 (\d{3}) ", r)]
    if not codes:
        return DROP
    finals = [c for c in codes if c >= 200]
    return finals[0] if finals else codes[-1]


def check_normal_call(d):
    r = sipp("uac_call.xml", d.port, service="100")
    assert_sipp_ok(r, "normal call after the torture")


def test_rfc4475_udp_and_tcp():
    files = sorted(glob.glob(os.path.join(DATA, "rfc4475", "*.dat")))
    assert len(files) == 50, len(files)
    with open(os.path.join(DATA, "rfc4475", "expectations.json")) as f:
        assert {e["file"] for e in json.load(f)} == set(RFC4475)
    with SipDaemon(trusted=("127.0.0.0/8", "::1")) as d:
        d.start()
        bad = []
        for path in files:
            name = os.path.basename(path)
            msg = open(path, "rb").read()
            got = first_final(udp_exchange(msg, d.port))
            stream = via_transport(msg) != "UDP"
            ok = got in RFC4475[name] or (stream and got is DROP)
            print("  %-16s udp %-5s %s" % (name, got, "ok" if ok else "UNEXPECTED"))
            if not ok:
                bad.append((name, "udp", got))
            assert d.alive(), "callvoxd died on %s:\n%s" % (name, d.log()[-3000:])
            if name in RFC4475_TCP or via_transport(msg) == "TCP":
                buf, closed = tcp_exchange(msg, d.port)
                got = first_final([buf]) if buf else DROP
                ok = got in RFC4475[name]
                print("  %-16s tcp %-5s %s%s" % (name, got, "ok" if ok else "UNEXPECTED",
                                                 " (closed)" if closed else ""))
                if not ok:
                    bad.append((name, "tcp", got))
                assert d.alive(), "callvoxd died on %s over TCP" % name
        check_normal_call(d)
        assert not bad, "unexpected answers: %r" % bad
        assert d.stop() == 0
        assert "AddressSanitizer" not in d.log() and "runtime error" not in d.log(), d.log()[-4000:]


# Sofia-SIP's verdicts (EXPECTATIONS.md): 'bad' ones get 400 or are dropped; good and ugly
# ones are parsed (whatever the method then gets); none may crash.
SOFIA_BAD = {"test10", "test11", "test12", "test13", "test15", "test16", "test17", "test18",
             "test19", "test21", "test22", "test26", "test29", "test33", "test35", "test40"}
# Where a conforming UAS answers a 'bad' message otherwise, for a reason of its own:
SOFIA_BAD_ALSO = {
    # a valid REGISTER and, in the same datagram, a second message: over UDP the octets after
    # Content-Length are ignored (RFC 4475 dblreq) and the REGISTER gets its 405
    "test10": {405},
    # Request-URI "name:user": 416 Unsupported URI Scheme (RFC 3261 8.2.2.1), as for unkscm
    "test26": {416},
}


def test_sofia_sip_corpus_udp():
    files = sorted(glob.glob(os.path.join(DATA, "sofia-sip", "sip-tests", "*.txt")))
    assert len(files) == 56, len(files)
    with SipDaemon(trusted=("127.0.0.0/8", "::1")) as d:
        d.start()
        bad = []
        for path in files:
            name = os.path.basename(path)[:-4]
            msg = open(path, "rb").read()
            got = first_final(udp_exchange(msg, d.port, wait_first=0.8))
            ok = name not in SOFIA_BAD or got in {400, DROP} | SOFIA_BAD_ALSO.get(name, set())
            print("  %-10s udp %-5s %s" % (name, got, "ok" if ok else "UNEXPECTED"))
            if not ok:
                bad.append((name, got))
            assert d.alive(), "callvoxd died on %s:\n%s" % (name, d.log()[-3000:])
        check_normal_call(d)
        assert not bad, "unexpected answers to 'bad' messages: %r" % bad
        assert d.stop() == 0
        assert "AddressSanitizer" not in d.log() and "runtime error" not in d.log(), d.log()[-4000:]


if __name__ == "__main__":
    main([test_rfc4475_udp_and_tcp, test_sofia_sip_corpus_udp])
