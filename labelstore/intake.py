"""Which records of an entity topic are events: one decision for the processor and the archive.

The processor sends a rejected record to the dead-letter topic; the materializer leaves it out of
the events archive. Both use ``admit``, so the offline re-fold sees exactly the events the
processor folded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

from labelstore.events.exceptions import InvalidEventError
from labelstore.schemas.codec import AvroCodec, DecodedEvent
from labelstore.schemas.exceptions import DecodeError

if TYPE_CHECKING:
    from labelstore.declarations import EntityDeclaration
    from labelstore.events.typed import EventTypes
    from labelstore.repository import RepositoryWatch

log = logging.getLogger("labelstore.intake")

# Rejections a worker may owe to its own copy of the repository being older than the writer's:
# it looks at the repository again before it dead-letters such a record.
UNKNOWN_TO_THIS_WORKER = frozenset({"UnknownSchemaError", "UnknownEventTypeError", "unfoldable-event"})
_EVENT_TYPES: WeakKeyDictionary[AvroCodec, EventTypes] = WeakKeyDictionary()


def event_types_of(codec: AvroCodec) -> EventTypes:
    """The typed events of a codec's schemas, built once per codec (it builds a model per event type)."""
    if codec not in _EVENT_TYPES:
        from labelstore.events.typed import EventTypes

        _EVENT_TYPES[codec] = EventTypes(codec.schema_set)
    return _EVENT_TYPES[codec]


@dataclass(frozen=True)
class Rejection:
    error_type: str
    reason: str


def admit(entity_type: str, key: bytes | None, value: bytes | None, codec: AvroCodec, *,
          event_types: EventTypes | None = None, foldable: frozenset[str] | None = None) -> DecodedEvent | Rejection:
    """The decoded event, or why the record on ``entity_type``'s topic is not one.

    With ``event_types``, the payload must also pass the checks Avro cannot express (the
    constraints the repository's schemas declare), as the publishing SDK's do."""
    if not key:
        return Rejection("missing-key", "message has no key; events must be keyed by entity_id")
    if value is None:
        return Rejection("missing-value", "message has no value")
    try:
        decoded = codec.decode(value)
    except DecodeError as exc:
        return Rejection(type(exc).__name__, str(exc))
    if decoded.entity_type != entity_type:
        return Rejection("wrong-entity-type", f"a {decoded.entity_type} event on the {entity_type} topic")
    if decoded.record["entity_id"].encode() != key:
        return Rejection("key-mismatch", f"key {key!r} is not the event's entity_id {decoded.record['entity_id']!r}")
    if event_types is not None:
        try:
            event_types.parse(decoded.record)
        except InvalidEventError as exc:
            return Rejection("invalid-event", str(exc))
    if foldable is not None and decoded.event_type not in foldable:
        return Rejection("unfoldable-event",
                         f"entity {entity_type!r} declares no operations for event type {decoded.event_type!r}")
    return decoded


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
                 on_reload: Callable[[Mapping[str, EntityDeclaration]], None] | None = None) -> None:
        self.validate_payloads = validate_payloads
        self.watch = watch
        self.on_reload = on_reload
        self._use(codec, declarations)

    def admit(self, entity_type: str, key: bytes | None, value: bytes | None) -> DecodedEvent | Rejection:
        admitted = self._admit(entity_type, key, value)
        if isinstance(admitted, Rejection) and admitted.error_type in UNKNOWN_TO_THIS_WORKER and self._reload():
            admitted = self._admit(entity_type, key, value)
        return admitted

    def _admit(self, entity_type: str, key: bytes | None, value: bytes | None) -> DecodedEvent | Rejection:
        return admit(entity_type, key, value, self.codec, event_types=self.event_types,
                     foldable=self._foldable.get(entity_type, frozenset()))

    def _use(self, codec: AvroCodec, declarations: Mapping[str, EntityDeclaration]) -> None:
        self.codec = codec
        self.event_types = event_types_of(codec) if self.validate_payloads else None
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
