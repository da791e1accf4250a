"""A TCP proxy in front of the loopback S3 server that can fail on cue: cut every connection
that carries a given request (e.g. part 2 of a multipart upload), or go down altogether. It
also counts server-side copies (``x-amz-copy-source``) and parts sent through it."""

from __future__ import annotations

import contextlib
import socket
import threading


class FaultyProxy:
    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").rsplit(":", 1)
        self.upstream = (host, int(port))
        self.cut_when: bytes | None = None  # cut connections whose data contains this
        self.down_after_cut = False  # after the first cut, refuse everything
        self.down = False
        self.cuts = 0
        self.copies = 0  # requests asking S3 to copy an object (CopyObject, UploadPartCopy)
        self.parts = 0  # UploadPart requests
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.down:
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets |= {client, server}
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, outbound: bool) -> None:
        try:
            while data := source.recv(65536):
                if outbound and self._should_cut(data):
                    break
                if outbound:
                    self._count(data)
                target.sendall(data)
        except OSError:
            pass
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _count(self, data: bytes) -> None:
        """Counts requests by their head (a head split between two reads is rare on loopback
        and would make the counts lower, never higher)."""
        with self._lock:
            self.copies += data.lower().count(b"\r\nx-amz-copy-source:")
            self.parts += data.count(b"&partNumber=") + data.count(b"?partNumber=")

    def _should_cut(self, data: bytes) -> bool:
        if self.down:
            return True
        if self.cut_when is not None and self.cut_when in data:
            self.cuts += 1
            if self.down_after_cut:
                self.down = True
            return True
        return False

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()
