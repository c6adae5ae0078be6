"""benchmarks/harness.py on Ray: two tiny training jobs as Ray tasks, their results and --resume."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray", reason='the sweeps need Ray: pip install "prefwrap[sweep]"')

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
try:
    import harness
finally:
    sys.path.remove(str(REPO / "benchmarks"))

TINY_PPO = dict(n_envs=1, n_steps=64, batch_size=32, n_epochs=1, normalize=False)


@pytest.fixture
def snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A frozen copy of src/prefwrap, as snapshot_prefwrap() takes (which refuses to run here:
    the tests have imported prefwrap already), under a temporary RUNS_DIR."""
    monkeypatch.setattr(harness, "RUNS_DIR", tmp_path)
    monkeypatch.setattr(harness, "_SNAPSHOT", {"digest": "test", "commit": "test"})
    root = tmp_path / "prefwrap-src-test"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "src" / "prefwrap", root / "prefwrap", ignore=ignore)
    return root


@pytest.fixture(scope="module")
def local_ray() -> Any:
    ray.init(address="local", num_cpus=2, include_dashboard=False)  # not a cluster `ray start` left
    yield ray
    ray.shutdown()


def _job(seed: int) -> dict[str, Any]:
    return harness.make_job("CartPole-v1", "true", seed, 64, eval_episodes=1, ppo=dict(TINY_PPO))


def test_jobs_run_as_ray_tasks_on_the_snapshot_and_resume(
    local_ray: Any, snapshot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results.jsonl"
    jobs = [_job(0), _job(1)]

    first = harness.run_jobs(jobs[:1], out=out)
    assert [record["seed"] for record in first] == [0]
    assert first[0]["steps"] == 64
    # the worker imported the frozen copy, not the live source
    assert Path(first[0]["prefwrap_source"]) == snapshot / "prefwrap"

    both = harness.run_jobs(jobs, out=out, resume=True)
    assert "resuming: 1 of 2 jobs already in" in capsys.readouterr().out
    assert [record["seed"] for record in both] == [0, 1]  # in the order of the jobs
    assert both[0] == first[0]  # read back from the file, not run again
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["seed"] for line in lines] == [0, 1]
    assert all(line["job_key"] == harness.job_key(job) for line, job in zip(lines, jobs, strict=True))

    assert harness.run_jobs(jobs, out=out, resume=True) == both  # nothing left to run
    assert len(out.read_text().splitlines()) == 2


def test_each_job_declares_its_resources() -> None:
    assert harness.job_resources(_job(0)) == {"num_cpus": 1, "num_gpus": 0}
    assert harness.job_resources({**_job(0), "device": "cuda:0"}) == {"num_cpus": 1, "num_gpus": 1}


def test_workers_and_address_together_are_refused() -> None:
    with pytest.raises(ValueError, match="sizes a local Ray instance"):
        harness.run_jobs([_job(0)], workers=2, address="auto")


def test_without_ray_the_sweep_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(SystemExit, match=r'pip install "prefwrap\[sweep\]"'):
        harness.run_jobs([_job(0)])
