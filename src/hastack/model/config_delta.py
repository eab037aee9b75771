"""A configuration change as what changed: the value of `<prefix>/config-delta`.

The configuration is one key. Every agent needs it (a target names resources, the
configuration says what they are), so every agent followed that key, and every change sent
all of it to every node: 2.4 MiB of etcd traffic for one resource added to 1,000 on 12 nodes,
2.3 MiB for one added to 150 on 103 (docs/control-plane.md). Pacemaker sends the CIB's
changes as diffs; so does this key. It is written in the same transaction as the
configuration (`store.config.write_config`), so its revision is the configuration's:

    {"base": 41, "sha256": "<of the new configuration's stored bytes>",
     "changes": [{"field": "resources", "at": 150, "remove": 0, "insert": [{...}]},
                 {"field": "properties", "value": {...}},
                 {"field": "assignments", "delete": true}]}

`base` is the revision of the configuration it applies to (0: none). A list field changes by
one splice (what lies between the common beginning and the common end); any other field is
replaced. A change of the stored format, or a first configuration, carries the whole
document (`{"whole": {...}}`). Whoever follows only this key keeps the configuration it read
once and applies each delta whose base is the revision it holds; the result must hash to
`sha256`, or it reads the configuration itself (`apply_delta` answers None). Pure.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["apply_delta", "delta_revision", "make_delta"]


def _encode(doc: object) -> bytes:
    # As `config_text.config_to_json` encodes the stored configuration (sort_keys, default
    # separators): what the hash is checked against.
    return json.dumps(doc, sort_keys=True).encode()


def _splice(old: list[Any], new: list[Any]) -> tuple[int, int, list[Any]]:
    """(at, remove, insert): the one splice that turns `old` into `new`."""
    start = 0
    while start < len(old) and start < len(new) and old[start] == new[start]:
        start += 1
    end = 0
    while end < len(old) - start and end < len(new) - start and old[-1 - end] == new[-1 - end]:
        end += 1
    return start, len(old) - start - end, new[start : len(new) - end]


def _changes(old_doc: object, new_doc: object) -> list[dict[str, Any]] | None:
    """The field changes from one stored document to the other; None: send it whole."""
    if not (isinstance(old_doc, dict) and isinstance(new_doc, dict)):
        return None
    if old_doc.keys() != new_doc.keys() or old_doc.get("format") != new_doc.get("format"):
        return None
    old, new = old_doc.get("config"), new_doc.get("config")
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return None
    out: list[dict[str, Any]] = []
    for field in sorted(old.keys() | new.keys()):
        if field not in new:
            out.append({"field": field, "delete": True})
            continue
        before, after = old.get(field), new[field]
        if field in old and before == after:
            continue
        if isinstance(before, list) and isinstance(after, list):
            at, remove, insert = _splice(before, after)
            out.append({"field": field, "at": at, "remove": remove, "insert": insert})
        else:
            out.append({"field": field, "value": after})
    return out


def make_delta(old: bytes | None, new: bytes, base: int, revision: int | None = None) -> bytes:
    """The delta from the stored configuration `old` (at revision `base`; None: none) to the
    stored configuration `new` — stored at `revision`, when that is not the delta's own (a
    configuration written without its delta, paired afterwards by the DC)."""
    new_doc = json.loads(new)
    changes = None
    if old is not None:
        try:
            changes = _changes(json.loads(old), new_doc)
        except ValueError:
            changes = None  # an unreadable old one: whoever holds it reads the new one whole
    doc: dict[str, Any] = {"base": base, "sha256": hashlib.sha256(new).hexdigest()}
    if revision is not None:
        doc["revision"] = revision
    if changes is None:
        doc["whole"] = new_doc
    else:
        doc["changes"] = changes
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def apply_delta(old: bytes | None, old_revision: int, delta: bytes) -> bytes | None:
    """The stored configuration after `delta`, from `old` held at `old_revision`; None when
    it cannot be made here (another base, an unreadable delta, a result that does not hash
    to what the writer stored): then read the configuration itself."""
    try:
        doc = json.loads(delta)
        if not isinstance(doc, dict) or doc.get("base") != old_revision:
            return None
        if "whole" in doc:
            result = _encode(doc["whole"])
        else:
            if old is None:
                return None
            stored = json.loads(old)
            config = stored["config"]
            for change in doc["changes"]:
                field = change["field"]
                if change.get("delete"):
                    config.pop(field, None)
                elif "value" in change:
                    config[field] = change["value"]
                else:
                    items = config[field]
                    at, remove, insert = change["at"], change["remove"], change["insert"]
                    if not (isinstance(items, list) and at >= 0 and at + remove <= len(items)):
                        return None
                    items[at : at + remove] = insert
            result = _encode(stored)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if hashlib.sha256(result).hexdigest() != doc.get("sha256"):
        return None
    return result


def delta_revision(delta: bytes, own: int) -> int:
    """The revision of the configuration a delta gives: its `revision` when it carries one,
    else its own (written with the configuration, in the same transaction)."""
    try:
        doc = json.loads(delta)
        revision = doc.get("revision") if isinstance(doc, dict) else None
    except ValueError:
        return own
    return revision if isinstance(revision, int) and revision > 0 else own
