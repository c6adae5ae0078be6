"""The web labeling page in a real browser (headless Chromium via Selenium), driven by key presses.

Needs Debian's ``chromium`` and ``chromium-driver`` and ``pip install selenium``; skipped otherwise.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from prefwrap.records import Preference, Ranking
from prefwrap.store import PreferenceStore

pytest.importorskip("fastapi", reason='the web page needs fastapi: pip install "prefwrap[web]"')
webdriver = pytest.importorskip(
    "selenium.webdriver", reason="browser tests need selenium: pip install selenium"
)
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from test_web import make_ranked_store, make_store  # noqa: E402

from prefwrap.web.server import WebServer  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="no chromium/chromedriver: apt-get install -y chromium chromium-driver",
)
KEY_ANSWERS = {
    Keys.ARROW_LEFT: Preference.LEFT,
    Keys.ARROW_RIGHT: Preference.RIGHT,
    Keys.ARROW_UP: Preference.EQUAL,
    Keys.SPACE: Preference.EQUAL,
    Keys.ARROW_DOWN: Preference.SKIP,
}


@pytest.fixture
def browser() -> Iterator[Callable[[], Any]]:
    """Start headless Chromium windows on demand; all are closed at the end."""
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    drivers = []

    def start() -> Any:
        options = Options()
        options.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,760"):  # fmt: skip
            options.add_argument(arg)
        try:
            driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        except Exception as error:  # a broken install is an environment problem, not a page bug
            pytest.skip(f"chromium does not start: {error}")
        drivers.append(driver)
        return driver

    yield start
    for driver in drivers:
        driver.quit()


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def playing(driver: Any) -> int | None:
    """The query whose clips are on screen and playing, or ``None``."""
    value = driver.execute_script("return document.body.dataset.queryId && document.body.dataset.playing")
    return int(value) if value else None


def label_next(driver: Any, key: str, previous: int | None) -> int:
    """Wait until a query other than ``previous`` plays, press ``key``; returns the query answered."""
    try:
        (query_id,) = wait_for(
            lambda: (q := playing(driver)) is not None and q != previous and (q,),
            timeout=30,
            what="next clip",
        )
    except AssertionError as error:  # say what the page shows
        raise AssertionError(f"{error}; page: {driver.execute_script(PAGE_STATE)}") from None
    ActionChains(driver).send_keys(key).perform()
    return query_id


PAGE_STATE = (
    "return JSON.stringify({data: document.body.dataset, progress: document.getElementById('progress')"
    ".textContent, message: document.getElementById('message').textContent, filling: window.prefwrap.state"
    ".filling, current: window.prefwrap.state.current && window.prefwrap.state.current.id})"
)


def n_labels(path: Path) -> int:
    with PreferenceStore(path) as store:
        return store.n_labels()


def test_twelve_labels_by_key_presses_land_in_the_store(tmp_path: Path, browser: Callable[[], Any]) -> None:
    path = make_store(tmp_path / "preferences.sqlite", 12)
    server = WebServer(path, port=0, undo_seconds=0.5).start()
    try:
        driver = browser()
        driver.get(server.url)
        driver.find_element("id", "name").send_keys("alice", Keys.ENTER)  # the name form, typed
        keys = list(KEY_ANSWERS) * 3
        given, previous = {}, None
        for key in keys[:12]:
            previous = label_next(driver, key, previous)
            given[previous] = KEY_ANSWERS[key]
        wait_for(lambda: n_labels(path) == 12, what="12 labels in the store")
        wait_for(
            lambda: "12 labelled, 0 waiting" in driver.find_element("id", "progress").text, what="progress"
        )
    finally:
        server.stop()
    with PreferenceStore(path) as store:
        labels = store.labels()
    assert {label.query_id: label.preference for label in labels} == given
    assert {label.labeler for label in labels} == {"human:alice"}


def test_undo_takes_back_the_last_answer_before_it_is_stored(
    tmp_path: Path, browser: Callable[[], Any]
) -> None:
    path = make_store(tmp_path / "preferences.sqlite", 3)
    server = WebServer(path, port=0, undo_seconds=3).start()
    try:
        driver = browser()
        driver.get(server.url + "?name=bob")
        first = label_next(driver, Keys.ARROW_LEFT, None)
        wait_for(lambda: playing(driver) not in (None, first), what="the second clip")
        ActionChains(driver).send_keys("u").perform()
        wait_for(lambda: playing(driver) == first, what="the undone query again")
        assert "undone" in driver.find_element("id", "last").text and n_labels(path) == 0
        label_next(driver, Keys.ARROW_RIGHT, None)
        wait_for(lambda: "saved" in driver.find_element("id", "last").text, what="saved", timeout=10)
    finally:
        server.stop()
    with PreferenceStore(path) as store:
        assert [(x.query_id, x.preference) for x in store.labels()] == [(first, Preference.RIGHT)]


def test_two_browsers_label_at_once_and_no_query_is_answered_twice(
    tmp_path: Path, browser: Callable[[], Any]
) -> None:
    path = make_store(tmp_path / "preferences.sqlite", 16)
    server = WebServer(path, port=0, undo_seconds=0.3).start()
    try:
        drivers = [browser(), browser()]
        for driver, name in zip(drivers, ("alice", "bob"), strict=True):
            driver.get(server.url + f"?name={name}")
        previous: list[int | None] = [None, None]
        answered: list[list[int]] = [[], []]
        deadline = time.monotonic() + 60
        while n_labels(path) < 16 and time.monotonic() < deadline:
            for i, driver in enumerate(drivers):
                query_id = playing(driver)
                if query_id is not None and query_id != previous[i]:
                    ActionChains(driver).send_keys(Keys.ARROW_LEFT if i else Keys.ARROW_RIGHT).perform()
                    previous[i] = query_id
                    answered[i].append(query_id)
            time.sleep(0.05)
        wait_for(lambda: n_labels(path) == 16, what="16 labels")
        saved = [driver.execute_script("return window.prefwrap.saved") for driver in drivers]
    finally:
        server.stop()
    assert not set(answered[0]) & set(answered[1]) and answered[0] and answered[1]
    assert sorted(saved[0] + saved[1]) == list(range(16))
    with PreferenceStore(path) as store:
        by_query = {label.query_id: label.labeler for label in store.labels()}
    assert {q for q, who in by_query.items() if who == "human:alice"} == set(answered[0])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server_process(path: Path, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "prefwrap.web", str(path), "--port", str(port), "--undo-seconds", "0"],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )

    def up() -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    wait_for(up, timeout=60, what="the server process")
    return process


def test_kill_9_mid_session_loses_no_acknowledged_label(tmp_path: Path, browser: Callable[[], Any]) -> None:
    path = make_store(tmp_path / "preferences.sqlite", 30)
    port = free_port()
    process = start_server_process(path, port)
    try:
        driver = browser()
        driver.get(f"http://127.0.0.1:{port}/?name=carol")
        previous = None
        for _ in range(8):  # labelling at full speed when the server dies
            previous = label_next(driver, Keys.ARROW_LEFT, previous)
        process.kill()  # SIGKILL: no shutdown code runs
        process.wait(timeout=10)
        acknowledged = driver.execute_script("return window.prefwrap.saved")
        assert len(acknowledged) >= 6
        with PreferenceStore(path) as store:
            stored = {label.query_id for label in store.labels()}
        assert set(acknowledged) <= stored and len(stored) == len(set(stored))
        process = start_server_process(path, port)  # the same page goes on against the new server
        for _ in range(3):
            previous = label_next(driver, Keys.ARROW_RIGHT, previous)
        wait_for(lambda: n_labels(path) >= len(stored) + 3, what="labels after the restart")
    finally:
        process.kill()
        process.wait(timeout=10)
    with PreferenceStore(path) as store:
        labels = store.labels()
    assert len({label.query_id for label in labels}) == len(labels)  # none answered twice
    assert set(driver.execute_script("return window.prefwrap.saved")) <= {label.query_id for label in labels}


def badges(driver: Any) -> list[str | None]:
    """The rank shown above each clip on the page (``None``: no badge)."""
    return driver.execute_script(
        "return [...document.querySelectorAll('#clips .rank')].map((b) => b.hidden ? null : b.textContent)"
    )


def test_three_clips_ranked_by_key_presses_land_in_the_store(
    tmp_path: Path, browser: Callable[[], Any]
) -> None:
    path = make_ranked_store(tmp_path / "preferences.sqlite", 5, 3)
    server = WebServer(path, port=0, undo_seconds=2).start()
    sequences = [
        ["3", "1"],
        ["2", Keys.SPACE],  # the rest equal
        ["1", "u", "3", "=", "2"],  # undo a step; 3 and 2 tied best
        ["2", Keys.ARROW_DOWN],  # skip
        ["1", "2"],  # complete... then undone below, before it is sent
    ]
    try:
        driver = browser()
        driver.get(server.url + "?name=alice")
        for query_id, keys in enumerate(sequences):
            wait_for(lambda q=query_id: playing(driver) == q, timeout=30, what=f"query {query_id}")
            assert driver.execute_script("return document.querySelectorAll('#clips canvas').length") == 3
            for key in keys:
                ActionChains(driver).send_keys(key).perform()
                if query_id == 0 and key == "3":  # what the page shows after one key
                    assert badges(driver) == [None, None, "1st"]
                    assert driver.find_element("id", "ranking").text == "so far: 3"
                if query_id == 2 and key == "=":
                    assert badges(driver) == [None, None, "1st"]
                    assert driver.find_element("id", "ranking").text == "so far: 3 = ..."
        ActionChains(driver).send_keys("u").perform()  # the last answer is held: undo gives its query back
        wait_for(lambda: playing(driver) == 4 and badges(driver) == ["1st", None, None], what="query 4 again")
        assert "undone" in driver.find_element("id", "last").text
        ActionChains(driver).send_keys("3").perform()
        wait_for(lambda: n_labels(path) == 5, what="5 labels in the store")
    finally:
        server.stop()
    with PreferenceStore(path) as store:
        labels = store.labels()
    assert {label.query_id: label.preference for label in labels} == {
        0: Ranking([[2], [0], [1]]),
        1: Ranking([[1], [0, 2]]),
        2: Ranking([[1, 2], [0]]),
        3: Preference.SKIP,
        4: Ranking([[0], [2], [1]]),
    }
    assert {label.labeler for label in labels} == {"human:alice"}
