"""Statistics: one report from the control plane's states and every worker's counters.

Counters live where traffic is (each worker process), states where decisions are (the
control plane). The supervisor asks every worker for its counters when a page or a scrape
is requested, adds them up, and adds the last counters of workers that died and were
replaced, so Prometheus counters never go backwards. That is why this is a custom collector
and not prometheus-client's multiprocess mode: the latter needs a shared directory of mmap
files and cannot express gauges such as "server state" that only the control plane knows.
"""

from __future__ import annotations

import html
import time
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hastack.proxy.config import ProxyConfig

__all__ = ["StatsCollector", "add_into", "build_report", "counters_only", "render_html"]

CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "other")


def add_into(total: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    """Sum nested counters: numbers add, lists add element-wise, dicts recurse."""
    for key, value in part.items():
        if isinstance(value, dict):
            add_into(total.setdefault(key, {}), value)
        elif isinstance(value, list):
            have = total.setdefault(key, [0] * len(value))
            for i, v in enumerate(value):
                have[i] += v
        elif isinstance(value, int | float) and not isinstance(value, bool):
            total[key] = total.get(key, 0) + value
    return total


# Values that describe the present, not a count: a stopped process's are not added to totals.
_GAUGES = frozenset({"conns_cur", "queue_cur", "load", "idle", "sessions"})


def counters_only(stats: dict[str, Any]) -> dict[str, Any]:
    """`stats` without its gauges, for the totals kept after a process or plane stopped."""
    return {
        key: counters_only(value) if isinstance(value, dict) else value
        for key, value in stats.items()
        if key not in _GAUGES
    }


def _classes(values: list[int] | None) -> dict[str, int]:
    values = values or [0] * len(CLASSES)
    return dict(zip(CLASSES, values, strict=True))


def build_report(
    config: ProxyConfig,
    servers: list[dict[str, Any]],
    counters: dict[str, Any],
    *,
    started: float,
    workers: int,
) -> dict[str, Any]:
    """The document behind /stats.json, the HTML page and the metrics."""
    frontends = []
    for spec in config.frontends:
        c = counters.get("frontends", {}).get(spec.name, {})
        frontends.append(
            {
                "name": spec.name,
                "mode": spec.mode.value,
                "bind": list(spec.bind),
                "backend": spec.backend,
                "conns_cur": c.get("conns_cur", 0),
                "conns_total": c.get("conns_total", 0),
                "requests": c.get("requests", 0),
                "responses": _classes(c.get("responses")),
                "bytes_in": c.get("bytes_in", 0),
                "bytes_out": c.get("bytes_out", 0),
                "bad_requests": c.get("bad_requests", 0),
                "timeouts": c.get("timeouts", 0),
                "tls": spec.tls is not None,
                "tls_handshakes": c.get("tls_handshakes", 0),
                "tls_failures": c.get("tls_failures", 0),
            }
        )
    backends = []
    for bspec in config.backends:
        c = counters.get("backends", {}).get(bspec.name, {})
        rows = []
        for server in (s for s in servers if s["backend"] == bspec.name):
            sc = c.get("servers", {}).get(server["server"], {})
            rows.append(
                {
                    **server,
                    "cur": sc.get("load", 0),
                    "max": sc.get("max_load", 0),
                    "total": sc.get("total", 0),
                    "idle": sc.get("idle", 0),
                    "bytes_in": sc.get("bytes_in", 0),
                    "bytes_out": sc.get("bytes_out", 0),
                    "conn_errors": sc.get("conn_errors", 0),
                    "resp_errors": sc.get("resp_errors", 0),
                    "retries": sc.get("retries", 0),
                    "redispatches": sc.get("redispatches", 0),
                    "responses": _classes(sc.get("responses")),
                }
            )
        up = sum(1 for r in rows if r["state"] == "up")
        backends.append(
            {
                "name": bspec.name,
                "mode": bspec.mode.value,
                "balance": bspec.balance.value,
                "sticky": bspec.sticky,
                "status": "UP" if up else "DOWN",
                "servers_up": up,
                "queue_cur": c.get("queue_cur", 0),
                "queue_max": c.get("queue_max", 0),
                "queued": c.get("queued", 0),
                "queue_timeouts": c.get("queue_timeouts", 0),
                "no_server": c.get("no_server", 0),
                "servers": rows,
            }
        )
    return {
        "collected_at": time.time(),
        "uptime": time.time() - started,
        "workers": workers,
        "frontends": frontends,
        "backends": backends,
    }


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _ago(then: float, now: float) -> str:
    seconds = max(0, int(now - then))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


_STATE_COLOURS = {"up": "#c0ffc0", "down": "#ffb0b0", "drain": "#b0d0ff", "maint": "#c0c0c0"}

_CSS = """
body{font-family:sans-serif;font-size:13px;margin:1em}
table{border-collapse:collapse;margin-bottom:1.5em}
th,td{border:1px solid #999;padding:2px 6px;text-align:right}
th{background:#20406a;color:#fff} td.l{text-align:left} caption{text-align:left;font-weight:bold}
tr.total td{font-weight:bold;background:#eee}
"""


def render_html(report: dict[str, Any]) -> str:
    """A page like HAProxy's stats: one table per frontend and backend, a row per server."""
    now = report["collected_at"]
    e = html.escape
    out = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<meta http-equiv='refresh' content='5'><title>hastack proxy</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>hastack proxy</h1><p>{report['workers']} worker(s), up "
        f"{_ago(now - report['uptime'], now)}; <a href='/stats.json'>JSON</a> · "
        "<a href='/metrics'>metrics</a></p>",
    ]
    for f in report["frontends"]:
        r = f["responses"]
        out.append(
            f"<table><caption>frontend {e(f['name'])} ({f['mode']}, "
            f"{e(', '.join(f['bind']))}) → {e(f['backend'])}</caption>"
            "<tr><th>cur conns</th><th>total conns</th><th>requests</th><th>2xx</th>"
            "<th>4xx</th><th>5xx</th><th>400 refused</th><th>timeouts</th><th>bytes in</th>"
            "<th>bytes out</th></tr>"
            f"<tr><td>{f['conns_cur']}</td><td>{f['conns_total']}</td><td>{f['requests']}</td>"
            f"<td>{r['2xx']}</td><td>{r['4xx']}</td><td>{r['5xx']}</td>"
            f"<td>{f['bad_requests']}</td><td>{f['timeouts']}</td>"
            f"<td>{_size(f['bytes_in'])}</td><td>{_size(f['bytes_out'])}</td></tr></table>"
        )
        if f["tls"]:
            out.append(f"<p>TLS: {f['tls_handshakes']} handshakes, {f['tls_failures']} failed</p>")
    head = (
        "<tr><th class=l>server</th><th class=l>address</th><th class=l>status</th>"
        "<th class=l>last check</th><th>weight</th><th>role</th><th>cur</th><th>max</th>"
        "<th>total</th><th>bytes in</th><th>bytes out</th><th>conn err</th><th>resp err</th>"
        "<th>retries</th><th>redisp</th><th>5xx</th><th class=l>last change</th></tr>"
    )
    for b in report["backends"]:
        out.append(
            f"<table><caption>backend {e(b['name'])} ({b['mode']}, {b['balance']}"
            f"{', sticky' if b['sticky'] else ''}) — {b['status']}, {b['servers_up']} up, "
            f"queue {b['queue_cur']} (max {b['queue_max']}, timeouts {b['queue_timeouts']})"
            f"</caption>{head}"
        )
        for s in b["servers"]:
            colour = _STATE_COLOURS.get(s["state"], "#fff")
            check = s["check"]
            check_text = (
                f"{'OK' if check['ok'] else 'FAIL'} {check['message']} ({check['duration_ms']} ms)"
                if check
                else "-"
            )
            role = "backup" if s["backup"] else "primary"
            if s["active"]:
                role += " (active)"
            out.append(
                f"<tr style='background:{colour}'><td class=l>{e(s['server'])}</td>"
                f"<td class=l>{e(s['address'])} ({s['source']})</td>"
                f"<td class=l>{e(s['state'].upper())} {e(s['health'])}</td>"
                f"<td class=l>{e(check_text)}</td><td>{s['weight']}</td><td>{role}</td>"
                f"<td>{s['cur']}</td><td>{s['max']}</td><td>{s['total']}</td>"
                f"<td>{_size(s['bytes_in'])}</td><td>{_size(s['bytes_out'])}</td>"
                f"<td>{s['conn_errors']}</td><td>{s['resp_errors']}</td><td>{s['retries']}</td>"
                f"<td>{s['redispatches']}</td><td>{s['responses']['5xx']}</td>"
                f"<td class=l>{_ago(s['last_change'], now)} ago: {e(s['reason'])}</td></tr>"
            )
        out.append("</table>")
    out.append("</body></html>")
    return "".join(out)


