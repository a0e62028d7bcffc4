"""Setup links and one-time codes: derived from a secret key, stored only as hashes.

A link token is HMAC-SHA256(key, "link", user, occurrence): the notifier can
render the same link again after a restart without the token ever being
stored; the `setup_tokens` table keeps SHA-256(token), the user, the expiry
and when it was used. A one-time code is six digits derived the same way from
a random nonce; its row keeps an HMAC of (user, code) and counts wrong tries.
The key lives in `DATA_DIR/notify.key` (mode 0600).

Everything here is pure but `load_key`; the rows are written and checked by
the store (`notify.records.NotifyStore`), each use in one step.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

KEY_FILE = "notify.key"
MAX_CODE_TRIES = 5
MAX_LIVE_CODES = 3  # one-time codes per user until the oldest expires (each one is mail to the user)


class Purpose(StrEnum):
    LINK = "link"
    CODE = "code"


class TokenProblem(StrEnum):
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    USED = "used"
    TOO_MANY_TRIES = "too-many-tries"


def load_key(data_dir: Path) -> bytes:
    """The installation's token key, created (0600) on first use."""
    path = data_dir / KEY_FILE
    try:
        key = path.read_bytes()
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, secrets.token_bytes(32))
        os.fsync(fd)
    finally:
        os.close(fd)
    with contextlib.suppress(FileExistsError):
        os.link(tmp, path)  # never replace a key another process created meanwhile
    tmp.unlink(missing_ok=True)
    return path.read_bytes()


def _mac(key: bytes, *parts: str) -> bytes:
    return hmac.new(key, "\0".join(parts).encode(), hashlib.sha256).digest()


def link_token(key: bytes, user: str, occurrence: str) -> str:
    return base64.urlsafe_b64encode(_mac(key, "link", user, occurrence)).decode().rstrip("=")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def code_for(key: bytes, user: str, nonce: str) -> str:
    return f"{int.from_bytes(_mac(key, 'code', user, nonce)[:8], 'big') % 1_000_000:06d}"


def code_hash(key: bytes, user: str, code: str) -> str:
    return _mac(key, "code-hash", user, code.strip()).hex()


@dataclass(frozen=True, slots=True)
class TokenRow:
    user: str
    purpose: Purpose
    expires_at: float
    used_at: float | None
    tries: int


def problem(row: TokenRow | None, now: float) -> TokenProblem | None:
    """Why a token cannot be used now, or None (pure)."""
    if row is None:
        return TokenProblem.UNKNOWN
    if row.used_at is not None:
        return TokenProblem.USED
    if row.expires_at <= now:
        return TokenProblem.EXPIRED
    if row.purpose is Purpose.CODE and row.tries >= MAX_CODE_TRIES:
        return TokenProblem.TOO_MANY_TRIES
    return None
