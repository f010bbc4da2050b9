"""Voicemail with real peers, the rest of the subscriber conversation (issue 7):

 - greeting choice: greetings recorded by phone (each a tone of its own) are what forwarded
   callers hear: temporary (with an end date chosen by phone: the store holds it, the
   subscriber hears until when) > extended absence (recorded as refusing messages: the caller
   hears it, then goodbye, no beep, nothing stored) > busy or no answer by the Diversion
   reason > standard;
 - reply and call back: a reply recorded to a message from a local mailbox lands in that
   mailbox (from the replying one, holding what was recorded); a message from an outside
   number cannot be replied to ("not a local mailbox"), and its sender is called back by a
   blind transfer sipp checks (REFER to that number);
 - PIN lockouts back off: with pin_attempts 1 and pin_lockout 1 s, three wrong PINs lock the
   mailbox for 1, 2 then 4 s (the store's lock, through the shell); each lock runs out by
   itself; the administrator's unlock clears the count;
 - the key map remapped in the configuration: the menu says the new keys, and they act.
"""
import sys
import time

from cvxtest import main, wait_for
from test_voicemail import (DIV, contains_in_order, deposit_scenario, generated_ulaw, heard,
                            beep_after, linear, silence_ulaw)
from vmtest import (PROMPTS, VmDaemon, detect_tones, free_port, have_all, linear_to_ulaw,
                    prompt_ulaw, sipp, subscriber_call, tone)

# One tone per greeting (none is DTMF, the 1 kHz beep or the deposit tones).
GREET = {"standard": 500, "busy": 650, "no-answer": 1150, "temporary": 1850, "extended": 2300}
FREQS = tuple(GREET.values()) + (1000,)


def record(freq):
    """An action: records a tone as the greeting, then #."""
    def act(pad):
        pad.send_audio(silence_ulaw(500) + bytes(linear_to_ulaw(x) for x in tone(freq, 1000)))
        pad.press("#")
    act.__doc__ = "records %d Hz, then #" % freq
    return act


def forwarded_caller_hears(d, mailbox, reason, beep=True):
    """A caller forwarded to mailbox with that Diversion reason: the tones heard until the beep
    (then the call is hung up from the daemon's side) or, with beep False, until the daemon
    hangs up."""
    def hang_up(pad):
        """hangs up after the beep"""
        d.hang_up_all()
    steps = [(lambda a: 1000 in detect_tones(linear(a), FREQS), hang_up)] if beep else []
    audio = subscriber_call(d, steps, div="<sip:%s@127.0.0.1>;reason=%s" % (mailbox, reason))
    return detect_tones(linear(audio), FREQS), audio