class StatsCollector(Collector):
    """Prometheus metrics from the latest report (refreshed before each scrape)."""

    def __init__(self) -> None:
        self.report: dict[str, Any] | None = None

    def collect(self) -> Iterator[Metric]:
        report = self.report
        if report is None:
            return
        yield from _frontend_metrics(report["frontends"])
        yield from _backend_metrics(report["backends"])


def _frontend_metrics(frontends: Iterable[dict[str, Any]]) -> Iterator[Metric]:
    p = "hastack_proxy_frontend_"
    cur = GaugeMetricFamily(
        p + "current_connections", "Open client connections", labels=["frontend"]
    )
    conns = CounterMetricFamily(
        p + "connections", "Client connections accepted", labels=["frontend"]
    )
    reqs = CounterMetricFamily(p + "http_requests", "HTTP requests read", labels=["frontend"])
    resp = CounterMetricFamily(
        p + "http_responses", "HTTP responses by class", labels=["frontend", "code"]
    )
    bytes_in = CounterMetricFamily(p + "bytes_in", "Bytes from clients", labels=["frontend"])
    bytes_out = CounterMetricFamily(p + "bytes_out", "Bytes to clients", labels=["frontend"])
    bad = CounterMetricFamily(p + "bad_requests", "Requests refused with 400", labels=["frontend"])
    timeouts = CounterMetricFamily(p + "timeouts", "Client-side timeouts", labels=["frontend"])
    tls_ok = CounterMetricFamily(
        p + "tls_handshakes", "TLS handshakes completed", labels=["frontend"]
    )
    tls_bad = CounterMetricFamily(
        p + "tls_handshake_failures", "TLS handshakes failed or abandoned", labels=["frontend"]
    )
    for f in frontends:
        name = [f["name"]]
        cur.add_metric(name, f["conns_cur"])
        conns.add_metric(name, f["conns_total"])
        reqs.add_metric(name, f["requests"])
        for code, n in f["responses"].items():
            resp.add_metric([f["name"], code], n)
        bytes_in.add_metric(name, f["bytes_in"])
        bytes_out.add_metric(name, f["bytes_out"])
        bad.add_metric(name, f["bad_requests"])
        timeouts.add_metric(name, f["timeouts"])
        if f["tls"]:
            tls_ok.add_metric(name, f["tls_handshakes"])
            tls_bad.add_metric(name, f["tls_failures"])
    yield from (cur, conns, reqs, resp, bytes_in, bytes_out, bad, timeouts, tls_ok, tls_bad)


