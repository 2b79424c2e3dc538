"""The FastAPI application: web client, REST API, WebSockets, WHEP and /metrics.

`create_app(config)` builds everything from one ServerConfig; `facecast serve`
runs it under uvicorn. Errors from the engines map to HTTP statuses here, at
the edge, with the engines' own messages as `detail`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles

from engines.errors import FacecastError

from .api_sessions import router as sessions_router
from .api_verify import router as verify_router
from .auth import require_token
from .config import ServerConfig
from .errors import status_of
from .guard import RequestGuard, body_rules
from .state import ServerState
from .whep import router as whep_router
from .ws_api import router as websocket_router

__all__ = ["create_app", "WEB_CLIENT_DIR"]

logger = logging.getLogger(__name__)

WEB_CLIENT_DIR = Path(__file__).resolve().parents[1] / "web_client"


def create_app(config: ServerConfig) -> FastAPI:
    state = ServerState.build(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await state.startup()
        yield
        await state.shutdown()

    app = FastAPI(
        title="facecast",
        description="Real-time talking portraits over WebRTC. See README.md for the protocol.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.facecast = state
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["Location", "ETag"],
        )
    # Added last, so it runs first: nothing below sees a request it refuses.
    app.add_middleware(
        RequestGuard,
        allowed_hosts=config.served_hosts,
        allowed_origins=config.cors_origins,
        rules=body_rules(
            config.max_portrait_bytes,
            config.max_audio_bytes,
            config.max_sdp_bytes,
            config.max_json_bytes,
            config.max_video_bytes,
        ),
    )
    # Facecast's own errors carry their status; anything else is a bug and a 500.
    app.add_exception_handler(FacecastError, _facecast_error)
    protected = [Depends(require_token)]
    app.include_router(sessions_router, prefix="/api", dependencies=protected)
    app.include_router(verify_router, prefix="/api", dependencies=protected)
    app.include_router(whep_router, dependencies=protected)
    app.include_router(websocket_router, prefix="/api")  # checks the token itself
    _add_misc_routes(app, state, protected)
    if WEB_CLIENT_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=WEB_CLIENT_DIR), name="static")
    return app


async def _facecast_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FacecastError)
    status = status_of(exc)
    if status >= 500:
        logger.error("%s %s failed: %s", request.method, request.url.path, exc)
    return JSONResponse({"detail": str(exc)}, status_code=status)


def _add_misc_routes(app: FastAPI, state: ServerState, protected: list) -> None:  # type: ignore[type-arg]
    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        page = WEB_CLIENT_DIR / "index.html"
        if not page.exists():
            raise HTTPException(404, "the web client is not installed (web_client/index.html)")
        return FileResponse(page, headers={"Cache-Control": "no-cache"})

    @app.get("/api/health", dependencies=protected)
    async def health() -> dict[str, object]:
        session, provenance = state.config.session, state.config.provenance
        return {
            "status": "ok",
            "sessions": len(state.sessions),
            "max_sessions": state.config.max_sessions,  # capacity, for load-based dispatch
            "backend": session.backend.name,
            "motion_backend": session.backend.motion.name,
            "motion": session.motion.kind,
            # Provenance: whether every frame carries the invisible mark (off only when the
            # operator turned it off), whose key it uses ("public": anyone can verify,
            # "private": only the key's holders; never the key), the visible label, and the
            # mark's instance id.
            "watermark": provenance.watermark,
            "watermark_key": provenance.mark.key_kind,
            "visible_label": provenance.visible_label,
            "instance_id": f"{provenance.instance_id:06x}",
        }

    @app.get("/metrics", dependencies=protected, response_class=PlainTextResponse)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(
            state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )
