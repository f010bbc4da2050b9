"""Licensing: the vendor tool (keygen, sign, verify, print, hash), the boot check of callvoxd
(demo mode, tampered file, wrong key, expired, missing file, no provider), the USB dongle
provider with a simulated dongle (present, absent, removed after boot, wrong secret,
timeout) and through the real libusb path (no dongle here), unlicensed feature modules not
loaded, and "show license".
"""
import os
import re
import shutil
import socket
import subprocess
import tempfile

from cvxtest import shell as x, BUILD, CALLVOXD, Daemon, free_port, main, wait_for
from lictest import DEV_SECRET, DONGLE_SECRET, KEYS, OTHER_PUB, OTHER_SECRET, TOOL, key_hash, \
    sim_file, tool, write_license

MODULES = os.path.join(BUILD, "lib", "callvox", "modules")
FEATURE_MODULES = os.environ["CVX_LIC_TEST_MODULES"]


def key_id(pub):
    """The key id as callvox-license reports it (first 16 hex digits of SHA-256(key))."""
    import base64
    import hashlib
    with open(pub) as f:
        b64 = [l.strip() for l in f if l.strip() and not l.startswith("#")][0]
    return hashlib.sha256(base64.b64decode(b64)).hexdigest()[:16]


def module_dir(dir_, names):
    """A module directory holding only the modules named (symlinks into the build)."""
    md = os.path.join(dir_, "modules")
    os.makedirs(md, exist_ok=True)
    for n in names:
        src = os.path.join(FEATURE_MODULES if n in ("fax", "attendant") else MODULES, n + ".so")
        os.symlink(src, os.path.join(md, n + ".so"))
    return md




def show_license(d):
    rc, out, err = x(d, "show license")
    assert rc == 0, "show license: %d %s" % (rc, err)
    return dict(re.findall(r"^(\S+) +(.*)$", out, re.M))


def licensed_daemon(dir_, lic, modules=("license_usb",), provider="usb", sim=None, extra=""):
    conf = "[license]\nfile = %s\nprovider = %s\n%s" % (lic, provider, extra)
    d = Daemon(conf=conf, general={"module_dir": module_dir(dir_, modules)}, workdir=dir_)
    env = {"CVX_LICENSE_USB_SIM": sim} if sim else {"CVX_LICENSE_USB_SIM": ""}
    return d, env


