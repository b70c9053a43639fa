"""A receiver for bench_webhooks, in a process of its own so its CPU is not the notifier's:
answers every POST 204 at once.  Run: ``python -m bench.webhook_receiver PORT``."""

from __future__ import annotations

import sys

from aiohttp import web


async def _accept(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(status=204)


def main() -> int:
    app = web.Application()
    app.router.add_post("/{tail:.*}", _accept)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
