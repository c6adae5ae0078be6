"""The ``prefwrap`` command: train, label, export, plot and evaluate from the command line.

``prefwrap train`` with no argument runs a short synthetic-oracle demo (PPO on Pendulum-v1, 200
labels, 50k steps: a few minutes on a laptop CPU) and prints, plots and films what the agent learned.
Every run lives in a run directory (layout in :mod:`prefwrap.cli.run_dir`) that ``--resume``,
``prefwrap label``, ``export``, ``plot`` and ``eval`` take as argument. See ``docs/cli.md``.

Every bad argument ends the command with one line saying what to do (exit status 2), never a
traceback; so does every error an oracle, the store or the env raises while a command runs (exit
status 1), followed by a line saying how to continue (for ``train``: the resume command). ``--debug``
or ``PREFWRAP_DEBUG=1`` prints the traceback too. The parser needs neither torch nor
Stable-Baselines3: they are imported with the command.

Modules: :mod:`~prefwrap.cli.config` (every ``train`` option, once), :mod:`~prefwrap.cli.build`
(env, model, oracle), :mod:`~prefwrap.cli.train`, :mod:`~prefwrap.cli.evaluate`,
:mod:`~prefwrap.cli.report`, :mod:`~prefwrap.cli.commands` (label, export, plot, eval),
:mod:`~prefwrap.cli.run_dir`, :mod:`~prefwrap.cli.plots`, :mod:`~prefwrap.cli.hyperparams` (the zoo's
tuned values) and :mod:`~prefwrap.cli.display`.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import NoReturn

from prefwrap.cli.config import DEVICES, UsageError, add_train_arguments, one_line

PROG = "prefwrap"


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``prefwrap`` argument parser with its subcommands (``train``'s from :class:`TrainConfig`)."""
    from prefwrap import __version__

    parser = _Parser(
        prog=PROG,
        description="Reinforcement learning from human preferences for any Stable-Baselines3 algorithm.",
        epilog="Start with: prefwrap train   (a few minutes on a laptop CPU)",
    )
    parser.add_argument("--version", action="version", version=f"prefwrap {__version__}")
    # --debug on every command, where users type it (after the command name) or before it
    debug = _Parser(add_help=False)
    debug.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="on an error, print the traceback too (or set PREFWRAP_DEBUG=1)",
    )
    parser.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    train = commands.add_parser(
        "train",
        parents=[debug],
        help="train an agent from preferences (no argument: a short Pendulum demo)",
        description="Train an agent on a reward learned from preferences. With no argument: PPO on "
        "Pendulum-v1, 200 synthetic labels, 50k steps (a few minutes on a CPU).",
    )
    add_train_arguments(train)

    label = commands.add_parser(
        "label",
        parents=[debug],
        help="label a run's pending queries in a window (needs pygame)",
        description="Answer the pending queries of a run in a labeling window, oldest first; each answer "
        "is written to the run's store the moment its key is pressed. A running trainer picks the answers "
        "up at its next rollout, a stopped one on prefwrap train --resume DIR.",
    )
    label.add_argument("run_dir", metavar="DIR", help="run directory written by prefwrap train")
    label.add_argument("--labeler", default="human", help="name stored with each label [human]")
    label.add_argument("--fps", type=float, default=None, help="playback speed [the env's render_fps]")
    label.add_argument("--scale", type=int, default=None, help="integer magnification of the clips")
    label.add_argument(
        "--exit-when-done", action="store_true", help="return when nothing is pending instead of waiting"
    )
    label.add_argument("--store", metavar="URL", help="the run's store, if not DIR's own (postgresql://...)")
    label.add_argument(
        "--web", action="store_true", help="serve a labeling page for browsers (several annotators) instead"
    )
    label.add_argument("--host", default="127.0.0.1", help="--web: interface to bind; others need a token")
    label.add_argument("--port", type=int, default=8765, help="--web: TCP port [8765]")
    label.add_argument(
        "--overlap", type=float, default=0.0, help="--web: share of queries shown to two annotators [0]"
    )

    export = commands.add_parser(
        "export",
        parents=[debug],
        help="write a run's pending queries as clips + manifest",
        description="Write the pending queries of a run as side-by-side clips, a manifest.jsonl and a "
        "template labels.jsonl, for an annotation tool or crowd platform (docs/oracles-file.md).",
    )
    export.add_argument("run_dir", metavar="DIR", help="run directory written by prefwrap train")
    export.add_argument("--out", default=None, help="output directory [DIR/queries]")
    export.add_argument("--format", choices=("mp4", "gif"), default="mp4", help="clip format [mp4]")
    export.add_argument("--fps", type=float, default=None, help="playback speed [the env's render_fps]")
    export.add_argument("--scale", type=int, default=1, help="integer upscaling of small renders [1]")
    export.add_argument("--store", metavar="URL", help="the run's store, if not DIR's own (postgresql://...)")

    annotators = commands.add_parser(
        "annotators",
        parents=[debug],
        help="per annotator: labels, seconds per label, agreement",
        description="Print, per annotator of a run, the labels given, the median seconds per label and the "
        "agreement with others on queries shown to two people (raw and Cohen's kappa; label --web "
        "--overlap F shares queries on purpose).",
    )
    annotators.add_argument("run_dir", metavar="DIR", help="run directory written by prefwrap train")
    annotators.add_argument("--store", metavar="URL", help="the run's store, if not DIR's own")

    store = commands.add_parser(
        "store", parents=[debug], help="work on preference stores", description="Work on preference stores."
    )
    store_commands = store.add_subparsers(dest="store_command", metavar="ACTION", parser_class=_Parser)
    store_commands.required = True
    copy = store_commands.add_parser(
        "copy",
        parents=[debug],
        help="copy a store to another backend",
        description="Copy every segment, clip, query and label of a store to an empty one (SQLite file <-> "
        "postgresql:// URL), then check row counts and content hashes: nothing lost, nothing reordered.",
    )
    copy.add_argument("src", help="store to copy: a preferences.sqlite file or a postgresql:// URL")
    copy.add_argument("dst", help="empty destination: a new file or a postgresql:// URL")

    plot = commands.add_parser(
        "plot",
        parents=[debug],
        help="redraw a run's plots",
        description="Redraw plots/returns.png and plots/reward_vs_true.png from the run's logs, "
        "evaluations.npz and summary.json (e.g. while it trains, or after a resume).",
    )
    plot.add_argument("run_dir", metavar="DIR", help="run directory written by prefwrap train")

    evaluate = commands.add_parser(
        "eval",
        parents=[debug],
        help="evaluate a run's policy on the true reward, with a video",
        description="Evaluate a run's policy (or a kept checkpoint's) on the true reward next to a "
        "random policy, film the episodes nearest the median return, and print the table. Writes "
        "DIR/evals/eval-TIME.json and its files; never summary.json or the training plots.",
    )
    evaluate.add_argument("run_dir", metavar="DIR", help="run directory written by prefwrap train")
    evaluate.add_argument(
        "--checkpoint", type=int, default=None, metavar="STEP",
        help="evaluate the checkpoint kept at STEP (train with --save-freq) [the last policy]",
    )  # fmt: skip
    evaluate.add_argument(
        "--episodes",
        type=int,
        default=None,
        metavar="K",
        help="evaluation episodes [the run's --eval-episodes]",
    )
    evaluate.add_argument("--no-video", action="store_true", help="do not film")
    evaluate.add_argument(
        "--video-episodes", type=int, default=None, metavar="N",
        help="film the N episodes nearest the median return [the run's, 1]",
    )  # fmt: skip
    evaluate.add_argument(
        "--video-seconds", type=float, default=None, metavar="S",
        help="film at most S seconds of each; 0: whole episodes [the run's, 30]",
    )  # fmt: skip
    evaluate.add_argument("--stochastic", action="store_true", help="sample actions instead of the mode")
    evaluate.add_argument("--device", choices=DEVICES, default="auto", help="torch device [auto]")
    evaluate.add_argument("--threads", type=int, default=1, help="torch CPU threads [1]")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``prefwrap`` command; returns the exit status."""
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):
        parser.print_help()  # plain `prefwrap`: show the commands
        return 2
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except UsageError as error:
        _fail(args.command, str(error))
    except KeyboardInterrupt:
        print(f"\n{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # an oracle's, the store's or the env's: one line, not a traceback
        if args.debug or os.environ.get("PREFWRAP_DEBUG", "").strip() not in ("", "0"):
            traceback.print_exc()
        _fail(args.command, one_line(error), status=1, hint=getattr(error, "hint", None))


def _run(args: argparse.Namespace) -> int:
    """Import the command's module (torch, SB3...) and run it."""
    from prefwrap.cli.display import headless_rendering

    if args.command in ("train", "eval"):
        headless_rendering()  # before anything imports MuJoCo or pygame
    if args.command == "train":
        from prefwrap.cli.train import cmd_train

        return cmd_train(args)
    from prefwrap.cli import commands, stores

    command = {
        "annotators": stores.cmd_annotators,
        "store": stores.cmd_store_copy,
        "label": commands.cmd_label,
        "export": commands.cmd_export,
        "plot": commands.cmd_plot,
        "eval": commands.cmd_eval,
    }[args.command]
    return command(args)


def _fail(command: str, message: str, status: int = 2, hint: str | None = None) -> NoReturn:
    line = " ".join(message.split())  # one line, whatever the message held
    print(f"{PROG} {command}: error: {line}", file=sys.stderr)
    if hint:
        print(hint, file=sys.stderr)
    raise SystemExit(status)
