"""SMTP as strict as Postfix where it matters: command syntax (RFC 5321 §2.3.8, §4.1.1), HELO
names, mail loops (hopcount_limit), per-client rates (anvil), talk before the greeting
(postscreen pregreet) and RFC 2034 enhanced status codes on every reply after EHLO.

Where Postfix 3.7's own answer was checked against the real server (tests/support/primary.py),
the case says so; docs/rfc-status.md lists where we are deliberately stricter.
"""

from __future__ import annotations

import re

import pytest
from smtp_harness import Gateway, GatewayFactory, RawClient, message

RCPT = "alice@corp.test"


async def open_transaction(c: RawClient, rcpts: tuple[str, ...] = (RCPT,)) -> None:
    await c.command("MAIL FROM:<s@example.test>", "250 2.1.0")
    for r in rcpts:
        await c.command(f"RCPT TO:<{r}>", "250 2.1.5")


# -- command lines (RFC 5321 §2.3.8, §4.1.1) -------------------------------------------


async def test_verbs_and_keywords_are_case_insensitive(gw: Gateway) -> None:
    c = await gw.connect()
    await c.command("eHlO client.test", "250 ")
    await c.command("mail from:<s@example.test> body=8bitmime", "250 2.1.0")
    await c.command(f"rCpT tO:<{RCPT}> notify=success,DELAY", "250 2.1.5")
    await c.command("data", "354 ")
    await c.send(message() + b".\r\n")
    await c.expect("250 2.0.0")
    await c.command("qUiT", "221 2.0.0")
    assert len(gw.accepted) == 1


async def test_command_ending_in_bare_lf_is_taken_as_postfix_does(gw: Gateway) -> None:
    # Postfix 3.7 (smtpd_forbid_bare_newline = no) and 3.9 (= normalize) both read a command
    # line ending in a bare LF as if it ended in CRLF; message data is another matter (550 5.5.2).
    c = await gw.connect()
    await c.send(b"EHLO client.test\n")
    await c.expect("250 ")
    await c.send(b"NOOP\n")
    await c.expect("250 2.0.0")
    await c.quit()


async def test_bare_cr_inside_a_command_is_refused(gw: Gateway) -> None:
    # Stricter than Postfix (which reads "NOOP\rRSET" as NOOP with an argument): a CR is never
    # part of an SMTP command, so one command cannot hide another.
    c = await gw.connect()
    await c.ehlo()
    await c.send(b"NOOP\rRSET\r\n")
    await c.expect("500 5.5.2")
    await c.send(b"MAIL FROM:<s@example.test>\rRCPT TO:<x@corp.test>\r\n")
    await c.expect("500 5.5.2")
    await c.quit()


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        ("RSET now", "501 5.5.4"),  # RFC 5321 §4.1.1.5 (Postfix: 501 5.5.4 Syntax: RSET)
        ("NOOP with words", "250 2.0.0"),  # §4.1.1.9: NOOP takes a string
        ("HELP me", "214 2.0.0"),  # §4.1.1.8
        ("VRFY", "501 5.5.4"),  # §4.1.1.6: VRFY needs a string
        ("STARTTLS now", "501 5.5.4"),  # RFC 3207 §4
        ("MAIL FROM: <s@example.test>", "250 2.1.0"),  # a space after the colon, as Postfix allows
    ],
)
async def test_arguments_where_the_grammar_allows_them(gw: Gateway, line: str, reply: str) -> None:
    c = await gw.connect()
    await c.ehlo()
    await c.command(line, reply)
    await c.quit()


