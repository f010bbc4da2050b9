"""A small userspace TCP proxy for cluster tests: one-way delay and network partitions.

These kernels have no netem, so tests that need WAN latency between servers, or a link that
goes dark, put this proxy between two callvoxd processes (on loopback addresses only).

    p = TcpProxy(("127.0.0.1", upstream_port))      # listens on 127.0.0.1:<p.port>
    p.set_delay(60)      # every byte is delivered 60 ms after it arrived, in each direction
    p.partition()        # bytes stop flowing both ways; connections stay open (a black hole)
    p.heal()             # held bytes flow again, in order
    p.reset()            # every connection is closed at once (RST), new ones are accepted
    p.refuse(True)       # new connections are closed at once; existing ones untouched
    p.close()

Delay keeps byte order per direction (a FIFO with a release time per chunk) and applies
to the connection handshake as well (the upstream connect happens after the delay).
Runs an asyncio loop on its own thread, so tests drive it with plain calls.
"""

import asyncio
import socket
import struct
import threading
import time


class _Pipe:
    """One direction of one connection: chunks wait in order until their release time."""

    def __init__(self, proxy, reader, writer):
        self.proxy = proxy
        self.reader = reader
        self.writer = writer
        self.queue = asyncio.Queue()

    async def pump_in(self):
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    break
                self.proxy.bytes += len(data)
                await self.queue.put((time.monotonic() + self.proxy.delay_s, data))
        except (ConnectionError, OSError):
            pass
        await self.queue.put((time.monotonic() + self.proxy.delay_s, None))

    async def pump_out(self):
        try:
            while True:
                when, data = await self.queue.get()
                wait = when - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                while self.proxy.partitioned:
                    await self.proxy.healed.wait()
                if data is None:
                    if self.writer.can_write_eof():
                        self.writer.write_eof()
                    break
                self.writer.write(data)
                await self.writer.drain()
        except (ConnectionError, OSError):
            pass


class TcpProxy:
    def __init__(self, upstream, listen_host="127.0.0.1", port=0, delay_ms=0):
        self.upstream = upstream
        self.delay_s = delay_ms / 1000.0
        self.partitioned = False
        self.refusing = False
        self.bytes = 0
        self.connections = 0
        self._conns = set()
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(listen_host, port, ready),
                                        daemon=True)
        self._thread.start()
        if not ready.wait(10) or self.port is None:
            raise RuntimeError("tcpproxy: cannot listen on %s:%d" % (listen_host, port))

    def _run(self, host, port, ready):
        asyncio.set_event_loop(self._loop)
        self.healed = asyncio.Event()
        self.healed.set()
        self.port = None
        try:
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._accept, host, port))
            self.port = self._server.sockets[0].getsockname()[1]
        finally:
            ready.set()
        if self.port is not None:
            self._loop.run_forever()
        self._loop.close()

    async def _accept(self, reader, writer):
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            pass  # close(): asyncio's stream callback must not see the cancellation

    async def _serve(self, reader, writer):
        if self.refusing:
            _abort(writer)
            return
        self.connections += 1
        if self.delay_s > 0:
            await asyncio.sleep(self.delay_s)
        try:
            ureader, uwriter = await asyncio.open_connection(*self.upstream)
        except OSError:
            _abort(writer)
            return
        conn = (writer, uwriter)
        self._conns.add(conn)
        up, down = _Pipe(self, reader, uwriter), _Pipe(self, ureader, writer)
        try:
            await asyncio.gather(up.pump_in(), up.pump_out(), down.pump_in(), down.pump_out())
        finally:
            self._conns.discard(conn)
            for w in conn:
                w.close()

    def _call(self, fn):
        """Runs fn on the proxy's loop and waits for it."""
        done = threading.Event()

        def run():
            try:
                fn()
            finally:
                done.set()

        self._loop.call_soon_threadsafe(run)
        done.wait(10)

    def set_delay(self, ms):
        """One-way delay added to every byte from now on, in both directions."""
        self.delay_s = ms / 1000.0

    def partition(self):
        def cut():
            self.partitioned = True
            self.healed.clear()

        self._call(cut)

    def heal(self):
        def heal():
            self.partitioned = False
            self.healed.set()

        self._call(heal)

    def refuse(self, on=True):
        self.refusing = on

    def reset(self):
        """Closes every connection now with a reset (as a crashed peer or router would)."""

        def kill():
            for conn in list(self._conns):
                for w in conn:
                    _abort(w)

        self._call(kill)

    def close(self):
        async def shutdown():
            self._server.close()
            for conn in list(self._conns):
                for w in conn:
                    _abort(w)
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self._thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(10)


def _abort(writer):
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()
