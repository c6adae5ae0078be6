"""Four annotators on the web labeling page at once, for minutes, against one training run.

Measured side by side in one run:

1. **The team arm**: PPO on Pendulum-v1 (``record_frames=True``) trains with
   ``HumanOracle(interface="web", overlap=0.1)`` for ``--minutes``. Four simulated annotators, each a
   process of its own speaking plain HTTP to the page's API as the page's script does (open a session,
   ask for the next query, download every clip, think ``--think`` seconds, answer), label whatever the
   run asks. Every answer the server acknowledges is written to the annotator's log first.
2. **The synthetic arm**: the same run, same seed and the same number of env steps, with
   ``SyntheticOracle`` answering at the team's pace (the team's labels per env step: by each step
   the synthetic arm holds as many labels as the team did on average), so both arms fit and query
   on as many labels and the ratio isolates the cost of serving people (the page's server
   process, HTTP, clips). Pacing by wall clock instead would give the slower arm more labels.
   Both arms keep at most ``MAX_PENDING`` queries waiting.

Reported: acknowledged labels missing from the store (must be 0), queries holding two labels or
acknowledged as the label to two annotators (must be 0), labels per minute, and the team arm's
training steps/s ÷ the synthetic arm's.

Needs ``prefwrap[web,mujoco]`` (no browser: the annotators speak HTTP).

Examples:
    python benchmarks/web_soak.py                       # 10 minutes + the synthetic arm
    python benchmarks/web_soak.py --minutes 1 --think 0.2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import command_line, git_commit, machine

N_ANNOTATORS = 4
TOTAL_LABELS = 5000
MAX_PENDING = 2 * (TOTAL_LABELS // 20)  # the learner's default for oracles that show clips


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def annotate(name: str, url: str, think: float, log: Path, stop_at: float, seed: int) -> None:
    """One annotator: label until ``stop_at``; each acknowledged answer is one JSON line in ``log``."""
    import httpx

    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=30) as client, log.open("a") as out:
        session = None
        while time.time() < stop_at:
            try:
                if session is None:
                    session = client.post("/api/session", json={"name": name}).json()["session"]
                query = client.post("/api/next", json={"session": session}).json()["query"]
                if query is None:
                    time.sleep(0.5)  # the run has not asked anything new yet
                    continue
                for position in range(query.get("size", 2)):
                    client.get(f"/api/clip/{query['query_id']}/{position}").raise_for_status()
                time.sleep(think)
                answer = {
                    "session": session,
                    "query_id": query["query_id"],
                    "preference": rng.choice(["left", "right", "equal"]),
                    "seconds": think,
                }
                reply = client.post("/api/answer", json=answer)
            except httpx.TransportError:  # the server is starting or gone: try again shortly
                session = None
                time.sleep(0.5)
                continue
            if reply.status_code == 200:
                body = reply.json()
                record = {**answer, "annotator": name, "role": body["role"], "duplicate": body["duplicate"]}
                out.write(json.dumps(record) + "\n")
                out.flush()


def train(
    arm: str,
    steps: int | None,
    seconds: float | None,
    folder: Path,
    port: int,
    seed: int,
    labels_per_step: float = 0.0,
) -> dict[str, Any]:
    """PPO on Pendulum-v1 through the wrapper: for ``seconds`` (the team arm) or ``steps``; the
    synthetic arm answers ``labels_per_step`` per env step."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    from prefwrap import HumanOracle, PreferenceCallback, PreferenceRewardWrapper, SyntheticOracle
    from prefwrap.store import PreferenceStore

    torch.set_num_threads(1)

    class StopAfter(BaseCallback):
        def _on_step(self) -> bool:
            return seconds is None or time.perf_counter() - start < seconds

    venv = PreferenceRewardWrapper(
        make_vec_env("Pendulum-v1", n_envs=4, seed=seed), record_frames=True, segment_length=25, seed=seed
    )

    class PacedSynthetic(SyntheticOracle):
        """Answers as many queries as ``labels_per_step`` allows so far; the rest wait."""

        answered = 0

        def label(self, queries):  # type: ignore[no-untyped-def]
            allowed = max(0, int(labels_per_step * venv.num_timesteps) - self.answered)
            answers = list(super().label(queries[:allowed]))
            self.answered += len(answers)
            return answers + [None] * (len(queries) - len(answers))

    oracle = (
        HumanOracle(interface="web", port=port, overlap=0.1) if arm == "team" else PacedSynthetic(seed=seed)
    )
    store = folder / f"{arm}.sqlite"
    preference = PreferenceCallback(
        venv,
        oracle,
        total_labels=TOTAL_LABELS,
        store=store,
        total_timesteps=1_000_000,
        min_segments=16,
        seed=seed,
        max_pending=MAX_PENDING,
    )
    model = PPO("MlpPolicy", venv, n_steps=256, seed=seed, device="cpu")
    start = time.perf_counter()
    model.learn(steps or 10_000_000, callback=[preference, StopAfter()])
    elapsed = time.perf_counter() - start
    close = getattr(oracle, "close", None)
    if close is not None:
        close()  # stops the team arm's web server
    with PreferenceStore(store) as opened:
        labels = opened.n_labels()
    return {"steps": model.num_timesteps, "seconds": elapsed, "store": str(store), "labels": labels}


