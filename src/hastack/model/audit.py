"""The audit trail of configuration changes, as data: who changed what, when, from where,
and the difference (docs/security.md §5). Decoding is total: a record that does not decode is
reported, never raised. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hastack.model.jsontext import json_object

__all__ = ["MAX_DIFF_LINES", "Actor", "AuditRecord", "decode_audit_record"]

# A record rides in the configuration's own transaction, which etcd bounds (1.5 MiB by
# default) together with the configuration itself: the difference is cut past this.
MAX_DIFF_LINES = 2000


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks for a change: the operator (a login, a certificate's name, a token's name),
    the door they came through (`cli`, `api on ctl-1`), and from where (a host, an address)."""

    who: str
    via: str
    where: str

    def __str__(self) -> str:
        return f"{self.who} via {self.via} from {self.where}"


@dataclass(frozen=True, slots=True)
class AuditRecord:
    at: float  # wall time of the change
    by: Actor
    what: str  # one line: "configuration applied", "resource web disabled", ...
    revision: int  # the configuration revision this change replaced (0: none stored)
    diff: tuple[str, ...]  # unified diff of the YAML texts, lines without newlines
    omitted: int = 0  # diff lines left out past MAX_DIFF_LINES

    @staticmethod
    def of_change(at: float, by: Actor, what: str, revision: int, diff: list[str]) -> AuditRecord:
        lines = tuple(line.rstrip("\n") for line in diff)
        return AuditRecord(
            at, by, what, revision, lines[:MAX_DIFF_LINES], max(0, len(lines) - MAX_DIFF_LINES)
        )

    @property
    def lines_changed(self) -> int:
        return sum(
            1 for line in self.diff if line[:1] in "+-" and not line.startswith(("+++", "---"))
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "who": self.by.who,
            "via": self.by.via,
            "where": self.by.where,
            "what": self.what,
            "revision": self.revision,
            "diff": list(self.diff),
            "omitted": self.omitted,
        }


def decode_audit_record(raw: bytes) -> AuditRecord:
    """A stored record; ValueError saying what is wrong otherwise."""
    data = json_object(raw)
    try:
        diff = data["diff"]
        if not isinstance(diff, list) or not all(isinstance(x, str) for x in diff):
            raise ValueError("diff: not a list of lines")
        return AuditRecord(
            at=float(data["at"]),
            by=Actor(str(data["who"]), str(data["via"]), str(data["where"])),
            what=str(data["what"]),
            revision=int(data["revision"]),
            diff=tuple(diff),
            omitted=int(data.get("omitted", 0)),
        )
    except KeyError as exc:
        raise ValueError(f"missing {exc.args[0]}") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(str(exc)) from None
