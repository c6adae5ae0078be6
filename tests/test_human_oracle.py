"""Tests of the human labeling window and oracle, headless (SDL dummy driver) and under Xvfb."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

pygame = pytest.importorskip("pygame", reason='the labelling window: pip install "prefwrap[human]"')

from prefwrap.oracles.base import BaseOracle, Oracle, OracleContext  # noqa: E402
from prefwrap.oracles.human import HumanOracle, run_labeling_session  # noqa: E402
from prefwrap.oracles.labeling_window import LabelingWindow, import_pygame  # noqa: E402
from prefwrap.records import Preference, Query, Ranking, Segment  # noqa: E402
from prefwrap.store import PreferenceStore  # noqa: E402

LEFT_COLOUR = (200, 40, 40)
RIGHT_COLOUR = (40, 180, 60)
CLIP_COLOURS = (LEFT_COLOUR, RIGHT_COLOUR, (50, 80, 200), (200, 180, 40))
RANK_COLOUR = (240, 200, 60)  # the badge with the rank a clip got so far
H, FRAME_H, FRAME_W = 6, 21, 16


@pytest.fixture(autouse=True)
def headless(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run pygame without a screen; close whatever display a test left open."""
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    yield
    pygame.display.quit()


def make_segment(segment_id: int, colour: tuple[int, int, int], length: int = H) -> Segment:
    """A segment whose frame ``t`` is ``colour`` with a bright row ``t`` (so frames differ)."""
    frames = np.empty((H, FRAME_H, FRAME_W, 3), np.uint8)
    frames[:] = colour
    for t in range(H):
        frames[t, t] = 255
    zeros = np.zeros((H, 2), np.float32)
    return Segment(segment_id, zeros, zeros, np.zeros(H, np.float32), length, frames=frames)


def make_queries(n: int, first_id: int = 0) -> list[Query]:
    return [
        Query(q, make_segment(2 * q, LEFT_COLOUR), make_segment(2 * q + 1, RIGHT_COLOUR))
        for q in range(first_id, first_id + n)
    ]


def make_ranked_queries(n: int, k: int) -> list[Query]:
    """``n`` queries of ``k`` segments, segment ``i`` of colour ``CLIP_COLOURS[i]``."""
    return [Query.of(q, [make_segment(k * q + i, CLIP_COLOURS[i]) for i in range(k)]) for q in range(n)]


def press_sequences(
    *sequences: list[int], seen: list[list[tuple[int | None, bool]]] | None = None
) -> Callable[[LabelingWindow], None]:
    """An ``on_frame`` hook that posts one key per drawn frame: ``sequences[i]`` for the ``i``-th query.

    Before each key it appends to ``seen`` what the screen shows: per clip, the rank the window
    gave it so far and whether a rank badge is drawn above it.
    """
    pending = [list(keys) for keys in sequences]
    last: list[Query | None] = [None]

    def hook(window: LabelingWindow) -> None:
        if window.query is None or (window.query is not last[0] and not pending):
            return
        if window.query is not last[0]:
            last[0] = window.query
            keys = pending[0]
            pending.pop(0)
            hook.keys = keys  # type: ignore[attr-defined]
        if seen is not None and window.entry is not None:
            seen.append([(window.entry.rank_of(i), badge_shown(window, i)) for i in range(window.query.size)])
        if hook.keys:  # type: ignore[attr-defined]
            pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=hook.keys.pop(0)))  # type: ignore[attr-defined]

    return hook


def badge_shown(window: LabelingWindow, position: int) -> bool:
    """Whether the rank badge is drawn in the tag row above clip ``position``."""
    assert window.screen is not None and window.clip_rects is not None
    rect = window.clip_rects[position]
    row = pygame.surfarray.pixels3d(window.screen)[rect.left : rect.right, rect.top - 20]
    return bool(np.all(row == RANK_COLOUR, axis=-1).any())


def press(*keys: int | str) -> Callable[[LabelingWindow], None]:
    """An ``on_frame`` hook that posts the next key (or ``"quit"``) once per query shown."""
    pending = list(keys)
    last: list[Query | None] = [None]

    def hook(window: LabelingWindow) -> None:
        if pending and window.query is not None and window.query is not last[0]:
            last[0] = window.query
            key = pending.pop(0)
            if key == "quit":
                pygame.event.post(pygame.event.Event(pygame.QUIT))
            else:
                pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key))

    return hook


