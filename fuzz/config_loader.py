"""Fuzz target: the configuration loader (`mailstandby.config.load`).

The input is the configuration file's bytes. Properties:
- `load` returns a `Config` or raises `ConfigError`, nothing else: an operator
  running `check-config` gets a list of problems, never a traceback;
- every problem line starts with the file's path, and is either a file-level
  problem (unreadable, not UTF-8, TOML syntax) or `key: problem` where the key
  is one the file actually has (`section.key`, `section.list[2].key`, or a
  section for a cross-field rule), so the operator knows which line to change;
- a loaded configuration has its relative paths resolved (`resolve_paths`).
"""

from __future__ import annotations

import atexit
import re
import shutil
import tempfile
import tomllib
from pathlib import Path

from fuzz.engine import Target
from fuzz.run import module_main
from mailstandby import config
from mailstandby.config import Config, ConfigError, load, loader

_FILE_LEVEL = ("cannot read: ", "not UTF-8 text", "TOML syntax: ")
_PART = r'(?:[A-Za-z0-9_-]+|"(?:[^"\\\x00-\x1f]|\\.)*")'
_PROBLEM = re.compile(rf"(?P<key>\(top\)|{_PART}(?:\.{_PART}|\[\d+\])*): (?P<what>.+)")
_DIR = Path(tempfile.mkdtemp(prefix="fuzz-config-"))
atexit.register(shutil.rmtree, _DIR, ignore_errors=True)
_FILE = _DIR / "mailstandby.toml"


def _keys(value: object, loc: tuple[int | str, ...] = ()) -> set[str]:
    """Every key path the file has, spelt as load() spells keys in problems."""
    out = {loader._key(loc)} if loc else set()
    if isinstance(value, dict):
        for k, v in value.items():
            out |= _keys(v, (*loc, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out |= _keys(v, (*loc, i))
    return out


def check(data: bytes) -> None:
    _FILE.write_bytes(data)
    try:
        cfg = load(_FILE)
    except ConfigError as e:
        _problems(e, data)
    else:
        assert isinstance(cfg, Config)
        for path in (cfg.node.data_dir, cfg.tls.cert, cfg.tls.key):
            assert path is None or path.is_absolute(), f"{path} was not resolved"


def _problems(e: ConfigError, data: bytes) -> None:
    assert e.path == _FILE and e.problems, "a ConfigError without a problem"
    for line in str(e).split("\n"):
        assert line.startswith(f"{_FILE}: "), f"a line of the report does not name the file: {line!r}"
    if any(p.startswith(_FILE_LEVEL) for p in e.problems):
        assert len(e.problems) == 1, "a file-level problem among key problems"
        return
    keys = _keys(tomllib.loads(data.decode("utf-8")))
    for problem in e.problems:
        m = _PROBLEM.fullmatch(problem)
        assert m is not None, f"a problem without a key: {problem!r}"
        key = m.group("key")
        if m.group("what") == "Field required":  # a key the file lacks: its table must be there
            key = re.sub(rf"(\.{_PART}|\[\d+\])$", "", key)
        assert key in keys, f"{problem!r} names a key the file does not have ({sorted(keys)[:20]})"


def _tokens() -> tuple[bytes, ...]:
    words: list[bytes] = []
    for name, info in Config.model_fields.items():
        words.append(f"\n[{name}]\n".encode())
        section = info.annotation
        for key in getattr(section, "model_fields", {}):
            words.append(f"\n{key} = ".encode())
    values = (b"true", b"0", b"-1", b"65536", b"1e400", b"inf", b"nan", b'""', b'"x"', b"[]", b"{}", b"[1, 2]")
    return (*words, *values, b'"127.0.0.1:0"', b'"[::1]:25"', b'"10.0.0.0/8"', b"[[directory.users]]\n")


_SAMPLE = Path(config.__file__).parents[1] / "sample.toml"

TARGET = Target(
    "config_loader",
    check,
    __doc__ or "",
    tokens=_tokens(),
    extra_seeds=(_SAMPLE.read_bytes(),),
    instrument=("mailstandby", "tomllib"),
    # The file is the administrator's, read once at start and by check-config, never on the event
    # loop: seconds are no stall for anyone (a 13 KiB input of thousands of keys took 1.8 s, most of
    # it in pydantic's error reporting). A bound still catches a runaway.
    slow_seconds=10.0,
)

if __name__ == "__main__":
    module_main(TARGET.name)
