"""Request bodies read with a hard limit, for every route of the admin HTTP listener.

Starlette's `request.body()` keeps whatever the client sends; `read_body`
refuses a declared Content-Length over the limit before reading anything and
stops reading a streamed (chunked) body as soon as it passes the limit, so
a request never holds more than `limit` bytes in memory (RFC 9110 §15.5.14:
413 Content Too Large). The rest of an oversized body is discarded by the
server as it arrives, and the listener's `body_timeout` bounds how long.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request

CONTENT_TOO_LARGE = 413  # RFC 9110 §15.5.14
BAD_REQUEST = 400


class BodyTooLarge(HTTPException):
    def __init__(self) -> None:
        super().__init__(CONTENT_TOO_LARGE, "Request body too large")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, at most `limit` bytes; raises BodyTooLarge (413) past it."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise BodyTooLarge
    except ClientDisconnect:
        raise HTTPException(BAD_REQUEST, "Incomplete request body") from None
    return bytes(body)
