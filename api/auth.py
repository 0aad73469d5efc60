"""Users and roles: API keys, stored as SHA-256 hashes, each with a role. `Authorization: Bearer <key>`.

viewer: reads. operator: reads, operations and transfers. admin: everything, products, warehouses and keys."""

import asyncio
import hashlib
import ipaddress
import math
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import parse_qs

import asyncpg
from fastapi import Depends, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from api.problems import (
    ApiError,
    Forbidden,
    InvalidRequest,
    OutsideKeyWarehouses,
    TooManyFailures,
    Unauthenticated,
    UnknownWarehouse,
    answer,
)
from common.keys import KEY_PREFIX, KEY_PREFIX_LENGTH
from db.queries import queries

_MAX_KEY_LENGTH = 200


class Role(StrEnum):
    viewer = "viewer"
    operator = "operator"
    admin = "admin"


_RANK = {Role.viewer: 0, Role.operator: 1, Role.admin: 2}


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


async def create_key(
    conn: asyncpg.Connection, name: str, role: Role, warehouses: Sequence[int] | None = None
) -> tuple[str, asyncpg.Record]:
    """A new key for `name` with `role` (an operator's limited to `warehouses`, if given): the key itself (shown
    once) and its stored row (hash and prefix only)."""
    q = queries("api")
    if warehouses is not None:
        if role != Role.operator:
            raise InvalidRequest(f"only operator keys write stock, so only they are limited to warehouses; not {role}")
        unknown = await conn.fetchval(q["unknown_warehouses"], list(warehouses))
        if unknown:
            raise UnknownWarehouse(f"warehouse {unknown[0]} does not exist")
    key = new_key()
    row = await conn.fetchrow(
        q["create_api_key"], name, role, key_hash(key), key[:KEY_PREFIX_LENGTH],
        None if warehouses is None else sorted(set(warehouses)),
    )  # fmt: skip
    assert row is not None
    return key, row


@dataclass(frozen=True)
class Caller:
    key_id: int
    name: str
    role: Role
    warehouses: frozenset[int] | None = None
    """The warehouses it may write at; None: all."""

    def may_write_at(self, *warehouses: int) -> None:
        """Refuses (403) a write touching a warehouse outside the key's."""
        if self.warehouses is None:
            return
        outside = sorted(set(warehouses) - self.warehouses)
        if outside:
            raise OutsideKeyWarehouses(
                f"key {self.name!r} writes at warehouse(s) {', '.join(map(str, sorted(self.warehouses)))} only; "
                f"this write touches {', '.join(map(str, outside))}; nothing was changed"
            )


class KeyLookup(Protocol):
    """What the cache needs of the store."""

    async def fetchrow(self, name: str, *args: Any) -> Any: ...


class KeyCache:
    """Keys this process has checked, trusted for `ttl` seconds, so a read costs no extra query. A key revoked
    through this process stops working at once; through another, within `ttl`. Unknown keys are remembered as
    unknown for `ttl` too (at most UNKNOWN_KEPT of them), so the same bad key sent again costs no query either.
    Requests that arrive with the same unchecked key at once share one query."""

    UNKNOWN_KEPT = 10_000

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._callers: dict[bytes, tuple[float, Caller]] = {}  # kept past expiry: the key was good
        self._unknown: dict[bytes, float] = {}
        self._lookups: dict[bytes, tuple[int, asyncio.Task[Caller | None]]] = {}
        self._revocations = 0  # a lookup that started before a revocation is not cached: it may predate it

    async def caller(
        self, store: "KeyLookup", key: str, limit: "FailureLimit | None" = None, address: str = ""
    ) -> Caller | None:
        """The key's caller, None for an unknown or revoked key. With `limit`: a query for a key not known to be
        good is counted against `address` first, and refused (TooManyFailures) once the address is past it."""
        digest = key_hash(key)
        now = time.monotonic()
        cached = self._callers.get(digest)
        if cached and cached[0] > now:
            return cached[1]
        if self._unknown.get(digest, 0.0) > now:
            return None
        pending = self._lookups.get(digest)
        if pending and pending[0] == self._revocations:
            return await asyncio.shield(pending[1])
        charged = limit if cached is None else None  # a key not known to be good costs the address a try
        if charged is not None:
            charged.admit(address)
        lookup = asyncio.ensure_future(self._look_up(store, digest, now))
        lookup.add_done_callback(lambda done: done.cancelled() or done.exception())  # retrieved, whoever waits
        self._lookups[digest] = (self._revocations, lookup)
        try:
            found = await asyncio.shield(lookup)
        except BaseException:
            if charged is not None:
                charged.give_back(address)  # no answer (PostgreSQL out of reach, say): not a failed authentication
            raise
        finally:
            if self._lookups.get(digest, (0, None))[1] is lookup:
                del self._lookups[digest]
        if charged is not None and found is not None:
            charged.give_back(address)
        return found

    async def _look_up(self, store: "KeyLookup", digest: bytes, now: float) -> Caller | None:
        revocations = self._revocations
        row = await store.fetchrow("api_key_by_hash", digest)
        if row is None:
            self._callers.pop(digest, None)
            if self.ttl > 0:
                if len(self._unknown) >= self.UNKNOWN_KEPT:
                    del self._unknown[next(iter(self._unknown))]  # the oldest
                self._unknown[digest] = now + self.ttl
            return None
        scope = None if row["warehouses"] is None else frozenset(row["warehouses"])
        found = Caller(row["id"], row["name"], Role(row["role"]), scope)
        if self.ttl > 0 and revocations == self._revocations:
            self._callers[digest] = (now + self.ttl, found)
        return found

    def forget(self, key_id: int) -> None:
        self._revocations += 1
        for digest, (_, caller) in list(self._callers.items()):
            if caller.key_id == key_id:
                del self._callers[digest]


