"""Drift alerts as JSON records on the ``labels.alerts`` topic, keyed by label.

JSON, not Avro: alerts are few, read by people and by whatever pages the on-call engineer
(a chat hook, an incident tool), and their shape is the project's, not a repository's schema.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from labelstore.errors import LabelstoreError
from labelstore.offline.monitor import Drift, LabelReport
from labelstore.settings import Settings

ALERTS_PARTITIONS = 1  # few records, read in the order they were raised


def alert_record(report: LabelReport, drift: Drift, computed_at: datetime) -> dict[str, Any]:
    """What an alert says: which label, windows and statistic, against which threshold."""
    return {
        "label": drift.label, "rule_version": drift.rule_version, "window": report.window, "axis": report.axis,
        "reference": {"start": drift.reference[0].isoformat(), "end": drift.reference[1].isoformat()},
        "current": {"start": drift.current[0].isoformat(), "end": drift.current[1].isoformat()},
        "statistic": drift.statistic, "value": drift.value, "threshold": drift.threshold, "p_value": drift.p_value,
        "reference_labels": drift.reference_labels, "current_labels": drift.current_labels,
        "computed_at": computed_at.isoformat(),
    }


def publish_alerts(settings: Settings, reports: Sequence[LabelReport], *, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Publish one record per crossed threshold (creating the topic if missing); returns them."""
    from confluent_kafka import Producer

    from labelstore.events.admin import TopicSpec, ensure_topics
    from labelstore.events.publisher import producer_config

    computed_at = datetime.now(UTC)
    records = [alert_record(report, drift, computed_at) for report in reports for drift in report.crossed]
    if not records:
        return []
    topic = settings.topics.alerts_topic
    ensure_topics(settings, [TopicSpec(topic, ALERTS_PARTITIONS, settings.kafka.replication_factor,
                                       {"cleanup.policy": "delete"})], timeout=timeout)
    producer = Producer(producer_config(settings))
    failures: list[str] = []

    def delivered(error, _message) -> None:
        if error is not None:
            failures.append(str(error))

    for record in records:
        producer.produce(topic, key=record["label"].encode(), value=json.dumps(record).encode(), on_delivery=delivered)
    left = producer.flush(timeout)
    if failures or left:
        reason = failures[0] if failures else f"{left} not acknowledged within {timeout:.0f} s"
        raise LabelstoreError(f"could not publish {len(records)} alert(s) to {topic}: {reason}")
    return records
