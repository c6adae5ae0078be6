"""prefwrap: reinforcement learning from human preferences for any Stable-Baselines3 algorithm.

Wrap the env, add the callback::

    venv = PreferenceRewardWrapper(make_vec_env("HalfCheetah-v5", n_envs=4))
    PPO("MlpPolicy", venv).learn(1_000_000, callback=PreferenceCallback(venv, oracle=SyntheticOracle()))

Names are imported lazily, so light processes (a labelling UI reading the store) do not pay for
torch and Stable-Baselines3 unless they use them.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "CnnRewardEnsemble": "prefwrap.reward.cnn",
    "atari_preset": "prefwrap.presets",
    "BaseOracle": "prefwrap.oracles.base",
    "UniformLabelSchedule": "prefwrap.schedule",
    "DecayingSchedule": "prefwrap.schedule",
    "DisagreementSelector": "prefwrap.selection",
    "FileOracle": "prefwrap.oracles.file",
    "HumanOracle": "prefwrap.oracles.human",
    "Label": "prefwrap.records",
    "LearnedReward": "prefwrap.reward.learned",
    "MlpRewardEnsemble": "prefwrap.reward.mlp",
    "Oracle": "prefwrap.oracles.base",
    "OracleContext": "prefwrap.oracles.base",
    "Preference": "prefwrap.records",
    "PreferenceCallback": "prefwrap.callback",
    "PreferenceLearner": "prefwrap.learner",
    "PreferenceRewardWrapper": "prefwrap.wrapper",
    "PreferenceStore": "prefwrap.store",
    "Query": "prefwrap.records",
    "RandomSelector": "prefwrap.selection",
    "Segment": "prefwrap.records",
    "SyntheticOracle": "prefwrap.oracles.synthetic",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'prefwrap' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
