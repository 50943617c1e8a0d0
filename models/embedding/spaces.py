"""Embedding spaces: a model, its provider and its vector table. One table per space.

Two spaces are built in: ``minilm-384`` (the local all-MiniLM-L6-v2, always there) and
``openai-1536`` (any server speaking the OpenAI embeddings protocol; enabled when its base
URL is configured). Memories go to ``minilm-384`` by default; documents go to
``openai-1536`` when it is enabled, else to ``minilm-384``.

An operator may declare external spaces (``ENGRAM_EXTERNAL_SPACES``): their provider is
``external``, there is no model on the server, and the clients send every vector, with
the items they write and with the queries they search by.
"""

from __future__ import annotations

import re
from typing import Literal

import msgspec

from models.errors import ConfigError, InvalidInput
from models.settings import ExternalSpace, OpenAIOptions, Settings

Provider = Literal["sentence-transformers", "openai", "external"]
EXTERNAL_MODEL = "external"  # the model of an external space: the client's own
Storage = Literal["vector", "halfvec"]  # pgvector's 32-bit and 16-bit vector types


class Space(msgspec.Struct, frozen=True, kw_only=True):
    """An embedding space: where vectors of one model and size live."""

    name: str
    dims: int
    provider: Provider
    model: str
    default_for: tuple[str, ...] = ()
    max_input_tokens: int = 256  # the model reads no further; chunks must fit
    # document chunks: tokens a chunk (counted with the model's tokenizer where there is
    # one, else estimated) and tokens repeated from the previous chunk
    chunk_tokens: int = 256
    chunk_overlap: int = 32
    storage: Storage = "vector"
    openai: OpenAIOptions | None = None

    @property
    def external(self) -> bool:
        """Whether the clients send this space's vectors (the server embeds nothing)."""
        return self.provider == "external"

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
    max_input_tokens=256,
)

OPENAI_1536 = "openai-1536"


def openai_space(options: OpenAIOptions) -> Space:
    """The built-in 1536-dimension space over an OpenAI-compatible server."""
    return Space(
        name=OPENAI_1536,
        dims=1536,
        provider="openai",
        model=options.model,
        default_for=("document",),
        max_input_tokens=8191,
        chunk_tokens=1000,
        chunk_overlap=100,
        storage="halfvec",
        openai=options,
    )


def external_space(declared: ExternalSpace) -> Space:
    """A space whose vectors the clients send (``ENGRAM_EXTERNAL_SPACES``)."""
    return Space(
        name=declared.name,
        dims=declared.dims,
        provider="external",
        model=EXTERNAL_MODEL,
        storage=declared.storage,
    )


class SpaceRegistry:
    """The configured spaces, by name."""

    def __init__(self, spaces: tuple[Space, ...] = (MINILM_384,)) -> None:
        self._spaces = {space.name: space for space in spaces}

    @classmethod
    def configured(cls, settings: Settings) -> SpaceRegistry:
        """The spaces ``settings`` configure, with the default space of each kind."""
        options = settings.spaces
        spaces = [_chunking(MINILM_384, options.minilm_chunk_tokens, options.minilm_chunk_overlap)]
        if settings.openai is not None:
            openai = openai_space(settings.openai)
            spaces.append(
                _chunking(openai, options.openai_chunk_tokens, options.openai_chunk_overlap)
            )
        spaces.extend(external_space(declared) for declared in options.external_spaces)
        chosen = {"memory": options.memory_space, "document": options.document_space}
        names = {s.name for s in spaces}
        for kind, name in chosen.items():
            if name is not None and name not in names:
                raise ConfigError(
                    f"ENGRAM_{kind.upper()}_SPACE={name} is not a configured space "
                    f"(configured: {', '.join(sorted(names))})"
                )
        document_space = next((s for s in spaces if s.name == options.document_space), None)
        if document_space is not None and document_space.external:
            raise ConfigError(
                f"ENGRAM_DOCUMENT_SPACE={document_space.name} is an external space: the server "
                "splits documents into chunks and embeds them, so their space must be one it "
                "embeds in"
            )
        return cls.with_defaults(tuple(spaces), chosen)

    @classmethod
    def with_defaults(
        cls, spaces: tuple[Space, ...], chosen: dict[str, str | None] | None = None
    ) -> SpaceRegistry:
        """The spaces; each kind defaults to its ``chosen`` space, else to the last space
        that claims it (so an enabled openai-1536 takes documents from minilm-384)."""
        claimed: dict[str, str] = {}
        for space in spaces:
            for kind in space.default_for:
                claimed[kind] = space.name
        claimed |= {kind: name for kind, name in (chosen or {}).items() if name is not None}
        return cls(
            tuple(
                msgspec.structs.replace(
                    s, default_for=tuple(k for k, owner in claimed.items() if owner == s.name)
                )
                for s in spaces
            )
        )

    def all(self) -> list[Space]:
        return list(self._spaces.values())

    def external(self) -> list[Space]:
        """The spaces whose vectors the clients send."""
        return [space for space in self._spaces.values() if space.external]

    def names(self) -> list[str]:
        return list(self._spaces)

    def get(self, name: str) -> Space:
        """The space called ``name``; unknown names are bad input."""
        try:
            return self._spaces[name]
        except KeyError:
            known = ", ".join(sorted(self._spaces))
            raise InvalidInput(f"unknown space {name!r} (known: {known})") from None

    def default_for(self, kind: str) -> Space:
        return next(s for s in self._spaces.values() if kind in s.default_for)


def _chunking(space: Space, tokens: int | None, overlap: int | None) -> Space:
    """The space with its chunk size and overlap, where configured."""
    tokens = space.chunk_tokens if tokens is None else tokens
    overlap = space.chunk_overlap if overlap is None else overlap
    if not 0 < tokens <= space.max_input_tokens or not 0 <= overlap < tokens:
        raise ConfigError(
            f"space {space.name}: chunks of {tokens} tokens with {overlap} of overlap: "
            f"need 0 < tokens <= {space.max_input_tokens} and 0 <= overlap < tokens"
        )
    return msgspec.structs.replace(space, chunk_tokens=tokens, chunk_overlap=overlap)
