"""Which key does what in the labeling window, and the key help it draws.

Kept apart from the drawing (:mod:`prefwrap.oracles.labeling_window`) so that the whole key map
reads in one place; the web page (``prefwrap/web/static/labeling.js``) uses the same keys.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ARROWS", "key_action", "key_help"]

ARROWS = {
    "left": ((-0.8, 0.0), (0.6, -0.7), (0.6, 0.7)),
    "right": ((0.8, 0.0), (-0.6, -0.7), (-0.6, 0.7)),
    "up": ((0.0, -0.8), (-0.7, 0.6), (0.7, 0.6)),
    "down": ((0.0, 0.8), (-0.7, -0.6), (0.7, -0.6)),
}
"""Unit triangles (pointing left/right/up/down) drawn in the arrow key caps."""


def key_action(pg: Any, event: Any, n_clips: int) -> tuple[str, int] | None:
    """What a key press asks for, or ``None`` for a key with no use.

    Args:
        pg: The pygame module.
        event: A ``KEYDOWN`` event.
        n_clips: ``K``, the clips on screen (the arrows left and right name a pair's clips).

    Returns:
        ``(action, position)``: ``"place"`` with the clip's position (from 0; ``1`` is position 0),
        or ``"tie"``, ``"rest"``, ``"undo"``, ``"skip"``, ``"replay"`` with position ``-1``.

    Digits and ``=`` are read from the typed character first, so that they work on layouts where
    they need Shift (AZERTY digits, ``=`` on QWERTZ); posted test events carry only the key code.
    """
    typed = getattr(event, "unicode", "")
    if len(typed) == 1 and typed in "123456789":
        return "place", int(typed) - 1
    if pg.K_1 <= event.key <= pg.K_9:
        return "place", event.key - pg.K_1
    if pg.K_KP1 <= event.key <= pg.K_KP9:
        return "place", event.key - pg.K_KP1
    if typed == "=" or event.key in (pg.K_EQUALS, pg.K_KP_EQUALS):
        return "tie", -1
    if n_clips == 2 and event.key in (pg.K_LEFT, pg.K_RIGHT):
        return "place", 0 if event.key == pg.K_LEFT else 1
    actions = {pg.K_UP: "rest", pg.K_SPACE: "rest", pg.K_DOWN: "skip", pg.K_u: "undo",
               pg.K_BACKSPACE: "undo", pg.K_r: "replay"}  # fmt: skip
    return (actions[event.key], -1) if event.key in actions else None


def key_help(n_clips: int) -> tuple[tuple[tuple[str, str], ...], ...]:
    """Rows of ``(key cap, what it does)`` for the window's footer; arrow caps are named by direction.

    A pair shows the arrow keys it has always had; a larger query the ranking keys.
    """
    if n_clips == 2:
        return (
            (("left", "LEFT is better"), ("right", "RIGHT is better"), ("up", "/"), ("Space", "EQUAL")),
            (("down", "SKIP (can't tell)"), ("R", "replay"), ("Esc", "pause / quit")),
        )
    return (
        (("1", "-"), (str(n_clips), "next best clip"), ("=", "ties the next one with the last ranked")),
        (("Space", "rest equal"), ("U", "undo"), ("down", "SKIP (can't tell)"), ("R", "replay"),
         ("Esc", "pause / quit")),
    )  # fmt: skip
