"""Process-wide Prometheus metrics, served by ``accoil-sync serve`` at ``/metrics``.

One registry of our own rather than the library's global one, so nothing else in the process leaks into
our exposition and tests can read values without scraping.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

RUNS = Counter("accoil_sync_runs", "Sync runs by final status", ["status", "trigger"], registry=REGISTRY)
RECORDS = Counter(
    "accoil_sync_records", "Records per destination by outcome", ["destination", "outcome"], registry=REGISTRY
)
API_CALLS = Counter("accoil_sync_api_calls", "HTTP requests sent to vendors", ["vendor"], registry=REGISTRY)
RETRIES = Counter(
    "accoil_sync_retries", "Requests retried after a retryable error", ["vendor"], registry=REGISTRY
)
THROTTLED = Counter("accoil_sync_rate_limited", "429 answers received", ["vendor"], registry=REGISTRY)
RUN_SECONDS = Histogram(
    "accoil_sync_run_duration_seconds",
    "Wall time of sync runs",
    buckets=(1, 5, 15, 60, 300, 900, 3600, 4 * 3600),
    registry=REGISTRY,
)
LAST_SUCCESS = Gauge(
    "accoil_sync_last_success_timestamp_seconds",
    "When the last run without failures ended",
    registry=REGISTRY,
)
RUN_IN_PROGRESS = Gauge("accoil_sync_run_in_progress", "1 while this process runs a sync", registry=REGISTRY)
CARD_REQUESTS = Counter(
    "accoil_sync_card_requests", "Card endpoint requests", ["endpoint", "status"], registry=REGISTRY
)
CARD_LATENCY = Histogram(
    "accoil_sync_card_request_duration_seconds",
    "Card endpoint latency, signature check to response body",
    ["endpoint"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
    registry=REGISTRY,
)
