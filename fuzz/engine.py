"""The two fuzzing engines over one `Target`: hypothesis (portable) and atheris (coverage-guided).

A target is a pure function `check(data: bytes) -> None` that raises
`AssertionError` when a property does not hold; any other exception escaping
it is a crash. Both engines wrap it in `Target.run`, which also bounds the
CPU time one input may take (`SLOW_INPUT_SECONDS`): every parser here runs on
the event loop, so one slow input stalls every connection. CPU time, not wall
time, so that a machine busy with other work does not make a fast input look
slow; a slow input is timed twice and counts only if both runs are slow.

Hypothesis inputs come from the seed corpus, mutated by drawn edits (so a
failure shrinks to a small edit of a seed), or from raw bytes. The mutations
include repeating a slice many times: super-linear parsers show up on long
runs of one construct, not on short random bytes.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

CORPUS = Path(__file__).resolve().parent / "corpus"
SLOW_INPUT_SECONDS = 1.0
MAX_INPUT = 256 * 1024  # bytes: inputs above this are cut (atheris) or never built (hypothesis)


class SlowInput(AssertionError):
    """One input took more than SLOW_INPUT_SECONDS of CPU time, twice."""


@dataclass(frozen=True)
class Target:
    name: str
    check: Callable[[bytes], None]
    doc: str
    extra_seeds: tuple[bytes, ...] = field(default=())
    tokens: tuple[bytes, ...] = field(default=())  # the grammar's words, for mutations to insert
    seed_dirs: tuple[Path, ...] = field(default=())  # more seeds kept elsewhere in the repository
    instrument: tuple[str, ...] = ("mailstandby",)  # module prefixes atheris measures coverage in
    slow_seconds: float = SLOW_INPUT_SECONDS  # CPU time one input may take

    @property
    def corpus_dir(self) -> Path:
        return CORPUS / self.name

    def seeds(self) -> list[bytes]:
        dirs = [d for d in (self.corpus_dir, *self.seed_dirs) if d.is_dir()]
        files = [p for d in dirs for p in sorted(d.iterdir()) if p.is_file()]
        return [p.read_bytes() for p in files] + list(self.extra_seeds)

    def run(self, data: bytes) -> None:
        """Check one input, and that it took less than `slow_seconds` of CPU time."""
        data = data[:MAX_INPUT]
        took = _cpu(self.check, data)
        if took > self.slow_seconds and _cpu(self.check, data) > self.slow_seconds:
            raise SlowInput(f"{self.name}: {len(data)}-byte input took {took:.2f} s of CPU time")


def _cpu(check: Callable[[bytes], None], data: bytes) -> float:
    start = time.process_time()
    check(data)
    return time.process_time() - start


# -- hypothesis -------------------------------------------------------------------------------
_EDIT = st.one_of(
    st.tuples(st.just("insert"), st.integers(0, 2**16), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), st.integers(0, 2**16), st.integers(1, 64)),
    st.tuples(st.just("replace"), st.integers(0, 2**16), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("repeat"), st.integers(0, 2**16), st.integers(1, 32), st.integers(2, 4000)),
    st.tuples(st.just("splice"), st.integers(0, 2**16), st.integers(0, 2**16), st.integers(1, 256)),
)


def mutate(seed: bytes, edits: list[tuple]) -> bytes:
    """Apply drawn edits to a seed; positions wrap around its current length."""
    data = bytearray(seed)
    for edit in edits:
        kind, pos = edit[0], edit[1] % (len(data) + 1)
        if kind in ("insert", "token"):
            data[pos:pos] = edit[2]
        elif kind == "delete":
            del data[pos : pos + edit[2]]
        elif kind == "replace":
            data[pos : pos + len(edit[2])] = edit[2]
        elif kind == "repeat":  # a slice of the input, many times over
            chunk = bytes(data[pos : pos + edit[2]]) or b"x"
            data[pos:pos] = chunk * min(edit[3], MAX_INPUT // len(chunk))
        else:  # splice: copy a slice of the input to another place
            src = edit[2] % (len(data) + 1)
            data[pos:pos] = data[src : src + edit[3]]
        if len(data) > MAX_INPUT:
            del data[MAX_INPUT:]
    return bytes(data)


def inputs(
    seeds: list[bytes], tokens: tuple[bytes, ...] = (), raw: st.SearchStrategy[bytes] | None = None
) -> st.SearchStrategy[bytes]:
    """Mutated seeds (most of the time) or fresh bytes from `raw` (default: any bytes)."""
    fresh = raw if raw is not None else st.binary(max_size=512)
    if not seeds:
        return fresh
    edit = _EDIT
    if tokens:
        edit = st.one_of(_EDIT, st.tuples(st.just("token"), st.integers(0, 2**16), st.sampled_from(tokens)))
    mutated = st.builds(mutate, st.sampled_from(seeds), st.lists(edit, max_size=6))
    return st.one_of(mutated, mutated, mutated, fresh)


class Finding(AssertionError):
    """A derived input failed; its bytes are in the message."""


def havoc(data: bytes, rng: random.Random, tokens: tuple[bytes, ...]) -> bytes:
    """libFuzzer-style byte mutations, a few stacked: cheap variety around a drawn input."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        pos = rng.randint(0, len(out))
        kind = rng.randrange(6)
        if kind == 0 and out:
            out[min(pos, len(out) - 1)] ^= 1 << rng.randrange(8)
        elif kind == 1:
            out[pos:pos] = bytes([rng.choice(_INTERESTING)])
        elif kind == 2:
            del out[pos : pos + rng.randint(1, 16)]
        elif kind == 3 and tokens:
            out[pos:pos] = rng.choice(tokens)
        elif kind == 4 and out:
            src = rng.randrange(len(out))
            out[pos:pos] = out[src : src + rng.randint(1, 64)]
        else:
            out[pos : pos + 1] = bytes([rng.randrange(256)])
    return bytes(out[:MAX_INPUT])


