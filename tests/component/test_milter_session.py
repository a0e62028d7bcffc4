"""The milter server on a real socket, driven by a scripted MTA speaking the codec.

What real Postfix cannot be made to do on demand is checked here: an MTA that
offers no "no reply" flags, one that does not let us delete recipients, a
quarantine macro from an earlier filter, a store that fails, oversized
messages, and protocol violations.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from mailstandby.config import MilterSettings
from mailstandby.core.model import Envelope, Mode
from mailstandby.directory.base import User
from mailstandby.directory.static import StaticDirectory
from mailstandby.milter import codec
from mailstandby.milter.codec import Actions, Proto
from mailstandby.milter.server import MilterServer
from mailstandby.routing import Router

POSTFIX_PROTO = Proto(0x1FFFFF)  # everything protocol 6 defines, as Postfix offers it
POSTFIX_ACTIONS = Actions(0x1FF)
HOST = "standby.corp.test"


@dataclass
class FakeSink:
    taken: list[tuple[Envelope, bytes]] = field(default_factory=list)
    journaled: list[tuple[list[str], bytes]] = field(default_factory=list)
    fail_take: bool = False
    fail_journal: bool = False
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    gate: asyncio.Event | None = None  # when set: take_over waits for it

    async def take_over(self, envelope: Envelope, message: bytes, received_at: float) -> str:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_take:
            raise OSError("disk on fire")
        self.taken.append((envelope, message))
        return "QID"

    async def journal(self, users: list[str], message: bytes, received_at: float) -> bool:
        if self.fail_journal:
            return False
        self.journaled.append((users, message))
        return True


class MTA:
    """A scripted MTA: send commands, read replies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.server: MilterServer | None = None  # the server it talks to

    def send(self, *cmds: codec.Command) -> None:
        self.writer.write(b"".join(codec.encode(c) for c in cmds))

    async def reply(self) -> tuple[int, bytes]:
        head = await asyncio.wait_for(self.reader.readexactly(4), 10)
        (n,) = struct.unpack(">I", head)
        data = await self.reader.readexactly(n)
        return data[0], data[1:]

    async def negotiate(self, actions: Actions = POSTFIX_ACTIONS, proto: Proto = POSTFIX_PROTO) -> tuple[int, int, int]:
        self.send(codec.OptNeg(6, actions, proto))
        cmd, data = await self.reply()
        assert cmd == codec.SMFIR_OPTNEG
        return struct.unpack(">III", data[:12])

    async def message(
        self,
        rcpts: list[str],
        *,
        headers: list[tuple[bytes, bytes]] | None = None,
        body: bytes = b"hello\r\n",
        macros: dict[str, str] | None = None,
    ) -> list[tuple[int, bytes]]:
        """One message with every reply flag negotiated: returns the end-of-body replies."""
        self.send(codec.Mail(("<sender@ext.test>", "BODY=8BITMIME")))
        self.send(*(codec.Rcpt((f"<{r}>",)) for r in rcpts))
        for name, value in headers or [(b"Subject", b" test")]:
            self.send(codec.Header(name, value))
        self.send(codec.EndOfHeaders(), codec.Body(body))
        if macros:
            self.send(codec.Macros(codec.SMFIC_BODYEOB, macros))
        self.send(codec.EndOfMessage())
        return await self.final()

    async def final(self) -> list[tuple[int, bytes]]:
        out = [await self.reply()]
        while out[-1][0] in (codec.SMFIR_DELRCPT, codec.SMFIR_PROGRESS):
            out.append(await self.reply())
        return out


Factory = Callable[..., Awaitable[tuple[MTA, FakeSink, Router]]]


