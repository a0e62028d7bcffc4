"""SASL PLAIN (RFC 4616) and LOGIN (draft-murchison-sasl-login) decoding, without I/O."""

from __future__ import annotations

import base64
import binascii

from mailstandby.core.reply import Rejected
from mailstandby.smtp import codes

MAX_RESPONSE = 4096


def b64decode(text: str) -> bytes:
    """A client's base64 response; '*' (cancel) and bad base64 are 501 (RFC 4954 §4)."""
    if text == "*":
        raise Rejected(codes.C501_AUTH_CANCELLED)
    if len(text) > MAX_RESPONSE:
        raise Rejected(codes.C500_LINE_TOO_LONG)
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise Rejected(codes.C501_BAD_BASE64) from None


def plain_credentials(response: bytes) -> tuple[str, str]:
    """(username, password) from a PLAIN response `authzid NUL authcid NUL passwd`.

    An authorization identity other than the authentication identity is refused:
    nobody may act as another user here.
    """
    parts = response.split(b"\x00")
    if len(parts) != 3:
        raise Rejected(codes.C501_BAD_BASE64)
    try:
        authzid, authcid, password = (p.decode("utf-8") for p in parts)
    except UnicodeDecodeError:
        raise Rejected(codes.C501_BAD_BASE64) from None
    if authzid and authzid != authcid:
        raise Rejected(codes.C535_AUTH_FAILED, detail="authorization identity differs")
    return authcid, password


def text(response: bytes) -> str:
    try:
        return response.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected(codes.C501_BAD_BASE64) from None
