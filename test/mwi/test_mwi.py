"""The MWI engine (plugins/mwi) with the store, the voicemail flow and the SIP driver, against
real sipp peers: the exact message-summary bodies a phone (sipp UAS) receives after a deposit,
after the message is listened to and saved, and after it is deleted; a device answering 500
that gets the update again later (with back-off), listed by "show mwi" until then; the lamps
sent again when the daemon starts; a SUBSCRIBE for message-summary (sipp UAC) with its sync
NOTIFY, an update in the subscription, a refresh, and the expiry after which updates go
unsolicited again.

Deposits and the subscriber's session go through the voicemail flow with sipp (the helpers of
test/voicemail).  Only processes a test started are killed, by PID; waits poll a condition
with a deadline."""
import hashlib
import os
import re
import shutil
import socket
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "voicemail"))
sys.path.insert(0, os.path.join(HERE, "..", "sip"))

from cvxtest import BUILD, main, free_port, wait_for  # noqa: E402
from vmtest import (VmDaemon, have_all, linear_to_ulaw, prompt_ulaw, read_wav,  # noqa: E402
                    sipp as vm_sipp, subscriber_call, write_caller_pcap, write_scenario)
from siptest import finish_bg, sipp as sip_sipp, status_of, udp_exchange  # noqa: E402

SCEN = os.path.join(HERE, "scenarios")
MODULES = os.path.join(BUILD, "lib", "callvox", "modules")
GENERATED = os.path.join(BUILD, "share", "callvox", "prompts", "en")
DIV = "<sip:%s@127.0.0.1>;reason=no-answer"


def body(on, new, saved, mailbox):
    """The exact RFC 3842 body callvox sends (Message-Account names the mailbox on the
    listener's address)."""
    return ("Messages-Waiting: %s\r\nMessage-Account: sip:%s@127.0.0.1\r\n"
            "Voice-Message: %d/%d (0/0)\r\n" % ("yes" if on else "no", mailbox, new, saved))


class MwiDaemon(VmDaemon):
    """VmDaemon (role all: store, SIP, voicemail) plus the MWI engine; bare numbers go to the
    phone (proxy = the sipp UAS's port)."""

    def __init__(self, phone_port, mwi_extra="", workdir=None):
        VmDaemon.__init__(self, vm_extra="[mwi]\nretry_min = 1s\nretry_max = 4s\n" + mwi_extra)
        shutil.copy(os.path.join(MODULES, "mwi.so"), self.mods)
        text = open(self.conf_path).read()
        text = text.replace("[sip:pbx]\n", "[sip:pbx]\nproxy = sip:127.0.0.1:%d\n" % phone_port)
        open(self.conf_path, "w").write(text)

    def start(self, *a, **kw):
        # Other test processes on this machine may take the SIP port between free_port() and
        # the bind: then the daemon says so in one line and the test moves to a fresh port.
        for attempt in range(3):
            try:
                return VmDaemon.start(self, *a, **kw)
            except AssertionError:
                if attempt == 2 or "the address is in use" not in self.log():
                    raise
                old, self.port = self.port, free_port()
                text = open(self.conf_path).read()
                text = text.replace("listen = 127.0.0.1:%d\n" % old,
                                    "listen = 127.0.0.1:%d\n" % self.port)
                open(self.conf_path, "w").write(text)


def deposit(d, mailbox):
    fd, pcap = tempfile.mkstemp(prefix="cvx-caller-", suffix=".pcap")
    os.close(fd)
    ms = write_caller_pcap(pcap)
    scen = write_scenario("uac_deposit.xml", PCAP=pcap, MS=ms + 300)
    before = len(d.messages(mailbox))
    rc, out = vm_sipp(scen, d.port, "8000", keys={"div": DIV % mailbox})
    os.unlink(scen)
    os.unlink(pcap)
    assert rc == 0, out
    return wait_for(lambda: (lambda m: m if len(m) > before else None)(d.messages(mailbox)), 20,
                    "the message in mailbox %s" % mailbox)


def phone(port, calls, code=200, reason="OK", timeout=120):
    """A sipp UAS answering every NOTIFY with code; one sipp call per NOTIFY."""
    with open(os.path.join(SCEN, "uas_notify.xml")) as f:
        text = f.read().replace("@CODE@", str(code)).replace("@REASON@", reason)
    fd, path = tempfile.mkstemp(prefix="cvx-mwiscen-", suffix=".xml")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    p = sip_sipp(path, 9, local_port=port, calls=calls, background=True, timeout=timeout)
    p.scenario_file = path
    return p


def finish_phone(p, timeout=60):
    r = finish_bg(p, timeout)
    os.unlink(p.scenario_file)
    return r