@pytest.fixture
async def mta() -> AsyncIterator[Factory]:
    servers: list[MilterServer] = []
    writers: list[asyncio.StreamWriter] = []

    async def make(**settings: object) -> tuple[MTA, FakeSink, Router]:
        directory = StaticDirectory(
            ["corp.test"], [User("alice@corp.test", ("a.liddell@corp.test",)), User("bob@corp.test")]
        )
        router = Router(directory)
        sink = FakeSink()
        server = MilterServer(
            MilterSettings(listen=["127.0.0.1:0"], **settings),  # type: ignore[arg-type]
            router,
            sink,
            hostname=HOST,
            max_size=64 * 1024,
        )
        await server.start()
        servers.append(server)
        reader, writer = await asyncio.open_connection(*server.addresses[0])
        writers.append(writer)
        client = MTA(reader, writer)
        client.server = server
        return client, sink, router

    yield make
    for w in writers:
        w.close()
    async with asyncio.timeout(10):  # every session ends with its MTA connection (no leak)
        while any(s.sessions for s in servers):
            await asyncio.sleep(0.01)
    for s in servers:
        await s.stop(1)


async def test_negotiation_asks_only_for_what_it_needs(mta: Factory) -> None:
    client, _, _ = await mta(mode="journal")
    version, actions, proto = await client.negotiate()
    assert version == 6
    assert actions == 0, "journal mode changes nothing in the message"
    assert proto & Proto.NR_HDR and proto & Proto.NR_BODY and proto & Proto.HDR_LEADSPC
    assert not proto & (Proto.NOHDRS | Proto.NOBODY | Proto.NORCPT | Proto.NOMAIL | Proto.RCPT_REJ)
    assert not proto & (Proto.NODATA | Proto.NR_DATA), "DATA is answered (see WANTED)"

    client, _, _ = await mta(mode="redirect")
    assert (await client.negotiate())[1] == Actions.DELRCPT


async def test_journal_copy_is_the_rebuilt_message_and_is_filed_before_the_reply(mta: Factory) -> None:
    client, sink, _ = await mta(mode="journal")
    await client.negotiate()
    client.send(
        codec.Macros(codec.SMFIC_CONNECT, {"j": "mx.corp.test"}), codec.Connect("c.ext.test", "4", 4000, "192.0.2.7")
    )
    client.send(codec.Helo("c.ext.test"), codec.Mail(("<x@ext.test>",)), codec.Data())
    assert await client.reply() == (codec.SMFIR_CONTINUE, b""), "DATA is answered"
    client.send(codec.Abort())
    replies = await client.message(
        ["a.liddell@corp.test", "carol@ext.test", "alice@corp.test"],
        headers=[(b"Subject", b" hi"), (b"X-Folded", b" one\n\ttwo")],
        body=b"body line\r\n",
        macros={"i": "ABC123"},
    )
    assert replies == [(codec.SMFIR_CONTINUE, b"")]
    ((users, message),) = sink.journaled
    assert users == ["alice@corp.test"], "one copy per user, whatever address reached her"
    assert message.startswith(b"Received: from c.ext.test ([192.0.2.7])\r\n\tby standby.corp.test (mailstandby)")
    assert b"with milter (mta id ABC123)" in message
    assert message.endswith(b"\r\nSubject: hi\r\nX-Folded: one\r\n\ttwo\r\n\r\nbody line\r\n")
    assert sink.taken == []


async def test_an_mta_without_no_reply_flags_gets_continue_for_every_event(mta: Factory) -> None:
    client, sink, _ = await mta(mode="journal")
    await client.negotiate(proto=Proto.NONE)  # protocol 2 behaviour: every event is answered
    client.send(codec.Connect("c", "U"))
    client.send(codec.Helo("c"), codec.Mail(("<s@ext.test>",)), codec.Rcpt(("<bob@corp.test>",)), codec.Data())
    client.send(codec.Header(b"Subject", b"no leading space kept"), codec.EndOfHeaders(), codec.Body(b"x\r\n"))
    client.send(codec.Unknown(b"XYZZY"), codec.EndOfMessage())
    got = [await client.reply() for _ in range(9)]
    assert got == [(codec.SMFIR_CONTINUE, b"")] * 9
    assert sink.journaled[0][1].endswith(b"Subject: no leading space kept\r\n\r\nx\r\n")


