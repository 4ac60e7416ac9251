"""The Faust adapter's own behaviour, without a broker."""

from __future__ import annotations

import asyncio
from collections import Counter
from types import SimpleNamespace

import pytest

from labelstore.settings import ProcessorSettings
from processors.app import _agent


class FailingChannel:
    queue = SimpleNamespace(empty=lambda: True)

    async def get(self):
        raise RuntimeError("broken batch")


class FailingStream:
    app = None
    channel = FailingChannel()


def test_a_failing_agent_reports_the_crash_instead_of_idling():
    crashes = []
    process = _agent(SimpleNamespace(entity_type="order"), {}, {}, None, Counter(), ProcessorSettings(), crashes.append)
    with pytest.raises(RuntimeError, match="broken batch"):
        asyncio.run(process(FailingStream()))
    assert [str(c) for c in crashes] == ["broken batch"]
