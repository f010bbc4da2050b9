"""Licences for tests: sign them with the development key (test/license/dev-key.secret), and
simulate the USB dongle (CVX_LICENSE_USB_SIM).  Shared by the licence tests and the split
tests."""
import os
import subprocess

from cvxtest import BUILD

KEYS = os.path.dirname(os.path.abspath(__file__))
TOOL = os.path.join(BUILD, "bin", "callvox-license")
DEV_SECRET = os.path.join(KEYS, "dev-key.secret")
OTHER_SECRET = os.path.join(KEYS, "other-key.secret")
OTHER_PUB = os.path.join(KEYS, "other-key.pub")
DONGLE_SECRET = "dongle-secret-0001"


def tool(*args, check=True):
    p = subprocess.run([TOOL] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=30)
    if check:
        assert p.returncode == 0, "callvox-license %s: %d %s" % (args, p.returncode, p.stderr)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def key_hash(secret):
    return tool("hash", secret)[1].strip()


def write_license(dir_, name="lic.lic", secret=DEV_SECRET, serial="T-0001", ports=2,
                  mailboxes=3, features="fax", expires="never", issued="2026-01-01",
                  hashes=None):
    hashes = hashes or [key_hash(DONGLE_SECRET)]
    text = ("# test licence\nformat = 1\nserial = %s\ncustomer = Test Customer\nissued = %s\n"
            "expires = %s\nports = %d\nmailboxes = %d\nfeatures = %s\n"
            % (serial, issued, expires, ports, mailboxes, features))
    text += "".join("key_hash = %s\n" % h for h in hashes)
    src = os.path.join(dir_, name + ".txt")
    with open(src, "w") as f:
        f.write(text)
    out = os.path.join(dir_, name)
    tool("sign", "-k", secret, "-o", out, src)
    return out


def sim_file(dir_, content):
    p = os.path.join(dir_, "dongle")
    with open(p, "w") as f:
        f.write(content + "\n")
    return p