async def test_redirect_takes_over_all_standby_recipients_and_discards(mta: Factory) -> None:
    client, sink, router = await mta(mode="both")
    router.apply(Mode.FAILED_OVER, None)
    await client.negotiate()
    assert await client.message(["alice@corp.test", "bob@corp.test"]) == [(codec.SMFIR_DISCARD, b"")]
    ((envelope, message),) = sink.taken
    assert message.endswith(b"\r\nSubject: test\r\n\r\nhello\r\n")
    assert envelope.sender == "sender@ext.test" and envelope.recipients == ["alice@corp.test", "bob@corp.test"]
    assert envelope.body_type.value == "8BITMIME"
    assert sink.journaled == []


async def test_redirect_with_mixed_recipients_deletes_the_taken_ones(mta: Factory) -> None:
    client, sink, router = await mta(mode="both")
    router.apply(Mode.FAILED_OVER, frozenset({"bob@corp.test"}))
    await client.negotiate()
    replies = await client.message(["alice@corp.test", "bob@corp.test", "x@ext.test"])
    assert replies == [(codec.SMFIR_DELRCPT, b"<bob@corp.test>\0"), (codec.SMFIR_CONTINUE, b"")]
    assert [e.recipients for e, _ in sink.taken] == [["bob@corp.test"]]
    assert [u for u, _ in sink.journaled] == [["alice@corp.test"]]


async def test_an_mta_that_cannot_delete_recipients_keeps_a_mixed_message(mta: Factory) -> None:
    client, sink, router = await mta(mode="redirect")
    router.apply(Mode.FAILED_OVER, frozenset({"bob@corp.test"}))
    await client.negotiate(actions=Actions.ADDHDRS)
    assert await client.message(["alice@corp.test", "bob@corp.test"]) == [(codec.SMFIR_CONTINUE, b"")]
    assert sink.taken == []


async def test_a_store_failure_answers_tempfail_so_the_mta_keeps_the_message(mta: Factory) -> None:
    client, sink, router = await mta(mode="redirect")
    router.apply(Mode.FAILED_OVER, None)
    sink.fail_take = True
    await client.negotiate()
    assert await client.message(["alice@corp.test"]) == [(codec.SMFIR_TEMPFAIL, b"")]
    sink.fail_take = False  # the MTA's retry, on the same connection, goes through
    assert await client.message(["alice@corp.test"]) == [(codec.SMFIR_DISCARD, b"")]


async def test_a_failed_journal_copy_never_holds_up_the_primarys_mail(mta: Factory) -> None:
    client, sink, _ = await mta(mode="journal")
    sink.fail_journal = True
    await client.negotiate()
    assert await client.message(["alice@corp.test"]) == [(codec.SMFIR_CONTINUE, b"")]


async def test_a_message_quarantined_upstream_is_neither_copied_nor_taken(mta: Factory) -> None:
    client, sink, router = await mta(mode="both")
    router.apply(Mode.FAILED_OVER, None)
    await client.negotiate()
    replies = await client.message(["alice@corp.test"], macros={"{quarantine}": "held by the virus scanner"})
    assert replies == [(codec.SMFIR_CONTINUE, b"")]
    assert sink.taken == [] and sink.journaled == []
    assert await client.message(["alice@corp.test"]) == [(codec.SMFIR_DISCARD, b"")], "the macro was per message"
    client.send(codec.Macros(codec.SMFIC_MAIL, {"{quarantine}": "held at MAIL"}))
    assert await client.message(["alice@corp.test"]) == [(codec.SMFIR_CONTINUE, b"")]
    assert await client.message(["alice@corp.test"]) == [(codec.SMFIR_DISCARD, b"")]
    client.send(codec.Macros(codec.SMFIC_CONNECT, {"{quarantine}": "the whole session"}))
    assert await client.message(["alice@corp.test"]) == [(codec.SMFIR_CONTINUE, b"")]
    assert len(sink.taken) == 2


async def test_a_message_our_own_queue_relayed_is_not_copied_again(mta: Factory) -> None:
    client, sink, _ = await mta(mode="journal")
    await client.negotiate()
    ours = b" from x ([192.0.2.1])\n\tby standby.corp.test (mailstandby) with ESMTP id 06H2;\n\tdate"
    assert await client.message(["alice@corp.test"], headers=[(b"Received", ours)]) == [(codec.SMFIR_CONTINUE, b"")]
    assert sink.journaled == []


