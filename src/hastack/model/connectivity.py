"""Connectivity as data (docs/connectivity.md): `hastack:ping`'s targets and parameters, the
attribute's value, its dampening, and the events the DC derives from it. Pure: time is
passed in, nothing here probes.

* `parse_targets` / `ping_settings` read a resource's parameters, raising ValueError with
  the parameter's name, so `hastack config apply` refuses bad input with its path.
* `score` is Pacemaker's `pingd`: reachable targets × multiplier.
* `Dampener` publishes a new value only once it has held `dampen` seconds.
* `connectivity_events` is what the DC records when nodes lose or regain their targets,
  and the alert when every node has lost them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from hastack.model.config import Clone, ClusterConfig, Group, Primitive
from hastack.model.durations import parse_duration

__all__ = [
    "DEFAULT_ATTRIBUTE",
    "Dampener",
    "HeldAttributes",
    "PingSettings",
    "Target",
    "connectivity_alerts",
    "connectivity_events",
    "lost_everywhere",
    "parse_targets",
    "ping_attributes",
    "ping_settings",
    "ping_windows",
    "score",
]

DEFAULT_ATTRIBUTE = "pingd"
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Target:
    address: IPAddress
    interface: str | None = None  # probe out of this interface (one target per link)
    port: int | None = None  # TCP connect instead of ICMP echo

    def __str__(self) -> str:
        host = f"[{self.address}]" if self.address.version == 6 and self.port else str(self.address)
        text = f"{host}:{self.port}" if self.port else host
        return f"{text}@{self.interface}" if self.interface else text


def _target(item: str) -> Target:
    text, _, interface = item.partition("@")
    if "@" in item and (not interface or len(interface) > 15 or "/" in interface):
        raise ValueError(f"{item!r}: an interface name after '@' (at most 15 characters)")
    port: int | None = None
    if text.startswith("["):  # [v6]:port
        host, _, rest = text[1:].partition("]")
        if not rest.startswith(":"):
            raise ValueError(f"{item!r}: write [ADDRESS]:PORT")
        text, port_text = host, rest[1:]
    elif text.count(":") == 1:  # v4:port; a bare v6 address has several colons
        text, port_text = text.split(":")
    else:
        port_text = ""
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"{item!r}: port {port_text!r} is not 1..65535")
        port = int(port_text)
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{item!r} is not an address (IPv4 or IPv6, no names)") from None
    return Target(address, interface or None, port)


def parse_targets(text: str) -> tuple[Target, ...]:
    """`targets`: addresses separated by spaces or commas. Names are refused: a probe that
    first needs DNS measures DNS."""
    items = text.replace(",", " ").split()
    if not items:
        raise ValueError("no targets: give at least one address")
    targets = tuple(_target(i) for i in items)
    if len(set(targets)) != len(targets):
        raise ValueError("a target is listed twice")
    return targets


@dataclass(frozen=True, slots=True)
class PingSettings:
    targets: tuple[Target, ...]
    name: str = DEFAULT_ATTRIBUTE
    multiplier: int = 1000
    interval: float = 1.0
    timeout: float = 1.0
    attempts: int = 2
    dampen: float = 5.0


def ping_settings(params: Mapping[str, str]) -> PingSettings:
    """The agent's parameters, checked; ValueError('PARAM: why')."""

    def duration(name: str, default: float, *, positive: bool) -> float:
        if name not in params:
            return default
        try:
            value = parse_duration(params[name])
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
        if positive and value <= 0:
            raise ValueError(f"{name}: must be more than 0")
        return value

    def integer(name: str, default: int) -> int:
        raw = params.get(name, str(default))
        if not raw.strip().isdigit() or int(raw) < 1:
            raise ValueError(f"{name}: {raw!r} is not a positive integer")
        return int(raw)

    try:
        targets = parse_targets(params.get("targets", ""))
    except ValueError as exc:
        raise ValueError(f"targets: {exc}") from None
    name = params.get("name", DEFAULT_ATTRIBUTE)
    if not name or any(c.isspace() for c in name):
        raise ValueError(f"name: {name!r} is not an attribute name")
    settings = PingSettings(
        targets=targets,
        name=name,
        multiplier=integer("multiplier", 1000),
        interval=duration("interval", 1.0, positive=True),
        timeout=duration("timeout", 1.0, positive=True),
        attempts=integer("attempts", 2),
        dampen=duration("dampen", 5.0, positive=False),
    )
    return settings


