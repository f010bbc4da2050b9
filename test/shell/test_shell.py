"""The control socket and the callvox shell, driven for real: callvoxd from the build tree,
the callvox binary one-shot (-x), through a pseudo-terminal (line editing, completion,
history, attach mode), with --json, as real users and groups the test creates, and raw
clients that send garbage, flood, stall or never read."""
import atexit
import grp
import json
import os
import pty
import pwd
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time

import cvxtest
from cvxtest import BUILD, main, wait_for

CALLVOX = os.path.join(BUILD, "bin", "callvox")
# Who runs the tests: root in CI; another user is the daemon's own user here (admin too).
ME = pwd.getpwuid(os.getuid()).pw_name
UID = os.getuid()
WHY = "root" if UID == 0 else "the daemon's own user"
NULL_LINES = "[null:lines]\nchannels = 4\n"

# The daemons here load only the modules these tests use (null, echo), so that another part's
# module that is broken for a while cannot fail the shell's tests.
MODULES = tempfile.mkdtemp(prefix="cvx-shell-mods-")
os.chmod(MODULES, 0o755)
for _m in ("null.so", "echo.so"):
    os.symlink(os.path.join(BUILD, "lib", "callvox", "modules", _m), os.path.join(MODULES, _m))
atexit.register(shutil.rmtree, MODULES, True)


def Daemon(conf="", general=None, **kw):
    """cvxtest.Daemon with this file's module directory."""
    g = {"module_dir": MODULES}
    g.update(general or {})
    return cvxtest.Daemon(conf, general=g, **kw)


def sock_path(d):
    return os.path.join(d.run_dir, "callvox.ctl")


def shell(d, *args, user=None, stdin=None, timeout=30, env=None):
    """Runs callvox against d's socket; returns (status, stdout, stderr)."""
    cmd = [CALLVOX, "-s", sock_path(d)] + list(args)
    if user is not None:
        cmd = ["runuser", "-u", user, "--"] + cmd
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, env=e)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def x(d, command, *args, **kw):
    return shell(d, "-x", command, *args, **kw)


class Raw:
    """A hand-made client speaking the wire format (see core/ctl/proto.h)."""

    def __init__(self, d):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(sock_path(d))
        self.buf = b""
        self.hello = self.frame(b"H")

    def send(self, type_, payload=b""):
        body = type_ + payload
        self.s.sendall(struct.pack(">I", len(body)) + body)

    def command(self, line, json_=False):
        self.send(b"Q", bytes([1 if json_ else 0]) + line.encode())
        f = self.frame(b"R")
        return f[0], f[1:].decode()

    def next_frame(self, timeout=10.0):
        """The next frame as (type, payload), or None at EOF."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 4:
                n = struct.unpack(">I", self.buf[:4])[0]
                if len(self.buf) >= 4 + n:
                    body = self.buf[4:4 + n]
                    self.buf = self.buf[4 + n:]
                    return body[:1], body[1:]
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no frame within %.1fs" % timeout)
            r, _, _ = select.select([self.s], [], [], left)
            if r:
                try:
                    data = self.s.recv(65536)
                except ConnectionResetError:
                    data = b""
                if not data:
                    return None
                self.buf += data

    def frame(self, want, timeout=10.0):
        while True:
            f = self.next_frame(timeout)
            assert f is not None, "connection closed while waiting for a %r frame" % want
            if f[0] == want:
                return f[1]
            assert f[0] != b"X", "goodbye: %r" % f[1]

    def goodbye(self, timeout=10.0):
        """Reads until the goodbye frame and EOF; returns the goodbye text (None: none came)."""
        why = None
        while True:
            f = self.next_frame(timeout)
            if f is None:
                return why
            if f[0] == b"X":
                why = f[1].decode()

    def close(self):
        self.s.close()


class Pty:
    """callvox on a pseudo-terminal, as an administrator types at it."""

    def __init__(self, d, *args, home=None):
        self.own_home = home is None
        self.home = home or tempfile.mkdtemp(prefix="cvx-home-")
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.environ["TERM"] = "xterm"
            os.environ["HOME"] = self.home
            os.execv(CALLVOX, [CALLVOX, "-s", sock_path(d)] + list(args))
        self.out = b""

    def read_until(self, pattern, timeout=10.0):
        rx = re.compile(pattern.encode() if isinstance(pattern, str) else pattern)

        def seen():
            r, _, _ = select.select([self.fd], [], [], 0.05)
            if r:
                try:
                    self.out += os.read(self.fd, 65536)
                except OSError:
                    pass
            return rx.search(self.out)
        try:
            return wait_for(seen, timeout, "/%s/ on the terminal" % pattern)
        except AssertionError:
            raise AssertionError("terminal so far:\n%r" % self.out[-3000:])

    def type(self, text):
        os.write(self.fd, text.encode())

    def mark(self):
        self.out = b""

    def wait(self, timeout=10.0, expect=0):
        def done():
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            return (pid, status) if pid else None
        _, status = wait_for(done, timeout, "callvox to exit")
        try:
            while True:  # whatever it wrote last (an error, a sanitizer report)
                r, _, _ = select.select([self.fd], [], [], 0)
                if not r:
                    break
                data = os.read(self.fd, 65536)
                if not data:
                    break
                self.out += data
        except OSError:
            pass
        os.close(self.fd)
        code = os.waitstatus_to_exitcode(status)
        if code != expect:
            print("callvox exited %d; terminal:\n%s" % (code, self.out.decode("utf-8", "replace")[-4000:]))
        return code

    def kill(self):
        """Ends the shell if it still runs (it is this test's child) and removes its home."""
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        if self.own_home:
            shutil.rmtree(self.home, ignore_errors=True)


def started(conf=NULL_LINES, **kw):
    d = Daemon(conf, **kw)
    d.start()
    d.wait_log(r"control: listening on ")
    return d


def audit_lines(d):
    path = os.path.join(d.data_dir, "audit.log")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return f.read().splitlines()


AUDIT_RX = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z user=(\S+) uid=(\d+) pid=(\d+) '
                      r'command="(.*)" result="(.*)"$')


