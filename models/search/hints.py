"""What an API process lately learned of each user's vector counts: which search path to try."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import Literal

# The path a user's number of vectors calls for: "exact" up to the cap, "approximate"
# (HNSW) beyond it; "none" when the user has no vectors of that type.
Path = Literal["exact", "approximate"]
Hint = Literal["exact", "approximate", "none"]


class SizeHints:
    """What this process lately learned of users' vector counts, per space and type of
    item: the path a search should take, or "none" (no vectors: a search need not send that
    type's statement). Only a hint: every statement reads the counts itself and scans only
    on the right path, and reports the other type's count too, so a wrong hint costs a
    second round trip, never an answer. One per process; entries last ``ttl_seconds``.

    A user it knows nothing of takes the exact path, or "none" for a type that no user of
    the space lately had vectors of while some had none (a space of memories alone, say):
    their first search then sends one statement, not two."""

    def __init__(self, ttl_seconds: float = 60.0, size: int = 50_000) -> None:
        self.ttl_seconds = ttl_seconds
        self.size = size
        self._hints: OrderedDict[tuple[str, str, str], tuple[Hint, float]] = OrderedDict()
        # (space, type) -> when a user was last seen with vectors of it, and without
        self._types: dict[tuple[str, str], tuple[float, float]] = {}

    def path(self, space: str, user_id: str, kind: str) -> Hint:
        """The hint for this user's items of ``kind`` in ``space``."""
        now = time.monotonic()
        hint = self._hints.get((space, user_id, kind))
        if hint and hint[1] > now:
            return hint[0]
        with_vectors, without = self._types.get((space, kind), (-math.inf, -math.inf))
        lately = now - self.ttl_seconds
        return "none" if without > lately >= with_vectors else "exact"

    def remember(self, space: str, user_id: str, kind: str, path: Hint) -> None:
        """What a statement just reported of this user's items of ``kind``."""
        now = time.monotonic()
        with_vectors, without = self._types.get((space, kind), (-math.inf, -math.inf))
        self._types[(space, kind)] = (with_vectors, now) if path == "none" else (now, without)
        key = (space, user_id, kind)
        if path == "exact":  # the default: no entry needed
            self._hints.pop(key, None)
            return
        self._hints[key] = (path, now + self.ttl_seconds)
        self._hints.move_to_end(key)
        if len(self._hints) > self.size:
            self._hints.popitem(last=False)
