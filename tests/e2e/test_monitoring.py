"""The monitoring kit against the running system: Debian's real Prometheus (the version the compose file pins)
with ops/prometheus/alerts.yml, scraping a bridge, the API and both consumers on loopback. Every target is up,
every query of the Grafana dashboard returns data, and the "oldest change" alert (with "no leader") fires when the
bridge is stopped under load (after 60 s, and 30 s pending), and clears after it is started again."""

import asyncio
import contextlib
import json
import math
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from api.auth import Role
from db.load import ensure_reference_data
from tests.api_harness import Api, serve
from tests.bridge_harness import Bridges, load, wait_for_log
from tests.private_stack import REPO, free_port
from tests.service_process import ServiceProcess, wait_until

pytestmark = pytest.mark.e2e
RULES = REPO / "ops" / "prometheus" / "alerts.yml"
DASHBOARD = REPO / "ops" / "grafana" / "dashboards" / "warehouse-tracker.json"


def config(targets: dict[str, list[int]]) -> str:
    """The compose file's scrape configuration, on loopback ports, every second (its own: every 15 s)."""
    jobs = [
        {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{port}" for port in ports]}]}
        for job, ports in targets.items()
    ]
    settings = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    return json.dumps({"global": settings, "rule_files": [str(RULES)], "scrape_configs": jobs})  # YAML ⊃ JSON


class Prometheus:
    def __init__(self, url: str) -> None:
        self.client = httpx.AsyncClient(base_url=url, timeout=5)

    async def query(self, expr: str) -> list[dict[str, object]]:
        r = await self.client.get("/api/v1/query", params={"query": expr})
        assert r.status_code == 200, r.text
        result: list[dict[str, object]] = r.json()["data"]["result"]
        return result

    async def firing(self) -> set[str]:
        alerts = (await self.client.get("/api/v1/alerts")).json()["data"]["alerts"]
        return {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}

    async def targets(self) -> list[dict[str, str]]:
        return [
            {"job": t["labels"]["job"], "health": t["health"]}
            for t in (await self.client.get("/api/v1/targets")).json()["data"]["activeTargets"]
        ]


@contextlib.asynccontextmanager
async def run_prometheus(folder: Path, targets: dict[str, list[int]]) -> AsyncIterator[Prometheus]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("the monitoring test needs Debian's prometheus package: `make prometheus` installs it")
    (folder / "prometheus.yml").write_text(config(targets))
    port = free_port()
    with (folder / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(
            [binary, f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    prometheus = Prometheus(f"http://127.0.0.1:{port}")

    async def ready() -> bool:
        assert proc.poll() is None, (folder / "prometheus.log").read_text()
        try:
            return (await prometheus.client.get("/-/ready")).status_code == 200
        except httpx.TransportError:
            return False

    try:
        await wait_until(ready, "Prometheus to be ready", 30)
        yield prometheus
    finally:
        await prometheus.client.aclose()
        proc.terminate()
        proc.wait(15)


def has_data(result: list[dict[str, object]]) -> bool:
    values = [float(r["value"][1]) for r in result]  # type: ignore[index]
    return bool(values) and not any(math.isnan(v) for v in values)


async def test_every_target_up_every_dashboard_query_answers_and_the_oldest_change_alert_fires_and_clears(
    database_url: str, kafka_bootstrap: str, topic_name: str, bridges: Bridges, tmp_path: Path
) -> None:
    bridge = bridges().start()
    await wait_for_log(bridge, "leader: publishing")
    env = {**os.environ, "DATABASE_URL": database_url, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
           "KAFKA_TOPIC": topic_name, "LOGGER_START": "earliest"}  # fmt: skip
    consumers = [
        ServiceProcess([f"consumers.{name}"], env, tmp_path / f"{name}.log", f"{name.upper()}_METRICS_PORT").start()
        for name in ("logger", "store")
    ]
    conn = await asyncpg.connect(database_url)
    await ensure_reference_data(conn, 50, 5)
    await conn.close()
    loading = asyncio.create_task(load(database_url, loaders=1, operations=10**7, batch=10, pause=0.1))
    try:
        async with serve(database_url, kafka_bootstrap_servers=kafka_bootstrap, kafka_topic=topic_name) as api:
            targets = {
                "bridge": [bridge.metrics_port],
                "api": [int(api.metrics_url.rsplit(":", 1)[1])],
                "consumers": [c.metrics_port for c in consumers],
            }
            async with run_prometheus(tmp_path, targets) as prometheus:
                await watch(prometheus, api, bridge)
    finally:
        loading.cancel()
        await asyncio.gather(loading, return_exceptions=True)
        for consumer in consumers:
            if consumer.running():
                consumer.kill()


async def watch(prometheus: Prometheus, api: Api, bridge: ServiceProcess) -> None:
    async def all_up() -> bool:
        found = await prometheus.targets()
        return len(found) == 4 and all(t["health"] == "up" for t in found)

    await wait_until(all_up, "every target to be up", 30)

    queries = [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]]
    unanswered = set(queries)

    async def every_query_answers() -> bool:
        for path in ("/balances?limit=5", "/status-change-count"):  # the API's panels need requests
            assert (await api.get(path, role=Role.viewer)).status_code == 200
        for query in list(unanswered):
            if has_data(await prometheus.query(query)):
                unanswered.discard(query)
        await asyncio.sleep(0.5)
        return not unanswered

    await wait_until(every_query_answers, f"every dashboard query to return data (left: {unanswered})", 60)
    assert not {"WarehouseOldestChangeUnpublished", "WarehouseBridgeNoLeader"} & await prometheus.firing()

    stopped = asyncio.get_running_loop().time()
    assert bridge.terminate() == 0

    async def fires() -> bool:
        await asyncio.sleep(0.5)
        return {"WarehouseOldestChangeUnpublished", "WarehouseBridgeNoLeader"} <= await prometheus.firing()

    await wait_until(fires, "the oldest-change and no-leader alerts to fire", 180)
    waited = asyncio.get_running_loop().time() - stopped
    # Not before 60 s over the threshold and 30 s pending: the oldest change waiting was made at most a moment
    # before the bridge was told to stop.
    assert waited > 85, f"the oldest-change alert fired {waited:.0f} s after the bridge stopped, not after 90 s"
    backlog = await prometheus.query("max(warehouse_outbox_backlog_events)")
    assert has_data(backlog) and float(backlog[0]["value"][1]) > 0, "under load: changes wait"  # type: ignore[index]

    bridge.start()

    async def clears() -> bool:
        await asyncio.sleep(0.5)
        return not {"WarehouseOldestChangeUnpublished", "WarehouseBridgeNoLeader"} & await prometheus.firing()

    await wait_until(clears, "the alerts to clear after the bridge is back", 60)
