"""The pygame window a human labels in: two clips side by side, looping in sync, read by keys.

:class:`LabelingWindow` knows nothing about training or stores; :mod:`prefwrap.oracles.human` drives
it. pygame is imported only when a window is created, so ``import prefwrap`` works without it.

Keys: left arrow = LEFT is better, right arrow = RIGHT, up or space = EQUAL, down = SKIP (can't
tell), ``r`` = replay both clips from the start, Esc or closing the window = pause.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from prefwrap.clips.frames import clip_frames
from prefwrap.records import Preference, Query

if TYPE_CHECKING:
    import pygame

MIN_CLIP_WIDTH = 400
"""Small frames are scaled up by an integer factor until each clip is at least this wide (px)."""

MAX_WAIT = 0.1
"""Longest wait for events (s) before ``on_frame`` runs again, even between slow frames."""

_MARGIN = 20
_HEADER_H = 76
_TAG_H = 34
_BAR_H = 8
_FOOTER_H = 92
_MIN_WINDOW_W = 900

_BACKGROUND = (28, 28, 32)
_TEXT = (235, 235, 235)
_DIM_TEXT = (160, 160, 170)
_LEFT_COLOUR = (52, 120, 230)
_RIGHT_COLOUR = (230, 120, 40)
_KEYCAP = (70, 70, 80)

_ANSWER_TEXT = {
    Preference.LEFT: "LEFT is better",
    Preference.RIGHT: "RIGHT is better",
    Preference.EQUAL: "EQUAL",
    Preference.SKIP: "SKIP (can't tell)",
}


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
    """A pygame window that shows a query's two clips side by side and returns the labeler's answer.

    Each clip is :func:`~prefwrap.clips.frames.clip_frames` of its segment.

    The window opens on the first :meth:`ask` and is sized to the clips: frames are scaled up by an
    integer factor so that each clip is at least :data:`MIN_CLIP_WIDTH` px wide, unless ``scale``
    or ``window_size`` say otherwise. Both clips loop in sync at ``fps``; a shorter clip holds its
    last frame until the longer one restarts.

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
        clip_rects: Where the LEFT and RIGHT clips are drawn on ``screen``.
        query: The query on screen (``None`` on a message screen or when closed).
        frame_index: The frame both clips show, in ``[0, max(left length, right length))``.
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
        self.pg = pg = import_pygame()
        self.fps = float(fps)
        self.scale = scale
        self.window_size = window_size
        self.title = title
        self.event_source = event_source
        self.clock = clock
        self.on_frame = on_frame
        self.screen: pygame.Surface | None = None
        self.clip_rects: tuple[pygame.Rect, pygame.Rect] | None = None
        self.query: Query | None = None
        self.frame_index = 0
        self.last_answer: Preference | None = None
        self._frame_shape: tuple[int, int] | None = None
        self._fonts: dict[int, pygame.font.Font] = {}
        self._key_answers = {
            pg.K_LEFT: Preference.LEFT,
            pg.K_RIGHT: Preference.RIGHT,
            pg.K_UP: Preference.EQUAL,
            pg.K_SPACE: Preference.EQUAL,
            pg.K_DOWN: Preference.SKIP,
        }

    @property
    def is_open(self) -> bool:
        """Whether the window is currently shown."""
        return self.screen is not None

    def ask(self, query: Query, *, progress: str = "") -> Preference | None:
        """Show ``query`` until the labeler answers.

        Args:
            query: The two segments to compare.
            progress: One line of progress shown under the title.

        Returns:
            The answer, or ``None`` if the labeler paused (Esc or closed the window); the window is
            then closed, and the next call opens it again.

        Raises:
            ValueError: A segment cannot be shown (see :func:`~prefwrap.clips.frames.clip_frames`).
        """
        left = clip_frames(query.left, query_id=query.query_id)
        right = clip_frames(query.right, query_id=query.query_id)
        self._ensure_open(left.shape[1:3], right.shape[1:3])
        pg = self.pg
        if self.event_source is None:
            pg.event.clear((pg.KEYDOWN, pg.KEYUP))  # keys typed before this clip was visible
        period = max(len(left), len(right))
        self.query, self.frame_index = query, 0
        start, shown = self.clock(), -1
        while True:
            position = int((self.clock() - start) * self.fps)
            self.frame_index = position % period
            if self.frame_index != shown:
                shown = self.frame_index
                self._draw_query(left, right, period, progress)
            if self.on_frame is not None:
                self.on_frame(self)
            for event in self._events(until=start + (position + 1) / self.fps):
                if _is_pause(pg, event):
                    self.close()
                    return None
                if event.type != pg.KEYDOWN:
                    continue
                if event.key == pg.K_r:
                    start, shown = self.clock(), -1
                    continue
                answer = self._key_answers.get(event.key)
                if answer is not None:
                    self.last_answer = answer
                    return answer

    def wait(self, message: str, seconds: float) -> bool:
        """Show ``message`` for ``seconds`` while reading keys.

        Returns:
            ``False`` if the labeler paused (Esc or closed the window, which is then closed),
            else ``True``.
        """
        self._ensure_open(self._frame_shape or (210, 160), self._frame_shape or (210, 160))
        pg = self.pg
        self.query = None
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
                line, line.get_rect(midbottom=(screen.get_width() // 2, screen.get_height() - _MARGIN))
            )
        self.pg.display.flip()

    def close(self) -> None:
        """Close the window (a later :meth:`ask` reopens it)."""
        self.query = None
        if self.screen is not None:
            self.screen = None
            self.clip_rects = None
            self._fonts.clear()
            self.pg.display.quit()

    # -- internals ---------------------------------------------------------------------------------

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

    def _ensure_open(self, left_shape: tuple[int, int], right_shape: tuple[int, int]) -> None:
        """Open (or resize) the window for clips of ``(height, width)`` shapes."""
        frame_shape = (max(left_shape[0], right_shape[0]), max(left_shape[1], right_shape[1]))
        if self.screen is not None and frame_shape == self._frame_shape:
            return
        pg = self.pg
        height, width = frame_shape
        if self.window_size is not None:
            win_w, win_h = self.window_size
            room_w = (win_w - 3 * _MARGIN) / 2
            room_h = win_h - _HEADER_H - _TAG_H - _BAR_H - _FOOTER_H - 2 * _MARGIN
            scale: float = max(min(room_w / width, room_h / height), 0.05)
        else:
            scale = self.scale or max(1, math.ceil(MIN_CLIP_WIDTH / width))
        clip_w, clip_h = round(width * scale), round(height * scale)
        if self.window_size is None:
            win_w = max(2 * clip_w + 3 * _MARGIN, _MIN_WINDOW_W)
            win_h = _HEADER_H + _TAG_H + clip_h + _BAR_H + _FOOTER_H + 2 * _MARGIN
        pg.display.init()
        pg.font.init()
        self.screen = pg.display.set_mode((win_w, win_h))
        pg.display.set_caption(self.title)
        self._frame_shape = frame_shape
        top = _HEADER_H + _TAG_H + _MARGIN
        gap = (win_w - 2 * clip_w) // 3
        self.clip_rects = (
            pg.Rect(gap, top, clip_w, clip_h),
            pg.Rect(2 * gap + clip_w, top, clip_w, clip_h),
        )

    def _draw_query(self, left: np.ndarray, right: np.ndarray, period: int, progress: str) -> None:
        pg, screen = self.pg, self.screen
        assert screen is not None and self.clip_rects is not None
        screen.fill(_BACKGROUND)
        screen.blit(self._font(34).render("Which clip is better?", True, _TEXT), (_MARGIN, 14))
        screen.blit(self._font(24).render(progress, True, _DIM_TEXT), (_MARGIN, 48))
        if self.last_answer is not None:
            last = self._font(24).render(f"last answer: {_ANSWER_TEXT[self.last_answer]}", True, _DIM_TEXT)
            screen.blit(last, last.get_rect(topright=(screen.get_width() - _MARGIN, 48)))
        for frames, rect, name, colour in (
            (left, self.clip_rects[0], "LEFT", _LEFT_COLOUR),
            (right, self.clip_rects[1], "RIGHT", _RIGHT_COLOUR),
        ):
            tag = pg.Rect(0, 0, 120, _TAG_H - 6)
            tag.midbottom = (rect.centerx, rect.top - 6)
            pg.draw.rect(screen, colour, tag, border_radius=6)
            text = self._font(28).render(name, True, (255, 255, 255))
            screen.blit(text, text.get_rect(center=tag.center))
            frame = np.ascontiguousarray(frames[min(self.frame_index, len(frames) - 1)])
            image = pg.image.frombuffer(frame.tobytes(), (frame.shape[1], frame.shape[0]), "RGB")
            fit = frame.shape[1] * rect.height != frame.shape[0] * rect.width or rect.width < frame.shape[1]
            resize = pg.transform.smoothscale if fit else pg.transform.scale  # nearest for integer zoom
            screen.blit(resize(image, rect.size), rect)
            pg.draw.rect(screen, colour, rect.inflate(4, 4), width=2)
            bar = pg.Rect(rect.left, rect.bottom + 4, rect.width * (self.frame_index + 1) // period, _BAR_H)
            pg.draw.rect(screen, colour, bar)
        self._draw_keys(screen.get_height() - _FOOTER_H)
        pg.display.flip()

    def _draw_keys(self, top: int) -> None:
        """Draw the key help: two rows of key caps with what each key does."""
        pg, screen = self.pg, self.screen
        rows = (
            (("left", "LEFT is better"), ("right", "RIGHT is better"), ("up", "/"), ("Space", "EQUAL")),
            (("down", "SKIP (can't tell)"), ("R", "replay"), ("Esc", "pause / quit")),
        )
        font = self._font(24)
        for row_index, row in enumerate(rows):
            x, y = _MARGIN, top + 10 + row_index * 40
            for cap, text in row:
                width = 34 if cap in _ARROWS else font.size(cap)[0] + 16
                rect = pg.Rect(x, y, width, 30)
                pg.draw.rect(screen, _KEYCAP, rect, border_radius=5)
                if cap in _ARROWS:
                    cx, cy = rect.center
                    points = [(cx + 9 * px, cy + 9 * py) for px, py in _ARROWS[cap]]
                    pg.draw.polygon(screen, _TEXT, points)
                else:
                    label = font.render(cap, True, _TEXT)
                    screen.blit(label, label.get_rect(center=rect.center))
                x = rect.right + 8
                label = font.render(text, True, _TEXT)
                screen.blit(label, label.get_rect(midleft=(x, rect.centery)))
                x += label.get_width() + (8 if text == "/" else 28)


def _is_pause(pg: Any, event: Any) -> bool:
    """Esc, or the window's close button."""
    return event.type == pg.QUIT or (event.type == pg.KEYDOWN and event.key == pg.K_ESCAPE)


# Unit triangles (pointing left/right/up/down) drawn in the arrow key caps.
_ARROWS = {
    "left": ((-0.8, 0.0), (0.6, -0.7), (0.6, 0.7)),
    "right": ((0.8, 0.0), (-0.6, -0.7), (-0.6, 0.7)),
    "up": ((0.0, -0.8), (-0.7, 0.6), (0.7, 0.6)),
    "down": ((0.0, 0.8), (-0.7, -0.6), (0.7, -0.6)),
}
