"""How a rejected message travels to the dead-letter topic: original key, value and headers,
plus headers saying why and where it came from, so it can be inspected and replayed."""

from __future__ import annotations

from labelstore.processors.core import DeadLetter

ERROR_TYPE = "labelstore.error.type"
ERROR_REASON = "labelstore.error.reason"
SOURCE_TOPIC = "labelstore.source.topic"
SOURCE_PARTITION = "labelstore.source.partition"
SOURCE_OFFSET = "labelstore.source.offset"
# A reason quotes what it found (a key, a field's value): a hostile record must not make the dead
# letter too large to send.
MAX_REASON_BYTES = 4_096


def dead_letter_headers(dead: DeadLetter) -> list[tuple[str, bytes]]:
    message = dead.message
    return [
        *message.headers,
        (ERROR_TYPE, dead.error_type.encode()),
        (ERROR_REASON, _clipped(dead.reason.encode())),
        (SOURCE_TOPIC, message.topic.encode()),
        (SOURCE_PARTITION, str(message.partition).encode()),
        (SOURCE_OFFSET, str(message.offset).encode()),
    ]


def _clipped(reason: bytes) -> bytes:
    if len(reason) <= MAX_REASON_BYTES:
        return reason
    marker = b"... (clipped)"
    # Cut on a character boundary: the header stays valid UTF-8.
    return reason[:MAX_REASON_BYTES - len(marker)].decode(errors="ignore").encode() + marker
