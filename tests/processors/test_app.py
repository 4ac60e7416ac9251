"""The Faust adapter's own behaviour, without a broker."""

from __future__ import annotations

import asyncio
from collections import Counter
from types import SimpleNamespace

import pytest

from labelstore.settings import ProcessorSettings
from labelstore.processors.app import _agent
from labelstore.processors.health import FreezeGuard


class FailingIntake:
    def __len__(self) -> int:
        return 0

    async def arrival(self) -> None:
        raise RuntimeError("broken batch")


def test_a_failing_agent_reports_the_crash_instead_of_idling():
    crashes = []
    process = _agent(SimpleNamespace(entity_type="order"), {}, {}, None, Counter(), None, ProcessorSettings(),
                     FailingIntake(), crashes.append)
    with pytest.raises(RuntimeError, match="broken batch"):
        asyncio.run(process(SimpleNamespace(app=SimpleNamespace(freeze_guard=FreezeGuard(10.0, lambda: 1)))))
    assert [str(c) for c in crashes] == ["broken batch"]
