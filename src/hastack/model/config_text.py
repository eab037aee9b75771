"""The configuration written back as text: YAML for people, JSON for the store."""

from __future__ import annotations

import json
from typing import Any

import yaml

from hastack.model.config import ClusterConfig
from hastack.model.jsontext import json_value

__all__ = ["config_from_json", "config_to_json", "config_to_yaml"]

STORE_FORMAT = 1


def _plain(config: ClusterConfig) -> dict[str, Any]:
    data: dict[str, Any] = config.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    return data


def config_to_yaml(config: ClusterConfig) -> str:
    """Readable YAML that `parse_cluster_config` accepts back unchanged."""
    return yaml.safe_dump(_plain(config), sort_keys=False, default_flow_style=False, width=100)


def config_to_json(config: ClusterConfig) -> bytes:
    return json.dumps({"format": STORE_FORMAT, "config": _plain(config)}, sort_keys=True).encode()


def config_from_json(raw: bytes) -> ClusterConfig:
    """Decode a stored configuration; ValueError says what is wrong with it."""
    data = json_value(raw)
    if not isinstance(data, dict) or data.get("format") != STORE_FORMAT or "config" not in data:
        raise ValueError(f"not a hastack configuration of format {STORE_FORMAT}")
    try:
        config = ClusterConfig.model_validate(data["config"])
    except Exception as exc:
        raise ValueError(f"does not validate: {exc}") from None
    problems = config.reference_problems()
    if problems:
        raise ValueError("; ".join(msg for _, msg in problems))
    return config
