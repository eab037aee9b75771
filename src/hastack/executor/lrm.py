"""The local resource manager: this node's side of the executor.

It probes every configured resource once (to adopt what already runs), then brings the node
to the target the DC writes, one operation at a time per resource and any number in parallel
across resources, runs recurring monitors, counts failures, and publishes the node's report.
It decides nothing about placement: a failure is reported, and the DC decides the recovery.
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
from hastack.model.config import Clone, ClusterConfig, Group, Op, OpName, Primitive, Role
from hastack.model.scores import INFINITY
from hastack.model.state import base_id
from hastack.model.status import LastOp, NodeReport, ResourceReport
from hastack.model.targets import NodeTarget, NotifyRequest

__all__ = ["LocalResourceManager", "Placement", "local_steps"]

log = logging.getLogger("hastack.executor")

# Publishing is coalesced: many results within this window make one write.
_PUBLISH_DELAY = 0.01
# How many notification keys a node reports (the DC needs only the current transition's).
_NOTIFIED_KEPT = 256


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a primitive sits in the configuration tree: what its agent needs to know."""

    primitive: Primitive
    clone: Clone | None

    @property
    def anonymous_clone(self) -> bool:
        return self.clone is not None and not self.clone.meta.globally_unique

    @property
    def promotable(self) -> bool:
        return self.clone is not None and self.clone.promotable


def placements(config: ClusterConfig) -> dict[str, Placement]:
    out: dict[str, Placement] = {}
    for top in config.resources:
        clone = top if isinstance(top, Clone) else None
        inner = top.resource if isinstance(top, Clone) else top
        members = inner.resources if isinstance(inner, Group) else [inner]
        for p in members:
            out[p.id] = Placement(p, clone)
    return out


@dataclass
class Instance:
    """One resource instance on this node, as this node knows it."""

    name: str
    primitive: str
    role: Role = Role.STOPPED
    failed: bool = False
    blocked: bool = False
    fail_count: int = 0
    last_failure: float | None = None
    last_op: LastOp | None = None
    failed_op: LastOp | None = None
    busy: bool = False  # an operation for the target (or self-fencing) is under way
    monitor: asyncio.Task[None] | None = field(default=None, repr=False)
    # Held for the duration of every operation: operations on one resource never overlap.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    def report(self) -> ResourceReport:
        return ResourceReport(
            role=self.role,
            failed=self.failed,
            blocked=self.blocked,
            fail_count=self.fail_count,
            last_failure=self.last_failure,
            last_op=self.last_op,
            failed_op=self.failed_op,
        )

    @property
    def worth_reporting(self) -> bool:
        return (
            self.role is not Role.STOPPED
            or self.failed
            or self.fail_count > 0
            or self.last_op is not None
        )


def local_steps(target: NodeTarget, instances: dict[str, Instance]) -> list[tuple[str, str]]:
    """The next operation for each instance that is not where the target wants it. Pure.

    One step at a time per instance: a target of Promoted from Stopped is a start now and a
    promote once the start has succeeded; Stopped from Promoted is a demote, then a stop.
    """
    steps = []
    for name in sorted(set(target.resources) | set(instances)):
        if name in target.unmanaged:
            continue
        inst = instances.get(name)
        current = inst.role if inst else Role.STOPPED
        if inst is not None and (inst.busy or inst.blocked):
            continue
        desired = target.resources.get(name, Role.STOPPED)
        op = _step(current, desired)
        if op is not None:
            steps.append((name, op))
    return steps


