"""A configuration change sent as what changed (model/config_delta.py, pure): applying the
delta to the configuration it was made from gives the new one byte for byte, and anything
else is refused (None: read the configuration itself)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hastack.model.config import parse_cluster_config
from hastack.model.config_delta import apply_delta, delta_revision, make_delta
from hastack.model.config_text import config_to_json
from hastack.store import Keys
from hastack.store.memory import MemoryBackend, MemoryStore
from hastack.store.mirror import Mirror, follow
from hastack.store.types import Event, EventKind, KeyValue, WatchBatch
from helpers import put_config


def stored(resources: int, *, stickiness: int = 0) -> bytes:
    text = "properties:\n  stonith-enabled: false\n"
    if stickiness:
        text += f"resource-defaults:\n  resource-stickiness: {stickiness}\n"
    text += "resources:\n" + "".join(
        f"  - primitive: r{i}\n    agent: ocf:heartbeat:Dummy\n" for i in range(resources)
    )
    return config_to_json(parse_cluster_config(text, "test"))


def test_one_resource_added_to_a_thousand_is_sent_as_that_resource() -> None:
    old, new = stored(1000), stored(1001)
    delta = make_delta(old, new, base=41)
    doc = json.loads(delta)
    assert [c["field"] for c in doc["changes"]] == ["resources"]
    assert doc["changes"][0]["at"] == 1000
    assert doc["changes"][0]["remove"] == 0
    assert len(doc["changes"][0]["insert"]) == 1
    assert len(delta) < 400 < len(new) // 100  # the resource, not the configuration
    assert apply_delta(old, 41, delta) == new


def test_a_field_replaced_and_a_resource_removed_from_the_middle() -> None:
    old = stored(10)
    data = json.loads(stored(10, stickiness=5))
    del data["config"]["resources"][4]
    new = json.dumps(data, sort_keys=True).encode()
    delta = make_delta(old, new, base=7)
    changes = {c["field"]: c for c in json.loads(delta)["changes"]}
    assert changes["resources"] == {"field": "resources", "at": 4, "remove": 1, "insert": []}
    assert "value" in changes["resource-defaults"]  # absent before: added whole
    assert apply_delta(old, 7, delta) == new


def test_anything_but_the_base_it_was_made_from_is_refused() -> None:
    old, new = stored(3), stored(4)
    delta = make_delta(old, new, base=12)
    assert apply_delta(old, 11, delta) is None  # a delta missed in between
    assert apply_delta(old, 13, delta) is None
    assert apply_delta(stored(2), 12, delta) is None  # not what it was made from: hash differs
    assert apply_delta(None, 12, delta) is None
    assert apply_delta(old, 12, b"not json") is None
    assert apply_delta(old, 12, b'{"base": 12, "changes": [{"field": "resources"}]}') is None
    tampered = json.loads(delta)
    tampered["sha256"] = hashlib.sha256(b"other").hexdigest()
    assert apply_delta(old, 12, json.dumps(tampered).encode()) is None


def test_a_first_configuration_or_an_unreadable_old_one_is_sent_whole() -> None:
    new = stored(2)
    first = make_delta(None, new, base=0)
    assert "whole" in json.loads(first)
    assert apply_delta(None, 0, first) == new
    assert apply_delta(b"garbage", 0, first) == new  # whatever it held
    assert apply_delta(stored(1), 9, make_delta(b"garbage", new, base=9)) == new


# Random stored documents: fields of lists of small records, or plain values; edits anywhere.
_item = st.dictionaries(st.sampled_from("abc"), st.integers(0, 3), max_size=2)
_value = st.one_of(st.lists(_item, max_size=6), st.integers(0, 3), st.text("xy", max_size=2))
_config = st.dictionaries(st.sampled_from(["resources", "nodes", "properties", "f"]), _value)


@settings(max_examples=300, deadline=None)
@given(old=_config, new=_config, base=st.integers(0, 1000))
def test_applying_a_delta_gives_the_new_configuration(
    old: dict[str, Any], new: dict[str, Any], base: int
) -> None:
    before = json.dumps({"config": old, "format": 1}, sort_keys=True).encode()
    after = json.dumps({"config": new, "format": 1}, sort_keys=True).encode()
    assert apply_delta(before, base, make_delta(before, after, base)) == after
    assert apply_delta(before, base + 1, make_delta(before, after, base)) is None


async def test_a_mirror_following_the_deltas_holds_the_configuration_and_heals() -> None:
    """Over the in-memory store: the mirror reads the configuration once, then each change
    arrives as its delta and gives the stored configuration byte for byte at its revision;
    one written behind write_config's back (no delta) is caught up at the next change, the
    next delta's base not being what the mirror holds."""
    keys = Keys("delta")
    store = MemoryStore(MemoryBackend(), timeout=0.5)
    first = await put_config(store, keys, stored(3))
    mirror = Mirror(keys, (keys.config_delta,))
    changed = asyncio.Event()
    task = asyncio.create_task(follow(store, mirror, keys.config_delta, changed.set))

    async def holds(value: bytes, revision: int) -> None:
        for _ in range(250):
            held = mirror.snapshot()
            if held.config_revision == revision:
                assert held.config is not None
                assert config_to_json(held.config) == value
                return
            await asyncio.sleep(0.02)
        raise AssertionError(
            f"the mirror is at {mirror.snapshot().config_revision}, not {revision}"
        )

    try:
        await holds(stored(3), first)
        second = await put_config(store, keys, stored(4))
        await holds(stored(4), second)
        # Behind write_config's back: no delta; the mirror does not see it ...
        await store.put(keys.config, stored(5))
        third = await put_config(store, keys, stored(6))
        # ... and at the next change the delta's base is not what it holds: read again.
        await holds(stored(6), third)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_a_paired_delta_gives_the_revision_the_configuration_was_stored_at() -> None:
    """The DC's delta for a configuration written without one (at 7; its delta at 9) makes
    the follower hold it at 7, where the next delta (base 7) applies; an ordinary delta's
    configuration is at the delta's own revision."""
    keys = Keys("paired")
    mirror = Mirror(keys, (keys.config_delta,))
    mirror.load_config([KeyValue(keys.config, stored(3), 5, 5, 1, 0)], 5)
    late = make_delta(None, stored(4), 5, revision=7)
    assert delta_revision(late, 9) == 7
    assert delta_revision(make_delta(stored(3), stored(4), 5), 9) == 9
    put = EventKind.PUT
    batch = WatchBatch((Event(put, KeyValue(keys.config_delta, late, 2, 9, 3, 0)),), 9)
    assert mirror.apply_delta(batch) is True
    assert mirror.snapshot().config_revision == 7
    after = make_delta(stored(4), stored(5), 7)
    batch = WatchBatch((Event(put, KeyValue(keys.config_delta, after, 2, 11, 4, 0)),), 11)
    assert mirror.apply_delta(batch) is True
    assert mirror.snapshot().config_revision == 11
    assert mirror.unpaired_config() is None  # a follower holds no delta key: nothing to pair