def shown_row(window: LabelingWindow, side: int) -> int:
    """Which frame a clip shows: the index of its bright row (see :func:`make_segment`)."""
    assert window.screen is not None and window.clip_rects is not None
    rect = window.clip_rects[side]
    column = pygame.surfarray.pixels3d(window.screen)[
        rect.centerx, rect.top : rect.bottom : rect.height // FRAME_H
    ]
    return int(np.flatnonzero(column.min(axis=1) == 255)[0])


def oracle_pressing(
    *keys: int | str, record_answer: Callable[[Query, Preference], None] | None = None
) -> HumanOracle:
    """A fast oracle whose window presses ``keys``; connected with ``record_answer`` if given."""
    oracle = HumanOracle(fps=1000)
    oracle.window = LabelingWindow(fps=1000, on_frame=press(*keys))
    if record_answer is not None:
        oracle.connect(OracleContext(env_fps=None, store_path=":memory:", record_answer=record_answer))
    return oracle


# ---------------------------------------------------------------------------------- the oracle


def test_each_key_gives_its_answer_and_each_answer_is_recorded_at_once() -> None:
    calls: list[tuple[int, Preference]] = []
    oracle = oracle_pressing(
        pygame.K_LEFT,
        pygame.K_RIGHT,
        pygame.K_UP,
        pygame.K_SPACE,
        pygame.K_DOWN,
        record_answer=lambda query, preference: calls.append((query.query_id, preference)),
    )
    assert isinstance(oracle, Oracle) and isinstance(oracle, BaseOracle) and oracle.needs_frames
    answers = oracle.label(make_queries(5))
    expected = [Preference.LEFT, Preference.RIGHT, Preference.EQUAL, Preference.EQUAL, Preference.SKIP]
    assert answers == expected
    assert calls == list(enumerate(expected))
    assert oracle.window is not None and oracle.window.is_open  # reused by the next batch
    oracle.close()
    assert not oracle.window.is_open


def test_escape_pauses_with_none_for_the_rest_and_next_call_reopens() -> None:
    calls: list[int] = []
    oracle = oracle_pressing(
        pygame.K_LEFT, pygame.K_ESCAPE, record_answer=lambda q, p: calls.append(q.query_id)
    )
    queries = make_queries(3)
    assert oracle.label(queries) == [Preference.LEFT, None, None]
    assert calls == [0]
    assert oracle.window is not None and not oracle.window.is_open
    assert not pygame.display.get_init()  # the window really went away

    oracle.window.on_frame = press(pygame.K_RIGHT, pygame.K_DOWN)
    assert oracle.label(queries[1:]) == [Preference.RIGHT, Preference.SKIP]
    assert calls == [0, 1, 2]


def test_closing_the_window_pauses_without_a_label() -> None:
    calls: list[int] = []
    oracle = oracle_pressing("quit", record_answer=lambda q, p: calls.append(q.query_id))
    assert oracle.label(make_queries(2)) == [None, None]
    assert calls == []


def test_empty_batch_opens_no_window() -> None:
    oracle = HumanOracle()
    assert oracle.label([]) == []
    assert oracle.window is None


def test_segment_without_frames_fails_before_the_window_opens() -> None:
    vector = Segment(
        7, np.zeros((H, 4), np.float32), np.zeros((H, 1), np.float32), np.zeros(H, np.float32), H
    )
    oracle = HumanOracle()
    with pytest.raises(ValueError, match=r"segment 7 of query 1 has no frames.*record_frames=True"):
        oracle.label([*make_queries(1), Query(1, vector, vector)])
    assert oracle.window is None


def test_fps_defaults_to_env_fps_then_20() -> None:
    oracle = oracle_pressing(pygame.K_LEFT, pygame.K_LEFT)
    oracle.fps = None
    oracle.label(make_queries(1))
    assert oracle.window is not None and oracle.window.fps == 20
    oracle.connect(OracleContext(env_fps=50, store_path=":memory:", record_answer=lambda q, p: None))
    oracle.label(make_queries(1))
    assert oracle.window.fps == 50


def test_show_progress_is_shown_under_the_batch_progress() -> None:
    shown: list[str] = []

    class AnsweringWindow(LabelingWindow):
        def ask(self, query: Query, *, progress: str = "") -> Preference | None:
            shown.append(progress)
            return Preference.LEFT

    oracle = HumanOracle()
    oracle.window = AnsweringWindow()
    oracle.show_progress("3 / 10 labels, 2 queries waiting")
    assert oracle.label(make_queries(2)) == [Preference.LEFT, Preference.LEFT]
    assert shown == [
        "0 / 2 labeled in this batch   |   3 / 10 labels, 2 queries waiting",
        "1 / 2 labeled in this batch   |   3 / 10 labels, 2 queries waiting",
    ]


