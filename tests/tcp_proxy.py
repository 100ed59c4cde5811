"""A TCP proxy the test controls, between the service and PostgreSQL, to stage outages.

`freeze()` is a server that stops answering with its sockets open (a hung host, a
partition behind a stateful firewall): nothing is forwarded either way, connections stay
open and new ones are accepted, but get no further. `drop()` is a server gone: every
connection is closed and new ones are refused. `restore()` forwards again; connections
held through a freeze go on where they stopped.

It runs in a thread of its own, so that it forwards while the test's event loop waits.
"""

import contextlib
import queue
import selectors
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

CHUNK_BYTES = 64 * 1024
COMMAND_TIMEOUT_SECONDS = 5.0


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener: socket.socket | None = self._listen(0)
        self.port: int = self._listener.getsockname()[1]
        self._peers: dict[socket.socket, socket.socket] = {}
        self._frozen = False
        self._selector = selectors.DefaultSelector()
        self._commands: queue.Queue[tuple[str, threading.Event]] = queue.Queue()
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._selector.register(self._wake_reader, selectors.EVENT_READ)
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._run, name="tcp-proxy", daemon=True)
        self._thread.start()

    def freeze(self) -> None:
        self._command("freeze")

    def drop(self) -> None:
        self._command("drop")

    def restore(self) -> None:
        self._command("restore")

    def close(self) -> None:
        self._command("close")
        self._thread.join(COMMAND_TIMEOUT_SECONDS)

    @property
    def connections(self) -> int:
        """Client connections open through the proxy now."""
        return len(self._peers) // 2

    def _command(self, name: str) -> None:
        """Carried out by the proxy's thread; done when this returns."""
        done = threading.Event()
        self._commands.put((name, done))
        self._wake_writer.send(b"x")
        if not done.wait(COMMAND_TIMEOUT_SECONDS):
            raise RuntimeError(f"the proxy did not {name} within {COMMAND_TIMEOUT_SECONDS} s")

    def _listen(self, port: int) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Dropped connections leave the port in TIME_WAIT; restore() listens on it again.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        listener.setblocking(False)
        return listener

    def _run(self) -> None:
        while True:
            for key, _events in self._selector.select():
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._wake_reader:
                    sock.recv(4096)
                    if not self._carry_out_commands():
                        return
                elif sock is self._listener:
                    self._accept()
                # Not closed, nor frozen, by an earlier event of this round.
                elif sock in self._peers and not self._frozen:
                    self._forward(sock)

    def _carry_out_commands(self) -> bool:
        while True:
            try:
                name, done = self._commands.get_nowait()
            except queue.Empty:
                return True
            if name == "freeze":
                self._frozen = True
                for sock in self._peers:
                    self._selector.unregister(sock)
            elif name in ("drop", "close"):
                if not self._frozen:
                    for sock in self._peers:
                        self._selector.unregister(sock)
                self._frozen = False
                for sock in list(self._peers):
                    sock.close()
                self._peers.clear()
                if self._listener is not None:
                    self._selector.unregister(self._listener)
                    self._listener.close()
                    self._listener = None
            elif name == "restore":
                if self._frozen:
                    for sock in self._peers:
                        self._selector.register(sock, selectors.EVENT_READ)
                self._frozen = False
                if self._listener is None:
                    self._listener = self._listen(self.port)
                    self._selector.register(self._listener, selectors.EVENT_READ)
            done.set()
            if name == "close":
                self._selector.close()
                self._wake_reader.close()
                self._wake_writer.close()
                return False

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            client, _address = self._listener.accept()
        except BlockingIOError:
            return
        try:
            upstream = socket.create_connection(self.upstream, timeout=COMMAND_TIMEOUT_SECONDS)
        except OSError:
            client.close()
            return
        for sock in (client, upstream):
            sock.setblocking(True)
            sock.settimeout(COMMAND_TIMEOUT_SECONDS)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._peers[client] = upstream
        self._peers[upstream] = client
        if not self._frozen:  # Frozen: accepted, and held without a byte going through.
            self._selector.register(client, selectors.EVENT_READ)
            self._selector.register(upstream, selectors.EVENT_READ)

    def _forward(self, sock: socket.socket) -> None:
        peer = self._peers[sock]
        try:
            data = sock.recv(CHUNK_BYTES)
            if data:
                peer.sendall(data)
                return
        except OSError:
            pass
        # One side closed (or failed): close the pair, as a real connection would end.
        for end in (sock, peer):
            self._selector.unregister(end)
            del self._peers[end]
            end.close()


@contextmanager
def tcp_proxy(upstream_host: str, upstream_port: int) -> Iterator[TcpProxy]:
    proxy = TcpProxy(upstream_host, upstream_port)
    try:
        yield proxy
    finally:
        with contextlib.suppress(RuntimeError):
            proxy.close()
