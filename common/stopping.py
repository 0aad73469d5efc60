"""Stopping: SIGINT/SIGTERM set a stop event, and work that gives way to it. Every process stops through these."""

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class Stopped(Exception):
    """The stop event came first: the work was cancelled (what it held stays uncommitted and comes again)."""


def stop_on_signals(on_stop: Callable[[], None] = lambda: None) -> asyncio.Event:
    """An event that SIGINT and SIGTERM set (calling `on_stop` first, the first time), on the running loop."""
    stop = asyncio.Event()

    def stopping() -> None:
        first = not stop.is_set()
        stop.set()
        if first:
            on_stop()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping)
    return stop


async def wait_any(*events: asyncio.Event, timeout: float | None = None) -> bool:
    """Waits until one of `events` is set, or `timeout` seconds: whether one is set."""
    if any(event.is_set() for event in events):
        return True
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
    return bool(done)


async def pause(stop: asyncio.Event, seconds: float) -> bool:
    """Sleeps `seconds`, or less if `stop` is set meanwhile: whether it is."""
    return await wait_any(stop, timeout=seconds)


async def unless_stopped(work: Awaitable[T], stop: asyncio.Event, grace: float = 0.0) -> T:
    """The result of `work`; once `stop` is set, `work` has `grace` seconds more to finish (it may be watching
    `stop` itself), then it is cancelled and Stopped is raised."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([task, stopping], return_when=asyncio.FIRST_COMPLETED)
        if not task.done() and grace > 0:
            await asyncio.wait([task], timeout=grace)
        if not task.done():
            raise Stopped
        return task.result()
    finally:
        stopping.cancel()
        if not task.done():  # stopped, or this wait was itself cancelled
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
