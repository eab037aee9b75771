"""Requests an operator makes that agents act on: `<prefix>/requests/cleanup/<id>`.

    {"resource": "web", "node": "n2"}      node null or absent: on every node

Written by `hastack resource cleanup` on a short lease, so they vanish by themselves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from hastack.model.jsontext import json_value

__all__ = ["CleanupRequest", "decode_cleanup"]


@dataclass(frozen=True, slots=True)
class CleanupRequest:
    resource: str
    node: str | None = None

    def encode(self) -> bytes:
        return json.dumps({"resource": self.resource, "node": self.node}, sort_keys=True).encode()


def decode_cleanup(raw: bytes) -> CleanupRequest:
    data = json_value(raw)
    if not isinstance(data, dict) or not isinstance(data.get("resource"), str):
        raise ValueError("a cleanup request needs a 'resource' name")
    node = data.get("node")
    if node is not None and not isinstance(node, str):
        raise ValueError("'node' must be a node name or null")
    return CleanupRequest(data["resource"], node)
