"""The base of every configuration type: frozen, strict about unknown keys, kebab-case keys."""

from __future__ import annotations

from typing import Annotated

import pydantic

from hastack.model.durations import format_duration, parse_duration

__all__ = ["Duration", "Name", "Spec", "is_valid_name"]


def _kebab(name: str) -> str:
    return name.replace("_", "-")


class Spec(pydantic.BaseModel):
    """Configuration written by people: YAML keys are kebab-case like Pacemaker's meta names."""

    model_config = pydantic.ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=_kebab,
        populate_by_name=True,
        validate_default=False,
    )


def _duration(value: object) -> float:
    return parse_duration(value)


def is_valid_name(name: str) -> bool:
    """Cluster, node and resource names become key segments: letters, digits, '-', '_', '.'."""
    return (
        0 < len(name) <= 63
        and name.isascii()
        and name[0].isalnum()
        and all(ch.isalnum() or ch in "-_." for ch in name)
    )


def _name(value: object) -> str:
    if not isinstance(value, str) or not is_valid_name(value):
        raise ValueError(
            f"not a valid name: {value!r} (letters, digits, '-', '_', '.'; at most 63; "
            "starts with a letter or digit)"
        )
    return value


Duration = Annotated[
    float,
    pydantic.BeforeValidator(_duration),
    pydantic.PlainSerializer(format_duration, when_used="json"),
]
Name = Annotated[str, pydantic.BeforeValidator(_name)]