def test_invalid_arguments_name_the_value() -> None:
    with pytest.raises(ValueError, match="-1"):
        HumanOracle(fps=-1)
    with pytest.raises(ValueError, match=r"2\.5"):
        HumanOracle(scale=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="poll_interval"):
        run_labeling_session(":memory:", poll_interval=0)


# ---------------------------------------------------------------------------------- rankings

K = pygame


@pytest.mark.parametrize(
    ("k", "sequences", "expected"),
    [
        (
            3,
            [
                [K.K_3, K.K_1],
                [K.K_LEFT, K.K_2, K.K_SPACE],  # an arrow is no answer to three clips
                [K.K_1, K.K_u, K.K_3, K.K_EQUALS, K.K_2],
                [K.K_2, K.K_DOWN],  # skip after a step: the step is dropped
            ],
            [Ranking([[2], [0], [1]]), Ranking([[1], [0, 2]]), Ranking([[1, 2], [0]]), Preference.SKIP],
        ),
        (
            4,
            [
                [K.K_3, K.K_1, K.K_EQUALS, K.K_4],
                [K.K_4, K.K_4, K.K_BACKSPACE, K.K_2, K.K_UP],  # a clip pressed twice is ranked once
                [K.K_KP1, K.K_KP2, K.K_KP3],
                [K.K_SPACE],
                [K.K_1, K.K_EQUALS, K.K_u, K.K_2, K.K_u, K.K_u, K.K_4, K.K_3, K.K_2],
            ],
            [
                Ranking([[2], [0, 3], [1]]),
                Ranking([[1], [0, 2, 3]]),
                Ranking([[0], [1], [2], [3]]),
                Ranking([[0, 1, 2, 3]]),
                Ranking([[3], [2], [1], [0]]),
            ],
        ),
    ],
)
def test_key_sequences_give_the_exact_ranking_and_each_is_recorded(
    k: int, sequences: list[list[int]], expected: list[object]
) -> None:
    calls: list[tuple[int, object]] = []
    oracle = HumanOracle(fps=1000)
    oracle.window = LabelingWindow(fps=1000, on_frame=press_sequences(*sequences))
    oracle.connect(
        OracleContext(None, ":memory:", lambda query, answer: calls.append((query.query_id, answer)))
    )
    assert oracle.label(make_ranked_queries(len(sequences), k)) == expected
    assert calls == list(enumerate(expected))
    assert oracle.window.last_answer == expected[-1] and oracle.window.entry is None


def test_the_ranks_given_so_far_are_drawn_above_the_clips() -> None:
    seen: list[list[tuple[int | None, bool]]] = []
    window = LabelingWindow(
        fps=1000, on_frame=press_sequences([K.K_3, K.K_1, K.K_u, K.K_4, K.K_2], seen=seen)
    )
    assert window.ask(make_ranked_queries(1, 4)[0]) == Ranking([[2], [3], [1], [0]])
    ranks = [[rank for rank, _ in state] for state in seen]
    assert ranks == [
        [None] * 4,
        [None, None, 0, None],
        [1, None, 0, None],
        [None, None, 0, None],  # undone
        [None, None, 0, 1],
    ]
    for state in seen:  # a badge above exactly the ranked clips
        assert [badge for _, badge in state] == [rank is not None for rank, _ in state]
    rects = window.clip_rects
    assert rects is not None and len(rects) == 4
    for a, b in itertools.pairwise(rects):
        assert not a.colliderect(b)


def test_a_pair_takes_digits_too_and_a_pause_drops_a_ranking_begun() -> None:
    window = LabelingWindow(fps=1000, on_frame=press_sequences([K.K_2], [K.K_3, K.K_ESCAPE]))
    assert window.ask(make_queries(1)[0]) == Preference.RIGHT
    assert window.ask(make_ranked_queries(1, 3)[0]) is None
    assert not window.is_open and window.entry is None


