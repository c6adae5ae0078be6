"""SAC learns Pendulum-v1 from preferences; its replay buffer is relabelled after every refit.

Off-policy algorithms train on old transitions. Without relabelling, the replay buffer would mix
rewards from every reward model fitted so far (0 before the first fit!); ``PreferenceCallback``
recomputes every stored reward with the newest model after each refit (PEBBLE's fix). Set
``RELABEL = False`` to see SAC struggle without it. About 5 minutes on a laptop CPU.

    python examples/sac_relabeling.py
    PREFWRAP_STEPS=1200 PREFWRAP_LABELS=8 python examples/sac_relabeling.py   # smoke test
"""

import os

from stable_baselines3 import SAC
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from prefwrap import PreferenceCallback, PreferenceRewardWrapper, SyntheticOracle
from prefwrap.cli.hyperparams import resolve

# ---- config -------------------------------------------------------------------------------------
ENV_ID = "Pendulum-v1"
ZOO = resolve("sac", ENV_ID, atari=False)  # rl-baselines3-zoo's tuned values: lr 1e-3, 20k steps
TOTAL_TIMESTEPS = int(os.environ.get("PREFWRAP_STEPS", ZOO.n_timesteps))
TOTAL_LABELS = int(os.environ.get("PREFWRAP_LABELS", 200))
RELABEL = os.environ.get("PREFWRAP_RELABEL", "1") == "1"
SEED = 0
EVAL_EPISODES = int(os.environ.get("PREFWRAP_EVAL_EPISODES", 10))
# -------------------------------------------------------------------------------------------------

venv = PreferenceRewardWrapper(make_vec_env(ENV_ID, n_envs=1, seed=SEED))
callback = PreferenceCallback(
    venv,
    oracle=SyntheticOracle(seed=SEED),
    total_labels=TOTAL_LABELS,
    relabel=RELABEL,  # recompute the replay buffer's rewards after each refit
    min_segments=32,  # first query after ~1,000 steps (32 segments of 30 steps)
    seed=SEED,
    verbose=1,
)
model = SAC("MlpPolicy", venv, seed=SEED, **ZOO.algorithm_kwargs())  # SB3 defaults otherwise
model.learn(TOTAL_TIMESTEPS, callback=callback)

mean_return, std_return = evaluate_policy(
    model, make_vec_env(ENV_ID, n_envs=1, seed=SEED + 1000), EVAL_EPISODES
)
print(
    f"{ENV_ID}: true return {mean_return:.1f} ± {std_return:.1f} "
    f"(relabel={RELABEL}, {callback.learner.n_labels} labels; a random policy gets about -1200)"
)
