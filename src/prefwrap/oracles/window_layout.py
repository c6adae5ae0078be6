"""Where the labeling window draws a query's ``K`` clips: a grid, its scale and the window's size.

Pure geometry (no pygame), so that the layout of every ``K`` can be checked without a screen.
A pair keeps the window's original layout: two clips side by side, each at least
:data:`MIN_CLIP_WIDTH` px wide. More clips go into a grid, each at least :data:`MIN_GRID_CLIP_WIDTH`
px wide and shrunk until the window fits the screen; of the grids of 1, 2, ... rows the one that
shows the clips largest is used (:func:`grid_shape` when the screen is not known or all fit: three
in a row, four as 2 x 2, five and six as 2 rows of 3). A short last row is centred.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["MIN_CLIP_WIDTH", "MIN_GRID_CLIP_WIDTH", "GridLayout", "grid_layout", "grid_shape"]

MIN_CLIP_WIDTH = 400
"""Small frames of a pair are scaled up by an integer factor until each clip is at least this wide (px)."""

MIN_GRID_CLIP_WIDTH = 320
"""The same for a grid of three or more clips, which must fit a screen together."""

MARGIN = 20
HEADER_H = 76
TAG_H = 34
BAR_H = 8
FOOTER_H = 92
MIN_WINDOW_W = 900  # room for the key help
_SCREEN_USE = 0.92  # of the desktop: leave room for the title bar and a panel


@dataclass(frozen=True)
class GridLayout:
    """Where each clip goes.

    Attributes:
        window: ``(width, height)`` of the window in px.
        clips: ``(x, y, width, height)`` of each clip's picture, in display order.
        scale: Magnification of the frames (an integer unless the clips were fitted to a size).
    """

    window: tuple[int, int]
    clips: tuple[tuple[int, int, int, int], ...]
    scale: float


def grid_shape(n_clips: int) -> tuple[int, int]:
    """``(rows, columns)`` of the grid for ``n_clips`` clips: one row up to three, then two rows.

    Raises:
        ValueError: ``n_clips`` is below 2.
    """
    if n_clips < 2:
        raise ValueError(f"a query shows at least 2 clips, got {n_clips}")
    columns = n_clips if n_clips <= 3 else math.ceil(n_clips / 2)
    return math.ceil(n_clips / columns), columns


def grid_layout(
    frame_shape: tuple[int, int],
    n_clips: int,
    *,
    scale: int | None = None,
    window_size: tuple[int, int] | None = None,
    screen_size: tuple[int, int] | None = None,
) -> GridLayout:
    """Lay out ``n_clips`` clips of frames up to ``frame_shape = (height, width)`` px.

    Args:
        frame_shape: The largest ``(height, width)`` of the query's frames.
        n_clips: ``K``.
        scale: A forced integer magnification; ``None`` picks one (see the module docstring).
        window_size: ``(width, height)`` to fit the clips into (any scale); overrides ``scale``.
        screen_size: The desktop's ``(width, height)``; a grid of three or more clips with no
            ``scale`` or ``window_size`` is shrunk to fit it, in the grid shape that shows the clips
            largest. ``None``: not known, not shrunk.

    Returns:
        The layout; clips never overlap and lie inside the window.

    Raises:
        ValueError: ``n_clips`` is below 2.
    """
    rows, columns = grid_shape(n_clips)
    height, width = frame_shape
    minimum = MIN_CLIP_WIDTH if n_clips == 2 else MIN_GRID_CLIP_WIDTH
    chosen = math.inf if window_size is not None else float(scale or max(1, math.ceil(minimum / width)))
    room = window_size
    if room is None and scale is None and n_clips > 2 and screen_size is not None:
        room = (round(screen_size[0] * _SCREEN_USE), round(screen_size[1] * _SCREEN_USE))
    if room is not None:
        if (
            n_clips > 2
        ):  # the shape that shows the clips largest: a row of 4 tall Atari frames, 2 x 2 wide ones
            shapes = [(rows, columns), *((math.ceil(n_clips / c), c) for c in range(2, n_clips + 1))]
            rows, columns = max(shapes, key=lambda shape: min(chosen, _fit(room, *shape, width, height)))
        chosen = min(chosen, _fit(room, rows, columns, width, height))
    clip_w, clip_h = round(width * chosen), round(height * chosen)
    if window_size is not None:
        win_w, win_h = window_size
    else:
        win_w = max(columns * clip_w + (columns + 1) * MARGIN, MIN_WINDOW_W)
        win_h = _chrome_height(rows) + rows * clip_h
    gap = (win_w - columns * clip_w) // (columns + 1)
    clips = []
    for index in range(n_clips):
        row, column = divmod(index, columns)
        in_row = min(columns, n_clips - row * columns)
        indent = (columns - in_row) * (clip_w + gap) // 2  # centre a short last row
        x = gap + column * (clip_w + gap) + indent
        y = HEADER_H + TAG_H + MARGIN + row * (TAG_H + clip_h + BAR_H + MARGIN)
        clips.append((x, y, clip_w, clip_h))
    return GridLayout((win_w, win_h), tuple(clips), chosen)


def _chrome_height(rows: int) -> int:
    """Height of everything but the pictures: header, tags, progress bars, gaps and key help."""
    return HEADER_H + FOOTER_H + 2 * MARGIN + rows * (TAG_H + BAR_H) + (rows - 1) * MARGIN


def _fit(size: tuple[int, int], rows: int, columns: int, width: int, height: int) -> float:
    """The largest scale at which the grid fits ``size = (width, height)`` (at least 0.05)."""
    room_w = (size[0] - (columns + 1) * MARGIN) / columns
    room_h = (size[1] - _chrome_height(rows)) / rows
    return max(min(room_w / width, room_h / height), 0.05)
