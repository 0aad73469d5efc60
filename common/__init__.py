"""What every process shares, one module per concern:

- `common.settings`: the settings every process reads (LOG_FORMAT) and the Kafka ones (KAFKA_BOOTSTRAP_SERVERS,
  KAFKA_TOPIC); PostgreSQL's are `db.config`;
- `common.retry`: surviving an outage: the backoff, the retry loop, one log line per outage;
- `common.stopping`: SIGINT/SIGTERM as a stop event, and work that gives way to it;
- `common.metrics`: each process's Prometheus registry, and its /metrics, /healthz and /readyz endpoints;
- `common.logs`: the one logging setup: readable lines, or JSON lines with LOG_FORMAT=json; no API key in any;
- `common.kafka`: whether Kafka answers, for the processes that read it;
- `common.keys`: the API key's format, which the API makes keys in and the logs redact by.

What "the PostgreSQL connection is lost" and "worth a retry" mean is `db.errors`.
"""
