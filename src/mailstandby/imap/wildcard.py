"""LIST/LSUB mailbox patterns (RFC 3501 §6.3.8), matched in linear time.

`*` matches any run of characters, `%` any run without the hierarchy
delimiter `/`; everything else matches itself. A pattern starting with
`INBOX` in any case (followed by nothing, the delimiter or a wildcard) names
INBOX, whose name is case-insensitive (RFC 3501 §5.1).

Invariant: no backtracking. The pattern becomes a small automaton (one state
per token) run over the name with the set of live states held as the bits of
an int, so a match costs O(len(name) * len(pattern) / word size) whatever the
input: `*a*a*a*…*b` against a long name is as cheap as `*`. Patterns longer
than `MAX_PATTERN` are refused by the caller before they get here.
"""

from __future__ import annotations

from dataclasses import dataclass

SEPARATOR = "/"
MAX_PATTERN = 1024  # characters; mailbox names are at most 255 bytes, so longer patterns say nothing useful


def _tokens(pattern: str) -> str:
    """The pattern with runs of wildcards collapsed (`**`, `%*`, `*%` are `*`; `%%` is `%`)."""
    out: list[str] = []
    for c in pattern:
        if c in "*%" and out and out[-1] in "*%":
            if c == "*":
                out[-1] = "*"
            continue
        out.append(c)
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Wildcard:
    """A compiled LIST pattern; `matches(name)` runs in O(len(name) * len(pattern) / 64)."""

    size: int  # number of tokens: the accepting state's bit
    literal: dict[str, int]  # character -> bits of the states expecting that character
    star: int  # bits of `*` states (stay on any character)
    percent: int  # bits of `%` states (stay on any character but the delimiter)

    @classmethod
    def compile(cls, pattern: str) -> Wildcard:
        if pattern[:5].upper() == "INBOX" and (len(pattern) == 5 or pattern[5] in "/*%"):
            pattern = "INBOX" + pattern[5:]
        tokens = _tokens(pattern)
        literal: dict[str, int] = {}
        star = percent = 0
        for i, c in enumerate(tokens):
            if c == "*":
                star |= 1 << i
            elif c == "%":
                percent |= 1 << i
            else:
                literal[c] = literal.get(c, 0) | 1 << i
        return cls(len(tokens), literal, star, percent)

    def _closure(self, states: int) -> int:
        """Wildcards match the empty string: a live wildcard state also enables the next one.
        Wildcards never follow each other after `_tokens`, so one step is enough."""
        return states | (states & (self.star | self.percent)) << 1

    def matches(self, name: str) -> bool:
        states = self._closure(1)
        wild = self.star | self.percent
        for c in name:
            stay = states & (self.star if c == SEPARATOR else wild)
            states = self._closure(((states & self.literal.get(c, 0)) << 1) | stay)
            if not states:
                return False
        return bool(states >> self.size & 1)