def expect_choices(text, head, tail, ours):
    """text is head + a sorted, comma-separated list that includes ours + tail."""
    assert text.startswith(head) and text.endswith(tail), text
    words = text[len(head):len(text) - len(tail)].split(", ")
    assert words == sorted(words) and ours <= set(words), text


# --- one-shot ------------------------------------------------------------------------------


def test_one_shot_commands_and_exit_status():
    with started() as d:
        rc, out, err = x(d, "status")
        assert rc == 0, (out, err)
        assert re.search(r"^callvoxd \d+\.\d+\.\d+, server daemon, role all, pid %d$" % d.proc.pid,
                         out, re.M), out
        assert re.search(r"^uptime: +0d 00:\d\d:\d\d$", out, re.M), out
        assert "calls:    0 in progress" in out, out
        assert re.search(r"^loop: +\d+ iterations, \d+ over 10\.0 ms \(stalls\), longest busy",
                         out, re.M), out

        rc, out, err = x(d, "show drivers")
        assert rc == 0 and re.search(r"^null:lines +null +up: loopback ready +0 +0$", out, re.M), out
        rc, out, err = x(d, "show plugins")
        assert rc == 0 and re.search(r"^null +driver +loaded +1\.0 +loopback reference driver$",
                                     out, re.M), out
        rc, out, err = x(d, "show calls")
        assert rc == 0 and out.endswith("0 calls in progress\n"), out
        rc, out, err = x(d, "show config general.run_dir")
        assert rc == 0 and out.startswith("[general] run_dir = %s\n  default:    /run/callvox\n"
                                          % d.run_dir), out
        rc, out, err = x(d, "show config null:lines")
        assert rc == 0 and "  channels     = 4  (default 8)\n" in out, out
        rc, out, err = x(d, "help show config")
        assert rc == 0 and out.startswith("usage: show config [<section>]\n"), out

        # Mistakes: status 2 and a message naming what was expected.
        # (Other parts of callvox add their own commands: the lists are checked for ours.)
        rc, out, err = x(d, "show bogus")
        assert (rc, out) == (2, ""), (rc, out, err)
        expect_choices(err, "unknown command 'show bogus'; after 'show' expected one of: ", "\n",
                       {"calls", "config", "drivers", "plugins"})
        rc, out, err = x(d, "frobnicate now")
        assert rc == 2, err
        expect_choices(err, "unknown command 'frobnicate'; expected one of: ",
                       " (type 'help' for a list)\n",
                       {"call", "help", "log", "reload", "show", "shutdown", "status"})
        rc, out, err = x(d, "log level")
        assert rc == 2 and err == "'log level' needs <level> (usage: log level <level>)\n", err
        rc, out, err = x(d, "log level loud")
        assert rc == 2 and err == ("'log level': 'loud' is not one of: error, warning, notice, "
                                   "info, debug, trace (usage: log level <level>)\n"), err
        rc, out, err = x(d, "shutdown now")
        assert rc == 2 and err == ("'shutdown': 'now' is not one of: graceful (usage: shutdown "
                                   "[graceful])\n"), err
        rc, out, err = x(d, "status please")
        assert rc == 2 and err == "'status' takes no arguments, got 'please' (usage: status)\n", err
        # A command that runs and fails: status 1.
        rc, out, err = x(d, "show config log.bogus")
        assert rc == 1 and err == ("show config: [log] has no option 'bogus'; it has: level, "
                                   "stall_threshold\n"), err
        assert d.proc.poll() is None
        assert d.stop() == 0

    # No daemon: status 4 and one line saying what to check.
    rc, out, err = shell(d, "-x", "status")
    assert rc == 4 and err == ("callvox: cannot connect to %s: No such file or directory (is "
                               "callvoxd running? -s names another socket)\n" % sock_path(d)), err
    rc, out, err = shell(d, "--bogus")
    assert rc == 2 and "usage: callvox [options]" in err, err
    rc, out, err = shell(d, "-l", "loud")
    assert rc == 2 and err == ("callvox: unknown log level 'loud' (error, warning, notice, info, "
                               "debug, trace)\n"), err


