"""The reviewer inbox: web pages under `/inbox` where people decide approvals.

Server-rendered Jinja2 templates with a small static script and stylesheet
(no build step), served by the API process itself. A reviewer signs in once
with an API key and gets a session cookie (`api.inbox.auth`); the pages list
their pending approvals, show one with the run's ticket, path, sources and
cost, and send decisions through the same code as the HTTP API.

    install(app)    # routes, static files and security headers
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.inbox.headers import InboxHeadersMiddleware
from api.inbox.routes import router
from api.inbox.templating import STATIC_DIR

__all__ = ["PATH", "install"]

PATH = "/inbox"


def install(app: FastAPI) -> None:
    """Serve the inbox from `app`. Call before the app starts (it adds a
    middleware); the security headers wrap every `/inbox` response."""
    app.include_router(router)
    app.mount("/inbox/static", StaticFiles(directory=STATIC_DIR), name="inbox-static")
    app.add_middleware(InboxHeadersMiddleware)
