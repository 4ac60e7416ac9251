"""Which records of an entity topic are events: one decision for the processor and the archive.

The processor sends a rejected record to the dead-letter topic; the materializer leaves it out of
the events archive. Both use ``admit``, so the offline re-fold sees exactly the events the
processor folded.

A record is an event if, in this order: its key and value together are at most
``max_event_bytes``; it has a key and a value; its bytes decode under the writer schema its
fingerprint names; that schema's entity type is the topic's, and the record's own ``entity_type``
and ``event_type`` fields are the schema's (bytes of one event type under another's fingerprint
can decode cleanly: a tag-adding event read as its tag-removing twin inverts it); the key is
its ``entity_id``; its ``event_time`` lies from 1970-01-01T00:00:00Z up to
``event_time_max_ahead_s`` after the broker recorded it; its payload passes the schema's
constraints; and its entity declares operations for its event type. Each failed check has its
own ``Rejection.error_type`` (the kind) and a reason naming the field or sizes at fault.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

from labelstore.events.exceptions import InvalidEventError
from labelstore.fold import EPOCH
from labelstore.schemas.codec import AvroCodec, DecodedEvent
from labelstore.schemas.exceptions import DecodeError
from labelstore.settings import ProcessorSettings

if TYPE_CHECKING:
    from labelstore.declarations import EntityDeclaration
    from labelstore.events.checks import DecodedChecks
    from labelstore.events.typed import EventTypes
    from labelstore.repository import RepositoryWatch

log = logging.getLogger("labelstore.intake")

# Rejections a worker may owe to its own copy of the repository being older than the writer's:
# it looks at the repository again before it dead-letters such a record.
UNKNOWN_TO_THIS_WORKER = frozenset({"UnknownSchemaError", "UnknownEventTypeError", "unfoldable-event"})
_EVENT_TYPES: WeakKeyDictionary[AvroCodec, EventTypes] = WeakKeyDictionary()
_CHECKS: WeakKeyDictionary[AvroCodec, DecodedChecks] = WeakKeyDictionary()


def event_types_of(codec: AvroCodec) -> EventTypes:
    """The typed events of a codec's schemas, built once per codec (it builds a model per event type)."""
    if codec not in _EVENT_TYPES:
        from labelstore.events.typed import EventTypes

        _EVENT_TYPES[codec] = EventTypes(codec.schema_set)
    return _EVENT_TYPES[codec]


def checks_of(codec: AvroCodec) -> DecodedChecks:
    """What a record decoded by ``codec`` must pass beyond Avro (``labelstore.events.checks``), built once."""
    if codec not in _CHECKS:
        from labelstore.events.checks import DecodedChecks

        _CHECKS[codec] = DecodedChecks(event_types_of(codec))
    return _CHECKS[codec]


@dataclass(frozen=True)
class Rejection:
    error_type: str
    reason: str


@dataclass(frozen=True)
class Limits:
    """What an event record may be beyond its schema (see ``ProcessorSettings``)."""

    max_event_bytes: int
    event_time_max_ahead_ms: int

    @classmethod
    def of(cls, settings: ProcessorSettings) -> Limits:
        return cls(settings.max_event_bytes, round(settings.event_time_max_ahead_s * 1000))


DEFAULT_LIMITS = Limits.of(ProcessorSettings())
SHOWN_CHARACTERS = 120  # of a key or field quoted in a reason: a hostile record's can be megabytes


def admit(entity_type: str, key: bytes | None, value: bytes | None, codec: AvroCodec, *,
          checks: DecodedChecks | None = None, foldable: frozenset[str] | None = None,
          recorded_at_ms: int | None = None, limits: Limits = DEFAULT_LIMITS) -> DecodedEvent | Rejection:
    """The decoded event (``AvroCodec.decode(..., lean=True)``: ``event_id`` as text, ``event_time``
    in epoch milliseconds), or why the record on ``entity_type``'s topic is not one.

    With ``checks``, the record must also pass what Avro cannot express (the constraints the
    repository's schemas declare), as the publishing SDK's models do. Without
    ``recorded_at_ms`` (the broker's time of the record), ``event_time`` has no upper bound."""
    # Sizes first: a megabyte record is refused before it is decoded.
    size = len(key or b"") + len(value or b"")
    if size > limits.max_event_bytes:
        return Rejection("too-large", f"key and value are {size:,} bytes ({len(key or b''):,} + {len(value or b''):,}),"
                                      f" over max_event_bytes ({limits.max_event_bytes:,})")
    if not key:
        return Rejection("missing-key", "message has no key; events must be keyed by entity_id")
    if value is None:
        return Rejection("missing-value", "message has no value")
    decoded = _decode(value, codec)
    if isinstance(decoded, Rejection):
        return decoded
    record = decoded.record
    if decoded.entity_type != entity_type:
        return Rejection("wrong-entity-type", f"a {decoded.entity_type} event on the {entity_type} topic")
    if record["entity_type"] != decoded.entity_type or record["event_type"] != decoded.event_type:
        return Rejection("wrong-event-type",
                         f"the record's entity_type/event_type {_shown(record['entity_type'])}/"
                         f"{_shown(record['event_type'])} are not those of its fingerprint's schema, "
                         f"{decoded.entity_type}/{decoded.event_type}: bytes of one event type under another's "
                         "fingerprint")
    if record["entity_id"].encode() != key:
        return Rejection("key-mismatch",
                         f"key {_shown(key)} is not the event's entity_id {_shown(record['entity_id'])}")
    out_of_range = _event_time_out_of_range(record["event_time"], recorded_at_ms, limits)
    if out_of_range is not None:
        return out_of_range
    if checks is not None and not checks.passes(decoded.event_type, record):
        try:
            checks.event_types.parse(codec.decode(value).record)
        except InvalidEventError as exc:
            return Rejection("invalid-event", str(exc))
    if foldable is not None and decoded.event_type not in foldable:
        return Rejection("unfoldable-event",
                         f"entity {entity_type!r} declares no operations for event type {decoded.event_type!r}")
    return decoded


