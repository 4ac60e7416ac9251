"""The root of every error labelstore raises on purpose.

Each package adds its own subclasses in its ``exceptions.py``; callers can catch
``LabelstoreError`` to handle anything the project reports as the user's to fix.
"""


class LabelstoreError(Exception):
    """Base class of labelstore's errors. Messages say what is wrong and what to do."""


class ConfigurationError(LabelstoreError):
    """Settings or the environment do not allow the requested operation."""
