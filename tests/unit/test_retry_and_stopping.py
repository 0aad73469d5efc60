"""The shared ways to survive an outage and to stop (common/retry.py, common/stopping.py), and what the driver's
errors mean (db/errors.py): every process relies on them, so their edge cases are pinned here."""

import asyncio
import logging

import asyncpg
import pytest
from asyncpg.exceptions._base import DataError as ClientDataError

from common.retry import Backoff, StateLog, retry
from common.stopping import Stopped, unless_stopped, wait_any
from db.errors import connection_lost, postgres_failed, refused_value, retry_reason

NO_WAIT = Backoff(first=0.0, cap=0.0)


class Flaky:
    """Fails with `error` the first `failures` times, then returns "done"."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "done"


def test_the_backoff_doubles_up_to_its_cap_and_starts_over_after_a_reset() -> None:
    backoff = Backoff(first=0.5, cap=5.0)
    assert [backoff.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    backoff.reset()
    assert backoff.next() == 0.5


async def test_retry_waits_out_retriable_failures_and_reports_each() -> None:
    attempt, reported = Flaky(3, OSError("refused")), []
    result = await retry(attempt, retriable=lambda e: isinstance(e, OSError), backoff=NO_WAIT,
                         on_retry=lambda e, delay: reported.append(str(e)))  # fmt: skip
    assert (result, attempt.calls, reported) == ("done", 4, ["refused"] * 3)


async def test_retry_raises_at_once_what_is_not_retriable() -> None:
    attempt = Flaky(1, ValueError("a bug"))
    with pytest.raises(ValueError, match="a bug"):
        await retry(attempt, retriable=lambda e: isinstance(e, OSError), backoff=NO_WAIT)
    assert attempt.calls == 1


async def test_retry_gives_up_after_its_attempts_or_its_time() -> None:
    attempt = Flaky(10, OSError("down"))
    with pytest.raises(OSError):
        await retry(attempt, retriable=lambda e: True, backoff=NO_WAIT, attempts=3)
    assert attempt.calls == 3
    attempt = Flaky(1000, OSError("down"))
    with pytest.raises(OSError):
        await retry(attempt, retriable=lambda e: True, backoff=Backoff(first=0.01, cap=0.01), give_up_after=0.05)
    assert 2 <= attempt.calls < 1000


async def test_retry_stops_while_waiting_and_before_an_attempt() -> None:
    stop = asyncio.Event()
    attempt = Flaky(1000, OSError("down"))
    asyncio.get_running_loop().call_later(0.05, stop.set)
    with pytest.raises(Stopped):
        await retry(attempt, retriable=lambda e: True, backoff=Backoff(first=60, cap=60), stop=stop)
    assert attempt.calls == 1  # it was waiting 60 s for the second when the stop came
    attempt = Flaky(0, OSError("never"))
    with pytest.raises(Stopped):
        await retry(attempt, retriable=lambda e: True, backoff=NO_WAIT, stop=stop)
    assert attempt.calls == 0


async def test_unless_stopped_returns_the_result_or_cancels_after_the_grace() -> None:
    stop = asyncio.Event()
    assert await unless_stopped(asyncio.sleep(0, "result"), stop) == "result"
    finished = []

    async def work(seconds: float) -> None:
        await asyncio.sleep(seconds)
        finished.append(seconds)

    asyncio.get_running_loop().call_later(0.02, stop.set)
    await unless_stopped(work(0.1), stop, grace=1.0)  # it finishes within the grace
    with pytest.raises(Stopped):
        await unless_stopped(work(10), stop, grace=0.05)  # it does not: cancelled
    assert finished == [0.1]


async def test_unless_stopped_passes_the_works_error_on() -> None:
    async def fails() -> None:
        raise RuntimeError("broken")

    with pytest.raises(RuntimeError, match="broken"):
        await unless_stopped(fails(), asyncio.Event())


async def test_wait_any_tells_whether_an_event_came_before_the_timeout() -> None:
    one, two = asyncio.Event(), asyncio.Event()
    assert await wait_any(one, two, timeout=0.01) is False
    asyncio.get_running_loop().call_later(0.01, two.set)
    assert await wait_any(one, two, timeout=5) is True


def test_the_state_log_writes_a_line_per_change_of_state(caplog: pytest.LogCaptureFixture) -> None:
    state = StateLog(logging.getLogger("test.state"))
    with caplog.at_level(logging.INFO, "test.state"):
        for _ in range(3):
            state("Kafka unavailable, retrying", "KafkaConnectionError", logging.WARNING)
        state("leader", "publishing")
        assert state.forget() == "leader"
        state("leader", "publishing")
    assert [r.getMessage() for r in caplog.records] == [
        "Kafka unavailable, retrying: KafkaConnectionError", "leader: publishing", "leader: publishing",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("error", "lost", "failed", "refused", "reason"),
    [
        (ConnectionRefusedError(), True, True, False, "connection lost"),
        (asyncpg.ConnectionDoesNotExistError("gone"), True, True, False, "connection lost"),
        (asyncpg.CannotConnectNowError("starting up"), True, True, False, "connection lost"),
        (asyncpg.InterfaceError("connection is closed"), True, True, False, "connection lost"),
        (asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
         False, True, False, None),
        (asyncpg.DeadlockDetectedError("deadlock"), False, True, False, "deadlock"),
        (asyncpg.SerializationError("serialization"), False, True, False, "serialization failure"),
        (asyncpg.TooManyConnectionsError("too many"), False, True, False, "insufficient resources"),
        (asyncpg.NumericValueOutOfRangeError("out of range"), False, True, True, None),
        (asyncpg.UniqueViolationError("duplicate"), False, True, True, None),
        (ClientDataError("invalid input for query argument $1"), False, True, True, None),
        (asyncpg.UndefinedTableError("no such table"), False, True, False, None),
        (ValueError("a bug"), False, False, False, None),
    ],
)  # fmt: skip
def test_what_a_driver_error_means(
    error: Exception, lost: bool, failed: bool, refused: bool, reason: str | None
) -> None:
    assert (connection_lost(error), postgres_failed(error), refused_value(error), retry_reason(error)) == (
        lost, failed, refused, reason,
    )  # fmt: skip
