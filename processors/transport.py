"""Faust's aiokafka transport, with a message hand-over that does not cost asyncio tasks.

Faust's consumer hands each fetched message to the conductor inside
``Service.wait_first(callback(message), suspend_flow.wait())``: four futures, two tasks and an
``asyncio.wait`` per message, so that a hand-over blocked by back-pressure can be abandoned when
a rebalance suspends the flow. With an empty agent that machinery was the largest share of the
worker's CPU. Nearly every hand-over finishes without suspending (the flow is open, the agent's
queue has room), so this consumer runs the callback's coroutine directly and falls back to
Faust's ``wait_first`` only when the coroutine suspends: the same callback, the same order, the
same bookkeeping, the cost of a task only when it is needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any

import logging

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka

log = logging.getLogger(__name__)


class Consumer(faust_aiokafka.Consumer):
    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - runs in every worker test
        # Faust's loop (faust/transport/consumer.py), with ``_hand_over`` instead of ``wait_first``.
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        since_yield = 0
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                messages = self.getmany(timeout=1.0)
                await self.sleep(0)
                if self.should_stop:
                    continue
                async for tp, message in messages:
                    since_yield += 1
                    if since_yield > 100:  # let the agents run between long runs of hand-overs
                        await asyncio.sleep(0)
                        since_yield = 0
                    offset, last = message.offset, read_offset[tp]
                    if last is not None and offset < last:
                        continue  # already handed over before a seek
                    if last and offset - last > 1 and acks_enabled_for(message.topic):
                        await self._add_gap(tp, last + 1, offset)
                    if self._commit_every is not None and self._n_acked >= self._commit_every:
                        self._n_acked = 0
                        await self.commit()
                    await self._hand_over(message)
                    read_offset[tp] = offset
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        except Exception:
            log.exception("handing over fetched messages failed")
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _hand_over(self, message: Any) -> None:
        handing_over = self.callback(message)
        try:
            waiting_for = handing_over.send(None)
        except StopIteration:
            return
        except BaseException:
            handing_over.close()
            raise
        # Suspended (back-pressure or a paused flow): finish it as Faust does, abandoning it if
        # the flow is suspended for a rebalance meanwhile.
        await self.wait_first(_Resumed(handing_over, waiting_for), self.suspend_flow.wait())


class _Resumed:
    """An awaitable that continues a coroutine already started and now suspended on ``waiting_for``."""

    __slots__ = ("coroutine", "waiting_for")

    def __init__(self, coroutine: Coroutine, waiting_for: Any) -> None:
        self.coroutine, self.waiting_for = coroutine, waiting_for

    def __await__(self) -> Generator[Any, Any, Any]:
        coroutine, waiting_for = self.coroutine, self.waiting_for
        while True:
            try:
                sent = yield waiting_for
            except GeneratorExit:
                coroutine.close()
                raise
            except BaseException as exc:
                try:
                    waiting_for = coroutine.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    waiting_for = coroutine.send(sent)
                except StopIteration as done:
                    return done.value


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer


class App(faust.App):
    """A Faust app whose aiokafka transport is the one above (other transports as configured)."""

    def _new_transport(self) -> Any:
        if self.conf.broker_consumer[0].scheme == "kafka":
            return Transport(self.conf.broker_consumer, self)
        return super()._new_transport()
