"""Tests of the ``prefwrap`` command: tiny end-to-end runs, resume after a kill, and one-line errors."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prefwrap.cli import main
from prefwrap.store import PreferenceStore

# Pendulum-v1 records 30-step segments; these settings keep a run to a few seconds.
HAS_PYGAME = importlib.util.find_spec("pygame") is not None

TINY = [
    "--n-envs", "1",
    "--hyperparams", "n_steps=256", "batch_size=64", "n_epochs=2",
    "--learner", "min_segments=8",
    "--eval-episodes", "1",
    "--no-progress-bar",
]  # fmt: skip


def prefwrap(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run ``python -m prefwrap ARGS`` in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "prefwrap", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})},
    )


def assert_one_line_error(stderr: str, *fragments: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert lines[0].startswith("prefwrap") and "error:" in lines[0], lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative paths (the default runs/ directory) land in a temporary directory."""
    monkeypatch.chdir(tmp_path)


def stored_labels(store_path: Path) -> list[tuple[int, str]]:
    with PreferenceStore(store_path) as store:
        return [(label.query_id, label.preference.value) for label in store.labels()]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny run, trained through the real entry point (``python -m prefwrap``)."""
    run = tmp_path_factory.mktemp("cli") / "run"
    result = prefwrap(
        "train", "--steps", "1536", "--labels", "12", "--run-dir", str(run), "--save-freq", "768", *TINY
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "true return, trained policy" in result.stdout
    return run


# ------------------------------------------------------------------------------------ end to end


def test_train_writes_the_documented_run_directory(trained_run: Path) -> None:
    for name in ("config.json", "preferences.sqlite", "reward_model.pt", "policy.zip", "checkpoint.json",
                 "summary.json", "plots/returns.png", "plots/reward_vs_true.png", "plots/reward_vs_true.npz",
                 "logs/progress.csv"):  # fmt: skip
        assert (trained_run / name).is_file(), name
    assert any(trained_run.glob("logs/events.out.tfevents.*"))
    for png in trained_run.glob("plots/*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    videos = list(trained_run.glob("videos/policy-episode*-return*"))
    if HAS_PYGAME:  # Gymnasium draws Pendulum with pygame; without it the run says so and has no video
        assert len(videos) == 1 and videos[0].suffix in (".mp4", ".gif") and videos[0].stat().st_size > 1000

    config = json.loads((trained_run / "config.json").read_text())
    assert config["env_id"] == "Pendulum-v1" and config["algo"] == "ppo" and config["seed"] == 0
    assert config["labels"] == 12 and config["steps"] == 1536
    assert config["prefwrap_version"] and config["versions"]["Stable-Baselines3"]
    assert config["hyperparams_resolved"]["model_kwargs"]["n_steps"] == 256

    summary = json.loads((trained_run / "summary.json").read_text())
    assert summary["labels"] == 12 and summary["label_budget"] == 12
    assert summary["policy_return"]["episodes"] == 1 and summary["random_return"]["mean"] < 0
    assert 0.0 <= summary["val_accuracy"] <= 1.0
    assert len(stored_labels(trained_run / "preferences.sqlite")) == 12


def test_plot_redraws_the_figures(trained_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for png in trained_run.glob("plots/*.png"):
        png.unlink()
    assert main(["plot", str(trained_run)]) == 0
    assert (trained_run / "plots/returns.png").is_file() and (
        trained_run / "plots/reward_vs_true.png"
    ).is_file()
    assert "returns.png" in capsys.readouterr().out


def test_eval_writes_its_own_files_and_never_the_training_summary(
    trained_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (trained_run / "summary.json").read_bytes()
    data_before = (trained_run / "plots/reward_vs_true.npz").read_bytes()
    assert main(["eval", str(trained_run), "--episodes", "2", "--checkpoint", "768"]) == 0
    assert (trained_run / "summary.json").read_bytes() == before
    assert (trained_run / "plots/reward_vs_true.npz").read_bytes() == data_before
    (written,) = trained_run.glob("evals/eval-*.json")
    result = json.loads(written.read_text())
    assert result["policy_return"]["episodes"] == 2 and result["labels"] == 12 and result["steps"] == 768
    assert result["policy_file"].endswith("checkpoints/step-768/policy.zip")
    if HAS_PYGAME:
        (video,) = trained_run.glob("evals/eval-*-episode*-return*")
        assert video.name.split("-return")[1].startswith(("+", "-")) and result["videos"] == [str(video)]
    out = capsys.readouterr().out
    assert "true return, trained policy" in out and "--resume" in out and "--baseline" in out


def test_eval_of_a_checkpoint_never_kept_is_one_line(
    trained_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", str(trained_run), "--checkpoint", "5"])
    assert exit_info.value.code == 2
    assert_one_line_error(capsys.readouterr().err, "no checkpoint of step 5", "768")


def test_returns_plot_ends_at_the_final_evaluation(trained_run: Path) -> None:
    import numpy as np

    from prefwrap.cli.plots import _evaluation_curve
    from prefwrap.cli.run_dir import RunDir

    summary = json.loads((trained_run / "summary.json").read_text())
    with np.load(trained_run / "evaluations.npz") as data:  # the zoo's format
        assert set(data.files) >= {"timesteps", "results", "ep_lengths"} and len(data["timesteps"]) >= 5
    steps, means, _, final = _evaluation_curve(RunDir(trained_run), summary)
    assert final == (summary["steps"], summary["policy_return"]["mean"], summary["policy_return"]["std"])
    assert (steps < final[0]).all() and len(means) == len(steps)
    header = (trained_run / "logs/progress.csv").read_text().splitlines()[0]
    assert "eval/mean_reward" in header


def test_export_with_nothing_pending_says_so(trained_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(trained_run)]) == 0
    assert "No pending queries" in capsys.readouterr().out


def test_file_oracle_run_exports_its_pending_queries_as_clips(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("pygame", reason="Pendulum clips are drawn by pygame: pip install prefwrap[human]")
    labels_file = tmp_path / "answers.jsonl"  # never written: every query stays pending
    run = tmp_path / "run"
    argv = [
        "train",
        "--oracle",
        f"file:{labels_file}:nowait",  # go on without answers (the default waits for them)
        "--steps",
        "512",
        "--labels",
        "4",
        "--run-dir",
        str(run),
    ]
    assert main([*argv, *TINY, "--no-video"]) == 0
    out = capsys.readouterr().out
    assert f"queries wait for answers in {labels_file}" in out and f"prefwrap export {run}" in out
    assert "Training goes on without them" in out
    with PreferenceStore(run / "preferences.sqlite") as store:
        pending = store.pending_queries(with_frames=False)
    assert pending and not stored_labels(run / "preferences.sqlite")

    assert main(["export", str(run), "--format", "gif"]) == 0
    assert f"Write the answers to {labels_file} " in capsys.readouterr().out  # the path, not ":nowait"
    manifest = [json.loads(line) for line in (run / "queries/manifest.jsonl").read_text().splitlines()]
    assert [entry["query_id"] for entry in manifest] == [query.query_id for query in pending]
    assert all((run / "queries" / entry["clip"]).is_file() for entry in manifest)


def test_label_opens_the_labeling_session_on_the_run_store(
    trained_run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("pygame")
    import prefwrap.oracles.human as human

    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")  # a display, as far as the command can tell

    calls = []
    monkeypatch.setattr(
        human, "run_labeling_session", lambda path, **kwargs: calls.append((path, kwargs)) or 0
    )
    assert main(["label", str(trained_run), "--exit-when-done", "--labeler", "alice"]) == 0
    assert calls[0][0] == str(trained_run / "preferences.sqlite")
    assert calls[0][1]["labeler"] == "alice" and calls[0][1]["stop_when_empty"] is True


def test_file_oracle_waits_for_the_answers_and_says_how_to_give_them(tmp_path: Path) -> None:
    pytest.importorskip("pygame", reason="Pendulum clips are drawn by pygame: pip install prefwrap[human]")
    labels_file, run = tmp_path / "answers.jsonl", tmp_path / "run"  # the file does not exist yet
    argv = ["train", "--oracle", f"file:{labels_file}", "--steps", "1024", "--labels", "4",
            "--run-dir", str(run), *TINY, "--no-video"]  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "prefwrap", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    try:
        lines = []
        for line in process.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if "Training waits" in line:
                break
        announcement = "".join(lines[-3:])
        assert f"for answers in {labels_file}" in announcement
        assert f"prefwrap export {run}" in announcement
        time.sleep(2.0)
        assert process.poll() is None  # no answer: training waits instead of going on untrained
        with PreferenceStore(run / "preferences.sqlite") as store:
            assert not store.labels()
        answered: set[int] = set()
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            with PreferenceStore(run / "preferences.sqlite") as store:
                pending = [q.query_id for q in store.pending_queries(with_frames=False)]
            with labels_file.open("a", encoding="utf-8") as file:
                for query_id in set(pending) - answered:
                    file.write(json.dumps({"query_id": query_id, "label": "left"}) + "\n")
                    answered.add(query_id)
            time.sleep(0.2)
        rest = process.communicate(timeout=120)[0]
    finally:
        process.kill()
    assert process.returncode == 0, rest[-3000:]
    assert len(stored_labels(run / "preferences.sqlite")) == 4  # trained on every label it asked for


# ---------------------------------------------------------------------------------------- resume


def test_resume_after_a_kill_keeps_every_label_and_asks_only_for_the_rest(tmp_path: Path) -> None:
    run = tmp_path / "run"
    argv = ["train", "--steps", "2560", "--labels", "24", "--run-dir", str(run), "--checkpoint-every", "256",
            *TINY, "--no-video"]  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "prefwrap", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if (run / "checkpoint.json").is_file() and _n_labels(run) >= 8:
                break
            time.sleep(0.1)
        assert process.poll() is None, "the run finished before it could be killed: raise --steps"
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    before = stored_labels(run / "preferences.sqlite")
    checkpoint = json.loads((run / "checkpoint.json").read_text())
    assert 8 <= len(before) < 24 and checkpoint["timesteps"] < 2560

    result = prefwrap("train", "--resume", str(run), "--no-progress-bar")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Resuming at step {checkpoint['timesteps']:,}" in result.stdout

    after = stored_labels(run / "preferences.sqlite")
    assert after[: len(before)] == before  # every label kept, unchanged
    assert len(after) == 24  # the budget, not more: nothing was asked twice
    asked_before = {query_id for query_id, _ in before}
    assert not asked_before & {query_id for query_id, _ in after[len(before) :]}
    with PreferenceStore(run / "preferences.sqlite") as store:
        assert not store.pending_queries(with_frames=False)
    config = json.loads((run / "config.json").read_text())
    assert [s["from_step"] for s in config["sessions"]] == [0, checkpoint["timesteps"]]
    assert config["sessions"][-1]["to_step"] >= 2560
    assert (run / "logs/progress.csv").is_file() and (run / "logs/progress.1.csv").is_file()
    assert json.loads((run / "summary.json").read_text())["labels"] == 24


def _n_labels(run: Path) -> int:
    try:
        with sqlite3.connect(f"file:{run / 'preferences.sqlite'}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("SELECT COUNT(*) FROM labels").fetchone()[0]
    except sqlite3.Error:
        return 0


# ------------------------------------------------------------------------------ one-line errors


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["train", "Pendulm-v1"], "unknown env id 'Pendulm-v1'"),
        (["train", "NoSuchEnv-v0"], "unknown env id"),
        (["train", "--labels", "0"], "--labels must be at least 1"),
        (["train", "--steps", "0"], "--steps must be at least 1"),
        (["train", "--n-envs", "0"], "--n-envs must be at least 1"),
        (["train", "--eval-episodes", "0"], "--eval-episodes"),
        (["train", "--steps", "300", "--labels", "50"], "raise --steps or lower --labels"),
        (["train", "--oracle", "wizard"], "--oracle must be"),
        (["train", "--oracle", "file:answers.txt"], ".jsonl or .csv"),
        (["train", "--oracle", "synthetic:genius"], "unknown synthetic teacher"),
        (["train", "--algo", "ddpg"], "invalid choice"),
        (["train", "--algo", "sac", "CartPole-v1"], "needs continuous actions"),
        (["train", "--algo", "dqn"], "needs discrete actions"),
        (["train", "--hyperparams", "n_stepz=3"], "no hyperparameter n_stepz"),
        (["train", "--hyperparams", "n_steps"], "key=value"),
        (["train", "--learner", "colour=blue"], "unknown option colour"),
        (["train", "--env-kwargs", "gravity=oops=1"], "--env-kwargs"),
        (["train", "--no-such-flag"], "unrecognized arguments"),
        (["train", "--resume", "/nonexistent/run"], "is not a directory"),
        (["plot", "/nonexistent/run"], "is not a directory"),
        (["eval", "/nonexistent/run"], "is not a directory"),
        (["export", "/nonexistent/run"], "no preference store"),
        (["label", "/nonexistent/run"], "no preference store"),
        (["train", "--threads", "0"], "--threads must be at least 1"),
        (["eval", "/nonexistent/run", "--episodes", "0"], "is not a directory"),
    ],
)
def test_bad_arguments_exit_non_zero_with_one_line(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code != 0
    captured = capsys.readouterr()
    assert_one_line_error(captured.err, fragment)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (
            lambda run: ["train", "HalfCheetah-v5", "--resume", str(run)],
            "is a Pendulum-v1 run, not HalfCheetah-v5",
        ),
        (lambda run: ["train", "--run-dir", str(run)], "already holds a run"),
        (lambda run: ["train", "--resume", str(run), "--algo", "a2c"], "--algo cannot change"),
        (lambda run: ["train", "--resume", str(run), "--run-dir", str(run)], "not both"),
        (lambda run: ["train", "--resume", str(run), "--labels", "0"], "--labels must be at least 1"),
    ],
)
def test_bad_run_directory_use_exits_with_one_line(
    trained_run: Path, extra, fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(extra(trained_run))
    assert exit_info.value.code == 2
    assert_one_line_error(capsys.readouterr().err, fragment)


def test_a_malformed_labels_file_is_one_line_and_the_resume_command(tmp_path: Path) -> None:
    pytest.importorskip("pygame", reason="Pendulum clips are drawn by pygame: pip install prefwrap[human]")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"left": 1, "right": 2, "label": "left"}\nnot json\n', encoding="utf-8")
    run = tmp_path / "run"
    progress_bar_on = [arg for arg in TINY if arg != "--no-progress-bar"]  # tqdm/rich must close cleanly
    argv = ["train", "--oracle", f"file:{bad}", "--steps", "3000", "--labels", "10", "--run-dir", str(run),
            *progress_bar_on, "--no-video"]  # fmt: skip
    result = prefwrap(*argv)
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith("prefwrap train: error: 3 problem(s) in labels file: ")
    assert f"{bad}:2: invalid JSON: Expecting value (column 1)" in lines[0]
    assert lines[1].endswith(f"prefwrap train --resume {run}")
    assert (run / "checkpoint.json").is_file()  # the resume goes on from where it stopped

    debug = prefwrap("train", "--resume", str(run), "--no-progress-bar", env={"PREFWRAP_DEBUG": "1"})
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr and "LabelFileError" in debug.stderr
    assert debug.stderr.rstrip().endswith(f"prefwrap train --resume {run}")

    flag = prefwrap("train", "--resume", str(run), "--no-progress-bar", "--debug")
    assert flag.returncode == 1 and "Traceback (most recent call last)" in flag.stderr


def test_an_unexpected_error_names_its_type() -> None:
    from prefwrap.cli.config import one_line

    assert one_line(KeyError("x")) == "KeyError: 'x'"
    assert one_line(ValueError("bad\n  a\n  b")) == "bad a; b"
    assert one_line(RuntimeError()) == "RuntimeError"


def test_cuda_without_a_gpu_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is visible")
    with pytest.raises(SystemExit):
        main(["train", "--device", "cuda"])
    assert_one_line_error(capsys.readouterr().err, "--device cuda")


def test_missing_mujoco_names_the_pip_extra(tmp_path: Path) -> None:
    """MuJoCo is hidden from a fresh interpreter by a stub package that fails to import."""
    stub = tmp_path / "mujoco"
    stub.mkdir()
    (stub / "__init__.py").write_text('raise ImportError("No module named mujoco")\n')
    pythonpath = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    result = prefwrap("train", "HalfCheetah-v5", env={"PYTHONPATH": pythonpath})
    assert result.returncode == 2
    assert_one_line_error(result.stderr, 'pip install "prefwrap[mujoco]"')


@pytest.mark.parametrize(
    ("module", "argv", "fragment"),
    [
        ("ale_py", ["train", "ALE/Pong-v5"], 'pip install "prefwrap[atari]"'),
        ("pygame", ["train", "--oracle", "human"], 'pip install "prefwrap[human]"'),
    ],
)
def test_a_missing_extra_names_the_pip_extra(
    module: str,
    argv: list[str],
    fragment: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert_one_line_error(capsys.readouterr().err, fragment)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the display check is for Linux desktops")
def test_human_oracle_without_a_display_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("pygame")
    for variable in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        monkeypatch.delenv(variable, raising=False)
    with pytest.raises(SystemExit):
        main(["train", "--oracle", "human"])
    assert_one_line_error(capsys.readouterr().err, "no display")


def test_no_command_shows_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    out = capsys.readouterr().out
    for command in ("train", "label", "export", "plot", "eval"):
        assert command in out


def test_python_dash_m_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in (
        "--algo",
        "--oracle",
        "--labels",
        "--steps",
        "--seed",
        "--run-dir",
        "--resume",
        "--baseline",
    ):
        assert flag in out
