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
 - a missing prompt stops the start with a line naming it;
 - a subscriber calls the pilot from another phone and types mailbox and PIN as RFC 4733
   digits: the audio captured from RTP holds "you have 1 new message", then the message
   itself sample for sample, in which the tone sequence is detected;
 - forward (5) to another mailbox with a recorded introduction: the new message in that
   mailbox holds the introduction's tone, then the original tone sequence;
 - '*' during playback goes back 5 s: the message is heard from its start again;
 - delete (7) and undelete (8) during the call: the subscriber hears "deleted" and
   "undeleted", and the store has the message in the deleted folder, then in saved;
 - a subscriber records a new standard greeting by phone (the tone sequence, sent as RTP by
   the test): a forwarded caller then hears those tones instead of the system greeting;
 - a PIN change by phone refuses a trivial PIN and one used before, then takes a new one,
   which then logs in;
 - wrong PINs lock the mailbox across calls (the correct PIN is then refused with "locked"),
   and "mailbox unlock" lets the subscriber in again.
"""
import os
import sys
import tempfile

from cvxtest import BUILD, main, run_callvoxd, wait_for
from vmtest import (PROMPTS, TONES, VmDaemon, detect_tones, free_port, have_all,
                    linear_to_ulaw, listen_call, prompt_ulaw, read_wav, sipp, subscriber_call,
                    tone, tones_ulaw, ulaw_to_linear, write_caller_pcap, write_scenario)

GENERATED = os.path.join(BUILD, "share", "callvox", "prompts", "en")
DIV = "<sip:%s@127.0.0.1>;reason=no-answer"


def deposit_scenario(calling="sipp"):
    fd, pcap = tempfile.mkstemp(prefix="cvx-caller-", suffix=".pcap")
    os.close(fd)
    ms = write_caller_pcap(pcap)
    return write_scenario("uac_deposit.xml", PCAP=pcap, MS=ms + 300, FROM=calling), pcap


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


def heard(*names):
    """A condition on the audio heard so far: every prompt named was heard (n times for
    (name, n))."""
    want = [(prompt_ulaw(n) if n.endswith(".wav") else generated_ulaw(n), k)
            for n, k in ((x, 1) if isinstance(x, str) else x for x in names)]
    return lambda audio: all(audio.count(p) >= k for p, k in want)


def test_login_hears_the_message():
    scen, pcap = deposit_scenario()
    with VmDaemon() as d:
        d.start()
        d.wait_log(r"voicemail: \d+ prompts loaded")
        d.ok("mailbox add 1000 Alice Example")
        d.ok("mailbox pin 1000 4826")
        rc, out = sipp(scen, d.port, "8000", keys={"div": DIV % "1000"})
        assert rc == 0, out
        msg = wait_for(lambda: d.messages("1000"), 20, "the message")[0]
        msg_ulaw = bytes(linear_to_ulaw(x) for x in d.export(msg["id"]))
        menu_head = generated_ulaw("k-replay")  # the menu starts
        audio = subscriber_call(d, [
            (heard("login"), "1000#"),
            (heard("vm-password.wav"), "4826#"),
            (lambda a: a.find(msg_ulaw) >= 0 and a.find(menu_head) >= 0, "0"),
        ])
        contains_in_order(audio, ("login", generated_ulaw("login")),
                          ("vm-password", prompt_ulaw("vm-password.wav")),
                          ("vm-youhave", prompt_ulaw("vm-youhave.wav")),
                          ("1", prompt_ulaw("digits/1.wav")),
                          ("vm-INBOX", prompt_ulaw("vm-INBOX.wav")),
                          ("vm-message", prompt_ulaw("vm-message.wav")),
                          ("vm-first", prompt_ulaw("vm-first.wav")),
                          ("vm-received", prompt_ulaw("vm-received.wav")),
                          ("the message", msg_ulaw),
                          ("the menu", menu_head),
                          ("vm-goodbye", prompt_ulaw("vm-goodbye.wav")))
        # What the caller heard just before the menu, as long as the message: the tones.
        j = audio.find(menu_head)
        seg = [ulaw_to_linear(b) for b in audio[j - len(msg_ulaw):j]]
        assert detect_tones(seg) == list(TONES), detect_tones(seg)
        d.wait_log(r"mailbox 1000: subscriber logged in")
        assert d.stop() == 0
    os.unlink(scen)
    os.unlink(pcap)


def test_forward_with_introduction():
    scen, pcap = deposit_scenario()
    intro = bytes(linear_to_ulaw(x) for x in [0] * 4000 + tone(2200, 600) + [0] * 2400)
    with VmDaemon() as d:
        d.start()
        d.wait_log(r"voicemail: \d+ prompts loaded")
        d.ok("mailbox add 1006 Gail Example")
        d.ok("mailbox pin 1006 5071")
        d.ok("mailbox add 1007 Hugo Example")
        rc, out = sipp(scen, d.port, "8000", keys={"div": DIV % "1006"})
        assert rc == 0, out
        msg = wait_for(lambda: d.messages("1006"), 20, "the message")[0]
        msg_ulaw = bytes(linear_to_ulaw(x) for x in d.export(msg["id"]))
        menu_head = generated_ulaw("k-replay")

        def speak(pad):
            """records a 2200 Hz tone as the introduction, then #"""
            pad.send_audio(intro)
            pad.press("#")
        subscriber_call(d, [
            (heard("login"), "1006#"),
            (heard("vm-password.wav"), "5071#"),
            (lambda a: a.find(msg_ulaw) >= 0 and a.find(menu_head) >= 0, "5"),
            (heard("fwd-mailbox"), "1007#"),
            (beep_after("record-intro"), speak),
            (heard("vm-msgforwarded.wav"), "0"),
        ])
        fwd = wait_for(lambda: d.messages("1007"), 10, "the forwarded message")
        assert len(fwd) == 1 and fwd[0]["from"] == "1006", fwd
        samples = d.export(fwd[0]["id"])
        heard_tones = detect_tones(samples, freqs=TONES + (1000, 2200))
        assert heard_tones == [2200] + list(TONES), heard_tones
        # The original stays where it was.
        assert [m["id"] for m in d.messages("1006")] == [msg["id"]]
        assert d.stop() == 0
    os.unlink(scen)
    os.unlink(pcap)