def refused_at_start(lic, expected_line):
    with tempfile.TemporaryDirectory(prefix="cvx-lic-") as t:
        d, env = licensed_daemon(t, lic)
        try:
            d.start(wait=False, extra_env=env)
            rc = d.proc.wait(30)
            log = d.log()
            assert rc == 1, "exit status %d\n%s" % (rc, log)
            assert expected_line in log, "no line %r in:\n%s" % (expected_line, log)
            assert re.search(r"^callvoxd: cannot start licence: (permission denied|input/output "
                             r"error)$", log, re.M), log
            assert "started" not in log
            # --check-config finds the same problem without starting anything.
            c = subprocess.run([CALLVOXD, "--check-config", "--config", d.conf_path],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
            err = c.stderr.decode()
            assert c.returncode == 2, "check-config exit %d\n%s" % (c.returncode, err)
            assert expected_line in err and err.endswith(
                "callvoxd: configuration has errors; not starting\n"), err
            assert "configuration OK" not in c.stdout.decode()
        finally:
            d.close()


# --- the tool ---------------------------------------------------------------------------


def test_tool_keygen_sign_verify_print():
    with tempfile.TemporaryDirectory(prefix="cvx-lic-") as t:
        rc, out, _ = tool("keygen", os.path.join(t, "vendor"))
        pub, sec = os.path.join(t, "vendor.pub"), os.path.join(t, "vendor.secret")
        assert out == "key %s: public %s, secret %s\n" % (key_id(pub), pub, sec)
        assert os.stat(sec).st_mode & 0o777 == 0o600
        lic = write_license(t, secret=sec, features="attendant, fax")
        assert tool("verify", "-p", pub, lic)[1] == "%s: valid licence T-0001 for Test Customer\n" % lic
        out = tool("print", "-p", pub, lic)[1]
        assert "ports       2\nmailboxes   3\nfeatures    attendant, fax\n" in out
        assert "key_hash    %s\n" % key_hash(DONGLE_SECRET) in out
        # The build's own key does not verify it.
        rc, _, err = tool("verify", lic, check=False)
        assert rc == 1 and ("signed with key %s, but this build accepts only licences signed"
                            % key_id(pub)) in err
        # keygen never overwrites.
        rc, _, err = tool("keygen", os.path.join(t, "vendor"), check=False)
        assert rc == 1 and "File exists" in err
        # A signed file cannot be signed again.
        rc, _, err = tool("sign", "-k", sec, lic, check=False)
        assert rc == 1 and "already has a key_id or signature line" in err


def test_tool_refuses_malformed_input():
    with tempfile.TemporaryDirectory(prefix="cvx-lic-") as t:
        src = os.path.join(t, "bad.txt")
        with open(src, "w") as f:
            f.write("format = 1\nserial = X\ncustomer = C\nissued = 2026-01-01\nexpires = never\n"
                    "ports = many\n")
        rc, _, err = tool("sign", "-k", DEV_SECRET, src, check=False)
        assert rc == 1 and err == ("callvox-license: %s: line 6: ports 'many' is not a number "
                                   "from 0 to 1000000\n" % src), err


# --- the boot check ---------------------------------------------------------------------


def test_demo_mode_without_licence():
    with tempfile.TemporaryDirectory(prefix="cvx-lic-") as t:
        d = Daemon(general={"module_dir": module_dir(t, ["fax"])}, workdir=t)
        try:
            c = subprocess.run([CALLVOXD, "--check-config", "--config", d.conf_path],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
            assert c.returncode == 0 and c.stdout.decode().startswith(
                "callvoxd: licence: none, demo mode (8 ports, 10 mailboxes)\n"), c
            d.start(extra_env=NO_DEMO_PORTS_HOOK)
            d.wait_log(r"licence: no licence file \(\[license\] file\): demo mode, 8 ports, "
                       r"10 mailboxes")
            s = show_license(d)
            assert s["state"] == "demo" and s["ports"] == "8" and s["mailboxes"] == "10", s
            assert s["messages"] == "accepted"
            d.wait_log(r"feature module fax: loaded")
            # Demo mode: ten mailboxes, and a clear refusal for the eleventh.
            for i in range(10):
                assert x(d, "mailbox add %d Demo User" % (3000 + i))[0] == 0
            rc, _, err = x(d, "mailbox add 3010 One Toomany")
            assert rc == 1 and err == "mailbox 3010 not added: the licence allows 10 mailboxes\n", err
            # An import says the same, line by line, and adds nothing.
            csv = os.path.join(t, "more.csv")
            with open(csv, "w") as f:
                f.write("number,first_name,last_name\n3011,Eleven,Th\n3012,Twelve,Th\n")
            rc, out, err = x(d, "mailbox import %s" % csv)
            assert rc == 1 and err == ("line 2: rejected: the licence allows 10 mailboxes\n"
                                       "line 3: rejected: the licence allows 10 mailboxes\n"
                                       "import: 0 added, 2 rejected\n"), (out, err)
            assert x(d, "mailbox show 3011")[0] == 1
            assert d.stop() == 0
        finally:
            d.close()


def test_tampered_licence_refused():
    with tempfile.TemporaryDirectory(prefix="cvx-lic-") as t:
        lic = write_license(t)
        with open(lic) as f:
            text = f.read()
        with open(lic, "w") as f:
            f.write(text.replace("ports = 2\n", "ports = 200\n"))
        refused_at_start(lic, "licence file %s refused: the signature does not match the "
                              "contents: the file was altered after it was signed" % lic)
        rc, _, err = tool("verify", lic, check=False)
        assert rc == 1 and "the file was altered after it was signed" in err


def test_wrong_key_refused():
    with tempfile.TemporaryDirectory(prefix="cvx-lic-") as t:
        lic = write_license(t, secret=OTHER_SECRET)
        refused_at_start(lic, "licence file %s refused: signed with key %s, but this build "
                              "accepts only licences signed with key %s"
                         % (lic, key_id(OTHER_PUB), key_id(os.path.join(KEYS, "dev-key.pub"))))


def test_expired_licence_refused():
    with tempfile.TemporaryDirectory(prefix="cvx-lic-") as t:
        lic = write_license(t, issued="2019-01-01", expires="2020-01-01")
        refused_at_start(lic, "licence file %s refused: licence T-0001 for Test Customer "
                              "expired on 2020-01-01" % lic)


def test_missing_licence_file_refused():
    with tempfile.TemporaryDirectory(prefix="cvx-lic-") as t:
        lic = os.path.join(t, "nowhere.lic")
        refused_at_start(lic, "licence file %s refused: cannot read it: No such file or "
                              "directory" % lic)


def test_licence_without_provider_refused():
    with tempfile.TemporaryDirectory(prefix="cvx-lic-") as t:
        lic = write_license(t)
        d, env = licensed_daemon(t, lic, provider="none")
        try:
            d.start(wait=False, extra_env=env)
            assert d.proc.wait(30) == 1
            assert ("licence T-0001 needs a proof of its key hash, but [license] provider is "
                    "none (set usb or home)") in d.log()
        finally:
            d.close()


# --- the USB dongle ---------------------------------------------------------------------


def test_dongle_present_then_removed_after_boot():
    with tempfile.TemporaryDirectory(prefix="cvx-lic-") as t:
        lic = write_license(t, features="fax")
        sim = sim_file(t, "secret " + DONGLE_SECRET)
        d, env = licensed_daemon(t, lic, modules=("license_usb", "fax", "attendant"), sim=sim)
        try:
            c = subprocess.run([CALLVOXD, "--check-config", "--config", d.conf_path],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
            assert c.returncode == 0 and c.stdout.decode().startswith(
                "callvoxd: licence T-0001 for Test Customer: 2 ports, 3 mailboxes, expires never; "
                "proof by usb at start\n"), c
            d.start(extra_env=env)
            d.wait_log(r"licence T-0001 for Test Customer: key hash %s\.\.\. proven by usb; "
                       r"2 ports, 3 mailboxes" % key_hash(DONGLE_SECRET)[:16])
            s = show_license(d)
            assert s["state"] == "valid" and s["messages"] == "accepted", s
            assert s["proven_hash"] == key_hash(DONGLE_SECRET)
            assert s["ports"] == "2" and s["mailboxes"] == "3" and s["features"] == "fax"
            # The licensed feature loads; the unlicensed one does not, with a log line.
            d.wait_log(r"feature module fax: loaded")
            d.wait_log(r"module \S+/attendant\.so: not loaded: feature 'attendant' is not "
                       r"licensed \(licence T-0001\)")
            assert "feature module attendant: loaded" not in d.log()
            # The licensed number of mailboxes, then a clear refusal.
            for n in ("2001", "2002", "2003"):
                rc, out, err = x(d, "mailbox add %s Some One" % n)
                assert rc == 0, err
            rc, _, err = x(d, "mailbox add 2004 Four Th")
            assert rc == 1 and err == "mailbox 2004 not added: the licence allows 3 mailboxes\n", err
            assert x(d, "mailbox show 2004")[0] == 1
            assert x(d, "mailbox del 2003")[0] == 0
            assert x(d, "mailbox add 2004 Four Th")[0] == 0
            # Removing the dongle after boot changes nothing until the next start.
            sim_file(t, "absent")
            s = show_license(d)
            assert s["state"] == "valid" and s["messages"] == "accepted", s
            assert d.stop() == 0
            # The next start finds no dongle: it runs, but refuses new messages and says why.
            d.start(extra_env=env)
            why = ("licence T-0001 not proven by usb: no dongle found (USB vendor 0x1209, "
                   "product 0xc7c0); new messages are refused")
            d.wait_log(re.escape(why))
            s = show_license(d)
            assert s["state"] == "not proven" and s["messages"] == "refused", s
            assert s["why"] == why, s
            assert d.stop() == 0
        finally:
            d.close()


def dongle_case(content, expected):
    with tempfile.TemporaryDirectory(prefix="cvx-lic-") as t:
        lic = write_license(t)
        d, env = licensed_daemon(t, lic, sim=sim_file(t, content),
                                 extra="usb_timeout = 250ms\n")
        try:
            d.start(extra_env=env)
            d.wait_log(re.escape(expected))
            s = show_license(d)
            assert s["state"] == "not proven" and s["messages"] == "refused", s
            assert s["why"] == expected, s
            assert d.stop() == 0
        finally:
            d.close()


def test_dongle_absent():
    dongle_case("absent", "licence T-0001 not proven by usb: no dongle found (USB vendor "
                "0x1209, product 0xc7c0); new messages are refused")


def test_dongle_wrong_secret():
    dongle_case("secret not-the-right-one",
                "licence T-0001 not proven: the usb key hash %s... is not one of the "
                "licence's key hashes; new messages are refused"
                % key_hash("not-the-right-one")[:16])


def test_dongle_timeout():
    dongle_case("timeout", "licence T-0001 not proven by usb: the dongle did not answer within "
                "250 ms; new messages are refused")


def test_real_libusb_reports_no_dongle():
    """No simulation: the real libusb path, on a machine without the dongle (or without USB
    at all), must say "no dongle found" and leave the daemon running."""
    with tempfile.TemporaryDirectory(prefix="cvx-lic-") as t:
        lic = write_license(t)
        d, env = licensed_daemon(t, lic)
        try:
            d.start(extra_env=env)
            d.wait_log(r"licence T-0001 not proven by usb: no dongle found \((USB vendor "
                       r"0x1209, product 0xc7c0|USB is not available: [^)]*)\); new messages "
                       r"are refused")
            s = show_license(d)
            assert s["state"] == "not proven", s
            assert d.stop() == 0
        finally:
            d.close()


def test_provider_module_missing():
    with tempfile.TemporaryDirectory(prefix="cvx-lic-") as t:
        lic = write_license(t)
        d, env = licensed_daemon(t, lic, modules=())
        try:
            d.start(wait=False, extra_env=env)
            assert d.proc.wait(30) == 1
            assert ("licence provider usb is not available: module license_usb is not "
                    "loaded") in d.log()
        finally:
            d.close()


# --- phone home -------------------------------------------------------------------------

SERVER_ID = "server-one-identity"


class LicenceServer:
    """The real callvox-license serve, on an ephemeral loopback port; killed by its PID."""

    def __init__(self, dir_, secret, licences):
        self.out = os.path.join(dir_, "serve-%d.out" % len(os.listdir(dir_)))
        self.f = open(self.out, "wb")
        self.proc = subprocess.Popen([TOOL, "serve", "-k", secret, "-a", "127.0.0.1", "-P", "0"]
                                     + list(licences), stdout=self.f, stderr=subprocess.STDOUT)

        def listening():
            if self.proc.poll() is not None:
                raise AssertionError("callvox-license serve exited: %s" % open(self.out).read())
            m = re.search(r"on http://127\.0\.0\.1:(\d+)\n", open(self.out).read())
            return m and int(m.group(1))
        self.port = wait_for(listening, 10, "callvox-license serve listening")
        self.url = "http://127.0.0.1:%d" % self.port

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.f.close()


class GarbageServer:
    """An HTTP server on loopback that answers every request with text that is no proof."""

    def __init__(self):
        import http.server
        import threading

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = b"<html>hello, this is not a licence server</html>\n"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass
        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), H)
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def home_daemon(dir_, lic, url):
    extra = "server_url = %s\nserver_id = %s\ngrace = 1h\n" % (url, SERVER_ID)
    return licensed_daemon(dir_, lic, modules=("license_home",), provider="home", extra=extra)


def home_refused(d, detail, regex=False):
    """Waits for the refusal line (detail is a regular expression when regex is set)."""
    prefix, suffix = "licence T-0001 not proven by home: ", "; new messages are refused"
    d.wait_log(re.escape(prefix) + (detail if regex else re.escape(detail)) + re.escape(suffix))
    s = show_license(d)
    assert s["state"] == "not proven" and s["messages"] == "refused", s
    return s


def test_phone_home_success_then_grace_then_grace_expired():
    with tempfile.TemporaryDirectory(prefix="cvx-lic-") as t:
        lic = write_license(t, hashes=[key_hash(SERVER_ID)])
        server = LicenceServer(t, DEV_SECRET, [lic])
        try:
            d, env = home_daemon(t, lic, server.url)
            d.start(extra_env=env)
            d.wait_log(r"licence T-0001 for Test Customer: key hash %s\.\.\. proven by home"
                       % key_hash(SERVER_ID)[:16])
            s = show_license(d)
            assert s["state"] == "valid" and s["messages"] == "accepted", s
            assert s["phone_home"].startswith("confirmed by the licence server at "), s
            last = s["last_success"]
            assert d.stop() == 0
            assert "ok T-0001 %s" % key_hash(SERVER_ID) in open(server.out).read()
        finally:
            server.stop()
        # The server is down: the last success, kept in the store, starts the grace period.
        d.start(extra_env=env)
        d.wait_log(r"licence: no valid answer from the licence server \(Failed to connect to "
                   r"127\.0\.0\.1 port %d[^)]*\); grace period since %s, until "
                   % (server.port, re.escape(last)))
        s = show_license(d)
        assert s["state"] == "valid" and s["messages"] == "accepted", s
        assert s["last_success"] == last, s
        assert d.stop() == 0
        # An hour and a minute later (test clock): the grace period is over.
        import calendar
        import time
        t_last = calendar.timegm(time.strptime(last, "%Y-%m-%d %H:%M:%S UTC"))
        env["CVX_LICENSE_TEST_NOW"] = str(t_last + 3660)
        d.start(extra_env=env)
        home_refused(d, r"no valid answer from the licence server \(Failed to connect to "
                        r"127\.0\.0\.1 port %d[^)]*\); the grace period since the last success "
                        r"\(%s\) ended at \S+ \S+ UTC" % (server.port, re.escape(last)), regex=True)
        assert d.stop() == 0
        d.close()


def test_phone_home_grace_ends_while_running():
    """The grace period ends while the daemon runs: it notices on time (not at the next
    hourly retry), refuses new messages and says why, and keeps running."""
    with tempfile.TemporaryDirectory(prefix="cvx-lic-") as t:
        lic = write_license(t, hashes=[key_hash(SERVER_ID)])
        server = LicenceServer(t, DEV_SECRET, [lic])
        d, env = home_daemon(t, lic, server.url)
        conf = ("[license]\nfile = %s\nprovider = home\nserver_url = %s\nserver_id = %s\n"
                "grace = 5s\n" % (lic, server.url, SERVER_ID))
        d.write_conf(conf, {"user": "", "run_dir": d.run_dir, "data_dir": d.data_dir,
                            "name": "lic", "module_dir": os.path.join(t, "modules")})
        try:
            d.start(extra_env=env)
            d.wait_log(r"proven by home")
            assert d.stop() == 0
            server.stop()
            d.start(extra_env=env)
            d.wait_log(r"licence: no valid answer from the licence server \(Failed to connect[^)]*"
                       r"\); grace period since ")
            assert show_license(d)["messages"] == "accepted"
            home_refused(d, r"no valid answer from the licence server \(Failed to connect[^)]*\); "
                            r"the grace period since the last success \([^)]*\) ended at "
                            r"\S+ \S+ UTC", regex=True)
            assert d.proc.poll() is None
            assert d.stop() == 0
        finally:
            server.stop()
            d.close()


def test_phone_home_server_down_without_earlier_success():
    with tempfile.TemporaryDirectory(prefix="cvx-lic-") as t:
        lic = write_license(t, hashes=[key_hash(SERVER_ID)])
        server = LicenceServer(t, DEV_SECRET, [lic])
        server.stop()
        d, env = home_daemon(t, lic, server.url)
        try:
            d.start(extra_env=env)
            home_refused(d, r"no valid answer from the licence server \(Failed to connect to "
                            r"127\.0\.0\.1 port %d[^)]*\) and no earlier success is recorded"
                         % server.port, regex=True)
            assert d.stop() == 0
        finally:
            d.close()


def test_phone_home_bad_signature():
    with tempfile.TemporaryDirectory(prefix="cvx-lic-") as t:
        lic = write_license(t, hashes=[key_hash(SERVER_ID)])
        # A server signing with another key than the one built into callvoxd.
        other = write_license(t, name="other.lic", secret=OTHER_SECRET,
                              hashes=[key_hash(SERVER_ID)])
        server = LicenceServer(t, OTHER_SECRET, [other])
        d, env = home_daemon(t, lic, server.url)
        try:
            d.start(extra_env=env)
            home_refused(d, "no valid answer from the licence server (the answer's signature "
                            "is not valid for this build's key) and no earlier success is "
                            "recorded")
            assert d.stop() == 0
        finally:
            d.close()
            server.stop()


def test_phone_home_garbage_answer():
    with tempfile.TemporaryDirectory(prefix="cvx-lic-") as t:
        lic = write_license(t, hashes=[key_hash(SERVER_ID)])
        server = GarbageServer()
        d, env = home_daemon(t, lic, server.url)
        try:
            d.start(extra_env=env)
            home_refused(d, "no valid answer from the licence server (the answer is not a "
                            "callvox proof) and no earlier success is recorded")
            assert d.stop() == 0
        finally:
            d.close()
            server.stop()


def test_phone_home_denied():
    with tempfile.TemporaryDirectory(prefix="cvx-lic-") as t:
        lic = write_license(t, hashes=[key_hash(SERVER_ID)])
        # The server knows licence T-0001 only for another server's hash.
        served = write_license(t, name="served.lic", hashes=[key_hash("another-server")])
        server = LicenceServer(t, DEV_SECRET, [served])
        d, env = home_daemon(t, lic, server.url)
        try:
            d.start(extra_env=env)
            home_refused(d, "the licence server denies key hash %s... for licence T-0001"
                         % key_hash(SERVER_ID)[:16])
            assert d.stop() == 0
        finally:
            d.close()
            server.stop()


# --- licensed ports: SIP 503 with Retry-After --------------------------------------------

SCENARIOS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenarios")
SIP_SCENARIOS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sip", "scenarios")
SIPP = shutil.which("sipp")


def sipp_bg(scenario, port):
    cwd = tempfile.mkdtemp(prefix="cvx-lic-sipp-")
    local = free_port()
    cmd = [SIPP, "-sf", os.path.join(SCENARIOS, scenario), "-i", "127.0.0.1", "-p", str(local),
           "-m", "1", "-s", "100", "-t", "u1", "-timeout", "50s", "-nostdin", "-trace_err",
           "127.0.0.1:%d" % port]
    p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    p.cwd = cwd
    return p


def sipp_finish(p, what):
    try:
        out, _ = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    errs = "".join(open(os.path.join(p.cwd, f)).read()[-3000:] for f in os.listdir(p.cwd)
                   if f.endswith("_errors.log"))
    shutil.rmtree(p.cwd, ignore_errors=True)
    assert p.returncode == 0, "%s: sipp %d\n%s\n%s" % (what, p.returncode,
                                                      out.decode()[-3000:], errs)


# ctest runs every test with CVX_LICENSE_TEST_DEMO_PORTS set high (the harnesses run many calls
# without a licence); an empty value gives demo mode its real 8 ports back.
NO_DEMO_PORTS_HOOK = {"CVX_LICENSE_TEST_DEMO_PORTS": ""}


def hang_up_all(d):
    for i in re.findall(r"^(\S+-\d+)\s", x(d, "show calls")[1], re.M):
        assert x(d, "call hangup %s" % i)[0] == 0


def test_demo_mode_refuses_the_ninth_call_with_503():
    if SIPP is None:
        print("sipp is not installed: skipped")
        return
    with tempfile.TemporaryDirectory(prefix="cvx-lic-") as t:
        port = free_port()
        d = Daemon(conf="[sip:pbx]\nlisten = 127.0.0.1:%d\ntrusted = 127.0.0.1\n"
                   "[echo]\nnumber = 100\n" % port,
                   general={"module_dir": module_dir(t, ["sip", "echo"])}, workdir=t)
        held = []
        try:
            d.start(extra_env=NO_DEMO_PORTS_HOOK)
            held = [sipp_bg("uac_hold_until_bye.xml", port) for _ in range(8)]
            wait_for(lambda: show_license(d)["ports_in_use"] == "8", 30, "eight calls up")
            s = show_license(d)
            assert s["state"] == "demo" and s["ports"] == "8" and s["ports_enforced"] == "yes", s
            sipp_finish(sipp_bg("uac_503_retry_after.xml", port), "ninth call")
            d.wait_log(r"every licensed port is in use; refusing a call \(503, Retry-After 30\)")
            s = show_license(d)
            assert s["calls_refused"] == "1" and s["ports_in_use"] == "8", s
            hang_up_all(d)
            for p in held:
                sipp_finish(p, "held call")
            held = []
            wait_for(lambda: show_license(d)["ports_in_use"] == "0", 20, "ports released")
            assert d.stop() == 0
        finally:
            for p in held:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            d.close()


def test_licensed_ports_refuse_extra_calls_with_503():
    if SIPP is None:
        print("sipp is not installed: skipped")
        return
    with tempfile.TemporaryDirectory(prefix="cvx-lic-") as t:
        lic = write_license(t, ports=2)
        port = free_port()
        extra = ("[sip:pbx]\nlisten = 127.0.0.1:%d\ntrusted = 127.0.0.1\n[echo]\nnumber = 100\n"
                 % port)
        d, env = licensed_daemon(t, lic, modules=("license_usb", "sip", "echo"),
                                 sim=sim_file(t, "secret " + DONGLE_SECRET))
        d.write_conf("[license]\nfile = %s\nprovider = usb\n%s" % (lic, extra),
                     {"user": "", "run_dir": d.run_dir, "data_dir": d.data_dir, "name": "lic",
                      "module_dir": os.path.join(t, "modules")})
        held = []
        try:
            d.start(extra_env=env)
            d.wait_log(r"proven by usb")
            held = [sipp_bg("uac_hold_until_bye.xml", port) for _ in range(2)]
            wait_for(lambda: show_license(d)["ports_in_use"] == "2", 20, "two calls up")
            # The third call finds every licensed port in use: 503 with Retry-After: 30.
            sipp_finish(sipp_bg("uac_503_retry_after.xml", port), "third call")
            d.wait_log(r"every licensed port is in use; refusing a call \(503, Retry-After 30\)")
            s = show_license(d)
            assert s["calls_refused"] == "1" and s["ports_in_use"] == "2", s
            assert s["ports_enforced"] == "yes", s
            # The calls in progress were not touched; hang them up from the shell.
            rc, out, err = x(d, "show calls")
            ids = re.findall(r"^(\S+-\d+)\s", out, re.M)
            assert len(ids) == 2, out
            for i in ids:
                assert x(d, "call hangup %s" % i)[0] == 0
            for p in held:
                sipp_finish(p, "held call")
            held = []
            wait_for(lambda: show_license(d)["ports_in_use"] == "0", 20, "ports released")
            # A port is free again: the next call is taken.
            p = sipp_bg("uac_hold_until_bye.xml", port)
            wait_for(lambda: show_license(d)["ports_in_use"] == "1", 20, "a call up again")
            ids = re.findall(r"^(\S+-\d+)\s", x(d, "show calls")[1], re.M)
            assert x(d, "call hangup %s" % ids[0])[0] == 0
            sipp_finish(p, "call after the limit")
            assert d.stop() == 0
        finally:
            for p in held:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            d.close()


# --- licensed ports across call servers -----------------------------------------------------

CA_TOOL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "ca",
                       "callvox-ca")


