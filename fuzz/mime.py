"""Fuzz target: the MIME structure and its IMAP writers (`imap.mime`, `imap.rfc822`, `imap.bodystructure`).

The input is a stored message. Properties, with the default limits and with
tiny ones (so the nesting and part limits are reached by small inputs):
- parsing and writing never raise (the module promises it for any bytes);
- BODYSTRUCTURE, BODY and ENVELOPE are syntactically valid IMAP (RFC 3501 §9,
  read back strictly by `fuzz.imap_grammar`), and BODY is BODYSTRUCTURE
  without its extension data;
- every part BODYSTRUCTURE announces can be fetched: `BODY[part]` has exactly
  the size (and, for text and message/rfc822, the line count) announced;
- `BODY[HEADER]` followed by `BODY[TEXT]` is `BODY[]`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

from fuzz import imap_grammar as g
from fuzz.engine import Target
from fuzz.run import module_main
from mailstandby.imap.bodystructure import body, bodystructure, envelope
from mailstandby.imap.mime import Message


def _is_multipart(v: g.Lst) -> bool:
    return isinstance(v.items[0], g.Lst)


def _parts(v: g.Lst, path: tuple[int, ...]) -> Iterator[tuple[tuple[int, ...], g.Lst]]:
    """(IMAP part number, body) for every non-multipart body, as a client numbers them (RFC 3501 §6.4.5)."""
    if _is_multipart(v):
        for i, child in enumerate(itertools.takewhile(lambda x: isinstance(x, g.Lst), v.items)):
            yield from _parts(child, (*path, i + 1))  # type: ignore[arg-type]
        return
    here = path or (1,)
    yield here, v
    kind = (v.items[0].value.upper(), v.items[1].value.upper())  # type: ignore[union-attr]
    if kind == (b"MESSAGE", b"RFC822"):
        inner = v.items[8]
        assert isinstance(inner, g.Lst)
        yield from _parts(inner, here if _is_multipart(inner) else (*here, 1))


def _check(msg: Message) -> None:
    structure = g.read(bodystructure(msg))
    g.body(structure, extended=True)
    plain = g.read(body(msg))
    g.body(plain, extended=False)
    assert g.strip_extensions(structure) == plain, "BODY is not BODYSTRUCTURE without extension data"
    g.envelope(g.read(envelope(msg)))
    assert isinstance(structure, g.Lst)
    for path, part in _parts(structure, ()):
        data = msg.section(path)
        size = part.items[6]
        assert len(data) == size, f"BODY[{path}] has {len(data)} octets, BODYSTRUCTURE says {size}"
        kind = (part.items[0].value.upper(), part.items[1].value.upper())  # type: ignore[union-attr]
        lines = part.items[9] if kind == (b"MESSAGE", b"RFC822") else part.items[7] if kind[0] == b"TEXT" else None
        if lines is not None:
            count = data.count(b"\n")
            assert count == lines, f"BODY[{path}] has {count} lines, BODYSTRUCTURE says {lines}"
        msg.section(path, "MIME")
        msg.section(path, "HEADER.FIELDS", ("SUBJECT", "CONTENT-TYPE"))
    assert msg.section((), "HEADER") + msg.section((), "TEXT") == msg.section(), "HEADER + TEXT is not the message"


def check(data: bytes) -> None:
    _check(Message(data))
    _check(Message(data, max_nested=3, max_parts=8))


TARGET = Target(
    "mime",
    check,
    __doc__ or "",
    seed_dirs=(Path(__file__).resolve().parent.parent / "tests" / "data" / "mime",),  # the differential test's corpus
    # The strict IMAP grammar reader that checks the output is pure Python and dominates: on a 111 KB message of
    # 7,000 parts the writers under test took 0.23 s (linear: 0.30 s at 279 KB), the reader 2 s, on one core.
    slow_seconds=5.0,
    tokens=(
        b"\r\n", b"\n", b"\r\n\r\n", b"--", b"--b\r\n", b"--b--\r\n", b"Content-Type: ", b"multipart/mixed; boundary=b",
        b"message/rfc822", b"multipart/digest; boundary=d", b"text/plain; charset=utf-8", b"MIME-Version: 1.0\r\n",
        b"Content-Transfer-Encoding: base64", b"Content-Disposition: attachment; filename*0*=utf-8''a%20b;",
        b"Content-Language: en, de", b"From: \"A B\" <a@b.example>, group: c@d, e@f;", b"(comment)", b"\"quoted\\\"\"",
        b"=?utf-8?q?x?=", b" \t", b"\x00", b"\xc3\xa9",
    ),
)  # fmt: skip

if __name__ == "__main__":
    module_main(TARGET.name)