def test_greeting_choice():
    with VmDaemon() as d:
        d.start()
        d.wait_log(r"voicemail: \d+ prompts loaded")
        d.ok("mailbox add 1012 Gina Example")
        d.ok("mailbox pin 1012 5071")
        login = [(heard("login"), "1012#"), (heard("vm-password.wav"), "5071#")]
        # One call records the standard, busy, no-answer, temporary (2 days) and extended
        # absence (refusing messages) greetings.
        audio = subscriber_call(d, login + [
            (heard("options-intro"), "1"),
            (beep_after("record-after-tone"), record(GREET["standard"])),
            (heard("vm-saved.wav"), "2"),
            (beep_after("record-after-tone", 2), record(GREET["busy"])),
            (heard(("vm-saved.wav", 2)), "3"),
            (beep_after("record-after-tone", 3), record(GREET["no-answer"])),
            (heard(("vm-saved.wav", 3)), "4"),
            (heard("temp-days"), "2#"),
            (beep_after("record-after-tone", 4), record(GREET["temporary"])),
            (heard(("vm-saved.wav", 4), "temp-until"), "8"),
            (heard("extended-menu"), "1"),
            (heard("extended-refuse"), "2"),
            (beep_after("record-after-tone", 5), record(GREET["extended"])),
            (heard(("vm-saved.wav", 5)), "0"),
        ], timeout=120)
        recorded_at = time.time() * 1000
        contains_in_order(audio, ("temp-days", generated_ulaw("temp-days")),
                          ("vm-saved", prompt_ulaw("vm-saved.wav")),
                          ("temp-until", generated_ulaw("temp-until")),
                          ("extended-refuse", generated_ulaw("extended-refuse")))
        mb = d.mailbox("1012")
        assert mb["greetings"] == 0b11111, mb  # standard, busy, no answer, extended, temporary
        assert mb["greeting_flags"] == 1, mb  # the extended absence greeting refuses messages
        two_days = 2 * 86400 * 1000
        assert abs(mb["temporary_until_ms"] - (recorded_at + two_days)) < 120000, mb
        # The temporary greeting comes first, whatever the reason.
        tones, _ = forwarded_caller_hears(d, "1012", "user-busy")
        assert tones == [GREET["temporary"], 1000], tones
        # Temporary greeting off: the extended absence greeting, then goodbye; no beep.
        subscriber_call(d, login + [(heard("options-intro"), "5"),
                                    (heard("vm-tempremoved.wav"), "0")])
        before = len(d.messages("1012"))  # (a caller hung up at the beep may have left one)
        tones, audio = forwarded_caller_hears(d, "1012", "no-answer", beep=False)
        assert tones == [GREET["extended"]], tones
        contains_in_order(audio, ("vm-goodbye", prompt_ulaw("vm-goodbye.wav")))
        d.wait_log(r"mailbox 1012: extended absence: no messages taken")
        assert len(d.messages("1012")) == before
        # Extended absence off: the greeting of the redirect reason, else the standard one.
        subscriber_call(d, login + [(heard("options-intro"), "8"), (heard("extended-menu"), "2"),
                                    (heard("extended-off"), "0")])
        for reason, greeting in (("user-busy", "busy"), ("no-answer", "no-answer"),
                                 ("unconditional", "standard")):
            tones, _ = forwarded_caller_hears(d, "1012", reason)
            assert tones == [GREET[greeting], 1000], (reason, tones)
        assert d.mailbox("1012")["greetings"] == 0b111
        assert d.stop() == 0


def test_reply_and_call_back():
    # Mailbox 1011 has a message from mailbox 1010, then one from 5551234.
    first, pcap1 = deposit_scenario(calling="1010")
    second, pcap2 = deposit_scenario(calling="5551234")
    reply = bytes(linear_to_ulaw(x) for x in tone(2200, 800))
    with VmDaemon(sip_extra="proxy = sip:127.0.0.1:%d\n" % free_port()) as d:
        d.start()
        d.wait_log(r"voicemail: \d+ prompts loaded")
        d.ok("mailbox add 1010 Ann Example")
        d.ok("mailbox add 1011 Ben Example")
        d.ok("mailbox pin 1011 5071")
        for scen, n in ((first, 1), (second, 2)):
            rc, out = sipp(scen, d.port, "8000", keys={"div": DIV % "1011"})
            assert rc == 0, out
            wait_for(lambda: len(d.messages("1011")) == n, 20, "message %d" % n)
        assert [m["from"] for m in d.messages("1011")] == ["1010", "5551234"]

        def speak(pad):
            """records the reply (2200 Hz), then #"""
            pad.send_audio(silence_ulaw(500) + reply)
            pad.press("#")
        # Message 1: * (reply menu), 1 reply.  Message 2: * 1 is refused (not local), * 2
        # calls 5551234: "please hold", then the REFER.
        audio = subscriber_call(d, [
            (heard("login"), "1011#"),
            (heard("vm-password.wav"), "5071#"),
            (heard("k-replay"), "*"),
            (heard("k-reply"), "1"),
            (beep_after("record-reply"), speak),
            (heard("reply-sent"), "6"),
            (heard(("k-replay", 2)), "*"),  # the menu after message 2
            (heard(("k-reply", 2)), "1"),
            (heard("not-local"), "*"),
            (heard(("k-reply", 3)), "2"),
        ], refer="5551234", timeout=150)
        contains_in_order(audio, ("reply-sent", generated_ulaw("reply-sent")),
                          ("not-local", generated_ulaw("not-local")),
                          ("pls-hold-while-try", prompt_ulaw("pls-hold-while-try.wav")))
        got = d.messages("1010")
        assert len(got) == 1 and got[0]["from"] == "1011" and got[0]["folder"] == "new", got
        assert detect_tones(d.export(got[0]["id"]), freqs=FREQS + (2200,)) == [2200]
        assert len(d.messages("1011")) == 2
        d.wait_log(r"mailbox 1011: calling the sender back")
        d.wait_log(r"voicemail: transfer done")
        assert d.stop() == 0


