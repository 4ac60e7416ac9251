"""Malformed records, as a buggy or hostile producer writes them past the SDK's checks.

Each kind is made from a good event of the log it is mixed into (its entity's topic, its key), so
it lands among the events it would disturb. ``EXPECTED`` gives the dead-letter error types a kind
may earn: one, except where the bytes decide (another event type's payload may or may not decode
under the fingerprint's schema).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from random import Random

from labelstore.events.models import Event
from labelstore.schemas.codec import HEADER_SIZE, MAGIC, AvroCodec

# Epoch ms of 10000-01-01: a datetime cannot hold it, Avro's long can.
PAST_DATETIME_MS = 253_402_300_800_000

EXPECTED: dict[str, frozenset[str]] = {
    "random bytes": frozenset({"CorruptMessageError"}),
    "truncated Avro": frozenset({"CorruptMessageError"}),
    "unknown fingerprint": frozenset({"UnknownSchemaError"}),
    "key is not the entity id": frozenset({"key-mismatch"}),
    "over the size limit": frozenset({"too-large"}),
    "event time before 1970": frozenset({"event-time-out-of-range"}),
    "event time in year 9999": frozenset({"event-time-out-of-range"}),
    "event time past year 9999": frozenset({"timestamp-out-of-range"}),
    "another event type's fingerprint": frozenset({"wrong-event-type", "CorruptMessageError"}),
    "field outside its constraints": frozenset({"invalid-event"}),
}
KINDS = tuple(EXPECTED)


@dataclass(frozen=True)
class Malformed:
    kind: str
    entity_type: str
    key: bytes | None
    value: bytes


class MalformedRecords:
    """Makes each kind of malformed record from a good event."""

    def __init__(self, codec: AvroCodec, *, max_event_bytes: int, seed: int = 0) -> None:
        self.codec = codec
        self.max_event_bytes = max_event_bytes
        self.rng = Random(seed)
        current = codec.schema_set.current.values()
        self._fingerprints = {s.event_type: s.fingerprint for s in current}
        self._siblings = {s.event_type: [o.event_type for o in current if o.entity_type == s.entity_type
                                         and o.event_type != s.event_type] for s in current}
        self._makers: dict[str, Callable[[Event], tuple[bytes | None, bytes]]] = {
            "random bytes": self._random_bytes,
            "truncated Avro": self._truncated,
            "unknown fingerprint": self._unknown_fingerprint,
            "key is not the entity id": self._other_key,
            "over the size limit": self._too_large,
            "event time before 1970": lambda e: self._at(e, datetime(1969, 12, 31, tzinfo=UTC) - self._days(20_000)),
            "event time in year 9999": lambda e: self._at(e, datetime(9999, 1, 1, tzinfo=UTC) + self._days(360)),
            "event time past year 9999": lambda e: self._at(e, PAST_DATETIME_MS + self.rng.randrange(10**15)),
            "another event type's fingerprint": self._other_fingerprint,
            "field outside its constraints": lambda e: self._encoded(e, source=""),
        }

    def make(self, kind: str, event: Event) -> Malformed:
        key, value = self._makers[kind](event)
        return Malformed(kind, event.entity_type, key, value)

    def evenly(self, count: int, events: Sequence[Event]) -> Iterator[Malformed]:
        """``count`` malformed records, the kinds in turn, each from a randomly chosen event."""
        for index in range(count):
            yield self.make(KINDS[index % len(KINDS)], self.rng.choice(events))

    def _random_bytes(self, event: Event) -> tuple[bytes, bytes]:
        value = self.rng.randbytes(self.rng.randint(1, 300))
        return event.entity_id.encode(), bytes([value[0] & 0x7F]) + value[1:]  # never the magic's C3

    def _truncated(self, event: Event) -> tuple[bytes, bytes]:
        value = self._encoded(event)[1]
        return event.entity_id.encode(), value[:self.rng.randrange(HEADER_SIZE + 1, len(value))]

    def _unknown_fingerprint(self, event: Event) -> tuple[bytes, bytes]:
        value = self._encoded(event)[1]
        fingerprint = self.rng.randbytes(8)
        assert fingerprint not in self._fingerprints.values()
        return event.entity_id.encode(), MAGIC + fingerprint + value[HEADER_SIZE:]

    def _other_key(self, event: Event) -> tuple[bytes, bytes]:
        return f"{event.entity_id}-{self.rng.randrange(10**6)}".encode(), self._encoded(event)[1]

    def _too_large(self, event: Event) -> tuple[bytes, bytes]:
        # A valid event but for its size: without the limit it would be folded.
        return self._encoded(event, source="s" * (self.max_event_bytes + self.rng.randrange(1, 1_000)))

    def _other_fingerprint(self, event: Event) -> tuple[bytes, bytes]:
        value = self._encoded(event)[1]
        other = self.rng.choice(self._siblings[event.event_type])
        return event.entity_id.encode(), MAGIC + self._fingerprints[other] + value[HEADER_SIZE:]

    def _at(self, event: Event, event_time: datetime | int) -> tuple[bytes, bytes]:
        return self._encoded(event, event_time=event_time)

    def _encoded(self, event: Event, **changes: object) -> tuple[bytes, bytes]:
        return event.entity_id.encode(), self.codec.encode(event.event_type, {**event.to_record(), **changes})

    def _days(self, most: int) -> timedelta:
        return timedelta(days=self.rng.randrange(most), milliseconds=self.rng.randrange(86_400_000))
