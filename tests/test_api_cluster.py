"""The API on real agents: every surviving node answers within 2 s after the DC's agent is
SIGKILLed and shows the new DC within the lease TTL; the CLI and the API make the same
change; the dashboard in Debian's headless Chromium (Selenium, Debian's chromedriver) shows
the cluster before and after a node is killed, and an action made on it reaches the store."""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import FAST, ClusterFactory
from hastack.lab.local import LocalCluster
from hastack.store import Keys
from hastack.store.config import read_config
from helpers import hastack_cli, wait_until

API_PORT = 7480
# Within the lease TTL: heartbeats stop when the DC's agent dies, the members depose it after
# suspect-after (1 s) and elect another at once; without fencing the bound is TTL + renew.
SUSPECT_AFTER = "1s"


def call(
    lc: LocalCluster,
    node: str,
    path: str,
    *,
    method: str = "GET",
    body: dict[str, Any] | None = None,
    token: str | None = None,
    timeout: float = 2.0,
) -> tuple[int, dict[str, Any]]:
    url = f"{lc.api_url(node)}{path}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def cluster_config(lc: LocalCluster) -> str:
    return yaml.safe_dump(
        {
            # A fenced node stays off (a reboot would bring it back into the test).
            "properties": {
                "heartbeat-interval": "200ms",
                "suspect-after": SUSPECT_AFTER,
                "stonith-action": "off",
            },
            "nodes": [{"node": n} for n in lc.node_names],
            "fencing": {
                "devices": [
                    {
                        "device": "power",
                        "agent": "fence_hastack_local",
                        "params": {"registry": str(lc.power_registry)},
                    }
                ]
            },
            "resources": [
                {
                    "group": "web",
                    "resources": [
                        {
                            "primitive": "marker",
                            "agent": "ocf:heartbeat:Dummy",
                            "ops": [{"name": "monitor", "interval": "2s"}],
                        },
                    ],
                },
                {
                    "clone": "cache-clone",
                    "resource": {"primitive": "cache", "agent": "ocf:heartbeat:Dummy"},
                },
            ],
        }
    )


def start(local_cluster: ClusterFactory) -> LocalCluster:
    lc = local_cluster(3, api_port=API_PORT, api_open_reads=True)
    applied = hastack_cli(lc, "config", "apply", "-", "--yes", stdin=cluster_config(lc))
    assert applied.returncode == 0, applied.stderr

    last: dict[str, object] = {}  # what each node said last: shown if it never settles

    def settled() -> bool:
        for node in lc.node_names:
            try:
                status, data = call(lc, node, "/api/v1/status")
            except urllib.error.URLError as exc:
                last[node] = f"no API yet ({exc})"
                return False  # its agent has not bound the API yet
            last[node] = (status, data.get("dc_node"), data.get("nodes"), data.get("stopped"))
            if status != 200 or data["dc_node"] is None:
                return False
            if not all(n["online"] for n in data["nodes"]) or len(data["nodes"]) != 3:
                return False
            if "marker" in data["stopped"]:
                return False
        return True

    try:
        wait_until(settled, timeout=30, interval=0.2)
    except AssertionError:
        raise AssertionError(f"the cluster did not settle within 30 s; last seen: {last}") from None
    return lc


def stored_config(lc: LocalCluster) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        async with lc.store(2.0) as store:
            found = await read_config(store, Keys(lc.name))
            assert found.config is not None
            return found.config.model_dump(mode="json", by_alias=True)

    return asyncio.run(read())


