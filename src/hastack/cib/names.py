"""Pacemaker ids as hastack names, and back.

Pacemaker ids are XML ids: they may hold ':' or be longer than the 63 characters a hastack
name may have (a key segment in the store). Every id that is already a valid name keeps it;
the others get a deterministic substitute — invalid characters become '_', a name that would
start with something other than a letter or digit gets an 'x' in front, and one that is too
long is cut and ends with a short hash of the original — that no other id of the same CIB
uses. The map remembers every substitution so results can be reported under Pacemaker's ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

from hastack.model.base import is_valid_name

__all__ = ["NameMap", "sanitize"]

_MAX = 63


def sanitize(pacemaker_id: str) -> str:
    """The name a Pacemaker id becomes when nothing else claims it first."""
    if is_valid_name(pacemaker_id):
        return pacemaker_id
    text = "".join(
        ch if ch.isascii() and (ch.isalnum() or ch in "-_.") else "_" for ch in pacemaker_id
    )
    if not text or not text[0].isalnum():
        text = "x" + text
    if len(text) > _MAX:
        digest = hashlib.sha1(pacemaker_id.encode()).hexdigest()[:8]
        text = f"{text[: _MAX - 9]}-{digest}"
    return text


class NameMap:
    """One CIB's substitutions. Valid ids are reserved first so a substitute never takes one."""

    def __init__(self, reserved: Iterable[str] = ()) -> None:
        self._taken: set[str] = {r for r in reserved if is_valid_name(r)}
        self._to_hastack: dict[str, str] = {}
        self._to_pacemaker: dict[str, str] = {}

    def name(self, pacemaker_id: str) -> str:
        """The hastack name for a Pacemaker id (the same answer every time)."""
        known = self._to_hastack.get(pacemaker_id)
        if known is not None:
            return known
        if is_valid_name(pacemaker_id):
            self._taken.add(pacemaker_id)
            self._to_hastack[pacemaker_id] = pacemaker_id
            return pacemaker_id
        candidate = self.fresh(pacemaker_id)
        self._to_hastack[pacemaker_id] = candidate
        self._to_pacemaker[candidate] = pacemaker_id
        return candidate

    def fresh(self, wanted: str) -> str:
        """A new name for something Pacemaker has no id for (an expanded set), unused so far."""
        base = sanitize(wanted)
        candidate = base
        n = 2
        while candidate in self._taken:
            suffix = f"-{n}"
            candidate = base[: _MAX - len(suffix)] + suffix
            n += 1
        self._taken.add(candidate)
        return candidate

    def substitutions(self) -> Mapping[str, str]:
        """hastack name -> Pacemaker id, for every id that had to change."""
        return dict(self._to_pacemaker)
