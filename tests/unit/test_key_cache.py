"""The API key cache: a revocation through this process is never undone by a lookup that started before it; an
unknown key is looked up once per TTL; the failed-authentication limit per address."""

import asyncio
from typing import Any

import pytest

from api.auth import FailureLimit, KeyCache, Role
from api.problems import DatabaseUnavailable, TooManyFailures


class SlowStore:
    """Answers the key lookup with the row as it was when the lookup started, after the test lets it go."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.read = asyncio.Event()
        self.revoked = False
        self.lookups = 0

    async def fetchrow(self, name: str, *args: Any) -> dict[str, Any] | None:
        self.lookups += 1
        row = None if self.revoked else {"id": 7, "name": "scanner", "role": Role.operator, "warehouses": None}
        self.read.set()
        await self.release.wait()
        return row


async def test_a_lookup_that_started_before_a_revocation_is_not_cached() -> None:
    cache = KeyCache(ttl=300)
    store = SlowStore()
    lookup = asyncio.create_task(cache.caller(store, "wt_key"))
    await store.read.wait()  # the lookup has read the row (still active)
    store.revoked = True
    cache.forget(7)  # the revocation commits, and this process forgets the key
    after = asyncio.create_task(cache.caller(store, "wt_key"))  # not joined to the lookup from before it
    store.release.set()
    assert (await lookup) is not None  # that request was already on its way
    assert (await after) is None
    assert store.lookups == 2
    assert await cache.caller(store, "wt_key") is None  # and the key is remembered as gone


async def test_a_key_is_trusted_for_the_ttl() -> None:
    cache = KeyCache(ttl=300)
    store = SlowStore()
    store.release.set()
    assert (await cache.caller(store, "wt_key")) is not None
    store.revoked = True  # revoked through another process
    assert (await cache.caller(store, "wt_key")) is not None  # still trusted here, within the TTL
    assert await KeyCache(ttl=0).caller(store, "wt_key") is None  # API_KEY_CACHE_SECONDS=0: looked up each time


async def test_an_unknown_key_is_looked_up_once_per_ttl_and_forgotten_first_when_many() -> None:
    cache = KeyCache(ttl=300)
    store = SlowStore()
    store.release.set()
    store.revoked = True  # every key unknown
    for _ in range(5):
        assert await cache.caller(store, "wt_made_up") is None
    assert store.lookups == 1
    cache.UNKNOWN_KEPT = 3
    for i in range(5):
        await cache.caller(store, f"wt_other_{i}")
    assert store.lookups == 6
    await cache.caller(store, "wt_other_4")  # among the 3 kept
    await cache.caller(store, "wt_made_up")  # the oldest, forgotten: looked up again
    assert store.lookups == 7


def test_an_address_past_its_failures_waits_and_others_do_not(monkeypatch: Any) -> None:
    now = [1000.0]
    monkeypatch.setattr("api.auth.time.monotonic", lambda: now[0])
    limit = FailureLimit(per_minute=30)  # one more every 2 s

    def wait(address: str) -> str | None:
        try:
            limit.admit(address)
        except TooManyFailures as e:
            return (e.headers or {})["Retry-After"]
        return None

    for _ in range(30):
        assert wait("10.0.0.1") is None
    assert wait("10.0.0.1") == "2" and wait("10.0.0.2") is None
    limit.give_back("10.0.0.1")  # that key was good: not a failure
    assert wait("10.0.0.1") is None and wait("10.0.0.1") == "2"
    now[0] += 2
    assert wait("10.0.0.1") is None and wait("10.0.0.1") == "2"
    now[0] += 60
    wait("10.0.0.2")
    limit.ADDRESSES_KEPT = 2
    wait("10.0.0.3")  # full: 10.0.0.1's bucket, refilled, is forgotten; 10.0.0.2's, just used, is not
    assert set(limit._buckets) == {"10.0.0.2", "10.0.0.3"}


async def test_requests_with_the_same_unchecked_key_at_once_share_one_query_and_one_count() -> None:
    cache, limit = KeyCache(ttl=300), FailureLimit(per_minute=1)
    store = SlowStore()
    lookups = [asyncio.create_task(cache.caller(store, "wt_key", limit, "10.0.0.1")) for _ in range(50)]
    await asyncio.sleep(0)
    store.release.set()
    assert all(found is not None for found in await asyncio.gather(*lookups))
    assert store.lookups == 1
    limit.admit("10.0.0.1")  # the good key's count was given back: the address has its one try left


def test_ipv6_addresses_count_by_their_64() -> None:
    limit = FailureLimit(per_minute=2)
    limit.admit("2001:db8:1:2::1")
    limit.admit("2001:db8:1:2:ffff::9")  # another address of the same /64: the same client
    with pytest.raises(TooManyFailures):
        limit.admit("2001:db8:1:2::abcd")
    limit.admit("2001:db8:1:3::1")  # another /64


class DownStore:
    async def fetchrow(self, name: str, *args: Any) -> None:
        raise DatabaseUnavailable("PostgreSQL cannot be reached: connection refused; try again")


async def test_a_lookup_without_an_answer_is_not_a_failed_authentication() -> None:
    cache, limit = KeyCache(ttl=300), FailureLimit(per_minute=1)
    for _ in range(3):  # PostgreSQL out of reach: the client retries, as Retry-After: 1 tells it to
        with pytest.raises(DatabaseUnavailable):
            await cache.caller(DownStore(), "wt_key", limit, "10.0.0.1")
    limit.admit("10.0.0.1")  # its one try is still there
