"""A person answers the queries in a pygame window or on a web page (see ``docs/oracles-human.md``).

Three ways to label:

- :class:`HumanOracle`: synchronous by default, training waits while the window shows a batch of
  queries; with ``asynchronous=True`` the window runs in its own process and training goes on with
  the labels it has (as in the paper).
- :func:`run_labeling_session`: a separate process (``prefwrap label RUN_DIR``, or the asynchronous
  oracle's) shows the pending queries of a run's preference store as they appear and writes each
  answer to it.
- ``HumanOracle(interface="web")``: the web labeling page (:mod:`prefwrap.web`) is served from the
  run's store while training runs; any number of annotators label in their browsers.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Literal

from prefwrap.clips.frames import clip_frames
from prefwrap.oracles.base import BaseOracle, OracleContext
from prefwrap.oracles.labeling_window import LabelingWindow, import_pygame
from prefwrap.records import Answer, Query

if TYPE_CHECKING:
    from prefwrap.store import PreferenceStore

__all__ = ["HumanOracle", "run_labeling_session"]

logger = logging.getLogger(__name__)

DEFAULT_FPS = 20.0
"""Playback speed when neither ``fps`` nor the env's ``render_fps`` is known."""

_IN_MEMORY = ":memory:"


class HumanOracle(BaseOracle):
    """Asks a person, in a pygame window or on a web page, which clip is better or how they rank.

    Each query's clips (:func:`~prefwrap.clips.frames.clip_frames`: ``Segment.frames``, else uint8
    image observations) loop side by side until answered. A pair: left arrow = LEFT is better,
    right arrow = RIGHT, up or space = EQUAL. A query of ``K > 2`` clips (``query_size=K``) shows
    them in a grid, numbered from 1, and is ranked best first: the best clip's number, then the next
    best's, ...; ``=`` ties the next clip with the one ranked last, space ranks all the rest equal,
    ``u`` undoes a step; the ranking is answered once it is complete (the answer is a
    :class:`~prefwrap.records.Ranking`). Any query: down = SKIP (can't tell), ``r`` = replay, Esc or
    closing the window = pause. A pause makes :meth:`label` return at once, with ``None`` for the
    queries not answered yet (asked again later); the next call opens the window again.

    The learner connects the oracle to its run (:meth:`connect`): every answer is then stored through
    the context's ``record_answer`` right after its key press, before the next clip is shown, so no
    label is lost if training crashes in the middle of a batch.

    Args:
        fps: Playback speed; ``None`` uses the env's ``render_fps`` (from :meth:`connect`), else 20.
        scale: Integer magnification of the frames; ``None`` makes each clip at least ~400 px wide.
        labeler: Name stored with the labels.
        window_size: ``(width, height)`` of the window in px; the clips are scaled to fit. ``None``
            sizes the window to the clips.
        asynchronous: Label in a separate process (:func:`run_labeling_session` on the run's store
            file, from :meth:`connect`): :meth:`label` returns at once with ``None`` for every query
            and the learner picks the answers up from the store. If the person closes that window
            it is not reopened; ``prefwrap label RUN_DIR`` continues.
        interface: ``"window"`` (pygame) or ``"web"``: :meth:`connect` starts the labeling page
            (:func:`prefwrap.web.server.serve`) in a process of its own and prints its link; the page
            writes each answer to the run's store as ``human:<name>`` (a SQLite file, or a
            ``postgresql://`` URL whose database then also keeps the page's annotation journal), and
            :meth:`label` returns at once with ``None`` for every query, as in the asynchronous mode:
            the learner picks the answers up from the store as they land. ``asynchronous`` is implied.
        host: Web interface only: the interface to bind. The default, ``127.0.0.1``, is reachable
            from this machine only (use an SSH tunnel from a laptop); any other host gets a token,
            printed once in the link.
        port: Web interface only: the TCP port.
        token: Web interface only: the secret in the link; ``None`` makes one for a non-loopback host.
        overlap: Web interface only: the fraction of queries shown to a second annotator, to measure
            agreement (``prefwrap annotators RUN_DIR``); training uses the first answer.

    Attributes:
        window: The :class:`~prefwrap.oracles.labeling_window.LabelingWindow`, created on first use.
        context: The run's :class:`~prefwrap.oracles.base.OracleContext` given to :meth:`connect`, or
            ``None`` before (then answers are only returned, and the asynchronous mode cannot start).

    Raises:
        ValueError: ``fps`` is not positive or ``None``, ``scale`` is not a positive integer or ``None``,
            ``interface`` is not ``"window"`` or ``"web"``, or ``overlap`` is not in ``[0, 1]``.
        ImportError: pygame is not installed (the message names ``prefwrap[human]``), or for the web
            interface fastapi or uvicorn (the message names ``prefwrap[web]``).

    Example:
        >>> oracle = HumanOracle(labeler="human:alice")  # doctest: +SKIP
        >>> callback = PreferenceCallback(venv, oracle, total_labels=700,
        ...                               store="run/preferences.sqlite")  # doctest: +SKIP
        >>> model.learn(1_000_000, callback=callback)  # doctest: +SKIP
    """

    needs_frames = True
    """The learner queries only segments whose frames are kept (see ``record_frames``)."""

    def __init__(
        self,
        *,
        fps: float | None = None,
        scale: int | None = None,
        labeler: str = "human",
        window_size: tuple[int, int] | None = None,
        asynchronous: bool = False,
        interface: Literal["window", "web"] = "window",
        host: str = "127.0.0.1",
        port: int = 8765,
        token: str | None = None,
        overlap: float = 0.0,
    ) -> None:
        if fps is not None and not fps > 0:
            raise ValueError(f"fps must be positive or None, got {fps}")
        if scale is not None and (not isinstance(scale, int) or scale < 1):
            raise ValueError(f"scale must be a positive integer or None, got {scale!r}")
        if interface not in ("window", "web"):
            raise ValueError(f"interface must be 'window' or 'web', got {interface!r}")
        if not 0.0 <= overlap <= 1.0:
            raise ValueError(f"overlap must be in [0, 1], got {overlap}")
        # fail now, not after hours of training, if the interface's packages are missing
        if interface == "web":
            _require_web_packages()
        else:
            import_pygame()
        self.interface = interface
        self.web_options = {"host": host, "port": port, "token": token, "overlap": overlap}
        self.fps = fps
        self.scale = scale
        self.labeler = labeler
        self.window_size = window_size
        self.asynchronous = asynchronous or interface == "web"
        self.window: LabelingWindow | None = None
        self.context: OracleContext | None = None
        self._progress = ""
        self._session: multiprocessing.process.BaseProcess | None = None

    def connect(self, context: OracleContext) -> None:
        """Take the run's env fps, store and ``record_answer`` (called once by the learner).

        Raises:
            ValueError: The oracle is asynchronous and the run's store is in memory, where a
                labelling process cannot read it.
            OSError: The web page did not start, with its reason in one line (port in use, a
                database the page's process cannot reach).
        """
        if self.asynchronous and _is_in_memory(context.store_path):
            raise ValueError(
                "HumanOracle(asynchronous=True) labels through the run's store file, but the store is "
                "in memory: give the callback one, e.g. "
                "PreferenceCallback(venv, oracle, store='run/preferences.sqlite')"
            )
        self.context = context
        if self.interface == "web" and self._session is None:
            # start now, not at the first query: the page tells annotators when queries will come
            from prefwrap.web.server import start_server_process

            self._session = start_server_process(context.store_path, **self.web_options)

    def show_progress(self, text: str) -> None:
        """Show ``text`` (e.g. ``"312 / 1000 labels, 4 queries waiting"``) under the batch progress."""
        self._progress = text

    def label(self, queries: Sequence[Query]) -> list[Answer | None]:
        """Show each query until answered; return one answer per query, ``None`` after a pause.

        An answer is a :class:`~prefwrap.records.Preference` for a pair, a
        :class:`~prefwrap.records.Ranking` (or ``SKIP``) for a larger query.

        Raises:
            ValueError: A segment cannot be shown (see :func:`~prefwrap.clips.frames.clip_frames`;
                checked for the whole batch before the window opens), or the oracle is asynchronous
                and was never connected to a run's store.
        """
        answers: list[Answer | None] = [None] * len(queries)
        if not queries:
            return answers
        if self.interface == "web":
            if self._session is None:
                raise ValueError(
                    'HumanOracle(interface="web") serves the run\'s store: pass it to a PreferenceCallback '
                    "or PreferenceLearner with a store, e.g. store='run/preferences.sqlite'"
                )
            return answers  # the page writes answers to the store; the learner reads them from there
        if self.asynchronous:
            self._start_session()
            return answers
        queries = [self._with_frames(query) for query in queries]
        for query in queries:  # fail before the window opens, not halfway through the batch
            for segment in query.segments:
                clip_frames(segment, query_id=query.query_id)
        window = self._window()
        for i, query in enumerate(queries):
            progress = f"{i} / {len(queries)} labeled in this batch"
            if self._progress:
                progress += f"   |   {self._progress}"
            answer = window.ask(query, progress=progress)
            if answer is None:  # paused: the window is closed; the rest is asked again later
                return answers
            answers[i] = answer
            if self.context is not None:
                self.context.record_answer(query, answer)
        window.show_message("Thanks! More clips soon (the agent is training)...")
        return answers

    def _with_frames(self, query: Query) -> Query:
        """``query`` with its rendered frames: one asked again while pending comes without them (the
        learner keeps pending queries small), so they are read back from the run's store."""
        load = None if self.context is None else self.context.load_query
        if load is None or all(segment.frames is not None for segment in query.segments):
            return query
        stored = load(query.query_id)
        return stored if any(segment.frames is not None for segment in stored.segments) else query

    def close(self) -> None:
        """Close the window, if open, and end the asynchronous labelling process or the web page."""
        if self.window is not None:
            self.window.close()
        if self._session is not None and self._session.is_alive():
            self._session.terminate()
            self._session.join(timeout=5)

    def _fps(self) -> float:
        env_fps = self.context.env_fps if self.context is not None else None
        return float(self.fps or env_fps or DEFAULT_FPS)

    def _start_session(self) -> None:
        """Start the labelling process once; a window the person closed stays closed."""
        if self._session is not None:
            if not self._session.is_alive():
                logger.info("labelling window closed: run `prefwrap label RUN_DIR` to continue labelling")
            return
        if self.context is None:
            raise ValueError(
                "HumanOracle(asynchronous=True) labels through the run's store file: pass it to a "
                "PreferenceCallback or PreferenceLearner with a store, e.g. "
                "PreferenceCallback(venv, oracle, store='run/preferences.sqlite')"
            )
        spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked SDL or torch state
        self._session = spawn.Process(
            target=run_labeling_session,
            args=(os.fspath(self.context.store_path),),
            kwargs={"fps": self._fps(), "labeler": self.labeler, "scale": self.scale},
            daemon=True,
        )
        self._session.start()

    def _window(self) -> LabelingWindow:
        if self.window is None:
            self.window = LabelingWindow(fps=self._fps(), scale=self.scale, window_size=self.window_size)
        self.window.fps = self._fps()
        return self.window


