"""TRPO (sb3-contrib) learns Hopper-v5 from preferences: any SB3-compatible algorithm plugs in.

Hopper ends an episode when it falls, and that alone tells the agent what not to do. As in the
paper, this example turns termination off (``terminate_when_unhealthy=False``) so that everything
the agent learns about the task comes from the preferences.

    python examples/trpo_hopper.py
    PREFWRAP_STEPS=4096 PREFWRAP_LABELS=10 python examples/trpo_hopper.py   # smoke test
"""

import os

from sb3_contrib import TRPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecNormalize

from prefwrap import PreferenceCallback, PreferenceRewardWrapper, SyntheticOracle
from prefwrap.cli.hyperparams import resolve

# ---- config -------------------------------------------------------------------------------------
ENV_ID = "Hopper-v5"
ZOO = resolve("trpo", ENV_ID, atari=False)  # rl-baselines3-zoo's tuned values for TRPO on it
ENV_KWARGS = dict(terminate_when_unhealthy=False)  # no free reward information through episode ends
TOTAL_TIMESTEPS = int(os.environ.get("PREFWRAP_STEPS", 1_000_000))
TOTAL_LABELS = int(os.environ.get("PREFWRAP_LABELS", 700))
SEED = 0
EVAL_EPISODES = int(os.environ.get("PREFWRAP_EVAL_EPISODES", 10))
OUT_DIR = "runs/trpo_hopper"
TRPO_KWARGS = ZOO.algorithm_kwargs()  # n_steps=1024, batch_size=128, n_critic_updates=20, ... (trpo.yml)
# -------------------------------------------------------------------------------------------------

venv = PreferenceRewardWrapper(make_vec_env(ENV_ID, n_envs=ZOO.n_envs, seed=SEED, env_kwargs=ENV_KWARGS))
venv = VecNormalize(venv, gamma=TRPO_KWARGS["gamma"])
callback = PreferenceCallback(
    venv, oracle=SyntheticOracle(seed=SEED), total_labels=TOTAL_LABELS, seed=SEED, verbose=1
)

model = TRPO("MlpPolicy", venv, seed=SEED, **TRPO_KWARGS)
model.learn(TOTAL_TIMESTEPS, callback=callback)
os.makedirs(OUT_DIR, exist_ok=True)
callback.wrapper.save_reward_model(f"{OUT_DIR}/reward_model.pt")  # reusable: see README

eval_env = make_vec_env(ENV_ID, n_envs=1, seed=SEED + 1000, env_kwargs=ENV_KWARGS)
eval_env = VecNormalize(eval_env, training=False, norm_reward=False)
eval_env.obs_rms = venv.obs_rms
mean_return, std_return = evaluate_policy(model, eval_env, n_eval_episodes=EVAL_EPISODES)
print(f"{ENV_ID}: true return {mean_return:.1f} ± {std_return:.1f} from {callback.learner.n_labels} labels")
