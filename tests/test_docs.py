"""The documentation site builds with ``mkdocs build --strict`` (every warning is an error)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_docs_build_strictly(tmp_path: Path) -> None:
    for module in ("mkdocs", "material", "mkdocstrings_handlers.python"):
        pytest.importorskip(module, reason=f'{module} is not installed: pip install "prefwrap[docs]"')
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    for page in ("index.html", "cli/index.html", "concepts/index.html", "api/index.html"):
        assert (site / page).is_file(), page
    assert "PreferenceCallback" in (site / "api/index.html").read_text(encoding="utf-8")
