"""The app factory: data directory, database (migrated), the agent's key pair, routers and error shapes."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException

from agent_api import ApiError, api, public, web, web_draws, web_plans, web_registry, web_results
from agent_api.db import make_engine, make_sessions, migrate
from agent_api.settings import Settings
from probe.keys import KeyFileError, generate_key_files, load_private_key

__all__ = ["Agent", "open_agent", "create_app"]

STATIC_DIR = Path(__file__).resolve().parent / "static"


@dataclass
class Agent:
    """An opened agent: settings, migrated database and the receipt-signing key."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    key: Ed25519PrivateKey


def _agent_key(settings: Settings) -> Ed25519PrivateKey:
    """Load the agent's key pair, making it on first start; a half pair is an error, never overwritten."""
    key, pub = settings.key_path, settings.pub_path
    if not key.exists() and not pub.exists():
        generate_key_files(key, pub)
    elif not key.exists() or not pub.exists():
        raise KeyFileError(f"{settings.data_dir}: agent.key 与 agent.pub 须同时存在 / agent.key and agent.pub must "
                           "both exist (restore the missing one; a new pair would break pinned probes)")
    return load_private_key(key)


def open_agent(settings: Settings) -> Agent:
    """Create the data directory (0700) on first start, migrate the database to head, load or make the key."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    engine = make_engine(settings.database_url)
    migrate(engine)
    try:
        key = _agent_key(settings)
    except Exception:
        engine.dispose()
        raise
    return Agent(settings=settings, engine=engine, sessions=make_sessions(engine, {"settings": settings}), key=key)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)


async def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return _error(exc.status, exc.code, exc.message, exc.headers)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    words = {404: "没有该资源 / not found", 405: "不支持该方法 / method not allowed"}
    message = words.get(exc.status_code, str(exc.detail))
    return _error(exc.status_code, f"http_{exc.status_code}", message, getattr(exc, "headers", None))


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid"}
    where = ".".join(str(p) for p in first["loc"])
    return _error(422, "invalid_request", f"请求无效 / invalid request: {where}: {first['msg']}")


def create_app(settings: Settings | None = None) -> FastAPI:
    """The ASGI app. Opening happens here, so a bad data directory fails before anything listens."""
    agent = open_agent(settings or Settings.from_env())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        agent.engine.dispose()

    app = FastAPI(title="cafe-agent", version="0.1.0", lifespan=lifespan,
                  description="检查人员终端服务：接收探针签名报告、案件记录与导出 / inspector-device service: "
                              "signed probe reports, case records and exports")
    app.state.agent = agent
    app.state.settings = agent.settings
    app.state.sessions = agent.sessions
    app.state.agent_key = agent.key
    app.state.submit_lock = threading.Lock()
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.include_router(api.router)
    app.include_router(web.router)
    for router in (web_registry.router, web_plans.router, web_draws.router, web_results.router, public.router):
        app.include_router(router)  # the department's pages, then the public ones
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/reports", status_code=303)

    return app

