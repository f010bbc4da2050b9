"""callvoxd as a process: roles, configuration errors, modules, signals, privileges."""
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile

from cvxtest import CALLVOXD, Daemon, main, run_callvoxd, wait_for

TEST_MODULES = os.environ.get("CVX_TEST_MODULE_DIR", "")
NULL_LINES = "[null:lines]\nchannels = 4\n"


def test_version_and_usage():
    rc, out = run_callvoxd(["--version"])
    assert rc == 0 and re.match(r"callvoxd \d+\.\d+\.\d+\n", out), out
    rc, out = run_callvoxd(["--role", "bogus"])
    assert rc == 2 and "callvoxd: unknown role 'bogus' (call, system, all or witness)" in out, out
    rc, out = run_callvoxd(["stray"])
    assert rc == 2 and "callvoxd: unexpected argument 'stray'" in out, out


def test_check_config_ok():
    with Daemon(NULL_LINES) as d:
        rc, out = run_callvoxd(["--check-config", "--config", d.conf_path])
        assert rc == 0, out
        assert "callvoxd: configuration OK (1 file, role all)" in out, out


def test_check_config_reports_every_error_with_file_and_line():
    with Daemon() as d:
        body = ("role = sideways\nbogus = 1\n[null:x]\nchannels = 0\nchannels = 2\n"
                "[fax:tray]\npages = 1\n[log]\nstall_threshold = 5x\nthis is not ini\n")
        with open(d.conf_path, "a") as f:
            f.write(body)
        lines = open(d.conf_path).read().splitlines()

        def at(text):
            return lines.index(text) + 1
        rc, out = run_callvoxd(["--check-config", "--config", d.conf_path])
        assert rc == 2, out
        p = d.conf_path
        expected = [
            "%s:%d: expected 'key = value' or '[section]', got 'this is not ini'" % (p, at("this is not ini")),
            "%s:%d: [general] role: 'sideways' is not one of: call, system, all, witness" % (p, at("role = sideways")),
            "%s:%d: [general] unknown key 'bogus'" % (p, at("bogus = 1")),
            "%s:%d: [log] stall_threshold: '5x' is not a duration (such as 500ms, 20s, 5m, 1h)"
            % (p, at("stall_threshold = 5x")),
            "%s:%d: [null:x] channels: 0 is out of range (1..100000)" % (p, at("channels = 0")),
            "%s:%d: [null:x] channels: set twice in one file (first at line %d)"
            % (p, at("channels = 2"), at("channels = 0")),
            "%s:%d: unknown section [fax:tray] (no loaded module reads 'fax' sections)"
            % (p, at("[fax:tray]")),
            "configuration has errors; not starting",
        ]
        got = [l[len("callvoxd: "):] for l in out.splitlines() if l.startswith("callvoxd: ")]
        assert sorted(got) == sorted(expected), "got:\n%s\nexpected:\n%s" % (
            "\n".join(got), "\n".join(expected))


def test_missing_config_file():
    rc, out = run_callvoxd(["--foreground", "--config", "/nonexistent/callvox.conf"])
    assert rc == 2, out
    assert "callvoxd: /nonexistent/callvox.conf: cannot open: No such file or directory" in out, out


def test_conf_d_drop_in_overrides_main_file():
    with Daemon(NULL_LINES + "[log]\nlevel = notice\n") as d:
        os.makedirs(os.path.join(d.dir, "conf.d"))
        with open(os.path.join(d.dir, "conf.d", "10-debug.conf"), "w") as f:
            f.write("[log]\nlevel = debug\n")
        with open(os.path.join(d.dir, "conf.d", "ignored.txt"), "w") as f:
            f.write("this file is not read\n")
        rc, out = run_callvoxd(["--check-config", "--config", d.conf_path])
        assert rc == 0 and "(2 files, role all)" in out, out
        d.start()
        d.wait_log(r"debug: ")  # only visible at the drop-in's level
        assert d.stop() == 0


def check_role(role, forced):
    general = {} if forced else {"role": role}
    with Daemon(NULL_LINES, role=role if forced else None, general=general) as d:
        d.start()
        d.wait_log(r"started: role %s, name daemon" % role)
        log = d.log()
        if role == "system":
            assert "loaded null" not in log, log
            assert "[inst=null:lines] started" not in log, log
        else:
            d.wait_log(r"\[inst=null:lines\] line up: loopback ready")
        assert d.stop() == 0
        assert "callvoxd stopped" in d.log()


