"""Bearer-key admission shared by the engine's API and `layerlab serve`'s front."""

from __future__ import annotations

import secrets

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

OPEN_PATHS = ("/health",)  # says only whether it is alive, so launchers can wait on it


def api_error(status: int, message: str, kind: str) -> JSONResponse:
    """An error in the OpenAI shape: {"error": {"message", "type"}}."""
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)


def require_bearer_key(app: FastAPI, key: str) -> None:
    expected = f"Bearer {key}".encode()

    @app.middleware("http")
    async def check_key(request: Request, call_next):
        if request.url.path in OPEN_PATHS:
            return await call_next(request)
        given = request.headers.get("authorization", "").encode()
        # constant-time: the comparison must not tell how much of a guessed key was right
        if not secrets.compare_digest(given, expected):
            return api_error(
                401,
                "Missing or wrong API key (send 'Authorization: Bearer <key>').",
                "invalid_api_key",
            )
        return await call_next(request)
