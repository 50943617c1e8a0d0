"""The API keys this process verified lately, so that most requests need not ask Postgres.

Verifying a key in Postgres costs two round trips (read the key, touch ``last_used_at``
and commit): more than a small user's whole search. Each API process therefore remembers
the keys it verified for ``ENGRAM_KEY_CACHE_SECONDS`` (60: the resolution of
``last_used_at``, which the next verification touches) and asks again after that.

A revoked key still stops working at once. Migration 0013 sends a notice on channel
``engram_keys``, carrying the key's lookup part, whenever a key is revoked, changed or
deleted, by any process or tool; every API process listens (service/http/notices.py) and
forgets that key when the notice arrives (moments after the revocation commits). The rules
that keep this safe:

- a process remembers keys only while its listener is connected; when the connection is
  lost it forgets every key, and it starts afresh once it listens again, so a notice lost
  in between cannot leave a revoked key usable;
- a verification that was under way when any notice arrived is not remembered: it may
  have read the key before the change;
- a remembered key matches only its own secret (its digest, compared in constant time).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable

from models.store import keys
from models.types import Principal

CHANNEL = "engram_keys"  # migrations/versions/0013_key_change_notices.py
MAX_KEYS = 10_000  # remembered at most; past that, everything is forgotten and relearned


class KeyCache:
    """Keys verified lately, by lookup part: (digest of the secret, principal, expiry)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._keys: dict[str, tuple[bytes, Principal, float]] = {}
        self._notices = 0  # notices seen (and reconnections): a verification's "before"
        self.listening = False

    async def verify(
        self, token: str, fetch: Callable[[str], Awaitable[Principal | None]]
    ) -> Principal | None:
        """The principal of ``token``: remembered, else ``fetch``ed (and then remembered)."""
        parsed = keys.parse_token(token)
        if parsed is None:
            return None
        lookup, secret = parsed
        secret_digest = keys.digest(secret)
        known = self._fresh(lookup)
        if known is not None and hmac.compare_digest(known[0], secret_digest):
            return known[1]
        notices = self._notices
        principal = await fetch(token)
        remember = self.seconds > 0 and self.listening and self._notices == notices
        if principal is not None and remember:
            if len(self._keys) >= MAX_KEYS:
                self._keys.clear()
            self._keys[lookup] = (secret_digest, principal, self._clock() + self.seconds)
        return principal

    def remembers(self, lookup: str) -> bool:
        """Whether a key (by its lookup part) is remembered and fresh."""
        return self._fresh(lookup) is not None

    def _fresh(self, lookup: str) -> tuple[bytes, Principal, float] | None:
        known = self._keys.get(lookup)
        return known if known is not None and self._clock() < known[2] else None

    def __len__(self) -> int:
        return len(self._keys)

    def forget(self, lookup: str) -> None:
        """Forget one key (by its lookup part); an empty lookup forgets every key."""
        self._notices += 1
        if lookup:
            self._keys.pop(lookup, None)
        else:
            self._keys.clear()

    def forget_all(self) -> None:
        self.forget("")

    def connected(self, up: bool) -> None:
        """The notice listener (service/http/notices.py) connected or lost its connection:
        either way, what was learned before may be stale."""
        self.listening = up
        self.forget_all()

    def notice(self, payload: str) -> None:
        self.forget(payload)
