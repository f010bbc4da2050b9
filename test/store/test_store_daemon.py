"""The message store inside callvoxd: started in roles all and system (not call), its [store]
section, a store from a newer callvox refused at start, and its shell commands through the
real callvox shell: mailbox add|del|show|list|set|unlock|import, message list|export,
store stats|backup|verify."""
import json
import os
import shutil
import signal
import struct
import subprocess
import tempfile

from cvxtest import BUILD, Daemon, main, run_callvoxd, wait_for

CALLVOX = os.path.join(BUILD, "bin", "callvox")
CRASHDEP = os.path.join(BUILD, "bin", "crashdep")


def x(d, command, json_=False):
    """Runs one command through the shell; returns (status, stdout, stderr)."""
    cmd = [CALLVOX, "-s", os.path.join(d.run_dir, "callvox.ctl")]
    if json_:
        cmd.append("--json")
    p = subprocess.run(cmd + ["-x", command], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def ok(d, command):
    rc, out, err = x(d, command)
    assert rc == 0, "%s: status %d\n%s%s" % (command, rc, out, err)
    return out


def fails(d, command, message, status=1):
    rc, out, err = x(d, command)
    assert rc == status and err == message + "\n", \
        "%s: status %d, stderr %r" % (command, rc, err)


def test_store_runs_in_roles_all_and_system_only():
    for role, runs in (("all", True), ("system", True), ("call", False)):
        with Daemon(role=role) as d:
            d.start()
            store = os.path.join(d.data_dir, "store")
            if runs:
                d.wait_log(r"message store %s open" % store)
                assert os.path.exists(os.path.join(store, "data.mdb"))
                assert "mailboxes:     0" in ok(d, "store stats")
            else:
                # A call server reaches the system server's store over the link; it keeps a
                # spool of its own, and administration of the store runs on the system server.
                assert not os.path.exists(store)
                d.wait_log(r"message store: remote \(over the link\), spool in %s"
                           % os.path.join(d.data_dir, "spool"))
                fails(d, "store stats",
                      "the message store is on the system server (this is a call server and "
                      "reaches it over the link): run this there")
                assert "0 messages waiting for the system server (link down)" in \
                    ok(d, "show spool")
            assert d.stop() == 0
            if runs:
                assert "message store %s closed" % store in d.log()


def test_store_section_is_checked():
    with Daemon("[store]\nmap_size = 0\nbogus = 1\n") as d:
        rc, out = run_callvoxd(["--check-config", "--config", d.conf_path])
        assert rc == 2, out
        lines = open(d.conf_path).read().splitlines()
        assert ("callvoxd: %s:%d: [store] map_size: 0 is out of range (1..16777216)"
                % (d.conf_path, lines.index("map_size = 0") + 1)) in out, out
        assert ("callvoxd: %s:%d: [store] unknown key 'bogus'"
                % (d.conf_path, lines.index("bogus = 1") + 1)) in out, out


def test_newer_store_refused_at_start():
    with Daemon() as d:
        d.start()
        assert d.stop() == 0
        store = os.path.join(d.data_dir, "store")
        # Mark the store as written by schema version 3 (this callvoxd reads up to 2).
        subprocess.run(["mdb_load", "-s", "settings", "-T", store],
                       input=b"schema\n\\03\\00\\00\\00\n", check=True)
        d.start(wait=False)
        assert d.proc.wait(30) == 1
        want = ("callvoxd: message store %s was written by a newer callvox (schema version 3; "
                "this callvoxd reads up to 2): refusing to open it" % store)
        assert want in d.log(), d.log()
        assert "callvoxd: cannot start message store: operation not supported" in d.log()


def test_mailbox_commands():
    with Daemon() as d:
        d.start()
        assert ok(d, "mailbox add 2001 John Smith") == "mailbox 2001 added\n"
        fails(d, "mailbox add 2001 John Smith", "mailbox 2001 already exists")
        fails(d, "mailbox add 20x1", "'20x1' is not a mailbox number (1 to 32 of 0-9 * # +)")
        out = ok(d, "mailbox show 2001")
        assert "name:           John Smith\n" in out, out
        assert "pin:            not set; 0 failed attempts; locked until -\n" in out, out
        fails(d, "mailbox show 2999", "no mailbox 2999")
        assert ok(d, "mailbox pin 2001 4321") == "mailbox 2001: PIN changed\n"
        fails(d, "mailbox pin 2001 12", "the PIN must be 4 to 16 digits")
        fails(d, "mailbox pin 2001 4321", "the PIN repeats a recent one")
        fails(d, "mailbox pin 2999 4321", "no mailbox 2999")
        # The audit log names the command but never the PIN.
        audit_path = os.path.join(d.data_dir, "audit.log")

        def audited():
            return os.path.exists(audit_path) and "mailbox pin 2001 ***" in open(audit_path).read()
        wait_for(audited, 10, "the PIN change in the audit log")
        assert "4321" not in open(audit_path).read()
        assert ok(d, "mailbox set 2001 retention_class 2") == \
            "mailbox 2001: retention_class = 2\n"
        fails(d, "mailbox set 2001 retention_class 9",
              "retention_class: '9' is not a class from 0 to 3")
        assert ok(d, "mailbox set 2001 quota_messages 30") == \
            "mailbox 2001: quota_messages = 30\n"
        fails(d, "mailbox set 2001 quota_messages lots", "quota_messages: 'lots' is not a number")
        assert ok(d, "mailbox set 2001 email john@example.com") == \
            "mailbox 2001: email = john@example.com\n"
        fails(d, "mailbox set 2999 email a@b", "no mailbox 2999")
        out = ok(d, "mailbox show 2001")
        assert "quota:          30 messages, 0 minutes (0: none)\n" in out, out
        assert "retention:      class 2\n" in out, out
        assert "pin:            set;" in out and "email:          john@example.com\n" in out, out
        rc, out, err = x(d, "mailbox show 2001", json_=True)
        j = json.loads(out)["result"]
        assert j["number"] == "2001" and j["has_pin"] is True and j["quota_messages"] == 30, j
        assert ok(d, "mailbox unlock 2001") == "mailbox 2001 unlocked\n"

        csv = os.path.join(d.dir, "boxes.csv")
        with open(csv, "w") as f:
            f.write("number,first_name,last_name,pin\n3000,Alice,Archer,1234\n"
                    "2001,Dup,Licate,\n3002,Bad,Pin,12\n3003,Carl,Cox,\n")
        rc, out, err = x(d, "mailbox import %s" % csv)
        # Some lines were rejected: the command fails, with the whole report.
        assert rc == 1 and out == "", (rc, out, err)
        assert err == ("line 2: added 3000\n"
                       "line 3: rejected: mailbox 2001 already exists\n"
                       "line 4: rejected: the PIN must be 4 to 16 digits\n"
                       "line 5: added 3003\n"
                       "import: 2 added, 2 rejected\n"), (out, err)
        fails(d, "mailbox import /nonexistent.csv",
              "cannot read /nonexistent.csv: No such file or directory")

        out = ok(d, "mailbox list")
        assert [l.split()[0] for l in out.splitlines()[1:-1]] == ["2001", "3000", "3003"], out
        assert out.splitlines()[-1] == "3 mailboxes", out
        assert ok(d, "message list 2001").endswith("\n0 messages\n")
        fails(d, "message list 2999", "no mailbox 2999")
        assert ok(d, "mailbox del 3003") == \
            "mailbox 3003 deleted with its messages and greetings\n"
        fails(d, "mailbox del 3003", "no mailbox 3003")
        assert "mailboxes:     2\n" in ok(d, "store stats")
        assert d.stop() == 0


def test_messages_export_backup_verify():
    with Daemon() as d:
        # Messages recorded by crashdep (the store's test depositor) into the daemon's store.
        store = os.path.join(d.data_dir, "store")
        out = os.path.join(d.dir, "acks.txt")
        with open(out, "wb") as f:
            p = subprocess.Popen([CRASHDEP, "deposit", store, "1", "2"], stdout=f)
        try:
            wait_for(lambda: open(out).read().count("ACK ") >= 6, 30, "six deposits")
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait()
        acked = [l.split() for l in open(out).read().splitlines() if l.startswith("ACK ")]
        d.start()
        listed = ok(d, "message list 100")
        mid, size = acked[0][1], int(acked[0][2])
        assert mid in listed and "new" in listed, listed
        wav = os.path.join(d.dir, "m.wav")
        assert ok(d, "message export %s %s" % (mid, wav)) == \
            "message %s written to %s\n" % (mid, wav)
        # A WAV file of G.711 mu-law (format 7), mono, 8 kHz, with every byte recorded.
        with open(wav, "rb") as f:
            data = f.read()
        assert data[:4] == b"RIFF" and data[8:16] == b"WAVEfmt ", data[:40]
        fmt, channels, rate = struct.unpack("<HHI", data[20:28])
        assert (fmt, channels, rate) == (7, 1, 8000), (fmt, channels, rate)
        assert len(data) >= size, (size, len(data))
        fails(d, "message export nosuch %s" % wav, "no message nosuch")
        fails(d, "message export %s relative.wav" % mid,
              "give the file as an absolute path (the daemon writes it)")

        backup = tempfile.mkdtemp(prefix="cvx-backup-")
        assert ok(d, "store backup %s" % backup) == "backup written to %s/data.mdb\n" % backup
        fails(d, "store backup %s" % backup,
              "%s holds a data.mdb already; give an empty directory" % backup)
        assert ok(d, "store verify") == "verify: 0 problems\n"
        rc, out, err = x(d, "store stats", json_=True)
        j = json.loads(out)["result"]
        assert j["messages"] >= len(acked) and j["schema"] == 2, j
        assert d.stop() == 0

    # Restore, as documented: the copy replaces data.mdb of a stopped daemon's store.
    with Daemon() as d2:
        os.makedirs(os.path.join(d2.data_dir, "store"))
        os.rename(os.path.join(backup, "data.mdb"), os.path.join(d2.data_dir, "store", "data.mdb"))
        d2.start()
        assert mid in ok(d2, "message list 100")
        assert ok(d2, "store verify") == "verify: 0 problems\n"
        assert d2.stop() == 0
    shutil.rmtree(backup, ignore_errors=True)


if __name__ == "__main__":
    main([test_store_runs_in_roles_all_and_system_only, test_store_section_is_checked,
          test_newer_store_refused_at_start, test_mailbox_commands,
          test_messages_export_backup_verify])
