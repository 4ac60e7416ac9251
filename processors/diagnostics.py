"""A worker's consumer, recovery and intakes as plain data: what a stuck worker was waiting for.

Thread stacks (faulthandler) say where each thread waits, and an asyncio task dump where each
task does; neither says which partitions were paused, whether the flow was suspended, how far the
state recovery had read or what the intakes held. This does, from Faust's own bookkeeping; it
only reads, so it is safe to call at any moment (from the watchdog's thread too, at worst seeing
a value mid-update).
"""

from __future__ import annotations

import json
from typing import Any


def consumer_state(app: Any) -> dict[str, Any]:
    consumer, recovery = app.consumer, app.tables.recovery
    assignment = consumer.assignment()
    return {
        "generation_id": app.consumer_generation_id,
        "rebalancing": app.rebalancing,
        "flow_active": consumer.flow_active,
        "flow_control_active": app.flow_control.is_active(),
        "assigned": _tps(assignment),
        "paused": _tps(consumer._paused_partitions),
        "active": _tps(consumer._active_partitions or ()),
        "buffered": _tps(getattr(consumer, "_buffered_partitions", ())),
        "read_offsets": _offsets(consumer._read_offset),
        "committed_offsets": _offsets(consumer._committed_offset),
        "highwaters_seen": {_tp(tp): consumer.highwater(tp) for tp in sorted(assignment)},
        "recovery": {
            "in_recovery": recovery.in_recovery,
            "completed": recovery.completed.is_set(),
            "signal_recovery_end": recovery.signal_recovery_end.is_set(),
            "active_tps": _tps(recovery.active_tps),
            "standby_tps": _tps(recovery.standby_tps),
            "active_offsets": _offsets(recovery.active_offsets),
            "active_highwaters": _offsets(recovery.active_highwaters),
            # Faust keys its recovery buffers by table, not by partition.
            "buffered_changelog_records": {getattr(table, "name", str(table)): len(buffer)
                                           for table, buffer in recovery.buffers.items() if buffer},
            "changelog_queue": app.tables.changelog_queue.qsize(),
        },
        "intakes": {topic: len(intake) for topic, intake in app.intakes.items()},
        "fetcher": getattr(getattr(app, "_fetcher", None), "state", None),
    }


def describe(state: dict[str, Any]) -> str:
    return json.dumps(state, indent=1, sort_keys=True, default=str)


def _tp(tp: Any) -> str:
    return f"{tp.topic}/{tp.partition}"


def _tps(tps: Any) -> list[str]:
    return sorted(_tp(tp) for tp in list(tps))


def _offsets(offsets: Any) -> dict[str, Any]:
    return {_tp(tp): offset for tp, offset in sorted(list(offsets.items()))}
