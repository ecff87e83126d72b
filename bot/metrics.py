"""Prometheus metrics for ``GET /metrics``, built from a snapshot, not global state.

Each scrape builds a fresh :class:`prometheus_client.CollectorRegistry` holding one
custom collector over a :class:`MetricsSnapshot` (the store's numbers from
``memory.reports`` plus what only the running process knows: breaker states, the
scheduler's lag, when the digest last went out). Nothing registers in
prometheus-client's default registry, so two runtimes in one process (tests) never
collide.

Series:

- ``soloops_tasks{state}``: tasks in each state (every state, 0 included);
- ``soloops_outbox_depth``: replies waiting to be delivered;
- ``soloops_breaker_state{connector}``: 0 closed, 1 half-open, 2 open;
- ``soloops_action_latency_seconds``: histogram of action attempts in the window;
- ``soloops_scheduler_lag_seconds``: how late the scheduler's last run started;
- ``soloops_digest_last_sent_timestamp_seconds``: when the digest was last delivered.

The last two have no sample until there is something to report.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from memory.reports import StoreMetrics
from memory.tasks import TaskState

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
"""The Content-Type of :func:`metrics_text`'s output (the classic text format)."""

LATENCY_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BREAKER_VALUES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """Everything one scrape reports.

    Attributes:
        tasks: tasks per state (``TaskState`` values); missing states count 0.
        outbox_depth: replies pending delivery.
        breakers: connector -> ``closed`` | ``half_open`` | ``open``.
        action_latencies: seconds per action attempt in the window.
        scheduler_lag_s: how late the last scheduled run started, if one ran.
        digest_last_sent: when the digest was last delivered, if ever.
    """

    tasks: Mapping[str, int] = field(default_factory=dict)
    outbox_depth: int = 0
    breakers: Mapping[str, str] = field(default_factory=dict)
    action_latencies: Sequence[float] = ()
    scheduler_lag_s: float | None = None
    digest_last_sent: datetime | None = None

    @classmethod
    def from_store(
        cls,
        store: StoreMetrics,
        *,
        breakers: Mapping[str, str] | None = None,
        scheduler_lag_s: float | None = None,
        digest_last_sent: datetime | None = None,
    ) -> MetricsSnapshot:
        """The store's numbers plus the process's own."""
        return cls(
            tasks=store.tasks,
            outbox_depth=store.outbox_depth,
            breakers=breakers or {},
            action_latencies=store.action_latencies,
            scheduler_lag_s=scheduler_lag_s,
            digest_last_sent=digest_last_sent,
        )


class SnapshotCollector(Collector):
    """A collector that reports one :class:`MetricsSnapshot`."""

    def __init__(self, snapshot: MetricsSnapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot
        tasks = GaugeMetricFamily("soloops_tasks", "Tasks by state.", labels=["state"])
        for state in TaskState:
            tasks.add_metric([state.value], float(snap.tasks.get(state.value, 0)))
        yield tasks
        yield GaugeMetricFamily(
            "soloops_outbox_depth", "Replies waiting to be delivered.", value=snap.outbox_depth
        )
        breakers = GaugeMetricFamily(
            "soloops_breaker_state",
            "Circuit breaker per connector: 0 closed, 1 half-open, 2 open.",
            labels=["connector"],
        )
        for connector, position in sorted(snap.breakers.items()):
            breakers.add_metric([connector], BREAKER_VALUES.get(position, 2.0))
        yield breakers
        yield _histogram(
            "soloops_action_latency_seconds",
            "How long action attempts took.",
            snap.action_latencies,
        )
        lag = GaugeMetricFamily(
            "soloops_scheduler_lag_seconds", "How late the last scheduled run started."
        )
        if snap.scheduler_lag_s is not None:
            lag.add_metric([], snap.scheduler_lag_s)
        yield lag
        sent = GaugeMetricFamily(
            "soloops_digest_last_sent_timestamp_seconds",
            "When the daily digest was last delivered (Unix time).",
        )
        if snap.digest_last_sent is not None:
            sent.add_metric([], snap.digest_last_sent.timestamp())
        yield sent


def _histogram(name: str, doc: str, values: Sequence[float]) -> HistogramMetricFamily:
    buckets: list[tuple[str, float]] = []
    for bound in LATENCY_BUCKETS:
        buckets.append((repr(bound), float(sum(1 for v in values if v <= bound))))
    buckets.append(("+Inf", float(len(values))))
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=float(sum(values)))


def registry_for(snapshot: MetricsSnapshot) -> CollectorRegistry:
    """A fresh registry (no process or platform collectors) reporting ``snapshot``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    return registry


def metrics_text(snapshot: MetricsSnapshot) -> bytes:
    """The Prometheus text format of ``snapshot`` (serve it with :data:`CONTENT_TYPE`)."""
    return generate_latest(registry_for(snapshot))
