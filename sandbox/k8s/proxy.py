"""TCP forwarding: Service addresses to ready pods, and host services into the node network."""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
from collections.abc import Callable

Connector = Callable[[], socket.socket]


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while chunk := src.recv(65536):
            dst.sendall(chunk)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


class Forwarder:
    """Accept on `listener`; for each connection open an upstream with the next connector and splice bytes.

    `targets()` is called per connection, so endpoint changes (pods becoming ready or going away) apply to new
    connections at once; targets are used round-robin. With no target the connection is closed, as a Service
    without ready endpoints refuses connections.
    """

    def __init__(self, listener: socket.socket, targets: Callable[[], list[Connector]], name: str = "") -> None:
        self.listener = listener
        self.targets = targets
        self.name = name
        self.counter = itertools.count()
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._accept, name=f"forward-{name}", daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.listener.getsockname()[1]

    def _accept(self) -> None:
        self.listener.settimeout(0.5)
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        targets = self.targets()
        upstream = None
        for _ in range(len(targets)):
            connector = targets[next(self.counter) % len(targets)]
            try:
                upstream = connector()
                break
            except OSError:
                continue
        if upstream is None:
            client.close()
            return
        client.settimeout(None)
        upstream.settimeout(None)
        back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
        back.start()
        _pipe(client, upstream)
        back.join()
        client.close()
        upstream.close()

    def close(self) -> None:
        self.closed.set()
        with contextlib.suppress(OSError):
            self.listener.close()
