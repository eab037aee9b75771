"""The REST API and dashboard server, run by an agent in a thread of its own (docs/api.md).

Every answer reads the store through this thread's own client; every change is a call of
`hastack.ops`, the functions the `hastack` command calls, so both make the same change. The
agent's own facts (member, DC, its cycle) come from `AgentSide.local_view()`.

Errors are JSON, `{"error": ..., "status": N}`: 400 bad input (with where), 401 no or unknown
credential, 403 a read-only credential on a write, 404 unknown path, node or resource, 405
wrong method, 409 a configuration changed meanwhile, 422 a configuration with problems, 503 the
store cannot be reached. Nothing is changed by a request that is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from hastack.api.components import components
from hastack.api.counters import AgentCounters, LocalView
from hastack.api.metrics import render_metrics
from hastack.api.openapi import openapi
from hastack.auth import Forbidden, Operator, Role, TokenFile, Unauthorized, authorize
from hastack.controller import build_state
from hastack.errors import ConfigError, HastackError, StoreError
from hastack.executor.check import apply_problems
from hastack.model.agent_config import AgentConfig
from hastack.model.config import ClusterConfig, parse_cluster_config
from hastack.model.config import Role as ResourceRole
from hastack.model.config_text import config_to_yaml
from hastack.model.events import kinds
from hastack.model.members import ClusterSnapshot
from hastack.ops import edits, events
from hastack.ops.cluster import Actor, Cluster
from hastack.ops.configure import ConfigChanged, apply_config, change_config, read_stored
from hastack.ops.edits import EditRefused
from hastack.ops.requests import request_cleanup
from hastack.ops.resources import restart
from hastack.ops.simulate import WhatIf, live_state, what_if
from hastack.ops.status import StatusReport, build_report
from hastack.scheduler import schedule
from hastack.scheduler.render import render_summary
from hastack.store import EndpointStatus, EtcdStore, Keys, Store, endpoint_status
from hastack.store.snapshot import read_snapshot
from hastack.store.tls import StoreCredentials, load_credentials

__all__ = ["AgentSide", "Api", "ApiThread", "build_app"]

log = logging.getLogger("hastack.api")

# Answers within this age share one read of the store: ten dashboards cost what one does.
SNAPSHOT_MAX_AGE = 0.5
# The store members' health is asked in the background this often, each with this timeout:
# an answer never waits for a dead member.
HEALTH_EVERY = 2.0
HEALTH_TIMEOUT = 1.0
# One store call of the API: short, so an answer comes within 2 s even when the first member
# asked is gone (the read is tried once more on the next member).
STORE_TIMEOUT = 0.9
# Requests handled at once; more wait for a turn. Bodies larger than this are refused.
MAX_CONCURRENT = 32
MAX_BODY = 1 << 20
# A restart through the API waits at most this long for the stop.
MAX_RESTART_WAIT = 120.0
# After a failed bind, try again this often (the address may come up later).
BIND_RETRY = 5.0

NODE_ACTIONS = {
    "standby": ("standby", True),
    "unstandby": ("standby", False),
    "maintenance": ("maintenance", True),
    "unmaintenance": ("maintenance", False),
}
RESOURCE_ACTIONS = ("enable", "disable", "move", "ban", "clear", "cleanup", "restart")


class AgentSide(Protocol):
    """What the API asks of the agent it runs in."""

    counters: AgentCounters

    def local_view(self) -> LocalView: ...

    def events_dropped(self) -> int: ...


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.extra = extra


@dataclass(frozen=True, slots=True)
class Facts:
    """One read of the cluster, and what is derived from it once."""

    snapshot: ClusterSnapshot
    report: StatusReport
    unclean: frozenset[str]
    fenced: frozenset[str]
    read_at: float  # monotonic


def _json(data: Any, status: int = 200) -> web.Response:
    text = json.dumps(data, sort_keys=True, default=str)
    return web.Response(text=text + "\n", status=status, content_type="application/json")


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return _json({"error": message, "status": status, **extra}, status)


class Api:
    """The application: store access with its caches, credentials, and the handlers."""

    def __init__(
        self,
        config: AgentConfig,
        agent: AgentSide,
        store: Store,
        credentials: StoreCredentials,
        tokens: TokenFile | None,
    ) -> None:
        assert config.api is not None
        self.config = config
        self.agent = agent
        self.node = config.node
        self.store = store
        self.keys = Keys(config.cluster, config.etcd.root)
        self.credentials = credentials
        self.tokens = tokens
        self.open_reads = config.api.open_reads
        self._facts: Facts | None = None
        self._reading: asyncio.Lock | None = None
        self._health: list[EndpointStatus] = [
            EndpointStatus(endpoint=e, healthy=False, error="not asked yet")
            for e in config.etcd.endpoints
        ]
        self._turns = asyncio.Semaphore(MAX_CONCURRENT)

    # ---- reading the cluster ---------------------------------------------------------------

    async def watch_health(self) -> None:
        while True:
            found = await asyncio.gather(
                *(
                    endpoint_status(e, HEALTH_TIMEOUT, self.credentials)
                    for e in self.config.etcd.endpoints
                )
            )
            self._health = list(found)
            await asyncio.sleep(HEALTH_EVERY)

    async def facts(self) -> Facts:
        """The cluster as read at most SNAPSHOT_MAX_AGE ago (one read for everyone asking)."""
        if self._reading is None:
            self._reading = asyncio.Lock()
        async with self._reading:
            facts = self._facts
            if facts is not None and time.monotonic() - facts.read_at < SNAPSHOT_MAX_AGE:
                return facts
            read_at = time.monotonic()
            try:
                snapshot = await read_snapshot(self.store, self.keys)
            except StoreError as exc:
                raise ApiError(503, f"cannot read the store: {exc}") from None
            if facts is not None and facts.snapshot.revision == snapshot.revision:
                # Nothing changed in the store: the scheduler's explanations stand; the store's
                # health and the times shown are taken afresh.
                report = build_report(
                    self.config.cluster, snapshot, list(self._health), time.time(), explain=False
                )
                report = dataclasses.replace(report, stopped=facts.report.stopped)
                facts = Facts(snapshot, report, facts.unclean, facts.fenced, read_at)
            else:
                facts = self._derive(snapshot, read_at)
            self._facts = facts
            return facts

    def _derive(self, snapshot: ClusterSnapshot, read_at: float) -> Facts:
        now = time.time()
        report = build_report(self.config.cluster, snapshot, list(self._health), now)
        state = build_state(snapshot, snapshot.config or ClusterConfig(), now=now)
        unclean = frozenset(n for n, s in state.nodes.items() if s.unclean)
        fenced = frozenset(n for n in snapshot.known_nodes if snapshot.fenced_since_join(n))
        return Facts(snapshot, report, unclean, fenced, read_at)

    def cluster(self, who: Operator | None, request: web.Request | None = None) -> Cluster:
        name = who.name if who is not None else "anonymous"
        remote = (request.remote if request is not None else None) or "unknown"
        actor = Actor(name, f"api on {self.node}", remote)
        return Cluster(self.config.cluster, self.store, self.keys, actor)

    # ---- credentials -------------------------------------------------------------------------

    def authorize(self, request: web.Request, needed: Role) -> Operator | None:
        """The operator asking; None for an open read. ApiError 401/403 otherwise."""
        header = request.headers.get("Authorization")
        if not header and needed is Role.READ and not self.open_reads:
            raise ApiError(401, "reading needs a credential (api.open-reads is off)")
        try:
            return authorize(self.tokens, header, need=needed, open_reads=self.open_reads)
        except Unauthorized as exc:
            raise ApiError(401, str(exc)) from None
        except Forbidden as exc:
            raise ApiError(403, str(exc)) from None

    # ---- health (for load balancers; no credential) --------------------------------------

    def _view_json(self, view: LocalView) -> dict[str, Any]:
        return asdict(view)

    async def health(self, request: web.Request) -> web.Response:
        view = self.agent.local_view()
        reasons = []
        if not view.member:
            reasons.append("not an online member")
        if view.standby:
            reasons.append("in standby")
        if view.maintenance:
            reasons.append("in maintenance")
        body = {"node": view.node, "healthy": not reasons, "reasons": reasons}
        return _json(body, 503 if reasons else 200)

    async def dc(self, request: web.Request) -> web.Response:
        view = self.agent.local_view()
        body = {"node": view.node, "dc": view.dc, "epoch": view.epoch}
        return _json(body, 200 if view.dc and view.member else 503)

    async def liveness(self, request: web.Request) -> web.Response:
        view = self.agent.local_view()
        alive = view.cycle_stalled_for < view.cycle_limit
        body = {"node": view.node, "cycle-stalled-for": round(view.cycle_stalled_for, 3)}
        return _json(body, 200 if alive else 503)

    # ---- pages ---------------------------------------------------------------------------

    async def dashboard(self, request: web.Request) -> web.Response:
        page = resources.files("hastack.api").joinpath("dashboard.html").read_text()
        return web.Response(text=page, content_type="text/html", charset="utf-8")

    async def openapi(self, request: web.Request) -> web.Response:
        return _json(openapi(ROUTES))

    async def metrics(self, request: web.Request) -> web.Response:
        self.authorize(request, Role.READ)
        facts = await self.facts()
        body = render_metrics(
            facts.report,
            facts.snapshot,
            facts.unclean,
            self.agent.local_view(),
            self.agent.counters,
            self.agent.events_dropped(),
        )
        return web.Response(body=body, content_type="text/plain", charset="utf-8")

    # ---- reads ---------------------------------------------------------------------------

    def _status_json(self, facts: Facts) -> dict[str, Any]:
        data = facts.report.to_json()
        for node in data["nodes"]:
            node["unclean"] = node["name"] in facts.unclean
            node["fenced"] = node["name"] in facts.fenced
        data["components"] = components(facts.snapshot)
        data["answered-by"] = self._view_json(self.agent.local_view())
        data["read-age"] = round(time.monotonic() - facts.read_at, 3)
        return data

    async def status(self, request: web.Request) -> web.Response:
        self.authorize(request, Role.READ)
        return _json(self._status_json(await self.facts()))

    async def nodes(self, request: web.Request) -> web.Response:
        self.authorize(request, Role.READ)
        data = self._status_json(await self.facts())
        return _json({k: data[k] for k in ("nodes", "dc_node", "dc_epoch", "revision")})

    async def resources(self, request: web.Request) -> web.Response:
        self.authorize(request, Role.READ)
        data = self._status_json(await self.facts())
        keys = ("resources", "resource_lines", "failed_actions", "fail_counts", "stopped")
        return _json({k: data[k] for k in (*keys, "pending", "revision")})

    async def get_config(self, request: web.Request) -> web.Response:
        self.authorize(request, Role.READ)
        stored = await read_stored(self.cluster(None))
        config = stored.config
        return _json(
            {
                "revision": stored.revision,
                "config": config.model_dump(mode="json", by_alias=True, exclude_defaults=True)
                if config is not None
                else None,
                "yaml": config_to_yaml(config) if config is not None else "",
            }
        )

    async def get_events(self, request: web.Request) -> web.Response:
        self.authorize(request, Role.READ)
        query = request.query
        after = _int_param(query.get("after", "0"), "after", minimum=0)
        limit = _int_param(query.get("limit", "200"), "limit", minimum=0, maximum=1000)
        try:
            wanted = kinds(query.getall("kind", []))
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        history = await events.recent(self.cluster(None), after=after, limit=limit, kinds=wanted)
        return _json(
            {
                "events": [e.to_json() for e in history.events],
                "revision": history.revision,
                "stored": history.stored,
                "problems": history.problems,
            }
        )

    async def fencing(self, request: web.Request) -> web.Response:
        self.authorize(request, Role.READ)
        facts = await self.facts()
        node = request.query.get("node")
        history = facts.snapshot.fencing
        if node is not None and node not in facts.snapshot.known_nodes and node not in history:
            raise ApiError(404, f"no node {node!r} in this cluster")
        records = [
            asdict(r) for name in sorted(history) if node in (None, name) for r in history[name]
        ]
        return _json({"fencing": sorted(records, key=lambda r: r["finished"])})

    async def simulate(self, request: web.Request) -> web.Response:
        self.authorize(request, Role.READ)
        body = await _body(request)
        allowed = {"node-down", "node-fail", "node-up", "standby", "fail", "quorum"}
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise ApiError(
                400,
                f"unknown field(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})",
            )
        fail = []
        for item in _list(body, "fail"):
            if not isinstance(item, dict) or set(item) != {"resource", "node"}:
                raise ApiError(400, 'fail: each item must be {"resource": R, "node": N}')
            fail.append((str(item["resource"]), str(item["node"])))
        quorum = body.get("quorum")
        if quorum is not None and not isinstance(quorum, bool):
            raise ApiError(400, "quorum must be true or false")
        changes = WhatIf(
            node_down=_names(body, "node-down"),
            node_fail=_names(body, "node-fail"),
            node_up=_names(body, "node-up"),
            standby=_names(body, "standby"),
            fail=fail,
            quorum=quorum,
        )
        config, state = await live_state(self.cluster(None))
        try:
            state = what_if(state, changes)
        except HastackError as exc:
            raise ApiError(400, str(exc)) from None
        plan = schedule(config, state)
        return _json(
            {
                "actions": [asdict(a) for a in plan.actions],
                "assignments": [asdict(a) for a in plan.assignments],
                "warnings": list(plan.warnings),
                "summary": render_summary(config, state, plan),
            }
        )

    # ---- writes --------------------------------------------------------------------------

    async def node_action(self, request: web.Request) -> web.Response:
        who = self.authorize(request, Role.WRITE)
        node, action = request.match_info["node"], request.match_info["action"]
        if action not in NODE_ACTIONS:
            raise ApiError(404, f"no node action {action!r} (actions: {', '.join(NODE_ACTIONS)})")
        await _body(request, empty_ok=True)
        await self._known_node(node)
        flag, on = NODE_ACTIONS[action]
        changed = await change_config(
            self.cluster(who, request), edits.set_node_flag(node, flag, on)
        )
        self._facts = None
        return _json(
            {"message": changed.message, "revision": changed.revision, "changed": changed.changed}
        )

    async def _known_node(self, node: str) -> None:
        """A node the cluster knows (it joined once, or the configuration names it): a typo
        must not add a node to the configuration."""
        facts = await self.facts()
        config = facts.snapshot.config
        known = set(facts.snapshot.known_nodes) | {n.node for n in (config.nodes if config else [])}
        if node not in known:
            names = ", ".join(sorted(known)) or "none"
            raise ApiError(404, f"no node {node!r} in this cluster (nodes: {names})")

    async def resource_action(self, request: web.Request) -> web.Response:
        who = self.authorize(request, Role.WRITE)
        rid, action = request.match_info["resource"], request.match_info["action"]
        if action not in RESOURCE_ACTIONS:
            raise ApiError(
                404, f"no resource action {action!r} (actions: {', '.join(RESOURCE_ACTIONS)})"
            )
        body = await _body(request, empty_ok=True)
        allowed = {"move": {"node"}, "ban": {"node"}, "cleanup": {"node"}, "restart": {"timeout"}}
        extra = sorted(set(body) - allowed.get(action, set()))
        if extra:
            raise ApiError(400, f"{action} takes no field(s) {', '.join(extra)}")
        cluster = self.cluster(who, request)
        stored = await read_stored(cluster)
        if stored.config is None or stored.config.find(rid) is None:
            known = [r.id for r in stored.config.walk()] if stored.config else []
            raise ApiError(404, f"no resource {rid!r} (resources: {', '.join(known) or 'none'})")
        node = body.get("node")
        if node is not None and not isinstance(node, str):
            raise ApiError(400, "node must be a node's name")
        if node is not None:
            await self._known_node(node)
        if action in ("move", "ban") and node is None:
            raise ApiError(400, f'{action} needs {{"node": NAME}}')
        self._facts = None
        if action == "cleanup":
            await request_cleanup(cluster, rid, node)
            where = f"on {node}" if node else "on every node"
            return _json({"message": f"cleanup of {rid} requested {where}"})
        if action == "restart":
            timeout = body.get("timeout", 60.0)
            if (
                isinstance(timeout, bool)
                or not isinstance(timeout, int | float)
                or not 0 < timeout <= MAX_RESTART_WAIT
            ):
                raise ApiError(
                    400, f"timeout must be a number of seconds in (0, {MAX_RESTART_WAIT:g}]"
                )
            said = await restart(cluster, rid, timeout=float(timeout))
            return _json({"message": "; ".join(said), "steps": said})
        edit = {
            "enable": lambda: edits.set_target_role(rid, None),
            "disable": lambda: edits.set_target_role(rid, ResourceRole.STOPPED),
            "move": lambda: edits.move(rid, str(node)),
            "ban": lambda: edits.ban(rid, str(node)),
            "clear": lambda: edits.clear(rid),
        }[action]()
        changed = await change_config(cluster, edit)
        return _json(
            {"message": changed.message, "revision": changed.revision, "changed": changed.changed}
        )

    async def put_config(self, request: web.Request) -> web.Response:
        who = self.authorize(request, Role.WRITE)
        body = await _body(request)
        unknown = sorted(set(body) - {"config", "revision"})
        if unknown or "config" not in body or "revision" not in body:
            raise ApiError(
                400, 'want {"config": YAML text or object, "revision": N} and nothing else'
            )
        revision = body["revision"]
        if isinstance(revision, bool) or not isinstance(revision, int) or revision < 0:
            raise ApiError(400, "revision must be the stored configuration's revision (0: none)")
        raw = body["config"]
        if isinstance(raw, dict):
            text = json.dumps(raw)
        elif isinstance(raw, str):
            text = raw
        else:
            raise ApiError(400, "config must be YAML text or an object")
        try:
            config = parse_cluster_config(text, "request", extra_checks=apply_problems)
        except ConfigError as exc:
            raise ApiError(422, "configuration refused", problems=exc.problems) from None
        cluster = self.cluster(who, request)
        stored = await read_stored(cluster)
        if stored.revision == revision and stored.config == config:
            return _json({"message": "no change", "revision": revision, "changed": False})
        new = await apply_config(
            cluster,
            config,
            expected=revision,
            previous=stored.config if stored.revision == revision else None,
        )
        self._facts = None
        return _json(
            {"message": f"applied: configuration revision {new}", "revision": new, "changed": True}
        )


def _int_param(text: str, name: str, *, minimum: int, maximum: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"{name} must be a whole number, got {text!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        top = f"..{maximum}" if maximum is not None else " or more"
        raise ApiError(400, f"{name} must be {minimum}{top}, got {value}")
    return value


def _list(body: dict[str, Any], name: str) -> list[Any]:
    value = body.get(name, [])
    if not isinstance(value, list):
        raise ApiError(400, f"{name} must be a list")
    return value


def _names(body: dict[str, Any], name: str) -> list[str]:
    value = _list(body, name)
    if not all(isinstance(v, str) for v in value):
        raise ApiError(400, f"{name} must be a list of node names")
    return value


async def _body(request: web.Request, *, empty_ok: bool = False) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        if empty_ok:
            return {}
        raise ApiError(400, "a JSON object is needed in the body")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    return data


Handler = Callable[[Api, web.Request], Awaitable[web.Response]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    credential: str  # none, read, write


ROUTES = (
    Route("GET", "/health", Api.health,
          "200 if this node is an online member, not in standby or maintenance", "none"),
    Route("GET", "/dc", Api.dc, "200 on the DC, 503 elsewhere", "none"),
    Route("GET", "/liveness", Api.liveness, "200 while this agent's cycle runs", "none"),
    Route("GET", "/", Api.dashboard, "the dashboard", "none"),
    Route("GET", "/metrics", Api.metrics, "Prometheus metrics", "read"),
    Route("GET", "/api/v1/openapi.json", Api.openapi, "this description", "none"),
    Route("GET", "/api/v1/status", Api.status, "the whole cluster, as hastack status", "read"),
    Route("GET", "/api/v1/nodes", Api.nodes, "nodes and their states", "read"),
    Route("GET", "/api/v1/resources", Api.resources, "resources, failures, why stopped", "read"),
    Route("GET", "/api/v1/config", Api.get_config,
          "the stored configuration and its revision", "read"),
    Route("GET", "/api/v1/events", Api.get_events,
          "the event history (after=REV, limit=N, kind=K)", "read"),
    Route("GET", "/api/v1/fencing", Api.fencing, "fencing history (node=N)", "read"),
    Route("POST", "/api/v1/simulate", Api.simulate,
          "what-if on the live cluster; changes nothing", "read"),
    Route("POST", "/api/v1/nodes/{node}/{action}", Api.node_action,
          "standby, unstandby, maintenance, unmaintenance", "write"),
    Route("POST", "/api/v1/resources/{resource}/{action}", Api.resource_action,
          "enable, disable, move, ban, clear, cleanup, restart", "write"),
    Route("PUT", "/api/v1/config", Api.put_config,
          "apply a configuration by CAS on its revision", "write"),
)  # fmt: skip


def build_app(api: Api) -> web.Application:
    @web.middleware
    async def errors(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        async with api._turns:
            try:
                return await handler(request)
            except ApiError as exc:
                response = _error(exc.status, str(exc), **exc.extra)
                if exc.status == 401:
                    response.headers["WWW-Authenticate"] = "Bearer"
                return response
            except web.HTTPException as exc:
                reason = {404: f"no such path: {request.path}"}.get(exc.status, exc.reason)
                if exc.status == 405:
                    reason = f"{request.method} is not allowed on {request.path}"
                if exc.status == 413:
                    reason = f"the body is larger than {MAX_BODY} bytes"
                return _error(exc.status, reason)
            except EditRefused as exc:
                return _error(400, str(exc))
            except ConfigChanged as exc:
                return _error(409, str(exc))
            except StoreError as exc:
                return _error(503, f"the store did not answer: {exc}")
            except HastackError as exc:
                return _error(400, str(exc))
            except Exception:
                log.exception("api: internal error on %s %s", request.method, request.path)
                return _error(500, "internal error (logged by the agent)")

    app = web.Application(middlewares=[errors], client_max_size=MAX_BODY)
    for route in ROUTES:
        bound = route.handler.__get__(api)
        app.router.add_route(route.method, route.path, bound)
    return app


async def _cancel_the_rest() -> None:
    """Cancel every other task of this loop and wait for them."""
    rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in rest:
        task.cancel()
    await asyncio.gather(*rest, return_exceptions=True)


class ApiThread:
    """The API's thread, event loop and store client (docs/api.md §1)."""

    def __init__(self, config: AgentConfig, agent: AgentSide) -> None:
        assert config.api is not None
        self.config = config
        self.agent = agent
        # Read here, in the agent's thread: a tokens file or certificate that cannot be read
        # is a configuration error at start (ConfigError), not a thread that dies later.
        # After the start, a bad new version of the tokens file keeps the last good one.
        self.credentials = load_credentials(config.etcd)
        self.tokens = TokenFile(Path(config.api.tokens)) if config.api.tokens else None
        self._thread = threading.Thread(target=self._main, name="api", daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.bound = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout)

    def _main(self) -> None:
        runner = asyncio.Runner()
        self._loop = runner.get_loop()
        try:
            runner.run(self._serve())
        except Exception:
            log.exception("api: stopped by an internal error")
        finally:
            # What is left on this loop (a store call, a channel closing) is cancelled and
            # awaited, but the loop is not closed: gRPC may still deliver the completion of a
            # call it made, from whichever loop reads its events, after all that — on a store
            # that lost its quorum, cancelled calls complete late — and on a closed loop that
            # is an error with a traceback in the agent's log (tests/test_api_cluster.py,
            # twice in one CI run). Left open, it is queued and dropped with the process.
            with contextlib.suppress(Exception):
                runner.run(_cancel_the_rest())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        assert self.config.api is not None
        host, _, port = self.config.api.listen.rpartition(":")
        host = host.strip("[]")
        store = EtcdStore(self.config.etcd.endpoints, STORE_TIMEOUT, credentials=self.credentials)
        async with store:
            api = Api(self.config, self.agent, store, self.credentials, self.tokens)
            health = asyncio.create_task(api.watch_health(), name="store health")
            runner = web.AppRunner(build_app(api), access_log=None, handle_signals=False)
            await runner.setup()
            try:
                while not self._stop.is_set():
                    try:
                        await web.TCPSite(runner, host, int(port), reuse_address=True).start()
                    except OSError as exc:
                        log.error(
                            "api: cannot listen on %s (%s); retrying", self.config.api.listen, exc
                        )
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._stop.wait(), BIND_RETRY)
                        continue
                    log.info("api: listening on http://%s", self.config.api.listen)
                    self.bound.set()
                    await self._stop.wait()
            finally:
                health.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await health
                await runner.cleanup()
