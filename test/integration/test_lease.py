#!/usr/bin/env python3
"""The data directory's lease (SAN cold standby): a second callvoxd refuses a directory whose
holder is alive, takes over one whose holder is gone, --force-takeover takes it anyway, and a
holder whose lease was taken stops at once.  Nothing stored before is lost in any case."""

import os
import re
import socket
import subprocess
import tempfile
import time

from cvxtest import shell as x, BUILD, CALLVOXD, Daemon, main, wait_for

HOST = socket.gethostname()




def daemon(t, data, name, args=(), timeout="15s"):
    return Daemon(workdir=os.path.join(t, name), name=name, args=args,
                  general={"data_dir": data, "lease_timeout": timeout})


def workdirs(t, *names):
    for n in names:
        os.makedirs(os.path.join(t, n), exist_ok=True)


def lease_path(data):
    return os.path.join(data, "callvox.lease")


def read_lease(data):
    with open(lease_path(data)) as f:
        return dict(re.findall(r"^(\w+)=(.*)$", f.read(), re.M))


def write_foreign_lease(data, host="standby-b.example", pid=4242, age_ms=0):
    now = int(time.time() * 1000)
    with open(lease_path(data) + ".new", "w") as f:
        f.write("host=%s\npid=%d\nstarted=%d\nheartbeat=%d\ntoken=%s\n"
                % (host, pid, now - 3600000, now - age_ms, "f" * 32))
    os.rename(lease_path(data) + ".new", lease_path(data))


def refused(d, pattern):
    d.start(wait=False)
    rc = d.proc.wait(30)
    log = d.log()
    assert rc == 1, "exit %d\n%s" % (rc, log)
    assert re.search(pattern, log, re.M), "no /%s/ in:\n%s" % (pattern, log)
    assert "started" not in log, log


def add_mailbox(d, number):
    rc, _, err = x(d, "mailbox add %s Lease Keeper" % number)
    assert rc == 0, err


def has_mailbox(d, number):
    return x(d, "mailbox show %s" % number)[0] == 0


def test_second_daemon_refused_while_the_first_runs():
    with tempfile.TemporaryDirectory(prefix="cvx-lease-") as t:
        data = os.path.join(t, "data")
        workdirs(t, "a", "b")
        a, b = daemon(t, data, "a"), daemon(t, data, "b")
        try:
            a.start()
            add_mailbox(a, "4100")
            lease = read_lease(data)
            assert lease["host"] == HOST and lease["pid"] == str(a.proc.pid), lease
            refused(b, r"^callvoxd: data directory %s is leased by callvoxd on host %s \(pid "
                       r"%d\), last heartbeat \d+\.\d s ago: it may still be running\. If that "
                       r"host is down and fenced, start with --force-takeover$"
                    % (re.escape(data), re.escape(HOST), a.proc.pid))
            # The holder was not disturbed and still has what it stored.
            assert has_mailbox(a, "4100")
            assert read_lease(data)["token"] == lease["token"]
            # --check-config does not touch the lease.
            p = subprocess.run([CALLVOXD, "--check-config", "--config", b.conf_path],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
            assert p.returncode == 0, p.stdout.decode()
            # The heartbeat advances while the holder runs.
            hb = int(lease["heartbeat"])
            wait_for(lambda: int(read_lease(data)["heartbeat"]) > hb, 20, "a newer heartbeat")
            # A clean stop gives the lease back.
            assert a.stop() == 0
            assert not os.path.exists(lease_path(data))
        finally:
            a.close()
            b.close()


def test_lease_of_a_killed_daemon_is_taken_over():
    with tempfile.TemporaryDirectory(prefix="cvx-lease-") as t:
        data = os.path.join(t, "data")
        workdirs(t, "a", "b")
        a, b = daemon(t, data, "a"), daemon(t, data, "b")
        try:
            a.start()
            add_mailbox(a, "4200")
            pid = a.proc.pid
            a.kill()  # SIGKILL: the lease stays behind with a dead pid
            assert read_lease(data)["pid"] == str(pid)
            b.start()
            b.wait_log(r"taking over the lease of %s left by callvoxd on host %s \(pid %d\): no "
                       r"longer running" % (re.escape(data), re.escape(HOST), pid))
            assert read_lease(data)["pid"] == str(b.proc.pid)
            assert has_mailbox(b, "4200")
            assert b.stop() == 0
        finally:
            a.close()
            b.close()


def test_other_host_lease_refused_stale_taken_forced_taken():
    with tempfile.TemporaryDirectory(prefix="cvx-lease-") as t:
        data = os.path.join(t, "data")
        os.makedirs(data)
        workdirs(t, "a", "b", "c")
        # A live holder on another host (its heartbeat is fresh): refused.
        write_foreign_lease(data)
        a = daemon(t, data, "a")
        try:
            refused(a, r"^callvoxd: data directory %s is leased by callvoxd on host "
                       r"standby-b\.example \(pid 4242\), last heartbeat \d+\.\d s ago"
                    % re.escape(data))
            assert read_lease(data)["host"] == "standby-b.example"
        finally:
            a.close()
        # Its heartbeat stopped longer ago than lease_timeout: taken over, with a warning.
        write_foreign_lease(data, age_ms=60000)
        b = daemon(t, data, "b")
        try:
            b.start()
            b.wait_log(r"warning: taking over the lease of %s left by callvoxd on host "
                       r"standby-b\.example \(pid 4242\): its heartbeat stopped, last heartbeat "
                       r"6\d\.\d s ago" % re.escape(data))
            assert read_lease(data)["host"] == HOST
            assert b.stop() == 0
        finally:
            b.close()
        # Fresh again, and the administrator has fenced that host: --force-takeover.
        write_foreign_lease(data)
        c = daemon(t, data, "c", args=["--force-takeover"])
        try:
            c.start()
            c.wait_log(r"warning: --force-takeover: taking the lease of %s from callvoxd on "
                       r"host standby-b\.example \(pid 4242\)" % re.escape(data))
            assert read_lease(data)["pid"] == str(c.proc.pid)
            assert c.stop() == 0
        finally:
            c.close()


def test_holder_stops_when_its_lease_is_taken():
    with tempfile.TemporaryDirectory(prefix="cvx-lease-") as t:
        data = os.path.join(t, "data")
        workdirs(t, "a")
        a = daemon(t, data, "a", timeout="900ms")
        try:
            a.start()
            add_mailbox(a, "4300")
            # Another host forced a takeover (as --force-takeover there would).
            write_foreign_lease(data, host="standby-b.example", pid=777)
            rc = a.proc.wait(20)
            log = a.log()
            assert rc == 1, "exit %s\n%s" % (rc, log[-3000:])
            assert re.search(r"error: the lease of %s was taken over by callvoxd on host "
                             r"standby-b\.example \(pid 777\); this process must not use the "
                             r"directory any more: stopping now"
                             % re.escape(lease_path(data)), log), log[-3000:]
            # It did not remove or rewrite the new holder's lease on its way out.
            assert read_lease(data)["host"] == "standby-b.example"
        finally:
            a.close()
        # The store is intact for the next holder.
        os.remove(lease_path(data))
        workdirs(t, "b")
        b = daemon(t, data, "b")
        try:
            b.start()
            assert has_mailbox(b, "4300")
            assert b.stop() == 0
        finally:
            b.close()


if __name__ == "__main__":
    main([test_second_daemon_refused_while_the_first_runs,
          test_lease_of_a_killed_daemon_is_taken_over,
          test_other_host_lease_refused_stale_taken_forced_taken,
          test_holder_stops_when_its_lease_is_taken])
