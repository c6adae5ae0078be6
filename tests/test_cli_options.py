"""Tests of ``prefwrap train``'s zoo-style options: custom envs, ``-conf``, exact step counts, help texts."""

from __future__ import annotations

import importlib.util
import json
import textwrap
from pathlib import Path

import pytest
import yaml

from prefwrap.cli import build_parser, main
from prefwrap.cli.report import MIN_VALIDATION_PAIRS, accuracy_text

TINY = [
    "--n-envs", "1", "--hyperparams", "n_steps=256", "batch_size=64", "n_epochs=2",
    "--learner", "min_segments=8", "--eval-episodes", "1", "--no-progress-bar", "--no-video",
]  # fmt: skip

CUSTOM_ENV = """
import gymnasium as gym
from gymnasium.envs.classic_control.pendulum import PendulumEnv

gym.register("MyPendulum-v0", entry_point=PendulumEnv, max_episode_steps=200)
"""


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def test_steps_are_whole_rollouts_said_once_and_the_run_ends_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    argv = ["train", "--steps", "1000", "--labels", "8", "--run-dir", str(run), *TINY]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("rounded up") == 1 and "--steps 1,000 rounded up to whole rollouts of 256" in out
    summary = json.loads((run / "summary.json").read_text())
    config = json.loads((run / "config.json").read_text())
    assert summary["steps"] == config["steps"] == 1024


def test_module_colon_env_id_and_gym_packages_make_custom_envs(tmp_path: Path) -> None:
    (tmp_path / "my_envs.py").write_text(CUSTOM_ENV)
    common = ["--steps", "512", "--labels", "4", "--eval-freq", "-1", *TINY]
    assert main(["train", "my_envs:MyPendulum-v0", "--run-dir", str(tmp_path / "a"), *common]) == 0
    assert main(["train", "MyPendulum-v0", "--gym-packages", "my_envs", "--run-dir", "b", *common]) == 0
    assert json.loads((tmp_path / "b/config.json").read_text())["gym_packages"] == ["my_envs"]


def test_a_module_that_does_not_import_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "no_such_module:Env-v0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot import 'no_such_module'" in err


def test_conf_file_replaces_the_tuned_block_and_config_yml_reads_back(tmp_path: Path) -> None:
    conf = tmp_path / "ppo.yml"
    conf.write_text(
        textwrap.dedent("""
        Pendulum-v1:
          n_envs: 1
          n_steps: 128
          learning_rate: lin_3e-4
          policy_kwargs: "dict(net_arch=[32, 32])"
    """)
    )
    run = tmp_path / "run"
    argv = ["train", "-conf", str(conf), "--steps", "512", "--labels", "4", "--run-dir", str(run)]
    assert (
        main([*argv, "--eval-freq", "-1", "--no-video", "--no-progress-bar", "--hyperparams", "n_epochs=2"])
        == 0
    )
    resolved = json.loads((run / "config.json").read_text())["hyperparams_resolved"]
    assert resolved["model_kwargs"]["n_steps"] == 128 and resolved["model_kwargs"]["n_epochs"] == 2
    assert (
        "gamma" not in resolved["model_kwargs"]
    )  # the built-in block (gamma 0.9) is replaced, as in the zoo
    block = yaml.safe_load((run / "config.yml").read_text())["Pendulum-v1"]
    assert block["n_steps"] == 128 and block["learning_rate"] == "lin_3e-4" and block["n_timesteps"] == 512


def test_conf_file_without_the_envs_block_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "c.yml").write_text("CartPole-v1:\n  n_steps: 32\n")
    with pytest.raises(SystemExit):
        main(["train", "--conf-file", "c.yml"])
    assert "has no block for Pendulum-v1 (it has: CartPole-v1)" in capsys.readouterr().err


def test_validation_accuracy_on_too_few_pairs_says_so() -> None:
    assert accuracy_text(1.0, MIN_VALIDATION_PAIRS - 1).startswith("too few labels to validate")
    assert accuracy_text(0.77, 41) == "0.770 on 41 held-out pairs"


def test_verbosity_is_sb3s_0_1_2() -> None:
    parse = build_parser().parse_args
    assert parse(["train"]).verbose == 1 and parse(["train", "-v"]).verbose == 2
    assert parse(["train", "-v", "0"]).verbose == 0


@pytest.mark.parametrize("command", ["train", "eval", "plot", "export", "label"])
def test_subcommand_help_describes_every_argument(command: str) -> None:
    parser = build_parser()
    sub = next(a for a in parser._subparsers._actions if a.dest == "command").choices[command]
    assert sub.description
    for action in sub._actions:
        assert action.help, f"prefwrap {command}: {action.option_strings or action.dest} has no help"


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="needs prefwrap[track] (wandb)")
def test_track_logs_to_wandb_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    run = tmp_path / "run"
    assert main(["train", "--steps", "512", "--labels", "4", "--run-dir", str(run), "--track", *TINY]) == 0
    assert any((run / "wandb").glob("offline-run-*"))
