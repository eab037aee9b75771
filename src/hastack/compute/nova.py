"""The few Nova API calls evacuation needs, through python-novaclient (microversion 2.53:
services by id). Blocking: the evacuator runs each call in a thread.

Errors, drawn once:

    NovaError            a call Nova answered with an error (4xx, 5xx): definite for that call
    NovaUnavailable      Nova could not be reached or did not answer in time: nothing is known
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from keystoneauth1 import exceptions as ks_exceptions
from keystoneauth1 import noauth, session, token_endpoint
from novaclient import client as nova_client
from novaclient import exceptions as nova_exceptions

from hastack.compute.evacuation import Server, is_evacuable

__all__ = ["MICROVERSION", "NovaApi", "NovaError", "NovaUnavailable"]

MICROVERSION = "2.53"


class NovaError(Exception):
    """Nova answered, with an error."""


class NovaUnavailable(Exception):
    """Nova could not be reached, or did not answer in time."""


_UNREACHABLE = (
    ks_exceptions.ConnectFailure,
    ks_exceptions.ConnectTimeout,
    ks_exceptions.DiscoveryFailure,
    ks_exceptions.RetriableConnectionFailure,
    ks_exceptions.UnknownConnectionError,
    ks_exceptions.SSLError,
)


class NovaApi:
    def __init__(
        self, url: str, *, token: str | None = None, timeout: float = 5.0, tag: str = "evacuable"
    ) -> None:
        auth = token_endpoint.Token(url, token) if token else noauth.NoAuth(endpoint=url)
        self._session = session.Session(auth=auth, timeout=timeout)
        self._nova = nova_client.Client(MICROVERSION, session=self._session)
        self._tag = tag

    def _call(self, what: str, fn: object, *args: object, **kwargs: object) -> object:
        try:
            return fn(*args, **kwargs)  # type: ignore[operator]
        except _UNREACHABLE as exc:
            raise NovaUnavailable(f"{what}: {exc}") from None
        except ks_exceptions.ClientException as exc:
            raise NovaUnavailable(f"{what}: {exc}") from None
        except nova_exceptions.ClientException as exc:
            raise NovaError(f"{what}: {exc}") from None

    def _service(self, host: str) -> Any:  # novaclient's Service: untyped
        found = self._call(
            f"services of {host}", self._nova.services.list, host=host, binary="nova-compute"
        )
        services = list(found)  # type: ignore[call-overload]
        if not services:
            raise NovaError(f"no nova-compute service on {host}")
        return services[0]

    def _service_id(self, host: str) -> str:
        return str(self._service(host).id)

    def disable_host(self, host: str) -> str:
        """Force the host's compute service down (Nova refuses to evacuate from a host it
        believes up) and disable it (nothing is scheduled there until it is enabled). Returns
        the service's updated_at as Nova answered the disable ("" if it said none)."""
        sid = self._service_id(host)
        self._call(f"force down {host}", self._nova.services.force_down, sid, True)
        service = self._call(
            f"disable {host}",
            self._nova.services.disable_log_reason,
            sid,
            "fenced by hastack; evacuating",
        )
        return str(getattr(service, "updated_at", "") or "")

    def service_updated(self, host: str) -> str:
        """The host's compute service's updated_at now ("" if Nova gives none): it moves
        when the service reports."""
        return str(getattr(self._service(host), "updated_at", "") or "")

    def enable_host(self, host: str) -> None:
        sid = self._service_id(host)
        self._call(f"enable {host}", self._nova.services.enable, sid)
        self._call(f"un-force-down {host}", self._nova.services.force_down, sid, False)

    def servers_on(self, host: str) -> list[Server]:
        found = self._call(
            f"servers on {host}",
            self._nova.servers.list,
            search_opts={"host": host, "all_tenants": 1},
        )
        out = []
        for s in found:  # type: ignore[attr-defined]
            metadata: Mapping[str, object] = getattr(s, "metadata", {}) or {}
            flavor = getattr(s, "flavor", {}) or {}
            specs: Mapping[str, object] = (
                flavor.get("extra_specs", {}) if isinstance(flavor, dict) else {}
            )
            out.append(
                Server(
                    id=str(s.id),
                    name=str(getattr(s, "name", s.id)),
                    host=host,
                    status=str(getattr(s, "status", "")),
                    evacuable=is_evacuable(metadata, specs, self._tag),
                )
            )
        return out

    def evacuate(self, server_id: str) -> None:
        """Ask Nova to rebuild the instance elsewhere (its scheduler picks the host)."""
        self._call(f"evacuate {server_id}", self._nova.servers.evacuate, server_id)
