"""Settings declared in code, read from the environment: each field of a settings group
carries an ``Env`` in its type (``Annotated``), naming its variable with one line of doc."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import msgspec

from models.errors import ConfigError

G = TypeVar("G", bound=msgspec.Struct)


class Env(NamedTuple):
    """Where a setting comes from: its variable and one line of doc. ``shown`` is how the
    default reads in the docs, where it is not a plain value; ``parse`` turns the variable's
    text into a value of the field's type, where a plain conversion cannot; ``default``
    computes a default from the environment."""

    name: str
    doc: str
    shown: str | None = None
    parse: Callable[[str], Any] | None = None
    default: Callable[[Mapping[str, str]], Any] | None = None


def read_group(group: type[G], env: Mapping[str, str]) -> G:
    """A group of settings: each field from its variable where it is set, else its default."""
    values = {}
    for name, setting in declared(group):
        if env.get(setting.name) or setting.default is not None:
            values[name] = read_field(group, name, env)
    return group(**values)


def declared(group: type[msgspec.Struct]) -> Iterator[tuple[str, Env]]:
    """The fields of a group read from the environment, with their declarations."""
    for field in msgspec.structs.fields(group):
        setting = next((x for x in getattr(field.type, "__metadata__", ()) if isinstance(x, Env)),
                       None)  # fmt: skip
        if setting is not None:
            yield field.name, setting


def read_field(group: type[msgspec.Struct], name: str, env: Mapping[str, str]) -> Any:
    """One field of a group: from its variable where it is set, else its computed default."""
    field = next(f for f in msgspec.structs.fields(group) if f.name == name)
    setting = next(s for n, s in declared(group) if n == name)
    raw = env.get(setting.name)
    if not raw:
        assert setting.default is not None
        return setting.default(env)
    try:
        value = setting.parse(raw) if setting.parse else raw
        return msgspec.convert(value, field.type, strict=False, dec_hook=_decode)
    except (ValueError, msgspec.ValidationError) as exc:
        reason = re.sub(r" - at `\$[^`]*`$", "", str(exc))
        raise ConfigError(f"{setting.name}={raw}: {reason}") from None


def _decode(kind: type, value: Any) -> Any:
    if kind is Path:
        return Path(value).expanduser().resolve()
    raise NotImplementedError(f"no conversion to {kind}")


def shown(group: type[msgspec.Struct], name: str, setting: Env) -> str:
    """A default as the docs show it."""
    if setting.shown is not None:
        return setting.shown
    field = next(f for f in msgspec.structs.fields(group) if f.name == name)
    default = field.default
    if default is None or default == () or default is msgspec.NODEFAULT:
        return "none"
    if isinstance(default, float) and default.is_integer():
        default = int(default)
    return f"`{default}`"
