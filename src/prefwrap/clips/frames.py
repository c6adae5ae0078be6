"""The one path from a recorded segment to the RGB frames a person sees.

The labelling window, the clip export and ``prefwrap label`` all call :func:`clip_frames`, so a
segment looks the same wherever it is shown. The rule, applied to the segment's valid steps
``0 .. length - 1`` (padding is never shown):

- **Source**: ``segment.frames`` (rendered pictures) when recorded, else the observations when they
  are uint8 images; anything else is refused with a hint to record frames.
- **dtype**: uint8 only. Float images are refused, not rescaled: whether they span [0, 1] or
  [0, 255] cannot be told from the array, and SB3 does not treat them as images either.
- **Rendered frames** are channel-last, as Gymnasium's ``rgb_array`` renders them: ``(T, h, w)`` or
  ``(T, h, w, 1)`` grayscale is repeated into 3 channels, ``(T, h, w, 3)`` is kept, ``(T, h, w, 4)``
  RGBA loses its alpha.
- **Image observations**: ``(T, h, w)`` is grayscale. For ``(T, c, h, w)`` or ``(T, h, w, c)`` the
  channel axis is decided by :func:`~prefwrap.env_utils.image_channels_first` (SB3's test, as the
  CNN reward model decides it); an ambiguous layout is refused. ``c`` a multiple of 3 shows the last
  3 channels (the newest RGB frame of a stack), any other ``c`` the last channel as grayscale (the
  newest frame of a grayscale stack): a 4-channel observation is read as Atari's 4 stacked
  grayscale frames, not as RGBA, because frame stacking is what makes 4-channel observations.
- **Zero-length segments** (``length < 1``) are refused: there is no valid step to show, and a clip
  of padding would mislead the labeler.
- **Output**: C-contiguous ``(length, height, width, 3)`` uint8 (it may share memory with the segment).
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from prefwrap.env_utils import image_channels_first
from prefwrap.records import Segment

_MISSING_FRAMES_HINT = (
    "a person has to see the clips: record rendered frames with "
    "PreferenceRewardWrapper(..., record_frames=True); only the newest frame_capacity segments keep "
    "theirs, so show or export queries soon after they are made"
)


def clip_frames(segment: Segment, *, query_id: int | None = None) -> np.ndarray:
    """The RGB frames a person sees for ``segment``'s valid steps (the rule is in the module docstring).

    Args:
        segment: The segment to show.
        query_id: The query it belongs to, named in error messages.

    Returns:
        Frames ``(segment.length, height, width, 3)``, uint8, C-contiguous.

    Raises:
        ValueError: The segment has no valid step; its frames are not uint8 ``(T, h, w[, 1|3|4])``
            with ``T >= length``; it has no frames and its observations are not uint8 images; or the
            channel axis of its image observations cannot be told.

    Example:
        >>> obs = np.zeros((5, 3, 4, 6), np.uint8)  # 5 steps of channel-first RGB, 4 x 6 pixels
        >>> segment = Segment(0, obs, np.zeros((5, 1)), np.zeros(5), length=2)
        >>> clip_frames(segment).shape  # the 2 valid steps, channel-last
        (2, 4, 6, 3)
    """
    where = f"segment {segment.segment_id}" + (f" of query {query_id}" if query_id is not None else "")
    length = int(segment.length)
    if length < 1:
        raise ValueError(f"{where} has length {length}: it has no valid step to show")
    if segment.frames is not None:
        return _rendered_rgb(np.asarray(segment.frames), length, where)
    return _observation_rgb(np.asarray(segment.observations), length, where)


def _rendered_rgb(frames: np.ndarray, length: int, where: str) -> np.ndarray:
    """RGB of rendered frames ``(T, h, w[, 1|3|4])``: channel-last, grayscale, RGB or RGBA."""
    channels = frames.shape[-1] if frames.ndim == 4 else 1
    if (
        frames.dtype != np.uint8
        or frames.ndim not in (3, 4)
        or channels not in (1, 3, 4)
        or len(frames) < length
    ):
        raise ValueError(
            f"{where}: frames must be uint8 of shape (H, height, width[, 1|3|4]) with H >= its length "
            f"{length}, got {frames.dtype} {frames.shape}"
        )
    frames = frames[:length]
    if frames.ndim == 3:
        frames = frames[..., None]
    return _as_rgb(frames[..., :3])  # RGBA: alpha says nothing a labeler needs


def _observation_rgb(observations: np.ndarray, length: int, where: str) -> np.ndarray:
    """RGB of image observations ``(T, h, w)``, ``(T, c, h, w)`` or ``(T, h, w, c)``: the newest frame."""
    if observations.dtype != np.uint8 or observations.ndim not in (3, 4):
        raise ValueError(
            f"{where} has no frames and its observations are not uint8 images "
            f"({observations.dtype} {observations.shape}): {_MISSING_FRAMES_HINT}"
        )
    images = observations[:length]
    if images.ndim == 3:
        images = images[..., None]
    else:
        try:
            channels_first = image_channels_first(spaces.Box(0, 255, images.shape[1:], np.uint8))
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from error
        if channels_first:  # (T, c, h, w), as VecTransposeImage makes for SB3's CNN policies
            images = images.transpose(0, 2, 3, 1)
    newest = images[..., -3:] if images.shape[-1] % 3 == 0 else images[..., -1:]
    return _as_rgb(newest)


def _as_rgb(images: np.ndarray) -> np.ndarray:
    """``(T, h, w, 1)`` grayscale or ``(T, h, w, 3)`` RGB as C-contiguous ``(T, h, w, 3)``."""
    if images.shape[-1] == 1:
        return np.repeat(images, 3, axis=-1)
    return np.ascontiguousarray(images)