def test_json_output_for_scripts():
    with started() as d:
        rc, out, err = x(d, "status", "--json")
        assert rc == 0, err
        doc = json.loads(out)
        assert doc["command"] == "status" and doc["status"] == "ok" and doc["error"] is None
        r = doc["result"]
        assert r["role"] == "all" and r["name"] == "daemon" and r["pid"] == d.proc.pid, r
        assert r["calls"] == 0 and r["loop"]["iterations"] > 0, r
        assert r["loop"]["stall_threshold_ms"] == 10.0, r
        assert set(r["loop"]["busy_histogram"]) == {"<1ms", "<2ms", "<5ms", "<10ms", "<20ms",
                                                    "<50ms", "<100ms", ">=100ms"}, r

        rc, out, err = x(d, "show drivers", "-j")
        assert rc == 0
        assert json.loads(out)["result"]["drivers"] == [
            {"instance": "null:lines", "driver": "null", "line": "up: loopback ready",
             "calls": 0, "total": 0}], out

        rc, out, err = x(d, "show config log.level", "-j")
        opt = json.loads(out)["result"]["sections"][0]["options"][0]
        assert opt == {"key": "level", "value": "info", "default": "info",
                       "type": "one of: error warning notice info debug trace",
                       "reloadable": True,
                       "help": "Lowest level written: error, warning, notice, info, debug, "
                               "trace."}, opt

        # Errors are JSON too (on stdout), with the status in the document and the exit code.
        rc, out, err = x(d, "show bogus", "-j")
        assert rc == 2 and err == "", err
        doc = json.loads(out)
        assert doc["status"] == "usage" and doc["error"].startswith("unknown command 'show bogus'")
        # A command without structured output gives its text.
        rc, out, err = x(d, "log level notice", "-j")
        assert rc == 0 and json.loads(out)["result"] == {"level": "notice", "was": "info"}, out
        assert d.stop() == 0


def test_commands_from_a_pipe():
    with started() as d:
        # A script may pipe many commands: they go one after the other, as fast as replies come.
        rc, out, err = shell(d, stdin=b"show drivers\n" * 500)
        assert (rc, err) == (0, ""), (rc, err)
        assert out.count("null:lines") == 500, out[-500:]
        rc, out, err = shell(d, stdin=b"# a comment\nshow drivers\n\nshow nothing\nstatus\n")
        assert rc == 2, (rc, out, err)  # the last failure's status
        assert "null:lines" in out and "callvoxd " in out, out
        expect_choices(err, "unknown command 'show nothing'; after 'show' expected one of: ",
                       "\n", {"calls", "config", "drivers", "plugins"})
        assert d.stop() == 0


# --- interactive ------------------------------------------------------------------------------


def test_interactive_editing_completion_and_history():
    with started() as d:
        t = Pty(d)
        try:
            t.read_until(r"Connected to callvoxd \S+ on daemon \(role all\) as %s, admin access "
                         r"\(%s\)\." % (re.escape(ME), re.escape(WHY)))
            t.read_until(r"daemon\*> ")
            # Tab completes a unique command word, then an argument from the daemon's objects.
            t.mark()
            t.type("show dr\t")
            t.read_until(r"ivers ")  # libedit writes only what the completion added
            t.type("\r")
            t.read_until(r"null:lines +null +up: loopback ready")
            t.read_until(r"daemon\*> ")
            t.mark()
            t.type("show config nu\t")  # null (every null section) and null:lines...
            t.read_until(r"ll")
            t.type(":li\t")  # ... then null:lines and null:lines.<key>
            t.read_until(r"nes")
            t.type(".ch\t")
            t.read_until(r"annels ")
            t.type("\r")
            t.read_until(r"\[null:lines\] channels = 4\r\n  default:    8")
            t.read_until(r"daemon\*> ")
            # Several candidates: a second Tab lists them.
            t.mark()
            t.type("sh\t\t")
            t.read_until(r"show +shutdown")
            t.type("\x15")  # ^U: erase the line
            # Choices of an argument.
            t.mark()
            t.type("log level de\t\r")
            t.read_until(r"log level: debug \(was info\)")
            # History: Up recalls the previous line.
            t.read_until(r"daemon\*> ")
            t.mark()
            t.type("\x1b[A\r")
            t.read_until(r"log level: debug \(was debug\)")
            t.read_until(r"daemon\*> ")
            # A mistake keeps the session going.
            # A line that carries a secret is run but kept out of the history file.
            t.mark()
            t.type("show config pin 1234\r")
            t.read_until(r"'show config': unexpected argument '1234'")
            t.read_until(r"daemon\*> ")
            t.mark()
            t.type("show me\r")
            t.read_until(r"unknown command 'show me'; after 'show' expected one of")
            # Ctrl-C drops the line being typed, not the shell.
            t.mark()
            t.type("show dri")
            t.read_until(r"show dri")
            t.type("\x03")
            t.read_until(r"\^C\r\n")
            t.read_until(r"daemon\*> ")
            t.type("status\r")
            t.read_until(r"calls:    0 in progress")
            t.read_until(r"daemon\*> ")
            # The shell's own commands complete too, and 'help' names them.
            t.mark()
            t.type("at\t")
            t.read_until(r"tach ")
            t.type("no\t\r")
            t.read_until(r"showing the log at level notice")
            t.type("help\r")
            t.read_until(r"In this shell: attach <level>\|off \(the live log\), exit or quit\.")
            t.type("exit\r")
            assert t.wait() == 0
            hist = open(os.path.join(t.home, ".callvox_history")).read()
            # libedit's format: "_HiStOrY_V2_", then one line per entry with blanks as \040.
            assert hist.splitlines() == ["_HiStOrY_V2_", r"show\040drivers",
                                         r"show\040config\040null:lines.channels",
                                         r"log\040level\040debug", r"show\040me",
                                         "status", r"attach\040notice", "help", "exit"], hist
        finally:
            t.kill()
        assert d.stop() == 0