def notify_bodies(sipp_out):
    """The bodies of the NOTIFYs in sipp's -trace_msg log, in order."""
    out = []
    for m in re.finditer(r"message received[^\n]*\n\n?(NOTIFY .*?)(?=\n-{10}|\Z)", sipp_out,
                         re.S):
        msg = m.group(1).replace("\r\n", "\n")
        head, _, rest = msg.partition("\n\n")
        n = int(re.search(r"^Content-Length:\s*(\d+)", head, re.I | re.M).group(1))
        out.append(rest.replace("\n", "\r\n")[:n])
    return out


def sent_log(mailbox, lamp, new, saved):
    return (r"mwi: mailbox %s lamp %s \(%d new, %d saved\) sent: ok \(200\)"
            % (mailbox, lamp, new, saved))


def generated_ulaw(name):
    return bytes(linear_to_ulaw(s) for s in read_wav(os.path.join(GENERATED, name + ".wav")))


def heard(name):
    p = prompt_ulaw(name) if name.endswith(".wav") else generated_ulaw(name)
    return lambda audio: audio.find(p) >= 0


def test_notify_bodies_after_deposit_listen_delete():
    port = free_port()
    with MwiDaemon(port) as d:
        d.start()
        d.wait_log(r"voicemail: \d+ prompts loaded")
        uas = phone(port, 3)
        d.ok("mailbox add 2001 Ann Example")
        d.ok("mailbox pin 2001 4826")
        msg = deposit(d, "2001")[0]
        d.wait_log(sent_log("2001", "on", 1, 0))
        msg_ulaw = bytes(linear_to_ulaw(x) for x in d.export(msg["id"]))
        menu_head = generated_ulaw("k-replay")  # the message menu starts
        subscriber_call(d, [
            (heard("login"), "2001#"),
            (heard("vm-password.wav"), "4826#"),
            (lambda a: a.find(msg_ulaw) >= 0 and a.find(menu_head) >= 0, "3"),
            (lambda a: re.search(sent_log("2001", "off", 0, 1), d.log()), "7"),
            (lambda a: re.search(sent_log("2001", "off", 0, 0), d.log()), "0"),
        ])
        r = finish_phone(uas)
        assert r.rc == 0, r
        assert notify_bodies(r.out) == [body(1, 1, 0, "2001"), body(0, 0, 1, "2001"),
                                        body(0, 0, 0, "2001")], r.out
        # Every lamp is in step: show mwi lists nothing; show mwi all lists the mailbox.
        doc = d.ok("show mwi")
        assert doc["devices"] == [] and doc["differ"] == 0, doc
        doc = d.ok("show mwi all")
        assert [(x["mailbox"], x["store"], x["sent"], x["state"]) for x in doc["devices"]] == \
            [("2001", "off 0/0 (0/0)", "off 0/0 (0/0)", "in step")], doc
        assert d.stop() == 0


def test_device_answering_500_gets_the_update_later_and_again_at_start():
    port = free_port()
    with MwiDaemon(port) as d:
        d.start()
        d.wait_log(r"voicemail: \d+ prompts loaded")
        d.ok("mailbox add 2002 Bob Example")
        d.ok("mailbox set 2002 mwi_device sip:pbx/2002")
        bad = phone(port, 2, 500, "Server Internal Error")
        deposit(d, "2002")
        r = finish_phone(bad)
        assert r.rc == 0, r
        assert notify_bodies(r.out) == [body(1, 1, 0, "2002")] * 2, r.out
        d.wait_log(r"mwi: mailbox 2002 lamp update failed \(failed \(500\)\); attempt 2")
        # Out of step with the store until a later attempt succeeds.
        doc = d.ok("show mwi")
        row = [x for x in doc["devices"] if x["mailbox"] == "2002"]
        assert row and row[0]["device"] == "sip:pbx/2002" and row[0]["store"] == "on 1/0 (0/0)", doc
        assert row[0]["sent"] == "-" and row[0]["state"].startswith(("retry in", "due", "sending")), doc
        good = phone(port, 1)
        r = finish_phone(good)
        assert r.rc == 0, r
        assert notify_bodies(r.out) == [body(1, 1, 0, "2002")], r.out
        d.wait_log(sent_log("2002", "on", 1, 0))
        wait_for(lambda: d.ok("show mwi")["differ"] == 0, 10, "show mwi to list nothing")
        # The waits between attempts grew (1 s, 2 s, then 4 s at most).
        waits = [int(w) for w in re.findall(r"mailbox 2002 lamp update failed .*next in (\d+) ms",
                                            d.log())]
        assert waits[:2] == [1000, 2000] and all(w <= 4000 for w in waits), waits
        assert d.stop() == 0

        # A restart may have lost the lamp: it is sent again, once, without any change.
        again = phone(port, 1)
        d.start()
        r = finish_phone(again)
        assert r.rc == 0, r
        assert notify_bodies(r.out) == [body(1, 1, 0, "2002")], r.out
        d.wait_log(r"mwi: tracking 1 mailbox")
        assert d.stop() == 0


