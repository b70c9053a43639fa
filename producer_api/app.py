"""The API's composition root: `create_app(settings) -> web.Application`."""

from __future__ import annotations

from aiohttp import web

from producer_api import routes_health
from whisperstream.settings import Settings

SETTINGS_KEY = web.AppKey("settings", Settings)


def create_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=1024**2)
    app[SETTINGS_KEY] = settings
    routes_health.register(app)
    return app