def linked_system(t, lic, dongle):
    """A cluster CA with certificates for sys1, cs1 and cs2, and a system server (sys1, not
    started) with the licence lic proven by a simulated dongle whose file says dongle, listening
    for call servers.  Returns (pki, daemon, its environment, its link port)."""
    pki = os.path.join(t, "pki")
    for args in (["init", pki], ["issue", pki, "sys1"], ["issue", pki, "cs1"],
                 ["issue", pki, "cs2"]):
        subprocess.run([CA_TOOL] + args, check=True, stdout=subprocess.DEVNULL)
    sys_port = free_port(kind=socket.SOCK_STREAM)
    sd = os.path.join(t, "sys1")
    os.makedirs(sd)
    sysd, env = licensed_daemon(
        sd, lic, sim=sim_file(t, dongle),
        extra="[link]\nca = %s/ca.pem\ncert = %s/sys1.pem\nkey = %s/sys1.key\n"
              "listen = 127.0.0.1:%d\n" % (pki, pki, pki, sys_port))
    sysd.role = "system"
    return pki, sysd, env, sys_port


def call_server(t, name, pki, sys_port, sip_port, modules=("sip", "echo")):
    wd = os.path.join(t, name)
    os.makedirs(wd)
    conf = ("[link]\nca = %s/ca.pem\ncert = %s/%s.pem\nkey = %s/%s.key\nservers = 127.0.0.1:%d\n"
            "heartbeat_ms = 200\nreconnect_max_ms = 300\n"
            "[sip:pbx]\nlisten = 127.0.0.1:%d\ntrusted = 127.0.0.1\n"
            % (pki, pki, name, pki, name, sys_port, sip_port))
    if "echo" in modules:
        conf += "[echo]\nnumber = 100\n"
    return Daemon(conf=conf, role="call", name=name, workdir=wd,
                  general={"module_dir": module_dir(wd, list(modules))})