def test_rewind_during_playback():
    scen, pcap = deposit_scenario()
    with VmDaemon() as d:
        d.start()
        d.wait_log(r"voicemail: \d+ prompts loaded")
        d.ok("mailbox add 1008 Ines Example")
        d.ok("mailbox pin 1008 5071")
        rc, out = sipp(scen, d.port, "8000", keys={"div": DIV % "1008"})
        assert rc == 0, out
        msg = wait_for(lambda: d.messages("1008"), 20, "the message")[0]
        msg_ulaw = bytes(linear_to_ulaw(x) for x in d.export(msg["id"]))
        head = msg_ulaw[:16000]  # its first 2 s
        menu_head = generated_ulaw("k-replay")
        # '*' 2 s into the message goes back 5 s: to its start; then it plays to the end.
        audio = subscriber_call(d, [
            (heard("login"), "1008#"),
            (heard("vm-password.wav"), "5071#"),
            (lambda a: a.find(head) >= 0, "*"),
            (lambda a: a.find(msg_ulaw) >= 0 and a.find(menu_head) >= 0, "0"),
        ])
        first = audio.find(head)
        again = audio.find(msg_ulaw, first + 1)
        assert again > first, (first, again)
        # The first play was cut short: the whole message was heard once, after the rewind.
        assert audio.count(msg_ulaw) == 1
        assert audio.find(msg_ulaw) == again
        assert d.stop() == 0
    os.unlink(scen)
    os.unlink(pcap)


