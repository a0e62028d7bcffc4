"""The IMAP server driven by `imapclient` (a stricter response parser than imaplib), over both stores.

Checks that ENVELOPE, BODYSTRUCTURE, FLAGS, SEARCH, COPYUID/APPENDUID, SPECIAL-USE,
NAMESPACE, ID and IDLE parse as a real client expects.
"""

from __future__ import annotations

import asyncio
from typing import Any

import imapclient
from imap_harness import ALICE, ALICE_PW, TIMEOUT, IMAPRig, call, make_rig, message, rig, store_factory

__all__ = ["make_rig", "rig", "store_factory"]  # fixtures


async def connect(rig: IMAPRig) -> Any:
    client = await asyncio.to_thread(imapclient.IMAPClient, "127.0.0.1", port=rig.port, ssl=False, timeout=TIMEOUT)
    await call(client.login, ALICE, ALICE_PW)
    return client


async def test_imapclient_session(rig: IMAPRig) -> None:
    client = await connect(rig)
    try:
        caps = await call(client.capabilities)
        assert b"IDLE" in caps and b"MOVE" in caps and b"UIDPLUS" in caps
        assert await call(client.find_special_folder, b"\\Sent") == "Sent"
        folders = {name for _, _, name in await call(client.list_folders)}
        assert folders == {"INBOX", "Sent", "Drafts", "Trash"}
        ns = await call(client.namespace)
        assert ns.personal == (("", "/"),)
        assert (await call(client.id_, {"name": "test"})) == ((b"name", b"mailstandby"),)
        await call(client.append, "INBOX", message("first"), (imapclient.SEEN,))
        await call(client.append, "INBOX", message("second", sender="dave@example.com"))
        info = await call(client.select_folder, "INBOX")
        assert info[b"EXISTS"] == 2 and info[b"UIDNEXT"] == 3 and info[b"READ-WRITE"]
        data = await call(client.fetch, [1, 2], ["ENVELOPE", "BODYSTRUCTURE", "FLAGS", "RFC822.SIZE", "BODY.PEEK[]"])
        env = data[2][b"ENVELOPE"]
        assert env.subject == b"second" and env.from_[0].mailbox == b"dave"
        assert data[1][b"FLAGS"] == (b"\\Seen", b"\\Recent")  # appended before anyone selected INBOX
        assert data[1][b"BODY[]"] == message("first")
        assert data[1][b"BODYSTRUCTURE"][0] == b"text"
        assert await call(client.search, ["UNSEEN"]) == [2]
        assert await call(client.search, ["FROM", "dave"]) == [2]
        await call(client.add_flags, [2], [imapclient.FLAGGED])
        assert (await call(client.get_flags, [2]))[2] == (b"\\Flagged", b"\\Recent")
        await call(client.copy, [1], "Trash")
        await call(client.move, [2], "Drafts")
        assert await call(client.search, ["ALL"]) == [1]
        await call(client.delete_messages, [1])
        await call(client.expunge)
        assert await call(client.search, ["ALL"]) == []
        status = await call(client.folder_status, "Drafts", ["MESSAGES", "UIDNEXT"])
        assert status[b"MESSAGES"] == 1
        await call(client.unselect_folder)
    finally:
        await call(client.logout)


async def test_imapclient_idle(rig: IMAPRig) -> None:
    client = await connect(rig)
    try:
        await call(client.select_folder, "INBOX")
        await call(client.idle)
        await rig.store.append(ALICE, "INBOX", message("pushed"))
        responses = await call(client.idle_check, 2)
        assert (1, b"EXISTS") in responses
        await call(client.idle_done)
        await call(client.noop)
    finally:
        await call(client.logout)