_INTERESTING = b"\x00\r\n \t\"\\()[]{}<>:;,.=+-*%$&@/\x7f\x80\xc3\xff09AZaz"


def run_hypothesis(
    target: Target,
    seconds: float,
    *,
    strategy: st.SearchStrategy[bytes] | None = None,
    batch: int = 200,
    derived: int = 16,
) -> int:
    """Check every seed, then run batches of generated inputs until `seconds` have passed.

    Each generated input is followed by `derived` havoc mutants of it (seeded by the
    input, so a failure reproduces). Returns the number of inputs run. A failure is
    shrunk by hypothesis and raised with the smallest input it found (printed as
    `Falsifying example`; a failing mutant's bytes are in the `Finding` message).
    """
    seeds = target.seeds()
    for seed in seeds:
        target.run(seed)
    strategy = strategy if strategy is not None else inputs(seeds, target.tokens)
    count = len(seeds)
    end = time.monotonic() + seconds

    @settings(
        max_examples=batch,
        deadline=None,  # Target.run bounds CPU time instead: wall time flakes on a shared machine
        database=None,  # nothing written into the checkout; a failure prints its input
        derandomize=False,
        phases=(Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    @given(strategy)
    def one(data: bytes) -> None:
        nonlocal count
        if time.monotonic() > end:  # the rest of this batch: nothing, so a run ends on time
            return
        count += 1 + derived
        target.run(data)
        rng = random.Random(data)
        for _ in range(derived):
            mutant = havoc(data, rng, target.tokens)
            try:
                target.run(mutant)
            except Exception as e:
                raise Finding(f"{type(e).__name__}: {e}\non input {mutant!r}") from e

    while time.monotonic() < end:
        one()
    return count


# -- atheris ----------------------------------------------------------------------------------
def _instrument(atheris: object, prefixes: tuple[str, ...]) -> None:
    """Coverage for the code under test only (instrumenting everything loaded takes minutes)."""
    import gc
    import types

    funcs = [
        f
        for f in gc.get_objects()
        if isinstance(f, types.FunctionType) and (f.__module__ or "").startswith(prefixes)
    ]
    for func in funcs:
        atheris.instrument_func(func)  # type: ignore[attr-defined]


def _dict_entry(token: bytes) -> str:
    """One line of a libFuzzer dictionary: the token, every byte escaped."""
    return '"' + "".join(f"\\x{b:02x}" for b in token) + '"\n'


def run_atheris(target: Target, seconds: int, workdir: Path, extra: list[str]) -> None:
    """libFuzzer over `check`: new inputs go to `workdir/corpus`, crashes to `workdir/crash-*`.

    The seed corpus is read, never written. Does not return (libFuzzer exits).
    """
    import sys

    import atheris  # optional: `pip install atheris` (prebuilt wheels for Linux x86-64)

    _instrument(atheris, target.instrument)
    (workdir / "corpus").mkdir(parents=True, exist_ok=True)
    if target.tokens:
        words = "".join(_dict_entry(token) for token in target.tokens)
        (workdir / "tokens.dict").write_text(words)
        extra = [f"-dict={workdir / 'tokens.dict'}", *extra]
    argv = [
        sys.argv[0],
        f"-max_total_time={seconds}",
        f"-max_len={MAX_INPUT}",
        "-timeout=5",  # wall seconds: a hang; Target.run reports inputs slower than 1 s of CPU
        f"-artifact_prefix={workdir}/",
        *extra,
        str(workdir / "corpus"),
        *(str(d) for d in (target.corpus_dir, *target.seed_dirs) if d.is_dir()),
    ]
    atheris.Setup(argv, target.run)
    atheris.Fuzz()
