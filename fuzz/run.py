"""Run one fuzz target, or all of them: `python -m fuzz.run TARGET|all --seconds N`.

    python -m fuzz.run smtp_codec --seconds 30              # hypothesis, or atheris if installed
    python -m fuzz.run all --seconds 600 --engine hypothesis # the pre-release run
    python -m fuzz.run mime --replay crash-1234              # one input, e.g. an atheris artifact

Every target module is also runnable alone: `python -m fuzz.smtp_codec --seconds 30`.
Exit status 0 when nothing was found; a finding prints its input and exits non-zero.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
from pathlib import Path

from fuzz.engine import Target, run_atheris, run_hypothesis

TARGETS = ("smtp_codec", "imap_parser", "pop3_codec", "milter_codec", "mime", "config_loader")


def target(name: str) -> Target:
    module = importlib.import_module(f"fuzz.{name}")
    found: Target = module.TARGET
    return found


def _engine(requested: str) -> str:
    if requested != "auto":
        return requested
    try:
        import atheris  # noqa: F401
    except ImportError:
        return "hypothesis"
    return "atheris"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=[*TARGETS, "all"])
    parser.add_argument("--seconds", type=int, default=30, help="time per target (default 30)")
    parser.add_argument("--engine", choices=["auto", "hypothesis", "atheris"], default="auto")
    parser.add_argument("--replay", type=Path, help="run one input file and stop")
    parser.add_argument("--workdir", type=Path, help="atheris: where new inputs and crashes go (default: a temp dir)")
    args, extra = parser.parse_known_args(argv)
    names = TARGETS if args.target == "all" else (args.target,)
    if args.replay is not None:
        for name in names:
            target(name).run(args.replay.read_bytes())
        print(f"{args.replay}: no finding")
        return 0
    engine = _engine(args.engine)
    if engine == "atheris":
        if len(names) > 1:  # libFuzzer exits when done: one process per target
            return _each_in_subprocess(names, args.seconds, extra)
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"fuzz-{names[0]}-"))
        print(f"{names[0]}: atheris for {args.seconds} s, new inputs and crashes in {workdir}", flush=True)
        run_atheris(target(names[0]), args.seconds, workdir, extra)
        return 0
    for name in names:
        started = time.monotonic()
        count = run_hypothesis(target(name), args.seconds)
        print(f"{name}: {count} inputs in {time.monotonic() - started:.0f} s, no finding", flush=True)
    return 0


def _each_in_subprocess(names: tuple[str, ...], seconds: int, extra: list[str]) -> int:
    import subprocess

    failed = []
    for name in names:
        cmd = [sys.executable, "-m", "fuzz.run", name, "--seconds", str(seconds), "--engine", "atheris", *extra]
        if subprocess.run(cmd, check=False).returncode != 0:
            failed.append(name)
    print("findings in: " + ", ".join(failed) if failed else "no finding", flush=True)
    return 1 if failed else 0


def module_main(name: str) -> None:
    """`python -m fuzz.<target> [options]`."""
    sys.exit(main([name, *sys.argv[1:]]))


if __name__ == "__main__":
    sys.exit(main())