def _step(current: Role, desired: Role) -> str | None:
    active = {Role.STARTED, Role.UNPROMOTED}
    if desired is Role.STOPPED:
        if current is Role.PROMOTED:
            return "demote"
        return "stop" if current in active else None
    if current is Role.STOPPED:
        return "start"
    if desired is Role.PROMOTED and current in active:
        return "promote"
    if desired in active and current is Role.PROMOTED:
        return "demote"
    return None


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
            if resource in (inst.name, inst.primitive, base_id(inst.name)) or self._in_clone(
                inst.primitive, resource
            ):
                inst.failed = False
                inst.blocked = False
                inst.fail_count = 0
                inst.last_failure = None
                inst.failed_op = None
                self.probed.discard(inst.primitive)
                touched = True
        self._wake.set()
        self._dirty.set()
        return touched

    def _in_clone(self, primitive: str, name: str) -> bool:
        placement = self._placements.get(primitive)
        return placement is not None and placement.clone is not None and placement.clone.id == name

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
            resources={k: v.report() for k, v in self.instances.items() if v.worth_reporting},
            attributes=dict(self.attributes),
            probed=frozenset(self.probed),
            acked=self.acked,
            notified=tuple(self.notified),
        )

    def _reconcile(self) -> None:
        if self.target is None or self.config is None:
            return
        self._adopt_clone_names(self.target)
        steps = local_steps(self.target, self.instances)
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

    def _launch(self, inst: Instance, op: str) -> None:
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
        return inst if inst is not None and inst.role is not Role.STOPPED else None

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
            if result.rc == OcfRc.SUCCESS:
                log.info("notify %s (%s-%s): success", inst.name, when, what)
            else:
                # A failed notification does not fail the resource: its monitor judges it.
                inst.last_op = LastOp(
                    "notify", result.rc, result.reason, self._clock(), result.duration
                )
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

    def _op_config(self, p: Primitive, name: str, interval: float) -> Op | None:
        for op in p.ops:
            if op.name.value == name and op.interval == interval:
                return op
        return None

    async def _request(
        self,
        inst: Instance,
        op: str,
        interval: float = 0.0,
        extra: Mapping[str, str] | None = None,
    ) -> OpRequest | OpResult:
        """Everything the agent needs for one operation, or the reason it cannot run."""
        placement = self._placements.get(inst.primitive)
        if placement is None:
            return OpResult(OcfRc.ERR_CONFIGURED, f"{inst.primitive} is not in the configuration")
        p = placement.primitive
        try:
            driver = self._driver(inst.primitive)
        except UnknownAgent as exc:
            return OpResult(OcfRc.ERR_INSTALLED, str(exc))
        metadata = await driver.metadata()
        if op == "start" and metadata is not None:
            missing = sorted(metadata.required - set(p.params))
            if missing:
                return OpResult(
                    OcfRc.ERR_CONFIGURED,
                    f"required parameter(s) missing: {', '.join(missing)}",
                )
        configured = self._op_config(p, "monitor" if op == "probe" else op, interval)
        assert self.config is not None
        timeout = (
            configured.timeout
            if configured is not None and configured.timeout is not None
            else (metadata.timeouts.get(op) if metadata else None)
            or self.config.op_defaults.timeout
        )
        meta = {"timeout": str(int(timeout * 1000)), "interval": str(int(interval * 1000))}
        meta["name"] = "monitor" if op == "probe" else op
        meta["on_node"] = self.node  # as Pacemaker passes it (CRM_meta_on_node)
        if placement.clone is not None:
            c = placement.clone
            tail = inst.name.rpartition(":")[2]
            meta.update(
                {
                    "clone": tail if tail.isdigit() else "0",
                    "clone_max": str(c.meta.clone_max or len(self.config.nodes) or 1),
                    "clone_node_max": str(c.meta.clone_node_max or 1),
                    "globally_unique": "true" if c.meta.globally_unique else "false",
                }
            )
            if c.promotable:
                meta["promoted_max"] = str(c.meta.promoted_max or 1)
                meta["promoted_node_max"] = str(c.meta.promoted_node_max or 1)
            meta["notify"] = "true" if c.meta.notify else "false"
        meta.update(extra or {})
        instance_name = inst.name if not placement.anonymous_clone else inst.primitive
        return OpRequest(
            instance=instance_name,
            primitive=inst.primitive,
            op="monitor" if op == "probe" else op,
            params=dict(p.params),
            meta=meta,
            timeout=timeout,
            interval=interval,
            netns=self.netns,
            state_dir=self.state_dir,
            cluster=self.cluster,
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
        placement = self._placements.get(inst.primitive)
        if placement is None:
            return inst.primitive  # an orphan: assume the worst
        return placement.primitive.id if placement.clone is None else None

    def exclusive_promoted(self, inst: Instance) -> str | None:
        """The name under which `inst`'s promoted role is exclusive, if it is."""
        placement = self._placements.get(inst.primitive)
        if placement is None or placement.clone is None or not placement.clone.promotable:
            return None
        if (placement.clone.meta.promoted_max or 1) != 1:
            return None
        return f"{placement.clone.id}[Promoted]"

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
        if inst.role is Role.STOPPED:
            for n in (name, promoted):
                if n is not None:
                    self.guard.release(n)
            return
        if name is not None:
            self.guard.acquire(name)
        if promoted is not None and inst.role is Role.PROMOTED:
            self.guard.acquire(promoted)

    async def release_exclusive(self, deadline: float) -> bool:
        """Self-fencing: stop (or demote) everything exclusive here before `deadline`
        (monotonic). Returns whether nothing exclusive is left running."""
        self.target = None  # no DC's word counts any more until we are a member again
        work = []
        for inst in list(self.instances.values()):
            if inst.blocked or inst.role is Role.STOPPED:
                continue
            if self.exclusive_name(inst) is not None:
                work.append(self._self_fence_one(inst, "stop"))
            elif inst.role is Role.PROMOTED and self.exclusive_promoted(inst) is not None:
                work.append(self._self_fence_one(inst, "demote"))
        if work:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await asyncio.gather(*work)
        return not self.guard.held

    async def _self_fence_one(self, inst: Instance, op: str) -> None:
        # A running operation ends first (it is bounded by its own timeout).
        async with inst.lock:
            await self._self_fence_locked(inst, op)

    async def _self_fence_locked(self, inst: Instance, op: str) -> None:
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

    async def _operate(self, inst: Instance, op: str) -> None:
        async with inst.lock:
            await self._operate_locked(inst, op)

    async def _operate_locked(self, inst: Instance, op: str) -> None:
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

    def _record(self, inst: Instance, op: str, result: OpResult, interval: float = 0.0) -> None:
        now = self._clock()
        inst.last_op = LastOp(op, result.rc, result.reason, now, result.duration, interval)
        placement = self._placements.get(inst.primitive)
        promotable = placement is not None and placement.promotable
        ok = result.rc == OcfRc.SUCCESS
        if op == "start":
            if ok:
                inst.role = Role.UNPROMOTED if promotable else Role.STARTED
                inst.failed = False
            else:
                # A failed start may have left something behind: it needs a stop, and (with
                # start-failure-is-fatal, the default) this node is banned until cleanup.
                inst.role = Role.UNPROMOTED if promotable else Role.STARTED
                self._fail(inst, now, fatal=self._start_failure_is_fatal())
        elif op == "stop":
            if ok:
                inst.role = Role.STOPPED
                inst.failed = False
            else:
                inst.blocked = True
                self._fail(inst, now, fatal=True)
        elif op == "promote":
            inst.role = Role.PROMOTED
            if not ok:
                self._fail(inst, now)
        elif op == "demote":
            inst.role = Role.UNPROMOTED
            if not ok:
                self._fail(inst, now)

    def _fail(self, inst: Instance, now: float, *, fatal: bool = False) -> None:
        inst.failed = True
        inst.failed_op = inst.last_op
        inst.last_failure = now
        inst.fail_count = INFINITY if fatal else min(INFINITY, inst.fail_count + 1)

    def _start_failure_is_fatal(self) -> bool:
        return self.config is None or self.config.properties.start_failure_is_fatal

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
        names = [primitive]
        if placement.clone is not None and not placement.anonymous_clone:
            count = placement.clone.meta.clone_max or max(
                1, len(self.config.nodes) if self.config else 1
            )
            names = [f"{primitive}:{i}" for i in range(count)]
        for name in names:
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
            self._record_probe(inst, result, placement)
            self._guard_probe(inst)
            if inst.role is not Role.STOPPED or inst.failed or inst.fail_count:
                self.instances[inst.name] = inst
            else:
                self.instances.pop(inst.name, None)
            self._update_monitor(inst)
        self.probed.add(primitive)

    def _record_probe(self, inst: Instance, result: OpResult, placement: Placement) -> None:
        now = self._clock()
        rc = result.rc
        inst.last_op = LastOp("probe", rc, result.reason, now, result.duration)
        if rc == OcfRc.SUCCESS:
            inst.role = Role.UNPROMOTED if placement.promotable else Role.STARTED
        elif rc == OcfRc.RUNNING_PROMOTED:
            inst.role = Role.PROMOTED
        elif rc == OcfRc.NOT_RUNNING:
            inst.role = Role.STOPPED
            inst.last_op = None  # nothing to say about a resource that is simply not here
        elif rc in (OcfRc.ERR_INSTALLED, OcfRc.ERR_CONFIGURED, OcfRc.ERR_ARGS):
            # It cannot run here at all: stopped, and this node banned until cleanup.
            inst.role = Role.STOPPED
            inst.fail_count = INFINITY
            inst.last_failure = now
            inst.failed_op = inst.last_op
        else:
            # Unknown state (an error, a failed promoted): treat as active and failed, so the
            # DC stops it before starting it anywhere.
            inst.role = Role.PROMOTED if rc == OcfRc.FAILED_PROMOTED else Role.STARTED
            self._fail(inst, now)

    # ---- monitors ---------------------------------------------------------------------------

    def _monitors_for(self, inst: Instance) -> list[Op]:
        placement = self._placements.get(inst.primitive)
        if placement is None or inst.role is Role.STOPPED:
            return []
        out = []
        for op in placement.primitive.ops:
            if op.name is not OpName.MONITOR or op.interval <= 0 or not op.enabled:
                continue
            if op.role is not None and not _role_matches(op.role, inst.role):
                continue
            if (
                op.role is None
                and inst.role is Role.PROMOTED
                and any(
                    o.name is OpName.MONITOR and o.role is Role.PROMOTED
                    for o in placement.primitive.ops
                )
            ):
                continue
            out.append(op)
        return out

    def _update_monitor(self, inst: Instance) -> None:
        if inst.monitor is not None:
            inst.monitor.cancel()
            inst.monitor = None
        ops = self._monitors_for(inst)
        if ops and not inst.blocked and self.instances.get(inst.name) is inst:
            inst.monitor = asyncio.create_task(
                self._monitor_loop(inst, ops), name=f"monitor {inst.name}"
            )

    async def _monitor_loop(self, inst: Instance, ops: list[Op]) -> None:
        due = {id(op): time.monotonic() + op.interval for op in ops}
        while True:
            op = min(ops, key=lambda o: due[id(o)])
            await asyncio.sleep(max(0.0, due[id(op)] - time.monotonic()))
            due[id(op)] = time.monotonic() + op.interval
            if inst.busy or inst.lock.locked():
                continue
            # A monitor holds the resource's lock but is not target work: it neither blocks
            # a step (the step waits for the lock) nor delays the acknowledgement.
            async with inst.lock:
                result = await self._execute(inst, "monitor", op.interval)
            expected = OcfRc.RUNNING_PROMOTED if inst.role is Role.PROMOTED else OcfRc.SUCCESS
            if result.rc == expected:
                continue
            if op.on_fail is not None and op.on_fail.value == "ignore":
                continue
            why = result.reason or OcfRc.describe(result.rc)
            log.warning("monitor %s: %s (%s)", inst.name, OcfRc.describe(result.rc), why)
            now = self._clock()
            inst.last_op = LastOp("monitor", result.rc, why, now, result.duration, op.interval)
            self._fail(inst, now)
            self._dirty.set()
            self._wake.set()
            return  # the DC decides the recovery; monitoring resumes after it


def _role_matches(wanted: Role, current: Role) -> bool:
    if wanted in (Role.STARTED, Role.UNPROMOTED):
        return current in (Role.STARTED, Role.UNPROMOTED)
    return wanted is current
