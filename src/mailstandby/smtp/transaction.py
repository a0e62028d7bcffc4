"""The mail transaction of an SMTP session: MAIL, RCPT, DATA and BDAT (RFC 5321 §3.3, RFC 3030).

The commands here are the session's handlers for the transaction; the session
owns the state, this module the steps of each command in the RFC's order.
Invariants:
- every RCPT counts against `max_recipients` and the client's recipient rate,
  accepted or not (a refused address still probed the directory);
- message data from DATA and from BDAT obey the same rules: only CRLF line
  endings (no smuggling), the size limit, the hop-count limit, the memory
  budget, and the 250 only once the intake has made the message durable;
- a failed BDAT fails its transaction; chunks already pipelined behind it are
  read and discarded until the LAST one (RFC 3030 §2).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mailstandby.core.events import Event
from mailstandby.core.model import Address, Envelope, RcptDsn, new_queue_id
from mailstandby.core.reply import CloseSession, Rejected, Reply
from mailstandby.smtp import codes
from mailstandby.smtp.codec import (
    Command,
    check_bare_newlines,
    count_received,
    no_argument,
    parse_bdat,
    parse_body,
    parse_envid,
    parse_notify,
    parse_orcpt,
    parse_path,
    parse_ret,
    parse_size,
    unstuff,
)
from mailstandby.transport import DataOverBudget, DataTooBig, Reservation

if TYPE_CHECKING:
    from mailstandby.smtp.session import Session


@dataclass(slots=True)
class Transaction:
    envelope: Envelope
    seen: set[str] = field(default_factory=set)
    rcpt_commands: int = 0  # every RCPT of this transaction, accepted or not
    chunks: bytearray | None = None  # BDAT data so far; None: no BDAT yet
    chunks_failed: bool = False  # a BDAT failed: discard the rest up to LAST
    reservation: Reservation | None = None  # the memory budget share the chunks hold

    def release(self) -> None:
        if self.reservation is not None:
            self.reservation.release()
        self.chunks = None


async def mail(s: Session, cmd: Command) -> None:
    """RFC 5321 §4.1.1.2 with SIZE (RFC 1870), BODY (RFC 6152), SMTPUTF8 (RFC 6531), RET/ENVID (RFC 3461)."""
    if s.tx is not None:
        raise Rejected(codes.C503_NESTED_MAIL)
    path = parse_path(cmd.arg, "FROM", allow_null=True)
    envelope = Envelope(sender=path.address)
    for key, value in path.params.items():
        if not s.esmtp:
            raise Rejected(codes.C555_PARAM, detail="parameters after HELO")
        _mail_parameter(s, envelope, key, value)
    if not envelope.smtputf8 and not path.address.isascii():
        raise Rejected(codes.C553_NEED_SMTPUTF8)
    if s.login is not None and s.user is None:
        raise Rejected(codes.C530_AUTH_REQUIRED)
    if not s.rates.messages.allow(s.io.peer[0]):
        raise Rejected(codes.C450_MESSAGE_RATE, detail="client message rate limit")
    s.intake.check_sender(path.address, s.user)
    envelope.auth_user = s.user
    envelope.client_ip, envelope.helo = s.io.peer[0], s.helo
    s.intake.check_space(envelope.declared_size or 0)
    s.begin(Transaction(envelope))
    s.reply(codes.C250_SENDER_OK)


def _mail_parameter(s: Session, envelope: Envelope, key: str, value: str | None) -> None:
    if key == "SIZE":
        envelope.declared_size = parse_size(value)
        if envelope.declared_size > s.settings.max_message_size:
            raise Rejected(codes.C552_TOO_BIG)
    elif key == "BODY":
        envelope.body_type = parse_body(value)
    elif key == "SMTPUTF8" and value is None:
        envelope.smtputf8 = True
    elif key == "RET":
        envelope.ret = parse_ret(value)
    elif key == "ENVID":
        envelope.envid = parse_envid(value)
    else:
        raise Rejected(codes.C555_PARAM, detail=f"MAIL parameter {key}")


async def rcpt(s: Session, cmd: Command) -> None:
    """RFC 5321 §4.1.1.3 with NOTIFY/ORCPT (RFC 3461 §4.1-4.2)."""
    tx = s.tx
    if tx is None:
        raise Rejected(codes.C503_NEED_MAIL)
    if tx.chunks is not None:
        raise Rejected(codes.C503_AFTER_BDAT)
    tx.rcpt_commands += 1
    path = parse_path(cmd.arg, "TO", allow_null=False)
    dsn = _rcpt_parameters(s, path.params)
    if not tx.envelope.smtputf8 and not path.address.isascii():
        raise Rejected(codes.C553_NEED_SMTPUTF8)
    if not s.rates.recipients.allow(s.io.peer[0]):
        raise Rejected(codes.C450_RECIPIENT_RATE, detail="client recipient rate limit")
    if tx.rcpt_commands > s.settings.max_recipients:
        raise Rejected(codes.C452_TOO_MANY_RCPTS)
    address = Address.parse(path.address)
    await s.intake.check_recipient(address)
    if address.key not in tx.seen:
        tx.seen.add(address.key)
        tx.envelope.recipients.append(path.address)
        if dsn != RcptDsn():
            tx.envelope.dsn[path.address] = dsn
    s.in_transaction_with_recipients()
    s.reply(codes.C250_RCPT_OK)


def _rcpt_parameters(s: Session, params: dict[str, str | None]) -> RcptDsn:
    notify: frozenset[str] = frozenset()
    orcpt = ""
    for key, value in params.items():
        if not s.esmtp:
            raise Rejected(codes.C555_PARAM, detail="parameters after HELO")
        if key == "NOTIFY":
            notify = parse_notify(value)
        elif key == "ORCPT":
            orcpt = parse_orcpt(value)
        else:
            raise Rejected(codes.C555_PARAM, detail=f"RCPT parameter {key}")
    return RcptDsn(notify, orcpt)


async def data(s: Session, cmd: Command) -> None:
    """RFC 5321 §4.1.1.4: 354, the data up to <CRLF>.<CRLF>, then one reply."""
    tx = s.tx
    if tx is None:
        raise Rejected(codes.C503_NEED_MAIL)
    if tx.chunks is not None:
        raise Rejected(codes.C503_AFTER_BDAT)
    if not tx.envelope.recipients:
        raise Rejected(codes.C554_NO_VALID_RCPTS)
    no_argument(cmd)
    if s.io.has_buffered_input():  # RFC 2920 §3.1: DATA ends a pipelined group
        raise CloseSession(codes.C554_SYNC, detail="message data sent before 354")
    envelope = tx.envelope
    s.end_transaction()
    s.reply(codes.C354_START_DATA)
    s.busy = True
    reservation = s.data_budget.reservation() if s.data_budget is not None else None
    try:
        try:
            raw = await s.io.read_data(s.settings.max_message_size, s.settings.data_timeout, reservation)
        except DataTooBig:
            raise Rejected(codes.C552_TOO_BIG) from None
        except DataOverBudget:  # RELIABILITY X3: temporary, the sender retries
            raise Rejected(codes.C452_NO_SPACE, detail="message data memory budget spent", user_fault=False) from None
        await commit(s, envelope, unstuff(raw))  # unstuff may raise 550 5.5.2 (bare CR/LF)
    finally:
        s.busy = False
        if reservation is not None:
            reservation.release()  # the message's bytes are stored or dropped by now


async def bdat(s: Session, cmd: Command) -> None:
    """RFC 3030 §2: `BDAT size [LAST]` and exactly `size` octets; the LAST chunk commits."""
    chunk = parse_bdat(cmd.arg)  # unparseable: 521 and close (the chunk's end is unknown)
    tx = s.tx
    refusal = _bdat_refusal(s, tx)
    if refusal is not None or tx is None:
        await s.io.discard_exact(chunk.size, s.settings.data_timeout)
        if tx is not None and chunk.last:
            s.end_transaction()
        raise Rejected(refusal or codes.C503_NEED_MAIL, detail=f"BDAT chunk of {chunk.size} discarded")
    s.busy = True
    try:
        await _read_chunk(s, tx, chunk.size, chunk.last)
        if not chunk.last:
            s.reply(codes.chunk_received(chunk.size))
            return
        assert tx.chunks is not None
        message = bytes(tx.chunks)
        s.end_transaction()
        check_bare_newlines(message)  # 550 5.5.2, as in DATA
        await commit(s, tx.envelope, message)
    finally:
        s.busy = False
        if s.tx is not tx:
            tx.release()


def _bdat_refusal(s: Session, tx: Transaction | None) -> Reply | None:
    if s.helo == "":
        return codes.C503_NEED_HELO
    if tx is None:
        return codes.C503_NEED_MAIL
    if tx.chunks_failed:
        return codes.C551_BDAT_DISCARDED
    if not tx.envelope.recipients:
        return codes.C503_NEED_RCPT
    return None


async def _read_chunk(s: Session, tx: Transaction, size: int, last: bool) -> None:
    """Append one chunk to `tx`, or read and drop it and fail the transaction."""
    if tx.chunks is None:
        tx.chunks = bytearray()
        tx.reservation = s.data_budget.reservation() if s.data_budget is not None else None
    total = len(tx.chunks) + size
    refusal: Rejected | None = None
    if total > s.settings.max_message_size:
        refusal = Rejected(codes.C552_TOO_BIG)
    elif tx.reservation is not None and not tx.reservation.grow_to(total):
        refusal = Rejected(codes.C452_NO_SPACE, detail="message data memory budget spent", user_fault=False)
    if refusal is None:
        tx.chunks += await s.io.read_exact(size, s.settings.data_timeout)
        return
    await s.io.discard_exact(size, s.settings.data_timeout)
    tx.release()
    if last:
        s.end_transaction()
    else:
        tx.chunks_failed = True
    raise refusal


async def commit(s: Session, envelope: Envelope, message: bytes) -> None:
    """The checks on a whole message, then the durable commit, then the 250 (RFC 5321 §4.2.5)."""
    if len(message) > s.settings.max_message_size:
        raise Rejected(codes.C552_TOO_BIG)
    hops = count_received(message, s.settings.hopcount_limit - 1) + 1  # our own Received: counts too
    if hops >= s.settings.hopcount_limit:
        raise Rejected(codes.C554_TOO_MANY_HOPS, detail=f"{hops} Received: headers, a mail loop")
    queue_id = new_queue_id()
    started = time.monotonic()
    await s.intake.commit(queue_id, envelope, s.trace_header(queue_id, envelope), message)
    s.log.info(
        "%s: id=%s from=<%s> nrcpt=%d size=%d commit_ms=%.1f",
        Event.SMTP_ACCEPTED,
        queue_id,
        envelope.sender,
        len(envelope.recipients),
        len(message),
        (time.monotonic() - started) * 1000,
    )
    s.errors = s.junk = 0  # Postfix smtpd: forgive earlier errors once a message is accepted
    s.reply(codes.queued(queue_id))
