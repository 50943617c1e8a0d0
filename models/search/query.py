"""A search as the core receives it: validated, with its query vector."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
import numpy as np

from models.types import ItemType

CANDIDATES_PER_RESULT = 4  # re-ranking modes look this many times deeper than k
MIN_CANDIDATES = 40
MAX_REACH = 20  # turns either side of a candidate that may lift it


class Weights(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Opt-in blend of recency and importance into the score (memories)."""

    recency: float = 0.0
    importance: float = 0.0
    half_life_days: float = 30.0


class Fusion(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How hybrid mode fuses its rankings (``models.search.rerank.fuse_hybrid``).

    "scores": each candidate's cosine similarity and BM25 score, each rescaled to 0..1 over
    the candidates, averaged with the weights ``vector`` and ``text``. "ranks": weighted
    reciprocal rank fusion, ``weight / (k + rank)`` summed over the rankings. Either way,
    ``turns`` then lifts the candidates said near a strong one."""

    method: Literal["scores", "ranks"] = "scores"
    vector: Annotated[float, msgspec.Meta(ge=0, le=100)] = 1.0
    text: Annotated[float, msgspec.Meta(ge=0, le=100)] = 1.0
    # "ranks" only. Small, because each ranking holds only the best few dozen: its first
    # places carry the signal, where the customary 60 would make the 1st and the 10th nearly
    # equal.
    k: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 5
    # a candidate that is a message gains this share of the best fused score among the
    # candidates said up to ``reach`` turns before or after it in its session (twice this
    # share of the turn just before it when that turn asks a question)
    turns: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.2
    reach: Annotated[int, msgspec.Meta(ge=1, le=MAX_REACH)] = 3

    def __post_init__(self) -> None:
        if self.vector + self.text == 0:
            raise ValueError("the vector and text weights cannot both be 0")


class SearchQuery(msgspec.Struct, frozen=True, kw_only=True):
    """A validated search."""

    vector: np.ndarray
    k: int
    text: str | None = None
    hybrid: bool = False
    fusion: Fusion = Fusion()
    # the text-search configuration the query's words are parsed in, and the items'
    text_config: str = "english"
    # the least cosine similarity an item may have, on both sides of a hybrid search and
    # before any re-ranking: it never compares ``score``
    threshold: float | None = None
    metadata: dict[str, Any] | None = None
    session_id: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    occurred_after: datetime | None = None
    occurred_before: datetime | None = None
    diversity: float = 0.0
    weights: Weights | None = None
    types: tuple[ItemType, ...] = ("memory", "chunk")

    @property
    def reranks(self) -> bool:
        """Whether the answer is re-ranked (hybrid fusion, weights, diversity)."""
        return self.hybrid or self.diversity > 0 or self.weights is not None

    @property
    def depth(self) -> int:
        """How many candidates each ranking gathers: ``k``, or deeper when re-ranked."""
        if not self.reranks:
            return self.k
        return max(self.k * CANDIDATES_PER_RESULT, MIN_CANDIDATES)

    @property
    def filters_items(self) -> bool:
        """Whether conditions on the items themselves may reject some nearest vectors."""
        return (
            bool(self.metadata)
            or self.session_id is not None
            or self.created_after is not None
            or self.created_before is not None
            or self.occurred_after is not None
            or self.occurred_before is not None
        )
