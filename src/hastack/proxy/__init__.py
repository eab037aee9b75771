"""The proxy: HAProxy's role in hastack, fed by cluster state.

    config      the configuration model (frontends, backends, checks), pure
    balance     roundrobin / leastconn / source / first, pure
    health      rise/fall counting and check intervals, pure
    view        what the control plane tells the data plane; backup and sticky rules, pure
    follow      cluster state -> a backend's servers, pure
    sources     BackendSource: static, pushed, or the cluster (etcd read + watch)
    checks      tcp / http / mysql / galera probes
    control     the control plane: one owner of every server's state
    runtime     the data plane's live objects: slots, queues, pools, timers
    http, tcp   the two modes
    tls         certificates by SNI, read again on change; TLS to servers
    listeners   the listening sockets, kept by the supervisor across reloads
    dataplane   the data plane of one process: accept, proxy, drain
    workers     several data-plane processes under a supervisor (SO_REUSEPORT)
    stats       counters summed across workers; HTML, JSON, Prometheus
    admin       the admin endpoint (stats, metrics, run-time commands)
    server      Proxy and serve(): everything together; reload as generations
    cli         `hastack proxy ...`
    native      the hot path (balance, runtime, http, tcp) compiled with mypyc, never stale

See docs/proxy.md.
"""

# Before any hot module is imported: a compiled build older than its sources must not run.
from hastack.proxy import native as _native

_native.guard()

from hastack.proxy.config import ProxyConfig, parse_config  # noqa: E402
from hastack.proxy.server import Proxy, serve  # noqa: E402
from hastack.proxy.sources import (  # noqa: E402
    BackendSource,
    ClusterSource,
    PushSource,
    StaticSource,
)
from hastack.proxy.view import Endpoint  # noqa: E402

__all__ = [
    "BackendSource",
    "ClusterSource",
    "Endpoint",
    "Proxy",
    "ProxyConfig",
    "PushSource",
    "StaticSource",
    "parse_config",
    "serve",
]
