"""What request handlers share, opened in the app's lifespan."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
from psycopg_pool import AsyncConnectionPool

from models.embedding import Embedder
from models.settings import Settings
from models.spaces import Space, SpaceRegistry
from service.wakeups import WakeUps


@dataclass
class Runtime:
    """The open resources of one API process."""

    settings: Settings
    pool: AsyncConnectionPool
    spaces: SpaceRegistry
    embedders: dict[str, Embedder]
    wakeups: WakeUps
    schema_head: str

    async def embed_query(self, space: Space, text: str) -> np.ndarray:
        """Embed query text off the event loop."""
        matrix = await asyncio.to_thread(self.embedders[space.name].encode, [text])
        return np.asarray(matrix[0], dtype=np.float32)
