"""The consumer's hand-over without a broker: a coroutine that suspends is finished as an awaitable."""

from __future__ import annotations

import asyncio

import pytest

from labelstore.processors.transport import _Resumed


async def hand_over(gate: asyncio.Future, steps: list) -> str:
    steps.append("started")
    value = await gate
    steps.append("resumed")
    return f"handed over {value}"


def start(coroutine):
    """What the consumer does first: run the coroutine until it suspends."""
    return _Resumed(coroutine, coroutine.send(None))


def test_a_suspended_hand_over_finishes_once_what_it_waits_for_is_done():
    async def scenario():
        gate, steps = asyncio.get_running_loop().create_future(), []
        resumed = asyncio.ensure_future(start(hand_over(gate, steps)))
        await asyncio.sleep(0.01)
        assert steps == ["started"] and not resumed.done()
        gate.set_result(7)
        assert await resumed == "handed over 7"
        assert steps == ["started", "resumed"]

    asyncio.run(scenario())


def test_a_suspended_hand_over_abandoned_is_cancelled_inside():
    async def scenario():
        gate, steps = asyncio.get_running_loop().create_future(), []
        resumed = asyncio.ensure_future(start(hand_over(gate, steps)))
        await asyncio.sleep(0.01)
        resumed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await resumed
        assert gate.cancelled() and steps == ["started"]

    asyncio.run(scenario())


def test_an_error_after_resuming_reaches_the_awaiter():
    async def failing(gate):
        await gate
        raise ValueError("undeliverable")

    async def scenario():
        gate = asyncio.get_running_loop().create_future()
        resumed = asyncio.ensure_future(start(failing(gate)))
        await asyncio.sleep(0.01)
        gate.set_result(None)
        with pytest.raises(ValueError, match="undeliverable"):
            await resumed

    asyncio.run(scenario())