def test_every_survivor_answers_within_2s_and_shows_the_new_dc_within_the_ttl(
    local_cluster: ClusterFactory,
) -> None:
    lc = start(local_cluster)
    _, before = call(lc, lc.node_names[0], "/api/v1/status")
    old = before["dc_node"]
    survivors = [n for n in lc.node_names if n != old]
    assert call(lc, old, "/dc")[0] == 200
    assert [call(lc, n, "/dc")[0] for n in survivors] == [503, 503]

    killed = time.monotonic()
    assert lc.kill(old, ["agent"])
    seen: dict[str, float] = {}
    slowest = 0.0
    while len(seen) < len(survivors) and time.monotonic() - killed < 3 * FAST.lease_ttl:
        for node in survivors:
            asked = time.monotonic()
            status, data = call(lc, node, "/api/v1/status", timeout=5.0)
            took = time.monotonic() - asked
            slowest = max(slowest, took)
            assert status == 200, data
            assert took < 2.0, f"{node} answered after {took:.2f}s"
            if data["dc_node"] not in (None, old) and node not in seen:
                seen[node] = time.monotonic() - killed
        time.sleep(0.05)
    print(f"\nnew DC seen by {seen} (s after the kill); slowest answer {slowest:.3f}s")
    assert set(seen) == set(survivors), f"no new DC shown within {3 * FAST.lease_ttl}s: {seen}"
    for node, after in seen.items():
        assert after <= FAST.lease_ttl, f"{node} showed the new DC {after:.2f}s after the kill"
    _, now = call(lc, survivors[0], "/api/v1/status")
    new = now["dc_node"]
    assert call(lc, new, "/dc")[0] == 200
    # the history says what happened: the silent DC deposed, a new one elected, old fenced
    kinds_texts = [(e["kind"], e["text"]) for e in call(lc, new, "/api/v1/events")[1]["events"]]
    assert any(k == "deposed" and old in t for k, t in kinds_texts), kinds_texts
    # ...and once by each survivor that deposed it: an agent asked again before its view
    # showed the key gone found its own mark and recorded the deposition again (19 times).
    events = call(lc, new, "/api/v1/events")[1]["events"]
    by = [e["node"] for e in events if e["kind"] == "deposed" and e["data"].get("dc") == old]
    assert len(by) == len(set(by)), f"a deposition recorded more than once: {by}"
    assert any(k == "election" and t.startswith(f"{new} became DC") for k, t in kinds_texts)
    wait_until(
        lambda: any(
            e["kind"] == "fencing" and e["data"]["target"] == old
            for e in call(lc, new, "/api/v1/events?kind=fencing")[1]["events"]
        ),
        timeout=15,
    )
    metrics = urllib.request.urlopen(f"{lc.api_url(new)}/metrics", timeout=2).read().decode()
    fencing = [line for line in metrics.splitlines() if line.startswith("hastack_fencing")]
    events = call(lc, new, "/api/v1/events?kind=fencing")[1]["events"]
    why = f"metrics {fencing}; fencing events {[(e.get('node'), e['text']) for e in events]}"
    assert "hastack_is_dc 1.0" in metrics
    assert 'hastack_fencing_operations_total{result="success"} 1.0' in fencing, why


def test_the_cli_and_the_api_make_the_same_change(local_cluster: ClusterFactory) -> None:
    lc = start(local_cluster)
    token = lc.api_token
    assert token is not None
    node = lc.node_names[1]
    base = stored_config(lc)
    for cli, path, body in [
        (["node", "standby", node], f"/api/v1/nodes/{node}/standby", {}),
        (["resource", "ban", "web", node], "/api/v1/resources/web/ban", {"node": node}),
        (["resource", "disable", "cache-clone"], "/api/v1/resources/cache-clone/disable", {}),
    ]:
        done = hastack_cli(lc, *cli)
        assert done.returncode == 0, done.stderr
        by_cli = stored_config(lc)
        assert by_cli != base
        restored = hastack_cli(lc, "config", "apply", "-", "--yes", stdin=yaml.safe_dump(base))
        assert restored.returncode == 0, restored.stderr
        status, answer = call(lc, lc.node_names[0], path, method="POST", body=body, token=token)
        assert status == 200, answer
        assert stored_config(lc) == by_cli
        hastack_cli(lc, "config", "apply", "-", "--yes", stdin=yaml.safe_dump(base))
    # a write without a credential changes nothing, and the agent keeps running
    status, answer = call(lc, node, f"/api/v1/nodes/{node}/standby", method="POST", body={})
    assert status == 401
    assert stored_config(lc) == base
    assert lc.running()[node] == {"etcd": True, "agent": True}


