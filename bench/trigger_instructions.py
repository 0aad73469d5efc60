"""`make bench-trigger-instructions`: the triggers' cost per single-operation transaction, in CPU instructions.

Time on a shared machine is noisy (`make bench-trigger-cost` moves by several µs between runs); instruction
counts are not: this runs the same single-session loop as `bench-trigger-cost` inside a PostgreSQL backend under
valgrind's callgrind and reports instructions per transaction, for the trigger-less copy and the real table. Two
loop lengths are run and subtracted, so start-up and shut-down cancel out. Repeat runs agree to within 0.1 %,
so a change of a few thousand instructions is visible. The backend is a single-user `postgres --single` on a
scratch cluster made for the run (migrated, 10k stocked keys), so the local stack is not touched.

Needs valgrind (`apt-get install valgrind`) and the PostgreSQL server binaries.
"""

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import asyncpg

from bench.db_bench import PLAIN, TRIGGERED, pg_bindir, prepare_tables
from bench.trigger_cost import LOOP

PORT = 54399  # the scratch cluster listens on a socket in its own folder only; the port names the socket


def as_postgres(args: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root; as root, run it as the `postgres` OS user."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


class ScratchCluster:
    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="wt-callgrind-", dir="/var/tmp"))
        self.data = self.root / "data"
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")

    def run(self, *args: str) -> None:
        subprocess.run(as_postgres([str(self.bindir / args[0]), *args[1:]]), check=True, capture_output=True)

    async def prepare(self) -> None:
        self.run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust")
        self.run("pg_ctl", "start", "-w", "-D", str(self.data), "-l", str(self.root / "log"),
                 "-o", f"-p {PORT} -k {self.root} -c listen_addresses=''")  # fmt: skip
        try:
            self.run("createdb", "-h", str(self.root), "-p", str(PORT), "-U", "postgres", "wt")
            conn = await asyncpg.connect(host=str(self.root), port=PORT, user="postgres", database="wt")
            try:
                await prepare_tables(conn)
            finally:
                await conn.close()
        finally:
            self.run("pg_ctl", "stop", "-w", "-D", str(self.data))

    def instructions(self, table: str, pairs: int) -> int:
        """Instructions a single-user backend executes for `pairs` receipt/shipment pairs, each its own txn."""
        out = self.root / f"callgrind.{table}.{pairs}"
        command = " ".join(LOOP.format(pairs=pairs, table=table).split()) + "\n"
        subprocess.run(
            as_postgres(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                         str(self.bindir / "postgres"), "--single", "-D", str(self.data),
                         "-c", "synchronous_commit=off", "wt"]),
            input=command, text=True, capture_output=True, check=True, cwd=self.root,
        )  # fmt: skip
        match = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
        if not match:
            raise RuntimeError(f"no instruction total in {out}")
        return int(match.group(1))

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=200, help="receipt/shipment pairs in the longer loop")
    args = p.parse_args()
    if shutil.which("valgrind") is None:
        print("bench-trigger-instructions needs valgrind: apt-get install valgrind", file=sys.stderr)
        return 2
    cluster = ScratchCluster(pg_bindir())
    try:
        await cluster.prepare()
        per_txn = {}
        short = max(args.pairs // 4, 1)
        for table in (PLAIN, TRIGGERED):
            long_run, short_run = cluster.instructions(table, args.pairs), cluster.instructions(table, short)
            per_txn[table] = (long_run - short_run) / (2 * (args.pairs - short))
    finally:
        cluster.remove()
    plain, triggered = per_txn[PLAIN], per_txn[TRIGGERED]
    print(
        f"instructions per single-operation transaction: plain {plain / 1000:,.1f}k, with triggers "
        f"{triggered / 1000:,.1f}k; the triggers cost {(triggered - plain) / 1000:,.1f}k "
        f"(CPU-bound ratio {plain / triggered:.2f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
