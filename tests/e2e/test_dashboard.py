"""The dashboard in a real headless Chromium (Debian's chromium, driven by chromedriver through Selenium), with
the bridge running: it loads with a key, shows the counter and the totals, and a new status change appears in
its live feed within 2 s of the commit. A screenshot is saved to tests/artifacts/dashboard.png."""

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from api.auth import Role
from tests.api_harness import Api, serve
from tests.bridge_harness import Bridges, wait_for_log

pytestmark = pytest.mark.e2e
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.fail("the dashboard test needs Debian's chromium and chromium-driver: `make browser` installs them")
    options = Options()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    yield chrome
    chrome.quit()


@pytest.fixture
async def dashboard_api(
    database_url: str, kafka_bootstrap: str, topic_name: str, bridges: Bridges, db: asyncpg.Connection
) -> AsyncIterator[Api]:
    bridge = bridges().start()
    await wait_for_log(bridge, "leader: publishing")
    await db.execute("INSERT INTO products (name, low_stock_threshold) VALUES ('bolt', 5), ('nut', 5)")
    await db.execute("INSERT INTO warehouses (name) VALUES ('North')")
    await db.execute(
        "INSERT INTO warehouse_operations (product_id, warehouse_id, quantity, operation_type)"
        " VALUES (1, 1, 3, 'receipt')"
    )
    await db.execute(  # history for the chart, as consumers.store would have kept it
        """INSERT INTO status_change_log (event_id, occurred_at, product_id, warehouse_id, old_status, new_status,
                                          quantity, operation_id, kafka_partition, kafka_offset)
           SELECT gen_random_uuid(), now() - (g % 40) * interval '1 minute', 1, 1, 'available', 'running_low', 3,
                  NULL, 0, g
             FROM generate_series(1, 200) g WHERE g % 40 < g % 7 * 6"""
    )
    async with serve(database_url, kafka_bootstrap_servers=kafka_bootstrap, kafka_topic=topic_name) as api:
        yield api


def text_becomes(browser: webdriver.Chrome, element_id: str, text: str, timeout: float = 10) -> None:
    WebDriverWait(browser, timeout, poll_frequency=0.05).until(
        lambda b: b.find_element(By.ID, element_id).text == text,
        f"#{element_id} never showed {text!r}",
    )


async def test_the_dashboard_shows_counts_and_a_new_change_within_2_s(
    dashboard_api: Api, browser: webdriver.Chrome
) -> None:
    api = dashboard_api
    count = (await api.get("/status-change-count")).json()["status_changes"]
    totals = (await api.get("/status-totals")).json()
    assert (count, totals) == (1, {"available": 0, "running_low": 1, "out_of_stock": 0})

    await asyncio.to_thread(browser.get, f"{api.url}/dashboard#key={api.keys[Role.viewer]}")
    await asyncio.to_thread(text_becomes, browser, "counter", "1")
    await asyncio.to_thread(text_becomes, browser, "total-running_low", "1")
    await asyncio.to_thread(text_becomes, browser, "connection", "live")
    rows = await asyncio.to_thread(texts, browser, "#attention tbody tr")
    assert [r.split()[:4] for r in rows] == [["bolt", "North", "3", "running"]]
    assert "key=" not in browser.current_url, "the key is taken out of the address bar"

    body = {"operation_type": "receipt", "product_id": 2, "warehouse_id": 1, "quantity": 50}
    r = await api.post("/operations", body, role=Role.operator)
    committed = time.monotonic()
    assert r.status_code == 201

    def feed_shows_product_2() -> None:
        WebDriverWait(browser, 10, poll_frequency=0.05).until(
            lambda b: b.find_elements(By.CSS_SELECTOR, '#feed li[data-product="2"]'), "no live change for product 2"
        )

    try:
        await asyncio.to_thread(feed_shows_product_2)
        shown_after = time.monotonic() - committed
        item = await asyncio.to_thread(browser.find_element, By.CSS_SELECTOR, '#feed li[data-product="2"]')
        assert "nut (North): out of stock → available" in item.text
        await asyncio.to_thread(text_becomes, browser, "counter", "2")
        await asyncio.to_thread(text_becomes, browser, "total-available", "1")
        bars = await asyncio.to_thread(
            browser.execute_script, "return Chart.getChart('chart').data.datasets[0].data.reduce((a, b) => a + b, 0)"
        )
        assert bars == await api_count(api), "the chart shows every stored change of the last hour"
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        await asyncio.to_thread(browser.save_screenshot, str(ARTIFACTS / "dashboard.png"))
    assert shown_after < 2, f"the change appeared {shown_after:.2f} s after its commit"
    logs = await asyncio.to_thread(browser.get_log, "browser")
    assert not [entry for entry in logs if entry["level"] == "SEVERE"], logs  # e.g. a Content-Security-Policy refusal


def texts(browser: webdriver.Chrome, selector: str) -> list[str]:
    """The text of every element `selector` matches, read in one script: the page replaces a table's rows while
    it refreshes, so an element found in one call may be gone by the next (StaleElementReferenceException)."""
    script = "return Array.from(document.querySelectorAll(arguments[0]), e => e.innerText.replace(/\\s+/g, ' ').trim())"
    found: list[str] = browser.execute_script(script, selector)
    return found


def rows_of(browser: webdriver.Chrome, table: str, at_least: int = 1, timeout: float = 10) -> list[str]:
    """The rows' text of a table, once it has at least `at_least`."""
    rows: list[str] = []

    def enough(b: webdriver.Chrome) -> bool:
        rows[:] = texts(b, f"#{table} tbody tr")
        return len(rows) >= at_least

    WebDriverWait(browser, timeout, poll_frequency=0.05).until(enough, f"#{table} has fewer than {at_least} rows")
    return rows


