"""Durations as operators write them: `90`, `1.5s`, `500ms`, `2min`, `1h`, ISO `PT5S`."""

from __future__ import annotations

import re

__all__ = ["format_duration", "parse_duration"]

_UNITS = {
    "": 1.0,
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "ms": 0.001,
    "msec": 0.001,
    "us": 0.000001,
    "m": 60.0,
    "min": 60.0,
    "mins": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "d": 86400.0,
}
_PLAIN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
_ISO = re.compile(
    r"^P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$",
    re.IGNORECASE,
)


def parse_duration(value: object) -> float:
    """Seconds, or ValueError('not a duration: ...')."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"not a duration (negative): {value!r}")
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        plain = _PLAIN.match(text)
        if plain and plain.group(2).lower() in _UNITS:
            return float(plain.group(1)) * _UNITS[plain.group(2).lower()]
        iso = _ISO.match(text)
        if iso and text.upper() not in ("P", "PT"):
            parts = {k: float(v) if v else 0.0 for k, v in iso.groupdict().items()}
            return parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]
    raise ValueError(f"not a duration: {value!r} (use e.g. 20s, 500ms, 2min)")


def format_duration(seconds: float) -> str:
    """The shortest faithful way to write a duration back."""
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    if seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds % 60 == 0 and seconds >= 60:
        return f"{seconds / 60:g}min"
    return f"{seconds:g}s"