def test_attach_mode_shows_the_live_log_at_its_level():
    with started(NULL_LINES + "[log]\nlevel = debug\n") as d:
        t = Pty(d, "-vv")  # -vv: info and above
        try:
            t.read_until(r"showing the log at level info")
            t.read_until(r"daemon\*> ")
            t.mark()
            # Another administrator's reload shows up here, while this prompt waits.
            rc, out, err = x(d, "reload")
            assert rc == 0, err
            t.read_until(r"\d\d:\d\d:\d\d\.\d{3} notice: reload requested by user %s" % ME)
            t.read_until(r"notice: reload: 0 changes applied, 0 need a restart")
            t.read_until(r"daemon\*> ")  # the prompt is drawn again below the log lines
            # That client's connection was logged at debug: in the daemon's log, not here.
            d.wait_log(r"debug: control: user %s \(uid %d, pid \d+\) connected" % (ME, UID), count=2)
            assert b"connected with admin access" not in t.out, t.out
            # Typing still works, and the level can change from inside the shell.
            t.mark()
            t.type("attach debug\r")
            t.read_until(r"showing the log at level debug")
            x(d, "status")
            t.read_until(r"debug: control: user %s \(uid %d, pid \d+\) connected with admin access"
                         % (ME, UID))
            t.type("attach off\r")
            t.read_until(r"log stream stopped")
            t.type("exit\r")
            assert t.wait() == 0
        finally:
            t.kill()
        rc, out, err = x(d, "status")
        assert "control:  1 client (0 attached)" in out, out
        assert d.stop() == 0


def test_interactive_shell_hears_the_daemon_stop():
    with started() as d:
        t = Pty(d, "-q")
        try:
            t.read_until(r"daemon\*> ")
            rc, out, err = x(d, "shutdown")
            assert rc == 0, err
            t.read_until(r"callvox: the daemon closed the connection: the daemon is stopping\r\n")
            assert t.wait(expect=4) == 4
        finally:
            t.kill()
        assert d.proc.wait(20) == 0


def test_attach_above_the_daemons_level_says_so():
    with started() as d:
        r = Raw(d)
        r.send(b"A", b"debug")
        reply = r.frame(b"R")
        assert reply == (b"\x00showing the log at level debug; the daemon writes only info and "
                         b"above (change it with 'log level debug')\n"), reply
        r.send(b"A", b"loud")
        reply = r.frame(b"R")
        assert reply == (b"\x02unknown log level 'loud'; expected one of: error, warning, notice, "
                         b"info, debug, trace, off\n"), reply
        r.close()
        assert d.stop() == 0


# --- permissions ----------------------------------------------------------------------------


