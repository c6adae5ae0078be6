"""The web labeling page: annotators label a run's queries in a browser (see ``docs/oracles-human.md``).

FastAPI and uvicorn (``pip install "prefwrap[web]"``) are imported only when a page is created, so
``import prefwrap.web`` works without them.

- :func:`serve`: ``prefwrap label RUN_DIR --web`` (blocks until Ctrl-C).
- :class:`WebServer`: the page in a thread of this process; :func:`create_app`: the ASGI app itself.
- :func:`~prefwrap.web.agreement.report`: ``prefwrap annotators RUN_DIR``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["WebServer", "create_app", "report", "serve"]


def __getattr__(name: str) -> Any:
    # lazy: prefwrap.web.app imports nothing heavy at module level, but keep `import prefwrap.web` cheap
    if name == "create_app":
        from prefwrap.web.app import create_app

        return create_app
    if name in ("serve", "WebServer"):
        from prefwrap.web import server

        return getattr(server, name)
    if name == "report":
        from prefwrap.web.agreement import report

        return report
    raise AttributeError(f"module 'prefwrap.web' has no attribute {name!r}")
