"""Serving an ASGI app with uvicorn inside the running event loop (the sandbox, tests, the webhook)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import uvicorn

GRACE_SECONDS = 2


@contextlib.asynccontextmanager
async def serving(app: Any, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve `app` until the block ends; yields the base URL (port 0 = any free port)."""
    # A page left open holds a long poll (the sandbox's feed, 25 s): a stop gives requests 2 s, then ends them.
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off", access_log=False,
                            timeout_graceful_shutdown=GRACE_SECONDS)
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # the caller owns the signals (Ctrl+C stops the bot)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()  # raises why it could not start (e.g. the port is taken)
                raise RuntimeError("the HTTP server stopped before it started")
            await asyncio.sleep(0.02)
        bound = server.servers[0].sockets[0].getsockname()
        yield f"http://{host}:{bound[1]}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(task, timeout=GRACE_SECONDS + 5)
