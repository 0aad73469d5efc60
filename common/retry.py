"""Surviving an outage. Every process that waits for PostgreSQL or Kafka to come back does it through `retry`,
with a `Backoff`, and reports it through a `StateLog`: one line when the outage starts, one when it ends, not
one per attempt."""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from common.stopping import Stopped, pause

T = TypeVar("T")


@dataclass
class Backoff:
    """Delays that double from `first` up to `cap`; `reset()` after a success starts gently again."""

    first: float = 0.5
    cap: float = 5.0
    delay: float = field(init=False)

    def __post_init__(self) -> None:
        self.delay = self.first

    def next(self) -> float:
        delay, self.delay = self.delay, min(self.delay * 2, self.cap)
        return delay

    def reset(self) -> None:
        self.delay = self.first


def _ignore(error: Exception, delay: float) -> None:
    pass


async def retry(
    attempt: Callable[[], Awaitable[T]],
    *,
    retriable: Callable[[Exception], bool],
    backoff: Backoff,
    stop: asyncio.Event | None = None,
    attempts: int | None = None,
    give_up_after: float | None = None,
    on_retry: Callable[[Exception, float], None] = _ignore,
) -> T:
    """The result of the first `attempt()` that returns. After a failure that `retriable` accepts, `on_retry(error,
    delay)` is called and the next attempt comes `delay` seconds later (from `backoff`). A failure it refuses, the
    failure of the last of `attempts`, or one after `give_up_after` seconds of failures, is raised. With `stop`
    set, before an attempt or while waiting for one, Stopped is raised."""
    failing_since: float | None = None
    failures = 0
    while True:
        if stop is not None and stop.is_set():
            raise Stopped
        try:
            return await attempt()
        except Exception as e:
            if not retriable(e):
                raise
            failures += 1
            now = time.monotonic()
            failing_since = now if failing_since is None else failing_since
            if (attempts is not None and failures >= attempts) or (
                give_up_after is not None and now - failing_since >= give_up_after
            ):
                raise
            delay = backoff.next()
            on_retry(e, delay)
            if stop is None:
                await asyncio.sleep(delay)
            elif await pause(stop, delay):
                raise Stopped from e


class StateLog:
    """Logs a process's state only when it changes, so an outage is one line, not one per retry."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self.state = ""

    def __call__(self, state: str, detail: str = "", level: int = logging.INFO, **context: Any) -> None:
        if state != self.state:
            self.state = state
            self.log.log(level, "%s%s", state, f": {detail}" if detail else "", extra=context)

    def forget(self) -> str:
        """Forgets the state, so that the next one is logged whatever it is; returns what it was."""
        state, self.state = self.state, ""
        return state
