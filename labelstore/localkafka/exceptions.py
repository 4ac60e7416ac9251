"""Errors of the local broker."""

from labelstore.errors import LabelstoreError


class LocalKafkaError(LabelstoreError):
    """The local broker could not be fetched, started or stopped."""


class MissingToolError(LocalKafkaError):
    """Java or Maven is not installed; the message says what to install."""
