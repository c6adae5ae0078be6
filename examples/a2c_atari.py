"""A2C learns an Atari game (Pong) from preferences between 25-step clips, with the paper's Atari settings.

The reward model is a CNN on the stacked 84x84 frames the agent sees. ``atari_preset`` holds the
paper's Atari setup: 5,500 labels, 500 of them on the initial policy with a long first fit, a schedule
decaying over ``5e6`` steps, fitting on the newest 3,000 labels only, reward on observations alone.
10M steps take about a day on a CPU; use a GPU (``PREFWRAP_DEVICE=cuda``).

    python examples/a2c_atari.py
    PREFWRAP_STEPS=2048 PREFWRAP_LABELS=8 PREFWRAP_N_ENVS=2 \
        PREFWRAP_INITIAL_FIT_EPOCHS=2 PREFWRAP_FIT_BATCH_SIZE=4 \
        python examples/a2c_atari.py   # smoke test
"""

import os

import ale_py
import gymnasium as gym
import torch
from stable_baselines3 import A2C
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecFrameStack

from prefwrap import PreferenceCallback, PreferenceRewardWrapper, SyntheticOracle
from prefwrap.cli.hyperparams import resolve
from prefwrap.presets import atari_preset

gym.register_envs(ale_py)

# ---- config -------------------------------------------------------------------------------------
ENV_ID = os.environ.get("PREFWRAP_ENV_ID", "PongNoFrameskip-v4")
ZOO = resolve("a2c", ENV_ID, atari=True)  # rl-baselines3-zoo's values for A2C on every Atari game
TOTAL_TIMESTEPS = int(os.environ.get("PREFWRAP_STEPS", 10_000_000))
TOTAL_LABELS = int(os.environ.get("PREFWRAP_LABELS", 5500))  # the paper's Atari budget
N_ENVS = int(os.environ.get("PREFWRAP_N_ENVS", ZOO.n_envs))
SEED = 0
DEVICE = os.environ.get("PREFWRAP_DEVICE", "cuda" if torch.cuda.is_available() else "cpu")
EVAL_EPISODES = int(os.environ.get("PREFWRAP_EVAL_EPISODES", 3))
# The paper's reward-model training; far smaller values keep a smoke test on a CPU to seconds.
INITIAL_FIT_EPOCHS = int(
    os.environ.get("PREFWRAP_INITIAL_FIT_EPOCHS", 200)
)  # first fit, on the initial labels
FIT_BATCH_SIZE = int(os.environ.get("PREFWRAP_FIT_BATCH_SIZE", 64))  # label pairs per gradient step
A2C_KWARGS = ZOO.algorithm_kwargs()  # ent_coef=0.01, vf_coef=0.25, the RMSpropTFLike optimizer (a2c.yml)
# -------------------------------------------------------------------------------------------------

preset = atari_preset(
    TOTAL_LABELS,
    initial_labels=max(1, min(500, TOTAL_LABELS // 4)),
    initial_fit_epochs=INITIAL_FIT_EPOCHS,
    seed=SEED,
)

# The wrapper goes on top of the frame stack: the reward model sees what the policy sees.
venv = VecFrameStack(make_atari_env(ENV_ID, n_envs=N_ENVS, seed=SEED), n_stack=ZOO.frame_stack)
venv = PreferenceRewardWrapper(venv, device=DEVICE, **preset.wrapper)
callback = PreferenceCallback(
    venv, oracle=SyntheticOracle(seed=SEED), batch_size=FIT_BATCH_SIZE, verbose=1, **preset.learner
)
model = A2C(ZOO.policy, venv, seed=SEED, device=DEVICE, **A2C_KWARGS)
model.learn(TOTAL_TIMESTEPS, callback=callback)

# Monitor sits below the Atari wrappers, so an evaluation episode is a whole game at the real score.
eval_env = VecFrameStack(make_atari_env(ENV_ID, n_envs=1, seed=SEED + 1000), n_stack=ZOO.frame_stack)
mean_return, std_return = evaluate_policy(model, eval_env, n_eval_episodes=EVAL_EPISODES)
print(f"{ENV_ID}: game score {mean_return:.1f} ± {std_return:.1f} from {callback.learner.n_labels} labels")
