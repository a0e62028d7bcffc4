"""Every regular expression in src/mailstandby, where its input comes from and what bounds its cost.

Issue 16: nothing attacker-controlled may reach a backtracking regex that can
run away. Python's `re` backtracks, so a pattern with a nested quantifier
(`(a+)+`) or two unbounded quantifiers that can share characters (`.*a.*`,
`[^<]+@[^<]+`) takes time polynomial or exponential in its input. This test

- finds every `re.<function>(...)` call with `ast` and fails on one not listed
  in `INVENTORY` below (a new regex must say where its input comes from and
  what bounds it), or on a listed one that no longer exists;
- parses each pattern that sees network input (`re._parser`, the stdlib's own
  parser) and fails on a nested or overlapping quantifier (`ambiguities`);
  `KNOWN` names the ones still to fix, each with the reason it is not fixed here.

The check is a conservative approximation (it may flag a safe pattern, which
then gets rewritten or a justified entry); it is not a proof of linearity, so
every network entry also states the bound on its input.
"""

from __future__ import annotations

import ast
import importlib
import re
import re._constants as sre  # the stdlib's own pattern parser and opcodes
import re._parser as sre_parse
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "mailstandby"
FUNCTIONS = {"compile", "match", "search", "fullmatch", "sub", "subn", "split", "findall", "finditer"}


@dataclass(frozen=True)
class Use:
    source: str  # where the matched text comes from
    bound: str  # why matching it stays cheap
    network: bool  # text a peer on the network chose (checked for ambiguity below)


INVENTORY: dict[tuple[str, str], Use] = {
    ("smtp/codec.py", "_MAILBOX"): Use(
        "MAIL FROM / RCPT TO path from the SMTP client",
        "command line capped by smtp.max_line_length (2048 bytes) in the codec; dot-separated atoms: linear",
        True,
    ),
    ("smtp/codec.py", "_HELO_LITERAL"): Use(
        "HELO/EHLO address literal from the SMTP client",
        "name at most 255 characters, checked first; anchored, bounded repetitions",
        True,
    ),
    ("smtp/codec.py", "_XTEXT_HEX"): Use(
        "DSN ENVID/ORCPT xtext from the SMTP client", "command line capped by smtp.max_line_length; fixed width", True
    ),
    ("smtp/codec.py", "_ADDR_TYPE"): Use(
        "DSN ORCPT address type from the SMTP client", "command line capped; anchored, one character class run", True
    ),
    ("smtp/codec.py", "_SOURCE_ROUTE"): Use(
        "MAIL FROM / RCPT TO path from the SMTP client", "command line capped by smtp.max_line_length", True
    ),
    ("smtp/codec.py", "_PARAM"): Use(
        "ESMTP parameter of MAIL/RCPT", "command line capped by smtp.max_line_length; anchored, disjoint sets", True
    ),
    ("imap/parser.py", "_LITERAL_AT_END"): Use(
        "IMAP command line", "line capped by imap.max_line_length (64 KiB); anchored at \\Z, one digit run", True
    ),
    ("imap/searching.py", "_WSP_RUN"): Use(
        "header values of stored messages (any sender's)", "one character class repeated: linear", True
    ),
    ("pop3/codec.py", "_NEWLINE"): Use("POP3 message lines (stored mail)", "literals only: linear", True),
    ("pop3/codec.py", "[A-Za-z0-9+/]+={0,2}"): Use(
        "SASL response from the POP3 client", "line capped by the codec (POP3 line limit); fullmatch, linear", True
    ),
    ("notify/compose.py", "[\\x00-\\x1f\\x7f]"): Use(
        "header values and summaries (any sender's text)", "one character class: linear", True
    ),
    ("sync/imapclient.py", "_LITERAL_AT_END"): Use(
        "response lines of the primary's IMAP server (configured, trusted)", "anchored at $: linear", True
    ),
    ("sync/imapclient.py", "_CODE"): Use(
        "response text of the primary's IMAP server (configured, trusted)", "anchored, one negated class", True
    ),
    ("store/segments.py", "_NAME"): Use("file names in the data directory", "local, ours", False),
    ("config/loader.py", "_BARE_KEY"): Use(
        "keys of the configuration file", "administrator's text; one class run", False
    ),
    ("store/postgres.py", "_USER"): Use("SQL text written in store/ (never a parameter)", "ours, constant", False),
    ("configdoc.py", "Annotated\\[(\\w+), [^\\]]*\\]"): Use("type annotations of the config models", "ours", False),
    ("configdoc.py", "mailstandby\\.config\\.(?:\\w+\\.)*"): Use(
        "type annotations of the config models", "ours", False
    ),
    ("directory/ldapmap.py", "_TYPED"): Use("LDAP mapping in the config file", "administrator's text", False),
    ("directory/records.py", "_ADDRESS"): Use("directory imports (LDAP, CSV/JSON)", "administrator's data", False),
    ("directory/records.py", "_PHONE"): Use("directory imports", "administrator's data; bounded repeat", False),
    ("directory/records.py", "_URL"): Use("directory imports", "administrator's data", False),
    ("directory/records.py", "_PEM_CERT"): Use("directory imports (certificates)", "administrator's data", False),
    ("directory/records.py", "[\\s.()\\-/]"): Use("directory imports (phone numbers)", "one class: linear", False),
    ("directory/ldap.py", "\\s*\\(_ssl\\.c:\\d+\\)?"): Use(
        "error text from the LDAP client library", "local exception text, cut to 300 characters after", False
    ),
    ("directory/devices.py", "_SPLIT"): Use("device-management exports (CSV/JSON)", "one class: linear", False),
    ("directory/devices.py", "(\\d{1,2})\\s*-\\s*(\\d{1,2})"): Use(
        "quiet hours in device exports", "bounded repeats", False
    ),
    ("directory/static.py", "_SPLIT"): Use("the config file", "one class: linear", False),
}

