"""Choose a study's best trials by validation value and write their configs as YAML.

The file has the sections ``spectune train --config`` reads (dataset, model, damps, train) and a
``selection`` block saying how the trial was chosen; its test metrics are labelled as reported,
not used.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from spectune.storage import attrs
from spectune.study.config import EXPORT_METADATA_KEY, build_config
from spectune.study.typed import ConfigError


def ranked_trials(study: optuna.Study) -> list[FrozenTrial]:
    """COMPLETE trials best first by their value (the validation metric); ties: lower number."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
    return sorted(complete, key=lambda trial: (sign * float(trial.value or 0.0), trial.number))


def export_document(
    study: optuna.Study, trial: FrozenTrial, rank: int, metric: str
) -> dict[str, Any]:
    """The YAML document of one trial: its full config plus how it was selected."""
    if attrs.CONFIG not in trial.user_attrs:
        raise ConfigError(
            f"trial {trial.number} of study {study.study_name} carries no spectune config (was it "
            "run by the smoke objective?); nothing to export"
        )
    config = build_config(trial.user_attrs[attrs.CONFIG])  # validates what was stored
    result = trial.user_attrs.get(attrs.RESULT, {})
    selection = {
        "study": study.study_name,
        "trial": trial.number,
        "rank": rank,
        "selected_by": f"validation {metric} ({study.direction.name.lower()})",
        "value": trial.value,
        "best_epoch": result.get("best_epoch"),
        "valid": result.get("valid", {}),
        "test_reported_not_used_for_selection": trial.user_attrs.get(attrs.TEST_METRICS, {}),
        "checkpoint": trial.user_attrs.get(attrs.CHECKPOINT),
        "params": dict(trial.params),
    }
    return {**config.to_dict(), EXPORT_METADATA_KEY: selection}


def export_paths(out: Path, top: int) -> list[Path]:
    """best.yaml for the best trial, then best-2.yaml ... best-K.yaml."""
    return [out] + [out.with_name(f"{out.stem}-{rank}{out.suffix}") for rank in range(2, top + 1)]


def write_yaml(path: Path, document: dict[str, Any]) -> None:
    """Atomically: a partly written config is never left behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            yaml.safe_dump(document, stream, sort_keys=False)
        # mkstemp creates 0600; an exported config is meant for colleagues and other containers.
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
