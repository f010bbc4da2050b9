#!/usr/bin/env python3
"""The cluster tests' TCP proxy (tcpproxy.py) does what they rely on: bytes arrive intact and
in order, a configured delay is really added each way, a partition holds bytes until it is
healed, a reset closes connections, and refusing turns new connections away."""

import socket
import threading
import time

from cvxtest import main
from tcpproxy import TcpProxy


class EchoServer:
    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(c,), daemon=True).start()

    @staticmethod
    def _echo(c):
        with c:
            while True:
                try:
                    d = c.recv(65536)
                except OSError:
                    return
                if not d:
                    return
                c.sendall(d)

    def close(self):
        self.sock.close()


def recv_exact(s, n, timeout=10):
    s.settimeout(timeout)
    buf = b""
    while len(buf) < n:
        d = s.recv(n - len(buf))
        if not d:
            raise EOFError("closed after %d of %d bytes" % (len(buf), n))
        buf += d
    return buf


def round_trip(s, payload=b"x"):
    t = time.monotonic()
    s.sendall(payload)
    assert recv_exact(s, len(payload)) == payload
    return time.monotonic() - t


def with_proxy(fn):
    def run():
        echo = EchoServer()
        proxy = TcpProxy(("127.0.0.1", echo.port))
        try:
            fn(proxy)
        finally:
            proxy.close()
            echo.close()
    run.__name__ = fn.__name__
    return run


@with_proxy
def test_bytes_arrive_intact_and_in_order(proxy):
    payload = bytes(range(256)) * 4096  # 1 MiB
    with socket.create_connection(("127.0.0.1", proxy.port)) as s:
        threading.Thread(target=s.sendall, args=(payload,), daemon=True).start()
        assert recv_exact(s, len(payload), timeout=30) == payload


@with_proxy
def test_delay_is_added_each_way(proxy):
    with socket.create_connection(("127.0.0.1", proxy.port)) as s:
        base = min(round_trip(s) for _ in range(5))
        proxy.set_delay(60)
        delayed = min(round_trip(s) for _ in range(5))
    # Two one-way delays of 60 ms: the round trip is at least 120 ms longer than without.
    assert delayed >= 0.120, "round trip %.1f ms with 60 ms each way" % (delayed * 1000)
    assert delayed - base >= 0.115, (base, delayed)


@with_proxy
def test_partition_holds_bytes_until_healed(proxy):
    with socket.create_connection(("127.0.0.1", proxy.port)) as s:
        round_trip(s)
        proxy.partition()
        s.sendall(b"during")
        s.settimeout(0.5)
        try:
            got = s.recv(100)
        except socket.timeout:
            got = None
        assert got is None, "bytes crossed a partition: %r" % got
        proxy.heal()
        assert recv_exact(s, 6) == b"during"
        assert round_trip(s, b"after") < 5


@with_proxy
def test_reset_closes_connections_and_refuse_turns_new_ones_away(proxy):
    s = socket.create_connection(("127.0.0.1", proxy.port))
    round_trip(s)
    proxy.reset()
    s.settimeout(5)
    try:
        d = s.recv(10)
        assert d == b"", d
    except ConnectionResetError:
        pass
    s.close()
    proxy.refuse(True)
    with socket.create_connection(("127.0.0.1", proxy.port)) as s:
        s.settimeout(5)
        try:
            assert s.recv(10) == b""
        except ConnectionResetError:
            pass
    proxy.refuse(False)
    with socket.create_connection(("127.0.0.1", proxy.port)) as s:
        round_trip(s, b"back")


if __name__ == "__main__":
    main([test_bytes_arrive_intact_and_in_order, test_delay_is_added_each_way,
          test_partition_holds_bytes_until_healed,
          test_reset_closes_connections_and_refuse_turns_new_ones_away])
