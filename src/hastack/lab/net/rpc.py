"""OpenStack's own messaging client in the lab: oslo.messaging RPC and notifications.

`python -m hastack.lab.net.rpc server --url TRANSPORT_URL --consumed DIR` is an RPC server
(topic `hastack-rpc`, method `echo`) and a notification listener (topic `hastack-notify`, no
pool: the servers consume the notifier's own queue, `hastack-notify.info`, each notification
once by some server), as an OpenStack service would run them; it appends every notification
it consumes to `DIR/<host>.jsonl`. The lab runs it as a `hastack:service` clone. The `rpc`
workload (hastack.lab.workloads) is the client side: `call()`s at a fixed rate and
notifications, through `Client` below.

Settings come from `options` (oslo.messaging's `[oslo_messaging_rabbit]` names): the
defaults are oslo.messaging's own, and the README says which ones matter
(`RECOMMENDED` below) and why.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import socket
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import oslo_messaging
from oslo_config import cfg
from oslo_messaging._drivers import impl_rabbit

__all__ = ["RECOMMENDED", "Client", "NotificationDropped", "main"]

TOPIC = "hastack-rpc"
NOTIFY_TOPIC = "hastack-notify"

# What the README recommends for a cluster that must survive a controller's death, with why:
RECOMMENDED: dict[str, Any] = {
    # Quorum queues: RPC topic and notification queues survive a broker's death with their
    # messages (classic queues on the dead node are gone until it returns).
    "rabbit_quorum_queue": True,
    # The reply and fanout queues too (oslo.messaging >= 14): as classic transient queues
    # they live on one broker and die with it. R5 of 2026-12-07 12:51: the RPC servers'
    # fanout queues were on the crashed broker, their re-subscription met `not_found` while
    # the survivor deleted them, and oslo.messaging consumed nothing more — calls never came
    # back. With it, 13:09: 353 of 353 calls ok, back 7.8 s after the crash.
    "rabbit_transient_quorum_queue": True,
    # A dead broker behind a silent network is only noticed by missing heartbeats: 60 s by
    # default. oslo.messaging also sets the socket's read timeout and TCP_USER_TIMEOUT to the
    # threshold, so a call's publish (confirmed) fails after it, and the reply listener,
    # which only sends heartbeats (every threshold / rate), fails at most threshold / rate
    # later. 10 s kept calls away 18.3 s when the client's broker lost power (R5 asks 15 s);
    # 5 s bounds it near 5-7 s plus the reconnect. py-amqp gives up on a broker only after
    # 2 x threshold without a byte from it (the broker sends a heartbeat every threshold / 2),
    # so a slow client is not dropped before 10 s of silence.
    "heartbeat_timeout_threshold": 5,
    "heartbeat_rate": 3,
    # Reconnect at once and keep trying every second, not with a doubling backoff up to 30 s.
    "rabbit_retry_interval": 1,
    "rabbit_retry_backoff": 0,
    "rabbit_interval_max": 1,
    "kombu_reconnect_delay": 0.5,
}


def _conf(url: str, options: Mapping[str, Any]) -> cfg.ConfigOpts:
    # The global CONF, as every OpenStack service uses: oslo.messaging 18 registers some of
    # its options there only (tracing, metrics), yet reads them from the conf it is given, so
    # a private ConfigOpts fails every call with NoSuchOptError.
    conf = cfg.CONF
    if not _parsed:
        conf([], project="hastack-lab-rpc", default_config_files=[], default_config_dirs=[])
        _parsed.append(True)
    oslo_messaging.set_transport_defaults("hastack")
    transport = oslo_messaging.get_rpc_transport(conf, url=url)  # registers the options
    transport.cleanup()
    for name, value in options.items():
        conf.set_override(name, value, group="oslo_messaging_rabbit")
    return conf


_parsed: list[bool] = []  # the global CONF is parsed once per process


class _Endpoint:
    target = oslo_messaging.Target(namespace=None, version="1.0")

    def echo(self, ctxt: Any, value: int) -> dict[str, Any]:
        return {"value": value, "host": socket.gethostname()}


class _Notifications:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()

    def info(
        self, ctxt: Any, publisher_id: str, event_type: str, payload: Any, metadata: Any
    ) -> Any:
        with self._lock, self._path.open("a") as f:
            f.write(json.dumps({"value": payload.get("value"), "time": time.time()}) + "\n")
        return oslo_messaging.NotificationResult.HANDLED


def serve(url: str, consumed: Path, options: Mapping[str, Any], duration: float) -> None:
    conf = _conf(url, options)
    transport = oslo_messaging.get_rpc_transport(conf, url=url)
    server = oslo_messaging.get_rpc_server(
        transport,
        oslo_messaging.Target(topic=TOPIC, server=socket.gethostname()),
        [_Endpoint()],
        executor="threading",
    )
    notify_transport = oslo_messaging.get_notification_transport(conf, url=url)
    consumed.mkdir(parents=True, exist_ok=True)
    listener = oslo_messaging.get_notification_listener(
        notify_transport,
        [oslo_messaging.Target(topic=NOTIFY_TOPIC)],
        [_Notifications(consumed / f"{socket.gethostname()}.jsonl")],
        executor="threading",
        # No pool: a pool's listeners consume a queue of the pool's name, bound only once
        # they start, while the notifier declares (and publishes into) `<topic>.<priority>`.
        # A notification sent before the pool's queue was bound went to the notifier's
        # queue alone, which nothing consumed: R5 of 2026-12-07 12:34 lost its first one
        # that way (confirmed 0.17 s after the load began). Without a pool the listeners
        # consume the notifier's queue, where early notifications wait.
    )
    server.start()
    listener.start()
    print(f"rpc server {socket.gethostname()} on {url}", flush=True)
    time.sleep(duration)  # bounded: the lab's processes never outlive their purpose


class _HostsInOrder:
    """oslo.messaging's rabbit driver's `random`, with `shuffle` doing nothing."""

    def shuffle(self, hosts: list[Any]) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(random, name)


class NotificationDropped(RuntimeError):
    """oslo.messaging's notifier logged that it could not send (and returned as if sent)."""


