"""Pure parts of notify: templates (sandbox, StrictUndefined, check), headers built from values,
destinations, summaries, readiness, and `mailstandby check-config` naming a broken template."""

from __future__ import annotations

import email
import email.policy
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from mailstandby.config import NotifySettings
from mailstandby.directory.base import Device, NoticeKind, Preferences, User
from mailstandby.notify import compose, readiness
from mailstandby.notify.compose import Mode
from mailstandby.notify.templates import Templates, names

SETTINGS = NotifySettings(organization="Corp", public_host="mail.corp.test", setup_url="https://s.corp.test")


def context() -> dict:
    return compose.sample_context(SETTINGS, "standby.corp.test")


def test_every_shipped_template_renders_with_the_sample_user() -> None:
    assert Templates().check(context()) == []
    for kind in NoticeKind:
        r = Templates().render(kind, context())
        assert r.subject and "\n" not in r.subject and r.text and r.html and r.short


def test_a_misspelt_variable_or_syntax_error_is_reported_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "failover.txt").write_text("Hello\n{{ user.adress }}\n")
    (tmp_path / "failback.short").write_text("{% if standby %}")
    problems = Templates(tmp_path).check(context())
    assert len(problems) == 2
    assert any(str(tmp_path / "failover.txt") in p and "line 2" in p and "adress" in p for p in problems)
    assert any(str(tmp_path / "failback.short") in p and "syntax error" in p for p in problems)


def test_a_broken_override_falls_back_to_the_shipped_template_at_send_time(tmp_path: Path) -> None:
    (tmp_path / "failover.subject").write_text("{{ nope }}")
    (tmp_path / "failover.short").write_text("Custom: {{ standby.host }}")
    r = Templates(tmp_path).render(NoticeKind.FAILOVER, context())
    assert r.subject == "Corp mail: use the standby service now"
    assert r.short == "Custom: mail.corp.test"


def test_templates_run_in_a_sandbox(tmp_path: Path) -> None:
    (tmp_path / "setup.short").write_text("{{ user.__class__.__mro__ }}")
    [problem] = Templates(tmp_path).check(context())
    assert "setup.short" in problem


def test_html_is_escaped_and_headers_cannot_be_injected() -> None:
    user = User("x@corp.test", display_name="<b>X</b>\r\nBcc: victim@ext.test")
    ctx = compose.notice_context(user, "failover", "f-1", SETTINGS, "standby.corp.test")
    r = Templates().render(NoticeKind.FAILOVER, ctx)
    assert "&lt;b&gt;X&lt;/b&gt;" in r.html and "<b>X</b>" not in r.html
    raw = compose.notice_email(
        sender="mailstandby@corp.test",
        organization="Corp\r\nBcc: victim@ext.test",
        to="x@home.test",
        subject="Hi\r\nBcc: victim@ext.test",
        text=r.text,
        html=r.html,
        msgid="<n-1@standby.corp.test>",
        kind="failover",
    )
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Bcc"] is None
    assert msg["Subject"] == "Hi Bcc: victim@ext.test"
    assert b"\r\nBcc:" not in raw.split(b"\r\n\r\n")[0]


@pytest.mark.parametrize(
    "evil",
    ["A=?UTF-8?Q?=0A?=Bcc: evil@example.test", "A\r\nBcc: evil@example.test", "A=?utf-8?b?DQpCY2M6IGV2aWw=?= x"],
)
def test_encoded_line_breaks_cannot_inject_headers(evil: str) -> None:
    """RELIABILITY P8: the email package decodes encoded words in values it is given (gh-121650)."""
    raw = compose.short_email(
        sender="mailstandby@corp.test", organization=evil, to="x@home.test", subject=evil, text="t", msgid="<a@b>",
        kind="failover",
    )  # fmt: skip
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Bcc"] is None and len(msg.get_all("Subject")) == 1 and msg["To"] == "x@home.test"
    head = raw.split(b"\r\n\r\n")[0]
    assert [line.split(b":")[0] for line in head.split(b"\r\n") if not line.startswith((b" ", b"\t"))] == [
        b"From", b"To", b"Subject", b"Date", b"Message-ID", b"Auto-Submitted", b"X-Mailstandby-Notice",
        b"Content-Type", b"Content-Transfer-Encoding", b"MIME-Version",
    ]  # fmt: skip


