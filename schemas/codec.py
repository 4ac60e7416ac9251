"""Avro single-object encoding: ``C3 01`` + 8-byte CRC-64-AVRO fingerprint + binary body.

The fingerprint names the writer's schema, so a reader needs no registry server: it looks the
writer up among the schemas it knows (current and released) and resolves the record to its own
current schema by Avro's rules. This is the only module that calls fastavro's encoder and decoder;
library errors leave it as labelstore errors that say what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from io import BytesIO
from typing import Any, NamedTuple

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from fastavro.validation import ValidationError, validate

from labelstore.schemas.catalog import EventSchema, SchemaSet
from labelstore.schemas.compiled import Unsupported, compile_decoder, compile_encoder, timestamp_millis
from labelstore.schemas.exceptions import (
    CorruptMessageError,
    EncodeError,
    UnknownEventTypeError,
    UnknownSchemaError,
    UnresolvableSchemaError,
)

MAGIC = b"\xc3\x01"
HEADER_SIZE = len(MAGIC) + 8
# What ``decode(..., lean=True)`` leaves in their base type: every reader of a batch of events needs
# them as text and epoch milliseconds, and making a UUID and a datetime first cost 2 us an event.
LEAN_FIELDS = ("event_id", "event_time")


class DecodedEvent(NamedTuple):  # built per event: a tuple costs ~0.7 us, a frozen dataclass ~2.4 us
    entity_type: str
    event_type: str
    record: dict[str, Any]
    writer_fingerprint: bytes


class AvroCodec:
    """Encodes event records with the current schemas; decodes any known writer's records."""

    def __init__(self, schema_set: SchemaSet | None = None) -> None:
        if schema_set is None:
            from labelstore.repository import current

            schema_set = current().schema_set
        self.schema_set = schema_set
        self._writers = {fp: (s, parse_schema(dict(s.schema))) for fp, s in self.schema_set.writers().items()}
        self._current_by_name = {s.name: s for s in self.schema_set.current.values()}
        self._current_by_fingerprint = {s.fingerprint: s for s in self.schema_set.current.values()}
        # Compiled per current schema (``labelstore.schemas.compiled``); fastavro decides the rest.
        self._decoders = {s.fingerprint: _compiled(compile_decoder, self._writers[s.fingerprint][1])
                          for s in self.schema_set.current.values()}
        self._lean_decoders = {s.fingerprint: _compiled(compile_decoder, self._writers[s.fingerprint][1], lean=LEAN_FIELDS)
                               for s in self.schema_set.current.values()}
        self._encoders = {s.event_type: (MAGIC + s.fingerprint,
                                         _compiled(compile_encoder, self._writers[s.fingerprint][1]),
                                         _compiled(compile_encoder, self._writers[s.fingerprint][1], attributes=True))
                          for s in self.schema_set.current.values()}

    def encode(self, event_type: str, record: Mapping[str, Any]) -> bytes:
        return self._encode(event_type, record, attributes=False)

    def encode_object(self, event_type: str, event: Any) -> bytes:
        """``encode`` of an object whose fields are attributes (an event model), without its dict."""
        return self._encode(event_type, event, attributes=True)

    def _encode(self, event_type: str, record: Any, *, attributes: bool) -> bytes:
        compiled = self._encoders.get(event_type)
        if compiled is not None:
            header, of_mapping, of_object = compiled
            encoder = of_object if attributes else of_mapping
            if encoder is not None:
                out = bytearray(header)
                try:
                    encoder(record, out)
                    return bytes(out)
                except Exception:  # noqa: BLE001, S110 - not decided here: fastavro encodes it or says why not
                    pass
        return self._encode_by_fastavro(event_type, record.model_dump() if attributes else record)

    def _encode_by_fastavro(self, event_type: str, record: Mapping[str, Any]) -> bytes:
        event_schema = self.schema_set.event_schema(event_type)
        _, parsed = self._writers[event_schema.fingerprint]
        buffer = BytesIO()
        buffer.write(MAGIC + event_schema.fingerprint)
        try:
            schemaless_writer(buffer, parsed, record)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise EncodeError(f"{event_type}: {self._explain(parsed, record, exc)}") from exc
        return buffer.getvalue()

    def decode(self, data: bytes, *, lean: bool = False) -> DecodedEvent:
        """The event record of ``data``. ``lean``: with ``event_id`` as its canonical text and
        ``event_time`` as epoch milliseconds, as the processor, the archive and the re-fold use them."""
        decoders = self._lean_decoders if lean else self._decoders
        decoder = decoders.get(data[2:HEADER_SIZE]) if type(data) is bytes else None
        if decoder is not None and data[:2] == MAGIC:
            try:
                record = decoder(data, HEADER_SIZE)
            except Exception:  # noqa: BLE001, S110 - not decided here: fastavro decodes it or says why not
                pass
            else:
                current = self._current_by_fingerprint[data[2:HEADER_SIZE]]
                return DecodedEvent(current.entity_type, current.event_type, record, current.fingerprint)
        decoded = self._decode_by_fastavro(data)
        if lean:
            record = decoded.record
            record["event_id"], record["event_time"] = str(record["event_id"]), timestamp_millis(record["event_time"])
        return decoded

    def _decode_by_fastavro(self, data: bytes) -> DecodedEvent:
        writer, writer_parsed = self._writer_of(data)
        current = self._current_by_name.get(writer.name)
        if current is None:
            raise UnknownEventTypeError(
                f"event type {writer.event_type!r} (schema {writer.name}) is not known to this reader; "
                "upgrade labelstore to read it"
            )
        reader_parsed = None if current.fingerprint == writer.fingerprint else self._writers[current.fingerprint][1]
        body = BytesIO(data)
        body.seek(HEADER_SIZE)
        try:
            record = schemaless_reader(body, writer_parsed, reader_parsed)
        except SchemaResolutionError as exc:
            raise UnresolvableSchemaError(
                f"{writer.event_type} written with schema {writer.fingerprint.hex()} cannot be read "
                f"as {current.fingerprint.hex()}: {exc}"
            ) from exc
        except (EOFError, ValueError, TypeError, IndexError, KeyError, UnicodeDecodeError) as exc:
            raise CorruptMessageError(f"body of a {writer.event_type} record does not decode: {exc!r}") from exc
        if body.tell() != len(data):
            raise CorruptMessageError(
                f"{len(data) - body.tell()} trailing bytes after a {writer.event_type} record"
            )
        return DecodedEvent(current.entity_type, current.event_type, record, writer.fingerprint)

    def parsed_schema(self, fingerprint: bytes) -> Any:
        """The fastavro-parsed schema of the writer ``fingerprint`` names."""
        return self._writers[fingerprint][1]

    def _writer_of(self, data: bytes) -> tuple[EventSchema, Any]:
        if len(data) < HEADER_SIZE or data[:2] != MAGIC:
            raise CorruptMessageError(
                f"not Avro single-object encoding: expected magic C3 01 and a 10-byte header, "
                f"got {data[:HEADER_SIZE].hex(' ') or 'no bytes'}"
            )
        fingerprint = bytes(data[2:HEADER_SIZE])
        try:
            return self._writers[fingerprint]
        except KeyError:
            raise UnknownSchemaError(
                f"unknown writer schema fingerprint {fingerprint.hex()}; "
                "it was written by a schema this reader never saw (check schemas/history)"
            ) from None

    @staticmethod
    def _explain(parsed: Any, record: Mapping[str, Any], exc: Exception) -> str:
        try:
            validate(record, parsed, raise_errors=True)
        except ValidationError as invalid:
            return "; ".join(str(e) for e in invalid.errors)
        return str(exc)


def _compiled(compiler: Any, schema: Any, **options: Any) -> Any:
    try:
        return compiler(schema, **options)
    except Unsupported:
        return None
