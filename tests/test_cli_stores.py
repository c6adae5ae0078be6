"""Tests for prefwrap.cli.stores: `prefwrap annotators`, `prefwrap store copy`, `--store`, `label --web`."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from prefwrap.cli import main
from prefwrap.records import Preference, Query
from prefwrap.store import PreferenceStore

ROOT = Path(__file__).resolve().parents[1]


def labelled_run(tmp_path: Path) -> Path:
    """A run directory whose store holds 3 queries, 2 of them labelled by two people."""
    from test_store import make_segment

    run = tmp_path / "run"
    run.mkdir()
    with PreferenceStore(run / "preferences.sqlite") as store:
        store.add_queries([Query(q, make_segment(2 * q), make_segment(2 * q + 1)) for q in range(3)])
        store.add_label(0, Preference.LEFT, "human:ada")
        store.add_label(1, Preference.RIGHT, "human:bo")
    return run


def test_annotators_prints_one_row_per_labeler(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["annotators", str(labelled_run(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "human:ada" in out and "human:bo" in out and "kappa" in out


def test_store_copy_moves_every_label_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = labelled_run(tmp_path)
    copy = tmp_path / "copy.sqlite"
    assert main(["store", "copy", str(run / "preferences.sqlite"), str(copy)]) == 0
    assert "checked" in capsys.readouterr().out
    with PreferenceStore(copy) as store:
        assert [(label.query_id, label.labeler) for label in store.labels()] == [
            (0, "human:ada"),
            (1, "human:bo"),
        ]
        assert [query.query_id for query in store.pending_queries(with_frames=False)] == [2]
    with pytest.raises(SystemExit) as exit_info:  # the destination holds data now: refused, one line
        main(["store", "copy", str(run / "preferences.sqlite"), str(copy)])
    assert exit_info.value.code == 1


def test_store_flag_points_commands_at_another_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = labelled_run(tmp_path)
    elsewhere = tmp_path / "elsewhere.sqlite"
    (run / "preferences.sqlite").rename(elsewhere)
    with pytest.raises(SystemExit):
        main(["annotators", str(run)])
    assert "--store URL" in capsys.readouterr().err
    assert main(["annotators", str(run), "--store", str(elsewhere)]) == 0


def test_label_web_serves_the_page(tmp_path: Path) -> None:
    pytest.importorskip("fastapi", reason="the web page needs the web extra: pip install prefwrap[web]")
    run = labelled_run(tmp_path)
    port = 8700 + int(time.time()) % 200
    server = subprocess.Popen(
        [sys.executable, "-m", "prefwrap", "label", str(run), "--web", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as response:
                    assert response.status == 200 and b"<html" in response.read().lower()
                    break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("the labeling page did not come up")
    finally:
        server.terminate()
        server.wait(timeout=10)