def test_session_stores_rankings(tmp_path: Path) -> None:
    path = tmp_path / "prefs.sqlite"
    with PreferenceStore(path) as store:
        store.add_queries(make_ranked_queries(2, 4))
    window = LabelingWindow(fps=1000, on_frame=press_sequences([K.K_2, K.K_SPACE], [K.K_DOWN]))
    assert run_labeling_session(path, labeler="alice", stop_when_empty=True, window=window) == 2
    with PreferenceStore(path) as store:
        labels = store.labels()
    assert [(lab.query_id, lab.preference, lab.labeler) for lab in labels] == [
        (0, Ranking([[1], [0, 2, 3]]), "alice"),
        (1, Preference.SKIP, "alice"),
    ]
    assert labels[0].segment_ids == (0, 1, 2, 3)


# ---------------------------------------------------------------------------------- the window


def test_clips_are_drawn_side_by_side_scaled_up_with_progress() -> None:
    pixels: dict[str, np.ndarray] = {}

    def hook(window: LabelingWindow) -> None:
        assert window.screen is not None and window.clip_rects is not None
        for side, rect in zip(("left", "right"), window.clip_rects, strict=True):
            pixels[side] = pygame.surfarray.pixels3d(window.screen)[rect.centerx, rect.bottom - 2].copy()
        pixels["rects"] = window.clip_rects  # type: ignore[assignment]
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_LEFT))

    window = LabelingWindow(on_frame=hook)
    assert window.ask(make_queries(1)[0], progress="0 / 1") == Preference.LEFT
    assert tuple(pixels["left"]) == LEFT_COLOUR and tuple(pixels["right"]) == RIGHT_COLOUR
    left, right = pixels["rects"]  # type: ignore[misc]
    assert left.width >= 400 and left.width % FRAME_W == 0  # integer scale up to >= 400 px
    assert left.right < right.left and left.top == right.top


def test_replay_key_restarts_both_clips() -> None:
    now = [0.0]
    shown: list[int] = []

    def hook(window: LabelingWindow) -> None:
        shown.append(window.frame_index)
        assert shown_row(window, 0) == shown_row(window, 1) == window.frame_index
        if len(shown) == 4:
            pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_r))
        if len(shown) == 6:
            pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_DOWN))
        now[0] += 0.125  # one frame at 8 fps (exact in binary)

    window = LabelingWindow(fps=8, clock=lambda: now[0], on_frame=hook)
    assert window.ask(make_queries(1)[0]) == Preference.SKIP
    assert shown == [0, 1, 2, 3, 0, 1]


def test_clips_loop_and_a_shorter_clip_holds_its_last_frame() -> None:
    now = [0.0]
    shown: list[int] = []

    def hook(window: LabelingWindow) -> None:
        shown.append(window.frame_index)
        assert shown_row(window, 0) == min(window.frame_index, 2)  # held at its last frame
        assert shown_row(window, 1) == window.frame_index
        now[0] += 1.0
        if len(shown) == 2 * H:
            pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_RIGHT))

    query = Query(0, make_segment(0, LEFT_COLOUR, length=3), make_segment(1, RIGHT_COLOUR))
    window = LabelingWindow(fps=1, clock=lambda: now[0], on_frame=hook)
    assert window.ask(query) == Preference.RIGHT
    assert shown == [*range(H), *range(H)]  # the period is the longer clip's length


def test_keys_typed_before_a_clip_is_shown_are_dropped() -> None:
    def hook(window: LabelingWindow) -> None:
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_UP))

    window = LabelingWindow(on_frame=hook)
    queries = make_queries(2)
    assert window.ask(queries[0]) == Preference.EQUAL
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_LEFT))  # a double press
    assert window.ask(queries[1]) == Preference.EQUAL


def test_injected_event_source() -> None:
    script = [[], [pygame.event.Event(pygame.KEYDOWN, key=pygame.K_a)], [], [pygame.event.Event(pygame.QUIT)]]
    window = LabelingWindow(event_source=lambda: script.pop(0))
    assert window.ask(make_queries(1)[0]) is None
    assert script == [] and not window.is_open


def test_window_size_fits_the_clips() -> None:
    window = LabelingWindow(window_size=(640, 480), on_frame=press(pygame.K_LEFT))
    window.ask(make_queries(1)[0])
    assert window.screen is not None and window.screen.get_size() == (640, 480)
    assert window.clip_rects is not None and window.clip_rects[1].right <= 640


def test_missing_pygame_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pygame", None)
    with pytest.raises(ImportError, match=r'pip install "prefwrap\[human\]"'):
        import_pygame()
    with pytest.raises(ImportError, match="prefwrap"):
        HumanOracle()


