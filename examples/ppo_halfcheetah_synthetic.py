"""PPO learns HalfCheetah-v5 from 700 preference labels of a simulated teacher (the paper's setting).

The synthetic oracle answers each query from the true reward, so this measures how well prefwrap
recovers a reward the agent never sees. 1M steps take a few hours on a laptop CPU.

    python examples/ppo_halfcheetah_synthetic.py
    PREFWRAP_STEPS=4096 PREFWRAP_LABELS=10 python examples/ppo_halfcheetah_synthetic.py   # smoke test
"""

import os

from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecNormalize

from prefwrap import PreferenceCallback, PreferenceRewardWrapper, SyntheticOracle
from prefwrap.cli.hyperparams import resolve

# ---- config -------------------------------------------------------------------------------------
ENV_ID = "HalfCheetah-v5"
ZOO = resolve("ppo", ENV_ID, atari=False)  # rl-baselines3-zoo's tuned values for PPO on it
TOTAL_TIMESTEPS = int(os.environ.get("PREFWRAP_STEPS", 1_000_000))
TOTAL_LABELS = int(os.environ.get("PREFWRAP_LABELS", 700))  # the paper: 700 labels for MuJoCo
SEED = 0
EVAL_EPISODES = int(os.environ.get("PREFWRAP_EVAL_EPISODES", 10))
OUT_DIR = "runs/ppo_halfcheetah_synthetic"
PPO_KWARGS = ZOO.algorithm_kwargs()  # n_steps=512, gamma=0.98, a ReLU 256x256 net, ... (ppo.yml)
# -------------------------------------------------------------------------------------------------

# 1. The wrapper replaces the env reward with the learned reward r̂(o, a) and records segments.
#    It sits *below* VecNormalize (the zoo normalises HalfCheetah), so it sees raw observations and
#    the true reward.
venv = PreferenceRewardWrapper(make_vec_env(ENV_ID, n_envs=ZOO.n_envs, seed=SEED))
venv = VecNormalize(venv, gamma=PPO_KWARGS["gamma"])

# 2. The callback asks the oracle on the paper's schedule, stores every label and refits r̂.
callback = PreferenceCallback(
    venv,
    oracle=SyntheticOracle(seed=SEED),
    total_labels=TOTAL_LABELS,
    store=f"{OUT_DIR}/preferences.sqlite",  # durable: rerunning resumes the labels
    seed=SEED,
    verbose=1,
)

# 3. SB3 drives: the agent never sees the true reward.
model = PPO("MlpPolicy", venv, seed=SEED, **PPO_KWARGS)
model.learn(TOTAL_TIMESTEPS, callback=callback)
model.save(f"{OUT_DIR}/policy.zip")
callback.wrapper.save_reward_model(f"{OUT_DIR}/reward_model.pt")

# 4. Evaluate on the TRUE reward (Monitor inside make_vec_env records it), normalising observations
#    with the training statistics.
eval_env = VecNormalize(make_vec_env(ENV_ID, n_envs=1, seed=SEED + 1000), training=False, norm_reward=False)
eval_env.obs_rms = venv.obs_rms
mean_return, std_return = evaluate_policy(model, eval_env, n_eval_episodes=EVAL_EPISODES)
print(f"{ENV_ID}: true return {mean_return:.1f} ± {std_return:.1f} from {callback.learner.n_labels} labels")
