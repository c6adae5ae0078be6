"""prefwrap: reinforcement learning from human preferences for any Stable-Baselines3 algorithm.

Wrap the env, add the callback::

    venv = PreferenceRewardWrapper(make_vec_env("HalfCheetah-v5", n_envs=4))
    PPO("MlpPolicy", venv).learn(1_000_000, callback=PreferenceCallback(venv, oracle=SyntheticOracle()))
"""

from prefwrap.callback import PreferenceCallback
from prefwrap.learned_reward import LearnedReward
from prefwrap.learner import PreferenceLearner
from prefwrap.oracles import Oracle, SyntheticOracle
from prefwrap.records import Label, Preference, Query, Segment
from prefwrap.reward_model import MlpRewardEnsemble
from prefwrap.schedule import ConstantSchedule, DecayingSchedule
from prefwrap.selection import DisagreementSelector, RandomSelector
from prefwrap.store import PreferenceStore
from prefwrap.wrapper import PreferenceRewardWrapper

__all__ = [
    "ConstantSchedule",
    "DecayingSchedule",
    "DisagreementSelector",
    "Label",
    "LearnedReward",
    "MlpRewardEnsemble",
    "Oracle",
    "Preference",
    "PreferenceCallback",
    "PreferenceLearner",
    "PreferenceRewardWrapper",
    "PreferenceStore",
    "Query",
    "RandomSelector",
    "Segment",
    "SyntheticOracle",
]
__version__ = "0.1.0"