async def test_names_a_warehouse_a_product_search_one_pair_and_the_reports(
    dashboard_api: Api, browser: webdriver.Chrome, db: asyncpg.Connection
) -> None:
    api = dashboard_api
    await db.execute("INSERT INTO warehouses (name) VALUES ('South')")
    body = {"operation_type": "receipt", "product_id": 2, "warehouse_id": 2, "quantity": 20}
    assert (await api.post("/operations", body, role=Role.operator)).status_code == 201
    body = {"product_id": 1, "from_warehouse_id": 1, "to_warehouse_id": 2, "quantity": 2}
    assert (await api.post("/transfers", body, role=Role.operator)).status_code == 201

    await asyncio.to_thread(browser.get, f"{api.url}/dashboard#key={api.keys[Role.viewer]}")
    await asyncio.to_thread(text_becomes, browser, "connection", "live")
    try:
        rows = await asyncio.to_thread(rows_of, browser, "attention", 2)
        assert sorted(r.split()[:3] for r in rows) == [["bolt", "North", "1"], ["bolt", "South", "2"]]

        def choose_south() -> None:
            Select(browser.find_element(By.ID, "warehouse")).select_by_visible_text("South")
            WebDriverWait(browser, 10, poll_frequency=0.05).until(
                lambda b: [r.split()[:2] for r in texts(b, "#attention tbody tr")] == [["bolt", "South"]],
                "the warehouse selector did not narrow the list to South",
            )
            Select(browser.find_element(By.ID, "warehouse")).select_by_visible_text("all warehouses")

        await asyncio.to_thread(choose_south)

        def find_bolt() -> list[str]:
            browser.find_element(By.ID, "product-search").send_keys("BOL")
            browser.find_element(By.CSS_SELECTOR, "#search button").click()
            return rows_of(browser, "product-results", 2)

        found = await asyncio.to_thread(find_bolt)
        assert sorted(r.split()[:3] for r in found) == [["bolt", "North", "1"], ["bolt", "South", "2"]]

        def open_north() -> None:
            browser.find_element(By.CSS_SELECTOR, '#product-results tr[data-warehouse="1"]').click()
            text_becomes(browser, "pair-title", "bolt at North")

        await asyncio.to_thread(open_north)
        await asyncio.to_thread(text_becomes, browser, "pair-balance", "1 — running low")
        movements = await asyncio.to_thread(rows_of, browser, "pair-movements", 2)
        assert movements[0].endswith("transfer out -2 test-operator") and "receipt +3" in movements[1]
        history = await asyncio.to_thread(rows_of, browser, "pair-history", 20)
        assert all("available → running low" in h for h in history)
        await asyncio.to_thread(browser.save_screenshot, str(ARTIFACTS / "dashboard-pair.png"))

        def open_reports() -> tuple[list[str], list[str], str, list[str]]:
            browser.find_element(By.CSS_SELECTOR, 'nav button[data-view="reports"]').click()
            movements = rows_of(browser, "report-movements", 2)
            outs = rows_of(browser, "report-stock-outs", 1)
            [total] = texts(browser, "#report-movements tfoot tr")
            labels = browser.execute_script("return Chart.getChart('stock-outs-chart').data.labels")
            return movements, outs, total, labels

        movements, outs, total, labels = await asyncio.to_thread(open_reports)
        assert movements == ["North 3 0 0 2 0 1", "South 20 0 2 0 0 22"]
        assert total == "total 23 0 2 2 0 23"
        assert outs[0].startswith("bolt North") and labels[0] == "bolt at North"
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        await asyncio.to_thread(browser.save_screenshot, str(ARTIFACTS / "dashboard-reports.png"))
    logs = await asyncio.to_thread(browser.get_log, "browser")
    assert not [entry for entry in logs if entry["level"] == "SEVERE"], logs


async def api_count(api: Api) -> int:
    minutes = (await api.get("/status-changes/per-minute?minutes=60")).json()
    return sum(m["changes"] for m in minutes)


async def test_a_wrong_key_is_told_so_and_nothing_is_shown(dashboard_api: Api, browser: webdriver.Chrome) -> None:
    await asyncio.to_thread(browser.get, f"{dashboard_api.url}/dashboard#key=wt_wrong")
    await asyncio.to_thread(
        WebDriverWait(browser, 10, poll_frequency=0.05).until,
        lambda b: "does not work" in b.find_element(By.ID, "login-error").text,
    )
    assert not (await asyncio.to_thread(browser.find_element, By.ID, "board")).is_displayed()


async def test_the_api_docs_load_swagger_ui_from_this_origin_under_the_pages_csp(
    api: Api, browser: webdriver.Chrome
) -> None:
    """Swagger UI is vendored: the page loads with nothing from the internet, every operation listed, and the
    browser reports no refusal of the Content-Security-Policy (which allows only this origin's scripts)."""
    page = await api.client.get("/docs")
    assert "script-src" not in page.headers["content-security-policy"]  # default-src 'self' covers scripts
    assert "http" not in page.text, "the page names no other origin"
    operations = sum(len(ops) for ops in (await api.client.get("/openapi.json")).json()["paths"].values())
    await asyncio.to_thread(browser.get, f"{api.url}/docs")
    await asyncio.to_thread(
        WebDriverWait(browser, 20, poll_frequency=0.1).until,
        lambda b: len(b.find_elements(By.CSS_SELECTOR, ".opblock")) == operations,
        "Swagger UI did not list every operation",
    )
    loaded = await asyncio.to_thread(
        browser.execute_script, "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert loaded and all(url.startswith(api.url) for url in loaded), loaded
    logs = await asyncio.to_thread(browser.get_log, "browser")
    assert not [entry for entry in logs if entry["level"] == "SEVERE"], logs
