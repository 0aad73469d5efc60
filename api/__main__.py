"""`python -m api`: serve the API (uvicorn, API_HOST:API_PORT).
`python -m api create-key --name NAME --role ROLE`: make an API key; it is printed once, alone on the last line.
`python -m api local-admin-key --file PATH`: local development only: print the admin key kept in PATH, making
one (and the file) when there is none; `make up` runs it."""

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from pydantic import ValidationError

from api import server
from api.app import create_app
from api.auth import Role, create_key, key_hash
from api.config import ApiSettings
from api.live import LiveFeed
from api.problems import InvalidRequest, UnknownWarehouse
from common import logs
from db.connect import DatabaseUnavailable, connect
from db.queries import queries

Q = queries("api")
SHUTDOWN_GRACE_S = 5  # SIGTERM: requests in flight get this long; live streams, which never end, are then closed


class _Server(uvicorn.Server):
    """uvicorn's server, except that after a graceful shutdown on SIGTERM/SIGINT the process exits 0, as the
    other services do (uvicorn re-raises the signal, so the exit status would say "killed"), and that shutdown
    first ends the live streams, telling their clients why (uvicorn would wait for them, then cut them)."""

    def __init__(self, config: uvicorn.Config, live: LiveFeed) -> None:
        super().__init__(config)
        self.live = live

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self.live.close()
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


async def make_key(url: str, name: str, role: Role, warehouses: list[int] | None = None) -> str:
    conn = await connect(url)
    try:
        key, _ = await create_key(conn, name, role, warehouses)
        return key
    finally:
        await conn.close()


async def local_admin_key(settings: ApiSettings, file: Path) -> tuple[str, bool]:
    """The key kept in `file` if it is an active admin key, else a new one written there. (key, made now)."""
    if file.exists():
        key = file.read_text(encoding="utf-8").strip()
        conn = await connect(settings.database_url)
        try:
            row = await conn.fetchrow(Q["api_key_by_hash"], key_hash(key))
        finally:
            await conn.close()
        if row is not None and row["role"] == Role.admin:
            return key, False
    key = await make_key(settings.database_url, "local-admin", Role.admin)
    file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(key + "\n")
    return key, True


def warehouse_ids(text: str) -> list[int]:
    try:
        ids = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of warehouse ids: {text!r}") from None
    if any(i < 1 for i in ids):
        raise argparse.ArgumentTypeError(f"warehouse ids are 1 or more: {text!r}")
    return ids


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m api", description="The warehouse-tracker HTTP API.")
    sub = p.add_subparsers(dest="command")
    sub.add_parser("serve", help="serve the API (the default)")
    create = sub.add_parser("create-key", help="make an API key; printed once, on the last line")
    create.add_argument("--name", required=True, help="who or what uses the key")
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument(
        "--warehouses", type=warehouse_ids, metavar="ID,ID…",
        help="an operator key's warehouses: its writes touching any other are refused (default: every warehouse)",
    )  # fmt: skip
    local = sub.add_parser("local-admin-key", help="local development: print (or make) the admin key kept in a file")
    local.add_argument("--file", type=Path, default=Path(".stack/local-admin-key"))
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = ApiSettings()
    except ValidationError as e:
        print(f"api: invalid settings:\n{e}", file=sys.stderr)
        return 2
    if args.command == "create-key":
        if not args.name.strip():
            print("api: --name must not be empty", file=sys.stderr)
            return 2
        try:
            key = asyncio.run(make_key(settings.database_url, args.name.strip(), Role(args.role), args.warehouses))
        except DatabaseUnavailable as e:
            print(f"api: {e}", file=sys.stderr)
            return 1
        except (InvalidRequest, UnknownWarehouse) as e:
            print(f"api: {e}", file=sys.stderr)
            return 2
        scope = "" if args.warehouses is None else f", warehouses {','.join(map(str, args.warehouses))}"
        print(f"API key {args.name.strip()!r} ({args.role}{scope}) made. It is shown only now; keep it:")
        print(key)
        return 0
    if args.command == "local-admin-key":
        if settings.environment != "local":
            print("api: local-admin-key is for local development (ENVIRONMENT=local); use create-key", file=sys.stderr)
            return 2
        try:
            key, made = asyncio.run(local_admin_key(settings, args.file))
        except DatabaseUnavailable as e:
            print(f"api: {e}", file=sys.stderr)
            return 1
        print(f"{'Made a' if made else 'The'} local admin API key (kept in {args.file}):")
        print(key)
        return 0
    logs.setup(settings.log_format)
    app = create_app(settings)
    # log_config=None: uvicorn's lines go through the process's own logging setup.
    config = server.config(app, settings, log_config=None, log_level="info", timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
    running = _Server(config, app.state.live)
    running.run()
    return 0 if running.started else 1


if __name__ == "__main__":
    sys.exit(main())