def run_quiet(*cmd):
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_permissions_with_real_users_and_groups():
    if os.getuid() != 0:
        print("  skipped: not root, so test users and groups cannot be created")
        return
    tag = "%x" % (os.getpid() & 0xffff)
    g_admin, g_ro = "cvxadm%s" % tag, "cvxro%s" % tag
    u_admin, u_ro, u_none = "cvxa%s" % tag, "cvxr%s" % tag, "cvxn%s" % tag
    try:
        for g in (g_admin, g_ro):
            subprocess.run(["groupadd", g], check=True)
        for u, g in ((u_admin, g_admin), (u_ro, g_ro), (u_none, None)):
            cmd = ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin"]
            if g:
                cmd += ["-G", g]
            subprocess.run(cmd + [u], check=True)
        conf = NULL_LINES + "[control]\nadmin_group = %s\nreadonly_group = %s\n" % (g_admin, g_ro)
        with started(conf) as d:
            os.chmod(d.dir, 0o755)  # a temporary directory is 0700: let the users reach run/
            d.wait_log(r"control: listening on .* \(admin group %s, read-only group %s" % (g_admin, g_ro))
            st = os.stat(sock_path(d))
            assert st.st_mode & 0o777 == 0o666, oct(st.st_mode)

            # Admin group: may change things.
            rc, out, err = x(d, "log level debug", user=u_admin)
            assert rc == 0 and out.startswith("log level: debug"), (rc, out, err)
            rc, out, err = x(d, "help", user=u_admin)
            assert "your access: admin" in out, out
            # Read-only group: may look, may not change.
            rc, out, err = x(d, "show drivers", user=u_ro)
            assert rc == 0 and "null:lines" in out, (rc, out, err)
            rc, out, err = x(d, "reload", user=u_ro)
            assert rc == 3 and err == ("permission denied: 'reload' changes the system, and user "
                                       "%s may only run read-only commands\n" % u_ro), (rc, err)
            rc, out, err = x(d, "shutdown", user=u_ro)
            assert rc == 3 and d.proc.poll() is None
            # Anyone else: refused at the door, with the reason.
            uid = pwd.getpwnam(u_none).pw_uid
            rc, out, err = x(d, "status", user=u_none)
            assert rc == 3 and err == (
                "callvox: the daemon closed the connection: permission denied: user %s (uid %d) "
                "is neither root nor a member of the admin group (%s) or the read-only group "
                "(%s)\n" % (u_none, uid, g_admin, g_ro)), (rc, err)
            d.wait_log(r"notice: control: refused user %s \(uid %d, pid \d+\)" % (u_none, uid))

            # The audit log names who did what; read-only commands are not in it.
            def audited():
                return len(audit_lines(d)) >= 3 and audit_lines(d)
            lines = [AUDIT_RX.match(l) for l in wait_for(audited, what="3 audit lines")]
            assert all(lines), audit_lines(d)
            got = [(m.group(1), m.group(4), m.group(5)) for m in lines]
            assert got == [
                (u_admin, "log level debug", "ok"),
                (u_ro, "reload", "denied: permission denied: 'reload' changes the system, and "
                                 "user %s may only run read-only commands" % u_ro),
                (u_ro, "shutdown", "denied: permission denied: 'shutdown' changes the system, "
                                   "and user %s may only run read-only commands" % u_ro),
            ], got
            assert lines[0].group(2) == str(pwd.getpwnam(u_admin).pw_uid)
            st = os.stat(os.path.join(d.data_dir, "audit.log"))
            assert st.st_mode & 0o777 == 0o640, oct(st.st_mode)
            assert d.stop() == 0

        # A daemon that drops root for its own user: the socket and the audit log were set up
        # as root before, and still work; the socket is removed at the end.
        with Daemon(conf, general={"user": "nobody"}) as d:
            os.chmod(d.dir, 0o755)
            d.start()
            d.wait_log(r"running as user nobody")
            rc, out, err = x(d, "status", user=u_ro)
            assert rc == 0, (rc, err)
            rc, out, err = x(d, "log level info", user=u_admin)
            assert rc == 0, (rc, err)
            rc, out, err = x(d, "log level info", user="nobody")  # the daemon's own user
            assert rc == 0, (rc, err)
            got = wait_for(lambda: len(audit_lines(d)) == 2 and audit_lines(d), what="audit")
            assert [AUDIT_RX.match(l).group(1) for l in got] == [u_admin, "nobody"], got
            assert d.stop() == 0
            assert not os.path.exists(sock_path(d))
    finally:
        for u in (u_admin, u_ro, u_none):
            run_quiet("userdel", u)
        for g in (g_admin, g_ro):
            run_quiet("groupdel", g)
    for g in (g_admin, g_ro):
        try:
            grp.getgrnam(g)
            raise AssertionError("group %s was not removed" % g)
        except KeyError:
            pass


def test_audit_log_records_every_change_and_its_result():
    with started() as d:
        assert x(d, "status")[0] == 0
        assert x(d, "show config")[0] == 0
        assert x(d, "log level debug")[0] == 0
        assert x(d, "reload")[0] == 0
        with open(d.conf_path, "a") as f:
            f.write("[log]\nlevel = loud\n")
        rc, out, err = x(d, "reload")
        lines = open(d.conf_path).read().splitlines()
        assert (rc, out) == (1, ""), (rc, out, err)
        assert err == ("error: %s:%d: [log] level: 'loud' is not one of: error, warning, notice, "
                       "info, debug, trace\nthe configuration has errors; nothing was changed\n"
                       % (d.conf_path, lines.index("level = loud") + 1)), err
        rc, out, err = x(d, "shutdown")
        assert rc == 0 and out == "shutting down: hanging up 0 calls\n", (rc, out, err)
        assert d.proc.wait(20) == 0
        lines = [AUDIT_RX.match(l) for l in audit_lines(d)]
        assert all(lines), audit_lines(d)
        got = [(m.group(1), m.group(2), m.group(4), m.group(5)) for m in lines]
        assert got == [
            (ME, str(UID), "log level debug", "ok"),
            (ME, str(UID), "reload", "ok"),
            (ME, str(UID), "reload", "failed: the configuration has errors; nothing was changed"),
            (ME, str(UID), "shutdown", "ok"),
        ], got
        assert not os.path.exists(sock_path(d)), "the socket was left behind"