def test_delete_and_undelete():
    scen, pcap = deposit_scenario()
    with VmDaemon() as d:
        d.start()
        d.wait_log(r"voicemail: \d+ prompts loaded")
        d.ok("mailbox add 1003 Dan Example")
        d.ok("mailbox pin 1003 5071")
        rc, out = sipp(scen, d.port, "8000", keys={"div": DIV % "1003"})
        assert rc == 0, out
        msg = wait_for(lambda: d.messages("1003"), 20, "the message")[0]
        msg_ulaw = bytes(linear_to_ulaw(x) for x in d.export(msg["id"]))

        def folder_is(name):
            return lambda audio: d.messages("1003")[0]["folder"] == name
        audio = subscriber_call(d, [
            (heard("login"), "1003#"),
            (heard("vm-password.wav"), "5071#"),
            (lambda a: a.find(msg_ulaw) >= 0, "7"),
            (lambda a: heard("vm-deleted.wav")(a) and folder_is("deleted")(a), "8"),
            (lambda a: heard("vm-undeleted.wav")(a) and folder_is("saved")(a), "0"),
        ])
        contains_in_order(audio, ("the message", msg_ulaw),
                          ("vm-deleted", prompt_ulaw("vm-deleted.wav")),
                          ("vm-undeleted", prompt_ulaw("vm-undeleted.wav")),
                          ("vm-goodbye", prompt_ulaw("vm-goodbye.wav")))
        msgs = d.messages("1003")
        assert [m["folder"] for m in msgs] == ["saved"], msgs
        assert d.stop() == 0
    os.unlink(scen)
    os.unlink(pcap)


def prompt_bytes(name):
    """A prompt as heard: a recorded one ("vm-intro.wav") or a generated one ("login")."""
    return prompt_ulaw(name) if name.endswith(".wav") else generated_ulaw(name)


def beep_after(name, n=1):
    """A condition: the prompt was heard (n times), then the 1 kHz beep after its nth time."""
    p = prompt_bytes(name)

    def cond(audio):
        i = -1
        for _ in range(n):
            i = audio.find(p, i + 1)
            if i < 0:
                return False
        return 1000 in detect_tones([ulaw_to_linear(b) for b in audio[i + len(p):]])
    return cond


