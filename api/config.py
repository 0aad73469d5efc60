"""The API's settings, from the environment (or .env)."""

from pydantic import Field

from common.settings import KafkaSettings
from db.config import DatabaseSettings


class ApiSettings(DatabaseSettings, KafkaSettings):
    api_host: str = "0.0.0.0"
    """Address the API listens on."""
    api_port: int = Field(default=8000, ge=1, le=65535)
    """Port the API listens on (OpenAPI docs at /docs)."""
    api_metrics_host: str = "127.0.0.1"
    """Address of the API's /metrics (and /healthz, /readyz again): loopback by default, off public interfaces; a
    container sets 0.0.0.0 and publishes nothing."""
    api_metrics_port: int = Field(default=9109, ge=1, le=65535)
    """Port of the API's /metrics, /healthz and /readyz, apart from the API's own: no key, no PostgreSQL needed."""
    api_pool_size: int = Field(default=10, ge=1, le=200)
    """Most PostgreSQL connections the API holds; requests beyond it queue for one."""
    api_statement_timeout: float = Field(default=30.0, gt=0, le=3600)
    """Seconds a query may run (a threshold change waits for running writers) before the request fails with 503."""
    api_key_cache_seconds: float = Field(default=5.0, ge=0, le=300)
    """How long a process trusts an API key it has checked (and remembers an unknown one); a key revoked elsewhere
    stops working, and its live streams end, within this (0: every request asks; streams are checked each second)."""
    api_auth_failures_per_minute: int = Field(default=30, ge=1, le=100_000)
    """Failed authentications a client address (IPv6: its /64) may make per minute in each API process (a burst of
    as many, refilled evenly); beyond it, a key this process does not know to be good gets 429 with Retry-After,
    unchecked. Behind a proxy, set uvicorn's FORWARDED_ALLOW_IPS to its address so the client's own address counts."""
    api_access_log: bool = False
    """One log line per request. Off by default: /metrics counts requests by route and status code."""
    api_live_queue: int = Field(default=1000, ge=1, le=100_000)
    """Events a live client may fall behind by; past it, it is dropped with a reason (others are not slowed)."""
    api_header_timeout: float = Field(default=10.0, gt=0, le=600)
    """Seconds a connection has to send a request's headers from opening (else a 408, and it is closed) or from its
    previous response (else it is closed)."""
    api_body_timeout: float = Field(default=30.0, gt=0, le=600)
    """Seconds a request has to send its body once its headers are in; else a 408 and the connection closed."""
    api_max_connections: int = Field(default=1000, ge=1, le=100_000)
    """Most connections open at once, live streams included; a new one beyond it gets a 503 and is closed."""
    api_idempotency_hours: int = Field(default=24, ge=1, le=24 * 90)
    """How long a write's Idempotency-Key is remembered (its result is replayed to a retry)."""