def calls_of(d):
    return re.findall(r"^(\S+-\d+)\s", x(d, "show calls")[1], re.M)


def test_ports_counted_across_call_servers():
    if SIPP is None:
        print("sipp is not installed: skipped")
        return
    with tempfile.TemporaryDirectory(prefix="cvx-lic-") as t:
        pki, sysd, env, sys_port = linked_system(t, write_license(t, ports=3),
                                                 "secret " + DONGLE_SECRET)
        ports = {"cs1": free_port(), "cs2": free_port()}
        cs = {n: call_server(t, n, pki, sys_port, ports[n]) for n in ports}
        held = []
        try:
            sysd.start(extra_env=env)
            sysd.wait_log(r"proven by usb")
            for d in cs.values():
                d.start()
            # Each call server hears the licence from the system server.
            for d in cs.values():
                wait_for(lambda d=d: show_license(d).get("ports_from") ==
                         "the system server's grant", 20, "a grant")
                s = show_license(d)
                assert s["state"] == "valid" and s["cluster_ports"] == "3" and \
                    s["ports"] == "3", s
            # Two calls on cs1, one on cs2: the cluster's three ports are in use.
            held = [sipp_bg("uac_hold_until_bye.xml", ports["cs1"]) for _ in range(2)]
            wait_for(lambda: len(calls_of(cs["cs1"])) == 2, 20, "two calls on cs1")
            wait_for(lambda: show_license(cs["cs2"])["ports"] == "1", 20, "cs2 granted one port")
            held.append(sipp_bg("uac_hold_until_bye.xml", ports["cs2"]))
            wait_for(lambda: len(calls_of(cs["cs2"])) == 1, 20, "one call on cs2")
            wait_for(lambda: show_license(sysd)["ports_in_use"] == "3", 20, "3 ports in use")
            s = show_license(sysd)
            assert s["ports_on_call_servers"] == "3", s
            # A fourth call gets 503 + Retry-After on either call server.
            for n in ("cs2", "cs1"):
                wait_for(lambda n=n: show_license(cs[n])["ports"] ==
                         str(len(calls_of(cs[n]))), 20, "%s granted only its calls" % n)
                sipp_finish(sipp_bg("uac_503_retry_after.xml", ports[n]), "fourth call on " + n)
                assert show_license(cs[n])["calls_refused"] == "1"
            # One call on cs1 ends: cs2 may take one more.
            assert x(cs["cs1"], "call hangup %s" % calls_of(cs["cs1"])[0])[0] == 0
            wait_for(lambda: show_license(cs["cs2"])["ports"] == "2", 20, "cs2 granted two")
            held.append(sipp_bg("uac_hold_until_bye.xml", ports["cs2"]))
            wait_for(lambda: len(calls_of(cs["cs2"])) == 2, 20, "two calls on cs2")
            # The system server goes away: the call servers keep answering within their grant.
            sysd.kill()
            wait_for(lambda: show_license(cs["cs1"])["link"] == "down", 20, "link down on cs1")
            assert show_license(cs["cs1"])["ports_from"] == "the last grant (the link is down)"
            for d in cs.values():
                hang_up_all(d)
            for p in held:
                sipp_finish(p, "held call")
            held = []
            for d in cs.values():
                assert d.stop() == 0
        finally:
            for p in held:
                if p.poll() is None:
                    p.kill()
                    p.wait()
            for d in list(cs.values()) + [sysd]:
                d.close()


