"""The labeling window's grid (prefwrap.oracles.window_layout): pure geometry, no screen."""

from __future__ import annotations

import itertools

import pytest

from prefwrap.oracles.window_layout import BAR_H, FOOTER_H, TAG_H, grid_layout, grid_shape


def overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Whether two clips, with their tag row above and their bar below, share a pixel."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return (
        ax < bx + bw
        and bx < ax + aw
        and ay - TAG_H < by + bh + 4 + BAR_H
        and by - TAG_H < ay + ah + 4 + BAR_H
    )


@pytest.mark.parametrize("n_clips", range(2, 7))
@pytest.mark.parametrize("frame_shape", [(210, 160), (96, 128), (500, 500), (21, 16)])
@pytest.mark.parametrize("screen", [None, (1024, 768), (1920, 1080)])
def test_clips_are_inside_the_window_above_the_key_help_and_never_overlap(
    n_clips: int, frame_shape: tuple[int, int], screen: tuple[int, int] | None
) -> None:
    layout = grid_layout(frame_shape, n_clips, screen_size=screen)
    width, height = layout.window
    assert len(layout.clips) == n_clips
    for x, y, w, h in layout.clips:
        assert x >= 0 and x + w <= width and y - TAG_H >= 0 and y + h + 4 + BAR_H <= height - FOOTER_H
        assert w / h == pytest.approx(frame_shape[1] / frame_shape[0], rel=0.05)
    for a, b in itertools.combinations(layout.clips, 2):
        assert not overlaps(a, b)
    if screen is not None and n_clips > 2:
        assert width <= screen[0] and height <= screen[1]  # a grid fits the desktop


def test_a_pair_keeps_the_original_layout() -> None:
    layout = grid_layout((210, 160), 2, screen_size=(1024, 768))  # not shrunk to the screen
    assert layout.scale == 3 and layout.window == (1020, 880)  # as in docs/oracles-human.md
    (x0, y0, w0, _), (x1, y1, _, _) = layout.clips
    assert y0 == y1 and x0 + w0 < x1


def test_grid_shapes_and_the_shape_that_shows_clips_largest() -> None:
    assert [grid_shape(k) for k in range(2, 7)] == [(1, 2), (1, 3), (2, 2), (2, 3), (2, 3)]
    tall = grid_layout((210, 160), 4, screen_size=(1024, 768))  # Atari: a row of four is larger than 2 x 2
    assert len({y for _, y, _, _ in tall.clips}) == 1
    wide = grid_layout((400, 600), 4, screen_size=(1920, 1080))  # classic control: 2 x 2
    assert len({y for _, y, _, _ in wide.clips}) == 2
    five = grid_layout((400, 600), 5, scale=1)  # no screen: 3 + 2, the short row centred
    (a, _, _, _), _, (c, _, _, _), (d, _, _, _), (e, _, _, _) = five.clips
    assert d - a == pytest.approx(c - e, abs=1)  # the row of two is as far from both edges of the row above
    fitted = grid_layout((210, 160), 3, window_size=(800, 500))
    assert fitted.window == (800, 500) and fitted.scale != int(fitted.scale)  # any scale that fits
    with pytest.raises(ValueError, match="at least 2"):
        grid_shape(1)