def test_subscribe_with_refresh_and_expiry():
    port = free_port()
    with MwiDaemon(port) as d:
        d.start()
        d.wait_log(r"voicemail: \d+ prompts loaded")
        d.ok("mailbox add 2003 Cy Example")
        sub = sip_sipp(os.path.join(SCEN, "uac_subscribe.xml"), d.port, service="2003",
                       background=True, timeout=120)
        d.wait_log(r"message-summary subscription of 2003@127\.0\.0\.1 for 2003, 20 s")
        assert d.ok("show sip")["instances"][0]["subscriptions"] == 1
        # A deposit while subscribed: the update goes in the subscription, not to the phone.
        deposit(d, "2003")
        r = finish_bg(sub)
        assert r.rc == 0, r.out[:4000] + r.out[-2000:]
        d.wait_log(r"message-summary subscription of 2003@127\.0\.0\.1 for 2003 refreshed, 2 s")
        d.wait_log(r"message-summary subscription of 2003@127\.0\.0\.1 for 2003 ended: expired")
        sip = d.ok("show sip")["instances"][0]
        assert sip["subscriptions"] == 0, sip
        assert (sip["counters"]["subscribes"], sip["counters"]["subscriptions_expired"]) == (1, 1), sip
        d.wait_log(sent_log("2003", "on", 1, 0))
        # After the expiry, updates go unsolicited to the device again.
        uas = phone(port, 1)
        deposit(d, "2003")
        r = finish_phone(uas)
        assert r.rc == 0, r
        assert notify_bodies(r.out) == [body(1, 2, 0, "2003")], r.out
        assert d.stop() == 0


def test_periodic_refresh_sends_the_lamp_again():
    port = free_port()
    with MwiDaemon(port, mwi_extra="refresh = 2s\n") as d:
        d.start()
        d.wait_log(r"voicemail: \d+ prompts loaded")
        d.ok("mailbox add 2005 Eve Example")
        uas = phone(port, 2)
        deposit(d, "2005")
        r = finish_phone(uas)
        assert r.rc == 0, r
        # The same state twice: once for the deposit, once refreshed 2 s later.
        assert notify_bodies(r.out) == [body(1, 1, 0, "2005")] * 2, r.out
        times = re.findall(r"(\d\d):(\d\d):(\d\d\.\d+) info: .*" + sent_log("2005", "on", 1, 0),
                           d.log())
        secs = [int(h) * 3600 + int(m) * 60 + float(x) for h, m, x in times]
        assert len(secs) >= 2 and 1.9 <= secs[1] - secs[0] <= 4.0, times
        assert d.stop() == 0


def test_lamps_sent_again_when_the_trunk_registers_again():
    port, registrar = free_port(), free_port()
    with MwiDaemon(port) as d:
        text = open(d.conf_path).read().replace(
            "[sip:pbx]\n", "[sip:pbx]\nregistrar = sip:127.0.0.1:%d\nregister_user = trunk\n"
            "register_password = secret\nregister_retry = 1s\n" % registrar)
        open(d.conf_path, "w").write(text)
        d.start()
        d.wait_log(r"voicemail: \d+ prompts loaded")
        d.wait_log(r"registration to sip:127\.0\.0\.1:%d failed" % registrar, timeout=40)
        d.ok("mailbox add 2006 Fay Example")
        uas = phone(port, 2)
        deposit(d, "2006")
        d.wait_log(sent_log("2006", "on", 1, 0))
        # The registrar comes (back): the line goes up, and the lamps on it are sent again.
        reg = sip_sipp("uas_register.xml", 9, local_port=registrar, background=True)
        r = finish_bg(reg, 60)
        assert r.rc == 0, r
        d.wait_log(r"\[inst=sip:pbx\] line up: registered")
        d.wait_log(r"mwi: line up again: sending 1 lamp")
        r = finish_phone(uas)
        assert r.rc == 0, r
        assert notify_bodies(r.out) == [body(1, 1, 0, "2006")] * 2, r.out
        assert len(re.findall(sent_log("2006", "on", 1, 0), d.log())) == 2
        assert d.stop() == 0


