"""The milter's end-of-body decision, table-driven."""

from __future__ import annotations

import pytest

from mailstandby.milter.policy import Action, Reason, Recipient, decide

ALICE = Recipient("<alice@corp.test>", "alice@corp.test", standby=True)
ALIAS = Recipient("<a.liddell@corp.test>", "alice@corp.test", standby=True)
BOB = Recipient("<bob@corp.test>", "bob@corp.test", standby=False)
OUTSIDE = Recipient("<x@ext.test>", None, standby=False)
BOTH = {"journal": True, "redirect": True}
CLEAN = {"quarantined": False, "our_relay": False, "too_big": False, "can_delete_recipients": True}


@pytest.mark.parametrize(
    "rcpts,modes,flags,action,reason,take,journal",
    [
        ([BOB, OUTSIDE], BOTH, {}, Action.JOURNAL, Reason.JOURNALED, (), ("bob@corp.test",)),
        ([OUTSIDE], BOTH, {}, Action.PASS, Reason.NO_LOCAL_RECIPIENTS, (), ()),
        (
            [ALICE, ALIAS],
            BOTH,
            {},
            Action.TAKE_ALL,
            Reason.FAILED_OVER,
            ("<alice@corp.test>", "<a.liddell@corp.test>"),
            (),
        ),
        ([ALICE, BOB], BOTH, {}, Action.TAKE_SOME, Reason.FAILED_OVER, ("<alice@corp.test>",), ("bob@corp.test",)),
        (
            [ALICE, BOB],
            {"journal": False, "redirect": True},
            {},
            Action.TAKE_SOME,
            Reason.FAILED_OVER,
            ("<alice@corp.test>",),
            (),
        ),
        ([ALICE], {"journal": True, "redirect": False}, {}, Action.JOURNAL, Reason.JOURNALED, (), ("alice@corp.test",)),
        (
            [ALICE, BOB],
            BOTH,
            {"can_delete_recipients": False},
            Action.JOURNAL,
            Reason.CANNOT_DELETE_RECIPIENTS,
            (),
            ("alice@corp.test", "bob@corp.test"),
        ),
        (
            [ALICE, OUTSIDE],
            {"journal": False, "redirect": True},
            {"can_delete_recipients": False},
            Action.PASS,
            Reason.CANNOT_DELETE_RECIPIENTS,
            (),
            (),
        ),
        ([ALICE], BOTH, {"quarantined": True}, Action.PASS, Reason.QUARANTINED, (), ()),
        ([ALICE], BOTH, {"our_relay": True}, Action.PASS, Reason.OUR_RELAY, (), ()),
        ([ALICE], BOTH, {"too_big": True}, Action.PASS, Reason.TOO_BIG, (), ()),
    ],
)
def test_decide(rcpts, modes, flags, action, reason, take, journal) -> None:
    d = decide(rcpts, **modes, **(CLEAN | flags))
    assert (d.action, d.reason, d.take, d.journal) == (action, reason, take, journal)