def test_greeting_change():
    tones = tones_ulaw()
    with VmDaemon() as d:
        d.start()
        d.wait_log(r"voicemail: \d+ prompts loaded")
        d.ok("mailbox add 1004 Erin Example")
        d.ok("mailbox pin 1004 5071")

        def speak(pad):
            """records the tone sequence as the greeting, then #"""
            # half a second after the beep, the tones, half a second more (the recording may lose
            # its last moments to the # that ends it)
            pad.send_audio(b"\xff" * 4000 + tones + b"\xff" * 4000)
            pad.press("#")
        # No messages: the options menu follows; 1 records the standard greeting.
        audio = subscriber_call(d, [
            (heard("login"), "1004#"),
            (heard("vm-password.wav"), "5071#"),
            (heard("vm-no.wav", "vm-messages.wav"), "1"),
            (beep_after("record-after-tone"), speak),
            (heard("vm-saved.wav"), "0"),
        ])
        contains_in_order(audio, ("vm-youhave", prompt_ulaw("vm-youhave.wav")),
                          ("vm-no", prompt_ulaw("vm-no.wav")),
                          ("record-after-tone", generated_ulaw("record-after-tone")),
                          ("vm-saved", prompt_ulaw("vm-saved.wav")),
                          ("vm-goodbye", prompt_ulaw("vm-goodbye.wav")))
        assert d.ok("mailbox show 1004")["greetings"] & 1, d.ok("mailbox show 1004")
        d.wait_log(r"mailbox 1004: greeting recorded")
        # A forwarded caller now hears that greeting (the tones, sample for sample), and not
        # the system greeting.
        rc, out, heard_audio = listen_call(d, "8000", DIV % "1004")
        assert rc == 0, out
        middle = tones[len(tones) // 3:2 * len(tones) // 3]
        i = heard_audio.find(middle)
        assert i >= 0, "the caller did not hear the new greeting"
        start = i - len(tones) // 3
        seg = [ulaw_to_linear(b) for b in heard_audio[start:start + len(tones)]]
        assert detect_tones(seg) == list(TONES), detect_tones(seg)
        assert heard_audio.find(prompt_ulaw("vm-theperson.wav")) < 0, "system greeting played"
        assert d.stop() == 0


def test_pin_change_policy():
    with VmDaemon() as d:
        d.start()
        d.wait_log(r"voicemail: \d+ prompts loaded")
        d.ok("mailbox add 1005 Finn Example")
        d.ok("mailbox pin 1005 5071")
        # 7 in the options: 1234 is refused as trivial, 5071 as used before, 3958 is taken.
        audio = subscriber_call(d, [
            (heard("login"), "1005#"),
            (heard("vm-password.wav"), "5071#"),
            (heard("vm-no.wav", "vm-messages.wav"), "7"),
            (heard("vm-newpassword.wav"), "1234#"),
            (heard("pin-trivial", ("vm-newpassword.wav", 2)), "5071#"),
            (heard("vm-reenterpassword.wav"), "5071#"),
            (heard("pin-reused", ("vm-newpassword.wav", 3)), "3958#"),
            (heard(("vm-reenterpassword.wav", 2)), "3958#"),
            (heard("vm-passchanged.wav"), "0"),
        ])
        contains_in_order(audio, ("pin-trivial", generated_ulaw("pin-trivial")),
                          ("pin-reused", generated_ulaw("pin-reused")),
                          ("vm-passchanged", prompt_ulaw("vm-passchanged.wav")),
                          ("vm-goodbye", prompt_ulaw("vm-goodbye.wav")))
        # The new PIN lets the subscriber in.
        audio = subscriber_call(d, [
            (heard("login"), "1005#"), (heard("vm-password.wav"), "3958#"),
            (heard("vm-no.wav", "vm-messages.wav"), "0"),
        ])
        contains_in_order(audio, ("vm-youhave", prompt_ulaw("vm-youhave.wav")))
        assert audio.find(prompt_ulaw("vm-incorrect.wav")) < 0
        assert d.stop() == 0


def test_wrong_pins_lock_across_calls():
    with VmDaemon(vm_extra="[store]\npin_attempts = 4\n") as d:
        d.start()
        d.wait_log(r"voicemail: \d+ prompts loaded")
        d.ok("mailbox add 1000 Alice Example")
        d.ok("mailbox pin 1000 4826")
        # Call 1: three wrong PINs; the call ends after the third.
        audio = subscriber_call(d, [
            (heard("login"), "1000#"), (heard("vm-password.wav"), "1111#"),
            (heard(("login", 2)), "1000#"), (heard(("vm-password.wav", 2)), "2222#"),
            (heard(("login", 3)), "1000#"), (heard(("vm-password.wav", 3)), "3333#"),
        ])
        assert audio.count(prompt_ulaw("vm-incorrect.wav")) == 3
        assert audio.find(prompt_ulaw("vm-youhave.wav")) < 0
        # Call 2: a fourth wrong PIN locks the mailbox; then even the right one is refused.
        audio = subscriber_call(d, [
            (heard("login"), "1000#"), (heard("vm-password.wav"), "9999#"),
            (heard(("login", 2)), "1000#"), (heard(("vm-password.wav", 2)), "4826#"),
        ])
        contains_in_order(audio, ("vm-incorrect", prompt_ulaw("vm-incorrect.wav")),
                          ("locked", generated_ulaw("locked")),
                          ("vm-goodbye", prompt_ulaw("vm-goodbye.wav")))
        assert audio.find(prompt_ulaw("vm-youhave.wav")) < 0
        # The administrator unlocks it: the right PIN lets the subscriber in.
        d.ok("mailbox unlock 1000")
        audio = subscriber_call(d, [
            (heard("login"), "1000#"), (heard("vm-password.wav"), "4826#"),
            (heard("vm-no.wav", "vm-messages.wav"), "0"),
        ])
        contains_in_order(audio, ("vm-youhave", prompt_ulaw("vm-youhave.wav")),
                          ("vm-no", prompt_ulaw("vm-no.wav")),
                          ("vm-messages", prompt_ulaw("vm-messages.wav")))
        assert d.stop() == 0



# --- deposit: keys during the greeting, review, minimum length, commit failure ---------------

def linear(audio):
    return [ulaw_to_linear(b) for b in audio]


def silence_ulaw(ms):
    return b"\xff" * (8 * ms)


def speak(ulaw, doc):
    """An action: sends the audio (after half a second of silence), then #."""
    def act(pad):
        pad.send_audio(silence_ulaw(500) + ulaw)
        pad.press("#")
    act.__doc__ = doc
    return act


def test_operator_from_greeting():
    # 0 during the greeting: "please hold", then a blind transfer (REFER) to [voicemail]
    # operator, which sipp checks names sip:7100@; no beep, nothing stored.
    with VmDaemon(vm_extra="operator = 7100\n",
                  sip_extra="proxy = sip:127.0.0.1:%d\n" % free_port()) as d:
        d.start()
        d.wait_log(r"voicemail: \d+ prompts loaded")
        d.ok("mailbox add 1000 Alice Example")
        audio = subscriber_call(d, [(heard("vm-theperson.wav"), "0")], div=DIV % "1000",
                                refer="7100")
        contains_in_order(audio, ("vm-theperson", prompt_ulaw("vm-theperson.wav")),
                          ("pls-hold-while-try", prompt_ulaw("pls-hold-while-try.wav")))
        assert 1000 not in detect_tones(linear(audio)), "a beep was played"
        d.wait_log(r"voicemail: transfer done")
        assert d.messages("1000") == []
        assert d.stop() == 0


def test_star_from_greeting_logs_in():
    # * during a mailbox's greeting: the subscriber of that mailbox, so only the PIN is asked.
    with VmDaemon() as d:
        d.start()
        d.wait_log(r"voicemail: \d+ prompts loaded")
        d.ok("mailbox add 1000 Alice Example")
        d.ok("mailbox pin 1000 4826")
        audio = subscriber_call(d, [
            (heard("vm-theperson.wav"), "*"),
            (heard("vm-password.wav"), "4826#"),
            (heard("vm-no.wav", "vm-messages.wav"), "0"),
        ], div=DIV % "1000")
        contains_in_order(audio, ("vm-password", prompt_ulaw("vm-password.wav")),
                          ("vm-youhave", prompt_ulaw("vm-youhave.wav")),
                          ("vm-no", prompt_ulaw("vm-no.wav")),
                          ("vm-goodbye", prompt_ulaw("vm-goodbye.wav")))
        assert audio.find(generated_ulaw("login")) < 0, "the mailbox number was asked"
        d.wait_log(r"mailbox 1000: subscriber logged in")
        assert d.stop() == 0


def test_review_menu():
    # After #: 2 plays the recording back (the caller hears the tones), 3 records again (a
    # 2200 Hz tone this time), 4 marks it urgent, 1 sends: "message saved", and the store holds
    # one urgent message with the second recording only.
    second = bytes(linear_to_ulaw(x) for x in tone(2200, 800))

    def after_review(n):
        def cond(audio):
            i = -1
            for _ in range(n):
                i = audio.find(prompt_ulaw("vm-review-urgent.wav"), i + 1)
                if i < 0:
                    return False
            return i
        return cond

    def heard_back(audio):
        i = after_review(1)(audio)
        return i is not False and detect_tones(linear(audio[i:])) == list(TONES)
    with VmDaemon() as d:
        d.start()
        d.wait_log(r"voicemail: \d+ prompts loaded")
        d.ok("mailbox add 1000 Alice Example")
        audio = subscriber_call(d, [
            (heard("vm-theperson.wav"), "#"),
            (beep_after("vm-theperson.wav"), speak(tones_ulaw(), "records the tones, then #")),
            (heard("vm-review-urgent.wav"), "2"),
            (heard_back, "3"),
            (lambda a: after_review(1)(a) is not False and 1000 in detect_tones(
                linear(a[after_review(1)(a):])), speak(second, "records 2200 Hz, then #")),
            (heard(("vm-review-urgent.wav", 2)), "4"),
            (heard("vm-marked-urgent.wav"), "1"),
        ], div=DIV % "1000")
        contains_in_order(audio, ("vm-review-urgent", prompt_ulaw("vm-review-urgent.wav")),
                          ("vm-review-urgent", prompt_ulaw("vm-review-urgent.wav")),
                          ("vm-marked-urgent", prompt_ulaw("vm-marked-urgent.wav")),
                          ("vm-msgsaved", prompt_ulaw("vm-msgsaved.wav")),
                          ("vm-goodbye", prompt_ulaw("vm-goodbye.wav")))
        msgs = d.messages("1000")
        assert len(msgs) == 1, msgs
        assert "urgent" in msgs[0]["flags"], msgs
        assert detect_tones(d.export(msgs[0]["id"]), freqs=TONES + (1000, 2200)) == [2200]
        assert d.stop() == 0


def test_too_short_recordings_dropped():
    # min_message 3 s: # after a moment gets "too short" and a new beep; a caller who hangs
    # up right after it leaves nothing.
    with VmDaemon(vm_extra="min_message = 3s\n") as d:
        d.start()
        d.wait_log(r"voicemail: \d+ prompts loaded")
        d.ok("mailbox add 1000 Alice Example")

        def hang_up(pad):
            """the call is hung up (from the daemon's side) just after the second beep"""
            d.hang_up_all()
        audio = subscriber_call(d, [
            (heard("vm-theperson.wav"), "#"),
            (beep_after("vm-theperson.wav"), "#"),
            (beep_after("vm-tooshort.wav"), hang_up),
        ], div=DIV % "1000")
        contains_in_order(audio, ("vm-tooshort", prompt_ulaw("vm-tooshort.wav")))
        assert audio.find(prompt_ulaw("vm-msgsaved.wav")) < 0
        d.wait_log(r"mailbox 1000: caller hung up, recording too short: dropped")
        assert d.messages("1000") == []
        assert d.stop() == 0


def test_commit_failure_never_says_saved():
    # Mailbox 1001 takes one message.  Caller A starts recording when it is empty; meanwhile
    # caller B leaves a message; A sends: the store refuses A's commit (quota), and A hears
    # "the mailbox is full", never "message saved".  Only B's message is stored.
    scen, pcap = deposit_scenario()
    with VmDaemon(vm_extra="silence = 0\n") as d:
        d.start()
        d.wait_log(r"voicemail: \d+ prompts loaded")
        d.ok("mailbox add 1001 Bob Example")
        d.ok("mailbox set 1001 quota_messages 1")

        def other_caller(pad):
            """while A records, caller B leaves a message; then A presses #"""
            rc, out = sipp(scen, d.port, "8000", keys={"div": DIV % "1001"})
            assert rc == 0, out
            wait_for(lambda: len(d.messages("1001")) == 1, 20, "B's message")
            pad.press("#")
        audio = subscriber_call(d, [
            (heard("vm-theperson.wav"), "#"),
            (beep_after("vm-theperson.wav"), other_caller),
            (heard("vm-review-urgent.wav"), "1"),
        ], div=DIV % "1001", timeout=90)
        contains_in_order(audio, ("vm-review-urgent", prompt_ulaw("vm-review-urgent.wav")),
                          ("vm-mailboxfull", prompt_ulaw("vm-mailboxfull.wav")),
                          ("vm-goodbye", prompt_ulaw("vm-goodbye.wav")))
        assert audio.find(prompt_ulaw("vm-msgsaved.wav")) < 0, "'message saved' was said"
        msgs = d.messages("1001")
        assert len(msgs) == 1, msgs
        check_message(d, msgs[0])  # B's: the tone sequence
        d.wait_log(r"for mailbox 1001 not saved: ")
        assert d.stop() == 0
    os.unlink(scen)
    os.unlink(pcap)


def test_store_away_offers_a_deposit():
    # Role call: the store cannot be reached.  A subscriber calling in hears that the messages
    # cannot be reached and is offered to leave a message; the deposit then says (truthfully)
    # that no message can be taken now, and never "saved".
    with VmDaemon(role="call") as d:
        d.start()
        d.wait_log(r"voicemail: \d+ prompts loaded")
        audio = subscriber_call(d, [(heard("offer-deposit"), "1000#")])
        contains_in_order(audio, ("im-sorry", prompt_ulaw("im-sorry.wav")),
                          ("messages-unavailable", generated_ulaw("messages-unavailable")),
                          ("offer-deposit", generated_ulaw("offer-deposit")),
                          ("im-sorry", prompt_ulaw("im-sorry.wav")),
                          ("store-unavailable", generated_ulaw("store-unavailable")),
                          ("vm-goodbye", prompt_ulaw("vm-goodbye.wav")))
        assert audio.find(prompt_ulaw("vm-msgsaved.wav")) < 0, "'message saved' was said"
        assert 1000 not in detect_tones(linear(audio)), "a beep was played"
        d.wait_log(r"store away: the caller leaves a message for 1000")
        assert d.stop() == 0


def test_key_map_conflicts_stop_the_start():
    with VmDaemon(vm_extra="key_save = 7\nkey_end = x\n[module:voicemail]\nrequired = yes\n") \
            as d:
        status, out = run_callvoxd(["--foreground", "--config", d.conf_path])
        assert status != 0, out
        with open(d.conf_path) as f:
            lines = f.read().split("\n")
        save = lines.index("key_save = 7") + 1
        end = lines.index("key_end = x") + 1
        want = ("%s:%d: [voicemail] key_save: key 7 is already key_delete (default) in the "
                "message menu" % (d.conf_path, save))
        assert want in out, out
        want = ("%s:%d: [voicemail] key_end: 'x' is not one or more of 0-9, * and #"
                % (d.conf_path, end))
        assert want in out, out

DEPOSIT = [test_deposit_through_diversion, test_mailbox_full, test_unknown_mailbox_not_in_service,
           test_store_unavailable, test_fifty_callers_one_mailbox,
           test_missing_prompt_stops_the_start, test_key_map_conflicts_stop_the_start,
           test_operator_from_greeting, test_star_from_greeting_logs_in, test_review_menu,
           test_too_short_recordings_dropped, test_commit_failure_never_says_saved,
           test_store_away_offers_a_deposit]
# Two ctest entries (test_voicemail_subscriber, test_voicemail_mailbox), so that ctest -j runs
# them side by side: each test spends its time waiting for audio in real time, not computing.
SUBSCRIBER = [test_login_hears_the_message, test_forward_with_introduction,
              test_rewind_during_playback, test_delete_and_undelete]
MAILBOX = [test_greeting_change, test_pin_change_policy, test_wrong_pins_lock_across_calls]

if __name__ == "__main__":
    if not have_all():
        print("SKIP: needs sip.so, voicemail.so, sipp and %s" % PROMPTS)
        sys.exit(77)
    main(DEPOSIT)
