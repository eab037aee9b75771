"""The polling checker on made-up polls: gaps outside the excused intervals fail, inside pass;
duplicates are counted."""

from __future__ import annotations

import os
import urllib.parse

import pytest

from hastack.checkers import check_polls
from hastack.executor.agents.service import service_env
from hastack.lab.net.etcdenv import local_etcd
from hastack.model.operations import OpRequest

R = ["a", "b", "c"]


def polls(
    intervals: range, owners: dict[str, str], skip: set[tuple[int, str]] = frozenset()
) -> list[dict[str, object]]:  # type: ignore[assignment]
    return [
        {"poll": r, "node": n, "time": k * 5.0 + 0.5}
        for k in intervals
        for r, n in owners.items()
        if (k, r) not in skip
    ]


def test_every_interval_polled_passes() -> None:
    result = check_polls(polls(range(10), {"a": "n1", "b": "n2", "c": "n3"}), [], resources=R,
                         interval=5.0, start=0.0, end=50.0, excused=0)  # fmt: skip
    assert result.valid is True
    assert result.details["missed_polls"] == 0


def test_gaps_are_excused_only_right_after_a_crash() -> None:
    owners = {"a": "n1", "b": "n2", "c": "n3"}
    crash = [{"f": "crash", "host": "n3", "time": 21.0}]
    lost = {(4, "c"), (5, "c"), (6, "c")}
    history = [
        *polls(range(10), owners, lost),
        {"poll": "c", "node": "n1", "time": 5.0 * 4 + 0.7},  # taken over within interval 4
        {"poll": "a", "node": "n2", "time": 5.0 * 4 + 0.8},  # a duplicate: counted, allowed
    ]
    ok = check_polls(history, crash, resources=R, interval=5.0, start=0.0, end=50.0, excused=3)
    assert ok.valid is True
    assert ok.details["missed_polls"] == 2  # interval 4 was polled once by n1
    assert ok.details["duplicate_polls"] == 1
    tight = check_polls(history, crash, resources=R, interval=5.0, start=0.0, end=50.0, excused=1)
    assert tight.valid is False
    assert "interval 6: 1 unpolled, e.g. c" in tight.summary


def test_nothing_polled_is_unknown() -> None:
    assert (
        check_polls([], [], resources=R, interval=5.0, start=0.0, end=50.0, excused=0).valid is None
    )


def test_lab_services_reach_etcd_on_their_host_with_the_nodes_certificates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a service sees of the store (hastack:service's environment) is what the pollers
    and engines dial: their host's member, over mutual TLS when the node has certificates."""
    cluster = {
        "node": "n2",
        "address": "10.0.0.2",
        "etcd-endpoints": "https://10.0.0.1:2379,https://10.0.0.2:2379",
        "etcd-ca": "/pki/ca.crt",
        "etcd-cert": "/pki/n2.crt",
        "etcd-key": "/pki/n2.key",
    }
    request = OpRequest("poller:1", "poller", "start", {}, {}, 5.0, cluster=cluster)
    env = service_env(request)
    for name in ("HASTACK_ETCD_ENDPOINTS", "HASTACK_NODE_ADDRESS", "HASTACK_ETCD_CA",
                 "HASTACK_ETCD_CERT", "HASTACK_ETCD_KEY"):  # fmt: skip
        monkeypatch.setenv(name, env[name])
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    etcd = local_etcd()
    assert "REQUESTS_CA_BUNDLE" not in os.environ, "it would override the cluster's CA"
    assert (etcd.host, etcd.port, etcd.secure) == ("10.0.0.2", 2379, True)
    url = urllib.parse.urlsplit(etcd.tooz_url(timeout=5))
    assert url.scheme == "etcd3+https"
    assert urllib.parse.parse_qs(url.query)["cert_key"] == ["/pki/n2.key"]

    for name in ("HASTACK_ETCD_CA", "HASTACK_ETCD_CERT", "HASTACK_ETCD_KEY"):
        monkeypatch.delenv(name)
    assert local_etcd().tooz_url(timeout=5).startswith("etcd3+http://10.0.0.2:2379?")