def test_importing_the_modules_does_not_import_pygame() -> None:
    code = (
        "import sys, prefwrap.oracles.human, prefwrap.oracles.labeling_window; "
        "assert 'pygame' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_sigterm_terminates_instead_of_closing_the_window(tmp_path: Path) -> None:
    """SDL would turn SIGTERM into a window-close event (a pause); ``kill`` must stop the program."""
    script = tmp_path / "label.py"
    script.write_text(
        textwrap.dedent("""
            import numpy as np
            from prefwrap.oracles.labeling_window import LabelingWindow
            from prefwrap.oracles.human import HumanOracle
            from prefwrap.records import Query, Segment

            zeros = np.zeros((4, 1), np.float32)
            segment = Segment(0, zeros, zeros, zeros[:, 0], 4, frames=np.zeros((4, 8, 8, 3), np.uint8))
            oracle = HumanOracle()
            oracle.window = LabelingWindow(on_frame=lambda window: print("shown", flush=True))
            print(oracle.label([Query(0, segment, segment)]))
        """)
    )
    child = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "shown\n"
        child.send_signal(signal.SIGTERM)
        stdout, _ = child.communicate(timeout=20)
    finally:
        child.kill()
    assert child.returncode == -signal.SIGTERM, f"exit code {child.returncode}, printed {stdout!r}"


# ---------------------------------------------------------------------------------- async sessions


def test_session_writes_each_label_to_the_store_at_once(tmp_path: Path) -> None:
    path = tmp_path / "run" / "prefs.sqlite"
    with PreferenceStore(path) as store:
        store.add_queries(make_queries(3))
    seen_by_other_process: list[int] = []

    keys = press(pygame.K_RIGHT, pygame.K_DOWN, pygame.K_ESCAPE)

    def hook(window: LabelingWindow) -> None:
        with PreferenceStore(path) as reader:  # what the trainer sees while the session runs
            seen_by_other_process.append(reader.n_labels())
        keys(window)

    window = LabelingWindow(fps=1000, on_frame=hook)
    assert run_labeling_session(path, labeler="alice", window=window) == 2
    assert not window.is_open
    assert seen_by_other_process[-1] == 2  # both labels were committed while the window was open
    with PreferenceStore(path) as store:
        labels = store.labels()
        assert [(lab.query_id, lab.preference, lab.labeler) for lab in labels] == [
            (0, Preference.RIGHT, "alice"),
            (1, Preference.SKIP, "alice"),
        ]
        assert [q.query_id for q in store.pending_queries(with_frames=False)] == [2]


def test_session_waits_for_new_queries_and_stops_on_close(tmp_path: Path) -> None:
    path = tmp_path / "prefs.sqlite"
    PreferenceStore(path).close()
    state = {"waits": 0}

    keys = press(pygame.K_LEFT)

    def hook(window: LabelingWindow) -> None:
        if window.query is None:  # the "no queries waiting" screen
            state["waits"] += 1
            if state["waits"] == 1:  # the trainer adds a query while the labeler waits
                with PreferenceStore(path) as trainer:
                    trainer.add_queries(make_queries(1))
            elif state["waits"] > 3:
                pygame.event.post(pygame.event.Event(pygame.QUIT))
        keys(window)

    window = LabelingWindow(fps=1000, on_frame=hook)
    assert run_labeling_session(path, poll_interval=0.01, window=window) == 1
    with PreferenceStore(path) as store:
        assert [lab.preference for lab in store.labels()] == [Preference.LEFT]


def test_session_keeps_a_label_given_elsewhere_and_stops_when_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "prefs.sqlite"
    with PreferenceStore(path) as store:
        store.add_queries(make_queries(2))

    labeled_elsewhere: list[bool] = []
    keys = press(pygame.K_LEFT, pygame.K_RIGHT)

    def hook(window: LabelingWindow) -> None:
        if window.query is not None and window.query.query_id == 0 and not labeled_elsewhere:
            with PreferenceStore(path) as other:  # another labeler answers the query on screen
                other.add_label(0, Preference.EQUAL, "bob")
            labeled_elsewhere.append(True)
        keys(window)

    n = run_labeling_session(path, stop_when_empty=True, window=LabelingWindow(fps=1000, on_frame=hook))
    assert n == 1
    assert "already labeled" in caplog.text
    with PreferenceStore(path) as store:
        assert [(lab.query_id, lab.labeler) for lab in store.labels()] == [(0, "bob"), (1, "human")]


def test_session_reads_fps_from_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "prefs.sqlite"
    with PreferenceStore(path) as store:
        store.set_meta("render_fps", "30")
        store.add_queries(make_queries(1))
    created: list[LabelingWindow] = []

    class RecordingWindow(LabelingWindow):
        def __init__(self, **kwargs: object) -> None:
            super().__init__(**kwargs, on_frame=press(pygame.K_UP))  # type: ignore[arg-type]
            created.append(self)

    monkeypatch.setattr("prefwrap.oracles.human.LabelingWindow", RecordingWindow)
    assert run_labeling_session(path, stop_when_empty=True) == 1
    assert created[0].fps == 30


# ---------------------------------------------------------------------------------- a real window


@pytest.fixture
def xvfb_display(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Start a virtual X server on a free display and point SDL at it."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb not installed: apt-get install -y xvfb xdotool")
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", "1", "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert server.stdout is not None
        number = server.stdout.readline().decode().strip()
        if not number.isdigit():
            pytest.fail(f"Xvfb did not start (exit code {server.poll()})")
        display = f":{number}"
        pygame.display.quit()
        monkeypatch.setenv("DISPLAY", display)
        monkeypatch.setenv("SDL_VIDEODRIVER", "x11")
        yield display
    finally:
        pygame.display.quit()
        server.terminate()
        server.wait(timeout=10)


def read_xwd(data: bytes) -> np.ndarray:
    """Decode an ``xwd`` dump of a 24/32-bit TrueColor window into RGB, shape ``(height, width, 3)``."""
    header = struct.unpack(">25I", data[:100])
    header_size, width, height = header[0], header[4], header[5]
    byte_order, bits_per_pixel, bytes_per_line, n_colours = header[7], header[11], header[12], header[19]
    masks = header[14:17]
    assert bits_per_pixel == 32, f"expected a 32-bit visual, got {bits_per_pixel} bits per pixel"
    start = header_size + 12 * n_colours
    rows = np.frombuffer(data, np.uint8, count=height * bytes_per_line, offset=start)
    pixels = (
        rows.reshape(height, bytes_per_line)[:, : 4 * width].copy().view("<u4" if byte_order == 0 else ">u4")
    )
    pixels = pixels.reshape(height, width)
    channels = [(pixels & mask) >> (int(mask).bit_length() - 8) for mask in masks]
    return np.stack(channels, axis=-1).astype(np.uint8)


def screenshot(window: LabelingWindow) -> np.ndarray:
    """What the X server shows of the window (``xwd``), else the surface pygame displayed."""
    if shutil.which("xwd"):
        window_id = str(pygame.display.get_wm_info()["window"])
        return read_xwd(
            subprocess.run(["xwd", "-silent", "-id", window_id], capture_output=True, check=True).stdout
        )
    assert window.screen is not None
    return pygame.surfarray.array3d(window.screen).transpose(1, 0, 2)


@pytest.mark.window
def test_real_window_under_xvfb(xvfb_display: str, tmp_path: Path) -> None:
    path = tmp_path / "prefs.sqlite"
    with PreferenceStore(path) as store:
        store.add_queries(make_queries(4))
    use_xdotool = shutil.which("xdotool") is not None
    keys = ["Left", "Right", "space", "Escape"]
    state: dict[str, object] = {"query": None, "frames": 0}
    shots: list[np.ndarray] = []
    drivers: set[str] = set()

    def hook(window: LabelingWindow) -> None:
        drivers.add(pygame.display.get_driver())
        if window.query is not state["query"]:
            state["query"], state["frames"] = window.query, 0
        state["frames"] = int(state["frames"]) + 1  # type: ignore[call-overload]
        if state["frames"] != 3 or not keys:  # let the X server show a couple of frames first
            return
        if not shots:
            shots.append(screenshot(window))
        key = keys.pop(0)
        if use_xdotool:  # a real key press through the X server
            window_id = str(pygame.display.get_wm_info()["window"])
            subprocess.run(["xdotool", "windowfocus", "--sync", window_id, "key", key], check=True)
        else:
            pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.key.key_code(key.lower())))

    window = LabelingWindow(fps=20, on_frame=hook)
    assert run_labeling_session(path, labeler="xvfb", window=window) == 3
    assert drivers == {"x11"}
    with PreferenceStore(path) as store:
        assert [lab.preference for lab in store.labels()] == [
            Preference.LEFT,
            Preference.RIGHT,
            Preference.EQUAL,
        ]
        assert len(store.pending_queries(with_frames=False)) == 1

    image = shots[0]
    pygame.image.save(pygame.surfarray.make_surface(image.transpose(1, 0, 2)), str(tmp_path / "window.png"))
    if os.environ.get("PREFWRAP_SCREENSHOT"):
        shutil.copy(tmp_path / "window.png", os.environ["PREFWRAP_SCREENSHOT"])
    half = image.shape[1] // 2
    for colour, here, there in (
        (LEFT_COLOUR, slice(0, half), slice(half, None)),
        (RIGHT_COLOUR, slice(half, None), slice(0, half)),
    ):
        matches = np.all(image == colour, axis=-1)
        assert matches[:, here].sum() > 400 * 400  # a big clip of this colour on its side...
        assert matches[:, there].sum() == 0  # ...and none of it on the other side


