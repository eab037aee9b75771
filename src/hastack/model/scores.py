"""Pacemaker's score arithmetic: integers clamped to ±INFINITY, where −INFINITY always wins.

INFINITY + (−INFINITY) = −INFINITY      a ban beats any preference
INFINITY + 5           = INFINITY
999999 + 5             = INFINITY      sums saturate
"""

from __future__ import annotations

from typing import Annotated

import pydantic

__all__ = ["INFINITY", "Score", "add_scores", "format_score", "parse_score"]

INFINITY = 1_000_000


def add_scores(a: int, b: int) -> int:
    if a <= -INFINITY or b <= -INFINITY:
        return -INFINITY
    if a >= INFINITY or b >= INFINITY:
        return INFINITY
    total = a + b
    if total >= INFINITY:
        return INFINITY
    if total <= -INFINITY:
        return -INFINITY
    return total


_WORDS = {"infinity": INFINITY, "+infinity": INFINITY, "inf": INFINITY, "-infinity": -INFINITY}


def parse_score(value: object) -> int:
    """An int, or INFINITY / +INFINITY / -INFINITY (any case); clamped to ±INFINITY."""
    if isinstance(value, bool):
        raise ValueError(f"not a score: {value!r}")
    if isinstance(value, int):
        return max(-INFINITY, min(INFINITY, value))
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in _WORDS:
            return _WORDS[text.lower()]
        if text.lower() == "-inf":
            return -INFINITY
        try:
            return max(-INFINITY, min(INFINITY, int(text)))
        except ValueError:
            pass
    raise ValueError(f"not a score: {value!r} (an integer, INFINITY or -INFINITY)")


def format_score(score: int) -> str:
    if score >= INFINITY:
        return "INFINITY"
    if score <= -INFINITY:
        return "-INFINITY"
    return str(score)


def _score_out(score: int) -> int | str:
    return score if -INFINITY < score < INFINITY else format_score(score)


Score = Annotated[
    int,
    pydantic.BeforeValidator(parse_score),
    pydantic.PlainSerializer(_score_out, when_used="json"),
]
