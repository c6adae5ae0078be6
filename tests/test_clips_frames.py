"""Tests of the one segment -> frames path (:func:`prefwrap.clips.frames.clip_frames`), rule by rule."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from prefwrap.clips import frames as frames_module
from prefwrap.clips.frames import clip_frames
from prefwrap.records import Segment

H, HEIGHT, WIDTH = 6, 21, 16
RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (H, HEIGHT, WIDTH, 3), dtype=np.uint8)
GRAY = RGB[..., 0]
GRAY_AS_RGB = np.repeat(GRAY[..., None], 3, axis=-1)


def segment(
    observations: np.ndarray | None = None, *, frames: np.ndarray | None = None, length: int = H
) -> Segment:
    """A segment of horizon ``H``; vector observations unless image ``observations`` are given."""
    if observations is None:
        observations = np.zeros((H, 4), np.float32)
    return Segment(
        3, observations, np.zeros((H, 1), np.float32), np.zeros(H, np.float32), length, frames=frames
    )


def check_rgb(clip: np.ndarray, expected: np.ndarray) -> None:
    """``clip`` is the promised output, ``(T, h, w, 3)`` uint8 C-contiguous, equal to ``expected``."""
    assert clip.dtype == np.uint8 and clip.ndim == 4 and clip.shape[-1] == 3
    assert clip.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(clip, expected)


# ---------------------------------------------------------------------------------- rendered frames


def test_rendered_frames_win_over_image_observations() -> None:
    check_rgb(clip_frames(segment(np.zeros_like(RGB), frames=RGB)), RGB)


def test_only_the_valid_steps_are_shown() -> None:
    check_rgb(clip_frames(segment(frames=RGB, length=2)), RGB[:2])
    check_rgb(clip_frames(segment(RGB, length=2)), RGB[:2])


def test_rendered_rgba_loses_its_alpha() -> None:
    rgba = np.concatenate([RGB, np.full((*RGB.shape[:3], 1), 255, np.uint8)], axis=-1)
    check_rgb(clip_frames(segment(frames=rgba)), RGB)


def test_rendered_grayscale_is_repeated_into_three_channels() -> None:
    check_rgb(clip_frames(segment(frames=GRAY)), GRAY_AS_RGB)
    check_rgb(clip_frames(segment(frames=GRAY[..., None])), GRAY_AS_RGB)


@pytest.mark.parametrize(
    "frames",
    [
        RGB.astype(np.float32) / 255,  # float: its range cannot be told
        np.zeros((H, HEIGHT, WIDTH, 2), np.uint8),  # neither gray, RGB nor RGBA
        np.zeros((H, HEIGHT), np.uint8),  # not images
        RGB[:2],  # fewer frames than valid steps
    ],
    ids=["float", "two-channels", "rank-2", "too-short"],
)
def test_rendered_frames_that_are_not_pictures_are_refused(frames: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"segment 3 of query 9: frames must be uint8 of shape"):
        clip_frames(segment(frames=frames), query_id=9)


# ---------------------------------------------------------------------------------- image observations


def test_channel_last_and_channel_first_rgb_observations() -> None:
    check_rgb(clip_frames(segment(RGB)), RGB)
    check_rgb(clip_frames(segment(RGB.transpose(0, 3, 1, 2))), RGB)  # as VecTransposeImage makes


def test_grayscale_observations_with_and_without_a_channel_axis() -> None:
    check_rgb(clip_frames(segment(GRAY)), GRAY_AS_RGB)
    check_rgb(clip_frames(segment(GRAY[..., None])), GRAY_AS_RGB)
    check_rgb(clip_frames(segment(GRAY[:, None])), GRAY_AS_RGB)  # (T, 1, h, w)


def test_stacked_observations_show_their_newest_frame() -> None:
    older = np.zeros_like(GRAY)
    atari = np.stack([older, older, older, GRAY], axis=-1)  # 4 stacked gray frames: not RGBA
    check_rgb(clip_frames(segment(atari)), GRAY_AS_RGB)
    check_rgb(clip_frames(segment(atari.transpose(0, 3, 1, 2))), GRAY_AS_RGB)
    two_rgb = np.concatenate([np.zeros_like(RGB), RGB], axis=-1)  # 6 channels: 2 stacked RGB frames
    check_rgb(clip_frames(segment(two_rgb)), RGB)
    check_rgb(clip_frames(segment(two_rgb.transpose(0, 3, 1, 2))), RGB)


def test_float_observations_are_refused_with_how_to_record_frames() -> None:
    with pytest.raises(ValueError, match=r"segment 3 has no frames .*float32.*record_frames=True"):
        clip_frames(segment(RGB.astype(np.float32)))
    with pytest.raises(ValueError, match=r"not uint8 images .*record_frames=True"):
        clip_frames(segment())  # vector observations


def test_an_ambiguous_channel_axis_is_refused() -> None:
    cube = np.zeros((H, 5, 5, 5), np.uint8)  # (c, h, w) or (h, w, c)? no axis is the smallest
    with pytest.raises(ValueError, match=r"segment 3 of query 4: cannot tell the channel axis"):
        clip_frames(segment(cube), query_id=4)


# ---------------------------------------------------------------------------------- empty segments


@pytest.mark.parametrize("source", ["frames", "observations"])
def test_a_segment_without_valid_steps_is_refused(source: str) -> None:
    empty = segment(frames=RGB, length=0) if source == "frames" else segment(RGB, length=0)
    with pytest.raises(ValueError, match="segment 3 has length 0: it has no valid step to show"):
        clip_frames(empty)


def test_docstring_example_runs() -> None:
    runner = doctest.DocTestRunner()
    for test in doctest.DocTestFinder().find(frames_module):  # in the module's own namespace
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0 and result.failed == 0