async def test_quit_with_an_argument_still_says_goodbye(gw: Gateway) -> None:
    c = await gw.connect()  # Postfix 3.7: "QUIT now" -> 221 2.0.0 Bye
    await c.ehlo()
    await c.send(b"QUIT now\r\n")
    assert [r.last for r in await c.replies_until_eof()] == ["221 2.0.0 Bye"]


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        ("MAIL FROM:<s@example.test> SIZE=abc", "501 5.5.4 Bad message size syntax"),  # Postfix, verbatim
        ("MAIL FROM:<s@example.test> RET=XYZ", "501 5.5.4 Bad RET parameter syntax"),
        ("MAIL FROM:<s@example.test> RET=HDRS RET=FULL", "501 5.5.4"),
        ("MAIL FROM:<s@example.test> ENVID=a\x7fb", "501 5.5.4"),  # xtext is printable ASCII
        ("MAIL FROM:<s@example.test> ENVID=a+2", "501 5.5.4 Bad ENVID parameter syntax"),
        ("MAIL FROM:<s@example.test> FOO=bar", "555 5.5.4"),
        ("MAIL FROM:<s@example.test> =x", "501 5.5.4"),
        ("MAIL FROM:<s@example.test>SIZE=10", "501 5.5.4"),  # no SP before the parameters
        ("MAIL FROM:s@example.test", "501 5.1.7"),  # stricter than Postfix: the <> are the grammar
        ("MAIL TO:<s@example.test>", "501 5.5.4"),
    ],
)
async def test_mail_argument_grammar(gw: Gateway, line: str, reply: str) -> None:
    c = await gw.connect()
    await c.ehlo()
    await c.command(line, reply)
    await c.command("MAIL FROM:<s@example.test> RET=hdrs ENVID=a+2Bb", "250 2.1.0")  # still usable
    await c.quit()


@pytest.mark.parametrize(
    ("params", "reply"),
    [
        ("NOTIFY=NEVER,SUCCESS", "501 5.5.4 Error: Bad NOTIFY parameter syntax"),  # Postfix, verbatim
        ("NOTIFY=BOGUS", "501 5.5.4 Error: Bad NOTIFY parameter syntax"),
        ("NOTIFY=", "501 5.5.4"),
        ("ORCPT=bogus", "501 5.5.4 Error: Bad ORCPT parameter syntax"),
        ("ORCPT=rfc822;a+ZZb@corp.test", "501 5.5.4 Error: Bad ORCPT parameter syntax"),
        ("FOO=1", "555 5.5.4"),
        ("NOTIFY=success,delay", "250 2.1.5"),
        ("NOTIFY=NEVER ORCPT=rfc822;alice+40corp.test", "250 2.1.5"),
    ],
)
async def test_rcpt_argument_grammar(gw: Gateway, params: str, reply: str) -> None:
    c = await gw.connect()
    await c.ehlo()
    await c.command("MAIL FROM:<s@example.test>", "250 2.1.0")
    await c.command(f"RCPT TO:<{RCPT}> {params}", reply)
    await c.quit()


async def test_dsn_parameters_after_helo_are_555(gw: Gateway) -> None:
    c = await gw.connect()
    await c.command("HELO client.test", "250 ")
    await c.command("MAIL FROM:<s@example.test> RET=HDRS", "555 Unsupported option")
    await c.command("MAIL FROM:<s@example.test>", "250 Ok")
    await c.command(f"RCPT TO:<{RCPT}> NOTIFY=NEVER", "555 Unsupported option")
    await c.quit()


# -- HELO/EHLO names (RFC 5321 §4.1.1.1, Postfix reject_invalid_helo_hostname) ----------------


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("mx.example.test", True),
        ("my_laptop.local", True),  # Postfix's valid_hostname allows '_'
        ("[192.0.2.7]", True),
        ("[IPv6:2001:db8::1]", True),
        ("localhost", True),
        ("bad..name", False),
        ("-lead.example", False),
        ("host/name", False),
        ("a" * 64 + ".example", False),  # a label of 64
        ("[300.1.1.1", False),
    ],
)
async def test_invalid_helo_names_when_configured(make_gateway: GatewayFactory, name: str, ok: bool) -> None:
    gw = await make_gateway(reject_invalid_helo_hostname=True)
    c = await gw.connect()
    if ok:
        await c.command(f"EHLO {name}", "250 ")
    else:
        await c.command(f"EHLO {name}", "501 Helo command rejected: Invalid name")
        await c.command("MAIL FROM:<s@example.test>", "503 ")  # not greeted
    await c.quit()


async def test_helo_names_are_not_judged_by_default(gw: Gateway) -> None:
    c = await gw.connect()  # Postfix's default: any one word
    await c.command("EHLO bad..name", "250 ")
    await c.quit()


# -- mail loops (RFC 5321 §6.3, Postfix hopcount_limit) -------------------------------------


def with_hops(n: int) -> bytes:
    hops = b"".join(b"Received: from hop%d.example.test by x; Mon, 1 Jan 2024 00:00:00 +0000\r\n" % i for i in range(n))
    return hops + message("loop")


