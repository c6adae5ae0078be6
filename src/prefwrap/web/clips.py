"""A query's clips as images a browser plays: one sprite sheet per clip, cached.

Why frames and not an MP4/WebM per clip: the page draws a query's clips (two, or up to six for a
ranking) on canvases from one clock, so they loop exactly in sync, frame by frame (``<video>``
elements drift apart after a few loops and restart at different moments); a replay or the next
query starts in the same animation frame, with no decoder to warm up; and any browser shows a PNG,
where H.264 support depends on how the browser was built. The frames are
:func:`~prefwrap.clips.frames.clip_frames` of each segment, the same the pygame window and the
exports show.

A sheet is a grid of ``columns`` frames per row, left to right then top to bottom. PNG (lossless:
thin lines of classic-control renders stay sharp) unless that is large, then JPEG.
"""

from __future__ import annotations

import io
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from prefwrap.clips.frames import clip_frames
from prefwrap.records import Query

__all__ = ["ClipCache", "SpriteSheet", "sprite_sheet"]

MAX_SHEET_SIDE = 8192
"""Widest sheet in px; browsers refuse images over 16384 px (some over 8192 on phones)."""

PNG_LIMIT = 3 * 2**20
"""A PNG sheet larger than this many bytes is sent as JPEG (quality 90) instead."""


@dataclass(frozen=True)
class SpriteSheet:
    """One clip as one image.

    Attributes:
        data: The encoded image.
        media_type: ``"image/png"`` or ``"image/jpeg"``.
        n_frames: Frames in the clip (the segment's valid steps).
        width: Width of one frame in px.
        height: Height of one frame in px.
        columns: Frames per row of the sheet.
    """

    data: bytes
    media_type: str
    n_frames: int
    width: int
    height: int
    columns: int


def sprite_sheet(frames: np.ndarray) -> SpriteSheet:
    """Lay out ``(T, height, width, 3)`` uint8 frames as a grid and encode it.

    Raises:
        ValueError: ``frames`` is not ``(T >= 1, height, width, 3)`` uint8.
    """
    from PIL import Image  # imported here: only the web page needs Pillow at run time

    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) < 1:
        raise ValueError(
            f"frames must be uint8 (T >= 1, height, width, 3), got {frames.dtype} {frames.shape}"
        )
    n_frames, height, width, _ = frames.shape
    columns = max(1, min(n_frames, MAX_SHEET_SIDE // width))
    rows = math.ceil(n_frames / columns)
    grid = np.zeros((rows * columns, height, width, 3), np.uint8)
    grid[:n_frames] = frames
    sheet = (
        grid.reshape(rows, columns, height, width, 3).transpose(0, 2, 1, 3, 4).reshape(rows * height, -1, 3)
    )
    image = Image.fromarray(sheet)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)  # level 1: ~5x faster than 6, ~10 % larger
    media_type = "image/png"
    if buffer.tell() > PNG_LIMIT:  # large photo-like renders (MuJoCo): JPEG is ~10x smaller
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        media_type = "image/jpeg"
    return SpriteSheet(buffer.getvalue(), media_type, n_frames, width, height, columns)


class ClipCache:
    """The sprite sheets of recently asked queries, least recently used dropped first.

    Thread-safe: the server encodes in worker threads while the store thread loads queries.

    Args:
        max_bytes: Bound on the cached images' total size.

    Raises:
        ValueError: ``max_bytes`` is not positive.
    """

    def __init__(self, max_bytes: int = 256 * 2**20) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self._sheets: OrderedDict[int, tuple[SpriteSheet, ...]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, query_id: int) -> tuple[SpriteSheet, ...] | None:
        """The cached sheets of a query, one per segment in display order, or ``None``."""
        with self._lock:
            sheets = self._sheets.get(query_id)
            if sheets is not None:
                self._sheets.move_to_end(query_id)
            return sheets

    def put(self, query: Query) -> tuple[SpriteSheet, ...]:
        """Encode (once) and cache the clips of a query loaded with its frames, in display order.

        Raises:
            ValueError: A segment cannot be shown (see :func:`~prefwrap.clips.frames.clip_frames`).
        """
        cached = self.get(query.query_id)
        if cached is not None:
            return cached
        sheets = tuple(sprite_sheet(clip_frames(s, query_id=query.query_id)) for s in query.segments)
        with self._lock:
            self._sheets[query.query_id] = sheets
            while len(self._sheets) > 1 and self._size() > self.max_bytes:
                self._sheets.popitem(last=False)
        return sheets

    def _size(self) -> int:
        return sum(len(sheet.data) for sheets in self._sheets.values() for sheet in sheets)