def test_lockout_backs_off():
    with VmDaemon(vm_extra="[store]\npin_attempts = 1\npin_lockout = 1s\n") as d:
        d.start()
        d.wait_log(r"voicemail: \d+ prompts loaded")
        d.ok("mailbox add 1013 Hana Example")
        d.ok("mailbox pin 1013 4826")
        pressed, locks = [], []

        def wrong_pin(pad):
            """types a wrong PIN; the time # leaves is noted"""
            pad.press("1111")
            wait_for(pad.idle, 10, "the digits sent")
            pressed.append(time.time() * 1000)
            pad.press("#")

        def lock_ran_out(count):
            def cond(audio):
                if not heard(("login", count))(audio):
                    return False
                mb = d.mailbox("1013")
                return 0 < mb["locked_until_ms"] < time.time() * 1000 and mb
            return cond

        def note_lock(pad):
            """the lock ran out by itself: its length is noted; the mailbox number again"""
            locks.append(d.mailbox("1013")["locked_until_ms"] - pressed[-1])
            pad.press("1013#")
        # Three wrong PINs in one call, each after the previous lock has run out.
        audio = subscriber_call(d, [
            (heard("login"), "1013#"), (heard("vm-password.wav"), wrong_pin),
            (lock_ran_out(2), note_lock), (heard(("vm-password.wav", 2)), wrong_pin),
            (lock_ran_out(3), note_lock), (heard(("vm-password.wav", 3)), wrong_pin),
        ])
        assert audio.count(prompt_ulaw("vm-incorrect.wav")) == 3
        assert audio.find(generated_ulaw("locked")) < 0, "a try was refused as locked"
        mb = wait_for(lambda: (lambda m: m if m["failed_logins"] == 3 else None)(
            d.mailbox("1013")), 10, "the third failure")
        locks.append(mb["locked_until_ms"] - pressed[-1])
        # 1 s, 2 s, 4 s (each measured from the moment # left, so a little longer).
        for lock, base in zip(locks, (1000, 2000, 4000)):
            assert base - 50 <= lock <= base + 1500, locks
        # The administrator's unlock clears the lock and the back-off.
        d.ok("mailbox unlock 1013")
        mb = d.mailbox("1013")
        assert mb["failed_logins"] == 0 and mb["locked_until_ms"] == 0, mb
        assert d.stop() == 0


def test_key_map_remapped():
    # key_delete = 3 and key_save = 7 (swapped): the menu says so, and 3 deletes.
    scen, pcap = deposit_scenario()
    with VmDaemon(vm_extra="key_delete = 3\nkey_save = 7\n") as d:
        d.start()
        d.wait_log(r"voicemail: \d+ prompts loaded")
        d.ok("mailbox add 1014 Ivan Example")
        d.ok("mailbox pin 1014 5071")
        rc, out = sipp(scen, d.port, "8000", keys={"div": DIV % "1014"})
        assert rc == 0, out
        wait_for(lambda: d.messages("1014"), 20, "the message")
        audio = subscriber_call(d, [
            (heard("login"), "1014#"),
            (heard("vm-password.wav"), "5071#"),
            (heard("k-undelete"), "3"),
            (heard("vm-deleted.wav"), "0"),
        ])
        for phrase, digit in (("k-save", "7"), ("k-delete", "3")):
            i = audio.find(generated_ulaw(phrase))
            assert i >= 0, phrase
            j = audio.find(prompt_ulaw("digits/%s.wav" % digit), i)
            # The key follows its phrase at once (within a packet).
            assert 0 <= j - (i + len(generated_ulaw(phrase))) <= 160, (phrase, i, j)
        assert [m["folder"] for m in d.messages("1014")] == ["deleted"]
        assert d.stop() == 0


FEATURES = [test_greeting_choice, test_reply_and_call_back, test_lockout_backs_off,
            test_key_map_remapped]

if __name__ == "__main__":
    if not have_all():
        print("SKIP: needs sip.so, voicemail.so, sipp and %s" % PROMPTS)
        sys.exit(77)
    main(FEATURES)