# Network patterns the ambiguity check flags, still to fix; each entry says why it is not fixed here.
KNOWN: dict[tuple[str, str], str] = {}


# -- finding the calls ----------------------------------------------------------------------------------


def _label(call: ast.Call, target: str | None) -> str:
    """A module-level `NAME = re.compile(...)` is known by NAME; any other call by its literal pattern."""
    if target is not None:
        return target
    first = call.args[0] if call.args else None
    if isinstance(first, ast.Constant) and isinstance(first.value, str | bytes):
        value = first.value
        return value if isinstance(value, str) else value.decode("latin-1")
    raise AssertionError(f"line {call.lineno}: a regex must be a literal or a module-level compiled constant")


def _uses(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(), str(path))
    targets = {
        id(node.value): node.targets[0].id
        for node in tree.body
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
    }
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "re"
            and node.func.attr in FUNCTIONS
        ):
            found.append((_label(node, targets.get(id(node))), node.lineno))
    return found


def inventory_in_source() -> dict[tuple[str, str], int]:
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        for label, line in _uses(path):
            found[(relative, label)] = line
    return found


def test_every_regex_is_listed_with_its_input_and_bound() -> None:
    found = inventory_in_source()
    unlisted = sorted(
        f"{path}:{line} {label!r}" for (path, label), line in found.items() if (path, label) not in INVENTORY
    )
    assert not unlisted, "add these to INVENTORY (input source, bound):\n" + "\n".join(unlisted)
    stale = sorted(f"{path} {label!r}" for path, label in INVENTORY if (path, label) not in found)
    assert not stale, "listed but gone (remove from INVENTORY):\n" + "\n".join(stale)
    assert all(use.source and use.bound for use in INVENTORY.values())


# -- the ambiguity check -------------------------------------------------------------------------------

UNIVERSE = frozenset(range(257))  # Latin-1, and 256 standing for every character above it
_CATEGORY = {
    sre.CATEGORY_DIGIT: frozenset(c for c in range(256) if chr(c).isdigit()) | {256},
    sre.CATEGORY_SPACE: frozenset(c for c in range(256) if chr(c).isspace()) | {256},
    sre.CATEGORY_WORD: frozenset(c for c in range(256) if chr(c).isalnum() or c == 95) | {256},
}
_CATEGORY[sre.CATEGORY_NOT_DIGIT] = UNIVERSE - _CATEGORY[sre.CATEGORY_DIGIT] | {256}
_CATEGORY[sre.CATEGORY_NOT_SPACE] = UNIVERSE - _CATEGORY[sre.CATEGORY_SPACE] | {256}
_CATEGORY[sre.CATEGORY_NOT_WORD] = UNIVERSE - _CATEGORY[sre.CATEGORY_WORD] | {256}
REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT)  # POSSESSIVE_REPEAT and ATOMIC_GROUP never backtrack


def _char(c: int) -> int:
    return c if c < 256 else 256


