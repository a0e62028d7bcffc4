"""SMTP DATA is bounded in memory across sessions (issue 16, finding 11): message data held by all
sessions of a listener at once stays under `max_data_memory`; a message that would pass it is read to
its end and dropped, and gets 452 4.3.1 (temporary: the sender retries), while a message received
alone is always let through. Real sockets, raw client."""

from __future__ import annotations

import asyncio

from raw_stream import TIMEOUT
from smtp_harness import Gateway, GatewayFactory, RawClient

KiB = 1024
MiB = 1024 * KiB


def body(size: int) -> bytes:
    line = b"x" * 998 + b"\r\n"
    head = b"From: a@example.org\r\nTo: alice@corp.test\r\nSubject: big\r\n\r\n"
    return head + line * ((size - len(head)) // len(line))


async def in_data(gw: Gateway) -> RawClient:
    c = await gw.connect()
    await c.ehlo()
    await c.command("MAIL FROM:<a@example.org>", "250 ")
    await c.command("RCPT TO:<alice@corp.test>", "250 ")
    await c.command("DATA", "354 ")
    return c


async def held_at_least(gw: Gateway, size: int) -> None:
    async with asyncio.timeout(TIMEOUT):
        while gw.server.data_budget.in_use < size:
            await asyncio.sleep(0.01)


async def test_a_message_past_the_shared_budget_is_deferred_not_held(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(max_message_size=4 * MiB, max_data_memory=1 * MiB)
    slow = await in_data(gw)
    first = body(900 * KiB)
    await slow.send(first)  # not finished: its bytes stay held
    await held_at_least(gw, len(first))

    second = await in_data(gw)
    await second.send(body(600 * KiB) + b".\r\n")
    await second.expect("452 4.3.1 ")  # would have passed the budget: dropped as it came
    assert gw.server.data_budget.in_use < 1 * MiB

    await slow.send(b".\r\n")
    await slow.expect("250 2.0.0 ")
    await second.command("MAIL FROM:<a@example.org>", "250 ")  # the session goes on; the retry fits now
    await second.command("RCPT TO:<alice@corp.test>", "250 ")
    await second.command("DATA", "354 ")
    await second.send(body(600 * KiB) + b".\r\n")
    await second.expect("250 2.0.0 ")
    assert gw.server.data_budget.in_use == 0
    assert len(gw.accepted) == 2


async def test_a_message_alone_passes_whatever_the_budget(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(max_message_size=4 * MiB, max_data_memory=1 * MiB)
    c = await in_data(gw)
    await c.send(body(3 * MiB) + b".\r\n")
    await c.expect("250 2.0.0 ")
    assert gw.server.data_budget.in_use == 0
