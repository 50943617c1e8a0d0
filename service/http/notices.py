"""The API process's one listener for Postgres notices, on a session of its own.

Each channel has a subscriber: the key cache (``engram_keys``, service/http/keycache.py)
and the writes waiting for their items (``engram_settled``, service/http/wait.py). A
subscriber hears every notice of its channel, and is told when the listener connects and
when it loses the connection: notices sent meanwhile are lost, so neither may rely on them
while it is down. The listener reconnects every second until the process stops.

LISTEN needs a session of its own, so through a transaction pooler (PgBouncer) the listener
connects to ``ENGRAM_LISTEN_DATABASE_URL``, a direct connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Protocol

import psycopg
from psycopg import sql

log = logging.getLogger("engram.notices")

RECONNECT_SECONDS = 1.0
LISTENER_NAME = "engram-notices"  # the listener's application_name in pg_stat_activity


class Subscriber(Protocol):
    def connected(self, up: bool) -> None:
        """The listener now hears this channel (``up``), or has lost its connection."""

    def notice(self, payload: str) -> None:
        """A notice arrived on this channel."""


async def listen(database_url: str, subscribers: Mapping[str, Subscriber]) -> None:
    """Pass each channel's notices to its subscriber, until cancelled."""
    warn = True  # once per outage, not once per attempt
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(
                database_url,
                autocommit=True,
                application_name=LISTENER_NAME,
                connect_timeout=5,
                # a peer that vanished without closing the connection is noticed
                keepalives=1,
                keepalives_idle=10,
                keepalives_interval=5,
                keepalives_count=3,
            ) as conn:
                for channel in subscribers:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                for subscriber in subscribers.values():
                    subscriber.connected(True)
                warn = True
                log.debug("listening on %s", ", ".join(subscribers))
                async for notice in conn.notifies():
                    subscribers[notice.channel].notice(notice.payload)
        except Exception as exc:  # any failure: tell the subscribers, then reconnect
            if warn:
                log.warning("no notices from Postgres (%s): waiting to reconnect", exc)
                warn = False
        finally:
            for subscriber in subscribers.values():
                subscriber.connected(False)
        await asyncio.sleep(RECONNECT_SECONDS)
