"""Run the API process."""

from __future__ import annotations

from aiohttp import web

from producer_api.app import create_app
from whisperstream.settings import Settings


def run_api(settings: Settings) -> None:
    web.run_app(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        print=None,
        handle_signals=True,
    )
