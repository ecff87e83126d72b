"""The metrics text: it parses, and carries every soloops_* series with its values."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client.parser import text_string_to_metric_families

from bot.metrics import MetricsSnapshot, metrics_text, registry_for
from memory.reports import StoreMetrics

SENT = datetime(2026, 11, 24, 7, 0, tzinfo=UTC)


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_every_series_parses_with_its_values() -> None:
    snapshot = MetricsSnapshot.from_store(
        StoreMetrics(
            tasks={"succeeded": 7, "dead": 1},
            outbox_depth=3,
            action_latencies=(0.04, 0.3, 2.0, 45.0),
        ),
        breakers={"webhook": "open", "email": "closed", "slack": "half_open"},
        scheduler_lag_s=1.5,
        digest_last_sent=SENT,
    )
    text = metrics_text(snapshot)
    found = samples(text)
    assert found[("soloops_tasks", (("state", "succeeded"),))] == 7
    assert found[("soloops_tasks", (("state", "dead"),))] == 1
    assert found[("soloops_tasks", (("state", "queued"),))] == 0  # every state, 0 included
    assert found[("soloops_outbox_depth", ())] == 3
    assert found[("soloops_breaker_state", (("connector", "webhook"),))] == 2
    assert found[("soloops_breaker_state", (("connector", "slack"),))] == 1
    assert found[("soloops_breaker_state", (("connector", "email"),))] == 0
    assert found[("soloops_action_latency_seconds_count", ())] == 4
    assert found[("soloops_action_latency_seconds_sum", ())] == 47.34
    assert found[("soloops_action_latency_seconds_bucket", (("le", "0.05"),))] == 1
    assert found[("soloops_action_latency_seconds_bucket", (("le", "2.5"),))] == 3
    assert found[("soloops_action_latency_seconds_bucket", (("le", "+Inf"),))] == 4
    assert found[("soloops_scheduler_lag_seconds", ())] == 1.5
    assert found[("soloops_digest_last_sent_timestamp_seconds", ())] == SENT.timestamp()
    assert b"# TYPE soloops_action_latency_seconds histogram" in text
    assert not any(not name.startswith("soloops_") for name, _ in found)


def test_unknown_values_have_no_sample_and_registries_are_independent() -> None:
    empty = samples(metrics_text(MetricsSnapshot()))
    names = {name for name, _ in empty}
    assert "soloops_scheduler_lag_seconds" not in names
    assert "soloops_digest_last_sent_timestamp_seconds" not in names
    assert empty[("soloops_action_latency_seconds_count", ())] == 0
    one = registry_for(MetricsSnapshot(outbox_depth=1))
    two = registry_for(MetricsSnapshot(outbox_depth=2))
    assert one.get_sample_value("soloops_outbox_depth") == 1
    assert two.get_sample_value("soloops_outbox_depth") == 2
