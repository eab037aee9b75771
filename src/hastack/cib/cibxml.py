"""Reading Pacemaker's XML the way Pacemaker reads it: id-refs, name/value sets, its booleans,
scores, intervals and role names — and the record of what an import could not carry over.

Values that Pacemaker would reject come back as None; the caller decides the default, as
Pacemaker does per option.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator

from hastack.model.config import Role
from hastack.model.scores import INFINITY

__all__ = [
    "Findings",
    "XmlDoc",
    "parse_bool",
    "parse_int",
    "parse_interval",
    "parse_role",
    "parse_score_text",
]


class Findings:
    """What an import met: features (short tags), what it could not convert, and remarks."""

    def __init__(self) -> None:
        self.features: set[str] = set()
        self.unsupported_features: set[str] = set()
        self._unsupported: dict[str, None] = {}
        self._notes: dict[str, None] = {}

    def feature(self, *tags: str) -> None:
        self.features.update(tags)

    def unsupported(self, text: str, *tags: str) -> None:
        """Something that changes placement and is left out: the case is not comparable."""
        self._unsupported.setdefault(text, None)
        self.features.update(tags)
        self.unsupported_features.update(tags)

    def note(self, text: str) -> None:
        """Something changed or dropped without changing what Pacemaker would decide."""
        self._notes.setdefault(text, None)

    @property
    def unsupported_items(self) -> tuple[str, ...]:
        return tuple(self._unsupported)

    @property
    def notes(self) -> tuple[str, ...]:
        return tuple(self._notes)


class XmlDoc:
    """A parsed CIB with an index of every element that has an id, for `id-ref`."""

    def __init__(self, root: ET.Element) -> None:
        self.root = root
        self.by_id: dict[str, ET.Element] = {}
        for el in root.iter():
            eid = el.get("id")
            if eid is not None and "id-ref" not in el.attrib:
                self.by_id.setdefault(eid, el)

    def resolve(self, el: ET.Element) -> ET.Element | None:
        """The element itself, or the one its `id-ref` names (None if that does not exist)."""
        ref = el.get("id-ref")
        if ref is None:
            return el
        return self.by_id.get(ref)

    def children(self, parent: ET.Element, tag: str | None = None) -> Iterator[ET.Element]:
        """Children of `parent` (only `tag` ones if given), id-refs resolved, dangling ones left
        out."""
        for child in parent:
            resolved = self.resolve(child)
            if resolved is not None and (tag is None or resolved.tag == tag):
                yield resolved

    def sets(self, parent: ET.Element | None, tag: str) -> Iterator[ET.Element]:
        """The `tag` blocks under `parent` (id-refs resolved), in Pacemaker's precedence order:
        higher `score` first, document order among equals."""
        if parent is None:
            return
        blocks: list[tuple[int, int, ET.Element]] = []
        for index, child in enumerate(parent.findall(tag)):
            block = self.resolve(child)
            if block is None:
                continue
            score = parse_score_text(block.get("score")) or 0
            blocks.append((-score, index, block))
        for _, _, block in sorted(blocks, key=lambda b: (b[0], b[1])):
            yield block

    def nvpairs(
        self,
        parent: ET.Element | None,
        tag: str,
        on_rule: Callable[[ET.Element], bool] | None = None,
    ) -> dict[str, str]:
        """Name/value pairs of every `tag` block under `parent`; the first value of a name wins
        (Pacemaker's rule), '#default' unsets it. A block with a rule is used only when
        `on_rule(block)` says so (the caller decides and records what it cannot evaluate)."""
        values: dict[str, str] = {}
        unset: set[str] = set()
        for block in self.sets(parent, tag):
            if block.find("rule") is not None and (on_rule is None or not on_rule(block)):
                continue
            for pair in block.findall("nvpair"):
                nv = self.resolve(pair)
                if nv is None:
                    continue
                name, value = nv.get("name"), nv.get("value")
                if name is None or value is None:
                    continue
                if value.lower() == "#default":
                    values.pop(name, None)
                    unset.add(name)
                elif name not in values and name not in unset:
                    values[name] = value
        return values


_TRUE = {"true", "on", "yes", "y", "1"}
_FALSE = {"false", "off", "no", "n", "0"}


def parse_bool(text: str | None) -> bool | None:
    if text is None:
        return None
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    return None


_LEADING_INT = re.compile(r"^\s*([+-]?\d+)")


def parse_score_text(text: str | None) -> int | None:
    """A score as Pacemaker reads one: [+|-]INFINITY, or the integer the text starts with
    ("1.0" is 1), clamped to ±INFINITY; None when there is no number at all."""
    if text is None:
        return None
    word = text.strip().upper()
    if word in ("INFINITY", "+INFINITY"):
        return INFINITY
    if word == "-INFINITY":
        return -INFINITY
    number = parse_int(text)
    if number is None:
        return None
    return max(-INFINITY, min(INFINITY, number))


def parse_int(text: str | None) -> int | None:
    """The integer a text starts with (strtoll's reading), or None."""
    if text is None:
        return None
    match = _LEADING_INT.match(text)
    return int(match.group(1)) if match else None


_NUMBER = re.compile(r"^\s*(\d+)[\d.]*\s*(.*?)\s*$")
_ISO_PART = re.compile(r"(\d+(?:\.\d+)?)([YMWDHS])", re.IGNORECASE)


def parse_interval(text: str | None) -> float | None:
    """Seconds from a Pacemaker interval: a bare number is seconds; units ms/s/m/min/h; ISO 8601
    durations (`PT10S`, and `P10S` which Pacemaker also reads as seconds)."""
    if text is None:
        return None
    value = text.strip()
    if value.startswith("P"):
        return _iso_duration(value)
    match = _NUMBER.match(value)
    if match is None:
        return None
    number, unit = float(match.group(1)), match.group(2).lower()
    # Pacemaker matches unit prefixes, in this order (so "sec", "mins", "hr" all work).
    if unit == "" or unit.startswith("s"):
        return number
    if unit.startswith("ms"):
        return number / 1000
    if unit.startswith("us"):
        return number / 1_000_000
    if unit.startswith("m"):
        return number * 60
    if unit.startswith("h"):
        return number * 3600
    return None


def _iso_duration(text: str) -> float | None:
    body = text[1:].split("/", maxsplit=1)[0].split(maxsplit=1)[0] if len(text) > 1 else ""
    if not body:
        return None
    seconds = 0.0
    in_time = False
    pos = 0
    found = False
    while pos < len(body):
        if body[pos] in "Tt":
            in_time = True
            pos += 1
            continue
        match = _ISO_PART.match(body, pos)
        if match is None:
            return None
        amount, unit = float(match.group(1)), match.group(2).upper()
        if unit == "Y":
            seconds += amount * 365 * 86400
        elif unit == "M":
            seconds += amount * (60 if in_time else 30 * 86400)
        elif unit == "W":
            seconds += amount * 7 * 86400
        elif unit == "D":
            seconds += amount * 86400
        elif unit == "H":
            seconds += amount * 3600
        else:
            seconds += amount
        found = True
        pos = match.end()
    return seconds if found else None


_ROLES = {
    "stopped": Role.STOPPED,
    "started": Role.STARTED,
    "unpromoted": Role.UNPROMOTED,
    "slave": Role.UNPROMOTED,
    "promoted": Role.PROMOTED,
    "master": Role.PROMOTED,
}


def parse_role(text: str | None) -> Role | None:
    """A role name, current or legacy (Master/Slave), any case; None if not a role."""
    if text is None:
        return None
    return _ROLES.get(text.strip().lower())
