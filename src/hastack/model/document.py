"""Reading YAML documents so that every refusal names the file, line and path at fault.

Validation itself is pydantic's; this module keeps the line of every YAML node so an error at
`resources[3].ops[0].timeout` can say `cluster.yaml:41:`, and rewrites pydantic's messages
into operator language.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pydantic
import yaml

from hastack.errors import ConfigError

__all__ = ["Document", "Loc", "format_path", "load_yaml", "validate"]

Loc = tuple[str | int, ...]
M = TypeVar("M", bound=pydantic.BaseModel)


@dataclass(frozen=True)
class Document:
    """Parsed YAML data with the line (1-based) where each path starts."""

    source: str
    data: Any
    lines: Mapping[Loc, int] = field(default_factory=dict)

    def describe(self, loc: Loc, message: str) -> str:
        """`file:line: path: message`."""
        line = self.line_of(loc)
        where = f"{self.source}:{line}" if line is not None else self.source
        return f"{where}: {format_path(loc)}: {message}"

    def line_of(self, loc: Loc) -> int | None:
        """The line of `loc`, or of its nearest ancestor that has one."""
        for end in range(len(loc), -1, -1):
            line = self.lines.get(loc[:end])
            if line is not None:
                return line
        return None


def _walk(node: yaml.Node, loc: Loc, lines: dict[Loc, int]) -> None:
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                child = (*loc, key_node.value)
                _walk(value_node, child, lines)
                lines[child] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*loc, index), lines)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (YAML lets the last win)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, source: str) -> Document:
    """Parse one YAML document; a syntax error becomes a ConfigError with its line."""
    try:
        node = yaml.compose(text, Loader=_UniqueKeyLoader)
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise ConfigError(source, [f"{where}: not valid YAML: {exc.problem}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, [f"{source}: not valid YAML: {exc}"]) from None
    lines: dict[Loc, int] = {}
    if node is not None:
        _walk(node, (), lines)
    return Document(source, data, lines)


def format_path(loc: Sequence[str | int]) -> str:
    """('resources', 3, 'ops', 0, 'timeout') -> 'resources[3].ops[0].timeout'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _message(error: Any, model: type[pydantic.BaseModel], loc: Loc) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required but missing"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, loc[:-1])
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return f"unknown key{hint}"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    return message


def _allowed_keys(model: type[pydantic.BaseModel], loc: Loc) -> list[str]:
    """The keys a mapping at `loc` accepts, when the path leads through plain model fields."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, pydantic.BaseModel)):
            return []
        found = None
        for name, info in current.model_fields.items():
            if part in (name, info.alias):
                found = info.annotation
        current = _inner_model(found)
        if current is None:
            return []
    if isinstance(current, type) and issubclass(current, pydantic.BaseModel):
        return sorted(info.alias or name for name, info in current.model_fields.items())
    return []


def _inner_model(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _clean_loc(loc: Sequence[Any]) -> Loc:
    # pydantic adds the name of a union member or a tag to the path; operators never wrote it.
    return tuple(
        p for p in loc if isinstance(p, int) or not str(p).startswith(("function-", "tagged-", "<"))
    )


def validate(
    doc: Document,
    model: type[M],
    *,
    checks: Callable[[M], list[tuple[Loc, str]]] | None = None,
) -> M:
    """Validate a document against a model; every problem is reported at once, with its line.

    `checks` runs after the fields are valid, for what spans several of them (references).
    """
    if doc.data is None:
        raise ConfigError(doc.source, [f"{doc.source}: the document is empty"])
    try:
        value = model.model_validate(doc.data)
    except pydantic.ValidationError as exc:
        located = [
            (_clean_loc(e["loc"]), _message(e, model, _clean_loc(e["loc"]))) for e in exc.errors()
        ]
        raise ConfigError(doc.source, [doc.describe(loc, m) for loc, m in located]) from None
    if checks is not None:
        problems = checks(value)
        if problems:
            raise ConfigError(doc.source, [doc.describe(loc, m) for loc, m in problems])
    return value