class _DroppedNotifications(logging.Handler):
    """oslo.messaging's Notifier never raises: its drivers catch a failed send and log it
    ("Could not send notification to …", "Problem … attempting to send to notification
    system"), then return as if it had been sent — an OpenStack service loses that
    notification. The lab must not count it as confirmed (the 2026-12-07 09:18 soak counted 374
    such sends, made while no broker accepted connections, as confirmed and then lost). The
    log record is emitted in the sending thread: a thread-local note of it is the send's
    outcome."""

    LOGGERS = ("oslo_messaging.notify.messaging", "oslo_messaging.notify.notifier")

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.local = threading.local()
        for name in self.LOGGERS:
            logging.getLogger(name).addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        cause = record.exc_info[1] if record.exc_info else None
        self.local.dropped = f"{type(cause).__name__}: {cause}" if cause else "send failed"

    def reset(self) -> None:
        self.local.dropped = None

    def dropped(self) -> str | None:
        return getattr(self.local, "dropped", None)


class Client:
    """One RPC client and notifier (blocking, like OpenStack services' own).

    oslo.messaging shuffles the transport_url's hosts for every connection it opens, so a
    client's connections land on random brokers and "the client's broker" is none in
    particular (the bench's first run crashed n3 with the client elsewhere: no outage to
    measure). The lab's client keeps the order given (its rabbit driver's `shuffle` made a
    no-op in this process): every connection goes to the first broker listed, then fails
    over round-robin (`kombu_failover_strategy`'s default) — which broker, nothing else."""

    def __init__(self, url: str, options: Mapping[str, Any], timeout: float) -> None:
        impl_rabbit.random = _HostsInOrder()
        conf = _conf(url, options)
        self._transport = oslo_messaging.get_rpc_transport(conf, url=url)
        self._client = oslo_messaging.get_rpc_client(
            self._transport, oslo_messaging.Target(topic=TOPIC), timeout=timeout
        )
        self._notify_transport = oslo_messaging.get_notification_transport(conf, url=url)
        self._notifier = oslo_messaging.Notifier(
            self._notify_transport, publisher_id="hastack-lab", driver="messaging",
            topics=[NOTIFY_TOPIC],
        )  # fmt: skip
        self._dropped = _DroppedNotifications()

    def call(self, value: int) -> dict[str, Any]:
        result: dict[str, Any] = self._client.call({}, "echo", value=value)
        return result

    def notify(self, value: int) -> None:
        """Send one notification; NotificationDropped when the notifier dropped it. The rabbit
        driver publishes with publisher confirms (kombu's confirm_publish): a send that
        neither raised nor logged a failure was confirmed by the broker."""
        self._dropped.reset()
        self._notifier.info({}, "hastack.lab", {"value": value})
        dropped = self._dropped.dropped()
        if dropped is not None:
            raise NotificationDropped(f"the notifier dropped it: {dropped}")

    def close(self) -> None:
        self._transport.cleanup()
        self._notify_transport.cleanup()


def consumed_values(directory: Path) -> list[int]:
    out: list[int] = []
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                out.append(int(json.loads(line)["value"]))
            except (ValueError, KeyError, TypeError):
                continue
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hastack.lab.net.rpc")
    sub = parser.add_subparsers(dest="command", required=True)
    server = sub.add_parser("server")
    server.add_argument("--url", required=True, help="transport_url: rabbit://u:p@h1:5672,...")
    server.add_argument("--consumed", required=True, help="directory for consumed notifications")
    server.add_argument("--options", default="{}", help="[oslo_messaging_rabbit] as JSON")
    server.add_argument("--recommended", action="store_true", help="the README's settings")
    server.add_argument("--duration", type=float, default=3600.0)
    args = parser.parse_args(argv)
    options = {**(RECOMMENDED if args.recommended else {}), **json.loads(args.options)}
    serve(args.url, Path(args.consumed), options, min(args.duration, 3600.0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
