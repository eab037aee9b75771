"""The availability timeline as a PNG, for people: each operation's latency over time (ok in
green, fail in red, unknown in orange, along the bottom), each fault as a labelled vertical
line, and each outage shaded. matplotlib with the Agg backend: no display needed. matplotlib
comes with the `lab` extra (`pip install 'hastack[lab]'`); without it `plot_availability`
raises ImportError, and a scenario run says there is no PNG.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hastack.checkers.availability import FAULTS, outages
from hastack.checkers.history import pair_ops

__all__ = ["plot_availability"]


def plot_availability(
    history: Iterable[Mapping[str, Any]],
    nemesis: Iterable[Mapping[str, Any]],
    path: Path,
    *,
    title: str = "availability",
    start: float | None = None,
    end: float | None = None,
) -> Path:
    import matplotlib  # noqa: PLC0415 - heavy and optional: loaded only to draw

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    ops = pair_ops(history)
    nemesis = list(nemesis)
    times = [o.invoked for o in ops] + [float(e["time"]) for e in nemesis]
    t0 = start if start is not None else min(times, default=0.0)
    t_end = end if end is not None else max((o.completed or o.invoked for o in ops), default=t0)
    fig, ax = plt.subplots(figsize=(11, 4.2), dpi=100)
    for kind, color, marker in (("ok", "tab:green", "."), ("fail", "tab:red", "x"),
                                ("info", "tab:orange", "x")):  # fmt: skip
        xs, ys = [], []
        for o in ops:
            if o.type != kind:
                continue
            done = o.completed if o.completed is not None else t_end
            xs.append(o.invoked - t0)
            ys.append(max(done - o.invoked, 1e-4) * 1000 if kind == "ok" else 0.5)
        if xs:
            ax.scatter(xs, ys, s=10 if kind == "ok" else 24, c=color, marker=marker,
                       label=f"{kind} ({len(xs)})", zorder=3)  # fmt: skip
    for outage in outages(ops, nemesis, t_end):
        a = outage.last_ok_before if outage.last_ok_before is not None else outage.fault_time
        b = outage.first_ok_after if outage.first_ok_after is not None else t_end
        ax.axvspan(a - t0, b - t0, color="tab:red", alpha=0.12, zorder=1)
        secs = f"{b - a:.2f}s" + ("" if outage.first_ok_after is not None else " (no recovery)")
        ax.annotate(secs, xy=((a + b) / 2 - t0, 0.98), xycoords=("data", "axes fraction"),
                    ha="center", va="top", fontsize=9, color="tab:red")  # fmt: skip
    for e in nemesis:
        x = float(e["time"]) - t0
        fault = e.get("f") in FAULTS
        ax.axvline(x, color="black" if fault else "tab:blue", lw=1, ls="-" if fault else "--")
        label = " ".join(str(e[k]) for k in ("f", "host") if e.get(k))
        ax.annotate(label, xy=(x, 0.02), xycoords=("data", "axes fraction"), rotation=90,
                    ha="right", va="bottom", fontsize=8)  # fmt: skip
    ax.set_yscale("log")
    ax.set_xlim(0, max(t_end - t0, 1.0))
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("latency (ms); failures at the bottom")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
