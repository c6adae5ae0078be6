"""You teach PPO to swing a pendulum up, by watching pairs of 1.5 s clips and pressing a key.

A pygame window shows two clips side by side, looping: left arrow = the left clip is better, right
arrow = the right one, up or space = equally good, down = can't tell, r = replay, Esc = pause. Training
waits while you label; each answer is stored at once in ``runs/human_labeling/preferences.sqlite``,
so stopping and rerunning loses nothing. Aim for the pendulum pointing up and staying still:
~100 labels (about 10 minutes of your time) are enough.

    pip install "prefwrap[human]"
    python examples/human_labeling.py
    # tests: a script presses the keys (no screen needed)
    SDL_VIDEODRIVER=dummy PREFWRAP_SCRIPTED_LABELER=1 PREFWRAP_STEPS=2048 PREFWRAP_LABELS=6 \
        python examples/human_labeling.py
"""

import os

from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from prefwrap import HumanOracle, PreferenceCallback, PreferenceRewardWrapper
from prefwrap.cli.hyperparams import resolve
from prefwrap.oracles.labeling_window import LabelingWindow

# ---- config -------------------------------------------------------------------------------------
ENV_ID = "Pendulum-v1"
ZOO = resolve("ppo", ENV_ID, atari=False)  # rl-baselines3-zoo's tuned values for PPO on it
TOTAL_TIMESTEPS = int(os.environ.get("PREFWRAP_STEPS", 50_000))
TOTAL_LABELS = int(os.environ.get("PREFWRAP_LABELS", 100))
N_ENVS = int(os.environ.get("PREFWRAP_N_ENVS", ZOO.n_envs))
SEED = 0
EVAL_EPISODES = int(os.environ.get("PREFWRAP_EVAL_EPISODES", 10))
OUT_DIR = "runs/human_labeling"
PPO_KWARGS = ZOO.algorithm_kwargs()  # n_steps=1024, gamma=0.9, use_sde=True, ... (ppo.yml)
# -------------------------------------------------------------------------------------------------


# record_frames keeps each step's pendulum angle and draws only the clips you are shown.
venv = PreferenceRewardWrapper(make_vec_env(ENV_ID, n_envs=N_ENVS, seed=SEED), record_frames=True)

oracle = HumanOracle(fps=30, labeler="you")
if os.environ.get("PREFWRAP_SCRIPTED_LABELER"):  # tests only: a script presses the key a careful person would
    import pygame

    last = {"query": None}

    def press_key(window: LabelingWindow) -> None:
        query = window.query
        if query is not None and query is not last["query"]:
            last["query"] = query
            better = pygame.K_LEFT if query.left.true_return >= query.right.true_return else pygame.K_RIGHT
            pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=better))

    oracle.window = LabelingWindow(fps=30, on_frame=press_key)

callback = PreferenceCallback(
    venv, oracle, total_labels=TOTAL_LABELS, store=f"{OUT_DIR}/preferences.sqlite", seed=SEED, verbose=1
)
model = PPO("MlpPolicy", venv, seed=SEED, **PPO_KWARGS)
model.learn(TOTAL_TIMESTEPS, callback=callback)
oracle.close()
model.save(f"{OUT_DIR}/policy.zip")
callback.wrapper.save_reward_model(f"{OUT_DIR}/reward_model.pt")

mean_return, std_return = evaluate_policy(
    model, make_vec_env(ENV_ID, n_envs=1, seed=SEED + 1000), EVAL_EPISODES
)
print(
    f"{ENV_ID}: true return {mean_return:.1f} ± {std_return:.1f} from your {callback.learner.n_labels} labels"
)
