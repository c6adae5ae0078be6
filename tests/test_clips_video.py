"""Tests of the one video writer (:class:`prefwrap.clips.video.VideoWriter`) and of :class:`SmallRender`."""

from __future__ import annotations

import doctest
import logging
from pathlib import Path

import gymnasium as gym
import imageio.v2 as imageio
import numpy as np
import pytest

from prefwrap.clips import video as video_module
from prefwrap.clips.video import SmallRender, VideoWriter


def colour_frames(n: int, height: int, width: int) -> np.ndarray:
    """``n`` solid frames of distinct grey levels, ``(n, height, width, 3)`` uint8."""
    return np.broadcast_to((40 * np.arange(n, dtype=np.uint8))[:, None, None, None], (n, height, width, 3))


def read(path: Path) -> np.ndarray:
    return np.stack(imageio.mimread(path, memtest=False))[..., :3]


def test_mp4_pads_odd_sizes_with_black(tmp_path: Path) -> None:
    with VideoWriter(tmp_path / "clip", fps=10) as video:
        for frame in colour_frames(5, 7, 9):
            video.add(frame)
    assert video.path == tmp_path / "clip.mp4" and video.n_frames == 5
    clip = read(video.path)
    assert clip.shape == (5, 8, 10, 3)  # H.264 with yuv420p needs even sizes
    np.testing.assert_allclose(clip[4, :7, :9].mean(), 160, atol=8)


def test_gif_keeps_every_frame_at_its_size_and_drops_alpha(tmp_path: Path) -> None:
    rgba = np.concatenate([colour_frames(4, 5, 3), np.full((4, 5, 3, 1), 255, np.uint8)], axis=-1)
    with VideoWriter(tmp_path / "clip", fps=10, fmt="gif", gif_stride=1) as video:
        for frame in rgba:
            video.add(frame)
    assert video.path == tmp_path / "clip.gif"
    np.testing.assert_array_equal(read(video.path), colour_frames(4, 5, 3))


def test_mp4_that_cannot_be_opened_becomes_a_gif(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_ffmpeg(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no ffmpeg here")

    monkeypatch.setattr(imageio, "get_writer", no_ffmpeg)
    with caplog.at_level(logging.WARNING), VideoWriter(tmp_path / "policy", fps=10, gif_stride=2) as video:
        for frame in colour_frames(5, 4, 4):
            video.add(frame)
    assert video.path == tmp_path / "policy.gif" and "no ffmpeg here" in caplog.text
    assert len(read(video.path)) == 3  # frames 0, 2 and 4
    assert not (tmp_path / "policy.mp4").exists()


def test_nothing_is_written_without_frames_and_bad_arguments_are_named(tmp_path: Path) -> None:
    assert VideoWriter(tmp_path / "empty", fps=5).close() is None
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="fps must be > 0, got 0"):
        VideoWriter(tmp_path / "clip", fps=0)
    with pytest.raises(ValueError, match="'avi'"):
        VideoWriter(tmp_path / "clip", fps=5, fmt="avi")  # type: ignore[arg-type]


def test_small_render_subsamples_large_frames() -> None:
    class Big(gym.Env):
        observation_space = gym.spaces.Discrete(1)
        action_space = gym.spaces.Discrete(1)
        render_mode = "rgb_array"

        def render(self) -> np.ndarray:
            return np.zeros((500, 300, 3), np.uint8)

    assert SmallRender(Big(), max_side=256).render().shape == (250, 150, 3)
    assert SmallRender(Big(), max_side=500).render().shape == (500, 300, 3)
    with pytest.raises(ValueError, match="max_side must be >= 1, got 0"):
        SmallRender(Big(), max_side=0)


def test_docstring_example_runs() -> None:
    runner = doctest.DocTestRunner()
    for test in doctest.DocTestFinder().find(video_module):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0 and result.failed == 0