def test_each_role_starts_and_stops_cleanly():
    for role in ("call", "system", "all"):
        check_role(role, forced=True)
        check_role(role, forced=False)


def test_role_flag_wins_over_config():
    with Daemon(NULL_LINES, role="system", general={"role": "call"}) as d:
        d.start()
        d.wait_log(r"started: role system")
        assert d.stop() == 0


def test_sighup_reloads_what_it_can_and_names_the_rest():
    with Daemon(NULL_LINES + "[log]\nlevel = info\n") as d:
        d.start()
        d.wait_log(r"line up")
        with open(d.conf_path, "a") as f:
            f.write("[general]\ndrain_timeout = 7s\n[log]\nlevel = debug\n[null:lines]\n"
                    "answer_delay = 20ms\nchannels = 6\n")
        # Rewrite so each section appears once (repeated keys in one file are errors).
        text = open(d.conf_path).read()
        text = text.replace("[log]\nlevel = info\n", "")
        text = text.replace("channels = 4\n", "")
        with open(d.conf_path, "w") as f:
            f.write(text)
        d.signal(signal.SIGHUP)
        d.wait_log(r"reload: 2 changes applied, 2 need a restart")
        assert "[null:lines] answer_delay = 20ms: applied" in d.log(), d.log()
        log = d.log()
        assert "[log] level = debug: applied" in log, log
        assert "[general] drain_timeout = 7s: needs a restart" in log, log
        assert "[null:lines] channels = 6: needs a restart" in log, log
        # A broken configuration changes nothing and the daemon stays up.
        text = open(d.conf_path).read().replace("level = debug", "level = loud")
        with open(d.conf_path, "w") as f:
            f.write(text)
        d.signal(signal.SIGHUP)
        d.wait_log(r"the configuration has errors; nothing was changed")
        assert "level: 'loud' is not one of" in d.log()
        assert d.proc.poll() is None
        assert d.stop() == 0


def test_runs_as_unprivileged_user_after_start():
    if os.getuid() != 0:
        print("  (not root: the user switch cannot be tested)")
        return
    nobody = pwd.getpwnam("nobody")
    with Daemon(NULL_LINES, general={"user": "nobody"}) as d:
        os.chmod(d.dir, 0o755)
        d.start()
        status = open("/proc/%d/status" % d.proc.pid).read()
        uid_line = [l for l in status.splitlines() if l.startswith("Uid:")][0]
        assert uid_line.split()[1:] == [str(nobody.pw_uid)] * 4, uid_line
        st = os.stat(d.run_dir)
        assert st.st_uid == nobody.pw_uid, "run_dir not given to the daemon's user"
        assert d.stop() == 0


def test_unknown_user_is_one_clear_line():
    if os.getuid() != 0:
        return
    with Daemon(NULL_LINES, general={"user": "no-such-user-cvx"}) as d:
        d.start(wait=False)
        rc = d.proc.wait(20)
        assert rc == 1, "exit status %s:\n%s" % (rc, d.log()[-3000:])
        assert ("callvoxd: the user 'no-such-user-cvx' does not exist (create it with "
                "'useradd --system no-such-user-cvx', or set [general] user)") in d.log(), d.log()


def module_dir_with(*names):
    """A module directory holding null.so and the named test modules."""
    tmp = tempfile.mkdtemp(prefix="cvx-mods-")
    build_mods = os.path.join(os.path.dirname(CALLVOXD), "..", "lib", "callvox", "modules")
    shutil.copy(os.path.join(build_mods, "null.so"), tmp)
    for n in names:
        shutil.copy(os.path.join(TEST_MODULES, n + ".so"), tmp)
    return tmp


def test_broken_modules_are_refused_by_name_and_reason():
    mods = module_dir_with("wrongabi", "nosym", "declines", "notelf", "good")
    try:
        with Daemon(NULL_LINES, general={"module_dir": mods}) as d:
            d.start()
            log = d.log()
            assert re.search(r"error: module %s/wrongabi.so was built for module ABI 2, this "
                             r"callvoxd has ABI 1; going on without it" % re.escape(mods), log), log
            assert re.search(r"module %s/nosym.so has no cvx_module_entry symbol; not a callvox "
                             r"module" % re.escape(mods), log), log
            assert re.search(r"notice: module %s/declines.so declined to load: no test hardware "
                             r"present" % re.escape(mods), log), log
            assert re.search(r"module %s/notelf.so cannot be opened: " % re.escape(mods), log), log
            assert "loaded good 0.1" in log and "loaded null 1.0" in log
            assert d.stop() == 0
    finally:
        shutil.rmtree(mods)


