"""A server's health as rise/fall counting, pure: results in, state and next interval out.

HAProxy's rule, which operators know: an up server goes down after `fall` consecutive failed
checks, a down server comes up after `rise` consecutive good ones; one result the other way
resets the count. While a change is in progress the next check comes after `fastinter`, while
down after `downinter`, otherwise after `interval`.
"""

from __future__ import annotations

from dataclasses import dataclass

from hastack.proxy.config import CheckSpec

__all__ = ["Health", "check_timeout", "describe", "mark_down", "next_interval", "observe"]


@dataclass(frozen=True, slots=True)
class Health:
    up: bool = True
    streak: int = 0  # consecutive results against the current state

    @property
    def changing(self) -> bool:
        return self.streak > 0


def observe(health: Health, ok: bool, rise: int, fall: int) -> Health:
    """The state after one more check result."""
    if health.up == ok:
        return Health(health.up, 0)
    streak = health.streak + 1
    if streak >= (fall if health.up else rise):
        return Health(not health.up, 0)
    return Health(health.up, streak)


def mark_down(health: Health) -> Health:
    """Passive observation decided: down now, and `rise` good checks to come back."""
    return Health(False, 0)


def next_interval(health: Health, spec: CheckSpec) -> float:
    if health.changing:
        return spec.fastinter if spec.fastinter is not None else spec.interval
    if not health.up:
        return spec.downinter if spec.downinter is not None else spec.interval
    return spec.interval


def check_timeout(spec: CheckSpec, connect_timeout: float) -> float:
    """HAProxy bounds a check by `timeout check`, else by the connect timeout and `inter`."""
    if spec.timeout is not None:
        return spec.timeout
    return min(spec.interval, connect_timeout)


def describe(health: Health, spec: CheckSpec) -> str:
    """`UP`, `UP 1/3` (going down), `DOWN`, `DOWN 1/2` (going up), as HAProxy's stats page."""
    if not health.changing:
        return "UP" if health.up else "DOWN"
    if health.up:
        return f"UP {health.streak}/{spec.fall}"
    return f"DOWN {health.streak}/{spec.rise}"
