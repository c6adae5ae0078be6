"""Running the labeling page: in the foreground (``prefwrap label RUN_DIR --web``), in a thread or
in a process of its own (``HumanOracle(interface="web")``), with the token rules for remote access.

The page serves a run directory, a store file, or a ``postgresql://`` store URL: the team set-up,
where the trainer, the page and the annotators are on different machines.
"""

from __future__ import annotations

import ipaddress
import multiprocessing
import os
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefwrap.store.database import is_postgres_url
from prefwrap.store.errors import StoreError
from prefwrap.store.postgres_database import redact_url
from prefwrap.web.app import create_app

__all__ = ["WebServer", "page_url", "resolve_store", "serve", "start_server_process", "token_for"]

STORE_FILE = "preferences.sqlite"
"""The store's name inside a run directory (as ``prefwrap.cli.run_dir`` names it)."""


def resolve_store(run_dir_or_store: str | os.PathLike[str]) -> str:
    """What :class:`~prefwrap.store.PreferenceStore` opens for a run directory, store file or store URL.

    A ``postgresql://`` URL is returned as given: the page reaches its server when it opens the
    store, and a new schema gets the store's tables then (a label server may start before the trainer).

    Raises:
        FileNotFoundError: Neither a URL, a run directory with ``preferences.sqlite``, nor a file.
    """
    if is_postgres_url(run_dir_or_store):
        return str(run_dir_or_store)
    path = Path(run_dir_or_store)
    if path.is_dir():
        path = path / STORE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no preference store at {path}: start training first (prefwrap train ...)")
    return str(path)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (``127.0.0.1``, ``::1``, ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to a public interface
        return False


def token_for(host: str, token: str | None) -> str | None:
    """The token a server on ``host`` uses: the given one; a fresh one for a non-loopback host;
    none for a loopback host (only this machine's users can reach it)."""
    if token is not None:
        return token
    return None if is_loopback(host) else secrets.token_urlsafe(16)


def page_url(host: str, port: int, token: str | None) -> str:
    """The link to open (with the token, when there is one)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    shown = f"[{shown}]" if ":" in shown else shown
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def serve(
    run_dir_or_store: str | os.PathLike[str],
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    overlap: float = 0.0,
    *,
    lease_seconds: float = 60.0,
    undo_seconds: float = 4.0,
    announce: Callable[[str], None] = print,
    ready: Any = None,
) -> None:
    """Serve the labeling page of a run until interrupted (Ctrl-C).

    A host other than loopback gets a token (``token`` or a fresh one), printed once in the link.

    Args:
        run_dir_or_store: A run directory, its store file, or a ``postgresql://`` store URL.
        host: Interface to bind; the default is reachable from this machine only.
        port: TCP port.
        token: Secret for the API; ``None`` makes one for a non-loopback host.
        overlap: Fraction of queries shown to two annotators.
        lease_seconds: How long a silent page keeps its queries.
        undo_seconds: How long the page holds an answer back for undo.
        announce: Where the link is written.
        ready: A ``multiprocessing.Event`` set once the port is open (for a parent process).

    Raises:
        FileNotFoundError: No store at ``run_dir_or_store``.
        ImportError: fastapi or uvicorn is not installed, or psycopg for a URL (``postgres`` extra).
        StoreError: Not a prefwrap store, or its database server cannot be reached (one line).
        OSError: The port cannot be bound.
    """
    server = WebServer(
        run_dir_or_store, host, port, token, overlap, lease_seconds=lease_seconds, undo_seconds=undo_seconds
    )
    server.start()
    announce(f"Labeling page: {server.url}")
    if is_postgres_url(server.store_location):  # a mistyped schema would be a new, empty store: show it
        announce(f"Preference store: {redact_url(server.store_location)}")
    if not is_loopback(host):
        announce("Anyone with this link can label: share it only with your annotators.")
    if ready is not None:
        ready.set()
    try:
        while server.is_alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


class WebServer:
    """The page served by uvicorn in a background thread of this process.

    Args:
        run_dir_or_store, host, port, token, overlap, lease_seconds, undo_seconds: As for :func:`serve`;
            ``port=0`` picks a free port (see :attr:`port` after :meth:`start`).

    Attributes:
        store_location: The store served: its file or its URL (see :func:`resolve_store`).
        token: The token in use (``None`` for loopback without one).
        port: The bound port, after :meth:`start`.

    Raises:
        FileNotFoundError: No store at ``run_dir_or_store``.
        ImportError: fastapi or uvicorn is not installed (the message names ``prefwrap[web]``), or
            psycopg for a PostgreSQL URL (the message names ``prefwrap[postgres]``).
        StoreError: Not a prefwrap store, or its database server cannot be reached.

    Example:
        >>> server = WebServer("runs/pendulum", port=0).start()  # doctest: +SKIP
        >>> server.url  # doctest: +SKIP
        'http://127.0.0.1:41327/'
    """

    def __init__(
        self,
        run_dir_or_store: str | os.PathLike[str],
        host: str = "127.0.0.1",
        port: int = 8765,
        token: str | None = None,
        overlap: float = 0.0,
        *,
        lease_seconds: float = 60.0,
        undo_seconds: float = 4.0,
    ) -> None:
        try:
            import uvicorn
        except ImportError as err:
            raise ImportError(
                'The web labeling page needs fastapi and uvicorn: pip install "prefwrap[web]"'
            ) from err
        self.store_location = resolve_store(run_dir_or_store)
        self.host = host
        self.port = port
        self.token = token_for(host, token)
        app = create_app(
            self.store_location,
            token=self.token,
            overlap=overlap,
            lease_seconds=lease_seconds,
            undo_seconds=undo_seconds,
        )
        self.app = app
        # log_level warning: one line per request would bury the trainer's console
        self._server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The link to the page, with the token."""
        return page_url(self.host, self.port, self.token)

    def start(self, timeout: float = 20.0) -> WebServer:
        """Open the port and serve in a daemon thread; returns once requests are accepted.

        Raises:
            OSError: The server did not start (port in use) within ``timeout`` seconds.
        """
        self._thread = threading.Thread(target=self._server.run, name="prefwrap-web", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"the labeling page could not listen on {self.host}:{self.port} (port in use?)")
            time.sleep(0.02)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def is_alive(self) -> bool:
        """Whether the server thread still runs."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Stop serving (open requests finish) and close the store."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)


def start_server_process(
    store_path: str | os.PathLike[str], **kwargs: Any
) -> multiprocessing.process.BaseProcess:
    """Serve the page from a process of its own, so that encoding clips never slows training down.

    Args:
        store_path: The run's store: its file or its ``postgresql://`` URL.
        **kwargs: Passed to :func:`serve` (``host``, ``port``, ``token``, ``overlap``, ...).

    Returns:
        The started daemon process; the page accepts requests when this returns.

    Raises:
        OSError: The server process did not start within 30 s, with its reason in one line (port in
            use, no store, a database it cannot reach, a missing extra).
    """
    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked torch or SQLite state
    ready, failed = spawn.Event(), spawn.SimpleQueue()
    process = spawn.Process(
        target=_serve_in_child,
        args=(os.fspath(store_path), ready, failed),
        kwargs=kwargs,
        daemon=True,
    )
    process.start()
    deadline = time.monotonic() + 30.0
    while not ready.wait(0.1):
        if not process.is_alive() or time.monotonic() > deadline:
            process.terminate()
            process.join(timeout=5)
            port = kwargs.get("port", 8765)
            reason = f"exit code {process.exitcode}, see the error above; is port {port} in use?"
            if not failed.empty():
                reason = failed.get()
            raise OSError(f"the labeling page did not start: {reason}")
    return process


def _serve_in_child(store_path: str, ready: Any, failed: Any, **kwargs: Any) -> None:
    """:func:`serve` in the page's process; an error a user can fix goes to the parent as one line.

    Args:
        store_path: As for :func:`serve`.
        ready: The ``multiprocessing.Event`` set once the port is open.
        failed: A ``multiprocessing.SimpleQueue`` that gets the reason the page did not start.
    """
    try:
        serve(store_path, ready=ready, **kwargs)
    except (FileNotFoundError, ImportError, OSError, StoreError, ValueError) as error:
        failed.put(" ".join(str(error).split()))
        raise SystemExit(1) from None  # the parent raises with the reason: no traceback here
