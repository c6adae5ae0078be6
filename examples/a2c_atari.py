"""A2C learns an Atari game (Pong) from preferences between 25-step clips, with the paper's Atari settings.

The reward model is a CNN on the stacked 84x84 frames the agent sees. The paper's Atari setup: 5,500
labels, a schedule decaying over ``5e6`` steps, and fitting on the newest 3,000 labels only.
10M steps take about a day on a CPU; use a GPU (``DEVICE = "cuda"``).

    python examples/a2c_atari.py
    PREFWRAP_STEPS=2048 PREFWRAP_LABELS=8 python examples/a2c_atari.py   # smoke test
"""

import os

import ale_py
import gymnasium as gym
from stable_baselines3 import A2C
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike
from stable_baselines3.common.vec_env import VecFrameStack

from prefwrap import DecayingSchedule, PreferenceCallback, PreferenceRewardWrapper, SyntheticOracle

gym.register_envs(ale_py)

# ---- config -------------------------------------------------------------------------------------
ENV_ID = "PongNoFrameskip-v4"
TOTAL_TIMESTEPS = int(os.environ.get("PREFWRAP_STEPS", 10_000_000))
TOTAL_LABELS = int(os.environ.get("PREFWRAP_LABELS", 5500))  # the paper's Atari budget
N_ENVS = int(os.environ.get("PREFWRAP_N_ENVS", 16))
SEED = 0
DEVICE = os.environ.get("PREFWRAP_DEVICE", "auto")
EVAL_EPISODES = int(os.environ.get("PREFWRAP_EVAL_EPISODES", 3))
A2C_KWARGS = dict(  # rl-baselines3-zoo's Atari values
    ent_coef=0.01,
    vf_coef=0.25,
    policy_kwargs=dict(optimizer_class=RMSpropTFLike, optimizer_kwargs=dict(eps=1e-5)),
)
# -------------------------------------------------------------------------------------------------

# The wrapper goes on top of the frame stack: the reward model sees what the policy sees.
venv = VecFrameStack(make_atari_env(ENV_ID, n_envs=N_ENVS, seed=SEED), n_stack=4)
venv = PreferenceRewardWrapper(venv, device="cuda" if DEVICE == "cuda" else "cpu")

callback = PreferenceCallback(
    venv,
    oracle=SyntheticOracle(seed=SEED),  # answers from the (clipped) game score
    total_labels=TOTAL_LABELS,
    schedule=DecayingSchedule(TOTAL_LABELS, decay_timesteps=5e6),  # the paper's Atari schedule
    max_labels=3000,  # fit on the newest 3,000 labels, as the paper does on Atari
    seed=SEED,
    verbose=1,
)
model = A2C("CnnPolicy", venv, seed=SEED, device=DEVICE, **A2C_KWARGS)
model.learn(TOTAL_TIMESTEPS, callback=callback)

# Monitor sits below the Atari wrappers, so an evaluation episode is a whole game at the real score.
eval_env = VecFrameStack(make_atari_env(ENV_ID, n_envs=1, seed=SEED + 1000), n_stack=4)
mean_return, std_return = evaluate_policy(model, eval_env, n_eval_episodes=EVAL_EPISODES)
print(f"{ENV_ID}: game score {mean_return:.1f} ± {std_return:.1f} from {callback.learner.n_labels} labels")