def test_show_calls_lists_live_calls_and_call_hangup_ends_them():
    with started(NULL_LINES + "[echo]\nnumber = 600\n") as d:
        rc, out, err = x(d, "call originate null:lines 600 4155551212")
        assert (rc, out, err) == (0, "call daemon-1 placed on null:lines to 600\n", ""), (rc, err)

        def both_up():
            out = x(d, "show calls")[1]
            return "2 calls in progress" in out and out.count("  up  ") == 2 and out
        out = wait_for(both_up, what="both legs up")
        # The loopback's far end came back in, was routed to echo and answered.
        # The loopback has no RTP: codec "-" and zero packet figures.
        media = r" +- +0 +0 +0 +0 +0$"
        assert re.search(r"^daemon-2 +null:lines +in +up +4155551212 +600 +none +\d+\.\d" + media,
                         out, re.M), out
        assert re.search(r"^daemon-1 +null:lines +out +up +4155551212 +600 +none +\d+\.\d" + media,
                         out, re.M), out
        calls = json.loads(x(d, "show calls", "--json")[1])["result"]["calls"]
        assert sorted(c["id"] for c in calls) == ["daemon-1", "daemon-2"], calls
        c = [c for c in calls if c["id"] == "daemon-2"][0]
        assert (c["instance"], c["dir"], c["state"], c["calling"], c["called"],
                c["redirected_from"], c["reason"]) == ("null:lines", "in", "up", "4155551212",
                                                       "600", "", "none"), c
        assert isinstance(c["age_s"], float), c
        assert "calls:    2 in progress" in x(d, "status")[1]
        assert re.search(r"^null:lines +null +up: loopback ready +2 +2$", x(d, "show drivers")[1],
                         re.M)
        # Tab completion offers the calls in progress.
        r = Raw(d)
        r.send(b"C", b"call hangup daemon-")
        assert r.frame(b"M") == b"daemon-1\ndaemon-2\n"
        r.send(b"C", b"call originate n")
        assert r.frame(b"M") == b"null:lines\n"
        r.close()

        # A caller's number is shown, never obeyed: control characters come out as '?'.
        rc, out, err = x(d, "call originate null:lines 600 \"\x1b[2Jevil\"")
        assert rc == 0, err
        wait_for(lambda: x(d, "show calls")[1].count("  up  ") == 4, what="the second call up")
        out = x(d, "show calls")[1]
        assert "?[2Jevil" in out and "\x1b" not in out, out
        calls = json.loads(x(d, "show calls", "--json")[1])["result"]["calls"]
        assert "\x1b[2Jevil" in [c["calling"] for c in calls], calls
        assert x(d, "call hangup daemon-3")[0] == 0

        rc, out, err = x(d, "call hangup daemon-1")
        assert (rc, out) == (0, "call daemon-1: hung up\n"), (rc, out, err)
        wait_for(lambda: "0 calls in progress" in x(d, "show calls")[1], what="both legs gone")
        d.wait_log(r"echo: call ended \(normal\)")

        rc, out, err = x(d, "call hangup daemon-1")
        assert (rc, err) == (1, "call hangup: no call 'daemon-1' in progress (see 'show "
                                "calls')\n"), (rc, err)
        rc, out, err = x(d, "call originate sip:nowhere 600")
        assert (rc, err) == (1, "call originate: no driver instance 'sip:nowhere'; instances: "
                                "null:lines\n"), (rc, err)
        got = [AUDIT_RX.match(l).group(4, 5) for l in audit_lines(d)]
        assert got[:4] == [("call originate null:lines 600 4155551212", "ok"),
                           # the audit log escapes control characters
                           (r'call originate null:lines 600 \x1b[2Jevil', "ok"),
                           ("call hangup daemon-3", "ok"),
                           ("call hangup daemon-1", "ok")], got
        assert d.stop() == 0


def test_a_command_that_finishes_later_holds_only_its_own_client():
    with started() as d:
        a, b = Raw(d), Raw(d)
        a.send(b"Q", b"\x00debug wait 1500")  # answers from a timer (CVX_CMD_PENDING)
        a.send(b"Q", b"\x00status")           # queued behind it
        # Another client is served meanwhile, while a still has nothing.
        status, text = b.command("show drivers")
        assert status == 0 and "null:lines" in text
        assert not select.select([a.s], [], [], 0)[0], "a was answered before its wait ended"
        assert a.frame(b"R", timeout=20) == b"\x00waited 1500 ms\n"
        status = a.frame(b"R")
        assert status.startswith(b"\x00callvoxd "), status
        # A client that leaves in the middle: its request ends silently, nothing breaks.
        c = Raw(d)
        c.send(b"Q", b"\x00debug wait 100")
        c.close()
        b.send(b"Q", b"\x00debug wait 300")  # ends after c's would have
        assert b.frame(b"R") == b"\x00waited 300 ms\n"
        assert b.command("status")[0] == 0
        # A peer that sends its requests and shuts its side still gets every reply.
        h = Raw(d)
        h.send(b"Q", b"\x00debug wait 200")
        h.send(b"Q", b"\x00show config")
        h.s.shutdown(socket.SHUT_WR)
        first, second, end = h.next_frame(), h.next_frame(), h.next_frame()
        assert first == (b"R", b"\x00waited 200 ms\n"), first
        assert second[0] == b"R" and second[1].startswith(b"\x00[general]\n"), second
        assert end is None, end
        h.close()
        rc, out, err = x(d, "debug wait soon")
        assert (rc, err) == (1, "debug wait: 'soon' is not a number of milliseconds "
                                "(1..60000)\n"), (rc, err)
        # Stopping the daemon ends what is still pending, with a reply, then says goodbye.
        e = Raw(d)
        e.send(b"Q", b"\x00debug wait 60000")
        assert x(d, "shutdown")[0] == 0
        assert e.frame(b"R") == b"\x01debug wait: the daemon is stopping\n"
        assert e.goodbye() == "the daemon is stopping"
        assert d.proc.wait(20) == 0
        for r in (a, b, e):
            r.close()


