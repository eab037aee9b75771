"""Choosing a server: the balancing algorithms, pure and deterministic.

Every algorithm picks among the candidates it is given (already reduced to usable primaries,
or to backups when no primary is up) and skips those at their maxconn or in `exclude` (the
servers a retry has already tried). `None` means every candidate is full or excluded: the
caller queues or answers 503. The only state is the algorithm's own bookkeeping (round-robin
weights, a tie-breaking counter); no clock, no randomness, no I/O, so the tests replay exact
sequences.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Container, Sequence
from typing import Protocol, TypeVar

from hastack.proxy.config import Balance

__all__ = ["Balancer", "Slot", "has_room", "make_balancer", "rendezvous_score"]


class Slot(Protocol):
    """What a balancer needs to know about a server."""

    @property
    def name(self) -> str: ...
    @property
    def weight(self) -> int: ...
    @property
    def load(self) -> int: ...  # in-flight requests (http) or sessions (tcp)
    @property
    def maxconn(self) -> int: ...  # 0: unlimited


S = TypeVar("S", bound=Slot)

_NOTHING: frozenset[str] = frozenset()


def has_room(slot: Slot) -> bool:
    return slot.maxconn == 0 or slot.load < slot.maxconn


class Balancer(Protocol):
    def pick(
        self, candidates: Sequence[S], client: bytes, exclude: Container[str] = _NOTHING
    ) -> S | None: ...


class RoundRobin:
    """Smooth weighted round robin (nginx's): weights 5,1,1 give a a b a c a a, not a a a a a b c.

    Each pick adds every candidate's weight to its running score, takes the highest and
    subtracts the total from it; interleaving keeps a heavy server from getting bursts.
    """

    def __init__(self) -> None:
        self._current: dict[str, int] = {}

    def pick(
        self, candidates: Sequence[S], client: bytes, exclude: Container[str] = _NOTHING
    ) -> S | None:
        best: S | None = None
        best_score = 0
        total = 0
        current = self._current
        for slot in candidates:
            weight = slot.weight
            maxconn = slot.maxconn
            if weight <= 0 or (maxconn and slot.load >= maxconn) or slot.name in exclude:
                continue
            score = current.get(slot.name, 0) + weight
            current[slot.name] = score
            total += weight
            if best is None or score > best_score:
                best, best_score = slot, score
        if best is not None:
            current[best.name] = best_score - total
        if len(current) > 4 * max(1, len(candidates)):
            live = {s.name for s in candidates}
            self._current = {k: v for k, v in current.items() if k in live}
        return best


class LeastConn:
    """Fewest in-flight per unit of weight; ties go round the candidates in turn."""

    def __init__(self) -> None:
        self._turn = 0

    def pick(
        self, candidates: Sequence[S], client: bytes, exclude: Container[str] = _NOTHING
    ) -> S | None:
        n = len(candidates)
        if n == 0:
            return None
        self._turn = (self._turn + 1) % n
        best: S | None = None
        best_key = math.inf
        for i in range(n):
            slot = candidates[(self._turn + i) % n]
            if slot.weight <= 0 or slot.name in exclude or not has_room(slot):
                continue
            key = (slot.load + 1) / slot.weight
            if key < best_key:
                best, best_key = slot, key
        return best


def rendezvous_score(client: bytes, server: str, weight: int) -> float:
    """Weighted rendezvous hashing: each (client, server) pair gets an independent score.

    A server leaving moves only its own clients, and a weight-w server wins a w/(sum of
    weights) share of clients (the -w/ln(u) form).
    """
    digest = hashlib.blake2b(client + b"\0" + server.encode(), digest_size=8).digest()
    unit = (int.from_bytes(digest, "big") + 1) / (2**64 + 2)  # in (0, 1)
    return -weight / math.log(unit)


class SourceHash:
    """The same client address goes to the same server while that server stays usable."""

    def pick(
        self, candidates: Sequence[S], client: bytes, exclude: Container[str] = _NOTHING
    ) -> S | None:
        best: S | None = None
        best_score = -1.0
        for slot in candidates:
            if slot.weight <= 0 or slot.name in exclude or not has_room(slot):
                continue
            score = rendezvous_score(client, slot.name, slot.weight)
            if score > best_score:
                best, best_score = slot, score
        return best


class First:
    """The first server in order with room: fills servers one after another (HAProxy `first`)."""

    def pick(
        self, candidates: Sequence[S], client: bytes, exclude: Container[str] = _NOTHING
    ) -> S | None:
        for slot in candidates:
            if slot.weight > 0 and slot.name not in exclude and has_room(slot):
                return slot
        return None


def make_balancer(kind: Balance) -> Balancer:
    if kind is Balance.ROUNDROBIN:
        return RoundRobin()
    if kind is Balance.LEASTCONN:
        return LeastConn()
    if kind is Balance.SOURCE:
        return SourceHash()
    return First()
