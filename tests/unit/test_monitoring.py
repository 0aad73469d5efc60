"""The monitoring kit in ops/: Prometheus's configuration and alert rules are valid (`promtool check`), each
alert fires when it should and not before (`promtool test rules` on ops/prometheus/alerts.test.yml), and the
Grafana dashboard queries only metrics the processes export. Against a running system: tests/e2e/test_monitoring.py."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from api.metrics import RequestMetrics
from bridge.metrics import BridgeMetrics
from consumers.runner import ConsumerMetrics

OPS = Path(__file__).resolve().parents[2] / "ops"
PROMETHEUS = OPS / "prometheus"
DASHBOARD = OPS / "grafana" / "dashboards" / "warehouse-tracker.json"


def promtool(*args: str) -> str:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("the monitoring tests need Debian's prometheus package (promtool): `make prometheus` installs it")
    done = subprocess.run([tool, *args], cwd=PROMETHEUS, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_configuration_and_the_rules_are_valid() -> None:
    assert "SUCCESS" in promtool("check", "config", "prometheus.yml")
    assert "6 rules found" in promtool("check", "rules", "alerts.yml")


def test_each_alert_fires_when_it_should_and_not_before() -> None:
    promtool("test", "rules", "alerts.test.yml")
    tested = set(re.findall(r"alertname: (\w+)", (PROMETHEUS / "alerts.test.yml").read_text()))
    alerts = set(re.findall(r"- alert: (\w+)", (PROMETHEUS / "alerts.yml").read_text()))
    assert tested == alerts, f"alerts without a unit test: {sorted(alerts - tested)}"


def dashboard_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def exported() -> set[str]:
    """Every series name the processes export (histograms with their _bucket, _sum and _count), and Prometheus's
    own `up`."""
    registries: list[CollectorRegistry] = [
        BridgeMetrics().registry, RequestMetrics().registry,
        ConsumerMetrics("logger").registry, ConsumerMetrics("store").registry,
    ]  # fmt: skip
    names = {"up"}
    for registry in registries:
        for family in registry.collect():  # a labelled family has no samples before its first use
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(family.type, [""])
            names |= {family.name + suffix for suffix in suffixes}
    return names


def test_the_dashboard_queries_only_metrics_the_processes_export() -> None:
    queries = dashboard_queries()
    assert len(queries) >= 10
    names = exported()
    for query in queries:
        patterns = re.findall(r'__name__=~"([^"]+)"', query)
        named = set(re.findall(r"\b(warehouse_\w+|process_\w+|up)\b", re.sub(r'"[^"]*"', "", query)))
        assert named or patterns, query
        assert named <= names, f"{query} asks for {sorted(named - names)}, which no process exports"
        for pattern in patterns:
            assert {name for name in names if re.fullmatch(pattern, name)}, f"{query}: {pattern} matches nothing"
