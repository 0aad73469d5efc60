"""Users and roles: API keys, stored as SHA-256 hashes, each with a role. `Authorization: Bearer <key>`.

viewer: reads. operator: reads, operations and transfers. admin: everything, products, warehouses and keys."""

import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.problems import Forbidden, Unauthenticated
from api.store import Store

KEY_PREFIX = "wt_"
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


@dataclass(frozen=True)
class Caller:
    key_id: int
    name: str
    role: Role


class KeyCache:
    """Keys this process has checked, trusted for `ttl` seconds, so a read costs no extra query. A key revoked
    through this process stops working at once; through another, within `ttl`."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._callers: dict[bytes, tuple[float, Caller]] = {}

    async def caller(self, store: Store, key: str) -> Caller | None:
        digest = key_hash(key)
        now = time.monotonic()
        cached = self._callers.get(digest)
        if cached and cached[0] > now:
            return cached[1]
        row = await store.fetchrow("api_key_by_hash", digest)
        if row is None:
            self._callers.pop(digest, None)
            return None
        found = Caller(row["id"], row["name"], Role(row["role"]))
        if self.ttl > 0:
            self._callers[digest] = (now + self.ttl, found)
        return found

    def forget(self, key_id: int) -> None:
        for digest, (_, caller) in list(self._callers.items()):
            if caller.key_id == key_id:
                del self._callers[digest]


_bearer = HTTPBearer(auto_error=False, description="An API key: `python -m api create-key --name NAME --role ROLE`.")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def require(role: Role) -> Callable[[Request, HTTPAuthorizationCredentials | None], Awaitable[Caller]]:
    """A dependency: the caller, if its key is valid (else 401) and its role is `role` or above (else 403)."""

    async def caller(request: Request, credentials: Credentials) -> Caller:
        challenge = {"WWW-Authenticate": "Bearer"}
        if credentials is None:
            raise Unauthenticated("send an API key: Authorization: Bearer <key>", headers=challenge)
        key = credentials.credentials
        found = None
        if key.startswith(KEY_PREFIX) and len(key) <= _MAX_KEY_LENGTH:
            cache: KeyCache = request.app.state.keys
            found = await cache.caller(request.app.state.store, key)
        if found is None:
            raise Unauthenticated("the API key is unknown or revoked", headers=challenge)
        if _RANK[found.role] < _RANK[role]:
            raise Forbidden(f"this needs the {role} role or above; key {found.name!r} has {found.role}")
        return found

    return caller


Viewer = Annotated[Caller, Depends(require(Role.viewer))]
Operator = Annotated[Caller, Depends(require(Role.operator))]
Admin = Annotated[Caller, Depends(require(Role.admin))]
