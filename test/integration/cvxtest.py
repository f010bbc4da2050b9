"""Helpers for callvox integration tests: start the real callvoxd, wait for what it logs,
stop it, and run test functions with a plain 'N passed, N failed' summary.

Every test runs the daemon from the build tree (CVX_BUILD) in a fresh temporary directory,
with ephemeral ports where ports are needed.  Only processes a test started are killed, by
PID.  Waiting is always "poll a condition with a deadline", never a fixed sleep.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

BUILD = os.environ.get("CVX_BUILD", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
CALLVOXD = os.path.join(BUILD, "bin", "callvoxd")
SRC = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def wait_for(cond, timeout=10.0, what="condition", interval=0.02):
    """Polls cond() until it returns a true value, or fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def free_port(kind=socket.SOCK_DGRAM, host="127.0.0.1"):
    """An ephemeral port the kernel just gave out (free for both TCP and UDP in practice)."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Daemon:
    """One callvoxd process with its own directory and configuration."""

    def __init__(self, conf="", role=None, args=(), general=None, name="daemon", workdir=None):
        self.dir = workdir or tempfile.mkdtemp(prefix="cvx-")
        self.own_dir = workdir is None
        self.run_dir = os.path.join(self.dir, "run")
        self.data_dir = os.path.join(self.dir, "data")
        os.makedirs(self.data_dir, exist_ok=True)
        self.conf_path = os.path.join(self.dir, "callvox.conf")
        g = {"user": "", "run_dir": self.run_dir, "data_dir": self.data_dir, "name": name}
        if general:
            g.update(general)
        self.write_conf(conf, g)
        self.role = role
        self.args = list(args)
        self.proc = None
        self.log_path = os.path.join(self.dir, "stderr.log")

    def write_conf(self, conf, general):
        text = "[general]\n" + "".join("%s = %s\n" % kv for kv in general.items() if kv[1] is not None)
        with open(self.conf_path, "w") as f:
            f.write(text + conf)

    def start(self, wait=True, extra_env=None):
        cmd = [CALLVOXD, "--foreground", "--config", self.conf_path]
        if self.role:
            cmd += ["--role", self.role]
        cmd += self.args
        env = dict(os.environ)
        if extra_env:
            env.update(extra_env)
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=subprocess.STDOUT, env=env)
        if wait:
            self.wait_log(r"callvoxd \S+ started", timeout=20)
        return self

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_log(self, pattern, timeout=10.0, count=1):
        rx = re.compile(pattern)

        def seen():
            if self.proc is not None and self.proc.poll() is not None and len(rx.findall(self.log())) < count:
                raise AssertionError("callvoxd exited (%s) before logging /%s/:\n%s"
                                     % (self.proc.returncode, pattern, self.log()[-4000:]))
            return len(rx.findall(self.log())) >= count
        wait_for(seen, timeout, "log line /%s/" % pattern)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=20.0):
        """SIGTERM and wait; returns the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("callvoxd did not stop within %.0fs of SIGTERM:\n%s"
                                 % (timeout, self.log()[-4000:]))

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def close(self):
        self.kill()
        if getattr(self, "logf", None):
            self.logf.close()
        if self.own_dir and not os.environ.get("CVX_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


CALLVOX = os.path.join(BUILD, "bin", "callvox")


def shell(d, command, *flags, timeout=30):
    """Runs one command of the callvox shell on d's control socket: (status, stdout, stderr)."""
    p = subprocess.run([CALLVOX, "-s", os.path.join(d.run_dir, "callvox.ctl")] + list(flags) +
                       ["-x", command], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def run_callvoxd(args, timeout=30):
    """Runs callvoxd to completion (--check-config, --version); returns (status, output)."""
    p = subprocess.run([CALLVOXD] + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def main(tests):
    """Runs the test functions given (or named on the command line); prints a summary."""
    only = sys.argv[1:]
    passed = failed = 0
    for t in tests:
        if only and t.__name__ not in only:
            continue
        start = time.monotonic()
        try:
            t()
        except Exception:
            failed += 1
            print("FAIL %s (%.2fs)" % (t.__name__, time.monotonic() - start))
            traceback.print_exc()
        else:
            passed += 1
            print("ok   %s (%.2fs)" % (t.__name__, time.monotonic() - start))
        sys.stdout.flush()
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)