def _in(items: list[tuple[object, object]]) -> frozenset[int]:
    chars: set[int] = set()
    negate = False
    for op, av in items:
        if op is sre.NEGATE:
            negate = True
        elif op is sre.LITERAL:
            chars.add(_char(av))  # type: ignore[arg-type]
        elif op is sre.RANGE:
            lo, hi = av  # type: ignore[misc]
            chars.update(range(lo, min(hi, 255) + 1))
            if hi > 255:
                chars.add(256)
        elif op is sre.CATEGORY:
            chars |= _CATEGORY.get(av, UNIVERSE)  # type: ignore[call-overload]
        else:
            chars |= UNIVERSE
    return (UNIVERSE - chars) | {256} if negate else frozenset(chars)


def chars(items: list[tuple[object, object]]) -> frozenset[int]:
    """Every character some string matched by `items` may contain."""
    out: set[int] = set()
    for op, av in items:
        if op is sre.LITERAL:
            out.add(_char(av))  # type: ignore[arg-type]
        elif op is sre.NOT_LITERAL or op is sre.ANY:
            out |= UNIVERSE
        elif op is sre.IN:
            out |= _in(av)  # type: ignore[arg-type]
        elif op in REPEATS or op is sre.POSSESSIVE_REPEAT:
            out |= chars(av[2])  # type: ignore[index]
        elif op is sre.SUBPATTERN:
            out |= chars(av[3])  # type: ignore[index]
        elif op is sre.ATOMIC_GROUP:
            out |= chars(av)  # type: ignore[arg-type]
        elif op is sre.BRANCH:
            for branch in av[1]:  # type: ignore[index]
                out |= chars(branch)
        elif op is sre.GROUPREF:
            out |= UNIVERSE
    return frozenset(out)


def _nullable(op: object, av: object) -> bool:
    if op in REPEATS or op is sre.POSSESSIVE_REPEAT:
        return av[0] == 0 or nullable(av[2])  # type: ignore[index]
    if op is sre.SUBPATTERN:
        return nullable(av[3])  # type: ignore[index]
    if op is sre.BRANCH:
        return any(nullable(b) for b in av[1])  # type: ignore[index]
    return op in (sre.AT, sre.ASSERT, sre.ASSERT_NOT)


def nullable(items: list[tuple[object, object]]) -> bool:
    return all(_nullable(op, av) for op, av in items)


def first(items: list[tuple[object, object]]) -> frozenset[int]:
    """The characters a string matched by `items` may start with."""
    out: set[int] = set()
    for op, av in items:
        if op in REPEATS or op is sre.POSSESSIVE_REPEAT:
            out |= first(av[2])  # type: ignore[index]
        elif op is sre.SUBPATTERN:
            out |= first(av[3])  # type: ignore[index]
        elif op is sre.BRANCH:
            for branch in av[1]:  # type: ignore[index]
                out |= first(branch)
        else:
            out |= chars([(op, av)])
        if not _nullable(op, av):
            break
    return frozenset(out)


def _unbounded(op: object, av: object) -> bool:
    return op in REPEATS and av[1] == sre.MAXREPEAT  # type: ignore[index]


def _flatten(items: list[tuple[object, object]]) -> list[tuple[object, object]]:
    """Groups spliced into the sequence around them (a group changes nothing about what matches)."""
    out: list[tuple[object, object]] = []
    for op, av in items:
        if op is sre.SUBPATTERN and not av[1] and not av[2]:  # type: ignore[index]
            out += _flatten(list(av[3]))  # type: ignore[index]
        else:
            out.append((op, av))
    return out


def _inner_unbounded(items: list[tuple[object, object]]) -> list[frozenset[int]]:
    found = []
    for op, av in items:
        if _unbounded(op, av):
            found.append(chars(av[2]))  # type: ignore[index]
        if op in REPEATS or op is sre.POSSESSIVE_REPEAT:
            found += _inner_unbounded(list(av[2]))  # type: ignore[index]
        elif op is sre.SUBPATTERN:
            found += _inner_unbounded(list(av[3]))  # type: ignore[index]
        elif op is sre.BRANCH:
            for branch in av[1]:  # type: ignore[index]
                found += _inner_unbounded(list(branch))
    return found