def test_graceful_shutdown_from_the_shell():
    with started() as d:
        rc, out, err = x(d, "shutdown graceful")
        assert rc == 0 and out == "shutting down gracefully: waiting for 0 calls to end\n", out
        assert d.proc.wait(20) == 0
        assert "notice: shutdown (graceful) requested by user %s" % ME in d.log()
    # With a call up, a graceful shutdown waits for it up to drain_timeout.
    conf = NULL_LINES + "[echo]\nnumber = 600\n"
    with started(conf, general={"drain_timeout": "300ms"}) as d:
        assert x(d, "call originate null:lines 600")[0] == 0
        wait_for(lambda: x(d, "show calls")[1].count("  up  ") == 2, what="the call up")
        rc, out, err = x(d, "shutdown graceful")
        assert out == "shutting down gracefully: waiting for 2 calls to end\n", out
        assert d.proc.wait(20) == 0
        assert "shutdown: 2 calls still up after 300 ms; exiting anyway" in d.log(), d.log()


# --- bad clients ----------------------------------------------------------------------------


def check_still_serving(d, good):
    status, text = good.command("show drivers")
    assert status == 0 and "null:lines" in text, text
    assert d.proc.poll() is None


def test_garbage_flood_stalled_and_deaf_clients_are_cut_off_alone():
    conf = NULL_LINES + "[control]\nframe_timeout = 300ms\nmax_pipeline = 16\n"
    with started(conf) as d:
        good = Raw(d)
        check_still_serving(d, good)

        # Garbage: an HTTP request is no frame.
        bad = Raw(d)
        bad.s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert bad.goodbye() == "protocol error: frame of 1195725856 bytes exceeds the limit of 4096"
        d.wait_log(r"warning: control: cut off client pid %d \(user %s\): protocol error: frame "
                   r"of 1195725856 bytes exceeds the limit of 4096" % (os.getpid(), ME))
        check_still_serving(d, good)

        # A frame type nobody knows, and a NUL inside a command.
        bad = Raw(d)
        bad.send(b"Z", b"hello")
        assert bad.goodbye() == "protocol error: unknown frame type 0x5a"
        bad = Raw(d)
        bad.send(b"Q", b"\x00sta\x00tus")
        assert bad.goodbye() == "protocol error: NUL byte in a request"
        check_still_serving(d, good)

        # Stalled: half a frame, then nothing.
        bad = Raw(d)
        bad.s.sendall(struct.pack(">I", 20) + b"Q\x00sta")
        start = time.monotonic()
        assert bad.goodbye() == ("incomplete request: 9 bytes received, the rest not within "
                                 "300 ms")
        took = time.monotonic() - start
        assert 0.25 < took < 5.0, took
        check_still_serving(d, good)

        # Flooding: 500 requests at once, none waiting for its reply.
        bad = Raw(d)
        one = struct.pack(">I", 8) + b"Q\x00status"
        bad.s.sendall(one * 500)
        assert bad.goodbye() == "flooding: more than 16 requests sent ahead of their replies"
        check_still_serving(d, good)
        # Fast is not flooding: a client that waits for each reply may go as fast as it likes.
        for _ in range(1000):
            assert good.command("show drivers")[0] == 0

        # The daemon counted them, and every line was logged.
        status, text = good.command("status")
        assert re.search(r"control: +\d+ clients? \(0 attached\), \d+ commands, 0 refused, "
                         r"5 cut off", text), text
        good.close()
        assert d.stop() == 0


def test_a_client_that_never_reads_is_cut_off_alone():
    conf = NULL_LINES + "[control]\nmax_pipeline = 10000\nmax_output = 65536\n"
    with started(conf) as d:
        good = Raw(d)
        bad = Raw(d)
        req = b"Q\x00show config control"
        req = struct.pack(">I", len(req)) + req
        for _ in range(500):  # about 1 MB of replies that nobody reads
            try:
                bad.s.sendall(req)
            except (BrokenPipeError, ConnectionResetError):
                break
        d.wait_log(r"control: cut off client pid %d \(user %s\): not reading its replies: more "
                   r"than 65536 bytes unsent" % (os.getpid(), ME))
        assert bad.goodbye() is None  # its socket was full: no room for a goodbye
        check_still_serving(d, good)
        good.close()
        assert d.stop() == 0


def test_a_shell_that_does_not_keep_up_loses_log_lines_not_the_daemon():
    with started(NULL_LINES + "[control]\nlog_backlog = 4096\n") as d:
        slow = Raw(d)
        slow.send(b"A", b"info")
        assert slow.frame(b"R") == b"\x00showing the log at level info\n"
        # A configuration with 3000 mistakes: each reload logs 3000 error lines.
        with open(d.conf_path, "a") as f:
            f.write("[log]\n" + "".join("bogus%d = 1\n" % i for i in range(3000)))
        for _ in range(3):
            assert x(d, "reload")[0] == 1
        # The logging thread has handed every line to the sink once the daemon's own log shows
        # the last one (it flushes a batch after the sinks have seen it).
        d.wait_log(r"error: the configuration has errors; nothing was changed", count=3)
        # Meanwhile everyone else is served as usual.
        assert x(d, "status")[0] == 0
        # The slow shell reads at last: what fitted, then how many lines it missed.
        shown, missed, notes = 0, 0, 0
        note_rx = re.compile(r"notice: control: (\d+) log lines? not shown: the shell did not "
                             r"keep up$")

        def read_until(text_wanted):
            nonlocal shown, missed, notes
            while True:
                f = slow.next_frame(10)
                assert f is not None and f[0] == b"L", f
                text = f[1][1:].decode()
                m = note_rx.match(text)
                if m:
                    missed += int(m.group(1))
                    notes += 1
                else:
                    shown += 1
                if text_wanted(text):
                    return
        read_until(lambda t: notes > 0)
        # Once it has caught up, new lines reach it again.
        assert x(d, "log level info")[0] == 0
        read_until(lambda t: t == "notice: log level changed from info to info by user %s" % ME)
        assert shown > 1 and missed > 0, (shown, missed)
        print("  log lines shown %d, missed and counted %d" % (shown, missed))
        slow.close()
        assert d.stop() == 0