async def test_an_oversized_message_passes_through_untouched_with_a_warning(
    mta: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    client, sink, router = await mta(mode="both", max_message_size=4096)
    router.apply(Mode.FAILED_OVER, None)
    await client.negotiate()
    client.send(codec.Mail(("<s@ext.test>",)), codec.Rcpt(("<alice@corp.test>",)), codec.EndOfHeaders())
    for _ in range(20):
        client.send(codec.Body(b"y" * 65000))
    client.send(codec.EndOfMessage())
    assert await client.final() == [(codec.SMFIR_CONTINUE, b"")]
    assert sink.taken == [] and sink.journaled == []
    assert "reason=too-big" in caplog.text and caplog.records[-1].levelname == "WARNING"
    assert await client.message(["alice@corp.test"]) == [(codec.SMFIR_DISCARD, b"")]


async def test_abort_forgets_the_message(mta: Factory) -> None:
    client, sink, _ = await mta(mode="journal")
    await client.negotiate()
    client.send(codec.Mail(("<s@ext.test>",)), codec.Rcpt(("<bob@corp.test>",)), codec.Abort())
    assert await client.message(["alice@corp.test"]) == [(codec.SMFIR_CONTINUE, b"")]
    assert [u for u, _ in sink.journaled] == [["alice@corp.test"]]


@pytest.mark.parametrize(
    "wire",
    [
        codec.encode(codec.Mail(("<s@ext.test>",))),  # before negotiation
        struct.pack(">I", codec.MAX_PACKET + 1) + b"B",  # oversized
        codec.frame(ord("Z")),  # unknown command
    ],
    ids=["before-optneg", "oversized", "unknown"],
)
async def test_a_protocol_violation_closes_the_connection(mta: Factory, wire: bytes) -> None:
    client, sink, _ = await mta(mode="journal")
    if not wire.startswith(codec.encode(codec.Mail(("<s@ext.test>",)))):
        await client.negotiate()
    client.writer.write(wire)
    assert await asyncio.wait_for(client.reader.read(), 10) == b""
    assert sink.journaled == []


async def test_quit_closes_and_quit_nc_keeps_the_connection(mta: Factory) -> None:
    client, sink, _ = await mta(mode="journal")
    await client.negotiate()
    client.send(codec.Quit(new_connection=True))
    assert await client.message(["bob@corp.test"]) == [(codec.SMFIR_CONTINUE, b"")]
    assert len(sink.journaled) == 1
    client.send(codec.Quit())
    assert await asyncio.wait_for(client.reader.read(), 10) == b""


async def test_connections_over_the_limit_are_closed_and_the_others_go_on(mta: Factory) -> None:
    client, _, _ = await mta(mode="journal", max_connections=1)
    await client.negotiate()
    assert client.server is not None
    reader, writer = await asyncio.open_connection(*client.server.addresses[0])
    try:
        assert await asyncio.wait_for(reader.read(), 10) == b""
    finally:
        writer.close()
    assert await client.message(["bob@corp.test"]) == [(codec.SMFIR_CONTINUE, b"")]


async def test_shutdown_lets_a_takeover_in_progress_answer_before_closing(mta: Factory) -> None:
    client, sink, router = await mta(mode="redirect")
    router.apply(Mode.FAILED_OVER, None)
    sink.gate = asyncio.Event()
    await client.negotiate()
    client.send(codec.Mail(("<s@ext.test>",)), codec.Rcpt(("<alice@corp.test>",)), codec.EndOfMessage())
    await asyncio.wait_for(sink.entered.wait(), 10)
    assert client.server is not None
    stopping = asyncio.create_task(client.server.stop(5))
    await asyncio.sleep(0)
    sink.gate.set()
    assert await client.final() == [(codec.SMFIR_DISCARD, b"")], "stored, so the MTA is told"
    assert await asyncio.wait_for(client.reader.read(), 10) == b""
    await stopping