@pytest.mark.window
def test_real_window_ranks_three_clips_by_real_key_presses_under_xvfb(
    xvfb_display: str, tmp_path: Path
) -> None:
    if shutil.which("xdotool") is None:
        pytest.skip("xdotool not installed: apt-get install -y xdotool")
    path = tmp_path / "prefs.sqlite"
    with PreferenceStore(path) as store:
        store.add_queries(make_ranked_queries(5, 3))
    sequences = [["3", "1"], ["2", "space"], ["1", "u", "3", "equal", "2"], ["2", "Down"], ["Up"], ["Escape"]]
    state: dict[str, object] = {"query": None, "frames": 0}
    shots: list[tuple[np.ndarray, list[tuple[int, int, int, int]]]] = []

    def hook(window: LabelingWindow) -> None:
        if window.query is not state["query"]:
            state["query"], state["frames"], state["keys"] = window.query, 0, sequences.pop(0)
        state["frames"] = int(state["frames"]) + 1  # type: ignore[call-overload]
        keys: list[str] = state["keys"]  # type: ignore[assignment]
        if int(state["frames"]) % 3 or not keys:  # type: ignore[call-overload]
            return  # let the X server show a couple of frames (and the last key's effect) first
        if not shots and window.entry is not None and window.entry.groups:  # after the first key
            shots.append((screenshot(window), [tuple(rect) for rect in window.clip_rects or ()]))
        window_id = str(pygame.display.get_wm_info()["window"])
        subprocess.run(["xdotool", "windowfocus", "--sync", window_id, "key", keys.pop(0)], check=True)

    window = LabelingWindow(fps=20, on_frame=hook)
    assert run_labeling_session(path, labeler="xvfb", window=window) == 5
    with PreferenceStore(path) as store:
        assert [label.preference for label in store.labels()] == [
            Ranking([[2], [0], [1]]),
            Ranking([[1], [0, 2]]),
            Ranking([[1, 2], [0]]),
            Preference.SKIP,
            Ranking([[0, 1, 2]]),
        ]

    image, rects = shots[0]  # the first query after "3": clip 3 ranked 1st, a badge above it only
    pygame.image.save(pygame.surfarray.make_surface(image.transpose(1, 0, 2)), str(tmp_path / "ranking.png"))
    if os.environ.get("PREFWRAP_SCREENSHOT_RANKING"):
        shutil.copy(tmp_path / "ranking.png", os.environ["PREFWRAP_SCREENSHOT_RANKING"])
    for position, (x, y, w, h) in enumerate(rects):
        clip = np.all(image[y : y + h, x : x + w] == CLIP_COLOURS[position], axis=-1)
        assert clip.mean() > 0.8  # each clip in its own place, in its colour
        badge = np.all(image[y - 30 : y, x : x + w] == RANK_COLOUR, axis=-1)
        assert badge.any() == (position == 2)