def test_too_many_clients_are_told_so():
    with started(NULL_LINES + "[control]\nmax_clients = 2\n") as d:
        a, b = Raw(d), Raw(d)
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(sock_path(d))
        third = Raw.__new__(Raw)
        third.s, third.buf = c, b""
        assert third.goodbye() == ("too many connections: the daemon serves at most max_clients "
                                   "at once")
        d.wait_log(r"warning: control: refused pid %d \(uid %d\): already 2 clients "
                   r"\(max_clients\)" % (os.getpid(), UID))
        a.close()
        # Once a leaves, there is room again.
        wait_for(lambda: "control:  1 client " in b.command("status")[1], what="a free slot")
        c2 = Raw(d)
        assert c2.command("status")[0] == 0
        b.close()
        c2.close()
        assert d.stop() == 0


# --- configuration ----------------------------------------------------------------------------


def test_control_section_is_checked_and_shown():
    with Daemon(NULL_LINES + "[control]\nmax_pipeline = 0\nfrobs = 2\n") as d:
        rc, out = cvxtest.run_callvoxd(["--check-config", "--config", d.conf_path])
        lines = open(d.conf_path).read().splitlines()
        assert rc == 2, out
        assert "callvoxd: %s:%d: [control] max_pipeline: 0 is out of range (1..10000)" % (
            d.conf_path, lines.index("max_pipeline = 0") + 1) in out, out
        assert "callvoxd: %s:%d: [control] unknown key 'frobs'" % (
            d.conf_path, lines.index("frobs = 2") + 1) in out, out
    with started(NULL_LINES + "[control]\nmax_pipeline = 7\n") as d:
        rc, out, err = x(d, "show config control")
        assert rc == 0 and out.startswith("[control]\n; The control socket"), out
        assert "  max_pipeline   = 7  (default 32)\n" in out, out
        # The limits are reloadable; the groups, socket and audit log need a restart.
        text = open(d.conf_path).read().replace("max_pipeline = 7",
                                                "max_pipeline = 9\nadmin_group = wheel")
        with open(d.conf_path, "w") as f:
            f.write(text)
        rc, out, err = x(d, "reload")
        assert rc == 0, err
        assert "[control] max_pipeline = 9: applied\n" in out, out
        assert "[control] admin_group = wheel: needs a restart\n" in out, out
        assert x(d, "show config control.max_pipeline")[1].startswith(
            "[control] max_pipeline = 9\n")
        assert d.stop() == 0


def test_stale_socket_is_replaced_and_a_live_one_is_not():
    with Daemon(NULL_LINES) as d:
        os.makedirs(d.run_dir, exist_ok=True)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(sock_path(d))
        s.close()  # a socket file nobody listens on: what a crash leaves
        d.start()
        d.wait_log(r"control: listening on ")
        assert x(d, "status")[0] == 0
        # A second daemon on the same socket refuses to start and leaves the first alone.
        d2 = Daemon(NULL_LINES, general={"run_dir": d.run_dir}, name="second")
        try:
            d2.start(wait=False)
            assert d2.proc.wait(20) == 1, d2.log()
            assert "control: another daemon is listening on %s" % sock_path(d) in d2.log()
        finally:
            d2.close()
        assert x(d, "status")[0] == 0
        assert d.stop() == 0


if __name__ == "__main__":
    main([
        test_one_shot_commands_and_exit_status,
        test_json_output_for_scripts,
        test_commands_from_a_pipe,
        test_interactive_editing_completion_and_history,
        test_attach_mode_shows_the_live_log_at_its_level,
        test_interactive_shell_hears_the_daemon_stop,
        test_attach_above_the_daemons_level_says_so,
        test_permissions_with_real_users_and_groups,
        test_audit_log_records_every_change_and_its_result,
        test_show_calls_lists_live_calls_and_call_hangup_ends_them,
        test_a_command_that_finishes_later_holds_only_its_own_client,
        test_graceful_shutdown_from_the_shell,
        test_garbage_flood_stalled_and_deaf_clients_are_cut_off_alone,
        test_a_client_that_never_reads_is_cut_off_alone,
        test_a_shell_that_does_not_keep_up_loses_log_lines_not_the_daemon,
        test_too_many_clients_are_told_so,
        test_control_section_is_checked_and_shown,
        test_stale_socket_is_replaced_and_a_live_one_is_not,
    ])
