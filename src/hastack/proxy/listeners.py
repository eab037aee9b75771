"""The listening sockets, owned by the supervisor so that they outlive every data plane.

A reload starts new data planes on the *same* sockets and lets the old ones stop accepting:
a socket that stays open keeps its accept queue, so no connection that the kernel has already
accepted (SYN-ACKed) is reset — which is what closing one SO_REUSEPORT socket and binding
another would do. A worker that crashes is started again on its sockets for the same reason.

Each frontend address has one socket per worker slot, all bound with SO_REUSEPORT so the
kernel spreads new connections over them (HAProxy binds the same way by default). Worker i
serves slot i; when a reload lowers the worker count, the slots of the workers that are no
longer there are served by the remaining ones (round robin), so their queues are still
accepted from and the sockets are never closed while the proxy runs. Sockets are closed only
for addresses the configuration no longer has (after the old data planes have stopped) and
when the proxy stops.
"""

from __future__ import annotations

import socket

from hastack.proxy.config import FrontendSpec, ProxyConfig, parse_address

__all__ = ["Listeners", "listening_socket"]

# Linux's IP_FREEBIND (not exported by the socket module everywhere).
_IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)


def listening_socket(address: str, *, reuse_port: bool, freebind: bool) -> socket.socket:
    """A bound, non-blocking TCP socket for a frontend address ("host:port", "[v6]:port")."""
    host, port = parse_address(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if freebind:
            level = socket.IPPROTO_IPV6 if family == socket.AF_INET6 else socket.IPPROTO_IP
            sock.setsockopt(level, _IP_FREEBIND, 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class Listeners:
    """address -> its sockets, one per slot; grown by `ensure`, trimmed by `retire`."""

    def __init__(self) -> None:
        self.sockets: dict[str, list[socket.socket]] = {}

    def ensure(self, config: ProxyConfig) -> None:
        """Sockets for every frontend address and at least `workers` slots; OSError (and
        nothing new kept) when an address cannot be bound."""
        slots = max([config.workers, *(len(s) for s in self.sockets.values())])
        created: list[socket.socket] = []
        try:
            for frontend in config.frontends:
                for address in frontend.bind:
                    have = self.sockets.setdefault(address, [])
                    while len(have) < slots:
                        sock = listening_socket(
                            address, reuse_port=True, freebind=frontend.freebind
                        )
                        created.append(sock)
                        have.append(sock)
                    for sock in have:
                        sock.listen(frontend.backlog)  # listening from now: the queue fills
        except BaseException:
            for sock in created:
                for have in self.sockets.values():
                    if sock in have:
                        have.remove(sock)
                sock.close()
            self.sockets = {a: s for a, s in self.sockets.items() if s}
            raise

    def for_worker(self, index: int, workers: int, frontend: FrontendSpec) -> dict[str, list[int]]:
        """The file descriptors worker `index` of `workers` accepts from, per address."""
        out: dict[str, list[int]] = {}
        for address in frontend.bind:
            have = self.sockets.get(address, [])
            out[address] = [s.fileno() for slot, s in enumerate(have) if slot % workers == index]
        return out

    def worker_fds(self, index: int, workers: int, config: ProxyConfig) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for frontend in config.frontends:
            out.update(self.for_worker(index, workers, frontend))
        return out

    def retire(self, config: ProxyConfig) -> None:
        """Close the sockets of addresses `config` no longer binds."""
        wanted = {a for f in config.frontends for a in f.bind}
        for address in [a for a in self.sockets if a not in wanted]:
            for sock in self.sockets.pop(address):
                sock.close()

    def close(self) -> None:
        for have in self.sockets.values():
            for sock in have:
                sock.close()
        self.sockets = {}
