"""A fault-injecting TCP proxy on 127.0.0.1, put in front of a real server.

Modes (counted over the proxy's connections, in this order): reset the first ``reset_first``
connections (TCP RST before any byte); answer the first ``http_error_first`` HTTP requests with
``http_status`` and close; then forward bytes both ways. ``stall_after_bytes``: once that many bytes
went upstream in all, stop forwarding (connections stay open, so the client hangs mid-upload, as
on a dead link); ``drop_after_bytes``: then close that connection instead, once (a disconnect mid-upload).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from typing import Any

from servers.processes import free_port


class FaultProxy:
    """Forward 127.0.0.1:<port> to 127.0.0.1:<upstream_port>, injecting the configured faults."""

    def __init__(self, upstream_port: int, *, port: int | None = None, reset_first: int = 0,
                 http_error_first: int = 0, http_status: int = 503, stall_after_bytes: int | None = None,
                 drop_after_bytes: int | None = None) -> None:
        self.upstream_port = upstream_port
        self.port = port or free_port()
        self.lock = threading.Lock()
        self.connections = 0
        self.faults = 0
        self.bytes_up = 0
        self.stalled = threading.Event()
        self.configure(reset_first=reset_first, http_error_first=http_error_first, http_status=http_status,
                       stall_after_bytes=stall_after_bytes, drop_after_bytes=drop_after_bytes)
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()

    def configure(self, *, reset_first: int = 0, http_error_first: int = 0, http_status: int = 503,
                  stall_after_bytes: int | None = None, drop_after_bytes: int | None = None) -> None:
        """Set the faults for the connections from now on (counters restart)."""
        with self.lock:
            self.reset_left = reset_first
            self.http_error_left = http_error_first
            self.http_status = http_status
            self.stall_after_bytes = stall_after_bytes
            self.drop_after_bytes = drop_after_bytes
            self.bytes_up = 0
            self.faults = 0
            self.stalled.clear()

    def start(self) -> FaultProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept_loop, name=f"fault-proxy-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listener and every open connection."""
        self._closing.set()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
        with self.lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _close(sock)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _track(self, sock: socket.socket) -> None:
        with self.lock:
            self._sockets.add(sock)

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._track(client)
            with self.lock:
                self.connections += 1
                if self.reset_left > 0:
                    self.reset_left -= 1
                    self.faults += 1
                    action = "reset"
                elif self.http_error_left > 0:
                    self.http_error_left -= 1
                    self.faults += 1
                    action = "http_error"
                else:
                    action = "forward"
            if action == "reset":
                # SO_LINGER 0: close() sends a RST, the client sees "connection reset by peer".
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                _close(client)
            elif action == "http_error":
                threading.Thread(target=self._http_error, args=(client,), daemon=True).start()
            else:
                threading.Thread(target=self._forward, args=(client,), daemon=True).start()

    def _http_error(self, client: socket.socket) -> None:
        try:
            client.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data:
                piece = client.recv(65536)
                if not piece:
                    return
                data += piece
            head, _, body = data.partition(b"\r\n\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in
                       (line.decode("latin-1").partition(":") for line in head.split(b"\r\n")[1:])}
            length = int(headers.get("content-length", "0") or 0)
            if headers.get("expect", "").lower() != "100-continue":
                remaining = length - len(body)
                while remaining > 0:  # read the body, so that the client reads our answer and not a reset
                    piece = client.recv(min(remaining, 1 << 20))
                    if not piece:
                        break
                    remaining -= len(piece)
            reason = {500: "Internal Server Error", 503: "Service Unavailable", 429: "Too Many Requests"}.get(
                self.http_status, "Error")
            client.sendall(f"HTTP/1.1 {self.http_status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n"
                           "Retry-After: 0\r\n\r\n".encode())
        except OSError:
            pass
        finally:
            _close(client)

    def _forward(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
        except OSError:
            _close(client)
            return
        upstream.settimeout(None)
        self._track(upstream)
        threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
        threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        try:
            while not self._closing.is_set():
                data = source.recv(65536)
                if not data:
                    break
                if upstream and self._limit_hit(len(data)):
                    if self.drop_after_bytes is not None:
                        with self.lock:  # a drop happens once: the retry goes through
                            self.drop_after_bytes = None
                            self.faults += 1
                        break
                    while not self._closing.is_set():  # stall: hold the connection, forward nothing
                        self._closing.wait(0.2)
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            _close(source)
            _close(sink)

    def _limit_hit(self, size: int) -> bool:
        with self.lock:
            limit: Any = self.stall_after_bytes if self.stall_after_bytes is not None else self.drop_after_bytes
            if limit is None:
                return False
            if self.bytes_up + size > limit:
                self.stalled.set()
                return True
            self.bytes_up += size
            return False


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