def check(store_path: str, logs: list[Path]) -> dict[str, Any]:
    """Acknowledged answers against the store: lost labels, double labels, labels per annotator."""
    from prefwrap.store import PreferenceStore

    acknowledged = [json.loads(line) for log in logs for line in log.read_text().splitlines()]
    labels_acked = [a for a in acknowledged if a["role"] == "label"]
    with PreferenceStore(store_path) as store:
        stored = {label.query_id: label for label in store.labels()}
        n_queries = store.next_query_id()
    # lost: acknowledged as a label, but the store holds none for the query or another annotator's
    lost = [
        a
        for a in labels_acked
        if a["query_id"] not in stored or stored[a["query_id"]].labeler != f"human:{a['annotator']}"
    ]
    acked_twice = len(labels_acked) - len({a["query_id"] for a in labels_acked})
    return {
        "acknowledged": len(acknowledged),
        "acknowledged_labels": len(labels_acked),
        "second_opinions": len(acknowledged) - len(labels_acked),
        "stored_labels": len(stored),
        "queries": n_queries,
        "lost": len(lost),
        "labelled_twice": acked_twice,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument(
        "--think", type=float, default=1.0, help="seconds each annotator looks before answering"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="prefwrap-soak-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    seconds = args.minutes * 60
    stop_at = time.time() + seconds
    logs = [folder / f"annotator{k}.jsonl" for k in range(N_ANNOTATORS)]
    context = multiprocessing.get_context("spawn")
    annotators = [
        context.Process(target=annotate, args=(f"annotator{k}", url, args.think, logs[k], stop_at, k))
        for k in range(N_ANNOTATORS)
    ]
    for process in annotators:
        process.start()
    team = train("team", None, seconds, folder, port, args.seed)
    for process in annotators:
        process.join()
    result = check(team["store"], logs)
    pace = team["labels"] / team["steps"]
    synthetic = train("synthetic", team["steps"], None, folder, port, args.seed, pace)
    team_rate, synthetic_rate = team["steps"] / team["seconds"], synthetic["steps"] / synthetic["seconds"]
    print(
        f"## Web labeling soak: {N_ANNOTATORS} annotators over HTTP, {args.minutes:g} min\n\n"
        f"`{command_line()}` at {git_commit()} on {machine()}\n\n"
        f"- acknowledged answers: {result['acknowledged']} ({result['acknowledged_labels']} labels, "
        f"{result['second_opinions']} second opinions); stored labels: {result['stored_labels']} of "
        f"{result['queries']} queries asked\n"
        f"- **labels lost: {result['lost']}**, **queries acknowledged as labelled twice: "
        f"{result['labelled_twice']}**\n"
        f"- labels per minute (all annotators): {result['acknowledged_labels'] / args.minutes:.1f}\n"
        f"- training: team arm {team_rate:.0f} steps/s, synthetic arm {synthetic_rate:.0f} steps/s "
        f"({synthetic['steps']:,} steps each; labels: team {team['labels']}, synthetic "
        f"{synthetic['labels']}): **{team_rate / synthetic_rate:.3f}x**\n"
    )


if __name__ == "__main__":
    main()