@pytest.mark.parametrize(("hops", "reply"), [(48, "250 2.0.0"), (49, "554 5.4.0 Error: too many hops")])
async def test_hop_count_limit_counts_our_own_received_too(gw: Gateway, hops: int, reply: str) -> None:
    # Postfix 3.7 (hopcount_limit = 50): 48 Received: headers pass, 49 (+ its own = 50) are refused
    c = await gw.connect()
    await c.ehlo()
    await open_transaction(c)
    await c.command("DATA", "354 ")
    await c.send(with_hops(hops) + b".\r\n")
    await c.expect(reply)
    await c.quit()
    assert len(gw.accepted) == (1 if reply.startswith("250") else 0)
    assert len(await gw.stored_ids()) == len(gw.accepted)


async def test_hop_count_sees_received_in_any_case_and_not_in_the_body(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(hopcount_limit=3)
    c = await gw.connect()
    await c.ehlo()
    await open_transaction(c)
    await c.command("DATA", "354 ")
    await c.send(b"received: a\r\nRECEIVED : b\r\nSubject: x\r\n\r\nReceived: body\r\n.\r\n")
    await c.expect("554 5.4.0")
    await open_transaction(c)
    await c.command("DATA", "354 ")
    await c.send(b"Received: a\r\nSubject: x\r\n\r\nReceived: body\r\nReceived: body\r\n.\r\n")
    await c.expect("250 2.0.0")
    await c.quit()


# -- per-client rates (Postfix anvil) -----------------------------------------------------


async def test_connection_rate_421(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(client_connection_rate_limit=2)
    first, second = await gw.connect(), await gw.connect()
    await first.quit()
    await second.quit()  # closed: the rate is about connections opened, not open
    third = await gw.connect(greet=False)
    replies = await third.replies_until_eof()
    # before EHLO: no enhanced status code (RFC 2034 §3); Postfix sends 421 4.7.0
    assert [r.last for r in replies] == ["421 Error: too many connections from your address"]


async def test_connection_rate_spares_exempt_networks(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(client_connection_rate_limit=1, rate_limit_exceptions=["127.0.0.0/8"])
    for _ in range(3):
        c = await gw.connect()
        await c.quit()


async def test_message_rate_450_counts_every_mail_command(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(client_message_rate_limit=2)
    c = await gw.connect()
    await c.ehlo()
    await c.command("MAIL FROM:<s@example.test>", "250 2.1.0")
    await c.command("RSET", "250 ")
    await c.command("MAIL FROM:<s@example.test>", "250 2.1.0")
    await c.command("RSET", "250 ")
    await c.command("MAIL FROM:<s@example.test>", "450 4.7.1 Error: too much mail from your address")
    await c.quit()
    other = await gw.connect()  # the count is per client, not per session
    await other.ehlo()
    await other.command("MAIL FROM:<s@example.test>", "450 4.7.1")
    await other.quit()


async def test_recipient_rate_450_counts_refused_recipients(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(client_recipient_rate_limit=3)
    c = await gw.connect()
    await c.ehlo()
    await c.command("MAIL FROM:<s@example.test>", "250 2.1.0")
    await c.command("RCPT TO:<nobody@corp.test>", "550 5.1.1")
    await c.command("RCPT TO:<x@elsewhere.test>", "554 5.7.1")
    await c.command(f"RCPT TO:<{RCPT}>", "250 2.1.5")
    await c.command("RCPT TO:<bob@corp.test>", "450 4.7.1 Error: too many recipients from your address")
    await c.command("DATA", "354 ")  # what was accepted still goes through
    await c.send(message() + b".\r\n")
    await c.expect("250 2.0.0")
    await c.quit()
    assert [r.rcpt for r in gw.accepted[0].recipients] == [RCPT]


# -- talk before the greeting (postscreen pregreet) ------------------------------------------


async def test_client_talking_before_the_banner_gets_521_and_is_closed(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(greet_wait=5.0)  # ends as soon as the client talks: no test waits 5 s
    c = await gw.connect(greet=False)
    await c.send(b"EHLO spammer.test\r\nMAIL FROM:<s@example.test>\r\n")
    replies = await c.replies_until_eof()
    assert [r.last for r in replies] == ["521 Protocol error"]  # postscreen: 521 5.5.1 (RFC 2034: none before EHLO)
    assert gw.accepted == []


async def test_a_patient_client_gets_the_banner_after_the_wait(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(greet_wait=0.2)
    c = await gw.connect()  # expects the 220
    await c.ehlo()
    await c.quit()


async def test_input_already_there_at_the_banner_is_caught_without_a_wait(gw: Gateway) -> None:
    c = await gw.connect()
    await c.ehlo()  # the default (no wait) answers a compliant client as before
    await c.quit()


# -- RFC 2034: an enhanced status code on every reply after EHLO -----------------------------

ENHANCED = re.compile(r"^[245]\d\d[ -][245]\.\d{1,3}\.\d{1,3} ")


async def test_every_reply_after_ehlo_has_an_enhanced_status(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(max_errors=50)
    c = await gw.connect()
    await c.ehlo()
    commands = [
        b"NOOP",
        b"HELP",
        b"VRFY x",
        b"VRFY",
        b"RSET",
        b"RSET x",
        b"XYZZY",
        b"EXPN x",
        b"AUTH PLAIN",
        b"RCPT TO:<a@corp.test>",
        b"DATA",
        b"BDAT 3\r\nx",
        b"MAIL FROM:<bad>",
        b"MAIL FROM:<s@example.test> SIZE=x",
        b"MAIL FROM:<s@example.test> SIZE=999999999",
        b"MAIL FROM:<\xc3\xa9@example.test>",
        b"MAIL FROM:<s@example.test> X=1",
        b"MAIL FROM:<s@example.test>",
        b"MAIL FROM:<s@example.test>",
        b"RCPT TO:<nobody@corp.test>",
        b"RCPT TO:<a@elsewhere.test>",
        b"RCPT TO:<bad>",
        b"RCPT TO:<a@corp.test> X=1",
        b"RCPT TO:<a@corp.test> NOTIFY=X",
        b"DATA",
        b"BDAT 3\r\nx",
        b"\xff",
        b"\x00",
        b"x" * 2000,
        b"STARTTLS x",
        b"RCPT TO:<alice@corp.test>",
        b"BDAT 3\r\na",
        b"DATA",
        b"RCPT TO:<bob@corp.test>",
        b"BDAT 4 LAST\r\nd\n",
        b"MAIL FROM:<s@example.test>",
        b"RCPT TO:<alice@corp.test>",
        b"BDAT 200000\r\n" + b"x" * 199998,
        b"BDAT 2 LAST\r\n",
        b"MAIL FROM:<s@example.test>",
        b"RCPT TO:<alice@corp.test>",
        b"BDAT 42 LAST\r\n" + with_hops(0)[:40],
        b"DATA",
        b"RSET",
    ]
    seen: set[str] = set()
    for command in commands:
        await c.send(command + b"\r\n")  # a BDAT chunk ends in this CRLF
        r = await c.reply()
        seen.add(r.last[:3])
        assert all(ENHANCED.match(x) for x in r.lines), (command, str(r))
    assert seen >= {"250", "214", "252", "452", "500", "501", "502", "503", "550", "551", "552", "553", "554", "555"}
    await open_transaction(c)
    await c.command("DATA", "354 ")  # RFC 2034 §3: the 354 carries no enhanced status
    await c.send(message() + b".\r\n")
    await c.expect("250 2.0.0")
    await c.send(b"QUIT\r\n")
    assert [r.last for r in await c.replies_until_eof()] == ["221 2.0.0 Bye"]


async def test_replies_before_ehlo_and_after_helo_carry_none(gw: Gateway) -> None:
    c = await gw.connect()
    await c.command("MAIL FROM:<s@example.test>", "503 Error: send HELO/EHLO first")
    await c.command("HELO client.test", "250 ")
    await c.command("MAIL FROM:<s@example.test> X=1", "555 Unsupported option")
    await c.send(b"QUIT\r\n")
    assert [r.last for r in await c.replies_until_eof()] == ["221 Bye"]


async def test_hop_limit_is_a_setting(make_gateway: GatewayFactory) -> None:
    gw = await make_gateway(hopcount_limit=2)
    c = await gw.connect()
    await c.ehlo()
    await open_transaction(c)
    await c.command("DATA", "354 ")
    await c.send(with_hops(1) + b".\r\n")
    await c.expect("554 5.4.0")
    await c.quit()
