"""Tests for query export as clips and import of the answers."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest

from prefwrap.oracles.export import export_queries, import_label_records, import_labels, side_by_side
from prefwrap.oracles.file import FileOracle, LabelFileError, read_label_file
from prefwrap.records import Preference, Query, Segment

COLORS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255]], np.uint8)


def solid_frames(n: int, height: int, width: int, first_color: int = 0) -> np.ndarray:
    """Frames of one solid colour each, cycling through COLORS, shape (n, height, width, 3)."""
    colors = COLORS[(np.arange(n) + first_color) % len(COLORS)]
    return np.broadcast_to(colors[:, None, None, :], (n, height, width, 3)).copy()


def make_segment(segment_id: int, horizon: int = 6, length: int | None = None, **kwargs) -> Segment:
    kwargs.setdefault("observations", np.zeros((horizon, 2), np.float32))
    return Segment(
        segment_id,
        actions=np.zeros((horizon, 1)),
        true_rewards=np.zeros(horizon, np.float32),
        length=horizon if length is None else length,
        **kwargs,
    )


def read_clip(path: Path) -> np.ndarray:
    return np.stack(imageio.mimread(path, memtest=False))[..., :3]


def test_side_by_side_loops_the_shorter_segment() -> None:
    left = solid_frames(2, 4, 3)
    right = solid_frames(5, 6, 2, first_color=2)
    clip = side_by_side(left, right, scale=2)
    assert clip.shape == (5, 12, (3 + 2 + 2) * 2, 3)
    np.testing.assert_array_equal(clip[4, :8, :6], np.repeat(np.repeat(left[0], 2, 0), 2, 1))
    assert (clip[:, :, 6:10] == 255).all()  # separator
    assert (clip[:, 8:, :6] == 0).all()  # the lower left side is padded with black
    np.testing.assert_array_equal(clip[3, :, 10:], np.repeat(np.repeat(right[3], 2, 0), 2, 1))


@pytest.mark.parametrize("fmt", ["gif", "mp4"])
def test_export_writes_playable_clips(tmp_path: Path, fmt: str) -> None:
    queries = [
        Query(
            3,
            make_segment(10, horizon=6, length=3, frames=solid_frames(6, 12, 9)),
            make_segment(11, horizon=6, length=5, frames=solid_frames(6, 12, 9, first_color=1)),
        ),
        Query(
            4, make_segment(12, frames=solid_frames(6, 8, 8)), make_segment(13, frames=solid_frames(6, 8, 8))
        ),
    ]
    manifest = export_queries(queries, tmp_path / "out", fps=10, fmt=fmt, scale=2)  # type: ignore[arg-type]
    assert manifest == tmp_path / "out" / "manifest.jsonl"
    entries = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert entries[0] == {
        "query_id": 3,
        "left_id": 10,
        "right_id": 11,
        "clip": f"query_000003.{fmt}",
        "fps": 10,
        "n_frames": 5,
        "left_length": 3,
        "right_length": 5,
    }
    assert entries[1]["n_frames"] == 6

    clip = read_clip(manifest.parent / entries[0]["clip"])
    assert clip.shape == (5, 24, (9 + 2 + 9) * 2, 3)
    # left half loops over its 3 valid frames, the right half plays its 5; colours survive encoding
    for i in range(5):
        left_color = clip[i, :, :18].reshape(-1, 3).mean(0)
        right_color = clip[i, :, -18:].reshape(-1, 3).mean(0)
        np.testing.assert_allclose(left_color, COLORS[i % 3], atol=20)
        np.testing.assert_allclose(right_color, COLORS[(i + 1) % 5], atol=20)


def test_mp4_pads_odd_sizes(tmp_path: Path) -> None:
    query = Query(
        0, make_segment(0, frames=solid_frames(6, 5, 4)), make_segment(1, frames=solid_frames(6, 5, 3))
    )
    manifest = export_queries([query], tmp_path, fmt="mp4")
    clip = read_clip(manifest.parent / "query_000000.mp4")
    assert clip.shape == (6, 6, 10, 3)  # 5 x (4 + 2 + 3) padded to even


def test_export_from_image_observations(tmp_path: Path) -> None:
    """Image observations give the clip when no frames were recorded (the rules: test_clips_frames)."""
    chw = np.tile(np.arange(3, dtype=np.uint8)[None, :, None, None] * 100, (4, 1, 6, 6))
    query = Query(
        0, make_segment(0, horizon=4, observations=chw), make_segment(1, frames=solid_frames(6, 6, 6))
    )
    manifest = export_queries([query], tmp_path, fmt="gif")
    clip = read_clip(manifest.parent / "query_000000.gif")
    assert clip.shape == (6, 6, 6 + 2 + 6, 3)
    np.testing.assert_allclose(clip[0, :, :6].reshape(-1, 3).mean(0), [0, 100, 200], atol=10)


def test_export_without_frames_explains_how_to_record_them(tmp_path: Path) -> None:
    query = Query(5, make_segment(1), make_segment(2))
    with pytest.raises(ValueError, match=r"segment 1 of query 5 .*record_frames=True"):
        export_queries([query], tmp_path)
    bad = Query(6, make_segment(1, frames=np.zeros((6, 4, 4, 2), np.uint8)), make_segment(2))
    with pytest.raises(ValueError, match=r"segment 1 of query 6: frames must be uint8 of shape"):
        export_queries([bad], tmp_path)
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_export_argument_validation(tmp_path: Path) -> None:
    query = Query(
        0, make_segment(0, frames=solid_frames(6, 4, 4)), make_segment(1, frames=solid_frames(6, 4, 4))
    )
    with pytest.raises(ValueError, match="'avi'"):
        export_queries([query], tmp_path, fmt="avi")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scale"):
        export_queries([query], tmp_path, scale=0)
    with pytest.raises(ValueError, match=r"duplicates \[0\]"):
        export_queries([query, query], tmp_path)


def test_labels_template_is_valid_and_never_overwritten(tmp_path: Path) -> None:
    query = Query(
        0, make_segment(0, frames=solid_frames(6, 4, 4)), make_segment(1, frames=solid_frames(6, 4, 4))
    )
    export_queries([query], tmp_path, fmt="gif")
    labels = tmp_path / "labels.jsonl"
    assert read_label_file(labels) == ({}, [])
    assert '"left_id": 0, "right_id": 1' in labels.read_text()
    with labels.open("a") as f:
        f.write('{"query_id": 0, "label": "right"}\n')
    export_queries([query], tmp_path, fmt="gif")
    assert import_labels(labels, [query]) == {0: Preference.RIGHT}


def test_import_round_trip(tmp_path: Path) -> None:
    queries = [
        Query(
            i,
            make_segment(2 * i, frames=solid_frames(6, 4, 4)),
            make_segment(2 * i + 1, frames=solid_frames(6, 4, 4)),
        )
        for i in range(4)
    ]
    manifest = export_queries(queries, tmp_path, fmt="gif")
    answers = ["left", "RIGHT", "equal"]  # query 3 stays unanswered
    with (tmp_path / "labels.jsonl").open("a") as f:
        for entry, label in zip(map(json.loads, manifest.read_text().splitlines()), answers, strict=False):
            answer = {"query_id": entry["query_id"], "label": label, "left_id": entry["left_id"]}
            answer["right_id"] = entry["right_id"]
            if label == "equal":
                answer["labeler"] = "zoe"
            f.write(json.dumps(answer) + "\n")
    expected = {0: Preference.LEFT, 1: Preference.RIGHT, 2: Preference.EQUAL}
    assert import_labels(tmp_path / "labels.jsonl", queries) == expected
    records = import_label_records(tmp_path / "labels.jsonl", queries, labeler="lab")
    assert [(r.query_id, r.left_id, r.right_id, r.labeler) for r in records] == [
        (0, 0, 1, "lab"),
        (1, 2, 3, "lab"),
        (2, 4, 5, "zoe"),
    ]
    # the same file drives a FileOracle
    assert FileOracle(tmp_path / "labels.jsonl", wait=False).label(queries) == [*expected.values(), None]


def test_import_reports_all_problems(tmp_path: Path) -> None:
    queries = [Query(0, make_segment(0), make_segment(1))]
    path = tmp_path / "answers.csv"
    path.write_text("query_id,label,left_id,right_id\n0,left,1,0\n7,right,,\nx,left,,\n")
    with pytest.raises(LabelFileError) as info:
        import_labels(path, queries)
    assert [(p.line, p.message.split(":")[0]) for p in info.value.problems] == [
        (2, "query 0"),
        (3, "query_id 7 was never issued by this run"),
        (4, "query_id must be an integer, got 'x'"),
    ]
    path.write_text("query_id,label\n0,left\n7,right\n")
    assert import_labels(path, queries, allow_unknown=True) == {0: Preference.LEFT}
