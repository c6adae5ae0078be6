"""The pygame window a human labels in: a query's clips in a grid, looping in sync, read by keys.

:class:`LabelingWindow` knows nothing about training or stores; :mod:`prefwrap.oracles.human` drives
it. pygame is imported only when a window is created, so ``import prefwrap`` works without it.

Keys, for a query of any number ``K`` of clips: ``1`` to ``K`` = that clip is the next best (a
ranking, best first, see :mod:`prefwrap.oracles.ranking_entry`), ``=`` = the next clip ties with
the one ranked last, up or space = the clips not ranked yet are equally good (for a pair: EQUAL),
``u`` or Backspace = undo the last step, down = SKIP (can't tell), ``r`` = replay the clips from
the start, Esc or closing the window = pause. For a pair, left arrow = LEFT, right arrow = RIGHT.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from prefwrap.clips.frames import clip_frames
from prefwrap.oracles.ranking_entry import RankingEntry, answer_text, ordinal
from prefwrap.oracles.window_keys import ARROWS, key_action, key_help
from prefwrap.oracles.window_layout import FOOTER_H, MARGIN, TAG_H, grid_layout
from prefwrap.records import Answer, Preference, Query

if TYPE_CHECKING:
    import pygame

MAX_WAIT = 0.1
"""Longest wait for events (s) before ``on_frame`` runs again, even between slow frames."""

_BACKGROUND = (28, 28, 32)
_TEXT = (235, 235, 235)
_DIM_TEXT = (160, 160, 170)
_NOTICE = (240, 170, 90)
_KEYCAP = (70, 70, 80)
_RANK_COLOUR = (240, 200, 60)
# clip 1 blue and clip 2 orange (LEFT and RIGHT of a pair), then colours told apart at a glance
_CLIP_COLOURS = (
    (52, 120, 230),
    (230, 120, 40),
    (60, 170, 90),
    (160, 90, 210),
    (40, 170, 180),
    (220, 80, 140),
)


def import_pygame() -> Any:
    """Import pygame, or fail with the pip extra that installs it.

    Raises:
        ImportError: pygame is not installed (the message names ``prefwrap[human]``).
    """
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    # By default SDL turns SIGTERM (and SIGINT, where Python does not handle it) into a window-close
    # event, which would merely pause labeling; `kill` must stop a training run instead.
    os.environ.setdefault("SDL_NO_SIGNAL_HANDLERS", "1")
    try:
        import pygame
    except ImportError as err:
        raise ImportError(
            'Human labeling needs pygame, which is not installed: pip install "prefwrap[human]"'
        ) from err
    return pygame


class LabelingWindow:
    """A pygame window that shows a query's clips in a grid and returns the labeler's answer.

    Each clip is :func:`~prefwrap.clips.frames.clip_frames` of its segment, numbered from 1 in the
    query's order (a pair's are LEFT and RIGHT). A pair's answer is a
    :class:`~prefwrap.records.Preference`; a larger query's a :class:`~prefwrap.records.Ranking`
    (or ``SKIP``), entered best clip first by number keys (see the module docstring). The rank each
    clip got so far is shown above it.

    The window opens on the first :meth:`ask` and is sized to the clips
    (:func:`~prefwrap.oracles.window_layout.grid_layout`): frames are scaled up by an integer factor
    so that a pair's clips are at least 400 px wide (a grid's 320 px, shrunk to fit the screen),
    unless ``scale`` or ``window_size`` say otherwise. The clips loop in sync at ``fps``; a shorter
    clip holds its last frame until the longest one restarts.

    Args:
        fps: Playback speed in frames per second.
        scale: Integer magnification of the frames; ``None`` picks one from the frame size.
        window_size: ``(width, height)`` in px; the clips are scaled (not necessarily by an integer)
            to fit. ``None`` sizes the window to the clips.
        title: Window caption.
        event_source: Returns the pending pygame events, polled once per frame. ``None`` (default)
            reads pygame's queue and wakes up at once on a key press. Tests and scripted sessions
            may replace it.
        clock: Monotonic time in seconds; playback position is computed from it.
        on_frame: Called with the window after every frame is drawn (and at least every
            :data:`MAX_WAIT` s), before events are read, e.g. to post events in a test or to save a
            screenshot.

    Attributes:
        screen: The display surface while the window is open, else ``None``.
        clip_rects: Where each clip is drawn on ``screen``, in the query's order.
        query: The query on screen (``None`` on a message screen or when closed).
        entry: The ranking entered so far for the query on screen (``None`` when none is).
        frame_index: The frame the clips show, in ``[0, longest clip's length)``.
        last_answer: The latest answer given in this window, shown in its header.

    Raises:
        ValueError: ``fps`` is not positive, ``scale`` is not a positive integer or ``None``, or
            ``window_size`` is not a ``(width, height)`` pair of at least 200 px.
        ImportError: pygame is not installed.

    Example:
        >>> window = LabelingWindow(fps=20)  # doctest: +SKIP
        >>> window.ask(query, progress="0 / 1 labeled")  # doctest: +SKIP
        <Preference.LEFT: 'left'>
    """

    def __init__(
        self,
        *,
        fps: float = 20.0,
        scale: int | None = None,
        window_size: tuple[int, int] | None = None,
        title: str = "prefwrap - which clip is better?",
        event_source: Callable[[], Iterable[Any]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_frame: Callable[[LabelingWindow], None] | None = None,
    ) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if scale is not None and (not isinstance(scale, int) or scale < 1):
            raise ValueError(f"scale must be a positive integer or None, got {scale!r}")
        if window_size is not None and (len(window_size) != 2 or min(window_size) < 200):
            raise ValueError(f"window_size must be (width, height) of at least 200 px, got {window_size!r}")
        self.pg = import_pygame()
        self.fps = float(fps)
        self.scale = scale
        self.window_size = window_size
        self.title = title
        self.event_source = event_source
        self.clock = clock
        self.on_frame = on_frame
        self.screen: pygame.Surface | None = None
        self.clip_rects: tuple[pygame.Rect, ...] | None = None
        self.query: Query | None = None
        self.entry: RankingEntry | None = None
        self.frame_index = 0
        self.last_answer: Answer | None = None
        self._layout_key: tuple[tuple[int, int], int] | None = None  # (largest frame shape, K)
        self._fonts: dict[int, pygame.font.Font] = {}

    @property
    def is_open(self) -> bool:
        """Whether the window is currently shown."""
        return self.screen is not None

    def ask(self, query: Query, *, progress: str = "") -> Answer | None:
        """Show ``query`` until the labeler answers.

        Args:
            query: The segments to compare (2 to 6).
            progress: One line of progress shown under the title.

        Returns:
            The answer: a :class:`~prefwrap.records.Preference` for a pair, a
            :class:`~prefwrap.records.Ranking` or ``SKIP`` for more clips; or ``None`` if the
            labeler paused (Esc or closed the window, which is then closed; a ranking begun is
            dropped), and the next call opens it again.

        Raises:
            ValueError: A segment cannot be shown (see :func:`~prefwrap.clips.frames.clip_frames`).
        """
        clips = [clip_frames(segment, query_id=query.query_id) for segment in query.segments]
        self._ensure_open([clip.shape[1:3] for clip in clips])
        pg = self.pg
        if self.event_source is None:
            pg.event.clear((pg.KEYDOWN, pg.KEYUP))  # keys typed before these clips were visible
        period = max(len(clip) for clip in clips)
        self.query, self.entry, self.frame_index = query, RankingEntry(len(clips)), 0
        start, shown = self.clock(), -1
        while True:
            position = int((self.clock() - start) * self.fps)
            self.frame_index = position % period
            if self.frame_index != shown:
                shown = self.frame_index
                self._draw_query(clips, period, progress)
            if self.on_frame is not None:
                self.on_frame(self)
            for event in self._events(until=start + (position + 1) / self.fps):
                if _is_pause(pg, event):
                    self.close()
                    return None
                action = key_action(pg, event, len(clips)) if event.type == pg.KEYDOWN else None
                if action is None:
                    continue
                if action[0] == "replay":
                    start = self.clock()
                else:
                    answer = self._apply(*action)
                    if answer is not None:
                        self.last_answer, self.entry = answer, None
                        return answer
                shown = -1  # draw the new ranks (or the restarted clips) at once

    def wait(self, message: str, seconds: float) -> bool:
        """Show ``message`` for ``seconds`` while reading keys.

        Returns:
            ``False`` if the labeler paused (Esc or closed the window, which is then closed),
            else ``True``.
        """
        shape, n_clips = self._layout_key or ((210, 160), 2)
        self._ensure_open([shape] * n_clips)
        pg = self.pg
        self.query = self.entry = None
        end = self.clock() + seconds
        self.show_message(message, hint="Esc: stop labeling")
        while self.clock() < end:
            if self.on_frame is not None:
                self.on_frame(self)
            for event in self._events(until=end):
                if _is_pause(pg, event):
                    self.close()
                    return False
        return True

    def show_message(self, message: str, *, hint: str = "") -> None:
        """Replace the window's content by ``message`` and a ``hint`` line (no-op if closed)."""
        if self.screen is None:
            return
        screen = self.screen
        screen.fill(_BACKGROUND)
        text = self._font(30).render(message, True, _TEXT)
        screen.blit(text, text.get_rect(center=screen.get_rect().center))
        if hint:
            line = self._font(24).render(hint, True, _DIM_TEXT)
            screen.blit(
                line, line.get_rect(midbottom=(screen.get_width() // 2, screen.get_height() - MARGIN))
            )
        self.pg.display.flip()

    def close(self) -> None:
        """Close the window (a later :meth:`ask` reopens it)."""
        self.query = self.entry = None
        if self.screen is not None:
            self.screen = None
            self.clip_rects = None
            self._fonts.clear()
            self.pg.display.quit()

    # -- internals ---------------------------------------------------------------------------------

    def _apply(self, action: str, position: int) -> Answer | None:
        """Apply one key's action to the ranking on screen; the answer once it is complete."""
        assert self.entry is not None
        if action == "skip":
            return Preference.SKIP
        if action == "rest":
            return self.entry.rest_equal()
        if action == "undo":
            self.entry.undo()
        elif action == "tie":
            self.entry.tie()
        else:
            return self.entry.place(position)
        return None

    def _events(self, until: float) -> list[Any]:
        """Events that arrive before time ``until`` (at most :data:`MAX_WAIT` s from now).

        Returns as soon as there is one, so a key press is seen at once, not at the next frame.
        """
        timeout = min(until - self.clock(), MAX_WAIT)
        if self.event_source is not None:
            if timeout > 0:
                time.sleep(timeout)
            return list(self.event_source())
        pg = self.pg
        if timeout <= 0:
            return pg.event.get()
        first = pg.event.wait(max(1, round(timeout * 1000)))
        return [] if first.type == pg.NOEVENT else [first, *pg.event.get()]

    def _font(self, size: int) -> pygame.font.Font:
        if size not in self._fonts:
            self._fonts[size] = self.pg.font.Font(None, size)
        return self._fonts[size]

    def _ensure_open(self, shapes: Sequence[tuple[int, int]]) -> None:
        """Open (or resize) the window for clips of these ``(height, width)`` shapes."""
        largest = (max(shape[0] for shape in shapes), max(shape[1] for shape in shapes))
        key = (largest, len(shapes))
        if self.screen is not None and key == self._layout_key:
            return
        pg = self.pg
        pg.display.init()
        pg.font.init()
        desktops = pg.display.get_desktop_sizes()
        layout = grid_layout(
            largest,
            len(shapes),
            scale=self.scale,
            window_size=self.window_size,
            screen_size=desktops[0] if desktops else None,
        )
        self.screen = pg.display.set_mode(layout.window)
        pg.display.set_caption(self.title)
        self._layout_key = key
        self.clip_rects = tuple(pg.Rect(*rect) for rect in layout.clips)

    def _draw_query(self, clips: Sequence[np.ndarray], period: int, progress: str) -> None:
        pg, screen, entry = self.pg, self.screen, self.entry
        assert screen is not None and self.clip_rects is not None and entry is not None
        pair = len(clips) == 2
        screen.fill(_BACKGROUND)
        title = "Which clip is better?" if pair else "Rank the clips: press the best one's number first"
        screen.blit(self._font(34).render(title, True, _TEXT), (MARGIN, 14))
        screen.blit(self._font(24).render(progress, True, _DIM_TEXT), (MARGIN, 48))
        right = screen.get_width() - MARGIN
        if self.last_answer is not None:
            last = self._font(24).render(f"last answer: {answer_text(self.last_answer)}", True, _DIM_TEXT)
            screen.blit(last, last.get_rect(topright=(right, 48)))
        if entry.notice or entry.groups:
            text = entry.notice or f"so far: {entry.text()}"
            line = self._font(28).render(text, True, _NOTICE if entry.notice else _RANK_COLOUR)
            screen.blit(line, line.get_rect(topright=(right, 16)))
        for index, (frames, rect) in enumerate(zip(clips, self.clip_rects, strict=True)):
            colour = _CLIP_COLOURS[index]
            name = ("LEFT", "RIGHT")[index] if pair else str(index + 1)
            tag = pg.Rect(rect.left, rect.top - TAG_H, 120 if pair else 48, TAG_H - 6)
            if pair:
                tag.centerx = rect.centerx
            pg.draw.rect(screen, colour, tag, border_radius=6)
            text = self._font(28 if pair else 32).render(name, True, (255, 255, 255))
            screen.blit(text, text.get_rect(center=tag.center))
            self._draw_rank(index, tag)
            frame = np.ascontiguousarray(frames[min(self.frame_index, len(frames) - 1)])
            image = pg.image.frombuffer(frame.tobytes(), (frame.shape[1], frame.shape[0]), "RGB")
            fit = frame.shape[1] * rect.height != frame.shape[0] * rect.width or rect.width < frame.shape[1]
            resize = pg.transform.smoothscale if fit else pg.transform.scale  # nearest for integer zoom
            screen.blit(resize(image, rect.size), rect)
            pg.draw.rect(screen, colour, rect.inflate(4, 4), width=2)
            bar = pg.Rect(rect.left, rect.bottom + 4, rect.width * (self.frame_index + 1) // period, 8)
            pg.draw.rect(screen, colour, bar)
        self._draw_keys(screen.get_height() - FOOTER_H, len(clips))
        pg.display.flip()

    def _draw_rank(self, index: int, tag: pygame.Rect) -> None:
        """The rank clip ``index`` got so far (e.g. ``2nd (tie)``), right of its number tag."""
        assert self.entry is not None and self.screen is not None
        rank = self.entry.rank_of(index)
        if rank is None:
            return
        text = ordinal(rank + 1) + (" (tie)" if self.entry.is_tied(index) else "")
        label = self._font(28).render(text, True, _BACKGROUND)
        badge = label.get_rect(midleft=(tag.right + 10, tag.centery)).inflate(16, 4)
        self.pg.draw.rect(self.screen, _RANK_COLOUR, badge, border_radius=6)
        self.screen.blit(label, label.get_rect(center=badge.center))

    def _draw_keys(self, top: int, n_clips: int) -> None:
        """Draw the key help: two rows of key caps with what each key does."""
        pg, screen = self.pg, self.screen
        rows = key_help(n_clips)
        font = self._font(24)
        for row_index, row in enumerate(rows):
            x, y = MARGIN, top + 10 + row_index * 40
            for cap, text in row:
                width = 34 if cap in ARROWS else max(font.size(cap)[0] + 16, 30)
                rect = pg.Rect(x, y, width, 30)
                pg.draw.rect(screen, _KEYCAP, rect, border_radius=5)
                if cap in ARROWS:
                    cx, cy = rect.center
                    points = [(cx + 9 * px, cy + 9 * py) for px, py in ARROWS[cap]]
                    pg.draw.polygon(screen, _TEXT, points)
                else:
                    label = font.render(cap, True, _TEXT)
                    screen.blit(label, label.get_rect(center=rect.center))
                x = rect.right + 8
                label = font.render(text, True, _TEXT)
                screen.blit(label, label.get_rect(midleft=(x, rect.centery)))
                x += label.get_width() + (8 if text in ("/", "-") else 28)


def _is_pause(pg: Any, event: Any) -> bool:
    """Esc, or the window's close button."""
    return event.type == pg.QUIT or (event.type == pg.KEYDOWN and event.key == pg.K_ESCAPE)
