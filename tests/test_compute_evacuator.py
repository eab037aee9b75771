"""The evacuator against the lab's fake Nova through python-novaclient, on loopback, with the
in-memory store: a record drained to done, the host disabled until it is back, then enabled;
an unreachable Nova retried with backoff, its record pending, the host never enabled early."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from hastack.compute.evacuation import EvacuationRecord, RecordState, new_record
from hastack.compute.evacuator import Evacuator
from hastack.compute.evacuator import _duration as evacuator_duration
from hastack.compute.nova import NovaApi
from hastack.executor.agents.base import OcfRc, OpRequest, OpResult
from hastack.executor.agents.evacuator import EvacuatorAgent
from hastack.lab.nova.api import FakeNova, _handler
from hastack.model.members import MemberRecord, NodeKind
from hastack.store import Keys
from hastack.store.memory import MemoryBackend, MemoryStore

KEYS = Keys("t")


@pytest.fixture
def nova(tmp_path: Path) -> Iterator[tuple[FakeNova, str]]:
    fake = FakeNova(tmp_path / "nova", down_after=5.0)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake, f"http://127.0.0.1:{server.server_address[1]}/v2.1"
    server.shutdown()
    server.server_close()


def _boot(fake: FakeNova) -> None:
    for host in ("c1", "c2", "c3"):
        fake.report({"host": host, "running": []})
    for i in range(6):
        fake.create({"name": f"vm{i}", "host": "c2", "evacuable": i < 4})


def _hosts(fake: FakeNova) -> dict[str, str]:
    return {s["name"]: s["host"] for s in fake.state["servers"].values()}


async def _drain(store: MemoryStore, evacuator: Evacuator, fake: FakeNova, rounds: int) -> None:
    for _ in range(rounds):
        await evacuator.round()
        for host in ("c1", "c3"):  # the healthy computes report what they run
            placed = [s["id"] for s in fake.state["servers"].values() if s["host"] == host]
            fake.report({"host": host, "running": placed})


async def _record(store: MemoryStore) -> EvacuationRecord | None:
    kv = await store.get(KEYS.evacuation("c2"))
    return EvacuationRecord.decode(kv.value) if kv else None


def test_evacuation_through_novaclient(nova: tuple[FakeNova, str]) -> None:
    fake, url = nova
    _boot(fake)

    async def scenario() -> None:
        store = MemoryStore(MemoryBackend())
        fenced_at = time.time()
        await store.put(KEYS.evacuation("c2"), new_record("c2", fenced_at, 3, "n1").encode())
        evacuator = Evacuator(store, KEYS, NovaApi(url, timeout=2.0), parallel=2)
        await _drain(store, evacuator, fake, 8)
        record = await _record(store)
        assert record is not None
        assert record.state is RecordState.DONE
        hosts = _hosts(fake)
        assert {hosts[f"vm{i}"] for i in range(4)} <= {"c1", "c3"}
        assert hosts["vm4"] == hosts["vm5"] == "c2"  # not evacuable: they stay down
        service = fake.services({"host": "c2"})["services"][0]
        assert service["status"] == "disabled"
        assert service["forced_down"] is True
        # Done, but c2 is not back: it stays disabled, the record stays.
        await _drain(store, evacuator, fake, 2)
        assert await _record(store) is not None
        # c2's agent joins again (a life after the fence), but its compute service has not
        # reported yet: still disabled, so that the service boots disabled.
        member = MemberRecord("c2", NodeKind.REMOTE, joined_at=time.time())
        await store.put(KEYS.member("c2"), member.encode())
        await _drain(store, evacuator, fake, 2)
        assert await _record(store) is not None
        assert fake.services({"host": "c2"})["services"][0]["status"] == "disabled"
        # Its compute service reports (and finds itself disabled): enabled, record gone.
        fake.report({"host": "c2", "running": []})
        await _drain(store, evacuator, fake, 1)
        assert await _record(store) is None
        service = fake.services({"host": "c2"})["services"][0]
        assert service["status"] == "enabled"
        assert service["forced_down"] is False
        # At most two evacuations were asked for before the first ones moved (parallel=2).
        events = [json.loads(line) for line in (fake.dir / "events.jsonl").read_text().splitlines()]
        kinds = [e["event"] for e in events if e["event"] in ("force-down", "evacuate", "enable")]
        assert kinds[0] == "force-down"
        assert kinds[-1] == "enable"
        assert kinds.count("evacuate") == 4
        await store.close()

    asyncio.run(scenario())


def test_unreachable_nova_keeps_the_record_pending_and_the_host_disabled(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed

    async def scenario() -> None:
        store = MemoryStore(MemoryBackend())
        await store.put(KEYS.evacuation("c2"), new_record("c2", time.time() - 1, 3, "n1").encode())
        member = MemberRecord("c2", NodeKind.REMOTE, joined_at=time.time())
        await store.put(KEYS.member("c2"), member.encode())  # the host is even back
        evacuator = Evacuator(store, KEYS, NovaApi(f"http://127.0.0.1:{port}/v2.1", timeout=0.5))
        tries = []
        for _ in range(12):
            await evacuator.round()
            record = await _record(store)
            assert record is not None
            assert record.state is RecordState.PENDING
            tries.append(record.attempts)
            await asyncio.sleep(0.25)
        record = await _record(store)
        assert record is not None
        assert "refused" in record.last_error.lower() or "connect" in record.last_error.lower()
        # Backoff: 3 s of rounds make only a few attempts (1 s, then 2 s apart), not twelve.
        assert 2 <= max(tries) <= 3
        await store.close()

    asyncio.run(scenario())


# ---- the hastack:evacuator resource's parameters ---------------------------------------------


def _validate(**params: str) -> OpResult:
    request = OpRequest(
        "evacuator", "evacuator", "validate-all", {"nova-url": "http://nova:8774", **params}, {},
        10.0, cluster={"name": "lab", "etcd-endpoints": "10.0.0.1:2379"},
    )  # fmt: skip
    return asyncio.run(EvacuatorAgent().execute(request))


def test_evacuator_timeout_is_a_duration_as_documented() -> None:
    assert _validate(timeout="3s", parallel="4").rc == OcfRc.SUCCESS
    assert _validate(timeout="2500ms").rc == OcfRc.SUCCESS
    assert _validate(timeout="3").rc == OcfRc.SUCCESS
    # The evacuator process takes the same forms (the agent passes seconds, an operator
    # running it by hand may not).
    assert evacuator_duration("3s") == evacuator_duration("3") == 3.0


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"timeout": "soon"}, "parameter 'timeout': not a duration: 'soon'"),
        ({"timeout": "0s"}, "parameter 'timeout' must be positive"),
        ({"parallel": "0"}, "parameter 'parallel' is a positive count of evacuations, got '0'"),
        ({"parallel": "four"}, "parameter 'parallel' is a positive count"),
    ],
)
def test_a_bad_evacuator_parameter_is_a_configuration_error(
    params: dict[str, str], reason: str
) -> None:
    result = _validate(**params)
    assert result.rc == OcfRc.ERR_CONFIGURED
    assert result.reason.startswith(reason)