def test_required_module_failure_is_fatal():
    mods = module_dir_with("declines", "wrongabi")
    try:
        for name, reason in (("declines", "declined to load: no test hardware present"),
                             ("wrongabi", "was built for module ABI 2")):
            conf = NULL_LINES + "[module:%s]\nrequired = yes\n" % name
            with Daemon(conf, general={"module_dir": mods}) as d:
                d.start(wait=False)
                assert d.proc.wait(20) == 2, d.log()
                log = d.log()
                assert "callvoxd: module %s/%s.so %s" % (mods, name, reason) in log, log
                assert "and [module:%s] says required = yes" % name in log, log
        conf = NULL_LINES + "[module:missing]\nrequired = yes\n"
        with Daemon(conf, general={"module_dir": mods}) as d:
            d.start(wait=False)
            assert d.proc.wait(20) == 2
            assert re.search(r":\d+: \[module:missing\] is required, but %s/missing.so does not "
                             r"exist" % re.escape(mods), d.log()), d.log()
        # load = no keeps a module out, and its sections are not errors.
        conf = NULL_LINES + "[module:null]\nload = no\n"
        with Daemon(conf, general={"module_dir": mods}) as d:
            d.start()
            assert "module %s/null.so: not loaded (load = no)" % mods in d.log()
            assert d.stop() == 0
    finally:
        shutil.rmtree(mods)


def test_background_mode_with_pid_file():
    with Daemon(NULL_LINES) as d:
        pid_file = os.path.join(d.dir, "callvoxd.pid")
        with open(d.conf_path, "a") as f:
            f.write("[general]\n")  # merged into the existing [general]
        text = open(d.conf_path).read().replace("[general]\n", "[general]\npid_file = %s\n" % pid_file, 1)
        with open(d.conf_path, "w") as f:
            f.write(text)
        p = subprocess.run([CALLVOXD, "--config", d.conf_path], timeout=30)
        assert p.returncode == 0
        pid = int(wait_for(lambda: os.path.exists(pid_file) and open(pid_file).read().strip(),
                           what="pid file"))
        assert os.path.exists("/proc/%d" % pid)
        try:
            os.kill(pid, signal.SIGTERM)  # the daemon this test started
            wait_for(lambda: not os.path.exists("/proc/%d" % pid) or
                     "zombie" in open("/proc/%d/status" % pid).read(), what="daemon exit")
            wait_for(lambda: not os.path.exists(pid_file), what="pid file removed")
        finally:
            # Never leave the detached daemon behind, even when the test fails.
            if os.path.exists("/proc/%d" % pid):
                os.kill(pid, signal.SIGKILL)


def test_background_start_errors_reach_the_terminal():
    # Without --foreground the starting command still shows why the daemon did not start,
    # and exits with the daemon's status.
    with Daemon(NULL_LINES + "[null:more]\nchannels = 0\n") as d:
        p = subprocess.run([CALLVOXD, "--config", d.conf_path], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=30)
        out = p.stdout.decode()
        assert p.returncode == 2, out
        assert "[null:more] channels: 0 is out of range (1..100000)" in out, out
    with Daemon(NULL_LINES, general={"run_dir": "/proc/cvx-cannot-create"}) as d:
        p = subprocess.run([CALLVOXD, "--config", d.conf_path], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=30)
        assert p.returncode == 1, p.stdout
        assert b"callvoxd: cannot create /proc/cvx-cannot-create:" in p.stdout, p.stdout


def test_fatal_start_problem_is_one_line_not_a_crash():
    with Daemon(NULL_LINES, general={"run_dir": "/proc/cvx-cannot-create"}) as d:
        d.start(wait=False)
        assert d.proc.wait(20) == 1, d.log()
        assert "callvoxd: cannot create /proc/cvx-cannot-create:" in d.log(), d.log()


if __name__ == "__main__":
    main([test_version_and_usage, test_check_config_ok,
          test_check_config_reports_every_error_with_file_and_line, test_missing_config_file,
          test_conf_d_drop_in_overrides_main_file, test_each_role_starts_and_stops_cleanly,
          test_role_flag_wins_over_config, test_sighup_reloads_what_it_can_and_names_the_rest,
          test_runs_as_unprivileged_user_after_start, test_unknown_user_is_one_clear_line,
          test_broken_modules_are_refused_by_name_and_reason,
          test_required_module_failure_is_fatal, test_background_mode_with_pid_file,
          test_background_start_errors_reach_the_terminal,
          test_fatal_start_problem_is_one_line_not_a_crash])