# ---- the dashboard in a real browser ---------------------------------------------------------


def browser(profile: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    # Debian's chromium and chromedriver, started as the machine allows: headless, no sandbox
    # (root), and nothing that reaches for the internet.
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--window-size=1400,1100",
    ):  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def test_the_dashboard_in_chromium_before_and_after_a_node_is_killed(
    local_cluster: ClusterFactory, tmp_path: Path
) -> None:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    lc = start(local_cluster)
    token = lc.api_token
    assert token is not None
    _, status = call(lc, lc.node_names[0], "/api/v1/status")
    dc = status["dc_node"]
    # The page is served by a node that is not the DC; the DC is the one killed.
    served_by = next(n for n in lc.node_names if n != dc)
    other = next(n for n in lc.node_names if n not in (dc, served_by))
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium must not look for drivers online
    driver = browser(Path(tempfile.mkdtemp(dir=tmp_path, prefix="chromium-")))
    # The page re-renders its tables on every refresh: an element found a moment ago can be
    # gone (stale) by the time it is read, so every read is inside a wait that tries again.
    wait = WebDriverWait(
        driver,
        20,
        poll_frequency=0.2,
        ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
    )
    shot = tmp_path / "dashboard.png"
    try:
        driver.get(f"{lc.api_url(served_by)}/")
        wait.until(lambda d: d.find_element(By.ID, "dc").text == dc)

        def rows(d: Any) -> list[tuple[str | None, str]]:
            return [
                (r.get_attribute("data-node"), r.get_attribute("class") or "")
                for r in d.find_elements(By.CSS_SELECTOR, "#nodes tr")
            ]

        wait.until(lambda d: [node for node, _ in rows(d)] == lc.node_names)
        wait.until(lambda d: all("is-online" in cls for _, cls in rows(d)))
        wait.until(lambda d: d.find_element(By.ID, "quorum").text.startswith("yes (3/3)"))
        wait.until(lambda d: d.find_element(By.ID, "answered").text == served_by)
        wait.until(lambda d: "marker" in d.find_element(By.ID, "resource-lines").text)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#events tr[data-kind=election]"))

        lc.kill(dc)  # agent and etcd member: the node is gone
        wait.until(lambda d: d.find_element(By.ID, "dc").text not in ("", "?", "none", dc))
        wait.until(
            lambda d: (
                "is-offline"
                in (
                    d.find_element(By.CSS_SELECTOR, f"#nodes tr[data-node='{dc}']").get_attribute(
                        "class"
                    )
                    or ""
                )
            )
        )
        wait.until(lambda d: d.find_element(By.ID, "quorum").text.startswith("yes (2/3)"))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#events tr[data-kind=deposed]"))

        # one action: put the other survivor in standby through its button
        box = driver.find_element(By.ID, "token")
        box.send_keys(token)
        driver.execute_script("arguments[0].dispatchEvent(new Event('change'))", box)
        standby = f"button[data-node='{other}'][data-action='standby']"
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, standby).click() is None)
        wait.until(expected_conditions.alert_is_present())
        driver.switch_to.alert.accept()
        wait.until(lambda d: d.find_element(By.ID, "said").text.startswith("done:"))
        spec = next(n for n in stored_config(lc)["nodes"] if n["node"] == other)
        assert spec["standby"] is True
        wait.until(
            lambda d: d.find_elements(By.CSS_SELECTOR, f"#nodes tr[data-node='{other}'] .standby")
        )
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#events tr[data-kind=config]"))
        driver.save_screenshot(str(shot))
        print(f"\nscreenshot: {shot}")
        assert shot.stat().st_size > 10_000
    except Exception:
        failed = tmp_path / "dashboard-failed.png"
        driver.save_screenshot(str(failed))
        print(f"\nscreenshot at the failure: {failed}; banner: {banner_text(driver)!r}")
        raise
    finally:
        driver.quit()


def banner_text(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, "banner").text)


@pytest.fixture(autouse=True)
def _no_proxy_for_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    # urllib honours http_proxy; the API is on loopback.
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