def score(reachable: int, multiplier: int) -> int:
    """Pacemaker's pingd: how many targets answered, times the multiplier."""
    return max(0, reachable) * multiplier


class Dampener:
    """Holds a change back until the measured value has differed from the published one for
    `dampen` seconds, then publishes the value of that moment.

    The first value is published at once: there is nothing yet to protect from a flap. A
    round back at the published value cancels the pending change, so a link that bounces for
    less than `dampen` never moves a resource; a change that goes on moving (2000, then 1000,
    then 0 as targets go one by one) is published `dampen` after it began, not later."""

    def __init__(self, dampen: float) -> None:
        self.dampen = dampen
        self.published: int | None = None
        self.since: float | None = None  # when the measured value left the published one

    def observe(self, value: int, now: float) -> int | None:
        """Feed one round's value; the value to publish now, or None (nothing changes)."""
        if self.published is None:
            self.published = value
            return value
        if value == self.published:
            self.since = None
            return None
        if self.since is None:
            self.since = now
        if now - self.since >= self.dampen:
            self.published, self.since = value, None
            return value
        return None


# ---- the DC's view -------------------------------------------------------------------------------


def _primitives(r: Primitive | Group | Clone) -> Iterable[Primitive]:
    if isinstance(r, Primitive):
        yield r
    elif isinstance(r, Group):
        for m in r.resources:
            yield from _primitives(m)
    else:
        yield from _primitives(r.resource)


def ping_attributes(config: ClusterConfig | None) -> list[str]:
    """The attributes `hastack:ping` resources of a configuration publish."""
    names: set[str] = set()
    for top in config.resources if config is not None else ():
        for p in _primitives(top):
            if p.agent.cls == "hastack" and p.agent.type == "ping":
                names.add(str(p.params.get("name", DEFAULT_ATTRIBUTE)) or DEFAULT_ATTRIBUTE)
    return sorted(names)


def ping_windows(config: ClusterConfig | None) -> dict[str, float]:
    """attribute -> how long the DC gathers its changes from every node before it acts on
    them: one probe round's spread between nodes, `interval` + `timeout` × `attempts`."""
    out: dict[str, float] = {}
    for top in config.resources if config is not None else ():
        for p in _primitives(top):
            if p.agent.cls == "hastack" and p.agent.type == "ping":
                try:
                    s = ping_settings({k: str(v) for k, v in p.params.items()})
                except ValueError:
                    continue  # refused at apply; an old stored one is not acted on
                out[s.name] = max(out.get(s.name, 0.0), s.interval + s.timeout * s.attempts)
    return out


class HeldAttributes:
    """The DC's side of dampening, as Pacemaker's attrd does it: nodes notice a lost target
    at slightly different moments, and acting on the first one alone would move a resource
    away from a node that is about to be no worse than the rest (when the target itself
    died, every node's value falls, one after the other). So a change of a ping attribute on
    any node starts a window; when it ends, every node's current value is taken together.
    A node that appears, or leaves, is taken at once: there is nothing to compare."""

    def __init__(self) -> None:
        self.held: dict[str, dict[str, str]] = {}  # attribute -> node -> value in use
        self.since: dict[str, float] = {}  # attribute -> when its values first differed

    def view(
        self,
        windows: Mapping[str, float],
        current: Mapping[str, Mapping[str, str]],
        mono: float,
    ) -> dict[str, dict[str, str]]:
        """node -> the held values of the windowed attributes it has (the others are the
        caller's to keep as they are)."""
        for name in list(self.held):
            if name not in windows:
                del self.held[name]
                self.since.pop(name, None)
        out: dict[str, dict[str, str]] = {n: {} for n in current}
        for name, window in windows.items():
            raw = {n: a[name] for n, a in current.items() if name in a}
            held = self.held.get(name)
            if held is None:
                held = dict(raw)
            else:
                held = {n: held.get(n, v) for n, v in raw.items()}
                if any(held[n] != raw[n] for n in raw):
                    since = self.since.setdefault(name, mono)
                    if mono - since >= window:
                        held = dict(raw)
                        del self.since[name]
                else:
                    self.since.pop(name, None)
            self.held[name] = held
            for n, v in held.items():
                out[n][name] = v
        return out


