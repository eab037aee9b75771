"""The local resource manager: this node's side of the executor.

It probes every configured resource once (to adopt what already runs), then brings the node
to the target the DC writes, one operation at a time per resource and any number in parallel
across resources, runs recurring monitors, counts failures, and publishes the node's report.
It decides nothing about placement: a failure is reported, and the DC decides the recovery.

This module is the loop: tasks, locks, the monitors' timers, the exclusivity guard,
publishing. What a result does to an instance's report, which step comes next and what an
operation asks of its agent are pure decisions in `hastack.executor.transitions`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from hastack.executor.agents import Driver, OcfRc, OpRequest, OpResult, UnknownAgent, driver_for
from hastack.executor.exclusive import ExclusiveGuard
from hastack.executor.transitions import (
    Host,
    MonitorSchedule,
    Placement,
    TargetOp,
    after_cleanup,
    after_monitor,
    after_notify,
    after_operation,
    after_probe,
    cleanup_covers,
    exclusive_name,
    exclusive_promoted,
    is_worth_reporting,
    local_steps,
    monitors_for,
    op_request,
    placements,
    probe_names,
)
from hastack.model.config import ClusterConfig, Op, Role
from hastack.model.state import base_id
from hastack.model.status import NodeReport, ResourceReport
from hastack.model.targets import NodeTarget, NotifyRequest

__all__ = ["Instance", "LocalResourceManager"]

log = logging.getLogger("hastack.executor")

# Publishing is coalesced: many results within this window make one write.
_PUBLISH_DELAY = 0.01
# How many notification keys a node reports (the DC needs only the current transition's).
_NOTIFIED_KEPT = 256


@dataclass
class Instance:
    """One resource instance on this node: what it is (its report, the value this node
    publishes, replaced by every result) and what running it takes."""

    name: str
    primitive: str
    report: ResourceReport = field(default_factory=ResourceReport)
    busy: bool = False  # an operation for the target (or self-fencing) is under way
    monitor: asyncio.Task[None] | None = field(default=None, repr=False)
    # Held for the duration of every operation: operations on one resource never overlap.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)


class LocalResourceManager:
    def __init__(
        self,
        node: str,
        *,
        state_dir: str,
        netns: str | None = None,
        publish: Callable[[NodeReport], Awaitable[None]],
        ocf_root: str | None = None,
        ocf_dirs: tuple[str, ...] = (),
        guard: ExclusiveGuard | None = None,
        clock: Callable[[], float] = time.time,
        cluster: Mapping[str, str] | None = None,
    ) -> None:
        self.node = node
        self.cluster = dict(cluster or {})
        self.state_dir = state_dir
        self.netns = netns
        self._publish = publish
        self._ocf_root = ocf_root
        self._ocf_dirs = ocf_dirs
        self.guard = guard or ExclusiveGuard(node, None)
        self._clock = clock
        self.instances: dict[str, Instance] = {}
        self.config: ClusterConfig | None = None
        self._placements: dict[str, Placement] = {}
        self._drivers: dict[str, Driver] = {}
        self.target: NodeTarget | None = None
        self.highest_epoch = 0
        self.probed: set[str] = set()
        self.attributes: dict[str, str] = {}
        # Clone notifications run (keys, most recent last) and those under way.
        self.notified: list[str] = []
        self._notifying: set[str] = set()
        self._wake = asyncio.Event()
        self._dirty = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._ready = False
        self._wake.set()  # the first pass publishes, even before any configuration exists

    # ---- inputs -----------------------------------------------------------------------------

    _config_revision = 0

    def set_config(self, config: ClusterConfig | None, revision: int = 0) -> None:
        if config is self.config:
            return
        self.config = config
        self._config_revision = revision
        self._placements = placements(config) if config else {}
        self._drivers = {k: v for k, v in self._drivers.items() if k in self._placements}
        self._wake.set()

    def set_target(
        self, target: NodeTarget | None, *, dc_epoch: int, revision: int = 0
    ) -> str | None:
        """Accept a target unless it comes from an older DC; returns why it was refused."""
        self.highest_epoch = max(self.highest_epoch, dc_epoch)
        if target is None:
            return None
        if target.epoch < self.highest_epoch:
            return f"target from epoch {target.epoch} refused: epoch {self.highest_epoch} seen"
        if self.config is not None and target.config_revision != self._config_revision:
            # The plan was made for another configuration: wait until we have the same one.
            return None
        if self.target is None or target != self.target or revision != self._target_revision:
            self.highest_epoch = max(self.highest_epoch, target.epoch)
            self.target = target
            self._target_revision = revision
            self._wake.set()
        return None

    _target_revision = 0
    acked = 0

    def cleanup(self, resource: str) -> bool:
        """Forget failures of `resource` (a primitive, clone or instance) and probe it again."""
        touched = False
        for inst in self.instances.values():
            placement = self._placements.get(inst.primitive)
            if cleanup_covers(resource, inst.name, inst.primitive, placement):
                inst.report = after_cleanup(inst.report)
                self.probed.discard(inst.primitive)
                touched = True
        self._wake.set()
        self._dirty.set()
        return touched

    # ---- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        publisher = asyncio.create_task(self._publisher(), name="publish")
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                await self._probe_new()
                if not self._ready:
                    self._ready = True
                    self._dirty.set()
                self._reconcile()
        finally:
            publisher.cancel()
            pending = [publisher, *self._tasks]
            pending += [i.monitor for i in self.instances.values() if i.monitor is not None]
            for task in pending:
                task.cancel()
            # Let them end (kill and reap their agent processes) before the loop closes.
            await asyncio.gather(*pending, return_exceptions=True)

    async def _publisher(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(_PUBLISH_DELAY)
            self._dirty.clear()
            if not self._ready:
                continue
            report = self.report()
            try:
                await self._publish(report)
            except Exception as exc:  # the next change publishes again; say why this one did not
                log.warning("could not publish status: %s", exc)
                await asyncio.sleep(0.5)
                self._dirty.set()

    def report(self) -> NodeReport:
        return NodeReport(
            node=self.node,
            epoch=self.target.epoch if self.target else 0,
            updated=self._clock(),
            resources={
                k: v.report for k, v in self.instances.items() if is_worth_reporting(v.report)
            },
            attributes=dict(self.attributes),
            probed=frozenset(self.probed),
            acked=self.acked,
            notified=tuple(self.notified),
        )

    def _reconcile(self) -> None:
        if self.target is None or self.config is None:
            return
        self._adopt_clone_names(self.target)
        steps = local_steps(
            self.target,
            {name: inst.report for name, inst in self.instances.items()},
            busy={name for name, inst in self.instances.items() if inst.busy},
        )
        for name, op in steps:
            inst = self.instances.get(name)
            if inst is None:
                primitive = base_id(name) if base_id(name) in self._placements else name
                inst = Instance(name, primitive)
                self.instances[name] = inst
            self._launch(inst, op)
        self._launch_notifications(self.target)
        busy = any(i.busy for i in self.instances.values()) or bool(self._notifying)
        if not steps and not busy and self.acked != self._target_revision:
            # Nothing left to do for this target: every step is done or has failed.
            self.acked = self._target_revision
            self._dirty.set()

    def _adopt_clone_names(self, target: NodeTarget) -> None:
        """An anonymous clone has at most one instance per node: whatever number the DC gives
        it, it is the one running here (probes find it under its primitive's name)."""
        for name in target.resources:
            primitive = base_id(name)
            placement = self._placements.get(primitive)
            if placement is None or not placement.anonymous_clone or name in self.instances:
                continue
            other = next(
                (i for i in self.instances.values() if i.primitive == primitive and not i.busy),
                None,
            )
            if other is not None:
                del self.instances[other.name]
                other.name = name
                self.instances[name] = other

    def _launch(self, inst: Instance, op: TargetOp) -> None:
        inst.busy = True
        task = asyncio.create_task(self._operate(inst, op), name=f"{op} {inst.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- clone notifications ---------------------------------------------------------------

    def _launch_notifications(self, target: NodeTarget) -> None:
        for request in target.notify:
            if request.key in self._notifying or request.key in self.notified:
                continue
            inst = self._notify_recipient(request.instance)
            if inst is None:
                # Not running here (any more): there is no one to tell.
                log.info("notify %s: not running here, nothing to do", request.instance)
                self._notified(request.key)
                continue
            self._notifying.add(request.key)
            task = asyncio.create_task(
                self._notify(inst, request), name=f"notify {request.instance}"
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _notify_recipient(self, name: str) -> Instance | None:
        inst = self.instances.get(name)
        if inst is None:
            # The DC numbers anonymous clone instances afresh: ours is the one of that primitive.
            primitive = base_id(name)
            inst = next((i for i in self.instances.values() if i.primitive == primitive), None)
        return inst if inst is not None and inst.report.role is not Role.STOPPED else None

    def _notified(self, key: str) -> None:
        self.notified.append(key)
        del self.notified[:-_NOTIFIED_KEPT]
        self._dirty.set()

    async def _notify(self, inst: Instance, request: NotifyRequest) -> None:
        try:
            async with inst.lock:
                result = await self._execute(inst, "notify", extra=request.variables)
            when = request.variables.get("notify_type", "")
            what = request.variables.get("notify_operation", "")
            inst.report = after_notify(inst.report, result, now=self._clock())
            if result.rc == OcfRc.SUCCESS:
                log.info("notify %s (%s-%s): success", inst.name, when, what)
            else:
                log.warning(
                    "notify %s (%s-%s): %s%s",
                    inst.name,
                    when,
                    what,
                    OcfRc.describe(result.rc),
                    f" ({result.reason})" if result.reason else "",
                )
        finally:
            self._notifying.discard(request.key)
            self._notified(request.key)
            self._wake.set()

    # ---- operations -------------------------------------------------------------------------

    def _driver(self, primitive: str) -> Driver:
        driver = self._drivers.get(primitive)
        if driver is None:
            placement = self._placements[primitive]
            driver = driver_for(
                placement.primitive.agent, ocf_root=self._ocf_root, ocf_dirs=self._ocf_dirs
            )
            self._drivers[primitive] = driver
        return driver

    async def _request(
        self,
        inst: Instance,
        op: str,
        interval: float = 0.0,
        extra: Mapping[str, str] | None = None,
    ) -> OpRequest | OpResult:
        """Everything the agent needs for one operation, or the reason it cannot run."""
        placement = self._placements.get(inst.primitive)
        if placement is None or self.config is None:
            return OpResult(OcfRc.ERR_CONFIGURED, f"{inst.primitive} is not in the configuration")
        try:
            driver = self._driver(inst.primitive)
        except UnknownAgent as exc:
            return OpResult(OcfRc.ERR_INSTALLED, str(exc))
        return op_request(
            inst.name,
            placement,
            op,
            config=self.config,
            metadata=await driver.metadata(),
            host=Host(self.node, self.netns, self.state_dir, self.cluster),
            interval=interval,
            extra=extra,
        )

    async def _execute(
        self,
        inst: Instance,
        op: str,
        interval: float = 0.0,
        extra: Mapping[str, str] | None = None,
    ) -> OpResult:
        request = await self._request(inst, op, interval, extra)
        if isinstance(request, OpResult):
            return request
        driver = self._driver(inst.primitive)
        try:
            # OCF scripts are killed at their timeout by the driver; native agents are
            # cancelled here, with a little slack so the driver's own message wins.
            async with asyncio.timeout(request.timeout + 1.0):
                return await driver.execute(request)
        except TimeoutError:
            return OpResult(
                OcfRc.ERR_GENERIC, f"timed out after {request.timeout:g}s", request.timeout, True
            )

    # ---- exclusivity --------------------------------------------------------------------------

    def exclusive_name(self, inst: Instance) -> str | None:
        """The name under which `inst` is exclusive while started, if it is."""
        return exclusive_name(inst.primitive, self._placements.get(inst.primitive))

    def exclusive_promoted(self, inst: Instance) -> str | None:
        """The name under which `inst`'s promoted role is exclusive, if it is."""
        return exclusive_promoted(self._placements.get(inst.primitive))

    def _guard_before(self, inst: Instance, op: str) -> None:
        name = self.exclusive_name(inst) if op == "start" else None
        if op == "promote":
            name = self.exclusive_promoted(inst)
        if name is not None:
            self.guard.acquire(name)

    def _guard_after(self, inst: Instance, op: str, ok: bool) -> None:
        if not ok:
            return
        if op == "stop":
            for name in (self.exclusive_name(inst), self.exclusive_promoted(inst)):
                if name is not None:
                    self.guard.release(name)
        elif op == "demote":
            name = self.exclusive_promoted(inst)
            if name is not None:
                self.guard.release(name)

    def _guard_probe(self, inst: Instance) -> None:
        name, promoted = self.exclusive_name(inst), self.exclusive_promoted(inst)
        role = inst.report.role
        if role is Role.STOPPED:
            for n in (name, promoted):
                if n is not None:
                    self.guard.release(n)
            return
        if name is not None:
            self.guard.acquire(name)
        if promoted is not None and role is Role.PROMOTED:
            self.guard.acquire(promoted)

    async def release_exclusive(self, deadline: float) -> bool:
        """Self-fencing: stop (or demote) everything exclusive here before `deadline`
        (monotonic). Returns whether nothing exclusive is left running."""
        self.target = None  # no DC's word counts any more until we are a member again
        work = []
        for inst in list(self.instances.values()):
            if inst.report.blocked or inst.report.role is Role.STOPPED:
                continue
            if self.exclusive_name(inst) is not None:
                work.append(self._self_fence_one(inst, "stop"))
            elif inst.report.role is Role.PROMOTED and self.exclusive_promoted(inst) is not None:
                work.append(self._self_fence_one(inst, "demote"))
        if work:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await asyncio.gather(*work)
        return not self.guard.held

    async def _self_fence_one(self, inst: Instance, op: TargetOp) -> None:
        # A running operation ends first (it is bounded by its own timeout).
        async with inst.lock:
            await self._self_fence_locked(inst, op)

    async def _self_fence_locked(self, inst: Instance, op: TargetOp) -> None:
        inst.busy = True
        try:
            result = await self._execute(inst, op)
            self._record(inst, op, result)
            self._guard_after(inst, op, result.rc == OcfRc.SUCCESS)
            log.warning("self-fencing: %s %s: %s", op, inst.name, OcfRc.describe(result.rc))
        finally:
            inst.busy = False
            self._dirty.set()
            self._update_monitor(inst)

    async def _operate(self, inst: Instance, op: TargetOp) -> None:
        async with inst.lock:
            await self._operate_locked(inst, op)

    async def _operate_locked(self, inst: Instance, op: TargetOp) -> None:
        try:
            self._guard_before(inst, op)
            result = await self._execute(inst, op)
            self._record(inst, op, result)
            self._guard_after(inst, op, result.rc == OcfRc.SUCCESS)
            log.info(
                "%s %s: %s%s",
                op,
                inst.name,
                OcfRc.describe(result.rc),
                f" ({result.reason})" if result.reason else "",
            )
        finally:
            inst.busy = False
            self._dirty.set()
            self._wake.set()
            self._update_monitor(inst)

    def _record(self, inst: Instance, op: TargetOp, result: OpResult) -> None:
        placement = self._placements.get(inst.primitive)
        inst.report = after_operation(
            inst.report,
            op,
            result,
            now=self._clock(),
            promotable=placement is not None and placement.promotable,
            start_failure_is_fatal=self.config is None
            or self.config.properties.start_failure_is_fatal,
        )

    # ---- probes -----------------------------------------------------------------------------

    async def _probe_new(self) -> None:
        """Probe every configured primitive not probed yet (at start, and when one is added)."""
        if self.config is None:
            return
        todo = [p for p in self._placements if p not in self.probed]
        if not todo:
            return
        await asyncio.gather(*(self._probe(p) for p in todo))
        self._dirty.set()

    async def _probe(self, primitive: str) -> None:
        placement = self._placements[primitive]
        assert self.config is not None  # placements come from it
        for name in probe_names(placement, self.config):
            inst = self.instances.get(name) or next(
                (
                    i
                    for i in self.instances.values()
                    if i.primitive == primitive and placement.anonymous_clone
                ),
                None,
            )
            if inst is not None and inst.busy:
                continue
            if inst is None:
                inst = Instance(name, primitive)
            result = await self._execute(inst, "probe")
            inst.report = after_probe(
                inst.report, result, now=self._clock(), promotable=placement.promotable
            )
            self._guard_probe(inst)
            report = inst.report
            if report.role is not Role.STOPPED or report.failed or report.fail_count:
                self.instances[inst.name] = inst
            else:
                self.instances.pop(inst.name, None)
            self._update_monitor(inst)
        self.probed.add(primitive)

    # ---- monitors ---------------------------------------------------------------------------

    def _monitors_for(self, inst: Instance) -> list[Op]:
        placement = self._placements.get(inst.primitive)
        return [] if placement is None else monitors_for(placement.primitive, inst.report.role)

    def _update_monitor(self, inst: Instance) -> None:
        if inst.monitor is not None:
            inst.monitor.cancel()
            inst.monitor = None
        ops = self._monitors_for(inst)
        if ops and not inst.report.blocked and self.instances.get(inst.name) is inst:
            inst.monitor = asyncio.create_task(
                self._monitor_loop(inst, ops), name=f"monitor {inst.name}"
            )

    async def _monitor_loop(self, inst: Instance, ops: list[Op]) -> None:
        schedule = MonitorSchedule.starting([op.interval for op in ops], time.monotonic())
        while True:
            index, due = schedule.next()
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            schedule = schedule.ran(index, time.monotonic())
            if inst.busy or inst.lock.locked():
                continue
            op = ops[index]
            # A monitor holds the resource's lock but is not target work: it neither blocks
            # a step (the step waits for the lock) nor delays the acknowledgement.
            async with inst.lock:
                result = await self._execute(inst, "monitor", op.interval)
            failed = after_monitor(
                inst.report, result, now=self._clock(), interval=op.interval, on_fail=op.on_fail
            )
            if failed is None:
                continue
            why = failed.last_op.reason if failed.last_op else ""
            log.warning("monitor %s: %s (%s)", inst.name, OcfRc.describe(result.rc), why)
            inst.report = failed
            self._dirty.set()
            self._wake.set()
            return  # the DC decides the recovery; monitoring resumes after it
