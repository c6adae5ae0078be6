"""Labels from an annotation tool: queries go out as video clips, answers come back in a labels file.

prefwrap writes every query to its preference store. Your tooling exports the pending ones as
side-by-side clips (``export_queries``, or ``prefwrap export RUN_DIR``), people answer, and the
answers land in a JSONL file that ``FileOracle`` reads while training runs (schema in
docs/oracles-file.md). Here a background thread plays the annotation team: it exports each query
and answers from the true reward. Replace ``annotation_team`` with your tool.

    python examples/labels_from_file.py
    PREFWRAP_STEPS=2048 PREFWRAP_LABELS=6 python examples/labels_from_file.py   # smoke test
"""

import json
import os
import threading

from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from prefwrap import FileOracle, PreferenceCallback, PreferenceRewardWrapper, PreferenceStore
from prefwrap.cli.hyperparams import resolve
from prefwrap.oracles.export import export_queries

# ---- config -------------------------------------------------------------------------------------
ENV_ID = "Pendulum-v1"
ZOO = resolve("ppo", ENV_ID, atari=False)  # rl-baselines3-zoo's tuned values for PPO on it
TOTAL_TIMESTEPS = int(os.environ.get("PREFWRAP_STEPS", 50_000))
TOTAL_LABELS = int(os.environ.get("PREFWRAP_LABELS", 200))
N_ENVS = int(os.environ.get("PREFWRAP_N_ENVS", ZOO.n_envs))
SEED = 0
EVAL_EPISODES = int(os.environ.get("PREFWRAP_EVAL_EPISODES", 10))
OUT_DIR = "runs/labels_from_file"
STORE = f"{OUT_DIR}/preferences.sqlite"
LABELS_FILE = f"{OUT_DIR}/labels.jsonl"  # where the annotation tool writes its answers
CLIPS_DIR = f"{OUT_DIR}/clips"  # what the annotators watch
PPO_KWARGS = ZOO.algorithm_kwargs()  # n_steps=1024, gamma=0.9, use_sde=True, ... (ppo.yml)
# -------------------------------------------------------------------------------------------------


def annotation_team(stop: threading.Event) -> None:
    """Stand-in for people: exports each new pending query as a clip, then appends an answer line."""
    answered: set[int] = set()
    batch = 0
    while not stop.wait(0.2):
        with PreferenceStore(STORE) as store:  # its own connection: one store per thread
            queries = [query for query in store.pending_queries() if query.query_id not in answered]
        if not queries:
            continue
        export_queries(queries, f"{CLIPS_DIR}/batch-{batch:03d}", fps=30, fmt="mp4")
        batch += 1
        with open(LABELS_FILE, "a", encoding="utf-8") as file:
            for query in queries:  # a real team would watch the clip; this one peeks at the true reward
                label = "left" if query.left.true_return >= query.right.true_return else "right"
                file.write(json.dumps({"query_id": query.query_id, "label": label, "labeler": "team"}) + "\n")
                answered.add(query.query_id)


os.makedirs(OUT_DIR, exist_ok=True)
# record_frames: each step's state is kept; the exported clips are drawn from it on demand
venv = PreferenceRewardWrapper(make_vec_env(ENV_ID, n_envs=N_ENVS, seed=SEED), record_frames=True)

# needs_frames: only segments whose frames are still kept are asked about, so each can be exported.
# timeout: each query round waits up to 60 s for the file to answer it (unanswered queries stay
# pending and are asked again at the next rollout end).
oracle = FileOracle(LABELS_FILE, needs_frames=True, timeout=60, poll_interval=0.2)
callback = PreferenceCallback(venv, oracle, total_labels=TOTAL_LABELS, store=STORE, seed=SEED, verbose=1)

stop = threading.Event()
team = threading.Thread(target=annotation_team, args=(stop,), daemon=True)
team.start()
model = PPO("MlpPolicy", venv, seed=SEED, **PPO_KWARGS)
try:
    model.learn(TOTAL_TIMESTEPS, callback=callback)
finally:
    stop.set()
    team.join()

mean_return, std_return = evaluate_policy(
    model, make_vec_env(ENV_ID, n_envs=1, seed=SEED + 1000), EVAL_EPISODES
)
print(
    f"{ENV_ID}: true return {mean_return:.1f} ± {std_return:.1f} from {callback.learner.n_labels} file labels"
)