def test_destinations_one_per_mode_and_target_urls_not_stored() -> None:
    user = User(
        "a@corp.test",
        alternates=("a@home.test", "A@home.test"),
        notify_urls=("ntfy://secret-topic",),
        devices=(Device("p", sms_gateway="1555@sms.test", push_url="ntfy://secret-topic"), Device("q")),
    )
    found = compose.destinations(user)
    assert [(d.mode, d.target) for d in found] == [
        (Mode.EMAIL, "a@home.test"),
        (Mode.SMS_EMAIL, "1555@sms.test"),
        (Mode.APPRISE, "ntfy://secret-topic"),
    ]
    assert "secret" not in found[2].key and "secret" not in found[2].shown


def test_summary_prefers_text_and_strips_html() -> None:
    raw = (
        b"From: S <s@ext.test>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n<p>Hello <b>there</b></p><script>x()</script>\r\n"
    )
    s = compose.summarize(raw, 8)
    assert (s.sender, s.subject, s.excerpt) == ("S <s@ext.test>", "Grüße", "Hello th")


def test_quiet_hours() -> None:
    import time

    noon = time.mktime((2026, 6, 1, 12, 30, 0, 0, 0, -1))
    assert compose.in_quiet_hours(None, noon) is None
    assert compose.in_quiet_hours((22, 7), noon) is None
    end = compose.in_quiet_hours((12, 13), noon)
    assert end is not None and time.localtime(end).tm_hour == 13
    night = time.mktime((2026, 6, 1, 23, 0, 0, 0, 0, -1))
    end = compose.in_quiet_hours((22, 7), night)
    assert end is not None and time.localtime(end)[2:4] == (2, 7)


def test_readiness_names_the_unreachable() -> None:
    users = [
        User("ok@corp.test", alternates=("ok@home.test",), devices=(Device("p"),)),
        User("lost@corp.test"),
        User("quiet@corp.test", alternates=("q@home.test",), preferences=Preferences(notify=frozenset())),
        User("gone@corp.test", enabled=False),
    ]
    data = readiness.report(users, set())
    by = {u["address"]: u["gaps"] for u in data["users"]}
    assert by == {
        "ok@corp.test": ["no-standby-password"],
        "lost@corp.test": ["no-alternate-contact", "no-device", "no-standby-password"],
        "quiet@corp.test": ["no-device", "no-standby-password", "notifications-off"],
    }
    assert data["unreachable"] == 1 and data["total"] == 3


def test_template_names_cover_every_kind() -> None:
    assert {n.split(".")[0] for n in names()} == {k.value for k in NoticeKind} | {"code", "forward"}


@pytest.fixture
def config_with_templates(tmp_path: Path) -> Path:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "failover.txt").write_text("Hello {{ user.nmae }}\n")
    cfg = tmp_path / "mailstandby.toml"
    cfg.write_text(
        '[node]\ndata_dir = "data"\n[directory]\ndomains = ["corp.test"]\n'
        '[[directory.users]]\naddress = "a@corp.test"\nalternates = ["a@home.test"]\n'
        '[notify]\ntemplates = "templates"\n'
    )
    return cfg


def test_check_config_reports_a_broken_template(config_with_templates: Path) -> None:
    run = [sys.executable, "-m", "mailstandby", "check-config", "-c", str(config_with_templates)]
    result = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert str(config_with_templates.parent / "templates" / "failover.txt") in result.stderr
    assert "nmae" in result.stderr
    (config_with_templates.parent / "templates" / "failover.txt").write_text("Hello {{ user.name }}\n")
    assert subprocess.run(run, capture_output=True, text=True, timeout=60).returncode == 0