def _require_web_packages() -> None:
    """Import FastAPI and uvicorn, or fail with the extra that installs them.

    Raises:
        ImportError: fastapi or uvicorn is not installed (the message names ``prefwrap[web]``).
    """
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as err:
        raise ImportError(
            'The web labeling page needs fastapi and uvicorn: pip install "prefwrap[web]"'
        ) from err


def _is_in_memory(store_path: str | os.PathLike[str] | None) -> bool:
    """Whether a store path names an in-memory store, which another process cannot open."""
    return store_path is None or os.fspath(store_path) == _IN_MEMORY


def run_labeling_session(
    store_path: str | os.PathLike[str],
    *,
    fps: float | None = None,
    labeler: str = "human",
    poll_interval: float = 1.0,
    stop_when_empty: bool = False,
    scale: int | None = None,
    window: LabelingWindow | None = None,
) -> int:
    """Label a run's pending queries as they appear, writing each answer to its store at once.

    Meant for a second terminal (``prefwrap label RUN_DIR``) or a background process while the
    trainer keeps going. Queries are shown oldest first; when none is pending the window says so
    and polls the store every ``poll_interval`` seconds. Esc or closing the window ends the
    session; every answer given is already committed.

    Args:
        store_path: The run's preference store (SQLite file).
        fps: Playback speed; ``None`` reads the store's ``render_fps`` meta entry, else 20.
        labeler: Name stored with each label.
        poll_interval: Seconds between looks for new queries when none is pending.
        stop_when_empty: Return when no query is pending instead of waiting for more.
        scale: Integer magnification of the frames (``None``: at least ~400 px per clip).
        window: A preconfigured window (tests, scripted sessions); it is closed at the end.

    Returns:
        The number of labels written.

    Raises:
        ValueError: ``poll_interval`` is not positive, or a pending segment cannot be shown (see
            :func:`~prefwrap.clips.frames.clip_frames`).
        StoreError: ``store_path`` is not a prefwrap store that can be opened.
        ImportError: pygame is not installed.
    """
    from prefwrap.store import AlreadyLabeledError, PreferenceStore

    if not poll_interval > 0:
        raise ValueError(f"poll_interval must be positive, got {poll_interval}")
    store = PreferenceStore(store_path)
    n_written = 0
    prefetch = ThreadPoolExecutor(1, thread_name_prefix="prefwrap-prefetch")
    upcoming: Future[Query] | None = None
    try:
        if window is None:
            window = LabelingWindow(fps=fps or _meta_fps(store) or DEFAULT_FPS, scale=scale)
        while True:
            pending = store.pending_query_ids()
            if not pending:
                if stop_when_empty:
                    break
                message = f"No queries waiting ({n_written} labeled in this session)..."
                if not window.wait(message, poll_interval):
                    break
                continue
            for i, query_id in enumerate(pending):
                query = upcoming.result() if upcoming is not None else store.query(query_id)
                # the next query's clips load while the person watches this one (~0.14 s for two
                # 45-frame 500 x 500 clips): the next clip plays the moment this answer is given
                upcoming = (
                    prefetch.submit(_load_query, store_path, pending[i + 1]) if i + 1 < len(pending) else None
                )
                progress = f"{n_written} labeled in this session   |   {len(pending) - i} waiting"
                answer = window.ask(query, progress=progress)
                if answer is None:
                    return n_written
                try:
                    store.add_label(query_id, answer, labeler)
                except AlreadyLabeledError as error:  # another labeler answered it meanwhile; theirs stands
                    logger.warning("answer to query %d not stored: %s", query_id, error)
                    continue
                n_written += 1
    finally:
        prefetch.submit(_close_prefetch_store)
        prefetch.shutdown(wait=True, cancel_futures=False)
        if window is not None:
            window.close()
        store.close()
    return n_written


_prefetch_local = threading.local()


def _load_query(store_path: str | os.PathLike[str], query_id: int) -> Query:
    """Load a query with its frames on the prefetch thread, through that thread's own connection
    (a store object belongs to the thread that opened it)."""
    from prefwrap.store import PreferenceStore

    if getattr(_prefetch_local, "store", None) is None:
        _prefetch_local.store = PreferenceStore(store_path)
    return _prefetch_local.store.query(query_id)


def _close_prefetch_store() -> None:
    store = getattr(_prefetch_local, "store", None)
    if store is not None:
        store.close()
        _prefetch_local.store = None


def _meta_fps(store: PreferenceStore) -> float | None:
    """The ``render_fps`` a trainer recorded in the store's meta table, if any."""
    value = store.get_meta("render_fps")
    try:
        return float(value) if value else None
    except ValueError:
        return None
