"""Auto attendant and call records (issue 8, items 1 and 3), with real peers: callvoxd (role
all: store, SIP driver, voicemail, attendant) on ephemeral loopback ports, sipp as the caller
(INVITE, ACK, and the REFER of a transfer, whose Refer-To it checks), RTP and RFC 4733 digits
sent by the test itself (vmtest.Keypad, as the voicemail subscriber tests do), and what the
caller hears captured from RTP.

Menu greetings are recorded files written by the test: noise from distinct seeds, so that the
exact bytes the caller receives tell which menu played and how many times.  Every call must
leave one call record, in the CSV file and in the JSON-lines file, with its call id.

Exit status 77 (skipped) when sip.so, attendant.so, sipp or the prompt set is missing.
"""
import calendar
import csv
import io
import json
import os
import random
import shutil
import socket
import struct
import sys
import time
import wave

import vmtest
from cvxtest import main, wait_for
from vmtest import MODULES, RATE, Keypad, finish, linear_to_ulaw, sipp, write_scenario

HERE = os.path.dirname(os.path.abspath(__file__))
SCEN = os.path.join(HERE, "scenarios")


def have_all():
    return vmtest.have_all() and os.path.exists(os.path.join(MODULES, "attendant.so"))


def noise(seed, ms=1200, level=3000):
    r = random.Random(seed)
    return [int(r.uniform(-level, level)) for _ in range(RATE * ms // 1000)]


def write_wav(path, samples):
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(struct.pack("<%dh" % len(samples), *samples))


class AttDaemon(vmtest.VmDaemon):
    """VmDaemon plus attendant.so on 800, menus with recorded greetings, and call records."""

    GREETINGS = {"day": 11, "night": 22, "holiday": 33, "sales": 44}

    def __init__(self, att_extra="", menus_extra=""):
        greet_dir = vmtest.tempfile.mkdtemp(prefix="cvx-attgreet-")
        self.greet_dir = greet_dir
        self.greeting = {}
        for name, seed in self.GREETINGS.items():
            path = os.path.join(greet_dir, name + ".wav")
            samples = noise(seed)
            write_wav(path, samples)
            # The middle 400 ms as the caller receives it (mu-law): what "heard" looks for.
            mid = samples[len(samples) // 3:len(samples) // 3 + RATE * 400 // 1000]
            self.greeting[name] = bytes(linear_to_ulaw(s) for s in mid)
        conf = (
            "[cdr]\ncsv = cdr.csv\njson = /%%DATA%%/cdr.json\n"
            "[attendant]\nnumber = 800\nschedule = office\noperator = 1000\n"
            "voicemail = 8000\ntimeout = 2s\ninter_digit = 2s\nretries = 3\n%s"
            "[schedule:office]\ntimezone = America/New_York\n"
            "open = mon-fri 08:00-18:00\nholiday = 12-25\nholiday = 2026-11-26\n"
            "open_menu = day\nclosed_menu = night\nholiday_menu = holiday\n"
            "[menu:day]\ngreeting = %s/day.wav\nkey_7 = menu sales\nkey_3 = message 1001\n"
            "key_9 = directory\nkey_8 = directory first\nkey_0 = operator\nkey_pound = hangup\n%s"
            "[menu:night]\ngreeting = %s/night.wav\nkey_9 = directory\nkey_pound = hangup\n"
            "dial_extension = no\n"
            "[menu:holiday]\ngreeting = %s/holiday.wav\nkey_pound = hangup\n"
            "[menu:sales]\ngreeting = %s/sales.wav\nkey_2 = transfer 1002\nkey_star = menu day\n"
            % (att_extra, greet_dir, menus_extra, greet_dir, greet_dir, greet_dir))
        vmtest.VmDaemon.__init__(self, vm_extra=conf)
        shutil.copy(os.path.join(MODULES, "attendant.so"), self.mods)
        with open(self.conf_path) as f:
            text = f.read().replace("/%DATA%", self.data_dir)
        with open(self.conf_path, "w") as f:
            f.write(text)
        # Transfers to bare numbers need the trunk's proxy; the REFER names it in Refer-To.
        os.makedirs(os.path.join(self.dir, "conf.d"), exist_ok=True)
        with open(os.path.join(self.dir, "conf.d", "proxy.conf"), "w") as f:
            f.write("[sip:pbx]\nproxy = sip:127.0.0.1:5999\n")

    def close(self):
        vmtest.VmDaemon.close(self)
        shutil.rmtree(self.greet_dir, ignore_errors=True)

    def csv_records(self):
        path = os.path.join(self.data_dir, "cdr.csv")
        if not os.path.exists(path):
            return []
        with open(path, newline="") as f:
            return list(csv.DictReader(f))

    def json_records(self):
        path = os.path.join(self.data_dir, "cdr.json")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def record(self, call_id):
        """The call's record, once it is in both files; checks that they agree."""
        def both():
            c = [r for r in self.csv_records() if r["call_id"] == call_id]
            j = [r for r in self.json_records() if r["call_id"] == call_id]
            return (c, j) if c and j else None
        c, j = wait_for(both, 10, "the call record of %s" % call_id)
        assert len(c) == 1 and len(j) == 1, (c, j)
        c, j = c[0], j[0]
        for k, v in c.items():
            jv = j[k]
            assert (jv if jv is not None else "") == v or str(jv) == v, (k, v, jv)
        return j


def at(y, mo, d, h, mi):
    """Seconds since the epoch of a UTC time."""
    return calendar.timegm((y, mo, d, h, mi, 0))


def heard(audio, clip):
    return audio.find(clip) >= 0


def att_call(d, steps, target=None, timeout=60, service="800", env_note=""):
    """Calls the attendant as a caller that sends RTP and RFC 4733 digits from the socket its
    SDP names.  steps: (condition on the audio heard so far, digits to press), in order.  With
    target, sipp expects a REFER to it; otherwise the daemon's BYE.  Returns (audio, call id)."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    if target:
        with open(os.path.join(SCEN, "uac_refer.xml")) as f:
            text = f.read().replace("@PORT@", str(rx.getsockname()[1]))
        text = text.replace("@TARGET@", target)
        fd, scen = vmtest.tempfile.mkstemp(prefix="cvx-attscen-", suffix=".xml")
        with os.fdopen(fd, "w") as f:
            f.write(text)
    else:
        scen = write_scenario("uac_listen.xml", PORT=rx.getsockname()[1])
    p = sipp(scen, d.port, service, background=True, timeout=timeout)
    audio = bytearray()
    pad = None
    call_id = None
    deadline = time.monotonic() + timeout
    try:
        def media():
            calls = d.ok("show calls media")["calls"]
            return calls[0] if calls else None
        row = wait_for(media, 15, "the call's RTP port")
        call_id = d.ok("show calls")["calls"][0]["id"]
        pad = Keypad(rx, int(row["port"]))
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
            if steps and time.monotonic() - checked > 0.2:
                checked = time.monotonic()
                if steps[0][0](bytes(audio)):
                    action = steps.pop(0)[1]
                    if callable(action):
                        action(pad)
                    elif action:
                        pad.press(action)
        assert not steps, "the call ended before every step was taken (%d left)" % len(steps)
    finally:
        if pad:
            pad.stop()
        rc, out = finish(p)
        rx.close()
        os.unlink(scen)
    assert rc == 0, out
    return bytes(audio), call_id


def stop_clean(d):
    """Stops the daemon with SIGTERM: it exits 0 (under ASan, also without leaks)."""
    rc = d.stop()
    assert rc == 0, "callvoxd exited %s:\n%s" % (rc, d.log()[-4000:])


def check_record(d, call_id, **want):
    r = d.record(call_id)
    assert r["application"] == want.pop("application", "attendant"), r
    assert r["instance"] == "sip:pbx" and r["direction"] == "in", r
    assert r["called"] == "800", r
    assert r["start"] and r["answer"] and r["end"], r
    assert r["start"] <= r["answer"] <= r["end"], r
    assert r["duration_ms"] > 0, r
    for k, v in want.items():
        assert r[k] == v, (k, v, r)
    # The call id of the record is the one the log lines about the call carry.
    assert call_id in d.log(), call_id
    return r


# --- tests ------------------------------------------------------------------------------------

def test_schedule_picks_menu():
    """The schedule (America/New_York) picks the menu: open hours, night, holiday (a date and
    a day every year).  The times are chosen so that reading them as UTC would pick wrongly."""
    cases = [
        ("Wednesday 09:30 in New York (14:30 UTC)", at(2026, 11, 25, 14, 30), "day"),
        ("Wednesday 07:30 in New York (12:30 UTC: open if read as UTC)",
         at(2026, 11, 25, 12, 30), "night"),
        ("Wednesday 17:30 in New York (22:30 UTC: closed if read as UTC)",
         at(2026, 11, 25, 22, 30), "day"),
        ("Thursday 2026-11-26 10:00 in New York, a dated holiday", at(2026, 11, 26, 15, 0),
         "holiday"),
        ("Tuesday 2029-12-25 (12-25, every year) 11:00 in New York", at(2029, 12, 25, 16, 0),
         "holiday"),
        ("Saturday 10:00 in New York", at(2026, 11, 28, 15, 0), "night"),
    ]
    for what, t, menu in cases:
        d = AttDaemon()
        try:
            d.start(extra_env={"CVX_ATTENDANT_TEST_NOW": str(t)})
            g = d.greeting[menu]
            shown = d.ok("show attendant")
            assert shown["menu_now"] == menu and shown["schedule"] == "office", shown
            assert shown["timezone"] == "America/New_York", shown
            assert [m["menu"] for m in shown["menus"]] == ["day", "night", "holiday", "sales"]
            audio, cid = att_call(d, [(lambda a, g=g: heard(a, g), "#")])
            for other, clip in d.greeting.items():
                assert heard(audio, clip) == (other == menu), (what, other, menu)
            check_record(d, cid, outcome="hangup", transfer_to="", hangup_cause="normal")
            print("  %s: menu %s" % (what, menu))
            stop_clean(d)
        finally:
            d.close()


def open_daemon(**kw):
    d = AttDaemon(**kw)
    d.start(extra_env={"CVX_ATTENDANT_TEST_NOW": str(at(2026, 11, 25, 15, 0))})
    return d


def test_dial_by_extension():
    """In the day menu, 1002# is checked against the directory and transferred (REFER to
    1002); a submenu key (7) then its transfer key (2) reach 1002 too."""
    d = open_daemon()
    try:
        for n, first, last in (("1001", "John", "Smith"), ("1002", "Jane", "Smithers")):
            d.ok("mailbox add %s %s %s" % (n, first, last))
        day = d.greeting["day"]
        audio, cid = att_call(d, [(lambda a: heard(a, day), "1002#")], target="1002")
        check_record(d, cid, outcome="transfer", transfer_to="1002", mailbox="")
        # key 1: the sales menu; its key 2: transfer 1002
        sales = d.greeting["sales"]
        audio, cid = att_call(d, [(lambda a: heard(a, day), "7"),
                                  (lambda a: heard(a, sales), "2")], target="1002")
        check_record(d, cid, outcome="transfer", transfer_to="1002")
        stop_clean(d)
    finally:
        d.close()


def test_dial_by_name_two_matches():
    """9 (directory), then 7 6 4 (S M I): Smith and Smithers match; both are read out ("for
    extension ... press 1", "... press 2") and 2 transfers to the second (Smith, 1001:
    entries come in keypad order, SMITHERSJANE before SMITHJOHN)."""
    d = open_daemon()
    try:
        for n, first, last in (("1001", "John", "Smith"), ("1002", "Jane", "Smithers"),
                               ("1003", "Bob", "Jones")):
            d.ok("mailbox add %s %s %s" % (n, first, last))
        press = vmtest.prompt_ulaw("vm-press.wav")[800:2400]
        intro = vmtest.prompt_ulaw("dir-intro.wav")[4000:6000]
        day = d.greeting["day"]
        audio, cid = att_call(d, [(lambda a: heard(a, day), "9"),
                                  (lambda a: heard(a, intro), "764"),
                                  (lambda a: a.count(press) >= 2, "2")], target="1001")
        assert audio.count(press) == 2, audio.count(press)
        check_record(d, cid, outcome="transfer", transfer_to="1001")
        stop_clean(d)
    finally:
        d.close()


def test_dial_by_first_name():
    """8 (directory by first name), then 6 2 7 (M A R): Mary and Marc match, Bob Marlow (a
    last name starting M A R) does not; both are read out and 1 transfers to the first in
    number order (Mary, 1004)."""
    d = open_daemon()
    try:
        for n, first, last in (("1004", "Mary", "Adams"), ("1005", "Marc", "Brown"),
                               ("1006", "Bob", "Marlow")):
            d.ok("mailbox add %s %s %s" % (n, first, last))
        press = vmtest.prompt_ulaw("vm-press.wav")[800:2400]
        intro = vmtest.prompt_ulaw("dir-intro-fn.wav")[4000:6000]
        day = d.greeting["day"]
        audio, cid = att_call(d, [(lambda a: heard(a, day), "8"),
                                  (lambda a: heard(a, intro), "627"),
                                  (lambda a: a.count(press) >= 2, "1")], target="1004")
        assert audio.count(press) == 2, audio.count(press)
        check_record(d, cid, outcome="transfer", transfer_to="1004")
        stop_clean(d)
    finally:
        d.close()


def test_invalid_and_timeout_then_operator():
    """An unmapped key (invalid), no key at all (timeout), an extension that is not in the
    directory: three failures, then the operator (REFER to 1000).  The menu plays again after
    each of the first two."""
    d = open_daemon()
    try:
        d.ok("mailbox add 1001 John Smith")
        day = d.greeting["day"]
        invalid = vmtest.prompt_ulaw("invalid.wav")[1600:3200]
        again = vmtest.prompt_ulaw("please-try-again.wav")[800:2400]
        audio, cid = att_call(d, [(lambda a: a.count(day) >= 1, "*"),
                                  (lambda a: heard(a, invalid) and a.count(day) >= 2, None),
                                  (lambda a: heard(a, again) and a.count(day) >= 3, "1999#")],
                              target="1000")
        assert audio.count(day) == 3, audio.count(day)
        check_record(d, cid, outcome="operator", transfer_to="1000")
        stop_clean(d)
    finally:
        d.close()


def test_leave_message_through_voicemail():
    """Key 3 hands the call to voicemail for mailbox 1001 (in the same process): the caller
    hears 1001's greeting and the beep, speaks (the tone sequence), presses # then 1 (send);
    the message is in 1001 with the tones.  The one call record says attendant>voicemail,
    message-left, mailbox 1001, and keeps the number the caller dialed (800)."""
    d = open_daemon()
    try:
        d.ok("mailbox add 1001 John Smith")
        day = d.greeting["day"]

        def beep(a):
            """The voicemail's beep (1 kHz) in what was heard last."""
            tail = [vmtest.ulaw_to_linear(b) for b in a[-2400:]]
            return 1000 in vmtest.detect_tones(tail, freqs=(1000, 600, 1100, 1700))
        review = vmtest.prompt_ulaw("vm-review-urgent.wav")[2000:3600]

        def speak(pad):
            pad.send_audio(vmtest.tones_ulaw())
            pad.press("#")
        audio, cid = att_call(d, [(lambda a: heard(a, day), "3"),
                                  (beep, speak),
                                  (lambda a: heard(a, review), "1")])
        msgs = wait_for(lambda: d.messages("1001"), 10, "the message in 1001")
        assert len(msgs) == 1, msgs
        samples = d.export(msgs[0]["id"])
        assert vmtest.detect_tones(samples) == list(vmtest.TONES), vmtest.detect_tones(samples)
        check_record(d, cid, application="attendant>voicemail", outcome="message-left",
                     mailbox="1001", original_called="", transfer_to="")
        stop_clean(d)
    finally:
        d.close()


def test_records_reopened_on_reload():
    """Call records go on after the files are moved away and the daemon is told to reload
    (as logrotate does): the new CSV file starts with the header, and both files hold the next
    call's record only."""
    d = open_daemon()
    try:
        day = d.greeting["day"]
        _audio, first = att_call(d, [(lambda a: heard(a, day), "#")])
        check_record(d, first, outcome="hangup")
        for name in ("cdr.csv", "cdr.json"):
            os.rename(os.path.join(d.data_dir, name), os.path.join(d.data_dir, name + ".1"))
        d.ok("reload")
        d.wait_log("cdr: call record files reopened")
        assert os.path.exists(os.path.join(d.data_dir, "cdr.csv"))
        _audio, second = att_call(d, [(lambda a: heard(a, day), "#")])
        check_record(d, second, outcome="hangup")
        assert [r["call_id"] for r in d.csv_records()] == [second]
        assert [r["call_id"] for r in d.json_records()] == [second]
        with open(os.path.join(d.data_dir, "cdr.csv")) as f:
            assert f.readline().startswith("call_id,instance,direction,start,answer,end,")
        with open(os.path.join(d.data_dir, "cdr.csv.1")) as f:
            old = list(csv.DictReader(f))
        assert [r["call_id"] for r in old] == [first], old
        stop_clean(d)
    finally:
        d.close()


def test_abandoned_and_unanswered_records():
    """Callers who hang up in the middle of the flow (during the greeting, in the directory
    prompt, while the matches are read out, while an extension is dialed): one record each,
    outcome abandoned, hangup cause normal, and the daemon stops cleanly (no leak under ASan).
    A call no application takes (404): one record, unanswered, no answer time."""
    d = open_daemon()
    try:
        d.ok("mailbox add 1001 John Smith")
        d.ok("mailbox add 1002 Jane Smithers")
        for pause, keys in ((600, ""), (2500, "9"), (4000, "9764"), (2500, "100")):
            rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            rx.bind(("127.0.0.1", 0))
            with open(os.path.join(SCEN, "uac_hangup.xml")) as f:
                text = f.read().replace("@PORT@", str(rx.getsockname()[1]))
            fd, scen = vmtest.tempfile.mkstemp(prefix="cvx-attscen-", suffix=".xml")
            with os.fdopen(fd, "w") as f:
                # The first caller's name needs quoting in CSV (a comma, a quote).
                name = '"Doe, \\"JJ\\""' if pause == 600 else "sipp"
                f.write(text.replace("@PAUSE@", str(pause)).replace("@NAME@", name))
            p = sipp(scen, d.port, "800", background=True, timeout=30)
            pad = None
            try:
                row = wait_for(lambda: (d.ok("show calls media")["calls"] or [None])[0], 15,
                               "the call")
                cid = d.ok("show calls")["calls"][0]["id"]
                pad = Keypad(rx, int(row["port"]))
                pad.start()
                if keys:
                    pad.press(keys)
            finally:
                if pad:
                    pad.stop()
                rc, out = finish(p)
                rx.close()
                os.unlink(scen)
            assert rc == 0, out
            r = check_record(d, cid, outcome="abandoned", transfer_to="", hangup_cause="normal")
            if pause == 600:
                assert r["calling_name"].startswith('Doe, ') and '"' in r["calling_name"], r
            wait_for(lambda: not d.ok("show calls")["calls"], 10, "no call left")
        rc, out = sipp(os.path.join(vmtest.HERE, "..", "sip", "scenarios", "uac_refused_404.xml"),
                       d.port, "555")
        assert rc == 0, out
        recs = wait_for(lambda: [r for r in d.json_records() if r["called"] == "555"], 10,
                        "the record of the refused call")
        assert len(recs) == 1, recs
        r = recs[0]
        assert r["outcome"] == "unanswered" and r["answer"] is None and r["end"], r
        assert r["duration_ms"] == 0 and r["application"] == "", r
        assert r["hangup_cause"] == "no-route", r
        stop_clean(d)
    finally:
        d.close()


def test_bad_configuration():
    """A menu naming a menu that does not exist, a bad period and a bad action stop the start
    with file:line errors."""
    d = AttDaemon(att_extra="", menus_extra="key_5 = menu nowhere\nkey_6 = dance\n")
    try:
        with open(d.conf_path, "a") as f:
            f.write("[module:attendant]\nrequired = yes\n[schedule:bad]\nopen = someday 08:00-09:00\nopen_menu = day\n"
                    "closed_menu = night\n")
        p = vmtest.subprocess.run(
            [os.path.join(vmtest.BUILD, "bin", "callvoxd"), "--check-config", "--config",
             d.conf_path], stdout=vmtest.subprocess.PIPE, stderr=vmtest.subprocess.STDOUT,
            timeout=30)
        out = p.stdout.decode()
        assert p.returncode == 2, out
        assert "[menu:day] key_5: no [menu:nowhere] is defined" in out, out
        assert "[menu:day] key_6: 'dance' is not an action" in out, out
        assert "[schedule:bad] open: 'someday 08:00-09:00' is not DAYS HH:MM-HH:MM" in out, out
    finally:
        d.close()


if __name__ == "__main__":
    if not have_all():
        print("skipped: sip.so, attendant.so, sipp or the prompt set is missing")
        sys.exit(77)
    main([test_schedule_picks_menu, test_dial_by_extension, test_dial_by_name_two_matches,
          test_dial_by_first_name, test_invalid_and_timeout_then_operator,
          test_leave_message_through_voicemail,
          test_records_reopened_on_reload, test_abandoned_and_unanswered_records,
          test_bad_configuration])
