"""The `mxinfra` console script. Before the CLI (typer, rich) is imported, `mxinfra inspect FILE` starts
hashing FILE in a child process: the import and the argument parsing then cost no wall time next to the
hash, which is what inspect waits for (issue 18: within 1.1x of `openssl dgst -sha256`). Standard
library only, on purpose."""

from __future__ import annotations

import sys


def _inspected(argv: list[str]) -> str | None:
    """The archive of `inspect ARCHIVE [options]` (not `--verify`, which hashes in its own pass), or None."""
    if len(argv) < 2 or argv[0] != "inspect" or "--verify" in argv:
        return None
    paths = [a for a in argv[1:] if not a.startswith("-")]
    return paths[0] if len(paths) == 1 else None


def main() -> int:
    """Entry point: an early hash for inspect, then the CLI."""
    path = _inspected(sys.argv[1:])
    if path is not None:
        from .digest import start_early

        # A child process hashes: the CLI's import and the member checks (Python, holding the GIL) then
        # cost no wall time next to the hash. Safe here: nothing but this thread runs yet.
        start_early(path, fork=True)
    from .cli import main as cli_main

    return cli_main()
