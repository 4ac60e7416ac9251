"""The entity-state table recovers the state that folded the latest event, whatever the write order."""

from __future__ import annotations

from types import SimpleNamespace

import faust
import orjson

from labelstore.processors.tables import EntityStateTable


def record(key: bytes, offset: int | None, partition: int = 0) -> SimpleNamespace:
    value = None if offset is None else orjson.dumps({"state": {"seen": offset}, "labels": {}, "offset": offset})
    return SimpleNamespace(key=key, value=value, message=SimpleNamespace(value=value, partition=partition))


def table() -> EntityStateTable:
    app = faust.App("tables-test", store="memory://", autodiscover=False, Table=EntityStateTable)
    return app.Table("state", partitions=1, key_type=bytes, value_type=bytes)


def offset_of(state_table: EntityStateTable, key: bytes) -> int:
    return orjson.loads(state_table.data[key])["offset"]


def test_a_state_written_late_by_a_paused_worker_does_not_replace_a_newer_one():
    states = table()
    # the new owner folded events 5 and 9; the paused worker woke up and wrote its state after event 7
    states.apply_changelog_batch([record(b"a", 5), record(b"a", 9), record(b"a", 7), record(b"b", 3)])
    assert offset_of(states, b"a") == 9 and offset_of(states, b"b") == 3
    # and across batches: the stored state counts too
    states.apply_changelog_batch([record(b"a", 8), record(b"b", 4)])
    assert offset_of(states, b"a") == 9 and offset_of(states, b"b") == 4


def test_the_same_event_folded_again_and_deletes_still_apply():
    states = table()
    states.apply_changelog_batch([record(b"a", 5)])
    rewritten = record(b"a", 5)  # a state re-evaluated without a new event (a rule switched on) keeps its offset
    rewritten.value = rewritten.message.value = orjson.dumps({"state": {}, "labels": {"x": 1}, "offset": 5})
    states.apply_changelog_batch([rewritten])
    assert orjson.loads(states.data[b"a"])["labels"] == {"x": 1}
    states.apply_changelog_batch([record(b"a", None)])
    assert b"a" not in states.data