def test_asynchronous_oracle_labels_in_its_own_process_and_returns_at_once(tmp_path: Path) -> None:
    store_path = tmp_path / "preferences.sqlite"
    with PreferenceStore(store_path) as store:
        store.add_queries(make_queries(2))
    oracle = HumanOracle(asynchronous=True)
    oracle.connect(OracleContext(env_fps=None, store_path=store_path, record_answer=lambda q, p: None))
    try:
        assert oracle.label(make_queries(2)) == [None, None]
        assert oracle._session is not None and oracle._session.is_alive()
        session = oracle._session
        assert oracle.label(make_queries(2)) == [None, None]
        assert oracle._session is session  # one labelling process, not one per call
    finally:
        oracle.close()
    assert not session.is_alive()


def test_asynchronous_oracle_without_a_store_file_says_how_to_give_one() -> None:
    oracle = HumanOracle(asynchronous=True)
    with pytest.raises(ValueError, match="store="):
        oracle.label(make_queries(1))  # never connected
    for in_memory in (":memory:", None):
        with pytest.raises(ValueError, match=r"in memory.*store="):
            oracle.connect(OracleContext(None, in_memory, lambda q, p: None))  # type: ignore[arg-type]


def test_learner_connects_the_oracle_to_its_store_and_the_env_fps(tmp_path: Path) -> None:
    import gymnasium as gym
    from stable_baselines3.common.env_util import make_vec_env

    from prefwrap import PreferenceLearner, PreferenceRewardWrapper

    venv = PreferenceRewardWrapper(
        make_vec_env("CartPole-v1", n_envs=1, env_kwargs={"render_mode": "rgb_array"}), record_frames=True
    )
    oracle = HumanOracle(asynchronous=True)
    learner = PreferenceLearner(venv, oracle, total_labels=10, store=tmp_path / "p.sqlite")
    assert oracle.context is not None
    assert oracle.context.store_path == learner.store.location == str(learner.store.path)
    assert oracle.context.env_fps == gym.make("CartPole-v1").metadata["render_fps"]
    assert learner.store.get_meta("render_fps") == str(oracle.context.env_fps)

    synchronous = oracle_pressing(pygame.K_RIGHT)
    learner = PreferenceLearner(venv, synchronous, total_labels=10, store=tmp_path / "sync.sqlite")
    learner.store.add_queries(make_queries(1))
    assert synchronous.label(make_queries(1)) == [Preference.RIGHT]
    # the answer reached the store through record_answer, before label() returned it
    assert [(lab.query_id, lab.preference) for lab in learner.store.labels()] == [(0, Preference.RIGHT)]
    with pytest.raises(ValueError, match="in memory"):  # a labelling process could not open it
        PreferenceLearner(venv, HumanOracle(asynchronous=True), total_labels=10)


