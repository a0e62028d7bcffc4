"""LIST/LSUB patterns from the network are matched without backtracking, and their length is bounded.

RFC 3501 §6.3.8; issue 16 finding 3 (the real-process check that another session is served meanwhile
is in tests/wire/test_attacker_cpu.py).
"""

from __future__ import annotations

from imap_harness import IMAPRig, make_rig, rig, store_factory

from mailstandby.imap.wildcard import MAX_PATTERN

__all__ = ["make_rig", "rig", "store_factory"]  # fixtures

LONG = "a" * 250


async def test_backtracking_pattern_against_a_long_name_is_answered(rig: IMAPRig) -> None:
    client = await rig.raw()
    await client.login()
    await client.cmd(f'a CREATE "{LONG}"'.encode())
    stars = "*a" * 60 + "*b"
    assert await client.cmd(f'b LIST "" "{stars}"'.encode()) == []
    assert await client.cmd(f'c LSUB "" "{stars}"'.encode()) == []
    lines = await client.cmd(f'd LIST "" "{"*a" * 60}*"'.encode())
    assert lines == [f'* LIST (\\HasNoChildren) "/" {LONG}\r\n'.encode()]


async def test_overlong_pattern_is_refused(rig: IMAPRig) -> None:
    client = await rig.raw()
    await client.login()
    assert await client.cmd(f'a LIST "" "{"*" * (MAX_PATTERN + 1)}"'.encode(), expect=b"NO") == []
    assert await client.cmd(f'b LIST "{"x" * MAX_PATTERN}" "*"'.encode(), expect=b"NO") == []
    assert len(await client.cmd(f'c LIST "" "{"*" * MAX_PATTERN}"'.encode())) == 4  # the defaults
