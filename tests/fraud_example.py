"""The fraud example repository (examples/fraud) that the tests run on, and its demo data."""

from __future__ import annotations

from pathlib import Path

from labelstore.repository import current, load_demo

EXAMPLE_ROOT = Path(__file__).resolve().parent.parent / "examples" / "fraud"
EXAMPLE = current(EXAMPLE_ROOT)  # the instance settings.repository gives too
_demo = load_demo(EXAMPLE)

generate = _demo.generate
seed_stories = _demo.seed_stories
SEED_ADDRESS_CHANGE = _demo.SEED_ADDRESS_CHANGE
SEED_FALSE_NEGATIVE = _demo.SEED_FALSE_NEGATIVE


def model(event_type: str):
    """The example's generated model of an event type."""
    return EXAMPLE.event_types.model(event_type)


def example_serializer():
    """Events of the example to bytes and back, as the SDK and the processor do."""
    from labelstore.events.wire import EventSerializer

    return EventSerializer(EXAMPLE.codec, EXAMPLE.event_types)
