"""`python -m bridge`: run the bridge until SIGTERM/SIGINT. `python -m bridge schema`: rewrite the event's JSON
Schema and the topic's AsyncAPI document (bridge/schema/)."""

import argparse
import asyncio
import logging
import signal
import sys

from pydantic import ValidationError

from bridge.asyncapi import ASYNCAPI_FILE, asyncapi_text
from bridge.config import BridgeSettings
from bridge.errors import BridgeError
from bridge.events import SCHEMA_FILE, json_schema_text
from bridge.metrics import BridgeMetrics, serve
from bridge.relay import Relay

SHUTDOWN_GRACE_S = 6.0  # SIGTERM → exit within 10 s: an in-flight transaction gets this long, closing the rest

log = logging.getLogger("bridge")


async def run(settings: BridgeSettings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    metrics = BridgeMetrics()
    try:
        server = await serve(metrics, settings.bridge_metrics_host, settings.bridge_metrics_port)
    except OSError as e:
        log.error(
            "cannot serve metrics on %s:%d: %s (set BRIDGE_METRICS_PORT)",
            settings.bridge_metrics_host, settings.bridge_metrics_port, e,
        )  # fmt: skip
        return 2
    try:
        task = asyncio.create_task(Relay(settings, stop, metrics).run(), name="relay")
        stopping = asyncio.create_task(stop.wait(), name="stop")
        await asyncio.wait([task, stopping], return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            log.info("stopping: finishing the batch in flight (at most %g s)", SHUTDOWN_GRACE_S)
            try:
                await asyncio.wait_for(asyncio.shield(task), SHUTDOWN_GRACE_S)
            except TimeoutError:
                task.cancel()  # the open transaction is aborted by the next leader; its rows stay in the outbox
                await asyncio.gather(task, return_exceptions=True)
        stopping.cancel()
        try:
            task.result()
        except asyncio.CancelledError:
            pass
        except BridgeError as e:
            log.error("%s", e)
            return 1
    finally:
        server.close()
    log.info("stopped after publishing %d events", metrics.published.value)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bridge", description="Outbox → Kafka, exactly once.")
    p.add_argument("command", nargs="?", choices=["run", "schema"], default="run")
    args = p.parse_args()
    if args.command == "schema":
        SCHEMA_FILE.parent.mkdir(exist_ok=True)
        for path, text in ((SCHEMA_FILE, json_schema_text()), (ASYNCAPI_FILE, asyncapi_text())):
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # aiokafka logs every retry of a lost connection at ERROR, ten times a second during an outage; the bridge
    # reports outages itself, once per change of state.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        settings = BridgeSettings()
    except ValidationError as e:
        print(f"bridge: invalid settings:\n{e}", file=sys.stderr)
        return 2
    return asyncio.run(run(settings))


if __name__ == "__main__":
    sys.exit(main())
