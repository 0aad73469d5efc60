"""Whether Kafka answers, as a process that reads it sees it. Through an outage aiokafka's consumers keep their
partitions and retry in silence (their own log lines are switched off, common/logs.py), so nothing they do says
that Kafka is gone. `watch` asks for the cluster's metadata every CHECK_EVERY_S, tells `answers` the outcome, and
logs a line when Kafka is lost and one when it is back."""

import asyncio
import logging
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer

from common.retry import StateLog
from common.stopping import pause

CHECK_EVERY_S = 2.0
CHECK_TIMEOUT_S = 5.0


async def watch(
    consumer: AIOKafkaConsumer,
    log: logging.Logger,
    answers: Callable[[bool], None] = lambda ok: None,
    what: str = "",
    stop: asyncio.Event | None = None,
) -> None:
    """Until `stop` is set (or cancelled). `what` starts each line (`live feed: lost Kafka: …`)."""
    state = StateLog(log)
    while True:
        if stop is None:
            await asyncio.sleep(CHECK_EVERY_S)
        elif await pause(stop, CHECK_EVERY_S):
            return
        try:
            await asyncio.wait_for(consumer.topics(), CHECK_TIMEOUT_S)
        except Exception as e:  # KafkaError, TimeoutError, or whatever else a lost broker raises
            answers(False)
            state(f"{what}lost Kafka", f"{type(e).__name__}; waiting for it", logging.WARNING)
        else:
            answers(True)
            if state.state:
                state(f"{what}Kafka answers again")
