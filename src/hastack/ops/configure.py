"""Changing the stored configuration: every change is validated whole, then written by
compare-and-swap on the revision it was computed from.

`change_config` applies a typed edit (hastack.ops.edits) to the stored configuration and
retries a few times if someone else wrote meanwhile — the edit is recomputed on the new
configuration each time, so no one's change is lost. `apply_config` stores a whole new
configuration only if the stored one is still the one the operator saw (its revision), and
never retries: the operator must look at the new difference.
"""

from __future__ import annotations

import difflib
import time
from dataclasses import dataclass

import pydantic

from hastack.errors import CompareFailed, HastackError
from hastack.executor.check import agent_problems
from hastack.model.audit import AuditRecord
from hastack.model.config import ClusterConfig
from hastack.model.config_text import config_to_yaml
from hastack.model.document import format_path
from hastack.model.events import ClusterEvent, EventKind
from hastack.ops.cluster import Cluster
from hastack.ops.edits import Edit, EditRefused
from hastack.store import PutOp
from hastack.store.config import StoredConfig, read_config, write_config
from hastack.store.history import event_put

__all__ = [
    "Changed",
    "ConfigChanged",
    "apply_config",
    "change_config",
    "config_diff",
    "read_stored",
    "validated",
]

# A compare-and-swap that keeps losing means someone else is editing right now: say so.
ATTEMPTS = 5
# The difference kept in a configuration change's event (the rest is counted).
DIFF_LINES = 60


class ConfigChanged(HastackError):
    """The stored configuration is not the one the change was computed from."""


@dataclass(frozen=True, slots=True)
class Changed:
    message: str  # what the edit did
    revision: int  # the configuration's revision after the change (unchanged: the old one)
    changed: bool


def validated(config: ClusterConfig) -> ClusterConfig:
    """The configuration checked whole, as `config apply` checks a file: every field's own
    validators (an edit built it from typed parts without them), references, agents."""
    data = config.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    try:
        checked = ClusterConfig.model_validate(data)
    except pydantic.ValidationError as exc:
        reasons = [f"{format_path(e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise EditRefused(
            "the change would make the configuration invalid: " + "; ".join(reasons)
        ) from None
    located = checked.reference_problems() or agent_problems(checked)
    if located:
        text = "; ".join(f"{format_path(loc)}: {msg}" for loc, msg in located)
        raise EditRefused(f"the change would make the configuration invalid: {text}")
    return checked


async def read_stored(cluster: Cluster) -> StoredConfig:
    """The stored configuration and its revision; an unreadable one is an error here."""
    stored = await read_config(cluster.store, cluster.keys)
    if stored.problem:
        raise HastackError(f"the stored configuration is unreadable: {stored.problem}")
    return stored


async def change_config(cluster: Cluster, edit: Edit, *, attempts: int = ATTEMPTS) -> Changed:
    """Read, edit, validate, write back by CAS; on a lost race, all of it again."""
    for _ in range(attempts):
        stored = await read_stored(cluster)
        edited = edit(stored.config or ClusterConfig())
        config = validated(edited.config)
        if stored.config is not None and config == stored.config:
            return Changed(f"{edited.message} (no change)", stored.revision, False)
        record = _record(cluster, edited.message, stored, config)
        event = _change_event(cluster, edited.message, stored.config, config)
        try:
            revision = await write_config(
                cluster.store,
                cluster.keys,
                config,
                expected=stored.revision,
                record=record,
                also=[event],
            )
        except CompareFailed:
            continue
        return Changed(f"{edited.message} (configuration revision {revision})", revision, True)
    raise ConfigChanged("the configuration kept changing under us; try again")


def config_diff(old: ClusterConfig | None, new: ClusterConfig) -> list[str]:
    """A unified diff of the YAML texts (empty: no change)."""
    before = config_to_yaml(old).splitlines(keepends=True) if old is not None else []
    after = config_to_yaml(new).splitlines(keepends=True)
    return list(difflib.unified_diff(before, after, "stored", "new"))


def _record(
    cluster: Cluster, what: str, stored: StoredConfig, config: ClusterConfig
) -> AuditRecord:
    return AuditRecord.of_change(
        time.time(), cluster.by, what, stored.revision, config_diff(stored.config, config)
    )


def _change_event(
    cluster: Cluster, what: str, old: ClusterConfig | None, new: ClusterConfig
) -> PutOp:
    """The change's record in the event history, written in the change's own transaction: its
    create revision is the configuration's new revision."""
    diff = [line.rstrip("\n") for line in config_diff(old, new)[2:]]
    changed = sum(1 for line in diff if line[:1] in "+-")
    event = ClusterEvent(
        EventKind.CONFIG,
        f"{what} (by {cluster.by})",
        time.time(),
        cluster.by.via,
        {
            "by": cluster.by.who,
            "via": cluster.by.via,
            "lines-changed": changed,
            "diff": diff[:DIFF_LINES],
        },
    )
    return event_put(cluster.keys, event)


async def apply_config(
    cluster: Cluster,
    config: ClusterConfig,
    *,
    expected: int,
    previous: ClusterConfig | None = None,
) -> int:
    """Store `config` if the stored configuration is still at revision `expected` (0: none
    stored); its new revision. ConfigChanged if someone wrote in between. `previous`, the
    configuration the caller read at `expected`, gives the audit record and the event history
    the difference."""
    record = _record(cluster, "configuration applied", StoredConfig(previous, expected), config)
    event = _change_event(cluster, "configuration applied", previous, config)
    try:
        return await write_config(
            cluster.store, cluster.keys, config, expected=expected, record=record, also=[event]
        )
    except CompareFailed:
        raise ConfigChanged(
            "not applied: the configuration changed since it was read; "
            "read it again to see the new difference"
        ) from None
