#!/usr/bin/env python3
"""The system servers' cluster with real callvoxd processes on loopback: Raft over the
cluster's TLS elects one active system server, a killed one is replaced, a planned failover
hands the role over, a witness that wins an election hands it to a data server, a member
with another member's certificate is kept out, and bad cluster configurations are refused
with a clear line.  (What the log replicates is the store's state machine: issue 10.)"""

import os
import re
import socket
import subprocess
import tempfile
import time

from cvxtest import shell as x, BUILD, SRC, Daemon, free_port, main, wait_for
from tcpproxy import TcpProxy

CA_TOOL = os.path.join(SRC, "tools", "ca", "callvox-ca")




def cluster_view(d):
    """'show cluster' as {"active": name, "members": {name: state}}, or None."""
    rc, out, _ = x(d, "show cluster")
    if rc != 0:
        return None
    active = re.search(r"^active\s+(\S+)$", out, re.M).group(1)
    members = {}
    for m in re.finditer(r"^(sys-\d|wit-\d)\s+\d+\s+(data|witness)\s+\S+\s+(.+?)\s+(\S+)\s+(\S+)$",
                         out, re.M):
        members[m.group(1)] = m.group(3)
    return {"active": active, "members": members, "text": out}


def pki(t, names):
    d = os.path.join(t, "pki")
    subprocess.run([CA_TOOL, "init", d], check=True, stdout=subprocess.DEVNULL)
    for n in names:
        subprocess.run([CA_TOOL, "issue", d, n], check=True, stdout=subprocess.DEVNULL)
    return d


class Cluster:
    def __init__(self, t, members, cert_of=None, election=None, preset=None, delay_ms=None):
        """members: [(name, role)]; cert_of: {name: certificate name to use instead};
        delay_ms: every member is reached through a TcpProxy adding that one-way delay."""
        self.t = t
        self.pki = pki(t, [n for n, _ in members])
        self.ports = {n: free_port(kind=socket.SOCK_STREAM) for n, _ in members}
        self.proxies = {}
        if delay_ms is not None:
            for n, _ in members:
                self.proxies[n] = TcpProxy(("127.0.0.1", self.ports[n]), delay_ms=delay_ms)
        self.members = members
        self.daemons = {}
        for i, (name, role) in enumerate(members):
            cert = (cert_of or {}).get(name, name)
            conf = ("[cluster]\nca = %s/ca.pem\ncert = %s/%s.pem\nkey = %s/%s.key\n"
                    % (self.pki, self.pki, cert, self.pki, cert))
            if election and name in election:
                conf += "election_timeout = %s\n" % election[name]
            if preset:
                conf += "preset = %s\n" % preset
            if self.proxies:
                conf += "listen = 127.0.0.1:%d\n" % self.ports[name]
            for j, (n2, r2) in enumerate(members):
                port = self.proxies[n2].port if self.proxies else self.ports[n2]
                conf += ("[member:%s]\nid = %d\nraft = 127.0.0.1:%d\nrole = %s\n"
                         % (n2, j + 1, port, "witness" if r2 == "witness" else "data"))
            wd = os.path.join(t, name)
            os.makedirs(wd, exist_ok=True)
            self.daemons[name] = Daemon(conf=conf, role=role, name=name, workdir=wd)

    def start(self, *names):
        for n in names or self.daemons:
            self.daemons[n].start()

    def running(self):
        return [d for d in self.daemons.values() if d.proc and d.proc.poll() is None]

    def agreed_active(self):
        """The member every running data server names as active, once they agree."""
        views = [cluster_view(d) for n, d in self.daemons.items()
                 if d.proc and d.proc.poll() is None]
        if not views or any(v is None for v in views):
            return None
        actives = {v["active"] for v in views}
        return actives.pop() if len(actives) == 1 and "none" not in actives else None

    def restart(self, name):
        """Starts a member again (after a kill) and waits for this run's 'started' line."""
        d = self.daemons[name]
        runs = len(re.findall(r"callvoxd \S+ started", d.log()))
        d.start(wait=False)
        d.wait_log(r"callvoxd \S+ started", timeout=20, count=runs + 1)

    def leader_changes(self, name):
        rc, out, _ = x(self.daemons[name], "show cluster")
        return int(re.search(r"^leader_changes\s+(\d+)$", out, re.M).group(1)) if rc == 0 else None

    def close(self):
        try:
            for d in self.daemons.values():
                try:
                    if d.proc and d.proc.poll() is None:
                        assert d.stop() == 0, d.log()[-3000:]
                finally:
                    d.close()
        finally:
            for p in self.proxies.values():
                p.close()


