"""Reading a new password on the command line, for users (`passwd`) and administrators (`admin`)."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

from mailstandby.auth import PasswordRefused, hash_password


def new_password_hash(prompt: str, password_file: Path | None, *, account: str, min_length: int) -> str | None:
    """An argon2id hash of a new password for `account`: from `password_file`, asked twice on a terminal,
    or one line of stdin. None (after saying why on stderr) when the policy refuses it (`auth.password_problem`)
    or the two entries differ."""
    if password_file is not None:
        password = password_file.read_text(encoding="utf-8").rstrip("\r\n")
    elif sys.stdin.isatty():
        password = getpass.getpass(prompt)
        if getpass.getpass("Again: ") != password:
            print("mailstandby: the passwords differ", file=sys.stderr)
            return None
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    try:
        return hash_password(password, account=account, min_length=min_length)
    except PasswordRefused as e:
        print(f"mailstandby: {e}", file=sys.stderr)
        return None
