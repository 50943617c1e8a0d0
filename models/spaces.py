"""Embedding spaces: a model and its vector table. One table per space."""

from __future__ import annotations

import re

import msgspec

from models.errors import InvalidInput


class Space(msgspec.Struct, frozen=True, kw_only=True):
    """An embedding space: where vectors of one model and size live."""

    name: str
    dims: int
    provider: str
    model: str
    default_for: tuple[str, ...] = ()

    @property
    def table(self) -> str:
        """The vector table of this space: ``vec_`` and the name, made an identifier."""
        return vector_table(self.name)


def vector_table(space_name: str) -> str:
    return "vec_" + re.sub(r"[^a-z0-9]", "_", space_name.lower())


MINILM_384 = Space(
    name="minilm-384",
    dims=384,
    provider="sentence-transformers",
    model="sentence-transformers/all-MiniLM-L6-v2",
    default_for=("memory", "document"),
)


class SpaceRegistry:
    """The configured spaces, by name."""

    def __init__(self, spaces: tuple[Space, ...] = (MINILM_384,)) -> None:
        self._spaces = {space.name: space for space in spaces}

    def all(self) -> list[Space]:
        return list(self._spaces.values())

    def get(self, name: str) -> Space:
        """The space called ``name``; unknown names are bad input."""
        try:
            return self._spaces[name]
        except KeyError:
            known = ", ".join(sorted(self._spaces))
            raise InvalidInput(f"unknown space {name!r} (known: {known})") from None

    def default_for(self, kind: str) -> Space:
        return next(s for s in self._spaces.values() if kind in s.default_for)