def _decode(value: bytes, codec: AvroCodec) -> DecodedEvent | Rejection:
    try:
        return codec.decode(value, lean=True)
    except DecodeError as exc:
        return Rejection(type(exc).__name__, str(exc))
    except OverflowError as exc:  # fastavro turning a timestamp or date past datetime's range into one
        return Rejection("timestamp-out-of-range", f"a timestamp or date of the record is outside the years 1-9999 "
                                                   f"a datetime holds: {exc}")
    except Exception as exc:  # noqa: BLE001 - the bytes are anyone's: a decoder failure is their fault, not ours
        return Rejection("CorruptMessageError", f"the record does not decode: {exc!r}")


def _event_time_out_of_range(event_time_ms: int, recorded_at_ms: int | None, limits: Limits) -> Rejection | None:
    if event_time_ms < 0:
        return Rejection("event-time-out-of-range", f"event_time {_iso(event_time_ms)} is before 1970-01-01")
    # A record without a broker time (-1: the topic keeps none) gives no upper bound.
    if recorded_at_ms is None or recorded_at_ms < 0:
        return None
    if event_time_ms > recorded_at_ms + limits.event_time_max_ahead_ms:
        return Rejection("event-time-out-of-range",
                         f"event_time {_iso(event_time_ms)} is more than event_time_max_ahead_s "
                         f"({limits.event_time_max_ahead_ms / 1000:g} s) after the broker recorded it "
                         f"({_iso(recorded_at_ms)})")
    return None


def _iso(epoch_ms: int) -> str:
    return (EPOCH + timedelta(milliseconds=epoch_ms)).isoformat(timespec="milliseconds")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= SHOWN_CHARACTERS else f"{text[:SHOWN_CHARACTERS]}... ({len(text):,} characters)"


class Admission:
    """``admit`` with the repository as this process knows it, for the processor and the archive alike.

    A record of a schema, event type or declaration this process does not know yet makes it look
    at its repository once more (``RepositoryWatch``) and try again before refusing it: after
    `labelstore apply` released a new event type or field, a running worker and the materializer
    read it instead of dead-lettering it, and go on agreeing on which records are events.
    ``on_reload`` hears of every repository taken up (the processor rebuilds its fold and rules).
    """

    def __init__(self, codec: AvroCodec, declarations: Mapping[str, EntityDeclaration], *,
                 validate_payloads: bool = True, watch: RepositoryWatch | None = None,
                 on_reload: Callable[[Mapping[str, EntityDeclaration]], None] | None = None,
                 limits: Limits = DEFAULT_LIMITS) -> None:
        self.validate_payloads = validate_payloads
        self.watch = watch
        self.on_reload = on_reload
        self.limits = limits
        self._use(codec, declarations)

    def admit(self, entity_type: str, key: bytes | None, value: bytes | None,
              recorded_at_ms: int | None = None) -> DecodedEvent | Rejection:
        admitted = self._admit(entity_type, key, value, recorded_at_ms)
        if isinstance(admitted, Rejection) and admitted.error_type in UNKNOWN_TO_THIS_WORKER and self._reload():
            admitted = self._admit(entity_type, key, value, recorded_at_ms)
        return admitted

    def _admit(self, entity_type: str, key: bytes | None, value: bytes | None,
               recorded_at_ms: int | None) -> DecodedEvent | Rejection:
        return admit(entity_type, key, value, self.codec, checks=self.checks,
                     foldable=self.foldable(entity_type), recorded_at_ms=recorded_at_ms,
                     limits=self.limits)

    def foldable(self, entity_type: str) -> frozenset[str]:
        """The event types ``entity_type``'s declaration folds: records of others are refused."""
        return self._foldable.get(entity_type, frozenset())

    def _use(self, codec: AvroCodec, declarations: Mapping[str, EntityDeclaration]) -> None:
        self.codec = codec
        self.checks = checks_of(codec) if self.validate_payloads else None
        self._foldable = {entity_type: frozenset(d.events) for entity_type, d in declarations.items()}

    def _reload(self) -> bool:
        """Take up the repository as it is now on disk, if it changed; True if it did."""
        repository = self.watch.refreshed() if self.watch is not None else None
        if repository is None:
            return False
        log.info("label repository changed: reading events with its current schemas and declarations")
        self._use(repository.codec, repository.declarations)
        if self.on_reload is not None:
            self.on_reload(repository.declarations)
        return True
