"""The screen: rendering without one, and the labeling windows that need one."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from prefwrap.cli.config import UsageError


def headless_rendering() -> None:
    """Render without a screen: MuJoCo through EGL when there is no display (servers, CI); pygame-
    rendered envs (classic control) with no audio device and a runtime dir, so SDL prints no errors.

    Call it before MuJoCo or pygame is imported: both read these variables once, at import.
    """
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    if sys.platform.startswith("linux"):
        if not os.environ.get("DISPLAY"):
            os.environ.setdefault("MUJOCO_GL", "egl")
        if not os.environ.get("XDG_RUNTIME_DIR"):
            runtime = Path(tempfile.gettempdir()) / f"prefwrap-runtime-{os.getuid()}"
            runtime.mkdir(mode=0o700, exist_ok=True)
            os.environ["XDG_RUNTIME_DIR"] = str(runtime)


def check_display(what: str) -> None:
    """A labeling window needs a screen: fail before training, not at the first query.

    Raises:
        UsageError: Linux without ``DISPLAY``, ``WAYLAND_DISPLAY`` or ``SDL_VIDEODRIVER``.
    """
    headless = sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("SDL_VIDEODRIVER")
    )
    if headless:
        raise UsageError(
            f"{what} opens a window, but there is no display (DISPLAY is not set): run it on a desktop, "
            "or train with --oracle file:PATH and answer with prefwrap label/export elsewhere"
        )
