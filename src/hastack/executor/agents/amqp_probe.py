"""An AMQP 0-9-1 handshake with a deadline: the monitor's proof that a broker serves.

A broker that accepts TCP connections but hangs (a stopped VM, an overloaded node, a wedged
connection acceptor) still has its port open: only a conversation shows it. This one opens a
connection (PLAIN login), opens a channel and closes both, and must finish within the
deadline. Written out here (a few frames) rather than pulled from an AMQP library, so the
product needs none (`aio-pika` belongs to the lab).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct

__all__ = ["ProbeFailed", "probe"]

_FRAME_METHOD = 1
_FRAME_END = b"\xce"
_PROTOCOL = b"AMQP\x00\x00\x09\x01"


class ProbeFailed(Exception):
    """The broker did not complete the handshake; the message says where it stopped."""


def _shortstr(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!B", len(data)) + data


def _longstr(data: bytes) -> bytes:
    return struct.pack("!I", len(data)) + data


def _method(channel: int, class_id: int, method_id: int, args: bytes) -> bytes:
    payload = struct.pack("!HH", class_id, method_id) + args
    return struct.pack("!BHI", _FRAME_METHOD, channel, len(payload)) + payload + _FRAME_END


async def _read_method(reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
    """The next method frame (heartbeats and other frames skipped): class, method, args."""
    while True:
        header = await reader.readexactly(7)
        kind, _channel, size = struct.unpack("!BHI", header)
        payload = await reader.readexactly(size)
        if await reader.readexactly(1) != _FRAME_END:
            raise ProbeFailed("malformed frame from the broker")
        if kind == _FRAME_METHOD:
            class_id, method_id = struct.unpack("!HH", payload[:4])
            return class_id, method_id, payload[4:]


def _close_reason(args: bytes) -> str:
    code = struct.unpack("!H", args[:2])[0]
    length = args[2]
    return f"{code} {args[3 : 3 + length].decode(errors='replace')}"


async def _expect(reader: asyncio.StreamReader, class_id: int, method_id: int, step: str) -> bytes:
    got_class, got_method, args = await _read_method(reader)
    if (got_class, got_method) == (10, 50):  # connection.close: refused
        raise ProbeFailed(f"the broker closed the connection at {step}: {_close_reason(args)}")
    if (got_class, got_method) != (class_id, method_id):
        raise ProbeFailed(f"unexpected method {got_class}.{got_method} at {step}")
    return args


async def _handshake(host: str, port: int, user: str, password: str, vhost: str) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(_PROTOCOL)
        await _expect(reader, 10, 10, "connection.start")
        response = b"\x00" + user.encode() + b"\x00" + password.encode()
        writer.write(
            _method(
                0,
                10,
                11,
                struct.pack("!I", 0) + _shortstr("PLAIN") + _longstr(response) + _shortstr("en_US"),
            )
        )
        tune = await _expect(reader, 10, 30, "connection.tune")
        channel_max, frame_max, _heartbeat = struct.unpack("!HIH", tune[:8])
        writer.write(_method(0, 10, 31, struct.pack("!HIH", channel_max, frame_max, 0)))
        writer.write(_method(0, 10, 40, _shortstr(vhost) + _shortstr("") + b"\x00"))
        await _expect(reader, 10, 41, "connection.open")
        writer.write(_method(1, 20, 10, _shortstr("")))
        await _expect(reader, 20, 11, "channel.open")
        writer.write(_method(0, 10, 50, struct.pack("!H", 200) + _shortstr("") + b"\0\0\0\0"))
        await _expect(reader, 10, 51, "connection.close")
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def probe(
    host: str, port: int, *, user: str, password: str, vhost: str = "/", timeout: float = 5.0
) -> None:
    """Raise ProbeFailed unless the broker completes a handshake within `timeout` seconds."""
    try:
        async with asyncio.timeout(timeout):
            await _handshake(host, port, user, password, vhost)
    except TimeoutError:
        raise ProbeFailed(f"did not finish the AMQP handshake within {timeout:g}s") from None
    except asyncio.IncompleteReadError:
        raise ProbeFailed("the broker closed the connection during the handshake") from None
    except OSError as exc:
        raise ProbeFailed(f"cannot connect to {host}:{port} ({exc.strerror or exc})") from None
