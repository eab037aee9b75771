"""Decoding JSON written by others — store values, JSON-lines records — with errors that say
what is wrong instead of exceptions that stop the reader. Pure."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["json_lines", "json_object", "json_value"]


def json_value(raw: bytes | str) -> Any:
    """The decoded value; ValueError("not valid JSON (...)") otherwise."""
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not valid JSON ({exc})") from None


def json_object(raw: bytes | str) -> dict[str, Any]:
    """A decoded JSON object; ValueError naming what was found otherwise."""
    data = json_value(raw)
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, found {type(data).__name__}")
    return data


def json_lines(lines: Iterable[str]) -> Iterator[Any]:
    """The value of every whole line; a torn line (a writer killed mid-line) is skipped."""
    for line in lines:
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            continue
