"""How a lab service (the tooz pollers, the Heat-style engines) reaches the cluster's etcd,
from what a `hastack:service` sees in its environment (docs/assign.md): the endpoints
(`HASTACK_ETCD_ENDPOINTS`), this host's address (`HASTACK_NODE_ADDRESS`, to pick the
member on this host), and the node's certificate files for etcd's mutual TLS
(`HASTACK_ETCD_CA`, `HASTACK_ETCD_CERT`, `HASTACK_ETCD_KEY`; absent on a plaintext store).
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LocalEtcd:
    host: str
    port: int
    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    @property
    def secure(self) -> bool:
        return self.ca is not None

    def tooz_url(self, **options: object) -> str:
        """A URL for tooz's etcd3gw driver (`etcd3+http` or `etcd3+https` with the files)."""
        query = {k: str(v) for k, v in options.items()}
        if self.secure:
            query |= {"ca_cert": self.ca or "", "cert_cert": self.cert or "",
                      "cert_key": self.key or ""}  # fmt: skip
        scheme = "etcd3+https" if self.secure else "etcd3+http"
        return f"{scheme}://{self.host}:{self.port}?{urllib.parse.urlencode(query)}"

    def gateway(self, timeout: float) -> Any:
        """An etcd3gw client (etcd's JSON gateway) on this member."""
        from etcd3gw import client  # noqa: PLC0415 - the lab extra

        return client(
            host=self.host,
            port=self.port,
            protocol="https" if self.secure else "http",
            ca_cert=self.ca,
            cert_cert=self.cert,
            cert_key=self.key,
            timeout=timeout,
        )


def local_etcd() -> LocalEtcd:
    """The etcd member on this host (a controller runs one on its first address), else the
    first endpoint; SystemExit when the environment names none."""
    endpoints = [e for e in os.environ.get("HASTACK_ETCD_ENDPOINTS", "").split(",") if e]
    if not endpoints:
        raise SystemExit("no etcd endpoints in HASTACK_ETCD_ENDPOINTS")
    mine = os.environ.get("HASTACK_NODE_ADDRESS", "")
    parsed = [urllib.parse.urlsplit(e if "//" in e else f"//{e}") for e in endpoints]
    chosen = next((p for p in parsed if p.hostname == mine), parsed[0])
    files = {k: os.environ.get(f"HASTACK_ETCD_{k.upper()}") or None for k in ("ca", "cert", "key")}
    if files["ca"] is not None:
        # requests (under etcd3gw) lets these override the session's CA: the cluster's own
        # CA would be ignored and its certificates refused. This process talks to etcd only.
        for name in _CA_OVERRIDES:
            os.environ.pop(name, None)
    return LocalEtcd(chosen.hostname or "", chosen.port or 2379, **files)


_CA_OVERRIDES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
