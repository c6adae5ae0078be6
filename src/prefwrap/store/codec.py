"""Segments to table rows and back: arrays as ``.npy`` bytes, frames zlib-compressed, never pickled.

Example:
    >>> import numpy as np
    >>> blob = encode_array(np.arange(3, dtype=np.int16), "example")
    >>> blob[:6], decode_array(blob, "example")
    (b'\\x93NUMPY', array([0, 1, 2], dtype=int16))
"""

from __future__ import annotations

import io
import operator
import zlib
from dataclasses import dataclass

import numpy as np

from prefwrap.records import Segment
from prefwrap.store.errors import StoreError

__all__ = ["SegmentRow", "decode_array", "decode_frames", "encode_array", "encode_segment"]

_SEGMENT_ARRAYS = ("observations", "actions", "true_rewards")
_FRAMES_ZLIB_LEVEL = 1  # 11x smaller MuJoCo clips at ~20 ms per 30-frame clip; higher levels gain ~3 %
_NPY_MAGIC = b"\x93NUMPY"


@dataclass(frozen=True)
class SegmentRow:
    """A segment encoded for the ``segments`` and ``segment_frames`` tables.

    Attributes:
        segment_id: The ``segments.segment_id`` key.
        core: ``(length, env_index, timestep, observations, actions, true_rewards, terminated)``: the
            other ``segments`` columns in table order, the three arrays as ``.npy`` bytes.
        frames: ``segment_frames.frames`` (zlib-compressed ``.npy``), or ``None`` without frames.
    """

    segment_id: int
    core: tuple[int, int, int, bytes, bytes, bytes, int]
    frames: bytes | None


def encode_segment(segment: Segment) -> SegmentRow:
    """Validate a segment and turn its arrays into ``.npy`` bytes.

    Raises:
        ValueError: The three arrays do not share their first dimension (the horizon ``H``),
            ``length`` is outside ``[0, H]``, or an array holds Python objects.
        TypeError: An id, ``length``, ``env_index`` or ``timestep`` is not an integer.
    """
    segment_id = operator.index(segment.segment_id)
    arrays = [np.asarray(getattr(segment, name)) for name in _SEGMENT_ARRAYS]
    horizons = {name: a.shape[0] if a.ndim else None for name, a in zip(_SEGMENT_ARRAYS, arrays, strict=True)}
    if None in horizons.values() or len(set(horizons.values())) != 1:
        raise ValueError(
            f"segment {segment_id}: arrays must share their first dimension (the horizon), got {horizons}"
        )
    horizon = arrays[2].shape[0]
    length = operator.index(segment.length)
    if not 0 <= length <= horizon:
        raise ValueError(f"segment {segment_id}: length must be in [0, {horizon}], got {length}")
    named = zip(_SEGMENT_ARRAYS, arrays, strict=True)
    blobs = [encode_array(array, f"segment {segment_id} {name}") for name, array in named]
    frames = None
    if segment.frames is not None:
        npy = encode_array(segment.frames, f"segment {segment_id} frames")
        frames = zlib.compress(npy, _FRAMES_ZLIB_LEVEL)
    env_index, timestep = operator.index(segment.env_index), operator.index(segment.timestep)
    core = (length, env_index, timestep, blobs[0], blobs[1], blobs[2], int(bool(segment.terminated)))
    return SegmentRow(segment_id, core, frames)


def encode_array(array: np.ndarray, what: str) -> bytes:
    """``.npy`` bytes of a plain array (dtype and shape kept exactly).

    Args:
        array: Any array-like of a numeric, bool or string dtype.
        what: Names the array in the error message, e.g. ``"segment 3 observations"``.

    Raises:
        ValueError: The array holds Python objects: storing it would need pickle.
    """
    array = np.asarray(array)
    if array.dtype.hasobject:
        raise ValueError(
            f"{what} has dtype {array.dtype}, which holds Python objects; the preference store keeps "
            "only plain numeric arrays and never pickles (convert it, e.g. with .astype(np.float32))"
        )
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def decode_array(blob: bytes, what: str) -> np.ndarray:
    """The array in ``.npy`` bytes, refusing anything that would need unpickling.

    Args:
        blob: ``.npy`` bytes, as :func:`encode_array` writes them.
        what: Names the stored column in the error message.

    Raises:
        StoreError: ``blob`` is not a plain ``.npy`` array.
    """
    try:
        array = np.load(io.BytesIO(blob), allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise StoreError(f"{what} is not a plain .npy array (the store never unpickles): {error}") from error
    if not isinstance(array, np.ndarray):
        raise StoreError(f"{what} is not a .npy array (found {type(array).__name__})")
    return array


def decode_frames(blob: bytes, what: str) -> np.ndarray:
    """Frames, shape ``(H, height, width, 3)`` uint8, from zlib-compressed ``.npy`` bytes.

    Raw ``.npy`` bytes (as schema version 1 wrote them) are read as they are.

    Raises:
        StoreError: ``blob`` is neither zlib-compressed nor plain ``.npy``.
    """
    if not blob.startswith(_NPY_MAGIC):
        try:
            blob = zlib.decompress(blob)
        except zlib.error as error:
            raise StoreError(f"{what} is neither zlib-compressed nor plain .npy: {error}") from error
    return decode_array(blob, what)
