"""The API key cache: a revocation through this process is never undone by a lookup that started before it."""

import asyncio
from typing import Any

from api.auth import KeyCache, Role


class SlowStore:
    """Answers the key lookup with the row as it was when the lookup started, after the test lets it go."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.revoked = False

    async def fetchrow(self, name: str, *args: Any) -> dict[str, Any] | None:
        row = None if self.revoked else {"id": 7, "name": "scanner", "role": Role.operator}
        await self.release.wait()
        return row


async def test_a_lookup_that_started_before_a_revocation_is_not_cached() -> None:
    cache = KeyCache(ttl=300)
    store = SlowStore()
    lookup = asyncio.create_task(cache.caller(store, "wt_key"))
    await asyncio.sleep(0)  # the lookup has read the row (still active)
    store.revoked = True
    cache.forget(7)  # the revocation commits, and this process forgets the key
    store.release.set()
    assert (await lookup) is not None  # that request was already on its way
    assert await cache.caller(store, "wt_key") is None  # the next one looks again, and the key is gone


async def test_a_key_is_trusted_for_the_ttl() -> None:
    cache = KeyCache(ttl=300)
    store = SlowStore()
    store.release.set()
    assert (await cache.caller(store, "wt_key")) is not None
    store.revoked = True  # revoked through another process
    assert (await cache.caller(store, "wt_key")) is not None  # still trusted here, within the TTL
    assert await KeyCache(ttl=0).caller(store, "wt_key") is None  # API_KEY_CACHE_SECONDS=0: looked up each time
