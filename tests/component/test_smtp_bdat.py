"""CHUNKING/BDAT (RFC 3030) under the same rules as DATA: exact bytes, no smuggling, the size
limit, the memory budget, and the 250 to BDAT LAST only once the message is durable."""

from __future__ import annotations

import pytest
from smtp_harness import Gateway, RawClient, message, split_received

from mailstandby.store.base import StoreError


async def open_transaction(c: RawClient) -> None:
    await c.ehlo()
    await c.command("MAIL FROM:<s@example.test>", "250 2.1.0")
    await c.command("RCPT TO:<alice@corp.test>", "250 2.1.5")


async def bdat(c: RawClient, chunk: bytes, *, last: bool = False) -> None:
    await c.send(b"BDAT %d%s\r\n" % (len(chunk), b" LAST" if last else b"") + chunk)


async def test_chunks_are_stored_byte_for_byte(gw: Gateway) -> None:
    msg = message("chunked", b"line one\r\n.a line that starts with a dot\r\n\r\n.\r\nend\r\n")
    c = await gw.connect()
    await open_transaction(c)
    await bdat(c, msg[:10])
    await c.expect("250 2.0.0 Ok: 10 bytes")
    await bdat(c, msg[10:], last=True)
    await c.expect("250 2.0.0 Ok: queued as ")
    await c.quit()
    (queued,) = gw.accepted
    _, rest = split_received(await gw.body(queued))
    assert rest == msg  # no dot-unstuffing: ".\r\n" inside a chunk is just data


async def test_pipelined_chunks_and_an_empty_last(gw: Gateway) -> None:
    c = await gw.connect()
    await open_transaction(c)
    msg = message()
    await c.send(b"BDAT 5\r\n" + msg[:5] + b"BDAT %d\r\n" % (len(msg) - 5) + msg[5:] + b"BDAT 0 LAST\r\n")
    await c.expect("250 2.0.0 Ok: 5 bytes")
    await c.expect("250 2.0.0 Ok: ")
    await c.expect("250 2.0.0 Ok: queued as ")
    await c.quit()
    assert split_received(await gw.body(gw.accepted[0]))[1] == msg


@pytest.mark.parametrize("bare", [b"a\nb\r\n", b"a\rb\r\n", b"x\r\n.\n"], ids=repr)
async def test_bare_cr_or_lf_in_chunks_is_refused_as_in_data(gw: Gateway, bare: bytes) -> None:
    c = await gw.connect()
    await open_transaction(c)
    await bdat(c, b"Subject: x\r\n\r\n" + bare, last=True)
    await c.expect("550 5.5.2")
    await c.command("MAIL FROM:<s@example.test>", "250 2.1.0")  # the transaction is over
    await c.quit()
    assert gw.accepted == [] and await gw.stored_ids() == set()


async def test_a_command_hidden_in_a_chunk_is_never_run(gw: Gateway) -> None:
    c = await gw.connect()
    await open_transaction(c)
    smuggled = b"Subject: x\r\n\r\nhi\r\n.\r\nMAIL FROM:<ceo@corp.test>\r\nRCPT TO:<bob@corp.test>\r\nDATA\r\n"
    await bdat(c, smuggled, last=True)
    await c.expect("250 2.0.0 Ok: queued as ")
    await c.quit()
    (queued,) = gw.accepted
    assert [r.rcpt for r in queued.recipients] == ["alice@corp.test"]
    assert split_received(await gw.body(queued))[1] == smuggled


async def test_over_the_size_limit_552_and_the_pipelined_rest_is_discarded(gw: Gateway) -> None:
    c = await gw.connect()
    await open_transaction(c)
    big = b"y" * 40_000 + b"\r\n"
    await c.send(b"BDAT %d\r\n" % len(big) + big + b"BDAT %d\r\n" % len(big) + big)
    await c.send(b"BDAT 4\r\nNOOP" + b"BDAT 6 LAST\r\nQUIT\r\n")
    await c.expect("250 2.0.0")
    await c.expect("552 5.3.4")
    await c.expect("551 5.0.0")  # RFC 3030 §2: chunks already pipelined are read and dropped
    await c.expect("551 5.0.0")  # the LAST one ends the failed transaction
    await c.command("DATA", "503 5.5.1 Error: need MAIL command")
    await c.quit()
    assert gw.accepted == []


async def test_data_and_rcpt_after_bdat_are_503(gw: Gateway) -> None:
    c = await gw.connect()
    await open_transaction(c)
    await bdat(c, b"Subject: x\r\n")
    await c.expect("250 2.0.0")
    await c.command("DATA", "503 5.5.1")
    await c.command("RCPT TO:<bob@corp.test>", "503 5.5.1")
    await c.command("MAIL FROM:<s@example.test>", "503 5.5.1")
    await c.command("RSET", "250 2.0.0")  # RSET abandons the chunks
    await open_transaction(c)
    await bdat(c, message(), last=True)
    await c.expect("250 2.0.0 Ok: queued as ")
    await c.quit()
    assert len(gw.accepted) == 1


async def test_bdat_without_a_transaction_reads_and_drops_the_chunk(gw: Gateway) -> None:
    c = await gw.connect()
    await bdat(c, b"EHLO x\r\n", last=True)
    await c.expect("503 Error: send HELO/EHLO first")
    await c.ehlo()
    await bdat(c, b"MAIL FROM:<s@example.test>\r\n", last=True)
    await c.expect("503 5.5.1 Error: need MAIL command")
    await c.command("MAIL FROM:<s@example.test>", "250 2.1.0")
    await bdat(c, b"RCPT TO:<alice@corp.test>\r\n")
    await c.expect("503 5.5.1 Error: need RCPT command")
    await c.quit()
    assert gw.accepted == []


@pytest.mark.parametrize("line", [b"BDAT", b"BDAT x", b"BDAT -1", b"BDAT 10 MORE", b"BDAT 10 LAST x"])
async def test_unparseable_bdat_is_521_and_close(gw: Gateway, line: bytes) -> None:
    # the chunk's length is unknown: no way to find the next command (Postfix: 521 5.5.4 and close)
    c = await gw.connect()
    await open_transaction(c)
    await c.send(line + b"\r\nRSET\r\n")
    replies = await c.replies_until_eof()
    assert [r.last[:9] for r in replies] == ["521 5.5.4"]


async def test_store_refusal_at_bdat_last_is_never_a_250(gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    async def refuse(msg: object) -> object:
        raise StoreError("fsync failed")

    monkeypatch.setattr(gw.store, "accept", refuse)
    c = await gw.connect()
    await open_transaction(c)
    await bdat(c, message(), last=True)
    await c.expect("451 4.3.0")
    await c.quit()
    assert gw.accepted == [] and await gw.stored_ids() == set()


async def test_hop_limit_applies_to_bdat(gw: Gateway) -> None:
    c = await gw.connect()
    await open_transaction(c)
    await bdat(c, b"Received: x\r\n" * 49 + message(), last=True)
    await c.expect("554 5.4.0")
    await c.quit()
