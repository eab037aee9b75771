"""What the DC wants a node to run: the value of `<prefix>/target/<node>`.

    {"epoch": 42, "config": 17,
     "resources": {"vip": "Started", "galera:1": "Promoted", "web": "Stopped"},
     "unmanaged": ["legacy"]}

Written only by the DC (by CAS on its leader key, so a deposed DC cannot write). An instance
not listed is to be stopped if it runs; `unmanaged` ones are left exactly as they are.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from hastack.model.config import Role

__all__ = ["NodeTarget", "decode_target"]


@dataclass(frozen=True, slots=True)
class NodeTarget:
    epoch: int
    config_revision: int
    resources: Mapping[str, Role] = field(default_factory=dict)
    unmanaged: frozenset[str] = frozenset()

    def encode(self) -> bytes:
        doc = {
            "epoch": self.epoch,
            "config": self.config_revision,
            "resources": {k: v.value for k, v in sorted(self.resources.items())},
            "unmanaged": sorted(self.unmanaged),
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    def same_work(self, other: NodeTarget | None) -> bool:
        """Equal apart from the epoch that wrote it (no need to write it again)."""
        return (
            other is not None
            and other.config_revision == self.config_revision
            and dict(other.resources) == dict(self.resources)
            and other.unmanaged == self.unmanaged
        )


def decode_target(raw: bytes) -> NodeTarget:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object")
    epoch, config = data.get("epoch"), data.get("config", 0)
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch <= 0:
        raise ValueError("'epoch' must be a positive integer")
    if isinstance(config, bool) or not isinstance(config, int):
        raise ValueError("'config' must be an integer")
    raw_resources = data.get("resources", {})
    if not isinstance(raw_resources, dict):
        raise ValueError("'resources' must be an object")
    resources: dict[str, Role] = {}
    for name, role in raw_resources.items():
        try:
            resources[str(name)] = Role(role)
        except ValueError:
            raise ValueError(f"resource {name!r}: unknown role {role!r}") from None
    unmanaged = data.get("unmanaged", [])
    if not isinstance(unmanaged, list) or not all(isinstance(u, str) for u in unmanaged):
        raise ValueError("'unmanaged' must be a list of names")
    return NodeTarget(epoch, config, resources, frozenset(unmanaged))
