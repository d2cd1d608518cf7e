"""Build frozen dataclasses from plain mappings (YAML, CLI), checking every key and type."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value breaks a rule; the message names the key, the rule and the value."""


class _Loader(yaml.SafeLoader):
    """PyYAML follows YAML 1.1, where ``5e-4`` (no dot) is a string; people mean a number."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` that also reads exponent numbers like ``1e-3`` as floats."""
    return yaml.load(text, Loader=_Loader)


def from_mapping(cls: type[T], values: Mapping[str, Any], where: str) -> T:
    """Return ``cls(**values)`` after rejecting unknown keys and coercing each value to its type.

    ``where`` names the section (``model``, ``damps``...) in error messages.
    """
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(
            f"unknown key {where}.{unknown[0]}; valid keys of {where}: {', '.join(sorted(names))}"
        )
    coerced = {key: coerce(hints[key], value, f"{where}.{key}") for key, value in values.items()}
    try:
        return cls(**coerced)
    except ValueError as error:
        raise ConfigError(f"{where}: {error}") from error


def coerce(kind: Any, value: Any, key: str) -> Any:
    """Return ``value`` as type ``kind`` or raise ConfigError naming ``key``."""
    origin = get_origin(kind)
    if origin is Literal:
        if value not in get_args(kind):
            choices = ", ".join(repr(choice) for choice in get_args(kind))
            raise ConfigError(f"{key} must be one of {choices}, got {value!r}")
        return value
    if origin in (Union, types.UnionType):
        options = get_args(kind)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return coerce(option, value, key)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {'; '.join(errors)}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        args = get_args(kind)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(args[0], item, key) for item in value)
        if len(value) != len(args):
            raise ConfigError(f"{key} must have {len(args)} entries, got {len(value)}: {value!r}")
        return tuple(coerce(arg, item, key) for arg, item in zip(args, value))
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {kind!r} for {key}")  # internal: a field type


def to_plain(instance: Any) -> dict[str, Any]:
    """Dataclass -> dict of YAML/JSON-friendly values (tuples become lists)."""
    plain: dict[str, Any] = {}
    for field in dataclasses.fields(instance):
        value = getattr(instance, field.name)
        plain[field.name] = list(value) if isinstance(value, tuple) else value
    return plain