def test_learner_refuses_a_human_oracle_without_frames(tmp_path: Path) -> None:
    from stable_baselines3.common.env_util import make_vec_env

    from prefwrap import PreferenceLearner, PreferenceRewardWrapper

    venv = PreferenceRewardWrapper(make_vec_env("CartPole-v1", n_envs=1))
    with pytest.raises(ValueError, match="record_frames=True"):
        PreferenceLearner(venv, HumanOracle(), total_labels=10)


def test_a_pending_query_asked_again_without_frames_is_shown_from_the_store() -> None:
    # The learner drops the clips of queries still pending; the window reads them back to show them.
    with_frames = make_queries(1)[0]
    oracle = HumanOracle(fps=1000)
    oracle.window = LabelingWindow(fps=1000, on_frame=press(pygame.K_LEFT, pygame.K_LEFT))
    loaded = []

    def load_query(query_id: int) -> Query:
        loaded.append(query_id)
        return Query.of(query_id, with_frames.segments)  # as read back from a store: a new object

    oracle.connect(OracleContext(None, ":memory:", lambda query, answer: None, load_query))
    assert oracle.label([with_frames.without_frames()]) == [Preference.LEFT]
    assert loaded == [with_frames.query_id]
    assert oracle.label([with_frames]) == [Preference.LEFT] and loaded == [with_frames.query_id]
    oracle.close()


def test_a_session_loads_the_next_query_while_the_current_one_is_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The next clip plays the moment an answer is given: its frames were read from the store on the
    prefetch thread (its own connection) while the person watched the one before."""
    path = tmp_path / "prefs.sqlite"
    with PreferenceStore(path) as store:
        store.add_queries(make_queries(3))
    loads: list[tuple[int, str]] = []
    real_query = PreferenceStore.query

    def recording_query(self: PreferenceStore, query_id: int, **kwargs: bool) -> Query:
        loads.append((query_id, threading.current_thread().name))
        return real_query(self, query_id, **kwargs)

    monkeypatch.setattr(PreferenceStore, "query", recording_query)
    window = LabelingWindow(fps=1000, on_frame=press_sequences([K.K_LEFT], [K.K_RIGHT], [K.K_UP]))
    assert run_labeling_session(path, stop_when_empty=True, window=window) == 3
    assert [query_id for query_id, _ in loads] == [0, 1, 2]
    assert loads[0][1] == threading.current_thread().name  # the first: nothing to overlap with
    assert all(thread.startswith("prefwrap-prefetch") for _, thread in loads[1:])
    with PreferenceStore(path) as store:
        assert [label.preference for label in store.labels()] == [
            Preference.LEFT,
            Preference.RIGHT,
            Preference.EQUAL,
        ]
