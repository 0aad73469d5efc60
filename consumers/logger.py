"""`python -m consumers.logger [--lang ru|en]`: prints every status change as the original system did:

    🛰️ Слушаю изменения статусов...
    🔔 Статус изменился: товар 3 (склад 5): Заканчивается → Доступен

Consumer group LOGGER_GROUP (default `warehouse-logger`); a new group starts at the end of the topic (changes
from now on; LOGGER_START=earliest for the whole topic)."""

import argparse
import asyncio
import sys
from typing import Any

from pydantic import ValidationError

from bridge.events import AnyStatusChanged
from consumers.config import LoggerSettings
from consumers.runner import ConsumerMetrics, consume, run

TEXT = {
    "ru": {
        "listening": "🛰️ Слушаю изменения статусов...",
        "changed": "🔔 Статус изменился: товар {product} (склад {warehouse}): {old} → {new}",
        "available": "Доступен",
        "running_low": "Заканчивается",
        "out_of_stock": "Закончился",
    },
    "en": {
        "listening": "🛰️ Listening for status changes...",
        "changed": "🔔 Status changed: product {product} (warehouse {warehouse}): {old} → {new}",
        "available": "Available",
        "running_low": "Running low",
        "out_of_stock": "Out of stock",
    },
}


def line(event: AnyStatusChanged, lang: str) -> str:
    text = TEXT[lang]
    return text["changed"].format(
        product=event.product_id, warehouse=event.warehouse_id, old=text[event.old_status], new=text[event.new_status]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m consumers.logger", description="Print every status change.")
    p.add_argument("--lang", choices=sorted(TEXT), default="ru", help="language of the lines (default ru)")
    args = p.parse_args(argv)
    try:
        settings = LoggerSettings()
    except ValidationError as e:
        print(f"consumers.logger: invalid settings:\n{e}", file=sys.stderr)
        return 2
    metrics = ConsumerMetrics("logger")

    async def show(events: list[tuple[Any, AnyStatusChanged]]) -> None:
        for _, event in events:
            print(line(event, args.lang), flush=True)

    async def work(stop: asyncio.Event) -> None:
        await consume(settings, show, metrics, stop, on_ready=lambda: print(TEXT[args.lang]["listening"], flush=True))

    return run("consumers.logger", settings, metrics, work)


if __name__ == "__main__":
    sys.exit(main())