def _backend_metrics(backends: Iterable[dict[str, Any]]) -> Iterator[Metric]:
    p = "hastack_proxy_"
    bl = ["backend"]
    sl = ["backend", "server"]
    b_up = GaugeMetricFamily(p + "backend_up", "1 when at least one server is up", labels=bl)
    b_servers = GaugeMetricFamily(p + "backend_active_servers", "Servers up", labels=bl)
    b_queue = GaugeMetricFamily(p + "backend_current_queue", "Requests waiting", labels=bl)
    b_qto = CounterMetricFamily(p + "backend_queue_timeouts", "Queue timeouts (503)", labels=bl)
    b_none = CounterMetricFamily(p + "backend_no_server", "Refused: no server (503)", labels=bl)
    up = GaugeMetricFamily(p + "server_up", "1 when the server takes new traffic", labels=sl)
    state = GaugeMetricFamily(
        p + "server_state", "Server state (1 for the current one)", labels=[*sl, "state"]
    )
    weight = GaugeMetricFamily(p + "server_weight", "Current weight", labels=sl)
    active = GaugeMetricFamily(p + "server_active", "Sticky backend's active server", labels=sl)
    moves = CounterMetricFamily(
        p + "backend_active_changes", "Changes of a sticky backend's active server", labels=bl
    )
    cur = GaugeMetricFamily(p + "server_current_sessions", "In flight now", labels=sl)
    total = CounterMetricFamily(p + "server_sessions", "Requests or sessions sent", labels=sl)
    b_in = CounterMetricFamily(p + "server_bytes_in", "Bytes to the server", labels=sl)
    b_out = CounterMetricFamily(p + "server_bytes_out", "Bytes from the server", labels=sl)
    cerr = CounterMetricFamily(p + "server_connection_errors", "Connect failures", labels=sl)
    rerr = CounterMetricFamily(p + "server_response_errors", "Broken responses", labels=sl)
    retries = CounterMetricFamily(p + "server_retries", "Retried attempts", labels=sl)
    redisp = CounterMetricFamily(p + "server_redispatches", "Redispatched here", labels=sl)
    trans = CounterMetricFamily(p + "server_check_transitions", "Up/down changes", labels=sl)
    check_ok = GaugeMetricFamily(p + "server_check_ok", "Last check succeeded", labels=sl)
    for b in backends:
        bname = b["name"]
        b_up.add_metric([bname], 1 if b["status"] == "UP" else 0)
        b_servers.add_metric([bname], b["servers_up"])
        b_queue.add_metric([bname], b["queue_cur"])
        b_qto.add_metric([bname], b["queue_timeouts"])
        b_none.add_metric([bname], b["no_server"])
        if b["sticky"]:
            moves.add_metric([bname], b.get("active_changes", 0))
        for s in b["servers"]:
            labels = [bname, s["server"]]
            up.add_metric(labels, 1 if s["state"] == "up" else 0)
            for name in ("up", "down", "drain", "maint"):
                state.add_metric([*labels, name], 1 if s["state"] == name else 0)
            weight.add_metric(labels, s["weight"])
            active.add_metric(labels, 1 if s["active"] else 0)
            cur.add_metric(labels, s["cur"])
            total.add_metric(labels, s["total"])
            b_in.add_metric(labels, s["bytes_in"])
            b_out.add_metric(labels, s["bytes_out"])
            cerr.add_metric(labels, s["conn_errors"])
            rerr.add_metric(labels, s["resp_errors"])
            retries.add_metric(labels, s["retries"])
            redisp.add_metric(labels, s["redispatches"])
            trans.add_metric(labels, s["transitions"])
            if s["check"] is not None:
                check_ok.add_metric(labels, 1 if s["check"]["ok"] else 0)
    yield from (b_up, b_servers, b_queue, b_qto, b_none, up, state, weight, active, cur, total)
    yield from (b_in, b_out, cerr, rerr, retries, redisp, trans, check_ok, moves)
