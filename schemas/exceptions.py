"""Errors of the schema layer: every message names the schema, field or bytes at fault."""

from labelstore.errors import LabelstoreError


class SchemaError(LabelstoreError):
    """A schema file is malformed or the schema set is inconsistent."""


class IncompatibleSchemaError(SchemaError):
    """A changed schema could not read events written before, or be read by older readers."""


class DecodeError(LabelstoreError):
    """Bytes could not be turned back into an event."""


class CorruptMessageError(DecodeError):
    """The bytes are not a well-formed single-object-encoded Avro record."""


class UnknownSchemaError(DecodeError):
    """The writer's schema fingerprint is not known to this reader."""


class UnknownEventTypeError(DecodeError):
    """The event type was written by a newer producer and this reader has no schema for it."""


class UnresolvableSchemaError(DecodeError):
    """The writer's schema is known but cannot be resolved to this reader's schema."""


class EncodeError(LabelstoreError):
    """A record does not match its event schema."""
