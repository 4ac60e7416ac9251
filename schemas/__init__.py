"""Avro schemas of labelstore's events and the one module that touches Avro (``codec``)."""

from labelstore.schemas.catalog import EventSchema, SchemaSet, load_schema_set
from labelstore.schemas.codec import AvroCodec

__all__ = ["AvroCodec", "EventSchema", "SchemaSet", "load_schema_set"]
