"""``python -m prefwrap.web RUN_DIR [--host H] [--port P] [--overlap F] [--token T]``: serve the page.

The same as ``prefwrap label RUN_DIR --web``; kept so that the page runs (and tests can start and
kill it) without the CLI. ``RUN_DIR`` may also be a store file or a ``postgresql://`` store URL.
"""

from __future__ import annotations

import argparse

from prefwrap.store.errors import StoreError
from prefwrap.web.server import serve


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments and serve until Ctrl-C.

    Raises:
        SystemExit: Status 1 with one line (no traceback) when the page cannot start: no store, a
            database it cannot reach, a missing extra, a port in use.
    """
    parser = argparse.ArgumentParser(prog="python -m prefwrap.web", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="run directory, preference store file or postgresql:// URL")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--overlap", type=float, default=0.0)
    parser.add_argument("--token", default=None)
    parser.add_argument("--undo-seconds", type=float, default=4.0)
    parser.add_argument("--lease-seconds", type=float, default=60.0)
    args = parser.parse_args(argv)
    try:
        serve(
            args.run_dir,
            args.host,
            args.port,
            args.token,
            args.overlap,
            lease_seconds=args.lease_seconds,
            undo_seconds=args.undo_seconds,
        )
    except (FileNotFoundError, ImportError, OSError, StoreError, ValueError) as error:
        raise SystemExit(f"{parser.prog}: {' '.join(str(error).split())}") from None


if __name__ == "__main__":
    main()
