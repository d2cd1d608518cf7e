"""Where a dataset's files are: the interaction file and one feature table per modality."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from spectune.datasets.errors import DataError

logger = logging.getLogger(__name__)

CONFIG_FILE = "spectune.yaml"
# Used in this order when no config file lists the modalities.
DEFAULT_FEATURE_FILES = (("image", "image_feat.npy"), ("text", "text_feat.npy"))

# MMRec's dataset yaml (e.g. baby.yaml) names the same files with other keys; accepting them lets a
# researcher drop that yaml into the data folder unchanged.
_MMREC_FEATURE_KEYS = {"vision_feature_file": "image", "text_feature_file": "text"}
_MMREC_REQUIRED_VALUES = {
    "USER_ID_FIELD": "userID",
    "ITEM_ID_FIELD": "itemID",
    "field_separator": "\t",
}
_MMREC_IGNORED_KEYS = frozenset({"TIME_FIELD", "user_graph_dict_file"})
_OWN_KEYS = frozenset({"modalities", "inter_file"})
_ALLOWED_KEYS = (
    _OWN_KEYS
    | {"inter_file_name"}
    | set(_MMREC_FEATURE_KEYS)
    | set(_MMREC_REQUIRED_VALUES)
    | _MMREC_IGNORED_KEYS
)


@dataclass(frozen=True)
class DatasetLayout:
    """Resolved file paths of one dataset directory."""

    inter_path: Path
    feature_paths: tuple[tuple[str, Path], ...]  # (modality, .npy path), in config/default order
    config_path: Path | None


def resolve_layout(name: str, directory: Path) -> DatasetLayout:
    """Read the optional config file of ``directory`` and check that the listed files exist."""
    config_path = _find_config(name, directory)
    config = _read_config(config_path) if config_path is not None else {}
    inter_path = directory / _inter_file_name(name, config, config_path)
    if not inter_path.is_file():
        named_in_config = "inter_file" in config or "inter_file_name" in config
        where = f" (set in {config_path})" if named_in_config else ""
        raise DataError(f"{directory}: interaction file {inter_path.name} not found{where}")
    feature_paths = _feature_paths(directory, config, config_path)
    return DatasetLayout(inter_path, feature_paths, config_path)


def _find_config(name: str, directory: Path) -> Path | None:
    own = directory / CONFIG_FILE
    named = directory / f"{name}.yaml"
    if own.is_file():
        if named.is_file():
            logger.info("using %s; %s is ignored", own, named)
        return own
    return named if named.is_file() else None


def _read_config(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise DataError(f"{path}: not a readable YAML file: {e}") from e
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise DataError(f"{path}: must be a mapping of keys to values, got {type(loaded).__name__}")
    for key in loaded:
        if key not in _ALLOWED_KEYS:
            raise DataError(
                f"{path}: unknown key {key!r}; allowed keys: {', '.join(sorted(_ALLOWED_KEYS))}"
            )
    for key, required in _MMREC_REQUIRED_VALUES.items():
        if key in loaded and loaded[key] != required:
            raise DataError(f"{path}: {key} must be {required!r}, got {loaded[key]!r}")
    return loaded


def _string_value(config: Mapping[str, Any], key: str, path: Path | None) -> str:
    value = config[key]
    if not isinstance(value, str) or not value:
        raise DataError(f"{path}: {key} must be a non-empty file name, got {value!r}")
    return value


def _inter_file_name(name: str, config: Mapping[str, Any], path: Path | None) -> str:
    if "inter_file" in config and "inter_file_name" in config:
        raise DataError(f"{path}: set only one of inter_file and inter_file_name")
    for key in ("inter_file", "inter_file_name"):
        if key in config:
            return _string_value(config, key, path)
    return f"{name}.inter"


def _feature_paths(
    directory: Path, config: Mapping[str, Any], path: Path | None
) -> tuple[tuple[str, Path], ...]:
    mmrec_keys = [key for key in _MMREC_FEATURE_KEYS if key in config]
    if "modalities" in config and mmrec_keys:
        raise DataError(f"{path}: set either modalities or {', '.join(mmrec_keys)}, not both")
    if "modalities" in config:
        listed = _modalities_mapping(config["modalities"], path)
    elif mmrec_keys:
        listed = [(_MMREC_FEATURE_KEYS[k], _string_value(config, k, path)) for k in mmrec_keys]
    else:
        found = tuple(
            (modality, directory / file)
            for modality, file in DEFAULT_FEATURE_FILES
            if (directory / file).is_file()
        )
        if not found:
            defaults = " or ".join(file for _, file in DEFAULT_FEATURE_FILES)
            raise DataError(
                f"{directory}: no feature table: at least one modality is required "
                f"({defaults}, or list them under 'modalities' in {CONFIG_FILE})"
            )
        missing = [file for _, file in DEFAULT_FEATURE_FILES if not (directory / file).is_file()]
        if missing:
            # a misnamed file would silently drop a modality (and make DAMPS impossible)
            logger.warning(
                "%s: no %s, so %s only; list the files under 'modalities' in %s to say so",
                directory, " or ".join(missing), ", ".join(m for m, _ in found), CONFIG_FILE,
            )  # fmt: skip
        return found
    resolved = []
    for modality, file in listed:
        feature_path = directory / file
        if not feature_path.is_file():
            raise DataError(
                f"{path}: feature file {feature_path} of modality {modality!r} not found"
            )
        resolved.append((modality, feature_path))
    return tuple(resolved)


def _modalities_mapping(value: object, path: Path | None) -> list[tuple[str, str]]:
    if not isinstance(value, dict) or not value:
        raise DataError(
            f"{path}: modalities must be a non-empty mapping of modality name to .npy file, "
            f"got {value!r}"
        )
    listed = []
    for modality, file in value.items():
        if not isinstance(modality, str) or not modality:
            raise DataError(f"{path}: modality names must be non-empty strings, got {modality!r}")
        if not isinstance(file, str) or not file:
            raise DataError(f"{path}: modality {modality!r} must name a .npy file, got {file!r}")
        listed.append((modality, file))
    return listed
