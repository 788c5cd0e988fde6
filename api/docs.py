"""/docs served from vendored Swagger UI assets (api/static), so it works on a closed network."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_PATH = "/static"
DOCS_PATH = "/docs"
OPENAPI_PATH = "/openapi.json"
SWAGGER_ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")

DOCS_PUBLIC_PATHS = frozenset(
    {DOCS_PATH, OPENAPI_PATH, *(f"{STATIC_PATH}/{name}" for name in SWAGGER_ASSETS)}
)
"""What the docs page needs before a person can authorise: public even with API keys set."""


def install_docs(app: FastAPI) -> None:
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="static")

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - API docs",
            swagger_js_url=f"{root}{STATIC_PATH}/{SWAGGER_ASSETS[0]}",
            swagger_css_url=f"{root}{STATIC_PATH}/{SWAGGER_ASSETS[1]}",
            swagger_favicon_url=f"{root}{STATIC_PATH}/{SWAGGER_ASSETS[2]}",
            # No call to the public validator service: the page must not reach the internet.
            swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True},
        )
