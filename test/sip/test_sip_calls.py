"""The SIP driver against real sipp: calls in and out over UDP and TCP, IPv4 and IPv6, hangup
from either side, CANCEL, OPTIONS, hold and resume, 488, 404, 403 from untrusted sources,
digest authentication, Diversion and History-Info, blind transfer, MWI NOTIFY, outbound calls
and registration to a trunk.  Each test checks sipp's verdict (every expected message, exact
status codes) and what the daemon logged about the call."""
import os
import re
import subprocess

from cvxtest import BUILD, main, free_port
from siptest import SipDaemon, assert_sipp_ok, finish_bg, sipp

CALLVOX = os.path.join(BUILD, "bin", "callvox")


def x(d, command):
    """callvox -x COMMAND against d's control socket: (status, stdout, stderr)."""
    p = subprocess.run([CALLVOX, "-s", os.path.join(d.run_dir, "callvox.ctl"), "-x", command],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    return p.returncode, p.stdout.decode(), p.stderr.decode()

CALL_ENDED = r"echo: call ended \(normal\)"


def call_and_check(d, transport="u1", host="127.0.0.1", n=1):
    r = sipp("uac_call.xml", d.port, service="100", host=host, transport=transport)
    assert_sipp_ok(r, "call over %s/%s" % (transport, host))
    d.wait_log(r"incoming call from 'sipp' to '100' \(redirected from '', none\)", count=n)
    d.wait_log(r"echo: answered call to 100", count=n)
    d.wait_log(CALL_ENDED, count=n)


def test_call_answered_then_caller_hangs_up_udp_tcp_ipv4_ipv6():
    with SipDaemon() as d:
        d.start()
        d.wait_log(r"\[inst=sip:pbx\] listening on udp\+tcp 127\.0\.0\.1:%d" % d.port)
        d.wait_log(r"\[inst=sip:pbx\] listening on udp\+tcp \[::1\]:%d" % d.port)
        call_and_check(d, "u1", "127.0.0.1", 1)
        call_and_check(d, "t1", "127.0.0.1", 2)
        call_and_check(d, "u1", "::1", 3)
        call_and_check(d, "t1", "::1", 4)
        assert d.stop() == 0


def threads(pid):
    return sorted(open("/proc/%d/task/%s/comm" % (pid, t)).read().strip()
                  for t in os.listdir("/proc/%d/task" % pid))


def test_sofia_runs_on_the_loop_thread():
    """Sofia-SIP adds no thread: a daemon that has carried calls on two SIP listeners has the
    same threads as one without any SIP instance."""
    with SipDaemon(echo=(), sip_extra="", extra_conf="") as plain:
        text = open(plain.conf_path).read()
        text = re.sub(r"\[sip:pbx\]\n(?:[a-z_]+ = .*\n)*", "", text)
        open(plain.conf_path, "w").write(text)
        plain.start()
        base = threads(plain.proc.pid)
        assert plain.stop() == 0
    with SipDaemon() as d:
        d.start()
        call_and_check(d, "u1", "127.0.0.1", 1)
        call_and_check(d, "t1", "::1", 2)
        assert threads(d.proc.pid) == base, (threads(d.proc.pid), base)
        assert d.stop() == 0


def test_callvox_hangs_up_with_bye():
    with SipDaemon() as d:
        d.start()
        r = sipp("uac_remote_bye.xml", d.port, service="hangup1")
        assert_sipp_ok(r, "BYE from callvox")
        d.wait_log(r"sipapp: \S+ ended \(normal\)")
        assert d.stop() == 0


def test_cancel_before_answer():
    with SipDaemon() as d:
        d.start()
        r = sipp("uac_cancel.xml", d.port, service="ring1")
        assert_sipp_ok(r, "CANCEL")
        d.wait_log(r"sipapp: \S+ ringing")
        d.wait_log(r"sipapp: \S+ ended \(normal\)")
        assert d.stop() == 0


def test_options():
    with SipDaemon() as d:
        d.start()
        assert_sipp_ok(sipp("uac_options.xml", d.port, service="100"), "OPTIONS")
        assert_sipp_ok(sipp("uac_options.xml", d.port, service="100", transport="t1"),
                       "OPTIONS over TCP")
        assert d.stop() == 0


def test_hold_and_resume_by_reinvite():
    with SipDaemon() as d:
        d.start()
        r = sipp("uac_hold.xml", d.port, service="100")
        assert_sipp_ok(r, "hold and resume")
        d.wait_log(r"call put on hold, while handling a re-INVITE")
        d.wait_log(r"call resumed, while handling a re-INVITE")
        d.wait_log(CALL_ENDED)
        assert d.stop() == 0


def test_hold_and_resume_by_update():
    with SipDaemon() as d:
        d.start()
        r = sipp("uac_update_hold.xml", d.port, service="100")
        assert_sipp_ok(r, "hold and resume by UPDATE")
        d.wait_log(r"call put on hold, while handling an UPDATE")
        d.wait_log(r"call resumed, while handling an UPDATE")
        d.wait_log(CALL_ENDED)
        assert d.stop() == 0


def test_late_offer_answer_in_ack():
    with SipDaemon() as d:
        d.start()
        assert_sipp_ok(sipp("uac_late_offer.xml", d.port, service="100"), "late offer")
        d.wait_log(CALL_ENDED)
        assert d.stop() == 0


def test_reinvite_without_codec_gets_488_and_call_goes_on():
    with SipDaemon() as d:
        d.start()
        assert_sipp_ok(sipp("uac_reinvite_488.xml", d.port, service="100"), "re-INVITE 488")
        d.wait_log(r"new offer refused \(488\): no audio stream offers PCMU or PCMA over RTP/AVP, "
                   r"while handling a re-INVITE")
        d.wait_log(CALL_ENDED)
        assert d.stop() == 0


def test_488_without_a_usable_codec():
    with SipDaemon() as d:
        d.start()
        r = sipp("uac_488.xml", d.port, service="100")
        assert_sipp_ok(r, "488")
        d.wait_log(r"refusing an INVITE \(488\): no audio stream offers PCMU or PCMA over RTP/AVP")
        assert "echo: answered" not in d.log()
        assert d.stop() == 0


def test_404_when_no_application_takes_the_call():
    with SipDaemon() as d:
        d.start()
        r = sipp("uac_refused_404.xml", d.port, service="555")
        assert_sipp_ok(r, "404")
        d.wait_log(r"no application takes the call; rejecting it")
        assert d.stop() == 0


def test_403_from_untrusted_source_and_counted():
    with SipDaemon(trusted=("127.0.0.2", "192.0.2.0/24")) as d:
        d.start()
        r = sipp("uac_403.xml", d.port, service="100")
        assert_sipp_ok(r, "403 v4")
        r = sipp("uac_403.xml", d.port, service="100", host="::1", transport="t1")
        assert_sipp_ok(r, "403 v6 tcp")
        d.wait_log(r"INVITE from untrusted 127\.0\.0\.1 port \d+ refused \(403\)")
        d.wait_log(r"INVITE from untrusted ::1 port \d+ refused \(403\)")
        assert "incoming call" not in d.log()
        st, out, err = x(d, "show sip")
        assert st == 0 and "invites 2, answered 0, 403 untrusted 2," in out, (st, out, err)
        assert d.stop() == 0


def test_digest_challenge_good_and_bad_credentials():
    with SipDaemon(trusted=("127.0.0.2",), sip_extra="auth_user = alice:s3cret\n") as d:
        d.start()
        r = sipp("uac_auth.xml", d.port, service="100", args=["-au", "alice", "-ap", "s3cret"])
        assert_sipp_ok(r, "digest good")
        d.wait_log(r"INVITE from 127\.0\.0\.1 port \d+ authenticated as 'alice'")
        d.wait_log(CALL_ENDED)
        r = sipp("uac_auth_bad.xml", d.port, service="100", args=["-au", "alice", "-ap", "nope"])
        assert_sipp_ok(r, "digest bad")
        d.wait_log(r"wrong credentials for 'alice'")
        assert d.count(r"echo: answered") == 1
        st, out, err = x(d, "show sip")
        assert st == 0 and "challenged 3, bad credentials 1," in out, (st, out, err)
        assert d.stop() == 0


# RFC 5806 section 9.2.5 (test/data/diversion-history/rfc5806-sec9-isup-mapping.txt).
DIV1 = '<tel:+19195551002>;reason=user-busy;privacy="full";counter=4'
DIV2 = "<tel:+19195551001>;reason=unconditional;counter=1"


def test_diversion_first_last_and_number_map():
    with SipDaemon() as d:
        d.start()
        r = sipp("uac_diversion.xml", d.port, service="100", keys={"div1": DIV1, "div2": DIV2})
        assert_sipp_ok(r, "diversion")
        d.wait_log(r"incoming call from 'sipp' to '100' \(redirected from '\+19195551001', "
                   r"unconditional\)")
        assert d.stop() == 0
    extra = "redirect_pick = last\nnumber_map = +1919555>\n"
    with SipDaemon(sip_extra=extra) as d:
        d.start()
        r = sipp("uac_diversion.xml", d.port, service="100", keys={"div1": DIV1, "div2": DIV2})
        assert_sipp_ok(r, "diversion last")
        d.wait_log(r"incoming call from 'sipp' to '100' \(redirected from '1002', busy\)")
        assert d.stop() == 0


# RFC 7131 section 3.6 F6 shape (test/data/diversion-history): bob redirected (302) to us.
HI = ("<sip:bob@example.com>;index=1", "<sip:bob@192.0.2.5?Reason=SIP%3Bcause%3D302>;index=1.1;rc=1",
      "<sip:100@127.0.0.1>;index=1.2;mp=1")


def test_history_info():
    with SipDaemon() as d:
        d.start()
        r = sipp("uac_history.xml", d.port, service="100",
                 keys={"hi1": HI[0], "hi2": HI[1], "hi3": HI[2]})
        assert_sipp_ok(r, "history-info")
        d.wait_log(r"incoming call from 'sipp' to '100' \(redirected from 'bob', unconditional\)")
        assert d.stop() == 0


def test_blind_transfer_by_refer():
    proxy = free_port()
    with SipDaemon(sip_extra="proxy = sip:127.0.0.1:%d\n" % proxy) as d:
        d.start()
        r = sipp("uac_transfer.xml", d.port, service="xfer1")
        assert_sipp_ok(r, "transfer")
        d.wait_log(r"sipapp: \S+ transfer ok \(200\)")
        d.wait_log(r"blind transfer succeeded \(200\)")
        d.wait_log(r"sipapp: \S+ ended \(normal\)")
        assert d.stop() == 0


def test_mwi_notify():
    phone = free_port()
    with SipDaemon(sip_extra="proxy = sip:127.0.0.1:%d\n" % phone) as d:
        d.start()
        uas = sipp("uas_mwi.xml", d.port, local_port=phone, background=True)
        r = sipp("uac_refused_486.xml", d.port, service="mwi1")
        assert_sipp_ok(r, "busy after MWI")
        d.wait_log(r"sipapp: mwi result 42 on sip:pbx: err 0 code 200")
        assert_sipp_ok(finish_bg(uas), "NOTIFY received")
        assert d.stop() == 0


def test_outbound_call():
    phone = free_port()
    with SipDaemon(sip_extra="proxy = sip:127.0.0.1:%d\n" % phone) as d:
        d.start()
        uas = sipp("uas_answer.xml", d.port, local_port=phone, background=True)
        r = sipp("uac_refused_480.xml", d.port, service="orig1")
        assert_sipp_ok(r, "480")
        d.wait_log(r"sipapp: originate to 9000: placed")
        d.wait_log(r"sipapp: \S+ answered")
        assert_sipp_ok(finish_bg(uas), "outbound call answered and hung up")
        d.wait_log(r"sipapp: \S+ ended \(no-answer\)")
        d.wait_log(r"sipapp: \S+ ended \(normal\)")
        assert d.stop() == 0


def test_registration_with_digest():
    registrar = free_port()
    extra = ("registrar = sip:127.0.0.1:%d\nregister_user = trunk\nregister_password = secret\n"
             "register_expiry = 120s\n" % registrar)
    with SipDaemon(sip_extra=extra) as d:
        uas = sipp("uas_register.xml", 1, local_port=registrar, background=True)
        d.start()
        assert_sipp_ok(finish_bg(uas), "registrar")
        d.wait_log(r"registered to sip:127\.0\.0\.1:%d as trunk" % registrar)
        d.wait_log(r"\[inst=sip:pbx\] line up: registered")
        assert d.stop() == 0


def test_dtmf_by_sip_info():
    with SipDaemon() as d:
        d.start()
        r = sipp("uac_info_dtmf.xml", d.port, service="100")
        assert_sipp_ok(r, "INFO dtmf-relay")
        d.wait_log(r"echo: DTMF 5")
        d.wait_log(CALL_ENDED)
        assert d.stop() == 0


def test_registration_is_refreshed():
    registrar = free_port()
    extra = ("registrar = sip:127.0.0.1:%d\nregister_user = trunk\nregister_password = secret\n"
             % registrar)
    with SipDaemon(sip_extra=extra) as d:
        uas = sipp("uas_register_refresh.xml", 1, local_port=registrar, background=True)
        d.start()
        assert_sipp_ok(finish_bg(uas), "registrar saw the refresh")
        d.wait_log(r"\[inst=sip:pbx\] line up: registered")
        st, out, err = x(d, "show sip")
        assert st == 0, (st, out, err)
        assert re.search(r"registration to sip:127\.0\.0\.1:%d as trunk: registered \(expires "
                         r"120 s\) \(\d+ attempts, 2 ok\)" % registrar, out), out
        assert d.stop() == 0


def test_shell_show_sip_and_hangup():
    with SipDaemon() as d:
        d.start()
        assert_sipp_ok(sipp("uac_call.xml", d.port, service="100"), "first call")
        d.wait_log(CALL_ENDED)
        ring = sipp("uac_refused_480.xml", d.port, service="ring1", background=True)
        d.wait_log(r"sipapp: \S+ ringing")
        call = re.search(r"sipapp: (\S+) ringing", d.log()).group(1)
        st, out, err = x(d, "show sip")
        assert st == 0, (st, out, err)
        assert "sip:pbx: line up (listening), 1 call\n" in out, out
        assert "  listen udp+tcp 127.0.0.1:%d\n" % d.port in out, out
        assert "  listen udp+tcp [::1]:%d\n" % d.port in out, out
        assert "invites 2, answered 1, 403 untrusted 0" in out, out
        assert "bye in 1, bye out 0" in out, out
        st, out, err = x(d, "show sip calls")
        assert st == 0, (st, out, err)
        row = [l for l in out.splitlines() if l.startswith(call + " ")]
        assert len(row) == 1 and re.search(r"sip:pbx\s+in\s+ringing\s+sipp\s+ring1\s+-\s+none\s+"
                                           r"PCMU\+te\s+\d+$", row[0]), out
        st, out, err = x(d, "hangup " + call)
        assert st == 0 and out == "hanging up %s\n" % call, (st, out, err)
        assert_sipp_ok(finish_bg(ring), "480 after hangup from the shell")
        d.wait_log(r"sipapp: %s ended \(normal\)" % re.escape(call))
        st, out, err = x(d, "hangup nosuch-1")
        assert st == 1 and "no call 'nosuch-1'" in out + err, (st, out, err)
        assert d.stop() == 0


def test_stop_ends_calls_in_progress_with_bye():
    with SipDaemon() as d:
        d.start()
        caller = sipp("uac_remote_bye.xml", d.port, service="100", background=True)
        d.wait_log(r"echo: answered call to 100")
        assert d.stop() == 0
        assert_sipp_ok(finish_bg(caller), "BYE from a stopping callvox")
        assert re.search(r"echo: call ended \(shutdown\)", d.log()), d.log()[-2000:]


def test_listener_that_cannot_start_is_one_clear_line():
    import socket
    import tempfile
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.1", 0))
    port = busy.getsockname()[1]
    try:
        with SipDaemon(sip_extra="listen = 127.0.0.1:%d\n" % port) as d:
            d.start(wait=False)
            assert d.proc.wait(20) == 1, d.log()
            assert ("[inst=sip:pbx] cannot listen on udp+tcp 127.0.0.1:%d: the address is in use "
                    "or not local, while starting" % port) in d.log(), d.log()
    finally:
        busy.close()
    # A tls: listener without a certificate (agent.pem) in tls_cert_dir stops the start with a
    # line that says what may be wrong.
    certs = tempfile.mkdtemp(prefix="cvx-certs-")
    with SipDaemon(sip_extra="listen = tls:127.0.0.1:%d\ntls_cert_dir = %s\n"
                   % (free_port(socket.SOCK_STREAM), certs)) as d:
        d.start(wait=False)
        assert d.proc.wait(20) == 1, d.log()
        assert re.search(r"cannot listen on tls 127\.0\.0\.1:\d+: the address is in use or "
                         r"not local, or the certificate in %s is missing or unusable \(Sofia-SIP "
                         r"needs agent\.pem there: certificate and private key\)"
                         % re.escape(certs), d.log()), d.log()
    os.rmdir(certs)


def test_bad_configuration_is_refused_with_a_reason():
    from cvxtest import run_callvoxd
    with SipDaemon(sip_extra="listen = tls:127.0.0.1:5061\nnumber_map = nonsense\n") as d:
        rc, out = run_callvoxd(["--check-config", "--config", d.conf_path])
        assert rc == 2, out
        assert "listen: 'tls:127.0.0.1:5061' needs tls_cert_dir" in out, out


if __name__ == "__main__":
    main([test_call_answered_then_caller_hangs_up_udp_tcp_ipv4_ipv6, test_sofia_runs_on_the_loop_thread,
          test_callvox_hangs_up_with_bye, test_cancel_before_answer, test_options,
          test_hold_and_resume_by_reinvite, test_hold_and_resume_by_update,
          test_late_offer_answer_in_ack, test_reinvite_without_codec_gets_488_and_call_goes_on,
          test_488_without_a_usable_codec,
          test_404_when_no_application_takes_the_call,
          test_403_from_untrusted_source_and_counted,
          test_digest_challenge_good_and_bad_credentials,
          test_diversion_first_last_and_number_map, test_history_info,
          test_blind_transfer_by_refer, test_mwi_notify, test_outbound_call,
          test_registration_with_digest, test_dtmf_by_sip_info, test_registration_is_refreshed,
          test_shell_show_sip_and_hangup, test_stop_ends_calls_in_progress_with_bye,
          test_listener_that_cannot_start_is_one_clear_line,
          test_bad_configuration_is_refused_with_a_reason])
