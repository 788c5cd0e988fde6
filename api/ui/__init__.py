"""The operator dashboard at /ui (CONTRACT §10): server-rendered pages over the repositories."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.security import is_ui_path
from api.ui import flow as _flow  # noqa: F401 - registers the schedules and types pages
from api.ui.counts import OverviewCounts
from api.ui.routes import EXCEPTION_HANDLERS, STATIC_DIR, router
from api.ui.session import UI_PREFIX, UiAuth
from queue_core.database import Database
from queue_core.repositories import DashboardRepository, DashboardSessionRepository
from queue_core.settings import QueueSettings

__all__ = ["install_ui", "is_ui_path"]


def install_ui(app: FastAPI, db: Database, settings: QueueSettings) -> None:
    app.state.dashboard = DashboardRepository(db)
    app.state.ui_counts = OverviewCounts(app.state.dashboard)
    app.state.ui_auth = UiAuth(settings.api_key_list(), DashboardSessionRepository(db))
    app.include_router(router)
    app.mount(f"{UI_PREFIX}/static", StaticFiles(directory=STATIC_DIR), name="ui-static")
    for exception, handler in EXCEPTION_HANDLERS.items():
        app.add_exception_handler(exception, handler)
