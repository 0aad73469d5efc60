"""`python -m bridge`: run the bridge until SIGTERM/SIGINT. `python -m bridge schema`: rewrite the JSON Schemas of
the topics' values and their AsyncAPI document (bridge/schema/). `python -m bridge verify [--events]`: reconcile
PostgreSQL with the topics (bridge/verify.py). `python -m bridge snapshot`: have the leading bridge rewrite every
pair's current state (bridge/snapshot.py). `python -m bridge republish --to TOPIC`: rebuild an event topic from the
stored log (bridge/republish.py)."""

import argparse
import asyncio
import logging
import sys

from pydantic import ValidationError

from bridge.asyncapi import ASYNCAPI_FILE, asyncapi_text
from bridge.config import BridgeSettings
from bridge.errors import BridgeError
from bridge.events import SCHEMA_DIR, SCHEMAS, json_schema_text
from bridge.metrics import BridgeMetrics
from bridge.relay import Relay
from bridge.republish import republish
from bridge.snapshot import snapshot
from bridge.verify import VerifyError, verify
from common import logs
from common.metrics import serve
from common.settings import stock_status_topic_of
from common.stopping import Stopped, stop_on_signals, unless_stopped

SHUTDOWN_GRACE_S = 6.0  # SIGTERM → exit within 10 s: an in-flight transaction gets this long, closing the rest

log = logging.getLogger("bridge")


async def run(settings: BridgeSettings) -> int:
    stop = stop_on_signals(lambda: log.info("stopping: finishing the batch in flight (at most %g s)", SHUTDOWN_GRACE_S))
    metrics = BridgeMetrics()
    try:
        server = await serve(
            metrics.registry, metrics.readiness, settings.bridge_metrics_host, settings.bridge_metrics_port
        )
    except OSError as e:
        log.error(
            "cannot serve metrics on %s:%d: %s (set BRIDGE_METRICS_PORT)",
            settings.bridge_metrics_host, settings.bridge_metrics_port, e,
        )  # fmt: skip
        return 2
    try:
        # Past the grace the open transaction is cancelled: the next leader aborts it; its rows stay in the outbox.
        await unless_stopped(Relay(settings, stop, metrics).run(), stop, grace=SHUTDOWN_GRACE_S)
    except Stopped:
        pass
    except BridgeError as e:
        log.error("%s", e)
        return 1
    finally:
        server.close()
    log.info("stopped after publishing %d events", metrics.events_published)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bridge", description="Outbox → Kafka, exactly once.")
    commands = p.add_subparsers(dest="command", metavar="command")
    commands.add_parser("run", help="publish the outbox until SIGTERM/SIGINT (the default)")
    commands.add_parser("schema", help="rewrite the JSON Schemas and the AsyncAPI document in bridge/schema/")
    check = commands.add_parser("verify", help="reconcile PostgreSQL with the topics; exit 1 on any discrepancy")
    check.add_argument("--events", action="store_true", help="scan the whole event topic too")
    check.add_argument("--show", type=int, default=20, metavar="N", help="discrepancies to print in full (20)")
    snap = commands.add_parser("snapshot", help="have the bridge rewrite every pair's state into the state topic")
    snap.add_argument("--no-wait", action="store_true", help="return once requested, without following it")
    again = commands.add_parser("republish", help="rebuild an event topic and its state topic from status_change_log")
    again.add_argument("--to", required=True, metavar="TOPIC", help="the new event topic (created; must be empty)")
    again.add_argument("--state-topic", metavar="TOPIC", help="the new current-state topic (default from --to)")
    again.add_argument("--chunk", type=int, default=5000, metavar="N", help="events per Kafka transaction (5000)")
    args = p.parse_args()
    if args.command == "schema":
        SCHEMA_DIR.mkdir(exist_ok=True)
        for path, text in [*((path, json_schema_text(path)) for path in SCHEMAS), (ASYNCAPI_FILE, asyncapi_text())]:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
        return 0
    try:
        settings = BridgeSettings()
    except ValidationError as e:
        print(f"bridge: invalid settings:\n{e}", file=sys.stderr)
        return 2
    logs.setup(settings.log_format)
    if args.command == "verify":
        if args.show < 0:
            p.error("--show must be 0 or more")
        return asyncio.run(_verify(settings, args.events, args.show))
    if args.command == "republish":
        if not 1 <= args.chunk <= 10_000:
            p.error("--chunk must be 1 to 10,000")
        state_topic = args.state_topic or stock_status_topic_of(args.to)
        live = (settings.kafka_topic, settings.kafka_stock_status_topic)
        if args.to in live or state_topic in live or state_topic == args.to:
            p.error("--to and --state-topic must be new topics, other than KAFKA_TOPIC and its state topic")
        try:
            asyncio.run(republish(settings, args.to, state_topic, args.chunk))
        except BridgeError as e:
            sys.stderr.write(f"bridge republish: {e}\n")
            return 1
        return 0
    if args.command == "snapshot":
        try:
            return asyncio.run(snapshot(settings, wait=not args.no_wait))
        except KeyboardInterrupt:
            sys.stderr.write("stopped following; the bridge goes on with the snapshot\n")
            return 130
    return asyncio.run(run(settings))


async def _verify(settings: BridgeSettings, events: bool, show: int) -> int:
    try:
        return 1 if await verify(settings, events, show) else 0
    except VerifyError as e:
        sys.stderr.write(f"bridge verify: {e}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
