"""`systemd:UNIT` resources: start, stop and monitor a unit through systemd's D-Bus API, as
Pacemaker's systemd class does (OpenStack's services are systemd units).

It speaks to the service manager (`org.freedesktop.systemd1`) on the system bus with
`dbus-fast`. (Not on systemd's private socket `/run/systemd/private`, which `systemctl` uses as
root: systemd there leaves a client's `Hello` unanswered now and then, and every client
library sends one.) One connection per operation: an operation is rare, and a restarted bus
never leaves a dead connection behind.

    start    ResetFailedUnit if it failed before, StartUnit(replace), then wait until the
             unit is active (success) or has settled anywhere else (error, with systemd's
             Result) within the operation's timeout
    stop     StopUnit(replace), then wait until inactive or failed
    monitor  ActiveState: active/reloading -> running (0); inactive/failed -> not running (7);
             activating/deactivating -> error (the unit is between states)
    a unit systemd cannot find                     -> not installed (5)
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from hastack.executor.agents.base import AgentMetadata, Driver, OcfRc, OpRequest, OpResult

__all__ = ["SystemdDriver", "unit_name"]

log = logging.getLogger(__name__)

_SYSTEMD = "org.freedesktop.systemd1"
_MANAGER_PATH = "/org/freedesktop/systemd1"
_MANAGER = "org.freedesktop.systemd1.Manager"
_UNIT = "org.freedesktop.systemd1.Unit"
_SERVICE = "org.freedesktop.systemd1.Service"
_PROPERTIES = "org.freedesktop.DBus.Properties"
_POLL = 0.1
# Pacemaker's default for systemd resources: units such as database servers take a while.
_DEFAULT_TIMEOUT = 100.0


def unit_name(agent_type: str) -> str:
    """`httpd` -> `httpd.service`; a name with a unit suffix stays as it is."""
    known = (".service", ".socket", ".target", ".mount", ".timer", ".path", ".scope")
    return agent_type if agent_type.endswith(known) else f"{agent_type}.service"


class SystemdError(Exception):
    """systemd answered with an error."""


class _Bus:
    """One connection to the service manager."""

    def __init__(self, bus: Any) -> None:
        self.bus = bus

    @staticmethod
    async def connect(address: str | None) -> _Bus:
        from dbus_fast import BusType  # noqa: PLC0415 - loaded by agents that run units only
        from dbus_fast.aio import MessageBus  # noqa: PLC0415

        bus = MessageBus(bus_address=address) if address else MessageBus(bus_type=BusType.SYSTEM)
        return _Bus(await bus.connect())

    async def call(self, path: str, interface: str, member: str, signature: str, *body: Any) -> Any:
        from dbus_fast import Message, MessageType  # noqa: PLC0415

        reply = await self.bus.call(
            Message(
                destination=_SYSTEMD,
                path=path,
                interface=interface,
                member=member,
                signature=signature,
                body=list(body),
            )
        )
        if reply.message_type == MessageType.ERROR:
            detail = reply.body[0] if reply.body else ""
            raise SystemdError(f"{reply.error_name}: {detail}".rstrip(": "))
        return reply.body[0] if reply.body else None

    async def unit(self, name: str) -> str:
        """The unit's object path (LoadUnit loads it if systemd has not yet)."""
        return str(await self.call(_MANAGER_PATH, _MANAGER, "LoadUnit", "s", name))

    async def prop(self, path: str, interface: str, name: str) -> Any:
        variant = await self.call(path, _PROPERTIES, "Get", "ss", interface, name)
        return variant.value

    def close(self) -> None:
        self.bus.disconnect()


