"""A small OpenAPI 3 description of the API, made from its route table (docs/api.md §2)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Protocol

from hastack import __version__

__all__ = ["openapi"]


class RouteLike(Protocol):
    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def summary(self) -> str: ...
    @property
    def credential(self) -> str: ...


_ERRORS = {
    "400": "bad input: the reason and where",
    "401": "no credential, or an unknown one",
    "403": "a read-only credential on a write",
    "404": "unknown path, node or resource",
    "409": "the configuration changed since the given revision",
    "422": "a configuration with problems (each with its path)",
    "503": "the store cannot be reached",
}


def openapi(routes: Iterable[RouteLike]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation: dict[str, Any] = {
            "summary": route.summary,
            "responses": {"200": {"description": "OK (JSON)"}, **{
                k: {"description": v} for k, v in _ERRORS.items()
            }},
        }  # fmt: skip
        params = re.findall(r"{(\w+)}", route.path)
        if params:
            operation["parameters"] = [
                {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                for p in params
            ]
        if route.credential != "none":
            operation["security"] = [{"bearer": []}]
            operation["x-credential"] = route.credential
        if route.method in ("POST", "PUT"):
            operation["requestBody"] = {
                "required": route.method == "PUT",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.0.3",
        "info": {"title": "hastack", "version": __version__},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    }
