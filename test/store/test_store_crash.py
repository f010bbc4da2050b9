"""The store under kill -9: crashdep deposits from several clients as fast as it can and is
killed at a random moment, 25 times over one store; in some rounds the map starts at 1 MB so
that it grows (remaps) while deposits run and kills land during growth too.  After every restart each deposit that
was acknowledged is present with exactly its audio, committing it again stores nothing, and
the store verifies (reference counts, SHA-256 of every blob, no orphaned chunk)."""
import os
import random
import shutil
import signal
import subprocess
import tempfile

from cvxtest import BUILD, main, wait_for

CRASHDEP = os.path.join(BUILD, "bin", "crashdep")
ROUNDS = int(os.environ.get("CVX_CRASH_ROUNDS", "25"))


def acks(path):
    with open(path, "rb") as f:
        return [l for l in f.read().decode("ascii", "replace").split("\n")[:-1]
                if l.startswith("ACK ")]


def test_kill9_never_loses_an_acknowledged_deposit():
    rng = random.Random(os.environ.get("CVX_CRASH_SEED") or os.getpid())
    work = tempfile.mkdtemp(prefix="cvx-crash-")
    store = os.path.join(work, "store")
    files = []
    total = 0
    try:
        for rnd in range(ROUNDS):
            out = os.path.join(work, "acks-%d.txt" % rnd)
            files.append(out)
            clients = rng.choice([1, 4, 8, 16])
            map_mb = rng.choice(["1", "1024"])
            with open(out, "wb") as f:
                p = subprocess.Popen([CRASHDEP, "deposit", store, str(rnd), str(clients), map_mb],
                                     stdout=f, stderr=subprocess.STDOUT)
            try:
                # A random moment: after a random number of acknowledgements (0 kills it
                # while it starts, opening or cleaning up the store).
                target = rng.choice([0, 1, 3, 10, 30, 100, 300])

                def reached():
                    if p.poll() is not None:
                        raise AssertionError("crashdep exited (%s):\n%s"
                                             % (p.returncode, open(out).read()[-2000:]))
                    return len(acks(out)) >= target
                wait_for(reached, 60, "%d acknowledgements" % target, interval=0.001)
            finally:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
            assert p.returncode == -signal.SIGKILL, p.returncode
            got = len(acks(out))
            total += got
            v = subprocess.run([CRASHDEP, "verify", store] + files, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=300)
            text = v.stdout.decode("utf-8", "replace")
            print("round %2d: %2d clients, map %4s MB, killed after %4d acks (%5d in all): %s"
                  % (rnd, clients, map_mb, got, total, text.strip().splitlines()[-1] if text.strip() else ""))
            assert v.returncode == 0, text[-4000:]
        assert total > 0
    finally:
        if not os.environ.get("CVX_KEEP"):
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main([test_kill9_never_loses_an_acknowledged_deposit])