def test_three_data_servers_elect_replace_and_hand_over():
    with tempfile.TemporaryDirectory(prefix="cvx-cluster-") as t:
        c = Cluster(t, [("sys-1", "system"), ("sys-2", "system"), ("sys-3", "system")])
        try:
            c.start()
            active = wait_for(c.agreed_active, 20, "one active system server")
            v = cluster_view(c.daemons[active])
            assert set(v["members"]) == {"sys-1", "sys-2", "sys-3"}, v["text"]
            assert v["members"][active] == "active", v["text"]
            wait_for(lambda: all(s == "passive" for n, s in
                                 cluster_view(c.daemons[active])["members"].items()
                                 if n != active), 10, "both passives in contact")
            # A passive refuses a planned failover and says where to run it.
            passive = next(n for n in c.daemons if n != active)
            rc, _, err = x(c.daemons[passive], "cluster failover")
            assert rc == 1 and err == ("this server is not the active one; run it on %s\n"
                                       % active), err

            # kill -9 of the active: the two others agree on a new one.
            old = active
            c.daemons[old].kill()
            t0 = time.monotonic()
            active = wait_for(lambda: (lambda a: a if a and a != old else None)(c.agreed_active()),
                              20, "a new active system server")
            print("    failover after kill -9: %.2f s (LAN preset)" % (time.monotonic() - t0))
            v = cluster_view(c.daemons[active])
            assert v["members"][old] == "unreachable", v["text"]

            # The killed server comes back as a passive of the new active one.
            c.restart(old)
            wait_for(lambda: cluster_view(c.daemons[active])["members"][old] == "passive", 20,
                     "the restarted server in contact")
            assert c.agreed_active() in (active, None)

            # Planned failover to a named member.
            target = next(n for n in c.daemons if n != active)
            rc, out, err = x(c.daemons[active], "cluster failover %s" % target)
            assert rc == 0 and out == "leadership handed over: %s is now active\n" % target, \
                (out, err)
            wait_for(lambda: c.agreed_active() == target, 20, "everyone naming %s" % target)
        finally:
            c.close()


def test_witness_that_wins_hands_leadership_to_a_data_server():
    with tempfile.TemporaryDirectory(prefix="cvx-cluster-") as t:
        # The witness's election timeout is far shorter than the data servers': it wins first.
        c = Cluster(t, [("sys-1", "system"), ("sys-2", "system"), ("wit-1", "witness")],
                    election={"wit-1": "300ms", "sys-1": "4s", "sys-2": "4s"})
        try:
            c.start("wit-1")
            c.start("sys-1", "sys-2")
            w = c.daemons["wit-1"]
            w.wait_log(r"cluster: the witness won an election; handing leadership to a data "
                       r"server", timeout=20)
            active = wait_for(c.agreed_active, 20, "an active system server")
            assert active in ("sys-1", "sys-2"), active
            assert cluster_view(c.daemons[active])["members"]["wit-1"] == "witness"
            # The witness keeps no store and serves nobody.
            assert not os.path.exists(os.path.join(w.data_dir, "store"))
            assert os.path.isdir(os.path.join(w.data_dir, "raft"))
        finally:
            c.close()


def test_member_with_another_members_certificate_is_kept_out():
    with tempfile.TemporaryDirectory(prefix="cvx-cluster-") as t:
        c = Cluster(t, [("sys-1", "system"), ("sys-2", "system"), ("sys-3", "system")],
                    cert_of={"sys-3": "sys-2"})
        try:
            c.start()
            pattern = r"raft: \S+ \(certificate sys-2\) claims to be server 3; refused"
            wait_for(lambda: any(re.search(pattern, c.daemons[n].log())
                                 for n in ("sys-1", "sys-2")), 20, "the refusal logged")
            active = wait_for(lambda: (lambda v1, v2: v1["active"] if v1 and v2 and
                                       v1["active"] == v2["active"] and
                                       v1["active"] in ("sys-1", "sys-2") else None)(
                cluster_view(c.daemons["sys-1"]), cluster_view(c.daemons["sys-2"])),
                20, "sys-1 and sys-2 agreeing on an active server")
            wait_for(lambda: cluster_view(c.daemons[active])["members"]["sys-3"] ==
                     "unreachable", 10, "sys-3 shown unreachable")
        finally:
            c.close()


