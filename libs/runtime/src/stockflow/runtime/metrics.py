"""Prometheus metrics shared by every service (names used by deploy/grafana)."""

from prometheus_client import Counter, Gauge, Histogram

MESSAGES_CONSUMED = Counter(
    "stockflow_messages_consumed_total", "Records read from Kafka", ["service", "topic"]
)
MESSAGES_PROCESSED = Counter(
    "stockflow_messages_processed_total",
    "Records applied (or absorbed as duplicates)",
    ["service", "topic", "outcome"],
)
MESSAGES_FAILED = Counter(
    "stockflow_messages_failed_total", "Handler attempts that raised", ["service", "topic"]
)
MESSAGES_DEAD_LETTERED = Counter(
    "stockflow_messages_dead_lettered_total",
    "Records sent to the dead-letter topic",
    ["service", "topic"],
)
HANDLER_SECONDS = Histogram(
    "stockflow_handler_seconds",
    "Time to apply one batch in its transaction",
    ["service", "topic"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
BATCH_SIZE = Histogram(
    "stockflow_batch_size",
    "Records per consumed batch",
    ["service", "topic"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
CONSUMER_LAG = Gauge(
    "stockflow_consumer_lag",
    "Records behind the end of the partition",
    ["service", "group", "topic", "partition"],
)
OUTBOX_PUBLISHED = Counter("stockflow_outbox_published_total", "Outbox rows published", ["service"])
OUTBOX_BACKLOG = Gauge("stockflow_outbox_backlog", "Outbox rows not yet published", ["service"])
OUTBOX_OLDEST_AGE = Gauge(
    "stockflow_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox row", ["service"]
)
INVARIANT_VIOLATIONS = Gauge(
    "stockflow_invariant_violations",
    "Violations found by the last invariant check",
    ["service", "invariant"],
)
HTTP_REQUESTS = Counter(
    "stockflow_http_requests_total", "HTTP requests answered", ["service", "method", "status"]
)
HTTP_SECONDS = Histogram(
    "stockflow_http_request_seconds",
    "HTTP request latency",
    ["service"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
HANDLER_FAILURES = Counter(
    "stockflow_handler_failures_total",
    "Failed attempts to apply a batch or a record, by fault (transient, poison, unknown)",
    ["service", "group", "fault"],
)
CONSUMER_STALLED = Gauge(
    "stockflow_consumer_stalled",
    "1 while the watchdog finds the consumer stalled (fetched records not processed in time, "
    "or its consume loop not running)",
    ["service", "group"],
)
CONSUMER_RESTARTS = Counter(
    "stockflow_consumer_restarts_total",
    "Consumers restarted (rejoined their group) by the watchdog",
    ["service", "group"],
)
