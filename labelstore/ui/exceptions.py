"""Errors of the label explorer's API: each carries the HTTP status it is answered with."""

from __future__ import annotations

from labelstore.errors import LabelstoreError


class ExplorerError(LabelstoreError):
    """A request the explorer cannot answer as asked; the message says what to change."""

    status = 400


class NotFound(ExplorerError):
    """The entity, label or rule version asked for does not exist."""

    status = 404
