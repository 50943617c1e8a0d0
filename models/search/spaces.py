"""The spaces one search covers, and how their rankings become one.

A search that names a space covers that space alone. One that names none covers each
type's default space (where that type is written) and every other space where the user
has vectors of a type it asks for (memories written with a ``space`` of their own, a
backfilled space), when the query can go there: the server embeds its text in a space it
has a model for, and a ``vector`` goes to a space of its length. A space it cannot reach
(an external space without such a vector) is named in the answer, never silently skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from models.db.batch import Statement
from models.db.scope import Reader
from models.embedding.spaces import Space, SpaceRegistry
from models.search.rerank import best_ranks
from models.types import ItemType, SearchHit

# the spaces and types of which the user has vectors, from the counts the triggers keep
# (migration 0011)
_HELD = "SELECT space, kind FROM vector_counts WHERE user_id = %(user_id)s AND vectors > 0"


class Coverage(NamedTuple):
    """The spaces searched, with the types looked for in each, defaults first; and the
    spaces holding the user's items of those types that the query could not reach."""

    searched: dict[Space, tuple[ItemType, ...]]
    unreached: list[str]


async def spaces_held(read: Reader, user_id: str) -> set[tuple[str, ItemType]]:
    """The (space, type) pairs of which ``user_id`` has vectors."""
    (rows,) = await read([Statement(_HELD, {"user_id": user_id})], {})
    return {(space, kind) for space, kind in rows}


def first_spaces(
    spaces: SpaceRegistry, named: str | None, types: Sequence[ItemType]
) -> dict[Space, tuple[ItemType, ...]]:
    """The space a search names, else the space each type is written to, with the types
    looked for in each."""
    if named:
        return {spaces.get(named): tuple(types)}
    first: dict[Space, tuple[ItemType, ...]] = {}
    for kind in types:
        space = spaces.default_for("memory" if kind == "memory" else "document")
        first[space] = (*first.get(space, ()), kind)
    return first


def covered(
    spaces: SpaceRegistry,
    first: dict[Space, tuple[ItemType, ...]],
    held: set[tuple[str, ItemType]],
    *,
    text: bool,
    vector_dims: int | None,
) -> Coverage:
    """What a search covers: its ``first`` spaces, and (when it names no space) each other
    space where the user ``held`` vectors of the types asked, if a query with ``text`` or
    not and a vector of ``vector_dims`` numbers or none can go there."""
    types = {kind for kinds in first.values() for kind in kinds}
    searched = dict(first)
    unreached: list[str] = []
    for space in sorted(spaces.all(), key=lambda s: s.name):
        extra = [
            k for k in sorted(types) if (space.name, k) in held and k not in searched.get(space, ())
        ]
        if not extra:
            continue
        if (text and not space.external) or vector_dims == space.dims:
            searched[space] = (*searched.get(space, ()), *extra)
        else:
            unreached.append(space.name)
    return Coverage(searched, unreached)


def across_spaces(rankings: Sequence[list[SearchHit]], *, k: int, fusion_k: int) -> list[SearchHit]:
    """The best ``k`` of several spaces' rankings, by reciprocal rank (evenly): similarities
    of different models do not compare. An item with vectors in two spaces counts once, at
    its better rank."""
    return best_ranks(rankings, k=fusion_k)[:k]
