"""Errors of label rules."""

from labelstore.errors import LabelstoreError


class InvalidRuleError(LabelstoreError, ValueError):
    """A rule cannot be used; the message names the problem and where it is in the expression."""
