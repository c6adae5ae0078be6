"""Labels per minute on the web labeling page, and the time from an answer to the next clip playing.

A scripted annotator in headless Chromium (Selenium) watches one loop of each query's 1.5 s clips,
thinks for 1 s, then presses an arrow key, as a person would who looks once and decides. Clips are
real Pendulum-v1 renders (500 x 500, 30 fps). Reported: labels per minute over the run (the
annotator's own waiting sets the ceiling: 60 / 2.5 s = 24/min), and the median time from the key
press to the first frame of the next query drawn on the page (measured inside the page).

Needs ``pip install "prefwrap[web]" selenium`` and Debian's ``chromium chromium-driver``.

Examples:
    python benchmarks/web_labeling.py                 # 20 labels, ~1 min
    python benchmarks/web_labeling.py --labels 40 --screenshot docs/img/web-labeling.png
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from prefwrap.records import Query, Segment
from prefwrap.store import PreferenceStore
from prefwrap.web.server import WebServer

CLIP_SECONDS = 1.5
DECISION_SECONDS = 1.0


def pendulum_clips(n_clips: int, seconds: float, seed: int = 0) -> tuple[list[np.ndarray], float]:
    """``n_clips`` rendered Pendulum-v1 clips of ``seconds`` each, under random torques."""
    env = gym.make("Pendulum-v1", render_mode="rgb_array")
    fps = float(env.metadata["render_fps"])
    length = round(seconds * fps)
    rng = np.random.default_rng(seed)
    clips = []
    for i in range(n_clips):
        env.reset(seed=seed + i)
        bias = rng.uniform(-2, 2)  # each clip swings its own way
        frames = []
        for _ in range(length):
            env.step(np.array([np.clip(bias + rng.normal(0, 0.5), -2, 2)], np.float32))
            frames.append(env.render())
        clips.append(np.stack(frames))
    env.close()
    return clips, fps


def make_store(path: Path, n_queries: int, seconds: float = CLIP_SECONDS) -> Path:
    """A store of ``n_queries`` pending queries of Pendulum clips (clips reused across queries)."""
    clips, fps = pendulum_clips(8, seconds)
    length = len(clips[0])
    zeros = np.zeros((length, 3), np.float32)
    queries = []
    for q in range(n_queries):
        left, right = clips[(2 * q) % len(clips)], clips[(2 * q + 1 + q // 4) % len(clips)]
        queries.append(
            Query(
                q,
                Segment(2 * q, zeros, zeros[:, :1], np.zeros(length, np.float32), length, frames=left),
                Segment(2 * q + 1, zeros, zeros[:, :1], np.zeros(length, np.float32), length, frames=right),
            )
        )
    with PreferenceStore(path) as store:
        store.add_queries(queries)
        store.set_meta("render_fps", str(fps))
    return path


def chromium(width: int = 1280, height: int = 760) -> Any:
    """A headless Chromium driven by Selenium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = shutil.which("chromium") or "chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument(f"--window-size={width},{height}")
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or "chromedriver"), options=options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=20, help="labels the scripted annotator gives")
    parser.add_argument("--screenshot", type=Path, default=None, help="save a screenshot of the page here")
    args = parser.parse_args()

    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    workdir = Path(tempfile.mkdtemp(prefix="prefwrap-web-bench-"))
    path = make_store(workdir / "preferences.sqlite", args.labels + 2)
    server = WebServer(path, port=0).start()
    driver = chromium()
    try:
        driver.get(server.url + "?name=scripted")
        previous, start, keys = None, None, [Keys.ARROW_LEFT, Keys.ARROW_RIGHT, Keys.ARROW_UP]
        for i in range(args.labels):
            while (shown := driver.execute_script("return document.body.dataset.playing")) in (
                None,
                "",
                previous,
            ):
                time.sleep(0.01)
            start = start or time.monotonic()
            previous = shown
            time.sleep(CLIP_SECONDS + DECISION_SECONDS)  # one loop of the clips, then decide
            if args.screenshot is not None and i == 2:
                args.screenshot.parent.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(str(args.screenshot))
            ActionChains(driver).send_keys(keys[i % 3]).perform()
        minutes = (time.monotonic() - start) / 60
        latencies = driver.execute_script("return window.prefwrap.latencies")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with PreferenceStore(path) as store:
                if store.n_labels() >= args.labels:
                    break
            time.sleep(0.2)
        with PreferenceStore(path) as store:
            stored = store.n_labels()
    finally:
        driver.quit()
        server.stop()
    print(f"labels given: {args.labels}, stored: {stored}")
    ceiling = 60 / (CLIP_SECONDS + DECISION_SECONDS)
    print(f"labels per minute: {args.labels / minutes:.1f} (ceiling {ceiling:.0f})")
    print(
        f"answer -> next clip playing: median {statistics.median(latencies):.0f} ms, "
        f"max {max(latencies):.0f} ms over {len(latencies)} answers"
    )


if __name__ == "__main__":
    main()
