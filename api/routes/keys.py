"""API keys, for admins: make one (shown once), list them, revoke one."""

from fastapi import APIRouter, Request, Response

from api.auth import ADMIN, create_key
from api.models import ApiKey, ApiKeyIn, NewApiKey
from api.problems import LastAdminKey, UnknownApiKey, UnknownWarehouse, responses
from api.routes.common import PathId, store
from api.store import Q

router = APIRouter(tags=["api keys"], dependencies=[ADMIN])


@router.post("/api-keys", status_code=201, responses=responses(UnknownWarehouse))
async def create_api_key(request: Request, body: ApiKeyIn) -> NewApiKey:
    """A new key with a role (an operator's optionally limited to some warehouses). The key is in this response
    only: store it now."""
    async with store(request).transaction() as conn:
        key, row = await create_key(conn, body.name, body.role, body.warehouses)
    return NewApiKey(**row, key=key)


@router.get("/api-keys", responses=responses())
async def list_api_keys(request: Request) -> list[ApiKey]:
    """Every key, revoked ones too (never the key itself)."""
    return [ApiKey(**r) for r in await store(request).fetch("api_keys")]


@router.delete("/api-keys/{key_id}", status_code=204, responses=responses(UnknownApiKey, LastAdminKey))
async def revoke_api_key(request: Request, key_id: PathId) -> Response:
    """Revoke a key: it stops working at once on this API process, within API_KEY_CACHE_SECONDS on others; the
    live streams it opened end as soon (SSE: `event: closed`; WebSocket: code 4401). Revoking a revoked key is a
    no-op. The last active admin key cannot be revoked (409)."""
    async with store(request).transaction() as conn:
        await conn.execute(Q["lock_api_keys"])
        key = await conn.fetchrow(Q["api_key"], key_id)
        if key is None:
            raise UnknownApiKey(f"API key {key_id} does not exist")
        if key["revoked_at"] is None:
            if key["role"] == "admin" and await conn.fetchval(Q["active_admin_keys"]) <= 1:
                raise LastAdminKey(f"key {key_id} is the last active admin key; make another admin key first")
            await conn.execute(Q["revoke_api_key"], key_id)
    request.app.state.keys.forget(key_id)
    request.app.state.live.end_for_keys({key_id})
    return Response(status_code=204)
