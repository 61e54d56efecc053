"""Customers changed on one instance, told to the others at once through Redis (issue 16).

Several bot and API instances each keep their own lookup index. Each picks up other processes' changes by a
poll of `updated_at` every 30 s (bot.runner.keep_in_sync); with REDIS_URL set, an instance that commits
changes to customers (a bot update, an ERP write through the API) also publishes their ids on CHANNEL, and
every instance listening reloads those customers within moments — a customer added on one instance is found
by pinyin or a typo on the next message, whichever instance takes it. The poll stays as the safety net (a
message lost while Redis was away, a CLI import, a restart): the lag is bounded by it either way. Publishing
never fails an update.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.lookup import LookupIndex, refresh

log = logging.getLogger("fieldcrm")

CHANNEL = "fieldcrm:lookup:changed"
ME = uuid.uuid4().hex  # this process: its own messages are not applied twice
_client = None


def configure(redis_url: str | None) -> None:
    """Publish this process's changes to REDIS_URL (None: publish nothing)."""
    global _client
    if redis_url is None:
        _client = None
        return
    import redis.asyncio as aioredis

    _client = aioredis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)  # never hold a reply long


async def publish(customer_ids: Iterable[int]) -> None:
    ids = sorted(set(customer_ids))
    if _client is None or not ids:
        return
    try:
        await _client.publish(CHANNEL, json.dumps({"from": ME, "ids": ids}))
    except Exception as exc:  # Redis away: the others catch up by their poll
        log.warning("could not tell other instances of %d changed customers (%s)", len(ids), exc)


async def listen(index: LookupIndex, sessions: async_sessionmaker[AsyncSession], redis_url: str) -> None:
    """Reload the customers other instances announce, forever (reconnecting after a Redis outage)."""
    import redis.asyncio as aioredis

    delay = 1.0
    while True:
        client = aioredis.from_url(redis_url)
        try:
            async with client.pubsub() as pubsub:
                await pubsub.subscribe(CHANNEL)
                delay = 1.0
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    try:
                        news = json.loads(message["data"])
                        ids = [int(i) for i in news["ids"]] if news.get("from") != ME else []
                    except (ValueError, KeyError, TypeError):
                        log.warning("ignored an unreadable change notice on %s", CHANNEL)
                        continue
                    if ids and not index.loading:  # while loading, the build's own read and the poll catch up
                        async with sessions() as session:
                            await refresh(index, session, ids)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("listening for other instances' changes failed (%s); again in %.0f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
        finally:
            await client.aclose()


async def close() -> None:
    global _client
    if _client is not None:
        await _client.aclose()
        _client = None