def test_call_server_alarm_when_the_system_server_is_not_proven():
    if SIPP is None:
        print("sipp is not installed: skipped")
        return
    with tempfile.TemporaryDirectory(prefix="cvx-lic-") as t:
        pki, sysd, env, sys_port = linked_system(t, write_license(t, ports=3), "absent")
        sip_port = free_port()
        cs1 = call_server(t, "cs1", pki, sys_port, sip_port)
        try:
            sysd.start(extra_env=env)
            sysd.wait_log(r"not proven by usb: no dongle found")
            cs1.start()
            cs1.wait_log(r"warning: licence alarm: the system server refuses new messages "
                         r"\(licence T-0001 not proven by usb: no dongle found \(USB vendor "
                         r"0x1209, product 0xc7c0\); new messages are refused\); callers are "
                         r"still answered", timeout=20)
            s = show_license(cs1)
            assert s["messages"] == "refused by the system server" and s["state"] == "not proven", s
            assert s["alarm"] == ("the system server refuses new messages; callers are still "
                                  "answered"), s
            # Callers are still answered: a call to the echo line completes.
            p = sipp_bg("uac_hold_until_bye.xml", sip_port)
            wait_for(lambda: len(calls_of(cs1)) == 1, 20, "the call answered")
            hang_up_all(cs1)
            sipp_finish(p, "call while the licence is not proven")
            assert cs1.stop() == 0
        finally:
            cs1.close()
            sysd.close()


