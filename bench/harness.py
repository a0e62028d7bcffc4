"""What every benchmark does around its measurement: a fresh work directory, SIGTERM that unwinds
through the code that stops the servers, errors as exit codes, and the directory removed unless kept."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path


class BenchError(RuntimeError):
    """The measurement itself went wrong (a peer lost mail, a count is off): exit 1."""


def run_in_workdir(
    args: argparse.Namespace,
    prefix: str,
    run: Callable[[argparse.Namespace, Path], int],
    *,
    setup_errors: tuple[type[BaseException], ...] = (),
    root_for: str = "",
) -> int:
    """`run(args, workdir)` with `args.tmpdir` / `args.keep`; setup errors exit 2, interruption 130.
    `root_for`: why the benchmark must run as root (it refuses otherwise)."""
    if root_for and os.geteuid() != 0:
        print(f"bench: must run as root ({root_for})", file=sys.stderr)
        return 2

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # unwinds through the finally blocks that stop the servers

    signal.signal(signal.SIGTERM, terminate)
    root = Path(tempfile.mkdtemp(prefix=prefix, dir=args.tmpdir)).resolve()
    try:
        return run(args, root)
    except BenchError as e:
        print(f"bench: FAILED: {e}", file=sys.stderr)
        return 1
    except setup_errors as e:
        print(f"bench: setup failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        if args.keep:
            print(f"# kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