def test_geo_preset_through_120ms_one_way():
    """Sites 120 ms apart one way (through the test proxy): the geo preset keeps one leader
    while nothing fails, and a new one is elected after kill -9 of the active server."""
    with tempfile.TemporaryDirectory(prefix="cvx-cluster-") as t:
        c = Cluster(t, [("sys-1", "system"), ("sys-2", "system"), ("sys-3", "system")],
                    preset="geo", delay_ms=120)
        try:
            c.start()
            active = wait_for(c.agreed_active, 30, "one active system server")
            d = c.daemons[active]
            d.wait_log(r"cluster: member %s \(id \d, data\) of 3, Raft on 127\.0\.0\.1:\d+, geo "
                       r"preset \(election 1500 ms, heartbeat 250 ms\)" % active)
            changes = c.leader_changes(active)
            # Stable: heartbeats every 250 ms over a 240 ms round trip start no election.
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                assert c.agreed_active() in (active, None)
                time.sleep(0.5)
            assert c.leader_changes(active) == changes
            assert c.agreed_active() == active
            old = active
            c.daemons[old].kill()
            t0 = time.monotonic()
            active = wait_for(lambda: (lambda a: a if a and a != old else None)(c.agreed_active()),
                              30, "a new active system server")
            print("    failover after kill -9: %.2f s (geo preset, 120 ms one way)"
                  % (time.monotonic() - t0))
        finally:
            c.close()


def refused(conf, role, name, line):
    with tempfile.TemporaryDirectory(prefix="cvx-cluster-") as t:
        d = Daemon(conf=conf, role=role, name=name, workdir=t)
        try:
            d.start(wait=False)
            rc = d.proc.wait(30)
            log = d.log()
            assert rc == 1, "exit %d\n%s" % (rc, log)
            assert line in log, "no %r in:\n%s" % (line, log)
        finally:
            d.close()


def test_bad_cluster_configurations_refused():
    members = ("[member:sys-1]\nid = 1\nraft = 127.0.0.1:%d\n[member:wit-1]\nid = 2\n"
               "raft = 127.0.0.1:%d\nrole = witness\n" % (free_port(), free_port()))
    refused("", "witness", "wit-1",
            "callvoxd: a witness needs the cluster's [member:NAME] sections")
    refused(members, "system", "sys-9",
            "callvoxd: this server's name 'sys-9' ([general] name) is not one of the "
            "[member:NAME] sections")
    refused(members, "system", "wit-1",
            "callvoxd: [member:wit-1] is a witness member, but this process runs role system")
    refused(members, "system", "sys-1",
            "callvoxd: [cluster] ca, cert and key are needed: Raft traffic between members is "
            "always TLS")
    # Two members with one id: a configuration error with file and line.
    with tempfile.TemporaryDirectory(prefix="cvx-cluster-") as t:
        d = Daemon(conf="[member:a]\nid = 1\nraft = 127.0.0.1:1\n[member:b]\nid = 1\n"
                   "raft = 127.0.0.1:2\n", role="system", name="a", workdir=t)
        p = subprocess.run([os.path.join(BUILD, "bin", "callvoxd"), "--check-config", "--config",
                            d.conf_path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=30)
        out = p.stdout.decode()
        assert p.returncode == 2 and re.search(r"callvox\.conf:\d+: \[member:b\] id: 1 is the id "
                                               r"of \[member:a\] too", out), out
        d.close()


if __name__ == "__main__":
    main([test_three_data_servers_elect_replace_and_hand_over,
          test_witness_that_wins_hands_leadership_to_a_data_server,
          test_member_with_another_members_certificate_is_kept_out,
          test_geo_preset_through_120ms_one_way,
          test_bad_cluster_configurations_refused])
