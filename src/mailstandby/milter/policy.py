"""What the milter does with one message at end of body: a pure decision with a reason from a closed set.

Rules, in order:
1. A message an earlier filter quarantined (a configured macro says so) is left
   alone: no copy, no takeover. The MTA keeps it where the filter put it.
2. A message we relayed to the primary ourselves (our own trace header) is left
   alone: our queue already filed its journal copy.
3. A message over the size limit is passed through untouched (logged).
4. Redirect: recipients routed to STANDBY are taken over. All of them: the MTA
   discards the message once we hold it. Some: the MTA drops those recipients
   (DELRCPT) and delivers the rest. When the MTA does not let us remove
   recipients, nothing is taken over (the MTA delivers; journal still applies).
5. Journal: our users among the recipients the MTA still delivers get a
   journaled copy in their standby INBOX.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Action(StrEnum):
    PASS = "pass"  # answer CONTINUE, store nothing
    JOURNAL = "journal"  # file journal copies, then CONTINUE
    TAKE_ALL = "take-all"  # queue for the standby, then DISCARD
    TAKE_SOME = "take-some"  # queue for the standby, DELRCPT those recipients, journal the rest


class Reason(StrEnum):
    QUARANTINED = "quarantined-upstream"
    OUR_RELAY = "relayed-by-standby"
    TOO_BIG = "too-big"
    NO_LOCAL_RECIPIENTS = "no-local-recipients"
    JOURNALED = "journaled"
    FAILED_OVER = "failed-over"
    CANNOT_DELETE_RECIPIENTS = "mta-cannot-delete-recipients"


@dataclass(frozen=True, slots=True)
class Recipient:
    address: str  # as the MTA sent it in RCPT (angle brackets removed)
    user: str | None  # the primary address of our user it belongs to, or None
    standby: bool  # routing sends this user's mail to the standby now


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: Reason
    take: tuple[str, ...] = ()  # recipients taken over
    journal: tuple[str, ...] = field(default=())  # users who get a journal copy


def decide(
    recipients: list[Recipient],
    *,
    journal: bool,
    redirect: bool,
    quarantined: bool,
    our_relay: bool,
    too_big: bool,
    can_delete_recipients: bool,
) -> Decision:
    if quarantined:
        return Decision(Action.PASS, Reason.QUARANTINED)
    if our_relay:
        return Decision(Action.PASS, Reason.OUR_RELAY)
    if too_big:
        return Decision(Action.PASS, Reason.TOO_BIG)
    take: list[str] = []
    reason = Reason.JOURNALED
    if redirect:
        take = [r.address for r in recipients if r.standby]
        if take and len(take) < len(recipients) and not can_delete_recipients:
            take, reason = [], Reason.CANNOT_DELETE_RECIPIENTS
    users = _journal_users(recipients, set(take)) if journal else []
    if take:
        action = Action.TAKE_ALL if len(take) == len(recipients) else Action.TAKE_SOME
        return Decision(action, Reason.FAILED_OVER, tuple(take), tuple(users))
    if users:
        return Decision(Action.JOURNAL, reason, (), tuple(users))
    return Decision(Action.PASS, reason if reason is Reason.CANNOT_DELETE_RECIPIENTS else Reason.NO_LOCAL_RECIPIENTS)


def _journal_users(recipients: list[Recipient], taken: set[str]) -> list[str]:
    users: list[str] = []
    for r in recipients:
        if r.user is not None and r.address not in taken and r.user not in users:
            users.append(r.user)
    return users
