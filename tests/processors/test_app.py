"""The Faust adapter's own behaviour, without a broker."""

from __future__ import annotations

import asyncio
from collections import Counter
from types import SimpleNamespace

import pytest

from labelstore.settings import ProcessorSettings
from processors.app import _agent


class FailingStream:
    async def take_events(self, size, within):
        raise RuntimeError("broken batch")
        yield  # an async generator, like Faust's


def test_a_failing_agent_reports_the_crash_instead_of_idling():
    crashes = []
    process = _agent(SimpleNamespace(entity_type="order"), {}, {}, Counter(), ProcessorSettings(), crashes.append)
    with pytest.raises(RuntimeError, match="broken batch"):
        asyncio.run(process(FailingStream()))
    assert [str(c) for c in crashes] == ["broken batch"]
