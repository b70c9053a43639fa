"""Run the API process."""

from __future__ import annotations

from aiohttp import web

from producer_api.app import create_app
from whisperstream.logs import activity_logger
from whisperstream.settings import Settings


def run_api(settings: Settings) -> None:
    def listening(_banner: str) -> None:
        # aiohttp calls `print` once its sites listen: that is when the API is ready
        activity_logger().info("ready on http://%s:%d", settings.api_host, settings.api_port)

    web.run_app(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        print=listening,
        handle_signals=True,
    )
