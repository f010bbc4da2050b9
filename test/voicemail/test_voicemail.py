"""Voicemail with real peers: sipp calls the SIP driver, the voicemail flow answers, and
what lands in the store (or what the caller hears) is checked by detection, not by log lines.

 - a caller forwarded to the pilot (Diversion: 1000, no answer) skips the greeting with an
   RFC 4733 '#', and leaves a message holding a known tone sequence after the beep, then
   hangs up: the message is in mailbox 1000, and its audio, exported by the daemon, holds
   600, 1100, 1700 Hz in that order (and no beep);
 - a mailbox at its quota: the caller hears the recorded "mailbox is full" and "goodbye"
   sample for sample, and nothing is stored;
 - an unknown mailbox: the caller hears "not in service" and "goodbye";
 - no store (a call server whose store cannot be reached): the caller hears "I'm sorry, the
   voice mail system cannot take messages right now" and never "message saved";
 - 50 callers deposit into one mailbox at the same time: all 50 messages land, each with the
   tone sequence;
 - a missing prompt stops the start with a line naming it.
"""
import os
import sys
import tempfile

from cvxtest import BUILD, main, run_callvoxd, wait_for
from vmtest import (PROMPTS, TONES, VmDaemon, detect_tones, have_all, linear_to_ulaw,
                    listen_call, prompt_ulaw, read_wav, sipp, write_caller_pcap, write_scenario)

GENERATED = os.path.join(BUILD, "share", "callvox", "prompts", "en")
DIV = "<sip:%s@127.0.0.1>;reason=no-answer"


def deposit_scenario():
    fd, pcap = tempfile.mkstemp(prefix="cvx-caller-", suffix=".pcap")
    os.close(fd)
    ms = write_caller_pcap(pcap)
    return write_scenario("uac_deposit.xml", PCAP=pcap, MS=ms + 300), pcap


def check_message(d, msg):
    samples = d.export(msg["id"])
    heard = detect_tones(samples)
    assert heard == list(TONES), (msg, heard)
    # The recording starts after the beep and ends at the hang-up: the tones (1.8 s) and the
    # silence around them, not the greeting.
    assert 2.0 <= msg["seconds"] <= 4.5, msg
    return samples


def test_deposit_through_diversion():
    scen, pcap = deposit_scenario()
    with VmDaemon() as d:
        d.start()
        d.wait_log(r"voicemail: \d+ prompts loaded")
        assert d.ok("mailbox add 1000 Alice Example")
        rc, out = sipp(scen, d.port, "8000", keys={"div": DIV % "1000"})
        assert rc == 0, out
        msgs = wait_for(lambda: d.messages("1000"), 20, "the message in mailbox 1000")
        assert len(msgs) == 1, msgs
        assert msgs[0]["folder"] == "new", msgs
        check_message(d, msgs[0])
        assert d.stop() == 0
    os.unlink(scen)
    os.unlink(pcap)


def contains_in_order(audio, *parts):
    pos = 0
    for name, data in parts:
        i = audio.find(data, pos)
        assert i >= 0, "the caller did not hear %s (%d bytes received)" % (name, len(audio))
        pos = i + len(data)
    return True


def generated_ulaw(name):
    return bytes(linear_to_ulaw(s) for s in read_wav(os.path.join(GENERATED, name + ".wav")))


def test_mailbox_full():
    scen, pcap = deposit_scenario()
    with VmDaemon() as d:
        d.start()
        d.wait_log(r"voicemail: \d+ prompts loaded")
        d.ok("mailbox add 1001 Bob Example")
        d.ok("mailbox set 1001 quota_messages 1")
        rc, out = sipp(scen, d.port, "8000", keys={"div": DIV % "1001"})
        assert rc == 0, out
        wait_for(lambda: len(d.messages("1001")) == 1, 20, "the first message")
        rc, out, audio = listen_call(d, "8000", DIV % "1001")
        assert rc == 0, out
        contains_in_order(audio, ("vm-mailboxfull", prompt_ulaw("vm-mailboxfull.wav")),
                          ("vm-goodbye", prompt_ulaw("vm-goodbye.wav")))
        assert audio.find(prompt_ulaw("beep.wav")) < 0, "a beep was played"
        assert len(d.messages("1001")) == 1
        assert d.stop() == 0
    os.unlink(scen)
    os.unlink(pcap)


def test_unknown_mailbox_not_in_service():
    with VmDaemon() as d:
        d.start()
        d.wait_log(r"voicemail: \d+ prompts loaded")
        rc, out, audio = listen_call(d, "8000", DIV % "1999")
        assert rc == 0, out
        contains_in_order(audio, ("not-in-service", generated_ulaw("not-in-service")),
                          ("vm-goodbye", prompt_ulaw("vm-goodbye.wav")))
        d.wait_log(r"mailbox 1999: no such mailbox")
        assert d.stop() == 0


def test_store_unavailable():
    # Role call: this call server has no store of its own (and no link yet), so the store
    # cannot be reached.
    with VmDaemon(role="call") as d:
        d.start()
        d.wait_log(r"voicemail: \d+ prompts loaded")
        rc, out, audio = listen_call(d, "8000", DIV % "1000")
        assert rc == 0, out
        contains_in_order(audio, ("im-sorry", prompt_ulaw("im-sorry.wav")),
                          ("store-unavailable", generated_ulaw("store-unavailable")),
                          ("vm-goodbye", prompt_ulaw("vm-goodbye.wav")))
        assert audio.find(prompt_ulaw("vm-msgsaved.wav")) < 0, "'message saved' was said"
        assert audio.find(prompt_ulaw("beep.wav")) < 0, "a beep was played"
        assert d.stop() == 0


def test_fifty_callers_one_mailbox():
    scen, pcap = deposit_scenario()
    with VmDaemon() as d:
        d.start()
        d.wait_log(r"voicemail: \d+ prompts loaded")
        d.ok("mailbox add 1002 Carol Example")
        rc, out = sipp(scen, d.port, "8000", calls=50, limit=50, rate=200,
                       keys={"div": DIV % "1002"}, timeout=120)
        assert rc == 0, out
        msgs = wait_for(lambda: (lambda m: m if len(m) >= 50 else None)(d.messages("1002")),
                        30, "50 messages in mailbox 1002")
        assert len(msgs) == 50, len(msgs)
        assert len(set(m["id"] for m in msgs)) == 50
        for m in msgs:
            check_message(d, m)
        assert d.stop() == 0
    os.unlink(scen)
    os.unlink(pcap)


def test_missing_prompt_stops_the_start():
    with VmDaemon(vm_extra="prompt_dir = /nonexistent/prompts\n[module:voicemail]\n"
                  "required = yes\n") as d:
        status, out = run_callvoxd(["--foreground", "--config", d.conf_path])
        assert status != 0, out
        assert ("voicemail: prompt 'beep' is missing: /nonexistent/prompts/beep.wav "
                "(install asterisk-core-sounds-en-wav)") in out, out


if __name__ == "__main__":
    if not have_all():
        print("SKIP: needs sip.so, voicemail.so, sipp and %s" % PROMPTS)
        sys.exit(77)
    main([test_deposit_through_diversion, test_mailbox_full, test_unknown_mailbox_not_in_service,
          test_store_unavailable, test_fifty_callers_one_mailbox,
          test_missing_prompt_stops_the_start])
