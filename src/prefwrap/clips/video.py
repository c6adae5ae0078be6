"""Writing frames as video, and :class:`SmallRender` for clip-sized renders.

:class:`VideoWriter` is prefwrap's one video writer: the CLI's evaluation videos and the clips
:func:`~prefwrap.oracles.export.export_queries` writes for annotation tools both go through it. MP4 is
H.264 through imageio-ffmpeg; GIF is the fallback when ffmpeg is unavailable, or the format asked for.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np

logger = logging.getLogger(__name__)


class VideoWriter:
    """Streams RGB frames to ``<stem>.mp4`` (or ``<stem>.gif``); an MP4 that fails becomes a GIF.

    MP4 frames are written as they arrive (long MuJoCo episodes do not sit in memory); a GIF keeps
    every ``gif_stride``-th frame in memory until :meth:`close`. H.264 with yuv420p needs even sizes,
    so odd heights and widths get one black row or column rather than an ffmpeg resize.

    Args:
        stem: Output path without suffix, e.g. ``run/videos/policy``.
        fps: Playback frame rate.
        fmt: ``"mp4"`` (a GIF if encoding fails: see :attr:`path`) or ``"gif"`` (looping).
        gif_stride: Keep one frame in this many in a GIF (GIFs get large fast); 1 keeps all.

    Attributes:
        path: The file written, set by :meth:`close` (``None`` before, or when no frame was added).
        n_frames: Frames added so far.

    Raises:
        ValueError: ``fps`` is not positive or ``fmt`` is not ``"mp4"`` or ``"gif"``.

    Example:
        >>> import tempfile, pathlib
        >>> with VideoWriter(pathlib.Path(tempfile.mkdtemp()) / "clip", fps=10) as video:
        ...     for t in range(5):
        ...         video.add(np.full((32, 32, 3), 50 * t, np.uint8))
        >>> video.path.suffix in (".mp4", ".gif")
        True
    """

    def __init__(
        self, stem: str | Path, fps: float, *, fmt: Literal["mp4", "gif"] = "mp4", gif_stride: int = 2
    ) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        if fmt not in ("mp4", "gif"):
            raise ValueError(f"fmt must be 'mp4' or 'gif', got {fmt!r}")
        self.stem = Path(stem)
        self.fps = float(fps)
        self.fmt = fmt
        self.gif_stride = max(1, int(gif_stride))
        self.path: Path | None = None
        self.n_frames = 0
        self._writer: Any = None
        self._gif_frames: list[np.ndarray] | None = None

    def add(self, frame: np.ndarray) -> None:
        """Append one ``(height, width, 3)`` uint8 frame (a 4th, alpha channel is dropped)."""
        frame = np.asarray(frame, dtype=np.uint8)[..., :3]
        if self._writer is None and self._gif_frames is None:
            self._open()
        if self._writer is not None:
            try:
                self._writer.append_data(_even(frame))
            except Exception as error:  # any encoder failure: fall back to a GIF
                logger.warning("MP4 encoding failed (%s); writing a GIF instead", error)
                self._close_mp4(delete=True)
                self._gif_frames = []
        if self._gif_frames is not None and self.n_frames % self.gif_stride == 0:
            self._gif_frames.append(frame)
        self.n_frames += 1

    def close(self) -> Path | None:
        """Finish the file; returns its path, or ``None`` if no frame was added or the MP4 failed."""
        if self._writer is not None:
            if self._close_mp4(delete=False):
                self.path = self.stem.with_suffix(".mp4")
        elif self._gif_frames:
            import imageio.v2 as imageio

            self.path = self.stem.with_suffix(".gif")
            duration_ms = 1000.0 * self.gif_stride / self.fps
            imageio.mimsave(self.path, self._gif_frames, duration=duration_ms, loop=0)
            self._gif_frames = None
        return self.path

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> None:
        self.stem.parent.mkdir(parents=True, exist_ok=True)
        if self.fmt == "gif":
            self._gif_frames = []
            return
        try:
            import imageio.v2 as imageio

            self._writer = imageio.get_writer(
                self.stem.with_suffix(".mp4"),
                fps=self.fps,
                codec="libx264",
                macro_block_size=2,
                quality=7,
                pixelformat="yuv420p",
            )
        except Exception as error:  # no ffmpeg backend: fall back to a GIF
            logger.warning("cannot write MP4 (%s); writing a GIF instead", error)
            self._writer = None
            self._gif_frames = []

    def _close_mp4(self, *, delete: bool) -> bool:
        """Finish (or ``delete``) the MP4; False when finishing failed and the broken file was deleted."""
        try:
            self._writer.close()
        except Exception as error:  # a truncated MP4 is worse than none
            logger.warning("MP4 encoding failed (%s); no video written", error)
            delete = True
        self._writer = None
        if delete:
            self.stem.with_suffix(".mp4").unlink(missing_ok=True)
        return not delete


def _even(frame: np.ndarray) -> np.ndarray:
    """Pad odd heights/widths of a ``(height, width, 3)`` frame by one black row/column."""
    height, width = frame.shape[:2]
    if height % 2 == 0 and width % 2 == 0:
        return frame
    return np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)))


class SmallRender(gym.Wrapper):
    """Makes ``render()`` return frames of at most ``max_side`` pixels (integer subsampling).

    A labeler judges a 1.5 s clip as well at 250 px as at 500, and a run that keeps clips for labelers
    holds thousands of frames in memory: Pendulum's 500x500 renders shrink to 250x250, a quarter.

    Args:
        env: The env, created with ``render_mode="rgb_array"``.
        max_side: Largest height or width of the returned frames.

    Raises:
        ValueError: ``max_side`` is below 1.
    """

    def __init__(self, env: gym.Env, max_side: int = 256) -> None:
        super().__init__(env)
        if max_side < 1:
            raise ValueError(f"max_side must be >= 1, got {max_side}")
        self.max_side = max_side

    def render(self) -> Any:
        frame = self.env.render()
        if not isinstance(frame, np.ndarray) or frame.ndim != 3:
            return frame
        step = math.ceil(max(frame.shape[:2]) / self.max_side)
        return frame[::step, ::step] if step > 1 else frame