class FailureLimit:
    """Failed authentications per client address (an IPv6 address counts by its /64, which one client holds
    whole), in this process: a bucket of `per_minute` that refills evenly over a minute. An address whose bucket
    is empty gets 429 for a key not known to be good, without a query, so a flood of made-up keys costs the
    database nothing and the good keys (of that address too) keep working."""

    ADDRESSES_KEPT = 10_000

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._buckets: dict[str, tuple[float, float]] = {}  # address → (tokens, at)

    def _tokens(self, address: str, now: float) -> float:
        tokens, at = self._buckets.get(address, (self.per_minute, now))
        return min(float(self.per_minute), tokens + (now - at) * self.per_minute / 60)

    @staticmethod
    def _client(address: str) -> str:
        if ":" not in address:
            return address
        try:
            return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
        except ValueError:
            return address

    def admit(self, address: str) -> None:
        """Before a query for a key not known to be good: one failure counted in advance (`give_back` when the key
        is good), or TooManyFailures with the seconds until `address` may try again. Counted before the query, so
        concurrent attempts cannot overdraw the bucket."""
        now, address = time.monotonic(), self._client(address)
        tokens = self._tokens(address, now)
        if tokens < 1:
            wait = math.ceil((1 - tokens) * 60 / self.per_minute)
            raise TooManyFailures(
                f"too many failed authentications from {address} (API_AUTH_FAILURES_PER_MINUTE: "
                f"{self.per_minute}); try again in {wait} s",
                headers={"Retry-After": str(wait)},
            )
        if len(self._buckets) >= self.ADDRESSES_KEPT and address not in self._buckets:
            # Forget the tenth with the most tries left (refilled ones first), never the drained: forgetting
            # those would give their tries back.
            fullest = sorted(self._buckets, key=lambda a: self._tokens(a, now), reverse=True)
            for forgotten in fullest[: max(1, self.ADDRESSES_KEPT // 10)]:
                del self._buckets[forgotten]
        self._buckets[address] = (tokens - 1, now)

    def give_back(self, address: str) -> None:
        now, address = time.monotonic(), self._client(address)
        self._buckets[address] = (min(float(self.per_minute), self._tokens(address, now) + 1), now)


# The dashboard's page and script hold no data: it asks for a key, and everything it shows comes through the API.
PUBLIC_PATHS = frozenset({"/", "/healthz", "/readyz", "/docs", "/openapi.json", "/dashboard"})
PUBLIC_PREFIX = "/static/"
LIVE_PATHS = frozenset({"/status-changes/stream", "/ws/status-changes"})
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


class AuthMiddleware:
    """Every request but those to PUBLIC_PATHS must carry a valid key: else 401 (a WebSocket handshake too),
    before anything else runs. The caller goes into the request's state; routes that need more than a viewer
    check the role (require()). A middleware, not a FastAPI dependency: this runs on every request, and a
    dependency costs several times more. The live streams also take the key as `?access_token=` (RFC 6750):
    browsers cannot set headers on an EventSource or a WebSocket."""

    def __init__(self, app: ASGIApp, keys: KeyCache, failures: FailureLimit) -> None:
        self.app = app
        self.keys = keys
        self.failures = failures

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] in ("http", "websocket") and path not in PUBLIC_PATHS and not path.startswith(PUBLIC_PREFIX):
            try:
                scope.setdefault("state", {})["caller"] = await self._authenticate(scope)
            except ApiError as e:
                await answer(scope, receive, send, e)
                return
        await self.app(scope, receive, send)

    async def _authenticate(self, scope: Scope) -> Caller:
        header = next((v for k, v in scope["headers"] if k == b"authorization"), b"").decode("latin-1")
        scheme, _, key = header.strip().partition(" ")
        key = key.strip()
        if not header and scope["path"] in LIVE_PATHS:
            token = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("access_token")
            scheme, key = "bearer", token[0] if token else ""
        if scheme.lower() != "bearer" or not key:
            raise Unauthenticated("send an API key: Authorization: Bearer <key>", headers=_CHALLENGE)
        address = (scope.get("client") or ("unknown", 0))[0]
        found = None
        if key.startswith(KEY_PREFIX) and len(key) <= _MAX_KEY_LENGTH:
            found = await self.keys.caller(scope["app"].state.store, key, self.failures, address)
        if found is None:
            raise Unauthenticated("the API key is unknown or revoked", headers=_CHALLENGE)
        return found


def caller(request: Request) -> Caller:
    """Who sent the request (AuthMiddleware authenticated it)."""
    found: Caller = request.state.caller
    return found


def require(role: Role) -> Any:
    """A route dependency: 403 unless the caller's role is `role` or above. FastAPI runs it before it validates
    the request's parameters and body, so a key without the role learns nothing about them. Every key is at least
    a viewer: routes for viewers need no dependency (the middleware's check is theirs)."""

    async def check(request: Request) -> None:
        found = caller(request)
        if _RANK[found.role] < _RANK[role]:
            raise Forbidden(f"this needs the {role} role or above; key {found.name!r} has {found.role}")

    return Depends(check)


OPERATOR = require(Role.operator)
ADMIN = require(Role.admin)


def document_security(schema: dict[str, Any]) -> dict[str, Any]:
    """The bearer scheme in the OpenAPI document, on every operation but those of PUBLIC_PATHS."""
    schema.setdefault("components", {})["securitySchemes"] = {
        "apiKey": {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key: `python -m api create-key --name NAME --role ROLE`.",
        }
    }
    for path, operations in schema.get("paths", {}).items():
        if path not in PUBLIC_PATHS:
            for operation in operations.values():
                operation["security"] = [{"apiKey": []}]
    return schema