def test_call_server_offers_no_call_to_unlicensed_features():
    if SIPP is None:
        print("sipp is not installed: skipped")
        return
    with tempfile.TemporaryDirectory(prefix="cvx-lic-") as t:
        pki, sysd, env, sys_port = linked_system(t, write_license(t, ports=3, features="fax"),
                                                 "secret " + DONGLE_SECRET)
        sip_port = free_port()
        # The fax stand-in is offered each call and lets it go; nothing else takes calls to
        # 100 here (echo answers 100 only), so each call ends with 404.
        cs1 = call_server(t, "cs1", pki, sys_port, sip_port, modules=("sip", "fax"))

        def one_call():
            sipp_finish(sipp_bg(os.path.join(SIP_SCENARIOS, "uac_refused_404.xml"), sip_port),
                        "a call on cs1")

        try:
            sysd.start(extra_env=env)
            sysd.wait_log(r"proven by usb")
            cs1.start()
            cs1.wait_log(r"feature module fax: loaded")
            wait_for(lambda: show_license(cs1).get("features") == "fax", 20, "the grant")
            # Licensed: the fax application is offered the call (and leaves it to echo).
            one_call()
            cs1.wait_log(r"feature app fax: offered a call to ")
            # The licence changes to one without fax (a restart of the system server): the
            # call server keeps the module loaded but offers it no call, and says why.
            assert sysd.stop() == 0
            write_license(t, ports=3, features="attendant")  # the same file, rewritten
            sysd.start(wait=False, extra_env=env)
            sysd.wait_log(r"proven by usb", count=2, timeout=20)
            offered = len(re.findall(r"feature app fax: offered a call", cs1.log()))
            wait_for(lambda: show_license(cs1).get("features") == "attendant", 30,
                     "the new licence's features on cs1")
            one_call()
            cs1.wait_log(r"fax: feature 'fax' is not licensed \(the system server's licence "
                         r"T-0001\); calls are not offered to it")
            assert len(re.findall(r"feature app fax: offered a call", cs1.log())) == offered
            assert cs1.stop() == 0
        finally:
            cs1.close()
            sysd.close()


if __name__ == "__main__":
    main([test_tool_keygen_sign_verify_print, test_tool_refuses_malformed_input,
          test_demo_mode_without_licence, test_demo_mode_refuses_the_ninth_call_with_503,
          test_tampered_licence_refused, test_wrong_key_refused,
          test_expired_licence_refused, test_missing_licence_file_refused,
          test_licence_without_provider_refused, test_dongle_present_then_removed_after_boot,
          test_dongle_absent, test_dongle_wrong_secret, test_dongle_timeout,
          test_real_libusb_reports_no_dongle, test_provider_module_missing,
          test_phone_home_success_then_grace_then_grace_expired,
          test_phone_home_grace_ends_while_running,
          test_phone_home_server_down_without_earlier_success, test_phone_home_bad_signature,
          test_phone_home_garbage_answer, test_phone_home_denied,
          test_licensed_ports_refuse_extra_calls_with_503,
          test_ports_counted_across_call_servers,
          test_call_server_alarm_when_the_system_server_is_not_proven,
          test_call_server_offers_no_call_to_unlicensed_features])
