"""Labels per minute on the web labeling page and in the pygame window, side by side in one run,
and the time from an answer to the next clip playing.

The same scripted annotator labels the same queries in both: it watches one loop of each query's
1.5 s clips, thinks for 1 s, then presses an arrow key, as a person would who looks once and
decides. On the page it is headless Chromium (Selenium); in the window, a real pygame window under
Xvfb that receives real X key presses (xdotool). Clips are real Pendulum-v1 renders (500 x 500,
30 fps). Reported per interface: labels per minute (the annotator's own waiting sets the ceiling:
60 / 2.5 s = 24/min), and the median time from the key press to the first frame of the next query
drawn (measured inside the page; in the window, from the key sent to the next query's first frame).

Needs ``pip install "prefwrap[web]" selenium`` and Debian's ``chromium chromium-driver xvfb xdotool``.

Examples:
    python benchmarks/web_labeling.py                 # 20 labels per interface, ~2 min
    python benchmarks/web_labeling.py --labels 40 --screenshot docs/img/web-labeling.png
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
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


def web_arm(path: Path, n_labels: int, screenshot: Path | None) -> tuple[float, list[float], int]:
    """The scripted annotator on the page: labels per minute, latencies (ms), labels stored."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    server = WebServer(path, port=0).start()
    driver = chromium()
    try:
        driver.get(server.url + "?name=scripted")
        previous, start, keys = None, None, [Keys.ARROW_LEFT, Keys.ARROW_RIGHT, Keys.ARROW_UP]
        for i in range(n_labels):
            while (shown := driver.execute_script("return document.body.dataset.playing")) in (
                None,
                "",
                previous,
            ):
                time.sleep(0.01)
            start = start or time.monotonic()
            previous = shown
            time.sleep(CLIP_SECONDS + DECISION_SECONDS)  # one loop of the clips, then decide
            if screenshot is not None and i == 2:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(str(screenshot))
            ActionChains(driver).send_keys(keys[i % 3]).perform()
        minutes = (time.monotonic() - start) / 60
        latencies = driver.execute_script("return window.prefwrap.latencies")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with PreferenceStore(path) as store:
                if store.n_labels() >= n_labels:
                    break
            time.sleep(0.2)
        with PreferenceStore(path) as store:
            stored = store.n_labels()
    finally:
        driver.quit()
        server.stop()
    return n_labels / minutes, latencies, stored


@contextmanager
def xvfb() -> Iterator[str]:
    """A virtual X server on a free display; yields its name (``":N"``)."""
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", "1", "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert server.stdout is not None
        number = server.stdout.readline().decode().strip()
        if not number.isdigit():
            raise SystemExit(f"Xvfb did not start (exit code {server.poll()}): apt-get install -y xvfb")
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def window_arm(path: Path, n_labels: int) -> tuple[float, list[float], int]:
    """The scripted annotator in the pygame window under Xvfb, pressing real keys with xdotool."""
    with xvfb() as display:
        os.environ.update(DISPLAY=display, SDL_VIDEODRIVER="x11")
        import pygame

        from prefwrap.oracles.human import run_labeling_session
        from prefwrap.oracles.labeling_window import LabelingWindow

        state: dict[str, Any] = {"query": None, "shown_at": 0.0, "sent_at": None, "given": 0}
        latencies: list[float] = []
        marks: list[float] = []

        def on_frame(window: LabelingWindow) -> None:
            now = time.monotonic()
            if window.query is not state["query"]:  # the first frame of a new query is on screen
                state["query"], state["shown_at"] = window.query, now
                marks.append(now)
                if state["sent_at"] is not None:
                    latencies.append(1000 * (now - state["sent_at"]))
                    state["sent_at"] = None
            ready = now - state["shown_at"] >= CLIP_SECONDS + DECISION_SECONDS
            if ready and state["sent_at"] is None and window.query is not None:
                key = ("Left", "Right", "Up")[state["given"] % 3] if state["given"] < n_labels else "Escape"
                state["given"] += 1
                window_id = str(pygame.display.get_wm_info()["window"])
                subprocess.run(["xdotool", "windowfocus", "--sync", window_id, "key", key], check=True)
                state["sent_at"] = time.monotonic()  # the key is in the X server's queue now

        window = LabelingWindow(fps=30, on_frame=on_frame)
        stored = run_labeling_session(path, labeler="scripted", window=window)
        pygame.display.quit()
    minutes = (marks[n_labels] - marks[0]) / 60  # from the first query shown to the one after the last label
    return n_labels / minutes, latencies[:n_labels], stored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=20, help="labels the scripted annotator gives")
    parser.add_argument("--screenshot", type=Path, default=None, help="save a screenshot of the page here")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="prefwrap-web-bench-"))
    ceiling = 60 / (CLIP_SECONDS + DECISION_SECONDS)
    arms = {
        "web page (headless Chromium)": web_arm(
            make_store(workdir / "web.sqlite", args.labels + 2), args.labels, args.screenshot
        ),
        "pygame window (Xvfb, xdotool)": window_arm(
            make_store(workdir / "window.sqlite", args.labels + 2), args.labels
        ),
    }
    print(f"{args.labels} labels per interface; ceiling {ceiling:.0f} labels/min\n")
    print("| interface | labels/min | stored | answer -> next clip drawn: median (max) ms |")
    print("|---|---|---|---|")
    for name, (rate, latencies, stored) in arms.items():
        print(
            f"| {name} | {rate:.1f} | {stored} | {statistics.median(latencies):.0f} ({max(latencies):.0f}) |"
        )


if __name__ == "__main__":
    main()
