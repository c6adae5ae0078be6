"""The web labeling page as an ASGI app (FastAPI): HTTP in front of
:class:`~prefwrap.web.service.LabelingService`.

Endpoints (JSON unless said otherwise; every ``/api`` call needs the token when one is set, as the
``X-Prefwrap-Token`` header or a ``token`` query parameter):

==========================  ================================================================
``GET /``                   the page (``static/index.html``); ``/static/*`` its script and style
``POST /api/session``       ``{"name"}`` -> ``{"session", "annotator", "labeler"}``
``GET /api/status``         ``?session=`` -> labels, queries waiting, this annotator's count, message
``POST /api/next``          ``{"session"}`` -> ``{"query": {"query_id", "second_opinion", "size"} | null}``
``GET /api/clip/{id}/{c}``  clip ``c`` (``0`` to ``size - 1``; ``left``/``right`` = 0/1) as a
                            sprite sheet; its layout in headers
``POST /api/answer``        ``{"session", "query_id", "preference" | "ranking", "seconds"}`` ->
                            ``{"saved": true, ...}``
``POST /api/heartbeat``     ``{"session"}``: keeps the page's leases
``POST /api/release``       ``{"session", "query_id"}``: the page will not show that query
``POST /api/leave``         ``{"session"}``: the tab closes, its queries go back to the others
==========================  ================================================================

An answer is ``"preference"``: ``"left"``, ``"right"``, ``"equal"`` (a pair) or ``"skip"`` (any
query), or ``"ranking"``: the query's clips in groups of equally good ones, best group first, e.g.
``[[2], [0, 3], [1]]`` (2 best, 0 and 3 tied, 1 worst); every clip ``0..size-1`` exactly once.

Errors are 4xx with ``{"detail": "<what was wrong>"}``: 400/422 malformed, 401 token, 404 unknown
query or clip, 409 taken or answered, 410 unknown session, 413 body over :data:`MAX_BODY` bytes.
"""

# no `from __future__ import annotations`: FastAPI reads the endpoints' body models from live annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

from prefwrap.records import MAX_QUERY_SIZE
from prefwrap.web.clips import ClipCache
from prefwrap.web.service import LabelingService, RequestError

__all__ = ["MAX_BODY", "create_app", "require_web"]

MAX_BODY = 4096
"""Largest request body in bytes: every valid request is under 300."""

STATIC = Path(__file__).with_name("static")
_MAX_ID = 2**62  # SQLite integers are 64-bit: a larger id would be an OverflowError, not a 404


def require_web() -> Any:
    """Import FastAPI, or fail with the pip extra that installs it.

    Raises:
        ImportError: fastapi is not installed (the message names ``prefwrap[web]``).
    """
    try:
        import fastapi
    except ImportError as err:
        raise ImportError(
            'The web labeling page needs fastapi and uvicorn: pip install "prefwrap[web]"'
        ) from err
    return fastapi


