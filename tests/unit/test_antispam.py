"""rspamd's answers turned into verdicts (pure)."""

from __future__ import annotations

import pytest

from mailstandby.antispam import Action, render, verdict


@pytest.mark.parametrize(
    ("action", "want"),
    [
        ("no action", Action.ACCEPT),
        ("add header", Action.MARK),
        ("rewrite subject", Action.MARK),
        ("greylist", Action.TEMPFAIL),
        ("soft reject", Action.TEMPFAIL),
        ("reject", Action.REJECT),
        ("something new", Action.TEMPFAIL),  # unknown means temporary
        ("", Action.TEMPFAIL),
    ],
)
def test_each_rspamd_action_is_honoured(action: str, want: Action) -> None:
    assert verdict({"action": action, "score": 1.5, "required_score": 15}).action is want


def test_headers_carry_the_verdict_and_what_rspamd_adds_but_nothing_injected() -> None:
    v = verdict(
        {
            "action": "add header",
            "score": 7.25,
            "required_score": 15.0,
            "symbols": {"BAYES_SPAM": {}, "R_SPF_FAIL": {}},
            "milter": {
                "add_headers": {
                    "Authentication-Results": {"value": "standby; spf=fail smtp.mailfrom=x@ext.test", "order": 0},
                    "X-Evil": "ok\r\nBcc: victim@ext.test",
                }
            },
        }
    )
    assert ("X-Spam-Status", "Yes, score=7.25 required=15.00") in v.headers
    assert ("Authentication-Results", "standby; spf=fail smtp.mailfrom=x@ext.test") in v.headers
    assert all(name != "X-Evil" for name, _ in v.headers)
    assert render(v.headers).count(b"\r\n") == len(v.headers)
    assert "BAYES_SPAM" in v.detail
