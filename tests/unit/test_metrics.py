"""The metrics every process exposes: their names, types and labels are a contract with dashboards and alerts
(docs/operations.md lists them), and each process also exposes the library's process metrics."""

from api.metrics import RequestMetrics
from bridge.metrics import BridgeMetrics
from common.metrics import exposition
from consumers.runner import ConsumerMetrics
from tests.service_process import sample

PROCESS = {
    "process_resident_memory_bytes": "gauge",
    "process_cpu_seconds_total": "counter",
    "process_open_fds": "gauge",
    "process_max_fds": "gauge",
    "process_start_time_seconds": "gauge",
}


def families(text: str) -> dict[str, str]:
    """Metric name → type, from the `# TYPE` lines."""
    return {line.split()[2]: line.split()[3] for line in text.splitlines() if line.startswith("# TYPE ")}


def ours(found: dict[str, str]) -> dict[str, str]:
    return {name: kind for name, kind in found.items() if name.startswith("warehouse_")}


def test_the_bridge_exposes_its_metrics_and_the_process_ones() -> None:
    found = families(exposition(BridgeMetrics().registry).decode())
    assert ours(found) == {
        "warehouse_bridge_events_published_total": "counter",
        "warehouse_bridge_outbox_backlog_events": "gauge",
        "warehouse_bridge_outbox_oldest_age_seconds": "gauge",
        "warehouse_bridge_change_to_kafka_commit_seconds": "histogram",
        "warehouse_bridge_batch_events": "histogram",
        "warehouse_bridge_leader": "gauge",
        "warehouse_bridge_notification_queue_usage": "gauge",
    }
    assert PROCESS.items() <= found.items()


def test_a_committed_batch_counts_its_events_and_their_latency() -> None:
    metrics = BridgeMetrics()
    metrics.committed([100.0, 100.5, 101.0], committed_at=101.01)
    text = exposition(metrics.registry).decode()
    assert sample("warehouse_bridge_events_published_total", text) == 3
    assert sample("warehouse_bridge_batch_events_sum", text) == 3
    latency = "warehouse_bridge_change_to_kafka_commit_seconds_bucket"
    assert [sample(latency, text, le=le) for le in ("0.025", "1.0", "2.5", "+Inf")] == [1, 2, 3, 3]
    assert "_created" not in text


def test_each_consumer_exposes_its_counters_and_the_process_ones() -> None:
    for name in ("logger", "store"):
        found = families(exposition(ConsumerMetrics(name).registry).decode())
        assert ours(found) == {
            f"warehouse_{name}_events_total": "counter",
            f"warehouse_{name}_skipped_messages_total": "counter",
            "warehouse_consumer_lag_messages": "gauge",
        }
        assert PROCESS.items() <= found.items()


def test_the_api_counts_requests_by_method_route_and_code() -> None:
    metrics = RequestMetrics()
    for status in (200, 200, 404):
        metrics.observe("GET", "/balances/product/{product_id}", status, 0.003)
    metrics.cut("headers")
    text = exposition(metrics.registry).decode()
    assert ours(families(text)) == {
        "warehouse_api_requests_total": "counter",
        "warehouse_api_request_duration_seconds": "histogram",
        "warehouse_api_connections_cut_total": "counter",
        "warehouse_outbox_backlog_events": "gauge",
        "warehouse_outbox_oldest_age_seconds": "gauge",
    }
    assert sample("warehouse_api_connections_cut_total", text, reason="headers") == 1
    assert PROCESS.items() <= families(text).items()
    route = {"method": "GET", "route": "/balances/product/{product_id}"}
    assert sample("warehouse_api_requests_total", text, **route, code="200") == 2
    assert sample("warehouse_api_requests_total", text, **route, code="404") == 1
    assert sample("warehouse_api_request_duration_seconds_bucket", text, **route, le="0.0025") == 0
    assert sample("warehouse_api_request_duration_seconds_bucket", text, **route, le="0.005") == 3