class SystemdDriver(Driver):
    def __init__(self, agent_type: str, *, bus_address: str | None = None) -> None:
        self.unit = unit_name(agent_type)
        self.bus_address = bus_address

    async def metadata(self) -> AgentMetadata:
        return AgentMetadata(
            name=f"systemd:{self.unit}",
            timeouts={"start": _DEFAULT_TIMEOUT, "stop": _DEFAULT_TIMEOUT, "monitor": 100.0},
        )

    async def execute(self, request: OpRequest) -> OpResult:
        started = time.monotonic()
        op = request.op
        if op in ("meta-data", "validate-all"):
            return OpResult(OcfRc.SUCCESS, "", 0.0)
        if op not in ("start", "stop", "monitor", "status"):
            return OpResult(OcfRc.ERR_UNIMPLEMENTED, f"systemd units have no {op} action")
        try:
            async with asyncio.timeout(request.timeout):
                bus = await _Bus.connect(self.bus_address)
        except TimeoutError:
            return OpResult(OcfRc.ERR_GENERIC, "no answer from the D-Bus system bus", 0.0, True)
        except Exception as exc:  # OSError, and dbus-fast's own (authentication, address)
            return OpResult(OcfRc.ERR_GENERIC, f"cannot reach systemd over D-Bus: {exc}", 0.0)
        try:
            rc, reason = await self._run(bus, op, started + request.timeout)
        except SystemdError as exc:
            rc, reason = OcfRc.ERR_GENERIC, f"{self.unit}: {exc}"
        finally:
            bus.close()
        return OpResult(rc, reason, time.monotonic() - started)

    async def _run(self, bus: _Bus, op: str, deadline: float) -> tuple[int, str]:
        path = await bus.unit(self.unit)
        if await bus.prop(path, _UNIT, "LoadState") == "not-found":
            return OcfRc.ERR_INSTALLED, f"{self.unit}: systemd has no such unit"
        state = str(await bus.prop(path, _UNIT, "ActiveState"))
        if op in ("monitor", "status"):
            return self._monitor(state)
        if op == "start":
            if state == "active":
                return OcfRc.SUCCESS, ""
            if state == "failed":
                await bus.call(_MANAGER_PATH, _MANAGER, "ResetFailedUnit", "s", self.unit)
            await bus.call(_MANAGER_PATH, _MANAGER, "StartUnit", "ss", self.unit, "replace")
            rc, reason = await self._settle(bus, path, "active", deadline)
            if rc != OcfRc.SUCCESS and reason.endswith("inactive (result: success)"):
                # Seen right after a crash and its reset: the start job ended with nothing
                # started and nothing failed. Nothing ran, so asking once more is safe.
                log.info("%s: the start left it inactive, nothing failed; again", self.unit)
                await bus.call(_MANAGER_PATH, _MANAGER, "StartUnit", "ss", self.unit, "replace")
                rc, reason = await self._settle(bus, path, "active", deadline)
            return rc, reason
        if state in ("inactive", "failed"):
            return OcfRc.SUCCESS, ""
        await bus.call(_MANAGER_PATH, _MANAGER, "StopUnit", "ss", self.unit, "replace")
        return await self._settle(bus, path, "inactive", deadline)

    def _monitor(self, state: str) -> tuple[int, str]:
        if state in ("active", "reloading"):
            return OcfRc.SUCCESS, ""
        if state == "inactive":
            return OcfRc.NOT_RUNNING, ""
        if state == "failed":
            return OcfRc.NOT_RUNNING, f"{self.unit} failed"
        return OcfRc.ERR_GENERIC, f"{self.unit} is {state}"

    async def _settle(self, bus: _Bus, path: str, want: str, deadline: float) -> tuple[int, str]:
        """Wait for the unit to reach `want`, or to settle elsewhere (its job done)."""
        while True:
            state = str(await bus.prop(path, _UNIT, "ActiveState"))
            if state == want or (want == "inactive" and state == "failed"):
                return OcfRc.SUCCESS, ""
            job = await bus.prop(path, _UNIT, "Job")
            if state in ("inactive", "failed") and not _has_job(job):
                return (
                    OcfRc.ERR_GENERIC,
                    f"{self.unit} did not start: {await self._why(bus, path, state)}",
                )
            if time.monotonic() >= deadline:
                return OcfRc.ERR_GENERIC, f"{self.unit} is still {state}"
            await asyncio.sleep(_POLL)

    async def _why(self, bus: _Bus, path: str, state: str) -> str:
        try:
            result = await bus.prop(path, _SERVICE, "Result")
        except SystemdError:
            return state  # not a service: no Result
        return f"{state} (result: {result})"


def _has_job(job: Any) -> bool:
    """The unit's Job property is (id, path); id 0 means no job is queued."""
    return bool(job) and int(job[0]) != 0
