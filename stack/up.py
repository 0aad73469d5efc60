"""Run the services of a Procfile in the foreground, each line prefixed by its service name.

Ctrl-C or SIGTERM stops them all (SIGTERM, then SIGKILL after a grace period);
if one exits, the rest stop too.
Usage: python stack/up.py stack/Procfile
"""

import asyncio
import os
import signal
import sys
from pathlib import Path

GRACE_SECONDS = 10
COLORS = [36, 33, 35, 32, 34, 31]


def parse_procfile(text: str) -> list[tuple[str, str]]:
    services = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, command = line.partition(":")
        if not sep or not name.strip() or not command.strip():
            raise SystemExit(f"Procfile line {number}: expected `name: command`, got {raw!r}")
        services.append((name.strip(), command.strip()))
    return services


async def pump(name: str, color: int, width: int, stream: asyncio.StreamReader) -> None:
    prefix = f"\033[{color}m{name:<{width}}\033[0m | " if sys.stdout.isatty() else f"{name:<{width}} | "
    async for line in stream:
        sys.stdout.write(prefix + line.decode(errors="replace"))
        sys.stdout.flush()


async def run(services: list[tuple[str, str]]) -> int:
    width = max(len(name) for name, _ in services)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    procs: dict[str, asyncio.subprocess.Process] = {}
    pumps = []
    for i, (name, command) in enumerate(services):
        proc = await asyncio.create_subprocess_exec(
            "bash", "-c", command,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        procs[name] = proc
        assert proc.stdout is not None
        pumps.append(asyncio.create_task(pump(name, COLORS[i % len(COLORS)], width, proc.stdout)))
    print(f"up: ready — {', '.join(procs)} running; Ctrl-C stops them", flush=True)

    waits = {asyncio.create_task(p.wait()): name for name, p in procs.items()}
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([*waits, stopper], return_when=asyncio.FIRST_COMPLETED)
    exit_code = 0
    for task in done:
        if task in waits:
            code = task.result()
            print(f"up: {waits[task]} exited with code {code}; stopping the rest", flush=True)
            exit_code = code or 1

    for proc in procs.values():
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs.values())), GRACE_SECONDS)
    except TimeoutError:
        for proc in procs.values():
            if proc.returncode is None:
                os.killpg(proc.pid, signal.SIGKILL)
        await asyncio.gather(*(p.wait() for p in procs.values()))
    await asyncio.gather(*pumps)
    stopper.cancel()
    print("up: all services stopped (the stack keeps running; `make down` stops it)", flush=True)
    return exit_code


def main() -> int:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    return asyncio.run(run(parse_procfile(Path(sys.argv[1]).read_text())))


if __name__ == "__main__":
    sys.exit(main())