def test_readiness_command_lists_who_cannot_be_reached(config_with_templates: Path) -> None:
    (config_with_templates.parent / "templates" / "failover.txt").unlink()
    with config_with_templates.open("a") as f:
        f.write('[[directory.users]]\naddress = "b@corp.test"\n')
    run = [sys.executable, "-m", "mailstandby", "notify", "-c", str(config_with_templates), "readiness"]
    result = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "a@corp.test: modes email=1; devices 0; no-device, no-standby-password" in lines
    assert "b@corp.test: modes none; devices 0; no-alternate-contact, no-device, no-standby-password" in lines
    assert lines[-1].startswith("2 users; 1 unreachable in an outage")


def test_notify_settings_name_bad_values(tmp_path: Path) -> None:
    from mailstandby.config import ConfigError, load

    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[notify]\nsender = "not an address"\nsetup_url = "http://standby.example.com"\n'
        '[[directory.users]]\naddress = "a@corp.test"\nquiet_hours = [22, 25]\nforward = "sometimes"\n'
    )
    with pytest.raises(ConfigError) as e:
        load(cfg)
    text = "\n".join(e.value.problems)
    assert "notify.sender:" in text and "notify.setup_url: must be an https:// URL" in text
    assert "directory.users[0].quiet_hours:" in text and "directory.users[0].forward:" in text


@pytest.mark.parametrize(
    ("headers", "forward_lists", "reason"),
    [
        (b"Auto-Submitted: no\r\n", False, "forward-full"),
        (b"Auto-Submitted: auto-generated; owner-email=x@ext.test\r\n", False, "auto-submitted"),
        (b"List-Id: <team.ext.test>\r\n", True, "forward-full"),
        (b"Precedence: list\r\n", False, "mailing-list"),
        (b"Precedence: junk\r\n", True, "precedence-bulk"),
        (b"X-Mailstandby-Forwarded: a\r\nX-Mailstandby-Forwarded: b\r\n", False, "forward-full"),
        (b"X-Mailstandby-Forwarded: a\r\n" * 3, False, "hop-limit"),
        (b"Received: from x\r\n" * 51, False, "hop-limit"),
    ],
)
def test_forward_plan_reasons(headers: bytes, forward_lists: bool, reason: str) -> None:
    from mailstandby.directory.base import Forwarding
    from mailstandby.notify.forward import plan

    user = User("a@corp.test", alternates=("a@home.test",), preferences=Preferences(forward=Forwarding.FULL))
    raw = headers + b"From: s@ext.test\r\nSubject: s\r\n\r\nbody\r\n"
    settings = NotifySettings(forward_lists=forward_lists)
    assert plan(user, raw, "s@ext.test", settings).reason.value == reason
    assert plan(User("b@corp.test", alternates=("b@home.test",)), raw, "s@ext.test", settings).reason.value == (
        "forwarding-off"
    )
    pager = (Device("p", sms_gateway="1@sms.test"),)
    full = User("c@corp.test", devices=pager, preferences=Preferences(forward=Forwarding.FULL))
    assert plan(full, raw, "s@ext.test", settings).reason.value == "no-destination"  # full needs an address
    assert plan(user, raw, "A@home.test", settings).reason.value == "from-alternate"  # would go back there


@given(st.binary(max_size=2000), st.integers(min_value=20, max_value=300))
@hsettings(max_examples=300, deadline=None)
def test_summary_and_plan_take_any_bytes(raw: bytes, length: int) -> None:
    """RELIABILITY P15: the MIME/header parsing used for forwarding returns a value for any input."""
    from mailstandby.directory.base import Forwarding
    from mailstandby.notify.forward import plan

    s = compose.summarize(raw, length)
    assert len(s.excerpt) <= length and "\n" not in s.subject + s.sender + s.excerpt
    user = User("a@corp.test", alternates=("a@home.test",), preferences=Preferences(forward=Forwarding.SUMMARY))
    assert plan(user, raw, "s@ext.test", NotifySettings()).reason is not None


@given(st.text(max_size=200))
def test_one_line_values_hold_no_line_break_or_encoded_word(value: str) -> None:
    flat = compose.one_line(value)
    assert "\r" not in flat and "\n" not in flat and "=?" not in flat