def ambiguities(items: list[tuple[object, object]]) -> list[str]:
    """Nested unbounded quantifiers whose iterations can split a run differently, and unbounded
    quantifiers in one sequence where the first may eat what the second starts with."""
    seq = _flatten(items)
    problems: list[str] = []
    for i, (op, av) in enumerate(seq):
        if op in REPEATS or op is sre.POSSESSIVE_REPEAT:
            body = list(av[2])  # type: ignore[index]
            problems += ambiguities(body)
            if _unbounded(op, av):
                starts = first(body)
                if nullable(body) or any(inner & starts for inner in _inner_unbounded(body)):
                    problems.append("nested quantifier: an iteration can end inside the next one")
                problems += _overlap(seq, i)
        elif op is sre.BRANCH:
            for branch in av[1]:  # type: ignore[index]
                problems += ambiguities(list(branch))
        elif op is sre.SUBPATTERN or op is sre.ATOMIC_GROUP:
            pass  # plain groups are flattened; atomic groups and flagged groups never backtrack into
    return problems


def _overlap(seq: list[tuple[object, object]], i: int) -> list[str]:
    eats = chars(list(seq[i][1][2]))  # type: ignore[index]
    for op, av in seq[i + 1 :]:
        if _unbounded(op, av) and eats & first(list(av[2])):  # type: ignore[index]
            return ["overlapping quantifiers: the first can eat what the second matches"]
        if not (_nullable(op, av) or chars([(op, av)]) <= eats):
            break
    return []


_ANCHORS = (sre.AT_BEGINNING, sre.AT_BEGINNING_STRING)


def restarts(items: list[tuple[object, object]]) -> list[str]:
    """An unanchored pattern tried at every position (search, sub, findall) is quadratic when an
    unbounded quantifier scans a run that later attempts start inside of, and something after it
    can fail (`<[^>]+>` on a run of `<`, issue 16 finding 2)."""
    seq = _flatten(items)
    if seq and seq[0][0] is sre.AT and seq[0][1] in _ANCHORS:
        return []
    starts = first(seq)
    for i, (op, av) in enumerate(seq):
        if _unbounded(op, av) and chars(list(av[2])) & starts and not nullable(seq[i + 1 :]):  # type: ignore[index]
            return ["restart: every start position rescans the same run"]
    return []


def pattern_of(path: str, label: str) -> re.Pattern[str] | re.Pattern[bytes]:
    module = importlib.import_module("mailstandby." + path.removesuffix(".py").replace("/", "."))
    compiled = getattr(module, label, None)
    if isinstance(compiled, re.Pattern):
        return compiled
    return re.compile(label)


@pytest.mark.parametrize("key", sorted(k for k, use in INVENTORY.items() if use.network), ids=str)
def test_no_nested_or_overlapping_quantifier_on_network_input(key: tuple[str, str]) -> None:
    compiled = pattern_of(*key)
    source = compiled.pattern if isinstance(compiled.pattern, str) else compiled.pattern.decode("latin-1")
    parsed = list(sre_parse.parse(source, compiled.flags & ~re.UNICODE))
    problems = ambiguities(parsed) + restarts(parsed)
    if key in KNOWN:
        assert problems, f"{key} is fixed: remove it from KNOWN"
        pytest.xfail(KNOWN[key])
    assert not problems, (key, problems)


@pytest.mark.parametrize(
    ("pattern", "runaway"),
    [
        (r"(a+)+$", True),
        (r"(a|a)*$", False),  # exponential in CPython too, but by branches: not what this check sees
        (r".*a.*a.*b", True),
        (r"[^<\s]+@[^<\s]+x", True),
        (r"^[^<\s@]+@[^<\s]+x", False),
        (r"[^<\s@]+@[^<\s]+x", True),  # restarts on a run without `@`
        (r"<[^>]+>", True),  # restarts: quadratic on a run of `<` (the old summary regex)
        (r"^<[^>]+>", False),
        (r"<[^<>]+>", False),
        (r"^\w+(?:\.\w+)*@", False),
        (r"\w+(?:\.\w+)*@", True),  # restarts on a run of letters without `@`
        (r"(?:\w+\.?)*@", True),
        (r"[a-z]+\d+[a-z]+", True),  # restarts on a run of letters without a digit
        (r"\d+[a-z]+", True),
        (r"[ \t]+", False),
        (r"\s*x\s*", True),  # restarts on a run of spaces without an x
        (r"a*+a*", False),  # possessive: no backtracking
    ],
)
def test_the_check_itself(pattern: str, runaway: bool) -> None:
    parsed = list(sre_parse.parse(pattern))
    assert bool(ambiguities(parsed) + restarts(parsed)) is runaway