def subscribe_msg(event, via_port=5077):
    return ("SUBSCRIBE sip:2004@127.0.0.1 SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 127.9.9.9:%d;branch=z9hG4bK-sub-%s\r\n"
            "From: <sip:2004@127.9.9.9>;tag=s1\r\nTo: <sip:2004@127.0.0.1>\r\n"
            "Call-ID: sub-%s@test\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:2004@127.9.9.9:%d>\r\n"
            "Event: %s\r\nExpires: 60\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            % (via_port, event, event, via_port, event)).encode()


def test_subscribe_refused_untrusted_or_other_event():
    port = free_port()
    with MwiDaemon(port) as d:
        d.start()
        # From an address that is not trusted (and no auth_user): 403, counted.
        got = udp_exchange(subscribe_msg("message-summary"), d.port)
        assert [status_of(m) for m in got if status_of(m) >= 200] == [403], got
        d.wait_log(r"SUBSCRIBE from an untrusted address refused \(403\)")
        sip = d.ok("show sip")["instances"][0]
        assert sip["counters"]["subscribes_refused"] == 1 and sip["subscriptions"] == 0, sip
        # An event package callvox does not serve: 489 Bad Event (answered by Sofia-SIP).
        got = udp_exchange(subscribe_msg("presence"), d.port)
        finals = [m for m in got if status_of(m) >= 200]
        assert [status_of(m) for m in finals] == [489], got
        assert re.search(rb"^Allow-Events:.*message-summary", finals[0], re.M | re.I), finals
        assert d.stop() == 0


def digest(user, pw, realm, nonce, method, uri, cnonce="0a4f113b", nc="00000001"):
    md5 = lambda t: hashlib.md5(t.encode()).hexdigest()
    ha1, ha2 = md5("%s:%s:%s" % (user, realm, pw)), md5("%s:%s" % (method, uri))
    resp = md5("%s:%s:%s:%s:auth:%s" % (ha1, nonce, nc, cnonce, ha2))
    return ('Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s", '
            'algorithm=MD5, qop=auth, nc=%s, cnonce="%s"'
            % (user, realm, nonce, uri, resp, nc, cnonce))


def test_subscribe_with_digest_credentials_from_an_untrusted_address():
    port = free_port()
    with MwiDaemon(port) as d:
        text = open(d.conf_path).read().replace("[sip:pbx]\n", "[sip:pbx]\nauth_user = phone:pw7\n")
        open(d.conf_path, "w").write(text)
        d.start()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.%d" % (10 + port % 200), 0))
        sock.settimeout(5)
        host, lport = sock.getsockname()
        uri = "sip:2004@127.0.0.1:%d" % d.port

        def subscribe(cseq, auth=None):
            msg = ("SUBSCRIBE %s SIP/2.0\r\nVia: SIP/2.0/UDP %s:%d;branch=z9hG4bK-dig-%d\r\n"
                   "From: <sip:phone@%s>;tag=d1\r\nTo: <sip:2004@127.0.0.1>\r\n"
                   "Call-ID: digest-sub@test\r\nCSeq: %d SUBSCRIBE\r\n"
                   "Contact: <sip:phone@%s:%d>\r\nEvent: message-summary\r\nExpires: 30\r\n"
                   "%sMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
                   % (uri, host, lport, cseq, host, cseq, host, lport,
                      "Authorization: %s\r\n" % auth if auth else ""))
            sock.sendto(msg.encode(), ("127.0.0.1", d.port))
            while True:
                data, _ = sock.recvfrom(65536)
                if status_of(data) >= 200 and b"SUBSCRIBE" in data.split(b"\r\n\r\n")[0]:
                    return data

        first = subscribe(1)
        assert status_of(first) == 401, first
        chal = re.search(rb'^WWW-Authenticate:.*realm="([^"]+)".*nonce="([^"]+)"', first,
                         re.M | re.I)
        assert chal, first
        realm, nonce = chal.group(1).decode(), chal.group(2).decode()
        bad = subscribe(2, digest("phone", "wrong", realm, nonce, "SUBSCRIBE", uri))
        assert status_of(bad) == 401, bad
        ok = subscribe(3, digest("phone", "pw7", realm, nonce, "SUBSCRIBE", uri))
        assert status_of(ok) == 200, ok
        d.wait_log(r"message-summary subscription of phone@%s for 2004, 30 s" % re.escape(host))
        # The sync NOTIFY comes to the Contact: this socket.
        while True:
            data, _ = sock.recvfrom(65536)
            if data.startswith(b"NOTIFY "):
                break
        assert b"Event: message-summary" in data and b"Messages-Waiting: no" in data, data
        sock.close()
        assert d.stop() == 0


if __name__ == "__main__":
    if not have_all():
        print("skipped: sip.so, voicemail.so, sipp or the prompt set is missing")
        sys.exit(77)
    main([test_notify_bodies_after_deposit_listen_delete,
          test_device_answering_500_gets_the_update_later_and_again_at_start,
          test_subscribe_with_refresh_and_expiry, test_periodic_refresh_sends_the_lamp_again,
          test_lamps_sent_again_when_the_trunk_registers_again,
          test_subscribe_refused_untrusted_or_other_event,
          test_subscribe_with_digest_credentials_from_an_untrusted_address])