def create_app(
    store_path: str | os.PathLike[str],
    *,
    token: str | None = None,
    overlap: float = 0.0,
    lease_seconds: float = 60.0,
    undo_seconds: float = 4.0,
) -> Any:
    """The labeling page of one run's store.

    Args:
        store_path: The run's preference store: its SQLite file or its ``postgresql://`` URL.
        token: Secret every ``/api`` request must carry; ``None`` lets anyone who reaches the port in.
        overlap: Fraction of queries shown to a second annotator (see :mod:`prefwrap.web.leases`).
        lease_seconds: How long a query stays with a page that stopped sending heartbeats.
        undo_seconds: How long the page holds an answer back so that it can be undone (see
            ``docs/oracles-human.md``); the page sends it when this ends or at the next answer.

    Returns:
        A FastAPI application; ``app.state.service`` is its :class:`LabelingService`.

    Raises:
        ImportError: fastapi is not installed, or psycopg for a PostgreSQL URL (the ``postgres`` extra).
        ValueError: A bad ``overlap``, ``lease_seconds`` or ``undo_seconds``.
        StoreError: ``store_path`` is not a prefwrap store, or its database cannot be reached.
    """
    fastapi = require_web()
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, Response
    from fastapi.staticfiles import StaticFiles
    from pydantic import BaseModel, ConfigDict, Field, StrictInt

    if not 0 <= undo_seconds <= 60:
        raise ValueError(f"undo_seconds must be in [0, 60], got {undo_seconds}")
    # one thread owns the store (SQLite objects belong to their thread) and runs requests one at a time,
    # so that checking a lease and committing the answer cannot interleave with another request
    store_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefwrap-store")
    try:
        service: LabelingService = store_thread.submit(
            LabelingService, store_path, overlap=overlap, lease_seconds=lease_seconds
        ).result()
    except BaseException:
        store_thread.shutdown(wait=False)  # no page: let the thread go with the error
        raise
    clips = ClipCache()
    encoder = ThreadPoolExecutor(max_workers=2, thread_name_prefix="prefwrap-clips")

    async def on_store(fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(store_thread, fn, *args)

    encoding: dict[int, asyncio.Future[Any]] = {}  # one encoding per query, shared by concurrent requests

    async def sheets(query_id: int) -> Any:
        cached = clips.get(query_id)
        if cached is not None:
            return cached
        if query_id not in encoding:
            encoding[query_id] = asyncio.ensure_future(encode(query_id))
            encoding[query_id].add_done_callback(lambda _: encoding.pop(query_id, None))
        return await asyncio.shield(encoding[query_id])  # a closed tab must not cancel it for the others

    async def encode(query_id: int) -> Any:
        query = await on_store(service.query_with_frames, query_id)
        try:  # encoding takes ~0.1-1 s: off the store thread, so answers are not held up
            return await asyncio.get_running_loop().run_in_executor(encoder, clips.put, query)
        except ValueError as error:
            raise RequestError(422, f"query {query_id} cannot be shown: {error}") from None

    class Body(BaseModel):
        model_config = ConfigDict(extra="forbid")

    class SessionBody(Body):
        name: str = Field(max_length=100)

    class SessionRef(Body):
        session: str = Field(max_length=64)

    class QueryRef(SessionRef):
        query_id: int = Field(ge=0, le=_MAX_ID, strict=True)

    Group = Annotated[list[StrictInt], Field(min_length=1, max_length=MAX_QUERY_SIZE)]

    class AnswerBody(QueryRef):
        preference: str | None = Field(default=None, max_length=16)
        ranking: list[Group] | None = Field(default=None, min_length=1, max_length=MAX_QUERY_SIZE)
        seconds: float = Field(ge=0, le=1e6, allow_inf_nan=False)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        yield
        await on_store(service.close)
        store_thread.shutdown(wait=False)
        encoder.shutdown(wait=False)

    app = fastapi.FastAPI(
        title="prefwrap labeling", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.state.service = service

    @app.exception_handler(RequestError)
    async def request_error(_request: Any, error: RequestError) -> Any:
        return JSONResponse({"detail": error.message}, status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Any, error: RequestValidationError) -> Any:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e['loc'] if part != 'body') or 'body'}: {e['msg']}"
            for e in error.errors()
        )
        return JSONResponse({"detail": f"malformed request: {problems}"}, status_code=422)

    @app.middleware("http")
    async def check_token(request: Any, call_next: Any) -> Any:
        if token is not None and request.url.path.startswith("/api/"):
            given = request.headers.get("x-prefwrap-token") or request.query_params.get("token") or ""
            if not secrets.compare_digest(given.encode(), token.encode()):
                return JSONResponse(
                    {"detail": "missing or wrong token: open the link the server printed"}, 401
                )
        return await call_next(request)

    @app.get("/")
    async def index() -> Any:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.post("/api/session")
    async def open_session(body: SessionBody) -> Any:
        return await on_store(service.open_session, body.name)

    @app.get("/api/status")
    async def status(session: str | None = None) -> Any:
        result = await on_store(service.status, session)
        return {**result, "undo_seconds": undo_seconds, "lease_seconds": lease_seconds}

    @app.post("/api/next")
    async def next_query(body: SessionRef) -> Any:
        query = await on_store(service.next_query, body.session)
        if query is not None:  # encode now, while the page still shows the previous query
            task = asyncio.ensure_future(sheets(query["query_id"]))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # errors surface in /clip
        return {"query": query}

    @app.get("/api/clip/{query_id}/{position}")
    async def clip(query_id: int, position: str) -> Any:
        index = {"left": 0, "right": 1}.get(position, int(position) if position.isdecimal() else -1)
        if index < 0:
            raise RequestError(422, f"a clip is a number from 0 (or left, right), got {position!r}")
        if not 0 <= query_id <= _MAX_ID:
            raise RequestError(404, f"query {query_id} is not in this run's store")
        query_sheets = await sheets(query_id)
        if index >= len(query_sheets):
            raise RequestError(
                404, f"query {query_id} has {len(query_sheets)} clips: 0 to {len(query_sheets) - 1}"
            )
        sheet = query_sheets[index]
        headers = {
            "X-Frames": str(sheet.n_frames),
            "X-Columns": str(sheet.columns),
            "X-Frame-Width": str(sheet.width),
            "X-Frame-Height": str(sheet.height),
            "Cache-Control": "private, max-age=3600",  # a query's clips never change
        }
        return Response(sheet.data, media_type=sheet.media_type, headers=headers)

    @app.post("/api/answer")
    async def answer(body: AnswerBody) -> Any:
        result = await on_store(
            service.answer, body.session, body.query_id, body.preference, body.seconds, body.ranking
        )
        return {**result, **(await on_store(service.status, body.session))}

    @app.post("/api/heartbeat")
    async def heartbeat(body: SessionRef) -> Any:
        return {"leases": await on_store(service.heartbeat, body.session)}

    @app.post("/api/release")
    async def release(body: QueryRef) -> Any:
        await on_store(service.release, body.session, body.query_id)
        return {"released": body.query_id}

    @app.post("/api/leave")
    async def leave(body: SessionRef) -> Any:
        await on_store(service.leave, body.session)
        return {"left": True}

    return _LimitBody(app, MAX_BODY)


class _LimitBody:
    """ASGI middleware: a body over ``limit`` bytes is a 413, whether it says its length or not.

    Wraps the app from outside, so that no endpoint or parser ever buffers a huge body.
    """

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.state = app.state  # create_app's documented ``app.state.service``

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await _reply_413(send, self.limit)
            return
        received = 0
        too_large = False

        async def limited_receive() -> dict[str, Any]:
            nonlocal received, too_large
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:  # stop reading: the app sees an empty, finished body
                    too_large = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        replaced = False

        async def checked_send(message: dict[str, Any]) -> None:
            nonlocal replaced
            if too_large:  # whatever the app made of the cut body, the answer is 413
                if not replaced:
                    replaced = True
                    await _reply_413(send, self.limit)
                return
            await send(message)

        await self.app(scope, limited_receive, checked_send)


async def _reply_413(send: Any, limit: int) -> None:
    body = f'{{"detail": "request body over {limit} bytes"}}'.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