def _value(raw: str | None) -> int | None:
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def lost_everywhere(values: Mapping[str, int | None]) -> bool:
    """Every node that publishes the attribute reports no target reachable (and some do)."""
    known = [v for v in values.values() if v is not None]
    return bool(known) and all(v <= 0 for v in known)


@dataclass(frozen=True, slots=True)
class ConnectivityChange:
    """One thing the DC records: a node lost (or regained) its targets, or every node did."""

    attribute: str
    kind: str  # node-lost, node-regained, lost-everywhere, regained-somewhere
    text: str
    node: str | None = None
    values: Mapping[str, int | None] | None = None


def connectivity_events(
    config: ClusterConfig | None,
    before: Mapping[str, Mapping[str, str]] | None,
    after: Mapping[str, Mapping[str, str]],
) -> list[ConnectivityChange]:
    """What changed between two views of the online nodes' attributes (node -> attributes),
    for each attribute a `hastack:ping` resource publishes. Nothing for the first view."""
    if before is None:
        return []
    out: list[ConnectivityChange] = []
    for name in ping_attributes(config):
        old = {n: _value(a.get(name)) for n, a in before.items()}
        new = {n: _value(a.get(name)) for n, a in after.items()}
        for node in sorted(new):
            was, now = old.get(node), new[node]
            if was is not None and now is not None and (was > 0) != (now > 0):
                lost = now <= 0
                text = (
                    f"{node} lost every ping target ({name} {was} -> {now})"
                    if lost
                    else f"{node} reaches its ping targets again ({name} {was} -> {now})"
                )
                out.append(
                    ConnectivityChange(
                        name, "node-lost" if lost else "node-regained", text, node=node
                    )
                )
        if lost_everywhere(new) and not lost_everywhere(old):
            out.append(
                ConnectivityChange(
                    name,
                    "lost-everywhere",
                    f"ALERT: {_lost_everywhere_text(name, new)}",
                    values=new,
                )
            )
        elif (
            lost_everywhere(old)
            and not lost_everywhere(new)
            and any(v is not None and v > 0 for v in new.values())
        ):
            best = ", ".join(n for n in sorted(new) if (new[n] or 0) > 0)
            out.append(
                ConnectivityChange(
                    name,
                    "regained-somewhere",
                    f"ping targets reachable again from {best} ({name})",
                    values=new,
                )
            )
    return out


def _lost_everywhere_text(name: str, values: Mapping[str, int | None]) -> str:
    shown = ", ".join(n for n in sorted(values) if values[n] is not None)
    return (
        f"every node lost its ping targets ({name} <= 0 on {shown}); resources stay where they run"
    )


def connectivity_alerts(
    config: ClusterConfig | None, attributes: Mapping[str, Mapping[str, str]]
) -> list[str]:
    """The connectivity alerts that stand in one view of the online nodes' attributes (node
    -> attributes): one per `hastack:ping` attribute that every node publishing it reports
    at 0 or less. The DC raises the alert (`connectivity_events`) when this begins, and it
    stands until a node reaches a target again; `hastack status` shows it meanwhile."""
    out = []
    for name in ping_attributes(config):
        values = {n: _value(a.get(name)) for n, a in attributes.items()}
        if lost_everywhere(values):
            out.append(_lost_everywhere_text(name, values))
    return out
