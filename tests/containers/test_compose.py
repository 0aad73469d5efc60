"""docker-compose.yml itself, run with podman-compose (`make test-containers`): both images built, every service
of ours as the compose file says, PostgreSQL and Kafka from the stand-ins (stack/containers/standins.yml). As a new
user would: the first admin key as the docs say, an operation through the published API port, the logger's line,
the store's row, every /readyz ready, the load profile, and the data kept across `down` and `up`."""

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.containers.compose import Compose
from tests.private_stack import REPO, free_port

pytestmark = pytest.mark.containers
OURS = ["bridge", "api", "logger", "store"]
READYZ = {"bridge": 9108, "logger": 9110, "store": 9111}


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Compose]:
    folder = tmp_path_factory.mktemp("compose")
    env_file = folder / ".env"
    port = free_port()
    env_file.write_text(
        (REPO / ".env.example").read_text() + f"API_PORT={port}\nLOAD_OPERATIONS=20000\nLOAD_WORKERS=2\n"
    )
    made = Compose(f"wt{uuid.uuid4().hex[:8]}", env_file, folder / "compose.log", port)
    started = time.monotonic()
    made("build", timeout=1200)
    print(f"images built in {time.monotonic() - started:.0f} s")  # noqa: T201
    try:
        yield made
    finally:
        for service in [*OURS, "migrate", "postgres", "kafka"]:  # kept beside the test's log
            (folder / f"{service}.log").write_text(made.logs(service))
        made("down", "-v", check=False)
        built = made.podman("images", "--format", "{{.Repository}}").stdout.split()
        made.podman("rmi", "--force", *[i for i in built if i.startswith(f"localhost/{made.project}_")], check=False)


def readyz(compose: Compose, service: str) -> int:
    """The status of a service's /readyz, asked inside its container (the ports are not published)."""
    script = (
        "import sys, urllib.request as u, urllib.error as e\n"
        f"try: sys.exit(u.urlopen('http://127.0.0.1:{READYZ[service]}/readyz', timeout=3).status // 100)\n"
        "except e.HTTPError as x: sys.exit(x.code // 100)\n"
    )
    done = compose("exec", "-T", service, "python", "-c", script, check=False)
    return done.returncode * 100


def all_ready(compose: Compose, api: httpx.Client, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        codes = {s: readyz(compose, s) for s in READYZ} | {"api": api.get("/readyz").status_code}
        if set(codes.values()) == {200}:
            return
        assert time.monotonic() < deadline, f"not every service is ready: {codes}"
        time.sleep(2)


def wait_for(what: str, check: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1)


def stored_changes(compose: Compose) -> int:
    sql = "SELECT count(*) FROM status_change_log"
    return int(compose.exec("postgres", "psql", "-U", "warehouse", "-d", "warehouse", "-Atc", sql).strip())


def outbox(compose: Compose) -> int:
    sql = "SELECT count(*) FROM status_change_outbox"
    return int(compose.exec("postgres", "psql", "-U", "warehouse", "-d", "warehouse", "-Atc", sql).strip())


def test_the_compose_file_runs_as_documented(compose: Compose) -> None:
    started = time.monotonic()
    compose.up(*OURS)
    with httpx.Client(base_url=f"http://127.0.0.1:{compose.api_port}", timeout=10) as api:
        as_a_new_user(compose, api, started)


def as_a_new_user(compose: Compose, api: httpx.Client, started: float) -> None:
    all_ready(compose, api)
    print(f"up and ready in {time.monotonic() - started:.0f} s")  # noqa: T201
    for service in OURS:
        assert compose.exec(service, "id", "-u").strip() == "10001", f"{service} runs as its non-root user"

    # The first admin key, as docs/containers.md says: `docker compose exec api python -m api create-key …`.
    key = compose.exec("api", "python", "-m", "api", "create-key", "--name", "admin", "--role", "admin")
    admin = {"Authorization": f"Bearer {key.strip().splitlines()[-1]}"}
    assert api.post("/products", json={"name": "bolt", "low_stock_threshold": 5}, headers=admin).status_code == 201
    assert api.post("/warehouses", json={"name": "North"}, headers=admin).status_code == 201
    receipt = {"operation_type": "receipt", "product_id": 1, "warehouse_id": 1, "quantity": 3}
    r = api.post("/operations", json=receipt, headers=admin)
    assert r.status_code == 201, r.text

    line = "🔔 Статус изменился: товар 1 (склад 1): Закончился → Заканчивается"
    wait_for("the logger's line", lambda: line in compose.logs("logger"))
    wait_for("the store's row", lambda: stored_changes(compose) == 1)

    # The load profile: `docker compose --profile load run --rm load`, LOAD_OPERATIONS from the env file.
    loaded = compose("--profile", "load", "run", "--rm", "load", timeout=600)
    assert "operations written: 20,000" in loaded.stdout, loaded.stdout[-2000:] + loaded.stderr[-2000:]
    count = "SELECT count(*) FROM warehouse_operations"
    assert compose.exec("postgres", "psql", "-U", "warehouse", "-d", "warehouse", "-Atc", count).strip() == "20001"
    wait_for("the bridge to publish the load", lambda: api.get("/readyz").status_code == 200 and outbox(compose) == 0)
    before = api.get("/balances?limit=1000", headers=admin).json()

    # `down` then `up`: the volumes keep the data (balances, the ledger, the key), and the topic goes on.
    compose("down")
    compose.up(*OURS)
    all_ready(compose, api)
    assert api.get("/balances?limit=1000", headers=admin).json() == before
    assert api.get("/operations/1", headers=admin).json()["change"] == 3
    nut = api.post("/products", json={"name": "nut", "low_stock_threshold": 5}, headers=admin).json()["id"]
    assert api.post("/operations", json={**receipt, "product_id": nut}, headers=admin).status_code == 201
    line = f"🔔 Статус изменился: товар {nut} (склад 1): Закончился → Заканчивается"
    wait_for("the new logger's line", lambda: line in compose.logs("logger"))
