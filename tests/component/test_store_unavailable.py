"""The database goes away under IMAP and POP3 sessions, then comes back: the sessions say "try again
later" in each protocol's words, and carry on once the server is back, without a restart.

IMAP answers `NO [UNAVAILABLE]` (RFC 5530 §3), POP3 `-ERR [SYS/TEMP]` (RFC 3206 §5); never
`[SERVERBUG]` (which tells the user something is broken for good). The store's read connection
makes itself anew, with backoff, once the server accepts connections again.
"""

from __future__ import annotations

import asyncio
import imaplib
import poplib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from imap_harness import ALICE, ALICE_PW, FakeAuthenticator
from raw_stream import TIMEOUT
from tests.support.postgres import PostgresCluster

from mailstandby.config import IMAPSettings, POP3Settings, StoreSettings
from mailstandby.imap.server import IMAPServer
from mailstandby.pop3.server import POP3Server
from mailstandby.store.postgres import PostgresStore
from mailstandby.store.sqlite_mailbox import SQLiteMailboxStore

MESSAGE = b"From: carol@example.org\r\nTo: alice@corp.test\r\nSubject: kept\r\n\r\nhello\r\n"


@pytest.fixture
def cluster() -> Iterator[PostgresCluster]:
    c = PostgresCluster()  # a cluster of its own: the session's must not be killed
    try:
        c.start()
        yield c
    finally:
        c.close()


@pytest.fixture
async def mailboxes(tmp_path: Path, cluster: PostgresCluster) -> AsyncIterator[SQLiteMailboxStore]:
    store = PostgresStore(tmp_path / "data", StoreSettings(url=cluster.url, connect_timeout=2))
    await store.open()
    boxes = SQLiteMailboxStore(store)
    await boxes.ensure_user(ALICE)
    await boxes.append(ALICE, "INBOX", MESSAGE, frozenset())
    yield boxes
    await store.close()


async def test_imap_and_pop3_say_try_again_later_while_the_database_is_away(
    mailboxes: SQLiteMailboxStore, cluster: PostgresCluster
) -> None:
    auth = FakeAuthenticator({ALICE: ALICE_PW})
    imap = IMAPServer(
        IMAPSettings(listen=["127.0.0.1:0"], allow_plaintext_auth_on_loopback=True), mailboxes, auth, tls_context=None
    )
    pop3 = POP3Server(
        POP3Settings(listen=["127.0.0.1:0"], allow_plaintext_auth_on_loopback=True),
        mailboxes,
        auth,
        hostname="mx.corp.test",
        tls_context=None,
    )
    await imap.start()
    await pop3.start()
    client = await asyncio.to_thread(imaplib.IMAP4, "127.0.0.1", imap.addresses[0][1], timeout=TIMEOUT)
    try:
        await asyncio.to_thread(client.login, ALICE, ALICE_PW)
        assert (await asyncio.to_thread(client.select, "INBOX"))[0] == "OK"

        cluster.kill()
        status, text = await asyncio.to_thread(client.select, "INBOX")
        assert (status, text) == ("NO", [b"[UNAVAILABLE] Temporary failure, try again later."])
        with pytest.raises(poplib.error_proto) as refused:
            await asyncio.to_thread(pop3_login, pop3.addresses[0][1])
        assert refused.value.args[0].startswith(b"-ERR [SYS/TEMP] ")

        cluster.start()
        async with asyncio.timeout(TIMEOUT):  # the read connection comes back on its own (after its backoff)
            while (reply := await asyncio.to_thread(client.select, "INBOX"))[0] != "OK":
                assert reply[1] == [b"[UNAVAILABLE] Temporary failure, try again later."]
                await asyncio.sleep(0.1)
        assert reply == ("OK", [b"1"])
        assert await asyncio.to_thread(pop3_login, pop3.addresses[0][1]) == 1
    finally:
        await asyncio.to_thread(client.shutdown)
        await imap.stop(1.0)
        await pop3.stop(1.0)


def pop3_login(port: int) -> int:
    """Log in over POP3 and count the maildrop (poplib raises error_proto on -ERR)."""
    client = poplib.POP3("127.0.0.1", port, timeout=TIMEOUT)
    try:
        client.user(ALICE)
        client.pass_(ALICE_PW)
        return int(client.stat()[0])
    finally:
        client.close()
