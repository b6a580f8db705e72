"""Bearer-key admission shared by the engine's API and `layerlab serve`'s front."""

from __future__ import annotations

import inspect
import secrets

from fastapi import FastAPI
from fastapi.responses import JSONResponse

OPEN_PATHS = ("/health",)  # says only whether it is alive, so launchers can wait on it


def api_error(status: int, message: str, kind: str) -> JSONResponse:
    """An error in the OpenAI shape: {"error": {"message", "type"}}."""
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)


# FastAPI's own OpenTelemetry (0.165): off whatever the environment configures, so no span
# of a person's requests can leave the machine (no telemetry), and nothing wraps each chunk.
NO_TELEMETRY = {"tracing": False, "metrics": False, "logs": False, "auto_configure": False}


def new_api(title: str) -> FastAPI:
    """An app with no docs routes (nothing to browse on a home server) and, where this
    FastAPI has it (0.165+), its telemetry off."""
    kw: dict = {"title": title, "docs_url": None, "redoc_url": None, "openapi_url": None}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters:
        kw["telemetry"] = NO_TELEMETRY
    return FastAPI(**kw)


class _BearerKey:
    """Admits a request with the key, else answers 401. A plain ASGI middleware: Starlette's
    BaseHTTPMiddleware (`@app.middleware("http")`) passed every streamed chunk through an
    anyio memory stream between two tasks, per token of every answer."""

    def __init__(self, app, expected: bytes) -> None:
        self.app = app
        self.expected = expected

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        # constant-time: the comparison must not tell how much of a guessed key was right
        if not secrets.compare_digest(given, self.expected):
            refusal = api_error(
                401,
                "Missing or wrong API key (send 'Authorization: Bearer <key>').",
                "invalid_api_key",
            )
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)


def require_bearer_key(app: FastAPI, key: str) -> None:
    app.add_middleware(_BearerKey, expected=f"Bearer {key}".encode())
