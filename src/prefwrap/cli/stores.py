"""Where a run's labels live, and the commands that work on stores: ``annotators`` and ``store copy``.

A run's store is ``DIR/preferences.sqlite`` unless the run was trained with ``--store URL`` (e.g. a
``postgresql://`` database shared by a trainer, a label server and annotators on other machines);
``label``, ``export`` and ``annotators`` take ``--store URL`` too, and otherwise use the run's.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prefwrap.cli.config import UsageError
from prefwrap.cli.run_dir import RunDir, read_json


def run_store(run_dir: str, url: str | None = None) -> tuple[RunDir, str]:
    """The run directory and the location of its store (``url``, the run's ``--store``, or its file).

    Raises:
        UsageError: No ``url``, no ``--store`` in the run's config and no store file in ``run_dir``.
    """
    run = RunDir(Path(run_dir))
    location = url or (read_json(run.config) or {}).get("store")
    if location:
        return run, str(location)
    if not run.store.is_file():
        raise UsageError(
            f"{run.path} has no preference store ({run.store.name}): give a run directory of prefwrap "
            "train, or its store with --store URL"
        )
    return run, str(run.store)


def cmd_annotators(args: argparse.Namespace) -> int:
    """``prefwrap annotators DIR``: per annotator, labels, median seconds per label and agreement.

    Raises:
        UsageError: No store for DIR.
    """
    from prefwrap.store import PreferenceStore
    from prefwrap.web.agreement import report

    _, location = run_store(args.run_dir, args.store)
    with PreferenceStore(location) as store:
        print(report(store))
    return 0


def cmd_store_copy(args: argparse.Namespace) -> int:
    """``prefwrap store copy SRC DST``: copy a run's store, then its annotation journal (the web
    page's answers, times and second opinions), to another backend, checking nothing was lost.

    Raises:
        StoreError: The copy failed its check, the destination holds data, or a store cannot be opened.
    """
    from prefwrap.store.copy import copy_store
    from prefwrap.web.journal import copy_journal

    print(copy_store(args.src, args.dst))
    n_answers = copy_journal(args.src, args.dst)
    if n_answers:
        print(f"copied the annotation journal: {n_answers} answers; checked (every entry read back)")
    return 0


def cmd_label_web(args: argparse.Namespace) -> int:
    """``prefwrap label DIR --web``: serve the labeling page for the run until Ctrl-C.

    The page serves the run's store wherever it is: ``DIR/preferences.sqlite``, or the
    ``postgresql://`` URL of ``--store`` or of the run's config (annotation journal included).

    Raises:
        UsageError: No store for DIR, a missing ``web`` or ``postgres`` extra, or a port in use.
        StoreError: The store's database cannot be reached (``main`` prints it in one line).
    """
    from prefwrap.web.server import serve

    _, location = run_store(args.run_dir, args.store)
    if not 0.0 <= args.overlap <= 1.0:
        raise UsageError(f"--overlap must be in [0, 1], got {args.overlap}")
    try:
        serve(location, args.host, args.port, None, args.overlap)
    except (FileNotFoundError, ImportError, OSError) as error:
        raise UsageError(str(error)) from None
    return 0
