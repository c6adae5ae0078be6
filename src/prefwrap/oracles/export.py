"""Export queries as side-by-side clips for an external annotation tool, and import its answers.

:func:`export_queries` writes one clip per query (left segment | right segment; a grid of numbered
cells for a query of more than two segments, to be ranked), a
``manifest.jsonl`` describing them and a template ``labels.jsonl``; the annotation tool fills in
``labels.jsonl`` (schema in ``docs/oracles-file.md``), which :func:`import_labels` reads back, or
which a :class:`~prefwrap.oracles.file.FileOracle` answers from while training runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from prefwrap.clips.frames import clip_frames
from prefwrap.clips.video import VideoWriter
from prefwrap.oracles.file import LabelFileError, check_answers, read_label_file
from prefwrap.records import Answer, Label, Query, normalize_answer

MANIFEST_NAME = "manifest.jsonl"
LABELS_NAME = "labels.jsonl"
SEPARATOR_WIDTH = 2  # pixels before scaling
SEPARATOR_VALUE = 255  # a white bar between the two halves
GRID_COLUMNS = 3  # a query of K > 2 segments: cells in rows of 3 (K = 4: 2 rows)


def export_queries(
    queries: Sequence[Query],
    out_dir: str | Path,
    *,
    fps: float = 20,
    fmt: Literal["mp4", "gif"] = "mp4",
    scale: int = 1,
) -> Path:
    """Write one side-by-side clip per query, a manifest, and a template labels file.

    Each clip shows the left segment's frames, a thin white separator, then the right segment's,
    over the valid steps only (``segment.length``); the shorter side loops to the longer length.
    Each side is :func:`~prefwrap.clips.frames.clip_frames` of its segment (the frames a person sees
    in the labelling window). Clips are written by :class:`~prefwrap.clips.video.VideoWriter`: an MP4
    that cannot be encoded becomes a GIF, named in the manifest. The manifest gets one JSON line per
    query: ``query_id``, ``left_id``, ``right_id``, ``clip`` (file name), ``fps``, ``n_frames``,
    ``left_length``, ``right_length``. A query of ``K > 2`` segments is one clip of a grid of
    ``GRID_COLUMNS`` columns, segment ``i`` in cell ``i`` (row-major), and its entry also has
    ``segment_ids`` (position order), ``lengths`` and ``grid`` (``[rows, columns]``); its answer is a
    ``ranking`` of the positions. ``labels.jsonl`` is created
    with commented instructions only if it does not exist yet, so answers are never overwritten.
    True rewards are never exported.

    Args:
        queries: Queries to export; their ``query_id`` must be unique.
        out_dir: Directory to write into (created if needed).
        fps: Playback frame rate.
        fmt: ``"mp4"`` (H.264 through imageio-ffmpeg; a GIF when ffmpeg is unavailable) or ``"gif"``
            (looping).
        scale: Integer nearest-neighbour upscaling factor for small renders.

    Returns:
        The path of ``manifest.jsonl``.

    Raises:
        ValueError: An argument is invalid, or a segment cannot be shown (see
            :func:`~prefwrap.clips.frames.clip_frames`: no valid step, neither frames nor uint8 image
            observations, or an image layout that cannot be told).
        RuntimeError: An MP4 could not be finished (the encoder failed after its first frames).

    Example:
        >>> import tempfile
        >>> import numpy as np
        >>> from prefwrap.records import Query, Segment
        >>> def seg(i):
        ...     frames = np.full((4, 16, 16, 3), 40 * i, dtype=np.uint8)
        ...     return Segment(i, np.zeros((4, 2)), np.zeros((4, 1)), np.zeros(4), 4, frames=frames)
        >>> manifest = export_queries([Query(0, seg(1), seg(2))], tempfile.mkdtemp(), fmt="gif")
        >>> sorted(p.name for p in manifest.parent.iterdir())
        ['labels.jsonl', 'manifest.jsonl', 'query_000000.gif']
    """
    if fmt not in ("mp4", "gif"):
        raise ValueError(f"fmt must be 'mp4' or 'gif', got {fmt!r}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be an integer >= 1, got {scale}")
    ids = [q.query_id for q in queries]
    if len(set(ids)) != len(ids):
        raise ValueError(
            f"query ids must be unique, got duplicates {sorted({i for i in ids if ids.count(i) > 1})}"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = [_write_query_clip(query, out_dir, fps=fps, fmt=fmt, scale=int(scale)) for query in queries]
    manifest = out_dir / MANIFEST_NAME
    manifest.write_text("".join(json.dumps(entry) + "\n" for entry in entries), encoding="utf-8")
    labels = out_dir / LABELS_NAME
    if not labels.exists():
        labels.write_text(_labels_template(entries), encoding="utf-8")
    return manifest


def import_labels(
    path: str | Path, queries: Sequence[Query], *, allow_unknown: bool = False
) -> dict[int, Answer]:
    """Read an answers file for exported queries, validated as :class:`FileOracle` does.

    Args:
        path: A ``.jsonl`` or ``.csv`` labels file (schema in ``docs/oracles-file.md``).
        queries: The queries that were exported; answers must match their segment ids.
        allow_unknown: Ignore answers to query ids not in ``queries`` instead of reporting them.

    Returns:
        The answered queries' answers by query id, in ``queries`` order (a :class:`Preference` for a
        pair, a :class:`~prefwrap.records.Ranking` or ``SKIP`` for a larger query); unanswered ones are
        absent.

    Raises:
        LabelFileError: Listing every problem in the file (nothing is imported then).

    Example:
        >>> import pathlib, tempfile
        >>> import numpy as np
        >>> from prefwrap.records import Query, Segment
        >>> seg = lambda i: Segment(i, np.zeros((2, 1)), np.zeros((2, 1)), np.zeros(2), 2)
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "labels.csv"
        >>> _ = path.write_text("query_id,label\\n3,Equal\\n")
        >>> import_labels(path, [Query(3, seg(0), seg(1)), Query(4, seg(2), seg(3))])
        {3: <Preference.EQUAL: 'equal'>}
    """
    return {
        label.query_id: label.preference
        for label in import_label_records(path, queries, allow_unknown=allow_unknown)
    }


def import_label_records(
    path: str | Path, queries: Sequence[Query], *, labeler: str = "file", allow_unknown: bool = False
) -> list[Label]:
    """Like :func:`import_labels`, but return full :class:`~prefwrap.records.Label` records.

    A line's ``labeler`` field wins over ``labeler``; ``created_at`` is the import time.
    """
    answers, problems = read_label_file(path)
    known = None if allow_unknown else {q.query_id for q in queries}
    problems += check_answers(path, answers, queries, known_ids=known)
    if problems:
        raise LabelFileError(sorted(problems, key=lambda p: p.line))
    now = time.time()
    return [
        Label(
            query_id=q.query_id,
            left_id=q.left.segment_id,
            right_id=q.right.segment_id,
            preference=normalize_answer(answers[q.query_id].preference, q.size),
            labeler=answers[q.query_id].labeler or labeler,
            created_at=now,
            segment_ids=tuple(segment.segment_id for segment in q.segments),
        )
        for q in queries
        if q.query_id in answers
    ]


def side_by_side(left: np.ndarray, right: np.ndarray, *, scale: int = 1) -> np.ndarray:
    """Join two frame sequences as ``left | separator | right``, looping the shorter one.

    Args:
        left: Frames ``(n_left, h1, w1, 3)``, uint8.
        right: Frames ``(n_right, h2, w2, 3)``, uint8.
        scale: Integer nearest-neighbour upscaling factor.

    Returns:
        Frames ``(max(n_left, n_right), max(h1, h2) * scale, (w1 + 2 + w2) * scale, 3)``, uint8; the
        lower of the two is padded with black at the bottom.
    """
    n = max(len(left), len(right))
    height = max(left.shape[1], right.shape[1])
    width = left.shape[2] + SEPARATOR_WIDTH + right.shape[2]
    out = np.zeros((n, height, width, 3), dtype=np.uint8)
    out[:, : left.shape[1], : left.shape[2]] = left[np.arange(n) % len(left)]
    out[:, :, left.shape[2] : left.shape[2] + SEPARATOR_WIDTH] = SEPARATOR_VALUE
    out[:, : right.shape[1], width - right.shape[2] :] = right[np.arange(n) % len(right)]
    if scale > 1:
        out = out.repeat(scale, axis=1).repeat(scale, axis=2)
    return out


def _write_query_clip(
    query: Query, out_dir: Path, *, fps: float, fmt: Literal["mp4", "gif"], scale: int
) -> dict:
    """Write ``query_<id>.<fmt>`` (left | right, or a grid) into ``out_dir``; return its manifest entry."""
    clips = [clip_frames(segment, query_id=query.query_id) for segment in query.segments]
    left, right = clips[0], clips[1]
    clip = side_by_side(left, right, scale=scale) if query.size == 2 else grid(clips, scale=scale)
    with VideoWriter(out_dir / f"query_{query.query_id:06d}", fps, fmt=fmt, gif_stride=1) as video:
        for frame in clip:
            video.add(frame)
    if video.path is None:  # VideoWriter logged why; the frames are gone, nothing to fall back to
        raise RuntimeError(
            f"the clip of query {query.query_id} could not be encoded (see the log): try fmt='gif'"
        )
    entry = {
        "query_id": query.query_id,
        "left_id": query.left.segment_id,
        "right_id": query.right.segment_id,
        "clip": video.path.name,
        "fps": fps,
        "n_frames": len(clip),
        "left_length": len(left),
        "right_length": len(right),
    }
    if query.size > 2:
        entry["segment_ids"] = [segment.segment_id for segment in query.segments]
        entry["lengths"] = [len(frames) for frames in clips]
        entry["grid"] = [-(-query.size // GRID_COLUMNS), min(query.size, GRID_COLUMNS)]
    return entry


def grid(clips: Sequence[np.ndarray], *, scale: int = 1, columns: int = GRID_COLUMNS) -> np.ndarray:
    """Tile frame sequences row-major in a grid with white separators, looping the shorter ones.

    Args:
        clips: ``K`` frame sequences ``(n_i, h_i, w_i, 3)``, uint8.
        scale: Integer nearest-neighbour upscaling factor.
        columns: Cells per row.

    Returns:
        Frames ``(max n_i, rows * (h + 2) - 2, columns * (w + 2) - 2, 3)`` scaled, uint8, with ``h``
        and ``w`` the largest cell size; empty cells are black.
    """
    n = max(len(clip) for clip in clips)
    height = max(clip.shape[1] for clip in clips)
    width = max(clip.shape[2] for clip in clips)
    rows = -(-len(clips) // columns)
    step_y, step_x = height + SEPARATOR_WIDTH, width + SEPARATOR_WIDTH
    out = np.full(
        (n, rows * step_y - SEPARATOR_WIDTH, columns * step_x - SEPARATOR_WIDTH, 3), SEPARATOR_VALUE, np.uint8
    )
    for i, clip in enumerate(clips):
        y, x = (i // columns) * step_y, (i % columns) * step_x
        out[:, y : y + height, x : x + width] = 0
        out[:, y : y + clip.shape[1], x : x + clip.shape[2]] = clip[np.arange(n) % len(clip)]
    if scale > 1:
        out = out.repeat(scale, axis=1).repeat(scale, axis=2)
    return out


def _labels_template(entries: list[dict]) -> str:
    first = entries[0] if entries else {"query_id": 0, "left_id": 0, "right_id": 1}
    example = {
        "query_id": first["query_id"],
        "label": "left",
        "left_id": first["left_id"],
        "right_id": first["right_id"],
        "labeler": "alice",
    }
    return (
        "# prefwrap labels: one JSON object per line answering a clip listed in manifest.jsonl.\n"
        '# Required: "query_id" (int) and "label": "left", "right", "equal" or "skip"\n'
        "#   (left = the left half of the clip is better; skip = cannot tell).\n"
        '# A clip of more than two cells (its manifest entry has "segment_ids") takes "ranking" instead\n'
        '#   of "label": cell numbers best first, equals together, e.g. "ranking": [[2], [0, 3], [1]].\n'
        '# Optional: "left_id" and "right_id" copied from the manifest (checked against the query),\n'
        '#   "labeler" (who answered). Lines starting with # are ignored. For example:\n'
        f"# {json.dumps(example)}\n"
    )
